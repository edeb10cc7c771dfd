//! What a front end opens before it shows anything, decided once for the command line and the
//! app: which plan it works on ([`PlanSource`] → [`OpenedPlan`]) and which guests it can offer
//! ([`KnownGuests`]: local guest profiles, the demo's guests, libvirt's domains).
//!
//! The core has no D-Bus, so libvirt's domains are found by the caller (`passage_dbus::libvirt`)
//! and handed in already converted to [`KnownGuest`]s ([`KnownGuests::add_libvirt`]).
//!
//! Strictness is the caller's: what could not be read comes back beside what could
//! ([`OpenedPlan::fallback`], [`KnownGuests::profiles_error`], [`KnownGuests::libvirt_error`]),
//! so the command line can refuse to go on while the app shows a note and carries on.
//!
//! How the app adopts it (what its `load` does today, in one place):
//! ```no_run
//! # use passage_core::session::{KnownGuests, PlanSource};
//! # fn libvirt_domains() -> Result<Vec<passage_core::session::KnownGuest>, String> { Ok(vec![]) }
//! # let (plan_file, demo): (Option<std::path::PathBuf>, bool) = (None, false);
//! let opened = PlanSource::choose(plan_file.as_deref(), demo).open()?;
//! let plan_note = opened.note(); // the default plan could not be read: shown, plan empty
//! let mut guests = KnownGuests::gather(demo);
//! if !demo {
//!     guests.add_libvirt(libvirt_domains()); // converted with the host at hand
//! }
//! let known = guests.plan_guests(); // what a group can be dropped on
//! let holders = guests.holders(); // groups libvirt's domains hold
//! # Ok::<(), passage_core::session::SessionError>(())
//! ```

use crate::address::GroupId;
use crate::i18n::tr;
use crate::plan::{Guest, Lifecycle, Plan, PlanError, Vmm};
use crate::store::{self, StoreError};
use crate::{demo, view};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where the plan comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// A file the person named (`--plan FILE`, or the plan the app opened last): it must be
    /// readable (a missing file is an empty plan that the first edit creates).
    File(PathBuf),
    /// The demo plan compiled in (`--demo` without `--plan`): shown and exported, never saved.
    /// The workstation has a plan with guests; the recorded variants start empty.
    Demo(demo::DemoHost),
    /// The user's plan file ([`store::default_plan_path`]); `None` when there is no home
    /// directory to keep it in.
    Default(Option<PathBuf>),
}

impl PlanSource {
    /// `--plan FILE` wins, then the demo plan with `--demo`, else the user's default plan.
    pub fn choose(file: Option<&Path>, demo: Option<demo::DemoHost>) -> Self {
        match (file, demo) {
            (Some(f), _) => PlanSource::File(f.to_path_buf()),
            (None, Some(v)) => PlanSource::Demo(v),
            (None, None) => PlanSource::Default(store::default_plan_path()),
        }
    }

    /// Where edits to this plan are saved: `None` for the built-in demo plan, and for the
    /// default plan without a home directory.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PlanSource::File(p) | PlanSource::Default(Some(p)) => Some(p),
            PlanSource::Demo(_) | PlanSource::Default(None) => None,
        }
    }

    /// Reads the plan. A file the person named and the demo plan must read; the default plan
    /// may not (no home directory, a broken file): then the plan is empty and
    /// [`OpenedPlan::fallback`] says why, for the caller to refuse or to show.
    pub fn open(&self) -> Result<OpenedPlan, SessionError> {
        let (plan, fallback) = match self {
            PlanSource::File(p) => (store::load_plan(p)?, None),
            PlanSource::Demo(demo::DemoHost::Workstation) => (demo::plan()?, None),
            PlanSource::Demo(_) => (Plan::default(), None),
            PlanSource::Default(None) => (Plan::default(), Some(Fallback::NoHome)),
            PlanSource::Default(Some(p)) => match store::load_plan(p) {
                Ok(plan) => (plan, None),
                Err(e) => (Plan::default(), Some(Fallback::Unreadable(e))),
            },
        };
        Ok(OpenedPlan {
            plan,
            path: self.path().map(Path::to_path_buf),
            fallback,
        })
    }
}

/// A plan as a front end works on it.
#[derive(Debug)]
pub struct OpenedPlan {
    pub plan: Plan,
    /// Where edits are saved ([`PlanSource::path`]). When [`OpenedPlan::fallback`] says the
    /// default file was unreadable this is still that file: saving replaces what could not be
    /// read, so a caller that edits should refuse first or say so.
    pub path: Option<PathBuf>,
    /// Why `plan` is an empty stand-in for the user's default plan; `None` when it is the plan.
    pub fallback: Option<Fallback>,
}

impl OpenedPlan {
    /// The plan exactly as its source has it, with where to save it; else why not (the command
    /// line's way: it refuses to show or edit a stand-in).
    pub fn exact(self) -> Result<(Plan, Option<PathBuf>), Fallback> {
        match self.fallback {
            Some(f) => Err(f),
            None => Ok((self.plan, self.path)),
        }
    }

    /// The sentence to show beside an empty stand-in plan (the app's way): the default plan
    /// file could not be read. Nothing when there is merely no home directory: the app opens
    /// an empty plan then, as it always has.
    pub fn note(&self) -> Option<String> {
        match &self.fallback {
            Some(f @ Fallback::Unreadable(_)) => Some(f.to_string()),
            Some(Fallback::NoHome) | None => None,
        }
    }
}

/// Why the default plan could not be opened.
#[derive(Debug)]
pub enum Fallback {
    /// No home directory (no `$HOME`, no absolute `$XDG_CONFIG_HOME`) to keep the plan in.
    NoHome,
    /// The file is there but is not a plan Passage can read.
    Unreadable(StoreError),
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::NoHome => f.write_str(&tr(
                "no home directory to keep the plan in; name a file with --plan FILE",
            )),
            Fallback::Unreadable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Fallback {}

/// Why a plan that must read did not.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The file named with `--plan`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The compiled-in demo plan (only a broken build can cause this).
    #[error(transparent)]
    Demo(#[from] PlanError),
}

/// Where a known guest comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestSource {
    /// A local guest profile (`passagectl guests add`, [`store::profiles_path`]).
    Local,
    /// One of the demo plan's guests (`--demo`).
    Demo,
    /// A libvirt domain, found by the caller.
    Libvirt,
}

impl GuestSource {
    /// The word `passagectl guests` shows (its JSON's `source`).
    pub fn as_str(self) -> &'static str {
        match self {
            GuestSource::Local => "local",
            GuestSource::Demo => "demo",
            GuestSource::Libvirt => "libvirt",
        }
    }
}

/// A guest a group can be given to, wherever it was found. Its JSON is a row of
/// `passagectl guests --json` (docs/JSON.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownGuest {
    /// As its source names it (libvirt allows names a plan refuses: see [`Self::to_guest`]).
    pub name: String,
    pub vmm: Vmm,
    /// The machine type its source gives; empty when it gives none.
    pub machine: String,
    pub source: GuestSource,
    /// libvirt's state as its JSON word (`running`, `shut-off`, …); `None` for guests libvirt
    /// does not know.
    pub state: Option<String>,
    /// Groups the guest's definition holds (libvirt's hostdevs, or the demo plan's).
    pub groups: Vec<GroupId>,
    /// When its groups are claimed (libvirt: Passage's metadata in the domain); carried into
    /// the plan by [`Self::to_guest`], not part of the listing.
    #[serde(skip)]
    pub lifecycle: Lifecycle,
    /// Its memory in MiB where its source says (a profile's `--memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

impl KnownGuest {
    /// A plan guest, as a local profile or the demo plan has it (with the groups it holds there).
    pub fn from_guest(g: &Guest, source: GuestSource) -> Self {
        KnownGuest {
            name: g.name.clone(),
            vmm: g.vmm,
            machine: g.machine.clone(),
            source,
            state: None,
            groups: g.groups.iter().map(|p| p.group).collect(),
            lifecycle: g.lifecycle,
            memory_mib: g.memory_mib,
        }
    }

    /// The guest as a plan holds it, with no groups yet: what `plan assign` adds and what the
    /// app offers as a drop target. Refused for a name a plan cannot hold.
    pub fn to_guest(&self) -> Result<Guest, PlanError> {
        let mut g = Guest::new(&self.name, self.vmm)?;
        // An unknown machine keeps the plan's default rather than an empty word.
        if !self.machine.is_empty() {
            g.machine = self.machine.clone();
        }
        g.lifecycle = self.lifecycle;
        g.memory_mib = self.memory_mib;
        Ok(g)
    }
}

/// The guests a front end can offer: local profiles first, then the demo's guests or the
/// libvirt domains the caller found, in the order found.
#[derive(Debug, Default)]
pub struct KnownGuests {
    pub guests: Vec<KnownGuest>,
    /// Why the local profiles could not be read (the others are still there); `None` also
    /// when there is no home directory (and so no profiles).
    pub profiles_error: Option<StoreError>,
    /// Why libvirt could not be asked, as the caller worded it.
    pub libvirt_error: Option<String>,
}

impl KnownGuests {
    /// The local profiles ([`store::profiles_path`]), then the demo plan's guests when `demo`.
    pub fn gather(demo: bool) -> Self {
        Self::gather_from(store::profiles_path().as_deref(), demo)
    }

    /// [`Self::gather`] with the profile file given (tests, or a caller that already has it).
    pub fn gather_from(profiles: Option<&Path>, demo: bool) -> Self {
        let mut k = KnownGuests::default();
        if let Some(path) = profiles {
            match store::load_profiles(path) {
                Ok(ps) => k.guests.extend(ps.iter().map(|p| KnownGuest {
                    name: p.name.clone(),
                    vmm: p.vmm,
                    machine: p.machine.clone(),
                    source: GuestSource::Local,
                    state: None,
                    groups: Vec::new(),
                    lifecycle: Lifecycle::default(),
                    memory_mib: p.memory_mib,
                })),
                Err(e) => k.profiles_error = Some(e),
            }
        }
        if demo {
            // The demo plan is compiled in and tested; were it broken there would simply be no
            // demo guests, and the plan itself says why when it is opened.
            if let Ok(p) = demo::plan() {
                k.guests.extend(
                    p.guests
                        .iter()
                        .map(|g| KnownGuest::from_guest(g, GuestSource::Demo)),
                );
            }
        }
        k
    }

    /// Adds libvirt's domains as the caller found and converted them (source
    /// [`GuestSource::Libvirt`], state and held groups filled in), or why it could not ask.
    pub fn add_libvirt(&mut self, found: Result<Vec<KnownGuest>, String>) {
        match found {
            Ok(domains) => self.guests.extend(domains),
            Err(why) => self.libvirt_error = Some(why),
        }
    }

    /// The first guest of this name (a local profile before a domain of the same name).
    pub fn find(&self, name: &str) -> Option<&KnownGuest> {
        self.guests.iter().find(|g| g.name == name)
    }

    /// Every guest as a plan guest holding nothing, leaving out names a plan cannot hold.
    pub fn plan_guests(&self) -> Vec<Guest> {
        self.guests
            .iter()
            .filter_map(|g| g.to_guest().ok())
            .collect()
    }

    /// The groups libvirt's domains hold, with the domain holding each (a later domain wins a
    /// group two claim). The demo's guests are left out: their groups are the demo plan's.
    pub fn holders(&self) -> view::Holders {
        let mut h = view::Holders::new();
        for g in self
            .guests
            .iter()
            .filter(|g| g.source == GuestSource::Libvirt)
        {
            for id in &g.groups {
                h.insert(*id, g.name.clone());
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libvirt(name: &str, groups: &[u32]) -> KnownGuest {
        KnownGuest {
            name: name.into(),
            vmm: Vmm::Libvirt,
            machine: "pc-q35-8.2".into(),
            source: GuestSource::Libvirt,
            state: Some("running".into()),
            groups: groups.iter().map(|g| GroupId(*g)).collect(),
            lifecycle: Lifecycle::OnStart,
            memory_mib: None,
        }
    }

    #[test]
    fn the_plan_source_is_the_named_file_then_the_demo_then_the_default() {
        let f = Path::new("/tmp/p.json");
        assert_eq!(
            PlanSource::choose(Some(f), Some(demo::DemoHost::Workstation)),
            PlanSource::File(f.into())
        );
        assert_eq!(
            PlanSource::choose(None, Some(demo::DemoHost::Arm64)),
            PlanSource::Demo(demo::DemoHost::Arm64)
        );
        assert!(matches!(
            PlanSource::choose(None, None),
            PlanSource::Default(_)
        ));
        assert_eq!(PlanSource::Demo(demo::DemoHost::Workstation).path(), None);
        assert_eq!(PlanSource::Default(None).path(), None);
        assert_eq!(PlanSource::File(f.into()).path(), Some(f));
    }

    #[test]
    fn the_demo_plan_opens_and_has_nowhere_to_be_saved() {
        let o = PlanSource::Demo(demo::DemoHost::Workstation)
            .open()
            .unwrap();
        assert!(!o.plan.guests.is_empty());
        assert!(o.fallback.is_none() && o.note().is_none());
        let (plan, path) = o.exact().unwrap();
        assert_eq!(plan, demo::plan().unwrap());
        assert_eq!(path, None);
    }

    #[test]
    fn a_missing_file_is_an_empty_plan_saved_where_it_was_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.json");
        for src in [
            PlanSource::File(p.clone()),
            PlanSource::Default(Some(p.clone())),
        ] {
            let (plan, path) = src.open().unwrap().exact().unwrap();
            assert_eq!(plan, Plan::default());
            assert_eq!(path.as_deref(), Some(p.as_path()));
        }
    }

    #[test]
    fn a_broken_named_file_is_an_error_a_broken_default_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.json");
        std::fs::write(&p, "{broken").unwrap();
        let e = PlanSource::File(p.clone()).open().unwrap_err();
        assert!(e.to_string().contains("plan.json"), "{e}");

        let o = PlanSource::Default(Some(p.clone())).open().unwrap();
        assert_eq!(o.plan, Plan::default());
        let note = o.note().expect("a note");
        assert!(note.contains("plan.json"), "{note}");
        // The command line refuses the stand-in with the same sentence.
        assert_eq!(o.exact().unwrap_err().to_string(), note);
    }

    #[test]
    fn without_a_home_the_default_plan_is_empty_and_only_the_cli_objects() {
        let o = PlanSource::Default(None).open().unwrap();
        assert_eq!(o.plan, Plan::default());
        assert_eq!(o.path, None);
        assert!(o.note().is_none());
        let why = o.exact().unwrap_err().to_string();
        assert!(why.contains("--plan FILE"), "{why}");
    }

    #[test]
    fn known_guests_are_the_profiles_then_the_demo_guests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guests.json");
        let profile = store::Profile {
            name: "fw".into(),
            vmm: Vmm::Crosvm,
            machine: "pc".into(),
            memory_mib: Some(2048),
        };
        store::save_profiles(&path, std::slice::from_ref(&profile)).unwrap();
        let k = KnownGuests::gather_from(Some(&path), true);
        assert!(k.profiles_error.is_none() && k.libvirt_error.is_none());
        let demo = demo::plan().unwrap();
        assert_eq!(k.guests.len(), 1 + demo.guests.len());
        assert_eq!(k.guests[0].source, GuestSource::Local);
        assert_eq!(k.guests[0].to_guest().unwrap(), profile.to_guest().unwrap());
        for (known, g) in k.guests[1..].iter().zip(&demo.guests) {
            assert_eq!(known.source, GuestSource::Demo);
            assert_eq!(
                known.groups,
                g.groups.iter().map(|p| p.group).collect::<Vec<_>>()
            );
            // Offered to a plan, a demo guest keeps everything but its groups.
            let mut bare = g.clone();
            bare.groups.clear();
            assert_eq!(known.to_guest().unwrap(), bare);
        }
        // Demo guests hold their groups in the demo plan, not outside it.
        assert!(k.holders().is_empty());
        assert_eq!(k.plan_guests().len(), k.guests.len());
    }

    #[test]
    fn unreadable_profiles_are_reported_beside_the_other_guests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guests.json");
        std::fs::write(&path, "[{\"name\": 1}]").unwrap();
        let k = KnownGuests::gather_from(Some(&path), true);
        assert!(k.profiles_error.is_some());
        assert!(k.guests.iter().all(|g| g.source == GuestSource::Demo));
        assert!(!k.guests.is_empty());

        let none = KnownGuests::gather_from(None, false);
        assert!(none.guests.is_empty() && none.profiles_error.is_none());
    }

    #[test]
    fn libvirt_domains_are_added_as_found_and_hold_their_groups() {
        let mut k = KnownGuests::gather_from(None, false);
        k.add_libvirt(Ok(vec![
            libvirt("desk", &[19, 20]),
            libvirt("bad name", &[7]),
            libvirt("late", &[20]),
        ]));
        let h = k.holders();
        assert_eq!(h.get(&GroupId(19)).map(String::as_str), Some("desk"));
        assert_eq!(h.get(&GroupId(7)).map(String::as_str), Some("bad name"));
        assert_eq!(h.get(&GroupId(20)).map(String::as_str), Some("late"));
        // A name a plan cannot hold is listed but never offered to a plan.
        assert!(k.find("bad name").is_some());
        let offered: Vec<String> = k.plan_guests().into_iter().map(|g| g.name).collect();
        assert_eq!(offered, ["desk", "late"]);
        let desk = k.find("desk").unwrap().to_guest().unwrap();
        assert_eq!(desk.machine, "pc-q35-8.2");
        assert_eq!(desk.lifecycle, Lifecycle::OnStart);
        assert!(desk.groups.is_empty());

        k.add_libvirt(Err("no bus".into()));
        assert_eq!(k.libvirt_error.as_deref(), Some("no bus"));
        assert_eq!(k.guests.len(), 3);
    }

    #[test]
    fn a_guest_without_a_machine_gets_the_plans_default() {
        let mut g = libvirt("desk", &[]);
        g.machine.clear();
        assert_eq!(
            g.to_guest().unwrap().machine,
            Guest::new("x", Vmm::Libvirt).unwrap().machine
        );
    }

    #[test]
    fn a_known_guest_serializes_as_a_guests_json_row() {
        let v = serde_json::to_value(libvirt("desk", &[19])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "desk", "vmm": "libvirt", "machine": "pc-q35-8.2",
                "source": "libvirt", "state": "running", "groups": [19]})
        );
    }
}
