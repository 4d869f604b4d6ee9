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

use super::{CallError, ChatRequest, Reply, Usage};
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

    /// Answers one attempt.
    pub async fn chat(&self, req: &ChatRequest) -> Result<Reply, CallError> {
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
