//! Reading the host, the plan and the guests off the main loop: from the moment the process
//! starts (`start`), and again after Apply (`load`).

use crate::memory::rss_kib;
use crate::Options;
use passage_core::demo::Source;
use passage_core::i18n::tr;
use passage_core::model::Host;
use passage_core::plan::{self, Plan};
use passage_core::scan;
use passage_core::session::{KnownGuests, PlanSource};
use passage_core::sketch::{self, Sketch};
use passage_core::view::{self, Holders};
use std::sync::{mpsc, Arc};

/// What the background scan brings back.
#[derive(Debug)]
pub struct Loaded {
    /// Where the host was read from (kept for re-reading one device on an event, and by the
    /// list for the rest of a sketch); `None` for another machine, whose helper tells its
    /// changes.
    pub source: Option<Arc<Source>>,
    /// The host as read so far.
    pub facts: Facts,
    /// The plan being edited.
    pub plan: Plan,
    /// Guests the plan does not hold yet: local profiles, libvirt domains, demo guests.
    pub known: Vec<plan::Guest>,
    /// Which libvirt guest holds which group now.
    pub holders: Holders,
    /// Why libvirt guests are missing, when they are.
    pub libvirt_note: Option<String>,
    /// Why the default plan could not be read, when it could not.
    pub plan_note: Option<String>,
    /// Why the local guest profiles could not be read, when they could not.
    pub profiles_note: Option<String>,
    /// What a sandbox hides from the scan, when the app runs in one.
    pub sandbox_note: Option<String>,
    /// Why Apply could not reach the helper, when it could not (not installed, no system bus).
    pub helper_note: Option<passage_dbus::Unreachable>,
    /// Every group under its section, in order (cards are made when their rows are drawn).
    pub outline: Vec<view::Outline>,
}

/// The host as read so far.
#[derive(Debug)]
pub enum Facts {
    /// All of it (shared with the list, which makes its cards as they are drawn).
    Whole(Arc<Host>),
    /// Every device placed, what only verdicts read still to come ([`First::Detailed`]); the
    /// list reads a group's share itself when its row is drawn first.
    Sketch(Box<Sketch>),
}

impl Facts {
    /// What the list is laid out from: right about every group's place, whole or not.
    pub fn placed(&self) -> &Host {
        match self {
            Facts::Whole(h) => h,
            Facts::Sketch(s) => s.so_far(),
        }
    }
}

/// What the first reading brings, in order.
#[derive(Debug)]
pub enum First {
    /// The host placed (or why not), with the plan and the guests.
    Loaded(Box<Result<Loaded, String>>),
    /// The rest of the host's facts, after a [`Facts::Sketch`].
    Detailed(Result<sketch::Read, String>),
}

/// Reads the host (and lays out its list) on threads of its own from the moment the process
/// starts, at a lower priority than GTK's main thread: the window's first frames come first,
/// and the rest of both cores goes to the scan while GTK starts. The list needs only where
/// every group goes and the facts of the rows it draws (which it reads itself): the host is
/// sketched first and the rest read after it is sent, while the list is made and drawn.
pub fn start(opts: Options) -> mpsc::Receiver<First> {
    let (tx, rx) = mpsc::channel();
    let failed = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("passage-load".into())
        .spawn(move || {
            lower_priority();
            let loaded = load(&opts, true);
            let rest = match &loaded {
                Ok(Loaded {
                    facts: Facts::Sketch(s),
                    source: Some(src),
                    ..
                }) => Some((s.work(), src.clone())),
                _ => None,
            };
            if tx.send(First::Loaded(Box::new(loaded))).is_err() {
                return;
            }
            if let Some((work, src)) = rest {
                let read = niced_pool().and_then(|pool| {
                    pool.install(|| sketch::read(src.root(), &work))
                        .map_err(|e| e.to_string())
                });
                let _ = tx.send(First::Detailed(read));
            }
        });
    if let Err(e) = spawned {
        let _ = failed.send(First::Loaded(Box::new(Err(e.to_string()))));
    }
    rx
}

/// Threads on every core below the main loop's priority, for reading the host while the
/// window starts and draws: one pool for the process (each re-read uses the same threads).
pub fn niced_pool() -> Result<&'static rayon::ThreadPool, String> {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let p = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("passage-work-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .map_err(|e| e.to_string())?;
    Ok(POOL.get_or_init(|| p))
}

/// Nice 10 for the calling thread (Linux applies PRIO_PROCESS with pid 0 to the thread).
fn lower_priority() {
    let _ = rustix::process::setpriority_process(None, 10);
}

/// Reads everything the window shows (`sketched`: the host placed, its details left to
/// [`sketch::read`]); an error is a sentence for the banner.
pub fn load(opts: &Options, sketched: bool) -> Result<Loaded, String> {
    if let Some(m) = &opts.host {
        return load_machine(opts, m);
    }
    let source = Source::open(opts.demo, opts.root.as_deref()).map_err(|e| e.to_string())?;
    // Every core, niced: GTK's main thread is served first and the scan takes what is left.
    let pool = niced_pool()?;
    let t = std::time::Instant::now();
    let facts = match sketched {
        true => Facts::Sketch(Box::new(
            pool.install(|| sketch::sketch(source.root()))
                .map_err(|e| e.to_string())?,
        )),
        false => Facts::Whole(Arc::new(
            pool.install(|| scan::scan(source.root()))
                .map_err(|e| e.to_string())?,
        )),
    };
    let host = facts.placed();
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rss = rss_kib(),
        sketched,
        "scanned"
    );
    // The same choices passagectl makes (core::session), except that an unreadable default
    // plan opens an empty one with a note instead of stopping: the app shows why and saves
    // over it only when the person edits.
    let opened = PlanSource::choose(opts.plan.as_deref(), opts.demo)
        .open()
        .map_err(|e| e.to_string())?;
    let plan_note = opened.note();
    let plan = opened.plan;
    let mut guests =
        KnownGuests::gather(opts.demo == Some(passage_core::demo::DemoHost::Workstation));
    if opts.demo.is_none() {
        guests.add_libvirt(passage_dbus::libvirt::system_guests(host));
    }
    let profiles_note = guests.profiles_error.as_ref().map(|e| e.to_string());
    let holders = guests.holders();
    let libvirt_note = guests.libvirt_error.clone();
    let known = guests.plan_guests();
    // Flatpak shows the app its own mounts and network, not the host's.
    let sandbox_note = (opts.demo.is_none()
        && opts.root.is_none()
        && std::path::Path::new("/.flatpak-info").exists())
    .then(|| tr("Passage runs in a Flatpak sandbox: it cannot see the host's mounts, swap and network routes, so no group is marked as needed by the host here. The helper checks that on the host before every claim and refuses such a group."));
    // Which group goes under which section (no verdict: a card is made when its row is
    // first drawn, so 10,000 groups cost the main loop only the rows on screen), and beside
    // it whether Apply can reach the helper, to say so now rather than when the person
    // presses it.
    let t = std::time::Instant::now();
    let (outline, helper_note) = pool.install(|| {
        rayon::join(
            || view::outline(host),
            || {
                opts.demo
                    .is_none()
                    .then(passage_dbus::helper_reachable)
                    .and_then(Result::err)
            },
        )
    });
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        rss = rss_kib(),
        "laid out"
    );
    Ok(Loaded {
        source: Some(Arc::new(source)),
        facts,
        plan,
        known,
        holders,
        libvirt_note,
        plan_note,
        profiles_note,
        sandbox_note,
        helper_note,
        outline,
    })
}

/// Another machine: its host model and libvirt domains from its helper and libvirt-dbus over
/// SSH, its own plan file (`hosts/HOST/plan.json`, or `--plan`), this user's guest profiles. An
/// error is one line naming the machine (ssh's reason, or the helper's).
fn load_machine(opts: &Options, m: &passage_core::Remote) -> Result<Loaded, String> {
    let t = std::time::Instant::now();
    let (host, domains) = passage_dbus::remote::open_machine(m)?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "read {m}");
    // The machine's own plan may be missing (an empty plan that the first edit creates) or
    // unreadable (shown, with a note, as the default plan is).
    let source = match &opts.plan {
        Some(p) => PlanSource::File(p.clone()),
        None => PlanSource::Default(opts.plan_path()),
    };
    let opened = source.open().map_err(|e| e.to_string())?;
    let plan_note = opened.note();
    let plan = opened.plan;
    let mut guests = KnownGuests::gather(false);
    guests.add_libvirt(domains.map(|ds| ds.iter().map(|d| d.to_known(&host)).collect()));
    let profiles_note = guests.profiles_error.as_ref().map(|e| e.to_string());
    let holders = guests.holders();
    let libvirt_note = guests.libvirt_error.clone();
    let known = guests.plan_guests();
    let outline = view::outline(&host);
    Ok(Loaded {
        source: None,
        facts: Facts::Whole(Arc::new(host)),
        plan,
        known,
        holders,
        libvirt_note,
        plan_note,
        profiles_note,
        sandbox_note: None,
        // Its helper just answered.
        helper_note: None,
        outline,
    })
}
