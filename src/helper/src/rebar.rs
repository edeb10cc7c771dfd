//! Resizable BARs set before a claim. A GPU's firmware or host driver may grow a BAR to the
//! whole of its memory (16 GiB and more); a guest whose 64-bit PCI window is smaller does not
//! map it, and some guest drivers fail on a size they do not expect. The kernel resizes a BAR
//! (`resourceN_resize`, Linux 6.1 and later) only while no driver holds the device, which
//! during a claim is between the host driver's unbind and vfio-pci's probe: so the size a
//! person chose is kept here (`bars.json`, by address and ids) and the claim engine writes it
//! there, journaled with the size it replaced, which release, rollback and replay write back
//! before the host driver has the device again.

use crate::bootfix::Done;
use crate::claim::StateDir;
use passage_core::doctor::size_text;
use passage_core::i18n::trf;
use passage_core::{Host, PciAddress};
use serde::{Deserialize, Serialize};
use std::path::Path;

const RECORDS: &str = "bars.json";

/// One BAR size a person chose for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarSize {
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    /// The BAR (0–5).
    pub bar: u8,
    /// The size as the kernel takes it: n for 2^n MiB (8 = 256 MiB).
    pub size: u8,
}

impl BarSize {
    pub fn mib(&self) -> u64 {
        1u64.checked_shl(u32::from(self.size)).unwrap_or(0)
    }
}

/// The sizes chosen, for every device; a record no BAR can have (a BAR over 5, a size past
/// 2^47 MiB) makes the list unreadable, as a file that is not JSON does.
pub fn wanted(state: &StateDir) -> Result<Vec<BarSize>, String> {
    let recs: Vec<BarSize> = state.read_list(
        RECORDS,
        &passage_core::i18n::tr("a list of BAR sizes Passage sets"),
    )?;
    if let Some(r) = recs.iter().find(|r| r.bar > 5 || r.size >= 48) {
        return Err(trf(
            "{file} names BAR {bar} of {address} with size 2^{size} MiB, which no BAR has; move it aside to go on",
            &[
                ("file", &state.path().join(RECORDS).display().to_string()),
                ("bar", &r.bar.to_string()),
                ("address", &r.address.to_string()),
                ("size", &r.size.to_string()),
            ],
        ));
    }
    Ok(recs)
}

/// The sizes `bar` of the device at `dir` supports (`resourceN_resize`: bit n = 2^n MiB), or
/// `None` when it is not resizable (or the file is odd).
pub fn supported(dir: &Path, bar: u8) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(format!("resource{bar}_resize"))).ok()?;
    let t = text.trim();
    (!t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(t, 16).ok())
        .flatten()
        .filter(|m| *m != 0)
}

/// The BAR's size now, as the kernel's n (2^n MiB), from the model; `None` when it is not a
/// whole power of two of MiB.
pub fn current(host: &Host, address: PciAddress, bar: u8) -> Option<u8> {
    let b = host
        .devices
        .get(&address)?
        .bars
        .iter()
        .find(|b| b.index == bar)?;
    let mib = b.size / (1024 * 1024);
    (mib.is_power_of_two() && mib * 1024 * 1024 == b.size).then(|| mib.trailing_zeros() as u8)
}

/// Sets (`mib` > 0) or forgets (`mib` = 0) the size of `bar` of `address` for every claim from
/// now on. Checked against what the device supports; nothing is written to the kernel here.
pub fn set(
    root: &Path,
    state: &StateDir,
    host: &Host,
    address: PciAddress,
    bar: u8,
    mib: u64,
) -> Result<Done, String> {
    let a = address.to_string();
    let _lock = state
        .lock_named("bars")
        .map_err(|e| format!("bars.lock: {e}"))?;
    let mut recs = wanted(state)?;
    let same = |r: &BarSize| r.address == address && r.bar == bar;
    if mib == 0 {
        let had = recs.iter().any(same);
        recs.retain(|r| !same(r));
        if had {
            state.write_file(RECORDS, &recs)?;
        }
        return Ok(Done {
            changed: had,
            notes: vec![if had {
                trf(
                    "Passage no longer resizes BAR {bar} of {address} when it claims it.",
                    &[("bar", &bar.to_string()), ("address", &a)],
                )
            } else {
                trf(
                    "Passage does not resize BAR {bar} of {address}; nothing to take back.",
                    &[("bar", &bar.to_string()), ("address", &a)],
                )
            }],
        });
    }
    let d = host.devices.get(&address).ok_or_else(|| {
        trf(
            "There is no PCI device {address} on this host.",
            &[("address", &a)],
        )
    })?;
    if bar > 5 {
        return Err(trf(
            "A PCI function has BARs 0 to 5, not {bar}.",
            &[("bar", &bar.to_string())],
        ));
    }
    let mask = supported(&root.join(&d.sysfs_path), bar).ok_or_else(|| {
        trf(
            "BAR {bar} of {address} is not resizable (the kernel shows no resource{bar}_resize for it).",
            &[("bar", &bar.to_string()), ("address", &a)],
        )
    })?;
    let offered: Vec<String> = (0..48)
        .filter(|n| mask & (1 << n) != 0)
        .map(|n| size_text(1 << n))
        .collect();
    let n = mib.trailing_zeros();
    if !mib.is_power_of_two() || n >= 48 || mask & (1 << n) == 0 {
        return Err(trf(
            "BAR {bar} of {address} cannot be {size}; it can be {sizes}.",
            &[
                ("bar", &bar.to_string()),
                ("address", &a),
                ("size", &size_text(mib)),
                ("sizes", &offered.join(", ")),
            ],
        ));
    }
    let rec = BarSize {
        address,
        vendor_id: d.vendor_id.to_string(),
        device_id: d.device_id.to_string(),
        bar,
        size: n as u8,
    };
    let changed = !recs.contains(&rec);
    recs.retain(|r| !same(r));
    recs.push(rec);
    recs.sort_by_key(|r| (r.address, r.bar));
    if changed {
        state.write_file(RECORDS, &recs)?;
    }
    let mut notes = vec![trf(
        "BAR {bar} of {address} will be {size} whenever Passage claims it from its host driver (resized while no driver holds it, given back at release; a group the boot's udev rule gives to vfio-pci keeps the firmware's size until then).",
        &[("bar", &bar.to_string()), ("address", &a), ("size", &size_text(mib))],
    )];
    if d.on_vfio() {
        notes.push(trf(
            "{address} is on vfio-pci already: release its group and claim it again for the size to take.",
            &[("address", &a)],
        ));
    }
    Ok(Done { changed, notes })
}
