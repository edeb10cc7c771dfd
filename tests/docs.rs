//! The documentation stays true: every reason code the code can emit is documented, and the
//! architecture map names every source file.

use std::path::Path;

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

#[test]
fn every_reason_code_is_documented() {
    let src = read("src/core/src/explain.rs");
    let doc = read("docs/JSON.md");
    let mut codes = Vec::new();
    for (i, _) in src.match_indices("Reason::new(") {
        let rest = &src[i + 12..];
        let rest = rest.trim_start();
        if let Some(s) = rest.strip_prefix('"') {
            codes.push(s[..s.find('"').unwrap()].to_string());
        }
    }
    for c in [
        "root-filesystem",
        "system-filesystem",
        "shape-no-acs",
        "iommu-disabled-cmdline",
    ] {
        assert!(
            src.contains(&format!("\"{c}\"")),
            "{c} no longer in the code"
        );
        codes.push(c.to_string());
    }
    assert!(codes.len() > 30, "found only {codes:?}");
    for c in codes {
        assert!(
            doc.contains(&format!("`{c}`")),
            "reason code {c} is not in docs/JSON.md"
        );
    }
}

#[test]
fn every_plan_problem_code_is_documented() {
    let src = rs_files("src/core/src/plan")
        .into_iter()
        .chain(["src/core/src/plan.rs".to_string()])
        .filter(|f| Path::new(env!("CARGO_MANIFEST_DIR")).join(f).is_file())
        .map(|f| read(&f))
        .collect::<String>();
    let doc = read("docs/JSON.md");
    let mut codes = Vec::new();
    for kind in ["Problem::error(", "Problem::warning("] {
        for (i, _) in src.match_indices(kind) {
            let rest = src[i + kind.len()..].trim_start();
            if let Some(s) = rest.strip_prefix('"') {
                codes.push(s[..s.find('"').unwrap()].to_string());
            }
        }
    }
    assert!(codes.len() >= 20, "found only {codes:?}");
    for c in codes {
        assert!(
            doc.contains(&format!("| `{c}` |")),
            "plan problem code {c} is not in docs/JSON.md"
        );
    }
}

/// Every `.rs` file under `dir` (relative to the repository), recursively, sorted.
fn rs_files(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut todo = vec![root.join(dir)];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_architecture_map_names_every_source_file() {
    let doc = read("docs/ARCHITECTURE.md");
    let files = rs_files("src");
    assert!(files.len() > 30, "found only {files:?}");
    for rel in files {
        let file = rel.rsplit('/').next().unwrap();
        // A row may name several files of one folder: `src/core/src/export/qemu.rs`, `proxmox.rs`.
        let generic = matches!(file, "lib.rs" | "main.rs" | "mod.rs");
        assert!(
            doc.contains(&rel) || (!generic && doc.contains(&format!("`{file}`"))),
            "docs/ARCHITECTURE.md does not mention {rel}"
        );
    }
}
