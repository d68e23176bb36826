//! The invariants, checked after every round and after the final one (the list and
//! what each means is in `main.rs`'s header).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use serde_json::Value;

use crate::observe::{self, record_index, status};
use crate::plan::{Behaviour, SinkFormat, Trial};
use crate::trial::RoundObs;

/// What kind of promise a violation breaks (the figures the book reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Hang,
    Orphan,
    /// A submission without its record, or a journaled `ok` not in the final sinks.
    Lost,
    /// A submission run again after its `ok` was journaled, more starts than attempts, or
    /// two records for one submission.
    Duplicated,
    Panic,
    /// A status (or attempt count, or value) the task's behaviour and the faults do not
    /// explain.
    Status,
    /// A sink not complete, not in order, or not agreeing with the journal.
    Sink,
    TempFile,
    Journal,
    ExitCode,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: Kind,
    pub message: String,
}

impl Violation {
    pub fn new(kind: Kind, message: String) -> Violation {
        Violation { kind, message }
    }
}

/// A sink's record as the checks see it: submission, status, key (not in CSV).
type Row = (Option<usize>, String, Option<String>);

/// Exit codes jobpool may end with.
const CODES: [i32; 5] = [0, 1, 2, 3, 130];

/// Checks after one round: exit status, panics, the round's journal and `run.json`, and
/// every record of the round against the task's behaviour, the faults and the side log.
pub fn round(trial: &Trial, o: &RoundObs) -> Vec<Violation> {
    let mut v = Vec::new();
    let k = o.round;
    let mut bad =
        |kind: Kind, msg: String| v.push(Violation::new(kind, format!("round {k}: {msg}")));
    let exit = o.status.expect("checked rounds ended");
    let interrupted = o.signals.iter().any(|&s| s == libc::SIGINT || s == libc::SIGTERM);
    // A third SIGINT/SIGTERM exits at once (`cli/signals.rs`), as abruptly as a SIGKILL.
    let forced =
        o.signals.iter().filter(|&&s| s == libc::SIGINT || s == libc::SIGTERM).count() >= 3;
    let killed = o.signals.contains(&libc::SIGKILL) || forced;

    if o.stderr.contains("panicked") || exit.code() == Some(101) {
        bad(Kind::Panic, format!("exit {exit:?}; stderr:\n{}", o.stderr));
    }
    match (exit.code(), exit.signal()) {
        (Some(c), _) if !CODES.contains(&c) => bad(Kind::ExitCode, format!("exit code {c}")),
        (Some(2), _) => bad(Kind::ExitCode, format!("exit code 2 for a valid job:\n{}", o.stderr)),
        (Some(130), _) if !interrupted => {
            bad(Kind::ExitCode, "exit code 130 without a signal".into())
        }
        (Some(3), _) if trial.job_timeout_ms.is_none() => {
            bad(Kind::ExitCode, "exit code 3 without a job timeout".into())
        }
        (None, Some(s)) if !o.signals.contains(&s) => {
            bad(Kind::ExitCode, format!("killed by signal {s}, which the harness did not send"))
        }
        _ => {}
    }

    // The round's journal and run.json.
    if o.runs.len() > 1 {
        bad(Kind::Journal, format!("one jobpool made {} run folders", o.runs.len()));
    }
    let mut records: BTreeMap<usize, Value> = BTreeMap::new();
    for run in &o.runs {
        // A shard's journal and metadata are its own files in the shared run folder,
        // appended to by every run of the shard: only what this round appended counts.
        let (journal, info, from) = match o.shard {
            Some((s, c)) => {
                let stem = format!("shard-{s:04}-of-{c:04}");
                (
                    run.join(format!("{stem}.jsonl")),
                    run.join(format!("{stem}.json")),
                    o.journal_from,
                )
            }
            None => (run.join("records.jsonl"), run.join("run.json"), 0),
        };
        // A whole run's records: its journal and the references it took from earlier runs.
        let j = match o.shard {
            Some(_) => observe::read_journal_file(&journal, from),
            None => observe::read_journal(run),
        };
        for line in &j.bad {
            bad(
                Kind::Journal,
                format!("{}: a complete line that is no record: {line}", run.display()),
            );
        }
        if j.torn && !killed {
            bad(
                Kind::Journal,
                format!("{}: torn last line, yet jobpool was not SIGKILLed", run.display()),
            );
        }
        match observe::info_file(&info) {
            // SIGKILLed between creating the folder and writing run.json: readers skip a
            // folder without a journal, and there is none yet.
            Err(_) if killed && j.records.is_empty() && !journal.exists() => {}
            Err(e) => bad(Kind::Journal, format!("{}: run.json unreadable: {e}", run.display())),
            Ok(info) => {
                let state = info["state"].as_str().unwrap_or("?");
                if let Some(c) = exit.code().filter(|_| !forced) {
                    if state != "finished" || info["exit_code"].as_i64() != Some(i64::from(c)) {
                        bad(
                            Kind::Journal,
                            format!(
                                "jobpool exited {c} but run.json says {state}, exit {}",
                                info["exit_code"]
                            ),
                        );
                    }
                } else if !killed && state != "finished" {
                    bad(Kind::Journal, format!("run.json is {state} after {exit:?}"));
                }
            }
        }
        for r in j.records {
            let Some(i) = record_index(&r) else { continue };
            if r["index"].as_u64() != Some(i as u64) {
                bad(Kind::Status, format!("record of submission {i} has index {}", r["index"]));
            }
            if records.insert(i, r).is_some() {
                bad(Kind::Duplicated, format!("two records of submission {i} in one journal"));
            }
        }
    }
    if let Some(i) = records.keys().find(|i| !o.slice.contains(i)) {
        bad(Kind::Journal, format!("a record of submission {i}, not of this shard {:?}", o.slice));
    }
    if exit.code().is_some_and(|c| c != 2) && !o.runs.is_empty() && !forced {
        // A run that ended on its own has a record for every submission — or none, when
        // its sinks could not be opened.
        let n = o.slice.len();
        if records.len() != n && !(o.sink_fault && records.is_empty()) {
            let missing: Vec<usize> =
                o.slice.clone().filter(|i| !records.contains_key(i)).take(20).collect();
            bad(
                Kind::Lost,
                format!(
                    "{} of {n} records journaled; missing (first 20): {missing:?}",
                    records.len()
                ),
            );
        }
    }

    let starts = o.starts();
    let ended = o.ended();
    for &i in &o.ok_before {
        if let Some(c) = starts.get(&i) {
            bad(
                Kind::Duplicated,
                format!("submission {i} started {c} time(s) though its ok was journaled"),
            );
        }
    }
    for (&i, r) in &records {
        let st = status(r);
        let attempts = r["attempts"].as_u64().unwrap_or(u64::MAX);
        let b = trial.subs[i].behaviour;
        if r["resumed"].as_bool() == Some(true) {
            if st != "ok" || !o.ok_before.contains(&i) {
                bad(
                    Kind::Status,
                    format!("submission {i}: resumed {st} record without a journaled ok"),
                );
            }
            continue;
        }
        if o.ok_before.contains(&i) {
            bad(
                Kind::Duplicated,
                format!("submission {i}: ran again ({st}) though its ok was journaled"),
            );
        }
        let started = starts.get(&i).copied().unwrap_or(0) as u64;
        if started > attempts {
            bad(
                Kind::Duplicated,
                format!(
                    "submission {i}: started {started} times, record says {attempts} attempt(s) ({st})"
                ),
            );
        }
        if attempts > u64::from(trial.retries) + 1 {
            bad(
                Kind::Status,
                format!("submission {i}: {attempts} attempts with retries = {}", trial.retries),
            );
        }
        let explained = match st {
            "ok" => {
                if r["value"].as_str() != Some(&format!("v{i}")) {
                    bad(Kind::Status, format!("submission {i}: ok with value {}", r["value"]));
                }
                if !ended.contains(&i) {
                    bad(
                        Kind::Status,
                        format!("submission {i}: ok, but no attempt of this round reached its end"),
                    );
                }
                b.succeeds()
            }
            "error" => b == Behaviour::Fail || o.killed_tasks.contains(&i),
            "timeout" => b == Behaviour::Hang,
            "crashed" => o.worker_kills > 0,
            "cancelled" => interrupted || trial.job_timeout_ms.is_some() || o.sink_fault,
            "skipped" => {
                if attempts != 0 {
                    bad(
                        Kind::Status,
                        format!("submission {i}: skipped after {attempts} attempt(s)"),
                    );
                }
                trial.max_failures.is_some() || trial.on_failure_stop
            }
            _ => false,
        };
        if !explained {
            bad(
                Kind::Status,
                format!(
                    "submission {i} ({}) is {st}: not explained by its task or the round's faults \
                     (killed tasks {:?}, {} worker kills, signals {:?}): {r}",
                    b.name(),
                    o.killed_tasks,
                    o.worker_kills,
                    o.signals
                ),
            );
        }
        if !o.faulty {
            // Nothing was killed: every attempt wrote its start line.
            if matches!(st, "ok" | "error" | "timeout") && started != attempts {
                bad(
                    Kind::Duplicated,
                    format!(
                        "submission {i}: started {started} times, {attempts} attempt(s) ({st})"
                    ),
                );
            }
            let retried_until = u64::from(trial.retries) + 1;
            if matches!(st, "error" | "timeout")
                && trial.retries_on(st)
                && trial.max_failures.is_none()
                && !trial.on_failure_stop
                && trial.job_timeout_ms.is_none()
                && attempts != retried_until
            {
                bad(
                    Kind::Status,
                    format!(
                        "submission {i}: {st} after {attempts} attempt(s), retries = {}",
                        trial.retries
                    ),
                );
            }
        }
    }
    v
}

/// Checks after the last (clean) round: complete, ordered sinks that agree with the
/// final journal, no lost `ok`, an exit code that matches the records, no temporary file.
///
/// `collected`: the final journal and sinks were written by `jobpool collect` from shard
/// journals, which takes a submission's `ok` record whichever run of its shard wrote it
/// (so not necessarily a `resumed` one), and exits 1 on a failure, else 0 (never 3).
pub fn final_state(trial: &Trial, o: &RoundObs, job_dir: &Path, collected: bool) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut bad = |kind: Kind, msg: String| v.push(Violation::new(kind, format!("final: {msg}")));
    let n = trial.n();
    let Some(run) = o.runs.last() else {
        bad(Kind::Journal, "the final round made no run folder".into());
        return v;
    };
    let journal: BTreeMap<usize, Value> = observe::read_journal(run)
        .records
        .into_iter()
        .filter_map(|r| Some((record_index(&r)?, r)))
        .collect();
    for &i in &o.ok_before {
        match journal.get(&i) {
            Some(r) if status(r) == "ok" && (collected || r["resumed"].as_bool() == Some(true)) => {
            }
            Some(r) => {
                bad(Kind::Lost, format!("submission {i} had a journaled ok, final record: {r}"))
            }
            None => bad(
                Kind::Lost,
                format!("submission {i} had a journaled ok and has no final record"),
            ),
        }
    }

    // Exit code from the records.
    let statuses: Vec<&str> = (0..n).map(|i| journal.get(&i).map_or("?", status)).collect();
    let want = if statuses.contains(&"cancelled") && !collected {
        3
    } else if statuses.iter().any(|s| matches!(*s, "error" | "timeout" | "crashed")) {
        1
    } else {
        0
    };
    let got = o.status.and_then(|s| s.code());
    if got != Some(want) {
        bad(Kind::ExitCode, format!("exit {got:?}, the records say {want}"));
    }

    let out = job_dir.join("out");
    for sink in &trial.sinks {
        let path = out.join(sink.file());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                bad(Kind::Sink, format!("{}: {e}", sink.file()));
                continue;
            }
        };
        // (index, status, key) per record, in file order.
        let rows: Result<Vec<Row>, String> = match sink {
            SinkFormat::Jsonl => text
                .lines()
                .map(|l| {
                    let r: Value = serde_json::from_str(l).map_err(|e| format!("{e}: {l}"))?;
                    Ok((
                        record_index(&r),
                        status(&r).to_string(),
                        r["key"].as_str().map(String::from),
                    ))
                })
                .collect(),
            SinkFormat::Json => serde_json::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|a| a.as_array().cloned().ok_or_else(|| "not an array".to_string()))
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            (
                                record_index(r),
                                status(r).to_string(),
                                r["key"].as_str().map(String::from),
                            )
                        })
                        .collect()
                }),
            SinkFormat::Csv => {
                let rows = observe::parse_csv(&text);
                let head = rows.first().cloned().unwrap_or_default();
                let col = |name: &str| head.iter().position(|h| h == name);
                match (col("i"), col("status")) {
                    (Some(ci), Some(cs)) => Ok(rows[1..]
                        .iter()
                        .map(|r| {
                            (
                                r.get(ci).and_then(|x| x.parse().ok()),
                                r.get(cs).cloned().unwrap_or_default(),
                                None,
                            )
                        })
                        .collect()),
                    _ => Err(format!("no i or status column: {head:?}")),
                }
            }
        };
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                bad(Kind::Sink, format!("{}: unreadable: {e}", sink.file()));
                continue;
            }
        };
        if rows.len() != n {
            let kind = if rows.len() < n { Kind::Lost } else { Kind::Duplicated };
            bad(kind, format!("{}: {} records for {n} submissions", sink.file(), rows.len()));
        }
        for (pos, (i, st, key)) in rows.iter().enumerate() {
            if *i != Some(pos) {
                bad(Kind::Sink, format!("{}: record {pos} is submission {i:?}", sink.file()));
                break;
            }
            let Some(j) = journal.get(&pos) else { continue };
            if st != status(j) || key.as_deref().is_some_and(|k| Some(k) != j["key"].as_str()) {
                bad(
                    Kind::Sink,
                    format!(
                        "{}: record {pos} is {st}, the journal says {}",
                        sink.file(),
                        status(j)
                    ),
                );
                break;
            }
        }
    }
    let temps = observe::temp_files(&out);
    if !temps.is_empty() {
        bad(Kind::TempFile, format!("temporary sink files after a completed run: {temps:?}"));
    }
    v
}
