//! `passagectl list`: the IOMMU groups, their devices and whether they can be given away.

use crate::common::{json, print, read_host, stdout_is_terminal, write_out};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::report;

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    // Here: a scan. With -H: the other machine's helper's model, the same facts.
    let host = read_host(cli)?;
    let r = if as_json && !stdout_is_terminal() {
        // A pipe gets the streaming serializer: the same bytes as serde_json, made on every
        // core a window at a time and written as made.
        write_out(|w| report::write_list_json(&host, w).and_then(|_| w.write_all(b"\n")))
    } else {
        print(&if as_json {
            json(&report::Report::build(&host))?
        } else {
            report::list_text(&host)
        })
        .map(|_| 0)
    };
    // The process ends here: freeing a 10,000-function model piece by piece costs ~9 ms on
    // one core for memory the kernel takes back at exit anyway. (The demo host's temporary
    // tree is gone already: `read_host` dropped it after the scan.)
    std::mem::forget(host);
    r
}
