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
use std::io;
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
    /// A device node (`/dev/vfio/N`) seen in a listing: written back as an empty file, since
    /// only its name is read.
    Node,
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

    fn note(&self, rel: &Path, what: Recorded) {
        let Some(rec) = &self.recorder else {
            return;
        };
        let Ok(mut map) = rec.lock() else {
            return;
        };
        // A directory seen through a link belongs at the link's target: the link is written
        // back as a link, and the directory where it points.
        let target_of =
            |link: &Path, t: &Path| normalize(&link.parent().unwrap_or(Path::new("")).join(t));
        match (&what, map.get(rel)) {
            (Recorded::Dir, Some(Recorded::Link(t))) => {
                let at = target_of(rel, t);
                map.entry(at).or_insert(Recorded::Dir);
            }
            (Recorded::Link(t), Some(Recorded::Dir)) => {
                let at = target_of(rel, t);
                map.entry(at).or_insert(Recorded::Dir);
                map.insert(rel.to_path_buf(), what);
            }
            (Recorded::Node, Some(_)) => {}
            _ => {
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
        let buf = read_fd(&fd, rel)?;
        self.note(rel, Recorded::File(buf.clone()));
        Ok(buf)
    }

    /// Opens a directory for reading many entries from it with one path walk.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<DirHandle<'_>> {
        let rel = rel.as_ref();
        let fd = self.open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY)?;
        Ok(DirHandle {
            root: self,
            rel: rel.to_path_buf(),
            fd,
        })
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
        self.open_dir(rel)?.names()
    }

    /// A directory whose entry *names* are the facts (`dev/vfio`): when recording, every
    /// entry is kept (as an empty file) even if it is never opened.
    pub fn list_names(&self, rel: impl AsRef<Path>) -> io::Result<Vec<OsString>> {
        let rel = rel.as_ref();
        let names = self.read_dir(rel)?;
        for n in &names {
            self.note(&rel.join(n), Recorded::Node);
        }
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

/// Reads a file that is already open: sysfs returns an attribute in one read, so a short read
/// ends it (saving a syscall per file on hosts with thousands of functions).
fn read_fd(fd: &OwnedFd, rel: &Path) -> io::Result<Vec<u8>> {
    // Room for a whole extended config space plus one byte, so a full read is one syscall.
    let mut buf: Vec<u8> = Vec::with_capacity(4097);
    loop {
        let before = buf.len();
        let room = buf.capacity() - before;
        let n = loop {
            match rustix::io::read(fd, rustix::buffer::spare_capacity(&mut buf)) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        if n == 0 || n < room {
            break;
        }
        if buf.len() as u64 > MAX_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than {MAX_FILE} bytes", rel.display()),
            ));
        }
        buf.reserve(buf.len());
    }
    Ok(buf)
}

/// A directory opened once; its entries are read by name without walking the path again.
/// Names must be single path components: `..`, `/` and empty names are refused, and files
/// are opened without following symlinks (sysfs attributes are never links).
pub struct DirHandle<'r> {
    root: &'r HostRoot,
    rel: PathBuf,
    fd: OwnedFd,
}

impl DirHandle<'_> {
    /// The directory, relative to the host root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    fn check(name: &str) -> io::Result<()> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a file name: {name:?}"),
            ));
        }
        Ok(())
    }

    /// The entries' names, sorted. While recording, links and device nodes among them are
    /// kept so the recording lists the same names.
    pub fn names(&mut self) -> io::Result<Vec<OsString>> {
        let recording = self.root.recorder.is_some();
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from(std::ffi::OsStr::from_bytes(name));
            if recording {
                use rustix::fs::FileType;
                match entry.file_type() {
                    FileType::Symlink => {
                        if let Ok(t) =
                            rustix::fs::readlinkat(&self.fd, name.as_os_str(), Vec::new())
                        {
                            let t = PathBuf::from(std::ffi::OsStr::from_bytes(t.as_bytes()));
                            self.root.note(&self.rel.join(&name), Recorded::Link(t));
                        }
                    }
                    FileType::CharacterDevice | FileType::BlockDevice => {
                        self.root.note(&self.rel.join(&name), Recorded::Node)
                    }
                    _ => {}
                }
            }
            names.push(name);
        }
        names.sort();
        self.root.note(&self.rel, Recorded::Dir);
        Ok(names)
    }

    /// Reads the file `name` in this directory.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Self::check(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let buf = read_fd(&fd, Path::new(name))?;
        if self.root.recorder.is_some() {
            self.root
                .note(&self.rel.join(name), Recorded::File(buf.clone()));
        }
        Ok(buf)
    }

    /// Reads a text attribute, trimmed.
    pub fn read_string(&self, name: &str) -> io::Result<String> {
        let b = self.read(name)?;
        Ok(String::from_utf8_lossy(&b).trim().to_string())
    }

    /// The raw target of the link `name` in this directory.
    pub fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        Self::check(name)?;
        let t = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
        let t = PathBuf::from(std::ffi::OsStr::from_bytes(t.as_bytes()));
        if self.root.recorder.is_some() {
            self.root
                .note(&self.rel.join(name), Recorded::Link(t.clone()));
        }
        Ok(t)
    }

    /// The link `name` resolved to a root-relative path (see [`HostRoot::resolve_link`]).
    pub fn resolve_link(&self, name: &str) -> io::Result<PathBuf> {
        let t = self.read_link(name)?;
        Ok(normalize(&self.rel.join(t)))
    }

    /// Reads a file below this directory (`N/type`), never resolving outside it.
    pub fn read_beneath(&self, sub: &Path) -> io::Result<Vec<u8>> {
        let fd = rustix::fs::openat2(
            &self.fd,
            relative(sub)?,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        let rel = self.rel.join(sub);
        let buf = read_fd(&fd, &rel)?;
        self.root.note(&rel, Recorded::File(buf.clone()));
        Ok(buf)
    }

    /// A subdirectory (`N/devices`), opened beneath this one.
    pub fn open_subdir(&self, sub: &Path) -> io::Result<DirHandle<'_>> {
        let fd = rustix::fs::openat2(
            &self.fd,
            relative(sub)?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(DirHandle {
            root: self.root,
            rel: self.rel.join(sub),
            fd,
        })
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

/// Where `rel` really is once the recorded links along it are followed (lexically, inside the
/// recording): files read through a link are written at the link's target.
fn canonical(rel: &Path, rec: &BTreeMap<PathBuf, Recorded>) -> PathBuf {
    let mut out = PathBuf::new();
    for c in rel.components() {
        out.push(c);
        for _ in 0..40 {
            match rec.get(&out) {
                Some(Recorded::Link(t)) => {
                    let base = out.parent().map(Path::to_path_buf).unwrap_or_default();
                    out = normalize(&base.join(t));
                }
                _ => break,
            }
        }
    }
    out
}

/// Writes a recording out as a tree that [`HostRoot::open`] reads back to the same facts.
pub fn write_recording(out: &Path, rec: &BTreeMap<PathBuf, Recorded>) -> io::Result<usize> {
    std::fs::create_dir_all(out)?;
    let mut n = 0;
    let mkparent = |p: &Path| -> io::Result<()> {
        match p.parent() {
            Some(d) => std::fs::create_dir_all(d),
            None => Ok(()),
        }
    };
    // Directories and files first, at their real places; links last, beside them.
    for (rel, what) in rec {
        relative(rel)?;
        let at = || out.join(canonical(rel, rec));
        match what {
            Recorded::Dir => std::fs::create_dir_all(at())?,
            Recorded::File(bytes) => {
                let dest = at();
                mkparent(&dest)?;
                std::fs::write(&dest, bytes)?;
            }
            Recorded::Node => {
                let dest = at();
                mkparent(&dest)?;
                if dest.symlink_metadata().is_err() {
                    std::fs::write(&dest, b"")?;
                }
            }
            Recorded::Link(_) => continue,
        }
        n += 1;
    }
    for (rel, what) in rec {
        let Recorded::Link(target) = what else {
            continue;
        };
        let parent = rel.parent().map(|p| canonical(p, rec)).unwrap_or_default();
        let dest = out.join(&parent).join(rel.file_name().unwrap_or_default());
        std::fs::create_dir_all(out.join(&parent))?;
        if dest.symlink_metadata().is_ok() {
            continue;
        }
        // An absolute target means "from the host root": rewrite it relative, so the
        // recording never points back into the machine that made it.
        let target = if target.is_absolute() {
            let mut t = PathBuf::new();
            for _ in 0..parent.components().count() {
                t.push("..");
            }
            t.push(normalize(target));
            t
        } else {
            target.clone()
        };
        std::os::unix::fs::symlink(target, &dest)?;
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
