//! The `csv` format: a header, then one row per record.
//!
//! Columns: every argument in declared order, then `status`, `value`, `error`,
//! `duration_ms`. Cells are template text (strings raw, `null` empty, other values
//! compact JSON), quoted by the `csv` crate when needed (RFC 4180).

use std::io;

use crate::model::value_text;
use crate::record::TaskRecord;

use super::{Destination, Sink};

/// Writes records as CSV rows.
pub struct CsvSink {
    out: csv::Writer<Destination>,
    args: Vec<String>,
    row: Vec<String>,
}

impl std::fmt::Debug for CsvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSink").field("args", &self.args).finish_non_exhaustive()
    }
}

/// The columns after the arguments.
pub const CSV_FIELDS: [&str; 4] = ["status", "value", "error", "duration_ms"];

impl CsvSink {
    /// A csv sink with one column per name in `args`; writes the header at once.
    pub fn new(out: Destination, args: &[String]) -> io::Result<Self> {
        let mut out = csv::WriterBuilder::new().has_headers(false).from_writer(out);
        let header = args.iter().map(String::as_str).chain(CSV_FIELDS);
        out.write_record(header).map_err(csv_error)?;
        Ok(CsvSink { out, args: args.to_vec(), row: Vec::with_capacity(args.len() + 4) })
    }
}

fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

impl Sink for CsvSink {
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()> {
        self.row.clear();
        for name in &self.args {
            self.row.push(r.args.get(name).map(value_text).unwrap_or_default());
        }
        self.row.push(r.status.as_str().to_string());
        self.row.push(r.value.as_ref().map(value_text).unwrap_or_default());
        self.row.push(r.error.clone().unwrap_or_default());
        self.row.push(r.duration_ms.to_string());
        self.out.write_record(&self.row).map_err(csv_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        // csv's own buffer first, then the destination's; files need neither (nobody
        // reads a temporary file).
        if self.out.get_ref().is_stream() { self.out.flush() } else { Ok(()) }
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        let out = self
            .out
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))?;
        out.commit()
    }

    fn abort(self: Box<Self>) {
        if let Ok(out) = self.out.into_inner() {
            out.abort();
        }
    }
}
