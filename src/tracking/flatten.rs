//! Pure mapping from w2c's JSON records to MLflow params, metrics and batches:
//! key sanitising, flattening, the size limits of `runs/log-batch`.

use super::rest::{KeyValue, MetricPoint};
use serde_json::Value;

/// Most metrics in one `runs/log-batch` call.
pub const MAX_METRICS: usize = 1000;
/// Most params in one call.
pub const MAX_PARAMS: usize = 100;
/// Most tags in one call.
pub const MAX_TAGS: usize = 100;
/// Most metrics + params + tags in one call.
pub const MAX_ITEMS: usize = 1000;
/// Longest param value the server stores untruncated (characters).
pub const MAX_PARAM_CHARS: usize = 6000;
/// Longest tag value the server stores untruncated (characters).
pub const MAX_TAG_CHARS: usize = 8000;
/// Longest key.
pub const MAX_KEY_CHARS: usize = 250;

/// A key MLflow accepts: alphanumerics and `_ - . space : /`, no `..`, at
/// most 250 characters (long keys keep a hash suffix so they stay distinct).
pub fn sanitize_key(raw: &str) -> String {
    let mut key: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-. :/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    while key.contains("..") {
        key = key.replace("..", "._");
    }
    if key.chars().count() > MAX_KEY_CHARS {
        let hash = crate::fingerprint::sha256_hex(raw.as_bytes());
        let head: String = key.chars().take(MAX_KEY_CHARS - 13).collect();
        key = format!("{head}~{}", &hash[..12]);
    }
    key
}

/// Flattens a JSON value into `prefix.a.b = value` params: scalars as text,
/// `null` as `null`, arrays as compact JSON.
pub fn flatten_params(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_params(&key, v, out);
            }
        }
        Value::String(s) => out.push((sanitize_key(prefix), s.clone())),
        Value::Null => out.push((sanitize_key(prefix), "null".into())),
        other => out.push((sanitize_key(prefix), other.to_string())),
    }
}

/// Numeric leaves of a JSON object as `a.b` → value; arrays, strings and
/// nulls are skipped (strings `"NaN"`/`"Infinity"` count as numbers).
pub fn numeric_leaves(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                numeric_leaves(&key, v, out);
            }
        }
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                out.push((sanitize_key(prefix), v));
            }
        }
        Value::Bool(b) => out.push((sanitize_key(prefix), if *b { 1.0 } else { 0.0 })),
        Value::String(s) => {
            if let Some(v) = crate::floats::parse_spelled(s) {
                out.push((sanitize_key(prefix), v));
            }
        }
        _ => {}
    }
}

/// The final metrics of a namespace from its `metrics.json`: the `metrics`
/// object's leaves keep their names (`accuracy`, `per_class.tool_call.f1`,
/// ...), the other numeric fields keep their section as prefix
/// (`usage.prompt_tokens`, `counts.parsed`, `stability.*`, `variants.*`).
pub fn final_metrics(metrics_file: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Value::Object(map) = metrics_file {
        for (k, v) in map {
            if k == "metrics" {
                numeric_leaves("", v, &mut out);
            } else {
                numeric_leaves(k, v, &mut out);
            }
        }
    }
    out
}

/// The final metrics with every count the method knows and did not report
/// added as 0 (`counts.*`, `audit.by_type.*`, `audit.by_severity.*`): a
/// count of zero is a value, not a missing metric.
pub fn with_zero_counts(method: &str, mut metrics: Vec<(String, f64)>) -> Vec<(String, f64)> {
    let mut keys: Vec<String> = crate::methods::vocabulary::counts(method)
        .into_iter()
        .map(|c| format!("counts.{c}"))
        .collect();
    keys.extend(
        crate::methods::vocabulary::audit_types(method)
            .into_iter()
            .map(|t| format!("audit.by_type.{t}")),
    );
    keys.extend(
        crate::methods::vocabulary::SEVERITIES
            .iter()
            .map(|s| format!("audit.by_severity.{s}")),
    );
    keys.push("audit.n_events".into());
    for key in keys {
        let key = sanitize_key(&key);
        if !metrics.iter().any(|(k, _)| *k == key) {
            metrics.push((key, 0.0));
        }
    }
    metrics
}

/// The headline metrics of a namespace, as the parent run shows them:
/// (name on the parent, without the namespace prefix; key on the child).
/// A judge under protocol `when2call` heads with the paper's LLM-as-judge
/// columns, NVIDIA's aggregate (`judge_table_acc`, `_f1`, `_tool_hall`, over
/// `judge_table_n` rows, `judge_table_left_out` left out); every method has
/// the multiple-choice table's definitions (`macro_f1_official`,
/// `tool_hallucination_rate_official`) and w2c's own metrics.
pub fn headline(child_metrics: &[(String, f64)]) -> Vec<(String, f64)> {
    const KEYS: [(&str, &str); 19] = [
        ("official_judge.paper.acc", "judge_table_acc"),
        ("official_judge.paper.f1", "judge_table_f1"),
        ("official_judge.paper.tool_hall", "judge_table_tool_hall"),
        ("official_judge.n_aggregated", "judge_table_n"),
        ("macro_f1_official", "macro_f1_official"),
        (
            "tool_hallucination_rate_official",
            "tool_hallucination_rate_official",
        ),
        ("accuracy", "accuracy"),
        ("macro_f1_all", "macro_f1_all"),
        ("macro_f1_present", "macro_f1_present"),
        ("tool_hallucination_rate", "tool_hallucination_rate"),
        ("answer_hallucination_rate", "answer_hallucination_rate"),
        (
            "parameter_hallucination_rate",
            "parameter_hallucination_rate",
        ),
        ("n_invalid", "n_invalid"),
        ("usage.cost_usd", "cost_usd"),
        ("paper.acc", "acc"),
        ("paper.acc_norm", "acc_norm"),
        ("stability.stability_at_k", "stability_at_k"),
        ("stability.mean_consistency_at_k", "mean_consistency_at_k"),
        (
            "stability.mean_accuracy_across_runs",
            "mean_accuracy_across_runs",
        ),
    ];
    let mut out: Vec<(String, f64)> = KEYS
        .iter()
        .filter_map(|(child, name)| {
            child_metrics
                .iter()
                .find(|(k, _)| k == child)
                .map(|(_, v)| (name.to_string(), *v))
        })
        .collect();
    if out.iter().any(|(k, _)| k == "judge_table_n") {
        let left_out: f64 = child_metrics
            .iter()
            .filter(|(k, _)| k.starts_with("official_judge.left_out."))
            .map(|(_, v)| v)
            .sum();
        out.push(("judge_table_left_out".into(), left_out));
    }
    out
}

/// One `runs/log-batch` payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Metrics.
    pub metrics: Vec<MetricPoint>,
    /// Params.
    pub params: Vec<KeyValue>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

impl Batch {
    fn len(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// Packs metrics, params and tags into as few batches as the server limits
/// allow (1000 items, of which at most 100 params and 100 tags).
pub fn batches(
    metrics: Vec<MetricPoint>,
    params: Vec<KeyValue>,
    tags: Vec<KeyValue>,
) -> Vec<Batch> {
    let (mut metrics, mut params, mut tags) =
        (metrics.into_iter(), params.into_iter(), tags.into_iter());
    let mut out = Vec::new();
    loop {
        let mut b = Batch {
            params: params.by_ref().take(MAX_PARAMS).collect(),
            tags: tags.by_ref().take(MAX_TAGS).collect(),
            metrics: Vec::new(),
        };
        let room = MAX_ITEMS - b.params.len() - b.tags.len();
        b.metrics = metrics.by_ref().take(room.min(MAX_METRICS)).collect();
        if b.len() == 0 {
            return out;
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sanitised_and_bounded() {
        assert_eq!(sanitize_key("prices.gpt-4o@2024"), "prices.gpt-4o_2024");
        assert_eq!(sanitize_key("a..b...c"), "a._b._.c");
        let long = "x".repeat(400);
        let k = sanitize_key(&long);
        assert_eq!(k.chars().count(), MAX_KEY_CHARS);
        assert_ne!(k, sanitize_key(&"x".repeat(401)));
    }

    #[test]
    fn params_flatten_scalars_and_keep_arrays_whole() {
        let mut out = Vec::new();
        flatten_params(
            "config",
            &json!({"run": {"seed": 7, "key": null}, "methods": {"enabled": ["mcq", "llm_judge"]}, "on": true}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ("config.run.seed".into(), "7".into()),
                ("config.run.key".into(), "null".into()),
                (
                    "config.methods.enabled".into(),
                    r#"["mcq","llm_judge"]"#.into()
                ),
                ("config.on".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn final_metrics_keep_metric_names_and_prefix_other_sections() {
        let file = json!({
            "method": "mcq", "n_examples": 4,
            "metrics": {"accuracy": 0.5, "macro_f1_present": null,
                        "per_class": {"direct": {"f1": 1.0}}, "confusion": {"direct": {"direct": 2}}},
            "usage": {"prompt_tokens": 10, "cost_usd": null},
            "counts": {"parsed": 3},
            "stability": {"mean": "NaN", "per_example": [1, 2]},
        });
        let m = final_metrics(&file);
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "n_examples",
                "accuracy",
                "per_class.direct.f1",
                "confusion.direct.direct",
                "usage.prompt_tokens",
                "counts.parsed",
                "stability.mean"
            ]
        );
        assert!(m[6].1.is_nan());
    }

    #[test]
    fn a_judges_parent_heads_with_the_papers_judge_columns() {
        let file = json!({
            "method": "llm_judge",
            "metrics": {"accuracy": 0.5, "macro_f1_official": 0.4},
            "official_judge": {
                "paper": {"f1": 0.7, "acc": 0.6, "tool_hall": 0.2},
                "n_aggregated": 18,
                "left_out": {"direct_gold": 4, "script_raises": 2},
            },
        });
        let h = headline(&final_metrics(&file));
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("judge_table_f1"), Some(0.7));
        assert_eq!(get("judge_table_acc"), Some(0.6));
        assert_eq!(get("judge_table_tool_hall"), Some(0.2));
        assert_eq!(get("judge_table_n"), Some(18.0));
        assert_eq!(get("judge_table_left_out"), Some(6.0));
        assert_eq!(get("macro_f1_official"), Some(0.4));
        assert_eq!(get("accuracy"), Some(0.5));
        // No aggregate, no judge-table metric.
        let mcq = headline(&final_metrics(&json!({"metrics": {"accuracy": 0.5}})));
        assert!(mcq.iter().all(|(k, _)| !k.starts_with("judge_table")));
    }

    fn point(i: usize) -> MetricPoint {
        MetricPoint {
            key: format!("m{i}"),
            value: i as f64,
            timestamp: 1,
            ..Default::default()
        }
    }

    #[test]
    fn batches_respect_every_limit() {
        let metrics: Vec<_> = (0..2500).map(point).collect();
        let params: Vec<_> = (0..250)
            .map(|i| KeyValue::new(format!("p{i}"), "v"))
            .collect();
        let tags: Vec<_> = (0..120)
            .map(|i| KeyValue::new(format!("t{i}"), "v"))
            .collect();
        let out = batches(metrics, params, tags);
        for b in &out {
            assert!(b.metrics.len() <= MAX_METRICS);
            assert!(b.params.len() <= MAX_PARAMS);
            assert!(b.tags.len() <= MAX_TAGS);
            assert!(b.len() <= MAX_ITEMS);
        }
        assert_eq!(out.iter().map(|b| b.metrics.len()).sum::<usize>(), 2500);
        assert_eq!(out.iter().map(|b| b.params.len()).sum::<usize>(), 250);
        assert_eq!(out.iter().map(|b| b.tags.len()).sum::<usize>(), 120);
        // 250 params need 3 calls, and the metrics fill them: 2870 items / 1000.
        assert_eq!(out.len(), 3);
        assert!(batches(vec![], vec![], vec![]).is_empty());
    }
}
