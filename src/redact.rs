//! Secret redaction at the boundary where server text enters w2c.
//!
//! Every secret w2c reads from the environment (provider API keys, header
//! values from `headers_env`, the MLflow password or token) is registered
//! here when it is read. Everything a server sends back — reply bodies,
//! error bodies, transport error texts — passes through [`scrub`] before it
//! reaches a record, a log line, an error message or MLflow, so a server that
//! echoes the key (`Incorrect API key provided: Bearer sk-…`) never gets it
//! stored: each occurrence becomes [`MASK`].
//!
//! Values shorter than [`MIN_SECRET_LEN`] characters are not treated as
//! secrets: masking every `1` or `on` in a model's reply would corrupt the
//! evaluation, and such values protect nothing.

use serde_json::Value;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shortest value treated as a secret.
pub const MIN_SECRET_LEN: usize = 6;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value for [`scrub`] (idempotent; short values are ignored).
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !s.iter().any(|k| k == secret) {
        s.push(secret.to_string());
        // Longest first, so a secret containing another is masked whole.
        s.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn scrub(text: &str) -> String {
    let s = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    redact_with(text, &s)
}

/// [`scrub`] for a reply body: a JSON body is scrubbed value by value (so a
/// secret made of digits cannot corrupt a number and break the JSON), any
/// other body as text. A body without a secret is returned as is.
pub fn scrub_body(body: &str) -> String {
    if !holds_secret(body) {
        return body.to_string();
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            // Numbers are left alone: digits that happen to contain a
            // secret are not an echo of it.
            scrub_value(&mut v);
            v.to_string()
        }
        Err(_) => scrub(body),
    }
}

/// Whether `text` holds a registered secret.
pub fn holds_secret(text: &str) -> bool {
    let s = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    s.iter().any(|k| text.contains(k.as_str()))
}

/// `text` with every one of `secrets` replaced by [`MASK`] (the pure core of
/// [`scrub`]; secrets shorter than [`MIN_SECRET_LEN`] are left alone).
pub fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out: Option<String> = None;
    for k in secrets {
        if k.chars().count() < MIN_SECRET_LEN {
            continue;
        }
        let cur = out.as_deref().unwrap_or(text);
        if cur.contains(k.as_str()) {
            out = Some(cur.replace(k.as_str(), MASK));
        }
    }
    out.unwrap_or_else(|| text.to_string())
}

/// Scrubs every string (keys included) inside a JSON value.
pub fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) if holds_secret(s) => *s = scrub(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            if map.keys().any(|k| holds_secret(k)) {
                let old = std::mem::take(map);
                for (k, mut val) in old {
                    scrub_value(&mut val);
                    map.insert(scrub(&k), val);
                }
            } else {
                map.values_mut().for_each(scrub_value);
            }
        }
        _ => {}
    }
}

/// A URL with any `user:password@` removed, for messages.
pub fn url_without_credentials(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => match raw.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => raw.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked_longest_first() {
        let secrets = vec!["sk-canary-0123456789".to_string(), "sk-canary".to_string()];
        assert_eq!(
            redact_with(
                "Incorrect API key provided: Bearer sk-canary-0123456789; again sk-canary-0123456789",
                &secrets
            ),
            "Incorrect API key provided: Bearer ***; again ***"
        );
        assert_eq!(redact_with("nothing here", &secrets), "nothing here");
        // Short values are not secrets.
        assert_eq!(redact_with("1 2 3", &["1".to_string()]), "1 2 3");
    }

    #[test]
    fn registered_secrets_leave_json_values() {
        register("hunter2-canary-xyz");
        let mut v = serde_json::json!({
            "error": {"message": "bad key hunter2-canary-xyz"},
            "hunter2-canary-xyz": [1, "x hunter2-canary-xyz y"],
        });
        scrub_value(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2-canary-xyz"), "{text}");
        assert!(text.contains("bad key ***"), "{text}");
        assert!(scrub("hunter2-canary-xyz!").starts_with(MASK));
    }

    #[test]
    fn a_digit_secret_does_not_break_json_numbers() {
        register("98765432");
        let body = r#"{"created":1987654321,"error":{"message":"org 98765432 unknown"}}"#;
        let out = scrub_body(body);
        let v: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["created"], 1987654321u64);
        assert_eq!(v["error"]["message"], "org *** unknown");
        assert_eq!(scrub_body("<html>98765432</html>"), "<html>***</html>");
    }
}
