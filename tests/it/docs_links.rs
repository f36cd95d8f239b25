//! Every pointer to the documentation leads somewhere: a Markdown link in the
//! README and `docs/` names a file that exists and, with `#anchor`, a heading of
//! it; a citation in `conf/`, `deploy/`, `scripts/` and the code —
//! `(docs/configuration.md, API keys; Accounts)` — names a file that exists and
//! headings it has.

use std::path::{Path, PathBuf};

/// The anchors of a Markdown file: its headings' and its `<a id="…">`s.
fn anchors(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out: Vec<String> = headings(file).iter().map(|h| slug(h)).collect();
    for (at, _) in text.match_indices("<a id=\"") {
        if let Some(id) = text[at + 7..].split('"').next() {
            out.push(id.to_string());
        }
    }
    out
}

/// The headings of a Markdown file, as written (without the `#`s).
fn headings(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    out
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped,
/// spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn files_under(dir: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            files_under(&path.to_string_lossy(), out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_markdown_link_names_a_file_and_a_heading_that_exist() {
    let mut docs = vec![PathBuf::from("README.md")];
    files_under("docs", &mut docs);
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in docs
        .iter()
        .filter(|d| d.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(doc).unwrap();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap_or(Path::new("")).join(file)
            };
            checked += 1;
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", doc.display()));
            } else if !anchor.is_empty() && !anchors(&path).iter().any(|a| a == anchor) {
                broken.push(format!("{}: {target}: no such heading", doc.display()));
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn every_citation_of_the_docs_names_a_file_and_headings_that_exist() {
    let mut files = Vec::new();
    for dir in ["conf", "deploy", "scripts", "src", "benches"] {
        files_under(dir, &mut files);
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (at, _) in text.match_indices("docs/") {
            let rest = &text[at..];
            let Some(md) = rest.find(".md") else { continue };
            let name = &rest[..md + 3];
            if !name[5..md]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
            {
                continue;
            }
            checked += 1;
            let path = Path::new(name);
            if !path.exists() {
                broken.push(format!("{}: {name}: no such file", file.display()));
                continue;
            }
            // `(docs/x.md, Heading; Another)`: each heading must be one of its own.
            let after = &rest[md + 3..];
            let cited = after
                .strip_prefix(", ")
                .and_then(|t| t.split_once(')'))
                .map(|t| t.0);
            if let Some(cited) = cited {
                // A citation may run over lines of a comment: one line of words.
                let cited: String = cited
                    .lines()
                    .map(|l| l.trim().trim_start_matches(['/', '#', '-', '!']).trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                let have = headings(path);
                for heading in cited.split(';').map(str::trim) {
                    if !have.iter().any(|h| h.eq_ignore_ascii_case(heading)) {
                        broken.push(format!(
                            "{}: {name}, \"{heading}\": no such heading",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} citations found");
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn no_pointer_sends_a_reader_to_the_readme_for_what_lives_in_docs() {
    let mut files = Vec::new();
    for dir in ["conf", "deploy"] {
        files_under(dir, &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("README, \"") && !text.contains("in README.md"),
            "{}: points at the README for a section of docs/",
            file.display()
        );
    }
}
