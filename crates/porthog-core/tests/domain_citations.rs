//! Code cites the allocation rules as `docs/DOMAIN.md §N` or `§N.M`: every cited section must
//! exist there (issue 8: files cited a DOMAIN.md the project did not have).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "md") {
            out.push(path);
        }
    }
}

#[test]
fn every_cited_domain_section_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let domain = std::fs::read_to_string(root.join("docs/DOMAIN.md")).expect("docs/DOMAIN.md");
    let sections: Vec<String> = domain
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_owned())
        .collect();
    let mut files = Vec::new();
    sources(&root.join("crates"), &mut files);
    sources(&root.join("docs"), &mut files);
    let mut cited = 0;
    for file in files {
        if file.ends_with("domain_citations.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if !line.contains("DOMAIN.md") {
                continue;
            }
            for part in line.split('§').skip(1) {
                let number: String =
                    part.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
                let number = number.trim_end_matches('.');
                cited += 1;
                assert!(
                    sections.iter().any(|s| s == number),
                    "{}:{}: cites DOMAIN.md §{number}, which docs/DOMAIN.md does not have",
                    file.display(),
                    n + 1
                );
            }
        }
    }
    assert!(cited >= 8, "only {cited} citations found: is the scan looking in the right place?");
}
