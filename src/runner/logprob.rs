//! Running the `mcq_logprob` method: the capability probe, per-example
//! left-truncation through the server's tokenizer, the four scoring calls,
//! and metrics over the scored examples (unscored ones are counted apart).

use super::*;
use crate::llm::CallError;
use crate::methods::echo_probe;
use crate::methods::mcq_logprob::{
    cut_points, TruncationRecord, Unscored, UnscoredReason, VARIANTS,
};

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
    probe(&ns, &ns_dir, method, &client, report).await?;
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
            async move { score_example(&client, &method, &examples[item.index], &ns_name).await }
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
    // Unscored examples are results but not predictions: every metric
    // (n_total included) is over the scored ones.
    let scored: Vec<&McqLogprobRecord> = ordered
        .iter()
        .copied()
        .filter(|r| r.unscored.is_none())
        .collect();
    let mut variants = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for (v, name) in VARIANTS.iter().enumerate() {
        let m = score(
            &scored
                .iter()
                .map(|r| (r.gold, r.predictions[v], r.n_tools))
                .collect::<Vec<_>>(),
        );
        variants.insert(name.to_string(), m);
        counts.insert(
            format!("ties_{name}"),
            scored.iter().filter(|r| r.ties[v]).count(),
        );
    }
    counts.insert("unscored".into(), ordered.len() - scored.len());
    for reason in [UnscoredReason::ContextOverflow, UnscoredReason::Unalignable] {
        let n = ordered
            .iter()
            .filter(|r| r.unscored.as_ref().is_some_and(|u| u.reason == reason))
            .count();
        counts.insert(format!("unscored_{}", reason.as_str()), n);
    }
    counts.insert(
        "truncated".into(),
        ordered.iter().filter(|r| r.truncation.is_some()).count(),
    );
    if counts["unscored"] > 0 {
        report.notes.push(format!(
            "{ns}: {} of {total} examples are unscored ({} context overflow, {} unalignable echo) and left out of the metrics; see audit_fallbacks.jsonl",
            counts["unscored"], counts["unscored_context_overflow"], counts["unscored_unalignable"]
        ));
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
        counts,
        audit,
        stability: None,
        variants: Some(variants),
    };
    let predictions = jsonl_bytes(ordered.iter().map(|r| match &r.unscored {
        Some(u) => json!({
            "uuid": r.uuid,
            "gold": r.gold,
            "n_tools": r.n_tools,
            "prediction": null,
            "unscored": u,
            "truncation": r.truncation,
        }),
        None => json!({
            "uuid": r.uuid,
            "gold": r.gold,
            "n_tools": r.n_tools,
            "prediction": r.predictions[0],
            "prediction_acc_norm": r.predictions[1],
            "prediction_acc_bytes": r.predictions[2],
            "prediction_acc_tokens": r.predictions[3],
            "ties": r.ties,
            "scores": r.choices.iter().map(|c| if c.logprob.is_finite() { json!(c.logprob) } else { json!("-Infinity") }).collect::<Vec<_>>(),
            "truncation": r.truncation,
        }),
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

/// Sends the capability probe, records and reports its verdict, and stops
/// the method when the endpoint cannot score prompts (or truncation is on
/// and the server cannot tokenize).
async fn probe(
    ns: &str,
    ns_dir: &Path,
    method: &McqLogprob,
    client: &Client,
    report: &mut RunReport,
) -> Result<()> {
    let endpoint = client.endpoint("completions");
    let prompt = echo_probe::prompt(method.family);
    let reply = client
        .complete(&method.request(prompt.clone()))
        .await
        .result
        .map_err(|e| anyhow::anyhow!("{ns}: the capability probe request failed: {e}"))?;
    let verdict = echo_probe::verdict(&prompt, &reply);
    let message = verdict.message(method.family);
    let tokenize = match method.truncation_limit() {
        Some(_) if verdict.scorable() => Some(
            client
                .count_tokens(&method.model, &prompt)
                .await
                .map(|(_, url)| url)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{ns}: `truncation = \"left\"` needs the server's tokenizer: {e}"
                    )
                })?,
        ),
        _ => None,
    };
    write_json_atomic(
        &ns_dir.join("probe.json"),
        &json!({
            "at": session::now_utc(),
            "endpoint": endpoint,
            "family": method.family,
            "result": verdict,
            "message": message,
            "tokenize_endpoint": tokenize,
        }),
    )?;
    report.notes.push(format!("{ns}: probe: {message}"));
    if !verdict.scorable() {
        bail!("{endpoint}: the endpoint cannot score prompts for mcq_logprob: {message}");
    }
    Ok(())
}

/// Where to cut an example's context.
enum Plan {
    /// Every choice fits as it is.
    Fits,
    /// Cut this many bytes off the context's start.
    Cut(usize, TruncationRecord),
    /// Even the shortest context is too long.
    Impossible(String),
}

/// Finds the smallest left-cut (at a word start) after which the example's
/// longest prompt fits `limit` server tokens: a binary search over the
/// context's [`cut_points`], counting with the server's tokenizer.
async fn plan_cut(
    client: &Client,
    method: &McqLogprob,
    ex: &Example,
    limit: usize,
) -> Result<Plan, CallError> {
    let prompts = method.prompts(ex, 0);
    let mut longest = (0, 0);
    for (i, p) in prompts.iter().enumerate() {
        let (n, _) = client
            .count_tokens(&method.model, &p.request.prompt)
            .await?;
        if n > longest.0 {
            longest = (n, i);
        }
    }
    if longest.0 <= limit {
        return Ok(Plan::Fits);
    }
    let context = method.context(ex);
    let points = cut_points(&context);
    let (mut lo, mut hi) = (0, points.len());
    let mut best = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let prompt = &method.prompts(ex, points[mid])[longest.1].request.prompt;
        let (n, _) = client.count_tokens(&method.model, prompt).await?;
        if n <= limit {
            best = Some((points[mid], n));
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(match best {
        Some((cut, after)) => Plan::Cut(
            cut,
            TruncationRecord {
                dropped_chars: context[..cut].chars().count(),
                prompt_tokens_before: longest.0,
                prompt_tokens_after: after,
            },
        ),
        None => Plan::Impossible(format!(
            "the longest choice's prompt is {} tokens and stays over the limit of {limit} (the server's window minus the generated token) even with only the context's last word left",
            longest.0
        )),
    })
}

/// The four scoring calls of one example (after a truncation plan, when
/// enabled). A context overflow or an unalignable echo makes the example
/// unscored; an endpoint that cannot score at all stops the method.
async fn score_example(
    client: &Client,
    method: &McqLogprob,
    ex: &Example,
    ns: &str,
) -> ItemOutput<McqLogprobRecord> {
    let mut calls = Vec::new();
    let (cut, truncation) = match method.truncation_limit() {
        None => (0, None),
        Some(limit) => match plan_cut(client, method, ex, limit).await {
            Ok(Plan::Fits) => (0, None),
            Ok(Plan::Cut(cut, record)) => (cut, Some(record)),
            Ok(Plan::Impossible(detail)) => {
                let unscored = Unscored {
                    reason: UnscoredReason::ContextOverflow,
                    choice: None,
                    detail,
                };
                return ItemOutput {
                    calls,
                    result: Ok(method.unscored(ex, unscored, Usage::default(), None)),
                };
            }
            Err(e) => {
                return ItemOutput {
                    calls,
                    result: Err(item_error(&e)),
                }
            }
        },
    };
    let mut replies = Vec::new();
    let mut usage = Usage::default();
    for p in method.prompts(ex, cut) {
        let outcome = client.complete(&p.request).await;
        let call_item = CallItem {
            method: ns,
            uuid: &ex.uuid,
            repeat: None,
            role: "score",
        };
        calls.push(CallRecord::completion(
            client, call_item, &p.request, &outcome,
        ));
        match outcome.result {
            Ok(reply) => {
                usage.prompt_tokens += reply.usage.prompt_tokens;
                usage.completion_tokens += reply.usage.completion_tokens;
                replies.push((p, reply));
            }
            Err(CallError::ContextOverflow { message, .. }) => {
                let unscored = Unscored {
                    reason: UnscoredReason::ContextOverflow,
                    choice: Some(p.label),
                    detail: message,
                };
                return ItemOutput {
                    calls,
                    result: Ok(method.unscored(ex, unscored, usage, truncation)),
                };
            }
            Err(e) => {
                return ItemOutput {
                    calls,
                    result: Err(item_error(&e)),
                }
            }
        }
    }
    let result = method
        .record(ex, &replies, truncation)
        .map_err(|e| ItemError {
            message: format!(
                "{}: the endpoint cannot score prompts for mcq_logprob: {e}",
                client.endpoint("completions")
            ),
            fatal: true,
        });
    ItemOutput { calls, result }
}
