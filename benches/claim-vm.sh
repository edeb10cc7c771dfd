#!/usr/bin/env bash
# Benchmark: a claim through the running helper service (release build) against a bare shell
# loop of the same sysfs writes, side by side in one run on the real kernel in the VM bed (not
# a timed test: the figures go to docs/PERFORMANCE.md).
#
#   benches/claim-vm.sh [ROUNDS]     default 15; both the multi-device group behind the
#                                    PCIe-to-PCI bridge (e1000 + rtl8139) and an e1000e alone
#
# Needs what the VM tests need (./dev test installs it: qemu-system-x86, busybox-static,
# dbus, polkitd).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-15}
cargo build --release -q -p passage-helper -p passagectl
cargo build --release -q -p passage-dbus --example claim_round
for device in ${DEVICES:-0000:02:01.0 0000:04:00.0}; do
  out=target/tmp/bench-claim-$device
  rm -rf "$out" && mkdir -p "$out"
  job=$out.job.sh
  {
    echo "HELPER=$PWD/target/release/passage-helper"
    echo "CLIENT=$PWD/target/release/examples/claim_round"
    echo "PASSAGECTL=$PWD/target/release/passagectl"
    echo "REPO=$PWD"
    echo "DEVICE=$device"
    echo "ROUNDS=$rounds"
    cat benches/claim-vm-job.sh
  } > "$job"
  python3 tests/vm/vm.py run pci-bridges "$out" "$job" > /dev/null
  [ -e "$out/job.done" ] || { cat "$out/job.log"; exit 1; }
  [ ! -s "$out/errors.txt" ] || { cat "$out/errors.txt"; exit 1; }
  echo "$(cat "$out/claim-group.txt")"
  python3 - "$out/claim-times.txt" <<'PY'
import statistics, sys
rows = [dict(f.split("=", 1) for f in l.split()[1:]) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rows if r["service"].startswith("error")]
if bad:
    sys.exit(f"failed rounds: {bad}")
bare = [float(r["bare"]) for r in rows]
svc = [float(r["service"]) for r in rows]
mb, ms = statistics.median(bare), statistics.median(svc)
print(f"  {len(rows)} rounds: bare loop median {mb:.0f} ms ({min(bare):.0f}-{max(bare):.0f}), "
      f"service claim median {ms:.0f} ms ({min(svc):.0f}-{max(svc):.0f}): {ms / mb:.2f}x")
ping = [float(r["ping"]) for r in rows]
read = [float(r["read"]) for r in rows]
print(f"  for scale, a bare round trip to the helper: Peer.Ping median {statistics.median(ping):.1f} ms "
      f"({min(ping):.1f}-{max(ping):.1f}), Claims (authorized, read only) median {statistics.median(read):.1f} ms "
      f"({min(read):.1f}-{max(read):.1f})")
PY
done
