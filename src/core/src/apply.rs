//! Applying a plan: the steps (claim each group the guest keeps, write libvirt guests'
//! definitions) planned first so they can be shown, then run in order by an [`Executor`]
//! (the helper and libvirt-dbus in the CLI and the app; a scripted one in tests).
//!
//! All or nothing across the plan: each claim is already a transaction of its own in the
//! helper; if a later step fails, the groups this run claimed are released again, and the
//! outcome says what was done, what failed and why, and what was undone.

use crate::i18n::{tr, trf};
use crate::model::Host;
use crate::plan::{self, Lifecycle, Plan, Severity, Vmm};
use crate::GroupId;
use serde::Serialize;

/// One step of applying a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Claim a whole group for vfio-pci now (through the helper).
    Claim {
        guest: String,
        group: GroupId,
        force: bool,
        /// The group's members (the helper refuses the group unless they are exactly these),
        /// named again in the step's outcome.
        devices: Vec<crate::PciAddress>,
    },
    /// Write the guest's devices into its libvirt definition.
    Define { guest: String },
}

impl Step {
    /// The step in a sentence, for progress lines.
    pub fn describe(&self) -> String {
        match self {
            Step::Claim { guest, group, .. } => trf(
                "claim group {id} for {guest}",
                &[("id", &group.to_string()), ("guest", guest)],
            ),
            Step::Define { guest } => trf(
                "write the devices into libvirt's definition of {guest}",
                &[("guest", guest)],
            ),
        }
    }
}

/// Why a plan could not be applied at all (nothing was done).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan has no guest named “{0}”")]
    NoGuest(String),
    #[error("the plan cannot be applied as it is: {0}")]
    Invalid(String),
    #[error("no guest of the plan holds a group; nothing to apply")]
    Nothing,
}

/// The steps that apply `guest` (or every guest holding groups), in order: claims first,
/// definitions last, so a definition is only written once its devices are ready.
pub fn steps(plan: &Plan, host: &Host, guest: Option<&str>) -> Result<Vec<Step>, ApplyError> {
    let errors: Vec<String> = plan::check(plan, host)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .filter(|p| guest.is_none() || p.guest.is_none() || p.guest.as_deref() == guest)
        .map(|p| p.message)
        .collect();
    if !errors.is_empty() {
        return Err(ApplyError::Invalid(errors.join(" ")));
    }
    let guests: Vec<&plan::Guest> = match guest {
        Some(name) => vec![plan
            .guest(name)
            .ok_or_else(|| ApplyError::NoGuest(name.chars().take(40).collect()))?],
        None => plan
            .guests
            .iter()
            .filter(|g| !g.groups.is_empty())
            .collect(),
    };
    let mut claims = Vec::new();
    let mut defines = Vec::new();
    for g in guests {
        if g.groups.is_empty() {
            continue;
        }
        // On-start guests are claimed by libvirt's hook when they start; anything else is
        // claimed now (a plain QEMU cannot ask for its devices).
        if !(g.lifecycle == Lifecycle::OnStart && g.vmm == Vmm::Libvirt) {
            for p in &g.groups {
                claims.push(Step::Claim {
                    guest: g.name.clone(),
                    // Where the first planned device is now (the group may have been
                    // renumbered); a hand-edited plan may list none, then the plan's number.
                    group: p
                        .devices
                        .first()
                        .and_then(|d| host.device(d.address))
                        .and_then(|d| d.group)
                        .unwrap_or(p.group),
                    force: p.force,
                    devices: p.devices.iter().map(|d| d.address).collect(),
                });
            }
        }
        if g.vmm == Vmm::Libvirt {
            defines.push(Step::Define {
                guest: g.name.clone(),
            });
        }
    }
    if claims.is_empty() && defines.is_empty() {
        return Err(ApplyError::Nothing);
    }
    claims.extend(defines);
    Ok(claims)
}

/// What carries the steps out.
pub trait Executor {
    /// Claims a group; `Ok(true)` when it changed drivers, `Ok(false)` when it already was.
    fn claim(&mut self, group: GroupId, force: bool) -> Result<bool, String>;
    fn release(&mut self, group: GroupId) -> Result<bool, String>;
    fn define(&mut self, guest: &plan::Guest) -> Result<(), String>;
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub step: Step,
    pub ok: bool,
    pub message: String,
}

/// Everything that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub steps: Vec<Done>,
    /// Groups released again because a later step failed: (group, what happened).
    pub rolled_back: Vec<(GroupId, String)>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|d| d.ok)
    }
}

/// Runs the steps in order, reporting each as it finishes; stops at the first failure and
/// releases what this run claimed.
pub fn run(
    plan: &Plan,
    steps: &[Step],
    exec: &mut dyn Executor,
    progress: &mut dyn FnMut(&Done),
) -> Outcome {
    let mut out = Outcome {
        steps: Vec::new(),
        rolled_back: Vec::new(),
    };
    let mut claimed_now: Vec<GroupId> = Vec::new();
    for step in steps {
        let r = match step {
            Step::Claim {
                group,
                force,
                devices,
                ..
            } => exec.claim(*group, *force).map(|changed| {
                // Each device by name: the helper claimed exactly these or nothing.
                let list: Vec<String> = devices.iter().map(|a| a.to_string()).collect();
                let args = [("id", group.to_string()), ("devices", list.join(", "))];
                let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if changed {
                    claimed_now.push(*group);
                    trf("group {id} is on vfio-pci: {devices}", &args)
                } else {
                    trf("group {id} was already on vfio-pci: {devices}", &args)
                }
            }),
            Step::Define { guest } => match plan.guest(guest) {
                Some(g) => exec
                    .define(g)
                    .map(|()| trf("libvirt's {guest} holds its devices", &[("guest", guest)])),
                None => Err(tr("the guest left the plan")),
            },
        };
        let done = Done {
            step: step.clone(),
            ok: r.is_ok(),
            message: r.unwrap_or_else(|e| e),
        };
        progress(&done);
        let failed = !done.ok;
        out.steps.push(done);
        if failed {
            for g in claimed_now.iter().rev() {
                let what = match exec.release(*g) {
                    Ok(_) => trf(
                        "group {id} given back to the host",
                        &[("id", &g.to_string())],
                    ),
                    Err(e) => trf(
                        "group {id} could not be given back: {why}",
                        &[("id", &g.to_string()), ("why", &e)],
                    ),
                };
                out.rolled_back.push((*g, what));
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripted answers, to test the order and the undoing; the real helper and libvirt are
    /// tested in tests/helper_bus.rs and tests/libvirt_dbus.rs.
    #[derive(Default)]
    struct Script {
        fail_claim: Option<GroupId>,
        fail_define: bool,
        calls: Vec<String>,
    }

    impl Executor for Script {
        fn claim(&mut self, g: GroupId, _force: bool) -> Result<bool, String> {
            self.calls.push(format!("claim {g}"));
            if self.fail_claim == Some(g) {
                Err("refused".into())
            } else {
                Ok(true)
            }
        }
        fn release(&mut self, g: GroupId) -> Result<bool, String> {
            self.calls.push(format!("release {g}"));
            Ok(true)
        }
        fn define(&mut self, guest: &plan::Guest) -> Result<(), String> {
            self.calls.push(format!("define {}", guest.name));
            if self.fail_define {
                Err("libvirt said no".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_hand_edited_group_without_devices_is_planned_without_a_panic() {
        // A plan file whose group says `"devices": []` used to index its first device.
        let (_d, host, mut plan) = demo();
        for g in &mut plan.guests {
            for p in &mut g.groups {
                p.devices.clear();
            }
        }
        match steps(&plan, &host, None) {
            Ok(s) => assert!(s.iter().all(|s| match s {
                Step::Claim { devices, .. } => devices.is_empty(),
                Step::Define { .. } => true,
            })),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    fn demo() -> (crate::demo::Demo, Host, Plan) {
        let d = crate::demo::open().unwrap();
        let host = crate::scan::scan(&d.root).unwrap();
        let mut plan = crate::demo::plan().unwrap();
        // Make win11 a kept guest too, so both guests claim.
        plan.guests[0].lifecycle = Lifecycle::Kept;
        (d, host, plan)
    }

    #[test]
    fn claims_come_first_and_a_libvirt_guest_is_defined_last() {
        let (_d, host, plan) = demo();
        let s = steps(&plan, &host, None).unwrap();
        let names: Vec<String> = s.iter().map(Step::describe).collect();
        assert_eq!(
            names,
            vec![
                "claim group 19 for win11",
                "claim group 20 for win11",
                "claim group 18 for router",
                "write the devices into libvirt's definition of win11"
            ]
        );
        let mut x = Script::default();
        let o = run(&plan, &s, &mut x, &mut |_| {});
        assert!(o.ok());
        assert!(o.rolled_back.is_empty());
    }

    #[test]
    fn a_failure_stops_the_run_and_releases_what_it_claimed() {
        let (_d, host, plan) = demo();
        let s = steps(&plan, &host, None).unwrap();
        let mut x = Script {
            fail_define: true,
            ..Default::default()
        };
        let mut seen = 0;
        let o = run(&plan, &s, &mut x, &mut |_| seen += 1);
        assert!(!o.ok());
        assert_eq!(seen, 4);
        assert_eq!(
            x.calls,
            vec![
                "claim 19",
                "claim 20",
                "claim 18",
                "define win11",
                "release 18",
                "release 20",
                "release 19"
            ]
        );
        assert_eq!(o.rolled_back.len(), 3);
        let mut x = Script {
            fail_claim: Some(GroupId(20)),
            ..Default::default()
        };
        let o = run(&plan, &s, &mut x, &mut |_| {});
        assert_eq!(x.calls, vec!["claim 19", "claim 20", "release 19"]);
        assert_eq!(o.steps.last().unwrap().message, "refused");
    }

    #[test]
    fn an_on_start_libvirt_guest_is_only_defined_and_a_bad_plan_is_refused_whole() {
        let (_d, host, mut plan) = demo();
        plan.guests[0].lifecycle = Lifecycle::OnStart;
        let s = steps(&plan, &host, Some("win11")).unwrap();
        assert_eq!(
            s,
            vec![Step::Define {
                guest: "win11".into()
            }]
        );
        plan.guests[0].groups[0].devices[0].guest_address = "01:00.3".parse().ok();
        assert!(matches!(
            steps(&plan, &host, Some("win11")),
            Err(ApplyError::Invalid(_))
        ));
        assert!(matches!(
            steps(&plan, &host, Some("nobody")),
            Err(ApplyError::NoGuest(_))
        ));
    }
}
