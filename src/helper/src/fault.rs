//! Named points inside every transaction, where the fault campaign stops the helper.
//!
//! Each step of a claim, a release, a rollback and a replay is a point (`claim:3`,
//! `release:done`, …); [`crate::claim`] writes the point's name into the operation's progress
//! file (`journal-N.step`) before it acts, so what a crash interrupted can be read back.
//! Built with the `fault-points` feature (the tests' builds only), a helper started with
//! `PASSAGE_FAULT_AT=claim:3` stops itself (`SIGSTOP`) the first time it reaches that point,
//! after the mark is written: the real-kernel campaign (`tests/vm/guest-faults-job.sh`) then
//! kills, unplugs, fills the disk or races another helper exactly there, instead of guessing
//! from timing. A release build has no such code: [`point`] is empty.

/// A point is reached: in a test build aimed at it, the process stops here until it is
/// continued or killed.
#[cfg(feature = "fault-points")]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    let aimed = std::env::var("PASSAGE_FAULT_AT").is_ok_and(|v| v == name);
    if aimed && !FIRED.swap(true, Ordering::SeqCst) {
        tracing::warn!("fault point {name}: stopping for the test");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
}

/// A release build: no point stops anything.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
