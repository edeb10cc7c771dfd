//! crosvm: `--vfio /sys/bus/pci/devices/…,guest-address=BB:SS.F` for each visible function, on
//! crosvm's one PCI bus.

use super::{comment_header, sysfs_path};
use crate::i18n::{tr, trf};
use crate::plan::ResolvedGuest;

pub fn args(r: &ResolvedGuest, notes: &mut Vec<String>) -> String {
    let mut out = comment_header(
        &trf("crosvm arguments for guest {guest}.", &[("guest", &r.name)]),
        r,
        notes,
    );
    let lines: Vec<String> = r
        .visible()
        .map(|d| {
            let mut s = format!("--vfio {}", sysfs_path(d));
            if let Some(a) = d.guest_address {
                s.push_str(&format!(",guest-address={a}"));
            }
            s
        })
        .collect();
    out.push_str(&lines.join(" \\\n"));
    out.push('\n');
    if r.visible().any(|d| d.x_vga || !d.rombar) {
        notes.push(tr(
            "crosvm has no legacy VGA or ROM BAR settings; those choices are not carried over.",
        ));
    }
    out
}
