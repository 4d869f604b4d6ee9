//! Canonical JSON and fingerprints.
//!
//! A session's fingerprint is the sha256 of the canonical JSON (keys sorted at
//! every level, no whitespace) of everything that changes results at the
//! session level: dataset content and selection, target model, seed. Method
//! settings are hashed separately into method namespaces, so enabling one more
//! method never creates a new session. Operational settings (concurrency,
//! retries, timeouts, URLs, RUN_KEY) are never part of either.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Number of hex characters of the fingerprint used as the session dir name.
pub const SHORT_LEN: usize = 16;

/// Serialises a JSON value canonically: object keys sorted by code point at
/// every level, no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out, None);
    out
}

/// The Python suite's canonical JSON: `json.dumps(obj, ensure_ascii=False,
/// sort_keys=True, separators=(",", ":"))`, floats in Python `repr` form.
/// Its session fingerprint is the first 16 hex of this string's sha256.
pub fn python_canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out, Some(python_float_repr));
    out
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation
/// for decimal exponents in [-4, 16), else `d.ddde±XX`.
pub fn python_float_repr(v: f64) -> String {
    if let Some(text) = crate::floats::spelled(v) {
        return text.into();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// Writes `value` with sorted keys and no whitespace; `float` spells
/// non-integer numbers when given (else serde_json's form).
fn write_canonical(value: &Value, out: &mut String, float: Option<fn(f64) -> String>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out, float);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out, float);
            }
            out.push(']');
        }
        Value::Number(n) => match (float, n.as_f64()) {
            (Some(spell), Some(v)) if n.is_f64() => out.push_str(&spell(v)),
            _ => out.push_str(&n.to_string()),
        },
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The full (64 hex) fingerprint of a payload.
pub fn fingerprint(payload: &Value) -> String {
    sha256_hex(canonical_json(payload).as_bytes())
}

/// The short form used for directory names.
pub fn short(fingerprint: &str) -> &str {
    prefix(fingerprint, SHORT_LEN)
}

/// At most the first `n` bytes of `s`, cut back to a character boundary
/// (never panics on short or non-ASCII input read from disk).
pub fn prefix(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Describes, one line per leaf, how two payloads differ (`path: old -> new`).
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: {} -> (absent)", preview(x))),
                    (None, Some(y)) => out.push(format!("{p}: (absent) -> {}", preview(y))),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!(
            "{}: {} -> {}",
            if path.is_empty() { "(root)" } else { path },
            preview(a),
            preview(b)
        )),
        _ => {}
    }
}

fn preview(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr_matches_cpython() {
        // Expected strings are what CPython 3.11 prints for repr(x).
        for (v, want) in [
            (0.0, "0.0"),
            (10.0, "10.0"),
            (0.3, "0.3"),
            (-1.3470558769768104e-05, "-1.3470558769768104e-05"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (123456789012345.6, "123456789012345.6"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (2.5e-300, "2.5e-300"),
            (0.6666666666666666, "0.6666666666666666"),
        ] {
            assert_eq!(python_float_repr(v), want, "{v}");
        }
        assert_eq!(
            python_canonical_json(&serde_json::json!({"b": [0.0, 1], "a": "é/x", "c": null})),
            r#"{"a":"é/x","b":[0.0,1],"c":null}"#
        );
    }
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_recursively_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": "é/\n"}], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[1,{"y":"é/\n","z":0}]},"b":1}"#
        );
    }

    #[test]
    fn fingerprint_ignores_key_order_and_detects_value_changes() {
        let a = json!({"x": 1, "y": [1, 2]});
        let b = json!({"y": [1, 2], "x": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"x": 2, "y": [1, 2]})));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"x": 1, "y": [2, 1]})));
        assert_eq!(fingerprint(&a).len(), 64);
        assert_eq!(short(&fingerprint(&a)).len(), SHORT_LEN);
    }

    #[test]
    fn prefix_never_splits_characters() {
        assert_eq!(prefix("abcdef", 3), "abc");
        assert_eq!(prefix("ab", 12), "ab");
        assert_eq!(prefix("aé", 2), "a");
    }

    #[test]
    fn known_vector() {
        // sha256 of the 2 bytes `{}`.
        assert_eq!(
            fingerprint(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn diff_names_changed_paths() {
        let a = json!({"dataset": {"sha256": "aa", "n": 5}, "model": "x"});
        let b = json!({"dataset": {"sha256": "bb", "n": 5}, "seed": 1, "model": "x"});
        assert_eq!(
            diff(&a, &b),
            vec![
                "dataset.sha256: \"aa\" -> \"bb\"".to_string(),
                "seed: (absent) -> 1".to_string()
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
