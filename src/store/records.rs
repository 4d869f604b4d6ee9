//! The typed records of a session directory: what each file holds, for
//! every layer that writes or reads it. Changing a field here changes the
//! on-disk format: keep old files readable (`#[serde(default)]`, aliases).

use super::jsonl::load_jsonl;
use super::layout::names;
use crate::config::Price;
use crate::dataset::Example;
use crate::fingerprint::canonical_json;
use crate::labels::{Label, Prediction};
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `method_settings.json` in a namespace directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSettings {
    /// Method name, e.g. `mcq`.
    pub method: String,
    /// sha256 of the canonical settings JSON.
    pub settings_hash: String,
    /// The settings that were hashed.
    pub settings: Value,
}

impl MethodSettings {
    /// Settings of `method`, hashed over their canonical JSON.
    pub fn new(method: &str, settings: Value) -> MethodSettings {
        MethodSettings {
            method: method.to_string(),
            settings_hash: crate::fingerprint::sha256_hex(canonical_json(&settings).as_bytes()),
            settings,
        }
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// The sum of two usages; counts saturate at `u64::MAX` instead of
    /// wrapping (a server may report any number).
    pub fn saturating_add(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_add(other.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_add(other.completion_tokens),
        }
    }
}

/// Token totals over a namespace's results (saturating: a server reporting
/// `u64::MAX` tokens cannot wrap them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in USD, when `[prices]` lists the model.
    pub cost_usd: Option<f64>,
}

impl UsageTotals {
    /// Totals over usages, priced with an optional price.
    pub fn sum(usages: impl IntoIterator<Item = Usage>, price: Option<&Price>) -> Self {
        let total = usages
            .into_iter()
            .fold(Usage::default(), Usage::saturating_add);
        UsageTotals::new(total.prompt_tokens, total.completion_tokens, price)
    }

    /// Sum of two totals (token counts saturate); the cost is known only
    /// when both are.
    pub fn plus(self, other: UsageTotals) -> UsageTotals {
        UsageTotals {
            prompt_tokens: self.prompt_tokens.saturating_add(other.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_add(other.completion_tokens),
            cost_usd: self.cost_usd.zip(other.cost_usd).map(|(a, b)| a + b),
        }
    }

    /// Totals with the cost from an optional price.
    pub fn new(prompt_tokens: u64, completion_tokens: u64, price: Option<&Price>) -> Self {
        UsageTotals {
            prompt_tokens,
            completion_tokens,
            cost_usd: price.map(|p| {
                (prompt_tokens as f64 * p.prompt_per_mtok
                    + completion_tokens as f64 * p.completion_per_mtok)
                    / 1_000_000.0
            }),
        }
    }
}

/// A line of `run_log.jsonl`: one process's work on a namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLogLine {
    /// When the process started on the namespace.
    pub started_at: String,
    /// When it stopped.
    pub ended_at: String,
    /// Wall time spent, seconds.
    pub wall_secs: f64,
    /// Items already done when it started.
    pub resumed: usize,
    /// Items it finished.
    pub finished: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items abandoned at an interrupt.
    pub abandoned: usize,
    /// Whether it was interrupted.
    pub cancelled: bool,
    /// The signal that interrupted it (`SIGTERM`...), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// The shard the process ran (`I/N`), if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// Total wall time recorded in a namespace's `run_log.jsonl`, seconds.
pub fn wall_secs(ns_dir: &Path) -> f64 {
    load_jsonl::<RunLogLine>(&ns_dir.join(names::RUN_LOG))
        .map(|(lines, _)| lines.iter().fold(0.0, |acc, l| acc + l.wall_secs))
        .unwrap_or(0.0)
}

/// A line of `errors.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorLine {
    /// Checkpoint key.
    pub key: String,
    /// What went wrong (never contains secrets).
    pub error: String,
    /// Whether retrying could help.
    pub transient: bool,
    /// When it was recorded.
    pub at: String,
}

/// `artifacts_local/<ns>/metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Method name.
    pub method: String,
    /// Namespace name.
    pub namespace: String,
    /// Settings hash of the namespace.
    pub settings_hash: String,
    /// Session fingerprint.
    pub fingerprint: String,
    /// Examples scored.
    pub n_examples: usize,
    /// The metrics.
    pub metrics: Metrics,
    /// Token totals.
    pub usage: UsageTotals,
    /// Method-specific counts: reply parse statuses (`mcq`), judge statuses
    /// (`llm_judge`), argmax ties per variant (`mcq_logprob`).
    #[serde(alias = "parse_status")]
    pub counts: BTreeMap<String, usize>,
    /// Audit event counts.
    pub audit: crate::audit::AuditSummary,
    /// Sweep metrics, for `stability_*` namespaces (`metrics` then scores
    /// each example's mode prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<crate::stability::StabilityMetrics>,
    /// Per-variant metrics, for `mcq_logprob` (`metrics` is the `acc` variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<BTreeMap<String, Metrics>>,
    /// The When2Call paper's MCQ metric set, for `mcq_logprob` (from its
    /// `acc` and `acc_norm` variants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<crate::metrics::PaperMetrics>,
    /// NVIDIA's LLM-as-judge aggregate (per gold category: score and
    /// distribution of judged labels) and the paper's LLM-as-judge columns,
    /// for `llm_judge` under protocol `when2call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub official_judge: Option<crate::judge_protocol::aggregate::OfficialAggregate>,
}

/// A file recorded in `_DONE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    /// sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `_DONE.json`: written last, atomically, after everything it names is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMarker {
    /// Method name.
    pub method: String,
    /// Namespace name.
    pub namespace: String,
    /// Settings hash.
    pub settings_hash: String,
    /// Session fingerprint.
    pub fingerprint: String,
    /// Completion time.
    pub done_at: String,
    /// Items in the namespace (all with results).
    pub n_items: usize,
    /// Lines in `results.jsonl` (more than `n_items` when items were redone).
    pub n_result_lines: usize,
    /// Checkpoint files by name.
    pub checkpoint_files: BTreeMap<String, FileDigest>,
    /// Artifact files by name.
    pub artifact_files: BTreeMap<String, FileDigest>,
}

/// One line of `artifacts_local/<ns>/predictions.jsonl`: the fields every
/// method writes (what `w2c verify` recomputes the metrics from), then the
/// method's own details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    /// Example uuid.
    pub uuid: String,
    /// Gold label.
    pub gold: Label,
    /// Number of tools offered.
    pub n_tools: usize,
    /// The prediction; `null` for an example that was not scored (its
    /// details say why, under `unscored`).
    pub prediction: Option<Prediction>,
    /// Method-specific fields.
    #[serde(flatten)]
    pub details: serde_json::Map<String, Value>,
}

impl PredictionRow {
    /// A row without details.
    pub fn new(uuid: &str, gold: Label, n_tools: usize, prediction: Option<Prediction>) -> Self {
        PredictionRow {
            uuid: uuid.to_string(),
            gold,
            n_tools,
            prediction,
            details: Default::default(),
        }
    }

    /// The row of an example and its prediction, without details.
    pub fn for_example(example: &Example, prediction: Option<Prediction>) -> PredictionRow {
        PredictionRow::new(&example.uuid, example.gold, example.tools.len(), prediction)
    }

    /// The row with the fields of `details` (a JSON object) added.
    pub fn with(mut self, details: Value) -> PredictionRow {
        if let Value::Object(map) = details {
            self.details.extend(map);
        }
        self
    }

    /// The row with each long text field in `keys` cut to a preview plus its
    /// digest, naming `stored_in` as where the full text is (see
    /// [`crate::long_text`]).
    pub fn shortened(mut self, keys: &[&str], stored_in: &str) -> PredictionRow {
        let mut details = Value::Object(std::mem::take(&mut self.details));
        crate::long_text::shorten_fields(&mut details, keys, Some(stored_in));
        if let Value::Object(map) = details {
            self.details = map;
        }
        self
    }

    /// Whether the example was left unscored (it is then no prediction).
    pub fn is_unscored(&self) -> bool {
        self.details.get("unscored").is_some_and(|v| !v.is_null())
    }
}
