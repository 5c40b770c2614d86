//! The engine's modules import only downwards (the drawing in the crate docs): a flow uses the
//! flows and helpers below it, never one above it or beside it. Read from the sources, so a
//! `use` that runs upward fails here, not in review.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may use those of lower layers only.
const LAYERS: [(&str, u8); 12] = [
    ("core", 0),
    ("report", 0),
    ("salesforce_io", 0),
    ("spool", 0),
    ("lists", 1),
    ("discovery", 1),
    ("campaign", 2),
    ("webhook", 2),
    ("autocreate", 2),
    ("tick", 3),
    ("admin", 3),
    ("lib", 4),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module `{module}` has no layer: add it to LAYERS and to the crate docs"))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names as `crate::<module>` in its code (comments left out).
fn crate_paths(text: &str) -> Vec<String> {
    let mut named = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name.chars().next().is_some_and(char::is_lowercase) {
                named.push(name);
            } else if let Some(group) = rest.strip_prefix('{') {
                let inside = group.split('}').next().unwrap_or_default();
                named.extend(
                    inside
                        .split(',')
                        .map(|part| part.trim().split("::").next().unwrap_or_default().to_owned())
                        .filter(|name| name.chars().next().is_some_and(char::is_lowercase)),
                );
            }
        }
    }
    named
}

#[test]
fn no_module_of_the_engine_imports_upward_or_sideways() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            if used != module && layer(&used) >= layer(&module) {
                wrong.push(format!("{}: {module} uses {used}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run upward or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_the_imports_it_checks() {
    assert_eq!(
        crate_paths("use crate::core::{Engine, EngineError};\nuse crate::{lists::Lists, report};\n// crate::tick"),
        ["core", "lists", "report"]
    );
}
