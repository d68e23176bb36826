//! The diagnostics of job files: one [`Problem`] per mistake, gathered in a
//! [`JobFileError`] so that a user sees every problem of a file at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, NamedSource, SourceCode, SourceSpan,
    SpanContents,
};

use crate::source::{Loc, Sources};

/// One mistake in a job file, pointing at the exact value.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The diagnostic code, e.g. `jobpool::unknown-key` (one book section per code).
    pub code: &'static str,
    /// A lowercase fragment saying what is wrong.
    pub message: String,
    /// What to do about it (valid choices, "did you mean").
    pub help: Option<String>,
    /// The source the labels point into (the file, or a `--set` override).
    pub source: Option<ProblemSource>,
    /// Labels, the first one primary.
    pub labels: Vec<LabeledSpan>,
    /// Which source the labels are in (0: the job file; 1..: `--set` overrides;
    /// `usize::MAX`: another file, see [`Problem::in_file`]).
    pub origin: usize,
}

impl Problem {
    /// A problem with no place (e.g. the file cannot be read).
    pub fn bare(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            help: None,
            source: None,
            labels: Vec::new(),
            origin: 0,
        }
    }

    /// A problem with a primary label at `loc`.
    pub fn at(
        sources: &Sources,
        code: &'static str,
        message: impl Into<String>,
        loc: &Loc,
        label: impl Into<String>,
    ) -> Self {
        let mut p = Problem::bare(code, message);
        p.source = Some(ProblemSource(sources.get(loc.origin)));
        p.origin = loc.origin;
        p.labels.push(LabeledSpan::new_primary_with_span(Some(label.into()), loc.span.clone()));
        p
    }

    /// A problem in another file than the job file (a script `file`), with a primary
    /// label at byte range `span` of `text`. It sorts after the job file's problems.
    pub fn in_file(
        code: &'static str,
        message: impl Into<String>,
        name: &str,
        text: &str,
        span: std::ops::Range<usize>,
        label: impl Into<String>,
    ) -> Self {
        let mut p = Problem::bare(code, message);
        p.source = Some(ProblemSource(NamedSource::new(name, Arc::<str>::from(text))));
        p.origin = usize::MAX;
        p.labels.push(LabeledSpan::new_primary_with_span(Some(label.into()), span));
        p
    }

    /// Where the problem is, for ordering: unplaced first, then by source, then offset.
    pub fn sort_key(&self) -> (bool, usize, usize) {
        let offset = self.labels.first().map_or(0, |l| l.offset());
        (self.source.is_some(), self.origin, offset)
    }

    /// Add a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Add a secondary label (ignored when `loc` is in another source than the primary).
    pub fn label(mut self, sources: &Sources, loc: &Loc, label: impl Into<String>) -> Self {
        if self.source.is_none() {
            self.source = Some(ProblemSource(sources.get(loc.origin)));
            self.origin = loc.origin;
        }
        if self.origin == loc.origin {
            self.labels.push(LabeledSpan::new_with_span(Some(label.into()), loc.span.clone()));
        }
        self
    }
}

/// A job file's text for diagnostics. It reports columns in characters, as editors
/// count them, where miette counts bytes (`é` is one column, not two).
#[derive(Debug, Clone)]
pub struct ProblemSource(pub NamedSource<Arc<str>>);

impl std::ops::Deref for ProblemSource {
    type Target = NamedSource<Arc<str>>;

    /// The named source (`name()`: the file as given, or `--set KEY=VALUE`; `inner()`).
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl SourceCode for ProblemSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.0.read_span(span, before, after)?;
        // Only the header's place (read without context) uses the column.
        if before != 0 || after != 0 {
            return Ok(inner);
        }
        let text: &str = self.0.inner();
        let Some(head) = text.get(..span.offset().min(text.len())) else { return Ok(inner) };
        let line_start = head.rfind(['\n', '\r']).map_or(0, |i| i + 1);
        // A byte-order mark is invisible in editors: it takes no column.
        let column = head[line_start..].trim_start_matches('\u{feff}').chars().count();
        Ok(Box::new(MietteSpanContents::new_named(
            self.0.name().to_string(),
            inner.data(),
            *inner.span(),
            inner.line(),
            column,
            inner.line_count(),
        )))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() { None } else { Some(Box::new(self.labels.iter().cloned())) }
    }
}

/// Every problem of one job file.
#[derive(Debug, Clone)]
pub struct JobFileError {
    /// The job file as given.
    pub path: PathBuf,
    /// The problems, in the order of the file (never empty).
    pub problems: Vec<Problem>,
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid job file {}: {} problem{}",
            self.path.display(),
            n,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for JobFileError {}

impl Diagnostic for JobFileError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("jobpool::invalid-job"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let first = self.problems.first()?.code;
        let code = first.strip_prefix("jobpool::").unwrap_or(first);
        Some(Box::new(if self.problems.iter().all(|p| p.code == first) {
            format!("`jobpool explain {code}` explains the problem and how to fix it")
        } else {
            format!(
                "`jobpool explain CODE` explains each code below, e.g. `jobpool explain {code}`"
            )
        }))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.problems.iter().map(|p| p as &dyn Diagnostic)))
    }
}

/// "did you mean" for `word` among `choices`, when one is close.
pub fn suggest<'a>(word: &str, choices: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    choices
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "1 value", "2 values".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 { format!("{n} {noun}") } else { format!("{n} {noun}s") }
}

/// "`a`, `b` or `c`".
pub fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// "`a`, `b` and `c`".
pub fn all_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|c| format!("`{c}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}
