//! One book page per diagnostic code (`book/src/reference/diagnostics/CODE.md`, also
//! printed by `jobpool explain CODE`), and each page shows what the binary really prints.
//!
//! A page's example is its ```toml blocks, each starting with a `# FILE` comment line,
//! and one ```console block: `$ COMMAND`, then the expected output (stdout, then stderr,
//! colour off). `[..]` in an expected line matches any text (run ids, timings). The
//! files are written to an empty folder, the command is run there — `jobpool` is this
//! crate's binary, `custom_kinds` its example program that registers kinds — and the
//! output must match line by line, with the exit code the page states.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run_support::BIN;
use crate::transcripts::line_matches;

fn pages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/reference/diagnostics")
}

/// The codes with a page, from the file names.
fn page_codes() -> BTreeSet<String> {
    fs::read_dir(pages_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Every `jobpool::CODE` the source can print: string literals `"jobpool::CODE"` and
/// derive attributes `code(jobpool::CODE)`.
fn source_codes() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("jobpool::") {
                    let before = text[..i].chars().next_back();
                    if !matches!(before, Some('"') | Some('(')) {
                        continue;
                    }
                    let code: String = text[i + "jobpool::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '-' || *c == '_')
                        .collect();
                    let after = text[i + "jobpool::".len() + code.len()..].chars().next();
                    // A code ends the literal or the attribute; `jobpool::cli::...` paths don't.
                    if !code.is_empty() && matches!(after, Some('"') | Some(')')) {
                        out.insert(code);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[test]
fn every_code_the_source_prints_has_a_page_and_every_page_a_code() {
    let source = source_codes();
    let pages = page_codes();
    assert!(source.len() >= 30, "found only {source:?}");
    let missing: Vec<_> = source.difference(&pages).collect();
    let stale: Vec<_> = pages.difference(&source).collect();
    assert!(
        missing.is_empty(),
        "codes without a page in book/src/reference/diagnostics: {missing:?}"
    );
    assert!(stale.is_empty(), "pages for codes the source never prints: {stale:?}");
}

#[test]
fn every_page_is_in_the_summary_the_index_and_explain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let summary = fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap();
    let index = fs::read_to_string(root.join("book/src/reference/diagnostics.md")).unwrap();
    let listed = Command::new(BIN).arg("explain").output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for code in page_codes() {
        let link = format!("diagnostics/{code}.md");
        assert!(summary.contains(&format!("reference/{link}")), "{code} not in SUMMARY.md");
        assert!(index.contains(&format!("({link})")), "{code} not linked from diagnostics.md");
        assert!(
            listed.lines().any(|l| l.split_whitespace().next() == Some(code.as_str())),
            "`jobpool explain` does not list {code}:\n{listed}"
        );
        let page =
            Command::new(BIN).args(["explain", &format!("jobpool::{code}")]).output().unwrap();
        assert!(page.status.success());
        let text = fs::read_to_string(pages_dir().join(format!("{code}.md"))).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&page.stdout),
            text,
            "`jobpool explain {code}` is not its page"
        );
    }
}

#[test]
fn explain_with_an_unknown_code_is_an_error_with_a_suggestion() {
    let out = Command::new(BIN).args(["explain", "unknown_key"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no diagnostic code `unknown_key`"), "{err}");
    assert!(err.contains("did you mean `unknown-key`?"), "{err}");
}

/// A page's example: files, the command, the expected output and exit code.
struct Example {
    files: Vec<(String, String)>,
    command: String,
    expected: Vec<String>,
    exit_code: i32,
}

fn example(code: &str, text: &str) -> Example {
    let mut files = Vec::new();
    let mut console: Option<Vec<String>> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let fence = line.trim_end();
        if fence == "```toml" || fence == "```console" {
            let block: Vec<String> =
                lines.by_ref().take_while(|l| l.trim_end() != "```").map(str::to_string).collect();
            if fence == "```toml" {
                let name = block[0].strip_prefix("# ").unwrap_or_else(|| {
                    panic!("{code}: a toml block must start with `# FILE`, not {:?}", block[0])
                });
                files.push((
                    name.to_string(),
                    block[1..].iter().map(|l| format!("{l}\n")).collect(),
                ));
            } else {
                assert!(console.is_none(), "{code}: more than one console block");
                console = Some(block);
            }
        }
    }
    let console = console.unwrap_or_else(|| panic!("{code}: no ```console block"));
    let command = console[0].strip_prefix("$ ").expect("console starts with `$ `").to_string();
    let exit_code = text
        .rsplit("The command exits with code ")
        .next()
        .filter(|_| text.contains("The command exits with code "))
        .and_then(|t| t.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{code}: the page must say \"exits with code N.\""));
    Example { files, command, expected: console[1..].to_vec(), exit_code }
}

#[test]
fn every_page_shows_what_the_binary_prints() {
    let mut failures = Vec::new();
    let codes = page_codes();
    for code in &codes {
        let text = fs::read_to_string(pages_dir().join(format!("{code}.md"))).unwrap();
        let ex = example(code, &text);
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in &ex.files {
            fs::write(dir.path().join(name), body).unwrap();
        }
        let words = shlex::split(&ex.command).expect("the command splits like a shell line");
        let program = match words[0].as_str() {
            "jobpool" => PathBuf::from(BIN),
            "custom_kinds" => crate::custom_kinds::program().to_path_buf(),
            other => panic!("{code}: unknown program {other}"),
        };
        let out = Command::new(program)
            .args(&words[1..])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .output()
            .unwrap();
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<&str> = got.trim_end_matches('\n').lines().collect();
        let same = got.len() == ex.expected.len()
            && ex.expected.iter().zip(&got).all(|(want, line)| line_matches(want, line));
        if !same || out.status.code() != Some(ex.exit_code) {
            failures.push(format!(
                "== {code}.md: `{}` exited {:?} (page: {}) and printed:\n{}\n-- the page expects:\n{}",
                ex.command,
                out.status.code(),
                ex.exit_code,
                got.join("\n"),
                ex.expected.join("\n")
            ));
        }
    }
    assert!(codes.len() >= 30);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
