//! Evaluation methods and the engine that runs them.
//!
//! The engine is method-agnostic: it takes the work items of a namespace,
//! skips the ones already in `results.jsonl`, runs the rest concurrently,
//! appends each result (or error) as it finishes, keeps the audit file in step
//! and stops cleanly on cancellation. Methods supply the per-item work and the
//! scoring.

pub mod echo_probe;
pub mod llm_judge;
pub mod logprob;
pub mod mcq;
pub mod mcq_logprob;

use crate::audit::AuditEvent;
use crate::checkpoint::{load_jsonl, JsonlWriter};
use crate::llm::CallRecord;
use anyhow::Result;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// File names inside a namespace's checkpoint directory.
pub mod files {
    /// One line per finished work item.
    pub const RESULTS: &str = "results.jsonl";
    /// One line per item that failed after its retries; retried on resume.
    pub const ERRORS: &str = "errors.jsonl";
    /// Audit events, once each.
    pub const AUDIT: &str = "audit_fallbacks.jsonl";
    /// Completion marker.
    pub const DONE: &str = "_DONE.json";
    /// Settings of the namespace.
    pub const SETTINGS: &str = "method_settings.json";
    /// Call log, in the namespace's artifacts directory.
    pub const CALLS: &str = "llm_calls.jsonl";
    /// One line per process that worked on the namespace (wall time, counts).
    pub const RUN_LOG: &str = "run_log.jsonl";
}

/// Namespace name of a stability sweep: `stability_<method>_k=<K>_T=<temp>`.
pub fn sweep_name(method: &str, k: u32, temperature: f64) -> String {
    format!("stability_{method}_k={k}_T={temperature:?}")
}

/// A stability sweep at one temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Repetitions per example.
    pub k: u32,
    /// Sampling temperature of the repetitions.
    pub temperature: f64,
    /// How repetitions are seeded.
    pub seed_mode: crate::config::SeedMode,
}

impl Sweep {
    /// The seed repetition `repeat` sends.
    pub fn seed(&self, base: u64, repeat: u32) -> u64 {
        match self.seed_mode {
            crate::config::SeedMode::PerRepeat => base.wrapping_add(u64::from(repeat)),
            crate::config::SeedMode::Fixed => base,
        }
    }

    /// Work items: every example × every repetition.
    pub fn items(&self, uuids: &[&str]) -> Vec<WorkItem> {
        uuids
            .iter()
            .enumerate()
            .flat_map(|(index, uuid)| {
                (0..self.k).map(move |r| WorkItem {
                    key: WorkItem::key_for(uuid, Some(r)),
                    index,
                    repeat: Some(r),
                })
            })
            .collect()
    }
}

/// One work item per example, in selection order.
pub fn one_item_per_example(examples: &[crate::dataset::Example]) -> Vec<WorkItem> {
    examples
        .iter()
        .enumerate()
        .map(|(index, e)| WorkItem {
            key: WorkItem::key_for(&e.uuid, None),
            index,
            repeat: None,
        })
        .collect()
}

/// One unit of work: an example (and a repeat index for sweeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// Checkpoint key: the uuid, or `uuid#repeat`.
    pub key: String,
    /// Position of the example in the selection.
    pub index: usize,
    /// Repeat index for sweeps.
    pub repeat: Option<u32>,
}

impl WorkItem {
    /// Key for an example and an optional repeat.
    pub fn key_for(uuid: &str, repeat: Option<u32>) -> String {
        match repeat {
            Some(r) => format!("{uuid}#{r}"),
            None => uuid.to_string(),
        }
    }
}

/// What every checkpointed result record provides to the engine.
pub trait Record: Serialize + DeserializeOwned + Send + 'static {
    /// The checkpoint key.
    fn key(&self) -> &str;
    /// Audit events produced while computing this record.
    fn audit_events(&self) -> &[AuditEvent];
    /// Tokens the record's calls used.
    fn usage(&self) -> crate::llm::Usage;
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
}

/// Total wall time recorded in a namespace's `run_log.jsonl`, seconds.
pub fn wall_secs(ns_dir: &Path) -> f64 {
    load_jsonl::<RunLogLine>(&ns_dir.join(files::RUN_LOG))
        .map(|(lines, _)| lines.iter().fold(0.0, |acc, l| acc + l.wall_secs))
        .unwrap_or(0.0)
}

/// Live counters of the namespace being run, read by the tracker's progress
/// metrics. The engine resets them when it starts a namespace.
#[derive(Debug)]
pub struct Progress {
    /// Items in the namespace.
    pub total: AtomicUsize,
    /// Items with a result (earlier runs included).
    pub done: AtomicUsize,
    /// Items that failed in this run.
    pub failed: AtomicUsize,
    /// Items finished by this process (for the request rate).
    pub finished_here: AtomicUsize,
    started: std::sync::Mutex<std::time::Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished_here: AtomicUsize::new(0),
            started: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Progress {
    /// Starts counting a namespace of `total` items of which `done` exist.
    pub fn reset(&self, total: usize, done: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.finished_here.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.started.lock() {
            *s = std::time::Instant::now();
        }
    }

    /// Time since [`Progress::reset`].
    pub fn elapsed(&self) -> Duration {
        self.started.lock().map(|s| s.elapsed()).unwrap_or_default()
    }
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

/// How long requests in flight may take to finish after a stop request
/// before they are abandoned (and redone on resume).
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// A cooperative stop signal shared by the CLI and the engine.
#[derive(Debug, Clone, Default)]
pub struct Cancel(CancellationToken);

impl Cancel {
    /// Asks running methods to stop issuing new work.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether a stop was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once a stop was requested and the grace period has passed.
    pub async fn grace_expired(&self) {
        self.0.cancelled().await;
        tokio::time::sleep(CANCEL_GRACE).await;
    }
}

/// Why a work item failed.
#[derive(Debug, Clone)]
pub struct ItemError {
    /// What went wrong (never contains secrets).
    pub message: String,
    /// Retrying cannot help (bad key, unknown model...): the method stops.
    pub fatal: bool,
}

/// What the work function returns for one item.
pub struct ItemOutput<R> {
    /// Calls made for the item (logged whether or not it succeeded).
    pub calls: Vec<CallRecord>,
    /// The record, or why the item failed.
    pub result: Result<R, ItemError>,
}

/// The state of a namespace after the engine ran.
pub struct Outcome<R> {
    /// All results, finished earlier or now, by key.
    pub results: HashMap<String, R>,
    /// Keys that failed in this run (or earlier, and were not retried).
    pub failed: Vec<(String, String)>,
    /// Whether the run stopped because of a cancellation.
    pub cancelled: bool,
    /// Items in flight that were abandoned after the cancel grace period.
    pub abandoned: usize,
    /// Items that were done before this run started.
    pub resumed: usize,
    /// Bytes of torn checkpoint tail cut on open.
    pub torn_bytes: usize,
}

/// Runs `work` over every item not already in the namespace's results.
#[allow(clippy::too_many_arguments)]
pub async fn run_items<R, F, Fut>(
    ns_dir: &Path,
    artifacts_dir: &Path,
    items: Vec<WorkItem>,
    concurrency: usize,
    cancel: &Cancel,
    label: &str,
    progress: &Progress,
    work: F,
) -> Result<Outcome<R>>
where
    R: Record,
    F: Fn(WorkItem) -> Fut,
    Fut: Future<Output = ItemOutput<R>>,
{
    let (mut calls_w, _) = JsonlWriter::open(&artifacts_dir.join(files::CALLS))?;
    let results_path = ns_dir.join(files::RESULTS);
    let audit_path = ns_dir.join(files::AUDIT);
    let (mut results_w, torn_results) = JsonlWriter::open(&results_path)?;
    let (mut audit_w, torn_audit) = JsonlWriter::open(&audit_path)?;
    let (mut errors_w, torn_errors) = JsonlWriter::open(&ns_dir.join(files::ERRORS))?;

    let wanted: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let (loaded, _) = load_jsonl::<R>(&results_path)?;
    let mut results: HashMap<String, R> = HashMap::new();
    for r in loaded {
        if wanted.contains(r.key()) {
            results.insert(r.key().to_string(), r);
        }
    }
    // Repair the audit file: events of stored results that a crash kept from
    // being appended.
    let (audit_loaded, _) = load_jsonl::<AuditEvent>(&audit_path)?;
    let mut audit_ids: HashSet<String> = audit_loaded.into_iter().map(|e| e.event_id).collect();
    let mut keys: Vec<&String> = results.keys().collect();
    keys.sort();
    for k in keys {
        for e in results[k].audit_events() {
            if audit_ids.insert(e.event_id.clone()) {
                audit_w.append(e)?;
            }
        }
    }

    let resumed = results.len();
    let started = std::time::Instant::now();
    let started_at = crate::session::now_utc();
    let pending: Vec<WorkItem> = items
        .into_iter()
        .filter(|i| !results.contains_key(&i.key))
        .collect();
    let bar = ProgressBar::new((resumed + pending.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar.set_position(resumed as u64);
    progress.reset(resumed + pending.len(), resumed);

    let mut failed = Vec::new();
    let mut fatal: Option<String> = None;
    let fatal_seen = CancellationToken::new();
    let stop = cancel.clone();
    let stop_fatal = fatal_seen.clone();
    let mut stream = futures::stream::iter(pending)
        .take_while(move |_| {
            futures::future::ready(!stop.is_cancelled() && !stop_fatal.is_cancelled())
        })
        .map(|item| {
            let key = item.key.clone();
            let fut = work(item);
            let cancel = cancel.clone();
            async move {
                tokio::select! {
                    out = fut => (key, Some(out)),
                    _ = cancel.grace_expired() => (key, None),
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut abandoned = 0;
    while let Some((key, output)) = stream.next().await {
        let Some(output) = output else {
            abandoned += 1;
            continue;
        };
        for call in &output.calls {
            calls_w.append(call)?;
        }
        match output.result {
            Ok(record) => {
                results_w.append(&record)?;
                for e in record.audit_events() {
                    if audit_ids.insert(e.event_id.clone()) {
                        audit_w.append(e)?;
                    }
                }
                results.insert(key, record);
                progress.done.fetch_add(1, Ordering::Relaxed);
                progress.finished_here.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                errors_w.append(&ErrorLine {
                    key: key.clone(),
                    error: error.message.clone(),
                    transient: !error.fatal,
                    at: crate::session::now_utc(),
                })?;
                bar.set_message(format!("{} failed", failed.len() + 1));
                if error.fatal && fatal.is_none() {
                    fatal = Some(error.message.clone());
                    fatal_seen.cancel();
                }
                failed.push((key, error.message));
                progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        bar.inc(1);
    }
    results_w.sync()?;
    audit_w.sync()?;
    errors_w.sync()?;
    calls_w.sync()?;
    bar.finish_and_clear();
    let (mut run_log, _) = JsonlWriter::open(&ns_dir.join(files::RUN_LOG))?;
    run_log.append(&RunLogLine {
        started_at,
        ended_at: crate::session::now_utc(),
        wall_secs: started.elapsed().as_secs_f64(),
        resumed,
        finished: results.len() - resumed,
        failed: failed.len(),
        abandoned,
        cancelled: cancel.is_cancelled(),
    })?;
    run_log.sync()?;
    if let Some(message) = fatal {
        anyhow::bail!("{label}: stopped at the first non-retryable error: {message}");
    }
    Ok(Outcome {
        results,
        failed,
        cancelled: cancel.is_cancelled(),
        abandoned,
        resumed,
        torn_bytes: torn_results + torn_audit + torn_errors,
    })
}
