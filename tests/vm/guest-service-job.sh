# Runs inside the test VM (see guest-job.sh): the helper as the D-Bus service it is, on a real
# kernel, with a private system bus and real polkitd inside the guest. The host test prepends
# PASSAGECTL, HELPER, REPO and DEVICE (an endpoint alone in its group).
set -u
OUT=${OUT:-/run/passage-out}
. $REPO/tests/vm/service-bus.sh
start_bus
setup_polkit
start_polkitd
start_helper

l=$(readlink /sys/bus/pci/devices/$DEVICE/iommu_group); G=${l##*/}
echo $G > $OUT/service-group
drv() { local d; d=$(readlink /sys/bus/pci/devices/$DEVICE/driver); echo ${d##*/}; }
drv > $OUT/service-before.txt
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
