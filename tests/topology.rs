//! The topology picture (`topology::layout`, `passagectl draw`): on every recorded machine, the
//! demo host and a generated SR-IOV host, every device is drawn exactly once, each group's box
//! holds exactly the kernel's members and nothing else, no two boxes (and no two devices)
//! overlap, and every line follows a real parent link. The SVG is checked by its consumers:
//! xmllint against the SVG 1.1 DTD, and rsvg-convert renders it.

mod common;

use common::{build, load, machines, passagectl};
use passage_core::synth::{sriov_farm, MachineSpec};
use passage_core::topology::{self, Layout, NodeKind, Options};
use passage_core::{demo, GroupId, Host, PciAddress};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const SVG_DTD: &str = "/usr/share/xml/w3c-sgml-lib/schema/dtd/REC-SVG11-20110816/svg11.dtd";

/// Every promise the picture makes, checked against the host it was drawn from.
fn check(name: &str, host: &Host, l: &Layout, opts: &Options) {
    // Which devices the options ask for: everything, or the chosen groups, every bridge above
    // a device drawn, and the whole group of every device drawn.
    let expected: BTreeSet<PciAddress> = match &opts.only {
        None => host.devices.keys().copied().collect(),
        Some(gs) => {
            let mut s: BTreeSet<PciAddress> = BTreeSet::new();
            for g in gs {
                s.extend(
                    host.groups[g]
                        .devices
                        .iter()
                        .filter(|a| host.devices.contains_key(a)),
                );
            }
            loop {
                let mut more = s.clone();
                for a in &s {
                    let d = &host.devices[a];
                    more.extend(d.bridges.iter().filter(|b| host.devices.contains_key(b)));
                    if let Some(g) = d.group.and_then(|g| host.groups.get(&g)) {
                        more.extend(g.devices.iter().filter(|m| host.devices.contains_key(m)));
                    }
                }
                if more == s {
                    break s;
                }
                s = more;
            }
        }
    };
    // Each device drawn exactly once, or folded into exactly one count (never both).
    let mut drawn: BTreeMap<PciAddress, usize> = BTreeMap::new();
    let mut folded: BTreeMap<PciAddress, usize> = BTreeMap::new();
    for (i, n) in l.nodes.iter().enumerate() {
        match &n.kind {
            NodeKind::Device(a) => {
                assert!(drawn.insert(*a, i).is_none(), "{name}: {a} is drawn twice");
            }
            NodeKind::Fold { pf, vfs } => {
                assert!(opts.only.is_none() && !opts.all_vfs, "{name}: a fold");
                for v in vfs {
                    assert_eq!(
                        host.devices[v].physfn,
                        Some(*pf),
                        "{name}: {v} folded under {pf}"
                    );
                    assert!(folded.insert(*v, i).is_none(), "{name}: {v} folded twice");
                }
            }
            NodeKind::RootBus(_) => {}
        }
    }
    for a in &expected {
        assert!(
            drawn.contains_key(a) ^ folded.contains_key(a),
            "{name}: {a} is drawn {} and folded {}",
            drawn.contains_key(a),
            folded.contains_key(a)
        );
    }
    assert_eq!(
        drawn.len() + folded.len(),
        expected.len(),
        "{name}: devices drawn beyond what was asked for"
    );
    for a in drawn.keys() {
        assert!(
            host.devices.contains_key(a),
            "{name}: {a} is not on the host"
        );
    }

    // Boxes: one per group with a drawn member, holding exactly the kernel's members.
    let groups_drawn: BTreeSet<GroupId> = drawn
        .keys()
        .filter_map(|a| host.devices[a].group)
        .filter(|g| host.groups.contains_key(g))
        .collect();
    let boxed: BTreeSet<GroupId> = l.boxes.iter().map(|b| b.group).collect();
    assert_eq!(groups_drawn, boxed, "{name}: one box per group drawn");
    assert_eq!(boxed.len(), l.boxes.len(), "{name}: a group boxed twice");
    for b in &l.boxes {
        let members: BTreeSet<PciAddress> = b
            .nodes
            .iter()
            .map(|n| l.nodes[*n].address().expect("a device in a box"))
            .collect();
        let kernel: BTreeSet<PciAddress> = host.groups[&b.group]
            .devices
            .iter()
            .copied()
            .filter(|a| host.devices.contains_key(a))
            .collect();
        assert_eq!(members, kernel, "{name}: group {}'s box", b.group);
        for (i, n) in l.nodes.iter().enumerate() {
            if b.nodes.contains(&i) {
                assert!(
                    b.rect.contains(&n.rect),
                    "{name}: {} sticks out of group {}'s box",
                    n.title,
                    b.group
                );
            } else {
                assert!(
                    !b.rect.overlaps(&n.rect),
                    "{name}: {} ({:?}) lies inside group {}'s box",
                    n.title,
                    n.kind,
                    b.group
                );
            }
        }
        assert_eq!(
            b.state,
            passage_core::explain::group(host, &host.groups[&b.group]).state
        );
    }
    for (i, a) in l.boxes.iter().enumerate() {
        for b in &l.boxes[i + 1..] {
            assert!(
                !a.rect.overlaps(&b.rect),
                "{name}: the boxes of groups {} and {} overlap",
                a.group,
                b.group
            );
        }
    }
    // No two nodes overlap (sorted sweep: 10,000 nodes stay fast).
    let mut order: Vec<usize> = (0..l.nodes.len()).collect();
    order.sort_by(|a, b| l.nodes[*a].rect.y.total_cmp(&l.nodes[*b].rect.y));
    for (k, i) in order.iter().enumerate() {
        let r = l.nodes[*i].rect;
        for j in &order[k + 1..] {
            let o = l.nodes[*j].rect;
            if o.y >= r.bottom() {
                break;
            }
            assert!(
                !r.overlaps(&o),
                "{name}: {} and {} overlap",
                l.nodes[*i].title,
                l.nodes[*j].title
            );
        }
        assert!(r.x >= 0.0 && r.y >= 0.0 && r.right() <= l.width && r.bottom() <= l.height + 0.01);
    }

    // Lines: one into every node but the root buses, from its real parent.
    let mut into: BTreeMap<usize, usize> = BTreeMap::new();
    for e in &l.edges {
        assert!(
            into.insert(e.to, e.from).is_none(),
            "{name}: two lines into {}",
            l.nodes[e.to].title
        );
        let (a, b) = (l.nodes[e.from].rect, l.nodes[e.to].rect);
        let (first, last) = (e.points[0], *e.points.last().unwrap());
        assert!((first.0 - a.right()).abs() < 0.01 && first.1 > a.y && first.1 < a.bottom());
        assert!((last.0 - b.x).abs() < 0.01 && last.1 > b.y && last.1 < b.bottom());
    }
    let root_node = |bus: &str| {
        l.nodes
            .iter()
            .position(|n| n.kind == NodeKind::RootBus(bus.to_string()))
            .unwrap_or_else(|| panic!("{name}: no node for {bus}"))
    };
    for (i, n) in l.nodes.iter().enumerate() {
        let want = match &n.kind {
            NodeKind::RootBus(_) => {
                assert!(!into.contains_key(&i), "{name}: a line into a root bus");
                continue;
            }
            NodeKind::Device(a) => {
                let d = &host.devices[a];
                d.parent
                    .filter(|p| p != a)
                    .and_then(|p| drawn.get(&p).copied())
                    .unwrap_or_else(|| root_node(&d.root_bus))
            }
            NodeKind::Fold { vfs, .. } => {
                let d = &host.devices[&vfs[0]];
                d.parent
                    .and_then(|p| drawn.get(&p).copied())
                    .unwrap_or_else(|| root_node(&d.root_bus))
            }
        };
        assert_eq!(
            into.get(&i),
            Some(&want),
            "{name}: the line into {}",
            n.title
        );
        if let NodeKind::Device(a) = n.kind {
            // A drawn parent is the real one, never a stand-in.
            if let Some(p) = host.devices[&a].parent.filter(|p| *p != a) {
                if drawn.contains_key(&p) {
                    assert_eq!(l.nodes[want].address(), Some(p));
                }
            }
        }
    }
}

fn all_options() -> Vec<(&'static str, Options)> {
    vec![
        ("folded", Options::default()),
        (
            "all VFs",
            Options {
                all_vfs: true,
                ..Default::default()
            },
        ),
    ]
}

/// The hosts, built once for every test and property case in this file.
fn hosts() -> &'static [(String, Host)] {
    static HOSTS: std::sync::OnceLock<Vec<(String, Host)>> = std::sync::OnceLock::new();
    HOSTS.get_or_init(build_hosts)
}

fn build_hosts() -> Vec<(String, Host)> {
    let mut out: Vec<(String, Host)> = machines()
        .into_iter()
        .map(|(n, spec)| (n, build(&spec).host))
        .collect();
    out.push((
        "demo".into(),
        build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap()).host,
    ));
    out.push(("sriov-farm-6x12".into(), build(&sriov_farm(6, 12)).host));
    let mut off = load("msi-z370i-i5-8400-gtx1070");
    off.host.iommu = Some("off".into());
    out.push(("iommu-off".into(), build(&off).host));
    out
}

#[test]
fn every_recorded_machine_draws_each_device_once_in_its_groups_box_without_overlaps() {
    let hosts = hosts();
    assert!(hosts.len() >= 15, "the recorded machines are missing");
    for (name, host) in hosts {
        for (how, opts) in all_options() {
            let l = topology::layout(host, &opts);
            check(&format!("{name} ({how})"), host, &l, &opts);
            assert_eq!(l.iommu, host.iommu_enabled());
        }
        // Each group on its own, with what leads to it: every box drawn is whole.
        for g in host.groups.keys() {
            let opts = Options {
                only: Some([*g].into()),
                ..Default::default()
            };
            let l = topology::layout(host, &opts);
            check(&format!("{name} (group {g})"), host, &l, &opts);
            assert!(l.box_of(*g).is_some());
        }
    }
}

#[test]
fn vfs_fold_under_their_pf_with_a_count_until_opened() {
    let host = build(&sriov_farm(3, 5)).host;
    let l = topology::layout(&host, &Options::default());
    let folds: Vec<(PciAddress, usize)> = l
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Fold { pf, vfs } => Some((*pf, vfs.len())),
            _ => None,
        })
        .collect();
    assert_eq!(folds.len(), 3, "{folds:?}");
    assert!(folds.iter().all(|(_, n)| *n == 5));
    let fold = l
        .nodes
        .iter()
        .find(|n| matches!(n.kind, NodeKind::Fold { .. }))
        .unwrap();
    assert_eq!(fold.title, "5 virtual functions");
    // Opening one PF draws its VFs, each in its own box; the others stay folded.
    let pf = folds[0].0;
    let opts = Options {
        opened: [pf].into(),
        ..Default::default()
    };
    let l = topology::layout(&host, &opts);
    check("farm, one PF opened", &host, &l, &opts);
    let vfs = &host.devices[&pf].virtfns;
    assert_eq!(vfs.len(), 5);
    for v in vfs {
        let n = l.node_of(*v).expect("an opened VF is drawn");
        assert!(l.nodes[n].group.is_some());
    }
    assert_eq!(
        l.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Fold { .. }))
            .count(),
        2
    );
}

#[test]
fn shared_groups_are_marked_on_the_port_that_causes_them_and_ports_say_why() {
    let host = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap()).host;
    let l = topology::layout(&host, &Options::default());
    let node = |a: &str| &l.nodes[l.node_of(a.parse().unwrap()).unwrap()];
    // The chipset's switch without ACS: its group takes everything below it.
    let sw = node("0000:02:00.2");
    assert!(
        sw.marks.iter().any(|m| m.code == "shape-no-acs"),
        "{:?}",
        sw.marks
    );
    assert!(sw.note.contains("does not isolate"), "{}", sw.note);
    // A CPU root port with ACS isolates the GPU below it.
    let port = node("0000:00:03.1");
    assert!(
        port.note.contains("isolates what is below it"),
        "{}",
        port.note
    );
    assert!(port.marks.is_empty());
    // The GPU's functions share a group as one card.
    assert!(node("0000:0b:00.0")
        .marks
        .iter()
        .any(|m| m.code == "shape-multifunction"));
    // States and guests on the boxes.
    let gpu = &l.boxes[l.box_of(GroupId(19)).unwrap()];
    assert_eq!(gpu.guest.as_deref(), None);
    let plan = demo::plan().unwrap();
    let opts = Options {
        guests: topology::guests_of(&plan, &Default::default()),
        ..Default::default()
    };
    let l = topology::layout(&host, &opts);
    let gpu = &l.boxes[l.box_of(GroupId(19)).unwrap()];
    assert_eq!(gpu.guest.as_deref(), Some("win11"));
    assert!(gpu.header.contains("win11"), "{}", gpu.header);
    assert!(gpu.label.starts_with("Group 19, "), "{}", gpu.label);
}

#[test]
fn a_group_the_tree_cannot_explain_still_gets_one_whole_box() {
    // The kernel may join devices from different ports (a DMA-alias quirk, a platform IOMMU):
    // the NIC's functions and the GPU's, under two root ports, in one group.
    let mut host = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap()).host;
    let gpu: Vec<PciAddress> = host.groups[&GroupId(19)].devices.clone();
    host.groups.remove(&GroupId(19));
    for a in &gpu {
        host.devices.get_mut(a).unwrap().group = Some(GroupId(18));
    }
    host.groups
        .get_mut(&GroupId(18))
        .unwrap()
        .devices
        .extend(gpu);
    // And a member that is not a PCI function (a platform device, as on ARM): not drawn, but
    // the box says it goes with the group.
    host.groups
        .get_mut(&GroupId(18))
        .unwrap()
        .other_members
        .push("platform:fe200000.dma".into());
    let l = topology::layout(&host, &Options::default());
    check("demo, joined across ports", &host, &l, &Options::default());
    let b = &l.boxes[l.box_of(GroupId(18)).unwrap()];
    assert_eq!(b.nodes.len(), 4);
    assert!(
        b.marks
            .iter()
            .any(|m| m.code == "non-pci-members" && m.message.contains("fe200000.dma")),
        "{:?}",
        b.marks
    );

    // A model whose parent links loop (no scan makes one; a hostile model must not hang, drop
    // devices or stack them): a switch port and the NVMe drive below it named as each other's
    // parent, inside one group, and a device that is its own parent.
    let mut host = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap()).host;
    let (a, b): (PciAddress, PciAddress) = (
        "0000:03:04.0".parse().unwrap(),
        "0000:05:00.0".parse().unwrap(),
    );
    host.devices.get_mut(&a).unwrap().parent = Some(b);
    let c: PciAddress = "0000:07:00.0".parse().unwrap();
    host.devices.get_mut(&c).unwrap().parent = Some(c);
    let l = topology::layout(&host, &Options::default());
    check(
        "demo, parent links in a loop",
        &host,
        &l,
        &Options::default(),
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]
    /// Whatever groups the kernel makes (here: any partition of a recorded machine's devices,
    /// including groups that span ports and groups with non-PCI members), the promises hold.
    #[test]
    fn any_grouping_of_a_recorded_machine_keeps_the_pictures_promises(
        machine in proptest::prelude::any::<proptest::sample::Index>(),
        odd in 0u8..5,
        groups in 1u32..12,
        seed in proptest::collection::vec(0u32..1000, 64),
        platform_member in proptest::bool::ANY,
    ) {
        let all = hosts();
        let (name, host) = &all[machine.index(all.len())];
        let mut host = host.clone();
        if host.iommu_enabled() {
            host.groups.clear();
            let addrs: Vec<PciAddress> = host.devices.keys().copied().collect();
            for (i, a) in addrs.iter().enumerate() {
                let g = GroupId(seed[i % seed.len()].wrapping_add(i as u32 / seed.len() as u32) % groups);
                host.devices.get_mut(a).unwrap().group = Some(g);
                host.groups
                    .entry(g)
                    .or_insert_with(|| passage_core::model::Group {
                        id: g,
                        devices: Vec::new(),
                        other_members: Vec::new(),
                        kind: Some("DMA".into()),
                    })
                    .devices
                    .push(*a);
            }
            if platform_member {
                if let Some(g) = host.groups.values_mut().next() {
                    g.other_members.push("platform:ffff0000.smmu-client".into());
                }
            }
        }
        // Odd models: a parent that is not on the host, a device its own parent, a group
        // listing an address that is not on the host, a device naming a group that is not.
        let some = host.devices.keys().nth(seed[0] as usize % host.devices.len()).copied().unwrap();
        match odd {
            1 => host.devices.get_mut(&some).unwrap().parent = "00ff:ff:1f.7".parse().ok(),
            2 => host.devices.get_mut(&some).unwrap().parent = Some(some),
            3 => {
                if let Some(g) = host.groups.values_mut().next() {
                    g.devices.push("00ff:ff:1f.7".parse().unwrap());
                }
            }
            4 => {
                let d = host.devices.get_mut(&some).unwrap();
                if let Some(g) = d.group {
                    d.group = Some(GroupId(9999));
                    if let Some(gr) = host.groups.get_mut(&g) {
                        gr.devices.retain(|a| *a != some);
                        if gr.devices.is_empty() && gr.other_members.is_empty() {
                            host.groups.remove(&g);
                        }
                    }
                }
            }
            _ => {}
        }
        for (how, opts) in all_options() {
            let l = topology::layout(&host, &opts);
            check(&format!("{name} regrouped ({how})"), &host, &l, &opts);
        }
    }
}

fn dtd() -> &'static str {
    assert!(
        Path::new(SVG_DTD).is_file(),
        "the SVG 1.1 DTD is missing ({SVG_DTD}): install w3c-sgml-lib (./dev test does)"
    );
    SVG_DTD
}

/// xmllint validates against SVG 1.1 and rsvg-convert renders it; returns the PNG's size.
fn consumers_accept(svg: &Path) -> (u32, u32) {
    let o = Command::new("xmllint")
        .args(["--noout", "--nonet", "--dtdvalid", dtd()])
        .arg(svg)
        .output()
        .expect("xmllint (libxml2-utils) is missing");
    assert!(
        o.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let png = svg.with_extension("png");
    let o = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg)
        .output()
        .expect("rsvg-convert (librsvg2-bin) is missing");
    assert!(
        o.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn draw_writes_svg_that_xmllint_validates_and_rsvg_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.svg");
    let o = passagectl()
        .args(["--demo", "draw", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h) = consumers_accept(&out);
    assert!(w > 600 && h > 1000, "{w}x{h}");
    let svg = std::fs::read_to_string(&out).unwrap();
    // Every group box, the guests the demo plan names, the marks.
    let host = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap()).host;
    for g in host.groups.keys() {
        assert!(svg.contains(&format!("id=\"group-{g}\"")), "group {g}");
    }
    assert!(svg.contains("→ win11"));
    assert!(svg.contains(">no ACS<"));
    // Ports say why in their tooltips.
    assert!(svg.contains("does not isolate what is below it"));

    // One group: it, the ports above it and their groups, nothing else.
    let o = passagectl()
        .args(["--demo", "draw", "--group", "19"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let one = String::from_utf8(o.stdout).unwrap();
    assert!(one.contains("id=\"group-19\"") && one.contains("id=\"group-6\""));
    assert!(!one.contains("id=\"group-17\""));
    let f = dir.path().join("one.svg");
    std::fs::write(&f, &one).unwrap();
    consumers_accept(&f);

    // Bad words change nothing and say what is wrong.
    for (args, says) in [
        (vec!["--group", "999"], "no IOMMU group 999"),
        (vec!["--group", "gpu"], "not an IOMMU group number"),
    ] {
        let o = passagectl()
            .args(["--demo", "draw"])
            .args(&args)
            .arg("-o")
            .arg(dir.path().join("bad.svg"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!dir.path().join("bad.svg").exists());
    }
}

#[test]
fn draw_on_a_host_without_an_iommu_and_on_an_sriov_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut off = load("msi-z370i-i5-8400-gtx1070");
    off.host.iommu = Some("off".into());
    let tree = dir.path().join("off");
    off.write_tree(&tree).unwrap();
    let out = dir.path().join("off.svg");
    let o = passagectl()
        .arg("--root")
        .arg(&tree)
        .args(["draw", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    consumers_accept(&out);
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("The IOMMU is off"));
    assert!(!svg.contains("id=\"group-"));

    let farm = dir.path().join("farm");
    sriov_farm(4, 16).write_tree(&farm).unwrap();
    let run = |extra: &[&str]| {
        let o = passagectl()
            .arg("--root")
            .arg(&farm)
            .arg("draw")
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let folded = run(&[]);
    assert_eq!(folded.matches(">16 virtual functions<").count(), 4);
    let all = run(&["--all-vfs"]);
    assert!(!all.contains("virtual functions<"));
    assert_eq!(all.matches("id=\"group-").count(), 4 * 17 + 1 + 4);
    let f = dir.path().join("farm.svg");
    std::fs::write(&f, &all).unwrap();
    consumers_accept(&f);
}
