//! The reset rehearsal: what a guest's reboot does to a device, tried while no guest has it.
//! The group is claimed for vfio-pci (as a guest's start would), each member reset the way
//! the kernel resets it for VFIO (`reset`, by its first `reset_method`), checked to answer as
//! the same device afterwards, and the group given back to the drivers it came from (as the
//! guest's end would). The result is kept per device model and kernel release
//! (`resets.json`), because a reset bug belongs to the model and the kernel's quirks, not to
//! one card — "survives a guest reboot: yes/no".

use crate::claim::{self, ClaimOptions, Held, Kernel, StateDir};
use passage_core::i18n::{tr, trf};
use passage_core::{GroupId, Host, PciAddress};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

const RECORDS: &str = "resets.json";

/// What one rehearsal found for one device model on one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsal {
    pub vendor_id: String,
    pub device_id: String,
    /// The kernel release it was tried on.
    pub kernel: String,
    /// The device it was tried on.
    pub address: PciAddress,
    /// The kernel's first reset method for it (`None`: it has none).
    pub method: Option<String>,
    /// The reset was done without an error.
    pub reset: bool,
    /// It answered as the same device afterwards.
    pub answers: bool,
    /// Its host driver took it back (`None`: it was on vfio-pci before, so nothing to give back).
    pub back: Option<bool>,
    /// Seconds since the epoch.
    pub at: u64,
}

impl Rehearsal {
    /// Survives a guest reboot: reset, answered, and (where it had one) back on its driver.
    pub fn survives(&self) -> bool {
        self.reset && self.answers && self.back != Some(false)
    }
}

pub fn records(state: &StateDir) -> Result<Vec<Rehearsal>, String> {
    let p = state.path().join(RECORDS);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            trf(
                "{file} is not a list of reset rehearsals ({error}); move it aside to go on",
                &[
                    ("file", &p.display().to_string()),
                    ("error", &e.to_string()),
                ],
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
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
    let host = scan()?;
    let holders = k.holders(g);
    if !holders.is_empty() {
        return Err(trf(
            "Group {id} is open by {who}: a guest has it now, and a rehearsal would reset it under the guest. Try again when it is stopped.",
            &[("id", &g.to_string()), ("who", &holders.join(", "))],
        ));
    }
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
        let method = methods.split_whitespace().next().map(str::to_string);
        let reset = method.is_some()
            && k.write(
                &Path::new("sys/bus/pci/devices")
                    .join(d.address.to_string())
                    .join("reset"),
                "1",
            )
            .is_ok();
        let answers = k
            .identity(d.address)
            .ok()
            .flatten()
            .is_some_and(|(v, i)| v == d.vendor_id.0 && i == d.device_id.0);
        tried.push(Rehearsal {
            vendor_id: d.vendor_id.to_string(),
            device_id: d.device_id.to_string(),
            kernel: kernel.clone(),
            address: d.address,
            method,
            reset,
            answers,
            back: None,
            at: now(),
        });
    }
    // Given back as a guest's end gives it back, to the drivers it came from.
    let mut release_error = None;
    if !was_claimed {
        match scan()
            .and_then(|now| claim::release_held(&now, g, k, state, held).map_err(|e| e.to_string()))
        {
            Ok(_) => {}
            Err(e) => release_error = Some(e),
        }
        for (t, d) in tried.iter_mut().zip(&members) {
            let driver = k.driver_of(d.address).ok().flatten();
            t.back = Some(driver.is_some() && driver == d.driver);
        }
    }
    // Kept per model and kernel: the newest rehearsal of each.
    let mut recs = records(state)?;
    for t in &tried {
        recs.retain(|r| {
            !(r.vendor_id == t.vendor_id && r.device_id == t.device_id && r.kernel == t.kernel)
        });
        recs.push(t.clone());
    }
    let p = state.path().join(RECORDS);
    let bytes = serde_json::to_vec_pretty(&recs).map_err(|e| e.to_string())?;
    passage_core::store::write_atomic(&p, &bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut notes: Vec<String> = tried
        .iter()
        .zip(&members)
        .map(|(t, d)| {
            let back = match t.back {
                None => tr("it stays on vfio-pci, where it was"),
                Some(b) => trf(
                    "back on {driver}: {yes}",
                    &[
                        ("driver", d.driver.as_deref().unwrap_or("-")),
                        ("yes", &yes_no(b)),
                    ],
                ),
            };
            trf(
                "{address} ({name}): reset by {method}: {reset}; answers afterwards: {answers}; {back}. Survives a guest reboot: {survives}.",
                &[
                    ("address", &d.address.to_string()),
                    ("name", &d.display_name()),
                    ("method", t.method.as_deref().unwrap_or("-")),
                    ("reset", &yes_no(t.reset)),
                    ("answers", &yes_no(t.answers)),
                    ("back", &back),
                    ("survives", &yes_no(t.survives())),
                ],
            )
        })
        .collect();
    if let Some(e) = release_error {
        notes.push(trf(
            "Giving the group back failed: {error}",
            &[("error", &e)],
        ));
    }
    Ok((tried.iter().all(Rehearsal::survives), notes))
}
