//! LLM client: the request/response types every method uses and the providers
//! behind them (the built-in `mock` dry-run model and OpenAI-compatible HTTP).
//!
//! Methods build a [`ChatRequest`] and call [`Client::chat`]; routing, retries
//! and concurrency limits live here, not in the methods.

pub mod mock;
pub mod openai;

use crate::config::{ProviderConfig, ProviderKind};
use anyhow::Result;
use serde::{Deserialize, Serialize};
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

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
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
        /// Server-requested delay before the next attempt.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (400/401/403/404, missing key...).
    #[error("{0}")]
    Fatal(String),
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
    /// Most requests in flight at once.
    pub max_concurrency: usize,
}

/// Base of the exponential backoff.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Cap of one backoff sleep.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

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
        })
    }

    /// Sends a chat request with retries: exponential backoff with full jitter,
    /// honouring a server's `Retry-After`; fatal errors fail at once.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, CallError> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match &self.provider {
                Provider::Mock(m) => m.chat(req).await,
                Provider::OpenAi(o) => o.chat(req).await,
            };
            match result {
                Ok((text, usage)) => {
                    return Ok(ChatResponse {
                        text,
                        usage,
                        attempts: attempt,
                        latency_ms: start.elapsed().as_millis() as u64,
                    })
                }
                Err(CallError::Fatal(m)) => return Err(CallError::Fatal(m)),
                Err(CallError::Transient {
                    message,
                    retry_after,
                }) => {
                    if attempt >= self.max_attempts {
                        return Err(CallError::Transient {
                            message: format!("{message} (gave up after {attempt} attempts)"),
                            retry_after: None,
                        });
                    }
                    let delay = retry_after.unwrap_or_else(|| backoff(attempt));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Full-jitter exponential backoff for the given (1-based) attempt.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    let cap = exp.min(BACKOFF_CAP);
    cap.mul_f64(rand::random::<f64>())
}

/// Shared handle used by concurrent work items.
pub type SharedClient = Arc<Client>;

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
