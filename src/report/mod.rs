//! Reports: a run's records (and `run.json`) -> [`Summary`] -> `md`, `html`, `json` or
//! `junit`; two runs -> [`Comparison`] by content key.
//!
//! Owns: the analysis ([`summary`], [`compare`]) apart from the formats ([`md`],
//! [`json`], [`junit`], [`html`]), and one renderer ([`render`]) used both at the end of
//! `jobpool run --report` (with a summary built live from the run's events) and by
//! `jobpool report` (with a summary read back from the journal), as cargo's build
//! timings share one writer between a build and `cargo report timings`.
//! Must not: print, exit, or find runs (the command line resolves `RUN` to a
//! [`RunSource`]).
//!
//! ```text
//! records.jsonl ──(parallel blocks)──▶ Builder ─┐
//! RunEvent::TaskFinished ──(live)──▶ Builder ───┴─▶ Summary ─▶ md | html | json
//! records.jsonl ──(by index)──────────────────────────────────▶ junit
//! two journals ──(by key)──▶ Comparison ─▶ md | html | json
//! ```

use std::io;
use std::path::{Path, PathBuf};

mod charts;
pub mod compare;
mod fmt;
pub mod html;
pub mod json;
pub mod junit;
pub mod md;
pub mod summary;

pub use self::compare::{Change, Comparison, Outcome, Ratio, compare};
pub use self::summary::{
    Builder, ParamSummary, ParamValue, REPORT_FORMAT, RunAbout, Stats, Summary, summarize_journal,
    summarize_run,
};

use crate::store::{self, RunInfo, RunRecords};

/// A duration in ms as people read it (`12.3 ms`, `1.52 s`, `2m 03s`).
pub fn fmt_ms(ms: f64) -> String {
    fmt::ms(ms)
}

/// A report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GitHub-flavoured Markdown, to paste into a pull request.
    Md,
    /// One self-contained HTML page with charts.
    Html,
    /// The JSON report ([`json::ReportJson`], schema in `schemas/report.schema.json`).
    Json,
    /// JUnit XML, one test case per submission.
    Junit,
}

impl Format {
    /// Every format, by name.
    pub const ALL: [(&'static str, Format); 4] = [
        ("md", Format::Md),
        ("html", Format::Html),
        ("json", Format::Json),
        ("junit", Format::Junit),
    ];

    /// The format's name.
    pub fn name(self) -> &'static str {
        Format::ALL.iter().find(|(_, f)| *f == self).map_or("md", |(n, _)| n)
    }

    /// A format by name (`md`, `markdown`, `html`, `json`, `junit`, `xml`).
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "markdown" => Some(Format::Md),
            "xml" => Some(Format::Junit),
            n => Format::ALL.iter().find(|(k, _)| *k == n).map(|(_, f)| *f),
        }
    }
}

/// Where a run's records are: a run folder (journal + `run.json` + the references of
/// what it took from earlier runs) or a bare records file.
#[derive(Debug, Clone)]
pub struct RunSource {
    /// The records, JSON lines.
    pub journal: PathBuf,
    /// The run's metadata, when there is a `run.json`.
    pub info: Option<RunInfo>,
    /// The run's folder, when the records are a run's journal: the records it took from
    /// earlier runs are read through it (see [`store::records`]).
    pub run_dir: Option<PathBuf>,
}

impl RunSource {
    /// A run folder; its `run.json` is optional (a run whose metadata was lost still has
    /// its records).
    pub fn run_dir(dir: &Path) -> RunSource {
        RunSource::of_run(dir, store::read_run_info(dir).ok())
    }

    /// A run folder whose `run.json` the caller has.
    pub fn of_run(dir: &Path, info: Option<RunInfo>) -> RunSource {
        RunSource { journal: dir.join(store::RECORDS_FILE), info, run_dir: Some(dir.to_path_buf()) }
    }

    /// A JSON-lines file of records (a journal, or a `jsonl` sink's output). A
    /// `records.jsonl` is read as its run's journal (with its `run.json`, and what the run
    /// took from earlier runs).
    pub fn records_file(path: &Path) -> RunSource {
        match path.parent().filter(|_| path.file_name().is_some_and(|n| n == store::RECORDS_FILE)) {
            Some(dir) => RunSource {
                journal: path.to_path_buf(),
                info: store::read_run_info(dir).ok(),
                run_dir: Some(dir.to_path_buf()),
            },
            None => RunSource { journal: path.to_path_buf(), info: None, run_dir: None },
        }
    }

    /// What the run is, for comparisons.
    pub fn about(&self) -> RunAbout {
        self.info.as_ref().map(RunAbout::from_info).unwrap_or_else(|| RunAbout {
            state: "unknown".into(),
            job_file: None,
            ..RunAbout::default()
        })
    }

    /// The records: the journal in the order written, then those the run took from
    /// earlier runs.
    pub fn records(&self) -> io::Result<RunRecords> {
        RunRecords::open(&self.journal, self.run_dir.as_deref(), self.info.as_ref())
    }

    /// The records in submission order, read back one at a time.
    pub fn records_by_index(&self) -> io::Result<store::ByIndex> {
        store::ByIndex::open(&self.journal, self.run_dir.as_deref(), self.info.as_ref())
    }

    /// Read every record into a summary (in parallel).
    pub fn summarize(&self) -> io::Result<Summary> {
        summarize_run(&self.journal, self.run_dir.as_deref(), self.info.as_ref())
    }
}

/// The one renderer: `summary` (and `comparison`, with `--compare`) as `format`.
/// `junit` lists every submission, so it reads the records of `source` again, in plan
/// order (see [`render_to`]).
pub fn render(
    format: Format,
    source: &RunSource,
    summary: &Summary,
    comparison: Option<&Comparison>,
) -> io::Result<String> {
    let mut out = Vec::new();
    render_to(format, source, summary, comparison, &mut out)?;
    String::from_utf8(out).map_err(io::Error::other)
}

/// [`render`] into `out`. JUnit is written as it is read: its test cases are read back
/// from the journal by index ([`store::ByIndex`]: about 32 bytes per record held, not
/// the records) and serialized a batch at a time.
pub fn render_to(
    format: Format,
    source: &RunSource,
    summary: &Summary,
    comparison: Option<&Comparison>,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    match format {
        Format::Md => out.write_all(md::render(summary, comparison).as_bytes()),
        Format::Html => out.write_all(html::render(summary, comparison).as_bytes()),
        Format::Json => out.write_all(json::render(summary, comparison).as_bytes()),
        Format::Junit => {
            let records = source.records_by_index()?;
            junit::write(summary, records.counts(), records, out)
        }
    }
}
