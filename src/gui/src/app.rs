//! The main window: it holds the model (host, plan, guests, filter) and the components that
//! draw it — the header, the host list framed by the banner and status lines, the guest pane,
//! the dialogs — and turns what they report into calls on the library.
//!
//! The host is read off the main loop (a command), so the window appears at once; device
//! events from the kernel come in through one long-lived command and update the model through
//! [`passage_core::watch::apply`], the same path `passagectl monitor` uses.

use crate::cards::{CardMsg, Emit};
use crate::dialogs::{
    self, ApplyDialog, ApplyInit, ApplyInput, AssignDialog, AssignInit, AssignOutput, ExportDialog,
    ExportInit, MenuChoice, WhyDialog, WhyInit,
};
use crate::guests::{self, GuestPane, GuestsInit, GuestsInput, GuestsOutput};
use crate::header::{self, Header, HeaderInit, HeaderOutput};
use crate::hostlist::HostList;
use crate::load::{self, Loaded};
use crate::memory::{give_back_freed_memory, rss_kib};
use crate::registry::Registry;
use crate::status::{self, Said, Status, StatusInit, StatusInput};
use crate::topology::{TopoMsg, TopologyView};
use crate::{events, probe, settings, Options};
use gtk::prelude::*;
use passage_core::apply::{Done, Outcome};
use passage_core::demo::Source;
use passage_core::i18n::{tr, trf};
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use passage_core::view::{self, Filter, Holders};
use passage_core::watch::DeviceEvent;
use passage_core::{store, GroupId, PciAddress};
use relm4::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Instant;

/// The app's model and the components it drives.
pub struct App {
    opts: Options,
    /// Whether the device-event sources (the kernel monitor, the probe's FIFO) run already:
    /// started with the first load, never again after an Apply reloads the host (two would
    /// apply every event twice and race for the FIFO's lines).
    following: bool,
    source: Option<Source>,
    host: Option<Host>,
    plan: Plan,
    plan_path: Option<PathBuf>,
    known: Vec<plan::Guest>,
    holders: Holders,
    filter: Filter,
    /// The last refusal per guest, shown at the drop.
    refusals: BTreeMap<String, String>,
    /// What the banner says besides the IOMMU (what could not be read).
    notes: Vec<String>,
    hosts: HostList,
    /// The list and the Topology view, one shown at a time.
    pages: gtk::Stack,
    topology: Rc<TopologyView>,
    /// PFs whose virtual functions the Topology view draws one by one.
    unfolded: BTreeSet<PciAddress>,
    /// The Topology view shows an older model: laid out again when next shown.
    topology_stale: bool,
    /// A layout is scheduled (edits and device events come in bursts).
    topology_due: bool,
    /// The app's own input, for what it schedules itself.
    input: relm4::Sender<AppInput>,
    header: Controller<Header>,
    status: Controller<Status>,
    guests: Controller<GuestPane>,
    dialogs: Dialogs,
    registry: Registry,
    probe: Option<probe::Probe>,
}

/// The dialog open last of each kind (a new one replaces it).
#[derive(Default)]
struct Dialogs {
    why: Option<Controller<WhyDialog>>,
    assign: Option<Controller<AssignDialog>>,
    export: Option<Controller<ExportDialog>>,
    apply: Option<Controller<ApplyDialog>>,
}

/// How the app starts.
pub struct AppInit {
    /// The command line, with the plan to open settled.
    pub opts: Options,
    /// The app's settings, when the schema is installed.
    pub settings: Option<gtk::gio::Settings>,
    /// The host being read since the process started.
    pub first: mpsc::Receiver<Result<Loaded, String>>,
}

/// What the components report.
#[derive(Debug)]
pub enum AppInput {
    /// Search, filters, Export, Apply.
    Header(HeaderOutput),
    /// A gesture on a card.
    Card(CardMsg),
    /// A group dropped on (or chosen for) a guest.
    Assign {
        /// The group.
        group: GroupId,
        /// The guest.
        guest: String,
    },
    /// A group taken out of the plan.
    Unassign(GroupId),
    /// "Why?" for a group (from its menu).
    Why(GroupId),
    /// The list (false) or the Topology view (true).
    ShowTopology(bool),
    /// A gesture in the Topology view.
    Topology(TopoMsg),
    /// Device events came in while the Topology view was shown: lay it out once for all.
    TopologyDue,
}

/// What runs off the main loop reports.
#[derive(Debug)]
pub enum AppCommand {
    /// The host, plan and guests read (or why not).
    Loaded(Box<Result<Loaded, String>>),
    /// A device event, and when it arrived (for the probe's latency figure).
    Event(DeviceEvent, Instant),
    /// One step of Apply done.
    Progress(Done),
    /// Apply is over.
    Applied(Box<Result<Outcome, String>>),
}

#[relm4::component(pub)]
impl Component for App {
    type Init = AppInit;
    type Input = AppInput;
    type Output = ();
    type CommandOutput = AppCommand;

    view! {
        #[root]
        gtk::ApplicationWindow {
            set_title: Some(&tr("Passage")),
            set_default_size: (1180, 760),
            set_titlebar: Some(model.header.widget()),
            #[name = "paned"]
            gtk::Paned {
                set_orientation: gtk::Orientation::Horizontal,
                set_start_child: Some(model.status.widget()),
                set_end_child: Some(model.guests.widget()),
                set_position: 760,
                set_shrink_start_child: false,
            },
        }
    }

    fn init(
        init: Self::Init,
        root: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let AppInit {
            opts,
            settings,
            first,
        } = init;
        let registry = Registry::default();
        let show_bridges = settings::show_bridges(settings.as_ref());
        let header = Header::builder()
            .launch(HeaderInit {
                subtitle: header::subtitle(&opts),
                show_bridges,
                settings: settings.clone(),
                registry: registry.clone(),
            })
            .forward(sender.input_sender(), AppInput::Header);
        let emit: Emit = {
            let s = sender.input_sender().clone();
            Rc::new(move |m| s.emit(AppInput::Card(m)))
        };
        let hosts = HostList::new(emit.clone(), registry.clone());
        let topo_emit: crate::topology::TopoEmit = {
            let s = sender.input_sender().clone();
            Rc::new(move |m| s.emit(AppInput::Topology(m)))
        };
        let topology = TopologyView::new(emit, topo_emit, registry.clone());
        let pages = gtk::Stack::new();
        pages.add_named(hosts.widget(), Some("list"));
        pages.add_named(topology.widget(), Some("topology"));
        pages.set_visible_child_name("list");
        header
            .widget()
            .pack_start(&view_switch(&registry, sender.input_sender()));
        let status = Status::builder()
            .launch(StatusInit {
                content: pages.clone().upcast(),
                registry: registry.clone(),
            })
            .detach();
        let guests = GuestPane::builder()
            .launch(GuestsInit {
                registry: registry.clone(),
            })
            .forward(sender.input_sender(), |o| match o {
                GuestsOutput::Assign { group, guest } => AppInput::Assign { group, guest },
                GuestsOutput::Unassign(g) => AppInput::Unassign(g),
            });
        let probe = probe::Probe::from_env(&root, registry.clone());
        let plan_path = opts
            .plan
            .clone()
            .or_else(|| (!opts.demo).then(store::default_plan_path).flatten());
        if let Some(p) = &probe {
            p.set_plan_path(plan_path.as_deref());
        }
        let model = App {
            following: false,
            opts,
            source: None,
            host: None,
            plan: Plan::default(),
            plan_path,
            known: Vec::new(),
            holders: Holders::new(),
            // Groups of bridges and chipset glue have nothing to give: hidden unless asked for.
            filter: Filter {
                assignable_only: !show_bridges,
                ..Default::default()
            },
            refusals: BTreeMap::new(),
            notes: Vec::new(),
            hosts,
            pages,
            topology,
            unfolded: BTreeSet::new(),
            topology_stale: true,
            topology_due: false,
            input: sender.input_sender().clone(),
            header,
            status,
            guests,
            dialogs: Dialogs::default(),
            registry,
            probe,
        };
        let widgets = view_output!();
        // Where the person left the window and the divider last time.
        settings::restore_window(settings.as_ref(), &root, &widgets.paned);
        settings::remember_on_close(settings.as_ref(), &root, &widgets.paned);
        // The host has been read since the process started (load::start): its result comes
        // in as a command, off the main loop.
        sender.spawn_oneshot_command(move || {
            AppCommand::Loaded(Box::new(first.recv().unwrap_or_else(|_| {
                Err("the thread reading the host stopped".to_string())
            })))
        });
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: AppInput, sender: ComponentSender<Self>, root: &Self::Root) {
        match msg {
            AppInput::Header(h) => match h {
                HeaderOutput::Search(t) => {
                    self.filter.text = t;
                    self.hosts.show(&self.filter);
                }
                HeaderOutput::Kind(k) => {
                    self.filter.kind = k;
                    self.hosts.show(&self.filter);
                }
                HeaderOutput::State(s) => {
                    self.filter.state = s;
                    self.hosts.show(&self.filter);
                }
                HeaderOutput::ShowAll(on) => {
                    self.filter.assignable_only = !on;
                    self.hosts.show(&self.filter);
                }
                HeaderOutput::Export => self.open_export(root),
                HeaderOutput::Apply => self.apply(root, &sender),
            },
            AppInput::Card(c) => match c {
                CardMsg::Menu(g, at) => self.open_menu(g, at, &sender),
                CardMsg::Why(g) => self.open_why(g, root),
                CardMsg::Choose(g) => self.open_assign(g, root, &sender),
                CardMsg::Expanded(g, on) => self.hosts.set_expanded(g, on),
                CardMsg::SetVisible(a, on) => self.edit(move |p, _| p.set_visible(a, on)),
                CardMsg::SetAddress(a, text) => self.set_address(a, &text),
            },
            AppInput::Assign { group, guest } => self.assign(group, guest),
            AppInput::Unassign(g) => self.edit(move |p, _| p.unassign(g).map(|_| ())),
            AppInput::Why(g) => self.open_why(g, root),
            AppInput::ShowTopology(on) => {
                if on {
                    if let Some(p) = &self.probe {
                        p.topology_asked(Instant::now());
                    }
                    self.pages.set_visible_child_name("topology");
                    if self.topology_stale {
                        self.lay_out_topology();
                    }
                } else {
                    self.pages.set_visible_child_name("list");
                }
            }
            AppInput::TopologyDue => {
                self.topology_due = false;
                if self.topology_stale && self.topology_shown() {
                    self.lay_out_topology();
                }
            }
            AppInput::Topology(TopoMsg::Unfold(pf, on)) => {
                if on {
                    self.unfolded.insert(pf);
                } else {
                    self.unfolded.remove(&pf);
                }
                self.lay_out_topology();
            }
        }
    }

    fn update_cmd(&mut self, cmd: AppCommand, sender: ComponentSender<Self>, _root: &Self::Root) {
        match cmd {
            AppCommand::Loaded(r) => self.loaded(*r, &sender),
            AppCommand::Event(ev, at) => {
                let (Some(host), Some(src)) = (&mut self.host, &self.source) else {
                    return;
                };
                // One device and its group re-read, never the whole host; one card redrawn.
                let Ok(u) = passage_core::watch::apply(host, src.root(), &ev) else {
                    return;
                };
                let card = u
                    .group
                    .and_then(|g| view::card_of(host, &self.plan, &self.holders, g));
                if !card.is_some_and(|c| self.hosts.replace_card(c, &self.filter)) {
                    self.refresh();
                }
                self.topology_soon();
                if let Some(p) = &self.probe {
                    p.event_applied(at);
                }
            }
            AppCommand::Progress(d) => {
                if let Some(a) = &self.dialogs.apply {
                    a.sender().emit(ApplyInput::Done(d));
                }
            }
            AppCommand::Applied(r) => {
                if let Some(a) = &self.dialogs.apply {
                    a.sender().emit(ApplyInput::Finished(*r));
                }
                // The host changed: read it again (off the main loop).
                let o = self.opts.clone();
                sender.spawn_oneshot_command(move || AppCommand::Loaded(Box::new(load::load(&o))));
            }
        }
    }
}

impl App {
    /// The host (and plan, and guests) arrived: draw them, and start following device events.
    fn loaded(&mut self, r: Result<Loaded, String>, sender: &ComponentSender<Self>) {
        self.status.sender().emit(StatusInput::Loaded);
        let l = match r {
            Ok(l) => l,
            Err(e) => {
                self.status.sender().emit(StatusInput::Banner(trf(
                    "Passage could not read this host: {why}",
                    &[("why", &e)],
                )));
                return;
            }
        };
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
        self.source = Some(l.source);
        self.hosts.set_sections(l.sections);
        let t = Instant::now();
        self.redraw();
        give_back_freed_memory();
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            rss = rss_kib(),
            "list built"
        );
        let live = !self.opts.demo && self.opts.root.is_none();
        if live && !self.following {
            sender.spawn_command(|out| {
                events::follow_kernel(|ev| out.send(AppCommand::Event(ev, Instant::now())).is_ok())
            });
        }
        if let Some(p) = &self.probe {
            p.set_loaded();
        }
        // Tests and benchmarks inject events through the same path as the kernel's: lines
        // "ACTION ADDRESS" on the probe's FIFO.
        if let Some(path) = probe::Probe::events_path().filter(|_| !self.following) {
            sender.spawn_command(move |out| {
                events::follow_fifo(&path, |ev| {
                    out.send(AppCommand::Event(ev, Instant::now())).is_ok()
                })
            });
        }
        self.following = true;
    }

    /// Recomputes every card from the model, then draws everything.
    fn refresh(&mut self) {
        let Some(host) = &self.host else {
            return;
        };
        self.hosts
            .set_sections(view::sections(host, &self.plan, &self.holders));
        self.redraw();
    }

    /// Lays the Topology view out from the model as it is now (the plan's guests on the boxes).
    fn lay_out_topology(&mut self) {
        let Some(host) = &self.host else {
            return;
        };
        let opts = passage_core::topology::Options {
            all_vfs: false,
            opened: self.unfolded.clone(),
            only: None,
            guests: passage_core::topology::guests_of(&self.plan, &self.holders),
        };
        let t = Instant::now();
        let layout = passage_core::topology::layout(host, &opts);
        self.topology.set_layout(layout, self.unfolded.clone());
        self.topology_stale = false;
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            widgets = self.topology.made(),
            size = ?self.topology.size(),
            "topology laid out"
        );
    }

    fn topology_shown(&self) -> bool {
        self.pages.visible_child_name().as_deref() == Some("topology")
    }

    /// The Topology view is out of date: laid out once, a twentieth of a second after the first
    /// change of a burst (`sriov_numvfs=64` is ~128 device events), when it is shown; else when
    /// it is next shown.
    fn topology_soon(&mut self) {
        self.topology_stale = true;
        if self.topology_shown() && !self.topology_due {
            self.topology_due = true;
            let s = self.input.clone();
            gtk::glib::timeout_add_local_once(std::time::Duration::from_millis(50), move || {
                s.emit(AppInput::TopologyDue)
            });
        }
    }

    /// Draws the list from the cached cards, then the banner, the summary and the guests; the
    /// Topology view again when it is shown (else when it is next shown).
    fn redraw(&mut self) {
        self.hosts.show(&self.filter);
        self.topology_soon();
        let Some(host) = &self.host else {
            return;
        };
        let status = self.status.sender();
        status.emit(StatusInput::Banner(status::banner_text(host, &self.notes)));
        status.emit(StatusInput::Summary(status::summary_line(host, &self.plan)));
        self.guests.sender().emit(GuestsInput::Show(guests::entries(
            Some(host),
            &self.plan,
            &self.known,
            &self.refusals,
        )));
        if let Some(p) = &self.probe {
            p.set_plan(self.plan.to_json());
        }
    }

    /// Says what an edit or a save came to, until the next one.
    fn say(&self, said: Option<Said>) {
        self.status.sender().emit(StatusInput::Said(said));
    }

    /// Writes the plan to its file; why not, when it could not be.
    fn save(&self) -> Option<Said> {
        let p = self.plan_path.as_ref()?;
        store::save_plan(p, &self.plan)
            .err()
            .map(|e| Said::error(e.to_string()))
    }

    /// An edit the plan takes only if it adds no error; then saved. A refusal or a failed save
    /// stays on the status line until the next edit.
    fn edit(&mut self, edit: impl FnOnce(&mut Plan, &Host) -> Result<(), plan::PlanError>) {
        let Some(host) = self.host.clone() else {
            return;
        };
        let said = match self.plan.try_edit(&host, |p| edit(p, &host)) {
            Ok(_) => self.save(),
            Err(e) => Some(Said::error(e.to_string())),
        };
        self.say(said);
        self.refresh();
    }

    /// A group dropped on (or chosen for) a guest: planned, or refused with the reason shown
    /// at the guest and on the status line.
    fn assign(&mut self, group: GroupId, guest: String) {
        let Some(host) = self.host.clone() else {
            return;
        };
        if self.plan.guest(&guest).is_none() {
            if let Some(g) = self.known.iter().find(|k| k.name == guest).cloned() {
                let _ = self.plan.add_guest(g);
            }
        }
        let said = match view::drop_on(&mut self.plan, &host, group, &guest) {
            Ok(_) => {
                self.refusals.remove(&guest);
                self.save().or_else(|| {
                    Some(Said::news(trf(
                        "Group {id} is planned for {guest}; press Apply to claim it.",
                        &[("id", &group.to_string()), ("guest", &guest)],
                    )))
                })
            }
            Err(e) => {
                self.refusals.insert(guest, e.to_string());
                Some(Said::error(e.to_string()))
            }
        };
        self.say(said);
        self.refresh();
    }

    /// A device's guest address as typed: empty or "auto" lets Passage place it.
    fn set_address(&mut self, a: PciAddress, text: &str) {
        let text = text.trim();
        if text.is_empty() || text == "auto" {
            self.edit(move |p, _| p.set_guest_address(a, None));
            return;
        }
        match text.parse::<plan::GuestAddress>() {
            Ok(at) => self.edit(move |p, _| p.set_guest_address(a, Some(at))),
            Err(e) => self.say(Some(Said::error(e.to_string()))),
        }
    }

    /// A card's context menu, at a point inside the card (or under it, from the keyboard).
    fn open_menu(&mut self, g: GroupId, at: Option<(f64, f64)>, sender: &ComponentSender<Self>) {
        // The card in the list, or the group's box in the Topology view: whichever is shown.
        let shown = |m: &crate::registry::Widgets<u32, gtk::Box>| {
            m.borrow()
                .get(&g.0)
                .and_then(|w| w.upgrade())
                .filter(|w| w.is_mapped())
        };
        let Some(card) = shown(&self.registry.cards).or_else(|| shown(&self.registry.topo_boxes))
        else {
            return;
        };
        let planned = self.plan.holder(g).map(|guest| guest.name.clone());
        let s = sender.input_sender().clone();
        let choose = Rc::new(move |c| {
            s.emit(match c {
                MenuChoice::Assign { group, guest } => AppInput::Assign { group, guest },
                MenuChoice::Why(g) => AppInput::Why(g),
                MenuChoice::Unassign(g) => AppInput::Unassign(g),
            })
        });
        let pop = dialogs::card_menu(
            &card,
            g,
            &guests::guest_names(&self.plan, &self.known),
            planned.as_deref(),
            at,
            choose,
            &self.registry,
        );
        if let Some(p) = &self.probe {
            p.opened("menu", pop.upcast_ref());
        }
    }

    /// "Assign to…" for a group (the keyboard and menu path of a drop).
    fn open_assign(
        &mut self,
        g: GroupId,
        root: &gtk::ApplicationWindow,
        sender: &ComponentSender<Self>,
    ) {
        let dlg = AssignDialog::builder()
            .launch(AssignInit {
                parent: root.clone().upcast(),
                group: g,
                title: guests::title_of(self.host.as_ref(), g),
                guests: guests::guest_names(&self.plan, &self.known),
            })
            .forward(
                sender.input_sender(),
                |AssignOutput::Assign { group, guest }| AppInput::Assign { group, guest },
            );
        if let Some(p) = &self.probe {
            p.opened("assign", dlg.widget().upcast_ref());
        }
        self.dialogs.assign = Some(dlg);
    }

    /// "Why?" for a group.
    fn open_why(&mut self, g: GroupId, root: &gtk::ApplicationWindow) {
        let Some(why) = self.host.as_ref().and_then(|h| view::why(h, g)) else {
            return;
        };
        let dlg = WhyDialog::builder()
            .launch(WhyInit {
                parent: root.clone().upcast(),
                group: g,
                why,
            })
            .detach();
        if let Some(p) = &self.probe {
            p.opened("why", dlg.widget().upcast_ref());
        }
        self.dialogs.why = Some(dlg);
    }

    /// Export's window, over the plan as it is now.
    fn open_export(&mut self, root: &gtk::ApplicationWindow) {
        let Some(host) = &self.host else {
            return;
        };
        let dlg = ExportDialog::builder()
            .launch(ExportInit {
                parent: root.clone().upcast(),
                plan: self.plan.clone(),
                host: host.clone(),
            })
            .detach();
        if let Some(p) = &self.probe {
            p.opened("export", dlg.widget().upcast_ref());
            p.set_preview(dlg.model().buffer.clone());
        }
        self.dialogs.export = Some(dlg);
    }

    /// Apply: the steps shown, then run through the helper off the main loop.
    fn apply(&mut self, root: &gtk::ApplicationWindow, sender: &ComponentSender<Self>) {
        let Some(host) = self.host.clone() else {
            return;
        };
        if self.opts.demo {
            self.say(Some(Said::news(tr("This is the demo host, not this machine: nothing to apply. Export the plan to see what it would write."))));
            return;
        }
        let steps = match passage_core::apply::steps(&self.plan, &host, None) {
            Ok(s) => s,
            Err(e) => {
                self.say(Some(Said::error(e.to_string())));
                return;
            }
        };
        let dlg = ApplyDialog::builder()
            .launch(ApplyInit {
                parent: root.clone().upcast(),
                steps: steps.clone(),
            })
            .detach();
        if let Some(p) = &self.probe {
            p.opened("apply", dlg.widget().upcast_ref());
            p.set_apply_log(dlg.model().buffer.clone());
        }
        self.dialogs.apply = Some(dlg);
        let plan = self.plan.clone();
        sender.spawn_command(move |out| {
            let r = passage_dbus::SystemExecutor::new(&plan, &host)
                .map_err(|e| e.to_string())
                .map(|mut exec| {
                    passage_core::apply::run(&plan, &steps, &mut exec, &mut |d| {
                        let _ = out.send(AppCommand::Progress(d.clone()));
                    })
                });
            let _ = out.send(AppCommand::Applied(Box::new(r)));
        });
    }
}

/// The header's two buttons that switch between the list and the Topology view.
fn view_switch(registry: &Registry, input: &relm4::Sender<AppInput>) -> gtk::Box {
    let b = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    b.add_css_class("linked");
    let list = gtk::ToggleButton::with_label(&tr("List"));
    let topo = gtk::ToggleButton::with_label(&tr("Topology"));
    topo.set_group(Some(&list));
    list.set_active(true);
    list.set_tooltip_text(Some(&tr("The groups as a list of cards")));
    topo.set_tooltip_text(Some(&tr(
        "The PCI tree: ports, bridges and a box around each IOMMU group",
    )));
    {
        let s = input.clone();
        topo.connect_toggled(move |t| s.emit(AppInput::ShowTopology(t.is_active())));
    }
    crate::registry::enter(&registry.buttons, "view-list".into(), list.upcast_ref());
    crate::registry::enter(&registry.buttons, "view-topology".into(), topo.upcast_ref());
    b.append(&list);
    b.append(&topo);
    b
}
