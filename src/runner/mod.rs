//! The runner: one run of one job, as a library call that front ends observe.
//!
//! Owns: the run's policies — the resume filter, the job's deadline, `on-failure`,
//! `max-failures`, cancel reasons (ordered; the most serious wins), the one message per
//! cancelled or skipped record, records for submissions never taken, the first failure —
//! and the order of [`RunEvent`]s. The main type is [`Runner`]; [`Control`] steers a run
//! from other threads (a signal handler, watch mode).
//! Must not: print, exit, install signal handlers, or know the front ends (journal,
//! sinks, progress): it calls one callback with each event. Where submissions execute is
//! the [`Backend`]'s business.
//!
//! ```text
//!            Plan ─▶ resume filter ─▶ Work ─▶ Backend ─▶ records (completion order)
//!                         │                                  │
//!                         └── resumed records ──┐            ▼
//!                                               ▼       forwarder thread
//!   caller thread:  on_event(RunStarted) … on_event(TaskFinished) … on_event(RunFinished)
//!                   (policies applied here; deadline by recv_timeout)
//! ```
//!
//! Threads: the backend's own, one forwarder per run (it blocks on the execution and
//! joins it at the end), and the caller's, which runs every policy and the callback.
//! Once the execution delivered its last record, the run finishes (`RunFinished`) while
//! the forwarder joins the execution (its workers stop); the run returns after both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Instant;

use crate::backend::{Backend, BackendError, BackendEvent, ExecutionControl, StartRequest, Work};
use crate::event::{CancelReason, RunEvent, RunStart, RunSummary, SkipReason};
use crate::model::{Job, OnFailure, TaskTemplate};
use crate::plan::{Plan, Shard};
use crate::record::{Status, StatusCounts, TaskRecord};
use crate::store::ResumeIndex;

/// What a front end reports when it cannot take an event: the run is cancelled with
/// `reason`, and every later event is still delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrontEndError {
    /// [`CancelReason::OutputClosed`] (a reader went away: stop quietly) or
    /// [`CancelReason::FrontEndFailed`] (a write failed: the run fails).
    pub reason: CancelReason,
    /// What failed.
    pub message: String,
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The backend refused to start (no worker could start, ...).
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Per-run inputs besides the job.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The run's id (front ends named files after it before the run starts).
    pub run_id: String,
    /// `--resume`: `ok` records of earlier runs by key; their submissions do not run.
    pub resume: Option<ResumeIndex>,
    /// `--shard I/N`: run only that slice of the plan (records keep their plan index).
    pub shard: Option<Shard>,
}

/// Runs jobs on a backend.
pub struct Runner<'b> {
    backend: &'b dyn Backend,
}

/// Records that may wait between the backend and the caller's thread: senders wait at
/// `BACKLOG_HIGH` until the caller is down to `BACKLOG_LOW`, so memory stays bounded
/// however large the plan is, and waiting and waking happen once per many records.
const BACKLOG_HIGH: usize = 16384;
const BACKLOG_LOW: usize = BACKLOG_HIGH / 2;

/// How many records wait in the channel to the caller's thread.
#[derive(Default)]
struct Backlog {
    count: Mutex<usize>,
    cv: Condvar,
}

impl Backlog {
    /// Before sending `records` records: wait while the backlog is full.
    fn add(&self, records: usize) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= BACKLOG_HIGH {
            n = self.cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += records;
    }

    /// After receiving `records` records.
    fn done(&self, records: usize) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let before = *n;
        *n = n.saturating_sub(records);
        if before > BACKLOG_LOW && *n <= BACKLOG_LOW {
            self.cv.notify_all();
        }
    }
}

/// What reaches the caller's thread.
enum Internal {
    /// A record from the backend.
    Finished(TaskRecord),
    /// Records from the backend that arrived together.
    FinishedMany(Vec<TaskRecord>),
    /// A record taken from an earlier run.
    Resumed(TaskRecord),
    Waiting {
        queued: u64,
        running: u64,
        reason: Option<String>,
    },
    /// [`Control::cancel`] was called: look at the reason.
    Cancel,
    /// The execution delivered its last event: every record is in. (It is joined, its
    /// workers stopped and reaped, after that, while the run finishes.)
    StreamEnded,
}

/// Steers one run from any thread: cancel it with a reason, or kill it. Cheap to clone.
/// Cancelling before the run starts makes it cancel itself as soon as it starts.
#[derive(Clone, Default)]
pub struct Control {
    inner: Arc<Mutex<ControlState>>,
}

#[derive(Default)]
struct ControlState {
    reason: Option<CancelReason>,
    killed: bool,
    execution: Option<Arc<dyn ExecutionControl>>,
    wake: Option<mpsc::Sender<Internal>>,
}

impl Control {
    /// A control for a run not started yet.
    pub fn new() -> Control {
        Control::default()
    }

    /// Cancel the run for `reason`. Running tasks are stopped (TERM, grace, KILL), the
    /// rest come back `cancelled`. A reason less serious than one already given is
    /// ignored.
    pub fn cancel(&self, reason: CancelReason) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.reason.is_some_and(|r| r >= reason) {
            return;
        }
        let first = s.reason.is_none();
        s.reason = Some(reason);
        if first && let Some(e) = &s.execution {
            e.cancel();
        }
        if let Some(w) = &s.wake {
            let _ = w.send(Internal::Cancel);
        }
    }

    /// Kill everything the run started, at once (a second Ctrl-C): cancels with
    /// [`CancelReason::Interrupt`] and skips the grace period.
    pub fn kill(&self) {
        self.cancel(CancelReason::Interrupt);
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.killed = true;
        if let Some(e) = &s.execution {
            e.kill();
        }
    }

    /// The most serious reason given so far.
    pub fn reason(&self) -> Option<CancelReason> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).reason
    }

    /// Connect a started execution: a cancel or kill given before applies now.
    fn attach(&self, execution: Arc<dyn ExecutionControl>, wake: mpsc::Sender<Internal>) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if s.reason.is_some() {
            execution.cancel();
            let _ = wake.send(Internal::Cancel);
        }
        if s.killed {
            execution.kill();
        }
        s.execution = Some(execution);
        s.wake = Some(wake);
    }

    fn detach(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.execution = None;
        s.wake = None;
    }
}

/// The workers a run of `job` over `to_run` submissions uses: the job's `workers`
/// (default: the available parallelism), never more than there is work for.
pub fn workers_for(job: &Job, to_run: u64) -> usize {
    let want = job
        .workers
        .map(|n| n.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    want.min(to_run.max(1).try_into().unwrap_or(usize::MAX))
}

/// The state of one run on the caller's thread.
struct RunLoop<'j, F> {
    job: &'j Job,
    control: Control,
    on_event: F,
    counts: StatusCounts,
    resumed: u64,
    failures: u64,
    max_failures: Option<u64>,
    first_failure: Option<TaskRecord>,
    skipped: Option<SkipReason>,
    announced: Option<CancelReason>,
    execution: Option<Arc<dyn ExecutionControl>>,
    front_end_error: Option<String>,
}

impl<F> RunLoop<'_, F>
where
    F: FnMut(&RunEvent) -> Result<(), FrontEndError>,
{
    fn emit(&mut self, event: RunEvent) {
        if let Err(e) = (self.on_event)(&event) {
            if e.reason == CancelReason::FrontEndFailed && self.front_end_error.is_none() {
                self.front_end_error = Some(e.message.clone());
            }
            self.control.cancel(e.reason);
            self.announce();
        }
    }

    /// Tell the front ends about a cancel reason more serious than the last one told.
    fn announce(&mut self) {
        let Some(reason) = self.control.reason() else { return };
        if self.announced.is_some_and(|a| a >= reason) {
            return;
        }
        self.announced = Some(reason);
        self.emit(RunEvent::Cancelling(reason));
    }

    /// Apply the policies to one final record and deliver it.
    fn finish(&mut self, mut rec: TaskRecord) {
        match rec.status {
            Status::Cancelled => {
                if let Some(r) = self.control.reason() {
                    rec.error = Some(r.record_message().to_string());
                }
            }
            Status::Skipped => {
                if let Some(s) = self.skipped {
                    rec.error = Some(s.record_message().to_string());
                }
            }
            _ => {}
        }
        self.counts.add(rec.status);
        if rec.resumed {
            self.resumed += 1;
        }
        if rec.status.is_failure() {
            self.failures += 1;
            if self.first_failure.as_ref().is_none_or(|f| rec.index < f.index) {
                self.first_failure = Some(rec.clone());
            }
            let why = if self.max_failures.is_some_and(|m| self.failures > m) {
                Some(SkipReason::MaxFailures)
            } else if self.job.on_failure == OnFailure::Stop {
                Some(SkipReason::OnFailureStop)
            } else {
                None
            };
            if let (Some(why), None) = (why, self.skipped) {
                self.skipped = Some(why);
                if let Some(e) = &self.execution {
                    e.stop_submitting();
                }
            }
        }
        self.emit(RunEvent::TaskFinished(rec));
    }
}

impl<'b> Runner<'b> {
    /// A runner that executes on `backend`.
    pub fn new(backend: &'b dyn Backend) -> Runner<'b> {
        Runner { backend }
    }

    /// Run `job` once, calling `on_event` with every [`RunEvent`] on this thread, in
    /// order. Returns the summary also delivered in `RunFinished`. Fails only when the
    /// backend cannot start; then no event has been delivered.
    ///
    /// A front end returning an error cancels the run (with the error's reason) but
    /// keeps receiving every event, so the journal still gets every record.
    pub fn run<F>(
        &self,
        job: &Job,
        options: RunOptions,
        control: &Control,
        on_event: F,
    ) -> Result<RunSummary, RunError>
    where
        F: FnMut(&RunEvent) -> Result<(), FrontEndError>,
    {
        let started = Instant::now();
        let plan_len = Plan::new(job).len();
        let range = options.shard.map_or(0..plan_len, |s| s.range(plan_len));
        let (start, end) = (range.start, range.end);
        let plan = || Plan::new(job).slice(start, end);
        let total = end - start;
        let resume = options.resume.filter(|ix| !ix.is_empty());
        // How many will be taken from earlier runs: one pass over the keys, only when
        // there is something to resume.
        let will_resume = match &resume {
            Some(ix) => plan().filter(|s| ix.contains_key(&s.key)).count() as u64,
            None => 0,
        };
        let workers = workers_for(job, total - will_resume);
        let resume = Arc::new(Mutex::new(resume));
        let taken = Arc::new(AtomicU64::new(start));
        let backlog = Arc::new(Backlog::default());
        let (tx, rx) = mpsc::channel::<Internal>();

        let work: Work = {
            let (resume, taken, backlog, tx) =
                (resume.clone(), taken.clone(), backlog.clone(), tx.clone());
            let resuming = resume.lock().unwrap_or_else(|e| e.into_inner()).is_some();
            Box::new(plan().filter_map(move |sub| {
                taken.store(sub.index + 1, Ordering::Release);
                // No lock per submission when nothing is resumed.
                let reused = resuming
                    .then(|| {
                        resume
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            .and_then(|ix| ix.take(&sub.key))
                    })
                    .flatten();
                match reused {
                    Some(rec) => {
                        // Not holding the `resume` lock: this may wait for the caller.
                        backlog.add(1);
                        let _ = tx.send(Internal::Resumed(rec.resumed_at(sub.index)));
                        None
                    }
                    None => Some(sub),
                }
            }))
        };
        let mut execution = self.backend.start(StartRequest { job, workers, work })?;
        let execution_control = execution.control();
        control.attach(execution_control.clone(), tx.clone());
        let forwarder = {
            let (tx, backlog) = (tx.clone(), backlog.clone());
            std::thread::Builder::new().name("jobpool-forwarder".into()).spawn(move || {
                while let Some(ev) = execution.next_event() {
                    let msg = match ev {
                        BackendEvent::Finished(rec) => {
                            backlog.add(1);
                            Internal::Finished(rec)
                        }
                        BackendEvent::FinishedMany(recs) => {
                            backlog.add(recs.len());
                            Internal::FinishedMany(recs)
                        }
                        BackendEvent::Waiting { queued, running, reason } => {
                            Internal::Waiting { queued, running, reason }
                        }
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
                let _ = tx.send(Internal::StreamEnded);
                execution.join();
            })
        };
        drop(tx);
        let forwarder = match forwarder {
            Ok(f) => f,
            Err(e) => {
                execution_control.kill();
                control.detach();
                return Err(BackendError::new(format!("cannot start a thread: {e}")).into());
            }
        };

        let mut run = RunLoop {
            job,
            control: control.clone(),
            on_event,
            counts: StatusCounts::default(),
            resumed: 0,
            failures: 0,
            max_failures: job.max_failures.map(|m| m.limit(total)),
            first_failure: None,
            skipped: None,
            announced: None,
            execution: Some(execution_control),
            front_end_error: None,
        };
        run.emit(RunEvent::RunStarted(RunStart {
            run_id: options.run_id.clone(),
            job: job.name.clone(),
            total,
            resumed: will_resume,
            workers,
            backend: self.backend.name(job),
        }));
        run.announce();

        let deadline = job.limits.timeout.map(|t| started + t);
        let deadline_open = |run: &RunLoop<'_, F>| {
            deadline.filter(|_| run.control.reason().is_none_or(|r| r < CancelReason::Deadline))
        };
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => {
                    if deadline_open(&run).is_some_and(|d| Instant::now() >= d) {
                        run.control.cancel(CancelReason::Deadline);
                    }
                    m
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    // Nothing is waiting: the end of a burst. Front ends that buffer
                    // write out what they hold before this thread waits.
                    run.emit(RunEvent::Flush);
                    match deadline_open(&run) {
                        Some(d) => {
                            match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                                Ok(m) => m,
                                Err(mpsc::RecvTimeoutError::Timeout) => {
                                    run.control.cancel(CancelReason::Deadline);
                                    continue;
                                }
                                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                            }
                        }
                        None => match rx.recv() {
                            Ok(m) => m,
                            Err(_) => break,
                        },
                    }
                }
            };
            match msg {
                Internal::Finished(rec) | Internal::Resumed(rec) => {
                    backlog.done(1);
                    run.finish(rec);
                }
                Internal::FinishedMany(recs) => {
                    backlog.done(recs.len());
                    for rec in recs {
                        run.finish(rec);
                    }
                }
                Internal::Waiting { queued, running, reason } => {
                    run.emit(RunEvent::Waiting { queued, running, reason });
                }
                Internal::Cancel => run.announce(),
                Internal::StreamEnded => break,
            }
            // Every submission has its record: the run is over now, not when the
            // forwarder has heard the backend's stream end (one more thread woken, on a
            // CPU that may be asleep, before `run.json` is made durable). The front ends
            // flush first, as before any wait: this one joins the backend.
            if run.counts.total() >= total {
                run.emit(RunEvent::Flush);
                break;
            }
        }
        // The workers stop while the run finishes (its last records, its summary, the
        // front end's end of run: `run.json` made durable); joined before returning.
        let forwarder = JoinOnDrop(Some(forwarder));
        control.detach();
        run.execution = None;
        run.announce();

        // Submissions never taken from the plan still get a record: reused when
        // `--resume` has one, otherwise skipped (a failure policy stopped submitting) or
        // cancelled.
        let next = taken.load(Ordering::Acquire);
        if next < end {
            let rest = Plan::new(job).slice(next, end);
            let status = if run.skipped.is_some() && run.control.reason().is_none() {
                Status::Skipped
            } else {
                Status::Cancelled
            };
            for sub in rest {
                let reused = resume
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .and_then(|ix| ix.take(&sub.key))
                    .map(|r| r.resumed_at(sub.index));
                let rec = reused.unwrap_or_else(|| {
                    let args = crate::record::Args::new(job.args.names.clone().into(), sub.args);
                    let mut r = TaskRecord::new(sub.index, sub.key, args, status);
                    r.error = Some("not started: the backend took no more submissions".into());
                    // A command record always has the same fields.
                    r.stderr = matches!(job.task, TaskTemplate::Command(_)).then(String::new);
                    r
                });
                run.finish(rec);
            }
        }

        // A deadline (or a newer run) that came when nothing was left to cancel cut
        // nothing short.
        let cancelled = match run.control.reason() {
            Some(CancelReason::Deadline | CancelReason::Superseded)
                if run.counts.get(Status::Cancelled) == 0 =>
            {
                None
            }
            r => r,
        };
        let summary = RunSummary {
            run_id: options.run_id,
            job: job.name.clone(),
            total,
            counts: run.counts,
            resumed: run.resumed,
            wall: started.elapsed(),
            cancelled,
            skipped: run.skipped.filter(|_| run.counts.get(Status::Skipped) > 0),
            first_failure: run.first_failure.take(),
            front_end_error: run.front_end_error.take(),
        };
        run.emit(RunEvent::RunFinished(summary.clone()));
        drop(forwarder);
        Ok(summary)
    }
}

/// Joins its thread when dropped (also when a front end's handler panics), so that no
/// run returns with its backend still stopping.
struct JoinOnDrop(Option<std::thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
