//! MLflow tracking: where a session is tracked ([`Target`]), and the
//! [`Tracker`] a run drives — parent and child runs, progress metrics,
//! final metrics, artifacts and status — without ever letting a slow or
//! absent server cost evaluation work. What could not be sent is recorded in
//! `mlflow_ids.json`; `w2c sync` ([`sync_session`]) sends it later.

pub mod flatten;
pub mod identity;
pub mod ids;
pub mod mirror;
pub mod names;
pub mod rest;
pub mod shards;
pub mod trace_sender;
pub mod traces;
pub mod tracker;

pub use tracker::Tracker;

use crate::config::TrackingConfig;
use crate::redact::url_without_credentials;
use crate::store::session::Manifest;
use anyhow::{bail, Context, Result};
use ids::MlflowIds;
use mirror::Mirror;
use rest::{status, Auth, MlflowClient, RetryPolicy};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Send one trace per example (`[tracking] traces`, default on).
    pub traces: bool,
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
        // Only the scheme is repeated: `user:sk-…` parses as a URL too.
        bail!(
            "{source}: a `{}:` URI is not an http(s) tracking server; w2c talks to `mlflow server` over REST (MLflow 3 no longer serves ./mlruns file stores: run `mlflow server --backend-store-uri sqlite:///mlflow.db` and point {source} at it)",
            uri.scheme()
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
        (None, None, Some(token)) => {
            crate::env_vars::check_header_value(
                "MLFLOW_TRACKING_TOKEN",
                "the MLflow credentials",
                "Bearer ",
                &token,
            )?;
            auth = Auth::Bearer(token)
        }
        (None, None, None) => {}
    }
    let truthy = |v: Option<String>| {
        v.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    };
    let mut retry = RetryPolicy::default();
    if let Some(v) = env("MLFLOW_HTTP_REQUEST_MAX_RETRIES") {
        retry.max_retries = v.trim().parse().with_context(|| {
            format!(
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES: {} is not a count",
                crate::redact::shown(&v)
            )
        })?;
    }
    if let Some(v) = env("MLFLOW_HTTP_REQUEST_TIMEOUT") {
        retry.timeout =
            crate::secs::parse_in_range("MLFLOW_HTTP_REQUEST_TIMEOUT", &v, REQUEST_TIMEOUT_RANGE)
                .map_err(anyhow::Error::msg)?;
    }
    // Checked here so that a bad value stops the run at the start.
    env_secs(
        env,
        tracker::PAUSE_VAR,
        Duration::ZERO,
        tracker::PAUSE_RANGE,
    )?;
    env_secs(
        env,
        tracker::PROGRESS_VAR,
        Duration::ZERO,
        tracker::PROGRESS_RANGE,
    )?;
    env_secs(env, tracker::WAIT_VAR, Duration::ZERO, tracker::WAIT_RANGE)?;
    env_secs(
        env,
        tracker::TRACE_WAIT_VAR,
        Duration::ZERO,
        tracker::TRACE_WAIT_RANGE,
    )?;
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
        traces: config.traces.unwrap_or(true),
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

/// A seconds-valued environment setting: the default when unset, an error
/// naming the variable and the range when out of range.
pub(crate) fn env_secs(
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
        traces: config.traces,
        trace_examples: config.trace_examples.clone(),
    };
    resolve(&stored, false, env)
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
    /// Traces sent (those MLflow already held are not counted).
    pub traces: usize,
    /// What could not be sent, each with its cause (`<what>: <error>`):
    /// every kind of record (params, metrics, artifacts, traces, statuses)
    /// fails alone, and the rest is sent.
    pub failures: Vec<String>,
}

/// `w2c sync`: pushes a stopped session (offline, or partly tracked) to
/// MLflow, reconnecting to existing runs exactly as a run does, and repairs
/// artifacts missing remotely. The caller holds the session lock.
///
/// Each kind of record is sent on its own: an artifact store the client
/// cannot write to leaves the artifacts pending (listed in
/// [`SyncReport::failures`] with the server's words) and sends the metrics,
/// traces and statuses all the same. Only what everything else needs —
/// the experiment and the runs — stops it with an error. `progress` is told
/// each namespace's step as it goes.
pub async fn sync_session(
    target: &Target,
    session_dir: &Path,
    manifest: &Manifest,
    progress: &mut (dyn FnMut(SyncStep<'_>) + Send),
) -> Result<SyncReport> {
    let client = target.client()?;
    let mut m = Mirror::connect(client, &target.experiment, session_dir, manifest.clone()).await?;
    let mut failures: Vec<String> = Vec::new();
    let result: Result<SyncReport> = async {
        let parent = m.ensure_parent().await?;
        if let Err(e) = m.upload_session_files(true).await {
            stop_if_unreachable(&e)?;
            failures.push(format!("session artifacts: {e:#}"));
        }
        let mut report = SyncReport {
            parent_run_id: parent.info.run_id.clone(),
            experiment_id: parent.info.experiment_id.clone(),
            namespaces: Vec::new(),
            traces: 0,
            failures: Vec::new(),
        };
        let mut all_done = true;
        let mut any_killed = false;
        let mut traces = target
            .traces
            .then(|| trace_sender::TraceSender::new(session_dir, manifest));
        for (ns, st) in mirror::stopped_namespaces(session_dir) {
            all_done &= st == status::FINISHED;
            any_killed |= st == status::KILLED;
            progress(SyncStep::Namespace(&ns));
            m.ensure_child(&ns).await?;
            if mirror::namespace_done(session_dir, &ns) {
                if let Err(e) = m.log_final_metrics(&ns).await {
                    stop_if_unreachable(&e)?;
                    failures.push(format!("{ns} metrics: {e:#}"));
                }
            }
            let sent = match m.upload_namespace(&ns, true).await {
                Ok(n) => n,
                Err(e) => {
                    stop_if_unreachable(&e)?;
                    failures.push(format!("{ns} artifacts: {e:#}"));
                    0
                }
            };
            if let Some(t) = traces.as_mut() {
                let mut on_sent = |s: trace_sender::Sent| progress(SyncStep::Traces(&ns, s));
                match t
                    .send_new_reporting(&mut m, &ns, true, &|_| false, &mut on_sent)
                    .await
                {
                    Ok(s) => report.traces += s.sent,
                    Err(e) => {
                        stop_if_unreachable(&e)?;
                        failures.push(format!("{ns} traces: {e:#}"));
                    }
                }
            }
            if let Err(e) = m.settle_child(&ns, st).await {
                stop_if_unreachable(&e)?;
                failures.push(format!("{ns} status: {e:#}"));
            }
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
        if let Err(e) = m.settle_parent(parent_status).await {
            stop_if_unreachable(&e)?;
            failures.push(format!("session status: {e:#}"));
        }
        Ok(report)
    }
    .await;
    failures.splice(0..0, m.deferred.drain(..));
    match &result {
        Ok(_) if failures.is_empty() => {
            m.ids.synced = true;
            m.ids.pending.clear();
        }
        Ok(_) => {
            m.ids.synced = false;
            m.ids.pending = failures.clone();
        }
        Err(e) => {
            m.ids.synced = false;
            m.ids.pending = vec![format!("sync: {e:#}")];
            m.ids.pending.extend(failures.iter().cloned());
        }
    }
    m.ids.save(session_dir)?;
    result.map(|mut r| {
        r.failures = failures;
        r
    })
}

/// What `w2c sync` is doing, for its progress lines.
#[derive(Debug, Clone, Copy)]
pub enum SyncStep<'a> {
    /// Starting a namespace.
    Namespace(&'a str),
    /// Traces of a namespace: sent so far and left.
    Traces(&'a str, trace_sender::Sent),
}

/// A server that stopped answering ends the sync (everything after would
/// fail the same way); any other failure is its record's alone.
fn stop_if_unreachable(err: &anyhow::Error) -> Result<()> {
    if mirror::is_transient(err) {
        return Err(anyhow::anyhow!("{err:#}"));
    }
    Ok(())
}

/// Uploads a comparison of several sessions to the parent run of one of
/// them (`session_dir`'s): the `files` (name, local path) under
/// `compare/<tag>/`, and `metrics` (key, value) on the parent, all tagged
/// `w2c.compare = <tag>` (and `w2c.compare.differences`, what differs
/// between the sessions compared, when `differences` is not empty).
/// Returns the parent run's address.
///
/// A comparison is not part of the session: `mlflow_ids.json` keeps saying
/// what it said of the session's sync (connecting marks it unsynced while
/// it works), unless the comparison went to a parent run the session was
/// not sent to (another server or experiment, or a parent created now),
/// which is then pending for `w2c sync`.
pub async fn publish_comparison(
    target: &Target,
    session_dir: &Path,
    manifest: &crate::store::Manifest,
    tag: &str,
    files: &[(String, PathBuf)],
    metrics: &[(String, f64)],
    differences: &str,
) -> Result<String> {
    let before = ids::MlflowIds::load(session_dir)?;
    let mut m = mirror::Mirror::connect(
        target.client()?,
        &target.experiment,
        session_dir,
        manifest.clone(),
    )
    .await?;
    let result = file_comparison(&mut m, target, tag, files, metrics, differences).await;
    let same_runs = before.mode == ids::Mode::Online
        && before.tracking_uri == m.ids.tracking_uri
        && before.experiment_id == m.ids.experiment_id
        && before.parent_run_id.is_some()
        && before.parent_run_id == m.ids.parent_run_id;
    if same_runs {
        m.ids.synced = before.synced;
        m.ids.pending = before.pending;
    } else {
        let note = format!(
            "the session is not sent to {} yet (a comparison was filed there): `w2c sync` sends it",
            target.uri.as_str().trim_end_matches('/')
        );
        m.ids.synced = false;
        if !m.ids.pending.contains(&note) {
            m.ids.pending.push(note);
        }
    }
    m.ids.save(session_dir)?;
    result
}

/// [`publish_comparison`]'s uploads and metrics, on `m`'s session parent.
async fn file_comparison(
    m: &mut mirror::Mirror,
    target: &Target,
    tag: &str,
    files: &[(String, PathBuf)],
    metrics: &[(String, f64)],
    differences: &str,
) -> Result<String> {
    let parent = m.ensure_parent().await?;
    for (name, path) in files {
        m.client
            .upload_artifact(
                &parent.info.artifact_uri,
                &format!("compare/{tag}/{name}"),
                path,
            )
            .await?;
    }
    let now = rest::now_ms();
    let points: Vec<rest::MetricPoint> = metrics
        .iter()
        .map(|(key, value)| rest::MetricPoint {
            key: flatten::sanitize_key(key),
            value: *value,
            timestamp: now,
            step: 0,
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
        })
        .collect();
    let mut tags = vec![rest::KeyValue::new("w2c.compare", tag)];
    if !differences.is_empty() {
        // A tag holds 8000 characters at most on every MLflow version
        // w2c supports; compare.json has the whole list.
        let short: String = differences.chars().take(7000).collect();
        tags.push(rest::KeyValue::new("w2c.compare.differences", short));
    }
    for batch in flatten::batches(points, Vec::new(), tags) {
        m.client
            .log_batch(
                &parent.info.run_id,
                &batch.metrics,
                &batch.params,
                &batch.tags,
            )
            .await?;
    }
    Ok(format!(
        "{}/#/experiments/{}/runs/{}",
        target.uri.as_str().trim_end_matches('/'),
        parent.info.experiment_id,
        parent.info.run_id
    ))
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
            traces: None,
            trace_examples: None,
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
            traces: None,
            trace_examples: None,
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
