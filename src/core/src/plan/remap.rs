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

/// Every planned group whose cards are not where the plan has them, and what is found for it.
pub fn drift(plan: &Plan, host: &Host) -> Vec<Drift> {
    let held: Vec<GroupId> = plan
        .guests
        .iter()
        .flat_map(|g| &g.groups)
        .filter(|p| in_place(host, p))
        .map(|p| p.group)
        .collect();
    let mut out = Vec::new();
    for guest in &plan.guests {
        for p in guest.groups.iter().filter(|p| !in_place(host, p)) {
            let mut want: Vec<(Identity, PciAddress, &DevicePlan)> = p
                .devices
                .iter()
                .map(|d| (planned_identity(d), d.address, d))
                .collect();
            want.sort_by_key(|w| (w.0, w.1));
            let candidates: Vec<(GroupId, Vec<PciAddress>)> = host
                .groups
                .keys()
                .filter(|g| !held.contains(g))
                .filter_map(|&g| {
                    let mut have: Vec<(Identity, PciAddress, &Device)> =
                        assignable_members(host, g)
                            .into_iter()
                            .map(|d| (host_identity(d), d.address, d))
                            .collect();
                    have.sort_by_key(|h| (h.0, h.1));
                    let same = have.len() == want.len()
                        && have.iter().zip(&want).all(|(h, w)| same_card(w.2, h.2))
                        // A card's functions stay one card: one slot on the host too.
                        && have.windows(2).all(|w| w[0].1.same_slot(w[1].1))
                            == want.windows(2).all(|w| w[0].1.same_slot(w[1].1));
                    same.then(|| {
                        let now = have.iter().map(|h| h.1).collect::<Vec<_>>();
                        (g, now)
                    })
                })
                .collect();
            out.push(match candidates.as_slice() {
                [(to, now)] => Drift::Moved(Remap {
                    guest: guest.name.clone(),
                    from: p.group,
                    to: *to,
                    moves: want.iter().map(|w| w.1).zip(now.iter().copied()).collect(),
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

    /// Every remap of [`drift`] at once (a renumbering can swap two planned groups' numbers):
    /// all of them or, refused, none.
    pub fn remap_all(&mut self, rs: &[Remap]) -> Result<(), PlanError> {
        let moving: std::collections::BTreeSet<GroupId> = rs.iter().map(|r| r.from).collect();
        let mut targets = std::collections::BTreeSet::new();
        for r in rs {
            if !targets.insert(r.to) || (self.holder(r.to).is_some() && !moving.contains(&r.to)) {
                return Err(PlanError::Refused(trf(
                    "group {group} is in the plan already",
                    &[("group", &r.to.to_string())],
                )));
            }
        }
        let mut next = self.clone();
        for r in rs {
            next.move_group(r)?;
        }
        *self = next;
        Ok(())
    }

    fn move_group(&mut self, r: &Remap) -> Result<(), PlanError> {
        let guest = self
            .guests
            .iter_mut()
            .find(|g| g.name == r.guest)
            .ok_or_else(|| PlanError::NoGuest(r.guest.chars().take(40).collect()))?;
        // The planned group as the remap found it: its number and its devices' old addresses
        // (a group moved earlier in the same run may have taken its number).
        let p = guest
            .groups
            .iter_mut()
            .find(|p| {
                p.group == r.from
                    && p.devices
                        .iter()
                        .all(|d| r.moves.iter().any(|(then, _)| *then == d.address))
            })
            .ok_or(PlanError::GroupNotPlanned(r.from))?;
        let mut moved = p.clone();
        for d in &mut moved.devices {
            let (_, now) = r
                .moves
                .iter()
                .find(|(then, _)| *then == d.address)
                .ok_or(PlanError::GroupNotPlanned(r.from))?;
            d.address = *now;
        }
        moved.group = r.to;
        *p = moved;
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
            .filter(|p| p.code == "unknown-device")
            .map(|p| p.remedy.clone().unwrap_or_default())
            .collect();
        assert!(codes.iter().all(|r| r.contains("plan remap")), "{codes:?}");
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
            .all(|p| p.code != "unknown-device"));
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
        assert!(drift(&plan, &host)
            .iter()
            .all(|d| matches!(d, Drift::Missing { .. })));
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
}
