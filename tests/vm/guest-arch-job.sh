# Runs inside the cross bed (tests/vm/cross.py): busybox sh on another architecture's kernel,
# with this build's passagectl and passage-helper for that architecture on PATH. The host test
# prepends CLAIMS (PCI addresses whose whole groups to claim, verify and release, or empty) and
# VFS (ADDRESS=N: a physical function and how many virtual functions to create, or empty).
# It collects facts and exit codes; the assertions live in tests/arch.rs.
set -u
OUT=${OUT:-/run/passage-out}
uname -r > $OUT/kernel-release
uname -m > $OUT/machine
cat /proc/cmdline > $OUT/cmdline

kernel_listing() {
  local g d drv
  # The kernel's own view, plainly: group, member, driver (members may be platform devices).
  for g in /sys/kernel/iommu_groups/*; do
    [ -d "$g" ] || continue
    for d in "$g"/devices/*; do
      drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
      echo "${g##*/} ${d##*/} ${drv:--}"
    done
  done
}

pci_listing() {
  local d drv grp
  # Every PCI function the kernel found: address, class, ids, driver, group (or -).
  for d in /sys/bus/pci/devices/*; do
    drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
    grp=$(readlink "$d/iommu_group" 2>/dev/null); grp=${grp##*/}
    echo "${d##*/} $(cat $d/class) $(cat $d/vendor):$(cat $d/device) ${drv:--} ${grp:--}"
  done
}

snapshot() { # name
  passagectl list --json > $OUT/$1-list.json 2> $OUT/$1-list.err; echo $? > $OUT/$1-list.rc
  kernel_listing > $OUT/$1-kernel.txt
  pci_listing > $OUT/$1-pci.txt
}

# Virtual functions first, where the test asks for them (VFS=ADDRESS=N), as a boot would
# create them before anything reads the host.
if [ -n "${VFS:-}" ]; then
  echo ${VFS#*=} > /sys/bus/pci/devices/${VFS%%=*}/sriov_numvfs 2> $OUT/vfs.err; echo $? > $OUT/vfs.rc
  ls -d /sys/bus/pci/devices/${VFS%%=*}/virtfn* > $OUT/virtfns.txt 2>&1
fi
snapshot boot
passagectl list > $OUT/boot-list.txt 2>&1
# How the kernel resets each function: `reset` is there when it has a way (every kernel);
# `reset_method` lists them from Linux 5.15 on.
for d in /sys/bus/pci/devices/*; do
  m=$(cat $d/reset_method 2>/dev/null | tr ' ' ',')
  echo "${d##*/} $([ -e $d/reset ] && echo reset || echo -) ${m:--}"
done > $OUT/resets.txt
dmesg > $OUT/dmesg.txt
cat /proc/interrupts > $OUT/interrupts.txt
passagectl doctor --json > $OUT/doctor.json 2> $OUT/doctor.err; echo $? > $OUT/doctor.rc
ls /sys/class/iommu > $OUT/iommu-units.txt 2>&1
# Error recovery the kernel offers per device: EEH on POWER (eeh_* files), AER elsewhere.
for d in /sys/bus/pci/devices/*; do
  for f in $d/eeh_mode $d/eeh_pe_config_addr $d/eeh_pe_state $d/aer_dev_correctable; do
    [ -e $f ] && echo "${d##*/} ${f##*/} $(head -c 200 $f 2>/dev/null | tr '\n' ' ')"
  done
done > $OUT/recovery.txt
# The whole story of every group with more than one member.
for gd in /sys/kernel/iommu_groups/*; do
  [ -d "$gd" ] || continue
  set -- "$gd"/devices/*
  [ $# -gt 1 ] || continue
  n=${gd##*/}
  passagectl explain $n --json > $OUT/explain-$n.json 2> $OUT/explain-$n.err
done
# A recording of this machine, for the demo host's variants.
passagectl record $OUT/record > $OUT/record.txt 2>&1; echo $? > $OUT/record.rc

# Each group named by a member in CLAIMS: claimed by the helper, verified by QEMU's steps,
# released; the kernel's listing after each step.
for a in ${CLAIMS:-}; do
  l=$(readlink /sys/bus/pci/devices/$a/iommu_group); n=${l##*/}
  echo $n > $OUT/claim-$a.group
  S=$OUT/state
  passage-helper --state-dir $S --claim $n > $OUT/claim-$a.txt 2>&1; echo $? > $OUT/claim-$a.rc
  snapshot claimed-$a
  passagectl verify $n > $OUT/verify-$a.txt 2>&1; echo $? > $OUT/verify-$a.rc
  passage-helper --state-dir $S --release $n > $OUT/release-$a.txt 2>&1; echo $? > $OUT/release-$a.rc
  snapshot released-$a
done
dmesg > $OUT/dmesg-end.txt
echo done > $OUT/job.done
