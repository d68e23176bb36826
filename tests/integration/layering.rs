//! Pins the layering of `src/`: which top-level module may use which, and no circles.
//! A new `use crate::x` that breaks the picture in the book's "Internals: architecture"
//! fails here, naming the file and line. Test code (`#[cfg(test)]` and `tests.rs`) may
//! use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module -> the modules it may use. Everything not listed uses nothing.
const ALLOWED: &[(&str, &[&str])] = &[
    ("source", &[]),
    ("spec", &["source"]),
    ("text", &[]),
    ("durable", &[]),
    ("model", &["text"]),
    ("record", &["model", "text"]),
    ("event", &["record"]),
    ("validate", &["source", "spec", "model", "record"]),
    ("plan", &["model", "text"]),
    ("sink", &["model", "record", "durable"]),
    ("store", &["model", "record", "text", "durable"]),
    ("process", &[]),
    ("pool", &["record", "process"]),
    ("task", &["model", "record", "pool", "process"]),
    // `plan` and `store`: the Slurm backend cuts the plan into its elements' slices and
    // reads the shard journals they write.
    ("backend", &["model", "plan", "record", "pool", "store", "task"]),
    ("runner", &["backend", "event", "model", "plan", "record", "store"]),
    ("watch", &["model", "plan", "record", "store"]),
    ("report", &["event", "model", "record", "store", "text"]),
    (
        "cli",
        &[
            "backend", "event", "model", "plan", "pool", "record", "runner", "sink", "source",
            "report", "spec", "store", "task", "validate", "watch",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(line, module)` for every `crate::module` in the non-test code of a file.
fn uses(text: &str) -> Vec<(usize, String)> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + 7..];
            let name: String =
                tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = tail;
        }
        // `use crate::{a, b}` groups.
        if let Some(at) = line.find("crate::{") {
            let group = &line[at + 8..];
            for part in group.split(['{', '}', ',', ' ']) {
                let name: String =
                    part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && part.starts_with(&name) {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

#[test]
fn modules_use_only_what_the_layering_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(m, deps)| (*m, deps.iter().copied().collect())).collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if matches!(top.as_str(), "lib" | "main") {
            continue;
        }
        let deps = allowed.get(top.as_str()).unwrap_or_else(|| {
            panic!("src/{} is in no layer: add `{top}` to ALLOWED", rel.display())
        });
        for (line, used) in uses(&fs::read_to_string(&f).unwrap()) {
            if used == top || used == "self" {
                continue;
            }
            graph.entry(top.clone()).or_default().insert(used.clone());
            if !deps.contains(used.as_str()) {
                wrong.push(format!("src/{}:{line}: `{top}` uses `{used}`", rel.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));

    // No circles: a topological order exists.
    let mut left = graph.clone();
    loop {
        let free: Vec<String> = left
            .keys()
            .filter(|m| left[*m].iter().all(|d| !left.contains_key(d)))
            .cloned()
            .collect();
        if free.is_empty() {
            break;
        }
        for m in free {
            left.remove(&m);
        }
    }
    assert!(left.is_empty(), "modules in a circle: {:?}", left.keys().collect::<Vec<_>>());
}

#[test]
fn the_scanner_sees_grouped_and_inline_uses() {
    let text = "use crate::{model::Job, record};\nfn f() { crate::pool::x(); }\n// crate::cli\n#[cfg(test)]\nuse crate::cli;";
    let names: Vec<String> = uses(text).into_iter().map(|(_, n)| n).collect();
    assert!(names.contains(&"model".to_string()) && names.contains(&"record".to_string()));
    assert!(names.contains(&"pool".to_string()));
    assert!(!names.contains(&"cli".to_string()));
}

#[test]
fn watch_does_not_print() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/watch");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for m in
            ["println!", "print!(", "eprintln!", "eprint!(", "std::io::stdout", "std::io::stderr"]
        {
            assert!(
                !code.contains(m),
                "{} uses {m}: the CLI prints, watch hands over",
                f.display()
            );
        }
    }
}

/// A program that wants only the pool builds without the command line, diagnostics,
/// scripting, watch or report stacks: `default-features = false` compiles the pool, the
/// records and their model alone.
#[test]
fn the_pool_builds_without_default_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--offline", "--lib", "--no-default-features"])
        .env("CARGO_TARGET_DIR", root.join("target/slim-check"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "normal", "--no-default-features", "--prefix", "none"])
        .current_dir(root)
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&tree.stdout);
    for heavy in ["clap ", "miette ", "rhai ", "notify ", "indicatif ", "plotters ", "schemars "] {
        assert!(!tree.contains(heavy), "the slim library pulls in {heavy}");
    }
    assert!(tree.contains("ipc-channel "), "{tree}");
}
