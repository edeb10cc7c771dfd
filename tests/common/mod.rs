//! Test support: host-root trees built from recorded real machines (tests/fixtures/machines,
//! transcribed from published listings, docs/TESTING.md) plus named scenarios on top.
#![allow(dead_code)]

pub mod bins;

use passage_core::explain::{self, GroupVerdict};
use passage_core::synth::MachineSpec;
use passage_core::{scan, Host, HostRoot};
use std::path::{Path, PathBuf};

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/machines")
}

/// Every recorded machine, by file stem.
pub fn machines() -> Vec<(String, MachineSpec)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((name, machine(&p)));
    }
    out
}

pub fn machine(p: &Path) -> MachineSpec {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    MachineSpec::from_json(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn load(name: &str) -> MachineSpec {
    machine(&fixtures_dir().join(format!("{name}.json")))
}

/// A built tree and the host scanned from it.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub host: Host,
}

impl Built {
    pub fn root(&self) -> HostRoot {
        HostRoot::open(self.dir.path()).expect("open root")
    }

    pub fn verdict_of(&self, addr: &str) -> GroupVerdict {
        let a = addr.parse().unwrap();
        let g = self
            .host
            .group_of(a)
            .unwrap_or_else(|| panic!("{addr} has no group"));
        explain::group(&self.host, g)
    }

    pub fn codes_of(&self, addr: &str) -> Vec<String> {
        self.verdict_of(addr)
            .reasons
            .iter()
            .map(|r| r.code.clone())
            .collect()
    }
}

pub fn build(spec: &MachineSpec) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    spec.write_tree(dir.path()).expect("write tree");
    let root = HostRoot::open(dir.path()).expect("open root");
    let host = scan::scan(&root).expect("scan");
    Built { dir, host }
}

pub fn passagectl() -> std::process::Command {
    let mut c = std::process::Command::new(bins::bin("passagectl"));
    c.env_remove("PASSAGE_ROOT")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE");
    c
}
