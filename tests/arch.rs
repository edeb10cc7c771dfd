//! Passage beyond x86, on real kernels: Debian's arm64 kernel on QEMU's `virt` machine (with the
//! SMMUv3, and without an IOMMU) and Debian's ppc64el kernels on `pseries` (several PCI host
//! bridges: partitionable endpoints), under TCG, with passagectl and passage-helper built for
//! each architecture by Debian's cross compilers (tests/vm/cross.py; docs/TESTING.md). And x86
//! on a kernel of another release than the x86 bed's: Debian 11's 5.10, before `reset_method`.
//!
//! Each boot compares what Passage says with what the kernel did, claims and releases groups
//! through the helper, and runs QEMU's VFIO steps (`verify`) on them. If this machine cannot
//! build for those targets or run their QEMU, these tests fail and say why.

#[path = "common/bins.rs"]
mod bins;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One VM at a time (two cores), and one cross build at a time.
static VM: Mutex<()> = Mutex::new(());

struct Run {
    out: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Run {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\nguest log:\n{}", self.log()))
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
    /// The kernel's PCI listing: address → (driver, group), "-" for none.
    fn pci(&self, name: &str) -> BTreeMap<String, (String, String)> {
        self.file(name)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), (f[3].to_string(), f[4].to_string()))
            })
            .collect()
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds passagectl and passage-helper for `arch` (Debian's name) and returns their paths.
fn cross_build(arch: &str) -> Vec<String> {
    let o = Command::new("python3")
        .arg(root().join("tests/vm/cross.py"))
        .args(["build", arch])
        .output()
        .expect("python3 is needed for the cross bed");
    assert!(
        o.status.success(),
        "building Passage for {arch} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Boots `topology` with tests/vm/guest-arch-job.sh, claiming the groups of `claims`.
fn boot(topology: &str, arch: &str, claims: &[&str]) -> Run {
    boot_with(topology, arch, claims, "")
}

/// [`boot`], creating virtual functions first (`vfs`: "ADDRESS=N").
fn boot_with(topology: &str, arch: &str, claims: &[&str], vfs: &str) -> Run {
    let one = VM.lock().unwrap_or_else(|e| e.into_inner());
    // x86 runs this build's own binaries (the bed's userland is the host's release).
    let bins = if arch == "amd64" {
        vec![
            bins::bin("passagectl").to_string(),
            bins::bin("passage-helper").to_string(),
        ]
    } else {
        cross_build(arch)
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("arch")
        .join(topology);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let job = out.with_extension("job.sh");
    let body = std::fs::read_to_string(root().join("tests/vm/guest-arch-job.sh")).unwrap();
    let header = format!("CLAIMS='{}'\nVFS='{vfs}'\n", claims.join(" "));
    std::fs::write(&job, header + &body).unwrap();
    let o = Command::new("python3")
        .arg(root().join("tests/vm/cross.py"))
        .args(["run", topology])
        .arg(&out)
        .arg(&job)
        .args(&bins)
        .output()
        .expect("python3 is needed for the cross bed");
    assert!(
        o.status.success(),
        "the {arch} test bed could not run {topology}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let run = Run { out, _one: one };
    assert_eq!(run.rc("job.rc"), 0, "guest job failed:\n{}", run.log());
    assert!(run.out.join("job.done").exists(), "{}", run.log());
    eprintln!(
        "{topology}: {} on {}, {} s in the VM",
        run.file("kernel-release").trim(),
        run.file("machine").trim(),
        run.file("seconds").trim()
    );
    run
}

/// `list --json` has the kernel's groups exactly (membership and drivers), `explain` tells the
/// same story for every multi-device group with a shape reason, and the recording made in the
/// guest reads back here (on x86) to the same listing.
fn assert_agrees_with_kernel(run: &Run) -> Value {
    assert_eq!(run.rc("boot-list.rc"), 0, "{}", run.file("boot-list.err"));
    let list = run.json("boot-list.json");
    let mut kernel: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in run.file("boot-kernel.txt").lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        kernel
            .entry(f[0].to_string())
            .or_default()
            .insert(f[1].to_string());
    }
    let ours: BTreeMap<String, BTreeSet<String>> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].to_string(),
                g["devices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(ours, kernel, "groups differ from the kernel's");
    let pci = run.pci("boot-pci.txt");
    for d in list["devices"].as_array().unwrap() {
        let a = d["address"].as_str().unwrap();
        let (drv, grp) = &pci[a];
        assert_eq!(d["driver"].as_str().unwrap_or("-"), drv, "driver of {a}");
        let g = d["group"].as_u64().map(|g| g.to_string());
        assert_eq!(g.as_deref().unwrap_or("-"), grp, "group of {a}");
    }
    for g in list["groups"].as_array().unwrap() {
        if g["devices"].as_array().unwrap().len() < 2 {
            continue;
        }
        let id = &g["id"];
        let e = run.json(&format!("explain-{id}.json"));
        assert_eq!(&e["group"], g, "explain {id} differs from list");
        assert!(
            g["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["code"].as_str().unwrap().starts_with("shape-")),
            "group {id} has no shape reason: {g}"
        );
    }
    // The recording, read here by this machine's passagectl, says the same.
    assert_eq!(run.rc("record.rc"), 0, "{}", run.file("record.txt"));
    let o = Command::new(bins::bin("passagectl"))
        .arg("--root")
        .arg(run.out.join("record"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(back["groups"], list["groups"], "the recording reads back");
    assert_eq!(back["iommu"], list["iommu"], "the recording reads back");
    list
}

fn group<'a>(list: &'a Value, member: &str) -> &'a Value {
    list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["devices"].as_array().unwrap().iter().any(|d| d == member))
        .unwrap_or_else(|| panic!("no group holds {member}"))
}

fn codes(g: &Value) -> Vec<String> {
    g["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

fn reason<'a>(g: &'a Value, code: &str) -> &'a Value {
    g["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {g}"))
}

/// The bundled demo variant (`--demo VARIANT`, packed from this bed's recording) shows the
/// machine this boot shows: the same groups with the same devices, ids and drivers.
fn assert_demo_is_this_machine(list: &Value, variant: &str) {
    let o = Command::new(bins::bin("passagectl"))
        .args(["--demo", variant, "list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let demo: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(demo["groups"], list["groups"], "--demo {variant} groups");
    let facts = |l: &Value| -> Vec<(Value, Value, Value, Value)> {
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["address"].clone(),
                    d["vendor_id"].clone(),
                    d["device_id"].clone(),
                    d["driver"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(facts(&demo), facts(list), "--demo {variant} devices");
}

/// A group claimed by the helper is on vfio-pci, passes QEMU's VFIO steps, and is given back to
/// exactly the drivers it had; `unbound` devices end on no driver while it is claimed.
fn assert_claim_cycle(run: &Run, member: &str, unbound: &[&str]) {
    let boot = run.pci("boot-pci.txt");
    assert_eq!(
        run.rc(&format!("claim-{member}.rc")),
        0,
        "{}",
        run.file(&format!("claim-{member}.txt"))
    );
    let g = run
        .file(&format!("claim-{member}.group"))
        .trim()
        .to_string();
    let claimed = run.pci(&format!("claimed-{member}-pci.txt"));
    for (a, (drv, grp)) in &claimed {
        let was = &boot[a].0;
        if grp == &g && was != "pcieport" && was != "-" && !unbound.contains(&a.as_str()) {
            assert_eq!(drv, "vfio-pci", "{a} in claimed group {g}");
        } else if unbound.contains(&a.as_str()) {
            assert_eq!(
                drv, "-",
                "{a} is taken off {was} while group {g} is claimed"
            );
        } else {
            assert_eq!(drv, was, "{a}, outside group {g}, is untouched");
        }
    }
    assert_eq!(
        run.rc(&format!("verify-{member}.rc")),
        0,
        "{}",
        run.file(&format!("verify-{member}.txt"))
    );
    assert_eq!(
        run.rc(&format!("release-{member}.rc")),
        0,
        "{}",
        run.file(&format!("release-{member}.txt"))
    );
    assert_eq!(
        run.pci(&format!("released-{member}-pci.txt")),
        boot,
        "release puts every driver back"
    );
}

/// arm64 with the SMMUv3 (device tree boot): the kernel's groups, explained as they arise
/// there — root ports whose ACS the kernel left off, a PCIe-to-PCI bridge on `shpchp`, and a
/// conventional device the SMMU driver refused a group because it shares its neighbour's stream
/// ID — and claims that work around what the kernel does on ARM.
#[test]
fn arm64_with_the_smmuv3_groups_are_the_kernels_explained_and_claimed() {
    let run = boot_with(
        "arm64-smmuv3",
        "arm64",
        &["0000:02:00.0", "0000:07:01.0"],
        "0000:08:00.0=2",
    );
    assert_eq!(run.file("machine").trim(), "aarch64");
    let list = assert_agrees_with_kernel(&run);
    assert_eq!(list["iommu"]["enabled"], true);
    // A GICv3 with an ITS: nothing stands in the way of VFIO's interrupts.
    assert!(
        !list["iommu"].to_string().contains("no-interrupt-remapping"),
        "{}",
        list["iommu"]
    );
    // The SMMU is the unit the listing names, as the kernel names it.
    let units = run.file("iommu-units.txt");
    let unit = units.lines().next().unwrap_or_default();
    assert!(unit.starts_with("smmu3."), "{units}");
    assert!(run.file("boot-list.txt").contains(unit));

    // Root ports with ACS that nobody turned on: the port joins its endpoint's group.
    let g = group(&list, "0000:01:00.0");
    assert!(
        g["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "0000:00:02.0"),
        "{g}"
    );
    assert_eq!(reason(g, "shape-acs-off")["device"], "0000:00:02.0");

    // The multifunction card: one group with its root port, claimed and given back.
    let g = group(&list, "0000:02:00.0");
    assert!(codes(g).contains(&"shape-multifunction".to_string()), "{g}");
    assert_claim_cycle(&run, "0000:02:00.0", &[]);

    // Behind the PCIe-to-PCI bridge: the kernel put the e1000 in the bridge's group and left the
    // rtl8139 out of every group ("stream … already in tree" from the SMMUv3 driver).
    let dmesg = run.file("dmesg.txt");
    assert!(
        dmesg.contains("0000:07:02.0: stream") && dmesg.contains("already in tree"),
        "the kernel's own reason is in its log:\n{dmesg}"
    );
    let pci = run.pci("boot-pci.txt");
    assert_eq!(pci["0000:07:02.0"].1, "-");
    assert_eq!(pci["0000:06:00.0"].0, "shpchp");
    let g = group(&list, "0000:07:01.0");
    let shares = reason(g, "shares-stream");
    assert_eq!(shares["device"], "0000:07:02.0", "{shares}");
    assert_eq!(reason(g, "bridge-driver")["device"], "0000:06:00.0");
    assert!(codes(g).contains(&"shape-pci-bridge".to_string()), "{g}");
    let text = run.file("boot-list.txt");
    let outside = text
        .split("Outside every IOMMU group:")
        .nth(1)
        .unwrap_or_else(|| panic!("the group-less device is shown:\n{text}"));
    assert!(
        outside.contains("0000:07:02.0") && outside.contains("group"),
        "{outside}"
    );
    // Claimed, the bridge leaves shpchp (which keeps VFIO from the group) and the rtl8139 its
    // driver (its DMA would go through the guest's domain); released, both come back.
    assert_claim_cycle(&run, "0000:07:01.0", &["0000:06:00.0", "0000:07:02.0"]);

    // SR-IOV (QEMU's igb): two virtual functions made before the listing, each a device of
    // its own under the PF, grouped as the kernel grouped them and explained.
    assert_eq!(run.rc("vfs.rc"), 0, "{}", run.file("vfs.err"));
    assert_eq!(run.file("virtfns.txt").lines().count(), 2);
    let pf = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:08:00.0")
        .unwrap();
    assert_eq!(pf["capabilities"]["sriov_total_vfs"], 8, "{pf}");
    assert_eq!(pf["sriov_numvfs"], 2, "{pf}");
    let vfs: Vec<&Value> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["physfn"] == "0000:08:00.0")
        .collect();
    assert_eq!(vfs.len(), 2);
    let pf_group = group(&list, "0000:08:00.0");
    assert!(
        reason(pf_group, "sriov-pf")["remedy"]
            .as_str()
            .unwrap()
            .contains("same group"),
        "{pf_group}"
    );
    assert!(
        !codes(pf_group).contains(&"shape-multifunction".to_string()),
        "VFs are no multi-function card: {pf_group}"
    );
    for vf in vfs {
        let g = group(&list, vf["address"].as_str().unwrap());
        assert!(codes(g).contains(&"sriov-vf".to_string()), "{g}");
    }
    assert_demo_is_this_machine(&list, "arm64");
    // The doctor ran on ARM and says which kernel it read, and read the kernel's own AER
    // counters (nothing reported on this machine).
    let d = run.json("doctor.json");
    assert_eq!(
        d["facts"]["devices"]["0000:01:00.0"]["aer"],
        serde_json::json!({"fatal": 0, "nonfatal": 0, "correctable": 0}),
        "{d}"
    );
    assert_eq!(
        d["facts"]["kernel_release"].as_str(),
        Some(run.file("kernel-release").trim())
    );
}

/// arm64 with QEMU's default GICv2: the SMMU makes groups, but the interrupt controller has no
/// ITS to isolate MSIs, so VFIO attaches none. Passage says so before a claim (from the device
/// tree) and `verify` says why QEMU would fail, in ARM's terms.
#[test]
fn arm64_without_an_its_passage_says_vfio_cannot_attach_and_why() {
    let run = boot("arm64-smmuv3-gicv2", "arm64", &["0000:02:00.0"]);
    let list = assert_agrees_with_kernel(&run);
    let r = list["iommu"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "no-interrupt-remapping")
        .unwrap_or_else(|| panic!("{}", list["iommu"]));
    assert_eq!(r["severity"], "blocker");
    assert!(r["message"].as_str().unwrap().contains("ITS"), "{r}");
    assert!(
        r["remedy"].as_str().unwrap().contains("gic-version=3"),
        "{r}"
    );
    let a = "0000:02:00.0";
    assert_eq!(run.rc(&format!("claim-{a}.rc")), 0);
    assert_eq!(run.rc(&format!("verify-{a}.rc")), 1);
    let v = run.file(&format!("verify-{a}.txt"));
    assert!(v.contains("EPERM") && v.contains("ITS"), "{v}");
    assert_eq!(run.rc(&format!("release-{a}.rc")), 0);
    assert_eq!(
        run.pci(&format!("released-{a}-pci.txt")),
        run.pci("boot-pci.txt")
    );
}

/// arm64 without an IOMMU: no groups, and the remedy is ARM's (a virtual SMMU for this QEMU
/// `virt` machine), not Intel's command-line parameter.
#[test]
fn arm64_without_an_iommu_passage_asks_for_a_virtual_smmu() {
    let run = boot("arm64-no-iommu", "arm64", &[]);
    let list = run.json("boot-list.json");
    assert_eq!(list["iommu"]["enabled"], false);
    assert!(list["groups"].as_array().unwrap().is_empty());
    assert!(run.file("boot-kernel.txt").trim().is_empty());
    let r = &list["iommu"]["reasons"][0];
    assert_eq!(r["code"], "iommu-off-vm", "{r}");
    assert!(r["message"].as_str().unwrap().contains("SMMU"), "{r}");
    let remedy = r["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("iommu=smmuv3") && !remedy.contains("intel"),
        "{r}"
    );
}

/// ppc64le `pseries` with four PCI host bridges: one group per partitionable endpoint, each
/// explained as one; claims through the sPAPR TCE backend, QEMU's VFIO steps, releases.
#[test]
fn ppc64le_pseries_groups_are_partitionable_endpoints_and_claim_through_spapr_tce() {
    let run = boot(
        "ppc64le-pseries",
        "ppc64el",
        &["0001:00:01.0", "0002:01:01.0"],
    );
    assert_eq!(run.file("machine").trim(), "ppc64le");
    let list = assert_agrees_with_kernel(&run);
    // Devices on one host bridge share its PE; each bridge's PE is a group of its own.
    let g1 = group(&list, "0001:00:01.0");
    assert!(
        g1["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "0001:00:02.0"),
        "{g1}"
    );
    let g3 = group(&list, "0003:00:01.0");
    assert_ne!(g1["id"], g3["id"]);
    for g in [g1, group(&list, "0002:01:01.0")] {
        let pe = reason(g, "shape-pe");
        assert!(pe["message"]
            .as_str()
            .unwrap()
            .contains("partitionable endpoint"));
    }
    assert_claim_cycle(&run, "0001:00:01.0", &[]);
    assert_claim_cycle(&run, "0002:01:01.0", &[]);
    assert_demo_is_this_machine(&list, "ppc64le");
    // This kernel (bookworm-backports') takes devices: the doctor has no word against it.
    let d = run.json("doctor.json");
    // QEMU offers EEH only to VFIO devices ("No capable adapters found"): the doctor says none
    // is contained per PE, as the kernel's log does.
    assert!(run
        .file("dmesg.txt")
        .contains("EEH: No capable adapters found"));
    assert!(d["findings"].to_string().contains("\"eeh-off\""), "{d}");
    assert!(
        !d["findings"]
            .to_string()
            .contains("vfio-pci-power-coherency"),
        "{d}"
    );
}

/// Debian 12's own ppc64el kernel (6.1) refuses vfio-pci for every device: the doctor says so
/// beforehand, and a claim fails saying where to look, with every member back on its driver.
#[test]
fn ppc64le_on_debian_12s_kernel_the_doctor_says_vfio_pci_cannot_take_devices() {
    let run = boot("ppc64le-pseries-6.1", "ppc64el", &["0001:00:01.0"]);
    assert!(run.file("kernel-release").starts_with("6.1."));
    let d = run.json("doctor.json");
    let f = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "vfio-pci-power-coherency")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(f["severity"], "blocker");
    assert_eq!(run.rc("doctor.rc"), 1);
    let a = "0001:00:01.0";
    assert_eq!(run.rc(&format!("claim-{a}.rc")), 1);
    let claim = run.file(&format!("claim-{a}.txt"));
    assert!(
        claim.contains("POWER") && claim.contains("doctor"),
        "{claim}"
    );
    assert!(
        run.file("dmesg-end.txt")
            .contains("vfio-pci: probe of 0001:00:01.0 failed with error -22"),
        "the kernel's own words agree"
    );
    assert_eq!(
        run.pci(&format!("claimed-{a}-pci.txt")),
        run.pci("boot-pci.txt"),
        "every member is back on its driver"
    );
}

/// Linux 5.10 (Debian 11) on q35 with VT-d: the kernel lists no reset methods, so Passage
/// models them as that kernel tries them (device-specific, FLR, PM, a bus reset for a function
/// alone on its bus). The kernel still shows `reset` exactly where it has a way: the doctor's
/// model must say "none" exactly where the kernel shows no `reset`. A claim, QEMU's steps and a
/// release work there too.
#[test]
fn x86_on_linux_5_10_resets_are_modelled_as_that_kernel_has_them() {
    const NIC: &str = "0000:01:00.0";
    let run = boot("x86-linux-5.10", "amd64", &[NIC]);
    assert!(
        run.file("kernel-release").starts_with("5.10."),
        "{}",
        run.file("kernel-release")
    );
    // address → (the kernel has a reset, reset_method's list)
    let resets: BTreeMap<String, (bool, String)> = run
        .file("resets.txt")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), (f[1] == "reset", f[2].to_string()))
        })
        .collect();
    assert!(
        resets.values().all(|(_, m)| m == "-"),
        "5.10 has no reset_method: {resets:?}"
    );
    let doctor = run.json("doctor.json");
    assert!(doctor["facts"]["kernel_release"]
        .as_str()
        .unwrap()
        .starts_with("5.10."));
    let modelled: Vec<(String, String)> = doctor["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "reset-modelled")
        .map(|f| {
            (
                f["device"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        modelled.len() >= 5,
        "{modelled:?}\n{}",
        run.file("resets.txt")
    );
    // The kernel decides whether to show `reset` when it adds a function, before the functions
    // after it on the same bus are there: the first function on a bus it shares is shown a
    // bus reset that pci_parent_bus_reset refuses when it is asked (its siblings are there by
    // then). Passage says what a reset will do: none. That case, and only it, may differ.
    let bus_of = |a: &str| a[..7].to_string();
    let first_of_shared_bus = |a: &str| {
        let on_bus: Vec<&String> = resets.keys().filter(|b| bus_of(b) == bus_of(a)).collect();
        on_bus.len() > 1 && on_bus[0] == a && !a.starts_with("0000:00:")
    };
    let mut none = 0;
    let mut probed_early = Vec::new();
    for (addr, message) in &modelled {
        let kernel_has = resets
            .get(addr)
            .unwrap_or_else(|| panic!("{addr} not in the kernel's listing"))
            .0;
        let model_none = message.trim_end_matches('.').ends_with("none");
        if model_none && kernel_has && first_of_shared_bus(addr) {
            probed_early.push(addr.clone());
        } else {
            assert_eq!(
                !model_none,
                kernel_has,
                "{addr}: Passage says “{message}”, the kernel {} a reset",
                if kernel_has { "has" } else { "has no" }
            );
        }
        none += usize::from(model_none);
    }
    // QEMU's e1000 behind the PCIe-to-PCI bridge, first of two there, with no capabilities.
    assert_eq!(probed_early, ["0000:04:01.0"], "{}", run.file("resets.txt"));
    // Both sides are there: functions with a way and without one (the multifunction card
    // and the two conventional devices behind one bridge share their buses).
    assert!(none >= 1 && none < modelled.len(), "{modelled:?}");
    // And on this kernel a claim, QEMU's steps and a release work as on 6.1.
    assert_eq!(
        run.rc(&format!("claim-{NIC}.rc")),
        0,
        "{}",
        run.file(&format!("claim-{NIC}.txt"))
    );
    assert_eq!(
        run.rc(&format!("verify-{NIC}.rc")),
        0,
        "{}",
        run.file(&format!("verify-{NIC}.txt"))
    );
    assert_eq!(
        run.rc(&format!("release-{NIC}.rc")),
        0,
        "{}",
        run.file(&format!("release-{NIC}.txt"))
    );
    eprintln!("5.10 resets: {}", run.file("resets.txt"));
}
