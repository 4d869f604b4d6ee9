//! `w2c run` and `w2c resume`: config → inputs ([`inputs`]) → the session,
//! opened and locked ([`open`]) → every enabled method, each namespace
//! through the one skeleton ([`namespace`]) → a [`RunReport`]. Whoever
//! watches the run (MLflow tracking, tests) is a [`RunObserver`] handed in by
//! the caller; the runner does not know what it does.

pub mod inputs;
mod namespace;

pub use inputs::{prepare, session_payload, Prepared, PAYLOAD_SCHEMA};

use crate::config::{self, Config, MethodKind};
use crate::dataset::Example;
use crate::engine::Cancel;
use crate::fingerprint::{diff, short};
use crate::llm::Client;
use crate::methods::llm_judge::{JudgeAnswers, JudgedTarget, LlmJudge, TargetAnswers};
use crate::methods::mcq::{Mcq, McqRun};
use crate::methods::mcq_logprob::{McqLogprob, McqLogprobRun};
use crate::methods::{Method, Sweep};
use crate::outcome::{MethodSummary, RunObserver, RunReport, RunStatus};
use crate::store::session::{self, NewSession, Session};
use anyhow::{bail, Context, Result};
use namespace::run_namespace;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What `run` is asked to do.
pub struct RunRequest {
    /// The resolved config.
    pub config: Config,
    /// The resolved RUN_KEY.
    pub run_key: String,
    /// When resuming by fingerprint: the fingerprint the inputs must still give.
    pub expect_fingerprint: Option<String>,
}

/// A session opened (and locked) for a run, with its inputs.
pub struct Opened {
    /// The config.
    pub config: Config,
    /// The inputs.
    pub prepared: Prepared,
    /// The session, locked by this process.
    pub session: Session,
    notes: Vec<String>,
}

/// Prepares the inputs, checks them against the session being resumed, and
/// opens (creating if needed) and locks the session. Nothing is sent yet.
pub fn open(req: RunRequest) -> Result<Opened> {
    let config = req.config;
    let prepared = prepare(&config)?;
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
    let mut notes = Vec::new();
    if let Some(short) = &prepared.short_labels {
        let dir = session::session_dir(&config.run.runs_dir, &req.run_key, &prepared.fingerprint);
        if !crate::store::layout::manifest(&dir).exists() {
            bail!("{short}");
        }
        notes.push(format!("notice: {short} (this session was created before w2c refused that; it continues with the unbalanced selection it was created with)"));
    }
    let session = session::open_or_create(
        &config.run.runs_dir,
        NewSession {
            run_key: &req.run_key,
            payload: &prepared.payload,
            config: serde_json::to_value(&config).context("cannot serialise the config")?,
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
    Ok(Opened {
        config,
        prepared,
        session,
        notes,
    })
}

/// Everything a method's namespaces run with.
struct Run<'a, O> {
    session: &'a Session,
    examples: &'a [Example],
    cancel: &'a Cancel,
    observer: &'a O,
    /// The session's seed for bootstraps (from its fingerprint, so a resumed
    /// and an uninterrupted run compute the same intervals).
    seed: u64,
}

impl Opened {
    /// Runs (or resumes) every enabled method, telling `observer` as it goes.
    pub async fn execute<O: RunObserver>(self, observer: &O, cancel: &Cancel) -> Result<RunReport> {
        let mut report = RunReport {
            session_dir: self.session.dir.clone(),
            run_key: self.session.manifest.run_key.clone(),
            fingerprint: self.session.manifest.fingerprint.clone(),
            created: self.session.created,
            methods: Vec::new(),
            status: RunStatus::Complete,
            notes: self.notes.clone(),
        };
        let run = Run {
            session: &self.session,
            examples: &self.prepared.selected,
            cancel,
            observer,
            seed: u64::from_str_radix(
                crate::fingerprint::prefix(&self.session.manifest.fingerprint, 16),
                16,
            )
            .unwrap_or(0),
        };
        if let Err(err) = run_methods(&self.config, &run, &mut report).await {
            observer.run_failed(&err).await;
            return Err(err);
        }
        let notes = observer.run_finished(&report).await;
        report.notes.extend(notes);
        Ok(report)
    }
}

/// The clients of a run: the target's, and the judge's (the target's when
/// they share a provider).
struct Clients {
    target: Arc<Client>,
    judge: Option<Arc<Client>>,
}

impl Clients {
    fn new(config: &Config) -> Result<Clients> {
        let (provider_name, provider_cfg) = config.target_provider()?;
        let target = Arc::new(Client::new(provider_name, provider_cfg, config.run.seed)?);
        let judge = if config.methods.enabled.iter().any(|m| m.uses_judge()) {
            let (_, judge_provider, judge_cfg) = config.judge_provider()?;
            Some(if judge_provider == provider_name {
                target.clone()
            } else {
                Arc::new(Client::new(judge_provider, judge_cfg, config.run.seed)?)
            })
        } else {
            None
        };
        Ok(Clients { target, judge })
    }
}

/// Runs every enabled method in order; sweeps run one namespace per
/// temperature. Stops starting methods once a stop is requested.
async fn run_methods<O: RunObserver>(
    config: &Config,
    run: &Run<'_, O>,
    report: &mut RunReport,
) -> Result<()> {
    let clients = Clients::new(config)?;
    let target_price = config.prices.get(&config.models.target).copied();
    let sweeps: Vec<Sweep> = config
        .methods
        .stability
        .temperatures
        .iter()
        .map(|&temperature| Sweep {
            k: config.methods.stability.k,
            temperature,
            seed_mode: config.methods.stability.seed_mode,
        })
        .collect();
    for &kind in &config.methods.enabled {
        if run.cancel.is_cancelled() {
            report.status = RunStatus::Interrupted;
            break;
        }
        match kind {
            MethodKind::Mcq | MethodKind::StabilityMcq => {
                let mcq = Mcq::new(&config.methods.mcq, &config.models.target, config.run.seed)?;
                let variants: Vec<Mcq> = match kind {
                    MethodKind::Mcq => vec![mcq],
                    _ => sweeps.iter().map(|&s| mcq.with_sweep(s)).collect(),
                };
                for mcq in variants {
                    let method = McqRun {
                        mcq,
                        client: clients.target.clone(),
                        price: target_price,
                    };
                    let ran = run_namespace(run, &method, report).await?;
                    report.methods.push(ran.summary);
                    if run.cancel.is_cancelled() {
                        break;
                    }
                }
            }
            MethodKind::McqLogprob => {
                let method = McqLogprobRun {
                    method: McqLogprob::new(
                        &config.methods.mcq_logprob,
                        &config.models.target,
                        config.run.seed,
                    )?,
                    client: clients.target.clone(),
                    price: target_price,
                };
                let ran = run_namespace(run, &method, report).await?;
                report.methods.push(ran.summary);
            }
            MethodKind::LlmJudge | MethodKind::StabilityLlmJudge => {
                let (judge_model, _, _) = config.judge_provider()?;
                let base = LlmJudge::new(
                    &config.methods.llm_judge,
                    &config.models.target,
                    judge_model,
                    config.run.seed,
                )?;
                let variants: Vec<LlmJudge> = match kind {
                    MethodKind::LlmJudge => vec![base],
                    _ => sweeps.iter().map(|&s| base.with_sweep(s)).collect(),
                };
                let judging = Judging {
                    clients: &clients,
                    target_price,
                    judge_price: config.prices.get(judge_model).copied(),
                };
                for method in variants {
                    let summary = judging.run(run, method, report).await?;
                    report.methods.push(summary);
                    if run.cancel.is_cancelled() {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `llm_judge`'s two streams: the target answers, then the judge over them.
struct Judging<'a> {
    clients: &'a Clients,
    target_price: Option<config::Price>,
    judge_price: Option<config::Price>,
}

impl Judging<'_> {
    /// Runs one judge namespace (and its target stream first); returns the
    /// judge namespace's summary.
    async fn run<O: RunObserver>(
        &self,
        run: &Run<'_, O>,
        method: LlmJudge,
        report: &mut RunReport,
    ) -> Result<MethodSummary> {
        let judge_client = self
            .clients
            .judge
            .clone()
            .context("llm_judge needs a judge client")?;
        let mut judge = JudgeAnswers {
            method: method.clone(),
            client: judge_client,
            price: self.judge_price,
            target: JudgedTarget::default(),
        };
        // Claimed first, so the judge's namespace is found done without
        // reading the target answers again.
        let judge_ns = session::claim_namespace(&run.session.dir, &judge.settings())?;
        let total = judge.items(run.examples).len();
        if judge_ns.is_done() {
            return namespace::done_summary(&judge_ns, total);
        }
        let targets = TargetAnswers {
            method,
            client: self.clients.target.clone(),
            price: self.target_price,
        };
        let answered = run_namespace(run, &targets, report).await?;
        if answered.cancelled && !answered.complete {
            return Ok(MethodSummary {
                namespace: judge_ns.name,
                done: 0,
                total,
                failed: answered.summary.failed,
                metrics: None,
                usage: Default::default(),
                stability: None,
            });
        }
        judge.target = JudgedTarget {
            namespace: answered.summary.namespace,
            usage: answered.summary.usage,
            answers: answered.results,
        };
        let mut judged = run_namespace(run, &judge, report).await?;
        judged.summary.failed += answered.summary.failed;
        Ok(judged.summary)
    }
}

/// Loads the resolved config stored in a session's manifest, for resuming.
pub fn config_from_manifest(found: &session::FoundSession) -> Result<Config> {
    let manifest = crate::store::layout::manifest(&found.dir);
    let config: Config =
        serde_json::from_value(found.manifest.config.clone()).with_context(|| {
            format!(
                "{}: field `config` does not hold a valid w2c config",
                manifest.display()
            )
        })?;
    config
        .validate()
        .with_context(|| format!("{}: stored config", manifest.display()))?;
    Ok(config)
}

/// Resolves the RUN_KEY for a config and CLI flag.
pub fn run_key_for(config: &Config, cli: Option<&str>) -> Result<config::RunKey> {
    let env = std::env::var("W2C_RUN_KEY").ok();
    config::resolve_run_key(cli, env.as_deref(), config.run.run_key.as_deref())
}
