//! `jobpool runs --prune KEEP`: remove old runs without losing what `--resume` uses.
//!
//! `--resume` takes, per key, the latest `ok` record over every run of the job. Removing
//! a run would lose the `ok` records of keys that no kept run has an `ok` for (a run
//! that covered part of a sweep, then edits that ran other parts). So before removing,
//! those records — the latest `ok` per key among the removed runs, for keys without an
//! `ok` in the kept runs — are written to one folder of kept records (`run.json` with
//! `"compacted": true`), dated like the newest removed run so it sorts before every kept
//! run. It replaces the previous such folder, is not counted as a run, and is not a
//! report's "latest run". Disk use after a prune is the kept runs plus at most one record
//! per key. Shared reference files (`.jobpool/resumed/<job>/`) no kept run names are removed, and
//! the job's resume index file is written anew.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::Path;

use serde::Deserialize;

use super::journal::Lines;
use super::{
    RECORDS_FILE, RUN_FILE, RunDir, RunInfo, RunState, StatusCounts, list_runs, now_rfc3339,
    write_json_atomic,
};
use crate::record::Status;

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    /// Ids of the runs removed (and of a previous folder of kept records).
    pub removed: Vec<String>,
    /// Runs kept.
    pub kept: usize,
    /// `ok` records of removed runs kept for `--resume`, and the folder holding them.
    pub kept_records: u64,
    /// The id of that folder, when there are any.
    pub compacted: Option<String>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    status: Status,
}

/// Calls `f(key, line)` for each `ok` line of a run's journal (missing journal: none).
fn ok_lines(run: &RunDir, mut f: impl FnMut(&str, &[u8])) -> io::Result<()> {
    let file = match File::open(run.records_path()) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut lines = Lines::new(BufReader::with_capacity(64 * 1024, file));
    while let Some((_, line)) = lines.next_line()? {
        if let Ok(h) = serde_json::from_slice::<Head>(line)
            && h.status == Status::Ok
        {
            f(&h.key, line);
        }
    }
    Ok(())
}

/// Keep the newest `keep` runs of the job `job_name` beside `job_dir` and remove older
/// ones, keeping every `ok` record that `--resume` would still take from them.
///
/// Runs still `running` are counted like others (a run whose process died stays
/// `running` forever); prune while no run of the job is in progress.
pub fn prune(job_dir: &Path, job_name: &str, keep: usize) -> io::Result<Pruned> {
    let all = list_runs(job_dir, job_name)?;
    let (old_compacted, runs): (Vec<RunDir>, Vec<RunDir>) =
        all.into_iter().partition(RunDir::is_compacted);
    let cut = runs.len().saturating_sub(keep);
    let (remove, kept) = runs.split_at(cut);
    let mut out = Pruned { kept: kept.len(), ..Pruned::default() };
    if remove.is_empty() {
        return Ok(out);
    }
    let mut covered: HashSet<String> = HashSet::new();
    for run in kept {
        ok_lines(run, |key, _| {
            covered.insert(key.to_string());
        })?;
    }
    // Oldest first, so the latest `ok` of a key wins.
    let mut needed: HashMap<String, Vec<u8>> = HashMap::new();
    for run in old_compacted.iter().chain(remove) {
        ok_lines(run, |key, line| {
            if !covered.contains(key) {
                needed.insert(key.to_string(), line.to_vec());
            }
        })?;
    }
    if !needed.is_empty() {
        let newest = remove.last().expect("a run to remove");
        let id = format!("{}-kept", newest.id);
        let dir = newest.path.with_file_name(&id);
        let temp = newest.path.with_file_name(format!(".{id}.tmp"));
        let _ = fs::remove_dir_all(&temp);
        fs::create_dir_all(&temp)?;
        let mut lines: Vec<Vec<u8>> = needed.into_values().collect();
        lines.sort(); // a stable file for a stable store
        let mut journal = io::BufWriter::new(File::create(temp.join(RECORDS_FILE))?);
        for l in &lines {
            journal.write_all(l)?;
            journal.write_all(b"\n")?;
        }
        journal.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let base = newest.info.clone();
        let info = RunInfo {
            format: super::RUN_FORMAT,
            run_id: id.clone(),
            job: base.as_ref().map_or_else(|| job_name.to_string(), |i| i.job.clone()),
            description: None,
            job_file: base.as_ref().map(|i| i.job_file.clone()).unwrap_or_default(),
            jobpool_version: env!("CARGO_PKG_VERSION").to_string(),
            argv: std::env::args().collect(),
            state: RunState::Finished,
            started_at: base
                .as_ref()
                .map_or_else(|| super::id_time(&newest.id), |i| i.started_at.clone()),
            ended_at: Some(now_rfc3339()),
            task_kind: base.as_ref().map(|i| i.task_kind.clone()).unwrap_or_default(),
            backend: base.as_ref().map(|i| i.backend.clone()).unwrap_or_default(),
            order: base.as_ref().map(|i| i.order.clone()).unwrap_or_default(),
            args: base.as_ref().map(|i| i.args.clone()).unwrap_or_default(),
            submissions: None,
            workers: None,
            resume: false,
            counts: StatusCounts { ok: lines.len() as u64, ..StatusCounts::default() },
            resumed: 0,
            wall_ms: None,
            exit_code: None,
            cancelled: None,
            resumed_set: None,
            compacted: true,
        };
        write_json_atomic(&temp.join(RUN_FILE), &info)?;
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::rename(&temp, &dir)?;
        out.kept_records = lines.len() as u64;
        out.compacted = Some(id);
    }
    for run in old_compacted.iter().chain(remove) {
        if Some(&run.id) == out.compacted.as_ref() {
            continue;
        }
        fs::remove_dir_all(&run.path)?;
        out.removed.push(run.id.clone());
    }
    let runs_dir = super::job_runs_dir(job_dir, job_name);
    remove_unused_refs(&runs_dir)?;
    // The index pointed into removed journals: write it anew from what is left.
    if let Some(index) = super::index_path(&runs_dir) {
        match fs::remove_file(index) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    super::compact(&runs_dir)?;
    Ok(out)
}

/// Remove the shared reference files (`.jobpool/resumed/<job>/*.jsonl`) no remaining
/// run names.
fn remove_unused_refs(runs_dir: &Path) -> io::Result<()> {
    let Some(dir) = super::resumed_dir(runs_dir) else { return Ok(()) };
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let used: HashSet<String> = super::list_runs_in(runs_dir)?
        .into_iter()
        .filter_map(|r| r.info.and_then(|i| i.resumed_set))
        .map(|h| format!("{h}.jsonl"))
        .collect();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !used.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
