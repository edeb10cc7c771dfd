//! The user's own files: the plan and the local guest profiles under the XDG config dir
//! (`$XDG_CONFIG_HOME/passage/`, `~/.config/passage/`), written atomically so a crash or a
//! full disk leaves the old file, never half of a new one.

use crate::i18n::trf;
use crate::plan::{check_guest_name, Guest, Plan, PlanError, Vmm};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest plan or profile file we read: a plan for every function of a 10,000-function host
/// is a few MiB; anything far larger is not ours.
pub const MAX_FILE: u64 = 64 << 20;

/// `$XDG_CONFIG_HOME/passage`, else `~/.config/passage`.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("passage"))
}

/// Where the app keeps the plan for another machine (`passage --host`): one per machine, since
/// a plan numbers that machine's groups — `hosts/HOST/plan.json` beside the default plan.
pub fn host_plan_path(host: &crate::Remote) -> Option<PathBuf> {
    // The host name is a strict value (letters, digits, `.`, `-`, `_`, `:`; never `..` alone
    // or a leading dot), so it is one path component.
    config_dir().map(|d| d.join("hosts").join(&host.host).join("plan.json"))
}

/// Where `passagectl plan` and the app keep the plan unless told otherwise.
pub fn default_plan_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("plan.json"))
}

/// Where local guest profiles live.
pub fn profiles_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("guests.json"))
}

/// Why a file of ours could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Plan { path: PathBuf, source: PlanError },
    #[error("{path}: not a guest profile list: {detail}")]
    Profiles { path: PathBuf, detail: String },
    #[error("{0} is larger than any file Passage writes")]
    TooLarge(PathBuf),
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new file, never half: a
/// temporary file of a unique name beside it (two writers never share one), fsync, rename over
/// the old file, fsync of the directory so the rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".passage-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn read_small(path: &Path) -> Result<Option<String>, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE => return Err(StoreError::TooLarge(path.to_path_buf())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    std::fs::read_to_string(path).map(Some).map_err(io)
}

/// Reads a plan file; a missing file is an empty plan (the first edit creates it).
pub fn load_plan(path: &Path) -> Result<Plan, StoreError> {
    match read_small(path)? {
        None => Ok(Plan::default()),
        Some(s) => Plan::from_json(&s).map_err(|source| StoreError::Plan {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_creating(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    write_atomic(path, bytes).map_err(io)
}

pub fn save_plan(path: &Path, plan: &Plan) -> Result<(), StoreError> {
    write_creating(path, plan.to_json().as_bytes())
}

/// A local guest profile: a guest Passage knows without libvirt (plain QEMU, crosvm, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub vmm: Vmm,
    #[serde(default = "q35")]
    pub machine: String,
    /// The guest's memory in MiB (`guests add --memory`), for the locked-memory check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// The memory sizes a guest may have, in MiB: 1 MiB to 64 TiB.
pub const MEMORY_MIB: std::ops::RangeInclusive<u64> = 1..=64 * 1024 * 1024;

/// A guest's memory as a file gives it: refused outside [`MEMORY_MIB`].
pub fn check_memory(guest: &str, mib: Option<u64>) -> Result<(), PlanError> {
    match mib {
        Some(m) if !MEMORY_MIB.contains(&m) => Err(PlanError::Refused(trf(
            "guest “{guest}”: memory_mib {mib} is not a memory size (1 to 67108864 MiB)",
            &[("guest", guest), ("mib", &m.to_string())],
        ))),
        _ => Ok(()),
    }
}

/// A memory size as a person writes it: `16G`, `16GiB`, `512M`, `1T`, or MiB without a unit;
/// in MiB. Between 1 MiB and 64 TiB.
pub fn parse_memory(s: &str) -> Result<u64, PlanError> {
    let bad = || {
        PlanError::Refused(trf(
            "“{size}” is not a memory size (such as 16G, 512M or 16384)",
            &[("size", &s.chars().take(24).collect::<String>())],
        ))
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => Some(n),
        "g" | "gb" | "gib" => n.checked_mul(1024),
        "t" | "tb" | "tib" => n.checked_mul(1024 * 1024),
        _ => None,
    }
    .ok_or_else(bad)?;
    if MEMORY_MIB.contains(&mib) {
        Ok(mib)
    } else {
        Err(bad())
    }
}

fn q35() -> String {
    "q35".into()
}

impl Profile {
    /// The profile as a plan guest holding nothing yet.
    pub fn to_guest(&self) -> Result<Guest, PlanError> {
        let mut g = Guest::new(&self.name, self.vmm)?;
        g.machine = self.machine.clone();
        g.memory_mib = self.memory_mib;
        Ok(g)
    }
}

/// Machine types Passage knows how to lay out (and their versioned names).
pub fn check_machine(m: &str) -> Result<(), PlanError> {
    let ok = !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && (m.contains("q35") || m == "pc" || m.starts_with("pc-i440fx"));
    if ok {
        Ok(())
    } else {
        Err(PlanError::Refused(trf(
            "“{machine}” is not a machine type Passage lays out (q35, pc, or their versioned names such as pc-q35-8.2)",
            &[("machine", &m.chars().take(32).collect::<String>())],
        )))
    }
}

pub fn load_profiles(path: &Path) -> Result<Vec<Profile>, StoreError> {
    let Some(s) = read_small(path)? else {
        return Ok(Vec::new());
    };
    let v: Vec<Profile> = serde_json::from_str(&s).map_err(|e| StoreError::Profiles {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    for p in &v {
        check_guest_name(&p.name)
            .and_then(|_| check_memory(&p.name, p.memory_mib))
            .map_err(|e| StoreError::Profiles {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
    }
    Ok(v)
}

pub fn save_profiles(path: &Path, profiles: &[Profile]) -> Result<(), StoreError> {
    let s = serde_json::to_string_pretty(profiles).unwrap_or_default() + "\n";
    write_creating(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_read_as_people_write_them_and_nothing_else() {
        for (text, mib) in [
            ("16G", 16384),
            ("16GiB", 16384),
            ("512M", 512),
            ("2048", 2048),
            ("1T", 1024 * 1024),
            (" 8g ", 8192),
        ] {
            assert_eq!(parse_memory(text).unwrap(), mib, "{text}");
        }
        for bad in [
            "",
            "G",
            "0",
            "16X",
            "-1G",
            "99999999999999999999",
            "65T",
            "1.5G",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plan_survives_a_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/plan.json");
        assert_eq!(load_plan(&p).unwrap(), Plan::default());
        let mut plan = Plan::default();
        plan.add_guest(Guest::new("vm1", Vmm::Qemu).unwrap())
            .unwrap();
        save_plan(&p, &plan).unwrap();
        assert_eq!(load_plan(&p).unwrap(), plan);
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn machine_types_are_checked() {
        for ok in ["q35", "pc-q35-8.2", "pc", "pc-i440fx-7.2"] {
            assert!(check_machine(ok).is_ok(), "{ok}");
        }
        for bad in ["", "q35;rm", "isapc", &"q35".repeat(20)] {
            assert!(check_machine(bad).is_err(), "{bad:?}");
        }
    }
}
