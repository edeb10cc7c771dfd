//! The app's decisions without pixels: cards under their ports, filters, a drop that assigns
//! or is refused with the reason, hiding and readdressing from an expanded card, "Why?".

mod common;
use common::*;
use passage_core::explain::State;
use passage_core::synth::MachineSpec;
use passage_core::view::{self, Filter, Holders, Kind};
use passage_core::{demo, plan, GroupId};

fn demo_host() -> Built {
    build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap())
}

fn card(sections: &[view::Section], g: u32) -> &view::Card {
    sections
        .iter()
        .flat_map(|s| &s.cards)
        .map(|c| &**c)
        .find(|c| c.group == GroupId(g))
        .unwrap_or_else(|| panic!("no card for group {g}"))
}

#[test]
fn cards_sit_under_the_port_they_are_behind_and_say_what_the_plan_does() {
    let b = demo_host();
    let plan = demo::plan().unwrap();
    let s = view::sections(&b.host, &plan, &Holders::new());
    let gpu_section = s
        .iter()
        .find(|s| s.cards.iter().any(|c| c.group == GroupId(19)))
        .unwrap();
    assert!(
        gpu_section.title.contains("0000:00:03.1"),
        "{}",
        gpu_section.title
    );
    let gpu = card(&s, 19);
    assert_eq!(gpu.title, "NVIDIA GA102 + HD Audio");
    assert_eq!(gpu.badge, "pending → win11");
    assert_eq!(gpu.planned_for.as_deref(), Some("win11"));
    assert!(gpu.kinds.contains(&Kind::Gpu) && gpu.kinds.contains(&Kind::Audio));
    let rows: Vec<(String, Option<bool>, Option<String>)> = gpu
        .devices
        .iter()
        .map(|d| {
            (
                d.address.to_string(),
                d.visible,
                d.guest_address.map(|a| a.to_string()),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("0000:0b:00.0".into(), Some(true), Some("01:00.0".into())),
            ("0000:0b:00.1".into(), Some(true), Some("01:00.1".into())),
        ]
    );
    // The NIC's hidden port shows as held, without a guest address.
    let nic = card(&s, 18);
    let hidden = nic
        .devices
        .iter()
        .find(|d| d.address.to_string() == "0000:09:00.1")
        .unwrap();
    assert_eq!((hidden.visible, hidden.guest_address), (Some(false), None));
    // The root disk's group is host-critical and says why on the card.
    let root = card(&s, 16);
    assert_eq!(root.state, State::HostCritical);
    assert!(root.headline.as_deref().unwrap().contains("holds /"));
    // A guest that holds a group on the host (its libvirt definition) shows as assigned.
    let mut holders = Holders::new();
    holders.insert(GroupId(19), "win11".into());
    let s = view::sections(&b.host, &plan, &holders);
    assert_eq!(card(&s, 19).badge, "assigned → win11");
}

#[test]
fn the_filter_finds_by_words_class_and_state() {
    let b = demo_host();
    let s = view::sections(&b.host, &plan::Plan::default(), &Holders::new());
    let count = |f: &Filter| {
        view::filtered(&s, f)
            .iter()
            .map(|x| x.cards.len())
            .sum::<usize>()
    };
    let all = count(&Filter::default());
    assert_eq!(all, b.host.groups.len());
    let f = Filter {
        text: "nvidia audio".into(),
        ..Default::default()
    };
    let hits: Vec<GroupId> = view::filtered(&s, &f)
        .iter()
        .flat_map(|x| x.cards.iter().map(|c| c.group))
        .collect();
    assert_eq!(hits, vec![GroupId(19)]);
    let usb = count(&Filter {
        kind: Some(Kind::Usb),
        ..Default::default()
    });
    assert!(usb >= 2 && usb < all, "{usb}");
    let critical = count(&Filter {
        state: Some(State::HostCritical),
        ..Default::default()
    });
    assert_eq!(critical, 2, "the root disk's group and the chipset group");
    let useful = count(&Filter {
        assignable_only: true,
        ..Default::default()
    });
    assert!(useful < all);
    assert_eq!(
        count(&Filter {
            text: "no such device anywhere".into(),
            ..Default::default()
        }),
        0
    );
}

#[test]
fn dropping_a_group_on_a_guest_assigns_it_or_says_why_not() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    // The GPU group moves from win11 to ci-runner with a drop.
    let after = view::drop_on(&mut p, &b.host, GroupId(19), "ci-runner").unwrap();
    assert!(after.iter().all(|x| x.severity == plan::Severity::Warning));
    assert_eq!(p.holder(GroupId(19)).unwrap().name, "ci-runner");
    // The root disk's group is refused at the drop, with the reason, and nothing changes.
    let before = p.clone();
    let why = view::drop_on(&mut p, &b.host, GroupId(16), "router")
        .unwrap_err()
        .to_string();
    assert!(
        why.contains("needed by the host") && why.contains("holds /"),
        "{why}"
    );
    assert_eq!(p, before);
    // A group of bridges has nothing to give.
    let bridges = b.host.group_of("0000:00:01.1".parse().unwrap()).unwrap().id;
    assert!(view::drop_on(&mut p, &b.host, bridges, "router").is_err());
    assert_eq!(p, before);
}

#[test]
fn an_expanded_card_hides_and_readdresses_devices_checked_live() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    let audio = "0000:0b:00.1".parse().unwrap();
    p.try_edit(&b.host, |p| p.set_visible(audio, false))
        .unwrap();
    let s = view::sections(&b.host, &p, &Holders::new());
    let row = card(&s, 19)
        .devices
        .iter()
        .find(|d| d.address == audio)
        .unwrap()
        .clone();
    assert_eq!((row.visible, row.guest_address), (Some(false), None));
    // The GPU is alone in its slot now: not multifunction.
    let r = plan::resolve(p.guest("win11").unwrap(), &b.host);
    assert!(!r.devices.iter().any(|d| d.multifunction));
    // Typing a clashing address is refused live; a free one is taken.
    let gpu = "0000:0b:00.0".parse().unwrap();
    let usb_at = "02:00.0".parse().unwrap();
    assert!(
        p.try_edit(&b.host, |p| p.set_guest_address(gpu, Some(usb_at)))
            .is_ok(),
        "the USB card was placed, not chosen: it makes room"
    );
    let usb = "0000:0c:00.0".parse().unwrap();
    let e = p
        .try_edit(&b.host, |p| p.set_guest_address(usb, Some(usb_at)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("02:00.0"), "{e}");
}

#[test]
fn why_tells_what_stands_in_the_way_the_shape_and_what_the_host_loses() {
    let b = demo_host();
    let w = view::why(&b.host, GroupId(19)).unwrap();
    assert_eq!(w.title, "NVIDIA GA102 + HD Audio");
    assert!(w.in_the_way.iter().any(|r| r.code == "host-driver"));
    assert!(w.shape.iter().any(|r| r.code == "shape-multifunction"));
    assert_eq!(w.host_loses.len(), 2, "{:?}", w.host_loses);
    assert!(w.host_loses[0].contains("nvidia"));
    // The chipset group: the host loses its SATA, USB, NIC and display.
    let chipset = view::why(&b.host, GroupId(17)).unwrap();
    assert!(chipset.host_loses.len() >= 5, "{:?}", chipset.host_loses);
    assert!(chipset.in_the_way.iter().any(|r| r.code == "default-route"));
    assert!(view::why(&b.host, GroupId(999)).is_none());
}

#[test]
fn one_card_is_the_same_card_the_whole_list_draws() {
    let b = demo_host();
    let plan = demo::plan().unwrap();
    let s = view::sections(&b.host, &plan, &Holders::new());
    for g in [14, 16, 18, 19, 20] {
        assert_eq!(
            view::card_of(&b.host, &plan, &Holders::new(), GroupId(g)).as_ref(),
            Some(card(&s, g)),
            "group {g}"
        );
    }
    assert_eq!(
        view::card_of(&b.host, &plan, &Holders::new(), GroupId(999)),
        None
    );
}

#[test]
fn a_card_stops_saying_pending_once_apply_has_claimed_its_group() {
    use passage_helper::claim::Kernel;
    let b = demo_host();
    let plan = demo::plan().unwrap();
    let s = view::sections(&b.host, &plan, &Holders::new());
    let nic = card(&s, 18);
    assert!(nic.pending);
    assert_eq!(nic.badge, "pending → router");
    // Apply claims router's group (a plain QEMU guest keeps it claimed): both ports on
    // vfio-pci, the way the helper binds them.
    let k = passage_helper::fakekernel::FakeKernel::new(b.dir.path()).unwrap();
    for a in ["0000:09:00.0", "0000:09:00.1"] {
        k.write(
            std::path::Path::new(&format!("sys/bus/pci/devices/{a}/driver_override")),
            "vfio-pci",
        )
        .unwrap();
        k.write(std::path::Path::new("sys/bus/pci/drivers_probe"), a)
            .unwrap();
    }
    let host = passage_core::scan::scan(&b.root()).unwrap();
    let s = view::sections(&host, &plan, &Holders::new());
    let nic = card(&s, 18);
    assert_eq!(nic.state, State::Assigned);
    assert!(!nic.pending);
    assert_eq!(nic.badge, "assigned → router");
    // A group libvirt holds for another guest than the plan's is still pending.
    let mut holders = Holders::new();
    holders.insert(GroupId(18), "someone-else".into());
    let s = view::sections(&host, &plan, &holders);
    assert!(card(&s, 18).pending);
}

/// The app lists every group from the outline at once and makes a card only when its row is
/// drawn (or a filter needs them all): the outline, the cheap "assignable" and a filter that
/// asks only that must agree with the cards, on every recorded machine and an SR-IOV farm.
#[test]
fn the_outline_lists_what_the_cards_would_in_the_same_order() {
    let mut specs = machines();
    specs.push((
        "sriov-farm-3x5".into(),
        passage_core::synth::sriov_farm(3, 5),
    ));
    for (name, spec) in specs {
        let b = build(&spec);
        let plan = plan::Plan::default();
        let sections = view::sections(&b.host, &plan, &Holders::new());
        let outline = view::outline(&b.host);
        assert_eq!(outline.len(), sections.len(), "{name}");
        let mut groups = 0;
        for (o, s) in outline.iter().zip(&sections) {
            assert_eq!(o.title, s.title, "{name}");
            let of_cards: Vec<GroupId> = s.cards.iter().map(|c| c.group).collect();
            assert_eq!(o.groups, of_cards, "{name}: {}", o.title);
            groups += o.groups.len();
            for c in &s.cards {
                assert_eq!(
                    view::assignable(&b.host, c.group),
                    c.assignable,
                    "{name}: group {}",
                    c.group
                );
                // A card made alone (as a row drawn) is the card made with all the others.
                assert_eq!(
                    view::card_of(&b.host, &plan, &Holders::new(), c.group).as_ref(),
                    Some(&**c),
                    "{name}"
                );
            }
        }
        assert_eq!(
            groups,
            b.host.groups.len(),
            "{name}: every group listed once"
        );
        let mut seen = std::collections::BTreeSet::new();
        for o in &outline {
            assert!(!o.groups.is_empty(), "{name}: an empty section {}", o.title);
            // Within a section, groups in their numbers' order; no group twice anywhere.
            assert!(
                o.groups.windows(2).all(|w| w[0] < w[1]),
                "{name}: {}",
                o.title
            );
            for g in &o.groups {
                assert!(seen.insert(*g), "{name}: group {g} listed twice");
                assert_eq!(view::section_title_of(&b.host, *g), o.title, "{name}");
            }
        }
        // What the list shows with bridges hidden, from the outline alone, is what the cards
        // filtered would show.
        let only = Filter {
            assignable_only: true,
            ..Default::default()
        };
        assert!(!only.needs_cards());
        let by_outline: Vec<GroupId> = outline
            .iter()
            .flat_map(|o| o.groups.iter().copied())
            .filter(|g| view::assignable(&b.host, *g))
            .collect();
        let by_cards: Vec<GroupId> = view::filtered(&sections, &only)
            .iter()
            .flat_map(|s| s.cards.iter().map(|c| c.group))
            .collect();
        assert_eq!(by_outline, by_cards, "{name}");
        assert!(!view::assignable(&b.host, GroupId(u32::MAX)), "{name}");
    }
    for f in [
        Filter {
            text: "nvidia".into(),
            ..Default::default()
        },
        Filter {
            kind: Some(Kind::Gpu),
            ..Default::default()
        },
        Filter {
            state: Some(State::Available),
            ..Default::default()
        },
    ] {
        assert!(f.needs_cards(), "{f:?}");
    }
    assert!(!Filter {
        text: "  ".into(),
        ..Default::default()
    }
    .needs_cards());
}

/// A card made alone, as a row is drawn, says what it says among all the others where a plan
/// gives groups to guests (addresses resolved guest by guest) and libvirt guests hold some.
#[test]
fn a_card_made_alone_is_the_card_made_with_the_plan_and_holders() {
    let b = demo_host();
    let plan = demo::plan().unwrap();
    assert!(!plan.guests.is_empty());
    let mut holders = Holders::new();
    holders.insert(GroupId(19), "win11".into());
    holders.insert(GroupId(16), "elsewhere".into());
    let all = view::cards(&b.host, &plan, &holders);
    assert_eq!(all.len(), b.host.groups.len());
    let mut planned = 0;
    for (g, c) in &all {
        let alone = view::card_of(&b.host, &plan, &holders, *g).expect("a card");
        assert_eq!(&alone, &**c, "group {g}");
        planned += usize::from(c.planned_for.is_some());
        assert_eq!(
            view::section_title_of(&b.host, *g),
            view::outline(&b.host)
                .into_iter()
                .find(|o| o.groups.contains(g))
                .expect("listed")
                .title
        );
    }
    assert!(planned > 0, "the demo plan gives groups to guests");
    assert_eq!(all[&GroupId(19)].held_by.as_deref(), Some("win11"));
    assert_eq!(all[&GroupId(19)].badge, "assigned → win11");
    assert!(view::card_of(&b.host, &plan, &holders, GroupId(u32::MAX)).is_none());
}
