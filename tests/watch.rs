//! Live updates: an event re-reads one device and its group and nothing else, through the
//! same `apply` the monitor uses.

mod common;
use common::*;
use passage_core::explain::{self, State};
use passage_core::watch::{apply, Action, DeviceEvent};
use std::os::unix::fs::symlink;

#[test]
fn binding_the_gpu_group_to_vfio_pci_turns_it_assigned_one_event_at_a_time() {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let root = b.root();
    let mut host = b.host.clone();
    let gpu = "0000:01:00.0".parse().unwrap();
    let audio = "0000:01:00.1".parse().unwrap();
    let dir =
        |a: &str| std::fs::canonicalize(b.dir.path().join("sys/bus/pci/devices").join(a)).unwrap();
    std::fs::create_dir_all(b.dir.path().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    std::fs::create_dir_all(b.dir.path().join("sys/bus/pci/drivers/nouveau")).unwrap();
    // The fixture's source did not name drivers; start from nouveau on the GPU. Like the
    // kernel, bind both ends: the device's `driver` link and the driver's entry for it.
    let bind = |drv: &str| {
        symlink(
            format!("../../../../bus/pci/drivers/{drv}"),
            dir("0000:01:00.0").join("driver"),
        )
        .unwrap();
        symlink(
            dir("0000:01:00.0"),
            b.dir
                .path()
                .join("sys/bus/pci/drivers")
                .join(drv)
                .join("0000:01:00.0"),
        )
        .unwrap();
    };
    bind("nouveau");
    apply(
        &mut host,
        &root,
        &DeviceEvent {
            action: Action::Bind,
            address: gpu,
        },
    )
    .unwrap();
    assert_eq!(host.devices[&gpu].driver.as_deref(), Some("nouveau"));

    std::fs::remove_file(dir("0000:01:00.0").join("driver")).unwrap();
    std::fs::remove_file(
        b.dir
            .path()
            .join("sys/bus/pci/drivers/nouveau/0000:01:00.0"),
    )
    .unwrap();
    bind("vfio-pci");
    let u = apply(
        &mut host,
        &root,
        &DeviceEvent {
            action: Action::Bind,
            address: gpu,
        },
    )
    .unwrap();
    assert_eq!(u.driver_before.as_deref(), Some("nouveau"));
    assert_eq!(u.driver_after.as_deref(), Some("vfio-pci"));
    assert_eq!(u.state_before, Some(State::InUse));
    assert_eq!(
        u.state_after,
        Some(State::Assigned),
        "audio has no driver, the port is a bridge"
    );
    assert_eq!(u.group, host.devices[&gpu].group);

    // A hot-unplug removes the device from the model and from its group.
    let u = apply(
        &mut host,
        &root,
        &DeviceEvent {
            action: Action::Remove,
            address: audio,
        },
    )
    .unwrap();
    assert!(!host.devices.contains_key(&audio));
    let g = &host.groups[&u.group.unwrap()];
    assert!(!g.devices.contains(&audio));
    // And the model after events equals a fresh scan of the same tree, minus the removed one.
    let fresh = passage_core::scan::scan(&root).unwrap();
    assert_eq!(fresh.devices[&gpu], host.devices[&gpu]);
    assert_eq!(
        explain::group(&fresh, &fresh.groups[&u.group.unwrap()]).state,
        State::Assigned
    );
}

/// A bind or unbind of a device the model knows changes only its driver: the event reads the
/// `driver` link and `driver_override` (and whether the group's VFIO node is there), not the
/// device's twenty-odd files or its group — the events every claim and release sets off. A
/// device the model does not know is read whole.
#[test]
fn a_bind_event_reads_only_the_drivers_facts() {
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let mut host = b.host.clone();
    let gpu: passage_core::PciAddress = "0000:01:00.0".parse().unwrap();
    let dir = std::fs::canonicalize(b.dir.path().join("sys/bus/pci/devices/0000:01:00.0")).unwrap();
    std::fs::create_dir_all(b.dir.path().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    symlink("../../../../bus/pci/drivers/vfio-pci", dir.join("driver")).unwrap();
    std::fs::write(dir.join("driver_override"), "vfio-pci\n").unwrap();
    let root = passage_core::host::HostRoot::open_recording(b.dir.path()).unwrap();
    let bind = DeviceEvent {
        action: Action::Bind,
        address: gpu,
    };
    let u = apply(&mut host, &root, &bind).unwrap();
    assert_eq!(u.driver_after.as_deref(), Some("vfio-pci"));
    assert_eq!(
        host.devices[&gpu].driver_override.as_deref(),
        Some("vfio-pci")
    );
    let read: Vec<String> = root
        .recording()
        .keys()
        .map(|p| p.display().to_string())
        .filter(|p| p.contains("0000:01:00.0") || p.contains("iommu_groups"))
        .collect();
    assert!(
        read.iter()
            .any(|p| p.ends_with("0000:01:00.0/driver_override")),
        "{read:?}"
    );
    for p in &read {
        assert!(
            !p.ends_with("/config") && !p.ends_with("/resource") && !p.contains("iommu_groups"),
            "a bind read {p}: {read:?}"
        );
    }
    // The model after the light read is the device a whole scan finds.
    let whole = passage_core::scan::scan(&b.root()).unwrap();
    assert_eq!(host.devices[&gpu], whole.devices[&gpu]);

    // Unknown to the model: read whole, config space and all.
    host.devices.remove(&gpu);
    let root = passage_core::host::HostRoot::open_recording(b.dir.path()).unwrap();
    apply(&mut host, &root, &bind).unwrap();
    assert!(root
        .recording()
        .keys()
        .any(|p| p.ends_with("0000:01:00.0/config")));
    assert_eq!(host.devices[&gpu], whole.devices[&gpu]);
}
