//! The kernel command line as the boot configuration says it, and `passagectl fix`/`unfix`
//! changing it (`core::bootline`, the helper's `Fix`, `Unfix`): on the boot arrangements
//! distributions ship — Debian's GRUB defaults as its grub2-common package installs them,
//! Ubuntu's cloud images' `grub.d` override, Fedora's BLS entries, systemd-boot through
//! kernel-install, Proxmox's proxmox-boot-tool — each file read back the way its own consumer
//! reads it: GRUB's defaults by the shell, as grub-mkconfig sources them, and
//! `/etc/kernel/cmdline` by the real kernel-install (systemd's), which writes it into a real
//! Boot Loader Specification entry.

#[path = "common/bins.rs"]
mod bins;
#[path = "common/bus.rs"]
mod bus;

use passage_core::bootline::{self, Arrangement, Boot, Edit};
use passage_core::HostRoot;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Debian 12's /etc/default/grub as grub2-common 2.06-13 installs it
/// (/usr/share/grub/default/grub in the package).
const DEBIAN_GRUB: &str = include_str!("fixtures/boot/debian-12-default-grub");

fn write(root: &Path, rel: &str, text: &str) {
    // What makes a directory a host root.
    std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
}

fn executable(root: &Path, rel: &str, text: &str) {
    write(root, rel, text);
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Stands in for update-grub in a tree: reads the defaults exactly as grub-mkconfig does
/// (sources /etc/default/grub, then each /etc/default/grub.d/*.cfg) and writes the default
/// entry's line as 10_linux joins it; fails while the tree has `boot/fail`.
const UPDATE_GRUB: &str = r#"#!/bin/sh
set -e
R=$PASSAGE_ROOT
[ ! -e "$R/boot/fail" ] || { echo "grub-probe: error: failed to get canonical path of /dev/root" >&2; exit 1; }
. "$R/etc/default/grub"
for x in "$R"/etc/default/grub.d/*.cfg ; do
  if [ -e "${x}" ]; then . "${x}"; fi
done
mkdir -p "$R/boot/grub"
echo "linux /vmlinuz root=/dev/sda1 ro ${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}" > "$R/boot/grub/grub.cfg"
"#;

/// The demo host's tree booted with `vfio-pci.ids=IDS` (added to its running line) from
/// Debian's GRUB whose default line is `LINE`, with the stand-in update-grub.
fn grub_host_with_ids(root: &Path, ids: &str, line: &str) {
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        format!("{} vfio-pci.ids={ids}\n", cmdline.trim()),
    )
    .unwrap();
    write(
        root,
        "etc/default/grub",
        &DEBIAN_GRUB.replace(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
            &format!("GRUB_CMDLINE_LINUX_DEFAULT=\"{line}\""),
        ),
    );
    executable(root, "usr/sbin/update-grub", UPDATE_GRUB);
}

fn passagectl() -> Command {
    let mut c = Command::new(bins::bin("passagectl"));
    c.env_remove("PASSAGE_ROOT")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE");
    c
}

/// The line the shell makes of GRUB's defaults under `root`, as grub-mkconfig sources them.
fn shell_line(root: &Path) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            r#"set -e; R=$1; . "$R/etc/default/grub"
for x in "$R"/etc/default/grub.d/*.cfg; do if [ -e "$x" ]; then . "$x"; fi; done
echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT""#,
        )
        .arg("sh")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn known(root: &Path) -> bootline::BootConfig {
    match bootline::read(&HostRoot::open(root).unwrap()) {
        Boot::Known(c) => c,
        Boot::Unknown { why } => panic!("{}: {why}", root.display()),
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Applies `edit` to the files as the helper would write them.
fn edit_in_place(root: &Path, cfg: &bootline::BootConfig, edit: &Edit) -> usize {
    let r = HostRoot::open(root).unwrap();
    let changes = cfg.edit_files(&r, edit).unwrap();
    for (f, _, after) in &changes {
        std::fs::write(root.join(f), after).unwrap();
    }
    changes.len()
}

#[test]
fn grub_defaults_are_read_and_edited_as_grub_mkconfig_reads_them() {
    let add = Edit {
        add: words("intel_iommu=on iommu=pt"),
        remove: words("vfio-pci.ids"),
    };
    // Debian's own file, with a line a person wrote.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(
        t,
        "etc/default/grub",
        &DEBIAN_GRUB.replace(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=off vfio-pci.ids=10de:1b80\"",
        ),
    );
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    assert_eq!(cfg.arrangement, Arrangement::Grub);
    assert_eq!(
        cfg.regenerate,
        vec![vec!["/usr/sbin/update-grub".to_string()]]
    );
    assert_eq!(cfg.line, shell_line(t));
    assert_eq!(edit_in_place(t, &cfg, &add), 1);
    assert_eq!(shell_line(t), words("quiet intel_iommu=on iommu=pt"));
    // Everything else in the file is as it was (the distributor's backquotes included).
    let after = std::fs::read_to_string(t.join("etc/default/grub")).unwrap();
    assert_eq!(
        after
            .lines()
            .filter(|l| !l.starts_with("GRUB_CMDLINE_LINUX_DEFAULT="))
            .collect::<Vec<_>>(),
        DEBIAN_GRUB
            .lines()
            .filter(|l| !l.starts_with("GRUB_CMDLINE_LINUX_DEFAULT="))
            .collect::<Vec<_>>()
    );
    // The inverse, on the line the edit was made on, gives the words back.
    let cfg2 = known(t);
    edit_in_place(t, &cfg2, &add.inverse(&cfg.line));
    let mut back = shell_line(t);
    back.sort();
    let mut before = cfg.line.clone();
    before.sort();
    assert_eq!(back, before);

    // Ubuntu's cloud images set the line again in grub.d, appending to it in another file:
    // the value is what the last assignments make, and the edit goes where it decides.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/default/grub", DEBIAN_GRUB);
    write(
        t,
        "etc/default/grub.d/50-cloudimg-settings.cfg",
        "# Cloud Image specific Grub settings for Generic Cloud Images\n# CLOUD_IMG: This file was created/modified by the Cloud Image build process\n\n# Set the recordfail timeout\nGRUB_RECORDFAIL_TIMEOUT=0\n\n# Do not wait on grub prompt\nGRUB_TIMEOUT=0\n\n# Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n\n# Set the grub console type\nGRUB_TERMINAL=console\n",
    );
    write(
        t,
        "etc/default/grub.d/90-local.cfg",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\"\n",
    );
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    assert_eq!(cfg.line, shell_line(t));
    assert_eq!(cfg.line, words("console=tty1 console=ttyS0 iommu=pt"));
    edit_in_place(
        t,
        &cfg,
        &Edit {
            add: words("intel_iommu=on"),
            remove: words("console=ttyS0"),
        },
    );
    assert_eq!(shell_line(t), words("console=tty1 iommu=pt intel_iommu=on"));
    assert_eq!(
        std::fs::read_to_string(t.join("etc/default/grub.d/90-local.cfg")).unwrap(),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt intel_iommu=on\"\n"
    );

    // No assignment of the variable at all: a line is added to /etc/default/grub.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/default/grub", "GRUB_TIMEOUT=5\n");
    executable(t, "usr/sbin/grub-mkconfig", UPDATE_GRUB);
    let cfg = known(t);
    assert_eq!(cfg.regenerate[0][1..], ["-o", "/boot/grub/grub.cfg"]);
    edit_in_place(
        t,
        &cfg,
        &Edit {
            add: words("intel_iommu=on"),
            remove: vec![],
        },
    );
    assert_eq!(shell_line(t), words("intel_iommu=on"));
}

#[test]
fn odd_boot_files_are_unknown_never_a_wrong_edit() {
    for (text, said) in [
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /etc/cmdline)\"\n",
            "built from other variables or commands",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$EXTRA quiet\"\n",
            "built from other variables or commands",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \\\n splash\"\n",
            "continues on the next line",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\n",
            "quote is not closed",
        ),
        (
            "if [ -e /etc/nomodeset ]; then\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet nomodeset\"\nfi\n",
            "conditions or loops",
        ),
        (
            "case $(uname -m) in x86_64) GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\" ;; esac\n",
            "not a plain assignment",
        ),
        (
            "GRUB_TIMEOUT=5; GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=off\"\n",
            "not a plain assignment",
        ),
        (
            "[ -e /x ] || GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX intel_iommu=off\"\n",
            "not a plain assignment",
        ),
        ("GRUB_CMDLINE_LINUX=\"quiet\"#x\n", "more follows the value"),
        (
            "GRUB_CMDLINE_LINUX=`cat /x`\n",
            "built from other variables or commands",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        write(t, "etc/default/grub", text);
        executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
        match bootline::read(&HostRoot::open(t).unwrap()) {
            Boot::Unknown { why } => assert!(
                why.contains(said) && why.contains("line 1"),
                "{text:?}: {why}"
            ),
            Boot::Known(c) => panic!("{text:?} read as {:?}", c.line),
        }
    }
    // Not text; no tool to carry a change; an OSTree system; nothing at all.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    std::fs::create_dir_all(t.join("etc/default")).unwrap();
    std::fs::write(t.join("etc/default/grub"), b"GRUB_CMDLINE_LINUX=\"\xff\"\n").unwrap();
    assert!(
        matches!(bootline::read(&HostRoot::open(t).unwrap()), Boot::Unknown { why } if why.contains("not text"))
    );
    std::fs::remove_file(t.join("usr/sbin/update-grub")).unwrap();
    std::fs::write(t.join("etc/default/grub"), DEBIAN_GRUB).unwrap();
    assert!(
        matches!(bootline::read(&HostRoot::open(t).unwrap()), Boot::Unknown { why } if why.contains("update-grub"))
    );
    write(t, "run/ostree-booted", "");
    assert!(
        matches!(bootline::read(&HostRoot::open(t).unwrap()), Boot::Unknown { why } if why.contains("rpm-ostree kargs"))
    );
    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "proc/cmdline", "quiet\n");
    assert!(matches!(
        bootline::read(&HostRoot::open(empty.path()).unwrap()),
        Boot::Unknown { .. }
    ));
    // A word that is not a kernel parameter is never written.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/default/grub", DEBIAN_GRUB);
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    let r = HostRoot::open(t).unwrap();
    for bad in ["a\"b", "$(reboot)", "a;b", "x`y`", ""] {
        assert!(
            cfg.edit_files(
                &r,
                &Edit {
                    add: vec![bad.into()],
                    remove: vec![]
                }
            )
            .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn fedora_bls_and_proxmox_are_carried_by_their_own_tools() {
    // Fedora: GRUB reads BLS entries whose options grubby changes, and grubby rewrites
    // /etc/default/grub too: not edited here, said with grubby's command instead. However the
    // switch is written.
    for bls in [
        "GRUB_ENABLE_BLSCFG=true",
        "GRUB_ENABLE_BLSCFG=true # since Fedora 30",
        "export GRUB_ENABLE_BLSCFG=\"true\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        write(
            t,
            "etc/default/grub",
            &format!("GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\nGRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console\"\nGRUB_CMDLINE_LINUX=\"rhgb quiet\"\nGRUB_DISABLE_RECOVERY=\"true\"\n{bls}\n"),
        );
        executable(t, "usr/sbin/grubby", "#!/bin/sh\nexit 0\n");
        executable(t, "usr/sbin/grub2-mkconfig", "#!/bin/sh\nexit 0\n");
        match bootline::read(&HostRoot::open(t).unwrap()) {
            Boot::Unknown { why } => assert!(why.contains("grubby --update-kernel=ALL"), "{why}"),
            Boot::Known(c) => panic!("{bls}: read as {:?}", c.arrangement),
        }
    }
    // Proxmox: /etc/kernel/cmdline and proxmox-boot-tool refresh, GRUB's file beside unused.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(
        t,
        "etc/kernel/cmdline",
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n",
    );
    write(t, "etc/kernel/proxmox-boot-uuids", "5A1B-2C3D\n");
    write(t, "etc/default/grub", DEBIAN_GRUB);
    executable(t, "usr/sbin/proxmox-boot-tool", "#!/bin/sh\nexit 0\n");
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    assert_eq!(cfg.arrangement, Arrangement::Proxmox);
    assert_eq!(
        cfg.regenerate,
        vec![vec![
            "/usr/sbin/proxmox-boot-tool".to_string(),
            "refresh".into()
        ]]
    );
    edit_in_place(
        t,
        &cfg,
        &Edit {
            add: words("intel_iommu=on"),
            remove: vec![],
        },
    );
    assert_eq!(
        std::fs::read_to_string(t.join("etc/kernel/cmdline")).unwrap(),
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on\n"
    );
}

/// Stands in for kernel-install in a tree: the system's real kernel-install (systemd's), told
/// the tree's configuration and boot directory, for the image inside the tree.
const KERNEL_INSTALL: &str = r#"#!/bin/sh
R=$PASSAGE_ROOT
KERNEL_INSTALL_CONF_ROOT=$R/etc/kernel BOOT_ROOT=$R/boot MACHINE_ID=0123456789abcdef0123456789abcdef \
  exec /usr/bin/kernel-install "$1" "$2" "$R$3"
"#;

#[test]
fn the_running_line_tells_which_configuration_boots() {
    // Proxmox booted by GRUB (legacy BIOS, Secure Boot): GRUB's file, then update-grub and
    // proxmox-boot-tool refresh, as Proxmox's guide says.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(
        t,
        "etc/kernel/cmdline",
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n",
    );
    write(t, "etc/kernel/proxmox-boot-uuids", "5A1B-2C3D\n");
    write(t, "etc/default/grub", DEBIAN_GRUB);
    write(
        t,
        "proc/cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 ro quiet\n",
    );
    executable(t, "usr/sbin/proxmox-boot-tool", "#!/bin/sh\nexit 0\n");
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    assert_eq!(cfg.arrangement, Arrangement::Grub);
    assert_eq!(
        cfg.regenerate,
        vec![
            vec!["/usr/sbin/update-grub".to_string()],
            vec!["/usr/sbin/proxmox-boot-tool".to_string(), "refresh".into()]
        ]
    );
    // GRUB's file left behind after a move to systemd-boot: the running line has no
    // BOOT_IMAGE=, BLS entries are there, so /etc/kernel/cmdline is what boots.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/default/grub", DEBIAN_GRUB);
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    write(t, "etc/kernel/cmdline", "root=UUID=2f1e rw quiet\n");
    write(
        t,
        "boot/loader/entries/0123-6.1.0-99-amd64.conf",
        "options root=UUID=2f1e rw quiet\n",
    );
    write(
        t,
        "usr/lib/modules/6.1.0-99-amd64/vmlinuz",
        "not a kernel\n",
    );
    write(
        t,
        "proc/cmdline",
        "root=UUID=2f1e rw quiet systemd.machine_id=0123\n",
    );
    executable(t, "usr/bin/kernel-install", KERNEL_INSTALL);
    assert_eq!(known(t).arrangement, Arrangement::KernelInstall);
    // …and with BOOT_IMAGE= on the running line, GRUB boots it.
    write(
        t,
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=UUID=2f1e rw quiet\n",
    );
    assert_eq!(known(t).arrangement, Arrangement::Grub);
    // /etc/kernel/cmdline with no BLS entries (Arch's unified kernel images): not edited.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/kernel/cmdline", "root=UUID=2f1e rw quiet\n");
    write(
        t,
        "usr/lib/modules/6.1.0-99-amd64/vmlinuz",
        "not a kernel\n",
    );
    executable(t, "usr/bin/kernel-install", KERNEL_INSTALL);
    assert!(
        matches!(bootline::read(&HostRoot::open(t).unwrap()), Boot::Unknown { why } if why.contains("unified kernel image"))
    );
    // The words loaders add themselves are no difference: Ubuntu's vt.handoff, kernel-install's
    // machine id, GRUB's BOOT_IMAGE, root= and ro.
    let (more, less) = bootline::difference(
        &words("quiet splash intel_iommu=on"),
        &words("BOOT_IMAGE=/vmlinuz-6.8.0-49-generic root=UUID=1 ro quiet splash intel_iommu=on vt.handoff=7 systemd.machine_id=ab"),
    );
    assert!(more.is_empty() && less.is_empty(), "{more:?} {less:?}");
}

#[test]
fn kernel_install_writes_the_edited_line_into_a_real_boot_entry() {
    assert!(
        Path::new("/usr/bin/kernel-install").exists(),
        "kernel-install is needed (part of systemd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(t, "etc/kernel/cmdline", "root=UUID=2f1e rw quiet\n");
    write(t, "etc/kernel/install.conf", "layout=bls\n");
    write(
        t,
        "usr/lib/modules/6.1.0-99-amd64/vmlinuz",
        "not a kernel\n",
    );
    executable(t, "usr/bin/kernel-install", KERNEL_INSTALL);
    let cfg = known(t);
    assert_eq!(cfg.arrangement, Arrangement::KernelInstall);
    assert_eq!(
        cfg.regenerate,
        vec![vec![
            "/usr/bin/kernel-install".to_string(),
            "add".into(),
            "6.1.0-99-amd64".into(),
            "/usr/lib/modules/6.1.0-99-amd64/vmlinuz".into()
        ]]
    );
    let e = Edit {
        add: words("intel_iommu=on"),
        remove: words("quiet"),
    };
    edit_in_place(t, &cfg, &e);
    for c in cfg.commands(&e) {
        let out = Command::new(t.join(c[0].trim_start_matches('/')))
            .args(&c[1..])
            .env("PASSAGE_ROOT", t)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let entry = std::fs::read_to_string(
        t.join("boot/loader/entries/0123456789abcdef0123456789abcdef-6.1.0-99-amd64.conf"),
    )
    .unwrap();
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options"))
        .unwrap();
    // kernel-install adds the machine id itself.
    assert_eq!(
        options.split_whitespace().collect::<Vec<_>>(),
        [
            "root=UUID=2f1e",
            "rw",
            "intel_iommu=on",
            "systemd.machine_id=0123456789abcdef0123456789abcdef"
        ],
        "{entry}"
    );
}

/// A recorded Intel desktop whose firmware has VT-d (a DMAR table) and whose kernel was not told
/// to use it, with Debian's GRUB: the doctor offers the fix, --dry-run shows it, nothing changes.
#[test]
fn doctor_offers_the_fix_and_dry_run_shows_it() {
    let mut spec = passage_core::synth::MachineSpec::from_json(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/machines/msi-z370i-i5-8400-gtx1070.json"),
        )
        .unwrap(),
    )
    .unwrap();
    spec.host.iommu = Some("off".into());
    spec.kernel_cmdline = Some("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into());
    spec.host.acpi_tables = Some(vec!["DSDT".into(), "DMAR".into()]);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("host");
    spec.write_tree(&t).unwrap();
    write(&t, "etc/default/grub", DEBIAN_GRUB);
    executable(&t, "usr/sbin/update-grub", UPDATE_GRUB);
    let root = t.to_str().unwrap();

    let out = passagectl()
        .args(["--root", root, "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Passage can do it: passagectl fix iommu-not-enabled"),
        "{text}"
    );
    assert!(text.contains("This system boots with GRUB"), "{text}");
    let out = passagectl()
        .args(["--root", root, "doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "iommu-not-enabled")
        .unwrap();
    assert_eq!(f["fix"], "passagectl fix iommu-not-enabled");
    assert_eq!(v["facts"]["boot"]["arrangement"], "grub");

    let before = std::fs::read(t.join("etc/default/grub")).unwrap();
    let out = passagectl()
        .args(["--root", root, "fix", "iommu-not-enabled", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\""), "{text}");
    assert!(text.contains("then: /usr/sbin/update-grub"), "{text}");
    assert_eq!(std::fs::read(t.join("etc/default/grub")).unwrap(), before);
    assert!(!t.join("boot/grub/grub.cfg").exists());

    // A finding this host does not have, an unknown code: a clear no.
    for code in ["vfio-pci-ids", "no-such-code"] {
        let out = passagectl()
            .args(["--root", root, "fix", code, "--dry-run"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("nothing to fix") && err.contains(code),
            "{err}"
        );
    }
    // Boot files Passage does not edit: no fix offered, and why.
    write(
        &t,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /etc/extra)\"\n",
    );
    let out = passagectl()
        .args(["--root", root, "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("passagectl fix"), "{text}");
    assert!(
        text.contains("(boot-line-unknown)") && text.contains("line 1"),
        "{text}"
    );
    // Without --dry-run, on a recording: the helper acts on this machine only.
    let out = passagectl()
        .args(["--root", root, "fix", "iommu-not-enabled"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with --root"));
}

/// Through the real helper on a private system bus with the real polkitd: a root caller fixes,
/// the tool runs, the change is noted as waiting for the reboot; a failing tool leaves every
/// file as it was; unfix takes it back; nobody is refused; hostile arguments change nothing.
#[test]
fn the_helper_fixes_and_takes_back_the_boot_line() {
    let b = bus::Bus::start_prepared(&|root| {
        grub_host_with_ids(
            root,
            "10de:1b80",
            "quiet amd_iommu=on iommu=pt vfio-pci.ids=10de:1b80",
        )
    });
    let root = b.root();
    let grub = root.join("etc/default/grub");
    let original = std::fs::read(&grub).unwrap();

    // nobody: polkit says no, nothing written.
    let out = b.passagectl(true, &["fix", "vfio-pci-ids"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("fix-boot-line"),
        "{err}"
    );
    assert_eq!(std::fs::read(&grub).unwrap(), original);

    // The tool fails: every file as it was, no record, no note.
    std::fs::write(root.join("boot/fail"), "").unwrap_or_else(|_| write(&root, "boot/fail", ""));
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("update-grub failed")
            && err.contains("Every boot file is as it was before"),
        "{err}"
    );
    assert_eq!(std::fs::read(&grub).unwrap(), original);
    assert!(!root.join(bootline::PENDING_NOTE).exists());
    std::fs::remove_file(root.join("boot/fail")).unwrap();

    // As root: written, the tool ran, noted until the reboot.
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Fixed vfio-pci-ids") && text.contains("Ran /usr/sbin/update-grub"),
        "{text}"
    );
    assert_eq!(shell_line(&root), words("quiet amd_iommu=on iommu=pt"));
    let cfg_out = std::fs::read_to_string(root.join("boot/grub/grub.cfg")).unwrap();
    assert!(!cfg_out.contains("vfio-pci.ids"), "{cfg_out}");
    assert_eq!(
        std::fs::metadata(&grub).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let out = passagectl()
        .args(["--root", root.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(boot-line-pending)") && text.contains("−vfio-pci.ids=10de:1b80"),
        "{text}"
    );
    // The same fix again: the configuration already says so.
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Nothing changed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Hostile arguments: refused, nothing written.
    let (rt, h) = b.proxy();
    let after_fix = std::fs::read(&grub).unwrap();
    for (code, dev) in [
        ("../../etc/shadow", ""),
        ("vfio-pci-ids", "0000:zz:00.0"),
        ("boot-framebuffer", "0000:00:02.0"),
        ("", ""),
    ] {
        let r = rt.block_on(h.fix(code, dev, Default::default()));
        match r {
            // Refused for what they are, before anything is looked up.
            Err(passage_dbus::HelperError::InvalidArgs(_)) if code != "boot-framebuffer" => {}
            // A well-formed request for a finding this host does not have.
            Err(passage_dbus::HelperError::BadState(_)) if code == "boot-framebuffer" => {}
            other => panic!("{code} {dev}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&grub).unwrap(), after_fix);

    // unfix: the words back, the tool run again, the note gone (the changes cancel out).
    let out = b.passagectl(false, &["unfix", "vfio-pci-ids"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Untouched since the fix: the file as it was, byte for byte.
    assert_eq!(std::fs::read(&grub).unwrap(), original);
    assert!(std::fs::read_to_string(root.join("boot/grub/grub.cfg"))
        .unwrap()
        .contains("vfio-pci.ids=10de:1b80"));
    assert!(!root.join(bootline::PENDING_NOTE).exists());
    let out = b.passagectl(false, &["unfix", "vfio-pci-ids"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no change"));
}

/// A GPU the kernel may power off while idle (the demo host's GeForce, with `d3cold_allowed` 1
/// and run-time power management on): fix keeps it powered now (read back) and writes the
/// udev rule for every boot; unfix gives the kernel its value back and drops the rule; nobody
/// is refused and a device without the finding is not touched.
#[test]
fn the_helper_keeps_a_gpu_powered_and_lets_go_again() {
    const GPU: &str = "0000:0b:00.0";
    let b = bus::Bus::start_prepared(&|root| {
        let dev = root.join("sys/bus/pci/devices").join(GPU);
        std::fs::write(dev.join("d3cold_allowed"), "1\n").unwrap();
        std::fs::create_dir_all(dev.join("power")).unwrap();
        std::fs::write(dev.join("power/control"), "auto\n").unwrap();
    });
    let root = b.root();
    let attr = root
        .join("sys/bus/pci/devices")
        .join(GPU)
        .join("d3cold_allowed");
    let rule = root.join("etc/udev/rules.d/62-passage-power.rules");

    let out = passagectl()
        .args(["--root", root.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("passagectl fix d3cold-allowed {GPU}")),
        "{text}"
    );
    let out = passagectl()
        .args([
            "--root",
            root.to_str().unwrap(),
            "fix",
            "d3cold-allowed",
            GPU,
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("would be kept powered"));
    assert_eq!(std::fs::read_to_string(&attr).unwrap().trim(), "1");

    let out = b.passagectl(true, &["fix", "d3cold-allowed", GPU]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fix-d3cold"), "{err}");
    assert_eq!(std::fs::read_to_string(&attr).unwrap().trim(), "1");
    // The other GPU has no such finding: refused, untouched.
    let out = b.passagectl(false, &["fix", "d3cold-allowed", "0000:04:00.0"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("does not find")
    );
    assert!(!rule.exists());

    let out = b.passagectl(false, &["fix", "d3cold-allowed", GPU]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&attr).unwrap().trim(), "0");
    let r = std::fs::read_to_string(&rule).unwrap();
    assert!(
        r.contains(&format!("KERNEL==\"{GPU}\", ATTR{{vendor}}==\"0x10de\", ATTR{{device}}==\"0x2206\", ATTR{{d3cold_allowed}}=\"0\"")),
        "{r}"
    );
    // The finding is gone: the kernel's value says kept powered.
    let out = passagectl()
        .args(["--root", root.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("(d3cold-allowed)"));

    let out = b.passagectl(false, &["unfix", "d3cold-allowed", GPU]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&attr).unwrap().trim(), "1");
    assert!(!rule.exists());
    let out = b.passagectl(false, &["unfix", "d3cold-allowed", GPU]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no change"));
}

/// An edit takes away only what it names and replaces only a parameter that holds one value;
/// what a person wrote stays as they wrote it (quotes, comments, other outputs' video modes,
/// options beside intel_iommu=on); a word the line has already is not added again.
#[test]
fn edits_keep_what_they_do_not_replace() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write(
        t,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX='rd.luks.uuid=1f2e video=DP-1:2560x1440@144' # the disk and the screen\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=igfx_off initcall_blacklist=acpi_cpufreq_init\"   # tuned\n",
    );
    executable(t, "usr/sbin/update-grub", UPDATE_GRUB);
    let cfg = known(t);
    let e = Edit {
        add: words("video=efifb:off initcall_blacklist=sysfb_init intel_iommu=on"),
        remove: vec![],
    };
    edit_in_place(t, &cfg, &e);
    let text = std::fs::read_to_string(t.join("etc/default/grub")).unwrap();
    assert_eq!(
        text,
        "GRUB_CMDLINE_LINUX='rd.luks.uuid=1f2e video=DP-1:2560x1440@144' # the disk and the screen\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=igfx_off initcall_blacklist=acpi_cpufreq_init video=efifb:off initcall_blacklist=sysfb_init intel_iommu=on\"   # tuned\n"
    );
    assert_eq!(shell_line(t), known(t).line);
    // Already on the line (in the other variable): nothing is written twice.
    let cfg = known(t);
    assert_eq!(
        cfg.edit_files(
            &HostRoot::open(t).unwrap(),
            &Edit {
                add: words("rd.luks.uuid=1f2e"),
                remove: vec![]
            }
        )
        .unwrap()
        .len(),
        0
    );
    // A value that contradicts is replaced, wherever it is set.
    write(
        t,
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"intel_iommu=off\"\nGRUB_CMDLINE_LINUX_DEFAULT=quiet\n",
    );
    let cfg = known(t);
    edit_in_place(
        t,
        &cfg,
        &Edit {
            add: words("intel_iommu=on"),
            remove: vec![],
        },
    );
    assert_eq!(shell_line(t), words("quiet intel_iommu=on"));
}

/// Taking vfio-pci.ids= away hands the devices it names to their host drivers at the next
/// boot: the helper refuses until Passage claims their groups at every boot.
#[test]
fn vfio_pci_ids_go_only_once_their_groups_are_persisted() {
    let b = bus::Bus::start_prepared(&|root| {
        grub_host_with_ids(root, "10de:2206", "quiet vfio-pci.ids=10de:2206")
    });
    let grub = b.root().join("etc/default/grub");
    let original = std::fs::read(&grub).unwrap();
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("0000:0b:00.0")
            && err.contains("passagectl persist 19 on"),
        "{err}"
    );
    assert_eq!(std::fs::read(&grub).unwrap(), original);
    let out = b.passagectl(false, &["persist", "19", "on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(shell_line(&b.root()), words("quiet"));
}

/// kernel-install for two kernels, the second failing: the first kernel's entry was written
/// with the new line, so after the file is put back both run again on it.
#[test]
fn a_change_cut_short_is_put_back_everywhere() {
    let b = bus::Bus::start_prepared(&|root| {
        let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
        std::fs::write(
            root.join("proc/cmdline"),
            format!(
                "{} vfio-pci.ids=10de:1b80\n",
                cmdline.replace("BOOT_IMAGE=", "X=").trim()
            ),
        )
        .unwrap();
        write(
            root,
            "etc/kernel/cmdline",
            "root=/dev/mapper/vg0-root ro quiet vfio-pci.ids=10de:1b80\n",
        );
        write(root, "etc/kernel/install.conf", "layout=bls\n");
        write(root, "usr/lib/modules/6.1.0-27-amd64/vmlinuz", "one\n");
        write(root, "usr/lib/modules/6.1.0-28-amd64/vmlinuz", "two\n");
        // Logs each run with the line it read; fails for the second kernel while boot/fail is there.
        executable(
            root,
            "usr/bin/kernel-install",
            "#!/bin/sh\nR=$PASSAGE_ROOT\necho \"$2 $(cat $R/etc/kernel/cmdline)\" >> $R/boot/runs\nif [ -e $R/boot/fail ] && [ $2 = 6.1.0-28-amd64 ]; then echo 'dracut: cannot write' >&2; exit 1; fi\n",
        );
        write(root, "boot/fail", "");
    });
    let root = b.root();
    let cmdline = root.join("etc/kernel/cmdline");
    let original = std::fs::read(&cmdline).unwrap();
    let out = b.passagectl(false, &["fix", "vfio-pci-ids"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("dracut: cannot write"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cmdline).unwrap(), original);
    let runs = std::fs::read_to_string(root.join("boot/runs")).unwrap();
    let runs: Vec<&str> = runs.lines().collect();
    assert_eq!(
        runs,
        [
            "6.1.0-27-amd64 root=/dev/mapper/vg0-root ro quiet",
            "6.1.0-28-amd64 root=/dev/mapper/vg0-root ro quiet",
            "6.1.0-27-amd64 root=/dev/mapper/vg0-root ro quiet vfio-pci.ids=10de:1b80",
            "6.1.0-28-amd64 root=/dev/mapper/vg0-root ro quiet vfio-pci.ids=10de:1b80",
        ],
        "each kernel's entry written again from the old line"
    );
    assert!(!b.state().join("boot-line-journal.json").exists());
}

/// passage-boot-line.service's own run (`passage-helper --boot-line-request`) killed after it
/// wrote the files and before the tool ran (its fault point, kill -9): the journal says what
/// was there; its next run — at boot, with no request — puts the file back and runs the tool
/// on it. A request from another boot is dropped, never carried out unasked.
#[test]
fn a_crash_mid_change_is_put_back_at_the_next_run() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let state = dir.path().join("state");
    passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST)
        .unwrap()
        .write_tree(&root)
        .unwrap();
    write(
        &root,
        "etc/default/grub",
        &DEBIAN_GRUB.replace(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet vfio-pci.ids=10de:1b80\"",
        ),
    );
    executable(&root, "usr/sbin/update-grub", UPDATE_GRUB);
    let grub = root.join("etc/default/grub");
    let original = std::fs::read(&grub).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    // This boot, as the kernel numbers it.
    write(
        &root,
        "proc/sys/kernel/random/boot_id",
        "5f1c7b0e-boot-one\n",
    );
    let request = r#"{"version":1,"id":"t1","boot_id":"5f1c7b0e-boot-one","code":"vfio-pci-ids","device":null,"edit":{"add":[],"remove":["vfio-pci.ids"]},"undo":false}"#;
    std::fs::write(state.join("boot-line-request.json"), request).unwrap();
    let helper = |fault: Option<&str>| {
        let mut c = Command::new(bins::bin("passage-helper"));
        c.arg("--root")
            .arg(&root)
            .arg("--state-dir")
            .arg(&state)
            .arg("--boot-line-request");
        if let Some(f) = fault {
            c.env("PASSAGE_FAULT_AT", f);
        }
        c
    };
    let mut child = helper(Some("boot-line:written")).spawn().unwrap();
    // Stopped at the point (SIGSTOP) once the file is written: then killed.
    let t0 = std::time::Instant::now();
    while std::fs::read(&grub).unwrap() == original {
        assert!(
            t0.elapsed().as_secs() < 30,
            "the helper never wrote the file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9));
    assert!(state.join("boot-line-journal.json").exists());
    assert!(
        !root.join("boot/grub/grub.cfg").exists(),
        "the tool ran before the kill"
    );
    // The next run, as at boot: no request, the journal.
    let out = helper(None).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("put back"));
    assert_eq!(std::fs::read(&grub).unwrap(), original);
    assert!(!state.join("boot-line-journal.json").exists());
    assert!(std::fs::read_to_string(root.join("boot/grub/grub.cfg"))
        .unwrap()
        .contains("vfio-pci.ids=10de:1b80"));
    // A request from another boot (a crash left it): dropped, never carried out unasked.
    std::fs::write(
        state.join("boot-line-request.json"),
        request.replace("5f1c7b0e-boot-one", "0a9d-an-earlier-boot"),
    )
    .unwrap();
    let out = helper(None).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("dropped"));
    assert_eq!(std::fs::read(&grub).unwrap(), original);
}

/// `passagectl vfs` through the helper on the demo host, its I350 (an SR-IOV NIC, 8 VFs) on
/// igb: the count written through the driver's file and read back, the udev rule for every
/// boot and its record; 0 takes both away. Refused: more than the device offers, a device
/// without SR-IOV, a PF without its driver, nobody, a malformed address. (The VFs themselves
/// come from the kernel: tests/vm.rs creates them on QEMU's igb.)
#[test]
fn the_helper_gives_a_nic_its_virtual_functions() {
    const PF: &str = "0000:09:00.0";
    let b = bus::Bus::start_spec(
        &|m| {
            for d in m
                .devices
                .iter_mut()
                .filter(|d| d.bdf.starts_with("0000:09:00."))
            {
                d.driver = Some("igb".into());
            }
        },
        &|root| {
            for f in ["0000:09:00.0", "0000:09:00.1"] {
                let dev = root.join("sys/bus/pci/devices").join(f);
                std::fs::write(dev.join("sriov_totalvfs"), "8\n").unwrap();
                std::fs::write(dev.join("sriov_numvfs"), "0\n").unwrap();
            }
        },
    );
    let root = b.root();
    let numvfs = root
        .join("sys/bus/pci/devices")
        .join(PF)
        .join("sriov_numvfs");
    let rule = root.join("etc/udev/rules.d/63-passage-sriov.rules");

    let out = b.passagectl(true, &["vfs", PF, "4"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("set-vfs"));
    for (dev, n, said) in [
        (PF, "9", "at most 8"),
        ("0000:07:00.0", "2", "no SR-IOV capability"),
        ("0000:zz:00.0", "2", "0000:zz:00.0"),
    ] {
        let out = b.passagectl(false, &["vfs", dev, n]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(said),
            "{dev} {n}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&numvfs).unwrap().trim(), "0");
    assert!(!rule.exists());

    // The card has VFs, one of them on vfio-pci (a guest may have it): a change goes through
    // 0, which would take it away, so it is refused and nothing changes.
    std::fs::write(&numvfs, "2\n").unwrap();
    let link = root.join("sys/bus/pci/devices").join(PF).join("virtfn0");
    std::os::unix::fs::symlink(root.join("sys/bus/pci/devices/0000:0c:00.0"), &link).unwrap();
    let out = b.passagectl(false, &["vfs", PF, "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("0000:0c:00.0") && err.contains("on vfio-pci"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&numvfs).unwrap().trim(), "2");
    assert!(!rule.exists(), "the rule was left after a refusal");
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&numvfs, "0\n").unwrap();

    let out = b.passagectl(false, &["vfs", PF, "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("has 4 virtual functions now"), "{text}");
    assert_eq!(std::fs::read_to_string(&numvfs).unwrap().trim(), "4");
    let r = std::fs::read_to_string(&rule).unwrap();
    assert!(
        r.contains("ACTION==\"add|bind\", SUBSYSTEM==\"pci\", KERNEL==\"0000:09:00.0\", DRIVER==\"?*\", DRIVER!=\"vfio-pci\", ATTR{vendor}==\"0x8086\", ATTR{device}==\"0x1521\", ATTR{sriov_numvfs}=\"4\""),
        "{r}"
    );
    let (rt, h) = b.proxy();
    let r = rt.block_on(h.set_virtual_functions(PF, 100_000, Default::default()));
    assert!(
        matches!(r, Err(passage_dbus::HelperError::InvalidArgs(_))),
        "{r:?}"
    );

    let out = b.passagectl(false, &["vfs", PF, "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&numvfs).unwrap().trim(), "0");
    assert!(!rule.exists());
}

/// `passagectl rehearse-reset` through the helper on the demo host: the GeForce's group
/// (its GPU and its audio function, each reset by the kernel's method for it) claimed, reset,
/// given back to nvidia and snd_hda_intel; a member without a reset method does not survive
/// it (exit 1, said per member); nobody is refused; the result kept per model and kernel.
#[test]
fn the_helper_rehearses_a_reset_and_gives_the_group_back() {
    let b = bus::Bus::start_prepared(&|root| {
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-27-amd64\n").unwrap();
    });
    let root = b.root();
    let drivers = |b: &bus::Bus| (b.driver("0000:0b:00.0"), b.driver("0000:0b:00.1"));
    let before = drivers(&b);
    assert_eq!(before.0.as_deref(), Some("nvidia"));

    let out = b.passagectl(true, &["rehearse-reset", "19"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("rehearse-reset")
    );

    let out = b.passagectl(false, &["rehearse-reset", "19"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("0000:0b:00.0 (") && text.contains("reset (bus): yes; answers afterwards: yes; back on nvidia: yes. Survives a guest reboot: yes."),
        "{text}"
    );
    assert_eq!(drivers(&b), before);
    let recs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.state().join("resets.json")).unwrap()).unwrap();
    assert!(recs
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["device_id"] == "2206"
            && r["kernel"] == "6.1.0-27-amd64"
            && r["reset"] == true));
    // Someone who cannot read the records (nobody; the tree has no /var/lib/passage yet):
    // the doctor asks the helper for them (ResetRehearsals, the read action) and says the same.
    assert!(!root.join("var/lib/passage/resets.json").exists());
    let out = b.passagectl(true, &["--root", root.to_str().unwrap(), "doctor"]);
    let doc = String::from_utf8_lossy(&out.stdout);
    assert!(
        doc.contains("survived a rehearsed guest reboot on this kernel (6.1.0-27-amd64)")
            && doc.contains("(reset-rehearsed)"),
        "{doc}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a helper to ask (another bus, nothing there): nothing said about rehearsals,
    // and the doctor still answers.
    let out = passagectl()
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .args(["--root", root.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let doc = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.code().is_some_and(|c| c < 2), "{doc}");
    assert!(!doc.contains("(reset-rehearsed)"), "{doc}");
    // The doctor, where it can read the records (as root, here copied into the tree's
    // /var/lib/passage), says what the rehearsal found for the models on this kernel.
    std::fs::create_dir_all(root.join("var/lib/passage")).unwrap();
    std::fs::copy(
        b.state().join("resets.json"),
        root.join("var/lib/passage/resets.json"),
    )
    .unwrap();
    let out = passagectl()
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .args(["--root", root.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let doc = String::from_utf8_lossy(&out.stdout);
    assert!(
        doc.contains("survived a rehearsed guest reboot on this kernel (6.1.0-27-amd64)")
            && doc.contains("(reset-rehearsed)"),
        "{doc}"
    );

    // Without a reset of its own: not known (VFIO may reset the slot with the group), exit 0.
    std::fs::write(
        root.join("sys/bus/pci/devices/0000:0b:00.1/reset_method"),
        "\n",
    )
    .unwrap();
    let out = b.passagectl(false, &["rehearse-reset", "19"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("0000:0b:00.1 (")
            && text.contains("reset (-): no")
            && text.contains("Survives a guest reboot: not known"),
        "{text}"
    );
    assert_eq!(drivers(&b), before);
    // A GPU that does not answer after its reset (its config space reads all ones, as the
    // real kernel reads it from the device): does not survive, exit 1, still given back.
    std::fs::write(
        root.join("sys/bus/pci/devices/0000:0b:00.0/.gone-after-reset"),
        "",
    )
    .unwrap();
    let out = b.passagectl(false, &["rehearse-reset", "19"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("answers afterwards: no") && text.contains("Survives a guest reboot: no."),
        "{text}"
    );
    assert_eq!(drivers(&b), before);
}

/// `passagectl bar-size` through the helper on a private bus with polkitd: the RTX 3080's
/// BAR 1 (8 GiB now, resizable from 256 MiB) is to be 256 MiB whenever Passage claims it;
/// nobody is refused; sizes the card does not offer, a BAR that is not resizable, odd words and
/// hostile arguments change nothing; a claim through the helper then resizes it while no
/// driver holds it, and the release gives it its 8 GiB back before nvidia binds it.
#[test]
fn the_helper_sets_a_bar_size_that_claims_apply_and_releases_undo() {
    const GPU: &str = "0000:0b:00.0";
    let b = bus::Bus::start_spec(&bus::resizable_gpu_bar, &|_| {});
    let bar1 = |b: &bus::Bus| -> String {
        let r = std::fs::read_to_string(
            b.root()
                .join("sys/bus/pci/devices")
                .join(GPU)
                .join("resource"),
        )
        .unwrap();
        r.lines().nth(1).unwrap().to_string()
    };
    let eight_gib = bar1(&b);
    let records = b.state().join("bars.json");

    let out = b.passagectl(true, &["bar-size", GPU, "1", "256"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("set-bar-size"));
    for (bar, size, said) in [
        ("1", "300", "cannot be 300 MiB"),
        ("1", "16GiB", "cannot be 16 GiB"),
        ("0", "256", "not resizable"),
        ("1", "lots", "not a BAR size"),
        ("7", "256", "BARs 0 to 5"),
    ] {
        let out = b.passagectl(false, &["bar-size", GPU, bar, size]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(said),
            "{bar} {size}: {err}"
        );
    }
    assert!(!records.exists());
    let (rt, h) = b.proxy();
    for (bar, size) in [(6u32, 256u64), (u32::MAX, 256), (1, u64::MAX)] {
        let r = rt.block_on(h.set_bar_size(GPU, bar, size, Default::default()));
        assert!(
            matches!(r, Err(passage_dbus::HelperError::InvalidArgs(_))),
            "{bar} {size}: {r:?}"
        );
    }
    assert!(rt
        .block_on(h.set_bar_size(GPU, 1, 300, Default::default()))
        .is_err());
    let r = rt.block_on(h.set_bar_size("0000:0b:00.0/../..", 1, 256, Default::default()));
    assert!(r.is_err());

    let out = b.passagectl(false, &["bar-size", GPU, "1", "256"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("BAR 1 of 0000:0b:00.0 will be 256 MiB whenever Passage claims it"),
        "{text}"
    );
    assert!(std::fs::read_to_string(&records)
        .unwrap()
        .contains("\"size\": 8"));
    assert_eq!(bar1(&b), eight_gib, "nothing is resized until a claim");

    let out = b.passagectl(false, &["claim", "19"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.driver(GPU).as_deref(), Some("vfio-pci"));
    let small = bar1(&b);
    let f: Vec<u64> = small
        .split_whitespace()
        .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
        .collect();
    assert_eq!(f[1] - f[0] + 1, 256 << 20, "{small}");
    let out = b.passagectl(false, &["release", "19"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bar1(&b), eight_gib);

    let out = b.passagectl(false, &["bar-size", GPU, "1", "none"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no longer resizes BAR 1"));
}
