//! `jobpool run`: load every job, then run them one after another: plan lazily, feed the
//! pool, journal each record as it completes, write sinks in order, summarise, and turn
//! the records into an exit code.
//!
//! Threads of one job run: the pool's feeder pulls submissions from the plan (skipping
//! keys `--resume` can reuse), a forwarder moves the pool's outcomes into one channel with
//! the resumed records, a watchdog enforces the job's deadline, and the signal thread
//! turns Ctrl-C / SIGTERM into a cancel. This thread owns the store, the sinks and the
//! progress bar.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::Diagnostic;
use serde_json::{Map, Value};

use super::diag;
use super::{EXIT_DEADLINE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_TASK_FAILED};
use crate::model::{Backend, ChunkSize, Job, OnFailure, TaskTemplate};
use crate::plan::Plan;
use crate::pool::{self, Outcome, Payload, Pool, Registry, RunControl};
use crate::record::{Status, TaskRecord};
use crate::sink::OrderedSinks;
use crate::store::{self, RunMeta, RunStore, RunSummary, StatusCounts};
use crate::task::{self, BuiltinContext};
use crate::validate::{self, LoadOptions};

/// Arguments of `jobpool run`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool run jobs/seed-starmap.toml
  jobpool run --workers 8 --timeout 10m jobs/
  jobpool run --set 'args.seed=[1, 2, 3]' sweep.toml
  jobpool run --resume sweep.toml        # after a crash, Ctrl-C or an edit: only what is missing
  jobpool run --dry-run sweep.toml       # check and show the plan, run nothing

Exit codes: 0 every task ok, 1 a task failed, 2 invalid job file or usage,
3 the job's timeout passed, 130 interrupted.")]
pub struct RunArgs {
    /// Job files, or folders (every *.toml in them, sorted); several run one after another.
    #[arg(required = true, value_name = "JOB")]
    jobs: Vec<PathBuf>,
    /// Number of workers (overrides `workers`).
    #[arg(long, short = 'j', value_name = "N")]
    workers: Option<String>,
    /// The job's deadline, e.g. `30s` or `1h 5m` (overrides `timeout`).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Override a key of the job file: KEY is a dotted path (`workers`, `args.seed`),
    /// VALUE a TOML value or a plain string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run only submissions whose key has no `ok` record in an earlier run; reuse those.
    #[arg(long)]
    resume: bool,
    /// Check the job and show what would run; run nothing and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Progress bar on stderr: `auto` shows it when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    progress: ProgressWhen,
    /// No summary and no progress bar; diagnostics still print.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressWhen {
    Auto,
    Always,
    Never,
}

/// Submissions handed to the pool, by index: their key and arguments.
type Inflight = HashMap<u64, (String, Vec<Value>)>;

/// Records that may wait between the pool and the thread writing journal and sinks;
/// senders wait at `BACKLOG_HIGH` until the writer is down to `BACKLOG_LOW`, so waiting
/// and waking happen once per many records, not per record.
const BACKLOG_HIGH: usize = 16384;
const BACKLOG_LOW: usize = BACKLOG_HIGH / 2;

/// How many events wait in the channel to the writing thread.
#[derive(Default)]
struct Backlog {
    count: Mutex<usize>,
    cv: std::sync::Condvar,
}

impl Backlog {
    /// Before sending an event: wait while the backlog is full.
    fn add(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= BACKLOG_HIGH {
            n = self.cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
    }

    /// After receiving an event.
    fn done(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == BACKLOG_LOW {
            self.cv.notify_all();
        }
    }
}

/// Run every job named on the command line.
pub fn run(args: RunArgs, registry: &Registry) -> u8 {
    let paths = match validate::collect_jobs(&args.jobs) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{}", diag::render(&e));
            return EXIT_INVALID;
        }
    };
    let mut overrides = Vec::new();
    if let Some(w) = &args.workers {
        overrides.push(format!("workers={w}"));
    }
    if let Some(t) = &args.timeout {
        overrides.push(format!("timeout={}", toml_string(t)));
    }
    overrides.extend(args.set.iter().cloned());
    let opts = LoadOptions { kinds: registry.kinds(), overrides };

    // Every job is checked before any runs: a typo in the third file should not surface
    // after the first two ran for an hour.
    let mut jobs = Vec::new();
    let mut invalid = false;
    for path in &paths {
        match validate::load(path, &opts) {
            Ok(job) => jobs.push(job),
            Err(e) => {
                invalid = true;
                eprint!("{}", diag::render(&e));
            }
        }
    }
    if invalid {
        return EXIT_INVALID;
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return EXIT_INVALID;
        }
    };
    let mut worst = EXIT_OK;
    for job in &jobs {
        if signals.pending.load(Ordering::SeqCst) {
            // Interrupted between two jobs: the rest do not start.
            return worse(worst, EXIT_INTERRUPTED);
        }
        let code =
            if args.dry_run { dry_run(job) } else { run_job(job, &args, registry, &signals) };
        worst = worse(worst, code);
        if code == EXIT_INTERRUPTED {
            break;
        }
    }
    worst
}

/// The more serious of two exit codes.
fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        EXIT_INTERRUPTED => 4,
        EXIT_INVALID => 3,
        EXIT_DEADLINE => 2,
        EXIT_TASK_FAILED => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `--dry-run`: what would run, nothing written.
fn dry_run(job: &Job) -> u8 {
    let plan = Plan::new(job);
    let total = plan.len();
    let workers = workers_for(job, total);
    println!(
        "{}: {} submission{}, kind `{}`, {} worker{}, backend {:?}",
        job.path.display(),
        total,
        if total == 1 { "" } else { "s" },
        job.task.kind(),
        workers,
        if workers == 1 { "" } else { "s" },
        job.backend
    );
    const SHOWN: u64 = 10;
    for sub in plan.take(SHOWN as usize) {
        let what = match &job.task {
            TaskTemplate::Command(c) => {
                let r = task::command::render(c, &job.dir, &job.args.names, &sub.args);
                format!("{:?}", r.argv)
            }
            _ => Value::Object(args_map(&job.args.names, &sub.args)).to_string(),
        };
        println!("  [{}] {what}", sub.index);
    }
    if total > SHOWN {
        println!("  … and {} more", total - SHOWN);
    }
    EXIT_OK
}

fn workers_for(job: &Job, total: u64) -> usize {
    let want = job
        .workers
        .map(|n| n.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // Never start workers that could get nothing to do.
    want.min(total.max(1).try_into().unwrap_or(usize::MAX))
}

fn args_map(names: &[String], values: &[Value]) -> Map<String, Value> {
    names.iter().cloned().zip(values.iter().cloned()).collect()
}

/// What ended a run early, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Interrupt,
    /// The reader of stdout went away (`jobpool run job.toml | head -1`): stop quietly.
    BrokenPipe,
}

/// Shared between the main thread, the signal thread and the deadline watchdog.
struct RunState {
    control: Mutex<Option<RunControl>>,
    stop: Mutex<Option<Stop>>,
}

impl RunState {
    fn stop(&self, why: Stop) {
        {
            let mut s = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            if s.is_none() {
                *s = Some(why);
            }
        }
        if let Some(c) = self.control.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            c.cancel();
        }
    }

    fn stopped(&self) -> Option<Stop> {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ctrl-C, SIGTERM and SIGHUP: the first cancels the current run (TERM, grace, KILL of
/// running tasks; records flushed, sinks complete); the second exits at once, killing
/// what runs. A first signal while no run is registered (between two jobs, or while a
/// run is being set up) is remembered in `pending`: the run about to start cancels
/// itself at once, and no further job starts.
struct Signals {
    current: Arc<Mutex<Option<Arc<RunState>>>>,
    pools: Arc<Mutex<Option<Arc<Pool>>>>,
    pending: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let current: Arc<Mutex<Option<Arc<RunState>>>> = Arc::new(Mutex::new(None));
        let pools: Arc<Mutex<Option<Arc<Pool>>>> = Arc::new(Mutex::new(None));
        let pending = Arc::new(AtomicBool::new(false));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let (cur, pl, pend) = (current.clone(), pools.clone(), pending.clone());
        std::thread::Builder::new().name("jobpool-signals".into()).spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen == 1 {
                    // Set `pending` under the lock: a run registering itself afterwards
                    // is sure to see it.
                    let cur = cur.lock().unwrap_or_else(|e| e.into_inner());
                    pend.store(true, Ordering::SeqCst);
                    if let Some(state) = cur.as_ref() {
                        state.stop(Stop::Interrupt);
                    }
                } else {
                    // Second signal: no grace. Kill every worker and task group, then go.
                    if let Some(pool) = pl.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        pool.terminate();
                    }
                    std::process::exit(EXIT_INTERRUPTED as i32);
                }
            }
        })?;
        Ok(Signals { current, pools, pending })
    }
}

enum Event {
    Outcome(Outcome),
    Resumed(TaskRecord),
    PoolDone,
}

/// The failure shown at the end of a run, as Python's `get()` re-raises a task's error.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("task {index} failed ({status}): {message}")]
#[diagnostic(code(jobpool::task_failed))]
struct TaskFailed {
    index: u64,
    status: Status,
    message: String,
    #[help]
    help: Option<String>,
}

/// A problem of the run itself (not of a task): the store or a sink could not be opened.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{what}")]
#[diagnostic(code(jobpool::run))]
struct RunError {
    what: String,
    #[help]
    help: Option<String>,
}

fn fail(what: String, help: Option<String>) -> u8 {
    say(&diag::render(&RunError { what, help }));
    EXIT_TASK_FAILED
}

/// Write to stderr, ignoring errors: a closed stderr (a hung-up terminal, `2>&1 | head`)
/// must not turn into a panic at the end of a run that did its work.
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn run_job(job: &Job, args: &RunArgs, registry: &Registry, signals: &Signals) -> u8 {
    let started = Instant::now();
    let plan = Plan::new(job);
    let total = plan.len();
    let workers = workers_for(job, total);

    if job.backend == Backend::Slurm {
        return fail(
            format!("{}: backend \"slurm\" is not supported yet", job.path.display()),
            Some("use backend = \"processes\" or \"threads\"".into()),
        );
    }

    let resume = if args.resume {
        match store::resume_index(job) {
            Ok(ix) => Some(ix),
            Err(e) => return fail(format!("cannot read earlier runs of {}: {e}", job.name), None),
        }
    } else {
        None
    };
    let argv: Vec<String> = std::env::args().collect();
    let meta = RunMeta {
        run_id: None,
        argv,
        submissions: Some(total),
        workers: Some(workers),
        resume: args.resume,
    };
    let mut journal = match RunStore::create(job, meta) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                format!("cannot create the run folder under {}: {e}", job.dir.display()),
                Some(
                    "jobpool keeps runs in .jobpool/ beside the job file; it must be writable"
                        .into(),
                ),
            );
        }
    };
    let run_id = journal.run_id().to_string();
    let mut sinks = match OrderedSinks::open(job, &run_id) {
        Ok(s) => s,
        Err(e) => {
            // Nothing ran: the run folder says so rather than staying "running".
            let _ = journal.finish(RunSummary { exit_code: EXIT_TASK_FAILED });
            return fail(format!("cannot open a sink: {}", error_chain(&e)), None);
        }
    };

    let builtin = matches!(job.task, TaskTemplate::Command(_) | TaskTemplate::Script(_));
    let context = BuiltinContext::new(job);
    let context_json = match serde_json::to_string(&context) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot encode the task: {e}"), None),
    };
    let mut builder = Pool::builder()
        .workers(workers)
        .retries(job.limits.retries)
        .grace_period(job.limits.grace_period)
        .max_tasks_per_worker(job.max_tasks_per_worker.try_into().unwrap_or(usize::MAX))
        .context(context_json)
        // Stdout carries the records; whatever a task prints there goes to stderr.
        .worker_stdout_to_stderr(true)
        .registry(registry.clone())
        .backend(match job.backend {
            Backend::Threads => pool::Backend::Threads,
            _ => pool::Backend::Processes,
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
    let pool = match builder.build() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            sinks.abort();
            let _ = journal.finish(RunSummary { exit_code: EXIT_TASK_FAILED });
            return fail(format!("cannot start the workers: {e}"), None);
        }
    };

    // Submissions go to the pool from its feeder thread; resumed ones never do.
    let names: Arc<[String]> = job.args.names.clone().into();
    let func: Arc<str> = job.task.kind().into();
    let inflight: Arc<Mutex<Inflight>> = Default::default();
    let taken = Arc::new(AtomicU64::new(0));
    let resume = Arc::new(Mutex::new(resume));
    // Bounded (see `Backlog`): when journal and sinks are slower than the workers, the
    // forwarder waits, the pool's stream fills up, and the pool stops taking submissions
    // from the plan, so memory stays bounded however large the plan is.
    let (tx, rx) = mpsc::channel::<Event>();
    let backlog = Arc::new(Backlog::default());
    let feed = {
        let (inflight, taken, resume, tx, names, func, backlog) = (
            inflight.clone(),
            taken.clone(),
            resume.clone(),
            tx.clone(),
            names.clone(),
            func.clone(),
            backlog.clone(),
        );
        plan.filter_map(move |sub| {
            taken.store(sub.index + 1, Ordering::SeqCst);
            let reused = resume
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|ix| ix.take(&sub.key));
            if let Some(rec) = reused {
                // (Not holding the `resume` lock: this may wait for the writing thread.)
                backlog.add();
                let _ = tx.send(Event::Resumed(rec.resumed_at(sub.index)));
                return None;
            }
            let payload = if builtin {
                Value::Array(sub.args.clone()).to_string()
            } else {
                Value::Object(args_map(&names, &sub.args)).to_string()
            };
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sub.index, (sub.key, sub.args));
            Some(pool::Submission {
                id: sub.index,
                func: func.to_string(),
                args: Payload::Json(payload),
            })
        })
    };
    let stream = match pool.run_stream(feed) {
        Ok(s) => s,
        Err(e) => {
            sinks.abort();
            let _ = journal.finish(RunSummary { exit_code: EXIT_TASK_FAILED });
            return fail(format!("cannot start the run: {e}"), None);
        }
    };
    let state =
        Arc::new(RunState { control: Mutex::new(Some(stream.control())), stop: Mutex::new(None) });
    *signals.pools.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool.clone());
    *signals.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
    if signals.pending.load(Ordering::SeqCst) {
        // Interrupted while the run was being set up.
        state.stop(Stop::Interrupt);
    }

    let forwarder = {
        let (tx, backlog) = (tx.clone(), backlog.clone());
        std::thread::spawn(move || {
            for o in stream {
                backlog.add();
                if tx.send(Event::Outcome(o)).is_err() {
                    break;
                }
            }
            let _ = tx.send(Event::PoolDone);
        })
    };
    drop(tx);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = job.limits.timeout.map(|limit| {
        let state = state.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(limit) {
                state.stop(Stop::Deadline);
            }
        })
    });

    let mut progress = Progress::new(args, total);
    let mut counts = StatusCounts::default();
    let mut first_failure: Option<TaskRecord> = None;
    let mut sink_error = None;
    let mut stopped_submitting = false;
    let mut handle = |rec: TaskRecord,
                      counts: &mut StatusCounts,
                      sinks: &mut OrderedSinks,
                      journal: &mut RunStore|
     -> Result<bool, bool> {
        counts.add(rec.status);
        if let Err(e) = journal.append(&rec) {
            sink_error.get_or_insert_with(|| format!("cannot write the journal: {e}"));
        }
        let failed = rec.status.is_failure();
        if failed && first_failure.is_none() {
            first_failure = Some(rec.clone());
        }
        progress.record(failed, counts.failures());
        if let Err(e) = sinks.accept(rec) {
            let pipe = e.is_broken_pipe();
            if !pipe {
                sink_error.get_or_insert_with(|| error_chain(&e));
            }
            return Err(pipe);
        }
        Ok(failed)
    };

    for ev in rx.iter() {
        backlog.done();
        let rec = match ev {
            Event::PoolDone => break,
            Event::Resumed(rec) => rec,
            Event::Outcome(o) => {
                let (key, values) = inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&o.id)
                    .unwrap_or_default();
                let mut rec = record_from_outcome(o, key, &names, values, &job.task);
                if let (true, Status::Timeout, Some(t)) =
                    (builtin, rec.status, job.limits.task_timeout)
                {
                    // The pool's backstop (task-timeout + grace + 2 s) fired: the worker did
                    // not stop the task itself (it hung or was stopped). Say so in the
                    // user's terms, not the backstop's.
                    if rec.error.as_deref().is_some_and(|e| e.starts_with("task stopped after")) {
                        rec.error = Some(format!(
                            "timed out after {}; the worker did not respond and was killed",
                            humantime::format_duration(t)
                        ));
                    }
                }
                rec
            }
        };
        match handle(rec, &mut counts, &mut sinks, &mut journal) {
            Err(pipe) => {
                // A sink is gone (a closed pipe, a full disk): nothing more can be
                // delivered, so stop working.
                state.stop(if pipe { Stop::BrokenPipe } else { Stop::Interrupt });
            }
            Ok(true) if job.on_failure == OnFailure::Stop && !stopped_submitting => {
                stopped_submitting = true;
                if let Some(c) = state.control.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    c.stop_submitting();
                }
            }
            Ok(_) => {}
        }
    }
    let _ = forwarder.join();
    let _ = done_tx.send(());
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    *signals.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *signals.pools.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let stop = state.stopped();

    // Submissions never taken from the plan still get a record: reused when `--resume`
    // has one, otherwise skipped (on-failure = stop) or cancelled (deadline, interrupt).
    let next = taken.load(Ordering::SeqCst);
    if next < total {
        let status = if stop.is_some() { Status::Cancelled } else { Status::Skipped };
        let mut rest = Plan::new(job);
        rest.skip_to(next);
        for sub in rest {
            let reused = resume
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|ix| ix.take(&sub.key))
                .map(|r| r.resumed_at(sub.index));
            let rec = reused.unwrap_or_else(|| TaskRecord {
                index: sub.index,
                key: sub.key,
                args: args_map(&names, &sub.args),
                status,
                value: None,
                error: Some(match status {
                    Status::Skipped => {
                        "not started: an earlier task failed (on-failure = \"stop\")".into()
                    }
                    _ => "not started: the run was stopped".into(),
                }),
                attempts: 0,
                worker: None,
                started_at: None,
                duration_ms: 0.0,
                exit_code: None,
                signal: None,
                stderr: None,
                resumed: false,
            });
            if handle(rec, &mut counts, &mut sinks, &mut journal).is_err() {
                break;
            }
        }
    }
    progress.finish();
    // A deadline that passed when nothing was left to cancel (every record was already
    // in, or taken from an earlier run) cut nothing short.
    let stop = match stop {
        Some(Stop::Deadline) if counts.get(Status::Cancelled) == 0 => None,
        s => s,
    };
    // The pool is done: every worker and task group is gone before we report (with the
    // threads backend too: `join` settles the groups of threads it stopped).
    pool.join();

    let code = match stop {
        Some(Stop::Interrupt) => EXIT_INTERRUPTED,
        // The reader took what it wanted: what was delivered decides.
        Some(Stop::BrokenPipe) if counts.failures() > 0 => EXIT_TASK_FAILED,
        Some(Stop::BrokenPipe) => EXIT_OK,
        Some(Stop::Deadline) => EXIT_DEADLINE,
        None if counts.failures() > 0 => EXIT_TASK_FAILED,
        None => EXIT_OK,
    };
    let sink_result = sinks.finish();
    let _ = journal.finish(RunSummary { exit_code: code });
    if let Some(e) = sink_error {
        return fail(e, None);
    }
    if let Err(e) = sink_result
        && !e.is_broken_pipe()
    {
        return fail(format!("cannot finish a sink: {}", error_chain(&e)), None);
    }
    if !args.quiet && stop != Some(Stop::BrokenPipe) {
        summary(job, &counts, started.elapsed(), stop, &run_id);
        if let Some(rec) = &first_failure {
            say(&diag::render(&failure_diagnostic(rec, counts.failures())));
        }
    }
    code
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        cur = c.source();
    }
    s
}

/// Progress on stderr: indicatif's bar on a terminal; with `--progress always` and a
/// stderr that is not a terminal (a CI log), a plain line at most once a second.
enum Progress {
    Hidden,
    Bar(ProgressBar),
    Lines { total: u64, done: u64, failed: u64, started: Instant, last: Instant },
}

impl Progress {
    fn new(args: &RunArgs, total: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let show = !args.quiet
            && match args.progress {
                ProgressWhen::Always => true,
                ProgressWhen::Never => false,
                ProgressWhen::Auto => terminal,
            };
        if !show {
            return Progress::Hidden;
        }
        if !terminal {
            let now = Instant::now();
            return Progress::Lines { total, done: 0, failed: 0, started: now, last: now };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::Bar(bar)
    }

    fn record(&mut self, failed_now: bool, failures: u64) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => {
                bar.inc(1);
                if failed_now {
                    bar.set_message(format!("{failures} failed"));
                }
            }
            Progress::Lines { total, done, failed, started, last } => {
                *done += 1;
                *failed = failures;
                if last.elapsed() >= Duration::from_secs(1) {
                    *last = Instant::now();
                    let elapsed = started.elapsed();
                    let eta = if *done > 0 && *done < *total {
                        let per = elapsed.as_secs_f64() / *done as f64;
                        let left = Duration::from_secs_f64(per * (*total - *done) as f64);
                        format!(
                            ", ETA {}",
                            humantime::format_duration(Duration::from_secs(left.as_secs()))
                        )
                    } else {
                        String::new()
                    };
                    say(&format!(
                        "[{:.1}s] {}/{} done, {} failed{eta}\n",
                        elapsed.as_secs_f64(),
                        done,
                        total,
                        failed
                    ));
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn summary(job: &Job, counts: &StatusCounts, wall: Duration, stop: Option<Stop>, run_id: &str) {
    let mut parts = vec![format!("{} ok", counts.get(Status::Ok))];
    for s in &Status::ALL[1..] {
        let n = counts.get(*s);
        if n > 0 {
            parts.push(format!("{n} {s}"));
        }
    }
    let why = match stop {
        Some(Stop::Deadline) => " (the job's timeout passed)",
        Some(Stop::Interrupt) => " (interrupted)",
        Some(Stop::BrokenPipe) | None => "",
    };
    say(&format!(
        "{}: {} in {:.2}s{why}; run {run_id}\n",
        job.name,
        parts.join(", "),
        wall.as_secs_f64()
    ));
}

fn failure_diagnostic(rec: &TaskRecord, failures: u64) -> TaskFailed {
    let mut help = format!("arguments: {}", Value::Object(rec.args.clone()));
    if let Some(stderr) = rec.stderr.as_deref().filter(|s| !s.trim().is_empty()) {
        let tail: Vec<&str> = stderr.trim_end().lines().rev().take(5).collect();
        help.push_str("\nstderr (last lines):");
        for l in tail.iter().rev() {
            help.push_str("\n  ");
            help.push_str(l);
        }
    }
    if failures > 1 {
        help.push_str(&format!("\n{} more failed; every record has its error", failures - 1));
    }
    TaskFailed {
        index: rec.index,
        status: rec.status,
        message: rec.error.clone().unwrap_or_default(),
        help: Some(help),
    }
}

/// Turn one pool outcome into the record sinks and the journal read.
fn record_from_outcome(
    o: Outcome,
    key: String,
    names: &[String],
    values: Vec<Value>,
    task: &TaskTemplate,
) -> TaskRecord {
    let mut rec = TaskRecord {
        index: o.id,
        key,
        args: args_map(names, &values),
        status: o.status,
        value: None,
        error: o.error,
        attempts: o.attempts,
        worker: o.worker,
        started_at: o.started_at.map(|t| humantime::format_rfc3339_micros(t).to_string()),
        duration_ms: o.duration.as_nanos() as f64 / 1e6,
        exit_code: None,
        signal: None,
        stderr: None,
        resumed: false,
    };
    if let Some(Payload::Json(text)) = &o.value {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if let TaskTemplate::Command(_) = task {
            let env: task::CommandValue = serde_json::from_value(v).unwrap_or_default();
            rec.value = Some(env.value);
            rec.exit_code = env.exit_code;
            rec.stderr = env.stderr;
        } else {
            rec.value = Some(v);
        }
    }
    if let Some(data) = o.error_data.as_deref()
        && let Ok(d) = serde_json::from_str::<task::ErrorData>(data)
    {
        rec.exit_code = d.exit_code.or(rec.exit_code);
        rec.signal = d.signal;
        rec.stderr = d.stderr.or(rec.stderr);
        if rec.status == Status::Error {
            match d.status.as_deref() {
                Some("timeout") => rec.status = Status::Timeout,
                Some("cancelled") => rec.status = Status::Cancelled,
                _ => {}
            }
        }
    }
    rec
}
