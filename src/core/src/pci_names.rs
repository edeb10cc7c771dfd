//! Human names for vendor, device and class ids, from the pci.ids database compiled in by the
//! `pci-ids` crate (so names do not depend on the host having `pciutils` installed).

use pci_ids::FromId;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

type Names = (Option<&'static str>, Option<&'static str>);

/// The crate searches a vendor's device table linearly (Intel has thousands); a host repeats the
/// same few ids many times (SR-IOV VFs), so a small cache pays for itself.
fn cache() -> &'static RwLock<HashMap<(u16, u16), Names>> {
    static CACHE: OnceLock<RwLock<HashMap<(u16, u16), Names>>> = OnceLock::new();
    CACHE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Vendor and device names, where pci.ids knows them.
pub fn lookup(vendor: u16, device: u16) -> (Option<String>, Option<String>) {
    let hit = cache()
        .read()
        .ok()
        .and_then(|c| c.get(&(vendor, device)).copied());
    let names = match hit {
        Some(n) => n,
        None => {
            let v = pci_ids::Vendor::from_id(vendor).map(|v| v.name());
            let d = pci_ids::Device::from_vid_pid(vendor, device).map(|d| d.name());
            if let Ok(mut c) = cache().write() {
                c.insert((vendor, device), (v, d));
            }
            (v, d)
        }
    };
    (names.0.map(str::to_string), names.1.map(str::to_string))
}

/// "VGA compatible controller", "Non-Volatile memory controller", … from the 24-bit class.
pub fn class_name(class: u32) -> String {
    let (base, sub) = ((class >> 16) as u8, (class >> 8) as u8);
    if let Some(s) = pci_ids::Subclass::from_cid_sid(base, sub) {
        return s.name().to_string();
    }
    pci_ids::Class::from_id(base)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("Class {:06x}", class))
}

#[cfg(test)]
mod tests {
    #[test]
    fn knows_common_hardware() {
        let (v, d) = super::lookup(0x10de, 0x1c02);
        assert_eq!(v.as_deref(), Some("NVIDIA Corporation"));
        assert!(d.unwrap_or_default().contains("GP106"));
        assert_eq!(super::class_name(0x030000), "VGA compatible controller");
        assert_eq!(super::lookup(0x1d0f, 0xfffe).1, None);
        assert_eq!(super::lookup(0x0002, 0x0001), (None, None));
    }
}
