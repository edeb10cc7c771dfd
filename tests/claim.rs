//! Claims and releases as transactions, on a fake kernel with failure injection: the exact
//! sysfs writes, rollback when a member refuses, journal replay after a kill, busy groups,
//! host-critical groups, and groups a guest holds.

use passage_core::synth::MachineSpec;
use passage_core::{scan, GroupId, Host, HostRoot, PciAddress};
use passage_helper::claim::{self, ClaimError, ClaimOptions, Locks, StateDir};
use passage_helper::fakekernel::FakeKernel;

struct Bed {
    dir: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    kernel: FakeKernel,
    locks: Locks,
}

impl Bed {
    /// The demo workstation: group 19 is the RTX 3080 (nvidia) + its audio (snd_hda_intel)
    /// behind a root port; group 17 the chipset holding the console GPU and the default route.
    fn demo() -> Self {
        let dir = tempfile::tempdir().unwrap();
        MachineSpec::from_json(passage_core::demo::DEMO_HOST)
            .unwrap()
            .write_tree(dir.path())
            .unwrap();
        Self::on(dir)
    }
    /// The fake kernel over the tree in `dir`, with an empty state directory.
    fn on(dir: tempfile::TempDir) -> Self {
        let kernel = FakeKernel::new(dir.path()).unwrap();
        Bed {
            dir,
            state_dir: tempfile::tempdir().unwrap(),
            kernel,
            locks: Locks::default(),
        }
    }
    fn host(&self) -> Host {
        scan::scan(&HostRoot::open(self.dir.path()).unwrap()).unwrap()
    }
    fn state(&self) -> StateDir {
        StateDir::new(self.state_dir.path()).unwrap()
    }
    fn claim(&self, g: u32, force: bool) -> Result<claim::Done, ClaimError> {
        claim::claim(
            &self.host(),
            GroupId(g),
            &ClaimOptions { force },
            &self.kernel,
            &self.state(),
            &self.locks,
        )
    }
    fn release(&self, g: u32) -> Result<claim::Done, ClaimError> {
        claim::release(
            &self.host(),
            GroupId(g),
            &self.kernel,
            &self.state(),
            &self.locks,
        )
    }
    fn driver(&self, a: &str) -> Option<String> {
        self.host().devices[&a.parse::<PciAddress>().unwrap()]
            .driver
            .clone()
    }
    fn journals(&self) -> usize {
        std::fs::read_dir(self.state_dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("journal-")
                    && e.as_ref().unwrap().path().extension().unwrap() == "json"
            })
            .count()
    }
    /// Claims group `g` with the helper killed at write `n` (a panic, as `kill -9`: no rollback
    /// code runs), leaving its journal behind.
    fn claim_killed_at_write(&self, g: u32, n: usize) {
        self.kernel.faults.lock().unwrap().die_at_write = Some(n);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.claim(g, false)));
        assert!(r.is_err(), "write {n}: the kill did not happen");
        self.kernel.faults.lock().unwrap().die_at_write = None;
    }
    /// Takes device `a` out of the tree as a hot-unplug does: its directory and every link to it.
    fn unplug(&self, a: &str) {
        let root = self.dir.path();
        let link = root.join("sys/bus/pci/devices").join(a);
        let real = std::fs::canonicalize(&link).unwrap();
        let group = std::fs::read_link(real.join("iommu_group")).unwrap();
        let group = real.join(group);
        std::fs::remove_file(group.join("devices").join(a)).unwrap();
        for drv in std::fs::read_dir(root.join("sys/bus/pci/drivers")).unwrap() {
            let _ = std::fs::remove_file(drv.unwrap().path().join(a));
        }
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&real).unwrap();
    }
    /// The writes that named device `a`, after the first `from`.
    fn writes_to(&self, a: &str, from: usize) -> Vec<(String, String)> {
        self.kernel.writes()[from..]
            .iter()
            .filter(|(p, v)| p.contains(a) || v.contains(a))
            .cloned()
            .collect()
    }
}

const GPU: &str = "0000:0b:00.0";
const AUDIO: &str = "0000:0b:00.1";

#[test]
fn claiming_the_gpu_group_binds_both_functions_with_libvirts_sequence() {
    let bed = Bed::demo();
    let done = bed.claim(19, false).unwrap();
    assert!(done.changed);
    assert_eq!(bed.driver(GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("vfio-pci"));
    assert_eq!(
        bed.driver("0000:00:03.1").as_deref(),
        Some("pcieport"),
        "the root port is not in the group; bridges are never touched"
    );
    insta::assert_json_snapshot!("claim_gpu_group_writes", bed.kernel.writes());
    let host = bed.host();
    let g = &host.groups[&GroupId(19)];
    assert_eq!(
        passage_core::explain::group(&host, g).state,
        passage_core::explain::State::Assigned
    );
    assert_eq!(
        bed.journals(),
        0,
        "the journal is closed once the claim stands"
    );
    assert_eq!(bed.state().claims().unwrap().len(), 1);

    // Claiming an already-claimed group succeeds without a single write.
    let before = bed.kernel.writes().len();
    assert!(!bed.claim(19, false).unwrap().changed);
    assert_eq!(bed.kernel.writes().len(), before);
}

#[test]
fn releasing_puts_every_member_back_on_its_recorded_driver() {
    let bed = Bed::demo();
    bed.claim(19, false).unwrap();
    let n = bed.kernel.writes().len();
    let done = bed.release(19).unwrap();
    assert!(done.changed);
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("snd_hda_intel"));
    insta::assert_json_snapshot!(
        "release_gpu_group_writes",
        bed.kernel.writes()[n..].to_vec()
    );
    assert!(bed.state().claims().unwrap().is_empty());
    assert_eq!(bed.journals(), 0);
}

#[test]
fn claiming_rolls_back_when_the_second_device_refuses_vfio_pci() {
    let bed = Bed::demo();
    bed.kernel
        .faults
        .lock()
        .unwrap()
        .refuse_bind
        .insert((AUDIO.parse().unwrap(), "vfio-pci".into()));
    let err = bed.claim(19, false).unwrap_err();
    let ClaimError::Failed {
        message,
        rolled_back,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(
        message.contains(AUDIO) && message.contains("put back"),
        "{message}"
    );
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("snd_hda_intel"));
    assert!(
        rolled_back.iter().all(|o| o.driver == o.wanted),
        "{rolled_back:?}"
    );
    assert_eq!(bed.journals(), 0);
    assert!(bed.state().claims().unwrap().is_empty());
    assert_eq!(err.name(), "Failed");
}

#[test]
fn claiming_rolls_back_when_a_driver_will_not_let_go() {
    let bed = Bed::demo();
    bed.kernel
        .faults
        .lock()
        .unwrap()
        .refuse_unbind
        .insert(AUDIO.parse().unwrap());
    let err = bed.claim(19, false).unwrap_err();
    assert!(err.to_string().contains("busy"), "{err}");
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("snd_hda_intel"));
}

#[test]
fn a_kill_at_any_write_is_undone_by_replay_at_the_next_start() {
    // Count the writes of an undisturbed claim, then kill the helper at each one in turn.
    let total = {
        let bed = Bed::demo();
        bed.claim(19, false).unwrap();
        bed.kernel.writes().len()
    };
    assert!(total >= 6);
    for at in 1..=total {
        let bed = Bed::demo();
        bed.kernel.faults.lock().unwrap().die_at_write = Some(at);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bed.claim(19, false)));
        assert!(r.is_err(), "write {at}: the kill did not happen");
        assert_eq!(
            bed.journals(),
            1,
            "write {at}: the journal must survive the kill"
        );
        bed.kernel.faults.lock().unwrap().die_at_write = None;
        let replayed = claim::replay(&bed.kernel, &bed.state()).unwrap();
        assert_eq!(replayed.len(), 1);
        for (a, want) in [(GPU, "nvidia"), (AUDIO, "snd_hda_intel")] {
            assert_eq!(
                bed.driver(a).as_deref(),
                Some(want),
                "killed at write {at}: {a} stranded"
            );
        }
        assert_eq!(bed.journals(), 0);
    }
}

#[test]
fn a_second_caller_gets_busy_while_a_group_is_being_changed() {
    let bed = Bed::demo();
    let _held = bed.locks.try_lock(GroupId(19)).unwrap();
    let err = bed.claim(19, false).unwrap_err();
    assert_eq!(err.name(), "Busy");
    assert!(bed.kernel.writes().is_empty());
    // Another group is not blocked.
    assert!(bed.claim(18, false).is_ok());
}

#[test]
fn host_critical_groups_are_refused_without_force() {
    let bed = Bed::demo();
    let err = bed.claim(17, false).unwrap_err();
    assert_eq!(err.name(), "HostCritical");
    assert!(
        err.to_string().contains("console") && err.to_string().contains("default route"),
        "{err}"
    );
    assert!(bed.kernel.writes().is_empty(), "refused before any write");
    assert!(bed.claim(17, true).is_ok());
}

#[test]
fn release_of_a_group_a_guest_holds_is_refused_up_front() {
    let bed = Bed::demo();
    bed.claim(19, false).unwrap();
    bed.kernel.hold(GroupId(19), "4242 (qemu-system-x86)");
    let n = bed.kernel.writes().len();
    let err = bed.release(19).unwrap_err();
    assert_eq!(err.name(), "BadState");
    assert!(err.to_string().contains("4242 (qemu-system-x86)"), "{err}");
    assert_eq!(bed.kernel.writes().len(), n, "no write at all");
    assert_eq!(bed.driver(GPU).as_deref(), Some("vfio-pci"));
}

#[test]
fn unknown_groups_and_bridge_only_groups_change_nothing() {
    let bed = Bed::demo();
    assert_eq!(bed.claim(999, false).unwrap_err().name(), "NotFound");
    assert_eq!(bed.claim(1, false).unwrap_err().name(), "InvalidArgs");
    assert_eq!(bed.release(999).unwrap_err().name(), "NotFound");
    assert!(bed.kernel.writes().is_empty());
}

#[test]
fn a_group_already_on_vfio_pci_from_elsewhere_is_released_to_the_kernels_choice() {
    // Group 20 (the Renesas card) was put on vfio-pci before Passage: no record of its
    // original driver, so release clears the override and lets the kernel probe.
    let bed = Bed::demo();
    let done = bed.release(20).unwrap();
    assert!(done.changed);
    assert!(done
        .steps
        .iter()
        .any(|s| matches!(s, claim::Step::Probe { .. })));
}

/// Group 20's endpoints (the Renesas USB card, on vfio-pci before Passage ever ran).
fn members_of(bed: &Bed, g: u32) -> Vec<String> {
    let host = bed.host();
    let group = &host.groups[&GroupId(g)];
    host.members(group)
        .filter(|d| d.is_endpoint())
        .map(|d| d.address.to_string())
        .collect()
}

#[test]
fn a_kill_at_any_write_of_releasing_a_group_claimed_elsewhere_never_strands_a_device() {
    // No record of the original drivers: the journal must hold what is really bound
    // (vfio-pci), or a replay after the kill unbinds and binds nothing.
    let total = {
        let bed = Bed::demo();
        bed.release(20).unwrap();
        bed.kernel.writes().len()
    };
    assert!(total >= 3, "{total}");
    for at in 1..=total {
        let bed = Bed::demo();
        let members = members_of(&bed, 20);
        assert!(!members.is_empty());
        bed.kernel.faults.lock().unwrap().die_at_write = Some(at);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bed.release(20)));
        assert!(r.is_err(), "write {at}: the kill did not happen");
        assert_eq!(
            bed.journals(),
            1,
            "write {at}: the journal must survive the kill"
        );
        bed.kernel.faults.lock().unwrap().die_at_write = None;
        let replayed = claim::replay(&bed.kernel, &bed.state()).unwrap();
        assert_eq!(replayed.len(), 1);
        for a in &members {
            assert!(
                bed.driver(a).is_some(),
                "killed at write {at} of the release: {a} was left on no driver"
            );
        }
        assert_eq!(bed.journals(), 0);
    }
}

#[test]
fn a_replay_leaves_alone_an_operation_that_a_live_process_holds() {
    // A claim in flight (its journal written, the group locked by its process) must not be
    // rolled back by a one-shot run's replay; once its holder is gone, replay undoes it.
    let bed = Bed::demo();
    bed.claim_killed_at_write(19, 3);
    assert_eq!(bed.journals(), 1);
    let state = bed.state();
    let live = state.lock_group(GroupId(19)).unwrap();
    let before = bed.kernel.writes().len();
    assert!(claim::replay(&bed.kernel, &state).unwrap().is_empty());
    assert_eq!(
        bed.journals(),
        1,
        "the live holder's journal was taken from it"
    );
    assert_eq!(
        bed.kernel.writes().len(),
        before,
        "replay wrote to a held group"
    );
    // While held, a claim from elsewhere is told Busy, not queued.
    assert_eq!(bed.claim(19, false).unwrap_err().name(), "Busy");
    drop(live);
    assert_eq!(claim::replay(&bed.kernel, &state).unwrap().len(), 1);
    assert_eq!(bed.journals(), 0);
    for (a, want) in [(GPU, "nvidia"), (AUDIO, "snd_hda_intel")] {
        assert_eq!(bed.driver(a).as_deref(), Some(want));
    }
}

#[test]
fn a_claim_whose_record_cannot_be_written_is_undone_not_left_unknown() {
    // Every member bound, then the record of the originals cannot be written (here a directory
    // sits where the record goes; on a host, a full or read-only /var/lib): without the record a
    // release could not put the drivers back, so the claim is rolled back and says why.
    let bed = Bed::demo();
    std::fs::create_dir_all(bed.state_dir.path().join("claims/19.json")).unwrap();
    let e = bed.claim(19, false).unwrap_err();
    assert_eq!(e.name(), "Failed");
    assert!(e.to_string().contains("could not be recorded"), "{e}");
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("snd_hda_intel"));
    assert_eq!(bed.journals(), 0);
    assert!(bed.state().progress(GroupId(19)).unwrap().is_none());
}

#[test]
fn a_member_unplugged_while_claimed_is_left_alone_and_the_rest_go_back() {
    let bed = Bed::demo();
    bed.claim(19, false).unwrap();
    bed.unplug(AUDIO);
    let n = bed.kernel.writes().len();
    let done = bed.release(19).unwrap();
    assert!(done.changed);
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert!(
        bed.writes_to(AUDIO, n).is_empty(),
        "a device that is gone was written to: {:?}",
        bed.writes_to(AUDIO, n)
    );
    assert!(bed.state().claims().unwrap().is_empty());
    assert_eq!(bed.journals(), 0);
}

#[test]
fn replay_never_touches_another_card_found_at_a_journaled_address() {
    // Killed mid-claim; before the next start the audio function's address holds a device with
    // other ids (a card swapped while the machine was off). Replay puts the GPU back, leaves
    // the stranger alone and says the journaled device is gone.
    let bed = Bed::demo();
    bed.claim_killed_at_write(19, 2);
    let progress = bed.state().progress(GroupId(19)).unwrap().unwrap();
    assert!(
        progress.starts_with("claim:1 unbind 0000:0b:00.0 nvidia"),
        "the mark names the step the kill interrupted: {progress}"
    );
    let dev = bed.dir.path().join("sys/bus/pci/devices").join(AUDIO);
    std::fs::write(dev.join("device"), "0x1234\n").unwrap();
    let n = bed.kernel.writes().len();
    let replayed = claim::replay(&bed.kernel, &bed.state()).unwrap();
    assert_eq!(replayed.len(), 1);
    let outcomes = &replayed[0].1;
    let audio = outcomes
        .iter()
        .find(|o| o.device.to_string() == AUDIO)
        .unwrap();
    assert!(audio.gone, "{outcomes:?}");
    assert_eq!(
        audio.describe(),
        format!("{AUDIO} removed from the machine")
    );
    assert!(
        bed.writes_to(AUDIO, n).is_empty(),
        "{:?}",
        bed.writes_to(AUDIO, n)
    );
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.journals(), 0);
}

/// The arm64 machine recorded in the cross bed (`--demo arm64`): behind its PCIe-to-PCI bridge
/// (on `shpchp`) the e1000 is in the bridge's group and the rtl8139 in none (the SMMUv3 refused
/// it a second place on the same stream).
fn arm64() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    passage_core::demo::unpack(passage_core::demo::DEMO_ARM64, dir.path()).unwrap();
    // The recording kept what the scan read (ids and class from config space); the helper and
    // the fake kernel ask the `vendor`, `device` and `class` files, written here as the kernel
    // writes them.
    let host = scan::scan(&HostRoot::open(dir.path()).unwrap()).unwrap();
    for d in host.devices.values() {
        let p = dir.path().join(&d.sysfs_path);
        std::fs::write(p.join("vendor"), format!("0x{}\n", d.vendor_id)).unwrap();
        std::fs::write(p.join("device"), format!("0x{}\n", d.device_id)).unwrap();
        std::fs::write(p.join("class"), format!("0x{:06x}\n", d.class.0)).unwrap();
        // Each driver's directory lists its devices, as the kernel's does (the scan reads
        // drivers from those listings).
        if let Some(drv) = &d.driver {
            let ddir = dir.path().join("sys/bus/pci/drivers").join(drv);
            std::fs::create_dir_all(&ddir).unwrap();
            let link = ddir.join(d.address.to_string());
            if !link.exists() {
                std::os::unix::fs::symlink(&p, link).unwrap();
            }
        }
    }
    Bed::on(dir)
}

const BRIDGE: &str = "0000:06:00.0";
const E1000: &str = "0000:07:01.0";
const SHARER: &str = "0000:07:02.0";

fn group_of(bed: &Bed, a: &str) -> u32 {
    bed.host().devices[&a.parse::<PciAddress>().unwrap()]
        .group
        .unwrap()
        .0
}

fn drivers(bed: &Bed) -> [Option<String>; 3] {
    [bed.driver(BRIDGE), bed.driver(E1000), bed.driver(SHARER)]
}

#[test]
fn on_arm_a_claim_unbinds_the_bridges_shpchp_and_the_stream_sharer_and_release_binds_them_back() {
    let bed = arm64();
    let g = group_of(&bed, E1000);
    let before = drivers(&bed);
    assert_eq!(before[0].as_deref(), Some("shpchp"));
    assert_eq!(before[2].as_deref(), Some("8139cp"));
    assert!(bed.host().devices[&SHARER.parse::<PciAddress>().unwrap()]
        .group
        .is_none());
    bed.claim(g, false).unwrap();
    assert_eq!(
        drivers(&bed),
        [None, Some("vfio-pci".into()), None],
        "the bridge and the sharer off their drivers, the member on vfio-pci"
    );
    let records = bed.state().claims().unwrap();
    let unbound: Vec<String> = records
        .iter()
        .flat_map(|r| r.unbound.iter().map(|u| u.address.to_string()))
        .collect();
    assert_eq!(
        unbound,
        [BRIDGE, SHARER],
        "the record keeps what to bind back"
    );
    bed.release(g).unwrap();
    assert_eq!(drivers(&bed), before);
}

#[test]
fn on_arm_a_kill_at_any_write_of_the_claim_is_undone_with_the_unbound_devices_back() {
    let probe = arm64();
    let g = group_of(&probe, E1000);
    probe.claim(g, false).unwrap();
    let writes = probe.kernel.writes().len();
    for n in 1..=writes {
        let bed = arm64();
        let before = drivers(&bed);
        bed.claim_killed_at_write(g, n);
        let out = claim::replay(&bed.kernel, &bed.state()).unwrap();
        assert_eq!(out.len(), 1, "write {n}");
        assert_eq!(drivers(&bed), before, "write {n}");
        assert_eq!(bed.journals(), 0);
    }
}

#[test]
fn on_arm_a_second_claim_keeps_the_drivers_the_first_one_recorded() {
    let bed = arm64();
    let g = group_of(&bed, E1000);
    let before = drivers(&bed);
    bed.claim(g, false).unwrap();
    // Someone binds shpchp again (a rescan, by hand): the group is not viable until a claim
    // takes it off once more, and the members' drivers are still those of the first claim.
    use passage_helper::claim::Kernel;
    bed.kernel
        .write(
            std::path::Path::new("sys/bus/pci/drivers/shpchp/bind"),
            BRIDGE,
        )
        .unwrap();
    assert_eq!(bed.driver(BRIDGE).as_deref(), Some("shpchp"));
    assert!(bed.claim(g, false).unwrap().changed);
    assert_eq!(bed.driver(BRIDGE), None);
    bed.release(g).unwrap();
    assert_eq!(drivers(&bed), before, "released to e1000, not to vfio-pci");
}

#[test]
fn on_arm_a_record_dropped_after_its_members_went_back_gives_the_unbound_devices_back() {
    let bed = arm64();
    let g = group_of(&bed, E1000);
    let before = drivers(&bed);
    bed.claim(g, false).unwrap();
    // The member goes back to e1000 without Passage (a managed libvirt detach, by hand).
    use passage_helper::claim::Kernel;
    let w = |p: &str, v: &str| {
        bed.kernel.write(std::path::Path::new(p), v).unwrap();
    };
    w(
        &format!("sys/bus/pci/devices/{E1000}/driver_override"),
        "\n",
    );
    w(&format!("sys/bus/pci/devices/{E1000}/driver/unbind"), E1000);
    w("sys/bus/pci/drivers/e1000/bind", E1000);
    assert_eq!(bed.driver(E1000).as_deref(), Some("e1000"));
    let said = claim::reconcile(&bed.host(), &bed.state(), &bed.kernel).unwrap();
    assert!(said.iter().any(|l| l.contains("no longer")), "{said:?}");
    assert_eq!(drivers(&bed), before, "shpchp and 8139cp are bound again");
}

#[test]
fn on_arm_a_second_claim_killed_at_any_write_gives_every_device_back_to_its_host_driver() {
    use passage_helper::claim::Kernel;
    let rebind = |bed: &Bed| {
        bed.kernel
            .write(
                std::path::Path::new("sys/bus/pci/drivers/shpchp/bind"),
                BRIDGE,
            )
            .unwrap();
    };
    let probe = arm64();
    let g = group_of(&probe, E1000);
    probe.claim(g, false).unwrap();
    rebind(&probe);
    let from = probe.kernel.writes().len();
    probe.claim(g, false).unwrap();
    let writes = probe.kernel.writes().len() - from;
    assert!(writes > 0);
    for n in 1..=writes {
        let bed = arm64();
        let before = drivers(&bed);
        bed.claim(g, false).unwrap();
        rebind(&bed);
        let done = bed.kernel.writes().len();
        bed.claim_killed_at_write(g, done + n);
        claim::replay(&bed.kernel, &bed.state()).unwrap();
        // The journal carried the first claim's drivers: the group went back to the host, not
        // to vfio-pci with its drivers forgotten.
        assert_eq!(drivers(&bed), before, "write {n}");
        assert!(bed.state().claims().unwrap().is_empty(), "write {n}");
    }
}

/// The demo workstation with the RTX 3080's BAR 1 grown to 8 GiB by its host driver
/// (resizable from 256 MiB to 8 GiB), and 256 MiB chosen for claims.
fn rebar_bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = MachineSpec::from_json(passage_core::demo::DEMO_HOST).unwrap();
    let gpu = spec.devices.iter_mut().find(|d| d.bdf == GPU).unwrap();
    for b in gpu.bars.iter_mut().filter(|b| b.0 == 1) {
        b.1 = 8 << 30;
    }
    gpu.resizable_bars = vec![(1, "3f00".into())];
    spec.write_tree(dir.path()).unwrap();
    let bed = Bed::on(dir);
    passage_helper::rebar::set(
        bed.dir.path(),
        &bed.state(),
        &bed.host(),
        GPU.parse().unwrap(),
        1,
        256,
    )
    .unwrap();
    bed
}

fn bar1_mib(bed: &Bed) -> u64 {
    let h = bed.host();
    let d = &h.devices[&GPU.parse::<PciAddress>().unwrap()];
    d.bars.iter().find(|b| b.index == 1).unwrap().size >> 20
}

/// A chosen BAR size is written while the card is off nvidia and before vfio-pci probes it;
/// release writes the size it had back before nvidia binds it again.
#[test]
fn a_chosen_bar_size_is_set_between_unbind_and_probe_and_given_back_before_the_host_driver() {
    let bed = rebar_bed();
    assert_eq!(bar1_mib(&bed), 8192);
    let done = bed.claim(19, false).unwrap();
    assert!(done.steps.iter().any(|s| matches!(
        s,
        claim::Step::ResizeBar {
            bar: 1,
            size: 8,
            ..
        }
    )));
    assert_eq!(bar1_mib(&bed), 256);
    assert_eq!(bed.driver(GPU).as_deref(), Some("vfio-pci"));
    let w = bed.writes_to(GPU, 0);
    let at = |needle: &str| {
        w.iter()
            .position(|(p, v)| p.ends_with(needle) || v == needle)
            .unwrap_or_else(|| panic!("no write of {needle}: {w:?}"))
    };
    let (unbind, resize, probe) = (
        at("driver/unbind"),
        at("resource1_resize"),
        at("drivers_probe"),
    );
    assert!(unbind < resize && resize < probe, "{w:?}");
    assert_eq!(w[resize].1, "8");
    // Release: the size it had (8 GiB: 13), written before nvidia has it.
    let from = bed.kernel.writes().len();
    bed.release(19).unwrap();
    assert_eq!(bar1_mib(&bed), 8192);
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    let w = bed.writes_to(GPU, from);
    let resize = w
        .iter()
        .position(|(p, v)| p.ends_with("resource1_resize") && v == "13")
        .unwrap_or_else(|| panic!("no resize back: {w:?}"));
    let bind = w
        .iter()
        .position(|(p, _)| p.ends_with("drivers/nvidia/bind"))
        .unwrap();
    assert!(resize < bind, "{w:?}");
    // Forgotten: the next claim leaves the BAR as it is.
    passage_helper::rebar::set(
        bed.dir.path(),
        &bed.state(),
        &bed.host(),
        GPU.parse().unwrap(),
        1,
        0,
    )
    .unwrap();
    bed.claim(19, false).unwrap();
    assert_eq!(bar1_mib(&bed), 8192);
}

/// A kill at any write of such a claim: replay gives every member its driver and the BAR its
/// size back.
#[test]
fn a_kill_at_any_write_of_a_resizing_claim_gives_the_bar_its_size_back() {
    let total = {
        let bed = rebar_bed();
        let before = bed.kernel.writes().len();
        bed.claim(19, false).unwrap();
        bed.kernel.writes().len() - before
    };
    for at in 1..=total {
        let bed = rebar_bed();
        let base = bed.kernel.writes().len();
        bed.claim_killed_at_write(19, base + at);
        claim::replay(&bed.kernel, &bed.state()).unwrap();
        assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"), "killed at {at}");
        assert_eq!(
            bed.driver(AUDIO).as_deref(),
            Some("snd_hda_intel"),
            "killed at {at}"
        );
        assert_eq!(
            bar1_mib(&bed),
            8192,
            "killed at write {at}: the BAR kept the guest's size"
        );
        assert_eq!(bed.journals(), 0);
    }
}

/// The kernel refuses the size (no room behind the bridge, or a size the card no longer
/// offers): the claim fails saying so, and every member is back as it was.
#[test]
fn a_size_the_kernel_refuses_fails_the_claim_and_puts_everything_back() {
    let bed = rebar_bed();
    let h = bed.host();
    let dir = bed
        .dir
        .path()
        .join(&h.devices[&GPU.parse::<PciAddress>().unwrap()].sysfs_path);
    // The card now offers 1 GiB and up only (256 MiB is gone).
    std::fs::write(dir.join("resource1_resize"), "0000000000003c00\n").unwrap();
    let e = bed.claim(19, false).unwrap_err().to_string();
    assert!(
        e.contains("did not resize BAR 1") && e.contains("256 MiB"),
        "{e}"
    );
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bed.driver(AUDIO).as_deref(), Some("snd_hda_intel"));
    assert_eq!(bar1_mib(&bed), 8192);
    // What a person may choose is checked against what the card offers, and odd choices
    // change nothing.
    let st = bed.state();
    for (bar, mib, says) in [
        (1, 300, "cannot be 300 MiB"),
        (1, 128, "cannot be 128 MiB"),
        (0, 16, "not resizable"),
        (9, 256, "BARs 0 to 5"),
    ] {
        let e = passage_helper::rebar::set(bed.dir.path(), &st, &h, GPU.parse().unwrap(), bar, mib)
            .unwrap_err();
        assert!(e.contains(says), "{bar} {mib}: {e}");
    }
    assert_eq!(passage_helper::rebar::wanted(&st).unwrap().len(), 1);
    // An unreadable list stops claims, naming the file.
    std::fs::write(bed.state_dir.path().join("bars.json"), "{not json").unwrap();
    let e = bed.claim(19, false).unwrap_err().to_string();
    assert!(e.contains("bars.json"), "{e}");
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
}

/// A repeat claim (the group's record from an earlier claim still there, a member since taken
/// off vfio-pci by hand) that resizes a BAR the earlier claim did not: the record keeps the
/// earlier drivers and gains the size to give back, so the release restores both.
#[test]
fn a_repeat_claim_that_resizes_keeps_the_size_to_give_back() {
    let bed = rebar_bed();
    let (st, gpu) = (bed.state(), GPU.parse::<PciAddress>().unwrap());
    passage_helper::rebar::set(bed.dir.path(), &st, &bed.host(), gpu, 1, 0).unwrap();
    bed.claim(19, false).unwrap();
    assert_eq!(bar1_mib(&bed), 8192);
    // By hand: the GPU off vfio-pci, then a size chosen.
    passage_helper::claim::execute(
        &bed.kernel,
        &claim::Step::Unbind {
            device: gpu,
            driver: "vfio-pci".into(),
        },
    )
    .unwrap();
    assert_eq!(bed.driver(GPU), None);
    passage_helper::rebar::set(bed.dir.path(), &st, &bed.host(), gpu, 1, 256).unwrap();
    bed.claim(19, false).unwrap();
    assert_eq!(bar1_mib(&bed), 256);
    assert_eq!(bed.driver(GPU).as_deref(), Some("vfio-pci"));
    bed.release(19).unwrap();
    assert_eq!(bed.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(
        bar1_mib(&bed),
        8192,
        "the release gave the BAR its size back"
    );
}
