//! Orchestration of `w2c run` and `w2c resume`: config → dataset → session →
//! methods → artifacts and `_DONE` markers.

use crate::audit::{AuditEvent, Severity};
use crate::checkpoint::{file_digest, read_json, write_bytes_atomic, write_json_atomic};
use crate::config::{self, Config};
use crate::dataset::{self, Example};
use crate::fingerprint::{diff, fingerprint, short};
use crate::labels::{Label, Prediction};
use crate::llm::Usage;
use crate::llm::{CallItem, CallRecord, Client};
use crate::methods::llm_judge::{self, JudgeRecord, JudgeStatus, LlmJudge, TargetRecord};
use crate::methods::mcq::{Mcq, McqRecord};
use crate::methods::mcq_logprob::{self, McqLogprob, McqLogprobRecord};
use crate::methods::{self, files, Cancel, ItemError, ItemOutput, Outcome};
use crate::methods::{sweep_name, Sweep, WorkItem};
use crate::metrics::{self, Metrics, Scored};
use crate::session::{self, MethodSettings, NewSession, Session};
use crate::tracking::Tracker;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the session fingerprint payload.
pub const PAYLOAD_SCHEMA: u32 = 1;

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

/// Token totals over a namespace's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in USD, when `[prices]` lists the model.
    pub cost_usd: Option<f64>,
}

impl UsageTotals {
    /// Totals over records, priced with an optional price.
    pub fn of<'a, R: methods::Record + 'a>(
        records: impl IntoIterator<Item = &'a R>,
        price: Option<&crate::config::Price>,
    ) -> Self {
        let (mut prompt, mut completion) = (0, 0);
        for r in records {
            let u = r.usage();
            prompt += u.prompt_tokens;
            completion += u.completion_tokens;
        }
        UsageTotals::new(prompt, completion, price)
    }

    /// Sum of two totals; the cost is known only when both are.
    pub fn plus(self, other: UsageTotals) -> UsageTotals {
        UsageTotals {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cost_usd: self.cost_usd.zip(other.cost_usd).map(|(a, b)| a + b),
        }
    }

    /// Totals with the cost from an optional price.
    pub fn new(
        prompt_tokens: u64,
        completion_tokens: u64,
        price: Option<&crate::config::Price>,
    ) -> Self {
        UsageTotals {
            prompt_tokens,
            completion_tokens,
            cost_usd: price.map(|p| {
                (prompt_tokens as f64 * p.prompt_per_mtok
                    + completion_tokens as f64 * p.completion_per_mtok)
                    / 1_000_000.0
            }),
        }
    }
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

/// What `run` is asked to do.
pub struct RunRequest {
    /// The resolved config.
    pub config: Config,
    /// The resolved RUN_KEY.
    pub run_key: String,
    /// When resuming by fingerprint: the fingerprint the inputs must still give.
    pub expect_fingerprint: Option<String>,
    /// The MLflow server to mirror the session to; `None` runs offline.
    pub tracking: Option<crate::tracking::Target>,
    /// Why the run is offline, when `tracking` is `None`.
    pub offline_reason: String,
}

/// The session-level fingerprint payload: everything that changes results and
/// is shared by all methods.
pub fn session_payload(
    config: &Config,
    dataset: &dataset::Dataset,
    selected: &[Example],
) -> Result<Value> {
    let (_, provider) = config.target_provider()?;
    let ids: Vec<&str> = selected.iter().map(|e| e.uuid.as_str()).collect();
    Ok(json!({
        "schema": PAYLOAD_SCHEMA,
        "dataset": {
            "sha256": dataset.sha256,
            "n_examples_in_file": dataset.examples.len(),
            "n_per_label": config.dataset.n_per_label,
            "subsample_seed": config.dataset.n_per_label.map(|_| config.dataset.subsample_seed),
            "selected_ids_sha256": crate::fingerprint::sha256_hex(ids.join("\n").as_bytes()),
            "n_selected": ids.len(),
        },
        "target": {
            "model": config.models.target,
            "provider_kind": provider.kind,
        },
        "seed": config.run.seed,
    }))
}

/// The inputs of a session, computed without touching the session directory.
pub struct Prepared {
    /// The dataset file.
    pub dataset: dataset::Dataset,
    /// The selected examples, in evaluation order.
    pub selected: Vec<Example>,
    /// The fingerprint payload.
    pub payload: Value,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// Loads the dataset, selects the examples and computes the fingerprint.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let dataset = dataset::load(&config.dataset.path)?;
    let selected = dataset::select(
        &dataset,
        config.dataset.n_per_label,
        config.dataset.subsample_seed,
    );
    if selected.is_empty() {
        bail!(
            "{}: the selection is empty (n_per_label = {:?})",
            config.dataset.path.display(),
            config.dataset.n_per_label
        );
    }
    let payload = session_payload(config, &dataset, &selected)?;
    let fingerprint = fingerprint(&payload);
    Ok(Prepared {
        dataset,
        selected,
        payload,
        fingerprint,
    })
}

/// Runs (or resumes) every enabled method of a config. `on_open` is called
/// once the session is open and locked, before any request.
pub async fn run(
    req: RunRequest,
    cancel: &Cancel,
    on_open: &dyn Fn(&Session),
) -> Result<RunReport> {
    let config = &req.config;
    let prepared = prepare(config)?;
    if let Some(expected) = &req.expect_fingerprint {
        if &prepared.fingerprint != expected {
            let found = session::find(&config.run.runs_dir, short(expected), Some(&req.run_key))?;
            let stored: Value = serde_json::from_str(&found.manifest.fingerprint_canonical)
                .context("manifest field `fingerprint_canonical` is not JSON")?;
            bail!(
                "refusing to resume session {}: its inputs changed since it was created:\n  {}",
                short(expected),
                diff(&stored, &prepared.payload).join("\n  ")
            );
        }
    }
    let (provider_name, provider_cfg) = config.target_provider()?;
    let client = Arc::new(Client::new(provider_name, provider_cfg, config.run.seed)?);
    let session = session::open_or_create(
        &config.run.runs_dir,
        NewSession {
            run_key: &req.run_key,
            payload: &prepared.payload,
            config: serde_json::to_value(config).context("cannot serialise the config")?,
            example_ids: prepared.selected.iter().map(|e| e.uuid.clone()).collect(),
            label_counts: prepared
                .selected
                .iter()
                .fold(BTreeMap::new(), |mut acc, e| {
                    *acc.entry(e.gold.to_string()).or_insert(0) += 1;
                    acc
                }),
        },
    )?;
    on_open(&session);

    let mut report = RunReport {
        session_dir: session.dir.clone(),
        run_key: req.run_key.clone(),
        fingerprint: session.manifest.fingerprint.clone(),
        created: session.created,
        methods: Vec::new(),
        status: RunStatus::Complete,
        notes: Vec::new(),
    };
    let tracker = match &req.tracking {
        Some(target) => Tracker::connect(target, &session.dir, &session.manifest).await?,
        None => Tracker::offline(&session.dir, &req.offline_reason)?,
    };
    let methods_result = run_methods(
        config,
        &prepared,
        &session,
        client,
        cancel,
        &tracker,
        &mut report,
    )
    .await;
    if let Err(err) = methods_result {
        tracker.abort(&err).await;
        return Err(err);
    }
    let notes = tracker.finish(&report).await;
    report.notes.extend(notes);
    Ok(report)
}

/// Runs every enabled method in order; each namespace's tracking is closed
/// as soon as its method returns.
async fn run_methods(
    config: &Config,
    prepared: &Prepared,
    session: &Session,
    client: Arc<Client>,
    cancel: &Cancel,
    tracker: &Tracker,
    report: &mut RunReport,
) -> Result<()> {
    let (provider_name, _) = config.target_provider()?;
    for method in &config.methods.enabled {
        if cancel.is_cancelled() {
            report.status = RunStatus::Interrupted;
            break;
        }
        let summary = match method.as_str() {
            crate::methods::mcq::NAME => {
                let mcq = Mcq::new(&config.methods.mcq, &config.models.target, config.run.seed)?;
                run_mcq(
                    session,
                    &mcq,
                    &prepared.selected,
                    client.clone(),
                    cancel,
                    tracker,
                    config.prices.get(&config.models.target),
                    report,
                )
                .await?
            }
            llm_judge::NAME => {
                let (judge_model, judge_provider, judge_cfg) = config.judge_provider()?;
                let judge_client = if judge_provider == provider_name {
                    client.clone()
                } else {
                    Arc::new(Client::new(judge_provider, judge_cfg, config.run.seed)?)
                };
                let method = LlmJudge::new(
                    &config.methods.llm_judge,
                    &config.models.target,
                    judge_model,
                    config.run.seed,
                )?;
                run_llm_judge(
                    session,
                    &method,
                    &prepared.selected,
                    client.clone(),
                    judge_client,
                    cancel,
                    tracker,
                    (
                        config.prices.get(&config.models.target),
                        config.prices.get(judge_model),
                    ),
                    report,
                )
                .await?
            }
            mcq_logprob::NAME => {
                let method = McqLogprob::new(
                    &config.methods.mcq_logprob,
                    &config.models.target,
                    config.run.seed,
                );
                run_mcq_logprob(
                    session,
                    &method,
                    &prepared.selected,
                    client.clone(),
                    cancel,
                    tracker,
                    config.prices.get(&config.models.target),
                    report,
                )
                .await?
            }
            "stability_llm_judge" => {
                let (judge_model, judge_provider, judge_cfg) = config.judge_provider()?;
                let judge_client = if judge_provider == provider_name {
                    client.clone()
                } else {
                    Arc::new(Client::new(judge_provider, judge_cfg, config.run.seed)?)
                };
                let base = LlmJudge::new(
                    &config.methods.llm_judge,
                    &config.models.target,
                    judge_model,
                    config.run.seed,
                )?;
                let st = &config.methods.stability;
                for &temperature in &st.temperatures {
                    let method = base.with_sweep(Sweep {
                        k: st.k,
                        temperature,
                        seed_mode: st.seed_mode,
                    });
                    let summary = run_llm_judge(
                        session,
                        &method,
                        &prepared.selected,
                        client.clone(),
                        judge_client.clone(),
                        cancel,
                        tracker,
                        (
                            config.prices.get(&config.models.target),
                            config.prices.get(judge_model),
                        ),
                        report,
                    )
                    .await?;
                    report.methods.push(summary);
                    tracker.end_namespaces(cancel.is_cancelled()).await;
                    if cancel.is_cancelled() {
                        break;
                    }
                }
                continue;
            }
            "stability_mcq" => {
                let mcq = Mcq::new(&config.methods.mcq, &config.models.target, config.run.seed)?;
                for &t in &config.methods.stability.temperatures {
                    let summary = run_stability_mcq(
                        session,
                        &mcq,
                        &config.methods.stability,
                        t,
                        &prepared.selected,
                        client.clone(),
                        cancel,
                        tracker,
                        config.prices.get(&config.models.target),
                        report,
                    )
                    .await?;
                    report.methods.push(summary);
                    tracker.end_namespaces(cancel.is_cancelled()).await;
                    if cancel.is_cancelled() {
                        break;
                    }
                }
                continue;
            }
            other => bail!("method `{other}` is not implemented"),
        };
        report.methods.push(summary);
        tracker.end_namespaces(cancel.is_cancelled()).await;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_mcq(
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
    let outcome: Outcome<McqRecord> = methods::run_items(
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
    let usage = UsageTotals::of(ordered.iter().copied(), price);
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
    let predictions = jsonl_bytes(ordered.iter().map(|r| {
        json!({
            "uuid": r.uuid,
            "gold": r.gold,
            "prediction": r.prediction,
            "n_tools": r.n_tools,
            "chosen_option": r.chosen_option,
            "option_order": r.option_order,
            "parse_status": r.parse_status,
            "raw_output": r.raw_output,
        })
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
    )?;
    summary.metrics = Some(metrics);
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn run_mcq_logprob(
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
    let outcome: Outcome<McqLogprobRecord> = methods::run_items(
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
    let usage = UsageTotals::of(ordered.iter().copied(), price);
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
    write_bytes_atomic(&artifacts_dir.join("debug_per_choice.jsonl"), &debug)?;
    finalize(
        session,
        &ns,
        &ns_dir,
        &artifacts_dir,
        &settings,
        &metrics_file,
        &predictions,
        total,
    )?;
    summary.metrics = Some(metrics);
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn run_stability_mcq(
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
    let outcome: Outcome<McqRecord> = methods::run_items(
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
    let usage = UsageTotals::of(outcome.results.values(), price);
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
    )?;
    summary.metrics = Some(metrics);
    summary.stability = Some(stability);
    Ok(summary)
}

/// Stability metrics, mode-prediction metrics and the per-example export of
/// a sweep, from a lookup of each `uuid#repeat` key's prediction.
fn sweep_outputs(
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
fn session_seed(session: &Session) -> u64 {
    u64::from_str_radix(
        crate::fingerprint::prefix(&session.manifest.fingerprint, 16),
        16,
    )
    .unwrap_or(0)
}

/// Metrics-file fields shared by the methods, computed from the records.
fn score(records: &[(Label, Prediction, usize)]) -> Metrics {
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

fn jsonl_bytes<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for row in rows {
        out.extend(serde_json::to_vec(&row)?);
        out.push(b'\n');
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn run_llm_judge(
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
    let targets: Outcome<TargetRecord> = methods::run_items(
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
        let usage = UsageTotals::of(targets.results.values(), prices.0);
        let ordered: Vec<&TargetRecord> = examples
            .iter()
            .filter_map(|e| targets.results.get(&e.uuid))
            .collect();
        let answers = jsonl_bytes(ordered.iter().map(|r| {
            json!({"uuid": r.uuid, "text": r.text, "tool_calls": r.tool_calls, "finish_reason": r.finish_reason})
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
            &["usage.json", "target_responses.jsonl"],
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
    let judged: Outcome<JudgeRecord> = methods::run_items(
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
    let usage = UsageTotals::of(target_usage.iter().copied(), prices.0)
        .plus(UsageTotals::of(ordered.iter().copied(), prices.1));
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
        None => jsonl_bytes(ordered.iter().map(|r| {
            json!({
                "uuid": r.uuid,
                "gold": r.gold,
                "prediction": r.prediction,
                "n_tools": r.n_tools,
                "status": r.status,
                "target_response": answers.get(&r.key).map(|t| t.text.clone()),
                "judge_raw": r.judge_raw,
                "judge_raw_repair": r.judge_raw_repair,
            })
        }))?,
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
    record.usage.prompt_tokens += second.usage.prompt_tokens;
    record.usage.completion_tokens += second.usage.completion_tokens;
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

fn item_error(e: &crate::llm::CallError) -> ItemError {
    ItemError {
        fatal: matches!(e, crate::llm::CallError::Fatal { .. }),
        message: e.to_string(),
    }
}

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

/// The summary of a namespace already marked done, read from its metrics.
fn done_summary(
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

/// `artifacts_local/<ns>/metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Method name.
    pub method: String,
    /// Namespace name.
    pub namespace: String,
    /// Settings hash of the namespace.
    pub settings_hash: String,
    /// Session fingerprint.
    pub fingerprint: String,
    /// Examples scored.
    pub n_examples: usize,
    /// The metrics.
    pub metrics: Metrics,
    /// Token totals.
    pub usage: UsageTotals,
    /// Method-specific counts: reply parse statuses (`mcq`), judge statuses
    /// (`llm_judge`), argmax ties per variant (`mcq_logprob`).
    #[serde(alias = "parse_status")]
    pub counts: BTreeMap<String, usize>,
    /// Audit event counts.
    pub audit: crate::audit::AuditSummary,
    /// Sweep metrics, for `stability_*` namespaces (`metrics` then scores
    /// each example's mode prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<crate::stability::StabilityMetrics>,
    /// Per-variant metrics, for `mcq_logprob` (`metrics` is the `acc` variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<BTreeMap<String, Metrics>>,
}

/// A file recorded in `_DONE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    /// sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `_DONE.json`: written last, atomically, after everything it names is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMarker {
    /// Method name.
    pub method: String,
    /// Namespace name.
    pub namespace: String,
    /// Settings hash.
    pub settings_hash: String,
    /// Session fingerprint.
    pub fingerprint: String,
    /// Completion time.
    pub done_at: String,
    /// Items in the namespace (all with results).
    pub n_items: usize,
    /// Lines in `results.jsonl` (more than `n_items` when items were redone).
    pub n_result_lines: usize,
    /// Checkpoint files by name.
    pub checkpoint_files: BTreeMap<String, FileDigest>,
    /// Artifact files by name.
    pub artifact_files: BTreeMap<String, FileDigest>,
}

#[allow(clippy::too_many_arguments)]
fn finalize(
    session: &Session,
    ns: &str,
    ns_dir: &Path,
    artifacts_dir: &Path,
    settings: &MethodSettings,
    metrics_file: &MetricsFile,
    predictions: &[u8],
    n_items: usize,
) -> Result<()> {
    write_json_atomic(&artifacts_dir.join("metrics.json"), metrics_file)?;
    write_bytes_atomic(&artifacts_dir.join("predictions.jsonl"), predictions)?;
    write_json_atomic(
        &artifacts_dir.join("audit_summary.json"),
        &metrics_file.audit,
    )?;
    write_bytes_atomic(
        &artifacts_dir.join("confusion_matrix.csv"),
        crate::report::confusion_csv(&metrics_file.metrics).as_bytes(),
    )?;
    write_bytes_atomic(
        &artifacts_dir.join("per_class.csv"),
        crate::report::per_class_csv(&metrics_file.metrics).as_bytes(),
    )?;
    let mut charts = vec![
        (
            "confusion_matrix.svg",
            crate::charts::confusion_svg(&format!("{ns}: confusion matrix"), &metrics_file.metrics),
        ),
        (
            "per_class_f1.svg",
            crate::charts::per_class_f1_svg(&format!("{ns}: F1 per class"), &metrics_file.metrics),
        ),
    ];
    if let Some(st) = &metrics_file.stability {
        let consistencies: Vec<f64> = String::from_utf8_lossy(predictions)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["consistency"].as_f64())
            .collect();
        charts.push((
            "consistency.svg",
            crate::charts::consistency_svg(&format!("{ns}: consistency"), &consistencies, st.k),
        ));
    }
    for (name, svg) in &charts {
        write_bytes_atomic(&artifacts_dir.join(name), svg.as_bytes())?;
    }
    write_done(
        session,
        ns,
        ns_dir,
        artifacts_dir,
        settings,
        n_items,
        &[
            "metrics.json",
            "predictions.jsonl",
            "audit_summary.json",
            "confusion_matrix.csv",
            "per_class.csv",
            "confusion_matrix.svg",
            "per_class_f1.svg",
            "consistency.svg",
            files::CALLS,
        ],
    )
}

/// Writes `_DONE.json` with digests of the checkpoint files and `artifacts`.
/// Call only after every file it names is durable.
fn write_done(
    session: &Session,
    ns: &str,
    ns_dir: &Path,
    artifacts_dir: &Path,
    settings: &MethodSettings,
    n_items: usize,
    artifacts: &[&str],
) -> Result<()> {
    let digest_all = |dir: &Path, names: &[&str]| -> Result<BTreeMap<String, FileDigest>> {
        let mut out = BTreeMap::new();
        for name in names {
            let p = dir.join(name);
            if p.exists() {
                let (sha256, bytes) = file_digest(&p)?;
                out.insert(name.to_string(), FileDigest { sha256, bytes });
            }
        }
        Ok(out)
    };
    let checkpoint_files = digest_all(
        ns_dir,
        &[files::RESULTS, files::ERRORS, files::AUDIT, files::SETTINGS],
    )?;
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
        artifact_files: digest_all(artifacts_dir, artifacts)?,
    };
    write_json_atomic(&ns_dir.join(files::DONE), &marker)
}

/// Loads the resolved config stored in a session's manifest, for resuming.
pub fn config_from_manifest(found: &session::FoundSession) -> Result<Config> {
    let config: Config =
        serde_json::from_value(found.manifest.config.clone()).with_context(|| {
            format!(
                "{}: field `config` does not hold a valid w2c config",
                found.dir.join("manifest.json").display()
            )
        })?;
    config.validate().with_context(|| {
        format!(
            "{}: stored config",
            found.dir.join("manifest.json").display()
        )
    })?;
    Ok(config)
}

/// Resolves the RUN_KEY for a config and CLI flag.
pub fn run_key_for(config: &Config, cli: Option<&str>) -> (String, config::RunKeySource) {
    let env = std::env::var("W2C_RUN_KEY").ok();
    config::resolve_run_key(cli, env.as_deref(), config.run.run_key.as_deref())
}
