//! Where a sink's bytes go: standard output, an atomic file, or any writer.
//!
//! Owns: buffering, the temporary-file-then-rename protocol of file sinks, and cleaning
//! up the temporary file when a run aborts. Must not: know about record formats.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use crate::durable::Writeback;

/// Buffer size for every destination: large enough that a record is never split across
/// many syscalls, small enough not to matter per sink.
const BUFFER: usize = 64 * 1024;

/// A byte destination for one sink.
///
/// Writes are buffered. [`Destination::flush`] makes them visible to a reader of standard
/// output (and of any other writer); a file's content becomes visible only when
/// [`Destination::commit`] renames its temporary file over the target.
pub enum Destination {
    /// Standard output, buffered.
    Stdout(BufWriter<Stdout>),
    /// A file written through a temporary file beside it.
    File(AtomicFile),
    /// Any other writer (tests, programs that embed the library).
    Writer(BufWriter<Box<dyn Write + Send>>),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout(_) => f.write_str("Destination::Stdout"),
            Destination::File(file) => write!(f, "Destination::File({})", file.target.display()),
            Destination::Writer(_) => f.write_str("Destination::Writer"),
        }
    }
}

impl Destination {
    /// Buffered standard output.
    pub fn stdout() -> Self {
        Destination::Stdout(BufWriter::with_capacity(BUFFER, io::stdout()))
    }

    /// A file sink for `target`: creates its parent folders and a temporary file beside it.
    pub fn file(target: &Path) -> io::Result<Self> {
        AtomicFile::create(target).map(Destination::File)
    }

    /// Any writer, buffered.
    pub fn writer(w: impl Write + Send + 'static) -> Self {
        Destination::Writer(BufWriter::with_capacity(BUFFER, Box::new(w)))
    }

    /// A short description for error messages: `stdout` or the target path.
    pub fn describe(&self) -> String {
        match self {
            Destination::Stdout(_) => "stdout".to_string(),
            Destination::File(file) => file.target.display().to_string(),
            Destination::Writer(_) => "writer".to_string(),
        }
    }

    /// Whether written bytes should be pushed out as soon as a batch of records is done.
    /// True for streams a reader may be watching; false for files (nobody sees a temporary
    /// file, so flushing it early would only cost syscalls).
    pub fn is_stream(&self) -> bool {
        !matches!(self, Destination::File(_))
    }

    /// Flush buffered bytes of a stream; a no-op for files (see [`Destination::is_stream`]).
    pub fn flush_stream(&mut self) -> io::Result<()> {
        match self {
            Destination::Stdout(w) => w.flush(),
            Destination::Writer(w) => w.flush(),
            Destination::File(_) => Ok(()),
        }
    }

    /// Finish successfully: flush, and for a file, sync and rename it over its target.
    pub fn commit(self) -> io::Result<()> {
        match self {
            Destination::Stdout(mut w) => w.flush(),
            Destination::Writer(mut w) => w.flush(),
            Destination::File(file) => file.commit(),
        }
    }

    /// Give up: a file's temporary file is removed and the target left untouched; streams
    /// are flushed on a best-effort basis (what was written stays written).
    pub fn abort(self) {
        match self {
            Destination::Stdout(mut w) => {
                let _ = w.flush();
            }
            Destination::Writer(mut w) => {
                let _ = w.flush();
            }
            Destination::File(file) => file.abort(),
        }
    }
}

impl Write for Destination {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Destination::Stdout(w) => w.write(buf),
            Destination::File(f) => f.writer.write(buf),
            Destination::Writer(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Destination::Stdout(w) => w.write_all(buf),
            Destination::File(f) => f.writer.write_all(buf),
            Destination::Writer(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Destination::Stdout(w) => w.flush(),
            Destination::File(f) => f.writer.flush(),
            Destination::Writer(w) => w.flush(),
        }
    }
}

/// A file written as `.NAME.tmp-XXXXXX` beside its target and renamed over the target
/// when committed, so a reader sees either the old file or the whole new one.
///
/// Dropping it without [`AtomicFile::commit`] removes the temporary file.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: BufWriter<Writeback>,
    done: bool,
}

impl AtomicFile {
    /// Create the temporary file for `target` (and `target`'s parent folders).
    pub fn create(target: &Path) -> io::Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)?;
        let name = target
            .file_name()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "sink path has no file name")
            })?
            .to_string_lossy()
            .into_owned();
        for _ in 0..100 {
            let suffix: String = (0..6).map(|_| fastrand::alphanumeric()).collect();
            let temp = parent.join(format!(".{name}.tmp-{suffix}"));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    // Held while the file is ours: a run killed before it could clean up
                    // leaves an unlocked temporary file, which the next run removes.
                    let _ = file.try_lock();
                    remove_stale_temps(&parent, &name, &temp);
                    return Ok(AtomicFile {
                        target: target.to_path_buf(),
                        temp,
                        writer: BufWriter::with_capacity(BUFFER, Writeback::new(file)),
                        done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary file name"))
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flush, fsync once, and rename over the target. On error the temporary file is
    /// removed.
    pub fn commit(mut self) -> io::Result<()> {
        let result = (|| {
            self.writer.flush()?;
            self.writer.get_ref().get_ref().sync_all()?;
            fs::rename(&self.temp, &self.target)
        })();
        if result.is_ok() {
            self.done = true;
        }
        // On error, Drop removes the temporary file.
        result
    }

    /// Remove the temporary file; the target is not touched.
    pub fn abort(self) {
        // Drop does the work.
    }
}

/// How old an unlocked temporary file must be before it counts as left behind (so a file
/// another run has just created and not yet locked is never taken for one).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Remove `.NAME.tmp-*` files beside the target that no running jobpool holds: those a
/// killed run (`kill -9`, a power cut) could not remove itself.
fn remove_stale_temps(parent: &Path, name: &str, ours: &Path) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let is_temp = e.file_name().to_str().is_some_and(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        });
        if !is_temp || path == ours {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !old {
            continue;
        }
        if let Ok(f) = File::open(&path)
            && f.try_lock().is_ok()
        {
            let _ = fs::remove_file(&path);
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
