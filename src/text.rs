//! [`SmallText`]: short text kept inline, for the strings every record carries.
//!
//! The record path makes and drops millions of content keys (32 lowercase hex digits of
//! an XXH3-128, [`crate::plan::Key`]) and start times (27 characters of RFC 3339): text
//! of up to 32 bytes lives in the value itself, without an allocation, so nothing is
//! allocated on one thread and freed on another for them. Longer text is kept on the
//! heap. Either way it is the same text: it compares, hashes, prints and serialises as
//! the `str`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Text of any length, inline up to [`SmallText::INLINE`] bytes. Behaves as its text.
#[derive(Clone)]
pub struct SmallText(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes are the text (copied from a `str`: valid UTF-8).
    Inline { len: u8, bytes: [u8; SmallText::INLINE] },
    /// Longer text.
    Heap(Box<str>),
}

/// A content key: the 32 hex digits of an XXH3-128 (see [`crate::plan`]), inline.
pub type Key = SmallText;

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [HEX[b >> 4], HEX[b & 15]];
        b += 1;
    }
    pairs
};

impl SmallText {
    /// The longest text kept inline, in bytes.
    pub const INLINE: usize = 32;

    /// The 32 lowercase hex digits of a 128-bit hash, big-endian (a content key).
    pub fn from_hash(hash: u128) -> SmallText {
        let mut bytes = [0u8; SmallText::INLINE];
        for (pair, b) in bytes.chunks_exact_mut(2).zip(hash.to_be_bytes()) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        SmallText(Repr::Inline { len: 32, bytes })
    }

    /// ASCII `text` of at most [`SmallText::INLINE`] bytes (a formatted time), inline;
    /// `None` otherwise. Cheaper than `From<&str>` after `str::from_utf8`.
    pub fn from_ascii(text: &[u8]) -> Option<SmallText> {
        if text.len() > SmallText::INLINE || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; SmallText::INLINE];
        bytes[..text.len()].copy_from_slice(text);
        Some(SmallText(Repr::Inline { len: text.len() as u8, bytes }))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let text = &bytes[..usize::from(*len)];
                debug_assert!(std::str::from_utf8(text).is_ok());
                // SAFETY: an inline text is only ever made by copying a whole `str`
                // (`From<&str>`, `From<String>`) or by writing ASCII hex digits
                // (`from_hash`), and never changed: `text` is valid UTF-8. (Validating
                // it here cost 10% of the planner: every key is read this way.)
                unsafe { std::str::from_utf8_unchecked(text) }
            }
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for SmallText {
    fn from(s: &str) -> SmallText {
        if s.len() <= SmallText::INLINE {
            let mut bytes = [0u8; SmallText::INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            SmallText(Repr::Inline { len: s.len() as u8, bytes })
        } else {
            SmallText(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for SmallText {
    fn from(s: String) -> SmallText {
        if s.len() <= SmallText::INLINE {
            SmallText::from(s.as_str())
        } else {
            SmallText(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<SmallText> for String {
    fn from(k: SmallText) -> String {
        k.as_str().to_string()
    }
}

impl std::ops::Deref for SmallText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SmallText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SmallText {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SmallText {
    fn eq(&self, other: &SmallText) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SmallText {}

impl PartialEq<str> for SmallText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SmallText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SmallText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for SmallText {
    fn partial_cmp(&self, other: &SmallText) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallText {
    fn cmp(&self, other: &SmallText) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SmallText {
    /// As the text hashes, so that a map of keys can be searched with a `&str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SmallText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Default for SmallText {
    fn default() -> SmallText {
        SmallText::from("")
    }
}

impl serde::Serialize for SmallText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SmallText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SmallText, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = SmallText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SmallText, E> {
                Ok(SmallText::from(s))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<SmallText, E> {
                Ok(SmallText::from(s))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Compact JSON written straight into a byte buffer, byte for byte what
/// `serde_json::to_writer` writes, for the values every record carries (integers, plain
/// strings): without serde's writer machinery and its small copies, which cost more than
/// the digits themselves at a million records a second. Anything else (floats, text to
/// escape, arrays, objects) goes through serde.
pub mod json {
    use serde_json::Value;

    /// `v` in decimal (`itoa`, the formatter serde_json itself uses).
    pub fn push_u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// `v` in decimal.
    pub fn push_i64(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// `s` as a JSON string.
    pub fn push_str(out: &mut Vec<u8>, s: &str) {
        // serde escapes `"`, `\` and control characters, nothing else. (A fold without
        // an early exit: the compiler checks many bytes at a time.)
        let escape = s.bytes().fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
        if !escape {
            out.reserve(s.len() + 2);
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else {
            // Writing into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
    }

    /// `v` as compact JSON.
    pub fn push_value(out: &mut Vec<u8>, v: &Value) -> serde_json::Result<()> {
        match v {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => push_u64(out, u),
                (None, Some(i)) => push_i64(out, i),
                _ => serde_json::to_writer(&mut *out, n)?,
            },
            Value::String(s) => push_str(out, s),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Null => out.extend_from_slice(b"null"),
            Value::Array(_) | Value::Object(_) => serde_json::to_writer(&mut *out, v)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_and_any_text_is_itself() {
        let h = SmallText::from_hash(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(h.as_str(), "0123456789abcdef0011223344556677");
        assert!(matches!(h.0, Repr::Inline { .. }));
        let back: SmallText = serde_json::from_str("\"0123456789abcdef0011223344556677\"").unwrap();
        assert!(matches!(back.0, Repr::Inline { .. }));
        assert_eq!(back, h);
        let long = "é".repeat(17); // 34 bytes
        for text in ["", "k1", "2026-11-30T07:59:03.964445Z", "é\u{1}\"", &"x".repeat(32), &long] {
            let t: SmallText = serde_json::from_str(&serde_json::to_string(text).unwrap()).unwrap();
            assert_eq!(
                matches!(t.0, Repr::Inline { .. }),
                text.len() <= SmallText::INLINE,
                "{text:?}"
            );
            assert_eq!(t, text);
            assert_eq!(SmallText::from(text.to_string()), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), serde_json::to_string(text).unwrap());
            assert_eq!(format!("{t}|{t:?}"), format!("{text}|{text:?}"));
        }
        // Maps answer lookups by text, whichever form the value took.
        let mut m = std::collections::HashMap::new();
        m.insert(h.clone(), 1);
        m.insert(SmallText::from(long.as_str()), 2);
        assert_eq!(m.get("0123456789abcdef0011223344556677"), Some(&1));
        assert_eq!(m.get(long.as_str()), Some(&2));
        assert_eq!(
            SmallText::from("a").cmp(&SmallText::from_hash(u128::MAX)),
            std::cmp::Ordering::Less
        );
        assert!(serde_json::from_str::<SmallText>("3").is_err());
        assert_eq!(
            SmallText::from_ascii(b"2026-11-30T07:59:03.964445Z").unwrap(),
            "2026-11-30T07:59:03.964445Z"
        );
        assert!(matches!(SmallText::from_ascii(b"").unwrap().0, Repr::Inline { len: 0, .. }));
        assert!(SmallText::from_ascii("é".as_bytes()).is_none());
        assert!(SmallText::from_ascii(&[b'x'; 33]).is_none());
    }

    #[test]
    fn json_is_serdes_text() {
        use serde_json::{Value, json};
        let values = [
            json!(0),
            json!(7),
            json!(-7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(-0.0),
            json!(1.5),
            json!(1e300),
            json!(0.1 + 0.2),
            json!(true),
            json!(false),
            json!(null),
            json!(""),
            json!("plain text é ✓"),
            json!("del \u{7f} and no other"),
            json!("quote \" backslash \\ tab \t nul \u{0} del \u{7f}"),
            json!([1, "a", [null]]),
            json!({"k": [1.5, {"x": "\n"}], "a": 1}),
        ];
        for v in &values {
            let mut ours = b"prefix".to_vec();
            json::push_value(&mut ours, v).unwrap();
            let mut serdes = b"prefix".to_vec();
            serde_json::to_writer(&mut serdes, v).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(serdes).unwrap());
            if let Value::String(s) = v {
                let mut ours = Vec::new();
                json::push_str(&mut ours, s);
                assert_eq!(ours, serde_json::to_vec(s).unwrap());
            }
        }
        let mut all: Vec<u64> = (0..2000).collect();
        all.extend((0..64).map(|b| 1u64 << b));
        all.extend((1..20).flat_map(|e| [10u64.pow(e) - 1, 10u64.pow(e), 10u64.pow(e) + 1]));
        all.extend([12345, u64::from(u32::MAX), u64::MAX - 1, u64::MAX]);
        for n in all {
            let mut ours = Vec::new();
            json::push_u64(&mut ours, n);
            assert_eq!(ours, n.to_string().into_bytes());
        }
        for n in [0, -1, -10, i64::MIN, i64::MIN + 1, i64::MAX] {
            let mut ours = Vec::new();
            json::push_i64(&mut ours, n);
            assert_eq!(ours, n.to_string().into_bytes());
        }
    }
}
