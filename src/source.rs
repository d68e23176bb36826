//! A job file's text, and the spanned document tree every later check points into.
//!
//! Owns: [`Sources`] (the job file plus one small source per `--set KEY=VALUE`
//! override, each a [`miette::NamedSource`]), and [`Node`], a TOML value that remembers
//! which source and which byte range it came from. `validate` walks `Node`s instead of
//! deserialising with serde, because serde stops at the first problem and a user should
//! see every problem of a file at once.
//! Must not: validate anything beyond TOML syntax, or read other files.

use std::ops::Range;
use std::sync::Arc;

use miette::NamedSource;
use toml::de::{DeTable, DeValue};

/// Which source a node came from: an index into [`Sources`].
pub type Origin = usize;

/// The job file (origin 0) and every `--set` override (origins 1..).
#[derive(Debug, Clone)]
pub struct Sources {
    sources: Vec<NamedSource<Arc<str>>>,
}

impl Sources {
    /// Sources whose origin 0 is the job file `name` with `text`.
    pub fn new(name: &str, text: &str) -> Self {
        Sources { sources: vec![Self::named(name, text)] }
    }

    fn named(name: &str, text: &str) -> NamedSource<Arc<str>> {
        NamedSource::new(name, Arc::<str>::from(text)).with_language("toml")
    }

    /// Add a source (an override) and return its origin.
    pub fn push(&mut self, name: &str, text: &str) -> Origin {
        self.sources.push(Self::named(name, text));
        self.sources.len() - 1
    }

    /// The source of `origin` (cheap to clone: the text is shared).
    pub fn get(&self, origin: Origin) -> NamedSource<Arc<str>> {
        self.sources[origin.min(self.sources.len() - 1)].clone()
    }
}

/// A place in one of the [`Sources`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Which source.
    pub origin: Origin,
    /// Byte range in that source.
    pub span: Range<usize>,
}

/// A table key with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key is written.
    pub loc: Loc,
}

/// A TOML value with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the value is written.
    pub loc: Loc,
}

/// The shapes of a TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A string.
    Str(String),
    /// An integer; `None` when it does not fit in an `i64`.
    Int(Option<i64>),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date-time, kept as written.
    Datetime(String),
    /// An array (also an array of tables, `[[x]]`).
    Array(Vec<Node>),
    /// A table, keys in written order.
    Table(Vec<(Key, Node)>),
}

impl Node {
    /// A short name of the value's type for messages ("a string", "an integer").
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime(_) => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }

    /// The entries when this is a table.
    pub fn as_table(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The string when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Look up `key` when this is a table.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_table()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// Convert a parsed TOML value of source `origin`.
    pub fn from_de(value: &DeValue<'_>, span: Range<usize>, origin: Origin) -> Node {
        let loc = Loc { origin, span };
        let kind = match value {
            DeValue::String(s) => NodeKind::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                NodeKind::Int(i64::from_str_radix(&digits, i.radix()).ok())
            }
            DeValue::Float(f) => {
                let text = f.as_str().replace('_', "");
                NodeKind::Float(text.parse().unwrap_or(f64::NAN))
            }
            DeValue::Boolean(b) => NodeKind::Bool(*b),
            DeValue::Datetime(d) => NodeKind::Datetime(d.to_string()),
            DeValue::Array(items) => NodeKind::Array(
                items.iter().map(|v| Node::from_de(v.get_ref(), v.span(), origin)).collect(),
            ),
            DeValue::Table(t) => NodeKind::Table(table_entries(t, origin)),
        };
        Node { kind, loc }
    }
}

fn table_entries(table: &DeTable<'_>, origin: Origin) -> Vec<(Key, Node)> {
    table
        .iter()
        .map(|(k, v)| {
            let key = Key { name: k.get_ref().to_string(), loc: Loc { origin, span: k.span() } };
            (key, Node::from_de(v.get_ref(), v.span(), origin))
        })
        .collect()
}

/// A TOML syntax error: the bare message and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// toml's message, without its own snippet.
    pub message: String,
    /// Byte range, when toml knows it.
    pub span: Option<Range<usize>>,
}

/// Parse a whole document of source `origin` into a table node. On syntax errors,
/// returns all of them (toml recovers and keeps going).
pub fn parse_document(text: &str, origin: Origin) -> Result<Node, Vec<SyntaxError>> {
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| SyntaxError { message: e.message().to_string(), span: e.span() })
            .collect());
    }
    let span = table.span();
    Ok(Node {
        kind: NodeKind::Table(table_entries(table.get_ref(), origin)),
        loc: Loc { origin, span: 0..span.end.min(text.len()) },
    })
}

/// Parse a single TOML value (the right-hand side of `--set KEY=VALUE`).
pub fn parse_value(text: &str, offset: usize, origin: Origin) -> Option<Node> {
    let value = DeValue::parse(text).ok()?;
    let span = value.span();
    let mut node = Node::from_de(value.get_ref(), span, origin);
    shift(&mut node, offset);
    Some(node)
}

fn shift(node: &mut Node, offset: usize) {
    node.loc.span = node.loc.span.start + offset..node.loc.span.end + offset;
    match &mut node.kind {
        NodeKind::Array(items) => items.iter_mut().for_each(|n| shift(n, offset)),
        NodeKind::Table(entries) => {
            for (k, v) in entries {
                k.loc.span = k.loc.span.start + offset..k.loc.span.end + offset;
                shift(v, offset);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values() {
        let text = "a = 1\n[t]\nb = \"x\"\n";
        let doc = parse_document(text, 0).unwrap();
        let b = doc.get("t").unwrap().get("b").unwrap();
        assert_eq!(&text[b.loc.span.clone()], "\"x\"");
        assert_eq!(doc.get("a").unwrap().kind, NodeKind::Int(Some(1)));
    }

    #[test]
    fn syntax_errors_are_collected() {
        let errs = parse_document("a = = 1\n", 0).unwrap_err();
        assert!(!errs.is_empty());
        assert!(errs[0].span.is_some());
    }

    #[test]
    fn values_parse_with_offset() {
        let n = parse_value("[1, 2]", 4, 1).unwrap();
        assert_eq!(n.loc.span, 4..10);
        assert!(parse_value("30s", 0, 1).is_none());
    }
}
