//! `w2c verify`: cross-checks a session's local record and says precisely
//! what differs.
//!
//! Local checks, per session and namespace: the manifest's fingerprint is the
//! hash of its canonical payload; every `_DONE.json` matches its checkpoint
//! and artifact files (sizes and sha256); checkpoints parse (a torn or
//! malformed line is reported); a namespace marked done has no unresolved
//! errors; a namespace with every result but no `_DONE.json` is reported;
//! `metrics.json` recomputes from `predictions.jsonl`. Sessions without
//! `mlflow_ids.json` are offline: tracking is reported as not checked.
//! [`tracking`] adds the checks against the MLflow server.

pub mod python_suite;
pub mod tracking;

use crate::fingerprint::sha256_hex;
use crate::labels::{Label, Prediction};
use crate::metrics::{self, Metrics, Scored};
use crate::store::names as files;
use crate::store::session::{self, FoundSession};
use crate::store::{file_digest, load_jsonl, read_json, DoneMarker, MetricsFile, NamespaceDir};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Everything matches.
    Ok,
    /// Present but different.
    Mismatch,
    /// Expected but absent.
    Missing,
    /// Not checked (e.g. an offline session's tracking), with the reason.
    NotChecked,
    /// Could not be checked: the tracking server is unreachable or refused
    /// the credentials.
    CannotCheck,
}

/// One line of the verification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `<run_key>/<fingerprint16>`.
    pub session: String,
    /// Namespace, or `-` for session-level checks.
    pub namespace: String,
    /// What was checked.
    pub check: String,
    /// Result.
    pub status: Status,
    /// The exact difference, or a note.
    pub detail: String,
}

/// Gathers the checks of one session, labelled with the session and the
/// namespace being checked (`-` for session-level checks).
pub(crate) struct Collector {
    session: String,
    pub(crate) namespace: String,
    pub(crate) checks: Vec<Check>,
}

impl Collector {
    /// A collector for the session labelled `session`.
    pub(crate) fn new(session: String) -> Collector {
        Collector {
            session,
            namespace: "-".into(),
            checks: Vec::new(),
        }
    }

    /// A collector for a w2c session: `<run_key>/<fingerprint16>`.
    pub(crate) fn for_session(found: &FoundSession) -> Collector {
        Collector::new(format!(
            "{}/{}",
            found.manifest.run_key,
            crate::fingerprint::short(&found.manifest.fingerprint)
        ))
    }

    /// Records one check.
    pub(crate) fn push(&mut self, check: &str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            session: self.session.clone(),
            namespace: self.namespace.clone(),
            check: check.to_string(),
            status,
            detail: detail.into(),
        });
    }
}

/// Verifies one session's local record.
pub fn verify_local(found: &FoundSession) -> Vec<Check> {
    let mut c = Collector::for_session(found);
    let recomputed = sha256_hex(found.manifest.fingerprint_canonical.as_bytes());
    if recomputed == found.manifest.fingerprint {
        c.push(
            "manifest fingerprint",
            Status::Ok,
            "sha256(canonical config) matches",
        );
    } else {
        c.push(
            "manifest fingerprint",
            Status::Mismatch,
            format!(
                "manifest says {}, canonical config hashes to {recomputed}",
                found.manifest.fingerprint
            ),
        );
    }
    let ids = crate::tracking::ids::MlflowIds::load(&found.dir);
    match &ids {
        Ok(ids) if ids.mode == crate::tracking::ids::Mode::Online => {}
        Ok(_) => c.push(
            "tracking",
            Status::NotChecked,
            "offline session: tracking not checked (`w2c sync` sends it to MLflow)",
        ),
        Err(e) => c.push("tracking", Status::Mismatch, format!("{e:#}")),
    }
    for (ns, _settings) in session::namespaces(&found.dir) {
        c.namespace = ns.clone();
        verify_namespace(&mut c, found, &ns);
    }
    c.checks
}

#[derive(Deserialize)]
struct KeyLine {
    key: String,
}

fn verify_namespace(c: &mut Collector, found: &FoundSession, ns: &str) {
    let dir = NamespaceDir::new(&found.dir, ns);
    let (ns_dir, artifacts) = (&dir.checkpoints, &dir.artifacts);
    let results = load_jsonl::<KeyLine>(&ns_dir.join(files::RESULTS));
    let keys: HashSet<String> = match &results {
        Ok((lines, report)) => {
            if report.torn_tail_bytes > 0 {
                c.push(
                    "checkpoint lines",
                    Status::Mismatch,
                    format!(
                        "{}: torn last line ({} bytes)",
                        files::RESULTS,
                        report.torn_tail_bytes
                    ),
                );
            } else {
                c.push(
                    "checkpoint lines",
                    Status::Ok,
                    format!("{} lines parse", report.lines),
                );
            }
            lines.iter().map(|l| l.key.clone()).collect()
        }
        Err(e) => {
            c.push("checkpoint lines", Status::Mismatch, format!("{e:#}"));
            HashSet::new()
        }
    };
    let unresolved: Vec<String> = load_jsonl::<KeyLine>(&ns_dir.join(files::ERRORS))
        .map(|(lines, _)| {
            lines
                .into_iter()
                .map(|l| l.key)
                .filter(|k| !keys.contains(k))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let done_path = ns_dir.join(files::DONE);
    let done: Option<DoneMarker> = match read_json(&done_path) {
        Ok(d) => Some(d),
        Err(_) if !done_path.exists() => None,
        Err(e) => {
            c.push("_DONE.json", Status::Mismatch, format!("{e:#}"));
            return;
        }
    };
    let Some(done) = done else {
        // Expected items: sweeps have K per example; the marker is the
        // authority, so without it compare against the manifest only when
        // the namespace is a plain per-example one.
        let expected = found.manifest.n_examples;
        if !ns.starts_with("stability_") && keys.len() >= expected && unresolved.is_empty() {
            c.push(
                "_DONE.json",
                Status::Missing,
                format!("all {expected} items have results but the namespace is not marked done"),
            );
        } else {
            c.push(
                "_DONE.json",
                Status::NotChecked,
                format!(
                    "not finished: {} results, {} unresolved errors",
                    keys.len(),
                    unresolved.len()
                ),
            );
        }
        return;
    };
    c.push(
        "_DONE.json",
        Status::Ok,
        format!("done at {}", done.done_at),
    );
    if unresolved.is_empty() {
        c.push("unresolved errors", Status::Ok, "none");
    } else {
        c.push(
            "unresolved errors",
            Status::Mismatch,
            format!(
                "marked done but {} items only have errors",
                unresolved.len()
            ),
        );
    }
    if keys.len() != done.n_items {
        c.push(
            "result count",
            Status::Mismatch,
            format!(
                "_DONE.json says {} items, results.jsonl has {}",
                done.n_items,
                keys.len()
            ),
        );
    }
    for (dir, listed) in [
        (&ns_dir, &done.checkpoint_files),
        (&artifacts, &done.artifact_files),
    ] {
        for (file, want) in listed {
            let path = dir.join(file);
            match file_digest(&path) {
                Err(_) => c.push(
                    &format!("file {file}"),
                    Status::Missing,
                    path.display().to_string(),
                ),
                Ok((sha, bytes)) if sha == want.sha256 && bytes == want.bytes => c.push(
                    &format!("file {file}"),
                    Status::Ok,
                    "size and sha256 match _DONE.json",
                ),
                Ok((sha, bytes)) => c.push(
                    &format!("file {file}"),
                    Status::Mismatch,
                    format!(
                        "_DONE.json: {} bytes sha256 {}…; on disk: {bytes} bytes sha256 {}…",
                        want.bytes,
                        crate::fingerprint::prefix(&want.sha256, 12),
                        crate::fingerprint::prefix(&sha, 12)
                    ),
                ),
            }
        }
    }
    if done.artifact_files.contains_key("metrics.json") {
        verify_metrics(c, artifacts);
    }
}

/// Recomputes `metrics.json` from `predictions.jsonl`.
fn verify_metrics(c: &mut Collector, artifacts: &Path) {
    let stored: MetricsFile = match read_json(&artifacts.join("metrics.json")) {
        Ok(m) => m,
        Err(e) => return c.push("metrics recompute", Status::Missing, format!("{e:#}")),
    };
    let rows = match load_jsonl::<Value>(&artifacts.join("predictions.jsonl")) {
        Ok((rows, _)) => rows,
        Err(e) => return c.push("metrics recompute", Status::Missing, format!("{e:#}")),
    };
    let mut scored = Vec::new();
    let mut unscored = 0;
    for (i, row) in rows.iter().enumerate() {
        // `mcq_logprob` examples that could not be scored are listed but
        // are not predictions.
        if !row["unscored"].is_null() {
            unscored += 1;
            continue;
        }
        let gold = row["gold"].as_str().and_then(|s| s.parse::<Label>().ok());
        let pred = row["prediction"]
            .as_str()
            .and_then(|s| s.parse::<Prediction>().ok());
        let n_tools = row["n_tools"].as_u64();
        match (gold, pred, n_tools) {
            (Some(gold), Some(pred), Some(n)) => scored.push(Scored {
                gold,
                pred,
                has_tools: n > 0,
            }),
            _ => {
                return c.push(
                    "metrics recompute",
                    Status::Mismatch,
                    format!(
                        "predictions.jsonl:{}: missing or invalid gold/prediction/n_tools",
                        i + 1
                    ),
                )
            }
        }
    }
    let recomputed = metrics::compute(&scored);
    let mut diffs = metric_diffs(&stored.metrics, &recomputed);
    let stored_unscored = stored.counts.get("unscored").copied().unwrap_or(0);
    if stored_unscored != unscored {
        diffs.push(format!(
            "unscored: metrics.json counts {stored_unscored}, predictions.jsonl lists {unscored}"
        ));
    }
    if diffs.is_empty() {
        c.push(
            "metrics recompute",
            Status::Ok,
            format!("{} predictions give the stored metrics", scored.len()),
        );
    } else {
        c.push("metrics recompute", Status::Mismatch, diffs.join("; "));
    }
}

fn metric_diffs(stored: &Metrics, recomputed: &Metrics) -> Vec<String> {
    let mut out = Vec::new();
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12,
        (None, None) => true,
        _ => false,
    };
    for ((name, a), (_, b)) in stored.headline().into_iter().zip(recomputed.headline()) {
        if !close(a, b) {
            out.push(format!("{name}: stored {a:?}, recomputed {b:?}"));
        }
    }
    // The official metrics, where the file has them (files written before
    // w2c computed them do not).
    for ((name, a), (_, b)) in stored.official().into_iter().zip(recomputed.official()) {
        if a.is_some() && !close(a, b) {
            out.push(format!("{name}: stored {a:?}, recomputed {b:?}"));
        }
    }
    if stored.n_total != recomputed.n_total {
        out.push(format!(
            "n_total: stored {}, recomputed {}",
            stored.n_total, recomputed.n_total
        ));
    }
    if stored.confusion != recomputed.confusion {
        out.push("confusion matrix differs".into());
    }
    out
}

/// Whether every check passed (NOT_CHECKED counts as passing).
pub fn all_ok(checks: &[Check]) -> bool {
    checks
        .iter()
        .all(|c| matches!(c.status, Status::Ok | Status::NotChecked))
}

/// Whether some check found a difference (MISMATCH or MISSING).
pub fn any_mismatch(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| matches!(c.status, Status::Mismatch | Status::Missing))
}
