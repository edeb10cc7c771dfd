//! The bundled demo host (`--demo`): a recorded-style workstation described in
//! data/demo-host.json, compiled into the binaries so `--demo` works from any install.

use crate::host::HostRoot;
use crate::synth::{MachineSpec, SynthError};

/// The demo machine's description.
pub const DEMO_HOST: &str = include_str!("../data/demo-host.json");

/// The demo guests and their plan (`passagectl --demo export` without `--plan`): a GPU with
/// its audio at one guest slot and a USB card for a libvirt guest started on demand, a
/// dual-port NIC with one port hidden for a plain QEMU router.
pub const DEMO_PLAN: &str = include_str!("../data/demo-plan.json");

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
