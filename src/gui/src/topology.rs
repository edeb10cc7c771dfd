//! The Topology view: the host's PCI tree as `passage_core::topology` lays it out, drawn with
//! real widgets so every group box is a drag source, takes the keyboard and has a name for
//! screen readers, like a card.
//!
//! Only what is on screen (and a screen around it) has widgets: a 10,000-function host scrolls
//! through the same few hundred boxes and nodes, made as they come into view and dropped as
//! they leave it. The lines are drawn by one drawing area laid over the scrolled view, at the
//! view's size (a drawing area the size of the whole tree would be a surface of hundreds of
//! thousands of pixels; one inside the scrolled canvas would change the canvas's size).

use crate::a11y::accessible_label;
use crate::cards::{CardMsg, Emit};
use crate::registry::{self, Registry};
use gtk::prelude::*;
use gtk::{gdk, glib};
use passage_core::i18n::tr;
use passage_core::topology::{Layout, NodeKind, Rect, Role};
use passage_core::PciAddress;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What the view asks of the app besides the cards' gestures.
#[derive(Debug, Clone)]
pub enum TopoMsg {
    /// Draw (or fold again) one PF's virtual functions.
    Unfold(PciAddress, bool),
}

pub type TopoEmit = Rc<dyn Fn(TopoMsg)>;

/// An item with a widget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Box(usize),
    Node(usize),
}

struct Inner {
    layout: Layout,
    made: HashMap<Item, gtk::Widget>,
    /// PFs whose VFs are drawn (each shows a "fold" button).
    unfolded: std::collections::BTreeSet<PciAddress>,
}

/// The view: a scrolled canvas, the line layer and a line of text saying what the pointer or
/// the keyboard is on.
pub struct TopologyView {
    root: gtk::Box,
    scroller: gtk::ScrolledWindow,
    canvas: gtk::Fixed,
    lines: gtk::DrawingArea,
    note: gtk::Label,
    inner: Rc<RefCell<Inner>>,
    emit: Emit,
    topo: TopoEmit,
    registry: Registry,
    sync_pending: std::cell::Cell<bool>,
}

/// How far beyond the visible area widgets are made (a screen on each side), and when they
/// are dropped (two screens away): scrolling a little never remakes what it just made.
const KEEP_PAGES: f64 = 1.0;
const DROP_PAGES: f64 = 2.0;

impl TopologyView {
    pub fn new(emit: Emit, topo: TopoEmit, registry: Registry) -> Rc<Self> {
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let canvas = gtk::Fixed::new();
        canvas.add_css_class("topology");
        accessible_label(&canvas, &tr("PCI topology of this host"));
        let lines = gtk::DrawingArea::new();
        lines.set_can_target(false);
        lines.set_can_focus(false);
        let scroller = gtk::ScrolledWindow::new();
        scroller.set_vexpand(true);
        scroller.set_hexpand(true);
        scroller.set_child(Some(&canvas));
        let overlay = gtk::Overlay::new();
        overlay.set_child(Some(&scroller));
        overlay.add_overlay(&lines);
        root.append(&overlay);
        registry::enter(&registry.panes, "topology".into(), scroller.upcast_ref());
        let note = gtk::Label::new(Some(&tr(
            "Point at a port or a group, or move to it with Tab, to see why it is shaped this way.",
        )));
        // Two lines, always: a note that changed the view's height would move what is pointed at.
        note.set_wrap(true);
        note.set_lines(2);
        note.set_ellipsize(gtk::pango::EllipsizeMode::End);
        note.set_height_request(38);
        note.set_valign(gtk::Align::Start);
        note.set_xalign(0.0);
        note.add_css_class("topology-note");
        registry::enter(&registry.labels, "topology-note".into(), &note);
        root.append(&note);
        let view = Rc::new(Self {
            root,
            scroller,
            canvas,
            lines,
            note,
            inner: Rc::new(RefCell::new(Inner {
                layout: Layout::default(),
                made: HashMap::new(),
                unfolded: Default::default(),
            })),
            emit,
            topo,
            registry,
            sync_pending: std::cell::Cell::new(false),
        });
        {
            let inner = view.inner.clone();
            let sc = view.scroller.clone();
            view.lines.set_draw_func(move |area, cr, _, _| {
                draw_lines(&inner.borrow().layout, &sc, area, cr);
            });
        }
        for adj in [view.scroller.hadjustment(), view.scroller.vadjustment()] {
            let w = Rc::downgrade(&view);
            adj.connect_value_changed(move |_| {
                if let Some(v) = w.upgrade() {
                    v.lines.queue_draw();
                    v.schedule_sync();
                }
            });
            let w = Rc::downgrade(&view);
            adj.connect_page_size_notify(move |_| {
                if let Some(v) = w.upgrade() {
                    v.schedule_sync();
                }
            });
        }
        view
    }

    pub fn widget(&self) -> &gtk::Box {
        &self.root
    }

    /// A new picture (the host or the plan changed, or VFs were opened): every widget made
    /// again for what is on screen.
    pub fn set_layout(&self, layout: Layout, unfolded: std::collections::BTreeSet<PciAddress>) {
        // The keyboard's place, by what it is on (a group, a device), to give back after.
        let focused = self.focused();
        {
            let mut inner = self.inner.borrow_mut();
            for (_, w) in inner.made.drain() {
                self.canvas.remove(&w);
            }
            self.registry.topo_boxes.borrow_mut().clear();
            self.registry.topo_nodes.borrow_mut().clear();
            inner.layout = layout;
            inner.unfolded = unfolded;
            let (w, h) = (inner.layout.width, inner.layout.height);
            self.canvas
                .set_size_request((w + 2.0 * MARGIN) as i32, (h + 2.0 * MARGIN) as i32);
        }
        self.sync();
        if let Some(f) = focused {
            self.refocus(&f);
        }
        self.lines.queue_draw();
    }

    /// What has the keyboard's focus in the view, if anything.
    fn focused(&self) -> Option<Focus> {
        let inner = self.inner.borrow();
        inner.made.iter().find_map(|(it, w)| {
            if !(w.has_focus() || w.focus_child().is_some()) {
                return None;
            }
            Some(match it {
                Item::Box(i) => Focus::Group(inner.layout.boxes.get(*i)?.group),
                Item::Node(i) => Focus::Node(inner.layout.nodes.get(*i)?.kind.clone()),
            })
        })
    }

    /// Gives the focus back to the same group or device in a new layout, making its widget if
    /// it is not in view (the viewport then scrolls to it).
    fn refocus(&self, f: &Focus) {
        let item = {
            let inner = self.inner.borrow();
            let l = &inner.layout;
            match f {
                Focus::Group(g) => l.box_of(*g).map(Item::Box),
                Focus::Node(k) => l.nodes.iter().position(|n| &n.kind == k).map(Item::Node),
            }
        };
        let Some(item) = item else { return };
        let w = self.inner.borrow().made.get(&item).cloned();
        let w = match w {
            Some(w) => w,
            None => self.put(item),
        };
        w.grab_focus();
    }

    /// Makes and places one item's widget.
    fn put(&self, item: Item) -> gtk::Widget {
        let mut inner = self.inner.borrow_mut();
        let (w, r) = match item {
            Item::Box(b) => (self.make_box(&inner.layout, b), inner.layout.boxes[b].rect),
            Item::Node(n) => (
                self.make_node(&inner.layout, n, &inner.unfolded),
                inner.layout.nodes[n].rect,
            ),
        };
        self.canvas.put(&w, r.x + MARGIN, r.y + MARGIN);
        if let Item::Box(_) = item {
            // Boxes lie under every node (a node kept from an earlier scroll would otherwise
            // end up under a box made now, and the box would take its clicks).
            w.insert_before(&self.canvas, self.canvas.first_child().as_ref());
        }
        inner.made.insert(item, w.clone());
        w
    }

    /// The adjustments change while GTK allocates the scrolled window; adding and moving
    /// children then would leave the canvas without an allocation. So the widgets follow the
    /// view once the allocation is over, in one idle callback however many changes came.
    fn schedule_sync(self: &Rc<Self>) {
        if self.sync_pending.replace(true) {
            return;
        }
        let w = Rc::downgrade(self);
        glib::idle_add_local_once(move || {
            if let Some(v) = w.upgrade() {
                v.sync_pending.set(false);
                v.sync();
            }
        });
    }

    /// Widgets for what is in view (and a screen around it); those far out of view dropped.
    fn sync(&self) {
        let (h, v) = (self.scroller.hadjustment(), self.scroller.vadjustment());
        // Before the first allocation the page is 0: a screenful is assumed.
        let (pw, ph) = (h.page_size().max(400.0), v.page_size().max(300.0));
        let view = Rect {
            x: h.value() - MARGIN,
            y: v.value() - MARGIN,
            w: pw,
            h: ph,
        };
        let grow = |r: &Rect, k: f64| Rect {
            x: r.x - k * r.w,
            y: r.y - k * r.h,
            w: r.w * (1.0 + 2.0 * k),
            h: r.h * (1.0 + 2.0 * k),
        };
        let keep = grow(&view, KEEP_PAGES);
        let far = grow(&view, DROP_PAGES);
        let mut inner = self.inner.borrow_mut();
        // Drop what is far away.
        let gone: Vec<Item> = inner
            .made
            .keys()
            .copied()
            .filter(|it| {
                let r = match it {
                    Item::Box(i) => inner.layout.boxes[*i].rect,
                    Item::Node(i) => inner.layout.nodes[*i].rect,
                };
                !r.overlaps(&far)
            })
            .collect();
        for it in gone {
            if let Some(w) = inner.made.remove(&it) {
                // A focused widget stays: the keyboard must not lose its place.
                if w.has_focus() || w.focus_child().is_some() {
                    inner.made.insert(it, w);
                    continue;
                }
                self.canvas.remove(&w);
                self.forget(&inner.layout, it);
            }
        }
        let (boxes, nodes, _) = inner.layout.visible(&keep);
        let wanted: Vec<Item> = boxes
            .into_iter()
            .map(Item::Box)
            .chain(nodes.into_iter().map(Item::Node))
            .filter(|it| !inner.made.contains_key(it))
            .collect();
        drop(inner);
        for it in wanted {
            self.put(it);
        }
    }

    /// A dropped widget leaves the registry too (the probe reports live widgets only).
    fn forget(&self, l: &Layout, it: Item) {
        match it {
            Item::Box(i) => {
                if let Some(b) = l.boxes.get(i) {
                    self.registry.topo_boxes.borrow_mut().remove(&b.group.0);
                }
            }
            Item::Node(i) => {
                if let Some(n) = l.nodes.get(i) {
                    self.registry.topo_nodes.borrow_mut().remove(&node_key(n));
                    if let NodeKind::Device(a) = n.kind {
                        self.registry
                            .buttons
                            .borrow_mut()
                            .remove(&format!("fold-{a}"));
                    }
                }
            }
        }
    }

    /// A group's box: drag source, focusable, Enter for "Assign to…", Shift+F10 for its menu.
    fn make_box(&self, l: &Layout, i: usize) -> gtk::Widget {
        let b = &l.boxes[i];
        let w = gtk::Box::new(gtk::Orientation::Horizontal, 4);
        w.set_size_request(b.rect.w as i32, b.rect.h as i32);
        w.set_valign(gtk::Align::Start);
        w.add_css_class("topo-group");
        w.add_css_class(&format!("state-box-{}", b.state.as_str()));
        w.set_focusable(true);
        let header = gtk::Label::new(Some(&b.header));
        header.add_css_class("heading");
        header.set_xalign(0.0);
        header.set_valign(gtk::Align::Start);
        header.set_ellipsize(gtk::pango::EllipsizeMode::End);
        header.set_hexpand(true);
        w.append(&header);
        for m in &b.marks {
            w.append(&mark_label(m));
        }
        let mut tip = format!("{}\n{}", b.title, b.label);
        for m in &b.marks {
            tip.push_str("\n\n");
            tip.push_str(&m.message);
        }
        w.set_tooltip_text(Some(&tip));
        accessible_label(&w, &b.label);
        let g = b.group;
        self.group_gestures(w.upcast_ref(), g, (0.0, 0.0), (24.0, 12.0));
        self.tell_on_hover_and_focus(&w, format!("{}: {}", b.header, b.title));
        registry::enter(&self.registry.topo_boxes, g.0, &w);
        w.upcast()
    }

    /// What a group's box does, on the box and on each of its devices (which lie over the box,
    /// so they must do it too): drag the group like a card, right click or Shift+F10/Menu for
    /// its menu, Enter for "Assign to…". The menu points at the box; `offset` is where this
    /// widget sits inside it, `key_at` where the keyboard's menu points.
    fn group_gestures(
        &self,
        w: &gtk::Widget,
        g: passage_core::GroupId,
        offset: (f64, f64),
        key_at: (f64, f64),
    ) {
        // What travels is the group number, as from a card.
        let drag = gtk::DragSource::new();
        drag.set_actions(gdk::DragAction::COPY);
        drag.connect_prepare(move |_, _, _| Some(gdk::ContentProvider::for_value(&g.0.to_value())));
        w.add_controller(drag);
        let click = gtk::GestureClick::new();
        click.set_button(0);
        {
            let e = self.emit.clone();
            click.connect_pressed(move |gesture, _, x, y| {
                let Some(w) = gesture.widget() else { return };
                if w.is_focusable() {
                    w.grab_focus();
                }
                if gesture.current_button() == gdk::BUTTON_SECONDARY {
                    gesture.set_state(gtk::EventSequenceState::Claimed);
                    e(CardMsg::Menu(g, Some((x + offset.0, y + offset.1))));
                }
            });
        }
        w.add_controller(click);
        let keys = gtk::EventControllerKey::new();
        {
            let e = self.emit.clone();
            keys.connect_key_pressed(move |_, key, _, mods| {
                let menu = key == gdk::Key::Menu
                    || (key == gdk::Key::F10 && mods.contains(gdk::ModifierType::SHIFT_MASK));
                if menu {
                    e(CardMsg::Menu(g, Some(key_at)));
                    glib::Propagation::Stop
                } else if matches!(key, gdk::Key::Return | gdk::Key::KP_Enter | gdk::Key::space) {
                    e(CardMsg::Choose(g));
                    glib::Propagation::Stop
                } else {
                    glib::Propagation::Proceed
                }
            });
        }
        w.add_controller(keys);
    }

    /// A device, a root bus, or a fold of virtual functions (a button that opens them).
    fn make_node(
        &self,
        l: &Layout,
        i: usize,
        unfolded: &std::collections::BTreeSet<PciAddress>,
    ) -> gtk::Widget {
        let n = &l.nodes[i];
        let text = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let top = gtk::Box::new(gtk::Orientation::Horizontal, 4);
        let title = gtk::Label::new(Some(&n.title));
        title.add_css_class("heading");
        title.set_xalign(0.0);
        title.set_hexpand(true);
        title.set_ellipsize(gtk::pango::EllipsizeMode::End);
        top.append(&title);
        for m in &n.marks {
            top.append(&mark_label(m));
        }
        text.append(&top);
        let sub = gtk::Label::new(Some(&n.subtitle));
        sub.add_css_class("dim-label");
        sub.set_xalign(0.0);
        sub.set_ellipsize(gtk::pango::EllipsizeMode::End);
        text.append(&sub);
        let mut said = format!("{}, {}. {}", n.title, n.subtitle, n.note);
        for m in &n.marks {
            said.push(' ');
            said.push_str(&m.message);
        }
        let key = node_key(n);
        let w: gtk::Widget = match &n.kind {
            NodeKind::Fold { pf, .. } => {
                let b = gtk::Button::new();
                b.set_child(Some(&text));
                let (t, pf) = (self.topo.clone(), *pf);
                b.connect_clicked(move |_| t(TopoMsg::Unfold(pf, true)));
                b.upcast()
            }
            NodeKind::Device(a) if unfolded.contains(a) => {
                // An opened PF: a button folds its VFs again.
                let row = gtk::Box::new(gtk::Orientation::Horizontal, 2);
                text.set_hexpand(true);
                row.append(&text);
                let fold = gtk::Button::from_icon_name("go-up-symbolic");
                fold.add_css_class("flat");
                fold.set_valign(gtk::Align::Center);
                fold.set_tooltip_text(Some(&tr("Fold the virtual functions again")));
                accessible_label(&fold, &tr("Fold the virtual functions again"));
                let (t, pf) = (self.topo.clone(), *a);
                fold.connect_clicked(move |_| t(TopoMsg::Unfold(pf, false)));
                registry::enter(&self.registry.buttons, format!("fold-{pf}"), &fold);
                row.append(&fold);
                row.upcast()
            }
            _ => text.clone().upcast(),
        };
        w.add_css_class("topo-node");
        w.add_css_class(&format!("topo-{}", n.role.as_str()));
        w.set_size_request(n.rect.w as i32, n.rect.h as i32);
        w.set_valign(gtk::Align::Start);
        w.set_tooltip_text(Some(&n.note));
        accessible_label(&w, &said);
        // Ports and bridges take the keyboard: "why does this port (not) isolate?" is asked of
        // them. The rest is told through the group's box.
        if matches!(n.role, Role::Port | Role::RootComplex) {
            w.set_focusable(true);
        }
        match n
            .group
            .and_then(|g| l.box_of(g).map(|b| (g, l.boxes[b].rect)))
        {
            Some((g, b)) => {
                let off = (n.rect.x - b.x, n.rect.y - b.y);
                self.group_gestures(&w, g, off, (off.0 + n.rect.w / 2.0, off.1 + n.rect.h / 2.0));
            }
            None if w.is_focusable() => {
                let click = gtk::GestureClick::new();
                click.connect_pressed(|g, _, _, _| {
                    if let Some(w) = g.widget() {
                        w.grab_focus();
                    }
                });
                w.add_controller(click);
            }
            None => {}
        }
        self.tell_on_hover_and_focus(&w, said);
        registry::enter(&self.registry.topo_nodes, key, &w);
        w
    }

    /// The line under the picture says what the pointer or the keyboard is on.
    fn tell_on_hover_and_focus(&self, w: &impl IsA<gtk::Widget>, text: String) {
        let text = Rc::new(text);
        let motion = gtk::EventControllerMotion::new();
        {
            let (note, text) = (self.note.clone(), text.clone());
            motion.connect_enter(move |_, _, _| note.set_label(&text));
        }
        w.add_controller(motion);
        let focus = gtk::EventControllerFocus::new();
        {
            let note = self.note.clone();
            focus.connect_enter(move |_| note.set_label(&text));
        }
        w.add_controller(focus);
    }

    /// How many widgets the view holds now (the probe reports it: it stays small on a large
    /// host).
    pub fn made(&self) -> usize {
        self.inner.borrow().made.len()
    }

    /// The picture's size.
    pub fn size(&self) -> (f64, f64) {
        let i = self.inner.borrow();
        (i.layout.width, i.layout.height)
    }
}

/// What the registry calls a node: its address, its root bus, or `vfs-PF`.
fn node_key(n: &passage_core::topology::Node) -> String {
    match &n.kind {
        NodeKind::Device(a) => a.to_string(),
        NodeKind::RootBus(b) => b.clone(),
        NodeKind::Fold { pf, .. } => format!("vfs-{pf}"),
    }
}

/// What has the focus, by identity (indices change with every layout).
#[derive(Debug, Clone)]
enum Focus {
    Group(passage_core::GroupId),
    Node(NodeKind),
}

/// Room around the picture.
const MARGIN: f64 = 12.0;

fn mark_label(m: &passage_core::topology::Mark) -> gtk::Label {
    let l = gtk::Label::new(Some(&m.label));
    l.add_css_class("topo-mark");
    l.set_valign(gtk::Align::Start);
    l.set_tooltip_text(Some(&m.message));
    l
}

/// The lines inside the visible area, in the drawing area's own coordinates (it sits at the
/// scrolled position).
fn draw_lines(
    l: &Layout,
    sc: &gtk::ScrolledWindow,
    area: &gtk::DrawingArea,
    cr: &gtk::cairo::Context,
) {
    // The layer lies over the scrolled view: the canvas's point (x, y) is at (x - scrolled).
    let (ox, oy) = (sc.hadjustment().value(), sc.vadjustment().value());
    let view = Rect {
        x: ox - MARGIN,
        y: oy - MARGIN,
        w: f64::from(area.width()),
        h: f64::from(area.height()),
    };
    let (_, _, edges) = l.visible(&view);
    let color = area.style_context().color();
    cr.set_source_rgba(
        f64::from(color.red()),
        f64::from(color.green()),
        f64::from(color.blue()),
        0.55,
    );
    cr.set_line_width(1.2);
    for e in edges {
        let edge = &l.edges[e];
        if edge.dashed {
            cr.set_dash(&[4.0, 3.0], 0.0);
        } else {
            cr.set_dash(&[], 0.0);
        }
        for (k, (x, y)) in edge.points.iter().enumerate() {
            let (x, y) = (x + MARGIN - ox, y + MARGIN - oy);
            if k == 0 {
                cr.move_to(x, y);
            } else {
                cr.line_to(x, y);
            }
        }
        let _ = cr.stroke();
    }
}
