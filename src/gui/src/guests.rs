//! The guest pane: every guest a group can be given to, each a drop target listing the groups
//! it holds and, after a refused drop, why.

use crate::a11y::accessible_label;
use crate::registry::{self, Registry};
use adw::prelude::*;
use gtk::{gdk, glib};
use passage_core::explain;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use passage_core::GroupId;
use relm4::prelude::*;
use std::collections::BTreeMap;

/// The pane; its rows are redrawn whole from [`GuestEntry`] values.
pub struct GuestPane {
    list: gtk::ListBox,
    /// The list, or a page saying why there is no guest ("No guests yet", "No system bus").
    stack: gtk::Stack,
    registry: Registry,
}

/// One guest as the pane shows it.
#[derive(Debug, Clone)]
pub struct GuestEntry {
    /// The guest (from the plan, or one known but not planned yet).
    pub guest: plan::Guest,
    /// The groups the plan gives it, with their titles.
    pub held: Vec<(GroupId, String)>,
    /// Why the last drop on it was refused, until one succeeds.
    pub refusal: Option<String>,
    /// The plan has it (its lifecycle can be chosen); else it is only known.
    pub in_plan: bool,
}

/// What the pane starts with.
pub struct GuestsInit {
    /// Where the probe finds the guests' rows.
    pub registry: Registry,
}

/// What the app tells the pane.
#[derive(Debug)]
pub enum GuestsInput {
    /// Draw these guests (in this order); with none, a page that says why.
    Show {
        /// The guests.
        entries: Vec<GuestEntry>,
        /// There is no system bus (so no libvirt guests): the page says so.
        no_bus: bool,
    },
}

/// What a person did on the pane.
#[derive(Debug)]
pub enum GuestsOutput {
    /// A group dropped on a guest.
    Assign {
        /// The group dragged.
        group: GroupId,
        /// The guest it was dropped on.
        guest: String,
    },
    /// A group's "take out of the plan" button.
    Unassign(GroupId),
    /// A guest's groups claimed while it runs, or kept.
    Lifecycle(String, plan::Lifecycle),
}

#[relm4::component(pub)]
impl SimpleComponent for GuestPane {
    type Init = GuestsInit;
    type Input = GuestsInput;
    type Output = GuestsOutput;

    view! {
        gtk::Box {
            set_orientation: gtk::Orientation::Vertical,
            set_spacing: 6,
            set_margin_start: 8,
            set_margin_end: 8,
            set_margin_top: 8,
            gtk::Label {
                set_label: &tr("Guests"),
                add_css_class: "title-3",
                set_xalign: 0.0,
            },
            gtk::Label {
                set_label: &tr("Drag a group onto a guest, or press Enter on a group to choose one."),
                set_wrap: true,
                set_xalign: 0.0,
                add_css_class: "dim-label",
            },
            #[local_ref]
            stack -> gtk::Stack {
                set_vexpand: true,
                add_named[Some("list")] = &gtk::ScrolledWindow {
                    #[local_ref]
                    list -> gtk::ListBox {
                        set_selection_mode: gtk::SelectionMode::None,
                        add_css_class: "guests",
                    },
                },
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        _sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let model = GuestPane {
            list: gtk::ListBox::new(),
            stack: gtk::Stack::new(),
            registry: init.registry,
        };
        let (list, stack) = (&model.list, &model.stack);
        let widgets = view_output!();
        accessible_label(list, &tr("Guests"));
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: GuestsInput, sender: ComponentSender<Self>) {
        match msg {
            GuestsInput::Show { entries, no_bus } => {
                while let Some(row) = self.list.row_at_index(0) {
                    self.list.remove(&row);
                }
                if let Some(old) = self.stack.child_by_name("none") {
                    self.stack.remove(&old);
                }
                let page = if entries.is_empty() {
                    let none = crate::notices::no_guests_page(no_bus);
                    self.stack.add_named(&none, Some("none"));
                    self.stack.set_visible_child(&none);
                    if no_bus {
                        "no-bus"
                    } else {
                        "no-guests"
                    }
                } else {
                    self.stack.set_visible_child_name("list");
                    "list"
                };
                self.registry
                    .texts
                    .borrow_mut()
                    .insert("guests-page".into(), page.into());
                for e in &entries {
                    let row = guest_row(e, &sender);
                    registry::enter(&self.registry.guests, e.guest.name.clone(), &row);
                    self.list.append(&row);
                }
            }
        }
    }
}

/// Every guest a group can be dropped on: the plan's, then the others known.
pub fn guest_names(plan: &Plan, known: &[plan::Guest]) -> Vec<String> {
    let mut v: Vec<String> = plan.guests.iter().map(|g| g.name.clone()).collect();
    for g in known {
        if !v.contains(&g.name) {
            v.push(g.name.clone());
        }
    }
    v
}

/// A group's title as its card has it ("Group N" when the host has no such group).
pub fn title_of(host: Option<&Host>, g: GroupId) -> String {
    host.and_then(|h| h.groups.get(&g).map(|grp| explain::title(h, grp)))
        .unwrap_or_else(|| trf("Group {id}", &[("id", &g.to_string())]))
}

/// What the pane shows: each guest with the groups the plan gives it and its last refusal.
pub fn entries(
    host: Option<&Host>,
    plan: &Plan,
    known: &[plan::Guest],
    refusals: &BTreeMap<String, String>,
) -> Vec<GuestEntry> {
    guest_names(plan, known)
        .into_iter()
        .filter_map(|name| {
            let in_plan = plan.guest(&name);
            let g = in_plan.or_else(|| known.iter().find(|k| k.name == name))?;
            let held = in_plan
                .map(|g| {
                    g.groups
                        .iter()
                        .map(|p| (p.group, title_of(host, p.group)))
                        .collect()
                })
                .unwrap_or_default();
            Some(GuestEntry {
                guest: g.clone(),
                held,
                refusal: refusals.get(&name).cloned(),
                in_plan: in_plan.is_some(),
            })
        })
        .collect()
}

/// When a guest's groups are claimed: by Apply and kept, or while it runs.
fn lifecycle_choice(
    guest: &str,
    now: plan::Lifecycle,
    sender: &ComponentSender<GuestPane>,
) -> gtk::DropDown {
    const CHOICES: [plan::Lifecycle; 2] = [plan::Lifecycle::Kept, plan::Lifecycle::OnStart];
    let labels = [tr("claimed and kept"), tr("claimed while it runs")];
    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let dd = gtk::DropDown::from_strings(&refs);
    dd.set_selected(CHOICES.iter().position(|c| *c == now).unwrap_or(0) as u32);
    dd.add_css_class("flat");
    dd.set_tooltip_text(Some(&tr(
        "Kept: Apply claims the groups and they stay on vfio-pci. While it runs: libvirt's hook claims them as the guest starts and gives them back when it stops.",
    )));
    crate::a11y::label_dropdown(
        &dd,
        &trf("When {guest}'s groups are claimed", &[("guest", guest)]),
    );
    let (s, name) = (sender.clone(), guest.to_string());
    dd.connect_selected_notify(move |d| {
        if let Some(l) = CHOICES.get(d.selected() as usize) {
            if *l != now {
                let _ = s.output(GuestsOutput::Lifecycle(name.clone(), *l));
            }
        }
    });
    dd
}

/// A guest: a drop target that lists the groups it holds and, after a refused drop, why.
fn guest_row(e: &GuestEntry, sender: &ComponentSender<GuestPane>) -> gtk::ListBoxRow {
    let (g, held, refusal) = (&e.guest, &e.held, e.refusal.as_deref());
    let row = gtk::ListBoxRow::new();
    row.add_css_class("guest");
    let b = gtk::Box::new(gtk::Orientation::Vertical, 4);
    let name = gtk::Label::new(Some(&g.name));
    name.add_css_class("heading");
    name.set_xalign(0.0);
    b.append(&name);
    let info = gtk::Label::new(Some(&format!("{} · {}", g.vmm.as_str(), g.machine)));
    info.add_css_class("dim-label");
    info.set_xalign(0.0);
    let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    line.append(&info);
    if e.in_plan {
        line.append(&lifecycle_choice(&g.name, g.lifecycle, sender));
    }
    b.append(&line);
    if held.is_empty() {
        let l = gtk::Label::new(Some(&tr("Drop a group here")));
        l.add_css_class("dim-label");
        l.set_xalign(0.0);
        b.append(&l);
    }
    for (id, title) in held {
        let line = gtk::Box::new(gtk::Orientation::Horizontal, 6);
        let l = gtk::Label::new(Some(&trf(
            "group {id} · {title}",
            &[("id", &id.to_string()), ("title", title)],
        )));
        l.set_xalign(0.0);
        l.set_hexpand(true);
        l.set_ellipsize(gtk::pango::EllipsizeMode::End);
        line.append(&l);
        let remove = gtk::Button::from_icon_name("window-close-symbolic");
        remove.add_css_class("flat");
        remove.set_tooltip_text(Some(&tr("Take the group out of the plan")));
        accessible_label(
            &remove,
            &trf(
                "Take group {id} out of the plan",
                &[("id", &id.to_string())],
            ),
        );
        let (s, gid) = (sender.clone(), *id);
        remove.connect_clicked(move |_| {
            let _ = s.output(GuestsOutput::Unassign(gid));
        });
        line.append(&remove);
        b.append(&line);
    }
    if let Some(why) = refusal {
        let l = gtk::Label::new(Some(why));
        l.set_wrap(true);
        l.set_xalign(0.0);
        l.add_css_class("refusal");
        b.append(&l);
    }
    row.set_child(Some(&b));
    accessible_label(&row, &trf("Guest {name}", &[("name", &g.name)]));
    let drop = gtk::DropTarget::new(glib::Type::U32, gdk::DragAction::COPY);
    let (guest, s) = (g.name.clone(), sender.clone());
    drop.connect_drop(move |_, value, _, _| match value.get::<u32>() {
        Ok(id) => {
            let _ = s.output(GuestsOutput::Assign {
                group: GroupId(id),
                guest: guest.clone(),
            });
            true
        }
        Err(_) => false,
    });
    {
        let r = row.clone();
        drop.connect_enter(move |_, _, _| {
            r.add_css_class("drop-hover");
            gdk::DragAction::COPY
        });
        let r = row.clone();
        drop.connect_leave(move |_| r.remove_css_class("drop-hover"));
    }
    row.add_controller(drop);
    row
}
