//! The dispatcher: one thread, the single source of truth of a pool.
//!
//! Owns: the queue of waiting tasks, each worker's in-flight tasks (in the order the
//! worker runs them), batching, the credit window, task timeouts (TERM, grace, KILL),
//! crash attribution through the shared slot, retries, respawning, close / join /
//! terminate. Workers and callers only talk to it through [`Event`]s.
//! Must not: block on anything but its event channel (sends to workers are bounded by
//! the credit window, so they never block for long).

use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcSender};

use super::protocol::{
    Batch, CODE_CANCELLED, CODE_ERROR, CODE_OK, CODE_PANIC, CODE_SKIPPED, CODE_TIMED_OUT,
    FromWorker, Init, PROTOCOL_VERSION, ResultBatch, Slot, ToWorker, WORKER_ARG, end_at, now_ns,
    ns_to_time, span_share,
};
use super::registry::TaskContext;
use super::result::{Collector, Outcome, Segment, SegmentData, Stored, WorkerExit};
use super::{Backend, Config, PoolError};
use crate::record::Status;

/// Batches a worker may have outstanding at once (well under the ~278 messages a
/// socket buffers, so a send never blocks).
const WINDOW: usize = 4;
/// Largest batch (argument bytes) sent to a worker that is still busy.
const BUSY_BATCH_BYTES: usize = 32 * 1024;
/// Largest automatic batch.
pub(crate) const MAX_AUTO_CHUNK: usize = 1024;
/// Give up on a worker that has not finished its handshake in this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failed worker starts, with no worker up in between, after which the
/// program is taken for one that cannot be a worker: an error at start-up, and later
/// the waiting tasks fail instead of respawning forever.
const MAX_START_FAILURES: u32 = 3;

/// Where a task's outcome goes.
pub(crate) enum Reply {
    /// A collector (`apply`, `map`, `imap`); the item's `user_id` is its index there.
    Collect(Arc<Collector>),
    /// A channel (`imap_unordered`, streaming runs); the outcome's id is the item's `user_id`.
    Stream(Sender<Outcome>),
}

impl Clone for Reply {
    fn clone(&self) -> Self {
        match self {
            Reply::Collect(c) => Reply::Collect(c.clone()),
            Reply::Stream(t) => Reply::Stream(t.clone()),
        }
    }
}

/// One task of a [`Job`]: its id for the caller, its argument's range in the job's
/// buffer, and how often it was started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    pub user_id: u64,
    pub start: usize,
    pub end: usize,
    pub attempts: u32,
}

/// Tasks of one call that travel together: same function, same reply, arguments in one
/// shared buffer (encoded once, never copied per task). A job is split when only part
/// of it fits a batch, or when some of its tasks must run again.
pub(crate) struct Job {
    pub func: Arc<str>,
    /// `func`, interned: what the outcomes carry.
    pub task: &'static str,
    pub json: bool,
    /// Batch size for this call; 0 = decide from the queue.
    pub chunk: usize,
    pub run: u64,
    pub reply: Reply,
    pub buf: Arc<Vec<u8>>,
    pub items: Vec<Item>,
    /// Sequence number of `items[0]` once sent (item k has `seq + k`).
    seq: u64,
    /// Items whose result arrived (a prefix: results come in order).
    done: usize,
}

impl Job {
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
        Job { func, task, json, chunk, run, reply, buf, items, seq: 0, done: 0 }
    }

    /// A job of one item with its own buffer.
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
        Job::new(func, json, 0, run, reply, Arc::new(payload), vec![item])
    }

    /// The same call with other items.
    fn with_items(&self, items: Vec<Item>) -> Job {
        Job {
            func: self.func.clone(),
            task: self.task,
            json: self.json,
            chunk: self.chunk,
            run: self.run,
            reply: self.reply.clone(),
            buf: self.buf.clone(),
            items,
            seq: 0,
            done: 0,
        }
    }

    fn arg(&self, item: &Item) -> &[u8] {
        &self.buf[item.start..item.end]
    }
}

pub(crate) enum Event {
    Submit(Vec<Job>),
    Ready { wid: u64, sender: IpcSender<ToWorker> },
    StartFailed { wid: u64, error: PoolError },
    Results { wid: u64, results: ResultBatch },
    Gone { wid: u64 },
    Cancel { run: u64 },
    StopSubmitting { run: u64 },
    Close,
    Join,
    Terminate,
}

enum ThreadMsg {
    Batch(Batch),
    Shutdown,
}

enum Handle {
    Process {
        child: Child,
        /// A pidfd of the child (opened before anyone could reap it), to learn that it
        /// exited without `wait4`, whose global lock is slow to get while processes
        /// exit; `None` on kernels without pidfds.
        pidfd: Option<OwnedFd>,
        /// The process group the worker's commands join: its leader is a zombie child
        /// of this process (see [`command_group_leader`]), reaped after the worker.
        group: i32,
        server: String,
        tx: Option<IpcSender<ToWorker>>,
    },
    Thread {
        tx: Sender<ThreadMsg>,
        stop: Arc<AtomicBool>,
    },
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

struct Worker {
    wid: u64,
    index: u32,
    phase: Phase,
    inflight: VecDeque<Job>,
    batch_ends: VecDeque<u64>,
    assigned: usize,
    slot: Slot,
    handle: Handle,
}

pub(crate) struct Dispatcher {
    cfg: Arc<Config>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    pending: VecDeque<Job>,
    workers: Vec<Worker>,
    next_wid: u64,
    next_seq: u64,
    cancelled_runs: HashSet<u64>,
    stopped_runs: HashSet<u64>,
    startup: Option<mpsc::SyncSender<Result<(), PoolError>>>,
    start_failures: u32,
    last_start_error: String,
    /// Whether any worker ever finished its handshake.
    ever_ready: bool,
    joining: bool,
    /// `close` was called: no new calls; idle workers exit once the queue is empty.
    closed: bool,
    terminating: bool,
    /// Threads backend: slots of stopped threads whose task may still run a process
    /// group (a thread cannot be killed), with when to kill that group.
    orphaned_groups: Vec<(Slot, Instant)>,
}

/// Start the dispatcher thread and its workers; returns once every worker finished its
/// handshake (or with the first start error, after cleaning up).
pub(crate) fn start(
    cfg: Arc<Config>,
) -> Result<(Sender<Event>, std::thread::JoinHandle<()>), PoolError> {
    let (tx, rx) = mpsc::channel();
    let (stx, srx) = mpsc::sync_channel(1);
    let mut d = Dispatcher {
        cfg,
        tx: tx.clone(),
        rx,
        pending: VecDeque::new(),
        workers: Vec::new(),
        next_wid: 0,
        next_seq: 0,
        cancelled_runs: HashSet::new(),
        stopped_runs: HashSet::new(),
        startup: Some(stx),
        start_failures: 0,
        last_start_error: String::new(),
        ever_ready: false,
        joining: false,
        closed: false,
        terminating: false,
        orphaned_groups: Vec::new(),
    };
    let handle = std::thread::Builder::new()
        .name("jobpool-dispatcher".into())
        .spawn(move || d.run())
        .map_err(|e| PoolError::Start(e.to_string()))?;
    match srx.recv() {
        Ok(Ok(())) => Ok((tx, handle)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(PoolError::Start("the dispatcher stopped".into()))
        }
    }
}

impl Dispatcher {
    fn run(&mut self) {
        let all: Vec<u32> = (0..self.cfg.workers as u32).collect();
        if let Err(e) = self.spawn_many(&all) {
            self.fail_startup(e);
            self.terminate_all();
            self.drain_until_empty();
            return;
        }
        self.check_startup();
        loop {
            let wait = self.tick_interval();
            match self.rx.recv_timeout(wait) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.begin_terminate(),
            }
            for _ in 0..100_000 {
                match self.rx.try_recv() {
                    Ok(ev) => self.handle(ev),
                    Err(_) => break,
                }
            }
            self.tick();
            self.pump();
            self.join_step();
            if self.finished() {
                break;
            }
        }
        self.settle_orphaned_groups();
        self.fail_startup(PoolError::Closed);
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
                // SAFETY: kill(2) of a process group a task registered.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return false;
            }
            true
        });
    }

    /// Before the dispatcher ends: no task group outlives the pool.
    fn settle_orphaned_groups(&mut self) {
        while !self.orphaned_groups.is_empty() {
            self.reap_orphaned_groups(Instant::now());
            if !self.orphaned_groups.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn fail_startup(&mut self, e: PoolError) {
        if let Some(s) = self.startup.take() {
            let _ = s.send(Err(e));
        }
    }

    /// Start-up is over once every worker is ready (the failed ones were replaced), or
    /// once starts keep failing but some worker is up: the pool runs with those.
    fn check_startup(&mut self) {
        let given_up = self.start_failures >= MAX_START_FAILURES && self.ever_ready;
        if self.startup.is_some()
            && (given_up || self.workers.iter().all(|w| w.phase == Phase::Ready))
        {
            let _ = self.startup.take().map(|s| s.send(Ok(())));
        }
    }

    /// After a startup failure: wait for every worker to be gone.
    fn drain_until_empty(&mut self) {
        while !self.workers.is_empty() {
            match self.rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Event::Gone { wid }) | Ok(Event::StartFailed { wid, .. }) => {
                    self.remove_worker(wid);
                }
                Ok(Event::Ready { wid, .. }) => self.kill_worker(wid),
                _ => {}
            }
            self.tick();
        }
    }

    fn tick_interval(&self) -> Duration {
        let busy = self.workers.iter().any(|w| {
            matches!(w.phase, Phase::Starting(_) | Phase::Stopping { .. })
                || (self.cfg.task_timeout.is_some() && !w.inflight.is_empty())
        });
        if busy { Duration::from_millis(5) } else { Duration::from_millis(100) }
    }

    fn finished(&self) -> bool {
        (self.joining || self.terminating) && self.workers.is_empty() && self.pending.is_empty()
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Submit(jobs) => {
                for job in jobs {
                    if self.terminating {
                        fail_job(job, Status::Cancelled, "the pool was terminated");
                    } else if self.cancelled_runs.contains(&job.run) {
                        fail_job(job, Status::Cancelled, "the run was cancelled");
                    } else if self.stopped_runs.contains(&job.run) {
                        fail_job(job, Status::Skipped, "submitting stopped");
                    } else {
                        self.pending.push_back(job);
                    }
                }
            }
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
            Event::Results { wid, results } => self.on_results(wid, results),
            Event::Gone { wid } => self.on_gone(wid),
            Event::Cancel { run } => self.cancel_run(run),
            Event::StopSubmitting { run } => self.stop_run(run),
            Event::Close => self.closed = true,
            Event::Join => {
                self.closed = true;
                self.joining = true;
            }
            Event::Terminate => self.begin_terminate(),
        }
    }

    fn spawn(&mut self, index: u32) -> Result<(), PoolError> {
        self.spawn_many(&[index])
    }

    /// Start workers for these slots. Process workers start concurrently: each is
    /// spawned by its own reader thread (which lives as long as the worker's channel, so
    /// the worker's parent-death signal, tied to the spawning thread, only fires when
    /// the pool is really gone); this thread then collects the children. On an error,
    /// the workers that did start are kept (the caller terminates them).
    fn spawn_many(&mut self, indices: &[u32]) -> Result<(), PoolError> {
        if self.cfg.backend == Backend::Threads {
            for &index in indices {
                self.spawn_thread(index)?;
            }
            return Ok(());
        }
        let mut launched = Vec::new();
        let mut first_err = None;
        for &index in indices {
            match self.launch_process(index) {
                Ok(l) => launched.push(l),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for (index, wid, name, crx) in launched {
            let (child, pidfd, group) = match crx.recv() {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    first_err.get_or_insert(PoolError::Start(e));
                    continue;
                }
                Err(_) => {
                    first_err.get_or_insert(PoolError::Start("the reader thread stopped".into()));
                    continue;
                }
            };
            let slot = Slot::shared();
            slot.set_group(group);
            self.workers.push(Worker {
                wid,
                index,
                phase: Phase::Starting(Instant::now()),
                inflight: VecDeque::new(),
                batch_ends: VecDeque::new(),
                assigned: 0,
                slot,
                handle: Handle::Process { child, pidfd, group, server: name, tx: None },
            });
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Create the handshake socket and the reader thread that spawns the worker.
    #[allow(clippy::type_complexity)]
    fn launch_process(
        &mut self,
        index: u32,
    ) -> Result<
        (u32, u64, String, Receiver<Result<(Child, Option<OwnedFd>, i32), String>>),
        PoolError,
    > {
        let wid = self.next_wid;
        self.next_wid += 1;
        let cfg = &self.cfg;
        let (server, name) = IpcOneShotServer::<FromWorker>::new()
            .map_err(|e| PoolError::Start(format!("cannot create the handshake socket: {e}")))?;
        let mut cmd = Command::new(&cfg.program);
        cmd.arg(WORKER_ARG).arg(&name).stdin(Stdio::null()).process_group(0);
        if cfg.stdout_to_stderr {
            use std::os::fd::AsFd;
            if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
                cmd.stdout(Stdio::from(fd));
            }
        }
        let program = cfg.program.display().to_string();
        let (ctx, crx) = mpsc::channel();
        let ev = self.tx.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name(format!("jobpool-reader-{index}"))
            .spawn(move || {
                let group = match command_group_leader() {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = ctx.send(Err(format!("cannot create a process group: {e}")));
                        return;
                    }
                };
                match cmd.spawn() {
                    Ok(child) => {
                        let pidfd = pidfd_open(child.id());
                        if ctx.send(Ok((child, pidfd, group))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        reap_pid(group);
                        let _ = ctx.send(Err(format!("cannot run {program}: {e}")));
                        return;
                    }
                }
                reader(server, ev, wid, cfg)
            })
            .map_err(|e| PoolError::Start(e.to_string()))?;
        Ok((index, wid, name, crx))
    }

    fn spawn_thread(&mut self, index: u32) -> Result<(), PoolError> {
        let wid = self.next_wid;
        self.next_wid += 1;
        let cfg = self.cfg.clone();
        let slot = Slot::local();
        let stop = Arc::new(AtomicBool::new(false));
        let (ttx, trx) = mpsc::channel::<ThreadMsg>();
        let ctx = TaskContext::new(
            cfg.context.clone(),
            cfg.task_timeout,
            cfg.grace_period,
            index,
            stop.clone(),
            slot.clone(),
        );
        let ev = self.tx.clone();
        let (s2, st2) = (slot.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("jobpool-worker-{index}"))
            .spawn(move || thread_worker(cfg, ctx, s2, st2, trx, ev, wid))
            .map_err(|e| PoolError::Start(e.to_string()))?;
        self.workers.push(Worker {
            wid,
            index,
            phase: Phase::Ready,
            inflight: VecDeque::new(),
            batch_ends: VecDeque::new(),
            assigned: 0,
            slot,
            handle: Handle::Thread { tx: ttx, stop },
        });
        Ok(())
    }

    fn find(&mut self, wid: u64) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.wid == wid)
    }

    fn on_ready(&mut self, wid: u64, sender: IpcSender<ToWorker>) {
        let cfg = self.cfg.clone();
        let Some(w) = self.find(wid) else { return };
        let init = Init {
            version: PROTOCOL_VERSION,
            worker: w.index,
            context: cfg.context.to_string(),
            task_timeout_ns: cfg.task_timeout.map(|d| d.as_nanos() as u64),
            grace_ns: cfg.grace_period.as_nanos() as u64,
            slot: w.slot.shm_for_worker().expect("process workers have shared slots"),
        };
        if sender.send(ToWorker::Init(init)).is_err() {
            // It died; its reader reports Gone.
            return;
        }
        if let Handle::Process { tx, .. } = &mut w.handle {
            *tx = Some(sender);
        }
        if matches!(w.phase, Phase::Starting(_)) {
            w.phase = Phase::Ready;
        }
        self.start_failures = 0;
        self.ever_ready = true;
        self.check_startup();
    }

    fn on_results(&mut self, wid: u64, results: ResultBatch) {
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
        let mut out = Deliveries { current: None, items: Vec::with_capacity(n) };
        {
            let w = &mut self.workers[wi];
            let pid = pid_of(w);
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
                if let Phase::Stopping { why: Why::Timeout(t), .. } = w.phase
                    && t == id
                {
                    continue;
                }
                let contains = |j: &Job| id >= j.seq && id < j.seq + j.items.len() as u64;
                let ji = if w.inflight.front().is_some_and(contains) {
                    0
                } else {
                    let Some(ji) = w.inflight.iter().position(contains) else { continue };
                    ji
                };
                let job = &mut w.inflight[ji];
                let ki = (id - job.seq) as usize;
                if ki < job.done {
                    continue; // already resolved
                }
                job.done = ki + 1;
                let mut item = job.items[ki];
                let worker = Some(w.index);
                let started_at = Some(ns_to_time(t_start));
                let duration = Duration::from_nanos(t_dur);
                let status = match code {
                    CODE_OK => {
                        let s = Stored::Ok {
                            blob: blob.clone(),
                            start: text_start,
                            end,
                            json: job.json,
                            attempts: item.attempts + 1,
                            worker: w.index,
                            started_ns: t_start,
                            duration_ns: t_dur,
                        };
                        out.push_stored(job, item.user_id, s);
                        None
                    }
                    CODE_SKIPPED => {
                        let o = Outcome::failed(
                            item.user_id,
                            Status::Skipped,
                            "submitting stopped",
                            item.attempts,
                        );
                        out.push(job, o);
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
                let stopping = self.cancelled_runs.contains(&job.run)
                    || matches!(w.phase, Phase::Stopping { why: Why::Cancel | Why::Terminate, .. });
                let status =
                    if status.is_some() && stopping { Some(Status::Cancelled) } else { status };
                if let Some(status) = status {
                    item.attempts += 1;
                    let stopped = self.stopped_runs.contains(&job.run)
                        || self.cancelled_runs.contains(&job.run);
                    if item.attempts <= retries
                        && !stopped
                        && status != Status::Cancelled
                        && self.cfg.retry_on.allows(status)
                    {
                        requeue.push(job.with_items(vec![item]));
                    } else {
                        let o = Outcome {
                            id: item.user_id,
                            task: job.task,
                            status,
                            value: None,
                            error: Some(String::from_utf8_lossy(text).into_owned()),
                            error_data: err_data,
                            attempts: item.attempts,
                            worker,
                            started_at,
                            duration,
                            worker_pid: pid,
                            worker_exit: None,
                            stopped_by_pool: false,
                        };
                        out.push(job, o);
                    }
                }
                if job.done == job.items.len() {
                    w.inflight.remove(ji);
                }
                while w.batch_ends.front().is_some_and(|&e| e <= id) {
                    w.batch_ends.pop_front();
                }
            }
        }
        out.flush();
        // A retry goes first: it keeps the sinks' reorder buffer short and a failure's
        // final outcome soon known (on-failure = "stop" sees it before later work starts).
        for job in requeue.into_iter().rev() {
            self.pending.push_front(job);
        }
        self.maybe_retire(wi);
    }

    /// Whether `results` are all successes of consecutive items of the worker's first
    /// job, a `map`-like call whose items all had the same number of attempts: then they
    /// are delivered as one [`Segment`], without per-item work on this thread.
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
        let Some(j) = w.inflight.front() else { return false };
        if !matches!(j.reply, Reply::Collect(_))
            || results.base != j.seq + j.done as u64
            || j.done + n > j.items.len()
        {
            return false;
        }
        let its = &j.items[j.done..j.done + n];
        let a = its[0].attempts;
        its[n - 1].user_id - its[0].user_id == n as u64 - 1 && its.iter().all(|i| i.attempts == a)
    }

    fn deliver_fast(&mut self, wi: usize, results: ResultBatch) {
        let w = &mut self.workers[wi];
        let n = results.len();
        let last_id = results.base + n as u64 - 1;
        let j = w.inflight.front_mut().expect("checked");
        let Reply::Collect(c) = &j.reply else { unreachable!("checked") };
        let c = c.clone();
        let seg = Segment {
            data: Arc::new(SegmentData {
                ends: results.ends.0,
                blob: Arc::new(results.blob.0),
                started_ns: results.started_ns,
                duration_ns: results.duration_ns,
            }),
            count: n,
            first: j.items[j.done].user_id as usize,
            attempts: j.items[j.done].attempts + 1,
            worker: w.index,
            json: j.json,
        };
        j.done += n;
        if j.done == j.items.len() {
            w.inflight.pop_front();
        }
        while w.batch_ends.front().is_some_and(|&e| e <= last_id) {
            w.batch_ends.pop_front();
        }
        c.deliver_segment(seg);
    }

    /// Recycle a worker that reached `max_tasks_per_worker` once its tasks are done.
    fn maybe_retire(&mut self, wi: usize) {
        let Some(max) = self.cfg.max_tasks_per_worker else { return };
        let w = &mut self.workers[wi];
        if w.phase == Phase::Ready && w.assigned >= max && w.inflight.is_empty() {
            w.phase = Phase::Retiring;
            send_shutdown(w);
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

    /// Take a gone worker out of the table, kill the process group it registered, and
    /// reap it; returns it with a description of how it ended.
    ///
    /// No process a process worker started outlives it, however it died, even while it
    /// was starting a command: every process of a command is, at every moment, either
    /// in the worker's own group (a child between its fork and its `setpgid`) or in the
    /// worker's command group (from `setpgid` on; processes only ever move from the
    /// first to the second). Both are killed, in that order, once the worker has exited
    /// (so it starts nothing more) and before either group's id can be reused (the
    /// worker and the command group's leader are still unreaped children of this
    /// process): a process in the worker's group then dies with it, and one already in
    /// the command group dies with that group.
    #[allow(clippy::type_complexity)]
    fn remove_worker(&mut self, wid: u64) -> Option<(Worker, String, Option<WorkerExit>)> {
        let i = self.workers.iter().position(|w| w.wid == wid)?;
        let mut w = self.workers.swap_remove(i);
        if let Handle::Process { child, pidfd, group, .. } = &mut w.handle {
            wait_exit(child, pidfd.as_ref());
            // SAFETY: plain kill(2) calls of process groups of our unreaped children.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
                libc::kill(-*group, libc::SIGKILL);
            }
        }
        let pgid = w.slot.pgid();
        if pgid > 0 {
            match w.handle {
                // SAFETY: plain kill(2) of a process group the worker registered.
                Handle::Process { .. } => unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                },
                // The thread was asked to stop and is stopping its command (TERM, grace,
                // KILL); the group is killed if it is still there after that.
                Handle::Thread { .. } => {
                    let at = Instant::now() + self.cfg.grace_period + Duration::from_millis(200);
                    self.orphaned_groups.push((w.slot.clone(), at));
                }
            }
        }
        let (how, exit) = reap(&mut w);
        if let Handle::Process { group, .. } = &w.handle {
            reap_pid(*group);
        }
        Some((w, how, exit))
    }

    fn kill_worker(&mut self, wid: u64) {
        if let Some(w) = self.find(wid) {
            signal(w, libc::SIGKILL);
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
        // Results the worker finished but had not sent yet. Every message it sent came
        // before this event (one reader thread per worker, in order), so results that
        // arrived are already resolved and skipped here.
        if let Some(batch) = self.find(wid).and_then(|w| w.slot.log_read()) {
            self.on_results(wid, batch);
        }
        let Some((mut w, status_text, exit)) = self.remove_worker(wid) else { return };
        let pid = pid_of(&w);
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
        for job in w.inflight.drain(..) {
            let cancelled = self.cancelled_runs.contains(&job.run) || self.terminating;
            let stopped = self.stopped_runs.contains(&job.run);
            let mut again = Vec::new();
            for (k, item) in job.items.iter().enumerate().skip(job.done) {
                let mut item = *item;
                let seq = job.seq + k as u64;
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
                    out.push(&job, o);
                    continue;
                }
                if !started(seq) && !is_running {
                    if stopped {
                        out.push(
                            &job,
                            Outcome::failed(
                                item.user_id,
                                Status::Skipped,
                                "submitting stopped",
                                item.attempts,
                            ),
                        );
                    } else {
                        again.push(item);
                    }
                    continue;
                }
                item.attempts += 1;
                let (status, msg) = match why {
                    Some(Why::Timeout(t)) if t == seq => (
                        Status::Timeout,
                        format!(
                            "task stopped after its task timeout of {}",
                            humantime::format_duration(self.cfg.task_timeout.unwrap_or_default())
                        ),
                    ),
                    // Started after the task that timed out, as the worker was stopped.
                    Some(Why::Timeout(t)) => (
                        Status::Crashed,
                        format!("stopped with its worker after task {t} timed out"),
                    ),
                    Some(Why::Cancel) => (
                        Status::Crashed,
                        "stopped with its worker when another run was cancelled".to_string(),
                    ),
                    _ => (Status::Crashed, format!("worker crashed: {status_text}")),
                };
                // Every case above but a crash is the pool stopping the worker.
                let by_pool = matches!(why, Some(Why::Timeout(_) | Why::Cancel));
                if item.attempts <= retries && !stopped && retry_on.allows(status) {
                    again.push(item);
                    continue;
                }
                let mut o = Outcome::failed(item.user_id, status, msg, item.attempts);
                o.worker = Some(w.index);
                o.worker_pid = pid;
                o.worker_exit = exit.filter(|_| status == Status::Crashed);
                o.stopped_by_pool = by_pool;
                if let Some(s) = last.filter(|l| l.0 == seq).map(|l| l.1) {
                    o.started_at = Some(ns_to_time(s));
                    o.duration = Duration::from_nanos(now_ns().saturating_sub(s));
                }
                out.push(&job, o);
            }
            if !again.is_empty() {
                back.push(job.with_items(again));
            }
        }
        out.flush();
        for job in back.into_iter().rev() {
            self.pending.push_front(job);
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
                signal(w, libc::SIGKILL);
                w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
            }
            return;
        }
        let starting = matches!(w.phase, Phase::Starting(_));
        match &mut w.handle {
            Handle::Process { child, server, .. } if starting => {
                let _ = child.kill();
                // Unblock the reader's accept(); it reports StartFailed.
                let _ = IpcSender::<FromWorker>::connect(server.clone());
                w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
            }
            Handle::Process { .. } => {
                let sig = if why == Why::Terminate { libc::SIGKILL } else { libc::SIGTERM };
                signal(w, sig);
                w.phase = Phase::Stopping {
                    why,
                    kill_at: Instant::now() + grace,
                    killed: sig == libc::SIGKILL,
                };
            }
            Handle::Thread { stop, .. } => {
                stop.store(true, Ordering::SeqCst);
                w.phase = Phase::Stopping { why, kill_at: Instant::now(), killed: true };
            }
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
                    if let Handle::Process { child, pidfd, server, .. } = &mut w.handle {
                        let dead = match pidfd {
                            Some(fd) => exited(fd, Duration::ZERO),
                            None => !matches!(child.try_wait(), Ok(None)),
                        };
                        if dead || now.duration_since(since) > HANDSHAKE_TIMEOUT {
                            let _ = child.kill();
                            // Unblock the reader's accept().
                            let _ = IpcSender::<FromWorker>::connect(server.clone());
                            w.phase =
                                Phase::Stopping { why: Why::Terminate, kill_at: now, killed: true };
                        }
                    }
                }
                Phase::Ready | Phase::Retiring => {
                    if let (Some(limit), Some((seq, started))) =
                        (self.cfg.task_timeout, w.slot.running())
                        && now_ns().saturating_sub(started) > limit.as_nanos() as u64
                        && w.inflight
                            .iter()
                            .any(|j| seq >= j.seq && seq < j.seq + j.items.len() as u64)
                    {
                        Self::stop_worker(w, Why::Timeout(seq), grace);
                    }
                }
                Phase::Stopping { why, kill_at, killed } => {
                    if !killed && now >= kill_at {
                        signal(w, libc::SIGKILL);
                        w.phase = Phase::Stopping { why, kill_at, killed: true };
                    }
                }
            }
            if matches!(w.handle, Handle::Thread { .. })
                && matches!(w.phase, Phase::Stopping { .. })
            {
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
            for job in self.pending.drain(..) {
                fail_job(job, Status::Crashed, &msg);
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
        let live = self.workers.iter().filter(|w| w.phase != Phase::Retiring).count();
        if self.start_failures < MAX_START_FAILURES && live < self.cfg.workers {
            let have: HashSet<u32> = self
                .workers
                .iter()
                .filter(|w| w.phase != Phase::Retiring)
                .map(|w| w.index)
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
            let ready = self.workers.iter().filter(|w| w.phase == Phase::Ready).count().max(1);
            let pick = self
                .workers
                .iter_mut()
                .enumerate()
                .filter(|(i, w)| {
                    w.phase == Phase::Ready
                        && w.batch_ends.len() < WINDOW
                        && w.assigned < max_tasks
                        && !excluded.contains(i)
                })
                .min_by_key(|(_, w)| w.inflight.len())
                .map(|(i, _)| i);
            let Some(wi) = pick else { return };
            let front = self.pending.front().expect("not empty");
            let chunk = match (self.cfg.chunk_size, front.chunk) {
                (Some(c), _) => c,
                (None, 0) => (self.pending.len() / (2 * ready)).clamp(1, 256),
                (None, c) => c,
            };
            let w = &mut self.workers[wi];
            let limit = chunk.min(max_tasks - w.assigned).max(1);
            // A message bigger than ~200 KB makes `send` wait until the worker reads it,
            // which a busy worker does only after its current batch: big batches go to
            // idle workers only, so the dispatcher never waits on a running task.
            let byte_cap = if w.batch_ends.is_empty() { usize::MAX } else { BUSY_BATCH_BYTES };
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
                let mut fit = 0;
                let mut bytes = batch.blob.0.len();
                while fit < j.items.len() && fit < limit - taken {
                    let size = j.items[fit].end - j.items[fit].start;
                    if bytes.saturating_add(size) > byte_cap {
                        break;
                    }
                    bytes += size;
                    fit += 1;
                }
                if fit == 0 {
                    break;
                }
                let mut job = if j.items.len() > fit {
                    let rest = j.items.split_off(fit);
                    let head = std::mem::replace(&mut j.items, rest);
                    j.with_items(head)
                } else {
                    self.pending.pop_front().expect("checked")
                };
                job.seq = self.next_seq;
                job.done = 0;
                self.next_seq += job.items.len() as u64;
                taken += job.items.len();
                let (first, last) = (job.items[0], job.items[job.items.len() - 1]);
                if job.items.windows(2).all(|p| p[0].end == p[1].start) {
                    // The usual case (a map chunk): one copy for the whole run.
                    let off = batch.blob.0.len();
                    batch.blob.0.extend_from_slice(&job.buf[first.start..last.end]);
                    batch.ends.0.reserve(4 * job.items.len());
                    for item in &job.items {
                        let end = (off + item.end - first.start) as u32;
                        batch.ends.0.extend_from_slice(&end.to_le_bytes());
                    }
                } else {
                    for item in &job.items {
                        batch.blob.0.extend_from_slice(job.arg(item));
                        batch.push_end();
                    }
                }
                w.inflight.push_back(job);
            }
            let n = batch.len();
            if n == 0 {
                excluded.push(wi);
                continue;
            }
            let last = self.next_seq - 1;
            let ok = match &w.handle {
                Handle::Process { tx: Some(tx), .. } => tx.send(ToWorker::Batch(batch)).is_ok(),
                Handle::Process { tx: None, .. } => false,
                Handle::Thread { tx, .. } => tx.send(ThreadMsg::Batch(batch)).is_ok(),
            };
            w.assigned += n;
            w.batch_ends.push_back(last);
            if !ok {
                // The worker is dying. Its tasks stay in flight: some may have started
                // (their results may still be on the way), and its Gone event settles
                // each one. Stop using it, and make sure it goes.
                signal(w, libc::SIGKILL);
                w.phase = Phase::Stopping { why: Why::Lost, kill_at: Instant::now(), killed: true };
            }
        }
    }

    fn cancel_run(&mut self, run: u64) {
        self.cancelled_runs.insert(run);
        let (mine, rest): (VecDeque<Job>, VecDeque<Job>) =
            self.pending.drain(..).partition(|j| j.run == run);
        self.pending = rest;
        for job in mine {
            fail_job(job, Status::Cancelled, "the run was cancelled");
        }
        let grace = self.cfg.grace_period;
        for w in &mut self.workers {
            if w.inflight.iter().any(|j| j.run == run) {
                Self::stop_worker(w, Why::Cancel, grace);
            }
        }
    }

    fn stop_run(&mut self, run: u64) {
        self.stopped_runs.insert(run);
        let (mine, rest): (VecDeque<Job>, VecDeque<Job>) =
            self.pending.drain(..).partition(|j| j.run == run);
        self.pending = rest;
        for job in mine {
            fail_job(job, Status::Skipped, "submitting stopped");
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
        for job in self.pending.drain(..) {
            fail_job(job, Status::Cancelled, "the pool was terminated");
        }
        self.terminate_all();
    }

    fn terminate_all(&mut self) {
        let grace = self.cfg.grace_period;
        for w in &mut self.workers {
            if w.inflight.is_empty() && w.phase == Phase::Ready {
                w.phase = Phase::Retiring;
                send_shutdown(w);
            } else {
                Self::stop_worker(w, Why::Terminate, grace);
            }
        }
    }
}

impl Dispatcher {
    /// Called each loop: once closed and the queue is empty, shut idle workers down
    /// (as Python's workers exit after `close`, without waiting for `join`).
    fn join_step(&mut self) {
        if self.closed && self.pending.is_empty() {
            for w in &mut self.workers {
                if w.phase == Phase::Ready && w.inflight.is_empty() {
                    w.phase = Phase::Retiring;
                    send_shutdown(w);
                }
            }
        }
    }
}

/// Outcomes for the same collector, delivered under one lock.
#[derive(Default)]
struct Deliveries {
    current: Option<Arc<Collector>>,
    items: Vec<(usize, Stored)>,
}

impl Deliveries {
    fn push(&mut self, job: &Job, mut o: Outcome) {
        o.task = job.task;
        self.push_stored(job, o.id, Stored::Other(Box::new(o)));
    }

    fn push_stored(&mut self, job: &Job, id: u64, s: Stored) {
        match &job.reply {
            Reply::Collect(c) => {
                if !self.current.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)) {
                    self.flush();
                    self.current = Some(c.clone());
                }
                self.items.push((id as usize, s));
            }
            Reply::Stream(tx) => {
                let _ = tx.send(s.to_outcome(id, job.task));
            }
        }
    }

    fn flush(&mut self) {
        if let Some(c) = self.current.take() {
            c.deliver_many(self.items.drain(..));
        }
    }
}

/// Finish every item of a job that could not be submitted as `cancelled`.
pub(crate) fn cancel_job(job: Job) {
    fail_job(job, Status::Cancelled, "the pool was terminated");
}

/// Finish every item of a job that never ran (again) with `status`.
fn fail_job(job: Job, status: Status, msg: &str) {
    let mut out = Deliveries::default();
    for item in &job.items[job.done..] {
        out.push(&job, Outcome::failed(item.user_id, status, msg, item.attempts));
    }
    out.flush();
}

fn send_shutdown(w: &mut Worker) {
    match &w.handle {
        Handle::Process { tx: Some(tx), .. } => {
            let _ = tx.send(ToWorker::Shutdown);
        }
        Handle::Process { tx: None, .. } => signal(w, libc::SIGKILL),
        Handle::Thread { tx, .. } => {
            let _ = tx.send(ThreadMsg::Shutdown);
        }
    }
}

/// Signal a process worker and the process group it registered.
fn signal(w: &Worker, sig: i32) {
    if let Handle::Process { child, group, .. } = &w.handle {
        let pgid = w.slot.pgid();
        // SAFETY: plain kill(2) calls on our own child, its command group (whose leader
        // is our unreaped child) and the group it registered.
        unsafe {
            if pgid > 0 {
                libc::kill(-pgid, sig);
            }
            libc::kill(-*group, sig);
            libc::kill(child.id() as i32, sig);
        }
    }
}

/// A process worker's pid.
fn pid_of(w: &Worker) -> Option<u32> {
    match &w.handle {
        Handle::Process { child, .. } => Some(child.id()),
        Handle::Thread { .. } => None,
    }
}

/// Wait for a gone worker process and describe how it ended.
fn reap(w: &mut Worker) -> (String, Option<WorkerExit>) {
    let Handle::Process { child, pidfd, .. } = &mut w.handle else {
        return ("the worker thread stopped".into(), None);
    };
    let deadline = Instant::now() + Duration::from_millis(200);
    // Wait on the pidfd first: it wakes the moment the process exits, and then a single
    // wait4 reaps it (no sleep loop, no wait4 racing the exit for its lock).
    if let Some(fd) = pidfd {
        exited(fd, Duration::from_millis(200));
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Ok(None) => {
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    match status {
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => (
                format!("killed by signal {sig} ({})", signal_name(sig)),
                Some(WorkerExit::Signal(sig)),
            ),
            (None, Some(code)) => {
                (format!("exited with code {code}"), Some(WorkerExit::Code(code)))
            }
            _ => ("ended".into(), None),
        },
        None => ("ended (status unknown)".into(), None),
    }
}

/// Wait (at most 200 ms, then SIGKILL it) until a gone worker has exited, without
/// reaping it: its pid, which is also its process group's id, stays ours.
fn wait_exit(child: &mut Child, pidfd: Option<&OwnedFd>) {
    let dead = |child: &mut Child| match pidfd {
        Some(fd) => exited(fd, Duration::from_millis(200)),
        None => {
            let deadline = Instant::now() + Duration::from_millis(200);
            loop {
                if has_exited(child.id()) {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    if !dead(child) {
        // SAFETY: kill(2) of our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        dead(child);
    }
}

/// Whether our child `pid` has exited, without reaping it.
fn has_exited(pid: u32) -> bool {
    // SAFETY: waitid with a zeroed siginfo_t out-parameter; WNOWAIT leaves it waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

/// Create the process group a worker's commands will join, before the worker starts.
///
/// A command cannot be given a group of its own race-free: with `process_group(0)` its
/// group exists from inside `spawn()`, before the worker learns its id, so a worker
/// killed in between leaves a group nobody knows (and a `pre_exec` hook would cost the
/// fast `posix_spawn` path). So the group exists first: a child of this process puts
/// itself in a new group and exits at once; unreaped, it keeps the group id valid and
/// joinable (`setpgid` accepts a group whose only member is a zombie of the same
/// session) for as long as the worker lives, and is reaped after the worker in
/// [`Dispatcher::remove_worker`]. A worker runs one task at a time, so the group holds
/// exactly the running task's processes. Returns the group id (the child's pid).
fn command_group_leader() -> std::io::Result<i32> {
    // SAFETY: the child only calls async-signal-safe functions (setpgid, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child of fork: setpgid and _exit only.
        unsafe {
            libc::setpgid(0, 0);
            libc::_exit(0);
        }
    }
    // Wait until it has exited (so its setpgid is done), leaving it unreaped.
    // SAFETY: waitid on our own child, zeroed siginfo_t out-parameter.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        while libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
            < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
    }
    Ok(pid)
}

/// Reap our child `pid` (a command group's leader) if it exited.
fn reap_pid(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// A pidfd for our child `pid`, which nobody reaped yet (so the pid is still its own).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) returns a new fd that we then own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process of `pidfd` has exited, waiting at most `timeout` for it.
fn exited(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: poll(2) on one pollfd that we own.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents != 0
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGINT => "SIGINT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}

/// A process worker's reader: finishes the handshake, then forwards results.
fn reader(server: IpcOneShotServer<FromWorker>, ev: Sender<Event>, wid: u64, cfg: Arc<Config>) {
    let program = || cfg.program.display().to_string();
    let (rx, first) = match server.accept() {
        Ok(x) => x,
        Err(e) => {
            let error = PoolError::Start(format!(
                "the worker died during the handshake ({e:?}); does {} call \
                 jobpool::pool::worker::run_if_worker(&registry) first thing in main?",
                program()
            ));
            let _ = ev.send(Event::StartFailed { wid, error });
            return;
        }
    };
    let start_failed = |error: PoolError| {
        let _ = ev.send(Event::StartFailed { wid, error });
    };
    match first {
        FromWorker::Hello { version, tasks, kinds, .. } if version == PROTOCOL_VERSION => {
            // Without a registry of its own, the pool takes the first worker's.
            let ours = cfg.signatures.get_or_init(|| kinds.clone());
            let differences = super::registry::differences(ours, &kinds);
            if !differences.is_empty() {
                return start_failed(PoolError::RegistryMismatch {
                    program: program(),
                    differences,
                });
            }
            let _ = ev.send(Event::Ready { wid, sender: tasks });
        }
        FromWorker::Hello { version, .. } => {
            return start_failed(PoolError::Start(format!(
                "protocol version mismatch: pool {PROTOCOL_VERSION}, worker {version}"
            )));
        }
        FromWorker::Refused { .. } => {
            return start_failed(PoolError::WorkerHookMissing { program: program() });
        }
        FromWorker::Results(_) => {
            return start_failed(PoolError::Start("protocol error: no hello".into()));
        }
    }
    loop {
        match rx.recv() {
            Ok(FromWorker::Results(results)) => {
                if ev.send(Event::Results { wid, results }).is_err() {
                    return;
                }
            }
            Ok(FromWorker::Hello { .. } | FromWorker::Refused { .. }) => {}
            Err(_) => {
                let _ = ev.send(Event::Gone { wid });
                return;
            }
        }
    }
}

fn thread_worker(
    cfg: Arc<Config>,
    ctx: TaskContext,
    slot: Slot,
    stop: Arc<AtomicBool>,
    rx: Receiver<ThreadMsg>,
    ev: Sender<Event>,
    wid: u64,
) {
    let ev2 = ev.clone();
    let mut send = move |results: ResultBatch| ev2.send(Event::Results { wid, results }).is_ok();
    while let Ok(ThreadMsg::Batch(batch)) = rx.recv() {
        if !super::worker::run_batch(&cfg.registry, &ctx, &slot, &stop, batch, &mut send) {
            break;
        }
    }
    let _ = ev.send(Event::Gone { wid });
}
