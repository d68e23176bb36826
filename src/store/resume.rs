//! The resume index: which submission keys already have an `ok` record in an earlier run.
//!
//! Memory: a plan may have millions of submissions, so the index keeps, per key, only the
//! latest `ok` record's journal line as compact text (no parsed JSON trees); a record is
//! parsed when the runner takes it. Lines of other statuses are never kept.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};

use serde::Deserialize;

use crate::model::Job;
use crate::record::{Status, TaskRecord};

use super::journal::Lines;
use super::list_runs;

/// The latest `ok` record per key over a job's earlier runs.
#[derive(Debug, Default)]
pub struct ResumeIndex {
    lines: HashMap<String, Box<str>>,
    runs: usize,
}

/// The fields the index reads from each journal line; serde skips the rest.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    status: Status,
}

impl ResumeIndex {
    /// Whether `key` has an `ok` record.
    pub fn contains_key(&self, key: &str) -> bool {
        self.lines.contains_key(key)
    }

    /// The `ok` record of `key`, as it was recorded (its old `index`, `resumed` as then).
    /// Use [`TaskRecord::resumed_at`] to place it in the current plan.
    pub fn get(&self, key: &str) -> Option<TaskRecord> {
        self.lines.get(key).and_then(|line| serde_json::from_str(line).ok())
    }

    /// Take the `ok` record of `key` out of the index (frees its memory).
    pub fn take(&mut self, key: &str) -> Option<TaskRecord> {
        self.lines.remove(key).and_then(|line| serde_json::from_str(&line).ok())
    }

    /// Keys with an `ok` record.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no key has an `ok` record.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Earlier runs that were read.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Every entry parsed, as a map from key to record.
    pub fn into_map(self) -> HashMap<String, TaskRecord> {
        self.lines
            .into_iter()
            .filter_map(|(k, line)| serde_json::from_str(&line).ok().map(|r| (k, r)))
            .collect()
    }

    /// Read one journal (runs are fed oldest first, so a later `ok` replaces an earlier).
    fn add_journal(&mut self, file: File) -> io::Result<()> {
        let mut lines = Lines::new(BufReader::with_capacity(64 * 1024, file));
        while let Some(line) = lines.next_line()? {
            let Ok(head) = serde_json::from_slice::<Head>(line) else { continue };
            if head.status != Status::Ok {
                continue;
            }
            // The record must parse as a whole to be reusable; checking here keeps `get`
            // honest. Lines are valid UTF-8 once they parse as JSON.
            let Ok(text) = std::str::from_utf8(line) else { continue };
            if serde_json::from_str::<TaskRecord>(text).is_err() {
                continue;
            }
            let text: Box<str> = text.into();
            // Runs come oldest first: a later `ok` replaces an earlier one.
            self.lines.insert(head.key.into_owned(), text);
        }
        Ok(())
    }
}

/// For every earlier run of `job` (same name, same folder), the latest `ok` record per
/// key. Runs are read oldest first; a missing or unreadable journal is skipped.
pub fn resume_index(job: &Job) -> io::Result<ResumeIndex> {
    let mut index = ResumeIndex::default();
    for run in list_runs(&job.dir, &job.name)? {
        let file = match File::open(run.records_path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        index.add_journal(file)?;
        index.runs += 1;
    }
    Ok(index)
}
