//! Sinks: where records go, one file per format, behind a small streaming trait.
//!
//! Owns: the [`Sink`] trait and its formats (`text`, `jsonl`, `json`, `csv`), their
//! destinations (stdout, atomic files, any writer), the [`SinkManager`] that opens every
//! `[[sink]]` of a job, and the [`ReorderBuffer`] that restores submission order.
//! [`OrderedSinks`] puts the two together for the runner.
//! Must not: run tasks, print diagnostics, or decide exit codes. Order is the
//! `ReorderBuffer`'s job, not the sinks': a sink writes what it gets, in the order it
//! gets it.
//!
//! ```text
//! runner ──records in completion order──▶ ReorderBuffer ──ready, in order──▶ SinkManager
//!                                                                   ├─▶ TextSink  ─▶ stdout
//!                                                                   └─▶ CsvSink   ─▶ .x.csv.tmp-… ─rename─▶ x.csv
//! ```

use std::io;
use std::path::PathBuf;

use crate::model::{Job, SinkConfig, SinkFormat, SinkTarget};
use crate::record::TaskRecord;

mod csv;
mod dest;
mod json;
mod jsonl;
mod reorder;
mod text;

pub use self::csv::CsvSink;
pub use self::dest::{AtomicFile, Destination};
pub use self::json::JsonSink;
pub use self::jsonl::JsonlSink;
pub use self::reorder::{Indexed, Ready, ReorderBuffer};
pub use self::text::TextSink;

/// One output of a job, in one format.
///
/// A sink is fed records in the order they must appear, then either finished (the output
/// is complete; a file is renamed into place) or aborted (a file's temporary file is
/// removed). Writes are buffered; [`Sink::flush`] pushes them to a stream reader.
pub trait Sink: Send {
    /// Write one record.
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()>;

    /// Whether this sink writes a record as its compact JSON line, exactly as the
    /// journal does (`jsonl`): then it is handed the journal's bytes
    /// ([`Sink::write_json_line`]) instead of serialising the record again.
    fn takes_json_lines(&self) -> bool {
        false
    }

    /// Write one record given as its compact JSON line, newline included (only called
    /// when [`Sink::takes_json_lines`]).
    fn write_json_line(&mut self, line: &[u8]) -> io::Result<()> {
        let _ = line;
        Err(io::Error::other("this sink takes records, not JSON lines"))
    }

    /// Make what was written visible to a reader of a stream (stdout); files ignore it.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Complete the output: close it (a json array's `]`), flush, and for a file rename
    /// the temporary file over the target.
    fn finish(self: Box<Self>) -> io::Result<()>;

    /// Give up on the output: a file's temporary file is removed and its target left as
    /// it was.
    fn abort(self: Box<Self>);
}

/// A sink that could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Creating a file sink's folder or temporary file failed.
    #[error("cannot create sink file {}", path.display())]
    Create {
        /// The target path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Two sinks of the job write to the same file.
    #[error("two sinks write to {}", path.display())]
    SamePath {
        /// The target path.
        path: PathBuf,
    },
    /// Writing, flushing or finishing a sink failed.
    #[error("cannot write to {target}")]
    Write {
        /// `stdout` or the target path.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl SinkError {
    /// Whether this is a closed pipe on a stream (`jobpool run job.toml | head`), which the
    /// command line treats as a quiet exit, not an error.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            SinkError::Write { source, .. } | SinkError::Create { source, .. } => {
                source.kind() == io::ErrorKind::BrokenPipe
            }
            SinkError::SamePath { .. } => false,
        }
    }
}

/// The file a path sink writes: its template rendered with `{name}` (the job's name) and
/// `{run}` (the run id), relative to the job file's folder.
pub fn sink_path(job: &Job, template: &crate::model::Template, run_id: &str) -> PathBuf {
    let rendered = template.render(|name| match name {
        "name" => Some(job.name.clone()),
        "run" => Some(run_id.to_string()),
        _ => None,
    });
    job.dir.join(rendered)
}

/// A path that names the same file for every spelling of it: `.` and `..` resolved
/// lexically, and the longest existing prefix resolved through symbolic links.
fn same_file_key(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut lexical = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !lexical.pop() {
                    lexical.push("..");
                }
            }
            other => lexical.push(other),
        }
    }
    // Resolve symbolic links of the part that exists (a linked folder is the same file).
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.as_os_str().is_empty() {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => break,
        }
        existing.pop();
    }
    lexical
}

/// Open one sink of `job`: its destination and its format.
pub fn open_sink(job: &Job, config: &SinkConfig, run_id: &str) -> Result<Box<dyn Sink>, SinkError> {
    let out = match &config.to {
        SinkTarget::Stdout => Destination::stdout(),
        SinkTarget::Path(template) => {
            let path = sink_path(job, template, run_id);
            Destination::file(&path).map_err(|source| SinkError::Create { path, source })?
        }
    };
    with_destination(job, &config.format, out)
}

/// A sink of `format` for `job`, writing to `out`.
pub fn with_destination(
    job: &Job,
    format: &SinkFormat,
    out: Destination,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match format {
        SinkFormat::Text(template) => Box::new(TextSink::new(out, template)),
        SinkFormat::Jsonl => Box::new(JsonlSink::new(out)),
        SinkFormat::Json => Box::new(JsonSink::new(out)),
        SinkFormat::Csv => {
            let target = out.describe();
            Box::new(
                CsvSink::new(out, &job.args.names)
                    .map_err(|source| SinkError::Write { target, source })?,
            )
        }
    })
}

/// Every sink of one job run.
pub struct SinkManager {
    sinks: Vec<(String, Box<dyn Sink>)>,
}

impl std::fmt::Debug for SinkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.sinks.iter().map(|(name, _)| name)).finish()
    }
}

impl SinkManager {
    /// Open every `[[sink]]` of `job` for the run `run_id`. If one fails, those already
    /// opened are aborted (no temporary file stays behind).
    pub fn open(job: &Job, run_id: &str) -> Result<SinkManager, SinkError> {
        let mut paths = Vec::new();
        for config in &job.sinks {
            if let SinkTarget::Path(template) = &config.to {
                let path = sink_path(job, template, run_id);
                // `out/r.csv`, `./out/r.csv` and `out/../out/r.csv` are one file.
                let same = same_file_key(&path);
                if paths.contains(&same) {
                    return Err(SinkError::SamePath { path });
                }
                paths.push(same);
            }
        }
        let mut manager = SinkManager { sinks: Vec::with_capacity(job.sinks.len()) };
        for config in &job.sinks {
            let target = match &config.to {
                SinkTarget::Stdout => "stdout".to_string(),
                SinkTarget::Path(t) => sink_path(job, t, run_id).display().to_string(),
            };
            match open_sink(job, config, run_id) {
                Ok(sink) => manager.sinks.push((target, sink)),
                Err(e) => {
                    manager.abort();
                    return Err(e);
                }
            }
        }
        Ok(manager)
    }

    /// A manager over sinks built by the caller; `target` names each in error messages.
    pub fn from_sinks(sinks: Vec<(String, Box<dyn Sink>)>) -> SinkManager {
        SinkManager { sinks }
    }

    /// Write one record to every sink (buffered: call [`SinkManager::flush`] after a batch).
    pub fn write(&mut self, r: &TaskRecord) -> Result<(), SinkError> {
        for (target, sink) in &mut self.sinks {
            sink.write_record(r)
                .map_err(|source| SinkError::Write { target: target.clone(), source })?;
        }
        Ok(())
    }

    /// Whether every sink takes JSON lines ([`Sink::takes_json_lines`]), and whether any
    /// does.
    fn line_use(&self) -> (bool, bool) {
        let lines = self.sinks.iter().filter(|(_, s)| s.takes_json_lines()).count();
        (lines == self.sinks.len(), lines > 0)
    }

    /// Write one outgoing record to every sink: its JSON line to those that take lines
    /// (when it has one), the record to the others.
    fn write_outgoing(&mut self, o: &Outgoing) -> Result<(), SinkError> {
        self.write_parts(o.line.as_deref(), o.record.as_deref())
    }

    /// Write one record to every sink: its JSON line to the sinks that take lines, the
    /// record to the others.
    fn write_parts(
        &mut self,
        line: Option<&[u8]>,
        record: Option<&TaskRecord>,
    ) -> Result<(), SinkError> {
        for (target, sink) in &mut self.sinks {
            let result = match (line, record) {
                (Some(line), _) if sink.takes_json_lines() => sink.write_json_line(line),
                (_, Some(r)) => sink.write_record(r),
                (Some(_), None) => Err(io::Error::other("a record came without its fields")),
                (None, None) => Ok(()),
            };
            result.map_err(|source| SinkError::Write { target: target.clone(), source })?;
        }
        Ok(())
    }

    /// Make what was written visible on stdout. Cheap to call once per batch of ready
    /// records; a no-op for file sinks.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        for (target, sink) in &mut self.sinks {
            sink.flush().map_err(|source| SinkError::Write { target: target.clone(), source })?;
        }
        Ok(())
    }

    /// Complete every sink (files are renamed into place). Every sink is finished even if
    /// one fails; the first error is returned.
    pub fn finish(self) -> Result<(), SinkError> {
        let mut first = None;
        for (target, sink) in self.sinks {
            if let Err(source) = sink.finish() {
                first.get_or_insert(SinkError::Write { target, source });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Abort every sink: temporary files are removed, targets untouched.
    pub fn abort(self) {
        for (_, sink) in self.sinks {
            sink.abort();
        }
    }
}

/// A record on its way to the sinks, in the form they need: the record, its JSON line
/// as the journal wrote it (for sinks that take lines), or both.
#[derive(Debug)]
pub struct Outgoing {
    index: u64,
    /// Boxed: an `Outgoing` held in the reorder buffer's tree is moved around there.
    record: Option<Box<TaskRecord>>,
    line: Option<Box<[u8]>>,
}

impl Indexed for Outgoing {
    fn index(&self) -> u64 {
        self.index
    }
}

/// A [`ReorderBuffer`] in front of a [`SinkManager`]: give it records as they complete;
/// it writes them in the job's order and flushes stdout once per batch of ready records,
/// so a reader sees each record as soon as its turn comes without a flush per record.
#[derive(Debug)]
pub struct OrderedSinks {
    buffer: ReorderBuffer<Outgoing>,
    sinks: SinkManager,
    written: u64,
    /// Every sink takes JSON lines: a record given with its line is not kept.
    lines_only: bool,
    /// Some sink takes JSON lines: a line given with a record is kept.
    lines_used: bool,
}

impl OrderedSinks {
    /// Open `job`'s sinks for `run_id`, in the job's `order`.
    pub fn open(job: &Job, run_id: &str) -> Result<OrderedSinks, SinkError> {
        Ok(OrderedSinks::new(ReorderBuffer::new(job.order), SinkManager::open(job, run_id)?))
    }

    /// Put `buffer` (its order, and the records it holds) in front of `sinks`.
    pub fn new(mut buffer: ReorderBuffer, sinks: SinkManager) -> OrderedSinks {
        let (lines_only, lines_used) = sinks.line_use();
        let mut own = ReorderBuffer::starting_at(buffer.order(), buffer.next_index());
        for r in buffer.drain() {
            let _ = own
                .push(Outgoing { index: r.index, record: Some(Box::new(r)), line: None })
                .count();
        }
        OrderedSinks { buffer: own, sinks, written: 0, lines_only, lines_used }
    }

    /// Accept one record (completion order); write every record now ready and flush
    /// stdout if any was. Same as [`OrderedSinks::push`] then [`OrderedSinks::flush`].
    pub fn accept(&mut self, record: TaskRecord) -> Result<(), SinkError> {
        if self.push(record)? > 0 { self.sinks.flush() } else { Ok(()) }
    }

    /// Accept one record and write every record now ready, without flushing stdout:
    /// for a runner that drains every record already waiting in its channel, then calls
    /// [`OrderedSinks::flush`] once. Returns how many records were written.
    pub fn push(&mut self, record: TaskRecord) -> Result<usize, SinkError> {
        let index = record.index;
        self.push_outgoing(Outgoing { index, record: Some(Box::new(record)), line: None })
    }

    /// Whether every sink takes JSON lines: then [`OrderedSinks::push_line`] needs no
    /// record, only its index and line.
    pub fn lines_only(&self) -> bool {
        self.lines_only
    }

    /// [`OrderedSinks::push`] of the record at `index` whose compact JSON line (newline
    /// included) is `line`, as the journal wrote it: sinks that take lines write these
    /// bytes instead of serialising the record again. `record` may be `None` when
    /// [`OrderedSinks::lines_only`] (otherwise writing it fails).
    pub fn push_line(
        &mut self,
        index: u64,
        record: Option<Box<TaskRecord>>,
        line: &[u8],
    ) -> Result<usize, SinkError> {
        if self.buffer.pass(index) {
            // Due now and nothing waits behind it: written straight from the journal's
            // buffer, without a copy into the reorder buffer.
            let record = record.filter(|_| !self.lines_only);
            self.sinks.write_parts(self.lines_used.then_some(line), record.as_deref())?;
            self.written += 1;
            return Ok(1);
        }
        let o = Outgoing {
            index,
            record: record.filter(|_| !self.lines_only),
            line: self.lines_used.then(|| line.into()),
        };
        self.push_outgoing(o)
    }

    fn push_outgoing(&mut self, o: Outgoing) -> Result<usize, SinkError> {
        let mut n = 0;
        for r in self.buffer.push(o) {
            self.sinks.write_outgoing(&r)?;
            n += 1;
        }
        self.written += n as u64;
        Ok(n)
    }

    /// Make what was written visible on stdout.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.sinks.flush()
    }

    /// Records written to the sinks so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The reorder buffer (for its statistics).
    pub fn buffer(&self) -> &ReorderBuffer<Outgoing> {
        &self.buffer
    }

    /// Write whatever is still held (in index order, over gaps), then finish every sink.
    pub fn finish(mut self) -> Result<(), SinkError> {
        let rest: Vec<Outgoing> = self.buffer.drain().collect();
        for r in &rest {
            if let Err(e) = self.sinks.write_outgoing(r) {
                self.sinks.abort();
                return Err(e);
            }
        }
        self.sinks.finish()
    }

    /// Abort every sink.
    pub fn abort(self) {
        self.sinks.abort()
    }
}
