//! What every method does when its items are in: scoring, the metrics
//! file, artifacts and charts, and the `_DONE.json` marker written last.

use super::*;

/// Token totals of records, priced.
pub(super) fn usage_of<'a, R: crate::engine::Record + 'a>(
    records: impl IntoIterator<Item = &'a R>,
    price: Option<&crate::config::Price>,
) -> UsageTotals {
    UsageTotals::sum(records.into_iter().map(|r| r.usage()), price)
}

/// Stability metrics, mode-prediction metrics and the per-example export of
/// a sweep, from a lookup of each `uuid#repeat` key's prediction.
pub(super) fn sweep_outputs(
    session: &Session,
    examples: &[Example],
    k: u32,
    prediction: impl Fn(&str) -> Option<Prediction>,
) -> Result<(crate::stability::StabilityMetrics, Metrics, Vec<u8>)> {
    let runs: Vec<crate::stability::Runs> = examples
        .iter()
        .map(|e| crate::stability::Runs {
            gold: e.gold,
            has_tools: !e.tools.is_empty(),
            preds: (0..k)
                .filter_map(|r| prediction(&WorkItem::key_for(&e.uuid, Some(r))))
                .collect(),
        })
        .collect();
    let stability = crate::stability::compute(&runs, k as usize, session_seed(session));
    let per_item: Vec<Option<crate::stability::ItemStability>> =
        runs.iter().map(crate::stability::item).collect();
    let metrics = score(
        &examples
            .iter()
            .zip(&per_item)
            .map(|(e, s)| {
                let mode = s.as_ref().map(|s| s.mode).unwrap_or(Prediction::Invalid);
                (e.gold, mode, e.tools.len())
            })
            .collect::<Vec<_>>(),
    );
    let predictions = jsonl_bytes(examples.iter().zip(runs.iter().zip(&per_item)).map(
        |(e, (r, s))| {
            json!({
                "uuid": e.uuid,
                "gold": e.gold,
                "n_tools": e.tools.len(),
                "runs": r.preds,
                "prediction": s.as_ref().map(|s| s.mode),
                "consistency": s.as_ref().map(|s| s.consistency),
                "stable": s.as_ref().map(|s| s.stable),
            })
        },
    ))?;
    Ok((stability, metrics, predictions))
}

/// Seed for bootstraps: derived from the session fingerprint, so a resumed
/// and an uninterrupted run compute the same interval.
pub(super) fn session_seed(session: &Session) -> u64 {
    u64::from_str_radix(
        crate::fingerprint::prefix(&session.manifest.fingerprint, 16),
        16,
    )
    .unwrap_or(0)
}

/// Metrics-file fields shared by the methods, computed from the records.
pub(super) fn score(records: &[(Label, Prediction, usize)]) -> Metrics {
    let scored: Vec<Scored> = records
        .iter()
        .map(|(gold, pred, n_tools)| Scored {
            gold: *gold,
            pred: *pred,
            has_tools: *n_tools > 0,
        })
        .collect();
    metrics::compute(&scored)
}

pub(super) fn jsonl_bytes<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for row in rows {
        out.extend(serde_json::to_vec(&row)?);
        out.push(b'\n');
    }
    Ok(out)
}

pub(super) fn item_error(e: &crate::llm::CallError) -> ItemError {
    ItemError {
        fatal: !matches!(e, crate::llm::CallError::Transient { .. }),
        message: e.to_string(),
    }
}

pub(super) fn note_outcome<R>(
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

/// The summary of a namespace already marked done, read from its metrics.
pub(super) fn done_summary(
    ns: &str,
    ns_dir: &Path,
    artifacts_dir: &Path,
    total: usize,
) -> Result<Option<MethodSummary>> {
    if !ns_dir.join(files::DONE).exists() {
        return Ok(None);
    }
    let stored: MetricsFile = read_json(&artifacts_dir.join("metrics.json"))
        .with_context(|| format!("namespace {ns} is marked done"))?;
    Ok(Some(MethodSummary {
        namespace: ns.to_string(),
        done: stored.n_examples,
        total,
        failed: 0,
        metrics: Some(stored.metrics),
        usage: stored.usage,
        stability: stored.stability,
    }))
}

/// Pretty JSON with a final newline, as [`write_json_atomic`] writes it.
fn pretty_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(v)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes a finished namespace's artifacts — metrics, predictions, audit
/// summary, CSVs, charts (`consistency.svg` for sweeps only) and the
/// method's `extra` files — then `_DONE.json` naming exactly those files.
#[allow(clippy::too_many_arguments)]
pub(super) fn finalize(
    session: &Session,
    ns: &str,
    ns_dir: &Path,
    artifacts_dir: &Path,
    settings: &MethodSettings,
    metrics_file: &MetricsFile,
    predictions: &[u8],
    n_items: usize,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let mut written: Vec<&str> = Vec::new();
    let mut put = |name: &'static str, bytes: &[u8]| -> Result<()> {
        write_bytes_atomic(&artifacts_dir.join(name), bytes)?;
        written.push(name);
        Ok(())
    };
    put("metrics.json", &pretty_json(metrics_file)?)?;
    put("predictions.jsonl", predictions)?;
    put("audit_summary.json", &pretty_json(&metrics_file.audit)?)?;
    put(
        "confusion_matrix.csv",
        crate::export::confusion_csv(&metrics_file.metrics).as_bytes(),
    )?;
    put(
        "per_class.csv",
        crate::export::per_class_csv(&metrics_file.metrics).as_bytes(),
    )?;
    put(
        "confusion_matrix.svg",
        crate::charts::confusion_svg(&format!("{ns}: confusion matrix"), &metrics_file.metrics)
            .as_bytes(),
    )?;
    put(
        "per_class_f1.svg",
        crate::charts::per_class_f1_svg(&format!("{ns}: F1 per class"), &metrics_file.metrics)
            .as_bytes(),
    )?;
    if let Some(st) = &metrics_file.stability {
        let consistencies: Vec<f64> = String::from_utf8_lossy(predictions)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["consistency"].as_f64())
            .collect();
        put(
            "consistency.svg",
            crate::charts::consistency_svg(&format!("{ns}: consistency"), &consistencies, st.k)
                .as_bytes(),
        )?;
    }
    let mut names: Vec<&str> = written;
    for (name, bytes) in extra {
        write_bytes_atomic(&artifacts_dir.join(name), bytes)?;
        names.push(name);
    }
    names.push(files::CALLS);
    write_done(
        session,
        ns,
        ns_dir,
        artifacts_dir,
        settings,
        n_items,
        &names,
    )
}

/// Writes `_DONE.json` with digests of the checkpoint files and `artifacts`
/// (every one of which must exist: the list says what was written).
/// Call only after every file it names is durable.
pub(super) fn write_done(
    session: &Session,
    ns: &str,
    ns_dir: &Path,
    artifacts_dir: &Path,
    settings: &MethodSettings,
    n_items: usize,
    artifacts: &[&str],
) -> Result<()> {
    let digest = |p: &Path| -> Result<FileDigest> {
        let (sha256, bytes) = file_digest(p)?;
        Ok(FileDigest { sha256, bytes })
    };
    let mut checkpoint_files = BTreeMap::new();
    // Checkpoint files that exist (an errors file only after a failure).
    for name in [files::RESULTS, files::ERRORS, files::AUDIT, files::SETTINGS] {
        let p = ns_dir.join(name);
        if p.exists() {
            checkpoint_files.insert(name.to_string(), digest(&p)?);
        }
    }
    let mut artifact_files = BTreeMap::new();
    for name in artifacts {
        let p = artifacts_dir.join(name);
        let d = digest(&p).with_context(|| {
            format!("{ns}: `_DONE.json` would name {name}, which was not written")
        })?;
        artifact_files.insert(name.to_string(), d);
    }
    let n_result_lines = std::fs::read(ns_dir.join(files::RESULTS))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0);
    let marker = DoneMarker {
        method: settings.method.clone(),
        namespace: ns.to_string(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        done_at: session::now_utc(),
        n_items,
        n_result_lines,
        checkpoint_files,
        artifact_files,
    };
    write_json_atomic(&ns_dir.join(files::DONE), &marker)
}
