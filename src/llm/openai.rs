//! OpenAI-compatible HTTP provider (`POST {base_url}/chat/completions`).
//!
//! The API key is read from the environment variable the config names, kept in
//! memory only, and never included in errors, logs or files: it and the
//! `headers_env` values are registered with [`crate::redact`], and every reply
//! body is scrubbed as it is read, so a server echoing them cannot get them
//! stored. Bodies are read up to the provider's `max_response_bytes`.

use super::{
    CallError, ChatRequest, CompletionReply, CompletionRequest, Reply, TokenLogprobs, Usage,
    UsageAnomaly,
};
use crate::config::ProviderConfig;
use crate::redact;
use anyhow::{Context, Result};
use serde_json::Value;
use std::time::Duration;

/// A configured OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct OpenAiProvider {
    name: String,
    base_url: String,
    max_response_bytes: u64,
    api_key: Option<String>,
    headers: reqwest::header::HeaderMap,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OpenAiProvider {
    /// Builds the provider; fails when `api_key_env` names an unset variable.
    pub fn new(name: &str, cfg: &ProviderConfig) -> Result<Self> {
        let raw_url = cfg
            .base_url
            .clone()
            .with_context(|| format!("provider `{name}`: `base_url` is required"))?;
        crate::config::check_base_url(&raw_url)
            .map_err(|e| anyhow::anyhow!("key `providers.{name}.base_url`: {e}"))?;
        let base_url = raw_url.trim().trim_end_matches('/').to_string();
        let api_key = match &cfg.api_key_env {
            Some(var) => {
                let from = format!("`providers.{name}.api_key_env`");
                let v = crate::env_vars::secret(var, &from, "Bearer ")?;
                redact::register(&v);
                Some(v)
            }
            None => None,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            insert_header(&mut headers, name, k, v.clone())?;
        }
        for (k, var) in &cfg.headers_env {
            let from = format!("`providers.{name}.headers_env.{k}`");
            let v = crate::env_vars::secret(var, &from, "")?;
            redact::register(&v);
            insert_header(&mut headers, name, k, v)?;
        }
        let timeout = crate::secs::in_range(
            &format!("key `providers.{name}.timeout_secs`"),
            cfg.timeout_secs,
            crate::config::TIMEOUT_SECS_RANGE,
        )
        .map_err(anyhow::Error::msg)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(cfg.max_concurrency)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(OpenAiProvider {
            name: name.to_string(),
            base_url,
            max_response_bytes: cfg.max_response_bytes,
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
        let (status, text) = self
            .post("chat/completions", &req.body())
            .await
            .map_err(CallError::classify_context_overflow)?;
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
    /// classified error (408/409/429/5xx, transport errors and bodies over
    /// `max_response_bytes` are transient). The body is read up to the cap
    /// and scrubbed of secrets before anything else sees it.
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
        let code = status.as_u16();
        let retry_after = parse_retry_after(resp.headers());
        let read = crate::http_body::read_limited(resp, self.max_response_bytes)
            .await
            .map_err(|e| CallError::Transient {
                message: format!("POST {url}: reading body: {}", without_url(&e)),
                status: Some(code),
                retry_after: None,
            })?;
        if status.is_success() && !read.complete {
            return Err(CallError::Transient {
                message: format!(
                    "POST {url}: HTTP {status}: the reply body is larger than {} (`providers.{}.max_response_bytes`); the attempt was abandoned",
                    crate::http_body::human_bytes(self.max_response_bytes),
                    self.name
                ),
                status: Some(code),
                retry_after: None,
            });
        }
        let text = redact::scrub_body(&read.text());
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
    let chain = error_chain(e);
    redact::scrub(&match http_fault(e) {
        Some(cause) => format!("{kind}: {cause} ({chain})"),
        None => format!("{kind} ({chain})"),
    })
}

/// What a server did wrong at the HTTP level, when a transport error says
/// so: a reply that is not valid HTTP (e.g. `Content-Length: -1`), headers
/// larger than the client reads, or a connection closed mid-reply.
fn http_fault(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some(
                    "the server's reply headers are too large (more than the client reads)",
                );
            }
            if h.is_parse() || h.is_parse_status() {
                return Some("the server's reply is not valid HTTP");
            }
            if h.is_incomplete_message() {
                return Some("the connection closed before the reply was complete");
            }
        }
        cause = c.source();
    }
    None
}

/// Every cause under a transport error, outermost first (each said once):
/// "client error (SendRequest): invalid HTTP header parsed" names what the
/// server did, where the first cause alone would not.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        "no detail".into()
    } else {
        parts.join(": ")
    }
}

fn preview(s: &str) -> String {
    let t: String = s.chars().take(300).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Longest wait a server can ask for; longer requests are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Reads `retry-after-ms` or `Retry-After` (seconds or HTTP-date), capped at
/// [`MAX_RETRY_AFTER`]; values that are not a duration (NaN, negative,
/// garbage) are ignored.
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    retry_after_from(
        header("retry-after-ms"),
        header("retry-after"),
        chrono::Utc::now(),
    )
}

/// [`parse_retry_after`] over the two header values, at time `now`.
pub fn retry_after_from(
    ms: Option<&str>,
    secs_or_date: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    if let Some(ms) = ms.and_then(|s| s.trim().parse::<f64>().ok()) {
        if let Some(d) = crate::secs::clamped(ms / 1000.0, MAX_RETRY_AFTER) {
            return Some(d);
        }
    }
    let v = secs_or_date?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return crate::secs::clamped(secs, MAX_RETRY_AFTER);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc).signed_duration_since(now);
    Some(
        delta
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
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
    let content = message.and_then(|m| m.get("content"));
    let content_null = content.is_none_or(Value::is_null);
    let text = content.and_then(Value::as_str).unwrap_or("").to_string();
    let tool_calls = message
        .and_then(|m| m.get("tool_calls"))
        .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
        .cloned();
    let reasoning = message
        .and_then(|m| m.get("reasoning_content").or_else(|| m.get("reasoning")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (usage, usage_anomaly) = parse_usage(&v);
    Ok(Reply {
        text,
        content_null,
        usage,
        usage_anomaly,
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

/// Largest `text_offset` accepted: 2^31 characters, far beyond any prompt
/// (replies are at most 1 GiB), small enough that offset + token length
/// cannot overflow.
pub const MAX_TEXT_OFFSET: usize = 1 << 31;

/// Extracts text, logprobs and usage from a `/completions` body. Missing
/// logprobs stay `None`; array lengths are checked by the caller.
pub fn parse_completion_body(body: &str) -> Result<CompletionReply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("malformed JSON body ({e})"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| format!("reply has no `choices[0]`: {}", preview(body)))?;
    let text = match choice.get("text") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(t)) => t.clone(),
        Some(other) => {
            return Err(format!(
                "`choices[0].text` is {}, not a string",
                json_type(other)
            ))
        }
    };
    let logprobs = match choice.get("logprobs") {
        None | Some(Value::Null) => None,
        Some(other) if !other.is_object() => {
            return Err(format!(
                "`choices[0].logprobs` is {}, not an object",
                json_type(other)
            ))
        }
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
    if let Some(lp) = &logprobs {
        // Offsets count characters of prompt + completion (without `echo`
        // they start at the prompt's length, beyond the returned text); one
        // past any possible text is not a position and would overflow the
        // scorer's arithmetic.
        if let Some((i, off)) = lp
            .text_offset
            .iter()
            .enumerate()
            .find(|(_, &o)| o > MAX_TEXT_OFFSET)
        {
            return Err(format!(
                "`logprobs.text_offset[{i}]` = {off} is not a plausible character offset"
            ));
        }
    }
    if let Some(lp) = &logprobs {
        check_completion_tokens(&v, lp.tokens.len())?;
    }
    let (usage, usage_anomaly) = parse_usage(&v);
    Ok(CompletionReply {
        text,
        logprobs,
        usage,
        http_status: 200,
        usage_anomaly,
    })
}

/// A reply with logprobs must say how many of its tokens were generated
/// (`usage.completion_tokens`, the tokens trimmed from the end of an echo):
/// when it says so, the count must be an integer no larger than the tokens
/// returned. An absent count means none.
fn check_completion_tokens(v: &Value, n_tokens: usize) -> Result<(), String> {
    let count = match v.get("usage") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(u)) => match u.get("completion_tokens") {
            None | Some(Value::Null) => return Ok(()),
            Some(c) => c,
        },
        Some(other) => {
            return Err(format!(
                "`usage` is {}, not an object, so the reply does not say which of its {n_tokens} tokens were generated",
                json_type(other)
            ))
        }
    };
    match count.as_u64() {
        Some(c) if c <= n_tokens as u64 => Ok(()),
        Some(c) => Err(format!(
            "`usage.completion_tokens` = {c} is more than the {n_tokens} tokens in `logprobs.tokens`, so the generated tokens cannot be told from the prompt's"
        )),
        None => Err(format!(
            "`usage.completion_tokens` is {}, not a count of the {n_tokens} tokens in `logprobs.tokens`",
            preview(&count.to_string())
        )),
    }
}

/// The JSON type of a value, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// More tokens than any single call can use; a larger count (2^64 − 1 as
/// much as 1e30) is not counted, and is audited as implausible.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 1_000_000_000;

/// Reads `usage.prompt_tokens` and `usage.completion_tokens`. Absent counts
/// are 0. A count that is negative, fractional, not a number or above
/// [`MAX_PLAUSIBLE_TOKENS`] is reported as a [`UsageAnomaly`] (the count used
/// is the integral value of a whole float such as `4.0`, else 0).
pub fn parse_usage(v: &Value) -> (Usage, Option<UsageAnomaly>) {
    let mut problems = Vec::new();
    let usage = match v.get("usage") {
        None | Some(Value::Null) => return (Usage::default(), None),
        Some(Value::Object(_)) => {
            let mut count = |field: &str| -> u64 {
                match v.pointer(&format!("/usage/{field}")) {
                    None | Some(Value::Null) => 0,
                    Some(Value::Number(n)) => {
                        if let Some(u) = n.as_u64() {
                            if u > MAX_PLAUSIBLE_TOKENS {
                                problems.push(format!(
                                    "`{field}` = {u} is implausibly large (counted as 0)"
                                ));
                                0
                            } else {
                                u
                            }
                        } else if let Some(i) = n.as_i64() {
                            problems.push(format!("`{field}` = {i} is negative (counted as 0)"));
                            0
                        } else {
                            let f = n.as_f64().unwrap_or(f64::NAN);
                            if f >= 0.0 && f.fract() == 0.0 && f <= MAX_PLAUSIBLE_TOKENS as f64 {
                                problems.push(format!("`{field}` = {n} is not an integer"));
                                f as u64
                            } else {
                                problems.push(format!(
                                    "`{field}` = {n} is not a token count (counted as 0)"
                                ));
                                0
                            }
                        }
                    }
                    Some(other) => {
                        problems.push(format!(
                            "`{field}` is {} (counted as 0)",
                            preview(&other.to_string())
                        ));
                        0
                    }
                }
            };
            Usage {
                prompt_tokens: count("prompt_tokens"),
                completion_tokens: count("completion_tokens"),
            }
        }
        Some(other) => {
            problems.push(format!(
                "`usage` is not an object: {} (counted as 0)",
                preview(&other.to_string())
            ));
            Usage::default()
        }
    };
    let anomaly = (!problems.is_empty()).then(|| UsageAnomaly {
        reported: v.get("usage").map(preview_value).unwrap_or(Value::Null),
        problems,
    });
    (usage, anomaly)
}

/// A reported value small enough to keep in a record.
fn preview_value(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= 300 {
        v.clone()
    } else {
        Value::String(preview(&text))
    }
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
    fn absurd_retry_after_values_are_capped_or_ignored() {
        let now = chrono::Utc::now();
        assert_eq!(
            retry_after_from(None, Some("1e300"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after_from(Some("1e30"), None, now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after_from(Some("inf"), Some("2"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after_from(Some("NaN"), Some("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after_from(Some("-5"), Some("-1"), now), None);
        assert_eq!(retry_after_from(None, Some("soon"), now), None);
        assert_eq!(
            retry_after_from(None, Some("Fri, 31 Dec 9999 23:59:59 GMT"), now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn implausible_usage_is_reported_and_counts_saturate() {
        let (u, a) = parse_usage(
            &serde_json::json!({"usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
        );
        assert_eq!((u.prompt_tokens, u.completion_tokens, a), (7, 2, None));
        let (u, a) = parse_usage(&serde_json::json!({}));
        assert_eq!((u, a), (Usage::default(), None));
        let (u, a) = parse_usage(
            &serde_json::json!({"usage": {"prompt_tokens": u64::MAX, "completion_tokens": -3}}),
        );
        assert_eq!(u.prompt_tokens, 0);
        assert_eq!(u.completion_tokens, 0);
        let a = a.unwrap();
        assert_eq!(a.problems.len(), 2, "{:?}", a.problems);
        // 2^64 - 1 and 1e30 are the same nonsense: audited, not counted.
        for huge in [
            serde_json::json!(u64::MAX),
            serde_json::json!(1e30),
            serde_json::json!(2e9),
        ] {
            let (u, a) = parse_usage(&serde_json::json!({"usage": {"prompt_tokens": huge}}));
            assert_eq!(u.prompt_tokens, 0, "{huge}");
            assert!(a.is_some(), "{huge}");
        }
        let big = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: 1,
        };
        assert_eq!(big.saturating_add(big).prompt_tokens, u64::MAX);
        for bad in [
            serde_json::json!({"usage": {"prompt_tokens": 1.5}}),
            serde_json::json!({"usage": {"prompt_tokens": "12"}}),
            serde_json::json!({"usage": [1, 2]}),
        ] {
            let (u, a) = parse_usage(&bad);
            assert_eq!(u.prompt_tokens, 0);
            assert!(a.is_some(), "{bad}");
        }
        let (u, a) = parse_usage(&serde_json::json!({"usage": {"prompt_tokens": 4.0}}));
        assert_eq!(u.prompt_tokens, 4);
        assert!(a.is_some());
    }

    #[test]
    fn completion_replies_of_the_wrong_shape_are_malformed_and_say_why() {
        let lp =
            r#""logprobs":{"tokens":["a","b"],"token_logprobs":[null,-1],"text_offset":[0,1]}"#;
        for (body, needle) in [
            (
                format!(
                    r#"{{"choices":[{{"text":"ab",{lp}}}],"usage":{{"completion_tokens":1000000}}}}"#
                ),
                "`usage.completion_tokens` = 1000000 is more than the 2 tokens",
            ),
            (
                format!(
                    r#"{{"choices":[{{"text":"ab",{lp}}}],"usage":{{"completion_tokens":18446744073709551615}}}}"#
                ),
                "18446744073709551615 is more than the 2 tokens",
            ),
            (
                format!(
                    r#"{{"choices":[{{"text":"ab",{lp}}}],"usage":{{"completion_tokens":1e30}}}}"#
                ),
                "is 1e+30, not a count",
            ),
            (
                format!(r#"{{"choices":[{{"text":"ab",{lp}}}],"usage":"lots"}}"#),
                "`usage` is a string, not an object",
            ),
            (
                format!(r#"{{"choices":[{{"text":12345,{lp}}}]}}"#),
                "`choices[0].text` is a number",
            ),
            (
                r#"{"choices":[{"text":"ab","logprobs":"yes"}]}"#.to_string(),
                "`choices[0].logprobs` is a string",
            ),
        ] {
            let err = parse_completion_body(&body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        // Without logprobs the usage is only audited.
        let r = parse_completion_body(r#"{"choices":[{"text":"ab"}],"usage":"lots"}"#).unwrap();
        assert!(r.usage_anomaly.is_some());
        let ok =
            format!(r#"{{"choices":[{{"text":"ab",{lp}}}],"usage":{{"completion_tokens":2}}}}"#);
        assert!(parse_completion_body(&ok).is_ok());
    }

    #[test]
    fn absurd_offsets_are_a_malformed_reply() {
        let err = parse_completion_body(
            r#"{"choices":[{"text":"ab","logprobs":{"tokens":["a","b"],"token_logprobs":[null,-1],"text_offset":[0,18446744073709551615]}}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("text_offset[1]"), "{err}");
        // Without `echo`, offsets legitimately start past the returned text.
        let r = parse_completion_body(
            r#"{"choices":[{"text":" yes","logprobs":{"tokens":[" yes"],"token_logprobs":[-0.5],"text_offset":[120]}}]}"#,
        )
        .unwrap();
        assert_eq!(r.logprobs.unwrap().text_offset, vec![120]);
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
