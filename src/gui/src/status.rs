//! The frame around the host list: the notices above it (the IOMMU off, what could not be
//! read, each in words with what to do and the raw error behind "Details"), "Reading…" while
//! the host is read, and the summary of the host and the plan below it, redrawn with every
//! change. What an edit says is a toast (`toasts`), not a line here.

use crate::notices::{self, Notice};
use crate::registry::{self, Registry};
use gtk::prelude::*;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use relm4::prelude::*;

/// The notices, the loading line and the summary.
pub struct Status {
    notices: Vec<Notice>,
    /// Where the notices are drawn (rebuilt when they change).
    banner: gtk::Box,
    loading: bool,
    summary: String,
    registry: Registry,
}

/// What the frame holds: the host list.
pub struct StatusInit {
    /// The widget between the banner and the status lines.
    pub content: gtk::Widget,
    /// Where the probe finds the banner and the status lines.
    pub registry: Registry,
}

/// What the app tells the frame.
#[derive(Debug)]
pub enum StatusInput {
    /// The host was read (or could not be): "Reading…" goes.
    Loaded,
    /// The notices (none hides the banner).
    Notices(Vec<Notice>),
    /// The host and the plan in a line, after every change.
    Summary(String),
}

#[relm4::component(pub)]
impl SimpleComponent for Status {
    type Init = StatusInit;
    type Input = StatusInput;
    type Output = ();

    view! {
        gtk::Box {
            set_orientation: gtk::Orientation::Vertical,

            #[local_ref]
            banner -> gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_spacing: 8,
                add_css_class: "banner",
                #[watch]
                set_visible: !model.notices.is_empty(),
            },
            gtk::Label {
                set_label: &tr("Reading this host's devices…"),
                #[watch]
                set_visible: model.loading,
            },
            append: &init.content,
            #[name = "summary"]
            gtk::Label {
                set_xalign: 0.0,
                set_wrap: true,
                add_css_class: "status",
                #[watch]
                set_label: &model.summary,
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        _sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let model = Status {
            notices: Vec::new(),
            banner: gtk::Box::default(),
            loading: true,
            summary: String::new(),
            registry: init.registry.clone(),
        };
        let banner = &model.banner;
        let widgets = view_output!();
        registry::enter(&init.registry.labels, "summary".into(), &widgets.summary);
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: StatusInput, _sender: ComponentSender<Self>) {
        match msg {
            StatusInput::Loaded => self.loading = false,
            StatusInput::Notices(n) => {
                if n != self.notices {
                    while let Some(c) = self.banner.first_child() {
                        self.banner.remove(&c);
                    }
                    for notice in &n {
                        self.banner.append(&notices::notice_widget(notice));
                    }
                    self.registry
                        .texts
                        .borrow_mut()
                        .insert("banner".into(), notices::banner_text(&n));
                    self.notices = n;
                }
            }
            StatusInput::Summary(text) => self.summary = text,
        }
    }
}

/// The summary line: the problems to solve before Apply, or the host's groups and the plan's.
pub fn summary_line(host: &Host, plan: &Plan) -> String {
    let errors = plan::check(plan, host)
        .iter()
        .filter(|p| p.severity == plan::Severity::Error)
        .count();
    if errors > 0 {
        trf(
            "The plan has {n} problems to solve before Apply.",
            &[("n", &errors.to_string())],
        )
    } else {
        trf(
            "{groups} groups on this host · {planned} in the plan",
            &[
                ("groups", &host.groups.len().to_string()),
                (
                    "planned",
                    &plan
                        .guests
                        .iter()
                        .map(|g| g.groups.len())
                        .sum::<usize>()
                        .to_string(),
                ),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_groups_and_planned_groups() {
        let source = passage_core::demo::Source::open(true, None).expect("the demo host");
        let host = passage_core::scan::scan(source.root()).expect("the demo host scans");
        let plan = passage_core::demo::plan().expect("the demo plan");
        let line = summary_line(&host, &plan);
        assert_eq!(
            line,
            format!("{} groups on this host · 3 in the plan", host.groups.len())
        );
    }
}
