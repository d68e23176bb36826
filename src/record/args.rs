//! [`Args`]: a record's arguments by name, in declared order.
//!
//! Every record carries its arguments. A run's records all share one list of names
//! (an `Arc`), and each owns only its values, moved from the plan: no name is copied
//! and no map is built per record. In JSON it is an object, `{"x": 3, "y": "a"}`.

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde_json::{Map, Value};

/// Argument values by name, in declared order (names are unique).
#[derive(Clone, Default)]
pub struct Args {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Args {
    /// `values` named by `names` (aligned; extra values or names are ignored).
    pub fn new(names: Arc<[String]>, mut values: Vec<Value>) -> Args {
        if values.len() > names.len() {
            values.truncate(names.len());
        }
        if names.len() > values.len() {
            let names: Arc<[String]> = names[..values.len()].into();
            return Args { names, values };
        }
        Args { names, values }
    }

    /// The value of argument `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.names.iter().position(|n| n == name).map(|i| &self.values[i])
    }

    /// Set argument `name` (replacing its value, or adding it last).
    pub fn insert(&mut self, name: String, value: Value) {
        match self.names.iter().position(|n| *n == name) {
            Some(i) => self.values[i] = value,
            None => {
                let mut names = self.names.to_vec();
                names.push(name);
                self.names = names.into();
                self.values.push(value);
            }
        }
    }

    /// The names and values, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Value)> + '_ {
        self.names.iter().zip(&self.values)
    }

    /// The values, in order.
    pub fn values(&self) -> std::slice::Iter<'_, Value> {
        self.values.iter()
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is no argument.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The arguments as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// Append the compact JSON object (exactly what `serde_json::to_writer` writes) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'{');
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::text::json::push_str(out, n);
            out.push(b':');
            crate::text::json::push_value(out, v)?;
        }
        out.push(b'}');
        Ok(())
    }
}

impl From<Map<String, Value>> for Args {
    fn from(map: Map<String, Value>) -> Args {
        map.into_iter().collect()
    }
}

impl FromIterator<(String, Value)> for Args {
    /// Later values of a repeated name replace earlier ones, as in a JSON object.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Args {
        let mut names: Vec<String> = Vec::new();
        let mut values = Vec::new();
        for (n, v) in iter {
            match names.iter().position(|m| *m == n) {
                Some(i) => values[i] = v,
                None => {
                    names.push(n);
                    values.push(v);
                }
            }
        }
        Args { names: names.into(), values }
    }
}

impl PartialEq for Args {
    /// The same names with the same values, in any order (as JSON objects compare).
    fn eq(&self, other: &Args) -> bool {
        self.len() == other.len() && self.iter().all(|(n, v)| other.get(n) == Some(v))
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Args {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (n, v) in self.iter() {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for Args {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the arguments, a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Args, A::Error> {
                let mut pairs = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(pair) = a.next_entry::<String, Value>()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        d.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_read_and_write_as_a_json_object_in_declared_order() {
        let names: Arc<[String]> = vec!["b".to_string(), "a \"q\"".to_string()].into();
        let a = Args::new(names.clone(), vec![json!(1), json!(["x", 2.5])]);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(text, r#"{"b":1,"a \"q\"":["x",2.5]}"#);
        let mut direct = Vec::new();
        a.write_json(&mut direct).unwrap();
        assert_eq!(String::from_utf8(direct).unwrap(), text);
        let back: Args = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b", "a \"q\""]);
        assert_eq!(a.get("a \"q\""), Some(&json!(["x", 2.5])));
        assert_eq!(a.get("c"), None);
        // Misaligned input keeps the aligned part only.
        assert_eq!(Args::new(names.clone(), vec![json!(1)]).len(), 1);
        assert_eq!(Args::new(names, vec![json!(1), json!(2), json!(3)]).len(), 2);
        // Not an object: an error, never a guess.
        assert!(serde_json::from_str::<Args>("[1, 2]").is_err());
        // Insert replaces or appends; equality ignores order, as for JSON objects.
        let mut m: Args = [("x".to_string(), json!(1))].into_iter().collect();
        m.insert("y".into(), json!(2));
        m.insert("x".into(), json!(3));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"x":3,"y":2}"#);
        let swapped: Args = serde_json::from_str(r#"{"y":2,"x":3}"#).unwrap();
        assert_eq!(m, swapped);
        assert_eq!(Value::Object(m.to_map()), json!({"x": 3, "y": 2}));
    }
}
