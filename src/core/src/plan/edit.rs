//! Edits: every change to a plan is a method that either makes it or says why not;
//! [`Plan::try_edit`] refuses an edit that would add an error.

use super::check::{check, host_critical_sentence, Problem, Severity};
use super::types::{
    check_guest_name, DevicePlan, GroupPlan, Guest, GuestAddress, Lifecycle, Plan, PlanError,
};
use crate::address::{GroupId, PciAddress};
use crate::explain::{self, State};
use crate::model::{Device, Host};
use std::collections::BTreeSet;

/// Devices of a host group that a guest could use: not bridges, not chipset glue.
pub fn assignable_members(host: &Host, g: GroupId) -> Vec<&Device> {
    host.groups
        .get(&g)
        .map(|grp| host.members(grp).filter(|d| d.is_for_a_guest()).collect())
        .unwrap_or_default()
}

/// Devices a claim of group `g` binds to vfio-pci: every member but bridges, chipset functions
/// too (the kernel counts them for the group's viability). This is the set a claim's
/// `expect_devices` must name exactly.
pub fn claimed_members(host: &Host, g: GroupId) -> Vec<&Device> {
    host.groups
        .get(&g)
        .map(|grp| host.members(grp).filter(|d| d.is_endpoint()).collect())
        .unwrap_or_default()
}

impl Plan {
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
