//! Guest addresses resolved: every visible device placed in a guest slot (one host card, one
//! guest slot), for the guest's own layout or another VMM's.

use super::types::{DevicePlan, Guest, GuestAddress, Layout, Lifecycle, Vmm, FLAT_FIRST_SLOT};
use crate::address::{GroupId, PciAddress};
use crate::model::{ClassCode, Hex16, Host};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
/// (and reported by [`check`](fn@super::check)).
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
