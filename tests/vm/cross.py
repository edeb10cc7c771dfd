#!/usr/bin/env python3
"""Passage's real-kernel test bed on other architectures: Debian's own arm64 and ppc64el
kernels under QEMU's TCG, the arm64 `virt` machine (with the SMMUv3, or without an IOMMU) and
the ppc64le `pseries` machine (several PCI host bridges: partitionable endpoints), with PCI
topologies like the x86 bed's, running a job against Passage built for that architecture.

    tests/vm/cross.py prepare ARCH [SUITE]   fetch kernel (SUITE: backports) and userland, build the
                                             initramfs (cached)
    tests/vm/cross.py run ARCH TOPOLOGY OUT JOB BIN...
                                             boot TOPOLOGY, copy BINs (built for ARCH) to OUT/bin,
                                             run JOB (a busybox sh script) in the guest
    tests/vm/cross.py build ARCH             build passagectl and passage-helper for ARCH; print their paths
    tests/vm/cross.py topologies             list the topologies and their QEMU arguments
    tests/vm/cross.py pack DIR FILE SOURCE   pack the recording DIR into FILE (the demo variants:
                                             data/demo-arm64.json, data/demo-ppc64le.json)

How it differs from vm.py (x86): the guest cannot run the host's programs, so it does not chroot
into the host's root. Its whole userland is in the initramfs: Debian's busybox-static and the
C library, libgcc, libudev and libcap of that architecture (the libraries Passage's binaries
link), unpacked from Debian's own packages, fetched with a private apt state (lists and cache
under the test cache; the host's apt sources are read, never changed). OUT is a 9p share on a
transport that is not PCI where the machine has one (virtio-mmio on arm64), so that the shares
never appear in the topology; on pseries it sits on a host bridge of its own. JOB runs with
OUT=/run/passage-out and PATH starting with OUT/bin; its exit code lands in OUT/job.rc and its
output in OUT/job.log, as in vm.py.
"""

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vm import CACHE, Unavailable, apt_update, apt_uri, log, new_qemu, resolve_modules, run, write_initramfs  # noqa: E402

# Per architecture: Debian's name, the GNU triplet (its library directory and cross tools),
# Rust's target, the QEMU program and machine, the console and the dynamic loader.
ARCHES = {
    "arm64": {
        "triplet": "aarch64-linux-gnu",
        "rust": "aarch64-unknown-linux-gnu",
        "qemu": "qemu-system-aarch64",
        "qemu_pkg": "qemu-system-arm",
        "kernel": "linux-image-arm64",
        "console": "ttyAMA0",
        "loader": "ld-linux-aarch64.so.1",
        # The SMMUv3 driver and the virtio-mmio transport the shares use.
        "modules": ["virtio_mmio", "arm_smmu_v3"],
    },
    # x86 on a kernel of another release than the host's (vm.py boots the host's own): Debian
    # 11's 5.10, which lists no reset methods. Passage's own x86 binaries run there (the
    # userland is this release's, as on the host).
    "amd64": {
        "triplet": "x86_64-linux-gnu",
        "rust": "x86_64-unknown-linux-gnu",
        "qemu": "qemu-system-x86_64",
        "qemu_pkg": "qemu-system-x86",
        "kernel": "linux-image-amd64",
        "console": "ttyS0",
        "loader": "ld-linux-x86-64.so.2",
        "modules": ["virtio_pci"],
    },
    "ppc64el": {
        "triplet": "powerpc64le-linux-gnu",
        "rust": "powerpc64le-unknown-linux-gnu",
        "qemu": "qemu-system-ppc64",
        "qemu_pkg": "qemu-system-ppc",
        "kernel": "linux-image-powerpc64le",
        "console": "hvc0",
        "loader": "ld64.so.2",
        "modules": ["virtio_pci"],
    },
}

# Modules every boot loads (dependencies resolved from each module's own depends= string).
MODULES = ["9pnet_virtio", "9p", "vfio", "vfio_iommu_type1", "vfio_pci", "e1000e", "e1000", "8139cp", "igb", "igbvf", "xhci_pci"]
PPC_MODULES = ["vfio_iommu_spapr_tce"]

# The userland: packages whose files the guest runs (busybox) or Passage's binaries load.
USERLAND = ["busybox-static", "libc6", "libgcc-s1", "libudev1", "libcap2"]
# What the cross build links against (libudev's pkg-config file and .so link).
BUILD = ["libudev-dev"]

BASE_APPEND = "panic=-1 quiet rdinit=/init"

# The x86 bed's pieces, on each machine's own root bus. Groups come from the kernel; tests
# compare membership with the kernel's listing, never numbers.
ARM_DEVICES = [
    # A root port with an endpoint, and a second one with a multifunction card behind it.
    "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
    "-device", "e1000e,bus=rp1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
    "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x3",
    "-device", "e1000e,bus=rp2,addr=0.0,multifunction=on,netdev=n2", "-netdev", "user,id=n2,restrict=on",
    "-device", "qemu-xhci,bus=rp2,addr=0.1",
    # A switch: its upstream port alone, each downstream port with its endpoint.
    "-device", "pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x4",
    "-device", "x3130-upstream,id=up1,bus=rp3",
    "-device", "xio3130-downstream,id=dn1,bus=up1,chassis=11,slot=11",
    "-device", "e1000e,bus=dn1,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    # A PCIe-to-PCI bridge with two conventional devices: bridge and both together.
    "-device", "pcie-root-port,id=rp4,chassis=4,slot=4,bus=pcie.0,addr=0x5",
    "-device", "pcie-pci-bridge,id=br1,bus=rp4",
    "-device", "e1000,bus=br1,addr=0x1,netdev=n4", "-netdev", "user,id=n4,restrict=on",
    "-device", "rtl8139,bus=br1,addr=0x2,netdev=n5", "-netdev", "user,id=n5,restrict=on",
]

# An SR-IOV card (QEMU's igb, from QEMU 8 on: bookworm-backports' QEMU) behind a root port of
# its own; the job creates its virtual functions.
ARM_SRIOV = [
    "-device", "pcie-root-port,id=rp5,chassis=5,slot=5,bus=pcie.0,addr=0x6",
    "-device", "igb,bus=rp5,netdev=n6", "-netdev", "user,id=n6,restrict=on",
]

# q35 for a kernel of another release: the x86 bed's kinds of reset — an e1000e alone behind a
# root port, a multifunction card (two functions on one bus: no bus reset for either), a
# PCIe-to-PCI bridge with two conventional devices, and an rtl8139 alone behind a PCI bridge.
X86_DEVICES = [
    "-device", "intel-iommu,intremap=on,caching-mode=on",
    "-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x2",
    "-device", "e1000e,bus=rp1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
    "-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x3",
    "-device", "e1000e,bus=rp2,addr=0.0,multifunction=on,netdev=n2", "-netdev", "user,id=n2,restrict=on",
    "-device", "qemu-xhci,bus=rp2,addr=0.1",
    "-device", "pcie-root-port,id=rp3,chassis=3,slot=3,bus=pcie.0,addr=0x4",
    "-device", "pcie-pci-bridge,id=br1,bus=rp3",
    "-device", "e1000,bus=br1,addr=0x1,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    "-device", "rtl8139,bus=br1,addr=0x2,netdev=n4", "-netdev", "user,id=n4,restrict=on",
    "-device", "pci-bridge,id=pb1,chassis_nr=9,bus=pcie.0,addr=0x5",
    "-device", "rtl8139,bus=pb1,addr=0x1,netdev=n5", "-netdev", "user,id=n5,restrict=on",
]

# pseries: each spapr-pci-host-bridge is a partitionable endpoint of its own; devices on one
# bridge share it.
PPC_DEVICES = [
    "-device", "spapr-pci-host-bridge,index=1,id=phb1",
    "-device", "e1000,bus=phb1.0,addr=0x1,netdev=n1", "-netdev", "user,id=n1,restrict=on",
    "-device", "rtl8139,bus=phb1.0,addr=0x2,netdev=n2", "-netdev", "user,id=n2,restrict=on",
    "-device", "spapr-pci-host-bridge,index=2,id=phb2",
    "-device", "pci-bridge,id=pb1,chassis_nr=1,bus=phb2.0,addr=0x1",
    "-device", "e1000,bus=pb1,addr=0x1,netdev=n3", "-netdev", "user,id=n3,restrict=on",
    "-device", "spapr-pci-host-bridge,index=3,id=phb3",
    "-device", "e1000,bus=phb3.0,addr=0x1,netdev=n4", "-netdev", "user,id=n4,restrict=on",
]

# Topology → (architecture, machine options, devices, kernel suite). Debian 12's ppc64el
# kernel (6.1) has no IOMMU operations for pseries groups, so vfio-pci refuses every device
# there ("probe … failed with error -22": VFIO asks the IOMMU for cache coherency and nobody
# answers; POWER answers from 6.4): the POWER bed runs bookworm-backports' kernel, and one boot
# of 6.1 shows what Passage says about that kernel.
TOPOLOGIES = {
    # A GICv3 with its ITS: interrupts a device sends are isolated, which VFIO's type1 needs.
    "arm64-smmuv3": ("arm64", "virt,iommu=smmuv3,gic-version=3", ARM_DEVICES + ARM_SRIOV, ""),
    # QEMU's default GICv2: no MSI isolation, so VFIO refuses every group (the doctor and
    # verify say why).
    "arm64-smmuv3-gicv2": ("arm64", "virt,iommu=smmuv3", ARM_DEVICES, ""),
    "arm64-no-iommu": ("arm64", "virt", ARM_DEVICES, ""),
    "ppc64le-pseries": ("ppc64el", "pseries", PPC_DEVICES, "backports"),
    "ppc64le-pseries-6.1": ("ppc64el", "pseries", PPC_DEVICES, ""),
    # Linux 5.10 (Debian 11) on q35 with VT-d: no reset_method files; Passage models each
    # function's resets as that kernel tries them.
    "x86-linux-5.10": ("amd64", "q35,kernel-irqchip=split", X86_DEVICES, "bullseye"),
}


def cache(arch):
    d = CACHE / f"cross-{arch}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def apt(arch):
    """apt-get options for a private state of ARCH's package lists (the host's apt sources,
    read; its lists, cache and architectures untouched)."""
    d = cache(arch) / "apt"
    for sub in ["lists/partial", "cache/archives/partial"]:
        (d / sub).mkdir(parents=True, exist_ok=True)
    sources = d / "sources.list"
    # Written afresh when what it should say changed (a suite added since the cache was made),
    # and the lists read again then.
    fresh = False
    name = codename()
    if name:
        uri = apt_uri()
        key = "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
        lines = [f"deb [arch={arch} {key}] {uri} {name} main",
                 f"deb [arch={arch} {key}] {uri} {name}-updates main",
                 f"deb [arch={arch} {key}] {uri} {name}-backports main"]
        if any(a == arch and s == "bullseye" for a, _, _, s in TOPOLOGIES.values()):
            # An older release's kernel, for kernels before 5.15.
            lines.append(f"deb [arch={arch} {key}] {uri} bullseye main")
        security = uri.rstrip("/") + "-security"
        lines.append(f"deb [arch={arch} {key}] {security} {name}-security main")
        text = "\n".join(lines) + "\n"
        if not sources.exists() or sources.read_text() != text:
            sources.write_text(text)
            fresh = True
    opts = [f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State::Lists={d}/lists", f"-oDir::Cache={d}/cache", "-oAPT::Get::List-Cleanup=0",
            f"-oAPT::Architecture={arch}", f"-oAPT::Architectures={arch}",
            "-oDir::State::status=/dev/null"]
    # A run whose update read only some of the lists says so in a mark: the next run (not this
    # one: every download asks for these options) reads them all again.
    incomplete = d / "update-incomplete"
    if arch not in UPDATED and (fresh or incomplete.exists() or not any((d / "lists").glob("*Packages*"))):
        log(f"reading Debian's {arch} package lists")
        if apt_update(arch, opts, d / "lists"):
            incomplete.unlink(missing_ok=True)
        else:
            incomplete.touch()
    UPDATED.add(arch)
    return opts


# The architectures whose lists this process has read (or tried to) already.
UPDATED = set()


def codename():
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"') or "bookworm"
    return "bookworm"


def download(arch, pkgs, suite=""):
    """The .deb of each package (the newest the lists name; from <codename>-backports with
    suite "backports"), downloaded once into a directory per suite."""
    d = cache(arch) / ("debs-" + suite if suite else "debs")
    d.mkdir(exist_ok=True)
    out = []
    missing = [p for p in pkgs if not sorted(d.glob(f"{p}_*.deb"))]
    if missing:
        log(f"downloading {arch}: {' '.join(missing)}")
        release = f"{codename()}-{suite}" if suite == "backports" else suite
        names = [f"{p}/{release}" if suite else p for p in missing]
        r = subprocess.run(["apt-get", *apt(arch), "download", *names], cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable(f"apt-get download of {arch} packages failed: {r.stderr.strip()[-400:]}")
    for p in pkgs:
        debs = sorted(d.glob(f"{p}_*.deb"))
        if not debs:
            raise Unavailable(f"no {arch} package {p}")
        out.append(debs[-1])
    return out


def unpack(deb: Path, into: Path):
    run(["dpkg-deb", "-x", str(deb), str(into)])


def kernel(arch, suite=""):
    """Unpacks (once) the image package ARCH's kernel metapackage (of SUITE) points to; returns
    its root, the image file and the version."""
    a = ARCHES[arch]
    (meta,) = download(arch, [a["kernel"]], suite)
    dep = subprocess.run(["dpkg-deb", "-f", str(meta), "Depends"], check=True, capture_output=True, text=True).stdout
    pkg = dep.split(",")[0].split("(")[0].strip()
    (deb,) = download(arch, [pkg], suite)
    kroot = cache(arch) / deb.stem
    if not (kroot / "boot").exists():
        log(f"unpacking {deb.name}")
        tmp = kroot.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        unpack(deb, tmp)
        # Newer kernels ship compressed modules; busybox's insmod takes them plain.
        for xz in tmp.rglob("*.ko.xz"):
            xz.with_suffix("").write_bytes(lzma.decompress(xz.read_bytes()))
            xz.unlink()
        tmp.rename(kroot)
    kver = next((kroot / "lib/modules").iterdir()).name
    image = next(p for p in [kroot / f"boot/vmlinuz-{kver}", kroot / f"boot/vmlinux-{kver}"] if p.exists())
    return kroot, image, kver


def sysroot(arch):
    """ARCH's userland and build libraries unpacked in one tree (once)."""
    root = cache(arch) / "sysroot"
    debs = download(arch, USERLAND + BUILD)
    stamp = root / ".debs"
    want = "\n".join(d.name for d in debs)
    if not stamp.exists() or stamp.read_text() != want:
        shutil.rmtree(root, ignore_errors=True)
        tmp = root.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in debs:
            unpack(deb, tmp)
        (tmp / ".debs").write_text(want)
        tmp.rename(root)
    return root


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
mkdir -p /run/passage-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /run/passage-out || { echo "vm: cannot mount out"; poweroff -f; }
echo "vm: job starting"
cd /
env -i PATH=/run/passage-out/bin:/bin HOME=/root LANG=C.UTF-8 PASSAGE_IN_VM=1 OUT=/run/passage-out /bin/sh /run/passage-out/job.sh > /run/passage-out/job.log 2>&1
echo $? > /run/passage-out/job.rc
echo "vm: job finished rc=$(cat /run/passage-out/job.rc)"
sync
umount /run/passage-out
poweroff -f
"""


def prepare(arch, suite=""):
    """Kernel image, initramfs and version for ARCH, its kernel from SUITE (cached)."""
    a = ARCHES[arch]
    if not shutil.which(a["qemu"]):
        raise Unavailable(f"{a['qemu']} is not installed (apt-get install {a['qemu_pkg']})")
    kroot, image, kver = kernel(arch, suite)
    sroot = sysroot(arch)
    names = MODULES + a["modules"] + (PPC_MODULES if arch == "ppc64el" else [])
    mods = resolve_modules(kroot / "lib/modules" / kver, names)
    key = hashlib.sha256((INIT + "\n".join(str(m) for m in mods) + (sroot / ".debs").read_text()).encode()).hexdigest()[:12]
    initrd = cache(arch) / f"initramfs-{kver}-{key}.cpio"
    if not initrd.exists():
        log(f"building the {arch} initramfs")
        stage = cache(arch) / "initramfs.stage"
        shutil.rmtree(stage, ignore_errors=True)
        for d in ["bin", "proc", "sys", "dev", "lib/modules"]:
            (stage / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(sroot / "bin/busybox", stage / "bin/busybox")
        # The libraries, where the loader looks for them (Debian's multiarch directories).
        for sub in ["lib", "usr/lib"]:
            src = sroot / sub / a["triplet"]
            if src.exists():
                shutil.copytree(src, stage / sub / a["triplet"], symlinks=True, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.a", "pkgconfig", "gconv"))
        for loader in [sroot / "lib" / a["loader"], sroot / "lib64" / a["loader"]]:
            if loader.is_symlink() or loader.exists():
                dest = stage / loader.relative_to(sroot)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(os.readlink(loader))
        for ko in mods:
            shutil.copy2(ko, stage / "lib/modules" / ko.name)
        (stage / "modules.order").write_text("\n".join(ko.name for ko in mods) + "\n")
        (stage / "init").write_text(INIT)
        (stage / "init").chmod(0o755)
        write_initramfs(stage, initrd)
        shutil.rmtree(stage, ignore_errors=True)
    return image, initrd, kver


def qemu_command(topology, image, initrd, out: Path):
    arch, machine, devices, _ = TOPOLOGIES[topology]
    a = ARCHES[arch]
    append = f"console={a['console']} {BASE_APPEND}"
    if arch == "arm64":
        # The share on virtio-mmio: outside PCI, so outside every group.
        share = ["-device", "virtio-9p-device,fsdev=fs1,mount_tag=out"]
        cpu = ["-cpu", "max", "-smp", "2"]
    elif arch == "amd64":
        # q35 has no virtio-mmio: the share on the root complex, alone in its group.
        share = ["-device", "virtio-9p-pci,fsdev=fs1,mount_tag=out,bus=pcie.0,addr=0x10"]
        cpu = ["-smp", "2"]
        append += " intel_iommu=on"
    else:
        # pseries has no virtio-mmio: the share gets a host bridge of its own (index 0 is the
        # machine's default bridge; nothing else is put on it).
        share = ["-device", "virtio-9p-pci,fsdev=fs1,mount_tag=out,bus=pci.0"]
        cpu = ["-smp", "2"]
    # igb needs QEMU 8 or later: bookworm-backports' QEMU, unpacked privately (vm.py).
    qemu = str(new_qemu(a["qemu_pkg"], a["qemu"])) if "igb," in " ".join(devices) else a["qemu"]
    return [
        qemu, "-accel", "tcg,thread=multi", *cpu,
        "-machine", machine, "-m", "1G",
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-no-reboot",
        "-kernel", str(image), "-initrd", str(initrd), "-append", append,
        "-fsdev", f"local,id=fs1,path={out},security_model=none",
        *share,
        *devices,
    ]


def build(arch):
    """Builds passagectl and passage-helper for ARCH with Debian's cross compiler, linking the
    sysroot's libudev; returns their paths. (Plain builds: no test-only features.)"""
    a = ARCHES[arch]
    if not shutil.which(f"{a['triplet']}-gcc"):
        raise Unavailable(f"{a['triplet']}-gcc is not installed (apt-get install gcc-{a['triplet']})")
    root = sysroot(arch)
    libs = [root / "lib" / a["triplet"], root / "usr/lib" / a["triplet"]]
    target = a["rust"].upper().replace("-", "_")
    env = dict(os.environ)
    env.update({
        "PKG_CONFIG_ALLOW_CROSS": "1",
        "PKG_CONFIG_SYSROOT_DIR": str(root),
        "PKG_CONFIG_LIBDIR": f"{libs[1]}/pkgconfig:{root}/usr/share/pkgconfig",
        f"CARGO_TARGET_{target}_LINKER": f"{a['triplet']}-gcc",
        # libudev's own dependencies (libcap) are found through the sysroot, never the host's.
        f"CARGO_TARGET_{target}_RUSTFLAGS": "-C link-arg=-Wl,-rpath-link," + ":".join(str(p) for p in libs),
    })
    manifest = Path(__file__).resolve().parents[2] / "Cargo.toml"
    cargo = os.environ.get("CARGO", "cargo")
    r = subprocess.run([cargo, "build", "--quiet", "--manifest-path", str(manifest), "--target", a["rust"],
                        "-p", "passagectl", "-p", "passage-helper"], env=env)
    if r.returncode != 0:
        raise Unavailable(f"the {arch} build failed (is the Rust target installed? rustup target add {a['rust']})")
    meta = subprocess.run([cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(manifest)],
                          capture_output=True, text=True, check=True).stdout
    import json
    out = Path(json.loads(meta)["target_directory"]) / a["rust"] / "debug"
    return [out / "passagectl", out / "passage-helper"]


def strip_into(arch, binary: Path, dest: Path):
    """A copy of BINARY without its debug sections (smaller over 9p), by the cross binutils."""
    a = ARCHES[arch]
    strip = shutil.which(f"{a['triplet']}-strip")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if strip:
        run([strip, "-o", str(dest), str(binary)])
    else:
        shutil.copy2(binary, dest)


def boot(topology, out: Path, job: Path, bins, timeout=None):
    timeout = timeout or int(os.environ.get("PASSAGE_VM_TIMEOUT", "900"))
    arch, _, _, suite = TOPOLOGIES[topology]
    image, initrd, kver = prepare(arch, suite)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(job, out / "job.sh")
    for f in ["job.rc", "job.log"]:
        (out / f).unlink(missing_ok=True)
    for b in bins:
        strip_into(arch, Path(b), out / "bin" / Path(b).name)
    (out / "kernel").write_text(kver + "\n")
    cmd = qemu_command(topology, image, initrd, out)
    (out / "qemu.cmd").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    with open(out / "console.log", "wb") as console:
        try:
            subprocess.run(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{topology}: the VM did not finish within {timeout} s; see {out}/console.log")
    (out / "seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    if not (out / "job.rc").exists():
        tail = (out / "console.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{topology}: the guest did not run the job; console:\n{tail}")
    return int((out / "job.rc").read_text().strip() or "1")


def pack(src: Path, dest: Path, source: str):
    """Packs a recording (`passagectl record DIR`) into one JSON document that
    passage_core::demo::unpack lays out again: directories, relative links, files as text
    (UTF-8 without NUL) or hex."""
    import json
    entries = []
    for top, dirs, files in os.walk(src, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            full = Path(top) / name
            rel = str(full.relative_to(src))
            if full.is_symlink():
                target = os.readlink(full)
                if os.path.isabs(target):
                    raise SystemExit(f"{full}: an absolute link")
                entries.append({"path": rel, "link": target})
            elif full.is_dir():
                entries.append({"path": rel, "dir": True})
            else:
                data = full.read_bytes()
                try:
                    text = data.decode("utf-8")
                    entries.append({"path": rel, "text": text} if "\0" not in text else {"path": rel, "hex": data.hex()})
                except UnicodeDecodeError:
                    entries.append({"path": rel, "hex": data.hex()})
    doc = {"format": "passage-recording-1", "source": source, "entries": entries}
    dest.write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")


def main(argv):
    try:
        if len(argv) in (2, 3) and argv[0] == "prepare" and argv[1] in ARCHES:
            image, initrd, kver = prepare(argv[1], argv[2] if len(argv) == 3 else "")
            print(f"kernel {kver}\nimage {image}\ninitramfs {initrd}\nsysroot {sysroot(argv[1])}")
            return 0
        if len(argv) == 2 and argv[0] == "build" and argv[1] in ARCHES:
            print("\n".join(str(p) for p in build(argv[1])))
            return 0
        if len(argv) == 2 and argv[0] == "sysroot" and argv[1] in ARCHES:
            print(sysroot(argv[1]))
            return 0
        if len(argv) == 4 and argv[0] == "pack":
            pack(Path(argv[1]), Path(argv[2]), argv[3])
            return 0
        if len(argv) == 1 and argv[0] == "topologies":
            for name, (arch, machine, devs, suite) in TOPOLOGIES.items():
                print(name, arch, suite or "stable", machine, " ".join(devs))
            return 0
        if len(argv) >= 4 and argv[0] == "run" and argv[1] in TOPOLOGIES:
            rc = boot(argv[1], Path(argv[2]).resolve(), Path(argv[3]), argv[4:])
            print(f"job exit code {rc}")
            return 0
    except Unavailable as e:
        raise SystemExit(f"cross: cannot run the real-kernel tests here: {e}")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
