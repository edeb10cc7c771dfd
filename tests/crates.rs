//! The house rules kept by the crate graph, checked on the graph cargo resolves: the core has
//! no GTK, no D-Bus and no async runtime; nothing but the app pulls GTK; only the helper pulls
//! polkit. (A rule in a Cargo.toml can be broken by one added line; this test says which.)

use std::collections::BTreeSet;
use std::process::Command;

/// The crates in `package`'s normal (non-dev, non-build) dependency tree.
fn tree(package: &str) -> BTreeSet<String> {
    let o = Command::new(env!("CARGO"))
        .args([
            "tree", "--quiet", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("running cargo tree");
    assert!(
        o.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let crates: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(
        crates.contains(package),
        "cargo tree did not list {package} itself"
    );
    crates
}

fn none_of(package: &str, forbidden: &[&str]) {
    let crates = tree(package);
    let found: Vec<&&str> = forbidden.iter().filter(|f| crates.contains(**f)).collect();
    assert!(found.is_empty(), "{package} depends on {found:?}");
}

const GTK: &[&str] = &[
    "gtk4",
    "gdk4",
    "relm4",
    "libadwaita",
    "glib",
    "gio",
    "cairo-rs",
    "pango",
];

#[test]
fn the_core_has_no_gtk_no_dbus_and_no_async_runtime() {
    none_of("passage-core", GTK);
    none_of("passage-core", &["zbus", "zbus_polkit", "tokio"]);
}

#[test]
fn only_the_app_pulls_gtk() {
    for p in ["passage-dbus", "passage-helper", "passagectl"] {
        none_of(p, GTK);
    }
    assert!(tree("passage-gui").contains("gtk4"));
}

#[test]
fn only_the_helper_asks_polkit() {
    for p in ["passage-core", "passage-dbus", "passagectl", "passage-gui"] {
        none_of(p, &["zbus_polkit"]);
    }
    assert!(tree("passage-helper").contains("zbus_polkit"));
}

#[test]
fn only_the_helper_links_the_claim_engine() {
    for p in ["passagectl", "passage-gui", "passage-dbus"] {
        none_of(p, &["passage-helper"]);
    }
}
