//! `passagectl draw`: the PCI tree with its IOMMU groups as SVG (`topology::svg`).

use crate::common::{print, read_host};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::session::{KnownGuests, PlanSource};
use passage_core::{store, topology, GroupId};
use std::collections::BTreeSet;
use std::path::Path;

pub fn run(
    cli: &Cli,
    groups: &[String],
    all_vfs: bool,
    plan: Option<&Path>,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let wanted: Vec<GroupId> = groups
        .iter()
        .map(|g| g.parse::<GroupId>())
        .collect::<Result<_, _>>()?;
    let host = read_host(cli)?;
    if !wanted.is_empty() && !host.iommu_enabled() {
        return Err(crate::common::no_groups());
    }
    for g in &wanted {
        let Some(group) = host.groups.get(g) else {
            return Err(Failure(trf(
                "there is no IOMMU group {group} on {host}",
                &[
                    ("group", &g.to_string()),
                    ("host", &crate::common::on_where(cli)),
                ],
            )));
        };
        if !group.devices.iter().any(|a| host.device(*a).is_some()) {
            // A group of platform devices only (ARM): the picture is of the PCI tree.
            return Err(Failure(trf(
                "IOMMU group {group} holds no PCI function (only {members}): there is no PCI tree to draw for it",
                &[
                    ("group", &g.to_string()),
                    ("members", &group.other_members.join(", ")),
                ],
            )));
        }
    }
    // The boxes name the guests the plan gives groups to. Drawing changes nothing, so a default
    // plan that cannot be read only costs the names (and says so); a plan named with --plan
    // must read.
    // Another machine's groups are not this one's: its boxes name guests only from a plan
    // given with --plan (this machine's default plan numbers this machine's groups).
    let remote = cli.remote()?.is_some();
    let opened = if remote && plan.is_none() {
        None
    } else {
        let opened = PlanSource::choose(plan, cli.demo).open()?;
        if let Some(note) = opened.note() {
            eprintln!("passagectl: {} {note}", tr("note:"));
        }
        Some(opened)
    };
    let holders = if remote {
        Default::default()
    } else {
        KnownGuests::gather(cli.demo == Some(passage_core::demo::DemoHost::Workstation)).holders()
    };
    let opts = topology::Options {
        all_vfs,
        opened: Default::default(),
        only: (!wanted.is_empty()).then(|| wanted.iter().copied().collect::<BTreeSet<_>>()),
        guests: opened
            .as_ref()
            .map(|o| topology::guests_of(&o.plan, &holders))
            .unwrap_or_default(),
    };
    let layout = topology::layout(&host, &opts);
    let caption = match wanted.as_slice() {
        [] => tr("PCI topology and IOMMU groups"),
        [g] => trf(
            "IOMMU group {group} and the ports above it",
            &[("group", &g.to_string())],
        ),
        _ => {
            let list: Vec<String> = wanted.iter().map(|g| g.to_string()).collect();
            trf(
                "IOMMU groups {groups} and the ports above them",
                &[("groups", &list.join(", "))],
            )
        }
    };
    let text = topology::svg(&layout, &caption);
    match output {
        Some(path) => store::write_atomic(path, text.as_bytes())
            .map_err(|err| Failure(format!("{}: {err}", path.display())))?,
        None => print(&text)?,
    }
    Ok(0)
}
