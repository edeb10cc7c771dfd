# Sourced by guest jobs that run the helper as the D-Bus service it is: a private system bus
# (dbus-daemon), real polkitd with the project's policy, and passage-helper, all inside the
# test VM. Needs REPO (the checkout) and OUT; uses R=/run/passage-test (tmpfs in the guest).
R=/run/passage-test
mkdir -p $R/state && chmod 755 $R
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$R/bus

owner() { dbus-send --bus=$DBUS_SYSTEM_BUS_ADDRESS --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:$1 2>/dev/null | grep -q "boolean true"; }
wait_owner() { for _ in $(seq 200); do owner $1 && return 0; sleep 0.1; done; echo "$1 never came up" >> $OUT/service-errors.txt; return 1; }

# The bus: the system bus's rules, the polkit and Passage policies, on a socket of our own.
start_bus() {
  cat > $R/system.conf <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$R/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <include ignore_missing="yes">/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <include>$REPO/data/dbus/io.github.passage.Helper1.conf</include>
</busconfig>
CONF
  rm -f $R/bus
  dbus-daemon --config-file=$R/system.conf --fork --print-pid > $R/dbus.pid 2>> $OUT/dbus.log
}

# polkitd with the project's actions and a test rule (the host root is read-only here: both go
# on tmpfs mounts): nobody's claims are approved after a 3 s pause, so a test can act while a
# request waits for polkit.
setup_polkit() {
  mount -t tmpfs pk-actions /usr/share/polkit-1/actions
  cp $REPO/data/polkit/io.github.passage.policy /usr/share/polkit-1/actions/
  mount -t tmpfs pk-rules /etc/polkit-1/rules.d
  cat > /etc/polkit-1/rules.d/49-passage-test.rules <<'RULE'
polkit.addRule(function(action, subject) {
  if (action.id == "io.github.passage.claim" && subject.user == "nobody") {
    polkit.spawn(["/bin/sleep", "3"]);
    return polkit.Result.YES;
  }
});
RULE
}
start_polkitd() {
  local p
  for p in /usr/lib/polkit-1/polkitd /usr/libexec/polkitd; do
    [ -x $p ] && { $p --no-debug >> $OUT/polkitd.log 2>&1 & echo $! > $R/polkitd.pid; break; }
  done
  wait_owner org.freedesktop.PolicyKit1
}
# start_helper [VAR=value…]: the service, with its state in $R/state; its pid in $R/helper.pid;
# its log in $OUT/helper.log, or in $HELPER_LOG (a bench keeps it on the guest's tmpfs: each
# line written to the OUT share is a round trip to QEMU's 9p server, which an installed
# helper's journal does not pay).
start_helper() {
  env "$@" $HELPER --state-dir $R/state >> ${HELPER_LOG:-$OUT/helper.log} 2>&1 &
  echo $! > $R/helper.pid
  wait_owner io.github.passage.Helper1
}
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# A passagectl nobody may run: the checkout may sit where nobody cannot go.
cp $PASSAGECTL $R/passagectl && chmod 755 $R/passagectl && PASSAGECTL_NOBODY=$R/passagectl
