//! The readiness doctor (`core::doctor`, `passagectl doctor`) on recorded machines with the
//! facts it reads written beside them: the firmware's IOMMU tables (off in the firmware vs not
//! turned on by the kernel), how the kernel has vfio-pci, iommufd, GPUs with the AMD reset bug
//! and vendor-reset, bus-only resets; the exit status; a recording that answers the same.

mod common;

use common::{build, load, passagectl};
use passage_core::doctor::{self, VfioPci};
use passage_core::explain::{self, Severity};
use passage_core::synth::{MachineSpec, VmSpec};
use passage_core::{demo, HostRoot, PciAddress};
use serde_json::Value;

fn codes(spec: &MachineSpec) -> (doctor::Report, Vec<String>) {
    let b = build(spec);
    let facts = doctor::read(&b.root(), &b.host);
    let r = doctor::examine(&b.host, &facts);
    let codes = r.findings.iter().map(|f| f.reason.code.clone()).collect();
    (r, codes)
}

fn off(name: &str, tables: &[&str]) -> MachineSpec {
    let mut spec = load(name);
    spec.host.iommu = Some("off".into());
    spec.kernel_cmdline = Some("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into());
    spec.host.acpi_tables = Some(tables.iter().map(|t| t.to_string()).collect());
    spec
}

#[test]
fn the_firmware_tables_tell_off_in_the_firmware_from_not_turned_on() {
    // Intel, no DMAR table: VT-d is off in the firmware; intel_iommu=on alone cannot help.
    let b = build(&off("msi-z370i-i5-8400-gtx1070", &["DSDT", "FACP", "APIC"]));
    assert_eq!(b.host.platform.firmware_iommu_tables, Some(vec![]));
    let r = &explain::iommu(&b.host).reasons[0];
    assert_eq!(r.code, "iommu-off-firmware");
    let remedy = r.remedy.as_deref().unwrap();
    assert!(
        remedy.contains("VT-d") && remedy.contains("cannot help"),
        "{remedy}"
    );

    // Intel with DMAR: the firmware has it, the kernel was not asked.
    let b = build(&off("msi-z370i-i5-8400-gtx1070", &["DSDT", "DMAR"]));
    let r = &explain::iommu(&b.host).reasons[0];
    assert_eq!(r.code, "iommu-not-enabled");
    assert!(r.remedy.as_deref().unwrap().contains("intel_iommu=on"));

    // AMD with IVRS but no groups: something on the command line or in the kernel.
    let b = build(&off("asus-tuf-b550m-plus-5800x", &["IVRS", "DSDT"]));
    let r = &explain::iommu(&b.host).reasons[0];
    assert_eq!(r.code, "iommu-not-enabled");
    assert!(r.message.contains("IVRS"), "{}", r.message);
    // AMD without IVRS: the firmware setup.
    let b = build(&off("asus-tuf-b550m-plus-5800x", &["DSDT"]));
    let r = &explain::iommu(&b.host).reasons[0];
    assert_eq!(r.code, "iommu-off-firmware");
    assert!(r.remedy.as_deref().unwrap().contains("SVM"));

    // A virtual machine without a virtual IOMMU has no DMAR either: the hypervisor's remedy wins.
    let mut spec = off("msi-z370i-i5-8400-gtx1070", &["DSDT"]);
    spec.host.vm = Some(VmSpec {
        sys_vendor: "QEMU".into(),
        product_name: "Standard PC (Q35 + ICH9, 2009)".into(),
    });
    let b = build(&spec);
    assert_eq!(explain::iommu(&b.host).reasons[0].code, "iommu-off-vm");

    // An AMD virtual machine with QEMU's intel-iommu: the DMAR table is Intel's whatever the CPU.
    let mut spec = off("asus-tuf-b550m-plus-5800x", &["DSDT", "DMAR"]);
    spec.host.vm = Some(VmSpec {
        sys_vendor: "QEMU".into(),
        product_name: "Standard PC (Q35 + ICH9, 2009)".into(),
    });
    let b = build(&spec);
    assert_eq!(explain::iommu(&b.host).reasons[0].code, "iommu-not-enabled");
    // intel_iommu=on already there: the kernel failed to start it, the log says why.
    let mut spec = off("msi-z370i-i5-8400-gtx1070", &["DSDT", "DMAR"]);
    spec.kernel_cmdline = Some("root=/dev/sda1 ro intel_iommu=on".into());
    let r = &explain::iommu(&build(&spec).host).reasons[0];
    assert!(
        r.remedy.as_deref().unwrap().contains("journalctl -k"),
        "{r:?}"
    );
    // A second table of a kind is listed by number (DMAR2); a listing that is not a
    // firmware's (no DSDT or FACP) says nothing.
    let b = build(&off("msi-z370i-i5-8400-gtx1070", &["FACP", "DMAR2"]));
    assert_eq!(
        b.host.platform.firmware_iommu_tables,
        Some(vec!["DMAR".to_string()])
    );
    let b = build(&off("msi-z370i-i5-8400-gtx1070", &["SSDT1"]));
    assert_eq!(b.host.platform.firmware_iommu_tables, None);

    // Without the table directory (older recordings, no ACPI) the answer is as before.
    let mut spec = off("msi-z370i-i5-8400-gtx1070", &[]);
    spec.host.acpi_tables = None;
    let b = build(&spec);
    assert_eq!(b.host.platform.firmware_iommu_tables, None);
    assert_eq!(explain::iommu(&b.host).reasons[0].code, "iommu-off");
}

#[test]
fn how_the_kernel_has_vfio_pci_and_iommufd() {
    let base = || {
        let mut s = load("msi-z370i-i5-8400-gtx1070");
        s.host.kernel_release = Some("6.1.0-28-amd64".into());
        s
    };
    let with = |v: &str| {
        let mut s = base();
        s.host.vfio_pci = Some(v.into());
        s
    };
    let (r, c) = codes(&with("builtin"));
    assert_eq!(r.facts.vfio_pci, Some(VfioPci::Builtin));
    assert_eq!(r.facts.kernel_release.as_deref(), Some("6.1.0-28-amd64"));
    assert!(c.contains(&"vfio-pci-builtin".to_string()), "{c:?}");
    let (r, c) = codes(&with("module"));
    assert_eq!(r.facts.vfio_pci, Some(VfioPci::Module));
    assert!(c.contains(&"vfio-pci-module".to_string()), "{c:?}");
    let (r, _) = codes(&with("loaded"));
    assert_eq!(r.facts.vfio_pci, Some(VfioPci::Loaded));
    let (r, c) = codes(&with("missing"));
    assert_eq!(r.facts.vfio_pci, Some(VfioPci::Missing));
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.code == "vfio-pci-missing")
        .unwrap();
    assert_eq!(f.reason.severity, Severity::Blocker);
    assert!(f.reason.message.contains("6.1.0-28-amd64"), "{c:?}");
    // Nothing known (no module directory in the root): nothing said.
    let (r, c) = codes(&load("msi-z370i-i5-8400-gtx1070"));
    assert_eq!(r.facts.vfio_pci, None);
    assert!(!c.iter().any(|c| c.starts_with("vfio-pci")), "{c:?}");

    // vfio-pci.ids with vfio-pci as a module: the ids lost the race where the GPU is on its own
    // driver, not where it is on vfio-pci.
    let ids = |s: &mut MachineSpec, driver: &str| {
        s.kernel_cmdline = Some("root=/dev/sda1 intel_iommu=on vfio-pci.ids=10de:1b81".into());
        s.devices
            .iter_mut()
            .find(|d| d.bdf == "0000:01:00.0")
            .unwrap()
            .driver = Some(driver.into());
    };
    let mut s = with("module");
    ids(&mut s, "nouveau");
    let (r, c) = codes(&s);
    assert!(c.contains(&"vfio-pci-ids-late".to_string()), "{c:?}");
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.code == "vfio-pci-ids-late")
        .unwrap();
    assert!(f.reason.message.contains("0000:01:00.0") && f.reason.message.contains("nouveau"));
    let mut s = with("loaded");
    ids(&mut s, "vfio-pci");
    let (_, c) = codes(&s);
    assert!(!c.contains(&"vfio-pci-ids-late".to_string()), "{c:?}");
    let mut s = with("builtin");
    ids(&mut s, "nouveau");
    let (_, c) = codes(&s);
    assert!(!c.contains(&"vfio-pci-ids-late".to_string()), "{c:?}");

    // iommufd with the per-device files, without them, and not yet known.
    for (cdev, says) in [
        (Some(true), "can use them"),
        (Some(false), "CONFIG_VFIO_DEVICE_CDEV"),
        (None, "shows once a device is on vfio-pci"),
    ] {
        let mut s = with("loaded");
        s.host.iommufd = true;
        s.host.vfio_cdev = cdev;
        let (r, _) = codes(&s);
        assert!(r.facts.iommufd);
        assert_eq!(r.facts.vfio_cdev, cdev);
        let f = r
            .findings
            .iter()
            .find(|f| f.reason.code == "iommufd")
            .unwrap();
        assert!(
            f.reason.message.contains(says),
            "{cdev:?}: {}",
            f.reason.message
        );
    }
}

#[test]
fn gpus_with_the_amd_reset_bug_and_bus_only_resets() {
    let spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    let (r, _) = codes(&spec);
    let polaris: PciAddress = "0000:04:00.0".parse().unwrap();
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.device == Some(polaris))
        .unwrap();
    assert_eq!(f.reason.code, "reset-bug");
    assert_eq!(f.reason.severity, Severity::Warning);
    assert!(
        f.reason.message.contains("Polaris 12"),
        "{}",
        f.reason.message
    );
    // With vendor-reset loaded but the device's reset methods only "bus", the kernel never asks
    // it; with device_specific among them it is covered.
    let mut s = spec.clone();
    s.host.vendor_reset = true;
    let (r, _) = codes(&s);
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.device == Some(polaris) && f.reason.code == "reset-bug-not-used"));
    s.devices
        .iter_mut()
        .find(|d| d.bdf == "0000:04:00.0")
        .unwrap()
        .reset_method = Some("device_specific bus".into());
    let (r, _) = codes(&s);
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.device == Some(polaris) && f.reason.code == "reset-bug-covered"));
    // The GPU alone on its bus: a bus reset works (a note, not a warning).
    let gpu: PciAddress = "0000:0b:00.0".parse().unwrap();
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.device == Some(gpu))
        .unwrap();
    assert_eq!(
        (f.reason.code.as_str(), f.reason.severity),
        ("reset-bus-only", Severity::Info)
    );
    // Another card on the same bus: the bus reset cannot be used.
    let mut host = build(&spec).host;
    let mut other = host.devices[&gpu].clone();
    other.address = "0000:0b:01.0".parse().unwrap();
    host.devices.insert(other.address, other);
    let r = doctor::examine(&host, &doctor::Facts::default());
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.device == Some(gpu))
        .unwrap();
    assert_eq!(f.reason.severity, Severity::Warning);
    assert!(
        f.reason.message.contains("0000:0b:01.0"),
        "{}",
        f.reason.message
    );
    // The chipset's own functions (SMBus, the IOMMU device) are not the doctor's business.
    assert!(!r
        .findings
        .iter()
        .any(|f| f.reason.device == Some("0000:00:14.0".parse().unwrap())));
    // Known ids only: Navi 21 (73bf) is not on the list, nor 67d1 between two Polaris 10 ids,
    // nor another vendor's device with a listed number.
    use passage_core::model::Hex16;
    for (v, d) in [(0x1002, 0x73bf), (0x1002, 0x67d1), (0x10de, 0x67df)] {
        assert_eq!(
            doctor::amd_reset_bug(Hex16(v), Hex16(d)),
            None,
            "{v:04x}:{d:04x}"
        );
    }
    assert_eq!(
        doctor::amd_reset_bug(Hex16(0x1002), Hex16(0x67df)),
        Some("Polaris 10")
    );
    assert_eq!(
        doctor::amd_reset_bug(Hex16(0x1002), Hex16(0x1681)),
        Some("Navi 10")
    );
}

/// `verify` takes the ways QEMU takes: the group file, and iommufd with the devices' own files
/// too where the kernel has them for every member on vfio-pci (alone where it has no group
/// files). (The ioctls themselves need a
/// kernel with CONFIG_IOMMUFD, which no Debian kernel the VM bed can boot has — docs/TESTING.md;
/// here a recorded tree's `dev/iommu` is a plain file, and the answer names the step.)
#[test]
fn verify_goes_through_iommufd_where_the_host_has_it() {
    use passage_core::vfio::{self, Interface};
    let mut spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    spec.host.iommufd = true;
    let b = build(&spec);
    let root = b.root();
    let usb: PciAddress = "0000:0c:00.0".parse().unwrap();
    let d = &b.host.devices[&usb];
    assert_eq!(d.driver.as_deref(), Some("vfio-pci"));
    let g = d.group.unwrap();
    let dev = root.path().join("dev");
    // No device file yet: the group file.
    assert_eq!(
        vfio::interface_for(&b.host, g, root.path(), &dev),
        Interface::Group
    );
    let files = root.path().join(&d.sysfs_path).join("vfio-dev");
    std::fs::create_dir_all(files.join("vfio3")).unwrap();
    assert_eq!(vfio::device_file(root.path(), d).as_deref(), Some("vfio3"));
    assert_eq!(
        vfio::interface_for(&b.host, g, root.path(), &dev),
        Interface::Iommufd
    );
    // The group file first (what libvirt and QEMU's default take): here the tree has no
    // container to open, and the answer names it.
    let node = dev.join(format!("vfio/{g}"));
    assert!(node.exists());
    let err = vfio::verify(&b.host, g, &dev, &root.path().join("proc")).unwrap_err();
    assert!(err.to_string().contains("/dev/vfio/vfio"), "{err}");
    // A kernel without the group files (CONFIG_VFIO_GROUP=n): iommufd alone.
    std::fs::remove_file(&node).unwrap();
    let err = vfio::verify(&b.host, g, &dev, &root.path().join("proc")).unwrap_err();
    assert!(err.to_string().contains("IOMMU_IOAS_ALLOC"), "{err}");
    // Odd names are no device files; without /dev/iommu, the group file.
    std::fs::remove_dir(files.join("vfio3")).unwrap();
    std::fs::create_dir_all(files.join("vfiox")).unwrap();
    assert_eq!(vfio::device_file(root.path(), d), None);
    std::fs::create_dir_all(files.join("vfio3")).unwrap();
    std::fs::remove_file(dev.join("iommu")).unwrap();
    assert_eq!(
        vfio::interface_for(&b.host, g, root.path(), &dev),
        Interface::Group
    );
    // A group with nothing on vfio-pci: the group file (verify says it is not bound).
    let gpu_group = b.host.devices[&"0000:0b:00.0".parse().unwrap()]
        .group
        .unwrap();
    std::fs::write(dev.join("iommu"), "").unwrap();
    assert_eq!(
        vfio::interface_for(&b.host, gpu_group, root.path(), &dev),
        Interface::Group
    );
}

/// Kernels before 5.15 have no `reset_method` file: what they would use is worked out from
/// config space, the bus and that kernel's quirk lists, as `__pci_reset_function_locked` tries.
#[test]
fn resets_on_kernels_before_5_15_are_modelled_as_the_kernel_would_try_them() {
    let mut spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    spec.host.kernel_release = Some("5.10.0-20-amd64".into());
    for d in spec.devices.iter_mut() {
        d.reset_method = None;
        d.has_reset = None;
    }
    let config =
        |spec: &mut MachineSpec, bdf: &str, f: &dyn Fn(&mut passage_core::config::ConfigSpec)| {
            let d = spec.devices.iter_mut().find(|d| d.bdf == bdf).unwrap();
            f(d.config.as_mut().unwrap());
        };
    // The NVIDIA GPU: no FLR, its PM capability says No_Soft_Reset, and its audio function
    // shares the bus, so not even a bus reset: nothing.
    config(&mut spec, "0000:0b:00.0", &|c| c.pm_no_soft_reset = true);
    // AMD's Matisse USB controller advertises FLR, which the kernel's quirk skips (it hangs).
    config(&mut spec, "0000:0e:00.3", &|c| c.flr = true);
    // An NVMe drive with FLR.
    config(&mut spec, "0000:05:00.0", &|c| c.flr = true);
    let b = build(&spec);
    let facts = doctor::read(&b.root(), &b.host);
    let r = doctor::examine(&b.host, &facts);
    let modelled = |bdf: &str| -> Vec<String> {
        let a: PciAddress = bdf.parse().unwrap();
        explain::reset_methods(&b.host, &b.host.devices[&a])
            .filter(|r| r.modelled)
            .unwrap_or_else(|| panic!("{bdf}: no model"))
            .methods
    };
    let finding = |bdf: &str, code: &str| {
        let a: PciAddress = bdf.parse().unwrap();
        r.findings
            .iter()
            .find(|f| f.reason.device == Some(a) && f.reason.code == code)
            .map(|f| f.reason.clone())
    };
    assert_eq!(modelled("0000:0b:00.0"), Vec::<String>::new());
    let none = finding("0000:0b:00.0", "no-reset").expect("no reset for the NVIDIA GPU");
    assert_eq!(none.severity, Severity::Warning);
    let said = finding("0000:0b:00.0", "reset-modelled").unwrap();
    assert!(
        said.message.contains("5.10.0-20-amd64") && said.message.contains("5.15"),
        "{}",
        said.message
    );
    // The RTL8125 is alone on bus 07 behind its switch port: PM, then the bus.
    assert_eq!(modelled("0000:07:00.0"), ["pm", "bus"]);
    assert!(finding("0000:07:00.0", "no-reset").is_none());
    assert!(finding("0000:07:00.0", "reset-modelled")
        .unwrap()
        .message
        .contains("pm, bus"));
    // The Polaris GPU: AMD VGA devices never get the PM reset (quirk_no_pm_reset), and its
    // audio function shares the bus: nothing; its reset-bug finding stays, without telling
    // to set a reset_method file this kernel does not have.
    assert_eq!(modelled("0000:04:00.0"), Vec::<String>::new());
    let bug = finding("0000:04:00.0", "reset-bug").unwrap();
    let remedy = bug.remedy.unwrap();
    assert!(
        remedy.contains("vendor-reset") && !remedy.contains("reset_method"),
        "{remedy}"
    );
    assert_eq!(modelled("0000:0e:00.3"), ["pm"]);
    assert_eq!(modelled("0000:05:00.0")[0], "flr");
    // Root ports and the chipset are not the doctor's business.
    assert!(finding("0000:00:01.1", "reset-modelled").is_none());

    // The same devices on 6.1, where a missing file means no method at all: nothing modelled,
    // and the RTL8125 has no reset.
    spec.host.kernel_release = Some("6.1.0-28-amd64".into());
    let (r, said) = codes(&spec);
    assert!(!said.iter().any(|c| c == "reset-modelled"), "{said:?}");
    let rtl: PciAddress = "0000:07:00.0".parse().unwrap();
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.device == Some(rtl) && f.reason.code == "no-reset"));

    // A 5.14 kernel with reset_method backported (as enterprise kernels have it): one device
    // with the file says the kernel has the attribute, so the others have none, as on 6.1.
    spec.host.kernel_release = Some("5.14.0-70.el9.x86_64".into());
    spec.devices
        .iter_mut()
        .find(|d| d.bdf == "0000:05:00.0")
        .unwrap()
        .reset_method = Some("flr".into());
    let (r, said) = codes(&spec);
    assert!(!said.iter().any(|c| c == "reset-modelled"), "{said:?}");
    assert!(r
        .findings
        .iter()
        .any(|f| f.reason.device == Some(rtl) && f.reason.code == "no-reset"));

    // `explain` (which does not know the kernel) uses the model where the file is missing.
    let b = build(&spec);
    let reasons =
        explain::device_reasons(&b.host, &b.host.devices[&"0000:0b:00.0".parse().unwrap()]);
    assert!(reasons.iter().any(|r| r.code == "no-reset"));
    let reasons = explain::device_reasons(&b.host, &b.host.devices[&rtl]);
    assert!(!reasons.iter().any(|r| r.code == "no-reset"));
}

#[test]
fn passagectl_doctor_says_it_in_words_and_json_and_exits_1_on_a_blocker() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = off("msi-z370i-i5-8400-gtx1070", &["DSDT"]);
    spec.host.kernel_release = Some("6.1.0-28-amd64".into());
    spec.host.vfio_pci = Some("module".into());
    let tree = dir.path().join("off");
    spec.write_tree(&tree).unwrap();
    let o = passagectl()
        .arg("--root")
        .arg(&tree)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("[blocker]") && text.contains("(iommu-off-firmware)"),
        "{text}"
    );
    assert!(text.contains("Blockers above: 1."), "{text}");
    let o = passagectl()
        .arg("--root")
        .arg(&tree)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["facts"]["vfio_pci"], "module");
    assert_eq!(v["facts"]["kernel_release"], "6.1.0-28-amd64");
    assert_eq!(v["findings"][0]["topic"], "iommu");
    assert_eq!(v["findings"][0]["code"], "iommu-off-firmware");
    assert_eq!(v["findings"][0]["severity"], "blocker");

    // The demo: nothing blocks.
    let o = passagectl().args(["--demo", "doctor"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Nothing blocks pass-through"));

    // A recording answers as the host did.
    let mut spec = load("asus-tuf-b550m-plus-5800x");
    spec.host.acpi_tables = Some(vec!["IVRS".into(), "DSDT".into()]);
    spec.host.kernel_release = Some("6.12.9-amd64".into());
    spec.host.vfio_pci = Some("builtin".into());
    spec.host.iommufd = true;
    spec.host.vfio_cdev = Some(true);
    spec.host.vendor_reset = true;
    spec.host.iomem =
        Some("00100000-3fffffff : System RAM\n  01000000-01ffffff : Kernel code\n".into());
    let gpu = spec
        .devices
        .iter_mut()
        .find(|d| d.class.starts_with("03"))
        .expect("the machine has a GPU");
    gpu.d3cold_allowed = Some(true);
    gpu.resizable_bars = vec![(0, "ff00".into())];
    let tree = dir.path().join("on");
    spec.write_tree(&tree).unwrap();
    // /dev/iommu as the kernel has it: a character device that refuses reads.
    let node = tree.join("dev/iommu");
    std::fs::remove_file(&node).unwrap();
    let o = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "10", "123"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mknod needs root: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rec = dir.path().join("rec");
    let o = passagectl()
        .arg("--root")
        .arg(&tree)
        .arg("record")
        .arg(&rec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = |root: &std::path::Path| {
        let o = passagectl()
            .arg("--root")
            .arg(root)
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["findings"].is_array());
        v
    };
    assert_eq!(doc(&tree), doc(&rec));
    let rec_root = HostRoot::open(&rec).unwrap();
    let facts = doctor::read(&rec_root, &passage_core::scan::scan(&rec_root).unwrap());
    assert_eq!(facts.vfio_pci, Some(VfioPci::Builtin));
    assert!(facts.iommufd && facts.vendor_reset);
    assert!(facts
        .devices
        .values()
        .any(|f| f.d3cold_allowed == Some(true) && f.resizable_bars.len() == 1));
    assert_eq!(facts.vfio_cdev, Some(true));
    // The recording keeps proc/iomem's framebuffer lines only (none here): not where the kernel
    // lies.
    let iomem = std::fs::read_to_string(rec.join("proc/iomem")).unwrap();
    assert!(!iomem.contains("Kernel code"), "{iomem}");
}

#[test]
fn d3cold_and_resizable_bars_are_read_and_odd_files_say_nothing() {
    let mut spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    let gpu = spec
        .devices
        .iter_mut()
        .find(|d| d.bdf == "0000:0b:00.0")
        .unwrap();
    gpu.d3cold_allowed = Some(true);
    gpu.power_control = Some("auto".into());
    gpu.power_state = Some("D3cold".into());
    // Bits 6–13: 64 MiB to 8 GiB.
    gpu.resizable_bars = vec![(1, "3fc0".into())];
    let b = build(&spec);
    let facts = doctor::read(&b.root(), &b.host);
    let a: PciAddress = "0000:0b:00.0".parse().unwrap();
    let f = &facts.devices[&a];
    assert_eq!(f.d3cold_allowed, Some(true));
    assert_eq!(f.power_state.as_deref(), Some("D3cold"));
    assert_eq!(f.resizable_bars[0].index, 1);
    assert_eq!(f.resizable_bars[0].sizes_mib.first(), Some(&64));
    assert_eq!(f.resizable_bars[0].sizes_mib.last(), Some(&8192));
    let r = doctor::examine(&b.host, &facts);
    let of_gpu: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.reason.device == Some(a))
        .map(|f| f.reason.code.as_str())
        .collect();
    for c in ["d3cold-allowed", "powered-off", "resizable-bar"] {
        assert!(of_gpu.contains(&c), "{c} in {of_gpu:?}");
    }
    let rb = r
        .findings
        .iter()
        .find(|f| f.reason.code == "resizable-bar")
        .unwrap();
    assert!(
        rb.reason.message.contains("64 MiB to 8 GiB"),
        "{}",
        rb.reason.message
    );
    assert!(rb.reason.remedy.as_deref().unwrap().contains(
        "passagectl bar-size 0000:0b:00.0 1 SIZE, SIZE one the card offers (64 MiB to 8 GiB)"
    ));

    // Odd files: a power state with an escape sequence, a mask that is not hex, d3cold "2".
    let dir = b.dir.path().join(&b.host.devices[&a].sysfs_path);
    std::fs::write(dir.join("power_state"), "D0\u{1b}[31m\n").unwrap();
    std::fs::write(dir.join("resource1_resize"), "zz\n").unwrap();
    std::fs::write(dir.join("d3cold_allowed"), "2\n").unwrap();
    std::fs::write(dir.join("power/control"), "sometimes\n").unwrap();
    let facts = doctor::read(&b.root(), &b.host);
    assert!(
        !facts.devices.contains_key(&a),
        "{:?}",
        facts.devices.get(&a)
    );
}

#[test]
fn the_firmware_framebuffer_in_a_gpus_bar_is_found_where_root_can_see_it() {
    // BAR 0 of each synthetic device starts at 0xf0000000 (the boot GPU's 256 MiB aperture).
    let mut spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    spec.host.iomem = Some(
        "00000000-00000fff : Reserved\nf0000000-ffffffff : PCI Bus 0000:00\n  f0000000-f02fffff : BOOTFB\n"
            .into(),
    );
    let b = build(&spec);
    let facts = doctor::read(&b.root(), &b.host);
    let gpu: PciAddress = "0000:0b:00.0".parse().unwrap();
    let fb = facts.devices[&gpu].boot_framebuffer.as_ref().unwrap();
    assert_eq!((fb.name.as_str(), fb.bar), ("BOOTFB", 0));
    let r = doctor::examine(&b.host, &facts);
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.code == "boot-framebuffer" && f.reason.device == Some(gpu))
        .unwrap();
    assert_eq!(f.reason.severity, Severity::Warning);
    assert!(f
        .reason
        .remedy
        .as_deref()
        .unwrap()
        .contains("initcall_blacklist=sysfb_init"));
    // The NIC's BAR at the same address is no GPU: nothing said of it.
    assert!(!r
        .findings
        .iter()
        .any(|f| f.reason.code == "boot-framebuffer"
            && f.reason.device != Some(gpu)
            && !b.host.devices[&f.reason.device.unwrap()].class.is_display()));

    // Since 6.0 vfio-pci takes the framebuffer away from a VGA device itself: a note.
    spec.host.kernel_release = Some("6.1.0-28-amd64".into());
    let b = build(&spec);
    let r = doctor::examine(&b.host, &doctor::read(&b.root(), &b.host));
    let f = r
        .findings
        .iter()
        .find(|f| f.reason.code == "boot-framebuffer" && f.reason.device == Some(gpu))
        .unwrap();
    assert_eq!(f.reason.severity, Severity::Info);
    spec.host.kernel_release = None;

    // Unprivileged, proc/iomem shows zeros: nothing is claimed.
    spec.host.iomem =
        Some("00000000-00000000 : PCI Bus 0000:00\n  00000000-00000000 : BOOTFB\n".into());
    let b = build(&spec);
    let facts = doctor::read(&b.root(), &b.host);
    assert!(facts.devices.values().all(|f| f.boot_framebuffer.is_none()));
}

/// The POWER machine recorded in the cross bed (`--demo ppc64le`), with the EEH files the
/// kernel writes for a device whose PE has EEH (arch/powerpc/kernel/eeh_sysfs.c: `eeh_mode`,
/// `eeh_pe_config_addr` as "0x%x", `eeh_pe_state` as "0x%08x 0x%08x"). The bed's machine had
/// none ("EEH: No capable adapters found": QEMU gives EEH only to VFIO devices), so the files
/// are added here in the kernel's own format; odd files say nothing.
#[test]
fn eeh_on_power_per_partitionable_endpoint_and_a_frozen_one_explained() {
    let dir = tempfile::tempdir().unwrap();
    demo::unpack(demo::DEMO_PPC64LE, dir.path()).unwrap();
    let root = HostRoot::open(dir.path()).unwrap();
    let host = passage_core::scan::scan(&root).unwrap();
    assert_eq!(host.platform.arch.as_deref(), Some("powerpc"));
    // As recorded: no EEH at all.
    let facts = doctor::read(&root, &host);
    let r = doctor::examine(&host, &facts);
    assert!(r.findings.iter().any(|f| f.reason.code == "eeh-off"));
    let write = |a: &str, state: &str, pe: &str| {
        let d = dir
            .path()
            .join(&host.devices[&a.parse::<PciAddress>().unwrap()].sysfs_path);
        std::fs::write(d.join("eeh_mode"), "0x1\n").unwrap();
        std::fs::write(d.join("eeh_pe_config_addr"), format!("{pe}\n")).unwrap();
        std::fs::write(d.join("eeh_pe_state"), format!("{state}\n")).unwrap();
    };
    // PE 0x10000 under host bridge 0001 frozen (EEH_PE_ISOLATED); the same PE address under
    // bridge 0003 is another PE, and well; a fourth device with a broken file.
    write("0001:00:01.0", "0x00000002 0x00000001", "0x10000");
    write("0001:00:02.0", "0x00000002 0x00000001", "0x10000");
    write("0003:00:01.0", "0x0000007e 0x00000000", "0x10000");
    write("0002:01:01.0", "0x0000007e 0x00000000", "ten");
    let root = HostRoot::open(dir.path()).unwrap();
    let facts = doctor::read(&root, &host);
    let r = doctor::examine(&host, &facts);
    let find = |code: &str| {
        r.findings
            .iter()
            .filter(|f| f.reason.code == code)
            .collect::<Vec<_>>()
    };
    assert!(find("eeh-off").is_empty());
    let frozen = find("eeh-isolated");
    assert_eq!(frozen.len(), 1);
    assert_eq!(frozen[0].reason.severity, Severity::Blocker);
    let m = &frozen[0].reason.message;
    assert!(
        m.contains("0x10000") && m.contains("0001:00:01.0") && m.contains("0001:00:02.0"),
        "{m}"
    );
    assert!(
        !m.contains("0003:00:01.0"),
        "another bridge's PE is not frozen: {m}"
    );
    assert!(frozen[0]
        .reason
        .remedy
        .as_deref()
        .unwrap()
        .contains("rescan"));
    let well = find("eeh");
    assert_eq!(well.len(), 1, "one PE well, the odd file says nothing");
    assert!(well[0].reason.message.contains("0003:00:01.0"));
    assert!(
        facts.devices[&"0002:01:01.0".parse::<PciAddress>().unwrap()]
            .eeh
            .is_none()
    );
    // Never looked for on other architectures: the x86 demo has no EEH facts at all.
    let d = demo::open().unwrap();
    let h = passage_core::scan::scan(&d.root).unwrap();
    let f = doctor::read(&d.root, &h);
    assert!(f.devices.values().all(|x| x.eeh.is_none()));
    assert!(!doctor::examine(&h, &f)
        .findings
        .iter()
        .any(|x| x.reason.code.starts_with("eeh")));
}

/// AER's counters, in the format the kernel writes them (read off the arm64 bed's kernel:
/// one `Name count` line per error, then `TOTAL_ERR_COR n`, `TOTAL_ERR_FATAL n`,
/// `TOTAL_ERR_NONFATAL n`), on the arm64 machine recorded there: uncorrectable errors are a
/// warning, corrected ones a note, and an odd file says nothing.
#[test]
fn aer_counters_say_what_a_device_reported_since_boot() {
    let dir = tempfile::tempdir().unwrap();
    demo::unpack(demo::DEMO_ARM64, dir.path()).unwrap();
    let host = passage_core::scan::scan(&HostRoot::open(dir.path()).unwrap()).unwrap();
    let write = |a: &str, fatal: &str, nonfatal: &str, cor: &str| {
        let d = dir
            .path()
            .join(&host.devices[&a.parse::<PciAddress>().unwrap()].sysfs_path);
        std::fs::write(
            d.join("aer_dev_fatal"),
            format!("Undefined 0\nDLP 0\nSDES 0\nTLP 0\nTOTAL_ERR_FATAL {fatal}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("aer_dev_nonfatal"),
            format!("Undefined 0\nDLP 0\nSDES 0\nTLP 0\nTOTAL_ERR_NONFATAL {nonfatal}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("aer_dev_correctable"),
            format!("RxErr 0\nBadTLP 0\nBadDLLP 0\nRollover 0\nTimeout 0\nNonFatalErr 0\nCorrIntErr 0\nHeaderOF 0\nTOTAL_ERR_COR {cor}\n"),
        )
        .unwrap();
    };
    write("0000:01:00.0", "0", "2", "5");
    write("0000:05:00.0", "0", "0", "3");
    write("0000:02:00.0", "0", "0", "many");
    let root = HostRoot::open(dir.path()).unwrap();
    let facts = doctor::read(&root, &host);
    let r = doctor::examine(&host, &facts);
    let of = |code: &str| -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.reason.code == code)
            .map(|f| f.reason.device.map(|a| a.to_string()).unwrap_or_default())
            .collect()
    };
    assert_eq!(of("aer-errors"), ["0000:01:00.0"]);
    assert_eq!(of("aer-corrected"), ["0000:05:00.0"]);
    let a = |x: &str| facts.devices[&x.parse::<PciAddress>().unwrap()].aer.clone();
    assert_eq!(
        a("0000:01:00.0"),
        Some(doctor::AerCounts {
            fatal: 0,
            nonfatal: 2,
            correctable: 5
        })
    );
    assert_eq!(a("0000:02:00.0"), None, "an odd counter is no count");
    let m = r
        .findings
        .iter()
        .find(|f| f.reason.code == "aer-errors")
        .unwrap();
    assert!(
        m.reason.message.contains("2 non-fatal"),
        "{}",
        m.reason.message
    );
}
