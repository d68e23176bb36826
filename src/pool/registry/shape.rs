//! What a registered function's argument type looks like to serde, found by running its
//! own `Deserialize` impl against probing deserializers: no data is read and no value
//! escapes.
//!
//! Owns: [`shape_of`] (is the argument a struct, and of which fields; a tuple, and how
//! wide; `()`; a map; or a single value) and [`optional_fields`] (which fields of a
//! struct may be left out).
//! Must not: be used on a hot path; both run once, when a function is registered.
//!
//! How: serde's derived `Deserialize` for a struct calls
//! `Deserializer::deserialize_struct(name, FIELDS, visitor)`, where `FIELDS` is the list of
//! its field names as they appear in data (after `rename`), so a deserializer that stops
//! there learns them. For a tuple it calls `deserialize_tuple(len, ..)`. Which fields are
//! optional (`Option<T>`, `#[serde(default)]`) is found by feeding the struct a map of
//! every field but one, with made-up values ([`Filler`]), and seeing whether it accepts it.
//! Types serde cannot describe this way (`#[serde(flatten)]` structs use a map, a
//! hand-written impl may use anything) come out as [`Shape::Map`] or [`Shape::Value`]:
//! their arguments are not checked by name.

use std::fmt;

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// How an argument type deserializes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A struct with named fields (in data order).
    Struct(&'static [&'static str]),
    /// A tuple or a tuple struct of this many values.
    Tuple(usize),
    /// `()` or a unit struct: no arguments.
    Unit,
    /// A map, or a self-describing type (`serde_json::Value`): it takes the object whole.
    Map,
    /// Anything else: one value (a number, a string, a `Vec`, an enum, ...).
    Value,
}

/// The shape of `A`, as its `Deserialize` impl reveals it.
pub(crate) fn shape_of<A: for<'de> Deserialize<'de>>() -> Shape {
    match A::deserialize(Tracer) {
        Err(Stop(Some(shape))) => shape,
        // A custom impl that failed on its own, or (impossibly) built a value from nothing.
        _ => Shape::Value,
    }
}

/// The fields of struct `A` (named `fields`) that its `Deserialize` impl accepts
/// being left out.
pub(crate) fn optional_fields<A: for<'de> Deserialize<'de>>(
    fields: &'static [&'static str],
) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|&omit| {
            let present: Vec<&'static str> =
                fields.iter().copied().filter(|f| *f != omit).collect();
            A::deserialize(Filler { depth: 0, top: Some(&present) }).is_ok()
        })
        .collect()
}

/// The probes' error: the shape found, or `None` for any other failure.
#[derive(Debug)]
struct Stop(Option<Shape>);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "probe stopped: {:?}", self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop(None)
    }
}

/// Stops at the first thing the impl asks for, and says what it was.
struct Tracer;

macro_rules! found {
    ($shape:expr => $($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop(Some($shape)))
        })*
    };
}

impl<'de> Deserializer<'de> for Tracer {
    type Error = Stop;

    found!(Shape::Map => deserialize_any, deserialize_map);
    found!(Shape::Unit => deserialize_unit);
    found!(Shape::Value => deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32,
        deserialize_i64, deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32,
        deserialize_u64, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_str, deserialize_string, deserialize_bytes, deserialize_byte_buf,
        deserialize_option, deserialize_seq, deserialize_identifier, deserialize_ignored_any);

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(Shape::Unit)))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // Look through a newtype: `struct Args(Point)` binds like `Point`.
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, Stop> {
        Err(Stop(Some(Shape::Tuple(len))))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(Shape::Tuple(len))))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(Shape::Struct(fields))))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(Shape::Value)))
    }
}

/// Hands any type a made-up value: `1` for numbers (so `NonZero*` accept it), `""`,
/// `false`, empty sequences and maps, `None`, an enum's first variant, and for a struct a
/// map of its fields (at the top, only the fields in `top`). Deep nesting gives up.
struct Filler<'a> {
    depth: u32,
    top: Option<&'a [&'static str]>,
}

impl Filler<'_> {
    fn inner(&self) -> Result<Filler<'static>, Stop> {
        if self.depth > 16 {
            Err(Stop(None))
        } else {
            Ok(Filler { depth: self.depth + 1, top: None })
        }
    }
}

macro_rules! fill {
    ($visit:ident($value:expr) => $($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            visitor.$visit($value)
        })*
    };
}

impl<'de> Deserializer<'de> for Filler<'_> {
    type Error = Stop;

    fill!(visit_bool(false) => deserialize_bool);
    fill!(visit_u64(1) => deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64,
        deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64,
        deserialize_u128);
    fill!(visit_f64(1.0) => deserialize_f32, deserialize_f64);
    fill!(visit_char('a') => deserialize_char);
    fill!(visit_str("") => deserialize_str, deserialize_string, deserialize_identifier);
    fill!(visit_bytes(&[]) => deserialize_bytes, deserialize_byte_buf);

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self.inner()?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Values { depth: self.depth, left: 0 })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Values { depth: self.inner()?.depth, left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_map(Fields { depth: self.depth, keys: &[], at: 0 })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let depth = self.inner()?.depth;
        match self.top {
            Some(keys) => visitor.visit_map(Fields { depth, keys, at: 0 }),
            None => visitor.visit_map(Fields { depth, keys: fields, at: 0 }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let first = variants.first().ok_or(Stop(None))?;
        visitor.visit_enum(Variant { depth: self.inner()?.depth, name: first })
    }
}

/// `left` made-up values.
struct Values {
    depth: u32,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Values {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Filler { depth: self.depth, top: None }).map(Some)
    }
}

/// A map of `keys`, each with a made-up value.
struct Fields<'a> {
    depth: u32,
    keys: &'a [&'static str],
    at: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(key) = self.keys.get(self.at) else { return Ok(None) };
        self.at += 1;
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(Filler { depth: self.depth, top: None })
    }
}

/// An enum's first variant, with made-up contents.
struct Variant {
    depth: u32,
    name: &'static str,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Stop;
    type Variant = Variant;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Variant), Stop> {
        let name = BorrowedStrDeserializer::<Stop>::new(self.name);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(Filler { depth: self.depth, top: None })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Values { depth: self.depth, left: len })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(Fields { depth: self.depth, keys: fields, at: 0 })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::num::NonZeroU32;

    use serde::Deserialize;

    use super::*;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Point {
        x: f64,
        #[serde(rename = "why")]
        y: f64,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Mode {
        Fast,
        Slow { factor: u32 },
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Settings {
        name: String,
        count: NonZeroU32,
        label: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        mode: Mode,
        at: Point,
        extra: HashMap<String, serde_json::Value>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Wrapped(Point);

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Pair(i64, i64);

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Flat {
        a: u8,
        #[serde(flatten)]
        rest: HashMap<String, u8>,
    }

    #[test]
    fn shapes() {
        assert_eq!(shape_of::<Point>(), Shape::Struct(&["x", "why"]));
        assert_eq!(shape_of::<Wrapped>(), Shape::Struct(&["x", "why"]));
        assert_eq!(shape_of::<(f64, f64)>(), Shape::Tuple(2));
        assert_eq!(shape_of::<Pair>(), Shape::Tuple(2));
        assert_eq!(shape_of::<[u8; 3]>(), Shape::Tuple(3));
        assert_eq!(shape_of::<()>(), Shape::Unit);
        assert_eq!(shape_of::<u64>(), Shape::Value);
        assert_eq!(shape_of::<String>(), Shape::Value);
        assert_eq!(shape_of::<Vec<f64>>(), Shape::Value);
        assert_eq!(shape_of::<Option<Point>>(), Shape::Value);
        assert_eq!(shape_of::<Mode>(), Shape::Value);
        assert_eq!(shape_of::<HashMap<String, i64>>(), Shape::Map);
        assert_eq!(shape_of::<serde_json::Value>(), Shape::Map);
        assert_eq!(shape_of::<Flat>(), Shape::Map);
    }

    #[test]
    fn options_and_defaults_are_optional() {
        let Shape::Struct(fields) = shape_of::<Settings>() else { panic!() };
        assert_eq!(optional_fields::<Settings>(fields), ["label", "tags"]);
        assert!(optional_fields::<Point>(&["x", "why"]).is_empty());
    }
}
