//! The inputs of a session, computed before the session directory is
//! touched: the dataset, the selected examples, and the fingerprint payload
//! (everything that changes results and is shared by all methods).

use crate::config::Config;
use crate::dataset::{self, Example};
use crate::fingerprint::fingerprint;
use anyhow::{bail, Result};
use serde_json::{json, Value};

/// Version of the session fingerprint payload.
pub const PAYLOAD_SCHEMA: u32 = 1;

/// The session-level fingerprint payload: everything that changes results and
/// is shared by all methods.
pub fn session_payload(
    config: &Config,
    dataset: &dataset::Dataset,
    selected: &[Example],
) -> Result<Value> {
    let (_, provider) = config.target_provider()?;
    let ids: Vec<&str> = selected.iter().map(|e| e.uuid.as_str()).collect();
    Ok(json!({
        "schema": PAYLOAD_SCHEMA,
        "dataset": {
            "sha256": dataset.sha256,
            "n_examples_in_file": dataset.examples.len(),
            "n_per_label": config.dataset.n_per_label,
            "subsample_seed": config.dataset.n_per_label.map(|_| config.dataset.subsample_seed),
            "selected_ids_sha256": crate::fingerprint::sha256_hex(ids.join("\n").as_bytes()),
            "n_selected": ids.len(),
        },
        "target": {
            "model": config.models.target,
            "provider_kind": provider.kind,
        },
        "seed": config.run.seed,
    }))
}

/// The inputs of a session, computed without touching the session directory.
pub struct Prepared {
    /// The dataset file.
    pub dataset: dataset::Dataset,
    /// The selected examples, in evaluation order.
    pub selected: Vec<Example>,
    /// The fingerprint payload.
    pub payload: Value,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Why `n_per_label` asks for more rows than some label has, if it does:
    /// refused for a new session, a recorded notice when an existing session
    /// (created before the check existed) is continued.
    pub short_labels: Option<String>,
}

/// Loads the dataset, selects the examples and computes the fingerprint.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let dataset = dataset::load(&config.dataset.path)?;
    let short_labels = config.dataset.n_per_label.and_then(|n| {
        dataset::check_n_per_label(dataset.label_counts(), n)
            .err()
            .map(|e| format!("{}: {e}", config.dataset.path.display()))
    });
    let selected = dataset::select(
        &dataset,
        config.dataset.n_per_label,
        config.dataset.subsample_seed,
    );
    if selected.is_empty() {
        bail!(
            "{}: the selection is empty (n_per_label = {:?})",
            config.dataset.path.display(),
            config.dataset.n_per_label
        );
    }
    let payload = session_payload(config, &dataset, &selected)?;
    let fingerprint = fingerprint(&payload);
    Ok(Prepared {
        dataset,
        selected,
        payload,
        fingerprint,
        short_labels,
    })
}
