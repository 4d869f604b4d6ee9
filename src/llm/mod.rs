//! LLM client: the request/response types every method uses and the providers
//! behind them (the built-in `mock` dry-run model and OpenAI-compatible HTTP).
//!
//! Methods build a [`ChatRequest`] and call [`Client::chat`]; routing, retries,
//! adaptive concurrency and budgets live here, not in the methods. Every call
//! returns a [`CallOutcome`] with the per-attempt history, from which the
//! method writes its call log ([`CallRecord`]).

pub mod limiter;
pub mod mock;
pub mod openai;

use crate::config::{ProviderConfig, ProviderKind};
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

/// A chat completion request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Completion budget.
    pub max_tokens: u32,
    /// Seed sent to the provider.
    pub seed: u64,
}

impl ChatRequest {
    /// The JSON body sent to `/chat/completions`.
    pub fn body(&self) -> Value {
        serde_json::json!({
            "model": self.model,
            "messages": self.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        })
    }

    /// Rough token cost for budgets: prompt characters / 4 plus the completion budget.
    pub fn estimated_tokens(&self) -> u32 {
        let chars: usize = self.messages.iter().map(|m| m.content.len()).sum();
        (chars / 4) as u32 + self.max_tokens
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// What a provider returns for one successful attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// Assistant text (empty when the reply had no content).
    pub text: String,
    /// Token usage, when reported.
    pub usage: Usage,
    /// `system_fingerprint`, when reported.
    pub system_fingerprint: Option<String>,
    /// HTTP status (200 for the mock).
    pub http_status: u16,
}

/// The outcome of a successful chat call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Assistant text (empty when the reply had no content).
    pub text: String,
    /// Token usage, when the provider reported it.
    pub usage: Usage,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
    /// Wall time including retries, milliseconds.
    pub latency_ms: u64,
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
            CallError::Transient { status, .. } | CallError::Fatal { status, .. } => *status,
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
}

/// A whole call: its final result and every attempt.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The final reply or the last error.
    pub result: Result<Reply, CallError>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Wall time including backoff, milliseconds.
    pub latency_ms: u64,
}

/// A configured provider.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Deterministic dry-run model.
    Mock(mock::MockProvider),
    /// OpenAI-compatible HTTP endpoint.
    OpenAi(openai::OpenAiProvider),
}

/// A provider plus the policies wrapped around it (retries, concurrency).
#[derive(Debug, Clone)]
pub struct Client {
    /// Provider name from the config.
    pub provider_name: String,
    provider: Provider,
    max_attempts: u32,
    /// Most requests in flight at once (the limiter's ceiling).
    pub max_concurrency: usize,
    /// Adaptive concurrency and budgets.
    pub limiter: Arc<AdaptiveLimiter>,
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
        let provider = match cfg.kind {
            ProviderKind::Mock => Provider::Mock(mock::MockProvider::new(cfg, seed)),
            ProviderKind::Openai => Provider::OpenAi(openai::OpenAiProvider::new(name, cfg)?),
        };
        Ok(Client {
            provider_name: name.to_string(),
            provider,
            max_attempts: cfg.max_attempts,
            max_concurrency: cfg.max_concurrency,
            limiter: AdaptiveLimiter::new(
                cfg.max_concurrency,
                DECREASE_COOLDOWN,
                cfg.requests_per_minute,
                cfg.tokens_per_minute,
            ),
        })
    }

    /// The base URL requests go to (`mock://` for the mock).
    pub fn endpoint(&self) -> String {
        match &self.provider {
            Provider::Mock(_) => "mock://chat/completions".into(),
            Provider::OpenAi(o) => format!("{}/chat/completions", o.base_url()),
        }
    }

    /// Sends a chat request with retries: exponential backoff with full jitter,
    /// honouring a server's `Retry-After`; fatal errors fail at once. A 429
    /// shrinks the provider's concurrency; successes grow it back.
    pub async fn chat(&self, req: &ChatRequest) -> CallOutcome {
        let start = Instant::now();
        let mut attempts = Vec::new();
        loop {
            let permit = self.limiter.acquire(req.estimated_tokens()).await;
            let t0 = Instant::now();
            let result = match &self.provider {
                Provider::Mock(m) => m.chat(req).await,
                Provider::OpenAi(o) => o.chat(req).await,
            };
            drop(permit);
            let latency_ms = t0.elapsed().as_millis() as u64;
            match result {
                Ok(reply) => {
                    self.limiter.on_success();
                    attempts.push(Attempt {
                        status: Some(reply.http_status),
                        error: None,
                        latency_ms,
                        backoff_ms: None,
                    });
                    return CallOutcome {
                        result: Ok(reply),
                        attempts,
                        latency_ms: start.elapsed().as_millis() as u64,
                    };
                }
                Err(err) => {
                    if err.status() == Some(429) {
                        self.limiter.on_rate_limited();
                    }
                    let retry_after = match &err {
                        CallError::Transient { retry_after, .. } => Some(*retry_after),
                        CallError::Fatal { .. } => None,
                    };
                    let give_up =
                        retry_after.is_none() || attempts.len() + 1 >= self.max_attempts as usize;
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
                    });
                    match delay {
                        Some(d) => tokio::time::sleep(d).await,
                        None => {
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
                            };
                        }
                    }
                }
            }
        }
    }
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
    /// When the call finished, UTC.
    pub ts: String,
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
    /// Parsed assistant text.
    pub text: Option<String>,
    /// Final error, for failed calls.
    pub error: Option<String>,
}

impl CallRecord {
    /// Builds the log line of a call.
    pub fn new(
        client: &Client,
        method: &str,
        uuid: &str,
        repeat: Option<u32>,
        role: &str,
        req: &ChatRequest,
        outcome: &CallOutcome,
    ) -> CallRecord {
        let body = req.body();
        let (status, http_status, usage, fp, text, error) = match &outcome.result {
            Ok(r) => (
                "ok",
                Some(r.http_status),
                r.usage,
                r.system_fingerprint.clone(),
                Some(r.text.clone()),
                None,
            ),
            Err(e) => (
                "error",
                e.status(),
                Usage::default(),
                None,
                None,
                Some(e.to_string()),
            ),
        };
        CallRecord {
            ts: crate::session::now_utc(),
            method: method.to_string(),
            uuid: uuid.to_string(),
            repeat,
            role: role.to_string(),
            provider: client.provider_name.clone(),
            model: req.model.clone(),
            endpoint: client.endpoint(),
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
            error,
        }
    }
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
