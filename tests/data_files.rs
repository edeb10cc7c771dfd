//! Files the system reads are checked by the system's own tools: xmllint (against polkit's DTD
//! where it is installed), systemd-analyze verify, and an install into a temporary DESTDIR.

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
    for f in [
        "data/dbus/io.github.passage.Helper1.conf",
        "data/io.github.passage.Helper1.xml",
    ] {
        ok(Command::new("xmllint").arg("--noout").arg(repo().join(f)));
    }
    // Every action the helper checks is declared, and nothing else.
    let text = std::fs::read_to_string(&policy).unwrap();
    for a in [
        passage::names::ACTION_CLAIM,
        passage::names::ACTION_CLAIM_HOST_CRITICAL,
        passage::names::ACTION_PERSIST,
    ] {
        assert!(
            text.contains(&format!("id=\"{a}\"")),
            "{a} missing from the policy"
        );
    }
    assert_eq!(text.matches("<action id=").count(), 3);
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
    // The app id is one name everywhere (shared/CONTRACTS.md).
    let id = passage::names::APP_ID;
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
    for svg in [
        format!("assets/icons/hicolor/scalable/apps/{id}.svg"),
        format!("assets/icons/hicolor/symbolic/apps/{id}-symbolic.svg"),
    ] {
        ok(Command::new("xmllint").arg("--noout").arg(repo().join(svg)));
    }
}

#[test]
fn the_systemd_unit_verifies() {
    if !tool("systemd-analyze") {
        panic!("systemd-analyze is needed to check the unit (part of systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    let helper = Path::new(env!("CARGO_BIN_EXE_passage-helper"));
    for name in ["passage-helper.service", "passage-reclaim.service"] {
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
    // Install what is already built (the test binaries), not a second release build.
    let bins = Path::new(env!("CARGO_BIN_EXE_passagectl"))
        .parent()
        .unwrap();
    let make = |target: &str| {
        let mut c = Command::new("make");
        c.current_dir(repo())
            .arg(target)
            .arg(format!("DESTDIR={}", dest.path().display()))
            .arg("PREFIX=/opt/passage")
            .arg(format!("BINSRC={}", bins.display()))
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
        "usr/share/polkit-1/actions/io.github.passage.policy",
        "etc/libvirt/hooks/qemu.d/passage",
        "opt/passage/bin/passage",
        "opt/passage/share/applications/io.github.passage.Passage.desktop",
        "opt/passage/share/metainfo/io.github.passage.Passage.metainfo.xml",
        "opt/passage/share/icons/hicolor/scalable/apps/io.github.passage.Passage.svg",
        "opt/passage/share/icons/hicolor/symbolic/apps/io.github.passage.Passage-symbolic.svg",
        "opt/passage/share/locale/de/LC_MESSAGES/passage.mo",
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

fn placeholders(s: &str) -> std::collections::BTreeSet<String> {
    s.split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()))
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
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
