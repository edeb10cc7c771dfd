//! `passagectl explain TARGET`: one device or group, why it is in its state and what to do.

use crate::common::{json, open_source, print, read_host};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::{report, scan, Target};

pub fn run(cli: &Cli, target: &str, as_json: bool) -> Result<u8, Failure> {
    let t: Target = target.parse()?;
    let host = if cli.remote()?.is_some() {
        // The other machine's helper's model: the whole host, kept current there.
        read_host(cli)?
    } else {
        let src = open_source(cli)?;
        // One group's story needs one group's facts; the whole host is read only when the
        // quick look cannot be sure (then it gives the same answer, or the same error).
        match scan::scan_target(src.root(), t) {
            Some(h) => h,
            None => scan::scan(src.root())?,
        }
    };
    if let Target::Group(_) = t {
        if !host.iommu_enabled() {
            return Err(crate::common::no_groups());
        }
    }
    let e = report::explanation(&host, t)?;
    print(&if as_json {
        json(&e)?
    } else {
        report::explain_text(&host, &e)
    })?;
    Ok(0)
}
