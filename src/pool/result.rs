//! What the caller holds while tasks run: [`Outcome`], [`PoolError`], [`AsyncResult`],
//! [`MapResult`], and the `imap` iterators.
//!
//! Owns: waiting (condvar), decoding values, the callbacks' invocation. Must not: talk
//! to workers.

use std::collections::{BTreeMap, HashSet};
use std::marker::PhantomData;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;

use super::stream::LazyFeed;
use crate::record::Status;

/// A task's value or arguments as they travel: JSON text, or postcard bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// JSON text (job files, [`Registry::call_json`](super::Registry::call_json)).
    Json(String),
    /// Compact postcard bytes (typed library calls).
    Bytes(Vec<u8>),
}

impl Payload {
    /// The JSON text, for a JSON payload.
    pub fn json(&self) -> Option<&str> {
        match self {
            Payload::Json(s) => Some(s),
            Payload::Bytes(_) => None,
        }
    }

    /// Decode into `T` (from JSON text or postcard bytes).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PoolError> {
        match self {
            Payload::Json(s) => {
                serde_json::from_str(s).map_err(|e| PoolError::Decode(e.to_string()))
            }
            Payload::Bytes(b) => {
                postcard::from_bytes(b).map_err(|e| PoolError::Decode(e.to_string()))
            }
        }
    }

    /// Encode `v` as postcard bytes.
    pub fn encode<T: serde::Serialize>(v: &T) -> Result<Payload, PoolError> {
        let mut b = Vec::new();
        super::protocol::encode_into(v, &mut b).map_err(|e| PoolError::Encode(e.to_string()))?;
        Ok(Payload::Bytes(b))
    }
}

/// How a worker process ended, when its end cost a task ([`Status::Crashed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// One task's outcome, as the pool reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The caller's id (streaming runs) or the item's index (map calls).
    pub id: u64,
    /// The function (task kind) it called.
    pub task: &'static str,
    /// How it ended.
    pub status: Status,
    /// The value, on [`Status::Ok`].
    pub value: Option<Payload>,
    /// The error message, on any other status.
    pub error: Option<String>,
    /// The task's error data (JSON text), when it returned some.
    pub error_data: Option<String>,
    /// How many times it was started (0 when it never ran).
    pub attempts: u32,
    /// The worker slot (from 0) that ran its last attempt.
    pub worker: Option<u32>,
    /// When its last attempt started.
    pub started_at: Option<SystemTime>,
    /// How long its last attempt ran. A task of 1 ms or more is timed on its own; faster
    /// ones, whose results travel together, each get an even share of their group's time
    /// (and start times spread over it).
    pub duration: Duration,
    /// The process id of the worker that ran its last attempt, on a failure
    /// (process workers).
    pub worker_pid: Option<u32>,
    /// How that worker ended, when its end cost this task ([`Status::Crashed`]; `None`
    /// for a panic, which the worker survives).
    pub worker_exit: Option<WorkerExit>,
    /// The pool itself ended this attempt while it ran: it stopped the worker at the
    /// task timeout (a `timeout` the task did not report), or to cancel the run, so the
    /// task never said how it ended. `false` for everything a task reported (including
    /// a [`TaskError::timed_out`](super::TaskError::timed_out)).
    pub stopped_by_pool: bool,
}

impl Outcome {
    pub(crate) fn failed(id: u64, status: Status, error: impl Into<String>, attempts: u32) -> Self {
        Outcome {
            id,
            task: "",
            status,
            value: None,
            error: Some(error.into()),
            error_data: None,
            attempts,
            worker: None,
            started_at: None,
            duration: Duration::ZERO,
            worker_pid: None,
            worker_exit: None,
            stopped_by_pool: false,
        }
    }

    /// The outcome as a typed result, decoding the value into `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<T, PoolError> {
        let message = self.error.clone().unwrap_or_default();
        let task = self.task.to_string();
        match self.status {
            Status::Ok => match &self.value {
                Some(v) => v.decode(),
                None => Err(PoolError::Decode("no value".into())),
            },
            Status::Error => Err(PoolError::Task { task, message, data: self.error_data.clone() }),
            Status::Timeout => Err(PoolError::TaskTimeout { task, message, worker: self.worker }),
            Status::Crashed => Err(PoolError::Crashed {
                task,
                message,
                worker: self.worker,
                pid: self.worker_pid,
                exit: self.worker_exit,
            }),
            Status::Cancelled => Err(PoolError::Cancelled),
            Status::Skipped => Err(PoolError::Skipped),
        }
    }
}

/// How a collector keeps an outcome: successes compactly (a range of the result
/// message they came in, no allocation per item), the rest in full.
pub(crate) enum Stored {
    Ok {
        blob: Arc<Vec<u8>>,
        start: u32,
        end: u32,
        json: bool,
        attempts: u32,
        worker: u32,
        started_ns: u64,
        duration_ns: u64,
    },
    Other(Box<Outcome>),
}

impl Stored {
    pub(crate) fn is_ok(&self) -> bool {
        match self {
            Stored::Ok { .. } => true,
            Stored::Other(o) => o.status == Status::Ok,
        }
    }

    pub(crate) fn result<T: DeserializeOwned>(&self) -> Result<T, PoolError> {
        match self {
            Stored::Ok { blob, start, end, json, .. } => {
                decode_value(&blob[*start as usize..*end as usize], *json)
            }
            Stored::Other(o) => o.result(),
        }
    }

    pub(crate) fn to_outcome(&self, id: u64, task: &'static str) -> Outcome {
        match self {
            Stored::Ok { blob, start, end, json, attempts, worker, started_ns, duration_ns } => {
                let b = &blob[*start as usize..*end as usize];
                let value = if *json {
                    Payload::Json(String::from_utf8_lossy(b).into_owned())
                } else {
                    Payload::Bytes(b.to_vec())
                };
                Outcome {
                    id,
                    task,
                    status: Status::Ok,
                    value: Some(value),
                    error: None,
                    error_data: None,
                    attempts: *attempts,
                    worker: Some(*worker),
                    started_at: Some(super::protocol::ns_to_time(*started_ns)),
                    duration: Duration::from_nanos(*duration_ns),
                    worker_pid: None,
                    worker_exit: None,
                    stopped_by_pool: false,
                }
            }
            Stored::Other(o) => (**o).clone(),
        }
    }
}

/// `name` as a `&'static str`: outcomes carry their task's name without a reference
/// count shared between the dispatcher and the reader (measured: an `Arc<str>` per
/// outcome cost a fifth of `run_stream`'s throughput). Each distinct name is stored once
/// for the life of the process.
pub(crate) fn intern(name: &str) -> &'static str {
    thread_local! {
        // The last name this thread interned: one-by-one calls repeat it.
        static LAST: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
    }
    let last = LAST.get();
    if last == name {
        return last;
    }
    let s = intern_slow(name);
    LAST.set(s);
    s
}

fn intern_slow(name: &str) -> &'static str {
    static NAMES: Mutex<Option<std::collections::HashSet<&'static str>>> = Mutex::new(None);
    let mut g = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(Default::default);
    if let Some(s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(s);
    s
}

pub(crate) fn stored_result<T: DeserializeOwned>(x: &Option<Stored>) -> Result<T, PoolError> {
    x.as_ref().map(Stored::result).unwrap_or(Err(PoolError::Cancelled))
}

/// Why a result is not available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The caller's wait timed out; the task goes on (as in Python).
    #[error("timed out waiting for the result")]
    WaitTimeout,
    /// The task returned an error.
    #[error("task `{task}` failed: {message}")]
    Task {
        /// The task (registered function).
        task: String,
        /// The task's message.
        message: String,
        /// The task's error data (JSON text), if any.
        data: Option<String>,
    },
    /// The task ran past its task timeout and was stopped.
    #[error("task `{task}`: {message}")]
    TaskTimeout {
        /// The task (registered function).
        task: String,
        /// What happened, e.g. `task stopped after its task timeout of 5s`.
        message: String,
        /// The worker slot that ran it.
        worker: Option<u32>,
    },
    /// The task crashed: its worker died while running it (a signal, an exit), or it
    /// panicked (the worker survives a panic: `exit` is `None`).
    #[error("task `{task}`: {message}")]
    Crashed {
        /// The task (registered function).
        task: String,
        /// What happened, e.g. `worker crashed: killed by signal 9 (SIGKILL)`.
        message: String,
        /// The worker slot that ran it.
        worker: Option<u32>,
        /// The worker's process id (process workers).
        pid: Option<u32>,
        /// How the worker ended (`None` for a panic).
        exit: Option<WorkerExit>,
    },
    /// The pool is closed (or terminated) and takes no more tasks.
    #[error("the pool is closed")]
    Closed,
    /// The task was stopped or never started because the run was cancelled.
    #[error("the task was cancelled")]
    Cancelled,
    /// The task was never started because submitting stopped.
    #[error("the task was skipped")]
    Skipped,
    /// The value could not be decoded into the requested type.
    #[error("cannot decode the result: {0}")]
    Decode(String),
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments: {0}")]
    Encode(String),
    /// The call's callback (or error callback) panicked; the pool goes on.
    #[error("the callback of task `{task}` panicked: {message}")]
    Callback {
        /// The task (registered function).
        task: String,
        /// The panic's message.
        message: String,
    },
    /// A worker could not be started.
    #[error("cannot start a worker: {0}")]
    Start(String),
    /// A builder option has a value the pool cannot use (e.g. `workers(0)`).
    #[error("invalid pool option `{option}`: {reason}")]
    InvalidOption {
        /// The builder method.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// The caller's argument type is not the registered function's (checked once per
    /// call, before anything is sent).
    #[error("task `{task}` takes {registered}, not {given}")]
    ArgumentType {
        /// The task (registered function).
        task: String,
        /// The type it was registered with.
        registered: String,
        /// The caller's type.
        given: String,
    },
    /// The caller's value type is not the registered function's.
    #[error("task `{task}` returns {registered}, not {requested}")]
    ValueType {
        /// The task (registered function).
        task: String,
        /// The type it was registered with.
        registered: String,
        /// The type the caller asked for.
        requested: String,
    },
    /// The worker program was started as a worker but did not serve: its `main` does
    /// not call [`run_if_worker`](super::worker::run_if_worker) before building a pool.
    #[error(
        "the worker program {program} does not serve as a pool worker: call \
         jobpool::pool::worker::run_if_worker(&registry) first thing in its main"
    )]
    WorkerHookMissing {
        /// The worker program.
        program: String,
    },
    /// A worker's registry differs from the pool's (kinds, argument or value types).
    #[error("the worker program {program} has another registry than the pool: {}", differences.join("; "))]
    RegistryMismatch {
        /// The worker program.
        program: String,
        /// What differs, one line per kind.
        differences: Vec<String>,
    },
}

type Done = Box<dyn FnOnce(&Collector) + Send>;

/// A callback queued for the pool's callback thread.
pub(crate) type QueuedCallback = Box<dyn FnOnce() + Send>;

struct CState {
    /// Items of the call.
    n: usize,
    /// The per-item table: empty until an item needs it (a failure, `outcomes()`, an
    /// `imap` reader); a `map` whose items all succeed never builds it.
    outcomes: Vec<Option<Stored>>,
    remaining: usize,
    done: Option<Done>,
    /// Where `done` runs (the pool's callback thread); inline when `None`.
    runner: Option<mpsc::Sender<QueuedCallback>>,
    /// The callback has not run yet: the call is not ready before it has (as in Python).
    callback_pending: bool,
    /// The callback panicked: that call's `get` reports it.
    callback_panic: Option<String>,
    /// Runs of successes not yet written into `outcomes` (see [`Segment`]).
    segments: Vec<Segment>,
    /// Threads waiting on the condition variable: a notification is a system call, and
    /// most calls complete with nobody waiting (one-by-one `apply_async`, then `get`).
    waiters: usize,
    /// Wake the waiters once `remaining` is down to this (0: only when all are in). A
    /// `MapResult::get` decodes what arrived while the rest is still running.
    wake_at: usize,
}

impl CState {
    /// Wake the waiters, if there are any (call with the lock held).
    fn notify(&self, cv: &Condvar) {
        if self.waiters > 0 {
            cv.notify_all();
        }
    }
}

/// A worker's result message, shared by the outcomes that point into it.
pub(crate) struct SegmentData {
    /// Little-endian `u32` end offsets into `blob`, one per result.
    pub ends: Vec<u8>,
    pub blob: Arc<Vec<u8>>,
    /// The message's span, shared evenly by its results.
    pub started_ns: u64,
    pub duration_ns: u64,
}

/// Consecutive successes of one call (a whole result message), delivered by the
/// dispatcher in O(1); `get` decodes the values straight from it, and the per-item
/// table is only built from it when someone asks for per-item outcomes.
pub(crate) struct Segment {
    pub data: Arc<SegmentData>,
    pub count: usize,
    /// The first item's index in the collector.
    pub first: usize,
    pub attempts: u32,
    pub worker: u32,
    pub json: bool,
}

impl Segment {
    fn range(&self, k: usize) -> (u32, u32) {
        let ends = &self.data.ends;
        let start = if k == 0 { 0 } else { super::protocol::end_at(ends, k - 1) };
        (start, super::protocol::end_at(ends, k))
    }
}

impl CState {
    fn table(&mut self) -> &mut Vec<Option<Stored>> {
        if self.outcomes.len() != self.n {
            self.outcomes = (0..self.n).map(|_| None).collect();
        }
        &mut self.outcomes
    }

    fn materialize(&mut self) {
        self.table();
        for seg in std::mem::take(&mut self.segments) {
            let d = &seg.data;
            for k in 0..seg.count {
                let (start, end) = seg.range(k);
                let (started_ns, duration_ns) =
                    super::protocol::span_share(d.started_ns, d.duration_ns, seg.count, k);
                self.outcomes[seg.first + k] = Some(Stored::Ok {
                    blob: d.blob.clone(),
                    start,
                    end,
                    json: seg.json,
                    attempts: seg.attempts,
                    worker: seg.worker,
                    started_ns,
                    duration_ns,
                });
            }
        }
    }

    /// Every value in item order, or the first failing item's error.
    fn values<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, PoolError> {
        if !self.outcomes.is_empty()
            && self.remaining == 0
            && let Some(r) = self.values_mixed()
        {
            return r;
        }
        if !self.outcomes.is_empty() || self.remaining != 0 {
            self.materialize();
            return self.outcomes.iter().map(stored_result).collect();
        }
        // Every item succeeded and came in a segment: decode straight from them.
        self.segments.sort_unstable_by_key(|g| g.first);
        let mut v = Vec::with_capacity(self.n);
        for g in &self.segments {
            if g.first != v.len() {
                break; // not contiguous: cannot happen, but never guess
            }
            let blob = &g.data.blob[..];
            for k in 0..g.count {
                let (start, end) = g.range(k);
                let b = &blob[start as usize..end as usize];
                v.push(decode_value(b, g.json)?);
            }
        }
        if v.len() != self.n {
            self.materialize();
            return self.outcomes.iter().map(stored_result).collect();
        }
        Ok(v)
    }
}

impl CState {
    /// [`values`](Self::values) when some items are in the table (a failure, a retry, a
    /// task taken back from a busy worker) and the rest in segments: each value decoded
    /// from where it is, in item order, without first building an outcome per item from
    /// the segments (a table entry for each of 100,000 items, to be dropped right after).
    /// `None` when the segments are not what they always are (ordered, apart, within the
    /// call): then `values` decides.
    fn values_mixed<T: DeserializeOwned>(&mut self) -> Option<Result<Vec<T>, PoolError>> {
        if self.outcomes.len() != self.n {
            return None;
        }
        self.segments.sort_unstable_by_key(|g| g.first);
        let mut v = Vec::with_capacity(self.n);
        let mut segs = self.segments.iter().peekable();
        while v.len() < self.n {
            let i = v.len();
            match segs.peek() {
                // A segment's items are never in the table too; if they were, the segment
                // would win (as in `materialize`).
                Some(g) if g.first == i => {
                    if g.first + g.count > self.n {
                        return None;
                    }
                    if let Err(e) = decode_run(&g.data, g.count, g.json, &mut v) {
                        return Some(Err(e));
                    }
                    segs.next();
                }
                Some(g) if g.first < i => return None,
                _ => match stored_result(&self.outcomes[i]) {
                    Ok(x) => v.push(x),
                    Err(e) => return Some(Err(e)),
                },
            }
        }
        if segs.next().is_some() {
            return None;
        }
        Some(Ok(v))
    }
}

/// Append the values of a segment's `count` results to `v`.
fn decode_run<T: DeserializeOwned>(
    d: &SegmentData,
    count: usize,
    json: bool,
    v: &mut Vec<T>,
) -> Result<(), PoolError> {
    // One loop per encoding: the choice is not made again for every value. (The
    // closures spell out `decode_value`'s two branches: calling it from them measured
    // 6-7% slower maps in three of four alternating runs, even inlined.)
    if json {
        decode_each(d, count, v, |b| {
            serde_json::from_slice(b).map_err(|e| PoolError::Decode(e.to_string()))
        })
    } else {
        decode_each(d, count, v, |b| {
            super::protocol::decode(b).map_err(|e| PoolError::Decode(e.to_string()))
        })
    }
}

/// Decode the first `count` values of a segment with `decode`, appending them to `v`.
#[inline(always)]
fn decode_each<T>(
    d: &SegmentData,
    count: usize,
    v: &mut Vec<T>,
    decode: impl Fn(&[u8]) -> Result<T, PoolError>,
) -> Result<(), PoolError> {
    let bad = || PoolError::Decode("bad segment".into());
    let ends = d.ends.get(..4 * count).ok_or_else(bad)?;
    v.reserve(count);
    let mut start = 0usize;
    for e in ends.chunks_exact(4) {
        let end = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        v.push(decode(d.blob.get(start..end).ok_or_else(bad)?)?);
        start = end;
    }
    Ok(())
}

#[inline]
fn decode_value<T: DeserializeOwned>(b: &[u8], json: bool) -> Result<T, PoolError> {
    if json {
        serde_json::from_slice(b).map_err(|e| PoolError::Decode(e.to_string()))
    } else {
        super::protocol::decode(b).map_err(|e| PoolError::Decode(e.to_string()))
    }
}

/// Collects the outcomes of one call (one for `apply`, n for `map`).
pub(crate) struct Collector {
    /// The function called (for errors).
    pub(crate) task: &'static str,
    state: Mutex<CState>,
    cv: Condvar,
}

impl Collector {
    pub(crate) fn new(
        n: usize,
        task: &'static str,
        done: Option<Done>,
        runner: Option<mpsc::Sender<QueuedCallback>>,
    ) -> Arc<Self> {
        Arc::new(Collector {
            task,
            state: Mutex::new(CState {
                n,
                // A one-item call (apply) always ends up with its table: built here, it is
                // allocated by the thread that frees it (not by the dispatcher).
                outcomes: if n == 1 { vec![None] } else { Vec::new() },
                remaining: n,
                callback_pending: done.is_some(),
                done,
                runner,
                callback_panic: None,
                segments: Vec::new(),
                waiters: 0,
                wake_at: 0,
            }),
            cv: Condvar::new(),
        })
    }

    pub(crate) fn deliver_many(self: &Arc<Self>, items: impl Iterator<Item = (usize, Stored)>) {
        let done = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.table();
            for (index, outcome) in items {
                if index >= s.outcomes.len() || s.outcomes[index].is_some() {
                    continue;
                }
                s.outcomes[index] = Some(outcome);
                s.remaining -= 1;
            }
            if s.remaining <= s.wake_at {
                s.notify(&self.cv);
            }
            if s.remaining == 0 { s.done.take() } else { None }
        };
        if let Some(done) = done {
            self.run_done(done);
        }
    }

    /// Deliver a run of successes (items `first..first + count`, none delivered before).
    pub(crate) fn deliver_segment(self: &Arc<Self>, seg: Segment) {
        let done = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if seg.first + seg.count > s.n {
                return;
            }
            s.remaining -= seg.count;
            s.segments.push(seg);
            if s.remaining <= s.wake_at {
                s.notify(&self.cv);
            }
            if s.remaining == 0 { s.done.take() } else { None }
        };
        if let Some(done) = done {
            self.run_done(done);
        }
    }

    /// Wait until `pred` holds or the timeout passes; true if it holds.
    fn wait_until(&self, timeout: Option<Duration>, pred: impl Fn(&CState) -> bool) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&s) {
                return true;
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    Some(d - now)
                }
            };
            s.waiters += 1;
            s = match left {
                None => self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(t) => self.cv.wait_timeout(s, t).unwrap_or_else(|e| e.into_inner()).0,
            };
            s.waiters -= 1;
        }
    }

    /// Run the callback (once every outcome is in) on the pool's callback thread, never
    /// on the dispatcher: a slow one does not stall the pool. The call becomes ready
    /// when it has run; a panic is kept as the call's error.
    fn run_done(self: &Arc<Self>, done: Done) {
        let runner = self.state.lock().unwrap_or_else(|e| e.into_inner()).runner.take();
        let c = self.clone();
        let parcel: QueuedCallback = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(&c)));
            let mut s = c.state.lock().unwrap_or_else(|e| e.into_inner());
            s.callback_pending = false;
            if let Err(p) = r {
                s.callback_panic = Some(super::worker::panic_message(&*p));
            }
            s.notify(&c.cv);
        });
        match runner {
            Some(tx) => {
                if let Err(mpsc::SendError(parcel)) = tx.send(parcel) {
                    parcel();
                }
            }
            None => parcel(),
        }
    }

    /// For a call with no items: run its callback now.
    pub(crate) fn finish_empty(self: &Arc<Self>) {
        let done = self.state.lock().unwrap_or_else(|e| e.into_inner()).done.take();
        if let Some(done) = done {
            self.run_done(done);
        }
    }

    fn wait_all(&self, timeout: Option<Duration>) -> bool {
        self.wait_until(timeout, |s| s.remaining == 0 && !s.callback_pending)
    }

    fn ready(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.remaining == 0 && !s.callback_pending
    }

    /// The callback's panic, as the call's error.
    fn callback_error(&self) -> Result<(), PoolError> {
        match &self.state.lock().unwrap_or_else(|e| e.into_inner()).callback_panic {
            Some(message) => {
                Err(PoolError::Callback { task: self.task.to_string(), message: message.clone() })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn with_outcomes<R>(&self, f: impl FnOnce(&[Option<Stored>]) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.materialize();
        f(&s.outcomes)
    }

    /// Every value in item order, or the first failing item's error (call when ready).
    pub(crate) fn values<T: DeserializeOwned>(&self) -> Result<Vec<T>, PoolError> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).values()
    }

    /// Wait (at most `timeout`), then the callback's panic, or every value in item order,
    /// or the first failing item's error: `wait_all`, `callback_error` and `values`, with
    /// the values of the segments that arrive while waiting decoded as they arrive (a
    /// few wake-ups per call), so that decoding overlaps the run instead of following
    /// it. Anything but all successes in segments falls back to `values`, for the very
    /// same answer.
    pub(crate) fn wait_values<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Vec<T>, PoolError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // The values of items `0..out.len()`, decoded; runs that arrived ahead of the
        // prefix wait in `ahead` (by first item); `decoded`: the first item of every
        // segment decoded (into either).
        let mut out: Vec<T> = Vec::new();
        let mut ahead: BTreeMap<usize, Vec<T>> = BTreeMap::new();
        let mut decoded: HashSet<usize> = HashSet::new();
        let mut decoding = true;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let step = (s.n / 16).max(256);
        loop {
            // Segments are only ever added, until `materialize` moves them into the
            // table (then `values` decides).
            decoding &= s.outcomes.is_empty();
            let todo: Vec<(usize, usize, Arc<SegmentData>, bool)> = if decoding {
                s.segments
                    .iter()
                    .filter(|g| !decoded.contains(&g.first))
                    .map(|g| (g.first, g.count, g.data.clone(), g.json))
                    .collect()
            } else {
                Vec::new()
            };
            if !todo.is_empty() {
                if out.capacity() == 0 {
                    out.reserve_exact(s.n);
                }
                drop(s);
                for (first, count, data, json) in todo {
                    decoded.insert(first);
                    let r = if first == out.len() {
                        decode_run(&data, count, json, &mut out)
                    } else {
                        let mut v = Vec::with_capacity(count);
                        let r = decode_run(&data, count, json, &mut v);
                        ahead.insert(first, v);
                        r
                    };
                    if r.is_err() {
                        decoding = false; // `values` reports it, in item order
                        break;
                    }
                    while let Some(v) = ahead.remove(&out.len()) {
                        out.extend(v);
                    }
                }
                s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if s.remaining == 0 && !s.callback_pending {
                break;
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(PoolError::WaitTimeout);
                    }
                    Some(d - now)
                }
            };
            s.wake_at = if decoding { s.remaining.saturating_sub(step) } else { 0 };
            s.waiters += 1;
            s = match left {
                None => self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(t) => self.cv.wait_timeout(s, t).unwrap_or_else(|e| e.into_inner()).0,
            };
            s.waiters -= 1;
            s.wake_at = 0;
        }
        if let Some(message) = &s.callback_panic {
            return Err(PoolError::Callback {
                task: self.task.to_string(),
                message: message.clone(),
            });
        }
        // Every item succeeded, came in a segment, and was decoded exactly once, in order.
        let complete = decoding
            && s.outcomes.is_empty()
            && decoded.len() == s.segments.len()
            && ahead.is_empty()
            && out.len() == s.n;
        if !complete {
            return s.values();
        }
        Ok(out)
    }
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async): Python's `AsyncResult`.
pub struct AsyncResult<T> {
    pub(crate) c: Arc<Collector>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> AsyncResult<T> {
    /// Wait for the value (at most `timeout`; `None` waits forever).
    /// `Err(PoolError::WaitTimeout)` leaves the task running; call again later.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T, PoolError> {
        if !self.c.wait_all(timeout) {
            return Err(PoolError::WaitTimeout);
        }
        self.c.callback_error()?;
        self.c.with_outcomes(|o| stored_result(&o[0]))
    }

    /// Wait until the result is ready or `timeout` passes; true if ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.c.wait_all(timeout)
    }

    /// Whether the task has finished (in any way).
    pub fn ready(&self) -> bool {
        self.c.ready()
    }

    /// Whether the task finished and succeeded; `None` while it is not ready (Python
    /// raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        self.c.ready().then(|| self.c.with_outcomes(|o| o[0].as_ref().is_some_and(Stored::is_ok)))
    }

    /// The full outcome (status, attempts, worker, timing), once ready.
    pub fn outcome(&self) -> Option<Outcome> {
        self.c.with_outcomes(|o| o[0].as_ref().map(|x| x.to_outcome(0, self.c.task)))
    }
}

/// The result of [`Pool::map_async`](super::Pool::map_async) and
/// [`Pool::starmap_async`](super::Pool::starmap_async).
///
/// [`get`](Self::get) is Python's view (every value, or the first error in item order);
/// [`items`](Self::items) gives every item's own outcome, so one failure loses nothing.
pub struct MapResult<T> {
    pub(crate) c: Arc<Collector>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> MapResult<T> {
    /// Every value in item order, or the first failing item's error.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Vec<T>, PoolError> {
        self.c.wait_values(timeout)
    }

    /// Every item's result, in item order.
    pub fn items(&self, timeout: Option<Duration>) -> Result<Vec<Result<T, PoolError>>, PoolError> {
        if !self.c.wait_all(timeout) {
            return Err(PoolError::WaitTimeout);
        }
        Ok(self.c.with_outcomes(|o| o.iter().map(stored_result).collect()))
    }

    /// Every item's full outcome, in item order (`None` while not ready).
    pub fn outcomes(&self) -> Option<Vec<Outcome>> {
        self.c.ready().then(|| {
            self.c.with_outcomes(|o| {
                o.iter()
                    .enumerate()
                    .filter_map(|(i, x)| x.as_ref().map(|x| x.to_outcome(i as u64, self.c.task)))
                    .collect()
            })
        })
    }

    /// Wait until every item finished or `timeout` passes; true if all did.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.c.wait_all(timeout)
    }

    /// Whether every item has finished.
    pub fn ready(&self) -> bool {
        self.c.ready()
    }

    /// Whether every item succeeded; `None` while not ready.
    pub fn successful(&self) -> Option<bool> {
        self.c.ready().then(|| {
            self.c.with_outcomes(|o| o.iter().all(|x| x.as_ref().is_some_and(Stored::is_ok)))
        })
    }
}

/// Python's `imap`: results in item order, each as soon as it and all before it are in.
///
/// Lazy and bounded (CPython's `buffersize`): items are taken from the input iterator
/// only while fewer than the pool's [`stream_capacity`](super::PoolBuilder::stream_capacity)
/// are submitted and not yet yielded, so an infinite iterator works in constant memory.
/// An item that cannot be encoded ends the input: the results before it are yielded,
/// then its error.
pub struct Imap<'a, T> {
    pub(crate) feed: LazyFeed<'a>,
    pub(crate) rx: mpsc::Receiver<Outcome>,
    /// Outcomes that arrived before their turn.
    pub(crate) early: BTreeMap<u64, Outcome>,
    pub(crate) next: u64,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Imap<'_, T> {
    /// The next result, waiting at most `timeout` for it (Python's `next(timeout)`):
    /// `Err(PoolError::WaitTimeout)` leaves it pending (call again), `Ok(None)` is the
    /// end.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<T, PoolError>>, PoolError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<T, PoolError>>, PoolError> {
        loop {
            self.feed.top_up(self.next);
            if let Some(o) = self.early.remove(&self.next) {
                self.next += 1;
                return Ok(Some(o.result()));
            }
            if let Some((k, _)) = &self.feed.failed
                && *k == self.next
            {
                self.next += 1;
                return Ok(self.feed.failed.take().map(|(_, e)| Err(e)));
            }
            if self.next >= self.feed.submitted && self.feed.exhausted() {
                return Ok(None);
            }
            match recv_until(&self.rx, deadline)? {
                Some(o) => {
                    self.early.insert(o.id, o);
                }
                // Every sender is gone with this item missing: the pool ended it.
                None => {
                    self.next += 1;
                    return Ok(Some(Err(PoolError::Cancelled)));
                }
            }
        }
    }
}

/// The next outcome, waiting until `deadline` (`None`: forever); `Ok(None)` when every
/// sender is gone.
fn recv_until(
    rx: &mpsc::Receiver<Outcome>,
    deadline: Option<Instant>,
) -> Result<Option<Outcome>, PoolError> {
    match deadline {
        None => Ok(rx.recv().ok()),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
            Ok(o) => Ok(Some(o)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PoolError::WaitTimeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        },
    }
}

impl<T: DeserializeOwned> Iterator for Imap<'_, T> {
    type Item = Result<T, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).unwrap_or_else(|e| Some(Err(e)))
    }
}

/// Python's `imap_unordered`: `(item index, result)` in completion order, every item
/// exactly once; lazy and bounded like [`Imap`].
pub struct ImapUnordered<'a, T> {
    pub(crate) feed: LazyFeed<'a>,
    pub(crate) rx: mpsc::Receiver<Outcome>,
    /// Results handed back so far.
    pub(crate) handed: u64,
    pub(crate) _t: PhantomData<fn() -> T>,
}

/// One item of [`ImapUnordered`]: its index and its result.
pub type Unordered<T> = (usize, Result<T, PoolError>);

impl<T: DeserializeOwned> ImapUnordered<'_, T> {
    /// The next result, waiting at most `timeout` for it: `Err(PoolError::WaitTimeout)`
    /// leaves it pending (call again), `Ok(None)` is the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Unordered<T>>, PoolError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Option<Unordered<T>>, PoolError> {
        self.feed.top_up(self.handed);
        if self.handed >= self.feed.submitted && self.feed.exhausted() {
            // Every submitted item is in: then the input's own failure, if any.
            return Ok(self.feed.failed.take().map(|(k, e)| (k as usize, Err(e))));
        }
        match recv_until(&self.rx, deadline)? {
            Some(o) => {
                self.handed += 1;
                Ok(Some((o.id as usize, o.result())))
            }
            None => Ok(None),
        }
    }
}

impl<T: DeserializeOwned> Iterator for ImapUnordered<'_, T> {
    type Item = (usize, Result<T, PoolError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).ok().flatten()
    }
}
