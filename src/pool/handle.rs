//! The parent's side of one worker: how it is started, told things, and taken down.
//!
//! Owns: [`Handle`] (a child process with its pidfd, command group and channel, or a
//! thread with its channel and stop flag), starting workers ([`launch_process`] and its
//! reader thread, [`spawn_thread`]), the handshake checks (protocol version, registry),
//! reading a worker's messages (results applied through the dispatcher's lock, the rest
//! reported as [`Event`]s), sending batches and
//! shutdowns, signalling a worker and its process groups, and reaping it (the OS calls
//! themselves are in `crate::process`).
//! Must not: decide anything: which task goes where, timeouts, retries, when a worker
//! is stopped or replaced. The dispatcher decides and calls these; the handle only
//! reports back (through the dispatcher's event channel, or its lock for results).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use super::dispatcher::{self, Event, Shared};
use super::protocol::{
    Batch, FromWorker, Init, PROTOCOL_VERSION, ResultBatch, Slot, ToWorker, WORKER_ARG,
};
use super::registry::TaskContext;
use super::result::WorkerExit;
use super::zygote::{self, Zygote};
use super::{Config, PoolError};
use crate::process;

/// How long a gone worker process may take to exit before it is SIGKILLed.
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// What the dispatcher sends a thread worker.
pub(crate) enum ThreadMsg {
    Batch(Batch),
    Shutdown,
}

/// One worker as the dispatcher holds it.
pub(crate) enum Handle {
    Process {
        child: Proc,
        /// A pidfd of the child (opened before anyone could reap it), to learn that it
        /// exited without `wait4`, whose global lock is slow to get while processes
        /// exit; `None` on kernels without pidfds.
        pidfd: Option<OwnedFd>,
        /// The process group the worker's commands join: its leader is a child of this
        /// process (see [`process::command_group_leader`]), ended after the worker; 0
        /// when the pool makes none (`Config::command_groups`).
        group: i32,
        /// The name of its handshake socket (an exec'd worker's; a forked one has none).
        server: Option<String>,
        tx: Option<IpcSender<ToWorker>>,
        /// Result messages its reader handed to the dispatcher thread that it has not
        /// applied yet (see [`dispatcher::results_from_reader`]).
        queued: Arc<AtomicUsize>,
    },
    Thread {
        tx: Sender<ThreadMsg>,
        stop: Arc<AtomicBool>,
        /// The process group the thread's commands join, as a process worker's do (its
        /// leader and guard are children of the dispatcher thread, which forked them, so
        /// the guard kills the group when the pool goes, even a SIGKILLed one); `None`
        /// when it could not be made: each command then gets a group of its own.
        group: Option<i32>,
    },
}

/// A process worker being started: its reader thread starts it and reports the result
/// as [`Event::Launched`], before any other event of the worker; the dispatcher then
/// makes its [`Handle`] with [`Launch::collect`].
pub(crate) struct Launch {
    pub index: u32,
    pub wid: u64,
    queued: Arc<AtomicUsize>,
}

/// A started worker process as its reader thread hands it over: the child, its pidfd,
/// its command group and its handshake socket's name (an exec'd worker's).
pub(crate) struct Launched {
    child: Proc,
    pidfd: Option<OwnedFd>,
    group: i32,
    server: Option<String>,
    /// Its shared slot, which names its command group (the reader sends it in `Init`).
    slot: Slot,
}

impl Launched {
    /// End it and its command group (the dispatcher is gone: nobody else will).
    pub(crate) fn discard(mut self) {
        self.child.kill();
        self.child.reap(self.pidfd.as_ref(), EXIT_WAIT);
        process::end_group_leader(self.group);
    }
}

/// A worker process: `exec`'d by this process (a [`Child`]), or forked by the zygote (a
/// child of the zygote, which reaps it when asked; see [`zygote`]).
pub(crate) enum Proc {
    Spawned(Child),
    Forked { pid: u32, zygote: &'static Zygote },
}

impl Proc {
    fn id(&self) -> u32 {
        match self {
            Proc::Spawned(c) => c.id(),
            Proc::Forked { pid, .. } => *pid,
        }
    }

    /// SIGKILL it (a forked worker, unreaped until [`Proc::reap`], keeps its pid).
    fn kill(&mut self) {
        match self {
            Proc::Spawned(c) => {
                let _ = c.kill();
            }
            Proc::Forked { pid, .. } => process::kill_process(*pid, libc::SIGKILL),
        }
    }

    /// Whether it exited (a forked worker always has a pidfd: see `launch_process`).
    fn has_exited(&mut self, pidfd: Option<&OwnedFd>) -> bool {
        match (self, pidfd) {
            (_, Some(fd)) => process::exited(fd, Duration::ZERO),
            (Proc::Spawned(c), None) => !matches!(c.try_wait(), Ok(None)),
            (Proc::Forked { .. }, None) => false,
        }
    }

    /// Reap it, giving it at most `timeout` to exit before it is SIGKILLed.
    fn reap(&mut self, pidfd: Option<&OwnedFd>, timeout: Duration) -> Option<ExitStatus> {
        match self {
            Proc::Spawned(c) => process::reap_within(c, pidfd, timeout),
            Proc::Forked { pid, zygote } => {
                process::wait_exit(*pid, pidfd, timeout);
                zygote.reap(*pid, timeout)
            }
        }
    }
}

/// Start the reader thread that creates the handshake socket and starts the worker.
///
/// Process workers start concurrently: each is started by its own reader thread (which
/// lives as long as the worker's channel, so the worker's parent-death signal, tied to
/// the spawning thread, only fires when the pool is really gone), from making its socket
/// to forking or spawning it, and reports it with [`Event::Launched`]: the dispatcher
/// goes on with its other events meanwhile (the first worker's handshake, its first
/// tasks), rather than waiting for each worker in turn. A worker the zygote forks is
/// asked for before its thread starts: the zygote forks it while the thread is made.
pub(crate) fn launch_process(
    cfg: &Arc<Config>,
    ev: &Sender<Event>,
    shared: &Weak<Shared>,
    wid: u64,
    index: u32,
) -> Result<Launch, PoolError> {
    let ev = ev.clone();
    let cfg = cfg.clone();
    let shared = shared.clone();
    let queued = Arc::new(AtomicUsize::new(0));
    let q = queued.clone();
    let asked = zygote::for_program(&cfg.program).and_then(|z| Asked::new(z, &cfg));
    std::thread::Builder::new()
        .name(format!("jobpool-reader-{index}"))
        .spawn(move || {
            let started = match asked.and_then(Asked::forked) {
                Some(forked) => Ok(forked),
                None => exec_worker(&cfg),
            };
            let (handshake, mut child, pidfd) = match started {
                Ok(started) => started,
                Err(error) => {
                    let _ = ev.send(Event::Launched { wid, result: Err(error) });
                    return;
                }
            };
            // The worker first, then its command group's leader, while the worker is
            // still loading: the worker starts no command before its `Init`, which is
            // sent after `collect` has the group.
            let leader = if cfg.command_groups { process::command_group_leader() } else { Ok(0) };
            let group = match leader {
                Ok(g) => g,
                Err(e) => {
                    child.kill();
                    child.reap(pidfd.as_ref(), EXIT_WAIT);
                    let error = format!("cannot create a process group: {e}");
                    let _ = ev.send(Event::Launched { wid, result: Err(error) });
                    return;
                }
            };
            let slot = Slot::shared();
            slot.set_group(group);
            let server = match &handshake {
                Handshake::Server(_, name) => Some(name.clone()),
                Handshake::Inherited(..) => None,
            };
            let launched = Launched { child, pidfd, group, server, slot: slot.clone() };
            let launched = Event::Launched { wid, result: Ok(launched) };
            if let Err(event) = dispatcher::event_from_reader(&shared, launched)
                && let Err(mpsc::SendError(Event::Launched { result: Ok(l), .. })) = ev.send(event)
            {
                l.discard();
                return;
            }
            reader(handshake, ev, &shared, &q, Hands { wid, index, slot }, cfg)
        })
        .map_err(|e| PoolError::Start(e.to_string()))?;
    Ok(Launch { index, wid, queued })
}

/// How a starting worker's reader gets its first message, and the channel after it.
enum Handshake {
    /// An exec'd worker connects to this socket (its name beside it).
    Server(IpcOneShotServer<FromWorker>, String),
    /// A forked worker inherited the sending end of this channel; its first message, if
    /// it came before the zygote's word.
    Inherited(IpcReceiver<FromWorker>, Option<FromWorker>),
}

/// Make a handshake socket and start the program again as a worker for it (`exec`).
fn exec_worker(cfg: &Config) -> Result<(Handshake, Proc, Option<OwnedFd>), String> {
    let (server, name) = IpcOneShotServer::<FromWorker>::new()
        .map_err(|e| format!("cannot create the handshake socket: {e}"))?;
    let child = spawn_worker(cfg, &name)
        .map_err(|e| format!("cannot run {}: {e}", cfg.program.display()))?;
    let pidfd = process::pidfd_open(child.id());
    Ok((Handshake::Server(server, name), Proc::Spawned(child), pidfd))
}

/// Start the program again as a worker for the handshake socket `server` (`exec`).
fn spawn_worker(cfg: &Config, server: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(&cfg.program);
    cmd.arg(WORKER_ARG).arg(server).stdin(Stdio::null()).process_group(0);
    if cfg.stdout_to_stderr
        && let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned()
    {
        cmd.stdout(Stdio::from(fd));
    }
    cmd.spawn()
}

/// A worker asked of the zygote, with the receiving end of the channel it was handed.
/// Dropped without [`Asked::forked`] (its reader thread could not start), the worker the
/// zygote forked is ended and reaped.
struct Asked {
    z: &'static Zygote,
    rx: Option<IpcReceiver<FromWorker>>,
}

impl Asked {
    /// Ask `z` for a worker; `None` when it cannot be asked (start it with `exec`).
    fn new(z: &'static Zygote, cfg: &Config) -> Option<Asked> {
        let (tx, rx) = ipc::channel::<FromWorker>().ok()?;
        z.spawn(tx, &cfg.context, cfg.stdout_to_stderr).ok()?;
        Some(Asked { z, rx: Some(rx) })
    }

    /// The worker the zygote forked, with its pidfd; `None` when it made none, or when
    /// it has no pidfd (without one the pool could not tell when a worker that is not
    /// its child exits): start it with `exec` then.
    fn forked(mut self) -> Option<(Handshake, Proc, Option<OwnedFd>)> {
        let rx = self.rx.take()?;
        let (pid, early) = zygote::forked(self.z, &rx)?;
        let mut child = Proc::Forked { pid, zygote: self.z };
        match process::pidfd_open(pid) {
            Some(fd) => Some((Handshake::Inherited(rx, early), child, Some(fd))),
            None => {
                child.kill();
                self.z.reap(pid, EXIT_WAIT);
                None
            }
        }
    }
}

impl Drop for Asked {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take()
            && let Some((pid, _)) = zygote::forked(self.z, &rx)
        {
            Proc::Forked { pid, zygote: self.z }.kill();
            self.z.reap(pid, EXIT_WAIT);
        }
    }
}

impl Launch {
    /// The worker's handle and its shared slot (which names the worker's command group),
    /// from what its reader reported.
    pub(crate) fn collect(self, launched: Launched) -> (Handle, Slot) {
        let Launched { child, pidfd, group, server, slot } = launched;
        let queued = self.queued;
        (Handle::Process { child, pidfd, group, server, tx: None, queued }, slot)
    }
}

/// Start a thread worker (`WorkerKind::Threads`); it is ready at once.
pub(crate) fn spawn_thread(
    cfg: &Arc<Config>,
    ev: &Sender<Event>,
    wid: u64,
    index: u32,
) -> Result<(Handle, Slot), PoolError> {
    let cfg = cfg.clone();
    let slot = Slot::local();
    let group = if cfg.command_groups { process::command_group_leader().ok() } else { None };
    if let Some(g) = group {
        slot.set_group(g);
    }
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
    let ev = ev.clone();
    let (s2, st2) = (slot.clone(), stop.clone());
    std::thread::Builder::new()
        .name(format!("jobpool-worker-{index}"))
        .spawn(move || thread_worker(cfg, ctx, s2, st2, trx, ev, wid))
        .map_err(|e| {
            if let Some(g) = group {
                process::end_group_leader(g);
            }
            PoolError::Start(e.to_string())
        })?;
    Ok((Handle::Thread { tx: ttx, stop, group }, slot))
}

impl Handle {
    pub(crate) fn is_thread(&self) -> bool {
        matches!(self, Handle::Thread { .. })
    }

    /// A thread worker's command group (see [`Handle::Thread`]).
    pub(crate) fn thread_group(&self) -> Option<i32> {
        match self {
            Handle::Thread { group, .. } => *group,
            Handle::Process { .. } => None,
        }
    }

    /// A process worker's pid.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Handle::Process { child, .. } => Some(child.id()),
            Handle::Thread { .. } => None,
        }
    }

    /// The worker finished its handshake (its reader sent it its `Init`): keep its
    /// channel.
    pub(crate) fn finish_handshake(&mut self, sender: IpcSender<ToWorker>) {
        if let Handle::Process { tx, .. } = self {
            *tx = Some(sender);
        }
    }

    /// The dispatcher thread applied a result message this worker's reader handed it.
    pub(crate) fn applied_queued(&self) {
        if let Handle::Process { queued, .. } = self {
            queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether a starting process worker already died.
    pub(crate) fn died_starting(&mut self) -> bool {
        match self {
            Handle::Process { child, pidfd, .. } => child.has_exited(pidfd.as_ref()),
            Handle::Thread { .. } => false,
        }
    }

    /// Give up on a starting process worker: kill it and unblock its reader's
    /// `accept()` or first `recv()`, which then reports `StartFailed`.
    pub(crate) fn abort_start(&mut self) {
        if let Handle::Process { child, server, .. } = self {
            child.kill();
            // A forked worker's reader hears of its end on its channel.
            if let Some(server) = server {
                let _ = IpcSender::<FromWorker>::connect(server.clone());
            }
        }
    }

    /// Set a thread worker's stop flag (what `TaskContext::should_stop` reads).
    pub(crate) fn stop_thread(&self) {
        if let Handle::Thread { stop, .. } = self {
            stop.store(true, Ordering::SeqCst);
        }
    }

    /// Send a batch; false when the worker cannot take it (it is dying).
    pub(crate) fn send_batch(&self, batch: Batch) -> bool {
        match self {
            Handle::Process { tx: Some(tx), .. } => tx.send(ToWorker::Batch(batch)).is_ok(),
            Handle::Process { tx: None, .. } => false,
            Handle::Thread { tx, .. } => tx.send(ThreadMsg::Batch(batch)).is_ok(),
        }
    }

    /// Tell the worker to finish and exit (a process with no channel yet is killed).
    pub(crate) fn send_shutdown(&self, slot: &Slot) {
        match self {
            Handle::Process { tx: Some(tx), .. } => {
                let _ = tx.send(ToWorker::Shutdown);
            }
            Handle::Process { tx: None, .. } => self.signal(slot, libc::SIGKILL),
            Handle::Thread { tx, .. } => {
                let _ = tx.send(ThreadMsg::Shutdown);
            }
        }
    }

    /// Signal a process worker and the process group it registered.
    pub(crate) fn signal(&self, slot: &Slot, sig: i32) {
        if let Handle::Process { child, group, .. } = self {
            // Our own child, its command group (whose leader is our unreaped child) and
            // the group it registered.
            process::kill_group(slot.pgid(), sig);
            process::kill_group(*group, sig);
            process::kill_process(child.id(), sig);
        }
    }

    /// Take down a gone worker process and every process it started, then reap it;
    /// returns how it ended. (A thread cannot be taken down: this only describes it.)
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
    pub(crate) fn take_down(&mut self, slot: &Slot) -> (String, Option<WorkerExit>) {
        let Handle::Process { child, pidfd, group, .. } = self else {
            return ("the worker thread stopped".into(), None);
        };
        process::wait_exit(child.id(), pidfd.as_ref(), EXIT_WAIT);
        process::kill_group(child.id() as i32, libc::SIGKILL);
        process::kill_group(*group, libc::SIGKILL);
        // The process group the worker registered.
        process::kill_group(slot.pgid(), libc::SIGKILL);
        let status = child.reap(pidfd.as_ref(), EXIT_WAIT);
        process::end_group_leader(*group);
        describe_exit(status)
    }
}

/// How a reaped worker process ended, in words and as data.
fn describe_exit(status: Option<std::process::ExitStatus>) -> (String, Option<WorkerExit>) {
    match status {
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => (
                format!(
                    "killed by signal {sig} ({})",
                    process::signal_name(sig).unwrap_or("signal")
                ),
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

/// What a reader needs to finish its worker's handshake: which worker it is, in which
/// slot of the pool, and its shared slot.
struct Hands {
    wid: u64,
    index: u32,
    slot: Slot,
}

/// A process worker's reader: finishes the handshake (checks the hello, sends the
/// `Init`), then applies the worker's results to the dispatcher's state itself
/// ([`dispatcher::results_from_reader`]) and reports the rest (ready, gone, broken) as
/// events. One reader per worker, reading in order: every result message the worker
/// sent is applied before its `Gone`.
fn reader(
    handshake: Handshake,
    ev: Sender<Event>,
    shared: &Weak<Shared>,
    queued: &AtomicUsize,
    hands: Hands,
    cfg: Arc<Config>,
) {
    let Hands { wid, index, slot } = hands;
    let program = || cfg.program.display().to_string();
    let (exec, shook) = match handshake {
        Handshake::Server(server, _) => (true, server.accept()),
        Handshake::Inherited(rx, Some(first)) => (false, Ok((rx, first))),
        Handshake::Inherited(rx, None) => (false, rx.recv().map(|first| (rx, first))),
    };
    let (rx, first) = match shook {
        Ok(x) => x,
        Err(e) => {
            // Only an exec'd worker runs the program's `main` before it serves.
            let error = PoolError::Start(if exec {
                format!(
                    "the worker died during the handshake ({e:?}); does {} call \
                     jobpool::pool::worker::run_if_worker(&registry) first thing in main?",
                    program()
                )
            } else {
                format!("the worker died during the handshake ({e:?})")
            });
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
            // Its `Init` from here, not from the dispatcher thread: the worker gets on
            // with its set-up while the dispatcher hears of it (one hand-over fewer
            // before its first task). One that died meanwhile is reported gone below.
            let init = Init {
                version: PROTOCOL_VERSION,
                worker: index,
                context: cfg.context.to_string(),
                task_timeout_ns: cfg.task_timeout.map(|d| d.as_nanos() as u64),
                grace_ns: cfg.grace_period.as_nanos() as u64,
                slot: slot.shm_for_worker().expect("process workers have shared slots"),
            };
            if tasks.send(ToWorker::Init(init)).is_ok()
                && let Err(event) =
                    dispatcher::event_from_reader(shared, Event::Ready { wid, sender: tasks })
            {
                let _ = ev.send(event);
            }
        }
        FromWorker::Hello { version, .. } => {
            return start_failed(PoolError::Start(format!(
                "protocol version mismatch: pool {PROTOCOL_VERSION}, worker {version}"
            )));
        }
        FromWorker::Refused { .. } => {
            return start_failed(PoolError::WorkerHookMissing { program: program() });
        }
        FromWorker::Results(_) | FromWorker::Forked { .. } => {
            return start_failed(PoolError::Start("protocol error: no hello".into()));
        }
    }
    loop {
        let why = match rx.recv() {
            Ok(FromWorker::Results(results)) => {
                match dispatcher::results_from_reader(shared, wid, results, queued) {
                    Ok(true) => {}
                    Ok(false) => return,
                    // The dispatcher's state is busy: its thread applies them, in order.
                    Err(results) => {
                        queued.fetch_add(1, Ordering::AcqRel);
                        if ev.send(Event::Results { wid, results }).is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            Ok(FromWorker::Hello { .. }) => "a second hello".to_string(),
            Ok(FromWorker::Refused { .. }) => "a refusal after its hello".to_string(),
            Ok(FromWorker::Forked { .. }) => "a message only the zygote sends".to_string(),
            Err(ipc_channel::IpcError::Disconnected) => {
                let _ = ev.send(Event::Gone { wid });
                return;
            }
            Err(e) => format!("a message the pool cannot read: {e}"),
        };
        // Nothing it sends from here on can be trusted: stop reading; the dispatcher
        // kills it and settles its tasks.
        let _ = ev.send(Event::Broken { wid, why });
        return;
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
    cfg.registry.worker_started(&ctx);
    let ev2 = ev.clone();
    let mut send = move |results: ResultBatch| ev2.send(Event::Results { wid, results }).is_ok();
    while let Ok(ThreadMsg::Batch(batch)) = rx.recv() {
        if !super::worker::run_batch(&cfg.registry, &ctx, &slot, &stop, batch, &mut send) {
            break;
        }
    }
    let _ = ev.send(Event::Gone { wid });
}
