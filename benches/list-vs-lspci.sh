#!/usr/bin/env bash
# Benchmark: `passagectl list --json` against lspci on the same generated host, side by side in
# one hyperfine run (not a timed test: figures go to docs/PERFORMANCE.md).
#
#   benches/list-vs-lspci.sh [PFSxVFS]     default 80x127 (≈10,300 functions, SR-IOV heavy)
#
# Needs hyperfine and pciutils (apt-get install hyperfine pciutils).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-80x127}
tree=$(mktemp -d /tmp/passage-bench.XXXXXX)
trap 'rm -rf "$tree"' EXIT
cargo build --release -q -p passagectl
cargo build --release -q -p passage-core --example mktree
target/release/examples/mktree --sriov "$shape" "$tree"
sysfs="$tree/sys/bus/pci"
echo "tree: $(ls "$sysfs/devices" | wc -l) functions, $(ls "$tree/sys/kernel/iommu_groups" | wc -l) groups"
echo "output sizes: passagectl $(target/release/passagectl --root "$tree" list --json | wc -c) B," \
     "lspci -nn $(lspci -nn -A linux-sysfs -O sysfs.path="$sysfs" | wc -c) B," \
     "lspci -nnvvk $(lspci -nnvvk -A linux-sysfs -O sysfs.path="$sysfs" 2>/dev/null | wc -c) B"
hyperfine -N -w 2 -r "${RUNS:-10}" --export-markdown "${OUT:-/dev/stdout}" \
  -n "passagectl list --json" "target/release/passagectl --root $tree list --json" \
  -n "lspci -nn" "lspci -nn -A linux-sysfs -O sysfs.path=$sysfs" \
  -n "lspci -nnvvk" "lspci -nnvvk -A linux-sysfs -O sysfs.path=$sysfs"
# Peak memory of one run each.
for c in "target/release/passagectl --root $tree list --json" "lspci -nnvvk -A linux-sysfs -O sysfs.path=$sysfs"; do
  /usr/bin/time -f "%M KiB max RSS: $c" $c >/dev/null 2>/tmp/passage-bench-rss || true
  tail -n1 /tmp/passage-bench-rss
done
