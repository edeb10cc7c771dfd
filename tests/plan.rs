//! Plans as a person builds them: whole groups onto guests, devices hidden or readdressed, and
//! every refusal with a reason. On the demo host (built from the ASUS B550 recording) and on
//! every recorded machine.

mod common;
use common::*;
use passage_core::explain::{self, State};
use passage_core::plan::{self, Guest, GuestAddress, Plan, PlanError, Severity, Vmm};
use passage_core::synth::MachineSpec;
use passage_core::{demo, GroupId, Host, PciAddress};

fn demo_host() -> Built {
    build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap())
}

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn at(s: &str) -> GuestAddress {
    s.parse().unwrap()
}

fn codes(problems: &[plan::Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.code.as_str()).collect()
}

fn errors(plan: &Plan, host: &Host) -> Vec<plan::Problem> {
    plan::check(plan, host)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

fn one_guest(vmm: Vmm, machine: &str) -> Plan {
    let mut p = Plan::default();
    let mut g = Guest::new("vm", vmm).unwrap();
    g.machine = machine.into();
    p.add_guest(g).unwrap();
    p
}

#[test]
fn the_demo_plan_is_valid_and_keeps_the_gpu_and_its_audio_in_one_guest_slot() {
    let b = demo_host();
    let p = demo::plan().unwrap();
    assert_eq!(errors(&p, &b.host), vec![], "the demo plan must export");
    let win = plan::resolve(p.guest("win11").unwrap(), &b.host);
    let gpu = win
        .devices
        .iter()
        .find(|d| d.address == a("0000:0b:00.0"))
        .unwrap();
    let audio = win
        .devices
        .iter()
        .find(|d| d.address == a("0000:0b:00.1"))
        .unwrap();
    assert_eq!(gpu.guest_address, Some(at("01:00.0")));
    assert_eq!(audio.guest_address, Some(at("01:00.1")));
    assert!(gpu.multifunction && !audio.multifunction);
    // The USB card gets a root port of its own.
    let usb = win
        .devices
        .iter()
        .find(|d| d.address == a("0000:0c:00.0"))
        .unwrap();
    assert_eq!(usb.guest_address, Some(at("02:00.0")));
    assert_eq!(win.root_ports, vec![1, 2]);
    // The router's second port is hidden: held with the group, not given an address.
    let router = plan::resolve(p.guest("router").unwrap(), &b.host);
    let hidden = router
        .devices
        .iter()
        .find(|d| d.address == a("0000:09:00.1"))
        .unwrap();
    assert!(!hidden.visible && hidden.guest_address.is_none());
    assert!(
        !router.devices[0].multifunction,
        "one visible function is not multifunction"
    );
}

#[test]
fn assigning_takes_the_whole_group_and_moving_it_keeps_the_choices_made() {
    let b = demo_host();
    let mut p = one_guest(Vmm::Qemu, "q35");
    p.add_guest(Guest::new("other", Vmm::Libvirt).unwrap())
        .unwrap();
    p.assign(&b.host, GroupId(19), "vm", false).unwrap();
    let devs: Vec<PciAddress> = p.guest("vm").unwrap().groups[0]
        .devices
        .iter()
        .map(|d| d.address)
        .collect();
    assert_eq!(devs, vec![a("0000:0b:00.0"), a("0000:0b:00.1")]);
    p.set_visible(a("0000:0b:00.1"), false).unwrap();
    // Dropping the group on another guest moves it whole; the hidden audio stays hidden.
    p.assign(&b.host, GroupId(19), "other", false).unwrap();
    assert!(p.guest("vm").unwrap().groups.is_empty());
    let moved = &p.guest("other").unwrap().groups[0];
    assert!(!moved.devices[1].visible);
    assert_eq!(p.holder(GroupId(19)).unwrap().name, "other");
}

#[test]
fn a_group_split_between_two_guests_is_refused_with_the_reason() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    // A hand-edited file that gives the GPU to win11 and its audio to the router.
    let audio = p.guests[0].groups[0].devices.remove(1);
    p.guests[1].groups.push(plan::GroupPlan {
        group: GroupId(19),
        force: false,
        devices: vec![audio],
    });
    let e = errors(&p, &b.host);
    let split = e
        .iter()
        .find(|x| x.code == "group-split")
        .expect("group-split");
    assert!(split.message.contains("win11") && split.message.contains("router"));
    assert!(split.remedy.as_deref().unwrap().contains("whole group"));
    // Each half also misses its other member.
    assert!(codes(&e).contains(&"group-changed"));
}

#[test]
fn two_devices_at_one_guest_address_are_refused_and_the_plan_stays_as_it_was() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    for (dev, to) in [("0000:0b:00.0", "03:00.0"), ("0000:0b:00.1", "03:00.1")] {
        p.try_edit(&b.host, |p| p.set_guest_address(a(dev), Some(at(to))))
            .unwrap();
    }
    let before = p.clone();
    let r = p.try_edit(&b.host, |p| {
        p.set_guest_address(a("0000:0c:00.0"), Some(at("03:00.0")))
    });
    match r {
        Err(PlanError::Refused(why)) => {
            assert!(
                why.contains("0000:0b:00.0") && why.contains("0000:0c:00.0"),
                "{why}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(p, before);
}

#[test]
fn a_chosen_address_wins_and_placed_devices_make_room() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    // The USB card asks for the slot the GPU was placed at: the GPU (not chosen) moves.
    let after = p
        .try_edit(&b.host, |p| {
            p.set_guest_address(a("0000:0c:00.0"), Some(at("01:00.0")))
        })
        .unwrap();
    assert!(after.iter().all(|x| x.severity == Severity::Warning));
    let r = plan::resolve(p.guest("win11").unwrap(), &b.host);
    let where_ = |dev: &str| {
        r.devices
            .iter()
            .find(|d| d.address == a(dev))
            .and_then(|d| d.guest_address)
    };
    assert_eq!(where_("0000:0c:00.0"), Some(at("01:00.0")));
    assert_eq!(where_("0000:0b:00.0"), Some(at("02:00.0")));
    assert_eq!(where_("0000:0b:00.1"), Some(at("02:00.1")));
}

#[test]
fn guest_slots_need_function_0_and_q35_ports_have_only_slot_0() {
    let b = demo_host();
    let mut p = demo::plan().unwrap();
    let refused = |p: &mut Plan, dev: &str, to: &str| match p
        .try_edit(&b.host, |p| p.set_guest_address(a(dev), Some(at(to))))
    {
        Err(PlanError::Refused(why)) => why,
        other => panic!("{dev} → {to}: expected a refusal, got {other:?}"),
    };
    assert!(refused(&mut p, "0000:0c:00.0", "03:00.2").contains("function 0"));
    assert!(refused(&mut p, "0000:0c:00.0", "03:04.0").contains("only slot 0"));
    assert!(refused(&mut p, "0000:0c:00.0", "00:04.0").contains("root bus"));
    // On a flat bus (i440fx) the machine's own slots are off limits, and buses do not exist.
    let mut flat = one_guest(Vmm::Qemu, "pc");
    flat.assign(&b.host, GroupId(20), "vm", false).unwrap();
    assert!(refused(&mut flat, "0000:0c:00.0", "00:01.0").contains("machine's own"));
    assert!(refused(&mut flat, "0000:0c:00.0", "02:10.0").contains("one PCI bus"));
    let r = plan::resolve(flat.guest("vm").unwrap(), &b.host);
    assert_eq!(r.devices[0].guest_address, Some(at("00:10.0")));
}

#[test]
fn hiding_function_0_moves_the_rest_of_the_card_to_function_0() {
    let b = demo_host();
    let mut p = one_guest(Vmm::Libvirt, "q35");
    p.assign(&b.host, GroupId(19), "vm", false).unwrap();
    p.set_visible(a("0000:0b:00.0"), false).unwrap();
    let r = plan::resolve(p.guest("vm").unwrap(), &b.host);
    let audio = r
        .devices
        .iter()
        .find(|d| d.address == a("0000:0b:00.1"))
        .unwrap();
    assert_eq!(audio.guest_address, Some(at("01:00.0")));
    assert_eq!(errors(&p, &b.host), vec![]);
}

#[test]
fn a_group_the_host_needs_is_refused_unless_forced() {
    let b = demo_host();
    let root_group = b.host.group_of(a("0000:01:00.0")).unwrap().id;
    assert_eq!(
        explain::group(&b.host, &b.host.groups[&root_group]).state,
        State::HostCritical
    );
    let mut p = one_guest(Vmm::Qemu, "q35");
    match p.assign(&b.host, root_group, "vm", false) {
        Err(PlanError::Refused(why)) => assert!(why.contains("holds /"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(p.guest("vm").unwrap().groups.is_empty());
    p.assign(&b.host, root_group, "vm", true).unwrap();
    let problems = plan::check(&p, &b.host);
    let hc = problems.iter().find(|x| x.code == "host-critical").unwrap();
    assert_eq!(
        hc.severity,
        Severity::Warning,
        "forced: still said, no longer an error"
    );
    // A file that drops the force flag is an error again.
    p.guests[0].groups[0].force = false;
    assert!(codes(&errors(&p, &b.host)).contains(&"host-critical"));
}

#[test]
fn groups_of_bridges_unknown_groups_and_unknown_guests_are_clear_errors() {
    let b = demo_host();
    let mut p = one_guest(Vmm::Qemu, "q35");
    let bridge_group = b.host.group_of(a("0000:00:01.1")).unwrap().id;
    assert!(matches!(
        p.assign(&b.host, bridge_group, "vm", false),
        Err(PlanError::NothingToAssign { .. })
    ));
    assert_eq!(
        p.assign(&b.host, GroupId(999), "vm", false),
        Err(PlanError::NoGroup(GroupId(999)))
    );
    assert!(matches!(
        p.assign(&b.host, GroupId(19), "nobody", false),
        Err(PlanError::NoGuest(_))
    ));
    assert_eq!(
        p.set_visible(a("0000:0b:00.0"), false),
        Err(PlanError::NotPlanned(a("0000:0b:00.0")))
    );
}

#[test]
fn a_plan_reopened_on_a_changed_host_names_every_mismatch() {
    let plan = demo::plan().unwrap();
    let mut spec = MachineSpec::from_json(demo::DEMO_HOST).unwrap();
    // Another card in the GPU's slot (an RTX 3090), the USB card gone, and a new function
    // joining the NIC's group.
    for d in &mut spec.devices {
        if d.bdf == "0000:0b:00.0" {
            d.device = Some("2204".into());
        }
    }
    spec.devices.retain(|d| d.bdf != "0000:0c:00.0");
    let mut extra = spec
        .devices
        .iter()
        .find(|d| d.bdf == "0000:09:00.1")
        .unwrap()
        .clone();
    extra.bdf = "0000:09:00.2".into();
    spec.devices.push(extra);
    let b = build(&spec);
    let e = errors(&plan, &b.host);
    let find = |code: &str, dev: &str| {
        e.iter()
            .find(|x| x.code == code && x.device == Some(a(dev)))
            .unwrap_or_else(|| panic!("no {code} for {dev} in {e:#?}"))
    };
    let changed = find("ids-changed", "0000:0b:00.0");
    assert!(changed.message.contains("10de:2206") && changed.message.contains("10de:2204"));
    assert!(find("unknown-device", "0000:0c:00.0").remedy.is_some());
    assert!(find("group-changed", "0000:09:00.2")
        .message
        .contains("does not know"));
    // None of it can be exported.
    let r = passage_core::export::export(
        &plan,
        &b.host,
        Some("win11"),
        passage_core::export::Format::Libvirt,
        &Default::default(),
    );
    assert!(matches!(
        r,
        Err(passage_core::export::ExportError::Invalid(_))
    ));
}

#[test]
fn every_recorded_machine_gives_every_free_group_a_guest_without_a_clash() {
    for (name, spec) in machines() {
        let b = build(&spec);
        if !b.host.iommu_enabled() {
            continue;
        }
        let mut p = one_guest(Vmm::Libvirt, "q35");
        let mut given = 0;
        for v in explain::groups(&b.host) {
            if v.assignable && v.state != State::HostCritical {
                p.assign(&b.host, v.id, "vm", false)
                    .unwrap_or_else(|e| panic!("{name}: group {}: {e}", v.id));
                given += 1;
            }
        }
        let e = errors(&p, &b.host);
        assert_eq!(e, vec![], "{name}");
        let r = plan::resolve(p.guest("vm").unwrap(), &b.host);
        let mut seen = std::collections::BTreeSet::new();
        for d in r.visible() {
            let ga = d
                .guest_address
                .unwrap_or_else(|| panic!("{name}: {} unplaced", d.address));
            assert!(seen.insert(ga), "{name}: {ga} twice");
            assert_eq!(
                ga.slot, 0,
                "{name}: q35 devices sit at slot 0 of their port"
            );
        }
        // Functions of one host card share one guest slot.
        for d in r.visible() {
            for o in r.visible() {
                if d.address.same_slot(o.address) {
                    assert_eq!(
                        d.guest_address.map(|x| x.slot_key()),
                        o.guest_address.map(|x| x.slot_key()),
                        "{name}: {} and {} apart",
                        d.address,
                        o.address
                    );
                }
            }
        }
        assert!(
            given > 0 || name.contains("partial"),
            "{name}: nothing to give"
        );
    }
}

#[test]
fn a_planned_group_without_devices_is_refused_with_its_guest_and_group() {
    let text = demo::DEMO_PLAN.to_string();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let g = &mut v["guests"][0]["groups"][0];
    let group = g["group"].as_u64().unwrap();
    g["devices"] = serde_json::json!([]);
    let name = v["guests"][0]["name"].as_str().unwrap().to_string();
    let e = Plan::from_json(&v.to_string()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PlanError::Format(_)), "{e:?}");
    assert!(
        msg.contains(&name) && msg.contains(&format!("group {group}")) && msg.contains("devices"),
        "{msg}"
    );
}

mod hostile_plan_files {
    //! Plan files are the user's (or anyone's) text: whatever they hold is a clear error or a
    //! plan every operation handles, never a panic.
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u32>().prop_map(|n| serde_json::json!(n)),
            Just(serde_json::json!(u64::MAX)),
            Just(serde_json::json!(-1.5)),
            prop_oneof![
                Just("0000:0b:00.0".to_string()),
                Just("0000:ff:1f.7".to_string()),
                Just("01:00.0".to_string()),
                Just("1f:1f.7".to_string()),
                Just("libvirt".to_string()),
                Just("on-start".to_string()),
                Just("../../etc".to_string()),
                Just("10de".to_string()),
                ".{0,12}",
            ]
            .prop_map(Value::String),
            Just(serde_json::json!([])),
            Just(serde_json::json!({})),
        ]
    }

    /// Every place in a JSON value, as a path of keys and indices.
    fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let mut p = at.clone();
                    p.push(k.clone());
                    paths(x, p, out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let mut p = at.clone();
                    p.push(i.to_string());
                    paths(x, p, out);
                }
            }
            _ => {}
        }
    }

    fn set(v: &mut Value, path: &[String], new: Value) {
        let mut cur = v;
        for k in path {
            cur = match cur {
                Value::Object(m) => m.get_mut(k).unwrap(),
                Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                _ => unreachable!(),
            };
        }
        *cur = new;
    }

    /// One demo host for every case (building a tree per case would dominate the run).
    fn host() -> &'static Host {
        static BUILT: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
        &BUILT.get_or_init(demo_host).host
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_value_anywhere_in_a_plan_is_an_error_or_a_plan_that_works(
            picks in proptest::collection::vec((any::<prop::sample::Index>(), leaf()), 1..4)
        ) {
            let host = host();
            let mut v: Value = serde_json::from_str(demo::DEMO_PLAN).unwrap();
            for (i, new) in picks {
                let mut all = Vec::new();
                paths(&v, Vec::new(), &mut all);
                let path = i.get(&all).clone();
                set(&mut v, &path, new);
            }
            match Plan::from_json(&v.to_string()) {
                Err(e) => prop_assert!(!e.to_string().is_empty()),
                Ok(p) => {
                    let _ = plan::check(&p, host);
                    let _ = passage_core::apply::steps(&p, host, None);
                    for g in p.guests.iter().map(|g| Some(g.name.as_str())).chain([None]) {
                        for f in passage_core::export::Format::ALL {
                            let _ = passage_core::export::export(
                                &p,
                                host,
                                g,
                                f,
                                &passage_core::export::Options::default(),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A plan made when the GPU sat at bus 0e in group 30, reopened on the demo host where the
/// same two functions are at 0b:00 in group 19: `plan check` says where they are and how to
/// follow them, `plan remap --dry-run` changes nothing, `plan remap` moves the group whole
/// with the choices made for it, and the plan checks clean again.
#[test]
fn a_plan_whose_cards_moved_is_remapped_to_where_they_are_now() {
    let mut v: serde_json::Value = serde_json::from_str(demo::DEMO_PLAN).unwrap();
    let gpu = v["guests"][0]["groups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["group"] == 19)
        .unwrap();
    gpu["group"] = 30.into();
    for d in gpu["devices"].as_array_mut().unwrap() {
        let a = d["address"].as_str().unwrap().replace(":0b:", ":0e:");
        d["address"] = a.into();
    }
    gpu["devices"][1]["visible"] = false.into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, v.to_string()).unwrap();
    let ctl = |args: &[&str]| {
        passagectl()
            .args(["--demo", "plan", "--plan"])
            .arg(&file)
            .args(args)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap()
    };
    let check = ctl(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("passagectl plan remap"), "{said}");
    let before = std::fs::read(&file).unwrap();
    let dry = ctl(&["remap", "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout),
        "win11: the cards of group 30 are now group 19 (0000:0e:00.0 → 0000:0b:00.0, 0000:0e:00.1 → 0000:0b:00.1).\n"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a dry run wrote the plan"
    );
    let done = ctl(&["remap"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let moved: Plan = passage_core::store::load_plan(&file).unwrap();
    let g = moved.guests[0]
        .groups
        .iter()
        .find(|g| g.group == GroupId(19))
        .expect("group 19 in the plan");
    assert_eq!(g.devices[1].address, a("0000:0b:00.1"));
    assert!(!g.devices[1].visible, "the choice made for the card stays");
    assert_eq!(ctl(&["check"]).status.code(), Some(0));
    let again = ctl(&["remap"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "Every planned card is where the plan has it; nothing to remap.\n"
    );
}

/// `plan check` run by an ordinary user whose locked-memory limit is 8 MiB: the demo's router
/// (a QEMU guest) would fail to start, and is said with both sizes once its memory is known;
/// run by root (CAP_IPC_LOCK: any amount), nothing. (Needs root to run passagectl as nobody
/// with a limit.)
#[test]
fn plan_check_warns_when_a_guests_vmm_could_not_lock_its_memory_here() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs passagectl as nobody under prlimit, which needs root; run it as root, as CI does"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let file = dir.path().join("plan.json");
    let bin = dir.path().join("passagectl");
    std::fs::copy(common::bins::bin("passagectl"), &bin).unwrap();
    // As nobody under an 8 MiB limit (lowered as root, then the user dropped), or as root,
    // who may lock any amount (CAP_IPC_LOCK).
    let check = |plan_text: &str, as_nobody: bool| {
        std::fs::write(&file, plan_text).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let mut c = if as_nobody {
            let mut c = std::process::Command::new("prlimit");
            c.args([
                "--memlock=8388608",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ])
            .arg(&bin);
            c
        } else {
            std::process::Command::new(&bin)
        };
        let o = c
            .args(["--demo", "plan", "--plan"])
            .arg(&file)
            .arg("check")
            .env("LC_ALL", "C.UTF-8")
            .env("HOME", dir.path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .output()
            .unwrap();
        // Warnings never fail a check: it ran, and it passed.
        assert!(
            o.status.success(),
            "exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let said = check(demo::DEMO_PLAN, true);
    assert!(
        said.contains("[locked-memory] QEMU will pin all of router's memory"),
        "{said}"
    );
    assert!(said.contains("--memory"), "{said}");
    let mut v: serde_json::Value = serde_json::from_str(demo::DEMO_PLAN).unwrap();
    for g in v["guests"].as_array_mut().unwrap() {
        if g["name"] == "router" {
            g["memory_mib"] = 16384.into();
        }
    }
    let said = check(&v.to_string(), true);
    assert!(
        said.contains("(16 GiB, plus room for the devices' mappings: at least 17 GiB)"),
        "{said}"
    );
    assert!(said.contains("may lock only 8 MiB"), "{said}");
    assert!(said.contains("LimitMEMLOCK=infinity"), "{said}");
    let said = check(&v.to_string(), false);
    assert_eq!(said, "The plan can be applied as it is.\n");
}
