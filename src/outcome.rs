//! What runs report, to the CLI, to observers and to readers: how a run
//! ended ([`RunStatus`], [`RunReport`], one [`MethodSummary`] per namespace),
//! the live [`Progress`] of the namespace being run, and the
//! [`RunObserver`] events a run emits. Runner, tracking and report all
//! depend on these types; none of them is defined by the runner.

use crate::metrics::Metrics;
use crate::store::UsageTotals;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Items per example (a stability sweep's K; else 1).
    pub repeats: usize,
    /// Items that failed in this run.
    pub failed: usize,
    /// Metrics, when the method completed.
    pub metrics: Option<Metrics>,
    /// Tokens used by the finished items.
    pub usage: UsageTotals,
    /// Sweep metrics, for `stability_*` namespaces.
    pub stability: Option<crate::stability::StabilityMetrics>,
    /// The headline numbers and the paper's table defining them, when the
    /// method completed.
    #[serde(default)]
    pub headline: Option<crate::headline::Headline>,
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
    /// The shard this process ran, if it was one.
    pub shard: Option<crate::shard::Shard>,
    /// Whether this process only finalized (`w2c finalize`).
    pub finalizing: bool,
    /// The signal that interrupted the run, when one did.
    pub stopped_by: Option<crate::stop::StopSignal>,
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

/// Live counters of the session being run and of its current namespace,
/// updated by the runner and the engine, read by whoever shows progress
/// (the CLI's bars or log lines, the tracker's progress metrics). Changes of
/// namespace are also queued as [`ProgressEvent`]s, so a reader that polls
/// sees every namespace begin and end, however short.
#[derive(Debug)]
pub struct Progress {
    /// Items in the current namespace.
    pub total: AtomicUsize,
    /// Items of the current namespace with a result (earlier runs included).
    pub done: AtomicUsize,
    /// Items of the current namespace that failed in this run.
    pub failed: AtomicUsize,
    /// Items of the current namespace finished by this process (for the rate).
    pub finished_here: AtomicUsize,
    /// Items in every planned namespace of the session.
    pub session_total: AtomicUsize,
    /// Items of the session with a result (earlier runs included).
    pub session_done: AtomicUsize,
    /// Items of the session finished by this process.
    pub session_finished_here: AtomicUsize,
    started: Mutex<Instant>,
    session_started: Mutex<Instant>,
    events: Mutex<VecDeque<ProgressEvent>>,
}

/// A change a progress reader must not miss.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    /// The session's plan is known: its namespaces, every item and those
    /// already done.
    SessionStarted {
        /// The planned namespaces, in order.
        namespaces: Vec<String>,
        /// Items in all of them.
        total: usize,
        /// Items with a result already.
        done: usize,
    },
    /// The engine started a namespace with `done` of `total` items stored.
    NamespaceStarted {
        /// The namespace.
        name: String,
        /// Its items.
        total: usize,
        /// Items with a result already.
        done: usize,
    },
    /// The engine's pass over a namespace ended.
    NamespaceEnded {
        /// The namespace.
        name: String,
        /// Items with a result.
        done: usize,
        /// Its items.
        total: usize,
        /// Items that failed in this pass.
        failed: usize,
        /// Items finished by this pass.
        finished_here: usize,
        /// Duration of the pass.
        elapsed: Duration,
    },
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finished_here: AtomicUsize::new(0),
            session_total: AtomicUsize::new(0),
            session_done: AtomicUsize::new(0),
            session_finished_here: AtomicUsize::new(0),
            started: Mutex::new(Instant::now()),
            session_started: Mutex::new(Instant::now()),
            events: Mutex::new(VecDeque::new()),
        }
    }
}

impl Progress {
    /// Starts counting a session whose planned namespaces hold `total`
    /// items, `done` of them with a result already.
    pub fn begin_session(&self, namespaces: Vec<String>, total: usize, done: usize) {
        self.session_total.store(total, Ordering::Relaxed);
        self.session_done.store(done, Ordering::Relaxed);
        self.session_finished_here.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.session_started.lock() {
            *s = Instant::now();
        }
        self.push(ProgressEvent::SessionStarted {
            namespaces,
            total,
            done,
        });
    }

    /// Starts counting namespace `name` of `total` items of which `done`
    /// exist.
    pub fn reset(&self, name: &str, total: usize, done: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.finished_here.store(0, Ordering::Relaxed);
        if let Ok(mut s) = self.started.lock() {
            *s = Instant::now();
        }
        self.push(ProgressEvent::NamespaceStarted {
            name: name.to_string(),
            total,
            done,
        });
    }

    /// An item of the current namespace got its result.
    pub fn item_finished(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.finished_here.fetch_add(1, Ordering::Relaxed);
        self.session_done.fetch_add(1, Ordering::Relaxed);
        self.session_finished_here.fetch_add(1, Ordering::Relaxed);
    }

    /// An item of the current namespace failed after its retries.
    pub fn item_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The engine's pass over namespace `name` ended.
    pub fn end_namespace(&self, name: &str) {
        self.push(ProgressEvent::NamespaceEnded {
            name: name.to_string(),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            finished_here: self.finished_here.load(Ordering::Relaxed),
            elapsed: self.elapsed(),
        });
    }

    /// Time since the current namespace started ([`Progress::reset`]).
    pub fn elapsed(&self) -> Duration {
        self.started.lock().map(|s| s.elapsed()).unwrap_or_default()
    }

    /// Time since [`Progress::begin_session`].
    pub fn session_elapsed(&self) -> Duration {
        self.session_started
            .lock()
            .map(|s| s.elapsed())
            .unwrap_or_default()
    }

    /// The events queued since the last call, oldest first.
    pub fn drain_events(&self) -> Vec<ProgressEvent> {
        self.events
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn push(&self, event: ProgressEvent) {
        if let Ok(mut q) = self.events.lock() {
            // A reader that never drains (no display) keeps a bounded queue.
            if q.len() >= 1024 {
                q.pop_front();
            }
            q.push_back(event);
        }
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

    /// A namespace was finalized (its `_DONE.json` is written) by this
    /// process. Shards call it holding the finalize lock, so one observer at
    /// a time mirrors the session; an unsharded run sees the same in
    /// [`RunObserver::namespace_stopped`] and may ignore this.
    fn namespace_finalized(&self, _ns: &str) -> impl Future<Output = ()> {
        async {}
    }

    /// The run failed with `err`; namespaces still open stopped with it.
    fn run_failed(&self, err: &anyhow::Error) -> impl Future<Output = ()>;

    /// The run ended with `report`; returns notes for the user.
    fn run_finished(&self, report: &RunReport) -> impl Future<Output = Vec<String>>;
}
