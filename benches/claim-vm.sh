#!/usr/bin/env bash
# Benchmark: a claim through the running helper service (release build) against a bare shell
# loop of the same sysfs writes, side by side in one run on the real kernel in the VM bed (not
# a timed test: the figures go to docs/PERFORMANCE.md).
#
#   benches/claim-vm.sh [ROUNDS]     default 15; both the multi-device group behind the
#                                    PCIe-to-PCI bridge (e1000 + rtl8139) and an e1000e alone
#
# Prints, per group, the medians of both and their ratio, two bare round trips for scale, and
# where the service's time goes: the request's way to the method, the method (its fresh read,
# its transaction) and the reply's way back, from the client's wall clock beside the helper's
# log.
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
  # Where the service's time goes, per round: the request's way to the helper's method, the
  # method itself (the helper's own log), the reply's way back (the client's wall clock
  # beside the helper's log; one machine, one clock).
  python3 - "$out/client.log" "$out/helper.log" <<'PY'
import datetime, re, statistics, sys
sent = [tuple(map(float, re.findall(r"at ([\d.]+)", l)))
        for l in open(sys.argv[1], encoding="utf-8") if "claim sent" in l]
UNIT = {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
def ms(line, name):
    # Rust's Duration as Debug prints it: 850ns, 12.3µs, 4.5ms, 1.2s.
    m = re.search(name + r" ([\d.]+)(ns|µs|ms|s)\b", line)
    return float(m.group(1)) * UNIT[m.group(2)]
done = []
for l in open(sys.argv[2], encoding="utf-8"):
    l = re.sub(r"\x1b\[[0-9;]*m", "", l)
    if "claim of group" in l:
        at = datetime.datetime.fromisoformat(l.split("Z")[0]).replace(tzinfo=datetime.timezone.utc)
        done.append((at.timestamp(), ms(l, "in all"), ms(l, "read"), ms(l, "changed")))
if len(sent) != len(done):
    sys.exit(f"{len(sent)} claims sent but {len(done)} in the helper's log: rounds cannot be paired")
rows = [((e - a / 1000 - s) * 1000, a, r, c, (t - e) * 1000) for (s, t), (e, a, r, c) in zip(sent, done)]
if rows:
    med = lambda i: statistics.median(x[i] for x in rows)
    print(f"  the service's claim, medians: request to the method {med(0):.1f} ms, the method {med(1):.1f} ms"
          f" (of which the fresh read {med(2):.1f}, the transaction {med(3):.1f}), its end to the reply received {med(4):.1f} ms")
PY
done
