//! The one skeleton every method namespace runs through: claim the
//! namespace → skip it when done → the method's `before_items` → the
//! engine over this process's items (all, or a shard's slice) → when every
//! item of the namespace has a result, finalize it: the shards' files
//! merged, records in item order → usage → the method's conclusion →
//! artifacts → `_DONE.json`, written last. Methods supply only what differs
//! (see [`crate::methods::Method`]).

use super::{Run, Slice};
use crate::dataset::Example;
use crate::engine::{Job, Outcome, WorkItem};
use crate::llm::Client;
use crate::methods::{Concluding, Conclusion, Method, NotStarted, Plan as _, Scores};
use crate::outcome::{MethodSummary, RunObserver, RunReport};
use crate::store::session::{self, Session};
use crate::store::{
    file_digest, names, read_json, write_bytes_atomic, DoneMarker, FileDigest, MethodSettings,
    MetricsFile, NamespaceDir, UsageTotals,
};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What running a namespace left.
pub(super) struct Ran<R> {
    /// This process's part for the report: its items (all of them unless it
    /// is a shard), with the metrics once the namespace is finalized.
    pub summary: MethodSummary,
    /// The records of this process's items, by key (empty when the
    /// namespace was done and the method did not ask for its records).
    pub results: HashMap<String, R>,
    /// Whether every item of this process's part has a record.
    pub complete: bool,
    /// Whether a stop was requested while it ran.
    pub cancelled: bool,
}

/// Runs this process's part of one namespace of `method` (every item, a
/// shard's slice, or none for `w2c finalize`) to its end, an interrupt or
/// a failed item, telling the observer it started and stopped; then, when
/// every item of the whole namespace has a result, finalizes it (once, under
/// the finalize lock when shards share the session). `whole` gives the
/// method to conclude the whole namespace with when it is not `method`
/// itself (a shard's judge stream knows only its slice's target answers).
pub(super) async fn run_namespace<M: Method, O: RunObserver>(
    run: &Run<'_, O>,
    method: &M,
    report: &mut RunReport,
    whole: impl FnOnce(&NamespaceDir) -> Result<Option<M>>,
) -> Result<Ran<M::Record>> {
    let settings = method.settings();
    let ns = session::claim_namespace(&run.session.dir, &settings)?;
    let repeats = method.plan().repeats();
    if ns.is_done() {
        let mut summary = done_summary(&ns, repeats)?;
        let results = if method.records_needed_when_done() {
            let items = method.items(run.examples.get()?);
            let mine: Vec<String> = items
                .into_iter()
                .filter(|i| run.slice.owns(i.index) || matches!(run.slice, Slice::Finalize))
                .map(|i| i.key)
                .collect();
            let results = load_records(&ns, &mine)?;
            // A namespace without metrics (a judge's target stream) keeps
            // no usage of its own: its records give it, as they did to
            // the process that finished it (a judge resumed after it
            // counts the answers' tokens and cost once, not never).
            let ordered: Vec<&M::Record> = mine.iter().filter_map(|k| results.get(k)).collect();
            summary.usage = method.usage(&ordered);
            results
        } else {
            HashMap::new()
        };
        return Ok(Ran {
            summary,
            results,
            complete: true,
            cancelled: false,
        });
    }
    let examples = run.examples.get()?;
    let items = method.items(examples);
    let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    let mine: Vec<WorkItem> = items
        .into_iter()
        .filter(|i| run.slice.owns(i.index))
        .collect();
    let my_keys: Vec<String> = mine.iter().map(|i| i.key.clone()).collect();
    let files = ns.writer(run.slice.shard());
    let runs_items = !matches!(run.slice, Slice::Finalize);
    let outcome = if runs_items {
        run.session.mark_updated()?;
        // A method's own files (e.g. the probe's verdict) go where this
        // process writes: a shard's endpoint may differ from the others'.
        let writing = NamespaceDir {
            checkpoints: files.dir.clone(),
            ..ns.clone()
        };
        let notes = match method.before_items(&writing, examples).await {
            Ok(notes) => notes,
            Err(e) if e.downcast_ref::<NotStarted>().is_some() => {
                return not_started(&ns, method, &mine, report, &e);
            }
            Err(e) => return Err(e),
        };
        for note in notes {
            report.notes.push(format!("{}: {note}", ns.name));
        }
        run.observer.namespace_started(&ns.name).await;
        let progress = run.observer.progress();
        let job = Job {
            ns: &ns,
            files: &files,
            items: mine.into_iter().filter(|i| method.runnable(i)).collect(),
            concurrency: method.caller().client.max_concurrency,
            cancel: run.cancel,
            progress: &progress,
        };
        let outcome = crate::engine::run_items(job, |item, steps| {
            let example = &examples[item.index];
            method.work(&ns.name, item, example, steps)
        })
        .await?;
        note_outcome(
            report,
            &ns.name,
            &outcome,
            &method.caller().client,
            my_keys.len(),
        );
        Some(outcome)
    } else {
        None
    };
    let (results, failed, cancelled) = match outcome {
        Some(o) => (o.results, o.failed.len(), o.cancelled),
        None => (HashMap::new(), 0, false),
    };
    let ordered: Vec<&M::Record> = my_keys.iter().filter_map(|k| results.get(k)).collect();
    let mut summary = MethodSummary {
        namespace: ns.name.clone(),
        done: ordered.len(),
        total: my_keys.len(),
        repeats,
        failed,
        metrics: None,
        usage: method.usage(&ordered),
        stability: None,
        headline: None,
    };
    let complete = ordered.len() == my_keys.len();
    let finalizable = match &run.slice {
        Slice::All => complete,
        Slice::Shard(r) if complete => {
            crate::store::shards::mark_slice_done(&ns, r.shard, my_keys.len())?;
            let waiting = crate::store::shards::slices_not_done(&ns, r.shard.count);
            if !waiting.is_empty() {
                report.notes.push(format!(
                    "{}: shard {}'s slice is done; waiting for shard{} {} (the last shard to finish finalizes the namespace, or `w2c finalize {}`)",
                    ns.name,
                    r.shard,
                    if waiting.len() == 1 { "" } else { "s" },
                    waiting.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
                    run.session.address()
                ));
            }
            waiting.is_empty()
        }
        Slice::Shard(_) => false,
        Slice::Finalize => {
            let have = crate::store::census::result_keys(&ns);
            summary.done = keys.iter().filter(|k| have.contains(*k)).count();
            summary.total = keys.len();
            summary.done == keys.len()
        }
    };
    if !complete {
        report.mark_unfinished(cancelled);
    }
    if finalizable {
        let whole = whole(&ns)?;
        let finalizer = whole.as_ref().unwrap_or(method);
        let known = matches!(run.slice, Slice::All).then_some(&results);
        let finished = finalize(run, finalizer, &ns, &settings, examples, &keys, known).await?;
        match finished {
            Finalized::Here { metrics, notes } => {
                if let Some(m) = metrics {
                    summary.headline = Some(crate::headline::of(
                        &m,
                        crate::headline::protocol_of(&m.method, &settings.settings).as_deref(),
                    ));
                    summary.metrics = Some(m.metrics);
                    summary.stability = m.stability;
                    if matches!(run.slice, Slice::All | Slice::Finalize) {
                        summary.usage = m.usage;
                    }
                }
                for note in notes {
                    report.notes.push(format!("{}: {note}", ns.name));
                }
                if !matches!(run.slice, Slice::All) {
                    report
                        .notes
                        .push(format!("{}: every item is done: finalized here", ns.name));
                }
            }
            Finalized::Elsewhere(done) => {
                summary.metrics = done.metrics;
                summary.stability = done.stability;
                summary.headline = done.headline;
            }
            Finalized::NotComplete(missing) => {
                report.mark_unfinished(false);
                report.notes.push(format!(
                    "{}: not finalized: {missing} items have no result",
                    ns.name
                ));
            }
        }
    } else if matches!(run.slice, Slice::Finalize) {
        report.mark_unfinished(false);
        report.notes.push(unfinished_note(run, &ns, &keys));
    }
    if runs_items {
        run.observer
            .namespace_stopped(&ns.name, run.cancel.is_cancelled())
            .await;
    }
    Ok(Ran {
        summary,
        results,
        complete,
        cancelled,
    })
}

/// A namespace whose `before_items` could not finish ([`NotStarted`]): it
/// stays unfinished with the records this process's items have, the run is
/// incomplete, and the reason is a note.
fn not_started<M: Method>(
    ns: &NamespaceDir,
    method: &M,
    items: &[WorkItem],
    report: &mut RunReport,
    why: &anyhow::Error,
) -> Result<Ran<M::Record>> {
    let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    let results: HashMap<String, M::Record> = load_records(ns, &keys)?;
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
            headline: None,
        },
        results,
        complete: false,
        cancelled: false,
    })
}

/// What `w2c finalize` says of a namespace that cannot be finalized yet:
/// how many items each shard still lacks.
fn unfinished_note<O>(run: &Run<'_, O>, ns: &NamespaceDir, keys: &[String]) -> String {
    let have = crate::store::census::result_keys(ns);
    let missing = keys.iter().filter(|k| !have.contains(*k)).count();
    let Some(count) = run.session.manifest.shards.filter(|&n| n > 1) else {
        return format!(
            "{}: not finalized: {missing} of {} items have no result (`w2c resume {}` runs them)",
            ns.name,
            keys.len(),
            run.session.address()
        );
    };
    let position = run.session.manifest.example_positions();
    let mut per_shard = vec![0usize; count];
    for k in keys.iter().filter(|k| !have.contains(*k)) {
        let uuid = k.split_once('#').map_or(k.as_str(), |(u, _)| u);
        if let Some(p) = position.get(uuid) {
            per_shard[p % count] += 1;
        }
    }
    let lacking: Vec<String> = per_shard
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, n)| format!("shard {i}/{count} lacks {n}"))
        .collect();
    format!(
        "{}: not finalized: {missing} of {} items have no result ({}); rerun those shards (`scontrol requeue`, the Job's pod retry, or `w2c resume {} --shard I/{count}`)",
        ns.name,
        keys.len(),
        lacking.join(", "),
        run.session.address()
    )
}

/// The records of `keys` found in any of the namespace's results files (the
/// first record of a key wins), read without writing anything.
pub(super) fn load_records<R: crate::engine::Record>(
    ns: &NamespaceDir,
    keys: &[String],
) -> Result<HashMap<String, R>> {
    let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut out: HashMap<String, R> = HashMap::new();
    for path in ns.results_files() {
        crate::store::read_jsonl(&path, |r: R| {
            if wanted.contains(r.key()) && !out.contains_key(r.key()) {
                out.insert(r.key().to_string(), r);
            }
        })?;
    }
    Ok(out)
}

/// How finalizing a namespace ended.
enum Finalized {
    /// This process concluded it and wrote `_DONE.json` last.
    Here {
        /// Its metrics file, if it has metrics.
        metrics: Option<Box<MetricsFile>>,
        /// The conclusion's notes.
        notes: Vec<String>,
    },
    /// Another process finalized it first.
    Elsewhere(Box<MethodSummary>),
    /// Some items have no result after all (this many).
    NotComplete(usize),
}

/// Finalizes a namespace whose every item has a result: (holding the
/// finalize lock when shards share the session, and only if no other
/// process did it first) the shards' files merged into the namespace's
/// own, the method's conclusion over every record in item order, its files,
/// and `_DONE.json` last; then the observer is told. `known` holds every
/// record when the caller has them.
async fn finalize<M: Method, O: RunObserver>(
    run: &Run<'_, O>,
    method: &M,
    ns: &NamespaceDir,
    settings: &MethodSettings,
    examples: &[Example],
    keys: &[String],
    known: Option<&HashMap<String, M::Record>>,
) -> Result<Finalized> {
    let _finalizing = if run.session.is_shared() {
        Some(session::finalize_lock(&run.session.dir)?)
    } else {
        None
    };
    if ns.is_done() {
        return Ok(Finalized::Elsewhere(Box::new(done_summary(
            ns,
            method.plan().repeats(),
        )?)));
    }
    let loaded;
    let all = match known {
        Some(all) => all,
        None => {
            loaded = load_records::<M::Record>(ns, keys)?;
            &loaded
        }
    };
    let records: Vec<&M::Record> = keys.iter().filter_map(|k| all.get(k)).collect();
    if records.len() != keys.len() {
        return Ok(Finalized::NotComplete(keys.len() - records.len()));
    }
    let merged = !ns.shard_dirs().is_empty();
    if merged {
        crate::store::shards::check_slices(ns)
            .map_err(anyhow::Error::msg)
            .context("refusing to finalize")?;
        crate::store::shards::merge(ns)
            .with_context(|| format!("{}: merging the shards' files", ns.name))?;
    }
    let usage = method.usage(&records);
    let ctx = Concluding {
        namespace: &ns.name,
        examples,
        seed: run.seed,
    };
    let conclusion = method.conclude(&ctx, &records)?;
    let metrics = conclusion.scores.as_ref().map(|scores| {
        metrics_file(run.session, settings, ns, scores, &usage, || {
            method.audit(&records)
        })
    });
    let notes = conclusion.notes.clone();
    write_outputs(
        run.session,
        ns,
        settings,
        keys.len(),
        conclusion,
        metrics.as_ref(),
    )?;
    run.observer.namespace_finalized(&ns.name).await;
    Ok(Finalized::Here {
        metrics: metrics.map(Box::new),
        notes,
    })
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
            headline: None,
        });
    }
    let stored: MetricsFile = read_json(&ns.metrics()).with_context(context)?;
    let headline = crate::headline::of(
        &stored,
        crate::store::session::namespace_protocol(ns, &stored.method).as_deref(),
    );
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
        headline: Some(headline),
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
    if !ns.calls().exists() {
        // A namespace whose every item was loaded from elsewhere made no call.
        write_bytes_atomic(&ns.calls(), b"")?;
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
    // The shards' own files, as `shards/shard-I-of-N/<file>`.
    for (shard, dir) in ns.shard_dirs() {
        for name in crate::store::shards::DIGESTED_SHARD_FILES {
            let p = dir.join(name);
            if p.exists() {
                checkpoint_files.insert(
                    format!("{}/{}/{name}", names::SHARDS, shard.dir_name()),
                    digest(&p)?,
                );
            }
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
    let stats = client.limiter_stats();
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
