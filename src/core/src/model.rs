//! The host model: what the scanner found, as plain serde values.
//!
//! JSON field names and encodings here are a contract (docs/CONTRACTS.md, docs/JSON.md):
//! ids are lowercase hex without `0x`, the class is 6 hex digits, unknown facts are `null`.

use crate::address::{GroupId, PciAddress};
use crate::config::{Capabilities, PortType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

macro_rules! hex_newtype {
    ($name:ident, $t:ty, $width:literal) => {
        #[doc = concat!("A ", stringify!($t), " printed as ", $width, " lowercase hex digits without `0x`.")]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $t);
        impl $name {
            /// The digits without the formatting machinery (a listing writes ~60,000).
            fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
                let v = u64::from(self.0);
                let digits = ((64 - v.leading_zeros()).div_ceil(4) as usize).max($width);
                let mut buf = [0u8; 16];
                for (i, b) in buf[..digits].iter_mut().rev().enumerate() {
                    *b = crate::address::HEX[((v >> (4 * i)) & 0xf) as usize];
                }
                f(std::str::from_utf8(&buf[..digits]).unwrap_or_default())
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.with_text(|t| f.write_str(t))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.with_text(|t| s.serialize_str(t))
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let t = s.strip_prefix("0x").unwrap_or(&s);
                if t.is_empty() || t.len() > $width || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(serde::de::Error::custom(format!("“{s}” is not {} hex digits", $width)));
                }
                <$t>::from_str_radix(t, 16).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_newtype!(Hex16, u16, 4);
hex_newtype!(Hex8, u8, 2);
hex_newtype!(ClassCode, u32, 6);

impl ClassCode {
    pub fn base(self) -> u8 {
        (self.0 >> 16) as u8
    }
    pub fn sub(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// PCI-to-PCI bridge (root ports, switch ports, PCIe-to-PCI bridges).
    pub fn is_pci_bridge(self) -> bool {
        self.0 >> 8 == 0x0604 || self.0 >> 8 == 0x0609
    }
    /// Any bridge class (host, ISA, PCI, …).
    pub fn is_bridge(self) -> bool {
        self.base() == 0x06
    }
    pub fn is_display(self) -> bool {
        self.base() == 0x03
    }
}

/// One BAR from the `resource` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub index: u8,
    pub size: u64,
    /// "mem" or "io".
    pub kind: String,
    pub prefetchable: bool,
    pub is_64bit: bool,
    /// MMIO smaller than the host page: VFIO cannot map it into the guest directly.
    pub small: bool,
}

/// A PCI function as Passage knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub address: PciAddress,
    pub vendor_id: Hex16,
    pub device_id: Hex16,
    pub subsystem_vendor_id: Option<Hex16>,
    pub subsystem_device_id: Option<Hex16>,
    pub class: ClassCode,
    pub revision: Hex8,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    pub class_name: String,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub group: Option<GroupId>,
    /// The bridge directly above, `null` on a root bus.
    pub parent: Option<PciAddress>,
    /// Every bridge between the device and its root bus, nearest first.
    pub bridges: Vec<PciAddress>,
    /// The root bus as sysfs names it (`pci0000:00`).
    pub root_bus: String,
    pub header_type: u8,
    pub multifunction: bool,
    pub pcie_type: Option<PortType>,
    pub capabilities: Capabilities,
    /// Bytes of config space that were readable (64 for an unprivileged reader).
    pub config_bytes: usize,
    pub bars: Vec<Bar>,
    /// The kernel's `reset_method` list; `null` when the file is absent (no reset, or a kernel
    /// older than 5.15).
    pub reset_methods: Option<Vec<String>>,
    pub boot_vga: Option<bool>,
    pub numa_node: Option<i32>,
    pub physfn: Option<PciAddress>,
    pub virtfns: Vec<PciAddress>,
    pub sriov_numvfs: Option<u32>,
    pub iommu_unit: Option<String>,
    /// The device's directory relative to the host root (`sys/devices/…`).
    pub sysfs_path: String,
}

impl Device {
    /// A short name for sentences: "NVIDIA GA102 [GeForce RTX 3080]" or the ids.
    pub fn display_name(&self) -> String {
        match (&self.device_name, &self.vendor_name) {
            (Some(d), Some(v)) => format!("{} {}", short_vendor(v), d),
            (None, Some(v)) => format!("{} {}:{}", short_vendor(v), self.vendor_id, self.device_id),
            _ => format!(
                "{} [{}:{}]",
                self.class_name, self.vendor_id, self.device_id
            ),
        }
    }

    /// Bridges are never handed to a guest: they stay on `pcieport` (or no driver).
    pub fn is_bridge(&self) -> bool {
        self.class.is_pci_bridge() || self.header_type == 1
    }

    /// The IOMMU's own PCI function (class 0806, AMD's): never in a group, by design.
    pub fn is_iommu(&self) -> bool {
        self.class.0 >> 8 == 0x0806
    }

    /// A function that belongs in a group when the IOMMU makes groups: not a bridge, not
    /// chipset glue, not the IOMMU itself.
    pub fn wants_a_group(&self) -> bool {
        self.is_for_a_guest() && !self.is_iommu()
    }

    /// A bridge to conventional PCI: the devices below it reach memory under its requester ID.
    pub fn is_conventional_bridge(&self) -> bool {
        self.pcie_type == Some(PortType::PcieToPciBridge)
            || (self.capabilities.express == Some(false) && self.class.is_pci_bridge())
    }

    /// Host bridges, ISA bridges and other chipset glue that no guest could use.
    pub fn is_chipset_glue(&self) -> bool {
        self.class.is_bridge() && !self.is_bridge()
    }

    /// A function a guest could be given: an endpoint that is not chipset glue (what makes a
    /// group assignable, and its card's first usable device).
    pub fn is_for_a_guest(&self) -> bool {
        self.is_endpoint() && !self.is_chipset_glue()
    }

    /// Members that count for viability: not bridges.
    pub fn is_endpoint(&self) -> bool {
        !self.is_bridge()
    }

    pub fn on_vfio(&self) -> bool {
        self.driver.as_deref() == Some("vfio-pci")
    }

    /// Drivers that hold no DMA for the host and do not block a group's viability.
    pub fn driver_is_harmless(&self) -> bool {
        matches!(
            self.driver.as_deref(),
            None | Some("vfio-pci") | Some("pci-stub") | Some("pcieport")
        )
    }

    /// A bridge on a driver that keeps the kernel from giving its group to user space: one
    /// that does not leave DMA to the group's owner (the kernel's `driver_managed_dma`, set by
    /// pcieport, pci-stub and vfio-pci). Device-tree machines bind `shpchp`, the hot-plug
    /// driver of a PCIe-to-PCI bridge's conventional slots, where ACPI machines leave it to
    /// the firmware. A claim takes such a bridge off its driver and a release puts it back.
    pub fn bridge_blocks_vfio(&self) -> bool {
        self.is_bridge() && !self.driver_is_harmless()
    }
}

/// Trims corporate suffixes: "NVIDIA Corporation" → "NVIDIA".
pub fn short_vendor(v: &str) -> &str {
    if let Some(i) = v.find(" [") {
        // "Advanced Micro Devices, Inc. [AMD/ATI]" → the bracket is the common name.
        let inner = &v[i + 2..];
        if let Some(j) = inner.find(']') {
            return &inner[..j];
        }
    }
    for suffix in [
        " Semiconductor Co., Ltd.",
        " Electronics Co Ltd",
        " Electronics Corporation",
        " Technology Inc.",
        " Corporation",
        " Corp.",
        " Co., Ltd.",
        " Co Ltd",
        ", Inc.",
        " Inc.",
    ] {
        if let Some(s) = v.strip_suffix(suffix) {
            return s;
        }
    }
    v
}

/// An IOMMU group exactly as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub devices: Vec<PciAddress>,
    /// Members that are not PCI functions (platform devices on ARM, for example).
    pub other_members: Vec<String>,
    /// The group's `type` file: DMA, DMA-FQ, identity, blocked, unmanaged.
    pub kind: Option<String>,
}

/// One hardware IOMMU unit (`/sys/class/iommu/*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuUnit {
    pub name: String,
    /// "intel", "amd", "arm-smmu", "other".
    pub kind: String,
    /// Interrupt remapping support, where the unit says (Intel `ecap` bit 3).
    pub interrupt_remapping: Option<bool>,
}

/// Facts about the platform that decide whether any group can be used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub cmdline: String,
    pub units: Vec<IommuUnit>,
    /// "intel" or "amd": the CPU's own word (`vendor_id` in proc/cpuinfo), else the host
    /// bridge's vendor (hypervisors emulate Intel bridges, so that is only a fallback).
    pub cpu_vendor: Option<String>,
    /// Set when this host is itself a virtual machine (cpuinfo's `hypervisor` flag, or DMI
    /// naming a hypervisor's machine).
    #[serde(default)]
    pub virtual_machine: Option<VirtualMachine>,
    pub acs_override: Option<String>,
    /// `vfio-pci.ids=` / `vfio_pci.ids=` from the command line, as vendor:device pairs.
    pub vfio_pci_ids: Vec<(Hex16, Hex16)>,
    pub allow_unsafe_interrupts: Option<bool>,
    pub vfio_pci_loaded: bool,
    /// Group numbers with a `/dev/vfio/N` node.
    pub vfio_nodes: Vec<GroupId>,
    /// The ACPI tables that describe an IOMMU ("DMAR" Intel, "IVRS" AMD, "IORT" ARM) among those
    /// the firmware provides; `None` when the table directory cannot be listed (no ACPI, or a
    /// recording without it). Tells "off in the firmware" from "not turned on by the kernel".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_iommu_tables: Option<Vec<String>>,
    /// The CPU architecture family, from proc/cpuinfo: "x86", "arm64", "powerpc".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The device tree's first `compatible` string, where the kernel booted from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devicetree: Option<String>,
    /// ARM: whether the interrupt controller isolates the MSIs devices send (a GICv3 ITS),
    /// which VFIO's type1 requires as x86 requires interrupt remapping; from the device tree.
    /// `None` where not ARM or not told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msi_isolation: Option<bool>,
    pub page_size: u64,
}

/// What says this host is a virtual machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualMachine {
    /// The CPU reports the `hypervisor` flag (set by every x86 hypervisor).
    pub hypervisor_flag: bool,
    /// `sys/class/dmi/id/sys_vendor` and `product_name`, where readable ("QEMU", "Standard PC
    /// (Q35 + ICH9, 2009)").
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
}

impl VirtualMachine {
    /// "QEMU Standard PC (Q35 + ICH9, 2009)", or what the CPU says.
    pub fn describe(&self) -> String {
        match (&self.sys_vendor, &self.product_name) {
            (Some(v), Some(p)) if !p.starts_with(v.as_str()) => format!("{v} {p}"),
            (_, Some(p)) => p.clone(),
            (Some(v), None) => v.clone(),
            (None, None) => "hypervisor".to_string(),
        }
    }
}

/// Why the host needs (or uses) a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Use {
    /// Holds a filesystem the system cannot run without (`/`, `/usr`, `/boot`, `/var`…).
    SystemFilesystem {
        mountpoint: String,
        source: String,
    },
    /// Holds some other mounted filesystem.
    Filesystem {
        mountpoint: String,
        source: String,
    },
    Swap {
        source: String,
    },
    /// Drives the console framebuffer.
    Console {
        framebuffer: String,
    },
    /// Has a display connected (but is not the console).
    Display {
        connector: String,
    },
    /// Carries the default route.
    DefaultRoute {
        interface: String,
    },
    /// The root filesystem comes over this NIC.
    NetworkRoot {
        interface: String,
        source: String,
    },
}

impl Use {
    /// Uses the host cannot survive losing.
    pub fn is_critical(&self) -> bool {
        matches!(
            self,
            Use::SystemFilesystem { .. }
                | Use::Swap { .. }
                | Use::Console { .. }
                | Use::DefaultRoute { .. }
                | Use::NetworkRoot { .. }
        )
    }
}

/// The whole host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub devices: BTreeMap<PciAddress, Device>,
    pub groups: BTreeMap<GroupId, Group>,
    pub platform: Platform,
    pub uses: BTreeMap<PciAddress, Vec<Use>>,
    /// `None` for a model of the whole host. A model read for one device or group
    /// ([`crate::scan::scan_target`]) holds only that group, its members' bridges and the
    /// platform; this says how many groups the host has in all.
    #[serde(skip)]
    pub groups_on_host: Option<usize>,
}

impl Host {
    /// How many IOMMU groups the host has (also when this model holds only some of them).
    pub fn group_count(&self) -> usize {
        self.groups_on_host.unwrap_or(self.groups.len())
    }

    pub fn iommu_enabled(&self) -> bool {
        !self.groups.is_empty()
    }

    pub fn device(&self, a: PciAddress) -> Option<&Device> {
        self.devices.get(&a)
    }

    pub fn group_of(&self, a: PciAddress) -> Option<&Group> {
        self.devices
            .get(&a)
            .and_then(|d| d.group)
            .and_then(|g| self.groups.get(&g))
    }

    /// Functions outside every group whose DMA group `g`'s domain translates: they sit behind
    /// a bridge to conventional PCI that is in `g`, which issues their DMA under its own
    /// requester ID, and the IOMMU driver refused them a group of their own or a place in `g`
    /// (the ARM SMMUv3 driver takes one device per stream ID: "stream N already in tree").
    /// Empty where the IOMMU groups them as the kernel's PCI code says, as on x86.
    pub fn stream_sharers(&self, g: &Group) -> Vec<&Device> {
        // Most groups hold no bridge to conventional PCI: nothing to look for (and no walk over
        // every device, which would make a listing of 10,000 groups quadratic).
        if !self.members(g).any(Device::is_conventional_bridge) {
            return Vec::new();
        }
        self.devices
            .values()
            .filter(|d| self.stream_group(d) == Some(g.id))
            .collect()
    }

    /// The group whose DMA stream `d` shares while it is in no group itself: that of a bridge
    /// to conventional PCI above it (see [`Host::stream_sharers`]).
    pub fn stream_group(&self, d: &Device) -> Option<GroupId> {
        if d.group.is_some() || !d.wants_a_group() {
            return None;
        }
        d.bridges.iter().find_map(|b| {
            self.devices
                .get(b)
                .filter(|b| b.is_conventional_bridge())
                .and_then(|b| b.group)
        })
    }

    /// Devices in a group that exist in the model, in address order.
    pub fn members<'a>(&'a self, g: &'a Group) -> impl Iterator<Item = &'a Device> + 'a {
        g.devices.iter().filter_map(|a| self.devices.get(a))
    }

    pub fn uses_of(&self, a: PciAddress) -> &[Use] {
        self.uses.get(&a).map(Vec::as_slice).unwrap_or(&[])
    }
}
