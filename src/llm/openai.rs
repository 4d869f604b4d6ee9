//! OpenAI-compatible HTTP provider (`POST {base_url}/chat/completions`).
//!
//! The API key is read from the environment variable the config names, kept in
//! memory only, and never included in errors, logs or files.

use super::{CallError, ChatRequest, Reply, Usage};
use crate::config::ProviderConfig;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::time::Duration;

/// A configured OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct OpenAiProvider {
    base_url: String,
    api_key: Option<String>,
    headers: reqwest::header::HeaderMap,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OpenAiProvider {
    /// Builds the provider; fails when `api_key_env` names an unset variable.
    pub fn new(name: &str, cfg: &ProviderConfig) -> Result<Self> {
        let base_url = cfg
            .base_url
            .clone()
            .with_context(|| format!("provider `{name}`: `base_url` is required"))?
            .trim_end_matches('/')
            .to_string();
        let api_key = match &cfg.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => bail!(
                    "provider `{name}`: environment variable `{var}` (from `api_key_env`) is not set"
                ),
            },
            None => None,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            insert_header(&mut headers, name, k, v.clone())?;
        }
        for (k, var) in &cfg.headers_env {
            let v = std::env::var(var).ok().filter(|v| !v.is_empty()).with_context(|| {
                format!("provider `{name}`: environment variable `{var}` (from `headers_env.{k}`) is not set")
            })?;
            insert_header(&mut headers, name, k, v)?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_secs))
            .pool_max_idle_per_host(cfg.max_concurrency)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(OpenAiProvider {
            base_url,
            api_key,
            headers,
            http,
        })
    }

    /// The base URL (no credentials).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One attempt of a chat completion.
    pub async fn chat(&self, req: &ChatRequest) -> Result<Reply, CallError> {
        let url = format!("{}/chat/completions", self.base_url);
        let body = req.body();
        let mut builder = self
            .http
            .post(&url)
            .headers(self.headers.clone())
            .json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| CallError::transient(format!("POST {url}: {}", without_url(&e))))?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| CallError::Transient {
            message: format!("POST {url}: reading body: {}", without_url(&e)),
            status: Some(status.as_u16()),
            retry_after: None,
        })?;
        if !status.is_success() {
            let message = format!("POST {url}: HTTP {status}: {}", preview(&text));
            let code = status.as_u16();
            return Err(
                if code == 408 || code == 409 || code == 429 || code >= 500 {
                    CallError::Transient {
                        message,
                        status: Some(code),
                        retry_after,
                    }
                } else {
                    CallError::Fatal {
                        message,
                        status: Some(code),
                    }
                },
            );
        }
        parse_chat_body(&text).map_err(|m| CallError::Transient {
            message: format!("POST {url}: {m}"),
            status: Some(status.as_u16()),
            retry_after: None,
        })
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let detail = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no detail".into());
    format!("{kind} ({detail})")
}

fn preview(s: &str) -> String {
    let t: String = s.chars().take(300).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Reads `retry-after-ms` or `Retry-After` (seconds or HTTP-date).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn insert_header(
    headers: &mut reqwest::header::HeaderMap,
    provider: &str,
    key: &str,
    value: String,
) -> Result<()> {
    let name = reqwest::header::HeaderName::from_bytes(key.as_bytes())
        .with_context(|| format!("provider `{provider}`: `{key}` is not a valid header name"))?;
    let mut v = reqwest::header::HeaderValue::from_str(&value)
        .with_context(|| format!("provider `{provider}`: header `{key}` has an invalid value"))?;
    v.set_sensitive(true);
    headers.insert(name, v);
    Ok(())
}

/// Extracts the assistant text and usage from a chat completion body.
/// Tolerates `content: null` and missing optional fields.
pub fn parse_chat_body(body: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("malformed JSON body ({e})"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| format!("reply has no `choices[0]`: {}", preview(body)))?;
    let text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let usage = Usage {
        prompt_tokens: v
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    let system_fingerprint = v
        .get("system_fingerprint")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Reply {
        text,
        usage,
        system_fingerprint,
        http_status: 200,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_and_tolerates_null() {
        let r = parse_chat_body(
            r#"{"choices":[{"message":{"content":"B"}}],"usage":{"prompt_tokens":5,"completion_tokens":1},"system_fingerprint":"fp1"}"#,
        )
        .unwrap();
        assert_eq!(r.text, "B");
        assert_eq!(r.usage.prompt_tokens, 5);
        assert_eq!(r.system_fingerprint.as_deref(), Some("fp1"));
        let r = parse_chat_body(r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#)
            .unwrap();
        assert_eq!(r.text, "");
        assert!(parse_chat_body("{\"choices\":[").is_err());
        assert!(parse_chat_body("{}").is_err());
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
    }
}
