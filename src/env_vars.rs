//! Environment variables: how w2c reads them and which ones it reads.
//!
//! A variable holding bytes that are not UTF-8 is an error naming it, never
//! taken as unset (an MLflow URI that silently sends a run offline, a key
//! reported as "not set" when it is set). A secret (an API key, a header
//! value, a token) must also be sendable in an HTTP header: a newline or
//! another control character is an error naming the variable before any
//! request, not a failure of every request.

use anyhow::{bail, Result};
use std::env::VarError;

/// Variables w2c reads as text (paths such as `W2C_RUNS_DIR` are read as
/// they are and are not listed). [`check_unicode`] checks them at the start
/// of every command that may read them; a test keeps the list complete.
pub const READ_AS_TEXT: &[&str] = &[
    "W2C_RUN_KEY",
    "W2C_PROGRESS",
    "W2C_PROGRESS_INTERVAL_SECS",
    "W2C_TRACKING_PAUSE_SECS",
    "W2C_TRACKING_PROGRESS_SECS",
    "W2C_TRACKING_WAIT_SECS",
    "W2C_TRACKING_TRACE_WAIT_SECS",
    "W2C_STOP_GRACE_SECS",
    "W2C_STOP_TIMEOUT_SECS",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_ENABLE_TRACKING",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
];

/// The value of `name`: `None` when unset, an error naming it when its
/// value is not UTF-8.
pub fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => bail!(
            "environment variable `{name}` is set but its value is not valid UTF-8; set it to text or unset it"
        ),
    }
}

/// Checks that each of `names` that is set holds UTF-8 text.
pub fn check_unicode(names: &[&str]) -> Result<()> {
    for name in names {
        var(name)?;
    }
    Ok(())
}

/// A secret read from `name`, which `from` (a config key or a flag) names:
/// it must be set, non-empty, UTF-8, and fit in an HTTP header after
/// `prefix` (e.g. `Bearer `). Errors name the variable and `from`, never
/// the value.
pub fn secret(name: &str, from: &str, prefix: &str) -> Result<String> {
    let value = match var(name) {
        Ok(Some(v)) if !v.is_empty() => v,
        Ok(_) => bail!("environment variable `{name}` (from {from}) is not set"),
        Err(e) => bail!("{e:#} (from {from})"),
    };
    check_header_value(name, from, prefix, &value)?;
    Ok(value)
}

/// Checks that `prefix + value` is a valid HTTP header value; the error
/// names the variable, `from`, and the position of the first character that
/// is not allowed (never the value).
pub fn check_header_value(name: &str, from: &str, prefix: &str, value: &str) -> Result<()> {
    if reqwest::header::HeaderValue::from_str(&format!("{prefix}{value}")).is_ok() {
        return Ok(());
    }
    let (at, what) = value
        .chars()
        .enumerate()
        .find_map(|(i, c)| {
            let what = match c {
                '\n' => "a newline",
                '\r' => "a carriage return",
                c if c.is_control() => "a control character",
                _ => return None,
            };
            Some((i + 1, what))
        })
        .unwrap_or((0, "a character HTTP headers cannot carry"));
    bail!(
        "environment variable `{name}` (from {from}) holds {what} at character {at}, which an HTTP header cannot carry; remove it (a key read from a file often keeps its final newline)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_with_newlines_or_controls_are_named_without_the_value() {
        assert!(check_header_value("K", "`api_key_env`", "Bearer ", "sk-ok-123").is_ok());
        for (value, what, at) in [
            ("sk-secret-123\n", "a newline", 14),
            ("sk-se\rcret", "a carriage return", 6),
            ("sk-\u{7}x", "a control character", 4),
        ] {
            let err = check_header_value("MY_KEY", "`providers.p.api_key_env`", "Bearer ", value)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`MY_KEY`")
                    && err.contains("providers.p.api_key_env")
                    && err.contains(what)
                    && err.contains(&format!("character {at}")),
                "{err}"
            );
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn every_variable_read_as_text_is_listed() {
        // The string literals the sources read through the environment.
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let pattern = regex::Regex::new(r#"env\(\s*"([A-Z][A-Z0-9_]+)"\s*\)|env::var\(\s*"([A-Z][A-Z0-9_]+)"|env_vars::var\(\s*"([A-Z][A-Z0-9_]+)"|(?:const [A-Z_]+: &str = )"((?:MLFLOW|W2C)_[A-Z0-9_]+)""#)
            .unwrap();
        let mut missing = Vec::new();
        for entry in walkdir::WalkDir::new(&src).into_iter().flatten() {
            if entry.path().extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for cap in pattern.captures_iter(&text) {
                let name = (1..=4).find_map(|i| cap.get(i)).unwrap().as_str();
                // `USER` only names the MLflow run's owner.
                if name != "USER" && !READ_AS_TEXT.contains(&name) {
                    missing.push(format!("{}: {name}", entry.path().display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "read but not in READ_AS_TEXT: {missing:?}"
        );
    }
}
