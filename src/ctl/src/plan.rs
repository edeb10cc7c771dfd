//! `passagectl plan …`: build and check an assignment plan (which guest gets which groups, and
//! how), and carry it out on this host (`plan apply`).

use crate::common::{json, load_plan, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::{Cli, PlanAction};
use passage_core::i18n::{tr, trf};
use passage_core::session::{KnownGuest, KnownGuests};
use passage_core::{plan, report, scan, store, GroupId, Host, PciAddress};
use std::path::Path;

/// One change to a plan, applied by `Plan::try_edit` (refused if it adds an error).
type PlanEdit<'a> = dyn FnOnce(&mut plan::Plan) -> Result<(), plan::PlanError> + 'a;

pub fn run(cli: &Cli, path: Option<&Path>, action: &PlanAction) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let (mut p, file) = load_plan(cli, path)?;
    let edit: Box<PlanEdit> = match action {
        PlanAction::Show { json: as_json } | PlanAction::Check { json: as_json } => {
            let check = matches!(action, PlanAction::Check { .. });
            return show(&p, &host, check, *as_json);
        }
        PlanAction::Apply { guest } => return apply(cli, &p, &host, guest.as_deref()),
        PlanAction::Remap { dry_run } => {
            let found = plan::drift(&p, &host);
            let mut said: String = found.iter().map(|d| d.describe() + "\n").collect();
            if found.is_empty() {
                said = tr("Every planned card is where the plan has it; nothing to remap.\n");
            }
            let moves: Vec<plan::Remap> = found
                .into_iter()
                .filter_map(|d| match d {
                    plan::Drift::Moved(r) => Some(r),
                    _ => None,
                })
                .collect();
            if *dry_run || moves.is_empty() {
                print(&said)?;
                return Ok(0);
            }
            print(&said)?;
            Box::new(move |p| p.remap_all(&moves))
        }
        PlanAction::Assign {
            group,
            guest,
            force,
        } => {
            let g: GroupId = group.parse()?;
            let (guest, force) = (guest.clone(), *force);
            if p.guest(&guest).is_none() {
                let found = find_guest(cli, &host, &guest)?.ok_or_else(|| {
                    Failure(trf("there is no guest named “{guest}”; add one with: passagectl guests add {guest} --vmm qemu", &[("guest", &guest.chars().take(40).collect::<String>())]))
                })?;
                p.add_guest(found)?;
            }
            let host = &host;
            Box::new(move |p| p.assign(host, g, &guest, force))
        }
        PlanAction::Unassign { group } => {
            let g: GroupId = group.parse()?;
            Box::new(move |p| p.unassign(g).map(|_| ()))
        }
        PlanAction::Visible { address, state } => {
            let a: PciAddress = address.parse()?;
            let on = on_off(state);
            Box::new(move |p| p.set_visible(a, on))
        }
        PlanAction::Address { address, at } => {
            let a: PciAddress = address.parse()?;
            let at = if at == "auto" {
                None
            } else {
                Some(at.parse::<plan::GuestAddress>()?)
            };
            Box::new(move |p| p.set_guest_address(a, at))
        }
        PlanAction::Rombar { address, state } => {
            let a: PciAddress = address.parse()?;
            let on = on_off(state);
            Box::new(move |p| p.set_rombar(a, on))
        }
        PlanAction::XVga { address, state } => {
            let a: PciAddress = address.parse()?;
            let on = on_off(state);
            Box::new(move |p| p.set_x_vga(a, on))
        }
        PlanAction::Lifecycle { guest, lifecycle } => {
            let l: plan::Lifecycle = lifecycle.parse()?;
            let guest = guest.clone();
            Box::new(move |p| p.set_lifecycle(&guest, l))
        }
        PlanAction::RemoveGuest { guest } => {
            let guest = guest.clone();
            Box::new(move |p| p.remove_guest(&guest).map(|_| ()))
        }
    };
    let Some(file) = file else {
        return Err(Failure(tr("the demo plan is built in and cannot be changed; name a file to work on a copy: --plan FILE")));
    };
    let problems = p.try_edit(&host, edit)?;
    store::save_plan(&file, &p)?;
    let mut s = trf("Saved {file}.\n", &[("file", &file.display().to_string())]);
    s.push_str(&report::problems_text(&problems));
    print(&s)?;
    Ok(0)
}

/// `plan show` and `plan check` (`check`: exit 1 when the plan has errors).
fn show(p: &plan::Plan, host: &Host, check: bool, as_json: bool) -> Result<u8, Failure> {
    let mut problems = plan::check(p, host);
    // What a VMM started from here may pin: this process's limit, which it would inherit. A
    // guest's memory is its profile's as it is now (given after the guest was planned too).
    let mut weighed = p.clone();
    let known = KnownGuests::gather(false);
    for g in &mut weighed.guests {
        if let Some(m) = known
            .guests
            .iter()
            .find(|k| k.name == g.name && k.vmm == g.vmm)
            .and_then(|k| k.memory_mib)
        {
            g.memory_mib = Some(m);
        }
    }
    problems.extend(plan::memlock(&weighed, memlock_limit()));
    problems.sort_by_key(|p| p.severity);
    let errors = report::has_errors(&problems);
    if as_json {
        print(&json(&report::plan_check(p, host, &problems))?)?;
    } else if !check {
        print(&report::plan_text(p, host, &problems))?;
    } else if problems.is_empty() {
        print(&tr("The plan can be applied as it is.\n"))?;
    } else {
        print(&report::problems_text(&problems))?;
    }
    Ok(if errors && check { 1 } else { 0 })
}

/// The locked-memory limit a process started here runs under, in bytes (`None`: none — root
/// may lock any amount with CAP_IPC_LOCK, or the limit is unlimited).
fn memlock_limit() -> Option<u64> {
    if rustix::process::geteuid().is_root() {
        return None;
    }
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}

/// `plan apply`: claims through the helper and libvirt definitions, all or nothing.
fn apply(cli: &Cli, p: &plan::Plan, host: &Host, guest: Option<&str>) -> Result<u8, Failure> {
    if cli.demo.is_some() {
        return Err(Failure(tr("the demo host is not this machine; export the demo plan instead (passagectl --demo export --format F)")));
    }
    let steps = passage_core::apply::steps(p, host, guest)?;
    let mut exec = passage_dbus::SystemExecutor::new(p, host)?;
    let outcome = passage_core::apply::run(p, &steps, &mut exec, &mut |d| {
        // Progress is best effort: a closed pipe must not stop a half-done apply.
        let _ = print(&report::apply_step_text(d));
    });
    for (_, what) in &outcome.rolled_back {
        print(&report::rolled_back_text(what))?;
    }
    if !outcome.ok() {
        return Err(Failure(tr(
            "the plan was not applied; what this run had claimed was given back (see above)",
        )));
    }
    print(&report::apply_ready_text(p, guest))?;
    Ok(0)
}

fn on_off(s: &str) -> bool {
    s == "on"
}

/// A guest for `plan assign` that the plan does not have yet: a local profile, a libvirt
/// domain, else a demo guest.
fn find_guest(cli: &Cli, host: &Host, name: &str) -> Result<Option<plan::Guest>, Failure> {
    let mut known =
        KnownGuests::gather(cli.demo == Some(passage_core::demo::DemoHost::Workstation));
    if let Some(e) = known.profiles_error.take() {
        return Err(e.into());
    }
    // libvirt is a round trip on the system bus, asked only when no profile has the name and
    // only about this host's own domains.
    if known.find(name).is_none() && cli.demo.is_none() && cli.root.is_empty() {
        known.add_libvirt(passage_dbus::libvirt::system_guests(host));
    }
    Ok(known.find(name).map(KnownGuest::to_guest).transpose()?)
}
