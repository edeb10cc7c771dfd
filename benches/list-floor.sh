#!/usr/bin/env bash
# Benchmark (not a timed test; figures go to docs/PERFORMANCE.md): `passagectl list` against
# the floor — a bare single-threaded reader of only what identifies a function
# (benches/floor/floor.c: config header, iommu_group link, driver link) — and against lspci,
# side by side in one hyperfine run on the same generated host; `explain GROUP` beside them;
# peak RSS of each.
#
#   benches/list-floor.sh [PFSxVFS] [RUNS]     default 78x127 (10,063 functions), 20 runs
#
# Needs hyperfine, pciutils and a C compiler (apt-get install hyperfine pciutils gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-78x127}
runs=${2:-20}
. benches/sriov-tree.sh
sriov_tree list-floor.sh "$shape"
# A group in the middle of the farm, for explain.
group=$(ls "$tree/sys/kernel/iommu_groups" | sort -n | awk '{ a[NR] = $0 } END { print a[int(NR / 2)] }')
echo "tree: $(ls "$sysfs/devices" | wc -l) functions, $(ls "$tree/sys/kernel/iommu_groups" | wc -l) groups; explain $group"
echo "the floor reads $("$work/floor" "$tree" 2>/dev/null | wc -l) functions; list --json lists $($ctl list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')"
echo "output sizes: floor $("$work/floor" "$tree" 2>/dev/null | wc -c) B, list --json $($ctl list --json | wc -c) B," \
     "list $($ctl list | wc -c) B, lspci -nn $(lspci -nn -A linux-sysfs -O sysfs.path="$sysfs" | wc -c) B"
hyperfine -N -w 3 -r "$runs" --export-markdown "${OUT:-/dev/stdout}" --export-json "$work/runs.json" \
  -n "floor (C, one thread)" "$work/floor $tree" \
  -n "passagectl list --json" "$ctl list --json" \
  -n "passagectl list" "$ctl list" \
  -n "passagectl explain $group" "$ctl explain $group" \
  -n "lspci -nn" "lspci -nn -A linux-sysfs -O sysfs.path=$sysfs" \
  -n "lspci -nnvvk" "lspci -nnvvk -A linux-sysfs -O sysfs.path=$sysfs"
echo
# The ratios the targets are about, by median and by fastest run (this machine is a VM whose
# neighbours make means wander).
python3 - "$work/runs.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
floor = r[0]
for x in r[1:]:
    print(f"{x['command']:28} median {x['median']*1000:7.1f} ms = {x['median']/floor['median']:5.2f}x the floor"
          f" (fastest {x['min']*1000:6.1f} ms = {x['min']/floor['min']:4.2f}x)")
print(f"{'floor (C, one thread)':28} median {floor['median']*1000:7.1f} ms, fastest {floor['min']*1000:.1f} ms")
PY
echo
echo "peak RSS (one run each):"
for c in "$work/floor $tree" "$ctl list --json" "$ctl list" "$ctl explain $group" \
         "lspci -nn -A linux-sysfs -O sysfs.path=$sysfs" "lspci -nnvvk -A linux-sysfs -O sysfs.path=$sysfs"; do
  /usr/bin/time -f "%M" -o "$work/rss" $c >/dev/null 2>&1 || true
  printf '  %6d KiB  %s\n' "$(tail -n1 "$work/rss")" "${c//$work\//}"
done
