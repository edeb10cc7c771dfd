//! [`check`]: every problem with a plan on a host, as [`Problem`]s with stable codes
//! (docs/JSON.md), sentences and remedies.

use super::edit::assignable_members;
use super::resolve::{resolve, ResolvedDevice};
use super::types::{DevicePlan, GroupPlan, Guest, GuestAddress, Layout, Plan};
use crate::address::{GroupId, PciAddress};
use crate::explain::{self, State};
use crate::i18n::{tr, trf};
use crate::model::{Hex16, Host};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    pub(super) fn warning(code: &str, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }
    pub(super) fn guest(mut self, g: &str) -> Self {
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
    pub(super) fn remedy(mut self, r: String) -> Self {
        self.remedy = Some(r);
        self
    }
}

pub(super) fn host_critical_sentence(g: GroupId, v: &explain::GroupVerdict) -> String {
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
    // Planned groups whose cards are elsewhere now, for the remedies of their problems.
    let drifted = super::remap::drift(plan, host);
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
                check_device(host, guest, p, d, &drifted, &mut out);
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

fn check_device(
    host: &Host,
    guest: &Guest,
    p: &GroupPlan,
    d: &DevicePlan,
    drifted: &[super::remap::Drift],
    out: &mut Vec<Problem>,
) {
    let Some(hd) = host.device(d.address) else {
        out.push(
            Problem::error("unknown-device", trf("{device} ({ids}) is in the plan for {guest}, but this host has no device at that address.", &[("device", &d.address.to_string()), ("ids", &format!("{}:{}", d.vendor_id, d.device_id)), ("guest", &guest.name)]))
                .guest(&guest.name).group(p.group).device(d.address)
                .remedy(tr("The card may have moved to another slot or bus number: find it in “passagectl list” and assign its group again.")),
        );
        if let Some(last) = out.pop() {
            out.push(super::remap::with_remedy(last, drifted, p.group));
        }
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
        if let Some(last) = out.pop() {
            out.push(super::remap::with_remedy(last, drifted, p.group));
        }
    }
    if let (Some(planned), Some(found)) = (d.serial_number, hd.capabilities.serial_number) {
        if planned != found && hd.vendor_id == d.vendor_id && hd.device_id == d.device_id {
            out.push(
                Problem::error("serial-changed", trf("{device} is another card of the same model than the plan's: serial number {found}, the plan has {planned} (identical cards swapped slots, or one was replaced).", &[
                    ("device", &d.address.to_string()),
                    ("found", &found.to_string()),
                    ("planned", &planned.to_string()),
                ]))
                .guest(&guest.name).group(p.group).device(d.address)
                .remedy(tr("Assign the group of the card you mean again; the plan never gives a guest a card it was not made for.")),
            );
            if let Some(last) = out.pop() {
                out.push(super::remap::with_remedy(last, drifted, p.group));
            }
        }
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
