//! A typed client for the MLflow tracking REST API (`/api/2.0/mlflow/...`) and
//! the artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`).
//!
//! It owns the wire details: JSON only on `application/json` replies, ids as
//! strings, omitted-when-empty fields, `"NaN"` metric values, retries with
//! backoff on transient failures, and credentials that never appear in an
//! error message. Reply bodies are read up to a cap ([`MAX_REPLY_BYTES`],
//! error bodies [`MAX_ERROR_BYTES`]) and scrubbed of secrets
//! ([`crate::redact`]) before anything else sees them. A field the server
//! left out reads as empty; a field that does not have the expected shape is
//! an error, never an empty list (an empty `runs/search` would make a run
//! look missing and create a duplicate).

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Largest JSON reply read from the tracking server (a bigger or endless
/// reply is a failed call, which pauses tracking).
pub const MAX_REPLY_BYTES: u64 = 32 << 20;
/// Largest part of an error reply read (only a snippet is shown).
pub const MAX_ERROR_BYTES: u64 = 64 << 10;
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest sleep between two attempts, whatever the retry count asks for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// No retry starts after this long since a call's first attempt, whatever
/// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` says.
pub const MAX_RETRY_SPAN: Duration = Duration::from_secs(120);

/// How the client authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic auth (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A bearer token (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret, not even in debug output.
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "basic (user {user})"),
            Auth::Bearer(_) => f.write_str("bearer token"),
        }
    }
}

/// Retry policy for transient failures (connection errors, 408, 429, 5xx).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubled on each retry.
    pub first_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            first_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(15),
        }
    }
}

/// A failed MLflow call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MLflow {endpoint}: {detail}")]
pub struct MlflowError {
    /// The endpoint, e.g. `runs/create` (never with credentials).
    pub endpoint: String,
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// MLflow's `error_code`, when the server sent one.
    pub error_code: Option<String>,
    /// A readable description.
    pub detail: String,
}

/// What kind of failure an [`MlflowError`] is: what callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No reply (connection refused or reset, timeout), or a race with
    /// another client that did not settle: retrying later may help.
    Unreachable,
    /// The server answered with an error status.
    Status(u16),
    /// A successful reply that is not what the API promises (bad shape,
    /// not JSON, too large).
    BadReply,
    /// The setup cannot work (a tracking or artifact URI w2c cannot use).
    Setup,
    /// A local file to upload could not be read.
    LocalIo,
}

impl MlflowError {
    /// An error of `kind` at `endpoint`.
    pub fn new(endpoint: impl Into<String>, kind: FailureKind, detail: impl Into<String>) -> Self {
        MlflowError {
            endpoint: endpoint.into(),
            kind,
            error_code: None,
            detail: detail.into(),
        }
    }

    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            FailureKind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether retrying later could help (no reply, 408, 429 or 5xx).
    pub fn is_transient(&self) -> bool {
        match self.kind {
            FailureKind::Unreachable => true,
            FailureKind::Status(s) => is_transient_status(s),
            FailureKind::BadReply | FailureKind::Setup | FailureKind::LocalIo => false,
        }
    }

    /// Whether the failure says the setup cannot work (credentials or
    /// permission refused, an unusable URI): a run stops on it before any
    /// evaluation work. Every other failure only pauses tracking.
    pub fn refuses_setup(&self) -> bool {
        match self.kind {
            FailureKind::Status(401 | 403) => true,
            // Artifacts are not worth stopping a run for (a server that
            // does not proxy them): they stay pending.
            FailureKind::Setup => !self.endpoint.starts_with("mlflow-artifacts"),
            _ => false,
        }
    }

    /// Whether the server said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.error_code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// Whether an HTTP status says the server cannot serve now (408, 429,
/// 5xx): retrying later may help, and it is no sign of life.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// A key/value pair (params and tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    /// A pair from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Key.
    pub key: String,
    /// Value (`NaN` travels as the string `"NaN"`).
    #[serde(
        serialize_with = "serialize_metric_value",
        deserialize_with = "deserialize_metric_value"
    )]
    pub value: f64,
    /// Epoch milliseconds.
    pub timestamp: i64,
    /// Step.
    #[serde(default)]
    pub step: i64,
    /// The logged model the value measures (MLflow 3's model metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The dataset it was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    /// That dataset's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
}

fn serialize_metric_value<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    crate::floats::finite_or_string::serialize(v, s)
}

/// A metric value as MLflow returns it: a number, or non-finite values
/// spelled as the store spells them (or `inf`/`-inf`); anything else is NaN.
fn deserialize_metric_value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Num(f64),
        Text(String),
    }
    Ok(match NumOrText::deserialize(d)? {
        NumOrText::Num(v) => v,
        NumOrText::Text(t) => {
            crate::floats::parse_spelled(&t).unwrap_or_else(|| t.parse().unwrap_or(f64::NAN))
        }
    })
}

/// `run.info`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInfo {
    /// Run id.
    #[serde(default)]
    pub run_id: String,
    /// Experiment id.
    #[serde(default)]
    pub experiment_id: String,
    /// Run name.
    #[serde(default)]
    pub run_name: String,
    /// RUNNING, FINISHED, FAILED, KILLED or SCHEDULED.
    #[serde(default)]
    pub status: String,
    /// Start, epoch ms.
    #[serde(default)]
    pub start_time: i64,
    /// End, epoch ms.
    #[serde(default)]
    pub end_time: Option<i64>,
    /// `mlflow-artifacts:/<exp>/<run>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// `run.data`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    /// Latest point of each metric.
    #[serde(default)]
    pub metrics: Vec<MetricPoint>,
    /// Params.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run as the server returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Run {
    /// Info.
    #[serde(default)]
    pub info: RunInfo,
    /// Data.
    #[serde(default)]
    pub data: RunData,
}

impl Run {
    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// Whether the run is not deleted.
    pub fn is_active(&self) -> bool {
        self.info.lifecycle_stage != "deleted"
    }
}

/// An experiment.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Experiment {
    /// Id.
    #[serde(default)]
    pub experiment_id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// An artifact listing entry.
#[derive(Debug, Clone, Deserialize)]
pub struct FileInfo {
    /// Path relative to the run's artifact root.
    pub path: String,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (absent for directories and empty files).
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// Run status values the server accepts (it silently ignores others).
pub mod status {
    /// Running.
    pub const RUNNING: &str = "RUNNING";
    /// Finished.
    pub const FINISHED: &str = "FINISHED";
    /// Failed.
    pub const FAILED: &str = "FAILED";
    /// Killed.
    pub const KILLED: &str = "KILLED";
}

/// A client bound to one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: Url,
    http: reqwest::Client,
    auth: Auth,
    retry: RetryPolicy,
    heartbeat: Heartbeat,
}

/// When the server was last heard from (a reply, a chunk of a body) or an
/// upload last moved: what tells a slow server from a silent one.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    origin: std::time::Instant,
    last_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    last_failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            origin: std::time::Instant::now(),
            last_ms: Default::default(),
            last_failure: Default::default(),
        }
    }
}

impl Heartbeat {
    /// Records a sign of life now.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records a failed attempt (no reply, 408, 429, 5xx): what a run that
    /// gives up waiting says it last heard.
    pub fn failed(&self, err: &MlflowError) {
        if let Ok(mut f) = self.last_failure.lock() {
            *f = Some(err.to_string());
        }
    }

    /// The last failed attempt, if any.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }

    /// Time since the last sign of life.
    pub fn silence(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl MlflowClient {
    /// A client for `base` (an http(s) URL without credentials).
    pub fn new(
        base: Url,
        auth: Auth,
        retry: RetryPolicy,
        insecure_tls: bool,
        ca_pem: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        match &auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                crate::redact::register(password);
                // What a server echoing the Authorization header would send back.
                use base64::Engine as _;
                crate::redact::register(
                    &base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
                );
            }
            Auth::Bearer(token) => crate::redact::register(token),
        }
        let mut builder = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("w2c/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure_tls);
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build()?;
        Ok(MlflowClient {
            base,
            http,
            auth,
            retry,
            heartbeat: Heartbeat::default(),
        })
    }

    /// The client's sign-of-life clock (shared by its clones).
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    /// The server's base URL (never with credentials).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Adds the credentials (reqwest marks the header sensitive).
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, MlflowError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| {
                MlflowError::new(
                    segments.join("/"),
                    FailureKind::Setup,
                    "the tracking URI cannot be a base URL",
                )
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn api3_url(&self, endpoint: &str) -> Result<Url, MlflowError> {
        let mut segments = vec!["api", "3.0", "mlflow"];
        segments.extend(endpoint.split('/'));
        self.url(&segments)
    }

    async fn post_url(
        &self,
        endpoint: &str,
        url: Url,
        body: &Value,
        max_retries: u32,
    ) -> Result<Value, MlflowError> {
        let resp = self
            .send(endpoint, max_retries, || {
                Ok(self
                    .http
                    .request(Method::POST, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()))
            })
            .await?;
        let body = json_body(endpoint, resp).await;
        self.heartbeat.beat();
        body
    }

    /// Sends spans as an OTLP/JSON export request to `/v1/traces`, into an
    /// experiment, linking the traces whose root span it holds to `run_id`.
    /// Idempotent (the same ids update the same spans).
    pub async fn export_traces(
        &self,
        experiment_id: &str,
        run_id: &str,
        body: String,
    ) -> Result<(), MlflowError> {
        let endpoint = "v1/traces";
        let url = self.url(&["v1", "traces"])?;
        let resp = self
            .send(endpoint, self.retry.max_retries, || {
                Ok(self
                    .http
                    .request(Method::POST, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("x-mlflow-experiment-id", experiment_id)
                    .header("x-mlflow-run-id", run_id)
                    .body(body.clone()))
            })
            .await?;
        // The reply is an (empty) protobuf message: read and drop it.
        let _ = crate::http_body::read_limited(resp, MAX_ERROR_BYTES).await;
        self.heartbeat.beat();
        Ok(())
    }

    /// Sends a trace's info (`StartTraceV3`: metadata, tags, assessments
    /// with their ids) for a trace whose spans were exported; the server
    /// merges it into the trace, so sending it again changes nothing.
    pub async fn start_trace(&self, trace_id: &str, body: String) -> Result<(), MlflowError> {
        let endpoint = format!("traces ({trace_id})");
        let url = self.api3_url("traces")?;
        let resp = self
            .send(&endpoint, self.retry.max_retries, || {
                Ok(self
                    .http
                    .request(Method::POST, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await?;
        let _ = crate::http_body::read_limited(resp, MAX_ERROR_BYTES).await;
        self.heartbeat.beat();
        Ok(())
    }

    /// A trace's info (`trace.trace_info`: state, metadata, tags,
    /// assessments), or an error (not found included).
    pub async fn get_trace_info(&self, trace_id: &str) -> Result<Value, MlflowError> {
        let endpoint = format!("traces/{trace_id}");
        let url = self.api3_url(&endpoint)?;
        let resp = self
            .send(&endpoint, self.retry.max_retries, || {
                Ok(self.http.request(Method::GET, url.clone()))
            })
            .await?;
        let v = json_body(&endpoint, resp).await;
        self.heartbeat.beat();
        Ok(v?["trace"]["trace_info"].clone())
    }

    /// Deletes one assessment of a trace (`DELETE
    /// /api/3.0/mlflow/traces/<trace>/assessments/<id>`); one already gone
    /// (404) counts as deleted.
    pub async fn delete_assessment(
        &self,
        trace_id: &str,
        assessment_id: &str,
    ) -> Result<(), MlflowError> {
        let endpoint = format!("traces/{trace_id}/assessments/{assessment_id}");
        let url = self.api3_url(&endpoint)?;
        match self
            .send(&endpoint, self.retry.max_retries, || {
                Ok(self.http.request(Method::DELETE, url.clone()))
            })
            .await
        {
            Ok(resp) => {
                let _ = crate::http_body::read_limited(resp, MAX_ERROR_BYTES).await;
                Ok(())
            }
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every trace info of an experiment matching `filter` (the MLflow
    /// search syntax, e.g. a run's traces).
    pub async fn search_traces(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<Value>, MlflowError> {
        let endpoint = "traces/search";
        let url = self.api3_url(endpoint)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "locations": [{"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": experiment_id}}],
                "filter": filter,
                "max_results": 500,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self
                .post_url(endpoint, url.clone(), &body, self.retry.max_retries)
                .await?;
            match v.get("traces") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => out.extend(a.iter().cloned()),
                Some(other) => {
                    return Err(shape_error(
                        endpoint,
                        &format!("`traces` is not a list: {}", snippet(&other.to_string())),
                    ))
                }
            }
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    fn api_url(&self, endpoint: &str) -> Result<Url, MlflowError> {
        let mut segments = vec!["api", "2.0", "mlflow"];
        segments.extend(endpoint.split('/'));
        self.url(&segments)
    }

    /// Sends a request, retrying transient failures up to `max_retries`
    /// times (honouring Retry-After); `make` builds each attempt afresh.
    async fn send(
        &self,
        endpoint: &str,
        max_retries: u32,
        make: impl Fn() -> Result<reqwest::RequestBuilder, MlflowError>,
    ) -> Result<reqwest::Response, MlflowError> {
        let first = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let req = make()?;
            let req = self.authed(req);
            let result = req.send().await;
            // A reply is a sign of life unless it says the server cannot
            // serve (408, 429, 5xx): a server answering 500 to everything
            // must not hold a run up for as long as the retries last.
            if let Ok(resp) = &result {
                if !is_transient_status(resp.status().as_u16()) {
                    self.heartbeat.beat();
                }
            }
            let (err, retry_after) = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .and_then(|s| crate::secs::clamped(s, MAX_RETRY_AFTER));
                    (http_error(endpoint, resp).await, retry_after)
                }
                Err(e) => (transport_error(endpoint, &e), None),
            };
            if err.is_transient() {
                self.heartbeat.failed(&err);
            }
            if !err.is_transient() || attempt >= max_retries {
                return Err(err);
            }
            let backoff = self
                .retry
                .first_backoff
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(MAX_BACKOFF);
            let jitter = Duration::from_millis(rand::random::<u64>() % 100);
            let sleep = retry_after.unwrap_or(backoff) + jitter;
            if first.elapsed() + sleep > MAX_RETRY_SPAN {
                return Err(err);
            }
            tokio::time::sleep(sleep).await;
            attempt += 1;
        }
    }

    async fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        self.post_with_retries(endpoint, body, self.retry.max_retries)
            .await
    }

    async fn post_with_retries(
        &self,
        endpoint: &str,
        body: &Value,
        max_retries: u32,
    ) -> Result<Value, MlflowError> {
        let url = self.api_url(endpoint)?;
        self.post_url(endpoint, url, body, max_retries).await
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let url = self.api_url(endpoint)?;
        let resp = self
            .send(endpoint, self.retry.max_retries, || {
                Ok(self.http.request(Method::GET, url.clone()).query(query))
            })
            .await?;
        let body = json_body(endpoint, resp).await;
        self.heartbeat.beat();
        body
    }

    /// The experiment with this name, if any (deleted ones included).
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        match self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(v) => Ok(Some(parse("experiments/get-by-name", &v["experiment"])?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of the experiment `name`, created if needed (race-safe) and
    /// restored if it was deleted.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        for _ in 0..3 {
            if let Some(exp) = self.experiment_by_name(name).await? {
                if exp.lifecycle_stage == "deleted" {
                    self.post(
                        "experiments/restore",
                        &json!({"experiment_id": exp.experiment_id}),
                    )
                    .await?;
                }
                return Ok(exp.experiment_id);
            }
            match self
                .post("experiments/create", &json!({"name": name}))
                .await
            {
                Ok(v) => {
                    if let Some(id) = v["experiment_id"].as_str() {
                        return Ok(id.to_string());
                    }
                }
                Err(e) if e.error_code.as_deref() == Some("RESOURCE_ALREADY_EXISTS") => {}
                Err(e) => return Err(e),
            }
        }
        Err(MlflowError::new(
            "experiments/create",
            FailureKind::Unreachable,
            format!("could not get or create experiment `{name}`"),
        ))
    }

    /// Creates a run. Not retried: a lost reply could leave a run behind, so
    /// callers search by tags before trying again.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<Run, MlflowError> {
        let user = std::env::var("USER").unwrap_or_default();
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time,
            "user_id": user,
            "tags": tags,
        });
        let endpoint = "runs/create";
        let v = self.post_with_retries(endpoint, &body, 0).await?;
        parse(endpoint, &v["run"])
    }

    /// The run, or `None` when the server does not know it. Deleted runs are
    /// returned (check [`Run::is_active`]).
    pub async fn get_run(&self, run_id: &str) -> Result<Option<Run>, MlflowError> {
        match self.get("runs/get", &[("run_id", run_id)]).await {
            Ok(v) => Ok(Some(parse("runs/get", &v["run"])?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Active runs of an experiment matching `filter`, oldest first.
    pub async fn search_runs(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<Run>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "max_results": 1000,
                "order_by": ["attributes.start_time ASC"],
                "run_view_type": "ACTIVE_ONLY",
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.post("runs/search", &body).await?;
            let (runs, next) = search_page(&v)?;
            out.extend(runs);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Sets a run's status and end time (`0` clears it, as `RUNNING` needs).
    pub async fn set_status(
        &self,
        run_id: &str,
        status: &str,
        end_time: i64,
    ) -> Result<(), MlflowError> {
        self.post(
            "runs/update",
            &json!({"run_id": run_id, "status": status, "end_time": end_time}),
        )
        .await
        .map(|_| ())
    }

    /// One `runs/log-batch` call; the caller keeps within the server limits
    /// (see [`super::flatten::batches`]).
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), MlflowError> {
        self.post(
            "runs/log-batch",
            &json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags}),
        )
        .await
        .map(|_| ())
    }

    /// Logs dataset inputs (`{"dataset": …, "tags": […]}`) and logged
    /// model inputs (`{"model_id": …}`) of a run.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: &[Value],
        models: &[Value],
    ) -> Result<(), MlflowError> {
        let mut body = json!({"run_id": run_id, "datasets": datasets});
        if !models.is_empty() {
            body["models"] = json!(models);
        }
        self.post("runs/log-inputs", &body).await.map(|_| ())
    }

    /// Ids of the logged models of an experiment matching `filter`
    /// (e.g. `name = 'gpt-4o'`), oldest first.
    pub async fn search_logged_models(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<String>, MlflowError> {
        let endpoint = "logged-models/search";
        let v = self
            .post(
                endpoint,
                &json!({"experiment_ids": [experiment_id], "filter": filter,
                        "order_by": [{"field_name": "creation_time", "ascending": true}]}),
            )
            .await?;
        let models = match v.get("models") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(shape_error(
                    endpoint,
                    &format!("`models` is not a list: {}", snippet(&other.to_string())),
                ))
            }
        };
        Ok(models
            .iter()
            .filter_map(|m| m.pointer("/info/model_id").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// Creates a logged model (type `llm`) and marks it ready; returns its id.
    /// Not retried (callers search by name first).
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        tags: &[KeyValue],
    ) -> Result<String, MlflowError> {
        let endpoint = "logged-models";
        let v = self
            .post_with_retries(
                endpoint,
                &json!({"experiment_id": experiment_id, "name": name,
                        "model_type": "llm", "tags": tags}),
                0,
            )
            .await?;
        let id = v
            .pointer("/model/info/model_id")
            .and_then(Value::as_str)
            .ok_or_else(|| shape_error(endpoint, "no `model.info.model_id` in the reply"))?
            .to_string();
        let url = self.url(&["api", "2.0", "mlflow", "logged-models", &id])?;
        let resp = self
            .send("logged-models finalize", self.retry.max_retries, || {
                Ok(self
                    .http
                    .request(Method::PATCH, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(json!({"model_id": id, "status": "LOGGED_MODEL_READY"}).to_string()))
            })
            .await?;
        json_body("logged-models finalize", resp).await?;
        Ok(id)
    }

    /// Every file under a run's artifact root (recursive), with sizes.
    pub async fn list_artifacts(&self, run_id: &str) -> Result<Vec<FileInfo>, MlflowError> {
        let mut files = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let mut query = vec![("run_id", run_id)];
            if !dir.is_empty() {
                query.push(("path", dir.as_str()));
            }
            let v = self.get("artifacts/list", &query).await?;
            let entries: Vec<FileInfo> = parse("artifacts/list", &v["files"])?;
            for e in entries {
                if e.is_dir {
                    dirs.push(e.path);
                } else {
                    files.push(e);
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn artifact_url(&self, artifact_uri: &str, rel: &str) -> Result<Url, MlflowError> {
        let root = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .filter(|r| !r.starts_with("//"))
            .ok_or_else(|| {
                MlflowError::new(
                    "mlflow-artifacts",
                    FailureKind::Setup,
                    format!(
                        "the server gave this run the artifact location `{artifact_uri}`, which a client must write to itself, not through the server's artifact proxy (`mlflow-artifacts:/…`), the only way w2c sends artifacts: start the server with `--artifacts-destination <dir or s3://…>` so that it proxies them, and log to a new experiment (MLFLOW_EXPERIMENT_NAME): an experiment keeps the artifact location it was created with"
                    ),
                )
            })?;
        let mut segments = vec!["api", "2.0", "mlflow-artifacts", "artifacts"];
        segments.extend(root.split('/').filter(|s| !s.is_empty()));
        segments.extend(rel.split('/').filter(|s| !s.is_empty()));
        self.url(&segments)
    }

    /// Uploads a local file to `rel` under a run's artifact root (streamed).
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        file: &Path,
    ) -> Result<(), MlflowError> {
        let url = self.artifact_url(artifact_uri, rel)?;
        let endpoint = format!("artifact upload {rel}");
        let resp = self
            .send(&endpoint, self.retry.max_retries, || {
                let local_io = |e: std::io::Error| {
                    MlflowError::new(
                        endpoint.clone(),
                        FailureKind::LocalIo,
                        format!("cannot read {}: {e}", file.display()),
                    )
                };
                let handle = std::fs::File::open(file).map_err(local_io)?;
                let len = handle.metadata().map_err(local_io)?.len();
                Ok(self
                    .http
                    .put(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .timeout(self.retry.timeout + Duration::from_secs(len / 1_000_000))
                    .body(beating_body(
                        tokio::fs::File::from_std(handle),
                        self.heartbeat.clone(),
                    )))
            })
            .await;
        resp.map(|_| ())
    }

    /// The sha256 and size of an artifact, streamed (never held in memory
    /// whole, however large the remote file is).
    pub async fn artifact_digest(
        &self,
        artifact_uri: &str,
        rel: &str,
    ) -> Result<(String, u64), MlflowError> {
        use sha2::Digest;
        let url = self.artifact_url(artifact_uri, rel)?;
        let endpoint = format!("artifact download {rel}");
        let mut resp = self
            .send(&endpoint, self.retry.max_retries, || {
                Ok(self.http.get(url.clone()))
            })
            .await?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport_error(&endpoint, &e))?
        {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// A file streamed as a request body, beating the heartbeat as each chunk
/// leaves (a large upload in progress is not a silent server).
fn beating_body(file: tokio::fs::File, heartbeat: Heartbeat) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::unfold(Some(file), move |file| {
        let heartbeat = heartbeat.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; 64 << 10];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    heartbeat.beat();
                    Some((Ok::<_, std::io::Error>(buf), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

/// One `runs/search` reply: its runs and the next page token. Absent
/// fields are empty; fields of the wrong shape are an error.
pub fn search_page(v: &Value) -> Result<(Vec<Run>, Option<String>), MlflowError> {
    let endpoint = "runs/search";
    if !(v.is_object() || v.is_null()) {
        return Err(shape_error(endpoint, "the reply is not a JSON object"));
    }
    let runs: Vec<Run> = parse(endpoint, &v["runs"])?;
    let next = match &v["next_page_token"] {
        Value::Null => None,
        Value::String(t) if t.is_empty() => None,
        Value::String(t) => Some(t.clone()),
        other => {
            return Err(shape_error(
                endpoint,
                &format!(
                    "`next_page_token` is not a string: {}",
                    snippet(&other.to_string())
                ),
            ))
        }
    };
    Ok((runs, next))
}

fn shape_error(endpoint: &str, detail: &str) -> MlflowError {
    MlflowError::new(
        endpoint,
        FailureKind::BadReply,
        format!("unexpected reply shape: {detail}"),
    )
}

/// A field of a reply: absent (null) reads as the empty value, a value of
/// the wrong shape is an error.
pub fn parse<T: serde::de::DeserializeOwned + Default>(
    endpoint: &str,
    v: &Value,
) -> Result<T, MlflowError> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(v.clone()).map_err(|e| shape_error(endpoint, &e.to_string()))
}

async fn json_body(endpoint: &str, resp: reqwest::Response) -> Result<Value, MlflowError> {
    let status = resp.status().as_u16();
    let read = crate::http_body::read_limited(resp, MAX_REPLY_BYTES)
        .await
        .map_err(|e| transport_error(endpoint, &e))?;
    if !read.complete {
        return Err(MlflowError::new(
            endpoint,
            FailureKind::BadReply,
            format!(
                "the HTTP {status} reply is larger than {}; not read",
                crate::http_body::human_bytes(MAX_REPLY_BYTES)
            ),
        ));
    }
    let text = crate::redact::scrub_body(&read.text());
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| {
        MlflowError::new(
            endpoint,
            FailureKind::BadReply,
            format!("HTTP {status} reply is not JSON ({e}): {}", snippet(&text)),
        )
    })
}

fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

async fn http_error(endpoint: &str, resp: reqwest::Response) -> MlflowError {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let text = match crate::http_body::read_limited(resp, MAX_ERROR_BYTES).await {
        Ok(read) => crate::redact::scrub_body(&read.text()),
        Err(_) => String::new(),
    };
    let (code, message) = if is_json {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (
            v["error_code"].as_str().map(str::to_string),
            v["message"]
                .as_str()
                .or(v["detail"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| snippet(&text)),
        )
    } else {
        (None, snippet(&text))
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            " (the server wants credentials: check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)"
        }
        StatusCode::FORBIDDEN if message.contains("Host header") => {
            " (start the server with --allowed-hosts naming this host)"
        }
        StatusCode::FORBIDDEN => " (the user lacks permission on this experiment)",
        _ => "",
    };
    MlflowError {
        endpoint: endpoint.to_string(),
        kind: FailureKind::Status(status.as_u16()),
        detail: format!(
            "HTTP {}{}: {}{hint}",
            status.as_u16(),
            code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
            message
        ),
        error_code: code,
    }
}

fn transport_error(endpoint: &str, e: &reqwest::Error) -> MlflowError {
    // reqwest's message names the URL, which never holds credentials here.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(&format!(": {s}"));
        source = s.source();
    }
    let detail = crate::redact::scrub(&detail);
    MlflowError {
        endpoint: endpoint.to_string(),
        kind: FailureKind::Unreachable,
        error_code: None,
        detail: if e.is_timeout() {
            format!("timed out: {detail}")
        } else {
            detail
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_accept_numbers_and_nan_strings() {
        let p: MetricPoint =
            serde_json::from_str(r#"{"key":"a","value":"NaN","timestamp":1}"#).unwrap();
        assert!(p.value.is_nan());
        assert_eq!(p.step, 0);
        let p: MetricPoint =
            serde_json::from_str(r#"{"key":"a","value":0.25,"timestamp":1,"step":3}"#).unwrap();
        assert_eq!((p.value, p.step), (0.25, 3));
        let out = serde_json::to_string(&MetricPoint {
            key: "k".into(),
            value: f64::NAN,
            timestamp: 5,
            ..Default::default()
        })
        .unwrap();
        assert!(out.contains(r#""value":"NaN""#), "{out}");
    }

    #[test]
    fn artifact_urls_encode_each_segment() {
        let c = MlflowClient::new(
            Url::parse("http://127.0.0.1:5000/prefix/").unwrap(),
            Auth::None,
            RetryPolicy::default(),
            false,
            None,
        )
        .unwrap();
        let u = c
            .artifact_url(
                "mlflow-artifacts:/1/abc/artifacts",
                "checkpoints/a b#c.jsonl",
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/checkpoints/a%20b%23c.jsonl"
        );
        assert!(c.artifact_url("s3://bucket/x", "a").is_err());
        assert_eq!(
            c.api_url("runs/log-batch").unwrap().as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow/runs/log-batch"
        );
    }

    #[test]
    fn absent_fields_are_empty_but_malformed_replies_are_errors() {
        let (runs, next) = search_page(&json!({})).unwrap();
        assert!(runs.is_empty() && next.is_none());
        let (runs, next) = search_page(&json!({
            "runs": [{"info": {"run_id": "r1"}, "data": {}}],
            "next_page_token": "p2",
        }))
        .unwrap();
        assert_eq!(runs[0].info.run_id, "r1");
        assert_eq!(next.as_deref(), Some("p2"));
        // A changed reply shape must not read as "no runs" (a duplicate
        // run would be created).
        for bad in [
            json!({"runs": {"run_id": "r1"}}),
            json!({"runs": [{"info": {"run_id": 7}}]}),
            json!({"runs": [], "next_page_token": 5}),
            json!(["not", "an", "object"]),
        ] {
            let err = search_page(&bad).unwrap_err();
            assert!(!err.is_transient(), "{err}");
            assert!(err.to_string().contains("runs/search"), "{err}");
        }
        let files: Vec<FileInfo> = parse("artifacts/list", &Value::Null).unwrap();
        assert!(files.is_empty());
        assert!(parse::<Vec<FileInfo>>("artifacts/list", &json!([{"size": 1}])).is_err());
        assert!(parse::<Vec<FileInfo>>("artifacts/list", &json!("x")).is_err());
    }

    #[test]
    fn auth_debug_never_prints_secrets() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok123".into())).contains("tok123"));
    }
}
