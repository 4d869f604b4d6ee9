//! OpenAI-compatible HTTP provider (`POST {base_url}/chat/completions`).
//!
//! The API key is read from the environment variable the config names, kept in
//! memory only, and never included in errors, logs or files.

use super::{
    CallError, ChatRequest, CompletionReply, CompletionRequest, Reply, TokenLogprobs, Usage,
};
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
        let (status, text) = self.post("chat/completions", &req.body()).await?;
        parse_chat_body(&text).map_err(|m| CallError::Transient {
            message: format!("POST {}/chat/completions: {m}", self.base_url),
            status: Some(status),
            retry_after: None,
        })
    }

    /// One attempt of a `/completions` call. A prompt over the context
    /// window is a [`CallError::ContextOverflow`].
    pub async fn complete(&self, req: &CompletionRequest) -> Result<CompletionReply, CallError> {
        let (status, text) = self
            .post("completions", &req.body())
            .await
            .map_err(CallError::classify_context_overflow)?;
        parse_completion_body(&text).map_err(|m| CallError::Transient {
            message: format!("POST {}/completions: {m}", self.base_url),
            status: Some(status),
            retry_after: None,
        })
    }

    /// Counts the server's tokens of `text` (BOS included): llama-cpp-python's
    /// `/extras/tokenize`, else vLLM's `/tokenize` (both beside `/v1`).
    /// Returns the count and the endpoint that answered.
    pub async fn count_tokens(
        &self,
        model: &str,
        text: &str,
    ) -> Result<(usize, String), CallError> {
        // Paths relative to `base_url`: the server root when it ends in /v1.
        let up = if self.base_url.ends_with("/v1") {
            "../"
        } else {
            ""
        };
        let llama_path = format!("{up}extras/tokenize");
        let tried = match self
            .post(&llama_path, &serde_json::json!({"input": text}))
            .await
        {
            Ok((_, body)) => return token_count(&body, &self.root_url("extras/tokenize")),
            Err(CallError::Fatal {
                status: Some(404 | 405),
                ..
            }) => "extras/tokenize",
            Err(e) => return Err(e),
        };
        let vllm_path = format!("{up}tokenize");
        match self
            .post(&vllm_path, &serde_json::json!({"model": model, "prompt": text}))
            .await
        {
            Ok((_, body)) => token_count(&body, &self.root_url("tokenize")),
            Err(CallError::Fatal { status: Some(404 | 405), .. }) => Err(CallError::Fatal {
                message: format!(
                    "{}: the server has no tokenize endpoint (tried /{tried} and /tokenize); `truncation = \"left\"` needs one",
                    self.base_url
                ),
                status: Some(404),
            }),
            Err(e) => Err(e),
        }
    }

    fn root_url(&self, path: &str) -> String {
        let root = self.base_url.strip_suffix("/v1").unwrap_or(&self.base_url);
        format!("{root}/{path}")
    }

    /// POSTs a JSON body; returns the status and body of a 2xx reply, or the
    /// classified error (408/409/429/5xx and transport errors are transient).
    async fn post(&self, path: &str, body: &Value) -> Result<(u16, String), CallError> {
        let url = format!("{}/{path}", self.base_url);
        let mut builder = self
            .http
            .post(&url)
            .headers(self.headers.clone())
            .json(body);
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
        let code = status.as_u16();
        if status.is_success() {
            return Ok((code, text));
        }
        let message = format!("POST {url}: HTTP {status}: {}", preview(&text));
        Err(
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
        )
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
    let message = choice.get("message");
    let text = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tool_calls = message
        .and_then(|m| m.get("tool_calls"))
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
        .cloned();
    let reasoning = message
        .and_then(|m| m.get("reasoning_content").or_else(|| m.get("reasoning")))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Reply {
        text,
        usage: usage_of(&v),
        system_fingerprint: v
            .get("system_fingerprint")
            .and_then(Value::as_str)
            .map(str::to_string),
        http_status: 200,
        tool_calls,
        reasoning,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Extracts text, logprobs and usage from a `/completions` body. Missing
/// logprobs stay `None`; array lengths are checked by the caller.
pub fn parse_completion_body(body: &str) -> Result<CompletionReply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("malformed JSON body ({e})"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| format!("reply has no `choices[0]`: {}", preview(body)))?;
    let text = choice
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let logprobs = match choice.get("logprobs") {
        None | Some(Value::Null) => None,
        Some(lp) => Some(TokenLogprobs {
            tokens: serde_json::from_value(lp.get("tokens").cloned().unwrap_or_default())
                .map_err(|e| format!("`logprobs.tokens`: {e}"))?,
            token_logprobs: serde_json::from_value(
                lp.get("token_logprobs").cloned().unwrap_or_default(),
            )
            .map_err(|e| format!("`logprobs.token_logprobs`: {e}"))?,
            text_offset: serde_json::from_value(lp.get("text_offset").cloned().unwrap_or_default())
                .map_err(|e| format!("`logprobs.text_offset`: {e}"))?,
        }),
    };
    Ok(CompletionReply {
        text,
        logprobs,
        usage: usage_of(&v),
        http_status: 200,
    })
}

/// The token count in a tokenize reply: `count`, else the length of `tokens`.
fn token_count(body: &str, url: &str) -> Result<(usize, String), CallError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| CallError::transient(format!("POST {url}: malformed JSON body ({e})")))?;
    let n = v
        .get("count")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .or_else(|| v.get("tokens").and_then(Value::as_array).map(Vec::len))
        .ok_or_else(|| CallError::Fatal {
            message: format!(
                "POST {url}: the reply has neither `count` nor `tokens`: {}",
                preview(body)
            ),
            status: Some(200),
        })?;
    Ok((n, url.to_string()))
}

fn usage_of(v: &Value) -> Usage {
    Usage {
        prompt_tokens: v
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_completion_logprobs() {
        let r = parse_completion_body(
            r#"{"choices":[{"text":"Hi there the","logprobs":{"tokens":["Hi"," there"," the"],"token_logprobs":[null,-1.5,-0.25],"text_offset":[0,2,8]}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#,
        )
        .unwrap();
        let lp = r.logprobs.unwrap();
        assert_eq!(lp.token_logprobs, vec![None, Some(-1.5), Some(-0.25)]);
        assert_eq!(lp.text_offset, vec![0, 2, 8]);
        assert_eq!(r.usage.completion_tokens, 1);
        let r = parse_completion_body(r#"{"choices":[{"text":"x","logprobs":null}]}"#).unwrap();
        assert!(r.logprobs.is_none());
        assert!(
            parse_completion_body(r#"{"choices":[{"text":"x","logprobs":{"tokens":[1]}}]}"#)
                .is_err()
        );
    }

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
        assert_eq!(r.tool_calls, None);
        let r = parse_chat_body(
            r#"{"choices":[{"message":{"content":null,"reasoning_content":"hmm","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(r.reasoning.as_deref(), Some("hmm"));
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert!(r.tool_calls.is_some());
        assert!(parse_chat_body("{\"choices\":[").is_err());
        assert!(parse_chat_body("{}").is_err());
    }

    #[test]
    fn tokenize_replies_and_context_overflow() {
        assert_eq!(
            token_count(r#"{"tokens":[0,5,9]}"#, "u").unwrap().0,
            3,
            "llama-cpp-python"
        );
        assert_eq!(
            token_count(r#"{"count":7,"tokens":[1],"max_model_len":8}"#, "u")
                .unwrap()
                .0,
            7,
            "vLLM"
        );
        assert!(matches!(
            token_count("{}", "u"),
            Err(CallError::Fatal { .. })
        ));
        assert!(matches!(
            token_count("<html>", "u"),
            Err(CallError::Transient { .. })
        ));
        let body = r#"POST u: HTTP 400 Bad Request: {"error":{"message":"This model's maximum context length is 2048 tokens, however you requested 2134 tokens","code":"context_length_exceeded"}}"#;
        let fatal = |status| CallError::Fatal {
            message: body.into(),
            status,
        };
        assert!(matches!(
            fatal(Some(400)).classify_context_overflow(),
            CallError::ContextOverflow { .. }
        ));
        assert!(matches!(
            fatal(Some(401)).classify_context_overflow(),
            CallError::Fatal { .. }
        ));
        let other = CallError::Fatal {
            message: "POST u: HTTP 400: bad field".into(),
            status: Some(400),
        };
        assert!(matches!(
            other.classify_context_overflow(),
            CallError::Fatal { .. }
        ));
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
