//! `passagectl export`: a guest's VM configuration from a plan, in one VMM's format.

use crate::common::{load_plan, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::tr;
use passage_core::{export, scan, store};
use std::path::Path;

pub fn run(
    cli: &Cli,
    plan: Option<&Path>,
    guest: Option<&str>,
    format: &str,
    iommufd: bool,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let (p, _) = load_plan(cli, plan)?;
    let format: export::Format = format.parse()?;
    let opts = export::Options {
        iommufd,
        ..Default::default()
    };
    let e = export::export(&p, &host, guest, format, &opts)?;
    for n in &e.notes {
        eprintln!("passagectl: {} {n}", tr("note:"));
    }
    match output {
        Some(path) => store::write_atomic(path, e.text.as_bytes())
            .map_err(|err| Failure(format!("{}: {err}", path.display())))?,
        None => print(&e.text)?,
    }
    Ok(0)
}
