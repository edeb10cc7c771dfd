//! Apply's progress: the planned steps first, then each result as it comes, then the outcome.

use adw::prelude::*;
use passage_core::apply::{Done, Outcome, Step};
use passage_core::i18n::{tr, trf};
use relm4::prelude::*;

/// The window and its log.
pub struct ApplyDialog {
    /// What has been said so far (the probe reads it too).
    pub buffer: gtk::TextBuffer,
}

/// What Apply will do.
pub struct ApplyInit {
    /// The main window (the dialog stays above it).
    pub parent: gtk::Window,
    /// The planned steps.
    pub steps: Vec<Step>,
    /// Why Apply cannot start (no system bus, no helper): said on a page instead of the steps.
    pub blocked: Option<passage_dbus::Unreachable>,
}

/// What Apply reports while it runs.
#[derive(Debug)]
pub enum ApplyInput {
    /// One step done (or failed).
    Done(Done),
    /// The run is over: its outcome, or why it could not start.
    Finished(Result<Outcome, String>),
}

#[relm4::component(pub)]
impl SimpleComponent for ApplyDialog {
    type Init = ApplyInit;
    type Input = ApplyInput;
    type Output = ();

    view! {
        #[root]
        #[name = "window"]
        adw::Window {
            set_title: Some(&tr("Apply")),
            set_transient_for: Some(&init.parent),
            set_modal: true,
            set_default_size: (560, 400),
            #[wrap(Some)]
            set_content = &gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_spacing: 6,
                adw::HeaderBar {
                    #[wrap(Some)]
                    set_title_widget = &adw::WindowTitle {
                        set_title: &tr("Apply"),
                    },
                },
                #[local_ref]
                blocked -> adw::Bin {
                    set_vexpand: true,
                    set_visible: init.blocked.is_some(),
                },
                gtk::ScrolledWindow {
                    set_vexpand: true,
                    set_visible: init.blocked.is_none(),
                    gtk::TextView {
                        set_buffer: Some(&model.buffer),
                        set_editable: false,
                        set_wrap_mode: gtk::WrapMode::Word,
                    },
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
        _sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let model = ApplyDialog {
            buffer: gtk::TextBuffer::new(None),
        };
        model.buffer.set_text(&plan_text(&init.steps));
        let blocked = &adw::Bin::new();
        if let Some(u) = &init.blocked {
            blocked.set_child(Some(&crate::notices::helper_page(u)));
            // What the probe reads as Apply's log: the page's words.
            let n = crate::notices::helper_notice(u);
            model.buffer.set_text(&format!("{}\n{}\n", n.title, n.body));
        }
        let widgets = view_output!();
        super::close_on_escape(root.upcast_ref());
        root.present();
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: ApplyInput, _sender: ComponentSender<Self>) {
        let text = match msg {
            ApplyInput::Done(d) => done_line(&d),
            ApplyInput::Finished(r) => outcome_text(r),
        };
        let mut end = self.buffer.end_iter();
        self.buffer.insert(&mut end, &text);
    }
}

/// What Apply will do, before it starts.
fn plan_text(steps: &[Step]) -> String {
    let mut t = tr("Passage will:\n");
    for s in steps {
        t.push_str(&format!("  · {}\n", s.describe()));
    }
    t.push_str(&tr("The helper asks for the administrator's password.\n\n"));
    t
}

/// One step's line: ✓ or ✗, the step, what the helper said.
fn done_line(d: &Done) -> String {
    let mark = if d.ok { "✓" } else { "✗" };
    format!("{mark} {}: {}\n", d.step.describe(), d.message)
}

/// The last lines: done, or not, with what was given back.
fn outcome_text(r: Result<Outcome, String>) -> String {
    match r {
        Ok(o) if o.ok() => tr("Done: the plan is applied.\n"),
        Ok(o) => {
            let mut t = tr("Not applied.\n");
            for (_, what) in o.rolled_back {
                t.push_str(&format!("↺ {what}\n"));
            }
            t
        }
        Err(e) => trf("Not applied: {why}\n", &[("why", &e)]),
    }
}
