//! `passagectl persist GROUP on|off`: claim a group at every boot, or stop, through the helper.

use crate::common::{helper_call, print, refuse_fake};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::trf;
use passage_core::GroupId;
use std::fmt::Write as _;

pub fn run(cli: &Cli, group: &str, state: &str) -> Result<u8, Failure> {
    let g: GroupId = group.parse()?;
    refuse_fake(cli, "persist")?;
    let on = state == "on";
    let notes = helper_call(cli, |h| async move {
        h.persist(g.0, on, std::collections::HashMap::new()).await
    })?
    .notes;
    let mut s = if on {
        trf("Group {id} will be claimed for vfio-pci at every boot (by address, checked against its ids).\n", &[("id", &g.to_string())])
    } else {
        trf(
            "Group {id} is no longer claimed at boot.\n",
            &[("id", &g.to_string())],
        )
    };
    for n in notes {
        let _ = writeln!(s, "  · {n}");
    }
    print(&s)?;
    Ok(0)
}
