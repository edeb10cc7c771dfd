//! The real helper on a private dbus-daemon started with a system-bus configuration (the
//! project's bus policy included as a package would install it), with the real polkitd on that
//! bus judging every mutation by the project's polkit policy. The helper drives a fake kernel
//! over the demo host's tree (`--root`), so nothing on this machine's PCI bus changes.
//!
//! Needs root (to run polkitd and install the policy file where polkitd reads it). CI runs as
//! root; elsewhere each test fails and says what is missing.

#[path = "common/bins.rs"]
mod bins;

#[path = "common/bus.rs"]
mod bus;

use bus::*;
use passage_dbus::HelperError;
use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use zbus::Variant;

fn err_name(e: &HelperError) -> String {
    match e {
        HelperError::ZBus(zbus::Error::MethodError(n, _, _)) => n.to_string(),
        HelperError::ZBus(z) => format!("zbus: {z}"),
        HelperError::NotFound(_) => "NotFound".into(),
        HelperError::InvalidArgs(_) => "InvalidArgs".into(),
        HelperError::Busy(_) => "Busy".into(),
        HelperError::NotAuthorized(_) => "NotAuthorized".into(),
        HelperError::NotAuthorizedCanObtain(_) => "NotAuthorizedCanObtain".into(),
        HelperError::NotAuthorizedDismissed(_) => "NotAuthorizedDismissed".into(),
        HelperError::BadState(_) => "BadState".into(),
        HelperError::HostCritical(_) => "HostCritical".into(),
        HelperError::Failed(_) => "Failed".into(),
    }
}

const GPU: &str = "0000:0b:00.0";

#[test]
fn polkit_decides_every_claim_on_a_real_bus() {
    let bus = Bus::start();

    // Unauthorized: nobody, no agent to ask for a password → NotAuthorizedCanObtain (a
    // password would do, nobody could ask for it), said as such, and no write.
    let o = bus.passagectl(true, &["claim", "19"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not authorized")
            && err.contains("nobody could be asked")
            && err.contains("io.github.passage.claim"),
        "{err}"
    );
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    assert!(!bus.state().join("claims/19.json").exists());

    // verify needs /dev/vfio, which is root's: the helper answers an unprivileged caller whom
    // polkit allows (io.github.passage.verify: active local sessions by default; nobody has no
    // session, so first the refusal, then a rule that grants it).
    let o = bus.passagectl(true, &["verify", "19"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("io.github.passage.verify"), "{err}");
    std::fs::write(
        RULE,
        "polkit.addRule(function(action, subject) {\n  if (action.id == \"io.github.passage.verify\" && subject.user == \"nobody\") return polkit.Result.YES;\n});\n",
    )
    .unwrap();
    let mut o = bus.passagectl(true, &["verify", "19"]);
    for _ in 0..40 {
        // polkitd reloads rules when the directory changes; give it a moment.
        if o.status.code() != Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        o = bus.passagectl(true, &["verify", "19"]);
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("NOT usable") && out.contains("vfio-pci"),
        "{out}"
    );

    // Root is authorized by polkit itself.
    let o = bus.passagectl(false, &["claim", "19"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(bus.driver(GPU).as_deref(), Some("vfio-pci"));
    // The reply names every member with the driver the kernel reports now.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("0000:0b:00.0 → vfio-pci") && out.contains("0000:0b:00.1 → vfio-pci"),
        "{out}"
    );
    let o = bus.passagectl(false, &["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("group 19: 0000:0b:00.0, 0000:0b:00.1"));

    // Host-critical without force is refused before polkit is asked; nothing changes.
    let o = bus.passagectl(false, &["claim", "17"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needed by the host"));
    assert_eq!(bus.driver("0000:07:00.0").as_deref(), Some("r8169"));

    // A rule that grants nobody the claim action: now polkit says yes.
    std::fs::write(
        RULE,
        "polkit.addRule(function(action, subject) {\n  if (action.id == \"io.github.passage.claim\" && subject.user == \"nobody\") return polkit.Result.YES;\n});\n",
    )
    .unwrap();
    let mut released = None;
    for _ in 0..40 {
        // polkitd reloads rules when the directory changes; give it a moment.
        let o = bus.passagectl(true, &["release", "19"]);
        if o.status.success() {
            released = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(released.is_some(), "the rule never took effect");
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // Persistence is its own action: the rule does not grant it to nobody; root gets it.
    let o = bus.passagectl(true, &["persist", "19", "on"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("io.github.passage.persist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!bus.root().join(passage_helper::persist::UDEV_RULE).exists());
    let o = bus.passagectl(false, &["persist", "19", "on"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rule =
        std::fs::read_to_string(bus.root().join(passage_helper::persist::UDEV_RULE)).unwrap();
    assert!(rule.contains("KERNEL==\"0000:0b:00.0\""), "{rule}");
    let o = bus.passagectl(false, &["persist", "19", "off"]);
    assert!(o.status.success());
    assert!(!bus.root().join(passage_helper::persist::UDEV_RULE).exists());
    // The rule grants only the plain claim action, never the host-critical one.
    let o = bus.passagectl(true, &["claim", "17", "--force"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not authorized"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(bus.driver("0000:07:00.0").as_deref(), Some("r8169"));
}

#[test]
fn hostile_arguments_get_named_errors_and_change_nothing() {
    let bus = Bus::start();
    let (rt, p) = bus.proxy();
    rt.block_on(async {
        assert_eq!(p.version().await.unwrap(), passage_dbus::INTERFACE_VERSION);
        let e = p.describe("../../etc/passwd").await.unwrap_err();
        assert!(err_name(&e).ends_with("InvalidArgs"), "{e:?}");
        let e = p.describe(&"0".repeat(1 << 16)).await.unwrap_err();
        assert!(err_name(&e).ends_with("InvalidArgs"), "{e:?}");
        let e = p.describe("0000:99:00.0").await.unwrap_err();
        assert!(err_name(&e).ends_with("NotFound"), "{e:?}");
        let facts = p.describe(GPU).await.unwrap();
        assert!(
            facts.contains_key("flr") && facts.contains_key("acs"),
            "{facts:?}"
        );
        let e = p.claim(u32::MAX, HashMap::new()).await.unwrap_err();
        assert!(err_name(&e).ends_with("NotFound"), "{e:?}");
        let mut bad = HashMap::new();
        bad.insert("force", Variant::from("yes"));
        let e = p.claim(19, bad).await.unwrap_err();
        assert!(err_name(&e).ends_with("InvalidArgs"), "{e:?}");
        let mut unknown = HashMap::new();
        unknown.insert("path", Variant::from("/etc/shadow"));
        let e = p.claim(19, unknown).await.unwrap_err();
        assert!(err_name(&e).ends_with("InvalidArgs"), "{e:?}");
        let v = p.verify(19).await.unwrap();
        assert!(!v.usable);
        assert_eq!(v.code, "not-bound");
        assert!(v.devices.is_empty(), "{v:?}");
        assert_eq!(p.journal().await.unwrap(), vec![]);
    });
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    assert!(std::fs::read_dir(bus.state().join("claims"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn claim_and_release_answer_with_every_member_and_the_driver_holding_it() {
    let bus = Bus::start();
    let (rt, p) = bus.proxy();
    rt.block_on(async {
        let t = p.claim(19, HashMap::new()).await.unwrap();
        assert!(t.changed);
        let mut got: Vec<(String, String)> = t
            .devices
            .iter()
            .map(|d| (d.address.clone(), d.driver.clone()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("0000:0b:00.0".to_string(), "vfio-pci".to_string()),
                ("0000:0b:00.1".to_string(), "vfio-pci".to_string())
            ]
        );
        let held = p.claims().await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].group, 19);
        // Claiming again changes nothing and says so, with the same drivers.
        let again = p.claim(19, HashMap::new()).await.unwrap();
        assert!(!again.changed);
        assert!(again.devices.iter().all(|d| d.driver == "vfio-pci"));
        let back = p.release(19, HashMap::new()).await.unwrap();
        assert!(back.changed);
        let gpu = back.devices.iter().find(|d| d.address == GPU).unwrap();
        assert_eq!(gpu.driver, "nvidia", "{back:?}");
        assert!(p.claims().await.unwrap().is_empty());
    });
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
}

#[test]
fn the_documented_interface_is_the_one_served() {
    let bus = Bus::start();
    let o = Command::new("dbus-send")
        .args([
            &format!("--bus={}", bus.address()),
            "--print-reply=literal",
            "--dest=io.github.passage.Helper1",
            "/io/github/passage/Helper1",
            "org.freedesktop.DBus.Introspectable.Introspect",
        ])
        .output()
        .unwrap();
    let served = String::from_utf8_lossy(&o.stdout).to_string();
    let documented =
        std::fs::read_to_string(repo().join("data/io.github.passage.Helper1.xml")).unwrap();
    // Every method and argument signature served is documented, and nothing more.
    let sigs = |xml: &str| -> Vec<String> {
        let Some(at) = xml.find("<interface name=\"io.github.passage.Helper1\"") else {
            panic!("no interface in:\n{xml}")
        };
        let iface = &xml[at..];
        let iface = &iface[..iface.find("</interface>").unwrap()];
        let mut v: Vec<String> = iface
            .split('<')
            .filter(|t| {
                t.starts_with("method ") || t.starts_with("arg ") || t.starts_with("property ")
            })
            .map(|t| {
                let attr = |k: &str| {
                    t.split(&format!("{k}=\""))
                        .nth(1)
                        .map(|r| r[..r.find('"').unwrap()].to_string())
                        .unwrap_or_default()
                };
                format!(
                    "{} {} {} {}",
                    t.split_whitespace().next().unwrap(),
                    attr("name"),
                    attr("type"),
                    attr("direction")
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(sigs(&documented), sigs(&served), "served:\n{served}");
}

#[test]
fn a_password_prompt_left_open_holds_nothing_and_ends_as_dismissed() {
    // The helper gives polkit's conversation 4 seconds here (5 minutes by default).
    let bus = Bus::start_with(&["--auth-timeout", "4"]);
    // nobody asks for group 18; its agent shows the prompt and nobody types anything.
    let (caller, mut agent, screen) = with_agent(&bus, "claim 18", "C.UTF-8");
    assert!(screen.contains("Password:"), "no prompt:\n{screen}");
    // Meanwhile root (the libvirt hook, say) claims the same group at once: the open prompt
    // holds no lock.
    let t = std::time::Instant::now();
    let o = bus.passagectl(false, &["claim", "18"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "root waited for nobody's prompt"
    );
    assert_eq!(bus.driver("0000:09:00.0").as_deref(), Some("vfio-pci"));
    // The unanswered prompt ends as dismissed when the helper's time runs out.
    let out = caller.wait_with_output().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("dismissed") && err.contains("within 4 seconds"),
        "{err}"
    );
}

/// libvirt's qemu hook, as libvirtd calls it: the domain XML on stdin.
fn hook(bus: &Bus, args: &[&str], xml: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(bus.passagectl_bin())
        .args(["--root", bus.root().to_str().unwrap(), "hook-qemu"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn the_libvirt_hook_claims_a_guests_groups_when_it_starts_and_gives_them_back_when_it_stops() {
    let bus = Bus::start();
    // The demo's win11 guest as Passage writes it: on-start, GPU + audio and the USB card.
    let host =
        passage_core::scan::scan(&passage_core::HostRoot::open(bus.root()).unwrap()).unwrap();
    let plan = passage_core::demo::plan().unwrap();
    let xml = passage_core::export::export(
        &plan,
        &host,
        Some("win11"),
        passage_core::export::Format::LibvirtDomain,
        &Default::default(),
    )
    .unwrap()
    .text;
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // Calls the hook does not act on pass through, without even reading the XML.
    let o = hook(&bus, &["win11", "start", "begin", "-"], "");
    assert!(o.status.success());
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));

    let o = hook(&bus, &["win11", "prepare", "begin", "-"], &xml);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(bus.driver(GPU).as_deref(), Some("vfio-pci"));
    assert_eq!(bus.driver("0000:0b:00.1").as_deref(), Some("vfio-pci"));
    assert_eq!(bus.driver("0000:0c:00.0").as_deref(), Some("vfio-pci"));

    let o = hook(&bus, &["win11", "release", "end", "-"], &xml);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bus.driver("0000:0b:00.1").as_deref(), Some("snd_hda_intel"));

    // A domain Passage did not mark on-start is left alone.
    let kept = xml.replace("lifecycle=\"on-start\"", "lifecycle=\"kept\"");
    let o = hook(&bus, &["win11", "prepare", "begin", "-"], &kept);
    assert!(o.status.success());
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));

    // A device the host does not have stops the start with a sentence, and claims nothing.
    let wrong = xml.replace("bus=\"0x0b\"", "bus=\"0x7e\"");
    let o = hook(&bus, &["win11", "prepare", "begin", "-"], &wrong);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("0000:7e:00.0"), "{err}");
    assert_eq!(
        bus.driver("0000:0c:00.0").as_deref(),
        Some("vfio-pci"),
        "the USB card was claimed by the demo already"
    );
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // Passage's domain with broken XML: refused, nothing claimed.
    let broken = xml.replacen("</source>", "</sauce>", 1);
    let o = hook(&bus, &["win11", "prepare", "begin", "-"], &broken);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not well-formed"), "{err}");
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // Someone else's domain, or no XML at all: not ours, passes through.
    let o = hook(
        &bus,
        &["other", "prepare", "begin", "-"],
        "<domain><devices>",
    );
    assert!(o.status.success());
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
}

#[test]
fn applying_a_plan_claims_what_guests_keep_and_gives_it_back_when_a_later_step_fails() {
    let bus = Bus::start();
    let plan = bus.dir.path().join("plan.json");
    std::fs::write(&plan, passage_core::demo::DEMO_PLAN).unwrap();
    let root = bus.root();
    let apply = |args: &[&str]| {
        bus.passagectl(
            false,
            &[
                &["--root", root.to_str().unwrap(), "plan", "apply", "--plan"],
                &[plan.to_str().unwrap()][..],
                args,
            ]
            .concat(),
        )
    };
    // The router keeps its dual-port NIC, the hidden port included (the group moves whole).
    let o = apply(&["--guest", "router"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("✓ claim group 18 for router"), "{out}");
    assert!(
        out.contains("passagectl export --guest router --format qemu"),
        "{out}"
    );
    assert_eq!(bus.driver("0000:09:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(bus.driver("0000:09:00.1").as_deref(), Some("vfio-pci"));

    // win11 kept (not on-start): its groups are claimed, then writing its libvirt definition
    // fails (no libvirt-dbus on this bus) — and what this run claimed is given back.
    let o = bus.passagectl(
        false,
        &[
            "--root",
            root.to_str().unwrap(),
            "--demo",
            "plan",
            "lifecycle",
            "win11",
            "kept",
            "--plan",
            plan.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "--root and --demo do not mix");
    let o = bus.passagectl(
        false,
        &[
            "--root",
            root.to_str().unwrap(),
            "plan",
            "lifecycle",
            "win11",
            "kept",
            "--plan",
            plan.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = apply(&["--guest", "win11"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(out.contains("✓ claim group 19 for win11"), "{out}");
    assert!(
        out.contains("✗ write the devices into libvirt's definition of win11"),
        "{out}"
    );
    assert!(out.contains("libvirt-dbus"), "{out}");
    assert!(out.contains("↺ group 19 given back to the host"), "{out}");
    assert!(err.contains("was not applied"), "{err}");
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    assert_eq!(bus.driver("0000:0b:00.1").as_deref(), Some("snd_hda_intel"));
    // The USB card was on vfio-pci before this run: it stays, not "given back" to nothing.
    assert_eq!(bus.driver("0000:0c:00.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn a_claim_that_expects_other_members_is_refused_before_anything_happens() {
    let bus = Bus::start();
    let (rt, p) = bus.proxy();
    let expect = |addrs: &[&str]| {
        let a: Vec<passage_core::PciAddress> = addrs.iter().map(|s| s.parse().unwrap()).collect();
        let mut o = HashMap::new();
        o.insert("expect_devices", passage_dbus::expect_devices(&a));
        o
    };
    // Group 19 is the GPU and its audio; a caller who thinks it is only the GPU is refused.
    let e = rt
        .block_on(p.claim(19, expect(&["0000:0b:00.0"])))
        .unwrap_err();
    assert_eq!(err_name(&e), "BadState", "{e:?}");
    assert!(format!("{e:?}").contains("0000:0b:00.1"), "{e:?}");
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // Wrong types and hostile lists are InvalidArgs.
    let mut o = HashMap::new();
    o.insert("expect_devices", Variant::from("0000:0b:00.0"));
    let e = rt.block_on(p.claim(19, o)).unwrap_err();
    assert_eq!(err_name(&e), "InvalidArgs");
    let mut o = HashMap::new();
    o.insert(
        "expect_devices",
        Variant::from(vec!["0000:0b:00.0".to_string(), "../../x".to_string()]),
    );
    let e = rt.block_on(p.claim(19, o)).unwrap_err();
    assert_eq!(err_name(&e), "InvalidArgs");
    assert_eq!(bus.driver(GPU).as_deref(), Some("nvidia"));
    // The right members: claimed.
    let e = rt
        .block_on(p.claim(19, expect(&["0000:0b:00.0", "0000:0b:00.1"])))
        .map(|_| ());
    assert!(e.is_ok(), "the right members claim: {e:?}");
    assert_eq!(bus.driver(GPU).as_deref(), Some("vfio-pci"));
    let mut o = HashMap::new();
    o.insert(
        "expect_devices",
        Variant::from(vec!["../../etc".to_string()]),
    );
    let e = rt.block_on(p.release(19, o)).unwrap_err();
    assert_eq!(
        err_name(&e),
        "InvalidArgs",
        "release takes no expect_devices"
    );
}

/// Reads what a child prints until `done` says enough, or `secs` pass; returns it all.
fn read_until(
    out: impl std::io::Read + Send + 'static,
    secs: u64,
    done: impl Fn(&str) -> bool,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = out;
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while !done(&String::from_utf8_lossy(&text)) {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => text.extend(b),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// What polkit's own text agent (pkttyagent, on a pseudo-terminal) shows for `passagectl ARGS`
/// run as nobody, with the agent in locale `lang`; the person presses Ctrl+C instead of typing
/// the password, so the request is refused. Returns the agent's screen and the caller's output.
fn prompt_for(bus: &Bus, args: &str, lang: &str) -> (String, Output) {
    let (caller, mut agent, screen) = with_agent(bus, args, lang);
    // The person gives up at the password prompt: Ctrl+C, which the agent turns into a cancel.
    if let Some(mut stdin) = agent.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"\x03");
    }
    let out = caller.wait_with_output().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    (screen, out)
}

/// `passagectl ARGS` as nobody, with polkit's text agent (in locale `lang`) registered for
/// it on a pseudo-terminal: the caller, the agent, and the agent's screen once it asks for
/// the password.
fn with_agent(
    bus: &Bus,
    args: &str,
    lang: &str,
) -> (std::process::Child, std::process::Child, String) {
    let bin = bus.passagectl_bin();
    // The caller waits for its agent before asking: polkit asks the agent registered for the
    // caller's process (exec keeps its pid and start time).
    let caller = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!("sleep 3; exec {} {args}", bin.display()))
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("LC_ALL", "C.UTF-8")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Command::new("script")
        .args(["-qfec"])
        .arg(format!("pkttyagent --process {}", caller.id()))
        .arg("/dev/null")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env_remove("LC_ALL")
        .env("LANG", lang)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) and pkttyagent (polkitd)");
    let screen = read_until(agent.stdout.take().unwrap(), 40, |t| {
        t.contains("Password:")
    });
    (caller, agent, screen)
}

#[test]
fn the_password_prompt_a_real_agent_shows_names_the_group_and_its_devices() {
    let bus = Bus::start();
    let (prompt, o) = prompt_for(&bus, "claim 18", "en_US.UTF-8");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        prompt.contains("AUTHENTICATING FOR io.github.passage.claim"),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "Authentication is required to change which drivers hold IOMMU group 18: \
             0000:09:00.0 Intel I350 Gigabit Network Connection, 0000:09:00.1"
        ),
        "the prompt does not name the group and its devices:\n{prompt}"
    );
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not authorized"), "{err}");
    assert_eq!(bus.driver("0000:09:00.0"), None, "nothing may change");
    assert!(!bus.state().join("claims/18.json").exists());
    // An agent in German shows the German prompt (po/de.po, merged into the policy).
    let (prompt, _) = prompt_for(&bus, "persist 18 on", "de_DE.UTF-8");
    assert!(
        prompt.contains(
            "Legitimierung ist nötig, um die IOMMU-Gruppe 18 bei jedem Start zu übernehmen: \
             0000:09:00.0"
        ),
        "{prompt}"
    );
}
