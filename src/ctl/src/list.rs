//! `passagectl list`: the IOMMU groups, their devices and whether they can be given away.

use crate::common::{json, open_source, print, stdout_is_terminal};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::{report, scan};

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let rep = report::Report::build(&host);
    print(&if !as_json {
        report::list_text(&host, &rep)
    } else if stdout_is_terminal() {
        json(&rep)?
    } else {
        // A pipe gets the parallel serializer: same bytes as serde_json, on every core.
        rep.to_json()? + "\n"
    })?;
    Ok(0)
}
