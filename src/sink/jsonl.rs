//! The `jsonl` format: one compact JSON object per line, the record as documented in
//! the book's "Sinks and records" chapter.

use std::io::{self, Write};

use crate::record::TaskRecord;

use super::{Destination, Sink};

/// Writes each record as one line of JSON.
#[derive(Debug)]
pub struct JsonlSink {
    out: Destination,
}

impl JsonlSink {
    /// A jsonl sink writing to `out`.
    pub fn new(out: Destination) -> Self {
        JsonlSink { out }
    }
}

impl Sink for JsonlSink {
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, r).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
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
