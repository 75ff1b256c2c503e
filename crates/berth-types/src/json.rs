//! Strict JSON: a document whose objects repeat a key is refused.
//!
//! `serde_json` (like most parsers) keeps the last of duplicate keys; others keep the first.
//! A document that two parsers read differently is an attack on whoever checks it with one
//! and acts on it with the other (a policy, a manifest), so Berth refuses such documents at
//! the edge, naming the key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fails, naming the key and where it is, if any object in `text` repeats a key (or if
/// `text` is not JSON at all).
pub fn reject_duplicate_keys(text: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(text);
    Strict { path: String::new() }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Walks one value, checking every object's keys.
struct Strict {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq.next_element_seed(Strict { path: format!("{}[{i}]", self.path) })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                return Err(de::Error::custom(format!("duplicate key {path:?}: each key may appear once")));
            }
            map.next_value_seed(Strict { path })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reject_duplicate_keys as check;

    #[test]
    fn duplicates_are_refused_by_path() {
        assert!(check(br#"{"a": 1, "b": [{"c": 1, "d": 2}], "e": {"f": null}}"#).is_ok());
        let e = check(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.starts_with("duplicate key \"a\""), "{e}");
        let e = check(br#"{"x": [{}, {"Effect": "Allow", "Effect": "Deny"}]}"#).unwrap_err();
        assert!(e.starts_with("duplicate key \"x[1].Effect\""), "{e}");
        assert!(check(b"{\"a\": ").is_err());
        assert!(check(b"{} trailing").is_err());
        // Deep nesting hits serde_json's recursion limit, not the stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check(deep.as_bytes()).is_err());
    }
}
