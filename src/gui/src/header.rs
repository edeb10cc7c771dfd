//! The header bar (libadwaita's): which plan is open (title and subtitle), search and the
//! class/state filters and the bridges toggle on the left, the main menu, Apply and Export on
//! the right.

use crate::a11y::{accessible_label, label_dropdown};
use crate::registry::{self, Registry};
use crate::settings;
use adw::prelude::*;
use gtk::gio;
use passage_core::explain::State;
use passage_core::i18n::tr;
use passage_core::view::Kind;
use relm4::prelude::*;

/// The header; it keeps nothing the app does not (the filters live in the app's model).
pub struct Header {
    /// The bar itself: the app adds its view switch and the narrow window's Guests button.
    pub bar: adw::HeaderBar,
    /// The machine menu's items (rebuilt when the machines change).
    machines: gio::Menu,
    /// What the machine menu's button says: this computer, or the other machine's name.
    machine_label: String,
    search: gtk::SearchEntry,
    subtitle: String,
    narrow: bool,
}

/// What the app tells the header.
#[derive(Debug)]
pub enum HeaderInput {
    /// The window is narrow: the filters go under the search, the title and Export (in the
    /// main menu too) fold away.
    Narrow(bool),
    /// Another plan or host is open (the demo host, opened from a page).
    Subtitle(String),
    /// Ctrl+F: the keyboard to the search field.
    Search,
    /// Which machine is open (`None`: this computer) and the others opened lately.
    Machines {
        current: Option<passage_core::Remote>,
        recent: Vec<passage_core::Remote>,
    },
}

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
    /// The machine open at the start (`None`: this computer).
    pub machine: Option<passage_core::Remote>,
    /// The other machines opened lately.
    pub recent: Vec<passage_core::Remote>,
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
    type Input = HeaderInput;
    type Output = HeaderOutput;

    view! {
        gtk::Box {
          set_orientation: gtk::Orientation::Vertical,
          #[local_ref]
          bar -> adw::HeaderBar {
            #[wrap(Some)]
            set_title_widget = &adw::WindowTitle {
                // In a narrow window the buttons need the room (the subtitle is in Export).
                #[watch]
                set_visible: !model.narrow,
                set_title: &tr("Passage"),
                #[watch]
                set_subtitle: &model.subtitle,
            },
            #[name = "machine"]
            pack_start = &gtk::MenuButton {
                set_icon_name: "network-server-symbolic",
                set_menu_model: Some(&model.machines),
                #[watch]
                set_tooltip_text: Some(&model.machine_label),
            },
            #[name = "menu"]
            pack_end = &gtk::MenuButton {
                set_icon_name: "open-menu-symbolic",
                set_menu_model: Some(&primary_menu()),
                set_tooltip_text: Some(&tr("Main menu")),
                set_primary: true,
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
                // In a narrow window Export is in the main menu only.
                #[watch]
                set_visible: !model.narrow,
                set_label: &tr("Export…"),
                connect_clicked[sender] => move |_| {
                    let _ = sender.output(HeaderOutput::Export);
                },
            },
          },
          // The filters: a bar of their own under the header (GNOME's search-bar place), so
          // the header keeps the title and the actions at any width. Narrow, the search takes
          // a line and the filters the next: all of them stay in sight.
          gtk::Box {
            #[watch]
            set_orientation: if model.narrow {
                gtk::Orientation::Vertical
            } else {
                gtk::Orientation::Horizontal
            },
            set_spacing: 6,
            add_css_class: "filterbar",
            #[local_ref]
            append = search -> gtk::SearchEntry {
                set_hexpand: true,
                set_placeholder_text: Some(&tr("Search devices, drivers, groups")),
                connect_search_changed[sender] => move |e| {
                    let _ = sender.output(HeaderOutput::Search(e.text().to_string()));
                },
            },
            gtk::Box {
            set_orientation: gtk::Orientation::Horizontal,
            set_spacing: 6,
            #[local_ref]
            append = kind_dd -> gtk::DropDown {
                connect_selected_notify[sender] => move |d| {
                    let i = d.selected() as usize;
                    let kind = i.checked_sub(1).and_then(|i| Kind::ALL.get(i).copied());
                    let _ = sender.output(HeaderOutput::Kind(kind));
                },
            },
            #[local_ref]
            append = state_dd -> gtk::DropDown {
                connect_selected_notify[sender] => move |d| {
                    let state = STATES.get(d.selected() as usize).copied().flatten();
                    let _ = sender.output(HeaderOutput::State(state));
                },
            },
            #[name = "bridges"]
            append = &gtk::ToggleButton {
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
        let machines = gio::Menu::new();
        fill_machines(&machines, init.machine.as_ref(), &init.recent);
        let model = Header {
            machines,
            machine_label: machine_label(init.machine.as_ref()),
            bar: adw::HeaderBar::new(),
            search: gtk::SearchEntry::new(),
            subtitle: init.subtitle.clone(),
            narrow: false,
        };
        let (search, bar) = (&model.search, &model.bar);
        let widgets = view_output!();
        accessible_label(search, &tr("Search"));
        accessible_label(&widgets.menu, &tr("Main menu"));
        accessible_label(&widgets.machine, &tr("Machine"));
        // The menu button's own button, where a pointer clicks it.
        if let Some(b) = widgets
            .machine
            .first_child()
            .and_then(|c| c.downcast::<gtk::ToggleButton>().ok())
        {
            registry::enter(
                &init.registry.buttons,
                "machine".into(),
                b.upcast_ref::<gtk::Button>(),
            );
        }
        label_dropdown(kind_dd, &tr("Device class"));
        label_dropdown(state_dd, &tr("Group state"));
        let buttons = &init.registry.buttons;
        registry::enter(buttons, "export".into(), &widgets.export);
        registry::enter(buttons, "apply".into(), &widgets.apply);
        registry::enter(
            buttons,
            "bridges".into(),
            widgets.bridges.upcast_ref::<gtk::Button>(),
        );
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: HeaderInput, _sender: ComponentSender<Self>) {
        match msg {
            HeaderInput::Narrow(on) => self.narrow = on,
            HeaderInput::Subtitle(s) => self.subtitle = s,
            HeaderInput::Search => {
                self.search.grab_focus();
            }
            HeaderInput::Machines { current, recent } => {
                fill_machines(&self.machines, current.as_ref(), &recent);
                self.machine_label = machine_label(current.as_ref());
            }
        }
    }
}

/// What the machine button says when the pointer rests on it.
fn machine_label(current: Option<&passage_core::Remote>) -> String {
    match current {
        Some(m) => passage_core::i18n::trf("Machine: {host}", &[("host", &m.to_string())]),
        None => tr("Machine: this computer"),
    }
}

/// The machine menu: this computer, the machines opened lately (the open one marked), and
/// "Connect to Another Machine…" (`win.open-machine` with the machine, "" for this computer).
fn fill_machines(
    menu: &gio::Menu,
    current: Option<&passage_core::Remote>,
    recent: &[passage_core::Remote],
) {
    menu.remove_all();
    let which = gio::Menu::new();
    let item = |label: String, target: &str| {
        let i = gio::MenuItem::new(Some(&label), None);
        i.set_action_and_target_value(Some("win.open-machine"), Some(&target.to_variant()));
        i
    };
    let mark = |on: bool, label: String| {
        if on {
            passage_core::i18n::trf("{machine} (open)", &[("machine", &label)])
        } else {
            label
        }
    };
    which.append_item(&item(mark(current.is_none(), tr("This Computer")), ""));
    for m in recent {
        which.append_item(&item(
            mark(current == Some(m), m.to_string()),
            &m.to_string(),
        ));
    }
    menu.append_section(None, &which);
    let more = gio::Menu::new();
    more.append(
        Some(&tr("Connect to Another Machine…")),
        Some("win.connect-machine"),
    );
    menu.append_section(None, &more);
}

/// The main menu: what every GNOME app has there (the window's actions, see `app`).
fn primary_menu() -> gio::Menu {
    let m = gio::Menu::new();
    let plan = gio::Menu::new();
    plan.append(Some(&tr("Export…")), Some("win.export"));
    m.append_section(None, &plan);
    let edit = gio::Menu::new();
    edit.append(Some(&tr("Undo")), Some("win.undo"));
    edit.append(Some(&tr("Redo")), Some("win.redo"));
    m.append_section(None, &edit);
    let host = gio::Menu::new();
    host.append(Some(&tr("Host Readiness")), Some("win.readiness"));
    m.append_section(None, &host);
    let about = gio::Menu::new();
    about.append(
        Some(&tr("Keyboard Shortcuts")),
        Some("win.show-help-overlay"),
    );
    about.append(Some(&tr("About Passage")), Some("win.about"));
    m.append_section(None, &about);
    m
}

fn dropdown(items: &[String]) -> gtk::DropDown {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    gtk::DropDown::from_strings(&refs)
}

/// What the title's second line names, so a person always knows which file Apply and Export
/// work from: the plan file, or the demo.
pub fn subtitle(opts: &crate::Options) -> String {
    use passage_core::demo::DemoHost;
    match opts.demo {
        Some(DemoHost::Workstation) => return tr("the demo host and its demo plan"),
        Some(DemoHost::Arm64) => {
            return tr("the arm64 demo host, recorded on its kernel (an empty plan, not saved)")
        }
        Some(DemoHost::Ppc64le) => {
            return tr("the ppc64le demo host, recorded on its kernel (an empty plan, not saved)")
        }
        None => {}
    }
    let plan = opts
        .plan_path()
        .map(|p| settings::display_path(&p))
        .unwrap_or_default();
    match &opts.host {
        Some(h) => passage_core::i18n::trf(
            "{host} — {plan}",
            &[("host", &h.to_string()), ("plan", &plan)],
        ),
        None => plan,
    }
}
