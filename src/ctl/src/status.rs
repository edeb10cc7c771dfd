//! `passagectl status`: the groups the helper holds, and any operation it is still undoing.

use crate::common::{helper_call, json, print, refuse_fake};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    refuse_fake(cli, "status")?;
    let (claims, journal) = helper_call(|h| async move {
        let c = h.claims().await?;
        let j = h.journal().await?;
        Ok((c, j))
    })?;
    if as_json {
        let v = serde_json::json!({"claims": claims, "pending": journal_json(&journal)});
        print(&json(&v)?)?;
    } else if claims.is_empty() {
        print(&tr("The helper holds no groups.\n"))?;
    } else {
        let mut s = String::new();
        for c in claims {
            s.push_str(&trf(
                "group {id}: {devices}\n",
                &[
                    ("id", &c.group.to_string()),
                    ("devices", &c.devices.join(", ")),
                ],
            ));
        }
        print(&s)?;
    }
    Ok(0)
}

/// The helper's unfinished operations as `status --json` has always printed them: the journal's
/// own shape, with `null` where the kernel had nothing.
fn journal_json(pending: &[passage_dbus::PendingOperation]) -> serde_json::Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    pending
        .iter()
        .map(|p| {
            serde_json::json!({
                "version": p.version,
                "operation": p.operation,
                "group": p.group,
                "members": p.members.iter().map(|m| serde_json::json!({
                    "address": m.address,
                    "vendor_id": m.vendor_id,
                    "device_id": m.device_id,
                    "driver": opt(&m.driver),
                    "driver_override": opt(&m.driver_override),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}
