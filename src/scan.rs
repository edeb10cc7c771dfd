//! Reads a host root into a [`Host`]: devices, groups, platform facts and host usage.
//!
//! The kernel owns the rules: groups come from `sys/kernel/iommu_groups/N/devices`, never from
//! our own reasoning. Each file is read once; per-device work runs on all cores.

use crate::address::{GroupId, PciAddress};
use crate::config::{Capabilities, ConfigSpace};
use crate::host::HostRoot;
use crate::model::{Bar, ClassCode, Device, Group, Hex16, Hex8, Host, IommuUnit, Platform};
use crate::pci_names;
use rayon::prelude::*;
use std::collections::BTreeMap;
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

fn io_err(root: &HostRoot, rel: &Path, source: io::Error) -> ScanError {
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

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

const DEVICES: &str = "sys/bus/pci/devices";
const GROUPS: &str = "sys/kernel/iommu_groups";

/// Scans everything: the entry point for every front end.
pub fn scan(root: &HostRoot) -> Result<Host, ScanError> {
    let names_dir = Path::new(DEVICES);
    let entries = root
        .read_dir(names_dir)
        .map_err(|e| io_err(root, names_dir, e))?;
    let mut addrs = Vec::with_capacity(entries.len());
    for name in &entries {
        let s = name.to_string_lossy();
        let a: PciAddress = s.parse().map_err(|_| {
            malformed(
                root,
                &names_dir.join(name),
                "an entry that is not a PCI address",
            )
        })?;
        addrs.push(a);
    }
    let page_size = rustix::param::page_size() as u64;
    let scanned: Vec<Result<Option<Device>, ScanError>> = addrs
        .par_iter()
        .map(|a| scan_device(root, *a, page_size))
        .collect();
    let mut devices = BTreeMap::new();
    for d in scanned {
        if let Some(d) = d? {
            devices.insert(d.address, d);
        }
    }
    let groups = scan_groups(root)?;
    for g in groups.values() {
        for a in &g.devices {
            if let Some(d) = devices.get_mut(a) {
                d.group = Some(g.id);
            }
        }
    }
    let mut platform = scan_platform(root)?;
    platform.page_size = page_size;
    platform.cpu_vendor = devices
        .values()
        .find(|d| d.class.0 >> 8 == 0x0600 && d.address.bus == 0)
        .and_then(|d| match d.vendor_id.0 {
            0x8086 => Some("intel".to_string()),
            0x1022 => Some("amd".to_string()),
            _ => None,
        });
    let uses = crate::usage::scan_uses(root)?;
    Ok(Host {
        devices,
        groups,
        platform,
        uses,
    })
}

/// Reads one device. `Ok(None)` when it vanished while we looked (hot-unplug race).
pub fn scan_device(
    root: &HostRoot,
    address: PciAddress,
    page_size: u64,
) -> Result<Option<Device>, ScanError> {
    let link = Path::new(DEVICES).join(address.to_string());
    let dir = match root.resolve_link(&link) {
        Ok(d) => d,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, &link, e)),
    };
    let names = match root.read_dir(&dir) {
        Ok(n) => n,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err(root, &dir, e)),
    };
    let has = |n: &str| names.iter().any(|x| x == n);
    let rel = |n: &str| dir.join(n);

    // Identity comes from config space when it is readable: one read instead of six.
    let config = if has("config") {
        let p = rel("config");
        let bytes = root.read(&p).map_err(|e| io_err(root, &p, e))?;
        match ConfigSpace::parse(&bytes) {
            Ok(c) => Some(c),
            Err(crate::config::ConfigError::Absent) => None,
            Err(e) => return Err(malformed(root, &p, e.to_string())),
        }
    } else {
        None
    };
    let (vendor, device, class, revision, subsystem) = match &config {
        Some(c) => (c.vendor_id, c.device_id, c.class, c.revision, c.subsystem),
        None => {
            let hex_attr = |n: &str, max: u32| -> Result<u32, ScanError> {
                let p = rel(n);
                let s = root.read_string(&p).map_err(|e| io_err(root, &p, e))?;
                parse_hex(&s)
                    .filter(|v| *v <= max)
                    .ok_or_else(|| malformed(root, &p, format!("“{s}” is not a hex id")))
            };
            let sub = if has("subsystem_vendor") && has("subsystem_device") {
                Some((
                    hex_attr("subsystem_vendor", 0xffff)? as u16,
                    hex_attr("subsystem_device", 0xffff)? as u16,
                ))
            } else {
                None
            };
            let revision = if has("revision") {
                hex_attr("revision", 0xff)? as u8
            } else {
                0
            };
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
        if !has(n) {
            return Ok(None);
        }
        let p = rel(n);
        match root.read_link(&p) {
            Ok(t) => Ok(t.file_name().map(|f| f.to_string_lossy().into_owned())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_err(root, &p, e)),
        }
    };
    let driver = link_name("driver")?;
    let iommu_unit = link_name("iommu")?;
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
    let mut virtfns = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.to_string_lossy().starts_with("virtfn"))
    {
        let p = dir.join(n);
        if let Ok(t) = root.read_link(&p) {
            if let Some(a) = t
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|s| s.parse().ok())
            {
                virtfns.push(a);
            }
        }
    }
    virtfns.sort();

    let opt_string = |n: &str| -> Result<Option<String>, ScanError> {
        if !has(n) {
            return Ok(None);
        }
        let p = rel(n);
        match root.read_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if not_found(&e) => Ok(None),
            // Some attributes refuse reads in some states; that is "unknown", not an error.
            Err(e) if e.raw_os_error().is_some() && !not_found(&e) => Ok(None),
            Err(e) => Err(io_err(root, &p, e)),
        }
    };
    let driver_override = opt_string("driver_override")?.filter(|s| !s.is_empty() && s != "(null)");
    let reset_methods = opt_string("reset_method")?
        .map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let boot_vga = match opt_string("boot_vga")? {
        Some(s) => Some(match s.as_str() {
            "1" => true,
            "0" => false,
            _ => {
                return Err(malformed(
                    root,
                    &rel("boot_vga"),
                    format!("“{s}” is not 0 or 1"),
                ))
            }
        }),
        None => None,
    };
    let numa_node =
        match opt_string("numa_node")? {
            Some(s) => Some(s.parse::<i32>().map_err(|_| {
                malformed(root, &rel("numa_node"), format!("“{s}” is not a number"))
            })?)
            .filter(|n| *n >= 0),
            None => None,
        };
    let sriov_numvfs = match opt_string("sriov_numvfs")? {
        Some(s) => Some(s.parse::<u32>().map_err(|_| {
            malformed(root, &rel("sriov_numvfs"), format!("“{s}” is not a number"))
        })?),
        None => None,
    };
    let bars = match opt_string("resource")? {
        Some(s) => {
            parse_resource(&s, page_size).map_err(|w| malformed(root, &rel("resource"), w))?
        }
        None => Vec::new(),
    };

    // Parent chain from the canonical path: every path component that is a PCI address.
    let mut chain: Vec<PciAddress> = dir
        .components()
        .filter_map(|c| c.as_os_str().to_str()?.parse().ok())
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
    Ok(Some(Device {
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
        driver_override,
        group: None,
        parent: chain.first().copied(),
        bridges: chain,
        root_bus,
        header_type,
        multifunction,
        pcie_type: caps.port_type,
        capabilities: caps,
        config_bytes,
        bars,
        reset_methods,
        boot_vga,
        numa_node,
        physfn,
        virtfns,
        sriov_numvfs,
        iommu_unit,
        sysfs_path: dir.to_string_lossy().into_owned(),
    }))
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

fn scan_groups(root: &HostRoot) -> Result<BTreeMap<GroupId, Group>, ScanError> {
    let dir = Path::new(GROUPS);
    let names = match root.read_dir(dir) {
        Ok(n) => n,
        Err(e) if not_found(&e) => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(root, dir, e)),
    };
    let mut ids = Vec::with_capacity(names.len());
    for n in &names {
        let id: GroupId = n.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            malformed(root, &dir.join(n), "a group directory that is not a number")
        })?;
        ids.push(id);
    }
    let groups: Vec<Result<Group, ScanError>> = ids
        .par_iter()
        .map(|id| {
            let gdir = dir.join(id.to_string());
            let ddir = gdir.join("devices");
            let members = root.read_dir(&ddir).map_err(|e| io_err(root, &ddir, e))?;
            let mut devices = Vec::new();
            let mut other_members = Vec::new();
            for m in members {
                let s = m.to_string_lossy();
                match s.parse::<PciAddress>() {
                    Ok(a) => devices.push(a),
                    Err(_) => other_members.push(s.into_owned()),
                }
            }
            let kind = match root.read_string(gdir.join("type")) {
                Ok(s) if !s.is_empty() => Some(s),
                _ => None,
            };
            Ok(Group {
                id: *id,
                devices,
                other_members,
                kind,
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    for g in groups {
        let g = g?;
        out.insert(g.id, g);
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
    p.allow_unsafe_interrupts = root
        .read_string("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")
        .ok()
        .map(|s| s == "Y" || s == "1");
    p.vfio_pci_loaded =
        root.exists("sys/module/vfio_pci") || root.exists("sys/bus/pci/drivers/vfio-pci");
    if let Ok(nodes) = root.list_names("dev/vfio") {
        p.vfio_nodes = nodes
            .iter()
            .filter_map(|n| n.to_str()?.parse().ok())
            .collect();
    }
    Ok(p)
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
