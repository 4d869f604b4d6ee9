//! The built-in `mock` provider: a deterministic dry-run model, in the spirit
//! of inspect's `mockllm`. It never touches the network and is only used when
//! a config routes a model to a provider with `kind = "mock"`.
//!
//! Behaviour: the reply is a pure function of (seed, request). When the last
//! user message lists options as lines like `A) ...`, the mock picks one of
//! them (hash-chosen) and phrases the choice in one of several styles; about
//! one reply in twenty is an unparseable hedge, to exercise `invalid`
//! handling. Otherwise it returns a short fixed-form sentence. `latency_ms`
//! delays each attempt; `fail_rate` makes attempts fail transiently at random
//! (not deterministically), which exercises retries and the errors record.

use super::{
    CallError, ChatRequest, CompletionReply, CompletionRequest, Reply, TokenLogprobs, Usage,
};
use crate::config::ProviderConfig;
use crate::fingerprint::sha256_hex;
use regex::Regex;
use std::sync::OnceLock;
use std::time::Duration;

/// The mock provider's settings.
#[derive(Debug, Clone)]
pub struct MockProvider {
    seed: u64,
    latency: Duration,
    fail_rate: f64,
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
        let text = reply(self.seed, req);
        let prompt_chars: usize = req.messages.iter().map(|m| m.content.len()).sum();
        let usage = Usage {
            prompt_tokens: prompt_chars.div_ceil(4) as u64,
            completion_tokens: text.split_whitespace().count() as u64,
        };
        Ok(Reply {
            text,
            usage,
            system_fingerprint: None,
            http_status: 200,
            finish_reason: Some("stop".into()),
            ..Reply::default()
        })
    }
}

/// The deterministic reply for a request.
pub fn reply(seed: u64, req: &ChatRequest) -> String {
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
    let mut options: Vec<&str> = option_line()
        .captures_iter(last_user)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    options.dedup();
    if options.is_empty() {
        return format!("Mock reply {}.", &digest[..8]);
    }
    if h.is_multiple_of(20) {
        return "I am not sure which of these fits best.".to_string();
    }
    let choice = options[((h >> 8) as usize) % options.len()];
    match (h >> 4) % 4 {
        0 => choice.to_string(),
        1 => format!("Answer: {choice}"),
        2 => format!("({choice})"),
        _ => format!("The most appropriate response is option {choice}."),
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

/// Deterministic log-probability of `token` after `prefix`, in (-6, -0.01].
pub fn token_logprob(seed: u64, prefix: &str, token: &str) -> f64 {
    let d = sha256_hex(format!("{seed}\u{0}{prefix}\u{0}{token}").as_bytes());
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
    let mut consumed = String::new();
    if echo {
        for (i, (off, tok)) in prompt_tokens.iter().enumerate() {
            tokens.push(tok.clone());
            offsets.push(*off);
            lps.push((i > 0).then(|| token_logprob(seed, &consumed, tok)));
            consumed.push_str(tok);
        }
    } else {
        consumed.push_str(prompt);
    }
    let mut generated = String::new();
    let mut offset = prompt.chars().count();
    for k in 0..max_tokens {
        let d = sha256_hex(format!("{seed}\u{0}{consumed}{generated}\u{0}{k}").as_bytes());
        let tok = GENERATED[(u8::from_str_radix(&d[..2], 16).unwrap_or(0) % 4) as usize];
        let lp = token_logprob(seed, &format!("{consumed}{generated}"), tok);
        tokens.push(tok.to_string());
        offsets.push(offset);
        lps.push(Some(lp));
        offset += tok.chars().count();
        generated.push_str(tok);
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
            temperature: 0.0,
            max_tokens: 8,
            seed: 1,
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
        assert!(reply(0, &req("no options here")).starts_with("Mock reply"));
    }
}
