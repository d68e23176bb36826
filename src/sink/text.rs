//! The `text` format: one line per record, from a template.
//!
//! Owns: template placeholders for records. Must not: reorder records.

use std::io::{self, Write};

use crate::model::{Template, TemplatePart, value_text};
use crate::record::{FIELD_NAMES, TaskRecord};

use super::{Destination, Sink};

/// One piece of a compiled line template.
#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    /// A record field (see [`TaskRecord::field_text`]).
    Field(&'static str),
    /// An argument by name.
    Arg(String),
    /// An argument by position.
    Position(usize),
}

/// Writes `template` rendered for each record, then a newline.
///
/// Every record gives exactly one line, failures included, so line `n` of the output is
/// record `n` of the run: for a failed record `{value}` is empty and `{error}` holds the
/// message. A value that contains newlines is written as is (use `jsonl` for such values).
#[derive(Debug)]
pub struct TextSink {
    out: Destination,
    pieces: Vec<Piece>,
    line: String,
}

impl TextSink {
    /// A text sink writing `template` lines to `out`.
    ///
    /// A placeholder is, in this order: a record field (`value`, `status`, `error`,
    /// `index`, `key`, `duration_ms`, `attempts`, `worker`, `exit_code`, `signal`,
    /// `started_at`, `stderr`, `resumed`); `args.NAME`; an argument's name; an argument's
    /// position (`{0}`). Anything else renders as nothing (validation rejects it earlier).
    pub fn new(out: Destination, template: &Template) -> Self {
        let pieces = template
            .parts
            .iter()
            .map(|part| match part {
                TemplatePart::Literal(text) => Piece::Literal(text.clone()),
                TemplatePart::Placeholder(name) => compile(name),
            })
            .collect();
        TextSink { out, pieces, line: String::with_capacity(128) }
    }

    fn render(&mut self, r: &TaskRecord) {
        self.line.clear();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => self.line.push_str(text),
                Piece::Field(name) => {
                    if let Some(text) = r.field_text(name) {
                        self.line.push_str(&text);
                    }
                }
                Piece::Arg(name) => {
                    if let Some(v) = r.args.get(name) {
                        self.line.push_str(&value_text(v));
                    }
                }
                Piece::Position(i) => {
                    if let Some(v) = r.args.values().nth(*i) {
                        self.line.push_str(&value_text(v));
                    }
                }
            }
        }
        self.line.push('\n');
    }
}

fn compile(name: &str) -> Piece {
    if let Some(field) = FIELD_NAMES.iter().find(|f| **f == name) {
        return Piece::Field(field);
    }
    if let Some(arg) = name.strip_prefix("args.") {
        return Piece::Arg(arg.to_string());
    }
    if let Ok(i) = name.parse::<usize>() {
        return Piece::Position(i);
    }
    Piece::Arg(name.to_string())
}

impl Sink for TextSink {
    fn write_record(&mut self, r: &TaskRecord) -> io::Result<()> {
        self.render(r);
        self.out.write_all(self.line.as_bytes())
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
