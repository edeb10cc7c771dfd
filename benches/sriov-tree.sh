# Sourced by benches/draw.sh and benches/list-floor.sh (not run on its own): checks the tools a
# side-by-side run needs, builds passagectl, mktree and the floor reader (benches/floor/floor.c)
# in release, and writes the generated SR-IOV host. Sets: work (a temporary directory removed on
# exit), tree, sysfs, ctl (passagectl on the tree), and the floor binary at $work/floor.
#
#   sriov_tree NAME SHAPE     NAME for the error message, SHAPE as PFSxVFS
sriov_tree() {
  local name=$1 shape=$2 t
  for t in hyperfine lspci cc; do
    command -v "$t" >/dev/null || { echo "$name needs $t (apt-get install hyperfine pciutils gcc)" >&2; exit 1; }
  done
  work=$(mktemp -d /tmp/passage-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  cargo build --release -q -p passagectl
  cargo build --release -q -p passage-core --example mktree
  cc -O2 -o "$work/floor" benches/floor/floor.c
  tree="$work/tree"
  target/release/examples/mktree --sriov "$shape" "$tree" >/dev/null
  sysfs="$tree/sys/bus/pci"
  ctl="target/release/passagectl --root $tree"
}
