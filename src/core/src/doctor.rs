//! The readiness doctor: what stands between this host and a working pass-through, beyond any
//! one group — the IOMMU as the firmware and the kernel have it, how the kernel has vfio-pci,
//! iommufd, and the devices whose reset is known to fail — each a finding with a stable code,
//! a sentence and the exact remedy (`passagectl doctor`).
//!
//! The facts are read here, beside the scan (they cost nothing to `list`): the kernel's
//! release, whether vfio-pci is built in, a module or missing, `/dev/iommu`, the VFIO device
//! files, the vendor-reset module. Anything unreadable is "unknown" and says nothing, never a
//! wrong claim.

use crate::address::PciAddress;
use crate::bootline;
use crate::explain::{self, name as label, Reason, Severity};
use crate::host::HostRoot;
use crate::i18n::{tr, trf};
use crate::model::{Device, Hex16, Host};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// How the running kernel has vfio-pci.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VfioPci {
    /// Built into the kernel: there from the first moment of boot.
    Builtin,
    /// A loaded module.
    Loaded,
    /// A module on disk, not loaded yet (Passage, libvirt or the initramfs loads it).
    Module,
    /// Neither built in nor installed for this kernel.
    Missing,
}

/// The facts the doctor reads besides the host's model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// `proc/sys/kernel/osrelease`.
    pub kernel_release: Option<String>,
    /// `None` when it cannot be told (no module directory for this kernel in the root).
    pub vfio_pci: Option<VfioPci>,
    /// `/dev/iommu` exists: the kernel has iommufd.
    pub iommufd: bool,
    /// VFIO's per-device files (`/dev/vfio/devices/vfioN`): a device under `sys/class/vfio-dev`
    /// has a `dev` number (`true`) or has none (`false`, a kernel before 6.6 or without
    /// CONFIG_VFIO_DEVICE_CDEV); `None` while no device is on a VFIO driver to tell.
    pub vfio_cdev: Option<bool>,
    /// The vendor-reset module is loaded.
    pub vendor_reset: bool,
    /// The firmware's tables that describe an IOMMU (`DMAR`, `IVRS`, `IORT`); `None` when the
    /// table directory cannot be listed.
    pub firmware_iommu_tables: Option<Vec<String>>,
    /// Power and BAR facts of the devices a person would give away, where there are any.
    pub devices: BTreeMap<PciAddress, DeviceFacts>,
    /// How this system boots and the line its next boot gets (`None`: not read, as for the
    /// demo host).
    pub boot: Option<bootline::Boot>,
    /// Passage changed the boot configuration during this boot (`run/passage/…`, a tmpfs): the
    /// change waits for the reboot.
    pub boot_line_pending: Option<bootline::Edit>,
    /// Reset rehearsals (`passagectl rehearse-reset`) as the helper keeps them, where they can
    /// be read here (as root, or in a recording).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rehearsals: Vec<Rehearsal>,
}

/// What a reset rehearsal found for one device model on one kernel (the helper's
/// `resets.json`, one per model and kernel release, the newest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rehearsal {
    pub vendor_id: String,
    pub device_id: String,
    /// The kernel release it was tried on.
    pub kernel: String,
    /// The device it was tried on.
    pub address: PciAddress,
    /// The kernel's reset methods for it, in the order it tries them (`None`: none of its own;
    /// VFIO may still reset its slot or bus with the whole group).
    pub method: Option<String>,
    /// The reset was done without an error.
    pub reset: bool,
    /// It answered as the same device afterwards (its config space read from it).
    pub answers: bool,
    /// Its host driver took it back (`None`: nothing to give back).
    pub back: Option<bool>,
    /// Seconds since the epoch.
    pub at: u64,
}

impl Rehearsal {
    /// Survives a guest reboot: reset, answered, and (where it had one) back on its driver;
    /// `None` where it has no reset of its own.
    pub fn survives(&self) -> Option<bool> {
        self.method.as_ref()?;
        Some(self.reset && self.answers && self.back != Some(false))
    }
}

/// What the doctor reads of one device besides the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceFacts {
    /// `d3cold_allowed`: the kernel may power the device off when it is idle.
    pub d3cold_allowed: Option<bool>,
    /// `power_state`: D0, D3hot, D3cold, …
    pub power_state: Option<String>,
    /// `power/control` is `auto`: the kernel may suspend the device at run time (without it a
    /// device never reaches D3cold while idle, whatever `d3cold_allowed` says).
    pub runtime_pm: Option<bool>,
    /// Resizable BARs (`resourceN_resize`): the BAR and the sizes it supports, in MiB.
    pub resizable_bars: Vec<ResizableBar>,
    /// The firmware's framebuffer found inside one of its BARs (proc/iomem against the
    /// device's `resource`): the early console holds that memory.
    pub boot_framebuffer: Option<FramebufferInBar>,
    /// POWER: the device's EEH (error recovery per partitionable endpoint), where the kernel
    /// offers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eeh: Option<Eeh>,
    /// PCIe Advanced Error Reporting: the errors the device reported since boot, where the
    /// kernel counts them (`aer_dev_fatal`, `aer_dev_nonfatal`, `aer_dev_correctable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aer: Option<AerCounts>,
}

/// What AER counted for a device since boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AerCounts {
    pub fatal: u64,
    pub nonfatal: u64,
    pub correctable: u64,
}

/// The `TOTAL_ERR_*` line of an AER counter file ("RxErr 0\n…\nTOTAL_ERR_COR 0\n").
fn aer_total(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A device's AER counters, when the kernel keeps all three for it.
fn read_aer(root: &HostRoot, dir: &Path) -> Option<AerCounts> {
    let total = |file: &str, key: &str| {
        root.read_string(dir.join(file))
            .ok()
            .and_then(|t| aer_total(&t, key))
    };
    Some(AerCounts {
        fatal: total("aer_dev_fatal", "TOTAL_ERR_FATAL")?,
        nonfatal: total("aer_dev_nonfatal", "TOTAL_ERR_NONFATAL")?,
        correctable: total("aer_dev_correctable", "TOTAL_ERR_COR")?,
    })
}

/// What the kernel shows of a device's EEH (arch/powerpc/kernel/eeh_sysfs.c): `eeh_mode`,
/// `eeh_pe_config_addr` ("0x%x") and `eeh_pe_state` ("0x%08x 0x%08x": the platform's state
/// of the PE, then the kernel's flags for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Eeh {
    pub mode: u32,
    pub pe: u32,
    pub platform_state: Option<u32>,
    pub pe_flags: Option<u32>,
}

impl Eeh {
    /// The kernel's EEH_PE_ISOLATED: the PE is frozen after an error.
    pub fn isolated(&self) -> bool {
        self.pe_flags.is_some_and(|f| f & 1 != 0)
    }
    /// EEH_PE_RECOVERING: the kernel is recovering it now.
    pub fn recovering(&self) -> bool {
        self.pe_flags.is_some_and(|f| f & 2 != 0)
    }
}

fn hex32(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

/// A device's EEH files, when it has them (`None`: EEH is not on for it).
fn read_eeh(root: &HostRoot, dir: &Path) -> Option<Eeh> {
    let text = |n: &str| root.read_string(dir.join(n)).ok();
    let mode = hex32(&text("eeh_mode")?)?;
    let pe = hex32(&text("eeh_pe_config_addr")?)?;
    let (platform_state, pe_flags) = match text("eeh_pe_state") {
        Some(s) => {
            let mut w = s.split_whitespace();
            (w.next().and_then(hex32), w.next().and_then(hex32))
        }
        None => (None, None),
    };
    Some(Eeh {
        mode,
        pe,
        platform_state,
        pe_flags,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FramebufferInBar {
    /// As proc/iomem names it: BOOTFB, efifb, simpledrm, vesafb, simple-framebuffer.
    pub name: String,
    pub bar: u8,
}

/// The firmware framebuffers in proc/iomem, as (name, start, end). Unprivileged readers see
/// every address as zero: then there is nothing to tell.
fn framebuffers(root: &HostRoot) -> Vec<(String, u64, u64)> {
    let is_fb = |l: &str| {
        l.split_once(" : ").is_some_and(|(_, n)| {
            matches!(
                n.trim(),
                "BOOTFB" | "efifb" | "simpledrm" | "vesafb" | "simple-framebuffer"
            )
        })
    };
    // A recording keeps the framebuffer lines only: the rest says where the kernel lies.
    let Ok(text) = root.read_string_kept("proc/iomem", is_fb) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (range, name) = l.trim().split_once(" : ")?;
            let name = name.trim();
            if !matches!(
                name,
                "BOOTFB" | "efifb" | "simpledrm" | "vesafb" | "simple-framebuffer"
            ) {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (b > a).then(|| (name.to_string(), a, b))
        })
        .collect()
}

/// The BAR of `d` a framebuffer lies in, from the device's `resource` lines (start end flags).
fn framebuffer_in(
    root: &HostRoot,
    d: &Device,
    fbs: &[(String, u64, u64)],
) -> Option<FramebufferInBar> {
    if fbs.is_empty() || !d.class.is_display() {
        return None;
    }
    let text = root
        .read_string(Path::new(&d.sysfs_path).join("resource"))
        .ok()?;
    for (i, line) in text.lines().take(6).enumerate() {
        let mut w = line.split_whitespace();
        let hex = |s: Option<&str>| u64::from_str_radix(s?.trim_start_matches("0x"), 16).ok();
        let (Some(start), Some(end)) = (hex(w.next()), hex(w.next())) else {
            continue;
        };
        if end <= start {
            continue;
        }
        if let Some((name, _, _)) = fbs.iter().find(|(_, a, b)| *a <= end && *b >= start) {
            return Some(FramebufferInBar {
                name: name.clone(),
                bar: i as u8,
            });
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResizableBar {
    pub index: u8,
    pub sizes_mib: Vec<u64>,
}

/// The devices a person would give away (GPUs, NICs, storage, audio, USB controllers,
/// wireless, accelerators, and whatever is on vfio-pci already); the chipset's own functions
/// (SMBus, the IOMMU itself) would only be noise.
fn given_away(d: &Device) -> bool {
    let wanted = matches!(d.class.base(), 0x01 | 0x02 | 0x03 | 0x04 | 0x0d | 0x12)
        || d.class.0 >> 8 == 0x0c03
        || d.on_vfio();
    wanted && d.is_for_a_guest() && d.physfn.is_none()
}

fn read_device(
    root: &HostRoot,
    d: &Device,
    fbs: &[(String, u64, u64)],
    power: bool,
) -> DeviceFacts {
    let dir = Path::new(&d.sysfs_path);
    let text = |n: &str| {
        root.read_string(dir.join(n))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let d3cold_allowed = text("d3cold_allowed").and_then(|s| match s.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    });
    // A short word of letters and digits, or nothing: never echo an odd file.
    let power_state = text("power_state")
        .filter(|s| !s.is_empty() && s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric()));
    let resizable_bars = (0u8..6)
        .filter_map(|i| {
            let mask = u64::from_str_radix(&text(&format!("resource{i}_resize"))?, 16).ok()?;
            // Bit n: 2^n MiB (bit 0 = 1 MiB); sizes past 2^47 MiB are no BAR.
            let sizes_mib: Vec<u64> = (0..48)
                .filter(|b| mask & (1 << b) != 0)
                .map(|b| 1u64 << b)
                .collect();
            (!sizes_mib.is_empty()).then_some(ResizableBar {
                index: i,
                sizes_mib,
            })
        })
        .collect();
    let runtime_pm = text("power/control").and_then(|s| match s.as_str() {
        "auto" => Some(true),
        "on" => Some(false),
        _ => None,
    });
    DeviceFacts {
        d3cold_allowed,
        power_state,
        runtime_pm,
        resizable_bars,
        boot_framebuffer: framebuffer_in(root, d, fbs),
        // Only POWER has EEH; elsewhere the files are never looked for. AER is PCIe's own,
        // counted where the device has the capability.
        eeh: power.then(|| read_eeh(root, dir)).flatten(),
        // Without root only the config header is readable (capabilities unknown), but the
        // counters are world-readable: read unless the device is known to have no AER.
        aer: if d.capabilities.aer != Some(false) {
            read_aer(root, dir)
        } else {
            None
        },
    }
}

/// What AER counted: uncorrectable errors stand in the way of a guest, corrected ones only
/// hint at a poor link.
fn aer_findings(d: &Device, a: &AerCounts, add: &mut impl FnMut(&'static str, Reason)) {
    let dev = label(d);
    if a.fatal + a.nonfatal > 0 {
        add(
            "devices",
            reason(
                "aer-errors",
                Some(d.address),
                Severity::Warning,
                trf("{device} has reported {fatal} fatal and {nonfatal} non-fatal uncorrectable PCIe errors since boot (AER). A device that errs on the host errs in a guest too, and there QEMU stops the guest when the device reports an uncorrectable error (a fatal one also makes the kernel reset the link).", &[("device", &dev), ("fatal", &a.fatal.to_string()), ("nonfatal", &a.nonfatal.to_string())]),
                Some(tr("Read the kernel log for the device (journalctl -k | grep -i aer); reseat the card, try another slot, or check its power and riser before giving it to a guest.")),
            ),
        );
    } else if a.correctable > 0 {
        add(
            "devices",
            reason(
                "aer-corrected",
                Some(d.address),
                Severity::Info,
                trf("{device} has reported {n} corrected PCIe errors since boot (AER): harmless one by one, but many of them point at a poor link (slot, riser, power).", &[("device", &dev), ("n", &a.correctable.to_string())]),
                None,
            ),
        );
    }
}

/// EEH on POWER: which devices' errors are contained and recovered per PE, which PE is frozen
/// now, or that the platform offers none.
fn eeh_findings(host: &Host, facts: &Facts, add: &mut impl FnMut(&'static str, Reason)) {
    // A PE's address is unique under its PCI host bridge only (bus and devfn on pseries, the
    // PE number on PowerNV): keyed by domain too.
    let mut pes: BTreeMap<(u32, u32), Vec<(&Device, &Eeh)>> = BTreeMap::new();
    for d in host.devices.values() {
        if let Some(e) = facts.devices.get(&d.address).and_then(|f| f.eeh.as_ref()) {
            pes.entry((d.address.domain, e.pe))
                .or_default()
                .push((d, e));
        }
    }
    if pes.is_empty() {
        add(
            "devices",
            reason(
                "eeh-off",
                None,
                Severity::Info,
                tr("None of the devices a guest could be given shows EEH files: the platform offers them no error recovery (QEMU's pseries gives it only to devices passed through with VFIO), so their errors are neither contained to their partitionable endpoint nor recovered by the kernel."),
                None,
            ),
        );
        return;
    }
    for ((domain, pe), members) in &pes {
        let names: Vec<String> = members.iter().map(|(d, _)| label(d)).collect();
        let first = members.first().map(|(d, _)| d.address);
        let pe_text = format!("{pe:#x} ({domain:04x})");
        if members.iter().any(|(_, e)| e.isolated()) {
            let recovering = members.iter().any(|(_, e)| e.recovering());
            let msg = if recovering {
                trf("Partitionable endpoint {pe} ({devices}) is frozen by EEH after an error, and the kernel is recovering it now (its drivers' error handlers, then a reset of the PE).", &[("pe", &pe_text), ("devices", &names.join(", "))])
            } else {
                trf("Partitionable endpoint {pe} ({devices}) is frozen by EEH after an error: its MMIO and DMA are stopped until it is recovered. A PE given to a guest is recovered by the guest through QEMU; on the host, by the kernel.", &[("pe", &pe_text), ("devices", &names.join(", "))])
            };
            add(
                "devices",
                reason(
                    "eeh-isolated",
                    first,
                    Severity::Blocker,
                    msg,
                    Some(tr("The kernel log says what happened (journalctl -k | grep EEH). A PE that stays frozen has failed too often in an hour (the eeh_max_freezes limit) or for good: remove and rescan the device (echo 1 > /sys/bus/pci/devices/ADDRESS/remove; echo 1 > /sys/bus/pci/rescan), or replace the card.")),
                ),
            );
        } else {
            add(
                "devices",
                reason(
                    "eeh",
                    first,
                    Severity::Info,
                    trf("EEH contains errors per partitionable endpoint: {devices} are PE {pe}. A fault on one freezes the whole PE, and the kernel recovers it with a reset of the PE; while the PE belongs to a guest, QEMU passes the error on to the guest.", &[("pe", &pe_text), ("devices", &names.join(", "))]),
                    None,
                ),
            );
        }
    }
}

/// "6.1.0-28-amd64" → (6, 1).
fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// "256 MiB", "8 GiB": a size in MiB as a person reads it.
pub fn size_text(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// Reads the facts under a host root, for the host scanned from it.
pub fn read(root: &HostRoot, host: &Host) -> Facts {
    // A release is printed and joined into a path: only what releases are made of.
    let release = root
        .read_string("proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+~-".contains(c))
        });
    let fbs = framebuffers(root);
    let vfio_pci = if root.is_dir("sys/module/vfio_pci") {
        // A loaded module has an initstate; a built-in one (listed for its parameters) has not.
        Some(if root.present("sys/module/vfio_pci/initstate") {
            VfioPci::Loaded
        } else {
            VfioPci::Builtin
        })
    } else {
        release.as_deref().and_then(|r| {
            let base = Path::new("lib/modules").join(r);
            if !root.is_dir(&base) {
                return None;
            }
            let builtin = root
                .read_string(base.join("modules.builtin"))
                .is_ok_and(|s| s.lines().any(|l| l.ends_with("/vfio-pci.ko")));
            if builtin {
                return Some(VfioPci::Builtin);
            }
            // depmod's list of every module of this kernel, wherever it lives (kernel/,
            // updates/, extra/); without it, nothing can be told.
            let dep = root.read_string(base.join("modules.dep")).ok()?;
            let on_disk = dep.lines().any(|l| {
                let path = l.split(':').next().unwrap_or("");
                let name = path.rsplit('/').next().unwrap_or("");
                [
                    "vfio-pci.ko",
                    "vfio-pci.ko.xz",
                    "vfio-pci.ko.zst",
                    "vfio-pci.ko.gz",
                ]
                .contains(&name)
            });
            Some(if on_disk {
                VfioPci::Module
            } else {
                VfioPci::Missing
            })
        })
    };
    let power = host.platform.arch.as_deref() == Some("powerpc");
    let (iommufd, vfio_cdev) = crate::vfio::kernel_interfaces(root);
    Facts {
        kernel_release: release,
        vfio_pci,
        iommufd,
        vfio_cdev,
        vendor_reset: root.is_dir("sys/module/vendor_reset"),
        // Listed once, by the scan.
        firmware_iommu_tables: host.platform.firmware_iommu_tables.clone(),
        devices: host
            .devices
            .values()
            .filter(|d| given_away(d))
            .map(|d| (d.address, read_device(root, d, &fbs, power)))
            .filter(|(_, f)| *f != DeviceFacts::default())
            .collect(),
        boot: Some(bootline::read(root)),
        boot_line_pending: root
            .read(bootline::PENDING_NOTE)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        // Root-only: a user's doctor does without (the command prints its results).
        rehearsals: root
            .read(Path::new(crate::names::STATE_DIR.trim_start_matches('/')).join("resets.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
    }
}

/// One finding: a reason (code, device, severity, sentence, remedy) under a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// "iommu", "vfio", "reset" or "devices".
    pub topic: &'static str,
    #[serde(flatten)]
    pub reason: Reason,
    /// The command that carries out the remedy, where Passage can (`passagectl fix CODE
    /// [DEVICE]`); `None` where the remedy is a person's to carry out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The doctor's whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub facts: Facts,
    pub findings: Vec<Finding>,
}

/// AMD GPUs that do not come back from a function or bus reset (the "AMD reset bug"), by
/// device id: the generations the vendor-reset project resets by their own means (its device
/// list, `src/device-db.h`, https://github.com/gnif/vendor-reset): Polaris 10/11/12, Vega 10,
/// Vega 20 and Arcturus, Navi 10/12/14. Exactly its ids: one outside them is no claim of ours.
const AMD_RESET_BUG: &[(&str, &[u16])] = &[
    (
        "Polaris 10",
        &[
            0x67c0, 0x67c1, 0x67c2, 0x67c4, 0x67c7, 0x67d0, 0x67df, 0x67c8, 0x67c9, 0x67ca, 0x67cc,
            0x67cf, 0x6fdf,
        ],
    ),
    (
        "Polaris 11",
        &[
            0x67e0, 0x67e3, 0x67e8, 0x67eb, 0x67ef, 0x67ff, 0x67e1, 0x67e7, 0x67e9,
        ],
    ),
    (
        "Polaris 12",
        &[
            0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699f,
        ],
    ),
    (
        "Vega 10",
        &[
            0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686a, 0x686b, 0x686c,
            0x686d, 0x686e, 0x686f, 0x687f,
        ],
    ),
    (
        "Vega 20",
        &[0x66a0, 0x66a1, 0x66a2, 0x66a3, 0x66a4, 0x66a7, 0x66af],
    ),
    ("Arcturus", &[0x738c]),
    (
        "Navi 10",
        &[
            0x7310, 0x7312, 0x7318, 0x7319, 0x731a, 0x731b, 0x731e, 0x731f, 0x1681,
        ],
    ),
    ("Navi 12", &[0x7360, 0x7362]),
    ("Navi 14", &[0x7340, 0x7341, 0x7347, 0x734f]),
];

/// The generation of an AMD GPU with the reset bug, if it is one.
pub fn amd_reset_bug(vendor: Hex16, device: Hex16) -> Option<&'static str> {
    if vendor.0 != 0x1002 {
        return None;
    }
    AMD_RESET_BUG
        .iter()
        .find(|(_, ids)| ids.contains(&device.0))
        .map(|(name, _)| *name)
}

/// Everything the doctor says about this host, most serious first within each topic.
pub fn examine(host: &Host, facts: &Facts) -> Report {
    let mut findings: Vec<Finding> = Vec::new();
    let mut add = |topic: &'static str, reason: Reason| {
        findings.push(Finding {
            topic,
            reason,
            fix: None,
        })
    };

    for r in explain::iommu(host).reasons {
        add("iommu", r);
    }

    // vfio-pci, as this kernel has it.
    let release = facts
        .kernel_release
        .clone()
        .unwrap_or_else(|| tr("this kernel"));
    match facts.vfio_pci {
        Some(VfioPci::Missing) => add(
            "vfio",
            reason(
                "vfio-pci-missing",
                None,
                Severity::Blocker,
                trf("The running kernel ({release}) has no vfio-pci, neither built in nor as a module: no device can be handed to a guest.", &[("release", &release)]),
                Some(tr("Install the kernel's extra modules (linux-modules-extra on Ubuntu) or a kernel built with CONFIG_VFIO_PCI, then reboot into it.")),
            ),
        ),
        Some(VfioPci::Builtin) => add(
            "vfio",
            reason(
                "vfio-pci-builtin",
                None,
                Severity::Info,
                trf("vfio-pci is built into the running kernel ({release}): it is there from the first moment of boot, so vfio-pci.ids= takes effect before any host driver that is a module.", &[("release", &release)]),
                None,
            ),
        ),
        Some(VfioPci::Module | VfioPci::Loaded) => {
            // The ids lost the race only where a device they name is held by another driver.
            let lost: Vec<String> = host
                .devices
                .values()
                .filter(|d| {
                    host.platform
                        .vfio_pci_ids
                        .iter()
                        .any(|(v, i)| *v == d.vendor_id && *i == d.device_id)
                        && !d.driver_is_harmless()
                })
                .map(|d| format!("{} ({})", label(d), d.driver.as_deref().unwrap_or("-")))
                .collect();
            if !lost.is_empty() {
                add(
                    "vfio",
                    reason(
                        "vfio-pci-ids-late",
                        None,
                        Severity::Warning,
                        trf("vfio-pci.ids= is on the kernel command line, but vfio-pci is a module and the devices' own drivers took them first: {devices}.", &[("devices", &lost.join("; "))]),
                        Some(tr("Let Passage persist the groups (passagectl persist GROUP on): it claims them by address before their drivers, with the softdep and the initramfs done for you. Or add “softdep DRIVER pre: vfio-pci” under /etc/modprobe.d and vfio-pci to the initramfs, and rebuild it.")),
                    ),
                );
            }
            if facts.vfio_pci == Some(VfioPci::Module) {
                add(
                    "vfio",
                    reason(
                        "vfio-pci-module",
                        None,
                        Severity::Info,
                        trf("vfio-pci is a module of the running kernel ({release}) and not loaded yet; Passage's helper (or libvirt) loads it when a group is claimed.", &[("release", &release)]),
                        None,
                    ),
                );
            }
        }
        None => {}
    }
    // POWER kernels 5.19 to 6.3: VFIO asks the IOMMU whether DMA is cache-coherent before it
    // takes a device, and POWER's platform IOMMU gave no answer until 6.4, so vfio-pci's probe
    // fails (error -22, and nothing else in the log) for every device. Seen on the test bed
    // with Debian 12's 6.1 ppc64el kernel; 6.12 takes them.
    let vfio_there = matches!(
        facts.vfio_pci,
        Some(VfioPci::Module | VfioPci::Loaded | VfioPci::Builtin)
    );
    if host.platform.arch.as_deref() == Some("powerpc") && vfio_there {
        if let Some(v) = facts.kernel_release.as_deref().and_then(major_minor) {
            if ((5, 19)..(6, 4)).contains(&v) {
                add(
                    "vfio",
                    reason(
                        "vfio-pci-power-coherency",
                        None,
                        Severity::Blocker,
                        trf("On POWER, vfio-pci in kernels 5.19 to 6.3 ({release} here) refuses every device: VFIO asks the IOMMU whether the device's DMA is cache-coherent, and POWER's platform IOMMU answers only from 6.4 on. A claim ends with “probe … failed with error -22” in the kernel log, and nothing is given to a guest.", &[("release", &release)]),
                        Some(tr("Boot a kernel of 6.4 or later (on Debian 12, linux-image-powerpc64le from bookworm-backports), or one whose distribution carries the fix (“powerpc/iommu: Add iommu_ops to report capabilities and allow blocking domains”).")),
                    ),
                );
            }
        }
    }
    if facts.iommufd {
        let msg = match facts.vfio_cdev {
            Some(true) => tr("The kernel has iommufd (/dev/iommu) and VFIO's per-device files (/dev/vfio/devices): QEMU 9.0 and later can use them instead of the group files."),
            Some(false) => tr("The kernel has iommufd (/dev/iommu), but not VFIO's per-device files (CONFIG_VFIO_DEVICE_CDEV): QEMU keeps to the group files."),
            None => tr("The kernel has iommufd (/dev/iommu). Whether it has VFIO's per-device files (/dev/vfio/devices, for QEMU 9.0 and later) shows once a device is on vfio-pci."),
        };
        add(
            "vfio",
            reason(
                "iommufd",
                None,
                Severity::Info,
                msg,
                (facts.vfio_cdev == Some(true)).then(|| {
                    tr("passagectl export --format qemu writes the iommufd form by itself where the QEMU here is 9.0 or later (--iommufd / --no-iommufd choose).")
                }),
            ),
        );
    }

    // POWER: EEH, per partitionable endpoint.
    if host.platform.arch.as_deref() == Some("powerpc") {
        eeh_findings(host, facts, &mut add);
    }

    // Devices a person would give away (GPUs, NICs, storage, audio, USB controllers,
    // accelerators, and whatever is on vfio-pci already): their reset, and what else stands in
    // the way. The chipset's own functions (SMBus, the IOMMU itself) would only be noise.
    // A kernel with the reset_method attribute (5.15, and kernels it was backported to) shows
    // it on every device with a method: any device with the file says so, and then a device
    // without one has none. Where no device has it, the release tells (before 5.15: the
    // model); unknown release: the model, which agrees with a new kernel's list wherever the
    // capabilities were read.
    let lists_resets = if host.devices.values().any(|d| d.reset_methods.is_some()) {
        Some(true)
    } else {
        facts
            .kernel_release
            .as_deref()
            .and_then(major_minor)
            .map(|v| v >= (5, 15))
    };
    for d in host.devices.values() {
        if !given_away(d) {
            continue;
        }
        let resets = match (&d.reset_methods, lists_resets) {
            (None, Some(true)) => Some(explain::ResetMethods {
                methods: Vec::new(),
                modelled: false,
            }),
            _ => explain::reset_methods(host, d),
        };
        if let Some(r) = resets.as_ref().filter(|r| r.modelled) {
            let methods = if r.methods.is_empty() {
                tr("none")
            } else {
                r.methods.join(", ")
            };
            add(
                "reset",
                reason(
                    "reset-modelled",
                    Some(d.address),
                    Severity::Info,
                    trf("{kernel} does not list reset methods (the reset_method file came with Linux 5.15); from {device}'s config space, its place on the bus and that kernel's quirks, it would be reset by: {methods}.", &[("kernel", &release), ("device", &label(d)), ("methods", &methods)]),
                    None,
                ),
            );
        }
        if let Some(f) = facts.devices.get(&d.address) {
            power_and_bars(d, f, facts.kernel_release.as_deref(), &mut add);
            if let Some(a) = &f.aer {
                aer_findings(d, a, &mut add);
            }
        }
        if let Some(generation) = amd_reset_bug(d.vendor_id, d.device_id) {
            let msg = trf("{device} is an AMD {generation} GPU: it does not come back from a function or bus reset (the “AMD reset bug”), so the guest's second start (or a reboot inside it) finds it hung.", &[("device", &label(d)), ("generation", generation)]);
            // vendor-reset acts only through the kernel's device-specific reset, which must be
            // in the device's reset_method list (kernel 5.15+; vendor-reset's udev rule puts it
            // there).
            let used = d
                .reset_methods
                .as_ref()
                .map(|m| m.iter().any(|x| x == "device_specific"))
                // Before 5.15 the kernel asks the device-specific reset first, always.
                .or((lists_resets == Some(false)).then_some(true));
            let set_it = trf("Put device_specific first in the device's reset methods: echo device_specific > /sys/bus/pci/devices/{address}/reset_method (vendor-reset's udev rule does it at every boot).", &[("address", &d.address.to_string())]);
            if facts.vendor_reset && used != Some(false) {
                add(
                    "reset",
                    reason(
                        "reset-bug-covered",
                        Some(d.address),
                        Severity::Info,
                        format!("{msg} {}", tr("The vendor-reset module is loaded and resets this generation its own way.")),
                        (used.is_none()).then_some(set_it),
                    ),
                );
            } else if facts.vendor_reset {
                add(
                    "reset",
                    reason(
                        "reset-bug-not-used",
                        Some(d.address),
                        Severity::Warning,
                        format!("{msg} {}", tr("The vendor-reset module is loaded, but the device's reset methods do not include device_specific, so the kernel never asks it.")),
                        Some(set_it),
                    ),
                );
            } else {
                add(
                    "reset",
                    reason(
                        "reset-bug",
                        Some(d.address),
                        Severity::Warning,
                        msg,
                        Some(if lists_resets == Some(false) {
                            // No reset_method file to set: the kernel asks the device-specific
                            // reset (vendor-reset's) first by itself.
                            tr("Install and load vendor-reset (https://github.com/gnif/vendor-reset; DKMS), or shut the guest down only with the host.")
                        } else {
                            tr("Install and load vendor-reset (https://github.com/gnif/vendor-reset; DKMS), set the device's reset_method to device_specific, or shut the guest down only with the host.")
                        }),
                    ),
                );
            }
        } else if resets.as_ref().is_some_and(|r| r.methods == ["bus"]) {
            // A bus reset resets everything on the bus: fine for a card alone behind its port
            // (its own functions go to the guest together), trouble beside other cards.
            let others: Vec<String> = host
                .devices
                .values()
                .filter(|o| {
                    o.address.domain == d.address.domain
                        && o.address.bus == d.address.bus
                        && !o.address.same_slot(d.address)
                })
                .map(|o| o.address.to_string())
                .collect();
            if others.is_empty() {
                add(
                    "reset",
                    reason(
                        "reset-bus-only",
                        Some(d.address),
                        Severity::Info,
                        trf("{device} is reset by resetting its bus (it has no function-level reset); the card is alone on that bus, so that works.", &[("device", &label(d))]),
                        None,
                    ),
                );
            } else {
                add(
                    "reset",
                    reason(
                        "reset-bus-only",
                        Some(d.address),
                        Severity::Warning,
                        trf("{device} can only be reset by resetting its whole bus, which it shares with {others}: the kernel refuses a bus reset while anything else sits on the bus (and VFIO's only while one guest owns all of it), so the device keeps whatever state the guest left.", &[("device", &label(d)), ("others", &others.join(", "))]),
                        Some(tr("Move the card to a slot behind a port of its own, or give the guest everything on that bus.")),
                    ),
                );
            }
        }
        if let Some(r) = explain::reset_reason(d, resets.as_ref()) {
            add("reset", r);
        }
        for r in explain::device_reasons(host, d) {
            if r.code == "small-bar" {
                add("devices", r);
            }
        }
    }
    // What rehearsals found for the models here, on this kernel.
    for d in host.devices.values() {
        let Some(r) = facts.rehearsals.iter().find(|r| {
            r.vendor_id == d.vendor_id.to_string()
                && r.device_id == d.device_id.to_string()
                && Some(&r.kernel) == facts.kernel_release.as_ref()
        }) else {
            continue;
        };
        let (sev, msg) = match r.survives() {
            Some(true) => (
                Severity::Info,
                trf("{device} survived a rehearsed guest reboot on this kernel ({kernel}): reset ({method}), answered, back on its driver.", &[("device", &label(d)), ("kernel", &r.kernel), ("method", r.method.as_deref().unwrap_or("-"))]),
            ),
            Some(false) => (
                Severity::Warning,
                trf("{device} did not survive a rehearsed guest reboot on this kernel ({kernel}): reset {reset}, answered {answers}. A guest's reboot may leave it unusable until the host restarts.", &[("device", &label(d)), ("kernel", &r.kernel), ("reset", &yes_no(r.reset)), ("answers", &yes_no(r.answers))]),
            ),
            None => continue,
        };
        add(
            "reset",
            reason("reset-rehearsed", Some(d.address), sev, msg, None),
        );
    }
    // SR-IOV cards: each virtual function is a group of its own, to give to a guest alone.
    for d in host.devices.values() {
        let Some(total) = d.capabilities.sriov_total_vfs.filter(|t| *t > 0) else {
            continue;
        };
        if d.physfn.is_some() || d.on_vfio() || !d.is_endpoint() {
            continue;
        }
        add(
            "devices",
            reason(
                "sriov-capable",
                Some(d.address),
                Severity::Info,
                trf("{device} can have up to {total} virtual functions (it has {now}); each is a group of its own, to give to a guest alone while the card stays with the host.", &[("device", &label(d)), ("total", &total.to_string()), ("now", &d.virtfns.len().to_string())]),
                Some(trf("passagectl vfs {address} COUNT creates them through its driver, now and at every boot ({driver}).", &[("address", &d.address.to_string()), ("driver", d.driver.as_deref().unwrap_or("-"))])),
            ),
        );
    }
    boot_findings(host, facts, &mut add);
    // Within each topic: blockers, then warnings, then the rest; a stable order otherwise.
    let rank = |t: &str| match t {
        "iommu" => 0,
        "vfio" => 1,
        "reset" => 2,
        "boot" => 4,
        _ => 3,
    };
    let mut by_hand = false;
    for f in &mut findings {
        let device_fix = fix_for(host, facts, &f.reason.code, f.reason.device)
            .is_ok_and(|x| !matches!(x, Fix::BootLine { .. }));
        if !device_fix && boot_line_edit(host, facts, &f.reason.code, f.reason.device).is_err() {
            continue;
        }
        if device_fix || matches!(facts.boot, Some(bootline::Boot::Known(_))) {
            f.fix = Some(match f.reason.device {
                Some(d) => format!("passagectl fix {} {d}", f.reason.code),
                None => format!("passagectl fix {}", f.reason.code),
            });
        } else {
            by_hand = true;
        }
    }
    // Why no fix is offered, said only where a remedy is a kernel parameter.
    if let (true, Some(bootline::Boot::Unknown { why })) = (by_hand, &facts.boot) {
        findings.push(Finding {
            topic: "boot",
            reason: reason(
                "boot-line-unknown",
                None,
                Severity::Info,
                trf("Passage cannot change this system's kernel command line: {why}.", &[("why", why)]),
                Some(tr("Carry out the remedies above that name kernel parameters with your boot loader's own tool, then reboot.")),
            ),
            fix: None,
        });
    }
    findings.sort_by(|a, b| {
        (rank(a.topic), a.reason.severity, a.reason.device).cmp(&(
            rank(b.topic),
            b.reason.severity,
            b.reason.device,
        ))
    });
    Report {
        facts: facts.clone(),
        findings,
    }
}

/// D3cold and resizable BARs: what they do to a guest, and what to set.
fn power_and_bars(
    d: &Device,
    f: &DeviceFacts,
    release: Option<&str>,
    add: &mut impl FnMut(&'static str, Reason),
) {
    let addr = d.address.to_string();
    // d3cold_allowed is 1 on nearly every device; it matters where run-time power management
    // is on, so the kernel really powers the idle GPU off.
    if d.class.is_display() && f.d3cold_allowed == Some(true) && f.runtime_pm == Some(true) {
        add(
            "devices",
            reason(
                "d3cold-allowed",
                Some(d.address),
                Severity::Info,
                trf("{device} may be powered off (D3cold) while idle. Some GPUs come back from that broken, on the host or in the guest (a black screen, the device gone, error 43).", &[("device", &label(d))]),
                Some(trf("If that happens, keep it powered: echo 0 > /sys/bus/pci/devices/{address}/d3cold_allowed before the guest starts (a udev rule keeps it across boots).", &[("address", &addr)])),
            ),
        );
    }
    if let Some(fb) = &f.boot_framebuffer {
        // sysfb (5.15 and later) registers BOOTFB/simpledrm; older kernels efifb or vesafb.
        let remedy = match fb.name.as_str() {
            "efifb" => tr("Boot with video=efifb:off (kernel command line), or make another GPU the primary one in the firmware setup."),
            "vesafb" => tr("Boot with video=vesafb:off (kernel command line), or make another GPU the primary one in the firmware setup."),
            _ => tr("Boot with initcall_blacklist=sysfb_init (kernel command line) so the firmware's framebuffer is never registered, or make another GPU the primary one in the firmware setup."),
        };
        // Since 6.0, vfio-pci removes the firmware's framebuffer from a VGA device when it
        // binds it (the aperture helpers): then the host only loses its boot console.
        let takes_it = d.class.0 >> 8 == 0x0300 && release.and_then(major_minor) >= Some((6, 0));
        if takes_it {
            add(
                "devices",
                reason(
                    "boot-framebuffer",
                    Some(d.address),
                    Severity::Info,
                    trf("The firmware's framebuffer ({name}) lies in {device}'s BAR {bar}; vfio-pci takes it away when it binds the GPU (kernel 6.0 and later), so the host loses its boot console then.", &[("name", &fb.name), ("device", &label(d)), ("bar", &fb.bar.to_string())]),
                    None,
                ),
            );
        } else {
            add(
            "devices",
            reason(
                "boot-framebuffer",
                Some(d.address),
                Severity::Warning,
                trf("The firmware's framebuffer ({name}) lies in {device}'s BAR {bar}: the host's boot console holds that memory, so vfio-pci cannot reserve it and the guest's start fails (“BAR {bar}: can't reserve [mem …]”) or shows nothing.", &[("name", &fb.name), ("device", &label(d)), ("bar", &fb.bar.to_string())]),
                Some(remedy),
            ),
        );
        }
    }
    if f.power_state.as_deref() == Some("D3cold") {
        add(
            "devices",
            reason(
                "powered-off",
                Some(d.address),
                Severity::Info,
                trf(
                    "{device} is powered off (D3cold) right now; opening it for a guest wakes it.",
                    &[("device", &label(d))],
                ),
                None,
            ),
        );
    }
    for rb in &f.resizable_bars {
        let (Some(max), Some(min)) = (rb.sizes_mib.iter().max(), rb.sizes_mib.iter().min()) else {
            continue;
        };
        let now = d
            .bars
            .iter()
            .find(|b| b.index == rb.index)
            .map(|b| size_text(b.size / (1024 * 1024)))
            .unwrap_or_else(|| tr("unknown"));
        add(
            "devices",
            reason(
                "resizable-bar",
                Some(d.address),
                Severity::Info,
                trf("{device} has a resizable BAR {bar}: {now} now, {min} to {max}. The guest sees the size set when it starts: a BAR larger than the guest's 64-bit PCI window is not mapped, and some guest drivers fail with one larger than they expect.", &[("device", &label(d)), ("bar", &rb.index.to_string()), ("now", &now), ("min", &size_text(*min)), ("max", &size_text(*max))]),
                Some(trf("Give the guest a 64-bit window at least that large (QEMU: -global q35-pcihost.pci-hole64-size=64G; OVMF: -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536), or let Passage resize the BAR whenever it claims the device from its host driver (while no driver holds it, given back at release): passagectl bar-size {address} {bar} SIZE, SIZE one the card offers ({min} to {max}).", &[("address", &addr), ("bar", &rb.index.to_string()), ("min", &size_text(*min)), ("max", &size_text(*max))])),
            ),
        );
    }
}

/// The boot configuration as the doctor tells it: how the machine boots, and whether the line
/// its next boot gets is the one it is running with.
fn boot_findings(host: &Host, facts: &Facts, add: &mut impl FnMut(&'static str, Reason)) {
    let Some(boot) = &facts.boot else {
        return;
    };
    let bootline::Boot::Known(cfg) = boot else {
        return;
    };
    let files: Vec<String> = cfg
        .files
        .iter()
        .map(|f| format!("/{}", f.display()))
        .collect();
    let tool = cfg
        .regenerate
        .first()
        .and_then(|c| c.first())
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    let running: Vec<String> = host
        .platform
        .cmdline
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let (more, less) = bootline::difference(&cfg.line, &running);
    add(
        "boot",
        reason(
            "boot-line",
            None,
            Severity::Info,
            trf("This system boots with {how}: the kernel command line is set in {files}, and {tool} carries a change to the boot loader.", &[("how", cfg.arrangement.describe()), ("files", &files.join(", ")), ("tool", &tool)]),
            None,
        ),
    );
    if more.is_empty() && less.is_empty() {
        return;
    }
    let changes = more
        .iter()
        .map(|w| format!("+{w}"))
        .chain(less.iter().map(|w| format!("−{w}")))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(e) = &facts.boot_line_pending {
        let what = e
            .add
            .iter()
            .map(|w| format!("+{w}"))
            .chain(e.remove.iter().map(|w| format!("−{w}")))
            .collect::<Vec<_>>()
            .join(" ");
        add(
            "boot",
            reason(
                "boot-line-pending",
                None,
                Severity::Warning,
                trf("Passage changed the kernel command line during this boot ({what}); the next boot gets {changes} against the running one. It takes effect when the machine restarts.", &[("what", &what), ("changes", &changes)]),
                Some(tr("Restart the machine, then run passagectl doctor again: it says whether the change took.")),
            ),
        );
    } else {
        add(
            "boot",
            reason(
                "boot-line-differs",
                None,
                Severity::Warning,
                trf("The boot configuration ({files}) gives the next boot a line that differs from the running kernel's: {changes}. Either it changed since this boot and waits for a restart, or this boot did not use it (the boot loader's configuration was not regenerated, another entry was chosen, or the line was edited at boot).", &[("files", &files.join(", ")), ("changes", &changes)]),
                Some(trf("If it changed since this boot, restart. Otherwise run {tool} and check which entry the boot loader starts.", &[("tool", &tool)])),
            ),
        );
    }
}

/// What carries out a finding's remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fix {
    /// A change of the kernel command line in the boot configuration.
    BootLine { edit: bootline::Edit },
    /// Keep a device powered: `d3cold_allowed` 0 now, and at every boot by a udev rule.
    D3cold { address: PciAddress },
}

/// What carries out the remedy of finding `code` (of `device`) on this host, or why Passage
/// cannot (no such finding here, or its remedy is a person's to carry out).
pub fn fix_for(
    host: &Host,
    facts: &Facts,
    code: &str,
    device: Option<PciAddress>,
) -> Result<Fix, String> {
    if code == "d3cold-allowed" {
        let d = device.ok_or_else(|| {
            tr("d3cold-allowed names a device: passagectl fix d3cold-allowed ADDRESS")
        })?;
        let dev = host.devices.get(&d);
        let f = facts.devices.get(&d);
        let found = dev.is_some_and(|dev| dev.class.is_display())
            && f.is_some_and(|f| f.d3cold_allowed == Some(true) && f.runtime_pm == Some(true));
        return if found {
            Ok(Fix::D3cold { address: d })
        } else {
            Err(trf(
                "the doctor does not find {code} for {device} on this host",
                &[("code", code), ("device", &d.to_string())],
            ))
        };
    }
    boot_line_fix(host, facts, code, device).map(|edit| Fix::BootLine { edit })
}

fn yes_no(b: bool) -> String {
    if b {
        tr("yes")
    } else {
        tr("no")
    }
}

/// The change to the kernel command line that carries out the remedy of finding `code` (of
/// `device`), where one does and this host has that finding; otherwise why not.
pub fn boot_line_fix(
    host: &Host,
    facts: &Facts,
    code: &str,
    device: Option<PciAddress>,
) -> Result<bootline::Edit, String> {
    let edit = boot_line_edit(host, facts, code, device)?;
    match &facts.boot {
        Some(bootline::Boot::Known(_)) => Ok(edit),
        Some(bootline::Boot::Unknown { why }) => Err(trf(
            "Passage cannot change this system's kernel command line: {why}",
            &[("why", why)],
        )),
        None => Err(tr("this host's boot configuration was not read")),
    }
}

/// The edit of the kernel command line that is the remedy of finding `code`, whatever the boot
/// configuration.
fn boot_line_edit(
    host: &Host,
    facts: &Facts,
    code: &str,
    device: Option<PciAddress>,
) -> Result<bootline::Edit, String> {
    let report_has = |c: &str| {
        let mut found = false;
        for r in explain::iommu(host).reasons {
            found |= r.code == c;
        }
        found
    };
    let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let line: Vec<&str> = host.platform.cmdline.split_whitespace().collect();
    let intel = host.platform.cpu_vendor.as_deref() == Some("intel");
    let dmar = host.platform.units.iter().any(|u| u.kind == "intel")
        || host
            .platform
            .firmware_iommu_tables
            .as_ref()
            .is_some_and(|t| t.iter().any(|n| n == "DMAR"));
    let nothing = || {
        trf(
            "the doctor does not find {code} on this host, or its remedy is not a kernel parameter",
            &[("code", code)],
        )
    };
    let edit = match code {
        "iommu-disabled-cmdline" if report_has(code) => bootline::Edit {
            add: vec![],
            remove: line
                .iter()
                .filter(|w| {
                    matches!(
                        **w,
                        "intel_iommu=off" | "amd_iommu=off" | "iommu=off" | "amd_iommu=disabled"
                    )
                })
                .map(|w| w.to_string())
                .collect(),
        },
        // Only the Intel cases: with a DMAR table or an Intel unit (not-enabled), or an Intel
        // CPU where nothing else explains it (off); a virtio-iommu or a virtual machine needs
        // other remedies.
        "iommu-not-enabled" | "iommu-off"
            if report_has(code)
                && !line.contains(&"intel_iommu=on")
                && (dmar || (code == "iommu-off" && intel)) =>
        {
            bootline::Edit {
                add: words(&["intel_iommu=on"]),
                remove: vec![],
            }
        }
        "no-interrupt-remapping" if report_has(code) && line.contains(&"intremap=off") => {
            bootline::Edit {
                add: vec![],
                remove: words(&["intremap=off"]),
            }
        }
        "vfio-pci-ids" if report_has(code) => bootline::Edit {
            add: vec![],
            remove: words(&["vfio-pci.ids"]),
        },
        "boot-framebuffer" => {
            let d = device.ok_or_else(|| {
                tr("boot-framebuffer names a device: passagectl fix boot-framebuffer ADDRESS")
            })?;
            let fb = facts
                .devices
                .get(&d)
                .and_then(|f| f.boot_framebuffer.as_ref())
                .ok_or_else(nothing)?;
            // vfio-pci takes the framebuffer away itself on 6.0 and later (see examine).
            if host
                .devices
                .get(&d)
                .is_some_and(|dev| dev.class.0 >> 8 == 0x0300)
                && facts.kernel_release.as_deref().and_then(major_minor) >= Some((6, 0))
            {
                return Err(nothing());
            }
            let w = match fb.name.as_str() {
                "efifb" => "video=efifb:off",
                "vesafb" => "video=vesafb:off",
                _ => "initcall_blacklist=sysfb_init",
            };
            bootline::Edit {
                add: words(&[w]),
                remove: vec![],
            }
        }
        _ => return Err(nothing()),
    };
    if edit.is_empty() {
        return Err(nothing());
    }
    Ok(edit)
}

fn reason(
    code: &str,
    device: Option<PciAddress>,
    severity: Severity,
    message: String,
    remedy: Option<String>,
) -> Reason {
    Reason {
        remedy,
        ..Reason::new(code, device, severity, message)
    }
}

/// The doctor's answer in words: a line per finding under its topic, the remedy beneath.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let topic_name = |t: &str| match t {
        "iommu" => tr("IOMMU"),
        "vfio" => tr("VFIO"),
        "reset" => tr("Reset"),
        "boot" => tr("Boot"),
        _ => tr("Devices"),
    };
    let mut last: Option<&str> = None;
    for f in &r.findings {
        if last != Some(f.topic) {
            if last.is_some() {
                out.push('\n');
            }
            out.push_str(&topic_name(f.topic));
            out.push('\n');
            last = Some(f.topic);
        }
        let mark = match f.reason.severity {
            Severity::Blocker => tr("blocker"),
            Severity::Warning => tr("warning"),
            Severity::Info => tr("note"),
        };
        out.push_str(&format!(
            "  [{mark}] {} ({})\n",
            f.reason.message, f.reason.code
        ));
        if let Some(rem) = &f.reason.remedy {
            out.push_str(&format!("      → {rem}\n"));
        }
        if let Some(fix) = &f.fix {
            out.push_str(&trf(
                "      → Passage can do it: {command}\n",
                &[("command", fix)],
            ));
        }
    }
    let blockers = r
        .findings
        .iter()
        .filter(|f| f.reason.severity == Severity::Blocker)
        .count();
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&if blockers == 0 {
        tr("Nothing blocks pass-through on this host.")
    } else {
        trf(
            "Blockers above: {n}. Pass-through cannot work on this host until they are solved.",
            &[("n", &blockers.to_string())],
        )
    });
    out.push('\n');
    out
}
