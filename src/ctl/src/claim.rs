//! `passagectl claim GROUP` and `release GROUP`: a whole group to vfio-pci and back, through
//! the helper.

use crate::common::{helper_call, print, refuse_fake};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};
use passage_core::GroupId;
use std::collections::HashMap;

pub fn claim(cli: &Cli, group: &str, force: bool) -> Result<u8, Failure> {
    let g: GroupId = group.parse()?;
    refuse_fake(cli, "claim")?;
    let t = helper_call(cli, |h| async move {
        let mut opts = HashMap::new();
        opts.insert("force", zbus::Variant::Bool(force));
        h.claim(g.0, opts).await
    })?;
    print(&if t.changed {
        trf(
            "Group {id} is now on vfio-pci, ready for a guest.\n",
            &[("id", &g.to_string())],
        )
    } else {
        trf(
            "Group {id} was already on vfio-pci; nothing changed.\n",
            &[("id", &g.to_string())],
        )
    })?;
    print(&drivers_now(&t.devices))?;
    Ok(0)
}

pub fn release(cli: &Cli, group: &str) -> Result<u8, Failure> {
    let g: GroupId = group.parse()?;
    refuse_fake(cli, "release")?;
    let t = helper_call(cli, |h| async move { h.release(g.0, HashMap::new()).await })?;
    print(&if t.changed {
        trf(
            "Group {id} is back with the host.\n",
            &[("id", &g.to_string())],
        )
    } else {
        trf(
            "Group {id} was not claimed; nothing changed.\n",
            &[("id", &g.to_string())],
        )
    })?;
    print(&drivers_now(&t.devices))?;
    Ok(0)
}

/// Each member of the group and the driver holding it, as the helper read them back after the
/// change ("  0000:0b:00.0 → vfio-pci"): what is, not what was meant.
fn drivers_now(devices: &[passage_dbus::DeviceDriver]) -> String {
    devices
        .iter()
        .map(|d| {
            let driver = if d.driver.is_empty() {
                tr("no driver")
            } else {
                d.driver.clone()
            };
            format!("  {} → {driver}\n", d.address)
        })
        .collect()
}
