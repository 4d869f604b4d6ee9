//! `mcq_logprob`: each of the four candidate answers is scored as a
//! continuation of the prompt (lm-eval-harness semantics) through
//! `/completions` with `echo`, `logprobs`, `max_tokens: 1`.
//!
//! Predictions: `acc` = argmax of summed log-probability; `acc_norm` = argmax
//! of sum / character length of the answer; also byte- and token-normalised
//! variants. Ties resolve to the first candidate (dataset order) and are
//! counted. Per-choice diagnostics are kept in the record and exported to
//! `debug_per_choice.jsonl`.
//!
//! An example that cannot be scored — its prompt exceeds the server's
//! context, or one reply's echo cannot be aligned to its prompt — gets a
//! record with an [`Unscored`] reason instead of predictions: it is a result
//! (kept on resume), audited, counted as `unscored` and left out of every
//! metric. With `truncation = "left"` the context's oldest words are dropped
//! until the longest choice fits ([`cut_points`]); the record says so.

use super::logprob::{self, AlignError, ContinuationScore, ScoreError};
use super::{echo_probe, Bound, Concluding, Conclusion, Method, NotStarted, Plan, Scores};
use crate::audit::{AuditEvent, Severity};
use crate::chat_templates::{Family, ScoringTemplate};
use crate::config::{McqLogprobConfig, Truncation};
use crate::dataset::Example;
use crate::engine::WorkItem;
use crate::engine::{ItemError, ItemOutput, ItemSteps};
use crate::labels::{Label, Prediction};
use crate::llm::{CallError, CallItem, CallRecord, Client};
use crate::llm::{CompletionReply, CompletionRequest, Usage};
use crate::official_task::RenderError;
use crate::store::{write_json_atomic, MethodSettings, NamespaceDir, PredictionRow};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Method name.
pub const NAME: &str = "mcq_logprob";
/// Scoring variants, in report order.
pub const VARIANTS: [&str; 4] = ["acc", "acc_norm", "acc_bytes", "acc_tokens"];

/// The method, resolved once per run.
#[derive(Debug, Clone)]
pub struct McqLogprob {
    /// Config.
    pub config: McqLogprobConfig,
    /// The scored prompt.
    pub template: ScoringTemplate,
    /// Said once before scoring: the config named the template the way
    /// configs did before the official prompts (or, stored, not at all).
    pub template_note: Option<String>,
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
    #[serde(with = "crate::floats::finite_or_string")]
    pub logprob: f64,
    /// Continuation tokens.
    pub n_tokens: usize,
    /// Characters of the answer (without delimiter or moved whitespace).
    pub n_chars: usize,
    /// UTF-8 bytes of the answer.
    pub n_bytes: usize,
    /// A token crossed the context/continuation boundary.
    pub straddles_boundary: bool,
    /// Characters of the scored prompt before the continuation.
    #[serde(default)]
    pub context_chars: usize,
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
    /// Why the example could not be scored (then `predictions` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored: Option<Unscored>,
    /// The context was left-truncated to fit the server's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<TruncationRecord>,
}

/// Why an example has no prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnscoredReason {
    /// A prompt exceeds the server's context window (and was not, or could
    /// not be, truncated).
    ContextOverflow,
    /// A reply's echoed tokens cannot be placed on its prompt.
    Unalignable,
    /// A reply gave a continuation token a positive log-probability (a
    /// probability above 1).
    ImpossibleLogprob,
}

impl UnscoredReason {
    /// The name used in counts and audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            UnscoredReason::ContextOverflow => "context_overflow",
            UnscoredReason::Unalignable => "unalignable",
            UnscoredReason::ImpossibleLogprob => "impossible_logprob",
        }
    }
}

/// An example that could not be scored, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unscored {
    /// The kind of reason.
    pub reason: UnscoredReason,
    /// The candidate whose request or reply failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Label>,
    /// What happened (the server's message, or which token at which offset).
    pub detail: String,
}

/// A left-truncation applied to an example's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncationRecord {
    /// Characters dropped from the start of the context.
    pub dropped_chars: usize,
    /// Server-counted tokens of the longest choice's prompt before the cut.
    pub prompt_tokens_before: usize,
    /// The same after the cut.
    pub prompt_tokens_after: usize,
}

/// One candidate's scoring request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicePrompt {
    /// The candidate's behaviour.
    pub label: Label,
    /// The answer text in the family's syntax.
    pub answer: String,
    /// The `/completions` request (prompt = context + continuation).
    pub request: CompletionRequest,
    /// Length of the context in characters.
    pub context_chars: usize,
}

/// Byte positions in `context` where a left-truncation may cut: the start of
/// every word that follows whitespace, ascending (0 excluded).
pub fn cut_points(context: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev_ws = false;
    for (i, c) in context.char_indices() {
        if prev_ws && !c.is_whitespace() {
            out.push(i);
        }
        prev_ws = c.is_whitespace();
    }
    out
}

crate::engine::record_with_fields!(McqLogprobRecord);

impl McqLogprob {
    /// Resolves the template: the config's name, or (a stored config of a
    /// session created before the official prompts, whose `template` is
    /// null) w2c's family for the model name, as then.
    pub fn new(config: &McqLogprobConfig, model: &str, seed: u64) -> Result<McqLogprob> {
        let (template, template_note) = match &config.template {
            Some(name) => {
                let parsed = ScoringTemplate::parse(name)
                    .map_err(|e| anyhow::anyhow!("key `methods.mcq_logprob.template`: {e}"))?;
                let note = match (parsed.legacy_name, parsed.template) {
                    (true, ScoringTemplate::W2c(f)) => Some(format!(
                        "template {name:?} is w2c's own family `{}` (its name before the official prompts); the official task's prompt for it is `{}`",
                        parsed.template.name(),
                        f.official()
                    )),
                    _ => None,
                };
                (parsed.template, note)
            }
            None => {
                let f = Family::for_model(model);
                let t = ScoringTemplate::W2c(f);
                (t, Some(format!(
                    "this session was created before the official prompts and its stored config names no template: it keeps scoring `{}` (w2c's family for the model name), as then; name a template (e.g. `when2call`) in the config and `w2c run` it to score the official prompt in a new namespace",
                    t.name()
                )))
            }
        };
        Ok(McqLogprob {
            template,
            template_note,
            config: config.clone(),
            model: model.to_string(),
            seed,
        })
    }

    /// The example's context as the template renders it (trailing
    /// whitespace included; [`Self::prompts`] moves it as lm-eval does).
    pub fn context(&self, example: &Example) -> Result<String, RenderError> {
        self.template.render(example).map(|p| p.context)
    }

    /// The four scoring requests, with the first `cut` bytes of the context
    /// (a [`cut_points`] position, or 0) dropped: per choice, lm-eval's
    /// `_encode_pair` split of (context, delimiter + choice).
    pub fn prompts(&self, example: &Example, cut: usize) -> Result<Vec<ChoicePrompt>, RenderError> {
        let rendered = self.template.render(example)?;
        let context = rendered.context.get(cut..).unwrap_or(&rendered.context);
        Ok(Label::ALL
            .iter()
            .zip(rendered.choices.iter())
            .map(|(&label, answer)| {
                let (ctx, cont) = logprob::split_prompt(context, &self.config.delimiter, answer);
                ChoicePrompt {
                    label,
                    answer: answer.clone(),
                    request: self.request(format!("{ctx}{cont}")),
                    context_chars: ctx.chars().count(),
                }
            })
            .collect())
    }

    /// A scoring request for one prompt string.
    pub fn request(&self, prompt: String) -> CompletionRequest {
        CompletionRequest {
            model: self.model.clone(),
            prompt,
            max_tokens: 1,
            echo: true,
            logprobs: Some(1),
            temperature: 0.0,
            seed: self.seed,
        }
    }

    /// Whether over-long contexts are left-truncated, and to how many prompt
    /// tokens (the server's window minus the one generated token).
    pub fn truncation_limit(&self) -> Option<usize> {
        match (self.config.truncation, self.config.max_context_tokens) {
            (Truncation::Left, Some(n)) => Some(n.saturating_sub(1) as usize),
            _ => None,
        }
    }

    /// The record of an example that cannot be scored.
    pub fn unscored(
        &self,
        example: &Example,
        unscored: Unscored,
        usage: Usage,
        truncation: Option<TruncationRecord>,
    ) -> McqLogprobRecord {
        let key = WorkItem::key_for(&example.uuid, None);
        let mut audit = truncation
            .iter()
            .map(|t| truncation_event(&key, &example.uuid, t))
            .collect::<Vec<_>>();
        audit.push(AuditEvent::new(
            &key,
            &example.uuid,
            NAME,
            "scoring",
            "unscored",
            Severity::Warning,
            json!({"reason": unscored.reason.as_str(), "choice": unscored.choice, "detail": unscored.detail}),
        ));
        McqLogprobRecord {
            key,
            uuid: example.uuid.clone(),
            gold: example.gold,
            n_tools: example.tools.len(),
            choices: Vec::new(),
            predictions: Vec::new(),
            ties: Vec::new(),
            usage,
            audit,
            unscored: Some(unscored),
            truncation,
        }
    }

    /// What one candidate's reply gives. A reply that shows the endpoint
    /// cannot score prompts at all (no echo, no logprobs) is an error.
    pub fn choice_outcome(
        &self,
        p: &ChoicePrompt,
        reply: &CompletionReply,
    ) -> Result<ChoiceOutcome, AlignError> {
        // Exactly the generated tokens are trimmed: none when the model's
        // next token was end-of-generation.
        let scored = logprob::score(
            &p.request.prompt,
            p.context_chars,
            reply.logprobs.as_ref(),
            usize::try_from(reply.usage.completion_tokens).unwrap_or(usize::MAX),
        );
        Ok(match scored {
            Ok(score) => ChoiceOutcome::Scored { score },
            Err(ScoreError::Align(e)) if e.is_endpoint_level() => return Err(e),
            Err(ScoreError::Align(e)) => ChoiceOutcome::Unscored {
                reason: UnscoredReason::Unalignable,
                detail: e.to_string(),
            },
            Err(e @ ScoreError::ImpossibleLogprob { .. }) => ChoiceOutcome::Unscored {
                reason: UnscoredReason::ImpossibleLogprob,
                detail: e.to_string(),
            },
            Err(e @ (ScoreError::NullLogprob { .. } | ScoreError::EmptyContinuation)) => {
                ChoiceOutcome::Anomaly {
                    error: e.to_string(),
                }
            }
        })
    }

    /// Scores one example from its four replies (see [`Self::choice_outcome`]
    /// and [`Self::assemble`]); the runner goes through those two, call by
    /// call, and this serves the unit tests.
    #[cfg(test)]
    pub fn record(
        &self,
        example: &Example,
        replies: &[(ChoicePrompt, CompletionReply)],
        truncation: Option<TruncationRecord>,
    ) -> Result<McqLogprobRecord, AlignError> {
        let mut outcomes = Vec::new();
        for (p, reply) in replies {
            outcomes.push(Choice {
                label: p.label,
                answer: p.answer.clone(),
                context_chars: p.context_chars,
                usage: reply.usage,
                outcome: self.choice_outcome(p, reply)?,
            });
        }
        Ok(self.assemble(example, &outcomes, truncation))
    }

    /// The record of an example from its candidates' outcomes, in dataset
    /// order: unscored at the first candidate that makes it so (the usage
    /// of every candidate counted), else scored.
    pub fn assemble(
        &self,
        example: &Example,
        outcomes: &[Choice],
        truncation: Option<TruncationRecord>,
    ) -> McqLogprobRecord {
        let key = WorkItem::key_for(&example.uuid, None);
        let usage = outcomes
            .iter()
            .fold(Usage::default(), |u, c| u.saturating_add(c.usage));
        let unscored = outcomes.iter().find_map(|c| match &c.outcome {
            ChoiceOutcome::Unscored { reason, detail } => Some(Unscored {
                reason: *reason,
                choice: Some(c.label),
                detail: detail.clone(),
            }),
            _ => None,
        });
        if let Some(unscored) = unscored {
            return self.unscored(example, unscored, usage, truncation);
        }
        let mut audit: Vec<AuditEvent> = truncation
            .iter()
            .map(|t| truncation_event(&key, &example.uuid, t))
            .collect();
        let mut choices = Vec::new();
        for c in outcomes {
            let label = c.label;
            let s = match &c.outcome {
                ChoiceOutcome::Scored { score } => score.clone(),
                ChoiceOutcome::Anomaly { error } => {
                    audit.push(scoring_event(
                        &key,
                        &example.uuid,
                        ("logprob_anomaly", &label.to_string()),
                        Severity::Warning,
                        json!({"choice": label, "error": error}),
                    ));
                    ContinuationScore {
                        logprob: f64::NEG_INFINITY,
                        n_tokens: 0,
                        straddles_boundary: false,
                    }
                }
                // Handled above.
                ChoiceOutcome::Unscored { .. } => continue,
            };
            if s.straddles_boundary {
                audit.push(scoring_event(
                    &key,
                    &example.uuid,
                    ("boundary_straddle", &label.to_string()),
                    Severity::Info,
                    json!({"choice": label}),
                ));
            }
            choices.push(ChoiceScore {
                label,
                logprob: s.logprob,
                n_tokens: s.n_tokens,
                n_chars: c.answer.chars().count().max(1),
                n_bytes: c.answer.len().max(1),
                straddles_boundary: s.straddles_boundary,
                context_chars: c.context_chars,
            });
        }
        let (predictions, ties) = predict(&choices, &key, &example.uuid, &mut audit);
        McqLogprobRecord {
            key,
            uuid: example.uuid.clone(),
            gold: example.gold,
            n_tools: example.tools.len(),
            choices,
            predictions,
            ties,
            usage,
            audit,
            unscored: None,
            truncation,
        }
    }
}

/// What one candidate's reply gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChoiceOutcome {
    /// Its continuation's score.
    Scored {
        /// The score.
        score: ContinuationScore,
    },
    /// It could not be scored but the example still is: the candidate
    /// counts as −∞ and a `logprob_anomaly` event says why.
    Anomaly {
        /// What was wrong.
        error: String,
    },
    /// It makes the example unscored.
    Unscored {
        /// Why.
        reason: UnscoredReason,
        /// What happened.
        detail: String,
    },
}

/// One candidate of an example, answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The candidate's behaviour.
    pub label: Label,
    /// Its answer text.
    pub answer: String,
    /// Characters of its prompt before the continuation.
    pub context_chars: usize,
    /// Tokens its call used.
    pub usage: Usage,
    /// What its reply gave.
    pub outcome: ChoiceOutcome,
}

/// Each variant's prediction (argmax of its scores; `invalid` when every
/// choice scored −∞) and whether it was a tie; ties are audited.
fn predict(
    choices: &[ChoiceScore],
    key: &str,
    uuid: &str,
    audit: &mut Vec<AuditEvent>,
) -> (Vec<Prediction>, Vec<bool>) {
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
                    audit.push(scoring_event(
                        key,
                        uuid,
                        ("tie", VARIANTS[v]),
                        Severity::Info,
                        json!({"variant": VARIANTS[v], "chosen": choices[i].label}),
                    ));
                }
            }
            _ => {
                predictions.push(Prediction::Invalid);
                ties.push(false);
            }
        }
    }
    (predictions, ties)
}

/// An audit event of the scoring stage, `event` with an id suffix
/// (`<key>/<event>/<suffix>`, one per choice or variant).
fn scoring_event(
    key: &str,
    uuid: &str,
    (event, suffix): (&str, &str),
    severity: Severity,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        event_id: format!("{key}/{event}/{suffix}"),
        ..AuditEvent::new(key, uuid, NAME, "scoring", event, severity, detail)
    }
}

impl Plan for McqLogprob {
    /// Namespace settings. An official template is recorded by name and
    /// sha256; w2c's families keep the settings they always had (`family`),
    /// so sessions scored with them before resume in the same namespace.
    fn settings(&self) -> MethodSettings {
        let value = match self.template {
            ScoringTemplate::W2c(family) => json!({
                "method": NAME,
                "family": family,
                "delimiter": self.config.delimiter,
                "truncation": self.config.truncation,
                "max_context_tokens": self.config.max_context_tokens,
                "scoring_version": 2,
            }),
            ScoringTemplate::Official(_) => json!({
                "method": NAME,
                "template": self.template.name(),
                "template_sha256": self.template.sha256(),
                "delimiter": self.config.delimiter,
                "truncation": self.config.truncation,
                "max_context_tokens": self.config.max_context_tokens,
                "scoring_version": 2,
            }),
        };
        MethodSettings::new(NAME, value)
    }

    /// Work items: one per example.
    fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        super::one_item_per_example(examples)
    }
}

fn truncation_event(key: &str, uuid: &str, t: &TruncationRecord) -> AuditEvent {
    AuditEvent::new(
        key,
        uuid,
        NAME,
        "prompt",
        "context_truncated",
        Severity::Info,
        json!(t),
    )
}

/// File in the namespace's checkpoint directory holding the probe's verdict.
pub const PROBE_FILE: &str = "probe.json";

/// `mcq_logprob` as the runner runs it, bound to the target model. Before
/// the items it probes the endpoint; each item is the four scoring calls
/// (after a truncation plan when enabled).
pub type McqLogprobRun = Bound<McqLogprob>;

impl Method for Bound<McqLogprob> {
    type Record = McqLogprobRecord;
    type Plan = McqLogprob;

    fn bound(&self) -> &Bound<McqLogprob> {
        self
    }

    async fn before_items(&self, ns: &NamespaceDir, examples: &[Example]) -> Result<Vec<String>> {
        super::check_renders(&ns.name, self.plan.template, examples)?;
        let mut notes: Vec<String> = self.plan.template_note.iter().cloned().collect();
        notes.extend(probe(ns, &self.plan, &self.caller.client).await?);
        Ok(notes)
    }

    async fn work(
        &self,
        ns: &str,
        _item: WorkItem,
        example: &Example,
        steps: ItemSteps,
    ) -> ItemOutput<McqLogprobRecord> {
        score_example(&self.caller.client, &self.plan, example, ns, &steps).await
    }

    /// Metrics per variant over the scored examples; unscored ones are
    /// counted apart and listed with their reason.
    fn conclude(&self, ctx: &Concluding<'_>, records: &[&McqLogprobRecord]) -> Result<Conclusion> {
        // Unscored examples are results but not predictions: every metric
        // (n_total included) is over the scored ones.
        let scored: Vec<&McqLogprobRecord> = records
            .iter()
            .copied()
            .filter(|r| r.unscored.is_none())
            .collect();
        let mut variants = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (v, name) in VARIANTS.iter().enumerate() {
            let m = super::score(
                &scored
                    .iter()
                    .map(|r| (r.gold, r.predictions[v], r.n_tools))
                    .collect::<Vec<_>>(),
            );
            variants.insert(name.to_string(), m);
            counts.insert(
                format!("ties_{name}"),
                scored.iter().filter(|r| r.ties[v]).count(),
            );
        }
        counts.insert("unscored".into(), records.len() - scored.len());
        for reason in [
            UnscoredReason::ContextOverflow,
            UnscoredReason::Unalignable,
            UnscoredReason::ImpossibleLogprob,
        ] {
            let n = records
                .iter()
                .filter(|r| r.unscored.as_ref().is_some_and(|u| u.reason == reason))
                .count();
            counts.insert(format!("unscored_{}", reason.as_str()), n);
        }
        counts.insert(
            "truncated".into(),
            records.iter().filter(|r| r.truncation.is_some()).count(),
        );
        let mut notes = Vec::new();
        if counts["unscored"] > 0 {
            let impossible = match counts["unscored_impossible_logprob"] {
                0 => String::new(),
                n => format!(", {n} impossible logprob"),
            };
            notes.push(format!(
            "{} of {} examples are unscored ({} context overflow, {} unalignable echo{impossible}) and left out of the metrics; see audit_fallbacks.jsonl",
            counts["unscored"], records.len(), counts["unscored_context_overflow"], counts["unscored_unalignable"]
        ));
        }
        let predictions = records
            .iter()
            .map(|r| match &r.unscored {
                Some(u) => PredictionRow::new(&r.uuid, r.gold, r.n_tools, None)
                    .with(json!({"unscored": u, "truncation": r.truncation})),
                None => PredictionRow::new(&r.uuid, r.gold, r.n_tools, Some(r.predictions[0]))
                    .with(json!({
                        "prediction_acc_norm": r.predictions[1],
                        "prediction_acc_bytes": r.predictions[2],
                        "prediction_acc_tokens": r.predictions[3],
                        "ties": r.ties,
                        "scores": r.choices.iter().map(|c| c.logprob).map(non_finite_as_text).collect::<Vec<_>>(),
                        "truncation": r.truncation,
                    })),
            })
            .collect();
        let mut debug = Vec::new();
        for r in records {
            for c in &r.choices {
                serde_json::to_writer(
                    &mut debug,
                    &json!({"uuid": r.uuid, "gold": r.gold, "choice": c}),
                )?;
                debug.push(b'\n');
            }
        }
        let _ = ctx;
        Ok(Conclusion {
            scores: Some(Scores {
                n_examples: records.len(),
                metrics: variants["acc"].clone(),
                counts,
                stability: None,
                variants: Some(variants),
                official_judge: None,
                predictions,
                consistencies: None,
            }),
            extra: vec![("debug_per_choice.jsonl", debug)],
            notes,
        })
    }
}

/// A score as JSON: a number, or `"-Infinity"` for a candidate that could
/// not be scored (the store's spelling of non-finite floats).
fn non_finite_as_text(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(crate::floats::spelled(v))
    }
}

/// Sends the capability probe, records and reports its verdict, and stops
/// the method when the endpoint cannot score prompts (or truncation is on
/// and the server cannot tokenize).
async fn probe(ns: &NamespaceDir, method: &McqLogprob, client: &Client) -> Result<Vec<String>> {
    let dir = ns;
    let ns = dir.name.as_str();
    let endpoint = client.endpoint("completions");
    let prompt = echo_probe::prompt(method.template);
    let reply = match client
        .complete(&method.request(prompt.clone()))
        .await
        .result
    {
        Ok(reply) => reply,
        // Like an item's request: retried, then the namespace is incomplete.
        Err(e @ CallError::Transient { .. }) => {
            return Err(NotStarted(format!("the capability probe request failed: {e}")).into())
        }
        Err(e) => bail!("{ns}: the capability probe request failed: {e}"),
    };
    let verdict = echo_probe::verdict(&prompt, &reply);
    let message = verdict.message(method.template);
    let tokenize = match method.truncation_limit() {
        Some(_) if verdict.scorable() => Some(
            client
                .count_tokens(&method.model, &prompt)
                .await
                .map(|(_, url)| url)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{ns}: `truncation = \"left\"` needs the server's tokenizer: {e}"
                    )
                })?,
        ),
        _ => None,
    };
    write_json_atomic(
        &dir.checkpoint(PROBE_FILE),
        &json!({
            "at": crate::store::session::now_utc(),
            "endpoint": endpoint,
            "template": method.template.name(),
            "template_sha256": method.template.sha256(),
            "result": verdict,
            "message": message,
            "tokenize_endpoint": tokenize,
        }),
    )?;
    if !verdict.scorable() {
        bail!("{endpoint}: the endpoint cannot score prompts for mcq_logprob: {message}");
    }
    Ok(vec![format!("probe: {message}")])
}

/// A row the template cannot render, as a call that cannot succeed (the
/// method checks every row before scoring, so this is not expected).
fn render_failed(e: RenderError) -> CallError {
    CallError::Fatal {
        message: e.to_string(),
        status: None,
    }
}

/// Where to cut an example's context.
enum ContextCut {
    /// Every choice fits as it is.
    Fits,
    /// Cut this many bytes off the context's start.
    Cut(usize, TruncationRecord),
    /// Even the shortest context is too long.
    Impossible(String),
}

/// Finds the smallest left-cut (at a word start) after which the example's
/// longest prompt fits `limit` server tokens: a binary search over the
/// context's [`cut_points`], counting with the server's tokenizer.
async fn plan_cut(
    client: &Client,
    method: &McqLogprob,
    ex: &Example,
    limit: usize,
) -> Result<ContextCut, CallError> {
    let prompts = method.prompts(ex, 0).map_err(render_failed)?;
    let mut longest = (0, 0);
    for (i, p) in prompts.iter().enumerate() {
        let (n, _) = client
            .count_tokens(&method.model, &p.request.prompt)
            .await?;
        if n > longest.0 {
            longest = (n, i);
        }
    }
    if longest.0 <= limit {
        return Ok(ContextCut::Fits);
    }
    let context = method.context(ex).map_err(render_failed)?;
    let points = cut_points(&context);
    let (mut lo, mut hi) = (0, points.len());
    let mut best = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let prompts = method.prompts(ex, points[mid]).map_err(render_failed)?;
        let prompt = &prompts[longest.1].request.prompt;
        let (n, _) = client.count_tokens(&method.model, prompt).await?;
        if n <= limit {
            best = Some((points[mid], n));
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(match best {
        Some((cut, after)) => ContextCut::Cut(
            cut,
            TruncationRecord {
                dropped_chars: context[..cut].chars().count(),
                prompt_tokens_before: longest.0,
                prompt_tokens_after: after,
            },
        ),
        None => ContextCut::Impossible(format!(
            "the longest choice's prompt is {} tokens and stays over the limit of {limit} (the server's window minus the generated token) even with only the context's last word left",
            longest.0
        )),
    })
}

/// A finished step of an example, saved in `.steps.jsonl` until the example
/// has a record: where its context is cut, or one candidate's call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum Step {
    /// The truncation plan (its tokenize calls are not sent again).
    Cut {
        /// Bytes cut off the context's start.
        cut: usize,
        /// What the cut did.
        truncation: Option<TruncationRecord>,
    },
    /// One candidate's call and what its reply gave. The call is logged
    /// without its request body (rebuilt from the example, and checked
    /// against `request_sha256` before the step is used).
    Choice {
        /// The candidate.
        label: Label,
        /// What the reply gave.
        outcome: ChoiceOutcome,
        /// The call, for `llm_calls.jsonl`.
        call: Box<CallRecord>,
    },
}

/// An item's output that failed with `error` (its calls are logged as they
/// are made).
fn failed(error: ItemError) -> ItemOutput<McqLogprobRecord> {
    ItemOutput {
        calls: Vec::new(),
        result: Err(error),
    }
}

/// Why a finished call could not be logged or saved (an I/O error on the
/// session directory: the method stops).
fn not_saved(e: anyhow::Error) -> ItemError {
    ItemError {
        message: format!("cannot save a finished call: {e:#}"),
        fatal: true,
    }
}

/// The four scoring calls of one example (after a truncation plan, when
/// enabled). Each call is logged as it is made and, once its reply is read,
/// saved as a step; calls an earlier process saved for the very same
/// requests are not sent (nor logged) again. A context overflow, an
/// unalignable echo or an impossible logprob makes the example unscored; an
/// endpoint that cannot score at all stops the method.
async fn score_example(
    client: &Client,
    method: &McqLogprob,
    ex: &Example,
    ns: &str,
    steps: &ItemSteps,
) -> ItemOutput<McqLogprobRecord> {
    let saved: Vec<Step> = steps
        .done()
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    let saved_cut = saved.iter().find_map(|s| match s {
        Step::Cut { cut, truncation } => Some((*cut, truncation.clone())),
        Step::Choice { .. } => None,
    });
    let (cut, truncation) = match (saved_cut, method.truncation_limit()) {
        (_, None) => (0, None),
        (Some(saved), Some(_)) => saved,
        (None, Some(limit)) => {
            let planned = match plan_cut(client, method, ex, limit).await {
                Ok(ContextCut::Fits) => (0, None),
                Ok(ContextCut::Cut(cut, record)) => (cut, Some(record)),
                Ok(ContextCut::Impossible(detail)) => {
                    let unscored = Unscored {
                        reason: UnscoredReason::ContextOverflow,
                        choice: None,
                        detail,
                    };
                    return ItemOutput {
                        calls: Vec::new(),
                        result: Ok(method.unscored(ex, unscored, Usage::default(), None)),
                    };
                }
                Err(e) => return failed(ItemError::from_call(&e)),
            };
            let step = Step::Cut {
                cut: planned.0,
                truncation: planned.1.clone(),
            };
            if let Err(e) = steps.save(&step) {
                return failed(not_saved(e));
            }
            planned
        }
    };
    let prompts = match method.prompts(ex, cut) {
        Ok(p) => p,
        Err(e) => return failed(ItemError::from_call(&render_failed(e))),
    };
    // Every call of the example, restored or made, for its audit events.
    let mut calls: Vec<CallRecord> = Vec::new();
    let mut outcomes = Vec::new();
    for p in prompts {
        // A step saved by an interrupted run stands for this call when its
        // request is this one (hashed only when there are saved steps: the
        // call record hashes what it sends).
        let restored = (!saved.is_empty())
            .then(|| {
                let body = p.request.body();
                let sha = crate::fingerprint::sha256_hex(
                    crate::fingerprint::canonical_json(&body).as_bytes(),
                );
                saved.iter().find_map(|s| match s {
                    Step::Choice {
                        label,
                        outcome,
                        call,
                    } if *label == p.label && call.request_sha256 == sha => {
                        Some((outcome.clone(), call.clone(), body.clone()))
                    }
                    _ => None,
                })
            })
            .flatten();
        let (outcome, usage) = match restored {
            Some((outcome, mut call, body)) => {
                call.request = body;
                let usage = call.usage;
                calls.push(*call);
                (outcome, usage)
            }
            None => {
                let reply = client.complete(&p.request).await;
                let call_item = CallItem {
                    method: ns,
                    uuid: &ex.uuid,
                    repeat: None,
                    role: "score",
                };
                let call = CallRecord::completion(client, call_item, &p.request, &reply);
                if let Err(e) = steps.log_call(&call) {
                    return failed(not_saved(e));
                }
                let (outcome, usage) = match reply.result {
                    Ok(reply) => match method.choice_outcome(&p, &reply) {
                        Ok(outcome) => (outcome, reply.usage),
                        Err(e) => {
                            return failed(ItemError {
                                message: format!(
                                    "{}: the endpoint cannot score prompts for mcq_logprob: {e}",
                                    client.endpoint("completions")
                                ),
                                fatal: true,
                            })
                        }
                    },
                    Err(CallError::ContextOverflow { message, .. }) => (
                        ChoiceOutcome::Unscored {
                            reason: UnscoredReason::ContextOverflow,
                            detail: message,
                        },
                        Usage::default(),
                    ),
                    Err(e) => return failed(ItemError::from_call(&e)),
                };
                let mut stored = call.clone();
                stored.request = serde_json::Value::Null;
                let step = Step::Choice {
                    label: p.label,
                    outcome: outcome.clone(),
                    call: Box::new(stored),
                };
                calls.push(call);
                if let Err(e) = steps.save(&step) {
                    return failed(not_saved(e));
                }
                (outcome, usage)
            }
        };
        let stop = matches!(outcome, ChoiceOutcome::Unscored { .. });
        outcomes.push(Choice {
            label: p.label,
            answer: p.answer.clone(),
            context_chars: p.context_chars,
            usage,
            outcome,
        });
        // The example is unscored: the other candidates are not asked.
        if stop {
            break;
        }
    }
    let mut record = method.assemble(ex, &outcomes, truncation);
    crate::engine::add_call_audit(&record.key.clone(), &calls, &mut record.audit);
    // Logged already, call by call.
    ItemOutput {
        calls: Vec::new(),
        result: Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::llama_echo::{self, Piece};
    use crate::official_task::OfficialVariant;

    fn example() -> Example {
        Example {
            uuid: "u1".into(),
            question: "天气如何？".into(),
            gold: Label::RequestForInfo,
            answers: [
                "好的。".into(),
                r#"{"name": "w", "arguments": {}}"#.into(),
                "Which city?".into(),
                "Sorry, I can't.".into(),
            ],
            tools: vec![r#"{"name": "w", "parameters": {}}"#.into()],
            source: "test".into(),
        }
    }

    fn method(template: ScoringTemplate) -> McqLogprob {
        let config = McqLogprobConfig {
            template: Some(template.name()),
            ..McqLogprobConfig::default()
        };
        McqLogprob::new(&config, "m", 1).unwrap()
    }

    const W2C_DEFAULT: ScoringTemplate = ScoringTemplate::W2c(Family::Default);
    const W2C_HERMES: ScoringTemplate = ScoringTemplate::W2c(Family::Hermes);
    const OFFICIAL: ScoringTemplate = ScoringTemplate::Official(OfficialVariant::When2call);
    const OFFICIAL_HERMES: ScoringTemplate = ScoringTemplate::Official(OfficialVariant::Hermes);

    /// A llama-cpp-python style reply: token i scores -(i + 1) / 100;
    /// nothing generated after a prompt ending in "." or "。".
    fn reply(prompt: &str) -> CompletionReply {
        let eog = prompt.ends_with('.') || prompt.ends_with('。');
        let gen = if eog {
            vec![]
        } else {
            vec![Piece::bytes(b" the")]
        };
        let (lp, (p, c)) = llama_echo::echo(&llama_echo::tokenize(prompt), &gen, |i| {
            -((i + 1) as f64) / 100.0
        });
        CompletionReply {
            text: prompt.to_string(),
            logprobs: Some(lp),
            usage: Usage {
                prompt_tokens: p,
                completion_tokens: c,
            },
            http_status: 200,
            usage_anomaly: None,
        }
    }

    // Defect 3 (issue 10): `completion_tokens.max(1)` dropped a real prompt
    // token when the model's next token was end-of-generation.
    #[test]
    fn end_of_generation_replies_are_trimmed_by_their_usage() {
        for family in [W2C_DEFAULT, W2C_HERMES, OFFICIAL, OFFICIAL_HERMES] {
            let m = method(family);
            let ex = example();
            let replies: Vec<_> = m
                .prompts(&ex, 0)
                .unwrap()
                .into_iter()
                .map(|p| {
                    let r = reply(&p.request.prompt);
                    (p, r)
                })
                .collect();
            assert_eq!(replies[0].1.usage.completion_tokens, 0, "{family:?}");
            let rec = m.record(&ex, &replies, None).unwrap();
            assert!(rec.unscored.is_none(), "{family:?}: {:?}", rec.unscored);
            for ((p, _), c) in replies.iter().zip(&rec.choices) {
                // lm-eval's split with the same toy tokenizer.
                let prompt = &p.request.prompt;
                let ctx: String = prompt.chars().take(p.context_chars).collect();
                let (n_ctx, n_all) = (
                    llama_echo::tokenize(&ctx).len(),
                    llama_echo::tokenize(prompt).len(),
                );
                let want: f64 = (n_ctx..n_all).map(|i| -((i + 1) as f64) / 100.0).sum();
                assert_eq!(c.n_tokens, n_all - n_ctx, "{family:?} {}", c.label);
                assert!((c.logprob - want).abs() < 1e-9, "{family:?} {}", c.label);
            }
        }
    }

    #[test]
    fn an_unalignable_reply_makes_the_example_unscored_and_no_echo_is_an_error() {
        let m = method(W2C_DEFAULT);
        let ex = example();
        let mut replies: Vec<_> = m
            .prompts(&ex, 0)
            .unwrap()
            .into_iter()
            .map(|p| {
                let r = reply(&p.request.prompt);
                (p, r)
            })
            .collect();
        if let Some(lp) = replies[2].1.logprobs.as_mut() {
            lp.tokens[5] = "zzz".into();
        }
        let rec = m.record(&ex, &replies, None).unwrap();
        let u = rec.unscored.as_ref().unwrap();
        assert_eq!(u.reason, UnscoredReason::Unalignable);
        assert_eq!(u.choice, Some(Label::RequestForInfo));
        assert!(u.detail.contains("token 5"), "{}", u.detail);
        assert!(rec.predictions.is_empty());
        assert!(rec.audit.iter().any(|e| e.event_type == "unscored"));
        replies[2].1.logprobs = None;
        assert_eq!(m.record(&ex, &replies, None), Err(AlignError::NoLogprobs));
    }

    #[test]
    fn cuts_fall_at_word_starts_and_keep_the_continuation() {
        assert_eq!(cut_points("ab cd\n\nef"), vec![3, 7]);
        let m = method(W2C_DEFAULT);
        let ex = example();
        let full = m.prompts(&ex, 0).unwrap();
        let context = m.context(&ex).unwrap();
        let cut = cut_points(&context)[3];
        let cut_prompts = m.prompts(&ex, cut).unwrap();
        for (a, b) in full.iter().zip(&cut_prompts) {
            assert_eq!(
                a.context_chars - b.context_chars,
                context[..cut].chars().count()
            );
            assert!(a.request.prompt.ends_with(&b.request.prompt));
        }
    }
}
