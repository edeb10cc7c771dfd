//! The documentation stays true: every reason code the code can emit is documented, the
//! architecture map names every source file, and the project cites only its own files.

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

/// The project stands on its own: no file cites a folder outside the repository (design notes,
/// contracts and fixtures live in `docs/` and `tests/fixtures/`). Skips what git ignores
/// (`target/`, caches) and `flatpak/cargo-sources.json`, whose crate paths are not citations.
#[test]
fn the_project_cites_only_its_own_files() {
    // Spelled in two halves so this file does not cite it either.
    let needle = ["shared", "/"].concat();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let skip = [
        "target",
        ".git",
        ".flatpak-builder",
        "tests/vm/cache",
        "flatpak/cargo-sources.json",
    ];
    let mut seen = 0;
    let mut hits = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let name = p.file_name().unwrap().to_string_lossy();
            if skip.contains(&rel.as_str()) || name.ends_with(".mo") || name.ends_with(".snap.new")
            {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else if p.is_file() {
                seen += 1;
                let bytes = std::fs::read(&p).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for (n, line) in text.lines().enumerate() {
                    if line.contains(&needle) {
                        hits.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(seen > 100, "walked only {seen} files");
    assert!(
        hits.is_empty(),
        "files cite {needle}…, a folder outside the repository (cite docs/ instead):\n{}",
        hits.join("\n")
    );
}
