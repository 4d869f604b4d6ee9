//! The engine: runs the work items of one namespace, method-agnostic.
//!
//! It skips the items already in `results.jsonl`, runs the rest
//! concurrently, appends each result (or error) as it finishes, keeps the
//! audit file in step, logs every call, and stops cleanly on cancellation
//! (in-flight requests get a grace period, then are abandoned and redone on
//! resume). Methods supply the per-item work; the runner decides what to do
//! with the results.

use crate::audit::AuditEvent;
use crate::llm::CallRecord;
use crate::outcome::Progress;
use crate::store::{
    load_jsonl, ErrorLine, JsonlWriter, NamespaceDir, RunLogLine, StepLog, WriterFiles,
};
use anyhow::Result;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Implements [`Record`] for a record struct with the usual fields: `key:
/// String`, `audit: Vec<AuditEvent>` and `usage: Usage`.
#[macro_export]
macro_rules! record_with_fields {
    ($record:ty) => {
        impl $crate::engine::Record for $record {
            fn key(&self) -> &str {
                &self.key
            }
            fn audit_events(&self) -> &[$crate::audit::AuditEvent] {
                &self.audit
            }
            fn audit_events_mut(&mut self) -> &mut Vec<$crate::audit::AuditEvent> {
                &mut self.audit
            }
            fn usage(&self) -> $crate::llm::Usage {
                self.usage
            }
        }
    };
}
pub use record_with_fields;

/// What every checkpointed result record provides to the engine.
pub trait Record: Serialize + DeserializeOwned + Send + 'static {
    /// The checkpoint key.
    fn key(&self) -> &str;
    /// Audit events produced while computing this record.
    fn audit_events(&self) -> &[AuditEvent];
    /// The record's audit events, for the engine to add call-level events
    /// (e.g. `implausible_usage`) before the record is stored.
    fn audit_events_mut(&mut self) -> &mut Vec<AuditEvent>;
    /// Tokens the record's calls used.
    fn usage(&self) -> crate::llm::Usage;
}

/// A cooperative stop signal shared by the CLI and the engine: once it is
/// set no new item starts, and items in flight get its grace period to
/// finish before they are abandoned (and redone on resume).
#[derive(Debug, Clone)]
pub struct Cancel {
    token: CancellationToken,
    grace: Duration,
    reason: Arc<std::sync::OnceLock<crate::stop::StopSignal>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::with_grace(crate::stop::DEFAULT_GRACE)
    }
}

impl Cancel {
    /// A stop signal whose requests in flight get `grace` to finish.
    pub fn with_grace(grace: Duration) -> Cancel {
        Cancel {
            token: CancellationToken::new(),
            grace,
            reason: Arc::default(),
        }
    }

    /// Asks running methods to stop issuing new work because of `signal`
    /// (the first reason given is kept).
    pub fn stop_for(&self, signal: crate::stop::StopSignal) {
        let _ = self.reason.set(signal);
        self.token.cancel();
    }

    /// Whether a stop was requested.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The signal that asked for the stop, if one did.
    pub fn reason(&self) -> Option<crate::stop::StopSignal> {
        self.reason.get().copied()
    }

    /// Resolves once a stop was requested and the grace period has passed.
    pub async fn grace_expired(&self) {
        self.token.cancelled().await;
        tokio::time::sleep(self.grace).await;
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

impl ItemError {
    /// The item failed because its call failed: fatal unless the error is
    /// transient (retrying on resume may help).
    pub fn from_call(e: &crate::llm::CallError) -> ItemError {
        ItemError {
            fatal: !matches!(e, crate::llm::CallError::Transient { .. }),
            message: e.to_string(),
        }
    }
}

/// The finished steps of one item, for an item that makes several calls:
/// what an earlier process saved for it before it was stopped, and where to
/// save more ([`crate::store::steps`]). A step saved here is not sent again
/// after a `kill -9`; it is dropped once the item has a record.
///
/// An item that saves steps logs each of its calls as it is made
/// ([`ItemSteps::log_call`]) and returns no calls in its [`ItemOutput`]
/// (it adds their audit events itself, [`add_call_audit`]): a call restored
/// from a step was logged by the process that made it, so every call is
/// logged once, whenever the process stops.
pub struct ItemSteps {
    key: String,
    done: Vec<serde_json::Value>,
    log: Arc<StepLog>,
    calls: Arc<std::sync::Mutex<JsonlWriter>>,
}

impl ItemSteps {
    /// Steps saved for this item by an earlier process, in order.
    pub fn done(&self) -> &[serde_json::Value] {
        &self.done
    }

    /// Saves a finished step (one line, written at once).
    pub fn save<T: Serialize>(&self, step: &T) -> Result<()> {
        self.log.save(&self.key, serde_json::to_value(step)?)
    }

    /// Appends a call to the namespace's call log now.
    pub fn log_call(&self, call: &CallRecord) -> Result<()> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(call)
    }
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

/// Adds an `implausible_usage` event for every call of an item whose reply
/// reported token counts that cannot be right (see
/// [`crate::llm::UsageAnomaly`]); ids are stable per call position.
pub fn add_call_audit(key: &str, calls: &[CallRecord], audit: &mut Vec<AuditEvent>) {
    for (i, call) in calls.iter().enumerate() {
        let Some(anomaly) = &call.usage_anomaly else {
            continue;
        };
        let mut event = AuditEvent::new(
            key,
            &call.uuid,
            &call.method,
            "usage",
            "implausible_usage",
            crate::audit::Severity::Warning,
            serde_json::json!({
                "role": call.role,
                "call": i,
                "reported": anomaly.reported,
                "problems": anomaly.problems,
                "counted": call.usage,
            }),
        );
        event.event_id = format!("{key}/implausible_usage/{i}");
        event.repeat = call.repeat;
        if !audit.iter().any(|e| e.event_id == event.event_id) {
            audit.push(event);
        }
    }
}

/// One namespace's work for the engine.
pub struct Job<'a> {
    /// Where the namespace's files are.
    pub ns: &'a NamespaceDir,
    /// The files this process appends to (the namespace's own, or its
    /// shard's); results in any of the namespace's files count as done.
    pub files: &'a WriterFiles,
    /// The items to run (those already in `results.jsonl` are skipped).
    pub items: Vec<WorkItem>,
    /// Most items in flight at once.
    pub concurrency: usize,
    /// The stop signal.
    pub cancel: &'a Cancel,
    /// Counters for observers.
    pub progress: &'a Progress,
}

/// A namespace's checkpoint files, open for appending, and the ids of the
/// audit events already stored (each event is written once).
struct Checkpoint {
    calls: Arc<std::sync::Mutex<JsonlWriter>>,
    results: JsonlWriter,
    audit: JsonlWriter,
    errors: JsonlWriter,
    audit_ids: HashSet<String>,
    /// Bytes of torn tails cut when the files were opened.
    torn_bytes: usize,
}

impl Checkpoint {
    /// Opens the files (cutting torn tails) and reads the stored audit ids.
    fn open(files: &WriterFiles) -> Result<Checkpoint> {
        let (calls, _) = JsonlWriter::open(&files.calls)?;
        let (results, torn_results) = JsonlWriter::open(&files.results)?;
        let (audit, torn_audit) = JsonlWriter::open(&files.audit)?;
        let (errors, torn_errors) = JsonlWriter::open(&files.errors)?;
        let (stored, _) = load_jsonl::<AuditEvent>(&files.audit)?;
        Ok(Checkpoint {
            calls: Arc::new(std::sync::Mutex::new(calls)),
            results,
            audit,
            errors,
            audit_ids: stored.into_iter().map(|e| e.event_id).collect(),
            torn_bytes: torn_results + torn_audit + torn_errors,
        })
    }

    /// The stored results of the `wanted` keys, from every results file of
    /// the namespace (its own, then each shard's; the first record of a key
    /// wins); audit events of this writer's own results that a crash kept
    /// from being appended are appended now.
    fn load<R: Record>(
        &mut self,
        ns: &NamespaceDir,
        own: &WriterFiles,
        wanted: &HashSet<&str>,
    ) -> Result<HashMap<String, R>> {
        let mut results: HashMap<String, R> = HashMap::new();
        let mut own_keys: Vec<String> = Vec::new();
        for path in ns.results_files() {
            let mine = path == own.results;
            crate::store::read_jsonl(&path, |r: R| {
                if wanted.contains(r.key()) && !results.contains_key(r.key()) {
                    if mine {
                        own_keys.push(r.key().to_string());
                    }
                    results.insert(r.key().to_string(), r);
                }
            })?;
        }
        own_keys.sort();
        for k in own_keys {
            self.append_audit(results[&k].audit_events())?;
        }
        Ok(results)
    }

    fn append_audit(&mut self, events: &[AuditEvent]) -> Result<()> {
        for e in events {
            if self.audit_ids.insert(e.event_id.clone()) {
                self.audit.append(e)?;
            }
        }
        Ok(())
    }

    /// Stores a finished item: its calls, its record (with call-level audit
    /// events added) and the record's new audit events.
    fn store<R: Record>(&mut self, key: &str, calls: &[CallRecord], mut record: R) -> Result<R> {
        self.log_calls(calls)?;
        add_call_audit(key, calls, record.audit_events_mut());
        self.results.append(&record)?;
        self.append_audit(record.audit_events())?;
        Ok(record)
    }

    /// Stores a failed item: its calls and an `errors.jsonl` line.
    fn store_error(&mut self, key: &str, calls: &[CallRecord], error: &ItemError) -> Result<()> {
        self.log_calls(calls)?;
        self.errors.append(&ErrorLine {
            key: key.to_string(),
            error: error.message.clone(),
            transient: !error.fatal,
            at: crate::store::session::now_utc(),
        })
    }

    fn log_calls(&self, calls: &[CallRecord]) -> Result<()> {
        let mut log = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        for call in calls {
            log.append(call)?;
        }
        Ok(())
    }

    /// Makes everything written durable.
    fn sync(&mut self) -> Result<()> {
        self.results.sync()?;
        self.audit.sync()?;
        self.errors.sync()?;
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).sync()
    }
}

/// The items' results so far and what went wrong.
struct Pass<R> {
    results: HashMap<String, R>,
    failed: Vec<(String, String)>,
    abandoned: usize,
    /// The first non-retryable error: it stops the pass.
    fatal: Option<String>,
}

/// Runs `work` over every item of `job` not already in the namespace's
/// results.
pub async fn run_items<R, F, Fut>(job: Job<'_>, work: F) -> Result<Outcome<R>>
where
    R: Record,
    F: Fn(WorkItem, ItemSteps) -> Fut,
    Fut: Future<Output = ItemOutput<R>>,
{
    let label = job.ns.name.as_str();
    let mut checkpoint = Checkpoint::open(job.files)?;
    let wanted: HashSet<&str> = job.items.iter().map(|i| i.key.as_str()).collect();
    let results: HashMap<String, R> = checkpoint.load(job.ns, job.files, &wanted)?;
    let resumed = results.len();
    let started = std::time::Instant::now();
    let started_at = crate::store::session::now_utc();
    let pending: Vec<WorkItem> = job
        .items
        .iter()
        .filter(|i| !results.contains_key(&i.key))
        .cloned()
        .collect();
    let pending_keys: HashSet<&str> = pending.iter().map(|i| i.key.as_str()).collect();
    let (step_log, saved_steps) = StepLog::open(&job.files.steps, &pending_keys)?;
    let steps = Steps {
        log: Arc::new(step_log),
        saved: saved_steps,
    };
    job.progress.reset(label, resumed + pending.len(), resumed);
    let pass = Pass {
        results,
        failed: Vec::new(),
        abandoned: 0,
        fatal: None,
    };
    let (pass, steps) = drive(&job, &mut checkpoint, pending, pass, steps, work).await?;
    checkpoint.sync()?;
    if job.items.iter().all(|i| pass.results.contains_key(&i.key)) {
        steps.log.remove()?;
    } else {
        steps.log.sync()?;
    }
    job.progress.end_namespace(label);
    let (mut run_log, _) = JsonlWriter::open(&job.files.run_log)?;
    run_log.append(&RunLogLine {
        shard: job.files.shard.map(|s| s.to_string()),
        started_at,
        ended_at: crate::store::session::now_utc(),
        wall_secs: started.elapsed().as_secs_f64(),
        resumed,
        finished: pass.results.len() - resumed,
        failed: pass.failed.len(),
        abandoned: pass.abandoned,
        cancelled: job.cancel.is_cancelled(),
        stopped_by: job.cancel.reason().map(|s| s.name().to_string()),
    })?;
    run_log.sync()?;
    if let Some(message) = pass.fatal {
        anyhow::bail!("{label}: stopped at the first non-retryable error: {message}");
    }
    Ok(Outcome {
        results: pass.results,
        failed: pass.failed,
        cancelled: job.cancel.is_cancelled(),
        abandoned: pass.abandoned,
        resumed,
        torn_bytes: checkpoint.torn_bytes,
    })
}

/// The steps file of a pass and the steps an earlier process saved, by item
/// key (handed to each item as it starts).
struct Steps {
    log: Arc<StepLog>,
    saved: HashMap<String, Vec<serde_json::Value>>,
}

/// The concurrent pass: up to `concurrency` items in flight, each stored as
/// it finishes; no new item starts after a stop request or a non-retryable
/// error, and items still in flight a grace period after a stop request are
/// abandoned (redone on resume, with the steps they saved).
async fn drive<R, F, Fut>(
    job: &Job<'_>,
    checkpoint: &mut Checkpoint,
    pending: Vec<WorkItem>,
    mut pass: Pass<R>,
    mut steps: Steps,
    work: F,
) -> Result<(Pass<R>, Steps)>
where
    R: Record,
    F: Fn(WorkItem, ItemSteps) -> Fut,
    Fut: Future<Output = ItemOutput<R>>,
{
    let log = steps.log.clone();
    let call_log = checkpoint.calls.clone();
    let saved = &mut steps.saved;
    let fatal_seen = CancellationToken::new();
    let stop = job.cancel.clone();
    let stop_fatal = fatal_seen.clone();
    let mut stream = futures::stream::iter(pending)
        .take_while(move |_| {
            futures::future::ready(!stop.is_cancelled() && !stop_fatal.is_cancelled())
        })
        .map(|item| {
            let key = item.key.clone();
            let item_steps = ItemSteps {
                key: key.clone(),
                done: saved.remove(&key).unwrap_or_default(),
                log: log.clone(),
                calls: call_log.clone(),
            };
            let fut = work(item, item_steps);
            let cancel = job.cancel.clone();
            async move {
                tokio::select! {
                    out = fut => (key, Some(out)),
                    _ = cancel.grace_expired() => (key, None),
                }
            }
        })
        .buffer_unordered(job.concurrency.max(1));
    while let Some((key, output)) = stream.next().await {
        let Some(output) = output else {
            pass.abandoned += 1;
            continue;
        };
        match output.result {
            Ok(record) => {
                let record = checkpoint.store(&key, &output.calls, record)?;
                pass.results.insert(key, record);
                job.progress.item_finished();
            }
            Err(error) => {
                // Its saved steps stay: a resume reuses them.
                checkpoint.store_error(&key, &output.calls, &error)?;
                if error.fatal && pass.fatal.is_none() {
                    pass.fatal = Some(error.message.clone());
                    fatal_seen.cancel();
                }
                pass.failed.push((key, error.message));
                job.progress.item_failed();
            }
        }
    }
    drop(stream);
    Ok((pass, steps))
}
