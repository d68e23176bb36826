//! A scripted backend for the runner's unit tests: no processes, no threads of its own.
//!
//! Each submission's fate comes from a script function. The execution takes up to
//! `window` submissions ahead (as the pool prefetches), finishes them one by one in
//! submission order, and obeys its control as a real backend does: after
//! `stop_submitting`, taken submissions come back `skipped`; after `cancel`, `cancelled`;
//! a `Hang` step blocks until the run is cancelled.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use serde_json::Value;

use super::{Backend, BackendError, BackendEvent, Execution, ExecutionControl, StartRequest, Work};
use crate::model::{Job, Submission};
use crate::record::{Status, TaskRecord};

/// What the fake does with one submission.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Finish `ok` with this value.
    Ok(Value),
    /// Finish with a failure status and message.
    Fail(Status, String),
    /// Run until the run is cancelled, then come back `cancelled`.
    Hang,
    /// Run until the run is killed (a cancel alone does not stop it, as a task that
    /// ignores TERM during its grace period), then come back `cancelled`.
    HangUntilKilled,
}

type Script = dyn Fn(&Submission) -> Step + Send + Sync;

/// A backend whose tasks do what a script says.
pub struct FakeBackend {
    script: Arc<Script>,
    window: usize,
    /// Finish the newest taken submission first (completion order differs from
    /// submission order).
    pub lifo: bool,
    /// Every submission the backend was given to run, by index.
    pub ran: Arc<Mutex<Vec<u64>>>,
    /// Fails `start` with this message.
    pub refuse: Option<String>,
    /// Events sent before the first record.
    pub waiting: Vec<BackendEvent>,
    /// Lockstep: the fake sends its next record only after the test acknowledged the
    /// previous one ([`FakeBackend::ack`]), so the runner's policies act at an exact
    /// point instead of racing the backend (a real backend runs ahead, as tasks do).
    acks: Arc<(Mutex<u64>, Condvar)>,
}

impl FakeBackend {
    /// A backend taking up to `window` submissions ahead.
    pub fn new(
        window: usize,
        script: impl Fn(&Submission) -> Step + Send + Sync + 'static,
    ) -> Self {
        FakeBackend {
            script: Arc::new(script),
            window: window.max(1),
            lifo: false,
            ran: Default::default(),
            refuse: None,
            waiting: Vec::new(),
            acks: Default::default(),
        }
    }

    /// The runner delivered one of this backend's records.
    pub fn ack(&self) {
        *self.acks.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.acks.1.notify_all();
    }
}

impl Backend for FakeBackend {
    fn name(&self, _job: &Job) -> String {
        "fake".into()
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Box<dyn Execution>, BackendError> {
        if let Some(m) = &self.refuse {
            return Err(BackendError::new(m.clone()));
        }
        Ok(Box::new(FakeExecution {
            work: request.work,
            taken: VecDeque::new(),
            window: self.window,
            lifo: self.lifo,
            script: self.script.clone(),
            state: Arc::new(FakeState::default()),
            ran: self.ran.clone(),
            names: request.job.args.names.clone(),
            pending: self.waiting.clone().into(),
            acks: self.acks.clone(),
            sent: 0,
        }))
    }
}

#[derive(Default)]
struct FakeState {
    flags: Mutex<Flags>,
    cv: Condvar,
}

#[derive(Default, Clone, Copy)]
struct Flags {
    cancelled: bool,
    stopped: bool,
    killed: bool,
}

impl FakeState {
    fn flags(&self) -> Flags {
        *self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut Flags)) {
        f(&mut self.flags.lock().unwrap_or_else(|e| e.into_inner()));
        self.cv.notify_all();
    }
}

struct FakeExecution {
    work: Work,
    taken: VecDeque<Submission>,
    window: usize,
    lifo: bool,
    script: Arc<Script>,
    state: Arc<FakeState>,
    ran: Arc<Mutex<Vec<u64>>>,
    names: Vec<String>,
    pending: VecDeque<BackendEvent>,
    acks: Arc<(Mutex<u64>, Condvar)>,
    sent: u64,
}

fn record(sub: Submission, names: &[String], status: Status) -> TaskRecord {
    let mut r =
        TaskRecord::new(sub.index, sub.key, names.iter().cloned().zip(sub.args).collect(), status);
    r.attempts = u32::from(!matches!(status, Status::Skipped));
    r.worker = Some(0);
    r.duration_ms = 1.0;
    r
}

impl Execution for FakeExecution {
    fn next_event(&mut self) -> Option<BackendEvent> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        {
            // Lockstep (bounded, so a test that forgets to ack fails instead of hanging).
            let (lock, cv) = &*self.acks;
            let mut acked = lock.lock().unwrap_or_else(|e| e.into_inner());
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while *acked < self.sent && std::time::Instant::now() < until {
                acked = cv
                    .wait_timeout(acked, std::time::Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.sent += 1;
        let flags = self.state.flags();
        if !flags.cancelled && !flags.stopped {
            while self.taken.len() < self.window {
                match self.work.next() {
                    Some(s) => self.taken.push_back(s),
                    None => break,
                }
            }
        }
        let sub = if self.lifo { self.taken.pop_back()? } else { self.taken.pop_front()? };
        if flags.cancelled {
            let mut r = record(sub, &self.names, Status::Cancelled);
            r.attempts = 0;
            r.error = Some("cancelled by the fake".into());
            return Some(BackendEvent::Finished(r));
        }
        if flags.stopped {
            let mut r = record(sub, &self.names, Status::Skipped);
            r.error = Some("skipped by the fake".into());
            return Some(BackendEvent::Finished(r));
        }
        self.ran.lock().unwrap_or_else(|e| e.into_inner()).push(sub.index);
        let step = (self.script)(&sub);
        let rec = match step {
            Step::Ok(v) => {
                let mut r = record(sub, &self.names, Status::Ok);
                r.value = Some(v);
                r
            }
            Step::Fail(status, message) => {
                let mut r = record(sub, &self.names, status);
                r.error = Some(message);
                r
            }
            step @ (Step::Hang | Step::HangUntilKilled) => {
                let until_killed = step == Step::HangUntilKilled;
                let mut f = self.state.flags.lock().unwrap_or_else(|e| e.into_inner());
                while !(if until_killed { f.killed } else { f.cancelled }) {
                    f = self.state.cv.wait(f).unwrap_or_else(|e| e.into_inner());
                }
                drop(f);
                let mut r = record(sub, &self.names, Status::Cancelled);
                r.error = Some("stopped by the fake".into());
                r
            }
        };
        Some(BackendEvent::Finished(rec))
    }

    fn control(&self) -> Arc<dyn ExecutionControl> {
        self.state.clone()
    }

    fn join(self: Box<Self>) {}
}

impl ExecutionControl for FakeState {
    fn cancel(&self) {
        self.set(|f| f.cancelled = true);
    }

    fn stop_submitting(&self) {
        self.set(|f| f.stopped = true);
    }

    fn kill(&self) {
        self.set(|f| {
            f.cancelled = true;
            f.killed = true;
        });
    }
}
