//! Orchestration of `w2c run` and `w2c resume`: config → dataset → session →
//! methods → artifacts and `_DONE` markers, with MLflow tracking around it.
//! Each method's runner lives in a submodule (`mcq`, `logprob`, `judge`);
//! `finish` holds what they share once their items are in.

use crate::audit::{AuditEvent, Severity};
use crate::config::{self, Config};
use crate::dataset::{self, Example};
use crate::engine::WorkItem;
use crate::engine::{Cancel, ItemError, ItemOutput, Outcome};
use crate::fingerprint::{diff, fingerprint, short};
use crate::labels::{Label, Prediction};
use crate::llm::Usage;
use crate::llm::{CallItem, CallRecord, Client};
use crate::methods::llm_judge::{self, JudgeRecord, JudgeStatus, LlmJudge, TargetRecord};
use crate::methods::mcq::{Mcq, McqRecord};
use crate::methods::mcq_logprob::{self, McqLogprob, McqLogprobRecord};
use crate::methods::{sweep_name, Sweep};
use crate::metrics::{self, Metrics, Scored};
use crate::outcome::{MethodSummary, RunReport, RunStatus};
use crate::store::names as files;
use crate::store::session::{self, NewSession, Session};
use crate::store::{file_digest, read_json, write_bytes_atomic, write_json_atomic};
use crate::store::{MethodSettings, UsageTotals};
use crate::tracking::Tracker;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

mod finish;
mod judge;
mod logprob;
mod mcq;

pub use crate::store::{DoneMarker, FileDigest, MetricsFile};
use finish::*;
use judge::run_llm_judge;
use logprob::run_mcq_logprob;
use mcq::{run_mcq, run_stability_mcq};

/// Version of the session fingerprint payload.
pub const PAYLOAD_SCHEMA: u32 = 1;

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
    /// Why `n_per_label` asks for more rows than some label has, if it does:
    /// refused for a new session, a recorded notice when an existing session
    /// (created before the check existed) is continued.
    pub short_labels: Option<String>,
}

/// Loads the dataset, selects the examples and computes the fingerprint.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let dataset = dataset::load(&config.dataset.path)?;
    let short_labels = config.dataset.n_per_label.and_then(|n| {
        dataset::check_n_per_label(dataset.label_counts(), n)
            .err()
            .map(|e| format!("{}: {e}", config.dataset.path.display()))
    });
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
        short_labels,
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
    if let Some(short) = &prepared.short_labels {
        let dir = session::session_dir(&config.run.runs_dir, &req.run_key, &prepared.fingerprint);
        if !crate::store::layout::manifest(&dir).exists() {
            bail!("{short}");
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
        notes: prepared
            .short_labels
            .iter()
            .map(|short| format!("notice: {short} (this session was created before w2c refused that; it continues with the unbalanced selection it was created with)"))
            .collect(),
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

/// The judge model, its client (the target's when they share a provider)
/// and the `llm_judge` method.
fn judge_setup<'c>(
    config: &'c Config,
    target_client: &Arc<Client>,
) -> Result<(&'c str, Arc<Client>, LlmJudge)> {
    let (provider_name, _) = config.target_provider()?;
    let (judge_model, judge_provider, judge_cfg) = config.judge_provider()?;
    let judge_client = if judge_provider == provider_name {
        target_client.clone()
    } else {
        Arc::new(Client::new(judge_provider, judge_cfg, config.run.seed)?)
    };
    let method = LlmJudge::new(
        &config.methods.llm_judge,
        &config.models.target,
        judge_model,
        config.run.seed,
    )?;
    Ok((judge_model, judge_client, method))
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
                let (judge_model, judge_client, method) = judge_setup(config, &client)?;
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
                let (judge_model, judge_client, base) = judge_setup(config, &client)?;
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

/// Loads the resolved config stored in a session's manifest, for resuming.
pub fn config_from_manifest(found: &session::FoundSession) -> Result<Config> {
    let config: Config =
        serde_json::from_value(found.manifest.config.clone()).with_context(|| {
            format!(
                "{}: field `config` does not hold a valid w2c config",
                crate::store::layout::manifest(&found.dir).display()
            )
        })?;
    config.validate().with_context(|| {
        format!(
            "{}: stored config",
            crate::store::layout::manifest(&found.dir).display()
        )
    })?;
    Ok(config)
}

/// Resolves the RUN_KEY for a config and CLI flag.
pub fn run_key_for(config: &Config, cli: Option<&str>) -> Result<config::RunKey> {
    let env = std::env::var("W2C_RUN_KEY").ok();
    config::resolve_run_key(cli, env.as_deref(), config.run.run_key.as_deref())
}
