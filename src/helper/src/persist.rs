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
/// dracut's drop-in (Fedora, RHEL, openSUSE; Debian with dracut), written only where the
/// system has `etc/dracut.conf.d`: vfio-pci and the two files above in every initramfs it
/// builds.
pub const DRACUT_CONF: &str = "etc/dracut.conf.d/61-passage-vfio.conf";
/// mkinitcpio's drop-in (Arch; mkinitcpio 36 and later read `etc/mkinitcpio.conf.d`), written
/// only where that directory is.
pub const MKINITCPIO_CONF: &str = "etc/mkinitcpio.conf.d/61-passage-vfio.conf";
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
    /// The udev rule and modprobe files of the running system changed: the initramfs should
    /// be regenerated (the caller does it: where depends on how the helper runs).
    pub boot_layers_changed: bool,
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
    let before = list.len();
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
                    bars: Vec::new(),
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
        // By the number it was persisted under, or by its members: after a reboot that
        // renumbered groups, `status` shows the number the group has now.
        let now: Vec<_> = host
            .groups
            .get(&g)
            .map(|group| {
                host.members(group)
                    .filter(|d| d.is_endpoint())
                    .map(|d| d.address)
                    .collect()
            })
            .unwrap_or_default();
        list.retain(|p| {
            p.group != g && (now.is_empty() || !p.members.iter().all(|m| now.contains(&m.address)))
        });
    }
    let changed = on || was || list.len() != before;
    let list_bytes =
        serde_json::to_vec_pretty(&list).map_err(|e| io_err("encoding", io::Error::other(e)))?;
    // The boot layers first, the list last: the list is what `status` shows and what makes
    // passage-reclaim.service run, so it must never claim more than the layers on disk carry.
    // Any write that fails puts back what this call already wrote: every file changes, or
    // none does.
    let mut plan: Vec<(PathBuf, Option<Vec<u8>>)> = vec![
        (
            root_dir.join(UDEV_RULE),
            (!list.is_empty()).then(|| render_udev(&list).into_bytes()),
        ),
        (
            root_dir.join(MODPROBE_CONF),
            (!list.is_empty()).then(|| render_modprobe(&list).into_bytes()),
        ),
    ];
    // dracut's and mkinitcpio's drop-ins, where the system has that tool's directory. They
    // name the two files above: written after them, and taken away before them, so that no
    // step leaves a drop-in naming a file that is not there (an initramfs build would fail).
    let drop_ins: Vec<_> = initramfs_drop_ins(root_dir, host.platform.arch.as_deref())
        .into_iter()
        .map(|(path, text)| (path, (!list.is_empty()).then(|| text.into_bytes())))
        .collect();
    if list.is_empty() {
        plan.splice(0..0, drop_ins);
    } else {
        plan.extend(drop_ins);
    }
    // No list at all once it is empty: passage-reclaim.service runs only where it exists.
    plan.push((
        state.path().join(PERSIST_FILE),
        (!list.is_empty()).then_some(list_bytes),
    ));
    let written = apply_files(&plan).map_err(|message| ClaimError::Failed {
        message,
        rolled_back: Vec::new(),
    })?;
    Ok(PersistDone {
        changed,
        notes,
        // Every file but the list is a boot layer.
        boot_layers_changed: root_dir == Path::new("/")
            && written[..written.len() - 1].iter().any(|w| *w),
    })
}

/// A file's bytes now (`None`: absent, also where its directory is not one: it cannot be
/// there, and writing it is what will fail, with the reason).
fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Puts a udev rule at `path`, readable by everyone as the rules udev ships are (`None`: removes
/// it): the device settings' and the VFs' rules.
pub(crate) fn put_rule(path: &Path, text: Option<&str>) -> Result<(), String> {
    put_file(path, text.map(str::as_bytes))
        .and_then(|()| match text {
            Some(_) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            }
            None => Ok(()),
        })
        .map_err(|e| write_failure(path, &e))
}

/// Puts `bytes` at `path` (`None`: removes it).
fn put_file(path: &Path, bytes: Option<&[u8]>) -> io::Result<()> {
    match bytes {
        Some(b) => write_atomic(path, b),
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Why a write failed, with what a person can do about the usual cause: a read-only path is
/// the helper's systemd unit (ProtectSystem=strict) not listing it in ReadWritePaths.
fn write_failure(path: &Path, e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::EROFS) {
        trf(
            "{path} is read-only to passage-helper ({why}). If the helper runs under a systemd unit that does not list that directory in ReadWritePaths, the unit is out of date: reinstall Passage.",
            &[("path", &path.display().to_string()), ("why", &e.to_string())],
        )
    } else {
        trf(
            "Cannot write {path}: {why}",
            &[
                ("path", &path.display().to_string()),
                ("why", &e.to_string()),
            ],
        )
    }
}

/// Writes each file of `plan` in order; when one fails, the ones already written get their
/// old contents back. The error says what failed and whether everything is as it was. Returns,
/// per file, whether it changed (a file that already had its contents is not written).
///
/// All or none holds for write errors; a crash between two renames leaves the earlier files
/// new, which is why the list that makes the boot re-claim run comes last.
fn apply_files(plan: &[(PathBuf, Option<Vec<u8>>)]) -> Result<Vec<bool>, String> {
    let mut before = Vec::with_capacity(plan.len());
    for (path, _) in plan {
        before.push(read_file(path).map_err(|e| {
            trf(
                "Cannot read {path}: {why}",
                &[
                    ("path", &path.display().to_string()),
                    ("why", &e.to_string()),
                ],
            )
        })?);
    }
    let mut written = vec![false; plan.len()];
    for (i, (path, bytes)) in plan.iter().enumerate() {
        if before[i] == *bytes {
            continue;
        }
        written[i] = true;
        if let Err(e) = put_file(path, bytes.as_deref()) {
            let why = write_failure(path, &e);
            let mut left = Vec::new();
            for j in (0..i).rev() {
                let (p, b) = (&plan[j].0, &before[j]);
                if before[j] != plan[j].1 {
                    if let Err(e) = put_file(p, b.as_deref()) {
                        left.push(format!("{} ({e})", p.display()));
                    }
                }
            }
            return Err(if left.is_empty() {
                trf("{why} Nothing was changed.", &[("why", &why)])
            } else {
                trf(
                    "{why} These files could not be put back as they were: {files}.",
                    &[("why", &why), ("files", &left.join(", "))],
                )
            });
        }
    }
    Ok(written)
}

/// The initramfs tool this system has (Debian's update-initramfs, dracut elsewhere), with the
/// arguments that rebuild the running kernel's initramfs; or why there is nothing to rebuild.
pub fn initramfs_tool() -> Result<(&'static str, &'static [&'static str]), String> {
    let tools: [(&str, &[&str]); 3] = [
        // The running (or newest) kernel's image only: older kernels keep theirs, a known-good
        // way back if the new one does not boot.
        ("update-initramfs", &["-u"]),
        ("dracut", &["-f"]),
        // Every preset (Arch's kernels each have one; there is no "running kernel only").
        ("mkinitcpio", &["-P"]),
    ];
    let found = tools.into_iter().find(|(tool, _)| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false)
    });
    match found {
        None => Err(trf("The initramfs was not regenerated: this system has no update-initramfs, dracut or mkinitcpio. If a host driver loads from an initramfs, regenerate it by hand.", &[])),
        // `update-initramfs -u` rebuilds only the images there are (/boot/initrd.img-VERSION
        // of an installed kernel) and succeeds silently when there are none.
        Some(("update-initramfs", _))
            if !std::fs::read_dir("/boot")
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("initrd.img-"))
                })
                .unwrap_or(false) =>
        {
            Err(trf("The initramfs was not regenerated: this system has no initramfs made by update-initramfs (no /boot/initrd.img-*), so no host driver loads from one.", &[]))
        }
        Some(t) => Ok(t),
    }
}

/// Rebuilds the initramfs here, in this process, so the softdeps and rules also apply to
/// drivers loaded from it. The service asks systemd to do it in passage-initramfs.service
/// instead (the helper's own unit may not write /boot); this is for one-shot runs and hosts
/// without systemd.
pub fn regenerate_initramfs() -> Result<String, String> {
    let (tool, args) = match initramfs_tool() {
        Ok(t) => t,
        Err(why) => return Ok(why),
    };
    match std::process::Command::new(tool).args(args).output() {
        Ok(o) if o.status.success() => Ok(trf(
            "The initramfs was regenerated ({tool}).",
            &[("tool", tool)],
        )),
        Ok(o) => Err(initramfs_failed(
            tool,
            String::from_utf8_lossy(&o.stderr).trim(),
        )),
        Err(e) => Err(initramfs_failed(tool, &e.to_string())),
    }
}

/// What a failed rebuild means for the persisted groups.
pub fn initramfs_failed(tool: &str, why: &str) -> String {
    trf(
        "{tool} failed ({why}): host drivers loaded from the initramfs may still win at boot; passage-reclaim.service takes the group back after boot.",
        &[("tool", tool), ("why", why)],
    )
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

/// The IOMMU backend VFIO needs on this architecture: loaded with vfio (a softdep, or a request
/// on older kernels), so once vfio loads from the initramfs the backend must be there too, or
/// no container can be made after the switch to the real root.
fn iommu_backend(arch: Option<&str>) -> &'static str {
    match arch {
        Some("powerpc") => "vfio_iommu_spapr_tce",
        _ => "vfio_iommu_type1",
    }
}

/// dracut's drop-in: it sources each `*.conf` with bash, `+=` keeps what other files added.
/// The rule and the softdeps go in as they are on the running system, and vfio-pci (its own
/// dependencies come with it) and this architecture's IOMMU backend, which the softdeps then
/// load before a host driver that loads from the initramfs (dracut would otherwise leave out a
/// module no device of this boot needed).
pub fn render_dracut(arch: Option<&str>) -> String {
    format!(
        "# Written by passage-helper (passagectl persist): the layers that give persisted IOMMU\n\
         # groups to vfio-pci at boot, in the initramfs too. Removed with the last persisted group.\n\
         add_drivers+=\" vfio_pci {} \"\n\
         install_items+=\" /{UDEV_RULE} /{MODPROBE_CONF} \"\n",
        iommu_backend(arch)
    )
}

/// mkinitcpio's drop-in: bash arrays its config already has, extended (the backend marked
/// optional with `?`, as mkinitcpio allows, for a kernel built without it).
pub fn render_mkinitcpio(arch: Option<&str>) -> String {
    format!(
        "# Written by passage-helper (passagectl persist): the layers that give persisted IOMMU\n\
         # groups to vfio-pci at boot, in the initramfs too. Removed with the last persisted group.\n\
         MODULES+=(vfio_pci {}?)\n\
         FILES+=(/{UDEV_RULE} /{MODPROBE_CONF})\n",
        iommu_backend(arch)
    )
}

/// The initramfs tools' drop-ins that belong on this system (its tool's drop-in directory is
/// there, or Passage's file is), each with its text.
fn initramfs_drop_ins(root_dir: &Path, arch: Option<&str>) -> Vec<(PathBuf, String)> {
    [
        (DRACUT_CONF, render_dracut(arch)),
        (MKINITCPIO_CONF, render_mkinitcpio(arch)),
    ]
    .into_iter()
    .map(|(rel, text)| (root_dir.join(rel), text))
    .filter(|(path, _)| path.exists() || path.parent().is_some_and(Path::is_dir))
    .collect()
}

/// For tests and callers that need the file locations.
pub fn files(root_dir: &Path) -> [PathBuf; 2] {
    [root_dir.join(UDEV_RULE), root_dir.join(MODPROBE_CONF)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_puts_back_the_files_already_written() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.conf");
        let second = dir.path().join("second.conf");
        std::fs::write(&first, b"old first").unwrap();
        // The third file's directory is a regular file: its write fails (even as root).
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let plan = vec![
            (first.clone(), Some(b"new first".to_vec())),
            (second.clone(), Some(b"new second".to_vec())),
            (blocker.join("list.json"), Some(b"[]".to_vec())),
        ];
        let e = apply_files(&plan).unwrap_err();
        assert!(e.contains("Nothing was changed"), "{e}");
        assert_eq!(std::fs::read(&first).unwrap(), b"old first");
        assert!(!second.exists(), "a file that was not there came back");
    }

    #[test]
    fn files_with_their_contents_already_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let same = dir.path().join("same");
        std::fs::write(&same, b"x").unwrap();
        let gone = dir.path().join("gone");
        let plan = vec![
            (same.clone(), Some(b"x".to_vec())),
            (gone.clone(), None),
            (dir.path().join("new"), Some(b"y".to_vec())),
        ];
        assert_eq!(apply_files(&plan).unwrap(), vec![false, false, true]);
    }
}
