//! The floor reader that `passagectl list` is measured against (benches/floor/floor.c,
//! docs/PERFORMANCE.md) must read the same facts Passage reads, or the comparison means
//! nothing: built with the system's C compiler and run on generated and recorded trees, it
//! finds every function, with the ids, class, group and driver the scanner finds.

mod common;
use common::*;
use passage_core::{scan, HostRoot};
use std::path::Path;
use std::process::Command;

fn floor_binary(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/floor/floor.c");
    let out = dir.join("floor");
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("the floor reader needs a C compiler, cc ({e}): apt-get install build-essential")
        });
    assert!(st.success(), "cc could not build {}", src.display());
    out
}

#[test]
fn the_floor_reader_reads_what_the_scanner_reads() {
    let bin_dir = tempfile::tempdir().unwrap();
    let floor = floor_binary(bin_dir.path());
    let mut specs = vec![(
        "sriov-farm-4x7".to_string(),
        passage_core::synth::sriov_farm(4, 7),
    )];
    specs.extend(machines());
    for (name, spec) in specs {
        let dir = tempfile::tempdir().unwrap();
        spec.write_tree(dir.path()).unwrap();
        let host = scan::scan(&HostRoot::open(dir.path()).unwrap()).unwrap();
        let out = Command::new(&floor).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "{name}: floor failed");
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        let want: Vec<String> = host
            .devices
            .values()
            .map(|d| {
                format!(
                    "{} {}:{} {} {:02x} {} {}",
                    d.address,
                    d.vendor_id,
                    d.device_id,
                    d.class,
                    d.header_type | if d.multifunction { 0x80 } else { 0 },
                    d.group.map(|g| g.0.to_string()).unwrap_or("-".into()),
                    d.driver.as_deref().unwrap_or("-")
                )
            })
            .collect();
        assert_eq!(lines, want, "{name}: the floor reader reads other facts");
    }
}
