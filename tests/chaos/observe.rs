//! Reading what a trial left on disk: the side log the tasks append to, the journals
//! and `run.json` of every run, and the sinks.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One line of the side log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `S i pid`: attempt of submission `i` started.
    Started(usize),
    /// `E i pid`: the attempt reached its end (about to exit on its own).
    Ended(usize),
    /// `G i pid`: a background grandchild.
    Grandchild(usize),
}

/// The side log's lines in `[from, to)` (byte offsets); a line still being written at
/// `to` is left out.
pub fn side_lines(path: &Path, from: u64, to: u64) -> Vec<Side> {
    let bytes = fs::read(path).unwrap_or_default();
    let to = (to as usize).min(bytes.len());
    let from = (from as usize).min(to);
    String::from_utf8_lossy(&bytes[from..to])
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let tag = it.next()?;
            let i = it.next()?.parse().ok()?;
            match tag {
                "S" => Some(Side::Started(i)),
                "E" => Some(Side::Ended(i)),
                "G" => Some(Side::Grandchild(i)),
                _ => None,
            }
        })
        .collect()
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The run folders of the job, sorted by name (so by start time).
pub fn run_dirs(job_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(job_dir.join(".jobpool/runs/job"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// A journal as read back: its records, whether its last line is torn, and complete
/// lines that are not records. A resumed run journals only what it ran; the records it
/// took from earlier runs are references (`{"index", "key"}` lines in its `resumed.jsonl`,
/// or in `.jobpool/resumed/<job>/<hash>.jsonl` that its `run.json` names), resolved here to
/// the `ok` record of that key in another journal, with its index and `resumed: true`.
#[derive(Debug, Default)]
pub struct Journal {
    pub records: Vec<Value>,
    pub torn: bool,
    pub bad: Vec<String>,
}

pub fn read_journal(run: &Path) -> Journal {
    let mut j = own_journal(run);
    for (index, key) in resumed_refs(run) {
        let found = run.parent().and_then(|job| {
            run_dirs_in(job)
                .iter()
                .filter(|d| d.as_path() != run)
                .flat_map(|d| own_journal(d).records)
                .find(|r| r["key"].as_str() == Some(key.as_str()) && status(r) == "ok")
        });
        match found {
            Some(mut r) => {
                r["index"] = index.into();
                r["resumed"] = true.into();
                j.records.push(r);
            }
            None => {
                j.bad.push(format!("a reference to {key} (index {index}) without an ok record"))
            }
        }
    }
    j
}

fn run_dirs_in(job_runs: &Path) -> Vec<PathBuf> {
    fs::read_dir(job_runs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// A run's references: `(index, key)` (a torn last line left out).
fn resumed_refs(run: &Path) -> Vec<(u64, String)> {
    let shared = info_file(&run.join("run.json")).ok().and_then(|i| {
        let h = i["resumed_set"].as_str()?.to_string();
        // .jobpool/runs/<job>/<run> -> .jobpool/resumed/<job>/<h>.jsonl
        let job = run.parent()?;
        let state = job.parent()?.parent()?;
        Some(state.join("resumed").join(job.file_name()?).join(format!("{h}.jsonl")))
    });
    let path = shared.filter(|p| p.is_file()).unwrap_or_else(|| run.join("resumed.jsonl"));
    let text = fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((v["index"].as_u64()?, v["key"].as_str()?.to_string()))
        })
        .collect()
}

/// The records of a run's own `records.jsonl`.
fn own_journal(run: &Path) -> Journal {
    read_journal_file(&run.join("records.jsonl"), 0)
}

/// A journal file from byte `from` on (what one shard run appended to its journal).
pub fn read_journal_file(path: &Path, from: u64) -> Journal {
    let mut j = Journal::default();
    let Ok(bytes) = fs::read(path) else { return j };
    let mut rest = &bytes[(from as usize).min(bytes.len())..];
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            j.torn = true;
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if record_index(&v).is_some() && v["status"].is_string() => j.records.push(v),
            _ => j.bad.push(String::from_utf8_lossy(line).chars().take(200).collect()),
        }
    }
    j
}

/// A run's `run.json` (or a shard's `shard-I-of-N.json`), if it parses.
pub fn info_file(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

/// The submission a record belongs to: its argument `i`.
pub fn record_index(r: &Value) -> Option<usize> {
    r["args"]["i"].as_u64().map(|i| i as usize)
}

pub fn status(r: &Value) -> &str {
    r["status"].as_str().unwrap_or("?")
}

/// Every journal of a run folder: `records.jsonl` and the shard journals.
pub fn journals(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(run)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

/// Submissions with an `ok` record in any journal (complete lines only; shard journals
/// too), as `--resume` reads them.
pub fn journaled_ok(job_dir: &Path) -> BTreeSet<usize> {
    run_dirs(job_dir)
        .iter()
        .flat_map(|d| {
            let mut records = read_journal(d).records;
            for shard in journals(d).into_iter().filter(|p| {
                p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
            }) {
                records.extend(read_journal_file(&shard, 0).records);
            }
            records
        })
        .filter(|r| status(r) == "ok")
        .filter_map(|r| record_index(&r))
        .collect()
}

/// Cut the last line of the newest non-empty journal at `permille` of its length
/// (dropping at least its newline). Returns what was done.
pub fn tear_journal(job_dir: &Path, permille: u32) -> Option<String> {
    let paths = run_dirs(job_dir).iter().rev().map(|r| r.join("records.jsonl")).collect();
    tear_one_of(job_dir, paths, permille)
}

/// The same in one of the shard journals of `run` (chosen with `permille`).
pub fn tear_shard_journal(job_dir: &Path, run: &Path, permille: u32) -> Option<String> {
    let mut paths: Vec<PathBuf> = journals(run)
        .into_iter()
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-")))
        .collect();
    if paths.is_empty() {
        return None;
    }
    let k = permille as usize % paths.len();
    paths.rotate_left(k);
    tear_one_of(job_dir, paths, permille)
}

fn tear_one_of(job_dir: &Path, paths: Vec<PathBuf>, permille: u32) -> Option<String> {
    for path in paths {
        let Ok(bytes) = fs::read(&path) else { continue };
        if bytes.is_empty() {
            continue;
        }
        // The last line: from after the previous newline to the end (with its newline).
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let len = bytes.len() - start;
        let keep = start + (len - 1) * permille as usize / 1000;
        let f = fs::OpenOptions::new().write(true).open(&path).ok()?;
        f.set_len(keep as u64).ok()?;
        return Some(format!(
            "tore {} at byte {keep} (last line {start}..{})",
            path.strip_prefix(job_dir).unwrap_or(&path).display(),
            bytes.len()
        ));
    }
    None
}

/// Files whose name contains `.tmp-` in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[path = "../integration/run_support/csv.rs"]
mod csv;
pub use csv::parse_csv;
