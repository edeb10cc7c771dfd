//! Changing the kernel command line: the edit `core::bootline` computed, written into the boot
//! configuration's files and carried to the boot loader by the system's own tool (update-grub,
//! grub-mkconfig, grubby, kernel-install, proxmox-boot-tool), as one transaction.
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
    /// Seconds since the epoch.
    pub at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    version: u32,
    /// Every file the change writes, relative to the root, and its text before.
    files: Vec<(PathBuf, String)>,
    commands: Vec<Vec<String>>,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The recorded fixes.
pub fn records(state: &StateDir) -> Result<Vec<Record>, String> {
    let p = state.path().join(RECORDS);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            trf(
                "{file} is not a list of Passage's boot-line changes ({error}); move it aside to go on",
                &[("file", &p.display().to_string()), ("error", &e.to_string())],
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(&p.display().to_string(), e)),
    }
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

/// Puts back every file a journal names, then runs the first `rerun` of its commands again so
/// the boot loader matches the files (those that had run before a failure; all of them after
/// a crash, where nobody knows how far it got). The journal is removed once the files are
/// back; a command that fails again is said, not retried.
fn roll_back(root: &Path, state: &StateDir, j: &Journal, rerun: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, before) in &j.files {
        if let Err(e) = write_keeping_mode(&root.join(rel), before) {
            problems.push(io_err(&format!("/{}", rel.display()), e));
        }
    }
    if problems.is_empty() {
        let _ = std::fs::remove_file(state.path().join(JOURNAL));
    } else {
        return problems;
    }
    for c in j.commands.iter().take(rerun) {
        if let Err(e) = run_command(root, c) {
            problems.push(e);
        }
    }
    problems
}

/// Replays a journal a crash left: every file back as it was.
pub fn replay(root: &Path, state: &StateDir) -> Result<bool, String> {
    let p = state.path().join(JOURNAL);
    let j: Journal = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| io_err(&p.display().to_string(), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&p.display().to_string(), e)),
    };
    let problems = roll_back(root, state, &j, j.commands.len());
    if problems.is_empty() {
        Ok(true)
    } else {
        Err(problems.join("; "))
    }
}

/// Takes the boot-line lock of the state directory (waiting for another writer).
fn lock(state: &StateDir) -> Result<std::fs::File, String> {
    let dir = state.path().join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| io_err("locks", e))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("boot-line.lock"))
        .map_err(|e| io_err("boot-line.lock", e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err("boot-line.lock", e))?;
    Ok(f)
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
    if req.undo && !recs.iter().any(same) {
        return Ok(Done {
            changed: false,
            notes: vec![trf(
                "Passage has no change of {code} to take back.",
                &[("code", &req.code)],
            )],
        });
    }
    let changes = cfg.edit_files(&r, &req.edit)?;
    let commands = cfg.commands(&req.edit);
    let mut notes = Vec::new();
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
        let journal = Journal {
            version: 1,
            files: changes
                .iter()
                .map(|(f, b, _)| (f.clone(), b.clone()))
                .collect(),
            commands: cfg.commands(&req.edit.inverse(&cfg.line)),
        };
        write_json(&state.path().join(JOURNAL), &journal)?;
        crate::fault::point("boot-line:journaled");
        for (rel, _, after) in &changes {
            if let Err(e) = write_keeping_mode(&root.join(rel), after) {
                let problems = roll_back(root, state, &journal, 0);
                return Err(failed_note(
                    &io_err(&format!("/{}", rel.display()), e),
                    &problems,
                ));
            }
        }
        crate::fault::point("boot-line:written");
        for (i, c) in commands.iter().enumerate() {
            if let Err(e) = run_command(root, c) {
                // The commands that ran before wrote the new line (one kernel's entry of
                // several): they run again on the old files. The one that failed wrote nothing
                // when it is the first.
                let problems = roll_back(root, state, &journal, if i == 0 { 0 } else { i + 1 });
                return Err(failed_note(&e, &problems));
            }
        }
        for (rel, _, _) in &changes {
            notes.push(trf(
                "/{file} changed.",
                &[("file", &rel.display().to_string())],
            ));
        }
        for c in &commands {
            notes.push(trf("Ran {command}.", &[("command", &c.join(" "))]));
        }
        let _ = std::fs::remove_file(state.path().join(JOURNAL));
    }
    if req.undo {
        recs.retain(|x| !same(x));
    } else if !changes.is_empty() {
        recs.retain(|x| !same(x));
        recs.push(Record {
            code: req.code.clone(),
            device: req.device,
            edit: req.edit.clone(),
            before: cfg.line.clone(),
            files: changes.iter().map(|(f, _, _)| f.clone()).collect(),
            at: now(),
        });
    }
    write_json(&state.path().join(RECORDS), &recs)?;
    if !changes.is_empty() {
        note_pending(root, &req.edit, &req.edit.apply(&cfg.line));
        notes.push(tr(
            "It takes effect at the next boot; passagectl doctor then says whether it took.",
        ));
    }
    Ok(Done {
        changed: !changes.is_empty(),
        notes,
    })
}

fn failed_note(error: &str, problems: &[String]) -> String {
    if problems.is_empty() {
        trf(
            "{error}. Every file is as it was before.",
            &[("error", error)],
        )
    } else {
        trf(
            "{error}. Every file was put back, but: {problems}. If a file is named there, the journal in the state directory keeps its old text and the helper's next start puts it back.",
            &[("error", error), ("problems", &problems.join("; "))],
        )
    }
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
    let bytes = std::fs::read(&p).map_err(|e| io_err(&p.display().to_string(), e))?;
    let _ = std::fs::remove_file(&p);
    let req: Request =
        serde_json::from_slice(&bytes).map_err(|e| io_err(&p.display().to_string(), e))?;
    let result = apply(root, state, &req);
    let stored: Result<Done, String> = result.clone();
    write_json(&state.path().join(RESULT), &stored)?;
    result
}
