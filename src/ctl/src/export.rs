//! `passagectl export`: a guest's VM configuration from a plan, in one VMM's format.

use crate::common::{load_plan, open_source, print};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::export::qemu;
use passage_core::i18n::tr;
use passage_core::{demo, export, names, scan, store, vfio};
use std::path::Path;

pub fn run(
    cli: &Cli,
    plan: Option<&Path>,
    guest: Option<&str>,
    format: &str,
    iommufd: Option<bool>,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let src = open_source(cli)?;
    let host = scan::scan(src.root())?;
    let (p, _) = load_plan(cli, plan)?;
    let format: export::Format = format.parse()?;
    // QEMU's form follows this host unless told: iommufd where the kernel has it and the QEMU
    // that runs guests here takes it. The QEMU asked is this machine's, so only for the live
    // root (or the one $PASSAGE_QEMU names); a recording's QEMU is not known.
    let mut first_notes = Vec::new();
    let iommufd = match iommufd {
        Some(v) => v,
        None if format == export::Format::Qemu => {
            let live = matches!(&src, demo::Source::Root(r) if r.path() == Path::new("/"));
            let program = qemu::program();
            let qemu = (live || std::env::var_os(names::QEMU_ENV).is_some())
                .then(|| (program.as_str(), qemu::version(&program)));
            let (on, note) = qemu::choose_iommufd(vfio::kernel_interfaces(src.root()), qemu);
            first_notes.extend(note);
            on
        }
        None => false,
    };
    let opts = export::Options {
        iommufd,
        ..Default::default()
    };
    let e = export::export(&p, &host, guest, format, &opts)?;
    for n in first_notes.iter().chain(&e.notes) {
        eprintln!("passagectl: {} {n}", tr("note:"));
    }
    match output {
        Some(path) => store::write_atomic(path, e.text.as_bytes())
            .map_err(|err| Failure(format!("{}: {err}", path.display())))?,
        None => print(&e.text)?,
    }
    Ok(0)
}
