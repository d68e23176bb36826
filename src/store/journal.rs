//! Reading a run's journal (`records.jsonl`) back.
//!
//! A journal is written one whole line per record, but jobpool may be killed in the
//! middle of a `write`: the last line can then be torn (no newline, cut JSON). Readers
//! ignore such a tail. A complete line that does not parse (a disk error, a hand edit)
//! is skipped and counted rather than failing the whole read.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::record::TaskRecord;

/// The complete lines of a journal, as bytes without their newline; a torn last line
/// (one without a newline) is left out.
#[derive(Debug)]
pub(crate) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    torn: bool,
    /// Byte offset of the next line.
    pos: u64,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R) -> Self {
        Lines { reader, buf: Vec::with_capacity(512), torn: false, pos: 0 }
    }

    /// The next complete line and its byte offset in the file, or `None` at the end.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        loop {
            let start = self.pos;
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf)?;
            self.pos += n as u64;
            if n == 0 {
                return Ok(None);
            }
            if self.buf.last() != Some(&b'\n') {
                self.torn = true;
                return Ok(None);
            }
            self.buf.pop();
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((start, &self.buf)));
        }
    }

    /// Whether the journal ended with a torn line.
    pub(crate) fn torn(&self) -> bool {
        self.torn
    }
}

/// An iterator over the records of a journal, in the order they were appended
/// (completion order).
#[derive(Debug)]
pub struct Records {
    lines: Lines<BufReader<File>>,
    skipped: u64,
}

impl Records {
    /// Open a journal file.
    pub fn open(path: &Path) -> io::Result<Records> {
        let file = File::open(path)?;
        Ok(Records { lines: Lines::new(BufReader::with_capacity(64 * 1024, file)), skipped: 0 })
    }

    /// Complete lines that did not parse as a record, so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the journal ended with a torn line (known once the iterator is exhausted).
    pub fn torn(&self) -> bool {
        self.lines.torn()
    }
}

impl Iterator for Records {
    type Item = io::Result<TaskRecord>;

    fn next(&mut self) -> Option<io::Result<TaskRecord>> {
        loop {
            match self.lines.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some((_, line))) => match serde_json::from_slice(line) {
                    Ok(r) => return Some(Ok(r)),
                    Err(_) => self.skipped += 1,
                },
            }
        }
    }
}
