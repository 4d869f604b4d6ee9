//! The inputs of a session, computed before the session directory is
//! touched: the dataset, the selected examples, and the fingerprint payload
//! (everything that changes results and is shared by all methods).
//!
//! A new run parses the dataset at once ([`prepare`]). A resume
//! ([`prepare_resumed`]) first hashes the dataset file: when its bytes and
//! the config still give the stored fingerprint, the examples are parsed
//! only if a namespace has work left ([`Examples::get`], which checks them
//! against the fingerprint again), so a finished session resumes without
//! reading its dataset's rows.

use crate::config::Config;
use crate::dataset::{self, DatasetInfo, Example};
use crate::fingerprint::fingerprint;
use crate::labels::Label;
use crate::store::session::Manifest;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Version of the session fingerprint payload.
pub const PAYLOAD_SCHEMA: u32 = 1;

/// What the fingerprint payload records about the dataset and the selection.
#[derive(Debug, Clone, PartialEq)]
struct Selection {
    sha256: String,
    n_examples_in_file: usize,
    selected_ids_sha256: String,
    n_selected: usize,
}

impl Selection {
    fn of(dataset: &DatasetInfo, selected: &[Example]) -> Selection {
        Selection {
            sha256: dataset.sha256.clone(),
            n_examples_in_file: dataset.n_examples,
            selected_ids_sha256: ids_sha256(selected),
            n_selected: selected.len(),
        }
    }

    /// The same facts as stored in a payload (`None` if one is missing).
    fn stored(payload: &Value) -> Option<Selection> {
        let d = &payload["dataset"];
        Some(Selection {
            sha256: d["sha256"].as_str()?.to_string(),
            n_examples_in_file: usize::try_from(d["n_examples_in_file"].as_u64()?).ok()?,
            selected_ids_sha256: d["selected_ids_sha256"].as_str()?.to_string(),
            n_selected: usize::try_from(d["n_selected"].as_u64()?).ok()?,
        })
    }
}

/// sha256 of the selected uuids joined by newlines.
fn ids_sha256(selected: &[Example]) -> String {
    let mut ids = Sha256::new();
    for (i, e) in selected.iter().enumerate() {
        if i > 0 {
            ids.update(b"\n");
        }
        ids.update(e.uuid.as_bytes());
    }
    hex::encode(ids.finalize())
}

/// The session-level fingerprint payload: everything that changes results and
/// is shared by all methods.
pub fn session_payload(
    config: &Config,
    dataset: &DatasetInfo,
    selected: &[Example],
) -> Result<Value> {
    payload(config, &Selection::of(dataset, selected))
}

fn payload(config: &Config, selection: &Selection) -> Result<Value> {
    let (_, provider) = config.target_provider()?;
    Ok(json!({
        "schema": PAYLOAD_SCHEMA,
        "dataset": {
            "sha256": selection.sha256,
            "n_examples_in_file": selection.n_examples_in_file,
            "n_per_label": config.dataset.n_per_label,
            "subsample_seed": config.dataset.n_per_label.map(|_| config.dataset.subsample_seed),
            "selected_ids_sha256": selection.selected_ids_sha256,
            "n_selected": selection.n_selected,
        },
        "target": {
            "model": config.models.target,
            "provider_kind": provider.kind,
        },
        "seed": config.run.seed,
    }))
}

/// The selected examples, in evaluation order: parsed already, or parsed
/// on first use and checked against the fingerprint they must give.
pub struct Examples {
    deferred: Option<Deferred>,
    loaded: OnceLock<Vec<Example>>,
}

/// Where deferred examples come from, and what they must hash to.
struct Deferred {
    path: PathBuf,
    n_per_label: Option<usize>,
    subsample_seed: u64,
    expected: Selection,
}

impl Examples {
    /// Examples already parsed.
    pub fn loaded(examples: Vec<Example>) -> Examples {
        Examples {
            deferred: None,
            loaded: OnceLock::from(examples),
        }
    }

    /// The examples, parsing the dataset on the first call when they were
    /// deferred. Refuses when the file no longer gives the selection the
    /// session's fingerprint records (it changed since it was hashed).
    pub fn get(&self) -> Result<&[Example]> {
        if let Some(examples) = self.loaded.get() {
            return Ok(examples.as_slice());
        }
        let d = self
            .deferred
            .as_ref()
            .context("the selected examples were neither loaded nor deferred")?;
        let (info, selected) =
            dataset::load(&d.path)?.into_selection(d.n_per_label, d.subsample_seed);
        let found = Selection::of(&info, &selected);
        if found != d.expected {
            bail!(
                "{}: the dataset changed while the session was being resumed (sha256 {} when checked, {} now); refusing to mix results",
                d.path.display(),
                d.expected.sha256,
                found.sha256
            );
        }
        let _ = self.loaded.set(selected);
        self.loaded
            .get()
            .map(Vec::as_slice)
            .context("the selected examples could not be kept")
    }
}

/// The inputs of a session, computed without touching the session directory.
pub struct Prepared {
    /// The dataset file.
    pub dataset: DatasetInfo,
    /// The selected examples.
    pub examples: Examples,
    /// Number of selected examples.
    pub n_selected: usize,
    /// The fingerprint payload.
    pub payload: Value,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Why `n_per_label` asks for more rows than some label has, if it does:
    /// refused for a new session, a recorded notice when an existing session
    /// (created before the check existed) is continued.
    pub short_labels: Option<String>,
    /// The dataset's notes on tool texts that are not tool definitions
    /// (see [`dataset::Dataset::notes`]); empty when the examples were not
    /// read again.
    pub dataset_notes: Vec<dataset::ToolNote>,
}

/// Loads the dataset, selects the examples and computes the fingerprint.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let mut dataset = dataset::load(&config.dataset.path)?;
    let short_labels = short_labels(config, dataset.label_counts());
    let dataset_notes = std::mem::take(&mut dataset.notes);
    let (dataset, selected) =
        dataset.into_selection(config.dataset.n_per_label, config.dataset.subsample_seed);
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
        n_selected: selected.len(),
        examples: Examples::loaded(selected),
        payload,
        fingerprint,
        short_labels,
        dataset_notes,
    })
}

/// The inputs of a session being resumed from its manifest: when the
/// dataset file still hashes to the stored sha256 and the config gives the
/// stored fingerprint, the stored selection facts are used and the examples
/// are deferred; otherwise (or for a manifest without them) [`prepare`].
pub fn prepare_resumed(config: &Config, stored: &Manifest) -> Result<Prepared> {
    let path = &config.dataset.path;
    // An unreadable file is reported by `prepare`, as for a new run.
    let Ok((sha256, _)) = crate::store::file_digest(path) else {
        return prepare(config);
    };
    let stored_payload: Option<Value> = serde_json::from_str(&stored.fingerprint_canonical).ok();
    let Some(expected) = stored_payload.as_ref().and_then(Selection::stored) else {
        return prepare(config);
    };
    let Some(selected_counts) = label_counts(stored) else {
        return prepare(config);
    };
    if expected.sha256 != sha256 {
        return prepare(config);
    }
    let payload = payload(config, &expected)?;
    let fingerprint = fingerprint(&payload);
    if fingerprint != stored.fingerprint {
        return prepare(config);
    }
    Ok(Prepared {
        dataset: DatasetInfo {
            path: path.clone(),
            sha256,
            n_examples: expected.n_examples_in_file,
        },
        n_selected: expected.n_selected,
        examples: Examples {
            deferred: Some(Deferred {
                path: path.clone(),
                n_per_label: config.dataset.n_per_label,
                subsample_seed: config.dataset.subsample_seed,
                expected,
            }),
            loaded: OnceLock::new(),
        },
        payload,
        fingerprint,
        // The selection holds min(rows, n_per_label) of each label, so its
        // counts name the same short labels as the file's counts would.
        short_labels: short_labels(config, selected_counts),
        dataset_notes: Vec::new(),
    })
}

/// The manifest's label counts of the selection, in [`Label::ALL`] order
/// (`None` for a manifest without them, or with a label w2c does not know).
fn label_counts(stored: &Manifest) -> Option<[usize; 4]> {
    if stored.label_counts.is_empty() {
        return None;
    }
    let mut counts = [0; 4];
    for (label, &n) in &stored.label_counts {
        counts[label.parse::<Label>().ok()?.index()] = n;
    }
    Some(counts)
}

fn short_labels(config: &Config, counts: [usize; 4]) -> Option<String> {
    config.dataset.n_per_label.and_then(|n| {
        dataset::check_n_per_label(counts, n)
            .err()
            .map(|e| format!("{}: {e}", config.dataset.path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> String {
        (0..n)
            .map(|i| {
                let gold = ["tool_call", "cannot_answer", "request_for_info"][i % 3];
                format!(
                    r#"{{"uuid":"u{i}","question":"q","correct_answer":"{gold}","answers":{{"direct":"a","tool_call":"b","request_for_info":"c","cannot_answer":"d"}},"tools":[],"source":"s","target_tool":null}}"#
                ) + "\n"
            })
            .collect()
    }

    fn deferred(path: &std::path::Path, expected: Selection) -> Examples {
        Examples {
            deferred: Some(Deferred {
                path: path.to_path_buf(),
                n_per_label: Some(2),
                subsample_seed: 7,
                expected,
            }),
            loaded: OnceLock::new(),
        }
    }

    #[test]
    fn deferred_examples_are_the_selection_the_fingerprint_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, rows(9)).unwrap();
        let (info, selected) = dataset::load(&path).unwrap().into_selection(Some(2), 7);
        let facts = Selection::of(&info, &selected);
        assert_eq!(facts.n_selected, 6);

        let examples = deferred(&path, facts.clone());
        assert_eq!(examples.get().unwrap(), &selected[..]);
        // Parsed once: a later change of the file is not read again.
        std::fs::write(&path, rows(12)).unwrap();
        assert_eq!(examples.get().unwrap(), &selected[..]);

        // Changed between the check and the first use: refused.
        let err = deferred(&path, facts).get().unwrap_err().to_string();
        assert!(err.contains("the dataset changed"), "{err}");
        assert!(err.contains("data.jsonl"), "{err}");
    }

    #[test]
    fn stored_selection_facts_are_read_back_from_a_payload() {
        let facts = Selection {
            sha256: "ab".repeat(32),
            n_examples_in_file: 300,
            selected_ids_sha256: "cd".repeat(32),
            n_selected: 30,
        };
        let payload = json!({"dataset": {
            "sha256": facts.sha256, "n_examples_in_file": 300,
            "selected_ids_sha256": facts.selected_ids_sha256, "n_selected": 30,
        }});
        assert_eq!(Selection::stored(&payload), Some(facts));
        assert_eq!(
            Selection::stored(&json!({"dataset": {"sha256": "ab"}})),
            None
        );
    }
}
