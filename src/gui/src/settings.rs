//! What the app remembers between runs (GSettings, schema `data/io.github.passage.Passage.gschema.xml`):
//! the window's size and maximized state, where the divider was left, whether bridges are
//! shown, and which plan file was open.
//!
//! A source checkout has no installed schema; then nothing is remembered and nothing fails
//! (`./dev run` and the tests compile the schema and point `GSETTINGS_SCHEMA_DIR` at it).

use gtk::gio;
use gtk::prelude::*;
use passage_core::names;
use std::path::{Path, PathBuf};

/// The app's settings, when its schema is installed (or `GSETTINGS_SCHEMA_DIR` names it).
pub fn open() -> Option<gio::Settings> {
    // gio::Settings::new aborts the process on an unknown schema: look it up first.
    let source = gio::SettingsSchemaSource::default()?;
    source.lookup(names::APP_ID, true)?;
    Some(gio::Settings::new(names::APP_ID))
}

/// The plan to open: the one named on the command line (remembered for next time), else the
/// one open last time if it still exists, else none (the default plan).
pub fn plan_to_open(settings: Option<&gio::Settings>, asked: Option<PathBuf>) -> Option<PathBuf> {
    let settings = match settings {
        Some(s) => s,
        None => return asked,
    };
    match asked {
        Some(p) => {
            let abs = std::path::absolute(&p).unwrap_or_else(|_| p.clone());
            if let Some(s) = abs.to_str() {
                let _ = settings.set_string("last-plan", s);
            }
            Some(p)
        }
        None => {
            let last = settings.string("last-plan");
            Some(PathBuf::from(last.as_str())).filter(|p| !last.is_empty() && p.is_file())
        }
    }
}

/// Puts the window and the divider where they were left.
pub fn restore_window(
    settings: Option<&gio::Settings>,
    window: &gtk::ApplicationWindow,
    paned: &gtk::Paned,
) {
    let Some(s) = settings else { return };
    window.set_default_size(s.int("window-width"), s.int("window-height"));
    if s.boolean("window-maximized") {
        window.maximize();
    }
    paned.set_position(s.int("pane-position"));
}

/// Whether bridges were shown when the app was left (not, without settings).
pub fn show_bridges(settings: Option<&gio::Settings>) -> bool {
    settings.is_some_and(|s| s.boolean("show-bridges"))
}

/// How many other machines the machine menu offers.
pub const RECENT_HOSTS: usize = 8;

/// The other machines opened lately, the latest first (what does not parse is left out).
pub fn recent_hosts(settings: Option<&gio::Settings>) -> Vec<passage_core::Remote> {
    settings
        .map(|s| s.strv("recent-hosts"))
        .map(|v| v.iter().filter_map(|h| h.as_str().parse().ok()).collect())
        .unwrap_or_default()
}

/// Puts `host` first among the machines opened lately.
pub fn remember_host(settings: Option<&gio::Settings>, host: &passage_core::Remote) {
    let Some(s) = settings else { return };
    let mut v = recent_hosts(Some(s));
    v.retain(|h| h != host);
    v.insert(0, host.clone());
    v.truncate(RECENT_HOSTS);
    let words: Vec<String> = v.iter().map(ToString::to_string).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let _ = s.set_strv("recent-hosts", words.as_slice());
}

/// Keeps whether bridges are shown.
pub fn remember_bridges(settings: Option<&gio::Settings>, on: bool) {
    if let Some(s) = settings {
        let _ = s.set_boolean("show-bridges", on);
    }
}

/// Keeps the window's size, maximized state and divider when the window closes.
pub fn remember_on_close(
    settings: Option<&gio::Settings>,
    window: &gtk::ApplicationWindow,
    paned: &gtk::Paned,
) {
    let Some(s) = settings.cloned() else { return };
    let paned = paned.downgrade();
    window.connect_close_request(move |w| {
        // A maximized window's size is the screen's: keep the size it returns to instead.
        if !w.is_maximized() {
            let (width, height) = w.default_size();
            let _ = s.set_int("window-width", width.max(360));
            let _ = s.set_int("window-height", height.max(360));
        }
        let _ = s.set_boolean("window-maximized", w.is_maximized());
        if let Some(p) = paned.upgrade() {
            let _ = s.set_int("pane-position", p.position().max(200));
        }
        gio::Settings::sync();
        gtk::glib::Propagation::Proceed
    });
}

/// A path as a person reads it: `~/…` under the home directory.
pub fn display_path(p: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        if let Ok(rest) = p.strip_prefix(&home) {
            return format!("~/{}", rest.display());
        }
    }
    p.display().to_string()
}
