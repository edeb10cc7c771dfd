//! Group cards: the rows of the host list (section headers between them). Widgets are made
//! once per visible row and rebound as the list scrolls; what a card says comes from
//! [`passage_core::view::Card`], and every gesture on it leaves as a [`CardMsg`].

use crate::a11y::accessible_label;
use crate::hostlist::CardBook;
use crate::registry::{self, Registry};
use gtk::prelude::*;
use gtk::{gdk, glib};
use passage_core::i18n::{tr, trf};
use passage_core::view::DeviceRow;
use passage_core::{GroupId, PciAddress};
use relm4::typed_view::grid::RelmGridItem;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What a person did on a card.
#[derive(Debug)]
pub enum CardMsg {
    /// The context menu, at a point inside the card (or under it, from the keyboard).
    Menu(GroupId, Option<(f64, f64)>),
    /// "Why?" on a card.
    Why(GroupId),
    /// "Assign to…" (or Enter on the card).
    Choose(GroupId),
    /// The device expander opened or closed.
    Expanded(GroupId, bool),
    /// A device's "visible to the guest" switch.
    SetVisible(PciAddress, bool),
    /// A device's guest address, as typed.
    SetAddress(PciAddress, String),
}

/// Where a card's gestures go (the host list's owner).
pub type Emit = Rc<dyn Fn(CardMsg)>;

/// One row of the host list: a section header or a group card.
pub struct RowItem {
    header: Option<String>,
    /// The group, and where its card comes from: made when the row is first bound.
    group: Option<(GroupId, Rc<RefCell<CardBook>>)>,
    expanded: bool,
    tx: Option<Emit>,
    registry: Option<Registry>,
}

impl RowItem {
    /// A section header ("Behind port …").
    pub fn header(title: &str) -> Self {
        Self {
            header: Some(title.to_string()),
            group: None,
            expanded: false,
            tx: None,
            registry: None,
        }
    }

    /// A group's card from `book`, its devices shown when `expanded`.
    pub fn card(
        group: GroupId,
        book: Rc<RefCell<CardBook>>,
        expanded: bool,
        tx: Emit,
        registry: Registry,
    ) -> Self {
        Self {
            header: None,
            group: Some((group, book)),
            expanded,
            tx: Some(tx),
            registry: Some(registry),
        }
    }

    fn group(&self) -> Option<GroupId> {
        self.group.as_ref().map(|(g, _)| *g)
    }
}

/// The group whose card holds the keyboard focus (the focus sits on the list's row around
/// the card, or inside it).
pub fn focused_group(window: &gtk::Window, registry: &Registry) -> Option<GroupId> {
    let focus = gtk::prelude::GtkWindowExt::focus(window)?;
    registry.cards.borrow().iter().find_map(|(g, card)| {
        let card = card.upgrade()?;
        (focus == *card.upcast_ref::<gtk::Widget>()
            || focus.is_ancestor(&card)
            || card.is_ancestor(&focus))
        .then_some(GroupId(*g))
    })
}

/// The group shown at a list position (for Enter on a card).
pub fn group_at(view: &gtk::GridView, pos: u32) -> Option<GroupId> {
    let model = view.model()?;
    let obj = model.item(pos)?;
    let boxed = obj.downcast_ref::<glib::BoxedAnyObject>()?;
    let item = boxed.try_borrow::<RowItem>().ok()?;
    item.group()
}

/// A card's device rows, made only when its expander is open: a switch and an address entry
/// per device are the costliest widgets of a card, and most cards are never opened.
struct DeviceRows {
    /// The card's group (every control says it, for screen readers).
    group: GroupId,
    devices: Vec<DeviceRow>,
    planned: bool,
    tx: Option<Emit>,
    registry: Option<Registry>,
}

/// Takes every device row out of a card's device box (a reused row shows another group next).
fn empty_devices(devices: &gtk::Box) {
    while let Some(child) = devices.first_child() {
        devices.remove(&child);
    }
}

fn fill_devices(devices: &gtk::Box, rows: &DeviceRows) {
    empty_devices(devices);
    for d in &rows.devices {
        devices.append(&device_row(d, rows));
    }
}

/// One list row's widgets (a header and a card; one of them shown).
pub struct RowWidgets {
    header: gtk::Label,
    card: gtk::Box,
    icon: gtk::Image,
    title: gtk::Label,
    group: gtk::Label,
    badge: gtk::Label,
    headline: gtk::Label,
    /// The headline's whole sentence, for its tooltip (asked for when shown: setting a
    /// tooltip's text makes GTK look for the pointer, a round trip to the X server, on every
    /// row bound). A tooltip open while its row is bound again keeps the old sentence until
    /// the pointer moves.
    headline_text: Rc<RefCell<String>>,
    expander: gtk::Expander,
    devices: gtk::Box,
    why: gtk::Button,
    assign: gtk::Button,
    id: Rc<Cell<u32>>,
    /// What the device rows will show once the expander opens (made when `devices` is empty).
    rows: Rc<RefCell<Option<DeviceRows>>>,
    tx: Rc<RefCell<Option<Emit>>>,
    /// While binding, the expander's notify must not report a change of the person's.
    binding: Rc<Cell<bool>>,
}

const STATE_CLASSES: [&str; 5] = [
    "state-available",
    "state-in-use",
    "state-assigned",
    "state-host-critical",
    "state-pending",
];

impl RelmGridItem for RowItem {
    type Root = gtk::Box;
    type Widgets = RowWidgets;

    fn setup(_item: &gtk::ListItem) -> (gtk::Box, RowWidgets) {
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let header = gtk::Label::new(None);
        header.set_xalign(0.0);
        header.set_ellipsize(gtk::pango::EllipsizeMode::End);
        header.set_max_width_chars(40);
        header.add_css_class("section");
        root.append(&header);

        let card = gtk::Box::new(gtk::Orientation::Vertical, 4);
        card.add_css_class("card");
        card.set_focusable(true);
        let top = gtk::Box::new(gtk::Orientation::Horizontal, 8);
        let icon = gtk::Image::new();
        icon.set_pixel_size(24);
        let title = gtk::Label::new(None);
        title.add_css_class("heading");
        title.set_xalign(0.0);
        title.set_hexpand(true);
        title.set_ellipsize(gtk::pango::EllipsizeMode::End);
        // GTK 4.8's grid view takes its items' natural width as its minimum: bounded here (a
        // wider pane still shows the whole title), so a narrow window is not held wide.
        title.set_max_width_chars(20);
        let group = gtk::Label::new(None);
        group.add_css_class("dim-label");
        let badge = gtk::Label::new(None);
        badge.add_css_class("badge");
        let why = gtk::Button::with_label(&tr("Why?"));
        why.add_css_class("flat");
        let assign = gtk::Button::with_label(&tr("Assign to…"));
        assign.add_css_class("flat");
        top.append(&icon);
        top.append(&title);
        top.append(&group);
        top.append(&badge);
        card.append(&top);
        // One line, ellipsized, the whole sentence in its tooltip and in "Why?": a wrapping
        // label is measured again for every width, for every row the list keeps alive. The
        // buttons share its line, so a card stays narrow enough for a narrow window.
        let second = gtk::Box::new(gtk::Orientation::Horizontal, 4);
        let headline = gtk::Label::new(None);
        headline.set_ellipsize(gtk::pango::EllipsizeMode::End);
        headline.set_single_line_mode(true);
        headline.set_xalign(0.0);
        headline.set_hexpand(true);
        headline.set_max_width_chars(30);
        headline.add_css_class("headline");
        let headline_text: Rc<RefCell<String>> = Rc::default();
        headline.set_has_tooltip(true);
        {
            let text = headline_text.clone();
            headline.connect_query_tooltip(move |_, _, _, _, tip| {
                let text = text.borrow();
                if text.is_empty() {
                    return false;
                }
                tip.set_text(Some(&text));
                true
            });
        }
        second.append(&headline);
        second.append(&why);
        second.append(&assign);
        card.append(&second);
        let expander = gtk::Expander::new(None);
        let devices = gtk::Box::new(gtk::Orientation::Vertical, 2);
        expander.set_child(Some(&devices));
        card.append(&expander);
        root.append(&card);

        let id = Rc::new(Cell::new(0u32));
        let tx: Rc<RefCell<Option<Emit>>> = Rc::new(RefCell::new(None));
        let binding = Rc::new(Cell::new(false));
        let rows: Rc<RefCell<Option<DeviceRows>>> = Rc::new(RefCell::new(None));
        // The card is the drag source; what travels is the group number.
        let drag = gtk::DragSource::new();
        drag.set_actions(gdk::DragAction::COPY);
        {
            let id = id.clone();
            drag.connect_prepare(move |_, _, _| {
                Some(gdk::ContentProvider::for_value(&id.get().to_value()))
            });
        }
        card.add_controller(drag);
        // The context menu by pointer (the keyboard's Shift+F10 / Menu key is the list's).
        let click = gtk::GestureClick::new();
        click.set_button(gdk::BUTTON_SECONDARY);
        {
            let (id, tx) = (id.clone(), tx.clone());
            click.connect_pressed(move |gesture, _, x, y| {
                gesture.set_state(gtk::EventSequenceState::Claimed);
                if let Some(t) = tx.borrow().as_ref() {
                    t(CardMsg::Menu(GroupId(id.get()), Some((x, y))));
                }
            });
        }
        card.add_controller(click);

        {
            let (id, tx) = (id.clone(), tx.clone());
            why.connect_clicked(move |_| {
                if let Some(t) = tx.borrow().as_ref() {
                    t(CardMsg::Why(GroupId(id.get())));
                }
            });
        }
        {
            let (id, tx) = (id.clone(), tx.clone());
            assign.connect_clicked(move |_| {
                if let Some(t) = tx.borrow().as_ref() {
                    t(CardMsg::Choose(GroupId(id.get())));
                }
            });
        }
        {
            let (id, tx, binding) = (id.clone(), tx.clone(), binding.clone());
            let (rows, devices) = (rows.clone(), devices.clone());
            expander.connect_expanded_notify(move |e| {
                if e.is_expanded() && devices.first_child().is_none() {
                    if let Some(r) = rows.borrow().as_ref() {
                        fill_devices(&devices, r);
                    }
                }
                if binding.get() {
                    return;
                }
                if let Some(t) = tx.borrow().as_ref() {
                    t(CardMsg::Expanded(GroupId(id.get()), e.is_expanded()));
                }
            });
        }
        (
            root,
            RowWidgets {
                header,
                card,
                icon,
                title,
                group,
                badge,
                headline,
                headline_text,
                expander,
                devices,
                why,
                assign,
                id,
                tx,
                binding,
                rows,
            },
        )
    }

    fn bind(&mut self, w: &mut RowWidgets, root: &mut gtk::Box) {
        w.binding.set(true);
        if let Some(h) = &self.header {
            w.header.set_label(h);
            if let Some(row) = root.parent() {
                accessible_label(&row, h);
            }
            w.header.set_visible(true);
            w.card.set_visible(false);
            w.binding.set(false);
            return;
        }
        w.header.set_visible(false);
        w.card.set_visible(true);
        // The book is borrowed for this one lookup: binding never changes the list's model.
        let Some(c) = self
            .group
            .as_ref()
            .and_then(|(g, book)| book.borrow_mut().card(*g))
        else {
            // No host to make it from (nothing is listed then): an empty row that names and
            // sends nothing.
            w.card.set_visible(false);
            w.id.set(0);
            *w.tx.borrow_mut() = None;
            *w.rows.borrow_mut() = None;
            empty_devices(&w.devices);
            if let Some(row) = root.parent() {
                accessible_label(&row, "");
            }
            w.binding.set(false);
            return;
        };
        w.id.set(c.group.0);
        *w.tx.borrow_mut() = self.tx.clone();
        if let Some(r) = &self.registry {
            registry::enter(&r.cards, c.group.0, &w.card);
            registry::enter(&r.expanders, c.group.0, &w.expander);
            registry::enter(&r.why_buttons, c.group.0, &w.why);
            registry::enter(&r.badges, c.group.0, &w.badge);
        }
        w.title.set_label(&c.title);
        w.group
            .set_label(&trf("group {id}", &[("id", &c.group.to_string())]));
        w.badge.set_label(&c.badge);
        for cls in STATE_CLASSES {
            w.badge.remove_css_class(cls);
        }
        w.badge.add_css_class(if c.pending {
            "state-pending"
        } else {
            match c.state {
                passage_core::explain::State::Available => "state-available",
                passage_core::explain::State::InUse => "state-in-use",
                passage_core::explain::State::Assigned => "state-assigned",
                passage_core::explain::State::HostCritical => "state-host-critical",
            }
        });
        let kind = c.devices.iter().find(|d| d.assignable).map(|d| d.kind);
        w.icon.set_icon_name(Some(
            kind.map(|k| k.icon())
                .unwrap_or("network-workgroup-symbolic"),
        ));
        w.headline.set_label(c.headline.as_deref().unwrap_or(""));
        c.headline
            .as_deref()
            .unwrap_or("")
            .clone_into(&mut w.headline_text.borrow_mut());
        let said = trf(
            "Group {id}: {title}, {state}",
            &[
                ("id", &c.group.to_string()),
                ("title", &c.title),
                ("state", &c.badge),
            ],
        );
        accessible_label(&w.card, &said);
        // The arrow keys focus the list's own row widget, which GTK 4.8 names after its type
        // ("table cell"): it says the card's name instead.
        if let Some(row) = root.parent() {
            accessible_label(&row, &said);
        }
        // Ten cards' buttons must not read as ten identical "Why?": each names its group.
        let id = c.group.to_string();
        accessible_label(
            &w.why,
            &trf(
                "Why? — group {id}, {title}",
                &[("id", &id), ("title", &c.title)],
            ),
        );
        accessible_label(
            &w.assign,
            &trf(
                "Assign group {id}, {title}, to a guest…",
                &[("id", &id), ("title", &c.title)],
            ),
        );
        let devices = match c.devices.len() {
            1 => tr("1 device"),
            n => trf("{n} devices", &[("n", &n.to_string())]),
        };
        accessible_label(
            &w.expander,
            &trf(
                "Devices of group {id}: {devices}",
                &[("id", &id), ("devices", &devices)],
            ),
        );
        w.expander.set_label(Some(&devices));
        // The device rows of this card replace the last card's: now if it is open, else when
        // it opens (the expander's handler makes them).
        let rows = DeviceRows {
            group: c.group,
            devices: c.devices.clone(),
            planned: c.planned_for.is_some(),
            tx: self.tx.clone(),
            registry: self.registry.clone(),
        };
        if self.expanded {
            fill_devices(&w.devices, &rows);
        } else {
            empty_devices(&w.devices);
        }
        *w.rows.borrow_mut() = Some(rows);
        w.expander.set_expanded(self.expanded);
        w.binding.set(false);
    }

    fn unbind(&mut self, w: &mut RowWidgets, _root: &mut gtk::Box) {
        *w.tx.borrow_mut() = None;
        // Forget this row's widgets unless another row has taken the group's entry since.
        if let (Some(r), Some(g)) = (&self.registry, self.group()) {
            let id = g.0;
            if r.cards.borrow().get(&id).and_then(|x| x.upgrade()).as_ref() == Some(&w.card) {
                r.cards.borrow_mut().remove(&id);
                r.expanders.borrow_mut().remove(&id);
                r.why_buttons.borrow_mut().remove(&id);
                r.badges.borrow_mut().remove(&id);
            }
        }
    }
}

fn device_row(d: &DeviceRow, rows: &DeviceRows) -> gtk::Box {
    let planned = rows.planned;
    let row = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    row.add_css_class("device");
    let icon = gtk::Image::from_icon_name(d.kind.icon());
    row.append(&icon);
    let text = format!(
        "{}  {}  {}",
        d.address,
        d.name,
        d.driver.as_deref().unwrap_or("—")
    );
    let label = gtk::Label::new(Some(&text));
    label.set_xalign(0.0);
    label.set_hexpand(true);
    label.set_ellipsize(gtk::pango::EllipsizeMode::Middle);
    row.append(&label);
    if !d.assignable {
        let l = gtk::Label::new(Some(&tr("stays with the host")));
        l.add_css_class("dim-label");
        row.append(&l);
        return row;
    }
    let visible = gtk::Switch::new();
    visible.set_active(d.visible.unwrap_or(true));
    visible.set_sensitive(planned);
    visible.set_valign(gtk::Align::Center);
    visible.set_tooltip_text(Some(&tr(
        "Visible to the guest (hidden devices stay claimed with their group)",
    )));
    accessible_label(
        &visible,
        &trf(
            "{device} of group {id} visible to the guest",
            &[
                ("device", &d.address.to_string()),
                ("id", &rows.group.to_string()),
            ],
        ),
    );
    let held = gtk::Label::new(Some(&tr("held")));
    held.add_css_class("dim-label");
    held.set_visible(d.visible == Some(false));
    row.append(&held);
    row.append(&visible);
    let addr = gtk::Entry::new();
    addr.set_width_chars(8);
    addr.set_max_length(8);
    addr.set_sensitive(planned && d.visible != Some(false));
    if let Some(a) = d.chosen_address {
        addr.set_text(&a.to_string());
    }
    addr.set_placeholder_text(Some(
        &d.guest_address
            .map(|a| trf("{at} (auto)", &[("at", &a.to_string())]))
            .unwrap_or_else(|| tr("auto")),
    ));
    addr.set_tooltip_text(Some(&tr(
        "Guest PCI address BB:SS.F; empty lets Passage place it",
    )));
    accessible_label(
        &addr,
        &trf(
            "Guest address of {device} of group {id}",
            &[
                ("device", &d.address.to_string()),
                ("id", &rows.group.to_string()),
            ],
        ),
    );
    row.append(&addr);
    if let Some(r) = &rows.registry {
        registry::enter(&r.addresses, d.address.to_string(), &addr);
    }
    if let Some(tx) = rows.tx.clone() {
        let a = d.address;
        let t = tx.clone();
        visible.connect_state_set(move |_, on| {
            t(CardMsg::SetVisible(a, on));
            glib::Propagation::Proceed
        });
        addr.connect_activate(move |e| tx(CardMsg::SetAddress(a, e.text().to_string())));
    }
    row
}
