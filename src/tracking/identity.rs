//! What identifies a session's runs in MLflow and what people read there:
//! the identity tags of the parent and child runs, the parent's config tags'
//! source, and the values of each child's final metrics and of the parent's
//! headline metrics. The mirror writes exactly these and `verify` checks
//! exactly these, so the two cannot drift apart. Pure: no I/O.

use super::flatten;
use super::mirror::{
    TAG_FINGERPRINT, TAG_KIND, TAG_METHOD, TAG_NAMESPACE, TAG_PARENT, TAG_RUN_KEY,
};
use super::rest::KeyValue;
use crate::store::records::MethodSettings;
use crate::store::session::Manifest;
use serde_json::Value;

/// Tag naming the target model (parent and child runs).
pub const TAG_TARGET_MODEL: &str = "w2c.target_model";
/// Tag naming the judge model (parent: the config's; child: the method's).
pub const TAG_JUDGE_MODEL: &str = "w2c.judge_model";
/// Tag holding a child's settings hash.
pub const TAG_SETTINGS_HASH: &str = "w2c.settings_hash";
/// MLflow's run-name tag.
pub const TAG_RUN_NAME: &str = "mlflow.runName";

/// The target model of a session's config (empty when absent).
pub fn target_model(manifest: &Manifest) -> String {
    manifest
        .config
        .pointer("/models/target")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The parent run's name: the target model, the run key and the
/// fingerprint's first 8 digits.
pub fn parent_name(manifest: &Manifest) -> String {
    super::names::parent_name(
        &target_model(manifest),
        &manifest.run_key,
        &manifest.fingerprint,
    )
}

/// The parent run's identity tags: fingerprint, run key, kind, run name and
/// the models of the config. (Where the session lay, the user and the w2c
/// version are also tagged, but describe the last process, not the session.)
pub fn parent_tags(manifest: &Manifest) -> Vec<KeyValue> {
    let mut tags = vec![
        KeyValue::new(TAG_FINGERPRINT, &manifest.fingerprint),
        KeyValue::new(TAG_RUN_KEY, &manifest.run_key),
        KeyValue::new(TAG_KIND, "session"),
        KeyValue::new(TAG_RUN_NAME, parent_name(manifest)),
    ];
    for (tag, pointer) in [
        (TAG_TARGET_MODEL, "/models/target"),
        (TAG_JUDGE_MODEL, "/models/judge"),
    ] {
        if let Some(v) = manifest.config.pointer(pointer).and_then(Value::as_str) {
            tags.push(KeyValue::new(tag, v));
        }
    }
    tags
}

/// The judge model of a namespace's settings, if it has one.
pub fn judge_model(settings: &MethodSettings) -> Option<String> {
    settings
        .settings
        .get("judge_model")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The child run's name.
pub fn child_name(manifest: &Manifest, ns: &str, settings: &MethodSettings) -> String {
    super::names::child_name(
        ns,
        &target_model(manifest),
        judge_model(settings).as_deref(),
    )
}

/// A child run's identity tags: its parent, the session, its method,
/// namespace and settings hash, the models and its run name.
pub fn child_tags(
    manifest: &Manifest,
    parent_run_id: &str,
    ns: &str,
    settings: &MethodSettings,
) -> Vec<KeyValue> {
    let mut tags = vec![
        KeyValue::new(TAG_PARENT, parent_run_id),
        KeyValue::new(TAG_FINGERPRINT, &manifest.fingerprint),
        KeyValue::new(TAG_RUN_KEY, &manifest.run_key),
        KeyValue::new(TAG_KIND, "method"),
        KeyValue::new(TAG_METHOD, &settings.method),
        KeyValue::new(TAG_NAMESPACE, ns),
        KeyValue::new(TAG_SETTINGS_HASH, &settings.settings_hash),
        KeyValue::new(TAG_TARGET_MODEL, target_model(manifest)),
    ];
    if let Some(j) = judge_model(settings) {
        tags.push(KeyValue::new(TAG_JUDGE_MODEL, j));
    }
    tags.push(KeyValue::new(
        TAG_RUN_NAME,
        child_name(manifest, ns, settings),
    ));
    tags
}

/// The resolved config as `config.*` tags, without `[tracking]` (where the
/// session is tracked is not part of the evaluation). Values over the
/// server's tag limit are returned separately as `config/<key>.txt`
/// artifacts, the tag naming the artifact and its sha256.
pub fn config_tags(manifest: &Manifest) -> (Vec<KeyValue>, Vec<(String, String)>) {
    let mut config = manifest.config.clone();
    if let Some(obj) = config.as_object_mut() {
        // Where the session is tracked is not part of the evaluation.
        obj.remove("tracking");
    }
    let mut flat = Vec::new();
    flatten::flatten_params("config", &config, &mut flat);
    let mut tags = Vec::new();
    let mut long = Vec::new();
    for (key, value) in flat {
        if value.chars().count() > flatten::MAX_TAG_CHARS {
            let rel = format!("config/{key}.txt");
            let pointer = format!(
                "(too long for a tag: see artifact {rel}, sha256 {})",
                crate::fingerprint::sha256_hex(value.as_bytes())
            );
            long.push((rel, value));
            tags.push(KeyValue::new(key, pointer));
        } else {
            tags.push(KeyValue::new(key, value));
        }
    }
    (tags, long)
}

/// The final metrics a child run holds for a finished namespace of
/// `method`, from its `metrics.json`: every numeric leaf, and every count
/// the method knows reported as 0 when absent.
pub fn child_metrics(method: &str, metrics_file: &Value) -> Vec<(String, f64)> {
    flatten::with_zero_counts(method, flatten::final_metrics(metrics_file))
}

/// The headline metrics the parent run holds for namespace `ns`, from the
/// child's final metrics: `<ns>.<headline>` (e.g. `mcq.accuracy`,
/// `llm_judge.judge_table_f1`).
pub fn parent_headline(ns: &str, child_metrics: &[(String, f64)]) -> Vec<(String, f64)> {
    flatten::headline(child_metrics)
        .into_iter()
        .map(|(name, v)| (flatten::sanitize_key(&format!("{ns}.{name}")), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_keys_are_prefixed_with_the_namespace() {
        let child = vec![
            ("accuracy".to_string(), 0.5),
            ("official_judge.paper.f1".to_string(), 0.25),
            ("counts.unscored".to_string(), 2.0),
        ];
        let h = parent_headline("llm_judge", &child);
        assert!(h.contains(&("llm_judge.accuracy".to_string(), 0.5)));
        assert!(h.contains(&("llm_judge.judge_table_f1".to_string(), 0.25)));
        assert!(!h.iter().any(|(k, _)| k.contains("unscored")));
    }
}
