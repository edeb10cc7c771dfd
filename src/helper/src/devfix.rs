//! Per-device remedies the doctor names and Passage carries out: today keeping a GPU powered
//! (`d3cold_allowed` 0), now through sysfs and at every boot through a udev rule that checks
//! the device's ids at its address (a renumbered bus never hits another card). Each change is
//! read back from the kernel before it is called done, recorded with the value it replaced
//! (`devices.json`), and `unfix` writes that value back and drops the rule's line.

use crate::bootfix::Done;
use crate::claim::StateDir;
use passage_core::i18n::{tr, trf};
use passage_core::{Host, PciAddress};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The udev rule, relative to the host root (after the persisted claims' 61-…).
pub const UDEV_RULE: &str = "etc/udev/rules.d/62-passage-power.rules";
const RECORDS: &str = "devices.json";

/// One device setting Passage changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub code: String,
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    /// The attribute's value before (`1`).
    pub before: String,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The device settings Passage changed.
pub fn records(state: &StateDir) -> Result<Vec<Record>, String> {
    state.read_list(RECORDS, &tr("a list of Passage's device settings"))
}

/// The rule's text for these records.
pub fn render_rule(recs: &[Record]) -> String {
    let mut s = String::from(
        "# Written by passage-helper (passagectl fix d3cold-allowed). Each line keeps one device\n\
         # powered (no D3cold) from boot, if the device at that address still has the recorded ids.\n",
    );
    for r in recs.iter().filter(|r| r.code == "d3cold-allowed") {
        s.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{}\", ATTR{{vendor}}==\"0x{}\", ATTR{{device}}==\"0x{}\", ATTR{{d3cold_allowed}}=\"0\"\n",
            r.address, r.vendor_id, r.device_id
        ));
    }
    s
}

/// The rule for these records, or none when nothing is kept powered.
fn write_rule(root: &Path, recs: &[Record]) -> Result<(), String> {
    let keeps = recs.iter().any(|r| r.code == "d3cold-allowed");
    crate::persist::put_rule(
        &root.join(UDEV_RULE),
        keeps.then(|| render_rule(recs)).as_deref(),
    )
}

/// Writes `value` to the attribute and reads it back.
fn set(attr: &Path, value: &str) -> Result<(), String> {
    std::fs::write(attr, value).map_err(|e| io_err(&attr.display().to_string(), e))?;
    let now = std::fs::read_to_string(attr).map_err(|e| io_err(&attr.display().to_string(), e))?;
    if now.trim() == value {
        Ok(())
    } else {
        Err(trf(
            "{file} reads {now} after {value} was written: the kernel did not take it",
            &[
                ("file", &attr.display().to_string()),
                ("now", now.trim()),
                ("value", value),
            ],
        ))
    }
}

/// Keeps `address` powered (`undo`: lets the kernel power it off again, as before).
pub fn d3cold(
    root: &Path,
    state: &StateDir,
    host: &Host,
    address: PciAddress,
    undo: bool,
) -> Result<Done, String> {
    let _lock = state
        .lock_named("devices")
        .map_err(|e| io_err("devices.lock", e))?;
    let mut recs = records(state)?;
    let same = |r: &Record| r.code == "d3cold-allowed" && r.address == address;
    if undo {
        let Some(rec) = recs.iter().find(|r| same(r)).cloned() else {
            return Ok(Done {
                changed: false,
                notes: vec![trf(
                    "Passage has not kept {address} powered; nothing to take back.",
                    &[("address", &address.to_string())],
                )],
            });
        };
        // The rule goes whether or not the card is still there.
        recs.retain(|r| !same(r));
        write_rule(root, &recs)?;
        state.write_file(RECORDS, &recs)?;
        let mut notes = vec![tr("The udev rule no longer keeps it powered at boot.")];
        // The kernel's value back only on the same card (by its ids) at that address.
        let dir = root.join("sys/bus/pci/devices").join(address.to_string());
        let ids = crate::claim::read_identity(&dir).ok().flatten();
        let recorded = (
            u16::from_str_radix(&rec.vendor_id, 16).ok(),
            u16::from_str_radix(&rec.device_id, 16).ok(),
        );
        if ids.map(|(v, d)| (Some(v), Some(d))) == Some(recorded) {
            match set(&dir.join("d3cold_allowed"), &rec.before) {
                Ok(()) => notes.push(trf(
                    "{address} may be powered off while idle again (d3cold_allowed {value}).",
                    &[("address", &address.to_string()), ("value", &rec.before)],
                )),
                Err(e) => notes.push(e),
            }
        }
        return Ok(Done {
            changed: true,
            notes,
        });
    }
    let d = host.devices.get(&address).ok_or_else(|| {
        trf(
            "There is no PCI device {address} on this host.",
            &[("address", &address.to_string())],
        )
    })?;
    let attr = root.join(&d.sysfs_path).join("d3cold_allowed");
    let before = std::fs::read_to_string(&attr)
        .map_err(|e| io_err(&attr.display().to_string(), e))?
        .trim()
        .to_string();
    if !matches!(before.as_str(), "0" | "1") {
        return Err(trf(
            "{file} reads “{value}”, not 0 or 1: Passage leaves it alone",
            &[
                ("file", &attr.display().to_string()),
                ("value", &before.chars().take(16).collect::<String>()),
            ],
        ));
    }
    let known = recs.iter().any(same);
    if before == "0" && known {
        return Ok(Done {
            changed: false,
            notes: vec![tr("It is kept powered already, now and at every boot.")],
        });
    }
    set(&attr, "0")?;
    if !known {
        recs.push(Record {
            code: "d3cold-allowed".into(),
            address,
            vendor_id: d.vendor_id.to_string(),
            device_id: d.device_id.to_string(),
            before: before.clone(),
        });
    }
    if let Err(e) = write_rule(root, &recs).and_then(|()| state.write_file(RECORDS, &recs)) {
        // Nothing half-done: the kernel's value back, the rule as it was.
        let _ = set(&attr, &before);
        recs.retain(|r| !same(r));
        let _ = write_rule(root, &recs);
        return Err(trf(
            "{error}. {address} is as it was.",
            &[("error", &e), ("address", &address.to_string())],
        ));
    }
    Ok(Done {
        changed: true,
        notes: vec![
            trf("{address} is kept powered now (d3cold_allowed 0).", &[("address", &address.to_string())]),
            trf("A udev rule ({file}) keeps it so at every boot, while the device at that address has the same ids.", &[("file", &format!("/{UDEV_RULE}"))]),
        ],
    })
}
