//! `passagectl status`: the groups the helper holds, and any operation it is still undoing.

use crate::common::{helper_call, json, print, refuse_fake};
use crate::Failure;
use passage_core::cli::ctl::Cli;
use passage_core::i18n::{tr, trf};

pub fn run(cli: &Cli, as_json: bool) -> Result<u8, Failure> {
    refuse_fake(cli, "status")?;
    let (claims, persisted, journal) = helper_call(cli, |h| async move {
        let c = h.claims().await?;
        // A helper still running from before an upgrade (it exits only when stopped) has no
        // such method: its status is read all the same, without the persisted groups.
        let p = match h.persisted_groups().await {
            Err(passage_dbus::HelperError::ZBus(zbus::Error::MethodError(name, _, _)))
                if name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod" =>
            {
                Vec::new()
            }
            r => r?,
        };
        let j = h.journal().await?;
        Ok((c, p, j))
    })?;
    if as_json {
        // A persisted group is "held" when the helper holds a group with the same members now
        // (its number may differ from the one recorded: numbers follow probe order).
        let persisted_json: Vec<serde_json::Value> = persisted
            .iter()
            .map(|p| {
                serde_json::json!({
                    "group": p.group,
                    "devices": p.devices,
                    "held": held_now(&claims, p).is_some(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "claims": claims,
            "persisted": persisted_json,
            "pending": journal_json(&journal),
        });
        print(&json(&v)?)?;
        return Ok(0);
    }
    let mut s = String::new();
    if claims.is_empty() {
        s.push_str(&tr("The helper holds no groups.\n"));
    }
    for c in &claims {
        s.push_str(&trf(
            "group {id}: {devices}\n",
            &[
                ("id", &c.group.to_string()),
                ("devices", &c.devices.join(", ")),
            ],
        ));
        if persisted
            .iter()
            .any(|p| held_now(std::slice::from_ref(c), p).is_some())
        {
            s.push_str(&tr(
                "  claimed at every boot (passagectl persist … off stops it)\n",
            ));
        }
    }
    for p in &persisted {
        if held_now(&claims, p).is_none() {
            s.push_str(&trf(
                "group {id} ({devices}) is to be claimed at every boot, but the helper does not hold it now: see journalctl -b -u passage-reclaim.service\n",
                &[
                    ("id", &p.group.to_string()),
                    ("devices", &p.devices.join(", ")),
                ],
            ));
        }
    }
    if !journal.is_empty() {
        s.push_str(&trf(
            "{n} operation(s) did not finish; the helper undoes them when it starts.\n",
            &[("n", &journal.len().to_string())],
        ));
    }
    print(&s)?;
    Ok(0)
}

/// The held group whose members are the persisted group's recorded ones.
fn held_now<'a>(
    claims: &'a [passage_dbus::HeldGroup],
    persisted: &passage_dbus::HeldGroup,
) -> Option<&'a passage_dbus::HeldGroup> {
    claims.iter().find(|c| {
        !persisted.devices.is_empty() && persisted.devices.iter().all(|d| c.devices.contains(d))
    })
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
