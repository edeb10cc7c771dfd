# Runs inside the test VM (see guest-job.sh): the helper as the D-Bus service it is, on a real
# kernel, with a private system bus and real polkitd inside the guest. The host test prepends
# PASSAGECTL, HELPER, REPO and DEVICE (an endpoint alone in its group).
set -u
OUT=${OUT:-/run/passage-out}
R=/run/passage-test
mkdir -p $R/state && chmod 755 $R
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
dbus-daemon --config-file=$R/system.conf --fork --nopidfile > $OUT/dbus.log 2>&1
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$R/bus
owner() { dbus-send --bus=$DBUS_SYSTEM_BUS_ADDRESS --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:$1 2>/dev/null | grep -q "boolean true"; }
wait_owner() { for _ in $(seq 200); do owner $1 && return 0; sleep 0.1; done; echo "$1 never came up" >> $OUT/service-errors.txt; return 1; }

# The host root is read-only here: the project's policy and a test rule go on tmpfs mounts.
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
for p in /usr/lib/polkit-1/polkitd /usr/libexec/polkitd; do [ -x $p ] && { $p --no-debug > $OUT/polkitd.log 2>&1 & break; }; done
wait_owner org.freedesktop.PolicyKit1
$HELPER --state-dir $R/state > $OUT/helper.log 2>&1 &
wait_owner io.github.passage.Helper1

l=$(readlink /sys/bus/pci/devices/$DEVICE/iommu_group); G=${l##*/}
echo $G > $OUT/service-group
drv() { local d; d=$(readlink /sys/bus/pci/devices/$DEVICE/driver); echo ${d##*/}; }
drv > $OUT/service-before.txt
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# A copy nobody may run: the checkout may sit where nobody cannot go.
cp $PASSAGECTL $R/passagectl && chmod 755 $R/passagectl && PASSAGECTL_NOBODY=$R/passagectl
# Two claims of one group at once: nobody's, which polkit takes 3 s to approve, and root's a
# second later. polkitd runs rules one at a time, so both answers come almost together and
# either claim may take the group first: the other finds it being changed (told Busy at once,
# never queued) or already claimed. Exactly one does the work; nothing is left half-done.
( as_nobody $PASSAGECTL_NOBODY claim $G > $OUT/first.txt 2>&1; echo $? > $OUT/first.rc ) &
first=$!
sleep 1
$PASSAGECTL claim $G > $OUT/second.txt 2>&1; echo $? > $OUT/second.rc
wait $first
drv > $OUT/service-after.txt
$PASSAGECTL verify $G > $OUT/service-verify.txt 2>&1; echo $? > $OUT/service-verify.rc
as_nobody $PASSAGECTL_NOBODY release $G > $OUT/service-release.txt 2>&1; echo $? > $OUT/service-release.rc
drv > $OUT/service-released.txt
echo done > $OUT/job.done
