# Runs inside an installed test system (vm.py's "installed" boot): systemd is PID 1, and every
# Passage file is where `make install PREFIX=/usr` put it. Nothing here starts the helper: D-Bus
# activation does, under its installed unit. The job runs once per boot (passage-test-job.service)
# and carries on where the last boot stopped; the disk keeps its count.
# The host test prepends ADDR: a member of the group to claim and persist (behind a PCI bridge:
# an e1000 and an rtl8139 with their bridge, two host drivers).
#
#   boot 1  users and a polkit rule; as an allowed user through the real activation path:
#           claim, verify, release (and a user polkit refuses); the service and dbus-daemon
#           restarted with a group held; persist on; fix vfio-pci-ids (the boot line); reboot
#   boot 2  the group is on vfio-pci before its host driver loaded, `status` says so; the boot
#           line is the one fix wrote (the bed boots kernel-install's entry), unfix; persist
#           off; reboot
#   boot 3  the host drivers have the group again; the line unfix wrote; power off
#
# Each check is a line of OUT/checks.tsv: boot, name, ok or FAIL, what was seen. The host test
# asserts them all, and that none is missing.
set -u
OUT=${OUT:-/mnt/out}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COUNT=/var/lib/passage-test/boot
mkdir -p ${COUNT%/*}
BOOT=$(( $(cat $COUNT 2>/dev/null || echo 0) + 1 ))
echo $BOOT > $COUNT
sync
echo "== boot $BOOT ($(date +%T), $(cut -d' ' -f1 /proc/uptime) s since power on)"

# Whatever happens below, this boot ends: a job that stopped half-way powers off, and the host
# test reads what it got to.
diagnose() {
  journalctl -b --no-pager -u passage-helper.service -u passage-reclaim.service -u passage-initramfs.service -u polkit.service -u dbus.service > $OUT/boot$BOOT-journal.txt 2>&1
  journalctl -b --no-pager -p warning > $OUT/boot$BOOT-warnings.txt 2>&1
}
finish() { diagnose; sync; systemctl --no-block poweroff; }
trap finish EXIT

# check NAME SEEN: records NAME as ok when the command that follows succeeds.
check() {
  local name=$1 seen=$2; shift 2
  local r=FAIL
  if "$@"; then r=ok; fi
  printf '%s\t%s\t%s\t%s\n' "$BOOT" "$name" "$r" "$(echo "$seen" | tr '\t\n' '  ' | cut -c1-400)" >> $OUT/checks.tsv
  echo "[$r] $name: $seen"
}
as() { local u=$1; shift; runuser -u "$u" -- "$@"; }
drv() { local l; l=$(readlink /sys/bus/pci/devices/$1/driver) && echo ${l##*/} || echo -; }
group_of() { local l; l=$(readlink /sys/bus/pci/devices/$1/iommu_group); echo ${l##*/}; }
G=$(group_of $ADDR)
# The group's endpoints (its bridge stays on no driver or pcieport).
members() {
  local d
  for d in /sys/kernel/iommu_groups/$G/devices/*; do
    [ "$(cut -c3-4 $d/class)" = 06 ] || echo ${d##*/}
  done
}
drivers() { local m; for m in $(members); do echo "$m=$(drv $m)"; done | tr '\n' ' '; }
all_on() { local m; for m in $(members); do [ "$(drv $m)" = "$1" ] || return 1; done; }
none_on() { local m; for m in $(members); do [ "$(drv $m)" != "$1" ] || return 1; done; }
has() { grep -q -- "$2" <<< "$1"; }
eq() { [ "$1" = "$2" ]; }
ne() { [ "$1" != "$2" ]; }
lacks() { ! grep -q -- "$2" <<< "$1"; }
entry() { cat /boot/loader/entries/*-$(uname -r).conf 2>&1; }
helper_pid() { systemctl show -p MainPID --value passage-helper.service; }

# The boot itself, as systemd saw it.
systemd-analyze > $OUT/boot$BOOT-analyze.txt 2>&1
systemctl --failed --no-legend --plain > $OUT/boot$BOOT-failed.txt 2>&1
failed=$(grep -E 'passage|dbus|polkit|udev' $OUT/boot$BOOT-failed.txt)
check "no-failed-units" "$(cat $OUT/boot$BOOT-failed.txt)" eq "$failed" ""
check "pid1-is-systemd" "$(cat /proc/1/comm)" eq "$(cat /proc/1/comm)" systemd

case $BOOT in
1)
  # The two users an administrator would have: one allowed by a polkit rule, one not.
  useradd -m -s /bin/bash alice
  useradd -M -s /bin/bash bob
  # What a package's trigger does for the app's settings schema.
  glib-compile-schemas /usr/share/glib-2.0/schemas
  mkdir -p /etc/polkit-1/rules.d
  cat > /etc/polkit-1/rules.d/60-passage-test.rules <<'EOF'
// Test system: alice may give devices to virtual machines, without a password.
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("io.github.passage.") == 0 && subject.user == "alice") {
        return polkit.Result.YES;
    }
});
EOF
  # This kernel as a distribution installs it: its modules (bound here by the bed), image and
  # config, and an initramfs made by the system's own tool (initramfs-tools), listing only the
  # modules named (the bed's root is no real disk for MODULES=dep to look at).
  kver=$(uname -r)
  mkdir -p /boot /etc/initramfs-tools/conf.d
  moddir=$(sed -n 's/.*passage.moddir=\([^ ]*\).*/\1/p' /proc/cmdline)
  cp $moddir/../../boot/config-$kver $moddir/../../boot/vmlinuz-$kver /boot/
  printf 'MODULES=list\nCOMPRESS=gzip\n' > /etc/initramfs-tools/conf.d/passage-test.conf
  t0=$(date +%s)
  update-initramfs -c -k $kver > $OUT/initramfs-create.txt 2>&1
  echo "initramfs made in $(( $(date +%s) - t0 )) s"
  check "an-initramfs-to-rebuild" "$(ls -l /boot /var/lib/initramfs-tools 2>&1)" test -s /boot/initrd.img-$kver
  host=$(drivers)
  echo "$host" > $OUT/host-drivers.txt
  check "host-drivers-at-first-boot" "$host" none_on vfio-pci
  check "helper-not-running-before-use" "$(systemctl is-active passage-helper.service)" ne "$(systemctl is-active passage-helper.service)" active

  out=$(as alice passagectl status 2>&1); rc=$?
  check "status-activates-the-helper" "rc=$rc $out" eq $rc 0
  pid=$(helper_pid)
  check "helper-runs-under-its-unit" "pid $pid: $(cat /proc/$pid/cgroup 2>&1)" grep -q passage-helper.service /proc/$pid/cgroup
  check "helper-unit-is-hardened" "$(systemctl show -p ProtectSystem,NoNewPrivileges,ReadWritePaths passage-helper.service | tr '\n' ' ')" \
    has "$(systemctl show -p ProtectSystem --value passage-helper.service)" strict
  # /usr is read-only inside the helper's namespace, /etc/modprobe.d writable.
  usr=$(findmnt -N $pid -no OPTIONS -T /usr 2>&1)
  check "helper-sees-usr-read-only" "$usr" has "$usr" '^ro\b'
  mp=$(findmnt -N $pid -no OPTIONS -T /etc/modprobe.d 2>&1)
  check "helper-may-write-modprobe-d" "$mp" has "$mp" '^rw\b'

  # The NIC with the host's default route is the host's: a claim without force is refused
  # naming the route (the helper reads the host's routes, so its unit has no private network).
  nic=$(ls /sys/bus/pci/devices/0000:03:01.0/net/ 2>/dev/null | head -1)
  ip link set $nic up && ip addr add 192.0.2.10/24 dev $nic && ip route add default via 192.0.2.1 dev $nic
  g2=$(group_of 0000:03:01.0)
  out=$(as alice passagectl claim $g2 2>&1); rc=$?
  check "default-route-nic-is-refused" "rc=$rc $out" ne $rc 0
  check "default-route-is-named" "$out" has "$out" "default route"
  check "default-route-nic-stays" "$(drv 0000:03:01.0)" eq "$(drv 0000:03:01.0)" e1000
  ip route del default; ip addr flush dev $nic; ip link set $nic down

  out=$(as bob passagectl claim $G 2>&1); rc=$?
  check "bob-is-refused" "rc=$rc $out" ne $rc 0
  check "bob-is-told-why" "$out" has "$out" "polkit\|not allowed\|authori"
  check "bob-changed-nothing" "$(drivers)" eq "$(drivers)" "$host"

  out=$(as alice passagectl claim $G 2>&1); rc=$?
  check "alice-claims" "rc=$rc $out" eq $rc 0
  check "claimed-on-vfio-pci" "$(drivers)" all_on vfio-pci
  out=$(as alice passagectl verify $G 2>&1); rc=$?
  check "alice-verifies" "rc=$rc $out" eq $rc 0
  out=$(as alice passagectl status --json 2>&1)
  check "status-lists-the-claim" "$out" has "$out" "\"group\": *$G[,}]"

  # A clean restart of the service, then of the bus, loses nothing: the claim is on disk.
  before=$(helper_pid)
  systemctl restart passage-helper.service
  out=$(as alice passagectl status --json 2>&1)
  check "claim-survives-a-service-restart" "pid $before → $(helper_pid): $out" has "$out" "\"group\": *$G[,}]"
  systemctl restart dbus.service
  sleep 2
  out=$(as alice passagectl status --json 2>&1); rc=$?
  check "claim-survives-a-bus-restart" "rc=$rc pid $(helper_pid): $out" has "$out" "\"group\": *$G[,}]"
  check "still-on-vfio-pci-after-restarts" "$(drivers)" all_on vfio-pci

  out=$(as alice passagectl release $G 2>&1); rc=$?
  check "alice-releases" "rc=$rc $out" eq $rc 0
  check "released-to-host-drivers" "$(drivers)" eq "$(drivers)" "$host"

  # The app, as alice on a desktop (Xvfb here): a plan gives the group to a plain-QEMU guest;
  # Apply, pressed with the pointer where the app's probe says the button is, claims it
  # through the same activation path.
  as alice passagectl guests add router --vmm qemu > $OUT/app-setup.txt 2>&1
  as alice passagectl plan assign $G router >> $OUT/app-setup.txt 2>&1
  Xvfb :7 -screen 0 1400x900x24 -nolisten tcp > /dev/null 2>&1 &
  xvfb=$!
  mkdir -p /tmp/app && chown alice /tmp/app
  app_env="DISPLAY=:7 GDK_BACKEND=x11 GSK_RENDERER=cairo NO_AT_BRIDGE=1 LC_ALL=C.UTF-8 PASSAGE_PROBE=/tmp/app/probe.json"
  # Ask the probe: prints the value of a Python expression over it (p), empty until it holds.
  probe() { python3 -c "import json,sys; p=json.load(open('/tmp/app/probe.json')); v=$1; print(v if v is not None else '')" 2>/dev/null; }
  sleep 1
  as alice env $app_env passage --plan /home/alice/.config/passage/plan.json > $OUT/app.log 2>&1 &
  t0=$(date +%s)
  until [ "$(probe "p.get('loaded') and p.get('buttons', {}).get('apply') and p.get('cards', {}).get('$G') and 1")" = 1 ]; do
    [ $(( $(date +%s) - t0 )) -lt 180 ] || break
    sleep 1
  done
  echo "app showed the host in $(( $(date +%s) - t0 )) s"
  win=$(DISPLAY=:7 xdotool search --sync --onlyvisible --name '^Passage$' | head -1)
  eval "$(DISPLAY=:7 xdotool getwindowgeometry --shell $win)"
  xy=$(probe "'%d %d' % ($X + p['buttons']['apply'][0] + p['buttons']['apply'][2] / 2, $Y + p['buttons']['apply'][1] + p['buttons']['apply'][3] / 2)")
  check "app-shows-the-apply-button" "window $win at $X,$Y; apply at $xy" test -n "$xy"
  DISPLAY=:7 xdotool mousemove $xy sleep 0.3 click 1
  until probe "p.get('apply_log')" | grep -q "Done\|Not applied"; do
    [ $(( $(date +%s) - t0 )) -lt 300 ] || break
    sleep 1
  done
  log=$(probe "p.get('apply_log')")
  echo "$log" > $OUT/app-apply.txt
  check "app-apply-is-done" "$log" has "$log" "Done"
  check "app-apply-claimed-the-group" "$(drivers)" all_on vfio-pci
  DISPLAY=:7 xdotool key ctrl+q
  sleep 2
  kill $xvfb 2>/dev/null
  out=$(as alice passagectl release $G 2>&1); rc=$?
  check "released-after-the-app" "rc=$rc $out $(drivers)" eq "$(drivers)" "$host"

  out=$(as alice passagectl persist $G on 2>&1); rc=$?
  echo "$out" > $OUT/persist-on.txt
  check "alice-persists" "rc=$rc $out" eq $rc 0
  check "persist-wrote-the-udev-rule" "$(cat /etc/udev/rules.d/61-passage-vfio.rules 2>&1)" grep -q "KERNEL==\"$ADDR\"" /etc/udev/rules.d/61-passage-vfio.rules
  check "persist-wrote-the-softdeps" "$(cat /etc/modprobe.d/passage-vfio.conf 2>&1)" grep -q "pre: vfio-pci" /etc/modprobe.d/passage-vfio.conf
  check "persist-wrote-the-list" "$(ls -l /var/lib/passage 2>&1)" test -s /var/lib/passage/persist.json
  check "persist-rebuilt-the-initramfs" "$out" has "$out" "initramfs was regenerated (update-initramfs, in passage-initramfs.service)"
  l=$(lsinitramfs /boot/initrd.img-$(uname -r) 2>&1 | grep modprobe.d)
  check "the-initramfs-carries-the-softdeps" "$l" has "$l" "etc/modprobe.d/passage-vfio.conf"
  out=$(as alice passagectl status 2>&1)
  check "status-lists-the-persisted-group" "$out" has "$out" "every boot"

  # The kernel command line (a systemd-boot system: /etc/kernel/cmdline, entries written by
  # kernel-install; the bed boots the entry's options). This boot has vfio-pci.ids=8086:9999;
  # the doctor offers to take it away, and fix does it through passage-boot-line.service.
  d=$(passagectl doctor --json 2>&1)
  echo "$d" > $OUT/doctor-boot1.json
  check "doctor-knows-how-it-boots" "$d" has "$d" '"arrangement": *"kernel-install"'
  check "doctor-offers-the-fix" "$d" has "$d" '"fix": *"passagectl fix vfio-pci-ids"'
  out=$(passagectl fix vfio-pci-ids 2>&1); rc=$?
  echo "$out" > $OUT/fix.txt
  check "fix-takes-vfio-pci-ids-away" "rc=$rc $out" eq $rc 0
  r=$(systemctl show -p Result --value passage-boot-line.service)
  check "fix-ran-in-its-unit" "$r $(journalctl -b -u passage-boot-line.service --no-pager -o cat 2>&1 | tail -3)" eq "$r" success
  check "fix-changed-etc-kernel-cmdline" "$(cat /etc/kernel/cmdline)" lacks "$(cat /etc/kernel/cmdline)" vfio-pci.ids
  check "kernel-install-wrote-the-entry" "$(entry)" lacks "$(entry)" vfio-pci.ids
  check "kernel-install-kept-the-rest" "$(entry)" has "$(entry)" "passage.boot=installed"
  d=$(passagectl doctor 2>&1)
  check "doctor-says-it-waits-for-a-restart" "$d" has "$d" "(boot-line-pending)"
  ;;
2)
  host=$(cat $OUT/host-drivers.txt)
  check "persisted-group-on-vfio-pci-after-reboot" "$(drivers)" all_on vfio-pci
  # Before its host driver: the host driver never bound it in this boot (e1000 logs each
  # card it takes), and the boot-time re-claim found it on vfio-pci already.
  k=$(journalctl -k -b --no-pager -o cat 2>&1 | grep -E "^(e1000|8139cp) ($(members | tr '\n' '|' | sed 's/|$//'))")
  check "host-driver-never-bound-it" "$k" eq "$k" ""
  r=$(journalctl -b -u passage-reclaim.service --no-pager -o cat 2>&1)
  echo "$r" > $OUT/reclaim-boot2.txt
  check "reclaim-found-it-on-vfio-pci" "$r" has "$r" "already on vfio-pci at boot"
  out=$(as alice passagectl status 2>&1); rc=$?
  check "status-says-held-and-persisted" "rc=$rc $out" has "$out" "^  claimed at every boot ("
  check "status-does-not-say-not-held" "$out" ne "$(grep -c 'does not hold' <<< "$out")" 1
  out=$(as alice passagectl status --json 2>&1)
  check "status-json-persisted-and-held" "$out" has "$out" '"held": *true'
  # The group the boot gave to vfio-pci goes back to the host drivers it was persisted from.
  out=$(as alice passagectl release $G 2>&1); rc=$?
  check "boot-claim-releases-to-host-drivers" "rc=$rc $out $(drivers)" eq "$(drivers)" "$host"
  # The boot-time re-claim, run again (as an administrator may), claims it under its unit's
  # hardening: no udev rule acts this time.
  systemctl restart passage-reclaim.service
  r=$(journalctl -b -u passage-reclaim.service --no-pager -o cat 2>&1 | grep "persisted group")
  check "reclaim-claims-under-its-unit" "$r $(drivers)" all_on vfio-pci
  check "reclaim-says-it-claimed" "$r" has "$r" "(now $G): claimed"
  out=$(as alice passagectl persist $G off 2>&1); rc=$?
  echo "$out" > $OUT/persist-off.txt
  check "alice-unpersists" "rc=$rc $out" eq $rc 0
  check "unpersist-removed-the-udev-rule" "$(ls /etc/udev/rules.d)" test ! -e /etc/udev/rules.d/61-passage-vfio.rules
  check "unpersist-removed-the-softdeps" "$(ls /etc/modprobe.d)" test ! -e /etc/modprobe.d/passage-vfio.conf
  check "unpersist-rebuilt-the-initramfs" "$out" has "$out" "initramfs was regenerated"
  l=$(lsinitramfs /boot/initrd.img-$(uname -r) 2>&1); lrc=$?
  check "the-initramfs-is-readable" "rc=$lrc $(grep modprobe.d <<< "$l")" has "$l" "etc/modprobe.d"
  check "the-initramfs-lost-the-softdeps" "$(grep modprobe.d <<< "$l")" ne "$(grep -c passage-vfio <<< "$l")" 1

  # The boot used the entry fix wrote: the parameter is gone, and the doctor says the line is
  # the configured one. Then unfix gives it back.
  check "the-fix-took" "$(cat /proc/cmdline)" lacks "$(cat /proc/cmdline)" vfio-pci.ids
  d=$(passagectl doctor 2>&1)
  echo "$d" > $OUT/doctor-boot2.txt
  check "doctor-finds-nothing-waiting" "$d" lacks "$d" "(boot-line-pending)\|(boot-line-differs)\|(vfio-pci-ids)"
  out=$(passagectl unfix vfio-pci-ids 2>&1); rc=$?
  echo "$out" > $OUT/unfix.txt
  check "unfix-gives-it-back" "rc=$rc $out" eq $rc 0
  check "unfix-wrote-the-entry" "$(entry)" has "$(entry)" "vfio-pci.ids=8086:9999"
  ;;
3)
  host=$(cat $OUT/host-drivers.txt)
  check "host-drivers-after-unpersist-and-reboot" "$(drivers)" eq "$(drivers)" "$host"
  # The other side of boot 2's "never bound": where e1000 does take the card, the log says so.
  k=$(journalctl -k -b --no-pager -o cat 2>&1 | grep -E "^e1000 $ADDR")
  check "host-driver-logs-when-it-binds" "$k" has "$k" "^e1000 $ADDR"
  out=$(as alice passagectl status --json 2>&1); rc=$?
  check "status-holds-nothing" "rc=$rc $out" has "$out" '"claims": *\[\]'
  check "status-persists-nothing" "$out" has "$out" '"persisted": *\[\]'
  check "the-unfix-took" "$(cat /proc/cmdline)" has "$(cat /proc/cmdline)" "vfio-pci.ids=8086:9999"
  d=$(passagectl doctor 2>&1)
  check "doctor-sees-the-configured-line" "$d" lacks "$d" "(boot-line-pending)\|(boot-line-differs)"
  echo 0 > $OUT/job.rc
  touch $OUT/job.done
  exit 0  # finish() powers off
  ;;
*)
  echo "boot $BOOT: the job has no stage for it"
  exit 1  # finish() powers off
  ;;
esac
trap - EXIT
diagnose
# vm.py starts the machine again once this shutdown is over.
touch $OUT/reboot
sync
systemctl --no-block reboot
