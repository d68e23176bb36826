//! `jobpool explain CODE`: the book's page for a diagnostic code, as `rustc --explain`
//! does. The pages are `book/src/reference/diagnostics/CODE.md`, compiled in, so the
//! binary and the book say the same thing (a test runs every page's example).

use std::io::Write;

use clap::Args;

/// Arguments of `jobpool explain`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  jobpool explain unknown-key\n  jobpool explain jobpool::bad-duration\n  jobpool explain            # every code, one line each"
)]
pub struct ExplainArgs {
    /// A diagnostic code, with or without `jobpool::` (as printed above each error).
    #[arg(value_name = "CODE")]
    pub code: Option<String>,
}

/// Every diagnostic code and its page, sorted by code.
pub const PAGES: &[(&str, &str)] = &[
    ("args-name", include_str!("../../book/src/reference/diagnostics/args-name.md")),
    ("args-not-table", include_str!("../../book/src/reference/diagnostics/args-not-table.md")),
    ("bad-duration", include_str!("../../book/src/reference/diagnostics/bad-duration.md")),
    ("bad-glob", include_str!("../../book/src/reference/diagnostics/bad-glob.md")),
    ("bad-param", include_str!("../../book/src/reference/diagnostics/bad-param.md")),
    ("bad-range", include_str!("../../book/src/reference/diagnostics/bad-range.md")),
    ("bad-tuples", include_str!("../../book/src/reference/diagnostics/bad-tuples.md")),
    ("bad-value", include_str!("../../book/src/reference/diagnostics/bad-value.md")),
    ("empty-param", include_str!("../../book/src/reference/diagnostics/empty-param.md")),
    ("empty-range", include_str!("../../book/src/reference/diagnostics/empty-range.md")),
    ("glob-empty", include_str!("../../book/src/reference/diagnostics/glob-empty.md")),
    ("invalid-job", include_str!("../../book/src/reference/diagnostics/invalid-job.md")),
    ("io", include_str!("../../book/src/reference/diagnostics/io.md")),
    ("missing-argument", include_str!("../../book/src/reference/diagnostics/missing-argument.md")),
    ("missing-file", include_str!("../../book/src/reference/diagnostics/missing-file.md")),
    ("missing-key", include_str!("../../book/src/reference/diagnostics/missing-key.md")),
    ("out-of-range", include_str!("../../book/src/reference/diagnostics/out-of-range.md")),
    ("override", include_str!("../../book/src/reference/diagnostics/override.md")),
    ("program-or-shell", include_str!("../../book/src/reference/diagnostics/program-or-shell.md")),
    ("run", include_str!("../../book/src/reference/diagnostics/run.md")),
    ("script-or-file", include_str!("../../book/src/reference/diagnostics/script-or-file.md")),
    ("script-syntax", include_str!("../../book/src/reference/diagnostics/script-syntax.md")),
    ("syntax", include_str!("../../book/src/reference/diagnostics/syntax.md")),
    ("task-failed", include_str!("../../book/src/reference/diagnostics/task-failed.md")),
    ("template", include_str!("../../book/src/reference/diagnostics/template.md")),
    ("too-large", include_str!("../../book/src/reference/diagnostics/too-large.md")),
    ("unknown-argument", include_str!("../../book/src/reference/diagnostics/unknown-argument.md")),
    ("unknown-key", include_str!("../../book/src/reference/diagnostics/unknown-key.md")),
    ("unknown-kind", include_str!("../../book/src/reference/diagnostics/unknown-kind.md")),
    (
        "unknown-placeholder",
        include_str!("../../book/src/reference/diagnostics/unknown-placeholder.md"),
    ),
    ("wrong-type", include_str!("../../book/src/reference/diagnostics/wrong-type.md")),
    ("zip-lengths", include_str!("../../book/src/reference/diagnostics/zip-lengths.md")),
];

/// The page of `code` (`unknown-key` or `jobpool::unknown-key`).
pub fn page(code: &str) -> Option<&'static str> {
    let code = code.trim();
    let code = code.strip_prefix("jobpool::").unwrap_or(code);
    PAGES.iter().find(|(c, _)| *c == code).map(|(_, text)| *text)
}

/// The one-line title of a page: its first heading, after the code.
fn title(text: &str) -> &str {
    let first = text.lines().next().unwrap_or("");
    first.split_once(": ").map_or(first, |(_, t)| t)
}

/// Print one page, or every code with its title; exit 2 for an unknown code.
pub fn run(args: ExplainArgs) -> u8 {
    let mut out = std::io::stdout().lock();
    let Some(code) = args.code else {
        let width = PAGES.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        for (c, text) in PAGES {
            if writeln!(out, "{c:<width$}  {}", title(text)).is_err() {
                break;
            }
        }
        return super::EXIT_OK;
    };
    match page(&code) {
        Some(text) => {
            let _ = out.write_all(text.as_bytes());
            super::EXIT_OK
        }
        None => {
            let wanted = code.trim().trim_start_matches("jobpool::");
            let close = PAGES
                .iter()
                .map(|(c, _)| (strsim::jaro_winkler(wanted, c), *c))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| c);
            let hint = close.map_or(String::new(), |c| format!("did you mean `{c}`? "));
            eprintln!(
                "error: no diagnostic code `{code}`\n  help: {hint}`jobpool explain` lists every code"
            );
            super::EXIT_INVALID
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_with_or_without_the_prefix() {
        assert!(page("unknown-key").unwrap().starts_with("# `jobpool::unknown-key`"));
        assert_eq!(page("jobpool::unknown-key"), page(" unknown-key "));
        assert!(page("unknown_key").is_none());
    }

    #[test]
    fn every_page_starts_with_its_code() {
        for (code, text) in PAGES {
            assert!(text.starts_with(&format!("# `jobpool::{code}`: ")), "{code}");
            assert!(!title(text).is_empty(), "{code}");
        }
    }
}
