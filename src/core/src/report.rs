//! What the front ends print, as JSON (a contract: docs/JSON.md) and as text: `list` and
//! `explain`, plans and their problems, `apply`'s progress, the known guests, `verify`'s answer
//! and `monitor`'s events. Plain functions from values to strings, so the words are tested here
//! without running a program.

use crate::address::{GroupId, PciAddress, Target};
use crate::explain::{self, GroupVerdict, IommuVerdict, Reason, Severity};
use crate::i18n::{tr, trf};
use crate::model::{Device, Host, Use};
use crate::{apply, plan, session, vfio, watch};
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
        let mut out = Vec::new();
        self.write_json(&mut out).map_err(serde_json::Error::io)?;
        // serde_json writes only UTF-8; the check is a copy-free scan.
        String::from_utf8(out).map_err(|e| {
            serde_json::Error::io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
    }

    /// Writes the same bytes as [`Report::to_json`] to `w`, groups and devices serialized on
    /// every core (see [`write_json_items`]).
    pub fn write_json<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        write!(w, "{{\"version\":{},\"iommu\":", self.version)?;
        serde_json::to_writer(&mut *w, &self.iommu)?;
        w.write_all(b",\"groups\":[")?;
        write_json_items(w, &self.groups, |b, g| serde_json::to_writer(b, g))?;
        w.write_all(b"],\"devices\":[")?;
        write_json_items(w, &self.devices, |b, d| serde_json::to_writer(b, d))?;
        w.write_all(b"]}")
    }
}

/// `passagectl list --json` straight from the host: the same bytes as
/// `serde_json::to_string(&Report::build(host))`, but each group's verdict is made, written
/// and dropped a window at a time, so neither the verdicts (~13 MB on a 10,000-function host)
/// nor the listing (~18 MB) is ever held whole. Memory the kernel must first hand over and zero
/// costs time too: this keeps the run at the model's own size.
pub fn write_list_json<W: std::io::Write + ?Sized>(host: &Host, w: &mut W) -> std::io::Result<()> {
    write!(w, "{{\"version\":1,\"iommu\":")?;
    serde_json::to_writer(&mut *w, &explain::iommu(host))?;
    w.write_all(b",\"groups\":[")?;
    let groups: Vec<&crate::model::Group> = host.groups.values().collect();
    write_json_items(w, &groups, |b, g| {
        serde_json::to_writer(b, &explain::group(host, g))
    })?;
    w.write_all(b"],\"devices\":[")?;
    let devices: Vec<&Device> = host.devices.values().collect();
    write_json_items(w, &devices, |b, d| serde_json::to_writer(b, &dr(d, host)))?;
    w.write_all(b"]}")
}

/// The inside of a JSON array (items, comma-separated), made on every core and written in
/// order: a window of a few chunks is serialized in parallel into buffers that are reused for
/// the next window, then written. The bytes are serde_json's; the memory is one window's.
fn write_json_items<W, T>(
    w: &mut W,
    items: &[T],
    write_item: impl Fn(&mut Vec<u8>, &T) -> serde_json::Result<()> + Sync,
) -> std::io::Result<()>
where
    W: std::io::Write + ?Sized,
    T: Sync,
{
    use rayon::prelude::*;
    const CHUNK: usize = 256;
    let lanes = 2 * rayon::current_num_threads().max(1);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); lanes];
    let mut first = true;
    for window in items.chunks(CHUNK * lanes) {
        bufs.par_iter_mut()
            .zip(window.par_chunks(CHUNK))
            .try_for_each(|(buf, part)| {
                buf.clear();
                for item in part {
                    buf.push(b',');
                    write_item(buf, item)?;
                }
                Ok::<_, serde_json::Error>(())
            })
            .map_err(std::io::Error::from)?;
        for buf in &bufs[..window.len().div_ceil(CHUNK)] {
            // Every item is written after a comma; the array's first one is not.
            let bytes = if first {
                buf.get(1..).unwrap_or_default()
            } else {
                &buf[..]
            };
            first = false;
            w.write_all(bytes)?;
        }
    }
    Ok(())
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
                    ("n", &host.group_count().to_string()),
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
pub fn list_text(host: &Host) -> String {
    let mut out = String::new();
    let iommu = explain::iommu(host);
    iommu_text(&mut out, &iommu, host);
    let _ = writeln!(out);
    if !iommu.enabled {
        let _ = writeln!(out, "{}", tr("Devices (no groups without an IOMMU):"));
        for d in host.devices.values() {
            let _ = writeln!(out, "  {}", device_line(d));
        }
        return out;
    }
    // Groups are written in chunks on every core, then joined in order (a 10,000-group host's
    // listing is ~3 MB); each chunk's verdicts are made and dropped there, never all held.
    use rayon::prelude::*;
    let label = tr("Group");
    let glue_group =
        |g: &GroupVerdict| !g.assignable && g.reasons.iter().all(|r| r.severity == Severity::Info);
    let groups: Vec<&crate::model::Group> = host.groups.values().collect();
    let parts: Vec<(String, Vec<GroupId>)> = groups
        .par_chunks(256)
        .map(|chunk| {
            let mut out = String::with_capacity(chunk.len() * 320);
            let mut glue = Vec::new();
            for g in chunk.iter().map(|g| explain::group(host, g)) {
                if glue_group(&g) {
                    glue.push(g.id);
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{} {:<4} {:<14} {}",
                    label,
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
            (out, glue)
        })
        .collect();
    out.reserve(parts.iter().map(|(p, _)| p.len()).sum());
    let mut glue = Vec::new();
    for (p, ids) in parts {
        out.push_str(&p);
        glue.extend(ids.iter().map(|g| g.to_string()));
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
    // Functions the IOMMU driver left out of every group (the ARM SMMUv3 refuses a second
    // device on one stream ID): shown, never dropped, with why.
    let outside: Vec<&crate::model::Device> = host
        .devices
        .values()
        .filter(|d| d.group.is_none() && d.wants_a_group())
        .collect();
    if !outside.is_empty() && !host.groups.is_empty() {
        let _ = writeln!(out, "{}", tr("Outside every IOMMU group:"));
        for d in outside {
            let _ = writeln!(out, "    {}", device_line(d));
            for r in crate::explain::device_reasons(host, d)
                .iter()
                .filter(|r| r.severity != Severity::Info)
            {
                let _ = writeln!(out, "    {} {}", sev_mark(r.severity), r.message);
            }
        }
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

/// `passagectl plan show --json` and `plan check --json`: whether the plan can be applied
/// (`ok`: no problem is an error), its `problems` and every guest's devices placed
/// (`resolved`), docs/JSON.md "Plans". A JSON value, whose objects keep their keys sorted: the
/// bytes this command has always printed.
pub fn plan_check(p: &plan::Plan, host: &Host, problems: &[plan::Problem]) -> serde_json::Value {
    serde_json::json!({
        "ok": !has_errors(problems),
        "problems": problems,
        "resolved": p.guests.iter().map(|g| plan::resolve(g, host)).collect::<Vec<_>>(),
    })
}

/// Whether any of `problems` keeps the plan from being applied.
pub fn has_errors(problems: &[plan::Problem]) -> bool {
    problems.iter().any(|x| x.severity == plan::Severity::Error)
}

/// A plan's problems, one per line with its code and remedy (empty for none).
pub fn problems_text(problems: &[plan::Problem]) -> String {
    let mut s = String::new();
    for p in problems {
        let mark = match p.severity {
            plan::Severity::Error => "✗",
            plan::Severity::Warning => "!",
        };
        let _ = writeln!(s, "  {mark} [{}] {}", p.code, p.message);
        if let Some(r) = &p.remedy {
            let _ = writeln!(s, "      → {r}");
        }
    }
    s
}

/// `passagectl plan show` for people: every guest with its groups and devices (where each
/// lands in the guest, or that it is held hidden), then the problems.
pub fn plan_text(p: &plan::Plan, host: &Host, problems: &[plan::Problem]) -> String {
    let mut s = String::new();
    if p.guests.is_empty() {
        s.push_str(&tr(
            "The plan has no guests yet: passagectl plan assign GROUP GUEST.\n",
        ));
    }
    for g in &p.guests {
        s.push_str(&trf(
            "{guest} ({vmm}, {machine}, {lifecycle})\n",
            &[
                ("guest", &g.name),
                ("vmm", g.vmm.as_str()),
                ("machine", &g.machine),
                (
                    "lifecycle",
                    &match g.lifecycle {
                        plan::Lifecycle::Kept => tr("claimed and kept"),
                        plan::Lifecycle::OnStart => tr("claimed while it runs"),
                    },
                ),
            ],
        ));
        if g.groups.is_empty() {
            let _ = writeln!(s, "    {}", tr("(no groups)"));
        }
        let r = plan::resolve(g, host);
        for gp in &g.groups {
            let _ = writeln!(s, "  {} {}", tr("group"), gp.group);
            for d in &gp.devices {
                let rd = r.devices.iter().find(|x| x.address == d.address);
                let at = match (d.visible, rd.and_then(|x| x.guest_address)) {
                    (false, _) => tr("hidden (held)"),
                    (true, Some(a)) => format!("→ {a}"),
                    (true, None) => tr("placed by the VMM"),
                };
                let name = rd.map(|x| x.name.as_str()).unwrap_or_default();
                let mut flags = Vec::new();
                if rd.is_some_and(|x| x.multifunction) {
                    flags.push("multifunction");
                }
                if !d.rombar {
                    flags.push("rombar=off");
                }
                if d.x_vga {
                    flags.push("x-vga");
                }
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join(", "))
                };
                let _ = writeln!(s, "    {}  {:<16} {}{}", d.address, at, name, flags);
            }
        }
    }
    if !problems.is_empty() {
        s.push('\n');
        s.push_str(&problems_text(problems));
    }
    s
}

/// One line of `plan apply`'s progress: a step done (✓) or failed (✗), with what it said.
pub fn apply_step_text(d: &apply::Done) -> String {
    let mark = if d.ok { "✓" } else { "✗" };
    format!("{mark} {}: {}\n", d.step.describe(), d.message)
}

/// One line for what a failed `plan apply` gave back.
pub fn rolled_back_text(what: &str) -> String {
    format!("↺ {what}\n")
}

/// After `plan apply`: for each applied guest that libvirt does not run from its definition
/// (`guest`: only that one), where to get its configuration.
pub fn apply_ready_text(p: &plan::Plan, guest: Option<&str>) -> String {
    let mut s = String::new();
    for g in &p.guests {
        if guest.is_some_and(|n| n != g.name) || g.groups.is_empty() || g.vmm == plan::Vmm::Libvirt
        {
            continue;
        }
        s.push_str(&trf(
            "{guest}: its groups are ready; its configuration: passagectl export --guest {guest} --format {format}\n",
            &[("guest", &g.name), ("format", format_for(g.vmm).as_str())],
        ));
    }
    s
}

/// The export format that fits a VMM.
pub fn format_for(vmm: plan::Vmm) -> crate::export::Format {
    use crate::export::Format;
    match vmm {
        plan::Vmm::Libvirt => Format::Libvirt,
        plan::Vmm::Qemu => Format::Qemu,
        plan::Vmm::CloudHypervisor => Format::CloudHypervisor,
        plan::Vmm::Crosvm => Format::Crosvm,
        plan::Vmm::Proxmox => Format::Proxmox,
        plan::Vmm::Kubevirt => Format::Kubevirt,
        plan::Vmm::Nova => Format::Nova,
    }
}

/// `passagectl guests` for people: one guest a line (name, VMM, machine, where it comes from,
/// libvirt's state, the groups its definition holds), or how to add the first.
pub fn guests_text(guests: &[session::KnownGuest]) -> String {
    if guests.is_empty() {
        return tr("No guests yet: passagectl guests add NAME --vmm qemu\n");
    }
    let mut s = String::new();
    for g in guests {
        let groups: Vec<String> = g.groups.iter().map(|g| g.to_string()).collect();
        let _ = writeln!(
            s,
            "{:<24} {:<17} {:<12} {:<8} {:<9} {}",
            g.name,
            g.vmm.as_str(),
            g.machine,
            g.source.as_str(),
            g.state.as_deref().unwrap_or_default(),
            if groups.is_empty() {
                String::new()
            } else {
                format!("{} {}", tr("groups"), groups.join(" "))
            }
        );
    }
    s
}

/// `passagectl verify GROUP` for people: usable, with the devices QEMU opened, or not, with
/// why and what to do.
pub fn verify_text(id: GroupId, v: &vfio::Verdict) -> String {
    match v {
        vfio::Verdict::Usable { devices, ways } => {
            let list: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
            let args = [("id", id.to_string()), ("devices", list.join(", "))];
            let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let group = ways.contains(&vfio::Interface::Group);
            let iommufd = ways.contains(&vfio::Interface::Iommufd);
            match (group, iommufd) {
                (true, true) => trf("Group {id} is usable by QEMU both ways: through its group file (viable, attached to a VFIO container with the IOMMU) and through iommufd (every device bound to /dev/iommu through its own file and attached to an I/O address space); devices open: {devices}.\n", &args),
                (false, true) => trf("Group {id} is usable by QEMU through iommufd: every device bound to /dev/iommu through its own file (/dev/vfio/devices) and attached to an I/O address space: {devices}.\n", &args),
                (true, false) => trf("Group {id} is usable by QEMU: viable, attached to a VFIO container with the IOMMU, devices open: {devices}.\n", &args),
                (false, false) => trf("Group {id} is usable by QEMU: devices open: {devices}.\n", &args),
            }
        }
        vfio::Verdict::NotUsable {
            message, remedy, ..
        } => {
            let mut s = trf(
                "Group {id} is NOT usable by QEMU: {message}\n",
                &[("id", &id.to_string()), ("message", message)],
            );
            if let Some(r) = remedy {
                let _ = writeln!(s, "  → {r}");
            }
            s
        }
    }
}

/// The first line of `passagectl monitor` for people: where events come from.
pub fn monitor_header_text(source: &str) -> String {
    trf(
        "Watching PCI devices (source: {source}); Ctrl+C stops.\n",
        &[("source", source)],
    )
}

/// One line of `passagectl monitor` for people: the event, the device, its driver before →
/// after and its group's state (before → after when the event changed it).
pub fn update_text(u: &watch::Update) -> String {
    let state = match (u.state_before, u.state_after) {
        (Some(a), Some(b)) if a != b => {
            format!("{} → {}", a.label(), b.label())
        }
        (_, Some(b)) => b.label(),
        (Some(a), None) => a.label(),
        (None, None) => String::new(),
    };
    let group = u
        .group
        .map(|g| format!("{} {g}: {state}", tr("group")))
        .unwrap_or_default();
    format!(
        "{:<7} {}  {} → {}  {}\n",
        word(&u.action),
        u.address,
        u.driver_before.as_deref().unwrap_or("—"),
        u.driver_after.as_deref().unwrap_or("—"),
        group
    )
}

/// One line of `passagectl monitor --json`: the update as one JSON object.
pub fn update_json(u: &watch::Update) -> serde_json::Result<String> {
    Ok(serde_json::to_string(u)? + "\n")
}

/// A unit enum's word as its JSON has it (`"change"` → change), so text and JSON agree.
fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Strings that live in tables above and must be seen by xgettext too.
#[allow(dead_code)]
fn _extract() {
    let _ = tr("What stands in the way");
    let _ = tr("Why these devices are together");
    let _ = tr("Good to know");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{GuestSource, KnownGuest};

    fn demo() -> (crate::demo::Demo, Host, plan::Plan) {
        let d = crate::demo::open().unwrap();
        let host = crate::scan::scan(&d.root).unwrap();
        (d, host, crate::demo::plan().unwrap())
    }

    fn problem(severity: plan::Severity, remedy: Option<&str>) -> plan::Problem {
        plan::Problem {
            code: "some-code".into(),
            severity,
            guest: None,
            group: None,
            device: None,
            message: "Something is off.".into(),
            remedy: remedy.map(str::to_string),
        }
    }

    #[test]
    fn the_demo_plan_reads_as_guests_groups_and_devices() {
        let (_d, host, p) = demo();
        let problems = plan::check(&p, &host);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plan_text(&p, &host, &problems),
            "win11 (libvirt, q35, claimed while it runs)
  group 19
    0000:0b:00.0  → 01:00.0        NVIDIA GA102 [GeForce RTX 3080]  [multifunction]
    0000:0b:00.1  → 01:00.1        NVIDIA GA102 High Definition Audio Controller
  group 20
    0000:0c:00.0  → 02:00.0        Renesas Electronics uPD720202 USB 3.0 Host Controller
router (qemu, q35, claimed and kept)
  group 18
    0000:09:00.0  → 01:00.0        Intel I350 Gigabit Network Connection
    0000:09:00.1  hidden (held)    Intel I350 Gigabit Network Connection
ci-runner (cloud-hypervisor, q35, claimed and kept)
    (no groups)
"
        );
        let v = plan_check(&p, &host, &problems);
        assert_eq!(v["ok"], true);
        assert_eq!(v["problems"], serde_json::json!([]));
        assert_eq!(v["resolved"].as_array().map(Vec::len), Some(p.guests.len()));
        // Keys sorted, as this output has always been.
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.starts_with("{\"ok\":true,\"problems\":[],\"resolved\":[{\"devices\":"));
    }

    #[test]
    fn an_empty_plan_says_how_to_start_and_problems_follow_the_guests() {
        let (_d, host, _) = demo();
        let empty = plan::Plan::default();
        let warn = problem(plan::Severity::Warning, Some("Do this."));
        assert_eq!(
            plan_text(&empty, &host, std::slice::from_ref(&warn)),
            "The plan has no guests yet: passagectl plan assign GROUP GUEST.\n\n  ! [some-code] Something is off.\n      → Do this.\n"
        );
        let err = problem(plan::Severity::Error, None);
        assert_eq!(
            problems_text(std::slice::from_ref(&err)),
            "  ✗ [some-code] Something is off.\n"
        );
        assert!(has_errors(&[warn.clone(), err]));
        assert!(!has_errors(&[warn]));
        assert_eq!(plan_check(&empty, &host, &[])["ok"], true);
    }

    #[test]
    fn after_apply_only_guests_outside_libvirt_are_pointed_at_their_configuration() {
        let (_d, _host, p) = demo();
        // win11 is libvirt's (defined by apply), ci-runner holds nothing: only the router.
        assert_eq!(
            apply_ready_text(&p, None),
            "router: its groups are ready; its configuration: passagectl export --guest router --format qemu\n"
        );
        assert_eq!(apply_ready_text(&p, Some("win11")), "");
        for v in plan::Vmm::ALL {
            assert_eq!(format_for(v).as_str(), v.as_str());
        }
        assert_eq!(rolled_back_text("group 7"), "↺ group 7\n");
    }

    #[test]
    fn known_guests_are_one_aligned_line_each() {
        assert_eq!(
            guests_text(&[]),
            "No guests yet: passagectl guests add NAME --vmm qemu\n"
        );
        let mut g = plan::Guest::new("desk", plan::Vmm::Libvirt).unwrap();
        g.machine = "pc-q35-8.2".into();
        let mut desk = KnownGuest::from_guest(&g, GuestSource::Libvirt);
        desk.state = Some("shut-off".into());
        desk.groups = vec![GroupId(19), GroupId(20)];
        let fw = KnownGuest::from_guest(
            &plan::Guest::new("fw", plan::Vmm::Crosvm).unwrap(),
            GuestSource::Local,
        );
        assert_eq!(
            guests_text(&[desk, fw]),
            "desk                     libvirt           pc-q35-8.2   libvirt  shut-off  groups 19 20\n\
             fw                       crosvm            q35          local              \n"
        );
    }

    #[test]
    fn verify_answers_in_one_sentence_and_a_remedy() {
        let a: PciAddress = "0000:0b:00.0".parse().unwrap();
        assert_eq!(
            verify_text(
                GroupId(19),
                &vfio::Verdict::Usable {
                    devices: vec![a],
                    ways: vec![vfio::Interface::Group]
                }
            ),
            "Group 19 is usable by QEMU: viable, attached to a VFIO container with the IOMMU, devices open: 0000:0b:00.0.\n"
        );
        let no = vfio::Verdict::NotUsable {
            code: "not-viable".into(),
            message: "a member is on a host driver".into(),
            remedy: Some("claim the group".into()),
        };
        assert_eq!(
            verify_text(GroupId(3), &no),
            "Group 3 is NOT usable by QEMU: a member is on a host driver\n  → claim the group\n"
        );
    }

    #[test]
    fn a_monitor_line_shows_the_event_the_drivers_and_the_state_change() {
        let mut u = watch::Update {
            action: watch::Action::Bind,
            address: "0000:0b:00.0".parse().unwrap(),
            group: Some(GroupId(19)),
            driver_before: None,
            driver_after: Some("vfio-pci".into()),
            state_before: Some(explain::State::InUse),
            state_after: Some(explain::State::Available),
        };
        assert_eq!(
            update_text(&u),
            "bind    0000:0b:00.0  — → vfio-pci  group 19: in use → available\n"
        );
        u.state_before = u.state_after;
        u.action = watch::Action::Change;
        assert_eq!(
            update_text(&u),
            "change  0000:0b:00.0  — → vfio-pci  group 19: available\n"
        );
        u.group = None;
        assert_eq!(update_text(&u), "change  0000:0b:00.0  — → vfio-pci  \n");
        let line = update_json(&u).unwrap();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["action"], "change");
        assert_eq!(
            monitor_header_text("udev"),
            "Watching PCI devices (source: udev); Ctrl+C stops.\n"
        );
    }
}
