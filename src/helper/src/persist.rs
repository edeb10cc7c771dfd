//! Claims that survive reboots, winning the race with host drivers.
//!
//! At boot the host driver can bind a device before anything in user space runs. Three layers,
//! by address and never by vendor:device (which would grab identical cards too):
//! 1. a udev rule sets `driver_override=vfio-pci` on each persisted address when it is added —
//!    before udev loads the host driver's module (rules 61 < 80-drivers) — and only if the
//!    vendor and device ids at that address are still the recorded ones (bus numbers can shift);
//! 2. a modprobe `softdep HOSTDRIVER pre: vfio-pci`, so vfio-pci is loaded (and takes the
//!    overridden devices) before the host driver, also when the host driver loads from the
//!    initramfs — which is why the initramfs is regenerated;
//! 3. `passage-helper --reclaim` at boot (passage-reclaim.service) claims each persisted group
//!    as a whole after re-checking every member's ids, for drivers built into the kernel that
//!    bind before udev runs.

use crate::claim::{ClaimError, Original, StateDir};
use passage_core::address::GroupId;
use passage_core::explain::{self, State};
use passage_core::host::HostRoot;
use passage_core::i18n::trf;
use passage_core::model::Host;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The udev rule file, relative to the host root.
pub const UDEV_RULE: &str = "etc/udev/rules.d/61-passage-vfio.rules";
/// The modprobe configuration, relative to the host root.
pub const MODPROBE_CONF: &str = "etc/modprobe.d/passage-vfio.conf";
/// Where the list of persisted groups lives, in the state directory.
const PERSIST_FILE: &str = "persist.json";

/// One persisted group: its members as they were recorded (address, ids, host driver, and the
/// module that driver comes from, when it is a module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub group: GroupId,
    pub members: Vec<Original>,
    /// Host driver → its kernel module (`None`: built in, no softdep possible).
    pub modules: Vec<(String, Option<String>)>,
}

/// What a change to persistence did, in words for the caller.
#[derive(Debug, Clone, Serialize)]
pub struct PersistDone {
    pub changed: bool,
    pub notes: Vec<String>,
}

fn read_list(state: &StateDir) -> io::Result<Vec<Persisted>> {
    match std::fs::read(state.path().join(PERSIST_FILE)) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The persisted groups.
pub fn list(state: &StateDir) -> io::Result<Vec<Persisted>> {
    read_list(state)
}

/// Writes a boot-layer file the way every state file is written (unique temporary file, fsync,
/// rename, fsync of the directory), creating its directory first (/etc/modprobe.d may not exist).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    passage_core::store::write_atomic(path, bytes)
}

/// The udev rules for these groups.
pub fn render_udev(list: &[Persisted]) -> String {
    // After the override, the rule loads vfio-pci and probes the device at once: udev runs
    // RUN entries in order, so this happens before 80-drivers loads the host driver's module.
    // Without it, a vfio-pci already loaded for another persisted device (udev handles events
    // in parallel) would never look at this one again, and it would stay without a driver.
    let mut s = String::from(
        "# Written by passage-helper (passagectl persist). Each line claims one address for vfio-pci\n\
         # at boot, before its host driver loads, if the device there still has the recorded ids.\n",
    );
    for p in list {
        for m in &p.members {
            s.push_str(&format!(
                "# group {} — recorded host driver: {}\nACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{}\", ATTR{{vendor}}==\"0x{}\", ATTR{{device}}==\"0x{}\", ATTR{{driver_override}}=\"vfio-pci\", RUN{{builtin}}+=\"kmod load vfio-pci\", RUN+=\"/bin/sh -c 'echo $kernel > /sys/bus/pci/drivers_probe'\"\n",
                p.group,
                m.driver.as_deref().unwrap_or("none"),
                m.address,
                m.vendor_id,
                m.device_id
            ));
        }
    }
    s
}

/// The modprobe softdeps for these groups' host drivers.
pub fn render_modprobe(list: &[Persisted]) -> String {
    let mut mods: Vec<&str> = list
        .iter()
        .flat_map(|p| p.modules.iter().filter_map(|(_, m)| m.as_deref()))
        .filter(|m| *m != "vfio_pci" && *m != "vfio-pci")
        .collect();
    mods.sort();
    mods.dedup();
    let mut s = String::from("# Written by passage-helper: vfio-pci loads before the host drivers of persisted devices.\n");
    for m in mods {
        s.push_str(&format!("softdep {m} pre: vfio-pci\n"));
    }
    s
}

/// The module a driver comes from (`sys/bus/pci/drivers/D/module`), `None` when built in.
fn module_of(root: &HostRoot, driver: &str) -> Option<String> {
    if driver.contains('/') || driver.is_empty() {
        return None;
    }
    let t = root
        .read_link(Path::new("sys/bus/pci/drivers").join(driver).join("module"))
        .ok()?;
    t.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Turns persistence of group `g` on or off; writes the udev rule and modprobe files under
/// `root_dir` (the host root: `/` for the helper) and the list under the state directory.
pub fn set(
    host: &Host,
    root: &HostRoot,
    root_dir: &Path,
    g: GroupId,
    on: bool,
    state: &StateDir,
) -> Result<PersistDone, ClaimError> {
    let io_err = |what: &str, e: io::Error| ClaimError::Failed {
        message: format!("{what}: {e}"),
        rolled_back: Vec::new(),
    };
    let _persisted = state
        .lock_persisted()
        .map_err(|e| io_err("locking the persisted groups", e))?;
    let mut list = read_list(state).map_err(|e| io_err("reading the persisted groups", e))?;
    let was = list.iter().any(|p| p.group == g);
    let mut notes = Vec::new();
    if on {
        let group = host.groups.get(&g).ok_or_else(|| {
            ClaimError::NotFound(trf(
                "There is no IOMMU group {id} on this host.",
                &[("id", &g.to_string())],
            ))
        })?;
        let verdict = explain::group(host, group);
        if !verdict.assignable {
            return Err(ClaimError::InvalidArgs(trf(
                "Group {id} holds only bridges and chipset functions; there is nothing to claim at boot.",
                &[("id", &g.to_string())],
            )));
        }
        if verdict.state == State::HostCritical {
            return Err(ClaimError::HostCritical(trf(
                "Group {id} is needed by the host; Passage does not take it away at every boot.",
                &[("id", &g.to_string())],
            )));
        }
        // The host driver to remember is the one before Passage claimed the group, if it did.
        let claimed: Vec<Original> = state
            .claims()
            .unwrap_or_default()
            .into_iter()
            .find(|j| j.group == g)
            .map(|j| j.members)
            .unwrap_or_default();
        let members: Vec<Original> = host
            .members(group)
            .filter(|d| d.is_endpoint())
            .map(|d| {
                let recorded = claimed.iter().find(|o| o.address == d.address);
                Original {
                    address: d.address,
                    vendor_id: d.vendor_id.to_string(),
                    device_id: d.device_id.to_string(),
                    driver: recorded
                        .map(|o| o.driver.clone())
                        .unwrap_or_else(|| d.driver.clone()),
                    driver_override: None,
                }
            })
            .collect();
        let mut modules = Vec::new();
        for drv in members.iter().filter_map(|m| m.driver.clone()) {
            if drv == "vfio-pci" || modules.iter().any(|(d, _)| *d == drv) {
                continue;
            }
            let m = module_of(root, &drv);
            if m.is_none() {
                notes.push(trf(
                    "{driver} is built into the kernel, so it binds before any rule runs; passage-reclaim.service takes the group back right after boot.",
                    &[("driver", &drv)],
                ));
            }
            modules.push((drv, m));
        }
        list.retain(|p| p.group != g);
        list.push(Persisted {
            group: g,
            members,
            modules,
        });
        list.sort_by_key(|p| p.group);
    } else {
        list.retain(|p| p.group != g);
    }
    let changed = on || was;
    write_atomic(
        &state.path().join(PERSIST_FILE),
        &serde_json::to_vec_pretty(&list).map_err(|e| io_err("encoding", io::Error::other(e)))?,
    )
    .map_err(|e| io_err("writing the persisted groups", e))?;
    for (rel, text) in [
        (UDEV_RULE, render_udev(&list)),
        (MODPROBE_CONF, render_modprobe(&list)),
    ] {
        let path = root_dir.join(rel);
        if list.is_empty() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&format!("removing {}", path.display()), e)),
            }
        } else {
            write_atomic(&path, text.as_bytes())
                .map_err(|e| io_err(&format!("writing {}", path.display()), e))?;
        }
    }
    if root_dir == Path::new("/") {
        notes.extend(regenerate_initramfs());
    }
    Ok(PersistDone { changed, notes })
}

/// Rebuilds the initramfs so the softdeps and rules apply to drivers loaded from it.
fn regenerate_initramfs() -> Option<String> {
    let tools: [(&str, &[&str]); 2] = [
        ("update-initramfs", &["-u"]),
        ("dracut", &["-f", "--regenerate-all"]),
    ];
    for (tool, args) in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            continue;
        }
        return Some(match std::process::Command::new(tool).args(args).output() {
            Ok(o) if o.status.success() => trf("The initramfs was regenerated ({tool}).", &[("tool", tool)]),
            Ok(o) => trf(
                "{tool} failed ({why}): host drivers loaded from the initramfs may still win at boot; passage-reclaim.service takes the group back after boot.",
                &[("tool", tool), ("why", String::from_utf8_lossy(&o.stderr).trim())],
            ),
            Err(e) => trf("{tool} could not run: {why}", &[("tool", tool), ("why", &e.to_string())]),
        });
    }
    Some(trf("No initramfs tool found (update-initramfs, dracut); if a host driver loads from the initramfs, regenerate it by hand.", &[]))
}

/// Groups to claim at boot: those whose every recorded member is still at its address with its
/// ids, all in one group (its number may differ from last boot: numbers follow probe order).
/// Others are skipped with the reason (bus numbers shift when cards move).
pub fn reclaimable(
    host: &Host,
    state: &StateDir,
) -> io::Result<Vec<(GroupId, Result<GroupId, String>)>> {
    let mut out = Vec::new();
    for p in read_list(state)? {
        let mut now: Option<GroupId> = None;
        let check = p
            .members
            .iter()
            .try_for_each(|m| match host.device(m.address) {
                None => Err(format!("{} is gone", m.address)),
                Some(d)
                    if d.vendor_id.to_string() != m.vendor_id
                        || d.device_id.to_string() != m.device_id =>
                {
                    Err(format!(
                        "{} is now {}:{}, not the recorded {}:{} (bus numbers shifted?)",
                        m.address, d.vendor_id, d.device_id, m.vendor_id, m.device_id
                    ))
                }
                Some(d) => match (d.group, now) {
                    (None, _) => Err(format!(
                        "{} is in no IOMMU group (is the IOMMU off?)",
                        m.address
                    )),
                    (Some(g), None) => {
                        now = Some(g);
                        Ok(())
                    }
                    (Some(g), Some(n)) if g == n => Ok(()),
                    (Some(_), Some(_)) => Err(format!(
                        "the recorded members of group {} are no longer in one group",
                        p.group
                    )),
                },
            });
        out.push((
            p.group,
            check.and_then(|()| now.ok_or_else(|| "no members".to_string())),
        ));
    }
    Ok(out)
}

/// For tests and callers that need the file locations.
pub fn files(root_dir: &Path) -> [PathBuf; 2] {
    [root_dir.join(UDEV_RULE), root_dir.join(MODPROBE_CONF)]
}
