//! The app as a person uses it: a real window on a real X server (Xvfb), driven by a real
//! pointer (xdotool). A group card dragged onto a guest changes the plan on disk; the export
//! preview shows the libvirt XML; screenshots of the main window, an expanded group and the
//! "Why?" view are saved in target/tmp/gui/ (and the best copied to assets/screenshots/ by
//! hand). Where the widgets are comes from the app's probe (`PASSAGE_PROBE`), not guesses.

#[path = "common/bins.rs"]
mod bins;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the probe lists a window or menu of this kind as open.
fn is_open(p: &Value, what: &str) -> bool {
    p["open"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == what))
}

/// A system bus address with nothing behind it: a machine without a system bus, whatever this
/// one has.
const NO_BUS: &str = "unix:path=/nonexistent/system_bus_socket";

/// One X server at a time: the pointer is shared.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Session {
    _one: std::sync::MutexGuard<'static, ()>,
    display: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    /// The app itself.
    app: Option<Child>,
    /// The private session bus the app's accessibility tree is reached through, when asked.
    session_bus: Option<String>,
}

/// How to start the app.
#[derive(Default)]
struct Launch<'a> {
    lang: Option<&'a str>,
    /// A host tree (`--root`) instead of the demo.
    tree: Option<&'a Path>,
    /// Another machine (`--host`) instead of the demo.
    host: Option<&'a str>,
    /// Start without `--plan` (the app picks the plan it remembers, or the default).
    no_plan: bool,
    /// `--plan` this file instead of the session's copy of the demo plan.
    plan: Option<&'a Path>,
    /// What the session's plan copy holds (default: the demo plan).
    plan_text: Option<&'a str>,
    /// XDG_CONFIG_HOME (settings, the default plan), when it must outlive the session.
    config: Option<&'a Path>,
    env: Vec<(&'a str, String)>,
    /// A private session bus, so the app's accessibility tree can be read over AT-SPI.
    atspi: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(app) = self.app.as_mut() {
            let _ = app.kill();
            let _ = app.wait();
        }
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gui");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what} did not happen in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Session {
    /// Xvfb plus `passage --demo --plan COPY`, with the probe on.
    fn start(lang: Option<&str>) -> Session {
        Self::launch(Launch {
            lang,
            ..Default::default()
        })
    }

    /// The same on a host tree (`--root TREE`) instead of the demo; with a FIFO for injected
    /// device events beside the probe file.
    fn start_on(lang: Option<&str>, tree: Option<&Path>) -> Session {
        Self::launch(Launch {
            lang,
            tree,
            ..Default::default()
        })
    }

    fn launch(l: Launch) -> Session {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // Xvfb picks a free display itself (-displayfd) and says which: no clash with another
        // X server on the machine, or with the last test's.
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1400x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (./dev test installs xvfb)");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = xvfb.stdout.take().unwrap();
            std::io::BufReader::new(out).read_line(&mut line).unwrap();
        }
        let n: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb said {line:?}"));
        let display = format!(":{n}");
        let mut s = Session {
            _one: one,
            display: display.clone(),
            dir,
            children: vec![xvfb],
            app: None,
            session_bus: None,
        };
        if l.atspi {
            // Its own session bus: D-Bus activates the accessibility bus (at-spi-bus-launcher)
            // on it when GTK asks, as in a desktop session.
            let mut bus = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("dbus-daemon (./dev test installs dbus-daemon)");
            let mut line = String::new();
            {
                use std::io::BufRead;
                let out = bus.stdout.take().unwrap();
                std::io::BufReader::new(out).read_line(&mut line).unwrap();
            }
            assert!(line.starts_with("unix:"), "dbus-daemon said {line:?}");
            s.session_bus = Some(line.trim().to_string());
            s.children.push(bus);
        }
        std::fs::write(
            s.plan_path(),
            l.plan_text.unwrap_or(passage_core::demo::DEMO_PLAN),
        )
        .unwrap();
        let config = l
            .config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| s.dir.path().to_path_buf());
        let mut c = Command::new(bins::bin("passage"));
        match (l.tree, l.host) {
            (_, Some(h)) => {
                c.arg("--host").arg(h);
            }
            (Some(t), None) => {
                let fifo = s.dir.path().join("probe.json.events");
                let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
                assert!(o.status.success());
                c.arg("--root").arg(t);
            }
            (None, None) => {
                c.arg("--demo");
            }
        }
        if !l.no_plan {
            c.arg("--plan").arg(l.plan.unwrap_or(&s.plan_path()));
        }
        c.env("DISPLAY", &display)
            .env("GDK_BACKEND", "x11")
            .env("GSK_RENDERER", "cairo")
            .env("NO_AT_BRIDGE", "1")
            .env("XDG_CONFIG_HOME", &config)
            // The app's settings as an installed app has them: its schema compiled, kept in a
            // key file under XDG_CONFIG_HOME (no dconf on a test machine).
            .env("GSETTINGS_SCHEMA_DIR", compile_schema(&config))
            .env("GSETTINGS_BACKEND", "keyfile")
            .env("PASSAGE_PROBE", s.probe_path())
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(bus) = &s.session_bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", bus)
                .env("GTK_A11Y", "atspi")
                .env_remove("NO_AT_BRIDGE");
        }
        for (k, v) in l.env {
            c.env(k, v);
        }
        // LANGUAGE picks the translation; under C.UTF-8 glibc honours it (under plain C it
        // would not), so no locale has to be generated on the machine.
        c.env("LC_ALL", "C.UTF-8");
        if let Some(lang) = l.lang {
            c.env("LANGUAGE", lang)
                .env("PASSAGE_LOCALEDIR", compile_catalogs(s.dir.path()));
        }
        s.app = Some(c.spawn().expect("the passage binary"));
        s
    }

    /// Closes the window as a person does (Ctrl+Q) and waits for the app to end.
    fn close(&mut self) {
        self.xdotool(&["key", "ctrl+q"]);
        let app = self.app.as_mut().unwrap();
        wait_for("the app to end after Ctrl+Q", 20, || {
            app.try_wait().unwrap()
        });
    }

    /// In "Assign to…" (just opened): Tab to the third guest (win11, router, ci-runner) and
    /// press Enter.
    fn choose_third_guest(&self) {
        std::thread::sleep(Duration::from_millis(300));
        self.xdotool(&["key", "Tab"]);
        self.xdotool(&["key", "Tab"]);
        self.xdotool(&["key", "Return"]);
    }

    /// Runs a scenario of tests/atspi/drive.py against the app: what a screen-reader user
    /// does, through the accessibility tree Orca reads. Returns what it printed.
    fn atspi(&self, scenario: &str) -> String {
        let bus = self
            .session_bus
            .as_ref()
            .expect("the session was launched with atspi");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/atspi/drive.py");
        // Debian's own Python: the AT-SPI bindings are its packages (python3-gi,
        // gir1.2-atspi-2.0), not a virtual environment's.
        let o = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(scenario)
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .output()
            .expect("/usr/bin/python3 (./dev test installs python3-gi and gir1.2-atspi-2.0)");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "the AT-SPI scenario {scenario} failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    fn plan_path(&self) -> PathBuf {
        self.dir.path().join("plan.json")
    }
    fn probe_path(&self) -> PathBuf {
        self.dir.path().join("probe.json")
    }

    fn probe(&self) -> Option<Value> {
        serde_json::from_slice(&std::fs::read(self.probe_path()).ok()?).ok()
    }

    /// Waits until the probe shows something, twice in a row with nothing moved (a list being
    /// rebuilt moves its rows), and returns it.
    fn until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last: Option<Value> = None;
        wait_for(what, 60, || {
            let p = self.probe().filter(|p| f(p));
            let stable = match (&p, &last) {
                (Some(a), Some(b)) => a["cards"] == b["cards"] && a["guests"] == b["guests"],
                _ => false,
            };
            if p.is_some() {
                std::thread::sleep(Duration::from_millis(250));
            }
            last = p.clone();
            p.filter(|_| stable)
        })
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let o = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool (./dev test installs it)");
        assert!(
            o.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The main window's X id, found by its title (dialogs have titles of their own).
    fn window_id(&self) -> String {
        let id = self.xdotool(&["search", "--sync", "--onlyvisible", "--name", "^Passage$"]);
        id.lines().next().unwrap().trim().to_string()
    }

    /// The window's top-left corner on the screen.
    fn origin(&self) -> (f64, f64) {
        let id = self.window_id();
        let geo = self.xdotool(&["getwindowgeometry", "--shell", &id]);
        let get = |k: &str| {
            geo.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        (get("X"), get("Y"))
    }

    /// Screen coordinates of a point inside a widget the probe lists.
    fn point(&self, p: &Value, kind: &str, key: &str, fx: f64, fy: f64) -> (i64, i64) {
        let r = &p[kind][key];
        assert!(r.is_array(), "no {kind} {key} on screen: {p}");
        let (ox, oy) = self.origin();
        let f = |i: usize| r[i].as_f64().unwrap();
        let (x, y) = (
            (ox + f(0) + f(2) * fx) as i64,
            (oy + f(1) + f(3) * fy) as i64,
        );
        assert!(
            x >= 0 && y >= 0,
            "{kind} {key} at {r} in a window at ({ox}, {oy}): off the screen; {p}"
        );
        (x, y)
    }

    /// Scrolls the Topology view with the wheel until a widget the probe lists lies wholly
    /// inside it; returns the probe then.
    fn scroll_into_view(&self, kind: &str, key: &str) -> Value {
        for _ in 0..200 {
            let p = self.probe().unwrap();
            let (r, v) = (&p[kind][key], &p["panes"]["topology"]);
            if r.is_array() && v.is_array() {
                let f = |a: &Value, i: usize| a[i].as_f64().unwrap();
                let (top, bottom) = (f(r, 1), f(r, 1) + f(r, 3));
                if top >= f(v, 1) && bottom <= f(v, 1) + f(v, 3) {
                    // GTK animates a wheel's scrolling: wait until the widget stays put.
                    std::thread::sleep(Duration::from_millis(450));
                    let q = self.probe().unwrap();
                    if q[kind][key] == p[kind][key] {
                        return q;
                    }
                    continue;
                }
                let (x, y) = self.point(&p, "panes", "topology", 0.5, 0.5);
                self.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
                let wheel = if top < f(v, 1) { "4" } else { "5" };
                self.xdotool(&["click", wheel]);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        panic!("{kind} {key} never came into the Topology view");
    }

    /// Presses at `from`, moves in steps (GTK starts a drag after a few pixels), releases at
    /// `to`.
    fn drag(&self, (x0, y0): (i64, i64), (x1, y1): (i64, i64)) {
        self.xdotool(&["mousemove", &x0.to_string(), &y0.to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        self.xdotool(&["mousedown", "1"]);
        for i in 1..=20 {
            let x = x0 + (x1 - x0) * i / 20;
            let y = y0 + (y1 - y0) * i / 20;
            self.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
            std::thread::sleep(Duration::from_millis(40));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.xdotool(&["mouseup", "1"]);
    }

    fn click(&self, (x, y): (i64, i64)) {
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
        std::thread::sleep(Duration::from_millis(150));
        self.xdotool(&["click", "1"]);
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let out = artifacts().join(format!("{name}.png"));
        let o = Command::new("import")
            .args(["-display", &self.display, "-window", "root"])
            .arg(&out)
            .output()
            .expect("import (./dev test installs imagemagick)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::metadata(&out).unwrap().len() > 10_000,
            "{name} is empty"
        );
        out
    }

    fn plan(&self) -> passage_core::plan::Plan {
        passage_core::plan::Plan::from_json(&std::fs::read_to_string(self.plan_path()).unwrap())
            .unwrap()
    }
}

/// The app's GSettings schema compiled into DIR/schemas (as a package's trigger would).
fn compile_schema(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("schemas");
    std::fs::create_dir_all(&out).unwrap();
    let name = "io.github.passage.Passage.gschema.xml";
    std::fs::copy(repo.join("data").join(name), out.join(name)).unwrap();
    let o = Command::new("glib-compile-schemas")
        .arg("--strict")
        .arg(&out)
        .output()
        .expect("glib-compile-schemas (libglib2.0-bin)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Every po/LANG.po compiled with msgfmt into DIR/locale/LANG/LC_MESSAGES/passage.mo.
fn compile_catalogs(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("locale");
    let langs = std::fs::read_to_string(repo.join("po/LINGUAS")).unwrap();
    for lang in langs
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let d = out.join(lang).join("LC_MESSAGES");
        std::fs::create_dir_all(&d).unwrap();
        let o = Command::new("msgfmt")
            .arg("--check")
            .arg("-o")
            .arg(d.join("passage.mo"))
            .arg(repo.join(format!("po/{lang}.po")))
            .output()
            .expect("msgfmt (gettext)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    out
}

#[test]
fn a_group_dragged_onto_a_guest_with_a_real_pointer_changes_the_plan() {
    let s = Session::start(None);
    let p = s.until("the host's cards and the guests", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array() && p["guests"]["ci-runner"].is_array()
    });
    s.screenshot("main-window");
    assert_eq!(
        s.plan().holder(passage_core::GroupId(18)).unwrap().name,
        "router"
    );
    // Press on the card's title area, move in steps (GTK starts a drag after a few pixels),
    // release over the ci-runner guest.
    let (x0, y0) = s.point(&p, "cards", "18", 0.15, 0.2);
    let (x1, y1) = s.point(&p, "guests", "ci-runner", 0.5, 0.5);
    s.drag((x0, y0), (x1, y1));
    let plan = wait_for("the plan on disk to change", 20, || {
        let plan = s.plan();
        (plan
            .holder(passage_core::GroupId(18))
            .map(|g| g.name.as_str())
            == Some("ci-runner"))
        .then_some(plan)
    });
    // The whole group moved, its hidden port still hidden.
    let g = plan.guest("ci-runner").unwrap();
    assert_eq!(g.groups.len(), 1);
    assert!(!g.groups[0].devices[1].visible);
    assert!(plan.guest("router").unwrap().groups.is_empty());
    s.screenshot("after-drop");
}

#[test]
fn an_expanded_group_why_and_the_export_preview_show_what_the_library_says() {
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["expanders"]["19"].is_array()
    });
    // Expand the GPU group: its two functions with switches and guest addresses.
    s.click(s.point(&p, "expanders", "19", 0.05, 0.5));
    std::thread::sleep(Duration::from_millis(600));
    s.screenshot("expanded-group");
    // "Why?" on the GPU group.
    let p = s.probe().unwrap();
    s.click(s.point(&p, "why", "19", 0.5, 0.5));
    s.until("the Why? window", |p| is_open(p, "why"));
    std::thread::sleep(Duration::from_millis(600));
    s.screenshot("why");
    s.xdotool(&["key", "Escape"]);
    s.until("the Why? window to close", |p| !is_open(p, "why"));
    // Export: the preview holds libvirt's <hostdev> elements for win11.
    let p = s.probe().unwrap();
    s.click(s.point(&p, "buttons", "export", 0.5, 0.5));
    let p = s.until("the export preview", |p| p["export_preview"].is_string());
    let xml = p["export_preview"].as_str().unwrap();
    assert!(
        xml.contains("<hostdev mode=\"subsystem\" type=\"pci\" managed=\"no\">"),
        "{xml}"
    );
    assert!(xml.contains("bus=\"0x0b\""), "{xml}");
    std::thread::sleep(Duration::from_millis(600));
    s.screenshot("export");
}

#[test]
fn the_app_speaks_german_when_asked() {
    let s = Session::start(Some("de"));
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["19"].is_array()
    });
    assert_eq!(p["labels"]["apply"], "Anwenden", "{}", p["labels"]);
    assert_eq!(p["labels"]["export"], "Exportieren …");
    std::thread::sleep(Duration::from_millis(400));
    s.screenshot("main-window-de");
}

#[test]
fn without_a_display_the_app_says_so_in_one_line() {
    let o = Command::new(bins::bin("passage"))
        .arg("--demo")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot open a display") && err.contains("passagectl"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn without_a_pointer_drag_the_keyboard_assigns_a_group() {
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array()
    });
    // Focus the NIC's card, Enter: "Assign to…" opens with a button per guest.
    s.click(s.point(&p, "cards", "18", 0.3, 0.2));
    s.xdotool(&["key", "Return"]);
    s.until("the Assign to… window", |p| is_open(p, "assign"));
    // Tab to the second guest (win11, router, ci-runner: the first has focus), Enter.
    s.choose_third_guest();
    let plan = wait_for("the plan on disk to change", 20, || {
        let plan = s.plan();
        (plan
            .holder(passage_core::GroupId(18))
            .map(|g| g.name.as_str())
            == Some("ci-runner"))
        .then_some(plan)
    });
    assert_eq!(plan.guest("ci-runner").unwrap().groups.len(), 1);
}

#[test]
fn a_device_another_tool_binds_updates_its_card_without_a_rescan() {
    use passage_helper::claim::Kernel;
    // The demo host as a tree of its own, so "another tool" can bind a device in it.
    let tree = tempfile::tempdir().unwrap();
    passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST)
        .unwrap()
        .write_tree(tree.path())
        .unwrap();
    let s = Session::start_on(None, Some(tree.path()));
    let p = s.until("the SMBus card", |p| {
        p["loaded"] == true && p["badges"]["14"].is_string()
    });
    assert_eq!(p["badges"]["14"], "in use", "{}", p["badges"]);
    // Bind 0000:00:14.0 to vfio-pci the way any tool does (override, unbind, probe) …
    let k = passage_helper::fakekernel::FakeKernel::new(tree.path()).unwrap();
    let a = "0000:00:14.0";
    k.write(
        Path::new(&format!("sys/bus/pci/devices/{a}/driver_override")),
        "vfio-pci",
    )
    .unwrap();
    k.write(
        Path::new(&format!("sys/bus/pci/devices/{a}/driver/unbind")),
        a,
    )
    .unwrap();
    k.write(Path::new("sys/bus/pci/drivers_probe"), a).unwrap();
    assert_eq!(
        k.driver_of(a.parse().unwrap()).unwrap().as_deref(),
        Some("vfio-pci")
    );
    // … and the kernel's event reaches the app through the same path a uevent takes.
    std::fs::write(
        s.dir.path().join("probe.json.events"),
        format!("bind {a}\n"),
    )
    .unwrap();
    let p = s.until("the card to follow", |p| p["badges"]["14"] == "assigned");
    assert_eq!(p["events"], 1);
    eprintln!("event to redrawn list: {} ms", p["event_ms"]);
    s.screenshot("after-event");
}

#[test]
fn the_window_the_bridges_toggle_and_the_plan_come_back_as_they_were_left() {
    let tree = tempfile::tempdir().unwrap();
    passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST)
        .unwrap()
        .write_tree(tree.path())
        .unwrap();
    let config = tempfile::tempdir().unwrap();
    let elsewhere = config.path().join("elsewhere.json");
    std::fs::write(&elsewhere, passage_core::demo::DEMO_PLAN).unwrap();
    let left = {
        let mut s = Session::launch(Launch {
            tree: Some(tree.path()),
            plan: Some(&elsewhere),
            config: Some(config.path()),
            env: vec![("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS.into())],
            ..Default::default()
        });
        // (Under the notices about the missing bus, the GPU's card may be below the fold.)
        let p = s.until("the cards", |p| {
            p["loaded"] == true && p["cards"]["16"].is_array()
        });
        assert_eq!(p["active"]["bridges"], false, "{}", p["active"]);
        let first = p["window"].clone();
        // A person makes the window smaller, shows the bridges too, and quits with Ctrl+Q.
        let id = s.window_id();
        s.xdotool(&["windowsize", &id, "1000", "660"]);
        let p = s.until("the window to take its new size", |p| p["window"] != first);
        s.click(s.point(&p, "buttons", "bridges", 0.5, 0.5));
        let p = s.until("the bridges to show", |p| p["active"]["bridges"] == true);
        s.close();
        p["window"].clone()
    };
    let keyfile = std::fs::read_to_string(config.path().join("glib-2.0/settings/keyfile")).unwrap();
    assert!(keyfile.contains("show-bridges=true"), "{keyfile}");
    // Started again, without --plan: the same size, the bridges shown, the plan from before.
    let s = Session::launch(Launch {
        tree: Some(tree.path()),
        no_plan: true,
        config: Some(config.path()),
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS.into())],
        ..Default::default()
    });
    // (With the bridges shown and a smaller window, the GPU's card may be below the fold.)
    let p = s.until("the cards", |p| p["loaded"] == true);
    assert_eq!(p["window"], left);
    assert_eq!(p["active"]["bridges"], true);
    // No system bus (pinned): the banner says Apply cannot reach the helper.
    let banner = p["banner"].as_str().unwrap_or_default();
    assert!(banner.contains("Passage helper"), "{banner}");
    assert_eq!(p["plan_path"], elsewhere.display().to_string());
    let plan = passage_core::plan::Plan::from_json(p["plan"].as_str().unwrap()).unwrap();
    assert_eq!(
        plan.holder(passage_core::GroupId(19))
            .map(|g| g.name.as_str()),
        Some("win11")
    );
}

#[path = "common/bus.rs"]
mod bus;

#[test]
fn apply_claims_through_the_real_helper_and_says_what_it_gave_back_when_a_step_fails() {
    // The real helper and polkitd on a private system bus, driving a fake kernel over the demo
    // host's tree; the app reads the same tree.
    let bus = bus::Bus::start();
    let nic = ["0000:09:00.0", "0000:09:00.1"];
    let before: Vec<_> = nic.iter().map(|a| bus.driver(a)).collect();
    let env = || vec![("DBUS_SYSTEM_BUS_ADDRESS", bus.address())];
    let apply = |s: &Session| -> String {
        let p = s.until("the cards", |p| {
            p["loaded"] == true && p["cards"]["18"].is_array()
        });
        s.click(s.point(&p, "buttons", "apply", 0.5, 0.5));
        let p = s.until("Apply's outcome", |p| {
            p["apply_log"]
                .as_str()
                .is_some_and(|t| t.contains("Done") || t.contains("Not applied"))
        });
        p["apply_log"].as_str().unwrap().to_string()
    };
    {
        // The demo plan: router keeps group 18 (claimed now); win11 is a libvirt guest, and
        // this bus has no libvirt-dbus, so writing its definition fails after the claim.
        let s = Session::launch(Launch {
            tree: Some(&bus.root()),
            env: env(),
            ..Default::default()
        });
        let log = apply(&s);
        // The helper is on this bus: the banner says nothing about it.
        let banner = s.probe().unwrap()["banner"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!banner.contains("Passage helper"), "{banner}");
        assert!(
            log.contains(
                "✓ claim group 18 for router: group 18 is on vfio-pci: 0000:09:00.0, 0000:09:00.1"
            ),
            "{log}"
        );
        assert!(
            log.contains("✗ write the devices into libvirt's definition of win11"),
            "{log}"
        );
        assert!(log.contains("Not applied."), "{log}");
        assert!(
            log.contains("↺"),
            "nothing said about what was given back: {log}"
        );
        s.screenshot("apply-rolled-back");
        let after: Vec<_> = nic.iter().map(|a| bus.driver(a)).collect();
        assert_eq!(after, before, "group 18 was not given back");
    }
    // The same without win11's groups: Apply claims group 18 and its card says so.
    let mut plan = passage_core::plan::Plan::from_json(passage_core::demo::DEMO_PLAN).unwrap();
    for g in [19, 20] {
        plan.unassign(passage_core::GroupId(g)).unwrap();
    }
    let text = plan.to_json();
    let s = Session::launch(Launch {
        tree: Some(&bus.root()),
        plan_text: Some(&text),
        env: env(),
        ..Default::default()
    });
    let log = apply(&s);
    assert!(log.contains("Done: the plan is applied."), "{log}");
    for a in nic {
        assert_eq!(bus.driver(a).as_deref(), Some("vfio-pci"), "{a}");
    }
    s.until("the card to say assigned", |p| {
        p["badges"]["18"] == "assigned → router"
    });
    s.screenshot("apply-done");
}

#[test]
fn a_cards_context_menu_assigns_and_explains_by_pointer_and_by_keyboard() {
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array()
    });
    // Right click on the NIC's card: its menu offers the other guests, Why? and taking it out.
    s.xdotool(&["mousemove", "--sync", "0", "0"]);
    let (x, y) = s.point(&p, "cards", "18", 0.3, 0.5);
    s.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    std::thread::sleep(Duration::from_millis(150));
    s.xdotool(&["click", "3"]);
    let p = s.until("the card's menu", |p| {
        is_open(p, "menu") && p["buttons"]["menu-assign:ci-runner"].is_array()
    });
    assert!(p["buttons"]["menu-unassign"].is_array(), "{}", p["buttons"]);
    assert!(
        !p["buttons"]["menu-assign:router"].is_array(),
        "the guest that holds it is not offered again"
    );
    std::thread::sleep(Duration::from_millis(300));
    s.screenshot("card-menu");
    s.click(s.point(&p, "buttons", "menu-assign:ci-runner", 0.5, 0.5));
    let plan = wait_for("the plan on disk to change", 20, || {
        let plan = s.plan();
        (plan
            .holder(passage_core::GroupId(18))
            .map(|g| g.name.as_str())
            == Some("ci-runner"))
        .then_some(plan)
    });
    assert_eq!(plan.guest("ci-runner").unwrap().groups.len(), 1);
    // From the keyboard: focus the GPU's card, Shift+F10, then Why? from the menu.
    let p = s.until("the menu to close", |p| !is_open(p, "menu"));
    s.click(s.point(&p, "cards", "19", 0.3, 0.2));
    s.xdotool(&["key", "shift+F10"]);
    let p = s.until("the GPU card's menu", |p| {
        is_open(p, "menu") && p["buttons"]["menu-why"].is_array()
    });
    std::thread::sleep(Duration::from_millis(300));
    s.click(s.point(&p, "buttons", "menu-why", 0.5, 0.5));
    s.until("the Why? window", |p| is_open(p, "why"));
}

#[test]
fn a_refused_edit_stays_on_the_status_line_until_the_next_edit() {
    use passage_core::GroupId;
    // What the library says when the host's root disk (group 16) is given to win11.
    let source =
        passage_core::demo::Source::open(Some(passage_core::demo::DemoHost::Workstation), None)
            .unwrap();
    let host = passage_core::scan::scan(source.root()).unwrap();
    let mut plan = passage_core::plan::Plan::from_json(passage_core::demo::DEMO_PLAN).unwrap();
    let refusal = passage_core::view::drop_on(&mut plan, &host, GroupId(16), "win11")
        .unwrap_err()
        .to_string();
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["16"].is_array() && p["cards"]["18"].is_array()
    });
    let summary = p["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("groups on this host"), "{summary}");
    assert_eq!(p["status"], "", "nothing said before the first edit");
    // Focus the disk's card, Enter: "Assign to…"; Enter on the first guest (win11).
    s.click(s.point(&p, "cards", "16", 0.3, 0.2));
    s.xdotool(&["key", "Return"]);
    s.until("the Assign to… window", |p| is_open(p, "assign"));
    std::thread::sleep(Duration::from_millis(300));
    s.xdotool(&["key", "Return"]);
    // The refusal is on screen after the list, the guests and the summary were redrawn, and
    // the summary line is still there beside it.
    let p = s.until("the refusal on the status line", |p| p["status"] == refusal);
    assert_eq!(p["summary"], summary);
    assert_eq!(
        p["texts"]["undo"], "0 0",
        "a refused edit was kept for Undo"
    );
    assert!(s.plan().holder(GroupId(16)).is_none());
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        s.probe().unwrap()["status"],
        refusal,
        "the refusal went away"
    );
    s.screenshot("refused-edit");
    // The next edit says what it did instead: group 18 to ci-runner (the third guest).
    let p = s.until("the Assign to… window to close", |p| {
        !is_open(p, "assign")
    });
    s.click(s.point(&p, "cards", "18", 0.3, 0.2));
    s.xdotool(&["key", "Return"]);
    s.until("the Assign to… window", |p| is_open(p, "assign"));
    s.choose_third_guest();
    s.until("the assignment on the status line", |p| {
        p["status"] == "Group 18 is planned for ci-runner; press Apply to claim it."
    });
    assert_eq!(
        s.plan().holder(GroupId(18)).map(|g| g.name.as_str()),
        Some("ci-runner")
    );
}

#[test]
fn the_topology_view_draws_group_boxes_that_drag_onto_guests_and_ports_that_say_why() {
    let s = Session::start(None);
    let p = s.until("the host and the view switch", |p| {
        p["loaded"] == true && p["buttons"]["view-topology"].is_array()
    });
    s.click(s.point(&p, "buttons", "view-topology", 0.5, 0.5));
    let p = s.until("the topology's boxes and ports", |p| {
        p["topo_boxes"]["18"].is_array()
            && p["topo_nodes"]["0000:02:00.2"].is_array()
            && p["topology_frame_ms"].is_number()
    });
    assert_eq!(p["active"]["view-topology"], true);
    // The list's cards are not on screen while the picture is.
    assert!(p["cards"].as_object().unwrap().is_empty(), "{}", p["cards"]);
    std::thread::sleep(Duration::from_millis(500));
    s.screenshot("topology");

    // Pointing at a port says whether it isolates what is below it, and why.
    let (x, y) = s.point(&p, "topo_nodes", "0000:02:00.2", 0.3, 0.5);
    s.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    let p = s.until("the chipset switch's note", |p| {
        p["topology_note"].as_str().is_some_and(|n| {
            n.contains("02:00.2") && n.contains("does not isolate what is below it")
        })
    });
    let (x, y) = s.point(&p, "topo_nodes", "0000:00:01.2", 0.3, 0.5);
    s.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    s.until("the root port's note", |p| {
        p["topology_note"]
            .as_str()
            .is_some_and(|n| n.contains("00:01.2") && n.contains("isolates what is below it"))
    });

    // A group's box drags onto a guest like a card: the NIC's group goes to ci-runner.
    // From a member device (it lies over the box), as a person would grab it.
    let p = s.scroll_into_view("topo_boxes", "18");
    let (x0, y0) = s.point(&p, "topo_nodes", "0000:09:00.1", 0.5, 0.5);
    let (x1, y1) = s.point(&p, "guests", "ci-runner", 0.5, 0.5);
    s.drag((x0, y0), (x1, y1));
    wait_for("the plan on disk to change", 20, || {
        (s.plan()
            .holder(passage_core::GroupId(18))
            .map(|g| g.name.clone())
            .as_deref()
            == Some("ci-runner"))
        .then_some(())
    });
    // The keyboard path: focus a box, Enter opens "Assign to…", Shift+F10 its menu.
    let p = s.scroll_into_view("topo_boxes", "20");
    s.click(s.point(&p, "topo_boxes", "20", 0.5, 0.08));
    s.until("box 20 focused", |p| p["topo_focus"] == "group-20");
    s.xdotool(&["key", "Return"]);
    s.until("the Assign window", |p| is_open(p, "assign"));
    // Tab to the third guest (win11, router, ci-runner), Enter: the USB controller's group goes
    // to ci-runner, the picture is laid out again, and the keyboard is still on its box.
    s.choose_third_guest();
    wait_for("group 20 planned for ci-runner", 20, || {
        (s.plan()
            .holder(passage_core::GroupId(20))
            .map(|g| g.name.clone())
            .as_deref()
            == Some("ci-runner"))
        .then_some(())
    });
    s.until("the focus back on box 20 after the new layout", |p| {
        p["topo_focus"] == "group-20" && !is_open(p, "assign")
    });
    s.xdotool(&["key", "shift+F10"]);
    s.until("the box's menu", |p| is_open(p, "menu"));
    s.xdotool(&["key", "Escape"]);
    let p = s.until("the menu to close", |p| !is_open(p, "menu"));

    // Back to the list (Ctrl+1 too): the cards are there again.
    s.click(s.point(&p, "buttons", "view-list", 0.5, 0.5));
    s.until("the cards again", |p| p["cards"]["18"].is_array());
    s.xdotool(&["key", "ctrl+2"]);
    s.until("the Topology view by Ctrl+2", |p| {
        p["active"]["view-topology"] == true && p["topo_boxes"]["20"].is_array()
    });
    s.xdotool(&["key", "ctrl+1"]);
    s.until("the list by Ctrl+1", |p| {
        p["active"]["view-list"] == true && p["cards"]["18"].is_array()
    });
}

#[test]
fn on_an_sriov_host_the_topology_folds_vfs_until_opened_and_makes_widgets_only_for_what_is_in_view()
{
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("farm");
    passage_core::synth::sriov_farm(40, 16)
        .write_tree(&tree)
        .unwrap();
    let s = Session::start_on(None, Some(&tree));
    let p = s.until("the host and the view switch", |p| {
        p["loaded"] == true && p["buttons"]["view-topology"].is_array()
    });
    s.click(s.point(&p, "buttons", "view-topology", 0.5, 0.5));
    let p = s.until("the first PF's folded VFs", |p| {
        p["topo_nodes"]["vfs-0000:01:00.0"].is_array()
    });
    let nodes = |p: &Value| p["topo_nodes"].as_object().unwrap().len();
    let before = nodes(&p);
    // 40 PFs, their ports and folds: far more than a screen, fewer widgets than items.
    assert!(before < 120, "{before} nodes have widgets");
    assert!(p["topo_nodes"]["0000:01:00.1"].is_null());
    let p = s.scroll_into_view("topo_nodes", "vfs-0000:01:00.0");
    s.click(s.point(&p, "topo_nodes", "vfs-0000:01:00.0", 0.5, 0.5));
    let p = s.until("the first PF's VFs, each in its box", |p| {
        p["topo_nodes"]["0000:01:00.1"].is_array() && p["buttons"]["fold-0000:01:00.0"].is_array()
    });
    // The first VF's own group box is there now.
    let host = passage_core::scan::scan(&passage_core::HostRoot::open(&tree).unwrap()).unwrap();
    let vf_group = host.devices[&"0000:01:00.1".parse().unwrap()]
        .group
        .unwrap();
    assert!(
        p["topo_boxes"][vf_group.to_string()].is_array(),
        "{}",
        p["topo_boxes"]
    );
    // Scrolling far down makes widgets for what comes into view and drops the far ones.
    let (x, y) = s.point(&p, "buttons", "view-topology", 0.5, 4.0);
    s.xdotool(&["mousemove", &x.to_string(), &(y + 200).to_string()]);
    for _ in 0..60 {
        s.xdotool(&["click", "5"]);
    }
    let p = s.until("widgets further down", |p| {
        p["topo_nodes"]["0000:01:00.1"].is_null()
            && p["topo_nodes"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("0000:1"))
    });
    assert!(nodes(&p) < 200, "{} nodes have widgets", nodes(&p));
    // Folding again.
    for _ in 0..60 {
        s.xdotool(&["click", "4"]);
    }
    s.until("the fold button back", |p| {
        p["buttons"]["fold-0000:01:00.0"].is_array()
    });
    let p = s.scroll_into_view("buttons", "fold-0000:01:00.0");
    s.click(s.point(&p, "buttons", "fold-0000:01:00.0", 0.5, 0.5));
    s.until("the VFs folded again", |p| {
        p["topo_nodes"]["vfs-0000:01:00.0"].is_array() && p["topo_nodes"]["0000:01:00.1"].is_null()
    });
}

#[test]
fn a_screen_reader_user_assigns_a_group_from_its_menu_hears_the_toast_and_undoes() {
    // Dark, as a desktop that prefers it: libadwaita follows the system's style.
    let s = Session::launch(Launch {
        atspi: true,
        env: vec![("ADW_DEBUG_COLOR_SCHEME", "prefer-dark".into())],
        ..Default::default()
    });
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array()
    });
    assert_eq!(p["dark"], true);
    s.screenshot("main-window-dark");
    // Through AT-SPI: every card's controls name their group (one card opened, so its
    // devices' switches and address fields too); the arrow keys to group 18's card,
    // Shift+F10, "Assign to ci-runner"; the announcement read from the status line; the
    // toast's Undo pressed; Ctrl+Shift+Z.
    let out = s.atspi("assign-undo-redo");
    assert!(
        out.contains("announced: Undone: Group 18 is planned for ci-runner"),
        "{out}"
    );
    assert_eq!(
        s.plan()
            .holder(passage_core::GroupId(18))
            .map(|g| g.name.as_str()),
        Some("ci-runner"),
        "after undo and redo the plan on disk has group 18 with ci-runner"
    );
    s.until("one edit to undo, none to redo", |p| {
        p["texts"]["undo"] == "1 0"
    });
    // The main menu's About, and Ctrl+? for the shortcuts.
    let out = s.atspi("about-and-shortcuts");
    assert!(out.contains("version: "), "{out}");
}

#[test]
fn undo_and_redo_walk_back_and_forth_through_the_edits_and_save_each_step() {
    use passage_core::GroupId;
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array() && p["guests"]["ci-runner"].is_array()
    });
    assert_eq!(p["status"], "", "nothing said before the first edit");
    // Two edits: group 18 dragged to ci-runner, then taken out of the plan from ci-runner's row
    // by the keyboard (Assign to… is the other path; the drag is the one a person uses).
    s.drag(
        s.point(&p, "cards", "18", 0.15, 0.2),
        s.point(&p, "guests", "ci-runner", 0.5, 0.5),
    );
    let holder = |s: &Session| s.plan().holder(GroupId(18)).map(|g| g.name.clone());
    wait_for("group 18 with ci-runner", 20, || {
        (holder(&s).as_deref() == Some("ci-runner")).then_some(())
    });
    let p = s.until("the toast", |p| {
        p["status"] == "Group 18 is planned for ci-runner; press Apply to claim it."
    });
    assert_eq!(p["texts"]["undo"], "1 0");
    s.screenshot("toast-undo");
    // Ctrl+Z: back to router, saved; Ctrl+Z again: nothing more to undo, nothing changes.
    s.xdotool(&["key", "ctrl+z"]);
    wait_for("group 18 back with router", 20, || {
        (holder(&s).as_deref() == Some("router")).then_some(())
    });
    let p = s.until("the undo's toast", |p| {
        p["status"] == "Undone: Group 18 is planned for ci-runner; press Apply to claim it."
    });
    assert_eq!(p["texts"]["undo"], "0 1");
    assert_eq!(p["badges"]["18"], "pending → router");
    s.xdotool(&["key", "ctrl+z"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(holder(&s).as_deref(), Some("router"));
    assert_eq!(s.probe().unwrap()["texts"]["undo"], "0 1");
    // Ctrl+Shift+Z: ci-runner again.
    s.xdotool(&["key", "ctrl+shift+z"]);
    wait_for("group 18 with ci-runner again", 20, || {
        (holder(&s).as_deref() == Some("ci-runner")).then_some(())
    });
    let p = s.until("the redo", |p| p["texts"]["undo"] == "1 0");
    assert_eq!(p["badges"]["18"], "pending → ci-runner");
    // In the search field (Ctrl+F), Ctrl+Z undoes the typing, not the plan.
    s.xdotool(&["key", "ctrl+f"]);
    std::thread::sleep(Duration::from_millis(300));
    s.xdotool(&["type", "nvme"]);
    s.until("the search to leave the NVMe card alone", |p| {
        p["cards"]["16"].is_array() && p["cards"]["18"].is_null()
    });
    s.xdotool(&["key", "ctrl+z"]);
    let p = s.until("the typing undone", |p| p["cards"]["18"].is_array());
    assert_eq!(
        p["texts"]["undo"], "1 0",
        "Ctrl+Z in the search field undid the plan"
    );
    assert_eq!(holder(&s).as_deref(), Some("ci-runner"));
}

#[test]
fn a_narrow_window_shows_one_pane_at_a_time_and_the_keyboard_still_assigns() {
    use passage_core::GroupId;
    let s = Session::start(None);
    let p = s.until("the cards", |p| {
        p["loaded"] == true && p["cards"]["18"].is_array()
    });
    assert_eq!(p["texts"]["layout"], "both");
    let id = s.window_id();
    s.xdotool(&["windowsize", &id, "600", "760"]);
    s.until("the narrow layout", |p| {
        p["texts"]["layout"] == "host" && p["window"][0].as_i64().is_some_and(|w| w < 700)
    });
    // Narrow, the filters fold away and the window can go narrower still (a person's drag
    // goes on past the threshold).
    s.xdotool(&["windowsize", &id, "600", "760"]);
    let p = s.until("a 600 px window", |p| {
        p["texts"]["layout"] == "host" && p["window"][0].as_i64().is_some_and(|w| w <= 610)
    });
    // Nothing is cut off: the content fits the window it is in.
    let (min, width) = (p["content_min"].as_i64(), p["window"][0].as_i64());
    assert!(
        min.is_some() && min <= width,
        "content {min:?} in a window {width:?} wide"
    );
    assert!(
        p["guests"].as_object().is_some_and(|g| g.is_empty()),
        "guests shown: {}",
        p["guests"]
    );
    s.screenshot("narrow");
    // The header's Guests button: the guests instead of the list, and back.
    s.click(s.point(&p, "buttons", "show-guests", 0.5, 0.5));
    let p = s.until("the guests", |p| {
        p["texts"]["layout"] == "guests" && p["guests"]["ci-runner"].is_array()
    });
    assert!(
        p["cards"].as_object().is_some_and(|c| c.is_empty()),
        "cards shown: {}",
        p["cards"]
    );
    s.screenshot("narrow-guests");
    s.click(s.point(&p, "buttons", "show-guests", 0.5, 0.5));
    let p = s.until("the list again", |p| {
        p["texts"]["layout"] == "host" && p["cards"]["18"].is_array()
    });
    // No guest to drop on: the keyboard path, Enter on the card, reaches every guest.
    s.click(s.point(&p, "cards", "18", 0.3, 0.15));
    s.xdotool(&["key", "Return"]);
    s.until("the Assign to… window", |p| is_open(p, "assign"));
    s.choose_third_guest();
    wait_for("group 18 with ci-runner", 20, || {
        (s.plan().holder(GroupId(18)).map(|g| g.name.as_str()) == Some("ci-runner")).then_some(())
    });
    // Wide again: both panes.
    s.xdotool(&["windowsize", &id, "1180", "760"]);
    s.until("both panes", |p| p["texts"]["layout"] == "both");
}

#[test]
fn without_an_iommu_and_a_system_bus_the_window_says_what_to_do_and_opens_the_demo_host() {
    let tree = tempfile::tempdir().unwrap();
    let mut spec =
        passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST).unwrap();
    spec.host.iommu = Some("off".into());
    spec.write_tree(tree.path()).unwrap();
    let empty = passage_core::plan::Plan::default().to_json();
    let s = Session::launch(Launch {
        tree: Some(tree.path()),
        plan_text: Some(&empty),
        // As in a container or a minimal VM: no system bus at all.
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS.into())],
        ..Default::default()
    });
    let p = s.until("the page in place of the list", |p| {
        p["loaded"] == true && p["texts"]["page"] == "no-groups"
    });
    // Words a person can act on; the bus's own error only behind Details, never in them.
    let banner = p["banner"].as_str().unwrap_or_default();
    assert!(banner.contains("No system bus"), "{banner}");
    assert!(banner.contains("systemctl start dbus"), "{banner}");
    assert!(
        !banner.contains("os error") && !banner.contains("unix:path"),
        "{banner}"
    );
    assert!(
        !banner.contains("libvirt's guests could not be listed"),
        "said twice: {banner}"
    );
    assert!(
        p["panes"]["banner"].is_array(),
        "the notices are not on screen: {p}"
    );
    assert_eq!(p["texts"]["guests-page"], "no-bus");
    s.screenshot("no-iommu");
    // Apply with nothing planned and no bus: its window says why on a page, not a raw error.
    s.click(s.point(&p, "buttons", "apply", 0.5, 0.5));
    let p = s.until("Apply's page", |p| {
        p["apply_log"]
            .as_str()
            .is_some_and(|t| t.contains("No system bus"))
    });
    assert!(!p["apply_log"].as_str().unwrap().contains("os error"));
    s.xdotool(&["key", "Escape"]);
    // The page's button: the demo host, its cards and its guests.
    let p = s.until("Apply's window to close", |p| !is_open(p, "apply"));
    s.click(s.point(&p, "buttons", "open-demo", 0.5, 0.5));
    let p = s.until("the demo host", |p| {
        p["texts"]["page"] == "host"
            && p["cards"]["19"].is_array()
            && p["guests"]["win11"].is_array()
    });
    assert_eq!(p["banner"], "", "the demo host needs no bus");
    assert!(p["panes"]["banner"].is_null(), "an empty banner is shown");
    assert_eq!(
        p["plan_path"],
        Value::Null,
        "the demo's plan is kept in memory"
    );
}

#[test]
fn another_machine_opens_over_ssh_follows_its_changes_and_one_that_cannot_be_reached_says_why() {
    // Two machines, each a helper with its polkitd on a private system bus, reached as ssh
    // would reach them: the stand-in runs the real systemd-stdio-bridge onto each.
    let pair = bus::Bus::start_pair();
    let buses = format!(
        "alpha={} beta={}",
        pair.a.dir.path().join("bus").display(),
        pair.b.dir.path().join("bus").display()
    );
    let standin = bus::repo().join("tests/remote/ssh-standin");
    let config = tempfile::tempdir().unwrap();
    let s = Session::launch(Launch {
        host: Some("alpha"),
        no_plan: true,
        config: Some(config.path()),
        env: vec![
            ("PASSAGE_SSH", standin.display().to_string()),
            ("PASSAGE_TEST_BUSES", buses.clone()),
            ("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS.into()),
        ],
        ..Default::default()
    });
    let p = s.until("alpha's groups", |p| {
        p["loaded"] == true && p["badges"]["19"].is_string()
    });
    assert_eq!(p["texts"]["page"], "host");
    assert_ne!(p["badges"]["19"], "assigned", "{}", p["badges"]);
    // The machine's own plan, beside this machine's.
    assert_eq!(
        p["plan_path"],
        config
            .path()
            .join("passage/hosts/alpha/plan.json")
            .display()
            .to_string()
    );
    // Another tool claims the GPU's group on alpha: its helper tells, the card follows.
    let o = Command::new(pair.a.passagectl_bin())
        .args(["-H", "alpha", "claim", "19"])
        .env("PASSAGE_SSH", &standin)
        .env("PASSAGE_TEST_BUSES", &buses)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.until("the card to follow alpha's claim", |p| {
        p["badges"]["19"] == "assigned"
    });
    s.screenshot("another-machine");
    // Ctrl+Shift+O: a machine that cannot be reached says why in one line, and the way back.
    let connect = |host: &str| {
        s.xdotool(&["key", "ctrl+shift+o"]);
        s.until("the machine dialog", |p| is_open(p, "connect"));
        s.xdotool(&["type", "--delay", "20", host]);
        s.xdotool(&["key", "Return"]);
    };
    connect("gamma");
    let p = s.until("gamma's page", |p| p["texts"]["page"] == "unreachable");
    assert_eq!(
        p["texts"]["unreachable"],
        "gamma: ssh: Could not resolve hostname gamma: Name or service not known"
    );
    s.screenshot("machine-unreachable");
    // beta is untouched by alpha's claim, and opens as itself.
    connect("beta");
    let p = s.until("beta's groups", |p| {
        p["texts"]["page"] == "host" && p["badges"]["19"].is_string()
    });
    assert_ne!(p["badges"]["19"], "assigned", "{}", p["badges"]);
    s.screenshot("machine-beta");
    // The machines opened are remembered for the machine menu, the latest first.
    let kept = std::fs::read_to_string(config.path().join("glib-2.0/settings/keyfile"))
        .unwrap_or_default();
    // (gamma was never reached, so it is not offered.)
    assert!(kept.contains("recent-hosts=['beta', 'alpha']"), "{kept}");
}

#[test]
fn apply_on_another_machine_claims_through_that_machines_helper() {
    let pair = bus::Bus::start_pair();
    let buses = format!(
        "alpha={} beta={}",
        pair.a.dir.path().join("bus").display(),
        pair.b.dir.path().join("bus").display()
    );
    let config = tempfile::tempdir().unwrap();
    // beta's own plan: the demo's router (a QEMU guest that keeps its NIC's group on vfio-pci).
    let mut plan: Value = serde_json::from_str(passage_core::demo::DEMO_PLAN).unwrap();
    plan["guests"]
        .as_array_mut()
        .unwrap()
        .retain(|g| g["name"] == "router");
    let beta_plan = config.path().join("passage/hosts/beta/plan.json");
    std::fs::create_dir_all(beta_plan.parent().unwrap()).unwrap();
    std::fs::write(&beta_plan, plan.to_string()).unwrap();
    let nic = "0000:09:00.0";
    let (before_a, before_b) = (pair.a.driver(nic), pair.b.driver(nic));
    assert_ne!(before_b.as_deref(), Some("vfio-pci"));
    let s = Session::launch(Launch {
        host: Some("beta"),
        no_plan: true,
        config: Some(config.path()),
        env: vec![
            (
                "PASSAGE_SSH",
                bus::repo()
                    .join("tests/remote/ssh-standin")
                    .display()
                    .to_string(),
            ),
            ("PASSAGE_TEST_BUSES", buses),
            // Nothing of this machine's is reached: no system bus here at all.
            ("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS.into()),
        ],
        ..Default::default()
    });
    let p = s.until("beta's groups and plan", |p| {
        p["loaded"] == true && p["badges"]["18"].is_string() && p["guests"]["router"].is_array()
    });
    s.click(s.point(&p, "buttons", "apply", 0.5, 0.5));
    let p = s.until("Apply's outcome", |p| {
        p["apply_log"]
            .as_str()
            .is_some_and(|t| t.contains("Done") || t.contains("Not applied"))
    });
    let log = p["apply_log"].as_str().unwrap();
    assert!(!log.contains("Not applied"), "{log}");
    // beta's helper claimed it; alpha's devices and this machine are as they were.
    assert_eq!(pair.b.driver(nic).as_deref(), Some("vfio-pci"), "{log}");
    assert_eq!(pair.a.driver(nic), before_a);
    s.until("the card to follow", |p| {
        p["badges"]["18"] == "assigned → router"
    });
}

#[test]
fn planned_cards_that_moved_are_said_and_followed_with_one_button_and_undone_with_ctrl_z() {
    // The demo plan as made when the GPU sat at bus 0e in group 30.
    let mut v: Value = serde_json::from_str(passage_core::demo::DEMO_PLAN).unwrap();
    let gpu = v["guests"][0]["groups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["group"] == 19)
        .unwrap();
    gpu["group"] = 30.into();
    for d in gpu["devices"].as_array_mut().unwrap() {
        let a = d["address"].as_str().unwrap().replace(":0b:", ":0e:");
        d["address"] = a.into();
    }
    let text = v.to_string();
    let s = Session::launch(Launch {
        plan_text: Some(&text),
        ..Default::default()
    });
    let p = s.until("the notice about the moved cards", |p| {
        p["loaded"] == true
            && p["banner"]
                .as_str()
                .is_some_and(|b| b.contains("not where the plan has them"))
    });
    let banner = p["banner"].as_str().unwrap();
    assert!(
        banner.contains("the cards of group 30 are now group 19"),
        "{banner}"
    );
    s.click(s.point(&p, "buttons", "remap", 0.5, 0.5));
    let p = s.until("the plan to follow the cards", |p| {
        !p["banner"]
            .as_str()
            .unwrap_or_default()
            .contains("not where the plan has them")
    });
    let plan = s.plan();
    let g = plan.guests[0]
        .groups
        .iter()
        .find(|g| g.group == passage_core::GroupId(19))
        .expect("group 19 planned");
    assert_eq!(g.devices[0].address.to_string(), "0000:0b:00.0");
    assert_eq!(p["texts"]["undo"], "1 0");
    // One edit: Ctrl+Z takes it back, on disk too.
    s.xdotool(&["key", "ctrl+z"]);
    s.until("the undo", |p| p["texts"]["undo"] == "0 1");
    assert!(s.plan().guests[0]
        .groups
        .iter()
        .any(|g| g.group == passage_core::GroupId(30)));
}

/// Host Readiness's own buttons for what the CLI's rehearse-reset and vfs do, pressed through
/// AT-SPI as a screen-reader user would (their names say which group or card): group 19's
/// reset rehearsed by the real helper on a private bus (claimed, reset, given back to nvidia
/// and snd_hda_intel), said in the window; then the i350 given 4 virtual functions, the
/// kernel's count and the boot rule written, said in the window.
#[test]
fn host_readiness_rehearses_a_reset_and_sets_virtual_functions() {
    let bus = bus::Bus::start_spec(
        &|m| {
            for d in m
                .devices
                .iter_mut()
                .filter(|d| d.bdf.starts_with("0000:09:00."))
            {
                d.driver = Some("igb".into());
                let c = d.config.get_or_insert_with(Default::default);
                c.full = true;
                c.port_type = Some(passage_core::config::PortType::Endpoint);
                c.sriov_total_vfs = 8;
            }
        },
        &|root| {
            std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
            std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-27-amd64\n").unwrap();
            for f in ["0000:09:00.0", "0000:09:00.1"] {
                let dev = root.join("sys/bus/pci/devices").join(f);
                std::fs::write(dev.join("sriov_totalvfs"), "8\n").unwrap();
                std::fs::write(dev.join("sriov_numvfs"), "0\n").unwrap();
            }
        },
    );
    let s = Session::launch(Launch {
        tree: Some(&bus.root()),
        atspi: true,
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
        ..Default::default()
    });
    s.until("the cards", |p| p["loaded"] == true);
    let before = (bus.driver("0000:0b:00.0"), bus.driver("0000:0b:00.1"));
    assert_eq!(before.0.as_deref(), Some("nvidia"));
    let out = s.atspi("readiness-rehearse-and-vfs");
    assert!(
        out.contains("said: Group 19 survives a guest's reboot."),
        "{out}"
    );
    assert!(
        out.contains("pressed: Set the virtual functions of 0000:09:00.0"),
        "{out}"
    );
    let p = s.until("the VFs set, said in the window", |p| {
        p["texts"]["readiness"]
            .as_str()
            .is_some_and(|t| t.contains("virtual functions now") || t.contains("rror"))
    });
    let said = p["texts"]["readiness"].as_str().unwrap().to_string();
    assert!(
        said.contains("0000:09:00.0 has 4 virtual functions now"),
        "{said}"
    );
    let numvfs = bus
        .root()
        .join("sys/bus/pci/devices/0000:09:00.0/sriov_numvfs");
    assert_eq!(std::fs::read_to_string(numvfs).unwrap().trim(), "4");
    assert!(bus
        .root()
        .join("etc/udev/rules.d/63-passage-sriov.rules")
        .exists());
    // The rehearsal ran before: kept per model and kernel, every member back where it was.
    let recs = std::fs::read_to_string(bus.state().join("resets.json")).unwrap();
    assert!(
        recs.contains("\"2206\"") && recs.contains("6.1.0-27-amd64"),
        "{recs}"
    );
    assert_eq!(
        (bus.driver("0000:0b:00.0"), bus.driver("0000:0b:00.1")),
        before
    );
}

/// Host Readiness's size for a resizable BAR, through AT-SPI: the RTX 3080's BAR 1 (8 GiB now,
/// 256 MiB to 8 GiB offered) gets 256 MiB for claims through the real helper; a claim then
/// resizes it and a release gives it its 8 GiB back.
#[test]
fn host_readiness_sets_the_size_claims_give_a_resizable_bar() {
    const GPU: &str = "0000:0b:00.0";
    let bus = bus::Bus::start_spec(&bus::resizable_gpu_bar, &|_| {});
    let s = Session::launch(Launch {
        tree: Some(&bus.root()),
        atspi: true,
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
        ..Default::default()
    });
    s.until("the cards", |p| p["loaded"] == true);
    let out = s.atspi("readiness-bar-size");
    assert!(
        out.contains("said: BAR 1 of 0000:0b:00.0 will be 256 MiB whenever Passage claims it"),
        "{out}"
    );
    let recs = std::fs::read_to_string(bus.state().join("bars.json")).unwrap();
    assert!(
        recs.contains("\"bar\": 1") && recs.contains("\"size\": 8"),
        "{recs}"
    );
    let bar1 = || -> u64 {
        let r = std::fs::read_to_string(
            bus.root()
                .join("sys/bus/pci/devices")
                .join(GPU)
                .join("resource"),
        )
        .unwrap();
        let f: Vec<u64> = r
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
            .collect();
        (f[1] - f[0] + 1) >> 20
    };
    assert_eq!(bar1(), 8192);
    let out = bus.passagectl(false, &["claim", "19"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(bar1(), 256);
    let out = bus.passagectl(false, &["release", "19"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(bar1(), 8192);
}

/// Host Readiness (Ctrl+Shift+R) on the demo host's tree driven by the real helper on a private
/// bus: the doctor's findings by topic, a Fix button on the one Passage can carry out (the
/// kernel line's vfio-pci.ids, with Debian's GRUB and a stand-in update-grub in the tree),
/// pressed from the keyboard: the helper changes /etc/default/grub, the window says so and
/// reads the host again, where the change now waits for a restart.
#[test]
fn host_readiness_lists_the_findings_and_fixes_one_through_the_helper() {
    let bus = bus::Bus::start_prepared(&|root| {
        let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
        std::fs::write(
            root.join("proc/cmdline"),
            format!("{} vfio-pci.ids=10de:1b80\n", cmdline.trim()),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("etc/default")).unwrap();
        std::fs::write(
            root.join("etc/default/grub"),
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt vfio-pci.ids=10de:1b80\"\nGRUB_CMDLINE_LINUX=\"\"\n",
        )
        .unwrap();
        let tool = root.join("usr/sbin/update-grub");
        std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
        std::fs::write(&tool, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    });
    let s = Session::launch(Launch {
        tree: Some(&bus.root()),
        env: vec![("DBUS_SYSTEM_BUS_ADDRESS", bus.address())],
        ..Default::default()
    });
    s.until("the cards", |p| p["loaded"] == true);
    s.xdotool(&["key", "ctrl+shift+r"]);
    let p = s.until("the readiness window with its findings", |p| {
        is_open(p, "readiness")
            && p["texts"]["readiness-codes"]
                .as_str()
                .is_some_and(|c| c.contains("vfio-pci-ids"))
    });
    let codes = p["texts"]["readiness-codes"].as_str().unwrap().to_string();
    assert!(codes.contains("boot-line"), "{codes}");
    std::thread::sleep(Duration::from_millis(600));
    s.screenshot("readiness");
    // The first Fix button has the keyboard: Space presses it.
    s.xdotool(&["key", "space"]);
    let p = s.until("the fix's outcome", |p| {
        p["texts"]["readiness"]
            .as_str()
            .is_some_and(|t| t.contains("Fixed vfio-pci-ids") || t.contains("failed"))
    });
    let said = p["texts"]["readiness"].as_str().unwrap().to_string();
    assert!(
        said.contains("Fixed vfio-pci-ids") && said.contains("Ran /usr/sbin/update-grub"),
        "{said}"
    );
    let grub = std::fs::read_to_string(bus.root().join("etc/default/grub")).unwrap();
    assert!(
        grub.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt\""),
        "{grub}"
    );
    // Read again: the change now waits for a restart.
    s.until("the findings read again", |p| {
        p["texts"]["readiness-codes"]
            .as_str()
            .is_some_and(|c| c.contains("boot-line-pending"))
    });
}
