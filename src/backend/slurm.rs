//! The Slurm backend: one job array whose elements claim chunks of the plan.
//!
//! Owns: the submission ([`submit`]: the batch script, the list of chunks to run and a
//! reference to the plan written to the shared folder, the records `--resume` reuses set
//! aside, one `sbatch --array=0-K%L --parsable`), the elements' claiming of chunks
//! ([`claim_chunk`]: one hard link per claim, atomic on NFS too), and following a
//! submission ([`SlurmBackend`], in the same process or later with `--attach`): `squeue`,
//! with `sacct` for the elements `squeue` has forgotten, polled with back-off; the claims
//! and the chunk journals the elements write (`store::shard_stem`) tailed and each new
//! record turned into [`BackendEvent::Finished`], Slurm's pending reason into
//! [`BackendEvent::Waiting`], and, at the end, the state of an element into the records
//! its claimed chunks never got (`TIMEOUT` → timeout, `OUT_OF_MEMORY`/`FAILED`/
//! `NODE_FAIL` → crashed, `CANCELLED` → cancelled).
//! Must not: apply run policies (the runner does), print, or write the run's journal
//! and sinks (the front ends do, from the events).
//!
//! ```text
//!  submit: resume index ─▶ resumed.jsonl + the chunks to run ─▶ submission.json,
//!          element.sh ─▶ sbatch --array=0-K%L ─▶ job id (─▶ exit, with --detach)
//!  element E (cli::slurm): loop { claim the next free chunk C (link claims/chunk-C)
//!                                 ─▶ run --shard C/CHUNKS on the local pool }
//!  next_event (forwarder thread, now or on --attach):
//!     take Work ─▶ resumed.jsonl ─▶ Finished(resumed record) ─▶ loop {
//!        new claims ─▶ who runs which chunk
//!        tail shard-CCCC-of-NNNN.jsonl of claimed chunks ─▶ Finished(record)
//!        squeue -r -t all -j ID (0.5 s, growing to 5 s), sacct for what it forgot
//!            ─▶ Waiting{queued, running, reason}
//!        every element ended ─▶ records for what is missing, by element state ─▶ None
//!     }
//!  ExecutionControl::cancel ─▶ scancel ID
//! ```
//!
//! The pure parts (the layout, the `sbatch` command line, the batch script, parsing
//! `squeue` and `sacct`, states → statuses) are functions with unit tests;
//! `tests/slurm.rs` runs the rest against a real cluster.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Backend, BackendError, BackendEvent, Execution, ExecutionControl, StartRequest, Work};
use crate::model::{Job, SlurmConfig, TaskTemplate};
use crate::plan::{Plan, Shard};
use crate::record::{Status, TaskRecord};
use crate::store::{self, ResumeIndex};

/// At most this many array elements when `per-element` is not given.
pub const DEFAULT_MAX_ELEMENTS: u64 = 1000;

/// How the submitting `jobpool` asks each element to run.
#[derive(Debug, Clone)]
pub struct SlurmSettings {
    /// The run's id: every element journals its shard into this run's folder.
    pub run_id: String,
    /// `--set KEY=VALUE` (and `timeout=`) overrides, passed to every element.
    pub overrides: Vec<String>,
    /// `--resume`: elements skip what earlier runs finished.
    pub resume: bool,
    /// The `jobpool` binary the elements run (it must exist at this path on the nodes).
    pub exe: PathBuf,
}

/// Chunks per array element's share of the plan: an element that is done with its
/// chunk claims the next free one, so a slow node holds up at most one small chunk.
pub const CHUNKS_PER_ELEMENT: u64 = 4;

/// How a plan is cut: into `chunks` (what an element claims and runs at a time, each
/// journaled as shard `C/chunks`), and elements of about `per_element` submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Submissions per array element (`[slurm] per-element`, or enough for at most
    /// [`DEFAULT_MAX_ELEMENTS`] elements).
    pub per_element: u64,
    /// The chunks of the plan.
    pub chunks: u64,
}

impl Layout {
    /// The layout of a plan of `plan_len` submissions.
    pub fn new(plan_len: u64, per_element: Option<u64>) -> Layout {
        let per = per_element.unwrap_or_else(|| plan_len.div_ceil(DEFAULT_MAX_ELEMENTS)).max(1);
        let chunk = per.div_ceil(CHUNKS_PER_ELEMENT).max(1);
        Layout { per_element: per, chunks: plan_len.div_ceil(chunk).max(1) }
    }

    /// The submissions of chunk `c`.
    pub fn chunk(&self, c: u64, plan_len: u64) -> Range<u64> {
        Shard { index: c, count: self.chunks }.range(plan_len)
    }

    /// The chunk holding submission `index`.
    pub fn chunk_of(&self, index: u64, plan_len: u64) -> u64 {
        slice_of(index, plan_len, self.chunks)
    }

    /// The array elements for `todo` submissions in `todo_chunks` chunks: one per
    /// `per_element` submissions, never more than there are chunks to claim.
    pub fn elements(&self, todo: u64, todo_chunks: u64) -> u64 {
        todo.div_ceil(self.per_element).min(todo_chunks).max(1)
    }
}

/// The slice of `slices` equal slices of a plan of `plan_len` holding submission `index`.
pub fn slice_of(index: u64, plan_len: u64, slices: u64) -> u64 {
    let start = |e: u64| Shard { index: e.min(slices - 1), count: slices }.range(plan_len).start;
    let mut e = ((u128::from(index) * u128::from(slices)) / u128::from(plan_len.max(1))) as u64;
    e = e.min(slices - 1);
    while e + 1 < slices && start(e + 1) <= index {
        e += 1;
    }
    while e > 0 && start(e) > index {
        e -= 1;
    }
    e
}

/// A duration as `sbatch --time` takes it, `D-HH:MM:SS`, rounded up to the second.
pub fn slurm_time(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}-{:02}:{:02}:{:02}", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60)
}

/// Whether the user's `sbatch-args` already set an option (`--name=..`, `--name ..`, or
/// the short form `-c`).
fn has_option(args: &[String], long: &str, short: Option<&str>) -> bool {
    args.iter().any(|a| {
        a == long
            || a.strip_prefix(long).is_some_and(|r| r.starts_with('='))
            || short.is_some_and(|s| a.starts_with(s))
    })
}

/// The `sbatch` arguments (without the program): ours first, the user's `sbatch-args`
/// after them, the batch script last.
pub fn sbatch_args(
    config: &SlurmConfig,
    elements: u64,
    job_name: &str,
    workers: Option<usize>,
    output: &Path,
    script: &Path,
) -> Vec<String> {
    let mut array = format!("--array=0-{}", elements - 1);
    if let Some(l) = config.array_limit {
        array.push_str(&format!("%{l}"));
    }
    let mut argv = vec!["--parsable".to_string(), array, format!("--job-name=jobpool-{job_name}")];
    argv.push(format!("--output={}", output.display()));
    if let Some(p) = &config.partition {
        argv.push(format!("--partition={p}"));
    }
    if let Some(t) = config.time_limit {
        argv.push(format!("--time={}", slurm_time(t)));
    }
    if let Some(w) = workers
        && !has_option(&config.sbatch_args, "--cpus-per-task", Some("-c"))
    {
        argv.push(format!("--cpus-per-task={w}"));
    }
    argv.extend(config.sbatch_args.iter().cloned());
    argv.push(script.display().to_string());
    argv
}

/// `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script every element runs: claim chunks of the run from `slurm_dir` and
/// run them with the local process pool sized by `SLURM_CPUS_PER_TASK`.
pub fn element_script(
    exe: &Path,
    job_file: &Path,
    slurm_dir: &Path,
    settings: &SlurmSettings,
) -> String {
    let run_id = &settings.run_id;
    let mut cmd = vec![
        sh_quote(&exe.display().to_string()),
        "run".into(),
        "--slurm-element".into(),
        sh_quote(&slurm_dir.display().to_string()),
        "--run-id".into(),
        sh_quote(run_id),
        "--workers".into(),
        "\"${SLURM_CPUS_PER_TASK:-1}\"".into(),
        "--progress".into(),
        "never".into(),
    ];
    if settings.resume {
        cmd.push("--resume".into());
    }
    for o in &settings.overrides {
        cmd.push("--set".into());
        cmd.push(sh_quote(o));
    }
    cmd.push(sh_quote(&job_file.display().to_string()));
    format!(
        "#!/bin/sh\n# Written by jobpool for run {run_id}: every array element claims chunks of \
         the plan (claims/) and runs them.\nexec {}\n",
        cmd.join(" ")
    )
}

/// What Slurm says of one array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementState {
    /// Not started (`PENDING`, `REQUEUED`, ...), with Slurm's reason.
    Pending(Option<String>),
    /// Started and not ended (`RUNNING`, `COMPLETING`, `SUSPENDED`, ...).
    Running,
    /// Ended with exit code 0.
    Completed,
    /// Its time limit passed (`TIMEOUT`, `DEADLINE`).
    Timeout,
    /// Cancelled (`scancel`, or by an administrator).
    Cancelled,
    /// Ended badly (`FAILED`, `OUT_OF_MEMORY`, `NODE_FAIL`, `BOOT_FAIL`, `PREEMPTED`, ...):
    /// Slurm's state name.
    Failed(String),
}

impl ElementState {
    /// From a state name of `squeue %T` or `sacct State` (`CANCELLED by 0` included) and
    /// `squeue`'s reason (`None` when Slurm has none).
    pub fn parse(state: &str, reason: Option<&str>) -> ElementState {
        let name = state.split_whitespace().next().unwrap_or("").trim_end_matches('+');
        match name {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
            | "CONFIGURING" => {
                ElementState::Pending(reason.filter(|r| *r != "None").map(str::to_string))
            }
            "COMPLETED" => ElementState::Completed,
            "TIMEOUT" | "DEADLINE" => ElementState::Timeout,
            "CANCELLED" => ElementState::Cancelled,
            "FAILED" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED"
            | "SPECIAL_EXIT" | "REVOKED" => ElementState::Failed(name.to_string()),
            // RUNNING, COMPLETING, SUSPENDED, STOPPED, SIGNALING, STAGE_OUT, RESIZING, and
            // any state a newer Slurm adds: not ended yet.
            _ => ElementState::Running,
        }
    }

    /// Whether the element ended.
    pub fn ended(&self) -> bool {
        !matches!(self, ElementState::Pending(_) | ElementState::Running)
    }

    /// The status of a submission of this element that has no record after it ended.
    pub fn status(&self) -> Status {
        match self {
            ElementState::Timeout => Status::Timeout,
            ElementState::Cancelled => Status::Cancelled,
            _ => Status::Crashed,
        }
    }
}

/// Parse `squeue -h -r -t all -j ID -o '%i|%T|%r'`: `(element, state)` pairs. Lines of
/// other jobs and a still-folded `ID_[3-9%2]` are expanded or skipped as they say.
pub fn parse_squeue(text: &str, job_id: &str) -> Vec<(u64, ElementState)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.trim().splitn(3, '|');
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else { continue };
        let reason = parts.next().map(str::trim);
        let state = ElementState::parse(state.trim(), reason);
        for e in elements_of_id(id.trim(), job_id) {
            out.push((e, state.clone()));
        }
    }
    out
}

/// Parse `sacct -n -P -X -j ID -o JobID,State`.
pub fn parse_sacct(text: &str, job_id: &str) -> Vec<(u64, ElementState)> {
    parse_squeue(text, job_id)
}

/// The array elements an id names: `12_3` → 3, `12_[0-2,5%4]` → 0, 1, 2, 5.
fn elements_of_id(id: &str, job_id: &str) -> Vec<u64> {
    let Some(rest) = id.strip_prefix(job_id).and_then(|r| r.strip_prefix('_')) else {
        return Vec::new();
    };
    if let Ok(e) = rest.parse() {
        return vec![e];
    }
    let inner = rest.trim_start_matches('[').trim_end_matches(']');
    let inner = inner.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in inner.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u64>().ok()),
        }
    }
    out
}

/// The job id in `sbatch --parsable`'s output (`123` or `123;cluster`).
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = id.split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// Run a Slurm command; its stdout, or a message with its stderr.
fn slurm_command(program: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(if err.is_empty() {
            format!("{program} exited with {}", out.status)
        } else {
            err.into()
        })
    }
}

/// A Slurm tool on PATH, or the error to show.
fn find_tool(name: &str) -> Result<PathBuf, BackendError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        BackendError {
            message: format!("backend \"slurm\": `{name}` not found on PATH"),
            help: Some(
                "run jobpool on a machine that submits to Slurm (a login node), or use \
                 backend = \"processes\"; without Slurm, `jobpool run --shard I/N` runs \
                 slices of the job on any engine"
                    .into(),
            ),
        }
    })
}

/// What a submission wrote to its folder (`submission.json`): enough to follow it from
/// another process (`--attach`) and for the elements to know what to claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// The run's id.
    pub run_id: String,
    /// The job file (absolute).
    pub job_file: PathBuf,
    /// Slurm's id of the array; `None` before `sbatch` answered, or when nothing was
    /// left to run (`--resume` found every submission done).
    pub job_id: Option<String>,
    /// Submissions in the plan.
    pub plan_len: u64,
    /// [`plan_fingerprint`] of the job as submitted: attaching with an edited job file
    /// is refused.
    pub plan: String,
    /// How the plan is cut into chunks.
    pub layout: Layout,
    /// Array elements submitted.
    pub elements: u64,
    /// The chunks the elements claim, in plan order (with `--resume`, those with
    /// something left to run).
    pub todo: Vec<u64>,
    /// Submissions in those chunks that need running.
    pub todo_submissions: u64,
    /// Submissions whose `ok` record an earlier run had (in `resumed.jsonl`).
    pub resumed: u64,
    /// The run's folder, where the chunk journals go.
    pub shard_journals: PathBuf,
    /// `--set` overrides the job was loaded with (every element uses them).
    pub overrides: Vec<String>,
    /// `--resume`.
    pub resume: bool,
    /// The `jobpool` the elements run.
    pub jobpool: PathBuf,
    /// The `sbatch` arguments.
    pub sbatch: Vec<String>,
}

/// A submission and the folder it lives in.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// What was submitted.
    pub submission: Submission,
    /// Its folder: `element.sh`, `submission.json`, `claims/`, Slurm's output files.
    pub slurm_dir: PathBuf,
}

/// The job's folder, absolute: the elements and Slurm's output files do not depend on a
/// working folder.
fn job_dir(job: &Job) -> PathBuf {
    std::path::absolute(&job.dir).unwrap_or_else(|_| job.dir.clone())
}

/// The folder of run `run_id` of `job`.
pub fn run_dir(job: &Job, run_id: &str) -> PathBuf {
    store::job_runs_dir(&job_dir(job), &job.name).join(run_id)
}

/// Where run `run_id` of `job` keeps its submission: `slurm/` in the run's folder, or
/// `<shared-dir>/<job>/<run id>/`.
pub fn slurm_dir(job: &Job, run_id: &str) -> PathBuf {
    match job.slurm.as_ref().and_then(|c| c.shared_dir.as_ref()) {
        Some(d) => job_dir(job).join(d).join(store::folder_name(&job.name)).join(run_id),
        None => run_dir(job, run_id).join("slurm"),
    }
}

/// The claims of a submission: one file per claimed chunk.
pub fn claims_dir(slurm_dir: &Path) -> PathBuf {
    slurm_dir.join("claims")
}

/// What the plan is: the job's name and every submission's key (its task definition
/// and arguments), in order, hashed. One pass over the plan.
pub fn plan_fingerprint(job: &Job) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(job.name.as_bytes());
    for sub in Plan::new(job) {
        h.update(b"\n");
        h.update(sub.key.as_bytes());
    }
    format!("{:016x}", h.digest())
}

/// Why an element refused to run (its job file no longer gives the submitted plan),
/// for the follower to report: `claims/refused-E`.
pub fn refuse(claims: &Path, element: Option<u64>, why: &str) -> io::Result<()> {
    let name = format!("refused-{}", element.map_or_else(|| "x".into(), |e| e.to_string()));
    fs::write(claims.join(name), why)
}

/// The first refusal an element left, if any.
fn refusal(claims: &Path) -> Option<String> {
    let mut found: Vec<PathBuf> = fs::read_dir(claims)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("refused-"))
        })
        .collect();
    found.sort();
    let text = fs::read_to_string(found.first()?).ok()?;
    Some(text.trim().to_string())
}

fn write_submission(slurm_dir: &Path, submission: &Submission) -> io::Result<()> {
    let path = slurm_dir.join("submission.json");
    let temp = slurm_dir.join(".submission.json.tmp");
    let mut text = serde_json::to_vec_pretty(submission).map_err(io::Error::from)?;
    text.push(b'\n');
    fs::write(&temp, text)?;
    fs::rename(&temp, path)
}

/// Read the submission in `slurm_dir`.
pub fn read_submission(slurm_dir: &Path) -> io::Result<Submission> {
    let text = fs::read(slurm_dir.join("submission.json"))?;
    serde_json::from_slice(&text).map_err(io::Error::other)
}

/// The submission of run `run_id` of `job`, for `--attach`: a clear message when there
/// is no such run, it was not submitted to Slurm, or the job file changed since.
pub fn find_submission(job: &Job, run_id: &str) -> Result<Submitted, BackendError> {
    let run = run_dir(job, run_id);
    if !run.is_dir() {
        return Err(BackendError {
            message: format!("{} has no run {run_id} (no folder {})", job.name, run.display()),
            help: Some(format!(
                "`jobpool runs {}` lists the runs; `jobpool run --detach` printed the id",
                job.path.display()
            )),
        });
    }
    let dir = slurm_dir(job, run_id);
    let submission = match read_submission(&dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackendError::new(format!(
                "run {run_id} of {} was not submitted to Slurm: {} does not exist",
                job.name,
                dir.join("submission.json").display()
            )));
        }
        Err(e) => {
            return Err(BackendError::new(format!(
                "cannot read {}: {e}",
                dir.join("submission.json").display()
            )));
        }
    };
    if submission.job_id.is_none() && submission.elements > 0 {
        return Err(BackendError {
            message: format!(
                "run {run_id} of {} was never submitted: sbatch did not accept it",
                job.name
            ),
            help: Some(format!("run the job again: jobpool run {}", job.path.display())),
        });
    }
    if submission.plan != plan_fingerprint(job) {
        return Err(BackendError {
            message: format!(
                "{} changed since run {run_id} was submitted: its plan is not the one the array runs",
                job.path.display()
            ),
            help: Some(format!(
                "attach with the job file as it was submitted (with the same --set), or write \
                 the sinks from what the elements recorded: jobpool collect --run-id {run_id} {}",
                job.path.display()
            )),
        });
    }
    Ok(Submitted { submission, slurm_dir: dir })
}

/// Submit `job` as one job array for run `settings.run_id` (whose folder exists):
/// with a resume index, set aside the records it reuses (`resumed.jsonl`) and submit
/// only elements for the chunks that have something left to run (none at all when
/// nothing is left).
pub fn submit(
    job: &Job,
    settings: &SlurmSettings,
    resume: Option<ResumeIndex>,
) -> Result<Submitted, BackendError> {
    let config = job.slurm.clone().unwrap_or_default();
    let sbatch = find_tool("sbatch")?;
    find_tool("squeue")?;
    let plan_len = Plan::new(job).len();
    let layout = Layout::new(plan_len, config.per_element);
    let run_id = &settings.run_id;
    let run_dir = run_dir(job, run_id);
    let slurm_dir = slurm_dir(job, run_id);
    let io_err = |what: &str, p: &Path, e: io::Error| {
        BackendError::new(format!("cannot write {what} {}: {e}", p.display()))
    };
    let claims = claims_dir(&slurm_dir);
    fs::create_dir_all(&claims).map_err(|e| io_err("the folder", &claims, e))?;

    // What runs: with a resume index, the submissions it has no `ok` record for (taken
    // the way the runner takes them: a key is used once).
    let mut todo = Vec::new();
    let (mut todo_submissions, mut resumed) = (0u64, 0u64);
    match resume.filter(|ix| !ix.is_empty()) {
        Some(mut ix) => {
            let path = slurm_dir.join("resumed.jsonl");
            let mut write = || -> io::Result<()> {
                let mut w = BufWriter::new(File::create(&path)?);
                let mut plan = Plan::new(job);
                for c in 0..layout.chunks {
                    let r = layout.chunk(c, plan_len);
                    let mut runs = false;
                    for sub in plan.by_ref().take((r.end - r.start) as usize) {
                        match ix.take(&sub.key) {
                            Some(rec) => {
                                serde_json::to_writer(&mut w, &rec.resumed_at(sub.index))?;
                                w.write_all(b"\n")?;
                                resumed += 1;
                            }
                            None => {
                                runs = true;
                                todo_submissions += 1;
                            }
                        }
                    }
                    if runs {
                        todo.push(c);
                    }
                }
                w.flush()
            };
            write().map_err(|e| io_err("the resumed records", &path, e))?;
        }
        None if plan_len > 0 => {
            todo = (0..layout.chunks).collect();
            todo_submissions = plan_len;
        }
        None => {}
    }
    let elements =
        if todo.is_empty() { 0 } else { layout.elements(todo_submissions, todo.len() as u64) };
    let job_file = std::path::absolute(&job.path).unwrap_or_else(|_| job.path.clone());
    let script_path = slurm_dir.join("element.sh");
    let argv = sbatch_args(
        &config,
        elements.max(1),
        &job.name,
        job.workers.map(|w| w.get()),
        &slurm_dir.join("element-%a.out"),
        &script_path,
    );
    let mut submission = Submission {
        run_id: run_id.clone(),
        job_file: job_file.clone(),
        job_id: None,
        plan_len,
        plan: plan_fingerprint(job),
        layout,
        elements,
        todo,
        todo_submissions,
        resumed,
        shard_journals: run_dir,
        overrides: settings.overrides.clone(),
        resume: settings.resume,
        jobpool: settings.exe.clone(),
        sbatch: argv.clone(),
    };
    let reference = slurm_dir.join("submission.json");
    // Before `sbatch`: an element may start at once and reads what to claim from it.
    write_submission(&slurm_dir, &submission)
        .map_err(|e| io_err("the plan reference", &reference, e))?;
    if elements == 0 {
        return Ok(Submitted { submission, slurm_dir });
    }
    let script = element_script(&settings.exe, &job_file, &slurm_dir, settings);
    fs::write(&script_path, script).map_err(|e| io_err("the batch script", &script_path, e))?;

    let out = Command::new(&sbatch)
        .args(&argv)
        .output()
        .map_err(|e| BackendError::new(format!("cannot run {}: {e}", sbatch.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let job_id = match (out.status.success(), parse_job_id(&stdout)) {
        (true, Some(id)) => id,
        _ => {
            let said = [stderr.trim(), stdout.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(BackendError {
                message: format!(
                    "sbatch refused the submission of {}: {}",
                    job.name,
                    if said.is_empty() { format!("{}", out.status) } else { said }
                ),
                help: Some(format!(
                    "check `[slurm]` (partition, time-limit, sbatch-args) in {}; the \
                     command was: sbatch {}",
                    job.path.display(),
                    argv.join(" ")
                )),
            });
        }
    };
    submission.job_id = Some(job_id.clone());
    if let Err(e) = write_submission(&slurm_dir, &submission) {
        // The array runs: it must not run unfollowed and unfindable.
        let _ = slurm_command("scancel", std::slice::from_ref(&job_id));
        return Err(io_err("the plan reference", &reference, e));
    }
    Ok(Submitted { submission, slurm_dir })
}

/// What a claim file says: who took the chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimNote {
    /// The array element (`SLURM_ARRAY_TASK_ID`).
    pub element: Option<u64>,
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub job_id: Option<String>,
    /// The node (`SLURMD_NODENAME`).
    pub node: Option<String>,
    /// The claiming process.
    pub pid: u32,
}

fn claim_path(claims: &Path, chunk: u64) -> PathBuf {
    claims.join(format!("chunk-{chunk:06}"))
}

/// Claim `chunk` in the folder `claims`: `Ok(true)` when this caller has it now,
/// `Ok(false)` when someone else had claimed it.
///
/// The note is written to a file of this process's own, then hard-linked to the chunk's
/// claim name: `link` fails when the name exists, atomically, on NFS as on a local disk,
/// and the claim is complete when it appears. (On NFS the reply to a `link` that
/// succeeded can be lost; the link count of our own file then says it did.)
pub fn claim_chunk(claims: &Path, chunk: u64, note: &ClaimNote) -> io::Result<bool> {
    let target = claim_path(claims, chunk);
    let temp = claims.join(format!(
        ".claiming-{chunk:06}-{}-{}-{}",
        note.node.as_deref().unwrap_or("local"),
        note.element.map_or_else(|| "x".to_string(), |e| e.to_string()),
        note.pid
    ));
    fs::write(&temp, serde_json::to_vec(note).map_err(io::Error::from)?)?;
    let won = match fs::hard_link(&temp, &target) {
        Ok(()) => Ok(true),
        Err(e) => match fs::metadata(&temp) {
            Ok(m) if m.nlink() == 2 => Ok(true),
            _ if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            _ => Err(e),
        },
    };
    let _ = fs::remove_file(&temp);
    won
}

/// The chunks claimed so far in `claims`.
pub fn claimed_chunks(claims: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(claims)? {
        let name = entry?.file_name();
        if let Some(c) = name.to_str().and_then(|n| n.strip_prefix("chunk-")?.parse().ok()) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Tell the elements to claim no more chunks (the run was cancelled or takes no more).
pub fn stop_claiming(claims: &Path) -> io::Result<()> {
    fs::write(claims.join("stop"), "")
}

/// Whether the elements are to claim no more chunks.
pub fn claiming_stopped(claims: &Path) -> bool {
    claims.join("stop").exists()
}

/// Follows a submitted job array (`backend = "slurm"`), in the process that submitted
/// it or later (`jobpool run --attach`).
pub struct SlurmBackend {
    submitted: Submitted,
}

impl SlurmBackend {
    /// A backend following `submitted`.
    pub fn new(submitted: Submitted) -> SlurmBackend {
        SlurmBackend { submitted }
    }
}

impl Backend for SlurmBackend {
    fn name(&self, _job: &Job) -> String {
        "slurm".into()
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Box<dyn Execution>, BackendError> {
        let job = request.job;
        let Submitted { submission: sub, slurm_dir } = self.submitted.clone();
        let resumed_path = slurm_dir.join("resumed.jsonl");
        let resumed = match store::Records::open(&resumed_path) {
            Ok(r) => Some(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(BackendError::new(format!(
                    "cannot read {}: {e}",
                    resumed_path.display()
                )));
            }
        };
        let chunks = sub.layout.chunks as usize;
        let elements = sub.elements as usize;
        let mut todo = vec![false; chunks];
        for c in &sub.todo {
            if let Some(t) = todo.get_mut(*c as usize) {
                *t = true;
            }
        }
        let control = Arc::new(SlurmControl {
            job_id: sub.job_id.clone(),
            cancelled: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        Ok(Box::new(SlurmExecution {
            job: job.clone(),
            config: job.slurm.clone().unwrap_or_default(),
            work: Some(request.work),
            job_id: sub.job_id.clone(),
            plan_len: sub.plan_len,
            layout: sub.layout,
            run_dir: sub.shard_journals.clone(),
            claims: claims_dir(&slurm_dir),
            slurm_dir,
            control,
            resumed,
            expected: Vec::new(),
            outstanding: vec![0; chunks],
            todo,
            owner: vec![None; chunks],
            unclaimed: sub.todo.len() as u64,
            states: vec![ElementState::Pending(None); elements],
            started: vec![false; elements],
            tails: HashMap::new(),
            held: BTreeMap::new(),
            events: VecDeque::new(),
            last_waiting: None,
            next_poll: Instant::now(),
            interval: FIRST_POLL,
            failures: 0,
            pending_cancelled: false,
            stop_written: false,
            done: false,
        }))
    }
}

/// The first `squeue` comes this soon; then each interval is 1.5 times the last, up to
/// `LAST_POLL`; a change seen brings it back to `AFTER_CHANGE`.
const FIRST_POLL: Duration = Duration::from_millis(500);
const AFTER_CHANGE: Duration = Duration::from_secs(1);
const LAST_POLL: Duration = Duration::from_secs(5);
/// How often the claims and chunk journals are read (files, not the controller).
const TICK: Duration = Duration::from_millis(250);
/// `squeue` and `sacct` failing this many times in a row: Slurm is gone for this run.
const MAX_FAILURES: u32 = 30;
/// Resumed records delivered per round (the rest wait in `resumed.jsonl`, not memory).
const RESUMED_PER_ROUND: usize = 256;

/// Where one chunk journal has been read to.
#[derive(Default)]
struct Tail {
    offset: u64,
    seen: bool,
}

/// Who claimed a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Array element E.
    Element(u64),
    /// A claim that names no element of this array.
    Unknown,
}

struct SlurmExecution {
    job: Job,
    config: SlurmConfig,
    work: Option<Work>,
    job_id: Option<String>,
    plan_len: u64,
    layout: Layout,
    run_dir: PathBuf,
    slurm_dir: PathBuf,
    claims: PathBuf,
    control: Arc<SlurmControl>,
    /// The records an earlier run had, not yet delivered.
    resumed: Option<store::Records>,
    /// Bit per plan index: a submission taken from the work that has no record yet.
    expected: Vec<u64>,
    /// Per chunk: its submissions still without a record.
    outstanding: Vec<u64>,
    /// Per chunk: the elements claim it.
    todo: Vec<bool>,
    /// Per chunk: who claimed it.
    owner: Vec<Option<Owner>>,
    /// Chunks to claim not seen claimed yet.
    unclaimed: u64,
    /// Per element.
    states: Vec<ElementState>,
    /// Per element: seen running (or ended) at least once.
    started: Vec<bool>,
    tails: HashMap<u64, Tail>,
    /// `cancelled`/`crashed` records of elements that have not ended: their element's
    /// state decides (an element stopped by its time limit gives `timeout`).
    held: BTreeMap<u64, TaskRecord>,
    events: VecDeque<BackendEvent>,
    last_waiting: Option<(u64, u64, Option<String>)>,
    next_poll: Instant,
    interval: Duration,
    failures: u32,
    /// Every chunk was claimed and the elements still pending were cancelled.
    pending_cancelled: bool,
    stop_written: bool,
    done: bool,
}

impl SlurmExecution {
    fn is_expected(&self, index: u64) -> bool {
        index < self.plan_len && self.expected[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set_expected(&mut self, index: u64, on: bool) {
        let (w, b) = ((index / 64) as usize, 1u64 << (index % 64));
        if on { self.expected[w] |= b } else { self.expected[w] &= !b }
    }

    fn chunk_of(&self, index: u64) -> usize {
        self.layout.chunk_of(index, self.plan_len) as usize
    }

    /// Take the work: the submissions to expect a record for.
    fn take_work(&mut self) {
        let Some(work) = self.work.take() else { return };
        self.expected = vec![0; self.plan_len.div_ceil(64) as usize];
        for sub in work {
            if sub.index < self.plan_len && !self.is_expected(sub.index) {
                self.set_expected(sub.index, true);
                let c = self.chunk_of(sub.index);
                self.outstanding[c] += 1;
            }
        }
    }

    /// Deliver a record for a submission still expected.
    fn deliver(&mut self, rec: TaskRecord) {
        if !self.is_expected(rec.index) {
            return;
        }
        self.set_expected(rec.index, false);
        self.held.remove(&rec.index);
        let c = self.chunk_of(rec.index);
        self.outstanding[c] = self.outstanding[c].saturating_sub(1);
        self.events.push_back(BackendEvent::Finished(rec));
    }

    /// Deliver the next records taken from earlier runs; `false` when none are left.
    fn deliver_resumed(&mut self) -> bool {
        let Some(records) = self.resumed.as_mut() else { return false };
        let mut batch = Vec::new();
        for rec in records.by_ref().take(RESUMED_PER_ROUND) {
            // A line that cannot be read back: its submission stays expected and is
            // reported at the end.
            batch.extend(rec.ok());
        }
        if batch.is_empty() {
            self.resumed = None;
            return false;
        }
        for rec in batch {
            self.deliver(rec);
        }
        true
    }

    fn journal_path(&self, chunk: u64) -> PathBuf {
        self.run_dir.join(format!("{}.jsonl", store::shard_stem(chunk, self.layout.chunks)))
    }

    fn output_path(&self, element: u64) -> PathBuf {
        self.slurm_dir.join(format!("element-{element}.out"))
    }

    /// Learn the claims that appeared since the last look.
    fn read_claims(&mut self) {
        if self.unclaimed == 0 {
            return;
        }
        let Ok(found) = claimed_chunks(&self.claims) else { return };
        for c in found {
            let Some(slot) = self.owner.get(c as usize) else { continue };
            if slot.is_some() || !self.todo[c as usize] {
                continue;
            }
            let note: Option<ClaimNote> = fs::read(claim_path(&self.claims, c))
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok());
            let owner = match note {
                Some(n)
                    if n.element.is_some_and(|e| e < self.states.len() as u64)
                        && n.job_id.as_ref().is_none_or(|j| Some(j) == self.job_id.as_ref()) =>
                {
                    Owner::Element(n.element.unwrap_or_default())
                }
                _ => Owner::Unknown,
            };
            if let Owner::Element(e) = owner {
                self.started[e as usize] = true;
            }
            self.owner[c as usize] = Some(owner);
            self.unclaimed -= 1;
        }
    }

    /// Read what the elements appended to the journals of their chunks since the last
    /// time. Only those of claimed chunks, unless `all`.
    fn read_journals(&mut self, all: bool) {
        let mut fresh = Vec::new();
        for c in 0..self.layout.chunks {
            let i = c as usize;
            if self.outstanding[i] == 0 || !(all || self.owner[i].is_some()) {
                continue;
            }
            let path = self.journal_path(c);
            let tail = self.tails.entry(c).or_default();
            if let Ok((lines, consumed)) = read_new_lines(&path, tail.offset) {
                tail.seen = true;
                tail.offset += consumed;
                fresh.extend(lines);
            }
        }
        for line in fresh {
            let Ok(rec) = serde_json::from_slice::<TaskRecord>(&line) else { continue };
            if !self.is_expected(rec.index) {
                continue;
            }
            if held_back(&rec) {
                self.held.insert(rec.index, rec);
            } else {
                self.deliver(rec);
            }
        }
    }

    /// Ask Slurm about the elements: `squeue`, and `sacct` for those `squeue` no longer
    /// lists. `Err` when some element not known to have ended is known to neither, with
    /// whether that is final (the job is gone from `squeue` and accounting is off).
    fn poll_slurm(&mut self) -> Result<(), (bool, String)> {
        let Some(job_id) = self.job_id.clone() else { return Ok(()) };
        let squeue = slurm_command(
            "squeue",
            &["-h", "-r", "-t", "all", "-j", &job_id, "-o", "%i|%T|%r"].map(String::from),
        );
        let mut found = match &squeue {
            Ok(text) => parse_squeue(text, &job_id),
            Err(_) => Vec::new(),
        };
        let listed = |found: &[(u64, ElementState)], e: u64| found.iter().any(|(f, _)| *f == e);
        let unknown = |found: &[(u64, ElementState)], states: &[ElementState]| -> Vec<u64> {
            (0..states.len() as u64)
                .filter(|e| !states[*e as usize].ended() && !listed(found, *e))
                .collect()
        };
        let mut sacct_said = None;
        if !unknown(&found, &self.states).is_empty() {
            // `squeue` forgets an element `MinJobAge` after it ended; accounting remembers.
            match slurm_command(
                "sacct",
                &["-n", "-P", "-X", "-j", &job_id, "-o", "JobID,State"].map(String::from),
            ) {
                Ok(text) => {
                    for (e, state) in parse_sacct(&text, &job_id) {
                        if !listed(&found, e) {
                            found.push((e, state));
                        }
                    }
                }
                Err(e) => sacct_said = Some(e),
            }
        }
        let mut changed = false;
        for (e, state) in &found {
            let Some(slot) = self.states.get_mut(*e as usize) else { continue };
            if *slot != *state {
                changed = true;
                if !matches!(state, ElementState::Pending(_)) {
                    self.started[*e as usize] = true;
                }
                *slot = state.clone();
            }
        }
        if changed {
            self.interval = AFTER_CHANGE;
        }
        let missing = unknown(&found, &self.states);
        if missing.is_empty() {
            return Ok(());
        }
        let squeue_said = match &squeue {
            Ok(_) => format!("squeue no longer lists job {job_id}"),
            Err(e) => format!("squeue: {e}"),
        };
        let forgotten = squeue.as_ref().err().is_some_and(|e| e.contains("Invalid job id"));
        let no_accounting = sacct_said.as_ref().is_some_and(|e| e.contains("disabled"));
        let sacct_said = match sacct_said {
            Some(e) => format!("sacct: {e}"),
            None => format!("sacct does not know element {} of it", missing[0]),
        };
        Err((forgotten && no_accounting, format!("{squeue_said}; {sacct_said}")))
    }

    fn waiting(&mut self) {
        let (mut queued, mut running) = (0, 0);
        for (c, n) in self.outstanding.iter().enumerate() {
            match self.owner[c] {
                _ if !self.todo[c] => {}
                Some(_) => running += n,
                None => queued += n,
            }
        }
        let reason = if queued > 0 {
            self.states.iter().find_map(|s| match s {
                ElementState::Pending(r) => r.clone(),
                _ => None,
            })
        } else {
            None
        };
        let now = (queued, running, reason);
        if self.last_waiting.as_ref() != Some(&now) {
            self.last_waiting = Some(now.clone());
            let (queued, running, reason) = now;
            self.events.push_back(BackendEvent::Waiting { queued, running, reason });
        }
    }

    /// A blank record of submission `index` (it never ran, or its record was lost).
    fn blank(&self, plan: &mut Plan, index: u64) -> Option<TaskRecord> {
        let sub = plan.get(index)?;
        let args = crate::record::Args::new(self.job.args.names.clone().into(), sub.args);
        let mut r = TaskRecord::new(index, sub.key, args, Status::Crashed);
        r.stderr = matches!(self.job.task, TaskTemplate::Command(_)).then(String::new);
        Some(r)
    }

    /// Status and message of a submission of a chunk that element `e` claimed and did
    /// not record (or recorded as stopped), by the element's state.
    fn by_element(&self, e: u64, chunk: u64, lost: Option<&str>) -> (Status, String) {
        let state = &self.states[e as usize];
        let element =
            format!("array element {e} (Slurm job {}_{e})", self.job_id.as_deref().unwrap_or("?"));
        let output = self.output_path(e);
        match (state, lost) {
            (_, Some(why)) if !state.ended() => {
                (Status::Crashed, format!("lost track of {element}: {why}"))
            }
            (ElementState::Timeout, _) => (Status::Timeout, self.timeout_message(&element)),
            (ElementState::Cancelled, _) => {
                (Status::Cancelled, format!("{element} was cancelled (scancel)"))
            }
            (ElementState::Completed, _) if !self.tails.get(&chunk).is_some_and(|t| t.seen) => (
                Status::Crashed,
                format!(
                    "{element} completed but its chunk journal {} never appeared: is the job's folder visible from the compute nodes? (Slurm's output: {})",
                    self.journal_path(chunk).display(),
                    output.display()
                ),
            ),
            (ElementState::Failed(s), _) if s == "OUT_OF_MEMORY" => (
                Status::Crashed,
                format!(
                    "{element} ran out of memory (OUT_OF_MEMORY); ask for more with `[slurm] sbatch-args = [\"--mem=...\"]`"
                ),
            ),
            (s, _) => (
                s.status(),
                format!(
                    "{element} ended {} before recording this submission (Slurm's output: {})",
                    match s {
                        ElementState::Failed(name) => name.as_str(),
                        ElementState::Completed => "COMPLETED",
                        _ => "",
                    },
                    output.display()
                ),
            ),
        }
    }

    fn timeout_message(&self, element: &str) -> String {
        match self.config.time_limit.map(|t| humantime::format_duration(t).to_string()) {
            Some(t) => format!(
                "{element} reached its Slurm time limit (time-limit = {t}) before this submission finished"
            ),
            None => format!(
                "{element} reached its Slurm time limit before this submission finished; set `[slurm] time-limit`"
            ),
        }
    }

    /// Status and message of a submission whose chunk no element claimed, once every
    /// element ended.
    fn unclaimed_status(&self, lost: Option<&str>) -> (Status, String) {
        let stopped = self.control.stopped.load(Ordering::SeqCst);
        let cancelled = self.control.cancelled.load(Ordering::SeqCst);
        let ended = |f: fn(&ElementState) -> bool| self.states.iter().position(f);
        if stopped && !cancelled {
            return (Status::Skipped, "not started: no more submissions were taken".into());
        }
        if cancelled || ended(|s| matches!(s, ElementState::Cancelled)).is_some() {
            return (
                Status::Cancelled,
                "not started: the array was cancelled before an element claimed it".into(),
            );
        }
        if let Some(e) = ended(|s| matches!(s, ElementState::Timeout)) {
            let element = format!(
                "not started: every array element ended before claiming it; element {e} (Slurm job {}_{e})",
                self.job_id.as_deref().unwrap_or("?")
            );
            return (Status::Timeout, self.timeout_message(&element));
        }
        if let Some(why) = lost {
            return (Status::Crashed, format!("lost track of the array: {why}"));
        }
        if let Some(why) = refusal(&self.claims) {
            return (Status::Crashed, format!("not started: {why}"));
        }
        if self.owner.iter().any(|o| matches!(o, Some(Owner::Element(_)))) {
            // The elements could claim (they claimed other chunks) and stopped: what
            // was left did not fit in their time limit.
            return (
                Status::Timeout,
                format!(
                    "not started: no array element had enough of its time limit{} left to claim it; raise `[slurm] time-limit` or lower `per-element` (`jobpool run --resume` runs what is missing)",
                    self.config
                        .time_limit
                        .map(|t| format!(" (time-limit = {})", humantime::format_duration(t)))
                        .unwrap_or_default()
                ),
            );
        }
        let states: Vec<String> = self
            .states
            .iter()
            .map(|s| match s {
                ElementState::Failed(n) => n.clone(),
                other => format!("{other:?}").to_uppercase(),
            })
            .collect();
        (
            Status::Crashed,
            format!(
                "no array element claimed this submission's chunk (the elements ended: {}): is the job's folder ({}) visible and writable from the compute nodes? (Slurm's output: {})",
                states.join(", "),
                self.claims.display(),
                self.output_path(0).display()
            ),
        )
    }

    /// Every element ended (or Slurm is gone): records for what has none.
    fn finish(&mut self, lost: Option<&str>) {
        let mut plan = Plan::new(&self.job);
        for c in 0..self.layout.chunks {
            let i = c as usize;
            if self.outstanding[i] == 0 {
                continue;
            }
            let owner = match self.owner[i] {
                Some(Owner::Element(e)) => Some(e),
                _ => None,
            };
            let verdict = if !self.todo[i] {
                (
                    Status::Crashed,
                    format!(
                        "its ok record from an earlier run could not be read back from {}; run `jobpool run --resume` again",
                        self.slurm_dir.join("resumed.jsonl").display()
                    ),
                )
            } else {
                match owner {
                    Some(e) => self.by_element(e, c, lost),
                    None => self.unclaimed_status(lost),
                }
            };
            let stopped_by_slurm = owner.is_some_and(|e| {
                matches!(self.states[e as usize], ElementState::Timeout | ElementState::Cancelled)
            });
            for index in self.layout.chunk(c, self.plan_len) {
                if !self.is_expected(index) {
                    continue;
                }
                let held = self.held.remove(&index);
                if let Some(rec) = &held
                    && !stopped_by_slurm
                {
                    // The element was not stopped by Slurm: the record stands as it is.
                    self.set_expected(index, false);
                    self.events.push_back(BackendEvent::Finished(rec.clone()));
                    continue;
                }
                let Some(mut rec) = held.or_else(|| self.blank(&mut plan, index)) else {
                    continue;
                };
                rec.status = verdict.0;
                rec.error = Some(verdict.1.clone());
                self.set_expected(index, false);
                self.events.push_back(BackendEvent::Finished(rec));
            }
            self.outstanding[i] = 0;
        }
        self.done = true;
    }

    /// One round: read claims and journals; ask Slurm when due; decide whether it is
    /// over.
    fn step(&mut self) {
        self.read_claims();
        self.read_journals(false);
        if self.outstanding.iter().all(|n| *n == 0) {
            self.done = true;
            return;
        }
        if self.job_id.is_none() {
            // Nothing was submitted: what is left are resumed records that could not
            // be read back.
            self.finish(None);
            return;
        }
        let cancelled = self.control.cancelled.load(Ordering::SeqCst);
        let stopped = self.control.stopped.load(Ordering::SeqCst);
        if (cancelled || stopped) && !self.stop_written {
            self.stop_written = true;
            let _ = stop_claiming(&self.claims);
        }
        if cancelled && self.interval > AFTER_CHANGE {
            self.interval = AFTER_CHANGE;
            self.next_poll = self.next_poll.min(Instant::now() + AFTER_CHANGE);
        }
        if Instant::now() < self.next_poll {
            return;
        }
        match self.poll_slurm() {
            Ok(()) => self.failures = 0,
            Err((final_, why)) => {
                self.failures += 1;
                if final_ || self.failures >= MAX_FAILURES {
                    self.read_claims();
                    self.read_journals(true);
                    self.finish(Some(&why));
                    return;
                }
            }
        }
        self.next_poll = Instant::now() + self.interval;
        self.interval = (self.interval.mul_f64(1.5)).min(LAST_POLL);
        if self.states.iter().all(ElementState::ended) {
            // Ended elements wrote all they will: read them to the end, then fill in.
            self.read_claims();
            self.read_journals(true);
            self.finish(None);
            return;
        }
        if self.unclaimed == 0
            && !self.pending_cancelled
            && self.states.iter().any(|s| matches!(s, ElementState::Pending(_)))
        {
            // Every chunk is taken: elements that have not started would find nothing.
            self.pending_cancelled = true;
            self.control.scancel(&["--state=PENDING"]);
        }
        self.waiting();
    }
}

/// Whether a record waits for its element's end before it is delivered. Slurm stops an
/// element (`scancel`, its time limit) by signalling every process of it at once, so a
/// task stopped that way may come back `cancelled`, `crashed` (its worker got the
/// signal first) or `error` with a signal: the element's state says which it was.
fn held_back(rec: &TaskRecord) -> bool {
    matches!(rec.status, Status::Cancelled | Status::Crashed)
        || (rec.status == Status::Error && rec.signal.is_some())
}

/// The complete lines appended to `path` after `offset`, and how many bytes they take.
fn read_new_lines(path: &Path, offset: u64) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else { return Ok((Vec::new(), 0)) };
    let lines = buf[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect();
    Ok((lines, end as u64 + 1))
}

impl Execution for SlurmExecution {
    fn next_event(&mut self) -> Option<BackendEvent> {
        self.take_work();
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if self.done {
                return None;
            }
            if self.deliver_resumed() {
                continue;
            }
            self.step();
            if self.events.is_empty() && !self.done {
                std::thread::sleep(TICK);
            }
        }
    }

    fn control(&self) -> Arc<dyn ExecutionControl> {
        self.control.clone()
    }

    fn join(self: Box<Self>) {
        // The elements are Slurm's processes: nothing of ours to wait for.
    }
}

struct SlurmControl {
    job_id: Option<String>,
    cancelled: AtomicBool,
    stopped: AtomicBool,
}

impl SlurmControl {
    /// `scancel` on a thread of its own: controls return at once.
    fn scancel(&self, extra: &[&str]) {
        let Some(job_id) = &self.job_id else { return };
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.push(job_id.clone());
        let _ = std::thread::Builder::new()
            .name("jobpool-scancel".into())
            .spawn(move || drop(slurm_command("scancel", &args)));
    }
}

impl ExecutionControl for SlurmControl {
    fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            self.scancel(&[]);
        }
    }

    fn stop_submitting(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.scancel(&["--state=PENDING"]);
        }
    }

    fn kill(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.scancel(&["--signal=KILL", "--full"]);
        self.scancel(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_plan() {
        let l = Layout::new(10, Some(3));
        assert_eq!(l, Layout { per_element: 3, chunks: 10 });
        assert_eq!(l.elements(10, 10), 4);
        assert_eq!(Layout::new(10, None), Layout { per_element: 1, chunks: 10 });
        assert_eq!(Layout::new(2500, None), Layout { per_element: 3, chunks: 2500 });
        let l = Layout::new(100_000, None);
        assert_eq!(l, Layout { per_element: 100, chunks: 4000 });
        assert_eq!(l.elements(100_000, 4000), 1000);
        // Resuming 3 submissions in 2 chunks: 1 element; 0 chunks is still 1 (never 0).
        assert_eq!(l.elements(3, 2), 1);
        assert_eq!(Layout::new(28, Some(4)).elements(28, 28), 7);
        assert_eq!(Layout::new(1, Some(100)), Layout { per_element: 100, chunks: 1 });
        for (len, per) in [(10, 4), (7, 7), (2500, 834), (5, 1), (1000, 9)] {
            let l = Layout::new(len, Some(per));
            let mut covered = 0;
            for c in 0..l.chunks {
                let r = l.chunk(c, len);
                assert!(r.end - r.start <= per.div_ceil(CHUNKS_PER_ELEMENT), "{len} {per} {c}");
                covered += r.end - r.start;
                for index in r {
                    assert_eq!(l.chunk_of(index, len), c, "{index} {len} {per}");
                }
            }
            assert_eq!(covered, len);
        }
    }

    #[test]
    fn a_chunk_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let note =
            |e: u64| ClaimNote { element: Some(e), job_id: Some("7".into()), node: None, pid: 1 };
        assert!(claim_chunk(dir.path(), 3, &note(0)).unwrap());
        assert!(!claim_chunk(dir.path(), 3, &note(1)).unwrap());
        assert!(claim_chunk(dir.path(), 4, &note(1)).unwrap());
        let mut got = claimed_chunks(dir.path()).unwrap();
        got.sort();
        assert_eq!(got, [3, 4]);
        // The claim says who has it; no temporary file is left.
        let text = fs::read(dir.path().join("chunk-000003")).unwrap();
        assert_eq!(serde_json::from_slice::<ClaimNote>(&text).unwrap(), note(0));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        // Racing claimers: each chunk has exactly one winner.
        let wins: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8u64)
                .map(|e| {
                    let d = dir.path();
                    s.spawn(move || {
                        (10..60).filter(|c| claim_chunk(d, *c, &note(e)).unwrap()).count() as u64
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().sum::<u64>(), 50);
        // A folder that cannot be written is an error, not "someone else has it".
        assert!(claim_chunk(&dir.path().join("missing"), 1, &note(0)).is_err());
        assert!(!claiming_stopped(dir.path()));
        stop_claiming(dir.path()).unwrap();
        assert!(claiming_stopped(dir.path()));
    }

    #[test]
    fn times_are_days_hours_minutes_seconds() {
        assert_eq!(slurm_time(Duration::from_secs(60)), "0-00:01:00");
        assert_eq!(slurm_time(Duration::from_millis(90_500)), "0-00:01:31");
        assert_eq!(slurm_time(Duration::from_secs(2 * 86400 + 3 * 3600 + 4)), "2-03:00:04");
    }

    #[test]
    fn sbatch_arguments() {
        let config = SlurmConfig {
            partition: Some("debug".into()),
            array_limit: Some(4),
            per_element: None,
            time_limit: Some(Duration::from_secs(3600)),
            sbatch_args: vec!["--mem=1G".into()],
            shared_dir: None,
        };
        let argv = sbatch_args(
            &config,
            10,
            "sweep",
            Some(2),
            Path::new("/s/e-%a.out"),
            Path::new("/s/e.sh"),
        );
        assert_eq!(
            argv,
            [
                "--parsable",
                "--array=0-9%4",
                "--job-name=jobpool-sweep",
                "--output=/s/e-%a.out",
                "--partition=debug",
                "--time=0-01:00:00",
                "--cpus-per-task=2",
                "--mem=1G",
                "/s/e.sh"
            ]
        );
        let config = SlurmConfig { sbatch_args: vec!["-c4".into()], ..SlurmConfig::default() };
        let argv = sbatch_args(&config, 1, "j", Some(2), Path::new("o"), Path::new("s"));
        assert_eq!(
            argv,
            ["--parsable", "--array=0-0", "--job-name=jobpool-j", "--output=o", "-c4", "s"]
        );
    }

    #[test]
    fn the_element_script_claims_chunks() {
        let settings = SlurmSettings {
            run_id: "r1".into(),
            overrides: vec!["args.x=[1, 2]".into(), "it's".into()],
            resume: true,
            exe: "/bin/jobpool".into(),
        };
        let s = element_script(
            Path::new("/bin/jobpool"),
            Path::new("/d/my job.toml"),
            Path::new("/d/.jobpool/runs/j/r1/slurm"),
            &settings,
        );
        assert_eq!(
            s.lines().last().unwrap(),
            "exec /bin/jobpool run --slurm-element /d/.jobpool/runs/j/r1/slurm --run-id r1 --workers \
             \"${SLURM_CPUS_PER_TASK:-1}\" --progress never --resume --set 'args.x=[1, 2]' \
             --set 'it'\\''s' '/d/my job.toml'"
        );
    }

    #[test]
    fn squeue_lines() {
        let text = "7_1|COMPLETED|None\n7_2|PENDING|JobArrayTaskLimit\n7_[3-5,8%2]|PENDING|Priority\n\
                    8_1|RUNNING|None\n7_0|RUNNING|None\n";
        let got = parse_squeue(text, "7");
        assert_eq!(
            got,
            [
                (1, ElementState::Completed),
                (2, ElementState::Pending(Some("JobArrayTaskLimit".into()))),
                (3, ElementState::Pending(Some("Priority".into()))),
                (4, ElementState::Pending(Some("Priority".into()))),
                (5, ElementState::Pending(Some("Priority".into()))),
                (8, ElementState::Pending(Some("Priority".into()))),
                (0, ElementState::Running),
            ]
        );
        assert_eq!(parse_squeue("7_0|PENDING|None", "7"), [(0, ElementState::Pending(None))]);
        assert_eq!(parse_squeue("slurm_load_jobs error: Invalid job id specified", "7"), []);
    }

    #[test]
    fn sacct_lines() {
        let text = "12_0|COMPLETED\n12_1|CANCELLED by 0\n12_2|TIMEOUT\n12_3|OUT_OF_MEMORY\n12_4|NODE_FAIL\n";
        let got: Vec<_> =
            parse_sacct(text, "12").into_iter().map(|(e, s)| (e, s.status(), s.ended())).collect();
        assert_eq!(
            got,
            [
                (0, Status::Crashed, true),
                (1, Status::Cancelled, true),
                (2, Status::Timeout, true),
                (3, Status::Crashed, true),
                (4, Status::Crashed, true),
            ]
        );
    }

    #[test]
    fn states_map_to_statuses() {
        for (state, status) in [
            ("TIMEOUT", Status::Timeout),
            ("DEADLINE", Status::Timeout),
            ("OUT_OF_MEMORY", Status::Crashed),
            ("FAILED", Status::Crashed),
            ("NODE_FAIL", Status::Crashed),
            ("CANCELLED", Status::Cancelled),
            ("CANCELLED+", Status::Cancelled),
        ] {
            let s = ElementState::parse(state, None);
            assert!(s.ended(), "{state}");
            assert_eq!(s.status(), status, "{state}");
        }
        for state in ["PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED", "SOMETHING_NEW"]
        {
            assert!(!ElementState::parse(state, Some("None")).ended(), "{state}");
        }
        assert_eq!(ElementState::parse("PENDING", Some("None")), ElementState::Pending(None));
    }

    #[test]
    fn job_ids() {
        assert_eq!(parse_job_id("123\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("123;cluster\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("sbatch: warning\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn new_lines_only_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        fs::write(&p, "a\nb\npart").unwrap();
        let (lines, n) = read_new_lines(&p, 0).unwrap();
        assert_eq!(lines, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(n, 4);
        let (lines, m) = read_new_lines(&p, n).unwrap();
        assert!(lines.is_empty());
        assert_eq!(m, 0);
    }
}
