//! The `csv` format: a header, then one row per record.
//!
//! Columns: every argument in declared order, then `status`, `value`, `error`,
//! `duration_ms`. Cells are template text (strings raw, `null` empty, other values
//! compact JSON), quoted by the `csv` crate when needed (RFC 4180).

use std::io::{self, Write};

use crate::model::value_text;
use crate::record::{TaskRecord, csv_fields};

use super::{Destination, Sink};

/// Writes records as CSV rows.
pub struct CsvSink {
    out: Destination,
    /// Formats one row at a time into memory, so each row reaches `out` in one write (two
    /// sinks on stdout then interleave only between rows).
    rows: csv::Writer<RowBuffer>,
    args: Vec<String>,
    row: Vec<String>,
}

impl std::fmt::Debug for CsvSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSink")
            .field("out", &self.out)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl CsvSink {
    /// A csv sink with one column per name in `args`; writes the header at once.
    pub fn new(out: Destination, args: &[String]) -> io::Result<Self> {
        let rows = csv::WriterBuilder::new().has_headers(false).from_writer(RowBuffer::default());
        let mut sink =
            CsvSink { out, rows, args: args.to_vec(), row: Vec::with_capacity(args.len() + 4) };
        sink.row.extend(args.iter().cloned().chain(csv_fields().map(String::from)));
        sink.emit_row()?;
        Ok(sink)
    }

    fn emit_row(&mut self) -> io::Result<()> {
        self.rows.write_record(&self.row).map_err(csv_error)?;
        self.rows.flush()?;
        let mut bytes = self.rows.get_ref().0.borrow_mut();
        let result = self.out.write_all(&bytes);
        bytes.clear();
        result
    }
}

/// The bytes of one formatted row (`csv::Writer` has no `get_mut`, hence the cell).
#[derive(Debug, Default)]
struct RowBuffer(std::cell::RefCell<Vec<u8>>);

impl Write for RowBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        self.emit_row()
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
