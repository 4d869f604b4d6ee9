//! The one skeleton every method namespace runs through: claim the
//! namespace → skip it when done → the method's `before_items` → the
//! engine over its items → records in item order → usage → the method's
//! conclusion → artifacts → `_DONE.json`, written last. Methods supply only
//! what differs (see [`crate::methods::Method`]).

use super::Run;
use crate::dataset::Example;
use crate::engine::{Job, Outcome};
use crate::engine::{Record, WorkItem};
use crate::llm::Client;
use crate::methods::{Concluding, Conclusion, Method, NotStarted, Plan as _, Scores};
use crate::outcome::{MethodSummary, RunObserver, RunReport};
use crate::store::session::{self, Session};
use crate::store::{
    file_digest, names, read_json, write_bytes_atomic, DoneMarker, FileDigest, MethodSettings,
    MetricsFile, NamespaceDir, UsageTotals,
};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};

/// What running a namespace left.
pub(super) struct Ran<R> {
    /// Its summary for the report.
    pub summary: MethodSummary,
    /// Every record, by key (empty when the namespace was done and the
    /// method did not ask for its records).
    pub results: HashMap<String, R>,
    /// Whether every item has a record.
    pub complete: bool,
    /// Whether a stop was requested while it ran.
    pub cancelled: bool,
}

/// Runs one namespace of `method` to its end (or to an interrupt or a
/// failed item) and tells the observer it started and stopped.
pub(super) async fn run_namespace<M: Method, O: RunObserver>(
    run: &Run<'_, O>,
    method: &M,
    report: &mut RunReport,
) -> Result<Ran<M::Record>> {
    let settings = method.settings();
    let ns = session::claim_namespace(&run.session.dir, &settings)?;
    if ns.is_done() && !method.records_needed_when_done() {
        return Ok(Ran {
            summary: done_summary(&ns, method.plan().repeats())?,
            results: HashMap::new(),
            complete: true,
            cancelled: false,
        });
    }
    let examples = run.examples.get()?;
    let items = method.items(examples);
    let total = items.len();
    if !ns.is_done() {
        run.session.mark_updated()?;
        let notes = match method.before_items(&ns, examples).await {
            Ok(notes) => notes,
            Err(e) if e.downcast_ref::<NotStarted>().is_some() => {
                return not_started(&ns, method, &items, report, &e);
            }
            Err(e) => return Err(e),
        };
        for note in notes {
            report.notes.push(format!("{}: {note}", ns.name));
        }
    }
    run.observer.namespace_started(&ns.name).await;
    let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    let progress = run.observer.progress();
    let job = Job {
        ns: &ns,
        items: items.into_iter().filter(|i| method.runnable(i)).collect(),
        concurrency: method.caller().client.max_concurrency,
        cancel: run.cancel,
        progress: &progress,
    };
    let outcome = crate::engine::run_items(job, |item, steps| {
        let example = &examples[item.index];
        method.work(&ns.name, item, example, steps)
    })
    .await?;
    note_outcome(report, &ns.name, &outcome, &method.caller().client, total);
    let ordered: Vec<&M::Record> = keys.iter().filter_map(|k| outcome.results.get(k)).collect();
    let mut summary = MethodSummary {
        namespace: ns.name.clone(),
        done: ordered.len(),
        total,
        repeats: method.plan().repeats(),
        failed: outcome.failed.len(),
        metrics: None,
        usage: method.usage(&ordered),
        stability: None,
    };
    let complete = ordered.len() == total;
    if !complete {
        report.mark_unfinished(outcome.cancelled);
    } else {
        let (metrics, notes) = finish(run, method, &ns, &settings, examples, &ordered, &summary)?;
        if let Some(m) = metrics {
            summary.metrics = Some(m.metrics);
            summary.stability = m.stability;
        }
        for note in notes {
            report.notes.push(format!("{}: {note}", ns.name));
        }
    }
    run.observer
        .namespace_stopped(&ns.name, run.cancel.is_cancelled())
        .await;
    Ok(Ran {
        summary,
        results: outcome.results,
        complete,
        cancelled: outcome.cancelled,
    })
}

/// A namespace whose `before_items` could not finish ([`NotStarted`]): it
/// stays unfinished with the records it has, the run is incomplete, and the
/// reason is a note.
fn not_started<M: Method>(
    ns: &NamespaceDir,
    method: &M,
    items: &[WorkItem],
    report: &mut RunReport,
    why: &anyhow::Error,
) -> Result<Ran<M::Record>> {
    let (stored, _) = crate::store::load_jsonl::<M::Record>(&ns.results())?;
    let keys: std::collections::HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let results: HashMap<String, M::Record> = stored
        .into_iter()
        .filter(|r| keys.contains(r.key()))
        .map(|r| (r.key().to_string(), r))
        .collect();
    let records: Vec<&M::Record> = results.values().collect();
    report.notes.push(format!(
        "{}: not started: {why:#}; a resume tries again",
        ns.name
    ));
    report.mark_unfinished(false);
    Ok(Ran {
        summary: MethodSummary {
            namespace: ns.name.clone(),
            done: results.len(),
            total: items.len(),
            repeats: method.plan().repeats(),
            failed: 0,
            metrics: None,
            usage: method.usage(&records),
            stability: None,
        },
        results,
        complete: false,
        cancelled: false,
    })
}

/// The end of a namespace whose items all have records: the method's
/// conclusion and its files with `_DONE.json` written last, or (a done
/// namespace whose records were needed) the metrics it already has.
/// Returns the metrics file, if any, and the conclusion's notes.
fn finish<M: Method, O>(
    run: &Run<'_, O>,
    method: &M,
    ns: &NamespaceDir,
    settings: &MethodSettings,
    examples: &[Example],
    records: &[&M::Record],
    summary: &MethodSummary,
) -> Result<(Option<MetricsFile>, Vec<String>)> {
    if ns.is_done() {
        return Ok((read_json::<MetricsFile>(&ns.metrics()).ok(), Vec::new()));
    }
    let ctx = Concluding {
        namespace: &ns.name,
        examples,
        seed: run.seed,
    };
    let conclusion = method.conclude(&ctx, records)?;
    let metrics_file = conclusion.scores.as_ref().map(|scores| {
        metrics_file(run.session, settings, ns, scores, &summary.usage, || {
            method.audit(records)
        })
    });
    let notes = conclusion.notes.clone();
    write_outputs(
        run.session,
        ns,
        settings,
        summary.total,
        conclusion,
        metrics_file.as_ref(),
    )?;
    Ok((metrics_file, notes))
}

/// The summary of a namespace already marked done: its item count from
/// `_DONE.json` (written only once every item had a result), the rest from
/// its metrics when it has them (a judge's target stream has none).
pub(super) fn done_summary(ns: &NamespaceDir, repeats: usize) -> Result<MethodSummary> {
    let context = || format!("namespace {} is marked done", ns.name);
    let done: DoneMarker = read_json(&ns.done_marker()).with_context(context)?;
    if !ns.metrics().exists() {
        return Ok(MethodSummary {
            namespace: ns.name.clone(),
            done: done.n_items,
            total: done.n_items,
            repeats,
            failed: 0,
            metrics: None,
            usage: UsageTotals::default(),
            stability: None,
        });
    }
    let stored: MetricsFile = read_json(&ns.metrics()).with_context(context)?;
    Ok(MethodSummary {
        namespace: ns.name.clone(),
        // Items, as everywhere (a sweep's metrics count examples).
        done: done.n_items,
        total: done.n_items,
        repeats,
        failed: 0,
        metrics: Some(stored.metrics),
        usage: stored.usage,
        stability: stored.stability,
    })
}

/// `metrics.json` of a namespace with scores.
fn metrics_file(
    session: &Session,
    settings: &MethodSettings,
    ns: &NamespaceDir,
    scores: &Scores,
    usage: &UsageTotals,
    audit: impl FnOnce() -> crate::audit::AuditSummary,
) -> MetricsFile {
    MetricsFile {
        method: settings.method.clone(),
        namespace: ns.name.clone(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        n_examples: scores.n_examples,
        metrics: scores.metrics.clone(),
        usage: *usage,
        counts: scores.counts.clone(),
        audit: audit(),
        stability: scores.stability.clone(),
        variants: scores.variants.clone(),
        paper: scores.variants.as_ref().and_then(|v| {
            Some(crate::metrics::PaperMetrics::new(
                v.get("acc")?,
                v.get("acc_norm")?,
            ))
        }),
        official_judge: scores.official_judge.clone(),
    }
}

/// Pretty JSON with a final newline, as the store writes JSON files.
fn pretty_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(v)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes a finished namespace's artifacts — with scores: metrics,
/// predictions, audit summary, CSVs and charts (`consistency.svg` for
/// sweeps); then the method's extra files — and last `_DONE.json` naming
/// exactly the files written.
fn write_outputs(
    session: &Session,
    ns: &NamespaceDir,
    settings: &MethodSettings,
    n_items: usize,
    conclusion: Conclusion,
    metrics_file: Option<&MetricsFile>,
) -> Result<()> {
    let mut written: Vec<&str> = Vec::new();
    let mut put = |name: &'static str, bytes: &[u8]| -> Result<()> {
        write_bytes_atomic(&ns.artifact(name), bytes)?;
        written.push(name);
        Ok(())
    };
    if let (Some(scores), Some(m)) = (&conclusion.scores, metrics_file) {
        put(names::METRICS, &pretty_json(m)?)?;
        let mut predictions = Vec::new();
        for row in &scores.predictions {
            serde_json::to_writer(&mut predictions, row)?;
            predictions.push(b'\n');
        }
        put(names::PREDICTIONS, &predictions)?;
        put(names::AUDIT_SUMMARY, &pretty_json(&m.audit)?)?;
        for (name, bytes) in crate::export::files(&ns.name, m, scores.consistencies.as_deref()) {
            put(name, bytes.as_bytes())?;
        }
    }
    for (name, bytes) in &conclusion.extra {
        put(name, bytes)?;
    }
    written.push(names::CALLS);
    write_done(session, ns, settings, n_items, &written)
}

/// Writes `_DONE.json` with digests of the checkpoint files and `artifacts`
/// (every one of which must exist: the list says what was written). Call
/// only after every file it names is durable.
fn write_done(
    session: &Session,
    ns: &NamespaceDir,
    settings: &MethodSettings,
    n_items: usize,
    artifacts: &[&str],
) -> Result<()> {
    let digest = |p: &std::path::Path| -> Result<FileDigest> {
        let (sha256, bytes) = file_digest(p)?;
        Ok(FileDigest { sha256, bytes })
    };
    let mut checkpoint_files = BTreeMap::new();
    // Checkpoint files that exist (an errors file only after a failure).
    for name in [names::RESULTS, names::ERRORS, names::AUDIT, names::SETTINGS] {
        let p = ns.checkpoint(name);
        if p.exists() {
            checkpoint_files.insert(name.to_string(), digest(&p)?);
        }
    }
    let mut artifact_files = BTreeMap::new();
    for name in artifacts {
        let d = digest(&ns.artifact(name)).with_context(|| {
            format!(
                "{}: `_DONE.json` would name {name}, which was not written",
                ns.name
            )
        })?;
        artifact_files.insert(name.to_string(), d);
    }
    let marker = DoneMarker {
        method: settings.method.clone(),
        namespace: ns.name.clone(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        done_at: session::now_utc(),
        n_items,
        n_result_lines: crate::store::jsonl::count_lines(&ns.results())?,
        checkpoint_files,
        artifact_files,
    };
    crate::store::write_json_atomic(&ns.done_marker(), &marker)
}

/// Notes for the user about how the engine's pass over a namespace went.
fn note_outcome<R>(
    report: &mut RunReport,
    ns: &str,
    outcome: &Outcome<R>,
    client: &Client,
    total: usize,
) {
    if outcome.torn_bytes > 0 {
        report.notes.push(format!(
            "{ns}: cut {} bytes of a torn checkpoint line left by an interrupted run",
            outcome.torn_bytes
        ));
    }
    if outcome.abandoned > 0 {
        report.notes.push(format!(
            "{ns}: {} requests in flight were abandoned at the interrupt; they will be redone",
            outcome.abandoned
        ));
    }
    let stats = client.limiter.stats();
    if stats.decreases > 0 {
        report.notes.push(format!(
            "{ns}: rate limited: concurrency was cut {} times (lowest {}), now {}",
            stats.decreases, stats.min_limit, stats.limit
        ));
    }
    if outcome.resumed > 0 {
        report.notes.push(format!(
            "{ns}: {} of {total} items were already done",
            outcome.resumed
        ));
    }
    for (key, err) in outcome.failed.iter().take(3) {
        report.notes.push(format!("{ns}: {key}: {err}"));
    }
}
