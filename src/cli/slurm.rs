//! `backend = "slurm"` on the command line: wiring only.
//!
//! - [`submit_and_follow`]: `jobpool run` of a `slurm` job: open the run, submit the
//!   array ([`slurm::submit`]), then follow it like any run ([`SlurmBackend`] under the
//!   runner, the front ends writing the journal and sinks); with `--detach`, print the
//!   run id and how to attach instead of following.
//! - [`attach`]: `jobpool run --attach RUN JOB`: follow a submission made earlier, the
//!   same way (the run's journal and sinks are written anew, complete).
//! - [`element`]: `jobpool run --slurm-element DIR` (what `element.sh` runs in each
//!   array element): claim the next free chunk of the plan, run it as a shard on the
//!   local pool, until none is left.

use std::path::Path;
use std::time::{Duration, Instant};

use super::exit_code::{self, INTERRUPTED, INVALID, OK, TASK_FAILED};
use super::frontend::say;
use super::run::{RunSettings, cannot_create, drive, fail, open_sinks, run_job};
use super::signals::Signals;
use crate::backend::LocalBackend;
use crate::backend::slurm::{self, ClaimNote, SlurmBackend, SlurmSettings, Submitted};
use crate::model::Job;
use crate::plan::Shard;
use crate::pool::Registry;
use crate::runner::{Control, RunOptions};
use crate::store::{self, ResumeIndex, RunMeta, RunStore};
use crate::validate;

fn meta(run_id: Option<String>, job: &Job, resume: bool, into_existing: bool) -> RunMeta {
    RunMeta {
        run_id,
        argv: std::env::args().collect(),
        submissions: Some(crate::plan::Plan::new(job).len()),
        workers: None,
        resume,
        shard: None,
        into_existing,
    }
}

/// `jobpool run` of a `slurm` job (not a shard): submit, then follow or detach.
pub fn submit_and_follow(
    job: &Job,
    args: &RunSettings,
    resume: Option<ResumeIndex>,
    control: &Control,
) -> u8 {
    let journal = match RunStore::create(job, meta(args.run_id.clone(), job, args.resume, false)) {
        Ok(s) => s,
        Err(e) => return cannot_create(job, e),
    };
    let run_id = journal.run_id().to_string();
    let finish_failed = |journal: RunStore| {
        let _ = journal.finish(store::RunEnd { exit_code: TASK_FAILED, cancelled: None });
    };
    // The sinks open before anything is submitted: an array must not run for sinks
    // that cannot be written.
    let sinks = if args.detach {
        None
    } else {
        match open_sinks(job, &run_id) {
            Ok(s) => Some(s),
            Err(code) => {
                finish_failed(journal);
                return code;
            }
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            finish_failed(journal);
            return fail(
                format!("cannot find the jobpool binary for the array elements: {e}"),
                None,
            );
        }
    };
    let settings = SlurmSettings {
        run_id: run_id.clone(),
        overrides: args.overrides.clone(),
        resume: args.resume,
        exe,
    };
    let submitted = match slurm::submit(job, &settings, resume) {
        Ok(s) => s,
        Err(e) => {
            finish_failed(journal);
            return fail(e.message, e.help);
        }
    };
    if args.detach {
        detached(job, &submitted);
        // The run stays `running` in `run.json` until it is attached to (or collected).
        drop(journal);
        return OK;
    }
    // Nothing else can follow a run that was just submitted, but an `--attach` may come.
    let _lock = lock_follower(&submitted.slurm_dir, &run_id).ok();
    let backend = SlurmBackend::new(submitted);
    let options = RunOptions { run_id, resume: None, shard: None };
    drive(job, args, &backend, journal, sinks, options, control)
}

/// Hold `follower.lock` of a submission while following it: two processes writing one
/// run's journal and sinks would garble them. `Err` with the exit code (said) when
/// another process holds it; a file system that cannot lock is not an error.
fn lock_follower(slurm_dir: &Path, run_id: &str) -> Result<Option<std::fs::File>, u8> {
    use std::io::{Read, Seek, Write};
    let path = slurm_dir.join("follower.lock");
    let Ok(mut file) =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)
    else {
        return Ok(None);
    };
    match file.try_lock() {
        Ok(()) => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "pid {} on {}", std::process::id(), host.trim());
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut who = String::new();
            let _ = file.read_to_string(&mut who);
            say(&format!(
                "error: run {run_id} is already followed by another jobpool ({})\n  help: \
                 wait for it to end (its sinks will be complete), or stop it first; Ctrl-C \
                 there cancels the array\n",
                if who.trim().is_empty() { "pid unknown" } else { who.trim() }
            ));
            Err(INVALID)
        }
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

/// Say what `--detach` submitted: the run id alone on stdout (for scripts), the rest on
/// stderr.
fn detached(job: &Job, submitted: &Submitted) {
    let sub = &submitted.submission;
    println!("{}", sub.run_id);
    let what = match &sub.job_id {
        Some(id) => format!(
            "submitted as Slurm job {id}: {} array element{} for {} submission{}",
            sub.elements,
            if sub.elements == 1 { "" } else { "s" },
            sub.todo_submissions,
            if sub.todo_submissions == 1 { "" } else { "s" }
        ),
        None => "nothing to submit".into(),
    };
    let resumed = if sub.resumed > 0 {
        format!(" ({} taken from earlier runs)", sub.resumed)
    } else {
        String::new()
    };
    say(&format!(
        "{}: run {} {what}{resumed}\n  follow it (records, statuses and sinks): jobpool run --attach {} {}\n",
        job.name,
        sub.run_id,
        sub.run_id,
        job.path.display()
    ));
}

/// `jobpool run --attach RUN JOB`.
pub fn attach(job: &Job, run_id: &str, args: &RunSettings, registry: &Registry) -> u8 {
    // The job is followed as it was submitted: with the submission's `--set` overrides.
    let reloaded;
    let job = match slurm::read_submission(&slurm::slurm_dir(job, run_id)) {
        Ok(sub) if !args.overrides.is_empty() && args.overrides != sub.overrides => {
            say(&format!(
                "error: --attach follows run {run_id} as it was submitted (with {}); drop --set and --timeout\n",
                if sub.overrides.is_empty() {
                    "no --set".to_string()
                } else {
                    format!("--set {}", sub.overrides.join(" --set "))
                }
            ));
            return INVALID;
        }
        Ok(sub) if !sub.overrides.is_empty() && args.overrides.is_empty() => {
            let opts = super::load_options(registry, sub.overrides.clone());
            match validate::load(&job.path, &opts) {
                Ok(j) => {
                    reloaded = j;
                    &reloaded
                }
                Err(e) => {
                    eprint!("{}", super::diag::render(&e));
                    return INVALID;
                }
            }
        }
        _ => job,
    };
    match slurm::find_submission(job, run_id) {
        Ok(submitted) => follow_attached(job, submitted, args),
        Err(e) => {
            say(&super::diag::render(&super::frontend::RunProblem {
                what: e.message,
                help: e.help,
            }));
            INVALID
        }
    }
}

fn follow_attached(job: &Job, submitted: Submitted, args: &RunSettings) -> u8 {
    let signals = match Signals::install(|| {}) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return INVALID;
        }
    };
    let control = Control::new();
    signals.register(&control);
    let run_id = submitted.submission.run_id.clone();
    let _lock = match lock_follower(&submitted.slurm_dir, &run_id) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    // The run's journal and `run.json` are written anew, like `collect` does: complete.
    let meta = meta(Some(run_id.clone()), job, submitted.submission.resume, true);
    let journal = match RunStore::create(job, meta) {
        Ok(s) => s,
        Err(e) => return cannot_create(job, e),
    };
    let sinks = match crate::sink::OrderedSinks::open(job, &run_id) {
        Ok(s) => s,
        Err(e) => {
            let _ = journal.finish(store::RunEnd { exit_code: TASK_FAILED, cancelled: None });
            return fail(
                format!("cannot open a sink: {}", super::frontend::error_chain(&e)),
                Some(format!(
                    "the array's records are kept: fix the sink's `to` in {} or its folder, \
                     then attach again (jobpool run --attach {run_id} ...)",
                    job.path.display()
                )),
            );
        }
    };
    let backend = SlurmBackend::new(submitted);
    let options = RunOptions { run_id, resume: None, shard: None };
    let code = drive(job, args, &backend, journal, Some(sinks), options, &control);
    signals.unregister();
    code
}

/// `jobpool run --slurm-element DIR JOB`: one array element. Claims chunks until none
/// is left (or the run is stopped), runs each as shard `C/CHUNKS` of the run; the most
/// serious exit code of them.
pub fn element(job: &Job, slurm_dir: &Path, args: &RunSettings, registry: &Registry) -> u8 {
    let sub = match slurm::read_submission(slurm_dir) {
        Ok(s) => s,
        Err(e) => {
            say(&format!(
                "error: cannot read the submission {}: {e}\n  help: the array element must see the job's folder (a shared file system)\n",
                slurm_dir.join("submission.json").display()
            ));
            return INVALID;
        }
    };
    let signals = match Signals::install(|| {}) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return INVALID;
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let element = env("SLURM_ARRAY_TASK_ID").and_then(|e| e.parse::<u64>().ok());
    let note = ClaimNote {
        element,
        job_id: env("SLURM_ARRAY_JOB_ID"),
        node: env("SLURMD_NODENAME"),
        pid: std::process::id(),
    };
    let claims = slurm::claims_dir(slurm_dir);
    if slurm::plan_fingerprint(job) != sub.plan {
        // The job file was edited after the submission: its plan is not the one the
        // follower expects records of.
        let why = format!(
            "array element {} refused to run: {} changed after run {} was submitted (its plan differs); submit it again",
            element.map_or_else(|| "?".into(), |e| e.to_string()),
            job.path.display(),
            sub.run_id
        );
        say(&format!("error: {why}\n"));
        if let Err(e) = slurm::refuse(&claims, element, &why) {
            return claim_error(&claims, e);
        }
        return INVALID;
    }
    let mut settings = args.clone();
    settings.run_id = Some(sub.run_id.clone());
    let backend = LocalBackend::new(registry.clone());
    // Element E starts with the chunks it would have had as a fixed slice, then takes
    // what the others left: mostly no contention, and no element idles while a chunk
    // is free.
    let todo = &sub.todo;
    let first = match (element, sub.elements) {
        (Some(e), n) if n > 0 => (e.min(n - 1) as usize * todo.len()) / n as usize,
        _ => 0,
    };
    // With a time limit, no chunk is claimed that would likely not finish in time: the
    // longest chunk so far, half again, must fit in what is left.
    let limit = job.slurm.as_ref().and_then(|c| c.time_limit);
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let mut worst = OK;
    let mut ran = 0;
    let mut taken = std::collections::HashSet::new();
    loop {
        if signals.interrupted() || slurm::claiming_stopped(&claims) {
            break;
        }
        if let Some(limit) = limit
            && ran > 0
            && started.elapsed() + longest.mul_f64(1.5) > limit
        {
            say(&format!(
                "{}: not enough of the time limit left for another chunk; claiming no more\n",
                job.name
            ));
            break;
        }
        match slurm::claimed_chunks(&claims) {
            Ok(c) => taken.extend(c),
            Err(e) => return claim_error(&claims, e),
        }
        let next =
            (0..todo.len()).map(|k| todo[(first + k) % todo.len()]).find(|c| !taken.contains(c));
        let Some(chunk) = next else { break };
        match slurm::claim_chunk(&claims, chunk, &note) {
            Ok(true) => {}
            Ok(false) => {
                taken.insert(chunk);
                continue;
            }
            Err(e) => return claim_error(&claims, e),
        }
        taken.insert(chunk);
        ran += 1;
        settings.shard = Some(Shard { index: chunk, count: sub.layout.chunks });
        let control = Control::new();
        signals.register(&control);
        let t0 = Instant::now();
        let code = run_job(job, &settings, &backend, &control);
        longest = longest.max(t0.elapsed());
        signals.unregister();
        worst = exit_code::worse(worst, code);
        if code == INTERRUPTED || code == INVALID {
            break;
        }
    }
    if !args.quiet {
        say(&format!(
            "{}: array element {} ran {ran} chunk{} of run {}\n",
            job.name,
            element.map_or_else(|| "?".into(), |e| e.to_string()),
            if ran == 1 { "" } else { "s" },
            sub.run_id
        ));
    }
    if signals.interrupted() { exit_code::worse(worst, INTERRUPTED) } else { worst }
}

fn claim_error(claims: &Path, e: std::io::Error) -> u8 {
    say(&format!(
        "error: cannot claim a chunk in {}: {e}\n  help: every array element must see and write the job's folder (a shared file system)\n",
        claims.display()
    ));
    INVALID
}
