//! Claiming and releasing whole groups: plan, journal, execute, verify, roll back.
//!
//! The only code that changes drivers. It is planned first (a list of [`Step`]s a person can
//! read and a test can snapshot), then executed by one owner with the original state journaled
//! (written atomically and fsync'd) before the first write, so a crash or `kill -9` at any
//! point is undone by [`replay`] at the next start: every device ends on its recorded driver or
//! on vfio-pci, never stranded on nothing (a device that had no driver may end with none).
//!
//! The sequence is libvirt's (virpci.c): `driver_override`, `unbind`, `drivers_probe`, then
//! re-read the `driver` link, because the kernel reports success for a probe that failed.
//! Bridges stay on `pcieport`. Two kinds of device are taken off their driver for the claim,
//! without going to the guest, journaled with the members and put back by release and replay:
//! a bridge on a driver that keeps the kernel from giving the group to user space (`shpchp` on
//! device-tree machines: [`Device::bridge_blocks_vfio`]), and a function the IOMMU driver left
//! outside every group because it shares the group's DMA stream ([`Host::stream_sharers`]:
//! its DMA would go through the guest's domain while its host driver still ran).
//!
//! [`Device::bridge_blocks_vfio`]: passage_core::model::Device::bridge_blocks_vfio

use passage_core::address::{GroupId, PciAddress};
use passage_core::explain::{self, State};
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The driver that makes a group usable by a guest.
pub const VFIO_PCI: &str = "vfio-pci";

/// What can go wrong, each with the name of its D-Bus error (`io.github.passage.Helper1.Error.*`).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    BadState(String),
    #[error("{0}")]
    HostCritical(String),
    /// A step failed; everything was put back (`rolled_back` says how each device ended).
    #[error("{message}")]
    Failed {
        message: String,
        rolled_back: Vec<Outcome>,
    },
}

impl ClaimError {
    /// The D-Bus error name's last part.
    pub fn name(&self) -> &'static str {
        match self {
            ClaimError::NotFound(_) => "NotFound",
            ClaimError::InvalidArgs(_) => "InvalidArgs",
            ClaimError::Busy(_) => "Busy",
            ClaimError::BadState(_) => "BadState",
            ClaimError::HostCritical(_) => "HostCritical",
            ClaimError::Failed { .. } => "Failed",
        }
    }
}

/// The kernel, as far as claiming needs it. [`Sysfs`] is the real one; tests use
/// [`crate::fakekernel::FakeKernel`], which models the kernel's answers (and its lies).
pub trait Kernel: Send + Sync {
    /// Writes `value` to a sysfs attribute (`rel` relative to the host root).
    fn write(&self, rel: &Path, value: &str) -> io::Result<()>;
    /// The driver bound to `a` now (the `driver` link), `None` when unbound.
    fn driver_of(&self, a: PciAddress) -> io::Result<Option<String>>;
    /// Makes sure vfio-pci is available (loads the module on a real host).
    fn load_vfio(&self) -> io::Result<()>;
    /// The kernel's own viability answer for a group (`VFIO_GROUP_GET_STATUS`), where it can
    /// be asked; `None` when it cannot (no /dev/vfio node, as in a fake tree).
    fn group_viable(&self, g: GroupId) -> io::Result<Option<bool>>;
    /// Processes holding `/dev/vfio/N` open ("pid (comm)").
    fn holders(&self, g: GroupId) -> Vec<String>;
    /// The vendor and device id of the device at `a` now, `None` when no device is there (it
    /// was unplugged). A journal's member is only touched while the same device is there.
    fn identity(&self, a: PciAddress) -> io::Result<Option<(u16, u16)>>;
}

/// Reads `vendor` and `device` of `dir` (a device's sysfs directory); `None` when it is gone.
pub fn read_identity(dir: &Path) -> io::Result<Option<(u16, u16)>> {
    let id = |name: &str| -> io::Result<Option<u16>> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => passage_core::scan::parse_hex(s.trim())
                .and_then(|v| u16::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}/{name}: {s:?} is not an id", dir.display()),
                    )
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    Ok(match (id("vendor")?, id("device")?) {
        (Some(v), Some(d)) => Some((v, d)),
        _ => None,
    })
}

/// The real kernel under a host root (`/` for the helper; a VM's `/` in the test bed).
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl Kernel for Sysfs {
    fn write(&self, rel: &Path, value: &str) -> io::Result<()> {
        // Sysfs attributes exist already: never create, and write the value in one call.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.root.join(rel))?;
        f.write_all(value.as_bytes())
    }

    fn driver_of(&self, a: PciAddress) -> io::Result<Option<String>> {
        let link = self.root.join(format!("sys/bus/pci/devices/{a}/driver"));
        match std::fs::read_link(link) {
            Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn load_vfio(&self) -> io::Result<()> {
        if self.root.join("sys/bus/pci/drivers/vfio-pci").exists() {
            return Ok(());
        }
        let st = std::process::Command::new("modprobe")
            .arg("vfio-pci")
            .status()?;
        if st.success() && self.root.join("sys/bus/pci/drivers/vfio-pci").exists() {
            Ok(())
        } else {
            Err(io::Error::other("modprobe vfio-pci failed"))
        }
    }

    fn group_viable(&self, g: GroupId) -> io::Result<Option<bool>> {
        let node = self.root.join(format!("dev/vfio/{g}"));
        if !node.exists() {
            return Ok(None);
        }
        passage_core::vfio::group_status(&node).map(Some)
    }

    fn holders(&self, g: GroupId) -> Vec<String> {
        passage_core::vfio::holders(&self.root.join("proc"), g)
    }

    fn identity(&self, a: PciAddress) -> io::Result<Option<(u16, u16)>> {
        read_identity(&self.root.join(format!("sys/bus/pci/devices/{a}")))
    }
}

/// One write (or check) of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// `echo DRIVER > …/driver_override` (empty clears it).
    SetOverride { device: PciAddress, driver: String },
    /// `echo ADDR > …/driver/unbind`.
    Unbind { device: PciAddress, driver: String },
    /// `echo ADDR > /sys/bus/pci/drivers_probe`.
    Probe { device: PciAddress },
    /// `echo ADDR > /sys/bus/pci/drivers/DRIVER/bind`.
    Bind { device: PciAddress, driver: String },
    /// `echo SIZE > …/resourceBAR_resize` (2^SIZE MiB), while no driver holds the device: the
    /// size a person chose before a claim (`rebar`), the one it replaced before a release.
    ResizeBar {
        device: PciAddress,
        bar: u8,
        size: u8,
    },
    /// Re-read the driver link: the kernel reports success for failed probes.
    Expect {
        device: PciAddress,
        driver: Option<String>,
    },
}

impl Step {
    /// The step in a few words, for progress marks and logs: "unbind 0000:02:01.0 e1000".
    pub fn describe(&self) -> String {
        match self {
            Step::SetOverride { device, driver } => format!(
                "set-override {device} {}",
                if driver.is_empty() { "(none)" } else { driver }
            ),
            Step::Unbind { device, driver } => format!("unbind {device} {driver}"),
            Step::Probe { device } => format!("probe {device}"),
            Step::Bind { device, driver } => format!("bind {device} {driver}"),
            Step::ResizeBar { device, bar, size } => {
                format!("resize {device} BAR {bar} to 2^{size} MiB")
            }
            Step::Expect { device, driver } => format!(
                "expect {device} {}",
                driver.as_deref().unwrap_or("(no driver)")
            ),
        }
    }
}

/// One member's state before Passage touched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    /// BARs the claim resized, each with the size it had (the kernel's n: 2^n MiB), written
    /// back before the device goes to its driver again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bars: Vec<(u8, u8)>,
}

/// The journal of one operation on one group: written before the first sysfs write, removed
/// when the operation ends (done or rolled back). Its presence at start means "undo me".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub operation: String,
    pub group: GroupId,
    pub members: Vec<Original>,
    /// Devices taken off their driver without going to the guest (see the module comment):
    /// bridges on a driver that blocks the group, and functions outside every group whose DMA
    /// the group's domain translates. Unbound by the claim, bound again by release and replay;
    /// not members in the sense of what a guest gets, so lists of claimed devices leave them
    /// out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound: Vec<Original>,
}

impl Journal {
    /// Every device the operation changes: the members, then the devices it unbinds.
    pub fn everything(&self) -> Vec<Original> {
        self.members.iter().chain(&self.unbound).cloned().collect()
    }
}

/// How a device ended after a rollback or release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub device: PciAddress,
    pub wanted: Option<String>,
    pub driver: Option<String>,
    /// The device is no longer there (unplugged), or another device sits at its address: it
    /// was left alone, and "no driver" says nothing about it.
    pub gone: bool,
}

impl Outcome {
    /// How `o` ended, read from the kernel now.
    fn read(k: &dyn Kernel, o: &Original) -> Self {
        let gone = !o.is_there(k);
        Outcome {
            device: o.address,
            wanted: o.driver.clone(),
            driver: if gone {
                None
            } else {
                k.driver_of(o.address).ok().flatten()
            },
            gone,
        }
    }

    /// "0000:02:01.0 on e1000", "… on no driver", "… removed from the machine".
    pub fn describe(&self) -> String {
        if self.gone {
            format!("{} removed from the machine", self.device)
        } else {
            format!(
                "{} on {}",
                self.device,
                self.driver.as_deref().unwrap_or("no driver")
            )
        }
    }
}

impl Original {
    /// Whether the device this was recorded from is still at its address (same vendor and
    /// device id). One that was unplugged, or replaced by another card, is never touched.
    fn is_there(&self, k: &dyn Kernel) -> bool {
        match k.identity(self.address) {
            Ok(Some((v, d))) => {
                format!("{v:04x}") == self.vendor_id.to_ascii_lowercase()
                    && format!("{d:04x}") == self.device_id.to_ascii_lowercase()
            }
            Ok(None) => false,
            // Unreadable ids: assume it is ours, as before ids were checked; the writes will
            // say what is wrong.
            Err(_) => true,
        }
    }
}

/// The helper's state directory (`/var/lib/passage`): journals of operations in flight and
/// records of the groups it holds (with their original drivers, for release).
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("claims"))?;
        Ok(Self { dir })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn journal_path(&self, g: GroupId) -> PathBuf {
        self.dir.join(format!("journal-{g}.json"))
    }

    fn step_path(&self, g: GroupId) -> PathBuf {
        self.dir.join(format!("journal-{g}.step"))
    }

    /// Where the operation on group `g` is, as its last [`Progress::mark`] wrote it (`None`
    /// when no operation left a mark): "claim:3 unbind 0000:02:01.0 e1000".
    pub fn progress(&self, g: GroupId) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.step_path(g)) {
            Ok(s) => Ok(Some(s.trim_end().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the journal of group `g` (the operation is over) and its progress mark.
    fn close_journal(&self, g: GroupId) -> io::Result<()> {
        self.remove(&self.journal_path(g))?;
        match std::fs::remove_file(self.step_path(g)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn claim_path(&self, g: GroupId) -> PathBuf {
        self.dir.join("claims").join(format!("{g}.json"))
    }

    /// Writes `value` to `path` so that a crash leaves the old or the new file, never half.
    fn write_atomic<T: Serialize>(&self, path: &Path, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        passage_core::store::write_atomic(path, &bytes)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {
                if let Some(d) = path.parent() {
                    std::fs::File::open(d)?.sync_all()?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes group `g` for this process, across processes: an exclusive `flock` on
    /// `locks/group-N.lock` in the state directory, not waited for. The service and every
    /// one-shot run (`--claim`, `--replay`, `--reclaim`, …) take it, so a replay never undoes
    /// an operation a live process is in the middle of, and two helpers never change one group
    /// at once. The kernel drops the lock when its holder dies, even by `kill -9`.
    pub fn lock_group(&self, g: GroupId) -> Result<GroupFlock, ClaimError> {
        let dir = self.dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| io_failed("creating the lock directory", e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("group-{g}.lock")))
            .map_err(|e| io_failed("opening the group's lock", e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(GroupFlock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(busy(g)),
            Err(e) => Err(io_failed("locking the group", e.into())),
        }
    }

    /// Takes the persisted-groups list for a read-modify-write, across processes, waiting for
    /// a writer that has it (writes are short): two persists at once never lose one.
    pub fn lock_persisted(&self) -> io::Result<GroupFlock> {
        self.lock_named("persist")
    }

    /// Takes `locks/NAME.lock` for a read-modify-write of one of the state directory's lists
    /// (the boot line's, the device settings', the VFs'), across processes, waiting for a
    /// writer that has it.
    pub fn lock_named(&self, name: &str) -> io::Result<GroupFlock> {
        let dir = self.dir.join("locks");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(GroupFlock { _file: file })
    }

    /// A list the state directory keeps in `file` (empty when there is none yet); a file that
    /// is not such a list is named, with what it should hold (`what`), and left for a person.
    pub fn read_list<T: serde::de::DeserializeOwned>(
        &self,
        file: &str,
        what: &str,
    ) -> Result<Vec<T>, String> {
        let p = self.dir.join(file);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                passage_core::i18n::trf(
                    "{file} is not {what} ({error}); move it aside to go on",
                    &[
                        ("file", &p.display().to_string()),
                        ("what", what),
                        ("error", &e.to_string()),
                    ],
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Writes `value` as `file` in the state directory, as every state file is written.
    pub fn write_file<T: Serialize>(&self, file: &str, value: &T) -> Result<(), String> {
        let p = self.dir.join(file);
        self.write_atomic(&p, value)
            .map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Writes the journal of an operation before its first sysfs write.
    fn open_journal(
        &self,
        operation: &str,
        g: GroupId,
        members: &[Original],
        unbound: &[Original],
    ) -> Result<(Journal, Progress), ClaimError> {
        let journal = Journal {
            version: 1,
            operation: operation.into(),
            group: g,
            members: members.to_vec(),
            unbound: unbound.to_vec(),
        };
        self.write_atomic(&self.journal_path(g), &journal)
            .map_err(|e| io_failed("writing the journal", e))?;
        Ok((journal, Progress::open(self, g)))
    }

    /// Journals left by an operation that did not finish. A file that is not a journal (cut
    /// short, edited, another program's) is named in the log and left where it is for a
    /// person to look at; it does not stop the others from being undone.
    pub fn pending(&self) -> io::Result<Vec<Journal>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("journal-") && name.ends_with(".json") {
                match read_record(&p) {
                    Ok(j) => out.push(j),
                    Err(e) => {
                        tracing::error!("{}: not a journal Passage can undo: {e}", p.display())
                    }
                }
            }
        }
        out.sort_by_key(|j| j.group);
        Ok(out)
    }

    /// The journal of group `g`'s unfinished operation, if there is one (read again under the
    /// group's lock: the list [`StateDir::pending`] made may be out of date by then).
    pub fn journal(&self, g: GroupId) -> io::Result<Option<Journal>> {
        match read_record(&self.journal_path(g)) {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The groups Passage holds, with their members' original drivers (an unreadable record
    /// is logged and left out, as in [`StateDir::pending`]).
    pub fn claims(&self) -> io::Result<Vec<Journal>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("claims"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                match read_record(&p) {
                    Ok(j) => out.push(j),
                    Err(e) => tracing::error!("{}: not a claim record: {e}", p.display()),
                }
            }
        }
        out.sort_by_key(|j: &Journal| j.group);
        Ok(out)
    }

    fn claim_record(&self, g: GroupId) -> io::Result<Option<Journal>> {
        match read_record(&self.claim_path(g)) {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Where an operation on one group is: before each step the point's name and the step are
/// written over `journal-N.step`, in one `pwrite` and without `fsync` — the mark must outlive
/// the process (a `kill -9`), not the machine: after a power cut every driver is as the boot
/// made it and replay reads the kernel anyway. It tells a person (and the fault campaign)
/// exactly where an interrupted operation stopped; nothing decides on it.
pub struct Progress {
    file: Option<std::fs::File>,
}

/// A mark's fixed width: every mark overwrites the whole previous one.
const MARK: usize = 160;

impl Progress {
    fn open(state: &StateDir, g: GroupId) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(state.step_path(g));
        if let Err(e) = &file {
            tracing::warn!("group {g}: no progress mark ({e}); the operation goes on");
        }
        Self { file: file.ok() }
    }

    /// Marks `point` reached, about to do `what`; then the point is passed ([`crate::fault`]).
    pub fn mark(&self, point: &str, what: &str) {
        if let Some(f) = &self.file {
            let mut line = format!("{point} {what}");
            line.truncate(MARK - 1);
            let line = format!("{line:<width$}\n", width = MARK - 1);
            if let Err(e) = std::os::unix::fs::FileExt::write_at(f, line.as_bytes(), 0) {
                tracing::warn!("progress mark {point}: {e}");
            }
        }
        crate::fault::point(point);
    }
}

/// The most a journal or claim record may weigh (a group of 256 functions is a few KiB).
const MAX_RECORD: u64 = 1 << 20;

/// Reads a journal or claim record, refusing what is not one with the file and the field.
fn read_record(p: &Path) -> io::Result<Journal> {
    let f = std::fs::File::open(p)?;
    if f.metadata()?.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than any record Passage writes", p.display()),
        ));
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(f, MAX_RECORD), &mut bytes)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))
}

/// A group taken across processes ([`StateDir::lock_group`]); released when dropped or when
/// the process dies.
pub struct GroupFlock {
    _file: std::fs::File,
}

fn busy(g: GroupId) -> ClaimError {
    ClaimError::Busy(trf(
        "Group {id} is being changed by another request right now; try again when it has finished.",
        &[("id", &g.to_string())],
    ))
}

/// Group `g` held for a change: in this process ([`Locks`]) and across processes
/// ([`StateDir::lock_group`]). Proof for [`claim_held`] and [`release_held`] that the caller
/// read the host after taking it.
pub struct Held<'a> {
    group: GroupId,
    _lock: GroupLock<'a>,
    _flock: GroupFlock,
}

impl Held<'_> {
    /// Refuses to act on another group than the one held.
    fn check(&self, g: GroupId) -> Result<(), ClaimError> {
        if self.group == g {
            Ok(())
        } else {
            Err(ClaimError::InvalidArgs(format!(
                "group {g} is not the group held ({})",
                self.group
            )))
        }
    }
}

/// Takes group `g` in this process, then across processes; `Busy` when anyone has it.
pub fn hold<'a>(locks: &'a Locks, state: &StateDir, g: GroupId) -> Result<Held<'a>, ClaimError> {
    let lock = locks.try_lock(g)?;
    let flock = state.lock_group(g)?;
    Ok(Held {
        group: g,
        _lock: lock,
        _flock: flock,
    })
}

/// Mutations of one group are serialized; a second caller is told so, not queued.
#[derive(Default)]
pub struct Locks {
    busy: Mutex<BTreeSet<GroupId>>,
}

/// Held while a group is being changed.
pub struct GroupLock<'a> {
    locks: &'a Locks,
    group: GroupId,
}

impl Drop for GroupLock<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.locks.busy.lock() {
            b.remove(&self.group);
        }
    }
}

impl Locks {
    /// True when no group is being changed in this process.
    pub fn is_idle(&self) -> bool {
        self.busy.lock().map(|b| b.is_empty()).unwrap_or(false)
    }

    pub fn try_lock(&self, g: GroupId) -> Result<GroupLock<'_>, ClaimError> {
        let mut b = self
            .busy
            .lock()
            .map_err(|_| ClaimError::Busy(String::new()))?;
        if !b.insert(g) {
            return Err(busy(g));
        }
        Ok(GroupLock {
            locks: self,
            group: g,
        })
    }
}

fn attr(a: PciAddress, name: &str) -> PathBuf {
    PathBuf::from(format!("sys/bus/pci/devices/{a}/{name}"))
}

/// Executes one step. `Expect` failures say what the kernel did instead.
pub fn execute(k: &dyn Kernel, step: &Step) -> Result<(), String> {
    let w = |rel: PathBuf, v: String| {
        k.write(&rel, &v)
            .map_err(|e| format!("writing {v:?} to /{}: {e}", rel.display()))
    };
    match step {
        Step::SetOverride { device, driver } => {
            // An empty override is written as a newline, which the kernel reads as "clear".
            let v = if driver.is_empty() {
                "\n".to_string()
            } else {
                driver.clone()
            };
            w(attr(*device, "driver_override"), v)
        }
        Step::Unbind { device, .. } => w(attr(*device, "driver/unbind"), device.to_string()),
        Step::Probe { device } => w(
            PathBuf::from("sys/bus/pci/drivers_probe"),
            device.to_string(),
        ),
        Step::Bind { device, driver } => w(
            PathBuf::from(format!("sys/bus/pci/drivers/{driver}/bind")),
            device.to_string(),
        ),
        Step::ResizeBar { device, bar, size } => k
            .write(&attr(*device, &format!("resource{bar}_resize")), &size.to_string())
            .map_err(|e| {
                trf(
                    "the kernel did not resize BAR {bar} of {device} to {size} MiB ({error}); the bridge above may have no room for it (its window was sized at boot)",
                    &[
                        ("bar", &bar.to_string()),
                        ("device", &device.to_string()),
                        ("size", &1u64.checked_shl(u32::from(*size)).unwrap_or(0).to_string()),
                        ("error", &e.to_string()),
                    ],
                )
            }),
        Step::Expect { device, driver } => {
            let now = k
                .driver_of(*device)
                .map_err(|e| format!("reading the driver of {device}: {e}"))?;
            if now == *driver {
                Ok(())
            } else {
                Err(trf(
                    "{device} should be on {wanted} but is on {actual}: the driver refused it (the kernel reports success for failed probes; see the kernel log)",
                    &[
                        ("device", &device.to_string()),
                        ("wanted", driver.as_deref().unwrap_or("no driver")),
                        ("actual", now.as_deref().unwrap_or("no driver")),
                    ],
                ))
            }
        }
    }
}

/// What a claim plans: its steps, the endpoints it gives to vfio-pci and the devices it takes
/// off their driver without giving them away, each with what it was on before.
pub type ClaimPlan = (Vec<Step>, Vec<Original>, Vec<Original>);

fn original(d: &passage_core::model::Device) -> Original {
    Original {
        address: d.address,
        vendor_id: d.vendor_id.to_string(),
        device_id: d.device_id.to_string(),
        driver: d.driver.clone(),
        driver_override: d.driver_override.clone(),
        bars: Vec::new(),
    }
}

/// The steps that give the group's endpoints to vfio-pci (and take off their driver the
/// bridges that would keep the group from the guest and the functions that share its DMA
/// stream). Empty when it already is.
pub fn claim_steps(host: &Host, g: GroupId) -> Result<ClaimPlan, ClaimError> {
    claim_steps_with(host, g, &[])
}

/// [`claim_steps`], with the BAR sizes a person chose (`rebar`) written while each member is
/// off its host driver, before vfio-pci probes it — for the same card only (its ids).
pub fn claim_steps_with(
    host: &Host,
    g: GroupId,
    bars: &[crate::rebar::BarSize],
) -> Result<ClaimPlan, ClaimError> {
    let group = host.groups.get(&g).ok_or_else(|| no_group(g))?;
    let mut steps = Vec::new();
    let mut originals = Vec::new();
    let mut unbound = Vec::new();
    for d in host.members(group).filter(|d| d.is_endpoint()) {
        let mut o = original(d);
        if d.on_vfio() {
            originals.push(o);
            continue;
        }
        steps.push(Step::SetOverride {
            device: d.address,
            driver: VFIO_PCI.into(),
        });
        if let Some(drv) = &d.driver {
            steps.push(Step::Unbind {
                device: d.address,
                driver: drv.clone(),
            });
        }
        let ours = bars.iter().filter(|b| {
            b.address == d.address
                && b.vendor_id.eq_ignore_ascii_case(&d.vendor_id.to_string())
                && b.device_id.eq_ignore_ascii_case(&d.device_id.to_string())
        });
        for b in ours {
            let Some(now) = crate::rebar::current(host, d.address, b.bar) else {
                continue;
            };
            if now != b.size {
                o.bars.push((b.bar, now));
                steps.push(Step::ResizeBar {
                    device: d.address,
                    bar: b.bar,
                    size: b.size,
                });
            }
        }
        originals.push(o);
        steps.push(Step::Probe { device: d.address });
        steps.push(Step::Expect {
            device: d.address,
            driver: Some(VFIO_PCI.into()),
        });
    }
    let blocking = host.members(group).filter(|d| d.bridge_blocks_vfio());
    for d in blocking.chain(
        host.stream_sharers(group)
            .into_iter()
            .filter(|d| d.driver.is_some()),
    ) {
        unbound.push(original(d));
        if let Some(drv) = &d.driver {
            steps.push(Step::Unbind {
                device: d.address,
                driver: drv.clone(),
            });
        }
        steps.push(Step::Expect {
            device: d.address,
            driver: None,
        });
    }
    Ok((steps, originals, unbound))
}

/// The steps that put members back on their recorded drivers.
pub fn restore_steps(
    originals: &[Original],
    current: &dyn Fn(PciAddress) -> Option<String>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for o in originals {
        let now = current(o.address);
        // The original override always goes back, even where the driver already matches.
        steps.push(Step::SetOverride {
            device: o.address,
            driver: o.driver_override.clone().unwrap_or_default(),
        });
        // On its driver already: done (a BAR it had resized was put back before that bind;
        // without a driver, a resized BAR still goes back).
        if now == o.driver && (o.bars.is_empty() || now.is_some()) {
            continue;
        }
        if let Some(d) = now {
            steps.push(Step::Unbind {
                device: o.address,
                driver: d,
            });
        }
        // The sizes the claim changed, back while no driver holds the device.
        for (bar, size) in &o.bars {
            steps.push(Step::ResizeBar {
                device: o.address,
                bar: *bar,
                size: *size,
            });
        }
        if let Some(d) = &o.driver {
            // Bind explicitly to the recorded driver: a probe could pick another one.
            steps.push(Step::Bind {
                device: o.address,
                driver: d.clone(),
            });
        }
        steps.push(Step::Expect {
            device: o.address,
            driver: o.driver.clone(),
        });
    }
    steps
}

fn no_group(g: GroupId) -> ClaimError {
    ClaimError::NotFound(trf(
        "There is no IOMMU group {id} on this host.",
        &[("id", &g.to_string())],
    ))
}

/// Options a caller can set.
#[derive(Debug, Clone, Default)]
pub struct ClaimOptions {
    /// Claim even a group the host needs (root disk, console, default route).
    pub force: bool,
}

/// What a finished claim or release did.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub group: GroupId,
    /// False when there was nothing to do (already claimed / already released).
    pub changed: bool,
    pub steps: Vec<Step>,
}

/// Puts every member back, step by step, ignoring individual failures (they are reported in
/// the outcomes): a rollback must try everything.
/// Members that are gone (unplugged, or another device at the address) are left alone.
/// Each step is marked as `PHASE:i` in `progress`.
fn rollback(
    k: &dyn Kernel,
    originals: &[Original],
    progress: &Progress,
    phase: &str,
) -> Vec<Outcome> {
    let there: Vec<Original> = originals
        .iter()
        .filter(|o| o.is_there(k))
        .cloned()
        .collect();
    let current = |a: PciAddress| k.driver_of(a).ok().flatten();
    for (i, step) in restore_steps(&there, &current).iter().enumerate() {
        progress.mark(&format!("{phase}:{i}"), &step.describe());
        if let Err(e) = execute(k, step) {
            tracing::warn!("{phase} step {step:?}: {e}");
        }
    }
    originals.iter().map(|o| Outcome::read(k, o)).collect()
}

fn io_failed(what: &str, e: io::Error) -> ClaimError {
    ClaimError::Failed {
        message: format!("{what}: {e}"),
        rolled_back: Vec::new(),
    }
}

/// Whether group `g` may be claimed at all: it exists, holds something a guest can use, and is
/// not needed by the host unless `force` is set. Asks nothing of the kernel.
pub fn check(host: &Host, g: GroupId, opts: &ClaimOptions) -> Result<(), ClaimError> {
    let group = host.groups.get(&g).ok_or_else(|| no_group(g))?;
    let verdict = explain::group(host, group);
    if !verdict.assignable {
        return Err(ClaimError::InvalidArgs(trf(
            "Group {id} holds only bridges and chipset functions; there is nothing in it to give a guest.",
            &[("id", &g.to_string())],
        )));
    }
    if verdict.state == State::HostCritical && !opts.force {
        let why: Vec<String> = verdict
            .reasons
            .iter()
            .filter(|r| r.severity == explain::Severity::Blocker)
            .map(|r| r.message.clone())
            .collect();
        return Err(ClaimError::HostCritical(trf(
            "Group {id} is needed by the host: {why} Claiming it anyway needs the force option and administrator approval.",
            &[("id", &g.to_string()), ("why", &why.join(" "))],
        )));
    }
    Ok(())
}

/// Claims group `g` for vfio-pci as one transaction.
pub fn claim(
    host: &Host,
    g: GroupId,
    opts: &ClaimOptions,
    k: &dyn Kernel,
    state: &StateDir,
    locks: &Locks,
) -> Result<Done, ClaimError> {
    let held = hold(locks, state, g)?;
    claim_held(host, g, opts, k, state, &held)
}

/// [`claim`] for a caller that holds the group already and read `host` after taking it.
pub fn claim_held(
    host: &Host,
    g: GroupId,
    opts: &ClaimOptions,
    k: &dyn Kernel,
    state: &StateDir,
    held: &Held<'_>,
) -> Result<Done, ClaimError> {
    held.check(g)?;
    check(host, g, opts)?;
    if let Some(j) = state
        .journal(g)
        .map_err(|e| io_failed("reading the group's journal", e))?
    {
        // An earlier operation on this group did not finish (a release that failed half-way).
        // Undo it first, or this claim would record half-moved drivers as the originals.
        undo(k, state, &j).map_err(|e| io_failed("undoing the unfinished operation", e))?;
        return Err(ClaimError::BadState(trf(
            "An earlier operation on group {id} had not finished; it has been undone now. Read the group again and ask once more.",
            &[("id", &g.to_string())],
        )));
    }
    // The BAR sizes chosen: an unreadable list stops the claim (it would give the guest a
    // size the person did not want), saying which file.
    let bars = crate::rebar::wanted(state).map_err(|message| ClaimError::Failed {
        message,
        rolled_back: Vec::new(),
    })?;
    let (steps, members, unbound) = claim_steps_with(host, g, &bars)?;
    // What a rollback puts back: the members and the devices the claim unbinds.
    let originals: Vec<Original> = members.iter().chain(&unbound).cloned().collect();
    if steps.is_empty() {
        return Ok(Done {
            group: g,
            changed: false,
            steps,
        });
    }
    k.load_vfio()
        .map_err(|e| io_failed("loading vfio-pci", e))?;
    crate::fault::point("claim:begin");
    // Claimed again (a bridge back on shpchp, a neighbour back on its driver): the drivers the
    // members came from are in the first claim's record, not in what this one finds (vfio-pci).
    // Journaled so, a kill now gives them back to those drivers, never to vfio-pci for good.
    let (members, unbound) = match state.claim_record(g) {
        Ok(Some(before)) => merge_with_record(host, g, before, &members, &unbound),
        _ => (members, unbound),
    };
    let (journal, progress) = state.open_journal("claim", g, &members, &unbound)?;
    for (i, step) in steps.iter().enumerate() {
        progress.mark(&format!("claim:{i}"), &step.describe());
        if let Err(mut why) = execute(k, step) {
            let outcomes = rollback(k, &originals, &progress, "rollback");
            let _ = state.close_journal(g);
            let dev = step_device(step);
            let refused = matches!(step, Step::Expect { driver: Some(d), .. } if d == VFIO_PCI);
            if refused && host.platform.arch.as_deref() == Some("powerpc") {
                why.push_str(&tr(" (on POWER, kernels 5.19 to 6.3 refuse vfio-pci for every device; passagectl doctor says whether this one does)"));
            }
            return Err(ClaimError::Failed {
                message: trf(
                    "Claiming group {id} failed at {device}: {why}. Every member was put back on its driver.",
                    &[("id", &g.to_string()), ("device", &dev.to_string()), ("why", &why)],
                ),
                rolled_back: outcomes,
            });
        }
    }
    // The kernel's own word on the whole group, where it can be asked.
    match k.group_viable(g) {
        Ok(Some(false)) => {
            let outcomes = rollback(k, &originals, &progress, "rollback");
            let _ = state.close_journal(g);
            return Err(ClaimError::Failed {
                message: trf(
                    "Every member of group {id} was bound, but the kernel still does not call the group viable. Every member was put back on its driver.",
                    &[("id", &g.to_string())],
                ),
                rolled_back: outcomes,
            });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("checking viability of group {g}: {e}"),
    }
    // Record the originals for release, then drop the journal: from here on the claim stands.
    progress.mark("claim:verified", "recording the claim");
    let mut record = journal;
    record.operation = "held".into();
    if let Err(e) = state.write_atomic(&state.claim_path(g), &record) {
        // Without its record the claim could not be released to the right drivers later (a
        // full or read-only state directory): undone now, not left half-known.
        let outcomes = rollback(k, &originals, &progress, "rollback");
        let _ = state.close_journal(g);
        return Err(ClaimError::Failed {
            message: trf(
                "Group {id} was bound, but the claim could not be recorded in {dir} ({why}); every member was put back on its driver.",
                &[
                    ("id", &g.to_string()),
                    ("dir", &state.path().display().to_string()),
                    ("why", &e.to_string()),
                ],
            ),
            rolled_back: outcomes,
        });
    }
    progress.mark("claim:recorded", "closing the journal");
    state
        .close_journal(g)
        .map_err(|e| io_failed("closing the journal", e))?;
    Ok(Done {
        group: g,
        changed: true,
        steps,
    })
}

/// A repeat claim's originals: the earlier record's, for what is still this group's (a member,
/// or a function sharing its stream); what the earlier claim did not know, as found now. A
/// device found on a real driver now (not vfio-pci, not none) was moved on purpose since: that
/// driver wins.
fn merge_with_record(
    host: &Host,
    g: GroupId,
    before: Journal,
    members: &[Original],
    unbound: &[Original],
) -> (Vec<Original>, Vec<Original>) {
    let ours: BTreeSet<PciAddress> = host
        .groups
        .get(&g)
        .map(|grp| {
            host.members(grp)
                .map(|d| d.address)
                .chain(host.stream_sharers(grp).iter().map(|d| d.address))
                .collect()
        })
        .unwrap_or_default();
    let merge = |earlier: Vec<Original>, now: &[Original]| -> Vec<Original> {
        let mut out: Vec<Original> = earlier
            .into_iter()
            .filter(|e| ours.contains(&e.address))
            .collect();
        for n in now {
            let moved = n.driver.as_deref().is_some_and(|d| d != VFIO_PCI);
            match out.iter_mut().find(|e| e.address == n.address) {
                Some(e) if moved => *e = n.clone(),
                // The earlier record's drivers and BAR sizes stand; a BAR this claim resizes
                // that the earlier one did not is added with the size it has now.
                Some(e) => {
                    for (bar, size) in &n.bars {
                        if !e.bars.iter().any(|(b, _)| b == bar) {
                            e.bars.push((*bar, *size));
                        }
                    }
                }
                None => out.push(n.clone()),
            }
        }
        out
    };
    (
        merge(before.members, members),
        merge(before.unbound, unbound),
    )
}

fn step_device(s: &Step) -> PciAddress {
    match s {
        Step::SetOverride { device, .. }
        | Step::Unbind { device, .. }
        | Step::Probe { device }
        | Step::Bind { device, .. }
        | Step::ResizeBar { device, .. }
        | Step::Expect { device, .. } => *device,
    }
}

/// Gives group `g` back to the host drivers recorded when it was claimed.
pub fn release(
    host: &Host,
    g: GroupId,
    k: &dyn Kernel,
    state: &StateDir,
    locks: &Locks,
) -> Result<Done, ClaimError> {
    let held = hold(locks, state, g)?;
    release_held(host, g, k, state, &held)
}

/// [`release`] for a caller that holds the group already and read `host` after taking it.
pub fn release_held(
    host: &Host,
    g: GroupId,
    k: &dyn Kernel,
    state: &StateDir,
    held: &Held<'_>,
) -> Result<Done, ClaimError> {
    held.check(g)?;
    let group = host.groups.get(&g).ok_or_else(|| no_group(g))?;
    let holders = k.holders(g);
    if !holders.is_empty() {
        return Err(ClaimError::BadState(trf(
            "Group {id} is held open by {who} (a running guest, most likely). Releasing it now would block until that process lets go, or make QEMU unplug the device from the running guest. Stop the guest first.",
            &[("id", &g.to_string()), ("who", &holders.join(", "))],
        )));
    }
    let record = state
        .claim_record(g)
        .map_err(|e| io_failed("reading the claim record", e))?;
    let known = record.is_some();
    let unbound = record
        .as_ref()
        .map(|r| r.unbound.clone())
        .unwrap_or_default();
    let members: Vec<Original> = match record {
        Some(r) => r.members,
        // Not claimed by Passage (by hand, driverctl, vfio-pci.ids): give the members to
        // whatever driver the kernel picks once the override is cleared. The journal records
        // what is really bound now (vfio-pci), so a rollback or a replay after a crash puts
        // them back there — usable — and never leaves one on no driver.
        None => host
            .members(group)
            .filter(|d| d.is_endpoint() && d.on_vfio())
            .map(original)
            .collect(),
    };
    let originals: Vec<Original> = members.iter().chain(&unbound).cloned().collect();
    let by_ids: Vec<String> = host
        .members(group)
        .filter(|d| {
            host.platform
                .vfio_pci_ids
                .iter()
                .any(|(v, i)| *v == d.vendor_id && *i == d.device_id)
        })
        .map(|d| d.address.to_string())
        .collect();
    if !by_ids.is_empty() {
        return Err(ClaimError::BadState(trf(
            "{devices} are claimed by vfio-pci.ids on the kernel command line; vfio-pci would take them straight back. Remove vfio-pci.ids from the kernel command line (and the initramfs) first.",
            &[("devices", &by_ids.join(", "))],
        )));
    }
    let current = |a: PciAddress| k.driver_of(a).ok().flatten();
    // A member unplugged since the claim (or replaced by another card at its address) has
    // nothing to give back: left out of the steps, never written to.
    let there: Vec<Original> = originals
        .iter()
        .filter(|o| o.is_there(k))
        .cloned()
        .collect();
    let steps = if known {
        restore_steps(&there, &current)
    } else {
        // Unknown originals: clear the override and let the kernel probe.
        there
            .iter()
            .flat_map(|o| {
                [
                    Step::SetOverride {
                        device: o.address,
                        driver: String::new(),
                    },
                    Step::Unbind {
                        device: o.address,
                        driver: VFIO_PCI.into(),
                    },
                    Step::Probe { device: o.address },
                ]
            })
            .collect()
    };
    let changed = steps.iter().any(|s| !matches!(s, Step::SetOverride { .. }));
    crate::fault::point("release:begin");
    let (_, progress) = state.open_journal("release", g, &members, &unbound)?;
    let mut failure = None;
    let mut unplugged = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        let dev = step_device(step);
        if unplugged.contains(&dev) {
            continue;
        }
        progress.mark(&format!("release:{i}"), &step.describe());
        if let Err(why) = execute(k, step) {
            // A member unplugged in the middle of its release has nothing left to give back:
            // the others go on.
            if there.iter().any(|o| o.address == dev && !o.is_there(k)) {
                tracing::info!("{dev} was removed during the release of group {g}");
                unplugged.insert(dev);
                continue;
            }
            failure = Some((dev, why));
            break;
        }
    }
    if failure.is_none() && !known {
        // The kernel chose: a device no host driver took would be stranded on nothing.
        if let Some(o) = there.iter().find(|o| {
            !unplugged.contains(&o.address) && k.driver_of(o.address).ok().flatten().is_none()
        }) {
            failure = Some((
                o.address,
                tr("no host driver took it after vfio-pci let go (is its driver's module available?)"),
            ));
        }
    }
    if let Some((dev, why)) = failure {
        // Finish what can be finished; a device the host driver refuses goes to vfio-pci
        // (usable, never stranded), and the journal stays for the next start to retry.
        rollback(k, &originals, &progress, "rollback");
        never_on_nothing(k, &members);
        let outcomes = originals.iter().map(|o| Outcome::read(k, o)).collect();
        return Err(ClaimError::Failed {
            message: trf(
                "Releasing group {id} failed at {device}: {why}.",
                &[
                    ("id", &g.to_string()),
                    ("device", &dev.to_string()),
                    ("why", &why),
                ],
            ),
            rolled_back: outcomes,
        });
    }
    progress.mark("release:done", "removing the claim record");
    state
        .remove(&state.claim_path(g))
        .map_err(|e| io_failed("removing the claim record", e))?;
    progress.mark("release:unrecorded", "closing the journal");
    state
        .close_journal(g)
        .map_err(|e| io_failed("closing the journal", e))?;
    Ok(Done {
        group: g,
        changed,
        steps,
    })
}

/// Undoes one unfinished operation whose group the caller holds: every member back on its
/// recorded driver, or on vfio-pci where that leaves it on nothing; the journal and the claim
/// record removed (the group is no longer held as a whole).
fn undo(k: &dyn Kernel, state: &StateDir, j: &Journal) -> io::Result<Vec<Outcome>> {
    let progress = Progress::open(state, j.group);
    let all = j.everything();
    rollback(k, &all, &progress, "replay");
    // Only members are given to vfio-pci: a bridge works on no driver (it still forwards), and
    // a function outside every group cannot go to vfio-pci at all.
    never_on_nothing(k, &j.members);
    let outcomes = all.iter().map(|m| Outcome::read(k, m)).collect();
    progress.mark("replay:done", "removing the journal");
    state.remove(&state.claim_path(j.group))?;
    state.close_journal(j.group)?;
    Ok(outcomes)
}

/// Gives every member that ended on no driver to vfio-pci (override, then probe): usable by a
/// guest and claimable again, where "no driver" is usable by nobody.
fn never_on_nothing(k: &dyn Kernel, members: &[Original]) {
    for m in members.iter().filter(|m| m.is_there(k)) {
        if k.driver_of(m.address).ok().flatten().is_none() {
            let _ = execute(
                k,
                &Step::SetOverride {
                    device: m.address,
                    driver: VFIO_PCI.into(),
                },
            );
            let _ = execute(k, &Step::Probe { device: m.address });
        }
    }
}

/// At start, and before every one-shot run: undo every operation that did not finish (a crash,
/// a `kill -9`). An operation whose group a live process still holds ([`StateDir::lock_group`])
/// is that process's to finish and is left alone. Each member goes back to its recorded
/// driver; one that ends on no driver (the recorded driver refused, or there was none) is given
/// to vfio-pci: usable by a guest, never stranded.
pub fn replay(k: &dyn Kernel, state: &StateDir) -> io::Result<Vec<(GroupId, Vec<Outcome>)>> {
    let mut out = Vec::new();
    for listed in state.pending()? {
        let _flock = match state.lock_group(listed.group) {
            Ok(f) => f,
            Err(ClaimError::Busy(_)) => continue,
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        // Read again under the lock: the operation may have finished (and removed its journal)
        // between the listing and now; then there is nothing to undo.
        let Some(j) = state.journal(listed.group)? else {
            continue;
        };
        out.push((j.group, undo(k, state, &j)?));
    }
    Ok(out)
}

/// Binds each of `unbound` that is still there and on no driver back to its recorded driver.
fn give_back_unbound(k: &dyn Kernel, unbound: &[Original]) {
    let waiting: Vec<Original> = unbound
        .iter()
        .filter(|o| o.is_there(k) && o.driver.is_some())
        .filter(|o| matches!(k.driver_of(o.address), Ok(None)))
        .cloned()
        .collect();
    let current = |a: PciAddress| k.driver_of(a).ok().flatten();
    for step in restore_steps(&waiting, &current) {
        if let Err(e) = execute(k, &step) {
            tracing::warn!("giving back {}: {e}", step_device(&step));
        }
    }
}

/// Brings the claim records in line with the kernel after the machine restarted (or someone
/// changed drivers by hand while no helper ran). A record says "Passage holds this group"; it
/// is kept only while every recorded member that is still there sits on vfio-pci, and it is
/// filed under the group number those members have now (numbers follow probe order, so a
/// persisted group can come back under another one). Otherwise the group went back to the
/// host at boot and the record is dropped, so `status` never shows a group the helper lost.
/// Run by the service at start (after replay) and by `--reclaim` at boot. Returns a line per
/// record it changed, for the log.
///
/// A dropped record's `unbound` devices (a bridge taken off `shpchp`, a function sharing the
/// group's stream) that are still there on no driver go back to their drivers through `k`:
/// nothing else would ever bind them again.
pub fn reconcile(host: &Host, state: &StateDir, k: &dyn Kernel) -> io::Result<Vec<String>> {
    let mut said = Vec::new();
    let records = match state.claims() {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(said),
        Err(e) => return Err(e),
    };
    // First where every record belongs now, then the writes: records can trade numbers (5 → 6
    // while 6 → 7), so a record is never moved over one not yet read, and an old file is
    // removed only when no record belongs under its number any more.
    let mut locks = Vec::new();
    // Groups whose lock this call holds (a second flock on one of them would fail: the lock
    // belongs to the open file, not to the process).
    let mut ours = BTreeSet::new();
    let mut stays = BTreeSet::new();
    let mut moves = Vec::new();
    let mut drops = Vec::new();
    for j in records {
        // A group some live process is changing is that process's business.
        let Ok(lock) = state.lock_group(j.group) else {
            stays.insert(j.group);
            continue;
        };
        locks.push(lock);
        ours.insert(j.group);
        let present: Vec<&passage_core::model::Device> = j
            .members
            .iter()
            .filter_map(|m| {
                host.device(m.address).filter(|d| {
                    d.vendor_id.to_string().eq_ignore_ascii_case(&m.vendor_id)
                        && d.device_id.to_string().eq_ignore_ascii_case(&m.device_id)
                })
            })
            .collect();
        let held = !present.is_empty()
            && present
                .iter()
                .all(|d| d.driver.as_deref() == Some(VFIO_PCI));
        match (held, present.first().and_then(|d| d.group)) {
            (true, Some(g)) if g == j.group => {
                stays.insert(g);
            }
            (true, Some(g)) => moves.push((j, g)),
            _ => drops.push(j),
        }
    }
    // Which moves can be made: the target's lock is ours or can be had, no record stays under
    // that number, no other move took it. A move that cannot be made keeps its record where it
    // is, which may block another: repeated until nothing changes, before anything is written.
    let mut lockable = BTreeSet::new();
    for (_, g) in &moves {
        if ours.contains(g) || lockable.contains(g) {
            lockable.insert(*g);
        } else if let Ok(lock) = state.lock_group(*g) {
            locks.push(lock);
            lockable.insert(*g);
        }
    }
    let mut granted = vec![true; moves.len()];
    loop {
        let mut taken = stays.clone();
        let mut changed = false;
        for (i, (j, _)) in moves.iter().enumerate() {
            if !granted[i] {
                taken.insert(j.group);
            }
        }
        for (i, (_, g)) in moves.iter().enumerate() {
            if granted[i] && (!lockable.contains(g) || !taken.insert(*g)) {
                granted[i] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut taken = stays.clone();
    let mut vacated = Vec::new();
    for (i, (j, g)) in moves.into_iter().enumerate() {
        let from = j.group;
        if granted[i] {
            taken.insert(g);
            let mut moved = j;
            moved.group = g;
            state.write_atomic(&state.claim_path(g), &moved)?;
            said.push(format!(
                "group {from} is group {g} since this boot; its claim record follows it"
            ));
            vacated.push(from);
        } else {
            taken.insert(from);
            said.push(format!(
                "group {from}: its members are group {g} now, whose number another claim holds; its record is left as it was"
            ));
        }
    }
    for g in vacated {
        if !taken.contains(&g) {
            state.remove(&state.claim_path(g))?;
        }
    }
    for j in drops {
        let g = j.group;
        // Given back whether or not another record moved in under this number.
        give_back_unbound(k, &j.unbound);
        if !taken.contains(&g) {
            state.remove(&state.claim_path(g))?;
        }
        said.push(format!(
            "group {g}: its members are no longer on vfio-pci (the machine restarted, or they \
             were rebound by hand), so Passage no longer holds it"
        ));
    }
    drop(locks);
    Ok(said)
}

/// Records group `g` as held with the host drivers `members` were persisted from. When its
/// members reached vfio-pci without a claim (at boot, by the persisted udev rule) there is no
/// record yet: one is written, so that `status` shows the group and `release` gives it back to
/// those drivers. When a claim at boot made the record, what it found is corrected from the
/// persisted list. Call it with the group held. Returns whether the record changed.
pub fn adopt(state: &StateDir, g: GroupId, members: &[Original]) -> io::Result<bool> {
    let Some(mut record) = state.claim_record(g)? else {
        let record = Journal {
            version: 1,
            operation: "held".into(),
            group: g,
            members: members.to_vec(),
            unbound: Vec::new(),
        };
        state.write_atomic(&state.claim_path(g), &record)?;
        return Ok(true);
    };
    // What the boot put there is not where the devices came from: "no driver" (claimed before
    // udev bound them), vfio-pci (the rule bound some members first), or the rule's own
    // driver_override. The persisted list knows.
    let mut changed = false;
    for m in record.members.iter_mut() {
        let Some(p) = members.iter().find(|p| {
            p.address == m.address && p.vendor_id == m.vendor_id && p.device_id == m.device_id
        }) else {
            continue;
        };
        let booted = |d: &Option<String>| d.as_deref().is_none_or(|d| d == VFIO_PCI);
        if booted(&m.driver) && !booted(&p.driver) {
            m.driver.clone_from(&p.driver);
            changed = true;
        }
        if m.driver_override.as_deref() == Some(VFIO_PCI) {
            m.driver_override.clone_from(&p.driver_override);
            changed = true;
        }
    }
    if changed {
        state.write_atomic(&state.claim_path(g), &record)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;

    /// The demo host with the endpoints of three groups on vfio-pci, and those groups' numbers.
    fn host_with_two_claimed() -> (Host, GroupId, GroupId, GroupId) {
        let src =
            passage_core::demo::Source::open(Some(passage_core::demo::DemoHost::Workstation), None)
                .unwrap();
        let mut host = passage_core::scan::scan(src.root()).unwrap();
        let with_endpoints: Vec<GroupId> = host
            .groups
            .values()
            .filter(|g| host.members(g).any(|d| d.is_endpoint()))
            .map(|g| g.id)
            .collect();
        let (a, b, c) = (with_endpoints[0], with_endpoints[1], with_endpoints[2]);
        for g in [a, b, c] {
            let members: Vec<PciAddress> = host.groups[&g].devices.clone();
            for m in members {
                if let Some(d) = host.devices.get_mut(&m) {
                    if d.is_endpoint() {
                        d.driver = Some(VFIO_PCI.into());
                    }
                }
            }
        }
        (host, a, b, c)
    }

    fn record(host: &Host, filed_under: GroupId, members_of: GroupId) -> Journal {
        Journal {
            version: 1,
            operation: "held".into(),
            group: filed_under,
            members: host
                .members(&host.groups[&members_of])
                .filter(|d| d.is_endpoint())
                .map(|d| Original {
                    address: d.address,
                    vendor_id: d.vendor_id.to_string(),
                    device_id: d.device_id.to_string(),
                    driver: Some("host-driver".into()),
                    driver_override: None,
                    bars: Vec::new(),
                })
                .collect(),
            unbound: Vec::new(),
        }
    }

    #[test]
    fn records_that_trade_numbers_are_both_kept_and_a_lost_claim_is_dropped() {
        let (host, a, b, c) = host_with_two_claimed();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        // Last boot, a's members were group b and b's were group a; c's members are on their
        // host drivers now.
        let ra = record(&host, b, a);
        let rb = record(&host, a, b);
        // c's members are on their host driver again.
        let mut host = host;
        for m in host.groups[&c].devices.clone() {
            if let Some(d) = host.devices.get_mut(&m) {
                d.driver = Some("host-driver".into());
            }
        }
        let rc = record(&host, c, c);
        for r in [&ra, &rb, &rc] {
            state.write_atomic(&state.claim_path(r.group), r).unwrap();
        }
        let said = reconcile(&host, &state, &Sysfs::new(dir.path())).unwrap();
        let now = state.claims().unwrap();
        assert_eq!(now.len(), 2, "{now:?}\n{said:?}");
        let under = |g: GroupId| now.iter().find(|j| j.group == g).unwrap();
        assert_eq!(under(a).members, ra.members, "{said:?}");
        assert_eq!(under(b).members, rb.members, "{said:?}");
        assert!(
            said.iter().any(|l| l.contains(&format!("group {c}:"))),
            "{said:?}"
        );
        // Done again, nothing moves.
        assert!(reconcile(&host, &state, &Sysfs::new(dir.path()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn adopting_puts_the_persisted_drivers_where_the_boot_left_vfio_pci() {
        let (host, a, _, _) = host_with_two_claimed();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        let persisted = record(&host, a, a);
        let mut booted = persisted.clone();
        for m in &mut booted.members {
            m.driver = Some(VFIO_PCI.into());
            m.driver_override = Some(VFIO_PCI.into());
        }
        state.write_atomic(&state.claim_path(a), &booted).unwrap();
        assert!(adopt(&state, a, &persisted.members).unwrap());
        assert_eq!(
            state.claim_record(a).unwrap().unwrap().members,
            persisted.members
        );
        assert!(!adopt(&state, a, &persisted.members).unwrap());
    }

    #[test]
    fn a_record_that_cannot_move_keeps_its_number_and_blocks_a_move_onto_it() {
        let (host, a, b, c) = host_with_two_claimed();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        // a's record belongs under b now, b's under c; c is busy (a live process holds it).
        let ra = record(&host, a, b);
        let rb = record(&host, b, c);
        for r in [&ra, &rb] {
            state.write_atomic(&state.claim_path(r.group), r).unwrap();
        }
        let busy = state.lock_group(c).unwrap();
        let said = reconcile(&host, &state, &Sysfs::new(dir.path())).unwrap();
        drop(busy);
        assert_eq!(
            state.claim_record(a).unwrap().as_ref(),
            Some(&ra),
            "{said:?}"
        );
        assert_eq!(
            state.claim_record(b).unwrap().as_ref(),
            Some(&rb),
            "{said:?}"
        );
        assert_eq!(state.claim_record(c).unwrap(), None, "{said:?}");
    }
}
