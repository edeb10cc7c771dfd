//! The app's secondary windows, one relm4 component each: "Assign to…" (the keyboard and menu
//! path of a drop), "Why?", Export (preview, copy, save) and Apply's progress; and a card's
//! context menu; Host Readiness (the doctor's findings and their fixes). GTK 4.8: plain transient windows and `FileChooserNative` (no 4.10 dialogs).

mod apply;
mod assign;
mod export;
mod menu;
mod readiness;
mod why;

pub use apply::{ApplyDialog, ApplyInit, ApplyInput};
pub use assign::{AssignDialog, AssignInit, AssignOutput};
pub use export::{ExportDialog, ExportInit};
pub use menu::{card_menu, MenuChoice};
pub use readiness::{ReadinessDialog, ReadinessInit, Source as ReadinessSource};
pub use why::{WhyDialog, WhyInit};

use gtk::glib;
use gtk::prelude::*;

/// Escape closes the window, as in every GNOME dialog.
fn close_on_escape(win: &gtk::Window) {
    let keys = gtk::EventControllerKey::new();
    let w = win.downgrade();
    keys.connect_key_pressed(move |_, key, _, _| match w.upgrade() {
        Some(w) if key == gtk::gdk::Key::Escape => {
            w.close();
            glib::Propagation::Stop
        }
        _ => glib::Propagation::Proceed,
    });
    win.add_controller(keys);
}
