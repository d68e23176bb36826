//! The worker side of the pool: the hook that turns a re-executed program into a
//! worker, the handshake, and the loop that runs batches (shared with the threads
//! backend).
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
    Batch, CODE_ERROR, CODE_OK, CODE_PANIC, CODE_SKIPPED, FromWorker, PROTOCOL_VERSION,
    ResultBatch, Slot, ToWorker, WORKER_ARG, now_ns,
};
use super::registry::{TaskContext, unknown_function};

/// Results of tasks faster than this are batched; slower ones are sent at once.
const FLUSH_AFTER: Duration = Duration::from_millis(1);

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
        std::process::exit(70);
    };
    let code = match serve(registry, name) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("jobpool worker: {e}");
            70
        }
    };
    std::process::exit(code);
}

fn serve(registry: &Registry, name: String) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    // A worker must not outlive its pool, even one that was SIGKILLed: the kernel then
    // sends us SIGTERM, which stops the running task like a TERM from the pool does.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    if unsafe { libc::getppid() } == 1 {
        return Ok(()); // the parent died before we could ask
    }
    let to_parent: IpcSender<FromWorker> =
        IpcSender::connect(name).map_err(|e| format!("cannot connect to the pool: {e}"))?;
    let (tx, rx) =
        ipc::channel::<ToWorker>().map_err(|e| format!("cannot create a channel: {e}"))?;
    to_parent
        .send(FromWorker::Hello { version: PROTOCOL_VERSION, pid: std::process::id(), tasks: tx })
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
    let mut send = |results: ResultBatch| to_parent.send(FromWorker::Results(results)).is_ok();
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
fn outlive_guard(stop: Arc<AtomicBool>, slot: Slot, grace: Duration) {
    let _ = std::thread::Builder::new().name("jobpool-worker-guard".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(grace + Duration::from_millis(500));
        let pgid = slot.pgid();
        if pgid > 0 {
            // SAFETY: kill(2) of the process group our task registered.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        // SAFETY: _exit ends the process without running destructors on other threads.
        unsafe { libc::_exit(70) };
    });
}

/// Run one batch in order, sending results through `send`. Returns false when the
/// worker must stop (stop flag set, or the parent is gone).
///
/// A result is sent at once when its task took longer than [`FLUSH_AFTER`] or when the
/// last send is older than that; results of faster tasks are batched. Only those
/// batched results can be lost if the worker dies, and their tasks are then run again.
pub(crate) fn run_batch(
    registry: &Registry,
    ctx: &TaskContext,
    slot: &Slot,
    stop: &AtomicBool,
    batch: Batch,
    send: &mut dyn FnMut(ResultBatch) -> bool,
) -> bool {
    let entry = registry.entry(&batch.func);
    let mut out = ResultBatch::with_capacity(batch.ends.len());
    let base_mono = mono_ns();
    let base_ns = now_ns();
    let flush_ns = FLUSH_AFTER.as_nanos() as u64;
    let mut last_flush = base_mono;
    // One clock reading per task: a task starts when the previous one ended.
    let mut t0 = base_mono;
    for (id, payload) in batch.tasks() {
        if stop.load(Ordering::Relaxed) {
            if !out.is_empty() {
                send(out);
            }
            return false;
        }
        if slot.should_skip(id) {
            out.push(id, CODE_SKIPPED, &[], None, 0, 0);
            continue;
        }
        let started_ns = base_ns + (t0 - base_mono);
        slot.set_running(id, started_ns);
        let mark = out.blob.0.len();
        let r = catch_unwind(AssertUnwindSafe(|| match entry {
            None => Err(unknown_function(&batch.func)),
            Some(e) if batch.json => match std::str::from_utf8(payload) {
                Ok(text) => (e.json)(ctx, text, &mut out.blob.0),
                Err(_) => Err(super::TaskError::new("arguments are not UTF-8 JSON text")),
            },
            Some(e) => (e.typed)(ctx, payload, &mut out.blob.0),
        }));
        let t1 = mono_ns();
        if stop.load(Ordering::Relaxed) {
            // The pool stopped this task (timeout or cancel): it reports it; exit.
            slot.clear_running();
            out.blob.0.truncate(mark);
            if !out.is_empty() {
                send(out);
            }
            return false;
        }
        slot.clear_running();
        let took = t1.saturating_sub(t0);
        match r {
            Ok(Ok(())) => out.push_written(id, CODE_OK, started_ns, took),
            Ok(Err(e)) => {
                out.blob.0.truncate(mark);
                out.push(id, CODE_ERROR, e.message.as_bytes(), e.data, started_ns, took)
            }
            Err(p) => {
                out.blob.0.truncate(mark);
                out.push(id, CODE_PANIC, panic_message(&*p).as_bytes(), None, started_ns, took)
            }
        }
        if took >= flush_ns || t1.saturating_sub(last_flush) >= flush_ns {
            let left = batch.ends.len() - (id - batch.base) as usize - 1;
            if !send(std::mem::replace(&mut out, ResultBatch::with_capacity(left))) {
                return false;
            }
            last_flush = t1;
        }
        t0 = t1;
    }
    out.is_empty() || send(out)
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
