//! The VFIO usability check: the same steps QEMU takes to use a group, done and undone, with
//! the answer in words. Interrupt-remapping and RMRR problems, partial groups and a guest
//! holding the group all surface here, before QEMU would die on them.
//!
//! Steps (Documentation/driver-api/vfio.rst): open `/dev/vfio/vfio` (a container), open
//! `/dev/vfio/N`, `VFIO_GROUP_GET_STATUS` (viable?), `VFIO_GROUP_SET_CONTAINER`,
//! `VFIO_SET_IOMMU` (the first backend the kernel offers, in QEMU's order: type1 v2, type1, or
//! POWER's sPAPR TCE), then `VFIO_GROUP_GET_DEVICE_FD` for each member on vfio-pci.
//! Closing the file descriptors undoes all of it.

use crate::address::{GroupId, PciAddress};
use crate::i18n::{tr, trf};
use crate::model::Host;
use serde::Serialize;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// ioctl numbers: `_IO(VFIO_TYPE, VFIO_BASE + n)` with VFIO_TYPE ';' and VFIO_BASE 100.
const fn vfio_io(n: u64) -> u64 {
    IOC_NONE | ((b';' as u64) << 8) | (100 + n)
}
/// `_IO`'s direction bits for "no data": 0 where Linux uses the generic encoding, but POWER,
/// MIPS and SPARC have `_IOC_NONE` = 1 at bit 29 (asm/ioctl.h).
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
))]
const IOC_NONE: u64 = 1 << 29;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
)))]
const IOC_NONE: u64 = 0;
const VFIO_GET_API_VERSION: u64 = vfio_io(0);
const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
const VFIO_SET_IOMMU: u64 = vfio_io(2);
const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
const VFIO_API_VERSION: i32 = 0;
const VFIO_TYPE1_IOMMU: u64 = 1;
const VFIO_TYPE1V2_IOMMU: u64 = 3;
// POWER's IOMMU backends (the platform's TCE tables), v2 first, as QEMU picks them.
const VFIO_SPAPR_TCE_IOMMU: u64 = 2;
const VFIO_SPAPR_TCE_V2_IOMMU: u64 = 7;
const GROUP_FLAGS_VIABLE: u32 = 1;
// iommufd and VFIO's device files (the "cdev" interface, QEMU's `-object iommufd`):
// include/uapi/linux/vfio.h and iommufd.h. Both types are ';'; iommufd's commands start at
// 0x80 (IOMMUFD_CMD_IOAS_ALLOC = 0x81).
const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio_io(18);
const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = vfio_io(19);
const IOMMU_IOAS_ALLOC: u64 = IOC_NONE | ((b';' as u64) << 8) | 0x81;

#[repr(C)]
struct BindIommufd {
    argsz: u32,
    flags: u32,
    iommufd: i32,
    out_devid: u32,
}

#[repr(C)]
struct IoasAlloc {
    size: u32,
    flags: u32,
    out_ioas_id: u32,
}

#[repr(C)]
struct AttachPt {
    argsz: u32,
    flags: u32,
    pt_id: u32,
}

#[repr(C)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// Which of the kernel's two ways in QEMU takes: the group files (`/dev/vfio/N` in a
/// container) or iommufd with VFIO's per-device files (`/dev/iommu`,
/// `/dev/vfio/devices/vfioX`; QEMU 9.0 and later with `-object iommufd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    Group,
    Iommufd,
}

/// The outcome, as a person needs it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// QEMU will be able to use the group.
    Usable {
        devices: Vec<PciAddress>,
        /// The ways checked: the group file always where the kernel has them, iommufd too where
        /// it has that and the devices' files; empty when the helper answered (its reply says
        /// it in words).
        ways: Vec<Interface>,
    },
    /// It will not, and this is why.
    NotUsable {
        code: String,
        message: String,
        remedy: Option<String>,
    },
}

/// Errors that are not an answer about the group (no permission, no such group).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("there is no IOMMU group {0} on this host")]
    NoGroup(GroupId),
    #[error("checking a group needs root (or the Passage helper): {0}")]
    Permission(io::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn errno_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> VerifyError {
    let what = what.into();
    move |source| VerifyError::Io { what, source }
}

fn ioctl(f: &File, req: u64, arg: u64) -> io::Result<i32> {
    // SAFETY: the VFIO ioctls used here take either an integer argument or a pointer to a
    // struct that lives on the caller's stack for the duration of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn not_usable(code: &str, message: String, remedy: Option<String>) -> Verdict {
    Verdict::NotUsable {
        code: code.into(),
        message,
        remedy,
    }
}

/// Processes that hold group `N` open, as "pid (comm)": through its group node
/// (`/dev/vfio/N`, or `noiommu-N`), or through a member's device file (`/dev/vfio/devices/vfioX`,
/// what QEMU opens with iommufd), found from `sys/kernel/iommu_groups/N/devices/*/vfio-dev`
/// beside `proc_root`.
pub fn holders(proc_root: &Path, group: GroupId) -> Vec<String> {
    let mut nodes = vec![
        std::path::PathBuf::from(format!("/dev/vfio/{group}")),
        std::path::PathBuf::from(format!("/dev/vfio/noiommu-{group}")),
    ];
    if let Some(root) = proc_root.parent() {
        let members = root.join(format!("sys/kernel/iommu_groups/{group}/devices"));
        for m in std::fs::read_dir(&members).into_iter().flatten().flatten() {
            for c in std::fs::read_dir(m.path().join("vfio-dev"))
                .into_iter()
                .flatten()
                .flatten()
            {
                nodes.push(Path::new("/dev/vfio/devices").join(c.file_name()));
            }
        }
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return out;
    };
    // This process is no holder: verify itself has the files open while it asks.
    let me = std::process::id().to_string();
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && *s != me)
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| nodes.contains(&t)))
        {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({})", comm.trim()));
        }
    }
    out
}

/// The kernel's viability flag for a group node (`VFIO_GROUP_GET_STATUS`).
pub fn group_status(node: &Path) -> io::Result<bool> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(node)?;
    let mut status = GroupStatus {
        argsz: std::mem::size_of::<GroupStatus>() as u32,
        flags: 0,
    };
    ioctl(
        &f,
        VFIO_GROUP_GET_STATUS,
        &mut status as *mut GroupStatus as u64,
    )?;
    Ok(status.flags & GROUP_FLAGS_VIABLE != 0)
}

/// The kernel's ways into VFIO besides the group files, as a host root shows them: iommufd
/// (`dev/iommu`), and VFIO's per-device files (CONFIG_VFIO_DEVICE_CDEV: a `dev` in each
/// `sys/class/vfio-dev/vfioX`; `None` while no device is on vfio-pci, when nothing tells).
pub fn kernel_interfaces(root: &crate::host::HostRoot) -> (bool, Option<bool>) {
    let cdev = root.read_dir("sys/class/vfio-dev").ok().and_then(|devs| {
        let first = devs.first()?;
        Some(root.present(Path::new("sys/class/vfio-dev").join(first).join("dev")))
    });
    (root.present("dev/iommu"), cdev)
}

/// The device file VFIO made for `d` (`vfio-dev/vfioX` in its sysfs directory under `root`),
/// where the kernel has them (CONFIG_VFIO_DEVICE_CDEV) and `d` is on vfio-pci.
pub fn device_file(root: &Path, d: &crate::model::Device) -> Option<String> {
    let dir = root.join(&d.sysfs_path).join("vfio-dev");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| {
            n.strip_prefix("vfio")
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The way QEMU would take on this host for group `id`: iommufd where the kernel has it
/// (`/dev/iommu`) and every member on vfio-pci has its device file; the group files otherwise.
pub fn interface_for(host: &Host, id: GroupId, root: &Path, dev: &Path) -> Interface {
    let Some(group) = host.groups.get(&id) else {
        return Interface::Group;
    };
    let on_vfio: Vec<_> = host.members(group).filter(|d| d.on_vfio()).collect();
    if dev.join("iommu").exists()
        && !on_vfio.is_empty()
        && on_vfio.iter().all(|d| device_file(root, d).is_some())
    {
        Interface::Iommufd
    } else {
        Interface::Group
    }
}

/// Runs QEMU's steps on group `id` of the live host (`dev` is normally `/dev`): through the
/// group file and a container (what libvirt and QEMU do by default), and where the host has
/// iommufd and the devices' own files also through those (QEMU 9.0 and later with
/// `-object iommufd`, the form Passage's export writes there). Usable only when every way
/// the host offers works; a failure says which way failed.
pub fn verify(
    host: &Host,
    id: GroupId,
    dev: &Path,
    proc_root: &Path,
) -> Result<Verdict, VerifyError> {
    let group = host.groups.get(&id).ok_or(VerifyError::NoGroup(id))?;
    let members: Vec<_> = host.members(group).collect();
    let blockers: Vec<String> = members
        .iter()
        .filter(|d| d.is_endpoint() && !d.driver_is_harmless())
        .map(|d| format!("{} ({})", d.address, d.driver.as_deref().unwrap_or("?")))
        .collect();
    let root = proc_root.parent().unwrap_or(Path::new("/"));
    let iommufd = interface_for(host, id, root, dev) == Interface::Iommufd;
    let node: PathBuf = dev.join("vfio").join(id.to_string());
    let mut ways = Vec::new();
    let mut devices = Vec::new();
    // A kernel built without the group files (CONFIG_VFIO_GROUP=n) has only the iommufd way.
    if !iommufd || node.exists() {
        match verify_group(host, id, &members, &blockers, dev, proc_root)? {
            Verdict::Usable { devices: d, .. } => {
                devices = d;
                ways.push(Interface::Group);
            }
            not => return Ok(not),
        }
    }
    if iommufd {
        match verify_iommufd(host, id, &members, &blockers, root, dev, proc_root)? {
            Verdict::Usable { devices: d, .. } => {
                devices = d;
                ways.push(Interface::Iommufd);
            }
            Verdict::NotUsable {
                code,
                message,
                remedy,
            } if !ways.is_empty() => {
                return Ok(not_usable(
                    &code,
                    trf("QEMU can use group {id} through its group file, but not through iommufd (QEMU 9.0 and later with -object iommufd, the form passagectl export writes where this host has it): {message}", &[("id", &id.to_string()), ("message", &message)]),
                    Some(match remedy {
                        Some(r) => trf("{remedy} Or give QEMU the group form: passagectl export --format qemu --no-iommufd.", &[("remedy", &r)]),
                        None => tr("Give QEMU the group form: passagectl export --format qemu --no-iommufd."),
                    }),
                ))
            }
            not => return Ok(not),
        }
    }
    Ok(Verdict::Usable { devices, ways })
}

/// QEMU's steps through the group file: the container, the IOMMU backend, each device's fd.
fn verify_group(
    host: &Host,
    id: GroupId,
    members: &[&crate::model::Device],
    blockers: &[String],
    dev: &Path,
    proc_root: &Path,
) -> Result<Verdict, VerifyError> {
    let node: PathBuf = dev.join("vfio").join(id.to_string());
    if !node.exists() {
        return Ok(not_usable(
            "not-bound",
            trf("No member of group {id} is bound to vfio-pci, so there is no /dev/vfio/{id} for QEMU to open.", &[("id", &id.to_string())]),
            Some(trf("Claim the group: passagectl claim {id}.", &[("id", &id.to_string())])),
        ));
    }
    let container = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("vfio/vfio"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => VerifyError::Permission(e),
            _ => VerifyError::Io {
                what: "opening /dev/vfio/vfio".into(),
                source: e,
            },
        })?;
    let group_file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let who = holders(proc_root, id);
            let who = if who.is_empty() {
                tr("another process")
            } else {
                who.join(", ")
            };
            return Ok(not_usable(
                "held-by-process",
                trf("Group {id} is held open by {who} (a running guest, most likely); VFIO lets one user have a group at a time.", &[("id", &id.to_string()), ("who", &who)]),
                Some(trf("Stop that guest (or process) first, or give it this group in its configuration instead of starting a second one.", &[])),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(VerifyError::Permission(e))
        }
        Err(e) => {
            return Err(VerifyError::Io {
                what: format!("opening {}", node.display()),
                source: e,
            })
        }
    };
    let api =
        ioctl(&container, VFIO_GET_API_VERSION, 0).map_err(errno_io("VFIO_GET_API_VERSION"))?;
    if api != VFIO_API_VERSION {
        return Ok(not_usable(
            "vfio-api",
            trf(
                "The kernel speaks VFIO API version {v}, not 0.",
                &[("v", &api.to_string())],
            ),
            None,
        ));
    }
    let mut status = GroupStatus {
        argsz: std::mem::size_of::<GroupStatus>() as u32,
        flags: 0,
    };
    ioctl(
        &group_file,
        VFIO_GROUP_GET_STATUS,
        &mut status as *mut GroupStatus as u64,
    )
    .map_err(errno_io("VFIO_GROUP_GET_STATUS"))?;
    if status.flags & GROUP_FLAGS_VIABLE == 0 {
        let list = if blockers.is_empty() {
            "—".to_string()
        } else {
            blockers.join("; ")
        };
        return Ok(not_usable(
            "not-viable",
            trf("Group {id} is not viable: every member must be released by the host, but these are still on host drivers: {devices}. QEMU would stop with “group {id} is not viable”.", &[("id", &id.to_string()), ("devices", &list)]),
            Some(trf("Claim the whole group (passagectl claim {id}), which binds every member together.", &[("id", &id.to_string())])),
        ));
    }
    let fd = container.as_raw_fd();
    if let Err(e) = ioctl(
        &group_file,
        VFIO_GROUP_SET_CONTAINER,
        &fd as *const i32 as u64,
    ) {
        return Ok(not_usable(
            "set-container",
            trf(
                "The kernel refused to put group {id} in a VFIO container ({error}).",
                &[("id", &id.to_string()), ("error", &e.to_string())],
            ),
            None,
        ));
    }
    // The first backend this kernel offers, in QEMU's order (vfio_get_iommu_type): type1 v2,
    // type1, then POWER's sPAPR TCE v2 and v1. None offered: type1, whose refusal says why.
    let iommu = [
        VFIO_TYPE1V2_IOMMU,
        VFIO_TYPE1_IOMMU,
        VFIO_SPAPR_TCE_V2_IOMMU,
        VFIO_SPAPR_TCE_IOMMU,
    ]
    .into_iter()
    .find(|t| ioctl(&container, VFIO_CHECK_EXTENSION, *t).unwrap_or(0) > 0)
    .unwrap_or(VFIO_TYPE1_IOMMU);
    if let Err(e) = ioctl(&container, VFIO_SET_IOMMU, iommu) {
        let (code, message, remedy) = match e.raw_os_error() {
            // On ARM the isolation of MSIs is the interrupt controller's (a GICv3 ITS), not
            // the IOMMU's: the same EPERM, another remedy.
            Some(libc::EPERM) if host.platform.arch.as_deref() == Some("arm64") => (
                "no-interrupt-remapping",
                trf("The IOMMU driver refused group {id} (EPERM from VFIO_SET_IOMMU): on ARM a device's interrupts (MSIs) are isolated by the interrupt controller's ITS (GICv3 or later), and this machine's has none (a GICv2, or a GICv3 without an ITS), so vfio_iommu_type1 does not allow them.", &[("id", &id.to_string())]),
                Some(trf("Use a machine (or firmware setting) with a GICv3 ITS — in a QEMU virt machine, -machine virt,gic-version=3 (libvirt: <gic version='3'/>); as a last resort set vfio_iommu_type1.allow_unsafe_interrupts=1, which lets the device inject interrupts into the host.", &[])),
            ),
            Some(libc::EPERM) => (
                "no-interrupt-remapping",
                trf("The IOMMU driver refused group {id} (EPERM from VFIO_SET_IOMMU): the platform has no interrupt remapping, and vfio_iommu_type1 does not allow unsafe interrupts.", &[("id", &id.to_string())]),
                Some(trf("Enable interrupt remapping in the firmware; as a last resort set vfio_iommu_type1.allow_unsafe_interrupts=1, which lets the device inject interrupts into the host.", &[])),
            ),
            _ => (
                "iommu-attach",
                trf("The IOMMU could not attach group {id} ({error}). On Intel this is often a device with an RMRR (“ineligible for IOMMU domain attach” in the kernel log).", &[("id", &id.to_string()), ("error", &e.to_string())]),
                Some(trf("Check the kernel log (dmesg) for the device; an RMRR-bound device usually cannot be assigned.", &[])),
            ),
        };
        return Ok(not_usable(code, message, remedy));
    }
    let mut opened = Vec::new();
    for d in members.iter().filter(|d| d.on_vfio()) {
        let name = CString::new(d.address.to_string()).map_err(|e| VerifyError::Io {
            what: "address".into(),
            source: io::Error::other(e),
        })?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::ioctl(
                group_file.as_raw_fd(),
                VFIO_GROUP_GET_DEVICE_FD as _,
                name.as_ptr(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Ok(not_usable(
                "device-open",
                trf(
                    "The group is attached, but {device} cannot be opened for a guest ({error}).",
                    &[
                        ("device", &d.address.to_string()),
                        ("error", &e.to_string()),
                    ],
                ),
                None,
            ));
        }
        // SAFETY: r is a file descriptor the kernel just gave us; File closes it.
        drop(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(r) });
        opened.push(d.address);
    }
    Ok(Verdict::Usable {
        devices: opened,
        ways: vec![Interface::Group],
    })
}

/// QEMU's steps with iommufd (hw/vfio/iommufd.c): open `/dev/iommu`, allocate an I/O address
/// space, then for each member on vfio-pci open its device file, bind it to the iommufd
/// (where the kernel claims DMA ownership of the whole group: a member still on a host driver
/// makes it EBUSY, missing interrupt isolation EPERM) and attach it to the address space.
fn verify_iommufd(
    host: &Host,
    id: GroupId,
    members: &[&crate::model::Device],
    blockers: &[String],
    root: &Path,
    dev: &Path,
    proc_root: &Path,
) -> Result<Verdict, VerifyError> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => VerifyError::Permission(e),
                _ => VerifyError::Io {
                    what: format!("opening {}", p.display()),
                    source: e,
                },
            })
    };
    // Binding a device claims DMA ownership of its whole group: a member still on a host
    // driver makes it fail (EPERM or EBUSY, depending on who owns the group). Said as the group
    // way says it, before any bind.
    if !blockers.is_empty() {
        return Ok(not_usable(
            "not-viable",
            trf("Group {id} cannot be given to a guest: binding a device to iommufd needs the whole group free of host drivers, but these are still on them: {devices}.", &[("id", &id.to_string()), ("devices", &blockers.join("; "))]),
            Some(trf("Claim the whole group (passagectl claim {id}), which binds every member together.", &[("id", &id.to_string())])),
        ));
    }
    let iommufd = open(&dev.join("iommu"))?;
    let mut ioas = IoasAlloc {
        size: std::mem::size_of::<IoasAlloc>() as u32,
        flags: 0,
        out_ioas_id: 0,
    };
    ioctl(
        &iommufd,
        IOMMU_IOAS_ALLOC,
        &mut ioas as *mut IoasAlloc as u64,
    )
    .map_err(errno_io("IOMMU_IOAS_ALLOC"))?;
    let mut opened = Vec::new();
    let mut files = Vec::new();
    for d in members.iter().filter(|d| d.on_vfio()) {
        let Some(name) = device_file(root, d) else {
            continue;
        };
        let file = open(&dev.join("vfio/devices").join(&name))?;
        let mut bind = BindIommufd {
            argsz: std::mem::size_of::<BindIommufd>() as u32,
            flags: 0,
            iommufd: iommufd.as_raw_fd(),
            out_devid: 0,
        };
        if let Err(e) = ioctl(
            &file,
            VFIO_DEVICE_BIND_IOMMUFD,
            &mut bind as *mut BindIommufd as u64,
        ) {
            // Someone else holding the group (another guest's iommufd: EPERM; its group file:
            // EBUSY; this very device's file: EINVAL) is asked before anything is blamed.
            let who = holders(proc_root, id);
            let (code, message, remedy) = match e.raw_os_error() {
                Some(libc::EBUSY | libc::EPERM | libc::EINVAL) if !who.is_empty() => (
                    "held-by-process",
                    trf("{device} of group {id} is in use by {who} (a running guest, most likely, through its group file or its device file); VFIO lets one user have a device at a time.", &[("id", &id.to_string()), ("device", &d.address.to_string()), ("who", &who.join(", "))]),
                    Some(trf("Stop that guest (or process) first, or give it this group in its configuration instead of starting a second one.", &[])),
                ),
                Some(libc::EBUSY) => (
                    "held-by-process",
                    trf("{device} of group {id} is in use by another process (through its group file or its device file); VFIO lets one user have a device at a time.", &[("id", &id.to_string()), ("device", &d.address.to_string())]),
                    Some(trf("Stop that guest (or process) first, or give it this group in its configuration instead of starting a second one.", &[])),
                ),
                Some(libc::EPERM) => (
                    "no-interrupt-remapping",
                    trf("iommufd refused {device} of group {id} (EPERM): the platform does not isolate the interrupts devices send (no interrupt remapping, or on ARM no GICv3 ITS), and iommufd does not allow unsafe interrupts.", &[("id", &id.to_string()), ("device", &d.address.to_string())]),
                    Some(if host.platform.arch.as_deref() == Some("arm64") {
                        trf("Use a machine with a GICv3 ITS (QEMU: -machine virt,gic-version=3); as a last resort set iommufd.allow_unsafe_interrupts=1, which lets the device inject interrupts into the host.", &[])
                    } else {
                        trf("Enable interrupt remapping in the firmware; as a last resort set iommufd.allow_unsafe_interrupts=1, which lets the device inject interrupts into the host.", &[])
                    }),
                ),
                _ => (
                    "device-open",
                    trf("{device} could not be bound to iommufd ({error}).", &[("device", &d.address.to_string()), ("error", &e.to_string())]),
                    None,
                ),
            };
            return Ok(not_usable(code, message, remedy));
        }
        let mut attach = AttachPt {
            argsz: std::mem::size_of::<AttachPt>() as u32,
            flags: 0,
            pt_id: ioas.out_ioas_id,
        };
        if let Err(e) = ioctl(
            &file,
            VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            &mut attach as *mut AttachPt as u64,
        ) {
            return Ok(not_usable(
                "iommu-attach",
                trf("The IOMMU could not attach {device} of group {id} to an I/O address space ({error}). On Intel this is often a device with an RMRR (“ineligible for IOMMU domain attach” in the kernel log).", &[("id", &id.to_string()), ("device", &d.address.to_string()), ("error", &e.to_string())]),
                Some(trf("Check the kernel log (dmesg) for the device; an RMRR-bound device usually cannot be assigned.", &[])),
            ));
        }
        // Kept open until every member is attached, as QEMU holds them; closing undoes it.
        files.push(file);
        opened.push(d.address);
    }
    if opened.is_empty() {
        return Ok(not_usable(
            "not-bound",
            trf("No member of group {id} is bound to vfio-pci, so there is no device file for QEMU to open.", &[("id", &id.to_string())]),
            Some(trf("Claim the group: passagectl claim {id}.", &[("id", &id.to_string())])),
        ));
    }
    drop(files);
    Ok(Verdict::Usable {
        devices: opened,
        ways: vec![Interface::Iommufd],
    })
}
