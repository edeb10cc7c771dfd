//! What the subcommands share: printing, the host source, the helper on the system bus, the
//! plan and libvirt's guests.

use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::trf;
use passage_core::session::PlanSource;
use passage_core::{demo, plan, scan, Host};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes to standard output; a reader that went away is not an error.
pub fn print(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // `passagectl list | head` closes the pipe: that is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes to standard output through a large buffer, for output made in pieces; a reader
/// that went away is not an error.
pub fn write_out(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<u8, Failure> {
    let out = std::io::stdout().lock();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    match f(&mut w).and_then(|_| w.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Pretty for a person at a terminal, compact for a pipe (a 10,000-function host's listing is
/// tens of megabytes pretty-printed).
pub fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    if stdout_is_terminal() {
        Ok(serde_json::to_string_pretty(v)? + "\n")
    } else {
        Ok(serde_json::to_string(v)? + "\n")
    }
}

/// Whether a person (rather than a pipe or a file) reads standard output.
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// The host the global options name: `--demo`, `--root DIR`, `PASSAGE_ROOT`, else `/`. A
/// command that reads this machine's files directly cannot read another's: `-H` is refused here
/// with the commands that take it.
pub fn open_source(cli: &Cli) -> Result<demo::Source, Failure> {
    if let Some(r) = cli.remote()? {
        return Err(Failure(trf(
            "this command reads this machine's own files, so it cannot be used with -H {host}; with -H, use list, explain, draw, monitor, status, verify, claim, release, persist or cluster export (or run it on {host})",
            &[("host", &r.to_string())],
        )));
    }
    Ok(demo::Source::open(cli.demo, cli.one_root()?)?)
}

/// The host model: read here from `--demo`, `--root` or `/`, or with `-H` asked of the other
/// machine's helper (the model it keeps current; the same JSON `list --json` is made from).
pub fn read_host(cli: &Cli) -> Result<Host, Failure> {
    if cli.remote()?.is_none() {
        return Ok(scan::scan(open_source(cli)?.root())?);
    }
    let json = helper_call(cli, |h| async move { h.describe_host().await })?;
    serde_json::from_str(&json).map_err(|e| {
        Failure(trf(
            "{host}: the helper's description of the host could not be read ({error}); is the helper there older than this passagectl?",
            &[("host", &on_where(cli)), ("error", &e.to_string())],
        ))
    })
}

/// The machine a command acts on, for messages: `-H`'s host, else "this host".
pub fn on_where(cli: &Cli) -> String {
    match cli.remote() {
        Ok(Some(r)) => r.to_string(),
        _ => passage_core::i18n::tr("this host"),
    }
}

/// Commands that change this host's drivers only make sense on this host.
pub fn refuse_fake(cli: &Cli, what: &str) -> Result<(), Failure> {
    cli.remote()?;
    if cli.demo.is_some() || !cli.root.is_empty() {
        return Err(Failure(trf("{command} acts on this host through the helper; it cannot be used with --root or --demo", &[("command", what)])));
    }
    Ok(())
}

/// Runs one conversation with the helper on the system bus — this machine's, or with `-H` the
/// other machine's over SSH — with errors in words (naming the machine when it is another).
pub fn helper_call<T, F, Fut>(cli: &Cli, f: F) -> Result<T, Failure>
where
    F: FnOnce(passage_dbus::HelperProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, passage_dbus::HelperError>>,
{
    let remote = cli.remote()?.cloned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let h = passage_dbus::remote::helper_on(remote.as_ref())
            .await
            .map_err(|e| match e {
                passage_dbus::remote::BusError::Local(e) => Failure(trf("cannot reach the Passage helper on the system bus ({error}); is passage-helper installed?", &[("error", &e)])),
                remote => Failure(remote.to_string()),
            })?;
        f(h).await.map_err(|e| {
            Failure(match (&remote, &e) {
                // Over SSH no authentication agent can ask: say what does work.
                (Some(r), passage_dbus::HelperError::NotAuthorizedCanObtain(why)) => trf(
                    "{host}: not authorized without a password, and nobody could be asked for one over SSH: {why} Connect as root@{name}, or have an administrator there let your group do it (docs/REMOTE.md).",
                    &[("host", &r.to_string()), ("why", why), ("name", &r.host)],
                ),
                (Some(r), _) => format!("{r}: {}", passage_dbus::error_text(&e)),
                (None, _) => passage_dbus::error_text(&e),
            })
        })
    })
}

/// Where the plan comes from: `--plan FILE`, the demo plan, or the user's default file, which
/// must be readable here (the command line never works on a stand-in). The path is `None` for
/// the built-in demo plan, which cannot be saved over.
pub fn load_plan(cli: &Cli, path: Option<&Path>) -> Result<(plan::Plan, Option<PathBuf>), Failure> {
    Ok(PlanSource::choose(path, cli.demo).open()?.exact()?)
}

/// Asked for a group where the IOMMU is off: the same sentence from every subcommand.
pub fn no_groups() -> Failure {
    Failure(passage_core::i18n::tr(
        "there are no IOMMU groups on this host: the IOMMU is off (see “passagectl list”)",
    ))
}
