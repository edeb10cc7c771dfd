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

#[test]
fn a_sketch_finished_is_the_host_a_whole_scan_reads() {
    for (name, spec) in every_machine() {
        let b = build(&spec);
        let root = b.root();
        let s = sketch::sketch(&root).expect("sketch");
        assert!(!s.is_whole() || b.host.devices.is_empty(), "{name}");
        assert_eq!(
            s.clone().finish_here(&root).expect("finish"),
            b.host,
            "{name}"
        );
        // Groups detailed first (rows drawn before the rest came) change nothing.
        let mut s2 = s.clone();
        for g in b.host.groups.keys().step_by(3) {
            s2.detail(&root, *g).expect("detail");
        }
        let work = s2.work();
        let read = sketch::read(&root, &work).expect("read");
        let whole = s2.finish(read);
        assert_eq!(whole, b.host, "{name}");
    }
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

/// A device removed between the two steps is not in the finished host, as a whole scan run
/// after the removal would not see it.
#[test]
fn a_device_gone_before_its_details_is_left_out() {
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
    let dir = b.dir.path().join(&d.sysfs_path);
    std::fs::remove_dir_all(&dir).expect("remove the VF's directory");
    let whole = s.finish_here(&root).expect("finish");
    assert!(!whole.devices.contains_key(vf));
    assert!(!whole.devices[&pf].virtfns.contains(vf));
    assert!(!whole.groups[&g].devices.contains(vf));
    let others = b.host.devices.len() - 1;
    assert_eq!(whole.devices.len(), others);
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
