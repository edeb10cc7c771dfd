//! What `passagectl list` and `explain` print, as JSON (a contract: docs/JSON.md) and as text.

use crate::address::{PciAddress, Target};
use crate::explain::{self, GroupVerdict, IommuVerdict, Reason, Severity};
use crate::i18n::{tr, trf};
use crate::model::{Device, Host, Use};
use serde::Serialize;
use std::fmt::Write as _;

/// `passagectl list --json`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// Version of this JSON shape; bumped only on incompatible change.
    pub version: u32,
    pub iommu: IommuVerdict,
    pub groups: Vec<GroupVerdict>,
    pub devices: Vec<DeviceReport<'a>>,
}

/// A device with what the host uses it for.
#[derive(Debug, Serialize)]
pub struct DeviceReport<'a> {
    #[serde(flatten)]
    pub device: &'a Device,
    pub uses: &'a [Use],
}

impl Report<'_> {
    /// Compact JSON, identical to `serde_json::to_string(self)`, with groups and devices
    /// serialized on every core (a 10,000-function host's listing is ~18 MB).
    pub fn to_json(&self) -> serde_json::Result<String> {
        use rayon::prelude::*;
        fn join<T: Serialize + Sync>(items: &[T]) -> serde_json::Result<String> {
            let parts: Vec<String> = items
                .par_iter()
                .map(serde_json::to_string)
                .collect::<serde_json::Result<_>>()?;
            Ok(parts.join(","))
        }
        Ok(format!(
            "{{\"version\":{},\"iommu\":{},\"groups\":[{}],\"devices\":[{}]}}",
            self.version,
            serde_json::to_string(&self.iommu)?,
            join(&self.groups)?,
            join(&self.devices)?
        ))
    }
}

impl<'a> Report<'a> {
    pub fn build(host: &'a Host) -> Self {
        Report {
            version: 1,
            iommu: explain::iommu(host),
            groups: explain::groups(host),
            devices: host
                .devices
                .values()
                .map(|d| DeviceReport {
                    device: d,
                    uses: host.uses_of(d.address),
                })
                .collect(),
        }
    }
}

/// `passagectl explain --json`: one device or group with everything that concerns it.
#[derive(Debug, Serialize)]
pub struct Explanation<'a> {
    pub iommu: IommuVerdict,
    pub group: Option<GroupVerdict>,
    pub device: Option<DeviceReport<'a>>,
    pub members: Vec<DeviceReport<'a>>,
}

/// Why an explain target is not there.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("there is no PCI device {0} on this host")]
    NoDevice(PciAddress),
    #[error("there is no IOMMU group {0} on this host")]
    NoGroup(crate::address::GroupId),
}

fn dr<'a>(d: &'a Device, host: &'a Host) -> DeviceReport<'a> {
    DeviceReport {
        device: d,
        uses: host.uses_of(d.address),
    }
}

pub fn explanation(host: &Host, target: Target) -> Result<Explanation<'_>, LookupError> {
    let (device, group) = match target {
        Target::Device(a) => {
            let d = host.device(a).ok_or(LookupError::NoDevice(a))?;
            (Some(d), host.group_of(a))
        }
        Target::Group(g) => (
            None,
            Some(host.groups.get(&g).ok_or(LookupError::NoGroup(g))?),
        ),
    };
    Ok(Explanation {
        iommu: explain::iommu(host),
        group: group.map(|g| explain::group(host, g)),
        device: device.map(|d| dr(d, host)),
        members: group
            .map(|g| host.members(g).map(|d| dr(d, host)).collect())
            .unwrap_or_default(),
    })
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => tr("yes"),
        Some(false) => tr("no"),
        None => tr("unknown"),
    }
}

/// "PCIe endpoint · FLR yes · AER yes · ACS no · MSI-X yes · SR-IOV no".
fn caps_line(d: &Device) -> String {
    let c = &d.capabilities;
    let kind = match (c.express, c.port_type) {
        (Some(true), Some(t)) => format!(
            "PCIe {}",
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        (Some(false), _) => tr("conventional PCI"),
        _ => tr("PCI (details need root)"),
    };
    let acs = match c.acs {
        Some(Some(a)) if a.isolates() => tr("yes"),
        Some(Some(_)) => tr("partial"),
        Some(None) => tr("no"),
        None => tr("unknown"),
    };
    let sriov = match c.sriov_total_vfs {
        Some(0) => tr("no"),
        Some(n) => trf("{n} VFs", &[("n", &n.to_string())]),
        None => tr("unknown"),
    };
    format!(
        "{kind} · FLR {} · AER {} · ACS {acs} · MSI {} · MSI-X {} · SR-IOV {sriov}",
        yes_no(c.flr),
        yes_no(c.aer),
        yes_no(c.msi),
        yes_no(c.msix)
    )
}

fn sev_mark(s: Severity) -> &'static str {
    match s {
        Severity::Blocker => "✗",
        Severity::Warning => "!",
        Severity::Info => "·",
    }
}

fn write_reason(out: &mut String, indent: &str, r: &Reason) {
    let _ = writeln!(out, "{indent}{} {}", sev_mark(r.severity), r.message);
    if let Some(rem) = &r.remedy {
        let _ = writeln!(out, "{indent}  → {rem}");
    }
}

fn device_line(d: &Device) -> String {
    format!(
        "{}  {:<28} {} [{}:{}]  {}",
        d.address,
        truncate(&d.class_name, 28),
        d.display_name(),
        d.vendor_id,
        d.device_id,
        d.driver.as_deref().unwrap_or("—")
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn iommu_text(out: &mut String, v: &IommuVerdict, host: &Host) {
    if v.enabled {
        let units: Vec<&str> = host
            .platform
            .units
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "{}",
            trf(
                "IOMMU: on ({n} groups; units: {units})",
                &[
                    ("n", &host.groups.len().to_string()),
                    (
                        "units",
                        &if units.is_empty() {
                            "—".to_string()
                        } else {
                            units.join(", ")
                        }
                    )
                ]
            )
        );
    } else {
        let _ = writeln!(
            out,
            "{}",
            tr("IOMMU: off — no device can be given to a guest.")
        );
    }
    for r in &v.reasons {
        write_reason(out, "  ", r);
    }
}

/// `passagectl list` for people: groups, their state and what matters about them.
pub fn list_text(host: &Host, report: &Report) -> String {
    let mut out = String::new();
    iommu_text(&mut out, &report.iommu, host);
    let _ = writeln!(out);
    if !report.iommu.enabled {
        let _ = writeln!(out, "{}", tr("Devices (no groups without an IOMMU):"));
        for d in host.devices.values() {
            let _ = writeln!(out, "  {}", device_line(d));
        }
        return out;
    }
    let mut glue = Vec::new();
    for g in &report.groups {
        if !g.assignable && g.reasons.iter().all(|r| r.severity == Severity::Info) {
            glue.push(g.id.to_string());
            continue;
        }
        let _ = writeln!(
            out,
            "{} {:<4} {:<14} {}",
            tr("Group"),
            g.id,
            g.state.label(),
            g.title
        );
        for a in &g.devices {
            if let Some(d) = host.device(*a) {
                let _ = writeln!(out, "    {}", device_line(d));
            }
        }
        for r in g.reasons.iter().filter(|r| r.severity != Severity::Info) {
            let _ = writeln!(out, "    {} {}", sev_mark(r.severity), r.message);
        }
    }
    if !glue.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            trf(
                "Groups with nothing to give a guest (bridges and chipset functions): {ids}",
                &[("ids", &glue.join(", "))]
            )
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        tr("“passagectl explain GROUP” tells the whole story of a group, with what to do.")
    );
    out
}

/// `passagectl explain` for people.
pub fn explain_text(host: &Host, e: &Explanation) -> String {
    let mut out = String::new();
    if let Some(d) = &e.device {
        let d = d.device;
        let _ = writeln!(out, "{}", device_line(d));
        let _ = writeln!(out, "  {}: {}", tr("class"), d.class);
        if let (Some(v), Some(s)) = (d.subsystem_vendor_id, d.subsystem_device_id) {
            let _ = writeln!(out, "  {}: {v}:{s}", tr("subsystem"));
        }
        let chain: Vec<String> = d.bridges.iter().map(|b| b.to_string()).collect();
        let _ = writeln!(
            out,
            "  {}: {} {}",
            tr("behind"),
            d.root_bus,
            chain.iter().rev().cloned().collect::<Vec<_>>().join(" → ")
        );
        let reset = d
            .reset_methods
            .as_ref()
            .map(|m| {
                if m.is_empty() {
                    tr("none")
                } else {
                    m.join(", ")
                }
            })
            .unwrap_or_else(|| tr("unknown"));
        let _ = writeln!(out, "  {}: {reset}", tr("reset"));
        let _ = writeln!(out, "  {}: {}", tr("capabilities"), caps_line(d));
        if !e.iommu.enabled {
            let _ = writeln!(out);
            iommu_text(&mut out, &e.iommu, host);
            for r in explain::device_reasons(host, d) {
                write_reason(&mut out, "  ", &r);
            }
            return out;
        }
    }
    let Some(g) = &e.group else {
        return out;
    };
    if !e.iommu.reasons.is_empty() {
        iommu_text(&mut out, &e.iommu, host);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} {} — {}: {}",
        tr("Group"),
        g.id,
        g.title,
        g.state.label()
    );
    for m in &e.members {
        let _ = writeln!(out, "    {}", device_line(m.device));
    }
    type Keep = fn(&Reason) -> bool;
    let sections: [(&str, Keep); 3] = [
        ("What stands in the way", |r| {
            r.severity != Severity::Info && !r.code.starts_with("shape-")
        }),
        ("Why these devices are together", |r| {
            r.code.starts_with("shape-")
        }),
        ("Good to know", |r| {
            r.severity == Severity::Info && !r.code.starts_with("shape-")
        }),
    ];
    for (title, keep) in sections {
        let rs: Vec<&Reason> = g.reasons.iter().filter(|r| keep(r)).collect();
        if rs.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  {}:", tr(title));
        for r in rs {
            write_reason(&mut out, "    ", r);
        }
    }
    if g.devices.len() == 1 && !g.reasons.iter().any(|r| r.code.starts_with("shape-")) {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {}",
            tr("This device is alone in its group: it can be given to a guest by itself.")
        );
    }
    out
}

/// Strings that live in tables above and must be seen by xgettext too.
#[allow(dead_code)]
fn _extract() {
    let _ = tr("What stands in the way");
    let _ = tr("Why these devices are together");
    let _ = tr("Good to know");
}
