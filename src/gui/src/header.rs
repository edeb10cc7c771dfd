//! The header bar: which plan is open (title), search and the class/state filters and the
//! bridges toggle on the left, Export and Apply on the right.

use crate::a11y::accessible_label;
use crate::registry::{self, Registry};
use crate::settings;
use gtk::gio;
use gtk::prelude::*;
use passage_core::explain::State;
use passage_core::i18n::tr;
use passage_core::view::Kind;
use relm4::prelude::*;

/// The header; it keeps nothing the app does not (the filters live in the app's model).
pub struct Header;

/// How the header starts.
pub struct HeaderInit {
    /// What the subtitle names: the plan file, or the demo.
    pub subtitle: String,
    /// Whether bridges were shown when the app was left.
    pub show_bridges: bool,
    /// Where the bridges toggle is remembered.
    pub settings: Option<gio::Settings>,
    /// Where the probe finds the header's buttons.
    pub registry: Registry,
}

/// What a person asked for in the header.
#[derive(Debug)]
pub enum HeaderOutput {
    /// The search text changed.
    Search(String),
    /// A device class chosen (none: all classes).
    Kind(Option<Kind>),
    /// A group state chosen (none: all states).
    State(Option<State>),
    /// Show groups with nothing to give too.
    ShowAll(bool),
    /// Export pressed.
    Export,
    /// Apply pressed.
    Apply,
}

/// The state filter's choices, in the drop-down's order.
const STATES: [Option<State>; 5] = [
    None,
    Some(State::Available),
    Some(State::InUse),
    Some(State::Assigned),
    Some(State::HostCritical),
];

#[relm4::component(pub)]
impl SimpleComponent for Header {
    type Init = HeaderInit;
    type Input = ();
    type Output = HeaderOutput;

    view! {
        gtk::HeaderBar {
            #[wrap(Some)]
            set_title_widget = &gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                set_valign: gtk::Align::Center,
                gtk::Label {
                    set_label: &tr("Passage"),
                    add_css_class: "title",
                },
                gtk::Label {
                    set_label: &init.subtitle,
                    add_css_class: "subtitle",
                    set_ellipsize: gtk::pango::EllipsizeMode::Start,
                },
            },
            #[name = "search"]
            pack_start = &gtk::SearchEntry {
                set_placeholder_text: Some(&tr("Search devices, drivers, groups")),
                connect_search_changed[sender] => move |e| {
                    let _ = sender.output(HeaderOutput::Search(e.text().to_string()));
                },
            },
            #[local_ref]
            pack_start = kind_dd -> gtk::DropDown {
                connect_selected_notify[sender] => move |d| {
                    let i = d.selected() as usize;
                    let kind = i.checked_sub(1).and_then(|i| Kind::ALL.get(i).copied());
                    let _ = sender.output(HeaderOutput::Kind(kind));
                },
            },
            #[local_ref]
            pack_start = state_dd -> gtk::DropDown {
                connect_selected_notify[sender] => move |d| {
                    let state = STATES.get(d.selected() as usize).copied().flatten();
                    let _ = sender.output(HeaderOutput::State(state));
                },
            },
            #[name = "bridges"]
            pack_start = &gtk::ToggleButton {
                set_label: &tr("Bridges too"),
                set_tooltip_text: Some(&tr(
                    "Also show groups with nothing a guest could use (bridges, chipset functions)",
                )),
                set_active: init.show_bridges,
                connect_toggled[sender, settings = init.settings.clone()] => move |b| {
                    settings::remember_bridges(settings.as_ref(), b.is_active());
                    let _ = sender.output(HeaderOutput::ShowAll(b.is_active()));
                },
            },
            #[name = "apply"]
            pack_end = &gtk::Button {
                set_label: &tr("Apply"),
                add_css_class: "suggested-action",
                set_tooltip_text: Some(&tr(
                    "Claim the planned groups and write the guests' configurations",
                )),
                connect_clicked[sender] => move |_| {
                    let _ = sender.output(HeaderOutput::Apply);
                },
            },
            #[name = "export"]
            pack_end = &gtk::Button {
                set_label: &tr("Export…"),
                connect_clicked[sender] => move |_| {
                    let _ = sender.output(HeaderOutput::Export);
                },
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let mut kinds = vec![tr("All classes")];
        kinds.extend(Kind::ALL.iter().map(|k| k.label()));
        let kind_dd = &dropdown(&kinds);
        let state_labels: Vec<String> = STATES
            .iter()
            .map(|s| s.map(State::label).unwrap_or_else(|| tr("All states")))
            .collect();
        let state_dd = &dropdown(&state_labels);
        let widgets = view_output!();
        accessible_label(&widgets.search, &tr("Search"));
        accessible_label(kind_dd, &tr("Device class"));
        accessible_label(state_dd, &tr("Group state"));
        let buttons = &init.registry.buttons;
        registry::enter(buttons, "export".into(), &widgets.export);
        registry::enter(buttons, "apply".into(), &widgets.apply);
        registry::enter(
            buttons,
            "bridges".into(),
            widgets.bridges.upcast_ref::<gtk::Button>(),
        );
        ComponentParts {
            model: Header,
            widgets,
        }
    }
}

fn dropdown(items: &[String]) -> gtk::DropDown {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    gtk::DropDown::from_strings(&refs)
}

/// What the title's second line names, so a person always knows which file Apply and Export
/// work from: the plan file, or the demo.
pub fn subtitle(opts: &crate::Options) -> String {
    match (&opts.plan, opts.demo) {
        (_, true) => tr("the demo host and its demo plan"),
        (Some(p), false) => settings::display_path(p),
        (None, false) => passage_core::store::default_plan_path()
            .map(|p| settings::display_path(&p))
            .unwrap_or_default(),
    }
}
