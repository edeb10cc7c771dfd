//! `list` and `explain` say the same bytes as before any speed work: the SHA-256 of every
//! output, on every recorded machine, an SR-IOV farm and the demo host, is kept in
//! tests/golden/outputs.sha256. The table was written by the build before the work on issue 15
//! (07a69d3); a deliberate change of output rewrites it:
//!
//!   PASSAGE_GOLDEN_WRITE=path/to/passagectl cargo test --test golden
//!
//! and the diff of that file goes with the change.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const TABLE: &str = "tests/golden/outputs.sha256";

fn sha256(bytes: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is needed");
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Every output of `bin` on one host: (name, digest).
fn outputs(bin: &str, host: &str, root: Option<&Path>, groups: &[String]) -> Vec<(String, String)> {
    let mut runs: Vec<(String, Vec<String>)> = vec![
        ("list".into(), vec!["list".into()]),
        ("list --json".into(), vec!["list".into(), "--json".into()]),
    ];
    for g in groups {
        runs.push((format!("explain {g}"), vec!["explain".into(), g.clone()]));
        runs.push((
            format!("explain {g} --json"),
            vec!["explain".into(), g.clone(), "--json".into()],
        ));
    }
    runs.into_iter()
        .map(|(what, args)| {
            let mut c = Command::new(bin);
            c.env_remove("PASSAGE_ROOT")
                .env("LC_ALL", "C.UTF-8")
                .env_remove("LANGUAGE");
            match root {
                Some(r) => c.arg("--root").arg(r),
                None => c.arg("--demo"),
            };
            let out = c.args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{host}: {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            (format!("{host} {what}"), sha256(&out.stdout))
        })
        .collect()
}

#[test]
fn list_and_explain_say_the_same_bytes_as_before() {
    let writer = std::env::var("PASSAGE_GOLDEN_WRITE").ok();
    let bin = writer
        .clone()
        .unwrap_or_else(|| bins::bin("passagectl").to_string());
    let mut specs = machines();
    specs.push((
        "sriov-farm-3x5".into(),
        passage_core::synth::sriov_farm(3, 5),
    ));
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (name, spec) in &specs {
        let dir = tempfile::tempdir().unwrap();
        spec.write_tree(dir.path()).unwrap();
        // Explain the first, a middle and the last group (where there are groups).
        let ids: Vec<u32> = {
            let mut v: Vec<u32> = spec.devices.iter().filter_map(|d| d.group).collect();
            v.sort();
            v.dedup();
            v
        };
        let picks: Vec<String> = match ids.len() {
            0 => vec![],
            n => {
                let mut p = vec![ids[0], ids[n / 2], ids[n - 1]];
                p.dedup();
                p.iter().map(|g| g.to_string()).collect()
            }
        };
        got.extend(outputs(&bin, name, Some(dir.path()), &picks));
    }
    got.extend(outputs(&bin, "demo", None, &["1".to_string()]));
    let table: String = got.iter().map(|(k, v)| format!("{v}  {k}\n")).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if writer.is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &table).unwrap();
        panic!("wrote {} outputs' digests to {TABLE} from {bin}; run again without PASSAGE_GOLDEN_WRITE", got.len());
    }
    let want = std::fs::read_to_string(&path).expect(TABLE);
    let want: BTreeMap<String, String> = want
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(d, k)| (k.to_string(), d.to_string()))
        .collect();
    assert!(
        want.len() > 60,
        "the table holds only {} outputs",
        want.len()
    );
    let differ: Vec<&String> = want
        .keys()
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    assert!(differ.is_empty(), "these outputs changed: {differ:?}");
    assert_eq!(got.len(), want.len(), "the set of outputs changed");
}
