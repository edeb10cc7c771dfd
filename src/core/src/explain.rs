//! Verdicts: pure functions from the [`Host`] model to states and reasons a person can act on.
//!
//! Nothing here reads files or changes the kernel's groups. The group is the unit; each reason
//! names the device it concerns, says what is going on in a sentence, and says what to do.
//! Reason codes are stable (kebab-case) and listed in docs/JSON.md; messages are translated.

use crate::address::{GroupId, PciAddress};
use crate::config::PortType;
use crate::i18n::{tr, trf};
use crate::model::{short_vendor, Device, Group, Host, Use};
use crate::scan::cmdline_has;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A group's state; the first that applies wins (docs/CONTRACTS.md, "Group states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    HostCritical,
    Assigned,
    InUse,
    Available,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::HostCritical => "host-critical",
            State::Assigned => "assigned",
            State::InUse => "in-use",
            State::Available => "available",
        }
    }

    /// The state in the user's language.
    pub fn label(self) -> String {
        match self {
            State::HostCritical => tr("host-critical"),
            State::Assigned => tr("assigned"),
            State::InUse => tr("in use"),
            State::Available => tr("available"),
        }
    }
}

/// How much a reason matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Stops the assignment until something changes.
    Blocker,
    /// Works, but the person should know or act first.
    Warning,
    /// Explains; nothing to do.
    Info,
}

/// One reason: a stable code, the device it concerns, a sentence and a remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub device: Option<PciAddress>,
    pub severity: Severity,
    pub message: String,
    pub remedy: Option<String>,
}

impl Reason {
    pub(crate) fn new(
        code: &str,
        device: Option<PciAddress>,
        severity: Severity,
        message: String,
    ) -> Self {
        Self {
            code: code.to_string(),
            device,
            severity,
            message,
            remedy: None,
        }
    }
    pub(crate) fn remedy(mut self, r: String) -> Self {
        self.remedy = Some(r);
        self
    }
}

/// True when the firmware's table list is known and holds `table`.
fn tables_have(p: &crate::model::Platform, table: &str) -> bool {
    p.firmware_iommu_tables
        .as_ref()
        .is_some_and(|t| t.iter().any(|x| x == table))
}

/// The IOMMU as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuVerdict {
    pub enabled: bool,
    pub reasons: Vec<Reason>,
}

/// A group's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVerdict {
    pub id: GroupId,
    /// A summary a person recognises: "NVIDIA GP106 + HD Audio".
    pub title: String,
    pub devices: Vec<PciAddress>,
    pub state: State,
    /// The kernel's group type (DMA, DMA-FQ, identity, blocked).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// True when the group has no function a guest could use (only bridges and chipset glue).
    pub assignable: bool,
    pub reasons: Vec<Reason>,
}

/// How sentences name a device: "0000:0b:00.0 (NVIDIA GA102 [GeForce RTX 3080])".
pub(crate) fn name(d: &Device) -> String {
    format!("{} ({})", d.address, d.display_name())
}

fn short_model(d: &Device) -> String {
    match &d.device_name {
        Some(n) => n.split(" [").next().unwrap_or(n).to_string(),
        None => format!("{}:{}", d.vendor_id, d.device_id),
    }
}

fn function_label(d: &Device) -> String {
    match d.class.0 >> 8 {
        0x0403 => tr("HD Audio"),
        0x0c03 => tr("USB"),
        0x0c80 => tr("Serial bus"),
        0x0c05 => tr("SMBus"),
        _ => d.class_name.clone(),
    }
}

/// "NVIDIA GP106 + HD Audio", "Intel I350 + 3 more", "PCI bridge 0000:00:01.0".
pub fn title(host: &Host, g: &Group) -> String {
    let members: Vec<&Device> = host.members(g).collect();
    let endpoints: Vec<&Device> = members
        .iter()
        .copied()
        .filter(|d| d.is_for_a_guest())
        .collect();
    let Some(first) = endpoints.first() else {
        return match members.first() {
            Some(d) => format!("{} {}", d.class_name, d.address),
            None => trf("Group {id}", &[("id", &g.id.to_string())]),
        };
    };
    let vendor = first.vendor_name.as_deref().map(short_vendor).unwrap_or("");
    let mut parts = vec![format!("{vendor} {}", short_model(first))
        .trim()
        .to_string()];
    let twins = endpoints
        .iter()
        .filter(|d| d.address.same_slot(first.address) && d.device_id == first.device_id)
        .count();
    if twins > 1 {
        // Identical functions (a dual-port NIC): "Intel I350 Gigabit Network Connection ×2".
        parts[0] = format!("{} ×{twins}", parts[0]);
    }
    let rest: Vec<&&Device> = endpoints
        .iter()
        .skip(1)
        .filter(|d| !(d.address.same_slot(first.address) && d.device_id == first.device_id))
        .collect();
    for d in rest.iter().take(2) {
        if d.vendor_id == first.vendor_id && d.address.same_slot(first.address) {
            parts.push(function_label(d));
        } else {
            let v = d.vendor_name.as_deref().map(short_vendor).unwrap_or("");
            parts.push(format!("{v} {}", short_model(d)).trim().to_string());
        }
    }
    let mut t = parts.join(" + ");
    if rest.len() > 2 {
        t.push_str(&trf(" + {n} more", &[("n", &(rest.len() - 2).to_string())]));
    }
    t
}

/// No groups on an ARM machine: its IOMMU is the SMMU, described by the firmware's IORT table
/// (ACPI) or the device tree's `iommu-map`, and turned on by the kernel whenever it is
/// described (there is no `intel_iommu=on` to add).
fn arm_iommu_off(p: &crate::model::Platform) -> Reason {
    if let Some(vm) = &p.virtual_machine {
        return Reason::new("iommu-off-vm", None, Severity::Blocker,
            trf("This is a virtual machine ({machine}) without a virtual SMMU, so its kernel has no isolation groups and cannot give devices on to a nested guest.", &[("machine", &vm.describe())]))
            .remedy(tr("Give the virtual machine an IOMMU, then boot it again. With QEMU's virt machine: -machine virt,iommu=smmuv3 (or -device virtio-iommu-pci); with libvirt: <iommu model='smmuv3'/> (or <iommu model='virtio'/>). The devices to pass on must be given to this virtual machine first."));
    }
    if tables_have(p, "IORT") {
        return Reason::new("iommu-not-enabled", None, Severity::Blocker,
            tr("The firmware's IORT table is there, but no SMMU driver took the PCI devices, so there are no isolation groups. The table may describe only interrupt translation (ITS), or the kernel lacks the SMMU driver."))
            .remedy(tr("Check the kernel log (journalctl -k | grep -i smmu): a kernel built without CONFIG_ARM_SMMU_V3 (or CONFIG_ARM_SMMU for older SMMUs) needs another kernel; an IORT without an SMMU node needs the SMMU enabled in the firmware setup."));
    }
    let described = match (&p.devicetree, &p.firmware_iommu_tables) {
        (Some(_), _) => None,
        (None, Some(t)) if t.is_empty() => Some(tr("the firmware's ACPI tables hold no IORT")),
        _ => None,
    };
    let Some(how) = described else {
        return Reason::new("iommu-off", None, Severity::Blocker,
            tr("The kernel found no SMMU for the PCI devices, so there are no isolation groups: the firmware (its device tree or ACPI tables) describes none, or the kernel has no driver for the one it describes. On ARM the kernel uses an SMMU whenever the firmware describes one; no kernel parameter turns it on."))
            .remedy(tr("Look for the SMMU in the kernel log (journalctl -k | grep -i smmu). Nothing there: enable the SMMU in the firmware setup (boards call it “SMMU” or “IOMMU”) or boot with firmware or a device tree that describes it. Named but not started: a kernel with CONFIG_ARM_SMMU_V3 (or CONFIG_ARM_SMMU)."));
    };
    Reason::new("iommu-off-firmware", None, Severity::Blocker,
        trf("The firmware describes no SMMU for the PCI devices ({how}), so there are no isolation groups. On ARM the kernel uses the SMMU whenever the firmware describes it; no kernel parameter turns it on.", &[("how", &how)]))
        .remedy(tr("Enable the SMMU in the firmware setup (boards call it “SMMU” or “IOMMU”), or boot with firmware or a device tree that describes it; then reboot."))
}

/// No groups on a POWER machine: isolation there is the platform's (partitionable endpoints
/// under each PCI host bridge, with TCE tables), not a separate IOMMU device.
fn power_iommu_off() -> Reason {
    Reason::new("iommu-off", None, Severity::Blocker,
        tr("The kernel made no IOMMU groups. On POWER, isolation is the platform's: every PCI host bridge isolates its partitionable endpoints through DMA windows that the firmware (or the hypervisor) gives the kernel, and the kernel found none to group here."))
        .remedy(tr("On PowerVM or KVM (pseries), the partition needs its PCI slots assigned with their PHBs; on bare metal (PowerNV), a kernel with CONFIG_IOMMU_API and CONFIG_PPC_POWERNV. The kernel log says which PHBs it found (journalctl -k | grep -i -e PHB -e iommu)."))
}

/// The platform verdict: is there an IOMMU, and is anything about it wrong for every group.
pub fn iommu(host: &Host) -> IommuVerdict {
    let p = &host.platform;
    let c = p.cmdline.as_str();
    let mut reasons = Vec::new();
    let enabled = host.iommu_enabled();
    let vendor = p.cpu_vendor.as_deref();
    if !enabled {
        let off_words: Vec<&str> = c
            .split_whitespace()
            .filter(|w| {
                matches!(
                    *w,
                    "intel_iommu=off" | "amd_iommu=off" | "iommu=off" | "amd_iommu=disabled"
                )
            })
            .collect();
        if !off_words.is_empty() {
            let words = off_words.join(" ");
            reasons.push(
                Reason::new(
                    "iommu-disabled-cmdline",
                    None,
                    Severity::Blocker,
                    trf("The kernel command line turns the IOMMU off ({words}), so there are no isolation groups and no device can be given to a guest.", &[("words", &words)]),
                )
                .remedy(trf("Remove {words} from the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot.", &[("words", &words)])),
            );
        } else if (vendor == Some("intel") && !p.units.is_empty())
            || p.units.iter().any(|u| u.kind == "intel")
            // A DMAR table is Intel's, whatever the CPU: an AMD guest with QEMU's intel-iommu.
            || tables_have(p, "DMAR")
        {
            let remedy = if c.split_whitespace().any(|w| w == "intel_iommu=on") {
                tr("intel_iommu=on is already on the command line, so the kernel failed to start it or was built without it (CONFIG_INTEL_IOMMU): the kernel log says which (journalctl -k | grep -i DMAR).")
            } else {
                tr("Add intel_iommu=on to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot.")
            };
            reasons.push(
                Reason::new("iommu-not-enabled", None, Severity::Blocker,
                    tr("The firmware describes an Intel VT-d IOMMU, but the kernel did not turn it on, so there are no isolation groups."))
                .remedy(remedy),
            );
        } else if tables_have(p, "VIOT") {
            reasons.push(
                Reason::new("iommu-not-enabled", None, Severity::Blocker,
                    tr("The firmware describes a virtio-iommu (its VIOT table is there), but the kernel did not start it, so there are no isolation groups."))
                .remedy(tr("Use a kernel with CONFIG_VIRTIO_IOMMU (every major distribution's has it) and make sure the virtio-iommu device is not disabled; the kernel log says why (journalctl -k | grep -i iommu).")),
            );
        } else if tables_have(p, "IVRS") {
            reasons.push(
                Reason::new("iommu-not-enabled", None, Severity::Blocker,
                    tr("The firmware describes an AMD IOMMU (its IVRS table is there), but the kernel did not turn it on, so there are no isolation groups."))
                .remedy(tr("The command line does not turn it off, so the kernel failed to start it or was built without it (CONFIG_AMD_IOMMU): the kernel log says which (journalctl -k | grep -i AMD-Vi). A firmware update or a distribution kernel usually cures it.")),
            );
        } else if p.arch.as_deref() == Some("arm64") {
            reasons.push(arm_iommu_off(p));
        } else if p.arch.as_deref() == Some("powerpc") {
            reasons.push(power_iommu_off());
        } else if let Some(vm) = &p.virtual_machine {
            // A guest's host bridge is whatever the hypervisor emulates (QEMU's is Intel's
            // on any CPU): the remedy is the hypervisor's, not the firmware's.
            reasons.push(
                Reason::new("iommu-off-vm", None, Severity::Blocker,
                    trf("This is a virtual machine ({machine}) without a virtual IOMMU, so its kernel has no isolation groups and cannot give devices on to a nested guest.", &[("machine", &vm.describe())]))
                .remedy(tr("Give the virtual machine a virtual IOMMU, then boot it again. With libvirt: <iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu> (a Q35 machine with <ioapic driver='qemu'/> under <features>), or <iommu model='virtio'/>. With QEMU: -device intel-iommu,intremap=on,caching-mode=on (with -machine q35,kernel-irqchip=split), or -device virtio-iommu-pci. With the Intel one, also add intel_iommu=on to this guest's kernel command line. The devices to pass on must be given to this virtual machine first.")),
            );
        } else if p
            .firmware_iommu_tables
            .as_ref()
            .is_some_and(|t| t.is_empty())
        {
            // The firmware's own tables say there is no IOMMU: a kernel parameter cannot help.
            let remedy = match vendor {
                Some("amd") => tr("Enable “IOMMU” (on some boards “AMD-Vi”, under NBIO or AMD CBS) and “SVM” in the firmware setup, then reboot. Kernel parameters cannot help until the firmware describes it."),
                Some("intel") => tr("Enable “VT-d” (sometimes “Intel Virtualization Technology for Directed I/O”) in the firmware setup, then reboot; then add intel_iommu=on if there are still no groups. The kernel parameter alone cannot help while the firmware hides it."),
                _ => tr("Enable the IOMMU in the firmware setup (VT-d on Intel, AMD-Vi/IOMMU on AMD, SMMU on ARM), then reboot. Kernel parameters cannot help until the firmware describes it."),
            };
            reasons.push(
                Reason::new("iommu-off-firmware", None, Severity::Blocker,
                    tr("The firmware describes no IOMMU (it provides no DMAR, IVRS, VIOT or IORT table): it is switched off in the firmware setup, or this machine has none."))
                .remedy(remedy),
            );
        } else if vendor == Some("intel") {
            reasons.push(
                Reason::new("iommu-off", None, Severity::Blocker,
                    tr("The kernel found no IOMMU: Intel VT-d is off in the firmware, or the kernel was not asked to use it (many distributions leave it off on Intel)."))
                .remedy(tr("Add intel_iommu=on to the kernel command line and reboot; if there are still no groups, enable “VT-d” (sometimes “Intel Virtualization Technology for Directed I/O”) in the firmware setup.")),
            );
        } else if vendor == Some("amd") {
            reasons.push(
                Reason::new("iommu-off", None, Severity::Blocker,
                    tr("The kernel found no IOMMU: AMD-Vi is switched off in the firmware (the kernel turns it on by itself when the firmware describes it)."))
                .remedy(tr("Enable “IOMMU” (on some boards “AMD-Vi”, under NBIO or AMD CBS) and “SVM” in the firmware setup, then reboot.")),
            );
        } else {
            reasons.push(
                Reason::new("iommu-off", None, Severity::Blocker,
                    tr("The kernel found no IOMMU, so there are no isolation groups and no device can be given to a guest."))
                .remedy(tr("Enable the IOMMU in the firmware setup (VT-d on Intel, AMD-Vi/IOMMU on AMD, SMMU on ARM) and on the kernel command line (intel_iommu=on on Intel), then reboot.")),
            );
        }
        return IommuVerdict { enabled, reasons };
    }

    if let Some(mode) = &p.acs_override {
        reasons.push(
            Reason::new("acs-override", None, Severity::Warning,
                trf("The kernel was booted with pcie_acs_override={mode}: groups are split by a patch that assumes devices cannot reach each other. That is not proven by the hardware, so the groups shown are not real isolation — a device given to a guest may still reach its neighbours' memory.", &[("mode", mode)]))
            .remedy(tr("Accept that risk knowingly, or move the card to a slot whose port has ACS (CPU-attached slots usually do) and boot without pcie_acs_override.")),
        );
    }
    let ir_off = cmdline_has(c, "intremap") && c.split_whitespace().any(|w| w == "intremap=off");
    let no_ir_unit = p
        .units
        .iter()
        .find(|u| u.interrupt_remapping == Some(false));
    if ir_off || no_ir_unit.is_some() {
        let unsafe_ok = p.allow_unsafe_interrupts == Some(true);
        let msg = if ir_off {
            tr("Interrupt remapping is turned off on the kernel command line (intremap=off).")
        } else {
            trf(
                "The IOMMU unit {unit} cannot remap interrupts.",
                &[(
                    "unit",
                    &no_ir_unit.map(|u| u.name.clone()).unwrap_or_default(),
                )],
            )
        };
        if unsafe_ok {
            reasons.push(
                Reason::new("unsafe-interrupts-allowed", None, Severity::Warning,
                    format!("{msg} {}", tr("vfio_iommu_type1.allow_unsafe_interrupts is set, so VFIO attaches groups anyway: a device in a guest can send the host arbitrary interrupts (MSI injection).")))
                .remedy(tr("Enable interrupt remapping in the firmware (and remove intremap=off), then drop allow_unsafe_interrupts.")),
            );
        } else {
            reasons.push(
                Reason::new("no-interrupt-remapping", None, Severity::Blocker,
                    format!("{msg} {}", tr("Without it vfio_iommu_type1 refuses to attach any group (VFIO_SET_IOMMU fails with EPERM), so QEMU cannot use any device.")))
                .remedy(tr("Enable interrupt remapping (x2APIC / “Interrupt remapping” in the firmware setup, and remove intremap=off). As a last resort, vfio_iommu_type1.allow_unsafe_interrupts=1 lets VFIO work without it, at the price of letting the guest's device inject interrupts into the host.")),
            );
        }
    } else if p.msi_isolation == Some(false) {
        // ARM: MSIs are isolated by the GIC's ITS, not by the SMMU.
        let msg = tr("The interrupt controller has no ITS (a GICv2, or a GICv3 without one), so the interrupts devices send (MSIs) are not isolated.");
        if p.allow_unsafe_interrupts == Some(true) {
            reasons.push(
                Reason::new("unsafe-interrupts-allowed", None, Severity::Warning,
                    format!("{msg} {}", tr("vfio_iommu_type1.allow_unsafe_interrupts is set, so VFIO attaches groups anyway: a device in a guest can send the host arbitrary interrupts (MSI injection).")))
                .remedy(tr("Use a machine with a GICv3 ITS, then drop allow_unsafe_interrupts.")),
            );
        } else {
            reasons.push(
                Reason::new("no-interrupt-remapping", None, Severity::Blocker,
                    format!("{msg} {}", tr("Without that vfio_iommu_type1 refuses to attach any group (VFIO_SET_IOMMU fails with EPERM), so QEMU cannot use any device.")))
                .remedy(tr("Use a machine (or firmware setting) with a GICv3 ITS — in a QEMU virt machine, -machine virt,gic-version=3 (libvirt: <gic version='3'/>). As a last resort, vfio_iommu_type1.allow_unsafe_interrupts=1 lets VFIO work without it, at the price of letting the guest's device inject interrupts into the host.")),
            );
        }
    } else if p.allow_unsafe_interrupts == Some(true) {
        reasons.push(Reason::new("unsafe-interrupts-allowed", None, Severity::Info,
            tr("vfio_iommu_type1.allow_unsafe_interrupts is set; interrupt remapping is available, so it changes nothing here.")));
    }
    if c.split_whitespace().any(|w| w == "iommu=pt") {
        reasons.push(Reason::new("iommu-passthrough", None, Severity::Info,
            tr("iommu=pt: host devices bypass IOMMU translation for speed. Groups given to guests are still isolated; VFIO gives them their own domain.")));
    }
    if !p.vfio_pci_ids.is_empty() {
        let ids: Vec<String> = p
            .vfio_pci_ids
            .iter()
            .map(|(v, d)| format!("{v}:{d}"))
            .collect();
        reasons.push(
            Reason::new("vfio-pci-ids", None, Severity::Info,
                trf("vfio-pci.ids={ids} on the kernel command line hands every device with these ids to vfio-pci at boot — including identical cards you meant to keep.", &[("ids", &ids.join(","))]))
            .remedy(tr("Prefer Passage's persistent claims, which go by address; remove vfio-pci.ids when you switch.")),
        );
    }
    IommuVerdict { enabled, reasons }
}

fn use_reason(d: &Device, u: &Use) -> Reason {
    let dev = name(d);
    match u {
        Use::SystemFilesystem { mountpoint, source } => {
            let code = if mountpoint == "/" { "root-filesystem" } else { "system-filesystem" };
            Reason::new(code, Some(d.address), Severity::Blocker,
                trf("{device} holds {mountpoint} ({source}); the host cannot run without it.", &[("device", &dev), ("mountpoint", mountpoint), ("source", source)]))
            .remedy(tr("Keep this group on the host. If you need the other devices in it, move them (or the disk) to a slot in another group."))
        }
        Use::Filesystem { mountpoint, source } => Reason::new("mounted-filesystem", Some(d.address), Severity::Warning,
                trf("{device} holds the filesystem mounted at {mountpoint} ({source}).", &[("device", &dev), ("mountpoint", mountpoint), ("source", source)]))
            .remedy(trf("Unmount {mountpoint} (and remove it from /etc/fstab) before giving this group away.", &[("mountpoint", mountpoint)])),
        Use::Swap { source } => Reason::new("swap", Some(d.address), Severity::Blocker,
                trf("{device} holds swap space ({source}); taking it away can crash the host.", &[("device", &dev), ("source", source)]))
            .remedy(trf("Run swapoff {source} and remove it from /etc/fstab, or keep this group on the host.", &[("source", source)])),
        Use::Console { framebuffer } => Reason::new("console", Some(d.address), Severity::Blocker,
                trf("{device} drives the host's console ({framebuffer}); taking it leaves the host without a screen.", &[("device", &dev), ("framebuffer", framebuffer)]))
            .remedy(tr("Use another GPU (or the integrated one) for the host: set it as primary in the firmware setup, or run the host headless and reach it over the network.")),
        Use::Display { connector } => Reason::new("display-attached", Some(d.address), Severity::Warning,
                trf("{device} has a display connected ({connector}); the host's desktop may be using it.", &[("device", &dev), ("connector", connector)]))
            .remedy(tr("Move the host's desktop to another GPU, or close the session on this one, before giving it away.")),
        Use::DefaultRoute { interface } => Reason::new("default-route", Some(d.address), Severity::Blocker,
                trf("{device} carries the host's default route ({interface}); taking it cuts the host off the network.", &[("device", &dev), ("interface", interface)]))
            .remedy(tr("Give the guest another NIC, or an SR-IOV virtual function of this one, or move the host's route to another interface first.")),
        Use::NetworkRoot { interface, source } => Reason::new("network-root", Some(d.address), Severity::Blocker,
                trf("The host's root filesystem ({source}) comes over {interface} on {device}.", &[("device", &dev), ("interface", interface), ("source", source)]))
            .remedy(tr("Keep this NIC on the host.")),
    }
}

/// How the kernel resets a device: the names `reset_method` uses, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetMethods {
    pub methods: Vec<String>,
    /// Worked out rather than read: kernels before 5.15 have no `reset_method` file, so the
    /// list is what their `__pci_reset_function_locked` would try for this device
    /// ([`modelled_reset_methods`]).
    pub modelled: bool,
}

/// The kernel's reset methods for `d`: its own `reset_method` list where the kernel wrote one,
/// else the model of an older kernel's choice; `None` when config space was not readable
/// enough to tell (an unprivileged reader sees 64 bytes, not the capabilities).
pub fn reset_methods(host: &Host, d: &Device) -> Option<ResetMethods> {
    match &d.reset_methods {
        Some(m) => Some(ResetMethods {
            methods: m.clone(),
            modelled: false,
        }),
        None => modelled_reset_methods(host, d).map(|methods| ResetMethods {
            methods: methods.into_iter().map(str::to_string).collect(),
            modelled: true,
        }),
    }
}

/// Devices Linux 5.14 resets its own way first (`pci_dev_reset_methods[]` in
/// drivers/pci/quirks.c): Intel 82599 SFP VF, Ivy Bridge IGDs, Huawei HiNIC VF; Chelsio T4 and
/// the two NVMe drives whose quirk is a variant of FLR are matched below.
const DEVICE_SPECIFIC_RESET: &[(u16, u16)] = &[
    (0x8086, 0x10ed),
    (0x8086, 0x0156),
    (0x8086, 0x0166),
    (0x19e5, 0x375e),
];
/// `quirk_no_flr` as of Linux 5.14: FLR hangs AMD Starship/Matisse audio and USB and Intel
/// 82579 NICs, so the kernel skips it.
const NO_FLR: &[(u16, u16)] = &[
    (0x1022, 0x1487),
    (0x1022, 0x148c),
    (0x1022, 0x149c),
    (0x8086, 0x1502),
    (0x8086, 0x1503),
];
/// `quirk_no_bus_reset` as of Linux 5.14: Atheros AR93xx wireless cards (their link does not
/// come back from a secondary bus reset) and TI KeyStone C667x; NVIDIA's GA100 is matched
/// below (`quirk_nvidia_no_bus_reset`, also in the 5.10 and 5.4 stable kernels).
const NO_BUS_RESET: &[(u16, u16)] = &[
    (0x168c, 0x0030),
    (0x168c, 0x0032),
    (0x168c, 0x0033),
    (0x168c, 0x0034),
    (0x168c, 0x003c),
    (0x104c, 0xb005),
];

/// What a kernel before 5.15 (no `reset_method` file) would use to reset `d`, in the order
/// `__pci_reset_function_locked` tries them: the device-specific quirk, FLR (the PCIe
/// capability's or the Advanced Features one; not on `quirk_no_flr` devices), a D3hot→D0
/// power-management reset (PM capability without No_Soft_Reset; never on AMD/ATI VGA
/// devices, `quirk_no_pm_reset`), and a secondary bus reset through the bridge above — which
/// `pci_parent_bus_reset` allows only on a bus other than a root bus and with the function
/// alone on it (no other function, not even the card's own), and never on a
/// `quirk_no_bus_reset` device. A hot-plug slot's reset (`slot`) needs the slot's driver and
/// is not modelled; it also requires a single-function card alone, where `bus` is listed.
/// `None` when the capabilities were not read (64 bytes of config space).
pub fn modelled_reset_methods(host: &Host, d: &Device) -> Option<Vec<&'static str>> {
    let (v, id) = (d.vendor_id.0, d.device_id.0);
    let c = &d.capabilities;
    let (flr, pm) = (c.flr?, c.pm_reset?);
    let mut out = Vec::new();
    // Samsung SM961 (NVMe disabled, then FLR) and Intel 750 (FLR, then a wait): only where
    // the drive has FLR, the SM961 only as an NVMe controller.
    let nvme_quirk = flr
        && ((v, id) == (0x8086, 0x0953) || ((v, id) == (0x144d, 0xa804) && d.class.0 == 0x010802));
    if DEVICE_SPECIFIC_RESET.contains(&(v, id))
        || (v == 0x1425 && id & 0xf000 == 0x4000)
        || nvme_quirk
    {
        out.push("device_specific");
    }
    if flr && !NO_FLR.contains(&(v, id)) {
        out.push("flr");
    }
    // `quirk_no_pm_reset` spares a VGA device on a root bus.
    let ati_vga = v == 0x1002 && d.class.0 >> 8 == 0x0300 && d.parent.is_some();
    if pm && !ati_vga {
        out.push("pm");
    }
    let alone = || {
        let a = d.address;
        let (Some(lo), Some(hi)) = (
            PciAddress::new(a.domain, a.bus, 0, 0),
            PciAddress::new(a.domain, a.bus, 31, 7),
        ) else {
            return false;
        };
        host.devices.range(lo..=hi).all(|(o, _)| *o == a)
    };
    let no_bus_reset = NO_BUS_RESET.contains(&(v, id)) || (v == 0x10de && id & 0xffc0 == 0x2340);
    // A VF sits on its PF's bus or a virtual one: no bridge of its own to reset it with.
    if d.parent.is_some() && d.physfn.is_none() && !d.is_bridge() && !no_bus_reset && alone() {
        out.push("bus");
    }
    Some(out)
}

/// `no-reset` when the kernel has no way to reset `d`. `resets` as [`reset_methods`] gives
/// them (a missing `reset_method` file is either no reset at all or a kernel older than 5.15,
/// whose choice is modelled); the doctor, which knows the kernel's release, passes its own.
pub fn reset_reason(d: &Device, resets: Option<&ResetMethods>) -> Option<Reason> {
    if !d.is_endpoint() || d.is_chipset_glue() {
        return None;
    }
    let none_listed = resets.is_some_and(|r| r.methods.is_empty());
    none_listed.then(|| {
        Reason::new("no-reset", Some(d.address), Severity::Warning,
            trf("{device} has no reset method the kernel can use: after the guest stops (or reboots) the device may stay in whatever state the guest left it.", &[("device", &name(d))]))
        .remedy(tr("Shut the guest down cleanly rather than resetting it; for AMD GPUs the vendor-reset module adds a reset. A bus reset works only if nothing else sits on the same bus."))
    })
}

/// Reasons about one device, independent of its neighbours.
pub fn device_reasons(host: &Host, d: &Device) -> Vec<Reason> {
    let mut out = Vec::new();
    let dev = name(d);
    for u in host.uses_of(d.address) {
        out.push(use_reason(d, u));
    }
    if d.group.is_none() && !host.groups.is_empty() && d.wants_a_group() {
        out.push(match host.stream_group(d) {
            Some(g) => Reason::new("no-group", Some(d.address), Severity::Warning,
                trf("{device} is in no IOMMU group: the IOMMU driver refused it because it shares the DMA stream of group {group} (both behind one bridge to conventional PCI). It cannot be given to a guest on its own, and its DMA goes through group {group}'s domain: giving group {group} away takes it off {driver}.", &[("device", &dev), ("group", &g.to_string()), ("driver", d.driver.as_deref().unwrap_or("-"))]))
                .remedy(tr("Give it to a guest with its group's devices by moving it to a PCIe slot of its own; it cannot be passed through where it is.")),
            None => Reason::new("no-group", Some(d.address), Severity::Blocker,
                trf("{device} is in no IOMMU group although the IOMMU makes groups on this host: the IOMMU driver did not take it (its kernel log line says why), so VFIO cannot give it to a guest.", &[("device", &dev)]))
                .remedy(tr("Read the kernel log for the device (journalctl -k | grep ADDRESS): a firmware table that leaves it out, or an IOMMU driver that refused it.")),
        });
        return out;
    }
    if d.bridge_blocks_vfio() {
        let drv = d.driver.as_deref().unwrap_or("-");
        out.push(Reason::new("bridge-driver", Some(d.address), Severity::Info,
            trf("{device} is a PCI bridge on {driver}, a driver that does not leave DMA to VFIO: while it is bound, the kernel will not give this group to a guest. Claiming the group takes the bridge off {driver} (the bridge still forwards without a driver) and releasing it binds {driver} again; hot-plug below the bridge stops meanwhile.", &[("device", &dev), ("driver", drv)]))
            .remedy(tr("Nothing to do: Passage's claim and release handle it. Unbinding the bridge by hand works too, but then nothing binds it back.")));
        return out;
    }
    if d.is_bridge() {
        out.push(Reason::new("bridge", Some(d.address), Severity::Info,
            trf("{device} is a PCI bridge: it stays with the host on pcieport, which is fine in a shared group, and it is never given to a guest itself.", &[("device", &dev)])));
        return out;
    }
    if d.is_chipset_glue() {
        out.push(Reason::new("chipset-function", Some(d.address), Severity::Info,
            trf("{device} is part of the chipset ({class}); it stays with the host and is not given to a guest.", &[("device", &dev), ("class", &d.class_name)])));
        return out;
    }
    match d.driver.as_deref() {
        Some("vfio-pci") => out.push(Reason::new("claimed", Some(d.address), Severity::Info,
            trf("{device} is bound to vfio-pci, ready for a guest.", &[("device", &dev)]))),
        Some("pci-stub") => out.push(Reason::new("claimed", Some(d.address), Severity::Info,
            trf("{device} is held by pci-stub (no host driver touches it).", &[("device", &dev)]))),
        Some(drv) => out.push(
            Reason::new("host-driver", Some(d.address), Severity::Warning,
                trf("{device} is in use by the host driver {driver}; giving the group away unbinds it.", &[("device", &dev), ("driver", drv)]))
            .remedy(trf("Stop what uses it on the host; Passage unbinds {driver} and binds vfio-pci when you apply.", &[("driver", drv)])),
        ),
        None => {}
    }
    if let Some(o) = &d.driver_override {
        if d.driver.as_deref() != Some(o.as_str()) {
            out.push(Reason::new(
                "driver-override",
                Some(d.address),
                Severity::Info,
                trf(
                    "{device} has driver_override set to {driver}: the next probe binds it there.",
                    &[("device", &dev), ("driver", o)],
                ),
            ));
        }
    }
    if host
        .platform
        .vfio_pci_ids
        .iter()
        .any(|(v, i)| *v == d.vendor_id && *i == d.device_id)
    {
        out.push(Reason::new("claimed-by-ids", Some(d.address), Severity::Info,
            trf("{device} matches vfio-pci.ids on the kernel command line, so vfio-pci takes it at every boot; releasing it cannot give it back to a host driver until that is removed.", &[("device", &dev)])));
    }
    if let Some(r) = reset_reason(d, reset_methods(host, d).as_ref()) {
        out.push(r);
    }
    let vfs = d.virtfns.len().max(d.sriov_numvfs.unwrap_or(0) as usize);
    if vfs > 0 {
        out.push(
            Reason::new("sriov-pf", Some(d.address), Severity::Warning,
                trf("{device} is an SR-IOV physical function with {n} virtual functions enabled; unbinding it destroys them, and everything using them.", &[("device", &dev), ("n", &vfs.to_string())]))
            .remedy(
                // Behind a port that does not isolate them, the VFs share the PF's group and
                // cannot go to guests apart from it.
                if d.virtfns.iter().any(|v| host.device(*v).is_some_and(|v| v.group.is_some() && v.group == d.group)) {
                    tr("Its virtual functions are in this same group here (the port above does not isolate them: the group's shape says why), so they cannot go to guests apart from it; set sriov_numvfs to 0 before giving the group away.")
                } else {
                    tr("Give guests the virtual functions instead (each is its own group), or set sriov_numvfs to 0 first.")
                },
            ),
        );
    }
    if let Some(pf) = d.physfn {
        out.push(Reason::new("sriov-vf", Some(d.address), Severity::Info,
            trf("{device} is a virtual function of {pf}. Its reset is a reset of the physical function's bus: it can disturb the other functions of {pf}.", &[("device", &dev), ("pf", &pf.to_string())])));
    }
    for b in d.bars.iter().filter(|b| b.small) {
        out.push(
            Reason::new("small-bar", Some(d.address), Severity::Warning,
                trf("BAR {index} of {device} is {size} bytes, smaller than a page: VFIO cannot map it into the guest, so every access traps (slow), and a neighbour's registers in the same page keep it from being mapped at all.", &[("index", &b.index.to_string()), ("device", &dev), ("size", &b.size.to_string())]))
            .remedy(tr("Usually harmless for control registers. If performance suffers, boot with pci=resource_alignment=… for this device so its BAR gets a page of its own.")),
        );
    }
    let c = &d.capabilities;
    if c.intx_pin > 0 && c.express == Some(false) && c.msi == Some(false) && c.msix == Some(false) {
        out.push(
            Reason::new("intx-only", Some(d.address), Severity::Warning,
                trf("{device} is conventional PCI and can only interrupt through INTx. VFIO needs PCI 2.3 interrupt masking to share that line; without it, the line must not be shared with any other device.", &[("device", &dev)]))
            .remedy(tr("If QEMU reports that the interrupt cannot be masked, move the card so its interrupt line is not shared.")),
        );
    }
    if c.express == Some(true) && c.aer == Some(false) {
        out.push(Reason::new("no-aer", Some(d.address), Severity::Info,
            trf("{device} has no Advanced Error Reporting: a hardware error in the guest's device cannot be reported to the guest, only noticed when things go wrong.", &[("device", &dev)])));
    }
    if d.boot_vga == Some(true)
        && !host
            .uses_of(d.address)
            .iter()
            .any(|u| matches!(u, Use::Console { .. }))
    {
        out.push(
            Reason::new("boot-vga", Some(d.address), Severity::Info,
                trf("{device} is the GPU the firmware booted with; its ROM may have been altered during boot.", &[("device", &dev)]))
            .remedy(tr("If the guest shows no picture, give it a clean copy of the card's ROM (rom file=…), or make another GPU primary in the firmware setup.")),
        );
    }
    out
}

/// Why the kernel put these devices together, from the same facts the kernel uses. Never
/// changes the group; where our reading cannot explain a link, says "kernel quirk".
pub fn shape_reasons(host: &Host, g: &Group) -> Vec<Reason> {
    let members: Vec<&Device> = host.members(g).collect();
    if members.len() < 2 {
        return Vec::new();
    }
    let in_group: BTreeSet<PciAddress> = members.iter().map(|d| d.address).collect();
    let mut out = Vec::new();
    // Union-find over members: each explanation links members; what stays apart is unexplained.
    let mut parent: BTreeMap<PciAddress, PciAddress> = in_group.iter().map(|a| (*a, *a)).collect();
    fn find(p: &mut BTreeMap<PciAddress, PciAddress>, a: PciAddress) -> PciAddress {
        let mut x = a;
        while let Some(&px) = p.get(&x) {
            if px == x {
                break;
            }
            x = px;
        }
        p.insert(a, x);
        x
    }
    let union = |p: &mut BTreeMap<PciAddress, PciAddress>, a: PciAddress, b: PciAddress| {
        let (ra, rb) = (find(p, a), find(p, b));
        if ra != rb {
            p.insert(ra, rb);
        }
    };

    // 0. POWER: the platform, not PCI's rules, decides. Its firmware hands the kernel one DMA
    // window per partitionable endpoint (PE) and the kernel makes one group of each; a PE's
    // devices also share its error containment (EEH).
    if host.platform.arch.as_deref() == Some("powerpc") {
        let domains: BTreeSet<String> = in_group
            .iter()
            .map(|a| format!("{:04x}", a.domain))
            .collect();
        let list: Vec<String> = in_group.iter().map(|a| a.to_string()).collect();
        out.push(Reason::new("shape-pe", None, Severity::Info,
            trf("On POWER the unit of isolation is the partitionable endpoint (PE): the platform gives each PE a DMA window of its own, the kernel makes one group of each, and errors are contained per PE (EEH). {devices} are one PE, under the PCI host bridge of domain {domains}.", &[("devices", &list.join(", ")), ("domains", &domains.into_iter().collect::<Vec<_>>().join(", "))]))
            .remedy(tr("To give one of them away alone it needs a PE of its own: a slot or PCI host bridge assigned on its own (PowerVM, KVM pseries), or a host bridge that makes a PE per device (bare metal).")));
        if let Some(first) = in_group.first() {
            for a in &in_group {
                union(&mut parent, *first, *a);
            }
        }
    }

    // 1. Bridges in the group and the members below them.
    for b in members.iter().filter(|d| d.is_bridge()) {
        let below: Vec<&&Device> = members
            .iter()
            .filter(|d| d.bridges.contains(&b.address))
            .collect();
        if below.is_empty() {
            continue;
        }
        for d in &below {
            union(&mut parent, b.address, d.address);
        }
        let names: Vec<String> = below.iter().map(|d| d.address.to_string()).collect();
        let conventional = b.is_conventional_bridge();
        let bname = name(b);
        let list = names.join(", ");
        if conventional {
            out.push(Reason::new("shape-pci-bridge", Some(b.address), Severity::Info,
                trf("{bridge} is a bridge to conventional PCI. Devices behind it ({devices}) reach memory under the bridge's own requester id, so the IOMMU cannot tell them apart: they form one group with the bridge.", &[("bridge", &bname), ("devices", &list)]))
                .remedy(tr("This is how the hardware works. To give one of them away alone, it needs a PCIe slot of its own.")));
            continue;
        }
        let (code, msg) = match b.capabilities.acs {
            Some(Some(a)) if a.isolates() => ("shape-kernel-quirk",
                trf("{bridge} has ACS enabled, yet the kernel groups it with {devices}: a kernel quirk or the platform decided this, not the port.", &[("bridge", &bname), ("devices", &list)])),
            // The port can isolate, but nobody turned it on: the kernel enables ACS on a port
            // when it finds it, and only if an IOMMU driver asked for isolation by then.
            Some(Some(a)) if a.capability & crate::config::ACS_REQUIRED == crate::config::ACS_REQUIRED && a.control == 0 => ("shape-acs-off",
                trf("{bridge} has ACS, but it is turned off, so the kernel cannot rule out peer-to-peer traffic there: it keeps {devices} in the port's group. The kernel turns ACS on for a port when it finds it, and only if an IOMMU driver has asked for isolation by then; here the request came after the ports were found (seen on ARM machines booted with a device tree).", &[("bridge", &bname), ("devices", &list)])),
            Some(_) => ("shape-no-acs",
                trf("{bridge} does not isolate what is below it (no ACS, or ACS not enabled), so the kernel cannot rule out peer-to-peer traffic there: it keeps {devices} in the port's group.", &[("bridge", &bname), ("devices", &list)])),
            None => ("shape-no-acs",
                trf("{bridge} apparently does not isolate what is below it (its ACS capability cannot be read without root), so the kernel keeps {devices} in the port's group.", &[("bridge", &bname), ("devices", &list)])),
        };
        let remedy = match code {
            "shape-acs-off" => tr("A kernel that turns ACS on before it finds the ports (or firmware that boots it with ACPI tables) splits the group; pcie_acs_override only pretends to."),
            _ => tr("Use a slot behind a port with ACS (CPU-attached slots usually have it). pcie_acs_override only pretends to split the group."),
        };
        out.push(Reason::new(code, Some(b.address), Severity::Info, msg).remedy(remedy));
    }

    // 2. Several functions of one card. Virtual functions share a slot number without being a
    // multi-function card: what groups them is the PF's port (above) or the kernel.
    let mut slots: BTreeMap<PciAddress, Vec<&Device>> = BTreeMap::new();
    for d in members.iter().filter(|d| d.physfn.is_none()) {
        slots.entry(d.address.function0()).or_default().push(d);
    }
    for (slot, fns) in &slots {
        if fns.len() < 2 {
            continue;
        }
        for f in fns.iter().skip(1) {
            union(&mut parent, fns[0].address, f.address);
        }
        let list: Vec<String> = fns.iter().map(|d| d.address.to_string()).collect();
        let acs: Vec<_> = fns.iter().map(|d| d.capabilities.acs).collect();
        let msg = if acs
            .iter()
            .all(|a| matches!(a, Some(Some(x)) if x.isolates()))
        {
            trf("The functions of the card at {slot} ({functions}) have ACS, yet the kernel keeps them together (a kernel quirk or a shared DMA alias).", &[("slot", &slot.to_string()), ("functions", &list.join(", "))])
        } else if acs.iter().any(|a| a.is_none()) {
            trf("{functions} are functions of one card. Unless a card has ACS, its functions may talk to each other inside it, so the kernel keeps them together (ACS cannot be read without root here).", &[("functions", &list.join(", "))])
        } else {
            trf("{functions} are functions of one card without ACS: they may talk to each other inside the card, so the kernel keeps them together.", &[("functions", &list.join(", "))])
        };
        out.push(
            Reason::new("shape-multifunction", Some(*slot), Severity::Info, msg).remedy(tr(
                "Give the whole card to one guest; hide the functions the guest should not see.",
            )),
        );
    }

    // 3. Devices behind one conventional bridge that is not itself in the group.
    let mut behind: BTreeMap<PciAddress, Vec<PciAddress>> = BTreeMap::new();
    for d in &members {
        for b in &d.bridges {
            if let Some(bd) = host.device(*b) {
                if bd.pcie_type == Some(PortType::PcieToPciBridge) && !in_group.contains(b) {
                    behind.entry(*b).or_default().push(d.address);
                }
            }
        }
    }
    for ds in behind.values() {
        for d in ds.iter().skip(1) {
            union(&mut parent, ds[0], *d);
        }
    }

    // 4. Whatever stays apart: the kernel knows something our reading does not.
    let roots: BTreeSet<PciAddress> = in_group.iter().map(|a| find(&mut parent, *a)).collect();
    if roots.len() > 1 {
        let mut parts: BTreeMap<PciAddress, Vec<String>> = BTreeMap::new();
        for a in &in_group {
            let r = find(&mut parent, *a);
            parts.entry(r).or_default().push(a.to_string());
        }
        let list: Vec<String> = parts.values().map(|v| v.join(" + ")).collect();
        out.push(Reason::new("shape-kernel-quirk", None, Severity::Info,
            trf("The kernel also joins {parts} into this group for a reason that does not show in their configuration space: a DMA-alias quirk, a missing ACS on a port above them, or how the platform's IOMMU describes them.", &[("parts", &list.join("; "))]))
            .remedy(tr("Nothing to do in software that keeps isolation real; another slot may give a smaller group.")));
    }
    out
}

/// The verdict for one group.
pub fn group(host: &Host, g: &Group) -> GroupVerdict {
    let members: Vec<&Device> = host.members(g).collect();
    let mut reasons = Vec::new();
    for d in &members {
        reasons.extend(device_reasons(host, d));
    }
    let endpoints: Vec<&Device> = members
        .iter()
        .copied()
        .filter(|d| d.is_for_a_guest())
        .collect();
    let assignable = !endpoints.is_empty();
    // A function that shares the group's DMA stream goes off its driver with the group: what
    // the host needs of it counts as much as a member's.
    let sharers = host.stream_sharers(g);
    let critical = members
        .iter()
        .chain(sharers.iter())
        .any(|d| host.uses_of(d.address).iter().any(Use::is_critical));
    for s in &sharers {
        for u in host.uses_of(s.address) {
            reasons.push(use_reason(s, u));
        }
    }
    // Chipset glue with a driver (k10temp on AMD's data fabric) is the host's either way and
    // never given away, so it does not make a group "in use".
    let on_host: Vec<&Device> = endpoints
        .iter()
        .copied()
        .filter(|d| !d.driver_is_harmless())
        .collect();
    let claimed: Vec<&Device> = endpoints
        .iter()
        .copied()
        .filter(|d| matches!(d.driver.as_deref(), Some("vfio-pci") | Some("pci-stub")))
        .collect();
    // A function sharing the group's stream goes off its driver with the group: in use too.
    let busy_use = members.iter().any(|d| !host.uses_of(d.address).is_empty())
        || sharers
            .iter()
            .any(|d| !host.uses_of(d.address).is_empty() || !d.driver_is_harmless());

    if endpoints.len() > 1 && !on_host.is_empty() {
        let list: Vec<String> = on_host
            .iter()
            .map(|d| format!("{} ({})", name(d), d.driver.as_deref().unwrap_or("-")))
            .collect();
        reasons.push(
            Reason::new("shares-group", None, Severity::Warning,
                trf("Giving this group to a guest takes {n} devices from the host: {devices}.", &[("n", &on_host.len().to_string()), ("devices", &list.join("; "))]))
            .remedy(tr("Hide the devices the guest should not see (they stay claimed, so the host cannot use them either), or move the card you want to a slot in a smaller group.")),
        );
    }
    if !sharers.is_empty() {
        let list: Vec<String> = sharers
            .iter()
            .map(|d| format!("{} ({})", name(d), d.driver.as_deref().unwrap_or("-")))
            .collect();
        reasons.push(
            Reason::new("shares-stream", sharers.first().map(|d| d.address), Severity::Warning,
                trf("{devices} sit behind this group's bridge to conventional PCI but are in no IOMMU group: the IOMMU driver refused them, because the bridge issues their DMA under the same requester ID as this group's devices (the ARM SMMUv3 driver takes one device per stream ID). Their DMA goes through this group's IOMMU domain, so giving the group to a guest takes it with them: claiming unbinds their drivers, releasing binds them again.", &[("devices", &list.join("; "))]))
            .remedy(tr("Move the card that should stay with the host to a PCIe slot of its own, or accept that it is off while the group is given away.")),
        );
    }
    if !claimed.is_empty() && !on_host.is_empty() {
        let blockers: Vec<String> = on_host
            .iter()
            .map(|d| format!("{} ({})", name(d), d.driver.as_deref().unwrap_or("-")))
            .collect();
        reasons.push(
            Reason::new("partly-claimed", on_host.first().map(|d| d.address), Severity::Blocker,
                trf("Only part of this group is on vfio-pci. QEMU will refuse it (“group is not viable”) until every member is released by the host; still held: {devices}.", &[("devices", &blockers.join("; "))]))
            .remedy(tr("Claim the whole group with Passage (it binds every member together), or release it back to the host.")),
        );
    }
    let unreadable: Vec<String> = members
        .iter()
        .filter(|d| d.config_bytes > 0 && d.config_bytes <= crate::config::HEADER_LEN)
        .map(|d| d.address.to_string())
        .collect();
    if !unreadable.is_empty() {
        reasons.push(
            Reason::new("config-unreadable", None, Severity::Info,
                trf("Only the first 64 bytes of configuration space are readable without root ({devices}), so ACS, reset and error-reporting capabilities are unknown here.", &[("devices", &unreadable.join(", "))]))
            .remedy(tr("Run as root, or let the Passage helper read them (it reports parsed facts, never raw bytes).")),
        );
    }
    if !assignable {
        reasons.push(Reason::new("nothing-to-assign", None, Severity::Info,
            tr("This group holds only bridges and chipset functions; there is nothing in it to give a guest.")));
    }
    // DMA and DMA-FQ are the normal case (the JSON carries the type anyway); the others
    // change what the group is doing right now, so they get a sentence.
    if let Some(kind) = g
        .kind
        .as_ref()
        .filter(|k| !matches!(k.as_str(), "DMA" | "DMA-FQ"))
    {
        let msg = match kind.as_str() {
            "identity" => tr("The group's IOMMU domain type is identity (passthrough): host DMA is not translated. VFIO moves the group to a DMA domain of its own when a guest takes it."),
            "blocked" => tr("The group's IOMMU domain type is blocked: no DMA is allowed until a driver sets it up."),
            "unmanaged" => tr("The group's IOMMU domain is unmanaged: a user-space driver (VFIO) controls it right now."),
            _ => trf("The group's IOMMU domain type is {type}: host DMA is translated and checked.", &[("type", kind)]),
        };
        reasons.push(Reason::new("group-type", None, Severity::Info, msg));
    }
    if !g.other_members.is_empty() {
        reasons.push(Reason::new("non-pci-members", None, Severity::Warning,
            trf("The group also holds devices that are not PCI functions ({members}): platform devices the IOMMU cannot tell apart from this group's PCI functions (on ARM, a controller of the chip behind the same SMMU stream). They go with the group: while one of them is bound to a host driver, the kernel will not give the group to a guest.", &[("members", &g.other_members.join(", "))]))
            .remedy(tr("Unbind the platform devices' drivers (or bind them to vfio-platform) before claiming the group; if the host needs them, the group cannot be given away.")));
    }
    reasons.extend(shape_reasons(host, g));

    let state = if critical {
        State::HostCritical
    } else if assignable && on_host.is_empty() && !claimed.is_empty() {
        State::Assigned
    } else if !on_host.is_empty() || busy_use {
        State::InUse
    } else {
        State::Available
    };
    GroupVerdict {
        id: g.id,
        title: title(host, g),
        devices: g.devices.clone(),
        state,
        kind: g.kind.clone(),
        assignable,
        reasons,
    }
}

/// Every group's verdict, in group order.
pub fn groups(host: &Host) -> Vec<GroupVerdict> {
    use rayon::prelude::*;
    let gs: Vec<&Group> = host.groups.values().collect();
    gs.par_iter().map(|g| group(host, g)).collect()
}
