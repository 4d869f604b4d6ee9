//! The `usage` check of `w2c verify`: a finished namespace's token usage
//! and cost (`metrics.json`'s `usage`, or a judge's target stream's
//! `usage.json`) recomputed from its records — each result line's `usage`,
//! the tokens of the item's calls — priced with the session's stored
//! `[prices]`. A judge namespace counts its target stream's answers too
//! (priced as the target model), as the runner does.
//!
//! The sums and prices are [`UsageTotals`]'s own, so an honest file
//! matches exactly; what differs (a total that lost a stream's tokens, a
//! cost left out) is named.

use super::{Collector, Status};
use crate::config::Price;
use crate::store::session::FoundSession;
use crate::store::{
    names, read_json, read_jsonl, MethodSettings, NamespaceDir, Usage, UsageTotals,
};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Checks the stored usage of the finished namespace `dir`, if it has one.
pub(super) fn check(c: &mut Collector, found: &FoundSession, dir: &NamespaceDir) {
    let Some((file, stored)) = stored_usage(dir) else {
        return;
    };
    match recompute(found, dir) {
        Ok(recomputed) => {
            let diffs = differences(&stored, &recomputed);
            if diffs.is_empty() {
                c.push(
                    "usage recompute",
                    Status::Ok,
                    format!("{file}: tokens and cost recompute from the records"),
                );
            } else {
                c.push(
                    "usage recompute",
                    Status::Mismatch,
                    format!("{file}: {}", diffs.join("; ")),
                );
            }
        }
        Err(e) => c.push(
            "usage recompute",
            Status::Mismatch,
            format!("{file}: cannot recompute: {e:#}"),
        ),
    }
}

/// The usage a namespace stores and the file it is in: `metrics.json`'s,
/// else `usage.json`'s; `None` when it has neither, or the file does not
/// read (the metrics and digest checks report that).
fn stored_usage(dir: &NamespaceDir) -> Option<(&'static str, UsageTotals)> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: UsageTotals,
    }
    let metrics = dir.artifacts.join(names::METRICS);
    if metrics.is_file() {
        let m: WithUsage = read_json(&metrics).ok()?;
        return Some((names::METRICS, m.usage));
    }
    let usage = dir.artifacts.join(USAGE_FILE);
    let u: UsageTotals = read_json(&usage).ok()?;
    Some((USAGE_FILE, u))
}

/// The artifact holding a judge's target stream's usage.
const USAGE_FILE: &str = "usage.json";

/// The usage the namespace's records give, priced as the runner prices it.
fn recompute(found: &FoundSession, dir: &NamespaceDir) -> Result<UsageTotals> {
    let priced = Prices::of(&found.manifest.config)?;
    let settings: MethodSettings = read_json(&dir.settings())?;
    let judge_model = settings
        .settings
        .get("judge_model")
        .and_then(|v| v.as_str());
    let own = records_usage(&dir.checkpoints.join(names::RESULTS))?;
    match judge_model {
        None => Ok(UsageTotals::sum([own], priced.target())),
        Some(model) => {
            // The judge counts the answers it judged: its target stream.
            let target_hash = settings
                .settings
                .get("target_settings_hash")
                .and_then(|v| v.as_str())
                .context("method_settings.json: a judge namespace names no target_settings_hash")?;
            let target = crate::store::session::namespaces(&found.dir)
                .into_iter()
                .find(|(_, s)| s.settings_hash == target_hash)
                .map(|(name, _)| NamespaceDir::new(&found.dir, &name))
                .with_context(|| {
                    format!("no namespace has the target stream's settings hash {target_hash}")
                })?;
            let answers = records_usage(&target.checkpoints.join(names::RESULTS))?;
            Ok(UsageTotals::sum([answers], priced.target())
                .plus(UsageTotals::sum([own], priced.of_model(model))))
        }
    }
}

/// What the stored config says of prices.
#[derive(Deserialize)]
struct Prices {
    #[serde(default)]
    prices: BTreeMap<String, Price>,
    models: Models,
}

#[derive(Deserialize)]
struct Models {
    target: String,
}

impl Prices {
    /// The prices of the manifest's stored config.
    fn of(config: &serde_json::Value) -> Result<Prices> {
        Prices::deserialize(config)
            .context("manifest.json: the stored config's `models` or `prices` do not read")
    }

    fn target(&self) -> Option<&Price> {
        self.prices.get(&self.models.target)
    }

    fn of_model(&self, model: &str) -> Option<&Price> {
        self.prices.get(model)
    }
}

/// The summed `usage` of a results file's records (the first record of a
/// key counts, as the runner loads them).
fn records_usage(path: &Path) -> Result<Usage> {
    #[derive(Deserialize)]
    struct Line {
        key: String,
        #[serde(default)]
        usage: Usage,
    }
    let mut seen = HashSet::new();
    let mut total = Usage::default();
    read_jsonl(path, |l: Line| {
        if seen.insert(l.key) {
            total = total.saturating_add(l.usage);
        }
    })?;
    Ok(total)
}

/// What differs between a stored and a recomputed usage, one entry per
/// field.
pub(super) fn differences(stored: &UsageTotals, recomputed: &UsageTotals) -> Vec<String> {
    let mut out = Vec::new();
    if stored.prompt_tokens != recomputed.prompt_tokens {
        out.push(format!(
            "prompt_tokens: stored {}, recomputed {}",
            stored.prompt_tokens, recomputed.prompt_tokens
        ));
    }
    if stored.completion_tokens != recomputed.completion_tokens {
        out.push(format!(
            "completion_tokens: stored {}, recomputed {}",
            stored.completion_tokens, recomputed.completion_tokens
        ));
    }
    let cost = |c: Option<f64>| c.map_or_else(|| "null".to_string(), |v| format!("{v:.6}"));
    let same_cost = match (stored.cost_usd, recomputed.cost_usd) {
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    };
    if !same_cost {
        out.push(format!(
            "cost_usd: stored {}, recomputed {}",
            cost(stored.cost_usd),
            cost(recomputed.cost_usd)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_usages_differ_in_nothing() {
        let price = Price {
            prompt_per_mtok: 2.5,
            completion_per_mtok: 10.0,
        };
        let u = UsageTotals::new(19062, 352, Some(&price));
        assert!(differences(&u, &u).is_empty());
        let none = UsageTotals::new(1, 2, None);
        assert!(differences(&none, &none).is_empty());
    }

    #[test]
    fn each_differing_field_is_named_with_both_values() {
        let price = Price {
            prompt_per_mtok: 10.0,
            completion_per_mtok: 30.0,
        };
        let stored = UsageTotals::new(18783, 155, None);
        let recomputed = UsageTotals::new(19062, 352, Some(&price));
        assert_eq!(
            differences(&stored, &recomputed),
            vec![
                "prompt_tokens: stored 18783, recomputed 19062",
                "completion_tokens: stored 155, recomputed 352",
                "cost_usd: stored null, recomputed 0.201180",
            ]
        );
    }

    #[test]
    fn a_key_counts_once_and_a_record_without_usage_counts_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"key":"a","usage":{"prompt_tokens":10,"completion_tokens":2}}"#,
                "\n",
                r#"{"key":"b","usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
                "\n",
                r#"{"key":"a","usage":{"prompt_tokens":99,"completion_tokens":99}}"#,
                "\n",
                r#"{"key":"c"}"#,
                "\n"
            ),
        )
        .expect("write");
        assert_eq!(
            records_usage(&path).expect("reads"),
            Usage {
                prompt_tokens: 15,
                completion_tokens: 3
            }
        );
    }
}
