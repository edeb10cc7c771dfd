//! The Passage app (feature `gui`): host groups as cards you drag onto guests.
//!
//! Thin over the library: [`passage_core::view`] decides what a card says and whether a drop is
//! allowed, [`passage_core::plan`] keeps the plan, [`passage_core::export`] writes configurations,
//! [`passage_core::apply`] carries a plan out through the helper. This module draws those values and
//! turns gestures (drag and drop, the "Assign to…" menu, switches, address fields) into calls.
//!
//! The host is scanned off the main loop (a command), so the window appears at once; device
//! events from the kernel come in through one long-lived command and update the model through
//! [`passage_core::watch::apply`], the same path `passagectl monitor` uses.

mod cards;
mod dialogs;
// The probe (what the GUI tests and benches read) exists only where a test build asks for it.
#[cfg(not(feature = "probe"))]
#[path = "noprobe.rs"]
mod probe;
#[cfg(feature = "probe")]
mod probe;
mod settings;

use cards::{Registry, RowItem};
use gtk::prelude::*;
use passage_core::demo::Source;
use passage_core::explain::{self, State};
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use passage_core::view::{self, Filter, Holders, Kind};
use passage_core::{demo, names, scan, store, GroupId, PciAddress};
use relm4::prelude::*;
use relm4::typed_view::grid::TypedGridView;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// How the app was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The bundled demo host and its guests and plan.
    pub demo: bool,
    /// A recorded host root instead of `/`.
    pub root: Option<PathBuf>,
    /// The plan file (default: the user's; with `--demo`, the demo plan kept in memory).
    pub plan: Option<PathBuf>,
}

/// Starts the app; returns when its window closes, or at once with a sentence when there is
/// no display to open it on.
pub fn run(opts: Options) -> Result<(), String> {
    // Which plan to open needs only GSettings (no display): settled first, so the host can be
    // read while GTK starts.
    let settings = settings::open();
    let mut opts = opts;
    if !opts.demo {
        opts.plan = settings::plan_to_open(settings.as_ref(), opts.plan.take());
    }
    let first = start_loading(opts.clone());
    gtk::init().map_err(|e| {
        trf(
            "cannot open a display ({error}); start Passage in a graphical session, or use passagectl",
            &[("error", &e.to_string())],
        )
    })?;
    // The CSS and the device-class icons travel inside the binary (build.rs). relm4 names the
    // application after it is built, so GApplication never derives a resource base path from
    // the id and GTK would not look in the resource's icons/: both are wired here.
    gtk::gio::resources_register_include!("passage.gresource")
        .map_err(|e| format!("the app's built-in resources are missing: {e}"))?;
    let app = RelmApp::new(names::APP_ID).with_args(Vec::new());
    relm4::main_application().set_resource_base_path(Some(names::RESOURCE_BASE));
    let css = gtk::CssProvider::new();
    css.load_from_resource(&format!("{}/style.css", names::RESOURCE_BASE));
    if let Some(display) = gtk::gdk::Display::default() {
        gtk::style_context_add_provider_for_display(
            &display,
            &css,
            gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
        );
        gtk::IconTheme::for_display(&display)
            .add_resource_path(&format!("{}/icons", names::RESOURCE_BASE));
    }
    // Long selectable texts ("Why?", errors) would show all selected whenever they get the
    // focus, which a window without a focused button gives them.
    if let Some(s) = gtk::Settings::default() {
        s.set_gtk_label_select_on_focus(false);
    }
    // Ctrl+Q and Ctrl+W close the window, as in every GNOME app (and keep where it was left).
    relm4::main_application().set_accels_for_action("window.close", &["<Control>q", "<Control>w"]);
    gtk::Window::set_default_icon_name(names::APP_ID);
    app.run::<App>((opts, settings, first));
    Ok(())
}

/// Reads the host (and makes every card) on threads of its own from the moment the process
/// starts, at a lower priority than GTK's main thread: the window's first frames come first,
/// and the rest of both cores goes to the scan while GTK starts.
fn start_loading(opts: Options) -> std::sync::mpsc::Receiver<Result<Loaded, String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("passage-load".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(load(&opts));
        });
    if let Err(e) = spawned {
        let _ = failed.send(Err(e.to_string()));
    }
    rx
}

/// Nice 10 for the calling thread (Linux applies PRIO_PROCESS with pid 0 to the thread).
fn lower_priority() {
    let _ = rustix::process::setpriority_process(None, 10);
}

/// What the background scan brings back.
#[derive(Debug)]
pub struct Loaded {
    source: Source,
    host: Host,
    plan: Plan,
    /// Guests the plan does not hold yet: local profiles, libvirt domains, demo guests.
    known: Vec<plan::Guest>,
    holders: Holders,
    /// Why libvirt guests are missing, when they are.
    libvirt_note: Option<String>,
    plan_note: Option<String>,
    /// What a sandbox hides from the scan, when the app runs in one.
    sandbox_note: Option<String>,
    /// Why Apply could not reach the helper, when it could not (not installed, no system bus).
    helper_note: Option<String>,
    /// Every group's card, made on the loading threads.
    sections: Vec<view::Section>,
}

#[derive(Debug)]
pub enum Msg {
    Search(String),
    KindFilter(Option<Kind>),
    StateFilter(Option<State>),
    /// Show groups with nothing to give too.
    ShowAll(bool),
    /// A group dropped on (or chosen for) a guest.
    Assign {
        group: GroupId,
        guest: String,
    },
    Unassign(GroupId),
    /// Open the "Assign to…" chooser for a group (keyboard and menu path).
    Choose(GroupId),
    /// A card's context menu, at a point inside the card (or under it, from the keyboard).
    Menu(GroupId, Option<(f64, f64)>),
    Why(GroupId),
    SetVisible(PciAddress, bool),
    SetAddress(PciAddress, String),
    Expanded(GroupId, bool),
    Export,
    Apply,
}

#[derive(Debug)]
pub enum Cmd {
    Loaded(Box<Result<Loaded, String>>),
    /// A device event, and when it arrived (for the probe's latency figure).
    Event(passage_core::watch::DeviceEvent, std::time::Instant),
    Applied(Box<Result<passage_core::apply::Outcome, String>>),
    Progress(passage_core::apply::Done),
}

pub struct App {
    opts: Options,
    source: Option<Source>,
    host: Option<Host>,
    plan: Plan,
    plan_path: Option<PathBuf>,
    known: Vec<plan::Guest>,
    holders: Holders,
    filter: Filter,
    expanded: BTreeSet<GroupId>,
    /// The last refusal per guest, shown at the drop.
    refusals: BTreeMap<String, String>,
    notes: Vec<String>,
    list: TypedGridView<RowItem, gtk::NoSelection>,
    /// Every card as last computed, by section (filters redraw from these). The list's rows
    /// share these cards rather than copying them.
    sections: Vec<view::Section>,
    /// Where each group's card is in the list (for redrawing one card).
    positions: BTreeMap<GroupId, u32>,
    registry: Registry,
    window: gtk::ApplicationWindow,
    guests_box: gtk::ListBox,
    banner: gtk::Label,
    status: gtk::Label,
    sender: ComponentSender<App>,
    probe: Option<probe::Probe>,
    apply_log: Option<gtk::TextBuffer>,
}

impl App {
    fn title_for(&self, g: GroupId) -> String {
        self.host
            .as_ref()
            .and_then(|h| h.groups.get(&g).map(|grp| explain::title(h, grp)))
            .unwrap_or_else(|| trf("Group {id}", &[("id", &g.to_string())]))
    }

    /// Every guest a group can be dropped on: the plan's, then the others known.
    fn guest_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.plan.guests.iter().map(|g| g.name.clone()).collect();
        for g in &self.known {
            if !v.contains(&g.name) {
                v.push(g.name.clone());
            }
        }
        v
    }

    fn save(&mut self) {
        if let Some(p) = &self.plan_path {
            if let Err(e) = store::save_plan(p, &self.plan) {
                self.status.set_label(&e.to_string());
            }
        }
    }

    /// Redraws the cards, the guests and the banner from the model.
    /// Rebuilds the list rows from the cached cards under the current filter; typing in the
    /// search box costs this, never a new verdict for every group.
    fn redraw_list(&mut self) {
        self.list.clear();
        let tx = self.sender.input_sender().clone();
        let mut rows = Vec::new();
        self.positions.clear();
        for s in view::filtered(&self.sections, &self.filter) {
            rows.push(RowItem::header(&s.title));
            for c in s.cards {
                self.positions.insert(c.group, rows.len() as u32);
                let expanded = self.expanded.contains(&c.group);
                rows.push(RowItem::card(
                    c,
                    expanded,
                    tx.clone(),
                    self.registry.clone(),
                ));
            }
        }
        self.list.extend_from_iter(rows);
    }

    /// Recomputes every card from the model, then the list, the guests and the banner.
    fn refresh(&mut self) {
        let Some(host) = &self.host else {
            return;
        };
        self.sections = view::sections(host, &self.plan, &self.holders);
        self.redraw();
    }

    /// Draws the list from the cached cards, then the guests, the banner and the status.
    fn redraw(&mut self) {
        self.redraw_list();
        let Some(host) = &self.host else {
            return;
        };
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
        banner.extend(self.notes.iter().cloned());
        self.banner.set_visible(!banner.is_empty());
        self.banner.set_label(&banner.join("\n"));
        if let Some(p) = &self.probe {
            p.set_banner(banner.join("\n"));
        }
        let problems = plan::check(&self.plan, host);
        let errors = problems
            .iter()
            .filter(|p| p.severity == plan::Severity::Error)
            .count();
        self.status.set_label(&if errors > 0 {
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
                        &self
                            .plan
                            .guests
                            .iter()
                            .map(|g| g.groups.len())
                            .sum::<usize>()
                            .to_string(),
                    ),
                ],
            )
        });
        self.refresh_guests();
        if let Some(p) = &self.probe {
            p.set_plan(self.plan.to_json());
        }
    }

    fn refresh_guests(&mut self) {
        while let Some(row) = self.guests_box.row_at_index(0) {
            self.guests_box.remove(&row);
        }
        let tx = self.sender.input_sender().clone();
        for name in self.guest_names() {
            let in_plan = self.plan.guest(&name);
            let g = in_plan.or_else(|| self.known.iter().find(|k| k.name == name));
            let Some(g) = g else { continue };
            let held: Vec<(GroupId, String)> = in_plan
                .map(|g| {
                    g.groups
                        .iter()
                        .map(|p| (p.group, self.title_for(p.group)))
                        .collect()
                })
                .unwrap_or_default();
            let row = cards::guest_row(
                g,
                &held,
                self.refusals.get(&name).map(String::as_str),
                tx.clone(),
            );
            self.registry
                .guests
                .borrow_mut()
                .insert(name.clone(), row.downgrade());
            self.guests_box.append(&row);
        }
    }

    /// Redraws one group's card in place; false when the list must be rebuilt instead (the
    /// group is new, gone, or no longer matches the filter).
    fn redraw_card(&mut self, g: Option<GroupId>) -> bool {
        let (Some(g), Some(host)) = (g, &self.host) else {
            return false;
        };
        let Some(card) = view::card_of(host, &self.plan, &self.holders, g) else {
            return false;
        };
        if !self.filter.matches(&card) {
            return false;
        }
        let Some(&pos) = self.positions.get(&g) else {
            return false;
        };
        let card = std::sync::Arc::new(card);
        if let Some(cached) = self
            .sections
            .iter_mut()
            .flat_map(|s| s.cards.iter_mut())
            .find(|c| c.group == g)
        {
            *cached = card.clone();
        }
        let expanded = self.expanded.contains(&g);
        let tx = self.sender.input_sender().clone();
        self.list.remove(pos);
        self.list.insert(
            pos,
            RowItem::card(card, expanded, tx, self.registry.clone()),
        );
        true
    }

    fn edit(&mut self, edit: impl FnOnce(&mut Plan, &Host) -> Result<(), plan::PlanError>) {
        let Some(host) = &self.host else { return };
        let host = host.clone();
        match self.plan.try_edit(&host, |p| edit(p, &host)) {
            Ok(_) => {
                self.save();
                self.status.set_label("");
            }
            Err(e) => self.status.set_label(&e.to_string()),
        }
        self.refresh();
    }
}

fn load(opts: &Options) -> Result<Loaded, String> {
    let source = Source::open(opts.demo, opts.root.as_deref()).map_err(|e| e.to_string())?;
    // Every core, niced: GTK's main thread is served first and the scan takes what is left.
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("passage-scan-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .map_err(|e| e.to_string())?;
    let t = std::time::Instant::now();
    let host = pool
        .install(|| scan::scan(source.root()))
        .map_err(|e| e.to_string())?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rss = rss_kib(),
        "scanned"
    );
    let mut plan_note = None;
    let plan = match (&opts.plan, opts.demo) {
        (Some(p), _) => store::load_plan(p).map_err(|e| e.to_string())?,
        (None, true) => demo::plan().map_err(|e| e.to_string())?,
        (None, false) => match store::default_plan_path().map(|p| store::load_plan(&p)) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                plan_note = Some(e.to_string());
                Plan::default()
            }
            None => Plan::default(),
        },
    };
    let mut known = Vec::new();
    if let Some(p) = store::profiles_path() {
        if let Ok(profiles) = store::load_profiles(&p) {
            known.extend(profiles.iter().filter_map(|p| p.to_guest().ok()));
        }
    }
    let mut holders = Holders::new();
    let mut libvirt_note = None;
    if opts.demo {
        for g in demo::plan().map_err(|e| e.to_string())?.guests {
            let mut g = g.clone();
            g.groups.clear();
            known.push(g);
        }
    } else {
        match passage_dbus::libvirt::system_domains() {
            Ok(domains) => {
                for d in domains {
                    for g in d.groups(&host) {
                        holders.insert(g, d.name.clone());
                    }
                    if let Ok(g) = d.to_guest() {
                        known.push(g);
                    }
                }
            }
            Err(e) => libvirt_note = Some(e),
        }
    }
    // Flatpak shows the app its own mounts and network, not the host's.
    let sandbox_note = (!opts.demo
        && opts.root.is_none()
        && std::path::Path::new("/.flatpak-info").exists())
    .then(|| tr("Passage runs in a Flatpak sandbox: it cannot see the host's mounts, swap and network routes, so no group is marked as needed by the host here. The helper checks that on the host before every claim and refuses such a group."));
    // Every card too (~10,000 verdicts are work for these threads, not for the main loop),
    // and beside them whether Apply can reach the helper, to say so now rather than when the
    // person presses it.
    let t = std::time::Instant::now();
    let (sections, helper_note) = pool.install(|| {
        rayon::join(
            || view::sections(&host, &plan, &holders),
            || {
                (!opts.demo)
                    .then(passage_dbus::helper_reachable)
                    .and_then(Result::err)
            },
        )
    });
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rss = rss_kib(),
        "cards made"
    );
    Ok(Loaded {
        source,
        host,
        plan,
        known,
        holders,
        libvirt_note,
        plan_note,
        sandbox_note,
        helper_note,
        sections,
    })
}

/// "bind 0000:0b:00.0" → a device event (the probe's injection format).
fn parse_event(line: &str) -> Option<passage_core::watch::DeviceEvent> {
    use passage_core::watch::Action;
    let (action, addr) = line.trim().split_once(' ')?;
    let action = match action {
        "add" => Action::Add,
        "remove" => Action::Remove,
        "bind" => Action::Bind,
        "unbind" => Action::Unbind,
        "change" => Action::Change,
        _ => return None,
    };
    Some(passage_core::watch::DeviceEvent {
        action,
        address: addr.trim().parse().ok()?,
    })
}

fn dropdown(items: &[String]) -> gtk::DropDown {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    gtk::DropDown::from_strings(&refs)
}

impl Component for App {
    type CommandOutput = Cmd;
    type Input = Msg;
    type Output = ();
    type Init = (
        Options,
        Option<gtk::gio::Settings>,
        std::sync::mpsc::Receiver<Result<Loaded, String>>,
    );
    type Root = gtk::ApplicationWindow;
    type Widgets = ();

    fn init_root() -> Self::Root {
        gtk::ApplicationWindow::builder()
            .title(tr("Passage"))
            .default_width(1180)
            .default_height(760)
            .build()
    }

    fn init(
        (opts, settings, first): Self::Init,
        window: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        // Header: search and filters on the left, Export and Apply on the right.
        let header = gtk::HeaderBar::new();
        header.set_title_widget(Some(&title_widget(&opts)));
        let search = gtk::SearchEntry::new();
        search.set_placeholder_text(Some(&tr("Search devices, drivers, groups")));
        accessible_label(&search, &tr("Search"));
        header.pack_start(&search);
        let mut kinds = vec![tr("All classes")];
        kinds.extend(Kind::ALL.iter().map(|k| k.label()));
        let kind_dd = dropdown(&kinds);
        accessible_label(&kind_dd, &tr("Device class"));
        header.pack_start(&kind_dd);
        let states = [
            None,
            Some(State::Available),
            Some(State::InUse),
            Some(State::Assigned),
            Some(State::HostCritical),
        ];
        let state_labels: Vec<String> = states
            .iter()
            .map(|s| s.map(State::label).unwrap_or_else(|| tr("All states")))
            .collect();
        let state_dd = dropdown(&state_labels);
        accessible_label(&state_dd, &tr("Group state"));
        header.pack_start(&state_dd);
        let all = gtk::ToggleButton::with_label(&tr("Bridges too"));
        all.set_tooltip_text(Some(&tr(
            "Also show groups with nothing a guest could use (bridges, chipset functions)",
        )));
        header.pack_start(&all);
        let apply = gtk::Button::with_label(&tr("Apply"));
        apply.add_css_class("suggested-action");
        apply.set_tooltip_text(Some(&tr(
            "Claim the planned groups and write the guests' configurations",
        )));
        header.pack_end(&apply);
        let export = gtk::Button::with_label(&tr("Export…"));
        header.pack_end(&export);
        window.set_titlebar(Some(&header));

        // Left: the host's groups, in sections by port, in a list view (widgets only for the
        // rows on screen, so thousands of SR-IOV functions stay smooth).
        // A one-column grid, not a GtkListView: GTK 4.8's list view keeps 200 rows alive
        // around what is on screen (GTK_LIST_VIEW_MAX_LIST_ITEMS), each one made, bound,
        // measured and drawn; its grid view keeps about 30 rows (GTK_GRID_VIEW_MAX_VISIBLE_ROWS).
        // On a 10,000-group host that is most of the time between "read" and "shown".
        let list: TypedGridView<RowItem, gtk::NoSelection> = TypedGridView::new();
        list.view.set_max_columns(1);
        list.view.add_css_class("groups");
        accessible_label(&list.view, &tr("IOMMU groups of this host"));
        let banner = gtk::Label::new(None);
        banner.set_wrap(true);
        banner.set_xalign(0.0);
        banner.add_css_class("banner");
        banner.set_visible(false);
        let loading = gtk::Label::new(Some(&tr("Reading this host's devices…")));
        let left = gtk::Box::new(gtk::Orientation::Vertical, 0);
        left.append(&banner);
        let scroller = gtk::ScrolledWindow::new();
        scroller.set_vexpand(true);
        scroller.set_child(Some(&list.view));
        left.append(&loading);
        left.append(&scroller);
        let status = gtk::Label::new(None);
        status.set_xalign(0.0);
        status.set_wrap(true);
        status.add_css_class("status");
        left.append(&status);

        // Right: guests, each a drop target.
        let right = gtk::Box::new(gtk::Orientation::Vertical, 6);
        let guests_title = gtk::Label::new(Some(&tr("Guests")));
        guests_title.add_css_class("title-3");
        guests_title.set_xalign(0.0);
        right.append(&guests_title);
        let hint = gtk::Label::new(Some(&tr(
            "Drag a group onto a guest, or press Enter on a group to choose one.",
        )));
        hint.set_wrap(true);
        hint.set_xalign(0.0);
        hint.add_css_class("dim-label");
        right.append(&hint);
        let guests_box = gtk::ListBox::new();
        guests_box.set_selection_mode(gtk::SelectionMode::None);
        guests_box.add_css_class("guests");
        accessible_label(&guests_box, &tr("Guests"));
        let gscroll = gtk::ScrolledWindow::new();
        gscroll.set_vexpand(true);
        gscroll.set_child(Some(&guests_box));
        right.append(&gscroll);
        right.set_margin_start(8);
        right.set_margin_end(8);
        right.set_margin_top(8);

        let paned = gtk::Paned::new(gtk::Orientation::Horizontal);
        paned.set_start_child(Some(&left));
        paned.set_end_child(Some(&right));
        paned.set_position(760);
        paned.set_shrink_start_child(false);
        window.set_child(Some(&paned));
        // Where the person left the window, the divider and the bridges toggle last time.
        let show_bridges = settings::restore(settings.as_ref(), &window, &paned, &all);

        {
            let s = sender.clone();
            search.connect_search_changed(move |e| s.input(Msg::Search(e.text().to_string())));
            let s = sender.clone();
            kind_dd.connect_selected_notify(move |d| {
                let i = d.selected() as usize;
                s.input(Msg::KindFilter(
                    i.checked_sub(1).and_then(|i| Kind::ALL.get(i).copied()),
                ));
            });
            let s = sender.clone();
            state_dd.connect_selected_notify(move |d| {
                s.input(Msg::StateFilter(
                    states.get(d.selected() as usize).copied().flatten(),
                ));
            });
            let s = sender.clone();
            let keep = settings.clone();
            all.connect_toggled(move |b| {
                settings::remember_bridges(keep.as_ref(), b.is_active());
                s.input(Msg::ShowAll(b.is_active()));
            });
            settings::remember_on_close(settings.as_ref(), &window, &paned);
            let s = sender.clone();
            export.connect_clicked(move |_| s.input(Msg::Export));
            let s = sender.clone();
            apply.connect_clicked(move |_| s.input(Msg::Apply));
        }

        let registry = Registry::default();
        registry
            .buttons
            .borrow_mut()
            .insert("export".into(), export.downgrade());
        registry
            .buttons
            .borrow_mut()
            .insert("apply".into(), apply.downgrade());
        registry.buttons.borrow_mut().insert(
            "bridges".into(),
            all.upcast_ref::<gtk::Button>().downgrade(),
        );
        let probe = probe::Probe::from_env(&window, registry.clone());
        let plan_path = opts
            .plan
            .clone()
            .or_else(|| (!opts.demo).then(store::default_plan_path).flatten());
        if let Some(p) = &probe {
            p.set_plan_path(plan_path.as_deref());
        }
        let model = App {
            plan_path,
            opts: opts.clone(),
            source: None,
            host: None,
            plan: Plan::default(),
            known: Vec::new(),
            holders: Holders::new(),
            // Groups of bridges and chipset glue have nothing to give: hidden unless asked for.
            filter: Filter {
                assignable_only: !show_bridges,
                ..Default::default()
            },
            expanded: BTreeSet::new(),
            refusals: BTreeMap::new(),
            notes: Vec::new(),
            list,
            sections: Vec::new(),
            positions: BTreeMap::new(),
            registry,
            window: window.clone(),
            guests_box,
            banner,
            status,
            sender: sender.clone(),
            probe,
            apply_log: None,
        };
        {
            // Shift+F10 or the Menu key on a focused card opens its context menu.
            let keys = gtk::ShortcutController::new();
            let (s, win, reg) = (sender.clone(), window.clone(), model.registry.clone());
            keys.add_shortcut(gtk::Shortcut::new(
                gtk::ShortcutTrigger::parse_string("<Shift>F10|Menu"),
                Some(gtk::CallbackAction::new(
                    move |_, _| match cards::focused_group(&win, &reg) {
                        Some(g) => {
                            s.input(Msg::Menu(g, None));
                            gtk::glib::Propagation::Stop
                        }
                        None => gtk::glib::Propagation::Proceed,
                    },
                )),
            ));
            model.list.view.add_controller(keys);
        }
        {
            let s = sender.clone();
            model.list.view.connect_activate(move |view, pos| {
                if let Some(g) = cards::group_at(view, pos) {
                    s.input(Msg::Choose(g));
                }
            });
        }
        // The host has been read since the process started (start_loading): its result comes
        // in as a command, off the main loop.
        sender.spawn_oneshot_command(move || {
            Cmd::Loaded(Box::new(first.recv().unwrap_or_else(|_| {
                Err("the thread reading the host stopped".to_string())
            })))
        });
        model.registry.loading.replace(Some(loading.clone()));
        ComponentParts { model, widgets: () }
    }

    fn update(&mut self, msg: Msg, sender: ComponentSender<Self>, _root: &Self::Root) {
        match msg {
            Msg::Search(t) => {
                self.filter.text = t;
                self.redraw_list();
            }
            Msg::KindFilter(k) => {
                self.filter.kind = k;
                self.redraw_list();
            }
            Msg::StateFilter(s) => {
                self.filter.state = s;
                self.redraw_list();
            }
            Msg::ShowAll(on) => {
                self.filter.assignable_only = !on;
                self.redraw_list();
            }
            Msg::Assign { group, guest } => {
                let Some(host) = self.host.clone() else {
                    return;
                };
                if self.plan.guest(&guest).is_none() {
                    if let Some(g) = self.known.iter().find(|k| k.name == guest).cloned() {
                        let _ = self.plan.add_guest(g);
                    }
                }
                match view::drop_on(&mut self.plan, &host, group, &guest) {
                    Ok(_) => {
                        self.refusals.remove(&guest);
                        self.status.set_label(&trf(
                            "Group {id} is planned for {guest}; press Apply to claim it.",
                            &[("id", &group.to_string()), ("guest", &guest)],
                        ));
                        self.save();
                    }
                    Err(e) => {
                        self.refusals.insert(guest.clone(), e.to_string());
                    }
                }
                self.refresh();
            }
            Msg::Unassign(g) => self.edit(move |p, _| p.unassign(g).map(|_| ())),
            Msg::Choose(g) => {
                let names = self.guest_names();
                let dlg = dialogs::choose_guest(
                    &self.window,
                    g,
                    &self.title_for(g),
                    &names,
                    sender.input_sender().clone(),
                );
                if let Some(p) = &self.probe {
                    p.opened("assign", dlg.upcast_ref());
                }
            }
            Msg::Menu(g, at) => {
                let Some(card) = self
                    .registry
                    .cards
                    .borrow()
                    .get(&g.0)
                    .and_then(|w| w.upgrade())
                else {
                    return;
                };
                let planned = self.plan.holder(g).map(|guest| guest.name.clone());
                let pop = dialogs::card_menu(
                    &card,
                    g,
                    &self.guest_names(),
                    planned.as_deref(),
                    at,
                    sender.input_sender().clone(),
                    &self.registry,
                );
                if let Some(p) = &self.probe {
                    p.opened("menu", pop.upcast_ref());
                }
            }
            Msg::Why(g) => {
                if let Some(host) = &self.host {
                    if let Some(w) = view::why(host, g) {
                        let dlg = dialogs::why(&self.window, g, &w);
                        if let Some(p) = &self.probe {
                            p.opened("why", dlg.upcast_ref());
                        }
                    }
                }
            }
            Msg::SetVisible(a, on) => self.edit(move |p, _| p.set_visible(a, on)),
            Msg::SetAddress(a, text) => {
                let text = text.trim().to_string();
                if text.is_empty() || text == "auto" {
                    self.edit(move |p, _| p.set_guest_address(a, None));
                } else {
                    match text.parse::<plan::GuestAddress>() {
                        Ok(at) => self.edit(move |p, _| p.set_guest_address(a, Some(at))),
                        Err(e) => {
                            self.status.set_label(&e.to_string());
                        }
                    }
                }
            }
            Msg::Expanded(g, on) => {
                if on {
                    self.expanded.insert(g);
                } else {
                    self.expanded.remove(&g);
                }
            }
            Msg::Export => {
                if let Some(host) = &self.host {
                    let (dlg, preview) = dialogs::export(&self.window, &self.plan, host);
                    if let Some(p) = &self.probe {
                        p.opened("export", dlg.upcast_ref());
                        p.set_preview(preview);
                    }
                }
            }
            Msg::Apply => {
                let Some(host) = self.host.clone() else {
                    return;
                };
                if self.opts.demo {
                    self.status.set_label(&tr("This is the demo host, not this machine: nothing to apply. Export the plan to see what it would write."));
                    return;
                }
                let steps = match passage_core::apply::steps(&self.plan, &host, None) {
                    Ok(s) => s,
                    Err(e) => {
                        self.status.set_label(&e.to_string());
                        return;
                    }
                };
                let (dlg, log) = dialogs::progress(&self.window, &steps);
                if let Some(p) = &self.probe {
                    p.opened("apply", dlg.upcast_ref());
                    p.set_apply_log(log.clone());
                }
                self.apply_log = Some(log);
                let plan = self.plan.clone();
                sender.spawn_command(move |out| {
                    let r = passage_dbus::SystemExecutor::new(&plan, &host)
                        .map_err(|e| e.to_string())
                        .map(|mut exec| {
                            passage_core::apply::run(&plan, &steps, &mut exec, &mut |d| {
                                let _ = out.send(Cmd::Progress(d.clone()));
                            })
                        });
                    let _ = out.send(Cmd::Applied(Box::new(r)));
                });
            }
        }
    }

    fn update_cmd(&mut self, cmd: Cmd, sender: ComponentSender<Self>, _root: &Self::Root) {
        match cmd {
            Cmd::Loaded(r) => {
                if let Some(l) = self.registry.loading.borrow().as_ref() {
                    l.set_visible(false);
                }
                match *r {
                    Ok(l) => {
                        self.notes.clear();
                        self.notes.extend(
                            l.libvirt_note
                                .map(|n| trf("No libvirt guests: {why}", &[("why", &n)])),
                        );
                        self.notes.extend(l.plan_note);
                        self.notes.extend(l.sandbox_note);
                        self.notes.extend(l.helper_note);
                        self.plan = l.plan;
                        self.known = l.known;
                        self.holders = l.holders;
                        self.host = Some(l.host);
                        let live = !self.opts.demo && self.opts.root.is_none();
                        self.source = Some(l.source);
                        self.sections = l.sections;
                        let t = std::time::Instant::now();
                        self.redraw();
                        give_back_freed_memory();
                        tracing::debug!(
                            ms = t.elapsed().as_millis() as u64,
                            rss = rss_kib(),
                            "list built"
                        );
                        if live {
                            sender.spawn_command(|out| {
                                let Ok(mon) = passage_core::watch::Monitor::open() else {
                                    return;
                                };
                                while let Ok(events) = mon.wait(None) {
                                    for ev in events {
                                        if out
                                            .send(Cmd::Event(ev, std::time::Instant::now()))
                                            .is_err()
                                        {
                                            return;
                                        }
                                    }
                                }
                            });
                        }
                        if let Some(p) = &self.probe {
                            p.set_loaded();
                        }
                        // Tests and benchmarks inject events through the same path as the
                        // kernel's: lines "ACTION ADDRESS" on the probe's FIFO.
                        if let Some(path) = probe::Probe::events_path() {
                            sender.spawn_command(move |out| {
                                use std::io::BufRead;
                                let Ok(f) = std::fs::File::open(&path) else {
                                    return;
                                };
                                for line in std::io::BufReader::new(f).lines().map_while(Result::ok)
                                {
                                    if let Some(ev) = parse_event(&line) {
                                        if out
                                            .send(Cmd::Event(ev, std::time::Instant::now()))
                                            .is_err()
                                        {
                                            return;
                                        }
                                    }
                                }
                            });
                        }
                    }
                    Err(e) => {
                        self.banner.set_visible(true);
                        self.banner.set_label(&trf(
                            "Passage could not read this host: {why}",
                            &[("why", &e)],
                        ));
                    }
                }
            }
            Cmd::Event(ev, at) => {
                let (Some(host), Some(src)) = (&mut self.host, &self.source) else {
                    return;
                };
                // One device and its group re-read, never the whole host; one card redrawn.
                let Ok(u) = passage_core::watch::apply(host, src.root(), &ev) else {
                    return;
                };
                if !self.redraw_card(u.group) {
                    self.refresh();
                }
                if let Some(p) = &self.probe {
                    p.event_applied(at);
                }
            }
            Cmd::Progress(d) => {
                if let Some(log) = &self.apply_log {
                    let mark = if d.ok { "✓" } else { "✗" };
                    let mut end = log.end_iter();
                    log.insert(
                        &mut end,
                        &format!("{mark} {}: {}\n", d.step.describe(), d.message),
                    );
                }
            }
            Cmd::Applied(r) => {
                if let Some(log) = &self.apply_log {
                    let mut end = log.end_iter();
                    let text = match *r {
                        Ok(o) if o.ok() => tr("Done: the plan is applied.\n"),
                        Ok(o) => {
                            let mut t = tr("Not applied.\n");
                            for (_, what) in o.rolled_back {
                                t.push_str(&format!("↺ {what}\n"));
                            }
                            t
                        }
                        Err(e) => trf("Not applied: {why}\n", &[("why", &e)]),
                    };
                    log.insert(&mut end, &text);
                }
                // The host changed: read it again (off the main loop).
                let o = self.opts.clone();
                sender.spawn_oneshot_command(move || Cmd::Loaded(Box::new(load(&o))));
            }
        }
    }
}

/// "Passage" over the plan being edited (or "demo host"), so a person always knows which file
/// Apply and Export work from.
fn title_widget(opts: &Options) -> gtk::Box {
    let b = gtk::Box::new(gtk::Orientation::Vertical, 0);
    b.set_valign(gtk::Align::Center);
    let title = gtk::Label::new(Some(&tr("Passage")));
    title.add_css_class("title");
    b.append(&title);
    let what = match (&opts.plan, opts.demo) {
        (_, true) => tr("the demo host and its demo plan"),
        (Some(p), false) => settings::display_path(p),
        (None, false) => store::default_plan_path()
            .map(|p| settings::display_path(&p))
            .unwrap_or_default(),
    };
    let sub = gtk::Label::new(Some(&what));
    sub.add_css_class("subtitle");
    sub.set_ellipsize(gtk::pango::EllipsizeMode::Start);
    b.append(&sub);
    b
}

/// Gives a widget the name a screen reader speaks. gtk4-rs binds GtkAccessible only from GTK
/// 4.10, but the C function is in every GTK 4 (Debian 12 has 4.8), so it is declared here.
pub(crate) fn accessible_label(w: &impl IsA<gtk::Widget>, label: &str) {
    use gtk::glib::translate::ToGlibPtr;
    extern "C" {
        fn gtk_accessible_update_property_value(
            accessible: *mut std::ffi::c_void,
            n_properties: std::ffi::c_int,
            properties: *mut std::ffi::c_int,
            values: *const gtk::glib::gobject_ffi::GValue,
        );
    }
    /// `GTK_ACCESSIBLE_PROPERTY_LABEL` in gtkenums.h.
    const LABEL: std::ffi::c_int = 4;
    let value = label.to_value();
    let mut props = [LABEL];
    let widget: *mut gtk::ffi::GtkWidget = w.as_ref().to_glib_none().0;
    // SAFETY: every GtkWidget implements GtkAccessible; one property with one initialized
    // string GValue, both alive for the call.
    unsafe {
        gtk_accessible_update_property_value(
            widget.cast(),
            1,
            props.as_mut_ptr(),
            ToGlibPtr::<*const gtk::glib::gobject_ffi::GValue>::to_glib_none(&value).0,
        );
    }
}

/// The loading threads freed most of what they allocated (every file read, every verdict's
/// scratch), but glibc keeps freed memory in each thread's arena: hand it back to the system.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident memory now, in KiB (for the debug log's figures).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
