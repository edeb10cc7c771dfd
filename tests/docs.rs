//! The documentation stays true: every reason code the code can emit is documented, and the
//! architecture map names every source file.

use std::path::Path;

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

#[test]
fn every_reason_code_is_documented() {
    let src = read("src/explain.rs");
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
    let src = read("src/plan.rs");
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

#[test]
fn the_architecture_map_names_every_source_file() {
    let doc = read("docs/ARCHITECTURE.md");
    for dir in ["src", "src/bin", "src/export"] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "lib.rs" {
                let file = p.file_name().unwrap().to_string_lossy().into_owned();
                let rel = format!("{dir}/{file}");
                // A row may name several files of one folder: `src/export/qemu.rs`, `proxmox.rs`.
                assert!(
                    doc.contains(&rel) || (dir != "src" && doc.contains(&format!("`{file}`"))),
                    "docs/ARCHITECTURE.md does not mention {rel}"
                );
            }
        }
    }
}
