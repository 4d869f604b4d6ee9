//! LLM client: the request/response types every method uses and the providers
//! behind them (the built-in `mock` dry-run model and OpenAI-compatible HTTP).
//!
//! Methods build a [`ChatRequest`] and call [`Client::chat`]; routing, retries,
//! adaptive concurrency and budgets live here, not in the methods. Every call
//! returns a [`CallOutcome`] with the per-attempt history, from which the
//! method writes its call log ([`CallRecord`]).

pub mod endpoints;
pub mod limiter;
pub mod llama_echo;
pub mod mock;
pub mod openai;

use crate::config::{ProviderConfig, ProviderKind};
pub use crate::store::records::Usage;
use anyhow::Result;
use limiter::AdaptiveLimiter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A chat completion request, provider-neutral. A sampling parameter that
/// is `None` is not sent at all (the server's default applies), as NVIDIA's
/// official judge scripts send none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Seed sent to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Native OpenAI `tools` (function definitions), when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Further body parameters (e.g. `top_p`), sent as they are.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, Value>,
}

/// The completion budget assumed for rate budgets when a request sets no
/// `max_tokens` (the server's default applies).
pub const ASSUMED_MAX_TOKENS: u32 = 1024;

impl ChatRequest {
    /// The JSON body sent to `/chat/completions`: the parameters that are
    /// set, nothing else.
    pub fn body(&self) -> Value {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": self.messages,
        });
        if let Some(t) = self.temperature {
            body["temperature"] = t.into();
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = n.into();
        }
        if let Some(s) = self.seed {
            body["seed"] = s.into();
        }
        if let Some(tools) = &self.tools {
            body["tools"] = tools.clone();
        }
        for (k, v) in &self.extra {
            body[k.as_str()] = v.clone();
        }
        body
    }

    /// Rough token cost for budgets: prompt characters / 4 plus the
    /// completion budget ([`ASSUMED_MAX_TOKENS`] when none is set).
    pub fn estimated_tokens(&self) -> u32 {
        let chars: usize = self.messages.iter().map(|m| m.content.len()).sum();
        u32::try_from(chars / 4)
            .unwrap_or(u32::MAX)
            .saturating_add(self.max_tokens.unwrap_or(ASSUMED_MAX_TOKENS))
    }
}

/// A `/completions` request (one string prompt), used for log-probability scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The prompt, one string.
    pub prompt: String,
    /// Tokens to generate (1 for scoring).
    pub max_tokens: u32,
    /// Return the prompt's tokens with their log-probabilities.
    pub echo: bool,
    /// Number of top log-probabilities per token (`None` = no logprobs).
    pub logprobs: Option<u32>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Seed sent to the provider.
    pub seed: u64,
}

impl CompletionRequest {
    /// The JSON body sent to `/completions`.
    pub fn body(&self) -> Value {
        let mut body = serde_json::json!({
            "model": self.model,
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "echo": self.echo,
            "temperature": self.temperature,
            "seed": self.seed,
        });
        if let Some(n) = self.logprobs {
            body["logprobs"] = n.into();
        }
        body
    }
}

/// Per-token log-probabilities of a completion (OpenAI legacy format).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// Token strings.
    pub tokens: Vec<String>,
    /// Log-probability per token; the first prompt token has none.
    pub token_logprobs: Vec<Option<f64>>,
    /// Character offset of each token in `text`.
    pub text_offset: Vec<usize>,
}

/// What a provider returns for one successful `/completions` attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionReply {
    /// Returned text (prompt + generation with `echo`).
    pub text: String,
    /// Log-probabilities, when requested and returned.
    pub logprobs: Option<TokenLogprobs>,
    /// Token usage.
    pub usage: Usage,
    /// HTTP status (200 for the mock).
    pub http_status: u16,
    /// Token counts the reply reported that cannot be right, if any.
    pub usage_anomaly: Option<UsageAnomaly>,
}

/// Token counts a reply reported that cannot be right (negative, fractional,
/// not numbers, or implausibly large). The call still counts; the method
/// records an `implausible_usage` audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageAnomaly {
    /// The reply's `usage` value as reported (cut when long).
    pub reported: Value,
    /// What is wrong with it, one line per field.
    pub problems: Vec<String>,
}

/// What the call log needs from a successful reply.
pub trait LoggedReply {
    /// Token usage.
    fn usage(&self) -> Usage;
    /// HTTP status.
    fn http_status(&self) -> u16;
    /// `system_fingerprint`, when reported.
    fn system_fingerprint(&self) -> Option<String>;
    /// Text to log.
    fn text(&self) -> &str;
    /// Implausible token counts, when the reply had any.
    fn usage_anomaly(&self) -> Option<&UsageAnomaly>;
}

impl LoggedReply for Reply {
    fn usage(&self) -> Usage {
        self.usage
    }
    fn http_status(&self) -> u16 {
        self.http_status
    }
    fn system_fingerprint(&self) -> Option<String> {
        self.system_fingerprint.clone()
    }
    fn text(&self) -> &str {
        &self.text
    }
    fn usage_anomaly(&self) -> Option<&UsageAnomaly> {
        self.usage_anomaly.as_ref()
    }
}

impl LoggedReply for CompletionReply {
    fn usage(&self) -> Usage {
        self.usage
    }
    fn http_status(&self) -> u16 {
        self.http_status
    }
    fn system_fingerprint(&self) -> Option<String> {
        None
    }
    fn text(&self) -> &str {
        &self.text
    }
    fn usage_anomaly(&self) -> Option<&UsageAnomaly> {
        self.usage_anomaly.as_ref()
    }
}

/// What a provider returns for one successful attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// Assistant text (empty when the reply had no content).
    pub text: String,
    /// Whether `message.content` was null or missing (not even `""`).
    pub content_null: bool,
    /// Token usage, when reported.
    pub usage: Usage,
    /// `system_fingerprint`, when reported.
    pub system_fingerprint: Option<String>,
    /// HTTP status (200 for the mock).
    pub http_status: u16,
    /// Native `tool_calls` of the reply, when present.
    pub tool_calls: Option<Value>,
    /// Reasoning text (`reasoning_content` or `reasoning`), when present.
    pub reasoning: Option<String>,
    /// `finish_reason`, when reported.
    pub finish_reason: Option<String>,
    /// Token counts the reply reported that cannot be right, if any.
    pub usage_anomaly: Option<UsageAnomaly>,
}

/// Why a single attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Worth another attempt (timeouts, 429, 5xx, malformed bodies...).
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// HTTP status, if the server answered.
        status: Option<u16>,
        /// Server-requested delay before the next attempt.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (400/401/403/404, missing key...).
    #[error("{message}")]
    Fatal {
        /// What happened.
        message: String,
        /// HTTP status, if the server answered.
        status: Option<u16>,
    },
    /// The prompt does not fit the model's context window (an HTTP 400 whose
    /// body says `context_length_exceeded` or "maximum context length").
    /// Not retried; it concerns this request only.
    #[error("{message}")]
    ContextOverflow {
        /// What happened (with the server's message).
        message: String,
        /// HTTP status.
        status: Option<u16>,
    },
}

impl CallError {
    /// A transient error without a status.
    pub fn transient(message: impl Into<String>) -> Self {
        CallError::Transient {
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            CallError::Transient { status, .. }
            | CallError::Fatal { status, .. }
            | CallError::ContextOverflow { status, .. } => *status,
        }
    }

    /// A fatal 400 whose message says the prompt exceeds the context window
    /// becomes [`CallError::ContextOverflow`]; anything else is unchanged.
    pub fn classify_context_overflow(self) -> CallError {
        match self {
            CallError::Fatal {
                message,
                status: Some(400),
            } if is_context_overflow_message(&message) => CallError::ContextOverflow {
                message,
                status: Some(400),
            },
            other => other,
        }
    }
}

/// One attempt in the call history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// HTTP status, if any.
    pub status: Option<u16>,
    /// Error message, for failed attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Duration of the attempt, milliseconds.
    pub latency_ms: u64,
    /// Sleep before the next attempt, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// The endpoint it went to, when the provider has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A whole call: its final result and every attempt.
#[derive(Debug, Clone)]
pub struct CallOutcome<T = Reply> {
    /// The final reply or the last error.
    pub result: Result<T, CallError>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Wall time including backoff, milliseconds.
    pub latency_ms: u64,
    /// When the call started (its first attempt was queued), epoch ms.
    pub started_ms: i64,
    /// Base URL of the endpoint of the last attempt (the one that answered).
    pub endpoint: Option<String>,
}

/// A configured provider.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Deterministic dry-run model.
    Mock(mock::MockProvider),
    /// OpenAI-compatible HTTP endpoints (one per entry of the pool).
    OpenAi(Vec<openai::OpenAiProvider>),
}

/// A provider plus the policies wrapped around it (retries, routing over
/// its endpoints, concurrency).
#[derive(Debug, Clone)]
pub struct Client {
    /// Provider name from the config.
    pub provider_name: String,
    provider: Provider,
    max_attempts: u32,
    /// Most requests in flight at once (every endpoint's ceiling added up).
    pub max_concurrency: usize,
    /// The provider's request and token budgets (its ceiling is
    /// `max_concurrency`; the adaptive limits are the endpoints').
    pub limiter: Arc<AdaptiveLimiter>,
    /// The endpoints, each with its adaptive concurrency and health.
    pub pool: Arc<endpoints::Pool>,
}

/// Base of the exponential backoff.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Cap of one backoff sleep.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Minimum time between two 429-driven cuts of the concurrency limit.
const DECREASE_COOLDOWN: Duration = Duration::from_secs(2);

impl Client {
    /// Builds the client for a named provider config.
    pub fn new(name: &str, cfg: &ProviderConfig, seed: u64) -> Result<Client> {
        let (provider, endpoints) = match cfg.kind {
            ProviderKind::Mock => (
                Provider::Mock(mock::MockProvider::new(cfg, seed)),
                vec![("mock://".to_string(), cfg.max_concurrency)],
            ),
            ProviderKind::Openai => {
                let endpoints = cfg.endpoints();
                let mut providers = Vec::new();
                for (url, concurrency) in &endpoints {
                    let one = ProviderConfig {
                        base_url: Some(url.clone()),
                        base_urls: Vec::new(),
                        max_concurrency: *concurrency,
                        ..cfg.clone()
                    };
                    providers.push(openai::OpenAiProvider::new(name, &one)?);
                }
                if providers.is_empty() {
                    anyhow::bail!("provider `{name}`: `base_url` is required");
                }
                let endpoints = providers
                    .iter()
                    .zip(&endpoints)
                    .map(|(p, (_, c))| (p.base_url().to_string(), *c))
                    .collect();
                (Provider::OpenAi(providers), endpoints)
            }
        };
        let pool = endpoints::Pool::new(&endpoints, DECREASE_COOLDOWN);
        let max_concurrency = pool.capacity();
        Ok(Client {
            provider_name: name.to_string(),
            provider,
            max_attempts: cfg.max_attempts,
            max_concurrency,
            limiter: AdaptiveLimiter::new(
                max_concurrency,
                DECREASE_COOLDOWN,
                cfg.requests_per_minute,
                cfg.tokens_per_minute,
            ),
            pool,
        })
    }

    /// The URL of an endpoint path such as `chat/completions` on the first
    /// endpoint (`mock://` for the mock).
    pub fn endpoint(&self, path: &str) -> String {
        match &self.provider {
            Provider::Mock(_) => format!("mock://{path}"),
            Provider::OpenAi(o) => format!("{}/{path}", o[0].base_url()),
        }
    }

    /// The adaptive limits of the endpoints, added up (the one endpoint's
    /// when there is one).
    pub fn limiter_stats(&self) -> limiter::LimiterStats {
        self.pool.stats().iter().fold(
            limiter::LimiterStats {
                limit: 0,
                in_flight: 0,
                decreases: 0,
                min_limit: 0,
            },
            |acc, e| limiter::LimiterStats {
                limit: acc.limit + e.limiter.limit,
                in_flight: acc.in_flight + e.limiter.in_flight,
                decreases: acc.decreases + e.limiter.decreases,
                min_limit: acc.min_limit + e.limiter.min_limit,
            },
        )
    }

    /// Sends a chat request with the retry policy of [`Client::with_retries`].
    pub async fn chat(&self, req: &ChatRequest) -> CallOutcome<Reply> {
        self.with_retries(req.estimated_tokens(), |i| async move {
            match &self.provider {
                Provider::Mock(m) => m.chat(req).await,
                Provider::OpenAi(o) => o[i].chat(req).await,
            }
        })
        .await
    }

    /// Sends a `/completions` request with the retry policy of [`Client::with_retries`].
    pub async fn complete(&self, req: &CompletionRequest) -> CallOutcome<CompletionReply> {
        let tokens = u32::try_from(req.prompt.len() / 4)
            .unwrap_or(u32::MAX)
            .saturating_add(req.max_tokens);
        self.with_retries(tokens, |i| async move {
            match &self.provider {
                Provider::Mock(m) => m.complete(req).await,
                Provider::OpenAi(o) => o[i].complete(req).await,
            }
        })
        .await
    }

    /// Counts the tokens the server makes of `text` (BOS included, as the
    /// server counts a prompt), through its tokenize endpoint, retrying
    /// transient errors. Returns the count and the endpoint used. Not rate
    /// limited: tokenizing is cheap and happens only for truncation.
    pub async fn count_tokens(
        &self,
        model: &str,
        text: &str,
    ) -> Result<(usize, String), CallError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match &self.provider {
                Provider::Mock(_) => Ok((mock::count_tokens(text), "mock://tokenize".into())),
                Provider::OpenAi(o) => {
                    let slot = self.pool.acquire().await;
                    let r = o[slot.index].count_tokens(model, text).await;
                    slot.finish(verdict(r.as_ref().err()));
                    r
                }
            };
            match result {
                Err(CallError::Transient { retry_after, .. })
                    if attempts < self.max_attempts.max(1) =>
                {
                    tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempts))).await;
                }
                other => return other,
            }
        }
    }

    /// Runs attempts until one succeeds, a fatal error occurs or the attempts
    /// run out: exponential backoff with full jitter, honouring a server's
    /// `Retry-After`. A 429 shrinks the provider's concurrency; successes grow
    /// it back; other errors leave it alone. No permit is held while sleeping.
    async fn with_retries<T, F, Fut>(&self, tokens: u32, attempt: F) -> CallOutcome<T>
    where
        T: LoggedReply,
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let start = Instant::now();
        let started_ms = chrono::Utc::now().timestamp_millis();
        let mut attempts = Vec::new();
        let several = self.pool.endpoints().len() > 1;
        loop {
            let budget = self.limiter.acquire(tokens).await;
            let slot = self.pool.acquire().await;
            let index = slot.index;
            let url = slot.endpoint().url.clone();
            let t0 = Instant::now();
            let result = attempt(index).await;
            slot.finish(verdict(result.as_ref().err()));
            drop(budget);
            let latency_ms = t0.elapsed().as_millis() as u64;
            let endpoint = several.then(|| url.clone());
            let err = match result {
                Ok(reply) => {
                    attempts.push(Attempt {
                        status: Some(reply.http_status()),
                        error: None,
                        latency_ms,
                        backoff_ms: None,
                        endpoint,
                    });
                    return CallOutcome {
                        result: Ok(reply),
                        attempts,
                        latency_ms: start.elapsed().as_millis() as u64,
                        started_ms,
                        endpoint: Some(url),
                    };
                }
                Err(err) => err,
            };
            let retry_after = match &err {
                CallError::Transient { retry_after, .. } => Some(*retry_after),
                CallError::Fatal { .. } | CallError::ContextOverflow { .. } => None,
            };
            let give_up = retry_after.is_none() || attempts.len() + 1 >= self.max_attempts as usize;
            let delay = (!give_up).then(|| {
                retry_after
                    .flatten()
                    .map(|d| d.min(BACKOFF_CAP * 4))
                    .unwrap_or_else(|| backoff(attempts.len() as u32 + 1))
            });
            attempts.push(Attempt {
                status: err.status(),
                error: Some(err.to_string()),
                latency_ms,
                backoff_ms: delay.map(|d| d.as_millis() as u64),
                endpoint,
            });
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
                continue;
            }
            let n = attempts.len();
            let err = match err {
                CallError::Transient {
                    message,
                    status,
                    retry_after,
                } => CallError::Transient {
                    message: format!("{message} (gave up after {n} attempts)"),
                    status,
                    retry_after,
                },
                fatal => fatal,
            };
            return CallOutcome {
                result: Err(err),
                attempts,
                latency_ms: start.elapsed().as_millis() as u64,
                started_ms,
                endpoint: Some(url),
            };
        }
    }
}

/// How an attempt's error bears on its endpoint's health: no connection, a
/// timeout or a 5xx is the endpoint failing; a 429 is it being busy;
/// anything else (a reply, a 4xx, a malformed body) is it answering.
fn verdict(err: Option<&CallError>) -> endpoints::Verdict {
    match err {
        None => endpoints::Verdict::Answered,
        Some(e) => match e.status() {
            Some(429) => endpoints::Verdict::RateLimited,
            Some(s) if s >= 500 => endpoints::Verdict::Failed,
            None if matches!(e, CallError::Transient { .. }) => endpoints::Verdict::Failed,
            _ => endpoints::Verdict::Answered,
        },
    }
}

/// Whether an error body says the prompt exceeds the context window
/// (OpenAI and llama-cpp-python: `context_length_exceeded`; vLLM: "maximum
/// context length").
pub fn is_context_overflow_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("context_length_exceeded") || m.contains("maximum context length")
}

/// Full-jitter exponential backoff for the given (1-based) attempt.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.clamp(1, 16).saturating_sub(1));
    let cap = exp.min(BACKOFF_CAP);
    cap.mul_f64(rand::random::<f64>())
}

/// One line of `artifacts_local/<namespace>/llm_calls.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// When the call finished, UTC (to the second).
    pub ts: String,
    /// When the call started, epoch milliseconds (absent in records
    /// written before w2c kept it: a trace then starts its span at `ts`
    /// minus `latency_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// When the call ended, epoch milliseconds (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// Namespace (method) that made the call.
    pub method: String,
    /// Example uuid.
    pub uuid: String,
    /// Repeat index, for sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Call role within the item (`target`, `judge`, ...).
    pub role: String,
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Endpoint URL (no credentials).
    pub endpoint: String,
    /// sha256 of the canonical request body.
    pub request_sha256: String,
    /// The request body as sent (headers, and so keys, are never logged).
    pub request: Value,
    /// `ok` or `error`.
    pub status: String,
    /// Final HTTP status.
    pub http_status: Option<u16>,
    /// Wall time including retries, milliseconds.
    pub latency_ms: u64,
    /// Number of attempts.
    pub n_attempts: usize,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Token usage.
    pub usage: Usage,
    /// `system_fingerprint` reported by the server.
    pub system_fingerprint: Option<String>,
    /// Parsed assistant text (a preview when longer than
    /// [`crate::long_text::INLINE_MAX_BYTES`]; see `text_full`).
    pub text: Option<String>,
    /// sha256 and length of the full text, when `text` is only a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_full: Option<crate::long_text::TextDigest>,
    /// Implausible token counts the reply reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_anomaly: Option<UsageAnomaly>,
    /// Final error, for failed calls.
    pub error: Option<String>,
}

impl CallRecord {
    /// Builds the log line of a chat call.
    pub fn chat(
        client: &Client,
        item: CallItem<'_>,
        req: &ChatRequest,
        outcome: &CallOutcome<Reply>,
    ) -> CallRecord {
        // The full text of a chat reply is in the namespace's checkpoint record.
        let stored_in = format!("checkpoints/{}/results.jsonl", item.method);
        Self::build(
            client,
            item,
            "chat/completions",
            req.body(),
            outcome,
            Some(&stored_in),
        )
    }

    /// Builds the log line of a `/completions` call.
    pub fn completion(
        client: &Client,
        item: CallItem<'_>,
        req: &CompletionRequest,
        outcome: &CallOutcome<CompletionReply>,
    ) -> CallRecord {
        Self::build(client, item, "completions", req.body(), outcome, None)
    }

    fn build<T: LoggedReply>(
        client: &Client,
        item: CallItem<'_>,
        path: &str,
        body: Value,
        outcome: &CallOutcome<T>,
        stored_in: Option<&str>,
    ) -> CallRecord {
        let (status, http_status, usage, fp, text, anomaly, error) = match &outcome.result {
            Ok(r) => (
                "ok",
                Some(r.http_status()),
                r.usage(),
                r.system_fingerprint(),
                Some(crate::long_text::abbreviate(r.text(), stored_in)),
                r.usage_anomaly().cloned(),
                None,
            ),
            Err(e) => (
                "error",
                e.status(),
                Usage::default(),
                None,
                None,
                None,
                Some(e.to_string()),
            ),
        };
        let (text, text_full) = match text {
            Some((t, full)) => (Some(t), full),
            None => (None, None),
        };
        // The call's own clock: the record may be written a little later.
        let end_ms = outcome
            .started_ms
            .saturating_add(i64::try_from(outcome.latency_ms).unwrap_or(i64::MAX));
        CallRecord {
            ts: crate::store::session::now_utc(),
            start_ms: Some(outcome.started_ms),
            end_ms: Some(end_ms),
            method: item.method.to_string(),
            uuid: item.uuid.to_string(),
            repeat: item.repeat,
            role: item.role.to_string(),
            provider: client.provider_name.clone(),
            model: body["model"].as_str().unwrap_or_default().to_string(),
            endpoint: match &outcome.endpoint {
                Some(base) if !base.starts_with("mock://") => format!("{base}/{path}"),
                _ => client.endpoint(path),
            },
            request_sha256: crate::fingerprint::sha256_hex(
                crate::fingerprint::canonical_json(&body).as_bytes(),
            ),
            request: body,
            status: status.to_string(),
            http_status,
            latency_ms: outcome.latency_ms,
            n_attempts: outcome.attempts.len(),
            attempts: outcome.attempts.clone(),
            usage,
            system_fingerprint: fp,
            text,
            text_full,
            usage_anomaly: anomaly,
            error,
        }
    }
}

/// Which work item and role a call belongs to, for the call log.
#[derive(Debug, Clone, Copy)]
pub struct CallItem<'a> {
    /// Namespace (method).
    pub method: &'a str,
    /// Example uuid.
    pub uuid: &'a str,
    /// Repeat index, for sweeps.
    pub repeat: Option<u32>,
    /// Role of the call within the item (`target`, `judge`, `score`...).
    pub role: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 1..40 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
        assert!(backoff(1) <= BACKOFF_BASE);
    }
}
