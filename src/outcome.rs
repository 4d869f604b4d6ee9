//! What runs report, to the CLI, to observers and to readers: how a run
//! ended ([`RunStatus`], [`RunReport`], one [`MethodSummary`] per namespace),
//! the live [`Progress`] of the namespace being run, and the
//! [`RunObserver`] events a run emits. Runner, tracking and report all
//! depend on these types; none of them is defined by the runner.

use crate::metrics::Metrics;
use crate::store::UsageTotals;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every enabled method finished and has its `_DONE.json`.
    Complete,
    /// Some items failed after their retries; resume retries them.
    Incomplete,
    /// Stopped by Ctrl-C; resume continues.
    Interrupted,
}

/// The summary of one method namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodSummary {
    /// Namespace name.
    pub namespace: String,
    /// Items with a result.
    pub done: usize,
    /// Items in the namespace.
    pub total: usize,
    /// Items that failed in this run.
    pub failed: usize,
    /// Metrics, when the method completed.
    pub metrics: Option<Metrics>,
    /// Tokens used by the finished items.
    pub usage: UsageTotals,
    /// Sweep metrics, for `stability_*` namespaces.
    pub stability: Option<crate::stability::StabilityMetrics>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Session directory.
    pub session_dir: PathBuf,
    /// RUN_KEY.
    pub run_key: String,
    /// Full fingerprint.
    pub fingerprint: String,
    /// Whether the session was created by this run.
    pub created: bool,
    /// Per-method summaries.
    pub methods: Vec<MethodSummary>,
    /// Overall status.
    pub status: RunStatus,
    /// Notes for the user (torn lines cut, resumed items...).
    pub notes: Vec<String>,
}

impl RunReport {
    /// Records that a namespace ended without all its results: interrupted
    /// when a stop was requested, else incomplete (an interrupt is never
    /// downgraded).
    pub fn mark_unfinished(&mut self, cancelled: bool) {
        if cancelled {
            self.status = RunStatus::Interrupted;
        } else if self.status == RunStatus::Complete {
            self.status = RunStatus::Incomplete;
        }
    }
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

/// What a run tells whoever watches it: the MLflow tracker (online, or
/// recording that the session is offline), or a test. The runner emits
/// these events and knows nothing of what is done with them; an observer
/// never fails the evaluation (it records what it could not do itself).
pub trait RunObserver {
    /// The counters the engine updates while a namespace runs.
    fn progress(&self) -> Arc<Progress>;

    /// A namespace starts running (earlier results of it may exist).
    fn namespace_started(&self, ns: &str) -> impl Future<Output = ()>;

    /// A namespace stopped: finished (its `_DONE.json` is written),
    /// interrupted (`cancelled`) or left with failed items.
    fn namespace_stopped(&self, ns: &str, cancelled: bool) -> impl Future<Output = ()>;

    /// The run failed with `err`; namespaces still open stopped with it.
    fn run_failed(&self, err: &anyhow::Error) -> impl Future<Output = ()>;

    /// The run ended with `report`; returns notes for the user.
    fn run_finished(&self, report: &RunReport) -> impl Future<Output = Vec<String>>;
}
