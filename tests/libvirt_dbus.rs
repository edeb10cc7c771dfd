//! A real libvirt over D-Bus: libvirt-dbus on a private session bus, serving libvirt's
//! built-in `test:///default` driver at `/org/libvirt/Test` (no daemon, nothing on this
//! machine changes). Passage lists its domains, defines an exported domain and reads back the
//! same hostdevs, and writes a plan into a domain that already has devices of its own.

mod common;
use common::*;
use passage_core::export::{self, Format};
use passage_core::synth::MachineSpec;
use passage_core::{demo, plan};
use passage_dbus::libvirt::{DomainState, Libvirt, LibvirtError, TEST_PATH};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Session {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Session {
    fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus").display())
    }

    /// A private session bus, with libvirt-dbus on it when `with_libvirt`.
    fn start(with_libvirt: bool) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session {
            dir,
            children: Vec::new(),
        };
        let conf = s.dir.path().join("session.conf");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\
                 <busconfig><type>session</type><listen>{}</listen>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
                s.address()
            ),
        )
        .unwrap();
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (./dev test installs dbus-daemon)");
        s.children.push(daemon);
        wait_for(|| s.dir.path().join("bus").exists(), "the session bus");
        if with_libvirt {
            let lv = Command::new("libvirt-dbus")
                .arg("--session")
                .env("DBUS_SESSION_BUS_ADDRESS", s.address())
                .env("XDG_RUNTIME_DIR", s.dir.path())
                .env("HOME", s.dir.path())
                .stderr(Stdio::null())
                .spawn()
                .expect("libvirt-dbus (./dev test installs the libvirt-dbus package)");
            s.children.push(lv);
        }
        s
    }

    fn libvirt(&self, rt: &tokio::runtime::Runtime) -> Libvirt {
        let addr = self.address();
        let conn = rt
            .block_on(async {
                zbus::connection::Builder::address(addr.as_str())
                    .build()
                    .await
            })
            .expect("connect to the session bus");
        Libvirt::on(conn, TEST_PATH)
    }
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// libvirt-dbus takes a moment to own its name: retry the first call until it answers.
fn domains(
    rt: &tokio::runtime::Runtime,
    lv: &Libvirt,
) -> Vec<passage_dbus::libvirt::LibvirtDomain> {
    let t = Instant::now();
    loop {
        match rt.block_on(lv.domains()) {
            Ok(d) => return d,
            Err(LibvirtError::Unavailable(_)) if t.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("listing domains: {e}"),
        }
    }
}

#[test]
fn an_exported_domain_defined_through_libvirt_dbus_reads_back_with_the_same_hostdevs() {
    let s = Session::start(true);
    let rt = rt();
    let lv = s.libvirt(&rt);
    let before = domains(&rt, &lv);
    let test = before
        .iter()
        .find(|d| d.name == "test")
        .expect("test:///default has “test”");
    assert_eq!(test.state, DomainState::Running);
    assert!(test.hostdevs.is_empty());

    let b = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap());
    let p = demo::plan().unwrap();
    let opts = export::Options {
        domain_type: "test".into(),
        ..Default::default()
    };
    let e = export::export(&p, &b.host, Some("win11"), Format::LibvirtDomain, &opts).unwrap();
    let defined = rt.block_on(lv.define(&e.text)).unwrap();
    assert_eq!(defined.name, "win11");
    assert_eq!(defined.state, DomainState::ShutOff);
    assert_eq!(defined.lifecycle, Some(plan::Lifecycle::OnStart));
    let want = passage_core::export::libvirt::hostdevs(&e.text).unwrap();
    assert_eq!(want.len(), 3);
    assert_eq!(defined.hostdevs, want, "libvirt stored other hostdevs");
    // Listed again from scratch, it holds groups 19 and 20.
    let again = domains(&rt, &lv);
    let w = again.iter().find(|d| d.name == "win11").unwrap();
    assert_eq!(
        w.groups(&b.host),
        vec![passage_core::GroupId(19), passage_core::GroupId(20)]
    );
}

/// A q35 domain of someone else's making: a disk behind root port 1, a NIC behind port 2.
const DESK: &str = "<domain type='test'><name>desk</name><memory unit='MiB'>1024</memory>\
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os><devices>\
  <controller type='pci' index='0' model='pcie-root'/>\
  <controller type='pci' index='1' model='pcie-root-port'/>\
  <controller type='pci' index='2' model='pcie-root-port'/>\
  <disk type='file' device='disk'><source file='/guest/desk.img'/><target dev='vda' bus='virtio'/>\
  <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></disk>\
  <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/>\
  <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></interface>\
  </devices></domain>";

#[test]
fn a_plan_written_into_a_domain_keeps_its_own_devices_and_avoids_their_slots() {
    let s = Session::start(true);
    let rt = rt();
    let lv = s.libvirt(&rt);
    domains(&rt, &lv);
    rt.block_on(lv.define(DESK)).unwrap();

    let b = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap());
    // The demo's win11 groups, for the "desk" domain.
    let mut p = demo::plan().unwrap();
    p.guests[0].name = "desk".into();
    let after = rt
        .block_on(lv.apply(p.guest("desk").unwrap(), &b.host))
        .unwrap();
    assert!(after.xml.contains("/guest/desk.img"), "the disk is gone");
    assert!(after.xml.contains("52:54:00:12:34:56"), "the NIC is gone");
    assert_eq!(after.hostdevs.len(), 3, "{}", after.xml);
    for h in &after.hostdevs {
        let g = h.guest.expect("a guest address");
        assert!(
            g.bus >= 3,
            "{h:?} lands behind the disk's or the NIC's port"
        );
    }
    let at = |src: &str| {
        after
            .hostdevs
            .iter()
            .find(|h| h.source.to_string() == src)
            .and_then(|h| h.guest)
            .unwrap()
    };
    let (g, a, u) = (at("0000:0b:00.0"), at("0000:0b:00.1"), at("0000:0c:00.0"));
    assert_eq!((g.bus, g.slot, g.function), (a.bus, a.slot, 0));
    assert_eq!(a.function, 1);
    assert_ne!(g.bus, u.bus);
    // Their ports were added after the domain's own.
    for bus in [g.bus, u.bus] {
        assert!(
            after
                .xml
                .contains(&format!("index='{bus}' model='pcie-root-port'")),
            "no root port {bus}: {}",
            after.xml
        );
    }
    assert_eq!(after.lifecycle, Some(plan::Lifecycle::OnStart));

    // Applying again after taking the USB card out replaces Passage's own hostdevs.
    let mut p2 = p.clone();
    p2.unassign(passage_core::GroupId(20)).unwrap();
    let again = rt
        .block_on(lv.apply(p2.guest("desk").unwrap(), &b.host))
        .unwrap();
    let sources: Vec<String> = again
        .hostdevs
        .iter()
        .map(|h| h.source.to_string())
        .collect();
    assert_eq!(sources, vec!["0000:0b:00.0", "0000:0b:00.1"]);
    assert!(again.xml.contains("/guest/desk.img"));
    assert_eq!(
        again
            .xml
            .matches(passage_core::export::libvirt::METADATA_NS)
            .count(),
        1,
        "one Passage metadata element: {}",
        again.xml
    );
}

#[test]
fn a_flat_bus_domain_gets_the_devices_in_free_slots_of_bus_0() {
    let s = Session::start(true);
    let rt = rt();
    let lv = s.libvirt(&rt);
    let before = domains(&rt, &lv);
    // test:///default's own "test" domain: i440fx-style (no machine), NIC at 00:01, balloon
    // at 00:02, disk on bus 1.
    assert!(before.iter().any(|d| d.name == "test"));
    let b = build(&MachineSpec::from_json(demo::DEMO_HOST).unwrap());
    let mut p = demo::plan().unwrap();
    p.guests[0].name = "test".into();
    let after = rt
        .block_on(lv.apply(p.guest("test").unwrap(), &b.host))
        .unwrap();
    assert!(after.xml.contains("/guest/diskimage1"));
    let slots: Vec<(u8, u8, u8)> = after
        .hostdevs
        .iter()
        .map(|h| h.guest.map(|g| (g.bus, g.slot, g.function)).unwrap())
        .collect();
    assert_eq!(slots, vec![(0, 0x10, 0), (0, 0x10, 1), (0, 0x11, 0)]);
}

#[test]
fn without_libvirt_dbus_the_answer_is_a_sentence_not_a_failure_to_start() {
    let s = Session::start(false);
    let rt = rt();
    let lv = s.libvirt(&rt);
    match rt.block_on(lv.domains()) {
        Err(LibvirtError::Unavailable(why)) => {
            assert!(why.contains("libvirt-dbus"), "{why}");
            assert!(why.contains("Local guest profiles still work"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
