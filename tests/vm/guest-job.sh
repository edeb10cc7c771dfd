# Runs inside the test VM (chrooted into the host's root; $OUT = the results share).
# The host test prepends: PASSAGECTL, PRE (shell to run first), PARTIAL (an address to bind alone, or empty), FULL (an
# address whose whole group to bind, or empty), HOLD (1: hold the FULL group open and verify).
# It collects facts and exit codes; the assertions live in tests/vm.rs.
set -u
OUT=${OUT:-/run/passage-out}
P=$PASSAGECTL
uname -r > $OUT/kernel-release

kernel_listing() {
  # The kernel's own view, plainly: group, member, driver.
  local g d drv
  for g in /sys/kernel/iommu_groups/*; do
    [ -d "$g" ] || continue
    for d in "$g"/devices/*; do
      drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
      echo "${g##*/} ${d##*/} ${drv:--}"
    done
  done
}

group_of() { local l; l=$(readlink /sys/bus/pci/devices/$1/iommu_group); echo ${l##*/}; }

# The same plain sequence every wiki gives, so Passage is checked against the kernel, not itself.
bind_vfio() {
  local d=$1
  echo vfio-pci > /sys/bus/pci/devices/$d/driver_override
  [ -e /sys/bus/pci/devices/$d/driver ] && echo $d > /sys/bus/pci/devices/$d/driver/unbind
  echo $d > /sys/bus/pci/drivers_probe
}

snapshot() { # name
  $P list --json > $OUT/$1-list.json; echo $? > $OUT/$1-list.rc
  kernel_listing > $OUT/$1-kernel.txt
}

# A topology may need the guest to set something up first (enable SR-IOV VFs, say); PRE may
# also set FULL or PARTIAL from what it created.
if [ -n "${PRE:-}" ]; then eval "$PRE"; fi

snapshot boot
$P list > $OUT/boot-list.txt 2>&1
# The doctor, and what the kernel itself shows of the facts it reads.
$P doctor --json > $OUT/doctor.json 2> $OUT/doctor.err; echo $? > $OUT/doctor.rc
ls /sys/firmware/acpi/tables > $OUT/acpi-tables.txt 2>&1
cat /proc/sys/kernel/osrelease > $OUT/osrelease.txt
# How this kernel has vfio-pci, told by the kernel's own tools rather than Passage's rules: the
# loaded modules (/proc/modules), else modinfo (kmod reads modules.builtin and modules.dep:
# "(builtin)" or the module's file), else missing.
if grep -q '^vfio_pci ' /proc/modules; then echo loaded
elif f=$($(command -v modinfo || echo /usr/sbin/modinfo) -F filename vfio-pci 2>/dev/null) && [ "$f" = "(builtin)" ]; then echo builtin
elif [ -n "$f" ]; then echo module
elif [ -d /lib/modules/$(uname -r) ]; then echo missing
else echo unknown; fi > $OUT/vfio-pci-state.txt
# The whole story of every group with more than one member (the ones that need a "why").
for gd in /sys/kernel/iommu_groups/*; do
  [ -d "$gd" ] || continue
  set -- "$gd"/devices/*
  [ $# -gt 1 ] || continue
  n=${gd##*/}
  $P explain $n --json > $OUT/explain-$n.json 2>$OUT/explain-$n.err
done

if [ -n "${PARTIAL:-}" ]; then
  bind_vfio $PARTIAL
  g=$(group_of $PARTIAL)
  $P verify $g > $OUT/partial-verify.txt 2>&1; echo $? > $OUT/partial-verify.rc
  snapshot partial
fi

if [ -n "${FULL:-}" ]; then
  g=$(group_of $FULL)
  echo $g > $OUT/full-group
  for d in /sys/kernel/iommu_groups/$g/devices/*; do
    a=${d##*/}
    case $(cat /sys/bus/pci/devices/$a/class) in 0x0604*) continue ;; esac
    bind_vfio $a
  done
  $P verify $g > $OUT/full-verify.txt 2>&1; echo $? > $OUT/full-verify.rc
  $P verify $g --json > $OUT/full-verify.json 2>&1
  snapshot full
  if [ "${HOLD:-0}" = 1 ]; then
    python3 -c "import os, time; fd = os.open('/dev/vfio/$g', os.O_RDWR); open('$OUT/holder.ready', 'w').close(); time.sleep(60)" &
    holder=$!
    for _ in $(seq 50); do [ -e $OUT/holder.ready ] && break; sleep 0.1; done
    echo $holder > $OUT/holder.pid
    $P verify $g > $OUT/held-verify.txt 2>&1; echo $? > $OUT/held-verify.rc
    kill $holder
  fi
fi
echo done > $OUT/job.done
