//! `passagectl`: the command line over Passage's library.
//!
//! Thin: parse words into typed values, call the library, print. Exit 0 on success, 2 with a
//! one-line reason on stderr otherwise (1 is reserved for "not usable" answers such as verify's).

use clap::Parser;
use passage_core::cli::ctl::{Cli, Command, GuestsAction, PlanAction};
use passage_core::i18n::{tr, trf};
use passage_core::{demo, export, names, plan, report, scan, store, watch, HostRoot, Target};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// A failure with a sentence for the person at the terminal.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn open_source(cli: &Cli) -> Result<demo::Source, Failure> {
    Ok(demo::Source::open(cli.demo, cli.root.as_deref())?)
}

fn print(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // `passagectl list | head` closes the pipe: that is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pretty for a person at a terminal, compact for a pipe (a 10,000-function host's listing is
/// tens of megabytes pretty-printed).
fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        Ok(serde_json::to_string_pretty(v)? + "\n")
    } else {
        Ok(serde_json::to_string(v)? + "\n")
    }
}

/// Commands that change this host's drivers only make sense on this host.
fn refuse_fake(cli: &Cli, what: &str) -> Result<(), Failure> {
    if cli.demo || cli.root.is_some() {
        return Err(Failure(trf("{command} acts on this host through the helper; it cannot be used with --root or --demo", &[("command", what)])));
    }
    Ok(())
}

/// Runs one conversation with the helper on the system bus, with errors in words.
fn helper_call<T, F, Fut>(f: F) -> Result<T, Failure>
where
    F: FnOnce(passage_dbus::HelperProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, passage_dbus::HelperError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let h = passage_dbus::connect().await.map_err(|e| {
            Failure(trf("cannot reach the Passage helper on the system bus ({error}); is passage-helper installed?", &[("error", &e.to_string())]))
        })?;
        f(h).await.map_err(|e| Failure(helper_error_text(&e)))
    })
}

fn helper_error_text(e: &passage_dbus::HelperError) -> String {
    passage_dbus::error_text(e)
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::List { json: as_json } => {
            let src = open_source(&cli)?;
            let host = scan::scan(src.root())?;
            let rep = report::Report::build(&host);
            print(&if !*as_json {
                report::list_text(&host, &rep)
            } else if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                json(&rep)?
            } else {
                rep.to_json()? + "\n"
            })?;
            Ok(0)
        }
        Command::Explain {
            target,
            json: as_json,
        } => {
            let t: Target = target.parse()?;
            let src = open_source(&cli)?;
            let host = scan::scan(src.root())?;
            if let Target::Group(_) = t {
                if !host.iommu_enabled() {
                    return Err(Failure(tr("there are no IOMMU groups on this host: the IOMMU is off (see “passagectl list”)")));
                }
            }
            let e = report::explanation(&host, t)?;
            print(&if *as_json {
                json(&e)?
            } else {
                report::explain_text(&host, &e)
            })?;
            Ok(0)
        }
        Command::Record { out } => {
            if cli.demo {
                return Err(Failure(tr(
                    "record captures a real host; the demo host is already a file in data/",
                )));
            }
            if out.exists()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Failure(trf(
                    "{dir} exists and is not empty; record writes into a new directory",
                    &[("dir", &out.display().to_string())],
                )));
            }
            let path = cli
                .root
                .clone()
                .or_else(|| std::env::var_os(names::ROOT_ENV).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/"));
            let root = HostRoot::open_recording(path)?;
            let host = scan::scan(&root)?;
            let n = passage_core::host::write_recording(out, &root.recording())?;
            // Prove the recording reads back to the same model before calling it done.
            let back = scan::scan(&HostRoot::open(out)?)?;
            if back != host {
                return Err(Failure(trf("the recording in {dir} does not read back to the same facts; please report this", &[("dir", &out.display().to_string())])));
            }
            print(&trf("Recorded {n} files about {d} devices and {g} groups into {dir}.\nRead it back with: passagectl --root {dir} list\n", &[
                ("n", &n.to_string()),
                ("d", &host.devices.len().to_string()),
                ("g", &host.groups.len().to_string()),
                ("dir", &out.display().to_string()),
            ]))?;
            Ok(0)
        }
        Command::Verify {
            group,
            json: as_json,
        } => {
            let id: passage_core::GroupId = group.parse()?;
            if cli.demo || cli.root.is_some() {
                return Err(Failure(tr(
                    "verify opens this host's /dev/vfio; it cannot be used with --root or --demo",
                )));
            }
            let v = if rustix::process::geteuid().is_root() {
                let root = HostRoot::open("/")?;
                let host = scan::scan(&root)?;
                if !host.iommu_enabled() {
                    return Err(Failure(tr("there are no IOMMU groups on this host: the IOMMU is off (see “passagectl list”)")));
                }
                passage_core::vfio::verify(
                    &host,
                    id,
                    std::path::Path::new("/dev"),
                    std::path::Path::new("/proc"),
                )?
            } else {
                // /dev/vfio is root's: ask the helper, which runs the same steps.
                let (usable, code, message, remedy) =
                    helper_call(|h| async move { h.verify(id.0).await })?;
                if usable {
                    passage_core::vfio::Verdict::Usable {
                        devices: message
                            .split_whitespace()
                            .filter_map(|a| a.parse().ok())
                            .collect(),
                    }
                } else {
                    passage_core::vfio::Verdict::NotUsable {
                        code,
                        message,
                        remedy: Some(remedy).filter(|r| !r.is_empty()),
                    }
                }
            };
            if *as_json {
                print(&json(&v)?)?;
            }
            match v {
                passage_core::vfio::Verdict::Usable { devices } => {
                    if !*as_json {
                        let list: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
                        print(&trf("Group {id} is usable by QEMU: viable, attached to a VFIO container with the IOMMU, devices open: {devices}.\n", &[("id", &id.to_string()), ("devices", &list.join(", "))]))?;
                    }
                    Ok(0)
                }
                passage_core::vfio::Verdict::NotUsable {
                    message, remedy, ..
                } => {
                    if !*as_json {
                        let mut s = trf(
                            "Group {id} is NOT usable by QEMU: {message}\n",
                            &[("id", &id.to_string()), ("message", &message)],
                        );
                        if let Some(r) = remedy {
                            s.push_str(&format!("  → {r}\n"));
                        }
                        print(&s)?;
                    }
                    Ok(1)
                }
            }
        }
        Command::Claim { group, force } => {
            let g: passage_core::GroupId = group.parse()?;
            refuse_fake(&cli, "claim")?;
            let changed = helper_call(|h| async move {
                let mut opts = std::collections::HashMap::new();
                opts.insert("force", zbus::Variant::Bool(*force));
                h.claim(g.0, opts).await
            })?;
            print(&if changed {
                trf(
                    "Group {id} is now on vfio-pci, ready for a guest.\n",
                    &[("id", &g.to_string())],
                )
            } else {
                trf(
                    "Group {id} was already on vfio-pci; nothing changed.\n",
                    &[("id", &g.to_string())],
                )
            })?;
            Ok(0)
        }
        Command::Release { group } => {
            let g: passage_core::GroupId = group.parse()?;
            refuse_fake(&cli, "release")?;
            let changed =
                helper_call(
                    |h| async move { h.release(g.0, std::collections::HashMap::new()).await },
                )?;
            print(&if changed {
                trf(
                    "Group {id} is back with the host.\n",
                    &[("id", &g.to_string())],
                )
            } else {
                trf(
                    "Group {id} was not claimed; nothing changed.\n",
                    &[("id", &g.to_string())],
                )
            })?;
            Ok(0)
        }
        Command::Persist { group, state } => {
            let g: passage_core::GroupId = group.parse()?;
            refuse_fake(&cli, "persist")?;
            let on = state == "on";
            let (_, notes) = helper_call(|h| async move {
                h.persist(g.0, on, std::collections::HashMap::new()).await
            })?;
            let mut s = if on {
                trf("Group {id} will be claimed for vfio-pci at every boot (by address, checked against its ids).\n", &[("id", &g.to_string())])
            } else {
                trf(
                    "Group {id} is no longer claimed at boot.\n",
                    &[("id", &g.to_string())],
                )
            };
            for n in notes {
                s.push_str(&format!("  · {n}\n"));
            }
            print(&s)?;
            Ok(0)
        }
        Command::Status { json: as_json } => {
            refuse_fake(&cli, "status")?;
            let (claims, journal) = helper_call(|h| async move {
                let c = h.claims().await?;
                let j = h.journal().await?;
                Ok((c, j))
            })?;
            if *as_json {
                let pending: serde_json::Value = serde_json::from_str(&journal)?;
                let v = serde_json::json!({"claims": claims.iter().map(|(g, d)| serde_json::json!({"group": g, "devices": d})).collect::<Vec<_>>(), "pending": pending});
                print(&json(&v)?)?;
            } else if claims.is_empty() {
                print(&tr("The helper holds no groups.\n"))?;
            } else {
                let mut s = String::new();
                for (g, devs) in claims {
                    s.push_str(&trf(
                        "group {id}: {devices}\n",
                        &[("id", &g.to_string()), ("devices", &devs.join(", "))],
                    ));
                }
                print(&s)?;
            }
            Ok(0)
        }
        Command::Plan { plan, action } => plan_command(&cli, plan.as_deref(), action),
        Command::Export {
            plan,
            guest,
            format,
            iommufd,
            output,
        } => {
            let src = open_source(&cli)?;
            let host = scan::scan(src.root())?;
            let (p, _) = load_plan(&cli, plan.as_deref())?;
            let format: export::Format = format.parse()?;
            let opts = export::Options {
                iommufd: *iommufd,
                ..Default::default()
            };
            let e = export::export(&p, &host, guest.as_deref(), format, &opts)?;
            for n in &e.notes {
                eprintln!("passagectl: {} {n}", tr("note:"));
            }
            match output {
                Some(path) => passage_core::store::write_atomic(path, e.text.as_bytes())
                    .map_err(|err| Failure(format!("{}: {err}", path.display())))?,
                None => print(&e.text)?,
            }
            Ok(0)
        }
        Command::Guests {
            action,
            json: as_json,
        } => guests_command(&cli, action.as_ref(), *as_json),
        Command::HookQemu {
            domain, op, subop, ..
        } => hook_qemu(&cli, domain, op, subop),
        Command::Monitor {
            json: as_json,
            max_events,
        } => {
            if cli.demo || cli.root.is_some() {
                return Err(Failure(tr("monitor watches this host's live devices; it cannot be used with --root or --demo")));
            }
            let root = HostRoot::open("/")?;
            let mut host = scan::scan(&root)?;
            let mon = watch::Monitor::open()?;
            if !*as_json {
                print(&trf(
                    "Watching PCI devices (source: {source}); Ctrl+C stops.\n",
                    &[("source", mon.source)],
                ))?;
            }
            let mut seen = 0u64;
            loop {
                for ev in mon.wait(None)? {
                    let u = watch::apply(&mut host, &root, &ev)?;
                    let line = if *as_json {
                        serde_json::to_string(&u)? + "\n"
                    } else {
                        let state = match (u.state_before, u.state_after) {
                            (Some(a), Some(b)) if a != b => {
                                format!("{} → {}", a.label(), b.label())
                            }
                            (_, Some(b)) => b.label(),
                            (Some(a), None) => a.label(),
                            (None, None) => String::new(),
                        };
                        let group = u
                            .group
                            .map(|g| format!("{} {g}: {state}", tr("group")))
                            .unwrap_or_default();
                        format!(
                            "{:<7} {}  {} → {}  {}\n",
                            serde_json::to_value(&u.action)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            u.address,
                            u.driver_before.as_deref().unwrap_or("—"),
                            u.driver_after.as_deref().unwrap_or("—"),
                            group
                        )
                    };
                    print(&line)?;
                    seen += 1;
                    if max_events.is_some_and(|m| seen >= m) {
                        return Ok(0);
                    }
                }
            }
        }
        Command::GenerateDocs { dir } => {
            passage_core::cli::generate_docs(dir)?;
            Ok(0)
        }
    }
}

/// Where the plan comes from: `--plan FILE`, the demo plan, or the user's default file.
/// The path is `None` for the built-in demo plan, which cannot be saved over.
fn load_plan(
    cli: &Cli,
    path: Option<&std::path::Path>,
) -> Result<(plan::Plan, Option<PathBuf>), Failure> {
    if let Some(p) = path {
        return Ok((store::load_plan(p)?, Some(p.to_path_buf())));
    }
    if cli.demo {
        return Ok((demo::plan()?, None));
    }
    let p = store::default_plan_path().ok_or_else(|| {
        Failure(tr(
            "no home directory to keep the plan in; name a file with --plan FILE",
        ))
    })?;
    Ok((store::load_plan(&p)?, Some(p)))
}

fn on_off(s: &str) -> bool {
    s == "on"
}

/// A guest for `plan assign` that the plan does not have yet: a local profile, a libvirt
/// domain, else a demo guest.
fn find_guest(cli: &Cli, name: &str) -> Result<Option<plan::Guest>, Failure> {
    if let Some(path) = store::profiles_path() {
        if let Some(p) = store::load_profiles(&path)?
            .into_iter()
            .find(|p| p.name == name)
        {
            return Ok(Some(p.to_guest()?));
        }
    }
    if !cli.demo && cli.root.is_none() {
        if let Ok(domains) = passage_dbus::libvirt::system_domains() {
            if let Some(d) = domains.into_iter().find(|d| d.name == name) {
                return Ok(Some(d.to_guest()?));
            }
        }
    }
    if cli.demo {
        if let Some(g) = demo::plan()?.guest(name) {
            let mut g = g.clone();
            g.groups.clear();
            return Ok(Some(g));
        }
    }
    Ok(None)
}

fn problems_text(problems: &[plan::Problem]) -> String {
    let mut s = String::new();
    for p in problems {
        let mark = match p.severity {
            plan::Severity::Error => "✗",
            plan::Severity::Warning => "!",
        };
        s.push_str(&format!("  {mark} [{}] {}\n", p.code, p.message));
        if let Some(r) = &p.remedy {
            s.push_str(&format!("      → {r}\n"));
        }
    }
    s
}

fn plan_text(p: &plan::Plan, host: &passage_core::Host, problems: &[plan::Problem]) -> String {
    let mut s = String::new();
    if p.guests.is_empty() {
        s.push_str(&tr(
            "The plan has no guests yet: passagectl plan assign GROUP GUEST.\n",
        ));
    }
    for g in &p.guests {
        s.push_str(&trf(
            "{guest} ({vmm}, {machine}, {lifecycle})\n",
            &[
                ("guest", &g.name),
                ("vmm", g.vmm.as_str()),
                ("machine", &g.machine),
                (
                    "lifecycle",
                    &match g.lifecycle {
                        plan::Lifecycle::Kept => tr("claimed and kept"),
                        plan::Lifecycle::OnStart => tr("claimed while it runs"),
                    },
                ),
            ],
        ));
        if g.groups.is_empty() {
            s.push_str(&format!("    {}\n", tr("(no groups)")));
        }
        let r = plan::resolve(g, host);
        for gp in &g.groups {
            s.push_str(&format!("  {} {}\n", tr("group"), gp.group));
            for d in &gp.devices {
                let rd = r.devices.iter().find(|x| x.address == d.address);
                let at = match (d.visible, rd.and_then(|x| x.guest_address)) {
                    (false, _) => tr("hidden (held)"),
                    (true, Some(a)) => format!("→ {a}"),
                    (true, None) => tr("placed by the VMM"),
                };
                let name = rd.map(|x| x.name.clone()).unwrap_or_default();
                let mut flags = Vec::new();
                if rd.is_some_and(|x| x.multifunction) {
                    flags.push("multifunction");
                }
                if !d.rombar {
                    flags.push("rombar=off");
                }
                if d.x_vga {
                    flags.push("x-vga");
                }
                s.push_str(&format!(
                    "    {}  {:<16} {}{}\n",
                    d.address,
                    at,
                    name,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!("  [{}]", flags.join(", "))
                    }
                ));
            }
        }
    }
    if !problems.is_empty() {
        s.push('\n');
        s.push_str(&problems_text(problems));
    }
    s
}

/// The export format that fits a VMM.
fn format_for(vmm: plan::Vmm) -> &'static str {
    match vmm {
        plan::Vmm::Libvirt => "libvirt",
        plan::Vmm::Qemu => "qemu",
        plan::Vmm::CloudHypervisor => "cloud-hypervisor",
        plan::Vmm::Crosvm => "crosvm",
        plan::Vmm::Proxmox => "proxmox",
        plan::Vmm::Kubevirt => "kubevirt",
        plan::Vmm::Nova => "nova",
    }
}

fn plan_apply(
    cli: &Cli,
    p: &plan::Plan,
    host: &passage_core::Host,
    guest: Option<&str>,
) -> Result<u8, Failure> {
    if cli.demo {
        return Err(Failure(tr("the demo host is not this machine; export the demo plan instead (passagectl --demo export --format F)")));
    }
    let steps = passage_core::apply::steps(p, host, guest)?;
    let mut exec = passage_dbus::SystemExecutor::new(p, host)?;
    let outcome = passage_core::apply::run(p, &steps, &mut exec, &mut |d| {
        let mark = if d.ok { "✓" } else { "✗" };
        let _ = print(&format!("{mark} {}: {}\n", d.step.describe(), d.message));
    });
    for (_, what) in &outcome.rolled_back {
        print(&format!("↺ {what}\n"))?;
    }
    if !outcome.ok() {
        return Err(Failure(tr(
            "the plan was not applied; what this run had claimed was given back (see above)",
        )));
    }
    for g in &p.guests {
        if guest.is_some_and(|n| n != g.name) || g.groups.is_empty() || g.vmm == plan::Vmm::Libvirt
        {
            continue;
        }
        print(&trf(
            "{guest}: its groups are ready; its configuration: passagectl export --guest {guest} --format {format}\n",
            &[("guest", &g.name), ("format", format_for(g.vmm))],
        ))?;
    }
    Ok(0)
}

/// One change to a plan, applied by `Plan::try_edit` (refused if it adds an error).
type PlanEdit<'a> = dyn FnOnce(&mut plan::Plan) -> Result<(), plan::PlanError> + 'a;

fn plan_command(
    cli: &Cli,
    path: Option<&std::path::Path>,
    action: &PlanAction,
) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let (mut p, file) = load_plan(cli, path)?;
    let edit: Box<PlanEdit> = match action {
        PlanAction::Show { json: as_json } | PlanAction::Check { json: as_json } => {
            let problems = plan::check(&p, &host);
            let errors = problems.iter().any(|x| x.severity == plan::Severity::Error);
            if *as_json {
                let v = serde_json::json!({
                    "ok": !errors,
                    "problems": problems,
                    "resolved": p.guests.iter().map(|g| plan::resolve(g, &host)).collect::<Vec<_>>(),
                });
                print(&json(&v)?)?;
            } else if matches!(action, PlanAction::Show { .. }) {
                print(&plan_text(&p, &host, &problems))?;
            } else if problems.is_empty() {
                print(&tr("The plan can be applied as it is.\n"))?;
            } else {
                print(&problems_text(&problems))?;
            }
            return Ok(if errors && matches!(action, PlanAction::Check { .. }) {
                1
            } else {
                0
            });
        }
        PlanAction::Apply { guest } => return plan_apply(cli, &p, &host, guest.as_deref()),
        PlanAction::Assign {
            group,
            guest,
            force,
        } => {
            let g: passage_core::GroupId = group.parse()?;
            let (guest, force) = (guest.clone(), *force);
            if p.guest(&guest).is_none() {
                let found = find_guest(cli, &guest)?.ok_or_else(|| {
                    Failure(trf("there is no guest named “{guest}”; add one with: passagectl guests add {guest} --vmm qemu", &[("guest", &guest.chars().take(40).collect::<String>())]))
                })?;
                p.add_guest(found)?;
            }
            let host = &host;
            Box::new(move |p| p.assign(host, g, &guest, force))
        }
        PlanAction::Unassign { group } => {
            let g: passage_core::GroupId = group.parse()?;
            Box::new(move |p| p.unassign(g).map(|_| ()))
        }
        PlanAction::Visible { address, state } => {
            let a: passage_core::PciAddress = address.parse()?;
            let on = on_off(state);
            Box::new(move |p| p.set_visible(a, on))
        }
        PlanAction::Address { address, at } => {
            let a: passage_core::PciAddress = address.parse()?;
            let at = if at == "auto" {
                None
            } else {
                Some(at.parse::<plan::GuestAddress>()?)
            };
            Box::new(move |p| p.set_guest_address(a, at))
        }
        PlanAction::Rombar { address, state } => {
            let a: passage_core::PciAddress = address.parse()?;
            let on = on_off(state);
            Box::new(move |p| p.set_rombar(a, on))
        }
        PlanAction::XVga { address, state } => {
            let a: passage_core::PciAddress = address.parse()?;
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
    s.push_str(&problems_text(&problems));
    print(&s)?;
    Ok(0)
}

fn guests_command(cli: &Cli, action: Option<&GuestsAction>, as_json: bool) -> Result<u8, Failure> {
    let path = store::profiles_path()
        .ok_or_else(|| Failure(tr("no home directory to keep guest profiles in")))?;
    let mut profiles = store::load_profiles(&path)?;
    match action {
        None => {
            #[derive(serde::Serialize)]
            struct Row {
                name: String,
                vmm: plan::Vmm,
                machine: String,
                source: &'static str,
                /// libvirt's state; `null` for guests libvirt does not know.
                state: Option<passage_dbus::libvirt::DomainState>,
                /// Groups the guest's definition holds (libvirt hostdevs, or the demo plan).
                groups: Vec<passage_core::GroupId>,
            }
            let mut rows: Vec<Row> = profiles
                .iter()
                .map(|p| Row {
                    name: p.name.clone(),
                    vmm: p.vmm,
                    machine: p.machine.clone(),
                    source: "local",
                    state: None,
                    groups: Vec::new(),
                })
                .collect();
            if cli.demo {
                for g in demo::plan()?.guests {
                    let groups = g.groups.iter().map(|p| p.group).collect();
                    rows.push(Row {
                        name: g.name,
                        vmm: g.vmm,
                        machine: g.machine,
                        source: "demo",
                        state: None,
                        groups,
                    });
                }
            } else {
                match passage_dbus::libvirt::system_domains() {
                    Ok(domains) => {
                        let src = open_source(cli)?;
                        let host = scan::scan(src.root())?;
                        for d in domains {
                            rows.push(Row {
                                groups: d.groups(&host),
                                name: d.name,
                                vmm: plan::Vmm::Libvirt,
                                machine: d.machine.unwrap_or_default(),
                                source: "libvirt",
                                state: Some(d.state),
                            });
                        }
                    }
                    Err(why) => eprintln!("passagectl: {} {why}", tr("note:")),
                }
            }
            if as_json {
                print(&json(&rows)?)?;
            } else if rows.is_empty() {
                print(&tr(
                    "No guests yet: passagectl guests add NAME --vmm qemu\n",
                ))?;
            } else {
                let mut s = String::new();
                for r in rows {
                    let groups: Vec<String> = r.groups.iter().map(|g| g.to_string()).collect();
                    let state = r
                        .state
                        .and_then(|st| serde_json::to_value(st).ok())
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    s.push_str(&format!(
                        "{:<24} {:<17} {:<12} {:<8} {:<9} {}\n",
                        r.name,
                        r.vmm.as_str(),
                        r.machine,
                        r.source,
                        state,
                        if groups.is_empty() {
                            String::new()
                        } else {
                            format!("{} {}", tr("groups"), groups.join(" "))
                        }
                    ));
                }
                print(&s)?;
            }
            Ok(0)
        }
        Some(GuestsAction::Add { name, vmm, machine }) => {
            plan::check_guest_name(name)?;
            store::check_machine(machine)?;
            if profiles.iter().any(|p| &p.name == name) {
                return Err(Failure(trf(
                    "there already is a guest profile named “{name}”",
                    &[("name", name)],
                )));
            }
            profiles.push(store::Profile {
                name: name.clone(),
                vmm: vmm.parse()?,
                machine: machine.clone(),
            });
            store::save_profiles(&path, &profiles)?;
            print(&trf("Added guest {name}.\n", &[("name", name)]))?;
            Ok(0)
        }
        Some(GuestsAction::Remove { name }) => {
            let before = profiles.len();
            profiles.retain(|p| &p.name != name);
            if profiles.len() == before {
                return Err(Failure(trf(
                    "there is no guest profile named “{name}”",
                    &[("name", &name.chars().take(40).collect::<String>())],
                )));
            }
            store::save_profiles(&path, &profiles)?;
            print(&trf("Removed guest {name}.\n", &[("name", name)]))?;
            Ok(0)
        }
    }
}

/// The most domain XML the hook reads from libvirt.
const MAX_DOMAIN_XML: u64 = 16 << 20;

fn hook_qemu(cli: &Cli, domain: &str, op: &str, subop: &str) -> Result<u8, Failure> {
    use std::io::Read;
    if cli.demo {
        return Err(Failure(tr(
            "the libvirt hook acts on this host; it cannot be used with --demo",
        )));
    }
    // Only the calls we act on need the XML; the others return before reading it.
    if !matches!((op, subop), ("prepare", "begin") | ("release", "end")) {
        return Ok(0);
    }
    let mut xml = String::new();
    std::io::stdin()
        .take(MAX_DOMAIN_XML)
        .read_to_string(&mut xml)?;
    // The topology is read from the root the helper drives (/, or --root in tests); the
    // changes go through the helper like any claim.
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let action = passage_core::hook::decide(op, subop, &xml, &host)?;
    let no_prompt = || {
        let mut o = std::collections::HashMap::new();
        // libvirt runs hooks without a terminal: nobody could answer a password prompt.
        o.insert("auth.no_user_interaction", zbus::Variant::Bool(true));
        o
    };
    match action {
        passage_core::hook::Action::Nothing => Ok(0),
        passage_core::hook::Action::Claim(groups) => {
            for g in &groups {
                let id = g.0;
                // The group's members as this host's topology has them: the helper refuses if
                // it sees another group under that number.
                let expected: Vec<passage_core::PciAddress> = plan::assignable_members(&host, *g)
                    .iter()
                    .map(|d| d.address)
                    .collect();
                let mut opts = no_prompt();
                opts.insert("expect_devices", passage_dbus::expect_devices(&expected));
                helper_call(|h| async move { h.claim(id, opts).await }).map_err(|Failure(m)| {
                    Failure(trf(
                        "cannot start {guest}: claiming group {id} failed: {why}",
                        &[("guest", domain), ("id", &g.to_string()), ("why", &m)],
                    ))
                })?;
            }
            Ok(0)
        }
        passage_core::hook::Action::Release(groups) => {
            let mut failed = Vec::new();
            for g in &groups {
                let id = g.0;
                if let Err(Failure(m)) =
                    helper_call(|h| async move { h.release(id, no_prompt()).await })
                {
                    failed.push(trf(
                        "group {id}: {why}",
                        &[("id", &g.to_string()), ("why", &m)],
                    ));
                }
            }
            if failed.is_empty() {
                Ok(0)
            } else {
                Err(Failure(trf(
                    "{guest} stopped, but not every group went back to the host: {failures}",
                    &[("guest", domain), ("failures", &failed.join("; "))],
                )))
            }
        }
    }
}

fn main() -> ExitCode {
    passage_core::i18n::init();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PASSAGE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(msg)) => {
            eprintln!("passagectl: {msg}");
            ExitCode::from(2)
        }
    }
}
