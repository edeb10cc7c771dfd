//! Cluster exports: the same kind of device on several hosts, named once for the cluster's
//! scheduler — Proxmox VE resource mappings (one mapping per device model, an entry per node),
//! KubeVirt's `permittedHostDevices` (one resource name per model, the nodes that have it),
//! Nova's `[pci] device_spec` per compute node and one `alias` per model for all of them.
//!
//! Each node is read on its own (live through its helper, or from a recording); nothing here
//! guesses a node's devices. A *model* is vendor:device; on each node the devices picked are
//! the ones on vfio-pci (what that node gives to guests), or the models asked for by id. A card
//! whose picked functions are all its usable functions in one group (a GPU and its audio
//! function) is one entry naming the whole slot, as Proxmox passes it, never split in two.

use crate::i18n::{tr, trf};
use crate::model::{Device, Hex16, Host};
use crate::PciAddress;
use serde_json::json;
use std::collections::BTreeMap;

/// One host of the cluster: the name its scheduler knows it by, and its devices.
pub struct Node {
    pub name: String,
    pub host: Host,
}

/// The cluster formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterFormat {
    ProxmoxMapping,
    Kubevirt,
    Nova,
}

impl std::str::FromStr for ClusterFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "proxmox-mapping" => Ok(Self::ProxmoxMapping),
            "kubevirt" => Ok(Self::Kubevirt),
            "nova" => Ok(Self::Nova),
            _ => Err(trf(
                "“{format}” is not a cluster format (proxmox-mapping, kubevirt, nova)",
                &[("format", s)],
            )),
        }
    }
}

/// Which devices: by model ids, or (empty) each node's devices on vfio-pci.
#[derive(Debug, Clone, Default)]
pub struct Pick {
    pub models: Vec<(Hex16, Hex16)>,
}

impl Pick {
    /// `VENDOR:DEVICE` words, in hex.
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let models = words
            .iter()
            .map(|w| {
                let bad = || {
                    trf(
                        "“{id}” is not a device model (VENDOR:DEVICE in hex, e.g. 10de:2684)",
                        &[("id", w)],
                    )
                };
                let (v, d) = w.split_once(':').ok_or_else(bad)?;
                let hex = |s: &str| {
                    (s.len() == 4)
                        .then(|| u16::from_str_radix(s, 16).ok())
                        .flatten()
                        .map(Hex16)
                        .ok_or_else(bad)
                };
                Ok((hex(v)?, hex(d)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { models })
    }

    fn wants(&self, d: &Device) -> bool {
        if self.models.is_empty() {
            d.on_vfio()
        } else {
            self.models.contains(&(d.vendor_id, d.device_id))
        }
    }
}

/// One entry: a node's device (or whole card) of one model.
#[derive(Debug, Clone)]
struct Entry {
    node: String,
    /// The function an entry is checked by (function 0 of a whole card).
    device: Device,
    /// Every function the entry gives (one, or a card's usable functions).
    functions: Vec<Device>,
    whole_card: bool,
}

impl Entry {
    /// Proxmox's `path`: `DDDD:BB:SS` for a whole card, else the function.
    fn path(&self) -> String {
        let a = self.device.address.to_string();
        if self.whole_card {
            a[..a.len() - 2].to_string()
        } else {
            a
        }
    }
}

/// A device model and its entries on every node, in node order.
struct Model {
    vendor: Hex16,
    device: Hex16,
    name: String,
    entries: Vec<Entry>,
}

/// The entries of one node: the picked usable functions in an IOMMU group, a card's together.
fn entries(node: &Node, pick: &Pick, notes: &mut Vec<String>) -> Vec<Entry> {
    let host = &node.host;
    if !host.iommu_enabled() {
        notes.push(trf(
            "{node}: the IOMMU is off, so none of its devices can be given to a guest; it has no entries.",
            &[("node", &node.name)],
        ));
        return Vec::new();
    }
    let picked: Vec<&Device> = host
        .devices
        .values()
        .filter(|d| d.is_for_a_guest() && d.group.is_some())
        .filter(|d| pick.wants(d))
        .collect();
    let mut out: Vec<Entry> = Vec::new();
    let mut done: Vec<PciAddress> = Vec::new();
    for d in &picked {
        if done.contains(&d.address) {
            continue;
        }
        // The card's usable functions in the same group, and which of them were picked.
        let card: Vec<&Device> = host
            .devices
            .values()
            .filter(|o| {
                o.address.same_slot(d.address)
                    && o.group == d.group
                    && o.is_endpoint()
                    && !o.is_chipset_glue()
            })
            .collect();
        let picked_on_card: Vec<&Device> = picked
            .iter()
            .copied()
            .filter(|o| o.address.same_slot(d.address) && o.group == d.group)
            .collect();
        let fn0 = card.iter().find(|o| o.address.function == 0);
        if card.len() > 1 && picked_on_card.len() == card.len() && fn0.is_some() {
            let first = fn0.copied().unwrap_or(d);
            done.extend(card.iter().map(|o| o.address));
            out.push(Entry {
                node: node.name.clone(),
                device: first.clone(),
                functions: card.iter().map(|o| (*o).clone()).collect(),
                whole_card: true,
            });
        } else {
            done.push(d.address);
            out.push(Entry {
                node: node.name.clone(),
                device: (*d).clone(),
                functions: vec![(*d).clone()],
                whole_card: false,
            });
        }
    }
    out
}

/// Every node's entries, gathered by the model of the device they are checked by.
fn models(nodes: &[Node], pick: &Pick, notes: &mut Vec<String>) -> Vec<Model> {
    let mut by: BTreeMap<(Hex16, Hex16), Model> = BTreeMap::new();
    for n in nodes {
        let es = entries(n, pick, notes);
        if es.is_empty() && n.host.iommu_enabled() {
            notes.push(if pick.models.is_empty() {
                trf(
                    "{node}: no device is on vfio-pci there, so it has no entries (claim or persist the groups it gives to guests, or pick models with --device).",
                    &[("node", &n.name)],
                )
            } else {
                trf(
                    "{node}: has none of the devices asked for.",
                    &[("node", &n.name)],
                )
            });
        }
        for e in es {
            let d = &e.device;
            by.entry((d.vendor_id, d.device_id))
                .or_insert_with(|| Model {
                    vendor: d.vendor_id,
                    device: d.device_id,
                    name: d.display_name(),
                    entries: Vec::new(),
                })
                .entries
                .push(e);
        }
    }
    by.into_values().collect()
}

/// The Proxmox mapping id of a model: `pve-configid` (a letter, then letters, digits, `-`,
/// `_`), telling models apart by their ids.
pub fn proxmox_id(vendor: Hex16, device: Hex16) -> String {
    format!("pci-{vendor}-{device}")
}

/// The subsystem id Proxmox records: always, `0000:0000` included (a mapping without it is
/// refused at VM start: "missing expected property 'subsystem-id'").
fn subsystem(d: &Device) -> String {
    format!(
        "{}:{}",
        d.subsystem_vendor_id.unwrap_or(Hex16(0)),
        d.subsystem_device_id.unwrap_or(Hex16(0))
    )
}

/// One map entry of a Proxmox PCI resource mapping.
fn proxmox_map(e: &Entry) -> String {
    let d = &e.device;
    format!(
        "node={},path={},id={}:{},subsystem-id={},iommugroup={}",
        e.node,
        e.path(),
        d.vendor_id,
        d.device_id,
        subsystem(d),
        d.group.map(|g| g.to_string()).unwrap_or_default()
    )
}

/// Writes the cluster export.
pub fn export(nodes: &[Node], format: ClusterFormat, pick: &Pick) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let ms = models(nodes, pick, &mut notes);
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut out = format!(
        "# {}\n",
        trf(
            "Passage cluster export over {nodes}: one entry per device on each node, read from that node.",
            &[("nodes", &names.join(", "))],
        )
    );
    match format {
        ClusterFormat::ProxmoxMapping => proxmox(&ms, &mut out, &mut notes),
        ClusterFormat::Kubevirt => kubevirt(&ms, &mut out, &mut notes),
        ClusterFormat::Nova => nova(&ms, nodes, &mut out, &mut notes),
    }
    (out, notes)
}

fn proxmox(ms: &[Model], out: &mut String, notes: &mut Vec<String>) {
    out.push_str(&format!(
        "# {}\n",
        tr("Proxmox VE: run on any node; then give a VM a device with hostpciN: mapping=ID (pcie=1 on q35).")
    ));
    for m in ms {
        let mut cmd = format!(
            "pvesh create /cluster/mapping/pci --id {} --description {}",
            proxmox_id(m.vendor, m.device),
            shell_word(&m.name)
        );
        for e in &m.entries {
            cmd.push_str(&format!(" \\\n    --map {}", shell_word(&proxmox_map(e))));
        }
        out.push_str(&cmd);
        out.push('\n');
        let whole: Vec<String> = m
            .entries
            .iter()
            .filter(|e| e.whole_card)
            .map(|e| {
                format!(
                    "{} {} ({})",
                    e.node,
                    e.path(),
                    e.functions
                        .iter()
                        .map(|f| f.address.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        if !whole.is_empty() {
            out.push_str(&format!(
                "#   {}\n",
                trf(
                    "whole cards (all functions go together, as their group requires): {cards}",
                    &[("cards", &whole.join("; "))]
                )
            ));
        }
    }
    notes.push(tr("Proxmox checks each entry at VM start against the node's device (ids, subsystem id, IOMMU group): if a node's hardware changes, export again."));
}

/// A word for a POSIX shell, quoted only when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ",.:=_-/+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// KubeVirt's resource name for a model: `passage.io/VENDOR-DEVICE`, so two models never share
/// one.
pub fn kubevirt_resource(vendor: Hex16, device: Hex16) -> String {
    super::kubevirt::resource_name(&vendor.to_string(), &device.to_string())
}

fn kubevirt(ms: &[Model], out: &mut String, notes: &mut Vec<String>) {
    // Every function given is a resource of its own (KubeVirt hands out functions): a card's
    // other functions too, or a VM could never ask for them.
    let selectors: std::collections::BTreeSet<(Hex16, Hex16)> = ms
        .iter()
        .flat_map(|m| &m.entries)
        .flat_map(|e| &e.functions)
        .map(|f| (f.vendor_id, f.device_id))
        .collect();
    let cr = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {
            "developerConfiguration": {"featureGates": ["HostDevices"]},
            "permittedHostDevices": {"pciHostDevices": selectors.iter().map(|(v, d)| json!({
                "pciVendorSelector": format!("{}:{}", v.to_string().to_uppercase(), d.to_string().to_uppercase()),
                "resourceName": kubevirt_resource(*v, *d),
            })).collect::<Vec<_>>()},
        }},
    });
    out.push_str(&format!(
        "# {}\n",
        tr("KubeVirt: merge into the KubeVirt CR. The HostDevices feature gate is on (without it a VM with hostDevices is refused at admission); each node's device plugin offers what it has on vfio-pci, and the scheduler places a VM only where its resource is. Node labels per model, for nodeSelector:")
    ));
    for m in ms {
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &m.entries {
            *per_node.entry(e.node.as_str()).or_default() += 1;
        }
        out.push_str(&format!(
            "#   {} — {}\n",
            kubevirt_resource(m.vendor, m.device),
            m.name
        ));
        for (node, n) in per_node {
            out.push_str(&format!(
                "#     kubectl label node {node} {}={n}\n",
                kubevirt_resource(m.vendor, m.device)
            ));
        }
        if m.entries.iter().any(|e| e.whole_card) {
            let other: Vec<String> = m
                .entries
                .iter()
                .filter(|e| e.whole_card)
                .flat_map(|e| e.functions.iter().skip(1))
                .map(|f| format!("{}:{}", f.vendor_id, f.device_id))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            notes.push(trf(
                "KubeVirt hands out single functions: a VM that gets {model} must also ask for {others} (the card's other functions, in the same group) or the group cannot be used.",
                &[("model", &format!("{}:{}", m.vendor, m.device)), ("others", &other.join(", "))],
            ));
        }
    }
    out.push_str("---\n");
    out.push_str(&serde_norway::to_string(&cr).unwrap_or_default());
    notes.push(tr("KubeVirt selects by vendor:device, so on a node with two identical devices either may be given; only devices on vfio-pci are offered."));
}

fn nova(ms: &[Model], nodes: &[Node], out: &mut String, notes: &mut Vec<String>) {
    let kind = |d: &Device| {
        if d.physfn.is_some() {
            "type-VF"
        } else if d.capabilities.sriov_total_vfs.unwrap_or(0) > 0 {
            // As the single-guest export decides it (plan::resolve).
            "type-PF"
        } else {
            "type-PCI"
        }
    };
    // Aliases per (vendor, product, type) of every function given, the same on every node.
    let mut aliases: BTreeMap<(Hex16, Hex16, &str), String> = BTreeMap::new();
    for m in ms {
        for e in &m.entries {
            for f in &e.functions {
                aliases
                    .entry((f.vendor_id, f.device_id, kind(f)))
                    .or_insert_with(|| format!("{}-{}", f.vendor_id, f.device_id));
            }
        }
    }
    let alias_lines: String = aliases
        .iter()
        .map(|((v, p, t), name)| {
            format!(
                "alias = {}\n",
                json!({"name": name, "vendor_id": v.to_string(), "product_id": p.to_string(), "device_type": t})
            )
        })
        .collect();
    out.push_str(&format!(
        "# {}\n",
        tr("OpenStack Nova: each compute node's nova.conf gets its own [pci] device_spec lines and the aliases; the API nodes get the aliases too.")
    ));
    for n in nodes {
        let specs: Vec<String> = ms
            .iter()
            .flat_map(|m| &m.entries)
            .filter(|e| e.node == n.name)
            .flat_map(|e| &e.functions)
            .map(|f| {
                format!(
                    "device_spec = {}\n",
                    json!({"address": f.address.to_string(), "vendor_id": f.vendor_id.to_string(), "product_id": f.device_id.to_string()})
                )
            })
            .collect();
        out.push_str(&format!(
            "\n# {}\n[pci]\n",
            trf("compute node {node}", &[("node", &n.name)])
        ));
        if specs.is_empty() {
            out.push_str(&format!("# {}\n", tr("no devices to offer")));
        }
        for s in specs {
            out.push_str(&s);
        }
        out.push_str(&alias_lines);
    }
    out.push_str(&format!("\n# {}\n[pci]\n{alias_lines}", tr("API nodes")));
    if ms.iter().flat_map(|m| &m.entries).any(|e| e.whole_card) {
        notes.push(tr("Nova places single functions: a flavor for a card with several functions (a GPU and its audio) must ask for each function's alias, or the guest gets part of a group."));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(name: &str, on_vfio: &[&str]) -> Node {
        let spec = crate::synth::MachineSpec::from_json(crate::demo::DEMO_HOST).unwrap();
        let dir = tempfile::tempdir().unwrap();
        spec.write_tree(dir.path()).unwrap();
        let mut host = crate::scan::scan(&crate::HostRoot::open(dir.path()).unwrap()).unwrap();
        for a in on_vfio {
            let a: PciAddress = a.parse().unwrap();
            host.devices.get_mut(&a).unwrap().driver = Some("vfio-pci".into());
        }
        Node {
            name: name.into(),
            host,
        }
    }

    #[test]
    fn a_gpu_and_its_audio_are_one_proxmox_entry_per_node_with_the_subsystem_id() {
        let nodes = [
            demo("pve1", &["0000:0b:00.0", "0000:0b:00.1"]),
            demo("pve2", &["0000:0b:00.0", "0000:0b:00.1"]),
        ];
        let (text, _) = export(&nodes, ClusterFormat::ProxmoxMapping, &Pick::default());
        let maps: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("--map ") && l.contains("id=10de:2206"))
            .collect();
        assert_eq!(maps.len(), 2, "{text}");
        for (m, node) in maps.iter().zip(["pve1", "pve2"]) {
            assert!(m.contains(&format!("node={node},path=0000:0b:00,")), "{m}");
            assert!(m.contains("subsystem-id="), "{m}");
            assert!(m.contains("iommugroup="), "{m}");
        }
        // The GPU and the USB card the demo host has on vfio-pci: one mapping each; the USB
        // card's subsystem vendor is 0, recorded all the same (Proxmox refuses a VM otherwise).
        assert_eq!(text.matches("pvesh create").count(), 2, "{text}");
        assert!(
            text.contains("id=1912:0015,subsystem-id=0000:0000,"),
            "{text}"
        );
        assert!(!text.contains("path=0000:0b:00.1"), "{text}");
    }

    #[test]
    fn a_model_picked_by_id_is_found_on_each_node_and_nothing_else() {
        let nodes = [demo("a", &[]), demo("b", &[])];
        let pick = Pick::parse(&["10de:2206".into()]).unwrap();
        let (text, _) = export(&nodes, ClusterFormat::Nova, &pick);
        assert_eq!(
            text.matches("\"product_id\":\"2206\"").count(),
            2 + 3,
            "{text}"
        );
        assert!(Pick::parse(&["10de".into()]).is_err());
        assert!(Pick::parse(&["10de:22066".into()]).is_err());
    }
}
