//! `mcq_logprob`: each of the four candidate answers is scored as a
//! continuation of the prompt (lm-eval-harness semantics) through
//! `/completions` with `echo`, `logprobs`, `max_tokens: 1`.
//!
//! Predictions: `acc` = argmax of summed log-probability; `acc_norm` = argmax
//! of sum / character length of the answer; also byte- and token-normalised
//! variants. Ties resolve to the first candidate (dataset order) and are
//! counted. Per-choice diagnostics are kept in the record and exported to
//! `debug_per_choice.jsonl`.

use super::logprob::{self, ContinuationScore, ScoreError};
use crate::audit::{AuditEvent, Severity};
use crate::chat_templates::{self, Family};
use crate::config::McqLogprobConfig;
use crate::dataset::Example;
use crate::engine::{Record, WorkItem};
use crate::labels::{Label, Prediction};
use crate::llm::{CompletionReply, CompletionRequest, Usage};
use crate::store::MethodSettings;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Method name.
pub const NAME: &str = "mcq_logprob";
/// Scoring variants, in report order.
pub const VARIANTS: [&str; 4] = ["acc", "acc_norm", "acc_bytes", "acc_tokens"];

/// The method, resolved once per run.
#[derive(Debug, Clone)]
pub struct McqLogprob {
    /// Config.
    pub config: McqLogprobConfig,
    /// Chat family used to build prompts.
    pub family: Family,
    /// Target model.
    pub model: String,
    /// Run seed.
    pub seed: u64,
}

/// One scored candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScore {
    /// Behaviour of the candidate.
    pub label: Label,
    /// Sum of log-probabilities (`-Infinity` when it could not be scored).
    #[serde(with = "crate::store::floats::finite_or_string")]
    pub logprob: f64,
    /// Continuation tokens.
    pub n_tokens: usize,
    /// Characters of the answer (without delimiter or moved whitespace).
    pub n_chars: usize,
    /// UTF-8 bytes of the answer.
    pub n_bytes: usize,
    /// A token crossed the context/continuation boundary.
    pub straddles_boundary: bool,
}

/// The checkpoint record of one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McqLogprobRecord {
    /// Checkpoint key.
    pub key: String,
    /// Example uuid.
    pub uuid: String,
    /// Gold label.
    pub gold: Label,
    /// Number of tools offered.
    pub n_tools: usize,
    /// The four candidates' scores, in dataset order.
    pub choices: Vec<ChoiceScore>,
    /// Prediction per variant (see [`VARIANTS`]).
    pub predictions: Vec<Prediction>,
    /// Whether each variant's argmax was tied.
    pub ties: Vec<bool>,
    /// Token usage of the four calls.
    pub usage: Usage,
    /// Audit events.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
}

impl Record for McqLogprobRecord {
    fn key(&self) -> &str {
        &self.key
    }
    fn audit_events(&self) -> &[AuditEvent] {
        &self.audit
    }
    fn audit_events_mut(&mut self) -> &mut Vec<AuditEvent> {
        &mut self.audit
    }
    fn usage(&self) -> Usage {
        self.usage
    }
}

impl McqLogprob {
    /// Resolves the family (explicit or by model name).
    pub fn new(config: &McqLogprobConfig, model: &str, seed: u64) -> McqLogprob {
        McqLogprob {
            family: config.template.unwrap_or_else(|| Family::for_model(model)),
            config: config.clone(),
            model: model.to_string(),
            seed,
        }
    }

    /// Namespace settings.
    pub fn settings(&self) -> MethodSettings {
        let value = json!({
            "method": NAME,
            "family": self.family,
            "delimiter": self.config.delimiter,
            "scoring_version": 1,
        });
        MethodSettings::new(NAME, value)
    }

    /// Work items: one per example.
    pub fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        super::one_item_per_example(examples)
    }

    /// For each candidate: (answer text, request, context length in chars).
    pub fn requests(&self, example: &Example) -> Vec<(String, CompletionRequest, usize)> {
        let context =
            chat_templates::render_context(self.family, &example.tools, &example.question);
        Label::ALL
            .iter()
            .map(|&label| {
                let answer = chat_templates::render_answer(
                    self.family,
                    label == Label::ToolCall,
                    example.answer(label),
                );
                let (ctx, cont) = logprob::split_prompt(&context, &self.config.delimiter, &answer);
                let req = CompletionRequest {
                    model: self.model.clone(),
                    prompt: format!("{ctx}{cont}"),
                    max_tokens: 1,
                    echo: true,
                    logprobs: Some(1),
                    temperature: 0.0,
                    seed: self.seed,
                };
                (answer, req, ctx.chars().count())
            })
            .collect()
    }

    /// Scores one example from its four replies. A reply that shows the
    /// endpoint cannot score prompts is returned as an error.
    pub fn record(
        &self,
        example: &Example,
        replies: &[(String, CompletionRequest, usize, CompletionReply)],
    ) -> Result<McqLogprobRecord, ScoreError> {
        let key = WorkItem::key_for(&example.uuid, None);
        let mut audit = Vec::new();
        let mut choices = Vec::new();
        let mut usage = Usage::default();
        for (i, (answer, req, ctx_chars, reply)) in replies.iter().enumerate() {
            let label = Label::ALL[i];
            usage = usage.saturating_add(reply.usage);
            let scored = logprob::score(
                &req.prompt,
                *ctx_chars,
                reply.logprobs.as_ref(),
                reply.usage.completion_tokens.max(1) as usize,
            );
            let s = match scored {
                Ok(s) => s,
                Err(e @ (ScoreError::NullLogprob { .. } | ScoreError::EmptyContinuation)) => {
                    audit.push(AuditEvent {
                        event_id: format!("{key}/logprob_anomaly/{label}"),
                        ..AuditEvent::new(
                            &key,
                            &example.uuid,
                            NAME,
                            "scoring",
                            "logprob_anomaly",
                            Severity::Warning,
                            json!({"choice": label, "error": e.to_string()}),
                        )
                    });
                    ContinuationScore {
                        logprob: f64::NEG_INFINITY,
                        n_tokens: 0,
                        straddles_boundary: false,
                    }
                }
                Err(fatal) => return Err(fatal),
            };
            if s.straddles_boundary {
                audit.push(AuditEvent {
                    event_id: format!("{key}/boundary_straddle/{label}"),
                    ..AuditEvent::new(
                        &key,
                        &example.uuid,
                        NAME,
                        "scoring",
                        "boundary_straddle",
                        Severity::Info,
                        json!({"choice": label}),
                    )
                });
            }
            choices.push(ChoiceScore {
                label,
                logprob: s.logprob,
                n_tokens: s.n_tokens,
                n_chars: answer.chars().count().max(1),
                n_bytes: answer.len().max(1),
                straddles_boundary: s.straddles_boundary,
            });
        }
        let variant_scores: [Vec<f64>; 4] = [
            choices.iter().map(|c| c.logprob).collect(),
            choices
                .iter()
                .map(|c| c.logprob / c.n_chars as f64)
                .collect(),
            choices
                .iter()
                .map(|c| c.logprob / c.n_bytes as f64)
                .collect(),
            choices
                .iter()
                .map(|c| c.logprob / c.n_tokens.max(1) as f64)
                .collect(),
        ];
        let mut predictions = Vec::new();
        let mut ties = Vec::new();
        for (v, scores) in variant_scores.iter().enumerate() {
            let all_neg_inf = scores.iter().all(|s| *s == f64::NEG_INFINITY);
            match logprob::argmax(scores) {
                Some((i, tie)) if !all_neg_inf => {
                    predictions.push(Prediction::Label(choices[i].label));
                    ties.push(tie);
                    if tie {
                        audit.push(AuditEvent {
                            event_id: format!("{key}/tie/{}", VARIANTS[v]),
                            ..AuditEvent::new(
                                &key,
                                &example.uuid,
                                NAME,
                                "scoring",
                                "tie",
                                Severity::Info,
                                json!({"variant": VARIANTS[v], "chosen": choices[i].label}),
                            )
                        });
                    }
                }
                _ => {
                    predictions.push(Prediction::Invalid);
                    ties.push(false);
                }
            }
        }
        Ok(McqLogprobRecord {
            key,
            uuid: example.uuid.clone(),
            gold: example.gold,
            n_tools: example.tools.len(),
            choices,
            predictions,
            ties,
            usage,
            audit,
        })
    }
}
