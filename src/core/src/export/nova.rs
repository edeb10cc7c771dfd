//! OpenStack Nova: `[pci] device_spec` by address (so identical cards elsewhere in the host
//! stay with it) and one `alias` per kind of device, plus the flavor property that asks for
//! them. Nova reads each value as JSON.

use super::comment_header;
use crate::i18n::{tr, trf};
use crate::plan::ResolvedGuest;
use std::collections::BTreeMap;

pub fn config(r: &ResolvedGuest, notes: &mut Vec<String>) -> String {
    let mut out = comment_header(
        &trf("OpenStack Nova for guest {guest}: nova.conf on the compute node (device_spec and alias) and on the API nodes (alias).", &[("guest", &r.name)]),
        r,
        notes,
    );
    out.push_str("[pci]\n");
    // Aliases by (vendor, product, type), counted for the flavor.
    let mut aliases: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for d in r.visible() {
        let spec = serde_json::json!({
            "address": d.address.to_string(),
            "vendor_id": d.vendor_id.to_string(),
            "product_id": d.device_id.to_string(),
        });
        out.push_str(&format!("device_spec = {spec}\n"));
        let kind = if d.is_vf {
            "type-VF"
        } else if d.is_pf {
            "type-PF"
        } else {
            "type-PCI"
        };
        *aliases
            .entry((d.vendor_id.to_string(), d.device_id.to_string(), kind))
            .or_default() += 1;
    }
    let mut flavor = Vec::new();
    for ((v, p, kind), count) in &aliases {
        let name = format!("{}-{v}-{p}", r.name);
        let alias = serde_json::json!({
            "name": name,
            "vendor_id": v,
            "product_id": p,
            "device_type": kind,
        });
        out.push_str(&format!("alias = {alias}\n"));
        flavor.push(format!("{name}:{count}"));
    }
    out.push_str(&format!(
        "# {}\n#   openstack flavor set FLAVOR --property \"pci_passthrough:alias\"=\"{}\"\n",
        tr("Then ask for the devices in the guest's flavor:"),
        flavor.join(",")
    ));
    notes.push(tr(
        "Nova chooses guest addresses itself; the plan's guest addresses are not carried over.",
    ));
    out
}
