//! `passagectl`: the command line over Passage's library.
//!
//! Thin: parse words into typed values, call the library, print. Exit 0 on success, 2 with a
//! one-line reason on stderr otherwise (1 is reserved for "not usable" answers such as verify's).

use clap::{Parser, Subcommand};
use passage::i18n::{tr, trf};
use passage::{demo, names, report, scan, watch, HostRoot, Target};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "passagectl",
    version,
    about = "Give host PCI devices to virtual machines, one IOMMU group at a time"
)]
struct Cli {
    /// Read a recorded or prepared host root instead of / (also: PASSAGE_ROOT).
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "demo")]
    root: Option<PathBuf>,
    /// Use the bundled demo host (a workstation with a GPU to give away).
    #[arg(long, global = true)]
    demo: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List IOMMU groups, their devices and whether they can be given to a guest.
    List {
        /// Machine-readable output (schema in docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Explain one device (DDDD:BB:SS.F) or group (N): why it is in its state, what to do.
    Explain {
        /// A PCI address such as 0000:01:00.0, or a group number.
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Record this host's PCI facts into DIR, for bug reports; `--root DIR` reads them back.
    Record {
        /// Directory to create (must not exist or be empty).
        out: PathBuf,
    },
    /// Check that QEMU can use GROUP, by QEMU's own steps; exit 0 usable, 1 not usable, 2 error.
    Verify {
        /// An IOMMU group number.
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Give a whole group to vfio-pci, through the helper (polkit asks for a password).
    Claim {
        group: String,
        /// Claim even a group the host needs (its root disk, console or network).
        #[arg(long)]
        force: bool,
    },
    /// Give a claimed group back to the host drivers it was taken from, through the helper.
    Release { group: String },
    /// Claim GROUP at every boot (on), or stop (off), through the helper.
    Persist {
        group: String,
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// The groups the helper holds, and any operation it is still undoing.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print device events (add, remove, bind, unbind, change) as they happen.
    Monitor {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
    },
}

/// A failure with a sentence for the person at the terminal.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

enum Source {
    Root(HostRoot),
    Demo(demo::Demo),
}

impl Source {
    fn root(&self) -> &HostRoot {
        match self {
            Source::Root(r) => r,
            Source::Demo(d) => &d.root,
        }
    }
}

fn open_source(cli: &Cli) -> Result<Source, Failure> {
    if cli.demo {
        return Ok(Source::Demo(demo::open()?));
    }
    let path = cli
        .root
        .clone()
        .or_else(|| std::env::var_os(names::ROOT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(Source::Root(HostRoot::open(path)?))
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
    F: FnOnce(passage::dbus::HelperProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, passage::dbus::HelperError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let h = passage::dbus::connect().await.map_err(|e| {
            Failure(trf("cannot reach the Passage helper on the system bus ({error}); is passage-helper installed?", &[("error", &e.to_string())]))
        })?;
        f(h).await.map_err(|e| Failure(helper_error_text(&e)))
    })
}

fn helper_error_text(e: &passage::dbus::HelperError) -> String {
    use passage::dbus::HelperError as E;
    match e {
        E::NotFound(m)
        | E::InvalidArgs(m)
        | E::Busy(m)
        | E::BadState(m)
        | E::HostCritical(m)
        | E::Failed(m) => m.clone(),
        E::NotAuthorized(m) => trf("not authorized: {why}", &[("why", m)]),
        E::ZBus(zbus::Error::MethodError(name, msg, _))
            if name
                .as_str()
                .starts_with("org.freedesktop.DBus.Error.ServiceUnknown") =>
        {
            trf(
                "the Passage helper is not installed or could not start ({detail})",
                &[("detail", msg.as_deref().unwrap_or(""))],
            )
        }
        E::ZBus(z) => z.to_string(),
    }
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
            let n = passage::host::write_recording(out, &root.recording())?;
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
            let id: passage::GroupId = group.parse()?;
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
                passage::vfio::verify(
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
                    passage::vfio::Verdict::Usable {
                        devices: message
                            .split_whitespace()
                            .filter_map(|a| a.parse().ok())
                            .collect(),
                    }
                } else {
                    passage::vfio::Verdict::NotUsable {
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
                passage::vfio::Verdict::Usable { devices } => {
                    if !*as_json {
                        let list: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
                        print(&trf("Group {id} is usable by QEMU: viable, attached to a VFIO container with the IOMMU, devices open: {devices}.\n", &[("id", &id.to_string()), ("devices", &list.join(", "))]))?;
                    }
                    Ok(0)
                }
                passage::vfio::Verdict::NotUsable {
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
            let g: passage::GroupId = group.parse()?;
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
            let g: passage::GroupId = group.parse()?;
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
            let g: passage::GroupId = group.parse()?;
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
    }
}

fn main() -> ExitCode {
    passage::i18n::init();
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
