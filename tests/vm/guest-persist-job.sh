# Runs inside the test VM (see guest-job.sh): a persisted claim across a real boot.
# The host test prepends PASSAGECTL, HELPER, STAGE, PERSIST (addresses whose groups are
# persisted) and TWIN (an identical card that is not).
#   STAGE=setup  a normal boot, host drivers bound: persist the groups, keep what that wrote
#                (the udev rule, the modprobe softdeps, the re-claim list) in OUT/seed
#   STAGE=boot   a "udev" boot (vm.py): no host driver loaded yet; the seed goes where persist
#                put it, then systemd-udevd loads drivers by modalias as at boot, and the
#                boot-time re-claim (passage-reclaim.service's command) runs after it
set -u
OUT=${OUT:-/run/passage-out}
R=/run/passage-persist
mkdir -p $R/state

# Every PCI function: address, vendor:device, driver ("-" for none).
drivers() {
  local d drv
  for d in /sys/bus/pci/devices/*; do
    drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
    echo "${d##*/} $(cut -c3- "$d/vendor"):$(cut -c3- "$d/device") ${drv:--}"
  done
}
group_of() { local l; l=$(readlink /sys/bus/pci/devices/$1/iommu_group); echo ${l##*/}; }

# The files persistence writes live on tmpfs (the setup boot's root is the host's, read-only;
# the udev boot's is writable but forgotten at power-off); the host test carries them from one
# boot to the next, as a disk would.
mount -t tmpfs passage-rules /etc/udev/rules.d || { echo "no /etc/udev/rules.d (is udev installed?)"; exit 1; }
mount -t tmpfs passage-modprobe /etc/modprobe.d || { echo "no /etc/modprobe.d (is kmod installed?)"; exit 1; }
# dracut's and mkinitcpio's drop-in directories, where the host has them (dracut-core beside
# initramfs-tools, as ./dev test installs it): persist writes its drop-in there too.
for d in /etc/dracut.conf.d /etc/mkinitcpio.conf.d; do
  [ -d $d ] && { mount -t tmpfs passage-dropins $d || exit 1; }
done
# systemd's tools refuse to act inside a chroot unless told it is meant.
export SYSTEMD_IGNORE_CHROOT=1

if [ "$STAGE" = setup ]; then
  drivers > $OUT/setup-drivers.txt
  : > $OUT/persist.txt
  for a in $PERSIST; do
    $HELPER --state-dir $R/state --persist "$(group_of $a)" >> $OUT/persist.txt 2>&1
    echo $? >> $OUT/persist.rc
  done
  mkdir -p $OUT/seed
  cp /etc/udev/rules.d/61-passage-vfio.rules /etc/modprobe.d/passage-vfio.conf $R/state/persist.json $OUT/seed/
  touch $OUT/job.done
  exit 0
fi

cp $OUT/seed/61-passage-vfio.rules /etc/udev/rules.d/
cp $OUT/seed/passage-vfio.conf /etc/modprobe.d/
cp $OUT/seed/persist.json $R/state/
# The guest kernel's own modules, with depmod's indexes, where udev and kmod look.
mkdir -p /lib/modules
mount --bind "$(cat $OUT/moddir)" /lib/modules
drivers > $OUT/before-udev.txt
cut -d' ' -f1 /proc/modules | sort > $OUT/modules-before.txt
udevd=/lib/systemd/systemd-udevd
[ -x $udevd ] || udevd=/usr/lib/systemd/systemd-udevd
t0=$(date +%s)
# In the foreground (backgrounded here) with --debug, so its log says what each rule did.
$udevd --debug --resolve-names=never > $OUT/udevd.log 2>&1 &
for _ in $(seq 100); do [ -S /run/udev/control ] && break; sleep 0.1; done
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=240; echo $? > $OUT/settle.rc
echo $(( $(date +%s) - t0 )) > $OUT/udev.seconds
drivers > $OUT/after-udev.txt
cut -d' ' -f1 /proc/modules | sort > $OUT/modules.txt
$HELPER --state-dir $R/state --reclaim > $OUT/reclaim.txt 2>&1; echo $? > $OUT/reclaim.rc
drivers > $OUT/after-reclaim.txt
$PASSAGECTL list --json > $OUT/list.json 2> $OUT/list.err
udevadm control --exit
touch $OUT/job.done
