//! `passage-helper`'s engine: the only code that changes which driver holds a device.
//!
//! - [`claim`]: claim and release whole groups as journaled transactions, and replay what a
//!   crash left unfinished.
//! - [`persist`]: the boot-time layers (udev rule, modprobe options, the re-claim list).
//! - [`bootfix`]: the kernel command line changed in the boot configuration (`passagectl fix`),
//!   journaled, undone on failure, recorded for `unfix`.
//! - [`devfix`]: per-device remedies (a GPU kept powered), now and at every boot, for `unfix`.
//! - [`rehearse`]: the reset rehearsal (claim, reset, give back), kept per model and kernel.
//! - [`sriov`]: a physical function's virtual functions, now and at every boot (udev rule).
//! - [`systemd`]: asks systemd to run passage-initramfs.service (the initramfs rebuilt) and
//!   passage-boot-line.service (the boot configuration changed).
//! - [`fault`]: named points in every transaction; a tests' build (feature `fault-points`)
//!   stops there when asked, for the real-kernel fault campaign. Empty in a release.
//! - `fakekernel` (feature `fake-kernel`, tests only): the kernel's answers modelled on a
//!   recorded tree. A release helper has no such thing: under `--root DIR` it only reads.
//!
//! The service itself (the bouncer and the D-Bus object) is `main.rs`.

pub mod bootfix;
pub mod claim;
pub mod devfix;
#[cfg(feature = "fake-kernel")]
pub mod fakekernel;
pub mod fault;
pub mod persist;
pub mod rebar;
pub mod rehearse;
pub mod sriov;
pub mod systemd;

use claim::{ClaimError, Kernel, Sysfs};
use passage_dbus::HelperError;
use std::path::Path;
use std::sync::Arc;

/// A claim error as it travels on the bus: its named error, and for a failed transaction how
/// every device ended after the rollback.
pub fn dbus_error(e: ClaimError) -> HelperError {
    let msg = e.to_string();
    match e {
        ClaimError::NotFound(_) => HelperError::NotFound(msg),
        ClaimError::InvalidArgs(_) => HelperError::InvalidArgs(msg),
        ClaimError::Busy(_) => HelperError::Busy(msg),
        ClaimError::BadState(_) => HelperError::BadState(msg),
        ClaimError::HostCritical(_) => HelperError::HostCritical(msg),
        ClaimError::Failed { rolled_back, .. } => {
            let ends: Vec<String> = rolled_back.iter().map(|o| o.describe()).collect();
            if ends.is_empty() {
                HelperError::Failed(msg)
            } else {
                HelperError::Failed(format!("{msg} Now: {}.", ends.join(", ")))
            }
        }
    }
}

/// The kernel the helper changes drivers through under `root`: the real one at `/`. Elsewhere
/// (a recorded tree) there is no kernel behind the files: a test build models one
/// (`fake-kernel`); a release build has none, so `Ok(None)` — it reads the tree and changes
/// nothing in it.
pub fn kernel_for(root: &Path) -> Result<Option<Arc<dyn Kernel>>, String> {
    if root == Path::new("/") {
        return Ok(Some(Arc::new(Sysfs::new("/"))));
    }
    #[cfg(feature = "fake-kernel")]
    {
        let k =
            fakekernel::FakeKernel::new(root).map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(Some(Arc::new(k)))
    }
    #[cfg(not(feature = "fake-kernel"))]
    Ok(None)
}

/// Why a helper without a kernel under `root` refuses every change.
pub fn read_only_reason(root: &Path) -> String {
    format!(
        "{} is a recorded host, not this machine's kernel: passage-helper reads it but claims, \
         releases and persists nothing there",
        root.display()
    )
}
