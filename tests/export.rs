//! Exports as their consumers read them: every format snapshotted on the demo host, libvirt XML
//! validated by libvirt's own `virt-xml-validate`, every QEMU property checked against the QEMU
//! in use (and bookworm-backports' QEMU 10 for the iommufd form), the emitted root ports
//! accepted by a real QEMU, YAML parsed by PyYAML, JSON read back with `--plan`.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const FORMATS: [&str; 9] = [
    "libvirt",
    "libvirt-domain",
    "qemu",
    "proxmox",
    "cloud-hypervisor",
    "crosvm",
    "kubevirt",
    "nova",
    "json",
];

fn run(args: &[&str]) -> Output {
    passagectl().args(args).output().expect("run passagectl")
}

fn export(args: &[&str]) -> String {
    let o = run(&[&["--demo", "export"], args].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "export {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    String::from_utf8(o.stdout).expect("utf-8")
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    assert!(
        found.status.success(),
        "{name} is not installed: ./dev test installs it (see docs/TESTING.md)"
    );
    String::from_utf8_lossy(&found.stdout).trim().to_string()
}

#[test]
fn every_format_on_the_demo_host_matches_its_snapshot() {
    for f in FORMATS {
        for guest in ["win11", "router"] {
            let text = export(&["--format", f, "--guest", guest]);
            insta::assert_snapshot!(format!("{f}-{guest}"), text);
        }
    }
    // Without --guest: the plan's first guest holding groups.
    assert_eq!(
        export(&["--format", "qemu"]),
        export(&["--format", "qemu", "--guest", "win11"])
    );
}

fn validate(xml: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("domain.xml");
    std::fs::write(&p, xml).unwrap();
    let o = Command::new(tool("virt-xml-validate"))
        .arg(&p)
        .arg("domain")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{what} does not validate:\n{}{}\n{xml}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn libvirt_exports_pass_virt_xml_validate() {
    for guest in ["win11", "router"] {
        let domain = export(&["--format", "libvirt-domain", "--guest", guest]);
        assert!(domain.contains("managed=\"no\""));
        validate(&domain, &format!("the libvirt-domain export of {guest}"));
        // The devices fragment, placed in a complete domain of someone else's making.
        let frag = export(&["--format", "libvirt", "--guest", guest]);
        let inner = frag
            .split_once("<devices>")
            .and_then(|(_, r)| r.rsplit_once("</devices>"))
            .map(|(i, _)| i)
            .expect("one <devices> element");
        let mine = format!(
            "<domain type='kvm'><name>someone</name><memory unit='MiB'>1024</memory>\
             <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\
             <controller type='pci' index='0' model='pcie-root'/>{inner}</devices></domain>"
        );
        validate(
            &mine,
            &format!("the libvirt export of {guest} inside a domain"),
        );
    }
}

/// `-device NAME,help` of a QEMU binary: the property names it knows.
fn qemu_props(qemu: &str, what: &[&str]) -> BTreeSet<String> {
    let o = Command::new(qemu).args(what).output().expect("run qemu");
    assert!(o.status.success(), "{qemu} {what:?} failed");
    let text = String::from_utf8_lossy(&o.stdout);
    let props: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim_start().split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    assert!(props.len() > 5, "{qemu} {what:?} listed {props:?}");
    props
}

/// Every `-device TYPE,k=v,…` / `-object TYPE,…` in an export, as (kind, type, keys).
fn emitted(args: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let words: Vec<&str> = args
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.trim_end_matches('\\').split_whitespace())
        .collect();
    for w in words.windows(2) {
        if w[0] == "-device" || w[0] == "-object" {
            let mut parts = w[1].split(',');
            let ty = parts.next().unwrap().to_string();
            let keys = parts
                .map(|kv| kv.split_once('=').expect("k=v").0.to_string())
                .collect();
            out.push((w[0].to_string(), ty, keys));
        }
    }
    out
}

fn check_qemu_properties(qemu: &str, text: &str) {
    let vfio = qemu_props(qemu, &["-device", "vfio-pci,help"]);
    let port = qemu_props(qemu, &["-device", "pcie-root-port,help"]);
    let found = emitted(text);
    assert!(found.iter().any(|(_, t, _)| t == "vfio-pci"), "{text}");
    for (kind, ty, keys) in found {
        let known = match (kind.as_str(), ty.as_str()) {
            ("-device", "vfio-pci") => &vfio,
            ("-device", "pcie-root-port") => &port,
            ("-object", "iommufd") => {
                let o = Command::new(qemu)
                    .args(["-object", "iommufd,help"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{qemu} has no iommufd object");
                continue;
            }
            other => panic!("unexpected {other:?} in the export"),
        };
        for k in keys {
            if k == "bus" || k == "id" {
                continue; // every device has them; help does not list them
            }
            assert!(known.contains(&k), "{qemu}: {ty} has no property {k}");
        }
    }
}

#[test]
fn every_emitted_qemu_property_exists_in_the_qemu_in_use() {
    let qemu = tool("qemu-system-x86_64");
    let plan = demo_plan_copy();
    // Exercise every option: x-vga on the GPU, no ROM BAR on the USB card.
    plan_cmd(&plan, &["x-vga", "0000:0b:00.0", "on"]);
    plan_cmd(&plan, &["rombar", "0000:0c:00.0", "off"]);
    let text = export_plan(&plan, &["--format", "qemu", "--guest", "win11"]);
    assert!(
        text.contains("x-vga=on") && text.contains("rombar=0"),
        "{text}"
    );
    check_qemu_properties(&qemu, &text);
    // The iommufd form against a QEMU that has iommufd (Debian 12's 7.2 does not; the test
    // bed's QEMU 10 from bookworm-backports does).
    let new = new_qemu();
    let text = export_plan(
        &plan,
        &["--format", "qemu", "--guest", "win11", "--iommufd"],
    );
    assert!(text.contains("-object iommufd,id=") && text.contains(",iommufd="));
    check_qemu_properties(&new, &text);
}

/// bookworm-backports' QEMU 10 (fetched once by the test bed).
fn new_qemu() -> String {
    let new = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/vm.py"))
        .arg("new-qemu")
        .output()
        .expect("tests/vm/vm.py new-qemu");
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    String::from_utf8_lossy(&new.stdout).trim().to_string()
}

/// Without --iommufd or --no-iommufd, QEMU's form follows the host: iommufd where its kernel
/// has iommufd and VFIO's device files and its QEMU is 9.0 or later, the group form otherwise,
/// each time with a note saying why.
#[test]
fn the_qemu_export_chooses_the_iommufd_form_where_the_host_has_it() {
    let new = new_qemu();
    let old = tool("qemu-system-x86_64");
    let plan = demo_plan_copy();
    let tree = |iommufd: bool, cdev: Option<bool>| {
        let mut spec =
            passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST).unwrap();
        spec.host.iommufd = iommufd;
        spec.host.vfio_cdev = cdev;
        let dir = tempfile::tempdir().unwrap();
        spec.write_tree(dir.path()).unwrap();
        dir
    };
    let go = |root: &Path, qemu: Option<&str>, extra: &[&str]| {
        let mut c = passagectl();
        c.env_remove("PASSAGE_QEMU");
        if let Some(q) = qemu {
            c.env("PASSAGE_QEMU", q);
        }
        let plan_path = plan.path();
        let o = c
            .args([
                "--root",
                root.to_str().unwrap(),
                "export",
                "--plan",
                &plan_path,
            ])
            .args(["--format", "qemu", "--guest", "win11"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        (String::from_utf8(o.stdout).unwrap(), err)
    };
    let both = tree(true, Some(true));
    // QEMU 10 on a kernel with both: the iommufd form, which that QEMU takes.
    let (text, err) = go(both.path(), Some(&new), &[]);
    assert!(
        text.contains("-object iommufd,id=") && text.contains(",iommufd="),
        "{text}"
    );
    assert!(
        err.contains("iommufd form") && err.contains("--no-iommufd"),
        "{err}"
    );
    check_qemu_properties(&new, &text);
    // --no-iommufd: the group form, no note about it.
    let (text, err) = go(both.path(), Some(&new), &["--no-iommufd"]);
    assert!(!text.contains("iommufd"), "{text}");
    assert!(!err.contains("iommufd"), "{err}");
    // Debian 12's QEMU 7.2: the group form, and why.
    let (text, err) = go(both.path(), Some(&old), &[]);
    assert!(!text.contains("iommufd"), "{text}");
    assert!(err.contains("older than 9.0"), "{err}");
    check_qemu_properties(&old, &text);
    // A recording, no QEMU named: its QEMU is not known, so the group form.
    let (text, err) = go(both.path(), None, &[]);
    assert!(!text.contains("-object iommufd"), "{text}");
    assert!(err.contains("not known"), "{err}");
    // A QEMU that does not run: said, the group form.
    let (text, err) = go(both.path(), Some("/nonexistent/qemu"), &[]);
    assert!(
        !text.contains("-object iommufd") && err.contains("/nonexistent/qemu"),
        "{err}"
    );
    // iommufd without the device files yet (nothing on vfio-pci): the group form.
    let unknown = tree(true, None);
    let (text, err) = go(unknown.path(), Some(&new), &[]);
    assert!(
        !text.contains("-object iommufd") && err.contains("once a device is on vfio-pci"),
        "{err}"
    );
    // No iommufd at all: the group form, nothing to say; --iommufd still writes it.
    let none = tree(false, None);
    let (text, err) = go(none.path(), Some(&new), &[]);
    assert!(
        !text.contains("iommufd") && !err.contains("iommufd"),
        "{text}{err}"
    );
    let (text, _) = go(none.path(), Some(&new), &["--iommufd"]);
    assert!(text.contains("-object iommufd,id="), "{text}");
    // Both flags: refused by the command line.
    let o = passagectl()
        .args([
            "--demo",
            "export",
            "--format",
            "qemu",
            "--iommufd",
            "--no-iommufd",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_real_qemu_accepts_the_emitted_root_ports_and_addresses() {
    // No VFIO device on this machine, so stand an emulated NIC in for each vfio-pci device at
    // the same bus and address: QEMU then checks ports, ids, addresses and multifunction.
    let qemu = tool("qemu-system-x86_64");
    let text = export(&["--format", "qemu", "--guest", "win11"]);
    let mut args: Vec<String> = vec![
        "-machine".into(),
        "q35,accel=tcg".into(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-S".into(),
        "-qmp".into(),
        "stdio".into(),
    ];
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let l = l.trim_end_matches('\\').trim();
        let (flag, value) = l.split_once(' ').unwrap();
        let value = if let Some(rest) = value.strip_prefix("vfio-pci,") {
            let keep: Vec<&str> = rest
                .split(',')
                .filter(|kv| !kv.starts_with("host=") && !kv.starts_with("x-vga"))
                .collect();
            format!("e1000e,{}", keep.join(","))
        } else {
            value.to_string()
        };
        args.push(flag.into());
        args.push(value);
    }
    // Ask QEMU where it put each device: the bus it hangs on, and its devfn.
    let ids = ["passage-hostdev0", "passage-hostdev1", "passage-hostdev2"];
    let mut qmp = String::from("{\"execute\":\"qmp_capabilities\"}\n");
    for id in ids {
        for prop in ["parent_bus", "addr"] {
            qmp.push_str(&format!(
                "{{\"execute\":\"qom-get\",\"arguments\":{{\"path\":\"/machine/peripheral/{id}\",\"property\":\"{prop}\"}}}}\n"
            ));
        }
    }
    qmp.push_str("{\"execute\":\"quit\"}\n");
    let mut child = Command::new(&qemu)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(qmp.as_bytes())
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "QEMU refused {args:?}:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("return").cloned())
        .filter(|r| !r.as_object().is_some_and(|o| o.is_empty()))
        .collect();
    assert_eq!(answers.len(), 6, "{answers:?}");
    let place = |i: usize| {
        let bus = answers[2 * i].as_str().unwrap().to_string();
        let devfn = answers[2 * i + 1].as_u64().unwrap();
        (bus, devfn >> 3, devfn & 7)
    };
    // The GPU's two functions share slot 0 behind one port; the USB card has its own port.
    let port = |n: u8| format!("/machine/peripheral/passage-rp{n}/passage-rp{n}");
    assert_eq!(place(0), (port(1), 0, 0));
    assert_eq!(place(1), (port(1), 0, 1));
    assert_eq!(place(2), (port(2), 0, 0));
}

#[test]
fn kubevirt_yaml_and_every_json_output_parse() {
    let yaml = export(&["--format", "kubevirt", "--guest", "win11"]);
    let o = Command::new(tool("python3"))
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        o.status.success(),
        "PyYAML: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let docs: Vec<&serde_json::Value> = docs
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !d.is_null())
        .collect();
    assert_eq!(docs.len(), 2);
    let sel = &docs[0]["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"];
    assert!(sel
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["pciVendorSelector"] == "10DE:2206"));
    let devs = &docs[1]["spec"]["template"]["spec"]["domain"]["devices"]["hostDevices"];
    assert_eq!(devs.as_array().unwrap().len(), 3);
    // Nova reads every value as JSON.
    let nova = export(&["--format", "nova", "--guest", "win11"]);
    let mut specs = 0;
    for l in nova.lines() {
        if let Some((k, v)) = l.split_once(" = ") {
            let v: serde_json::Value =
                serde_json::from_str(v).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(k == "device_spec" || k == "alias", "{l}");
            specs += usize::from(k == "device_spec");
            assert!(v.is_object());
        }
    }
    assert_eq!(specs, 3, "{nova}");
}

#[test]
fn the_json_export_reads_back_as_the_same_plan() {
    let j = export(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["resolved"][0]["devices"][0]["guest_address"], "01:00.0");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("exported.json");
    std::fs::write(&p, &j).unwrap();
    for f in FORMATS {
        let from_file = export(&["--plan", p.to_str().unwrap(), "--format", f]);
        assert_eq!(from_file, export(&["--format", f]), "{f}");
    }
}

/// A writable copy of the demo plan for CLI edits.
struct PlanCopy {
    dir: tempfile::TempDir,
}

impl PlanCopy {
    fn path(&self) -> String {
        self.dir.path().join("plan.json").display().to_string()
    }
}

fn demo_plan_copy() -> PlanCopy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.json"), passage_core::demo::DEMO_PLAN).unwrap();
    PlanCopy { dir }
}

fn plan_cmd(p: &PlanCopy, args: &[&str]) -> Output {
    let path = p.path();
    let o = passagectl()
        .env("XDG_CONFIG_HOME", p.dir.path())
        .args([&["--demo", "plan"], args, &["--plan", &path]].concat())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "plan {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn export_plan(p: &PlanCopy, args: &[&str]) -> String {
    export(&[&["--plan", p.path().as_str()], args].concat())
}

#[test]
fn bad_plans_and_bad_words_get_one_clear_line_and_change_nothing() {
    let p = demo_plan_copy();
    let before = std::fs::read(p.path()).unwrap();
    let path = p.path();
    let cases: [(&[&str], &str); 9] = [
        (
            &["plan", "address", "0000:0c:00.0", "01:00.3"],
            "function 0",
        ),
        (
            &["plan", "address", "0000:0c:00.0", "../x"],
            "not a guest PCI address",
        ),
        (
            &["plan", "visible", "0000:42:00.0", "off"],
            "not in the plan",
        ),
        (&["plan", "assign", "999", "win11"], "no IOMMU group 999"),
        (&["plan", "assign", "16", "win11"], "needed by the host"),
        (&["plan", "assign", "19", "nobody"], "no guest named"),
        (&["export", "--format", "yaml"], "invalid value"),
        (
            &["export", "--format", "qemu", "--guest", "nobody"],
            "no guest named",
        ),
        (
            &["export", "--format", "qemu", "--guest", "ci-runner"],
            "holds no groups",
        ),
    ];
    for (args, needle) in cases {
        let o = passagectl()
            .env("XDG_CONFIG_HOME", p.dir.path())
            .args([&["--demo"], args, &["--plan", &path]].concat())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected “{needle}” in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{args:?} changed the plan"
        );
    }
    // A hand-broken file: a device of another card at the GPU's address, and a clash.
    let broken = String::from_utf8(before.clone())
        .unwrap()
        .replacen("\"2206\"", "\"2204\"", 1);
    std::fs::write(&path, broken).unwrap();
    let o = run(&["--demo", "export", "--plan", &path, "--format", "libvirt"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("cannot be exported") && err.contains("10de:2204"),
        "{err}"
    );
    let o = run(&["--demo", "plan", "check", "--plan", &path]);
    assert_eq!(o.status.code(), Some(1), "check says not applicable");
    assert!(String::from_utf8_lossy(&o.stdout).contains("[ids-changed]"));
    for garbage in ["{", "{\"version\": 9}", "[]", &"x".repeat(1000)] {
        std::fs::write(&path, garbage).unwrap();
        let o = run(&["--demo", "export", "--plan", &path, "--format", "qemu"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{garbage:.20}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn a_plan_is_built_from_the_command_line_as_a_person_would() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().to_str().unwrap();
    let ctl = |args: &[&str]| {
        passagectl()
            .env("XDG_CONFIG_HOME", cfg)
            .args([&["--demo"], args].concat())
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = ctl(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["guests", "add", "gamer", "--vmm", "libvirt"]);
    ok(&["guests", "add", "fw", "--vmm", "crosvm", "--machine", "pc"]);
    assert!(ok(&["guests"]).contains("gamer"));
    let plan = dir.path().join("passage/plan.json");
    let plan_s = plan.to_str().unwrap();
    // The default plan file lives under XDG_CONFIG_HOME … but --demo reads the built-in one
    // unless --plan names a file, so name it.
    ok(&["plan", "assign", "19", "gamer", "--plan", plan_s]);
    ok(&["plan", "assign", "18", "fw", "--plan", plan_s]);
    ok(&["plan", "visible", "0000:09:00.1", "off", "--plan", plan_s]);
    ok(&["plan", "lifecycle", "gamer", "on-start", "--plan", plan_s]);
    let show = ok(&["plan", "show", "--plan", plan_s]);
    assert!(show.contains("0000:0b:00.1  → 01:00.1"), "{show}");
    assert!(show.contains("hidden"), "{show}");
    assert_eq!(
        ctl(&["plan", "check", "--plan", plan_s]).status.code(),
        Some(0)
    );
    let crosvm = ok(&[
        "export", "--plan", plan_s, "--guest", "fw", "--format", "crosvm",
    ]);
    assert!(crosvm.contains("--vfio /sys/bus/pci/devices/0000:09:00.0,guest-address=00:10.0"));
    assert!(
        !crosvm.contains("0000:09:00.1,"),
        "hidden port not given: {crosvm}"
    );
    // The built-in demo plan cannot be edited in place.
    let o = ctl(&["plan", "unassign", "19"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--plan FILE"));
    // Written atomically: no temporary file left.
    assert!(!plan.with_extension("tmp").exists());
}

/// Two recorded nodes (the demo host twice, both with the USB card on vfio-pci, one with its
/// GPU there too), exported for each cluster format and read as each consumer reads it.
#[test]
fn cluster_exports_from_recordings_read_as_their_consumers_read_them() {
    let dir = two_nodes();
    let cluster = |format: &str| cluster_export(dir.path(), format);

    // Proxmox: every property in the format PVE's mapping schema gives it.
    let hex4 = |s: &str| {
        s.len() == 4
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    };
    let ids = |s: &str| s.split_once(':').is_some_and(|(a, b)| hex4(a) && hex4(b));
    let pmx = cluster("proxmox-mapping");
    let mut maps = Vec::new();
    for cmd in pmx.split("pvesh create /cluster/mapping/pci ").skip(1) {
        let id = cmd
            .split("--id ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            id.starts_with(|c: char| c.is_ascii_lowercase())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c)),
            "mapping id {id}"
        );
        for m in cmd.split("--map ").skip(1) {
            let m = m.split_whitespace().next().unwrap();
            let props: std::collections::BTreeMap<&str, &str> =
                m.split(',').map(|kv| kv.split_once('=').unwrap()).collect();
            assert_eq!(
                props.keys().copied().collect::<Vec<_>>(),
                ["id", "iommugroup", "node", "path", "subsystem-id"],
                "{m}"
            );
            assert!(ids(props["id"]) && ids(props["subsystem-id"]), "{m}");
            assert!(props["iommugroup"].parse::<u32>().is_ok(), "{m}");
            let path = props["path"];
            let slot = path.split('.').next().unwrap();
            assert!(
                slot.len() == 10
                    && slot.chars().nth(4) == Some(':')
                    && slot.chars().nth(7) == Some(':'),
                "{m}"
            );
            maps.push((
                props["node"].to_string(),
                path.to_string(),
                props["id"].to_string(),
            ));
        }
    }
    // pve1's GPU is one whole-card entry; both nodes give the USB card.
    assert!(
        maps.contains(&("pve1".into(), "0000:0b:00".into(), "10de:2206".into())),
        "{pmx}"
    );
    assert_eq!(
        maps.iter().filter(|(_, _, id)| id == "1912:0015").count(),
        2,
        "{pmx}"
    );
    assert!(
        !maps
            .iter()
            .any(|(n, p, _)| n == "pve2" && p.starts_with("0000:0b")),
        "{pmx}"
    );

    // KubeVirt: the YAML document as PyYAML reads it.
    let yaml = cluster("kubevirt");
    let o = Command::new(tool("python3"))
        .args(["-c", "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        o.status.success(),
        "PyYAML: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let conf = &docs[0]["spec"]["configuration"];
    assert_eq!(
        conf["developerConfiguration"]["featureGates"][0],
        "HostDevices"
    );
    let names: Vec<&str> = conf["permittedHostDevices"]["pciHostDevices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["resourceName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "passage.io/10de-1aef",
            "passage.io/10de-2206",
            "passage.io/1912-0015"
        ],
        "{yaml}"
    );
    assert!(
        yaml.contains("kubectl label node pve1 passage.io/10de-2206=1"),
        "{yaml}"
    );

    // Nova: each value is JSON, each compute node has its own device_spec lines.
    let nova = cluster("nova");
    let mut specs: std::collections::BTreeMap<String, usize> = Default::default();
    let mut node = String::new();
    for l in nova.lines() {
        if let Some(n) = l.strip_prefix("# compute node ") {
            node = n.to_string();
        }
        if let Some((k, v)) = l.split_once(" = ") {
            let v: serde_json::Value =
                serde_json::from_str(v).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(v.is_object(), "{l}");
            if k == "device_spec" {
                *specs.entry(node.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(specs.get("pve1"), Some(&3), "{nova}");
    assert_eq!(specs.get("pve2"), Some(&1), "{nova}");
}

/// pve1 and pve2: the demo host twice, both with the USB card on vfio-pci, pve1 with its GPU
/// there too (both functions, as a claim leaves them).
fn two_nodes() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST).unwrap();
    spec.write_tree(&dir.path().join("pve2")).unwrap();
    let mut pve1 = spec.clone();
    for d in &mut pve1.devices {
        if d.bdf.contains("0b:00.") {
            d.driver = Some("vfio-pci".into());
        }
    }
    pve1.write_tree(&dir.path().join("pve1")).unwrap();
    dir
}

/// `passagectl --root DIR/pve1 --root DIR/pve2 cluster export --format FORMAT`.
fn cluster_export(dir: &Path, format: &str) -> String {
    let o = run(&[
        "--root",
        dir.join("pve1").to_str().unwrap(),
        "--root",
        dir.join("pve2").to_str().unwrap(),
        "cluster",
        "export",
        "--format",
        format,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{format}: {err}");
    String::from_utf8(o.stdout).unwrap()
}

/// Nova's own parsers (from PyPI, in the venv `./dev test` makes): what they make of `text`.
fn nova_reads(text: &str) -> serde_json::Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/consumers/nova/bin/python");
    assert!(
        python.exists(),
        "Nova is not installed where this test runs it ({}): ./dev test installs it from PyPI",
        python.display()
    );
    let o = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/consumers/nova_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        o.status.success(),
        "Nova refused:\n{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn nova_reads_the_nova_exports_with_its_own_parsers() {
    // One guest's export: its three functions, an alias for each kind.
    let single = nova_reads(&export(&["--format", "nova", "--guest", "win11"]));
    assert_eq!(single[""]["device_specs"], 3, "{single}");
    assert_eq!(
        single[""]["aliases"]["win11-10de-2206"],
        serde_json::json!(["10de:2206 type-PCI"])
    );
    // A cluster's: each compute node's own device specs, the same aliases everywhere.
    let dir = two_nodes();
    let cluster = nova_reads(&cluster_export(dir.path(), "nova"));
    assert_eq!(cluster["pve1"]["device_specs"], 3, "{cluster}");
    assert_eq!(cluster["pve2"]["device_specs"], 1, "{cluster}");
    for node in ["pve1", "pve2", "API nodes"] {
        assert_eq!(
            cluster[node]["aliases"], cluster["pve1"]["aliases"],
            "{node}: {cluster}"
        );
    }
    assert_eq!(
        cluster["API nodes"]["aliases"]["10de-1aef"],
        serde_json::json!(["10de:1aef type-PCI"])
    );
}

#[test]
fn an_export_for_a_guest_of_another_vmm_says_what_the_target_carries_and_what_it_does_not() {
    // win11 is a libvirt guest whose groups are claimed only while it runs (on-start).
    let o = run(&[
        "--demo",
        "export",
        "--format",
        "cloud-hypervisor",
        "--guest",
        "win11",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let note = err
        .lines()
        .find(|l| l.contains("is planned for libvirt"))
        .unwrap_or_else(|| panic!("no note about the other VMM:\n{err}"));
    assert!(note.contains("this cloud-hypervisor output"), "{note}");
    assert!(
        note.contains("but not claiming its groups only while it runs"),
        "{note}"
    );
    // Exported as what it is planned for: no such note.
    let o = run(&[
        "--demo", "export", "--format", "libvirt", "--guest", "win11",
    ]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("is planned for"));
}
