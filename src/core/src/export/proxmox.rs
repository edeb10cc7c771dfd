//! Proxmox VE: `hostpciN:` lines for `/etc/pve/qemu-server/<VMID>.conf`, and the cluster
//! resource mapping commands that name the same devices by ids and group.
//!
//! Proxmox places devices in the guest itself. A card whose usable functions are all visible is
//! passed as one multifunction device (`0000:0b:00`, no function), as Proxmox does for GPUs;
//! otherwise each visible function gets its own line.

use super::comment_header;
use crate::i18n::{tr, trf};
use crate::model::Host;
use crate::plan::{assignable_members, ResolvedDevice, ResolvedGuest};

pub fn config(r: &ResolvedGuest, host: &Host, notes: &mut Vec<String>) -> String {
    let q35 = r.machine.contains("q35");
    let mut out = comment_header(
        &trf("Proxmox VE, guest {guest}: add to /etc/pve/qemu-server/<VMID>.conf (or qm set <VMID> --hostpciN …).", &[("guest", &r.name)]),
        r,
        notes,
    );
    if q35 {
        out.push_str("machine: q35\n");
    } else {
        notes.push(tr(
            "Without q35 Proxmox passes devices as plain PCI (no pcie=1).",
        ));
    }
    // Cards in plan order; a card is the host slot (function 0 and its siblings).
    let mut cards: Vec<(crate::address::PciAddress, Vec<&ResolvedDevice>)> = Vec::new();
    for d in r.visible() {
        let k = d.address.function0();
        match cards.iter_mut().find(|(c, _)| *c == k) {
            Some((_, v)) => v.push(d),
            None => cards.push((k, vec![d])),
        }
    }
    let mut n = 0;
    let mut mappings = Vec::new();
    for (card, devs) in &cards {
        let on_card: Vec<_> = devs
            .first()
            .map(|d| assignable_members(host, d.group))
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.address.same_slot(*card))
            .collect();
        let whole = devs.len() > 1 && devs.len() == on_card.len();
        let entries: Vec<(String, Vec<&ResolvedDevice>)> = if whole {
            let a = card.to_string();
            vec![(a[..a.len() - 2].to_string(), devs.clone())]
        } else {
            devs.iter()
                .map(|d| (d.address.to_string(), vec![*d]))
                .collect()
        };
        for (path, ds) in entries {
            let mut opts = vec![path.clone()];
            if q35 {
                opts.push("pcie=1".into());
            }
            if ds.iter().any(|d| d.x_vga) {
                opts.push("x-vga=1".into());
            }
            if ds.iter().any(|d| !d.rombar) {
                opts.push("rombar=0".into());
            }
            out.push_str(&format!("hostpci{n}: {}\n", opts.join(",")));
            n += 1;
            // The mapping names what the hostpci line passes: a whole card by its slot (checked
            // by function 0's ids), so a GPU is never split from its audio function.
            let Some(d) = ds.iter().min_by_key(|d| d.address) else {
                continue;
            };
            // Proxmox records the subsystem id always (0000:0000 included) and refuses a VM
            // whose mapping lacks it: "missing expected property 'subsystem-id'".
            let map = format!(
                "node=$(hostname),path={path},id={}:{},subsystem-id={}:{},iommugroup={}",
                d.vendor_id,
                d.device_id,
                d.subsystem_vendor_id.unwrap_or(crate::model::Hex16(0)),
                d.subsystem_device_id.unwrap_or(crate::model::Hex16(0)),
                d.group
            );
            mappings.push(format!(
                "#   pvesh create /cluster/mapping/pci --id {}-{} --map {map}",
                r.name,
                path.replace([':', '.'], "-")
            ));
        }
    }
    out.push_str(&format!(
        "# {}\n",
        tr("For a cluster, map the same devices by ids and group (then use hostpciN: mapping=ID):")
    ));
    for m in mappings {
        out.push_str(&m);
        out.push('\n');
    }
    notes.push(tr(
        "Proxmox chooses guest addresses itself; the plan's guest addresses are not carried over.",
    ));
    out
}
