//! The local backend: the pool's worker processes (or threads) on this machine.
//!
//! Owns: turning a job into pool settings, submissions into pool payloads (built-in
//! kinds get the JSON array of their values, registered kinds a JSON object by name),
//! and pool outcomes back into records (a command's exit code, signal, stderr).
//! Must not: apply run policies (resume, on-failure, deadline): the runner does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{Backend, BackendError, BackendEvent, Execution, ExecutionControl, StartRequest};
use crate::model::{self, ChunkSize, Job, OnFailure, TaskTemplate, args_map};
use crate::pool::{self, Outcome, Payload, Pool, Registry, RunControl, RunStream};
use crate::record::{Args, Status, TaskRecord};
use crate::task::{self, BuiltinContext};

/// Submissions handed to the pool, by index: their key and arguments.
type Inflight = rustc_hash::FxHashMap<u64, (crate::plan::Key, Vec<Value>)>;

/// The process or thread pool of this machine, with the task kinds of `registry`.
pub struct LocalBackend {
    registry: Registry,
    /// A pool being started ahead of its run by [`LocalBackend::prestart`].
    warm: Mutex<Option<Warm>>,
    /// The address of the job whose execution, once joined, ends this process's worker
    /// zygote ([`LocalBackend::last_job`]).
    last_job: std::sync::atomic::AtomicUsize,
    /// Whether the last start took the prestarted pool (for the tests).
    #[cfg(test)]
    took_warm: std::sync::atomic::AtomicBool,
}

/// A pool started ahead of its run: the address of the job it was started for (the same
/// loaded job, not only the same file), the worker count, and the pool, starting.
struct Warm {
    job: usize,
    workers: usize,
    pool: Result<pool::StartingPool, BackendError>,
}

impl Warm {
    /// The pool, once one worker is ready.
    fn take_pool(self) -> Result<Pool, BackendError> {
        self.pool.and_then(|p| p.wait().map_err(start_error))
    }
}

impl LocalBackend {
    /// A backend running the kinds of `registry`.
    pub fn new(registry: Registry) -> LocalBackend {
        LocalBackend {
            registry,
            warm: Mutex::new(None),
            last_job: Default::default(),
            #[cfg(test)]
            took_warm: Default::default(),
        }
    }

    /// Start the pool of `job` with `workers` now, without waiting for it, for the next
    /// [`Backend::start`] of the same `job` (the same value) with the same worker count
    /// to take: the workers then load while the caller prepares the run (its run folder,
    /// its sinks) instead of after. That start reports the pool's start error, if any.
    /// A start with other settings builds its own pool and this one is dropped (its
    /// workers stopped).
    pub fn prestart(&self, job: &Job, workers: usize) {
        let pool =
            builder_for(&self.registry, job, workers).and_then(|b| b.start().map_err(start_error));
        let warm = Warm { job: std::ptr::from_ref(job) as usize, workers, pool };
        let old = self.warm.lock().unwrap_or_else(|e| e.into_inner()).replace(warm);
        drop(old.map(Warm::take_pool));
    }

    /// Stop a pool [`LocalBackend::prestart`] started that no run took.
    pub fn discard_prestarted(&self) {
        if let Some(old) = self.warm.lock().unwrap_or_else(|e| e.into_inner()).take() {
            drop(old.take_pool());
        }
    }

    /// Say that `job` is the last this process runs: once its execution is joined (its
    /// workers gone), the worker zygote ends too, while the run's files are made durable,
    /// rather than after ([`crate::pool::zygote::release`]).
    pub fn last_job(&self, job: &Job) {
        self.last_job.store(std::ptr::from_ref(job) as usize, std::sync::atomic::Ordering::Relaxed);
    }
}

fn start_error(e: pool::PoolError) -> BackendError {
    BackendError::new(format!("cannot start the workers: {e}"))
}

/// The settings of the pool that runs `job` on `workers` workers.
fn builder_for(
    registry: &Registry,
    job: &Job,
    workers: usize,
) -> Result<pool::PoolBuilder, BackendError> {
    let builtin = is_builtin(&job.task);
    let context = serde_json::to_string(&BuiltinContext::new(job))
        .map_err(|e| BackendError::new(format!("cannot encode the task: {e}")))?;
    let mut builder = Pool::builder()
        .workers(workers)
        .retries(job.limits.retries)
        .retry_on(pool::RetryOn::of(
            Status::ALL
                .into_iter()
                .filter(|s| s.failure().is_some_and(|f| job.limits.retry_on.contains(f))),
        ))
        .grace_period(job.limits.grace_period)
        .max_tasks_per_worker(job.max_tasks_per_worker.try_into().unwrap_or(usize::MAX))
        .context(context)
        // Stdout carries the records; whatever a task prints there goes to stderr.
        .worker_stdout_to_stderr(true)
        // A script cannot start a process (Rhai has no such function): its workers need
        // no command group.
        .command_groups(!matches!(job.task, TaskTemplate::Script(_)))
        .registry(registry.clone())
        .worker_kind(match job.backend {
            model::Backend::Threads => pool::WorkerKind::Threads,
            _ => pool::WorkerKind::Processes,
        });
    if let ChunkSize::Fixed(n) = job.chunk_size {
        builder = builder.chunk_size(n.get());
    }
    if let Some(t) = job.limits.task_timeout {
        // The built-in kinds stop themselves at the task timeout (killing a command's
        // whole group, keeping its stderr), so their worker survives; the pool's own
        // limit is the backstop for a task that does not.
        let backstop =
            if builtin { t + job.limits.grace_period + Duration::from_secs(2) } else { t };
        builder = builder.task_timeout(backstop);
    }
    Ok(builder)
}

fn is_builtin(task: &TaskTemplate) -> bool {
    matches!(task, TaskTemplate::Command(_) | TaskTemplate::Script(_))
}

impl Backend for LocalBackend {
    fn name(&self, job: &Job) -> String {
        format!("{:?}", job.backend).to_lowercase()
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Box<dyn Execution>, BackendError> {
        let job = request.job;
        let builtin = is_builtin(&job.task);
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner()).take();
        let this_job = std::ptr::from_ref(job) as usize;
        #[cfg(test)]
        self.took_warm.store(false, std::sync::atomic::Ordering::Relaxed);
        let starting = match warm {
            Some(w) if w.job == this_job && w.workers == request.workers => {
                #[cfg(test)]
                self.took_warm.store(true, std::sync::atomic::Ordering::Relaxed);
                w.pool?
            }
            other => {
                drop(other.map(Warm::take_pool));
                builder_for(&self.registry, job, request.workers)?.start().map_err(start_error)?
            }
        };
        let last = self.last_job.load(std::sync::atomic::Ordering::Relaxed) == this_job;

        let names: Arc<[String]> = job.args.names.clone().into();
        let func: Arc<str> = job.task.kind().into();
        let inflight: Arc<Mutex<Inflight>> = Default::default();
        let feed = {
            let (inflight, names) = (inflight.clone(), names.clone());
            request.work.map(move |sub| {
                let payload = if builtin {
                    // The JSON array of the values, without copying them into a `Value`.
                    serde_json::to_string(&sub.args).expect("JSON values serialise")
                } else {
                    Value::Object(args_map(&names, &sub.args)).to_string()
                };
                inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sub.index, (sub.key, sub.args));
                pool::Submission { id: sub.index, func: func.clone(), args: Payload::Json(payload) }
            })
        };
        // Submitted while the workers start: the first tasks are queued when the first
        // worker is ready, and go to it at once. This pool runs this stream only: closed
        // now, its workers exit as soon as there is nothing left for them (the last tasks
        // still running elsewhere), not all together at the end.
        // A plan small enough for one round of the feed is made here, on the caller's
        // thread, and handed over at once (no feeding thread; see `run_stream_made`):
        // making it cannot wait, as a resumed record can make a larger plan wait for
        // the caller (the runner's backlog holds 16,384).
        let small = feed.size_hint().1.is_some_and(|n| n <= pool::stream::FEED_BATCH);
        let stream = if small {
            starting.pool().run_stream_made(feed.collect())
        } else {
            starting.pool().run_stream(feed)
        };
        let stream = stream.map_err(|e| BackendError::new(format!("cannot start the run: {e}")))?;
        starting.pool().close();
        // A pool that cannot start is the start's error; the stream, dropped with it,
        // has delivered nothing.
        let pool = Arc::new(starting.wait().map_err(start_error)?);
        let control = Arc::new(LocalControl { run: stream.control(), pool: pool.clone() });
        Ok(Box::new(LocalExecution {
            pool,
            stream,
            linger: linger_for(job),
            control,
            inflight,
            names,
            task: job.task.clone(),
            task_timeout: job.limits.task_timeout,
            times: Default::default(),
            last,
        }))
    }
}

struct LocalExecution {
    pool: Arc<Pool>,
    stream: RunStream,
    /// How long outcomes coming in quick succession may wait for each other
    /// ([`RunStream::next_batch_within`]).
    linger: Duration,
    control: Arc<LocalControl>,
    inflight: Arc<Mutex<Inflight>>,
    names: Arc<[String]>,
    task: TaskTemplate,
    task_timeout: Option<Duration>,
    /// Formats the records' start times.
    times: crate::store::Rfc3339Micros,
    /// The last job of this process ([`LocalBackend::last_job`]).
    last: bool,
}

impl Execution for LocalExecution {
    fn next_event(&mut self) -> Option<BackendEvent> {
        // Every outcome that arrived together becomes one event: one lock of the
        // in-flight table and one message to the runner per batch, not per record.
        let outcomes = self.stream.next_batch_within(self.linger)?;
        let entries: Vec<(crate::plan::Key, Vec<Value>)> = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            outcomes.iter().map(|o| inflight.remove(&o.id).unwrap_or_default()).collect()
        };
        let builtin = is_builtin(&self.task);
        let (names, task, times) = (&self.names, &self.task, &mut self.times);
        let records = outcomes
            .into_iter()
            .zip(entries)
            .map(|(o, (key, values))| {
                // A timeout from the pool itself, not one the task reported.
                let pool_timeout = o.stopped_by_pool && o.status == Status::Timeout;
                let mut rec = record_from_outcome(o, key, names, values, task, times);
                if let (true, true, Some(t)) = (builtin, pool_timeout, self.task_timeout) {
                    // The pool's backstop (task-timeout + grace + 2 s) fired: the worker did
                    // not stop the task itself (it hung or was stopped). Say so in the
                    // user's terms, not the backstop's.
                    rec.error = Some(format!(
                        "timed out after {}; the worker did not respond and was killed",
                        humantime::format_duration(t)
                    ));
                }
                rec
            })
            .collect();
        Some(BackendEvent::FinishedMany(records))
    }

    fn control(&self) -> Arc<dyn ExecutionControl> {
        self.control.clone()
    }

    fn join(self: Box<Self>) {
        // Every worker and task group is gone before the run reports its end (with the
        // thread workers too: `join` settles the groups of threads it stopped).
        drop(self.stream);
        self.pool.join();
        if self.last {
            crate::pool::zygote::release();
        }
    }
}

/// How long the outcomes of quick tasks may wait for each other before the run takes
/// them: each batch that reaches the run wakes two of its threads (the one making
/// records, the one writing them), some 15–25 µs of CPU each on a busy machine, and
/// 2,000 short commands on 2 workers otherwise send hundreds of them (at 3 ms, 600
/// wake-ups of each; at 10 ms, under 200). A record then reaches its sinks up to this
/// late; the last one is not held back.
const LINGER: Duration = Duration::from_millis(10);

/// [`LINGER`], or none when a failure must stop the run promptly (`max-failures`,
/// `on-failure = "stop"`): a failure held back would let more submissions start.
fn linger_for(job: &Job) -> Duration {
    if job.max_failures.is_some() || job.on_failure == OnFailure::Stop {
        Duration::ZERO
    } else {
        LINGER
    }
}

struct LocalControl {
    run: RunControl,
    pool: Arc<Pool>,
}

impl ExecutionControl for LocalControl {
    fn cancel(&self) {
        self.run.cancel();
    }

    fn stop_submitting(&self) {
        self.run.stop_submitting();
    }

    fn kill(&self) {
        self.run.cancel();
        self.pool.terminate();
    }
}

/// Turn one pool outcome into a record.
fn record_from_outcome(
    o: Outcome,
    key: crate::plan::Key,
    names: &Arc<[String]>,
    values: Vec<Value>,
    task: &TaskTemplate,
    times: &mut crate::store::Rfc3339Micros,
) -> TaskRecord {
    // The values are the record's own now (moved, not copied); the names are shared.
    let mut rec = TaskRecord::new(o.id, key, Args::new(names.clone(), values), o.status);
    rec.error = o.error;
    rec.attempts = o.attempts;
    rec.worker = o.worker;
    rec.started_at = o.started_at.map(|t| times.format(t));
    rec.duration_ms = o.duration.as_nanos() as f64 / 1e6;
    if let Some(Payload::Json(text)) = &o.value {
        // A value the worker sent that does not decode is not a value: never an `ok`
        // with a made-up `null` (a worker that wrote garbage on its channel).
        let decoded = match task {
            TaskTemplate::Command(_) => serde_json::from_str::<Value>(text)
                .and_then(serde_json::from_value::<task::CommandValue>)
                .map(Ok),
            _ => value_from_json(text).map(Err),
        };
        match decoded {
            Ok(Ok(env)) => {
                rec.value = Some(env.value);
                rec.exit_code = env.exit_code;
                rec.stderr = env.stderr;
                rec.cpu_ms = env.cpu_ms;
                rec.max_rss_kb = env.max_rss_kb;
            }
            Ok(Err(v)) => rec.value = Some(v),
            Err(e) => {
                rec.status = crate::record::Status::Crashed;
                let shown: String = text.chars().take(80).collect();
                rec.error = Some(format!(
                    "the worker sent a value that cannot be read ({e}): {shown:?}; \
                     it is not used"
                ));
            }
        }
    }
    if let Some(data) = o.error_data.as_deref()
        && let Ok(d) = serde_json::from_str::<task::ErrorData>(data)
    {
        rec.exit_code = d.exit_code.or(rec.exit_code);
        rec.signal = d.signal;
        rec.stderr = d.stderr.or(rec.stderr);
        rec.cpu_ms = d.cpu_ms.or(rec.cpu_ms);
        rec.max_rss_kb = d.max_rss_kb.or(rec.max_rss_kb);
    }
    if let TaskTemplate::Command(_) = task {
        rec.stderr.get_or_insert_with(String::new);
    }
    rec
}

/// `text` (a value as the worker encoded it) as a JSON value: what
/// `serde_json::from_str::<Value>` returns, with a short path for the most common value of
/// all, a small integer (`x * x`), that skips serde's machinery.
fn value_from_json(text: &str) -> serde_json::Result<Value> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Up to 18 digits fit any i64 or u64 without overflow; no leading zero (serde reads
    // `-0` as a float, and `01` is no JSON number).
    let plain = (1..=18).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ((digits == "0" && !negative) || !digits.starts_with('0'));
    if plain {
        let n = digits.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        return Ok(if negative { Value::from(-(n as i64)) } else { Value::from(n) });
    }
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn job(dir: &std::path::Path) -> Job {
        let text = "backend = \"threads\"\n[task]\nkind = \"script\"\nscript = \"x * 2\"\n\
                    [args]\nx = [1, 2, 3]\n";
        let opts = crate::validate::LoadOptions::default();
        crate::validate::load_str(&dir.join("job.toml"), text, &opts).unwrap()
    }

    /// Start `job` on `workers` and run it through: its values, and whether the start
    /// took the pool that was prestarted.
    fn run(backend: &LocalBackend, job: &Job, workers: usize) -> (Vec<Value>, bool) {
        let work: super::super::Work = Box::new(Plan::new(job).collect::<Vec<_>>().into_iter());
        let mut ex = backend.start(StartRequest { job, workers, work }).unwrap();
        let taken = backend.took_warm.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::new();
        while let Some(ev) = ex.next_event() {
            match ev {
                BackendEvent::Finished(r) => out.push(r.value.unwrap()),
                BackendEvent::FinishedMany(rs) => {
                    out.extend(rs.into_iter().map(|r| r.value.unwrap()))
                }
                BackendEvent::Waiting { .. } => {}
            }
        }
        ex.join();
        out.sort_by_key(|v| v.as_i64());
        assert!(backend.warm.lock().unwrap().is_none(), "a start empties the slot");
        (out, taken)
    }

    #[test]
    fn a_failure_policy_takes_records_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let load = |extra: &str| {
            let text =
                format!("{extra}\n[task]\nkind = \"script\"\nscript = \"x\"\n[args]\nx = [1, 2]\n");
            let opts = crate::validate::LoadOptions::default();
            crate::validate::load_str(&dir.path().join("job.toml"), &text, &opts).unwrap()
        };
        assert_eq!(linger_for(&load("")), LINGER);
        assert_eq!(linger_for(&load("max-failures = 3")), Duration::ZERO);
        assert_eq!(linger_for(&load("on-failure = \"stop\"")), Duration::ZERO);
    }

    #[test]
    fn values_read_as_serde_reads_them() {
        let texts = [
            "0",
            "-0",
            "7",
            "-7",
            "10",
            "01",
            "-01",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "1e3",
            "-",
            "",
            " 1",
            "1 ",
            "null",
            "\"s\"",
            "[1,2]",
            "{\"a\":1}",
            "+1",
            "0x10",
            "١",
        ];
        for text in texts {
            let ours = value_from_json(text);
            let serdes = serde_json::from_str::<Value>(text);
            match (&ours, &serdes) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{text:?}");
                    assert_eq!(a.to_string(), b.to_string(), "{text:?}");
                    assert_eq!((a.is_u64(), a.is_i64()), (b.is_u64(), b.is_i64()), "{text:?}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{text:?}: {ours:?} against serde's {serdes:?}"),
            }
        }
    }

    #[test]
    fn a_prestarted_pool_is_taken_by_the_same_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path());
        let backend = LocalBackend::new(task::builtins());
        let expected: Vec<Value> = [2, 4, 6].map(Value::from).into();

        backend.prestart(&job, 2);
        assert_eq!(run(&backend, &job, 2), (expected.clone(), true), "the same job and count");
        backend.prestart(&job, 2);
        assert_eq!(run(&backend, &job, 1), (expected.clone(), false), "another worker count");
        backend.prestart(&job, 2);
        let other = job.clone();
        assert_eq!(run(&backend, &other, 2), (expected, false), "another job value");

        // Never taken: discarded.
        backend.prestart(&job, 3);
        assert!(backend.warm.lock().unwrap().is_some());
        backend.discard_prestarted();
        assert!(backend.warm.lock().unwrap().is_none());
    }

    /// A prestarted pool that cannot start: the start that takes it reports why, as a
    /// start that built the pool itself would. (No worker count is a start error that
    /// needs no process; the pool's own tests cover workers that fail their handshake.)
    #[test]
    fn a_prestarted_pool_that_cannot_start_is_the_start_s_error() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path());
        let backend = LocalBackend::new(task::builtins());
        backend.prestart(&job, 0);
        let work: super::super::Work = Box::new(Plan::new(&job).collect::<Vec<_>>().into_iter());
        let err = match backend.start(StartRequest { job: &job, workers: 0, work }) {
            Ok(_) => panic!("a pool of no workers started"),
            Err(e) => e.message,
        };
        assert!(err.starts_with("cannot start the workers: "), "{err}");
        assert!(err.contains("at least one worker"), "{err}");
        assert!(
            backend.took_warm.load(std::sync::atomic::Ordering::Relaxed),
            "the prestarted pool"
        );
        assert!(backend.warm.lock().unwrap().is_none());
    }

    /// Submissions go to the pool while its workers start (the first task waits for the
    /// first worker, not for this start to return); a pool whose workers all fail their
    /// handshake is still the start's error, with nothing delivered and nothing left
    /// running. (This test program is no worker: run as one, it runs no test, prints
    /// libtest's empty summary and exits.)
    #[test]
    fn a_pool_that_fails_to_start_with_submissions_queued_is_the_start_s_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[task]\nkind = \"script\"\nscript = \"x * 2\"\n[args]\nx = [1, 2, 3]\n";
        let opts = crate::validate::LoadOptions::default();
        let job = crate::validate::load_str(&dir.path().join("job.toml"), text, &opts).unwrap();
        let backend = LocalBackend::new(task::builtins());
        for prestart in [true, false] {
            if prestart {
                backend.prestart(&job, 2);
            }
            let seen = Arc::new(Mutex::new(0));
            let count = seen.clone();
            let plan = Plan::new(&job).collect::<Vec<_>>().into_iter().inspect(move |_| {
                *count.lock().unwrap() += 1;
            });
            let work: super::super::Work = Box::new(plan);
            let err = match backend.start(StartRequest { job: &job, workers: 2, work }) {
                Ok(_) => panic!("a pool of workers that cannot start started"),
                Err(e) => e.message,
            };
            assert!(err.starts_with("cannot start the workers: "), "{err}");
            assert!(err.contains("handshake"), "{err}");
            // The submissions were handed to the pool before it failed.
            assert!(*seen.lock().unwrap() > 0, "nothing was submitted early");
        }
    }
}
