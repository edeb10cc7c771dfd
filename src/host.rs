//! The host root: every file Passage reads about a machine is read through this value.
//!
//! A host root is a directory laid out exactly as Linux lays out `/` (`sys/`, `proc/`, `dev/`).
//! It is `/` on a real host, a recording made by `passagectl record`, or a tree built by a test.
//! All opens go through `openat2(RESOLVE_IN_ROOT)`, so absolute symlinks and `..` inside a
//! recorded tree resolve *inside* it and nothing outside the root is ever read — even from a
//! hostile tree. When a recorder is attached, every read is remembered so that `record` can
//! write out exactly what was read, no more.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// Bigger files than this are not sysfs attributes; refusing them keeps a hostile tree from
/// making us read gigabytes. (PCIe extended config space is 4096 bytes; mountinfo on a busy
/// container host can reach a few hundred KiB.)
pub const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Errors about the root itself (as opposed to single unreadable files, which the scanner turns
/// into "unknown").
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot open host root {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is not a host root: it has no sys/bus/pci/devices directory")]
    NotARoot { path: PathBuf },
}

/// One entry of a recording.
#[derive(Debug, Clone)]
pub enum Recorded {
    File(Vec<u8>),
    Link(PathBuf),
    Dir,
}

/// A host root, opened once.
pub struct HostRoot {
    path: PathBuf,
    fd: OwnedFd,
    recorder: Option<Mutex<BTreeMap<PathBuf, Recorded>>>,
}

impl std::fmt::Debug for HostRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRoot")
            .field("path", &self.path)
            .finish()
    }
}

fn resolve() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl HostRoot {
    /// Opens `path` as a host root and checks that it looks like one.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, RootError> {
        let path = path.into();
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootError::Open {
            path: path.clone(),
            source: e.into(),
        })?;
        let root = Self {
            path,
            fd,
            recorder: None,
        };
        if !root.is_dir("sys/bus/pci/devices") {
            return Err(RootError::NotARoot { path: root.path });
        }
        Ok(root)
    }

    /// Opens the root and remembers every read, for `passagectl record`.
    pub fn open_recording(path: impl Into<PathBuf>) -> Result<Self, RootError> {
        let mut root = Self::open(path)?;
        root.recorder = Some(Mutex::new(BTreeMap::new()));
        Ok(root)
    }

    /// Where the root is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The real host's root `/`.
    pub fn is_system_root(&self) -> bool {
        self.path == Path::new("/")
    }

    fn note(&self, rel: &Path, what: Recorded) {
        if let Some(rec) = &self.recorder {
            if let Ok(mut map) = rec.lock() {
                // A link read at a path wins over a directory seen through it: writing the
                // link back re-creates what was under it at the link's target.
                if matches!(what, Recorded::Dir) && matches!(map.get(rel), Some(Recorded::Link(_)))
                {
                    return;
                }
                map.insert(rel.to_path_buf(), what);
            }
        }
    }

    /// What has been read so far (empty unless recording).
    pub fn recording(&self) -> BTreeMap<PathBuf, Recorded> {
        self.recorder
            .as_ref()
            .and_then(|r| r.lock().ok().map(|m| m.clone()))
            .unwrap_or_default()
    }

    fn open_in(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = relative(rel)?;
        Ok(rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )?)
    }

    /// Reads a whole file (at most [`MAX_FILE`] bytes).
    pub fn read(&self, rel: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let rel = rel.as_ref();
        let fd = self.open_in(rel, OFlags::RDONLY)?;
        let mut file = std::fs::File::from(fd);
        let mut buf = Vec::with_capacity(256);
        (&mut file).take(MAX_FILE + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than {MAX_FILE} bytes", rel.display()),
            ));
        }
        self.note(rel, Recorded::File(buf.clone()));
        Ok(buf)
    }

    /// Reads a text attribute, trimmed of its trailing newline and surrounding blanks.
    pub fn read_string(&self, rel: impl AsRef<Path>) -> io::Result<String> {
        let bytes = self.read(rel)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_string())
    }

    /// The raw target of a symlink (not followed).
    pub fn read_link(&self, rel: impl AsRef<Path>) -> io::Result<PathBuf> {
        let rel = relative(rel.as_ref())?;
        let (dir, name) = split(rel)?;
        let dirfd = if dir.as_os_str().is_empty() {
            rustix::fs::openat(
                &self.fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        } else {
            self.open_in(dir, OFlags::PATH | OFlags::DIRECTORY)?
        };
        let target = rustix::fs::readlinkat(&dirfd, name, Vec::new())?;
        let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
        self.note(rel, Recorded::Link(target.clone()));
        Ok(target)
    }

    /// Resolves a symlink's target to a path relative to the root, the way the kernel would
    /// inside this root (`..` never climbs above it, absolute targets start at it). Only the
    /// link itself is resolved; opening the result later resolves any further links safely.
    pub fn resolve_link(&self, rel: impl AsRef<Path>) -> io::Result<PathBuf> {
        let rel = relative(rel.as_ref())?;
        let target = self.read_link(rel)?;
        let base = rel.parent().unwrap_or(Path::new(""));
        Ok(normalize(&base.join(target)))
    }

    /// The file names in a directory, sorted.
    pub fn read_dir(&self, rel: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let rel = rel.as_ref();
        let fd = self.open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
        names.sort();
        self.note(rel, Recorded::Dir);
        Ok(names)
    }

    /// True when `rel` exists (following links inside the root). When recording, what was
    /// found is recorded too, so the recording answers the same.
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        let rel = rel.as_ref();
        if self.is_dir(rel) {
            return true;
        }
        let found = self.open_in(rel, OFlags::PATH).is_ok();
        if found && self.recorder.is_some() {
            let _ = self.read(rel);
        }
        found
    }

    /// True when `rel` is a directory (following links inside the root).
    pub fn is_dir(&self, rel: impl AsRef<Path>) -> bool {
        let rel = rel.as_ref();
        let found = self.open_in(rel, OFlags::PATH | OFlags::DIRECTORY).is_ok();
        if found {
            self.note(rel, Recorded::Dir);
        }
        found
    }
}

/// Accepts only relative paths without `..` that climbs out of their start.
fn relative(rel: &Path) -> io::Result<&Path> {
    if rel.is_absolute() || rel.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a path inside the host root: {}", rel.display()),
        ));
    }
    Ok(rel)
}

fn split(rel: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a link path: {}", rel.display()),
        )),
    }
}

/// Lexical normalisation that treats the root as `/`: `..` at the top stays at the top.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::new(),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// Writes a recording out as a tree that [`HostRoot::open`] reads back to the same facts.
pub fn write_recording(out: &Path, rec: &BTreeMap<PathBuf, Recorded>) -> io::Result<usize> {
    std::fs::create_dir_all(out)?;
    let mut n = 0;
    for (rel, what) in rec {
        let dest = out.join(relative(rel)?);
        match what {
            Recorded::Dir => std::fs::create_dir_all(&dest)?,
            Recorded::File(bytes) => {
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&dest, bytes)?;
            }
            Recorded::Link(target) => {
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p)?;
                }
                if dest.symlink_metadata().is_ok() {
                    continue;
                }
                // An absolute target means "from the host root": rewrite it relative, so the
                // recording never points back into the machine that made it.
                let target = if target.is_absolute() {
                    let depth = rel.parent().map(|p| p.components().count()).unwrap_or(0);
                    let mut t = PathBuf::new();
                    for _ in 0..depth {
                        t.push("..");
                    }
                    t.push(normalize(target));
                    t
                } else {
                    target.clone()
                };
                std::os::unix::fs::symlink(target, &dest)?;
            }
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("sys/bus/pci/devices")).unwrap();
        std::fs::create_dir_all(r.join("sys/devices/pci0000:00/0000:00:01.0")).unwrap();
        std::fs::write(
            r.join("sys/devices/pci0000:00/0000:00:01.0/vendor"),
            "0x8086\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:01.0",
            r.join("sys/bus/pci/devices/0000:00:01.0"),
        )
        .unwrap();
        // A hostile link that points outside the root and an absolute one.
        std::os::unix::fs::symlink("../../../../../../../../etc", r.join("sys/escape")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", r.join("sys/abs")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("sys/loop")).unwrap();

        let root = HostRoot::open(r).unwrap();
        assert_eq!(
            root.read_string("sys/bus/pci/devices/0000:00:01.0/vendor")
                .unwrap(),
            "0x8086"
        );
        assert_eq!(
            root.resolve_link("sys/bus/pci/devices/0000:00:01.0")
                .unwrap(),
            PathBuf::from("sys/devices/pci0000:00/0000:00:01.0")
        );
        assert_eq!(
            root.resolve_link("sys/escape").unwrap(),
            PathBuf::from("etc")
        );
        // Reading through the links finds nothing, because /etc is not inside the root.
        assert!(root.read("sys/escape/hostname").is_err());
        assert!(root.read("sys/abs").is_err());
        assert!(root.read("sys/loop").is_err());
        assert!(root.read("/etc/hostname").is_err());
    }

    #[test]
    fn a_directory_without_sysfs_is_not_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let err = HostRoot::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a host root"), "{err}");
    }
}
