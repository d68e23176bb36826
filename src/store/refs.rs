//! What a resumed run took from earlier runs: references, not copies.
//!
//! A run started with `--resume` journals only what it executed. For each record it took
//! from an earlier run it writes one reference line, `{"index":5,"key":"…"}` (its
//! position in this run's plan and its content key), to `resumed.jsonl` in its folder.
//! When the run finishes, that file moves to `.jobpool/resumed/<job>/<hash>.jsonl`, named by
//! the hash of its content, and `run.json` names it (`resumed_set`): successive runs
//! that took the same records share one file, so a fully resumed run adds a `run.json`
//! and an empty journal to the store, not a copy of every record.
//!
//! Reading a run back ([`records`]) yields its journal, then each reference resolved
//! through the job's resume index: the latest `ok` record of that key, placed at the
//! reference's index with `resumed: true`. A reference whose key has no `ok` record any
//! more (its run folder was deleted by hand) is counted in [`RunRecords::skipped`].
//!
//! Shard journals (`--shard`) and the merged journal of `collect` still hold every record
//! in full: the Slurm backend and `collect` read other processes' shard journals.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::TaskRecord;

use super::journal::{Lines, Records};
use super::resume::{ResumeIndex, resume_index_in};
use super::{RECORDS_FILE, RunInfo, read_run_info, resumed_dir};

/// The references of a run still going on (or killed), in its folder.
pub const RESUMED_FILE: &str = "resumed.jsonl";

/// One reference line.
#[derive(Debug, Serialize, Deserialize)]
struct Ref<'a> {
    index: u64,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

/// Writes a run's references as records are taken.
#[derive(Debug)]
pub(crate) struct RefWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    line: Vec<u8>,
}

impl RefWriter {
    /// A new `resumed.jsonl` in `run_dir`.
    pub(crate) fn create(run_dir: &Path) -> io::Result<RefWriter> {
        let path = run_dir.join(RESUMED_FILE);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        Ok(RefWriter {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            hasher: blake3::Hasher::new(),
            line: Vec::with_capacity(80),
        })
    }

    /// Reference the record `key` taken at `index`.
    pub(crate) fn add(&mut self, index: u64, key: &str) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Ref { index, key: Cow::Borrowed(key) })?;
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        self.out.write_all(&self.line)
    }

    /// Flush and sync the file, then give it its shared name in `.jobpool/resumed/<job>/`
    /// (a hard link, else a copy; an identical file there already is kept). Returns the
    /// name (the hash) for `run.json` and the run's own file, which the caller removes
    /// once `run.json` names the shared one.
    pub(crate) fn finish(self, runs_dir: &Path) -> io::Result<(String, PathBuf)> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let hash = self.hasher.finalize().to_hex()[..32].to_string();
        let dir = resumed_dir(runs_dir)
            .ok_or_else(|| io::Error::other("the run is not in a .jobpool/runs/ folder"))?;
        fs::create_dir_all(&dir)?;
        let shared = dir.join(format!("{hash}.jsonl"));
        match fs::hard_link(&self.path, &shared) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: a copy, renamed into place whole.
            Err(_) => {
                let temp = dir.join(format!(".{hash}.tmp-{:04x}", fastrand::u16(..)));
                let copied = fs::copy(&self.path, &temp)
                    .and_then(|_| File::open(&temp)?.sync_all())
                    .and_then(|()| fs::rename(&temp, &shared));
                if copied.is_err() {
                    let _ = fs::remove_file(&temp);
                }
                copied?;
            }
        }
        Ok((hash, self.path))
    }
}

/// The references file of the run in `run_dir`: the shared one `run.json` names, else
/// the run's own (a run still going on, or killed before it finished).
pub fn resumed_path(run_dir: &Path, info: Option<&RunInfo>) -> Option<PathBuf> {
    if let Some(hash) = info.and_then(|i| i.resumed_set.as_deref()) {
        let shared = resumed_dir(run_dir.parent()?)?.join(format!("{hash}.jsonl"));
        if shared.is_file() {
            return Some(shared);
        }
    }
    let own = run_dir.join(RESUMED_FILE);
    own.is_file().then_some(own)
}

/// The references of the run in `run_dir`, `(index, key)` in the order written (a torn
/// last line left out). Empty when it took nothing.
pub fn resumed_refs(run_dir: &Path, info: Option<&RunInfo>) -> io::Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    let Some(path) = resumed_path(run_dir, info) else { return Ok(out) };
    let mut lines = Lines::new(BufReader::with_capacity(64 * 1024, File::open(path)?));
    while let Some((_, line)) = lines.next_line()? {
        if let Ok(r) = serde_json::from_slice::<Ref>(line) {
            out.push((r.index, r.key.into_owned()));
        }
    }
    Ok(out)
}

/// The resume index of the job a run folder belongs to (`<runs>/<job>/<run>`), to
/// resolve the run's references.
pub fn job_index_of(run_dir: &Path) -> io::Result<ResumeIndex> {
    match run_dir.parent() {
        Some(runs) => resume_index_in(runs),
        None => Ok(ResumeIndex::default()),
    }
}

/// Every record of a run: its journal in the order written, then the records it took from
/// earlier runs (see the module documentation).
#[derive(Debug)]
pub struct RunRecords {
    journal: Records,
    refs: Option<(Vec<(u64, String)>, ResumeIndex)>,
    next_ref: usize,
    unresolved: u64,
}

impl RunRecords {
    /// The records of the run in `run_dir`.
    pub fn of_run(run_dir: &Path) -> io::Result<RunRecords> {
        let info = read_run_info(run_dir).ok();
        RunRecords::open(&run_dir.join(RECORDS_FILE), Some(run_dir), info.as_ref())
    }

    /// The records in `journal`, and the references of the run in `run_dir` when given.
    pub fn open(
        journal: &Path,
        run_dir: Option<&Path>,
        info: Option<&RunInfo>,
    ) -> io::Result<RunRecords> {
        let journal = Records::open(journal)?;
        let refs = match run_dir {
            Some(dir) => {
                let refs = resumed_refs(dir, info)?;
                if refs.is_empty() { None } else { Some((refs, job_index_of(dir)?)) }
            }
            None => None,
        };
        Ok(RunRecords { journal, refs, next_ref: 0, unresolved: 0 })
    }

    /// Complete journal lines that did not parse, and references whose record is gone.
    pub fn skipped(&self) -> u64 {
        self.journal.skipped() + self.unresolved
    }

    /// Whether the journal ended with a torn line.
    pub fn torn(&self) -> bool {
        self.journal.torn()
    }
}

impl Iterator for RunRecords {
    type Item = io::Result<TaskRecord>;

    fn next(&mut self) -> Option<io::Result<TaskRecord>> {
        if let Some(r) = self.journal.next() {
            return Some(r);
        }
        let (refs, index) = self.refs.as_ref()?;
        while let Some((i, key)) = refs.get(self.next_ref) {
            self.next_ref += 1;
            match index.get(key) {
                Some(r) => return Some(Ok(r.resumed_at(*i))),
                None => self.unresolved += 1,
            }
        }
        None
    }
}

/// Every record of the run in `run_dir` (see [`RunRecords`]).
pub fn records(run_dir: &Path) -> io::Result<RunRecords> {
    RunRecords::of_run(run_dir)
}

/// Every record of the run in `run_dir`, journal order then references (sort by `index`
/// for submission order). A torn last line is ignored.
pub fn read_records(run_dir: &Path) -> io::Result<Vec<TaskRecord>> {
    records(run_dir)?.collect()
}

/// Where one record of [`ByIndex`] is.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// A journal line.
    Line { offset: u64, len: u32 },
    /// A reference (its position in the references).
    Ref(u32),
}

/// The records of a run in submission order (by `index`), read back one at a time:
/// memory is about 32 bytes per record (plus the references' keys), not the records.
/// A first pass over the journal reads each line's index and status ([`ByIndex::counts`]
/// are known before the first record); the records are then read back by offset.
#[derive(Debug)]
pub struct ByIndex {
    entries: Vec<(u64, Entry)>,
    next: usize,
    journal: File,
    refs: Vec<(u64, String)>,
    index: Option<ResumeIndex>,
    counts: crate::record::StatusCounts,
    skipped: u64,
}

/// The fields the first pass of [`ByIndex`] reads; serde skips the rest.
#[derive(Deserialize)]
struct IndexHead {
    index: u64,
    status: crate::record::Status,
}

impl ByIndex {
    /// The records in `journal` and those the run in `run_dir` took from earlier runs.
    pub fn open(
        journal: &Path,
        run_dir: Option<&Path>,
        info: Option<&RunInfo>,
    ) -> io::Result<ByIndex> {
        let file = File::open(journal)?;
        let mut entries = Vec::new();
        let mut counts = crate::record::StatusCounts::default();
        let mut skipped = 0;
        let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file.try_clone()?));
        while let Some((offset, line)) = lines.next_line()? {
            match (serde_json::from_slice::<IndexHead>(line), u32::try_from(line.len())) {
                (Ok(h), Ok(len)) => {
                    counts.add(h.status);
                    entries.push((h.index, Entry::Line { offset, len }));
                }
                _ => skipped += 1,
            }
        }
        let mut refs = Vec::new();
        let mut index = None;
        if let Some(dir) = run_dir {
            refs = resumed_refs(dir, info)?;
            if !refs.is_empty() {
                let ix = job_index_of(dir)?;
                for (n, (i, key)) in refs.iter().enumerate() {
                    if ix.contains_key(key) {
                        counts.add(crate::record::Status::Ok);
                        entries.push((*i, Entry::Ref(n as u32)));
                    } else {
                        skipped += 1;
                    }
                }
                index = Some(ix);
            }
        }
        entries.sort_by_key(|e| e.0);
        Ok(ByIndex { entries, next: 0, journal: file, refs, index, counts, skipped })
    }

    /// The records by status (before reading them).
    pub fn counts(&self) -> crate::record::StatusCounts {
        self.counts
    }

    /// Journal lines that are not records, and references whose record is gone.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn changed() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "the run's records changed while being read")
    }
}

impl Iterator for ByIndex {
    type Item = io::Result<TaskRecord>;

    fn next(&mut self) -> Option<io::Result<TaskRecord>> {
        use std::os::unix::fs::FileExt;
        let (i, entry) = *self.entries.get(self.next)?;
        self.next += 1;
        Some(match entry {
            Entry::Line { offset, len } => {
                let mut buf = vec![0; len as usize];
                self.journal
                    .read_exact_at(&mut buf, offset)
                    .and_then(|()| serde_json::from_slice(&buf).map_err(|_| ByIndex::changed()))
            }
            Entry::Ref(n) => {
                let key = &self.refs[n as usize].1;
                match self.index.as_ref().and_then(|ix| ix.get(key)) {
                    Some(r) => Ok(r.resumed_at(i)),
                    None => Err(ByIndex::changed()),
                }
            }
        })
    }
}
