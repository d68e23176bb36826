//! The front ends of `jobpool run`: what the runner's events become on disk and screen.
//!
//! Owns: [`Frontends`], which fans each [`RunEvent`] out without a trait, journal first
//! (a crash after the journal line loses nothing), then the ordered sinks, then the
//! progress bar. Records are journalled a burst at a time: each record's line goes to
//! the journal's buffer, and at the end of the burst ([`RunEvent::Flush`], or every
//! [`BURST_RECORDS`] records) the buffer is written in one `write`, and only then are
//! the records handed to the sinks (a jsonl sink gets the journal's very bytes); at the end the summary line, the first failure as a diagnostic, the
//! exit code (from [`exit_code::of`]) and `run.json`, which records that same code.
//! Must not: apply run policies (the runner's) or run tasks.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::Diagnostic;

use super::diag;
use super::exit_code;
use crate::event::{CancelReason, RunEvent, RunSummary};
use crate::model::Job;
use crate::record::{Status, TaskRecord};
use crate::report::{self, Format, RunSource};
use crate::runner::FrontEndError;
use crate::sink::OrderedSinks;
use crate::store::{RunEnd, RunStore};

/// When the progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressWhen {
    /// When stderr is a terminal.
    Auto,
    /// Always (a plain line at most once a second when stderr is not a terminal).
    Always,
    /// Never.
    Never,
}

/// The failure shown at the end of a run, as Python's `get()` re-raises a task's error.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("task {index} failed ({status}): {message}")]
#[diagnostic(code("jobpool::task-failed"))]
struct TaskFailed {
    index: u64,
    status: Status,
    message: String,
    #[help]
    help: Option<String>,
}

/// A problem of the run itself (not of a task): the store or a sink failed.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{what}")]
#[diagnostic(code(jobpool::run))]
pub struct RunProblem {
    /// What went wrong.
    pub what: String,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

/// Write to stderr, ignoring errors: a closed stderr (a hung-up terminal, `2>&1 | head`)
/// must not turn into a panic at the end of a run that did its work.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// An error and its causes, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        cur = c.source();
    }
    s
}

/// Most records journalled before they are written out, when no burst ends sooner.
pub const BURST_RECORDS: usize = 4096;
/// Most journal bytes held before they are written out, when no burst ends sooner.
const BURST_BYTES: usize = 1 << 20;

/// Journal, sinks and progress of one run.
pub struct Frontends<'j> {
    job: &'j Job,
    journal: Option<RunStore>,
    sinks: Option<OrderedSinks>,
    /// Records in the journal's buffer, not yet written nor given to the sinks.
    unsunk: Vec<Unsunk>,
    /// An empty vector with the capacity of a burst, swapped with `unsunk` at a flush.
    spare: Vec<Unsunk>,
    progress: Progress,
    progress_when: ProgressWhen,
    quiet: bool,
    journal_error: Option<String>,
    sink_error: Option<String>,
    output_closed: bool,
    code: Option<u8>,
    shard: Option<crate::plan::Shard>,
    rerun: Option<String>,
    reports: Vec<(Format, std::path::PathBuf)>,
    report: Option<report::Builder>,
}

impl<'j> Frontends<'j> {
    /// Front ends writing to `journal` and `sinks`.
    pub fn new(
        job: &'j Job,
        journal: RunStore,
        sinks: Option<OrderedSinks>,
        progress: ProgressWhen,
        quiet: bool,
    ) -> Self {
        Frontends {
            job,
            journal: Some(journal),
            sinks,
            unsunk: Vec::new(),
            spare: Vec::new(),
            progress: Progress::Hidden,
            progress_when: progress,
            quiet,
            journal_error: None,
            sink_error: None,
            output_closed: false,
            code: None,
            shard: None,
            rerun: None,
            reports: Vec::new(),
            report: None,
        }
    }

    /// This run is one shard of a run: the summary says so and what comes next.
    pub fn shard(mut self, shard: Option<crate::plan::Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// How to run only what is left, when it is not `jobpool run --resume JOB` (`exec`).
    pub fn rerun_hint(mut self, rerun: Option<String>) -> Self {
        self.rerun = rerun;
        self
    }

    /// Also write these reports when the run ends (`--report FORMAT=PATH`), from a
    /// summary built as records arrive.
    pub fn with_reports(mut self, reports: Vec<(Format, std::path::PathBuf)>) -> Self {
        self.report = (!reports.is_empty()).then(report::Builder::new);
        self.reports = reports;
        self
    }

    /// The exit code, once `RunFinished` was handled.
    pub fn exit_code(&self) -> Option<u8> {
        self.code
    }

    /// The run could not start: remove the sinks' temporary files and mark the run
    /// finished with exit code 1.
    pub fn abort(mut self) {
        if let Some(s) = self.sinks.take() {
            s.abort();
        }
        if let Some(j) = self.journal.take() {
            let _ = j.finish(RunEnd { exit_code: exit_code::TASK_FAILED, cancelled: None });
        }
    }

    /// Take one event.
    pub fn on_event(&mut self, event: &RunEvent) -> Result<(), FrontEndError> {
        match event {
            RunEvent::RunStarted(start) => {
                self.progress = Progress::new(self.progress_when, self.quiet, start.total);
                Ok(())
            }
            RunEvent::TaskFinished(rec) => self.record(rec),
            RunEvent::Flush => self.flush(),
            RunEvent::Waiting { queued, running, reason } => {
                self.progress.waiting(*queued, *running, reason.as_deref());
                Ok(())
            }
            RunEvent::Cancelling(reason) => {
                if !self.quiet && *reason == CancelReason::Interrupt {
                    self.progress.suspend(|| {
                        say(&format!(
                            "{}: interrupted: stopping running tasks (TERM, then KILL after {}); \
                             press Ctrl-C again to kill them now\n",
                            self.job.name,
                            humantime::format_duration(self.job.limits.grace_period)
                        ))
                    });
                }
                Ok(())
            }
            RunEvent::RunFinished(summary) => {
                // The runner cannot hear of an error of this last flush any more: it
                // goes into the summary (and the exit code) in `finish`.
                let _ = self.flush();
                self.finish(summary);
                Ok(())
            }
        }
    }

    fn record(&mut self, rec: &TaskRecord) -> Result<(), FrontEndError> {
        let mut result = Ok(());
        let mut line = None;
        if let Some(j) = &mut self.journal {
            match j.push(rec) {
                Ok(range) => line = range,
                Err(e) => result = self.journal_failed(&e),
            }
        }
        if let Some(s) = &self.sinks {
            // Sinks that only take JSON lines need no copy of the record.
            let record = (line.is_none() || !s.lines_only()).then(|| Box::new(rec.clone()));
            self.unsunk.push(Unsunk { index: rec.index, record, line });
        }
        if let Some(b) = &mut self.report {
            b.add(rec);
        }
        self.progress.record(rec.status.is_failure());
        let full = self.unsunk.len() >= BURST_RECORDS
            || self.journal.as_ref().is_some_and(|j| j.pending() >= BURST_BYTES);
        if full {
            result = result.and(self.flush());
        }
        result
    }

    fn journal_failed(&mut self, e: &std::io::Error) -> Result<(), FrontEndError> {
        if self.journal_error.is_some() {
            return Ok(());
        }
        let message = format!("cannot write the journal: {e}");
        self.journal_error = Some(message.clone());
        Err(FrontEndError { reason: CancelReason::FrontEndFailed, message })
    }

    /// Write the journal's buffer, then hand its records to the sinks: a record reaches
    /// a sink only once the journal has it (also when the journal failed: the run fails,
    /// but no finished result is kept from the sinks).
    fn flush(&mut self) -> Result<(), FrontEndError> {
        if self.unsunk.is_empty() && self.journal.as_ref().is_none_or(|j| j.pending() == 0) {
            return Ok(());
        }
        let spare = std::mem::take(&mut self.spare);
        let mut unsunk = std::mem::replace(&mut self.unsunk, spare);
        let sinks =
            self.sinks.as_mut().filter(|_| !self.output_closed && self.sink_error.is_none());
        let mut sink_result = Ok(());
        let journal_result = match &mut self.journal {
            Some(j) => j.flush_with(|bytes| sink_result = to_sinks(sinks, &mut unsunk, bytes)),
            None => {
                sink_result = to_sinks(sinks, &mut unsunk, &[]);
                Ok(())
            }
        };
        unsunk.clear();
        self.spare = unsunk;
        let mut result = match journal_result {
            Ok(()) => Ok(()),
            Err(e) => self.journal_failed(&e),
        };
        if let Err(e) = sink_result {
            if e.is_broken_pipe() {
                self.output_closed = true;
                result = result.and(Err(FrontEndError {
                    reason: CancelReason::OutputClosed,
                    message: error_chain(&e),
                }));
            } else {
                let message = error_chain(&e);
                self.sink_error = Some(message.clone());
                result = Err(FrontEndError { reason: CancelReason::FrontEndFailed, message });
            }
        }
        result
    }

    fn finish(&mut self, summary: &RunSummary) {
        self.progress.finish();
        let mut summary = summary.clone();
        // A journal or sink error the runner was told of is in the summary already; one
        // of the last flush (after the last record) is not: the run failed all the same.
        if let Some(e) = self.journal_error.as_ref().or(self.sink_error.as_ref()) {
            summary.front_end_error.get_or_insert_with(|| e.clone());
        }
        if let Some(sinks) = self.sinks.take() {
            let result = if self.sink_error.is_some() {
                sinks.abort();
                Ok(())
            } else {
                sinks.finish()
            };
            if let Err(e) = result
                && !e.is_broken_pipe()
            {
                summary
                    .front_end_error
                    .get_or_insert_with(|| format!("cannot finish a sink: {}", error_chain(&e)));
            }
        }
        let code = exit_code::of(&summary);
        self.code = Some(code);
        if let Some(j) = self.journal.take() {
            let cancelled = summary.cancelled.map(|r| r.as_str().to_string());
            let dir = j.dir().to_path_buf();
            match j.finish(RunEnd { exit_code: code, cancelled }) {
                Ok(info) => self.write_reports(RunSource::of_run(&dir, Some(info))),
                Err(e) => {
                    summary
                        .front_end_error
                        .get_or_insert_with(|| format!("cannot finish the run: {e}"));
                    self.code = Some(exit_code::worse(code, exit_code::TASK_FAILED));
                }
            }
        }
        if let Some(e) = &summary.front_end_error {
            say(&diag::render(&RunProblem { what: e.clone(), help: None }));
        }
        if self.quiet || summary.cancelled == Some(CancelReason::OutputClosed) {
            return;
        }
        say(&summary_line(self.job, &summary, self.shard, self.rerun.as_deref()));
        if let Some(rec) = &summary.first_failure {
            say(&diag::render(&failure_diagnostic(rec, summary.counts.failures())));
        }
    }
}

impl Frontends<'_> {
    /// `--report`: the live summary through the same renderer as `jobpool report`. A
    /// report that cannot be written is a diagnostic; the run's exit code stays the
    /// records' (and `run.json`'s).
    fn write_reports(&mut self, source: RunSource) {
        let Some(builder) = self.report.take() else { return };
        let summary = builder.finish(source.info.as_ref());
        for (format, path) in &self.reports {
            let result = super::report::write_with(Some(path), |out| {
                report::render_to(*format, &source, &summary, None, out)
            });
            if let Err(e) = result {
                say(&diag::render(&RunProblem {
                    what: format!(
                        "cannot write the {} report {}: {e}",
                        format.name(),
                        path.display()
                    ),
                    help: None,
                }));
            }
        }
    }
}

/// Give `records` to the sinks in completion order (each with its journal line in
/// `bytes`, when it has one) and flush stdout once.
fn to_sinks(
    sinks: Option<&mut OrderedSinks>,
    records: &mut Vec<Unsunk>,
    bytes: &[u8],
) -> Result<(), crate::sink::SinkError> {
    let Some(s) = sinks else { return Ok(()) };
    let mut written = 0;
    for u in records.drain(..) {
        written += match (u.line.and_then(|r| bytes.get(r)), u.record) {
            (Some(line), record) => s.push_line(u.index, record, line)?,
            (None, Some(record)) => s.push(*record)?,
            // Not reachable: a record without a journal line is always kept.
            (None, None) => 0,
        };
    }
    if written > 0 { s.flush() } else { Ok(()) }
}

/// A record journalled and not yet given to the sinks.
struct Unsunk {
    index: u64,
    /// The record, unless every sink takes JSON lines and it has one. Boxed: a burst
    /// of these is pushed and drained once per record, and most carry none.
    record: Option<Box<TaskRecord>>,
    /// Its line's place in the journal's buffer (`None`: not journalled).
    line: Option<std::ops::Range<usize>>,
}

/// `name: 8 ok, 2 error in 1.20s; run <id>`, then how to resume when something is left.
fn summary_line(
    job: &Job,
    s: &RunSummary,
    shard: Option<crate::plan::Shard>,
    rerun: Option<&str>,
) -> String {
    let mut parts = vec![format!("{} ok", s.counts.get(Status::Ok))];
    for st in &Status::ALL[1..] {
        let n = s.counts.get(*st);
        if n > 0 {
            parts.push(format!("{n} {st}"));
        }
    }
    let why = match s.cancelled {
        Some(CancelReason::Deadline) => " (the job's timeout passed)",
        Some(CancelReason::Interrupt) => " (interrupted)",
        Some(CancelReason::FrontEndFailed) => " (an output failed)",
        Some(CancelReason::Superseded) => " (superseded)",
        Some(CancelReason::OutputClosed) | None => "",
    };
    let resumed = if s.resumed > 0 {
        format!(" ({} ran, {} resumed)", s.ran(), s.resumed)
    } else {
        String::new()
    };
    let of_shard =
        shard.map(|sh| format!(" (shard {}/{})", sh.index, sh.count)).unwrap_or_default();
    let mut line = format!(
        "{}: {}{resumed} in {:.2}s{why}; run {}{of_shard}\n",
        job.name,
        parts.join(", "),
        s.wall.as_secs_f64(),
        s.run_id
    );
    let left = s.counts.total() - s.counts.get(Status::Ok);
    // Watch mode runs a superseded job again by itself: no hint then.
    let rerun_by_watch = s.cancelled == Some(CancelReason::Superseded);
    if left > 0
        && !rerun_by_watch
        && (s.cancelled.is_some() || s.counts.failures() > 0 || s.skipped.is_some())
    {
        let again =
            shard.map(|sh| format!("--shard {}/{} ", sh.index, sh.count)).unwrap_or_default();
        let rerun = rerun.map_or_else(
            || format!("jobpool run --resume {again}{}", job.path.display()),
            str::to_string,
        );
        line.push_str(&format!("{}: {left} not ok; to run only those: {rerun}\n", job.name));
    }
    if shard.is_some() {
        line.push_str(&format!(
            "{}: when every shard ran: jobpool collect {}\n",
            job.name,
            job.path.display()
        ));
    }
    line
}

fn failure_diagnostic(rec: &TaskRecord, failures: u64) -> TaskFailed {
    let mut help = format!("arguments: {}", serde_json::to_string(&rec.args).unwrap_or_default());
    if let Some(stderr) = rec.stderr.as_deref().filter(|s| !s.trim().is_empty()) {
        let tail: Vec<&str> = stderr.trim_end().lines().rev().take(5).collect();
        help.push_str("\nstderr (last lines):");
        for l in tail.iter().rev() {
            help.push_str("\n  ");
            help.push_str(l);
        }
    }
    if failures > 1 {
        help.push_str(&format!("\n{} more failed; every record has its error", failures - 1));
    }
    TaskFailed {
        index: rec.index,
        status: rec.status,
        message: rec.error.clone().unwrap_or_default(),
        help: Some(help),
    }
}

/// Progress on stderr: indicatif's bar on a terminal; with `--progress always` and a
/// stderr that is not a terminal (a CI log), a plain line at most once a second.
enum Progress {
    Hidden,
    Bar(ProgressBar, u64),
    Lines { total: u64, done: u64, failed: u64, started: Instant, last: Instant },
}

impl Progress {
    fn new(when: ProgressWhen, quiet: bool, total: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let show = !quiet
            && match when {
                ProgressWhen::Always => true,
                ProgressWhen::Never => false,
                ProgressWhen::Auto => terminal,
            };
        if !show {
            return Progress::Hidden;
        }
        if !terminal {
            let now = Instant::now();
            return Progress::Lines { total, done: 0, failed: 0, started: now, last: now };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::Bar(bar, 0)
    }

    fn record(&mut self, failed_now: bool) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar, failures) => {
                bar.inc(1);
                if failed_now {
                    *failures += 1;
                    bar.set_message(format!("{failures} failed"));
                }
            }
            Progress::Lines { total, done, failed, started, last } => {
                *done += 1;
                *failed += u64::from(failed_now);
                if last.elapsed() >= Duration::from_secs(1) {
                    *last = Instant::now();
                    let elapsed = started.elapsed();
                    let eta = if *done > 0 && *done < *total {
                        let per = elapsed.as_secs_f64() / *done as f64;
                        let left = Duration::from_secs_f64(per * (*total - *done) as f64);
                        format!(
                            ", ETA {}",
                            humantime::format_duration(Duration::from_secs(left.as_secs()))
                        )
                    } else {
                        String::new()
                    };
                    say(&format!(
                        "[{:.1}s] {}/{} done, {} failed{eta}\n",
                        elapsed.as_secs_f64(),
                        done,
                        total,
                        failed
                    ));
                }
            }
        }
    }

    fn waiting(&mut self, queued: u64, running: u64, reason: Option<&str>) {
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar, _) => {
                bar.set_message(format!("{queued} queued{reason}, {running} running"))
            }
            Progress::Lines { .. } => {
                say(&format!("waiting: {queued} queued{reason}, {running} running\n"))
            }
        }
    }

    fn suspend(&self, f: impl FnOnce()) {
        match self {
            Progress::Bar(bar, _) => bar.suspend(f),
            _ => f(),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }
}
