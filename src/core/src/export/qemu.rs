//! QEMU command-line arguments: the `pcie-root-port`s a q35 plan needs and one
//! `-device vfio-pci,…` per visible device, one argument per line ending in ` \` so the block
//! pastes into a shell script. Every `vfio-pci` property used here is checked against
//! `qemu-system-x86_64 -device vfio-pci,help` in tests.

use super::comment_header;
use crate::i18n::trf;
use crate::plan::{Layout, ResolvedGuest};

/// Root ports get chassis numbers from here up: QEMU needs each (chassis, slot) pair unique,
/// and a hand-written command line usually numbers its own ports from 1.
pub const CHASSIS_BASE: u32 = 0x50;

/// The id of the root port for guest bus `bus`.
pub fn port_id(bus: u8) -> String {
    format!("passage-rp{bus}")
}

pub fn args(r: &ResolvedGuest, iommufd: bool, notes: &mut Vec<String>) -> String {
    let layout = r.layout;
    let mut lines: Vec<String> = Vec::new();
    if iommufd {
        lines.push("-object iommufd,id=passage-iommufd0".into());
    }
    for bus in &r.root_ports {
        lines.push(format!(
            "-device pcie-root-port,id={},chassis={},slot={}",
            port_id(*bus),
            CHASSIS_BASE + u32::from(*bus),
            bus
        ));
    }
    for (i, d) in r.visible().enumerate() {
        let mut p = vec![
            format!("host={}", d.address),
            format!("id=passage-hostdev{i}"),
        ];
        if let Some(a) = d.guest_address {
            match layout {
                Layout::RootPorts => p.push(format!("bus={}", port_id(a.bus))),
                _ => p.push("bus=pci.0".into()),
            }
            p.push(format!("addr={:02x}.{:x}", a.slot, a.function));
        }
        if d.multifunction {
            p.push("multifunction=on".into());
        }
        if d.x_vga {
            p.push("x-vga=on".into());
        }
        if !d.rombar {
            p.push("rombar=0".into());
        }
        if iommufd {
            p.push("iommufd=passage-iommufd0".into());
        }
        lines.push(format!("-device vfio-pci,{}", p.join(",")));
    }
    let machine = if layout == Layout::RootPorts {
        "q35"
    } else {
        r.machine.as_str()
    };
    let mut out = comment_header(
        &trf(
            "QEMU arguments for guest {guest} (machine {machine}).",
            &[("guest", &r.name), ("machine", machine)],
        ),
        r,
        notes,
    );
    if iommufd {
        out.push_str(&format!("# {}\n", crate::i18n::tr("The iommufd form needs QEMU 9.0 or newer and a kernel with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV.")));
    }
    let n = lines.len();
    for (i, l) in lines.into_iter().enumerate() {
        out.push_str(&l);
        out.push_str(if i + 1 < n { " \\\n" } else { "\n" });
    }
    out
}
