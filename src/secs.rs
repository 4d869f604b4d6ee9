//! Seconds as floats → [`Duration`], checked.
//!
//! `Duration::from_secs_f64` panics on NaN, negative and huge values, and
//! those arrive from servers (`Retry-After: 1e300`), configs
//! (`timeout_secs = 1e300`) and the environment (`…_TIMEOUT=inf`). Every
//! float-seconds conversion in w2c goes through this module: values from a
//! server are clamped ([`clamped`]); values from a config or the environment
//! must lie in a stated range, else the error names the key and the range
//! ([`in_range`], [`parse_in_range`]).

use std::ops::RangeInclusive;
use std::time::Duration;

/// `secs` as a duration; `None` when it is NaN, negative, infinite or too
/// large to represent.
pub fn checked(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// `secs` clamped to `[0, max]`: a server asking for `1e300` seconds (or
/// `inf`) gets `max`; NaN and negative values give `None`.
pub fn clamped(secs: f64, max: Duration) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(checked(secs.min(max.as_secs_f64())).unwrap_or(max).min(max))
}

/// A seconds-valued setting: `value` must lie in `range` (whose bounds are
/// finite), else the error names `key` and the range.
pub fn in_range(key: &str, value: f64, range: RangeInclusive<f64>) -> Result<Duration, String> {
    let (lo, hi) = (*range.start(), *range.end());
    match checked(value) {
        Some(d) if range.contains(&value) => Ok(d),
        _ => Err(format!(
            "{key}: expected seconds in [{lo}, {hi}], got {value}"
        )),
    }
}

/// Parses a seconds-valued setting given as text (an environment variable)
/// and checks it with [`in_range`].
pub fn parse_in_range(
    key: &str,
    raw: &str,
    range: RangeInclusive<f64>,
) -> Result<Duration, String> {
    let value: f64 = raw.trim().parse().map_err(|_| {
        format!(
            "{key}: {} is not a number of seconds (expected seconds in [{}, {}])",
            crate::redact::shown(raw),
            range.start(),
            range.end()
        )
    })?;
    in_range(key, value, range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_floats_never_panic() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            1e300,
            f64::MAX,
        ] {
            let _ = checked(v);
            let _ = clamped(v, Duration::from_secs(120));
            let _ = in_range("k", v, 0.0..=10.0);
        }
        assert_eq!(checked(1e300), None);
        assert_eq!(checked(-0.5), None);
        assert_eq!(checked(1.5), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn clamping_keeps_the_cap() {
        let cap = Duration::from_secs(120);
        assert_eq!(clamped(1e300, cap), Some(cap));
        assert_eq!(clamped(f64::INFINITY, cap), Some(cap));
        assert_eq!(clamped(2.0, cap), Some(Duration::from_secs(2)));
        assert_eq!(clamped(f64::NAN, cap), None);
        assert_eq!(clamped(-3.0, cap), None);
    }

    #[test]
    fn settings_name_key_and_range() {
        let e = in_range("providers.p.timeout_secs", 1e300, 0.001..=86400.0).unwrap_err();
        assert!(e.contains("providers.p.timeout_secs"), "{e}");
        assert!(e.contains("[0.001, 86400]"), "{e}");
        let e = parse_in_range("MLFLOW_HTTP_REQUEST_TIMEOUT", "inf", 0.1..=3600.0).unwrap_err();
        assert!(
            e.contains("MLFLOW_HTTP_REQUEST_TIMEOUT") && e.contains("3600"),
            "{e}"
        );
        let e = parse_in_range("X", "soon", 0.0..=1.0).unwrap_err();
        assert!(e.contains("`soon` is not a number"), "{e}");
        // A long value (a key in the wrong variable) is not repeated whole.
        let e = parse_in_range("X", "sk-canary-0123456789", 0.0..=1.0).unwrap_err();
        assert!(!e.contains("sk-canary-0"), "{e}");
        assert!(e.contains("`sk-canar…` (20 characters)"), "{e}");
        assert_eq!(
            parse_in_range("X", " 2.5 ", 0.0..=10.0),
            Ok(Duration::from_millis(2500))
        );
    }
}
