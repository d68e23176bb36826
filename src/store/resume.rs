//! The resume index: which submission keys already have an `ok` record in an earlier run,
//! and the per-job file that keeps it so `--resume` does not read every past journal.
//!
//! Memory: a plan may have millions of submissions, so the index does not hold records.
//! Per key it keeps a 64-bit hash of the key and where the latest `ok` line is (which
//! journal, byte offset, length): 24 bytes of payload per key, about 30 MB for a million
//! keys. A record is read back from its journal and parsed only when it is taken, and its
//! key is compared then, so a hash collision can only cause a rerun, never a wrong record.
//! Lines of other statuses are never kept.
//!
//! The compacted index, `.jobpool/index/<job>.jsonl`: the same entries on disk, written
//! atomically (temporary file, fsync, rename) when a run finishes. Its first line names
//! the journals it covers, each with the length it covered and a fingerprint of its first
//! bytes; then one `[journal, offset, len, key hash]` line per key. Loading it costs one
//! line per distinct key plus a `stat` and a 4 KiB read per journal; only journals it does
//! not cover (a run killed before it finished, a journal appended since) are read line by
//! line. It is a cache: a missing, damaged or stale index (or a journal changed behind
//! it) only means reading the journals, which stay the truth.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::Job;
use crate::record::{Status, TaskRecord};

use super::journal::Lines;
use super::{index_path, job_runs_dir, list_runs_in};

/// Version of the index layout.
const INDEX_FORMAT: u32 = 1;
/// Bytes of a journal's head that its fingerprint covers.
const HEAD: u64 = 4096;

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
    /// Relative to the job's runs folder.
    rel: String,
    path: PathBuf,
    /// Bytes of whole lines read (or covered by the index file).
    covered: u64,
    /// Fingerprint of the first `min(covered, HEAD)` bytes.
    head: u64,
    file: OnceLock<Option<File>>,
}

/// The latest `ok` record per key over a job's earlier runs.
#[derive(Debug, Default)]
pub struct ResumeIndex {
    journals: Vec<Journal>,
    entries: HashMap<u64, Location>,
    /// Journals read line by line (not through the index file).
    read: usize,
    /// Whether an index file was used.
    from_file: bool,
}

/// The fields the index reads from each journal line; serde skips the rest.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    status: Status,
}

/// A stable 64-bit hash of a key (xxh3: the same in every version, as the file needs).
fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The index file's first line.
#[derive(Debug, Serialize, Deserialize)]
struct IndexHeader {
    jobpool_index: u32,
    journals: Vec<CoveredJournal>,
    entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CoveredJournal {
    path: String,
    len: u64,
    head: u64,
}

/// xxh3 of the first `min(len, HEAD)` bytes of `file`.
fn fingerprint(file: &File, len: u64) -> io::Result<u64> {
    let mut buf = vec![0; len.min(HEAD) as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(xxhash_rust::xxh3::xxh3_64(&buf))
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

    /// Earlier journals known (through the index file or read).
    pub fn runs(&self) -> usize {
        self.journals.len()
    }

    /// Journals read line by line, because the index file did not cover them.
    pub fn journals_read(&self) -> usize {
        self.read
    }

    /// Whether the compacted index file was used.
    pub fn used_index_file(&self) -> bool {
        self.from_file
    }

    /// Every entry read back, as a map from key to record (memory: every record).
    pub fn into_map(self) -> HashMap<crate::text::Key, TaskRecord> {
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

    /// Read one journal from byte `from` (runs are fed oldest first, so a later `ok`
    /// replaces an earlier). `journal` is its slot, already pushed.
    fn read_journal(&mut self, journal: u32, mut file: File, from: u64) -> io::Result<()> {
        file.seek(SeekFrom::Start(from))?;
        let mut lines = Lines::new(BufReader::with_capacity(64 * 1024, file));
        let mut end = from;
        while let Some((offset, line)) = lines.next_line()? {
            end = from + offset + line.len() as u64 + 1;
            let Ok(head) = serde_json::from_slice::<Head>(line) else { continue };
            if head.status != Status::Ok {
                continue;
            }
            let Ok(len) = u32::try_from(line.len()) else { continue };
            let loc = Location { journal, len, offset: from + offset };
            self.entries.insert(key_hash(&head.key), loc);
        }
        // Whole lines only: a torn tail is read again next time, once it is whole.
        let j = &mut self.journals[journal as usize];
        j.covered = end;
        if let Some(f) = j.file.get().and_then(Option::as_ref) {
            j.head = fingerprint(f, end)?;
        } else {
            j.head = fingerprint(&File::open(&j.path)?, end)?;
        }
        self.read += 1;
        Ok(())
    }

    /// Load the index file's entries for the journals that are still as it saw them.
    /// Returns, per journal path, its slot and the bytes it covered; `None`: no usable
    /// index file (missing, another version, damaged).
    fn load_file(&mut self, runs_dir: &Path) -> Option<HashMap<String, (u32, u64)>> {
        let file = File::open(index_path(runs_dir)?).ok()?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let header: IndexHeader = serde_json::from_str(line.strip_suffix('\n')?).ok()?;
        if header.jobpool_index != INDEX_FORMAT {
            return None;
        }
        // Which of its journals are unchanged (same head, at least as long).
        let mut slot: Vec<Option<u32>> = Vec::with_capacity(header.journals.len());
        let mut covered = HashMap::new();
        for c in &header.journals {
            let path = runs_dir.join(&c.path);
            // The file is opened again on first use: only journals that hold a taken
            // record stay open, not one descriptor per past run.
            let same = File::open(&path).is_ok_and(|f| {
                f.metadata().is_ok_and(|m| m.len() >= c.len)
                    && fingerprint(&f, c.len).is_ok_and(|h| h == c.head)
            });
            slot.push(same.then(|| {
                let n = self.journals.len() as u32;
                self.journals.push(Journal {
                    rel: c.path.clone(),
                    path,
                    covered: c.len,
                    head: c.head,
                    file: OnceLock::new(),
                });
                covered.insert(c.path.clone(), (n, c.len));
                n
            }));
        }
        // Not more than the file could hold (a damaged header must not allocate wildly).
        let most = reader.get_ref().metadata().map_or(0, |m| m.len() / 8);
        let mut entries = HashMap::with_capacity(header.entries.min(most) as usize);
        let mut seen = 0u64;
        for line in reader.split(b'\n') {
            let line = line.ok()?;
            let (j, offset, len, hash): (u32, u64, u32, u64) =
                serde_json::from_slice(&line).ok()?;
            seen += 1;
            if let Some(Some(n)) = slot.get(j as usize) {
                entries.insert(hash, Location { journal: *n, len, offset });
            }
        }
        if seen != header.entries {
            // Cut short or padded: not the file that was written.
            self.journals.clear();
            return None;
        }
        self.entries = entries;
        self.from_file = true;
        Some(covered)
    }

    /// Write the index file for `runs_dir` (atomically). Only `covered` bytes of each
    /// journal count, so a journal still being appended to is read on from there.
    fn write_file(&self, runs_dir: &Path) -> io::Result<()> {
        let live: Vec<bool> = self.journals.iter().map(|j| j.path.exists()).collect();
        let mut number = vec![u32::MAX; self.journals.len()];
        let mut journals = Vec::new();
        for (i, j) in self.journals.iter().enumerate() {
            if live[i] {
                number[i] = journals.len() as u32;
                journals.push(CoveredJournal { path: j.rel.clone(), len: j.covered, head: j.head });
            }
        }
        let mut lines: Vec<(u32, u64, u32, u64)> = self
            .entries
            .iter()
            .filter(|(_, l)| live[l.journal as usize])
            .map(|(h, l)| (number[l.journal as usize], l.offset, l.len, *h))
            .collect();
        lines.sort_unstable();
        let header =
            IndexHeader { jobpool_index: INDEX_FORMAT, journals, entries: lines.len() as u64 };
        let Some(path) = index_path(runs_dir) else { return Ok(()) };
        let dir = path.parent().unwrap_or(runs_dir);
        fs::create_dir_all(dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp-{:04x}", fastrand::u16(..)));
        let result = (|| {
            let mut w = io::BufWriter::with_capacity(256 * 1024, File::create(&temp)?);
            serde_json::to_writer(&mut w, &header)?;
            w.write_all(b"\n")?;
            for l in &lines {
                serde_json::to_writer(&mut w, l)?;
                w.write_all(b"\n")?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&temp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// For every earlier run of `job` (same name, same folder), the latest `ok` record per
/// key, through the job's index file and the journals it does not cover.
pub fn resume_index(job: &Job) -> io::Result<ResumeIndex> {
    resume_index_in(&job_runs_dir(&job.dir, &job.name))
}

/// [`resume_index`] for a run about to use it (`run --resume`, watch mode): when it had
/// to read journals the index file does not cover, the index file is written again, so
/// the next `--resume` reads only what comes after. A plain run never pays for the index:
/// each journal is read once by the first `--resume` after it. The file is a cache: when
/// it cannot be written, the index is still returned.
pub fn resume_index_saved(job: &Job) -> io::Result<ResumeIndex> {
    let (index, _cache_written) = read_and_save(&job_runs_dir(&job.dir, &job.name))?;
    Ok(index)
}

/// [`resume_index`] of the job whose runs are in `runs_dir` (`.jobpool/runs/<job>`).
pub fn resume_index_in(runs_dir: &Path) -> io::Result<ResumeIndex> {
    let mut index = ResumeIndex::default();
    let covered = index.load_file(runs_dir).unwrap_or_default();
    for run in list_runs_in(runs_dir)? {
        // Shard journals first: a merged journal written by `collect` is newer.
        let shards = super::shard_journals(&run.path)?.into_iter().map(|(_, _, p)| p);
        for path in shards.chain([run.records_path()]) {
            let rel = path
                .strip_prefix(runs_dir)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.to_string_lossy().into_owned());
            let (slot, from) = match covered.get(&rel) {
                Some(&(slot, len)) => {
                    let now = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if now == len {
                        continue; // unchanged since the index was written
                    }
                    (slot, len)
                }
                None => {
                    let slot = u32::try_from(index.journals.len()).map_err(io::Error::other)?;
                    index.journals.push(Journal {
                        rel,
                        path: path.clone(),
                        covered: 0,
                        head: 0,
                        file: OnceLock::new(),
                    });
                    (slot, 0)
                }
            };
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            index.read_journal(slot, file, from)?;
        }
    }
    Ok(index)
}

/// Bring the index file of the job whose runs are in `runs_dir` up to date: read what it
/// does not cover and write it again, when anything was read (or it was missing).
/// Returns the index. Called by `collect` and after a prune.
pub fn compact(runs_dir: &Path) -> io::Result<ResumeIndex> {
    let (index, written) = read_and_save(runs_dir)?;
    written?;
    Ok(index)
}

/// The resume index of the runs in `runs_dir`, and the result of writing its file again
/// when anything was read beyond it (or it was missing).
fn read_and_save(runs_dir: &Path) -> io::Result<(ResumeIndex, io::Result<()>)> {
    let index = resume_index_in(runs_dir)?;
    let written =
        if index.read > 0 || !index.from_file { index.write_file(runs_dir) } else { Ok(()) };
    Ok((index, written))
}
