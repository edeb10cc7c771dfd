//! `passagectl doctor`: what stands between this host and pass-through (`core::doctor`).

use crate::common::{json, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::explain::Severity;
use passage_core::{doctor, scan};

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let mut facts = doctor::read(src.root(), &host);
    // The rehearsals are in the helper's root-only state directory: someone else's doctor
    // asks the helper (they are per model and kernel, true of any machine with that model).
    if facts.rehearsals.is_empty() && cli.demo.is_none() {
        facts.rehearsals = passage_dbus::rehearsals_blocking();
    }
    let report = doctor::examine(&host, &facts);
    print(&if as_json {
        json(&report)?
    } else {
        doctor::text(&report)
    })?;
    // Like verify: 1 says "not ready", for scripts; 2 stays "could not tell".
    let blocked = report
        .findings
        .iter()
        .any(|f| f.reason.severity == Severity::Blocker);
    Ok(u8::from(blocked))
}
