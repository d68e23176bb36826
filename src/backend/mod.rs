//! Backends: where a run's submissions execute.
//!
//! Owns: the [`Backend`] seam between the runner and an execution engine, and its
//! implementations:
//! - [`local`]: the process (or thread) pool on this machine;
//! - [`slurm`]: one Slurm job array whose elements run shards with the local pool;
//! - `fake` (tests only): a scripted backend that makes the runner's policies
//!   (resume, on-failure, max-failures, deadline, cancel reasons) unit-testable without
//!   processes.
//!
//! Must not: decide policies (that is the runner's), print, or touch sinks and the
//! journal. A backend turns submissions into [`TaskRecord`]s and obeys its
//! [`ExecutionControl`].
//!
//! ```text
//! runner ──Work (lazy, resume-filtered submissions)──▶ Backend::start ──▶ Execution
//!        ◀──BackendEvent (records in completion order, waiting)── Execution::next
//!        ──cancel / stop_submitting / kill──▶ ExecutionControl
//! ```

use std::sync::Arc;

use crate::model::{Job, Submission};
use crate::record::TaskRecord;

#[cfg(test)]
pub mod fake;
pub mod local;
pub mod slurm;

pub use self::local::LocalBackend;
pub use self::slurm::{SlurmBackend, SlurmSettings};

/// The submissions a backend is to run: lazy, pulled as the backend has room for them
/// (a plan of 10 million submissions is never held in memory).
pub type Work = Box<dyn Iterator<Item = Submission> + Send>;

/// What a backend is told when it starts.
pub struct StartRequest<'a> {
    /// The job.
    pub job: &'a Job,
    /// How many workers to use (the runner's choice: the job's `workers`, at most one per
    /// submission).
    pub workers: usize,
    /// The submissions.
    pub work: Work,
}

/// What an execution reports.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // records dominate; boxing each would cost an allocation per record
pub enum BackendEvent {
    /// A submission's final record (after the backend's retries).
    Finished(TaskRecord),
    /// Final records that arrived together, in completion order (never empty): a
    /// backend with many fast tasks hands them over a batch at a time.
    FinishedMany(Vec<TaskRecord>),
    /// A backend that polls reports what it is waiting for.
    Waiting {
        /// Submissions queued, not started.
        queued: u64,
        /// Submissions running.
        running: u64,
        /// The engine's reason (Slurm's pending reason).
        reason: Option<String>,
    },
}

/// A backend could not start a run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// What went wrong, as a lowercase fragment.
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl BackendError {
    /// An error with a message and no help.
    pub fn new(message: impl Into<String>) -> BackendError {
        BackendError { message: message.into(), help: None }
    }
}

/// Where submissions run. `start` is called once per run.
pub trait Backend {
    /// The backend's name in events and `run.json` (`processes`, `threads`, `slurm`).
    fn name(&self, job: &Job) -> String;

    /// Start running `request.work`.
    fn start(&self, request: StartRequest<'_>) -> Result<Box<dyn Execution>, BackendError>;
}

/// A started run on a backend.
pub trait Execution: Send {
    /// The next event, waiting for it; `None` once every submission the execution took
    /// has its record and it takes no more.
    fn next_event(&mut self) -> Option<BackendEvent>;

    /// A handle to steer the execution from other threads.
    fn control(&self) -> Arc<dyn ExecutionControl>;

    /// After `next_event` returned `None`: wait until everything the execution started
    /// (workers, task processes) is gone.
    fn join(self: Box<Self>);
}

/// Steers an execution from any thread. Every method returns at once and never hangs.
pub trait ExecutionControl: Send + Sync {
    /// Cancel: stop running tasks now (TERM, grace period, KILL); they come back
    /// `cancelled`, as does every submission taken but not finished.
    fn cancel(&self);

    /// Stop submitting: take no more submissions; taken ones that did not start come
    /// back `skipped`; running ones finish (nothing is stopped).
    fn stop_submitting(&self);

    /// Kill everything at once, without a grace period (a second Ctrl-C).
    fn kill(&self);
}
