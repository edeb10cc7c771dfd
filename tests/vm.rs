//! Passage checked against a real Linux kernel: each test boots a stock Debian kernel in QEMU
//! (q35 + emulated VT-d with interrupt remapping) with a PCI topology built for the purpose,
//! runs tests/vm/guest-job.sh inside it against this build's passagectl, and compares what
//! Passage says with what the kernel did. See docs/TESTING.md for running one by hand.
//!
//! If this machine cannot run QEMU at all, these tests fail and say why: they never pass
//! silently.

#[path = "common/bins.rs"]
mod bins;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One VM at a time: two cores, and TCG is already slow.
static VM: Mutex<()> = Mutex::new(());

/// One boot's results. It holds the VM lock until the test is done with them: another test on
/// the same topology would otherwise start its boot and clear them while they are read.
struct Run {
    out: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Run {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}\nguest log:\n{}", name, self.log()))
    }
    fn json(&self, name: &str) -> Value {
        serde_json::from_str(&self.file(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.log()))
    }
    fn rc(&self, name: &str) -> i32 {
        self.file(name).trim().parse().unwrap()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.out.join("job.log")).unwrap_or_default()
    }
    /// The kernel's listing: group → {member → driver}.
    fn kernel(&self, name: &str) -> BTreeMap<u64, BTreeMap<String, String>> {
        let mut m: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
        for line in self.file(name).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            m.entry(f[0].parse().unwrap())
                .or_default()
                .insert(f[1].into(), f[2].into());
        }
        m
    }
}

fn boot(topology: &str, partial: &str, full: &str, hold: bool) -> Run {
    boot_with(topology, "", partial, full, hold)
}

fn boot_with(topology: &str, pre: &str, partial: &str, full: &str, hold: bool) -> Run {
    let header = format!(
        "PASSAGECTL={}\nHELPER={}\nPRE='{pre}'\nPARTIAL={partial}\nFULL={full}\nHOLD={}\n",
        bins::bin("passagectl"),
        bins::bin("passage-helper"),
        u8::from(hold)
    );
    boot_job(topology, &header, "tests/vm/guest-job.sh")
}

fn boot_job(topology: &str, header: &str, script: &str) -> Run {
    boot_job_with(topology, header, script, Mode::Plain, &[])
}

/// A boot where udev, not the initramfs, loads the host drivers (vm.py's "udev" boot), with
/// files from an earlier boot placed in OUT/seed first.
fn boot_udev(topology: &str, header: &str, script: &str, seed: &[(String, Vec<u8>)]) -> Run {
    boot_job_with(topology, header, script, Mode::Udev, seed)
}

/// How the guest boots (vm.py's last argument).
enum Mode<'a> {
    /// The initramfs loads the drivers and chroots into the host's root for the job.
    Plain,
    /// Only udev loads host drivers.
    Udev,
    /// systemd boots an installed system: this `make install` tree over the host's root.
    Installed(&'a Path),
}

fn boot_job_with(
    topology: &str,
    header: &str,
    script: &str,
    mode: Mode<'_>,
    seed: &[(String, Vec<u8>)],
) -> Run {
    let udev = matches!(mode, Mode::Udev);
    let one = VM.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // One directory per topology and job, so each test's artifacts survive the run.
    let stem = Path::new(script)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("job")
        .trim_start_matches("guest-")
        .trim_end_matches("-job")
        .trim_end_matches("job");
    let mut name = if stem.is_empty() {
        topology.to_string()
    } else {
        format!("{topology}-{stem}")
    };
    if udev {
        name.push_str("-udev");
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm").join(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    if !seed.is_empty() {
        std::fs::create_dir_all(out.join("seed")).unwrap();
        for (name, bytes) in seed {
            std::fs::write(out.join("seed").join(name), bytes).unwrap();
        }
    }
    let job = out.with_extension("job.sh");
    let body = std::fs::read_to_string(root.join(script)).unwrap();
    std::fs::write(&job, header.to_string() + &body).unwrap();
    let o = Command::new("python3")
        // The fault campaign is the longest job.
        .env("PASSAGE_VM_TIMEOUT", "2400")
        .arg(root.join("tests/vm/vm.py"))
        .args(["run", topology])
        .arg(&out)
        .arg(&job)
        .args(match mode {
            Mode::Plain => None,
            Mode::Udev => Some("udev".to_string()),
            Mode::Installed(stage) => Some(format!("installed={}", stage.display())),
        })
        .output()
        .expect("python3 is needed for the VM harness");
    assert!(
        o.status.success(),
        "the real-kernel test bed could not run {topology}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let run = Run { out, _one: one };
    assert_eq!(run.rc("job.rc"), 0, "guest job failed:\n{}", run.log());
    assert!(
        run.out.join("job.done").exists(),
        "guest job stopped early:\n{}",
        run.log()
    );
    eprintln!("{topology}: {} s in the VM", run.file("seconds").trim());
    run
}

/// `passagectl list --json` agrees with the kernel exactly: same groups, same members, same
/// drivers, for every device.
fn assert_agrees_with_kernel(run: &Run, stage: &str) -> Value {
    assert_eq!(run.rc(&format!("{stage}-list.rc")), 0);
    let list = run.json(&format!("{stage}-list.json"));
    let kernel = run.kernel(&format!("{stage}-kernel.txt"));
    let ours: BTreeMap<u64, BTreeSet<String>> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_u64().unwrap(),
                g["devices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let theirs: BTreeMap<u64, BTreeSet<String>> = kernel
        .iter()
        .map(|(g, m)| (*g, m.keys().cloned().collect()))
        .collect();
    assert_eq!(ours, theirs, "{stage}: groups differ from the kernel's");
    // `explain` tells the same story for every multi-device group, shape included.
    if stage == "boot" {
        for (g, members) in &theirs {
            if members.len() < 2 {
                continue;
            }
            let e = run.json(&format!("explain-{g}.json"));
            let ours = list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == *g)
                .unwrap();
            assert_eq!(&e["group"], ours, "explain {g} differs from list");
            assert!(
                e["group"]["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["code"].as_str().unwrap().starts_with("shape-")),
                "group {g} has no shape reason: {}",
                e["group"]
            );
        }
    }
    let drivers: BTreeMap<String, String> = kernel
        .values()
        .flatten()
        .map(|(a, d)| (a.clone(), d.clone()))
        .collect();
    for d in list["devices"].as_array().unwrap() {
        let a = d["address"].as_str().unwrap();
        if let Some(k) = drivers.get(a) {
            let ours = d["driver"].as_str().unwrap_or("-");
            assert_eq!(ours, k, "{stage}: driver of {a}");
        }
    }
    list
}

fn device<'a>(list: &'a Value, addr: &str) -> &'a Value {
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == addr)
        .unwrap_or_else(|| panic!("no {addr}"))
}

fn ids(d: &Value) -> String {
    format!(
        "{}:{}",
        d["vendor_id"].as_str().unwrap(),
        d["device_id"].as_str().unwrap()
    )
}

/// Groups whose members have these vendor:device ids (a multiset, order free).
fn groups_with<'a>(list: &'a Value, want: &[&str]) -> Vec<&'a Value> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            let mut have: Vec<String> = g["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| ids(device(list, a.as_str().unwrap())))
                .collect();
            have.sort();
            have == want
        })
        .collect()
}

fn reason<'a>(g: &'a Value, code: &str) -> Option<&'a Value> {
    g["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
}

fn addr_of(list: &Value, ids_: &str) -> Vec<String> {
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| ids(d) == ids_)
        .map(|d| d["address"].as_str().unwrap().to_string())
        .collect()
}

const E1000E: &str = "8086:10d3";
const E1000: &str = "8086:100e";
const RTL8139: &str = "10ec:8139";
const XHCI: &str = "1033:0194";
const ROOT_PORT: &str = "1b36:000c";
const PCIE_PCI_BRIDGE: &str = "1b36:000e";
const PCI_BRIDGE: &str = "1b36:0001";
const SWITCH_UP: &str = "104c:8232";
const SWITCH_DOWN: &str = "104c:8233";
const IOH3420: &str = "8086:3420";
const VIRTIO_9P: &str = "1af4:1009";

#[test]
fn root_ports_each_endpoint_alone_and_a_bound_group_is_usable_by_qemu() {
    // The first e1000e sits behind the root port at 00:02.0, so on bus 01.
    let run = boot("root-ports", "", "0000:01:00.0", true);
    let list = assert_agrees_with_kernel(&run, "boot");
    // QEMU's intel-iommu gives the firmware a DMAR table; nothing blocks.
    assert_doctor_reads_the_kernel(&run, &["DMAR"]);
    assert_eq!(
        run.file("doctor.rc").trim(),
        "0",
        "{}",
        run.file("doctor.json")
    );
    assert_eq!(list["iommu"]["enabled"], true);
    assert_eq!(groups_with(&list, &[E1000E]).len(), 2);
    assert_eq!(groups_with(&list, &[XHCI]).len(), 1);
    assert_eq!(groups_with(&list, &[ROOT_PORT]).len(), 3);
    for g in groups_with(&list, &[ROOT_PORT]) {
        assert_eq!(g["assignable"], false);
    }
    // The VM's root filesystem is the 9p share: its virtio device is host-critical.
    for g in groups_with(&list, &[VIRTIO_9P]) {
        assert!(
            reason(g, "root-filesystem").is_some() || reason(g, "mounted-filesystem").is_some(),
            "{g}"
        );
    }
    assert!(groups_with(&list, &[VIRTIO_9P])
        .iter()
        .any(|g| g["state"] == "host-critical"));

    // Bound by a plain shell sequence, the group is usable by QEMU's own steps.
    assert_eq!(
        run.rc("full-verify.rc"),
        0,
        "{}",
        run.file("full-verify.txt")
    );
    let v: Value = run.json("full-verify.json");
    assert_eq!(v["verdict"], "usable");
    assert_eq!(v["devices"][0], "0000:01:00.0");
    let list = assert_agrees_with_kernel(&run, "full");
    let g = run.file("full-group").trim().parse::<u64>().unwrap();
    let grp = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == g)
        .unwrap();
    assert_eq!(grp["state"], "assigned");
    // Held open by a process, QEMU could not have it: verify says who holds it.
    assert_eq!(run.rc("held-verify.rc"), 1);
    let held = run.file("held-verify.txt");
    let pid = run.file("holder.pid");
    assert!(
        held.contains("held open by") && held.contains(pid.trim()),
        "{held}"
    );
}

#[test]
fn pci_bridges_group_their_conventional_devices_and_a_partial_group_is_not_viable() {
    // Behind the pcie-pci-bridge (root port 00:02.0 → bus 01, bridge 01:00.0 → bus 02):
    // e1000 at 02:01.0, rtl8139 at 02:02.0.
    let run = boot("pci-bridges", "0000:02:01.0", "0000:02:01.0", false);
    let list = assert_agrees_with_kernel(&run, "boot");
    let behind_pcie = groups_with(&list, &[PCIE_PCI_BRIDGE, E1000, RTL8139]);
    let behind_pci = groups_with(&list, &[PCI_BRIDGE, E1000, RTL8139]);
    assert_eq!(
        (behind_pcie.len(), behind_pci.len()),
        (1, 1),
        "{}",
        run.file("boot-list.txt")
    );
    for (g, bridge) in [
        (behind_pcie[0], PCIE_PCI_BRIDGE),
        (behind_pci[0], PCI_BRIDGE),
    ] {
        let r =
            reason(g, "shape-pci-bridge").unwrap_or_else(|| panic!("no shape-pci-bridge in {g}"));
        let b = r["device"].as_str().unwrap();
        assert_eq!(ids(device(&list, b)), bridge);
        assert_eq!(g["assignable"], true);
    }
    // Only the e1000 bound: the kernel says not viable, and Passage names the rtl8139.
    assert_eq!(
        run.rc("partial-verify.rc"),
        1,
        "{}",
        run.file("partial-verify.txt")
    );
    let msg = run.file("partial-verify.txt");
    assert!(
        msg.contains("not viable") && msg.contains("0000:02:02.0") && msg.contains("8139cp"),
        "{msg}"
    );
    let list = assert_agrees_with_kernel(&run, "partial");
    let g = groups_with(&list, &[PCIE_PCI_BRIDGE, E1000, RTL8139])[0];
    assert_eq!(g["state"], "in-use");
    let r = reason(g, "partly-claimed").expect("partly-claimed");
    assert_eq!(r["device"], "0000:02:02.0");
    // The whole group bound (the bridge has no driver to lose): usable.
    assert_eq!(
        run.rc("full-verify.rc"),
        0,
        "{}",
        run.file("full-verify.txt")
    );
    let list = assert_agrees_with_kernel(&run, "full");
    assert_eq!(
        groups_with(&list, &[PCIE_PCI_BRIDGE, E1000, RTL8139])[0]["state"],
        "assigned"
    );
}

#[test]
fn switch_and_ioh3420_ports_without_acs_keep_their_endpoints() {
    let run = boot("switch-no-acs", "", "", false);
    let list = assert_agrees_with_kernel(&run, "boot");
    assert_eq!(
        groups_with(&list, &[SWITCH_UP]).len(),
        1,
        "the upstream port is alone"
    );
    let down = groups_with(&list, &[SWITCH_DOWN, E1000E]);
    assert_eq!(down.len(), 2, "{}", run.file("boot-list.txt"));
    let ioh = groups_with(&list, &[IOH3420, E1000E]);
    assert_eq!(ioh.len(), 1);
    for (g, port) in down
        .iter()
        .map(|g| (*g, SWITCH_DOWN))
        .chain([(ioh[0], IOH3420)])
    {
        let r = reason(g, "shape-no-acs").unwrap_or_else(|| panic!("no shape-no-acs in {g}"));
        assert_eq!(ids(device(&list, r["device"].as_str().unwrap())), port);
        assert!(
            !r["message"].as_str().unwrap().contains("apparently"),
            "read as root, ACS is known: {r}"
        );
    }
    assert!(run.kernel("boot-kernel.txt").len() > 5);
}

#[test]
fn multifunction_functions_share_a_group_and_bind_together() {
    // The two e1000e functions at 01:00.0/01:00.1 behind the root port at 00:02.0.
    let run = boot("multifunction", "", "0000:01:00.0", false);
    let list = assert_agrees_with_kernel(&run, "boot");
    let mf = groups_with(&list, &[E1000E, E1000E]);
    assert_eq!(mf.len(), 1, "{}", run.file("boot-list.txt"));
    assert!(reason(mf[0], "shape-multifunction").is_some(), "{}", mf[0]);
    assert_eq!(
        groups_with(&list, &[E1000E]).len(),
        1,
        "the e1000e on the root complex is alone"
    );
    // q35's own 00:1f.x functions share one group, explained as one multifunction device.
    let q35: Vec<&Value> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            g["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == "0000:00:1f.0")
        })
        .collect();
    assert_eq!(q35.len(), 1);
    assert!(q35[0]["devices"].as_array().unwrap().len() >= 3);
    assert!(
        reason(q35[0], "shape-multifunction").is_some(),
        "{}",
        q35[0]
    );
    assert_eq!(
        run.rc("full-verify.rc"),
        0,
        "{}",
        run.file("full-verify.txt")
    );
    let v = run.json("full-verify.json");
    assert_eq!(v["devices"].as_array().unwrap().len(), 2);
    let _ = addr_of(&list, E1000E);
}

#[test]
fn sriov_virtual_functions_get_groups_of_their_own_and_bind_alone() {
    // igb (QEMU >= 8) behind the root port at 00:02.0: the PF is 01:00.0. Passage's helper
    // gives it two VFs (`passage-helper --set-vfs`, what `passagectl vfs` asks of the service;
    // /etc/udev/rules.d on a tmpfs, as the host's root is read-only here), and the guest binds
    // the first.
    let pre = "mkdir -p /run/pstate; mount -t tmpfs rules /etc/udev/rules.d; $HELPER --state-dir /run/pstate --set-vfs 0000:01:00.0=2 > $OUT/vfs.txt 2>&1; echo $? > $OUT/vfs.rc; cp /etc/udev/rules.d/63-passage-sriov.rules $OUT/; FULL=$(basename $(readlink /sys/bus/pci/devices/0000:01:00.0/virtfn0))";
    let run = boot_with("sriov", pre, "", "", false);
    assert_eq!(run.rc("vfs.rc"), 0, "{}", run.file("vfs.txt"));
    let said = run.file("vfs.txt");
    assert!(
        said.contains("0000:01:00.0 has 2 virtual functions now: 0000:01:10.0 (group "),
        "{said}"
    );
    let rule = run.file("63-passage-sriov.rules");
    assert!(
        rule.contains("ACTION==\"add|bind\", SUBSYSTEM==\"pci\", KERNEL==\"0000:01:00.0\", DRIVER==\"?*\", DRIVER!=\"vfio-pci\", ATTR{vendor}==\"0x8086\", ATTR{device}==\"0x10c9\", ATTR{sriov_numvfs}=\"2\""),
        "{rule}"
    );
    let list = assert_agrees_with_kernel(&run, "boot");
    let pf = device(&list, "0000:01:00.0");
    // Read from the PF's SR-IOV capability; QEMU's igb model advertises 8 VFs.
    assert_eq!(
        pf["capabilities"]["sriov_total_vfs"].as_u64(),
        Some(8),
        "{pf}"
    );
    let vfs: Vec<String> = pf["virtfns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(vfs.len(), 2, "{pf}");
    let pf_group = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == pf["group"])
        .unwrap();
    let r = reason(pf_group, "sriov-pf").expect("sriov-pf");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("2 virtual functions"),
        "{r}"
    );
    for vf in &vfs {
        let d = device(&list, vf);
        assert_eq!(d["physfn"], "0000:01:00.0");
        let g = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == d["group"])
            .unwrap();
        assert_eq!(
            g["devices"].as_array().unwrap().len(),
            1,
            "each VF alone: {g}"
        );
        assert!(reason(g, "sriov-vf").is_some());
    }
    assert_eq!(
        run.rc("full-verify.rc"),
        0,
        "{}",
        run.file("full-verify.txt")
    );
    let v = run.json("full-verify.json");
    assert_eq!(v["devices"][0].as_str(), Some(vfs[0].as_str()));
}

/// The rule `passagectl vfs` writes, at a real boot: the helper gives the igb two VFs in one
/// boot; in the next (a "udev" boot: no driver loaded until systemd-udevd loads them by
/// modalias, the rule from the first boot in /etc/udev/rules.d) the card comes up without VFs,
/// igb binds it, and the rule gives it its two again — each VF its own group. The D3cold rule
/// (`fix d3cold-allowed`, rendered by the helper's own code for the igb) keeps it powered from
/// that boot on.
#[test]
fn the_virtual_functions_come_back_at_the_next_boot_through_the_helpers_rule() {
    const PF: &str = "0000:01:00.0";
    let header = |stage: &str| {
        format!(
            "PASSAGECTL={}\nHELPER={}\nSTAGE={stage}\nPF={PF}\n",
            bins::bin("passagectl"),
            bins::bin("passage-helper")
        )
    };
    // The first boot's Run holds the bed until it is dropped: the seed is taken in a block.
    let seed: Vec<(String, Vec<u8>)> = {
        let setup = boot_job(
            "sriov",
            &header("setup"),
            "tests/vm/guest-sriov-boot-job.sh",
        );
        assert_eq!(setup.rc("vfs.rc"), 0, "{}", setup.file("vfs.txt"));
        assert_eq!(setup.file("setup-numvfs.txt").trim(), "2");
        let mut seed: Vec<(String, Vec<u8>)> = ["63-passage-sriov.rules", "sriov.json"]
            .iter()
            .map(|f| (f.to_string(), setup.file(&format!("seed/{f}")).into_bytes()))
            .collect();
        // And the rule that keeps a device powered, as the helper renders it.
        let power = passage_helper::devfix::render_rule(&[passage_helper::devfix::Record {
            code: "d3cold-allowed".into(),
            address: PF.parse().unwrap(),
            vendor_id: "8086".into(),
            device_id: "10c9".into(),
            before: "1".into(),
        }]);
        seed.push(("62-passage-power.rules".into(), power.into_bytes()));
        seed
    };
    let boot = boot_udev(
        "sriov",
        &header("boot"),
        "tests/vm/guest-sriov-boot-job.sh",
        &seed,
    );
    // Before udev: no driver, no VFs (a fresh boot of the card).
    assert_eq!(boot.file("before-udev.txt").trim(), "0", "{}", boot.log());
    assert_eq!(boot.rc("settle.rc"), 0, "{}", boot.file("udevd.log"));
    assert_eq!(
        boot.file("after-udev.txt").trim(),
        "igb 2",
        "{}",
        boot.log()
    );
    // udevd's own log: the rule acted on the PF's bind.
    let udevd = boot.file("udevd.log");
    assert!(
        udevd
            .lines()
            .any(|l| l.starts_with(&format!("{PF}: ")) && l.contains("63-passage-sriov.rules")),
        "no line of 63-passage-sriov.rules for {PF} in udevd's log"
    );
    assert!(
        !udevd
            .lines()
            .any(|l| l.contains("63-passage-sriov") && l.to_lowercase().contains("invalid")),
        "udevd found the rule invalid"
    );
    let vfs: Vec<String> = boot
        .file("vfs-after.txt")
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(vfs.len(), 2, "{}", boot.file("vfs-after.txt"));
    let list = boot.json("list.json");
    let pf = device(&list, PF);
    assert_eq!(pf["virtfns"].as_array().map(Vec::len), Some(2), "{pf}");
    for vf in &vfs {
        let d = device(&list, vf);
        assert_eq!(d["physfn"], PF);
        let g = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == d["group"])
            .unwrap();
        assert_eq!(
            g["devices"].as_array().unwrap().len(),
            1,
            "each VF alone: {g}"
        );
    }
    // The power rule: the kernel's default (1) until udev added the card, 0 after.
    assert_eq!(boot.file("d3cold-before.txt").trim(), "1", "{}", boot.log());
    assert_eq!(
        boot.file("d3cold-after.txt").trim(),
        "0",
        "{}",
        boot.file("udevd.log")
    );
    assert!(
        udevd
            .lines()
            .any(|l| l.starts_with(&format!("{PF}: ")) && l.contains("62-passage-power.rules")),
        "no line of 62-passage-power.rules for {PF} in udevd's log"
    );
    eprintln!("udev boot: {}", boot.file("vfs-after.txt").trim());
}

/// `member driver` lines → map.
fn members(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, d)| (a.to_string(), d.to_string()))
        .collect()
}

#[test]
fn the_helper_claims_releases_and_rolls_back_on_a_real_kernel() {
    // pci-bridges: the group behind the pcie-pci-bridge (bridge 01:00.0 + e1000 02:01.0 +
    // rtl8139 02:02.0) and the e1000e alone behind the second root port (04:00.0).
    let header = format!(
        "PASSAGECTL={}\nHELPER={}\nMULTI=0000:02:01.0\nSINGLE=0000:04:00.0\nREFUSE=0000:02:02.0\n",
        bins::bin("passagectl"),
        bins::bin("passage-helper")
    );
    let run = boot_job("pci-bridges", &header, "tests/vm/guest-helper-job.sh");
    let multi = run.file("multi-group").trim().to_string();
    let single = run.file("single-group").trim().to_string();
    let before_multi = members(&run.file("multi-before.txt"));
    assert_eq!(
        before_multi.get("0000:02:01.0").map(String::as_str),
        Some("e1000")
    );
    assert_eq!(
        before_multi.get("0000:02:02.0").map(String::as_str),
        Some("8139cp")
    );
    for (g, before) in [
        (&single, members(&run.file("single-before.txt"))),
        (&multi, before_multi.clone()),
    ] {
        assert_eq!(
            run.rc(&format!("claim-{g}.rc")),
            0,
            "{}",
            run.file(&format!("claim-{g}.txt"))
        );
        let claimed = members(&run.file(&format!("claimed-{g}.txt")));
        for (a, d) in &claimed {
            let bridge = before[a] == "-" && a.ends_with(":00.0") && a.starts_with("0000:01");
            if bridge {
                assert_eq!(d, "-", "the bridge {a} is never bound");
            } else {
                assert_eq!(d, "vfio-pci", "{a} in group {g}");
            }
        }
        assert_eq!(
            run.rc(&format!("verify-{g}.rc")),
            0,
            "{}",
            run.file(&format!("verify-{g}.txt"))
        );
        assert!(
            run.file(&format!("reclaim-{g}.txt")).contains("already"),
            "claiming twice changes nothing"
        );
        assert_eq!(
            run.rc(&format!("release-{g}.rc")),
            0,
            "{}",
            run.file(&format!("release-{g}.txt"))
        );
        assert_eq!(
            members(&run.file(&format!("released-{g}.txt"))),
            before,
            "group {g} back on its drivers"
        );
    }
    // The refusing member: the claim fails naming it, and every member is back.
    assert_eq!(run.rc("refused.rc"), 1);
    let why = run.file("refused.txt");
    assert!(
        why.contains("0000:02:02.0") && why.contains("put back"),
        "{why}"
    );
    assert_eq!(members(&run.file("after-refusal.txt")), before_multi);
    assert!(
        !run.file("state-after-refusal.txt").contains("journal"),
        "no journal left"
    );
    // kill -9, unplugs, refusals and races: the_fault_campaign_on_a_real_kernel_… below.
    assert_eq!(members(&run.file("multi-end.txt")), before_multi);

    // The reset rehearsal: the e1000e reset by the kernel's methods for it, answering (its
    // config space read from the device afterwards),
    // back on e1000e, and the result kept for its model and this kernel.
    let methods = run.file("reset-method.txt");
    let methods = methods.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!methods.is_empty(), "QEMU's e1000e has a reset method");
    let said = run.file("rehearse.txt");
    assert_eq!(run.rc("rehearse.rc"), 0, "{said}");
    assert!(
        said.contains("0000:04:00.0 (") && said.contains(&format!("reset ({methods}): yes; answers afterwards: yes; back on e1000e: yes. Survives a guest reboot: yes.")),
        "{said}"
    );
    assert_eq!(
        members(&run.file("rehearsed.txt")),
        members(&run.file("single-before.txt"))
    );
    let recs = run.json("resets.json");
    let r = &recs[0];
    assert_eq!(
        (r["vendor_id"].as_str(), r["device_id"].as_str()),
        (Some("8086"), Some("10d3")),
        "{recs}"
    );
    assert!(
        r["kernel"].as_str().is_some_and(|k| k.starts_with("6.")),
        "{recs}"
    );
    assert_eq!(
        (
            r["reset"].as_bool(),
            r["answers"].as_bool(),
            r["back"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
}

/// One injected fault, as tests/vm/guest-faults-job.sh recorded it.
#[derive(Debug)]
struct Fault {
    place: String,
    fault: String,
    aimed: String,
    landed: String,
    expected: String,
    outcome: String,
    stranded: u32,
    journals: u32,
    detail: String,
}

fn faults(tsv: &str) -> Vec<Fault> {
    tsv.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 9, "a malformed fault line: {l}");
            Fault {
                place: f[0].into(),
                fault: f[1].into(),
                aimed: f[2].into(),
                landed: f[3].into(),
                expected: f[4].into(),
                outcome: f[5].into(),
                stranded: f[6].parse().unwrap_or_else(|_| panic!("{l}")),
                journals: f[7].parse().unwrap_or_else(|_| panic!("{l}")),
                detail: f[8].into(),
            }
        })
        .collect()
}

/// The campaign's table in docs/RELIABILITY.md, between its markers: one row per kind of fault
/// with how many were injected, how many landed where aimed, how each ended, and what was left
/// on no driver.
fn reliability_table(kernel: &str, all: &[Fault]) -> String {
    let mut rows: Vec<(String, String, Vec<&Fault>)> = Vec::new();
    for f in all.iter().filter(|f| f.aimed != "check") {
        // Kills at different points of one operation are one kind of fault.
        let kind = f.fault.clone();
        match rows
            .iter_mut()
            .find(|(p, k, _)| *p == f.place && *k == kind)
        {
            Some(r) => r.2.push(f),
            None => rows.push((f.place.clone(), kind, vec![f])),
        }
    }
    let total: usize = rows.iter().map(|r| r.2.len()).sum();
    let stranded: u32 = all.iter().map(|f| f.stranded).sum();
    let mut t = format!(
        "Kernel {kernel} (Debian's, in QEMU q35 with VT-d), the helper built with its fault points.\n\n\
         | where | fault | injected | landed where aimed | points | ended (after the next start) | left on no driver |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (place, kind, fs) in &rows {
        let aimed: Vec<&str> = fs
            .iter()
            .map(|f| f.aimed.as_str())
            .filter(|a| *a != "-")
            .collect();
        let landed = fs
            .iter()
            .filter(|f| f.aimed != "-" && landed_as_aimed(f))
            .count();
        let mut ends: Vec<&str> = fs.iter().map(|f| f.outcome.as_str()).collect();
        ends.dedup();
        t += &format!(
            "| {place} | {kind} | {} | {} | {} | {} | {} |\n",
            fs.len(),
            if aimed.is_empty() {
                "—".to_string()
            } else {
                format!("{landed} of {}", aimed.len())
            },
            if aimed.is_empty() {
                "—".to_string()
            } else {
                aimed.join(", ")
            },
            ends.join("; "),
            fs.iter().map(|f| f.stranded).sum::<u32>()
        );
    }
    t += &format!(
        "\nTotals: {total} faults injected on the real kernel, {stranded} devices left on no driver.\n"
    );
    t
}

fn landed_as_aimed(f: &Fault) -> bool {
    if f.aimed.ends_with(":begin") {
        // Stopped before the journal: the mark is that there is none.
        f.landed == "none"
    } else {
        f.landed == f.aimed
    }
}

#[test]
fn the_fault_campaign_on_a_real_kernel_leaves_no_device_on_no_driver() {
    // faults: the pci-bridges machine plus two e1000e cards on hot-pluggable root ports.
    let header = format!(
        "PASSAGECTL={}\nHELPER={}\nREPO={}\nMULTI=0000:02:01.0\nMULTI2=0000:03:01.0\nSINGLE=0000:04:00.0\nHP1=0000:05:00.0\nHP2=0000:06:00.0\n",
        bins::bin("passagectl"),
        bins::bin("passage-helper"),
        env!("CARGO_MANIFEST_DIR")
    );
    let run = boot_job("faults", &header, "tests/vm/guest-faults-job.sh");
    let errors = run.file("errors.txt");
    assert!(errors.trim().is_empty(), "{errors}");
    let all = faults(&run.file("faults.tsv"));
    let injected = all.iter().filter(|f| f.aimed != "check").count();
    assert!(injected >= 100, "only {injected} faults were injected");
    for f in &all {
        if f.aimed != "-" && f.aimed != "check" {
            assert!(
                landed_as_aimed(f),
                "aimed at {}, landed at {}: {f:?}",
                f.aimed,
                f.landed
            );
        }
        assert_eq!(f.stranded, 0, "a device left on no driver: {f:?}");
        assert_eq!(f.outcome, f.expected, "{f:?}");
        assert_eq!(f.journals, 0, "a journal left after recovery: {f:?}");
    }
    let one = |needle: &str| -> &Fault {
        all.iter()
            .find(|f| f.fault.contains(needle))
            .unwrap_or_else(|| panic!("no fault {needle:?} in the campaign"))
    };
    // Every refusal is a named failure (exit 1), and a release that could not finish left
    // the device usable (on vfio-pci) until the next start put it back.
    for needle in [
        "refuses to unbind 0000",
        "drivers_probe refused",
        "override swallowed",
    ] {
        let f = one(needle);
        assert!(f.detail.starts_with("exit 1"), "{f:?}");
    }
    let f = one("refuses to bind 0000:02:01.0 back");
    assert!(
        f.detail.contains("0000:02:01.0=vfio-pci") && f.detail.contains("(stranded 0)"),
        "{f:?}"
    );
    let f = one("vfio-pci refuses to unbind");
    assert!(f.detail.contains("0000:02:01.0=vfio-pci"), "{f:?}");
    // Full state directory: refused before any write, or rolled back when the record failed.
    assert!(one("full before the claim")
        .detail
        .contains("No space left"));
    assert!(one("fills before the claim is recorded")
        .detail
        .contains("could not be recorded"));
    // Hot-unplug: QEMU took the card out; the release still finished for what was left.
    for f in all.iter().filter(|f| f.fault.contains("hot-unplugged")) {
        assert!(f.detail.contains("QMP: {\"return\": {}}"), "{f:?}");
    }
    let f = one("hot-unplugged during release");
    assert!(
        f.detail.contains("exit 0:"),
        "the release finishes for what is left: {f:?}"
    );
    assert!(
        !run.file("claims-after-unplug.txt").contains(".json"),
        "a claim record of a removed card stayed"
    );
    // Races: the second helper is told the group is busy (or, a replay, leaves it alone).
    for needle in ["a second --claim", "a second --release"] {
        let f = one(needle);
        assert!(
            f.detail.contains("second: exit 1") && f.detail.contains("being changed"),
            "{f:?}"
        );
    }
    assert!(one("--replay during a live claim")
        .detail
        .contains("second: exit 0"));
    // polkitd gone: the caller is told polkit could not decide; nothing changed.
    let f = one("polkitd killed");
    assert!(
        f.detail.contains("polkit stopped before it decided"),
        "{f:?}"
    );
    assert!(!f.detail.starts_with("exit 0"), "{f:?}");
    // The caller of a killed service, or of one whose bus died, reads what happened and what
    // to do, not a bare D-Bus error.
    for f in all
        .iter()
        .filter(|f| f.fault.contains("of the service during"))
    {
        assert!(f.detail.contains("stopped before it answered"), "{f:?}");
    }
    let f = one("dbus-daemon killed");
    assert!(
        f.detail.contains("connection to the system bus was lost"),
        "{f:?}"
    );

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/RELIABILITY.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (begin, end) = (
        "<!-- fault-campaign:begin -->\n",
        "<!-- fault-campaign:end -->",
    );
    let (a, b) = (
        doc.find(begin)
            .expect("docs/RELIABILITY.md has the campaign's begin marker"),
        doc.find(end)
            .expect("docs/RELIABILITY.md has the campaign's end marker"),
    );
    let table = reliability_table(run.file("kernel-release").trim(), &all);
    let new = format!("{}{begin}{table}{}", &doc[..a], &doc[b..]);
    if new != doc {
        std::fs::write(&doc_path, new).unwrap();
    }
    eprintln!("{table}");
}

#[test]
fn the_helper_service_on_a_real_kernel_settles_two_concurrent_claims() {
    // root-ports: the e1000e at 01:00.0 is alone in its group. The guest runs a private system
    // bus, real polkitd (a rule makes it take 3 s to approve nobody) and passage-helper. (That
    // a request waiting for a password holds nothing is shown in tests/helper_bus.rs with a
    // real agent: polkitd evaluates a slow rule for everyone, so it cannot show it here.)
    let header = format!(
        "PASSAGECTL={}\nHELPER={}\nREPO={}\nDEVICE=0000:01:00.0\n",
        bins::bin("passagectl"),
        bins::bin("passage-helper"),
        env!("CARGO_MANIFEST_DIR")
    );
    let run = boot_job("root-ports", &header, "tests/vm/guest-service-job.sh");
    assert!(
        !run.out.join("service-errors.txt").exists(),
        "{}",
        run.file("service-errors.txt")
    );
    assert_eq!(run.file("service-before.txt").trim(), "e1000e");
    // polkitd answers both almost together (its slow rule holds up root's check as well), so
    // either may take the group first. Exactly one claims it; the other is told Busy at once
    // (never queued) or finds it claimed already — never a second claim, never another error.
    let ends: Vec<(i32, String)> = ["first", "second"]
        .iter()
        .map(|n| (run.rc(&format!("{n}.rc")), run.file(&format!("{n}.txt"))))
        .collect();
    let claimed = ends
        .iter()
        .filter(|(rc, t)| *rc == 0 && t.contains("is now on vfio-pci"))
        .count();
    assert_eq!(
        claimed,
        1,
        "{ends:?}\nhelper log:\n{}",
        run.file("helper.log")
    );
    for (rc, t) in &ends {
        let ok = (*rc == 0
            && (t.contains("is now on vfio-pci") || t.contains("already on vfio-pci")))
            || (*rc == 2 && t.contains("being changed by another request"));
        assert!(ok, "a concurrent claim ended {rc}: {t}");
    }
    assert_eq!(run.file("service-after.txt").trim(), "vfio-pci");
    assert_eq!(
        run.rc("service-verify.rc"),
        0,
        "{}",
        run.file("service-verify.txt")
    );
    assert_eq!(
        run.rc("service-release.rc"),
        0,
        "{}",
        run.file("service-release.txt")
    );
    assert_eq!(run.file("service-released.txt").trim(), "e1000e");
}

/// The doctor's facts against what the guest's shell reads of the same kernel: its release,
/// how it has vfio-pci, the firmware's IOMMU tables (expected: `tables`).
fn assert_doctor_reads_the_kernel(run: &Run, tables: &[&str]) -> Value {
    let d = run.json("doctor.json");
    let f = &d["facts"];
    assert_eq!(
        f["kernel_release"].as_str(),
        Some(run.file("osrelease.txt").trim()),
        "{d}"
    );
    let state = run.file("vfio-pci-state.txt");
    let state = state.trim();
    assert_ne!(
        state, "unknown",
        "the guest has no module directory for its kernel"
    );
    assert_eq!(f["vfio_pci"].as_str(), Some(state), "{d}");
    let listed: Vec<String> = run
        .file("acpi-tables.txt")
        .split_whitespace()
        .filter(|t| matches!(*t, "DMAR" | "IVRS" | "IORT"))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, tables, "the kernel's own listing");
    assert_eq!(f["firmware_iommu_tables"], serde_json::json!(tables), "{d}");
    // Debian 12's kernel (6.1) has neither iommufd's /dev/iommu nor VFIO's per-device files
    // (6.6): the doctor must not claim them from the vfio-dev class alone (there since 6.1).
    assert_eq!(f["iommufd"], false, "{d}");
    assert_ne!(f["vfio_cdev"], true, "{d}");
    d
}

fn assert_no_groups(run: &Run) -> Value {
    let list = run.json("boot-list.json");
    assert_eq!(
        list["iommu"]["enabled"],
        false,
        "{}",
        run.file("boot-list.txt")
    );
    assert!(list["groups"].as_array().unwrap().is_empty());
    assert!(run.kernel("boot-kernel.txt").is_empty());
    assert!(list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["group"].is_null()));
    list
}

/// The bed is itself a virtual machine (QEMU's q35 with its emulated Intel host bridge, on
/// this machine's CPU model, which says "hypervisor"): without the emulated VT-d there are no
/// groups, and the remedy is a virtual IOMMU for the VM — not a firmware switch, whatever the
/// host bridge's vendor suggests.
#[test]
fn in_a_vm_without_a_virtual_iommu_there_are_no_groups_and_passage_says_to_give_it_one() {
    let run = boot("no-iommu", "", "", false);
    let list = assert_no_groups(&run);
    // QEMU without a virtual IOMMU gives the guest's firmware no DMAR table; the doctor says
    // the VM's remedy first and exits 1 (a blocker).
    let d = assert_doctor_reads_the_kernel(&run, &[]);
    assert_eq!(d["findings"][0]["code"], "iommu-off-vm", "{d}");
    assert_eq!(run.file("doctor.rc").trim(), "1");
    let r = &list["iommu"]["reasons"][0];
    assert_eq!(r["code"], "iommu-off-vm", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("QEMU"),
        "the machine is named: {r}"
    );
    let remedy = r["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("intel-iommu")
            && remedy.contains("virtio-iommu-pci")
            && !remedy.contains("VT-d"),
        "{r}"
    );
}

#[test]
fn with_intel_iommu_off_passage_names_the_parameter_to_remove() {
    let run = boot("iommu-off-cmdline", "", "", false);
    let list = assert_no_groups(&run);
    let r = &list["iommu"]["reasons"][0];
    assert_eq!(r["code"], "iommu-disabled-cmdline", "{r}");
    assert!(
        r["remedy"].as_str().unwrap().contains("intel_iommu=off"),
        "{r}"
    );
}

#[test]
fn a_qemu_started_with_the_exported_arguments_opens_the_claimed_group() {
    // multifunction: the two e1000e functions at 01:00.0/01:00.1, one group, like a GPU and
    // its audio. Inside the guest: plan → export --format qemu → claim → QEMU with exactly
    // those arguments.
    let header = format!(
        "PASSAGECTL={}\nHELPER={}\nDEVICE=0000:01:00.0\n",
        bins::bin("passagectl"),
        bins::bin("passage-helper")
    );
    let run = boot_job("multifunction", &header, "tests/vm/guest-export-job.sh");
    let g = run.file("export-group").trim().to_string();
    assert_eq!(run.rc("plan.rc"), 0, "{}", run.file("plan.txt"));
    assert_eq!(run.rc("export.rc"), 0, "{}", run.file("export.err"));
    let args = run.file("export.args");
    assert!(
        args.contains("host=0000:01:00.0") && args.contains("multifunction=on"),
        "{args}"
    );
    assert_eq!(run.rc("claim.rc"), 0, "{}", run.file("claim.txt"));
    for line in run.file("export-claimed.txt").lines() {
        assert!(line.ends_with(" vfio-pci"), "{line}");
    }
    // QEMU opened the group (its fd on /dev/vfio/G and the container), attached the devices
    // where the plan said, and ran until told to quit.
    let fds = run.file("qemu-fds.txt");
    assert!(
        fds.lines().any(|l| l == format!("/dev/vfio/{g}")),
        "QEMU did not open /dev/vfio/{g}: {fds}\n{}",
        run.file("qemu.log")
    );
    assert!(fds.lines().any(|l| l == "/dev/vfio/vfio"), "{fds}");
    assert_eq!(run.rc("qmp.rc"), 0, "{}", run.file("qmp.err"));
    let q = run.json("qmp.json");
    assert_eq!(
        q["passage-hostdev0"]["parent_bus"],
        "/machine/peripheral/passage-rp1/passage-rp1"
    );
    assert_eq!(q["passage-hostdev0"]["addr"], 0, "slot 0 function 0");
    assert_eq!(q["passage-hostdev1"]["addr"], 1, "slot 0 function 1");
    assert_eq!(q["passage-hostdev0"]["host"], "0000:01:00.0");
    assert_eq!(run.rc("qemu.rc"), 0, "{}", run.file("qemu.log"));
    // While QEMU held it, verify named the holder.
    assert_eq!(run.rc("verify-while-open.rc"), 1);
    assert!(
        run.file("verify-while-open.txt").contains("qemu"),
        "{}",
        run.file("verify-while-open.txt")
    );
    assert_eq!(run.rc("release.rc"), 0, "{}", run.file("release.txt"));
    assert_eq!(run.file("export-after.txt"), run.file("export-before.txt"));
    eprintln!(
        "nested QEMU ran {} s inside the TCG guest",
        run.file("qemu.seconds").trim()
    );
}

/// `ADDRESS VENDOR:DEVICE DRIVER` lines (guest-persist-job.sh) → address → (ids, driver).
fn functions(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), (f[1].to_string(), f[2].to_string())))
        })
        .collect()
}

#[test]
fn a_persisted_group_is_claimed_at_the_next_boot_before_its_host_driver_and_only_at_its_address() {
    // persist: e1000e at 01:00.0 and e1000 at 03:00.0 are persisted; the identical e1000e at
    // 02:00.0 is not. Boot 1 (drivers bound, as a user has them) persists; boot 2 is a boot as
    // a distribution does it, udev loading drivers by modalias; boot 3 the same machine after
    // a card moved (an rtl8139 now at 01:00.0).
    let (a, twin, c) = ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0");
    let header = |stage: &str| {
        format!(
            "PASSAGECTL={}\nHELPER={}\nSTAGE={stage}\nPERSIST='{a} {c}'\nTWIN={twin}\n",
            bins::bin("passagectl"),
            bins::bin("passage-helper")
        )
    };
    let seed: Vec<(String, Vec<u8>)> = {
        let setup = boot_job("persist", &header("setup"), "tests/vm/guest-persist-job.sh");
        let before = functions(&setup.file("setup-drivers.txt"));
        assert_eq!(before[a].1, "e1000e");
        assert_eq!(before[twin], before[a], "the twin is the same card");
        assert_eq!(before[c].1, "e1000");
        assert!(
            setup.file("persist.rc").lines().all(|l| l == "0"),
            "{}",
            setup.file("persist.txt")
        );
        let rule = setup.file("seed/61-passage-vfio.rules");
        assert!(rule.contains(&format!("KERNEL==\"{a}\"")), "{rule}");
        assert!(rule.contains(&format!("KERNEL==\"{c}\"")), "{rule}");
        assert!(!rule.contains(twin), "the twin must not be taken: {rule}");
        let softdeps = setup.file("seed/passage-vfio.conf");
        assert!(
            softdeps.contains("softdep e1000e pre: vfio-pci"),
            "{softdeps}"
        );
        assert!(
            softdeps.contains("softdep e1000 pre: vfio-pci"),
            "{softdeps}"
        );
        ["61-passage-vfio.rules", "passage-vfio.conf", "persist.json"]
            .iter()
            .map(|f| (f.to_string(), setup.file(&format!("seed/{f}")).into_bytes()))
            .collect()
    };
    {
        let boot = boot_udev(
            "persist",
            &header("boot"),
            "tests/vm/guest-persist-job.sh",
            &seed,
        );
        // Before udev ran, no host driver was loaded: the race is really run.
        let before = functions(&boot.file("before-udev.txt"));
        for d in [a, twin, c] {
            assert_eq!(before[d].1, "-", "{d} was bound before udev: {before:?}");
        }
        assert_eq!(boot.rc("settle.rc"), 0, "{}", boot.file("udevd.log"));
        // udevd's own log (--debug): the rule set the override and probed each persisted
        // device before 80-drivers loaded its host driver; it never touched the twin.
        let udevd = boot.file("udevd.log");
        for d in [a, c] {
            let line = |needle: &str| {
                udevd
                    .lines()
                    .position(|l| l.starts_with(&format!("{d}: ")) && l.contains(needle))
                    .unwrap_or_else(|| panic!("{d}: no “{needle}” in udevd's log"))
            };
            let set = line("61-passage-vfio.rules");
            let probe = line(&format!(
                "Running command \"/bin/sh -c 'echo {d} > /sys/bus/pci/drivers_probe'\""
            ));
            let host_driver = line("Running built-in command \"kmod load\"");
            assert!(set < probe && probe < host_driver, "{d}: out of order");
        }
        assert!(
            !udevd
                .lines()
                .any(|l| l.starts_with(twin) && l.contains("61-passage-vfio")),
            "the rule acted on the twin"
        );
        assert!(
            !udevd
                .lines()
                .any(|l| l.contains("61-passage-vfio") && l.to_lowercase().contains("invalid")),
            "udevd found the rule invalid"
        );
        let after = functions(&boot.file("after-udev.txt"));
        assert_eq!(
            after[a].1,
            "vfio-pci",
            "{after:?}\n{}",
            boot.file("modules.txt")
        );
        assert_eq!(
            after[c].1,
            "vfio-pci",
            "{after:?}\n{}",
            boot.file("modules.txt")
        );
        assert_eq!(
            after[twin].1, "e1000e",
            "the identical card stays the host's"
        );
        let modules = boot.file("modules.txt");
        for m in ["vfio_pci", "e1000e", "e1000"] {
            assert!(modules.lines().any(|l| l == m), "{m} not loaded: {modules}");
        }
        // The boot-time re-claim finds both groups already claimed and changes nothing.
        assert_eq!(boot.rc("reclaim.rc"), 0, "{}", boot.file("reclaim.txt"));
        let reclaim = boot.file("reclaim.txt");
        assert_eq!(
            reclaim.matches("already on vfio-pci at boot").count(),
            2,
            "{reclaim}"
        );
        assert_eq!(
            functions(&boot.file("after-reclaim.txt")),
            after,
            "{reclaim}"
        );
        // And Passage says so.
        let list = boot.json("list.json");
        let state_of = |d: &str| {
            list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["devices"].as_array().unwrap().iter().any(|x| x == d))
                .map(|g| g["state"].as_str().unwrap().to_string())
        };
        assert_eq!(state_of(a).as_deref(), Some("assigned"));
        assert_eq!(state_of(c).as_deref(), Some("assigned"));
        assert_ne!(state_of(twin).as_deref(), Some("assigned"));
        eprintln!(
            "udev boot: drivers settled in {} s",
            boot.file("udev.seconds").trim()
        );
    }
    // A card moved: 01:00.0 now holds an rtl8139. The rule's ids no longer match, so its own
    // driver takes it; the re-claim skips that group and says why; the e1000 is still claimed.
    let shifted = boot_udev(
        "persist-shifted",
        &header("boot"),
        "tests/vm/guest-persist-job.sh",
        &seed,
    );
    let after = functions(&shifted.file("after-reclaim.txt"));
    assert_eq!(after[a].0, "10ec:8139");
    assert_eq!(after[a].1, "8139cp", "{after:?}");
    assert_eq!(after[c].1, "vfio-pci", "{after:?}");
    let reclaim = shifted.file("reclaim.txt");
    assert!(
        reclaim.contains("skipped") && reclaim.contains("10ec:8139"),
        "{reclaim}"
    );
}

/// What the installed system's job checks (tests/vm/guest-installed-job.sh), boot by boot:
/// every one must be there and pass.
const INSTALLED_CHECKS: &[(u32, &str)] = &[
    (1, "no-failed-units"),
    (1, "pid1-is-systemd"),
    (1, "an-initramfs-to-rebuild"),
    (1, "host-drivers-at-first-boot"),
    (1, "helper-not-running-before-use"),
    (1, "status-activates-the-helper"),
    (1, "helper-runs-under-its-unit"),
    (1, "helper-unit-is-hardened"),
    (1, "helper-sees-usr-read-only"),
    (1, "helper-may-write-modprobe-d"),
    (1, "default-route-nic-is-refused"),
    (1, "default-route-is-named"),
    (1, "default-route-nic-stays"),
    (1, "bob-is-refused"),
    (1, "bob-is-told-why"),
    (1, "bob-changed-nothing"),
    (1, "alice-claims"),
    (1, "claimed-on-vfio-pci"),
    (1, "alice-verifies"),
    (1, "status-lists-the-claim"),
    (1, "claim-survives-a-service-restart"),
    (1, "claim-survives-a-bus-restart"),
    (1, "still-on-vfio-pci-after-restarts"),
    (1, "alice-releases"),
    (1, "released-to-host-drivers"),
    (1, "app-shows-the-apply-button"),
    (1, "app-apply-is-done"),
    (1, "app-apply-claimed-the-group"),
    (1, "released-after-the-app"),
    (1, "alice-persists"),
    (1, "persist-wrote-the-udev-rule"),
    (1, "persist-wrote-the-softdeps"),
    (1, "persist-wrote-the-list"),
    (1, "persist-rebuilt-the-initramfs"),
    (1, "the-initramfs-carries-the-softdeps"),
    (1, "status-lists-the-persisted-group"),
    (1, "doctor-knows-how-it-boots"),
    (1, "doctor-offers-the-fix"),
    (1, "fix-takes-vfio-pci-ids-away"),
    (1, "fix-ran-in-its-unit"),
    (1, "fix-changed-etc-kernel-cmdline"),
    (1, "kernel-install-wrote-the-entry"),
    (1, "kernel-install-kept-the-rest"),
    (1, "doctor-says-it-waits-for-a-restart"),
    (2, "no-failed-units"),
    (2, "pid1-is-systemd"),
    (2, "persisted-group-on-vfio-pci-after-reboot"),
    (2, "host-driver-never-bound-it"),
    (2, "reclaim-found-it-on-vfio-pci"),
    (2, "status-says-held-and-persisted"),
    (2, "status-does-not-say-not-held"),
    (2, "status-json-persisted-and-held"),
    (2, "boot-claim-releases-to-host-drivers"),
    (2, "reclaim-claims-under-its-unit"),
    (2, "reclaim-says-it-claimed"),
    (2, "alice-unpersists"),
    (2, "unpersist-removed-the-udev-rule"),
    (2, "unpersist-removed-the-softdeps"),
    (2, "unpersist-rebuilt-the-initramfs"),
    (2, "the-initramfs-is-readable"),
    (2, "the-initramfs-lost-the-softdeps"),
    (2, "the-fix-took"),
    (2, "doctor-finds-nothing-waiting"),
    (2, "unfix-gives-it-back"),
    (2, "unfix-wrote-the-entry"),
    (3, "no-failed-units"),
    (3, "pid1-is-systemd"),
    (3, "host-drivers-after-unpersist-and-reboot"),
    (3, "host-driver-logs-when-it-binds"),
    (3, "status-holds-nothing"),
    (3, "status-persists-nothing"),
    (3, "the-unfix-took"),
    (3, "doctor-sees-the-configured-line"),
];

/// Passage as a distribution installs it: `make install PREFIX=/usr` onto a system that systemd
/// boots (Debian's systemd, udev, dbus-daemon and polkitd), the helper started only by D-Bus
/// activation under its installed, hardened unit. As a user a polkit rule allows (and one it
/// does not): claim, verify, release, the service and the bus restarted with a group held;
/// the app's Apply (a real window under Xvfb, pressed with the pointer); persist on; a real reboot, the group on vfio-pci before its host driver loaded; persist off;
/// another reboot, the host drivers have it again.
#[test]
fn the_installed_system_claims_persists_and_reboots_through_systemd_and_dbus_activation() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stage = Path::new(env!("CARGO_TARGET_TMPDIR")).join("installed-stage");
    let docs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("installed-docs");
    let _ = std::fs::remove_dir_all(&stage);
    let bins = Path::new(bins::bin("passagectl")).parent().unwrap();
    bins::bin("passage-helper");
    bins::bin("passage");
    let o = Command::new("make")
        .current_dir(repo)
        .args(["install", "PREFIX=/usr", "CARGO=true"])
        .arg(format!("DESTDIR={}", stage.display()))
        .arg(format!("BINSRC={}", bins.display()))
        .arg(format!("DOCSRC={}", docs.display()))
        .output()
        .expect("make is needed (build-essential)");
    assert!(
        o.status.success(),
        "make install failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let run = boot_job_with(
        "pci-bridges",
        "ADDR=0000:02:01.0\n",
        "tests/vm/guest-installed-job.sh",
        Mode::Installed(&stage),
        &[],
    );
    let checks = run.file("checks.tsv");
    let mut seen = BTreeSet::new();
    let mut failed = Vec::new();
    for line in checks.lines() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(
            f.len(),
            4,
            "a check line with fewer than four fields: {line}"
        );
        seen.insert((f[0].parse::<u32>().unwrap(), f[1].to_string()));
        if f[2] != "ok" {
            failed.push(line.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "checks failed:\n{}\nguest log:\n{}",
        failed.join("\n"),
        run.log()
    );
    for (boot, name) in INSTALLED_CHECKS {
        assert!(
            seen.contains(&(*boot, name.to_string())),
            "boot {boot}: check {name} never ran\nguest log:\n{}",
            run.log()
        );
    }
    let on = run.file("persist-on.txt");
    eprintln!("persist on said: {on}");
}
