//! QEMU command-line arguments: the `pcie-root-port`s a q35 plan needs and one
//! `-device vfio-pci,…` per visible device, one argument per line ending in ` \` so the block
//! pastes into a shell script. Every `vfio-pci` property used here is checked against
//! `qemu-system-x86_64 -device vfio-pci,help` in tests.

use super::comment_header;
use crate::i18n::trf;
use crate::plan::{Layout, ResolvedGuest};

/// The QEMU that will run guests on this machine: `$PASSAGE_QEMU` where set, else this
/// architecture's `qemu-system-*` on the PATH.
pub fn program() -> String {
    if let Some(p) = std::env::var_os(crate::names::QEMU_ENV).filter(|p| !p.is_empty()) {
        return p.to_string_lossy().into_owned();
    }
    let arch = match std::env::consts::ARCH {
        "powerpc64" => "ppc64",
        "x86" => "i386",
        a => a,
    };
    format!("qemu-system-{arch}")
}

/// The version `PROGRAM --version` prints ("QEMU emulator version 10.0.2 (Debian …)"), as
/// (major, minor); `None` when it does not run, says something else, or has not answered
/// within two seconds (the app asks on its main loop: a program that hangs is killed).
pub fn version(program: &str) -> Option<(u32, u32)> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    child
        .stdout
        .take()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    parse_version(&text)
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether the QEMU export takes the iommufd form, and why in a note: the kernel must have
/// iommufd and VFIO's device files, and QEMU must be 9.0 or later. `qemu` is the QEMU that
/// will run the guest, where known (its program name and version).
pub fn choose_iommufd(
    kernel: (bool, Option<bool>),
    qemu: Option<(&str, Option<(u32, u32)>)>,
) -> (bool, Option<String>) {
    use crate::i18n::tr;
    match kernel {
        (true, Some(true)) => match qemu {
            Some((_, Some(v))) if v >= (9, 0) => (
                true,
                Some(trf("Written in the iommufd form: this host's kernel has iommufd and VFIO's device files, and QEMU {version} takes them (--no-iommufd writes the group form).", &[("version", &format!("{}.{}", v.0, v.1))])),
            ),
            Some((_, Some(v))) => (
                false,
                Some(trf("This host's kernel has iommufd, but QEMU {version} here is older than 9.0, so the group form is written.", &[("version", &format!("{}.{}", v.0, v.1))])),
            ),
            Some((program, None)) => (
                false,
                Some(trf("This host's kernel has iommufd, but {program} did not say its version here, so the group form is written; --iommufd writes the iommufd form for QEMU 9.0 or later.", &[("program", program)])),
            ),
            None => (
                false,
                Some(tr("The host's kernel has iommufd; the QEMU that will run the guest is not known here, so the group form is written (--iommufd for QEMU 9.0 or later).")),
            ),
        },
        (true, None) => (
            false,
            Some(tr("This host's kernel has iommufd; whether it has VFIO's device files shows once a device is on vfio-pci, so the group form is written (--iommufd to choose).")),
        ),
        _ => (false, None),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_qemu_prints_them() {
        assert_eq!(
            parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025"),
            Some((10, 0))
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some((7, 2))
        );
        assert_eq!(parse_version("qemu-system-x86_64: unknown option"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(version("/nonexistent/qemu"), None);
    }

    #[test]
    fn the_iommufd_form_needs_the_kernel_and_qemu_9() {
        assert!(choose_iommufd((true, Some(true)), Some(("q", Some((9, 0))))).0);
        assert!(!choose_iommufd((true, Some(true)), Some(("q", Some((8, 2))))).0);
        assert!(!choose_iommufd((true, Some(false)), Some(("q", Some((10, 0))))).0);
        assert!(!choose_iommufd((false, None), Some(("q", Some((10, 0))))).0);
        assert_eq!(choose_iommufd((false, None), None), (false, None));
    }
}
