//! What a run will ask, before it asks anything (`w2c config check`): per
//! planned namespace, the model it calls, its items and requests, the
//! prompt tokens estimated from the rendered requests and the completion
//! tokens at most (their `max_tokens`), and a cost where `[prices]` has the
//! model. Prompt tokens are the request text's characters / 4, the same
//! rule the client's token budget uses; real tokenizers differ, so the
//! figure is an estimate.

use super::Planned;
use crate::config::{Config, Price};
use crate::dataset::Example;
use crate::llm::ChatRequest;
use crate::methods::Plan as _;
use anyhow::Result;

/// What one planned namespace will send.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEstimate {
    /// The namespace's method name (`mcq`, `llm_judge.target`, ...).
    pub namespace: String,
    /// The model it calls.
    pub model: String,
    /// Work items (examples × repeats).
    pub items: usize,
    /// Requests if every reply is usable (no retries).
    pub requests: usize,
    /// Requests that may come on top (a judge's repair turn, the echo probe).
    pub extra_requests: String,
    /// Estimated prompt tokens over every request.
    pub prompt_tokens: u64,
    /// Most completion tokens the requests allow (`None` when a request
    /// sends no `max_tokens`: the server's default bounds the reply).
    pub max_completion_tokens: Option<u64>,
    /// Cost bound in USD (estimated prompt + most completion), when priced
    /// and bounded.
    pub cost_usd: Option<f64>,
}

/// Prompt tokens of a chat request: its messages' and tools' characters / 4.
fn chat_prompt_tokens(req: &ChatRequest) -> u64 {
    let chars: usize = req
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum::<usize>()
        + req
            .tools
            .as_ref()
            .map_or(0, |t| t.to_string().chars().count());
    (chars / 4) as u64
}

/// Accumulates one stream's requests.
struct Tally {
    requests: usize,
    prompt_tokens: u64,
    completion_tokens: Option<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: Some(0),
        }
    }

    fn add(&mut self, prompt_tokens: u64, max_tokens: Option<u64>, times: usize) {
        self.requests += times;
        self.prompt_tokens = self
            .prompt_tokens
            .saturating_add(prompt_tokens.saturating_mul(times as u64));
        self.completion_tokens = self
            .completion_tokens
            .zip(max_tokens)
            .map(|(sum, m)| sum.saturating_add(m.saturating_mul(times as u64)));
    }

    fn into_estimate(
        self,
        namespace: String,
        model: &str,
        items: usize,
        extra_requests: String,
        price: Option<&Price>,
    ) -> StreamEstimate {
        StreamEstimate {
            namespace,
            model: model.to_string(),
            items,
            requests: self.requests,
            extra_requests,
            prompt_tokens: self.prompt_tokens,
            max_completion_tokens: self.completion_tokens,
            cost_usd: price.zip(self.completion_tokens).map(|(p, completion)| {
                (self.prompt_tokens as f64 * p.prompt_per_mtok
                    + completion as f64 * p.completion_per_mtok)
                    / 1e6
            }),
        }
    }
}

/// The estimate of every planned namespace of `config` over `examples`.
pub fn estimate(config: &Config, examples: &[Example]) -> Result<Vec<StreamEstimate>> {
    let price = |model: &str| config.prices.get(model);
    let target = config.models.target.as_str();
    let mut out = Vec::new();
    for planned in super::plan(config)? {
        match &planned {
            Planned::Mcq(m) => {
                let k = m.repeats();
                let mut t = Tally::new();
                for ex in examples {
                    let order = m.option_order(&ex.uuid);
                    let req = m.request(ex, &order, None)?;
                    t.add(chat_prompt_tokens(&req), req.max_tokens.map(u64::from), k);
                }
                let name = m.settings().method;
                out.push(t.into_estimate(
                    name,
                    target,
                    examples.len() * k,
                    String::new(),
                    price(target),
                ));
            }
            Planned::McqLogprob(m) => {
                let mut t = Tally::new();
                for ex in examples {
                    for choice in m.prompts(ex, 0)? {
                        let chars = choice.request.prompt.chars().count();
                        t.add(
                            (chars / 4) as u64,
                            Some(u64::from(choice.request.max_tokens)),
                            1,
                        );
                    }
                }
                let name = m.settings().method;
                out.push(t.into_estimate(
                    name,
                    target,
                    examples.len(),
                    "+1 echo probe".into(),
                    price(target),
                ));
            }
            Planned::Judge(j) => {
                let k = j.repeats();
                let (mut answers, mut judged) = (Tally::new(), Tally::new());
                for ex in examples {
                    // A row the protocol cannot send (its script would
                    // raise) costs nothing.
                    let Ok(req) = j.target_request(ex, None) else {
                        continue;
                    };
                    let answer_tokens = req.max_tokens.map(u64::from);
                    answers.add(chat_prompt_tokens(&req), answer_tokens, k);
                    let Ok(judge) = j.judge_request(ex, "") else {
                        continue;
                    };
                    // The judge reads the answer: at most its max_tokens
                    // (unbounded answers are counted at 0 in the prompt).
                    judged.add(
                        chat_prompt_tokens(&judge).saturating_add(answer_tokens.unwrap_or(0)),
                        judge.max_tokens.map(u64::from),
                        k,
                    );
                }
                let judge_model = config.judge_provider()?.0;
                out.push(answers.into_estimate(
                    j.target_settings().method,
                    target,
                    examples.len() * k,
                    String::new(),
                    price(target),
                ));
                out.push(judged.into_estimate(
                    j.judge_settings().method,
                    judge_model,
                    examples.len() * k,
                    "+1 repair per unparseable verdict".into(),
                    price(judge_model),
                ));
            }
        }
    }
    Ok(out)
}
