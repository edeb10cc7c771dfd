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
    ExportInit, MenuChoice, ReadinessDialog, ReadinessInit, ReadinessSource, WhyDialog, WhyInit,
};
use crate::guests::{self, GuestPane, GuestsInit, GuestsInput, GuestsOutput};
use crate::header::{self, Header, HeaderInit, HeaderInput, HeaderOutput};
use crate::hostlist::HostList;
use crate::load::{self, Loaded};
use crate::memory::{give_back_freed_memory, rss_kib};
use crate::notices::{self, Troubles};
use crate::registry::Registry;
use crate::status::{self, Status, StatusInit, StatusInput};
use crate::toasts::{Offer, Said, Toaster};
use crate::topology::{TopoMsg, TopologyView};
use crate::{events, probe, settings, Options};
use adw::prelude::*;
use gtk::gio;
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
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// The app's model and the components it drives.
pub struct App {
    opts: Options,
    /// Whether the device-event sources (the kernel monitor, the probe's FIFO) run already:
    /// started with the first load of this machine, never again after an Apply reloads the host
    /// (two would apply every event twice and race for the FIFO's lines).
    following: bool,
    /// Whether this computer's kernel events are followed (from the first time it is shown;
    /// they are ignored while another machine or the demo is).
    kernel_followed: bool,
    /// This computer as the app was opened on it: what "This Computer" goes back to.
    local: Options,
    /// Which machine is open, counted up at every switch: the follower of another machine's
    /// changes stops when it is no longer the one shown.
    machine: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The machine number whose changes are followed now.
    following_machine: std::cell::Cell<Option<u64>>,
    /// Another machine is being read again after a change it told (more changes meanwhile:
    /// read once more after).
    rereading: bool,
    reread_again: bool,
    /// The app's settings (the machines opened lately), when the schema is installed.
    settings: Option<gio::Settings>,
    source: Option<Arc<Source>>,
    /// Shared with the host list (which makes cards from it as their rows are drawn); a
    /// device's event changes it in place once the list has let go of its share.
    host: Option<Arc<Host>>,
    /// Device events that came while the list showed a sketch: applied once it is whole.
    early_events: Vec<(DeviceEvent, Instant, bool)>,
    plan: Plan,
    plan_path: Option<PathBuf>,
    known: Vec<plan::Guest>,
    holders: Holders,
    filter: Filter,
    /// The last refusal per guest, shown at the drop.
    refusals: BTreeMap<String, String>,
    /// What the last reading could not do (helper, libvirt, plan, sandbox): notices in words.
    troubles: Troubles,
    /// Plan edits to take back (newest last) and taken back to do again.
    undo: Vec<Edit>,
    redo: Vec<Edit>,
    /// The window's Undo and Redo (enabled while there is something to take back or redo).
    undo_action: gio::SimpleAction,
    redo_action: gio::SimpleAction,
    /// What edits, saves and refusals say: toasts, and the screen reader's status line.
    toaster: Toaster,
    /// What stands in the way, in words, above everything else.
    notice_bar: notices::NoticeBar,
    /// The host list and guests ("host"), or a page in their place ("empty").
    main: gtk::Stack,
    /// Where the page in place of the host list goes.
    empty: adw::Bin,
    /// The host list (start) and the guests (end).
    paned: gtk::Paned,
    /// The window is narrower than both panes need: one shown at a time.
    narrow: bool,
    /// The unreadable plan file was kept aside before the first save over it.
    kept_unreadable: bool,
    /// In a narrow window: the guests instead of the host list.
    show_guests: gtk::ToggleButton,
    hosts: HostList,
    /// The list and the Topology view, one shown at a time.
    pages: gtk::Stack,
    topology: Rc<TopologyView>,
    /// The header's List and Topology buttons (one group: one of them is on).
    view_buttons: [gtk::ToggleButton; 2],
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

/// One plan edit: the plan before it, and what it did in words ("Group 19 is planned for …").
struct Edit {
    before: Plan,
    what: String,
}

/// How many edits Undo reaches back (a plan is small; a day of edits is not a hundred).
const UNDO_DEPTH: usize = 100;

/// Below this width the host list and the guests take turns (the window's adaptive layout).
const NARROW: i32 = 700;

/// The dialog open last of each kind (a new one replaces it).
#[derive(Default)]
struct Dialogs {
    why: Option<Controller<WhyDialog>>,
    assign: Option<Controller<AssignDialog>>,
    export: Option<Controller<ExportDialog>>,
    apply: Option<Controller<ApplyDialog>>,
    readiness: Option<Controller<ReadinessDialog>>,
}

/// How the app starts.
pub struct AppInit {
    /// The command line, with the plan to open settled.
    pub opts: Options,
    /// The app's settings, when the schema is installed.
    pub settings: Option<gtk::gio::Settings>,
    /// The host being read since the process started.
    pub first: mpsc::Receiver<load::First>,
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
    /// A guest's groups claimed while it runs, or kept on vfio-pci.
    Lifecycle(String, plan::Lifecycle),
    /// Ctrl+Z: the last plan edit taken back.
    Undo,
    /// Ctrl+Shift+Z: the last edit taken back done again.
    Redo,
    /// The window's width changed (the layout adapts below [`NARROW`]).
    Width(i32),
    /// In a narrow window: the header's Guests button toggled (guests or the host list).
    ShowGuests,
    /// "Open the Demo Host" from a page that says this host has nothing to show.
    OpenDemo,
    /// The machine menu: this computer (`None`) or another machine, over SSH.
    OpenMachine(Option<passage_core::Remote>),
    /// "Connect to Another Machine…": the dialog that asks which.
    ConnectMachine,
    /// Something asked for could not be done: said as an error until the next message.
    Refused(String),
    /// "Follow the Cards": planned groups moved to where their cards are now.
    Remap,
    /// The About window.
    About,
    /// Host Readiness: the doctor's findings and their fixes.
    Readiness,
    /// Ctrl+F: to the search field.
    Search,
}

/// Whether what the person did needs the whole host (a sketch still listed is finished
/// first): every gesture that edits the plan, explains, exports, applies, lays out the
/// Topology view or filters on what only cards say. Not the window's own changes, moving
/// between machines (the host is about to be replaced) or showing what is there already.
fn needs_host(msg: &AppInput) -> bool {
    match msg {
        AppInput::Header(h) => match h {
            HeaderOutput::Search(_)
            | HeaderOutput::Kind(_)
            | HeaderOutput::State(_)
            | HeaderOutput::Export
            | HeaderOutput::Apply => true,
            // The list's "has anything for a guest" needs no more than a sketch.
            HeaderOutput::ShowAll(_) => false,
        },
        AppInput::Card(c) => !matches!(c, CardMsg::Expanded(..)),
        AppInput::Assign { .. }
        | AppInput::Unassign(_)
        | AppInput::Why(_)
        | AppInput::Topology(_)
        | AppInput::Lifecycle(..)
        | AppInput::Undo
        | AppInput::Redo
        | AppInput::Remap => true,
        AppInput::ShowTopology(on) => *on,
        AppInput::TopologyDue
        | AppInput::Width(_)
        | AppInput::ShowGuests
        | AppInput::OpenDemo
        | AppInput::OpenMachine(_)
        | AppInput::ConnectMachine
        | AppInput::Refused(_)
        | AppInput::About
        | AppInput::Readiness
        | AppInput::Search => false,
    }
}

/// What runs off the main loop reports.
#[derive(Debug)]
pub enum AppCommand {
    /// The host, plan and guests read (or why not), for the machine of that number: a reading
    /// of a machine no longer shown is dropped.
    Loaded(u64, Box<Result<Loaded, String>>),
    /// The rest of a sketched host (what only verdicts read), for the machine of that number.
    Detailed(u64, Box<Result<passage_core::sketch::Read, String>>),
    /// A device event, when it arrived (for the probe's latency figure), and whether it came
    /// from this machine's kernel (rather than the probe's FIFO).
    Event(DeviceEvent, Instant, bool),
    /// One step of Apply done.
    Progress(Done),
    /// Apply is over.
    Applied(Box<Result<Outcome, String>>),
    /// Whether Apply can reach the helper (why not, when it cannot).
    ApplyChecked(Option<passage_dbus::Unreachable>),
    /// Another machine told a device change (the machine's number when it was followed).
    MachineChanged(u64),
}

#[relm4::component(pub)]
impl Component for App {
    type Init = AppInit;
    type Input = AppInput;
    type Output = ();
    type CommandOutput = AppCommand;

    view! {
        #[root]
        adw::ApplicationWindow {
            set_title: Some(&tr("Passage")),
            set_default_size: (1180, 760),
            #[wrap(Some)]
            set_content = &gtk::Box {
                set_orientation: gtk::Orientation::Vertical,
                append: model.header.widget(),
                append: model.notice_bar.widget(),
                append: model.toaster.widget(),
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
                machine: opts.host.clone(),
                recent: settings::recent_hosts(settings.as_ref()),
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
        // Each view's own minimum width, not the widest one's (a narrow window shows the list).
        pages.set_hhomogeneous(false);
        pages.add_named(hosts.widget(), Some("list"));
        pages.add_named(topology.widget(), Some("topology"));
        pages.set_visible_child_name("list");
        let view_buttons = [gtk::ToggleButton::new(), gtk::ToggleButton::new()];
        header.model().bar.pack_start(&view_switch(
            &view_buttons,
            &registry,
            sender.input_sender(),
        ));
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
                GuestsOutput::Lifecycle(guest, l) => AppInput::Lifecycle(guest, l),
            });
        let paned = gtk::Paned::new(gtk::Orientation::Horizontal);
        paned.set_start_child(Some(status.widget()));
        paned.set_end_child(Some(guests.widget()));
        paned.set_position(760);
        paned.set_shrink_start_child(false);
        // The guests may be cut while the window narrows towards NARROW, where they fold away:
        // their minimum must not hold the window wide.
        paned.set_shrink_end_child(true);
        let empty = adw::Bin::new();
        let main = gtk::Stack::new();
        main.set_hhomogeneous(false);
        main.add_named(&paned, Some("host"));
        main.add_named(&empty, Some("empty"));
        main.set_visible_child_name("host");
        let toaster = Toaster::new(&main, registry.texts.clone());
        let show_guests = gtk::ToggleButton::with_label(&tr("Guests"));
        show_guests.set_visible(false);
        show_guests.set_tooltip_text(Some(&tr(
            "Show the guests instead of the host's groups (the window is too narrow for both)",
        )));
        {
            let s = sender.input_sender().clone();
            show_guests.connect_toggled(move |_| s.emit(AppInput::ShowGuests));
        }
        crate::registry::enter(
            &registry.buttons,
            "show-guests".into(),
            show_guests.upcast_ref(),
        );
        header.model().bar.pack_end(&show_guests);
        let (undo_action, redo_action) = window_actions(&root, sender.input_sender());
        let probe = probe::Probe::from_env(root.upcast_ref(), registry.clone());
        let plan_path = opts.plan_path();
        // This computer's options: as opened, or (opened on another machine or the demo) its
        // default plan, or the one it had open last.
        let local_opts = if opts.host.is_none() && opts.demo.is_none() {
            opts.clone()
        } else {
            Options {
                plan: settings::plan_to_open(settings.as_ref(), None),
                ..Options::default()
            }
        };
        if let Some(p) = &probe {
            p.set_plan_path(plan_path.as_deref());
        }
        let model = App {
            following: false,
            kernel_followed: false,
            local: local_opts,
            machine: Default::default(),
            following_machine: Default::default(),
            rereading: false,
            reread_again: false,
            settings: settings.clone(),
            opts,
            source: None,
            host: None,
            early_events: Vec::new(),
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
            troubles: Troubles::default(),
            undo: Vec::new(),
            redo: Vec::new(),
            undo_action,
            redo_action,
            toaster,
            notice_bar: notices::NoticeBar::new(&registry),
            main,
            empty,
            paned,
            narrow: false,
            kept_unreadable: false,
            show_guests,
            hosts,
            pages,
            topology,
            view_buttons,
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
        settings::restore_window(settings.as_ref(), root.upcast_ref(), &model.paned);
        settings::remember_on_close(settings.as_ref(), root.upcast_ref(), &model.paned);
        let help = crate::shortcuts::window();
        root.set_help_overlay(Some(&help));
        if let Some(p) = &model.probe {
            p.opened("shortcuts", help.upcast_ref());
        }
        {
            // The width GTK gives the content (the default width stops following a window
            // that is maximized or tiled).
            let s = sender.input_sender().clone();
            model.toaster.on_width(move |w| s.emit(AppInput::Width(w)));
        }
        // The host has been read since the process started (load::start): it comes in as
        // commands, off the main loop: placed, then the rest of its facts.
        sender.spawn_command(move |out| {
            let (mut placed, mut rest_due) = (false, false);
            while let Ok(m) = first.recv() {
                let c = match m {
                    load::First::Loaded(r) => {
                        placed = true;
                        rest_due = r
                            .as_ref()
                            .as_ref()
                            .is_ok_and(|l| matches!(l.facts, load::Facts::Sketch(_)));
                        AppCommand::Loaded(0, r)
                    }
                    load::First::Detailed(r) => {
                        rest_due = false;
                        AppCommand::Detailed(0, Box::new(r))
                    }
                };
                if out.send(c).is_err() {
                    return;
                }
            }
            let stopped = || "the thread reading the host stopped".to_string();
            let _ = match (placed, rest_due) {
                (false, _) => out.send(AppCommand::Loaded(0, Box::new(Err(stopped())))),
                // Said in the window, as a stopped first reading is.
                (true, true) => out.send(AppCommand::Detailed(0, Box::new(Err(stopped())))),
                (true, false) => Ok(()),
            };
        });
        ComponentParts { model, widgets }
    }

    fn update(&mut self, msg: AppInput, sender: ComponentSender<Self>, root: &Self::Root) {
        // What the person does may need the whole host: a sketch still listed is finished
        // first.
        if needs_host(&msg) {
            self.settle();
        }
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
                HeaderOutput::Apply => self.apply(&sender),
            },
            AppInput::Card(c) => match c {
                CardMsg::Menu(g, at) => self.open_menu(g, at, &sender),
                CardMsg::Why(g) => self.open_why(g, root),
                CardMsg::Choose(g) => self.open_assign(g, root, &sender),
                CardMsg::Expanded(g, on) => self.hosts.set_expanded(g, on),
                CardMsg::SetVisible(a, on) => {
                    let what = if on {
                        trf(
                            "{device} is shown to the guest.",
                            &[("device", &a.to_string())],
                        )
                    } else {
                        trf(
                            "{device} is hidden from the guest.",
                            &[("device", &a.to_string())],
                        )
                    };
                    self.edit(what, move |p, _| p.set_visible(a, on))
                }
                CardMsg::SetAddress(a, text) => self.set_address(a, &text),
            },
            AppInput::Assign { group, guest } => self.assign(group, guest),
            AppInput::Unassign(g) => self.edit(
                trf("Group {id} is out of the plan.", &[("id", &g.to_string())]),
                move |p, _| p.unassign(g).map(|_| ()),
            ),
            AppInput::Lifecycle(guest, l) => {
                let what = match l {
                    plan::Lifecycle::Kept => trf(
                        "{guest}'s groups are claimed by Apply and stay on vfio-pci.",
                        &[("guest", &guest)],
                    ),
                    plan::Lifecycle::OnStart => trf(
                        "{guest}'s groups are claimed when it starts and given back when it stops.",
                        &[("guest", &guest)],
                    ),
                };
                self.edit(what, move |p, _| p.set_lifecycle(&guest, l))
            }
            // Ctrl+Z in a text field (search, a guest address) is the field's own undo: the
            // window's shortcuts run before the field sees the key.
            AppInput::Undo => {
                if !text_field_action(root, "text.undo") {
                    self.step(true);
                }
            }
            AppInput::Redo => {
                if !text_field_action(root, "text.redo") {
                    self.step(false);
                }
            }
            AppInput::Width(w) => {
                let narrow = w > 0 && w < NARROW;
                if narrow != self.narrow {
                    self.narrow = narrow;
                    self.header.sender().emit(HeaderInput::Narrow(narrow));
                    self.show_guests.set_visible(narrow);
                }
                self.show_panes();
            }
            AppInput::ShowGuests => self.show_panes(),
            AppInput::OpenDemo => self.open_demo(&sender),
            AppInput::OpenMachine(m) => self.open_machine(m, &sender),
            AppInput::ConnectMachine => self.ask_machine(root),
            AppInput::Refused(why) => self.say(&Said::error(why), Offer::Nothing),
            AppInput::Remap => self.remap(),
            AppInput::Readiness => self.open_readiness(root),
            AppInput::About => {
                let w = crate::shortcuts::about(root.upcast_ref());
                if let Some(p) = &self.probe {
                    p.opened("about", w.upcast_ref());
                }
            }
            AppInput::Search => self.header.sender().emit(HeaderInput::Search),
            AppInput::Why(g) => self.open_why(g, root),
            AppInput::ShowTopology(on) => {
                // The switch's own toggle after Ctrl+1/Ctrl+2 set it: already done.
                if on == self.topology_shown() {
                    return;
                }
                // From Ctrl+1/Ctrl+2 too: the header's switch shows which view is on.
                let [list, topo] = &self.view_buttons;
                if on { topo } else { list }.set_active(true);
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
                    // Shown before the host was whole (asked for while it was read).
                    self.settle();
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

    fn update_cmd(&mut self, cmd: AppCommand, sender: ComponentSender<Self>, root: &Self::Root) {
        match cmd {
            AppCommand::ApplyChecked(blocked) => self.apply_checked(blocked, root, &sender),
            AppCommand::Loaded(n, r) => {
                if n == self.machine.load(std::sync::atomic::Ordering::Relaxed) {
                    self.loaded(*r, &sender);
                }
            }
            AppCommand::Detailed(n, r) => {
                // Nothing to do when the sketch was finished here already (or replaced).
                if n != self.machine.load(std::sync::atomic::Ordering::Relaxed)
                    || !self.hosts.sketched()
                {
                    return;
                }
                match *r {
                    Ok(read) => {
                        if let Some((host, moved)) = self.hosts.finish(read) {
                            self.detailed(host, moved);
                        }
                    }
                    // The rest could not be read (or the thread reading it stopped): said in
                    // the window, as a scan's error is; not read again here, where what
                    // stopped that thread would stop the window.
                    Err(e) => self.cannot_read(e),
                }
            }
            AppCommand::MachineChanged(n) => {
                // Another machine's change: its model read again from its helper (what the
                // helper tells is what changed there, not a device to re-read here).
                if n != self.machine.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if self.rereading {
                    self.reread_again = true;
                    return;
                }
                self.rereading = true;
                self.read_again(&sender);
                if let Some(p) = &self.probe {
                    p.event_applied(Instant::now());
                }
            }
            AppCommand::Event(ev, at, kernel) => {
                // Before the host is whole, kept for when it is (the rest read meanwhile may
                // or may not have seen the change; the event's own read decides).
                if self.hosts.sketched() {
                    self.early_events.push((ev, at, kernel));
                } else {
                    self.on_event(ev, at, kernel);
                }
            }
            AppCommand::Progress(d) => {
                // Each step as it is done, for screen readers (the window shows the log).
                self.toaster.announce(&if d.ok {
                    trf("Done: {step}", &[("step", &d.step.describe())])
                } else {
                    trf(
                        "Failed: {step}: {why}",
                        &[("step", &d.step.describe()), ("why", &d.message)],
                    )
                });
                if let Some(a) = &self.dialogs.apply {
                    a.sender().emit(ApplyInput::Done(d));
                }
            }
            AppCommand::Applied(r) => {
                self.toaster.announce(&match r.as_ref() {
                    Ok(o) if o.ok() => tr("Done: the plan is applied."),
                    Ok(_) => tr("Not applied: see Apply's window for what was given back."),
                    Err(_) => tr("Not applied: see Apply's window for why."),
                });
                if let Some(a) = &self.dialogs.apply {
                    a.sender().emit(ApplyInput::Finished(*r));
                }
                // The host changed: read it again (off the main loop).
                self.read_again(&sender);
            }
        }
    }
}

impl App {
    /// The host (and plan, and guests) arrived: draw them, and start following device events.
    fn loaded(&mut self, r: Result<Loaded, String>, sender: &ComponentSender<Self>) {
        // Read after them: what they changed is in this reading.
        self.early_events.clear();
        self.status.sender().emit(StatusInput::Loaded);
        self.rereading = false;
        if std::mem::take(&mut self.reread_again) {
            let n = self.machine.load(std::sync::atomic::Ordering::Relaxed);
            self.input_command(sender, AppCommand::MachineChanged(n));
        }
        let l = match r {
            Ok(l) => l,
            Err(e) if self.opts.host.is_some() => {
                // Another machine that cannot be reached: why, in one line, and the way back;
                // the machine menu still has the others.
                let host = self
                    .opts
                    .host
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let s = self.input.clone();
                self.empty.set_child(Some(&notices::unreachable_page(
                    &host,
                    &e,
                    &self.registry,
                    move || s.emit(AppInput::OpenMachine(None)),
                )));
                self.registry
                    .texts
                    .borrow_mut()
                    .insert("unreachable".into(), e);
                // Nothing of the machine shown before stays: its plan, notices, cards and
                // guests.
                self.plan = Plan::default();
                self.undo.clear();
                self.redo.clear();
                self.update_actions();
                self.troubles = Troubles::default();
                self.notice_bar.set(Vec::new());
                self.hosts.set_host(None, &self.plan, &self.holders);
                self.guests.sender().emit(GuestsInput::Show {
                    entries: guests::entries(None, &self.plan, &[], &self.refusals),
                    no_bus: false,
                });
                self.host = None;
                self.set_page("unreachable");
                return;
            }
            Err(e) => {
                self.unreadable(e);
                return;
            }
        };
        self.troubles = Troubles {
            helper: l.helper_note,
            libvirt: l.libvirt_note,
            plan: l.plan_note,
            profiles: l.profiles_note,
            sandbox: l.sandbox_note,
            save: None,
        };
        self.kept_unreadable = false;
        // The plan on disk is not the one edited here (Apply reread it, or another tool wrote
        // it): Undo would bring back plans from before and write them over it.
        if l.plan != self.plan {
            self.undo.clear();
            self.redo.clear();
            self.update_actions();
        }
        self.plan = l.plan;
        self.known = l.known;
        self.holders = l.holders;
        // No group at all (the IOMMU off): a page that says why and what to do in place of
        // an empty list.
        if l.facts.placed().groups.is_empty() {
            let s = self.input.clone();
            self.empty.set_child(Some(&notices::no_groups_page(
                l.facts.placed(),
                &self.registry,
                move || s.emit(AppInput::OpenDemo),
            )));
            self.set_page("no-groups");
        } else {
            self.set_page("host");
        }
        // A sketch: the list is drawn from it now, the rest of the window once it is whole.
        self.host = match &l.facts {
            load::Facts::Whole(h) => Some(h.clone()),
            load::Facts::Sketch(_) => None,
        };
        self.hosts.set_facts(
            l.facts,
            l.source.clone(),
            l.outline,
            &self.plan,
            &self.holders,
        );
        self.source = l.source;
        if let Some(m) = &self.opts.host {
            // Remembered once per opening, not at every re-read after a change.
            if self.following_machine.get()
                != Some(self.machine.load(std::sync::atomic::Ordering::Relaxed))
            {
                settings::remember_host(self.settings.as_ref(), m);
                self.tell_header_machines();
            }
            self.follow_machine(m.clone(), sender);
        }
        let t = Instant::now();
        self.redraw();
        give_back_freed_memory();
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            rss = rss_kib(),
            "list built"
        );
        let live = self.opts.demo.is_none() && self.opts.root.is_none() && self.opts.host.is_none();
        if live && !self.kernel_followed {
            self.kernel_followed = true;
            sender.spawn_command(|out| {
                events::follow_kernel(|ev| {
                    out.send(AppCommand::Event(ev, Instant::now(), true))
                        .is_ok()
                })
            });
        }
        if let Some(p) = &self.probe {
            p.set_listed();
            if self.host.is_some() {
                p.set_loaded();
            }
        }
        // Tests and benchmarks inject events through the same path as the kernel's: lines
        // "ACTION ADDRESS" on the probe's FIFO.
        if let Some(path) = probe::Probe::events_path().filter(|_| !self.following) {
            sender.spawn_command(move |out| {
                events::follow_fifo(&path, |ev| {
                    out.send(AppCommand::Event(ev, Instant::now(), false))
                        .is_ok()
                })
            });
        }
        self.following = true;
    }

    /// A device event: one device and its group re-read, never the whole host; one card
    /// redrawn.
    fn on_event(&mut self, ev: DeviceEvent, at: Instant, kernel: bool) {
        let (Some(host), Some(src)) = (&mut self.host, &self.source) else {
            return;
        };
        // This machine's kernel says nothing about the demo host or another machine
        // opened in its place.
        if kernel && (self.opts.demo.is_some() || self.opts.host.is_some()) {
            return;
        }
        // One device and its group re-read, never the whole host; one card redrawn.
        // The list lets go of its share first, so the host is changed in place (a
        // copy only while an Export window or Apply still holds the one before).
        let page = host.platform.page_size.max(4096);
        let Ok(read) = passage_core::watch::read_event(src.root(), &ev, page) else {
            return;
        };
        self.hosts.let_go();
        // A closed Export window still holds the host it opened with (its controller
        // is kept until the next one): let go of it too.
        if self
            .dialogs
            .export
            .as_ref()
            .is_some_and(|d| !d.widget().is_visible())
        {
            self.dialogs.export = None;
        }
        let u = passage_core::watch::apply_read(Arc::make_mut(host), &ev, read);
        self.hosts.took_back(host.clone());
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

    /// The window's page for a host that could not be read, with why.
    fn unreadable(&mut self, e: String) {
        let s = self.input.clone();
        self.empty.set_child(Some(&notices::unreadable_page(
            &e,
            &self.registry,
            move || s.emit(AppInput::OpenDemo),
        )));
        self.set_page("unreadable");
    }

    /// A sketch still listed is made whole now, on every core (on an ordinary host, a few
    /// milliseconds; it is read off the main loop anyway and usually here before anyone acts).
    fn settle(&mut self) {
        let t = Instant::now();
        match self.hosts.finish_here() {
            None => {}
            Some(Ok((host, moved))) => {
                tracing::debug!(ms = t.elapsed().as_millis() as u64, "finished here");
                self.detailed(host, moved);
            }
            Some(Err(e)) => self.cannot_read(e),
        }
    }

    /// The rest of a sketched host could not be read: nothing of it stays listed.
    fn cannot_read(&mut self, e: String) {
        self.host = None;
        self.early_events.clear();
        self.hosts.set_host(None, &self.plan, &self.holders);
        self.unreadable(e);
    }

    /// The host is whole: the rest of the window (notices, summary, guests) is drawn from it
    /// (the list too when a device went away meanwhile), then the device events that came
    /// before it are applied.
    fn detailed(&mut self, host: Arc<Host>, moved: bool) {
        self.host = Some(host);
        if moved {
            self.refresh();
        } else {
            self.redraw_around();
        }
        if let Some(p) = &self.probe {
            p.set_loaded();
        }
        for (ev, at, kernel) in std::mem::take(&mut self.early_events) {
            self.on_event(ev, at, kernel);
        }
    }

    /// Lists the host again from the model as it is now (every card made again as it is
    /// drawn), then draws everything.
    fn refresh(&mut self) {
        if self.host.is_none() {
            return;
        }
        self.hosts
            .set_host(self.host.clone(), &self.plan, &self.holders);
        self.redraw();
    }

    /// The plan changed (the host did not): every card is made again as it is drawn, then
    /// everything is drawn.
    fn replan(&mut self) {
        self.hosts.set_plan(&self.plan, &self.holders);
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
        // A filter on words, kinds or states reads every card: the whole host first.
        if self.filter.needs_cards() {
            self.settle();
        }
        self.hosts.show(&self.filter);
        self.redraw_around();
    }

    /// Everything but the list: the Topology view (when shown), notices, the summary line and
    /// the guests.
    fn redraw_around(&mut self) {
        self.topology_soon();
        let Some(host) = &self.host else {
            return;
        };
        let status = self.status.sender();
        let drift = plan::drift(&self.plan, host);
        self.notice_bar
            .set(notices::notices(host, &self.troubles, &drift));
        status.emit(StatusInput::Summary(status::summary_line(host, &self.plan)));
        self.guests.sender().emit(GuestsInput::Show {
            entries: guests::entries(Some(host), &self.plan, &self.known, &self.refusals),
            no_bus: self.troubles.no_bus(),
        });
        if let Some(p) = &self.probe {
            p.set_plan(self.plan.to_json());
        }
    }

    /// Says what an edit, a save or a refusal came to, in a toast (and to screen readers).
    fn say(&self, said: &Said, offer: Offer) {
        self.toaster.say(said, offer);
    }

    /// Writes the plan to its file; why not, when it could not be (in words; the system's
    /// error goes to the notice's Details). A plan file that could not be read is kept
    /// beside it (NAME.unreadable) before the first save over it.
    fn save(&mut self) -> Option<Said> {
        let p = self.plan_path.clone()?;
        if self.troubles.plan.is_some() && !self.kept_unreadable && p.exists() {
            let mut aside = p.clone().into_os_string();
            aside.push(".unreadable");
            if let Err(e) = std::fs::copy(&p, &aside) {
                self.troubles.save = Some(e.to_string());
                return Some(Said::error(trf(
                    "Not saved: the unreadable plan {file} could not be kept aside first.",
                    &[("file", &settings::display_path(&p))],
                )));
            }
            self.kept_unreadable = true;
        }
        match store::save_plan(&p, &self.plan) {
            Ok(()) => {
                self.troubles.save = None;
                None
            }
            Err(e) => {
                self.troubles.save = Some(e.to_string());
                Some(Said::error(trf(
                    "The change is made here but could not be saved to {file}.",
                    &[("file", &settings::display_path(&p))],
                )))
            }
        }
    }

    /// An edit the plan takes only if it adds no error; then saved, said with Undo. A refusal
    /// or a failed save stays in its toast until the next one.
    fn edit(
        &mut self,
        what: String,
        edit: impl FnOnce(&mut Plan, &Host) -> Result<(), plan::PlanError>,
    ) {
        let Some(host) = self.host.clone() else {
            return;
        };
        let before = self.plan.clone();
        match self.plan.try_edit(&host, |p| edit(p, &host)) {
            Ok(_) => self.done(before, what),
            Err(e) => self.say(&Said::error(e.to_string()), Offer::Nothing),
        }
        self.replan();
    }

    /// An edit went through: kept for Undo (unless it changed nothing), saved, said.
    fn done(&mut self, before: Plan, what: String) {
        if before == self.plan {
            self.say(&Said::news(what), Offer::Nothing);
            return;
        }
        self.undo.push(Edit {
            before,
            what: what.clone(),
        });
        if self.undo.len() > UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.redo.clear();
        self.update_actions();
        let said = self.save().unwrap_or_else(|| Said::news(what));
        self.say(&said, Offer::Undo);
    }

    /// Ctrl+Z (`back`): the plan as it was before the last edit, Redo offered; Ctrl+Shift+Z:
    /// the last edit taken back done again, Undo offered. Either way saved, and the plan it
    /// leaves goes on the other stack.
    fn step(&mut self, back: bool) {
        let (from, to) = if back {
            (&mut self.undo, &mut self.redo)
        } else {
            (&mut self.redo, &mut self.undo)
        };
        let Some(e) = from.pop() else {
            return;
        };
        let left = std::mem::replace(&mut self.plan, e.before);
        to.push(Edit {
            before: left,
            what: e.what.clone(),
        });
        let (news, offer) = if back {
            (trf("Undone: {what}", &[("what", &e.what)]), Offer::Redo)
        } else {
            (e.what, Offer::Undo)
        };
        let said = self.save().unwrap_or_else(|| Said::news(news));
        self.update_actions();
        self.say(&said, offer);
        self.replan();
    }

    fn update_actions(&self) {
        self.undo_action.set_enabled(!self.undo.is_empty());
        self.redo_action.set_enabled(!self.redo.is_empty());
        self.registry.texts.borrow_mut().insert(
            "undo".into(),
            format!("{} {}", self.undo.len(), self.redo.len()),
        );
    }

    /// A group dropped on (or chosen for) a guest: planned, or refused with the reason shown
    /// at the guest and in a toast (and the plan left as it was).
    fn assign(&mut self, group: GroupId, guest: String) {
        let Some(host) = self.host.clone() else {
            return;
        };
        let before = self.plan.clone();
        if self.plan.guest(&guest).is_none() {
            if let Some(g) = self.known.iter().find(|k| k.name == guest).cloned() {
                let _ = self.plan.add_guest(g);
            }
        }
        match view::drop_on(&mut self.plan, &host, group, &guest) {
            Ok(_) => {
                self.refusals.remove(&guest);
                let what = trf(
                    "Group {id} is planned for {guest}; press Apply to claim it.",
                    &[("id", &group.to_string()), ("guest", &guest)],
                );
                self.done(before, what);
            }
            Err(e) => {
                self.plan = before;
                self.refusals.insert(guest, e.to_string());
                self.say(&Said::error(e.to_string()), Offer::Nothing);
            }
        }
        self.replan();
    }

    /// Which page the main area shows: "host" (the list and guests) or a page in their place
    /// ("no-groups", "unreadable").
    fn set_page(&self, name: &str) {
        self.main
            .set_visible_child_name(if name == "host" { "host" } else { "empty" });
        self.registry
            .texts
            .borrow_mut()
            .insert("page".into(), name.to_string());
    }

    /// Both panes side by side, or in a narrow window one at a time (the header's Guests
    /// button chooses which; "Assign to…" on a group reaches every guest either way).
    fn show_panes(&self) {
        let guests = self.narrow && self.show_guests.is_active();
        self.status.widget().set_visible(!guests);
        self.guests.widget().set_visible(!self.narrow || guests);
        // One pane alone takes the width whatever the divider's place.
        self.paned.set_shrink_start_child(self.narrow);
        self.registry.texts.borrow_mut().insert(
            "layout".into(),
            match (self.narrow, guests) {
                (false, _) => "both",
                (true, false) => "host",
                (true, true) => "guests",
            }
            .into(),
        );
    }

    /// The bundled demo host in place of this one (which has nothing to show): its guests and
    /// its plan kept in memory, nothing on this machine touched.
    fn open_demo(&mut self, sender: &ComponentSender<Self>) {
        self.opts.demo = Some(passage_core::demo::DemoHost::Workstation);
        self.opts.root = None;
        self.opts.plan = None;
        self.opts.host = None;
        self.switch_machine(sender);
    }

    /// Another machine (over SSH), or this computer again, in place of what is shown: its own
    /// plan, its guests; nothing of the last one's edits carried over.
    fn open_machine(
        &mut self,
        machine: Option<passage_core::Remote>,
        sender: &ComponentSender<Self>,
    ) {
        self.opts = match machine {
            // This computer as the app was opened on it (its --root, its --plan).
            None => self.local.clone(),
            Some(m) => Options {
                host: Some(m),
                ..Options::default()
            },
        };
        self.switch_machine(sender);
    }

    /// After `opts` changed machine: everything of the last one forgotten, the new one read.
    fn switch_machine(&mut self, sender: &ComponentSender<Self>) {
        self.machine
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rereading = false;
        self.reread_again = false;
        // Nothing of the last machine may be edited, saved or applied under the next one's
        // name while it is read (over ssh that takes seconds).
        self.host = None;
        self.source = None;
        self.plan = Plan::default();
        self.known.clear();
        self.holders = Holders::new();
        self.troubles = Troubles::default();
        self.notice_bar.set(Vec::new());
        self.hosts.set_host(None, &self.plan, &self.holders);
        self.hosts.show(&self.filter);
        self.guests.sender().emit(GuestsInput::Show {
            entries: guests::entries(None, &self.plan, &[], &self.refusals),
            no_bus: false,
        });
        self.set_page("host");
        self.plan_path = self.opts.plan_path();
        self.tell_header_machines();
        self.status.sender().emit(StatusInput::Reading);
        self.undo.clear();
        self.redo.clear();
        self.refusals.clear();
        self.update_actions();
        if let Some(p) = &self.probe {
            p.set_plan_path(self.plan_path.as_deref());
        }
        self.header
            .sender()
            .emit(HeaderInput::Subtitle(header::subtitle(&self.opts)));
        self.read_again(sender);
    }

    /// Reads the machine shown again, off the main loop (stamped with its number).
    fn read_again(&self, sender: &ComponentSender<Self>) {
        let o = self.opts.clone();
        let n = self.machine.load(std::sync::atomic::Ordering::Relaxed);
        sender
            .spawn_oneshot_command(move || AppCommand::Loaded(n, Box::new(load::load(&o, false))));
    }

    /// A device's guest address as typed: empty or "auto" lets Passage place it.
    fn set_address(&mut self, a: PciAddress, text: &str) {
        let text = text.trim();
        let device = a.to_string();
        if text.is_empty() || text == "auto" {
            let what = trf(
                "Passage places {device} in the guest.",
                &[("device", &device)],
            );
            self.edit(what, move |p, _| p.set_guest_address(a, None));
            return;
        }
        match text.parse::<plan::GuestAddress>() {
            Ok(at) => {
                let what = trf(
                    "{device} will be at {address} in the guest.",
                    &[("device", &device), ("address", &at.to_string())],
                );
                self.edit(what, move |p, _| p.set_guest_address(a, Some(at)))
            }
            Err(e) => self.say(&Said::error(e.to_string()), Offer::Nothing),
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
        root: &adw::ApplicationWindow,
        sender: &ComponentSender<Self>,
    ) {
        let dlg = AssignDialog::builder()
            .launch(AssignInit {
                parent: root.clone().upcast(),
                group: g,
                title: guests::title_of(self.host.as_deref(), g),
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

    /// Host Readiness: the doctor's findings for the machine shown (this one, a recorded
    /// tree, or the demo host); another machine's are read there (`passagectl -H` has no doctor).
    fn open_readiness(&mut self, root: &adw::ApplicationWindow) {
        if self.opts.host.is_some() {
            self.toaster.announce(&tr(
                "Host Readiness reads the machine it runs on: run passagectl doctor on that machine.",
            ));
            return;
        }
        let dlg = ReadinessDialog::builder()
            .launch(ReadinessInit {
                parent: root.clone().upcast(),
                source: ReadinessSource {
                    demo: self.opts.demo,
                    root: self.opts.root.clone(),
                },
                registry: self.registry.clone(),
            })
            .detach();
        dlg.widget().present();
        if let Some(p) = &self.probe {
            p.opened("readiness", dlg.widget().upcast_ref());
        }
        self.dialogs.readiness = Some(dlg);
    }

    /// "Why?" for a group.
    fn open_why(&mut self, g: GroupId, root: &adw::ApplicationWindow) {
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
    fn open_export(&mut self, root: &adw::ApplicationWindow) {
        let Some(host) = &self.host else {
            return;
        };
        // QEMU's form as `passagectl export` chooses it: from this machine's kernel and QEMU
        // (a recording's or the demo's kernel, with their QEMU unknown; nothing for another
        // machine, whose files are not here).
        let iommufd = match (&self.source, &self.opts.host) {
            (Some(src), None) => {
                use passage_core::export::qemu;
                let live = self.opts.demo.is_none() && self.opts.root.is_none();
                let program = qemu::program();
                let q = live.then(|| (program.as_str(), qemu::version(&program)));
                qemu::choose_iommufd(passage_core::vfio::kernel_interfaces(src.root()), q)
            }
            _ => (false, None),
        };
        let dlg = ExportDialog::builder()
            .launch(ExportInit {
                parent: root.clone().upcast(),
                plan: self.plan.clone(),
                host: host.clone(),
                iommufd,
            })
            .detach();
        if let Some(p) = &self.probe {
            p.opened("export", dlg.widget().upcast_ref());
            p.set_preview(dlg.model().buffer.clone());
        }
        self.dialogs.export = Some(dlg);
    }

    /// Apply: the steps shown, then run through the helper off the main loop.
    fn apply(&mut self, sender: &ComponentSender<Self>) {
        if self.host.is_none() {
            return;
        }
        if self.opts.demo.is_some() {
            self.say(&Said::news(tr("This is the demo host, not this machine: nothing to apply. Export the plan to see what it would write.")), Offer::Nothing);
            return;
        }
        // Another machine's helper answered when it was read: Apply goes to it.
        if self.opts.host.is_some() {
            self.input_command(sender, AppCommand::ApplyChecked(None));
            return;
        }
        // Asked again now (the helper may have been installed since the host was read), off
        // the main loop (a bus that hangs must not freeze the window): with no bus or no
        // helper, Apply's window says so and what to do instead of failing.
        sender.spawn_oneshot_command(|| {
            AppCommand::ApplyChecked(match passage_dbus::helper_reachable() {
                Ok(()) | Err(passage_dbus::Unreachable::Failed(_)) => None,
                Err(u) => Some(u),
            })
        });
    }

    /// Apply, once it is known whether the helper can be reached.
    fn apply_checked(
        &mut self,
        blocked: Option<passage_dbus::Unreachable>,
        root: &adw::ApplicationWindow,
        sender: &ComponentSender<Self>,
    ) {
        let Some(host) = self.host.clone() else {
            return;
        };
        let steps = match (
            &blocked,
            passage_core::apply::steps(&self.plan, &host, None),
        ) {
            (_, Ok(s)) => s,
            (Some(_), Err(_)) => Vec::new(),
            (None, Err(e)) => {
                self.say(&Said::error(e.to_string()), Offer::Nothing);
                return;
            }
        };
        let dlg = ApplyDialog::builder()
            .launch(ApplyInit {
                parent: root.clone().upcast(),
                steps: steps.clone(),
                blocked: blocked.clone(),
            })
            .detach();
        if let Some(p) = &self.probe {
            p.opened("apply", dlg.widget().upcast_ref());
            p.set_apply_log(dlg.model().buffer.clone());
        }
        self.dialogs.apply = Some(dlg);
        if blocked.is_some() {
            return;
        }
        self.toaster.announce(&tr("Applying the plan…"));
        let plan = self.plan.clone();
        let machine = self.opts.host.clone();
        sender.spawn_command(move |out| {
            let r = passage_dbus::SystemExecutor::new(&plan, &host)
                .map_err(|e| e.to_string())
                .map(|exec| exec.on(machine))
                .map(|mut exec| {
                    passage_core::apply::run(&plan, &steps, &mut exec, &mut |d| {
                        let _ = out.send(AppCommand::Progress(d.clone()));
                    })
                });
            let _ = out.send(AppCommand::Applied(Box::new(r)));
        });
    }
}

impl App {
    /// A command of the app's own, as if it came from off the main loop.
    fn input_command(&self, sender: &ComponentSender<Self>, cmd: AppCommand) {
        sender.spawn_oneshot_command(move || cmd);
    }

    /// The header's machine menu: which machine is open, and the ones opened lately.
    fn tell_header_machines(&self) {
        self.header.sender().emit(HeaderInput::Machines {
            current: self.opts.host.clone(),
            recent: settings::recent_hosts(self.settings.as_ref()),
        });
    }

    /// Follows another machine's device changes (its helper's signals) for as long as it is
    /// the one shown: each change reads its model again.
    fn follow_machine(&self, m: passage_core::Remote, sender: &ComponentSender<Self>) {
        let now = self.machine.load(std::sync::atomic::Ordering::Relaxed);
        if self.following_machine.get() == Some(now) {
            return;
        }
        self.following_machine.set(Some(now));
        let machine = self.machine.clone();
        sender.spawn_command(move |out| {
            let shown = || machine.load(std::sync::atomic::Ordering::Relaxed) == now;
            // A change between the first reading and the subscription: read once more.
            let r = passage_dbus::remote::follow_machine(
                &m,
                shown,
                || {
                    let _ = out.send(AppCommand::MachineChanged(now));
                },
                |_| shown() && out.send(AppCommand::MachineChanged(now)).is_ok(),
            );
            if let Err(e) = r {
                tracing::warn!("{e}");
            }
        });
    }

    /// "Follow the Cards": every planned group whose cards moved (found once on this host by
    /// their ids) moved in the plan to where they are, as one edit Undo takes back.
    fn remap(&mut self) {
        let Some(host) = &self.host else { return };
        let moves: Vec<plan::Remap> = plan::drift(&self.plan, host)
            .into_iter()
            .filter_map(|d| match d {
                plan::Drift::Moved(r) => Some(r),
                _ => None,
            })
            .collect();
        if moves.is_empty() {
            return;
        }
        let what = moves
            .iter()
            .map(|r| {
                trf(
                    "Group {from} of {guest} is now group {to}, where its cards are.",
                    &[
                        ("from", &r.from.to_string()),
                        ("guest", &r.guest),
                        ("to", &r.to.to_string()),
                    ],
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        self.edit(what, move |p, _| p.remap_all(&moves));
    }

    /// "Connect to Another Machine…": asks for `[USER@]HOST`.
    fn ask_machine(&self, root: &adw::ApplicationWindow) {
        let entry = gtk::Entry::new();
        entry.set_placeholder_text(Some("admin@server"));
        entry.set_activates_default(true);
        crate::a11y::accessible_label(&entry, &tr("Machine"));
        let d = adw::MessageDialog::new(
            Some(root),
            Some(&tr("Connect to Another Machine")),
            Some(&tr("Passage reaches it over SSH, as “systemctl -H” does: the Passage helper must be installed there, and that machine's polkit decides what you may change. Give the machine as HOST or USER@HOST; ports and keys go in ~/.ssh/config.")),
        );
        d.set_extra_child(Some(&entry));
        d.add_response("cancel", &tr("Cancel"));
        d.add_response("connect", &tr("Connect"));
        d.set_response_appearance("connect", adw::ResponseAppearance::Suggested);
        d.set_default_response(Some("connect"));
        d.set_close_response("cancel");
        let input = self.input.clone();
        d.connect_response(None, move |_, response| {
            if response != "connect" {
                return;
            }
            match entry.text().trim().parse::<passage_core::Remote>() {
                Ok(m) => input.emit(AppInput::OpenMachine(Some(m))),
                Err(e) => input.emit(AppInput::Refused(e.to_string())),
            }
        });
        if let Some(p) = &self.probe {
            p.opened("connect", d.upcast_ref());
        }
        d.present();
    }
}

/// The header's two buttons that switch between the list and the Topology view.
fn view_switch(
    [list, topo]: &[gtk::ToggleButton; 2],
    registry: &Registry,
    input: &relm4::Sender<AppInput>,
) -> gtk::Box {
    let b = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    b.add_css_class("linked");
    list.set_label(&tr("List"));
    topo.set_label(&tr("Topology"));
    topo.set_group(Some(list));
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
    b.append(list);
    b.append(topo);
    b
}

/// The window's actions: Undo and Redo (disabled until there is something to take back),
/// About, and the search field; with their shortcuts.
fn window_actions(
    root: &adw::ApplicationWindow,
    input: &relm4::Sender<AppInput>,
) -> (gio::SimpleAction, gio::SimpleAction) {
    let action = |name: &str, msg: fn() -> AppInput| {
        let a = gio::SimpleAction::new(name, None);
        let s = input.clone();
        a.connect_activate(move |_, _| s.emit(msg()));
        root.add_action(&a);
        a
    };
    let undo = action("undo", || AppInput::Undo);
    let redo = action("redo", || AppInput::Redo);
    undo.set_enabled(false);
    redo.set_enabled(false);
    action("about", || AppInput::About);
    action("readiness", || AppInput::Readiness);
    action("export", || AppInput::Header(HeaderOutput::Export));
    action("search", || AppInput::Search);
    action("view-list", || AppInput::ShowTopology(false));
    action("view-topology", || AppInput::ShowTopology(true));
    action("connect-machine", || AppInput::ConnectMachine);
    action("remap", || AppInput::Remap);
    // The machine menu's items: "" for this computer, else [USER@]HOST.
    let open = gio::SimpleAction::new("open-machine", Some(gtk::glib::VariantTy::STRING));
    {
        let s = input.clone();
        open.connect_activate(move |_, target| {
            let Some(word) = target.and_then(|v| v.get::<String>()) else {
                return;
            };
            if word.is_empty() {
                s.emit(AppInput::OpenMachine(None));
            } else {
                match word.parse() {
                    Ok(m) => s.emit(AppInput::OpenMachine(Some(m))),
                    Err(e) => s.emit(AppInput::Refused(format!("{e}"))),
                }
            }
        });
    }
    root.add_action(&open);
    let app = relm4::main_application();
    for (name, keys) in crate::shortcuts::ACCELS {
        app.set_accels_for_action(name, keys);
    }
    (undo, redo)
}

/// When the keyboard is in a text field, runs its own action (GtkText's `text.undo` or
/// `text.redo`) and says so.
fn text_field_action(root: &adw::ApplicationWindow, action: &str) -> bool {
    let Some(text) = gtk::prelude::GtkWindowExt::focus(root).and_downcast::<gtk::Text>() else {
        return false;
    };
    let _ = text.activate_action(action, None);
    true
}
