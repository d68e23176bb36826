//! `jobpool collect JOB`: merge the shard journals of a run (`jobpool run --shard I/N`)
//! into the job's sinks, complete and in submission order, and into the run's own
//! `run.json` + `records.jsonl` (so `--resume`, `runs` and reports see one run).
//!
//! Shards may have run in any order, on any machine sharing the folder, some more than
//! once: for each submission the `ok` record wins, otherwise the last one journaled. A
//! record whose key no longer matches the plan (the job was edited since) is not used.
//! Memory: one slice at a time.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::diag;
use super::exit_code::{INVALID, OK, TASK_FAILED};
use super::frontend::{error_chain, say};
use crate::model::Job;
use crate::plan::{Plan, Shard};
use crate::pool::Registry;
use crate::record::{Status, StatusCounts, TaskRecord};
use crate::sink::OrderedSinks;
use crate::store::{self, RunEnd, RunMeta, RunStore};
use crate::validate;

/// Arguments of `jobpool collect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  for i in 0 1 2 3; do jobpool run --shard $i/4 sweep.toml & done; wait
  jobpool collect sweep.toml          # the sinks, complete and in order

Exit codes: 0 every submission has an ok record; 1 a task failed or a submission has no
record yet (the missing ones are named); 2 invalid job file or no shards.")]
pub struct CollectArgs {
    /// The job file the shards ran.
    #[arg(value_name = "JOB")]
    job: PathBuf,
    /// The run to collect (default: the latest run of the job that has shards).
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// No summary.
    #[arg(long, short)]
    quiet: bool,
}

/// Ranges of consecutive indexes, `3-7, 12`, at most `most` of them.
fn ranges(indexes: &[u64], most: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let mut j = i;
        while j + 1 < indexes.len() && indexes[j + 1] == indexes[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indexes[i].to_string()
        } else {
            format!("{}-{}", indexes[i], indexes[j])
        });
        i = j + 1;
    }
    let more = parts.len().saturating_sub(most);
    parts.truncate(most);
    if more > 0 {
        parts.push(format!("and {more} more ranges"));
    }
    parts.join(", ")
}

/// Run `jobpool collect`.
pub fn run(args: CollectArgs, registry: &Registry) -> u8 {
    let opts = super::load_options(registry, Vec::new());
    let job = match validate::load(&args.job, &opts) {
        Ok(j) => j,
        Err(e) => {
            eprint!("{}", diag::render(&e));
            return INVALID;
        }
    };
    let dir = match find_run(&job, args.run_id.as_deref()) {
        Ok(d) => d,
        Err(message) => {
            say(&format!(
                "error: {message}\n  help: run the shards first: jobpool run --shard 0/N {}\n",
                job.path.display()
            ));
            return INVALID;
        }
    };
    match collect(&job, &dir, args.quiet) {
        Ok(code) => code,
        Err(message) => {
            say(&format!("error: {message}\n"));
            TASK_FAILED
        }
    }
}

fn find_run(job: &Job, id: Option<&str>) -> Result<PathBuf, String> {
    if let Some(id) = id {
        let dir = store::job_runs_dir(&job.dir, &job.name).join(id);
        return if store::shard_journals(&dir).is_ok_and(|s| !s.is_empty()) {
            Ok(dir)
        } else {
            Err(format!("run {id} of {} has no shard journals", job.name))
        };
    }
    let runs =
        store::list_runs(&job.dir, &job.name).map_err(|e| format!("cannot list runs: {e}"))?;
    runs.into_iter()
        .rev()
        .find(|r| store::shard_journals(&r.path).is_ok_and(|s| !s.is_empty()))
        .map(|r| r.path)
        .ok_or_else(|| format!("{} has no run with shards", job.name))
}

fn collect(job: &Job, dir: &std::path::Path, quiet: bool) -> Result<u8, String> {
    let journals =
        store::shard_journals(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let count = journals[0].1;
    if let Some((_, n, p)) = journals.iter().find(|(_, n, _)| *n != count) {
        return Err(format!(
            "{} is a shard of {n}, others of {count}: a run is sliced one way",
            p.display()
        ));
    }
    let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut sinks = OrderedSinks::open(job, &run_id)
        .map_err(|e| format!("cannot open a sink: {}", error_chain(&e)))?;
    let plan_len = Plan::new(job).len();
    let meta = RunMeta {
        run_id: Some(run_id.clone()),
        argv: std::env::args().collect(),
        submissions: Some(plan_len),
        into_existing: true,
        ..RunMeta::default()
    };
    let mut merged =
        RunStore::create(job, meta).map_err(|e| format!("cannot write the run: {e}"))?;
    let mut counts = StatusCounts::default();
    let mut missing: Vec<u64> = Vec::new();
    let mut changed = 0u64;
    let mut first_failure: Option<TaskRecord> = None;
    let mut plan = Plan::new(job);
    for index in 0..count {
        let range = Shard { index, count }.range(plan_len);
        let mut best: HashMap<u64, TaskRecord> = HashMap::new();
        for (_, _, path) in journals.iter().filter(|(i, _, _)| *i == index) {
            let records = store::Records::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for rec in records.flatten() {
                if !range.contains(&rec.index) {
                    continue;
                }
                if plan.get(rec.index).is_none_or(|s| s.key != rec.key) {
                    changed += 1;
                    continue;
                }
                let keep_old = best.get(&rec.index).is_some_and(|old| old.status == Status::Ok);
                if !keep_old {
                    best.insert(rec.index, rec);
                }
            }
        }
        for i in range {
            let Some(rec) = best.remove(&i) else {
                missing.push(i);
                continue;
            };
            counts.add(rec.status);
            if rec.status.is_failure() && first_failure.is_none() {
                first_failure = Some(rec.clone());
            }
            merged.append(&rec).map_err(|e| format!("cannot write the run's journal: {e}"))?;
            if let Err(e) = sinks.accept(rec)
                && !e.is_broken_pipe()
            {
                sinks.abort();
                return Err(format!("cannot write a sink: {}", error_chain(&e)));
            }
        }
    }
    let code = if !missing.is_empty() || counts.failures() > 0 { TASK_FAILED } else { OK };
    if let Err(e) = sinks.finish()
        && !e.is_broken_pipe()
    {
        return Err(format!("cannot finish a sink: {}", error_chain(&e)));
    }
    merged
        .finish(RunEnd { exit_code: code, cancelled: None })
        .map_err(|e| format!("cannot finish the run: {e}"))?;
    if !quiet {
        let mut parts = vec![format!("{} ok", counts.ok)];
        for s in &Status::ALL[1..] {
            let n = counts.get(*s);
            if n > 0 {
                parts.push(format!("{n} {s}"));
            }
        }
        say(&format!(
            "{}: collected {} of {plan_len} from {} shard journal{}: {}; run {run_id}\n",
            job.name,
            counts.total(),
            journals.len(),
            if journals.len() == 1 { "" } else { "s" },
            parts.join(", ")
        ));
        if changed > 0 {
            say(&format!(
                "{}: {changed} records were not used: their arguments or task changed since their shard ran\n",
                job.name
            ));
        }
        if !missing.is_empty() {
            let shards: Vec<String> = (0..count)
                .filter(|i| {
                    let r = Shard { index: *i, count }.range(plan_len);
                    missing.iter().any(|m| r.contains(m))
                })
                .map(|i| format!("{i}/{count}"))
                .collect();
            let which = if shards.len() == 1 { shards[0].clone() } else { "I/N".into() };
            say(&format!(
                "{}: {} submissions have no record yet (index {}); run shard {} again: jobpool run --resume --shard {which} {}\n",
                job.name,
                missing.len(),
                ranges(&missing, 8),
                shards.join(", "),
                job.path.display()
            ));
        }
        if let Some(f) = first_failure {
            say(&format!(
                "{}: task {} failed ({}): {}\n",
                job.name,
                f.index,
                f.status,
                f.error.unwrap_or_default()
            ));
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_are_compact() {
        assert_eq!(super::ranges(&[1, 2, 3, 5, 7, 8], 8), "1-3, 5, 7-8");
        assert_eq!(super::ranges(&[1, 3, 5], 2), "1, 3, and 1 more ranges");
    }
}
