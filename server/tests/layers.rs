//! The server's floors: every `crate::` path in `src/` must point to the module's own floor or
//! one below it, and the modules of one floor must not import each other in a loop. Run it
//! alone with `cargo test -p switchyard-server --test layers`; the fixture tests below show
//! the messages it fails with.
//!
//! A text check over the source rather than a crate per floor: one crate keeps the build
//! and the integration tests as they are, and this reads every `crate::a::…` path (in
//! `use` lines, grouped `use crate::{a, b}` and inline paths alike) in about a millisecond.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors, top to bottom, and the top-level modules on each. Keep in step with the
/// layout in `src/lib.rs` and the README.
const FLOORS: &[(&str, &[&str])] = &[
    ("app", &["app"]),
    ("transport", &["socket", "http"]),
    ("state", &["state", "gate"]),
    ("features", &["chat", "notifications", "presence", "ratelimit", "admin"]),
    ("delivery", &["delivery"]),
    ("redis", &["redis"]),
    ("ground", &["config", "error", "metrics", "telemetry", "protocol", "auth"]),
];

/// The floor of `module`: 0 is the top.
fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The top-level modules `source` names after `crate::`, comments left out.
fn imports(source: &str) -> BTreeSet<String> {
    let code: String = source.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        // `switchyard_crate::x` and the like are not ours.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first name of each item at depth one.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        found.insert(ident(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

fn ident(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// Every breach of the floors in `files` (top-level module, source): upward imports,
/// modules on no floor, and loops within a floor. Empty when the tree is layered.
fn breaches(files: &[(String, String)]) -> Vec<String> {
    let mut problems = BTreeSet::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in files {
        let Some(from) = floor(module) else {
            problems.insert(format!("module `{module}` is on no floor: add it to FLOORS in tests/layers.rs"));
            continue;
        };
        for target in imports(source) {
            if target == *module {
                continue;
            }
            let Some(to) = floor(&target) else {
                problems.insert(format!("module `{target}` is on no floor: add it to FLOORS in tests/layers.rs"));
                continue;
            };
            if to < from {
                problems.insert(format!(
                    "upward import: `{module}` ({}) uses `crate::{target}` ({})",
                    FLOORS[from].0, FLOORS[to].0
                ));
            } else if to == from {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // A loop needs edges within one floor (downward edges cannot close one).
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        if let Some(cycle) = find_cycle(&edges, start, &mut path) {
            // Reported once, from its smallest module.
            if cycle.iter().min() == Some(start) {
                problems.insert(format!("import cycle: {}", cycle.join(" -> ")));
            }
        }
    }
    problems.into_iter().collect()
}

/// A path from the last module of `path` back to `start`, if any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>, start: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
    let last = path.last().cloned().unwrap_or_default();
    for next in edges.get(&last).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_owned());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = find_cycle(edges, start, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

/// Every `.rs` file below `dir`, with the top-level module it belongs to.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("below src");
            let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            // The crate root and the binary see everything by definition.
            if module != "lib" && module != "main" {
                out.push((module, std::fs::read_to_string(&path).expect("readable source")));
            }
        }
    }
}

#[test]
fn server_imports_point_down_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 40, "read {} files", files.len());
    let problems = breaches(&files);
    assert!(problems.is_empty(), "the server's floors are breached:\n{}", problems.join("\n"));
}

fn fixture(files: &[(&str, &str)]) -> Vec<String> {
    breaches(&files.iter().map(|(m, s)| ((*m).to_owned(), (*s).to_owned())).collect::<Vec<_>>())
}

#[test]
fn an_upward_import_fails() {
    let problems = fixture(&[
        ("metrics", "use crate::error::ErrorCode;\nuse crate::delivery::Conn;\n"),
        ("chat", "fn f() { let _ = crate::state::AppState::new; }\n"),
        ("presence", "use crate::{error::StoreResult, app::{build, serve}};\n"),
    ]);
    assert_eq!(
        problems,
        [
            "upward import: `chat` (features) uses `crate::state` (state)",
            "upward import: `metrics` (ground) uses `crate::delivery` (delivery)",
            "upward import: `presence` (features) uses `crate::app` (app)",
        ]
    );
}

#[test]
fn a_cycle_within_a_floor_fails() {
    let problems = fixture(&[
        ("chat", "use crate::notifications::Inbox;\n"),
        ("notifications", "use crate::presence::Presence;\n"),
        ("presence", "use crate::chat::Chat;\n"),
        ("ratelimit", "use crate::error::StoreError;\n"),
    ]);
    assert_eq!(problems, ["import cycle: chat -> notifications -> presence -> chat"]);
}

#[test]
fn comments_and_other_crates_do_not_count_and_new_modules_need_a_floor() {
    let problems = fixture(&[
        ("error", "// see crate::app for the wiring\nuse switchyard_crate::x;\n"),
        ("newthing", "use crate::error::ApiError;\n"),
    ]);
    assert_eq!(problems, ["module `newthing` is on no floor: add it to FLOORS in tests/layers.rs"]);
}
