//! The host read in two steps (core::sketch, what the app lists from before its cards' facts
//! are read): finished, it is the host a whole scan reads; a group detailed alone gets the card
//! the whole host gives; what it lists before that is what the whole host lists.

mod common;
use common::*;
use passage_core::scan;
use passage_core::sketch;
use passage_core::synth::MachineSpec;
use passage_core::view::{self, Holders};
use passage_core::{demo, plan, GroupId};

fn every_machine() -> Vec<(String, MachineSpec)> {
    let mut specs = machines();
    specs.push((
        "sriov-farm-3x5".into(),
        passage_core::synth::sriov_farm(3, 5),
    ));
    let demo = MachineSpec::from_json(demo::DEMO_HOST).expect("the demo host");
    // The demo again with what only the details say made to matter: functions with no reset
    // method, others pinned to a driver by driver_override.
    let mut pinned = demo.clone();
    for (i, d) in pinned.devices.iter_mut().enumerate() {
        match i % 3 {
            0 => {
                d.reset_method = None;
                d.has_reset = Some(false);
            }
            1 => d.driver_override = Some("vfio-pci".into()),
            _ => {}
        }
    }
    specs.push(("demo".into(), demo));
    specs.push(("demo-pinned".into(), pinned));
    specs
}

/// Each group's `type` made its own (synth writes one for the whole host), so that a type
/// put on the wrong group shows.
fn types_of_their_own(b: &Built) -> passage_core::Host {
    const KINDS: [&str; 4] = ["DMA", "DMA-FQ", "identity", "blocked"];
    for (i, g) in b.host.groups.keys().enumerate() {
        let t = b
            .dir
            .path()
            .join(format!("sys/kernel/iommu_groups/{g}/type"));
        if t.exists() {
            std::fs::write(&t, format!("{}\n", KINDS[i % KINDS.len()])).expect("write type");
        }
    }
    scan::scan(&b.root()).expect("scan")
}

#[test]
fn a_sketch_finished_is_the_host_a_whole_scan_reads() {
    let mut kinds_seen = std::collections::BTreeSet::new();
    for (name, spec) in every_machine() {
        let b = build(&spec);
        let host = types_of_their_own(&b);
        kinds_seen.extend(host.groups.values().filter_map(|g| g.kind.clone()));
        let root = b.root();
        let s = sketch::sketch(&root).expect("sketch");
        assert!(!s.is_whole(), "{name}: the sketch left nothing to read");
        assert_ne!(s.so_far(), &host, "{name}: a sketch is not the whole host");
        let f = s.clone().finish_here(&root).expect("finish");
        assert!(!f.moved, "{name}");
        assert_eq!(f.host, host, "{name}");
        // Groups detailed first (rows drawn before the rest came) change nothing.
        let mut s2 = s.clone();
        for g in host.groups.keys().step_by(3) {
            s2.detail(&root, *g).expect("detail");
            assert_eq!(
                s2.so_far().groups[g].kind,
                host.groups[g].kind,
                "{name}: group {g}"
            );
        }
        let read = sketch::read(&root, &s2.work()).expect("read");
        let f = s2.finish(read);
        assert!(!f.moved, "{name}");
        assert_eq!(f.host, host, "{name}");
    }
    assert!(
        kinds_seen.len() > 1,
        "every group has the same type: {kinds_seen:?}"
    );
}

/// A group detailed before the rest is read keeps what its card was made from, even when the
/// rest is read after a change (the change's own event brings it).
#[test]
fn a_group_detailed_first_keeps_what_its_card_was_made_from() {
    let b = build(&load("msi-b450m-mortar-raven"));
    let root = b.root();
    let mut s = sketch::sketch(&root).expect("sketch");
    let (a, d) = b
        .host
        .devices
        .iter()
        .find(|(_, d)| d.group.is_some() && d.numa_node.is_none())
        .expect("a device in a group, on no NUMA node");
    let g = d.group.expect("group");
    s.detail(&root, g).expect("detail");
    let numa = b.dir.path().join(&d.sysfs_path).join("numa_node");
    std::fs::write(&numa, "1\n").expect("write");
    let f = sketch::read(&root, &s.work())
        .map(|r| s.finish(r))
        .expect("finish");
    assert_eq!(f.host.devices[a].numa_node, None, "kept as it was detailed");
    // Read whole now, the change shows: the two steps differ only by when they read.
    assert_eq!(
        scan::scan(&root).expect("scan").devices[a].numa_node,
        Some(1)
    );
}

/// The list is laid out from the sketch, and a row's card is made from the sketch once its
/// group is detailed: both must be what the whole host gives. And the details must matter
/// (else this test could not fail): before its group is detailed, some card differs.
#[test]
fn a_group_detailed_alone_gets_the_card_the_whole_host_gives() {
    let mut differ_undetailed = 0;
    for (name, spec) in every_machine() {
        let b = build(&spec);
        let root = b.root();
        // The demo's plan gives groups to guests (their addresses resolved guest by guest);
        // a libvirt guest holds one group.
        let (plan, holders) = match name.as_str() {
            "demo" | "demo-pinned" => {
                let mut h = Holders::new();
                h.insert(GroupId(16), "elsewhere".into());
                (demo::plan().expect("demo plan"), h)
            }
            _ => (plan::Plan::default(), Holders::new()),
        };
        let s = sketch::sketch(&root).expect("sketch");
        assert_eq!(
            view::outline(s.so_far()),
            view::outline(&b.host),
            "{name}: the outline"
        );
        for g in b.host.groups.keys() {
            assert_eq!(
                view::assignable(s.so_far(), *g),
                view::assignable(&b.host, *g),
                "{name}: group {g}"
            );
            let whole = view::card_of(&b.host, &plan, &holders, *g);
            assert!(whole.is_some(), "{name}: group {g}");
            if view::card_of(s.so_far(), &plan, &holders, *g) != whole {
                differ_undetailed += 1;
            }
            let mut one = s.clone();
            one.detail(&root, *g).expect("detail");
            assert_eq!(
                view::card_of(one.so_far(), &plan, &holders, *g),
                whole,
                "{name}: group {g} detailed alone"
            );
        }
    }
    assert!(
        differ_undetailed > 0,
        "no card depends on the details: this test would pass with none read"
    );
}

/// A device removed between the two steps is not in the finished host, nor its group when it
/// was the last member: what a whole scan run after the removal reads.
#[test]
fn a_device_gone_before_its_details_is_left_out_as_a_scan_would() {
    let spec = passage_core::synth::sriov_farm(2, 3);
    let b = build(&spec);
    let root = b.root();
    let s = sketch::sketch(&root).expect("sketch");
    // A virtual function: its PF lists it among its VFs, its group holds it alone.
    let (vf, d) = b
        .host
        .devices
        .iter()
        .find(|(_, d)| d.physfn.is_some())
        .expect("a VF");
    let pf = d.physfn.expect("its PF");
    let g = d.group.expect("its group");
    assert_eq!(b.host.groups[&g].devices, vec![*vf], "alone in its group");
    // As the kernel removes it: its directory, its bus link, its group with it, the PF's link.
    let p = b.dir.path();
    std::fs::remove_dir_all(p.join(&d.sysfs_path)).expect("remove the VF's directory");
    std::fs::remove_file(p.join(format!("sys/bus/pci/devices/{vf}"))).expect("its link");
    std::fs::remove_dir_all(p.join(format!("sys/kernel/iommu_groups/{g}"))).expect("group");
    let pf_dir = p.join(&b.host.devices[&pf].sysfs_path);
    for e in std::fs::read_dir(&pf_dir).expect("PF dir").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("virtfn")
            && std::fs::read_link(e.path()).is_ok_and(|t| t.ends_with(vf.to_string()))
        {
            std::fs::remove_file(e.path()).expect("virtfn link");
        }
    }
    // Seen first when its group's row is drawn, the removal is still told at the finish.
    let mut drawn = s.clone();
    drawn.detail(&root, g).expect("detail");
    assert!(!drawn.so_far().groups.contains_key(&g));
    let f = drawn.finish_here(&root).expect("finish");
    assert!(f.moved, "a removal seen by a drawn row");
    assert_eq!(f.host, scan::scan(&root).expect("scan"));
    let f = s.finish_here(&root).expect("finish");
    assert!(f.moved, "the list must be laid out again");
    assert!(!f.host.devices.contains_key(vf));
    assert!(!f.host.devices[&pf].virtfns.contains(vf));
    assert!(
        !f.host.groups.contains_key(&g),
        "no group with nothing in it"
    );
    assert_eq!(f.host, scan::scan(&root).expect("scan"));
}

/// A malformed attribute only a verdict reads: the sketch places the device, and finishing
/// fails with the very error a whole scan gives, naming the file.
#[test]
fn a_malformed_detail_fails_the_finish_as_it_fails_the_scan() {
    let b = build(&load("msi-b450m-mortar-raven"));
    let root = b.root();
    let d = b
        .host
        .devices
        .values()
        .find(|d| d.group.is_some())
        .expect("a device");
    std::fs::write(
        b.dir.path().join(&d.sysfs_path).join("numa_node"),
        "not a node\n",
    )
    .expect("write");
    let whole = scan::scan(&root)
        .expect_err("the scan refuses it")
        .to_string();
    assert!(whole.contains("numa_node"), "{whole}");
    let mut s = sketch::sketch(&root).expect("the sketch does not read it");
    let g = d.group.expect("group");
    assert_eq!(s.detail(&root, g).expect_err("detail").to_string(), whole);
    let s = sketch::sketch(&root).expect("sketch");
    assert_eq!(s.finish_here(&root).expect_err("finish").to_string(), whole);
}
