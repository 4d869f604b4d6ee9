//! Running the `mcq_logprob` method.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_mcq_logprob(
    session: &Session,
    method: &McqLogprob,
    examples: &[Example],
    client: Arc<Client>,
    cancel: &Cancel,
    tracker: &Tracker,
    price: Option<&crate::config::Price>,
    report: &mut RunReport,
) -> Result<MethodSummary> {
    let settings = method.settings();
    let ns = session::namespace(&session.dir, &settings)?;
    let ns_dir = session.dir.join("checkpoints").join(&ns);
    let artifacts_dir = session.dir.join("artifacts_local").join(&ns);
    let total = examples.len();
    if let Some(done) = done_summary(&ns, &ns_dir, &artifacts_dir, total)? {
        return Ok(done);
    }
    let progress = tracker.progress();
    tracker.begin_namespace(&ns).await;
    let examples_arc: Arc<Vec<Example>> = Arc::new(examples.to_vec());
    let method_arc = Arc::new(method.clone());
    let ns_name = ns.clone();
    let outcome: Outcome<McqLogprobRecord> = crate::engine::run_items(
        &ns_dir,
        &artifacts_dir,
        method.items(examples),
        client.max_concurrency,
        cancel,
        &ns,
        &progress,
        |item| {
            let client = client.clone();
            let examples = examples_arc.clone();
            let method = method_arc.clone();
            let ns_name = ns_name.clone();
            async move {
                let ex = &examples[item.index];
                let mut calls = Vec::new();
                let mut replies = Vec::new();
                for (answer, req, ctx_chars) in method.requests(ex) {
                    let outcome = client.complete(&req).await;
                    let call_item = CallItem {
                        method: &ns_name,
                        uuid: &ex.uuid,
                        repeat: None,
                        role: "score",
                    };
                    calls.push(CallRecord::completion(&client, call_item, &req, &outcome));
                    match outcome.result {
                        Ok(reply) => replies.push((answer, req, ctx_chars, reply)),
                        Err(e) => {
                            return ItemOutput {
                                calls,
                                result: Err(item_error(&e)),
                            }
                        }
                    }
                }
                let result = method.record(ex, &replies).map_err(|e| ItemError {
                    message: format!(
                        "{}: the endpoint cannot score prompts for mcq_logprob: {e}",
                        client.endpoint("completions")
                    ),
                    fatal: true,
                });
                ItemOutput { calls, result }
            }
        },
    )
    .await?;
    note_outcome(report, &ns, &outcome, &client, total);
    let ordered: Vec<&McqLogprobRecord> = examples
        .iter()
        .filter_map(|e| outcome.results.get(&e.uuid))
        .collect();
    let usage = usage_of(ordered.iter().copied(), price);
    let mut summary = MethodSummary {
        namespace: ns.clone(),
        done: ordered.len(),
        total,
        failed: outcome.failed.len(),
        metrics: None,
        usage,
        stability: None,
    };
    if ordered.len() < total {
        report.mark_unfinished(outcome.cancelled);
        return Ok(summary);
    }
    let mut variants = BTreeMap::new();
    let mut ties = BTreeMap::new();
    for (v, name) in mcq_logprob::VARIANTS.iter().enumerate() {
        let m = score(
            &ordered
                .iter()
                .map(|r| (r.gold, r.predictions[v], r.n_tools))
                .collect::<Vec<_>>(),
        );
        variants.insert(name.to_string(), m);
        ties.insert(
            format!("ties_{name}"),
            ordered.iter().filter(|r| r.ties[v]).count(),
        );
    }
    let metrics = variants["acc"].clone();
    let audit = crate::audit::summarize(ordered.iter().flat_map(|r| r.audit.iter()));
    let metrics_file = MetricsFile {
        method: settings.method.clone(),
        namespace: ns.clone(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        n_examples: ordered.len(),
        metrics: metrics.clone(),
        usage,
        counts: ties,
        audit,
        stability: None,
        variants: Some(variants),
    };
    let predictions = jsonl_bytes(ordered.iter().map(|r| {
        json!({
            "uuid": r.uuid,
            "gold": r.gold,
            "n_tools": r.n_tools,
            "prediction": r.predictions[0],
            "prediction_acc_norm": r.predictions[1],
            "prediction_acc_bytes": r.predictions[2],
            "prediction_acc_tokens": r.predictions[3],
            "ties": r.ties,
            "scores": r.choices.iter().map(|c| if c.logprob.is_finite() { json!(c.logprob) } else { json!("-Infinity") }).collect::<Vec<_>>(),
        })
    }))?;
    let debug = jsonl_bytes(ordered.iter().flat_map(|r| {
        r.choices
            .iter()
            .map(move |c| json!({"uuid": r.uuid, "gold": r.gold, "choice": c}))
    }))?;
    finalize(
        session,
        &ns,
        &ns_dir,
        &artifacts_dir,
        &settings,
        &metrics_file,
        &predictions,
        total,
        &[("debug_per_choice.jsonl", &debug)],
    )?;
    summary.metrics = Some(metrics);
    Ok(summary)
}
