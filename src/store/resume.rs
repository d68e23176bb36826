//! The resume index: which submission keys already have an `ok` record in an earlier run.
//!
//! Memory: a plan may have millions of submissions, so the index does not hold records.
//! Per key it keeps a 64-bit hash of the key and where the latest `ok` line is (which
//! journal, byte offset, length): 24 bytes of payload per key, about 30 MB for a million
//! keys. A record is read back from its journal and parsed only when the runner takes it,
//! and its key is compared then, so a hash collision can only cause a rerun, never a wrong
//! record. Lines of other statuses are never kept.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::model::Job;
use crate::record::{Status, TaskRecord};

use super::journal::Lines;
use super::list_runs;

/// Where an `ok` line is.
#[derive(Debug, Clone, Copy)]
struct Location {
    journal: u32,
    len: u32,
    offset: u64,
}

/// One earlier run's journal, opened on first use.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: OnceLock<Option<File>>,
}

/// The latest `ok` record per key over a job's earlier runs.
#[derive(Debug, Default)]
pub struct ResumeIndex {
    journals: Vec<Journal>,
    entries: HashMap<u64, Location>,
}

/// The fields the index reads from each journal line; serde skips the rest.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    status: Status,
}

fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl ResumeIndex {
    /// Whether `key` has an `ok` record. (A `true` can, with odds of about one in 10^10
    /// for a million keys, be a hash collision: then [`ResumeIndex::get`] gives `None`.)
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(&key_hash(key))
    }

    /// The `ok` record of `key`, read back from its journal as it was recorded (its old
    /// `index`). Use [`TaskRecord::resumed_at`] to place it in the current plan.
    ///
    /// `None` when there is none, or when the line cannot be read back any more (the run
    /// folder was removed meanwhile, a hand edit): treat `None` as "run it again".
    pub fn get(&self, key: &str) -> Option<TaskRecord> {
        let loc = *self.entries.get(&key_hash(key))?;
        self.read(loc).filter(|r| r.key == key && r.status == Status::Ok)
    }

    /// Like [`ResumeIndex::get`], and forget the key.
    pub fn take(&mut self, key: &str) -> Option<TaskRecord> {
        let r = self.get(key)?;
        self.entries.remove(&key_hash(key));
        Some(r)
    }

    /// Keys with an `ok` record.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key has an `ok` record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Earlier runs that were read.
    pub fn runs(&self) -> usize {
        self.journals.len()
    }

    /// Every entry read back, as a map from key to record (memory: every record).
    pub fn into_map(self) -> HashMap<String, TaskRecord> {
        self.entries
            .values()
            .filter_map(|loc| self.read(*loc))
            .map(|r| (r.key.clone(), r))
            .collect()
    }

    fn read(&self, loc: Location) -> Option<TaskRecord> {
        let journal = self.journals.get(loc.journal as usize)?;
        let file = journal.file.get_or_init(|| File::open(&journal.path).ok()).as_ref()?;
        let mut buf = vec![0; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).ok()?;
        serde_json::from_slice(&buf).ok()
    }

    /// Read one journal (runs are fed oldest first, so a later `ok` replaces an earlier).
    fn add_journal(&mut self, path: PathBuf, file: File) -> io::Result<()> {
        let journal = u32::try_from(self.journals.len()).map_err(io::Error::other)?;
        let mut lines = Lines::new(BufReader::with_capacity(64 * 1024, file));
        while let Some((offset, line)) = lines.next_line()? {
            let Ok(head) = serde_json::from_slice::<Head>(line) else { continue };
            if head.status != Status::Ok {
                continue;
            }
            let Ok(len) = u32::try_from(line.len()) else { continue };
            let loc = Location { journal, len, offset };
            self.entries.insert(key_hash(&head.key), loc);
        }
        self.journals.push(Journal { path, file: OnceLock::new() });
        Ok(())
    }
}

/// For every earlier run of `job` (same name, same folder), the latest `ok` record per
/// key. Runs are read oldest first; a missing journal is skipped.
pub fn resume_index(job: &Job) -> io::Result<ResumeIndex> {
    let mut index = ResumeIndex::default();
    for run in list_runs(&job.dir, &job.name)? {
        // Shard journals first: a merged journal written by `collect` is newer.
        let shards = super::shard_journals(&run.path)?.into_iter().map(|(_, _, p)| p);
        for path in shards.chain([run.records_path()]) {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            index.add_journal(path, file)?;
        }
    }
    Ok(index)
}
