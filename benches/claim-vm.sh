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
for device in 0000:02:01.0 0000:04:00.0; do
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
  awk '{ split($2, b, "="); split($3, s, "="); if (s[2] ~ /^error/) { print "round " $1 ": " $0; bad = 1 }
         bare[NR] = b[2]; svc[NR] = s[2] }
       END { n = asort(bare); asort(svc)
             mb = (n % 2) ? bare[(n + 1) / 2] : (bare[n / 2] + bare[n / 2 + 1]) / 2
             ms = (n % 2) ? svc[(n + 1) / 2] : (svc[n / 2] + svc[n / 2 + 1]) / 2
             printf "  %d rounds: bare loop median %.0f ms (%d–%d), service claim median %.0f ms (%.0f–%.0f): %.2f×\n",
                    n, mb, bare[1], bare[n], ms, svc[1], svc[n], ms / mb
             exit bad }' "$out/claim-times.txt"
done
