# Runs inside the test VM (topology "faults", see vm.py): the fault campaign. Every fault is
# injected on the real kernel at a named point of the helper's transactions (PASSAGE_FAULT_AT:
# a tests' build stops itself there, after marking the point in journal-N.step), so each kill,
# unplug, full disk or race lands exactly where it is aimed and the mark proves it. After each
# fault the system recovers as it would in life (the next start's replay, the operation's own
# rollback), and one line goes to $OUT/faults.tsv:
#   where  fault  aimed  landed  expected  outcome  stranded  journals-left  detail
# "stranded" counts members that had a driver before and are present with none after. The
# assertions and the table in docs/RELIABILITY.md are the host test's (tests/vm.rs).
# The host test prepends PASSAGECTL, HELPER, REPO and the addresses MULTI, MULTI2 (members of
# the two conventional groups), SINGLE (alone in its group), HP1 and HP2 (QMP ids hp1, hp2).
set -u
OUT=${OUT:-/run/passage-out}
# The helpers' own words only (errors), not their logs: the detail column quotes them.
export PASSAGE_LOG=error
S=/run/passage-faults/state
mkdir -p $S
H="$HELPER --state-dir $S"
TSV=$OUT/faults.tsv
: > $TSV
: > $OUT/errors.txt
mkdir -p $OUT/host-requests $OUT/base

# Under TCG every new process costs a few hundred milliseconds: the helpers below fork nothing
# (globs, builtins and globals instead of readlink, sleep and $(…)), so a hundred faults fit.
B=/run/passage-faults/base
mkdir -p $B
mkfifo /run/passage-faults/tick && exec 9<> /run/passage-faults/tick
snooze() { read -rt "$1" -u 9 _ || :; }
# DRV: the driver bound to $1, "" for none.
drv() { local d; DRV=; for d in /sys/bus/pci/drivers/*/$1; do [ -e "$d" ] || continue; d=${d%/*}; DRV=${d##*/}; return; done; }
group_of() { local l; l=$(readlink /sys/bus/pci/devices/$1/iommu_group); echo ${l##*/}; }
# The base state of group $1's endpoints ("member driver" lines) into $B/$2; bridges have no
# driver to lose and are never touched.
baseline() {
  local d a
  : > $B/$2
  for d in /sys/kernel/iommu_groups/$1/devices/*; do
    a=${d##*/}; drv $a
    [ -n "$DRV" ] && echo "$a $DRV" >> $B/$2
  done
}
# STATE: "addr=driver …" for the members of baseline $1 ("gone" for a device no longer there);
# STRANDED: how many are present with no driver; OUTCOME: their end in words.
look() {
  local a was back=0 vfio=0 gone=0 other=0
  STATE=; STRANDED=0
  while read -r a was; do
    if [ ! -e /sys/bus/pci/devices/$a ]; then gone=$((gone + 1)); STATE="${STATE:+$STATE }$a=gone"; continue; fi
    drv $a
    STATE="${STATE:+$STATE }$a=${DRV:--}"
    if [ -z "$DRV" ]; then STRANDED=$((STRANDED + 1)); other=$((other + 1))
    elif [ "$DRV" = "$was" ]; then back=$((back + 1))
    elif [ "$DRV" = vfio-pci ]; then vfio=$((vfio + 1))
    else other=$((other + 1)); fi
  done < $B/$1
  if [ $other -gt 0 ] || { [ $gone -gt 0 ] && [ $vfio -gt 0 ]; } || { [ $vfio -gt 0 ] && [ $back -gt 0 ]; }; then
    OUTCOME="mixed: $STATE"
  elif [ $gone -gt 0 ]; then OUTCOME="removed device left alone, the rest on host drivers"
  elif [ $vfio -eq 0 ]; then OUTCOME="host drivers"
  else OUTCOME="vfio-pci"; fi
}
# JOURNALS: unfinished operations' journals in state directory $1.
journals() { local j; JOURNALS=0; for j in $1/journal-*.json; do [ -e "$j" ] && JOURNALS=$((JOURNALS + 1)); done; }
# LANDED: where the operation on group $1 (state directory $2) stopped, from its progress mark;
# "none" when no operation left one (before the journal, or after it was closed).
landed() {
  if [ -e $2/journal-$1.step ]; then read -r LANDED _ < $2/journal-$1.step
  elif [ -e $2/journal-$1.json ]; then LANDED=journaled
  else LANDED=none; fi
}
stopped() { # waits until process $1 has stopped itself at its fault point
  local st i
  for i in $(seq 1200); do
    read -r _ _ st _ < /proc/$1/stat 2>/dev/null || return 1
    [ "$st" = T ] && return 0
    snooze 0.02
  done
  return 1
}
# record WHERE FAULT AIMED LANDED EXPECTED BASE STATE-DIR DETAIL: one line, the members of
# BASE looked at now.
record() {
  look $6; journals $7
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$OUTCOME" "$STRANDED" "$JOURNALS" "$8" >> $TSV
}
oneline() { grep -v 'fault point' $1 | tr '\n' ' ' | cut -c1-${2:-200}; }
# Back to the base state (host drivers) for the next fault; a failure here is an error.
reset() { # group base [state dir]
  look $2
  [ "$OUTCOME" = "host drivers" ] && return
  $HELPER --state-dir ${3:-$S} --release $1 >> $OUT/reset.log 2>&1
  look $2
  [ "$OUTCOME" = "host drivers" ] || echo "reset of group $1 left: $STATE" >> $OUT/errors.txt
}
ask_qemu() { # name json: a QMP command, carried by vm.py; prints QEMU's answer
  echo "$2" > $OUT/host-requests/$1.tmp && mv $OUT/host-requests/$1.tmp $OUT/host-requests/$1.json
  for _ in $(seq 600); do [ -e $OUT/host-requests/$1.reply ] && break; snooze 0.05; done
  cat $OUT/host-requests/$1.reply 2>/dev/null
}
# Binds every endpoint of baseline $1 to vfio-pci by hand, as another tool would.
by_hand() {
  local a was
  while read -r a was; do
    echo vfio-pci > /sys/bus/pci/devices/$a/driver_override
    [ -e /sys/bus/pci/devices/$a/driver ] && echo $a > /sys/bus/pci/devices/$a/driver/unbind
    echo $a > /sys/bus/pci/drivers_probe
  done < $B/$1
}
# kill_at WHERE GROUP BASE POINT EXPECTED HELPER-ARGS…: runs the helper aimed at POINT, kills
# it there with SIGKILL, and lets the next one-shot run replay what it left.
kill_at() {
  local where=$1 g=$2 base=$3 point=$4 expected=$5 pid rc
  shift 5
  PASSAGE_FAULT_AT=$point $H "$@" >> $OUT/helper-runs.log 2>&1 &
  pid=$!
  if stopped $pid; then
    landed $g $S; look $base
    kill -9 $pid; wait $pid 2>/dev/null
    $H --replay >> $OUT/replays.log 2>&1
    record "$where" "kill -9 during ${1#--} of ${L[$g]}" "$point" "$LANDED" "$expected" $base $S "at the kill: $STATE"
  else
    wait $pid; rc=$?
    record "$where" "kill -9 during ${1#--} of ${L[$g]}" "$point" "not reached (exit $rc)" "$expected" $base $S ""
  fi
}
endpoints() { local n=0 l; while read -r l; do n=$((n + 1)); done < $B/$1; ENDPOINTS=$n; }

uname -r > $OUT/kernel-release
GM=$(group_of $MULTI); GM2=$(group_of $MULTI2); GS=$(group_of $SINGLE)
GH1=$(group_of $HP1); GH2=$(group_of $HP2)
for g in $GM $GM2 $GS $GH1 $GH2; do baseline $g g$g; done
declare -A L=([$GM]="the e1000 + rtl8139 behind a PCIe-to-PCI bridge" [$GM2]="the e1000 + rtl8139 behind a PCI bridge"
  [$GS]="an e1000e alone" [$GH1]="a hot-pluggable e1000e" [$GH2]="a hot-pluggable e1000e")
cp -r $B $OUT/base
{ read -r FIRST FIRST_DRV; read -r REFUSE _; } < $B/g$GM   # the e1000 and the rtl8139 behind the PCIe-to-PCI bridge

# 1. kill -9 at every point of a claim, and of a release, of three groups.
for g in $GM $GM2 $GS; do
  endpoints g$g; n=$((ENDPOINTS * 4))
  for p in begin $(seq 0 $((n - 1))) verified recorded; do
    kill_at "claim, one-shot" $g g$g claim:$p "host drivers" --claim $g
    reset $g g$g
  done
  for p in begin $(seq 0 $((n - 1))) done unrecorded; do
    $H --claim $g >> $OUT/setup.log 2>&1
    # Killed before its journal, the release never began: the group is still claimed.
    want="host drivers"; [ $p = begin ] && want=vfio-pci
    kill_at "release, one-shot" $g g$g release:$p "$want" --release $g
    reset $g g$g
  done
done

# 2. kill -9 at every point of releasing groups someone else put on vfio-pci (no record of
# their drivers): replay must leave them on vfio-pci (as found, usable), never on nothing.
for g in $GM $GS; do
  endpoints g$g; n=$((ENDPOINTS * 3))
  for p in begin $(seq 0 $((n - 1))) done unrecorded; do
    by_hand g$g
    kill_at "release of a foreign claim" $g g$g release:$p "vfio-pci" --release $g
    reset $g g$g
  done
done

# 3. A member vfio-pci never takes (its driver_override write is swallowed: a bind mount of
# /dev/null over the attribute), so the claim rolls back; kill -9 at every rollback step.
mount --bind /dev/null /sys/bus/pci/devices/$REFUSE/driver_override
$H --claim $GM > $OUT/refused.txt 2>&1; rc=$?
record "claim, one-shot" "vfio-pci never takes $REFUSE (override swallowed)" "-" "-" "host drivers" g$GM $S "exit $rc: $(oneline $OUT/refused.txt 160)"
for p in 0 1 2 3 4; do
  kill_at "rollback of a refused claim" $GM g$GM rollback:$p "host drivers" --claim $GM
done
umount /sys/bus/pci/devices/$REFUSE/driver_override
reset $GM g$GM

# 4. kill -9 at every step of a replay (of a claim killed about to probe the second member:
# the first on vfio-pci, the second on no driver), then the next replay.
endpoints g$GM; n=$((ENDPOINTS * 4 - 1))
for p in $(seq 0 $((n - 1))) done; do
  PASSAGE_FAULT_AT=claim:6 $H --claim $GM >> $OUT/helper-runs.log 2>&1 &
  pid=$!; stopped $pid; kill -9 $pid; wait $pid 2>/dev/null
  kill_at "replay after a crash" $GM g$GM replay:$p "host drivers" --replay
  reset $GM g$GM
done

# 5. Drivers and sysfs refusing: a read-only bind mount over the attribute makes its write
# fail (EROFS) as a driver that refuses would. The outcome is after the next start (a release
# that failed keeps its journal for the next start to finish); what the operation itself left
# is in the detail.
ro() { touch /run/ro-file; mount --bind /run/ro-file $1 && mount -o remount,bind,ro $1; }
refusal() { # where fault attribute expected helper-args…
  local where=$1 fault=$2 attr=$3 expected=$4 right_after rc
  shift 4
  ro $attr
  $H "$@" > $OUT/refusal.txt 2>&1; rc=$?
  look g$GM; right_after="$STATE (stranded $STRANDED)"
  umount $attr
  $H --replay >> $OUT/replays.log 2>&1
  record "$where" "$fault" "-" "-" "$expected" g$GM $S "exit $rc; right after: $right_after; $(oneline $OUT/refusal.txt)"
}
refusal "claim, one-shot" "$FIRST_DRV refuses to unbind $FIRST" /sys/bus/pci/drivers/$FIRST_DRV/unbind "host drivers" --claim $GM
reset $GM g$GM
refusal "claim, one-shot" "drivers_probe refused" /sys/bus/pci/drivers_probe "host drivers" --claim $GM
reset $GM g$GM
$H --claim $GM >> $OUT/setup.log 2>&1
refusal "release, one-shot" "$FIRST_DRV refuses to bind $FIRST back" /sys/bus/pci/drivers/$FIRST_DRV/bind "host drivers" --release $GM
reset $GM g$GM
$H --claim $GM >> $OUT/setup.log 2>&1
refusal "release, one-shot" "vfio-pci refuses to unbind" /sys/bus/pci/drivers/vfio-pci/unbind "host drivers" --release $GM
reset $GM g$GM

# 6. A full state directory (a 16 KiB tmpfs filled up): before a claim, in the middle of one,
# before a release.
F=/run/passage-faults/small
mkdir -p $F && mount -t tmpfs -o size=16k small $F
HF="$HELPER --state-dir $F"
fill() { dd if=/dev/zero of=$F/filler bs=1k 2>/dev/null; }
fill
$HF --claim $GS > $OUT/full.txt 2>&1; rc=$?
record "claim, one-shot" "state directory full before the claim" "-" "-" "host drivers" g$GS $F "exit $rc: $(oneline $OUT/full.txt)"
rm -f $F/filler
PASSAGE_FAULT_AT=claim:verified $HF --claim $GS > $OUT/full.txt 2>&1 &
pid=$!
if stopped $pid; then landed $GS $F; fill; kill -CONT $pid; wait $pid; rc=$?; else LANDED="not reached"; wait $pid; rc=$?; fi
record "claim, one-shot" "state directory fills before the claim is recorded" "claim:verified" "$LANDED" "host drivers" g$GS $F "exit $rc: $(oneline $OUT/full.txt)"
rm -f $F/filler
$HF --claim $GS >> $OUT/setup.log 2>&1
fill
$HF --release $GS > $OUT/full.txt 2>&1; rc=$?
record "release, one-shot" "state directory full before the release" "-" "-" "vfio-pci" g$GS $F "exit $rc: $(oneline $OUT/full.txt)"
rm -f $F/filler
reset $GS g$GS $F

# 7. A card hot-unplugged (QMP device_del on its root port) in the middle of a claim and of a
# release: the helper is stopped at the point, the card removed, the helper continued.
unplug_at() { # where group base point qmp-id address expected helper-args…
  local where=$1 g=$2 base=$3 point=$4 id=$5 a=$6 expected=$7 pid rc answer=
  shift 7
  PASSAGE_FAULT_AT=$point $H "$@" > $OUT/unplug.txt 2>&1 &
  pid=$!
  if stopped $pid; then
    landed $g $S
    answer=$(ask_qemu del-$id "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"$id\"}}")
    for _ in $(seq 300); do [ -e /sys/bus/pci/devices/$a ] || break; snooze 0.1; done
    kill -CONT $pid; wait $pid; rc=$?
    $H --replay >> $OUT/replays.log 2>&1
  else
    LANDED="not reached"; wait $pid; rc=$?
  fi
  record "$where" "card hot-unplugged during ${1#--} of ${L[$g]}" "$point" "$LANDED" "$expected" $base $S "QMP: $answer; exit $rc: $(oneline $OUT/unplug.txt)"
}
unplug_at "claim, one-shot" $GH1 g$GH1 claim:1 hp1 $HP1 "removed device left alone, the rest on host drivers" --claim $GH1
$H --claim $GH2 >> $OUT/setup.log 2>&1
unplug_at "release, one-shot" $GH2 g$GH2 release:1 hp2 $HP2 "removed device left alone, the rest on host drivers" --release $GH2
ls $S/claims > $OUT/claims-after-unplug.txt

# 8. Races between processes: a second helper while one is stopped half-way through a claim
# (and through a release), and a one-shot replay during a live claim.
race() { # where fault point expected first-args second-args
  local where=$1 fault=$2 point=$3 expected=$4 first=$5 second=$6 pid before rc rc2=-
  PASSAGE_FAULT_AT=$point $H $first >> $OUT/helper-runs.log 2>&1 &
  pid=$!
  : > $OUT/race.txt
  if stopped $pid; then
    landed $GM $S; look g$GM; before=$STATE
    $H $second > $OUT/race.txt 2>&1; rc2=$?
    look g$GM
    [ "$before" = "$STATE" ] || echo "$fault: the second helper changed $before to $STATE" >> $OUT/errors.txt
    kill -CONT $pid; wait $pid; rc=$?
  else
    LANDED="not reached"; wait $pid; rc=$?
  fi
  record "$where" "$fault" "$point" "$LANDED" "$expected" g$GM $S "second: exit $rc2: $(oneline $OUT/race.txt 160); first: exit $rc"
}
race "two helpers" "a second --claim while the first is half-way" claim:2 "vfio-pci" "--claim $GM" "--claim $GM"
race "two helpers" "a second --release while the first is half-way" release:2 "host drivers" "--release $GM" "--release $GM"
race "two helpers" "a one-shot --replay during a live claim" claim:3 "vfio-pci" "--claim $GM" "--replay"
reset $GM g$GM

# 9. The service on its bus, with real polkitd: killed mid-claim and mid-release (the next
# start replays), polkitd killed while a request waits for it, dbus-daemon killed mid-claim.
. $REPO/tests/vm/service-bus.sh
start_bus
setup_polkit
start_polkitd
RS=$R/state
stop_helper() { local p; read -r p < $R/helper.pid; kill $p 2>/dev/null; wait $p 2>/dev/null; }
service_kill() { # point expected passagectl-args…
  local point=$1 expected=$2 pid client
  shift 2
  start_helper PASSAGE_FAULT_AT=$point
  read -r pid < $R/helper.pid
  $PASSAGECTL "$@" > $OUT/service.txt 2>&1 &
  client=$!
  if stopped $pid; then
    landed $GS $RS
    kill -9 $pid; wait $pid 2>/dev/null
  else
    LANDED="not reached"
  fi
  wait $client
  start_helper   # its start replays what the killed one left
  record "service" "kill -9 of the service during passagectl ${*}" "$point" "$LANDED" "$expected" g$GS $RS "client: $(oneline $OUT/service.txt 160)"
  stop_helper
}
for p in 0 2 verified; do service_kill claim:$p "host drivers" claim $GS; done
# A group the one-shot claimed (its record is in another state directory): the service finds
# it on vfio-pci with no record of its drivers and releases it to the kernel's choice.
$H --claim $GS >> $OUT/setup.log 2>&1
service_kill release:1 "vfio-pci" release $GS
reset $GS g$GS

# polkitd killed while nobody's claim waits for its slow rule.
start_helper
as_nobody $PASSAGECTL_NOBODY claim $GS > $OUT/polkit.txt 2>&1 &
client=$!
snooze 1
read -r pk < $R/polkitd.pid; kill -9 $pk
wait $client; rc=$?
record "service" "polkitd killed while a claim waits for its decision" "-" "-" "host drivers" g$GS $RS "exit $rc: $(oneline $OUT/polkit.txt)"
start_polkitd
$PASSAGECTL claim $GS > $OUT/polkit-after.txt 2>&1; rc=$?
record "service" "a claim after polkitd came back" "check" "-" "vfio-pci" g$GS $RS "exit $rc: $(oneline $OUT/polkit-after.txt 160)"
$PASSAGECTL release $GS >> $OUT/setup.log 2>&1
stop_helper

# dbus-daemon killed while the service is half-way through a claim: the service finishes the
# transaction, sees the bus gone and exits; a fresh bus and service find the claim complete.
start_helper PASSAGE_FAULT_AT=claim:2
read -r pid < $R/helper.pid
$PASSAGECTL claim $GS > $OUT/bus.txt 2>&1 &
client=$!
if stopped $pid; then
  landed $GS $RS
  read -r bus < $R/dbus.pid; kill -9 $bus
  kill -CONT $pid
  for _ in $(seq 200); do [ -d /proc/$pid ] || break; snooze 0.1; done
  [ -d /proc/$pid ] && { echo "the service outlived its bus" >> $OUT/errors.txt; kill -9 $pid; }
else
  LANDED="not reached"
fi
wait $client
look g$GS; at=$STATE
start_bus
start_helper
record "service" "dbus-daemon killed during a claim" "claim:2" "$LANDED" "vfio-pci" g$GS $RS "right after: $at; client: $(oneline $OUT/bus.txt 120)"
$PASSAGECTL release $GS >> $OUT/setup.log 2>&1
reset $GS g$GS $RS
stop_helper

for g in $GM $GM2 $GS; do baseline $g end-$g; done
cp $B/end-* $OUT/
echo done > $OUT/job.done
