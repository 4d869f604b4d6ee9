//! MLflow tracking: where a session is tracked ([`Target`]), and the
//! [`Tracker`] a run drives — parent and child runs, progress metrics,
//! final metrics, artifacts and status — without ever letting a slow or
//! absent server cost evaluation work. What could not be sent is recorded in
//! `mlflow_ids.json`; `w2c sync` ([`sync_session`]) sends it later.

pub mod flatten;
pub mod ids;
pub mod mirror;
pub mod rest;
pub mod shards;

use crate::config::TrackingConfig;
use crate::outcome::Progress;
use crate::outcome::{RunObserver, RunReport, RunStatus};
use crate::redact::url_without_credentials;
use crate::store::session::Manifest;
use anyhow::{bail, Context, Result};
use ids::{MlflowIds, Mode};
use mirror::{is_transient, Mirror};
use rest::{status, Auth, KeyValue, MetricPoint, MlflowClient, RetryPolicy};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Experiment used when neither `MLFLOW_EXPERIMENT_NAME` nor `[tracking]
/// experiment` names one.
pub const DEFAULT_EXPERIMENT: &str = "when2call";

/// A tracking server and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL, without credentials.
    pub uri: reqwest::Url,
    /// Experiment name.
    pub experiment: String,
    /// Credentials.
    pub auth: Auth,
    /// Skip TLS certificate checks.
    pub insecure_tls: bool,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Extra CA bundle (`MLFLOW_TRACKING_SERVER_CERT_PATH`).
    pub ca_cert: Option<PathBuf>,
}

impl Target {
    /// A REST client for this server.
    pub fn client(&self) -> Result<MlflowClient> {
        let ca = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH: cannot read {}",
                    path.display()
                )
            })?),
            None => None,
        };
        MlflowClient::new(
            self.uri.clone(),
            self.auth.clone(),
            self.retry,
            self.insecure_tls,
            ca.as_deref(),
        )
    }
}

/// Environment lookup, injectable for tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves where to track: `MLFLOW_TRACKING_URI` over `[tracking] uri`;
/// `None` (offline) without a URI, with `no_tracking`, or with
/// `MLFLOW_ENABLE_TRACKING=false`.
pub fn resolve(config: &TrackingConfig, no_tracking: bool, env: Env<'_>) -> Result<Option<Target>> {
    if no_tracking || tracking_disabled(env) {
        return Ok(None);
    }
    let (raw, source) = match env("MLFLOW_TRACKING_URI").filter(|v| !v.trim().is_empty()) {
        Some(v) => (v, "MLFLOW_TRACKING_URI"),
        None => match &config.uri {
            Some(v) => (v.clone(), "[tracking] uri"),
            None => return Ok(None),
        },
    };
    let mut uri = reqwest::Url::parse(raw.trim())
        .with_context(|| format!("{source}: `{}` is not a URL", url_without_credentials(&raw)))?;
    if !matches!(uri.scheme(), "http" | "https") {
        bail!(
            "{source}: `{}` is not an http(s) tracking server; w2c talks to `mlflow server` over REST (MLflow 3 no longer serves ./mlruns file stores: run `mlflow server --backend-store-uri sqlite:///mlflow.db` and point {source} at it)",
            url_without_credentials(&raw)
        );
    }
    let mut auth = Auth::None;
    if !uri.username().is_empty() {
        if source != "MLFLOW_TRACKING_URI" {
            bail!("[tracking] uri must not hold credentials (they would be stored in the manifest); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead");
        }
        auth = Auth::Basic {
            user: percent_decode(uri.username()),
            password: percent_decode(uri.password().unwrap_or("")),
        };
        let _ = uri.set_username("");
        let _ = uri.set_password(None);
    }
    match (
        env("MLFLOW_TRACKING_USERNAME"),
        env("MLFLOW_TRACKING_PASSWORD"),
        env("MLFLOW_TRACKING_TOKEN"),
    ) {
        (Some(user), Some(password), _) => auth = Auth::Basic { user, password },
        (Some(_), None, _) | (None, Some(_), _) => {
            bail!("MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together")
        }
        (None, None, Some(token)) => auth = Auth::Bearer(token),
        (None, None, None) => {}
    }
    let truthy = |v: Option<String>| {
        v.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    };
    let mut retry = RetryPolicy::default();
    if let Some(v) = env("MLFLOW_HTTP_REQUEST_MAX_RETRIES") {
        retry.max_retries = v
            .trim()
            .parse()
            .with_context(|| format!("MLFLOW_HTTP_REQUEST_MAX_RETRIES: `{v}` is not a count"))?;
    }
    if let Some(v) = env("MLFLOW_HTTP_REQUEST_TIMEOUT") {
        retry.timeout =
            crate::secs::parse_in_range("MLFLOW_HTTP_REQUEST_TIMEOUT", &v, REQUEST_TIMEOUT_RANGE)
                .map_err(anyhow::Error::msg)?;
    }
    // Checked here so that a bad value stops the run at the start.
    env_secs(env, PAUSE_VAR, PAUSE_DEFAULT, PAUSE_RANGE)?;
    env_secs(env, PROGRESS_VAR, PROGRESS_DEFAULT, PROGRESS_RANGE)?;
    let experiment = env("MLFLOW_EXPERIMENT_NAME")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| config.experiment.clone())
        .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string());
    let insecure_tls = truthy(env("MLFLOW_TRACKING_INSECURE_TLS"));
    let ca_cert = env("MLFLOW_TRACKING_SERVER_CERT_PATH").map(PathBuf::from);
    if insecure_tls && ca_cert.is_some() {
        bail!("MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH cannot be used together");
    }
    Ok(Some(Target {
        uri,
        experiment,
        auth,
        insecure_tls,
        retry,
        ca_cert,
    }))
}

/// A percent-encoded URL component (user name, password) as text.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The process environment, for [`resolve`].
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Accepted range of `MLFLOW_HTTP_REQUEST_TIMEOUT`, seconds.
pub const REQUEST_TIMEOUT_RANGE: std::ops::RangeInclusive<f64> = 0.1..=3600.0;
/// How long tracking pauses after a transient failure (environment override).
pub const PAUSE_VAR: &str = "W2C_TRACKING_PAUSE_SECS";
const PAUSE_DEFAULT: Duration = Duration::from_secs(60);
/// Accepted range of [`PAUSE_VAR`], seconds.
pub const PAUSE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=86_400.0;
/// Interval between progress metric points (environment override).
pub const PROGRESS_VAR: &str = "W2C_TRACKING_PROGRESS_SECS";
const PROGRESS_DEFAULT: Duration = Duration::from_secs(15);
/// Accepted range of [`PROGRESS_VAR`], seconds.
pub const PROGRESS_RANGE: std::ops::RangeInclusive<f64> = 0.05..=86_400.0;

/// A seconds-valued environment setting: the default when unset, an error
/// naming the variable and the range when out of range.
fn env_secs(
    env: Env<'_>,
    var: &str,
    default: Duration,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Duration> {
    match env(var) {
        Some(v) if !v.trim().is_empty() => {
            crate::secs::parse_in_range(var, &v, range).map_err(anyhow::Error::msg)
        }
        _ => Ok(default),
    }
}

/// How long tracking stays paused after a call failed on a transient error.
/// (Validated by [`resolve`]; an invalid value here falls back to the default.)
fn pause() -> Duration {
    env_secs(&process_env, PAUSE_VAR, PAUSE_DEFAULT, PAUSE_RANGE).unwrap_or(PAUSE_DEFAULT)
}

/// Interval between progress metric points.
fn progress_interval() -> Duration {
    env_secs(&process_env, PROGRESS_VAR, PROGRESS_DEFAULT, PROGRESS_RANGE)
        .unwrap_or(PROGRESS_DEFAULT)
}

/// Why a session is offline, for `mlflow_ids.json` and the summary.
pub fn offline_reason(no_tracking: bool, env: Env<'_>) -> &'static str {
    if no_tracking {
        "--no-tracking was given"
    } else if tracking_disabled(env) {
        "MLFLOW_ENABLE_TRACKING is off"
    } else {
        "no tracking server configured (MLFLOW_TRACKING_URI or [tracking] uri)"
    }
}

/// Whether `MLFLOW_ENABLE_TRACKING` turns tracking off.
fn tracking_disabled(env: Env<'_>) -> bool {
    let flag = env("MLFLOW_ENABLE_TRACKING").map(|v| v.trim().to_ascii_lowercase());
    matches!(flag.as_deref(), Some("false" | "0" | "no" | "off"))
}

/// Where a stored session is tracked: `MLFLOW_TRACKING_URI` if set, else the
/// server and experiment recorded in its `mlflow_ids.json`, else its
/// config's `[tracking]`. Credentials come only from the environment.
pub fn resolve_for_session(
    config: &TrackingConfig,
    ids: &MlflowIds,
    env: Env<'_>,
) -> Result<Option<Target>> {
    let stored = TrackingConfig {
        uri: ids.tracking_uri.clone().or_else(|| config.uri.clone()),
        experiment: ids
            .experiment_name
            .clone()
            .or_else(|| config.experiment.clone()),
    };
    resolve(&stored, false, env)
}

struct Health {
    paused_until: Option<Instant>,
    pending: BTreeSet<String>,
}

struct Online {
    mirror: tokio::sync::Mutex<Mirror>,
    health: Arc<Mutex<Health>>,
}

/// Drives MLflow for one run of one session. Every method is infallible
/// for the evaluation: failures are recorded as pending, not raised.
pub struct Tracker {
    session_dir: PathBuf,
    online: Option<Online>,
    progress: Arc<Progress>,
    progress_task: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
    open: Mutex<Vec<String>>,
    pushed: Mutex<BTreeSet<String>>,
    notes: Mutex<Vec<String>>,
}

impl Tracker {
    /// A tracker for a session run without a tracking server: records the
    /// session as offline (keeping ids of earlier tracked runs, marked as
    /// not in sync). The record is not rewritten when it would not change (a finished
    /// session resumed offline again is left untouched).
    pub fn offline(session_dir: &Path, why: &str) -> Result<Tracker> {
        let stored = MlflowIds::load(session_dir)?;
        let mut ids = stored.clone();
        let note = format!("not tracked: {why}; `w2c sync` sends the session to MLflow later");
        if ids.mode == Mode::Online {
            ids.synced = false;
            if !ids.pending.contains(&note) {
                ids.pending.push(note);
            }
        } else {
            ids.mode = Mode::Offline;
            ids.synced = false;
            ids.pending = vec![note];
        }
        if ids != stored || !MlflowIds::exists(session_dir) {
            ids.save(session_dir)?;
        }
        Ok(Tracker::with(session_dir, None))
    }

    fn with(session_dir: &Path, online: Option<Online>) -> Tracker {
        Tracker {
            session_dir: session_dir.to_path_buf(),
            online,
            progress: Arc::default(),
            progress_task: Mutex::new(None),
            open: Mutex::new(Vec::new()),
            pushed: Mutex::new(BTreeSet::new()),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// The tracker of a session just opened: connected to `target`, or
    /// recording the session as offline (`why` says why).
    pub async fn for_session(
        target: Option<&Target>,
        why: &str,
        session_dir: &Path,
        manifest: &Manifest,
    ) -> Result<Tracker> {
        match target {
            Some(target) => Tracker::connect(target, session_dir, manifest).await,
            None => Tracker::offline(session_dir, why),
        }
    }

    /// Connects to the server, finds or creates the parent run, logs its
    /// params and marks it RUNNING. A server that is down or slow only
    /// pauses tracking; an answer that says the setup is wrong
    /// (credentials, permissions, a param that changed) is an error, raised
    /// before any evaluation work starts.
    pub async fn connect(
        target: &Target,
        session_dir: &Path,
        manifest: &Manifest,
    ) -> Result<Tracker> {
        let connected = Mirror::connect(
            target.client()?,
            &target.experiment,
            session_dir,
            manifest.clone(),
        )
        .await;
        let mut mirror = match connected {
            Ok(m) => m,
            Err(e) if is_transient(&e) => {
                let t = Tracker::offline(
                    session_dir,
                    &format!("tracking server {} unreachable at start", target.uri),
                )?;
                t.note(format!("tracking: {e:#}; continuing without MLflow"));
                return Ok(t);
            }
            Err(e) => return Err(e.context(format!("tracking server {}", target.uri))),
        };
        let setup: Result<()> = async {
            mirror.ensure_parent().await?;
            mirror.set_parent_status(status::RUNNING).await
        }
        .await;
        let setup = match setup {
            Err(e) if !is_transient(&e) => {
                return Err(e.context(format!("tracking server {}", target.uri)))
            }
            other => other,
        };
        // Artifacts are not worth stopping a run for (e.g. a server started
        // with --no-serve-artifacts): they stay pending.
        let uploaded = match &setup {
            Ok(()) => mirror.upload_session_files(false).await.map(|_| ()),
            Err(_) => Ok(()),
        };
        let tracker = Tracker::with(
            session_dir,
            Some(Online {
                mirror: tokio::sync::Mutex::new(mirror),
                health: Arc::new(Mutex::new(Health {
                    paused_until: None,
                    pending: BTreeSet::new(),
                })),
            }),
        );
        if let Err(e) = setup {
            tracker.failed("session", &e);
        }
        if let Err(e) = uploaded {
            tracker.failed("session artifacts", &e);
        }
        Ok(tracker)
    }

    fn note(&self, s: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(s);
        }
    }

    fn failed(&self, what: &str, err: &anyhow::Error) {
        let Some(online) = &self.online else { return };
        let mut h = match online.health.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        if is_transient(err) {
            h.paused_until = Some(Instant::now() + pause());
        }
        h.pending.insert(format!("{what}: {err:#}"));
    }

    fn paused(&self, what: &str) -> bool {
        let Some(online) = &self.online else {
            return true;
        };
        let mut h = match online.health.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        match h.paused_until {
            Some(t) if Instant::now() < t => {
                h.pending.insert(format!(
                    "{what}: skipped while the tracking server was unreachable"
                ));
                true
            }
            _ => false,
        }
    }

    /// A namespace starts running: its child run is found or created and
    /// marked RUNNING, and progress metrics start flowing to it.
    async fn begin_namespace(&self, ns: &str) {
        if let Ok(mut open) = self.open.lock() {
            if !open.iter().any(|n| n == ns) {
                open.push(ns.to_string());
            }
        }
        self.stop_progress().await;
        let Some(online) = &self.online else { return };
        if self.paused(ns) {
            return;
        }
        let mut m = online.mirror.lock().await;
        let r: Result<rest::Run> = async {
            let run = m.ensure_child(ns).await?;
            m.client
                .set_status(&run.info.run_id, status::RUNNING)
                .await?;
            Ok(run)
        }
        .await;
        let client = m.client.clone();
        drop(m);
        match r {
            Ok(run) => {
                let task = tokio::spawn(progress_loop(
                    client,
                    run.info.run_id,
                    self.progress.clone(),
                    online.health.clone(),
                ));
                if let Ok(mut slot) = self.progress_task.lock() {
                    *slot = Some((ns.to_string(), task));
                }
            }
            Err(e) => self.failed(ns, &e),
        }
    }

    async fn stop_progress(&self) {
        let task = self.progress_task.lock().ok().and_then(|mut t| t.take());
        if let Some((ns, task)) = task {
            task.abort();
            let _ = task.await;
            // One last point with the final counts.
            if let Some(online) = &self.online {
                if !self.paused(&ns) {
                    let m = online.mirror.lock().await;
                    if let Some(id) = m.ids.child_run_ids.get(&ns).cloned() {
                        let client = m.client.clone();
                        drop(m);
                        if let Err(e) = log_progress(&client, &id, &self.progress).await {
                            self.failed(&ns, &e.into());
                        }
                    }
                }
            }
        }
    }

    /// Namespaces begun and not yet stopped have stopped: final metrics and
    /// artifacts are sent and each child gets the status its local state
    /// says (FINISHED with `_DONE`, KILLED after an interrupt, FAILED
    /// otherwise). `only` limits this to one namespace.
    async fn end_namespaces(&self, only: Option<&str>, cancelled: bool) {
        self.stop_progress().await;
        let ended: Vec<String> = self
            .open
            .lock()
            .map(|mut open| {
                let (ended, kept) = std::mem::take(&mut *open)
                    .into_iter()
                    .partition(|ns| only.is_none_or(|o| o == ns));
                *open = kept;
                ended
            })
            .unwrap_or_default();
        for ns in ended {
            let st = if mirror::namespace_done(&self.session_dir, &ns) {
                status::FINISHED
            } else if cancelled {
                status::KILLED
            } else {
                status::FAILED
            };
            self.push_namespace(&ns, st).await;
        }
    }

    async fn push_namespace(&self, ns: &str, st: &str) {
        let Some(online) = &self.online else { return };
        if self.paused(ns) {
            return;
        }
        let mut m = online.mirror.lock().await;
        let r = m.push_namespace(ns, st, false).await;
        drop(m);
        match r {
            Ok(_) => {
                if let Ok(mut p) = self.pushed.lock() {
                    p.insert(ns.to_string());
                }
            }
            Err(e) => self.failed(ns, &e),
        }
    }

    /// The run failed with `err`: open children and the parent are marked
    /// FAILED (best effort) and the ids record is saved.
    async fn abort(&self, err: &anyhow::Error) {
        self.stop_progress().await;
        let open: Vec<String> = self
            .open
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for ns in open {
            self.push_namespace(&ns, status::FAILED).await;
        }
        if let Some(online) = &self.online {
            if !self.paused("session") {
                let mut m = online.mirror.lock().await;
                let r = async {
                    m.ensure_parent().await?;
                    m.client
                        .log_batch(
                            &m.ids.parent_run_id.clone().unwrap_or_default(),
                            &[],
                            &[],
                            &[KeyValue::new("w2c.error", format!("{err:#}"))],
                        )
                        .await?;
                    m.set_parent_status(status::FAILED).await
                }
                .await;
                drop(m);
                if let Err(e) = r {
                    self.failed("session", &e);
                }
            }
        }
        let _ = self.save_ids().await;
    }

    /// The run ended: namespaces it reported but did not run (finished
    /// earlier) are brought up to date, the parent gets its status, and
    /// `mlflow_ids.json` records what is pending. Returns notes for the user.
    async fn finish(&self, report: &RunReport) -> Vec<String> {
        self.end_namespaces(None, report.status == RunStatus::Interrupted)
            .await;
        if let Some(online) = &self.online {
            // Every namespace of the session, not only those this run's
            // methods reported (a judge's target stream, namespaces of
            // other settings), goes through the same path as `w2c sync`.
            for (ns, st) in mirror::stopped_namespaces(&self.session_dir) {
                let done_here = self.pushed.lock().is_ok_and(|p| p.contains(&ns));
                if !done_here {
                    self.push_namespace(&ns, st).await;
                }
            }
            if !self.paused("session") {
                let parent_status = match report.status {
                    RunStatus::Complete => status::FINISHED,
                    RunStatus::Interrupted => status::KILLED,
                    RunStatus::Incomplete => status::FAILED,
                };
                let mut m = online.mirror.lock().await;
                let r = async {
                    m.upload_session_files(false).await?;
                    m.set_parent_status(parent_status).await
                }
                .await;
                drop(m);
                if let Err(e) = r {
                    self.failed("session", &e);
                }
            }
        }
        if let Err(e) = self.save_ids().await {
            self.note(format!("cannot save mlflow_ids.json: {e:#}"));
        }
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    async fn save_ids(&self) -> Result<()> {
        let Some(online) = &self.online else {
            return Ok(());
        };
        let pending: Vec<String> = online
            .health
            .lock()
            .map(|h| h.pending.iter().cloned().collect())
            .unwrap_or_default();
        let mut m = online.mirror.lock().await;
        m.ids.synced = pending.is_empty();
        if !pending.is_empty() {
            self.note(format!(
                "tracking: {} item(s) could not be sent to MLflow (first: {}); they are listed in mlflow_ids.json — run `w2c sync {}` once the server is reachable",
                pending.len(),
                pending[0],
                crate::fingerprint::short(&m.manifest.fingerprint)
            ));
        }
        m.ids.pending = pending;
        let dir = m.session_dir.clone();
        m.ids.save(&dir)
    }
}

/// The tracker is the run's observer: MLflow when online, the offline
/// record otherwise.
impl RunObserver for Tracker {
    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    async fn namespace_started(&self, ns: &str) {
        self.begin_namespace(ns).await
    }

    async fn namespace_stopped(&self, ns: &str, cancelled: bool) {
        self.end_namespaces(Some(ns), cancelled).await
    }

    async fn run_failed(&self, err: &anyhow::Error) {
        self.abort(err).await
    }

    async fn run_finished(&self, report: &RunReport) -> Vec<String> {
        self.finish(report).await
    }
}

async fn log_progress(
    client: &MlflowClient,
    run_id: &str,
    p: &Progress,
) -> std::result::Result<(), rest::MlflowError> {
    let done = p.done.load(Ordering::Relaxed);
    let total = p.total.load(Ordering::Relaxed);
    let failed = p.failed.load(Ordering::Relaxed);
    let here = p.finished_here.load(Ordering::Relaxed);
    let secs = p.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { here as f64 / secs } else { 0.0 };
    let ts = rest::now_ms();
    let point = |key: &str, value: f64| MetricPoint {
        key: key.to_string(),
        value,
        timestamp: ts,
        step: done as i64,
    };
    client
        .log_batch(
            run_id,
            &[
                point("progress.done", done as f64),
                point("progress.total", total as f64),
                point("progress.errors", failed as f64),
                point("progress.req_per_sec", rate),
            ],
            &[],
            &[],
        )
        .await
}

async fn progress_loop(
    client: MlflowClient,
    run_id: String,
    progress: Arc<Progress>,
    health: Arc<Mutex<Health>>,
) {
    let every = progress_interval();
    loop {
        tokio::time::sleep(every).await;
        let paused = health
            .lock()
            .map(|h| h.paused_until.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false);
        if paused {
            continue;
        }
        if let Err(e) = log_progress(&client, &run_id, &progress).await {
            if let Ok(mut h) = health.lock() {
                if e.is_transient() {
                    h.paused_until = Some(Instant::now() + pause());
                }
                h.pending.insert(format!("progress metrics: {e}"));
            }
        }
    }
}

/// What `w2c sync` did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Parent run id.
    pub parent_run_id: String,
    /// Per namespace: (namespace, child run id, status, files uploaded).
    pub namespaces: Vec<(String, String, String, usize)>,
    /// Experiment id.
    pub experiment_id: String,
}

/// `w2c sync`: pushes a stopped session (offline, or partly tracked) to
/// MLflow, reconnecting to existing runs exactly as a run does, and repairs
/// artifacts missing remotely. The caller holds the session lock.
pub async fn sync_session(
    target: &Target,
    session_dir: &Path,
    manifest: &Manifest,
) -> Result<SyncReport> {
    let client = target.client()?;
    let mut m = Mirror::connect(client, &target.experiment, session_dir, manifest.clone()).await?;
    let result: Result<SyncReport> = async {
        let parent = m.ensure_parent().await?;
        m.upload_session_files(true).await?;
        let mut report = SyncReport {
            parent_run_id: parent.info.run_id.clone(),
            experiment_id: parent.info.experiment_id.clone(),
            namespaces: Vec::new(),
        };
        let mut all_done = true;
        let mut any_killed = false;
        for (ns, st) in mirror::stopped_namespaces(session_dir) {
            all_done &= st == status::FINISHED;
            any_killed |= st == status::KILLED;
            let sent = m.push_namespace(&ns, st, true).await?;
            let id = m.ids.child_run_ids.get(&ns).cloned().unwrap_or_default();
            report.namespaces.push((ns, id, st.to_string(), sent));
        }
        let parent_status = if all_done {
            status::FINISHED
        } else if any_killed {
            status::KILLED
        } else {
            status::FAILED
        };
        m.set_parent_status(parent_status).await?;
        Ok(report)
    }
    .await;
    match &result {
        Ok(_) => {
            m.ids.synced = true;
            m.ids.pending.clear();
        }
        Err(e) => {
            m.ids.synced = false;
            m.ids.pending = vec![format!("sync: {e:#}")];
        }
    }
    m.ids.save(session_dir)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_uri_or_disabled_means_offline() {
        let cfg = TrackingConfig::default();
        assert!(resolve(&cfg, false, &env_of(&[])).unwrap().is_none());
        let on = env_of(&[("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")]);
        assert!(resolve(&cfg, false, &on).unwrap().is_some());
        assert!(resolve(&cfg, true, &on).unwrap().is_none());
        let off = env_of(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_ENABLE_TRACKING", "false"),
        ]);
        assert!(resolve(&cfg, false, &off).unwrap().is_none());
    }

    #[test]
    fn env_overrides_config_and_credentials_leave_the_url() {
        let cfg = TrackingConfig {
            uri: Some("http://cfg:5000".into()),
            experiment: Some("cfg-exp".into()),
        };
        let t = resolve(
            &cfg,
            false,
            &env_of(&[
                (
                    "MLFLOW_TRACKING_URI",
                    "https://al%40ice:s3cret@mlflow.example:8443/prefix",
                ),
                ("MLFLOW_EXPERIMENT_NAME", "env-exp"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.uri.as_str(), "https://mlflow.example:8443/prefix");
        assert_eq!(t.experiment, "env-exp");
        match t.auth {
            Auth::Basic { user, password } => {
                assert_eq!(user, "al@ice");
                assert_eq!(password, "s3cret");
            }
            other => panic!("{other:?}"),
        }
        let t = resolve(&cfg, false, &env_of(&[("MLFLOW_TRACKING_TOKEN", "tok")]))
            .unwrap()
            .unwrap();
        assert_eq!(t.uri.as_str(), "http://cfg:5000/");
        assert_eq!(t.experiment, "cfg-exp");
        assert!(matches!(t.auth, Auth::Bearer(_)));
    }

    #[test]
    fn bad_uris_are_explained_without_secrets() {
        let cfg = TrackingConfig::default();
        let err = resolve(
            &cfg,
            false,
            &env_of(&[("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("mlflow server"), "{err:#}");
        let cfg = TrackingConfig {
            uri: Some("http://bob:pw123@host:5000".into()),
            experiment: None,
        };
        let err = resolve(&cfg, false, &env_of(&[])).unwrap_err();
        assert!(!format!("{err:#}").contains("pw123"));
        let err = resolve(
            &TrackingConfig::default(),
            false,
            &env_of(&[
                ("MLFLOW_TRACKING_URI", "http://h:1"),
                ("MLFLOW_TRACKING_USERNAME", "u"),
            ]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("together"));
        assert_eq!(url_without_credentials("http://u:p@h:1/x"), "http://h:1/x");
    }
}
