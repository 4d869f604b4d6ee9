//! The built-in `mock` provider: a deterministic dry-run model, in the spirit
//! of inspect's `mockllm`. It never touches the network and is only used when
//! a config routes a model to a provider with `kind = "mock"`.
//!
//! Behaviour: the reply is a pure function of (seed, request). When the last
//! user message lists options as lines like `A) ...`, the mock picks one of
//! them (hash-chosen) and phrases the choice in one of several styles; about
//! one reply in twenty is an unparseable hedge, to exercise `invalid`
//! handling. A judge prompt is answered as a real judge answers NVIDIA's
//! (`{"classification": ...}`), or in varied styles with
//! `judge_replies = "varied"` ([`JudgeReplies`]). Otherwise it returns a
//! short fixed-form sentence. `latency_ms` delays each attempt; `fail_rate`
//! makes attempts fail transiently at random (not deterministically), which
//! exercises retries and the errors record.

use super::{
    CallError, ChatRequest, CompletionReply, CompletionRequest, Reply, TokenLogprobs, Usage,
};
use crate::config::ProviderConfig;
use crate::fingerprint::sha256_hex;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;

/// The mock provider's settings.
#[derive(Debug, Clone)]
pub struct MockProvider {
    seed: u64,
    latency: Duration,
    fail_rate: f64,
    judge: JudgeStyle,
}

fn option_line() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?m)^\s*\(?([A-Za-z0-9]{1,3})\)\s").expect("static regex"))
}

impl MockProvider {
    /// Builds the mock from its provider config and the run seed.
    pub fn new(cfg: &ProviderConfig, seed: u64) -> Self {
        MockProvider {
            seed,
            latency: Duration::from_millis(cfg.latency_ms),
            fail_rate: cfg.fail_rate,
            judge: cfg.judge_replies.style(),
        }
    }

    /// Answers one `/completions` attempt.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<CompletionReply, CallError> {
        self.delay_and_maybe_fail().await?;
        Ok(completion(
            &req.prompt,
            req.echo,
            req.logprobs.is_some(),
            req.max_tokens,
            self.seed,
        ))
    }

    async fn delay_and_maybe_fail(&self) -> Result<(), CallError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.fail_rate > 0.0 && rand::random::<f64>() < self.fail_rate {
            return Err(CallError::Transient {
                message: "mock: injected transient failure".into(),
                status: None,
                retry_after: Some(Duration::from_millis(1)),
            });
        }
        Ok(())
    }

    /// Answers one chat attempt.
    pub async fn chat(&self, req: &ChatRequest) -> Result<Reply, CallError> {
        self.delay_and_maybe_fail().await?;
        let (content, tool_calls) =
            split_native_tool_call(req, reply_styled(self.seed, req, self.judge));
        let content_null = content.is_none();
        let text = content.unwrap_or_default();
        let prompt_chars: usize = req.messages.iter().map(|m| m.content.len()).sum();
        let usage = Usage {
            prompt_tokens: prompt_chars.div_ceil(4) as u64,
            completion_tokens: text.split_whitespace().count() as u64,
        };
        Ok(Reply {
            text,
            content_null,
            usage,
            system_fingerprint: None,
            http_status: 200,
            finish_reason: Some(
                if tool_calls.is_some() {
                    "tool_calls"
                } else {
                    "stop"
                }
                .into(),
            ),
            tool_calls,
            ..Reply::default()
        })
    }
}

/// With native `tools` in the request, a tool-call reply is returned the way
/// OpenAI-compatible servers do: `content: null` and a `tool_calls` list.
/// Returns (content, tool_calls).
pub fn split_native_tool_call(
    req: &ChatRequest,
    text: String,
) -> (Option<String>, Option<serde_json::Value>) {
    if req.tools.is_some() {
        if let Ok(serde_json::Value::Object(call)) =
            serde_json::from_str::<serde_json::Value>(&text)
        {
            if let Some(name) = call.get("name").and_then(|n| n.as_str()) {
                let args = call
                    .get("arguments")
                    .cloned()
                    .unwrap_or_default()
                    .to_string();
                let id = format!("call_{}", &sha256_hex(text.as_bytes())[..12]);
                let calls = serde_json::json!([{
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }]);
                return (None, Some(calls));
            }
        }
    }
    (Some(text), None)
}

fn tool_name() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#""name"\s*:\s*"([^"]+)""#).expect("static regex"))
}

/// How the mock judge answers: the `mock` provider's `judge_replies` and
/// `w2c mock-server --judge-replies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum JudgeReplies {
    /// As a real judge answers the prompt of the default protocol
    /// (NVIDIA's): the JSON object `{"classification": "<label>"}`, the
    /// label in the prompt's own names.
    #[default]
    Strict,
    /// Varied styles (fenced, in prose, other casings, a hedge without
    /// JSON now and then), for tests of the repair turn and of `invalid`.
    Varied,
}

impl JudgeReplies {
    /// The default is the default.
    pub fn is_default(&self) -> bool {
        *self == JudgeReplies::default()
    }

    /// The reply style it stands for.
    pub fn style(self) -> JudgeStyle {
        match self {
            JudgeReplies::Strict => JudgeStyle::Strict,
            JudgeReplies::Varied => JudgeStyle::Varied,
        }
    }
}

/// How the mock's judge replies are phrased.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JudgeStyle {
    /// Always `{"classification": "<label>"}` in the prompt's label names.
    Strict,
    /// Varied: strict JSON, fenced, in prose, other casings, and about one
    /// reply in twenty-five a hedge without JSON (to exercise w2c's lenient
    /// parser, the repair turn and `invalid`).
    Varied,
    /// What NVIDIA's judge scripts can read: a JSON object with a
    /// `classification` in the prompt's own label names (about one in twenty
    /// in capitals, which the official aggregate counts as a label of its
    /// own), except a share `not_json` of first judge calls (no assistant
    /// turn yet), answered in prose, which provokes the repair turn; a
    /// repair call always gets JSON.
    Readable {
        /// Share of first judge calls answered in prose.
        not_json: f64,
    },
}

/// The deterministic reply for a request. Three modes, chosen from the
/// request's text:
/// - **options** (`A) ...` lines in the last user message): pick one option;
/// - **judge** (the prompt asks for a `"classification"`): classify the
///   reply quoted between `<<<` and `>>>` (w2c's judge prompt) or in
///   `<AI_MODEL_RESPONSE>` (NVIDIA's and the Python suite's) with simple
///   rules (tool-call JSON → `tool_call`, a question → `request_for_info`,
///   an apology or refusal → `cannot_answer`, else `direct`, or
///   `direct_answer` when the prompt names that label) and answer in
///   `{"classification": ...}` JSON;
/// - **target** (anything else): behave like an assistant, choosing by hash
///   to call the first offered tool, ask a question, decline, or answer.
///
/// About one multiple-choice reply in twenty and one target reply in thirty
/// is deliberately unusable (a hedge, an empty reply) to exercise the audit
/// paths; [`JudgeStyle::Varied`] adds unusable judge replies.
pub fn reply(seed: u64, req: &ChatRequest) -> String {
    reply_styled(seed, req, JudgeStyle::Strict)
}

/// [`reply`] with the judge replies phrased in `style`.
pub fn reply_styled(seed: u64, req: &ChatRequest, style: JudgeStyle) -> String {
    let body = serde_json::to_string(req).unwrap_or_default();
    let digest = sha256_hex(format!("{seed}\u{0}{body}").as_bytes());
    let h = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let all_text: String = req.messages.iter().map(|m| m.content.as_str()).collect();
    let asks_classification = all_text.contains("\"classification\"");
    // NVIDIA's judge prompt numbers its categories `(1)`..`(4)`, which
    // would read as options: a prompt quoting `<AI_MODEL_RESPONSE>` is a
    // judge's whatever it lists.
    let judge_first = asks_classification && all_text.contains("<AI_MODEL_RESPONSE>");
    if judge_first || (asks_classification && !has_options(last_user)) {
        let label = judged_label(req, last_user);
        return match style {
            JudgeStyle::Strict => format!("{{\"classification\": \"{label}\"}}"),
            JudgeStyle::Varied => judge_reply(h, label),
            JudgeStyle::Readable { not_json } => {
                let first_call = !req.messages.iter().any(|m| m.role == "assistant");
                if first_call && ((h >> 20) % 10_000) as f64 / 10_000.0 < not_json {
                    format!(
                        "I would classify this reply as {}.",
                        label.replace('_', " ")
                    )
                } else if first_call && (h >> 40).is_multiple_of(20) {
                    format!("{{\"classification\": \"{}\"}}", label.to_uppercase())
                } else {
                    format!("{{\"classification\": \"{label}\"}}")
                }
            }
        };
    }
    let mut options: Vec<&str> = option_line()
        .captures_iter(last_user)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    options.dedup();
    if !options.is_empty() {
        if h.is_multiple_of(20) {
            return "I am not sure which of these fits best.".to_string();
        }
        let choice = options[((h >> 8) as usize) % options.len()];
        return match (h >> 4) % 4 {
            0 => choice.to_string(),
            1 => format!("Answer: {choice}"),
            2 => format!("({choice})"),
            _ => format!("The most appropriate response is option {choice}."),
        };
    }
    target_reply(h, &all_text, req.tools.as_ref())
}

/// Whether a message lists options as `A) ...` lines.
fn has_options(text: &str) -> bool {
    option_line().is_match(text)
}

/// The label the mock judge gives the reply its prompt quotes.
fn judged_label(req: &ChatRequest, last_user: &str) -> &'static str {
    const OPEN: &str = "<AI_MODEL_RESPONSE>\n";
    const CLOSE: &str = "\n</AI_MODEL_RESPONSE>";
    let tagged = req.messages.iter().find_map(|m| {
        let a = m.content.find(OPEN)? + OPEN.len();
        let b = m.content.rfind(CLOSE)?;
        (b >= a).then(|| &m.content[a..b])
    });
    let quoted = match (tagged, last_user.find("<<<"), last_user.rfind(">>>")) {
        (Some(t), _, _) => t.trim(),
        (None, Some(a), Some(b)) if b > a => last_user[a + 3..b].trim(),
        _ => last_user.trim(),
    };
    let lower = quoted.to_lowercase();
    if (quoted.starts_with('{') || quoted.starts_with('[')) && quoted.contains("\"name\"") {
        "tool_call"
    } else if quoted.ends_with('?') {
        "request_for_info"
    } else if ["sorry", "can't", "cannot", "unable"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "cannot_answer"
    } else if req
        .messages
        .iter()
        .any(|m| m.content.contains("`direct_answer`"))
    {
        "direct_answer"
    } else {
        "direct"
    }
}

fn judge_reply(h: u64, label: &str) -> String {
    if h.is_multiple_of(25) {
        return "The assistant seems to do something reasonable here.".to_string();
    }
    match (h >> 6) % 4 {
        0 => format!("{{\"classification\": \"{label}\"}}"),
        1 => format!(
            "```json\n{{\"classification\": \"{}\"}}\n```",
            label.to_uppercase()
        ),
        2 => format!("Here is my verdict: {{\"Classification\": \"{label}\"}} based on the reply."),
        _ => format!("{{\"classification\":\"{}\"}}", label.replace('_', " ")),
    }
}

fn target_reply(h: u64, all_text: &str, native_tools: Option<&serde_json::Value>) -> String {
    if h.is_multiple_of(30) {
        return String::new();
    }
    let tool = native_tools
        .and_then(|t| t.pointer("/0/function/name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            tool_name()
                .captures(all_text)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string())
        });
    match ((h >> 10) % 4, tool) {
        (0, Some(name)) => format!("{{\"name\": \"{name}\", \"arguments\": {{}}}}"),
        (1, _) => "Could you tell me a little more about what you need?".to_string(),
        (2, _) | (0, None) => {
            "I'm sorry, I can't help with that using the tools I have.".to_string()
        }
        _ => "Here is what I know about that: it depends on the details.".to_string(),
    }
}

/// Splits text into tokens: a run of whitespace followed by a run of word
/// characters, or a single other character, or trailing whitespace. Returns
/// (character offset, token).
pub fn tokenize(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() {
            if chars[i].is_alphanumeric() || chars[i] == '_' {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        out.push((start, chars[start..i].iter().collect()));
    }
    out
}

/// The mock's token count of a prompt: its [`tokenize`] pieces.
pub fn count_tokens(text: &str) -> usize {
    tokenize(text).len()
}

/// Deterministic log-probability of `token` at character `offset` after the
/// token `previous`, in (-6, -0.01]. Cheap (no dependence on the whole
/// prefix), so long prompts score in linear time.
pub fn token_logprob(seed: u64, previous: &str, token: &str, offset: usize) -> f64 {
    let d = sha256_hex(format!("{seed}\u{0}{previous}\u{0}{token}\u{0}{offset}").as_bytes());
    let h = u64::from_str_radix(&d[..12], 16).unwrap_or(0);
    -0.01 - (h % 5990) as f64 / 1000.0
}

const GENERATED: [&str; 4] = [" the", " a", " and", "."];

/// The deterministic `/completions` reply: with `echo`, the prompt's tokens
/// (first logprob null) followed by `max_tokens` generated tokens.
pub fn completion(
    prompt: &str,
    echo: bool,
    logprobs: bool,
    max_tokens: u32,
    seed: u64,
) -> CompletionReply {
    let max_tokens = max_tokens as usize;
    let prompt_tokens = tokenize(prompt);
    let mut tokens: Vec<String> = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    let mut lps: Vec<Option<f64>> = Vec::new();
    let mut previous = String::new();
    if echo {
        for (i, (off, tok)) in prompt_tokens.iter().enumerate() {
            tokens.push(tok.clone());
            offsets.push(*off);
            lps.push((i > 0).then(|| token_logprob(seed, &previous, tok, *off)));
            previous.clone_from(tok);
        }
    } else if let Some((_, last)) = prompt_tokens.last() {
        previous.clone_from(last);
    }
    let mut generated = String::new();
    let mut offset = prompt.chars().count();
    for k in 0..max_tokens {
        let d = sha256_hex(format!("{seed}\u{0}{previous}\u{0}{offset}\u{0}{k}").as_bytes());
        let tok = GENERATED[(u8::from_str_radix(&d[..2], 16).unwrap_or(0) % 4) as usize];
        let lp = token_logprob(seed, &previous, tok, offset);
        tokens.push(tok.to_string());
        offsets.push(offset);
        lps.push(Some(lp));
        offset += tok.chars().count();
        generated.push_str(tok);
        previous = tok.to_string();
    }
    let text = if echo {
        format!("{prompt}{generated}")
    } else {
        generated
    };
    CompletionReply {
        text,
        logprobs: logprobs.then_some(TokenLogprobs {
            tokens,
            token_logprobs: lps,
            text_offset: offsets,
        }),
        usage: Usage {
            prompt_tokens: prompt_tokens.len() as u64,
            completion_tokens: max_tokens as u64,
        },
        http_status: 200,
        usage_anomaly: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    fn req(user: &str) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::user(user)],
            temperature: Some(0.0),
            max_tokens: Some(8),
            seed: Some(1),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn tokenizer_offsets_cover_the_text() {
        let text = "Hello, wörld  foo_bar\n\n";
        let toks = tokenize(text);
        let joined: String = toks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(joined, text);
        let chars: Vec<char> = text.chars().collect();
        for (off, tok) in &toks {
            let s: String = chars[*off..*off + tok.chars().count()].iter().collect();
            assert_eq!(&s, tok);
        }
        assert_eq!(toks[0].1, "Hello");
        assert_eq!(toks[1].1, ",");
        assert_eq!(toks[2].1, " wörld");
        assert_eq!(toks.last().unwrap().1, "\n\n");
    }

    #[test]
    fn echo_completion_shape() {
        let reply = completion("A b", true, true, 1, 7);
        assert_eq!(reply.usage.prompt_tokens, 2);
        assert_eq!(reply.usage.completion_tokens, 1);
        let lp = reply.logprobs.clone().unwrap();
        assert_eq!(lp.tokens.len(), 3);
        assert_eq!(lp.token_logprobs[0], None);
        assert_eq!(lp.text_offset, vec![0, 1, 3]);
        assert!(reply.text.starts_with("A b"));
        // Deterministic.
        assert_eq!(completion("A b", true, true, 1, 7), reply);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let r = req("Pick one:\nA) x\nB) y\nC) z\nD) w\n");
        assert_eq!(reply(1, &r), reply(1, &r));
        let distinct: std::collections::HashSet<String> = (0..50).map(|s| reply(s, &r)).collect();
        assert!(distinct.len() > 4);
    }

    #[test]
    fn picks_only_offered_options() {
        for s in 0..100 {
            let out = reply(s, &req("A) x\nB) y\n"));
            assert!(
                out.contains('A') || out.contains('B') || out.starts_with("I am not sure"),
                "{out}"
            );
            assert!(!out.contains('C'));
        }
        let judge = reply(
            0,
            &req(
                "Return {\"classification\": ...}\n<<<\n{\"name\": \"f\", \"arguments\": {}}\n>>>",
            ),
        );
        assert!(
            judge.to_lowercase().contains("tool") || judge.contains("reasonable"),
            "{judge}"
        );
    }
}
