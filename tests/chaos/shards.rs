//! A sharded trial: every round runs the N shards of the job at once
//! (`jobpool run [--resume] --shard I/N --run-id chaos`, each journaling to its own
//! `shard-I-of-N.jsonl` in the one run folder), the faults hit any of them (a worker or a
//! task of any shard, one shard's jobpool killed or signalled; a torn last line in one
//! shard journal before a round); the clean round runs every shard with `--resume`, then
//! `jobpool collect --run-id chaos` writes the sinks. Every shard run of every round is
//! checked like a whole run (`check::round`, on what it appended to its journal and on
//! its slice of the plan), and the collected run like a final round
//! (`check::final_state`). Sink faults do not apply: shards write no sinks.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::check::{self, Kind, Violation};
use crate::observe;
use crate::plan::{Before, Fault, Trial};
use crate::procs;
use crate::trial::{HARD_TIMEOUT, ORPHAN_DEADLINE, Outcome, RoundObs, bin, save_failure};

/// The run id every shard of the trial records under.
const RUN_ID: &str = "chaos";

fn jobpool(job_dir: &Path, args: &[String], mark: &str, log: &str) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("job.toml").current_dir(job_dir);
    cmd.env("NO_COLOR", "1").env(procs::MARK_VAR, mark).stdin(Stdio::null());
    cmd.env("TMPDIR", crate::trial::private_tmp(job_dir));
    cmd.stdout(fs::File::create(job_dir.join(format!("logs/{log}.stdout"))).unwrap());
    cmd.stderr(fs::File::create(job_dir.join(format!("logs/{log}.stderr"))).unwrap());
    // SAFETY: as in `trial::run`: PR_SET_PDEATHSIG only sets a flag of the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    };
    cmd.spawn().expect("start jobpool")
}

/// One shard's run in a round: its process and what was done to it.
struct ShardRun {
    child: Child,
    status: Option<ExitStatus>,
    signals: Vec<i32>,
    worker_kills: usize,
    killed_tasks: BTreeSet<usize>,
    journal_from: u64,
    info_before: Option<String>,
}

pub fn run_sharded(trial: &Trial, failures: &Path) -> Outcome {
    let count = trial.shards.expect("a sharded trial");
    let start = Instant::now();
    let dir = tempfile::Builder::new().prefix("jp-chaos-").tempdir().expect("temporary folder");
    let job_dir = dir.path().to_path_buf();
    fs::write(job_dir.join("job.toml"), trial.job_toml()).unwrap();
    fs::create_dir(job_dir.join("out")).unwrap();
    fs::create_dir(job_dir.join("logs")).unwrap();
    let run_dir = job_dir.join(".jobpool/runs/job").join(RUN_ID);
    let stem = |s: u32| run_dir.join(format!("shard-{s:04}-of-{count:04}"));

    let mut log = trial.describe();
    let mut violations = Vec::new();
    let mut codes = Vec::new();
    let mut hung = false;
    for (k, round) in trial.rounds.iter().enumerate() {
        let mut faulty = false;
        for b in &round.before {
            if let Before::TornJournal { at_permille } = *b
                && let Some(what) = observe::tear_shard_journal(&job_dir, &run_dir, at_permille)
            {
                let _ = writeln!(log, "round {k}: {what}");
                faulty = true;
            }
        }
        let ok_before = observe::journaled_ok(&job_dir);
        let side_from = observe::file_len(&job_dir.join("side.log"));
        let mark = format!("{}-{}-{k}", std::process::id(), trial.seed);
        let mut shards: Vec<ShardRun> = (0..count)
            .map(|s| {
                let journal_from = observe::file_len(&stem(s).with_extension("jsonl"));
                let info_before = fs::read_to_string(stem(s).with_extension("json")).ok();
                let mut args: Vec<String> = vec!["run".into()];
                if round.resume {
                    args.push("--resume".into());
                }
                args.extend(["--shard".into(), format!("{s}/{count}")]);
                args.extend(["--run-id".into(), RUN_ID.into()]);
                ShardRun {
                    child: jobpool(&job_dir, &args, &mark, &format!("round-{k}-shard-{s}")),
                    status: None,
                    signals: Vec::new(),
                    worker_kills: 0,
                    killed_tasks: BTreeSet::new(),
                    journal_from,
                    info_before,
                }
            })
            .collect();
        let began = Instant::now();
        let mut pending: VecDeque<(u64, Fault)> = round.faults.iter().copied().collect();
        let mut hit = BTreeSet::new();
        let mut nth = 0usize;
        loop {
            for sh in &mut shards {
                if sh.status.is_none() {
                    sh.status = sh.child.try_wait().unwrap();
                }
            }
            if shards.iter().all(|s| s.status.is_some()) {
                break;
            }
            if crate::interrupted() || began.elapsed() > HARD_TIMEOUT {
                let _ = writeln!(log, "round {k}: hung or interrupted; killing the shards");
                hung = !crate::interrupted();
                for sh in &mut shards {
                    let _ = sh.child.kill();
                    let _ = sh.child.wait();
                }
                procs::kill_all(&mark);
                if !hung {
                    return Outcome {
                        violations: Vec::new(),
                        summary: format!("seed {}: interrupted", trial.seed),
                        notes: Vec::new(),
                        log,
                    };
                }
                break;
            }
            let ms = began.elapsed().as_millis() as u64;
            while let Some(&(at, fault)) = pending.front() {
                if ms < at {
                    break;
                }
                // The shard a jobpool-level fault hits: drawn from the schedule alone.
                let target = (at as usize + nth) % count as usize;
                let applied = match fault {
                    Fault::KillWorker { pick } => {
                        let w: Vec<(usize, procs::Proc)> = shards
                            .iter()
                            .enumerate()
                            .flat_map(|(s, sh)| {
                                procs::workers(sh.child.id() as i32, &mark)
                                    .into_iter()
                                    .map(move |p| (s, p))
                            })
                            .filter(|(_, p)| !hit.contains(&p.pid))
                            .collect();
                        w.get(pick as usize % w.len().max(1)).map(|(s, p)| {
                            procs::signal(p.pid, libc::SIGKILL);
                            hit.insert(p.pid);
                            shards[*s].worker_kills += 1;
                            let _ = writeln!(
                                log,
                                "round {k}: {ms} ms: SIGKILL worker {} of shard {s}",
                                p.pid
                            );
                        })
                    }
                    Fault::KillTask { pick } => {
                        let t: Vec<(usize, procs::Proc, usize)> = shards
                            .iter()
                            .enumerate()
                            .flat_map(|(s, sh)| {
                                procs::tasks(sh.child.id() as i32, &mark)
                                    .into_iter()
                                    .map(move |(p, i)| (s, p, i))
                            })
                            .filter(|(_, p, _)| !hit.contains(&p.pid))
                            .collect();
                        t.get(pick as usize % t.len().max(1)).map(|(s, p, i)| {
                            procs::signal(p.pid, libc::SIGKILL);
                            hit.insert(p.pid);
                            shards[*s].killed_tasks.insert(*i);
                            let _ = writeln!(
                                log,
                                "round {k}: {ms} ms: SIGKILL task {i} (pid {}) of shard {s}",
                                p.pid
                            );
                        })
                    }
                    Fault::KillJobpool => {
                        let sh = &mut shards[target];
                        (sh.status.is_none()).then(|| {
                            let _ = sh.child.kill();
                            sh.signals.push(libc::SIGKILL);
                            let _ = writeln!(log, "round {k}: {ms} ms: SIGKILL shard {target}");
                        })
                    }
                    Fault::Signal(sig) => {
                        let sh = &mut shards[target];
                        (sh.status.is_none()).then(|| {
                            procs::signal(sh.child.id() as i32, sig);
                            sh.signals.push(sig);
                            let _ =
                                writeln!(log, "round {k}: {ms} ms: signal {sig} to shard {target}");
                        })
                    }
                };
                if applied.is_none() {
                    if ms <= at + 500 {
                        break;
                    }
                    let _ = writeln!(log, "round {k}: {ms} ms: {fault:?}: no target");
                }
                pending.pop_front();
                nth += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let exited = Instant::now();
        faulty |= shards
            .iter()
            .any(|s| !s.signals.is_empty() || s.worker_kills > 0 || !s.killed_tasks.is_empty());
        let survivors = procs::survivors(&mark, ORPHAN_DEADLINE.saturating_sub(exited.elapsed()));
        if !survivors.is_empty() {
            let list: Vec<String> =
                survivors.iter().map(|p| format!("  {}", p.describe())).collect();
            violations.push(Violation::new(
                Kind::Orphan,
                format!(
                    "round {k}: {} process(es) alive {ORPHAN_DEADLINE:?} after the shards exited:\n{}",
                    survivors.len(),
                    list.join("\n")
                ),
            ));
        }
        procs::kill_all(&mark);
        let side_to = observe::file_len(&job_dir.join("side.log"));
        let side = observe::side_lines(&job_dir.join("side.log"), side_from, side_to);
        let mut round_codes = Vec::new();
        for (s, sh) in shards.into_iter().enumerate() {
            let s = s as u32;
            let stderr =
                fs::read_to_string(job_dir.join(format!("logs/round-{k}-shard-{s}.stderr")))
                    .unwrap_or_default();
            round_codes.push(match sh.status {
                None => "hang".to_string(),
                Some(st) => st
                    .code()
                    .map_or_else(|| format!("sig{}", st.signal().unwrap_or(0)), |c| c.to_string()),
            });
            if hung {
                violations.push(Violation::new(
                    Kind::Hang,
                    format!("round {k}: shard {s} did not exit within {HARD_TIMEOUT:?}; stderr:\n{stderr}"),
                ));
                continue;
            }
            // Did this round's run of the shard start recording? Its metadata file is
            // rewritten (a new `started_at`) when it does.
            let info_now = fs::read_to_string(stem(s).with_extension("json")).ok();
            let recorded = info_now.is_some() && info_now != sh.info_before
                || observe::file_len(&stem(s).with_extension("jsonl")) > sh.journal_from;
            // A run of a shard appends to its journal: after a torn last line (a full
            // disk, a tear), its first record must start a line of its own, or it is
            // glued to the torn one and unreadable: lost.
            let journal = fs::read(stem(s).with_extension("jsonl")).unwrap_or_default();
            let from = sh.journal_from as usize;
            if from > 0
                && journal.len() > from
                && journal[from - 1] != b'\n'
                && journal[from] != b'\n'
            {
                violations.push(Violation::new(
                    Kind::Lost,
                    format!(
                        "round {k}: shard {s}: a record was appended to the torn last line of \
                         its journal (at byte {from}): that line is unreadable"
                    ),
                ));
            }
            let slice = trial.slice(s);
            let obs = RoundObs {
                round: k,
                faulty,
                status: sh.status,
                stderr,
                signals: sh.signals,
                worker_kills: sh.worker_kills,
                killed_tasks: sh.killed_tasks,
                sink_fault: false,
                ok_before: ok_before.iter().copied().filter(|i| slice.contains(i)).collect(),
                side: side.clone(),
                runs: if recorded { vec![run_dir.clone()] } else { Vec::new() },
                shard: Some((s, count)),
                journal_from: sh.journal_from,
                slice,
            };
            for mut v in check::round(trial, &obs) {
                v.message = format!("shard {s}: {}", v.message);
                violations.push(v);
            }
        }
        codes.push(round_codes.join("/"));
        if hung {
            break;
        }
    }

    // The clean round is over: collect.
    if !hung {
        let ok_before = observe::journaled_ok(&job_dir);
        let mark = format!("{}-{}-collect", std::process::id(), trial.seed);
        let args = ["collect".to_string(), "--run-id".into(), RUN_ID.into()];
        let mut child = jobpool(&job_dir, &args, &mark, "collect");
        let began = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if began.elapsed() > HARD_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        procs::kill_all(&mark);
        let stderr = fs::read_to_string(job_dir.join("logs/collect.stderr")).unwrap_or_default();
        codes.push(format!(
            "collect {}",
            status.and_then(|s| s.code()).map_or("?".into(), |c| c.to_string())
        ));
        match status {
            None => violations.push(Violation::new(
                Kind::Hang,
                format!("collect did not exit within {HARD_TIMEOUT:?}"),
            )),
            Some(st) => {
                if stderr.contains("panicked") || st.code() == Some(101) {
                    violations.push(Violation::new(Kind::Panic, format!("collect: {stderr}")));
                }
                let obs = RoundObs {
                    round: trial.rounds.len(),
                    faulty: false,
                    status,
                    stderr,
                    signals: Vec::new(),
                    worker_kills: 0,
                    killed_tasks: BTreeSet::new(),
                    sink_fault: false,
                    ok_before,
                    side: Vec::new(),
                    runs: vec![run_dir.clone()],
                    shard: None,
                    journal_from: 0,
                    slice: trial.slice(0),
                };
                violations.extend(check::final_state(trial, &obs, &job_dir, true));
            }
        }
    }

    let faults: usize = trial.rounds.iter().map(|r| r.faults.len() + r.before.len()).sum();
    let summary = format!(
        "seed {:>20}: {:>3} subs, {} shards, {} rounds, {faults:>2} faults, exits [{}], {:.1}s{}",
        trial.seed,
        trial.n(),
        count,
        trial.rounds.len(),
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
    Outcome { violations, summary, notes: Vec::new(), log }
}
