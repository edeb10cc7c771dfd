//! SR-IOV virtual functions: a physical function's `sriov_numvfs` set through its driver, read
//! back, and kept across reboots by a udev rule that sets it again when the driver binds the
//! PF at boot — before libvirt, the re-claim of persisted groups or anything else that would
//! use the VFs starts. Each VF is a device with a group of its own, so it is a card of its own.
//!
//! The kernel creates and destroys VFs only from 0: a count changes through 0, which destroys
//! every VF there is. So a change is refused while a VF is on vfio-pci (a guest may hold it, or
//! Passage claimed it): release those first.

use crate::bootfix::Done;
use crate::claim::StateDir;
use passage_core::i18n::{tr, trf};
use passage_core::{Host, PciAddress};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The udev rule, relative to the host root.
pub const UDEV_RULE: &str = "etc/udev/rules.d/63-passage-sriov.rules";
const RECORDS: &str = "sriov.json";

/// A PF whose VFs Passage creates at every boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    pub count: u32,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The physical functions whose VFs Passage creates at boot.
pub fn records(state: &StateDir) -> Result<Vec<Record>, String> {
    state.read_list(RECORDS, &tr("a list of Passage's virtual functions"))
}

/// The rule's text: when the PF is added with its driver already bound (coldplug after the
/// initramfs loaded the driver, or a driver built in) or its driver binds it later (a module
/// udev loads), never for vfio-pci (a card given to a guest keeps none), and only while the
/// device at that address has the recorded ids. Writing the count it has already is nothing
/// to the kernel.
pub fn render_rule(recs: &[Record]) -> String {
    let mut s = String::from(
        "# Written by passage-helper (passagectl vfs). Each line creates a physical function's\n\
         # virtual functions when its driver binds it at boot, if the device at that address\n\
         # still has the recorded ids.\n",
    );
    for r in recs {
        s.push_str(&format!(
            "ACTION==\"add|bind\", SUBSYSTEM==\"pci\", KERNEL==\"{}\", DRIVER==\"?*\", DRIVER!=\"vfio-pci\", ATTR{{vendor}}==\"0x{}\", ATTR{{device}}==\"0x{}\", ATTR{{sriov_numvfs}}=\"{}\"\n",
            r.address, r.vendor_id, r.device_id, r.count
        ));
    }
    s
}

/// The rule for these records, or none when no PF has VFs made at boot.
fn write_rule(root: &Path, recs: &[Record]) -> Result<(), String> {
    crate::persist::put_rule(
        &root.join(UDEV_RULE),
        (!recs.is_empty()).then(|| render_rule(recs)).as_deref(),
    )
}

fn read_number(path: &Path) -> Result<u32, String> {
    let t = std::fs::read_to_string(path).map_err(|e| io_err(&path.display().to_string(), e))?;
    t.trim().parse().map_err(|_| {
        trf(
            "{file} reads “{value}”, not a number",
            &[
                ("file", &path.display().to_string()),
                ("value", &t.trim().chars().take(16).collect::<String>()),
            ],
        )
    })
}

fn write_number(path: &Path, n: u32) -> Result<(), String> {
    std::fs::write(path, format!("{n}\n")).map_err(|e| {
        let why = if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
            tr("the kernel says busy (its VFs are in use)")
        } else {
            e.to_string()
        };
        io_err(&path.display().to_string(), why)
    })
}

/// A VF now: its address, its driver, its group (read from sysfs, not from a model that may
/// lag behind the kernel).
struct Vf {
    address: String,
    driver: Option<String>,
    group: Option<String>,
}

fn vfs_now(root: &Path, pf_dir: &Path) -> Vec<Vf> {
    virtfns(pf_dir)
        .into_iter()
        .map(|a| {
            let dir = root.join("sys/bus/pci/devices").join(&a);
            let name = |l: &str| {
                std::fs::read_link(dir.join(l))
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            };
            Vf {
                driver: name("driver"),
                group: name("iommu_group"),
                address: a,
            }
        })
        .collect()
}

/// The VFs the PF has now, as the kernel links them (`virtfnN`), in order.
fn virtfns(pf_dir: &Path) -> Vec<String> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(pf_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n: u32 = name.strip_prefix("virtfn")?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some((n, target.file_name()?.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, a)| a).collect()
}

/// Gives PF `address` `count` virtual functions (0: none), now and at every boot.
pub fn set(
    root: &Path,
    state: &StateDir,
    host: &Host,
    address: PciAddress,
    count: u32,
) -> Result<Done, String> {
    let _lock = state
        .lock_named("sriov")
        .map_err(|e| io_err("sriov.lock", e))?;
    let addr = address.to_string();
    let d = host.devices.get(&address).ok_or_else(|| {
        trf(
            "There is no PCI device {address} on this host.",
            &[("address", &addr)],
        )
    })?;
    if d.physfn.is_some() {
        return Err(trf(
            "{address} is a virtual function itself; its physical function makes VFs",
            &[("address", &addr)],
        ));
    }
    let dir = root.join(&d.sysfs_path);
    let total = if dir.join("sriov_totalvfs").exists() {
        read_number(&dir.join("sriov_totalvfs"))?
    } else if !dir.exists() {
        return Err(trf(
            "{address} is gone from this host.",
            &[("address", &addr)],
        ));
    } else {
        return Err(trf(
            "{address} ({name}) cannot have virtual functions: it has no SR-IOV capability the kernel uses",
            &[("address", &addr), ("name", &d.display_name())],
        ));
    };
    if count > total {
        return Err(trf(
            "{address} can have at most {total} virtual functions, not {count}",
            &[
                ("address", &addr),
                ("total", &total.to_string()),
                ("count", &count.to_string()),
            ],
        ));
    }
    // At every boot: the rule, with the record it is made from — written first, so a
    // machine that cannot keep the change (a read-only /etc) is not changed at all.
    let mut recs = records(state)?;
    let before = recs.clone();
    recs.retain(|r| r.address != address);
    if count > 0 {
        recs.push(Record {
            address,
            vendor_id: d.vendor_id.to_string(),
            device_id: d.device_id.to_string(),
            count,
        });
        recs.sort_by_key(|r| r.address);
    }
    let persisted_changed = recs != before;
    let keep = |recs: &[Record]| -> Result<(), String> {
        write_rule(root, recs)?;
        state.write_file(RECORDS, &recs)
    };
    if persisted_changed {
        keep(&recs)?;
    }
    let changed = match change_now(root, state, &dir, address, d, count) {
        Ok(c) => c,
        Err(e) => {
            if persisted_changed {
                let _ = keep(&before);
            }
            return Err(e);
        }
    };
    let mut notes = changed.1;
    let now_changed = changed.0;
    notes.push(if count > 0 {
        trf(
            "A udev rule ({file}) creates them again at every boot when its driver binds it, while the device at that address has the same ids.",
            &[("file", &format!("/{UDEV_RULE}"))],
        )
    } else {
        tr("No virtual functions are created for it at boot.")
    });
    Ok(Done {
        changed: now_changed || persisted_changed,
        notes,
    })
}

/// The kernel's side: `sriov_numvfs` through 0 to `count`, read back. Whether it changed, and
/// what there is now in words.
fn change_now(
    root: &Path,
    state: &StateDir,
    dir: &Path,
    address: PciAddress,
    d: &passage_core::model::Device,
    count: u32,
) -> Result<(bool, Vec<String>), String> {
    let addr = address.to_string();
    let now = read_number(&dir.join("sriov_numvfs"))?;
    let mut notes = Vec::new();
    if now != count {
        match d.driver.as_deref() {
            None => {
                return Err(trf(
                    "{address} has no driver: its own driver creates virtual functions, so give it back to the host first",
                    &[("address", &addr)],
                ))
            }
            Some("vfio-pci") => {
                return Err(trf(
                    "{address} is on vfio-pci: its own driver creates virtual functions, so release its group first",
                    &[("address", &addr)],
                ))
            }
            Some(_) => {}
        }
        if now > 0 {
            // Changing the count goes through 0, which takes every VF away: none may be on
            // vfio-pci (a guest may have it), claimed by Passage or persisted for a boot.
            let vfs = vfs_now(root, dir);
            let persisted: Vec<String> = crate::persist::list(state)
                .map_err(|e| e.to_string())?
                .iter()
                .flat_map(|p| p.members.iter().map(|m| m.address.to_string()))
                .collect();
            let claimed: Vec<String> = state
                .claims()
                .map_err(|e| e.to_string())?
                .iter()
                .flat_map(|j| j.members.iter().map(|m| m.address.to_string()))
                .collect();
            let held: Vec<String> = vfs
                .iter()
                .filter(|v| {
                    v.driver.as_deref() == Some("vfio-pci")
                        || persisted.contains(&v.address)
                        || claimed.contains(&v.address)
                })
                .map(|v| v.address.clone())
                .collect();
            if !held.is_empty() {
                return Err(trf(
                    "{vfs} of {address} are on vfio-pci or claimed by Passage (a guest may be using them): changing the number of VFs removes them all first. Release their groups (and stop claiming them at boot), then try again",
                    &[("vfs", &held.join(", ")), ("address", &addr)],
                ));
            }
            let on_host: Vec<String> = vfs
                .iter()
                .filter_map(|v| v.driver.as_ref().map(|d| format!("{} ({d})", v.address)))
                .collect();
            if !on_host.is_empty() {
                notes.push(trf(
                    "The VFs there were ({vfs}) were removed and made again: what was set on them (MAC addresses, VLANs) is gone.",
                    &[("vfs", &on_host.join(", "))],
                ));
            }
            write_number(&dir.join("sriov_numvfs"), 0)?;
        }
        if count > 0 {
            if let Err(e) = write_number(&dir.join("sriov_numvfs"), count) {
                // As it was, if the kernel lets us.
                if now > 0 {
                    let _ = write_number(&dir.join("sriov_numvfs"), now);
                }
                return Err(e);
            }
        }
        let back = read_number(&dir.join("sriov_numvfs"))?;
        if back != count {
            return Err(trf(
                "{address} has {back} virtual functions after {count} was written: the driver did not create them",
                &[
                    ("address", &addr),
                    ("back", &back.to_string()),
                    ("count", &count.to_string()),
                ],
            ));
        }
        let vfs: Vec<String> = vfs_now(root, dir)
            .iter()
            .map(|v| match &v.group {
                Some(g) => trf(
                    "{address} (group {group})",
                    &[("address", &v.address), ("group", g)],
                ),
                None => v.address.clone(),
            })
            .collect();
        notes.push(if count == 0 {
            trf(
                "{address} has no virtual functions now.",
                &[("address", &addr)],
            )
        } else {
            trf(
                "{address} has {count} virtual functions now: {vfs}.",
                &[
                    ("address", &addr),
                    ("count", &count.to_string()),
                    (
                        "vfs",
                        &if vfs.is_empty() {
                            tr("the kernel shows them shortly")
                        } else {
                            vfs.join(", ")
                        },
                    ),
                ],
            )
        });
    } else {
        notes.push(trf(
            "{address} has {count} virtual functions already.",
            &[("address", &addr), ("count", &count.to_string())],
        ));
    }
    Ok((now != count, notes))
}
