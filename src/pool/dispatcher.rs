//! The dispatcher: the single source of truth of a pool, and the scheduling state
//! machine only. Its state ([`Shared`]) is changed under one lock by its own thread
//! (calls, starts, exits, ticks) and by the workers' reader threads, which apply the
//! result messages they receive in place while the dispatcher thread waits (no
//! hand-over to another thread per message; see [`results_from_reader`]).
//!
//! Owns: the queue of waiting tasks, each worker's in-flight tasks (in the order the
//! worker runs them) and phase, batching, the credit window, taking unstarted tasks
//! back from a busy worker for an idle one ([`Dispatcher::rebalance`]), task timeouts (TERM,
//! grace, KILL), crash attribution through the shared slot, retries, respawning,
//! close / join / terminate. Callers talk to it through [`Event`]s; workers through
//! their readers ([`results_from_reader`], and events for the rest).
//! Must not: block on anything but its event channel, nor wait for anything while it
//! holds the lock but a worker's exit (sends to workers are bounded by
//! the credit window, so they never block for long); touch a process or a thread
//! itself (starting, signalling, reaping a worker is [`Handle`]'s, in `handle.rs`, and
//! OS calls are `crate::process`'s); hand outcomes to callers other than through
//! `delivery.rs`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcSender;

use super::delivery::{self, Deliveries, Reply, fail_parcel};
use super::handle::{self, Handle};
use super::protocol::{
    Batch, CODE_CANCELLED, CODE_ERROR, CODE_OK, CODE_PANIC, CODE_SKIPPED, CODE_STOLEN,
    CODE_TIMED_OUT, ResultBatch, Slot, ToWorker, end_at, now_ns, ns_to_time, span_share,
};
use super::result::{Outcome, Stored, WorkerExit};
use super::{Config, PoolError, WorkerKind};
use crate::process;
use crate::record::Status;

/// Batches a worker may have outstanding at once (well under the ~278 messages a
/// socket buffers, so a send never blocks).
const WINDOW: usize = 4;
/// Largest batch (argument bytes) sent to a worker that is still busy.
const BUSY_BATCH_BYTES: usize = 32 * 1024;
/// Results spanning several parcels are delivered as one segment a parcel only when
/// the parcels take this many results each on average.
const MIN_SEGMENT: usize = 16;
/// A worker whose task has run this long while another worker is idle with nothing
/// queued gives up half of the tasks it was sent and has not started (see
/// [`Dispatcher::rebalance`]). Far above a trivial task, so fast work is never moved.
const STEAL_AFTER: Duration = Duration::from_millis(1);
/// Tasks faster than this on average (measured from the workers' results) are sent in
/// batches sized by the tasks queued; slower ones in small batches.
const FAST_TASK_NS: u64 = 50_000;
/// Tasks between [`FAST_TASK_NS`] and this on average go in batches of about
/// [`MEDIUM_BATCH_NS`] of work, so that a worker is sent a batch, and sends results
/// (see the worker's `HOLD`), every several tasks rather than at every one: each message
/// wakes a thread of the pool. 2,000 `command`s starting `true` (0.3–0.7 ms each here)
/// spent 4% less time, 2 workers against the bare spawn loop.
const MEDIUM_TASK_NS: u64 = 1_000_000;
/// The work in one batch of medium tasks (see [`MEDIUM_TASK_NS`]).
const MEDIUM_BATCH_NS: u64 = 5_000_000;
/// Largest automatic batch.
pub(crate) const MAX_AUTO_CHUNK: usize = 4096;
/// Give up on a worker that has not finished its handshake in this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A process worker that runs nothing for this long while it has tasks to run, or after
/// it was told to exit, is killed: it is stopped (SIGSTOP) or otherwise stuck, and would
/// hang the run. Its tasks go back to the queue (none was running). Far above any pause
/// between two tasks, even on a loaded machine.
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// Consecutive failed worker starts, with no worker up in between, after which the
/// program is taken for one that cannot be a worker: an error at start-up, and later
/// the waiting tasks fail instead of respawning forever.
const MAX_START_FAILURES: u32 = 3;

/// One task of a [`Parcel`]: its id for the caller, its argument's range in the parcel's
/// buffer, and how often it was started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    pub user_id: u64,
    pub start: usize,
    pub end: usize,
    pub attempts: u32,
}

/// A parcel: tasks of one pool call that travel together: same function, same reply,
/// arguments in one shared buffer (encoded once, never copied per task). A `map` makes
/// one parcel per chunk, an `apply` one parcel of one item, a stream one per run of
/// consecutive submissions of the same function. A parcel is split when only part of it
/// fits a batch, or when some of its tasks must run again. (Not a job: in jobpool a job
/// is a job file.)
pub(crate) struct Parcel {
    pub func: Arc<str>,
    /// `func`, interned: what the outcomes carry.
    pub task: &'static str,
    pub json: bool,
    /// Batch size for this call; 0 = decide from the queue.
    pub chunk: usize,
    pub run: u64,
    pub reply: Reply,
    pub buf: Arc<Vec<u8>>,
    /// The items, once built: see `lazy`. (Private: read them with [`Parcel::len`] and
    /// [`Parcel::item`], which need no built list.)
    items: Vec<Item>,
    /// A `map` chunk's items, not built (`items` is empty): `(first id, count)`. Item k
    /// is `first + k`, never started, its argument between the ends `k - 1` and `k` of
    /// `dense` (from 0). Most chunks are sent and finished whole, and never need their
    /// items one by one; a path that does (a split, a steal, a retry, a crash) builds
    /// them first ([`Parcel::items_mut`]).
    lazy: Option<(u64, usize)>,
    /// Sequence number of `items[0]` once sent (item k has `seq + k`).
    seq: u64,
    /// Items whose result arrived (a prefix: results come in order).
    done: usize,
    /// The last failed attempt of items queued to run again: what they end as if they
    /// never start again (submitting stopped), since they did run.
    failed: Vec<Outcome>,
    /// Set by `map` ([`Parcel::map_chunk`]): the items are consecutive ids, none started
    /// before, their arguments one after the other in `buf` from its start, and item k's
    /// end is the little-endian `u32` at `4 * k` here. Kept while the parcel holds a
    /// prefix of its items (dropped from a tail or a copy): then a batch takes the ends
    /// as they are and results are checked without a look at the items.
    dense: Option<Arc<Vec<u8>>>,
}

/// The item vectors of finished map chunks that had to build them (see
/// [`Parcel::lazy`]: a chunk split for a busy worker does), kept for the next ones: fresh
/// memory costs a page fault per 4 KiB (32 bytes an item), more than filling it; freed
/// memory is soon given back to the system.
static SPARE_ITEMS: Mutex<Vec<Vec<Item>>> = Mutex::new(Vec::new());
/// At most this many spare vectors (of up to 2 × [`MAX_AUTO_CHUNK`] items: 4 MiB).
const SPARE_MAX: usize = 16;

/// An empty item vector with room for `len` items: a spare one when there is one.
fn spare_items(len: usize) -> Vec<Item> {
    let spare = SPARE_ITEMS.lock().ok().and_then(|mut s| s.pop());
    match spare {
        Some(v) if v.capacity() >= len => v,
        _ => Vec::with_capacity(len),
    }
}

impl Drop for Parcel {
    fn drop(&mut self) {
        // A map chunk's built items go back for the next chunk that builds them.
        if self.dense.is_none()
            || self.items.capacity() == 0
            || self.items.capacity() > 2 * MAX_AUTO_CHUNK
        {
            return;
        }
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        if let Ok(mut spare) = SPARE_ITEMS.lock()
            && spare.len() < SPARE_MAX
        {
            spare.push(items);
        }
    }
}

impl Parcel {
    pub(crate) fn new(
        func: Arc<str>,
        json: bool,
        chunk: usize,
        run: u64,
        reply: Reply,
        buf: Arc<Vec<u8>>,
        items: Vec<Item>,
    ) -> Self {
        let task = super::result::intern(&func);
        Parcel {
            func,
            task,
            json,
            chunk,
            run,
            reply,
            buf,
            items,
            lazy: None,
            seq: 0,
            done: 0,
            failed: Vec::new(),
            dense: None,
        }
    }

    /// A `map` chunk of `count` items with consecutive ids from `first`, never started,
    /// their arguments one after the other in `buf` from its start; `ends` holds item k's
    /// end as the little-endian `u32` at `4 * k`. Its items are built only if needed
    /// (see [`Parcel::lazy`]).
    pub(crate) fn map_chunk(
        func: Arc<str>,
        chunk: usize,
        reply: Reply,
        buf: Arc<Vec<u8>>,
        first: u64,
        ends: Arc<Vec<u8>>,
    ) -> Self {
        let count = ends.len() / 4;
        debug_assert!(
            ends.len().is_multiple_of(4)
                && (0..count).all(|k| k == 0 || end_at(&ends, k - 1) <= end_at(&ends, k))
                && (count == 0 || end_at(&ends, count - 1) as usize <= buf.len()),
            "a map chunk's ends"
        );
        let mut p = Parcel::new(func, false, chunk, 0, reply, buf, Vec::new());
        p.lazy = Some((first, count));
        p.dense = Some(ends);
        p
    }

    /// How many items the parcel holds (finished ones included).
    pub(crate) fn len(&self) -> usize {
        self.lazy.map_or(self.items.len(), |(_, n)| n)
    }

    /// Item `k`.
    pub(crate) fn item(&self, k: usize) -> Item {
        match (self.lazy, &self.dense) {
            (Some((first, n)), Some(ends)) => {
                assert!(k < n, "item {k} of a chunk of {n}");
                let start = if k == 0 { 0 } else { end_at(ends, k - 1) as usize };
                Item {
                    user_id: first + k as u64,
                    start,
                    end: end_at(ends, k) as usize,
                    attempts: 0,
                }
            }
            _ => self.items[k],
        }
    }

    /// The items, built first if they were not (see [`Parcel::lazy`]).
    pub(crate) fn items_mut(&mut self) -> &mut Vec<Item> {
        if let Some((_, n)) = self.lazy {
            let mut items = spare_items(n);
            items.extend((0..n).map(|k| self.item(k)));
            self.items = items;
            self.lazy = None;
        }
        &mut self.items
    }

    /// A parcel of one item with its own buffer.
    pub(crate) fn single(
        func: Arc<str>,
        json: bool,
        run: u64,
        user_id: u64,
        reply: Reply,
        payload: Vec<u8>,
    ) -> Self {
        let end = payload.len();
        let item = Item { user_id, start: 0, end, attempts: 0 };
        Parcel::new(func, json, 0, run, reply, Arc::new(payload), vec![item])
    }

    /// The same call with other items.
    fn with_items(&self, items: Vec<Item>) -> Parcel {
        Parcel {
            func: self.func.clone(),
            task: self.task,
            json: self.json,
            chunk: self.chunk,
            run: self.run,
            reply: self.reply.clone(),
            buf: self.buf.clone(),
            failed: self
                .failed
                .iter()
                .filter(|o| items.iter().any(|i| i.user_id == o.id))
                .cloned()
                .collect(),
            items,
            lazy: None,
            seq: 0,
            done: 0,
            dense: None,
        }
    }

    /// Remember `o`, a failed attempt of one of the items, as its outcome if it never
    /// runs again.
    fn remember(&mut self, o: Outcome) {
        self.failed.retain(|f| f.id != o.id);
        self.failed.push(o);
    }

    /// The outcome of an item that will not start (submitting stopped): its last failed
    /// attempt if it had one, otherwise `skipped`.
    pub(crate) fn skipped(&self, item: &Item) -> Outcome {
        self.failed.iter().find(|o| o.id == item.user_id).cloned().unwrap_or_else(|| {
            Outcome::failed(item.user_id, Status::Skipped, "submitting stopped", item.attempts)
        })
    }

    fn arg(&self, item: &Item) -> &[u8] {
        &self.buf[item.start..item.end]
    }

    /// The items whose result has not arrived yet.
    pub(crate) fn unfinished(&mut self) -> &[Item] {
        let done = self.done;
        &self.items_mut()[done..]
    }

    /// The first item with no result yet (there is one).
    pub(crate) fn first_unfinished(&self) -> Item {
        self.item(self.done)
    }

    /// How many items have no result yet.
    pub(crate) fn left(&self) -> usize {
        self.len() - self.done
    }
}

pub(crate) enum Event {
    /// A process worker's reader started it (or could not): its first event, before
    /// its `Ready`, `StartFailed` or `Gone`.
    Launched {
        wid: u64,
        result: Result<handle::Launched, String>,
    },
    Submit(Vec<Parcel>),
    /// One parcel (a one-by-one call): no vector to allocate here and free there.
    SubmitOne(Parcel),
    Ready {
        wid: u64,
        sender: IpcSender<ToWorker>,
    },
    StartFailed {
        wid: u64,
        error: PoolError,
    },
    Results {
        wid: u64,
        results: ResultBatch,
    },
    Gone {
        wid: u64,
    },
    /// The worker sent what the pool cannot read (its reader stopped reading).
    Broken {
        wid: u64,
        why: String,
    },
    /// [`RunControl::cancel`](super::RunControl::cancel).
    Cancel {
        run: u64,
    },
    /// [`RunControl::stop_submitting`](super::RunControl::stop_submitting).
    StopSubmitting {
        run: u64,
    },
    /// A [`RunStream`](super::RunStream)'s feeder started (`open`) or ended.
    Feeding {
        open: bool,
    },
    Close,
    Join,
    Terminate,
    /// Nothing to do but look again: a reader changed the state in place (see
    /// [`Shared`]) in a way that needs the dispatcher thread sooner than it planned to
    /// wake, or that may have finished the pool.
    Wake,
}

#[derive(Clone, Copy, PartialEq)]
enum Why {
    Timeout(u64),
    Cancel,
    Terminate,
    /// The pool could not send to it (it was dying anyway).
    Lost,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Starting(Instant),
    Ready,
    Retiring,
    Stopping { why: Why, kill_at: Instant, killed: bool },
}

/// The dispatcher's record of one worker: its scheduling state and its [`Handle`].
struct Worker {
    wid: u64,
    index: u32,
    phase: Phase,
    inflight: VecDeque<Parcel>,
    /// The batches sent and not fully reported, oldest first: (first id, last id).
    batches: VecDeque<(u64, u64)>,
    assigned: usize,
    /// Results arrived for every task with id < this (they come in id order).
    reported: u64,
    /// A steal is unresolved: the worker has not yet reported every task with id < this
    /// (all it was sent before the steal). It is sent nothing new until then.
    steal_until: Option<u64>,
    /// The worker broke the protocol (a message the pool cannot read or that does not
    /// fit what it was sent): why. It is killed, and its tasks settled as for a crash.
    broken: Option<String>,
    /// What the worker had done when last seen (last task started, results reported),
    /// and since when it has done nothing more (see [`STALL_LIMIT`]).
    progress: (Option<u64>, u64),
    progress_at: Instant,
    /// It was killed for making no progress.
    stalled: bool,
    slot: Slot,
    handle: Handle,
}

impl Worker {
    fn new(wid: u64, index: u32, phase: Phase, slot: Slot, handle: Handle) -> Worker {
        Worker {
            wid,
            index,
            phase,
            inflight: VecDeque::new(),
            batches: VecDeque::new(),
            assigned: 0,
            reported: 0,
            steal_until: None,
            broken: None,
            progress: (None, 0),
            progress_at: Instant::now(),
            stalled: false,
            slot,
            handle,
        }
    }

    /// Signal a process worker and the process group it registered.
    fn signal(&self, sig: i32) {
        self.handle.signal(&self.slot, sig);
    }

    fn send_shutdown(&self) {
        self.handle.send_shutdown(&self.slot);
    }

    /// The id of the next result the worker owes: results come in id order, one per task
    /// sent, batch after batch.
    fn next_result(&self) -> Option<u64> {
        self.batches.front().map(|&(first, _)| first.max(self.reported))
    }

    /// The part of `log` (the results a dead worker committed to its slot) that it had
    /// not sent: `None` if nothing, or if the log does not fit what the worker owes (a
    /// worker that scribbled on its slot; its tasks are then settled as for a crash).
    fn unsent(&self, mut log: ResultBatch) -> Option<ResultBatch> {
        malformed(&log).ok()?;
        let next = self.next_result()?;
        let n = log.len() as u64;
        let seen = next.checked_sub(log.base)?;
        if seen >= n {
            return None;
        }
        if seen > 0 {
            log = log.split_off_last((n - seen) as usize);
        }
        self.check(&log).ok()?;
        Some(log)
    }

    /// Why `r`, a message of this worker, cannot be applied: malformed, or not the
    /// results it owes next (an id it was never sent, one already reported, a gap).
    fn check(&self, r: &ResultBatch) -> Result<(), String> {
        malformed(r)?;
        let n = r.len() as u64;
        let Some(next) = self.next_result() else {
            return Err(format!("results for tasks {}.. when it owed none", r.base));
        };
        if r.base != next {
            return Err(format!(
                "results for tasks {}..{} when task {next} was next",
                r.base,
                r.base.saturating_add(n)
            ));
        }
        let last = self.batches.front().map_or(0, |b| b.1);
        if r.base + n - 1 > last {
            return Err(format!(
                "{n} results from task {} on, past the last task of its batch ({last})",
                r.base
            ));
        }
        Ok(())
    }
}

/// The error of a task the pool stopped at its timeout.
fn timeout_message(limit: Option<Duration>) -> String {
    format!(
        "task stopped after its task timeout of {}",
        humantime::format_duration(limit.unwrap_or_default())
    )
}

/// Why a result message is malformed, if it is: its table of payload ends, codes and
/// error data must describe exactly its results (a worker that wrote garbage must not
/// make the pool read out of bounds or take one task's status for another's).
fn malformed(r: &ResultBatch) -> Result<(), String> {
    let n = r.len();
    if !r.ends.0.len().is_multiple_of(4) {
        return Err(format!("a table of ends of {} bytes", r.ends.0.len()));
    }
    if n == 0 {
        return Err("an empty result message".into());
    }
    if r.base.checked_add(n as u64).is_none() {
        return Err(format!("task ids past the largest ({}.. and {n} more)", r.base));
    }
    // One branch-free pass (ends that never go down, the last within the blob: all are),
    // then, only for a bad table, the first bad end.
    let (mut prev, mut down) = (0u32, false);
    for e in r.ends.0.chunks_exact(4) {
        let e = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        down |= e < prev;
        prev = e;
    }
    if down || prev as usize > r.blob.0.len() {
        let mut prev = 0u32;
        for k in 0..n {
            let e = r.end(k);
            if e < prev || e as usize > r.blob.0.len() {
                return Err(format!(
                    "result {k}'s payload ends at byte {e}, outside the message's {} bytes",
                    r.blob.0.len()
                ));
            }
            prev = e;
        }
    }
    if !r.codes.0.is_empty() && r.codes.0.len() != n {
        return Err(format!("{} result codes for {n} results", r.codes.0.len()));
    }
    if let Some(c) = r.codes.0.iter().find(|&&c| c > CODE_STOLEN) {
        return Err(format!("unknown result code {c}"));
    }
    let mut after = None;
    for (id, _) in &r.data {
        if *id < r.base || *id >= r.base + n as u64 || after.is_some_and(|a| *id <= a) {
            return Err(format!("error data for task {id}, not a result of the message"));
        }
        after = Some(*id);
    }
    Ok(())
}

/// The dispatcher's state, shared by its thread and the workers' readers: a reader
/// applies the results it received itself, under the lock, while the dispatcher thread
/// waits (one thread hand-over fewer per result message); the thread handles everything
/// else (calls, starts, exits, ticks) and the results handed to it.
pub(crate) type Shared = Mutex<Dispatcher>;

pub(crate) struct Dispatcher {
    cfg: Arc<Config>,
    tx: Sender<Event>,
    /// This state, for the readers of the workers it starts.
    me: Weak<Shared>,
    /// When the dispatcher thread, waiting for events, wakes next by itself (a reader
    /// that needs it sooner sends [`Event::Wake`]).
    wake_by: Option<Instant>,
    pending: VecDeque<Parcel>,
    workers: Vec<Worker>,
    /// Process workers whose reader has not reported them started yet
    /// ([`Event::Launched`]): not in `workers` until then.
    launching: Vec<handle::Launch>,
    next_wid: u64,
    next_seq: u64,
    /// Runs cancelled: their running tasks were stopped, everything else of theirs
    /// ends `cancelled`.
    cancelled_runs: HashSet<u64>,
    /// Runs that stopped submitting: they take no more tasks (not started ones end
    /// `skipped`); their running tasks finish.
    not_submitting: HashSet<u64>,
    startup: Option<mpsc::SyncSender<Result<(), PoolError>>>,
    start_failures: u32,
    last_start_error: String,
    /// Whether any worker ever finished its handshake.
    ever_ready: bool,
    joining: bool,
    /// `close` was called: no new calls; idle workers exit once the queue is empty.
    closed: bool,
    /// Run streams whose feeder is still handing over submissions.
    feeds: usize,
    terminating: bool,
    /// Thread workers: slots of stopped threads whose task may still run a process
    /// group (a thread cannot be killed), with when to kill that group.
    orphaned_groups: Vec<(Slot, Instant)>,
    /// The command groups of stopped thread workers (their leaders and guards), ended
    /// once their grace period is over, like `orphaned_groups`.
    thread_groups: Vec<(i32, Instant)>,
    /// The mean time of a task lately (a moving average over result messages); slow
    /// until the first results are in.
    task_ns: u64,
}

/// A dispatcher thread starting its workers ([`start`]).
pub(crate) struct Starting {
    pub(crate) tx: Sender<Event>,
    pub(crate) thread: std::thread::JoinHandle<()>,
    /// One message: `Ok` once one worker finished its handshake; or the first start
    /// error, sent once the dispatcher has cleaned up (its thread then ends by itself).
    pub(crate) startup: Receiver<Result<(), PoolError>>,
}

/// Start the dispatcher thread, which starts the workers; returns at once (see
/// [`Starting::startup`]).
pub(crate) fn start(cfg: Arc<Config>) -> Result<Starting, PoolError> {
    let (tx, rx) = mpsc::channel();
    let (stx, srx) = mpsc::sync_channel(1);
    let shared = Arc::new_cyclic(|me| {
        Mutex::new(Dispatcher {
            cfg,
            tx: tx.clone(),
            me: me.clone(),
            wake_by: None,
            pending: VecDeque::new(),
            workers: Vec::new(),
            launching: Vec::new(),
            next_wid: 0,
            next_seq: 0,
            cancelled_runs: HashSet::new(),
            not_submitting: HashSet::new(),
            startup: Some(stx),
            start_failures: 0,
            last_start_error: String::new(),
            ever_ready: false,
            joining: false,
            closed: false,
            feeds: 0,
            terminating: false,
            orphaned_groups: Vec::new(),
            thread_groups: Vec::new(),
            task_ns: u64::MAX,
        })
    });
    let thread = std::thread::Builder::new()
        .name("jobpool-dispatcher".into())
        .spawn(move || run(&shared, &rx))
        .map_err(|e| PoolError::Start(e.to_string()))?;
    Ok(Starting { tx, thread, startup: srx })
}

fn lock(shared: &Shared) -> MutexGuard<'_, Dispatcher> {
    shared.lock().expect("the dispatcher's state (a panic while it was held)")
}

/// The dispatcher thread: waits for events (never holding the lock while it waits),
/// handles them, and ticks.
fn run(shared: &Shared, rx: &Receiver<Event>) {
    {
        let mut d = lock(shared);
        let all: Vec<u32> = (0..d.cfg.workers as u32).collect();
        if let Err(e) = d.spawn_many(&all) {
            d.fail_startup(e);
            d.terminate_all();
            drop(d);
            drain_until_empty(shared, rx);
            return;
        }
        d.check_startup();
    }
    loop {
        let wait = {
            let mut d = lock(shared);
            let wait = d.tick_interval();
            d.wake_by = Some(Instant::now() + wait);
            wait
        };
        let first = rx.recv_timeout(wait);
        let mut d = lock(shared);
        d.wake_by = None;
        match first {
            Ok(ev) => d.handle(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => d.begin_terminate(),
        }
        for _ in 0..100_000 {
            match rx.try_recv() {
                Ok(ev) => d.handle(ev),
                Err(_) => break,
            }
        }
        d.tick();
        d.after_events();
        if d.finished() {
            break;
        }
    }
    let mut d = lock(shared);
    d.settle_orphaned_groups();
    d.fail_startup(PoolError::Closed);
}

/// After a startup failure: wait for every worker to be gone (the lock is free while
/// this waits, so a reader can finish what it is doing and report its worker gone).
fn drain_until_empty(shared: &Shared, rx: &Receiver<Event>) {
    while {
        let d = lock(shared);
        !d.workers.is_empty() || !d.launching.is_empty()
    } {
        let ev = rx.recv_timeout(Duration::from_millis(5));
        let mut d = lock(shared);
        match ev {
            Ok(Event::Launched { wid, result }) => {
                d.on_launched(wid, result);
                let grace = d.cfg.grace_period;
                if let Some(w) = d.find(wid) {
                    Dispatcher::stop_worker(w, Why::Terminate, grace);
                }
            }
            Ok(
                Event::Gone { wid } | Event::StartFailed { wid, .. } | Event::Broken { wid, .. },
            ) => {
                d.remove_worker(wid);
            }
            Ok(Event::Ready { wid, .. }) => d.kill_worker(wid),
            _ => {}
        }
        d.tick();
    }
}

/// What a worker's reader does with a result message: apply it on its own thread, under
/// the lock, when the dispatcher thread is waiting (the usual case when tasks take time:
/// no hand-over then) and none of the reader's earlier messages waits for that thread;
/// then wake it if it has to look sooner than it planned, or if the pool may be
/// finished. `Ok(false)` when the pool is gone. Otherwise — the lock is held, or the
/// dispatcher thread is up and about to look anyway — the message comes back (`Err`)
/// and the reader hands it to the dispatcher thread, counted in `queued`, as before:
/// with many small messages (one-by-one calls) the readers and the dispatcher thread
/// would otherwise take turns on the lock at every message (measured: 20,000 calls
/// 14–19 → 18–21 ms). A worker's messages are applied in the order it sent them
/// either way.
pub(crate) fn results_from_reader(
    shared: &Weak<Shared>,
    wid: u64,
    results: ResultBatch,
    queued: &AtomicUsize,
) -> Result<bool, ResultBatch> {
    if queued.load(Ordering::Acquire) != 0 {
        return Err(results);
    }
    let Some(shared) = shared.upgrade() else { return Ok(false) };
    let mut d = match shared.try_lock() {
        Ok(d) => d,
        Err(TryLockError::WouldBlock) => return Err(results),
        Err(TryLockError::Poisoned(_)) => return Ok(false),
    };
    // The dispatcher thread is up (not waiting) when it has no time to wake at: it is
    // about to look anyway.
    let Some(wake_at) = d.wake_by else { return Err(results) };
    d.on_message(wid, results);
    d.after_reader(wake_at);
    Ok(true)
}

/// A worker's start (`Launched`) or handshake (`Ready`), from its reader: applied on the
/// reader's thread, as a result message is ([`results_from_reader`]), when the
/// dispatcher thread is waiting (and, for a handshake, already added the worker): the
/// worker's first tasks then go out from here, without a hand-over to the dispatcher
/// thread first, which cost each worker 0.2–0.5 ms while it waited for them. Otherwise
/// the event comes back (`Err`) for the reader to send.
// The event comes back as it came, to go on the channel as any event does.
#[allow(clippy::result_large_err)]
pub(crate) fn event_from_reader(shared: &Weak<Shared>, event: Event) -> Result<(), Event> {
    // The pool is gone: the reader's send fails too, and it cleans up (a worker that
    // started is discarded).
    let Some(shared) = shared.upgrade() else { return Err(event) };
    let Ok(mut d) = shared.try_lock() else { return Err(event) };
    let Some(wake_at) = d.wake_by else { return Err(event) };
    match &event {
        Event::Launched { .. } => {}
        Event::Ready { wid, .. } if d.find(*wid).is_some() => {}
        _ => return Err(event),
    }
    d.handle(event);
    d.after_reader(wake_at);
    Ok(())
}

impl Dispatcher {
    /// What follows an event a reader applied itself while the dispatcher thread waits
    /// until `wake_at`: [`after_events`](Self::after_events), then wake that thread if it
    /// must look sooner, or if the pool may be finished.
    fn after_reader(&mut self, wake_at: Instant) {
        self.after_events();
        if Instant::now() + self.tick_interval() < wake_at || self.finished() {
            self.wake_by = None;
            let _ = self.tx.send(Event::Wake);
        }
    }

    /// What follows every batch of events: send what can be sent, take back what an
    /// idle worker should run, let idle workers go once the pool is closed.
    fn after_events(&mut self) {
        self.pump();
        if self.rebalance() {
            self.pump();
        }
        self.join_step();
    }

    /// Kill the process groups of stopped threads once their grace period is over (at
    /// once when terminating); forget those whose task let go of them.
    fn reap_orphaned_groups(&mut self, now: Instant) {
        let terminating = self.terminating;
        self.orphaned_groups.retain(|(slot, kill_at)| {
            let pgid = slot.pgid();
            if pgid <= 0 {
                return false;
            }
            if terminating || now >= *kill_at {
                // A process group a task registered.
                process::kill_group(pgid, libc::SIGKILL);
                return false;
            }
            true
        });
        self.thread_groups.retain(|(group, end_at)| {
            if terminating || now >= *end_at {
                // Killed with whatever is still in it; the leader and guard reaped.
                process::end_group_leader(*group);
                return false;
            }
            true
        });
    }

    /// Before the dispatcher ends: no task group outlives the pool.
    fn settle_orphaned_groups(&mut self) {
        while !self.orphaned_groups.is_empty() || !self.thread_groups.is_empty() {
            self.reap_orphaned_groups(Instant::now());
            if !self.orphaned_groups.is_empty() || !self.thread_groups.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn fail_startup(&mut self, e: PoolError) {
        if let Some(s) = self.startup.take() {
            let _ = s.send(Err(e));
        }
    }

    /// Start-up is over once one worker is ready: the pool can run tasks, and the other
    /// workers go on with their handshakes meanwhile (a 4-worker pool on 2 cores would
    /// otherwise keep its first task waiting some 0.7 ms for the last one). A worker
    /// that fails after that is replaced as at any other time (`pump`).
    fn check_startup(&mut self) {
        if self.startup.is_some()
            && (self.ever_ready || self.workers.iter().any(|w| w.phase == Phase::Ready))
        {
            let _ = self.startup.take().map(|s| s.send(Ok(())));
        }
    }

    fn tick_interval(&self) -> Duration {
        let busy = !self.launching.is_empty()
            || self.workers.iter().any(|w| {
                matches!(w.phase, Phase::Starting(_) | Phase::Stopping { .. })
                    || (self.cfg.task_timeout.is_some() && !w.inflight.is_empty())
            });
        if self.steal_candidate().is_some() {
            // Look again soon: a task may pass `STEAL_AFTER` while a worker waits.
            return Duration::from_millis(1);
        }
        if busy { Duration::from_millis(5) } else { Duration::from_millis(100) }
    }

    fn finished(&self) -> bool {
        (self.joining || self.terminating)
            && self.workers.is_empty()
            && self.launching.is_empty()
            && self.pending.is_empty()
    }

    /// A submitted parcel: queued, or failed at once when its run or the pool stopped.
    fn accept(&mut self, parcel: Parcel) {
        if self.terminating {
            fail_parcel(parcel, Status::Cancelled, "the pool was terminated");
        } else if self.cancelled_runs.contains(&parcel.run) {
            fail_parcel(parcel, Status::Cancelled, "the run was cancelled");
        } else if self.not_submitting.contains(&parcel.run) {
            fail_parcel(parcel, Status::Skipped, "submitting stopped");
        } else {
            self.pending.push_back(parcel);
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Launched { wid, result } => self.on_launched(wid, result),
            Event::Submit(parcels) => parcels.into_iter().for_each(|p| self.accept(p)),
            Event::SubmitOne(parcel) => self.accept(parcel),
            Event::Ready { wid, sender } => self.on_ready(wid, sender),
            Event::StartFailed { wid, error } => {
                self.last_start_error = match &error {
                    PoolError::Start(m) => m.clone(),
                    e => e.to_string(),
                };
                self.start_failures += 1;
                let index = self.remove_worker(wid).map(|(w, ..)| w.index);
                if self.startup.is_none() {
                    return; // `pump` refills missing workers
                }
                // At start-up as at any other time, a dead worker is replaced; only a
                // program that cannot start any worker at all is an error, and so is a
                // refusal (no `run_if_worker`, another registry): the program's, not chance.
                let refused = !matches!(error, PoolError::Start(_));
                if refused || (self.start_failures >= MAX_START_FAILURES && !self.ever_ready) {
                    self.fail_startup(error);
                    self.begin_terminate();
                    return;
                }
                if let Some(index) = index
                    && self.start_failures < MAX_START_FAILURES
                    && !self.terminating
                    && let Err(e) = self.spawn(index)
                {
                    self.last_start_error = e.to_string();
                    self.start_failures += 1;
                }
                self.check_startup();
            }
            Event::Results { wid, results } => {
                self.on_message(wid, results);
                if let Some(w) = self.find(wid) {
                    w.handle.applied_queued();
                }
            }
            Event::Gone { wid } => self.on_gone(wid),
            Event::Broken { wid, why } => self.protocol_error(wid, why),
            Event::Cancel { run } => self.cancel_run(run),
            Event::StopSubmitting { run } => self.stop_submitting(run),
            Event::Feeding { open: true } => self.feeds += 1,
            Event::Feeding { open: false } => self.feeds = self.feeds.saturating_sub(1),
            Event::Close => self.closed = true,
            Event::Join => {
                self.closed = true;
                self.joining = true;
            }
            Event::Terminate => self.begin_terminate(),
            Event::Wake => {}
        }
    }

    fn spawn(&mut self, index: u32) -> Result<(), PoolError> {
        self.spawn_many(&[index])
    }

    /// Start workers for these slots. Process workers start concurrently (see
    /// [`handle::launch_process`]): each joins `workers` when its reader reports it
    /// started ([`Event::Launched`]). On an error, the workers that did start are kept
    /// (the caller terminates them).
    fn spawn_many(&mut self, indices: &[u32]) -> Result<(), PoolError> {
        let mut first_err = None;
        for &index in indices {
            let wid = self.next_wid();
            if self.cfg.worker_kind == WorkerKind::Threads {
                let (handle, slot) = handle::spawn_thread(&self.cfg, &self.tx, wid, index)?;
                self.workers.push(Worker::new(wid, index, Phase::Ready, slot, handle));
                continue;
            }
            match handle::launch_process(&self.cfg, &self.tx, &self.me, wid, index) {
                Ok(launch) => self.launching.push(launch),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A reader reported its worker started (it joins the workers, starting) or not.
    fn on_launched(&mut self, wid: u64, result: Result<handle::Launched, String>) {
        let Some(at) = self.launching.iter().position(|l| l.wid == wid) else {
            // Not one of ours (cannot happen): nobody else would end it.
            if let Ok(launched) = result {
                launched.discard();
            }
            return;
        };
        let launch = self.launching.swap_remove(at);
        match result {
            Ok(launched) => {
                let index = launch.index;
                let (handle, slot) = launch.collect(launched);
                let mut w = Worker::new(wid, index, Phase::Starting(Instant::now()), slot, handle);
                if self.terminating {
                    Self::stop_worker(&mut w, Why::Terminate, self.cfg.grace_period);
                }
                self.workers.push(w);
            }
            Err(e) => {
                self.last_start_error = e.clone();
                self.start_failures += 1;
                if self.startup.is_some() && !self.ever_ready {
                    // Before any worker was ready, as when starting it failed at once:
                    // the pool cannot start.
                    self.fail_startup(PoolError::Start(e));
                    self.begin_terminate();
                }
                // Otherwise `pump` starts another in its place.
            }
        }
    }

    fn next_wid(&mut self) -> u64 {
        self.next_wid += 1;
        self.next_wid - 1
    }

    fn find(&mut self, wid: u64) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.wid == wid)
    }

    fn on_ready(&mut self, wid: u64, sender: IpcSender<ToWorker>) {
        let Some(w) = self.find(wid) else { return };
        w.handle.finish_handshake(sender);
        if matches!(w.phase, Phase::Starting(_)) {
            w.phase = Phase::Ready;
        }
        self.start_failures = 0;
        self.ever_ready = true;
        self.check_startup();
    }

    /// A result message from a worker: applied if it is the results the worker owes
    /// next, well formed; otherwise the worker broke the protocol.
    fn on_message(&mut self, wid: u64, results: ResultBatch) {
        let Some(w) = self.find(wid) else { return };
        if w.broken.is_some() {
            return;
        }
        match w.check(&results) {
            Ok(()) => self.on_results(wid, results),
            Err(why) => self.protocol_error(wid, why),
        }
    }

    /// A worker broke the protocol: kill it at once (what it sent cannot be trusted, nor
    /// can what it would send next) and settle its tasks as for a crash. Results it sent
    /// before are kept; so are those in its log that it had not sent.
    fn protocol_error(&mut self, wid: u64, why: String) {
        let Some(w) = self.find(wid) else { return };
        if w.broken.is_some() {
            return;
        }
        w.broken = Some(why);
        w.signal(libc::SIGKILL);
        w.handle.stop_thread();
        self.on_gone(wid);
    }

    fn on_results(&mut self, wid: u64, results: ResultBatch) {
        if !results.is_empty() {
            let per = results.duration_ns / results.len() as u64;
            self.task_ns =
                if self.task_ns == u64::MAX { per } else { (self.task_ns * 3 + per) / 4 };
        }
        if self.on_results_fast(wid, &results) {
            let wi = self.workers.iter().position(|w| w.wid == wid).expect("checked");
            self.deliver_fast(wi, results);
            self.maybe_retire(wi);
            return;
        }
        let retries = self.cfg.retries;
        let Some(wi) = self.workers.iter().position(|w| w.wid == wid) else { return };
        let mut requeue = Vec::new();
        let n = results.len();
        self.note_reported(wi, results.base + n as u64);
        let mut out = Deliveries::with_capacity(n);
        {
            let w = &mut self.workers[wi];
            let pid = w.handle.pid();
            let ResultBatch { base, ends, blob, codes, started_ns, duration_ns, data } = results;
            let (ends, codes) = (ends.0, codes.0);
            let blob = Arc::new(blob.0);
            let mut data = data.into_iter().peekable();
            let mut start = 0usize;
            for k in 0..n {
                let id = base + k as u64;
                let end = end_at(&ends, k);
                let text = &blob[start..end as usize];
                let text_start = start as u32;
                start = end as usize;
                let code = codes.get(k).copied().unwrap_or(CODE_OK);
                let (t_start, t_dur) = span_share(started_ns, duration_ns, n, k);
                let mut err_data = None;
                while data.peek().is_some_and(|d| d.0 <= id) {
                    let (i, d) = data.next().expect("peeked");
                    if i == id {
                        err_data = Some(d);
                    }
                }
                while w.batches.front().is_some_and(|b| b.1 <= id) {
                    w.batches.pop_front();
                }
                // The task the pool is stopping for its timeout: whatever it reported
                // (it may have ended at that very moment, or failed from the TERM), it
                // is a timeout. Settled here, in order, like any result.
                let timed_out =
                    matches!(w.phase, Phase::Stopping { why: Why::Timeout(t), .. } if t == id);
                let code = if timed_out { CODE_TIMED_OUT } else { code };
                let contains = |j: &Parcel| id >= j.seq && id < j.seq + j.len() as u64;
                let ji = if w.inflight.front().is_some_and(contains) {
                    0
                } else {
                    let Some(ji) = w.inflight.iter().position(contains) else { continue };
                    ji
                };
                let parcel = &mut w.inflight[ji];
                let ki = (id - parcel.seq) as usize;
                if ki < parcel.done {
                    continue; // already resolved
                }
                parcel.done = ki + 1;
                let mut item = parcel.item(ki);
                let worker = Some(w.index);
                let started_at = Some(ns_to_time(t_start));
                let duration = Duration::from_nanos(t_dur);
                let status = match code {
                    CODE_OK => {
                        let s = Stored::Ok {
                            blob: blob.clone(),
                            start: text_start,
                            end,
                            json: parcel.json,
                            attempts: item.attempts + 1,
                            worker: w.index,
                            started_ns: t_start,
                            duration_ns: t_dur,
                        };
                        out.push_stored(parcel, item.user_id, s);
                        None
                    }
                    CODE_SKIPPED => {
                        let o = parcel.skipped(&item);
                        out.push(parcel, o);
                        None
                    }
                    CODE_STOLEN => {
                        // Taken back before it started (`rebalance`): it runs elsewhere,
                        // with no attempt counted.
                        w.assigned = w.assigned.saturating_sub(1);
                        if self.cancelled_runs.contains(&parcel.run) {
                            let o = Outcome::failed(
                                item.user_id,
                                Status::Cancelled,
                                "the run was cancelled",
                                item.attempts,
                            );
                            out.push(parcel, o);
                        } else if self.not_submitting.contains(&parcel.run) {
                            let o = parcel.skipped(&item);
                            out.push(parcel, o);
                        } else {
                            requeue.push(parcel.with_items(vec![item]));
                        }
                        None
                    }
                    CODE_ERROR => Some(Status::Error),
                    CODE_TIMED_OUT => Some(Status::Timeout),
                    CODE_CANCELLED => Some(Status::Cancelled),
                    CODE_PANIC => Some(Status::Crashed),
                    _ => Some(Status::Crashed), // unknown code: a protocol error
                };
                // A task that fails while its run is being cancelled failed because it
                // was stopped: it is cancelled, not an error of its own.
                let stopping = self.cancelled_runs.contains(&parcel.run)
                    || matches!(w.phase, Phase::Stopping { why: Why::Cancel | Why::Terminate, .. });
                let status =
                    if status.is_some() && stopping { Some(Status::Cancelled) } else { status };
                if let Some(status) = status {
                    item.attempts += 1;
                    let taking_no_more = self.not_submitting.contains(&parcel.run)
                        || self.cancelled_runs.contains(&parcel.run);
                    let retry = item.attempts <= retries
                        && !taking_no_more
                        && status != Status::Cancelled
                        && self.cfg.retry_on.allows(status);
                    let error = if timed_out {
                        timeout_message(self.cfg.task_timeout)
                    } else {
                        String::from_utf8_lossy(text).into_owned()
                    };
                    let o = Outcome {
                        id: item.user_id,
                        task: parcel.task,
                        status,
                        value: None,
                        error: Some(error),
                        error_data: err_data.filter(|_| !timed_out),
                        attempts: item.attempts,
                        worker,
                        started_at,
                        duration,
                        worker_pid: pid,
                        worker_exit: None,
                        stopped_by_pool: timed_out,
                    };
                    if retry {
                        let mut again = parcel.with_items(vec![item]);
                        again.remember(o);
                        requeue.push(again);
                    } else {
                        out.push(parcel, o);
                    }
                }
                if parcel.done == parcel.len() {
                    w.inflight.remove(ji);
                }
            }
        }
        out.flush();
        // A retry goes first: it keeps the sinks' reorder buffer short and a failure's
        // final outcome soon known (on-failure = "stop" sees it before later work starts).
        for parcel in requeue.into_iter().rev() {
            self.pending.push_front(parcel);
        }
        self.maybe_retire(wi);
    }

    /// Whether `results` are all successes of the next items of the worker's first
    /// parcels (one, or several when its batch took the rest of one `map` chunk and the
    /// start of the next), each a `map`-like call's whose items, in these results, are
    /// consecutive and had the same number of attempts: then they are delivered as one
    /// [`Segment`] a parcel, without per-item work on this thread.
    fn on_results_fast(&self, wid: u64, results: &ResultBatch) -> bool {
        let Some(w) = self.workers.iter().find(|w| w.wid == wid) else { return false };
        let n = results.len();
        if n == 0
            || !matches!(w.phase, Phase::Ready | Phase::Retiring)
            || !results.data.is_empty()
            || !results.all_ok()
        {
            return false;
        }
        let (mut next, mut left) = (results.base, n);
        for (parts, j) in w.inflight.iter().enumerate() {
            let m = j.left().min(left);
            // One segment a parcel: for parcels of a few items (`apply`s sent together),
            // the per-item path costs less.
            if parts > 0 && n < MIN_SEGMENT * (parts + 1) {
                return false;
            }
            if m == 0 || !matches!(j.reply, Reply::Collect(_)) || next != j.seq + j.done as u64 {
                return false;
            }
            // A dense parcel's ids are consecutive, none started before.
            if j.dense.is_none() {
                let its = &j.items[j.done..j.done + m];
                let a = its[0].attempts;
                if its[m - 1].user_id - its[0].user_id != m as u64 - 1
                    || its.iter().any(|i| i.attempts != a)
                {
                    return false;
                }
            }
            next += m as u64;
            left -= m;
            if left == 0 {
                return true;
            }
        }
        false
    }

    /// Results arrived for every task before `next`: a steal from this worker is
    /// resolved once it reported every task it was sent before the steal.
    fn note_reported(&mut self, wi: usize, next: u64) {
        let w = &mut self.workers[wi];
        w.reported = w.reported.max(next);
        if w.steal_until.is_some_and(|u| w.reported >= u) {
            // Nothing sent before the steal is left on the worker, and nothing was sent
            // since: it is safe to let it start tasks again.
            w.slot.clear_steal();
            w.steal_until = None;
        }
    }

    fn deliver_fast(&mut self, wi: usize, mut results: ResultBatch) {
        self.note_reported(wi, results.base + results.len() as u64);
        let w = &mut self.workers[wi];
        let last_id = results.base + results.len() as u64 - 1;
        while w.batches.front().is_some_and(|b| b.1 <= last_id) {
            w.batches.pop_front();
        }
        let j = w.inflight.front().expect("checked");
        if results.len() <= j.left() {
            // The usual case: one parcel's.
            return deliver_to_front(w, results);
        }
        // How many results each parcel takes (checked by `on_results_fast`).
        let mut counts = Vec::new();
        let mut left = results.len();
        for j in &w.inflight {
            if left == 0 {
                break;
            }
            let m = j.left().min(left);
            counts.push(m);
            left -= m;
        }
        // Split from the end (each result is copied once), each part with its share of
        // the message's span.
        let n = results.len();
        let each = results.duration_ns / n as u64;
        let mut parts = Vec::with_capacity(counts.len());
        let mut end = n;
        for &m in counts[1..].iter().rev() {
            end -= m;
            let mut part = results.split_off_last(m);
            part.started_ns = results.started_ns + each * end as u64;
            part.duration_ns = each * m as u64;
            parts.push(part);
        }
        // Several parcels here (the one-parcel case returned above): the first keeps the
        // head of the span.
        results.duration_ns = each * end as u64;
        parts.push(results);
        for part in parts.into_iter().rev() {
            deliver_to_front(w, part);
        }
    }

    /// Recycle a worker that reached `max_tasks_per_worker` once its tasks are done.
    fn maybe_retire(&mut self, wi: usize) {
        let Some(max) = self.cfg.max_tasks_per_worker else { return };
        let w = &mut self.workers[wi];
        if w.phase == Phase::Ready && w.assigned >= max && w.inflight.is_empty() {
            w.phase = Phase::Retiring;
            w.send_shutdown();
            let index = w.index;
            // Replaced at once unless the pool is closed with nothing queued (`pump`
            // starts workers for a queue that has none: CPython's bug 10332).
            if (!self.closed || !self.pending.is_empty())
                && !self.terminating
                && let Err(e) = self.spawn(index)
            {
                self.last_start_error = e.to_string();
                self.start_failures += 1;
            }
        }
    }

    /// Take a gone worker out of the table, take down every process it started and
    /// reap it ([`Handle::take_down`]); returns it with a description of how it ended.
    #[allow(clippy::type_complexity)]
    fn remove_worker(&mut self, wid: u64) -> Option<(Worker, String, Option<WorkerExit>)> {
        let i = self.workers.iter().position(|w| w.wid == wid)?;
        let (how, exit) = self.take_down(i);
        Some((self.workers.swap_remove(i), how, exit))
    }

    /// Take down worker `i` (still in the table) and every process it started
    /// ([`Handle::take_down`]; once only); returns how it ended.
    fn take_down(&mut self, i: usize) -> (String, Option<WorkerExit>) {
        let w = &mut self.workers[i];
        // The thread was asked to stop and is stopping its command (TERM, grace, KILL);
        // the group it registered is killed if it is still there after that.
        let at = Instant::now() + self.cfg.grace_period + Duration::from_millis(200);
        if w.handle.is_thread() && w.slot.pgid() > 0 {
            self.orphaned_groups.push((w.slot.clone(), at));
        }
        if let Some(group) = w.handle.thread_group() {
            self.thread_groups.push((group, at));
        }
        w.handle.take_down(&w.slot)
    }

    fn kill_worker(&mut self, wid: u64) {
        if let Some(w) = self.find(wid) {
            w.signal(libc::SIGKILL);
        }
    }

    /// A worker is gone (its channel closed, or its thread was abandoned): settle its
    /// in-flight tasks, then replace it.
    ///
    /// What happened to each task is known exactly, not guessed: a worker runs its tasks
    /// in id order, records the last one it started in its slot (`W_LAST`) before
    /// starting it, and commits each result to the slot's log before the next one
    /// starts (see [`Slot`]). So, once the results it sent and those in its log are
    /// delivered, a task still in flight either started (its id is at most the last
    /// started: it counts an attempt, and runs again only if `retries` and `retry-on`
    /// allow) or never started (it goes back to the queue as it was).
    fn on_gone(&mut self, wid: u64) {
        let Some(i) = self.workers.iter().position(|w| w.wid == wid) else { return };
        // Taken down first: once it has exited, its log is final (a worker that broke
        // the protocol may still be running when this starts).
        let (status_text, exit) = self.take_down(i);
        // Results the worker finished but had not sent yet. Every message it sent came
        // before this event (one reader thread per worker, in order), so results that
        // arrived are already resolved; the log may repeat some of them (a worker that
        // died between a send and the log's reset): only the rest is applied.
        if let Some(batch) = self.workers[i].slot.log_read()
            && let Some(batch) = self.workers[i].unsent(batch)
        {
            self.on_results(wid, batch);
        }
        let Some(i) = self.workers.iter().position(|w| w.wid == wid) else { return };
        let mut w = self.workers.swap_remove(i);
        let status_text = match &w.broken {
            Some(why) => format!("the worker broke the protocol ({why}) and was killed"),
            None if w.stalled => format!(
                "the worker stopped responding (nothing ran for {} while it had tasks) and \
                 was killed",
                humantime::format_duration(STALL_LIMIT)
            ),
            None => format!("worker crashed: {status_text}"),
        };
        let pid = w.handle.pid();
        let running = w.slot.running().map(|r| r.0);
        // The task it started last: it ran even if it ended (stopped) before the worker.
        let last = w.slot.last_started();
        let started = |seq: u64| last.is_some_and(|l| seq <= l.0);
        let why = match w.phase {
            Phase::Stopping { why, .. } => Some(why),
            _ => None,
        };
        let retries = self.cfg.retries;
        let retry_on = self.cfg.retry_on;
        let mut back = Vec::new();
        let mut out = Deliveries::default();
        for mut parcel in w.inflight.drain(..) {
            parcel.items_mut(); // one by one from here
            let cancelled = self.cancelled_runs.contains(&parcel.run) || self.terminating;
            let not_submitting = self.not_submitting.contains(&parcel.run);
            let mut again = Vec::new();
            let mut again_failed = Vec::new();
            for (k, item) in parcel.items.iter().enumerate().skip(parcel.done) {
                let mut item = *item;
                let seq = parcel.seq + k as u64;
                let is_running = Some(seq) == running;
                if cancelled || why == Some(Why::Terminate) {
                    let at = last.filter(|l| l.0 == seq).map(|l| l.1);
                    let ran = is_running || started(seq);
                    let attempts = item.attempts + u32::from(ran);
                    let mut o =
                        Outcome::failed(item.user_id, Status::Cancelled, "cancelled", attempts);
                    o.stopped_by_pool = ran;
                    if let Some(s) = at {
                        o.worker = Some(w.index);
                        o.started_at = Some(ns_to_time(s));
                        o.duration = Duration::from_nanos(now_ns().saturating_sub(s));
                    }
                    out.push(&parcel, o);
                    continue;
                }
                if !started(seq) && !is_running {
                    if not_submitting {
                        out.push(&parcel, parcel.skipped(&item));
                    } else {
                        again.push(item);
                    }
                    continue;
                }
                item.attempts += 1;
                let (status, msg) = match why {
                    Some(Why::Timeout(t)) if t == seq => {
                        (Status::Timeout, timeout_message(self.cfg.task_timeout))
                    }
                    // Started after the task that timed out, as the worker was stopped.
                    Some(Why::Timeout(t)) => (
                        Status::Crashed,
                        format!("stopped with its worker after task {t} timed out"),
                    ),
                    Some(Why::Cancel) => (
                        Status::Crashed,
                        "stopped with its worker when another run was cancelled".to_string(),
                    ),
                    _ => (Status::Crashed, status_text.clone()),
                };
                // Every case above but a crash is the pool stopping the worker.
                let by_pool = matches!(why, Some(Why::Timeout(_) | Why::Cancel));
                let mut o = Outcome::failed(item.user_id, status, msg, item.attempts);
                o.worker = Some(w.index);
                o.worker_pid = pid;
                o.worker_exit = exit.filter(|_| status == Status::Crashed);
                o.stopped_by_pool = by_pool;
                if let Some(s) = last.filter(|l| l.0 == seq).map(|l| l.1) {
                    o.started_at = Some(ns_to_time(s));
                    o.duration = Duration::from_nanos(now_ns().saturating_sub(s));
                }
                if item.attempts <= retries && !not_submitting && retry_on.allows(status) {
                    again.push(item);
                    again_failed.push(o);
                    continue;
                }
                out.push(&parcel, o);
            }
            if !again.is_empty() {
                let mut retry = parcel.with_items(again);
                for o in again_failed {
                    retry.remember(o);
                }
                back.push(retry);
            }
        }
        out.flush();
        for parcel in back.into_iter().rev() {
            self.pending.push_front(parcel);
        }
        let replace = !self.terminating
            && (!self.closed || !self.pending.is_empty())
            && w.phase != Phase::Retiring
            && !self.workers.iter().any(|x| x.index == w.index);
        if replace && let Err(e) = self.spawn(w.index) {
            self.last_start_error = e.to_string();
            self.start_failures += 1;
        }
    }

    fn stop_worker(w: &mut Worker, why: Why, grace: Duration) {
        if let Phase::Stopping { killed, .. } = w.phase {
            // Terminate does not wait for a grace period already running.
            if why == Why::Terminate && !killed {
                w.signal(libc::SIGKILL);
                w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
            }
            return;
        }
        let starting = matches!(w.phase, Phase::Starting(_));
        if w.handle.is_thread() {
            w.handle.stop_thread();
            w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
        } else if starting {
            w.handle.abort_start();
            w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
        } else {
            let sig = if why == Why::Terminate { libc::SIGKILL } else { libc::SIGTERM };
            w.signal(sig);
            w.phase = Phase::Stopping {
                why,
                kill_at: Instant::now() + grace,
                killed: sig == libc::SIGKILL,
            };
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.reap_orphaned_groups(now);
        let grace = self.cfg.grace_period;
        let mut abandoned = Vec::new();
        for w in &mut self.workers {
            match w.phase {
                Phase::Starting(since) => {
                    if w.handle.died_starting() || now.duration_since(since) > HANDSHAKE_TIMEOUT {
                        w.handle.abort_start();
                        w.phase =
                            Phase::Stopping { why: Why::Terminate, kill_at: now, killed: true };
                    }
                }
                Phase::Ready | Phase::Retiring => {
                    if let (Some(limit), Some((seq, started))) =
                        (self.cfg.task_timeout, w.slot.running())
                        && now_ns().saturating_sub(started) > limit.as_nanos() as u64
                        && w.inflight.iter().any(|j| seq >= j.seq && seq < j.seq + j.len() as u64)
                    {
                        Self::stop_worker(w, Why::Timeout(seq), grace);
                    }
                    // Stuck between tasks: nothing runs, though it has tasks (or was told
                    // to exit). A running task is the task timeout's business.
                    let waiting = !w.inflight.is_empty() || w.phase == Phase::Retiring;
                    let p = (w.slot.last_started().map(|l| l.0), w.reported);
                    if w.handle.is_thread()
                        || !waiting
                        || w.slot.running().is_some()
                        || p != w.progress
                    {
                        w.progress = p;
                        w.progress_at = now;
                    } else if now.duration_since(w.progress_at) > STALL_LIMIT
                        && matches!(w.phase, Phase::Ready | Phase::Retiring)
                    {
                        w.stalled = true;
                        w.signal(libc::SIGKILL);
                        w.phase = Phase::Stopping { why: Why::Lost, kill_at: now, killed: true };
                    }
                }
                Phase::Stopping { why, kill_at, killed } => {
                    if !killed && now >= kill_at {
                        w.signal(libc::SIGKILL);
                        w.phase = Phase::Stopping { why, kill_at, killed: true };
                    }
                }
            }
            if w.handle.is_thread() && matches!(w.phase, Phase::Stopping { .. }) {
                abandoned.push(w.wid);
            }
        }
        // A thread cannot be killed: its worker is forgotten (it ends on its own) and replaced.
        for wid in abandoned {
            self.on_gone(wid);
        }
        if self.start_failures >= MAX_START_FAILURES
            && !self.workers.iter().any(|w| w.phase == Phase::Ready)
        {
            let msg = format!("cannot start a worker: {}", self.last_start_error);
            for parcel in self.pending.drain(..) {
                fail_parcel(parcel, Status::Crashed, &msg);
            }
        }
    }

    /// Send batches to workers with room in their window.
    fn pump(&mut self) {
        if self.pending.is_empty() || self.terminating {
            return;
        }
        // Refill missing workers: after failed respawns, and for a queue whose workers
        // retired (recycled or idle after `close`) without a replacement.
        let live = self.workers.iter().filter(|w| w.phase != Phase::Retiring).count()
            + self.launching.len();
        if self.start_failures < MAX_START_FAILURES && live < self.cfg.workers {
            let have: HashSet<u32> = self
                .workers
                .iter()
                .filter(|w| w.phase != Phase::Retiring)
                .map(|w| w.index)
                .chain(self.launching.iter().map(|l| l.index))
                .collect();
            for i in 0..self.cfg.workers as u32 {
                if !have.contains(&i) && self.spawn(i).is_err() {
                    self.start_failures += 1;
                }
            }
        }
        let max_tasks = self.cfg.max_tasks_per_worker.unwrap_or(usize::MAX);
        // Workers that cannot take the front task now (too big while they are busy).
        let mut excluded: Vec<usize> = Vec::new();
        loop {
            if self.pending.is_empty() {
                return;
            }
            // The workers still starting count: they take tasks within a millisecond,
            // and a batch sized for the first ready worker alone would hold back tasks
            // they could start.
            let starting = self.launching.len()
                + self.workers.iter().filter(|w| matches!(w.phase, Phase::Starting(_))).count();
            let ready =
                (self.workers.iter().filter(|w| w.phase == Phase::Ready).count() + starting).max(1);
            // Nor are slow tasks (or tasks not yet timed) sent ahead to a busy worker
            // while another is starting: the next task goes to whichever is free first,
            // the newcomer included, rather than waiting behind a running one until
            // work stealing takes back a later one.
            let window = if starting > 0 && self.task_ns >= FAST_TASK_NS { 1 } else { WINDOW };
            let pick = self
                .workers
                .iter_mut()
                .enumerate()
                .filter(|(i, w)| {
                    w.phase == Phase::Ready
                        && w.steal_until.is_none()
                        && w.batches.len() < window
                        && w.assigned < max_tasks
                        && !excluded.contains(i)
                })
                .min_by_key(|(_, w)| w.inflight.len())
                .map(|(i, _)| i);
            let Some(wi) = pick else { return };
            let front = self.pending.front().expect("not empty");
            let chunk = match (self.cfg.chunk_size, front.chunk) {
                (Some(c), _) => c,
                (None, 0) => {
                    auto_chunk(self.task_ns, self.queued_tasks(), self.pending.len(), ready)
                }
                (None, c) => c,
            };
            let w = &mut self.workers[wi];
            let limit = chunk.min(max_tasks - w.assigned).max(1);
            // A message bigger than ~200 KB makes `send` wait until the worker reads it,
            // which a busy worker does only after its current batch: big batches go to
            // idle workers only, so the dispatcher never waits on a running task.
            let byte_cap = if w.batches.is_empty() { usize::MAX } else { BUSY_BATCH_BYTES };
            let mut taken = 0usize;
            let func = front.func.clone();
            let json = front.json;
            let mut batch =
                Batch { func: func.to_string(), json, base: self.next_seq, ..Batch::default() };
            while taken < limit {
                let Some(j) = self.pending.front_mut() else { break };
                if j.json != json || j.func != func {
                    break;
                }
                let most = j.len().min(limit - taken);
                let bytes = batch.blob.0.len();
                let fit = if byte_cap == usize::MAX {
                    // No byte limit (an idle worker): no need to look at every item.
                    most
                } else if let Some(ends) = &j.dense {
                    // The ends say the sizes (4 bytes an item to read, not 32).
                    (0..most)
                        .find(|&k| bytes.saturating_add(end_at(ends, k) as usize) > byte_cap)
                        .unwrap_or(most)
                } else {
                    let mut bytes = bytes;
                    let mut fit = 0;
                    while fit < most {
                        let size = j.items[fit].end - j.items[fit].start;
                        if bytes.saturating_add(size) > byte_cap {
                            break;
                        }
                        bytes += size;
                        fit += 1;
                    }
                    fit
                };
                if fit == 0 {
                    break;
                }
                let mut parcel = if j.len() > fit {
                    let rest = j.items_mut().split_off(fit);
                    let head = std::mem::replace(&mut j.items, rest);
                    let mut head = j.with_items(head);
                    // The head is a prefix: its ends are still the first ones; the rest's are not.
                    head.dense = j.dense.take();
                    head
                } else {
                    self.pending.pop_front().expect("checked")
                };
                parcel.seq = self.next_seq;
                parcel.done = 0;
                let len = parcel.len();
                self.next_seq += len as u64;
                taken += len;
                let (first, last) = (parcel.item(0), parcel.item(len - 1));
                // The usual case (a map chunk): the items' arguments follow each other in
                // the buffer: one copy for the whole run, the ends written as they are
                // checked (one pass).
                let off = batch.blob.0.len();
                let ends0 = batch.ends.0.len();
                batch.ends.0.reserve(4 * len);
                let dense = parcel.dense.as_ref().and_then(|e| e.get(..4 * len));
                let mut at = first.start;
                let contiguous = if let Some(ends) = dense {
                    // A map chunk: its ends as they are, or shifted by what is before.
                    if off == 0 {
                        batch.ends.0.extend_from_slice(ends);
                    } else {
                        for e in ends.chunks_exact(4) {
                            let end = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) + off as u32;
                            batch.ends.0.extend_from_slice(&end.to_le_bytes());
                        }
                    }
                    true
                } else {
                    parcel.items.iter().all(|item| {
                        if item.start != at {
                            return false;
                        }
                        at = item.end;
                        let end = (off + item.end - first.start) as u32;
                        batch.ends.0.extend_from_slice(&end.to_le_bytes());
                        true
                    })
                };
                if contiguous {
                    batch.blob.0.extend_from_slice(&parcel.buf[first.start..last.end]);
                } else {
                    batch.ends.0.truncate(ends0);
                    for item in &parcel.items {
                        batch.blob.0.extend_from_slice(parcel.arg(item));
                        batch.push_end();
                    }
                }
                w.inflight.push_back(parcel);
            }
            let n = batch.len();
            if n == 0 {
                excluded.push(wi);
                continue;
            }
            let (first, last) = (batch.base, self.next_seq - 1);
            let ok = w.handle.send_batch(batch);
            w.assigned += n;
            w.batches.push_back((first, last));
            if !ok {
                // The worker is dying. Its tasks stay in flight: some may have started
                // (their results may still be on the way), and its Gone event settles
                // each one. Stop using it, and make sure it goes.
                w.signal(libc::SIGKILL);
                w.phase = Phase::Stopping { why: Why::Lost, kill_at: Instant::now(), killed: true };
            }
        }
    }

    /// About how many tasks are queued, for the automatic batch size: exact while few
    /// parcels wait (a stream's parcels hold up to 256 tasks each), at least the number
    /// of parcels otherwise (one-by-one calls: a task each), without a walk of a long
    /// queue on every turn.
    fn queued_tasks(&self) -> usize {
        let first: usize = self.pending.iter().take(64).map(|p| p.len()).sum();
        first.max(self.pending.len())
    }

    /// Whether a worker is idle with nothing queued for it while another has tasks
    /// sent and not finished: the index of an idle worker.
    fn steal_candidate(&self) -> Option<usize> {
        if !self.pending.is_empty() || self.terminating {
            return None;
        }
        let max_tasks = self.cfg.max_tasks_per_worker.unwrap_or(usize::MAX);
        let idle = self.workers.iter().position(|w| {
            w.phase == Phase::Ready
                && w.inflight.is_empty()
                && w.steal_until.is_none()
                && w.assigned < max_tasks
        })?;
        self.any_loaded().then_some(idle)
    }

    /// Whether some worker holds a task besides the one it may be running: one an idle
    /// worker could take (no sum over parcels: this is asked on every turn of the loop).
    fn any_loaded(&self) -> bool {
        self.workers.iter().any(|w| {
            w.phase == Phase::Ready
                && (w.inflight.len() > 1 || w.inflight.front().is_some_and(|p| p.left() > 1))
        })
    }

    /// Work stealing: when a worker is idle and nothing is queued, take back from the
    /// busy worker with the most tasks sent but not started (whose running task has run
    /// for at least [`STEAL_AFTER`]) the later half of those tasks, and queue them
    /// again for the idle worker. So no task waits behind a long one while a worker is
    /// idle, and the prefetch that makes trivial tasks fast stays.
    ///
    /// Why no task runs twice, or is lost: the tasks are taken back with
    /// [`Slot::steal_from`]: those at or past both the cut and the worker's claim will
    /// not start on it (the claim / steal handshake), so they are queued again at once,
    /// with no attempt counted; those between the cut and the claim stay in flight and
    /// the worker's result for each says whether it ran (a result) or not
    /// ([`CODE_STOLEN`]: queued again then). The worker is sent nothing new until it has
    /// reported every task it had (`steal_until`); then the steal is cleared. Should the
    /// worker die meanwhile, its remaining tasks are settled by `on_gone` as always: a
    /// backed-off task never set `W_LAST`, so it counts as not started.
    ///
    /// Returns whether tasks were queued again.
    fn rebalance(&mut self) -> bool {
        if self.steal_candidate().is_none() {
            return false;
        }
        let now = now_ns();
        let after = STEAL_AFTER.as_nanos() as u64;
        // (worker, the ids of its tasks that have not started, as far as is known)
        let mut best: Option<(usize, Vec<u64>)> = None;
        for (i, w) in self.workers.iter().enumerate() {
            if w.phase != Phase::Ready || w.inflight.is_empty() {
                continue;
            }
            let Some((running, started)) = w.slot.running() else { continue };
            if now.saturating_sub(started) < after {
                continue;
            }
            let first = (running + 1).max(w.slot.claimed());
            let mut ids = Vec::new();
            for p in &w.inflight {
                for k in p.done..p.len() {
                    let seq = p.seq + k as u64;
                    if seq >= first {
                        ids.push(seq);
                    }
                }
            }
            if !ids.is_empty() && best.as_ref().is_none_or(|b| ids.len() > b.1.len()) {
                best = Some((i, ids));
            }
        }
        let Some((vi, ids)) = best else { return false };
        // The later half, rounded up: the victim keeps the earlier ones it will reach first.
        let from = ids[ids.len() / 2];
        let w = &mut self.workers[vi];
        let claim = w.slot.steal_from(from);
        let cut = from.max(claim);
        let sent_until = w.batches.back().map_or(w.reported, |b| b.1 + 1);
        w.steal_until = Some(w.steal_until.map_or(sent_until, |u| u.max(sent_until)));
        let mut back = Vec::new();
        let mut kept = VecDeque::with_capacity(w.inflight.len());
        for mut p in w.inflight.drain(..) {
            if p.seq >= cut {
                let rest = p.unfinished().to_vec();
                back.push(p.with_items(rest));
            } else if p.seq + (p.len() as u64) > cut {
                // `p` keeps a prefix (its ends stay right); the tail is a copy without.
                let at = (cut - p.seq) as usize;
                let tail = p.items_mut().split_off(at);
                back.push(p.with_items(tail));
                kept.push_back(p);
            } else {
                kept.push_back(p);
            }
        }
        w.inflight = kept;
        let moved: usize = back.iter().map(|p| p.len()).sum();
        w.assigned = w.assigned.saturating_sub(moved);
        let mut queued = false;
        for parcel in back.into_iter().rev() {
            if self.cancelled_runs.contains(&parcel.run) {
                fail_parcel(parcel, Status::Cancelled, "the run was cancelled");
            } else if self.not_submitting.contains(&parcel.run) {
                fail_parcel(parcel, Status::Skipped, "submitting stopped");
            } else {
                self.pending.push_front(parcel);
                queued = true;
            }
        }
        queued
    }

    /// Cancel a run: stop its running tasks now (TERM, grace period, KILL of their
    /// workers); its queued and running tasks end `cancelled`.
    fn cancel_run(&mut self, run: u64) {
        self.cancelled_runs.insert(run);
        let (mine, rest): (VecDeque<Parcel>, VecDeque<Parcel>) =
            self.pending.drain(..).partition(|j| j.run == run);
        self.pending = rest;
        for parcel in mine {
            fail_parcel(parcel, Status::Cancelled, "the run was cancelled");
        }
        let grace = self.cfg.grace_period;
        for w in &mut self.workers {
            if w.inflight.iter().any(|j| j.run == run) {
                Self::stop_worker(w, Why::Cancel, grace);
            }
        }
    }

    /// Stop submitting a run's tasks: take no more (queued and sent-but-not-started
    /// tasks end `skipped`); its running tasks finish. Unlike a cancel, nothing is
    /// stopped.
    fn stop_submitting(&mut self, run: u64) {
        self.not_submitting.insert(run);
        let (mine, rest): (VecDeque<Parcel>, VecDeque<Parcel>) =
            self.pending.drain(..).partition(|j| j.run == run);
        self.pending = rest;
        for parcel in mine {
            fail_parcel(parcel, Status::Skipped, "submitting stopped");
        }
        // Tasks already sent but not started are skipped by their worker.
        for w in &self.workers {
            if w.inflight.iter().any(|j| j.run == run) {
                w.slot.skip_below(self.next_seq);
            }
        }
    }

    fn begin_terminate(&mut self) {
        if self.terminating {
            return;
        }
        self.terminating = true;
        for parcel in self.pending.drain(..) {
            fail_parcel(parcel, Status::Cancelled, "the pool was terminated");
        }
        self.terminate_all();
    }

    fn terminate_all(&mut self) {
        let grace = self.cfg.grace_period;
        for w in &mut self.workers {
            if w.inflight.is_empty() && w.phase == Phase::Ready {
                w.phase = Phase::Retiring;
                w.send_shutdown();
            } else {
                Self::stop_worker(w, Why::Terminate, grace);
            }
        }
    }
}

impl Dispatcher {
    /// Called each loop: once closed and the queue is empty, shut idle workers down
    /// (as Python's workers exit after `close`, without waiting for `join`), so that
    /// their exit overlaps the last tasks. Not while a run stream is still feeding (more
    /// is coming), nor while some worker holds a task besides the one it runs (an idle
    /// worker may have to take it: see `steal`).
    fn join_step(&mut self) {
        if self.closed && self.pending.is_empty() && self.feeds == 0 && !self.any_loaded() {
            for w in &mut self.workers {
                if w.phase == Phase::Ready && w.inflight.is_empty() {
                    w.phase = Phase::Retiring;
                    w.send_shutdown();
                }
            }
        }
    }
}

/// Deliver `part`, successes of the next items of worker `w`'s first parcel (checked by
/// `Dispatcher::on_results_fast`), as one segment.
fn deliver_to_front(w: &mut Worker, part: ResultBatch) {
    let j = w.inflight.front_mut().expect("checked");
    debug_assert_eq!(part.base, j.seq + j.done as u64, "results of another parcel");
    let k = part.len();
    let (c, seg) = delivery::segment(j, part, w.index);
    j.done += k;
    if j.done == j.len() {
        w.inflight.pop_front();
    }
    c.deliver_segment(seg);
}

/// The tasks in a batch for one of `ready` workers, when neither the caller nor the
/// submission set a chunk size: fast tasks (as measured, `task_ns` on average) go in
/// batches by the tasks queued; medium ones too, up to about [`MEDIUM_BATCH_NS`] of work
/// a batch; slower ones, and tasks not timed yet, by the parcels queued (small batches:
/// the next task is never far). Between 1 and 256.
fn auto_chunk(task_ns: u64, queued_tasks: usize, parcels: usize, ready: usize) -> usize {
    let by_queue = queued_tasks / (2 * ready);
    let by_parcels = parcels / (2 * ready);
    let n = if task_ns < FAST_TASK_NS {
        by_queue
    } else if task_ns < MEDIUM_TASK_NS {
        by_queue.min((MEDIUM_BATCH_NS / task_ns) as usize).max(by_parcels)
    } else {
        by_parcels
    };
    n.clamp(1, 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::protocol::{Blob, CODE_ERROR};

    #[test]
    fn batches_follow_the_measured_task_time() {
        // Not timed yet: one task a parcel, one parcel a batch when few are queued.
        assert_eq!(auto_chunk(u64::MAX, 2000, 1, 2), 1);
        assert_eq!(auto_chunk(u64::MAX, 2000, 40, 2), 10);
        // Fast (10 µs): by the tasks queued, at most 256.
        assert_eq!(auto_chunk(10_000, 2000, 1, 2), 256);
        assert_eq!(auto_chunk(10_000, 40, 1, 2), 10);
        // Medium (0.5 ms): about 5 ms of work, fewer when few are queued.
        assert_eq!(auto_chunk(500_000, 2000, 1, 2), 10);
        assert_eq!(auto_chunk(500_000, 12, 1, 2), 3);
        assert_eq!(auto_chunk(500_000, 2, 1, 2), 1);
        // ...and never fewer than the parcels queued would give (one-by-one calls).
        assert_eq!(auto_chunk(500_000, 2000, 2000, 2), 256);
        // Slow (20 ms): by the parcels queued.
        assert_eq!(auto_chunk(20_000_000, 2000, 1, 2), 1);
        assert_eq!(auto_chunk(20_000_000, 2000, 12, 3), 2);
    }

    fn two() -> ResultBatch {
        let mut r = ResultBatch::with_capacity(10, 2);
        r.push(10, CODE_OK, b"ab", None);
        r.push(11, CODE_ERROR, b"c", Some("{}".into()));
        r
    }

    /// A map chunk of three arguments of 1, 2 and 0 bytes, ids from 10.
    fn chunk_of_three() -> Parcel {
        let (tx, _rx) = mpsc::channel();
        let ends: Vec<u8> = [1u32, 3, 3].iter().flat_map(|e| e.to_le_bytes()).collect();
        let buf = Arc::new(vec![7, 8, 9]);
        Parcel::map_chunk("f".into(), 3, Reply::Stream(tx), buf, 10, Arc::new(ends))
    }

    #[test]
    fn a_map_chunk_tells_its_items_without_building_them_and_builds_them_alike() {
        let mut p = chunk_of_three();
        assert_eq!(p.len(), 3);
        assert!(p.items.is_empty(), "not built");
        let told: Vec<(u64, usize, usize, u32)> =
            (0..3).map(|k| p.item(k)).map(|i| (i.user_id, i.start, i.end, i.attempts)).collect();
        assert_eq!(told, [(10, 0, 1, 0), (11, 1, 3, 0), (12, 3, 3, 0)]);
        assert_eq!(p.arg(&p.item(1)), &[8, 9]);
        p.done = 1;
        assert_eq!((p.left(), p.first_unfinished().user_id), (2, 11));
        let built: Vec<(u64, usize, usize, u32)> =
            p.unfinished().iter().map(|i| (i.user_id, i.start, i.end, i.attempts)).collect();
        assert_eq!(built, told[1..]);
        // Built once: from here on the list is the truth (a retry may count attempts).
        assert_eq!(p.len(), 3);
        p.items_mut()[2].attempts = 1;
        assert_eq!(p.item(2).attempts, 1);
    }

    #[test]
    fn a_finished_map_chunk_gives_back_its_items_empty() {
        let mut p = chunk_of_three();
        p.items_mut(); // built (a split, a steal, a retry or a crash would)
        drop(p);
        // Other tests may take it first: whatever comes back is empty, with room.
        for _ in 0..SPARE_MAX + 1 {
            let v = spare_items(3);
            assert!(v.is_empty() && v.capacity() >= 3);
        }
    }

    #[test]
    fn a_well_formed_message_passes_and_every_malformation_is_named() {
        assert_eq!(malformed(&two()), Ok(()));
        type Break = Box<dyn Fn(&mut ResultBatch)>;
        let cases: Vec<(Break, &str)> = vec![
            (Box::new(|r| r.ends.0.push(0)), "a table of ends of 9 bytes"),
            (Box::new(|r| *r = ResultBatch::default()), "an empty result message"),
            (Box::new(|r| r.base = u64::MAX - 1), "task ids past the largest"),
            (
                Box::new(|r| r.ends.0[4..].copy_from_slice(&1u32.to_le_bytes())),
                "result 1's payload ends at byte 1",
            ),
            (
                Box::new(|r| r.ends.0[4..].copy_from_slice(&9u32.to_le_bytes())),
                "outside the message's 3 bytes",
            ),
            (Box::new(|r| r.codes = Blob(vec![CODE_OK])), "1 result codes for 2 results"),
            (Box::new(|r| r.codes = Blob(vec![CODE_OK, 77])), "unknown result code 77"),
            (Box::new(|r| r.data = vec![(12, "{}".into())]), "error data for task 12"),
            (
                Box::new(|r| r.data = vec![(11, "{}".into()), (11, "{}".into())]),
                "error data for task 11",
            ),
        ];
        for (break_it, says) in cases {
            let mut r = two();
            break_it(&mut r);
            let e = malformed(&r).unwrap_err();
            assert!(e.contains(says), "{e} / {says}");
        }
    }
}
