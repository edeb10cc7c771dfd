//! libvirt guests over D-Bus, through libvirt-dbus (`org.libvirt`): list domains with their
//! state and the PCI devices they hold, and write a plan into a domain's definition.
//!
//! `/org/libvirt/QEMU` is `qemu:///system` on the system bus; `/org/libvirt/Test` serves
//! libvirt's built-in `test:///default` driver, which the tests use as a real libvirt without a
//! daemon. Where libvirt-dbus is absent, [`LibvirtError::Unavailable`] says so in a sentence
//! and front ends keep working with local guests. Feature `dbus` only.

use passage_core::export::libvirt::{self as xml, ApplyError, DomainXmlError, Hostdev};
use passage_core::i18n::trf;
use passage_core::model::Host;
use passage_core::plan::{Guest, Lifecycle, PlanError, Vmm};
use passage_core::session::{GuestSource, KnownGuest};
use passage_core::GroupId;
use serde::Serialize;
use std::collections::BTreeSet;
use zbus::OwnedObjectPath;

/// `VIR_DOMAIN_XML_INACTIVE`: the persistent definition.
const XML_INACTIVE: u32 = 2;

/// libvirt-dbus's name on the bus.
pub const SERVICE: &str = "org.libvirt";
/// `qemu:///system` (system bus) or `qemu:///session` (session bus).
pub const QEMU_PATH: &str = "/org/libvirt/QEMU";
/// `test:///default`, libvirt's in-process test driver.
pub const TEST_PATH: &str = "/org/libvirt/Test";

#[zbus::proxy(interface = "org.libvirt.Connect", default_service = "org.libvirt")]
trait Connect {
    fn list_domains(&self, flags: u32) -> zbus::Result<Vec<OwnedObjectPath>>;
    #[zbus(name = "DomainDefineXML")]
    fn domain_define_xml(&self, xml: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(interface = "org.libvirt.Domain", default_service = "org.libvirt")]
trait Domain {
    #[zbus(name = "GetXMLDesc")]
    fn get_xml_desc(&self, flags: u32) -> zbus::Result<String>;
    fn get_state(&self, flags: u32) -> zbus::Result<(i32, i32)>;
}

/// A domain's state as libvirt reports it (`virDomainState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainState {
    Running,
    Blocked,
    Paused,
    ShuttingDown,
    ShutOff,
    Crashed,
    Suspended,
    Unknown,
}

impl DomainState {
    fn from_libvirt(v: i32) -> Self {
        match v {
            1 => Self::Running,
            2 => Self::Blocked,
            3 => Self::Paused,
            4 => Self::ShuttingDown,
            5 => Self::ShutOff,
            6 => Self::Crashed,
            7 => Self::Suspended,
            _ => Self::Unknown,
        }
    }

    /// The guest has its devices open (a running QEMU holds its groups).
    pub fn holds_devices(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Blocked | Self::Paused | Self::ShuttingDown | Self::Suspended
        )
    }
}

/// One libvirt domain as Passage sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibvirtDomain {
    pub name: String,
    pub state: DomainState,
    pub machine: Option<String>,
    pub hostdevs: Vec<Hostdev>,
    /// What Passage's metadata says; `None` for domains Passage never wrote.
    pub lifecycle: Option<Lifecycle>,
    #[serde(skip)]
    pub xml: String,
}

impl LibvirtDomain {
    /// This domain as a guest both front ends list and plan with, the groups it holds read
    /// against `host`.
    pub fn to_known(&self, host: &Host) -> KnownGuest {
        KnownGuest {
            groups: self.groups(host),
            // libvirt's state word as the domain's JSON has it, so text and JSON agree.
            state: serde_json::to_value(self.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            lifecycle: self.lifecycle.unwrap_or_default(),
            machine: self.machine.clone().unwrap_or_default(),
            vmm: Vmm::Libvirt,
            source: GuestSource::Libvirt,
            name: self.name.clone(),
            // libvirt sets the locked-memory limit for its domains itself.
            memory_mib: None,
        }
    }

    /// The host groups this domain's PCI hostdevs belong to (what it holds, or will hold when
    /// it starts).
    pub fn groups(&self, host: &Host) -> Vec<GroupId> {
        let set: BTreeSet<GroupId> = self
            .hostdevs
            .iter()
            .filter_map(|h| host.device(h.source).and_then(|d| d.group))
            .collect();
        set.into_iter().collect()
    }

    /// The domain as a plan guest holding nothing yet.
    pub fn to_guest(&self) -> Result<Guest, PlanError> {
        let mut g = Guest::new(&self.name, Vmm::Libvirt)?;
        if let Some(m) = &self.machine {
            g.machine = m.clone();
        }
        g.lifecycle = self.lifecycle.unwrap_or_default();
        Ok(g)
    }
}

/// Why libvirt could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("{0}")]
    Unavailable(String),
    #[error("libvirt: {0}")]
    Call(String),
    #[error(transparent)]
    Xml(#[from] DomainXmlError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("libvirt has no domain named “{0}”")]
    NoDomain(String),
}

fn call_err(e: zbus::Error) -> LibvirtError {
    let absent = match &e {
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        ),
        zbus::Error::FDO(f) => matches!(
            **f,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    };
    if absent {
        LibvirtError::Unavailable(trf(
            "libvirt-dbus is not running or not installed ({detail}); install the libvirt-dbus package to see libvirt guests. Local guest profiles still work.",
            &[("detail", &e.to_string())],
        ))
    } else {
        LibvirtError::Call(e.to_string())
    }
}

/// One libvirt connection through libvirt-dbus.
pub struct Libvirt {
    conn: zbus::Connection,
    path: String,
}

impl Libvirt {
    /// `qemu:///system` on the system bus.
    pub async fn system() -> Result<Self, LibvirtError> {
        let conn = zbus::Connection::system().await.map_err(|e| {
            LibvirtError::Unavailable(trf(
                "cannot reach the system bus ({error}), so no libvirt guests",
                &[("error", &e.to_string())],
            ))
        })?;
        Ok(Self::on(conn, QEMU_PATH))
    }

    /// `qemu:///system` of another machine (`None`: this one), through libvirt-dbus on its
    /// system bus over SSH ([`crate::remote`]).
    pub async fn on_machine(on: Option<&passage_core::Remote>) -> Result<Self, LibvirtError> {
        if on.is_none() {
            return Self::system().await;
        }
        let conn = crate::remote::system_bus(on)
            .await
            .map_err(|e| LibvirtError::Unavailable(e.to_string()))?;
        Ok(Self::on(conn, QEMU_PATH))
    }

    /// Any libvirt-dbus connection object on a bus (the tests use `TEST_PATH` on a private
    /// session bus).
    pub fn on(conn: zbus::Connection, path: &str) -> Self {
        Self {
            conn,
            path: path.to_string(),
        }
    }

    async fn connect_proxy(&self) -> Result<ConnectProxy<'_>, LibvirtError> {
        ConnectProxy::builder(&self.conn)
            .path(self.path.as_str())
            .build()
            .await
            .map_err(call_err)
    }

    async fn domain_at(&self, path: OwnedObjectPath) -> Result<LibvirtDomain, LibvirtError> {
        let d = DomainProxy::builder(&self.conn)
            .path(path)
            .build()
            .await
            .map_err(call_err)?;
        // The persistent definition (what the domain gets at its next start, and what a
        // redefinition changes), not the live one of a running domain.
        let xml_text = d.get_xml_desc(XML_INACTIVE).await.map_err(call_err)?;
        let (state, _reason) = d.get_state(0).await.map_err(call_err)?;
        Ok(LibvirtDomain {
            name: name_of(&xml_text).unwrap_or_default(),
            state: DomainState::from_libvirt(state),
            machine: xml::machine_of(&xml_text),
            hostdevs: xml::hostdevs(&xml_text)?,
            lifecycle: xml::lifecycle(&xml_text),
            xml: xml_text,
        })
    }

    /// Every domain, defined or running, in libvirt's order.
    pub async fn domains(&self) -> Result<Vec<LibvirtDomain>, LibvirtError> {
        let paths = self
            .connect_proxy()
            .await?
            .list_domains(0)
            .await
            .map_err(call_err)?;
        let mut out = Vec::new();
        for p in paths {
            out.push(self.domain_at(p).await?);
        }
        Ok(out)
    }

    pub async fn domain(&self, name: &str) -> Result<LibvirtDomain, LibvirtError> {
        self.domains()
            .await?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| LibvirtError::NoDomain(name.chars().take(40).collect()))
    }

    /// Defines (or redefines) a domain from its XML; returns it as libvirt stored it.
    pub async fn define(&self, xml_text: &str) -> Result<LibvirtDomain, LibvirtError> {
        let path = self
            .connect_proxy()
            .await?
            .domain_define_xml(xml_text)
            .await
            .map_err(call_err)?;
        self.domain_at(path).await
    }

    /// Writes a plan guest into the libvirt domain of the same name.
    pub async fn apply(&self, guest: &Guest, host: &Host) -> Result<LibvirtDomain, LibvirtError> {
        let d = self.domain(&guest.name).await?;
        let updated = xml::updated_domain(&d.xml, guest, host)?;
        self.define(&updated).await
    }
}

fn name_of(xml_text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml_text);
    let mut depth = 0usize;
    let mut in_name = false;
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                in_name = depth == 2 && e.local_name().as_ref() == "name";
            }
            quick_xml::events::Event::Text(t) if in_name => {
                let s: &str = t.as_ref();
                return Some(s.trim().to_string());
            }
            quick_xml::events::Event::End(_) => {
                depth = depth.saturating_sub(1);
                in_name = false;
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// This host's libvirt domains (`qemu:///system`), for callers without an async runtime; the
/// error is the sentence to show.
/// This host's libvirt domains as known guests ([`LibvirtDomain::to_known`]); the error is the
/// sentence saying why libvirt could not be asked.
pub fn system_guests(host: &Host) -> Result<Vec<KnownGuest>, String> {
    Ok(system_domains()?.iter().map(|d| d.to_known(host)).collect())
}

pub fn system_domains() -> Result<Vec<LibvirtDomain>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async { Libvirt::system().await?.domains().await })
        .map_err(|e| e.to_string())
}
