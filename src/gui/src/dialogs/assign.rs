//! "Assign group N to…": one button per guest (the keyboard and menu path of a drop).

use gtk::prelude::*;
use passage_core::i18n::{tr, trf};
use passage_core::GroupId;
use relm4::prelude::*;

/// The chooser; its buttons are fixed when it opens.
pub struct AssignDialog;

/// What the chooser offers.
pub struct AssignInit {
    /// The main window (the dialog stays above it).
    pub parent: gtk::Window,
    /// The group to give.
    pub group: GroupId,
    /// The group's title, as its card has it.
    pub title: String,
    /// Every guest it can go to, in the guest pane's order.
    pub guests: Vec<String>,
}

/// The person's choice.
#[derive(Debug)]
pub enum AssignOutput {
    /// Give the group to this guest.
    Assign {
        /// The group.
        group: GroupId,
        /// The guest chosen.
        guest: String,
    },
}

#[relm4::component(pub)]
impl SimpleComponent for AssignDialog {
    type Init = AssignInit;
    type Input = ();
    type Output = AssignOutput;

    view! {
        #[root]
        #[name = "window"]
        gtk::Window {
            set_title: Some(&tr("Assign to…")),
            set_transient_for: Some(&init.parent),
            set_modal: true,
            set_default_size: (360, 120),
            gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_spacing: 6,
                set_margin_top: 12,
                set_margin_bottom: 12,
                set_margin_start: 12,
                set_margin_end: 12,
                gtk::Label {
                    set_label: &trf(
                        "Give group {id} ({title}) to:",
                        &[("id", &init.group.to_string()), ("title", &init.title)],
                    ),
                    set_wrap: true,
                },
                gtk::Label {
                    set_label: &tr("No guests yet: add one with passagectl guests add NAME, or define one in libvirt."),
                    set_visible: init.guests.is_empty(),
                },
                #[name = "choices"]
                gtk::Box {
                    set_orientation: gtk::Orientation::Vertical,
                    set_spacing: 6,
                },
                gtk::Button {
                    set_label: &tr("Close"),
                    connect_clicked[window] => move |_| window.close(),
                },
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let widgets = view_output!();
        for name in &init.guests {
            let btn = gtk::Button::with_label(name);
            let (s, n, w, g) = (sender.clone(), name.clone(), root.clone(), init.group);
            btn.connect_clicked(move |_| {
                let _ = s.output(AssignOutput::Assign {
                    group: g,
                    guest: n.clone(),
                });
                w.close();
            });
            widgets.choices.append(&btn);
        }
        super::close_on_escape(&root);
        root.present();
        ComponentParts {
            model: AssignDialog,
            widgets,
        }
    }
}
