//! The process pool: Python's `multiprocessing.Pool`, without its hangs.
//!
//! - [`registry`]: named task functions ([`Registry`]), typed (postcard) and JSON paths,
//!   [`TaskContext`], [`TaskError`].
//! - [`protocol`]: the ipc wire (versioned handshake, batches, results) and the shared
//!   per-worker slot that says which task a worker is running.
//! - [`worker`]: [`run_if_worker`](worker::run_if_worker), the worker's batch loop.
//! - `dispatcher`: the one thread that owns the scheduling state: the queue, in-flight
//!   tasks, timeouts, retries, crash attribution and respawning.
//! - `handle`: the parent's side of one worker: starting it (handshake), sending it
//!   batches, signalling, taking down and reaping it (OS calls in `crate::process`).
//! - `delivery`: handing finished outcomes to collectors and channels.
//! - [`result`]: [`AsyncResult`], [`MapResult`], [`Imap`], [`ImapUnordered`],
//!   [`Outcome`], [`PoolError`].
//! - [`stream`]: the streaming run API `jobpool run` uses ([`Pool::run_stream`]).
//!
//! Everything here is documented for users in the book's "Coming from Python's Pool"
//! chapter and for maintainers in "Internals: the pool".

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(debug_assertions)]
mod abuse;
mod delivery;
mod dispatcher;
mod handle;
pub mod protocol;
pub mod registry;
pub mod result;
mod retry;
pub mod stream;
pub mod worker;
pub mod zygote;

use delivery::Reply;
use dispatcher::{Event, Item, MAX_AUTO_CHUNK, Parcel};
pub use registry::{ArgNames, KindSig, Registry, TaskContext, TaskError, TaskErrorKind};
use result::Collector;
pub use retry::RetryOn;

/// What runs in the parent when a call's last outcome is in.
type Done = Box<dyn FnOnce(&Collector) + Send>;
pub use result::{
    AsyncResult, Imap, ImapUnordered, MapResult, Outcome, Payload, PoolError, WorkerExit,
};
pub use stream::{RunControl, RunStream, Submission};

/// What the pool's workers are: processes or threads. (Not a backend: in jobpool a
/// backend is where a job's submissions run, `backend::Backend`; the local one uses
/// this pool.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerKind {
    /// Worker processes (re-executions of this program) over `ipc-channel` (default).
    #[default]
    Processes,
    /// Threads of this process, like `multiprocessing.pool.ThreadPool`. Same API and
    /// statuses, but a timed-out task cannot be killed: it is reported `timeout`, its
    /// thread is abandoned (it finishes on its own, its result is dropped) and replaced.
    Threads,
}

pub(crate) struct Config {
    /// Unique in this process (never reused, unlike an address).
    pub id: u64,
    pub workers: usize,
    pub chunk_size: Option<usize>,
    pub max_tasks_per_worker: Option<usize>,
    pub task_timeout: Option<Duration>,
    pub grace_period: Duration,
    pub retries: u32,
    pub retry_on: RetryOn,
    pub worker_kind: WorkerKind,
    pub context: Arc<str>,
    pub registry: Arc<Registry>,
    /// The kinds every worker must have: the registry's when one was given, else the
    /// first worker's.
    pub signatures: OnceLock<Vec<KindSig>>,
    pub program: PathBuf,
    pub stream_capacity: usize,
    pub stdout_to_stderr: bool,
    pub command_groups: bool,
}

/// Configures a [`Pool`]; from [`Pool::builder`].
#[derive(Clone)]
pub struct PoolBuilder {
    workers: Option<usize>,
    chunk_size: Option<usize>,
    max_tasks_per_worker: Option<usize>,
    task_timeout: Option<Duration>,
    grace_period: Duration,
    retries: u32,
    retry_on: RetryOn,
    worker_kind: WorkerKind,
    context: String,
    registry: Option<Registry>,
    program: Option<PathBuf>,
    stream_capacity: usize,
    stdout_to_stderr: bool,
    command_groups: bool,
}

impl PoolBuilder {
    /// Number of workers (default: the available parallelism). At least 1:
    /// [`build`](Self::build) refuses 0 ([`PoolError::InvalidOption`]), as Python does.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Tasks sent to a worker at once (Python's `chunksize`); at least 1 (`build`
    /// refuses 0). Unset = automatic: `ceil(n / (4 * workers))` capped at 4096 for `map`,
    /// and for one-by-one calls as many as are waiting, shared between workers.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = Some(n);
        self
    }

    /// Replace a worker after it ran this many tasks (Python's `maxtasksperchild`);
    /// 0 = never (default).
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.max_tasks_per_worker = (n > 0).then_some(n);
        self
    }

    /// Stop a task that runs longer (TERM, then KILL after the grace period); its status
    /// is `timeout`. Default: no limit.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = Some(d);
        self
    }

    /// Time between TERM and KILL when a task is stopped (default 1 s).
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace_period = d;
        self
    }

    /// Re-run a task that failed (error, timeout, crashed) up to `n` more times.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Which failures [`retries`](Self::retries) applies to (default: [`RetryOn::ALL`]);
    /// a failure of another kind is final at once.
    pub fn retry_on(mut self, kinds: RetryOn) -> Self {
        self.retry_on = kinds;
        self
    }

    /// Process workers (default) or thread workers.
    pub fn worker_kind(mut self, kind: WorkerKind) -> Self {
        self.worker_kind = kind;
        self
    }

    /// An opaque string every worker receives once at start
    /// ([`TaskContext::context`]); `jobpool run` passes the parcel's task definition.
    pub fn context(mut self, c: impl Into<String>) -> Self {
        self.context = c.into();
        self
    }

    /// The functions the pool calls. Needed by thread workers (process workers run
    /// the registry the worker program passed to
    /// [`run_if_worker`](worker::run_if_worker), and refuses a worker whose registry
    /// differs from this one; without one, from the first worker's). Calls are
    /// type-checked against it. Default: an empty registry (`jobpool::task::builtins()`
    /// has the job-file kinds `command` and `script`).
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = Some(r);
        self
    }

    /// The program started as a worker (default: this program, `current_exe`). It must
    /// call [`run_if_worker`](worker::run_if_worker) first thing in `main`.
    pub fn worker_program(mut self, p: impl Into<PathBuf>) -> Self {
        self.program = Some(p.into());
        self
    }

    /// For [`Pool::run_stream`], [`Pool::imap`] and [`Pool::imap_unordered`]: how many
    /// submissions may be taken from the iterator and not yet handed back (default
    /// 4096; CPython's `buffersize`). Bounds memory.
    pub fn stream_capacity(mut self, n: usize) -> Self {
        self.stream_capacity = n.max(1);
        self
    }

    /// Send what the workers print on stdout to this process's stderr instead (for
    /// programs whose own stdout carries results, like `jobpool run`). Default: off,
    /// workers share stdout, as in Python.
    pub fn worker_stdout_to_stderr(mut self, yes: bool) -> Self {
        self.stdout_to_stderr = yes;
        self
    }

    /// Give each worker a command group (default: on): a process group, made before the
    /// worker runs anything, that the commands its tasks start join
    /// ([`TaskContext::command_group`]), so the pool kills them with their task and
    /// nothing outlives the pool. It costs two small processes per worker. Turn it off
    /// for task functions that never start a process; a task that does start one then
    /// gets a group of its own, tracked while it runs, as on thread workers.
    pub fn command_groups(mut self, yes: bool) -> Self {
        self.command_groups = yes;
        self
    }

    /// Start the workers; returns as soon as one finished its handshake, while the
    /// others finish theirs (tasks wait for no worker but the first). A program that
    /// cannot start any worker is an error, never a hang; a worker that fails later
    /// is replaced.
    ///
    /// In a process started as a worker whose `main` did not call
    /// [`run_if_worker`](worker::run_if_worker), this exits the process at once (the
    /// pool that started it then fails with [`PoolError::WorkerHookMissing`]) instead of
    /// starting workers that would do the same, without end.
    pub fn build(self) -> Result<Pool, PoolError> {
        self.start()?.wait()
    }

    /// Start the workers and return at once; [`StartingPool::wait`] is
    /// [`PoolBuilder::build`]'s wait. For a caller with its own work to do meanwhile.
    pub(crate) fn start(self) -> Result<StartingPool, PoolError> {
        worker::refuse_if_unhooked();
        if self.workers == Some(0) {
            let reason = "a pool needs at least one worker".into();
            return Err(PoolError::InvalidOption { option: "workers", reason });
        }
        if self.chunk_size == Some(0) {
            let reason = "at least 1 task per batch; leave it unset for automatic".into();
            return Err(PoolError::InvalidOption { option: "chunk_size", reason });
        }
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let program = match self.program {
            Some(p) => p,
            None => std::env::current_exe().map_err(|e| PoolError::Start(e.to_string()))?,
        };
        let signatures = OnceLock::new();
        if let Some(r) = &self.registry {
            let _ = signatures.set(r.signatures());
        }
        let registry = Arc::new(self.registry.unwrap_or_default());
        if self.worker_kind == WorkerKind::Threads {
            let _ = signatures.set(registry.signatures());
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let cfg = Arc::new(Config {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            workers,
            chunk_size: self.chunk_size,
            max_tasks_per_worker: self.max_tasks_per_worker,
            task_timeout: self.task_timeout,
            grace_period: self.grace_period,
            retries: self.retries,
            retry_on: self.retry_on,
            worker_kind: self.worker_kind,
            context: Arc::from(self.context),
            registry,
            signatures,
            program,
            stream_capacity: self.stream_capacity,
            stdout_to_stderr: self.stdout_to_stderr,
            command_groups: self.command_groups,
        });
        let dispatcher::Starting { tx, thread, startup } = dispatcher::start(cfg.clone())?;
        let pool = Pool {
            tx,
            thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
            cfg,
            next_run: AtomicU64::new(1),
            callbacks: Mutex::new(None),
        };
        Ok(StartingPool { pool, startup })
    }
}

/// A pool whose workers are starting ([`PoolBuilder::start`]).
pub(crate) struct StartingPool {
    pool: Pool,
    startup: std::sync::mpsc::Receiver<Result<(), PoolError>>,
}

impl StartingPool {
    /// The pool, to submit to before any worker is ready: its tasks wait in the queue
    /// and go to the first worker the moment it finished its handshake (not after the
    /// caller heard of it and submitted). If the pool cannot start, [`wait`](Self::wait)
    /// says so and what was submitted ends `cancelled`.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool, once one worker finished its handshake; or the first start error,
    /// after the dispatcher cleaned up.
    pub(crate) fn wait(self) -> Result<Pool, PoolError> {
        match self.startup.recv() {
            Ok(Ok(())) => Ok(self.pool),
            // The dispatcher stopped by itself; dropping the pool joins its thread.
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PoolError::Start("the dispatcher stopped".into())),
        }
    }
}

/// A pool of workers: Python's `multiprocessing.Pool`.
///
/// Every method takes `&self`; a pool can be shared between threads. Dropping it
/// terminates it: no worker process is left behind.
pub struct Pool {
    tx: Sender<Event>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    cfg: Arc<Config>,
    next_run: AtomicU64,
    /// The thread that runs callbacks, in completion order (started on first use).
    callbacks: Mutex<Option<Sender<result::QueuedCallback>>>,
}

/// `name` as a shared string, without an allocation when this thread asked for the same
/// name last time (one-by-one calls repeat it; the dispatcher frees what we allocate).
fn shared_name(name: &str) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some(a) if &**a == name => a.clone(),
        _ => last.insert(Arc::from(name)).clone(),
    })
}

/// Where item `item`'s argument ends in its chunk's buffer, as the wire's `u32`: an
/// error past 4 GiB (never a wrapped offset).
fn chunk_end(end: usize, item: usize) -> Result<u32, PoolError> {
    u32::try_from(end).map_err(|_| {
        PoolError::Encode(format!(
            "a chunk's arguments take over 4 GiB (at item {item}); use a smaller chunk_size"
        ))
    })
}

fn auto_chunk(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers.max(1)).clamp(1, MAX_AUTO_CHUNK)
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            chunk_size: None,
            max_tasks_per_worker: None,
            task_timeout: None,
            grace_period: Duration::from_secs(1),
            retries: 0,
            retry_on: RetryOn::ALL,
            worker_kind: WorkerKind::Processes,
            context: String::new(),
            registry: None,
            program: None,
            stream_capacity: 4096,
            stdout_to_stderr: false,
            command_groups: true,
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.cfg.workers
    }

    fn submit_one(&self, parcel: Parcel) -> Result<(), PoolError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PoolError::Closed);
        }
        self.tx.send(Event::SubmitOne(parcel)).map_err(|_| PoolError::Closed)
    }

    /// The callback thread's queue. Callbacks run there, one at a time in the order their
    /// calls complete, never on the dispatcher; the thread ends when the pool and every
    /// call waiting for its callback are gone.
    fn callback_runner(&self) -> Sender<result::QueuedCallback> {
        let mut g = self.callbacks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = g.as_ref() {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel::<result::QueuedCallback>();
        let spawned = std::thread::Builder::new()
            .name("jobpool-callbacks".into())
            .spawn(move || rx.into_iter().for_each(|parcel| parcel()));
        if spawned.is_ok() {
            *g = Some(tx.clone());
        }
        // Without the thread, the receiver is gone: the callback runs inline.
        tx
    }

    fn check_open(&self) -> Result<(), PoolError> {
        if self.closed.load(Ordering::SeqCst) { Err(PoolError::Closed) } else { Ok(()) }
    }

    /// Check once per call that the caller's argument type `A` and value type `T` are
    /// the registered function's (a mismatch would otherwise be decoded into a wrong
    /// value: postcard does not describe itself). Unknown and JSON kinds pass.
    fn check_types<A, T>(&self, func: &str) -> Result<(), PoolError> {
        let (given, requested) = (std::any::type_name::<A>(), std::any::type_name::<T>());
        type Passed = (u64, &'static str, &'static str, &'static str);
        thread_local! {
            // The last check this thread passed (pool, task, types): one-by-one calls
            // repeat it, and a hash lookup costs more than a trivial task.
            static PASSED: std::cell::Cell<Passed> = const { std::cell::Cell::new((0, "", "", "")) };
        }
        let pool = self.cfg.id;
        let (p, f, a, t) = PASSED.get();
        if p == pool && f == func && std::ptr::eq(a, given) && std::ptr::eq(t, requested) {
            return Ok(());
        }
        self.check_types_slow(func, given, requested)?;
        PASSED.set((pool, result::intern(func), given, requested));
        Ok(())
    }

    fn check_types_slow(
        &self,
        func: &str,
        given: &'static str,
        requested: &'static str,
    ) -> Result<(), PoolError> {
        // The fast path: the pool's own registry, with the very same type names.
        let raw = self.cfg.registry.entry(func).and_then(|e| e.types);
        if raw == Some((given, requested)) {
            return Ok(());
        }
        let Some(sigs) = self.cfg.signatures.get() else { return Ok(()) };
        let Ok(i) = sigs.binary_search_by(|s| s.name.as_str().cmp(func)) else { return Ok(()) };
        let sig = &sigs[i];
        if sig.args.is_empty() {
            return Ok(()); // a JSON kind: untyped
        }
        let shown = |canonical: &str, raw: Option<&'static str>| match raw {
            Some(r) if registry::canonical_type(r) == canonical => r.to_string(),
            _ => canonical.to_string(),
        };
        if registry::canonical_type(given) != sig.args {
            return Err(PoolError::ArgumentType {
                task: func.to_string(),
                registered: shown(&sig.args, raw.map(|r| r.0)),
                given: given.to_string(),
            });
        }
        if registry::canonical_type(requested) != sig.value {
            return Err(PoolError::ValueType {
                task: func.to_string(),
                registered: shown(&sig.value, raw.map(|r| r.1)),
                requested: requested.to_string(),
            });
        }
        Ok(())
    }

    fn apply_inner<T: DeserializeOwned>(
        &self,
        func: &str,
        payload: Payload,
        done: Option<Done>,
    ) -> Result<AsyncResult<T>, PoolError> {
        self.check_open()?;
        let runner = done.as_ref().map(|_| self.callback_runner());
        let c = Collector::new(1, result::intern(func), done, runner);
        let (json, bytes) = match payload {
            Payload::Json(s) => (true, s.into_bytes()),
            Payload::Bytes(b) => (false, b),
        };
        let parcel =
            Parcel::single(shared_name(func), json, 0, 0, Reply::Collect(c.clone()), bytes);
        self.submit_one(parcel)?;
        Ok(AsyncResult { c, _t: PhantomData })
    }

    /// Run `func(args)` on a worker (Python's `apply_async`). Several arguments go as a
    /// tuple, none as `()`.
    pub fn apply_async<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        args: A,
    ) -> Result<AsyncResult<T>, PoolError> {
        self.check_types::<A, T>(func)?;
        self.apply_inner(func, Payload::encode(&args)?, None)
    }

    /// [`apply_async`](Self::apply_async) with Python's `callback` and
    /// `error_callback`: one of them is called in the parent, on the pool's callback
    /// thread (callbacks run one at a time, in the order their calls complete; a slow one
    /// delays later callbacks, never the pool). As in Python, the result is ready
    /// (`ready`, `wait`, `get`) only once its callback has run; a callback that panics
    /// makes `get` return [`PoolError::Callback`]. From a callback, never wait for a
    /// result that has a callback of its own: it would wait behind the running one.
    pub fn apply_async_with<A, T, F, E>(
        &self,
        func: &str,
        args: A,
        callback: F,
        error_callback: E,
    ) -> Result<AsyncResult<T>, PoolError>
    where
        A: Serialize,
        T: DeserializeOwned + 'static,
        F: FnOnce(T) + Send + 'static,
        E: FnOnce(PoolError) + Send + 'static,
    {
        self.check_types::<A, T>(func)?;
        let done = Box::new(move |c: &Collector| {
            match c.with_outcomes(|o| result::stored_result(&o[0])) {
                Ok(v) => callback(v),
                Err(e) => error_callback(e),
            }
        });
        self.apply_inner(func, Payload::encode(&args)?, Some(done))
    }

    /// Run `func` with its argument as JSON text (what job files use); the value comes
    /// back as JSON and decodes into `T` (use `serde_json::Value` for any).
    pub fn apply_json<T: DeserializeOwned>(
        &self,
        func: &str,
        args_json: &str,
    ) -> Result<AsyncResult<T>, PoolError> {
        self.apply_inner(func, Payload::Json(args_json.to_string()), None)
    }

    /// `apply_async(..).get(None)`: Python's `apply`.
    pub fn apply<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        args: A,
    ) -> Result<T, PoolError> {
        self.apply_async(func, args)?.get(None)
    }

    fn map_inner<A: Serialize, T>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
        done: Option<Done>,
    ) -> Result<Arc<Collector>, PoolError> {
        self.check_open()?;
        self.check_types::<A, T>(func)?;
        let items = items.into_iter();
        // An iterator that knows its exact length is encoded as it goes (no copy of the
        // items first); any other is collected to learn it.
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => self.map_encode::<A>(func, items, lo, done),
            _ => {
                let items: Vec<A> = items.collect();
                let n = items.len();
                self.map_encode::<A>(func, items.into_iter(), n, done)
            }
        }
    }

    /// [`map_inner`](Self::map_inner) once the number of items, `n`, is known. An
    /// iterator that yields more or fewer than the exact length its `size_hint` announced
    /// is an error, like an item that cannot be encoded (the chunks sent before run,
    /// their results are dropped).
    fn map_encode<A: Serialize>(
        &self,
        func: &str,
        mut items: impl Iterator<Item = A>,
        n: usize,
        done: Option<Done>,
    ) -> Result<Arc<Collector>, PoolError> {
        let chunk = self.cfg.chunk_size.unwrap_or_else(|| auto_chunk(n, self.cfg.workers));
        let f: Arc<str> = Arc::from(func);
        let runner = done.as_ref().map(|_| self.callback_runner());
        let c = Collector::new(n, result::intern(func), done, runner);
        if n == 0 {
            c.finish_empty();
            return Ok(c);
        }
        let reply = Reply::Collect(c.clone());
        let miscounted = |got: &str| {
            PoolError::Encode(format!(
                "the items' iterator announced exactly {n} items (size_hint) and yielded {got}"
            ))
        };
        // Items `from..n` will never be sent: they end cancelled (nothing may wait for them).
        let cancel_rest = |from: usize| {
            if from < n {
                let rest: Vec<Item> = (from..n)
                    .map(|i| Item { user_id: i as u64, start: 0, end: 0, attempts: 0 })
                    .collect();
                delivery::cancel_parcel(Parcel::new(
                    f.clone(),
                    false,
                    chunk,
                    0,
                    reply.clone(),
                    Arc::new(Vec::new()),
                    rest,
                ));
            }
        };
        // One parcel per chunk, its items encoded into one buffer, each sent as soon as it
        // is encoded (the workers start while the rest is being encoded).
        let mut first = 0usize;
        while first < n {
            let len = chunk.min(n - first);
            let mut buf = Vec::with_capacity(len * 4);
            // Each item's end in `buf`, as the wire has them: the chunk's items are not
            // built one by one (see `Parcel::map_chunk`).
            let mut ends = Vec::with_capacity(len * 4);
            let mut enc = protocol::Encoder::new(&mut buf);
            for a in items.by_ref().take(len) {
                let end = match enc.push(&a) {
                    Ok(end) => end,
                    Err(e) => return Err(PoolError::Encode(e.to_string())),
                };
                ends.extend_from_slice(&chunk_end(end, first + ends.len() / 4)?.to_le_bytes());
            }
            let got = ends.len() / 4;
            if got < len {
                return Err(miscounted(&(first + got).to_string()));
            }
            let parcel = Parcel::map_chunk(
                f.clone(),
                chunk,
                reply.clone(),
                Arc::new(buf),
                first as u64,
                Arc::new(ends),
            );
            // Not `submit`: a `close` racing with this call must not drop half a map.
            if let Err(mpsc::SendError(ev)) = self.tx.send(Event::Submit(vec![parcel])) {
                // The dispatcher is gone (terminated): nothing may wait for these items.
                if let Event::Submit(parcels) = ev {
                    parcels.into_iter().for_each(delivery::cancel_parcel);
                }
                cancel_rest(first + got);
                return Err(PoolError::Closed);
            }
            first += got;
        }
        if items.next().is_some() {
            return Err(miscounted("more"));
        }
        Ok(c)
    }

    /// Run `func` on every item (Python's `map_async`); results keep the items' order.
    ///
    /// Items are encoded as they are taken from an iterator whose `size_hint` gives an
    /// exact length (ranges, vectors, their maps); one that then yields another number of
    /// items is an error ([`PoolError::Encode`]), like an item that cannot be encoded.
    pub fn map_async<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<MapResult<T>, PoolError> {
        let c = self.map_inner::<A, T>(func, items, None)?;
        Ok(MapResult { c, _t: PhantomData })
    }

    /// [`map_async`](Self::map_async) with Python's `callback` (every value, in order)
    /// and `error_callback` (the first failing item's error), run in the parent as for
    /// [`apply_async_with`](Self::apply_async_with).
    pub fn map_async_with<A, T, F, E>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
        callback: F,
        error_callback: E,
    ) -> Result<MapResult<T>, PoolError>
    where
        A: Serialize,
        T: DeserializeOwned + 'static,
        F: FnOnce(Vec<T>) + Send + 'static,
        E: FnOnce(PoolError) + Send + 'static,
    {
        let done = Box::new(move |c: &Collector| {
            let r: Result<Vec<T>, PoolError> = c.values();
            match r {
                Ok(v) => callback(v),
                Err(e) => error_callback(e),
            }
        });
        let c = self.map_inner::<A, T>(func, items, Some(done))?;
        Ok(MapResult { c, _t: PhantomData })
    }

    /// `map_async(..).get(None)`: Python's `map`.
    pub fn map<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<T>, PoolError> {
        self.map_async(func, items)?.get(None)
    }

    /// Python's `starmap_async`: each item is a tuple of arguments, and `func` is
    /// registered with that tuple as its parameter. (In Rust this is `map_async` over
    /// tuples; it exists so that Python code maps one to one.)
    pub fn starmap_async<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<MapResult<T>, PoolError> {
        self.map_async(func, items)
    }

    /// [`starmap_async`](Self::starmap_async) with callbacks.
    pub fn starmap_async_with<A, T, F, E>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
        callback: F,
        error_callback: E,
    ) -> Result<MapResult<T>, PoolError>
    where
        A: Serialize,
        T: DeserializeOwned + 'static,
        F: FnOnce(Vec<T>) + Send + 'static,
        E: FnOnce(PoolError) + Send + 'static,
    {
        self.map_async_with(func, items, callback, error_callback)
    }

    /// `starmap_async(..).get(None)`: Python's `starmap`.
    pub fn starmap<A: Serialize, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<T>, PoolError> {
        self.map(func, items)
    }

    /// Python's `imap`: an iterator of results in item order, each yielded as soon as it
    /// and every earlier one are done. Lazy and bounded: see [`Imap`].
    pub fn imap<'a, A: Serialize + 'a, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A, IntoIter: 'a>,
    ) -> Result<Imap<'a, T>, PoolError> {
        let (feed, rx) = self.lazy_feed::<A, T, _>(func, items)?;
        Ok(Imap { feed, rx, early: Default::default(), next: 0, _t: PhantomData })
    }

    /// Python's `imap_unordered`: `(item index, result)` in completion order; every
    /// item exactly once. Lazy and bounded, like [`imap`](Self::imap).
    pub fn imap_unordered<'a, A: Serialize + 'a, T: DeserializeOwned>(
        &self,
        func: &str,
        items: impl IntoIterator<Item = A, IntoIter: 'a>,
    ) -> Result<ImapUnordered<'a, T>, PoolError> {
        let (feed, rx) = self.lazy_feed::<A, T, _>(func, items)?;
        Ok(ImapUnordered { feed, rx, handed: 0, _t: PhantomData })
    }

    fn lazy_feed<'a, A, T, I>(
        &self,
        func: &str,
        items: I,
    ) -> Result<(stream::LazyFeed<'a>, mpsc::Receiver<Outcome>), PoolError>
    where
        A: Serialize + 'a,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        self.check_open()?;
        self.check_types::<A, T>(func)?;
        let items = items.into_iter();
        let capacity = self.cfg.stream_capacity;
        // The length, when the iterator knows it, sizes the chunks as for `map`.
        let known = items.size_hint().1.unwrap_or(capacity).min(capacity);
        let chunk = self.cfg.chunk_size.unwrap_or_else(|| auto_chunk(known, self.cfg.workers));
        let (otx, rx) = mpsc::channel();
        let mut feed =
            stream::LazyFeed::new(items, self.tx.clone(), otx, Arc::from(func), chunk, capacity);
        feed.top_up(0);
        Ok((feed, rx))
    }

    /// Stream submissions through the pool with bounded memory; see [`stream`].
    ///
    /// A thread of the pool's pulls them from `items`, which may wait (a channel's
    /// receiver, say) for what the caller does after this returns.
    pub fn run_stream<I>(&self, items: I) -> Result<RunStream, PoolError>
    where
        I: IntoIterator<Item = Submission>,
        I::IntoIter: Send + 'static,
    {
        self.start_stream(items.into_iter(), false)
    }

    /// [`Pool::run_stream`] of submissions already made: the first of them (as many as
    /// one round of the feed takes) are handed to the pool before this returns, and a
    /// feeding thread starts only for the rest, if any.
    pub(crate) fn run_stream_made(&self, items: Vec<Submission>) -> Result<RunStream, PoolError> {
        self.start_stream(items.into_iter(), true)
    }

    fn start_stream<I>(&self, items: I, first_here: bool) -> Result<RunStream, PoolError>
    where
        I: Iterator<Item = Submission> + Send + 'static,
    {
        self.check_open()?;
        let run = self.next_run.fetch_add(1, Ordering::SeqCst);
        let (capacity, chunk) = (self.cfg.stream_capacity, self.cfg.chunk_size.unwrap_or(0));
        Ok(stream::start(self.tx.clone(), run, capacity, chunk, items, first_here))
    }

    /// Take no more tasks (Python's `close`); submitted ones go on, and the workers exit
    /// once they are done (without waiting for [`join`](Self::join)).
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(Event::Close);
        }
    }

    /// Close, wait for every submitted task, and let the workers exit (Python's `join`,
    /// which needs `close` first; here `join` closes).
    pub fn join(&self) {
        self.close();
        let _ = self.tx.send(Event::Join);
        self.wait_thread();
    }

    /// Cancel everything now (Python's `terminate`): workers are killed; unfinished
    /// tasks end `cancelled` (their results' `get` returns [`PoolError::Cancelled`],
    /// never hangs).
    pub fn terminate(&self) {
        self.close();
        let _ = self.tx.send(Event::Terminate);
        self.wait_thread();
    }

    fn wait_thread(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    //! Thread workers run inside the test binary; process workers are tested
    //! in `tests/pool.rs`, whose `main` can serve as a worker.
    use super::*;
    use crate::record::Status;

    fn pool() -> Pool {
        let mut r = Registry::new();
        r.register("double", |x: i64| Ok::<_, TaskError>(2 * x));
        r.register(
            "odd_fails",
            |x: i64| if x % 2 == 1 { Err(format!("{x} is odd")) } else { Ok(x) },
        );
        r.register("sleep_ms", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, TaskError>(ms)
        });
        Pool::builder()
            .workers(2)
            .worker_kind(WorkerKind::Threads)
            .task_timeout(Duration::from_millis(200))
            .registry(r)
            .build()
            .unwrap()
    }

    #[test]
    fn a_chunk_past_4_gib_is_an_error_not_a_wrapped_offset() {
        assert_eq!(chunk_end(0, 0).unwrap(), 0);
        assert_eq!(chunk_end(u32::MAX as usize, 7).unwrap(), u32::MAX);
        let e = chunk_end(u32::MAX as usize + 1, 7).unwrap_err();
        assert!(
            matches!(&e, PoolError::Encode(m) if m.contains("over 4 GiB (at item 7)") && m.contains("chunk_size")),
            "{e:?}"
        );
    }

    #[test]
    fn auto_chunk_is_bounded() {
        assert_eq!(auto_chunk(5, 2), 1);
        assert_eq!(auto_chunk(100, 2), 13);
        assert_eq!(auto_chunk(10_000_000, 2), MAX_AUTO_CHUNK);
        assert_eq!(auto_chunk(0, 2), 1);
    }

    #[test]
    fn threads_map_keeps_order_and_every_outcome() {
        let p = pool();
        assert_eq!(
            p.map::<_, i64>("double", 0..1000i64).unwrap(),
            (0..1000).map(|x| 2 * x).collect::<Vec<_>>()
        );
        let r = p.map_async::<_, i64>("odd_fails", 0..10i64).unwrap();
        let outs = {
            r.wait(None);
            r.outcomes().unwrap()
        };
        assert_eq!(outs.iter().filter(|o| o.status == Status::Error).count(), 5);
        assert_eq!(
            r.get(None),
            Err(PoolError::Task {
                task: "odd_fails".into(),
                message: "1 is odd".into(),
                data: None
            })
        );
        p.join();
    }

    #[test]
    fn map_trusts_an_exact_length_only_as_far_as_it_is_true() {
        // Announces exactly `.1` items, yields what its range has.
        struct Announces(std::ops::Range<i64>, usize);
        impl Iterator for Announces {
            type Item = i64;
            fn next(&mut self) -> Option<i64> {
                self.0.next()
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                (self.1, Some(self.1))
            }
        }
        let p = pool();
        let twice: Vec<i64> = (0..10).map(|x| 2 * x).collect();
        assert_eq!(p.map::<_, i64>("double", Announces(0..10, 10)).unwrap(), twice);
        for announced in [5, 20] {
            let e = p.map::<_, i64>("double", Announces(0..10, announced)).unwrap_err();
            assert!(
                matches!(&e, PoolError::Encode(m) if m.contains(&format!("exactly {announced}"))),
                "{e:?}"
            );
        }
        // No exact length: collected first.
        let evens = (0..20i64).filter(|x| x % 2 == 0);
        assert_eq!(
            p.map::<_, i64>("double", evens).unwrap(),
            (0..10).map(|x| 4 * x).collect::<Vec<_>>()
        );
        p.join();
    }

    fn doubles(ids: std::ops::Range<u64>) -> impl Iterator<Item = Submission> {
        ids.map(|i| Submission { id: i, func: "double".into(), args: Payload::Json(i.to_string()) })
    }

    fn values(stream: RunStream) -> Vec<(u64, String)> {
        let mut got: Vec<(u64, String)> = stream
            .map(|o| match o.value {
                Some(Payload::Json(v)) => (o.id, v),
                other => panic!("{:?}: {other:?}", o.status),
            })
            .collect();
        got.sort();
        got
    }

    #[test]
    fn a_stream_of_made_submissions_delivers_every_one_fed_here_or_by_a_thread() {
        let p = pool();
        // Fewer than one round (fed before `run_stream_made` returns), exactly one
        // round, and more (the rest fed by a thread), with credits for fewer than that.
        for n in [1, 5, stream::FEED_BATCH as u64, 3 * stream::FEED_BATCH as u64 + 7] {
            let got = values(p.run_stream_made(doubles(0..n).collect()).unwrap());
            let want: Vec<(u64, String)> = (0..n).map(|i| (i, (2 * i).to_string())).collect();
            assert_eq!(got, want, "n = {n}");
        }
        let small = Pool::builder()
            .workers(1)
            .worker_kind(WorkerKind::Threads)
            .stream_capacity(3)
            .registry((*p.cfg.registry).clone())
            .build()
            .unwrap();
        assert_eq!(values(small.run_stream_made(doubles(0..10).collect()).unwrap()).len(), 10);
        small.join();
        p.join();
    }

    #[test]
    fn run_stream_pulls_a_lazy_iterator_on_its_own_thread_never_the_callers() {
        // Items the caller sends only after `run_stream` returned (a bounded iterator,
        // so its length is known): pulling them in `run_stream` would wait forever.
        let p = pool();
        let (tx, rx) = std::sync::mpsc::channel::<Submission>();
        let (returned_tx, returned) = std::sync::mpsc::channel();
        let got = std::thread::scope(|s| {
            let caller = s.spawn(|| {
                let stream = p.run_stream(rx.into_iter().take(3)).unwrap();
                let _ = returned_tx.send(());
                values(stream)
            });
            if returned.recv_timeout(Duration::from_secs(10)).is_err() {
                // Ends the iterator (and so a `run_stream` stuck pulling it) first.
                drop(tx);
                panic!("run_stream waited for items its caller had not sent yet");
            }
            for sub in doubles(0..3) {
                tx.send(sub).unwrap();
            }
            caller.join().unwrap()
        });
        assert_eq!(got, [(0, "0".into()), (1, "2".into()), (2, "4".into())]);
        p.join();
    }

    #[test]
    fn threads_timeout_is_reported_and_pool_goes_on() {
        let p = pool();
        let r = p.apply_async::<_, u64>("sleep_ms", 5_000u64).unwrap();
        assert!(matches!(r.get(Some(Duration::from_secs(5))), Err(PoolError::TaskTimeout { .. })));
        assert_eq!(p.apply::<_, u64>("sleep_ms", 1u64).unwrap(), 1);
    }

    #[test]
    fn a_task_error_kind_is_the_outcome_status_and_what_retry_on_sees() {
        let mut r = Registry::new();
        r.register("says", |kind: String| {
            Err::<(), _>(match kind.as_str() {
                "timeout" => TaskError::timed_out("timed out after 1s").with_data("{}"),
                "cancelled" => TaskError::cancelled("cancelled"),
                _ => TaskError::new("failed"),
            })
        });
        let run = |retry_on: RetryOn| {
            let p = Pool::builder()
                .workers(1)
                .worker_kind(WorkerKind::Threads)
                .registry(r.clone())
                .retries(2)
                .retry_on(retry_on)
                .build()
                .unwrap();
            let m = p.map_async::<_, ()>("says", ["error", "timeout", "cancelled"]).unwrap();
            m.wait(None);
            let outs = m.outcomes().unwrap();
            p.join();
            outs.into_iter().map(|o| (o.status, o.attempts, o.stopped_by_pool)).collect::<Vec<_>>()
        };
        let (e, t, c) = (Status::Error, Status::Timeout, Status::Cancelled);
        // A timeout the task reported is a timeout (not stopped by the pool), retried
        // only when `retry_on` names timeouts; a cancellation is never retried.
        assert_eq!(run(RetryOn::ALL), [(e, 3, false), (t, 3, false), (c, 1, false)]);
        assert_eq!(run(RetryOn::NONE.with_error()), [(e, 3, false), (t, 1, false), (c, 1, false)]);
        assert_eq!(
            run(RetryOn::NONE.with_timeout()),
            [(e, 1, false), (t, 3, false), (c, 1, false)]
        );
    }

    #[test]
    fn threads_timeout_is_stopped_by_the_pool() {
        let p = pool();
        let r = p.map_async::<_, u64>("sleep_ms", [5_000u64]).unwrap();
        r.wait(Some(Duration::from_secs(5)));
        let o = r.outcomes().unwrap().remove(0);
        assert_eq!((o.status, o.stopped_by_pool), (Status::Timeout, true), "{o:?}");
        p.join();
    }

    #[test]
    fn closed_pool_refuses_work() {
        let p = pool();
        p.close();
        assert!(matches!(p.apply_async::<_, i64>("double", 1i64), Err(PoolError::Closed)));
        p.join();
    }
}
