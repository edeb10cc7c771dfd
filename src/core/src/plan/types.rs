//! The plan's data: guests, the groups and devices given to them, guest addresses, VMMs and
//! layouts, the plan file (`from_json`/`to_json`) and [`PlanError`].

use crate::address::{GroupId, PciAddress};
use crate::i18n::{tr, trf};
use crate::model::{Device, Hex16};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The plan format's version; a file with another version is refused, never guessed at.
pub const PLAN_VERSION: u32 = 1;

/// Longest guest name we accept (libvirt's own limit is larger; no person types more).
pub const MAX_GUEST_NAME: usize = 64;

/// Where a device appears inside the guest: bus, slot (device) and function, as `BB:SS.F`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestAddress {
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl GuestAddress {
    pub fn new(bus: u8, slot: u8, function: u8) -> Option<Self> {
        (slot < 32 && function < 8).then_some(Self {
            bus,
            slot,
            function,
        })
    }

    /// The slot this function sits in (function 0 of the same bus and slot).
    pub fn slot_key(self) -> (u8, u8) {
        (self.bus, self.slot)
    }
}

impl FromStr for GuestAddress {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PlanError::BadGuestAddress(s.chars().take(24).collect());
        // The same strict parser as host addresses, without a domain: "01:00.0".
        if s.matches(':').count() != 1 {
            return Err(bad());
        }
        let a: PciAddress = s.parse().map_err(|_| bad())?;
        Ok(Self {
            bus: a.bus,
            slot: a.slot,
            function: a.function,
        })
    }
}

impl fmt::Display for GuestAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus, self.slot, self.function)
    }
}

impl fmt::Debug for GuestAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for GuestAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GuestAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The virtual machine monitor a guest runs under; decides its export format and how guest
/// addresses are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vmm {
    Libvirt,
    Qemu,
    CloudHypervisor,
    Crosvm,
    Proxmox,
    Kubevirt,
    Nova,
}

impl Vmm {
    pub const ALL: [Vmm; 7] = [
        Vmm::Libvirt,
        Vmm::Qemu,
        Vmm::CloudHypervisor,
        Vmm::Crosvm,
        Vmm::Proxmox,
        Vmm::Kubevirt,
        Vmm::Nova,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vmm::Libvirt => "libvirt",
            Vmm::Qemu => "qemu",
            Vmm::CloudHypervisor => "cloud-hypervisor",
            Vmm::Crosvm => "crosvm",
            Vmm::Proxmox => "proxmox",
            Vmm::Kubevirt => "kubevirt",
            Vmm::Nova => "nova",
        }
    }

    /// Whether this VMM lets the plan choose guest addresses at all (Proxmox, KubeVirt and
    /// Nova place devices themselves).
    pub fn takes_guest_addresses(self) -> bool {
        matches!(self, Vmm::Libvirt | Vmm::Qemu | Vmm::Crosvm)
    }
}

impl FromStr for Vmm {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vmm::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| PlanError::BadVmm(s.chars().take(24).collect()))
    }
}

/// When the guest's groups are taken from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Claimed when the plan is applied and kept on vfio-pci.
    #[default]
    Kept,
    /// Claimed when the guest starts and given back when it stops (libvirt's qemu hook).
    OnStart,
}

impl FromStr for Lifecycle {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kept" => Ok(Lifecycle::Kept),
            "on-start" => Ok(Lifecycle::OnStart),
            _ => Err(PlanError::BadLifecycle(s.chars().take(24).collect())),
        }
    }
}

/// A guest: a libvirt domain or a local profile for another VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    pub name: String,
    pub vmm: Vmm,
    /// QEMU machine type: `q35` (PCIe, root ports) or `pc` (i440fx, one flat bus).
    #[serde(default = "default_machine")]
    pub machine: String,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Groups given to this guest, in the order they were assigned.
    #[serde(default)]
    pub groups: Vec<GroupPlan>,
    /// The guest's memory in MiB, where known (a profile's `--memory`): what a VMM pins for
    /// pass-through, checked against the locked-memory limit it runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

fn default_machine() -> String {
    "q35".into()
}

/// How guest addresses are laid out for a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// q35 under libvirt or QEMU: every guest slot is slot 0 behind its own `pcie-root-port`;
    /// the bus number is the port's (libvirt's controller index).
    RootPorts,
    /// One flat bus 0 (i440fx, crosvm); slots from [`FLAT_FIRST_SLOT`].
    Flat,
    /// The VMM places devices itself (cloud-hypervisor, Proxmox, KubeVirt, Nova): addresses are not ours.
    Vmm,
}

impl Layout {
    /// q35 (and its versioned names, `pc-q35-8.2`) under libvirt or QEMU has root ports;
    /// i440fx (`pc`, `pc-i440fx-…`) and crosvm one flat bus; the rest place devices themselves.
    pub fn of(vmm: Vmm, machine: &str) -> Self {
        match vmm {
            Vmm::Libvirt | Vmm::Qemu if machine.contains("q35") => Layout::RootPorts,
            Vmm::Libvirt | Vmm::Qemu | Vmm::Crosvm => Layout::Flat,
            Vmm::CloudHypervisor | Vmm::Proxmox | Vmm::Kubevirt | Vmm::Nova => Layout::Vmm,
        }
    }
}

/// First slot given out on a flat bus: low slots hold the machine's own devices (i440fx's
/// host bridge, PIIX3, VGA; crosvm's and cloud-hypervisor's virtio devices).
pub const FLAT_FIRST_SLOT: u8 = 0x10;

impl Guest {
    pub fn new(name: &str, vmm: Vmm) -> Result<Self, PlanError> {
        check_guest_name(name)?;
        Ok(Self {
            name: name.to_string(),
            vmm,
            machine: default_machine(),
            lifecycle: Lifecycle::default(),
            groups: Vec::new(),
            memory_mib: None,
        })
    }

    pub fn layout(&self) -> Layout {
        Layout::of(self.vmm, &self.machine)
    }

    pub fn holds(&self, g: GroupId) -> bool {
        self.groups.iter().any(|p| p.group == g)
    }
}

/// Guest names end up in file names, XML and command lines: letters, digits and `._-+`
/// (libvirt allows more, but nothing a person needs).
pub fn check_guest_name(name: &str) -> Result<(), PlanError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_GUEST_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(PlanError::BadGuestName(name.chars().take(40).collect()))
    }
}

/// One group given to a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPlan {
    /// The group number when the plan was made (numbers can change between boots; the
    /// devices' addresses and ids are what is checked).
    pub group: GroupId,
    /// Give it away even though the host needs it (root disk, console, default route).
    #[serde(default)]
    pub force: bool,
    /// Every function of the group a guest could use (bridges and chipset glue stay with
    /// the host and are not listed).
    pub devices: Vec<DevicePlan>,
}

/// One device of an assigned group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePlan {
    pub address: PciAddress,
    pub vendor_id: Hex16,
    pub device_id: Hex16,
    #[serde(default)]
    pub subsystem_vendor_id: Option<Hex16>,
    #[serde(default)]
    pub subsystem_device_id: Option<Hex16>,
    /// Hidden devices stay claimed (the group moves whole) but the guest does not see them.
    #[serde(default = "yes")]
    pub visible: bool,
    /// Chosen by the person; `null` lets Passage place it (functions of one card together).
    #[serde(default)]
    pub guest_address: Option<GuestAddress>,
    /// Expose the option ROM BAR (off for cards whose ROM confuses the guest).
    #[serde(default = "yes")]
    pub rombar: bool,
    /// QEMU's legacy VGA (`x-vga=on`) for a GPU that is the guest's primary display.
    #[serde(default)]
    pub x_vga: bool,
    /// The card's PCIe Device Serial Number when it was planned (read as root, where it has
    /// one): what tells this card from an identical twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<crate::config::SerialNumber>,
}

fn yes() -> bool {
    true
}

impl DevicePlan {
    pub(super) fn from_device(d: &Device) -> Self {
        Self {
            address: d.address,
            vendor_id: d.vendor_id,
            device_id: d.device_id,
            subsystem_vendor_id: d.subsystem_vendor_id,
            subsystem_device_id: d.subsystem_device_id,
            visible: true,
            guest_address: None,
            rombar: true,
            x_vga: false,
            serial_number: d.capabilities.serial_number,
        }
    }
}

/// The most guests a plan file may list (a file with more is not one Passage wrote).
pub const MAX_GUESTS: usize = 1024;

/// A whole plan: guests and what each holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    #[serde(default)]
    pub guests: Vec<Guest>,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            version: PLAN_VERSION,
            guests: Vec::new(),
        }
    }
}

/// Why a plan edit or a plan file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("“{0}” is not a guest PCI address (expected BB:SS.F, e.g. 01:00.0)")]
    BadGuestAddress(String),
    #[error("“{0}” is not a VMM (one of libvirt, qemu, cloud-hypervisor, crosvm, proxmox, kubevirt, nova)")]
    BadVmm(String),
    #[error("“{0}” is not a lifecycle (kept or on-start)")]
    BadLifecycle(String),
    #[error("“{0}” is not a usable guest name (letters, digits and . _ - +, at most 64)")]
    BadGuestName(String),
    #[error("the plan has no guest named “{0}”")]
    NoGuest(String),
    #[error("the plan already has a guest named “{0}”")]
    GuestExists(String),
    #[error("there is no IOMMU group {0} on this host")]
    NoGroup(GroupId),
    #[error("there is no PCI device {0} on this host")]
    NoDevice(PciAddress),
    #[error("{0} is not in the plan; assign its group to a guest first")]
    NotPlanned(PciAddress),
    #[error("group {0} is not in the plan")]
    GroupNotPlanned(GroupId),
    #[error("group {group} holds nothing a guest could use (only bridges and chipset functions)")]
    NothingToAssign { group: GroupId },
    #[error("{0}")]
    Refused(String),
    #[error("the plan file is not a Passage plan: {0}")]
    Format(String),
    #[error("the plan file has version {0}; this Passage reads version 1")]
    Version(u32),
}

impl Plan {
    /// Reads a plan file's text, refusing other versions and malformed content with a
    /// sentence (the serde error names the line and column).
    pub fn from_json(s: &str) -> Result<Self, PlanError> {
        #[derive(Deserialize)]
        struct Probe {
            version: Option<u32>,
        }
        let probe: Probe = serde_json::from_str(s).map_err(|e| PlanError::Format(e.to_string()))?;
        match probe.version {
            Some(PLAN_VERSION) => {}
            Some(v) => return Err(PlanError::Version(v)),
            None => return Err(PlanError::Format(tr("it has no “version” field"))),
        }
        // `resolved` is what `export --format json` adds; it is recomputed, never trusted.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            version: u32,
            #[serde(default)]
            guests: Vec<Guest>,
            #[serde(default, rename = "resolved")]
            _resolved: serde::de::IgnoredAny,
        }
        let f: File = serde_json::from_str(s).map_err(|e| PlanError::Format(e.to_string()))?;
        let plan = Plan {
            version: f.version,
            guests: f.guests,
        };
        if plan.guests.len() > MAX_GUESTS {
            return Err(PlanError::Format(trf(
                "it lists {n} guests; a plan holds at most {max}",
                &[
                    ("n", &plan.guests.len().to_string()),
                    ("max", &MAX_GUESTS.to_string()),
                ],
            )));
        }
        let mut names = BTreeSet::new();
        // Every device once in the whole plan: a function cannot go to two guests, or twice
        // to one.
        let mut seen = BTreeSet::new();
        for g in &plan.guests {
            check_guest_name(&g.name)?;
            if !names.insert(g.name.as_str()) {
                return Err(PlanError::GuestExists(g.name.clone()));
            }
            // The machine type reaches exports (a QEMU command line, a domain's XML): only the
            // names Passage lays out.
            crate::store::check_machine(&g.machine)?;
            crate::store::check_memory(&g.name, g.memory_mib)?;
            for p in &g.groups {
                let field = |what: &str| {
                    trf(
                        "guest “{guest}”, group {group}: {what}",
                        &[
                            ("guest", &g.name),
                            ("group", &p.group.to_string()),
                            ("what", what),
                        ],
                    )
                };
                if p.devices.is_empty() {
                    return Err(PlanError::Format(field(&tr(
                        "“devices” is empty; a planned group lists the devices it gives the guest",
                    ))));
                }
                for d in &p.devices {
                    if !seen.insert(d.address) {
                        return Err(PlanError::Format(field(&trf(
                            "{device} is listed more than once in the plan",
                            &[("device", &d.address.to_string())],
                        ))));
                    }
                }
            }
        }
        Ok(plan)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_addresses_parse_strictly() {
        let a: GuestAddress = "01:00.1".parse().unwrap();
        assert_eq!((a.bus, a.slot, a.function), (1, 0, 1));
        assert_eq!(a.to_string(), "01:00.1");
        for bad in ["", "0000:01:00.0", "01:20.0", "01:00.8", "x", "01:00"] {
            assert!(bad.parse::<GuestAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn guest_names_are_safe_for_files_and_xml() {
        for ok in ["win11", "router-1", "a.b_c+d", "ß"] {
            assert!(check_guest_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a b", "<x>", "-x", ".x", &"a".repeat(65)] {
            assert!(check_guest_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plan_files_of_another_version_or_shape_are_refused() {
        assert_eq!(
            Plan::from_json(r#"{"version": 2, "guests": []}"#),
            Err(PlanError::Version(2))
        );
        assert!(matches!(
            Plan::from_json(r#"{"guests": []}"#),
            Err(PlanError::Format(_))
        ));
        assert!(matches!(
            Plan::from_json(r#"{"version": 1, "guests": [], "extra": 1}"#),
            Err(PlanError::Format(_))
        ));
        assert!(matches!(
            Plan::from_json(r#"{"version": 1, "guests": [{"name": "a/b", "vmm": "qemu"}]}"#),
            Err(PlanError::BadGuestName(_))
        ));
        assert!(matches!(
            Plan::from_json("not json"),
            Err(PlanError::Format(_))
        ));
    }
}
