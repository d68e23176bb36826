//! The run store: one folder per run with its metadata and a journal of its records, and
//! the lookups `--resume` and `jobpool report` need.
//!
//! Owns: the layout of `.jobpool/` beside a job file, run ids, `run.json`, the
//! `records.jsonl` journal (one line per record, in completion order, written whole
//! lines at a time: per record, or per burst of records with [`RunStore::push`] and
//! [`RunStore::flush`]), the references of resumed records, reading a run's records back
//! (tolerating a torn last line), and the resume index and its file.
//! Must not: run tasks, order records for sinks, or print.
//!
//! ```text
//! <job dir>/.jobpool/
//!   .gitignore                  "*": nothing under .jobpool/ is committed by accident
//!   index/<job name>.jsonl      the resume index: where each key's latest ok line is
//!                               (a cache of the journals; see `resume`)
//!   resumed/<job name>/<hash>.jsonl
//!                               what finished resumed runs took (shared; see `refs`)
//!   runs/<job name>/
//!     <run id>/
//!       run.json                metadata; rewritten (atomically) when the run ends
//!       records.jsonl           one TaskRecord per line, flushed as each completes:
//!                               what this run ran (a shard's journal: every record)
//!       resumed.jsonl           while a resumed run goes on: {"index","key"} of each
//!                               record it took from an earlier run
//! ```
//!
//! So the store grows with what runs execute, not with how often a job is resumed, and
//! `--resume` reads the index instead of every past journal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::Job;
pub use crate::record::StatusCounts;
use crate::record::TaskRecord;

mod journal;
mod prune;
mod refs;
mod resume;

pub use self::journal::Records;
pub use self::prune::{Pruned, prune};
pub use self::refs::{
    ByIndex, RESUMED_FILE, RunRecords, job_index_of, read_records, records, resumed_path,
    resumed_refs,
};
pub use self::resume::{ResumeIndex, compact, resume_index, resume_index_in, resume_index_saved};

/// The folder under a job file's folder that holds jobpool's state.
pub const STATE_DIR: &str = ".jobpool";
/// A run's metadata file.
pub const RUN_FILE: &str = "run.json";
/// A run's journal of records.
pub const RECORDS_FILE: &str = "records.jsonl";
/// Version of the `run.json` layout.
pub const RUN_FORMAT: u32 = 1;

/// Journal bytes written between two starts of its writeback ([`crate::durable`]).
const WRITEBACK_EVERY: u64 = 1 << 20;

/// `<job dir>/.jobpool/runs`: the folder of every job's runs.
pub fn runs_root(job_dir: &Path) -> PathBuf {
    job_dir.join(STATE_DIR).join("runs")
}

/// `.jobpool/index/<job>.jsonl`, the resume index file of the job whose runs are in
/// `runs_dir` (`.jobpool/runs/<job>`); `None` when `runs_dir` is not in a `runs/` folder.
pub fn index_path(runs_dir: &Path) -> Option<PathBuf> {
    beside_runs(runs_dir, "index").map(|(dir, job)| dir.join(format!("{job}.jsonl")))
}

/// `.jobpool/resumed/<job>/`, the shared references files of the job whose runs are in
/// `runs_dir`; `None` when `runs_dir` is not in a `runs/` folder.
pub fn resumed_dir(runs_dir: &Path) -> Option<PathBuf> {
    beside_runs(runs_dir, "resumed").map(|(dir, job)| dir.join(job))
}

/// `(.jobpool/<what>, <job>)` for `.jobpool/runs/<job>`.
fn beside_runs(runs_dir: &Path, what: &str) -> Option<(PathBuf, String)> {
    let job = runs_dir.file_name()?.to_str()?.to_string();
    let runs = runs_dir.parent()?;
    if runs.file_name()? != "runs" {
        return None;
    }
    Some((runs.parent()?.join(what), job))
}

/// `<job dir>/.jobpool/runs/<job name>`: the folder of one job's runs. The name is made
/// safe as a single folder name: characters other than ASCII letters, digits, `-`, `_`
/// and `.` become `_`, and a name of only dots gets a leading `_`.
pub fn job_runs_dir(job_dir: &Path, job_name: &str) -> PathBuf {
    runs_root(job_dir).join(folder_name(job_name))
}

/// `name` made safe as a single folder name (see [`job_runs_dir`]).
pub fn folder_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        s.insert(0, '_');
    }
    s
}

/// A new run id: the UTC start time to the second and four random hex digits,
/// `20261126T140455Z-3f9a`. Ids sort by time to the second; within a second the order
/// of runs comes from `started_at` in `run.json` (see [`list_runs`]).
pub fn new_run_id() -> String {
    run_id_at(SystemTime::now())
}

fn run_id_at(time: SystemTime) -> String {
    // "2026-11-26T14:04:55Z" -> "20261126T140455Z"
    let stamp: String = humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}-{:04x}", fastrand::u16(..))
}

/// The current UTC time as RFC 3339 with microseconds (`2026-11-26T14:04:55.123456Z`):
/// fixed width, so these strings sort as times.
pub fn now_rfc3339() -> String {
    rfc3339_micros(SystemTime::now()).into()
}

/// `time` as RFC 3339 UTC with microseconds (`2026-11-26T14:04:55.123456Z`), the form of
/// a record's `started_at`: the same text as `humantime::format_rfc3339_micros`, written
/// directly, inline (no allocation, no formatting machinery: it is done once per record).
pub fn rfc3339_micros(time: SystemTime) -> crate::text::SmallText {
    Rfc3339Micros::default().format(time)
}

/// [`rfc3339_micros`] for a stream of times: the date and time of day of the last whole
/// second are kept, so times within the same second (most of a fast run's records) only
/// write their microseconds.
#[derive(Debug, Default, Clone)]
pub struct Rfc3339Micros {
    /// The whole second last formatted, and its text up to the seconds' digits.
    last: Option<(i64, [u8; 19])>,
}

impl Rfc3339Micros {
    /// `time` in the form of [`rfc3339_micros`].
    pub fn format(&mut self, time: SystemTime) -> crate::text::SmallText {
        use std::time::UNIX_EPOCH;
        // Whole seconds since the epoch (rounded down) and the microseconds after them.
        let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 { (-s, 0) } else { (-s - 1, (1_000_000_000 - n) / 1000) }
            }
        };
        if !(-62_167_219_200..253_402_300_800).contains(&secs) {
            // Outside years 0000 to 9999.
            return humantime::format_rfc3339_micros(time).to_string().into();
        }
        let head = match self.last {
            Some((s, head)) if s == secs => head,
            _ => {
                let head = date_time(secs);
                self.last = Some((secs, head));
                head
            }
        };
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        out[..19].copy_from_slice(&head);
        put_digits(&mut out[20..26], u64::from(micros));
        // Only ASCII digits and separators were written, 27 of them.
        crate::text::SmallText::from_ascii(&out).unwrap_or_default()
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch (years 0000 to 9999).
fn date_time(secs: i64) -> [u8; 19] {
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u64);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    let mut out = *b"0000-00-00T00:00:00";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    put_digits(&mut out[11..13], of_day / 3600);
    put_digits(&mut out[14..16], of_day / 60 % 60);
    put_digits(&mut out[17..19], of_day % 60);
    out
}

/// `v` in decimal, zero-padded to fill `out` (its lowest digits).
fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Whether a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Still running, or the process died before finishing it.
    Running,
    /// Finished (successfully or not; see `exit_code`).
    Finished,
}

/// The content of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Layout version ([`RUN_FORMAT`]).
    pub format: u32,
    /// The run id (also the folder's name).
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// The job's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The job file as given on the command line.
    pub job_file: PathBuf,
    /// The version of jobpool that ran it.
    pub jobpool_version: String,
    /// The command line.
    #[serde(default)]
    pub argv: Vec<String>,
    /// `running` until the run ends, then `finished`.
    pub state: RunState,
    /// RFC 3339 UTC start time, microseconds.
    pub started_at: String,
    /// RFC 3339 UTC end time.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// The task's kind.
    pub task_kind: String,
    /// `processes`, `threads` or `slurm`.
    pub backend: String,
    /// `submission` or `completion`.
    pub order: String,
    /// Argument names in declared order.
    #[serde(default)]
    pub args: Vec<String>,
    /// Submissions in the plan, when known.
    #[serde(default)]
    pub submissions: Option<u64>,
    /// Worker count.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Whether the run was started with `--resume`.
    #[serde(default)]
    pub resume: bool,
    /// Records by status (filled in when the run ends).
    #[serde(default)]
    pub counts: StatusCounts,
    /// Records taken from earlier runs by `--resume`.
    #[serde(default)]
    pub resumed: u64,
    /// Wall time of the run in milliseconds (filled in when the run ends).
    #[serde(default)]
    pub wall_ms: Option<f64>,
    /// The exit code of the run (filled in when the run ends).
    #[serde(default)]
    pub exit_code: Option<u8>,
    /// Why the run was cancelled, if it was: `interrupted`, `deadline`, `superseded`,
    /// `output closed`, `front end failed` (filled in when the run ends).
    #[serde(default)]
    pub cancelled: Option<String>,
    /// The shared file of the records this run took from earlier runs
    /// (`.jobpool/resumed/<job>/<this>.jsonl`; see [`records`]), once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_set: Option<String>,
    /// Not a run: the `ok` records of pruned runs that `--resume` still uses, kept by
    /// `jobpool runs --prune` (see [`prune`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

/// What the caller knows about a run when it starts.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// The run id; `None`: a new one ([`new_run_id`]).
    pub run_id: Option<String>,
    /// The command line.
    pub argv: Vec<String>,
    /// Submissions in the plan, when known.
    pub submissions: Option<u64>,
    /// Worker count.
    pub workers: Option<usize>,
    /// Whether the run was started with `--resume`.
    pub resume: bool,
    /// `--shard I/N`: this process records shard I of N of the run (its folder may exist
    /// already: other shards write beside it).
    pub shard: Option<(u64, u64)>,
    /// The folder may exist already and receives this run's `run.json` and journal
    /// (`jobpool collect` writing the merged run of shards).
    pub into_existing: bool,
}

/// Whether a journal is non-empty and does not end with a newline.
fn ends_torn(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The file stem of shard `index` of `count` in a run's folder: `shard-0003-of-0010`
/// (`.json` for its metadata, `.jsonl` for its journal).
pub fn shard_stem(index: u64, count: u64) -> String {
    format!("shard-{index:04}-of-{count:04}")
}

/// The shard journals in a run's folder: `(index, count, path)`, by index (a shard run
/// twice appends to the same journal).
pub fn shard_journals(run_dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_prefix("shard-").and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        let Some((i, n)) = stem.split_once("-of-") else { continue };
        if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
            out.push((i, n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// What the caller knows about a run when it ends. Counts and wall time are the store's
/// own (it saw every record).
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// The run's exit code.
    pub exit_code: u8,
    /// Why the run was cancelled, if it was (`interrupted`, `deadline`, ...).
    pub cancelled: Option<String>,
}

/// One run being recorded: its folder, `run.json`, and its journal.
///
/// Dropped without [`RunStore::finish`], the run stays `running` in `run.json` and its
/// journal holds every record appended so far: exactly what a crash leaves.
#[derive(Debug)]
pub struct RunStore {
    dir: PathBuf,
    /// `run.json`, or a shard's `shard-I-of-N.json`.
    info_path: PathBuf,
    info: RunInfo,
    journal: File,
    /// Whole lines pushed and not written yet.
    pending: Vec<u8>,
    /// The statuses of the pending lines (counted into `info` once written), and how
    /// many of them were resumed.
    pending_counts: StatusCounts,
    pending_resumed: u64,
    started: Instant,
    /// A write failed part-way: the journal may end with a partial line.
    torn: bool,
    /// Whether records taken from earlier runs are referenced rather than journaled
    /// (not in a shard's journal, which other processes read, nor in `collect`'s).
    refs_only: bool,
    refs: Option<refs::RefWriter>,
    /// Bytes written to the journal so far.
    written: u64,
    /// `written` when the journal's writeback was last started.
    writeback_at: u64,
    /// The journal's `fsync`, started in the background as soon as the last expected
    /// record is written (see [`RunStore::write_pending`]), with how many bytes were
    /// written then: it runs while the pool shuts down, and [`RunStore::finish`] waits
    /// for it (and syncs again only if more was written since).
    early_sync: Option<(u64, std::thread::JoinHandle<io::Result<()>>)>,
}

impl Drop for RunStore {
    /// Dropped without [`RunStore::finish`] (an error path, a panic): what was pushed
    /// is written, as a crash after the last flush would have left it.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl RunStore {
    /// Create the run's folder (and `.jobpool/.gitignore`), write `run.json` and open an
    /// empty journal.
    pub fn create(job: &Job, meta: RunMeta) -> io::Result<RunStore> {
        ensure_state_dir(&job.dir)?;
        let parent = job_runs_dir(&job.dir, &job.name);
        fs::create_dir_all(&parent)?;
        let fixed_id = meta.run_id.is_some();
        let shared = meta.shard.is_some() || meta.into_existing;
        let mut run_id = meta.run_id.unwrap_or_else(new_run_id);
        let dir = loop {
            let dir = parent.join(&run_id);
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && shared => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !fixed_id => {
                    run_id = new_run_id();
                }
                Err(e) => return Err(e),
            }
        };
        let (info_path, journal_path) = match meta.shard {
            Some((i, n)) => {
                let stem = shard_stem(i, n);
                (dir.join(format!("{stem}.json")), dir.join(format!("{stem}.jsonl")))
            }
            None => (dir.join(RUN_FILE), dir.join(RECORDS_FILE)),
        };
        let info = RunInfo {
            format: RUN_FORMAT,
            run_id,
            job: job.name.clone(),
            description: job.description.clone(),
            job_file: job.path.clone(),
            jobpool_version: env!("CARGO_PKG_VERSION").to_string(),
            argv: meta.argv,
            state: RunState::Running,
            started_at: now_rfc3339(),
            ended_at: None,
            task_kind: job.task.kind().to_string(),
            backend: format!("{:?}", job.backend).to_lowercase(),
            order: format!("{:?}", job.order).to_lowercase(),
            args: job.args.names.clone(),
            submissions: meta.submissions,
            workers: meta.workers.or(job.workers.map(|w| w.get())),
            resume: meta.resume,
            counts: StatusCounts::default(),
            resumed: 0,
            wall_ms: None,
            exit_code: None,
            cancelled: None,
            resumed_set: None,
            compacted: false,
        };
        write_json_atomic_with(&info_path, &info, false)?;
        let refs_only = meta.shard.is_none() && !meta.into_existing;
        // A shard run again appends to its journal (collect takes the best record of
        // each submission); a merged run replaces an earlier merge; a new run is new.
        let journal = match (meta.shard, meta.into_existing) {
            (Some(_), _) => OpenOptions::new().create(true).append(true).open(&journal_path)?,
            (None, true) => {
                OpenOptions::new().create(true).write(true).truncate(true).open(&journal_path)?
            }
            (None, false) => {
                OpenOptions::new().create_new(true).append(true).open(&journal_path)?
            }
        };
        // A shard journal appended to again may end with a torn line (a run killed or
        // out of disk mid-write): the first record then starts a line of its own, or it
        // would be glued to the torn one and unreadable.
        let torn = meta.shard.is_some() && ends_torn(&journal_path)?;
        Ok(RunStore {
            dir,
            info_path,
            info,
            journal,
            pending: Vec::with_capacity(64 * 1024),
            pending_counts: StatusCounts::default(),
            pending_resumed: 0,
            started: Instant::now(),
            torn,
            refs_only,
            refs: None,
            written: 0,
            writeback_at: 0,
            early_sync: None,
        })
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.info.run_id
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata as it stands.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// Append one record to the journal: one `write` of the whole line, so the operating
    /// system has it when this returns (a crash of jobpool loses nothing appended; no fsync
    /// per record). The same as [`RunStore::push`] then [`RunStore::flush`].
    ///
    /// After a failed append (a full disk), the next one starts with a newline, so the
    /// partial line stays a line of its own that readers skip, and later records are whole.
    ///
    /// A record taken from an earlier run (`resumed`) is not copied: the run references it
    /// (one short line in `resumed.jsonl`; see [`records`]). Shards journal it in full.
    pub fn append(&mut self, r: &TaskRecord) -> io::Result<()> {
        self.push(r)?;
        self.flush()
    }

    /// Add one record to the journal's buffer, as one whole line: written by the next
    /// [`RunStore::flush`] (or [`RunStore::finish`]), never before. Returns where the
    /// line (with its newline) lies in the bytes that flush writes, for a caller that
    /// writes the same line elsewhere (a jsonl sink) after the journal has it; `None` for
    /// a record taken from an earlier run that is referenced, not journaled (see
    /// [`RunStore::append`]).
    ///
    /// Whoever reports a record anywhere else must flush first: a record seen in an
    /// output is in the journal.
    pub fn push(&mut self, r: &TaskRecord) -> io::Result<Option<std::ops::Range<usize>>> {
        if r.resumed && self.refs_only {
            if self.refs.is_none() {
                self.refs = Some(refs::RefWriter::create(&self.dir)?);
            }
            self.refs.as_mut().expect("created above").add(r.index, &r.key)?;
            self.info.counts.add(r.status);
            self.info.resumed += 1;
            return Ok(None);
        }
        let start = self.pending.len();
        if let Err(e) = r.write_json(&mut self.pending) {
            self.pending.truncate(start);
            return Err(io::Error::from(e));
        }
        self.pending.push(b'\n');
        self.pending_counts.add(r.status);
        if r.resumed {
            self.pending_resumed += 1;
        }
        Ok(Some(start..self.pending.len()))
    }

    /// Bytes pushed and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Write every line pushed since the last flush in one `write` (so a crash from here
    /// on loses none of them; no fsync), then hand the bytes to `then` (each range
    /// [`RunStore::push`] returned is a line in them) and forget them. `then` is called
    /// even when the write failed: the lines are whole either way.
    pub fn flush_with(&mut self, then: impl FnOnce(&[u8])) -> io::Result<()> {
        let result = self.write_pending();
        then(&self.pending);
        self.pending.clear();
        result
    }

    /// [`RunStore::flush_with`], with nothing to do after the write.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_with(|_| {})
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = if self.torn {
            // The partial line a failed write left gets its own line; later ones are whole.
            self.journal.write_all(b"\n").and_then(|()| self.journal.write_all(&self.pending))
        } else {
            self.journal.write_all(&self.pending)
        };
        let counts = std::mem::take(&mut self.pending_counts);
        let resumed = std::mem::take(&mut self.pending_resumed);
        if let Err(e) = result {
            self.torn = true;
            return Err(e);
        }
        self.torn = false;
        self.written += self.pending.len() as u64;
        if self.written - self.writeback_at >= WRITEBACK_EVERY {
            // On its way to the disk already, so the end's fsync has little left to do.
            crate::durable::start_writeback(&self.journal);
            self.writeback_at = self.written;
        }
        self.info.counts.add_counts(&counts);
        self.info.resumed += resumed;
        self.start_early_sync();
        Ok(())
    }

    /// Once every expected record is written, start the journal's `fsync` in the
    /// background, so that it overlaps the end of the run (the pool shutting down) instead
    /// of following it. Only an early start: [`RunStore::finish`] still waits for it, and
    /// syncs again if anything was written after it started.
    fn start_early_sync(&mut self) {
        let done = self.info.submissions.is_some_and(|n| self.info.counts.total() >= n);
        if !done || self.early_sync.is_some() {
            return;
        }
        let Ok(journal) = self.journal.try_clone() else { return };
        let sync = std::thread::Builder::new()
            .name("jobpool-fsync".into())
            .spawn(move || journal.sync_all());
        if let Ok(handle) = sync {
            self.early_sync = Some((self.written, handle));
        }
    }

    /// Make everything written to the journal durable after the early `fsync` `early`:
    /// wait for it (its error is the journal's), and `fsync` again only if more was
    /// written after it started.
    fn sync_journal_after(
        &mut self,
        (at, handle): (u64, std::thread::JoinHandle<io::Result<()>>),
    ) -> io::Result<()> {
        let synced = handle.join().unwrap_or_else(|_| Err(io::Error::other("fsync panicked")));
        // A failed fsync is reported, not retried: a retry may find the pages marked clean
        // and succeed although the data never reached the disk.
        synced?;
        if at == self.written { Ok(()) } else { self.journal.sync_all() }
    }

    /// End the run: write what is pushed, fsync the journal once and rewrite `run.json`
    /// with the end time, the counts by status, the wall time and the exit code. The
    /// references of records taken from earlier runs move to the job's shared
    /// `.jobpool/resumed/<job>/`, and its resume index file is brought up to date (not by
    /// a shard: many may end at once).
    pub fn finish(mut self, end: RunEnd) -> io::Result<RunInfo> {
        self.flush()?;
        let runs_dir = self.dir.parent().map(Path::to_path_buf);
        let mut local_refs = None;
        if let (Some(refs), Some(runs)) = (self.refs.take(), &runs_dir) {
            // When the shared file cannot be made, the run's own file stays and is read.
            if let Ok((hash, local)) = refs.finish(runs) {
                self.info.resumed_set = Some(hash);
                local_refs = Some(local);
            }
        }
        self.info.state = RunState::Finished;
        self.info.ended_at = Some(now_rfc3339());
        self.info.wall_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        self.info.exit_code = Some(end.exit_code);
        self.info.cancelled = end.cancelled;
        // The new `run.json` is written and fsynced beside the old one while the journal's
        // fsync runs (two waits for the disk at once rather than one after the other);
        // it takes the old one's place only once both are durable, so a `run.json` that
        // says the run finished never names records the disk may not have.
        let (synced, staged) = match self.early_sync.take() {
            Some(early) => {
                let staged = stage_json(&self.info_path, &self.info, true);
                (self.sync_journal_after(early), staged)
            }
            None => std::thread::scope(|s| {
                let journal = &self.journal;
                let sync = std::thread::Builder::new()
                    .name("jobpool-fsync".into())
                    .spawn_scoped(s, move || journal.sync_all());
                let staged = stage_json(&self.info_path, &self.info, true);
                let synced = match sync {
                    Ok(sync) => {
                        sync.join().unwrap_or_else(|_| Err(io::Error::other("fsync panicked")))
                    }
                    // No thread to be had: one after the other.
                    Err(_) => journal.sync_all(),
                };
                (synced, staged)
            }),
        };
        let temp = staged?;
        if let Err(e) = synced.and_then(|()| fs::rename(&temp, &self.info_path)) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        if let Some(local) = local_refs {
            // run.json names the shared file now.
            let _ = fs::remove_file(local);
        }
        Ok(self.info.clone())
    }
}

/// Create `<job dir>/.jobpool/` with a `.gitignore` of `*`, if missing.
pub fn ensure_state_dir(job_dir: &Path) -> io::Result<PathBuf> {
    let state = job_dir.join(STATE_DIR);
    fs::create_dir_all(&state)?;
    let ignore = state.join(".gitignore");
    if !ignore.exists() {
        fs::write(
            &ignore,
            "# Created by jobpool: run records are not meant to be committed.\n*\n",
        )?;
    }
    Ok(state)
}

/// Write `value` as JSON to `path` through a temporary file renamed over it, so a reader
/// never sees half a file. `durable`: also `fsync` it first (the end of a run), so the
/// file survives a power cut; the `running` state written when a run starts is not worth
/// the wait (an `fsync` costs 0.5 ms on an idle disk, up to 30 ms on a busy one, on the
/// path of every run's first task), since a run whose `run.json` is lost is still
/// listed and its journal still read.
fn write_json_atomic_with<T: Serialize>(path: &Path, value: &T, durable: bool) -> io::Result<()> {
    let temp = stage_json(path, value, durable)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// The first half of [`write_json_atomic_with`]: `value` as JSON in a new temporary file
/// beside `path` (fsynced if `durable`), whose path is returned for the caller to rename
/// over `path`. Nothing is left behind on an error.
fn stage_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> io::Result<PathBuf> {
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::from)?;
    text.push(b'\n');
    let temp = path.with_extension(format!("json.tmp-{:04x}", fastrand::u16(..)));
    let result = (|| {
        let mut f = File::create(&temp)?;
        f.write_all(&text)?;
        if durable {
            f.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// [`write_json_atomic_with`], durable.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_json_atomic_with(path, value, true)
}

/// A run's folder, as listed by [`list_runs`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    /// The run id (the folder's name).
    pub id: String,
    /// The folder.
    pub path: PathBuf,
    /// Its `run.json`, when readable.
    pub info: Option<RunInfo>,
}

impl RunDir {
    /// Whether this is the folder of kept `ok` records that `--prune` writes, not a run.
    pub fn is_compacted(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.compacted)
    }

    /// The run's journal.
    pub fn records_path(&self) -> PathBuf {
        self.path.join(RECORDS_FILE)
    }

    /// When the run started: `run.json`'s `started_at`, or the time in the id.
    fn sort_key(&self) -> String {
        match &self.info {
            Some(info) => info.started_at.clone(),
            None => id_time(&self.id),
        }
    }
}

/// `20261126T140455Z-3f9a` -> `2026-11-26T14:04:55.000000Z`, to sort against `started_at`.
fn id_time(id: &str) -> String {
    let b = id.as_bytes();
    if b.len() >= 16 && b[8] == b'T' && b[15] == b'Z' && id.is_char_boundary(16) {
        format!(
            "{}-{}-{}T{}:{}:{}.000000Z",
            &id[0..4],
            &id[4..6],
            &id[6..8],
            &id[9..11],
            &id[11..13],
            &id[13..15]
        )
    } else {
        id.to_string()
    }
}

/// Read a run's `run.json`.
pub fn read_run_info(run_dir: &Path) -> io::Result<RunInfo> {
    let text = fs::read(run_dir.join(RUN_FILE))?;
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every run of the job `job_name` beside `job_dir`, oldest first (by `started_at`, then
/// id). Folders without a journal (nor a shard's journal) are left out. No runs (or no `.jobpool/`): empty.
pub fn list_runs(job_dir: &Path, job_name: &str) -> io::Result<Vec<RunDir>> {
    list_runs_in(&job_runs_dir(job_dir, job_name))
}

/// [`list_runs`] of the job whose runs are in `parent` (`.jobpool/runs/<job>`).
pub fn list_runs_in(parent: &Path) -> io::Result<Vec<RunDir>> {
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let has_journal = || {
            Ok::<_, io::Error>(
                path.join(RECORDS_FILE).is_file() || !shard_journals(&path)?.is_empty(),
            )
        };
        if !entry.file_type()?.is_dir() || !has_journal()? {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        let info = read_run_info(&path).ok();
        runs.push(RunDir { id, path, info });
    }
    runs.sort_by_cached_key(|r| (r.sort_key(), r.id.clone()));
    Ok(runs)
}

/// The latest run of the job `job_name` beside `job_dir`, if any (the folder of records
/// kept by `--prune` is not a run).
pub fn latest_run(job_dir: &Path, job_name: &str) -> io::Result<Option<RunDir>> {
    Ok(list_runs(job_dir, job_name)?.into_iter().rev().find(|r| !r.is_compacted()))
}

/// Every job's runs beside `job_dir` (`.jobpool/runs/*/*`), by job folder name, each
/// oldest first.
pub fn list_all_runs(job_dir: &Path) -> io::Result<Vec<(String, Vec<RunDir>)>> {
    let root = runs_root(job_dir);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        // The folder name is already safe, so it maps to itself.
        let runs = list_runs(job_dir, &name)?;
        if !runs.is_empty() {
            out.push((name, runs));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_submission_job(dir: &Path) -> Job {
        let text = "[task]\nkind = \"script\"\nscript = \"x\"\n\n[args]\nx = { range = [0, 2] }\n";
        let opts =
            crate::validate::LoadOptions { kinds: vec!["script".into()], ..Default::default() };
        crate::validate::load_str(&dir.join("job.toml"), text, &opts).expect("a valid job")
    }

    /// A run store of a job of two submissions, in a folder of its own.
    fn two_submission_store() -> (tempfile::TempDir, RunStore) {
        let dir = tempfile::tempdir().unwrap();
        let job = two_submission_job(dir.path());
        let meta = RunMeta { submissions: Some(2), ..Default::default() };
        let store = RunStore::create(&job, meta).unwrap();
        (dir, store)
    }

    fn record(index: u64) -> TaskRecord {
        TaskRecord::new(index, format!("k{index}"), Default::default(), crate::record::Status::Ok)
    }

    #[test]
    fn the_journal_fsync_starts_once_the_last_expected_record_is_written() {
        let (dir, mut store) = two_submission_store();
        store.push(&record(0)).unwrap();
        store.flush().unwrap();
        assert!(store.early_sync.is_none(), "not before the last record");
        store.push(&record(1)).unwrap();
        assert!(store.early_sync.is_none(), "not before the last record is written");
        store.flush().unwrap();
        let (at, _) = store.early_sync.as_ref().expect("started with the last record written");
        assert_eq!(*at, store.written);
        // A record written after it (a duplicate) is synced by finish itself.
        store.append(&record(1)).unwrap();
        let info = store.finish(RunEnd { exit_code: 0, cancelled: None }).unwrap();
        assert_eq!(info.state, RunState::Finished);
        let run = read_run_info(&dir.path().join(".jobpool/runs/job").join(&info.run_id)).unwrap();
        assert_eq!((run.state, run.counts.ok), (RunState::Finished, 3));
        let leftovers: Vec<_> =
            fs::read_dir(dir.path().join(".jobpool/runs/job").join(&info.run_id))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.contains(".tmp-"))
                .collect();
        assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn a_run_with_fewer_records_than_expected_still_ends_durably() {
        let (dir, mut store) = two_submission_store();
        store.append(&record(0)).unwrap();
        assert!(store.early_sync.is_none());
        let info =
            store.finish(RunEnd { exit_code: 1, cancelled: Some("interrupt".into()) }).unwrap();
        let run = read_run_info(&dir.path().join(".jobpool/runs/job").join(&info.run_id)).unwrap();
        assert_eq!((run.state, run.exit_code, run.counts.ok), (RunState::Finished, Some(1), 1));
    }

    #[test]
    fn timestamps_are_humantimes_text() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut times: Vec<SystemTime> = [
            0u64,
            951_782_400,     // 2000-02-29
            951_868_799,     // 2000-02-29T23:59:59
            4_107_542_400,   // 2100-03-01
            1_795_000_000,   // 2026
            253_402_300_799, // 9999-12-31T23:59:59
        ]
        .iter()
        .map(|s| UNIX_EPOCH + Duration::new(*s, 999_999_999))
        .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            times.push(
                UNIX_EPOCH + Duration::new(x % 253_402_300_800, (x >> 32) as u32 % 1_000_000_000),
            );
        }
        for t in &times {
            assert_eq!(rfc3339_micros(*t), humantime::format_rfc3339_micros(*t).to_string());
        }
        // A stream of times, many in the same second, some crossing seconds, days and
        // years, through one formatter that remembers the last second.
        let mut f = Rfc3339Micros::default();
        let mut t = humantime::parse_rfc3339("2026-12-31T23:59:58.999990Z").unwrap();
        for i in 0..5000u64 {
            t += Duration::from_micros(1 + (i * 7919) % 900);
            assert_eq!(f.format(t), humantime::format_rfc3339_micros(t).to_string());
        }
        for t in times {
            assert_eq!(f.format(t), humantime::format_rfc3339_micros(t).to_string());
        }
        // Before the epoch (where humantime panics).
        let before = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(rfc3339_micros(before), "1969-12-31T23:59:59.999999Z");
        let before = UNIX_EPOCH - Duration::from_secs(86_400 * 365);
        assert_eq!(rfc3339_micros(before), "1969-01-01T00:00:00.000000Z");
    }

    #[test]
    fn run_ids_carry_the_utc_second() {
        let t = humantime::parse_rfc3339("2026-11-26T14:04:55Z").unwrap();
        let id = run_id_at(t);
        assert!(id.starts_with("20261126T140455Z-"), "{id}");
        assert_eq!(id_time(&id), "2026-11-26T14:04:55.000000Z");
        assert_eq!(id_time("by-hand"), "by-hand");
    }

    #[test]
    fn folder_names_are_single_safe_components() {
        for (name, folder) in [
            ("sweep", "sweep"),
            ("a/b", "a_b"),
            ("..", "_.."),
            ("", "_"),
            ("é x", "__x"),
            ("v1.2-rc_3", "v1.2-rc_3"),
        ] {
            assert_eq!(folder_name(name), folder, "{name:?}");
        }
    }
}
