//! Persistence: the udev rule (by address, checked against ids), the modprobe softdeps, the
//! refusals, and the boot-time re-claim that re-checks every member.

#[path = "common/bins.rs"]
mod bins;

use passage_core::synth::MachineSpec;
use passage_core::{scan, GroupId, Host, HostRoot};
use passage_helper::claim::{self, ClaimOptions, Locks, StateDir};
use passage_helper::fakekernel::FakeKernel;
use passage_helper::persist;
use std::process::Command;

fn demo() -> (tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    MachineSpec::from_json(passage_core::demo::DEMO_HOST)
        .unwrap()
        .write_tree(dir.path())
        .unwrap();
    (dir, tempfile::tempdir().unwrap())
}

fn host(dir: &tempfile::TempDir) -> (HostRoot, Host) {
    let r = HostRoot::open(dir.path()).unwrap();
    let h = scan::scan(&r).unwrap();
    (r, h)
}

#[test]
fn persisting_the_gpu_group_writes_address_rules_and_softdeps() {
    let (dir, state) = demo();
    let st = StateDir::new(state.path()).unwrap();
    // Claimed first: the recorded host drivers are the originals, not vfio-pci.
    let k = FakeKernel::new(dir.path()).unwrap();
    let (_, h) = host(&dir);
    claim::claim(
        &h,
        GroupId(19),
        &ClaimOptions::default(),
        &k,
        &st,
        &Locks::default(),
    )
    .unwrap();
    let (r, h) = host(&dir);
    let done = persist::set(&h, &r, dir.path(), GroupId(19), true, &st).unwrap();
    assert!(done.changed);
    let [rule, conf] = persist::files(dir.path());
    let rule = std::fs::read_to_string(rule).unwrap();
    assert!(rule.contains(r#"KERNEL=="0000:0b:00.0", ATTR{vendor}=="0x10de", ATTR{device}=="0x2206", ATTR{driver_override}="vfio-pci""#), "{rule}");
    assert!(
        rule.contains(r#"KERNEL=="0000:0b:00.1", ATTR{vendor}=="0x10de", ATTR{device}=="0x1aef""#),
        "{rule}"
    );
    assert!(rule.contains("recorded host driver: nvidia"), "{rule}");
    // vfio-pci is loaded and the device probed by the rule itself, before 80-drivers loads
    // the host driver (tests/vm.rs proves it on a real boot).
    for line in rule.lines().filter(|l| l.starts_with("ACTION")) {
        assert!(
            line.ends_with(r#"RUN{builtin}+="kmod load vfio-pci", RUN+="/bin/sh -c 'echo $kernel > /sys/bus/pci/drivers_probe'""#),
            "{line}"
        );
    }
    assert!(!rule.contains("0000:00:03.1"), "bridges are never claimed");
    let conf = std::fs::read_to_string(conf).unwrap();
    assert_eq!(
        conf.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        vec![
            "softdep nvidia pre: vfio-pci",
            "softdep snd_hda_intel pre: vfio-pci"
        ]
    );
    // Off again: nothing left behind.
    persist::set(&h, &r, dir.path(), GroupId(19), false, &st).unwrap();
    for f in persist::files(dir.path()) {
        assert!(!f.exists(), "{} left", f.display());
    }
}

#[test]
fn host_critical_bridge_only_and_unknown_groups_are_refused() {
    let (dir, state) = demo();
    let st = StateDir::new(state.path()).unwrap();
    let (r, h) = host(&dir);
    assert_eq!(
        persist::set(&h, &r, dir.path(), GroupId(17), true, &st)
            .unwrap_err()
            .name(),
        "HostCritical"
    );
    assert_eq!(
        persist::set(&h, &r, dir.path(), GroupId(1), true, &st)
            .unwrap_err()
            .name(),
        "InvalidArgs"
    );
    assert_eq!(
        persist::set(&h, &r, dir.path(), GroupId(999), true, &st)
            .unwrap_err()
            .name(),
        "NotFound"
    );
    for f in persist::files(dir.path()) {
        assert!(!f.exists());
    }
}

#[test]
fn at_boot_a_group_is_reclaimed_only_if_its_members_are_still_what_they_were() {
    let (dir, state) = demo();
    let st = StateDir::new(state.path()).unwrap();
    let (r, h) = host(&dir);
    persist::set(&h, &r, dir.path(), GroupId(19), true, &st).unwrap();
    persist::set(&h, &r, dir.path(), GroupId(18), true, &st).unwrap();
    // The boot-time run, as passage-reclaim.service does it (the tree drives the fake kernel).
    let o = Command::new(bins::bin("passage-helper"))
        .args(["--reclaim", "--root"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("persisted group 19 (now 19): claimed"),
        "{out}"
    );
    let (_, h) = host(&dir);
    assert_eq!(
        h.devices[&"0000:0b:00.0".parse().unwrap()]
            .driver
            .as_deref(),
        Some("vfio-pci")
    );
    assert_eq!(
        h.devices[&"0000:09:00.1".parse().unwrap()]
            .driver
            .as_deref(),
        Some("vfio-pci")
    );

    // Another card now sits at 09:00.1 (bus numbers shifted): that group is skipped.
    let cfg =
        std::fs::canonicalize(dir.path().join("sys/bus/pci/devices/0000:09:00.1/config")).unwrap();
    let mut bytes = std::fs::read(&cfg).unwrap();
    bytes[2..4].copy_from_slice(&0x1533u16.to_le_bytes());
    std::fs::write(&cfg, bytes).unwrap();
    let (_, h) = host(&dir);
    let checks = persist::reclaimable(&h, &st).unwrap();
    let g18 = checks.iter().find(|(g, _)| *g == GroupId(18)).unwrap();
    let why = g18.1.as_ref().unwrap_err();
    assert!(
        why.contains("0000:09:00.1") && why.contains("8086:1533") && why.contains("shifted"),
        "{why}"
    );
    assert!(checks.iter().any(|(g, c)| *g == GroupId(19) && c.is_ok()));
}
