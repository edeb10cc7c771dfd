//! The host root: every file Passage reads about a machine is read through this value.
//!
//! A host root is a directory laid out exactly as Linux lays out `/` (`sys/`, `proc/`, `dev/`).
//! It is `/` on a real host, a recording made by `passagectl record`, or a tree built by a test.
//! All opens of a recorded tree go through `openat2(RESOLVE_IN_ROOT)`, so absolute symlinks and
//! `..` inside it resolve *inside* it and nothing outside the root is ever read — even from a
//! hostile tree. (The machine's own `/` falls back to `openat` where a seccomp filter refuses
//! openat2; see `open2`.) When a recorder is attached, every read is remembered so that `record` can
//! write out exactly what was read, no more.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
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
        match root.open_in(
            Path::new("sys/bus/pci/devices"),
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(_) => {
                root.note(Path::new("sys/bus/pci/devices"), Recorded::Dir);
                Ok(root)
            }
            // A recorded tree is read through openat2 only (see `open2`): where it is refused,
            // say so, not that the directory is missing.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
                Err(RootError::Open {
                    path: root.path.clone(),
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "openat2 is not available here ({e}): Passage reads every file \
                             under a recorded tree; a kernel older than 5.6 lacks it, and a \
                             seccomp filter (a systemd unit's RestrictSUIDSGID=) refuses it"
                        ),
                    ),
                })
            }
            Err(_) => Err(RootError::NotARoot { path: root.path }),
        }
    }

    /// Opens the root and remembers every read, for `passagectl record`.
    pub fn open_recording(path: impl Into<PathBuf>) -> Result<Self, RootError> {
        let mut root = Self::open(path)?;
        root.recorder = Some(Mutex::new(BTreeMap::new()));
        Ok(root)
    }

    /// Whether every read is being remembered for `record`.
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
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
        // A name seen in a listing that turns out to hold what was read below it is a
        // directory (a device tree node listed, then its `compatible` read).
        if !matches!(what, Recorded::Node) {
            for a in rel.ancestors().skip(1) {
                if let Some(e @ Recorded::Node) = map.get_mut(a) {
                    *e = Recorded::Dir;
                }
            }
        } else {
            use std::ops::Bound::{Excluded, Unbounded};
            let below = map
                .range::<Path, _>((Excluded(rel), Unbounded))
                .next()
                .is_some_and(|(k, _)| k.starts_with(rel));
            if below {
                map.entry(rel.to_path_buf()).or_insert(Recorded::Dir);
                return;
            }
        }
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
        open2(&self.fd, rel, flags, resolve(), self.is_slash())
    }

    /// Whether this is the machine's own `/` (where resolving inside the root guards nothing).
    fn is_slash(&self) -> bool {
        self.path == Path::new("/")
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
        let Ok(fd) = self.open_in(rel, OFlags::PATH) else {
            return false;
        };
        if self.recorder.is_some() {
            // A regular file is kept whole; anything else (a character device that refuses
            // reads, a FIFO that would block) only by name.
            let regular = rustix::fs::fstat(&fd).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            });
            if regular {
                let _ = self.read(rel);
            } else {
                self.note(rel, Recorded::Node);
            }
        }
        true
    }

    /// True when `rel` exists, whatever it is: only its presence is a fact (`/dev/iommu`, a
    /// module file), so a recording keeps an empty stand-in and nothing is read (a device may
    /// refuse reads, a FIFO would block, a module is bytes no bug report needs).
    pub fn present(&self, rel: impl AsRef<Path>) -> bool {
        let rel = rel.as_ref();
        let found = self.open_in(rel, OFlags::PATH).is_ok();
        if found {
            self.note(rel, Recorded::Node);
        }
        found
    }

    /// Reads a text file; a recording keeps only the lines `keep` accepts (`proc/iomem`: the
    /// framebuffers, not where the kernel's code and data lie).
    pub fn read_string_kept(
        &self,
        rel: impl AsRef<Path>,
        keep: impl Fn(&str) -> bool,
    ) -> io::Result<String> {
        let rel = rel.as_ref();
        let fd = self.open_in(rel, OFlags::RDONLY)?;
        let text = String::from_utf8_lossy(&read_fd(&fd, rel)?).into_owned();
        if self.recorder.is_some() {
            let kept: String = text
                .lines()
                .filter(|l| keep(l))
                .map(|l| format!("{l}\n"))
                .collect();
            self.note(rel, Recorded::File(kept.into_bytes()));
        }
        Ok(text)
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
    let mut buf = Vec::new();
    read_fd_into(fd, rel, &mut buf)?;
    Ok(buf)
}

/// [`read_fd`] into `buf` (cleared first), so a caller reading thousands of attributes can
/// keep one buffer.
fn read_fd_into(fd: &OwnedFd, rel: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // Room for a whole extended config space plus one byte, so a full read is one syscall.
    buf.reserve(4097);
    loop {
        let before = buf.len();
        let room = buf.capacity() - before;
        let n = loop {
            match rustix::io::read(fd, rustix::buffer::spare_capacity(&mut *buf)) {
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
    Ok(())
}

thread_local! {
    /// The buffer [`DirHandle::read_with`] reads into: a scan of 10,000 functions reads
    /// ~60,000 attributes, each only long enough to parse.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer (an empty one if a caller up the stack has it).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(|c| c.take());
    let r = f(&mut buf);
    if buf.capacity() <= 64 * 1024 {
        SCRATCH.with(|c| c.set(buf));
    }
    r
}

/// A directory opened once; its entries are read by name without walking the path again.
/// Names must be single path components: `..`, `/` and empty names are refused, and files
/// are opened without following symlinks (sysfs attributes are never links).
pub struct DirHandle<'r> {
    root: &'r HostRoot,
    rel: PathBuf,
    fd: OwnedFd,
}

impl<'r> DirHandle<'r> {
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

    /// The names of the directories in this one (as the file system's listing types them;
    /// links and files left out), unsorted. Not for recording: it notes nothing.
    pub fn subdirs(&mut self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || entry.file_type() != rustix::fs::FileType::Directory
            {
                continue;
            }
            names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
        Ok(names)
    }

    /// Reads the file `name` in this directory.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.read_with(name, <[u8]>::to_vec)
    }

    /// Reads the file `name` and hands its bytes to `parse`, without keeping a copy (the
    /// bytes live in a buffer this thread reuses).
    pub fn read_with<R>(&self, name: &str, parse: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        Self::check(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        with_scratch(|buf| {
            read_fd_into(&fd, Path::new(name), buf)?;
            drop(fd);
            if self.root.recorder.is_some() {
                self.root
                    .note(&self.rel.join(name), Recorded::File(buf.clone()));
            }
            Ok(parse(buf))
        })
    }

    /// The last component of the link `name`'s target (`driver` → `vfio-pci`), read without
    /// building paths; `None` when the target has none (`/`, `..`), as `Path::file_name`.
    pub fn link_name(&self, name: &str) -> io::Result<Option<String>> {
        Self::check(name)?;
        // Sysfs link targets are short: a buffer on the stack, and the allocating call only
        // for a target that fills it (and so may have been cut).
        let mut stack = [0u8; 1024];
        let n = rustix::fs::readlinkat_raw(&self.fd, name, &mut stack[..])?;
        let long;
        let bytes: &[u8] = if n < stack.len() {
            &stack[..n]
        } else {
            long = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
            long.as_bytes()
        };
        if self.root.recorder.is_some() {
            let t = PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
            self.root.note(&self.rel.join(name), Recorded::Link(t));
        }
        Ok(Path::new(std::ffi::OsStr::from_bytes(bytes))
            .file_name()
            .map(|f| f.to_string_lossy().into_owned()))
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
        let fd = open2(
            &self.fd,
            relative(sub)?,
            OFlags::RDONLY,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            self.root.is_slash(),
        )?;
        let rel = self.rel.join(sub);
        let buf = read_fd(&fd, &rel)?;
        self.root.note(&rel, Recorded::File(buf.clone()));
        Ok(buf)
    }

    /// A subdirectory (`N/devices`), opened beneath this one: only what is below it is
    /// walked, never the path from the root again.
    pub fn open_subdir(&self, sub: &Path) -> io::Result<DirHandle<'r>> {
        let fd = open2(
            &self.fd,
            relative(sub)?,
            OFlags::RDONLY | OFlags::DIRECTORY,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            self.root.is_slash(),
        )?;
        Ok(DirHandle {
            root: self.root,
            rel: self.rel.join(sub),
            fd,
        })
    }
}

/// Set once openat2 was refused with ENOSYS: every later open goes straight to openat.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `openat2(dir, rel, flags, how)`. Where openat2 is refused with ENOSYS and `plain_ok` (the
/// root is the machine's own `/`), plain `openat`: inside `/` there is no outside for a link or
/// `..` to lead to (magic links such as /proc/PID/root aside: every path read is built from
/// fixed parts, never from a link's target), so the resolve flags guard little there. ENOSYS comes from kernels before
/// 5.6 and from seccomp filters that cannot look inside openat2's arguments — systemd's
/// `RestrictSUIDSGID=` refuses the whole call that way, so under a hardened unit every read
/// failed before this (the installed-system test caught it). A recorded tree never falls back:
/// there the flags are what keeps a hostile tree's links inside it.
fn open2(
    dir: &OwnedFd,
    rel: &Path,
    flags: OFlags,
    how: ResolveFlags,
    plain_ok: bool,
) -> io::Result<OwnedFd> {
    use std::sync::atomic::Ordering;
    let flags = flags | OFlags::CLOEXEC;
    if !(plain_ok && NO_OPENAT2.load(Ordering::Relaxed)) {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::NOSYS) if plain_ok => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            r => return Ok(r?),
        }
    }
    Ok(rustix::fs::openat(dir, rel, flags, Mode::empty())?)
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
///
/// `out` is a new directory, or an empty one the caller owns. Root may run this, so every
/// file, directory and link is made through directory handles with no symlink followed
/// anywhere below `out` (a link planted there makes the write fail, never go
/// elsewhere), and a directory someone else owns is refused.
pub fn write_recording(out: &Path, rec: &BTreeMap<PathBuf, Recorded>) -> io::Result<usize> {
    let base = open_output_dir(out)?;
    let mut n = 0;
    // Directories and files first, at their real places; links last, beside them.
    for (rel, what) in rec {
        relative(rel)?;
        let at = canonical(rel, rec);
        match what {
            Recorded::Dir => {
                dir_below(&base, &at)?;
            }
            Recorded::File(bytes) => {
                let (parent, name) = parent_below(&base, &at)?;
                let f = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::CREATE
                        | OFlags::TRUNC
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
                let mut f = std::fs::File::from(f);
                io::Write::write_all(&mut f, bytes)?;
            }
            Recorded::Node => {
                let (parent, name) = parent_below(&base, &at)?;
                rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
            }
            Recorded::Link(_) => continue,
        }
        n += 1;
    }
    for (rel, what) in rec {
        let Recorded::Link(target) = what else {
            continue;
        };
        let parent_rel = rel.parent().map(|p| canonical(p, rec)).unwrap_or_default();
        let Some(name) = rel.file_name() else {
            continue;
        };
        let parent = dir_below(&base, &parent_rel)?;
        if rustix::fs::statat(&parent, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            continue;
        }
        // An absolute target means "from the host root": rewrite it relative, so the
        // recording never points back into the machine that made it.
        let target = if target.is_absolute() {
            let mut t = PathBuf::new();
            for _ in 0..parent_rel.components().count() {
                t.push("..");
            }
            t.push(normalize(target));
            t
        } else {
            target.clone()
        };
        rustix::fs::symlinkat(&target, &parent, name)?;
        n += 1;
    }
    Ok(n)
}

/// `out` as a directory handle: made (0755) when missing; when present, it must be a real
/// directory (not a link) owned by whoever records.
fn open_output_dir(out: &Path) -> io::Result<OwnedFd> {
    // The way to `out` is the caller's choice; below it nothing is followed.
    if let Some(p) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(out) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let fd = rustix::fs::open(
        out,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "{}: not a directory of its own (a link?): {e}",
                out.display()
            ),
        )
    })?;
    let st = rustix::fs::fstat(&fd)?;
    let me = rustix::process::geteuid().as_raw();
    // Empty, and writable by nobody else: then nothing can be planted in it (a link, a hard
    // link to another file, a FIFO) while the recording is written.
    if st.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} can be written by other users; record into a directory only you can write",
                out.display()
            ),
        ));
    }
    let mut entries = rustix::fs::Dir::read_from(&fd)?;
    let has_entries = entries.any(|e| {
        e.map(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
            .unwrap_or(true)
    });
    if has_entries {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty; record writes into a new directory",
                out.display()
            ),
        ));
    }
    if st.st_uid != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to user {}, not to the user recording ({me}); record into a directory of your own",
                out.display(),
                st.st_uid
            ),
        ));
    }
    Ok(fd)
}

/// The directory `rel` below `base`, made where missing, one component at a time with no
/// link followed.
fn dir_below(base: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut cur = rustix::fs::openat(
        base,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            ));
        };
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur = rustix::fs::openat(
            &cur,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(cur)
}

/// The parent directory of `rel` below `base` (made where missing) and `rel`'s last name.
fn parent_below<'a>(base: &OwnedFd, rel: &'a Path) -> io::Result<(OwnedFd, &'a std::ffi::OsStr)> {
    let name = rel.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name", rel.display()),
        )
    })?;
    let parent = dir_below(base, rel.parent().unwrap_or(Path::new("")))?;
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_recording() -> BTreeMap<PathBuf, Recorded> {
        let mut rec = BTreeMap::new();
        rec.insert(PathBuf::from("sys"), Recorded::Dir);
        rec.insert(PathBuf::from("sys/bus"), Recorded::Dir);
        rec.insert(
            PathBuf::from("sys/bus/vendor"),
            Recorded::File(b"0x8086\n".to_vec()),
        );
        rec.insert(
            PathBuf::from("sys/link"),
            Recorded::Link(PathBuf::from("bus/vendor")),
        );
        rec
    }

    #[test]
    fn a_recording_never_follows_a_link_planted_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec");
        std::fs::create_dir(&out).unwrap();
        // Someone made out/sys a link to a directory of their choice before root records.
        std::os::unix::fs::symlink(elsewhere.path(), out.join("sys")).unwrap();
        let e = write_recording(&out, &tiny_recording()).unwrap_err();
        assert!(!e.to_string().is_empty());
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none(),
            "the recording wrote through the planted link"
        );
        // out itself a link: refused too.
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(elsewhere.path(), &linked).unwrap();
        assert!(write_recording(&linked, &tiny_recording()).is_err());
        assert!(std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none());
        // A directory other users may write into: refused (they could plant things in it).
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let e = write_recording(&open, &tiny_recording()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        // A clean directory records and reads back.
        let good = dir.path().join("good");
        assert_eq!(write_recording(&good, &tiny_recording()).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(good.join("sys/link")).unwrap(),
            "0x8086\n"
        );
    }

    #[test]
    fn a_recording_refuses_a_directory_someone_else_owns() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test gives a directory to another user: it needs root (CI runs as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = write_recording(&theirs, &tiny_recording()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(std::fs::read_dir(&theirs).unwrap().next().is_none());
    }

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
