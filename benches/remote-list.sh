#!/usr/bin/env bash
# Benchmark (not a timed test; figures go to docs/PERFORMANCE.md): `passagectl -H HOST list
# --json` against the local `passagectl list --json` of the same host, side by side in one
# hyperfine run — the price of reaching a machine through its helper (the model it keeps,
# serialized, over D-Bus and systemd-stdio-bridge) instead of scanning sysfs here.
#
#   benches/remote-list.sh [PFSxVFS] [RUNS]     default 78x127 (10,063 functions), 10 runs
#
# The "machine" is a release passage-helper serving the generated host (read-only, --root) on a
# private system bus, reached three ways: the stand-in ssh (tests/remote/ssh-standin: the real
# bridge, no network), and a real sshd on 127.0.0.1 (the whole ssh handshake on each run) when
# openssh-server is installed. Needs hyperfine, dbus-daemon, systemd-stdio-bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-78x127}
runs=${2:-10}
. benches/sriov-tree.sh
sriov_tree remote-list.sh "$shape"
cargo build --release -q -p passage-helper
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_type="method_call"/><allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/><allow receive_type="method_return"/>
    <allow receive_type="error"/><allow receive_type="signal"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile & pids+=($!)
for _ in $(seq 100); do [ -S "$work/bus" ] && break; sleep 0.1; done
DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/bus" PASSAGE_LOG=warn \
  target/release/passage-helper --root "$tree" --state-dir "$work/state" & pids+=($!)
for _ in $(seq 600); do
  dbus-send --bus="unix:path=$work/bus" --print-reply --dest=org.freedesktop.DBus / \
    org.freedesktop.DBus.NameHasOwner string:io.github.passage.Helper1 2>/dev/null | grep -q true && break
  sleep 0.1
done
export PASSAGE_SSH="$PWD/tests/remote/ssh-standin" PASSAGE_TEST_BUSES="bench=$work/bus"
remote="target/release/passagectl -H bench"
# The same bytes both ways, or the comparison means nothing.
cmp <($ctl list --json) <($remote list --json)
echo "tree: $(ls "$sysfs/devices" | wc -l) functions; list --json $($ctl list --json | wc -c) B, the same through -H"
cmds=(-n "passagectl list --json (here, a scan)" "$ctl list --json"
      -n "passagectl -H list --json (stand-in ssh: the bridge, no network)" "$remote list --json")
if [ -x /usr/sbin/sshd ]; then
  ssh-keygen -q -N "" -t ed25519 -f "$work/host_key"
  ssh-keygen -q -N "" -t ed25519 -f "$work/client_key"
  echo "command=\"systemd-stdio-bridge --bus-path=unix:path=$work/bus\",no-pty $(cat "$work/client_key.pub")" > "$work/authorized_keys"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'ListenAddress 127.0.0.1:%s\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n' \
    "$port" "$work/host_key" "$work/authorized_keys" > "$work/sshd_config"
  mkdir -p /run/sshd
  /usr/sbin/sshd -D -f "$work/sshd_config" & pids+=($!)
  printf '#!/bin/sh\nexec ssh -F none -p %s -i %s -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"\n' \
    "$port" "$work/client_key" > "$work/ssh"
  chmod +x "$work/ssh"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  cmp <($ctl list --json) <(PASSAGE_SSH="$work/ssh" target/release/passagectl -H root@127.0.0.1 list --json)
  cmds+=(-n "passagectl -H list --json (real ssh to sshd on 127.0.0.1)"
         "env PASSAGE_SSH=$work/ssh target/release/passagectl -H root@127.0.0.1 list --json")
fi
hyperfine -N -w 2 -r "$runs" --export-markdown "${OUT:-/dev/stdout}" "${cmds[@]}"
