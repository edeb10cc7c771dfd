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

/// Where the system builds its initramfs with dracut or mkinitcpio (their drop-in directories
/// are there), persist adds a drop-in of theirs that puts vfio-pci, the rule and the softdeps
/// in it; each is read as its tool reads it (bash sources both), and both go with the last
/// persisted group. Where the directories are not, nothing is made.
#[test]
fn dracut_and_mkinitcpio_get_drop_ins_where_the_system_has_them() {
    let (dir, state) = demo();
    let st = StateDir::new(state.path()).unwrap();
    let (r, h) = host(&dir);
    // Neither tool here: nothing of theirs appears.
    persist::set(&h, &r, dir.path(), GroupId(19), true, &st).unwrap();
    for d in ["etc/dracut.conf.d", "etc/mkinitcpio.conf.d"] {
        assert!(!dir.path().join(d).exists(), "{d} was made");
    }
    persist::set(&h, &r, dir.path(), GroupId(19), false, &st).unwrap();
    for d in ["etc/dracut.conf.d", "etc/mkinitcpio.conf.d"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let done = persist::set(&h, &r, dir.path(), GroupId(19), true, &st).unwrap();
    assert!(done.changed);
    let dracut = dir.path().join(persist::DRACUT_CONF);
    let mkinitcpio = dir.path().join(persist::MKINITCPIO_CONF);
    // dracut sources every conf file with bash; += keeps what others added.
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#"add_drivers=" nvme "; install_items=""; . "$1"; printf '%s\n%s\n' "$add_drivers" "$install_items""#)
        .arg("bash")
        .arg(&dracut)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["nvme", "vfio_pci", "vfio_iommu_type1"], "{out}");
    assert_eq!(
        lines[1],
        [
            "/etc/udev/rules.d/61-passage-vfio.rules",
            "/etc/modprobe.d/passage-vfio.conf"
        ],
        "{out}"
    );
    // mkinitcpio sources its drop-ins with bash after mkinitcpio.conf: arrays extended.
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#"MODULES=(amdgpu); FILES=(); . "$1"; echo "${MODULES[*]}"; echo "${FILES[*]}""#)
        .arg("bash")
        .arg(&mkinitcpio)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        out,
        "amdgpu vfio_pci vfio_iommu_type1?\n/etc/udev/rules.d/61-passage-vfio.rules /etc/modprobe.d/passage-vfio.conf\n"
    );
    // A second group: the drop-ins stay as they are; the last one off takes them away.
    persist::set(&h, &r, dir.path(), GroupId(18), true, &st).unwrap();
    persist::set(&h, &r, dir.path(), GroupId(19), false, &st).unwrap();
    assert!(dracut.exists() && mkinitcpio.exists());
    persist::set(&h, &r, dir.path(), GroupId(18), false, &st).unwrap();
    assert!(!dracut.exists() && !mkinitcpio.exists());
    assert!(
        dir.path().join("etc/dracut.conf.d").is_dir(),
        "the tool's directory stays"
    );
}

/// The drop-in through Debian's own dracut (dracut-core), building an initramfs for the VM
/// bed's kernel with the rule and softdeps persist wrote (put where dracut reads them, in a
/// mount namespace of its own): vfio-pci, the rule and the softdeps are in the image, byte for
/// byte; the same build without the drop-in has none of them.
#[test]
fn the_real_dracut_puts_vfio_pci_the_rule_and_the_softdeps_in_the_initramfs() {
    for tool in ["dracut", "lsinitrd", "unshare"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is not installed (./dev test installs dracut-core and util-linux)"
        );
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(repo.join("tests/vm/vm.py"))
        .arg("modules")
        .output()
        .expect("tests/vm/vm.py modules");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8(o.stdout).unwrap();
    let field = |k: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} in {said}"))
            .to_string()
    };
    let (kver, moddir) = (field("kernel"), field("modules"));

    let (dir, state) = demo();
    std::fs::create_dir_all(dir.path().join("etc/dracut.conf.d")).unwrap();
    let st = StateDir::new(state.path()).unwrap();
    let (r, h) = host(&dir);
    persist::set(&h, &r, dir.path(), GroupId(19), true, &st).unwrap();
    let etc = dir.path().join("etc");
    let build = |confdir: &std::path::Path, out: &std::path::Path| {
        // dracut takes install_items from the system's own /etc: this one's, in a private
        // mount namespace, are the tree's.
        let script = format!(
            "mount --bind {etc}/udev/rules.d /etc/udev/rules.d && mount --bind {etc}/modprobe.d /etc/modprobe.d && \
             dracut --force --no-hostonly --no-early-microcode --conf /dev/null --confdir {confdir} \
             --kver {kver} --kmoddir {moddir}/{kver} --modules 'kernel-modules udev-rules' {out}",
            etc = etc.display(),
            confdir = confdir.display(),
            out = out.display(),
        );
        let o = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dracut failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let l = Command::new("lsinitrd").arg(out).output().unwrap();
        assert!(l.status.success());
        String::from_utf8_lossy(&l.stdout).into_owned()
    };
    let img = state.path().join("with.img");
    let listing = build(&etc.join("dracut.conf.d"), &img);
    for f in [
        "etc/udev/rules.d/61-passage-vfio.rules",
        "etc/modprobe.d/passage-vfio.conf",
        "kernel/drivers/vfio/pci/vfio-pci.ko",
        // vfio-pci's own dependency, brought by dracut with it.
        "kernel/drivers/vfio/vfio.ko",
        "kernel/drivers/vfio/vfio_iommu_type1.ko",
    ] {
        assert!(listing.contains(f), "{f} not in the initramfs:\n{listing}");
    }
    for rel in [persist::UDEV_RULE, persist::MODPROBE_CONF] {
        let o = Command::new("lsinitrd")
            .args(["-f", rel])
            .arg(&img)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            std::fs::read_to_string(dir.path().join(rel)).unwrap(),
            "{rel} differs in the initramfs"
        );
    }
    // Without the drop-in: none of it.
    let empty = state.path().join("confdir");
    std::fs::create_dir_all(&empty).unwrap();
    let listing = build(&empty, &state.path().join("without.img"));
    for f in ["61-passage-vfio.rules", "passage-vfio.conf", "vfio-pci.ko"] {
        assert!(
            !listing.contains(f),
            "{f} is in the initramfs without the drop-in"
        );
    }
}
