//! The `jsonl` format: one compact JSON object per line, the record as documented in
//! the book's "Sinks and records" chapter.

use std::io::{self, Write};

use crate::record::TaskRecord;

use super::{Destination, Sink};

/// Writes each record as one line of JSON.
#[derive(Debug)]
pub struct JsonlSink {
    out: Destination,
    line: Vec<u8>,
}

impl JsonlSink {
    /// A jsonl sink writing to `out`.
    pub fn new(out: Destination) -> Self {
        JsonlSink { out, line: Vec::with_capacity(256) }
    }
}

impl Sink for JsonlSink {
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()> {
        // One write per record: two sinks on stdout interleave only between records.
        self.line.clear();
        r.write_json(&mut self.line).map_err(io::Error::from)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn takes_json_lines(&self) -> bool {
        true
    }

    fn write_json_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush_stream()
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        self.out.commit()
    }

    fn abort(self: Box<Self>) {
        self.out.abort()
    }
}
