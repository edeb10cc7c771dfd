//! `passagectl monitor`: device events (add, remove, bind, unbind, change) as they happen.

use crate::common::print;
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::tr;
use passage_core::{report, scan, watch, HostRoot};

pub fn run(cli: &Cli, as_json: bool, max_events: Option<u64>) -> Result<u8, Failure> {
    if cli.demo || cli.root.is_some() {
        return Err(Failure(tr(
            "monitor watches this host's live devices; it cannot be used with --root or --demo",
        )));
    }
    let root = HostRoot::open("/")?;
    let mut host = scan::scan(&root)?;
    let mon = watch::Monitor::open()?;
    if !as_json {
        print(&report::monitor_header_text(mon.source))?;
    }
    let mut seen = 0u64;
    loop {
        for ev in mon.wait(None)? {
            let u = watch::apply(&mut host, &root, &ev)?;
            print(&if as_json {
                report::update_json(&u)?
            } else {
                report::update_text(&u)
            })?;
            seen += 1;
            if max_events.is_some_and(|m| seen >= m) {
                return Ok(0);
            }
        }
    }
}
