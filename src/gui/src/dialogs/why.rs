//! "Why?": what stands in the way of giving a group away, why its devices are together, what
//! the host loses.

use adw::prelude::*;
use gtk::glib;
use passage_core::explain::Reason;
use passage_core::i18n::{tr, trf};
use passage_core::view::Why;
use passage_core::GroupId;
use relm4::prelude::*;

/// The window; everything it says is fixed when it opens.
pub struct WhyDialog;

/// What the window explains.
pub struct WhyInit {
    /// The main window (the dialog stays above it).
    pub parent: gtk::Window,
    /// The group asked about.
    pub group: GroupId,
    /// The library's answer.
    pub why: Why,
}

#[relm4::component(pub)]
impl SimpleComponent for WhyDialog {
    type Init = WhyInit;
    type Input = ();
    type Output = ();

    view! {
        #[root]
        #[name = "window"]
        adw::Window {
            set_title: Some(&trf("Why? — group {id}", &[("id", &init.group.to_string())])),
            set_transient_for: Some(&init.parent),
            set_modal: true,
            set_default_size: (640, 520),
            #[wrap(Some)]
            set_content = &gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_spacing: 6,
                adw::HeaderBar {
                    #[wrap(Some)]
                    set_title_widget = &adw::WindowTitle {
                        set_title: &tr("Why?"),
                        set_subtitle: &trf("Group {id}", &[("id", &init.group.to_string())]),
                    },
                },
                gtk::ScrolledWindow {
                    set_vexpand: true,
                    gtk::Label {
                        set_markup: &why_markup(init.group, &init.why),
                        set_wrap: true,
                        set_xalign: 0.0,
                        set_yalign: 0.0,
                        set_selectable: true,
                        set_margin_top: 12,
                        set_margin_start: 12,
                        set_margin_end: 12,
                    },
                },
                #[name = "close"]
                gtk::Button {
                    set_label: &tr("Close"),
                    set_margin_bottom: 8,
                    set_halign: gtk::Align::End,
                    set_margin_end: 12,
                    connect_clicked[window] => move |_| window.close(),
                },
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        _sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let widgets = view_output!();
        super::close_on_escape(root.upcast_ref());
        root.present();
        // Focus on Close, not in the selectable text (which would select all of it).
        widgets.close.grab_focus();
        ComponentParts {
            model: WhyDialog,
            widgets,
        }
    }
}

fn reason_markup(r: &Reason) -> String {
    let mut s = format!("• {}", glib::markup_escape_text(&r.message));
    if let Some(rem) = &r.remedy {
        s.push_str(&format!("\n   → <i>{}</i>", glib::markup_escape_text(rem)));
    }
    s
}

/// The window's text (Pango markup): the title and state, then each non-empty section.
pub fn why_markup(g: GroupId, w: &Why) -> String {
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
    m
}
