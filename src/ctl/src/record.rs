//! `passagectl record DIR`: this host's PCI facts into a directory, for bug reports.

use crate::common::print;
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::{names, scan, HostRoot};
use std::path::{Path, PathBuf};

pub fn run(cli: &Cli, out: &Path) -> Result<u8, Failure> {
    if let Some(r) = cli.remote()? {
        return Err(Failure(trf(
            "record reads this machine's files; run it on {host} (ssh {host} passagectl record DIR) and copy the directory",
            &[("host", &r.to_string())],
        )));
    }
    if cli.demo.is_some() {
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
        .one_root()?
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(names::ROOT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let root = HostRoot::open_recording(path)?;
    let host = scan::scan(&root)?;
    // What the doctor reads, so `doctor --root DIR` answers as it did here.
    let facts = passage_core::doctor::read(&root, &host);
    let n = passage_core::host::write_recording(out, &root.recording())?;
    // Prove the recording reads back to the same model before calling it done.
    let again = HostRoot::open(out)?;
    let back = scan::scan(&again)?;
    if back != host || passage_core::doctor::read(&again, &back) != facts {
        return Err(Failure(trf(
            "the recording in {dir} does not read back to the same facts; please report this",
            &[("dir", &out.display().to_string())],
        )));
    }
    print(&trf("Recorded {n} files about {d} devices and {g} groups into {dir}.\nRead it back with: passagectl --root {dir} list\n", &[
        ("n", &n.to_string()),
        ("d", &host.devices.len().to_string()),
        ("g", &host.groups.len().to_string()),
        ("dir", &out.display().to_string()),
    ]))?;
    Ok(0)
}
