# Runs inside the test VM (see guest-job.sh): the helper's transactions on a real kernel.
# The host test prepends PASSAGECTL, HELPER, MULTI (a member of a multi-device group), SINGLE
# (a device alone in its group), REFUSE (a member of MULTI that will not take vfio-pci).
set -u
OUT=${OUT:-/run/passage-out}
S=$OUT/state
H="$HELPER --state-dir $S"
P=$PASSAGECTL

listing() { # the kernel's own view: member driver, for every member of group $1
  local d drv
  for d in /sys/kernel/iommu_groups/$1/devices/*; do
    drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
    echo "${d##*/} ${drv:--}"
  done
}
group_of() { local l; l=$(readlink /sys/bus/pci/devices/$1/iommu_group); echo ${l##*/}; }

M=$(group_of $MULTI); Sg=$(group_of $SINGLE)
echo $M > $OUT/multi-group; echo $Sg > $OUT/single-group
listing $M > $OUT/multi-before.txt
listing $Sg > $OUT/single-before.txt

# 1. Single- and multi-device groups: claim, verify by QEMU's steps, release.
for g in $Sg $M; do
  $H --claim $g > $OUT/claim-$g.txt 2>&1; echo $? > $OUT/claim-$g.rc
  listing $g > $OUT/claimed-$g.txt
  $P verify $g > $OUT/verify-$g.txt 2>&1; echo $? > $OUT/verify-$g.rc
  $H --claim $g > $OUT/reclaim-$g.txt 2>&1; echo $? > $OUT/reclaim-$g.rc
  $H --release $g > $OUT/release-$g.txt 2>&1; echo $? > $OUT/release-$g.rc
  listing $g > $OUT/released-$g.txt
done

# 2. A member that will not take vfio-pci: its driver_override is pinned (a bind mount over the
# attribute swallows the write, as a kernel that ignores the override would), so the probe
# binds its own driver again. The claim must fail, naming it, and put every member back.
mount --bind /dev/null /sys/bus/pci/devices/$REFUSE/driver_override
$H --claim $M > $OUT/refused.txt 2>&1; echo $? > $OUT/refused.rc
umount /sys/bus/pci/devices/$REFUSE/driver_override
listing $M > $OUT/after-refusal.txt
ls $S > $OUT/state-after-refusal.txt 2>&1

# 3. Cost: the helper's whole claim (scan, journal with fsync, writes, checks) against a bare
# loop of the same sysfs writes; both then released by the helper.
bare() {
  for d in /sys/kernel/iommu_groups/$M/devices/*; do
    a=${d##*/}
    case $(cat /sys/bus/pci/devices/$a/class) in 0x0604*) continue ;; esac
    echo vfio-pci > /sys/bus/pci/devices/$a/driver_override
    [ -e /sys/bus/pci/devices/$a/driver ] && echo $a > /sys/bus/pci/devices/$a/driver/unbind
    echo $a > /sys/bus/pci/drivers_probe
  done
}
restore() {
  for d in /sys/kernel/iommu_groups/$M/devices/*; do
    a=${d##*/}
    echo > /sys/bus/pci/devices/$a/driver_override 2>/dev/null
    [ -e /sys/bus/pci/devices/$a/driver ] && echo $a > /sys/bus/pci/devices/$a/driver/unbind
    echo $a > /sys/bus/pci/drivers_probe
  done
}
: > $OUT/timings.txt
for round in 1 2 3; do
  t0=$(date +%s%N); bare; t1=$(date +%s%N); restore
  t2=$(date +%s%N); $H --claim $M > /dev/null 2>&1; t3=$(date +%s%N); $H --release $M > /dev/null 2>&1
  echo "bare_ms=$(( (t1 - t0) / 1000000 )) helper_ms=$(( (t3 - t2) / 1000000 ))" >> $OUT/timings.txt
done
listing $M > $OUT/multi-end.txt

# 4. The reset rehearsal on the lone e1000e: claimed, reset by the kernel's first method, checked
# to answer, given back to e1000e; kept per model and kernel.
cat /sys/bus/pci/devices/$SINGLE/reset_method > $OUT/reset-method.txt 2>&1
$H --rehearse-reset $Sg > $OUT/rehearse.txt 2>&1; echo $? > $OUT/rehearse.rc
listing $Sg > $OUT/rehearsed.txt
cp $S/resets.json $OUT/resets.json 2>/dev/null
echo done > $OUT/job.done
