//! `w2c run` and `w2c resume`: config → inputs ([`inputs`]) → the session,
//! opened and locked ([`open`]) → every enabled method, each namespace
//! through the one skeleton ([`namespace`]) → a [`RunReport`]. Whoever
//! watches the run (MLflow tracking, tests) is a [`RunObserver`] handed in by
//! the caller; the runner does not know what it does.

pub mod estimate;
pub mod inputs;
mod namespace;

pub use inputs::{prepare, prepare_resumed, session_payload, Examples, Prepared, PAYLOAD_SCHEMA};

use crate::config::{self, Config, MethodKind};
use crate::engine::Cancel;
use crate::fingerprint::diff;
use crate::llm::Client;
use crate::methods::llm_judge::{JudgeAnswers, JudgedTarget, LlmJudge, TargetAnswers};
use crate::methods::mcq::{Mcq, McqRun};
use crate::methods::mcq_logprob::{McqLogprob, McqLogprobRun};
use crate::methods::{Bound, Caller};
use crate::methods::{Method, Plan as _, Sweep};
use crate::outcome::{MethodSummary, RunObserver, RunReport, RunStatus};
use crate::store::session::{self, Manifest, NewSession, Session};
use anyhow::{bail, Context, Result};
use namespace::run_namespace;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// What `run` is asked to do.
pub struct RunRequest {
    /// The resolved config.
    pub config: Config,
    /// The resolved RUN_KEY.
    pub run_key: String,
    /// When resuming by fingerprint: the session's manifest, whose
    /// fingerprint the inputs must still give.
    pub resuming: Option<Manifest>,
    /// Which items of each namespace this process runs.
    pub slice: SliceRequest,
}

/// Which items of each namespace a process is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceRequest {
    /// Every item.
    All,
    /// One shard's: `--shard` and `--shards` as given (the rest comes from
    /// the job engine's environment, the config's `run.shards` and the
    /// session's plan; see [`crate::shard::resolve`]).
    Shard {
        /// `--shard`.
        flag: Option<crate::shard::ShardFlag>,
        /// `--shards`.
        shards: Option<usize>,
    },
    /// None: finalize what is complete.
    Finalize,
}

/// Which items of each namespace a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slice {
    /// Every item (an unsharded run): the process holds the session alone.
    All,
    /// One shard's slice, beside the other shards.
    Shard(crate::shard::Resolved),
    /// None: finalize every namespace whose items are all done
    /// (`w2c finalize`), beside shards that may still run.
    Finalize,
}

impl Slice {
    /// Whether this process runs the items of the example at `position`.
    pub fn owns(&self, position: usize) -> bool {
        match self {
            Slice::All => true,
            Slice::Shard(r) => r.shard.owns(position),
            Slice::Finalize => false,
        }
    }

    /// The shard this process runs, if it is one.
    pub fn shard(&self) -> Option<crate::shard::Shard> {
        match self {
            Slice::Shard(r) => Some(r.shard),
            _ => None,
        }
    }

    fn access(&self) -> session::Access {
        match self {
            Slice::All => session::Access::Alone,
            Slice::Shard(r) => session::Access::Shard(r.shard),
            Slice::Finalize => session::Access::Shared,
        }
    }
}

/// A session opened (and locked) for a run, with its inputs.
pub struct Opened {
    /// The config.
    pub config: Config,
    /// The inputs.
    pub prepared: Prepared,
    /// The session, locked by this process.
    pub session: Session,
    /// Which items of each namespace this process runs.
    pub slice: Slice,
    notes: Vec<String>,
}

/// The inputs of a request (checked against the session it resumes), the
/// slice it asks for and notes for the user.
fn checked_inputs(req: &RunRequest) -> Result<(Prepared, Slice, Vec<String>)> {
    let config = &req.config;
    let prepared = match &req.resuming {
        Some(stored) => prepare_resumed(config, stored)?,
        None => prepare(config)?,
    };
    if let Some(stored) = &req.resuming {
        if prepared.fingerprint != stored.fingerprint {
            let old: Value = serde_json::from_str(&stored.fingerprint_canonical)
                .context("manifest field `fingerprint_canonical` is not JSON")?;
            bail!(
                "refusing to resume session {}: its inputs changed since it was created:\n  {}",
                crate::store::address::display(&req.run_key, &stored.fingerprint),
                diff(&old, &prepared.payload).join("\n  ")
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
    if let Some(first) = prepared.dataset_notes.first() {
        let more = prepared.dataset_notes.len() - 1;
        notes.push(format!(
            "notice: {}:{}: {}{}; such rows are evaluated as written, as the official When2Call task evaluates them (each such text of a selected row is an audit event, `tool_not_a_definition` or `target_tool_not_offered`, in the session's audit_fallbacks.jsonl)",
            prepared.dataset.path.display(),
            first.line,
            first.note,
            if more > 0 {
                format!(" (and {more} more tool texts like it)")
            } else {
                String::new()
            }
        ));
    }
    let slice = match req.slice {
        SliceRequest::All => Slice::All,
        SliceRequest::Finalize => {
            if req.resuming.is_none() {
                bail!("finalizing needs an existing session");
            }
            Slice::Finalize
        }
        SliceRequest::Shard { flag, shards } => {
            let dir =
                session::session_dir(&config.run.runs_dir, &req.run_key, &prepared.fingerprint);
            let planned = req.resuming.as_ref().and_then(|m| m.shards).or_else(|| {
                crate::store::read_json::<Manifest>(&crate::store::layout::manifest(&dir))
                    .ok()
                    .and_then(|m| m.shards)
            });
            let env = |k: &str| std::env::var(k).ok();
            match crate::shard::resolve(flag, shards, config.run.shards.or(planned), &env)
                .map_err(anyhow::Error::msg)?
            {
                Some(resolved) => Slice::Shard(resolved),
                None => Slice::All,
            }
        }
    };
    Ok((prepared, slice, notes))
}

/// Prepares the inputs, checks them against the session being resumed, and
/// opens (creating if needed) and locks the session. Nothing is sent yet.
pub fn open(req: RunRequest) -> Result<Opened> {
    let (prepared, slice, notes) = checked_inputs(&req)?;
    let config = req.config;
    let access = slice.access();
    // The notes are there only when the examples were read (never for a
    // deferred resume), so the selection is at hand.
    let audit = if prepared.dataset_notes.is_empty() {
        Vec::new()
    } else {
        let selected = prepared.examples.get()?;
        let uuids: HashSet<&str> = selected.iter().map(|e| e.uuid.as_str()).collect();
        crate::dataset_audit::events(&prepared.dataset.path, &prepared.dataset_notes, &uuids)
    };
    let mut session = if req.resuming.is_some() {
        let session = session::open_existing_as(
            &config.run.runs_dir,
            &req.run_key,
            &prepared.payload,
            access,
        )?;
        let _planning = session.plan_lock()?;
        session::record_audit(&session.dir, &audit)?;
        session
    } else {
        let selected = prepared.examples.get()?;
        session::open_or_create_as(
            &config.run.runs_dir,
            NewSession {
                run_key: &req.run_key,
                payload: &prepared.payload,
                config: serde_json::to_value(&config).context("cannot serialise the config")?,
                example_ids: selected.iter().map(|e| e.uuid.clone()).collect(),
                label_counts: selected.iter().fold(BTreeMap::new(), |mut acc, e| {
                    *acc.entry(e.gold.to_string()).or_insert(0) += 1;
                    acc
                }),
                audit: &audit,
            },
            access,
        )?
    };
    if let Slice::Shard(resolved) = &slice {
        // The shard count is the plan's: the first shard records it.
        let _planning = session.plan_lock()?;
        let stored: Manifest =
            crate::store::read_json(&crate::store::layout::manifest(&session.dir))?;
        crate::shard::check_against_plan(resolved, stored.shards).map_err(anyhow::Error::msg)?;
        if stored.shards.is_none() {
            session::record_shards(&session.dir, resolved.shard.count)?;
        }
        session.manifest.shards = Some(resolved.shard.count);
    }
    Ok(Opened {
        config,
        prepared,
        session,
        slice,
        notes,
    })
}

/// Checks what [`open`] would run without opening, creating or locking
/// anything: the inputs still give the resumed session's fingerprint, and
/// a shard (from the flags or the job engine's environment) agrees with the
/// session's plan. Returns the slice this process would run.
pub fn check(req: &RunRequest) -> Result<Slice> {
    let (prepared, slice, _) = checked_inputs(req)?;
    if let Slice::Shard(resolved) = &slice {
        let dir = session::session_dir(
            &req.config.run.runs_dir,
            &req.run_key,
            &prepared.fingerprint,
        );
        let manifest = crate::store::layout::manifest(&dir);
        let planned = if manifest.exists() {
            crate::store::read_json::<Manifest>(&manifest)?.shards
        } else {
            None
        };
        crate::shard::check_against_plan(resolved, planned).map_err(anyhow::Error::msg)?;
    }
    Ok(slice)
}

/// Everything a method's namespaces run with.
struct Run<'a, O> {
    session: &'a Session,
    /// Which items this process runs.
    slice: &'a Slice,
    examples: &'a Examples,
    cancel: &'a Cancel,
    observer: &'a O,
    /// The session's seed for bootstraps (from its fingerprint, so a resumed
    /// and an uninterrupted run compute the same intervals).
    seed: u64,
}

/// The HTTP clients of a run, one per provider, shared by every session a
/// process runs (a campaign's targets on one endpoint share its
/// concurrency, its adaptive limit and its rate budgets).
#[derive(Default)]
pub struct ClientPool {
    clients: std::sync::Mutex<BTreeMap<String, Arc<Client>>>,
}

impl ClientPool {
    /// The client of provider `name` (built on first use).
    fn get(&self, name: &str, cfg: &config::ProviderConfig, seed: u64) -> Result<Arc<Client>> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| anyhow::anyhow!("client pool poisoned"))?;
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        // `W2C_BASE_URLS_<PROVIDER>` points this process at its own
        // endpoints (e.g. the model server a job array task started).
        let env = |k: &str| std::env::var(k).ok();
        let cfg = cfg.with_endpoints_from_env(name, &env)?;
        let client = Arc::new(Client::new(name, &cfg, seed)?);
        clients.insert(name.to_string(), client.clone());
        Ok(client)
    }
}

impl Opened {
    /// Runs (or resumes) every enabled method, telling `observer` as it goes.
    pub async fn execute<O: RunObserver>(self, observer: &O, cancel: &Cancel) -> Result<RunReport> {
        self.execute_with(observer, cancel, &ClientPool::default())
            .await
    }

    /// [`Opened::execute`] with the clients of `pool`, shared with other
    /// sessions run at the same time.
    pub async fn execute_with<O: RunObserver>(
        self,
        observer: &O,
        cancel: &Cancel,
        pool: &ClientPool,
    ) -> Result<RunReport> {
        let mut report = RunReport {
            session_dir: self.session.dir.clone(),
            run_key: self.session.manifest.run_key.clone(),
            fingerprint: self.session.manifest.fingerprint.clone(),
            created: self.session.created,
            methods: Vec::new(),
            status: RunStatus::Complete,
            notes: self.notes.clone(),
            shard: self.slice.shard(),
            finalizing: self.slice == Slice::Finalize,
            stopped_by: None,
        };
        let run = Run {
            session: &self.session,
            slice: &self.slice,
            examples: &self.prepared.examples,
            cancel,
            observer,
            seed: u64::from_str_radix(
                crate::fingerprint::prefix(&self.session.manifest.fingerprint, 16),
                16,
            )
            .unwrap_or(0),
        };
        if let Err(err) = run_methods(&self.config, &run, &mut report, pool).await {
            observer.run_failed(&err).await;
            return Err(err);
        }
        if report.status == RunStatus::Interrupted {
            report.stopped_by = cancel.reason();
        }
        let notes = observer.run_finished(&report).await;
        report.notes.extend(notes);
        Ok(report)
    }
}

/// The models a run calls: the target, and the judge (whose client is the
/// target's when they share a provider), each with its price.
struct Callers {
    target: Caller,
    judge: Option<Caller>,
}

impl Callers {
    fn new(config: &Config, pool: &ClientPool) -> Result<Callers> {
        let price = |model: &str| config.prices.get(model).copied();
        let (provider_name, provider_cfg) = config.target_provider()?;
        let target = Caller {
            client: pool.get(provider_name, provider_cfg, config.run.seed)?,
            price: price(&config.models.target),
        };
        let judge = if config.methods.enabled.iter().any(|m| m.uses_judge()) {
            let (judge_model, judge_provider, judge_cfg) = config.judge_provider()?;
            Some(Caller {
                client: pool.get(judge_provider, judge_cfg, config.run.seed)?,
                price: price(judge_model),
            })
        } else {
            None
        };
        Ok(Callers { target, judge })
    }
}

/// One namespace (or, for `llm_judge`, one target/judge pair) to run: its
/// plan, bound to the models it calls only when it runs.
pub enum Planned {
    /// `mcq` or one of its sweeps.
    Mcq(Mcq),
    /// `mcq_logprob`.
    McqLogprob(McqLogprob),
    /// `llm_judge` or one of its sweeps.
    Judge(LlmJudge),
}

/// Every namespace the config's enabled methods run, in order: sweeps give
/// one per temperature.
pub fn plan(config: &Config) -> Result<Vec<Planned>> {
    let st = &config.methods.stability;
    let sweeps: Vec<Sweep> = st
        .temperatures
        .iter()
        .map(|&temperature| Sweep {
            k: st.k,
            temperature,
            seed_mode: st.seed_mode,
        })
        .collect();
    let (target, seed) = (&config.models.target, config.run.seed);
    let mut planned = Vec::new();
    for &kind in &config.methods.enabled {
        match kind {
            MethodKind::Mcq | MethodKind::StabilityMcq => {
                let mcq = Mcq::new(&config.methods.mcq, target, seed)?;
                match kind {
                    MethodKind::Mcq => planned.push(Planned::Mcq(mcq)),
                    _ => planned.extend(sweeps.iter().map(|&s| Planned::Mcq(mcq.with_sweep(s)))),
                }
            }
            MethodKind::McqLogprob => planned.push(Planned::McqLogprob(McqLogprob::new(
                &config.methods.mcq_logprob,
                target,
                seed,
            )?)),
            MethodKind::LlmJudge | MethodKind::StabilityLlmJudge => {
                let (judge_model, _, _) = config.judge_provider()?;
                let base = LlmJudge::new(&config.methods.llm_judge, target, judge_model, seed)?;
                match kind {
                    MethodKind::LlmJudge => planned.push(Planned::Judge(base)),
                    _ => planned.extend(sweeps.iter().map(|&s| Planned::Judge(base.with_sweep(s)))),
                }
            }
        }
    }
    Ok(planned)
}

impl Planned {
    /// The settings of every namespace this runs (a judge: its target
    /// stream, then its judge stream) and its items per example.
    pub fn streams(&self) -> Vec<(crate::store::MethodSettings, usize)> {
        match self {
            Planned::Mcq(m) => vec![(m.settings(), m.repeats())],
            Planned::McqLogprob(m) => vec![(m.settings(), m.repeats())],
            Planned::Judge(j) => vec![
                (j.target_settings(), j.repeats()),
                (j.judge_settings(), j.repeats()),
            ],
        }
    }
}

/// Claims every namespace of `planned` up front and records the plan in the
/// manifest, so that `status`, `ls` and `verify` know what the session
/// will hold before each namespace starts (under the plan lock when shards
/// share the session). Returns the recorded plan.
pub fn claim_plan(
    session: &Session,
    planned: &[Planned],
) -> Result<Vec<session::PlannedNamespace>> {
    let _planning = session.plan_lock()?;
    let n_examples = session.manifest.n_examples;
    let mut recorded = Vec::new();
    for p in planned {
        for (settings, repeats) in p.streams() {
            let ns = session::claim_namespace(&session.dir, &settings)?;
            recorded.push(session::PlannedNamespace {
                namespace: ns.name,
                items: n_examples * repeats,
                repeats,
            });
        }
    }
    session::record_plan(&session.dir, &recorded)?;
    Ok(recorded)
}

/// Records the plan ([`claim_plan`]) and tells the progress readers the
/// items this process runs: the session's, or its shard's slice of them.
fn record_plan<O: RunObserver>(run: &Run<'_, O>, planned: &[Planned]) -> Result<()> {
    let recorded = claim_plan(run.session, planned)?;
    let manifest = crate::store::Manifest {
        plan: recorded,
        ..run.session.manifest.clone()
    };
    let counts: Vec<_> = crate::store::census(&run.session.dir, &manifest)
        .into_iter()
        .filter(|c| c.planned)
        .collect();
    let (total, done) = match run.slice.shard() {
        None => (
            counts.iter().map(|c| c.total).sum(),
            counts.iter().map(|c| c.done).sum(),
        ),
        Some(shard) => counts.iter().fold((0, 0), |(t, d), c| {
            let mine = shard.examples_of(manifest.n_examples) * c.repeats;
            let done = match c.shards.iter().find(|s| s.shard == shard) {
                Some(s) => s.done,
                None if c.state == crate::store::NamespaceState::Done => mine,
                None => 0,
            };
            (t + mine, d + done)
        }),
    };
    run.observer.progress().begin_session(
        counts.iter().map(|c| c.namespace.clone()).collect(),
        total,
        done,
    );
    Ok(())
}

/// Runs every planned namespace in order; stops starting new ones once a
/// stop is requested.
async fn run_methods<O: RunObserver>(
    config: &Config,
    run: &Run<'_, O>,
    report: &mut RunReport,
    pool: &ClientPool,
) -> Result<()> {
    let callers = Callers::new(config, pool)?;
    let judging = Judging { callers: &callers };
    let planned = plan(config)?;
    record_plan(run, &planned)?;
    for planned in planned {
        if run.cancel.is_cancelled() {
            report.status = RunStatus::Interrupted;
            break;
        }
        let target = || callers.target.clone();
        let summary = match planned {
            Planned::Mcq(plan) => {
                let method = McqRun {
                    plan,
                    caller: target(),
                };
                run_namespace(run, &method, report, |_| Ok(None))
                    .await?
                    .summary
            }
            Planned::McqLogprob(plan) => {
                let method = McqLogprobRun {
                    plan,
                    caller: target(),
                };
                run_namespace(run, &method, report, |_| Ok(None))
                    .await?
                    .summary
            }
            Planned::Judge(method) => judging.run(run, method, report).await?,
        };
        report.methods.push(summary);
    }
    Ok(())
}

/// `llm_judge`'s two streams: the target answers, then the judge over them.
struct Judging<'a> {
    callers: &'a Callers,
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
        let judge_caller = self
            .callers
            .judge
            .clone()
            .context("llm_judge needs a judge client")?;
        let mut judge = JudgeAnswers {
            judge: Bound {
                plan: method.clone(),
                caller: judge_caller,
            },
            target: JudgedTarget::default(),
        };
        // Claimed first, so the judge's namespace is found done without
        // reading the target answers again.
        let judge_ns = session::claim_namespace(&run.session.dir, &judge.settings())?;
        if judge_ns.is_done() {
            return namespace::done_summary(&judge_ns, method.repeats());
        }
        let total = judge
            .items(run.examples.get()?)
            .iter()
            .filter(|i| run.slice.owns(i.index))
            .count();
        let targets = TargetAnswers {
            plan: method,
            caller: self.callers.target.clone(),
        };
        let answered = run_namespace(run, &targets, report, |_| Ok(None)).await?;
        if answered.cancelled && !answered.complete {
            return Ok(MethodSummary {
                namespace: judge_ns.name,
                done: 0,
                total,
                repeats: answered.summary.repeats,
                failed: answered.summary.failed,
                metrics: None,
                usage: Default::default(),
                stability: None,
                headline: None,
            });
        }
        let target_ns = answered.summary.namespace.clone();
        judge.target = JudgedTarget {
            namespace: answered.summary.namespace,
            usage: answered.summary.usage,
            answers: answered.results,
        };
        // A process that did not answer every item concludes the judge
        // over every stored answer (a shard knows its slice's only).
        let whole = |_: &crate::store::NamespaceDir| -> Result<Option<JudgeAnswers>> {
            if *run.slice == Slice::All {
                return Ok(None);
            }
            let target_dir = crate::store::NamespaceDir::new(&run.session.dir, &target_ns);
            let keys: Vec<String> = targets
                .items(run.examples.get()?)
                .into_iter()
                .map(|i| i.key)
                .collect();
            let answers = namespace::load_records(&target_dir, &keys)?;
            let records: Vec<_> = keys.iter().filter_map(|k| answers.get(k)).collect();
            let usage = targets.usage(&records);
            Ok(Some(JudgeAnswers {
                judge: judge.judge.clone(),
                target: JudgedTarget {
                    namespace: target_ns.clone(),
                    usage,
                    answers,
                },
            }))
        };
        let mut judged = run_namespace(run, &judge, report, whole).await?;
        judged.summary.failed += answered.summary.failed;
        Ok(judged.summary)
    }
}

/// Loads the resolved config stored in a session's manifest, for resuming.
pub fn config_from_manifest(found: &session::FoundSession) -> Result<Config> {
    let manifest = crate::store::layout::manifest(&found.dir);
    let mut stored = found.manifest.config.clone();
    config::upgrade_stored_config(&mut stored);
    let config: Config = serde_json::from_value(stored).with_context(|| {
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
    let env = crate::env_vars::var("W2C_RUN_KEY")?;
    config::resolve_run_key(cli, env.as_deref(), config.run.run_key.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Progress;
    use std::sync::Mutex;

    /// An observer that writes down what it is told.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
        progress: Arc<Progress>,
    }

    impl Recorder {
        fn push(&self, e: String) {
            self.events.lock().expect("events").push(e);
        }
    }

    impl RunObserver for Recorder {
        fn progress(&self) -> Arc<Progress> {
            self.progress.clone()
        }
        async fn namespace_started(&self, ns: &str) {
            self.push(format!("started {ns}"));
        }
        async fn namespace_stopped(&self, ns: &str, cancelled: bool) {
            self.push(format!("stopped {ns} cancelled={cancelled}"));
        }
        async fn run_failed(&self, err: &anyhow::Error) {
            self.push(format!("failed {err}"));
        }
        async fn run_finished(&self, report: &RunReport) -> Vec<String> {
            self.push(format!("finished {:?}", report.status));
            vec!["recorded".into()]
        }
    }

    fn config(runs: &std::path::Path) -> Config {
        let dataset =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample_when2call.jsonl");
        crate::config::parse(&format!(
            r#"
[run]
runs_dir = "{}"
[dataset]
path = "{}"
n_per_label = 1
[models]
target = "m"
target_provider = "mock"
judge = "j"
judge_provider = "mock"
[providers.mock]
kind = "mock"
[methods]
enabled = ["mcq", "llm_judge"]
"#,
            runs.display(),
            dataset.display()
        ))
        .expect("config")
    }

    #[tokio::test]
    async fn an_observer_is_told_each_namespace_and_the_end_and_nothing_when_all_is_done() {
        let runs = tempfile::tempdir().expect("tempdir");
        let request = || RunRequest {
            config: config(runs.path()),
            run_key: "k".into(),
            resuming: None,
            slice: SliceRequest::All,
        };
        let recorder = Recorder::default();
        let report = open(request())
            .expect("open")
            .execute(&recorder, &Cancel::default())
            .await
            .expect("run");
        assert_eq!(report.status, RunStatus::Complete);
        assert_eq!(report.notes.last().map(String::as_str), Some("recorded"));
        assert_eq!(
            *recorder.events.lock().expect("events"),
            [
                "started mcq",
                "stopped mcq cancelled=false",
                "started llm_judge.target",
                "stopped llm_judge.target cancelled=false",
                "started llm_judge",
                "stopped llm_judge cancelled=false",
                "finished Complete",
            ]
        );
        assert_eq!(
            recorder
                .progress
                .done
                .load(std::sync::atomic::Ordering::Relaxed),
            4
        );

        // Run again: every namespace is done, so none is started.
        let again = Recorder::default();
        let report = open(request())
            .expect("open")
            .execute(&again, &Cancel::default())
            .await
            .expect("run");
        assert_eq!(report.methods.len(), 2);
        assert_eq!(*again.events.lock().expect("events"), ["finished Complete"]);
    }
}
