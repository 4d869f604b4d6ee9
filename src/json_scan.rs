//! JSON values read in place: a [`Scan`] is checked as strictly as a
//! `serde_json::Value` would be (escapes decode, numbers are in range,
//! nesting is bounded) without building it, and keeps only what a reader
//! of a large file needs: a string's text, an unsigned integer, or that it
//! was `null`. Readers of big JSONL files (the dataset, `predictions.jsonl`)
//! read the few fields they use as a [`Scan`] and skip the others as one,
//! so they accept exactly the lines a `Value` parse accepts (unlike
//! `serde::de::IgnoredAny`, which lets lone surrogates and out-of-range
//! numbers through).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::marker::PhantomData;

/// One JSON value, checked and mostly dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A string, borrowed from the input when it has no escapes.
    Str(Cow<'a, str>),
    /// A non-negative integer (what `Value::as_u64` gives).
    U64(u64),
    /// `null`.
    Null,
    /// Anything else (booleans, other numbers, arrays, objects).
    Other,
}

impl<'a> Scan<'a> {
    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scan::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string, owned or borrowed as it was read, if the value is one.
    pub fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scan::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if the value is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scan::U64(n) => Some(*n),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scan<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScanVisitor(PhantomData))
    }
}

struct ScanVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScanVisitor<'a> {
    type Value = Scan<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scan<'a>, E> {
        Ok(Scan::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scan<'a>, E> {
        Ok(Scan::Other)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scan<'a>, E> {
        Ok(Scan::U64(n))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scan<'a>, E> {
        Ok(Scan::Other)
    }
    fn visit_unit<E>(self) -> Result<Scan<'a>, E> {
        Ok(Scan::Null)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scan<'a>, E> {
        Ok(Scan::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scan<'a>, E> {
        Ok(Scan::Str(Cow::Owned(s.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scan<'a>, A::Error> {
        while seq.next_element::<Scan<'de>>()?.is_some() {}
        Ok(Scan::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan<'a>, A::Error> {
        while map.next_key::<Scan<'de>>()?.is_some() {
            map.next_value::<Scan<'de>>()?;
        }
        Ok(Scan::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn accepts_what_value_accepts() {
        for line in [
            r#"{"a": "x\"y", "b": [1, -2, 3.5, {"c": null}], "d": true}"#,
            r#"[1, "two"]"#,
            r#""\ud83d\ude00""#,
        ] {
            assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
            assert!(serde_json::from_str::<Scan>(line).is_ok(), "{line}");
        }
        // What `IgnoredAny` lets through but a `Value` refuses.
        for line in [r#"{"a": "\ud800"}"#, r#"{"a": 1e999}"#] {
            assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
            assert!(serde_json::from_str::<Scan>(line).is_err(), "{line}");
        }
    }

    #[test]
    fn keeps_strings_and_unsigned_integers() {
        let s: Scan = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(&s, Scan::Str(Cow::Borrowed("plain"))));
        let s: Scan = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(s.as_str(), Some("a\nb"));
        assert_eq!(serde_json::from_str::<Scan>("7").unwrap().as_u64(), Some(7));
        assert_eq!(serde_json::from_str::<Scan>("-7").unwrap(), Scan::Other);
        assert_eq!(serde_json::from_str::<Scan>("7.0").unwrap(), Scan::Other);
        assert_eq!(serde_json::from_str::<Scan>("null").unwrap(), Scan::Null);
    }
}
