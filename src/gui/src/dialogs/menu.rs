//! A card's context menu: the pointer's and the keyboard's way to everything a card offers.

use crate::registry::{self, Registry};
use gtk::glib;
use gtk::prelude::*;
use passage_core::i18n::{tr, trf};
use passage_core::GroupId;
use std::rc::Rc;

/// What a person chose in a card's menu.
#[derive(Debug)]
pub enum MenuChoice {
    /// Give the group to a guest.
    Assign {
        /// The card's group.
        group: GroupId,
        /// The guest chosen.
        guest: String,
    },
    /// "Why?" for the group.
    Why(GroupId),
    /// Take the group out of the plan.
    Unassign(GroupId),
}

/// A card's context menu (right click, Shift+F10 or the Menu key): assign the group to each
/// guest, "Why?", and take it out of the plan when the plan holds it. The menu's buttons are
/// named in `buttons` (`menu-assign:GUEST`, `menu-why`, `menu-unassign`) for the probe.
pub fn card_menu(
    card: &gtk::Box,
    g: GroupId,
    guests: &[String],
    planned_for: Option<&str>,
    at: Option<(f64, f64)>,
    choose: Rc<dyn Fn(MenuChoice)>,
    buttons: &Registry,
) -> gtk::Popover {
    let pop = gtk::Popover::new();
    pop.set_parent(card);
    crate::a11y::accessible_label(&pop, &trf("Group {id}", &[("id", &g.to_string())]));
    pop.set_position(gtk::PositionType::Bottom);
    if let Some((x, y)) = at {
        pop.set_pointing_to(Some(&gtk::gdk::Rectangle::new(x as i32, y as i32, 1, 1)));
    }
    let b = gtk::Box::new(gtk::Orientation::Vertical, 0);
    let entry = |label: &str, key: String, choice: MenuChoice| {
        let button = gtk::Button::with_label(label);
        button.add_css_class("flat");
        if let Some(l) = button.child().and_downcast::<gtk::Label>() {
            l.set_xalign(0.0);
        }
        let (p, t) = (pop.clone(), choose.clone());
        let choice = std::cell::RefCell::new(Some(choice));
        button.connect_clicked(move |_| {
            p.popdown();
            if let Some(c) = choice.borrow_mut().take() {
                t(c);
            }
        });
        registry::enter(&buttons.buttons, key, &button);
        button
    };
    for guest in guests.iter().filter(|n| Some(n.as_str()) != planned_for) {
        b.append(&entry(
            &trf("Assign to {guest}", &[("guest", guest)]),
            format!("menu-assign:{guest}"),
            MenuChoice::Assign {
                group: g,
                guest: guest.clone(),
            },
        ));
    }
    if guests.is_empty() {
        let none = gtk::Label::new(Some(&tr(
            "No guests yet: add a libvirt domain or a local guest profile.",
        )));
        none.add_css_class("dim-label");
        b.append(&none);
    }
    b.append(&gtk::Separator::new(gtk::Orientation::Horizontal));
    b.append(&entry(&tr("Why?"), "menu-why".into(), MenuChoice::Why(g)));
    if let Some(guest) = planned_for {
        b.append(&entry(
            &trf("Take out of {guest}'s plan", &[("guest", guest)]),
            "menu-unassign".into(),
            MenuChoice::Unassign(g),
        ));
    }
    pop.set_child(Some(&b));
    // The card's row may be reused for another group: the menu goes with its closing.
    pop.connect_closed(|p| {
        let p = p.clone();
        glib::idle_add_local_once(move || p.unparent());
    });
    pop.popup();
    pop
}
