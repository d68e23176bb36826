//! `jobpool run`: wiring only. Load every job (all are checked before any runs), then
//! run them one after another: a [`Runner`] on the local backend (or, for `backend =
//! "slurm"` outside a shard, a submission followed by the Slurm backend: see
//! [`super::slurm`], which also has `--detach`, `--attach` and the array elements), its
//! events fanned out to the front ends ([`Frontends`]: journal, sinks, progress), Ctrl-C
//! turned into a cancel, and one exit code per job from [`exit_code::of`].

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use super::diag;
use super::exit_code::{self, INTERRUPTED, INVALID, OK, TASK_FAILED};
use super::frontend::{Frontends, ProgressWhen, RunProblem, error_chain, say};
use super::signals::Signals;
use crate::backend::LocalBackend;
use crate::model::{Backend, Job, TaskTemplate, args_map};
use crate::plan::Plan;
use crate::pool::Registry;
use crate::report::Format;
use crate::runner::{Control, RunError, RunOptions, Runner, workers_for};
use crate::sink::OrderedSinks;
use crate::store::{self, RunMeta, RunStore};
use crate::task;
use crate::validate;

/// Arguments of `jobpool run`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  jobpool run jobs/seed-starmap.toml
  jobpool run --workers 8 --timeout 10m jobs/
  jobpool run --set 'args.seed=[1, 2, 3]' sweep.toml
  jobpool run --resume sweep.toml        # after a crash, Ctrl-C or an edit: only what is missing
  jobpool run --dry-run sweep.toml       # check and show the plan, run nothing
  jobpool run --detach sweep.toml        # backend = \"slurm\": submit, print the run id, exit
  jobpool run --attach RUN sweep.toml    # follow that run later: statuses and sinks

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
    /// `backend = "slurm"`: submit the job array, print the run id and exit; follow it
    /// later with `--attach`.
    #[arg(long, conflicts_with_all = ["attach", "shard", "dry_run"])]
    detach: bool,
    /// Follow run RUN of a `slurm` job submitted earlier (`--detach`, or a submitting
    /// `jobpool` that went away): records as they appear, the rest as the array ends,
    /// and the sinks, as if the run had been followed from the start.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["shard", "dry_run", "resume", "run_id"])]
    attach: Option<String>,
    /// Run as an element of a Slurm job array submitted by jobpool: claim chunks of the
    /// run from the submission folder DIR and run them (written into `element.sh`).
    #[arg(long, value_name = "DIR", hide = true, conflicts_with_all = ["shard", "dry_run"])]
    slurm_element: Option<PathBuf>,
    #[command(flatten)]
    settings: RunSettings,
}

/// How jobs run, shared by `run` and `exec`.
#[derive(Debug, Clone, Args)]
pub struct RunSettings {
    /// Run only submissions whose key has no `ok` record in an earlier run; reuse those.
    #[arg(long)]
    pub resume: bool,
    /// Check the job and show what would run; run nothing and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress bar on stderr: `auto` shows it when stderr is a terminal.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    pub progress: ProgressWhen,
    /// No summary and no progress bar; diagnostics still print.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run only slice I of N equal slices of the plan (0-based) and journal its records
    /// as a shard of one run; `jobpool collect` writes the sinks. For array jobs of any
    /// engine: Slurm, Kubernetes, a CI matrix, ssh.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::plan::Shard>,
    /// The run's id (default: new; with `--shard`, derived from the job and its plan, so
    /// every shard of the same job agrees without talking to the others).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Write a report when the run ends: FORMAT is md, html, json or junit; PATH may
    /// use `{name}` (the job's name) and `{run}` (the run id). Repeatable.
    #[arg(long = "report", value_name = "FORMAT=PATH", value_parser = parse_report)]
    pub reports: Vec<(Format, String)>,
    /// The `--set` (and `--timeout`) overrides the job was loaded with: a `slurm` run
    /// passes them to every array element.
    #[arg(skip)]
    pub overrides: Vec<String>,
    /// How to run only what is left, when it is not `jobpool run --resume JOB` (`exec`
    /// has no job file: it says to run the same command line with `--resume`).
    #[arg(skip)]
    pub rerun_hint: Option<String>,
    /// `--detach`: a `slurm` job is submitted, not followed.
    #[arg(skip)]
    pub detach: bool,
}

fn parse_report(s: &str) -> Result<(Format, String), String> {
    let (f, path) = s
        .split_once('=')
        .filter(|(_, p)| !p.is_empty())
        .ok_or_else(|| format!("`{s}`: expected FORMAT=PATH, e.g. html=report.html"))?;
    let format = Format::from_name(f)
        .ok_or_else(|| format!("unknown report format `{f}`; use md, html, json or junit"))?;
    Ok((format, path.to_string()))
}

/// The id every shard of a run of `job` in `count` slices derives alike: the job's name,
/// task definition and plan size, hashed.
pub fn shard_run_id(job: &Job, count: u64) -> String {
    let mut input = job.name.as_bytes().to_vec();
    input.extend_from_slice(&crate::plan::task_key_prefix(job));
    input.extend_from_slice(&Plan::new(job).len().to_le_bytes());
    input.extend_from_slice(&count.to_le_bytes());
    format!("shards-{:012x}", xxhash_rust::xxh3::xxh3_64(&input) >> 16)
}

/// Run every job named on the command line.
pub fn run(args: RunArgs, registry: &Registry) -> u8 {
    let paths = match validate::collect(&args.jobs) {
        Ok(found) => {
            for path in &found.skipped {
                say(&format!("{}\n", diag::skipped_note(path)));
            }
            found.jobs
        }
        Err(e) => {
            eprint!("{}", diag::render(&e));
            return INVALID;
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
    // Array elements size their pool from Slurm's CPUs, not from `--workers`.
    let mut settings = args.settings;
    settings.overrides = overrides.iter().filter(|o| !o.starts_with("workers=")).cloned().collect();
    settings.detach = args.detach;
    let opts = super::load_options(registry, overrides);

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
        return INVALID;
    }
    let one_slurm_job = |flag: &str| -> Result<&Job, u8> {
        match jobs.as_slice() {
            [job] if job.backend == Backend::Slurm => Ok(job),
            [job] => Err(usage(format!(
                "{flag} is for jobs with backend = \"slurm\"; {} has backend = \"{}\"",
                job.path.display(),
                format!("{:?}", job.backend).to_lowercase()
            ))),
            _ => Err(usage(format!("{flag} takes one job file, not {}", jobs.len()))),
        }
    };
    if let Some(run_id) = &args.attach {
        return match one_slurm_job("--attach") {
            Ok(job) => super::slurm::attach(job, run_id, &settings, registry),
            Err(code) => code,
        };
    }
    if let Some(dir) = &args.slurm_element {
        return match one_slurm_job("--slurm-element") {
            Ok(job) => super::slurm::element(job, dir, &settings, registry),
            Err(code) => code,
        };
    }
    if settings.detach
        && let Some(job) = jobs.iter().find(|j| j.backend != Backend::Slurm)
    {
        return usage(format!(
            "--detach is for jobs with backend = \"slurm\"; {} has backend = \"{}\"",
            job.path.display(),
            format!("{:?}", job.backend).to_lowercase()
        ));
    }
    run_jobs(&jobs, &settings, registry)
}

/// A usage error (exit code 2).
fn usage(message: String) -> u8 {
    say(&format!("error: {message}\n"));
    INVALID
}

/// Run loaded jobs one after another; the most serious exit code.
pub fn run_jobs(jobs: &[Job], settings: &RunSettings, registry: &Registry) -> u8 {
    let signals = match Signals::install(|| {}) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return INVALID;
        }
    };
    let backend = LocalBackend::new(registry.clone());
    if let Some(last) = jobs.last() {
        backend.last_job(last);
    }
    let mut worst = OK;
    for (n, job) in jobs.iter().enumerate() {
        let control = Control::new();
        if !signals.register(&control) && n > 0 {
            // Interrupted between two jobs: the rest do not start. (Interrupted before
            // the first: it starts cancelled, so its sinks and run folder are complete.)
            signals.unregister();
            return exit_code::worse(worst, INTERRUPTED);
        }
        let code = if settings.dry_run {
            dry_run(job)
        } else {
            run_job(job, settings, &backend, &control)
        };
        signals.unregister();
        worst = exit_code::worse(worst, code);
        if code == INTERRUPTED {
            break;
        }
    }
    worst
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A problem before the run could start, as exit code 1.
pub(super) fn fail(what: String, help: Option<String>) -> u8 {
    say(&diag::render(&RunProblem { what, help }));
    TASK_FAILED
}

pub(super) fn run_job(
    job: &Job,
    args: &RunSettings,
    backend: &LocalBackend,
    control: &Control,
) -> u8 {
    let resume = if args.resume {
        match store::resume_index_saved(job) {
            Ok(ix) => Some(ix),
            Err(e) => return fail(format!("cannot read earlier runs of {}: {e}", job.name), None),
        }
    } else {
        None
    };
    run_job_with(job, args, resume, backend, control)
}

/// Run one job with a resume index the caller already read (`--resume`; watch mode reads
/// it to say why each submission runs, then hands it over).
pub(super) fn run_job_with(
    job: &Job,
    args: &RunSettings,
    resume: Option<store::ResumeIndex>,
    backend: &LocalBackend,
    control: &Control,
) -> u8 {
    if job.backend == Backend::Slurm && args.shard.is_none() {
        return super::slurm::submit_and_follow(job, args, resume, control);
    }
    // A run id the user gave, or a shard's (shared by its shards); otherwise the store
    // makes a new one, and another if that one is taken (runs started within the same
    // second share the time stamp, and then differ by their random suffix only).
    let run_id = match (&args.run_id, args.shard) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(shard)) => Some(shard_run_id(job, shard.count)),
        (None, None) => None,
    };
    let plan_len = Plan::new(job).len();
    let to_run = args.shard.map_or(plan_len, |s| {
        let r = s.range(plan_len);
        r.end - r.start
    });
    // The workers load while the run folder and the sinks are made (the runner takes
    // this pool when it asks for the same worker count; with `--resume` it may ask for
    // fewer, so the pool is not started ahead then).
    if resume.as_ref().is_none_or(|ix| ix.is_empty()) {
        backend.prestart(job, crate::runner::workers_for(job, to_run));
    }
    let code = prepare_and_drive(job, args, resume, backend, control, run_id, to_run);
    backend.discard_prestarted();
    code
}

fn prepare_and_drive(
    job: &Job,
    args: &RunSettings,
    resume: Option<store::ResumeIndex>,
    backend: &LocalBackend,
    control: &Control,
    run_id: Option<String>,
    to_run: u64,
) -> u8 {
    let meta = RunMeta {
        run_id,
        argv: std::env::args().collect(),
        submissions: Some(to_run),
        workers: None,
        resume: args.resume,
        shard: args.shard.map(|s| (s.index, s.count)),
        into_existing: false,
    };
    let journal = match RunStore::create(job, meta) {
        Ok(s) => s,
        Err(e) => return cannot_create(job, e),
    };
    // A shard writes no sinks: `jobpool collect` writes them complete, in order.
    let sinks = match args.shard {
        Some(_) => None,
        None => match open_sinks(job, journal.run_id()) {
            Ok(s) => Some(s),
            Err(code) => {
                // Nothing ran: the run folder says so rather than staying "running".
                let _ = journal.finish(store::RunEnd { exit_code: TASK_FAILED, cancelled: None });
                return code;
            }
        },
    };
    let options = RunOptions { run_id: journal.run_id().to_string(), resume, shard: args.shard };
    drive(job, args, backend, journal, sinks, options, control)
}

/// The run folder could not be created: exit code 1 with what to do.
pub(super) fn cannot_create(job: &Job, e: std::io::Error) -> u8 {
    fail(
        format!("cannot create the run folder under {}: {e}", job.dir.display()),
        Some(
            "jobpool keeps runs in .jobpool/ beside the job file; it must be writable; \
             a run id given with --run-id must be new"
                .into(),
        ),
    )
}

/// The job's sinks, or the exit code of a sink that cannot be opened (said).
pub(super) fn open_sinks(job: &Job, run_id: &str) -> Result<OrderedSinks, u8> {
    OrderedSinks::open(job, run_id).map_err(|e| {
        fail(
            format!("cannot open a sink: {}", error_chain(&e)),
            Some(format!(
                "nothing ran; a sink's folder must exist or be creatable, and be \
                 writable: fix its `to` in {} or the folder, then run again",
                job.path.display()
            )),
        )
    })
}

/// Run `job` on `backend` with its journal and sinks open: the events to the front ends,
/// the exit code from them.
pub(super) fn drive(
    job: &Job,
    args: &RunSettings,
    backend: &dyn crate::backend::Backend,
    journal: RunStore,
    sinks: Option<OrderedSinks>,
    options: RunOptions,
    control: &Control,
) -> u8 {
    let run_id = &options.run_id;
    let reports = args
        .reports
        .iter()
        .map(|(f, p)| (*f, PathBuf::from(p.replace("{name}", &job.name).replace("{run}", run_id))))
        .collect();
    let mut frontends = Frontends::new(job, journal, sinks, args.progress, args.quiet)
        .shard(args.shard)
        .rerun_hint(args.rerun_hint.clone())
        .with_reports(reports);
    match Runner::new(backend).run(job, options, control, |e| frontends.on_event(e)) {
        Ok(_) => frontends.exit_code().unwrap_or(TASK_FAILED),
        Err(RunError::Backend(e)) => {
            frontends.abort();
            fail(e.message, e.help)
        }
    }
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
    OK
}
