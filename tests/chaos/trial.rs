//! Running one trial: a temporary job folder, each round's jobpool under a hard timeout
//! with its faults injected on schedule, what the round did (for the checks), and on
//! failure a copy of everything under `target/chaos-failures/<seed>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::check::{self, Kind, Violation};
use crate::observe::{self, Side};
use crate::plan::{Before, Fault, Trial};
use crate::procs::{self, SinkMounts};

/// The jobpool under test: `CHAOS_BIN` if set (a copy, so that a long run is not
/// disturbed by a rebuild), else the one cargo built.
pub fn bin() -> std::ffi::OsString {
    std::env::var_os("CHAOS_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_jobpool").into())
}

/// No round may take longer: far above what any trial needs even on a loaded machine.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Every process of a round must be gone this long after jobpool exited.
pub const ORPHAN_DEADLINE: Duration = Duration::from_secs(3);

/// What one round did, for the checks.
#[derive(Debug)]
pub struct RoundObs {
    pub round: usize,
    /// Whether any fault was injected (before or during the round).
    pub faulty: bool,
    /// How jobpool ended (`None`: it hung and was killed).
    pub status: Option<ExitStatus>,
    pub stderr: String,
    /// Signals sent to jobpool itself (SIGKILL included).
    pub signals: Vec<i32>,
    /// Workers SIGKILLed.
    pub worker_kills: usize,
    /// Submissions whose task process was SIGKILLed.
    pub killed_tasks: BTreeSet<usize>,
    /// The sinks could not be written (read-only folder, full disk).
    pub sink_fault: bool,
    /// Submissions with a journaled `ok` when the round started (after any torn line).
    pub ok_before: BTreeSet<usize>,
    /// The side log of the round.
    pub side: Vec<Side>,
    /// Run folders the round created (for a shard: the shared run folder, if this
    /// round's run of the shard started recording).
    pub runs: Vec<PathBuf>,
    /// `(I, N)` for a round of shard I of N: its journal and metadata are
    /// `shard-I-of-N.json{l}` in the run folder, appended to from byte `journal_from`.
    pub shard: Option<(u32, u32)>,
    pub journal_from: u64,
    /// The submissions this run takes (all, or the shard's slice).
    pub slice: std::ops::Range<usize>,
}

impl RoundObs {
    pub fn starts(&self) -> BTreeMap<usize, usize> {
        let mut m = BTreeMap::new();
        for s in &self.side {
            if let Side::Started(i) = s {
                *m.entry(*i).or_default() += 1;
            }
        }
        m
    }

    pub fn ended(&self) -> BTreeSet<usize> {
        self.side
            .iter()
            .filter_map(|s| if let Side::Ended(i) = s { Some(*i) } else { None })
            .collect()
    }
}

/// The result of one trial.
pub struct Outcome {
    pub violations: Vec<Violation>,
    /// One line: rounds, exit codes, faults, time.
    pub summary: String,
    pub notes: Vec<String>,
    /// The trial, its schedule and what was injected when.
    pub log: String,
}

/// The `TMPDIR` of the trial's jobpool runs, inside the trial's folder: a jobpool killed
/// while a worker was connecting leaves the handshake's socket folder behind (ipc-channel
/// makes it under `TMPDIR`), and it must go with the trial, not stay in `/tmp`. Short, as
/// a socket path must be.
pub fn private_tmp(job_dir: &Path) -> PathBuf {
    let tmp = job_dir.join("tmp");
    fs::create_dir_all(&tmp).expect("the trial's TMPDIR");
    tmp
}

pub fn run(trial: &Trial, failures: &Path) -> Outcome {
    if trial.shards.is_some() {
        return crate::shards::run_sharded(trial, failures);
    }
    let start = Instant::now();
    let dir = tempfile::Builder::new().prefix("jp-chaos-").tempdir().expect("temporary folder");
    let job_dir = dir.path().to_path_buf();
    fs::write(job_dir.join("job.toml"), trial.job_toml()).unwrap();
    fs::create_dir(job_dir.join("out")).unwrap();
    fs::create_dir(job_dir.join("logs")).unwrap();
    // Declared after `dir`: dropped (unmounted) before the folder is removed.
    let mut mounts = SinkMounts::new(&job_dir.join("out"));
    let mut notes = Vec::new();
    if trial.tmpfs
        && let Err(e) = mounts.mount_tmpfs()
    {
        notes.push(format!("no tmpfs for the sink folder ({e}): full-disk faults skipped"));
    }

    let mut log = trial.describe();
    let mut violations = Vec::new();
    let mut codes = Vec::new();
    let mut rounds = Vec::new();
    let mut last_exit = Instant::now();
    for (k, round) in trial.rounds.iter().enumerate() {
        let last = k + 1 == trial.rounds.len();
        if last && !observe::temp_files(&job_dir.join("out")).is_empty() {
            // A temporary sink file left by a killed run counts as stale after 1 s; only
            // then may the next run remove it.
            let since = last_exit.elapsed();
            if since < Duration::from_millis(1100) {
                std::thread::sleep(Duration::from_millis(1100) - since);
            }
        }
        let mut faulty = false;
        let mut sink_fault = false;
        for b in &round.before {
            match *b {
                Before::TornJournal { at_permille } => {
                    if let Some(what) = observe::tear_journal(&job_dir, at_permille) {
                        let _ = writeln!(log, "round {k}: {what}");
                        faulty = true;
                    }
                }
                Before::ReadOnlySinks => match mounts.read_only() {
                    Ok(how) => {
                        let _ = writeln!(log, "round {k}: sink folder read-only ({how})");
                        faulty = true;
                        sink_fault = true;
                    }
                    Err(e) => notes.push(format!("read-only sink folder skipped: {e}")),
                },
                Before::FullDisk if mounts.has_tmpfs() => match mounts.fill() {
                    Ok(()) => {
                        let _ = writeln!(log, "round {k}: sink folder full");
                        faulty = true;
                        sink_fault = true;
                    }
                    Err(e) => notes.push(format!("full disk skipped: {e}")),
                },
                Before::FullDisk => {}
            }
        }
        let ok_before = observe::journaled_ok(&job_dir);
        let runs_before = observe::run_dirs(&job_dir);
        let side_from = observe::file_len(&job_dir.join("side.log"));
        let mark = format!("{}-{}-{k}", std::process::id(), trial.seed);

        let mut cmd = Command::new(bin());
        cmd.arg("run");
        if round.resume {
            cmd.arg("--resume");
        }
        cmd.arg("job.toml").current_dir(&job_dir);
        cmd.env("NO_COLOR", "1").env(procs::MARK_VAR, &mark).stdin(Stdio::null());
        cmd.env("TMPDIR", private_tmp(&job_dir));
        cmd.stdout(fs::File::create(job_dir.join(format!("logs/round-{k}.stdout"))).unwrap());
        let stderr_path = job_dir.join(format!("logs/round-{k}.stderr"));
        cmd.stderr(fs::File::create(&stderr_path).unwrap());
        // SAFETY: prctl(PR_SET_PDEATHSIG) in the child only sets a flag of that process:
        // jobpool does not outlive the harness (killed with it, its run ends like any
        // SIGKILLed one).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        };
        let mut child = cmd.spawn().expect("start jobpool");
        let pid = child.id() as i32;
        let began = Instant::now();
        let mut pending: std::collections::VecDeque<(u64, Fault)> =
            round.faults.iter().copied().collect();
        let mut signals = Vec::new();
        let mut worker_kills = 0;
        let mut killed_tasks = BTreeSet::new();
        // Processes already SIGKILLed (they may take a moment to die): not targets again.
        let mut hit = BTreeSet::new();
        let mut status = None;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            let t = began.elapsed();
            if crate::interrupted() {
                let _ = writeln!(log, "round {k}: the harness was interrupted; killing jobpool");
                let _ = child.kill();
                let _ = child.wait();
                procs::kill_all(&mark);
                return Outcome {
                    violations: Vec::new(),
                    summary: format!("seed {}: interrupted", trial.seed),
                    notes,
                    log,
                };
            }
            if t > HARD_TIMEOUT {
                let _ = writeln!(log, "round {k}: hung for {HARD_TIMEOUT:?}; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            let ms = t.as_millis() as u64;
            while let Some(&(at, fault)) = pending.front() {
                if ms < at {
                    break;
                }
                let applied = match fault {
                    Fault::KillWorker { pick } => {
                        let w: Vec<_> = procs::workers(pid, &mark)
                            .into_iter()
                            .filter(|p| !hit.contains(&p.pid))
                            .collect();
                        w.get(pick as usize % w.len().max(1)).map(|p| {
                            procs::signal(p.pid, libc::SIGKILL);
                            hit.insert(p.pid);
                            worker_kills += 1;
                            let _ = writeln!(log, "round {k}: {ms} ms: SIGKILL worker {}", p.pid);
                        })
                    }
                    Fault::KillTask { pick } => {
                        let tasks = if trial.threads {
                            procs::thread_tasks(pid, &mark)
                        } else {
                            procs::tasks(pid, &mark)
                        };
                        let tasks: Vec<_> =
                            tasks.into_iter().filter(|(p, _)| !hit.contains(&p.pid)).collect();
                        tasks.get(pick as usize % tasks.len().max(1)).map(|(p, i)| {
                            procs::signal(p.pid, libc::SIGKILL);
                            hit.insert(p.pid);
                            killed_tasks.insert(*i);
                            let _ = writeln!(
                                log,
                                "round {k}: {ms} ms: SIGKILL task {i} (pid {})",
                                p.pid
                            );
                        })
                    }
                    Fault::KillJobpool => {
                        let _ = child.kill();
                        signals.push(libc::SIGKILL);
                        let _ = writeln!(log, "round {k}: {ms} ms: SIGKILL jobpool");
                        Some(())
                    }
                    Fault::Signal(sig) => {
                        procs::signal(pid, sig);
                        signals.push(sig);
                        let _ = writeln!(log, "round {k}: {ms} ms: signal {sig} to jobpool");
                        Some(())
                    }
                };
                if applied.is_none() {
                    // A target that is not there (yet) is looked for again, for 500 ms.
                    if ms <= at + 500 {
                        break;
                    }
                    let _ = writeln!(log, "round {k}: {ms} ms: {fault:?}: no target");
                }
                pending.pop_front();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let exited = Instant::now();
        let hung = status.is_none();
        faulty |= !signals.is_empty() || worker_kills > 0 || !killed_tasks.is_empty();
        let survivors = procs::survivors(&mark, ORPHAN_DEADLINE.saturating_sub(exited.elapsed()));
        // (With `backend = "threads"` a SIGKILLed jobpool used to leave its commands
        // running, counted as a note; its thread workers' groups have a guard now.)
        if !survivors.is_empty() {
            let list: Vec<String> =
                survivors.iter().map(|p| format!("  {}", p.describe())).collect();
            violations.push(Violation::new(
                Kind::Orphan,
                format!(
                    "round {k}: {} process(es) alive {ORPHAN_DEADLINE:?} after jobpool exited:\n{}",
                    survivors.len(),
                    list.join("\n")
                ),
            ));
        }
        procs::kill_all(&mark);
        mounts.restore();
        last_exit = Instant::now();
        let _ = exited;

        let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        let code = match status {
            None => "hang".to_string(),
            Some(s) => s
                .code()
                .map_or_else(|| format!("sig{}", s.signal().unwrap_or(0)), |c| c.to_string()),
        };
        codes.push(code.clone());
        let _ = writeln!(log, "round {k}: exit {code} after {:.1}s", began.elapsed().as_secs_f64());
        if hung {
            violations.push(Violation::new(
                Kind::Hang,
                format!(
                    "round {k}: jobpool did not exit within {HARD_TIMEOUT:?}; stderr:\n{stderr}"
                ),
            ));
        }
        let side_to = observe::file_len(&job_dir.join("side.log"));
        let runs: Vec<PathBuf> =
            observe::run_dirs(&job_dir).into_iter().filter(|d| !runs_before.contains(d)).collect();
        let obs = RoundObs {
            round: k,
            faulty,
            status,
            stderr,
            signals,
            worker_kills,
            killed_tasks,
            sink_fault,
            ok_before,
            side: observe::side_lines(&job_dir.join("side.log"), side_from, side_to),
            runs,
            shard: None,
            journal_from: 0,
            slice: trial.slice(0),
        };
        if !hung {
            violations.extend(check::round(trial, &obs));
        }
        rounds.push(obs);
        if hung {
            break;
        }
    }
    if let Some(last) = rounds.last()
        && last.status.is_some()
    {
        violations.extend(check::final_state(trial, last, &job_dir, false));
    }

    let faults: usize = trial.rounds.iter().map(|r| r.faults.len() + r.before.len()).sum();
    let summary = format!(
        "seed {:>20}: {:>3} subs, {} rounds, {faults:>2} faults, exits [{}], {:.1}s{}",
        trial.seed,
        trial.n(),
        rounds.len(),
        codes.join(" "),
        start.elapsed().as_secs_f64(),
        if violations.is_empty() {
            String::new()
        } else {
            format!(", {} VIOLATION(S)", violations.len())
        }
    );
    if !violations.is_empty() {
        save_failure(&failures.join(trial.seed.to_string()), &log, &violations, &job_dir);
    }
    drop(mounts);
    Outcome { violations, summary, notes, log }
}

/// Copy regular files and folders (best effort; what could not be read is skipped).
/// Save a failed trial under `saved` for replay and reading: its schedule and log, its
/// violations, and its job folder (job file, side log, rounds' output, runs, sinks).
pub fn save_failure(saved: &Path, log: &str, violations: &[Violation], job_dir: &Path) {
    let _ = fs::remove_dir_all(saved);
    let _ = fs::create_dir_all(saved);
    let _ = fs::write(saved.join("schedule.txt"), log);
    let mut text = String::new();
    for v in violations {
        let _ = writeln!(text, "[{:?}] {}\n", v.kind, v.message);
    }
    let _ = fs::write(saved.join("violations.txt"), text);
    copy_tree(job_dir, &saved.join("job"));
}

pub fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::create_dir_all(to);
    for e in fs::read_dir(from).into_iter().flatten().flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let dest = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ft.is_file() {
            let _ = fs::copy(e.path(), dest);
        }
    }
}
