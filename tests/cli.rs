//! `passagectl` as a person and a script run it: output contracts, errors, hostile trees.

mod common;
use common::*;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

fn run(args: &[&str]) -> Output {
    passagectl().args(args).output().expect("run passagectl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure is exit 2 with one line on stderr, and never a panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "expected “{needle}” in: {err}");
}

fn hex(s: &serde_json::Value, len: usize) -> bool {
    s.as_str().is_some_and(|t| {
        t.len() == len
            && t.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

#[test]
fn list_json_follows_the_documented_schema_on_the_demo_host() {
    let o = run(&["--demo", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["iommu"]["enabled"], true);
    assert!(v["iommu"]["reasons"].is_array());
    let groups = v["groups"].as_array().unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert!(groups.len() > 10 && devices.len() > 40);
    for d in devices {
        for k in [
            "address",
            "vendor_id",
            "device_id",
            "class",
            "driver",
            "group",
            "parent",
        ] {
            assert!(d.get(k).is_some(), "device lacks {k}: {d}");
        }
        assert!(hex(&d["vendor_id"], 4) && hex(&d["device_id"], 4), "{d}");
        assert!(hex(&d["class"], 6), "{d}");
        assert!(d["driver"].is_null() || d["driver"].is_string());
    }
    let states = ["available", "in-use", "host-critical", "assigned"];
    for g in groups {
        assert!(states.contains(&g["state"].as_str().unwrap()), "{g}");
        for a in g["devices"].as_array().unwrap() {
            let d = devices
                .iter()
                .find(|d| d["address"] == *a)
                .expect("member is a device");
            assert_eq!(d["group"], g["id"]);
        }
        for r in g["reasons"].as_array().unwrap() {
            for k in ["code", "device", "message", "remedy"] {
                assert!(r.get(k).is_some(), "reason lacks {k}: {r}");
            }
        }
    }
    // The story of the demo host: the RTX 3080 group is in use by nvidia, the root disk and the
    // chipset (console GPU, default-route NIC) are host-critical, the Renesas card is assigned.
    let state_of = |addr: &str| {
        let g = devices.iter().find(|d| d["address"] == addr).unwrap()["group"].clone();
        groups.iter().find(|x| x["id"] == g).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state_of("0000:0b:00.0"), "in-use");
    assert_eq!(state_of("0000:01:00.0"), "host-critical");
    assert_eq!(state_of("0000:07:00.0"), "host-critical");
    assert_eq!(state_of("0000:0c:00.0"), "assigned");
    assert_eq!(state_of("0000:09:00.0"), "available");
}

#[test]
fn parallel_json_is_byte_for_byte_serdes_json() {
    let b = build(&load("asus-tuf-b550m-plus-5800x"));
    let rep = passage_core::report::Report::build(&b.host);
    assert_eq!(rep.to_json().unwrap(), serde_json::to_string(&rep).unwrap());
    // `list --json` streams from the host, verdicts made a window at a time: the same bytes,
    // here and on a farm of many windows (1,225 groups; a window is 256 items per lane).
    let farm = build(&passage_core::synth::sriov_farm(5, 244));
    assert!(farm.host.groups.len() > 1024, "{}", farm.host.groups.len());
    for host in [&b.host, &farm.host] {
        let mut streamed = Vec::new();
        passage_core::report::write_list_json(host, &mut streamed).unwrap();
        let whole = serde_json::to_string(&passage_core::report::Report::build(host)).unwrap();
        assert_eq!(String::from_utf8(streamed).unwrap(), whole);
    }
    // Unknown, absent and present ACS are three different things on the wire.
    let v: serde_json::Value = serde_json::from_str(&rep.to_json().unwrap()).unwrap();
    let d = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:01:00.0")
        .unwrap();
    assert!(
        d["capabilities"]["acs"].is_null(),
        "64-byte config: unknown"
    );
    let o = run(&["--demo", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let acs = |a: &str| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["address"] == a)
            .unwrap()["capabilities"]["acs"]
            .clone()
    };
    assert_eq!(acs("0000:0b:00.0"), serde_json::json!(false));
    assert_eq!(acs("0000:00:01.1")["control"], 31);
}

#[test]
fn explain_tells_the_story_of_a_group_and_of_a_device() {
    let o = run(&["--demo", "explain", "17"]);
    assert!(o.status.success());
    let s = stdout(&o);
    for needle in [
        "host-critical",
        "console",
        "default route",
        "0000:07:00.0",
        "ACS",
        "→",
    ] {
        assert!(s.contains(needle), "missing {needle} in:\n{s}");
    }
    let o = run(&["explain", "0b:00.1", "--demo", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["device"]["address"], "0000:0b:00.1");
    assert_eq!(v["group"]["state"], "in-use");
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_words_get_one_clear_line() {
    assert_clean_failure(&run(&["--demo", "explain", "zz:00.0"]), "not a PCI address");
    assert_clean_failure(
        &run(&["--demo", "explain", "0000:99:00.0"]),
        "no PCI device 0000:99:00.0",
    );
    assert_clean_failure(&run(&["--demo", "explain", "999"]), "no IOMMU group 999");
    assert_clean_failure(
        &run(&["--demo", "explain", "../../etc/passwd"]),
        "not a PCI address",
    );
    let long = "1".repeat(100_000);
    let o = run(&["--demo", "explain", &long]);
    assert_clean_failure(&o, "not");
    assert!(stderr(&o).len() < 300);
    assert_clean_failure(
        &run(&["--root", "/nonexistent-passage", "list"]),
        "cannot open host root",
    );
    let empty = tempfile::tempdir().unwrap();
    assert_clean_failure(
        &run(&["--root", empty.path().to_str().unwrap(), "list"]),
        "not a host root",
    );
    assert_clean_failure(
        &run(&["--demo", "monitor"]),
        "cannot be used with --root or --demo",
    );
    assert_eq!(
        run(&["--demo", "--root", "/", "list"]).status.code(),
        Some(2)
    );
}

#[test]
fn root_comes_from_the_flag_then_the_environment() {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let dir = b.dir.path().to_str().unwrap();
    let o = passagectl()
        .env("PASSAGE_ROOT", dir)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 21);
    // --root wins over PASSAGE_ROOT.
    let o = passagectl()
        .env("PASSAGE_ROOT", "/nonexistent-passage")
        .args(["--root", dir, "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Builds a demo tree, lets the test damage it, and runs `list` on it.
fn list_damaged(damage: impl FnOnce(&Path)) -> Output {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    damage(b.dir.path());
    let o = run(&["--root", b.dir.path().to_str().unwrap(), "list", "--json"]);
    drop(b);
    o
}

fn dev_dir(root: &Path, addr: &str) -> std::path::PathBuf {
    std::fs::canonicalize(root.join("sys/bus/pci/devices").join(addr)).unwrap()
}

#[test]
fn malformed_trees_get_a_clear_error_and_never_a_panic() {
    let o = list_damaged(|r| {
        std::fs::write(dev_dir(r, "0000:01:00.0").join("config"), [0x86u8; 10]).unwrap()
    });
    assert_clean_failure(&o, "config space is 10 bytes");
    assert!(stderr(&o).contains("0000:01:00.0/config"));

    let o = list_damaged(|r| {
        std::fs::write(dev_dir(r, "0000:01:00.0").join("numa_node"), "banana\n").unwrap()
    });
    assert_clean_failure(&o, "is not a number");

    let o = list_damaged(|r| {
        std::fs::write(dev_dir(r, "0000:01:00.0").join("resource"), "0x1 zz\n").unwrap()
    });
    assert_clean_failure(&o, "resource");

    let o = list_damaged(|r| std::fs::create_dir(r.join("sys/kernel/iommu_groups/evil")).unwrap());
    assert_clean_failure(&o, "not a number");

    let o = list_damaged(|r| {
        std::fs::create_dir(r.join("sys/bus/pci/devices/not-an-address")).unwrap()
    });
    assert_clean_failure(&o, "not a PCI address");

    // A device link that loops on itself. (0000:01:00.0 is the first device behind its
    // port: its link is what tells the scan where that port's devices are.)
    let o = list_damaged(|r| {
        let l = r.join("sys/bus/pci/devices/0000:01:00.0");
        std::fs::remove_file(&l).unwrap();
        symlink("0000:01:00.0", &l).unwrap();
    });
    assert_clean_failure(&o, "0000:01:00.0");

    // A device link pointing outside the root reads nothing outside it.
    let o = list_damaged(|r| {
        let l = r.join("sys/bus/pci/devices/0000:01:00.0");
        std::fs::remove_file(&l).unwrap();
        symlink(
            "../../../../../../../../../../sys/bus/pci/devices/0000:00:00.0",
            &l,
        )
        .unwrap();
    });
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Its sibling's link is not read at all: the port's listing (the kernel's other end of
    // the same fact) shows its directory, and that directory is the device listed — the same
    // as on the undamaged tree — whatever the link says.
    let whole = list_damaged(|_| {});
    assert!(whole.status.success(), "{}", stderr(&whole));
    for target in [
        "0000:01:00.1",
        "../../../../../../../../../../sys/bus/pci/devices/0000:00:00.0",
    ] {
        let o = list_damaged(|r| {
            let l = r.join("sys/bus/pci/devices/0000:01:00.1");
            std::fs::remove_file(&l).unwrap();
            symlink(target, &l).unwrap();
        });
        assert!(o.status.success(), "{target}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&whole), "{target}");
    }

    // A device that claims a group the kernel does not list, and one whose link is garbage.
    let o = list_damaged(|r| std::fs::remove_dir_all(r.join("sys/kernel/iommu_groups/1")).unwrap());
    assert_clean_failure(&o, "does not list");
    let o = list_damaged(|r| {
        let l = dev_dir(r, "0000:01:00.0").join("iommu_group");
        std::fs::remove_file(&l).unwrap();
        symlink("../../../kernel/iommu_groups/x1", &l).unwrap();
    });
    assert_clean_failure(&o, "not a group");
}

#[test]
fn a_recording_reads_back_to_the_same_listing() {
    let b = build(&load("asus-tuf-b550m-plus-5800x"));
    let src = b.dir.path().to_str().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("rec");
    let o = run(&["--root", &src, "record", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Recorded"));
    let a = run(&["--root", &src, "list", "--json"]);
    let b2 = run(&["--root", dest.to_str().unwrap(), "list", "--json"]);
    assert!(b2.status.success(), "{}", stderr(&b2));
    assert_eq!(stdout(&a), stdout(&b2));
    // Recording into a non-empty directory is refused.
    assert_clean_failure(
        &run(&["--root", &src, "record", dest.to_str().unwrap()]),
        "not empty",
    );
    // The recording holds what was read, not the whole tree: no `vendor` files (read from
    // config) and nothing outside sys/, proc/ and dev/.
    let mut stack = vec![dest.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            assert_ne!(p.file_name().unwrap(), "vendor", "{}", p.display());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
}

#[test]
fn without_an_iommu_list_says_so_and_how_to_fix_it() {
    let mut spec = load("asrock-z170-gaming-itx");
    spec.host.iommu = Some("off".into());
    let b = build(&spec);
    let root = b.dir.path().to_str().unwrap();
    let o = run(&["--root", root, "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["iommu"]["enabled"], false);
    assert_eq!(v["groups"].as_array().unwrap().len(), 0);
    assert!(v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["group"].is_null()));
    let r = &v["iommu"]["reasons"][0];
    assert!(r["remedy"].as_str().unwrap().contains("intel_iommu=on"));
    let o = run(&["--root", root, "list"]);
    assert!(stdout(&o).contains("IOMMU: off"));
    assert_clean_failure(&run(&["--root", root, "explain", "3"]), "IOMMU is off");
    let o = run(&["--root", root, "explain", "0000:01:00.0"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("intel_iommu=on"));
}

#[test]
fn the_helper_commands_are_not_invented_here() {
    // list/explain/record/monitor exist; unknown words are refused by the parser, exit 2.
    let o = run(&["--demo", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn monitor_prints_kernel_events_as_they_happen() {
    // Needs a real /sys and permission to write a device's uevent file (root). CI runs as
    // root; elsewhere the test fails and says what is missing.
    let uevent = Path::new("/sys/bus/pci/devices/0000:00:00.0/uevent");
    assert!(
        rustix::process::geteuid().is_root() && uevent.exists(),
        "the monitor test needs root and /sys/bus/pci/devices/0000:00:00.0 (a real PCI host); run it as root on one, as CI does"
    );
    use std::io::{BufRead, BufReader};
    let mut child = passagectl()
        .args(["monitor", "--json", "--max-events", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // The monitor subscribes after its initial scan; keep poking until it hears one.
    let mut line = None;
    for _ in 0..50 {
        std::fs::write(uevent, "change").unwrap();
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            line = Some(l);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no event within 10 s");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["action"], "change");
    assert_eq!(v["address"], "0000:00:00.0");
}

/// Runs passagectl with its config directory (guest profiles, the default plan) in `home`.
fn run_in(home: &Path, args: &[&str]) -> Output {
    passagectl()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"))
        .args(args)
        .output()
        .expect("run passagectl")
}

#[test]
fn guests_are_the_local_profiles_then_the_demo_guests() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let o = run_in(
        h,
        &["guests", "add", "fw", "--vmm", "crosvm", "--machine", "pc"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(h, &["--demo", "guests", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"name": "fw", "vmm": "crosvm", "machine": "pc", "source": "local",
            "state": null, "groups": []})
    );
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["fw", "win11", "router", "ci-runner"]);
    assert!(rows[1..].iter().all(|r| r["source"] == "demo"));
    assert_eq!(rows[1]["groups"], serde_json::json!([19, 20]));

    let o = run_in(h, &["--demo", "guests"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("fw ") && lines[0].contains(" local "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("win11 ") && lines[1].ends_with("groups 19 20"),
        "{text}"
    );

    // An unreadable profile file is the person's to fix: refused, not listed around.
    std::fs::write(h.join("cfg/passage/guests.json"), "[{\"name\": 1}]").unwrap();
    assert_clean_failure(&run_in(h, &["--demo", "guests"]), "guests.json");
}

#[test]
fn plan_assign_finds_guests_in_the_profiles_and_the_demo() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let plan = h.join("p.json");
    let plan = plan.to_str().unwrap();
    assert!(run_in(
        h,
        &["guests", "add", "fw", "--vmm", "crosvm", "--machine", "pc"]
    )
    .status
    .success());
    for (group, guest) in [("18", "fw"), ("19", "win11")] {
        let o = run_in(
            h,
            &["--demo", "plan", "--plan", plan, "assign", group, guest],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).starts_with("Saved "), "{}", stdout(&o));
    }
    let o = run_in(h, &["--demo", "plan", "--plan", plan, "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // The profile's machine, and the demo guest as the demo plan has it (on-start).
    assert!(
        text.contains("fw (crosvm, pc, claimed and kept)\n  group 18\n"),
        "{text}"
    );
    assert!(
        text.contains("win11 (libvirt, q35, claimed while it runs)\n  group 19\n"),
        "{text}"
    );
    let o = run_in(
        h,
        &["--demo", "plan", "--plan", plan, "assign", "20", "nobody"],
    );
    assert_clean_failure(&o, "there is no guest named “nobody”");
}

#[test]
fn a_default_plan_that_cannot_be_read_is_refused_and_left_alone() {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let dir = b.dir.path().to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("cfg/passage/plan.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{broken").unwrap();
    for args in [
        &["--root", dir, "plan", "show"][..],
        &["--root", dir, "plan", "unassign", "1"],
        &["--root", dir, "export", "--format", "qemu"],
    ] {
        assert_clean_failure(&run_in(h, args), "plan.json");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{broken");
    }
    // Without a home there is nowhere to keep the plan: say how to name one.
    let o = passagectl()
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .args(["--root", dir, "plan", "show"])
        .output()
        .unwrap();
    assert_clean_failure(&o, "--plan FILE");
}

/// `--demo` alone is the workstation; `--demo arm64` and `--demo=ppc64le` the machines recorded
/// on those architectures' kernels (their IOMMU units as those kernels named them), in every
/// position a global flag may stand.
#[test]
fn the_demo_variants_are_chosen_by_name() {
    let units = |args: &[&str]| -> String {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o).lines().next().unwrap_or_default().to_string()
    };
    assert!(units(&["--demo", "list"]).contains("ivhd0"));
    assert!(units(&["--demo", "arm64", "list"]).contains("smmu3."));
    assert!(units(&["list", "--demo", "arm64"]).contains("smmu3."));
    assert!(units(&["--demo=ppc64le", "list"]).contains("iommu-phb0001"));
    let o = run(&["--demo", "ppc64le", "explain", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("shape-pe"));
    // An unknown name is not taken for a variant: clap says what it could not read.
    let o = run(&["--demo=sparc", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("arm64"), "{}", stderr(&o));
}
