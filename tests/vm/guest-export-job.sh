# Runs inside the test VM (see guest-job.sh): a plan exported as QEMU arguments, and a QEMU
# started with exactly those arguments opening the claimed group on a real kernel. The host
# test prepends PASSAGECTL, HELPER and DEVICE (function 0 of a two-function card).
set -u
OUT=${OUT:-/run/passage-out}
R=/run/passage-export
mkdir -p $R/state
export XDG_CONFIG_HOME=$R
P=$PASSAGECTL
l=$(readlink /sys/bus/pci/devices/$DEVICE/iommu_group); G=${l##*/}
echo $G > $OUT/export-group
members() { for d in /sys/kernel/iommu_groups/$G/devices/*; do drv=$(readlink $d/driver 2>/dev/null); echo "${d##*/} ${drv##*/}"; done; }
members > $OUT/export-before.txt

# The plan as a person makes it: a plain QEMU guest, the whole group dropped on it.
$P guests add vm --vmm qemu --machine q35 > $OUT/plan.txt 2>&1
$P plan assign $G vm --plan $R/plan.json >> $OUT/plan.txt 2>&1; echo $? > $OUT/plan.rc
$P plan show --plan $R/plan.json >> $OUT/plan.txt 2>&1
$P export --plan $R/plan.json --guest vm --format qemu > $OUT/export.args 2> $OUT/export.err; echo $? > $OUT/export.rc

# Claim the group as the helper does at boot (root, no bus), then start QEMU with the export.
$HELPER --state-dir $R/state --claim $G > $OUT/claim.txt 2>&1; echo $? > $OUT/claim.rc
members > $OUT/export-claimed.txt
args=$(grep -v '^#' $OUT/export.args | tr -d '\\\n')
echo "qemu-system-x86_64 $args" > $OUT/qemu.cmd
t0=$(date +%s)
# shellcheck disable=SC2086
qemu-system-x86_64 -machine q35,accel=tcg -m 64 -nodefaults -display none -S \
  -qmp unix:$R/qmp.sock,server=on,wait=off $args > $OUT/qemu.log 2>&1 &
QPID=$!
for _ in $(seq 600); do [ -S $R/qmp.sock ] && break; kill -0 $QPID 2>/dev/null || break; sleep 0.1; done
cat > $R/qmp.py <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def call(cmd, **args):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
f.readline()
call("qmp_capabilities")
if sys.argv[2] == "query":
    out = {}
    for i in range(2):
        dev = f"/machine/peripheral/passage-hostdev{i}"
        out[f"passage-hostdev{i}"] = {p: call("qom-get", path=dev, property=p).get("return") for p in ["parent_bus", "addr", "host"]}
    json.dump(out, sys.stdout)
else:
    call("quit")
PY
# Where QEMU put each device (QMP answers once the machine is built), and its open files.
python3 $R/qmp.py $R/qmp.sock query > $OUT/qmp.json 2> $OUT/qmp.err; echo $? > $OUT/qmp.rc
ls -l /proc/$QPID/fd 2>/dev/null | sed -n 's/.*-> //p' | grep '^/dev/vfio' | sort -u > $OUT/qemu-fds.txt
# While QEMU holds the group, Passage says who holds it.
$P verify $G > $OUT/verify-while-open.txt 2>&1; echo $? > $OUT/verify-while-open.rc
$P list --json > $OUT/list-while-open.json 2>/dev/null
python3 $R/qmp.py $R/qmp.sock quit > /dev/null 2>&1
wait $QPID; echo $? > $OUT/qemu.rc
dmesg | tail -20 > $OUT/dmesg-after-qemu.txt
echo $(( $(date +%s) - t0 )) > $OUT/qemu.seconds
$HELPER --state-dir $R/state --release $G > $OUT/release.txt 2>&1; echo $? > $OUT/release.rc
members > $OUT/export-after.txt
touch $OUT/job.done
