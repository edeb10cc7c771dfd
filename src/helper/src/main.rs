//! `passage-helper`: the only code that runs as root. A D-Bus system service
//! (`io.github.passage.Helper1`, started by D-Bus activation through systemd) that claims and
//! releases whole IOMMU groups as transactions, and answers the questions an unprivileged
//! client cannot (full config space, VFIO usability).
//!
//! Every mutation passes the bouncer ([`Helper::authorize`]): polkit `CheckAuthorization` for
//! the *caller's system bus name* (from the message header, never our own PID), with user
//! interaction allowed unless the caller says otherwise. Anything that is not explicitly
//! authorized is denied. Callers pass group numbers and addresses, which are parsed and looked
//! up in a fresh scan; nothing they send reaches a path.
//!
//! Also runs one transaction without D-Bus, as root, for boot-time re-claim and tests:
//! `passage-helper --claim N [--force]`, `--release N`, `--replay`.

use clap::Parser;
use passage_core::cli::helper::Args;
use passage_core::explain::{self, State};
use passage_core::{names, scan, GroupId, Host, HostRoot, PciAddress};
use passage_dbus::{
    DeviceDriver, HeldGroup, HelperError, JournalMember, Options, PendingOperation, Transition,
    Verification,
};
use passage_helper::claim::{self, ClaimOptions, Kernel, Locks, StateDir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use zbus::message::Header;
use zbus::{OwnedVariant, Variant};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

struct Helper {
    root: PathBuf,
    /// `None` under a recorded tree in a release build: then every change is refused.
    kernel: Option<Arc<dyn Kernel>>,
    state: Arc<StateDir>,
    /// Held by the engine while it changes a group (with the group's flock in the state
    /// directory, across processes). Taken only after polkit has said yes: a caller whose
    /// password prompt is still open holds nothing, so nobody can block a group by asking.
    locks: Arc<Locks>,
    /// How long polkit's conversation may take (`--auth-timeout`).
    auth_timeout: std::time::Duration,
    /// Callers' uids by unique bus name ([`Helper::caller_uid`]).
    uids: std::sync::Mutex<HashMap<String, u32>>,
    /// The host as the helper knows it, kept current by the kernel's device events (and read
    /// again after every change it makes): what read-only calls and first looks answer from,
    /// so no call — authorized or not — costs a scan of the whole host.
    model: Arc<Model>,
}

/// The bouncer's table: every method of the interface and the polkit action it needs. A
/// method missing here is denied (`authorize` finds no row), never allowed by default.
const BOUNCER: &[(&str, &str)] = &[
    ("Claim", names::ACTION_CLAIM),
    ("ClaimHostCritical", names::ACTION_CLAIM_HOST_CRITICAL),
    ("Release", names::ACTION_CLAIM),
    ("Persist", names::ACTION_PERSIST),
    ("Verify", names::ACTION_VERIFY),
    ("Describe", names::ACTION_READ),
    ("DescribeHost", names::ACTION_READ),
    ("Claims", names::ACTION_READ),
    ("PersistedGroups", names::ACTION_READ),
    ("Journal", names::ACTION_READ),
    // Fix and Unfix of a boot-line remedy; of d3cold-allowed, the FixD3cold form.
    ("Fix", names::ACTION_FIX_BOOT_LINE),
    ("Unfix", names::ACTION_FIX_BOOT_LINE),
    ("FixD3cold", names::ACTION_FIX_D3COLD),
    ("SetVirtualFunctions", names::ACTION_SET_VFS),
    ("SetBarSize", names::ACTION_SET_BAR_SIZE),
    ("RehearseReset", names::ACTION_REHEARSE_RESET),
    ("BootLineFixes", names::ACTION_READ),
    ("ResetRehearsals", names::ACTION_READ),
];

/// The polkit action for `method`, from [`BOUNCER`].
fn action_for(method: &str) -> Result<&'static str, HelperError> {
    BOUNCER
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            HelperError::NotAuthorized(format!(
                "{method} has no entry in the helper's authorization table, so nobody may call it."
            ))
        })
}

fn failed(e: impl std::fmt::Display) -> HelperError {
    HelperError::Failed(e.to_string())
}

/// A list the state directory keeps, as the JSON a read method answers with.
fn records_json<T: serde::Serialize>(recs: Result<Vec<T>, String>) -> Result<String, HelperError> {
    serde_json::to_string(&recs.map_err(HelperError::Failed)?).map_err(failed)
}

/// Applies device events to the kept model, each by re-reading its one device (the path every
/// kernel event takes); what each device is now, in the same order.
///
/// The devices are read before the model is locked: a claim's first look and its fresh read
/// never wait on the sysfs reads of the events its neighbour's rebinding set off. Where a
/// claim or release wrote the model meanwhile (its own read may be newer than this one),
/// the events are read again under the lock, as they come.
fn apply_events(
    model: &Model,
    root: &HostRoot,
    events: &[passage_core::watch::DeviceEvent],
) -> Vec<Option<passage_core::watch::Update>> {
    let (page_size, generation) = {
        let kept = model
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (kept.host.platform.page_size.max(4096), kept.generation)
    };
    let read_all = || -> Vec<_> {
        events
            .iter()
            .map(|ev| passage_core::watch::read_event(root, ev, page_size))
            .collect()
    };
    let mut reads = read_all();
    let mut kept = model
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.generation != generation {
        reads = read_all();
    }
    kept.generation += 1;
    events
        .iter()
        .zip(reads)
        .map(|(ev, read)| match read {
            Ok(read) => {
                let mut u =
                    passage_core::watch::apply_read(Arc::make_mut(&mut kept.host), ev, read);
                // The helper may have read this driver change itself (before or after its
                // own claim) before the kernel's event came: listeners hear it from where
                // they last knew the device.
                if let Some((driver, state)) = kept.unheard.remove(&u.address) {
                    u.driver_before = driver;
                    u.state_before = state;
                }
                kept.tell(&u);
                Some(u)
            }
            Err(e) => {
                tracing::warn!("applying {ev:?}: {e}");
                None
            }
        })
        .collect()
}

/// After a claim or release of group `g` (members as `host` had them): the reply naming each
/// member with the driver the kernel reports for it now (what is, not what was meant, one
/// `driver` link each), and the kept model brought up to date the same way
/// (`watch::refresh_drivers`) — after the reply, on a thread of its own: a recorded tree sends
/// no events, and on `/` this covers events that raced the change. The next change of the
/// group reads it again under the model's lock anyway.
fn settle(
    model: &Arc<Model>,
    root: &Path,
    host: Arc<Host>,
    g: GroupId,
    kernel: &dyn Kernel,
    changed: bool,
) -> Transition {
    let members: Vec<PciAddress> = host
        .groups
        .get(&g)
        .map(|grp| host.members(grp).map(|d| d.address).collect())
        .unwrap_or_default();
    let devices = members
        .iter()
        .map(|a| DeviceDriver {
            address: a.to_string(),
            driver: kernel.driver_of(*a).ok().flatten().unwrap_or_default(),
        })
        .collect();
    let (model, root) = (model.clone(), root.to_path_buf());
    let update = move || {
        // The snapshot decided on is dropped here, after the reply (where a runtime runs this;
        // inline, just before it): where the model changed while it was held, it is the last
        // holder of a whole host.
        drop(host);
        settle_model(&model, &root, g, &members);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(update);
        }
        Err(_) => update(),
    }
    Transition { changed, devices }
}

/// The kept model with `members`' drivers read again after a change of group `g`.
fn settle_model(model: &Model, root: &Path, g: GroupId, members: &[PciAddress]) {
    match kept_root(root) {
        Ok(r) => {
            let mut kept = model
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            kept.generation += 1;
            let before = drivers_of(&kept.host, members);
            let state_before = passage_core::watch::group_state(&kept.host, Some(g));
            if let Err(e) =
                passage_core::watch::refresh_drivers(Arc::make_mut(&mut kept.host), &r, members)
            {
                tracing::warn!("reading group {g} after a change: {e}");
            }
            driver_changes(&mut kept, g, before, state_before);
        }
        Err(e) => tracing::warn!("reading the host after a change: {e}"),
    }
}

/// The host root, opened once and kept for the changes' fresh reads and settling: opening it
/// walks and checks the tree, which on a slow machine costs more than reading a group.
fn kept_root(root: &Path) -> Result<Arc<HostRoot>, HelperError> {
    static KEPT: std::sync::OnceLock<Arc<HostRoot>> = std::sync::OnceLock::new();
    if let Some(r) = KEPT.get().filter(|r| r.path() == root) {
        return Ok(r.clone());
    }
    let r = Arc::new(HostRoot::open(root).map_err(failed)?);
    let _ = KEPT.set(r.clone());
    Ok(r)
}

/// The kept model with group `g` read again from the kernel — its members, their drivers, and
/// the host's uses of devices — as a snapshot to decide on: what a change reads after taking
/// its lock, instead of a scan of the whole host (the rest of the model is kept current by
/// kernel events).
fn fresh(model: &Model, root: &Path, g: GroupId) -> Result<Arc<Host>, HelperError> {
    let r = kept_root(root)?;
    let mut kept = model
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let members: Vec<PciAddress> = kept
        .host
        .groups
        .get(&g)
        .map(|grp| grp.devices.clone())
        .unwrap_or_default();
    kept.generation += 1;
    let before = drivers_of(&kept.host, &members);
    let state_before = passage_core::watch::group_state(&kept.host, Some(g));
    let Kept { host, uses_key, .. } = &mut *kept;
    passage_core::watch::refresh_group(Arc::make_mut(host), &r, g, uses_key).map_err(failed)?;
    // A change the model had not taken in yet (the last change's settling still to come, or
    // something else moved a driver): told now, where no kernel events tell it.
    driver_changes(&mut kept, g, before, state_before);
    // Shared, not copied: a copy of a 10,063-function host takes 4.3-4.8 ms and its drop
    // 3.4-3.9 ms (release build), which every claim paid before its first write. A change to
    // the model while this is held copies it then, on the thread that changes it (the device
    // events, the settling): off the claim's way, not gone.
    Ok(Arc::clone(&kept.host))
}

/// For each of `before`'s devices whose driver the model now says differs: told at once where
/// the helper's own changes are told (no kernel events follow this host), else kept until the
/// kernel's event for it comes, so that event is told from the driver listeners last heard of.
fn driver_changes(
    kept: &mut Kept,
    g: GroupId,
    before: Vec<(PciAddress, Option<String>)>,
    state_before: Option<State>,
) {
    let state_after = passage_core::watch::group_state(&kept.host, Some(g));
    for (address, driver_before) in before {
        let driver_after = kept.host.device(address).and_then(|d| d.driver.clone());
        if driver_before != driver_after && !kept.own_changes_told {
            // Events the kernel dropped would leave their entries: a bound, never a leak.
            if kept.unheard.len() >= 4096 {
                kept.unheard.clear();
            }
            kept.unheard
                .entry(address)
                .or_insert((driver_before, state_before));
            continue;
        }
        if driver_before != driver_after {
            kept.tell(&passage_core::watch::Update {
                action: if driver_after.is_some() {
                    passage_core::watch::Action::Bind
                } else {
                    passage_core::watch::Action::Unbind
                },
                address,
                group: Some(g),
                driver_before,
                driver_after,
                state_before,
                state_after,
            });
        }
    }
}

/// Which driver the model says holds each of `members`.
fn drivers_of(host: &Host, members: &[PciAddress]) -> Vec<(PciAddress, Option<String>)> {
    members
        .iter()
        .map(|a| (*a, host.device(*a).and_then(|d| d.driver.clone())))
        .collect()
}

/// The host as the helper knows it, and what its uses of devices were read from.
struct Kept {
    host: Arc<Host>,
    uses_key: String,
    /// Where device changes go out as `DeviceChanged` signals (to the task that emits them).
    news: Option<tokio::sync::mpsc::UnboundedSender<passage_core::watch::Update>>,
    /// Whether the helper's own claims and releases are told as changes: where no kernel events
    /// are followed (a recorded tree, or no event socket). Where they are, the kernel's own
    /// bind and unbind events tell them, once.
    own_changes_told: bool,
    /// Devices whose driver change the helper read itself before the kernel's event for it
    /// came: the driver and group state listeners last heard of.
    unheard: HashMap<PciAddress, (Option<String>, Option<State>)>,
    /// Counts the model's writes, so that events read before the lock was taken are read
    /// again when a claim or release wrote the model meanwhile.
    generation: u64,
}

impl Kept {
    fn tell(&self, u: &passage_core::watch::Update) {
        if let Some(n) = &self.news {
            // Nobody listening (the bus connection gone at exit) is not an error.
            let _ = n.send(u.clone());
        }
    }
}

type Model = std::sync::RwLock<Kept>;

/// Follows the kernel's PCI device events into the kept model, for as long as the helper
/// runs (a thread of its own: the monitor blocks).
fn follow_events(model: Arc<Model>, root: PathBuf) {
    // The kernel's socket, not udev's: the helper needs no udevd (an initramfs, a minimal
    // container host), and a network namespace of its own would not keep it from its events.
    let monitor = match passage_core::watch::Monitor::open_kernel() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(
                "no device events ({e}): the model is read again after each change only"
            );
            model
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .own_changes_told = true;
            return;
        }
    };
    // Without events from here on, the helper's own changes are told instead.
    let no_events = || {
        model
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .own_changes_told = true;
    };
    let Ok(r) = HostRoot::open(&root) else {
        no_events();
        return;
    };
    loop {
        let events = match monitor.wait(None) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("device events stopped: {e}");
                no_events();
                return;
            }
        };
        apply_events(&model, &r, &events);
    }
}

/// The kernel to change drivers through, or the refusal of a helper that only reads.
fn writable(kernel: &Option<Arc<dyn Kernel>>, root: &Path) -> Result<Arc<dyn Kernel>, String> {
    kernel
        .clone()
        .ok_or_else(|| passage_helper::read_only_reason(root))
}

impl Helper {
    /// The kept model's host, for reading (shared, no lock held while it is read).
    fn host_model(&self) -> Arc<Host> {
        kept_host(&self.model)
    }

    /// The caller's uid as the bus daemon knows it (remembered per unique name, which the bus
    /// never gives to another connection); `None` when it cannot be told.
    async fn caller_uid(&self, conn: &zbus::Connection, hdr: &Header<'_>) -> Option<u32> {
        let sender = hdr.sender()?.to_owned();
        if let Some(uid) = self
            .uids
            .lock()
            .ok()
            .and_then(|m| m.get(sender.as_str()).copied())
        {
            return Some(uid);
        }
        let dbus = zbus::fdo::DBusProxy::new(conn).await.ok()?;
        let uid = dbus
            .get_connection_unix_user(zbus::names::BusName::from(sender.clone()))
            .await
            .ok()?;
        if let Ok(mut m) = self.uids.lock() {
            // Callers come and go; a few hundred names are plenty to remember.
            if m.len() > 512 {
                m.clear();
            }
            m.insert(sender.to_string(), uid);
        }
        Some(uid)
    }

    fn scan(root: &PathBuf) -> Result<Host, HelperError> {
        let r = HostRoot::open(root).map_err(failed)?;
        scan::scan(&r).map_err(failed)
    }

    /// The bouncer: one place that asks polkit, for the caller's bus name, and says no unless
    /// polkit says yes.
    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        method: &str,
        details: HashMap<&str, &str>,
        opts: &Options,
    ) -> Result<(), HelperError> {
        let action = action_for(method)?;
        // polkit authorizes uid 0 for every action without looking at rules (polkitd's own
        // first check), so for root the answer is known: asking would cost two more round
        // trips on every call of the libvirt hook and `passagectl` run as root. The bus daemon
        // says who the caller is; the table above still refuses a method without a row.
        if self.caller_uid(conn, hdr).await == Some(0) {
            return Ok(());
        }
        let subject = Subject::new_for_message_header(hdr)
            .map_err(|e| HelperError::NotAuthorized(format!("cannot tell who is asking: {e}")))?;
        let authority = AuthorityProxy::new(conn).await.map_err(|e| {
            HelperError::NotAuthorized(format!(
                "polkit is not available, so nobody can be authorized: {e}"
            ))
        })?;
        let flags = if opts.no_user_interaction {
            CheckAuthorizationFlags::empty()
        } else {
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION
        };
        // A prompt nobody answers must not keep the request (and the caller) waiting forever:
        // after the timeout polkit is told to cancel it, and the request ends as dismissed.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let cancel_id = format!(
            "passage-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let asked = authority.check_authorization(&subject, action, &details, flags, &cancel_id);
        let r = match tokio::time::timeout(self.auth_timeout, asked).await {
            Ok(r) => r.map_err(|e| {
                // The bus's own error for a peer that disconnected with the call pending (a
                // method error or its fdo form, depending on how zbus met it).
                let gone = e
                    .to_string()
                    .starts_with("org.freedesktop.DBus.Error.NoReply");
                HelperError::NotAuthorized(if gone {
                    "polkit stopped before it decided (polkitd was restarted or crashed); nothing was changed. Ask again.".to_string()
                } else {
                    format!("polkit could not decide: {e}")
                })
            })?,
            Err(_) => {
                let _ = authority.cancel_check_authorization(&cancel_id).await;
                return Err(HelperError::NotAuthorizedDismissed(format!(
                    "nobody answered the authentication prompt for {action} within {} seconds.",
                    self.auth_timeout.as_secs()
                )));
            }
        };
        // polkit marks a prompt the person closed with "polkit.dismissed"; a challenge nobody
        // could answer comes back as is_challenge; anything else not authorized is a no.
        let dismissed = r
            .details
            .get("polkit.dismissed")
            .is_some_and(|v| !v.is_empty());
        if r.is_authorized {
            Ok(())
        } else if dismissed {
            Err(HelperError::NotAuthorizedDismissed(format!(
                "the authentication prompt for {action} was dismissed."
            )))
        } else if r.is_challenge {
            Err(HelperError::NotAuthorizedCanObtain(format!(
                "{action} needs an administrator's password, and no authentication agent answered."
            )))
        } else {
            Err(HelperError::NotAuthorized(format!(
                "{action} is not allowed for this user."
            )))
        }
    }
}

impl Helper {
    /// `Fix` and `Unfix`: the finding checked against the host as it is, polkit asked, then the
    /// change carried out where the boot files may be written.
    async fn fix_or_undo(
        &self,
        code: &str,
        device: &str,
        options: HashMap<String, OwnedVariant>,
        undo: bool,
        hdr: Header<'_>,
        conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        if code.is_empty()
            || code.len() > 64
            || !code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            let c: String = code.chars().take(40).collect();
            return Err(HelperError::InvalidArgs(format!(
                "“{c}” is not a finding's code"
            )));
        }
        let device: Option<PciAddress> = if device.is_empty() {
            None
        } else {
            Some(
                device
                    .parse()
                    .map_err(|e| HelperError::InvalidArgs(format!("{e}")))?,
            )
        };
        writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        if code == "d3cold-allowed" {
            return self.fix_d3cold(code, device, undo, &opts, hdr, conn).await;
        }
        let edit = if undo {
            passage_helper::bootfix::undo_edit(&self.state, code, device)
                .map_err(HelperError::Failed)?
                .ok_or_else(|| {
                    HelperError::NotFound(format!(
                        "Passage has made no change for {code}{} that it could take back.",
                        device.map(|d| format!(" of {d}")).unwrap_or_default()
                    ))
                })?
        } else {
            let host = self.host_model();
            let r = HostRoot::open(&self.root).map_err(failed)?;
            let facts = passage_core::doctor::read(&r, &host);
            let edit = passage_core::doctor::boot_line_fix(&host, &facts, code, device).map_err(
                |why| HelperError::BadState(format!("Nothing to fix for {code}: {why}.")),
            )?;
            if code == "vfio-pci-ids" {
                let configured = match &facts.boot {
                    Some(passage_core::bootline::Boot::Known(c)) => c.line.clone(),
                    _ => Vec::new(),
                };
                self.ids_are_persisted(&host, &configured)?;
            }
            edit
        };
        let words = edit
            .add
            .iter()
            .map(|w| format!("+{w}"))
            .chain(edit.remove.iter().map(|w| format!("-{w}")))
            .collect::<Vec<_>>()
            .join(" ");
        self.authorize(
            conn,
            &hdr,
            if undo { "Unfix" } else { "Fix" },
            HashMap::from([("code", code), ("change", words.as_str())]),
            &opts,
        )
        .await?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let req = passage_helper::bootfix::Request {
            version: 1,
            id: format!(
                "{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            boot_id: passage_helper::bootfix::boot_id(&self.root),
            code: code.to_string(),
            device,
            edit,
            undo,
        };
        let done =
            passage_helper::systemd::boot_line(conn, &self.root, self.state.clone(), req).await?;
        Ok((done.changed, done.notes))
    }
}

impl Helper {
    /// Taking `vfio-pci.ids=` away gives the devices it names to their host drivers at the next
    /// boot: allowed only once Passage claims each of their groups at boot instead.
    fn ids_are_persisted(&self, host: &Host, configured: &[String]) -> Result<(), HelperError> {
        // Persisted by address (group numbers may change between boots).
        let persisted: Vec<PciAddress> = passage_helper::persist::list(&self.state)
            .map_err(failed)?
            .iter()
            .flat_map(|p| p.members.iter().map(|m| m.address))
            .collect();
        // The ids the running kernel has, and the ones the next boot would have.
        let mut ids: Vec<(String, String)> = host
            .platform
            .vfio_pci_ids
            .iter()
            .map(|(v, d)| (v.to_string(), d.to_string()))
            .collect();
        for w in configured {
            if let Some(list) = w.strip_prefix("vfio-pci.ids=") {
                for id in list.split(',') {
                    if let Some((v, d)) = id.split_once(':') {
                        ids.push((v.to_ascii_lowercase(), d.to_ascii_lowercase()));
                    }
                }
            }
        }
        let mut missing: Vec<String> = host
            .devices
            .values()
            .filter(|d| {
                ids.iter()
                    .any(|(v, i)| *v == d.vendor_id.to_string() && *i == d.device_id.to_string())
            })
            .filter(|d| !persisted.contains(&d.address))
            .map(|d| match d.group {
                Some(g) => format!("{} (group {g}: passagectl persist {g} on)", d.address),
                None => d.address.to_string(),
            })
            .collect();
        missing.sort();
        if missing.is_empty() {
            return Ok(());
        }
        Err(HelperError::BadState(format!(
            "vfio-pci.ids= holds {} for vfio-pci at boot; without it their host drivers take them. Have Passage claim their groups at every boot first, then fix vfio-pci-ids. Nothing was changed.",
            missing.join(", ")
        )))
    }

    /// `Fix`/`Unfix` of `d3cold-allowed`: the device kept powered now and at every boot.
    async fn fix_d3cold(
        &self,
        code: &str,
        device: Option<PciAddress>,
        undo: bool,
        opts: &Options,
        hdr: Header<'_>,
        conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let address = device.ok_or_else(|| {
            HelperError::InvalidArgs(format!("{code} names a device: pass its address"))
        })?;
        let host = self.host_model();
        if !undo {
            let r = HostRoot::open(&self.root).map_err(failed)?;
            let facts = passage_core::doctor::read(&r, &host);
            passage_core::doctor::fix_for(&host, &facts, code, device).map_err(|why| {
                HelperError::BadState(format!("Nothing to fix for {code}: {why}."))
            })?;
        } else if !passage_helper::devfix::records(&self.state)
            .map_err(HelperError::Failed)?
            .iter()
            .any(|r| r.code == code && r.address == address)
        {
            return Err(HelperError::NotFound(format!(
                "Passage has made no change for {code} of {address} that it could take back."
            )));
        }
        let name = host
            .devices
            .get(&address)
            .map(|d| format!("{address} {}", d.display_name()))
            .unwrap_or_else(|| address.to_string());
        self.authorize(
            conn,
            &hdr,
            "FixD3cold",
            HashMap::from([("devices", name.as_str())]),
            opts,
        )
        .await?;
        let (root, state, model) = (self.root.clone(), self.state.clone(), self.model.clone());
        let done = tokio::task::spawn_blocking(move || {
            // The host as it is after the password prompt.
            let host = kept_host(&model);
            passage_helper::devfix::d3cold(&root, &state, &host, address, undo)
        })
        .await
        .map_err(failed)?
        .map_err(HelperError::Failed)?;
        Ok((done.changed, done.notes))
    }
}

/// The kept model's host as it is now, shared (a first look before polkit is asked, or work
/// off the bus's threads after it said yes): a copy of a large host would cost every call,
/// authorized or not, milliseconds. A panic elsewhere while the model was written leaves the
/// last state it had, which is still the best answer the helper has: never a poisoned error.
fn kept_host(model: &Model) -> Arc<Host> {
    Arc::clone(
        &model
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .host,
    )
}

/// Refuses a claim whose caller knows the group by other members than this host has now.
fn check_expected(host: &Host, g: GroupId, expected: &[PciAddress]) -> Result<(), HelperError> {
    let have: std::collections::BTreeSet<PciAddress> = passage_core::plan::claimed_members(host, g)
        .iter()
        .map(|d| d.address)
        .collect();
    let want: std::collections::BTreeSet<PciAddress> = expected.iter().copied().collect();
    if have == want {
        return Ok(());
    }
    let list = |s: &std::collections::BTreeSet<PciAddress>| {
        s.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(HelperError::BadState(format!(
        "Group {g} holds {} on this host, not {} as the caller expected; the groups changed (or the plan is for another host). Nothing was claimed.",
        list(&have),
        list(&want)
    )))
}

/// What polkit's prompt shows: `$(group)` and `$(devices)` in the policy's messages.
fn prompt_details<'a>(group: &'a str, devices: &'a str) -> HashMap<&'a str, &'a str> {
    HashMap::from([("group", group), ("devices", devices)])
}

fn group_details(host: &Host, g: GroupId) -> Result<(String, State), HelperError> {
    let group = host.groups.get(&g).ok_or_else(|| {
        HelperError::NotFound(format!("There is no IOMMU group {g} on this host."))
    })?;
    let devices: Vec<String> = host
        .members(group)
        .filter(|d| d.is_endpoint())
        .map(|d| format!("{} {}", d.address, d.display_name()))
        .collect();
    Ok((devices.join(", "), explain::group(host, group).state))
}

#[zbus::interface(name = "io.github.passage.Helper1")]
impl Helper {
    /// Version of this interface; bumped only on incompatible change.
    #[zbus(property)]
    fn version(&self) -> u32 {
        passage_dbus::INTERFACE_VERSION
    }

    #[zbus(out_args("changed", "devices"))]
    async fn claim(
        &self,
        group: u32,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<DeviceDriver>), HelperError> {
        let entered = std::time::Instant::now();
        let opts = Options::parse(
            &options,
            &["force", "auth.no_user_interaction", "expect_devices"],
        )?;
        let g = GroupId(group);
        // A first look in the kept model, for polkit's prompt and for refusals that need no
        // password.
        let (devices, state) = {
            let host = self.host_model();
            let (devices, state) = group_details(&host, g)?;
            if let Some(expected) = &opts.expect_devices {
                check_expected(&host, g, expected)?;
            }
            // Refused before polkit is even asked: without force there is nothing to approve.
            claim::check(&host, g, &ClaimOptions { force: opts.force })
                .map_err(passage_helper::dbus_error)?;
            (devices, state)
        };
        let method = if state == State::HostCritical {
            "ClaimHostCritical"
        } else {
            "Claim"
        };
        let gs = g.to_string();
        let details = prompt_details(&gs, &devices);
        // A helper that only reads says so before anyone is asked for a password.
        let kernel = writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        let t0 = std::time::Instant::now();
        let looked = entered.elapsed();
        self.authorize(conn, &hdr, method, details, &opts).await?;
        let authorized = t0.elapsed();
        // Authorized; now lock, then decide on the host as it is now, not as it was before a
        // password prompt that may have stayed open for minutes.
        let (root, state_dir, locks) = (self.root.clone(), self.state.clone(), self.locks.clone());
        let model = self.model.clone();
        let (force, expected) = (opts.force, opts.expect_devices.clone());
        tokio::task::spawn_blocking(move || {
            let t1 = std::time::Instant::now();
            let queued = t0.elapsed() - authorized;
            let held = claim::hold(&locks, &state_dir, g).map_err(passage_helper::dbus_error)?;
            let locked = t1.elapsed();
            let host = fresh(&model, &root, g)?;
            let read = t1.elapsed();
            let (_, now) = group_details(&host, g)?;
            if let Some(expected) = &expected {
                check_expected(&host, g, expected)?;
            }
            if now == State::HostCritical && method != "ClaimHostCritical" {
                // Approved as an ordinary claim, but the host needs the group now (a route, a
                // mount or a console came while the request waited, or since the helper last
                // looked): refused with the reasons, as without the wait.
                let why = match claim::check(&host, g, &ClaimOptions { force: false }) {
                    Err(e) => e.to_string(),
                    Ok(()) => String::new(),
                };
                return Err(HelperError::HostCritical(passage_core::i18n::trf(
                    "{why} (It was approved as an ordinary claim; nothing was claimed.)",
                    &[("why", &why)],
                )));
            }
            let d = claim::claim_held(
                &host,
                g,
                &ClaimOptions { force },
                kernel.as_ref(),
                &state_dir,
                &held,
            )
            .map_err(passage_helper::dbus_error)?;
            let changed = t1.elapsed();
            let reply = settle(&model, &root, host, g, kernel.as_ref(), d.changed).into_args();
            // Where a claim's time goes (PASSAGE_LOG=debug), for benches/claim-vm.sh.
            tracing::debug!(
                "claim of group {g}: first look {:?}, authorized {:?}, on a worker {:?}, locked {:?}, read {:?}, changed {:?}, settled {:?}, in all {:?}",
                looked,
                authorized,
                queued,
                locked,
                read - locked,
                changed - read,
                t1.elapsed() - changed,
                entered.elapsed()
            );
            Ok(reply)
        })
        .await
        .map_err(failed)?
    }

    #[zbus(out_args("changed", "devices"))]
    async fn release(
        &self,
        group: u32,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<DeviceDriver>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        let g = GroupId(group);
        let (devices, _) = group_details(&self.host_model(), g)?;
        let gs = g.to_string();
        let details = prompt_details(&gs, &devices);
        let kernel = writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        self.authorize(conn, &hdr, "Release", details, &opts)
            .await?;
        let (root, state_dir, locks) = (self.root.clone(), self.state.clone(), self.locks.clone());
        let model = self.model.clone();
        // Unbinding from vfio-pci can block while a user holds the group: never on the thread
        // that serves requests. Locked first, then the host read as it is now.
        tokio::task::spawn_blocking(move || {
            let held = claim::hold(&locks, &state_dir, g).map_err(passage_helper::dbus_error)?;
            let host = fresh(&model, &root, g)?;
            let d = claim::release_held(&host, g, kernel.as_ref(), &state_dir, &held)
                .map_err(passage_helper::dbus_error)?;
            Ok(settle(&model, &root, host, g, kernel.as_ref(), d.changed).into_args())
        })
        .await
        .map_err(failed)?
    }

    #[zbus(out_args("changed", "notes"))]
    async fn persist(
        &self,
        group: u32,
        on: bool,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        let g = GroupId(group);
        let devices = if on {
            group_details(&self.host_model(), g)?.0
        } else {
            String::new()
        };
        let gs = g.to_string();
        let details = prompt_details(&gs, &devices);
        writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        self.authorize(conn, &hdr, "Persist", details, &opts)
            .await?;
        let (root, state) = (self.root.clone(), self.state.clone());
        let model = self.model.clone();
        let mut done = tokio::task::spawn_blocking(move || {
            // The group as it is now, after the password prompt.
            let host = fresh(&model, &root, g)?;
            let r = HostRoot::open(&root).map_err(failed)?;
            passage_helper::persist::set(&host, &r, &root, g, on, &state)
                .map_err(passage_helper::dbus_error)
        })
        .await
        .map_err(failed)??;
        if done.boot_layers_changed {
            done.notes
                .push(passage_helper::systemd::regenerate_initramfs(conn).await);
        }
        Ok((done.changed, done.notes))
    }

    #[zbus(out_args("groups"))]
    async fn persisted_groups(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<Vec<HeldGroup>, HelperError> {
        self.authorize(
            conn,
            &hdr,
            "PersistedGroups",
            HashMap::new(),
            &Options::default(),
        )
        .await?;
        Ok(passage_helper::persist::list(&self.state)
            .map_err(failed)?
            .into_iter()
            .map(|p| HeldGroup {
                group: p.group.0,
                devices: p.members.iter().map(|m| m.address.to_string()).collect(),
            })
            .collect())
    }

    #[zbus(out_args("claims"))]
    async fn claims(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<Vec<HeldGroup>, HelperError> {
        self.authorize(conn, &hdr, "Claims", HashMap::new(), &Options::default())
            .await?;
        Ok(self
            .state
            .claims()
            .map_err(failed)?
            .into_iter()
            .map(|j| HeldGroup {
                group: j.group.0,
                devices: j.members.iter().map(|m| m.address.to_string()).collect(),
            })
            .collect())
    }

    /// The doctor's finding `code` (of `device`, `""` for none) fixed, when its remedy is one
    /// Passage carries out: today a change of the kernel command line.
    #[zbus(out_args("changed", "notes"))]
    async fn fix(
        &self,
        code: &str,
        device: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        self.fix_or_undo(code, device, options, false, hdr, conn)
            .await
    }

    /// What `Fix` did for `code` (and `device`) taken back.
    #[zbus(out_args("changed", "notes"))]
    async fn unfix(
        &self,
        code: &str,
        device: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        self.fix_or_undo(code, device, options, true, hdr, conn)
            .await
    }

    /// Group `group`'s reset rehearsed: claimed, each member reset, given back; whether every
    /// member survives, and a line per member.
    #[zbus(out_args("survives", "notes"))]
    async fn rehearse_reset(
        &self,
        group: u32,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        let g = GroupId(group);
        let (devices, state) = group_details(&self.host_model(), g)?;
        if state == State::HostCritical {
            return Err(HelperError::HostCritical(format!(
                "Group {g} is needed by the host; a rehearsal would take it away from the host for a moment. Nothing was done."
            )));
        }
        let kernel = writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        let gs = g.to_string();
        self.authorize(
            conn,
            &hdr,
            "RehearseReset",
            prompt_details(&gs, &devices),
            &opts,
        )
        .await?;
        let (root, state, locks, model) = (
            self.root.clone(),
            self.state.clone(),
            self.locks.clone(),
            self.model.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let held = claim::hold(&locks, &state, g).map_err(passage_helper::dbus_error)?;
            let scan = || -> Result<Host, String> {
                fresh(&model, &root, g)
                    .map(Arc::unwrap_or_clone)
                    .map_err(|e| e.to_string())
            };
            passage_helper::rehearse::rehearse(&root, &state, kernel.as_ref(), &held, g, &scan)
                .map_err(HelperError::Failed)
        })
        .await
        .map_err(failed)?
    }

    /// PF `address` gets `count` virtual functions (0: none), now and at every boot.
    #[zbus(out_args("changed", "notes"))]
    async fn set_virtual_functions(
        &self,
        address: &str,
        count: u32,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        let address: PciAddress = address
            .parse()
            .map_err(|e| HelperError::InvalidArgs(format!("{e}")))?;
        if count > 4096 {
            return Err(HelperError::InvalidArgs(format!(
                "{count} virtual functions: a PCI function has at most 65535 routing IDs below it, and no device offers more than a few thousand"
            )));
        }
        writable(&self.kernel, &self.root).map_err(HelperError::BadState)?;
        let host = self.host_model();
        let name = host
            .devices
            .get(&address)
            .map(|d| format!("{address} {}", d.display_name()))
            .ok_or_else(|| {
                HelperError::NotFound(format!("There is no PCI device {address} on this host."))
            })?;
        let n = count.to_string();
        self.authorize(
            conn,
            &hdr,
            "SetVirtualFunctions",
            HashMap::from([("devices", name.as_str()), ("count", n.as_str())]),
            &opts,
        )
        .await?;
        let (root, state, model) = (self.root.clone(), self.state.clone(), self.model.clone());
        let done = tokio::task::spawn_blocking(move || {
            // The PF as it is now, after the password prompt.
            let host = kept_host(&model);
            passage_helper::sriov::set(&root, &state, &host, address, count)
        })
        .await
        .map_err(failed)?
        .map_err(HelperError::BadState)?;
        Ok((done.changed, done.notes))
    }

    /// BAR `bar` of `address` is resized to `size_mib` whenever Passage claims it (0: no longer).
    #[zbus(out_args("changed", "notes"))]
    async fn set_bar_size(
        &self,
        address: &str,
        bar: u32,
        size_mib: u64,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, Vec<String>), HelperError> {
        let opts = Options::parse(&options, &["auth.no_user_interaction"])?;
        let address: PciAddress = address
            .parse()
            .map_err(|e| HelperError::InvalidArgs(format!("{e}")))?;
        let bar = u8::try_from(bar).ok().filter(|b| *b <= 5).ok_or_else(|| {
            HelperError::InvalidArgs(format!("A PCI function has BARs 0 to 5, not {bar}."))
        })?;
        // What the card offers is checked by rebar::set, which names the sizes it can be.
        if size_mib >= 1 << 47 {
            return Err(HelperError::InvalidArgs(format!(
                "{size_mib} MiB is larger than any BAR (2^47 MiB at most)"
            )));
        }
        let host = self.host_model();
        // Forgetting a size needs no card: the one it was for may be gone.
        let name = match host.devices.get(&address) {
            Some(d) => format!("{address} {}", d.display_name()),
            None if size_mib == 0 => address.to_string(),
            None => {
                return Err(HelperError::NotFound(format!(
                    "There is no PCI device {address} on this host."
                )))
            }
        };
        let b = bar.to_string();
        let size = if size_mib == 0 {
            "the size the card has".to_string()
        } else {
            format!("{size_mib} MiB")
        };
        self.authorize(
            conn,
            &hdr,
            "SetBarSize",
            HashMap::from([
                ("devices", name.as_str()),
                ("bar", b.as_str()),
                ("size", size.as_str()),
            ]),
            &opts,
        )
        .await?;
        let (root, state, model) = (self.root.clone(), self.state.clone(), self.model.clone());
        let done = tokio::task::spawn_blocking(move || {
            let host = kept_host(&model);
            passage_helper::rebar::set(&root, &state, &host, address, bar, size_mib)
        })
        .await
        .map_err(failed)?
        .map_err(HelperError::BadState)?;
        Ok((done.changed, done.notes))
    }

    #[zbus(out_args("fixes"))]
    async fn boot_line_fixes(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HelperError> {
        self.authorize(
            conn,
            &hdr,
            "BootLineFixes",
            HashMap::new(),
            &Options::default(),
        )
        .await?;
        records_json(passage_helper::bootfix::records(&self.state))
    }

    /// What reset rehearsals found (per model and kernel; nothing about any one machine's
    /// state), for a doctor that cannot read the state directory.
    #[zbus(out_args("rehearsals"))]
    async fn reset_rehearsals(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HelperError> {
        self.authorize(
            conn,
            &hdr,
            "ResetRehearsals",
            HashMap::new(),
            &Options::default(),
        )
        .await?;
        records_json(passage_helper::rehearse::records(&self.state))
    }

    #[zbus(out_args("pending"))]
    async fn journal(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<Vec<PendingOperation>, HelperError> {
        self.authorize(conn, &hdr, "Journal", HashMap::new(), &Options::default())
            .await?;
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        Ok(self
            .state
            .pending()
            .map_err(failed)?
            .into_iter()
            .map(|j| PendingOperation {
                version: j.version,
                operation: j.operation,
                group: j.group.0,
                members: j
                    .members
                    .iter()
                    .map(|m| JournalMember {
                        address: m.address.to_string(),
                        vendor_id: m.vendor_id.clone(),
                        device_id: m.device_id.clone(),
                        driver: text(&m.driver),
                        driver_override: text(&m.driver_override),
                    })
                    .collect(),
            })
            .collect())
    }

    #[zbus(out_args("usable", "code", "message", "remedy", "devices"))]
    async fn verify(
        &self,
        group: u32,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(bool, String, String, String, Vec<String>), HelperError> {
        let g = GroupId(group);
        let devices = group_details(&self.host_model(), g)?.0;
        let gs = g.to_string();
        self.authorize(
            conn,
            &hdr,
            "Verify",
            prompt_details(&gs, &devices),
            &Options::default(),
        )
        .await?;
        let (root, state_dir, locks) = (self.root.clone(), self.state.clone(), self.locks.clone());
        let model = self.model.clone();
        let v = tokio::task::spawn_blocking(move || {
            // Opening /dev/vfio/N while a claim changes the group (or while another verify has
            // it open) would disturb both: the group is held for the few milliseconds it takes.
            let _held = claim::hold(&locks, &state_dir, g).map_err(passage_helper::dbus_error)?;
            // The group as it is now (a verify decides what a guest start will meet).
            let host = fresh(&model, &root, g)?;
            Ok::<_, HelperError>(passage_core::vfio::verify(
                &host,
                g,
                &root.join("dev"),
                &root.join("proc"),
            ))
        })
        .await
        .map_err(failed)??;
        let v = match v {
            Ok(v @ passage_core::vfio::Verdict::Usable { .. }) => Ok(Verification {
                usable: true,
                code: "usable".into(),
                // The words `passagectl verify` prints as root: which ways were checked.
                message: passage_core::report::verify_text(g, &v)
                    .trim_end()
                    .to_string(),
                remedy: String::new(),
                devices: match &v {
                    passage_core::vfio::Verdict::Usable { devices, .. } => {
                        devices.iter().map(|d| d.to_string()).collect()
                    }
                    passage_core::vfio::Verdict::NotUsable { .. } => Vec::new(),
                },
            }),
            Ok(passage_core::vfio::Verdict::NotUsable {
                code,
                message,
                remedy,
            }) => Ok(Verification {
                usable: false,
                code,
                message,
                remedy: remedy.unwrap_or_default(),
                devices: Vec::new(),
            }),
            Err(passage_core::vfio::VerifyError::NoGroup(g)) => Err(HelperError::NotFound(
                format!("There is no IOMMU group {g} on this host."),
            )),
            Err(e) => Err(failed(e)),
        };
        v.map(Verification::into_args)
    }

    /// The whole host as the helper keeps it: the model `passagectl list --json` is made from
    /// (docs/JSON.md), as JSON. What `passagectl -H HOST list` and the app read from another
    /// machine; kept current by the kernel's events, so a call costs no scan.
    #[zbus(out_args("host"))]
    async fn describe_host(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HelperError> {
        self.authorize(
            conn,
            &hdr,
            "DescribeHost",
            HashMap::new(),
            &Options::default(),
        )
        .await?;
        let model = self.model.clone();
        // Serializing a 10,000-function host takes a while: off the thread that serves calls.
        tokio::task::spawn_blocking(move || {
            let kept = model
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            serde_json::to_string(&*kept.host).map_err(failed)
        })
        .await
        .map_err(failed)?
    }

    /// A device changed (added, removed, bound, unbound): one `passagectl monitor --json` line.
    #[zbus(signal)]
    async fn device_changed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        update: &str,
    ) -> zbus::Result<()>;

    #[zbus(out_args("facts"))]
    async fn describe(
        &self,
        address: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<HashMap<String, OwnedVariant>, HelperError> {
        let a: PciAddress = address
            .parse()
            .map_err(|e: passage_core::address::ParseError| {
                HelperError::InvalidArgs(e.to_string())
            })?;
        self.authorize(conn, &hdr, "Describe", HashMap::new(), &Options::default())
            .await?;
        let host = self.host_model();
        let d = host.device(a).ok_or_else(|| {
            HelperError::NotFound(format!("There is no PCI device {a} on this host."))
        })?;
        let c = &d.capabilities;
        let mut out: HashMap<String, OwnedVariant> = HashMap::new();
        let mut put = |k: &str, v: Variant<'_>| {
            if let Ok(v) = v.try_into() {
                out.insert(k.to_string(), v);
            }
        };
        put("config_bytes", Variant::U32(d.config_bytes as u32));
        for (k, v) in [
            ("flr", c.flr),
            ("aer", c.aer),
            ("pm_reset", c.pm_reset),
            ("express", c.express),
            ("msi", c.msi),
            ("msix", c.msix),
        ] {
            if let Some(b) = v {
                put(k, Variant::Bool(b));
            }
        }
        if let Some(acs) = c.acs {
            put(
                "acs",
                Variant::from(match acs {
                    None => "absent".to_string(),
                    Some(a) if a.isolates() => "isolates".to_string(),
                    Some(_) => "partial".to_string(),
                }),
            );
        }
        if let Some(t) = c.port_type {
            let s = serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            put("pcie_type", Variant::from(s));
        }
        if let Some(n) = c.sriov_total_vfs {
            put("sriov_total_vfs", Variant::U32(n as u32));
        }
        if let Some(m) = &d.reset_methods {
            put("reset_methods", Variant::from(m.clone()));
        }
        Ok(out)
    }
}

/// Waits for a reason to stop: Ctrl+C, SIGTERM (`systemctl stop`), or the system bus gone
/// (dbus-daemon died or restarted: nobody can reach this process any more, and bus activation
/// starts a fresh one on the next call).
async fn stop_reason(conn: &zbus::Connection) -> &'static str {
    use futures_util::StreamExt;
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut t) => {
                t.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    let bus_gone = async {
        let mut messages = zbus::MessageStream::from(conn);
        while let Some(Ok(_)) = messages.next().await {}
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term => "asked to stop",
        _ = bus_gone => "the system bus went away",
    }
}

fn one_shot(args: &Args, kernel: &Option<Arc<dyn Kernel>>, state: &StateDir) -> Result<(), String> {
    // Every one-shot changes something (even a replay): refused whole, before any of it, by a
    // helper that only reads.
    let kernel = writable(kernel, &args.root)?;
    let kernel = kernel.as_ref();
    let locks = Locks::default();
    for (g, outcomes) in claim::replay(kernel, state).map_err(|e| e.to_string())? {
        for o in outcomes {
            println!("replayed group {g}: {}", o.describe());
        }
    }
    let host = || Helper::scan(&args.root).map_err(|e| format!("{e:?}"));
    if let Some(g) = &args.claim {
        let g: GroupId = g.parse().map_err(|e| format!("{e}"))?;
        // Held first, then the host read: what is decided is what is there now.
        let held = claim::hold(&locks, state, g).map_err(|e| e.to_string())?;
        let d = claim::claim_held(
            &host()?,
            g,
            &ClaimOptions { force: args.force },
            kernel,
            state,
            &held,
        )
        .map_err(|e| e.to_string())?;
        println!(
            "group {g} {}",
            if d.changed {
                "claimed"
            } else {
                "was already claimed"
            }
        );
    }
    if args.reclaim {
        let h = host()?;
        // Claims of the last boot that did not survive it are not claims any more.
        match claim::reconcile(&h, state, kernel) {
            Ok(said) => said.iter().for_each(|l| println!("{l}")),
            // The persisted groups are claimed all the same.
            Err(e) => eprintln!("checking the claim records against the kernel: {e}"),
        }
        let persisted = passage_helper::persist::list(state).map_err(|e| e.to_string())?;
        for (recorded, check) in
            passage_helper::persist::reclaimable(&h, state).map_err(|e| e.to_string())?
        {
            match check {
                Ok(g) => {
                    let members = persisted
                        .iter()
                        .find(|p| p.group == recorded)
                        .map(|p| p.members.as_slice())
                        .unwrap_or_default();
                    let claimed = claim::hold(&locks, state, g).and_then(|held| {
                        let h =
                            Helper::scan(&args.root).map_err(|e| claim::ClaimError::Failed {
                                message: format!("{e:?}"),
                                rolled_back: Vec::new(),
                            })?;
                        let d = claim::claim_held(
                            &h,
                            g,
                            &ClaimOptions { force: false },
                            kernel,
                            state,
                            &held,
                        )?;
                        // Recorded as held with the host drivers it was persisted from (see
                        // claim::adopt), whoever put it on vfio-pci; still under the lock.
                        let adopted = claim::adopt(state, g, members);
                        Ok((d, adopted))
                    });
                    match claimed {
                        Ok((d, adopted)) => {
                            let how = if d.changed {
                                "claimed"
                            } else {
                                // The udev rule gave it to vfio-pci before its host driver.
                                "already on vfio-pci at boot"
                            };
                            match adopted {
                                Ok(_) => println!("persisted group {recorded} (now {g}): {how}"),
                                Err(e) => eprintln!(
                                    "persisted group {recorded} (now {g}): {how}, but its claim could not be recorded: {e}"
                                ),
                            }
                        }
                        Err(e) => eprintln!("persisted group {recorded}: not claimed: {e}"),
                    }
                }
                Err(why) => eprintln!("persisted group {recorded}: skipped: {why}"),
            }
        }
    }
    if let Some(g) = &args.rehearse_reset {
        let g: GroupId = g.parse().map_err(|e| format!("{e}"))?;
        let held = claim::hold(&locks, state, g).map_err(|e| e.to_string())?;
        let (survives, notes) =
            passage_helper::rehearse::rehearse(&args.root, state, kernel, &held, g, &host)?;
        for n in notes {
            println!("{n}");
        }
        if !survives {
            return Err(format!("group {g} does not survive a guest reboot"));
        }
    }
    if let Some(v) = &args.set_vfs {
        let (a, n) = v
            .split_once('=')
            .ok_or_else(|| format!("--set-vfs takes ADDRESS=COUNT, not {v}"))?;
        let a: PciAddress = a.parse().map_err(|e| format!("{e}"))?;
        let n: u32 = n
            .parse()
            .map_err(|_| format!("--set-vfs: {n} is not a count"))?;
        let d = passage_helper::sriov::set(&args.root, state, &host()?, a, n)?;
        for note in d.notes {
            println!("{note}");
        }
    }
    for (g, on) in [(&args.persist, true), (&args.unpersist, false)] {
        let Some(g) = g else { continue };
        let g: GroupId = g.parse().map_err(|e| format!("{e}"))?;
        let r = HostRoot::open(&args.root).map_err(|e| e.to_string())?;
        let d = passage_helper::persist::set(&host()?, &r, &args.root, g, on, state)
            .map_err(|e| e.to_string())?;
        println!(
            "group {g} {}",
            match (on, d.changed) {
                (true, _) => "is claimed at every boot",
                (false, true) => "is no longer claimed at boot",
                (false, false) => "was not claimed at boot",
            }
        );
        for n in d.notes {
            println!("  {n}");
        }
        if d.boot_layers_changed {
            match passage_helper::persist::regenerate_initramfs() {
                Ok(n) => println!("  {n}"),
                Err(n) => eprintln!("  {n}"),
            }
        }
    }
    if let Some(g) = &args.release {
        let g: GroupId = g.parse().map_err(|e| format!("{e}"))?;
        let held = claim::hold(&locks, state, g).map_err(|e| e.to_string())?;
        let d =
            claim::release_held(&host()?, g, kernel, state, &held).map_err(|e| e.to_string())?;
        println!(
            "group {g} {}",
            if d.changed {
                "released"
            } else {
                "was not claimed"
            }
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    passage_core::i18n::init();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PASSAGE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.regenerate_initramfs {
        // passage-initramfs.service: the rebuild alone (its unit gives it no state directory);
        // a failure fails the unit.
        return match passage_helper::persist::regenerate_initramfs() {
            Ok(note) => {
                println!("{note}");
                ExitCode::SUCCESS
            }
            Err(note) => {
                eprintln!("passage-helper: {note}");
                ExitCode::from(1)
            }
        };
    }
    let state = match StateDir::new(&args.state_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!(
                "passage-helper: state directory {}: {e}",
                args.state_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let kernel = match passage_helper::kernel_for(&args.root) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("passage-helper: {e}");
            return ExitCode::from(2);
        }
    };
    if args.boot_line_request {
        return match passage_helper::bootfix::serve_request(&args.root, &state) {
            Ok(done) => {
                for n in done.notes {
                    println!("{n}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("passage-helper: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.claim.is_some()
        || args.release.is_some()
        || args.replay
        || args.reclaim
        || args.persist.is_some()
        || args.unpersist.is_some()
        || args.set_vfs.is_some()
        || args.rehearse_reset.is_some()
    {
        return match one_shot(&args, &kernel, &state) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("passage-helper: {e}");
                ExitCode::from(1)
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("passage-helper: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        // A crash or kill during an earlier claim is undone before anyone can ask anything.
        // A helper that only reads (a recorded tree) changed nothing, so has nothing to undo.
        match kernel.as_ref().map(|k| claim::replay(k.as_ref(), &state)) {
            Some(Ok(done)) => {
                for (g, outcomes) in done {
                    tracing::warn!("replayed unfinished operation on group {g}: {outcomes:?}");
                }
            }
            Some(Err(e)) => tracing::error!("replaying journals: {e}"),
            None => tracing::info!("{}", passage_helper::read_only_reason(&args.root)),
        }
        // A boot-line change a crash cut short: every boot file back as it was. On the
        // machine's own root this unit may not write them; passage-boot-line.service does, at
        // boot and before every change.
        if kernel.is_some() && args.root != Path::new("/") {
            match passage_helper::bootfix::replay(&args.root, &state) {
                Ok(true) => {
                    tracing::warn!("put the boot configuration back after an unfinished change")
                }
                Ok(false) => {}
                Err(e) => tracing::error!("putting the boot configuration back: {e}"),
            }
        }
        let host = match Helper::scan(&args.root) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("passage-helper: reading the host: {e:?}");
                return ExitCode::from(2);
            }
        };
        if let Some(k) = kernel.as_deref() {
            match claim::reconcile(&host, &state, k) {
                Ok(said) => said.iter().for_each(|l| tracing::info!("{l}")),
                Err(e) => tracing::error!("checking the claim records against the kernel: {e}"),
            }
        }
        // What the scan's uses were read from: the first change need not read them again.
        let uses_key = HostRoot::open(&args.root)
            .map(|r| passage_core::usage::uses_inputs(&r))
            .unwrap_or_default();
        let (news, mut told) = tokio::sync::mpsc::unbounded_channel();
        let model = Arc::new(std::sync::RwLock::new(Kept {
            host: Arc::new(host),
            uses_key,
            news: Some(news),
            own_changes_told: args.root != Path::new("/"),
            unheard: HashMap::new(),
            generation: 0,
        }));
        if args.root == Path::new("/") {
            let (m, r) = (model.clone(), args.root.clone());
            std::thread::spawn(move || follow_events(m, r));
        }
        let locks = Arc::new(Locks::default());
        let helper = Helper {
            model,
            root: args.root.clone(),
            kernel,
            state,
            locks: locks.clone(),
            auth_timeout: std::time::Duration::from_secs(args.auth_timeout),
            uids: std::sync::Mutex::new(HashMap::new()),
        };
        let conn = zbus::connection::Builder::system()
            .name(names::BUS_NAME)
            .serve_at(names::OBJECT_PATH, helper)
            .build()
            .await;
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "passage-helper: cannot serve {} on the system bus: {e}",
                    names::BUS_NAME
                );
                return ExitCode::from(2);
            }
        };
        tracing::info!("serving {} at {}", names::BUS_NAME, names::OBJECT_PATH);
        // Device changes go out as signals, in the order they were applied to the model.
        let emitter = conn.clone();
        tokio::spawn(async move {
            while let Some(u) = told.recv().await {
                let Ok(json) = serde_json::to_string(&u) else {
                    continue;
                };
                if let Err(e) = emitter
                    .emit_signal(
                        None::<zbus::names::BusName<'_>>,
                        names::OBJECT_PATH,
                        names::INTERFACE,
                        names::SIGNAL_DEVICE_CHANGED,
                        &(json,),
                    )
                    .await
                {
                    tracing::warn!("telling a device change: {e}");
                }
            }
        });
        let why = stop_reason(&conn).await;
        // A transaction in flight is finished, never cut: its devices end where it meant them
        // to (or rolled back), and its journal is closed. Requests still waiting for polkit
        // hold nothing and simply end with the process.
        tracing::info!("stopping ({why}); letting operations in flight finish");
        let waited = std::time::Instant::now();
        while !locks.is_idle() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::info!(
            "stopped after {} ms of waiting",
            waited.elapsed().as_millis()
        );
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_method_has_a_row_in_the_bouncer_and_nothing_else_passes() {
        let xml = include_str!("../../../data/io.github.passage.Helper1.xml");
        let methods: Vec<&str> = xml
            .split("<method name=\"")
            .skip(1)
            .filter_map(|t| t.split('"').next())
            .collect();
        assert!(methods.len() >= 7, "{methods:?}");
        for m in &methods {
            assert!(action_for(m).is_ok(), "{m} has no polkit action");
        }
        // Each row is a documented method (or the host-critical form of Claim).
        for (m, _) in BOUNCER {
            assert!(
                methods.contains(m) || *m == "ClaimHostCritical" || *m == "FixD3cold",
                "{m} is in the table but not in the interface"
            );
        }
        for unknown in ["", "Exec", "claim", "Claim "] {
            assert!(matches!(
                action_for(unknown),
                Err(HelperError::NotAuthorized(_))
            ));
        }
    }
}
