//! The frame around the host list: "Reading…" while the host is read, and the summary of the
//! host and the plan below it, redrawn with every change. The notices are above the whole
//! window's content (`notices::NoticeBar`); what an edit says is a toast (`toasts`).

use crate::registry::{self, Registry};
use gtk::prelude::*;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use relm4::prelude::*;

/// The loading line and the summary.
pub struct Status {
    loading: bool,
    summary: String,
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
    /// Another machine (or this one again) is being read: "Reading…" again.
    Reading,
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
            loading: true,
            summary: String::new(),
        };
        let widgets = view_output!();
        registry::enter(&init.registry.labels, "summary".into(), &widgets.summary);
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: StatusInput, _sender: ComponentSender<Self>) {
        match msg {
            StatusInput::Loaded => self.loading = false,
            StatusInput::Reading => self.loading = true,
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
        let source =
            passage_core::demo::Source::open(Some(passage_core::demo::DemoHost::Workstation), None)
                .expect("the demo host");
        let host = passage_core::scan::scan(source.root()).expect("the demo host scans");
        let plan = passage_core::demo::plan().expect("the demo plan");
        let line = summary_line(&host, &plan);
        assert_eq!(
            line,
            format!("{} groups on this host · 3 in the plan", host.groups.len())
        );
    }
}
