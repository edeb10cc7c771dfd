#!/usr/bin/env bash
# Benchmark (not a timed test): the app on a generated 10,000-function SR-IOV host, beside
# `passagectl list` on the same tree. Figures go to docs/PERFORMANCE.md.
#
#   benches/app-10k.sh [PFSxVFS]      default 80x127 (≈10,300 functions)
#
# Measures: time to the first mapped window (the scan runs off the main loop), time until every
# group is in the list (the probe's "loaded"), resident memory then; and passagectl list's own
# time on the tree. Needs Xvfb and xdotool (./dev test installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-80x127}
work=$(mktemp -d /tmp/passage-appbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q --bin passage --bin passagectl --example mktree
target/release/examples/mktree --sriov "$shape" "$work/tree"
echo "tree: $(ls "$work/tree/sys/bus/pci/devices" | wc -l) functions, $(ls "$work/tree/sys/kernel/iommu_groups" | wc -l) groups"
now() { date +%s.%N; }
t=$(now); target/release/passagectl --root "$work/tree" list --json > /dev/null; t_list=$(echo "$(now) - $t" | bc)
Xvfb :66 -screen 0 1400x900x24 -nolisten tcp 2>/dev/null &
for _ in $(seq 100); do [ -e /tmp/.X11-unix/X66 ] && break; sleep 0.05; done
export DISPLAY=:66 GDK_BACKEND=x11 GSK_RENDERER=cairo NO_AT_BRIDGE=1 XDG_CONFIG_HOME="$work"
t0=$(now)
PASSAGE_PROBE="$work/probe.json" target/release/passage --root "$work/tree" --plan "$work/plan.json" 2>/dev/null &
pid=$!
xdotool search --sync --onlyvisible --name '^Passage$' > /dev/null
t_frame=$(echo "$(now) - $t0" | bc)
until grep -q '"loaded":true' "$work/probe.json" 2>/dev/null; do sleep 0.02; done
t_loaded=$(echo "$(now) - $t0" | bc)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
printf 'passagectl list --json: %.3f s\nfirst window mapped:    %.3f s\nevery group listed:     %.3f s (the probe polls every 0.2 s)\nresident memory:        %d MiB\n' \
  "$t_list" "$t_frame" "$t_loaded" $((rss / 1024))
