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
fn the_architecture_map_names_every_source_file() {
    let doc = read("docs/ARCHITECTURE.md");
    for dir in ["src", "src/bin"] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "lib.rs" {
                let rel = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
                assert!(
                    doc.contains(&rel),
                    "docs/ARCHITECTURE.md does not mention {rel}"
                );
            }
        }
    }
}
