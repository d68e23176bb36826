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

/// Every relative link of the book and the README points at a file that exists (and
/// every chapter is in SUMMARY.md), so the built book has no broken link.
#[test]
fn the_book_has_no_broken_links() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("book/src");
    let pages = crate::transcripts::pages();
    let summary = fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let tail = &rest[at + 2..];
                let Some(end) = tail.find(')') else { break };
                let target = &tail[..end];
                rest = &tail[end..];
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let file = target.split('#').next().unwrap();
                if file.is_empty() {
                    continue;
                }
                let resolved = page.parent().unwrap().join(file);
                if !resolved.exists() {
                    broken
                        .push(format!("{}: {target}", page.strip_prefix(root).unwrap().display()));
                }
            }
        }
        if page.starts_with(&src) && !page.ends_with("SUMMARY.md") {
            let rel = page.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if !summary.contains(&format!("({rel})")) {
                broken.push(format!("{rel} is not in SUMMARY.md"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The tutorial's job files shown in "Coming from Python's Pool" are the files in `jobs/`
/// (without their comment lines), so the page cannot drift from what runs.
#[test]
fn the_python_chapter_shows_the_seed_job_files_as_they_are() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = fs::read_to_string(root.join("book/src/coming-from-python.md")).unwrap();
    let blocks = toml_blocks(&page);
    for name in ["seed-apply", "seed-map", "seed-starmap"] {
        let file = fs::read_to_string(root.join(format!("jobs/{name}.toml"))).unwrap();
        let code: Vec<&str> = file.lines().filter(|l| !l.starts_with('#')).collect();
        let code = code.join("\n").trim().to_string();
        assert!(
            page.contains(&format!("`jobs/{name}.toml`")),
            "the chapter does not name jobs/{name}.toml"
        );
        assert!(
            blocks.iter().any(|b| b.trim() == code),
            "the chapter's copy of jobs/{name}.toml differs from the file:\n{code}"
        );
    }
}
