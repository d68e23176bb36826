//! Rendering diagnostics for people: miette's graphical report, coloured when the stream
//! is a terminal and `NO_COLOR` is unset; otherwise plain, at a fixed width of 100
//! columns, so that output in files, pipes and tests is stable.

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

/// Fixed width of plain (non-terminal) output.
pub const PLAIN_WIDTH: usize = 100;

/// How to draw a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unicode, colour, the terminal's width.
    Terminal {
        /// Columns.
        width: usize,
    },
    /// Unicode, no colour, [`PLAIN_WIDTH`] columns.
    Plain,
}

/// `--color`: when diagnostics are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// When stderr is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always (also in pipes and files).
    Always,
    /// Never.
    Never,
}

/// The process's `--color` choice (set once by the command line).
static COLOR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Set the process's `--color` choice.
pub fn set_color(when: ColorWhen) {
    COLOR.store(when as u8, std::sync::atomic::Ordering::Relaxed);
}

impl Style {
    /// The style for stderr: with `--color auto` (the default), `Terminal` when stderr
    /// is a terminal and `NO_COLOR` is unset or empty, `Plain` otherwise; `--color always`
    /// and `never` decide alone.
    pub fn for_stderr() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match COLOR.load(std::sync::atomic::Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => std::io::stderr().is_terminal() && !no_color,
        };
        if color {
            let width = terminal_width().unwrap_or(PLAIN_WIDTH);
            Style::Terminal { width }
        } else {
            Style::Plain
        }
    }
}

fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only writes into the winsize struct we pass.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0)
            .then_some(ws.ws_col as usize)
    }
}

/// Render `diag` (with its related diagnostics) in `style`.
pub fn render_with(diag: &dyn Diagnostic, style: Style) -> String {
    let (theme, width) = match style {
        Style::Terminal { width } => (GraphicalTheme::unicode(), width),
        Style::Plain => (GraphicalTheme::unicode_nocolor(), PLAIN_WIDTH),
    };
    // Lines break at spaces only (see `words`): a path or a name with hyphens stays
    // whole, even when it is wider than the line, so that it can be copied.
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false)
        .with_break_words(false)
        .with_word_separator(textwrap::WordSeparator::Custom(words))
        .with_word_splitter(textwrap::WordSplitter::NoHyphenation);
    let mut out = String::new();
    if handler.render_report(&mut out, diag).is_err() {
        out = format!("error: {diag}\n");
    }
    out
}

/// Where a line of a message may break: at a run of spaces, except right after an opening
/// bracket (`{ value = ... }` never leaves a lone `{` at a line's end). Nowhere else: not
/// at a path's `/` or a name's `-`.
fn words(line: &str) -> Box<dyn Iterator<Item = textwrap::core::Word<'_>> + '_> {
    let bytes = line.as_bytes();
    let (mut start, mut at) = (0, 0);
    Box::new(std::iter::from_fn(move || {
        while at < bytes.len() {
            if bytes[at] != b' ' {
                at += 1;
                continue;
            }
            let word_end = at;
            while at < bytes.len() && bytes[at] == b' ' {
                at += 1;
            }
            let after_opening =
                word_end > start && matches!(bytes[word_end - 1], b'{' | b'[' | b'(');
            if !after_opening {
                // (Spaces and brackets are ASCII: these are char boundaries.)
                let word = textwrap::core::Word::from(&line[start..at]);
                start = at;
                return Some(word);
            }
        }
        (start < bytes.len()).then(|| {
            let word = textwrap::core::Word::from(&line[start..]);
            start = bytes.len();
            word
        })
    }))
}

/// Render `diag` for stderr ([`Style::for_stderr`]).
pub fn render(diag: &dyn Diagnostic) -> String {
    render_with(diag, Style::for_stderr())
}

/// The one-line note for a `*.toml` file of a folder that is not a job file (`check` and
/// `run` print it on stderr, so that no file is passed over unseen).
pub fn skipped_note(path: &std::path::Path) -> String {
    format!("note: skipped {}: not a job file (no `[task]` or other job key)", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error, Diagnostic)]
    #[error("{0} changed since run 20261201-051045-ab12 was submitted")]
    #[diagnostic(help("attach with the job file as it was: jobpool run --attach 20261201 {0}"))]
    struct Long(String);

    #[test]
    fn lines_break_at_spaces_but_not_after_an_opening_bracket() {
        let split = |line: &str| -> Vec<String> {
            words(line).map(|w| format!("{}|{}", w.word, w.whitespace)).collect()
        };
        assert_eq!(split("a b  c"), ["a| ", "b|  ", "c|"]);
        assert_eq!(
            split("one of: { value = ... }, [ 1, 2 ]"),
            ["one| ", "of:| ", "{ value| ", "=| ", "...| ", "},| ", "[ 1,| ", "2| ", "]|"]
        );
        assert_eq!(
            split("  lead /a-b/c-d.toml trail  "),
            ["|  ", "lead| ", "/a-b/c-d.toml| ", "trail|  "]
        );
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("é {  ü"), ["é| ", "{  ü|"]);
    }

    /// A path wider than the line stays whole (no break at its hyphens or slashes), and
    /// the words around it wrap only at spaces.
    #[test]
    fn paths_are_never_broken() {
        let path = "/home/someone/a-rather-long-checkout-name/target/tmp/jp-slurm-Xy12Ab/with-\
                    hyphenated-parts/and-yet-another-level/job.toml";
        let text = render_with(&Long(path.into()), Style::Plain);
        assert_eq!(text.matches(path).count(), 2, "{text}");
        let words: Vec<&str> =
            text.split_whitespace().filter(|w| !matches!(*w, "×" | "│" | "help:")).collect();
        let expected = format!(
            "{path} changed since run 20261201-051045-ab12 was submitted attach with the job \
             file as it was: jobpool run --attach 20261201 {path}"
        );
        assert_eq!(words.join(" "), expected, "{text}");
        for line in text.lines().filter(|l| !l.contains(path)) {
            assert!(line.chars().count() <= PLAIN_WIDTH, "{line:?} in {text}");
        }
    }
}
