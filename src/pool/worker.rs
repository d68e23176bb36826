//! The worker side of the pool: the hook that turns a re-executed program into a
//! worker, the handshake, and the loop that runs batches (shared with thread
//! workers).
//!
//! Owns: `run_if_worker`, the batch loop, result flushing. Must not: decide retries,
//! timeouts or order (the dispatcher does).

use std::ffi::OsStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_channel::ipc::{self, IpcSender};

use super::Registry;
use super::protocol::{
    Batch, CODE_OK, CODE_PANIC, CODE_SKIPPED, CODE_STOLEN, FromWorker, LogCursor, LogEntry,
    PROTOCOL_VERSION, ResultBatch, Slot, SlotView, ToWorker, WORKER_ARG, error_code, now_ns,
};
use super::registry::{TaskContext, unknown_function};

/// Set once `run_if_worker` serves in this process: a pool built by one of its tasks is
/// a nested pool, not a program that forgot the hook.
static SERVING: AtomicBool = AtomicBool::new(false);

/// Whether this process is a pool's process worker (it serves, and never returns to its
/// program's `main`): what it does to itself (its working folder, say) touches no one
/// else's threads.
pub(crate) fn is_process_worker() -> bool {
    SERVING.load(Ordering::Relaxed)
}

/// The exit code of a worker that failed (bad handshake, refused).
const EXIT_WORKER_FAILED: i32 = 70;

/// Results of tasks faster than this are batched; slower ones are sent at once.
const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// Batched results go out once the last send is this old (or the batch ends). A result
/// message wakes a reader thread in the pool (10–20 µs of its CPU on a busy machine):
/// 2,000 commands of 0.3–0.7 ms on 2 workers send a fifth as many messages as at 1 ms.
const HOLD: Duration = Duration::from_millis(5);

/// Turn this process into a worker and never return, when it was started as one
/// (`argv[1]` is `__jobpool-worker`); otherwise return at once.
///
/// Call it first thing in `main` of every program that creates a process pool, with the
/// registry holding the functions the pool will call (`jobpool::cli::main_with` does).
pub fn run_if_worker(registry: &Registry) {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(OsStr::new(WORKER_ARG)) {
        return;
    }
    let Some(name) = args.next().and_then(|n| n.into_string().ok()) else {
        eprintln!("jobpool worker: missing server name");
        std::process::exit(EXIT_WORKER_FAILED);
    };
    serve_and_exit(registry, ToPool::Connect(name), None)
}

/// A worker forked by the zygote (`super::zygote`), whose parent is `zygote`, with its
/// channel to the pool: serve as an exec'd worker does, then exit.
pub(crate) fn serve_forked(registry: &Registry, to_pool: IpcSender<FromWorker>, zygote: i32) -> ! {
    serve_and_exit(registry, ToPool::Given(to_pool), Some(zygote))
}

/// How a worker reaches its pool.
enum ToPool {
    /// Connect to the pool's handshake socket of this name (an exec'd worker).
    Connect(String),
    /// This channel, inherited (a forked worker).
    Given(IpcSender<FromWorker>),
}

fn serve_and_exit(registry: &Registry, to_pool: ToPool, parent: Option<i32>) -> ! {
    SERVING.store(true, Ordering::SeqCst);
    let code = match serve(registry, to_pool, parent) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("jobpool worker: {e}");
            EXIT_WORKER_FAILED
        }
    };
    std::process::exit(code);
}

/// Called by `Pool::build`: in a process started as a worker whose program did not call
/// [`run_if_worker`] (it would never have returned), tell the pool why, and exit at once
/// instead of starting workers of its own (each of which would do the same, without end).
pub(crate) fn refuse_if_unhooked() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(OsStr::new(WORKER_ARG)) || SERVING.load(Ordering::SeqCst) {
        return;
    }
    eprintln!(
        "jobpool worker: this program was started as a pool worker but reached Pool::build; \
         call jobpool::pool::worker::run_if_worker(&registry) first thing in main"
    );
    if let Some(name) = args.next().and_then(|n| n.into_string().ok())
        && let Ok(to_parent) = IpcSender::<FromWorker>::connect(name)
    {
        let _ = to_parent.send(FromWorker::Refused { pid: std::process::id() });
    }
    std::process::exit(EXIT_WORKER_FAILED);
}

/// `parent`: the parent a forked worker must still have (an exec'd worker only checks
/// that it was not orphaned).
fn serve(registry: &Registry, to_pool: ToPool, parent: Option<i32>) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    // A worker must not outlive its pool, even one that was SIGKILLed: the kernel then
    // sends us SIGTERM, which stops the running task like a TERM from the pool does.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    if ppid == 1 || parent.is_some_and(|p| p != ppid) {
        return Ok(()); // the parent died before we could ask
    }
    let to_parent: IpcSender<FromWorker> = match to_pool {
        ToPool::Connect(name) => {
            IpcSender::connect(name).map_err(|e| format!("cannot connect to the pool: {e}"))?
        }
        ToPool::Given(sender) => sender,
    };
    let (tx, rx) =
        ipc::channel::<ToWorker>().map_err(|e| format!("cannot create a channel: {e}"))?;
    // A test-only worker that breaks the protocol on purpose (debug builds only).
    #[cfg(debug_assertions)]
    let mut abuse = super::abuse::Abuse::from_env();
    #[cfg(debug_assertions)]
    let version = abuse.as_ref().map_or(PROTOCOL_VERSION, |a| a.hello_version());
    #[cfg(not(debug_assertions))]
    let version = PROTOCOL_VERSION;
    to_parent
        .send(FromWorker::Hello {
            version,
            pid: std::process::id(),
            tasks: tx,
            kinds: registry.signatures(),
        })
        .map_err(|e| format!("cannot send hello: {e:?}"))?;
    let init = match rx.recv() {
        Ok(ToWorker::Init(init)) => init,
        Ok(_) => return Err("protocol error: expected init".into()),
        Err(_) => return Ok(()), // the pool went away during the handshake
    };
    if init.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: pool {}, worker {PROTOCOL_VERSION}",
            init.version
        ));
    }
    let slot = Slot::from_shm(init.slot);
    let grace = Duration::from_nanos(init.grace_ns);
    outlive_guard(stop.clone(), slot.clone(), grace);
    let ctx = TaskContext::new(
        Arc::from(init.context),
        init.task_timeout_ns.map(Duration::from_nanos),
        Duration::from_nanos(init.grace_ns),
        init.worker,
        stop.clone(),
        slot.clone(),
    );
    registry.worker_started(&ctx);
    // Mutated only by the test-only worker (debug builds).
    #[cfg_attr(not(debug_assertions), allow(unused_mut))]
    let mut to_parent = Some(to_parent);
    let mut send = |results: ResultBatch| {
        #[cfg(debug_assertions)]
        if let Some(a) = abuse.as_mut() {
            return a.send(&mut to_parent, &slot, results);
        }
        to_parent.as_ref().is_some_and(|t| t.send(FromWorker::Results(results)).is_ok())
    };
    loop {
        match rx.recv() {
            Ok(ToWorker::Batch(batch)) => {
                if !run_batch(registry, &ctx, &slot, &stop, batch, &mut send) {
                    return Ok(());
                }
            }
            Ok(ToWorker::Init(_)) => {}
            Ok(ToWorker::Shutdown) | Err(_) => return Ok(()),
        }
    }
}

/// Once the worker was told to stop (SIGTERM: from the pool, or from the kernel when the
/// pool died), give the running task the grace period to stop by itself, then kill the
/// process group it registered and exit, so that no task outlives a dead pool.
///
/// The guard sleeps in a blocking read of a socket the SIGTERM handler writes to: no
/// polling, no wakeups while tasks run.
fn outlive_guard(stop: Arc<AtomicBool>, slot: Slot, grace: Duration) {
    use std::io::Read;
    let Ok((mut rx, tx)) = std::os::unix::net::UnixStream::pair() else { return };
    if signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, tx).is_err() {
        return;
    }
    let _ = std::thread::Builder::new().name("jobpool-worker-guard".into()).spawn(move || {
        // Signals are for the other threads (the SIGTERM handler writes to our socket):
        // a SIGCHLD per finished command must not keep waking this one.
        // SAFETY: changes only this thread's signal mask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        let mut byte = [0u8; 1];
        while !stop.load(Ordering::SeqCst) {
            match rx.read(&mut byte) {
                Ok(0) => return, // the handler is gone: nothing will ever wake us
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        std::thread::sleep(grace + Duration::from_millis(500));
        // Our command group, and one our task registered.
        for pgid in [slot.pgid(), slot.group().unwrap_or(0)] {
            crate::process::kill_group(pgid, libc::SIGKILL);
        }
        // SAFETY: _exit ends the process without running destructors on other threads.
        unsafe { libc::_exit(70) };
    });
}

/// Run one batch in order, sending results through `send`. Returns false when the
/// worker must stop (stop flag set, or the parent is gone).
///
/// A result is sent at once when its task took 1 ms ([`FLUSH_AFTER`]) or more (alone,
/// so that its timing is exact), or when the last send is older than [`HOLD`]; results
/// of faster tasks are batched. Every result is committed to the slot's log before the next
/// task starts (or, if it does not fit there, sent first), so none is lost when the
/// worker dies holding a batch: the pool reads the log of a dead worker (see
/// [`SlotView::log_push`]).
///
/// The clock (≈ 45 ns a read here, more than a trivial task) is read after every task
/// while tasks are slow, and only every `stride` tasks (up to [`MAX_STRIDE`]) while a
/// run of them took under [`FAST_STRETCH`]: a task's start in the shared slot (for
/// timeouts) is then the last reading, at most a few microseconds early.
pub(crate) fn run_batch(
    registry: &Registry,
    ctx: &TaskContext,
    slot: &Slot,
    stop: &AtomicBool,
    batch: Batch,
    send: &mut dyn FnMut(ResultBatch) -> bool,
) -> bool {
    let entry = registry.entry(&batch.func);
    let base_mono = mono_ns();
    let view = slot.view();
    let mut o = Out {
        out: ResultBatch::with_capacity(batch.base, batch.len()),
        msg_start: base_mono,
        t_read: base_mono,
        last_flush: base_mono,
        since: 0,
        mark: 0,
        stride: 1,
        base_mono,
        base_ns: now_ns(),
        slot: view,
        log: LogCursor::default(),
        send,
    };
    let end = batch.base + batch.len() as u64;
    // Tasks with id < `claimed` may start without looking for a steal again: claiming
    // costs a full barrier, so fast tasks claim a stride at a time (see `SlotView::claim`).
    let mut claimed = 0u64;
    for (id, payload) in batch.tasks() {
        if stop.load(Ordering::Acquire) {
            o.finish();
            return false;
        }
        if o.out.is_empty() {
            o.out.base = id;
        }
        let mark = o.out.blob.0.len();
        if view.should_skip(id) {
            o.out.push(id, CODE_SKIPPED, &[], None);
            if !o.commit(id, mark, CODE_SKIPPED) {
                return false;
            }
            continue;
        }
        let taken_back = if id >= claimed {
            claimed = (id + o.stride as u64).min(end);
            view.claim(id, claimed)
        } else {
            view.stolen(id)
        };
        if taken_back {
            // The pool gave it to another worker: report it as not started.
            o.out.push(id, CODE_STOLEN, &[], None);
            if !o.commit(id, mark, CODE_STOLEN) {
                return false;
            }
            continue;
        }
        view.set_running(id, o.wall(o.t_read));
        let r = catch_unwind(AssertUnwindSafe(|| match entry {
            None => Err(Box::new(unknown_function(&batch.func))),
            Some(e) if batch.json => match std::str::from_utf8(payload) {
                Ok(text) => (e.json)(ctx, text, &mut o.out.blob.0),
                Err(_) => Err(Box::new(super::TaskError::new("arguments are not UTF-8 JSON text"))),
            },
            Some(e) => (e.typed)(ctx, payload, &mut o.out.blob.0),
        }));
        if stop.load(Ordering::Acquire) {
            // The pool stopped this task (timeout or cancel): it reports it; exit.
            view.clear_running();
            o.out.blob.0.truncate(mark);
            o.finish();
            return false;
        }
        let code = match r {
            Ok(Ok(())) => {
                o.out.push_written(CODE_OK);
                CODE_OK
            }
            Ok(Err(e)) => {
                o.out.blob.0.truncate(mark);
                let e = *e;
                let code = error_code(e.kind);
                o.out.push(id, code, e.message.as_bytes(), e.data);
                code
            }
            Err(p) => {
                o.out.blob.0.truncate(mark);
                o.out.push(id, CODE_PANIC, panic_message(&*p).as_bytes(), None);
                CODE_PANIC
            }
        };
        // Committed (or sent) before the task counts as ended: a worker that dies from
        // here on leaves its result to the pool.
        let sent = o.commit(id, mark, code);
        view.clear_running();
        if !sent {
            return false;
        }
        o.since += 1;
        if o.since >= o.stride && !o.checkpoint() {
            return false;
        }
    }
    o.checkpoint() && o.send_and_reset(o.t_read)
}

/// The largest number of tasks run between two clock readings.
const MAX_STRIDE: usize = 64;
/// A stretch of tasks faster than this lets the stride grow.
const FAST_STRETCH: u64 = 10_000;
/// A stretch slower than this resets the stride to 1.
const SLOW_STRETCH: u64 = 50_000;

/// The results being gathered for the next message, and the clock bookkeeping.
struct Out<'a> {
    out: ResultBatch,
    /// When the first task of `out` started (monotonic ns).
    msg_start: u64,
    /// The last clock reading, taken when the task after it started.
    t_read: u64,
    last_flush: u64,
    /// Tasks run since `t_read`.
    since: usize,
    /// Results in `out` at `t_read`.
    mark: usize,
    stride: usize,
    base_mono: u64,
    base_ns: u64,
    slot: SlotView<'a>,
    /// Where the next result goes in the slot's log (mirrors `out`).
    log: LogCursor,
    send: &'a mut dyn FnMut(ResultBatch) -> bool,
}

impl Out<'_> {
    fn wall(&self, mono: u64) -> u64 {
        self.base_ns + mono.saturating_sub(self.base_mono)
    }

    /// Commit the result just pushed for task `id` (its payload from `mark` on in the
    /// blob, its code `code`) to the slot's log; when it does not fit, send everything
    /// gathered now instead. False when the parent is gone.
    #[inline(always)]
    fn commit(&mut self, id: u64, mark: usize, code: u8) -> bool {
        let payload = &self.out.blob.0[mark..];
        let data = match self.out.data.last() {
            Some((d, text)) if code != CODE_OK && *d == id => text.as_bytes(),
            _ => &[],
        };
        let span = (self.wall(self.msg_start), self.wall(self.t_read));
        if self.slot.log_push(&mut self.log, LogEntry { id, code, payload, data, span }) {
            return true;
        }
        self.log_full()
    }

    /// The log is full: send everything gathered (then the log is empty again).
    #[cold]
    #[inline(never)]
    fn log_full(&mut self) -> bool {
        let ok = self.send_out(mono_ns());
        self.slot.log_reset(&mut self.log);
        self.mark = 0;
        ok
    }

    /// Send what was gathered, its span ending at `until`.
    fn send_out(&mut self, until: u64) -> bool {
        if self.out.is_empty() {
            self.msg_start = until;
            return true;
        }
        let cap = self.out.len();
        let mut b = std::mem::replace(&mut self.out, ResultBatch::with_capacity(0, cap));
        b.started_ns = self.wall(self.msg_start);
        b.duration_ns = until.saturating_sub(self.msg_start);
        self.msg_start = until;
        self.last_flush = until;
        (self.send)(b)
    }

    /// [`send_out`](Self::send_out), then empty the log: its results are in the
    /// channel now, ahead of the channel's close if the worker dies.
    fn send_and_reset(&mut self, until: u64) -> bool {
        let ok = self.send_out(until);
        self.slot.log_reset(&mut self.log);
        ok
    }

    /// Read the clock (when tasks ran since the last reading) and send when due.
    fn checkpoint(&mut self) -> bool {
        if self.since == 0 {
            return true;
        }
        let t1 = mono_ns();
        let dt = t1.saturating_sub(self.t_read);
        let flush = FLUSH_AFTER.as_nanos() as u64;
        let ok = if dt >= flush {
            self.stride = 1;
            let stretch = self.out.len() - self.mark;
            if self.mark > 0 && stretch > 0 {
                // The results since the last reading (one slow task, when the stride is
                // 1) travel alone, with their own timing.
                let mut last = self.out.split_off_last(stretch);
                let ok = self.send_out(self.t_read);
                last.started_ns = self.wall(self.t_read);
                last.duration_ns = dt;
                self.msg_start = t1;
                self.last_flush = t1;
                let ok = ok && (self.send)(last);
                self.slot.log_reset(&mut self.log);
                ok
            } else {
                self.send_and_reset(t1)
            }
        } else {
            if dt < FAST_STRETCH {
                self.stride = (self.stride * 2).min(MAX_STRIDE);
            } else if dt >= SLOW_STRETCH {
                self.stride = 1;
            }
            let hold = HOLD.as_nanos() as u64;
            if t1.saturating_sub(self.last_flush) >= hold { self.send_and_reset(t1) } else { true }
        };
        self.t_read = t1;
        self.since = 0;
        self.mark = self.out.len();
        ok
    }

    /// Send what was gathered before stopping. The log is left as it is: a pool that
    /// already gave up on this worker (thread workers) may be reading it.
    fn finish(&mut self) {
        let t1 = mono_ns();
        self.send_out(t1);
    }
}

/// Monotonic time in ns (one vDSO call, no `Instant` arithmetic).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let msg = if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    };
    format!("task panicked: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::protocol::{Blob, CODE_ERROR, encode_into};

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register("inc", |x: i64| Ok::<_, super::super::TaskError>(x + 1));
        r.register("nap", |ms: i64| {
            if ms < 0 {
                return Err(format!("{ms} is negative"));
            }
            std::thread::sleep(Duration::from_millis(ms as u64));
            Ok(ms)
        });
        r.register("nap_us", |us: i64| {
            std::thread::sleep(Duration::from_micros(us as u64));
            Ok::<_, super::super::TaskError>(us)
        });
        r
    }

    fn batch(func: &str, base: u64, args: &[i64]) -> Batch {
        let mut b = Batch {
            func: func.into(),
            json: false,
            base,
            blob: Blob::default(),
            ends: Blob::default(),
        };
        for a in args {
            encode_into(a, &mut b.blob.0).unwrap();
            b.push_end();
        }
        b
    }

    fn run(b: Batch) -> Vec<ResultBatch> {
        let r = registry();
        let ctx = TaskContext::detached("");
        let slot = Slot::local();
        let stop = AtomicBool::new(false);
        let mut msgs = Vec::new();
        let mut send = |m: ResultBatch| {
            msgs.push(m);
            true
        };
        assert!(run_batch(&r, &ctx, &slot, &stop, b, &mut send));
        assert_eq!(slot.running(), None);
        msgs
    }

    #[test]
    fn fast_tasks_share_one_message_with_no_per_item_metadata() {
        let args: Vec<i64> = (0..1000).collect();
        let msgs = run(batch("inc", 7, &args));
        let total: usize = msgs.iter().map(ResultBatch::len).sum();
        assert_eq!(total, 1000);
        assert_eq!(msgs[0].base, 7);
        let mut next = 7;
        for m in &msgs {
            assert_eq!(m.base, next);
            next += m.len() as u64;
            assert!(m.all_ok() && m.data.is_empty());
            let mut start = 0;
            for k in 0..m.len() {
                let end = m.end(k) as usize;
                let v: i64 = postcard::from_bytes(&m.blob.0[start..end]).unwrap();
                assert_eq!(v, (m.base - 7 + k as u64) as i64 + 1);
                start = end;
            }
        }
    }

    #[test]
    fn a_slow_task_travels_alone_with_its_own_timing_and_failures_per_item() {
        // A slow task first (the stride is 1: it is alone, timed exactly), then 20 fast
        // ones (the stride grows), a slow one, more fast ones, an error, fast again.
        let mut args = vec![12i64];
        args.extend([0i64; 20]);
        args.push(15);
        args.extend([0, 0, -1, 0]);
        let msgs = run(batch("nap", 0, &args));
        assert_eq!(msgs.iter().map(ResultBatch::len).sum::<usize>(), 26);
        let holding = |id: u64| {
            let v: Vec<_> =
                msgs.iter().filter(|m| m.base <= id && id < m.base + m.len() as u64).collect();
            assert_eq!(v.len(), 1);
            v[0]
        };
        let first = holding(0);
        assert_eq!(first.len(), 1, "the slow task is alone");
        assert!(first.duration_ns >= 12_000_000, "{}", first.duration_ns);
        // The second slow task came after fast ones, within a clock stretch: it travels
        // with at most that stretch, and the fast tasks before are not charged for it.
        let m = holding(21);
        assert!(m.len() <= MAX_STRIDE && m.duration_ns >= 15_000_000, "{m:?}");
        let fast: u64 =
            msgs.iter().filter(|x| x.base > 0 && x.base < m.base).map(|x| x.duration_ns).sum();
        assert!(fast < 12_000_000, "fast tasks are not charged the slow one: {fast}");
        let err = holding(24);
        assert!(!err.all_ok());
        let k = (24 - err.base) as usize;
        assert_eq!(err.code(k), CODE_ERROR);
        assert!((0..err.len()).all(|i| i == k || err.code(i) == CODE_OK));
        let start = if k == 0 { 0 } else { err.end(k - 1) as usize };
        assert_eq!(&err.blob.0[start..err.end(k) as usize], b"-1 is negative");
    }

    /// Results of tasks under [`FLUSH_AFTER`] wait for each other until the last send is
    /// [`HOLD`] old, several tasks' worth; only a slow task (alone) or the batch's end
    /// sends sooner.
    #[test]
    fn quick_results_are_held_until_the_last_send_is_hold_old() {
        let args = vec![300i64; 40]; // 12 ms or more in all
        let msgs = run(batch("nap_us", 0, &args));
        assert_eq!(msgs.iter().map(ResultBatch::len).sum::<usize>(), 40);
        let slow = |m: &ResultBatch| m.len() == 1 && m.duration_ns >= FLUSH_AFTER.as_nanos() as u64;
        for (i, m) in msgs.iter().enumerate().take(msgs.len() - 1) {
            if slow(m) || msgs.get(i + 1).is_some_and(slow) {
                continue; // a slow task, or what was gathered before it
            }
            // Held: every task under 1 ms, the message 5 ms or more after the last.
            assert!(
                m.duration_ns >= HOLD.as_nanos() as u64 && m.len() >= 5,
                "message {i} of {}: {} results after {} ns",
                msgs.len(),
                m.len(),
                m.duration_ns
            );
        }
    }

    #[test]
    fn split_off_last_keeps_codes_and_data() {
        let mut b = ResultBatch::with_capacity(5, 3);
        b.push(5, CODE_OK, b"a", None);
        b.push(6, CODE_ERROR, b"bb", Some("{}".into()));
        b.push(7, CODE_OK, b"ccc", None);
        let last = b.split_off_last(2);
        assert_eq!(
            (b.len(), b.all_ok(), b.data.len(), b.blob.0.as_slice()),
            (1, true, 0, &b"a"[..])
        );
        assert_eq!(
            (last.base, last.len(), last.code(0), last.code(1)),
            (6, 2, CODE_ERROR, CODE_OK)
        );
        assert_eq!((last.blob.0.as_slice(), last.end(0), last.end(1)), (&b"bbccc"[..], 2, 5));
        assert_eq!(last.data, vec![(6, "{}".to_string())]);
    }
}
