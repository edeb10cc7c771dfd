//! The Passage app (feature `gui`): host groups as cards you drag onto guests.
//!
//! Thin over the library: [`passage_core::view`] decides what a card says and whether a drop is
//! allowed, [`passage_core::plan`] keeps the plan, [`passage_core::export`] writes configurations,
//! [`passage_core::apply`] carries a plan out through the helper. The modules here draw those
//! values and turn gestures (drag and drop, the "Assign to…" menu, switches, address fields)
//! into calls: `app` (the window and its model) drives the components `header`, `status` (the
//! frame around the host list), `guests` and `dialogs`; `hostlist` and `cards` are the list
//! itself. `bootstrap`, `load`, `events`, `a11y` and `memory` do what is not drawing.

mod a11y;
mod app;
mod bootstrap;
mod cards;
mod dialogs;
mod events;
mod guests;
mod header;
mod hostlist;
mod load;
mod memory;
mod notices;
// The probe (what the GUI tests and benches read) exists only where a test build asks for it.
#[cfg(not(feature = "probe"))]
#[path = "noprobe.rs"]
mod probe;
#[cfg(feature = "probe")]
mod probe;
mod registry;
mod settings;
mod shortcuts;
mod status;
mod toasts;
mod topology;

use app::{App, AppInit};
use std::path::PathBuf;

/// How the app was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A bundled demo host (the workstation, with its guests and plan, or a recorded arm64 or
    /// ppc64le machine).
    pub demo: Option<passage_core::demo::DemoHost>,
    /// A recorded host root instead of `/`.
    pub root: Option<PathBuf>,
    /// The plan file (default: the user's; with `--demo`, the demo plan kept in memory; for
    /// another machine, its own plan file, [`passage_core::store::host_plan_path`]).
    pub plan: Option<PathBuf>,
    /// Another machine, reached over SSH (`--host`), instead of this one.
    pub host: Option<passage_core::Remote>,
}

impl Options {
    /// Where edits to the plan are saved: `--plan`, else the machine's own plan file (this
    /// one's default, or another machine's under `hosts/`); `None` for the demo plan.
    pub fn plan_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.plan {
            return Some(p.clone());
        }
        if self.demo.is_some() {
            return None;
        }
        match &self.host {
            Some(h) => passage_core::store::host_plan_path(h),
            None => passage_core::store::default_plan_path(),
        }
    }
}

/// Starts the app; returns when its window closes, or at once with a sentence when there is
/// no display to open it on.
pub fn run(opts: Options) -> Result<(), String> {
    // Which plan to open needs only GSettings (no display): settled first, so the host can be
    // read while GTK starts.
    let settings = settings::open();
    let mut opts = opts;
    // The plan opened last is this machine's; another machine has its own.
    if opts.demo.is_none() && opts.host.is_none() {
        opts.plan = settings::plan_to_open(settings.as_ref(), opts.plan.take());
    }
    // A window has no terminal for ssh to ask on.
    passage_dbus::remote::no_prompts();
    let first = load::start(opts.clone());
    let app = bootstrap::start_gtk()?;
    app.run::<App>(AppInit {
        opts,
        settings,
        first,
    });
    Ok(())
}
