//! Running `llm_judge` (and its stability sweeps): target answers, then
//! judge decisions.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_llm_judge(
    session: &Session,
    method: &LlmJudge,
    examples: &[Example],
    target_client: Arc<Client>,
    judge_client: Arc<Client>,
    cancel: &Cancel,
    tracker: &Tracker,
    prices: (Option<&crate::config::Price>, Option<&crate::config::Price>),
    report: &mut RunReport,
) -> Result<MethodSummary> {
    let judge_settings = method.judge_settings();
    let ns = session::namespace(&session.dir, &judge_settings)?;
    let ns_dir = session.dir.join("checkpoints").join(&ns);
    let artifacts_dir = session.dir.join("artifacts_local").join(&ns);
    let all_items = method.items(examples);
    let total = all_items.len();
    let keys: Vec<String> = all_items.iter().map(|i| i.key.clone()).collect();
    if let Some(done) = done_summary(&ns, &ns_dir, &artifacts_dir, total)? {
        return Ok(done);
    }
    let progress = tracker.progress();
    let examples_arc: Arc<Vec<Example>> = Arc::new(examples.to_vec());
    let method_arc = Arc::new(method.clone());

    // Phase 1: target answers (never regenerated once stored).
    let target_settings = method.target_settings();
    let tns = session::namespace(&session.dir, &target_settings)?;
    let tns_dir = session.dir.join("checkpoints").join(&tns);
    let tartifacts = session.dir.join("artifacts_local").join(&tns);
    let tns_name = tns.clone();
    tracker.begin_namespace(&tns).await;
    let targets: Outcome<TargetRecord> = crate::engine::run_items(
        &tns_dir,
        &tartifacts,
        all_items.clone(),
        target_client.max_concurrency,
        cancel,
        &tns,
        &progress,
        |item| {
            let client = target_client.clone();
            let examples = examples_arc.clone();
            let method = method_arc.clone();
            let tns_name = tns_name.clone();
            async move {
                let ex = &examples[item.index];
                let req = method.target_request(ex, item.repeat);
                let outcome = client.chat(&req).await;
                let call_item = CallItem {
                    method: &tns_name,
                    uuid: &ex.uuid,
                    repeat: item.repeat,
                    role: "target",
                };
                let call = CallRecord::chat(&client, call_item, &req, &outcome);
                let result = match outcome.result {
                    Ok(reply) => {
                        let key = item.key.clone();
                        let mut audit = Vec::new();
                        if reply.text.trim().is_empty() && reply.tool_calls.is_none() {
                            audit.push(AuditEvent::new(
                                &key,
                                &ex.uuid,
                                &tns_name,
                                "target",
                                "empty_target_reply",
                                Severity::Error,
                                json!({
                                    "finish_reason": reply.finish_reason,
                                    "has_reasoning": reply.reasoning.is_some(),
                                    "completion_tokens": reply.usage.completion_tokens,
                                    "max_tokens": req.max_tokens,
                                }),
                            ));
                        }
                        Ok(TargetRecord {
                            key,
                            uuid: ex.uuid.clone(),
                            repeat: item.repeat,
                            text: reply.text,
                            tool_calls: reply.tool_calls,
                            has_reasoning: reply.reasoning.is_some(),
                            finish_reason: reply.finish_reason,
                            usage: reply.usage,
                            audit,
                        })
                    }
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
    note_outcome(report, &tns, &targets, &target_client, total);
    if targets.results.len() == total && !tns_dir.join(files::DONE).exists() {
        let usage = usage_of(targets.results.values(), prices.0);
        // In item order; sweep items are keyed `uuid#repeat`.
        let ordered: Vec<&TargetRecord> =
            keys.iter().filter_map(|k| targets.results.get(k)).collect();
        let stored_in = format!("checkpoints/{tns}/{}", files::RESULTS);
        let answers = jsonl_bytes(ordered.iter().map(|r| {
            let mut row = json!({
                "key": r.key,
                "uuid": r.uuid,
                "repeat": r.repeat,
                "text": r.text,
                "tool_calls": r.tool_calls,
                "finish_reason": r.finish_reason,
            });
            crate::long_text::shorten_fields(&mut row, &["text"], Some(&stored_in));
            row
        }))?;
        write_json_atomic(&tartifacts.join("usage.json"), &usage)?;
        write_bytes_atomic(&tartifacts.join("target_responses.jsonl"), &answers)?;
        write_done(
            session,
            &tns,
            &tns_dir,
            &tartifacts,
            &target_settings,
            total,
            &["usage.json", "target_responses.jsonl", files::CALLS],
        )?;
    }
    if targets.cancelled && targets.results.len() < total {
        report.status = RunStatus::Interrupted;
        return Ok(MethodSummary {
            namespace: ns,
            done: 0,
            total,
            failed: targets.failed.len(),
            metrics: None,
            usage: UsageTotals::default(),
            stability: None,
        });
    }

    // Phase 2: judge every stored answer.
    let answers = Arc::new(targets.results);
    let items: Vec<WorkItem> = all_items
        .into_iter()
        .filter(|i| answers.contains_key(&i.key))
        .collect();
    let ns_name = ns.clone();
    tracker.begin_namespace(&ns).await;
    let judged: Outcome<JudgeRecord> = crate::engine::run_items(
        &ns_dir,
        &artifacts_dir,
        items,
        judge_client.max_concurrency,
        cancel,
        &ns,
        &progress,
        |item| {
            let client = judge_client.clone();
            let examples = examples_arc.clone();
            let method = method_arc.clone();
            let answers = answers.clone();
            let ns_name = ns_name.clone();
            async move {
                let ex = &examples[item.index];
                let target = &answers[&item.key];
                judge_one(&method, &client, &ns_name, &item, ex, target).await
            }
        },
    )
    .await?;
    note_outcome(report, &ns, &judged, &judge_client, total);
    let ordered: Vec<&JudgeRecord> = keys.iter().filter_map(|k| judged.results.get(k)).collect();
    let target_usage: Vec<&TargetRecord> = keys.iter().filter_map(|k| answers.get(k)).collect();
    let usage = usage_of(target_usage.iter().copied(), prices.0)
        .plus(usage_of(ordered.iter().copied(), prices.1));
    let mut summary = MethodSummary {
        namespace: ns.clone(),
        done: ordered.len(),
        total,
        failed: targets.failed.len() + judged.failed.len(),
        metrics: None,
        usage,
        stability: None,
    };
    if ordered.len() < total {
        report.mark_unfinished(judged.cancelled || targets.cancelled);
        return Ok(summary);
    }
    let (metrics, stability, sweep_predictions) = match method.sweep {
        Some(sweep) => {
            let (st, m, p) = sweep_outputs(session, examples, sweep.k, |key| {
                judged.results.get(key).map(|r| r.prediction)
            })?;
            (m, Some(st), Some(p))
        }
        None => (
            score(
                &ordered
                    .iter()
                    .map(|r| (r.gold, r.prediction, r.n_tools))
                    .collect::<Vec<_>>(),
            ),
            None,
            None,
        ),
    };
    let mut status_counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &ordered {
        let k = serde_json::to_value(r.status)?
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        *status_counts.entry(k).or_default() += 1;
    }
    let audit = crate::audit::summarize(
        ordered
            .iter()
            .flat_map(|r| r.audit.iter())
            .chain(target_usage.iter().flat_map(|r| r.audit.iter())),
    );
    let metrics_file = MetricsFile {
        method: method.judge_name(),
        namespace: ns.clone(),
        settings_hash: judge_settings.settings_hash.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        n_examples: examples.len(),
        metrics: metrics.clone(),
        usage,
        counts: status_counts,
        audit,
        stability: stability.clone(),
        variants: None,
    };
    let predictions = match sweep_predictions {
        Some(p) => p,
        None => {
            let judge_in = format!("checkpoints/{ns}/{}", files::RESULTS);
            let target_in = format!("checkpoints/{tns}/{}", files::RESULTS);
            jsonl_bytes(ordered.iter().map(|r| {
                let mut row = json!({
                    "uuid": r.uuid,
                    "gold": r.gold,
                    "prediction": r.prediction,
                    "n_tools": r.n_tools,
                    "status": r.status,
                    "target_response": answers.get(&r.key).map(|t| t.text.clone()),
                    "judge_raw": r.judge_raw,
                    "judge_raw_repair": r.judge_raw_repair,
                });
                crate::long_text::shorten_fields(&mut row, &["target_response"], Some(&target_in));
                crate::long_text::shorten_fields(
                    &mut row,
                    &["judge_raw", "judge_raw_repair"],
                    Some(&judge_in),
                );
                row
            }))?
        }
    };
    finalize(
        session,
        &ns,
        &ns_dir,
        &artifacts_dir,
        &judge_settings,
        &metrics_file,
        &predictions,
        total,
        &[],
    )?;
    summary.metrics = Some(metrics);
    summary.stability = stability;
    Ok(summary)
}

async fn judge_one(
    method: &LlmJudge,
    client: &Client,
    ns: &str,
    item: &WorkItem,
    ex: &Example,
    target: &TargetRecord,
) -> ItemOutput<JudgeRecord> {
    let key = item.key.clone();
    let mut record = JudgeRecord {
        key: key.clone(),
        uuid: ex.uuid.clone(),
        repeat: item.repeat,
        gold: ex.gold,
        prediction: Prediction::Invalid,
        n_tools: ex.tools.len(),
        target_sha256: crate::fingerprint::sha256_hex(target.text.as_bytes()),
        status: JudgeStatus::EmptyTarget,
        judge_raw: None,
        judge_raw_repair: None,
        usage: Usage::default(),
        audit: Vec::new(),
    };
    let Some(response) = target.judged_response() else {
        record.audit.push(llm_judge::event(
            &key,
            &ex.uuid,
            "empty_target_invalid",
            Severity::Error,
            json!({"finish_reason": target.finish_reason, "has_reasoning": target.has_reasoning}),
        ));
        return ItemOutput {
            calls: vec![],
            result: Ok(record),
        };
    };
    let call_item = CallItem {
        method: ns,
        uuid: &ex.uuid,
        repeat: item.repeat,
        role: "judge",
    };
    let req = method.judge_request(ex, &response);
    let outcome = client.chat(&req).await;
    let mut calls = vec![CallRecord::chat(client, call_item, &req, &outcome)];
    let first = match outcome.result {
        Ok(r) => r,
        Err(e) => {
            return ItemOutput {
                calls,
                result: Err(item_error(&e)),
            }
        }
    };
    record.usage = first.usage;
    record.judge_raw = Some(first.text.clone());
    let error = match llm_judge::parse_judge(&first.text) {
        Ok(label) => {
            record.prediction = Prediction::Label(label);
            record.status = JudgeStatus::Parsed;
            return ItemOutput {
                calls,
                result: Ok(record),
            };
        }
        Err(e) => e,
    };
    record.audit.push(llm_judge::event(
        &key,
        &ex.uuid,
        "judge_parse_failed_first",
        Severity::Warning,
        json!({"error": error, "raw_preview": llm_judge::preview(&first.text)}),
    ));
    let repair = method.repair_request(&req, &first.text, &error);
    let outcome = client.chat(&repair).await;
    calls.push(CallRecord::chat(
        client,
        CallItem {
            role: "judge_repair",
            ..call_item
        },
        &repair,
        &outcome,
    ));
    let second = match outcome.result {
        Ok(r) => r,
        Err(e) => {
            return ItemOutput {
                calls,
                result: Err(item_error(&e)),
            }
        }
    };
    record.usage = record.usage.saturating_add(second.usage);
    record.judge_raw_repair = Some(second.text.clone());
    match llm_judge::parse_judge(&second.text) {
        Ok(label) => {
            record.prediction = Prediction::Label(label);
            record.status = JudgeStatus::Repaired;
            record.audit.push(llm_judge::event(
                &key,
                &ex.uuid,
                "judge_repair_used",
                Severity::Info,
                json!({"label": label}),
            ));
        }
        Err(e2) => {
            record.status = JudgeStatus::Invalid;
            record.audit.push(llm_judge::event(
                &key,
                &ex.uuid,
                "judge_invalid",
                Severity::Error,
                json!({"error_first": error, "error_second": e2, "raw_second_preview": llm_judge::preview(&second.text)}),
            ));
        }
    }
    ItemOutput {
        calls,
        result: Ok(record),
    }
}
