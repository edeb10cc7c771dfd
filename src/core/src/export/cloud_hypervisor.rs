//! cloud-hypervisor: `--device path=/sys/bus/pci/devices/…/` for each visible function.
//! cloud-hypervisor chooses guest slots itself and gives every function a slot of its own.

use super::{comment_header, sysfs_path};
use crate::i18n::{tr, trf};
use crate::plan::ResolvedGuest;

pub fn args(r: &ResolvedGuest, notes: &mut Vec<String>) -> String {
    let mut out = comment_header(
        &trf(
            "cloud-hypervisor arguments for guest {guest}.",
            &[("guest", &r.name)],
        ),
        r,
        notes,
    );
    let devs: Vec<String> = r
        .visible()
        .enumerate()
        .map(|(i, d)| format!("path={}/,id=passage-hostdev{i}", sysfs_path(d)))
        .collect();
    out.push_str("--device");
    for d in &devs {
        out.push_str(" \\\n  ");
        out.push_str(d);
    }
    out.push('\n');
    let cards: std::collections::BTreeSet<_> = r.visible().map(|d| d.address.function0()).collect();
    if cards.len() < r.visible().count() {
        notes.push(tr("cloud-hypervisor gives each function a slot of its own: the functions of one card (GPU and audio) are apart in the guest."));
    }
    if r.visible().any(|d| d.x_vga || !d.rombar) {
        notes.push(tr("cloud-hypervisor has no legacy VGA or ROM BAR settings; those choices are not carried over."));
    }
    out
}
