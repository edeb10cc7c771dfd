//! The app's secondary windows: a card's context menu, "Assign to…", "Why?", Export (preview,
//! copy, save) and the progress of Apply. GTK 4.8: plain transient windows and `FileChooserNative` (no 4.10
//! dialogs).

use super::Msg;
use gtk::glib;
use gtk::prelude::*;
use passage_core::explain::Reason;
use passage_core::export::{self, Format};
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::Plan;
use passage_core::view::Why;
use passage_core::GroupId;

fn window(parent: &gtk::ApplicationWindow, title: &str, w: i32, h: i32) -> gtk::Window {
    let win = gtk::Window::builder()
        .title(title)
        .transient_for(parent)
        .modal(true)
        .default_width(w)
        .default_height(h)
        .build();
    // Escape closes, as in every GNOME dialog.
    let keys = gtk::EventControllerKey::new();
    let w2 = win.clone();
    keys.connect_key_pressed(move |_, key, _, _| {
        if key == gtk::gdk::Key::Escape {
            w2.close();
            glib::Propagation::Stop
        } else {
            glib::Propagation::Proceed
        }
    });
    win.add_controller(keys);
    win
}

fn close_button(win: &gtk::Window) -> gtk::Button {
    let b = gtk::Button::with_label(&tr("Close"));
    let w = win.clone();
    b.connect_clicked(move |_| w.close());
    b
}

/// "Assign group N to…": one button per guest (the keyboard and menu path of a drop).
pub fn choose_guest(
    parent: &gtk::ApplicationWindow,
    g: GroupId,
    title: &str,
    guests: &[String],
    tx: relm4::Sender<Msg>,
) -> gtk::Window {
    let win = window(parent, &tr("Assign to…"), 360, 120);
    let b = gtk::Box::new(gtk::Orientation::Vertical, 6);
    b.set_margin_top(12);
    b.set_margin_bottom(12);
    b.set_margin_start(12);
    b.set_margin_end(12);
    let l = gtk::Label::new(Some(&trf(
        "Give group {id} ({title}) to:",
        &[("id", &g.to_string()), ("title", title)],
    )));
    l.set_wrap(true);
    b.append(&l);
    if guests.is_empty() {
        b.append(&gtk::Label::new(Some(&tr(
            "No guests yet: add one with passagectl guests add NAME, or define one in libvirt.",
        ))));
    }
    for name in guests {
        let btn = gtk::Button::with_label(name);
        let (t, n, w) = (tx.clone(), name.clone(), win.clone());
        btn.connect_clicked(move |_| {
            t.emit(Msg::Assign {
                group: g,
                guest: n.clone(),
            });
            w.close();
        });
        b.append(&btn);
    }
    b.append(&close_button(&win));
    win.set_child(Some(&b));
    win.present();
    win
}

fn reason_markup(r: &Reason) -> String {
    let mut s = format!("• {}", glib::markup_escape_text(&r.message));
    if let Some(rem) = &r.remedy {
        s.push_str(&format!("\n   → <i>{}</i>", glib::markup_escape_text(rem)));
    }
    s
}

/// "Why?": what stands in the way, why the group has its shape, what the host loses.
pub fn why(parent: &gtk::ApplicationWindow, g: GroupId, w: &Why) -> gtk::Window {
    let win = window(
        parent,
        &trf("Why? — group {id}", &[("id", &g.to_string())]),
        640,
        520,
    );
    let mut m = format!(
        "<big><b>{}</b></big>\n{}\n",
        glib::markup_escape_text(&w.title),
        glib::markup_escape_text(&trf(
            "Group {id} is {state}.",
            &[("id", &g.to_string()), ("state", &w.state.label())]
        ))
    );
    let section = |m: &mut String, title: &str, rs: &[Reason]| {
        if !rs.is_empty() {
            m.push_str(&format!("\n<b>{}</b>\n", glib::markup_escape_text(title)));
            for r in rs {
                m.push_str(&reason_markup(r));
                m.push('\n');
            }
        }
    };
    section(&mut m, &tr("What stands in the way"), &w.in_the_way);
    section(&mut m, &tr("Why these devices are together"), &w.shape);
    if !w.host_loses.is_empty() {
        m.push_str(&format!(
            "\n<b>{}</b>\n",
            glib::markup_escape_text(&tr("What the host loses when a guest takes this group"))
        ));
        for l in &w.host_loses {
            m.push_str(&format!("• {}\n", glib::markup_escape_text(l)));
        }
    }
    section(&mut m, &tr("Good to know"), &w.notes);
    let label = gtk::Label::new(None);
    label.set_markup(&m);
    label.set_wrap(true);
    label.set_xalign(0.0);
    label.set_yalign(0.0);
    label.set_selectable(true);
    label.set_margin_top(12);
    label.set_margin_start(12);
    label.set_margin_end(12);
    let scroll = gtk::ScrolledWindow::new();
    scroll.set_vexpand(true);
    scroll.set_child(Some(&label));
    let b = gtk::Box::new(gtk::Orientation::Vertical, 6);
    b.append(&scroll);
    let close = close_button(&win);
    close.set_margin_bottom(8);
    close.set_halign(gtk::Align::End);
    close.set_margin_end(12);
    b.append(&close);
    win.set_child(Some(&b));
    win.present();
    // Focus on Close, not in the selectable text (which would select all of it).
    close.grab_focus();
    win
}

/// Export: choose a guest and a format, see the text, copy it or save it.
pub fn export(
    parent: &gtk::ApplicationWindow,
    plan: &Plan,
    host: &Host,
) -> (gtk::Window, gtk::TextBuffer) {
    let win = window(parent, &tr("Export"), 760, 560);
    let guests: Vec<String> = plan
        .guests
        .iter()
        .filter(|g| !g.groups.is_empty())
        .map(|g| g.name.clone())
        .collect();
    let guest_refs: Vec<&str> = guests.iter().map(String::as_str).collect();
    let guest_dd = gtk::DropDown::from_strings(&guest_refs);
    super::accessible_label(&guest_dd, &tr("Guest"));
    let labels: Vec<String> = Format::ALL.iter().map(|f| f.label()).collect();
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let format_dd = gtk::DropDown::from_strings(&label_refs);
    super::accessible_label(&format_dd, &tr("Format"));
    let buffer = gtk::TextBuffer::new(None);
    let text = gtk::TextView::with_buffer(&buffer);
    text.set_monospace(true);
    text.set_editable(false);
    let notes = gtk::Label::new(None);
    notes.set_wrap(true);
    notes.set_xalign(0.0);
    notes.add_css_class("dim-label");
    let render = {
        let (plan, host, buffer, notes, guests) = (
            plan.clone(),
            host.clone(),
            buffer.clone(),
            notes.clone(),
            guests.clone(),
        );
        let (gdd, fdd) = (guest_dd.clone(), format_dd.clone());
        move || {
            let f = Format::ALL
                .get(fdd.selected() as usize)
                .copied()
                .unwrap_or(Format::Libvirt);
            let g = guests.get(gdd.selected() as usize).map(String::as_str);
            match export::export(&plan, &host, g, f, &Default::default()) {
                Ok(e) => {
                    buffer.set_text(&e.text);
                    notes.set_label(&e.notes.join("\n"));
                }
                Err(e) => {
                    buffer.set_text("");
                    notes.set_label(&e.to_string());
                }
            }
        }
    };
    render();
    let r = render.clone();
    guest_dd.connect_selected_notify(move |_| r());
    let r = render.clone();
    format_dd.connect_selected_notify(move |_| r());

    let copy = gtk::Button::with_label(&tr("Copy"));
    {
        let b = buffer.clone();
        copy.connect_clicked(move |btn| {
            let t = b.text(&b.start_iter(), &b.end_iter(), false);
            btn.clipboard().set_text(&t);
        });
    }
    let save = gtk::Button::with_label(&tr("Save…"));
    {
        let (b, w, fdd) = (buffer.clone(), win.clone(), format_dd.clone());
        save.connect_clicked(move |_| {
            let f = Format::ALL
                .get(fdd.selected() as usize)
                .copied()
                .unwrap_or(Format::Libvirt);
            let chooser = gtk::FileChooserNative::new(
                Some(&tr("Save the configuration")),
                Some(&w),
                gtk::FileChooserAction::Save,
                Some(&tr("Save")),
                Some(&tr("Cancel")),
            );
            chooser.set_current_name(&format!("passage-{}.{}", f.as_str(), f.extension()));
            let b = b.clone();
            chooser.connect_response(move |c, resp| {
                if resp == gtk::ResponseType::Accept {
                    if let Some(path) = c.file().and_then(|f| f.path()) {
                        let t = b.text(&b.start_iter(), &b.end_iter(), false);
                        let _ = passage_core::store::write_atomic(&path, t.as_bytes());
                    }
                }
                c.destroy();
            });
            chooser.show();
        });
    }
    let top = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    top.append(&gtk::Label::new(Some(&tr("Guest"))));
    top.append(&guest_dd);
    top.append(&gtk::Label::new(Some(&tr("Format"))));
    top.append(&format_dd);
    let spacer = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    spacer.set_hexpand(true);
    top.append(&spacer);
    top.append(&copy);
    top.append(&save);
    top.append(&close_button(&win));
    let scroll = gtk::ScrolledWindow::new();
    scroll.set_vexpand(true);
    scroll.set_child(Some(&text));
    let b = gtk::Box::new(gtk::Orientation::Vertical, 8);
    top.set_margin_top(8);
    top.set_margin_start(8);
    top.set_margin_end(8);
    b.append(&top);
    b.append(&scroll);
    notes.set_margin_start(8);
    notes.set_margin_bottom(8);
    b.append(&notes);
    win.set_child(Some(&b));
    win.present();
    (win, buffer)
}

/// Apply's progress: the planned steps first, then each result as it comes.
pub fn progress(
    parent: &gtk::ApplicationWindow,
    steps: &[passage_core::apply::Step],
) -> (gtk::Window, gtk::TextBuffer) {
    let win = window(parent, &tr("Apply"), 560, 360);
    let buffer = gtk::TextBuffer::new(None);
    let mut t = tr("Passage will:\n");
    for s in steps {
        t.push_str(&format!("  · {}\n", s.describe()));
    }
    t.push_str(&tr("The helper asks for the administrator's password.\n\n"));
    buffer.set_text(&t);
    let text = gtk::TextView::with_buffer(&buffer);
    text.set_editable(false);
    text.set_wrap_mode(gtk::WrapMode::Word);
    let scroll = gtk::ScrolledWindow::new();
    scroll.set_vexpand(true);
    scroll.set_child(Some(&text));
    let b = gtk::Box::new(gtk::Orientation::Vertical, 6);
    b.append(&scroll);
    b.append(&close_button(&win));
    win.set_child(Some(&b));
    win.present();
    (win, buffer)
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
    tx: relm4::Sender<Msg>,
    buttons: &super::cards::Registry,
) -> gtk::Popover {
    let pop = gtk::Popover::new();
    pop.set_parent(card);
    pop.set_position(gtk::PositionType::Bottom);
    if let Some((x, y)) = at {
        pop.set_pointing_to(Some(&gtk::gdk::Rectangle::new(x as i32, y as i32, 1, 1)));
    }
    let b = gtk::Box::new(gtk::Orientation::Vertical, 0);
    let entry = |label: &str, key: String, msg: Msg| {
        let button = gtk::Button::with_label(label);
        button.add_css_class("flat");
        if let Some(l) = button.child().and_downcast::<gtk::Label>() {
            l.set_xalign(0.0);
        }
        let (p, t) = (pop.clone(), tx.clone());
        let msg = std::cell::RefCell::new(Some(msg));
        button.connect_clicked(move |_| {
            p.popdown();
            if let Some(m) = msg.borrow_mut().take() {
                t.emit(m);
            }
        });
        buttons.buttons.borrow_mut().insert(key, button.downgrade());
        button
    };
    for guest in guests.iter().filter(|n| Some(n.as_str()) != planned_for) {
        b.append(&entry(
            &trf("Assign to {guest}", &[("guest", guest)]),
            format!("menu-assign:{guest}"),
            Msg::Assign {
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
    b.append(&entry(&tr("Why?"), "menu-why".into(), Msg::Why(g)));
    if let Some(guest) = planned_for {
        b.append(&entry(
            &trf("Take out of {guest}'s plan", &[("guest", guest)]),
            "menu-unassign".into(),
            Msg::Unassign(g),
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
