//! The docs tell the truth: every complete job file shown in the book and the README (a
//! ```toml block with a `[task]` table) passes `jobpool check`. Fragments (no `[task]`)
//! illustrate one key and are not checked alone; nor are files of a kind a program
//! registers (the stock binary does not know it).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::run_support::*;

/// The ```toml blocks of a markdown text.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_start().starts_with("```toml") => cur = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                out.push(std::mem::take(block));
                cur = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_job_file_in_the_book_and_readme_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for e in fs::read_dir(root.join("book/src"))
        .unwrap()
        .chain(fs::read_dir(root.join("book/src/reference")).unwrap())
    {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            pages.push(p);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in pages {
        let text = fs::read_to_string(&page).unwrap();
        for (n, block) in toml_blocks(&text).into_iter().enumerate() {
            if !block.lines().any(|l| l.trim() == "[task]") {
                continue;
            }
            // A kind a program registers (not `command` or `script`) needs that program.
            let builtin = block.lines().any(|l| {
                let l = l.replace(' ', "");
                l.starts_with("kind=\"command\"") || l.starts_with("kind=\"script\"")
            });
            if !builtin {
                continue;
            }
            // Files the snippet names (lines files, script files, globs' folders) exist
            // only in the reader's project: `check` is given the text alone, so make the
            // usual ones.
            let path = dir.path().join(format!("snippet-{checked}.toml"));
            let schema_free: String = block
                .lines()
                .filter(|l| !l.starts_with("#:schema"))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(&path, schema_free).unwrap();
            for f in ["inputs.txt", "tasks/score.rhai", "data/a.csv", "urls.txt", "seeds.txt"] {
                let p = dir.path().join(f);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, "1\n").unwrap();
            }
            let out =
                Command::new(BIN).arg("check").arg(&path).env("NO_COLOR", "1").output().unwrap();
            if !out.status.success() {
                failures.push(format!("{} block {n}:\n{block}\n{}", page.display(), stderr(&out)));
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} job files found in the docs");
    assert!(
        failures.is_empty(),
        "{} of {checked} doc job files fail `jobpool check`:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
