//! What the app shows, as plain values: group cards arranged under the port they sit behind,
//! their devices as the plan will give them, filters, the "Why?" story, and the result of a
//! drop. No GTK here, so every decision the window makes is tested without a display
//! (tests/view.rs); the relm4 components in `src/gui/` only draw these values and turn
//! gestures into the calls below.

use crate::address::{GroupId, PciAddress};
use crate::explain::{self, GroupVerdict, Reason, Severity, State};
use crate::i18n::{tr, trf};
use crate::model::{Device, Host};
use crate::plan::{self, GuestAddress, Plan, PlanError, Problem};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kind of device, for icons and the class filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Gpu,
    Network,
    Storage,
    Usb,
    Audio,
    Bridge,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Gpu,
        Kind::Network,
        Kind::Storage,
        Kind::Usb,
        Kind::Audio,
        Kind::Bridge,
        Kind::Other,
    ];

    pub fn of(d: &Device) -> Self {
        match (d.class.base(), d.class.sub()) {
            (0x03, _) => Kind::Gpu,
            (0x02, _) => Kind::Network,
            (0x01, _) => Kind::Storage,
            (0x0c, 0x03) => Kind::Usb,
            (0x04, _) => Kind::Audio,
            (0x06, _) => Kind::Bridge,
            _ => Kind::Other,
        }
    }

    /// The symbolic icon the app uses: Passage's own class icons (assets/icons/classes/, in the
    /// app's GResource), drawn for these seven kinds so they read the same on every theme.
    pub fn icon(self) -> &'static str {
        match self {
            Kind::Gpu => "passage-gpu-symbolic",
            Kind::Network => "passage-network-symbolic",
            Kind::Storage => "passage-storage-symbolic",
            Kind::Usb => "passage-usb-symbolic",
            Kind::Audio => "passage-audio-symbolic",
            Kind::Bridge => "passage-bridge-symbolic",
            Kind::Other => "passage-other-symbolic",
        }
    }

    pub fn label(self) -> String {
        match self {
            Kind::Gpu => tr("Graphics"),
            Kind::Network => tr("Network"),
            Kind::Storage => tr("Storage"),
            Kind::Usb => tr("USB"),
            Kind::Audio => tr("Audio"),
            Kind::Bridge => tr("Bridges"),
            Kind::Other => tr("Other"),
        }
    }
}

/// One device row of an expanded card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub address: PciAddress,
    pub name: String,
    pub kind: Kind,
    pub driver: Option<String>,
    /// `None` when the group is not in the plan (nothing to toggle); bridges are never listed
    /// as togglable.
    pub visible: Option<bool>,
    pub assignable: bool,
    /// Where the guest will see it (resolved), when planned and visible.
    pub guest_address: Option<GuestAddress>,
    /// The address the person typed (`None`: Passage places it).
    pub chosen_address: Option<GuestAddress>,
}

/// A group card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub group: GroupId,
    pub title: String,
    pub state: State,
    /// What the badge says: the state, or "pending → guest" while a plan holds it unapplied.
    pub badge: String,
    pub assignable: bool,
    /// The guest this plan gives the group to.
    pub planned_for: Option<String>,
    /// The guest that holds it on the host now (a libvirt definition's hostdevs).
    pub held_by: Option<String>,
    /// The plan gives it to a guest and Apply has not carried that out yet.
    pub pending: bool,
    pub devices: Vec<DeviceRow>,
    /// The worst reason's sentence, for the card's subtitle.
    pub headline: Option<String>,
    pub kinds: Vec<Kind>,
    /// Lowercase text the search box matches.
    pub haystack: String,
}

/// Cards under one port (or the root complex): GTK 4.8 lists have no sections, so the app
/// shows a header row per section. Cards are shared (`Arc`): a filtered view and the app's
/// list rows point at the same cards instead of copying ten thousand of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub cards: Vec<Arc<Card>>,
}

/// One section's groups, in order, before any card is made: what the app lists at once
/// (each card is made when its row is first drawn, or when a filter needs them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub title: String,
    pub groups: Vec<GroupId>,
}

/// Every group under its section's title, in the order [`sections`] gives them: from the
/// groups' members alone, no verdict made.
pub fn outline(host: &Host) -> Vec<Outline> {
    let mut by: BTreeMap<(u8, Option<PciAddress>), Vec<GroupId>> = BTreeMap::new();
    for g in host.groups.values() {
        by.entry(section_key(host, &g.devices))
            .or_default()
            .push(g.id);
    }
    by.into_iter()
        .map(|(k, groups)| Outline {
            title: section_title(host, &k),
            groups,
        })
        .collect()
}

/// The title of the section a group is listed under (as [`outline`] gives it).
pub fn section_title_of(host: &Host, g: GroupId) -> String {
    let devices = host
        .groups
        .get(&g)
        .map(|grp| grp.devices.as_slice())
        .unwrap_or_default();
    section_title(host, &section_key(host, devices))
}

/// Whether a group has anything a guest could use (what its card's `assignable` says),
/// without its verdict: the list's default filter asks this of every group.
pub fn assignable(host: &Host, g: GroupId) -> bool {
    host.groups
        .get(&g)
        .is_some_and(|grp| host.members(grp).any(|d| d.is_for_a_guest()))
}

/// Where a group sits: the root port (or switch port) above its first usable device.
fn section_key(host: &Host, devices: &[PciAddress]) -> (u8, Option<PciAddress>) {
    let members: Vec<&Device> = devices.iter().filter_map(|a| host.device(*a)).collect();
    let first = members
        .iter()
        .find(|d| d.is_for_a_guest())
        .or(members.first());
    match first {
        // The port closest to the root bus: what a person calls "the slot".
        Some(d) => match d.bridges.last() {
            Some(port) => (1, Some(*port)),
            None if d.is_bridge() => (1, Some(d.address)),
            None => (0, None),
        },
        None => (2, None),
    }
}

fn section_title(host: &Host, key: &(u8, Option<PciAddress>)) -> String {
    match key {
        (_, Some(port)) => {
            let name = host
                .device(*port)
                .map(|d| d.display_name())
                .unwrap_or_default();
            trf(
                "Behind {port} · {name}",
                &[("port", &port.to_string()), ("name", &name)],
            )
        }
        (0, None) => tr("On the root complex"),
        _ => tr("Elsewhere"),
    }
}

/// Groups held by guests on the host, from their definitions: group → guest.
pub type Holders = BTreeMap<GroupId, String>;

/// Every card, in sections, as the plan stands.
pub fn sections(host: &Host, plan: &Plan, holders: &Holders) -> Vec<Section> {
    let mut made = cards(host, plan, holders);
    outline(host)
        .into_iter()
        .map(|o| Section {
            title: o.title,
            cards: o.groups.iter().filter_map(|g| made.remove(g)).collect(),
        })
        .collect()
}

/// Every group's card, by group, as the plan stands: made on every core (a 10,000-function
/// host has 10,000 of them).
pub fn cards(host: &Host, plan: &Plan, holders: &Holders) -> BTreeMap<GroupId, Arc<Card>> {
    let verdicts = explain::groups(host);
    let resolved: BTreeMap<&str, plan::ResolvedGuest> = plan
        .guests
        .iter()
        .map(|g| (g.name.as_str(), plan::resolve(g, host)))
        .collect();
    use rayon::prelude::*;
    let made: Vec<Arc<Card>> = verdicts
        .par_iter()
        .map(|v| Arc::new(card(host, plan, &resolved, holders, v)))
        .collect();
    made.into_iter().map(|c| (c.group, c)).collect()
}

/// One group's card as [`sections`] would draw it: what a device event redraws, without
/// recomputing every other group.
pub fn card_of(host: &Host, plan: &Plan, holders: &Holders, g: GroupId) -> Option<Card> {
    let group = host.groups.get(&g)?;
    let v = explain::group(host, group);
    let resolved: BTreeMap<&str, plan::ResolvedGuest> = plan
        .holder(g)
        .map(|guest| (guest.name.as_str(), plan::resolve(guest, host)))
        .into_iter()
        .collect();
    Some(card(host, plan, &resolved, holders, &v))
}

fn card(
    host: &Host,
    plan: &Plan,
    resolved: &BTreeMap<&str, plan::ResolvedGuest>,
    holders: &Holders,
    v: &GroupVerdict,
) -> Card {
    let guest = plan.holder(v.id);
    let gp = guest.and_then(|g| g.groups.iter().find(|p| p.group == v.id));
    let r = guest.and_then(|g| resolved.get(g.name.as_str()));
    let devices: Vec<DeviceRow> = v
        .devices
        .iter()
        .filter_map(|a| host.device(*a))
        .map(|d| {
            let dp = gp.and_then(|p| p.devices.iter().find(|x| x.address == d.address));
            DeviceRow {
                address: d.address,
                name: d.display_name(),
                kind: Kind::of(d),
                driver: d.driver.clone(),
                visible: dp.map(|x| x.visible),
                assignable: d.is_for_a_guest(),
                guest_address: r
                    .and_then(|r| r.devices.iter().find(|x| x.address == d.address))
                    .and_then(|x| x.guest_address),
                chosen_address: dp.and_then(|x| x.guest_address),
            }
        })
        .collect();
    let planned_for = guest.map(|g| g.name.clone());
    let held_by = holders.get(&v.id).cloned();
    // Applied: the guest it is planned for holds it, or nobody else does and it is on
    // vfio-pci already (a kept guest's claim; a plain QEMU has no definition to hold it).
    let pending = planned_for.is_some()
        && held_by != planned_for
        && !(held_by.is_none() && v.state == State::Assigned);
    let badge = match (&planned_for, &held_by) {
        (Some(p), _) if pending => trf("pending → {guest}", &[("guest", p)]),
        (Some(p), _) => trf("assigned → {guest}", &[("guest", p)]),
        (None, Some(h)) => trf("assigned → {guest}", &[("guest", h)]),
        _ => v.state.label(),
    };
    let headline = v
        .reasons
        .iter()
        .min_by_key(|r| r.severity)
        .filter(|r| r.severity != Severity::Info)
        .map(|r| r.message.clone());
    let mut kinds: Vec<Kind> = devices.iter().map(|d| d.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut haystack = format!("{} {} ", v.id, v.title);
    for d in &devices {
        haystack.push_str(&format!(
            "{} {} {} ",
            d.address,
            d.name,
            d.driver.as_deref().unwrap_or("")
        ));
    }
    Card {
        group: v.id,
        title: v.title.clone(),
        state: v.state,
        badge,
        assignable: v.assignable,
        planned_for,
        held_by,
        pending,
        devices,
        headline,
        kinds,
        haystack: haystack.to_lowercase(),
    }
}

/// What the search box and the filter menus ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub text: String,
    pub kind: Option<Kind>,
    pub state: Option<State>,
    /// Hide groups with nothing a guest could use (bridges, chipset glue).
    pub assignable_only: bool,
}

impl Filter {
    /// Whether this filter asks anything of a group that only its card knows (words, a kind,
    /// a state); "assignable only" alone does not (see [`assignable`]).
    pub fn needs_cards(&self) -> bool {
        !self.text.trim().is_empty() || self.kind.is_some() || self.state.is_some()
    }

    pub fn matches(&self, c: &Card) -> bool {
        let words_ok = self
            .text
            .to_lowercase()
            .split_whitespace()
            .all(|w| c.haystack.contains(w));
        words_ok
            && self.kind.is_none_or(|k| c.kinds.contains(&k))
            && self.state.is_none_or(|s| c.state == s)
            && (!self.assignable_only || c.assignable)
    }
}

/// The filtered sections (empty sections dropped).
pub fn filtered(sections: &[Section], f: &Filter) -> Vec<Section> {
    sections
        .iter()
        .filter_map(|s| {
            let cards: Vec<Arc<Card>> = s.cards.iter().filter(|c| f.matches(c)).cloned().collect();
            (!cards.is_empty()).then(|| Section {
                title: s.title.clone(),
                cards,
            })
        })
        .collect()
}

/// "Why?" for a group: what stands in the way, why it has its shape, what the host loses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    pub title: String,
    pub state: State,
    /// Blockers and warnings, worst first.
    pub in_the_way: Vec<Reason>,
    /// Why these devices are together (the shape reasons).
    pub shape: Vec<Reason>,
    /// Everything else worth knowing.
    pub notes: Vec<Reason>,
    /// "The host loses": each member the host uses now, with its driver.
    pub host_loses: Vec<String>,
}

pub fn why(host: &Host, g: GroupId) -> Option<Why> {
    let group = host.groups.get(&g)?;
    let v = explain::group(host, group);
    let (shape, rest): (Vec<Reason>, Vec<Reason>) = v
        .reasons
        .iter()
        .cloned()
        .partition(|r| r.code.starts_with("shape-"));
    let (mut in_the_way, notes): (Vec<Reason>, Vec<Reason>) =
        rest.into_iter().partition(|r| r.severity != Severity::Info);
    in_the_way.sort_by_key(|r| r.severity);
    let host_loses = host
        .members(group)
        .filter(|d| d.is_for_a_guest() && !d.driver_is_harmless())
        .map(|d| {
            format!(
                "{} {} ({})",
                d.address,
                d.display_name(),
                d.driver.as_deref().unwrap_or("-")
            )
        })
        .collect();
    Some(Why {
        title: v.title,
        state: v.state,
        in_the_way,
        shape,
        notes,
        host_loses,
    })
}

/// A group dropped on a guest: the plan changes, or the reason it does not, for the drop.
pub fn drop_on(
    plan: &mut Plan,
    host: &Host,
    g: GroupId,
    guest: &str,
) -> Result<Vec<Problem>, PlanError> {
    plan.try_edit(host, |p| p.assign(host, g, guest, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_an_icon_and_a_label() {
        // Symbolic icons recolour with the theme; a full-colour one would not.
        // Each is drawn in assets/icons/classes and compiled into the app's GResource.
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let resources =
            std::fs::read_to_string(dir.join("ui/io.github.passage.Passage.gresource.xml"))
                .unwrap();
        for k in Kind::ALL {
            assert!(k.icon().ends_with("-symbolic"));
            assert!(!k.label().is_empty());
            let file = format!("icons/classes/{}.svg", k.icon());
            assert!(dir.join("assets").join(&file).is_file(), "{file} missing");
            assert!(
                resources.contains(&format!(
                    "alias=\"icons/scalable/actions/{}.svg\">{file}<",
                    k.icon()
                )),
                "{file} is not in the GResource"
            );
        }
    }
}
