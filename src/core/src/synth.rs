//! Builds host-root trees from a machine description: the facts of a real machine (the
//! fixture JSON in tests/fixtures/machines, transcribed from published listings) plus, where a
//! test needs them, clearly named extra facts (which disk holds `/`, config capabilities).
//!
//! The tree is laid out exactly as Linux lays out sysfs and procfs, so the scanner reads it
//! through the same code as a real host. Used by the tests, by `--demo` (data/demo-host.json)
//! and by the benchmark's generated 10,000-function host.

use crate::address::PciAddress;
use crate::config::{ConfigSpec, PortType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// A machine: the fixture format of tests/fixtures/machines (its README.md), plus an optional
/// `host` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineSpec {
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub kernel_cmdline: Option<String>,
    /// `"multifunction"`, `"downstream,multifunction"`, or `true` when the listing says only
    /// that the override patch was applied.
    #[serde(default)]
    pub acs_override: Option<serde_json::Value>,
    pub devices: Vec<DeviceSpec>,
    #[serde(default)]
    pub host: HostSpec,
}

/// One function as the fixtures describe it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub bdf: String,
    pub vendor: String,
    /// `null` where the listing did not give it (written as 0000).
    pub device: Option<String>,
    /// 4 hex digits (class + subclass, as `lspci -nn` prints) or 6 (with prog-if).
    pub class: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub group: Option<u32>,
    #[serde(default)]
    pub driver: Option<String>,
    /// `null` = on a root bus; `"unknown"` = the listing had no tree; else the parent's address.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub subsystem_vendor: Option<String>,
    #[serde(default)]
    pub subsystem_device: Option<String>,
    #[serde(default)]
    pub physfn: Option<String>,
    #[serde(default)]
    pub reset_method: Option<String>,
    #[serde(default)]
    pub has_reset: Option<bool>,
    #[serde(default)]
    pub numa_node: Option<i32>,
    #[serde(default)]
    pub iommu_unit: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Extra fact: config-space capabilities (otherwise only the 64-byte header is written,
    /// as an unprivileged reader sees it).
    #[serde(default)]
    pub config: Option<ConfigSpec>,
    #[serde(default)]
    pub boot_vga: Option<bool>,
    #[serde(default)]
    pub driver_override: Option<String>,
    /// Extra facts for the doctor: `d3cold_allowed`, `power_state`, and resizable BARs as
    /// (index, the `resourceN_resize` bit mask of supported sizes, in hex).
    #[serde(default)]
    pub d3cold_allowed: Option<bool>,
    #[serde(default)]
    pub power_state: Option<String>,
    /// `power/control`: "auto" (run-time power management on) or "on".
    #[serde(default)]
    pub power_control: Option<String>,
    #[serde(default)]
    pub resizable_bars: Vec<(u8, String)>,
    /// Extra fact: BARs as (index, size, kind) with kind "mem", "mem64-prefetch" or "io".
    #[serde(default)]
    pub bars: Vec<(u8, u64, String)>,
}

/// Extra facts about how the host uses its devices.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSpec {
    /// "intel", "amd", or "off" (no IOMMU: no groups are written). Default: from the host bridge.
    pub iommu: Option<String>,
    /// Whether the IOMMU can remap interrupts (Intel `ecap` bit 3). Default true.
    pub interrupt_remapping: Option<bool>,
    pub allow_unsafe_interrupts: Option<bool>,
    pub vfio_loaded: Option<bool>,
    pub blocks: Vec<BlockSpec>,
    pub dm: Vec<DmSpec>,
    pub mounts: Vec<MountSpec>,
    pub swaps: Vec<String>,
    pub net: Vec<NetSpec>,
    pub default_route: Option<String>,
    pub console: Option<String>,
    pub displays: Vec<DisplaySpec>,
    /// Group `type` for every group (default "DMA").
    pub group_type: Option<String>,
    /// The CPU's `vendor_id` as proc/cpuinfo prints it ("GenuineIntel", "AuthenticAMD");
    /// without it no cpuinfo is written.
    pub cpu: Option<String>,
    /// The host is a virtual machine: the CPU shows the `hypervisor` flag and DMI names the
    /// machine.
    pub vm: Option<VmSpec>,
    /// The ACPI tables the firmware provides (`sys/firmware/acpi/tables`: "DMAR", "IVRS",
    /// "DSDT", …); none written without it.
    pub acpi_tables: Option<Vec<String>>,
    /// The running kernel's release (`proc/sys/kernel/osrelease`), and how it has vfio-pci:
    /// "builtin", "module" (installed, not loaded), "loaded" (a loaded module) or "missing".
    pub kernel_release: Option<String>,
    pub vfio_pci: Option<String>,
    /// `/dev/iommu` (iommufd) exists.
    #[serde(default)]
    pub iommufd: bool,
    /// A device under `sys/class/vfio-dev` with a `dev` number (true), without one (false).
    pub vfio_cdev: Option<bool>,
    /// The vendor-reset module is loaded.
    #[serde(default)]
    pub vendor_reset: bool,
    /// `proc/iomem` as it is (root sees addresses; others see zeros).
    pub iomem: Option<String>,
}

/// A virtual machine's DMI identity (`sys/class/dmi/id`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub sys_vendor: String,
    pub product_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub name: String,
    pub pci: String,
    pub majmin: String,
    #[serde(default)]
    pub partitions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmSpec {
    pub name: String,
    pub dm_name: String,
    pub majmin: String,
    pub slaves: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    pub iface: String,
    pub pci: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySpec {
    pub pci: String,
    pub connector: String,
}

/// Why a description cannot become a tree.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("device {bdf}: {what}")]
    Bad { bdf: String, what: String },
    #[error("writing the tree: {0}")]
    Io(#[from] io::Error),
    #[error("reading the machine description: {0}")]
    Json(#[from] serde_json::Error),
}

fn bad(bdf: &str, what: impl Into<String>) -> SynthError {
    SynthError::Bad {
        bdf: bdf.to_string(),
        what: what.into(),
    }
}

fn hex(bdf: &str, s: &str, what: &str) -> Result<u32, SynthError> {
    let t = s.trim_start_matches("0x");
    u32::from_str_radix(t, 16).map_err(|_| bad(bdf, format!("{what} “{s}” is not hex")))
}

/// Programming interfaces the listings leave out (fixtures/README.md): xHCI 30, EHCI 20,
/// NVMe 02, AHCI 01, else 00.
fn full_class(bdf: &str, s: &str) -> Result<u32, SynthError> {
    let v = hex(bdf, s, "class")?;
    Ok(match s.len() {
        6 => v,
        4 => {
            let prog = match v {
                0x0c03 => 0x30,
                0x0108 => 0x02,
                0x0106 => 0x01,
                _ => 0x00,
            };
            (v << 8) | prog
        }
        _ => {
            return Err(bad(
                bdf,
                format!("class “{s}” is neither 4 nor 6 hex digits"),
            ))
        }
    })
}

fn write(root: &Path, rel: &Path, content: impl AsRef<[u8]>) -> io::Result<()> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(p, content)
}

/// A relative symlink at `link` (relative to the root) pointing at `target` (also relative).
fn link(root: &Path, link: &Path, target: &Path) -> io::Result<()> {
    let p = root.join(link);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let depth = link.parent().map(|d| d.components().count()).unwrap_or(0);
    let mut rel = PathBuf::new();
    for _ in 0..depth {
        rel.push("..");
    }
    rel.push(target);
    if p.symlink_metadata().is_ok() {
        std::fs::remove_file(&p)?;
    }
    std::os::unix::fs::symlink(rel, p)
}

struct Resolved<'a> {
    spec: &'a DeviceSpec,
    addr: PciAddress,
    class: u32,
    parent: Option<PciAddress>,
}

impl MachineSpec {
    pub fn from_json(s: &str) -> Result<Self, SynthError> {
        Ok(serde_json::from_str(s)?)
    }

    /// The CPU vendor the host bridges suggest.
    fn vendor_guess(&self) -> &'static str {
        for d in &self.devices {
            if d.class.starts_with("0600") {
                match d.vendor.as_str() {
                    "8086" => return "intel",
                    "1022" => return "amd",
                    _ => {}
                }
            }
        }
        "other"
    }

    /// Writes the tree under `root` (which should be empty).
    pub fn write_tree(&self, root: &Path) -> Result<(), SynthError> {
        let mut devs: Vec<Resolved> = Vec::with_capacity(self.devices.len());
        let mut seen = BTreeSet::new();
        for d in &self.devices {
            let addr: PciAddress = d
                .bdf
                .parse()
                .map_err(|e: crate::address::ParseError| bad(&d.bdf, e.to_string()))?;
            if !seen.insert(addr) {
                return Err(bad(&d.bdf, "listed twice"));
            }
            devs.push(Resolved {
                spec: d,
                addr,
                class: full_class(&d.bdf, &d.class)?,
                parent: None,
            });
        }
        // Parents: known ones as given; "unknown" → the closest bridge in the same group on a
        // lower bus (a guess the fixture marks with topology_known=false), else the root bus.
        let bridges: Vec<(PciAddress, Option<u32>)> = devs
            .iter()
            .filter(|r| r.class >> 8 == 0x0604)
            .map(|r| (r.addr, r.spec.group))
            .collect();
        for r in devs.iter_mut() {
            r.parent = match r.spec.parent.as_deref() {
                None => None,
                Some("unknown") => bridges
                    .iter()
                    .filter(|(b, g)| {
                        *g == r.spec.group
                            && r.spec.group.is_some()
                            && b.bus < r.addr.bus
                            && b.domain == r.addr.domain
                    })
                    .max_by_key(|(b, _)| b.bus)
                    .map(|(b, _)| *b),
                Some(p) => Some(
                    p.parse()
                        .map_err(|_| bad(&r.spec.bdf, format!("parent “{p}” is not an address")))?,
                ),
            };
        }
        let by_addr: BTreeMap<PciAddress, usize> =
            devs.iter().enumerate().map(|(i, r)| (r.addr, i)).collect();
        let mut paths: BTreeMap<PciAddress, PathBuf> = BTreeMap::new();
        fn path_of(
            a: PciAddress,
            devs: &[Resolved],
            by_addr: &BTreeMap<PciAddress, usize>,
            paths: &mut BTreeMap<PciAddress, PathBuf>,
            depth: usize,
        ) -> Result<PathBuf, SynthError> {
            if let Some(p) = paths.get(&a) {
                return Ok(p.clone());
            }
            if depth > 32 {
                return Err(bad(&a.to_string(), "parent chain loops"));
            }
            let i = by_addr[&a];
            let base = match devs[i].parent {
                Some(p) if by_addr.contains_key(&p) => path_of(p, devs, by_addr, paths, depth + 1)?,
                Some(p) => {
                    return Err(bad(
                        &a.to_string(),
                        format!("parent {p} is not in the listing"),
                    ))
                }
                None => PathBuf::from(format!("sys/devices/pci{:04x}:{:02x}", a.domain, a.bus)),
            };
            let p = base.join(a.to_string());
            paths.insert(a, p.clone());
            Ok(p)
        }
        for r in &devs {
            path_of(r.addr, &devs, &by_addr, &mut paths, 0)?;
        }
        let slots_with_many: BTreeSet<PciAddress> = {
            let mut count: BTreeMap<PciAddress, usize> = BTreeMap::new();
            for r in &devs {
                *count.entry(r.addr.function0()).or_default() += 1;
            }
            count
                .into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|(a, _)| a)
                .collect()
        };
        // Secondary bus of each bridge: the lowest bus of its children.
        let mut bus_range: BTreeMap<PciAddress, (u8, u8)> = BTreeMap::new();
        for r in &devs {
            if let Some(p) = r.parent {
                let e = bus_range.entry(p).or_insert((r.addr.bus, r.addr.bus));
                e.0 = e.0.min(r.addr.bus);
                e.1 = e.1.max(r.addr.bus);
            }
        }

        let iommu = self
            .host
            .iommu
            .clone()
            .unwrap_or_else(|| self.vendor_guess().to_string());
        let iommu_on = iommu != "off" && devs.iter().any(|r| r.spec.group.is_some());
        let unit_default = match iommu.as_str() {
            "intel" => "dmar0",
            "amd" => "ivhd0",
            _ => "iommu0",
        };
        let mut units: BTreeSet<String> = BTreeSet::new();
        let mut drivers: BTreeSet<String> = BTreeSet::new();

        for r in &devs {
            let s = r.spec;
            let dir = &paths[&r.addr];
            let vendor = hex(&s.bdf, &s.vendor, "vendor")? as u16;
            let device = match &s.device {
                Some(d) => hex(&s.bdf, d, "device")? as u16,
                None => 0,
            };
            let rev = match &s.revision {
                Some(v) => hex(&s.bdf, v, "revision")? as u8,
                None => 0,
            };
            let sub = (
                s.subsystem_vendor
                    .as_deref()
                    .map(|v| hex(&s.bdf, v, "subsystem vendor"))
                    .transpose()?
                    .unwrap_or(0) as u16,
                s.subsystem_device
                    .as_deref()
                    .map(|v| hex(&s.bdf, v, "subsystem device"))
                    .transpose()?
                    .unwrap_or(0) as u16,
            );
            let bridge = r.class >> 8 == 0x0604;
            let mf = slots_with_many.contains(&r.addr.function0()) && r.addr.function == 0;
            let spec = s.config.clone().unwrap_or_default();
            let cfg = spec.build(
                vendor,
                device,
                r.class,
                rev,
                sub,
                bridge,
                mf,
                bus_range.get(&r.addr).copied().unwrap_or((0, 0)),
            );
            write(root, &dir.join("config"), cfg)?;
            write(root, &dir.join("vendor"), format!("0x{vendor:04x}\n"))?;
            write(root, &dir.join("device"), format!("0x{device:04x}\n"))?;
            write(root, &dir.join("class"), format!("0x{:06x}\n", r.class))?;
            write(root, &dir.join("revision"), format!("0x{rev:02x}\n"))?;
            write(
                root,
                &dir.join("subsystem_vendor"),
                format!("0x{:04x}\n", sub.0),
            )?;
            write(
                root,
                &dir.join("subsystem_device"),
                format!("0x{:04x}\n", sub.1),
            )?;
            write(
                root,
                &dir.join("numa_node"),
                format!("{}\n", s.numa_node.unwrap_or(-1)),
            )?;
            // Files lspci reads too, so the benchmark's peer runs on the same tree.
            write(
                root,
                &dir.join("irq"),
                format!("{}\n", 16 + (r.addr.slot as u32 % 8)),
            )?;
            write(root, &dir.join("enable"), "1\n")?;
            let modalias = format!(
                "pci:v0000{vendor:04X}d0000{device:04X}sv0000{:04X}sd0000{:04X}bc{:02X}sc{:02X}i{:02X}\n",
                sub.0,
                sub.1,
                r.class >> 16,
                (r.class >> 8) & 0xff,
                r.class & 0xff
            );
            write(root, &dir.join("modalias"), modalias)?;
            let over = s.driver_override.clone().unwrap_or_else(|| "(null)".into());
            write(root, &dir.join("driver_override"), format!("{over}\n"))?;
            write(root, &dir.join("resource"), resource_file(&s.bars))?;
            if r.class >> 8 == 0x0300 {
                let vga = s.boot_vga.unwrap_or(false);
                write(root, &dir.join("boot_vga"), if vga { "1\n" } else { "0\n" })?;
            }
            let reset = match (&s.reset_method, s.has_reset) {
                (Some(m), _) => Some(m.clone()),
                (None, Some(false)) => Some(String::new()),
                _ => None,
            };
            if let Some(m) = reset {
                write(root, &dir.join("reset_method"), format!("{m}\n"))?;
            }
            if let Some(on) = s.d3cold_allowed {
                write(
                    root,
                    &dir.join("d3cold_allowed"),
                    if on { "1\n" } else { "0\n" },
                )?;
            }
            if let Some(ps) = &s.power_state {
                write(root, &dir.join("power_state"), format!("{ps}\n"))?;
            }
            if let Some(pc) = &s.power_control {
                write(root, &dir.join("power/control"), format!("{pc}\n"))?;
            }
            for (i, mask) in &s.resizable_bars {
                if *i > 5 || mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(&s.bdf, "a resizable BAR is (0–5, a hex mask)"));
                }
                write(
                    root,
                    &dir.join(format!("resource{i}_resize")),
                    format!("{mask:0>16}\n"),
                )?;
            }
            if let Some(drv) = &s.driver {
                if drv.contains('/') || drv.is_empty() {
                    return Err(bad(&s.bdf, format!("driver “{drv}” is not a name")));
                }
                drivers.insert(drv.clone());
                link(
                    root,
                    &dir.join("driver"),
                    &Path::new("sys/bus/pci/drivers").join(drv),
                )?;
                link(
                    root,
                    &Path::new("sys/bus/pci/drivers").join(drv).join(&s.bdf),
                    dir,
                )?;
            }
            link(
                root,
                &Path::new("sys/bus/pci/devices").join(r.addr.to_string()),
                dir,
            )?;
            if iommu_on {
                if let Some(g) = s.group {
                    let gdir = PathBuf::from(format!("sys/kernel/iommu_groups/{g}"));
                    link(root, &dir.join("iommu_group"), &gdir)?;
                    link(root, &gdir.join("devices").join(r.addr.to_string()), dir)?;
                    let kind = self.host.group_type.clone().unwrap_or_else(|| "DMA".into());
                    write(root, &gdir.join("type"), format!("{kind}\n"))?;
                    let unit = s
                        .iommu_unit
                        .clone()
                        .unwrap_or_else(|| unit_default.to_string());
                    let udir = Path::new("sys/devices/virtual/iommu").join(&unit);
                    link(root, &dir.join("iommu"), &udir)?;
                    // The unit lists its devices too (the kernel's iommu_device_link makes both).
                    link(root, &udir.join("devices").join(r.addr.to_string()), dir)?;
                    units.insert(unit);
                }
            }
            if let Some(pf) = &s.physfn {
                let pfa: PciAddress = pf
                    .parse()
                    .map_err(|_| bad(&s.bdf, "physfn is not an address"))?;
                let pdir = paths
                    .get(&pfa)
                    .ok_or_else(|| bad(&s.bdf, "physfn is not in the listing"))?;
                link(root, &dir.join("physfn"), pdir)?;
            }
        }
        // virtfnN links and sriov_numvfs on each PF, numbered in address order.
        let mut vfs: BTreeMap<PciAddress, Vec<PciAddress>> = BTreeMap::new();
        for r in &devs {
            if let Some(pf) = r.spec.physfn.as_deref().and_then(|p| p.parse().ok()) {
                vfs.entry(pf).or_default().push(r.addr);
            }
        }
        for (pf, list) in &vfs {
            let pdir = &paths[pf];
            for (i, vf) in list.iter().enumerate() {
                link(root, &pdir.join(format!("virtfn{i}")), &paths[vf])?;
            }
            write(
                root,
                &pdir.join("sriov_numvfs"),
                format!("{}\n", list.len()),
            )?;
            write(
                root,
                &pdir.join("sriov_totalvfs"),
                format!("{}\n", list.len().max(7)),
            )?;
        }
        std::fs::create_dir_all(root.join("sys/bus/pci/devices"))?;
        std::fs::create_dir_all(root.join("sys/kernel"))?;
        std::fs::create_dir_all(root.join("dev"))?;
        for drv in &drivers {
            std::fs::create_dir_all(root.join("sys/bus/pci/drivers").join(drv))?;
            // Every driver but the PCIe port driver comes from a module of (nearly) its name.
            if drv != "pcieport" {
                let module = drv.replace('-', "_");
                std::fs::create_dir_all(root.join("sys/module").join(&module))?;
                link(
                    root,
                    &Path::new("sys/bus/pci/drivers").join(drv).join("module"),
                    &Path::new("sys/module").join(&module),
                )?;
            }
        }
        if iommu_on {
            std::fs::create_dir_all(root.join("sys/kernel/iommu_groups"))?;
            for u in &units {
                let udir = Path::new("sys/devices/virtual/iommu").join(u);
                match iommu.as_str() {
                    "intel" => {
                        // ecap bit 3: interrupt remapping.
                        let ir = self.host.interrupt_remapping.unwrap_or(true);
                        let ecap: u64 = if ir { 0xf0_50da } else { 0xf0_50d2 };
                        write(root, &udir.join("intel-iommu/ecap"), format!("{ecap:x}\n"))?;
                        write(root, &udir.join("intel-iommu/cap"), "d2008c40660462\n")?;
                    }
                    "amd" => write(root, &udir.join("amd-iommu/features"), "58f77ef22294a5a\n")?,
                    _ => std::fs::create_dir_all(root.join(&udir))?,
                }
                link(root, &Path::new("sys/class/iommu").join(u), &udir)?;
            }
        }
        std::fs::create_dir_all(root.join("sys/class/iommu"))?;
        self.write_proc(root, &paths)?;
        self.write_usage(root, &paths)?;
        Ok(())
    }

    fn cmdline(&self) -> String {
        let mut c = self
            .kernel_cmdline
            .clone()
            .unwrap_or_else(|| "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into());
        if let Some(v) = &self.acs_override {
            if !c.contains("pcie_acs_override") {
                let mode = v.as_str().unwrap_or("downstream,multifunction");
                c.push_str(&format!(" pcie_acs_override={mode}"));
            }
        }
        c
    }

    fn write_proc(
        &self,
        root: &Path,
        _paths: &BTreeMap<PciAddress, PathBuf>,
    ) -> Result<(), SynthError> {
        write(
            root,
            Path::new("proc/cmdline"),
            format!("{}\n", self.cmdline()),
        )?;
        let h = &self.host;
        if h.cpu.is_some() || h.vm.is_some() {
            let flags = if h.vm.is_some() {
                "fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm"
            } else {
                "fpu vme de pse tsc msr pae mce cx8 apic sep lahf_lm"
            };
            let cpu = |n: u32| {
                format!(
                    "processor\t: {n}\nvendor_id\t: {}\ncpu family\t: 25\nflags\t\t: {flags}\n\n",
                    h.cpu.as_deref().unwrap_or("GenuineIntel")
                )
            };
            write(
                root,
                Path::new("proc/cpuinfo"),
                format!("{}{}", cpu(0), cpu(1)),
            )?;
        }
        if let Some(vm) = &h.vm {
            let id = Path::new("sys/class/dmi/id");
            write(root, &id.join("sys_vendor"), format!("{}\n", vm.sys_vendor))?;
            write(
                root,
                &id.join("product_name"),
                format!("{}\n", vm.product_name),
            )?;
        }
        if let Some(v) = h.allow_unsafe_interrupts {
            write(
                root,
                Path::new("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"),
                if v { "Y\n" } else { "N\n" },
            )?;
        }
        let plain = |n: &str| !n.is_empty() && !n.contains('/') && n != "." && n != "..";
        if let Some(tables) = &h.acpi_tables {
            for t in tables {
                if !plain(t) {
                    return Err(bad(t, "an ACPI table is a name"));
                }
                write(root, &Path::new("sys/firmware/acpi/tables").join(t), "")?;
            }
        }
        let release = h.kernel_release.as_deref().unwrap_or("6.1.0-28-amd64");
        if !plain(release) {
            return Err(bad(release, "a kernel release is a name"));
        }
        if h.kernel_release.is_some() || h.vfio_pci.is_some() {
            write(
                root,
                Path::new("proc/sys/kernel/osrelease"),
                format!("{release}\n"),
            )?;
            std::fs::create_dir_all(root.join("lib/modules").join(release))?;
        }
        let ko = Path::new("lib/modules")
            .join(release)
            .join("kernel/drivers/vfio/pci/vfio-pci.ko.xz");
        let deps = Path::new("lib/modules").join(release).join("modules.dep");
        let dep_line =
            "kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz\n";
        match h.vfio_pci.as_deref() {
            Some("builtin") => {
                // Built in: in sys/module (it has parameters) without an initstate.
                write(root, Path::new("sys/module/vfio_pci/parameters/ids"), "\n")?;
                write(
                    root,
                    &Path::new("lib/modules")
                        .join(release)
                        .join("modules.builtin"),
                    "kernel/drivers/vfio/pci/vfio-pci.ko\n",
                )?;
            }
            Some("module") => {
                write(root, &ko, "")?;
                write(root, &deps, dep_line)?;
            }
            Some("loaded") => {
                write(root, &ko, "")?;
                write(root, &deps, dep_line)?;
                write(root, Path::new("sys/module/vfio_pci/initstate"), "live\n")?;
            }
            Some("missing") => write(root, &deps, "kernel/drivers/net/dummy.ko.xz:\n")?,
            None => {}
            Some(other) => {
                return Err(bad(other, "vfio_pci is builtin, module, loaded or missing"))
            }
        }
        if h.iommufd {
            write(root, Path::new("dev/iommu"), "")?;
        }
        match h.vfio_cdev {
            Some(true) => write(root, Path::new("sys/class/vfio-dev/vfio0/dev"), "511:0\n")?,
            Some(false) => std::fs::create_dir_all(root.join("sys/class/vfio-dev/vfio0"))?,
            None => {}
        }
        if let Some(m) = &h.iomem {
            write(root, Path::new("proc/iomem"), m)?;
        }
        if h.vendor_reset {
            write(
                root,
                Path::new("sys/module/vendor_reset/initstate"),
                "live\n",
            )?;
        }
        if h.vfio_loaded.unwrap_or(false)
            || self
                .devices
                .iter()
                .any(|d| d.driver.as_deref() == Some("vfio-pci"))
        {
            std::fs::create_dir_all(root.join("sys/module/vfio_pci"))?;
            if h.vfio_pci.as_deref() != Some("builtin") {
                // A loaded module has an initstate (a built-in one has not).
                write(root, Path::new("sys/module/vfio_pci/initstate"), "live\n")?;
            }
            let mut groups: BTreeSet<u32> = BTreeSet::new();
            for d in &self.devices {
                if d.driver.as_deref() == Some("vfio-pci") {
                    if let Some(g) = d.group {
                        groups.insert(g);
                    }
                }
            }
            for g in groups {
                write(root, &Path::new("dev/vfio").join(g.to_string()), "")?;
            }
        }
        Ok(())
    }

    fn write_usage(
        &self,
        root: &Path,
        paths: &BTreeMap<PciAddress, PathBuf>,
    ) -> Result<(), SynthError> {
        let h = &self.host;
        let pci_dir = |bdf: &str| -> Result<PathBuf, SynthError> {
            let a: PciAddress = bdf.parse().map_err(|_| bad(bdf, "not an address"))?;
            paths
                .get(&a)
                .cloned()
                .ok_or_else(|| bad(bdf, "not in the listing"))
        };
        let mut majmin: BTreeMap<String, String> = BTreeMap::new();
        for b in &h.blocks {
            let pdir = pci_dir(&b.pci)?;
            let disk = if b.name.starts_with("nvme") {
                let ctrl = b.name.split('n').take(2).collect::<Vec<_>>().join("n");
                pdir.join("nvme").join(ctrl).join(&b.name)
            } else {
                pdir.join("ata1/host0/target0:0:0/0:0:0:0/block")
                    .join(&b.name)
            };
            write(root, &disk.join("dev"), format!("{}\n", b.majmin))?;
            link(root, &Path::new("sys/class/block").join(&b.name), &disk)?;
            link(root, &Path::new("sys/dev/block").join(&b.majmin), &disk)?;
            majmin.insert(b.name.clone(), b.majmin.clone());
            for (p, mm) in &b.partitions {
                let pd = disk.join(p);
                write(root, &pd.join("dev"), format!("{mm}\n"))?;
                write(root, &pd.join("partition"), "1\n")?;
                link(root, &Path::new("sys/class/block").join(p), &pd)?;
                link(root, &Path::new("sys/dev/block").join(mm), &pd)?;
                majmin.insert(p.clone(), mm.clone());
            }
        }
        for d in &h.dm {
            let dd = Path::new("sys/devices/virtual/block").join(&d.name);
            write(root, &dd.join("dev"), format!("{}\n", d.majmin))?;
            write(root, &dd.join("dm/name"), format!("{}\n", d.dm_name))?;
            std::fs::create_dir_all(root.join(dd.join("slaves")))?;
            for s in &d.slaves {
                let target = root.join("sys/class/block").join(s);
                let resolved = std::fs::canonicalize(&target)?;
                let rel = resolved
                    .strip_prefix(std::fs::canonicalize(root)?)
                    .map_err(|_| bad(s, "slave outside the tree"))?;
                link(root, &dd.join("slaves").join(s), rel)?;
            }
            link(root, &Path::new("sys/class/block").join(&d.name), &dd)?;
            link(root, &Path::new("sys/dev/block").join(&d.majmin), &dd)?;
            majmin.insert(d.name.clone(), d.majmin.clone());
            link(
                root,
                &Path::new("dev/mapper").join(&d.dm_name),
                &Path::new("dev").join(&d.name),
            )?;
        }
        let mut mi = String::new();
        mi.push_str("1 0 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n");
        mi.push_str("2 0 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n");
        for (i, m) in h.mounts.iter().enumerate() {
            let name = m.source.rsplit('/').next().unwrap_or("");
            let mm = majmin
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("0:{}", 40 + i));
            let mm = if m.fstype == "btrfs" || m.fstype == "zfs" {
                format!("0:{}", 40 + i)
            } else {
                mm
            };
            let mp = m.mountpoint.replace(' ', "\\040");
            mi.push_str(&format!(
                "{} 1 {mm} / {mp} rw,relatime shared:{} - {} {} rw\n",
                20 + i,
                20 + i,
                m.fstype,
                m.source
            ));
        }
        write(root, Path::new("proc/self/mountinfo"), mi)?;
        let mut sw = String::from("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        for s in &h.swaps {
            sw.push_str(&format!(
                "{s}                               partition\t8388604\t\t0\t\t-2\n"
            ));
        }
        write(root, Path::new("proc/swaps"), sw)?;
        for n in &h.net {
            let nd = pci_dir(&n.pci)?.join("net").join(&n.iface);
            write(root, &nd.join("operstate"), "up\n")?;
            link(root, &Path::new("sys/class/net").join(&n.iface), &nd)?;
        }
        let mut route = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        if let Some(i) = &h.default_route {
            route.push_str(&format!(
                "{i}\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            ));
            route.push_str(&format!(
                "{i}\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
            ));
        }
        write(root, Path::new("proc/net/route"), route)?;
        if let Some(c) = &h.console {
            let pd = pci_dir(c)?;
            let fb = pd.join("graphics/fb0");
            write(root, &fb.join("name"), "amdgpudrmfb\n")?;
            link(root, &fb.join("device"), &pd)?;
            link(root, Path::new("sys/class/graphics/fb0"), &fb)?;
        }
        for (i, d) in h.displays.iter().enumerate() {
            let pd = pci_dir(&d.pci)?;
            let card = pd.join(format!("drm/card{i}"));
            link(root, &card.join("device"), &pd)?;
            let conn = card.join(format!("card{i}-{}", d.connector));
            write(root, &conn.join("status"), "connected\n")?;
            link(
                root,
                &Path::new("sys/class/drm").join(format!("card{i}")),
                &card,
            )?;
            link(
                root,
                &Path::new("sys/class/drm").join(format!("card{i}-{}", d.connector)),
                &conn,
            )?;
        }
        Ok(())
    }
}

fn resource_file(bars: &[(u8, u64, String)]) -> String {
    let mut lines =
        vec!["0x0000000000000000 0x0000000000000000 0x0000000000000000".to_string(); 13];
    let mut base: u64 = 0xf000_0000;
    for (i, size, kind) in bars {
        let flags: u64 = match kind.as_str() {
            "io" => 0x40101,
            "mem64-prefetch" => 0x14220c,
            _ => 0x40200,
        };
        let start = if kind == "io" { 0xe000 } else { base };
        base += size.max(&0x1000) * 2;
        if let Some(l) = lines.get_mut(*i as usize) {
            *l = format!("0x{start:016x} 0x{:016x} 0x{flags:016x}", start + size - 1);
        }
    }
    lines.join("\n") + "\n"
}

/// A generated SR-IOV-heavy host for benchmarks: `pfs` physical functions behind their own
/// root ports, each with `vfs_per_pf` virtual functions, every function in its own group.
pub fn sriov_farm(pfs: u32, vfs_per_pf: u32) -> MachineSpec {
    let mut devices = Vec::new();
    let mut group = 0u32;
    let mut next_group = || {
        group += 1;
        group
    };
    devices.push(DeviceSpec {
        bdf: "0000:00:00.0".into(),
        vendor: "8086".into(),
        device: Some("09a2".into()),
        class: "0600".into(),
        group: Some(next_group()),
        ..Default::default()
    });
    let full = |pt: PortType, acs: Option<u16>, sriov: u16| ConfigSpec {
        full: true,
        port_type: Some(pt),
        pm: true,
        msi: true,
        msix: true,
        flr: pt == PortType::Endpoint,
        aer: true,
        acs,
        sriov_total_vfs: sriov,
        intx_pin: 1,
        ..Default::default()
    };
    for p in 0..pfs {
        let (bus, slot, func) = ((p + 1) as u8, (p / 8 + 1) as u8, (p % 8) as u8);
        let rp = format!("0000:00:{slot:02x}.{func}");
        devices.push(DeviceSpec {
            bdf: rp.clone(),
            vendor: "8086".into(),
            device: Some("347a".into()),
            class: "060400".into(),
            group: Some(next_group()),
            driver: Some("pcieport".into()),
            config: Some(full(PortType::RootPort, Some(0x1f), 0)),
            ..Default::default()
        });
        let pf = format!("0000:{bus:02x}:00.0");
        devices.push(DeviceSpec {
            bdf: pf.clone(),
            vendor: "15b3".into(),
            device: Some("1019".into()),
            class: "020000".into(),
            group: Some(next_group()),
            driver: Some("mlx5_core".into()),
            parent: Some(rp.clone()),
            reset_method: Some("flr bus".into()),
            config: Some(full(PortType::Endpoint, None, vfs_per_pf as u16)),
            bars: vec![(0, 32 << 20, "mem64-prefetch".into())],
            ..Default::default()
        });
        for v in 0..vfs_per_pf {
            let n = v + 1;
            devices.push(DeviceSpec {
                bdf: format!("0000:{bus:02x}:{:02x}.{}", n / 8, n % 8),
                vendor: "15b3".into(),
                device: Some("101a".into()),
                class: "020000".into(),
                group: Some(next_group()),
                driver: Some(if v % 2 == 0 { "mlx5_core" } else { "vfio-pci" }.into()),
                parent: Some(rp.clone()),
                physfn: Some(pf.clone()),
                reset_method: Some("flr".into()),
                config: Some(full(PortType::Endpoint, None, 0)),
                bars: vec![(0, 1 << 20, "mem64-prefetch".into())],
                ..Default::default()
            });
        }
    }
    MachineSpec {
        machine: format!("generated SR-IOV host: {pfs} PFs × {vfs_per_pf} VFs"),
        kernel_cmdline: Some("BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt".into()),
        devices,
        host: HostSpec {
            iommu: Some("intel".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}
