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

/// The helper reads a batch of events before it takes its model's lock, then applies them in
/// order. A batch that removes, adds and binds the same device (a PF's VFs when
/// `sriov_numvfs` is written 0 then N, a remove and rescan) ends with the device as a whole
/// scan finds it: each event reads its device whole, never rebuilt from the model's old copy.
#[test]
fn a_batch_of_events_read_before_it_is_applied_ends_as_a_whole_scan() {
    use passage_core::watch::{apply_read, read_event};
    let b = build(&load("msi-z370i-i5-8400-gtx1070"));
    let mut host = b.host.clone();
    let gpu: passage_core::PciAddress = "0000:01:00.0".parse().unwrap();
    let dir = std::fs::canonicalize(b.dir.path().join("sys/bus/pci/devices/0000:01:00.0")).unwrap();
    // The device came back bound to vfio-pci, with an override and a different BAR 0.
    std::fs::create_dir_all(b.dir.path().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    symlink("../../../../bus/pci/drivers/vfio-pci", dir.join("driver")).unwrap();
    symlink(
        &dir,
        b.dir
            .path()
            .join("sys/bus/pci/drivers/vfio-pci/0000:01:00.0"),
    )
    .unwrap();
    std::fs::write(dir.join("driver_override"), "vfio-pci\n").unwrap();
    let resource = std::fs::read_to_string(dir.join("resource")).unwrap();
    let mut lines: Vec<String> = resource.lines().map(str::to_string).collect();
    lines[0] = "0x00000000f0000000 0x00000000f0ffffff 0x0000000000040200".into();
    std::fs::write(dir.join("resource"), lines.join("\n") + "\n").unwrap();
    let before = host.devices[&gpu].clone();
    let root = b.root();
    let events: Vec<DeviceEvent> = [Action::Remove, Action::Add, Action::Bind]
        .into_iter()
        .map(|action| DeviceEvent {
            action,
            address: gpu,
        })
        .collect();
    let page = host.platform.page_size.max(4096);
    let reads: Vec<_> = events
        .iter()
        .map(|ev| read_event(&root, ev, page).unwrap())
        .collect();
    let mut last = None;
    for (ev, r) in events.iter().zip(reads) {
        last = Some(apply_read(&mut host, ev, r));
    }
    let whole = passage_core::scan::scan(&root).unwrap();
    assert_ne!(whole.devices[&gpu], before, "the tree did change");
    assert_eq!(host.devices[&gpu], whole.devices[&gpu]);
    let g = whole.devices[&gpu].group.unwrap();
    assert_eq!(host.groups[&g], whole.groups[&g]);
    assert_eq!(last.unwrap().driver_after.as_deref(), Some("vfio-pci"));
}
