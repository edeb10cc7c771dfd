//! The bundled demo hosts (`--demo [VARIANT]`), compiled into the binaries so they work from
//! any install: a recorded-style x86 workstation described in data/demo-host.json (the
//! default), and two machines recorded on real kernels in the test beds — an arm64 `virt`
//! machine with an SMMUv3 (data/demo-arm64.json) and a ppc64le `pseries` machine with four PCI
//! host bridges (data/demo-ppc64le.json), packed recordings that [`unpack`] lays out again.

use crate::host::HostRoot;
use crate::synth::{MachineSpec, SynthError};

/// The demo machine's description.
pub const DEMO_HOST: &str = include_str!("../../../data/demo-host.json");

/// The demo guests and their plan (`passagectl --demo export` without `--plan`): a GPU with
/// its audio at one guest slot and a USB card for a libvirt guest started on demand, a
/// dual-port NIC with one port hidden for a plain QEMU router.
pub const DEMO_PLAN: &str = include_str!("../../../data/demo-plan.json");

/// The demo plan, parsed.
pub fn plan() -> Result<crate::plan::Plan, crate::plan::PlanError> {
    crate::plan::Plan::from_json(DEMO_PLAN)
}

/// Which demo host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoHost {
    /// An x86 workstation with a GPU to give away, with guests and a plan.
    #[default]
    Workstation,
    /// An arm64 machine (QEMU virt, SMMUv3, GICv3) as its kernel showed it.
    Arm64,
    /// A ppc64le machine (QEMU pseries, four PCI host bridges) as its kernel showed it.
    Ppc64le,
}

/// The arm64 variant's recording (tests/vm/cross.py pack).
pub const DEMO_ARM64: &str = include_str!("../../../data/demo-arm64.json");
/// The ppc64le variant's recording.
pub const DEMO_PPC64LE: &str = include_str!("../../../data/demo-ppc64le.json");

/// The names `--demo` takes, joined to the flag when written apart (`--demo arm64`): clap
/// cannot tell an optional value from the subcommand that follows, so the argument list is
/// mended before parsing.
pub fn join_demo_variant(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    use clap::ValueEnum;
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        let variant = it.peek().and_then(|n| n.to_str()).is_some_and(|n| {
            DemoHost::value_variants()
                .iter()
                .any(|v| v.to_possible_value().is_some_and(|p| p.matches(n, false)))
        });
        if a == "--demo" && variant {
            let mut joined = a;
            joined.push("=");
            joined.push(it.next().unwrap_or_default());
            out.push(joined);
        } else {
            out.push(a);
        }
    }
    out
}

/// A packed recording that cannot be laid out (only a broken build can cause this for the
/// bundled ones).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("not a packed recording: {0}")]
    Format(String),
    #[error("entry {path:?}: {why}")]
    Entry { path: String, why: String },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Packed {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: String,
    entries: Vec<PackedEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PackedEntry {
    path: String,
    #[serde(default)]
    dir: bool,
    link: Option<String>,
    text: Option<String>,
    hex: Option<String>,
}

/// Lays out a packed recording (`{"format": "passage-recording-1", "entries": [{path, dir |
/// link | text | hex}]}`) under `into`. Paths are relative and stay inside; a link's target is
/// relative, as sysfs writes them (a root reads links inside itself anyway).
pub fn unpack(doc: &str, into: &std::path::Path) -> Result<(), PackError> {
    use std::path::{Component, Path};
    let p: Packed = serde_json::from_str(doc).map_err(|e| PackError::Format(e.to_string()))?;
    if p.format != "passage-recording-1" {
        return Err(PackError::Format(format!("format {:?}", p.format)));
    }
    let bad = |path: &str, why: &str| PackError::Entry {
        path: path.into(),
        why: why.into(),
    };
    let io = |path: &Path, source| PackError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut links: Vec<&Path> = Vec::new();
    for e in &p.entries {
        let rel = Path::new(&e.path);
        if e.path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(&e.path, "not a plain relative path"));
        }
        // Written through a link, an entry could land anywhere the link points.
        if links.iter().any(|l| rel.starts_with(l)) {
            return Err(bad(&e.path, "below a link"));
        }
        if e.link.is_some() {
            links.push(rel);
        }
        let dest = into.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|s| io(parent, s))?;
        }
        match (e.dir, &e.link, &e.text, &e.hex) {
            (true, None, None, None) => std::fs::create_dir_all(&dest).map_err(|s| io(&dest, s))?,
            (false, Some(t), None, None) => {
                if Path::new(t).is_absolute() {
                    return Err(bad(&e.path, "an absolute link target"));
                }
                std::os::unix::fs::symlink(t, &dest).map_err(|s| io(&dest, s))?
            }
            (false, None, Some(t), None) => std::fs::write(&dest, t).map_err(|s| io(&dest, s))?,
            (false, None, None, Some(h)) => {
                let bytes = hex_bytes(h).ok_or_else(|| bad(&e.path, "hex that is not hex"))?;
                std::fs::write(&dest, bytes).map_err(|s| io(&dest, s))?
            }
            _ => return Err(bad(&e.path, "exactly one of dir, link, text, hex")),
        }
    }
    Ok(())
}

fn hex_bytes(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A demo host root, living in a temporary directory for as long as this value does.
pub struct Demo {
    pub root: HostRoot,
    _dir: tempfile::TempDir,
}

/// Why the demo could not be set up (only a broken build or a full /tmp can cause this).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("building the demo host: {0}")]
    Synth(#[from] SynthError),
    #[error("creating a temporary directory for the demo host: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Root(#[from] crate::host::RootError),
    #[error("the bundled demo recording: {0}")]
    Pack(#[from] PackError),
}

/// Writes the demo workstation into a fresh temporary directory and opens it.
pub fn open() -> Result<Demo, DemoError> {
    open_variant(DemoHost::Workstation)
}

/// Writes demo host `v` into a fresh temporary directory and opens it.
pub fn open_variant(v: DemoHost) -> Result<Demo, DemoError> {
    let dir = tempfile::Builder::new().prefix("passage-demo-").tempdir()?;
    match v {
        DemoHost::Workstation => MachineSpec::from_json(DEMO_HOST)?.write_tree(dir.path())?,
        DemoHost::Arm64 => unpack(DEMO_ARM64, dir.path())?,
        DemoHost::Ppc64le => unpack(DEMO_PPC64LE, dir.path())?,
    }
    let root = HostRoot::open(dir.path())?;
    Ok(Demo { root, _dir: dir })
}

/// Where a front end reads the host from: this machine (or a recorded root), or the demo host.
pub enum Source {
    Root(HostRoot),
    Demo(Demo),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Root(r) => write!(f, "Source::Root({})", r.path().display()),
            Source::Demo(_) => f.write_str("Source::Demo"),
        }
    }
}

/// Why a host source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Root(#[from] crate::host::RootError),
}

impl Source {
    /// The demo host, else `root`, else `PASSAGE_ROOT`, else `/` (`--root` wins over the
    /// environment, docs/CONTRACTS.md).
    pub fn open(
        demo: Option<DemoHost>,
        root: Option<&std::path::Path>,
    ) -> Result<Self, SourceError> {
        if let Some(v) = demo {
            return Ok(Source::Demo(open_variant(v)?));
        }
        let path = root
            .map(std::path::Path::to_path_buf)
            .or_else(|| std::env::var_os(crate::names::ROOT_ENV).map(std::path::PathBuf::from))
            .unwrap_or_else(|| std::path::PathBuf::from("/"));
        Ok(Source::Root(HostRoot::open(path)?))
    }

    pub fn root(&self) -> &HostRoot {
        match self {
            Source::Root(r) => r,
            Source::Demo(d) => &d.root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_packed_recordings_are_refused_and_write_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("root");
        for (entry, why) in [
            (r#"{"path": "../escape", "text": "x"}"#, "plain relative"),
            (r#"{"path": "/etc/escape", "text": "x"}"#, "plain relative"),
            (r#"{"path": "./a/../../b", "text": "x"}"#, "plain relative"),
            (r#"{"path": "", "dir": true}"#, "plain relative"),
            (r#"{"path": "l", "link": "/etc/passwd"}"#, "absolute link"),
            (
                r#"{"path": "up", "link": "../.."}, {"path": "up/escape", "text": "x"}"#,
                "below a link",
            ),
            (r#"{"path": "f", "text": "x", "hex": "00"}"#, "exactly one"),
            (r#"{"path": "f"}"#, "exactly one"),
            (r#"{"path": "f", "hex": "0g"}"#, "not hex"),
            (r#"{"path": "f", "hex": "000"}"#, "not hex"),
        ] {
            let doc = format!(r#"{{"format": "passage-recording-1", "entries": [{entry}]}}"#);
            let e = unpack(&doc, &into).unwrap_err().to_string();
            assert!(e.contains(why), "{entry}: {e}");
        }
        assert!(!dir.path().join("escape").exists());
        for doc in [
            "",
            "[]",
            r#"{"format": "other", "entries": []}"#,
            r#"{"format": "passage-recording-1", "entries": [], "extra": 1}"#,
        ] {
            assert!(
                matches!(unpack(doc, &into), Err(PackError::Format(_))),
                "{doc}"
            );
        }
    }

    #[test]
    fn every_demo_variant_opens_and_has_groups() {
        for v in [DemoHost::Workstation, DemoHost::Arm64, DemoHost::Ppc64le] {
            let d = open_variant(v).unwrap();
            let host = crate::scan::scan(&d.root).unwrap();
            assert!(host.groups.len() >= 4, "{v:?}");
            let arch = host.platform.arch.as_deref();
            match v {
                DemoHost::Arm64 => assert_eq!(arch, Some("arm64")),
                DemoHost::Ppc64le => assert_eq!(arch, Some("powerpc")),
                DemoHost::Workstation => assert_ne!(arch, Some("arm64")),
            }
        }
    }

    #[test]
    fn a_variant_written_apart_from_the_flag_is_joined_to_it() {
        let j = |a: &[&str]| -> Vec<String> {
            join_demo_variant(a.iter().map(std::ffi::OsString::from))
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            j(&["p", "--demo", "arm64", "list"]),
            ["p", "--demo=arm64", "list"]
        );
        assert_eq!(j(&["p", "--demo", "list"]), ["p", "--demo", "list"]);
        assert_eq!(
            j(&["p", "list", "--demo", "ppc64le"]),
            ["p", "list", "--demo=ppc64le"]
        );
        assert_eq!(j(&["p", "--demo"]), ["p", "--demo"]);
    }
}
