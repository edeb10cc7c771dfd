//! What the app says about an edit, a save or a refusal: a libadwaita toast over the host list
//! (with Undo or Redo on plan edits), and the same words in a status-role label for screen
//! readers.
//!
//! One toast at a time: a new one dismisses the one shown (AdwToastOverlay would queue it behind
//! a refusal that waits to be read). News goes after a few seconds; a refusal or a failed save
//! stays until the next thing is said, so it is never gone before it is read.
//!
//! GTK 4.8 has no `gtk_accessible_announce` (4.14): what a toast says is also the text of a
//! label with the accessible role *status*, which AT-SPI readers (Orca) present when its text
//! changes. The label is kept out of sight with zero opacity, not hidden: a hidden widget
//! leaves the accessibility tree.

use crate::a11y::accessible_label;
use crate::registry::Texts;
use adw::prelude::*;
use passage_core::i18n::{tr, trf};
use std::cell::RefCell;
use std::rc::Rc;

/// What an edit, a save or a refusal said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// The sentence.
    pub text: String,
    /// A refusal or a failure (it stays until the next message), rather than news.
    pub error: bool,
}

impl Said {
    /// A sentence about something done.
    pub fn news(text: String) -> Self {
        Self { text, error: false }
    }

    /// A refusal or a failure.
    pub fn error(text: String) -> Self {
        Self { text, error: true }
    }
}

/// The button a toast carries: Undo or Redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No button.
    Nothing,
    /// "Undo" (the window's `win.undo`).
    Undo,
    /// "Redo" (the window's `win.redo`).
    Redo,
}

/// Seconds a piece of news stays (libadwaita's default is 5).
const NEWS_SECONDS: u32 = 5;

/// Seconds an edit's toast keeps its Undo: long enough to reach the button by keyboard or a
/// screen reader (Ctrl+Z works after it has gone).
const UNDO_SECONDS: u32 = 10;

/// The toast overlay and the screen reader's label, and what is said now.
pub struct Toaster {
    overlay: adw::ToastOverlay,
    inner: gtk::Overlay,
    live: gtk::Label,
    current: RefCell<Option<adw::Toast>>,
    /// Counts what was said, so a toast dismissed late clears only its own words.
    said: Rc<std::cell::Cell<u64>>,
    /// Where what the toast on screen says is kept ("status", "" when none) for the probe.
    texts: Texts,
}

impl Toaster {
    /// Over `child` (the host list and the guests).
    pub fn new(child: &impl IsA<gtk::Widget>, texts: Texts) -> Self {
        let overlay = adw::ToastOverlay::new();
        let inner = gtk::Overlay::new();
        inner.set_child(Some(child));
        overlay.set_child(Some(&inner));
        overlay.set_vexpand(true);
        let live: gtk::Label = gtk::glib::Object::builder()
            .property("accessible-role", gtk::AccessibleRole::Status)
            .build();
        live.set_opacity(0.0);
        live.set_can_target(false);
        live.set_halign(gtk::Align::Start);
        live.set_valign(gtk::Align::End);
        live.set_ellipsize(gtk::pango::EllipsizeMode::End);
        live.set_max_width_chars(1);
        inner.add_overlay(&live);
        Self {
            overlay,
            inner,
            live,
            current: RefCell::new(None),
            said: Rc::default(),
            texts,
        }
    }

    /// The widget to place in the window.
    pub fn widget(&self) -> &adw::ToastOverlay {
        &self.overlay
    }

    /// Calls `f` with the content's width whenever GTK allocates it anew (resizing,
    /// maximizing, tiling): an invisible drawing area over the content, the one GTK 4.8
    /// widget with a resize signal.
    pub fn on_width(&self, f: impl Fn(i32) + 'static) {
        let probe: gtk::DrawingArea = gtk::glib::Object::builder()
            .property("accessible-role", gtk::AccessibleRole::Presentation)
            .build();
        probe.set_can_target(false);
        probe.set_valign(gtk::Align::Start);
        probe.set_content_height(1);
        probe.connect_resize(move |_, w, _| f(w));
        self.inner.add_overlay(&probe);
    }

    /// Says one thing, in place of whatever was said before.
    pub fn say(&self, said: &Said, offer: Offer) {
        if let Some(old) = self.current.borrow_mut().take() {
            old.dismiss();
        }
        let toast = adw::Toast::new(&gtk::glib::markup_escape_text(&said.text));
        toast.set_timeout(match (said.error, offer) {
            (true, _) => 0,
            (false, Offer::Nothing) => NEWS_SECONDS,
            (false, _) => UNDO_SECONDS,
        });
        toast.set_priority(adw::ToastPriority::High);
        match offer {
            Offer::Nothing => {}
            Offer::Undo => {
                toast.set_button_label(Some(&tr("Undo")));
                toast.set_action_name(Some("win.undo"));
            }
            Offer::Redo => {
                toast.set_button_label(Some(&tr("Redo")));
                toast.set_action_name(Some("win.redo"));
            }
        }
        let n = self.said.get() + 1;
        self.said.set(n);
        {
            let (texts, count) = (self.texts.clone(), self.said.clone());
            toast.connect_dismissed(move |_| {
                if count.get() == n {
                    texts.borrow_mut().remove("status");
                }
            });
        }
        self.texts
            .borrow_mut()
            .insert("status".into(), said.text.clone());
        self.live.set_label(&said.text);
        self.overlay.add_toast(toast.clone());
        *self.current.borrow_mut() = Some(toast);
        let button = match offer {
            Offer::Nothing => None,
            Offer::Undo => Some(trf("Undo: {what}", &[("what", &said.text)])),
            Offer::Redo => Some(trf("Redo: {what}", &[("what", &said.text)])),
        };
        name_toast_buttons(&self.overlay, button.as_deref());
    }

    /// Says a sentence to screen readers only (Apply's steps, which their window shows).
    pub fn announce(&self, text: &str) {
        self.live.set_label(text);
    }
}

/// libadwaita 1.2 leaves a toast's buttons to screen readers as "Undo Undo" and "GtkImage":
/// its action button is named after what it undoes, its close button "Dismiss". The toast's
/// widget is made when the overlay shows it, so this looks on the next idle.
fn name_toast_buttons(overlay: &adw::ToastOverlay, action: Option<&str>) {
    let (overlay, action) = (overlay.downgrade(), action.map(str::to_string));
    gtk::glib::idle_add_local_once(move || {
        let Some(overlay) = overlay.upgrade() else {
            return;
        };
        let mut next = overlay.first_child();
        while let Some(w) = next {
            next = w.next_sibling();
            if w.type_().name() != "AdwToastWidget" {
                continue;
            }
            let mut c = w.first_child();
            while let Some(b) = c {
                c = b.next_sibling();
                let Ok(button) = b.downcast::<gtk::Button>() else {
                    continue;
                };
                match (button.label(), &action) {
                    (Some(_), Some(a)) => accessible_label(&button, a),
                    (None, _) => accessible_label(&button, &tr("Dismiss")),
                    _ => {}
                }
            }
        }
    });
}
