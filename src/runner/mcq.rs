//! Running the `mcq` method and its `stability_mcq` sweeps.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_mcq(
    session: &Session,
    mcq: &Mcq,
    examples: &[Example],
    client: Arc<Client>,
    cancel: &Cancel,
    tracker: &Tracker,
    price: Option<&crate::config::Price>,
    report: &mut RunReport,
) -> Result<MethodSummary> {
    let settings = mcq.settings();
    let ns = session::namespace(&session.dir, &settings)?;
    let ns_dir = session.dir.join("checkpoints").join(&ns);
    let artifacts_dir = session.dir.join("artifacts_local").join(&ns);
    if let Some(done) = done_summary(&ns, &ns_dir, &artifacts_dir, examples.len())? {
        return Ok(done);
    }
    let progress = tracker.progress();
    tracker.begin_namespace(&ns).await;
    let items = mcq.items(examples);
    let total = items.len();
    let examples_arc: Arc<Vec<Example>> = Arc::new(examples.to_vec());
    let mcq_arc = Arc::new(mcq.clone());
    let ns_name = ns.clone();
    let outcome: Outcome<McqRecord> = crate::engine::run_items(
        &ns_dir,
        &artifacts_dir,
        items,
        client.max_concurrency,
        cancel,
        &ns,
        &progress,
        |item| {
            let client = client.clone();
            let examples = examples_arc.clone();
            let mcq = mcq_arc.clone();
            let ns_name = ns_name.clone();
            async move {
                let ex = &examples[item.index];
                let order = mcq.option_order(&ex.uuid);
                let req = mcq.request(ex, &order);
                let outcome = client.chat(&req).await;
                let call_item = CallItem {
                    method: &ns_name,
                    uuid: &ex.uuid,
                    repeat: None,
                    role: "target",
                };
                let call = CallRecord::chat(&client, call_item, &req, &outcome);
                let result = match outcome.result {
                    Ok(reply) => Ok(mcq.record(
                        ex,
                        None,
                        order,
                        reply.text,
                        reply.usage,
                        outcome.attempts.len() as u32,
                        outcome.latency_ms,
                    )),
                    Err(e) => Err(item_error(&e)),
                };
                ItemOutput {
                    calls: vec![call],
                    result,
                }
            }
        },
    )
    .await?;
    note_outcome(report, &ns, &outcome, &client, total);
    let ordered: Vec<&McqRecord> = examples
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
    let metrics = score(
        &ordered
            .iter()
            .map(|r| (r.gold, r.prediction, r.n_tools))
            .collect::<Vec<_>>(),
    );
    let audit = crate::audit::summarize(ordered.iter().flat_map(|r| r.audit.iter()));
    let mut parse_status: BTreeMap<String, usize> = BTreeMap::new();
    for r in &ordered {
        let k = serde_json::to_value(r.parse_status)?
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        *parse_status.entry(k).or_default() += 1;
    }
    let metrics_file = MetricsFile {
        method: settings.method.clone(),
        namespace: ns.clone(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        n_examples: ordered.len(),
        metrics: metrics.clone(),
        usage,
        counts: parse_status,
        audit,
        stability: None,
        variants: None,
    };
    let stored_in = format!("checkpoints/{ns}/{}", files::RESULTS);
    let predictions = jsonl_bytes(ordered.iter().map(|r| {
        let mut row = json!({
            "uuid": r.uuid,
            "gold": r.gold,
            "prediction": r.prediction,
            "n_tools": r.n_tools,
            "chosen_option": r.chosen_option,
            "option_order": r.option_order,
            "parse_status": r.parse_status,
            "raw_output": r.raw_output,
        });
        crate::long_text::shorten_fields(&mut row, &["raw_output"], Some(&stored_in));
        row
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
        &[],
    )?;
    summary.metrics = Some(metrics);
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_stability_mcq(
    session: &Session,
    mcq: &Mcq,
    sweep_config: &crate::config::StabilityConfig,
    temperature: f64,
    examples: &[Example],
    client: Arc<Client>,
    cancel: &Cancel,
    tracker: &Tracker,
    price: Option<&crate::config::Price>,
    report: &mut RunReport,
) -> Result<MethodSummary> {
    let sweep = Sweep {
        k: sweep_config.k,
        temperature,
        seed_mode: sweep_config.seed_mode,
    };
    let name = sweep_name("mcq", sweep.k, temperature);
    let base = mcq.settings();
    let value = json!({
        "method": name,
        "mcq_settings_hash": base.settings_hash,
        "k": sweep.k,
        "temperature": temperature,
        "seed_mode": sweep.seed_mode,
    });
    let settings = MethodSettings::new(&name, value);
    let ns = session::namespace(&session.dir, &settings)?;
    let ns_dir = session.dir.join("checkpoints").join(&ns);
    let artifacts_dir = session.dir.join("artifacts_local").join(&ns);
    let total = examples.len() * sweep.k as usize;
    if let Some(done) = done_summary(&ns, &ns_dir, &artifacts_dir, total)? {
        return Ok(done);
    }
    let progress = tracker.progress();
    tracker.begin_namespace(&ns).await;
    let uuids: Vec<&str> = examples.iter().map(|e| e.uuid.as_str()).collect();
    let items = sweep.items(&uuids);
    let examples_arc: Arc<Vec<Example>> = Arc::new(examples.to_vec());
    let mcq_arc = Arc::new(mcq.clone());
    let ns_name = ns.clone();
    let outcome: Outcome<McqRecord> = crate::engine::run_items(
        &ns_dir,
        &artifacts_dir,
        items,
        client.max_concurrency,
        cancel,
        &ns,
        &progress,
        |item| {
            let client = client.clone();
            let examples = examples_arc.clone();
            let mcq = mcq_arc.clone();
            let ns_name = ns_name.clone();
            async move {
                let ex = &examples[item.index];
                let repeat = item.repeat.unwrap_or(0);
                let order = mcq.option_order(&ex.uuid);
                let mut req = mcq.request(ex, &order);
                req.temperature = sweep.temperature;
                req.seed = sweep.seed(req.seed, repeat);
                let outcome = client.chat(&req).await;
                let call_item = CallItem {
                    method: &ns_name,
                    uuid: &ex.uuid,
                    repeat: item.repeat,
                    role: "target",
                };
                let call = CallRecord::chat(&client, call_item, &req, &outcome);
                let result = match outcome.result {
                    Ok(reply) => Ok(mcq.record(
                        ex,
                        item.repeat,
                        order,
                        reply.text,
                        reply.usage,
                        outcome.attempts.len() as u32,
                        outcome.latency_ms,
                    )),
                    Err(e) => Err(item_error(&e)),
                };
                ItemOutput {
                    calls: vec![call],
                    result,
                }
            }
        },
    )
    .await?;
    note_outcome(report, &ns, &outcome, &client, total);
    let usage = usage_of(outcome.results.values(), price);
    let mut summary = MethodSummary {
        namespace: ns.clone(),
        done: outcome.results.len(),
        total,
        failed: outcome.failed.len(),
        metrics: None,
        usage,
        stability: None,
    };
    if outcome.results.len() < total {
        report.mark_unfinished(outcome.cancelled);
        return Ok(summary);
    }
    let (stability, metrics, predictions) = sweep_outputs(session, examples, sweep.k, |key| {
        outcome.results.get(key).map(|r| r.prediction)
    })?;
    let all: Vec<&McqRecord> = outcome.results.values().collect();
    let audit = crate::audit::summarize(all.iter().flat_map(|r| r.audit.iter()));
    let metrics_file = MetricsFile {
        method: name.clone(),
        namespace: ns.clone(),
        settings_hash: settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        n_examples: examples.len(),
        metrics: metrics.clone(),
        usage,
        counts: BTreeMap::new(),
        audit,
        stability: Some(stability.clone()),
        variants: None,
    };
    finalize(
        session,
        &ns,
        &ns_dir,
        &artifacts_dir,
        &settings,
        &metrics_file,
        &predictions,
        total,
        &[],
    )?;
    summary.metrics = Some(metrics);
    summary.stability = Some(stability);
    Ok(summary)
}
