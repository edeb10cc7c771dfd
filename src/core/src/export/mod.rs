//! A plan → the configuration each VMM consumes. One module per target, all from the same
//! [`ResolvedGuest`] so they agree on which devices, at which guest addresses, with which
//! options; each is checked by its consumer's own tool in tests (docs/TESTING.md).
//!
//! Exports refuse plans with errors ([`crate::plan::check`]): a file that would give a guest
//! the wrong card, or half a group, is worse than no file. Warnings travel with the text as
//! [`Export::notes`], and as comments where the format has them.

mod cloud_hypervisor;
pub mod cluster;
mod crosvm;
mod kubevirt;
pub mod libvirt;
mod nova;
mod proxmox;
pub mod qemu;

use crate::i18n::{tr, trf};
use crate::model::Host;
use crate::plan::{self, Plan, Problem, ResolvedDevice, ResolvedGuest, Severity};
use std::fmt;
use std::str::FromStr;

/// What `passagectl export --format` accepts (docs/CONTRACTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The `<hostdev>`s inside one `<devices>` element.
    Libvirt,
    /// A complete minimal domain holding them.
    LibvirtDomain,
    Qemu,
    Proxmox,
    CloudHypervisor,
    Crosvm,
    Kubevirt,
    Nova,
    /// The plan with its resolved devices (`--plan` reads it back).
    Json,
}

impl Format {
    pub const ALL: [Format; 9] = [
        Format::Libvirt,
        Format::LibvirtDomain,
        Format::Qemu,
        Format::Proxmox,
        Format::CloudHypervisor,
        Format::Crosvm,
        Format::Kubevirt,
        Format::Nova,
        Format::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Libvirt => "libvirt",
            Format::LibvirtDomain => "libvirt-domain",
            Format::Qemu => "qemu",
            Format::Proxmox => "proxmox",
            Format::CloudHypervisor => "cloud-hypervisor",
            Format::Crosvm => "crosvm",
            Format::Kubevirt => "kubevirt",
            Format::Nova => "nova",
            Format::Json => "json",
        }
    }

    /// A name for menus, in the user's language where it is not a product name.
    pub fn label(self) -> String {
        match self {
            Format::Libvirt => tr("libvirt devices (XML)"),
            Format::LibvirtDomain => tr("libvirt domain (XML)"),
            Format::Qemu => tr("QEMU arguments"),
            Format::Proxmox => "Proxmox VE (hostpci)".into(),
            Format::CloudHypervisor => "cloud-hypervisor".into(),
            Format::Crosvm => "crosvm".into(),
            Format::Kubevirt => "KubeVirt (YAML)".into(),
            Format::Nova => "OpenStack Nova (nova.conf)".into(),
            Format::Json => tr("Passage plan (JSON)"),
        }
    }

    /// The file name extension a saved export gets.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Libvirt | Format::LibvirtDomain => "xml",
            Format::Qemu | Format::CloudHypervisor | Format::Crosvm => "args",
            Format::Proxmox => "conf",
            Format::Kubevirt => "yaml",
            Format::Nova => "conf",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| ExportError::BadFormat(s.chars().take(24).collect()))
    }
}

/// Knobs that are about the consumer, not the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// QEMU: the iommufd form (`-object iommufd` + `iommufd=`), for QEMU ≥ 9.0 on a kernel
    /// with `CONFIG_IOMMUFD`.
    pub iommufd: bool,
    /// libvirt-domain: the domain type (`kvm`; libvirt's test driver wants `test`).
    pub domain_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            iommufd: false,
            domain_type: "kvm".into(),
        }
    }
}

/// An export: the text, and what the person should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub text: String,
    pub notes: Vec<String>,
}

/// Why there is nothing to export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("“{0}” is not an export format (one of libvirt, libvirt-domain, qemu, proxmox, cloud-hypervisor, crosvm, kubevirt, nova, json)")]
    BadFormat(String),
    #[error("the plan has no guest named “{0}”")]
    NoGuest(String),
    #[error("no guest of the plan holds a group yet; assign one first (passagectl plan assign GROUP GUEST)")]
    NothingAssigned,
    #[error("guest “{0}” holds no groups")]
    EmptyGuest(String),
    #[error("the plan cannot be exported as it is: {}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join(" "))]
    Invalid(Vec<Problem>),
    #[error("writing {format}: {detail}")]
    Write {
        format: &'static str,
        detail: String,
    },
}

/// Exports one guest of a plan (the first holding groups when `guest` is `None`).
pub fn export(
    plan: &Plan,
    host: &Host,
    guest: Option<&str>,
    format: Format,
    opts: &Options,
) -> Result<Export, ExportError> {
    let g = match guest {
        Some(name) => plan
            .guest(name)
            .ok_or_else(|| ExportError::NoGuest(name.chars().take(40).collect()))?,
        None => plan
            .first_with_groups()
            .ok_or(ExportError::NothingAssigned)?,
    };
    // JSON is the whole plan; it may be exported to carry a half-made plan elsewhere.
    if format == Format::Json {
        return json(plan, host);
    }
    if g.groups.is_empty() {
        return Err(ExportError::EmptyGuest(g.name.clone()));
    }
    let problems = plan::check(plan, host);
    let errors: Vec<Problem> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(ExportError::Invalid(errors));
    }
    let mut notes: Vec<String> = problems
        .iter()
        .filter(|p| p.guest.as_deref() == Some(g.name.as_str()) || p.guest.is_none())
        .map(|p| p.message.clone())
        .collect();
    let layout = match format {
        Format::Libvirt | Format::LibvirtDomain | Format::Qemu => {
            plan::Layout::of(plan::Vmm::Qemu, &g.machine)
        }
        Format::Crosvm => plan::Layout::Flat,
        _ => plan::Layout::Vmm,
    };
    let r = plan::resolve_as(g, host, layout);
    if layout != g.layout()
        && layout != plan::Layout::Vmm
        && g.groups
            .iter()
            .flat_map(|p| &p.devices)
            .any(|d| d.guest_address.is_some())
    {
        notes.push(trf(
            "The guest addresses chosen for {guest} are for {vmm}; Passage placed the devices afresh for {format}.",
            &[("guest", &g.name), ("vmm", g.vmm.as_str()), ("format", format.as_str())],
        ));
    }
    if let Some(n) = other_vmm_note(g, format) {
        notes.push(n);
    }
    let text = match format {
        Format::Libvirt => libvirt::devices(&r, &mut notes)?,
        Format::LibvirtDomain => libvirt::domain(&r, &opts.domain_type, &mut notes)?,
        Format::Qemu => qemu::args(&r, opts.iommufd, &mut notes),
        Format::Proxmox => proxmox::config(&r, host, &mut notes),
        Format::CloudHypervisor => cloud_hypervisor::args(&r, &mut notes),
        Format::Crosvm => crosvm::args(&r, &mut notes),
        Format::Kubevirt => kubevirt::yaml(&r, host, &mut notes)?,
        Format::Nova => nova::config(&r, &mut notes),
        Format::Json => unreachable!("handled above"),
    };
    Ok(Export { text, notes })
}

/// For a guest planned for another VMM than the format's: which of the plan's settings for it
/// the output carries and which it cannot, in plain words (hidden devices are always left out,
/// and the groups always go whole).
fn other_vmm_note(g: &plan::Guest, format: Format) -> Option<String> {
    use plan::Vmm;
    let target = match format {
        Format::Libvirt | Format::LibvirtDomain => Vmm::Libvirt,
        Format::Qemu => Vmm::Qemu,
        Format::Proxmox => Vmm::Proxmox,
        Format::CloudHypervisor => Vmm::CloudHypervisor,
        Format::Crosvm => Vmm::Crosvm,
        Format::Kubevirt => Vmm::Kubevirt,
        Format::Nova => Vmm::Nova,
        Format::Json => return None,
    };
    if g.vmm == target {
        return None;
    }
    let devices = || g.groups.iter().flat_map(|p| &p.devices);
    let libvirt = matches!(format, Format::Libvirt | Format::LibvirtDomain);
    // (what the plan sets for this guest, whether the format carries it)
    let settings = [
        (
            tr("guest addresses"),
            devices().any(|d| d.guest_address.is_some()),
            libvirt || matches!(format, Format::Qemu | Format::Crosvm),
        ),
        (
            tr("ROM BAR off"),
            devices().any(|d| !d.rombar),
            libvirt || matches!(format, Format::Qemu | Format::Proxmox),
        ),
        (
            tr("primary display (x-vga)"),
            devices().any(|d| d.x_vga),
            matches!(format, Format::Qemu | Format::Proxmox),
        ),
        (
            tr("claiming its groups only while it runs (on-start: claim them yourself before it starts)"),
            g.lifecycle == plan::Lifecycle::OnStart,
            libvirt,
        ),
    ];
    let list = |carried: bool| {
        settings
            .iter()
            .filter(|(_, set, c)| *set && *c == carried)
            .map(|(w, _, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (kept, lost) = (list(true), list(false));
    let args = [
        ("guest", g.name.as_str()),
        ("vmm", g.vmm.as_str()),
        ("format", format.as_str()),
        ("kept", kept.as_str()),
        ("lost", lost.as_str()),
    ];
    Some(match (kept.is_empty(), lost.is_empty()) {
        (_, true) if kept.is_empty() => trf("{guest} is planned for {vmm}; this {format} output carries its groups whole and leaves its hidden devices out, which is all the plan sets for it.", &args),
        (_, true) => trf("{guest} is planned for {vmm}; this {format} output carries its groups whole (hidden devices left out) and {kept}.", &args),
        (true, false) => trf("{guest} is planned for {vmm}; this {format} output carries its groups whole (hidden devices left out) but not {lost}: set those in {format} yourself, or export as {vmm}.", &args),
        (false, false) => trf("{guest} is planned for {vmm}; this {format} output carries its groups whole (hidden devices left out) and {kept}, but not {lost}: set those in {format} yourself, or export as {vmm}.", &args),
    })
}

fn json(plan: &Plan, host: &Host) -> Result<Export, ExportError> {
    #[derive(serde::Serialize)]
    struct WithResolved<'a> {
        #[serde(flatten)]
        plan: &'a Plan,
        /// Recomputed on every read: what the guests get on this host.
        resolved: Vec<ResolvedGuest>,
    }
    let v = WithResolved {
        plan,
        resolved: plan.guests.iter().map(|g| plan::resolve(g, host)).collect(),
    };
    let text = serde_json::to_string_pretty(&v).map_err(|e| ExportError::Write {
        format: "json",
        detail: e.to_string(),
    })? + "\n";
    let notes = plan::check(plan, host)
        .into_iter()
        .map(|p| p.message)
        .collect();
    Ok(Export { text, notes })
}

/// The groups a guest holds, for "claim these first" lines.
fn groups_of(r: &ResolvedGuest) -> String {
    let mut gs: Vec<u32> = r.devices.iter().map(|d| d.group.0).collect();
    gs.sort_unstable();
    gs.dedup();
    gs.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// A sentence about devices that stay claimed but hidden.
fn hidden_note(r: &ResolvedGuest) -> Option<String> {
    let hidden: Vec<String> = r
        .devices
        .iter()
        .filter(|d| !d.visible)
        .map(|d| format!("{} ({})", d.address, d.name))
        .collect();
    (!hidden.is_empty()).then(|| {
        trf(
            "Hidden from the guest but claimed with their group (the host cannot use them while the guest runs): {devices}.",
            &[("devices", &hidden.join(", "))],
        )
    })
}

/// The claim line every format's header carries: devices must be on vfio-pci first.
fn claim_note(r: &ResolvedGuest) -> String {
    match r.lifecycle {
        plan::Lifecycle::Kept => trf(
            "Claim the groups before starting the guest: passagectl claim {groups} (or passagectl persist GROUP on for every boot).",
            &[("groups", &groups_of(r))],
        ),
        plan::Lifecycle::OnStart => trf(
            "Groups {groups} are claimed when the guest starts and given back when it stops (Passage's libvirt hook); elsewhere claim them first with passagectl claim.",
            &[("groups", &groups_of(r))],
        ),
    }
}

/// The `#` comment lines every text format opens with: what it is, how its groups get claimed,
/// and which devices stay claimed but hidden (that one also becomes a note).
fn comment_header(title: &str, r: &ResolvedGuest, notes: &mut Vec<String>) -> String {
    let mut out = format!("# {title}\n# {}\n", claim_note(r));
    if let Some(h) = hidden_note(r) {
        out.push_str(&format!("# {h}\n"));
        notes.push(h);
    }
    out
}

/// `/sys/bus/pci/devices/…` for VMMs that take a sysfs path.
fn sysfs_path(d: &ResolvedDevice) -> String {
    format!("/sys/bus/pci/devices/{}", d.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_name_round_trips() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!(matches!(
            "yaml".parse::<Format>(),
            Err(ExportError::BadFormat(_))
        ));
    }
}
