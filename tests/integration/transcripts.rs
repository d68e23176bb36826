//! The shell sessions shown in the book and the README are real: a ```console block
//! marked `<!-- transcript -->` is run, command by command, and must print what it shows.
//!
//! Within one page every marked block runs in order in one empty folder, so a page can
//! build on its earlier steps. A ```toml block marked `<!-- file: NAME -->` is written to
//! NAME at that point. In a transcript, `$ LINE` is a command, run by `sh -c` with this
//! crate's `jobpool` first on `PATH` (so globs and quotes work as they do for a reader),
//! colour off; the lines up to the next `$ ` are its output, stdout then stderr. In an
//! expected line `[..]` stands for any text (run ids, timings); a line `...` for any
//! number of lines. Every command must exit 0 unless its output ends with a line
//! `[exit N]`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run_support::BIN;

/// One step of a page.
#[derive(Debug)]
enum Step {
    File { name: String, text: String },
    Command { line: String, expected: Vec<String>, exit: i32, at: usize },
}

/// The steps of a page, in order.
fn steps(text: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut marker: Option<String> = None;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with("<!--") && line.ends_with("-->") {
            marker = Some(line.trim_start_matches("<!--").trim_end_matches("-->").trim().into());
            i += 1;
            continue;
        }
        if line.starts_with("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            let block = &lines[start..end.min(lines.len())];
            match marker.take().as_deref() {
                Some(m) if m.starts_with("file:") && line == "```toml" => out.push(Step::File {
                    name: m["file:".len()..].trim().to_string(),
                    text: block.iter().map(|l| format!("{l}\n")).collect(),
                }),
                Some("transcript") if line == "```console" => {
                    let mut cur: Option<(String, Vec<String>, usize)> = None;
                    for (k, l) in block.iter().enumerate() {
                        if let Some(cmd) = l.strip_prefix("$ ") {
                            out.extend(cur.take().map(finish));
                            cur = Some((cmd.to_string(), Vec::new(), start + k + 1));
                        } else if let Some((_, expected, _)) = &mut cur {
                            expected.push(l.to_string());
                        }
                    }
                    out.extend(cur.take().map(finish));
                }
                Some(other) => panic!("line {}: marker `{other}` before {line}", i),
                None => {}
            }
            i = end + 1;
            continue;
        }
        if !line.is_empty() {
            marker = None;
        }
        i += 1;
    }
    out
}

fn finish((line, mut expected, at): (String, Vec<String>, usize)) -> Step {
    let mut exit = 0;
    if let Some(n) =
        expected.last().and_then(|l| l.strip_prefix("[exit ")).and_then(|t| t.strip_suffix(']'))
    {
        exit = n.parse().expect("[exit N]");
        expected.pop();
    }
    Step::Command { line, expected, exit, at }
}

/// Does one output line match one expected line (`[..]`: any text)? Also the
/// diagnostic pages' matcher.
pub(crate) fn line_matches(pattern: &str, line: &str) -> bool {
    let (pattern, line) = (pattern.trim_end(), line.trim_end());
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let Some(mut rest) = line.strip_prefix(parts[0]) else { return false };
    for (i, part) in parts[1..].iter().enumerate() {
        if i == parts.len() - 2 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Do the output lines match the expected ones (`...`: any number of lines)?
fn output_matches(expected: &[String], got: &[&str]) -> bool {
    match expected.split_first() {
        None => got.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=got.len()).any(|skip| output_matches(rest, &got[skip..]))
        }
        Some((first, rest)) => {
            !got.is_empty() && line_matches(first, got[0]) && output_matches(rest, &got[1..])
        }
    }
}

/// The README and every chapter of the book, sorted (also the link check's pages).
pub(crate) fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut stack = vec![root.join("book/src")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                pages.push(p);
            }
        }
    }
    pages.sort();
    pages
}

#[test]
fn every_transcript_in_the_book_prints_what_it_shows() {
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut commands = 0;
    for page in pages() {
        let text = fs::read_to_string(&page).unwrap();
        let steps = steps(&text);
        if steps.is_empty() {
            continue;
        }
        let name = page.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
        let dir = tempfile::tempdir().unwrap();
        for step in steps {
            match step {
                Step::File { name, text } => {
                    let p = dir.path().join(name);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(p, text).unwrap();
                }
                Step::Command { line, expected, exit, at } => {
                    commands += 1;
                    let out = Command::new("sh")
                        .arg("-c")
                        .arg(&line)
                        .current_dir(dir.path())
                        .env("PATH", &path)
                        .env("NO_COLOR", "1")
                        .env_remove("CLICOLOR_FORCE")
                        .output()
                        .unwrap();
                    let all = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let got: Vec<&str> = all.trim_end_matches('\n').lines().collect();
                    let got = if all.trim_end_matches('\n').is_empty() { vec![] } else { got };
                    if !output_matches(&expected, &got) || out.status.code() != Some(exit) {
                        failures.push(format!(
                            "== {name}:{at}: `$ {line}` exited {:?} (expected {exit}); printed:\n{}\n-- the page shows:\n{}",
                            out.status.code(),
                            got.join("\n"),
                            expected.join("\n")
                        ));
                    }
                }
            }
        }
    }
    assert!(commands >= 10, "only {commands} transcript commands found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_transcript_matcher_can_fail() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(output_matches(&e(&["a", "...", "z"]), &["a", "b", "c", "z"]));
    assert!(output_matches(&e(&["a", "...", "z"]), &["a", "z"]));
    assert!(!output_matches(&e(&["a", "...", "z"]), &["a", "b"]));
    assert!(!output_matches(&e(&["a"]), &["a", "b"]));
    assert!(line_matches("run [..] in [..]s", "run 1 in 0.2s"));
    assert!(!line_matches("3 ok in [..]", "4 ok in 0.1s"));
    let s = steps(
        "<!-- file: a.toml -->\n```toml\nx = 1\n```\n\n<!-- transcript -->\n```console\n$ false\n[exit 1]\n```\n```console\n$ ignored\n```\n",
    );
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(matches!(&s[1], Step::Command { exit: 1, line, .. } if line == "false"));
}
