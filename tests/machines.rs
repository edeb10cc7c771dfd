//! Every recorded real machine, read back through a host-root tree: groups exactly as the
//! kernel made them, and verdicts that make sense. Then named scenarios on top of real facts.

mod common;
use common::*;
use passage_core::explain::{self, Severity, State};
use passage_core::synth::{BlockSpec, DmSpec, MountSpec, NetSpec};
use passage_core::{scan, GroupId, PciAddress};
use std::collections::{BTreeMap, BTreeSet};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

#[test]
fn every_machine_reads_back_with_the_kernels_groups_exactly() {
    let all = machines();
    assert!(all.len() >= 14, "fixtures missing: {}", all.len());
    for (name, spec) in &all {
        let b = build(spec);
        let mut want: BTreeMap<u32, BTreeSet<PciAddress>> = BTreeMap::new();
        for d in &spec.devices {
            if let Some(g) = d.group {
                want.entry(g).or_default().insert(addr(&d.bdf));
            }
        }
        let got: BTreeMap<u32, BTreeSet<PciAddress>> = b
            .host
            .groups
            .values()
            .map(|g| (g.id.0, g.devices.iter().copied().collect()))
            .collect();
        assert_eq!(got, want, "{name}: groups differ");
        assert_eq!(
            b.host.devices.len(),
            spec.devices.len(),
            "{name}: device count"
        );
        for d in &spec.devices {
            let m = &b.host.devices[&addr(&d.bdf)];
            assert_eq!(m.vendor_id.to_string(), d.vendor, "{name} {}", d.bdf);
            if let Some(dev) = &d.device {
                assert_eq!(&m.device_id.to_string(), dev, "{name} {}", d.bdf);
            }
            assert!(
                m.class.to_string().starts_with(&d.class),
                "{name} {}",
                d.bdf
            );
            assert_eq!(m.driver, d.driver, "{name} {}: driver", d.bdf);
            assert_eq!(m.group.map(|g| g.0), d.group, "{name} {}: group", d.bdf);
            if let Some(p) = d.parent.as_deref().filter(|p| *p != "unknown") {
                assert_eq!(m.parent, Some(addr(p)), "{name} {}: parent", d.bdf);
            }
        }
    }
}

#[test]
fn a_sandbox_that_hides_the_groups_directory_still_sees_the_kernels_groups() {
    // Flatpak shows an app /sys/devices but not /sys/kernel: the devices' iommu_group links
    // are then the only copy of the kernel's answer, and they are enough.
    for (name, spec) in machines() {
        let b = build(&spec);
        std::fs::remove_dir_all(b.dir.path().join("sys/kernel/iommu_groups")).unwrap();
        let hidden = passage_core::scan::scan(&b.root()).unwrap();
        let members = |h: &passage_core::Host| -> BTreeMap<GroupId, Vec<PciAddress>> {
            h.groups
                .values()
                .filter(|g| !g.devices.is_empty())
                .map(|g| (g.id, g.devices.clone()))
                .collect()
        };
        assert_eq!(members(&hidden), members(&b.host), "{name}");
        assert_eq!(hidden.iommu_enabled(), b.host.iommu_enabled(), "{name}");
    }
}

#[test]
fn every_machines_verdicts_make_sense() {
    for (name, spec) in machines() {
        let b = build(&spec);
        let iommu = explain::iommu(&b.host);
        assert!(
            iommu.enabled,
            "{name}: the listing has groups, so the IOMMU is on"
        );
        for g in explain::groups(&b.host) {
            let members: Vec<_> = g.devices.iter().map(|a| &b.host.devices[a]).collect();
            // A group of bridges and chipset glue offers nothing to a guest.
            if members.iter().all(|d| d.is_bridge() || d.is_chipset_glue()) {
                assert!(
                    !g.assignable,
                    "{name} group {}: only bridges, yet assignable",
                    g.id
                );
            }
            let endpoints: Vec<_> = members
                .iter()
                .filter(|d| d.is_endpoint() && !d.is_chipset_glue())
                .collect();
            let on_vfio = endpoints.iter().filter(|d| d.on_vfio()).count();
            let on_host: Vec<_> = endpoints
                .iter()
                .filter(|d| !d.driver_is_harmless())
                .collect();
            match g.state {
                State::Assigned => {
                    assert!(
                        on_vfio > 0 && on_host.is_empty(),
                        "{name} group {}: assigned but {on_host:?}",
                        g.id
                    )
                }
                State::Available => assert!(
                    on_host.is_empty(),
                    "{name} group {}: available with host drivers",
                    g.id
                ),
                State::InUse => {}
                State::HostCritical => {
                    panic!("{name} group {}: critical without any usage facts", g.id)
                }
            }
            if on_vfio > 0 && !on_host.is_empty() {
                assert_eq!(g.state, State::InUse, "{name} group {}", g.id);
                let r = g
                    .reasons
                    .iter()
                    .find(|r| r.code == "partly-claimed")
                    .expect("partly-claimed");
                assert_eq!(r.severity, Severity::Blocker);
                for d in &on_host {
                    assert!(
                        r.message.contains(&d.address.to_string()),
                        "{name}: blocker {} not named",
                        d.address
                    );
                }
            }
            // Every host-driven sibling is named in the "what the host loses" reason.
            if endpoints.len() > 1 && !on_host.is_empty() {
                let r = g
                    .reasons
                    .iter()
                    .find(|r| r.code == "shares-group")
                    .expect("shares-group");
                for d in &on_host {
                    assert!(r.message.contains(&d.address.to_string()));
                    assert!(r.message.contains(d.driver.as_deref().unwrap()));
                }
            }
            // Multi-device groups always say why they have their shape.
            if g.devices.len() > 1 {
                assert!(
                    g.reasons.iter().any(|r| r.code.starts_with("shape-")),
                    "{name} group {}: no shape reason",
                    g.id
                );
            }
            for r in &g.reasons {
                assert!(!r.message.is_empty() && !r.code.is_empty());
                assert!(
                    r.code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                    "code {}",
                    r.code
                );
            }
        }
    }
}

#[test]
fn asus_b550_the_kioxia_nvme_in_the_chipset_group_holds_root() {
    let mut spec = load("asus-tuf-b550m-plus-5800x");
    // Scenario on top of the real listing: the KIOXIA NVMe (05:00.0) holds /.
    spec.host.blocks.push(BlockSpec {
        name: "nvme1n1".into(),
        pci: "0000:05:00.0".into(),
        majmin: "259:0".into(),
        partitions: vec![("nvme1n1p2".into(), "259:2".into())],
    });
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "ext4".into(),
        source: "/dev/nvme1n1p2".into(),
    });
    let b = build(&spec);
    let v = b.verdict_of("0000:05:00.0");
    assert_eq!(v.state, State::HostCritical);
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == "root-filesystem")
        .expect("root-filesystem");
    assert_eq!(r.device, Some(addr("0000:05:00.0")));
    assert!(
        r.message.contains("0000:05:00.0") && r.message.contains("KIOXIA"),
        "{}",
        r.message
    );
    assert!(r.remedy.is_some());
    // The whole chipset goes with it: the RX 550 and the RTL8125 are in the same group.
    assert!(v.devices.contains(&addr("0000:04:00.0")) && v.devices.contains(&addr("0000:07:00.0")));
    // The GTX 1060 on vfio-pci (via vfio-pci.ids on the command line) is assigned.
    let gpu = b.verdict_of("0000:08:00.0");
    assert_eq!(gpu.state, State::Assigned);
    assert!(gpu.reasons.iter().any(|r| r.code == "claimed-by-ids"));
    let iommu = explain::iommu(&b.host);
    assert!(iommu.reasons.iter().any(|r| r.code == "vfio-pci-ids"));
}

#[test]
fn asus_b550_chipset_group_shape_is_explained_by_its_ports() {
    // As an unprivileged reader sees it (64-byte config): ACS is unknown, so the reasons say
    // "apparently" and name the ports and the multifunction chipset device.
    let b = build(&load("asus-tuf-b550m-plus-5800x"));
    let v = b.verdict_of("0000:02:00.0");
    let shapes: Vec<_> = v
        .reasons
        .iter()
        .filter(|r| r.code.starts_with("shape-"))
        .collect();
    assert!(shapes.iter().any(|r| r.code == "shape-no-acs"
        && r.device == Some(addr("0000:03:04.0"))
        && r.message.contains("0000:05:00.0")));
    assert!(shapes
        .iter()
        .any(|r| r.code == "shape-multifunction" && r.message.contains("0000:02:00.2")));
    assert!(
        !shapes.iter().any(|r| r.code == "shape-kernel-quirk"),
        "{shapes:#?}"
    );

    // Scenario: the same machine read as root, where the downstream ports show no ACS.
    let mut spec = load("asus-tuf-b550m-plus-5800x");
    for d in spec
        .devices
        .iter_mut()
        .filter(|d| d.device.as_deref() == Some("43ea"))
    {
        d.config = Some(passage_core::config::ConfigSpec {
            full: true,
            port_type: Some(passage_core::config::PortType::DownstreamPort),
            ..Default::default()
        });
    }
    let b = build(&spec);
    let r = b
        .verdict_of("0000:05:00.0")
        .reasons
        .into_iter()
        .find(|r| r.code == "shape-no-acs" && r.device == Some(addr("0000:03:04.0")))
        .unwrap();
    assert!(!r.message.contains("apparently"), "{}", r.message);
}

#[test]
fn acs_override_machines_warn_that_groups_are_not_real_isolation() {
    for name in [
        "asus-tuf-b550m-plus-5800x-acso-multifunction",
        "hp-envy-700-z87-gtx770-acso",
    ] {
        let b = build(&load(name));
        let iommu = explain::iommu(&b.host);
        let r = iommu
            .reasons
            .iter()
            .find(|r| r.code == "acs-override")
            .expect(name);
        assert_eq!(r.severity, Severity::Warning);
        assert!(r.message.contains("not real isolation"));
    }
    // The HP's GTX 770 sits on vfio-pci in a group of its own (only the override does that).
    let b = build(&load("hp-envy-700-z87-gtx770-acso"));
    let gpu = b
        .host
        .devices
        .values()
        .find(|d| d.vendor_id.0 == 0x10de && d.class.is_display())
        .unwrap();
    assert_eq!(
        b.verdict_of(&gpu.address.to_string()).state,
        State::Assigned
    );
}

#[test]
fn z370_gpu_shares_the_cpu_root_port_group() {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let v = b.verdict_of("0000:01:00.0");
    assert_eq!(
        v.devices,
        vec![
            addr("0000:00:01.0"),
            addr("0000:01:00.0"),
            addr("0000:01:00.1")
        ]
    );
    assert!(v.assignable);
    assert!(v
        .reasons
        .iter()
        .any(|r| r.code == "bridge" && r.device == Some(addr("0000:00:01.0"))));
    assert!(v
        .reasons
        .iter()
        .any(|r| r.code == "shape-no-acs" && r.device == Some(addr("0000:00:01.0"))));
    assert!(v.title.contains("GP104"), "{}", v.title);
}

#[test]
fn xeon_bmc_vga_shares_the_ast1150_bridge_group() {
    let mut spec = load("xeon-sapphire-rapids-dmar");
    // Scenario: read as root, the AST1150 shows its PCIe capability (a PCIe-to-PCI bridge).
    for d in spec
        .devices
        .iter_mut()
        .filter(|d| d.device.as_deref() == Some("1150"))
    {
        d.config = Some(passage_core::config::ConfigSpec {
            full: true,
            port_type: Some(passage_core::config::PortType::PcieToPciBridge),
            ..Default::default()
        });
    }
    let b = build(&spec);
    assert_eq!(b.host.groups.len(), 238);
    let v = b.verdict_of("0000:03:00.0");
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == "shape-pci-bridge")
        .expect("shape-pci-bridge");
    assert_eq!(r.device, Some(addr("0000:02:00.0")));
    assert!(r.message.contains("0000:03:00.0"));
    // Each Sapphire Rapids DMAR unit is named on its devices.
    assert_eq!(
        b.host.devices[&addr("0000:03:00.0")].iommu_unit.as_deref(),
        Some("dmar19")
    );
}

#[test]
fn sriov_pf_and_vfs_say_what_unbinding_costs() {
    let b = build(&load("power9-connectx5-sriov-partial"));
    let pf = b.verdict_of("0000:01:00.0");
    let r = pf
        .reasons
        .iter()
        .find(|r| r.code == "sriov-pf")
        .expect("sriov-pf");
    assert!(r.message.contains('2'), "{}", r.message);
    let vf = b.verdict_of("0000:01:00.2");
    assert_eq!(vf.devices.len(), 1);
    assert!(vf
        .reasons
        .iter()
        .any(|r| r.code == "sriov-vf" && r.message.contains("0000:01:00.0")));
    assert_eq!(
        b.host.devices[&addr("0000:01:00.0")].virtfns,
        vec![addr("0000:01:00.2"), addr("0000:01:00.3")]
    );
}

#[test]
fn libvirt_mock_tree_with_several_pci_domains() {
    let b = build(&load("libvirt-virpcimock-synthetic"));
    assert!(b.host.devices.contains_key(&addr("0021:de:1f.1")));
    assert_eq!(
        b.host.devices[&addr("0021:de:1f.1")].physfn,
        Some(addr("0021:de:1f.0"))
    );
    assert_eq!(b.verdict_of("0005:90:01.0").devices.len(), 4);
}

#[test]
fn umockdev_recordings_keep_reset_methods() {
    let b = build(&load("umockdev-fwupd-lenovo-tr-pro-psp"));
    let d = &b.host.devices[&addr("0000:23:00.1")];
    assert_eq!(d.reset_methods.as_deref(), Some(&["flr".to_string()][..]));
    assert_eq!(
        d.subsystem_vendor_id.map(|v| v.to_string()).as_deref(),
        Some("17aa")
    );
    assert!(!b.codes_of("0000:23:00.1").contains(&"no-reset".to_string()));
}

#[test]
fn without_an_iommu_there_are_no_groups_and_the_remedy_names_the_vendor_switch() {
    let mut spec = load("msi-z370i-i5-8400-gtx1070");
    spec.host.iommu = Some("off".into());
    spec.kernel_cmdline = Some("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into());
    let b = build(&spec);
    assert!(b.host.groups.is_empty());
    assert!(b.host.devices.values().all(|d| d.group.is_none()));
    let v = explain::iommu(&b.host);
    assert!(!v.enabled);
    let r = &v.reasons[0];
    assert_eq!(r.code, "iommu-off");
    assert!(r.remedy.as_deref().unwrap().contains("intel_iommu=on"));

    let mut spec = load("msi-b450m-mortar-raven");
    spec.host.iommu = Some("off".into());
    let v = explain::iommu(&build(&spec).host);
    assert!(v.reasons[0].remedy.as_deref().unwrap().contains("AMD-Vi"));

    let mut spec = load("msi-z370i-i5-8400-gtx1070");
    spec.host.iommu = Some("off".into());
    spec.kernel_cmdline = Some("quiet intel_iommu=off".into());
    let v = explain::iommu(&build(&spec).host);
    assert_eq!(v.reasons[0].code, "iommu-disabled-cmdline");
    assert!(v.reasons[0].message.contains("intel_iommu=off"));
}

/// A virtual machine on an AMD CPU without a virtual IOMMU: the host bridge is the Intel one
/// QEMU emulates, but the CPU's own word and the VM's are what count — the remedy is a virtual
/// IOMMU, not VT-d or intel_iommu=on alone. `record` keeps the files that said so.
#[test]
fn a_virtual_machine_without_a_virtual_iommu_is_told_to_get_one_whatever_its_host_bridge_says() {
    use passage_core::synth::VmSpec;
    let mut spec = load("msi-z370i-i5-8400-gtx1070"); // an Intel host bridge at 00:00.0
    spec.host.iommu = Some("off".into());
    spec.host.cpu = Some("AuthenticAMD".into());
    spec.host.vm = Some(VmSpec {
        sys_vendor: "QEMU".into(),
        product_name: "Standard PC (Q35 + ICH9, 2009)".into(),
    });
    let b = build(&spec);
    assert_eq!(b.host.platform.cpu_vendor.as_deref(), Some("amd"));
    let vm = b.host.platform.virtual_machine.as_ref().expect("a VM");
    assert!(vm.hypervisor_flag);
    let v = explain::iommu(&b.host);
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    let r = &v.reasons[0];
    assert_eq!(r.code, "iommu-off-vm");
    assert!(
        r.message.contains("QEMU Standard PC (Q35 + ICH9, 2009)"),
        "{}",
        r.message
    );
    let remedy = r.remedy.as_deref().unwrap();
    for want in [
        "<iommu model='intel'>",
        "virtio-iommu-pci",
        "intel-iommu,intremap=on",
    ] {
        assert!(remedy.contains(want), "remedy lacks {want}: {remedy}");
    }
    assert!(!r.message.contains("VT-d"));

    // The same machine's facts through the command line, and through a recording of them.
    let out = passagectl()
        .arg("--root")
        .arg(b.dir.path())
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("virtual machine (QEMU Standard PC"), "{text}");
    let rec = tempfile::tempdir().unwrap();
    let dir = rec.path().join("rec");
    let st = passagectl()
        .arg("--root")
        .arg(b.dir.path())
        .arg("record")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for f in [
        "proc/cpuinfo",
        "sys/class/dmi/id/sys_vendor",
        "sys/class/dmi/id/product_name",
    ] {
        assert!(dir.join(f).is_file(), "the recording lacks {f}");
    }
    let again = scan::scan(&passage_core::HostRoot::open(&dir).unwrap()).unwrap();
    assert_eq!(again.platform, b.host.platform);

    // A bare-metal AMD machine (cpuinfo without the flag, no DMI hypervisor): AMD-Vi, whatever
    // the bridge.
    spec.host.vm = None;
    let v = explain::iommu(&build(&spec).host);
    assert_eq!(v.reasons[0].code, "iommu-off");
    assert!(v.reasons[0].remedy.as_deref().unwrap().contains("AMD-Vi"));
}

#[test]
fn the_cpu_vendor_and_the_hypervisor_flag_come_from_the_first_processor() {
    use passage_core::scan::cpuinfo_facts;
    let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme hypervisor\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
    assert_eq!(cpuinfo_facts(intel), (Some("intel".into()), true));
    assert_eq!(
        cpuinfo_facts("vendor_id : HygonGenuine\nflags : fpu\n"),
        (Some("amd".into()), false)
    );
    // ARM names an implementer, not a vendor; garbage is "unknown", never a wrong claim.
    assert_eq!(
        cpuinfo_facts("processor : 0\nCPU implementer : 0x41\n"),
        (None, false)
    );
    assert_eq!(cpuinfo_facts("\u{0}\u{1}garbage"), (None, false));
    assert_eq!(cpuinfo_facts("flags: hypervisorx\n"), (None, false));
}

#[test]
fn no_interrupt_remapping_blocks_every_group_unless_unsafe_interrupts_are_allowed() {
    let mut spec = load("msi-z370i-i5-8400-gtx1070");
    spec.host.interrupt_remapping = Some(false);
    let v = explain::iommu(&build(&spec).host);
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == "no-interrupt-remapping")
        .expect("blocker");
    assert_eq!(r.severity, Severity::Blocker);
    assert!(r.message.contains("EPERM"));
    spec.host.allow_unsafe_interrupts = Some(true);
    let v = explain::iommu(&build(&spec).host);
    assert!(!v.reasons.iter().any(|r| r.code == "no-interrupt-remapping"));
    assert_eq!(
        v.reasons
            .iter()
            .find(|r| r.code == "unsafe-interrupts-allowed")
            .unwrap()
            .severity,
        Severity::Warning
    );
}

#[test]
fn root_on_lvm_swap_and_default_route_make_groups_host_critical() {
    let mut spec = load("msi-z370i-i5-8400-gtx1070");
    // Scenario: an NVMe would sit behind a PCH port; here the SATA controller 00:17.0 holds
    // an LVM root, the Intel NIC 00:1f.6 carries the default route.
    spec.host.blocks.push(BlockSpec {
        name: "sda".into(),
        pci: "0000:00:17.0".into(),
        majmin: "8:0".into(),
        partitions: vec![("sda2".into(), "8:2".into()), ("sda3".into(), "8:3".into())],
    });
    spec.host.dm.push(DmSpec {
        name: "dm-0".into(),
        dm_name: "vg0-root".into(),
        majmin: "254:0".into(),
        slaves: vec!["sda2".into()],
    });
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "xfs".into(),
        source: "/dev/mapper/vg0-root".into(),
    });
    spec.host.swaps.push("/dev/sda3".into());
    spec.host.net.push(NetSpec {
        iface: "eno1".into(),
        pci: "0000:00:1f.6".into(),
    });
    spec.host.default_route = Some("eno1".into());
    let b = build(&spec);
    let sata = b.verdict_of("0000:00:17.0");
    assert_eq!(sata.state, State::HostCritical);
    let codes = b.codes_of("0000:00:17.0");
    assert!(
        codes.contains(&"root-filesystem".into()) && codes.contains(&"swap".into()),
        "{codes:?}"
    );
    let nic = b.verdict_of("0000:00:1f.6");
    assert_eq!(nic.state, State::HostCritical);
    assert!(nic
        .reasons
        .iter()
        .any(|r| r.code == "default-route" && r.message.contains("eno1")));
    // The GPU is untouched by all this.
    assert_ne!(b.verdict_of("0000:01:00.0").state, State::HostCritical);
}

#[test]
fn z370_devices_without_a_reset_file_are_flagged() {
    let mut spec = load("msi-z370i-i5-8400-gtx1070");
    for d in spec.devices.iter_mut().filter(|d| d.bdf == "0000:01:00.1") {
        d.has_reset = Some(false);
    }
    let b = build(&spec);
    let v = b.verdict_of("0000:01:00.1");
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == "no-reset")
        .expect("no-reset");
    assert_eq!(r.device, Some(addr("0000:01:00.1")));
    let _ = GroupId(0);
}

/// `explain` reads one group's facts (`scan::scan_target`) instead of the whole host; on every
/// recorded machine and on an SR-IOV farm its words and JSON are those the full scan gives, for
/// every group and every device, and it does take the quick path (not the full-scan fallback)
/// wherever the tree has what a real sysfs has.
#[test]
fn explaining_one_target_from_its_own_facts_says_what_the_whole_scan_says() {
    use passage_core::{report, Target};
    let specs = machines_and_a_farm();
    let mut quick = 0;
    for (name, spec) in &specs {
        let b = build(spec);
        let root = b.root();
        let mut targets: Vec<Target> = b.host.groups.keys().map(|g| Target::Group(*g)).collect();
        targets.extend(b.host.devices.keys().map(|a| Target::Device(*a)));
        for t in targets {
            let full = report::explanation(&b.host, t).expect("explanation");
            let want = (
                serde_json::to_string(&full).unwrap(),
                report::explain_text(&b.host, &full),
            );
            let in_group = match t {
                Target::Group(_) => true,
                Target::Device(a) => b.host.devices[&a].group.is_some(),
            };
            match scan::scan_target(&root, t) {
                Some(h) => {
                    let e = report::explanation(&h, t).expect("explanation from the quick scan");
                    let got = (
                        serde_json::to_string(&e).unwrap(),
                        report::explain_text(&h, &e),
                    );
                    assert_eq!(got.0, want.0, "{name} {t:?}: JSON differs");
                    assert_eq!(got.1, want.1, "{name} {t:?}: words differ");
                    assert!(h.devices.len() < b.host.devices.len() || b.host.devices.len() < 4);
                    quick += 1;
                }
                None => assert!(
                    !in_group,
                    "{name} {t:?}: a group the tree fully describes fell back to a full scan"
                ),
            }
        }
    }
    assert!(quick > 200, "only {quick} targets took the quick path");
}

/// Where the quick look cannot be sure it says so, and the full scan answers instead: an
/// unknown group, a device in no group, a group whose member list is missing, and hostile
/// trees — a PF claiming four billion VFs (no allocation of that size, no abort), a `virtfn0`
/// that is not a link, a device missing from its group's list.
#[test]
fn the_quick_look_gives_way_when_the_tree_cannot_answer_it() {
    use passage_core::Target;
    let b = build(&load("asrock-z170-gaming-itx"));
    let root = b.root();
    assert!(scan::scan_target(&root, Target::Group(GroupId(9999))).is_none());
    assert!(scan::scan_target(&root, Target::Device(addr("0000:7f:1f.7"))).is_none());
    let g = *b.host.groups.keys().next().unwrap();
    assert!(scan::scan_target(&root, Target::Group(g)).is_some());
    std::fs::remove_dir_all(
        b.dir
            .path()
            .join(format!("sys/kernel/iommu_groups/{g}/devices")),
    )
    .unwrap();
    assert!(scan::scan_target(&root, Target::Group(g)).is_none());

    let b = build(&passage_core::synth::sriov_farm(2, 3));
    let root = b.root();
    let pf = *b
        .host
        .devices
        .values()
        .find(|d| !d.virtfns.is_empty())
        .map(|d| &d.address)
        .unwrap();
    let vf = b.host.devices[&pf].virtfns[0];
    let pf_group = Target::Group(b.host.devices[&pf].group.unwrap());
    assert!(scan::scan_target(&root, pf_group).is_some());
    let dir = std::fs::canonicalize(
        b.dir
            .path()
            .join("sys/bus/pci/devices")
            .join(pf.to_string()),
    )
    .unwrap();
    std::fs::write(dir.join("sriov_numvfs"), "4294967295\n").unwrap();
    assert!(
        scan::scan_target(&root, pf_group).is_none(),
        "more VFs than the PF offers"
    );
    std::fs::write(dir.join("sriov_numvfs"), "3\n").unwrap();
    std::fs::remove_file(dir.join("virtfn0")).unwrap();
    std::fs::write(dir.join("virtfn0"), "not a link").unwrap();
    assert!(
        scan::scan_target(&root, pf_group).is_none(),
        "virtfn0 is not a link"
    );
    // The VF's own link says group N, N's list does not hold it.
    let vg = b.host.devices[&vf].group.unwrap();
    std::fs::remove_file(
        b.dir
            .path()
            .join(format!("sys/kernel/iommu_groups/{vg}/devices/{vf}")),
    )
    .unwrap();
    std::fs::create_dir_all(
        b.dir
            .path()
            .join(format!("sys/kernel/iommu_groups/{vg}/devices")),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        &dir,
        b.dir
            .path()
            .join(format!("sys/kernel/iommu_groups/{vg}/devices/{pf}")),
    )
    .unwrap();
    assert!(scan::scan_target(&root, Target::Device(vf)).is_none());
}

/// Hostile listings never give a wrong driver: a driver "directory" that is a link to the
/// devices directory, or an address listed under two drivers, sends the scanner to each
/// device's own link.
#[test]
fn listings_that_sysfs_could_not_show_are_not_believed() {
    let b = build(&load("asus-tuf-b550m-plus-5800x"));
    let drivers = b.dir.path().join("sys/bus/pci/drivers");
    std::os::unix::fs::symlink("../devices", drivers.join("evil")).unwrap();
    assert_eq!(
        scan::scan(&b.root()).unwrap(),
        b.host,
        "a driver linked to devices/"
    );
    std::fs::remove_file(drivers.join("evil")).unwrap();
    let (a, d) = b
        .host
        .devices
        .iter()
        .find(|(_, d)| d.driver.is_some())
        .unwrap();
    std::fs::create_dir_all(drivers.join("other")).unwrap();
    std::os::unix::fs::symlink(&d.sysfs_path, drivers.join("other").join(a.to_string())).unwrap();
    assert_eq!(
        scan::scan(&b.root()).unwrap(),
        b.host,
        "an address under two drivers"
    );
}

/// A whole-host scan learns drivers and IOMMU units from the drivers' and units' listings
/// (two syscalls fewer per function); a tree without them — a recording made before, which
/// kept each device's links — is read link by link. Both give the same host on every recorded
/// machine and on an SR-IOV farm.
#[test]
fn drivers_and_units_read_from_their_listings_or_from_each_device_agree() {
    let specs = machines_and_a_farm();
    let mut bound = 0;
    let mut unit_entries = 0;
    for (name, spec) in &specs {
        let b = build(spec);
        bound += b
            .host
            .devices
            .values()
            .filter(|d| d.driver.is_some())
            .count();
        // Take away the listings' device entries, as in an older recording.
        let mut removed = 0;
        let mut units_removed = 0;
        for base in ["sys/bus/pci/drivers", "sys/devices/virtual/iommu"] {
            let Ok(dirs) = std::fs::read_dir(b.dir.path().join(base)) else {
                continue;
            };
            for d in dirs.flatten() {
                let list = if base.ends_with("iommu") {
                    d.path().join("devices")
                } else {
                    d.path()
                };
                for e in std::fs::read_dir(&list).into_iter().flatten().flatten() {
                    if e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<PciAddress>().is_ok())
                    {
                        std::fs::remove_file(e.path()).unwrap();
                        removed += 1;
                        if base.ends_with("iommu") {
                            units_removed += 1;
                        }
                    }
                }
                if base.ends_with("iommu") {
                    let _ = std::fs::remove_dir(&list);
                }
            }
        }
        unit_entries += units_removed;
        let again = scan::scan(&b.root()).unwrap();
        assert_eq!(
            again, b.host,
            "{name}: link by link ({removed} entries taken away) differs"
        );
    }
    assert!(
        unit_entries > 50,
        "only {unit_entries} unit entries: the unit side is barely tried"
    );
    assert!(
        bound > 50,
        "only {bound} bound devices: the test would show little"
    );
}

/// A whole-host scan reads one `bus/pci/devices` link per parent directory and finds that
/// parent's other devices in its listing; `scan_device` reads the one device through its own
/// link. On every recorded machine and an SR-IOV farm, every device is the same both ways
/// (its VFs aside, which only a whole-host scan gathers), and the listing did spare links.
#[test]
fn devices_found_in_their_parents_listing_are_those_their_links_name() {
    let specs = machines_and_a_farm();
    let mut devices = 0;
    let mut beside = 0;
    for (name, spec) in &specs {
        let b = build(spec);
        let root = b.root();
        let page = b.host.platform.page_size;
        let mut parents = std::collections::BTreeSet::new();
        for d in b.host.devices.values() {
            let alone = scan::scan_device(&root, d.address, page)
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: {} not read alone", d.address));
            let mut whole = d.clone();
            whole.virtfns.clear();
            assert_eq!(alone, whole, "{name}: {}", d.address);
            devices += 1;
            let parent = std::path::Path::new(&d.sysfs_path)
                .parent()
                .unwrap()
                .to_path_buf();
            if !parents.insert(parent) {
                beside += 1;
            }
        }
    }
    assert!(devices > 300, "only {devices} devices compared");
    assert!(
        beside > devices / 2,
        "{beside} of {devices} beside another: little spared"
    );
}

/// Every recorded machine and a small SR-IOV farm (3 PFs × 5 VFs).
fn machines_and_a_farm() -> Vec<(String, passage_core::synth::MachineSpec)> {
    let mut specs = machines();
    specs.push((
        "sriov-farm-3x5".into(),
        passage_core::synth::sriov_farm(3, 5),
    ));
    specs
}
