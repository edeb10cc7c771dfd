//! The frame around the host list: the banner above it (IOMMU off, notes about what could not
//! be read), "Reading…" while the host is read, and two lines below it: what the last edit or
//! save said, kept until the next edit, and the summary of the host and the plan, redrawn with
//! every change. Two lines, so a redraw never wipes out a refusal before it is read.

use crate::registry::{self, Registry};
use gtk::prelude::*;
use passage_core::explain;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use relm4::prelude::*;

/// What the last edit or save said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// The sentence.
    pub text: String,
    /// A refusal or a failure (drawn as one), rather than news.
    pub error: bool,
}

impl Said {
    /// A sentence about something done.
    pub fn news(text: String) -> Self {
        Self { text, error: false }
    }

    /// A refusal or a failure.
    pub fn error(text: String) -> Self {
        Self { text, error: true }
    }
}

/// The banner, the loading line, the message and the summary.
pub struct Status {
    banner: String,
    loading: bool,
    summary: String,
    said: Option<Said>,
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
    /// The banner's lines (none hides it).
    Banner(String),
    /// The host and the plan in a line, after every change.
    Summary(String),
    /// An edit or a save happened: what it said, or nothing (the last message goes).
    Said(Option<Said>),
}

#[relm4::component(pub)]
impl SimpleComponent for Status {
    type Init = StatusInit;
    type Input = StatusInput;
    type Output = ();

    view! {
        gtk::Box {
            set_orientation: gtk::Orientation::Vertical,

            #[name = "banner"]
            gtk::Label {
                set_wrap: true,
                set_xalign: 0.0,
                add_css_class: "banner",
                #[watch]
                set_visible: !model.banner.is_empty(),
                #[watch]
                set_label: &model.banner,
            },
            gtk::Label {
                set_label: &tr("Reading this host's devices…"),
                #[watch]
                set_visible: model.loading,
            },
            append: &init.content,
            #[name = "message"]
            gtk::Label {
                set_xalign: 0.0,
                set_wrap: true,
                set_selectable: true,
                add_css_class: "status",
                #[watch]
                set_visible: model.said.is_some(),
                #[watch]
                set_label: model.said.as_ref().map_or("", |s| s.text.as_str()),
                #[watch]
                set_css_classes: &message_classes(model.said.as_ref()),
            },
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
            banner: String::new(),
            loading: true,
            summary: String::new(),
            said: None,
        };
        let widgets = view_output!();
        registry::enter(&init.registry.labels, "banner".into(), &widgets.banner);
        registry::enter(&init.registry.labels, "status".into(), &widgets.message);
        registry::enter(&init.registry.labels, "summary".into(), &widgets.summary);
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: StatusInput, _sender: ComponentSender<Self>) {
        match msg {
            StatusInput::Loaded => self.loading = false,
            StatusInput::Banner(text) => self.banner = text,
            StatusInput::Summary(text) => self.summary = text,
            StatusInput::Said(said) => self.said = said,
        }
    }
}

/// The message line's style classes: a refusal reads as one.
fn message_classes(said: Option<&Said>) -> Vec<&'static str> {
    match said {
        Some(s) if s.error => vec!["status", "refusal"],
        _ => vec!["status"],
    }
}

/// The banner's text: why the IOMMU is off (with the remedy), then the notes about what could
/// not be read; empty when all is well.
pub fn banner_text(host: &Host, notes: &[String]) -> String {
    let iommu = explain::iommu(host);
    let mut banner: Vec<String> = Vec::new();
    if !iommu.enabled {
        for r in &iommu.reasons {
            banner.push(match &r.remedy {
                Some(rem) => format!("{} {rem}", r.message),
                None => r.message.clone(),
            });
        }
    }
    banner.extend(notes.iter().cloned());
    banner.join("\n")
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

    fn demo() -> (Host, Plan) {
        let source = passage_core::demo::Source::open(true, None).expect("the demo host");
        let host = passage_core::scan::scan(source.root()).expect("the demo host scans");
        (host, passage_core::demo::plan().expect("the demo plan"))
    }

    #[test]
    fn the_summary_counts_groups_and_planned_groups() {
        let (host, plan) = demo();
        let line = summary_line(&host, &plan);
        assert_eq!(
            line,
            format!("{} groups on this host · 3 in the plan", host.groups.len())
        );
    }

    #[test]
    fn the_banner_holds_the_notes_and_nothing_else_when_the_iommu_is_on() {
        let (host, _) = demo();
        assert_eq!(banner_text(&host, &[]), "");
        let notes = vec!["one".to_string(), "two".to_string()];
        assert_eq!(banner_text(&host, &notes), "one\ntwo");
    }

    #[test]
    fn a_refusal_is_drawn_as_one() {
        assert_eq!(message_classes(None), ["status"]);
        assert_eq!(message_classes(Some(&Said::news("ok".into()))), ["status"]);
        assert_eq!(
            message_classes(Some(&Said::error("no".into()))),
            ["status", "refusal"]
        );
    }
}
