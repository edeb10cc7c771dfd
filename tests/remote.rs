//! Other machines (`passagectl -H [USER@]HOST`): two helpers on two private system buses, each
//! with its own polkitd and its own copy of the demo host, reached the way `systemctl -H` reaches
//! a machine — ssh running `systemd-stdio-bridge` there. Most tests use a stand-in for ssh
//! (`tests/remote/ssh-standin`, which runs the real bridge onto the bus a host name stands
//! for); one goes through a real sshd on this machine.
//!
//! Needs root (polkitd, the policy file, sshd), as the other bus tests; a missing prerequisite
//! fails the test and says what is missing.

#[path = "common/bins.rs"]
mod bins;

#[path = "common/bus.rs"]
mod bus;

use bus::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const GPU: &str = "0000:0b:00.0";
const GPU_AUDIO: &str = "0000:0b:00.1";

fn standin() -> PathBuf {
    repo().join("tests/remote/ssh-standin")
}

/// passagectl as root with the stand-in ssh: `alpha` and `beta` are the pair's two buses;
/// any other name does not resolve.
fn ctl(pair: &Pair, log: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(pair.a.passagectl_bin());
    c.args(args)
        .env("PASSAGE_SSH", standin())
        .env(
            "PASSAGE_TEST_BUSES",
            format!(
                "alpha={} beta={}",
                pair.a.dir.path().join("bus").display(),
                pair.b.dir.path().join("bus").display()
            ),
        )
        .env("PASSAGE_TEST_SSH_LOG", log)
        .env("LC_ALL", "C.UTF-8")
        // Nothing reaches a machine except through -H.
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("PASSAGE_ROOT");
    c
}

fn run(pair: &Pair, log: &Path, args: &[&str]) -> Output {
    ctl(pair, log, args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `passagectl --root TREE ARGS`: the local reading of a machine's tree, no bus at all.
fn local(bus: &Bus, args: &[&str]) -> serde_json::Value {
    let o = Command::new(bus.passagectl_bin())
        .arg("--root")
        .arg(bus.root())
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    serde_json::from_str(&ok(&o)).unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// Waits until `-H host ARGS` prints what the local reading of `bus` prints: the helper brings
/// its model up to date just after it answers a claim.
fn same_as_local(pair: &Pair, log: &Path, host: &str, bus: &Bus, args: &[&str]) {
    let mut remote_args = vec!["-H", host];
    remote_args.extend_from_slice(args);
    let mut last = (serde_json::Value::Null, serde_json::Value::Null);
    for _ in 0..40 {
        let there = json(&run(pair, log, &remote_args));
        let here = local(bus, args);
        if there == here {
            return;
        }
        last = (there, here);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "-H {host} {args:?} differs from the local reading:\nremote: {}\nlocal: {}",
        last.0, last.1
    );
}

#[test]
fn a_listing_through_h_is_the_local_reading_of_that_machine_and_a_machine_down_is_one_line() {
    let pair = Bus::start_pair();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("ssh.log");

    // A claim on beta, through beta's helper, changes beta's devices and nothing of alpha's.
    let claimed = ok(&run(&pair, &log, &["-H", "beta", "claim", "19"]));
    assert!(claimed.contains("Group 19 is now on vfio-pci"), "{claimed}");
    assert_eq!(pair.b.driver(GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(pair.b.driver(GPU_AUDIO).as_deref(), Some("vfio-pci"));
    assert_ne!(pair.a.driver(GPU).as_deref(), Some("vfio-pci"));

    // Each machine's listing and explanation through -H are its own local reading.
    for (name, bus) in [("alpha", &pair.a), ("beta", &pair.b)] {
        same_as_local(&pair, &log, name, bus, &["list", "--json"]);
        same_as_local(&pair, &log, name, bus, &["explain", "19", "--json"]);
        same_as_local(&pair, &log, name, bus, &["explain", GPU, "--json"]);
    }
    // The two differ where the claim was made.
    assert_ne!(
        local(&pair.a, &["list", "--json"]),
        local(&pair.b, &["list", "--json"])
    );

    // Status and verify ask that machine's helper.
    let status = json(&run(&pair, &log, &["-H", "beta", "status", "--json"]));
    assert_eq!(status["claims"][0]["group"], 19, "{status}");
    let status = json(&run(&pair, &log, &["-H", "alpha", "status", "--json"]));
    assert_eq!(status["claims"], serde_json::json!([]), "{status}");

    // ssh was given what systemctl -H gives it.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls
            .lines()
            .all(|l| l.starts_with("-xT -- ") && l.ends_with(" systemd-stdio-bridge")),
        "{calls}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l == "-xT -- beta systemd-stdio-bridge"),
        "{calls}"
    );

    // A machine that cannot be reached: exit 2 and one line naming it with ssh's reason.
    let down = run(&pair, &log, &["-H", "gamma", "list", "--json"]);
    assert_eq!(down.status.code(), Some(2));
    assert!(down.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&down.stderr),
        "passagectl: gamma: ssh: Could not resolve hostname gamma: Name or service not known\n"
    );
    // … and the others are as they were.
    same_as_local(&pair, &log, "alpha", &pair.a, &["list", "--json"]);

    // What cannot work on another machine says so, and what is not a host is refused before
    // ssh runs.
    let calls_before = std::fs::read_to_string(&log).unwrap();
    for (args, says) in [
        (
            &["-H", "alpha", "doctor"][..],
            "cannot be used with -H alpha",
        ),
        (&["-H", "alpha", "record", "/tmp/x"][..], "run it on alpha"),
        (
            &["-H", "alpha", "-H", "beta", "list"][..],
            "more than one is for “cluster export”",
        ),
        (
            &["--host=-oProxyCommand=sh", "list"][..],
            "is not a host to reach over SSH",
        ),
        (
            &["-H", "alpha", "--root", "/", "list"][..],
            "cannot be used with",
        ),
    ] {
        let o = run(&pair, &log, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), calls_before);
}

#[test]
fn monitor_through_h_shows_another_machines_claim_as_it_happens() {
    let pair = Bus::start_pair();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("ssh.log");
    let mut watching = ctl(
        &pair,
        &log,
        &["-H", "alpha", "monitor", "--max-events", "2"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // A lost signal must fail the test, not hang it: the watcher is stopped after 60 s.
    let pid = watching.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new("kill").arg(&pid).status();
    });
    let mut out = BufReader::new(watching.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.contains("the Passage helper on alpha"), "{header:?}");
    ok(&run(&pair, &log, &["-H", "alpha", "claim", "19"]));
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l);
    }
    let status = watching.wait().unwrap();
    assert!(status.success(), "{lines:?}");
    for (l, a) in lines.iter().zip([GPU, GPU_AUDIO]) {
        assert!(l.starts_with("bind"), "{l}");
        assert!(l.contains(a) && l.contains("→ vfio-pci"), "{l}");
        assert!(l.contains("group 19"), "{l}");
    }
    // beta saw nothing of it.
    assert_ne!(pair.b.driver(GPU).as_deref(), Some("vfio-pci"));
}

#[test]
fn a_remote_user_that_polkit_would_ask_for_a_password_is_told_so_and_the_documented_rule_lets_them_claim(
) {
    let pair = Bus::start_pair();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("ssh.log");
    // nobody@beta: the bridge runs as nobody there, as an ordinary user's ssh session would.
    let list = run(&pair, &log, &["-H", "nobody@beta", "list", "--json"]);
    assert_eq!(json(&list), local(&pair.b, &["list", "--json"]));
    let refused = run(&pair, &log, &["-H", "nobody@beta", "claim", "19"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("passagectl: nobody@beta: not authorized without a password, and nobody could be asked for one over SSH")
            && err.contains("root@beta"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_ne!(pair.b.driver(GPU).as_deref(), Some("vfio-pci"));

    // The rule docs/REMOTE.md gives an administrators' group, with nobody's group in it.
    let rule = std::fs::read_to_string(repo().join("data/polkit/passage-admins.rules.example"))
        .unwrap()
        .replace("\"passage-admins\"", "\"nogroup\"");
    std::fs::write(RULE, rule).unwrap();
    let mut claimed = None;
    for _ in 0..40 {
        // polkitd reloads rules when the directory changes; give it a moment.
        let o = run(&pair, &log, &["-H", "nobody@beta", "claim", "19"]);
        if o.status.success() {
            claimed = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let claimed = claimed.expect("the administrators' rule never let nobody claim");
    assert!(ok(&claimed).contains("now on vfio-pci"));
    assert_eq!(pair.b.driver(GPU).as_deref(), Some("vfio-pci"));
    assert_ne!(pair.a.driver(GPU).as_deref(), Some("vfio-pci"));
}

#[test]
fn a_cluster_export_reads_each_machine_and_names_the_one_it_could_not_reach() {
    let pair = Bus::start_pair();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("ssh.log");
    for host in ["alpha", "beta"] {
        ok(&run(&pair, &log, &["-H", host, "claim", "19"]));
    }
    let args = |extra: &[&'static str]| {
        let mut v = vec!["-H", "alpha", "-H", "beta"];
        v.extend_from_slice(extra);
        v.extend_from_slice(&["cluster", "export", "--format", "proxmox-mapping"]);
        v
    };
    let text = ok(&run(&pair, &log, &args(&[])));
    let gpu: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("--map ") && l.contains("id=10de:2206"))
        .collect();
    assert_eq!(gpu.len(), 2, "{text}");
    assert!(gpu[0].contains("node=alpha,path=0000:0b:00,"), "{text}");
    assert!(gpu[1].contains("node=beta,path=0000:0b:00,"), "{text}");

    // gamma is down: alpha and beta are exported all the same, gamma is one line, exit 1.
    let o = run(&pair, &log, &args(&["-H", "gamma"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let about_gamma: Vec<&str> = err.lines().filter(|l| l.contains("gamma")).collect();
    assert_eq!(
        about_gamma,
        ["passagectl: gamma: ssh: Could not resolve hostname gamma: Name or service not known"],
        "{err}"
    );
    // The header names the machines read; the rest is the same export.
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);

    // The same export from recordings of the two machines, named by their directories.
    let recs = tempfile::tempdir().unwrap();
    for (name, bus) in [("alpha", &pair.a), ("beta", &pair.b)] {
        let o = Command::new("cp")
            .arg("-a")
            .arg(bus.root())
            .arg(recs.path().join(name))
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    let from_recordings = Command::new(pair.a.passagectl_bin())
        .arg("--root")
        .arg(recs.path().join("alpha"))
        .arg("--root")
        .arg(recs.path().join("beta"))
        .args(["cluster", "export", "--format", "proxmox-mapping"])
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert_eq!(ok(&from_recordings), text);
}

/// Runs `sshd` on a free port of 127.0.0.1, letting in one key whose sessions run
/// systemd-stdio-bridge onto `socket` (as the machine's own system bus would be).
struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start(socket: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "sshd is not installed (apt-get install openssh-server): the real-SSH test cannot run"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (key, kind) in [("host_key", "ed25519"), ("client_key", "ed25519")] {
            let o = Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-t", kind, "-f"])
                .arg(d.join(key))
                .output()
                .expect("ssh-keygen");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let public = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        std::fs::write(
            d.join("authorized_keys"),
            format!(
                "command=\"systemd-stdio-bridge --bus-path=unix:path={}\",no-pty,no-port-forwarding {public}",
                socket.display()
            ),
        )
        .unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "sshd on 127.0.0.1",
        );
        // The ssh passagectl runs: the real client, with this test's key and port.
        std::fs::write(
            d.join("ssh"),
            format!(
                "#!/bin/sh\nexec ssh -F none -p {port} -i {key} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \"$@\"\n",
                key = d.join("client_key").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            d.join("ssh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Sshd { child, dir, port }
    }
}

#[test]
fn through_a_real_sshd_the_listing_is_the_machines_own_and_a_closed_port_is_one_line() {
    let pair = Bus::start_pair();
    let sshd = Sshd::start(&pair.b.dir.path().join("bus"));
    let remote = |args: &[&str]| {
        Command::new(pair.a.passagectl_bin())
            .args(["-H", "root@127.0.0.1"])
            .args(args)
            .env("PASSAGE_SSH", sshd.dir.path().join("ssh"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap()
    };
    assert_eq!(
        json(&remote(&["list", "--json"])),
        local(&pair.b, &["list", "--json"])
    );
    let claimed = ok(&remote(&["claim", "19"]));
    assert!(claimed.contains("now on vfio-pci"), "{claimed}");
    assert_eq!(pair.b.driver(GPU).as_deref(), Some("vfio-pci"));
    assert_ne!(pair.a.driver(GPU).as_deref(), Some("vfio-pci"));

    // Nothing listens on the port any more: ssh's own reason, on one line.
    let port = sshd.port;
    drop(sshd);
    let o = Command::new(pair.a.passagectl_bin())
        .args(["-H", "root@127.0.0.1", "list"])
        .env("PASSAGE_SSH", {
            let d = tempfile::tempdir().unwrap().keep();
            let s = d.join("ssh");
            std::fs::write(
                &s,
                format!("#!/bin/sh\nexec ssh -F none -p {port} -o BatchMode=yes \"$@\"\n"),
            )
            .unwrap();
            std::fs::set_permissions(&s, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            s
        })
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("passagectl: root@127.0.0.1: ssh: connect to host 127.0.0.1 port {port}: Connection refused\n")
    );
}
