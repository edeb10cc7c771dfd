//! Files the system reads are checked by the system's own tools: xmllint (against polkit's DTD
//! where it is installed), systemd-analyze verify, and an install into a temporary DESTDIR.

#[path = "common/bins.rs"]
mod bins;

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{c:?} failed:\n{text}");
    text
}

#[test]
fn xml_files_are_valid() {
    assert!(
        tool("xmllint"),
        "xmllint is needed (apt-get install libxml2-utils)"
    );
    let policy = repo().join("data/polkit/io.github.passage.policy");
    let dtd = Path::new("/usr/share/polkit-1/policyconfig-1.dtd");
    if dtd.exists() {
        ok(Command::new("xmllint")
            .args(["--noout", "--dtdvalid"])
            .arg(dtd)
            .arg(&policy));
    } else {
        ok(Command::new("xmllint").arg("--noout").arg(&policy));
    }
    // The interface against D-Bus's introspection DTD (libdbus-1-dev ships it). The bus
    // policy only parses here: the busconfig.dtd D-Bus ships predates send_destination and
    // send_interface, which every real policy uses; its validator is dbus-daemon itself, which
    // loads it in tests/helper_bus.rs and refuses a policy it cannot read.
    let introspect = Path::new("/usr/share/xml/dbus-1/introspect.dtd");
    assert!(
        introspect.exists(),
        "{} is needed (./dev test installs libdbus-1-dev)",
        introspect.display()
    );
    ok(Command::new("xmllint")
        .args(["--noout", "--dtdvalid"])
        .arg(introspect)
        .arg(repo().join("data/io.github.passage.Helper1.xml")));
    ok(Command::new("xmllint")
        .arg("--noout")
        .arg(repo().join("data/dbus/io.github.passage.Helper1.conf")));
    // Every action the helper checks is declared, and nothing else.
    let text = std::fs::read_to_string(&policy).unwrap();
    for a in [
        passage_core::names::ACTION_CLAIM,
        passage_core::names::ACTION_CLAIM_HOST_CRITICAL,
        passage_core::names::ACTION_PERSIST,
        passage_core::names::ACTION_VERIFY,
        passage_core::names::ACTION_READ,
        passage_core::names::ACTION_FIX_BOOT_LINE,
        passage_core::names::ACTION_FIX_D3COLD,
        passage_core::names::ACTION_SET_VFS,
        passage_core::names::ACTION_SET_BAR_SIZE,
        passage_core::names::ACTION_REHEARSE_RESET,
    ] {
        assert!(
            text.contains(&format!("id=\"{a}\"")),
            "{a} missing from the policy"
        );
    }
    assert_eq!(text.matches("<action id=").count(), 10);
    // The prompts are translated (po/update-pot merges them from po/LANG.po) and keep the
    // details polkit fills in.
    for lang in languages() {
        let n = text
            .matches(&format!("<message xml:lang=\"{lang}\">"))
            .count();
        assert_eq!(n, 10, "{lang}: {n} of 10 polkit messages translated");
    }
    // Every prompt about a group names it and its devices (reading the host names none; a
    // device's own setting names the device).
    for action in text.split("<action id=").skip(1) {
        if action.starts_with(&format!("\"{}\"", passage_core::names::ACTION_READ)) {
            continue;
        }
        if action.starts_with(&format!("\"{}\"", passage_core::names::ACTION_FIX_D3COLD))
            || action.starts_with(&format!("\"{}\"", passage_core::names::ACTION_SET_VFS))
            || action.starts_with(&format!("\"{}\"", passage_core::names::ACTION_SET_BAR_SIZE))
        {
            for m in action.split("<message").skip(1) {
                assert!(m.contains("$(devices)"), "{m}");
            }
            continue;
        }
        // The boot line's prompt names the change and the finding instead.
        if action.starts_with(&format!(
            "\"{}\"",
            passage_core::names::ACTION_FIX_BOOT_LINE
        )) {
            for m in action.split("<message").skip(1) {
                assert!(m.contains("$(change)") && m.contains("$(code)"), "{m}");
            }
            continue;
        }
        for m in action.split("<message").skip(1) {
            assert!(m.contains("$(group)") && m.contains("$(devices)"), "{m}");
        }
    }
}

/// The languages in po/LINGUAS.
fn languages() -> Vec<String> {
    std::fs::read_to_string(repo().join("po/LINGUAS"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_translated_data_files_are_made_from_their_sources_and_the_translations() {
    // po/update-pot --check regenerates them and fails on any difference.
    ok(Command::new(repo().join("po/update-pot")).arg("--check"));
    let desktop =
        std::fs::read_to_string(repo().join("data/io.github.passage.Passage.desktop")).unwrap();
    let meta = std::fs::read_to_string(repo().join("data/io.github.passage.Passage.metainfo.xml"))
        .unwrap();
    for lang in languages() {
        for key in ["GenericName", "Comment", "Keywords"] {
            assert!(
                desktop.contains(&format!("\n{key}[{lang}]=")),
                "{key}[{lang}] missing"
            );
        }
        assert!(meta.contains(&format!("<summary xml:lang=\"{lang}\">")));
        assert!(meta.contains(&format!("<p xml:lang=\"{lang}\">")));
    }
}

#[test]
fn the_gsettings_schema_compiles_strictly_and_names_the_app() {
    assert!(
        tool("glib-compile-schemas"),
        "glib-compile-schemas is needed (libglib2.0-bin)"
    );
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}.gschema.xml", passage_core::names::APP_ID);
    std::fs::copy(repo().join("data").join(&name), dir.path().join(&name)).unwrap();
    ok(Command::new("glib-compile-schemas")
        .arg("--strict")
        .arg(dir.path()));
    assert!(dir.path().join("gschemas.compiled").is_file());
    let text = std::fs::read_to_string(dir.path().join(&name)).unwrap();
    assert!(text.contains(&format!("<schema id=\"{}\"", passage_core::names::APP_ID)));
    // The keys the app reads (src/gui/src/settings.rs).
    let code = std::fs::read_to_string(repo().join("src/gui/src/settings.rs")).unwrap();
    for key in [
        "window-width",
        "window-height",
        "window-maximized",
        "pane-position",
        "show-bridges",
        "last-plan",
    ] {
        assert!(text.contains(&format!("<key name=\"{key}\"")), "{key}");
        assert!(
            code.contains(&format!("\"{key}\"")),
            "the app never uses {key}"
        );
    }
}

#[test]
fn the_desktop_file_metainfo_and_icons_pass_their_validators() {
    assert!(
        tool("desktop-file-validate") && tool("appstreamcli"),
        "desktop-file-validate and appstreamcli are needed (./dev test installs desktop-file-utils and appstream)"
    );
    let desktop = repo().join("data/io.github.passage.Passage.desktop");
    let out = ok(Command::new("desktop-file-validate").arg(&desktop));
    assert!(!out.contains("error"), "{out}");
    let meta = repo().join("data/io.github.passage.Passage.metainfo.xml");
    ok(Command::new("appstreamcli")
        .args(["validate", "--no-net"])
        .arg(&meta));
    // The app id is one name everywhere (docs/CONTRACTS.md).
    let id = passage_core::names::APP_ID;
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains(&format!("<id>{id}</id>")));
    assert!(text.contains(&format!(
        "<launchable type=\"desktop-id\">{id}.desktop</launchable>"
    )));
    assert!(std::fs::read_to_string(&desktop)
        .unwrap()
        .contains(&format!("Icon={id}")));
    // Every screenshot the metainfo names is in the repository.
    for line in text.lines().filter(|l| l.contains("<image>")) {
        let file = line
            .split("/main/")
            .nth(1)
            .unwrap()
            .trim_end_matches("</image>")
            .trim();
        assert!(repo().join(file).is_file(), "{file} missing");
    }
    let mut svgs = vec![
        repo().join(format!("assets/icons/hicolor/scalable/apps/{id}.svg")),
        repo().join(format!(
            "assets/icons/hicolor/symbolic/apps/{id}-symbolic.svg"
        )),
    ];
    let classes: Vec<_> = std::fs::read_dir(repo().join("assets/icons/classes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(classes.len(), 7, "one icon per device class");
    svgs.extend(classes);
    for svg in svgs {
        ok(Command::new("xmllint").arg("--noout").arg(&svg));
        // Symbolic icons are recoloured through their fills: a stroke would not follow the
        // theme's colour.
        if svg.to_string_lossy().ends_with("-symbolic.svg") {
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(!text.contains("stroke"), "{}: strokes", svg.display());
        }
    }
}

#[test]
fn the_systemd_unit_verifies() {
    if !tool("systemd-analyze") {
        panic!("systemd-analyze is needed to check the unit (part of systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    let helper = Path::new(bins::bin("passage-helper"));
    for name in [
        "passage-helper.service",
        "passage-reclaim.service",
        "passage-initramfs.service",
        "passage-boot-line.service",
    ] {
        let unit = std::fs::read_to_string(repo().join(format!("data/systemd/{name}.in")))
            .unwrap()
            .replace("@LIBEXECDIR@", helper.parent().unwrap().to_str().unwrap());
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        ok(Command::new("systemd-analyze").arg("verify").arg(&path));
    }
}

#[test]
fn make_install_puts_every_file_in_its_place_and_uninstall_removes_them() {
    let dest = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    // Install what is already built (the test binaries), not a second release build.
    let bins = Path::new(bins::bin("passagectl")).parent().unwrap();
    let make = |target: &str| {
        let mut c = Command::new("make");
        c.current_dir(repo())
            .arg(target)
            .arg(format!("DESTDIR={}", dest.path().display()))
            .arg("PREFIX=/opt/passage")
            .arg(format!("BINSRC={}", bins.display()))
            .arg(format!("DOCSRC={}", docs.path().display()))
            .arg("CARGO=true");
        ok(&mut c)
    };
    make("install");
    let expect = [
        "opt/passage/bin/passagectl",
        "opt/passage/libexec/passage-helper",
        "opt/passage/share/dbus-1/interfaces/io.github.passage.Helper1.xml",
        "usr/share/dbus-1/system.d/io.github.passage.Helper1.conf",
        "usr/share/dbus-1/system-services/io.github.passage.Helper1.service",
        "usr/lib/systemd/system/passage-helper.service",
        "usr/lib/systemd/system/passage-reclaim.service",
        "usr/lib/systemd/system/passage-initramfs.service",
        "usr/lib/systemd/system/passage-boot-line.service",
        "usr/lib/systemd/system/multi-user.target.wants/passage-reclaim.service",
        "usr/lib/systemd/system/multi-user.target.wants/passage-boot-line.service",
        "usr/share/polkit-1/actions/io.github.passage.policy",
        "etc/libvirt/hooks/qemu.d/passage",
        "opt/passage/bin/passage",
        "opt/passage/share/applications/io.github.passage.Passage.desktop",
        "opt/passage/share/metainfo/io.github.passage.Passage.metainfo.xml",
        "opt/passage/share/icons/hicolor/scalable/apps/io.github.passage.Passage.svg",
        "opt/passage/share/icons/hicolor/symbolic/apps/io.github.passage.Passage-symbolic.svg",
        "opt/passage/share/locale/de/LC_MESSAGES/passage.mo",
        "opt/passage/share/glib-2.0/schemas/io.github.passage.Passage.gschema.xml",
        "opt/passage/share/man/man1/passagectl.1",
        "opt/passage/share/man/man1/passagectl-plan-assign.1",
        "opt/passage/share/man/man1/passage.1",
        "opt/passage/share/man/man8/passage-helper.8",
        "opt/passage/share/bash-completion/completions/passagectl",
        "opt/passage/share/bash-completion/completions/passage",
        "opt/passage/share/zsh/site-functions/_passagectl",
        "opt/passage/share/zsh/site-functions/_passage",
        "opt/passage/share/fish/vendor_completions.d/passagectl.fish",
        "opt/passage/share/fish/vendor_completions.d/passage.fish",
    ];
    for f in expect {
        assert!(dest.path().join(f).is_file(), "{f} not installed");
    }
    let act = std::fs::read_to_string(
        dest.path()
            .join("usr/share/dbus-1/system-services/io.github.passage.Helper1.service"),
    )
    .unwrap();
    assert!(
        act.contains("Exec=/opt/passage/libexec/passage-helper"),
        "{act}"
    );
    let hook = dest.path().join("etc/libvirt/hooks/qemu.d/passage");
    let text = std::fs::read_to_string(&hook).unwrap();
    assert!(
        text.contains("exec /opt/passage/bin/passagectl hook-qemu"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111,
        0o111,
        "libvirt runs only executable hooks"
    );
    let o = Command::new("sh").arg("-n").arg(&hook).output().unwrap();
    assert!(o.status.success(), "the hook is not valid sh");
    make("uninstall");
    for f in expect {
        assert!(!dest.path().join(f).exists(), "{f} left after uninstall");
    }
    // Nothing else is left either: only empty directories remain.
    let left: Vec<_> = walk(dest.path())
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect();
    assert!(left.is_empty(), "left after uninstall: {left:?}");
}

/// (msgid, msgstr) pairs of a .po file, continuation lines joined.
fn po_entries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut id, mut s, mut in_id, mut in_str) = (String::new(), String::new(), false, false);
    let unq = |l: &str| l.trim().trim_matches('"').to_string();
    for line in text.lines().chain(std::iter::once("")) {
        if let Some(r) = line.strip_prefix("msgid ") {
            if in_str {
                out.push((std::mem::take(&mut id), std::mem::take(&mut s)));
            }
            id = unq(r);
            (in_id, in_str) = (true, false);
        } else if let Some(r) = line.strip_prefix("msgstr ") {
            s = unq(r);
            (in_id, in_str) = (false, true);
        } else if line.starts_with('"') {
            if in_id {
                id.push_str(&unq(line));
            } else if in_str {
                s.push_str(&unq(line));
            }
        } else if in_str {
            out.push((std::mem::take(&mut id), std::mem::take(&mut s)));
            in_str = false;
        }
    }
    out
}

/// `{name}` (ours) and `$(name)` (polkit's, filled from the helper's details).
fn placeholders(s: &str) -> std::collections::BTreeSet<String> {
    let ours = s
        .split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()));
    let polkit = s
        .split("$(")
        .skip(1)
        .filter_map(|p| p.split_once(')').map(|(n, _)| format!("$({n})")));
    ours.chain(polkit)
        .filter(|n| {
            n.trim_start_matches("$(")
                .trim_end_matches(')')
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .collect()
}

#[test]
fn every_translation_keeps_the_placeholders_of_its_original() {
    let langs = std::fs::read_to_string(repo().join("po/LINGUAS")).unwrap();
    let mut checked = 0;
    for lang in langs
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let text = std::fs::read_to_string(repo().join(format!("po/{lang}.po"))).unwrap();
        for (id, s) in po_entries(&text) {
            if id.is_empty() || s.is_empty() {
                continue;
            }
            assert_eq!(
                placeholders(&id),
                placeholders(&s),
                "{lang}: “{s}” does not keep the placeholders of “{id}”"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} translations checked");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn man_pages_and_completions_are_read_by_mandoc_bash_fish_and_zsh() {
    for t in ["mandoc", "bash", "fish", "zsh"] {
        assert!(
            tool(t),
            "{t} is needed (./dev test installs mandoc, fish and zsh)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new(bins::bin("passagectl"))
        .arg("generate-docs")
        .arg(dir.path()));
    let man = dir.path().join("man");
    let mut pages: Vec<_> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    // One page per visible command, none for the hidden ones (the libvirt hook, this generator).
    for name in [
        "passagectl.1",
        "passagectl-list.1",
        "passagectl-explain.1",
        "passagectl-claim.1",
        "passagectl-plan.1",
        "passagectl-plan-assign.1",
        "passagectl-export.1",
        "passage.1",
        "passage-helper.8",
    ] {
        assert!(man.join(name).is_file(), "{name} missing: {pages:?}");
    }
    for hidden in ["passagectl-hook-qemu.1", "passagectl-generate-docs.1"] {
        assert!(
            !man.join(hidden).exists(),
            "{hidden} documents a hidden command"
        );
    }
    // mandoc reads each page and finds nothing wrong at warning level or above.
    // (clap_mangen spaces each possible value with .sp and .br, which mandoc calls redundant:
    // a matter of style, not of meaning, so that one warning is let through.)
    for p in &pages {
        let o = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(p)
            .output()
            .unwrap_or_else(|e| {
                panic!("mandoc is needed to check the man pages (apt-get install mandoc): {e}")
            });
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        // 0 clean, 2–4 findings (listed below); 5 and 6 mean mandoc could not do the check
        // (bad arguments, a system error), which must not pass as "nothing wrong".
        assert!(
            matches!(o.status.code(), Some(0..=4)),
            "mandoc could not check {}: {:?} {text}",
            p.display(),
            o.status
        );
        let wrong: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("skipping paragraph macro: br"))
            .collect();
        assert!(wrong.is_empty(), "{}: {wrong:?}", p.display());
    }
    // The pages carry this version's release date, the metainfo's too.
    let meta = std::fs::read_to_string(repo().join("data/io.github.passage.Passage.metainfo.xml"))
        .unwrap();
    assert!(meta.contains(&format!(
        "<release version=\"{}\" date=\"{}\">",
        env!("CARGO_PKG_VERSION"),
        passage_core::cli::RELEASE_DATE
    )));
    let page = |name: &str| {
        let o = Command::new("mandoc")
            .args(["-T", "utf8"])
            .arg(man.join(name))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).replace(['\u{8}'], "")
    };
    let export = page("passagectl-export.1");
    assert!(export.contains("kubevirt"), "{export}");
    assert!(page("passagectl.1").contains("passagectl-plan(1)"));

    let comp = dir.path().join("completions");
    // bash: the words a person gets after pressing Tab.
    let bash = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             _passagectl passagectl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            comp.join("bash/passagectl.bash").display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len().saturating_sub(2)],
        );
        ok(Command::new("bash").arg("-c").arg(script))
    };
    assert!(bash("passagectl pl").lines().any(|l| l == "plan"));
    let formats = bash("passagectl export --format ");
    for f in passage_core::export::Format::ALL {
        assert!(formats.lines().any(|l| l == f.as_str()), "{f:?}: {formats}");
    }
    // fish: its own completion query.
    let fish = ok(Command::new("fish")
        .args(["--no-config", "-c"])
        .arg(format!(
            "source {}; complete -C 'passagectl pl'",
            comp.join("fish/passagectl.fish").display()
        )));
    assert!(fish.lines().any(|l| l.starts_with("plan")), "{fish}");
    // zsh: the completion function parses.
    for f in ["_passagectl", "_passage"] {
        ok(Command::new("zsh").arg("-n").arg(comp.join("zsh").join(f)));
    }
}

#[test]
fn the_flatpak_manifest_parses_and_everything_it_names_exists() {
    assert!(
        tool("flatpak-builder"),
        "flatpak-builder is needed (./dev test installs it)"
    );
    let manifest = repo().join("flatpak/io.github.passage.Passage.yml");
    // (flatpak-builder makes its state directory where it runs: not in the checkout.)
    let scratch = tempfile::tempdir().unwrap();
    let shown = ok(Command::new("flatpak-builder")
        .current_dir(scratch.path())
        .arg("--show-manifest")
        .arg(&manifest));
    let json: serde_json::Value = serde_json::from_str(&shown[shown.find('{').unwrap()..])
        .unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert_eq!(json["id"], passage_core::names::APP_ID);
    assert_eq!(json["command"], "passage");
    let args: Vec<&str> = json["finish-args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for need in [
        format!("--system-talk-name={}", passage_core::names::BUS_NAME),
        "--system-talk-name=org.libvirt".to_string(),
    ] {
        assert!(args.contains(&need.as_str()), "{need} missing: {args:?}");
    }
    // Every source it names is here; every make target it runs exists.
    let module = &json["modules"][0];
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    for cmd in module["build-commands"].as_array().unwrap() {
        let cmd = cmd.as_str().unwrap();
        let target = cmd.split_whitespace().nth(1).unwrap();
        assert!(
            makefile.contains(&format!("\n{target}:")),
            "make {target}: no such target"
        );
    }
    // flatpak-builder read cargo-sources.json into the module's sources (so it exists and
    // parses); the checkout itself is the one directory source.
    let mut vendored = std::collections::BTreeMap::new();
    let mut dirs = 0;
    for s in module["sources"].as_array().unwrap() {
        match s["type"].as_str() {
            Some("dir") => {
                let rel = s["path"].as_str().unwrap();
                assert!(
                    repo()
                        .join("flatpak")
                        .join(rel)
                        .join("Cargo.toml")
                        .is_file(),
                    "the dir source {rel} is not the checkout"
                );
                dirs += 1;
            }
            Some("archive") => {
                let dest = s["dest"].as_str().unwrap();
                vendored.insert(
                    dest.trim_start_matches("cargo/vendor/").to_string(),
                    s["sha256"].as_str().unwrap().to_string(),
                );
            }
            Some("inline") => {}
            other => panic!("a source Passage does not expect: {other:?} {s}"),
        }
    }
    assert_eq!(dirs, 1);
    // The vendored crates are exactly Cargo.lock's, with its checksums.
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let mut locked = std::collections::BTreeMap::new();
    for pkg in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            pkg.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if let Some(sum) = field("checksum") {
            locked.insert(
                format!("{}-{}", field("name").unwrap(), field("version").unwrap()),
                sum,
            );
        }
    }
    let missing: Vec<_> = locked
        .iter()
        .filter(|(k, v)| vendored.get(*k) != Some(v))
        .collect();
    let extra: Vec<_> = vendored
        .keys()
        .filter(|k| !locked.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "flatpak/cargo-sources.json is stale (run flatpak/update-cargo-sources): \
         missing or changed {missing:?}, not in Cargo.lock {extra:?}"
    );
}
