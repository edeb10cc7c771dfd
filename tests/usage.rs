//! What the host uses its devices for, through the layers real systems stack: LVM, btrfs over
//! several disks, ZFS pools, swap files, NFS roots, bridges and bonds over NICs.

mod common;
use common::*;
use passage_core::explain::State;
use passage_core::model::Use;
use passage_core::synth::{BlockSpec, MountSpec, NetSpec};
use std::os::unix::fs::symlink;
use std::path::Path;

fn addr(s: &str) -> passage_core::PciAddress {
    s.parse().unwrap()
}

/// The ASUS B550 listing with two NVMe disks (the Samsung on its CPU port, the KIOXIA in the
/// chipset group) and the two NICs, as named extra facts.
fn b550() -> passage_core::synth::MachineSpec {
    let mut spec = load("asus-tuf-b550m-plus-5800x");
    spec.host.blocks = vec![
        BlockSpec {
            name: "nvme0n1".into(),
            pci: "0000:01:00.0".into(),
            majmin: "259:0".into(),
            partitions: vec![("nvme0n1p1".into(), "259:1".into())],
        },
        BlockSpec {
            name: "nvme1n1".into(),
            pci: "0000:05:00.0".into(),
            majmin: "259:2".into(),
            partitions: vec![("nvme1n1p1".into(), "259:3".into())],
        },
    ];
    spec.host.net = vec![NetSpec {
        iface: "enp7s0".into(),
        pci: "0000:07:00.0".into(),
    }];
    spec
}

fn rescan(b: &Built) -> passage_core::Host {
    passage_core::scan::scan(&b.root()).unwrap()
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[test]
fn a_btrfs_root_over_two_disks_pins_both() {
    let mut spec = b550();
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "btrfs".into(),
        source: "/dev/nvme0n1p1".into(),
    });
    let b = build(&spec);
    // The kernel lists a btrfs filesystem's member devices under sys/fs/btrfs/UUID/devices.
    let fs = b
        .dir
        .path()
        .join("sys/fs/btrfs/5f8e0c1a-2b8e-4a8e-9c1e-0d5d1f2a3b4c/devices");
    std::fs::create_dir_all(&fs).unwrap();
    symlink(
        "../../../../devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1/nvme0n1p1",
        fs.join("nvme0n1p1"),
    )
    .unwrap();
    symlink("../../../../devices/pci0000:00/0000:00:01.2/0000:02:00.2/0000:03:04.0/0000:05:00.0/nvme/nvme1/nvme1n1/nvme1n1p1", fs.join("nvme1n1p1")).unwrap();
    let host = rescan(&b);
    for a in ["0000:01:00.0", "0000:05:00.0"] {
        assert!(
            host.uses_of(addr(a)).iter().any(
                |u| matches!(u, Use::SystemFilesystem { mountpoint, .. } if mountpoint == "/")
            ),
            "{a}: {:?}",
            host.uses
        );
    }
}

#[test]
fn a_zfs_pool_pins_every_member_disk_udev_knows() {
    let mut spec = b550();
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "zfs".into(),
        source: "rpool/ROOT/debian".into(),
    });
    let b = build(&spec);
    for (mm, pool) in [("259:1", "rpool"), ("259:3", "tank")] {
        write(
            b.dir.path(),
            &format!("run/udev/data/b{mm}"),
            &format!("E:ID_FS_TYPE=zfs_member\nE:ID_FS_LABEL={pool}\n"),
        );
    }
    let host = rescan(&b);
    assert!(host
        .uses_of(addr("0000:01:00.0"))
        .iter()
        .any(Use::is_critical));
    assert!(
        host.uses_of(addr("0000:05:00.0")).is_empty(),
        "tank is another pool"
    );
}

#[test]
fn a_swap_file_pins_the_disk_of_its_filesystem() {
    let mut spec = b550();
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "ext4".into(),
        source: "/dev/nvme0n1p1".into(),
    });
    spec.host.mounts.push(MountSpec {
        mountpoint: "/srv".into(),
        fstype: "xfs".into(),
        source: "/dev/nvme1n1p1".into(),
    });
    spec.host.swaps.push("/srv/swapfile".into());
    let b = build(&spec);
    let swap = b.host.uses_of(addr("0000:05:00.0"));
    assert!(
        swap.iter()
            .any(|u| matches!(u, Use::Swap { source } if source == "/srv/swapfile")),
        "{swap:?}"
    );
    // /srv alone would only make the chipset group in-use; the swap file makes it critical.
    assert_eq!(b.verdict_of("0000:05:00.0").state, State::HostCritical);
}

#[test]
fn a_default_route_on_a_bridge_over_a_bond_pins_the_nic_beneath() {
    let mut spec = b550();
    spec.host.default_route = Some("br0".into());
    let b = build(&spec);
    let r = b.dir.path();
    // br0 → bond0 → enp7s0, as the kernel links them (lower_*).
    std::fs::create_dir_all(r.join("sys/devices/virtual/net/br0")).unwrap();
    std::fs::create_dir_all(r.join("sys/devices/virtual/net/bond0")).unwrap();
    symlink(
        "../bond0",
        r.join("sys/devices/virtual/net/br0/lower_bond0"),
    )
    .unwrap();
    symlink(
        "../../../pci0000:00/0000:00:01.2/0000:02:00.2/0000:03:09.0/0000:07:00.0/net/enp7s0",
        r.join("sys/devices/virtual/net/bond0/lower_enp7s0"),
    )
    .unwrap();
    symlink("../../devices/virtual/net/br0", r.join("sys/class/net/br0")).unwrap();
    symlink(
        "../../devices/virtual/net/bond0",
        r.join("sys/class/net/bond0"),
    )
    .unwrap();
    let host = rescan(&b);
    assert!(
        host.uses_of(addr("0000:07:00.0"))
            .iter()
            .any(|u| matches!(u, Use::DefaultRoute { interface } if interface == "br0")),
        "{:?}",
        host.uses
    );
}

#[test]
fn an_nfs_root_pins_the_nic_that_reaches_it() {
    let mut spec = b550();
    spec.host.mounts.push(MountSpec {
        mountpoint: "/".into(),
        fstype: "nfs4".into(),
        source: "10.0.0.1:/export/root".into(),
    });
    spec.host.default_route = Some("enp7s0".into());
    let b = build(&spec);
    let uses = b.host.uses_of(addr("0000:07:00.0"));
    assert!(
        uses.iter().any(|u| matches!(u, Use::NetworkRoot { .. })),
        "{uses:?}"
    );
    let v = b.verdict_of("0000:07:00.0");
    assert!(v
        .reasons
        .iter()
        .any(|r| r.code == "network-root" && r.message.contains("10.0.0.1:/export/root")));
}

#[test]
fn a_data_disk_makes_its_group_in_use_not_critical() {
    let mut spec = load("msi-mag-b550m-mortar");
    spec.host.blocks.push(BlockSpec {
        name: "sdb".into(),
        pci: "0000:02:00.1".into(),
        majmin: "8:16".into(),
        partitions: vec![("sdb1".into(), "8:17".into())],
    });
    spec.host.mounts.push(MountSpec {
        mountpoint: "/mnt/games".into(),
        fstype: "ext4".into(),
        source: "/dev/sdb1".into(),
    });
    let b = build(&spec);
    let d = b.host.devices.get(&addr("0000:02:00.1"));
    assert!(d.is_some(), "fixture changed");
    let v = b.verdict_of("0000:02:00.1");
    assert!(v
        .reasons
        .iter()
        .any(|r| r.code == "mounted-filesystem"
            && r.remedy.as_deref().unwrap().contains("/mnt/games")));
    assert_ne!(v.state, State::HostCritical);
}
