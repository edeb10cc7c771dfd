//! What a release carries, checked on binaries built the way a release builds them (the
//! workspace without the tests' features; debug profile here, as the features and not the
//! profile decide what is compiled in):
//!
//! - the helper has no fake kernel: given `--root TREE` it reads the tree and refuses to claim,
//!   release or persist anything there, leaving every file as it was;
//! - the helper has no fault points (`PASSAGE_FAULT_AT` stops nothing);
//! - the app has no probe (no `PASSAGE_PROBE` file, no event FIFO), and links libadwaita.
//!
//! Each plain binary is built, copied aside, and the test build put back, in this one test, so
//! no other test sees a plain binary.

#[path = "common/bins.rs"]
mod bins;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `bin` without the tests' features and copies it to `dir`.
fn plain(bin: &str, dir: &Path) -> PathBuf {
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--bin",
            bin,
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .expect("running cargo");
    assert!(st.success(), "building the release shape of {bin} failed");
    let built = Path::new(bins::bin_dir()).join(bin);
    let out = dir.join(bin);
    std::fs::copy(&built, &out).unwrap();
    out
}

/// Every file under `root` with its contents (symlinks as their targets).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let key = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(key, t.to_string_lossy().as_bytes().to_vec());
            } else if meta.is_dir() {
                todo.push(p);
            } else {
                out.insert(key, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn contains(file: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(file).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_release_helper_only_reads_a_recorded_tree_and_a_release_app_has_no_probe() {
    let aside = tempfile::tempdir().unwrap();
    let helper = plain("passage-helper", aside.path());
    let app = plain("passage", aside.path());
    // Put the test builds back before anything can fail, for the tests that run after this one.
    let test_helper = bins::rebuild("passage-helper");
    let test_app = bins::rebuild("passage");

    // The fake kernel's own words and the probe's variable are in the test builds only.
    assert!(contains(Path::new(test_helper), "no such driver"));
    assert!(
        !contains(&helper, "no such driver"),
        "the release helper links the fake kernel"
    );
    // Nor do fault points stop a release helper: the variable that aims them is not in it.
    assert!(contains(Path::new(test_helper), "PASSAGE_FAULT_AT"));
    assert!(
        !contains(&helper, "PASSAGE_FAULT_AT"),
        "the release helper carries the fault points"
    );
    assert!(contains(Path::new(test_app), "PASSAGE_PROBE"));
    assert!(
        !contains(&app, "PASSAGE_PROBE"),
        "the release app carries the probe"
    );
    // The app is a libadwaita app: the dynamic linker loads libadwaita for it.
    let ldd = Command::new("ldd")
        .arg(&app)
        .output()
        .expect("ldd (libc-bin)");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        libs.lines()
            .any(|l| l.trim_start().starts_with("libadwaita-1.so")),
        "ldd passage does not list libadwaita:\n{libs}"
    );

    // The demo host as a tree; the plain helper is asked to change it in every way it can.
    let tree = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    passage_core::synth::MachineSpec::from_json(passage_core::demo::DEMO_HOST)
        .unwrap()
        .write_tree(&tree.path().join("host"))
        .unwrap();
    let root = tree.path().join("host");
    let before = snapshot(&root);
    assert!(
        before.len() > 100,
        "the recorded tree is too small: {}",
        before.len()
    );
    for args in [
        vec!["--claim", "19"],
        vec!["--release", "19"],
        vec!["--persist", "19"],
        vec!["--unpersist", "19"],
        vec!["--replay"],
        vec!["--reclaim"],
    ] {
        let o = Command::new(&helper)
            .arg("--root")
            .arg(&root)
            .arg("--state-dir")
            .arg(state.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded on a recorded tree");
        assert!(
            err.contains("is a recorded host")
                && err.contains("claims, releases and persists nothing"),
            "{args:?}: {err}"
        );
    }
    assert!(before == snapshot(&root), "the tree changed");
    // The helper lays out its own state directory, but writes nothing in it: no journal, no
    // claim record, no persisted group.
    let written: Vec<PathBuf> = snapshot(state.path())
        .into_keys()
        .filter(|p| !state.path().join(p).is_dir())
        .collect();
    assert!(written.is_empty(), "the helper wrote {written:?}");
}
