//! The helper's D-Bus contract, shared by the service (`passage-helper`) and its clients
//! (`passagectl`, the app): the named errors, the options, the typed replies and the client
//! proxy. The core library never sees zbus: this crate is where D-Bus starts.
//!
//! Replies are typed on the wire (structs with D-Bus signatures): no JSON inside a string and
//! no list of devices inside a sentence, so a client in any language reads them as values.
//!
//! Interface documentation: data/io.github.passage.Helper1.xml.

pub mod libvirt;
pub mod remote;

use passage_core::names;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use zbus::zvariant::Type;
use zbus::{OwnedVariant as OwnedValue, Variant as Value};

/// The interface's version (the `Version` property): 2 since replies are typed, 3 since
/// PersistedGroups, 4 since DescribeHost and DeviceChanged, 5 since Fix, Unfix, BootLineFixes,
/// SetVirtualFunctions and RehearseReset, 6 since ResetRehearsals, 7 since SetBarSize.
pub const INTERFACE_VERSION: u32 = 7;

/// Named errors, `io.github.passage.Helper1.Error.*`, each with a sentence for a person.
///
/// "Not authorized" comes in three kinds, as udisks tells them apart, because a person does
/// different things about each: polkit said no (ask an administrator), a password was needed
/// and nobody could be asked (run an authentication agent, or drop `auth.no_user_interaction`),
/// or the person dismissed the password prompt (nothing is wrong; try again).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.github.passage.Helper1.Error")]
pub enum HelperError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NotFound(String),
    InvalidArgs(String),
    Busy(String),
    /// polkit said no: this user may not do this.
    NotAuthorized(String),
    /// polkit would allow it after authentication, but no agent could ask (none running, or
    /// the caller set `auth.no_user_interaction`).
    NotAuthorizedCanObtain(String),
    /// The authentication prompt was shown and dismissed.
    NotAuthorizedDismissed(String),
    BadState(String),
    HostCritical(String),
    Failed(String),
}

/// One device and the driver holding it after an operation (`(ss)`; `""` for no driver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DeviceDriver {
    pub address: String,
    pub driver: String,
}

/// What Claim and Release did (out arguments `b a(ss)`): whether anything changed, and every member of
/// the group with the driver that holds it now (vfio-pci after a claim; bridges keep theirs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Transition {
    pub changed: bool,
    pub devices: Vec<DeviceDriver>,
}

impl Transition {
    /// As the service sends it: two out arguments, `changed` and `devices`.
    pub fn into_args(self) -> (bool, Vec<DeviceDriver>) {
        (self.changed, self.devices)
    }
}

/// One member of an unfinished operation as the journal recorded it before the first write
/// (`(sssss)`; `""` where the kernel had nothing: no driver, no override).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct JournalMember {
    pub address: String,
    pub vendor_id: String,
    pub device_id: String,
    pub driver: String,
    pub driver_override: String,
}

/// An operation that did not finish (`(usua(sssss))`): the journal's format version, the
/// operation ("claim", "release"), the group, and its members as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PendingOperation {
    pub version: u32,
    pub operation: String,
    pub group: u32,
    pub members: Vec<JournalMember>,
}

/// Verify's answer (out arguments `b s s s as`): usable or not, a stable code ("usable", "not-viable", …),
/// a sentence and a remedy for a person (`""` when there is none), and the devices QEMU could
/// open (empty when not usable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Verification {
    pub usable: bool,
    pub code: String,
    pub message: String,
    pub remedy: String,
    pub devices: Vec<String>,
}

impl Verification {
    /// As the service sends it: five out arguments, `usable` to `devices`.
    pub fn into_args(self) -> (bool, String, String, String, Vec<String>) {
        (
            self.usable,
            self.code,
            self.message,
            self.remedy,
            self.devices,
        )
    }
}

/// What Persist did (out arguments `b as`): whether anything changed, and notes in words (built-in
/// drivers, the initramfs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Persisted {
    pub changed: bool,
    pub notes: Vec<String>,
}

/// A group the helper holds (`(uas)`): its number and its members' addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct HeldGroup {
    pub group: u32,
    pub devices: Vec<String>,
}

/// Options every mutating method takes (`a{sv}`), parsed strictly: unknown keys and wrong
/// types are refused before anything happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `force` (b): claim a host-critical group (needs its own polkit action).
    pub force: bool,
    /// `auth.no_user_interaction` (b): fail rather than prompt for a password.
    pub no_user_interaction: bool,
    /// `expect_devices` (as): the group's usable members as the caller knows them (a plan,
    /// a libvirt domain); the claim is refused unless the group holds exactly these, so a
    /// renumbered group or another host's numbers never claim the wrong devices.
    pub expect_devices: Option<Vec<passage_core::PciAddress>>,
}

/// The most addresses `expect_devices` may carry (a group of 256 functions is a whole bus).
pub const MAX_EXPECTED: usize = 256;

impl Options {
    pub fn parse(raw: &HashMap<String, OwnedValue>, allowed: &[&str]) -> Result<Self, HelperError> {
        let mut o = Options::default();
        if raw.len() > 8 {
            return Err(HelperError::InvalidArgs("too many options".into()));
        }
        for (k, v) in raw {
            if !allowed.contains(&k.as_str()) {
                let k: String = k.chars().take(40).collect();
                return Err(HelperError::InvalidArgs(format!("unknown option “{k}”")));
            }
            if k == "expect_devices" {
                o.expect_devices = Some(parse_addresses(v)?);
                continue;
            }
            let b = match &**v {
                Value::Bool(b) => *b,
                _ => {
                    return Err(HelperError::InvalidArgs(format!(
                        "option “{k}” must be a boolean"
                    )))
                }
            };
            match k.as_str() {
                "force" => o.force = b,
                "auth.no_user_interaction" => o.no_user_interaction = b,
                _ => {}
            }
        }
        Ok(o)
    }
}

fn parse_addresses(v: &Value<'_>) -> Result<Vec<passage_core::PciAddress>, HelperError> {
    let bad = || {
        HelperError::InvalidArgs(
            "option “expect_devices” must be a list of PCI addresses (as)".into(),
        )
    };
    let Value::Array(a) = v else {
        return Err(bad());
    };
    if a.len() > MAX_EXPECTED {
        return Err(HelperError::InvalidArgs(format!(
            "option “expect_devices” lists more than {MAX_EXPECTED} devices"
        )));
    }
    a.iter()
        .map(|item| match item {
            Value::Str(s) => s
                .as_str()
                .parse()
                .map_err(|e: passage_core::address::ParseError| {
                    HelperError::InvalidArgs(e.to_string())
                }),
            _ => Err(bad()),
        })
        .collect()
}

/// The `expect_devices` value for a claim: the addresses, as `as`.
pub fn expect_devices(addresses: &[passage_core::PciAddress]) -> Value<'static> {
    Value::from(
        addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<String>>(),
    )
}

/// The client side of `io.github.passage.Helper1`.
#[zbus::proxy(
    interface = "io.github.passage.Helper1",
    default_service = "io.github.passage.Helper1",
    default_path = "/io/github/passage/Helper1"
)]
pub trait Helper {
    /// Claims a whole group for vfio-pci; `changed` is false when it already was.
    fn claim(
        &self,
        group: u32,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Transition, HelperError>;
    /// Gives a group back to the drivers it was claimed from.
    fn release(
        &self,
        group: u32,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Transition, HelperError>;
    /// Claims a group at every boot (on) or stops doing so (off).
    fn persist(
        &self,
        group: u32,
        on: bool,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Persisted, HelperError>;
    /// The groups the helper holds.
    fn claims(&self) -> Result<Vec<HeldGroup>, HelperError>;
    /// The groups claimed at every boot, with their recorded members.
    fn persisted_groups(&self) -> Result<Vec<HeldGroup>, HelperError>;
    /// Operations that did not finish (none normally: the helper undoes them at start).
    fn journal(&self) -> Result<Vec<PendingOperation>, HelperError>;
    /// QEMU's steps on a group.
    fn verify(&self, group: u32) -> Result<Verification, HelperError>;
    /// Facts from the full config space of one device (what a user cannot read).
    fn describe(&self, address: &str) -> Result<HashMap<String, OwnedValue>, HelperError>;
    /// Carries out the remedy of the doctor's finding `code` (of `device`, `""` for none):
    /// `changed` false when the configuration already said so; `notes` in words.
    fn fix(
        &self,
        code: &str,
        device: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Persisted, HelperError>;
    /// Takes back what `fix` did for `code` (and `device`).
    fn unfix(
        &self,
        code: &str,
        device: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Persisted, HelperError>;
    /// Rehearses group `group`'s reset: claimed, each member reset, given back. Whether every
    /// member survives a guest's reboot, and a line per member.
    fn rehearse_reset(
        &self,
        group: u32,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(bool, Vec<String>), HelperError>;
    /// Physical function `address` gets `count` virtual functions (0: none), now and at every
    /// boot.
    fn set_virtual_functions(
        &self,
        address: &str,
        count: u32,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Persisted, HelperError>;
    /// The boot-line changes Passage made and has not taken back, as JSON
    /// (`[{code, device, edit: {add, remove}, before, files, at}]`).
    fn boot_line_fixes(&self) -> Result<String, HelperError>;
    /// BAR `bar` of `address` gets `size_mib` whenever Passage claims it (0: left as it is);
    /// interface version 7.
    fn set_bar_size(
        &self,
        address: &str,
        bar: u32,
        size_mib: u64,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Persisted, HelperError>;
    /// What reset rehearsals found, per device model and kernel release, as JSON
    /// (`[passage_core::doctor::Rehearsal]`): the doctor's `reset-rehearsed` for callers who
    /// cannot read the helper's state directory (interface version 6).
    fn reset_rehearsals(&self) -> Result<String, HelperError>;
    /// The whole host as the helper keeps it, as JSON (`passage_core::Host`).
    fn describe_host(&self) -> Result<String, HelperError>;
    /// A device changed: one `passage_core::watch::Update` as JSON.
    #[zbus(signal)]
    fn device_changed(&self, update: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<u32>;
}

/// Connects to the helper on the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`).
pub async fn connect() -> Result<HelperProxy<'static>, HelperError> {
    let conn = zbus::Connection::system().await?;
    Ok(HelperProxy::builder(&conn)
        .destination(names::BUS_NAME)
        .path(names::OBJECT_PATH)
        .build()
        .await?)
}

/// Why Apply cannot reach the helper, told apart so the app can say each in its own words
/// (and keep the bus's own error for a bug report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// No system bus to connect to (a container, a minimal VM): the bus's error.
    NoSystemBus(String),
    /// The bus runs, but nothing owns or can activate the helper's name.
    NotInstalled,
    /// Something else went wrong asking the bus: its error.
    Failed(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use passage_core::i18n::{tr, trf};
        match self {
            Self::NoSystemBus(e) => f.write_str(&trf(
                "There is no system bus here ({error}), so Apply cannot reach the Passage helper.",
                &[("error", e)],
            )),
            Self::NotInstalled => f.write_str(&tr("The Passage helper is not installed, so Apply cannot claim groups (plans and exports work without it). Install it with “make install”, or your distribution's passage package.")),
            Self::Failed(e) => f.write_str(&trf(
                "The system bus did not say whether the Passage helper is installed: {error}",
                &[("error", e)],
            )),
        }
    }
}

/// Whether Apply can reach the helper: it runs now, or D-Bus starts it on the first call
/// (its activation file is installed). Asks the bus daemon only, so it never starts the helper.
pub fn helper_reachable() -> Result<(), Unreachable> {
    let failed = |e: &dyn std::fmt::Display| Unreachable::Failed(e.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(&e))?;
    rt.block_on(async {
        let conn = zbus::Connection::system()
            .await
            .map_err(|e| Unreachable::NoSystemBus(e.to_string()))?;
        let bus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(|e| failed(&e))?;
        let name = zbus::names::BusName::try_from(names::BUS_NAME).map_err(|e| failed(&e))?;
        if bus.name_has_owner(name).await.unwrap_or(false) {
            return Ok(());
        }
        let activatable = bus.list_activatable_names().await.map_err(|e| failed(&e))?;
        if activatable.iter().any(|n| n.as_str() == names::BUS_NAME) {
            Ok(())
        } else {
            Err(Unreachable::NotInstalled)
        }
    })
}

/// The helper's RehearseReset of `group` on this machine's system bus, waited for here (the
/// app calls it off its main loop): whether every member survives, and a line per member.
pub fn rehearse_blocking(group: u32) -> Result<(bool, Vec<String>), String> {
    blocking(|h| async move { h.rehearse_reset(group, HashMap::new()).await })
}

/// The helper's SetVirtualFunctions: physical function `address` gets `count` virtual
/// functions, now and at every boot; waited for here.
pub fn set_vfs_blocking(address: &str, count: u32) -> Result<Persisted, String> {
    let address = address.to_string();
    blocking(|h| async move {
        h.set_virtual_functions(&address, count, HashMap::new())
            .await
    })
}

/// The helper's SetBarSize: BAR `bar` of `address` gets `mib` whenever Passage claims it.
pub fn set_bar_size_blocking(address: &str, bar: u8, mib: u64) -> Result<Persisted, String> {
    let address = address.to_string();
    blocking(|h| async move {
        h.set_bar_size(&address, u32::from(bar), mib, HashMap::new())
            .await
    })
}

/// One call to this machine's helper, waited for on a runtime of its own; errors in words.
fn blocking<T, F, Fut>(f: F) -> Result<T, String>
where
    F: FnOnce(HelperProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, HelperError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let h = connect().await.map_err(|e| error_text(&e))?;
        f(h).await.map_err(|e| error_text(&e))
    })
}

/// What reset rehearsals found, from this machine's helper (the records are in its root-only
/// state directory), for a doctor run by someone else; empty when the helper cannot be
/// reached or is older than interface version 6 — the doctor then says nothing of them.
pub fn rehearsals_blocking() -> Vec<passage_core::doctor::Rehearsal> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    // A doctor does not wait long for what is only a note: a helper that does not answer
    // within a few seconds (activation stuck, a bus that does not reply) is "no rehearsals".
    rt.block_on(async {
        let ask = async {
            let h = connect().await.ok()?;
            let json = h.reset_rehearsals().await.ok()?;
            serde_json::from_str(&json).ok()
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), ask)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    })
}

/// The helper's Fix (or Unfix) of a doctor's finding on this machine's system bus, waited for
/// here (the app calls it off its main loop). `device` is "" for a finding about none.
pub fn fix_blocking(code: &str, device: &str, undo: bool) -> Result<Persisted, String> {
    let (code, device) = (code.to_string(), device.to_string());
    blocking(|h| async move {
        if undo {
            h.unfix(&code, &device, HashMap::new()).await
        } else {
            h.fix(&code, &device, HashMap::new()).await
        }
    })
}

/// Carries out [`passage_core::apply`]'s steps on this host: claims through the helper on the system
/// bus (with `expect_devices` from the plan), definitions through libvirt-dbus. Used by
/// `passagectl plan apply` and the app's Apply.
pub struct SystemExecutor<'a> {
    rt: tokio::runtime::Runtime,
    /// Another machine's helper and libvirt (`None`: this one's).
    on: Option<passage_core::Remote>,
    helper: Option<HelperProxy<'static>>,
    plan: &'a passage_core::plan::Plan,
    host: &'a passage_core::Host,
}

impl<'a> SystemExecutor<'a> {
    pub fn new(
        plan: &'a passage_core::plan::Plan,
        host: &'a passage_core::Host,
    ) -> std::io::Result<Self> {
        Ok(Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            on: None,
            helper: None,
            plan,
            host,
        })
    }

    /// The same on another machine: its helper and its libvirt, over SSH.
    pub fn on(mut self, machine: Option<passage_core::Remote>) -> Self {
        self.on = machine;
        self
    }

    fn helper(&mut self) -> Result<HelperProxy<'static>, String> {
        if let Some(h) = &self.helper {
            return Ok(h.clone());
        }
        if let Some(m) = &self.on {
            let h = self
                .rt
                .block_on(remote::helper_on(Some(m)))
                .map_err(|e| e.to_string())?;
            self.helper = Some(h.clone());
            return Ok(h);
        }
        let h = self.rt.block_on(connect()).map_err(|e| {
            passage_core::i18n::trf(
                "cannot reach the Passage helper on the system bus ({error}); is passage-helper installed?",
                &[("error", &e.to_string())],
            )
        })?;
        self.helper = Some(h.clone());
        Ok(h)
    }
}

/// A helper error as the sentence a person reads.
pub fn error_text(e: &HelperError) -> String {
    match e {
        HelperError::NotFound(m)
        | HelperError::InvalidArgs(m)
        | HelperError::Busy(m)
        | HelperError::BadState(m)
        | HelperError::HostCritical(m)
        | HelperError::Failed(m) => m.clone(),
        HelperError::NotAuthorized(m) => {
            passage_core::i18n::trf("not authorized: {why}", &[("why", m)])
        }
        HelperError::NotAuthorizedCanObtain(m) => passage_core::i18n::trf(
            "not authorized without a password, and nobody could be asked for one: {why} Run it from a desktop session (its authentication agent asks), or with pkttyagent in a terminal.",
            &[("why", m)],
        ),
        HelperError::NotAuthorizedDismissed(m) => passage_core::i18n::trf(
            "the password prompt was dismissed, so nothing changed: {why}",
            &[("why", m)],
        ),
        HelperError::ZBus(zbus::Error::MethodError(name, msg, _))
            if name
                .as_str()
                .starts_with("org.freedesktop.DBus.Error.ServiceUnknown") =>
        {
            passage_core::i18n::trf(
                "the Passage helper is not installed or could not start ({detail})",
                &[("detail", msg.as_deref().unwrap_or(""))],
            )
        }
        // The bus's own answer when the helper disconnected with the call pending (a method
        // error or its fdo form, depending on how zbus met it).
        HelperError::ZBus(z) if z.to_string().starts_with("org.freedesktop.DBus.Error.NoReply") => {
            passage_core::i18n::tr(
                "the Passage helper stopped before it answered (it was killed or crashed). Whatever it had begun is undone when it starts again, which the next request does; see where the devices are with `passagectl status`.",
            )
        }
        HelperError::ZBus(zbus::Error::InputOutput(e)) => passage_core::i18n::trf(
            "the connection to the system bus was lost before the helper answered ({detail}); the helper finishes or undoes what it had begun. See where the devices are with `passagectl status`.",
            &[("detail", &e.to_string())],
        ),
        HelperError::ZBus(z) => z.to_string(),
    }
}

impl passage_core::apply::Executor for SystemExecutor<'_> {
    fn claim(&mut self, group: passage_core::GroupId, force: bool) -> Result<bool, String> {
        let h = self.helper()?;
        // What the claim will bind, as the plan knows the group: its planned devices, plus the
        // chipset functions the host has in it (a plan never lists those, a claim binds them).
        // The helper refuses unless its own reading of the group is exactly this set, so a
        // renumbered group or a plan from another host never claims the wrong devices.
        let members = passage_core::plan::claimed_members(self.host, group);
        let mut planned: Vec<passage_core::PciAddress> = self
            .plan
            .guests
            .iter()
            .flat_map(|g| &g.groups)
            .flat_map(|p| p.devices.iter().map(|d| d.address))
            .filter(|a| members.iter().any(|d| d.address == *a))
            .collect();
        planned.extend(
            members
                .iter()
                .filter(|d| d.is_chipset_glue())
                .map(|d| d.address),
        );
        planned.sort();
        planned.dedup();
        self.rt
            .block_on(async move {
                let mut o = HashMap::new();
                o.insert("force", Value::Bool(force));
                o.insert("expect_devices", expect_devices(&planned));
                h.claim(group.0, o).await
            })
            .map(|t| t.changed)
            .map_err(|e| error_text(&e))
    }

    fn release(&mut self, group: passage_core::GroupId) -> Result<bool, String> {
        let h = self.helper()?;
        self.rt
            .block_on(async move { h.release(group.0, HashMap::new()).await })
            .map(|t| t.changed)
            .map_err(|e| error_text(&e))
    }

    fn define(&mut self, guest: &passage_core::plan::Guest) -> Result<(), String> {
        let (host, on) = (self.host, self.on.as_ref());
        self.rt
            .block_on(async {
                crate::libvirt::Libvirt::on_machine(on)
                    .await?
                    .apply(guest, host)
                    .await
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
