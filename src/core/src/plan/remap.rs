//! Identity drift: a planned group whose cards are no longer at their addresses (moved to
//! another slot, a bus renumbered by a new card, a BIOS update) is found again by what the
//! plan remembers of each card — vendor, device and subsystem ids, function by function — and
//! moved there whole, with every per-device choice (visibility, guest address, ROM BAR, x-vga).
//!
//! Only a group the host has exactly once is moved: two identical cards (twins) are
//! indistinguishable by their ids, and the plan never guesses which one a guest meant.

use super::check::Problem;
use super::edit::assignable_members;
use super::types::{DevicePlan, GroupPlan, Plan, PlanError};
use crate::address::{GroupId, PciAddress};
use crate::i18n::trf;
use crate::model::{Device, Hex16, Host};

/// What is found for one planned group whose cards are not where the plan has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The same cards, once on this host: where they are now.
    Moved(Remap),
    /// The same cards more than once (identical twins): which group is meant cannot be told.
    Ambiguous {
        guest: String,
        group: GroupId,
        candidates: Vec<GroupId>,
    },
    /// No group of this host holds those cards.
    Missing { guest: String, group: GroupId },
}

/// A planned group moved to where its cards are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    pub guest: String,
    pub from: GroupId,
    pub to: GroupId,
    /// Each planned device's address, then and now.
    pub moves: Vec<(PciAddress, PciAddress)>,
}

/// What identifies a card's function to the plan: its ids and its function number.
type Identity = (u8, Hex16, Hex16, Option<Hex16>, Option<Hex16>);

fn planned_identity(d: &DevicePlan) -> Identity {
    (
        d.address.function,
        d.vendor_id,
        d.device_id,
        d.subsystem_vendor_id,
        d.subsystem_device_id,
    )
}

fn host_identity(d: &Device) -> Identity {
    (
        d.address.function,
        d.vendor_id,
        d.device_id,
        d.subsystem_vendor_id,
        d.subsystem_device_id,
    )
}

/// Whether a host device is the planned one: the same ids and function, and the same serial
/// number where both are known (two identical cards differ only there).
fn same_card(d: &DevicePlan, h: &Device) -> bool {
    host_identity(h) == planned_identity(d)
        && match (d.serial_number, h.capabilities.serial_number) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// Whether the host still has each of the group's devices where the plan has it, as planned.
fn in_place(host: &Host, p: &GroupPlan) -> bool {
    p.devices
        .iter()
        .all(|d| host.device(d.address).is_some_and(|h| same_card(d, h)))
}

/// The host groups whose cards the plan has where they are: taken, whatever number the plan
/// gives them (the kernel may have renumbered a group whose cards did not move).
fn held_groups(plan: &Plan, host: &Host) -> Vec<GroupId> {
    plan.guests
        .iter()
        .flat_map(|g| &g.groups)
        .filter(|p| in_place(host, p))
        .flat_map(|p| &p.devices)
        .filter_map(|d| host.device(d.address).and_then(|h| h.group))
        .collect()
}

/// The order two functions of a group are paired in: function, ids, serial number, address —
/// so two identical functions pair by serial number where it is known.
type Key = (Identity, Option<crate::config::SerialNumber>, PciAddress);

/// Every planned group whose cards are not where the plan has them, and what is found for it.
pub fn drift(plan: &Plan, host: &Host) -> Vec<Drift> {
    let held = held_groups(plan, host);
    let mut out = Vec::new();
    for guest in &plan.guests {
        for p in guest.groups.iter().filter(|p| !in_place(host, p)) {
            let mut want: Vec<(Key, &DevicePlan)> = p
                .devices
                .iter()
                .map(|d| ((planned_identity(d), d.serial_number, d.address), d))
                .collect();
            want.sort_by_key(|w| w.0);
            let candidates: Vec<(GroupId, Vec<PciAddress>)> = host
                .groups
                .keys()
                .filter(|g| !held.contains(g))
                .filter_map(|&g| {
                    let mut have: Vec<(Key, &Device)> = assignable_members(host, g)
                        .into_iter()
                        .map(|d| {
                            (
                                (host_identity(d), d.capabilities.serial_number, d.address),
                                d,
                            )
                        })
                        .collect();
                    have.sort_by_key(|h| h.0);
                    let one_slot = |a: &[PciAddress]| a.windows(2).all(|w| w[0].same_slot(w[1]));
                    let have_at: Vec<PciAddress> = have.iter().map(|h| h.1.address).collect();
                    let want_at: Vec<PciAddress> = want.iter().map(|w| w.1.address).collect();
                    let same = have.len() == want.len()
                        && have.iter().zip(&want).all(|(h, w)| same_card(w.1, h.1))
                        // A card's functions stay one card: one slot on the host too.
                        && one_slot(&have_at) == one_slot(&want_at);
                    same.then_some((g, have_at))
                })
                .collect();
            out.push(match candidates.as_slice() {
                [(to, now)] => Drift::Moved(Remap {
                    guest: guest.name.clone(),
                    from: p.group,
                    to: *to,
                    moves: want
                        .iter()
                        .map(|w| w.1.address)
                        .zip(now.iter().copied())
                        .collect(),
                }),
                [] => Drift::Missing {
                    guest: guest.name.clone(),
                    group: p.group,
                },
                many => Drift::Ambiguous {
                    guest: guest.name.clone(),
                    group: p.group,
                    candidates: many.iter().map(|c| c.0).collect(),
                },
            });
        }
    }
    // Two planned groups found at one host group (identical twins, one of them gone): which
    // one it is cannot be told, so neither is moved.
    let targets: Vec<GroupId> = out
        .iter()
        .filter_map(|d| match d {
            Drift::Moved(r) => Some(r.to),
            _ => None,
        })
        .collect();
    for d in &mut out {
        if let Drift::Moved(r) = d {
            let to = r.to;
            if targets.iter().filter(|t| **t == to).count() > 1 {
                *d = Drift::Ambiguous {
                    guest: r.guest.clone(),
                    group: r.from,
                    candidates: vec![to],
                };
            }
        }
    }
    out
}

impl Drift {
    /// In words, for the CLI and the app.
    pub fn describe(&self) -> String {
        let list = |v: &[GroupId]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Drift::Moved(r) => trf(
                "{guest}: the cards of group {from} are now group {to} ({moves}).",
                &[
                    ("guest", &r.guest),
                    ("from", &r.from.to_string()),
                    ("to", &r.to.to_string()),
                    (
                        "moves",
                        &r.moves
                            .iter()
                            .map(|(a, b)| format!("{a} → {b}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                ],
            ),
            Drift::Ambiguous {
                guest,
                group,
                candidates,
            } => trf(
                "{guest}: the cards of group {group} are on this host {n} times (groups {groups}); identical cards cannot be told apart by their ids, so assign the group you mean.",
                &[
                    ("guest", guest),
                    ("group", &group.to_string()),
                    ("n", &candidates.len().to_string()),
                    ("groups", &list(candidates)),
                ],
            ),
            Drift::Missing { guest, group } => trf(
                "{guest}: no group of this host holds the cards of group {group}; they were removed or replaced.",
                &[("guest", guest), ("group", &group.to_string())],
            ),
        }
    }
}

impl Plan {
    /// Moves a planned group to where its cards are now ([`drift`]): the group number and each
    /// device's address change, everything chosen for each device stays. Refused, with nothing
    /// changed, when the plan no longer has that group for that guest or the target group is
    /// planned already.
    pub fn remap(&mut self, r: &Remap) -> Result<(), PlanError> {
        self.remap_all(std::slice::from_ref(r))
    }

    /// Every remap of [`drift`] at once (a renumbering can shift or swap planned groups'
    /// numbers): all of them or, refused, none. Each planned group is found first, in the plan
    /// as it is, then all are changed: a group moved by one remap is never taken for another's.
    pub fn remap_all(&mut self, rs: &[Remap]) -> Result<(), PlanError> {
        let refused = |g: GroupId| {
            PlanError::Refused(trf(
                "group {group} is in the plan already",
                &[("group", &g.to_string())],
            ))
        };
        // Where each remap's group is: (guest, group) indexes in the plan as it is.
        let mut at: Vec<(usize, usize)> = Vec::with_capacity(rs.len());
        for r in rs {
            let gi = self
                .guests
                .iter()
                .position(|g| g.name == r.guest)
                .ok_or_else(|| PlanError::NoGuest(r.guest.chars().take(40).collect()))?;
            let pi = self.guests[gi]
                .groups
                .iter()
                .position(|p| {
                    p.group == r.from
                        && p.devices
                            .iter()
                            .all(|d| r.moves.iter().any(|(then, _)| *then == d.address))
                })
                .ok_or(PlanError::GroupNotPlanned(r.from))?;
            if at.contains(&(gi, pi)) {
                return Err(PlanError::GroupNotPlanned(r.from));
            }
            at.push((gi, pi));
        }
        // No two remaps to one group, and none onto cards a group that stays holds.
        let mut targets = std::collections::BTreeSet::new();
        let staying: Vec<PciAddress> = self
            .guests
            .iter()
            .enumerate()
            .flat_map(|(gi, g)| g.groups.iter().enumerate().map(move |(pi, p)| (gi, pi, p)))
            .filter(|(gi, pi, _)| !at.contains(&(*gi, *pi)))
            .flat_map(|(_, _, p)| p.devices.iter().map(|d| d.address))
            .collect();
        for r in rs {
            if !targets.insert(r.to) || r.moves.iter().any(|(_, now)| staying.contains(now)) {
                return Err(refused(r.to));
            }
        }
        // Every group moved first, then all written: a refusal changes nothing.
        let mut moved = Vec::with_capacity(rs.len());
        for (r, (gi, pi)) in rs.iter().zip(&at) {
            let mut p = self.guests[*gi].groups[*pi].clone();
            for d in &mut p.devices {
                let (_, now) = r
                    .moves
                    .iter()
                    .find(|(then, _)| *then == d.address)
                    .ok_or(PlanError::GroupNotPlanned(r.from))?;
                d.address = *now;
            }
            p.group = r.to;
            moved.push(p);
        }
        for (p, (gi, pi)) in moved.into_iter().zip(&at) {
            self.guests[*gi].groups[*pi] = p;
        }
        Ok(())
    }
}

/// The remedy the plan's problems give for a card that is not where the plan has it.
pub(super) fn remedy_for(plan_drift: &[Drift], group: GroupId) -> Option<String> {
    plan_drift.iter().find_map(|d| match d {
        Drift::Moved(r) if r.from == group => Some(trf(
            "The same cards are now group {to}: “passagectl plan remap” moves the plan there, keeping every choice made for them.",
            &[("to", &r.to.to_string())],
        )),
        _ => None,
    })
}

/// Problems get [`remedy_for`]'s remedy where it applies.
pub(super) fn with_remedy(p: Problem, plan_drift: &[Drift], group: GroupId) -> Problem {
    match remedy_for(plan_drift, group) {
        Some(r) => p.remedy(r),
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> (Plan, Host, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        crate::synth::MachineSpec::from_json(crate::demo::DEMO_HOST)
            .unwrap()
            .write_tree(dir.path())
            .unwrap();
        let host = crate::scan::scan(&crate::HostRoot::open(dir.path()).unwrap()).unwrap();
        (crate::demo::plan().unwrap(), host, dir)
    }

    /// The plan as it would have been made with the GPU at bus 0e and in group 30.
    fn moved_gpu(plan: &mut Plan) {
        let p = plan.guests[0]
            .groups
            .iter_mut()
            .find(|p| p.group == GroupId(19))
            .unwrap();
        p.group = GroupId(30);
        for d in &mut p.devices {
            d.address.bus = 0x0e;
        }
        p.devices[0].guest_address = Some("05:00.0".parse().unwrap());
    }

    #[test]
    fn a_gpu_that_moved_is_found_by_its_ids_and_the_plan_follows_it_whole() {
        let (mut plan, host, _d) = demo();
        assert!(drift(&plan, &host).is_empty());
        moved_gpu(&mut plan);
        let found = drift(&plan, &host);
        let [Drift::Moved(r)] = found.as_slice() else {
            panic!("{found:?}")
        };
        assert_eq!((r.from, r.to), (GroupId(30), GroupId(19)));
        assert!(found[0].describe().contains("0000:0e:00.1 → 0000:0b:00.1"));
        let codes: Vec<String> = super::super::check(&plan, &host)
            .iter()
            .filter(|p| p.code == "unknown-device" || p.code == "ids-changed")
            .map(|p| p.remedy.clone().unwrap_or_default())
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|r| r.contains("plan remap")),
            "{codes:?}"
        );
        plan.remap(r).unwrap();
        assert!(drift(&plan, &host).is_empty());
        let p = plan.guest("win11").unwrap();
        let g = p.groups.iter().find(|p| p.group == GroupId(19)).unwrap();
        assert_eq!(g.devices[0].address.to_string(), "0000:0b:00.0");
        assert_eq!(
            g.devices[0].guest_address,
            Some("05:00.0".parse().unwrap()),
            "the choices made for the card stay"
        );
        assert!(super::super::check(&plan, &host)
            .iter()
            .all(|p| p.code != "unknown-device" && p.code != "ids-changed"));
        // Applied twice: refused, nothing changed.
        let before = plan.clone();
        assert!(plan.remap(r).is_err());
        assert_eq!(plan, before);
    }

    #[test]
    fn twins_are_not_guessed_and_a_card_that_is_gone_is_said() {
        let (mut plan, mut host, _d) = demo();
        moved_gpu(&mut plan);
        // A second GPU with the same ids in a group of its own: which one was meant is unknown.
        let mut twin: Vec<Device> = host
            .devices
            .values()
            .filter(|d| d.address.bus == 0x0b)
            .cloned()
            .collect();
        for d in &mut twin {
            d.address.bus = 0x0f;
            d.group = Some(GroupId(40));
        }
        host.groups.insert(
            GroupId(40),
            crate::model::Group {
                id: GroupId(40),
                devices: twin.iter().map(|d| d.address).collect(),
                other_members: Vec::new(),
                kind: None,
            },
        );
        for d in twin {
            host.devices.insert(d.address, d);
        }
        let found = drift(&plan, &host);
        assert!(
            matches!(found.as_slice(), [Drift::Ambiguous { candidates, .. }] if candidates == &[GroupId(19), GroupId(40)]),
            "{found:?}"
        );
        // No such cards at all.
        for p in &mut plan.guests[0].groups {
            for d in &mut p.devices {
                d.device_id = Hex16(0xdead);
            }
        }
        let gone = drift(&plan, &host);
        assert!(
            !gone.is_empty() && gone.iter().all(|d| matches!(d, Drift::Missing { .. })),
            "{gone:?}"
        );
    }

    #[test]
    fn twins_that_swapped_slots_are_told_apart_by_their_serial_numbers_and_followed() {
        let (mut plan, mut host, _d) = demo();
        let sn = |v: u64| Some(crate::config::SerialNumber(v));
        // A twin of the GPU in group 40 at bus 0f, both with serial numbers.
        let mut twin: Vec<Device> = host
            .devices
            .values()
            .filter(|d| d.address.bus == 0x0b)
            .cloned()
            .collect();
        for d in &mut twin {
            d.address.bus = 0x0f;
            d.group = Some(GroupId(40));
            d.capabilities.serial_number = sn(0xbbbb);
        }
        host.groups.insert(
            GroupId(40),
            crate::model::Group {
                id: GroupId(40),
                devices: twin.iter().map(|d| d.address).collect(),
                other_members: Vec::new(),
                kind: None,
            },
        );
        for d in twin {
            host.devices.insert(d.address, d);
        }
        for d in host.devices.values_mut().filter(|d| d.address.bus == 0x0b) {
            d.capabilities.serial_number = sn(0xaaaa);
        }
        // The plan was made for the card with serial bbbb when it sat at bus 0b in group 19.
        for p in &mut plan.guests[0].groups {
            if p.group == GroupId(19) {
                for d in &mut p.devices {
                    d.serial_number = sn(0xbbbb);
                }
            }
        }
        let problems = super::super::check(&plan, &host);
        assert!(
            problems.iter().any(|p| p.code == "serial-changed"
                && p.remedy
                    .as_deref()
                    .is_some_and(|r| r.contains("plan remap"))),
            "{problems:?}"
        );
        let found = drift(&plan, &host);
        let [Drift::Moved(r)] = found.as_slice() else {
            panic!("{found:?}")
        };
        assert_eq!((r.from, r.to), (GroupId(19), GroupId(40)));
        plan.remap(r).unwrap();
        assert!(drift(&plan, &host).is_empty());
        assert!(super::super::check(&plan, &host)
            .iter()
            .all(|p| p.code != "serial-changed"));
        // Without serial numbers on the host the twins are not told apart: nothing is guessed.
        for d in host.devices.values_mut() {
            d.capabilities.serial_number = None;
        }
        assert!(
            drift(&plan, &host).is_empty(),
            "in place as far as ids tell"
        );
    }

    /// Two GPUs with serial numbers aaaa (bus 0b, group 19) and bbbb (bus 0f, group 40), both
    /// planned for win11 as they were before they swapped slots.
    fn swapped_twins() -> (Plan, Host, tempfile::TempDir) {
        let (mut plan, mut host, d) = demo();
        let sn = |v: u64| Some(crate::config::SerialNumber(v));
        let mut twin: Vec<Device> = host
            .devices
            .values()
            .filter(|d| d.address.bus == 0x0b)
            .cloned()
            .collect();
        for d in &mut twin {
            d.address.bus = 0x0f;
            d.group = Some(GroupId(40));
            d.capabilities.serial_number = sn(0xbbbb);
        }
        host.groups.insert(
            GroupId(40),
            crate::model::Group {
                id: GroupId(40),
                devices: twin.iter().map(|d| d.address).collect(),
                other_members: Vec::new(),
                kind: None,
            },
        );
        for d in twin {
            host.devices.insert(d.address, d);
        }
        for d in host.devices.values_mut().filter(|d| d.address.bus == 0x0b) {
            d.capabilities.serial_number = sn(0xaaaa);
        }
        // Planned before the swap: bbbb at bus 0b in group 19 (hidden audio), aaaa at bus 0f in
        // group 40.
        let gpu = plan.guests[0]
            .groups
            .iter()
            .find(|p| p.group == GroupId(19))
            .unwrap()
            .clone();
        let mut other = gpu.clone();
        other.group = GroupId(40);
        for d in &mut other.devices {
            d.address.bus = 0x0f;
            d.serial_number = sn(0xaaaa);
        }
        for p in &mut plan.guests[0].groups {
            if p.group == GroupId(19) {
                for d in &mut p.devices {
                    d.serial_number = sn(0xbbbb);
                }
                p.devices[1].visible = false;
            }
        }
        plan.guests[0].groups.push(other);
        (plan, host, d)
    }

    #[test]
    fn twins_that_swapped_slots_are_both_followed_in_one_remap() {
        let (mut plan, host, _d) = swapped_twins();
        let found = drift(&plan, &host);
        let moves: Vec<Remap> = found
            .iter()
            .filter_map(|d| match d {
                Drift::Moved(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(moves.len(), 2, "{found:?}");
        plan.remap_all(&moves).unwrap();
        assert!(drift(&plan, &host).is_empty(), "{:?}", drift(&plan, &host));
        // The hidden audio followed card bbbb to group 40 at bus 0f.
        let g40 = plan.guests[0]
            .groups
            .iter()
            .find(|p| p.group == GroupId(40))
            .unwrap();
        assert_eq!(g40.devices[1].address.bus, 0x0f);
        assert!(!g40.devices[1].visible);
        let g19 = plan.guests[0]
            .groups
            .iter()
            .find(|p| p.group == GroupId(19))
            .unwrap();
        assert!(g19
            .devices
            .iter()
            .all(|d| d.visible && d.address.bus == 0x0b));
    }

    #[test]
    fn one_card_left_of_two_planned_twins_is_not_guessed() {
        let (plan, mut host, _d) = swapped_twins();
        // Card aaaa (now at bus 0b) is taken out: only bbbb is left, at bus 0f.
        let gone: Vec<PciAddress> = host
            .devices
            .values()
            .filter(|d| d.address.bus == 0x0b)
            .map(|d| d.address)
            .collect();
        for a in &gone {
            host.devices.remove(a);
        }
        host.groups.remove(&GroupId(19));
        // Without serial numbers the two planned groups would both find the one card left.
        let mut plan = plan;
        for p in &mut plan.guests[0].groups {
            for d in &mut p.devices {
                d.serial_number = None;
            }
        }
        for d in host.devices.values_mut() {
            d.capabilities.serial_number = None;
        }
        let found = drift(&plan, &host);
        assert!(
            !found.iter().any(|d| matches!(d, Drift::Moved(_))),
            "{found:?}"
        );
    }

    #[test]
    fn cards_that_all_shifted_one_bus_along_are_followed_each_to_its_own_place() {
        // Planned when a card sat before them: the GPU at bus 0c in group 20, the USB card at
        // bus 0d in group 21. Now the GPU is at 0b (19) and the USB card at 0c (20): group 20's
        // number goes from one to the other.
        let (mut plan, host, _d) = demo();
        for p in &mut plan.guests[0].groups {
            p.group = GroupId(p.group.0 + 1);
            for d in &mut p.devices {
                d.address.bus += 1;
            }
        }
        let found = drift(&plan, &host);
        let moves: Vec<Remap> = found
            .iter()
            .filter_map(|d| match d {
                Drift::Moved(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(moves.len(), 2, "{found:?}");
        plan.remap_all(&moves).unwrap();
        assert!(drift(&plan, &host).is_empty(), "{:?}", drift(&plan, &host));
        assert_eq!(
            plan,
            crate::demo::plan().unwrap(),
            "back to the plan as made here"
        );
    }
}
