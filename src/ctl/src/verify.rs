//! `passagectl verify GROUP`: whether QEMU can use a group, by QEMU's own steps. Exit 0 usable,
//! 1 not usable.

use crate::common::{helper_call, json, print};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::tr;
use passage_core::vfio::{self, Verdict};
use passage_core::{report, scan, GroupId, HostRoot};
use std::path::Path;

pub fn run(cli: &Cli, group: &str, as_json: bool) -> Result<u8, Failure> {
    let id: GroupId = group.parse()?;
    if cli.demo.is_some() || !cli.root.is_empty() {
        return Err(Failure(tr(
            "verify opens this host's /dev/vfio; it cannot be used with --root or --demo",
        )));
    }
    // Root here runs QEMU's steps itself; anyone else, and anyone on another machine (-H),
    // asks the helper, which runs the same steps as root there.
    let mut said: Option<String> = None;
    let v = if cli.remote()?.is_none() && rustix::process::geteuid().is_root() {
        let root = HostRoot::open("/")?;
        let host = scan::scan(&root)?;
        if !host.iommu_enabled() {
            return Err(crate::common::no_groups());
        }
        vfio::verify(&host, id, Path::new("/dev"), Path::new("/proc"))?
    } else {
        // /dev/vfio is root's: ask the helper, which runs the same steps.
        let v = helper_call(cli, |h| async move { h.verify(id.0).await })?;
        // The helper's words say which ways it checked.
        said = v.usable.then(|| format!("{}\n", v.message));
        if v.usable {
            Verdict::Usable {
                devices: v
                    .devices
                    .iter()
                    .map(|a| a.parse())
                    .collect::<Result<_, _>>()?,
                ways: Vec::new(),
            }
        } else {
            Verdict::NotUsable {
                code: v.code,
                message: v.message,
                remedy: Some(v.remedy).filter(|r| !r.is_empty()),
            }
        }
    };
    print(&if as_json {
        json(&v)?
    } else {
        said.unwrap_or_else(|| report::verify_text(id, &v))
    })?;
    Ok(match v {
        Verdict::Usable { .. } => 0,
        Verdict::NotUsable { .. } => 1,
    })
}
