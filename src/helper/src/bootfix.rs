//! Changing the kernel command line: the edit `core::bootline` computed, written into the boot
//! configuration's files and carried to the boot loader by the system's own tool (update-grub,
//! grub-mkconfig, kernel-install, proxmox-boot-tool), as one transaction.
//!
//! Before the first file is written, a journal in the state directory keeps every file's text
//! as it was; a tool that fails, or a crash before the end, puts every file back (the next run
//! replays the journal first) and runs the tool again so the boot loader matches them. Each
//! change is recorded (`boot-line.json`) with the line it was made on, so `unfix` takes back
//! exactly what it did, and noted in `/run/passage` until the reboot that makes it real.
//!
//! The D-Bus service may not write /etc/default or /boot (its unit keeps them read-only): it
//! leaves the request in the state directory and has systemd run passage-boot-line.service
//! (`passage-helper --boot-line-request`), which carries it out here. Without systemd (a test
//! bus) the service carries it out itself.

use crate::claim::StateDir;
use passage_core::bootline::{self, Boot, Edit};
use passage_core::i18n::{tr, trf};
use passage_core::{HostRoot, PciAddress};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const REQUEST: &str = "boot-line-request.json";
pub const RESULT: &str = "boot-line-result.json";
const JOURNAL: &str = "boot-line-journal.json";
const RECORDS: &str = "boot-line.json";

/// What the service asks of passage-boot-line.service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    /// Echoed in the result, so a waiter never takes another request's answer for its own.
    pub id: String,
    /// The boot it was made in (`proc/sys/kernel/random/boot_id`): a request from another
    /// boot is never carried out — nobody is waiting for it.
    #[serde(default)]
    pub boot_id: String,
    pub code: String,
    pub device: Option<PciAddress>,
    pub edit: Edit,
    /// Takes back the recorded fix of `code` (and `device`) instead of making one.
    pub undo: bool,
}

/// What it did: whether a file changed, and what happened in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub changed: bool,
    pub notes: Vec<String>,
}

/// One fix Passage made to the boot line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub code: String,
    pub device: Option<PciAddress>,
    pub edit: Edit,
    /// The configured line the edit was made on (what `unfix` restores the edited words of).
    pub before: Vec<String>,
    pub files: Vec<PathBuf>,
    /// Each file's text before and after the change: while a file still reads as after,
    /// `unfix` puts the text before back exactly (every word where it was).
    #[serde(default)]
    pub texts: Vec<(PathBuf, String, String)>,
    /// Seconds since the epoch.
    pub at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    version: u32,
    /// Every file the change writes, relative to the root, and its text before.
    files: Vec<(PathBuf, String)>,
    commands: Vec<Vec<String>>,
    /// The files are written and every command ran: what is left is the record. A replay of
    /// a finished change keeps it, and writes the record carried here if it is missing.
    #[serde(default)]
    done: bool,
    /// The record a finished change leaves (`None` for an undo, which removes one).
    #[serde(default)]
    record: Option<Record>,
    /// An undo's code and device, whose record a finished undo removes.
    #[serde(default)]
    undoes: Option<(String, Option<PciAddress>)>,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The recorded fixes.
pub fn records(state: &StateDir) -> Result<Vec<Record>, String> {
    state.read_list(RECORDS, &tr("a list of Passage's boot-line changes"))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    passage_core::store::write_atomic(path, &bytes)
        .map_err(|e| io_err(&path.display().to_string(), e))
}

/// Writes a boot file as every state file is written (temporary file, fsync, rename, fsync of
/// the directory), keeping the mode it had: /etc/default/grub stays readable by everyone.
fn write_keeping_mode(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let mut tmp = tempfile::Builder::new()
        .prefix(".passage-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A boot file Passage may replace: a regular file, not a link to somewhere else.
fn check_plain(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(_) => Err(trf(
            "{file} is not a plain file (a link?): Passage does not replace it; change it by hand",
            &[("file", &path.display().to_string())],
        )),
        Err(e) => Err(io_err(&path.display().to_string(), e)),
    }
}

/// Runs the boot loader's tool. Under a test tree (a fake-kernel build) the tree's own program
/// of that name runs, told the tree by `PASSAGE_ROOT`; at `/`, the system's.
fn run_command(root: &Path, cmd: &[String]) -> Result<(), String> {
    let Some((program, args)) = cmd.split_first() else {
        return Ok(());
    };
    let path = if root == Path::new("/") {
        PathBuf::from(program)
    } else {
        root.join(program.trim_start_matches('/'))
    };
    let out = std::process::Command::new(&path)
        .args(args)
        .env(passage_core::names::ROOT_ENV, root)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io_err(program, e))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(trf(
        "{command} failed ({status}): {error}",
        &[
            ("command", &cmd.join(" ")),
            ("status", &out.status.to_string()),
            ("error", last),
        ],
    ))
}

/// What a rollback could not do: files it could not put back (the journal is kept for them),
/// and commands that failed when run again on the files as they were.
#[derive(Default)]
struct Leftovers {
    files: Vec<String>,
    commands: Vec<String>,
}

/// Puts back every file a journal names, then runs the first `rerun` of its commands again so
/// the boot loader matches the files (those that ran, up to the one that failed; all of them
/// after a crash, where nobody knows how far it got). The journal is removed once the files
/// are back.
fn roll_back(root: &Path, state: &StateDir, j: &Journal, rerun: usize) -> Leftovers {
    let mut left = Leftovers::default();
    for (rel, before) in &j.files {
        if let Err(e) = write_keeping_mode(&root.join(rel), before) {
            left.files.push(io_err(&format!("/{}", rel.display()), e));
        }
    }
    if !left.files.is_empty() {
        return left;
    }
    let _ = std::fs::remove_file(state.path().join(JOURNAL));
    for c in j.commands.iter().take(rerun) {
        if let Err(e) = run_command(root, c) {
            left.commands.push(e);
        }
    }
    left
}

/// Replays a journal a crash left: every file back as it was.
pub fn replay(root: &Path, state: &StateDir) -> Result<bool, String> {
    let p = state.path().join(JOURNAL);
    let j: Journal = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| io_err(&p.display().to_string(), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&p.display().to_string(), e)),
    };
    if j.done {
        // The change was complete: its record is made sure of, the journal removed.
        let mut recs = records(state)?;
        let before = recs.clone();
        if let Some(r) = &j.record {
            recs.retain(|x| !(x.code == r.code && x.device == r.device));
            recs.push(r.clone());
        }
        if let Some((code, device)) = &j.undoes {
            recs.retain(|x| !(&x.code == code && &x.device == device));
        }
        if recs != before {
            state.write_file(RECORDS, &recs)?;
        }
        let _ = std::fs::remove_file(&p);
        return Ok(false);
    }
    let left = roll_back(root, state, &j, j.commands.len());
    if left.files.is_empty() && left.commands.is_empty() {
        Ok(true)
    } else {
        Err(left
            .files
            .into_iter()
            .chain(left.commands)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Takes the boot-line lock of the state directory (waiting for another writer).
fn lock(state: &StateDir) -> Result<crate::claim::GroupFlock, String> {
    state
        .lock_named("boot-line")
        .map_err(|e| io_err("boot-line.lock", e))
}

/// The note in `/run/passage` that Passage changed the boot line during this boot (the last
/// change); removed when the configured line is the running one again, so nothing waits.
fn note_pending(root: &Path, edit: &Edit, configured: &[String]) {
    let path = root.join(bootline::PENDING_NOTE);
    let running = HostRoot::open(root)
        .ok()
        .and_then(|r| bootline::running(&r))
        .unwrap_or_default();
    let (more, less) = bootline::difference(configured, &running);
    if more.is_empty() && less.is_empty() {
        let _ = std::fs::remove_file(&path);
        return;
    }
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
    }
    if let Ok(b) = serde_json::to_vec(edit) {
        if write_keeping_mode(&path, &String::from_utf8_lossy(&b)).is_ok() {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Carries out `req` on the boot configuration under `root`.
pub fn apply(root: &Path, state: &StateDir, req: &Request) -> Result<Done, String> {
    if req.version != 1 {
        return Err(format!(
            "boot-line request version {} is not 1",
            req.version
        ));
    }
    req.edit.check()?;
    let _lock = lock(state)?;
    replay(root, state)?;
    let r = HostRoot::open(root).map_err(|e| e.to_string())?;
    let cfg = match bootline::read(&r) {
        Boot::Known(c) => c,
        Boot::Unknown { why } => {
            return Err(trf(
                "Passage cannot change this system's kernel command line: {why}",
                &[("why", &why)],
            ))
        }
    };
    let mut recs = records(state)?;
    let same = |x: &Record| x.code == req.code && x.device == req.device;
    let changes = if req.undo {
        let Some(rec) = recs.iter().find(|x| same(x)).cloned() else {
            return Ok(Done {
                changed: false,
                notes: vec![trf(
                    "Passage has no change of {code} to take back.",
                    &[("code", &req.code)],
                )],
            });
        };
        undo_changes(&r, &cfg, &rec, &recs, &req.edit)?
    } else {
        cfg.edit_files(&r, &req.edit)?
    };
    let commands = cfg.commands(&req.edit);
    let mut notes = Vec::new();
    // The record a finished fix leaves (built once, for the journal and the list).
    let mut made: Option<Record> = None;
    if changes.is_empty() {
        notes.push(tr(
            "The boot configuration already says so; nothing was written.",
        ));
    } else {
        for (rel, _, _) in &changes {
            check_plain(&root.join(rel))?;
        }
        // A copy of each file as it was, beside the journal, for a person to compare.
        let backups = state.path().join("backups");
        std::fs::create_dir_all(&backups).map_err(|e| io_err("backups", e))?;
        let at = now();
        for (rel, before, _) in &changes {
            let name = format!("{}.{at}", rel.display().to_string().replace('/', "_"));
            write_json(&backups.join(format!("{name}.json")), before)?;
        }
        let mut journal = Journal {
            version: 1,
            files: changes
                .iter()
                .map(|(f, b, _)| (f.clone(), b.clone()))
                .collect(),
            commands: commands.clone(),
            done: false,
            record: None,
            undoes: None,
        };
        state.write_file(JOURNAL, &journal)?;
        crate::fault::point("boot-line:journaled");
        for (rel, _, after) in &changes {
            if let Err(e) = write_keeping_mode(&root.join(rel), after) {
                let left = roll_back(root, state, &journal, 0);
                return Err(failed_note(
                    &io_err(&format!("/{}", rel.display()), e),
                    &left,
                ));
            }
        }
        crate::fault::point("boot-line:written");
        for (i, c) in commands.iter().enumerate() {
            if let Err(e) = run_command(root, c) {
                // Every command up to the one that failed may have written some of its output
                // (one kernel's entry of several, one ESP of two): they all run again on the
                // files as they were, so the boot loader matches them.
                let left = roll_back(root, state, &journal, i + 1);
                return Err(failed_note(&e, &left));
            }
        }
        // Finished: from here a replay keeps the change, and the record goes with the
        // journal, so a crash anywhere after this leaves it recorded.
        journal.done = true;
        if req.undo {
            journal.undoes = Some((req.code.clone(), req.device));
        } else {
            journal.record = Some(Record {
                code: req.code.clone(),
                device: req.device,
                edit: req.edit.clone(),
                before: cfg.line.clone(),
                files: changes.iter().map(|(f, _, _)| f.clone()).collect(),
                texts: changes.clone(),
                at: now(),
            });
        }
        state.write_file(JOURNAL, &journal)?;
        made = journal.record.clone();
        for (rel, _, _) in &changes {
            notes.push(trf(
                "/{file} changed.",
                &[("file", &rel.display().to_string())],
            ));
        }
        for c in &commands {
            notes.push(trf("Ran {command}.", &[("command", &c.join(" "))]));
        }
    }
    if req.undo || made.is_some() {
        recs.retain(|x| !same(x));
    }
    recs.extend(made);
    state.write_file(RECORDS, &recs)?;
    let _ = std::fs::remove_file(state.path().join(JOURNAL));
    if !changes.is_empty() {
        let configured = match bootline::read(&r) {
            Boot::Known(c) => c.line,
            Boot::Unknown { .. } => req.edit.apply(&cfg.line),
        };
        note_pending(root, &req.edit, &configured);
        notes.push(tr(
            "It takes effect at the next boot; passagectl doctor then says whether it took.",
        ));
    }
    Ok(Done {
        changed: !changes.is_empty(),
        notes,
    })
}

/// The files' change that takes back `rec`: each file's text before, exactly, while every
/// file still reads as the fix left it; otherwise (the files changed since) the inverse edit on
/// the line as it is now, refused where it would undo what another recorded fix added.
fn undo_changes(
    r: &HostRoot,
    cfg: &bootline::BootConfig,
    rec: &Record,
    recs: &[Record],
    inverse: &Edit,
) -> Result<Vec<(PathBuf, String, String)>, String> {
    let untouched = !rec.texts.is_empty()
        && rec
            .texts
            .iter()
            .all(|(f, _, after)| r.read(f).ok().is_some_and(|now| now == after.as_bytes()));
    if untouched {
        return Ok(rec
            .texts
            .iter()
            .map(|(f, before, after)| (f.clone(), after.clone(), before.clone()))
            .collect());
    }
    for other in recs
        .iter()
        .filter(|o| !(o.code == rec.code && o.device == rec.device))
    {
        if let Some(w) = other.edit.add.iter().find(|w| {
            inverse.add.iter().any(|a| bootline::replaces(a, w)) || inverse.remove.contains(w)
        }) {
            return Err(trf(
                "taking back {code} would undo {word}, which the fix of {other} added; take that back first (passagectl unfix {other})",
                &[("code", &rec.code), ("word", w), ("other", &other.code)],
            ));
        }
    }
    cfg.edit_files(r, inverse)
}

fn failed_note(error: &str, left: &Leftovers) -> String {
    if !left.files.is_empty() {
        trf(
            "{error}. Putting the boot files back failed too: {problems}. The journal in the state directory keeps their old text, and passage-boot-line.service puts them back at the next boot or change.",
            &[("error", error), ("problems", &left.files.join("; "))],
        )
    } else if !left.commands.is_empty() {
        trf(
            "{error}. Every boot file is as it was before, but running the boot loader's tool again on them failed too ({problems}): check the boot loader's configuration before restarting.",
            &[("error", error), ("problems", &left.commands.join("; "))],
        )
    } else {
        trf(
            "{error}. Every boot file is as it was before, and the boot loader's tool ran again on them.",
            &[("error", error)],
        )
    }
}

/// This boot's id (`proc/sys/kernel/random/boot_id` under the root), or "" where there is none.
pub fn boot_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("proc/sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The edit that takes back the recorded fix of `code` (and `device`), if there is one.
pub fn undo_edit(
    state: &StateDir,
    code: &str,
    device: Option<PciAddress>,
) -> Result<Option<Edit>, String> {
    Ok(records(state)?
        .into_iter()
        .find(|r| r.code == code && r.device == device)
        .map(|r| r.edit.inverse(&r.before)))
}

/// passage-boot-line.service: carries out the request the service left, leaves the result
/// beside it.
pub fn serve_request(root: &Path, state: &StateDir) -> Result<Done, String> {
    let p = state.path().join(REQUEST);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        // Started at boot for a journal a crash left: put the files back, nothing else.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _lock = lock(state)?;
            let replayed = replay(root, state)?;
            return Ok(Done {
                changed: replayed,
                notes: vec![if replayed {
                    tr("The boot configuration was put back as it was before an unfinished change.")
                } else {
                    tr("No boot-line change to carry out or undo.")
                }],
            });
        }
        Err(e) => return Err(io_err(&p.display().to_string(), e)),
    };
    let _ = std::fs::remove_file(&p);
    let req: Request =
        serde_json::from_slice(&bytes).map_err(|e| io_err(&p.display().to_string(), e))?;
    // A request is carried out in the boot it was made in, while its caller waits: one left
    // behind by a crash is never carried out later, at some boot, without anyone asking.
    if req.boot_id != boot_id(root) {
        let _lock = lock(state)?;
        replay(root, state)?;
        return Err(tr(
            "A boot-line request left behind was dropped: nobody was waiting for it.",
        ));
    }
    let result = apply(root, state, &req);
    let stored: (String, Result<Done, String>) = (req.id.clone(), result.clone());
    state.write_file(RESULT, &stored)?;
    result
}
