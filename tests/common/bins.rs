//! The workspace's binaries, as the tests run them. They live in other crates of the workspace
//! (src/ctl, src/helper, src/gui), so cargo does not hand their paths to these tests: the first
//! call for each builds it — with the test-only part a release leaves out (the helper's fake
//! kernel, the app's probe) — and returns its path in this build's target directory. Under
//! `./dev test` they are built already and this is a no-op check.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The features the test binaries are built with (and only they); `./dev test` reads this line.
pub const TEST_FEATURES: &str =
    "passage-helper/fake-kernel,passage-helper/fault-points,passage-gui/probe";

/// target/<profile>, where cargo puts the binaries: this test is target/<profile>/deps/NAME-HASH.
fn dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf()
}

/// target/<profile> as a string: where every workspace binary lands.
pub fn bin_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| dir().to_string_lossy().into_owned())
}

fn build(name: &str) -> &'static str {
    // The whole workspace's features, resolved once for every binary (as `./dev test` builds
    // them), so no two builds fight over a dependency's features; only `name` is compiled.
    let st = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--workspace", "--bin", name])
        .args(["--features", TEST_FEATURES, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()
        .expect("running cargo to build the binary");
    assert!(st.success(), "building {name} failed");
    let p = dir().join(name);
    assert!(p.is_file(), "{} was not built", p.display());
    // Leaked once per binary and process: a test asks for a handful of paths.
    Box::leak(p.to_string_lossy().into_owned().into_boxed_str())
}

/// The path of workspace binary `name` (`passagectl`, `passage-helper`, `passage`), built (or
/// found up to date) on first use in this test process.
pub fn bin(name: &str) -> &'static str {
    static BUILT: OnceLock<Mutex<Vec<(String, &'static str)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p;
    }
    let p = build(name);
    built.push((name.to_string(), p));
    p
}

/// Builds `name` with the tests' features again (after something built it otherwise) and
/// returns its path.
pub fn rebuild(name: &str) -> &'static str {
    build(name)
}
