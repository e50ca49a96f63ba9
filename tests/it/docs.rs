//! The documentation's relative links resolve inside the repository: a clone has nothing else,
//! so a link to a file beside the checkout (or a heading that was renamed) is a broken promise.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The documents a newcomer reads, relative to the repository root; plus every `docs/*.md`.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "ARCHITECTURE.md",
    "CHANGELOG.md",
    "stress/README.md",
    "stress/peers/README.md",
    "tests/autobahn/README.md",
    "tests/fuzz/README.md",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Markdown outside fenced code blocks (links in examples are not links).
fn prose(markdown: &str) -> String {
    let mut in_fence = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The targets of the inline links and images (`[text](target)`, `![alt](target)`).
fn link_targets(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &rest[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> HashSet<String> {
    prose(markdown)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Every broken relative link in `doc`, described.
fn broken_links(doc: &Path) -> Vec<String> {
    let root = root().canonicalize().unwrap();
    let markdown = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
    let dir = doc.parent().unwrap();
    let mut broken = Vec::new();
    for target in link_targets(&markdown) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else {
            dir.join(path)
        };
        let Ok(resolved) = file.canonicalize() else {
            broken.push(format!("{target}: no such file"));
            continue;
        };
        if !resolved.starts_with(&root) {
            broken.push(format!("{target}: outside the repository"));
            continue;
        }
        if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&resolved).unwrap();
            if !anchors(&text).contains(anchor) {
                broken.push(format!("{target}: no heading with that anchor"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = root();
    let mut docs: Vec<PathBuf> = DOCUMENTS.iter().map(|d| root.join(d)).collect();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(
        pages.len() >= 4,
        "docs/ should hold the user docs: {pages:?}"
    );
    docs.extend(pages);
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in &docs {
        let markdown = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        checked += link_targets(&markdown).len();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        problems.extend(
            broken_links(doc)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn link_checker_catches_what_it_should() {
    let md = "[a](docs/x.md) ![b](img.png \"t\") [c](https://e.example) [d](#top)\n\
              ```\n[not](a-link)\n```\n";
    assert_eq!(
        link_targets(md),
        ["docs/x.md", "img.png", "https://e.example", "#top"]
    );
    assert_eq!(
        slug(" 9. Accounts (self-service)"),
        "9-accounts-self-service"
    );
    assert_eq!(slug("Behind nginx"), "behind-nginx");
}
