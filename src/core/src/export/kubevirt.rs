//! KubeVirt: the `permittedHostDevices` entry of the KubeVirt CR (the node's device plugin
//! offers vfio-pci devices by vendor:device) and the VirtualMachine's `hostDevices`, as two
//! YAML documents written by serde_norway (a maintained serde_yaml).
//!
//! KubeVirt selects by vendor:device, not by address: on a host with identical cards any of
//! them may be handed out, so that is said every time it applies.

use super::{comment_header, ExportError};
use crate::i18n::trf;
use crate::model::Host;
use crate::plan::ResolvedGuest;
use serde_json::json;
use std::collections::BTreeMap;

/// The resource name the device plugin advertises for a vendor:device pair.
pub fn resource_name(vendor: &str, device: &str) -> String {
    format!("passage.io/{vendor}-{device}")
}

pub fn yaml(
    r: &ResolvedGuest,
    host: &Host,
    notes: &mut Vec<String>,
) -> Result<String, ExportError> {
    let mut selectors: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut host_devices = Vec::new();
    for (i, d) in r.visible().enumerate() {
        let (v, p) = (d.vendor_id.to_string(), d.device_id.to_string());
        let name = resource_name(&v, &p);
        selectors.insert((v, p), name.clone());
        host_devices.push(json!({"name": format!("hostdev{i}"), "deviceName": name}));
    }
    let mut same_ids = Vec::new();
    for (v, p) in selectors.keys() {
        let planned: Vec<String> = r
            .visible()
            .filter(|d| d.vendor_id.to_string() == *v && d.device_id.to_string() == *p)
            .map(|d| d.address.to_string())
            .collect();
        let others: Vec<String> = host
            .devices
            .values()
            .filter(|d| d.vendor_id.to_string() == *v && d.device_id.to_string() == *p)
            .map(|d| d.address.to_string())
            .filter(|a| !planned.contains(a))
            .collect();
        if !others.is_empty() {
            same_ids.push(trf(
                "KubeVirt selects devices by vendor:device ({ids}): this host also has {others}, and the node may hand out any of them that is on vfio-pci — not necessarily {planned}.",
                &[("ids", &format!("{v}:{p}")), ("others", &others.join(", ")), ("planned", &planned.join(", "))],
            ));
        }
    }
    let cr = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {"configuration": {
            // Without the gate KubeVirt refuses a VM with hostDevices at admission.
            "developerConfiguration": {"featureGates": ["HostDevices"]},
            "permittedHostDevices": {"pciHostDevices": selectors.iter().map(|((v, p), name)| json!({
                "pciVendorSelector": format!("{}:{}", v.to_uppercase(), p.to_uppercase()),
                "resourceName": name,
            })).collect::<Vec<_>>()},
        }},
    });
    let vm = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": r.name},
        "spec": {"template": {"spec": {"domain": {"devices": {"hostDevices": host_devices}}}}},
    });
    let to = |v: &serde_json::Value| {
        serde_norway::to_string(v).map_err(|e| ExportError::Write {
            format: "kubevirt",
            detail: e.to_string(),
        })
    };
    let mut out = comment_header(
        &trf("KubeVirt for guest {guest}: merge the first document into the KubeVirt CR (it turns on the HostDevices feature gate, without which a VM with hostDevices is refused at admission; merge the gate into any your CR lists already), the second into the VirtualMachine.", &[("guest", &r.name)]),
        r,
        notes,
    );
    for w in same_ids {
        out.push_str(&format!("# {w}\n"));
        notes.push(w);
    }
    out.push_str("---\n");
    out.push_str(&to(&cr)?);
    out.push_str("---\n");
    out.push_str(&to(&vm)?);
    notes.push(crate::i18n::tr(
        "KubeVirt chooses guest addresses itself; the plan's guest addresses are not carried over.",
    ));
    Ok(out)
}
