//! The Slurm backend: one job array whose elements run shards of the plan.
//!
//! Owns: the submission (the batch script and a reference to the plan written to the
//! shared folder, one `sbatch --array=0-K%L --parsable`), following it (`squeue`, with
//! `sacct` once `squeue` has forgotten the job; polled with back-off), tailing the shard
//! journals the elements write (`jobpool run --shard E/N --run-id ID`, see
//! `store::shard_stem`) and turning each new record into [`BackendEvent::Finished`],
//! Slurm's pending reason into [`BackendEvent::Waiting`], and, at the end, the state of
//! an element into the records its submissions never got (`TIMEOUT` → timeout,
//! `OUT_OF_MEMORY`/`FAILED`/`NODE_FAIL` → crashed, `CANCELLED` → cancelled).
//! Must not: apply run policies (the runner does), print, or write the run's journal
//! and sinks (the front ends do, from the events).
//!
//! ```text
//!  start: plan reference + element.sh ─▶ sbatch --array=0-K%L ─▶ job id
//!  next_event (forwarder thread):
//!     take Work (the submissions to expect) ─▶ loop {
//!        tail shard-EEEE-of-NNNN.jsonl of started elements ─▶ Finished(record)
//!        squeue -r -t all -j ID (0.5 s, growing to 5 s) ─▶ Waiting{queued, running, reason}
//!        every element ended ─▶ records for what is missing, by element state ─▶ None
//!     }
//!  ExecutionControl::cancel ─▶ scancel ID
//! ```
//!
//! The pure parts (the `sbatch` command line, the batch script, parsing `squeue` and
//! `sacct`, states → statuses) are functions with unit tests; `tests/slurm.rs` runs
//! the rest against a real cluster.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Backend, BackendError, BackendEvent, Execution, ExecutionControl, StartRequest, Work};
use crate::model::{Job, SlurmConfig, TaskTemplate, args_map};
use crate::plan::{Plan, Shard};
use crate::record::{Status, TaskRecord};
use crate::store;

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

/// Runs a job as one Slurm job array (`backend = "slurm"`).
pub struct SlurmBackend {
    settings: SlurmSettings,
}

impl SlurmBackend {
    /// A backend submitting one run with `settings`.
    pub fn new(settings: SlurmSettings) -> SlurmBackend {
        SlurmBackend { settings }
    }
}

/// How a plan of `plan_len` submissions is cut into array elements: the count of
/// elements (each runs `--shard E/elements`).
pub fn element_count(plan_len: u64, per_element: Option<u64>) -> u64 {
    let per = per_element.unwrap_or_else(|| plan_len.div_ceil(DEFAULT_MAX_ELEMENTS)).max(1);
    plan_len.div_ceil(per).max(1)
}

/// The element whose shard holds submission `index`.
pub fn element_of(index: u64, plan_len: u64, elements: u64) -> u64 {
    let start =
        |e: u64| Shard { index: e.min(elements - 1), count: elements }.range(plan_len).start;
    let mut e = ((u128::from(index) * u128::from(elements)) / u128::from(plan_len.max(1))) as u64;
    e = e.min(elements - 1);
    while e + 1 < elements && start(e + 1) <= index {
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

/// The batch script every element runs: its shard of the run, with the local process
/// pool sized by `SLURM_CPUS_PER_TASK`.
pub fn element_script(
    exe: &Path,
    job_file: &Path,
    run_id: &str,
    elements: u64,
    settings: &SlurmSettings,
) -> String {
    let mut cmd = vec![
        sh_quote(&exe.display().to_string()),
        "run".into(),
        "--shard".into(),
        format!("\"$SLURM_ARRAY_TASK_ID/{elements}\""),
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
        "#!/bin/sh\n# Written by jobpool for run {run_id}: array element $SLURM_ARRAY_TASK_ID runs \
         shard $SLURM_ARRAY_TASK_ID of {elements}.\nexec {}\n",
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

impl Backend for SlurmBackend {
    fn name(&self, _job: &Job) -> String {
        "slurm".into()
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Box<dyn Execution>, BackendError> {
        let job = request.job;
        let config = job.slurm.clone().unwrap_or_default();
        let sbatch = find_tool("sbatch")?;
        find_tool("squeue")?;
        let plan_len = Plan::new(job).len();
        let elements = element_count(plan_len, config.per_element);
        let run_id = &self.settings.run_id;
        // Absolute: the elements and Slurm's output files do not depend on a working folder.
        let job_dir = std::path::absolute(&job.dir).unwrap_or_else(|_| job.dir.clone());
        let run_dir = store::job_runs_dir(&job_dir, &job.name).join(run_id);
        let slurm_dir = match &config.shared_dir {
            Some(d) => job_dir.join(d).join(store::folder_name(&job.name)).join(run_id),
            None => run_dir.join("slurm"),
        };
        let io_err = |what: &str, p: &Path, e: io::Error| {
            BackendError::new(format!("cannot write {what} {}: {e}", p.display()))
        };
        fs::create_dir_all(&slurm_dir).map_err(|e| io_err("the folder", &slurm_dir, e))?;
        let job_file = std::path::absolute(&job.path).unwrap_or_else(|_| job.path.clone());
        let script_path = slurm_dir.join("element.sh");
        let script =
            element_script(&self.settings.exe, &job_file, run_id, elements, &self.settings);
        fs::write(&script_path, script).map_err(|e| io_err("the batch script", &script_path, e))?;
        let output = slurm_dir.join("element-%a.out");
        let argv = sbatch_args(
            &config,
            elements,
            &job.name,
            job.workers.map(|w| w.get()),
            &output,
            &script_path,
        );
        // The plan reference: enough to find (and re-derive) everything the elements run.
        let reference = json!({
            "run_id": run_id,
            "job_file": job_file,
            "plan_len": plan_len,
            "elements": elements,
            "shard_journals": run_dir,
            "overrides": self.settings.overrides,
            "resume": self.settings.resume,
            "jobpool": self.settings.exe,
            "sbatch": argv,
        });
        let reference_path = slurm_dir.join("submission.json");
        fs::write(&reference_path, format!("{reference:#}\n"))
            .map_err(|e| io_err("the plan reference", &reference_path, e))?;

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
        let control = Arc::new(SlurmControl {
            job_id: job_id.clone(),
            cancelled: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        Ok(Box::new(SlurmExecution {
            job: job.clone(),
            config,
            work: Some(request.work),
            job_id,
            plan_len,
            elements,
            run_dir,
            slurm_dir,
            control,
            expected: Vec::new(),
            outstanding: vec![0; elements as usize],
            states: vec![ElementState::Pending(None); elements as usize],
            started: vec![false; elements as usize],
            tails: HashMap::new(),
            held: BTreeMap::new(),
            events: VecDeque::new(),
            last_waiting: None,
            next_poll: Instant::now(),
            interval: FIRST_POLL,
            failures: 0,
            done: false,
        }))
    }
}

/// The first `squeue` comes this soon; then each interval is 1.5 times the last, up to
/// `LAST_POLL`; a change seen brings it back to `AFTER_CHANGE`.
const FIRST_POLL: Duration = Duration::from_millis(500);
const AFTER_CHANGE: Duration = Duration::from_secs(1);
const LAST_POLL: Duration = Duration::from_secs(5);
/// How often the shard journals of started elements are read (files, not the controller).
const TICK: Duration = Duration::from_millis(250);
/// `squeue` and `sacct` failing this many times in a row: Slurm is gone for this run.
const MAX_FAILURES: u32 = 30;

/// Where one shard journal has been read to.
#[derive(Default)]
struct Tail {
    offset: u64,
    seen: bool,
}

struct SlurmExecution {
    job: Job,
    config: SlurmConfig,
    work: Option<Work>,
    job_id: String,
    plan_len: u64,
    elements: u64,
    run_dir: PathBuf,
    slurm_dir: PathBuf,
    control: Arc<SlurmControl>,
    /// Bit per plan index: a submission taken from the work that has no record yet.
    expected: Vec<u64>,
    /// Per element: its submissions still without a record.
    outstanding: Vec<u64>,
    states: Vec<ElementState>,
    /// Per element: seen running (or ended) at least once.
    started: Vec<bool>,
    tails: HashMap<u64, Tail>,
    /// `cancelled` records of elements that have not ended: their element's state
    /// decides (an element stopped by its time limit gives `timeout`).
    held: BTreeMap<u64, TaskRecord>,
    events: VecDeque<BackendEvent>,
    last_waiting: Option<(u64, u64, Option<String>)>,
    next_poll: Instant,
    interval: Duration,
    failures: u32,
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

    /// Take the work: the submissions to expect a record for (the runner has already
    /// given the resumed ones their records).
    fn take_work(&mut self) {
        let Some(work) = self.work.take() else { return };
        self.expected = vec![0; self.plan_len.div_ceil(64) as usize];
        for sub in work {
            if sub.index < self.plan_len && !self.is_expected(sub.index) {
                self.set_expected(sub.index, true);
                self.outstanding[element_of(sub.index, self.plan_len, self.elements) as usize] += 1;
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
        let e = element_of(rec.index, self.plan_len, self.elements) as usize;
        self.outstanding[e] = self.outstanding[e].saturating_sub(1);
        self.events.push_back(BackendEvent::Finished(rec));
    }

    fn journal_path(&self, element: u64) -> PathBuf {
        self.run_dir.join(format!("{}.jsonl", store::shard_stem(element, self.elements)))
    }

    /// Read what the started elements appended to their journals since the last time.
    /// Only those of elements seen started, unless `all`.
    fn read_journals(&mut self, all: bool) {
        let mut fresh = Vec::new();
        for e in 0..self.elements {
            let i = e as usize;
            if !(all || self.started[i]) || self.outstanding[i] == 0 {
                continue;
            }
            let path = self.journal_path(e);
            let tail = self.tails.entry(e).or_default();
            match read_new_lines(&path, tail.offset) {
                Ok((lines, consumed)) => {
                    tail.seen = true;
                    tail.offset += consumed;
                    fresh.extend(lines);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => {}
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

    /// Ask Slurm about the elements; `false` when neither `squeue` nor `sacct` answered.
    fn poll_slurm(&mut self) -> bool {
        let squeue = slurm_command(
            "squeue",
            &["-h", "-r", "-t", "all", "-j", &self.job_id, "-o", "%i|%T|%r"].map(String::from),
        );
        let found = match squeue {
            Ok(text) => parse_squeue(&text, &self.job_id),
            Err(_) => Vec::new(),
        };
        let found = if found.is_empty() {
            // `squeue` forgets a job `MinJobAge` after it ended; accounting remembers.
            match slurm_command(
                "sacct",
                &["-n", "-P", "-X", "-j", &self.job_id, "-o", "JobID,State"].map(String::from),
            ) {
                Ok(text) => parse_sacct(&text, &self.job_id),
                Err(_) => Vec::new(),
            }
        } else {
            found
        };
        if found.is_empty() {
            return false;
        }
        let mut changed = false;
        for (e, state) in found {
            let Some(slot) = self.states.get_mut(e as usize) else { continue };
            if *slot != state {
                changed = true;
                if !matches!(state, ElementState::Pending(_)) {
                    self.started[e as usize] = true;
                }
                *slot = state;
            }
        }
        if changed {
            self.interval = AFTER_CHANGE;
        }
        true
    }

    fn waiting(&mut self) {
        let (mut queued, mut running, mut reason) = (0, 0, None);
        for (i, s) in self.states.iter().enumerate() {
            match s {
                ElementState::Pending(r) => {
                    queued += self.outstanding[i];
                    if reason.is_none() && self.outstanding[i] > 0 {
                        reason = r.clone();
                    }
                }
                ElementState::Running => running += self.outstanding[i],
                _ => {}
            }
        }
        let now = (queued, running, reason);
        if self.last_waiting.as_ref() != Some(&now) {
            self.last_waiting = Some(now.clone());
            let (queued, running, reason) = now;
            self.events.push_back(BackendEvent::Waiting { queued, running, reason });
        }
    }

    /// Every element ended (or Slurm is gone): records for what has none.
    fn finish(&mut self, lost: Option<&str>) {
        let mut plan = Plan::new(&self.job);
        let time_limit = self.config.time_limit.map(|t| humantime::format_duration(t).to_string());
        let stopped = self.control.stopped.load(Ordering::SeqCst);
        for e in 0..self.elements {
            let i = e as usize;
            if self.outstanding[i] == 0 {
                continue;
            }
            let state = self.states[i].clone();
            let element = format!("array element {e} (Slurm job {}_{e})", self.job_id);
            let range = Shard { index: e, count: self.elements }.range(self.plan_len);
            for index in range {
                if !self.is_expected(index) {
                    continue;
                }
                let held = self.held.remove(&index);
                if let Some(rec) = &held
                    && !matches!(state, ElementState::Timeout | ElementState::Cancelled)
                {
                    // The element was not stopped by Slurm: the record stands as it is.
                    self.set_expected(index, false);
                    self.events.push_back(BackendEvent::Finished(rec.clone()));
                    continue;
                }
                let mut rec = match held {
                    Some(r) => r,
                    None => {
                        let Some(sub) = plan.get(index) else { continue };
                        let args = args_map(&self.job.args.names, &sub.args);
                        let mut r = TaskRecord::new(index, sub.key, args, Status::Crashed);
                        r.stderr =
                            matches!(self.job.task, TaskTemplate::Command(_)).then(String::new);
                        r
                    }
                };
                let (status, error) = match (&state, lost) {
                    (_, Some(why)) if !state.ended() => {
                        (Status::Crashed, format!("lost track of {element}: {why}"))
                    }
                    (ElementState::Timeout, _) => (
                        Status::Timeout,
                        match &time_limit {
                            Some(t) => format!(
                                "{element} reached its Slurm time limit (time-limit = {t}) before this submission finished"
                            ),
                            None => format!(
                                "{element} reached its Slurm time limit before this submission finished; set `[slurm] time-limit`"
                            ),
                        },
                    ),
                    (ElementState::Cancelled, _) if stopped && !self.started[i] => {
                        (Status::Skipped, "not started: no more submissions were taken".into())
                    }
                    (ElementState::Cancelled, _) => {
                        (Status::Cancelled, format!("{element} was cancelled (scancel)"))
                    }
                    (ElementState::Completed, _) if !self.tails.get(&e).is_some_and(|t| t.seen) => {
                        (
                            Status::Crashed,
                            format!(
                                "{element} completed but its shard journal {} never appeared: is the job's folder visible from the compute nodes? (Slurm's output: {})",
                                self.journal_path(e).display(),
                                self.slurm_dir.join(format!("element-{e}.out")).display()
                            ),
                        )
                    }
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
                            self.slurm_dir.join(format!("element-{e}.out")).display()
                        ),
                    ),
                };
                rec.status = status;
                rec.error = Some(error);
                self.set_expected(index, false);
                self.events.push_back(BackendEvent::Finished(rec));
            }
            self.outstanding[i] = 0;
        }
        self.done = true;
    }

    /// One round: read journals; ask Slurm when due; decide whether it is over.
    fn step(&mut self) {
        self.read_journals(false);
        if self.outstanding.iter().all(|n| *n == 0) {
            self.done = true;
            return;
        }
        let cancelled = self.control.cancelled.load(Ordering::SeqCst);
        if cancelled && self.interval > AFTER_CHANGE {
            self.interval = AFTER_CHANGE;
            self.next_poll = self.next_poll.min(Instant::now() + AFTER_CHANGE);
        }
        if Instant::now() >= self.next_poll {
            if self.poll_slurm() {
                self.failures = 0;
            } else {
                self.failures += 1;
                if self.failures >= MAX_FAILURES {
                    self.read_journals(true);
                    self.finish(Some("squeue and sacct no longer know the job"));
                    return;
                }
            }
            self.next_poll = Instant::now() + self.interval;
            self.interval = (self.interval.mul_f64(1.5)).min(LAST_POLL);
            if self.states.iter().all(ElementState::ended) {
                // Ended elements wrote all they will: read them to the end, then fill in.
                self.read_journals(true);
                self.finish(None);
                return;
            }
            self.waiting();
        }
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
    job_id: String,
    cancelled: AtomicBool,
    stopped: AtomicBool,
}

impl SlurmControl {
    /// `scancel` on a thread of its own: controls return at once.
    fn scancel(&self, extra: &[&str]) {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.push(self.job_id.clone());
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
    fn elements_cover_the_plan() {
        assert_eq!(element_count(10, Some(3)), 4);
        assert_eq!(element_count(10, None), 10);
        assert_eq!(element_count(2500, None), 834);
        assert_eq!(element_count(1, Some(100)), 1);
        for (len, n) in [(10, 4), (7, 7), (2500, 834), (5, 1)] {
            for index in 0..len {
                let e = element_of(index, len, n);
                assert!(
                    Shard { index: e, count: n }.range(len).contains(&index),
                    "{index} {len} {n}"
                );
            }
        }
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
    fn the_element_script_runs_a_shard() {
        let settings = SlurmSettings {
            run_id: "r1".into(),
            overrides: vec!["args.x=[1, 2]".into(), "it's".into()],
            resume: true,
            exe: "/bin/jobpool".into(),
        };
        let s = element_script(
            Path::new("/bin/jobpool"),
            Path::new("/d/my job.toml"),
            "r1",
            8,
            &settings,
        );
        assert_eq!(
            s.lines().last().unwrap(),
            "exec /bin/jobpool run --shard \"$SLURM_ARRAY_TASK_ID/8\" --run-id r1 --workers \
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
