//! What the window shows, written for the tests that drive it through a real X server
//! (tests/gui.rs): where each card, expander, "Why?" button, guest address entry and guest
//! row is on screen, which dialogs are open, the banner and status lines, the export preview
//! and the plan. Only when `PASSAGE_PROBE` names a file;
//! nothing else reads it.

use crate::registry::Registry;
use gtk::glib;
use gtk::prelude::*;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

#[derive(Default)]
struct Data {
    /// Every group is in the list (its rows' cards made as they are drawn).
    listed: bool,
    /// The whole window is drawn from the whole host: notices, summary, guests.
    loaded: bool,
    /// When (UNIX time, seconds) the first frame was painted, the first frame after every
    /// group was in the list, and the first after the whole window was: the benchmark's
    /// figures, taken inside the app.
    first_frame_at: Option<f64>,
    listed_frame_at: Option<f64>,
    loaded_frame_at: Option<f64>,
    /// Device events applied, and how long the last took from its arrival to the redrawn list.
    events: u64,
    event_ms: f64,
    /// The last event's arrival, until the frame that shows it is painted; then how long that
    /// took (what a person sees: from the kernel's event to the redrawn card on screen).
    event_at: Option<std::time::Instant>,
    event_frame_ms: Option<f64>,
    /// When the Topology view was asked for, until the frame that shows it is painted; then
    /// how long that took (layout, widgets and the first frame).
    topology_at: Option<std::time::Instant>,
    topology_frame_ms: Option<f64>,
    plan: String,
    preview: Option<gtk::TextBuffer>,
    /// Apply's progress window: each step as it is done, then the outcome.
    apply_log: Option<gtk::TextBuffer>,
    /// The plan file the app edits (none for the demo's built-in plan).
    plan_path: Option<String>,
    open: BTreeMap<String, glib::WeakRef<gtk::Widget>>,
}

/// The app's handle on the probe.
pub struct Probe {
    data: Rc<RefCell<Data>>,
}

/// Where a widget is, in the main window's coordinates. A widget in a popover (a card's menu)
/// lives on a surface of its own: its place is the popup's position on the window's surface
/// plus its place inside the popover.
fn bounds(w: &gtk::Widget, window: &gtk::ApplicationWindow) -> Option<Value> {
    if !w.is_mapped() {
        return None;
    }
    if let Some(pop) = w.native().and_then(|n| n.downcast::<gtk::Popover>().ok()) {
        use gtk::gdk::prelude::PopupExt;
        let b = w.compute_bounds(&pop)?;
        let surface = pop.surface()?;
        let popup = surface.downcast_ref::<gtk::gdk::Popup>()?;
        let (px, py) = pop.surface_transform();
        let (wx, wy) = window.surface_transform();
        let x = f64::from(popup.position_x()) + px - wx + f64::from(b.x());
        let y = f64::from(popup.position_y()) + py - wy + f64::from(b.y());
        return Some(json!([x, y, b.width(), b.height()]));
    }
    let b = w.compute_bounds(window)?;
    Some(json!([b.x(), b.y(), b.width(), b.height()]))
}

fn rects<K: ToString, T: IsA<gtk::Widget>>(
    m: &BTreeMap<K, glib::WeakRef<T>>,
    window: &gtk::ApplicationWindow,
) -> Map<String, Value> {
    m.iter()
        .filter_map(|(k, v)| {
            let w = v.upgrade()?;
            bounds(w.upcast_ref(), window).map(|b| (k.to_string(), b))
        })
        .collect()
}

/// What a label says while it is on screen ("" when it is hidden).
fn shown_text(labels: &BTreeMap<String, glib::WeakRef<gtk::Label>>, name: &str) -> String {
    labels
        .get(name)
        .and_then(|l| l.upgrade())
        .filter(|l| l.is_mapped())
        .map(|l| l.label().to_string())
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Probe {
    pub fn from_env(window: &gtk::ApplicationWindow, registry: Registry) -> Option<Self> {
        let path = PathBuf::from(std::env::var_os("PASSAGE_PROBE")?);
        let data: Rc<RefCell<Data>> = Rc::default();
        {
            let d = data.clone();
            window.connect_realize(move |w| {
                let Some(clock) = w.frame_clock() else { return };
                let d = d.clone();
                clock.connect_after_paint(move |_| {
                    let mut d = d.borrow_mut();
                    let now = unix_now();
                    if d.first_frame_at.is_none() {
                        d.first_frame_at = Some(now);
                    }
                    if d.listed && d.listed_frame_at.is_none() {
                        d.listed_frame_at = Some(now);
                    }
                    if d.loaded && d.loaded_frame_at.is_none() {
                        d.loaded_frame_at = Some(now);
                    }
                    if let Some(at) = d.event_at.take() {
                        d.event_frame_ms = Some(at.elapsed().as_secs_f64() * 1000.0);
                    }
                    if let Some(at) = d.topology_at.take() {
                        d.topology_frame_ms = Some(at.elapsed().as_secs_f64() * 1000.0);
                    }
                });
            });
        }
        let (w, d) = (window.clone(), data.clone());
        glib::timeout_add_local(std::time::Duration::from_millis(200), move || {
            let d = d.borrow();
            let open: Vec<&String> = d
                .open
                .iter()
                .filter(|(_, v)| v.upgrade().is_some_and(|x| x.is_visible()))
                .map(|(k, _)| k)
                .collect();
            let v = json!({
                "listed": d.listed,
                "loaded": d.loaded,
                "first_frame_at": d.first_frame_at,
                "listed_frame_at": d.listed_frame_at,
                "loaded_frame_at": d.loaded_frame_at,
                "window": [w.width(), w.height()],
                "cards": rects(&registry.cards.borrow(), &w),
                "expanders": rects(&registry.expanders.borrow(), &w),
                "addresses": rects(&registry.addresses.borrow(), &w),
                "why": rects(&registry.why_buttons.borrow(), &w),
                "guests": rects(&registry.guests.borrow(), &w),
                "topo_boxes": rects(&registry.topo_boxes.borrow(), &w),
                "topo_nodes": rects(&registry.topo_nodes.borrow(), &w),
                "panes": rects(&registry.panes.borrow(), &w),
                // Which of the Topology view's boxes or nodes has the keyboard's focus.
                "topo_focus": registry.topo_boxes.borrow().iter().find_map(|(g, b)| {
                    let b = b.upgrade()?;
                    (b.has_focus() || b.focus_child().is_some()).then(|| format!("group-{g}"))
                }).or_else(|| registry.topo_nodes.borrow().iter().find_map(|(k, n)| {
                    let n = n.upgrade()?;
                    (n.has_focus() || n.focus_child().is_some()).then(|| format!("node-{k}"))
                })),
                "topology_frame_ms": d.topology_frame_ms,
                "rss_kib": crate::memory::rss_kib(),
                "buttons": rects(&registry.buttons.borrow(), &w),
                // What the buttons say, in the language the app runs in.
                "labels": registry
                    .buttons
                    .borrow()
                    .iter()
                    .filter_map(|(k, b)| Some((k.clone(), Value::from(b.upgrade()?.label()?.to_string()))))
                    .collect::<Map<String, Value>>(),
                // Toggle buttons: on or off.
                "active": registry
                    .buttons
                    .borrow()
                    .iter()
                    .filter_map(|(k, b)| {
                        let t = b.upgrade()?.downcast::<gtk::ToggleButton>().ok()?;
                        Some((k.clone(), Value::from(t.is_active())))
                    })
                    .collect::<Map<String, Value>>(),
                "open": open,
                "badges": registry
                    .badges
                    .borrow()
                    .iter()
                    .filter_map(|(k, b)| Some((k.to_string(), Value::from(b.upgrade()?.label().to_string()))))
                    .collect::<Map<String, Value>>(),
                "events": d.events,
                "event_ms": d.event_ms,
                "event_frame_ms": d.event_frame_ms,
                "export_preview": d.preview.as_ref().map(|b| b.text(&b.start_iter(), &b.end_iter(), false).to_string()),
                "apply_log": d.apply_log.as_ref().map(|b| b.text(&b.start_iter(), &b.end_iter(), false).to_string()),
                "plan_path": d.plan_path,
                // The lines around the list, as shown: the banner above it; below it what the
                // last edit or save said, and the summary of the host and the plan.
                "banner": registry.texts.borrow().get("banner").cloned().unwrap_or_default(),
                "status": registry.texts.borrow().get("status").cloned().unwrap_or_default(),
                "summary": shown_text(&registry.labels.borrow(), "summary"),
                // What the line under the Topology view says about the port or box pointed at.
                "topology_note": shown_text(&registry.labels.borrow(), "topology-note"),
                "plan": d.plan,
                // Which page and layout are shown ("page", "guests-page", "layout"), the undo
                // and redo depths ("undo": "U R").
                "texts": registry.texts.borrow().clone(),
                // libadwaita follows the system's dark style (ADW_DEBUG_COLOR_SCHEME in tests).
                "dark": adw::StyleManager::default().is_dark(),
                // The narrowest the window's content can be drawn whole (more than the window's
                // width: something is cut off).
                "content_min": w.child().map(|c| c.measure(gtk::Orientation::Horizontal, -1).0),
            });
            let _ = passage_core::store::write_atomic(&path, v.to_string().as_bytes());
            glib::ControlFlow::Continue
        });
        Some(Self { data })
    }

    /// The file device events are injected through, when the test made one (a FIFO beside the
    /// probe file: `PROBE.events`).
    pub fn events_path() -> Option<PathBuf> {
        let p = PathBuf::from(std::env::var_os("PASSAGE_PROBE")?);
        let mut name = p.file_name()?.to_os_string();
        name.push(".events");
        let e = p.with_file_name(name);
        e.exists().then_some(e)
    }

    /// A device event was applied to the model and its card redrawn; `at` is when it arrived.
    pub fn event_applied(&self, at: std::time::Instant) {
        let mut d = self.data.borrow_mut();
        d.events += 1;
        d.event_ms = at.elapsed().as_secs_f64() * 1000.0;
        d.event_at = Some(at);
        d.event_frame_ms = None;
    }

    /// The Topology view was asked for (its layout and widgets are made next).
    pub fn topology_asked(&self, at: std::time::Instant) {
        let mut d = self.data.borrow_mut();
        d.topology_at = Some(at);
        d.topology_frame_ms = None;
    }

    pub fn set_listed(&self) {
        self.data.borrow_mut().listed = true;
    }

    pub fn set_loaded(&self) {
        self.data.borrow_mut().loaded = true;
    }

    pub fn set_plan(&self, plan: String) {
        self.data.borrow_mut().plan = plan;
    }

    pub fn set_apply_log(&self, b: gtk::TextBuffer) {
        self.data.borrow_mut().apply_log = Some(b);
    }

    pub fn set_plan_path(&self, p: Option<&std::path::Path>) {
        self.data.borrow_mut().plan_path = p.map(|p| p.display().to_string());
    }

    pub fn set_preview(&self, b: gtk::TextBuffer) {
        self.data.borrow_mut().preview = Some(b);
    }

    /// A dialog or menu the tests may look for by name.
    pub fn opened(&self, name: &str, w: &gtk::Widget) {
        self.data
            .borrow_mut()
            .open
            .insert(name.to_string(), w.downgrade());
    }
}
