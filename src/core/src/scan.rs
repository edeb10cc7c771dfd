//! Reads a host root into a [`Host`]: devices, groups, platform facts and host usage.
//!
//! The kernel owns the rules: groups come from `sys/kernel/iommu_groups/N/devices`, never from
//! our own reasoning. Each file is read once; per-device work runs on all cores.

use crate::address::{GroupId, PciAddress, Target};
use crate::config::{Capabilities, ConfigSpace};
use crate::host::HostRoot;
use crate::model::{Bar, ClassCode, Device, Group, Hex16, Hex8, Host, IommuUnit, Platform};
use crate::pci_names;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// What stops a scan. Each carries the path so a person can look at it.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {what}")]
    Malformed { path: PathBuf, what: String },
}

pub(crate) fn io_err(root: &HostRoot, rel: &Path, source: io::Error) -> ScanError {
    ScanError::Io {
        path: root.path().join(rel),
        source,
    }
}

fn malformed(root: &HostRoot, rel: &Path, what: impl Into<String>) -> ScanError {
    ScanError::Malformed {
        path: root.path().join(rel),
        what: what.into(),
    }
}

pub(crate) fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

const DEVICES: &str = "sys/bus/pci/devices";
pub(crate) const GROUPS: &str = "sys/kernel/iommu_groups";

/// Scans everything: the entry point for every front end.
pub fn scan(root: &HostRoot) -> Result<Host, ScanError> {
    scan_parts(root, Parts::Whole)
}

/// How much of each device and group a scan reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Everything.
    Whole,
    /// What places a device in its group and its section, not what only a verdict reads
    /// ([`Details`] and the groups' types): the first step of a [`crate::sketch`].
    Identity,
}

pub(crate) fn scan_parts(root: &HostRoot, parts: Parts) -> Result<Host, ScanError> {
    // The groups' own files (their numbers and types) do not depend on the devices: they are
    // read beside them, so both cores stay busy through the devices' serial steps.
    let page_size = rustix::param::page_size() as u64;
    let (devices, kinds) = rayon::join(
        || scan_devices(root, page_size, parts),
        || group_kinds(root, parts),
    );
    let mut devices = devices?;
    link_virtfns(&mut devices);
    let groups = scan_groups(root, &devices, kinds?)?;
    let mut platform = scan_platform(root)?;
    platform.page_size = page_size;
    if platform.cpu_vendor.is_none() {
        platform.cpu_vendor = devices
            .values()
            .find(|d| is_root_host_bridge(d))
            .and_then(cpu_vendor_of);
    }
    let uses = crate::usage::scan_uses(root)?;
    Ok(Host {
        devices,
        groups,
        platform,
        uses,
        groups_on_host: None,
    })
}

/// Every device under `sys/bus/pci/devices`, read on every core.
fn scan_devices(
    root: &HostRoot,
    page_size: u64,
    parts: Parts,
) -> Result<BTreeMap<PciAddress, Device>, ScanError> {
    let names_dir = Path::new(DEVICES);
    let mut listing = root
        .open_dir(names_dir)
        .map_err(|e| io_err(root, names_dir, e))?;
    let entries = listing.names().map_err(|e| io_err(root, names_dir, e))?;
    let mut found = Vec::with_capacity(entries.len());
    for name in entries {
        let a: PciAddress = name.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            malformed(
                root,
                &names_dir.join(&name),
                "an entry that is not a PCI address",
            )
        })?;
        found.push((a, name));
    }
    let index = &LinkIndex::read(root);
    let dirs = device_dirs(root, &listing, &found);
    // Each device's directory, on every core. Neighbours in address order mostly share a
    // parent (a port's functions, a PF's VFs): each run of them opens that parent once and the
    // devices inside it by name, one component for the kernel to look up instead of the whole
    // walk from the root.
    let scanned: Vec<Result<Option<Device>, ScanError>> = found
        .par_iter()
        .zip(dirs)
        .chunks(64)
        .flat_map_iter(|chunk| {
            let mut parent: Option<crate::host::DirHandle<'_>> = None;
            chunk.into_iter().map(move |((a, _), dir)| {
                let dir = match dir {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let opened = dir.parent().zip(dir.file_name()).and_then(|(up, leaf)| {
                    if parent.as_ref().is_none_or(|p| p.rel() != up) {
                        parent = root.open_dir(up).ok();
                    }
                    parent.as_ref()?.open_subdir(Path::new(leaf)).ok()
                });
                match opened {
                    Some(h) => read_device_in(root, *a, h, page_size, Some(index), parts),
                    // A parent that would not open, or a device directory gone meanwhile,
                    // takes the walk from the root, with its errors.
                    None => read_device(root, *a, &dir, page_size, Some(index), parts),
                }
            })
        })
        .collect();
    let mut devices = BTreeMap::new();
    for d in scanned {
        if let Some(d) = d? {
            devices.insert(d.address, d);
        }
    }
    Ok(devices)
}

/// Where each device's directory is (`sys/devices/…/ADDR`), in the order of `found`.
///
/// The kernel shows it from both ends: the `bus/pci/devices/ADDR` link, and the device's
/// directory among its parent's subdirectories (a bridge's or a root bus's). One link per
/// parent is read; that parent's listing then gives every sibling, one `getdents` for a port's
/// hundred VFs instead of a hundred `readlink`s. A device no listing showed (its parent could
/// not be listed, or a recording that kept only links) is read from its link, and so is every
/// device while recording, whose tree must keep each link. `Ok(None)`: gone meanwhile.
fn device_dirs(
    root: &HostRoot,
    listing: &crate::host::DirHandle<'_>,
    found: &[(PciAddress, std::ffi::OsString)],
) -> Vec<Result<Option<PathBuf>, ScanError>> {
    let names_dir = Path::new(DEVICES);
    let wanted: std::collections::HashSet<PciAddress> = found.iter().map(|(a, _)| *a).collect();
    let mut seen: std::collections::HashMap<PciAddress, PathBuf> = Default::default();
    let mut listed: std::collections::HashSet<PathBuf> = Default::default();
    let mut out = Vec::with_capacity(found.len());
    for (a, name) in found {
        if let Some(dir) = seen.remove(a) {
            out.push(Ok(Some(dir)));
            continue;
        }
        let name = name.to_string_lossy();
        let dir = match listing.resolve_link(&name) {
            Ok(d) => d,
            Err(e) if not_found(&e) => {
                out.push(Ok(None));
                continue;
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                out.push(Err(malformed(
                    root,
                    &names_dir.join(&*name),
                    "not a link into sys/devices",
                )));
                continue;
            }
            Err(e) => {
                out.push(Err(io_err(root, &names_dir.join(&*name), e)));
                continue;
            }
        };
        if let Some(up) = dir.parent().filter(|_| !root.is_recording()) {
            if listed.insert(up.to_path_buf()) {
                let subdirs = root.open_dir(up).and_then(|mut h| h.subdirs());
                for sub in subdirs.unwrap_or_default() {
                    let Some(b) = sub.to_str().and_then(PciAddress::parse_str) else {
                        continue;
                    };
                    // Only a later device of this scan, never one already placed.
                    if b > *a && wanted.contains(&b) {
                        seen.entry(b).or_insert_with(|| up.join(&sub));
                    }
                }
            }
        }
        out.push(Ok(Some(dir)));
    }
    out
}

/// A host bridge on a root bus: its vendor is the platform's (until the CPU's own word is read).
fn is_root_host_bridge(d: &Device) -> bool {
    d.class.0 >> 8 == 0x0600 && d.address.bus == 0
}

fn cpu_vendor_of(d: &Device) -> Option<String> {
    match d.vendor_id.0 {
        0x8086 => Some("intel".to_string()),
        0x1022 => Some("amd".to_string()),
        _ => None,
    }
}

/// Reads only what explaining one device or group needs — the group's members (from the
/// group's own `devices` directory), the bridges above them, the virtual functions of its
/// physical functions, the platform and the host's uses — so `passagectl explain 40` on a
/// host of 10,000 functions reads a handful of device directories instead of all of them.
/// The answer is the one [`scan`] gives (`explain`'s words and JSON are the same byte for
/// byte; tests compare them on every recorded machine).
///
/// `Ok(None)` when a quick look cannot be sure: no such device or group, a device in no
/// group (the IOMMU is off), a group with no PCI member or with a bridge to conventional PCI
/// (functions below it may be in no group, see [`Host::stream_sharers`]), a tree that lacks
/// the group's member list or a physical function's `virtfnN` links (a recording keeps only what a full
/// scan reads), or facts that disagree (a member whose `iommu_group` link names another
/// group). The caller then scans everything, which gives the same answer or the same error.
pub fn scan_target(root: &HostRoot, target: Target) -> Option<Host> {
    // Any trouble on the quick path (a file the full scan never reads, an odd entry) is left
    // to the full scan, so `explain` answers or fails exactly as it did.
    scan_target_inner(root, target).ok().flatten()
}

fn scan_target_inner(root: &HostRoot, target: Target) -> Result<Option<Host>, ScanError> {
    let page_size = rustix::param::page_size() as u64;
    let mut devices = BTreeMap::new();
    let id = match target {
        Target::Group(g) => g,
        Target::Device(a) => match scan_device(root, a, page_size)? {
            Some(d) => match d.group {
                Some(g) => {
                    devices.insert(a, d);
                    g
                }
                None => return Ok(None),
            },
            None => return Ok(None),
        },
    };
    let gdir = Path::new(GROUPS).join(id.to_string());
    let gh = match root.open_dir(&gdir) {
        Ok(h) => h,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, &gdir, e)),
    };
    let names = match gh
        .open_subdir(Path::new("devices"))
        .and_then(|mut d| d.names())
    {
        Ok(n) => n,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, &gdir.join("devices"), e)),
    };
    let mut members: Vec<PciAddress> = Vec::with_capacity(names.len());
    for n in &names {
        match n.to_str().and_then(|n| n.parse().ok()) {
            Some(a) => members.push(a),
            // A platform member: the full scan reads those (and their groups' whole lists).
            None => return Ok(None),
        }
    }
    if members.is_empty() {
        return Ok(None);
    }
    if let Target::Device(a) = target {
        if !members.contains(&a) {
            return Ok(None); // the group's list and the device's link disagree (or raced)
        }
    }
    members.sort();
    for a in &members {
        if !devices.contains_key(a) {
            match scan_device(root, *a, page_size)? {
                Some(d) => {
                    devices.insert(*a, d);
                }
                None => return Ok(None),
            }
        }
        if devices.get(a).and_then(|d| d.group) != Some(id) {
            return Ok(None);
        }
        // Below a bridge to conventional PCI there may be functions the IOMMU driver left out
        // of every group that this group answers for (`Host::stream_sharers`): only the whole
        // host shows them.
        if devices.get(a).is_some_and(|d| d.is_conventional_bridge()) {
            return Ok(None);
        }
    }
    // A full scan learns a physical function's VFs from their `physfn` links; here the PF's
    // own `virtfnN` links say the same (the kernel makes both), as many as `sriov_numvfs`.
    for a in &members {
        let Some(d) = devices.get(a) else { continue };
        let n = d.sriov_numvfs.unwrap_or(0);
        if n == 0 {
            continue;
        }
        // PCIe numbers at most 65,535 VFs, and never more than the PF offers.
        if n > u32::from(d.capabilities.sriov_total_vfs.unwrap_or(u16::MAX)) {
            return Ok(None);
        }
        let dir = root
            .open_dir(&d.sysfs_path)
            .map_err(|e| io_err(root, Path::new(&d.sysfs_path), e))?;
        let mut vfs = Vec::with_capacity(n as usize);
        for i in 0..n {
            let vf = match dir.read_link(&format!("virtfn{i}")) {
                Ok(t) => t
                    .file_name()
                    .and_then(|f| f.to_str())
                    .and_then(|f| f.parse::<PciAddress>().ok()),
                Err(e) if not_found(&e) => None,
                Err(_) => return Ok(None),
            };
            match vf {
                Some(vf) => vfs.push(vf),
                None => return Ok(None),
            }
        }
        vfs.sort();
        if let Some(d) = devices.get_mut(a) {
            d.virtfns = vfs;
        }
    }
    let bridges: BTreeSet<PciAddress> = members
        .iter()
        .filter_map(|a| devices.get(a))
        .flat_map(|d| d.bridges.iter().copied())
        .filter(|b| !devices.contains_key(b))
        .collect();
    for b in bridges {
        if let Some(d) = scan_device(root, b, page_size)? {
            devices.insert(b, d);
        }
    }
    let kind = gh
        .read("type")
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty());
    let mut groups = BTreeMap::new();
    groups.insert(
        id,
        Group {
            id,
            devices: members,
            other_members: Vec::new(),
            kind,
        },
    );
    let groups_on_host = root
        .read_dir(GROUPS)
        .map_err(|e| io_err(root, Path::new(GROUPS), e))?
        .len();
    let mut platform = scan_platform(root)?;
    platform.page_size = page_size;
    if platform.cpu_vendor.is_none() {
        platform.cpu_vendor = first_root_host_bridge(root, page_size)?
            .as_ref()
            .and_then(cpu_vendor_of);
    }
    let uses = crate::usage::scan_uses(root)?;
    Ok(Some(Host {
        devices,
        groups,
        platform,
        uses,
        groups_on_host: Some(groups_on_host),
    }))
}

/// The host bridge a full scan would take the platform's vendor from: the first root-bus
/// host bridge in address order. 0000:00:00.0 almost always is one, which costs one read.
fn first_root_host_bridge(root: &HostRoot, page_size: u64) -> Result<Option<Device>, ScanError> {
    let first = PciAddress {
        domain: 0,
        bus: 0,
        slot: 0,
        function: 0,
    };
    if let Some(d) = scan_device(root, first, page_size)?.filter(is_root_host_bridge) {
        return Ok(Some(d));
    }
    let names = root
        .read_dir(DEVICES)
        .map_err(|e| io_err(root, Path::new(DEVICES), e))?;
    let mut on_root_bus: Vec<PciAddress> = names
        .iter()
        .filter_map(|n| n.to_str()?.parse::<PciAddress>().ok())
        .filter(|a| a.bus == 0)
        .collect();
    on_root_bus.sort();
    for a in on_root_bus {
        if let Some(d) = scan_device(root, a, page_size)?.filter(is_root_host_bridge) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// Two facts the kernel shows from both ends: a device's `driver` link and the driver's
/// `drivers/NAME/ADDR` entry, a device's `iommu` link and the unit's `devices/ADDR` entry. A
/// whole-host scan reads the few driver and unit directories instead of two links in each of
/// thousands of device directories (two syscalls fewer per function).
///
/// Each side is used only when the tree has it: a recording made before the scanner read
/// these directories holds the devices' links and not the listings (the drivers' directories
/// are there, empty, because their existence was asked), so a listing with no device in it,
/// or a unit without its `devices` directory, means "read each device's link" — exactly what
/// was done before. On a live sysfs both ends always agree (the kernel makes and removes
/// them together); tests check both ways give the same host on every recorded machine.
struct LinkIndex {
    drivers: Option<std::collections::HashMap<PciAddress, String>>,
    units: Option<std::collections::HashMap<PciAddress, String>>,
}

impl LinkIndex {
    fn read(root: &HostRoot) -> Self {
        // A recording keeps each device's own links too, so that it reads back device by
        // device (as `watch` does) and in older versions.
        if root.is_recording() {
            return LinkIndex {
                drivers: None,
                units: None,
            };
        }
        LinkIndex {
            drivers: Self::drivers(root),
            units: Self::units(root),
        }
    }

    /// `drivers/NAME/ADDR` for every driver. Each driver's directory is opened beneath the
    /// drivers directory: in sysfs it is a real directory, so a link to elsewhere (a hostile
    /// tree pointing it at `devices/`) is refused and the devices' own links are read instead.
    fn drivers(root: &HostRoot) -> Option<std::collections::HashMap<PciAddress, String>> {
        let mut base = root.open_dir("sys/bus/pci/drivers").ok()?;
        let mut out = std::collections::HashMap::new();
        for n in base.names().ok()? {
            let name = n.to_str()?;
            let mut dir = match base.open_subdir(Path::new(name)) {
                Ok(d) => d,
                // A file among the drivers has nobody bound to it.
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(_) => return None,
            };
            Self::add(&mut out, dir.names().ok()?, name)?;
        }
        (!out.is_empty()).then_some(out)
    }

    /// `class/iommu/U/devices/ADDR` for every unit. The unit is a link into
    /// `sys/devices/virtual/iommu` (followed inside the root); its `devices` directory is
    /// opened beneath it, never through a link.
    fn units(root: &HostRoot) -> Option<std::collections::HashMap<PciAddress, String>> {
        let base = Path::new("sys/class/iommu");
        let mut out = std::collections::HashMap::new();
        for n in root.read_dir(base).ok()? {
            let name = n.to_str()?;
            let unit = root.open_dir(base.join(name)).ok()?;
            let mut dir = unit.open_subdir(Path::new("devices")).ok()?;
            Self::add(&mut out, dir.names().ok()?, name)?;
        }
        (!out.is_empty()).then_some(out)
    }

    /// Adds the address entries among `entries` under `name`; `None` (read each device's link
    /// instead) when an address is listed twice, which sysfs never does.
    fn add(
        out: &mut std::collections::HashMap<PciAddress, String>,
        entries: Vec<std::ffi::OsString>,
        name: &str,
    ) -> Option<()> {
        for e in entries {
            if let Some(a) = e.to_str().and_then(PciAddress::parse_str) {
                if out.insert(a, name.to_string()).is_some() {
                    return None;
                }
            }
        }
        Some(())
    }
}

/// Reads one device. `Ok(None)` when it vanished while we looked (hot-unplug race).
pub fn scan_device(
    root: &HostRoot,
    address: PciAddress,
    page_size: u64,
) -> Result<Option<Device>, ScanError> {
    let link = Path::new(DEVICES).join(address.to_string());
    match root.resolve_link(&link) {
        Ok(dir) => read_device(root, address, &dir, page_size, None, Parts::Whole),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(io_err(root, &link, e)),
    }
}

/// Reads one device from its directory (`sys/devices/…/ADDR`), opened once.
fn read_device(
    root: &HostRoot,
    address: PciAddress,
    dir: &Path,
    page_size: u64,
    index: Option<&LinkIndex>,
    parts: Parts,
) -> Result<Option<Device>, ScanError> {
    let link = Path::new(DEVICES).join(address.to_string());
    let h = match root.open_dir(dir) {
        Ok(h) => h,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, &link, e)),
    };
    read_device_in(root, address, h, page_size, index, parts)
}

/// Reads one device from its directory, open already.
fn read_device_in(
    root: &HostRoot,
    address: PciAddress,
    h: crate::host::DirHandle<'_>,
    page_size: u64,
    index: Option<&LinkIndex>,
    parts: Parts,
) -> Result<Option<Device>, ScanError> {
    let link = Path::new(DEVICES).join(address.to_string());
    let dir = h.rel().to_path_buf();
    let rel = |n: &str| dir.join(n);
    // Attributes are opened by name; one that is absent costs one failed open, which is
    // cheaper than listing a sysfs directory of forty entries for every device. Each is parsed
    // straight from the thread's read buffer: no copy is kept of what becomes a number.

    // Identity comes from config space when it is readable: one read instead of six.
    let config = match h.read_with("config", ConfigSpace::parse) {
        Ok(Ok(c)) => Some(c),
        Ok(Err(crate::config::ConfigError::Absent)) => None,
        Ok(Err(e)) => return Err(malformed(root, &rel("config"), e.to_string())),
        Err(e) if not_found(&e) => None,
        Err(e) => return Err(io_err(root, &rel("config"), e)),
    };
    let (vendor, device, class, revision, subsystem) = match &config {
        Some(c) => (c.vendor_id, c.device_id, c.class, c.revision, c.subsystem),
        None => {
            let hex_attr = |n: &str, max: u32| -> Result<u32, ScanError> {
                let p = rel(n);
                let s = h.read_string(n).map_err(|e| io_err(root, &p, e))?;
                parse_hex(&s)
                    .filter(|v| *v <= max)
                    .ok_or_else(|| malformed(root, &p, format!("“{s}” is not a hex id")))
            };
            let sub = match (
                hex_attr("subsystem_vendor", 0xffff),
                hex_attr("subsystem_device", 0xffff),
            ) {
                (Ok(v), Ok(d)) => Some((v as u16, d as u16)),
                _ => None,
            };
            let revision = hex_attr("revision", 0xff).unwrap_or(0) as u8;
            (
                hex_attr("vendor", 0xffff)? as u16,
                hex_attr("device", 0xffff)? as u16,
                hex_attr("class", 0xff_ffff)?,
                revision,
                sub,
            )
        }
    };

    let link_name = |n: &str| -> Result<Option<String>, ScanError> {
        match h.link_name(n) {
            Ok(t) => Ok(t),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_err(root, &rel(n), e)),
        }
    };
    let driver = match index.and_then(|i| i.drivers.as_ref()) {
        Some(by_address) => by_address.get(&address).cloned(),
        None => link_name("driver")?,
    };
    let iommu_unit = match index.and_then(|i| i.units.as_ref()) {
        Some(by_address) => by_address.get(&address).cloned(),
        None => link_name("iommu")?,
    };
    let physfn = match link_name("physfn")? {
        Some(s) => Some(s.parse().map_err(|_| {
            malformed(
                root,
                &rel("physfn"),
                "points to something that is not a PCI address",
            )
        })?),
        None => None,
    };
    let group = match link_name("iommu_group")? {
        Some(g) => Some(g.parse::<GroupId>().map_err(|_| {
            malformed(
                root,
                &rel("iommu_group"),
                format!("points to “{g}”, which is not a group"),
            )
        })?),
        None => None,
    };

    // Only display devices have boot_vga; only SR-IOV PFs have sriov_numvfs.
    let display = (class >> 16) == 0x03;
    let boot_vga = if display {
        parsed(root, &h, "boot_vga", |s| match s {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(format!("“{s}” is not 0 or 1")),
        })?
    } else {
        None
    };
    let may_sriov = config
        .as_ref()
        .is_none_or(|c| c.caps.sriov_total_vfs != Some(0));
    let sriov_numvfs = if may_sriov {
        parsed(root, &h, "sriov_numvfs", |s| {
            s.parse::<u32>()
                .map_err(|_| format!("“{s}” is not a number"))
        })?
    } else {
        None
    };

    // Parent chain from the canonical path: every path component that is a PCI address.
    let mut chain: Vec<PciAddress> = dir
        .components()
        .filter_map(|c| PciAddress::parse_str(c.as_os_str().to_str()?))
        .collect();
    if chain.last() != Some(&address) {
        return Err(malformed(
            root,
            &link,
            format!(
                "links to {}, which is not the device's own directory",
                dir.display()
            ),
        ));
    }
    chain.pop();
    chain.reverse();
    let root_bus = dir
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|c| c.starts_with("pci"))
        .unwrap_or("")
        .to_string();

    let class_code = ClassCode(class);
    let (caps, header_type, multifunction, config_bytes) = match &config {
        Some(c) => (c.caps.clone(), c.header_type, c.multifunction, c.readable),
        None => (
            Capabilities::default(),
            u8::from(class_code.is_pci_bridge()),
            false,
            0,
        ),
    };
    let (vendor_name, device_name) = pci_names::lookup(vendor, device);
    let mut d = Device {
        address,
        vendor_id: Hex16(vendor),
        device_id: Hex16(device),
        subsystem_vendor_id: subsystem.map(|s| Hex16(s.0)),
        subsystem_device_id: subsystem.map(|s| Hex16(s.1)),
        class: class_code,
        revision: Hex8(revision),
        vendor_name,
        device_name,
        class_name: pci_names::class_name(class),
        driver,
        driver_override: None,
        group,
        parent: chain.first().copied(),
        bridges: chain,
        root_bus,
        header_type,
        multifunction,
        pcie_type: caps.port_type,
        capabilities: caps,
        config_bytes,
        bars: Vec::new(),
        reset_methods: None,
        boot_vga,
        numa_node: None,
        physfn,
        virtfns: Vec::new(),
        sriov_numvfs,
        iommu_unit,
        sysfs_path: dir.to_string_lossy().into_owned(),
    };
    if parts == Parts::Whole {
        read_details(root, &h, page_size)?.fill(&mut d);
    }
    Ok(Some(d))
}

/// What a device's directory says that only a verdict reads, not where the device is or
/// what it is: read with the rest by [`scan`], after it by a [`crate::sketch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    driver_override: Option<String>,
    reset_methods: Option<Vec<String>>,
    numa_node: Option<i32>,
    bars: Vec<Bar>,
}

impl Details {
    /// Puts these into `d` (whose own were never read).
    pub fn fill(self, d: &mut Device) {
        d.driver_override = self.driver_override;
        d.reset_methods = self.reset_methods;
        d.numa_node = self.numa_node;
        d.bars = self.bars;
    }
}

/// Reads a device's [`Details`] from its directory, open already.
pub(crate) fn read_details(
    root: &HostRoot,
    h: &crate::host::DirHandle<'_>,
    page_size: u64,
) -> Result<Details, ScanError> {
    let driver_override = parsed(root, h, "driver_override", |s| {
        Ok((!s.is_empty() && s != "(null)").then(|| s.to_string()))
    })?
    .flatten();
    let reset_methods = parsed(root, h, "reset_method", |s| {
        Ok(s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    })?;
    let numa_node = parsed(root, h, "numa_node", |s| {
        s.parse::<i32>()
            .map_err(|_| format!("“{s}” is not a number"))
    })?
    .filter(|n| *n >= 0);
    let bars = parsed(root, h, "resource", |s| parse_resource(s, page_size))?.unwrap_or_default();
    Ok(Details {
        driver_override,
        reset_methods,
        numa_node,
        bars,
    })
}

/// A text attribute, trimmed, handed to `parse`; `None` when it is absent or refuses to be
/// read (some attributes do in some states: that is "unknown", not an error).
fn opt_text<T>(
    h: &crate::host::DirHandle<'_>,
    n: &str,
    parse: impl FnOnce(&str) -> T,
) -> Result<Option<T>, io::Error> {
    // Sysfs writes ASCII: the lossy conversion is only for a tree that does not.
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => parse(s.trim()),
        Err(_) => parse(String::from_utf8_lossy(b).trim()),
    };
    match h.read_with(n, text) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error().is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A text attribute parsed into a value; what does not parse is a malformed tree.
fn parsed<T>(
    root: &HostRoot,
    h: &crate::host::DirHandle<'_>,
    n: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ScanError> {
    match opt_text(h, n, parse) {
        Ok(Some(Ok(v))) => Ok(Some(v)),
        Ok(Some(Err(what))) => Err(malformed(root, &h.rel().join(n), what)),
        Ok(None) => Ok(None),
        Err(e) => Err(io_err(root, &h.rel().join(n), e)),
    }
}

/// `0x10de` or `10de` → 0x10de.
pub fn parse_hex(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.is_empty() || t.len() > 8 {
        return None;
    }
    u32::from_str_radix(t, 16).ok()
}

/// The `resource` file: one `start end flags` line per resource; lines 0–5 are BARs.
pub fn parse_resource(s: &str, page_size: u64) -> Result<Vec<Bar>, String> {
    const IO: u64 = 0x100;
    const MEM: u64 = 0x200;
    const PREFETCH: u64 = 0x2000;
    const MEM64: u64 = 0x10_0000;
    let mut bars = Vec::new();
    for (i, line) in s.lines().enumerate().take(6) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [start, end, flags] = f.as_slice() else {
            return Err(format!("line {} is not “start end flags”", i + 1));
        };
        let p = |t: &str| {
            t.strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("line {}: “{t}” is not a 0x hex number", i + 1))
        };
        let (start, end, flags) = (p(start)?, p(end)?, p(flags)?);
        if flags & (IO | MEM) == 0 || end < start {
            continue;
        }
        let size = end - start + 1;
        let mem = flags & MEM != 0;
        bars.push(Bar {
            index: i as u8,
            size,
            kind: if mem { "mem" } else { "io" }.to_string(),
            prefetchable: flags & PREFETCH != 0,
            is_64bit: flags & MEM64 != 0,
            small: mem && size < page_size,
        });
    }
    Ok(bars)
}

/// Fills each physical function's `virtfns` from its VFs' `physfn` links (the same fact,
/// read once instead of twice).
pub fn link_virtfns(devices: &mut BTreeMap<PciAddress, Device>) {
    let mut vfs: BTreeMap<PciAddress, Vec<PciAddress>> = BTreeMap::new();
    for d in devices.values() {
        if let Some(pf) = d.physfn {
            vfs.entry(pf).or_default().push(d.address);
        }
    }
    for d in devices.values_mut() {
        d.virtfns = vfs.remove(&d.address).unwrap_or_default();
    }
}

/// Groups from the devices' `iommu_group` links alone, for a root that hides the groups
/// directory; empty when no device points to a group (the IOMMU is off).
fn groups_from_links(devices: &BTreeMap<PciAddress, Device>) -> BTreeMap<GroupId, Group> {
    let mut out: BTreeMap<GroupId, Group> = BTreeMap::new();
    for d in devices.values() {
        if let Some(id) = d.group {
            out.entry(id)
                .or_insert_with(|| Group {
                    id,
                    devices: Vec::new(),
                    other_members: Vec::new(),
                    kind: None,
                })
                .devices
                .push(d.address);
        }
    }
    out
}

/// The groups' numbers (from `sys/kernel/iommu_groups`) and each one's `type`, read on every
/// core without the devices. `None` when the directory is missing (a sandbox that shows
/// `/sys/devices` but not `/sys/kernel`).
type GroupKinds = Option<Vec<(GroupId, Option<String>)>>;

fn group_kinds(root: &HostRoot, parts: Parts) -> Result<GroupKinds, ScanError> {
    let dir = Path::new(GROUPS);
    let mut groups_dir = match root.open_dir(dir) {
        Ok(d) => d,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, dir, e)),
    };
    let names = groups_dir.names().map_err(|e| io_err(root, dir, e))?;
    let mut ids = Vec::with_capacity(names.len());
    for n in &names {
        let id: GroupId = n.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            malformed(root, &dir.join(n), "a group directory that is not a number")
        })?;
        ids.push(id);
    }
    ids.sort();
    let groups_dir = &groups_dir;
    Ok(Some(
        ids.into_par_iter()
            .map(|id| {
                let kind = match parts {
                    Parts::Whole => group_kind(groups_dir, id),
                    Parts::Identity => None,
                };
                (id, kind)
            })
            .collect(),
    ))
}

/// A group's `type`, read beneath the groups directory; `None` when it has none.
pub(crate) fn group_kind(groups_dir: &crate::host::DirHandle<'_>, id: GroupId) -> Option<String> {
    groups_dir
        .read_beneath(&Path::new(&id.to_string()).join("type"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Groups: the numbers and types [`group_kinds`] read, PCI members from each device's
/// `iommu_group` link (read with the device), and the `devices/` directory read for groups no
/// PCI function points to (their members are platform devices).
fn scan_groups(
    root: &HostRoot,
    devices: &BTreeMap<PciAddress, Device>,
    kinds: GroupKinds,
) -> Result<BTreeMap<GroupId, Group>, ScanError> {
    // No groups directory but devices that point to groups: the links are the kernel's own
    // answer still.
    let Some(kinds) = kinds else {
        return Ok(groups_from_links(devices));
    };
    let mut out: BTreeMap<GroupId, Group> = kinds
        .into_iter()
        .map(|(id, kind)| {
            (
                id,
                Group {
                    id,
                    devices: Vec::new(),
                    other_members: Vec::new(),
                    kind,
                },
            )
        })
        .collect();
    for d in devices.values() {
        if let Some(g) = d.group {
            out.get_mut(&g)
                .ok_or_else(|| {
                    malformed(
                        root,
                        Path::new(&d.sysfs_path).join("iommu_group").as_path(),
                        format!("points to group {g}, which {GROUPS} does not list"),
                    )
                })?
                .devices
                .push(d.address);
        }
    }
    // Opened beneath the groups directory: a `devices` link to elsewhere is refused, never
    // taken for the group's members. Groups no PCI function points to have only platform
    // members; where PCI itself hangs below a platform device (ARM and other device-tree
    // machines: sys/devices/platform/…/pci0000:00), a group may mix both, so every group's
    // list is read there. (On x86 that would cost a directory per group for nothing.)
    let mixed = devices
        .values()
        .any(|d| d.sysfs_path.starts_with("sys/devices/platform/"));
    let to_read: Vec<&mut Group> = out
        .values_mut()
        .filter(|g| mixed || g.devices.is_empty())
        .collect();
    let groups_dir = match to_read.is_empty() {
        true => None,
        false => Some(
            root.open_dir(GROUPS)
                .map_err(|e| io_err(root, Path::new(GROUPS), e))?,
        ),
    };
    for g in to_read {
        let dsub = Path::new(&g.id.to_string()).join("devices");
        let names = groups_dir
            .as_ref()
            .ok_or_else(|| malformed(root, Path::new(GROUPS), "vanished"))?
            .open_subdir(&dsub)
            .and_then(|mut d| d.names())
            .map_err(|e| io_err(root, &Path::new(GROUPS).join(&dsub), e))?;
        let from_links = !g.devices.is_empty();
        for m in names {
            let s = m.to_string_lossy();
            match s.parse::<PciAddress>() {
                // PCI members came from the devices' own links where there were any.
                Ok(_) if from_links => {}
                Ok(a) => g.devices.push(a),
                Err(_) => g.other_members.push(s.into_owned()),
            }
        }
    }
    Ok(out)
}

fn scan_platform(root: &HostRoot) -> Result<Platform, ScanError> {
    let cmdline = root.read_string("proc/cmdline").unwrap_or_default();
    let mut p = Platform {
        acs_override: cmdline_value(&cmdline, &["pcie_acs_override"]),
        vfio_pci_ids: cmdline_value(&cmdline, &["vfio-pci.ids", "vfio_pci.ids"])
            .map(|v| parse_id_list(&v))
            .unwrap_or_default(),
        cmdline,
        ..Default::default()
    };
    if let Ok(units) = root.read_dir("sys/class/iommu") {
        for u in units {
            let name = u.to_string_lossy().into_owned();
            let base = Path::new("sys/class/iommu").join(&u);
            let (kind, ir) = if root.exists(base.join("intel-iommu")) {
                let ecap = root
                    .read_string(base.join("intel-iommu/ecap"))
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
                ("intel", ecap.map(|e| e & 0x8 != 0))
            } else if root.exists(base.join("amd-iommu")) {
                ("amd", None)
            } else if name.contains("smmu") {
                ("arm-smmu", None)
            } else {
                ("other", None)
            };
            p.units.push(IommuUnit {
                name,
                kind: kind.to_string(),
                interrupt_remapping: ir,
            });
        }
    }
    let cpuinfo = root
        .read("proc/cpuinfo")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (cpu_vendor, hypervisor_flag) = cpuinfo_facts(&cpuinfo);
    p.cpu_vendor = cpu_vendor;
    p.arch = cpu_arch(&cpuinfo).map(str::to_string);
    // The device tree's own name for the machine, where the kernel booted from one (ARM and
    // POWER): its first `compatible` string.
    p.devicetree = root
        .read("sys/firmware/devicetree/base/compatible")
        .ok()
        .and_then(|b| {
            b.split(|c| *c == 0)
                .next()
                .map(|s| String::from_utf8_lossy(s).trim().to_string())
        })
        .filter(|s| !s.is_empty());
    if p.arch.as_deref() == Some("arm64") && p.devicetree.is_some() {
        p.msi_isolation = devicetree_msi_isolation(root);
    }
    let dmi = |n: &str| {
        root.read_string(Path::new("sys/class/dmi/id").join(n))
            .ok()
            .filter(|s| !s.is_empty())
    };
    let (mut sys_vendor, mut product_name) = (dmi("sys_vendor"), dmi("product_name"));
    // Machines with no DMI that name their emulator elsewhere: QEMU's arm64 `virt` device tree
    // ("linux,dummy-virt") and its POWER `pseries` ("… (emulated by qemu)" in cpuinfo).
    if sys_vendor.is_none() {
        if p.devicetree.as_deref() == Some("linux,dummy-virt") {
            (sys_vendor, product_name) = (Some("QEMU".into()), Some("virt".into()));
        } else if let Some(m) =
            cpuinfo_field(&cpuinfo, "machine").filter(|m| m.contains("emulated by qemu"))
        {
            (sys_vendor, product_name) = (Some("QEMU".into()), Some(m));
        }
    }
    if hypervisor_flag
        || sys_vendor
            .as_deref()
            .is_some_and(|v| is_vm_identity(v, product_name.as_deref()))
    {
        p.virtual_machine = Some(crate::model::VirtualMachine {
            hypervisor_flag,
            sys_vendor,
            product_name,
        });
    }
    p.allow_unsafe_interrupts = root
        .read_string("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")
        .ok()
        .map(|s| s == "Y" || s == "1");
    p.vfio_pci_loaded =
        root.exists("sys/module/vfio_pci") || root.exists("sys/bus/pci/drivers/vfio-pci");
    p.firmware_iommu_tables = firmware_iommu_tables(root);
    if let Ok(nodes) = root.list_names("dev/vfio") {
        p.vfio_nodes = nodes
            .iter()
            .filter_map(|n| n.to_str()?.parse().ok())
            .collect();
    }
    Ok(p)
}

/// The ACPI tables that can describe an IOMMU — "DMAR" (Intel VT-d), "IVRS" (AMD-Vi), "VIOT"
/// (virtio-iommu), "IORT" (ARM; it may describe only interrupt translation) — among those the
/// firmware provides, by signature (a second table of a kind is listed as DMAR2). `None` when
/// the listing cannot be read or is not a firmware's (it always has DSDT or FACP). Only the
/// names are facts (the tables themselves are root's); every name is recorded.
fn firmware_iommu_tables(root: &HostRoot) -> Option<Vec<String>> {
    let names: Vec<String> = root
        .list_names("sys/firmware/acpi/tables")
        .ok()?
        .iter()
        .filter_map(|t| t.to_str().map(str::to_string))
        .collect();
    let signature = |n: &str| n.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
    if !names
        .iter()
        .any(|n| matches!(signature(n).as_str(), "DSDT" | "FACP"))
    {
        return None;
    }
    let mut out: Vec<String> = names
        .iter()
        .map(|n| signature(n))
        .filter(|t| matches!(t.as_str(), "DMAR" | "IVRS" | "VIOT" | "IORT"))
        .collect();
    out.dedup();
    Some(out)
}

/// The CPU architecture family proc/cpuinfo is written for: "x86" (`flags`), "arm64"
/// (`CPU architecture: 8`), "powerpc" (`cpu : POWER…`, `platform`). `None` for others or none.
pub fn cpu_arch(cpuinfo: &str) -> Option<&'static str> {
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            // x86 writes `flags` (s390x writes a `vendor_id` too, but `features`).
            "flags" => return Some("x86"),
            // 64-bit ARM says "CPU architecture: 8" (32-bit ARM 7, not one of ours).
            "CPU architecture" => return (v.trim() == "8").then_some("arm64"),
            "cpu" if v.trim().starts_with("POWER") => return Some("powerpc"),
            "platform" if matches!(v.trim(), "pSeries" | "PowerNV") => return Some("powerpc"),
            _ => {}
        }
    }
    None
}

/// ARM, booted from a device tree: whether an interrupt controller node (a top-level node
/// named `intc@…` or `interrupt-controller@…`) has a GICv3 ITS below it (`arm,gic-v3-its`),
/// which isolates MSIs. `Some(false)` for a GIC without one (a GICv2 with its v2m frame, a
/// GICv3 without an ITS); `None` when no GIC node is found.
fn devicetree_msi_isolation(root: &HostRoot) -> Option<bool> {
    let base = Path::new("sys/firmware/devicetree/base");
    let compatible = |p: &Path| {
        root.read(p.join("compatible"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut gic = false;
    for n in root.list_names(base).ok()? {
        let name = n.to_string_lossy();
        if !(name.starts_with("intc@") || name.starts_with("interrupt-controller@")) {
            continue;
        }
        let node = base.join(&n);
        // "arm,gic-v3", "arm,gic-400", "arm,cortex-a15-gic", …
        if !compatible(&node).contains("gic") {
            continue;
        }
        gic = true;
        for c in root.list_names(&node).unwrap_or_default() {
            if compatible(&node.join(c)).contains("arm,gic-v3-its") {
                return Some(true);
            }
        }
    }
    gic.then_some(false)
}

/// A machine-wide `key : value` line of proc/cpuinfo (POWER writes `machine` and `platform`
/// after the processors).
fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The CPU's vendor ("intel", "amd") and whether it reports the `hypervisor` flag, from the
/// first processor in proc/cpuinfo (x86; other architectures name no vendor there).
pub fn cpuinfo_facts(cpuinfo: &str) -> (Option<String>, bool) {
    let mut vendor = None;
    let mut hypervisor = false;
    for line in cpuinfo.lines() {
        if line.trim().is_empty() {
            break; // the first processor says it for all
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "vendor_id" => {
                vendor = match v.trim() {
                    "GenuineIntel" => Some("intel".to_string()),
                    // Hygon's Dhyana is AMD's Zen under licence, with AMD-Vi.
                    "AuthenticAMD" | "HygonGenuine" => Some("amd".to_string()),
                    _ => None,
                }
            }
            "flags" => hypervisor = v.split_whitespace().any(|f| f == "hypervisor"),
            _ => {}
        }
    }
    (vendor, hypervisor)
}

/// DMI identities of virtual machines, for guests whose CPU hides the `hypervisor` flag. Some
/// vendors make hardware too (Google's Chromebooks, Amazon's `*.metal` instances, Microsoft's
/// Surface): for those only the product names their hypervisors give count.
fn is_vm_identity(vendor: &str, product: Option<&str>) -> bool {
    match vendor {
        "QEMU"
        | "VMware, Inc."
        | "innotek GmbH"
        | "Xen"
        | "Bochs"
        | "Parallels Software International Inc." => true,
        "Google" => product == Some("Google Compute Engine"),
        "Microsoft Corporation" => product == Some("Virtual Machine"),
        "Red Hat" => product.is_some_and(|p| p.starts_with("KVM")),
        "Amazon EC2" => product.is_some_and(|p| !p.ends_with(".metal")),
        _ => false,
    }
}

/// The value of the last `key=value` for any of `keys` on a kernel command line.
pub fn cmdline_value(cmdline: &str, keys: &[&str]) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| keys.contains(k))
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// True when the bare word or `word=...` is on the command line.
pub fn cmdline_has(cmdline: &str, word: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w == word || w.split_once('=').is_some_and(|(k, _)| k == word))
}

fn parse_id_list(v: &str) -> Vec<(Hex16, Hex16)> {
    v.split(',')
        .filter_map(|pair| {
            let (a, b) = pair.split_once(':')?;
            let b = b.split(':').next()?;
            Some((
                Hex16(u16::from_str_radix(a, 16).ok()?),
                Hex16(u16::from_str_radix(b, 16).ok()?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines_become_bars() {
        let s = "0x00000000f6000000 0x00000000f6ffffff 0x0000000000040200\n\
                 0x00000000e0000000 0x00000000efffffff 0x000000000014220c\n\
                 0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                 0x000000000000e000 0x000000000000e07f 0x0000000000040101\n\
                 0x00000000f7000000 0x00000000f70000ff 0x0000000000040200\n";
        let bars = parse_resource(s, 4096).unwrap();
        assert_eq!(bars.len(), 4);
        assert_eq!(bars[0].size, 16 << 20);
        assert!(bars[1].prefetchable && bars[1].is_64bit);
        assert_eq!(bars[2].kind, "io");
        assert!(
            !bars[2].small,
            "I/O ports are never mapped, so never 'small'"
        );
        assert!(bars[3].small);
        assert!(parse_resource("0x1 0x2", 4096).is_err());
        assert!(parse_resource("zz 0x2 0x3", 4096).is_err());
    }

    #[test]
    fn command_line_values() {
        let c = "BOOT_IMAGE=/vmlinuz amd_iommu=on vfio-pci.ids=10de:1c02,10de:10f1 pcie_acs_override=downstream,multifunction";
        assert_eq!(
            cmdline_value(c, &["pcie_acs_override"]).as_deref(),
            Some("downstream,multifunction")
        );
        assert_eq!(parse_id_list("10de:1c02,10de:10f1").len(), 2);
        assert!(cmdline_has(c, "amd_iommu"));
        assert!(!cmdline_has(c, "intel_iommu"));
    }
}
