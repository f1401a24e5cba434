//! The dependency rule of docs/architecture.md, checked on the source: the pure core (`plan`,
//! `analysis`, `rollout`, `control`) names no I/O crate and its modules import each other
//! without a cycle. Unit-test modules (`#[cfg(test)]` to the end of a file, `tests.rs`) are
//! left out: tests may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CORE: [&str; 4] = ["plan", "analysis", "rollout", "control"];
const FORBIDDEN: [&str; 8] = [
    "tokio", "kube", "reqwest", "git2", "axum", "hyper", "std::fs", "std::net",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The production part of a file: everything before its `#[cfg(test)]` module.
fn production_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Whether `text` names `krate` as a path root (`use tokio::…`, `tokio::spawn`, `::tokio::…`),
/// not as the tail of another path (`crate::mesh::kube::…`) or part of a longer name.
fn names_crate(text: &str, krate: &str) -> bool {
    let needle = format!("{krate}::");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|line| {
            line.match_indices(&needle).any(|(i, _)| {
                let before = &line[..i];
                match before.chars().next_back() {
                    None => true,
                    Some(c) if c.is_alphanumeric() || c == '_' => false,
                    Some(':') => {
                        let rest = before.trim_end_matches(':');
                        rest.len() + 2 == before.len()
                            && !rest.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    }
                    Some(_) => true,
                }
            })
        })
}

fn core_files() -> BTreeMap<&'static str, Vec<PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    CORE.iter()
        .map(|m| {
            let mut files = Vec::new();
            rust_files(&src.join(m), &mut files);
            assert!(!files.is_empty(), "src/{m} has no Rust files");
            (*m, files)
        })
        .collect()
}

#[test]
fn the_pure_core_names_no_io_crate() {
    let mut offences = Vec::new();
    for (module, files) in core_files() {
        for f in files {
            let text = production_text(&f);
            for krate in FORBIDDEN {
                if names_crate(&text, krate) {
                    offences.push(format!("{} ({module}) uses {krate}", f.display()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "I/O in the pure core:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_io_check_sees_what_it_must() {
    assert!(names_crate("use tokio::sync::watch;", "tokio"));
    assert!(names_crate("let f = std::fs::read(p);", "std::fs"));
    assert!(names_crate("x: ::kube::Client", "kube"));
    assert!(!names_crate("use crate::mesh::kube_like::X;", "kube"));
    assert!(!names_crate("my_tokio::x", "tokio"));
}

/// Every `crate::<core module>` a core module's production code names.
fn core_edges() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (module, files) in core_files() {
        let set = edges.entry(module).or_default();
        for f in files {
            let text = production_text(&f);
            for other in CORE {
                if other != module && text.contains(&format!("crate::{other}")) {
                    set.insert(other);
                }
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<&'static str, BTreeSet<&'static str>>) -> Option<Vec<&'static str>> {
    fn visit(
        node: &'static str,
        edges: &BTreeMap<&'static str, BTreeSet<&'static str>>,
        path: &mut Vec<&'static str>,
    ) -> Option<Vec<&'static str>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new()))
}

#[test]
fn the_core_modules_import_each_other_without_a_cycle() {
    let edges = core_edges();
    assert!(
        edges.values().any(|s| !s.is_empty()),
        "no imports between core modules found at all: the scan is broken"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle in the pure core: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut edges: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
    edges.entry("plan").or_default().insert("analysis");
    edges.entry("analysis").or_default().insert("rollout");
    edges.entry("rollout").or_default().insert("plan");
    let cycle = find_cycle(&edges).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
}
