//! Assignment plans: which guest gets which IOMMU groups, and how each device looks inside it.
//!
//! A plan is plain serde data saved as JSON (docs/JSON.md, "Plans"). It names devices by host
//! address *and* by vendor/device/subsystem ids, so a plan reopened on a host whose cards moved,
//! changed or regrouped says so device by device instead of silently giving a guest the wrong
//! card. The group stays the unit: [`Plan::assign`] always takes a whole group, hidden devices
//! stay in it (claimed, shown as held), and [`check`] refuses a group split between guests.
//!
//! Decisions live here so the CLI and the GUI make the same ones: every edit is a method that
//! either changes the plan or says why not, and [`check`] returns problems with stable codes,
//! sentences and remedies (like [`crate::explain`]'s reasons).

use crate::address::{GroupId, PciAddress};
use crate::explain::{self, State};
use crate::i18n::{tr, trf};
use crate::model::{ClassCode, Device, Hex16, Host};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
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
}

fn yes() -> bool {
    true
}

impl DevicePlan {
    fn from_device(d: &Device) -> Self {
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
        }
    }
}

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

/// How much a problem matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The plan cannot be applied or exported as it is.
    Error,
    /// It works, but the person should know.
    Warning,
}

/// Something wrong with a plan: a stable code, what it concerns, a sentence and a remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub code: String,
    pub severity: Severity,
    pub guest: Option<String>,
    pub group: Option<GroupId>,
    pub device: Option<PciAddress>,
    pub message: String,
    pub remedy: Option<String>,
}

impl Problem {
    fn error(code: &str, message: String) -> Self {
        Self {
            code: code.into(),
            severity: Severity::Error,
            guest: None,
            group: None,
            device: None,
            message,
            remedy: None,
        }
    }
    fn warning(code: &str, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }
    fn guest(mut self, g: &str) -> Self {
        self.guest = Some(g.to_string());
        self
    }
    fn group(mut self, g: GroupId) -> Self {
        self.group = Some(g);
        self
    }
    fn device(mut self, a: PciAddress) -> Self {
        self.device = Some(a);
        self
    }
    fn remedy(mut self, r: String) -> Self {
        self.remedy = Some(r);
        self
    }
}

/// Devices of a host group that a guest could use: not bridges, not chipset glue.
pub fn assignable_members(host: &Host, g: GroupId) -> Vec<&Device> {
    host.groups
        .get(&g)
        .map(|grp| {
            host.members(grp)
                .filter(|d| d.is_endpoint() && !d.is_chipset_glue())
                .collect()
        })
        .unwrap_or_default()
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
        let mut names = BTreeSet::new();
        for g in &plan.guests {
            check_guest_name(&g.name)?;
            if !names.insert(g.name.as_str()) {
                return Err(PlanError::GuestExists(g.name.clone()));
            }
        }
        Ok(plan)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn guest(&self, name: &str) -> Option<&Guest> {
        self.guests.iter().find(|g| g.name == name)
    }

    fn guest_mut(&mut self, name: &str) -> Result<&mut Guest, PlanError> {
        self.guests
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| PlanError::NoGuest(name.chars().take(40).collect()))
    }

    /// The guest that holds a group in this plan.
    pub fn holder(&self, g: GroupId) -> Option<&Guest> {
        self.guests.iter().find(|guest| guest.holds(g))
    }

    /// The first guest holding groups (what `export` uses without `--guest`).
    pub fn first_with_groups(&self) -> Option<&Guest> {
        self.guests.iter().find(|g| !g.groups.is_empty())
    }

    pub fn add_guest(&mut self, guest: Guest) -> Result<(), PlanError> {
        check_guest_name(&guest.name)?;
        if self.guest(&guest.name).is_some() {
            return Err(PlanError::GuestExists(guest.name));
        }
        self.guests.push(guest);
        Ok(())
    }

    /// Removes a guest; its groups go back to being unplanned.
    pub fn remove_guest(&mut self, name: &str) -> Result<Guest, PlanError> {
        let i = self
            .guests
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| PlanError::NoGuest(name.chars().take(40).collect()))?;
        Ok(self.guests.remove(i))
    }

    /// Gives a whole host group to a guest (moving it from another guest if it had one).
    ///
    /// Refused, with nothing changed, when the group does not exist, holds nothing a guest
    /// could use, or is host-critical without `force`. Devices the group held before keep
    /// their visibility and addresses when it moves.
    pub fn assign(
        &mut self,
        host: &Host,
        g: GroupId,
        guest: &str,
        force: bool,
    ) -> Result<(), PlanError> {
        let group = host.groups.get(&g).ok_or(PlanError::NoGroup(g))?;
        self.guest_mut(guest)?;
        let members = assignable_members(host, g);
        if members.is_empty() {
            return Err(PlanError::NothingToAssign { group: g });
        }
        let verdict = explain::group(host, group);
        if verdict.state == State::HostCritical && !force {
            return Err(PlanError::Refused(host_critical_sentence(g, &verdict)));
        }
        let previous = self.unassign(g).ok();
        let devices = members
            .iter()
            .map(|d| {
                previous
                    .as_ref()
                    .and_then(|p| p.devices.iter().find(|x| x.address == d.address))
                    .filter(|x| x.vendor_id == d.vendor_id && x.device_id == d.device_id)
                    .cloned()
                    .unwrap_or_else(|| DevicePlan::from_device(d))
            })
            .collect();
        let target = self.guest_mut(guest)?;
        target.groups.push(GroupPlan {
            group: g,
            force,
            devices,
        });
        Ok(())
    }

    pub fn set_lifecycle(&mut self, guest: &str, l: Lifecycle) -> Result<(), PlanError> {
        self.guest_mut(guest)?.lifecycle = l;
        Ok(())
    }

    /// Takes a group out of the plan; returns what it was.
    pub fn unassign(&mut self, g: GroupId) -> Result<GroupPlan, PlanError> {
        for guest in &mut self.guests {
            if let Some(i) = guest.groups.iter().position(|p| p.group == g) {
                return Ok(guest.groups.remove(i));
            }
        }
        Err(PlanError::GroupNotPlanned(g))
    }

    /// Applies an edit only if it makes the plan no worse: an edit that would add an error
    /// (an address clash, a split group, a changed card…) is refused with the reasons and the
    /// plan stays as it was. Returns the problems the plan has afterwards.
    pub fn try_edit(
        &mut self,
        host: &Host,
        edit: impl FnOnce(&mut Plan) -> Result<(), PlanError>,
    ) -> Result<Vec<Problem>, PlanError> {
        let key = |p: &Problem| (p.code.clone(), p.guest.clone(), p.group, p.device);
        let before: BTreeSet<_> = check(self, host)
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(key)
            .collect();
        let mut next = self.clone();
        edit(&mut next)?;
        let after = check(&next, host);
        let new: Vec<String> = after
            .iter()
            .filter(|p| p.severity == Severity::Error && !before.contains(&key(p)))
            .map(|p| match &p.remedy {
                Some(r) => format!("{} {r}", p.message),
                None => p.message.clone(),
            })
            .collect();
        if !new.is_empty() {
            return Err(PlanError::Refused(new.join(" ")));
        }
        *self = next;
        Ok(after)
    }

    fn device_mut(&mut self, a: PciAddress) -> Result<&mut DevicePlan, PlanError> {
        self.guests
            .iter_mut()
            .flat_map(|g| g.groups.iter_mut())
            .flat_map(|p| p.devices.iter_mut())
            .find(|d| d.address == a)
            .ok_or(PlanError::NotPlanned(a))
    }

    /// Shows or hides a device from its guest (it stays claimed either way).
    pub fn set_visible(&mut self, a: PciAddress, visible: bool) -> Result<(), PlanError> {
        self.device_mut(a)?.visible = visible;
        Ok(())
    }

    /// Chooses a device's guest address (`None`: let Passage place it).
    pub fn set_guest_address(
        &mut self,
        a: PciAddress,
        at: Option<GuestAddress>,
    ) -> Result<(), PlanError> {
        self.device_mut(a)?.guest_address = at;
        Ok(())
    }

    pub fn set_rombar(&mut self, a: PciAddress, on: bool) -> Result<(), PlanError> {
        self.device_mut(a)?.rombar = on;
        Ok(())
    }

    pub fn set_x_vga(&mut self, a: PciAddress, on: bool) -> Result<(), PlanError> {
        self.device_mut(a)?.x_vga = on;
        Ok(())
    }
}

fn host_critical_sentence(g: GroupId, v: &explain::GroupVerdict) -> String {
    let why: Vec<String> = v
        .reasons
        .iter()
        .filter(|r| r.severity == explain::Severity::Blocker && r.device.is_some())
        .map(|r| r.message.clone())
        .collect();
    trf(
        "Group {id} is needed by the host: {why} Giving it away would take that from the running system; force it only if you know the host can do without.",
        &[("id", &g.to_string()), ("why", &why.join(" "))],
    )
}

/// A device of a plan with everything an exporter needs, guest address decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedDevice {
    pub address: PciAddress,
    pub group: GroupId,
    pub vendor_id: Hex16,
    pub device_id: Hex16,
    pub subsystem_vendor_id: Option<Hex16>,
    pub subsystem_device_id: Option<Hex16>,
    pub class: ClassCode,
    pub name: String,
    pub visible: bool,
    /// Where the guest sees it; `null` for hidden devices and for VMMs that place devices.
    pub guest_address: Option<GuestAddress>,
    /// Function 0 of a guest slot that holds several functions.
    pub multifunction: bool,
    pub rombar: bool,
    pub x_vga: bool,
    /// The device is an SR-IOV virtual function (Nova's `type-VF`).
    pub is_vf: bool,
    /// The device is an SR-IOV physical function (Nova's `type-PF`).
    pub is_pf: bool,
}

/// A guest with its devices resolved against a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedGuest {
    pub name: String,
    pub vmm: Vmm,
    pub machine: String,
    pub lifecycle: Lifecycle,
    /// How the guest addresses were laid out.
    pub layout: Layout,
    /// Every device the guest's groups hold, hidden ones included, in guest-address order
    /// (hidden last).
    pub devices: Vec<ResolvedDevice>,
    /// The guest buses that need a `pcie-root-port` (RootPorts layout), ascending.
    pub root_ports: Vec<u8>,
}

impl ResolvedGuest {
    pub fn visible(&self) -> impl Iterator<Item = &ResolvedDevice> {
        self.devices.iter().filter(|d| d.visible)
    }
}

/// Decides every visible device's guest address: the person's choice where given; otherwise
/// each host slot gets the next free guest slot and keeps its function numbers (a GPU and its
/// audio stay one multifunction device), renumbered from 0 when function 0 is hidden.
fn place(guest: &Guest, layout: Layout, room: &Room) -> BTreeMap<PciAddress, GuestAddress> {
    // Addresses the person chose are for the guest's own VMM; another layout places afresh.
    let own = layout == guest.layout();
    let mut out = BTreeMap::new();
    if layout == Layout::Vmm {
        return out;
    }
    let visible: Vec<&DevicePlan> = guest
        .groups
        .iter()
        .flat_map(|p| p.devices.iter())
        .filter(|d| d.visible)
        .collect();
    let mut taken: BTreeSet<(u8, u8)> = room.taken.clone();
    let chosen = |d: &DevicePlan| d.guest_address.filter(|_| own);
    for d in &visible {
        if let Some(a) = chosen(d) {
            out.insert(d.address, a);
            taken.insert(a.slot_key());
        }
    }
    // Host slots, in plan order, of the devices still to place.
    let mut slots: Vec<(PciAddress, Vec<&DevicePlan>)> = Vec::new();
    for d in visible.iter().filter(|d| chosen(d).is_none()) {
        let key = d.address.function0();
        match slots.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(d),
            None => slots.push((key, vec![d])),
        }
    }
    let mut next = match layout {
        Layout::RootPorts => (room.first_port.max(1), 0u8),
        _ => (0u8, FLAT_FIRST_SLOT),
    };
    let mut advance = |taken: &mut BTreeSet<(u8, u8)>| -> Option<(u8, u8)> {
        loop {
            let cur = next;
            let ok = match layout {
                Layout::RootPorts => cur.0 != 0,
                _ => cur.1 < 32,
            };
            if !ok {
                return None;
            }
            next = match layout {
                Layout::RootPorts => (cur.0.wrapping_add(1), 0),
                _ => (0, cur.1 + 1),
            };
            if !taken.contains(&cur) {
                taken.insert(cur);
                return Some(cur);
            }
        }
    };
    for (_, devs) in slots {
        let Some((bus, slot)) = advance(&mut taken) else {
            break; // Out of guest slots: `check` reports the unplaced devices.
        };
        let keep = devs.iter().any(|d| d.address.function == 0);
        for (i, d) in devs.iter().enumerate() {
            let function = if keep { d.address.function } else { i as u8 };
            out.insert(
                d.address,
                GuestAddress {
                    bus,
                    slot,
                    function,
                },
            );
        }
    }
    out
}

/// Resolves one guest of a plan against a host. Devices the host no longer has are left out
/// (and reported by [`check`]).
pub fn resolve(guest: &Guest, host: &Host) -> ResolvedGuest {
    resolve_as(guest, host, guest.layout())
}

/// Resolves a guest for another VMM's layout (exporting a libvirt guest as crosvm arguments,
/// say): the person's own addresses apply only to the guest's own layout.
pub fn resolve_as(guest: &Guest, host: &Host, layout: Layout) -> ResolvedGuest {
    resolve_in(guest, host, layout, &Room::default())
}

/// Guest slots already used by the guest's own devices (read from a libvirt domain), which
/// devices Passage places must avoid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    /// (bus, slot) pairs in use.
    pub taken: BTreeSet<(u8, u8)>,
    /// The first root-port bus (controller index) free for new ports; 0 means 1.
    pub first_port: u8,
}

/// Resolves a guest into a definition that already has devices of its own.
pub fn resolve_in(guest: &Guest, host: &Host, layout: Layout, room: &Room) -> ResolvedGuest {
    let placed = place(guest, layout, room);
    let mut slot_count: BTreeMap<(u8, u8), usize> = BTreeMap::new();
    for a in placed.values() {
        *slot_count.entry(a.slot_key()).or_default() += 1;
    }
    let mut devices: Vec<ResolvedDevice> = guest
        .groups
        .iter()
        .flat_map(|p| p.devices.iter().map(move |d| (p, d)))
        .map(|(p, d)| {
            let hd = host.device(d.address);
            let guest_address = if d.visible {
                placed.get(&d.address).copied()
            } else {
                None
            };
            ResolvedDevice {
                address: d.address,
                group: hd.and_then(|h| h.group).unwrap_or(p.group),
                vendor_id: d.vendor_id,
                device_id: d.device_id,
                subsystem_vendor_id: d.subsystem_vendor_id,
                subsystem_device_id: d.subsystem_device_id,
                class: hd.map(|h| h.class).unwrap_or(ClassCode(0)),
                name: hd
                    .map(|h| h.display_name())
                    .unwrap_or_else(|| format!("{}:{}", d.vendor_id, d.device_id)),
                visible: d.visible,
                multifunction: guest_address.is_some_and(|a| {
                    a.function == 0 && slot_count.get(&a.slot_key()).copied().unwrap_or(0) > 1
                }),
                guest_address,
                rombar: d.rombar,
                x_vga: d.x_vga,
                is_vf: hd.is_some_and(|h| h.physfn.is_some()),
                is_pf: hd.is_some_and(|h| h.capabilities.sriov_total_vfs.unwrap_or(0) > 0),
            }
        })
        .collect();
    devices.sort_by_key(|d| (!d.visible, d.guest_address, d.address));
    let root_ports = if layout == Layout::RootPorts {
        let set: BTreeSet<u8> = devices
            .iter()
            .filter_map(|d| d.guest_address)
            .map(|a| a.bus)
            .filter(|b| *b != 0)
            .collect();
        set.into_iter().collect()
    } else {
        Vec::new()
    };
    ResolvedGuest {
        name: guest.name.clone(),
        vmm: guest.vmm,
        machine: guest.machine.clone(),
        lifecycle: guest.lifecycle,
        layout,
        devices,
        root_ports,
    }
}

/// Every problem with a plan on a host, errors first. An empty list means it can be applied
/// and exported as it is.
pub fn check(plan: &Plan, host: &Host) -> Vec<Problem> {
    let mut out = Vec::new();
    if !host.iommu_enabled() && plan.guests.iter().any(|g| !g.groups.is_empty()) {
        out.push(
            Problem::error("iommu-off", tr("This host has no IOMMU groups (the IOMMU is off), so no group of the plan can be given to a guest."))
                .remedy(tr("Turn on the IOMMU (see “passagectl list”), then check the plan again.")),
        );
    }
    // Where each host group is planned: one guest only, and wholly.
    let mut planned_in: BTreeMap<GroupId, Vec<&str>> = BTreeMap::new();
    let mut seen_device: BTreeMap<PciAddress, &str> = BTreeMap::new();
    for guest in &plan.guests {
        for p in &guest.groups {
            for d in &p.devices {
                if let Some(other) = seen_device.insert(d.address, &guest.name) {
                    out.push(
                        Problem::error(
                            "device-twice",
                            trf(
                                "{device} is in the plan twice (for {a} and for {b}).",
                                &[
                                    ("device", &d.address.to_string()),
                                    ("a", other),
                                    ("b", &guest.name),
                                ],
                            ),
                        )
                        .guest(&guest.name)
                        .device(d.address)
                        .remedy(tr(
                            "Keep it with one guest: a device can only be given to one.",
                        )),
                    );
                }
                check_device(host, guest, p, d, &mut out);
                if let Some(hg) = host.device(d.address).and_then(|hd| hd.group) {
                    let v = planned_in.entry(hg).or_default();
                    if !v.contains(&guest.name.as_str()) {
                        v.push(&guest.name);
                    }
                }
            }
            check_group_whole(host, guest, p, &mut out);
        }
        check_addresses(host, guest, &mut out);
    }
    for (g, guests) in &planned_in {
        if guests.len() > 1 {
            out.push(
                Problem::error("group-split", trf("Group {id} is split between {guests}. The kernel isolates the group as a whole, so all of it must go to one guest.", &[("id", &g.to_string()), ("guests", &guests.join(", "))]))
                    .group(*g)
                    .remedy(tr("Give the whole group to one guest and hide the devices that guest should not see.")),
            );
        }
    }
    out.sort_by_key(|p| p.severity);
    out
}

fn check_device(host: &Host, guest: &Guest, p: &GroupPlan, d: &DevicePlan, out: &mut Vec<Problem>) {
    let Some(hd) = host.device(d.address) else {
        out.push(
            Problem::error("unknown-device", trf("{device} ({ids}) is in the plan for {guest}, but this host has no device at that address.", &[("device", &d.address.to_string()), ("ids", &format!("{}:{}", d.vendor_id, d.device_id)), ("guest", &guest.name)]))
                .guest(&guest.name).group(p.group).device(d.address)
                .remedy(tr("The card may have moved to another slot or bus number: find it in “passagectl list” and assign its group again.")),
        );
        return;
    };
    let planned = format!("{}:{}", d.vendor_id, d.device_id);
    let found = format!("{}:{}", hd.vendor_id, hd.device_id);
    let sub_differs = matches!((d.subsystem_vendor_id, hd.subsystem_vendor_id), (Some(a), Some(b)) if a != b)
        || matches!((d.subsystem_device_id, hd.subsystem_device_id), (Some(a), Some(b)) if a != b);
    if planned != found || sub_differs {
        let sub = |v: Option<Hex16>, dv: Option<Hex16>| match (v, dv) {
            (Some(v), Some(dv)) => format!(" ({v}:{dv})"),
            _ => String::new(),
        };
        out.push(
            Problem::error("ids-changed", trf("{device} was {planned} in the plan but is now {found} ({name}): it is not the same card.", &[
                ("device", &d.address.to_string()),
                ("planned", &(planned.clone() + &sub(d.subsystem_vendor_id, d.subsystem_device_id))),
                ("found", &(found + &sub(hd.subsystem_vendor_id, hd.subsystem_device_id))),
                ("name", &hd.display_name()),
            ]))
            .guest(&guest.name).group(p.group).device(d.address)
            .remedy(tr("Assign the group of the card you mean again; the plan never gives a guest a card it was not made for.")),
        );
    }
    if hd.is_bridge() || hd.is_chipset_glue() {
        out.push(
            Problem::error("not-assignable", trf("{device} ({name}) is a bridge or chipset function; it stays with the host and cannot be given to a guest.", &[("device", &d.address.to_string()), ("name", &hd.display_name())]))
                .guest(&guest.name).device(d.address)
                .remedy(tr("Remove it from the plan; assigning its group gives the guest the devices behind it.")),
        );
    }
    if d.x_vga && !hd.class.is_display() {
        out.push(
            Problem::error("x-vga-not-gpu", trf("{device} is not a display controller; legacy VGA (x-vga) only applies to GPUs.", &[("device", &d.address.to_string())]))
                .guest(&guest.name).device(d.address)
                .remedy(tr("Turn legacy VGA off for this device.")),
        );
    }
    if d.guest_address.is_some() && !guest.vmm.takes_guest_addresses() {
        out.push(
            Problem::warning("address-ignored", trf("{vmm} places devices itself; the guest address chosen for {device} is not used.", &[("vmm", guest.vmm.as_str()), ("device", &d.address.to_string())]))
                .guest(&guest.name).device(d.address),
        );
    }
}

fn check_group_whole(host: &Host, guest: &Guest, p: &GroupPlan, out: &mut Vec<Problem>) {
    let Some(first) = p.devices.iter().find_map(|d| host.device(d.address)) else {
        return;
    };
    let Some(hg) = first.group else {
        return;
    };
    if hg != p.group {
        out.push(
            Problem::warning("group-renumbered", trf("The devices planned as group {old} are in group {new} on this host (group numbers change with the hardware and the kernel).", &[("old", &p.group.to_string()), ("new", &hg.to_string())]))
                .guest(&guest.name).group(hg),
        );
    }
    let planned: BTreeSet<PciAddress> = p.devices.iter().map(|d| d.address).collect();
    for d in &p.devices {
        if let Some(other) = host.device(d.address).and_then(|x| x.group) {
            if other != hg {
                out.push(
                    Problem::error("group-changed", trf("{device} was planned in one group with {first}, but the kernel now puts it in group {other} (the first is in group {group}).", &[("device", &d.address.to_string()), ("first", &first.address.to_string()), ("other", &other.to_string()), ("group", &hg.to_string())]))
                        .guest(&guest.name).group(hg).device(d.address)
                        .remedy(tr("The hardware or the kernel changed the groups: assign the groups again from “passagectl list”.")),
                );
            }
        }
    }
    for m in assignable_members(host, hg) {
        if !planned.contains(&m.address) {
            out.push(
                Problem::error("group-changed", trf("Group {id} now also holds {device} ({name}), which the plan does not know about; it would be taken from the host too.", &[("id", &hg.to_string()), ("device", &m.address.to_string()), ("name", &m.display_name())]))
                    .guest(&guest.name).group(hg).device(m.address)
                    .remedy(tr("Assign the group again so the plan lists every member (hide the new one if the guest should not see it).")),
            );
        }
    }
    if let Some(group) = host.groups.get(&hg) {
        let verdict = explain::group(host, group);
        if verdict.state == State::HostCritical {
            let p = if p.force {
                Problem::warning("host-critical", host_critical_sentence(hg, &verdict))
            } else {
                Problem::error("host-critical", host_critical_sentence(hg, &verdict))
                    .remedy(tr("Leave this group with the host, or force it if the host can do without (the helper then asks for the stronger authorization)."))
            };
            out.push(p.guest(&guest.name).group(hg));
        }
    }
    if p.devices.iter().all(|d| !d.visible) {
        out.push(
            Problem::warning("all-hidden", trf("Every device of group {id} is hidden from {guest}: the host loses them and the guest sees none.", &[("id", &hg.to_string()), ("guest", &guest.name)]))
                .guest(&guest.name).group(hg)
                .remedy(tr("Show at least one device, or take the group out of the plan.")),
        );
    }
}

fn check_addresses(host: &Host, guest: &Guest, out: &mut Vec<Problem>) {
    let layout = guest.layout();
    if layout == Layout::Vmm {
        return;
    }
    let r = resolve(guest, host);
    let mut at: BTreeMap<GuestAddress, PciAddress> = BTreeMap::new();
    let mut slots: BTreeMap<(u8, u8), Vec<&ResolvedDevice>> = BTreeMap::new();
    for d in r.visible() {
        let Some(a) = d.guest_address else {
            out.push(
                Problem::error("no-guest-slot", trf("There is no free guest slot left for {device} in {guest}.", &[("device", &d.address.to_string()), ("guest", &guest.name)]))
                    .guest(&guest.name).device(d.address)
                    .remedy(tr("Hide devices the guest does not need, or choose addresses that share slots (functions of one card).")),
            );
            continue;
        };
        if let Some(other) = at.insert(a, d.address) {
            out.push(
                Problem::error(
                    "address-clash",
                    trf(
                        "{a} and {b} are both at guest address {at} in {guest}.",
                        &[
                            ("a", &other.to_string()),
                            ("b", &d.address.to_string()),
                            ("at", &a.to_string()),
                            ("guest", &guest.name),
                        ],
                    ),
                )
                .guest(&guest.name)
                .device(d.address)
                .remedy(tr(
                    "Give one of them another guest address, or clear it to let Passage choose.",
                )),
            );
        }
        slots.entry(a.slot_key()).or_default().push(d);
        match layout {
            Layout::RootPorts if a.bus == 0 => out.push(
                Problem::error("root-bus-slot", trf("Guest address {at} of {device} is on the q35 root bus, where devices cannot be hot-plugged and slots belong to the machine.", &[("at", &a.to_string()), ("device", &d.address.to_string())]))
                    .guest(&guest.name).device(d.address)
                    .remedy(tr("Use a bus of 1 or more (each gets its own PCIe root port), slot 0.")),
            ),
            Layout::RootPorts if a.slot != 0 => out.push(
                Problem::error("port-slot", trf("Guest address {at} of {device} uses slot {slot} behind a PCIe root port, which has only slot 0.", &[("at", &a.to_string()), ("device", &d.address.to_string()), ("slot", &a.slot.to_string())]))
                    .guest(&guest.name).device(d.address)
                    .remedy(tr("Use slot 00 (the bus number chooses the port).")),
            ),
            Layout::Flat if a.bus != 0 => out.push(
                Problem::error("flat-bus", trf("Guest address {at} of {device} names bus {bus}, but this guest has one PCI bus (0).", &[("at", &a.to_string()), ("device", &d.address.to_string()), ("bus", &a.bus.to_string())]))
                    .guest(&guest.name).device(d.address)
                    .remedy(tr("Use bus 00 and a free slot.")),
            ),
            Layout::Flat if a.slot < 3 => out.push(
                Problem::error("machine-slot", trf("Guest slot {slot} holds the machine's own devices; {device} cannot go there.", &[("slot", &format!("{:02x}", a.slot)), ("device", &d.address.to_string())]))
                    .guest(&guest.name).device(d.address)
                    .remedy(tr("Use slot 03 or above (Passage chooses from 10).")),
            ),
            _ => {}
        }
    }
    for ((bus, slot), devs) in &slots {
        if devs.len() > 1
            && !devs
                .iter()
                .any(|d| d.guest_address.is_some_and(|a| a.function == 0))
        {
            let list: Vec<String> = devs.iter().map(|d| d.address.to_string()).collect();
            out.push(
                Problem::error("no-function0", trf("Guest slot {bus}:{slot} holds {devices} but nothing at function 0; the guest would not find them.", &[("bus", &format!("{bus:02x}")), ("slot", &format!("{slot:02x}")), ("devices", &list.join(", "))]))
                    .guest(&guest.name)
                    .remedy(tr("Put one of them at function 0.")),
            );
        } else if devs.len() == 1 && devs[0].guest_address.is_some_and(|a| a.function != 0) {
            out.push(
                Problem::error("no-function0", trf("{device} is alone at guest address {at}; a slot without function 0 is invisible to the guest.", &[("device", &devs[0].address.to_string()), ("at", &devs[0].guest_address.map(|a| a.to_string()).unwrap_or_default())]))
                    .guest(&guest.name).device(devs[0].address)
                    .remedy(tr("Use function 0.")),
            );
        }
    }
    // Functions of one host card are expected together, with the same function numbers.
    let mut by_card: BTreeMap<PciAddress, Vec<&ResolvedDevice>> = BTreeMap::new();
    for d in r.visible() {
        by_card.entry(d.address.function0()).or_default().push(d);
    }
    for (card, devs) in by_card {
        let slots: BTreeSet<(u8, u8)> = devs
            .iter()
            .filter_map(|d| d.guest_address.map(GuestAddress::slot_key))
            .collect();
        if devs.len() > 1 && slots.len() > 1 {
            out.push(
                Problem::warning("functions-apart", trf("The functions of the card at {card} are at different guest slots; some guest drivers (GPU audio, for one) expect them together as on the host.", &[("card", &card.to_string())]))
                    .guest(&guest.name).device(card)
                    .remedy(tr("Clear their guest addresses to let Passage keep them in one slot.")),
            );
        }
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
