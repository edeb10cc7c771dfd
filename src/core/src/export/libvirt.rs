//! libvirt domain XML: `<hostdev mode='subsystem' type='pci' managed='no'>` per visible device,
//! the `pcie-root-port` controllers a q35 guest needs, and a complete minimal domain for tests.
//! Written with quick-xml's writer (escaping is its job, not string pasting), and read back the
//! same way: [`hostdevs`] and [`lifecycle`] read a domain's definition (libvirt-dbus, the hook).
//!
//! `managed='no'`: libvirt would otherwise detach only the devices it lists, one by one, and
//! leave the rest of the group on host drivers ("group is not viable"). Passage claims the whole
//! group (at apply, or from the qemu hook when the guest starts) and libvirt only opens it.

use super::{claim_note, hidden_note, ExportError};
use crate::address::PciAddress;
use crate::model::Host;
use crate::plan::{resolve_in, Guest, GuestAddress, Layout, Lifecycle, ResolvedGuest, Room};
use quick_xml::events::{BytesText, Event};
use quick_xml::Writer;
use std::collections::BTreeSet;
use std::io;

/// The namespace of Passage's element in a domain's `<metadata>`.
pub const METADATA_NS: &str = "https://github.com/passage/passage/libvirt/1";

/// User aliases of the hostdevs Passage writes (libvirt keeps `ua-` aliases as given), so a
/// later apply knows which are its own.
pub const ALIAS_PREFIX: &str = "ua-passage-hostdev";

type W = Writer<Vec<u8>>;

fn metadata_element(w: &mut W, lifecycle: Lifecycle) -> io::Result<()> {
    w.create_element("passage:guest")
        .with_attributes([
            ("xmlns:passage", METADATA_NS),
            (
                "lifecycle",
                match lifecycle {
                    Lifecycle::Kept => "kept",
                    Lifecycle::OnStart => "on-start",
                },
            ),
        ])
        .write_empty()?;
    Ok(())
}

fn hex(v: u32, width: usize) -> String {
    format!("0x{v:0width$x}")
}

fn comment(w: &mut W, text: &str) -> io::Result<()> {
    // "--" may not appear inside an XML comment.
    let safe = text.replace("--", "- -");
    w.write_event(Event::Comment(BytesText::from_escaped(format!(" {safe} "))))
}

fn hostdev_elements(w: &mut W, r: &ResolvedGuest) -> io::Result<()> {
    for (i, d) in r.visible().enumerate() {
        comment(w, &format!("{} {} (group {})", d.address, d.name, d.group))?;
        w.create_element("hostdev")
            .with_attributes([("mode", "subsystem"), ("type", "pci"), ("managed", "no")])
            .write_inner_content(|w| {
                w.create_element("source").write_inner_content(|w| {
                    source_address(w, d.address)?;
                    Ok(())
                })?;
                w.create_element("alias")
                    .with_attribute(("name", format!("{ALIAS_PREFIX}{i}").as_str()))
                    .write_empty()?;
                w.create_element("rom")
                    .with_attribute(("bar", if d.rombar { "on" } else { "off" }))
                    .write_empty()?;
                if let Some(a) = d.guest_address {
                    guest_address(w, a, d.multifunction)?;
                }
                Ok(())
            })?;
    }
    Ok(())
}

fn source_address(w: &mut W, a: PciAddress) -> io::Result<()> {
    w.create_element("address")
        .with_attributes([
            ("domain", hex(a.domain, 4).as_str()),
            ("bus", hex(a.bus.into(), 2).as_str()),
            ("slot", hex(a.slot.into(), 2).as_str()),
            ("function", hex(a.function.into(), 1).as_str()),
        ])
        .write_empty()?;
    Ok(())
}

fn guest_address(w: &mut W, a: GuestAddress, multifunction: bool) -> io::Result<()> {
    let mut e = w.create_element("address").with_attributes([
        ("type", "pci"),
        ("domain", "0x0000"),
        ("bus", hex(a.bus.into(), 2).as_str()),
        ("slot", hex(a.slot.into(), 2).as_str()),
        ("function", hex(a.function.into(), 1).as_str()),
    ]);
    if multifunction {
        e = e.with_attribute(("multifunction", "on"));
    }
    e.write_empty()?;
    Ok(())
}

fn controllers(w: &mut W, r: &ResolvedGuest, with_root: bool) -> io::Result<()> {
    if with_root {
        let model = if r.machine.contains("q35") {
            "pcie-root"
        } else {
            "pci-root"
        };
        w.create_element("controller")
            .with_attributes([("type", "pci"), ("index", "0"), ("model", model)])
            .write_empty()?;
    }
    for bus in &r.root_ports {
        w.create_element("controller")
            .with_attributes([
                ("type", "pci"),
                ("index", bus.to_string().as_str()),
                ("model", "pcie-root-port"),
            ])
            .write_empty()?;
    }
    Ok(())
}

fn notes_for(r: &ResolvedGuest, notes: &mut Vec<String>) {
    if r.visible().any(|d| d.x_vga) {
        notes.push(crate::i18n::tr("libvirt has no setting for QEMU's legacy VGA (x-vga); export the QEMU form, or add it with <qemu:override>."));
    }
    notes.extend(hidden_note(r));
}

fn finish(w: W, format: &'static str) -> Result<String, ExportError> {
    String::from_utf8(w.into_inner())
        .map(|s| s + "\n")
        .map_err(|e| ExportError::Write {
            format,
            detail: e.to_string(),
        })
}

fn write_err(format: &'static str) -> impl Fn(io::Error) -> ExportError {
    move |e| ExportError::Write {
        format,
        detail: e.to_string(),
    }
}

/// `--format libvirt`: the guest's `<hostdev>`s (and, for q35, the root ports their addresses
/// name) inside one `<devices>` element, to merge into an existing domain.
pub fn devices(r: &ResolvedGuest, notes: &mut Vec<String>) -> Result<String, ExportError> {
    notes_for(r, notes);
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let claim = claim_note(r);
    let mut header = vec![format!(
        "Passage: PCI devices for guest {}. {claim}",
        r.name
    )];
    if r.layout == Layout::RootPorts {
        header.push(crate::i18n::tr("The pcie-root-port controllers are the buses the guest addresses name; drop any whose index your domain already uses for another port, or clear the addresses in the plan."));
    }
    header.extend(hidden_note(r));
    (|| -> io::Result<()> {
        for h in &header {
            comment(&mut w, h)?;
        }
        w.create_element("devices").write_inner_content(|w| {
            controllers(w, r, false)?;
            hostdev_elements(w, r)
        })?;
        Ok(())
    })()
    .map_err(write_err("libvirt"))?;
    finish(w, "libvirt")
}

/// `--format libvirt-domain`: a complete minimal domain holding the devices, with Passage's
/// metadata (the lifecycle the qemu hook reads).
pub fn domain(
    r: &ResolvedGuest,
    domain_type: &str,
    notes: &mut Vec<String>,
) -> Result<String, ExportError> {
    notes_for(r, notes);
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    (|| -> io::Result<()> {
        comment(
            &mut w,
            &format!(
                "Passage: a minimal domain for guest {}. {}",
                r.name,
                claim_note(r)
            ),
        )?;
        w.create_element("domain")
            .with_attribute(("type", domain_type))
            .write_inner_content(|w| {
                w.create_element("name")
                    .write_text_content(BytesText::new(&r.name))?;
                w.create_element("metadata")
                    .write_inner_content(|w| metadata_element(w, r.lifecycle))?;
                w.create_element("memory")
                    .with_attribute(("unit", "MiB"))
                    .write_text_content(BytesText::new("2048"))?;
                w.create_element("vcpu")
                    .write_text_content(BytesText::new("2"))?;
                w.create_element("os").write_inner_content(|w| {
                    w.create_element("type")
                        .with_attributes([("arch", "x86_64"), ("machine", r.machine.as_str())])
                        .write_text_content(BytesText::new("hvm"))?;
                    Ok(())
                })?;
                w.create_element("features").write_inner_content(|w| {
                    w.create_element("acpi").write_empty()?;
                    Ok(())
                })?;
                w.create_element("devices").write_inner_content(|w| {
                    controllers(w, r, true)?;
                    hostdev_elements(w, r)
                })?;
                Ok(())
            })?;
        Ok(())
    })()
    .map_err(write_err("libvirt-domain"))?;
    finish(w, "libvirt-domain")
}

/// One `<hostdev type='pci'>` of a domain as libvirt stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hostdev {
    pub source: PciAddress,
    pub guest: Option<GuestAddress>,
    pub managed: bool,
}

/// Why a domain definition could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainXmlError {
    #[error("the domain definition is not well-formed XML: {0}")]
    Xml(String),
    #[error("a <hostdev> in the domain definition has no usable source address ({0})")]
    BadAddress(String),
}

fn attr(e: &quick_xml::events::BytesStart, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

fn num(s: Option<String>, max: u32) -> Option<u32> {
    let s = s?;
    let v = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    (v <= max).then_some(v)
}

/// A `<address domain= bus= slot= function=>` of a hostdev's `<source>`; `None` when any part
/// is missing or out of range.
fn read_source_address(e: &quick_xml::events::BytesStart) -> Option<PciAddress> {
    PciAddress::new(
        num(attr(e, "domain"), u32::MAX).unwrap_or(0),
        u8::try_from(num(attr(e, "bus"), 0xff)?).ok()?,
        u8::try_from(num(attr(e, "slot"), 31)?).ok()?,
        u8::try_from(num(attr(e, "function"), 7)?).ok()?,
    )
}

/// The PCI `<hostdev>`s of a domain definition: host source address, guest address, managed.
pub fn hostdevs(xml: &str) -> Result<Vec<Hostdev>, DomainXmlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<(bool, Option<PciAddress>, Option<GuestAddress>)> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| DomainXmlError::Xml(e.to_string()))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if stack.pop().as_deref() == Some("hostdev") {
                    if let Some((managed, Some(source), guest)) = cur.take() {
                        out.push(Hostdev {
                            source,
                            guest,
                            managed,
                        });
                    }
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = e.local_name().as_ref().to_string();
        let parent = stack.last().map(String::as_str);
        let grand = stack.len().checked_sub(2).map(|i| stack[i].as_str());
        match (name.as_str(), parent, grand) {
            ("hostdev", Some("devices"), _) => {
                if attr(e, "type").as_deref() == Some("pci") {
                    cur = Some((attr(e, "managed").as_deref() == Some("yes"), None, None));
                } else {
                    cur = None;
                }
            }
            ("address", Some("source"), Some("hostdev")) => {
                if let Some(c) = cur.as_mut() {
                    let a = read_source_address(e).ok_or_else(|| {
                        DomainXmlError::BadAddress(
                            String::from_utf8_lossy(e.attributes_raw().as_bytes())
                                .chars()
                                .take(80)
                                .collect(),
                        )
                    })?;
                    c.1 = Some(a);
                }
            }
            ("address", Some("hostdev"), _) => {
                if let Some(c) = cur.as_mut() {
                    if attr(e, "type").as_deref() == Some("pci") {
                        c.2 = GuestAddress::new(
                            num(attr(e, "bus"), 0xff).unwrap_or(0) as u8,
                            num(attr(e, "slot"), 31).unwrap_or(0) as u8,
                            num(attr(e, "function"), 7).unwrap_or(0) as u8,
                        );
                    }
                }
            }
            _ => {}
        }
        if !empty {
            stack.push(name);
        } else if name == "hostdev" {
            cur = None; // <hostdev/> with no source: nothing to read.
        }
    }
    Ok(out)
}

/// The lifecycle Passage's metadata gives a domain; `None` when Passage did not write it.
pub fn lifecycle(xml: &str) -> Option<Lifecycle> {
    let mut reader = quick_xml::NsReader::from_str(xml);
    loop {
        match reader.read_resolved_event() {
            Ok((quick_xml::name::ResolveResult::Bound(ns), Event::Start(e) | Event::Empty(e)))
                if ns.as_ref() == METADATA_NS && e.local_name().as_ref() == "guest" =>
            {
                return attr(&e, "lifecycle").and_then(|l| l.parse().ok());
            }
            Ok((_, Event::Eof)) | Err(_) => return None,
            _ => {}
        }
    }
}

/// Where a domain's own devices sit: every PCI guest address except those of the hostdevs
/// that `keep` says go, and the first controller index free for a new root port.
fn room(xml: &str, goes: &dyn Fn(&Hostdev, Option<&str>) -> bool) -> Result<Room, DomainXmlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut room = Room::default();
    let mut max_index: u32 = 0;
    let mut in_hostdev: Option<Vec<(u8, u8)>> = None;
    let mut hostdev_source: Option<PciAddress> = None;
    let mut hostdev_alias: Option<String> = None;
    let mut stack: Vec<String> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| DomainXmlError::Xml(e.to_string()))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if stack.pop().as_deref() == Some("hostdev") {
                    let slots = in_hostdev.take().unwrap_or_default();
                    let gone = hostdev_source.take().is_some_and(|source| {
                        goes(
                            &Hostdev {
                                source,
                                guest: None,
                                managed: false,
                            },
                            hostdev_alias.as_deref(),
                        )
                    });
                    hostdev_alias = None;
                    if !gone {
                        room.taken.extend(slots);
                    }
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = e.local_name().as_ref().to_string();
        let parent = stack.last().map(String::as_str);
        match name.as_str() {
            "hostdev" if parent == Some("devices") && !empty => in_hostdev = Some(Vec::new()),
            "controller" if attr(e, "type").as_deref() == Some("pci") => {
                if let Some(i) = num(attr(e, "index"), 0xff) {
                    max_index = max_index.max(i);
                }
            }
            "alias" if parent == Some("hostdev") => hostdev_alias = attr(e, "name"),
            "address" if parent == Some("source") && in_hostdev.is_some() => {
                hostdev_source = read_source_address(e);
            }
            "address" if attr(e, "type").as_deref() == Some("pci") => {
                if let (Some(b), Some(sl)) = (num(attr(e, "bus"), 0xff), num(attr(e, "slot"), 31)) {
                    let key = (b as u8, sl as u8);
                    max_index = max_index.max(b);
                    match in_hostdev.as_mut() {
                        Some(v) => v.push(key),
                        None => {
                            room.taken.insert(key);
                        }
                    }
                }
            }
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    room.first_port = (max_index + 1).min(0xff) as u8;
    Ok(room)
}

/// Why a plan could not be written into a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Xml(#[from] DomainXmlError),
    #[error("guest address {at} chosen for {device} is already used by another device of domain {domain}")]
    Taken {
        at: GuestAddress,
        device: PciAddress,
        domain: String,
    },
    #[error("writing the domain definition: {0}")]
    Write(String),
}

/// A domain's definition with the guest's plan written in: the PCI hostdevs Passage manages
/// (its own, by alias, and any of the plan's devices) replaced, new root ports added after
/// the domain's own controllers, guest addresses chosen around the domain's own devices, and
/// Passage's metadata (the lifecycle the hook reads) set. Everything else is left as it was.
pub fn updated_domain(xml: &str, guest: &Guest, host: &Host) -> Result<String, ApplyError> {
    let planned: BTreeSet<PciAddress> = guest
        .groups
        .iter()
        .flat_map(|g| g.devices.iter().map(|d| d.address))
        .collect();
    let goes = |h: &Hostdev, alias: Option<&str>| {
        planned.contains(&h.source) || alias.is_some_and(|a| a.starts_with(ALIAS_PREFIX))
    };
    let room = room(xml, &goes)?;
    let layout = Layout::of(
        crate::plan::Vmm::Libvirt,
        &machine_of(xml).unwrap_or_default(),
    );
    for d in guest.groups.iter().flat_map(|g| &g.devices) {
        if let Some(at) = d.guest_address.filter(|_| d.visible) {
            if room.taken.contains(&at.slot_key()) {
                return Err(ApplyError::Taken {
                    at,
                    device: d.address,
                    domain: guest.name.clone(),
                });
            }
        }
    }
    let r = resolve_in(guest, host, layout, &room);
    let w_err = |e: io::Error| ApplyError::Write(e.to_string());
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut w = Writer::new(Vec::new());
    let mut stack: Vec<String> = Vec::new();
    let mut saw_metadata = false;
    // A <hostdev> held back until we know whether it stays.
    let mut held: Option<Held> = None;
    // Depth of an element of ours in <metadata> being dropped.
    let mut dropping: Option<usize> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| DomainXmlError::Xml(e.to_string()))?;
        if matches!(ev, Event::Eof) {
            break;
        }
        let depth = stack.len();
        if let Some(d) = dropping {
            match &ev {
                Event::Start(e) => stack.push(e.local_name().as_ref().to_string()),
                Event::End(_) => {
                    stack.pop();
                    if stack.len() == d {
                        dropping = None;
                    }
                }
                _ => {}
            }
            continue;
        }
        if let Some(Held {
            events,
            source,
            alias,
            depth: d,
        }) = held.as_mut()
        {
            match &ev {
                Event::Start(e) => {
                    let n = e.local_name().as_ref().to_string();
                    if n == "alias" {
                        *alias = attr(e, "name");
                    }
                    stack.push(n);
                }
                Event::Empty(e) => {
                    let n = e.local_name().as_ref().to_string();
                    if n == "alias" {
                        *alias = attr(e, "name");
                    }
                    if n == "address" && stack.last().map(String::as_str) == Some("source") {
                        *source = read_source_address(e);
                    }
                }
                Event::End(_) => {
                    stack.pop();
                }
                _ => {}
            }
            events.push(ev.clone());
            if stack.len() == *d {
                let Held {
                    events,
                    source,
                    alias,
                    ..
                } = held.take().unwrap_or_default();
                let gone = source.is_some_and(|s| {
                    goes(
                        &Hostdev {
                            source: s,
                            guest: None,
                            managed: false,
                        },
                        alias.as_deref(),
                    )
                });
                if !gone {
                    for e in events {
                        w.write_event(e).map_err(w_err)?;
                    }
                }
            }
            continue;
        }
        match &ev {
            Event::Start(e) => {
                let n = e.local_name().as_ref().to_string();
                let parent = stack.last().map(String::as_str);
                if n == "hostdev" && parent == Some("devices") {
                    stack.push(n);
                    held = Some(Held {
                        events: vec![ev.clone()],
                        source: None,
                        alias: None,
                        depth,
                    });
                    continue;
                }
                if parent == Some("metadata") && is_ours(e) {
                    stack.push(n);
                    dropping = Some(depth);
                    continue;
                }
                stack.push(n);
                w.write_event(ev.clone()).map_err(w_err)?;
            }
            Event::Empty(e) => {
                let parent = stack.last().map(String::as_str);
                if parent == Some("metadata") && is_ours(e) {
                    continue;
                }
                if e.local_name().as_ref() == "metadata" && parent == Some("domain") {
                    saw_metadata = true;
                    w.create_element("metadata")
                        .write_inner_content(|w| metadata_element(w, r.lifecycle))
                        .map_err(w_err)?;
                    continue;
                }
                w.write_event(ev.clone()).map_err(w_err)?;
            }
            Event::End(e) => {
                let n = e.local_name().as_ref().to_string();
                stack.pop();
                let parent = stack.last().map(String::as_str);
                match (n.as_str(), parent) {
                    ("metadata", Some("domain")) => {
                        saw_metadata = true;
                        metadata_element(&mut w, r.lifecycle).map_err(w_err)?;
                    }
                    ("devices", Some("domain")) => {
                        controllers(&mut w, &r, false).map_err(w_err)?;
                        hostdev_elements(&mut w, &r).map_err(w_err)?;
                    }
                    _ => {}
                }
                w.write_event(ev.clone()).map_err(w_err)?;
                if n == "name"
                    && parent == Some("domain")
                    && !saw_metadata
                    && !xml.contains("<metadata")
                {
                    saw_metadata = true;
                    w.create_element("metadata")
                        .write_inner_content(|w| metadata_element(w, r.lifecycle))
                        .map_err(w_err)?;
                }
            }
            _ => w.write_event(ev.clone()).map_err(w_err)?,
        }
    }
    String::from_utf8(w.into_inner()).map_err(|e| ApplyError::Write(e.to_string()))
}

/// A `<hostdev>` being read: its events, source address, alias, and the depth it opened at.
#[derive(Default)]
struct Held<'a> {
    events: Vec<Event<'a>>,
    source: Option<PciAddress>,
    alias: Option<String>,
    depth: usize,
}

fn is_ours(e: &quick_xml::events::BytesStart) -> bool {
    e.attributes()
        .flatten()
        .any(|a| a.value.as_ref() == METADATA_NS)
}

/// The machine type a domain definition names (`<type machine='pc-q35-7.2'>`).
pub fn machine_of(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let n = e.local_name().as_ref().to_string();
                if n == "type" && stack.last().map(String::as_str) == Some("os") {
                    return attr(&e, "machine");
                }
                stack.push(n);
            }
            Ok(Event::Empty(e))
                if e.local_name().as_ref() == "type"
                    && stack.last().map(String::as_str) == Some("os") =>
            {
                return attr(&e, "machine");
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Eof) | Err(_) => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostdevs_are_read_from_a_domain_as_libvirt_stores_it() {
        let xml = r#"<domain type='kvm'><name>x</name>
          <metadata><p:guest xmlns:p="https://github.com/passage/passage/libvirt/1" lifecycle="on-start"/></metadata>
          <devices>
            <hostdev mode='subsystem' type='pci' managed='yes'>
              <source><address domain='0x0000' bus='0x0b' slot='0x00' function='0x1'/></source>
              <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x1'/>
            </hostdev>
            <hostdev mode='subsystem' type='usb'><source><vendor id='0x1'/></source></hostdev>
            <interface type='network'><address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>
          </devices></domain>"#;
        let h = hostdevs(xml).unwrap();
        assert_eq!(
            h,
            vec![Hostdev {
                source: "0000:0b:00.1".parse().unwrap(),
                guest: Some("05:00.1".parse().unwrap()),
                managed: true
            }]
        );
        assert_eq!(lifecycle(xml), Some(Lifecycle::OnStart));
        assert_eq!(lifecycle("<domain/>"), None);
    }

    #[test]
    fn a_hostdev_with_a_hostile_address_is_an_error_not_a_guess() {
        let xml = r#"<domain><devices><hostdev type='pci'><source><address domain='0' bus='0x1ff' slot='0' function='0'/></source></hostdev></devices></domain>"#;
        assert!(matches!(hostdevs(xml), Err(DomainXmlError::BadAddress(_))));
        assert!(matches!(
            hostdevs("<domain><devices></domain>"),
            Err(DomainXmlError::Xml(_))
        ));
    }
}
