#!/usr/bin/env python3
"""Passage's real-kernel test bed: boot a stock Debian kernel in QEMU (q35 + emulated VT-d)
with a chosen PCI topology, run a job script inside it against the host's own binaries, and
bring the results back.

    tests/vm/vm.py prepare                 fetch kernel, build vmlinux + initramfs (cached)
    tests/vm/vm.py run TOPOLOGY OUT JOB [udev|installed=STAGE]
                                           boot TOPOLOGY, run JOB (a shell script) in the guest;
                                           with "udev", host drivers are left to udev; with
                                           "installed", systemd boots an installed system (below)
    tests/vm/vm.py topologies              list topologies and their QEMU arguments
    tests/vm/vm.py new-qemu                print the path of bookworm-backports' QEMU (fetched once)
    tests/vm/vm.py modules                 print the bed kernel's release and its module tree (depmod'ed)

How the guest sees things: the host's / is exported read-only over 9p and the guest chroots
into it, with /proc, /sys and /dev bind-mounted from the guest kernel, so `target/debug/
passagectl` and python3 run unchanged inside. OUT is a second, writable 9p share mounted at
/run/passage-out in the chroot (also in $OUT): JOB is copied there, and everything it writes
there comes back; its exit code lands in OUT/job.rc and its output in OUT/job.log.

The job can ask QEMU for things only the machine can do (hot-unplug a card): it writes a QMP
command as JSON to OUT/host-requests/NAME.json (write to a temporary name, then rename), and
this script sends it on QEMU's monitor socket and writes QEMU's answer to NAME.reply.

A "udev" boot is a boot as a distribution does it: the initramfs loads only what reaches the
host's files (virtio, 9p), and no host driver; the job starts systemd-udevd (the host's udev
package) over the guest kernel's own modules (OUT/moddir names them, with depmod's indexes), so
udev loads drivers by modalias and applies /etc/udev/rules.d and /etc/modprobe.d as at boot.

An "installed" boot (`run TOPOLOGY OUT JOB installed=STAGE`) is the product as a distribution
installs it: STAGE is a `make install DESTDIR=STAGE PREFIX=/usr` tree; it goes on a disk image
as the upper layer of an overlay over the host's read-only root, and the initramfs hands over
to systemd as PID 1 (Debian's systemd, udev, dbus-daemon and polkitd from the host's files).
The job runs as passage-test-job.service on every boot with OUT at /mnt/out, and ends each boot
itself: after `touch $OUT/reboot; systemctl reboot` the machine starts again from the same
disk once the guest has shut down (what the job wrote before survives), `systemctl poweroff`
ends the run.

Everything comes from Debian packages: the kernel (apt-get download, dpkg-deb -x), QEMU and
busybox-static (installed by ./dev). See shared knowledge in docs/TESTING.md.
"""

import hashlib
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("PASSAGE_VM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "passage-vm")

# Modules the guest loads at boot, with their dependencies resolved from each module's own
# `depends=` modinfo string (the package ships no modules.dep and the host may have no kmod).
MODULES = [
    "virtio_pci", "9pnet_virtio", "9p",
    "vfio", "vfio_iommu_type1", "vfio_pci",
    "e1000e", "e1000", "8139cp", "igb", "xhci_pci",
]

# What a "udev" or "installed" boot loads itself: only what reaches the host's files (and
# overlayfs, which makes the host's read-only root writable in the guest: on tmpfs, or on the
# installed system's disk).
INFRA_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_blk", "ext4", "crc32c_generic"]

BASE_APPEND = "console=ttyS0 panic=-1 quiet rdinit=/init"

# Each topology: QEMU device arguments and whether the guest kernel turns the IOMMU on.
# Root ports need a unique chassis/slot; group numbers depend on device order, so tests
# compare membership, never numbers.
TOPOLOGIES = {
    # (1) Root ports, each with one endpoint: every endpoint alone in its group.
    "root-ports": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "e1000e,bus=rp1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
        "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x3",
        "-device", "nec-usb-xhci,bus=rp2",
        "-device", "pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x4",
        "-device", "e1000e,bus=rp3,netdev=n2", "-netdev", "user,id=n2,restrict=on",
    ],
    # (2) A PCIe-to-PCI bridge with two conventional devices; a conventional PCI bridge on the
    # root complex with two more.
    "pci-bridges": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "pcie-pci-bridge,id=pb1,bus=rp1",
        "-device", "e1000,bus=pb1,addr=0x1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
        "-device", "rtl8139,bus=pb1,addr=0x2,netdev=n2", "-netdev", "user,id=n2,restrict=on",
        "-device", "pci-bridge,id=b2,chassis_nr=9,bus=pcie.0,addr=0x3",
        "-device", "e1000,bus=b2,addr=0x1,netdev=n3", "-netdev", "user,id=n3,restrict=on",
        "-device", "rtl8139,bus=b2,addr=0x2,netdev=n4", "-netdev", "user,id=n4,restrict=on",
        # A single-device group too, for the helper's claims (bus 04).
        "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x4",
        "-device", "e1000e,bus=rp2,netdev=n5", "-netdev", "user,id=n5,restrict=on",
    ],
    # (3) A PCIe switch (upstream + two downstream ports) and an ioh3420 port (no ACS).
    "switch-no-acs": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "x3130-upstream,id=up1,bus=rp1",
        "-device", "xio3130-downstream,id=dn1,bus=up1,chassis=2,slot=0",
        "-device", "e1000e,bus=dn1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
        "-device", "xio3130-downstream,id=dn2,bus=up1,chassis=3,slot=1",
        "-device", "e1000e,bus=dn2,netdev=n2", "-netdev", "user,id=n2,restrict=on",
        "-device", "ioh3420,id=io1,chassis=4,slot=4,bus=pcie.0,addr=0x3",
        "-device", "e1000e,bus=io1,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    ],
    # (4) A multifunction endpoint behind a root port, a device on the root complex, and q35's
    # own 00:1f.x functions.
    "multifunction": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "e1000e,bus=rp1,addr=0x0.0,multifunction=on,netdev=n1", "-netdev", "user,id=n1,restrict=on",
        "-device", "e1000e,bus=rp1,addr=0x0.1,netdev=n2", "-netdev", "user,id=n2,restrict=on",
        "-device", "e1000e,bus=pcie.0,addr=0x5,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    ],
    # (4c) Persistence across a boot: two identical e1000e cards (only the first persisted) and
    # an e1000 (persisted too, another driver), each alone behind its root port.
    "persist": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "e1000e,bus=rp1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
        "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x3",
        "-device", "e1000e,bus=rp2,netdev=n2", "-netdev", "user,id=n2,restrict=on",
        "-device", "pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x4",
        "-device", "e1000,bus=rp3,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    ],
    # (4b) An SR-IOV physical function (igb, QEMU >= 8) whose VFs the guest job enables.
    "sriov": [
        "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
        "-device", "igb,bus=rp1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
    ],
}
# (4d) The persist machine after a card moved: another device (an rtl8139) now sits at the
# first card's address, which the persisted rule must leave alone.
TOPOLOGIES["persist-shifted"] = [
    "rtl8139,bus=rp1,netdev=n1" if a == "e1000e,bus=rp1,netdev=n1" else a
    for a in TOPOLOGIES["persist"]
]

# (6) The fault campaign's machine: the two conventional groups of (2), an endpoint alone, and
# two e1000e cards on hot-pluggable root ports (ids hp1, hp2) that the job unplugs mid-claim and
# mid-release over QMP (device_del).
TOPOLOGIES["faults"] = [
    *TOPOLOGIES["pci-bridges"],
    "-device", "pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x5",
    "-device", "e1000e,id=hp1,bus=rp3,netdev=n6", "-netdev", "user,id=n6,restrict=on",
    "-device", "pcie-root-port,id=rp4,chassis=4,slot=4,bus=pcie.0,addr=0x6",
    "-device", "e1000e,id=hp2,bus=rp4,netdev=n7", "-netdev", "user,id=n7,restrict=on",
]

# Topologies whose devices QEMU 7.2 (Debian 12) lacks: run with bookworm-backports' QEMU.
NEEDS_NEW_QEMU = {"sriov"}
# Boots without a working IOMMU, on the root-ports topology: (5a) the firmware has no VT-d
# (no intel-iommu device, no DMAR table); (5b) the kernel is told intel_iommu=off. (Debian's
# 6.1 kernel turns VT-d on by default, so merely leaving out intel_iommu=on changes nothing.)
NO_IOMMU = {
    "no-iommu": {"iommu_device": False, "append": ""},
    "iommu-off-cmdline": {"iommu_device": True, "append": " intel_iommu=off"},
}
NO_IOMMU_BASE = "root-ports"


def log(*a):
    print("vm:", *a, file=sys.stderr, flush=True)


class Unavailable(Exception):
    """The machine cannot run the test bed; the message says what is missing."""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def kernel_deb():
    """Downloads (once) the kernel image package that linux-image-amd64 points to."""
    CACHE.mkdir(parents=True, exist_ok=True)
    meta = sorted(CACHE.glob("linux-image-amd64_*.deb"))
    if not meta:
        log("downloading linux-image-amd64 (metapackage)")
        run(["apt-get", "download", "linux-image-amd64"], cwd=CACHE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        meta = sorted(CACHE.glob("linux-image-amd64_*.deb"))
    if not meta:
        raise Unavailable("apt-get download linux-image-amd64 failed (is apt configured?)")
    dep = subprocess.run(["dpkg-deb", "-f", str(meta[-1]), "Depends"], check=True, capture_output=True, text=True).stdout
    pkg = dep.split(",")[0].split("(")[0].strip()
    debs = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if not debs:
        log(f"downloading {pkg}")
        run(["apt-get", "download", pkg], cwd=CACHE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        debs = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if not debs:
        raise Unavailable(f"apt-get download {pkg} failed")
    return debs[-1]


def extract_vmlinux(vmlinuz: Path, out: Path):
    """The uncompressed kernel for QEMU's PVH entry (saves seconds per boot over bzImage)."""
    data = vmlinuz.read_bytes()
    i = data.find(b"\xfd7zXZ\x00")
    if i < 0:
        raise Unavailable(f"{vmlinuz} is not XZ-compressed; extend extract_vmlinux")
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out.write_bytes(d.decompress(data[i:]))


def modinfo_depends(ko: Path):
    data = ko.read_bytes()
    for field in data.split(b"\x00"):
        if field.startswith(b"depends="):
            return [m for m in field[8:].decode().split(",") if m]
    return []


def resolve_modules(moddir: Path, names=MODULES):
    """Module files to insmod, dependencies first."""
    by_name = {}
    for ko in moddir.rglob("*.ko"):
        by_name[ko.stem.replace("-", "_")] = ko
    order, seen = [], set()

    def visit(name):
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        ko = by_name.get(name)
        if ko is None:
            return  # built into the kernel
        for dep in modinfo_depends(ko):
            visit(dep)
        order.append(ko)

    for m in names:
        visit(m)
    return order


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# A "udev" boot loads only what reaches the host's files; udev loads the rest, as at boot.
mods=/modules.order
grep -q passage.coldplug=udev /proc/cmdline && mods=/modules.infra
grep -q passage.boot=installed /proc/cmdline && mods=/modules.infra
for m in $(cat $mods); do insmod /lib/modules/$m 2>/dev/null; done
if grep -q passage.boot=installed /proc/cmdline; then
  # An installed system: the host's files below, the disk (what `make install` put there, and
  # everything the system writes, kept across reboots) above; systemd as PID 1.
  mkdir -p /lower /disk /newroot
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower || { echo "vm: cannot mount host root"; poweroff -f; }
  mount -t ext4 /dev/vda /disk || { echo "vm: cannot mount the disk"; poweroff -f; }
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/disk/upper,workdir=/disk/work /newroot || { echo "vm: cannot make the root"; poweroff -f; }
  # The guest kernel's modules (with depmod's indexes), where udev and modprobe look.
  kver=$(uname -r)
  moddir=$(sed -n 's/.*passage.moddir=\([^ ]*\).*/\1/p' /proc/cmdline)
  mkdir -p /newroot/lib/modules/$kver
  mount --bind /newroot$moddir/$kver /newroot/lib/modules/$kver || { echo "vm: no modules at $moddir"; poweroff -f; }
  # /tmp on tmpfs, as most installs have it: systemd-tmpfiles empties /tmp at every boot, and
  # the host's /tmp below (build trees, other checkouts) would take it minutes over 9p.
  mount -t tmpfs -o mode=1777,nosuid,nodev tmp /newroot/tmp
  mount --move /dev /newroot/dev
  umount /proc /sys
  exec switch_root /newroot /lib/systemd/systemd
fi
mkdir -p /hostroot
if [ $mods = /modules.infra ]; then
  # A writable root, as a booting system has: the host's files below, changes on tmpfs.
  mkdir -p /lower /rw
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /lower || { echo "vm: cannot mount host root"; poweroff -f; }
  mount -t tmpfs rw /rw
  mkdir -p /rw/upper /rw/work
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /hostroot || { echo "vm: cannot make the root writable"; poweroff -f; }
else
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /hostroot || { echo "vm: cannot mount host root"; poweroff -f; }
fi
mount --bind /proc /hostroot/proc
mount --bind /sys /hostroot/sys
mount --bind /dev /hostroot/dev
mount -t tmpfs run /hostroot/run
# The results share lives under /run (a tmpfs here), never over a host directory: the project
# may be checked out anywhere, /tmp included, and must stay visible.
mkdir -p /hostroot/run/passage-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /hostroot/run/passage-out || { echo "vm: cannot mount out"; poweroff -f; }
echo "vm: job starting"
chroot /hostroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PASSAGE_IN_VM=1 OUT=/run/passage-out /bin/bash /run/passage-out/job.sh > /hostroot/run/passage-out/job.log 2>&1
echo $? > /hostroot/run/passage-out/job.rc
echo "vm: job finished rc=$(cat /hostroot/run/passage-out/job.rc)"
sync
umount /hostroot/run/passage-out
poweroff -f
"""


def write_initramfs(stage: Path, initrd: Path):
    """STAGE packed as a newc cpio archive owned by root, written to INITRD in one rename."""
    files = subprocess.run(["find", ".", "-print0"], cwd=stage, check=True, capture_output=True).stdout
    with open(initrd.with_suffix(".tmp"), "wb") as f:
        subprocess.run(["cpio", "--null", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=stage, input=files, stdout=f, check=True)
    initrd.with_suffix(".tmp").rename(initrd)


def prepare():
    """Kernel, vmlinux and initramfs in the cache; returns (vmlinux, initramfs, kver)."""
    if not shutil.which("qemu-system-x86_64"):
        raise Unavailable("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    bb = Path("/bin/busybox")
    # The initramfs has no C library: busybox must be the static build (no ELF interpreter).
    if not bb.exists() or b"ld-linux" in bb.read_bytes()[:65536]:
        raise Unavailable("busybox-static is not installed (apt-get install busybox-static)")
    deb = kernel_deb()
    kroot = CACHE / deb.stem
    if not (kroot / "boot").exists():
        log(f"unpacking {deb.name}")
        tmp = CACHE / (deb.stem + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(kroot)
    kver = next((kroot / "lib/modules").iterdir()).name
    vmlinux = CACHE / f"vmlinux-{kver}"
    if not vmlinux.exists():
        log("extracting vmlinux")
        extract_vmlinux(kroot / f"boot/vmlinuz-{kver}", vmlinux.with_suffix(".tmp"))
        vmlinux.with_suffix(".tmp").rename(vmlinux)
    mods = resolve_modules(kroot / "lib/modules" / kver)
    infra = resolve_modules(kroot / "lib/modules" / kver, INFRA_MODULES)
    key = hashlib.sha256((INIT + "\n".join(str(m) for m in mods + infra)).encode()).hexdigest()[:12]
    initrd = CACHE / f"initramfs-{kver}-{key}.cpio"
    if not initrd.exists():
        log("building initramfs")
        stage = CACHE / "initramfs.stage"
        shutil.rmtree(stage, ignore_errors=True)
        for d in ["bin", "proc", "sys", "dev", "lib/modules", "hostroot"]:
            (stage / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2("/bin/busybox", stage / "bin/busybox")
        names = []
        for ko in infra:
            if ko not in mods:
                shutil.copy2(ko, stage / "lib/modules" / ko.name)
        for ko in mods:
            shutil.copy2(ko, stage / "lib/modules" / ko.name)
            names.append(ko.name)
        (stage / "modules.order").write_text("\n".join(names) + "\n")
        (stage / "modules.infra").write_text("\n".join(ko.name for ko in infra) + "\n")
        (stage / "init").write_text(INIT)
        (stage / "init").chmod(0o755)
        write_initramfs(stage, initrd)
        shutil.rmtree(stage, ignore_errors=True)
    return vmlinux, initrd, kver


def apt_uri():
    """The Debian mirror this machine's apt already uses (so nothing else is ever named)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file() or "disabled" in f.name:
            continue
        text = f.read_text(errors="replace")
        for line in text.splitlines():
            parts = line.split()
            if f.suffix == ".sources" and parts[:1] == ["URIs:"]:
                for uri in parts[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
            elif parts[:1] == ["deb"]:
                uri = next((p for p in parts[1:] if "://" in p), "")
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    raise Unavailable("no Debian mirror in /etc/apt to fetch backports' QEMU from")


def apt_update(what, opts, lists):
    """apt-get update, tried three times. A mirror caught mid-sync fails one index (seen: the
    security suite's Packages of another size than its InRelease says) while the others are
    read; the lists read are then used, and a package they lack fails its download by name.
    True when every list was read."""
    err = ""
    for attempt in range(3):
        if attempt:
            time.sleep(5 * attempt)
        r = subprocess.run(["apt-get", *opts, "update"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            return True
        err = r.stderr.strip()[-600:]
        log(f"apt-get update for {what} failed (try {attempt + 1} of 3): {err}")
    if not any(lists.glob("*Packages*")):
        raise Unavailable(f"cannot read Debian's {what} package lists: {err}")
    log(f"going on with the {what} lists that were read")
    return False


def new_qemu(package="qemu-system-x86", program="qemu-system-x86_64"):
    """QEMU from <codename>-backports, unpacked privately: the host's apt sources and state are
    left untouched (private lists and cache under the test cache). PACKAGE names the system
    emulator package (qemu-system-arm for the arm64 bed), PROGRAM its binary."""
    d = CACHE / ("qemu-backports" if package == "qemu-system-x86" else f"qemu-backports-{package}")
    binary = d / "root/usr/bin" / program
    if binary.exists():
        return binary
    codename = "bookworm"
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip('"') or codename
    for sub in ["lists/partial", "cache/archives/partial", "debs"]:
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {apt_uri()} {codename}-backports main\n")
    opts = [f"-oDir::Etc::SourceList={d}/sources.list", "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State::Lists={d}/lists", f"-oDir::Cache={d}/cache", "-oAPT::Get::List-Cleanup=0"]
    log(f"fetching QEMU from {codename}-backports")
    apt_update(f"{codename}-backports", opts, d / "lists")
    pkgs = [f"{p}/{codename}-backports" for p in [package, "qemu-system-common", "qemu-system-data"]]
    run(["apt-get", *opts, "download", *pkgs], cwd=d / "debs", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = d / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted((d / "debs").glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
    tmp.rename(d / "root")
    if subprocess.run([str(binary), "-device", "igb,help"], capture_output=True).returncode != 0:
        raise Unavailable(f"{binary} does not run or has no igb device")
    return binary


def accel():
    """KVM only where hardware-assisted KVM is loaded; the software kvm_pvm crawls."""
    if Path("/dev/kvm").exists() and (Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()):
        return ["-accel", "kvm", "-cpu", "host"]
    # No AVX: QEMU 7.2 brought TCG's first AVX/AVX2 code, and glibc picks AVX2 string routines
    # wherever the CPU offers them; a QEMU run inside the guest (the export test) then died of
    # SIGILL now and then. SSE paths are TCG's long-tested ones.
    return ["-accel", "tcg,thread=multi", "-cpu", "max,avx=off,avx2=off,fma=off,f16c=off,vaes=off,vpclmulqdq=off"]


def udev_modules(kver):
    """The guest kernel's module tree with depmod's indexes (made once, by the host's kmod), for
    udev inside the guest to load drivers by modalias."""
    deb = kernel_deb()
    moddir = CACHE / deb.stem / "lib/modules"
    if not (moddir / kver / "modules.alias.bin").exists():
        depmod = shutil.which("depmod") or next((p for p in ["/sbin/depmod", "/usr/sbin/depmod"] if Path(p).exists()), None)
        if not depmod:
            raise Unavailable("depmod is not installed (apt-get install kmod)")
        run([depmod, "-b", str(CACHE / deb.stem), kver])
    if not any(Path(p).exists() for p in ["/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd"]):
        raise Unavailable("systemd-udevd is not installed (apt-get install udev)")
    return moddir


def qemu_command(topology, vmlinux, initrd, out: Path, udev=False, disk=None, moddir=None):
    if topology in TOPOLOGIES:
        devices, iommu_device, append = TOPOLOGIES[topology], True, BASE_APPEND + " intel_iommu=on"
    elif topology in NO_IOMMU:
        v = NO_IOMMU[topology]
        devices, iommu_device, append = TOPOLOGIES[NO_IOMMU_BASE], v["iommu_device"], BASE_APPEND + v["append"]
    else:
        raise SystemExit(f"unknown topology {topology}; known: {', '.join([*TOPOLOGIES, *NO_IOMMU])}")
    if udev:
        append += " passage.coldplug=udev"
    if disk:
        append += f" passage.boot=installed passage.moddir={moddir} systemd.unit=multi-user.target"
        # A parameter the installed system's job takes away with `passagectl fix vfio-pci-ids`
        # and gives back with `unfix` (no device has these ids, so it changes nothing else).
        append += " vfio-pci.ids=8086:9999"
    iommu = ["-device", "intel-iommu,intremap=on,caching-mode=on"] if iommu_device else []
    qemu = str(new_qemu()) if topology in NEEDS_NEW_QEMU else "qemu-system-x86_64"
    return [
        qemu, *accel(),
        "-machine", "q35,kernel-irqchip=split", "-smp", "2", "-m", "1G",
        *iommu,
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-no-reboot",
        "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", append,
        # 9p shares on the root complex, each alone in its group: never bind them.
        "-fsdev", "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=hostroot,bus=pcie.0,addr=0x10",
        "-fsdev", f"local,id=fs1,path={out},security_model=none",
        "-device", "virtio-9p-pci,fsdev=fs1,mount_tag=out,bus=pcie.0,addr=0x11",
        # The installed system's disk, alone in its group like the shares: never bind it.
        *(["-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
           "-device", "virtio-blk-pci,drive=disk0,bus=pcie.0,addr=0x12"] if disk else []),
        *devices,
    ]


def serve_requests(out: Path, sock: Path, done: threading.Event):
    """Carries the job's QMP requests (OUT/host-requests/*.json) to QEMU, answers in *.reply."""
    import json
    import socket
    requests = out / "host-requests"
    requests.mkdir(exist_ok=True)
    conn, reader = None, None
    while not done.is_set():
        for req in sorted(requests.glob("*.json")):
            reply = req.with_suffix(".reply")
            if reply.exists():
                continue
            try:
                if conn is None:
                    conn = socket.socket(socket.AF_UNIX)
                    conn.connect(str(sock))
                    reader = conn.makefile("r")
                    reader.readline()  # the greeting
                    conn.sendall(b'{"execute": "qmp_capabilities"}\n')
                    reader.readline()
                conn.sendall(req.read_bytes().strip() + b"\n")
                while True:  # events may come first; the answer has "return" or "error"
                    line = reader.readline()
                    if not line or '"return"' in line or '"error"' in line:
                        break
                answer = line or '{"error": "QEMU closed its monitor"}'
            except OSError as e:
                answer = json.dumps({"error": f"monitor: {e}"})
            tmp = reply.with_suffix(".tmp")
            tmp.write_text(answer)
            tmp.rename(reply)
        done.wait(0.05)
    if conn is not None:
        conn.close()


# The units an installed test system adds to what `make install` put there: the results share,
# and the job, run once per boot after the boot is done (it reboots or powers off itself).
JOB_UNITS = {
    "mnt-out.mount": """[Unit]
Description=The test bed's results share
[Mount]
What=out
Where=/mnt/out
Type=9p
Options=trans=virtio,version=9p2000.L,msize=262144
""",
    "passage-test-job.service": """[Unit]
Description=The test bed's job for this boot
Requires=mnt-out.mount
After=mnt-out.mount multi-user.target
[Service]
Type=oneshot
Environment=OUT=/mnt/out PASSAGE_IN_VM=1 LANG=C.UTF-8
ExecStart=/bin/bash /mnt/out/job.sh
StandardOutput=append:/mnt/out/job.log
StandardError=append:/mnt/out/job.log
[Install]
WantedBy=multi-user.target
""",
}


# An installed system's job may reboot it this many times.
MAX_BOOTS = 8


def installed_disk(stage: Path, disk: Path, append: str, vmlinux: Path, kver: str):
    """An ext4 disk whose upper/ is what `make install` put in STAGE, plus the test bed's own
    units; the units the host's own /etc enables (its database, libvirt, timers) are masked: they
    are not what is tested and would only slow the boot."""
    tmp = Path(tempfile.mkdtemp(prefix="passage-disk-"))
    try:
        upper = tmp / "upper"
        shutil.copytree(stage, upper, symlinks=True)
        (tmp / "work").mkdir()
        units = upper / "etc/systemd/system"
        (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
        for name, text in JOB_UNITS.items():
            (units / name).write_text(text)
        (units / "multi-user.target.wants/passage-test-job.service").symlink_to("../passage-test-job.service")
        (upper / "mnt/out").mkdir(parents=True, exist_ok=True)
        # The boot configuration of a systemd-boot system: its kernel command line in
        # /etc/kernel/cmdline, Boot Loader Specification entries written by kernel-install under
        # /boot, and the kernel's image where kernel-install takes it from. The bed boots as
        # systemd-boot would (boot_options below): with the options of the entry for this
        # kernel once there is one, so a change `passagectl fix` makes is what the next boot
        # really gets.
        (upper / "etc/kernel").mkdir(parents=True, exist_ok=True)
        (upper / "etc/kernel/cmdline").write_text(append + "\n")
        (upper / "etc/kernel/install.conf").write_text("layout=bls\n")
        (upper / "boot").mkdir(parents=True, exist_ok=True)
        shutil.copy2(vmlinux, upper / "boot" / f"vmlinuz-{kver}")
        # This machine may itself be a container: systemd would take /.dockerenv below for
        # "running in Docker" and skip what containers skip. An overlay whiteout hides it.
        if Path("/.dockerenv").exists():
            os.mknod(upper / ".dockerenv", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        for wants in Path("/etc/systemd/system").glob("*.wants"):
            for unit in wants.iterdir():
                if not (units / unit.name).exists():
                    (units / unit.name).symlink_to("/dev/null")
        disk.unlink(missing_ok=True)
        run(["truncate", "-s", "2G", str(disk)])
        run(["mkfs.ext4", "-q", "-F", "-L", "passage-test", "-d", str(tmp), str(disk)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def boot_options(disk: Path, kver: str):
    """The options of the installed system's boot entry for kernel KVER
    (/boot/loader/entries/*-KVER.conf on its disk, read with debugfs while the machine is
    off), or None while it has none: what systemd-boot would boot it with."""
    def debugfs(request):
        r = subprocess.run(["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=False)
        return r.stdout if r.returncode == 0 else ""
    names = [line.strip() for line in debugfs("ls -p /upper/boot/loader/entries").splitlines()]
    # `ls -p`: /inode/mode/uid/gid/name/size/ per entry.
    entries = [n.split("/")[5] for n in names if n.count("/") >= 6]
    entry = next((e for e in entries if e.endswith(f"-{kver}.conf")), None)
    if entry is None:
        return None
    for line in debugfs(f"cat /upper/boot/loader/entries/{entry}").splitlines():
        if line.startswith("options"):
            return line[len("options"):].strip()
    return None


def boot(topology, out: Path, job: Path, timeout=None, udev=False, stage=None):
    # A long job (the fault campaign) says how long it may take.
    timeout = timeout or int(os.environ.get("PASSAGE_VM_TIMEOUT", "600"))
    vmlinux, initrd, kver = prepare()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(job, out / "job.sh")
    for f in ["job.rc", "job.log"]:
        (out / f).unlink(missing_ok=True)
    if udev:
        (out / "moddir").write_text(f"{udev_modules(kver)}\n")
    disk = moddir = None
    if stage:
        if not shutil.which("mkfs.ext4"):
            raise Unavailable("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
        if not any(Path(p).exists() for p in ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]):
            raise Unavailable("systemd is not installed (apt-get install systemd)")
        moddir = udev_modules(kver)
        disk = out.with_suffix(".disk.img")
    cmd = qemu_command(topology, vmlinux, initrd, out, udev, disk, moddir)
    if disk:
        installed_disk(stage, disk, cmd[cmd.index("-append") + 1], vmlinux, kver)
    # The monitor socket lives outside OUT (a short path; OUT is shared with the guest).
    sockdir = Path(tempfile.mkdtemp(prefix="passage-vm-"))
    sock = sockdir / "qmp.sock"
    cmd += ["-qmp", f"unix:{sock},server=on,wait=off"]
    (out / "qemu.cmd").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    done = threading.Event()
    agent = threading.Thread(target=serve_requests, args=(out, sock, done), daemon=True)
    agent.start()
    with open(out / "console.log", "wb") as console:
        try:
            # An installed system's `systemctl reboot` ends QEMU (-no-reboot) after the whole
            # shutdown, having left OUT/reboot; the machine is then started again from the same
            # disk, as a power cycle does. (Reset in place, Debian's kernel spent minutes in
            # early boot under TCG, soft lockups in kworker before PCI was probed.)
            for n in range(1, MAX_BOOTS + 1):
                (out / "reboot").unlink(missing_ok=True)
                if disk:
                    options = boot_options(disk, kver)
                    if options:
                        cmd[cmd.index("-append") + 1] = options
                    (out / f"boot{n}-append.txt").write_text(cmd[cmd.index("-append") + 1] + "\n")
                left = timeout - (time.monotonic() - t0)
                subprocess.run(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=max(left, 1), check=False)
                if not (disk and (out / "reboot").exists()):
                    break
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{topology}: the VM did not finish within {timeout} s; see {out}/console.log")
        finally:
            done.set()
            agent.join()
            shutil.rmtree(sockdir, ignore_errors=True)
    (out / "seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    if not (out / "job.rc").exists():
        tail = (out / "console.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{topology}: the guest did not run the job; console:\n{tail}")
    return int((out / "job.rc").read_text().strip() or "1")


def main(argv):
    if len(argv) >= 1 and argv[0] == "prepare":
        try:
            v, i, k = prepare()
        except Unavailable as e:
            raise SystemExit(f"vm: cannot run the real-kernel tests here: {e}")
        print(f"kernel {k}\nvmlinux {v}\ninitramfs {i}")
        return 0
    if len(argv) >= 1 and argv[0] == "topologies":
        for name, devs in TOPOLOGIES.items():
            print(name, " ".join(devs))
        for name, v in NO_IOMMU.items():
            print(name, f"({NO_IOMMU_BASE}; intel-iommu device: {v['iommu_device']}; append:{v['append'] or ' -'})")
        return 0
    if len(argv) == 1 and argv[0] == "modules":
        # The bed's kernel: its release and its module tree with depmod's indexes (for tools
        # that build an initramfs from it, as dracut in tests/persist.rs).
        try:
            _, _, k = prepare()
            print(f"kernel {k}\nmodules {udev_modules(k)}")
        except Unavailable as e:
            raise SystemExit(f"vm: cannot prepare the bed's kernel here: {e}")
        return 0
    if len(argv) == 1 and argv[0] == "new-qemu":
        try:
            print(new_qemu())
        except Unavailable as e:
            raise SystemExit(f"vm: cannot fetch backports' QEMU here: {e}")
        return 0
    mode = argv[4] if len(argv) == 5 else ""
    if len(argv) in (4, 5) and argv[0] == "run" and (mode in ("", "udev") or mode.startswith("installed=")):
        stage = Path(mode.split("=", 1)[1]).resolve() if mode.startswith("installed=") else None
        try:
            rc = boot(argv[1], Path(argv[2]).resolve(), Path(argv[3]), udev=mode == "udev", stage=stage)
        except Unavailable as e:
            raise SystemExit(f"vm: cannot run the real-kernel tests here: {e}")
        print(f"job exit code {rc}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
