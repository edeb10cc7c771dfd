#!/usr/bin/env bash
# Benchmark (not a timed test; figures go to docs/PERFORMANCE.md): `passagectl draw` on a
# generated SR-IOV host, folded (a PF's VFs as one node) and with every VF drawn, beside the
# tree people paste today (`lspci -tvnn` on the same tree) and the floor reader
# (benches/floor/floor.c); peak RSS of each; the SVG's size.
#
#   benches/draw.sh [PFSxVFS] [RUNS]     default 78x127 (10,063 functions), 10 runs
#
# Needs hyperfine, pciutils and a C compiler (apt-get install hyperfine pciutils gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-78x127}
runs=${2:-10}
. benches/sriov-tree.sh
sriov_tree draw.sh "$shape"
echo "tree: $(ls "$sysfs/devices" | wc -l) functions, $(ls "$tree/sys/kernel/iommu_groups" | wc -l) groups"
$ctl draw -o "$work/folded.svg"
$ctl draw --all-vfs -o "$work/all.svg"
echo "SVG: folded $(wc -c < "$work/folded.svg") B, every VF $(wc -c < "$work/all.svg") B"
hyperfine -N -w 2 -r "$runs" --export-markdown "$work/table.md" \
  -n "floor (C, one thread)" "$work/floor $tree" \
  -n "passagectl draw" "$ctl draw -o $work/folded.svg" \
  -n "passagectl draw --all-vfs" "$ctl draw --all-vfs -o $work/all.svg" \
  -n "lspci -tvnn" "lspci -tvnn -A linux-sysfs -O sysfs.path=$sysfs"
echo
cat "$work/table.md"
if [ -n "${OUT:-}" ]; then cp "$work/table.md" "$OUT"; fi
echo
for cmd in "$ctl draw -o $work/folded.svg" "$ctl draw --all-vfs -o $work/all.svg" "lspci -tvnn -A linux-sysfs -O sysfs.path=$sysfs"; do
  /usr/bin/time -f "peak RSS %M KiB: $cmd" $cmd > /dev/null
done 2>&1 | sed "s|$work|…|g"
