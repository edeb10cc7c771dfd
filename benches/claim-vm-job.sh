# Runs inside the test VM (benches/claim-vm.sh prepends HELPER, CLIENT, PASSAGECTL, REPO,
# DEVICE and ROUNDS): claims of one group through the running helper service (release build,
# private system bus, real polkitd) against a bare bash loop of the same sysfs writes, the
# rounds interleaved so both meet the same machine. Times in ms, one line per round, to
# $OUT/claim-times.txt.
set -u
OUT=${OUT:-/run/passage-out}
. $REPO/tests/vm/service-bus.sh
start_bus
setup_polkit
start_polkitd
# Both logs stay on the guest's tmpfs while rounds are timed (a line written to the OUT share
# is a round trip to QEMU's 9p server, inside the helper's timed claim; an installed helper
# logs to the journal) and are copied out at the end.
HELPER_LOG=$R/helper.log
start_helper PASSAGE_LOG=passage_helper=debug,info
l=$(readlink /sys/bus/pci/devices/$DEVICE/iommu_group); G=${l##*/}
MEMBERS=
for d in /sys/kernel/iommu_groups/$G/devices/*; do
  a=${d##*/}
  [ -e $d/driver ] && MEMBERS="$MEMBERS $a"   # endpoints with a host driver (bridges have none)
done
DRIVERS=
for a in $MEMBERS; do d=$(readlink /sys/bus/pci/devices/$a/driver); DRIVERS="$DRIVERS ${d##*/}"; done
echo "group $G:$MEMBERS ($DRIVERS )" > $OUT/claim-group.txt
BS=/run/passage-bare && mkdir -p $BS
JOURNAL=$(printf '{"version":1,"operation":"claim","group":%s,"members":[%s]}' $G "$(for a in $MEMBERS; do printf '{"address":"%s"},' $a; done)")

# The bare loop: what a careful script does — its journal, the same three writes per member
# (libvirt's sequence), a check that vfio-pci took each one, the record. All builtins, no
# process started; no fsync either (a shell has none without starting `sync`, and on this
# tmpfs an fsync costs nothing), which favours the bare loop.
bare() {
  local a
  printf '%s' "$JOURNAL" > $BS/journal.json
  for a in $MEMBERS; do
    echo vfio-pci > /sys/bus/pci/devices/$a/driver_override
    echo $a > /sys/bus/pci/devices/$a/driver/unbind
    echo $a > /sys/bus/pci/drivers_probe
    [ -e /sys/bus/pci/drivers/vfio-pci/$a ] || echo "bare: $a did not bind" >> $OUT/errors.txt
  done
  printf '%s' "$JOURNAL" > $BS/record.json
  : > $BS/journal.json
}
unbare() {
  local a d i=0
  set -- $DRIVERS
  for a in $MEMBERS; do
    i=$((i + 1))
    echo > /sys/bus/pci/devices/$a/driver_override
    echo $a > /sys/bus/pci/devices/$a/driver/unbind
    echo $a > /sys/bus/pci/drivers/${!i}/bind
  done
}
coproc CL { $CLIENT $G 2>> $R/client.log; }
: > $OUT/claim-times.txt
# Each timed claim starts from a machine at rest: a rebind to the NIC's own driver leaves the
# kernel work for a while after the write returns (the driver's probe finishing, its network
# interface added, their events). Without this pause the service's claim, started at once
# after `unbare`, met that work while the bare loop, started after the client's untimed
# release, Ping and Claims, met less of it.
at_rest() { sleep 0.3; }
for r in $(seq $ROUNDS); do
  at_rest
  t0=$EPOCHREALTIME; bare; t1=$EPOCHREALTIME
  unbare
  at_rest
  echo go >&${CL[1]}; read -r service ping read <&${CL[0]}
  bare_ms=$(( (${t1/./} - ${t0/./}) / 1000 ))
  echo "$r bare=$bare_ms service=$service ping=${ping:-?} read=${read:-?}" >> $OUT/claim-times.txt
done
exec {CL[1]}>&-
listing() { for a in $MEMBERS; do d=$(readlink /sys/bus/pci/devices/$a/driver); echo "$a ${d##*/}"; done; }
listing > $OUT/claim-end.txt
cp $R/helper.log $R/client.log $OUT/
echo done > $OUT/job.done
