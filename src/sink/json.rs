//! The `json` format: one JSON array of records, one record per line inside it.
//!
//! The array is opened with the first record and closed by `finish`, so the output is
//! valid JSON with zero records and after an interrupted run (which still finishes its
//! sinks, with `cancelled` records).

use std::io::{self, Write};

use crate::record::TaskRecord;

use super::{Destination, Sink};

/// Writes `[`, the records separated by `,` and newlines, then `]`.
#[derive(Debug)]
pub struct JsonSink {
    out: Destination,
    written: u64,
    line: Vec<u8>,
}

impl JsonSink {
    /// A json sink writing to `out`.
    pub fn new(out: Destination) -> Self {
        JsonSink { out, written: 0, line: Vec::with_capacity(256) }
    }
}

impl Sink for JsonSink {
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()> {
        // One write per record: two sinks on stdout interleave only between records.
        self.line.clear();
        self.line.extend_from_slice(if self.written == 0 { b"[\n" } else { b",\n" });
        serde_json::to_writer(&mut self.line, r).map_err(io::Error::from)?;
        self.out.write_all(&self.line)?;
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush_stream()
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.write_all(if self.written == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.commit()
    }

    fn abort(self: Box<Self>) {
        self.out.abort()
    }
}
