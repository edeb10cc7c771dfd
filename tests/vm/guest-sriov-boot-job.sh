# Runs inside the test VM (see guest-job.sh): an SR-IOV card's virtual functions across a real
# boot. The host test prepends PASSAGECTL, HELPER, STAGE and PF (the igb's address).
#   STAGE=setup  a normal boot, igb bound: the helper gives the card two VFs (what `passagectl
#                vfs` asks of the service), and the rule and record it wrote go to OUT/seed
#   STAGE=boot   a "udev" boot (vm.py): no driver loaded yet, the card has no VFs; the seed goes
#                where the helper put it, then systemd-udevd loads drivers by modalias as at
#                boot, and the rule gives the card its VFs when igb binds it
set -u
OUT=${OUT:-/run/passage-out}
R=/run/passage-sriov
mkdir -p $R/state
# The rule lives on tmpfs (the setup boot's root is the host's, read-only); the host test
# carries it to the next boot, as a disk would.
mount -t tmpfs passage-rules /etc/udev/rules.d || { echo "no /etc/udev/rules.d (is udev installed?)"; exit 1; }
export SYSTEMD_IGNORE_CHROOT=1
numvfs() { cat /sys/bus/pci/devices/$PF/sriov_numvfs 2>&1; }
drv() { local l; l=$(readlink /sys/bus/pci/devices/$1/driver); echo ${l##*/}; }

if [ "$STAGE" = setup ]; then
  $HELPER --state-dir $R/state --set-vfs $PF=2 > $OUT/vfs.txt 2>&1; echo $? > $OUT/vfs.rc
  numvfs > $OUT/setup-numvfs.txt
  mkdir -p $OUT/seed
  cp /etc/udev/rules.d/63-passage-sriov.rules $R/state/sriov.json $OUT/seed/
  touch $OUT/job.done
  exit 0
fi

cp $OUT/seed/63-passage-sriov.rules /etc/udev/rules.d/
# The rule `passagectl fix d3cold-allowed` writes (made by the host test for the igb: QEMU
# offers no GPU, whose driver would allow runtime power management, for the doctor to name).
cp $OUT/seed/62-passage-power.rules /etc/udev/rules.d/
cp $OUT/seed/sriov.json $R/state/
mkdir -p /lib/modules
mount --bind "$(cat $OUT/moddir)" /lib/modules
echo "$(drv $PF) $(numvfs)" > $OUT/before-udev.txt
cat /sys/bus/pci/devices/$PF/d3cold_allowed > $OUT/d3cold-before.txt 2>&1
udevd=/lib/systemd/systemd-udevd
[ -x $udevd ] || udevd=/usr/lib/systemd/systemd-udevd
$udevd --debug --resolve-names=never > $OUT/udevd.log 2>&1 &
for _ in $(seq 100); do [ -S /run/udev/control ] && break; sleep 0.1; done
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=240; echo $? > $OUT/settle.rc
echo "$(drv $PF) $(numvfs)" > $OUT/after-udev.txt
cat /sys/bus/pci/devices/$PF/d3cold_allowed > $OUT/d3cold-after.txt 2>&1
for v in /sys/bus/pci/devices/$PF/virtfn*; do
  [ -e "$v" ] && echo "$(basename $(readlink $v)) $(drv $(basename $(readlink $v)))"
done > $OUT/vfs-after.txt
$PASSAGECTL list --json > $OUT/list.json 2> $OUT/list.err
udevadm control --exit
touch $OUT/job.done
