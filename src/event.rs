//! The vocabulary from the runner to its front ends: [`RunEvent`], [`RunSummary`] and
//! [`CancelReason`].
//!
//! Owns: what a run tells the outside world, in a fixed order:
//!
//! ```text
//! RunStarted ─▶ (TaskFinished | Flush | Waiting | Cancelling)* ─▶ RunFinished
//! ```
//!
//! Exactly one `TaskFinished` per submission of the plan (resumed, skipped and
//! cancelled ones too), in completion order; `Cancelling` at most once per reason, each
//! more serious than the last. Must not: do anything. Pure data, produced by
//! [`crate::runner`] and consumed by the journal, the sinks, the progress bar, watch mode
//! and reports.

use std::time::Duration;

use crate::record::{Status, StatusCounts, TaskRecord};

/// Why a run is being cancelled, least serious first. A more serious reason replaces a
/// lesser one; a lesser one arriving later is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CancelReason {
    /// Watch mode: a newer run of the same job replaces this one.
    Superseded,
    /// The job's `timeout` passed.
    Deadline,
    /// The reader of an output went away (`jobpool run job.toml | head -1`).
    OutputClosed,
    /// A front end (a sink, the journal) failed: nothing more can be delivered.
    FrontEndFailed,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupt,
}

impl CancelReason {
    /// Lowercase words for summaries and `run.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Superseded => "superseded",
            CancelReason::Deadline => "deadline",
            CancelReason::OutputClosed => "output closed",
            CancelReason::FrontEndFailed => "front end failed",
            CancelReason::Interrupt => "interrupted",
        }
    }

    /// The `error` of a record cancelled for this reason: one message per reason.
    pub fn record_message(self) -> &'static str {
        match self {
            CancelReason::Superseded => "cancelled: a newer run of the job replaced this one",
            CancelReason::Deadline => "cancelled: the job's timeout passed",
            CancelReason::OutputClosed => "cancelled: the output was closed",
            CancelReason::FrontEndFailed => "cancelled: an output could not be written",
            CancelReason::Interrupt => "cancelled: the run was interrupted",
        }
    }
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why submissions were skipped (never started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `on-failure = "stop"` after a failure.
    OnFailureStop,
    /// More failures than `max-failures`.
    MaxFailures,
}

impl SkipReason {
    /// The `error` of a record skipped for this reason: one message per reason.
    pub fn record_message(self) -> &'static str {
        match self {
            SkipReason::OnFailureStop => "skipped: an earlier task failed (on-failure = \"stop\")",
            SkipReason::MaxFailures => "skipped: more tasks failed than max-failures allows",
        }
    }
}

/// What a run is about to do.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// The run's id.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Submissions in the plan.
    pub total: u64,
    /// Of those, how many take their record from an earlier run (`--resume`).
    pub resumed: u64,
    /// Workers the backend starts.
    pub workers: usize,
    /// Where submissions run (`processes`, `threads`, `slurm`, ...).
    pub backend: String,
}

/// How a run ended: computed by the runner from every record it delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Submissions in the plan.
    pub total: u64,
    /// Records delivered, by status (always adds up to `total` unless a front end
    /// failure stopped delivery).
    pub counts: StatusCounts,
    /// Records taken from earlier runs.
    pub resumed: u64,
    /// Wall time of the run.
    pub wall: Duration,
    /// The most serious reason the run was cancelled, if it was and it cut something
    /// short (a deadline that passed when nothing was left to run cancels nothing).
    pub cancelled: Option<CancelReason>,
    /// Why submissions were skipped, if any were.
    pub skipped: Option<SkipReason>,
    /// The failure with the lowest index (as Python's `get()` re-raises the first
    /// failing item's error), with how many failed in all in `counts`.
    pub first_failure: Option<TaskRecord>,
    /// A front end's failure that stopped delivery (it also cancels the run).
    pub front_end_error: Option<String>,
}

impl RunSummary {
    /// Tasks that ran in this run (every record not resumed, skipped or cancelled before
    /// it started).
    pub fn ran(&self) -> u64 {
        self.counts.total()
            - self.resumed
            - self.counts.get(Status::Skipped)
            - self.counts.get(Status::Cancelled)
    }
}

/// One thing that happened in a run, in the order described in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The run starts: always first.
    RunStarted(RunStart),
    /// One submission has its final record (after retries), in completion order.
    TaskFinished(TaskRecord),
    /// A backend that polls (a cluster queue) reports what it is waiting for.
    Waiting {
        /// Submissions queued on the backend, not started.
        queued: u64,
        /// Submissions running.
        running: u64,
        /// The backend's reason, e.g. Slurm's pending reason.
        reason: Option<String>,
    },
    /// No record is waiting: the runner is about to wait for more (the end of a burst
    /// of records). Front ends that buffer — the journal writes its lines in one
    /// `write` per burst, and only then hands them to the sinks — write out what they
    /// hold now. Nothing to do for the others.
    Flush,
    /// The run is being cancelled; later records are cancelled or skipped.
    Cancelling(CancelReason),
    /// The run ended: always last.
    RunFinished(RunSummary),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reasons_are_ordered_by_seriousness() {
        use CancelReason::*;
        let mut all = [Interrupt, Deadline, FrontEndFailed, Superseded, OutputClosed];
        all.sort();
        assert_eq!(all, [Superseded, Deadline, OutputClosed, FrontEndFailed, Interrupt]);
    }
}
