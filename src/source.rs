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

    /// The text of `origin`.
    pub fn text(&self, origin: Origin) -> &str {
        self.sources[origin.min(self.sources.len() - 1)].inner()
    }

    /// Where bytes `within` of the string value `node` are written: a place inside the
    /// quotes (escapes and multi-line strings accounted for), so that a label points at
    /// the `{placeholder}` on its own line rather than at the start of the string. Falls
    /// back to the whole value when the written text cannot be mapped.
    pub fn inner_loc(&self, node: &Node, within: Range<usize>) -> Loc {
        let fallback = node.loc.clone();
        let NodeKind::Str(value) = &node.kind else { return fallback };
        let Some(raw) = self.text(node.loc.origin).get(node.loc.span.clone()) else {
            return fallback;
        };
        let Some(map) = string_offsets(raw, value) else { return fallback };
        let Some(&start) = map.get(within.start) else { return fallback };
        let end = if within.is_empty() {
            start
        } else {
            // One past the raw bytes of the last decoded byte (an escape is labelled
            // from its backslash to its end).
            let Some(&last) = map.get(within.end - 1) else { return fallback };
            let next = map.get(within.end).copied().unwrap_or(raw.len());
            next.max(last + 1)
        };
        let base = node.loc.span.start;
        Loc { origin: node.loc.origin, span: base + start..base + end }
    }
}

/// For a TOML string token `raw` (quotes included) whose value is `value`: the raw byte
/// offset of every decoded byte, plus one entry for the end. `None` when `raw` does not
/// decode to `value` (then a caller labels the whole token). A token without quotes (a
/// plain `--set` value) maps one to one.
pub fn string_offsets(raw: &str, value: &str) -> Option<Vec<usize>> {
    let (literal, multi) = if raw.starts_with("\"\"\"") {
        (false, true)
    } else if raw.starts_with("'''") {
        (true, true)
    } else if raw.starts_with('"') {
        (false, false)
    } else if raw.starts_with('\'') {
        (true, false)
    } else {
        return (raw == value).then(|| (0..=raw.len()).collect());
    };
    let open = if multi { 3 } else { 1 };
    let close = raw.len().checked_sub(open)?;
    if close < open {
        return None;
    }
    let body = &raw[open..close];
    let bytes = body.as_bytes();
    let mut i = 0;
    if multi {
        if body.starts_with("\r\n") {
            i = 2;
        } else if body.starts_with('\n') {
            i = 1;
        }
    }
    let keep_cr = value.contains('\r');
    let mut out = String::with_capacity(body.len());
    let mut map = Vec::with_capacity(body.len() + 1);
    let push = |out: &mut String, map: &mut Vec<usize>, c: char, at: usize| {
        let before = out.len();
        out.push(c);
        map.extend(std::iter::repeat_n(open + at, out.len() - before));
    };
    while i < body.len() {
        let c = body[i..].chars().next()?;
        if c == '\r' && multi && !keep_cr && bytes.get(i + 1) == Some(&b'\n') {
            push(&mut out, &mut map, '\n', i);
            i += 2;
            continue;
        }
        if c != '\\' || literal {
            push(&mut out, &mut map, c, i);
            i += c.len_utf8();
            continue;
        }
        let esc = *bytes.get(i + 1)?;
        let simple = match esc {
            b'b' => Some('\u{8}'),
            b't' => Some('\t'),
            b'n' => Some('\n'),
            b'f' => Some('\u{c}'),
            b'r' => Some('\r'),
            b'e' => Some('\u{1b}'),
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            _ => None,
        };
        if let Some(d) = simple {
            push(&mut out, &mut map, d, i);
            i += 2;
            continue;
        }
        let hex = match esc {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            _ => 0,
        };
        if hex > 0 {
            let digits = body.get(i + 2..i + 2 + hex)?;
            let d = char::from_u32(u32::from_str_radix(digits, 16).ok()?)?;
            push(&mut out, &mut map, d, i);
            i += 2 + hex;
            continue;
        }
        // A line-ending backslash (multi-line only): skip whitespace and newlines.
        if multi && matches!(esc, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            while i < body.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            continue;
        }
        return None;
    }
    map.push(open + body.len());
    (out == value).then_some(map)
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
    fn string_offsets_follow_escapes_and_lines() {
        let text =
            "a = \"x\\ty{z}\"\nb = \"\"\"\nl1\n{q}\"\"\"\nc = '''\r\n{w}'''\nd = \"\\u00e9{e}\"\n";
        let doc = parse_document(text, 0).unwrap();
        let sources = Sources::new("f", text);
        for (key, decoded, want) in
            [("a", 3..6, "{z}"), ("b", 3..6, "{q}"), ("c", 0..3, "{w}"), ("d", 2..5, "{e}")]
        {
            let node = doc.get(key).unwrap();
            let loc = sources.inner_loc(node, decoded);
            assert_eq!(&text[loc.span], want, "{key}");
        }
        let node = doc.get("a").unwrap();
        assert_eq!(&text[sources.inner_loc(node, 1..2).span], "\\t");
        assert_eq!(string_offsets("\"a\"", "b"), None);
    }

    #[test]
    fn values_parse_with_offset() {
        let n = parse_value("[1, 2]", 4, 1).unwrap();
        assert_eq!(n.loc.span, 4..10);
        assert!(parse_value("30s", 0, 1).is_none());
    }
}
