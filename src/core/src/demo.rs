//! The bundled demo host (`--demo`): a recorded-style workstation described in
//! data/demo-host.json, compiled into the binaries so `--demo` works from any install.

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
}

/// Writes the demo host into a fresh temporary directory and opens it.
pub fn open() -> Result<Demo, DemoError> {
    let dir = tempfile::Builder::new().prefix("passage-demo-").tempdir()?;
    MachineSpec::from_json(DEMO_HOST)?.write_tree(dir.path())?;
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
    pub fn open(demo: bool, root: Option<&std::path::Path>) -> Result<Self, SourceError> {
        if demo {
            return Ok(Source::Demo(open()?));
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
