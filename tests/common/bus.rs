//! The real helper on a private dbus-daemon started with a system-bus configuration (the
//! project's bus policy included as a package would install it), with the real polkitd on that
//! bus, driving a fake kernel over the demo host's tree (`--root`). Shared by the helper's bus
//! tests and the app's Apply test; include it with `#[path = "common/bus.rs"] mod bus;`.
//!
//! Needs root (to run polkitd and install the policy file where polkitd reads it). CI runs as
//! root; elsewhere `Bus::start` says why it did not run and returns None.
#![allow(dead_code)]

use passage_dbus::HelperProxy;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const POLICY: &str = "/usr/share/polkit-1/actions/io.github.passage.policy";
pub const RULE: &str = "/etc/polkit-1/rules.d/49-passage-test.rules";

/// One bus at a time: the policy file and the test rule are shared places on this machine.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Bus {
    /// Held by the one bus (or the first of a pair) for as long as it runs.
    _one: Option<std::sync::MutexGuard<'static, ()>>,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
    installed_policy: bool,
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(RULE);
        if self.installed_policy {
            let _ = std::fs::remove_file(POLICY);
        }
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Two buses; `b` is stopped first, so `a`'s hold on the machine's shared places outlives it.
pub struct Pair {
    pub b: Bus,
    pub a: Bus,
}

impl Bus {
    pub fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus").display())
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A missing prerequisite (root, polkitd) fails the test with what is missing.
    pub fn start() -> Bus {
        Self::start_with(&[])
    }

    /// [`Bus::start`] with more arguments for the helper (`--auth-timeout 4`).
    pub fn start_with(helper_args: &[&str]) -> Bus {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        Self::start_inner(Some(one), helper_args, &|_| {}, &|_| {})
    }

    /// [`Bus::start`] with the demo host's tree changed by `prepare` before the helper reads it.
    pub fn start_prepared(prepare: &dyn Fn(&Path)) -> Bus {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        Self::start_inner(Some(one), &[], &|_| {}, prepare)
    }

    /// [`Bus::start_prepared`] with the demo host's description changed by `spec` before its
    /// tree is written (a device given a driver, say).
    pub fn start_spec(
        spec: &dyn Fn(&mut passage_core::synth::MachineSpec),
        prepare: &dyn Fn(&Path),
    ) -> Bus {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        Self::start_inner(Some(one), &[], spec, prepare)
    }

    /// Two machines: two private system buses, each with its own polkitd and helper over its
    /// own copy of the demo host.
    pub fn start_pair() -> Pair {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let a = Self::start_inner(Some(one), &[], &|_| {}, &|_| {});
        let b = Self::start_inner(None, &[], &|_| {}, &|_| {});
        Pair { b, a }
    }

    fn start_inner(
        one: Option<std::sync::MutexGuard<'static, ()>>,
        helper_args: &[&str],
        spec: &dyn Fn(&mut passage_core::synth::MachineSpec),
        prepare: &dyn Fn(&Path),
    ) -> Bus {
        // A missing prerequisite fails the test and says so; it never passes unseen.
        assert!(
            rustix::process::geteuid().is_root(),
            "the helper bus test needs root (to run polkitd and install the policy where it reads it); run it as root, as CI does"
        );
        let polkitd = ["/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("polkitd is not installed (apt-get install polkitd): the helper's authorization cannot be tested");
        let dir = tempfile::tempdir().unwrap();
        // The unprivileged caller (nobody) must reach the socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include ignore_missing="yes">/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
  <include>{ours}</include>
</busconfig>"#,
            bus = dir.path().join("bus").display(),
            ours = repo()
                .join("data/dbus/io.github.passage.Helper1.conf")
                .display()
        );
        std::fs::write(dir.path().join("system.conf"), conf).unwrap();
        let mut bus = Bus {
            _one: one,
            dir,
            children: Vec::new(),
            installed_policy: false,
        };
        let daemon = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                bus.dir.path().join("system.conf").display()
            ))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        bus.children.push(daemon);
        wait_for(
            || bus.dir.path().join("bus").exists(),
            "the private bus socket",
        );

        // The project's policy, where polkitd reads actions (as a package would install it).
        let ours = std::fs::read(repo().join("data/polkit/io.github.passage.policy")).unwrap();
        if std::fs::read(POLICY).ok().as_deref() != Some(&ours[..]) {
            std::fs::write(POLICY, &ours).unwrap();
            bus.installed_policy = true;
        }
        let _ = std::fs::remove_file(RULE);
        let pk = Command::new(polkitd)
            .arg("--no-debug")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("polkitd");
        bus.children.push(pk);
        wait_for(
            || name_has_owner(&bus, "org.freedesktop.PolicyKit1"),
            "polkitd on the private bus",
        );

        // The demo host as a tree the helper's fake kernel drives.
        let mut machine =
            passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST).unwrap();
        spec(&mut machine);
        machine.write_tree(&bus.root()).unwrap();
        prepare(&bus.root());
        let helper = Command::new(crate::bins::bin("passage-helper"))
            .arg("--root")
            .arg(bus.root())
            .arg("--state-dir")
            .arg(bus.state())
            .args(helper_args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .env("PASSAGE_LOG", "warn")
            .spawn()
            .expect("passage-helper");
        bus.children.push(helper);
        wait_for(
            || name_has_owner(&bus, "io.github.passage.Helper1"),
            "passage-helper on the private bus",
        );
        bus
    }

    /// A copy of passagectl that nobody may run: the checkout may sit where nobody cannot go.
    pub fn passagectl_bin(&self) -> PathBuf {
        let bin = self.dir.path().join("passagectl");
        if !bin.exists() {
            std::fs::copy(crate::bins::bin("passagectl"), &bin).unwrap();
            std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        bin
    }

    /// `passagectl ARGS` as root or as nobody, talking to the helper on this bus.
    pub fn passagectl(&self, as_nobody: bool, args: &[&str]) -> Output {
        let bin = self.passagectl_bin();
        let bin = bin.to_str().unwrap();
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
            c
        } else {
            Command::new(bin)
        };
        c.args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.address())
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap()
    }

    pub fn driver(&self, a: &str) -> Option<String> {
        std::fs::read_link(
            self.root()
                .join("sys/bus/pci/devices")
                .join(a)
                .join("driver"),
        )
        .ok()
        .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    pub fn proxy(&self) -> (tokio::runtime::Runtime, HelperProxy<'static>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = self.address();
        let p = rt.block_on(async move {
            let conn = zbus::connection::Builder::address(addr.as_str())
                .build()
                .await
                .unwrap();
            HelperProxy::new(&conn).await.unwrap()
        });
        (rt, p)
    }
}

pub fn name_has_owner(bus: &Bus, name: &str) -> bool {
    Command::new("dbus-send")
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &format!("string:{name}"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
        .unwrap_or(false)
}

pub fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up within 20 s");
}

/// The demo workstation's RTX 3080 (0000:0b:00.0) with its BAR 1 grown to 8 GiB by its host
/// driver and resizable from 256 MiB to 8 GiB (the BAR-size tests' machine).
pub fn resizable_gpu_bar(m: &mut passage_core::synth::MachineSpec) {
    let gpu = m
        .devices
        .iter_mut()
        .find(|d| d.bdf == "0000:0b:00.0")
        .unwrap();
    for bar in gpu.bars.iter_mut().filter(|b| b.0 == 1) {
        bar.1 = 8 << 30;
    }
    gpu.resizable_bars = vec![(1, "3f00".into())];
}
