//! `passagectl doctor`: what stands between this host and pass-through (`core::doctor`).

use crate::common::{json, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::explain::Severity;
use passage_core::{doctor, scan};

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let facts = doctor::read(src.root(), &host);
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
