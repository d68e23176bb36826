//! [`Key`]: a submission's content key, kept inline.
//!
//! Every submission and every record carries one, so the planner, the record path and
//! the resume index make and drop millions of them: the planner's keys (32 lowercase hex
//! digits of an XXH3-128) live in the value itself, without an allocation. Any other
//! text (a hand-written journal, a key from a test) is kept as it is, on the heap: a key
//! is never reinterpreted, only compared as text.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A content key. Behaves as its text: compares, hashes and prints as the `str`.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    /// 32 lowercase hex digits (ASCII, so always valid UTF-8).
    Hex([u8; 32]),
    /// Any other text.
    Other(Box<str>),
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Key {
    /// The key of a 128-bit hash: its 32 lowercase hex digits, big-endian.
    pub fn from_hash(hash: u128) -> Key {
        let mut out = [0u8; 32];
        for (i, b) in hash.to_be_bytes().into_iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        Key(Repr::Hex(out))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ASCII hex digits are ever stored here (`from_hash`, `From<&str>`).
            Repr::Hex(b) => std::str::from_utf8(b).unwrap_or_default(),
            Repr::Other(s) => s,
        }
    }
}

fn is_hex_key(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        if is_hex_key(s) {
            let mut out = [0u8; 32];
            out.copy_from_slice(s.as_bytes());
            Key(Repr::Hex(out))
        } else {
            Key(Repr::Other(s.into()))
        }
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        if is_hex_key(&s) { Key::from(s.as_str()) } else { Key(Repr::Other(s.into_boxed_str())) }
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.as_str().to_string()
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Key {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Key {
    /// As the text hashes, so that a map of keys can be searched with a `&str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Default for Key {
    fn default() -> Key {
        Key(Repr::Other(Box::from("")))
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content key (a string)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key::from(s))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Key, E> {
                Ok(Key::from(s))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_its_text_whatever_it_holds() {
        let h = Key::from_hash(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(h.as_str(), "0123456789abcdef0011223344556677");
        assert!(matches!(h.0, Repr::Hex(_)));
        // Hex text parses back inline; anything else is kept verbatim.
        let back: Key = serde_json::from_str("\"0123456789abcdef0011223344556677\"").unwrap();
        assert!(matches!(back.0, Repr::Hex(_)));
        assert_eq!(back, h);
        for other in ["", "k1", "0123456789ABCDEF0011223344556677", "é", "0123456789abcdef00112233445566778"] {
            let k: Key = serde_json::from_str(&serde_json::to_string(other).unwrap()).unwrap();
            assert!(matches!(k.0, Repr::Other(_)), "{other:?}");
            assert_eq!(k, other);
            assert_eq!(serde_json::to_string(&k).unwrap(), serde_json::to_string(other).unwrap());
        }
        // Maps of keys answer lookups by text, whichever form the key took.
        let mut m = std::collections::HashMap::new();
        m.insert(h.clone(), 1);
        m.insert(Key::from("k1"), 2);
        assert_eq!(m.get("0123456789abcdef0011223344556677"), Some(&1));
        assert_eq!(m.get("k1"), Some(&2));
        assert!(Key::from("a") < Key::from_hash(u128::MAX));
    }
}
