//! The reset rehearsal: what a guest's reboot does to a device, tried while no guest has it.
//! The group is claimed for vfio-pci (as a guest's start would), each member reset the way
//! the kernel resets it for VFIO (`reset`, by its first `reset_method`), checked to answer as
//! the same device afterwards, and the group given back to the drivers it came from (as the
//! guest's end would). The result is kept per device model and kernel release
//! (`resets.json`), because a reset bug belongs to the model and the kernel's quirks, not to
//! one card — "survives a guest reboot: yes/no".

use crate::claim::{self, ClaimOptions, Held, Kernel, StateDir};
use passage_core::i18n::{tr, trf};
use passage_core::{GroupId, Host};
use std::path::Path;

const RECORDS: &str = "resets.json";

pub use passage_core::doctor::Rehearsal;

/// The vendor and device ids as the device answers them now: the first dword of `config`,
/// read from the device (sysfs's `vendor` and `device` files are what the kernel read once,
/// when it found it). A device that does not answer reads all ones.
fn answers_as(root: &Path, d: &passage_core::model::Device) -> bool {
    let Ok(mut f) = std::fs::File::open(root.join(&d.sysfs_path).join("config")) else {
        return false;
    };
    let mut b = [0u8; 4];
    if std::io::Read::read_exact(&mut f, &mut b).is_err() {
        return false;
    }
    let (v, i) = (
        u16::from_le_bytes([b[0], b[1]]),
        u16::from_le_bytes([b[2], b[3]]),
    );
    v != 0xffff && v == d.vendor_id.0 && i == d.device_id.0
}

/// The card's virtual functions now, from sysfs (`virtfnN` links): a PF's reset (or its
/// driver letting go) takes every VF away, whoever uses them.
fn has_vfs(root: &Path, d: &passage_core::model::Device) -> bool {
    std::fs::read_dir(root.join(&d.sysfs_path))
        .map(|r| {
            r.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
        })
        .unwrap_or(false)
        || std::fs::read_to_string(root.join(&d.sysfs_path).join("sriov_numvfs"))
            .is_ok_and(|n| n.trim() != "0" && !n.trim().is_empty())
}

pub fn records(state: &StateDir) -> Result<Vec<Rehearsal>, String> {
    state.read_list(RECORDS, &tr("a list of reset rehearsals"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn yes_no(b: bool) -> String {
    if b {
        tr("yes")
    } else {
        tr("no")
    }
}

fn in_use(k: &dyn Kernel, g: GroupId) -> Result<(), String> {
    let holders = k.holders(g);
    if holders.is_empty() {
        return Ok(());
    }
    Err(trf(
        "Group {id} is open by {who}: a guest has it now, and a rehearsal would reset it under the guest. Try again when it is stopped.",
        &[("id", &g.to_string()), ("who", &holders.join(", "))],
    ))
}

/// Rehearses group `g`'s reset with the group held; `scan` reads the host afresh. Returns
/// whether every member survives, and a line per member.
pub fn rehearse(
    root: &Path,
    state: &StateDir,
    k: &dyn Kernel,
    held: &Held<'_>,
    g: GroupId,
    scan: &dyn Fn() -> Result<Host, String>,
) -> Result<(bool, Vec<String>), String> {
    // The records first: a file that cannot take the result refuses before anything moves.
    let mut recs = records(state)?;
    let host = scan()?;
    in_use(k, g)?;
    let members: Vec<passage_core::model::Device> = passage_core::plan::claimed_members(&host, g)
        .into_iter()
        .cloned()
        .collect();
    if members.is_empty() {
        return Err(trf(
            "There is no IOMMU group {id} with a device to reset on this host.",
            &[("id", &g.to_string())],
        ));
    }
    if let Some(pf) = members.iter().find(|d| has_vfs(root, d)) {
        return Err(trf(
            "{address} has virtual functions now: its reset (and its driver letting go for the rehearsal) would take them all away, from guests too. Rehearse it with none (passagectl vfs {address} 0).",
            &[("address", &pf.address.to_string())],
        ));
    }
    let was_claimed = members.iter().all(|d| d.on_vfio());
    if !was_claimed {
        claim::claim_held(&host, g, &ClaimOptions { force: false }, k, state, held)
            .map_err(|e| e.to_string())?;
    }
    let kernel = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut tried = Vec::new();
    for d in &members {
        let methods = std::fs::read_to_string(root.join(&d.sysfs_path).join("reset_method"))
            .unwrap_or_default();
        let method = Some(methods.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|m| !m.is_empty());
        // A guest may have started on a group that was on vfio-pci already (libvirt takes no
        // lock of ours): asked again right before each reset.
        if let Err(e) = in_use(k, g) {
            if !was_claimed {
                let _ = scan().and_then(|now| {
                    claim::release_held(&now, g, k, state, held).map_err(|e| e.to_string())
                });
            }
            return Err(e);
        }
        let reset = method.is_some()
            && k.write(
                &Path::new("sys/bus/pci/devices")
                    .join(d.address.to_string())
                    .join("reset"),
                "1",
            )
            .is_ok();
        tried.push(Rehearsal {
            vendor_id: d.vendor_id.to_string(),
            device_id: d.device_id.to_string(),
            kernel: kernel.clone(),
            address: d.address,
            method,
            reset,
            answers: answers_as(root, d),
            back: None,
            at: now(),
        });
    }
    // Given back as a guest's end gives it back, to the drivers it came from. A release that
    // fails is no property of the model: nothing is recorded, and the error says so.
    if !was_claimed {
        scan()
            .and_then(|now| claim::release_held(&now, g, k, state, held).map_err(|e| e.to_string()))
            .map_err(|e| {
                trf(
                    "The rehearsal could not give group {id} back ({error}); nothing was recorded. passagectl release {id} gives it back.",
                    &[("id", &g.to_string()), ("error", &e)],
                )
            })?;
        for (t, d) in tried.iter_mut().zip(&members) {
            if d.driver.is_some() {
                let driver = k.driver_of(d.address).ok().flatten();
                t.back = Some(driver == d.driver);
            }
        }
    }
    // Kept per model and kernel: the newest rehearsal of each.
    for t in &tried {
        recs.retain(|r| {
            !(r.vendor_id == t.vendor_id && r.device_id == t.device_id && r.kernel == t.kernel)
        });
        recs.push(t.clone());
    }
    state.write_file(RECORDS, &recs)?;
    let notes: Vec<String> = tried
        .iter()
        .zip(&members)
        .map(|(t, d)| {
            let back = match t.back {
                None if was_claimed => tr("it stays on vfio-pci, where it was"),
                None => tr("it had no driver to go back to"),
                Some(b) => trf(
                    "back on {driver}: {yes}",
                    &[
                        ("driver", d.driver.as_deref().unwrap_or("-")),
                        ("yes", &yes_no(b)),
                    ],
                ),
            };
            let survives = match t.survives() {
                Some(b) => yes_no(b),
                None => tr("not known (it has no reset of its own; VFIO may reset its slot or bus with the whole group, which was not tried)"),
            };
            trf(
                "{address} ({name}): reset ({method}): {reset}; answers afterwards: {answers}; {back}. Survives a guest reboot: {survives}.",
                &[
                    ("address", &d.address.to_string()),
                    ("name", &d.display_name()),
                    ("method", t.method.as_deref().unwrap_or("-")),
                    ("reset", &yes_no(t.reset)),
                    ("answers", &yes_no(t.answers)),
                    ("back", &back),
                    ("survives", &survives),
                ],
            )
        })
        .collect();
    Ok((tried.iter().all(|t| t.survives() != Some(false)), notes))
}
