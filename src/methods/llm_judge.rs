//! `llm_judge`: the target model answers with the tools offered; a judge model
//! classifies the answer into the four behaviours and returns strict JSON.
//!
//! Two checkpoint streams: target answers (namespace `llm_judge.target`, keyed
//! by the target settings) and judge decisions (namespace `llm_judge`, keyed by
//! the judge settings *and* the target settings hash). A resume never asks the
//! target again for an answer it has; a new judge model or judge prompt gets a
//! new judge namespace that re-judges the stored answers.
//!
//! Judge replies are parsed robustly (code fences, surrounding prose, key and
//! value casing, a few label aliases); on failure one repair request is sent;
//! still failing, the prediction is `invalid` (counted wrong, audited). An
//! empty target reply (no content and no tool calls — e.g. a reasoning model
//! that spent its budget) is audited and is an `invalid` prediction without a
//! judge call.

use super::{Bound, Concluding, Conclusion, Method, Plan, Scores};
use crate::audit::AuditSummary;
use crate::audit::{AuditEvent, Severity};
use crate::config::{LlmJudgeConfig, ToolsMode};
use crate::dataset::Example;
use crate::engine::WorkItem;
use crate::engine::{ItemError, ItemOutput};
use crate::labels::{Label, Prediction};
use crate::llm::{CallItem, CallRecord, Client};
use crate::llm::{ChatRequest, Message, Usage};
use crate::prompts::{self, Template};
use crate::store::{MethodSettings, PredictionRow, UsageTotals};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Method name (the judge namespace).
pub const NAME: &str = "llm_judge";
/// Name of the target-answer namespace.
pub const TARGET_NAME: &str = "llm_judge.target";
/// Version of the judge reply parser; part of the judge settings hash.
pub const PARSER_VERSION: u32 = 1;

/// Everything the method needs, resolved once per run.
#[derive(Debug, Clone)]
pub struct LlmJudge {
    /// The method config.
    pub config: LlmJudgeConfig,
    /// Target prompt template.
    pub target_template: Template,
    /// Judge prompt template.
    pub judge_template: Template,
    /// Target model.
    pub target_model: String,
    /// Judge model.
    pub judge_model: String,
    /// Run seed.
    pub seed: u64,
    /// Set for `stability_llm_judge`: K target samples per example at the
    /// sweep temperature, each judged.
    pub sweep: Option<super::Sweep>,
}

/// A stored target answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Checkpoint key.
    pub key: String,
    /// Example uuid.
    pub uuid: String,
    /// Repeat index, for sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Assistant text (may be empty).
    pub text: String,
    /// Native tool calls, when the reply had them.
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// Whether the reply carried reasoning text.
    #[serde(default)]
    pub has_reasoning: bool,
    /// `finish_reason`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Token usage.
    pub usage: Usage,
    /// Audit events.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
}

crate::engine::record_with_fields!(TargetRecord);

impl TargetRecord {
    /// What the judge sees: the text, or the native tool calls as JSON when
    /// the text is empty; `None` when the reply was empty.
    pub fn judged_response(&self) -> Option<String> {
        if !self.text.trim().is_empty() {
            return Some(self.text.clone());
        }
        self.tool_calls.as_ref().map(|t| t.to_string())
    }
}

/// How the judge's decision was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeStatus {
    /// The first reply parsed.
    Parsed,
    /// The repair reply parsed.
    Repaired,
    /// Neither reply parsed: `invalid`.
    Invalid,
    /// The target reply was empty: `invalid`, no judge call.
    EmptyTarget,
}

/// A stored judge decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRecord {
    /// Checkpoint key.
    pub key: String,
    /// Example uuid.
    pub uuid: String,
    /// Repeat index, for sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Gold label.
    pub gold: Label,
    /// Predicted label or `invalid`.
    pub prediction: Prediction,
    /// Number of tools offered.
    pub n_tools: usize,
    /// sha256 of the judged target text (links the decision to its answer).
    pub target_sha256: String,
    /// How the decision was obtained.
    pub status: JudgeStatus,
    /// First judge reply.
    pub judge_raw: Option<String>,
    /// Repair reply, when a repair was needed.
    pub judge_raw_repair: Option<String>,
    /// Judge token usage (both calls).
    pub usage: Usage,
    /// Audit events.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
}

crate::engine::record_with_fields!(JudgeRecord);

impl LlmJudge {
    /// Resolves the method: loads both templates.
    pub fn new(
        config: &LlmJudgeConfig,
        target_model: &str,
        judge_model: &str,
        seed: u64,
    ) -> Result<LlmJudge> {
        Ok(LlmJudge {
            config: config.clone(),
            target_template: prompts::load(&config.target_prompt, &["tools", "question"])?,
            judge_template: prompts::load(
                &config.judge_prompt,
                &["tools", "question", "response"],
            )?,
            target_model: target_model.to_string(),
            judge_model: judge_model.to_string(),
            seed,
            sweep: None,
        })
    }

    /// The same method as a stability sweep.
    pub fn with_sweep(&self, sweep: super::Sweep) -> LlmJudge {
        LlmJudge {
            sweep: Some(sweep),
            ..self.clone()
        }
    }

    /// Name of the judge namespace.
    pub fn judge_name(&self) -> String {
        match &self.sweep {
            Some(s) => super::sweep_name(NAME, s.k, s.temperature),
            None => NAME.to_string(),
        }
    }

    /// Name of the target namespace.
    pub fn target_name(&self) -> String {
        match &self.sweep {
            Some(_) => format!("{}.target", self.judge_name()),
            None => TARGET_NAME.to_string(),
        }
    }

    /// Settings of the target stream.
    pub fn target_settings(&self) -> MethodSettings {
        let c = &self.config;
        let name = self.target_name();
        let (temperature, k, seed_mode) = match &self.sweep {
            Some(s) => (s.temperature, Some(s.k), Some(s.seed_mode)),
            None => (c.target_temperature, None, None),
        };
        MethodSettings::new(
            &name,
            json!({
                "method": name,
                "prompt_id": self.target_template.id,
                "prompt_sha256": self.target_template.sha256,
                "tools_mode": c.tools_mode,
                "temperature": temperature,
                "max_tokens": c.target_max_tokens,
                "k": k,
                "seed_mode": seed_mode,
            }),
        )
    }

    /// Settings of the judge stream; they include the target settings hash.
    pub fn judge_settings(&self) -> MethodSettings {
        let c = &self.config;
        let name = self.judge_name();
        MethodSettings::new(
            &name,
            json!({
                "method": name,
                "target_settings_hash": self.target_settings().settings_hash,
                "judge_model": self.judge_model,
                "prompt_id": self.judge_template.id,
                "prompt_sha256": self.judge_template.sha256,
                "temperature": c.judge_temperature,
                "max_tokens": c.judge_max_tokens,
                "parser_version": PARSER_VERSION,
            }),
        )
    }

    /// The target request for an example (and repetition, in a sweep).
    pub fn target_request(&self, example: &Example, repeat: Option<u32>) -> ChatRequest {
        let native = self.config.tools_mode == ToolsMode::Native;
        let tools_text = if native || example.tools.is_empty() {
            "(none)".to_string()
        } else {
            example.tools.join("\n")
        };
        let values = [
            ("tools", tools_text.as_str()),
            ("question", example.question.as_str()),
        ];
        let mut messages = Vec::new();
        if !self.target_template.system.is_empty() {
            messages.push(Message::system(prompts::render(
                &self.target_template.system,
                &values,
            )));
        }
        messages.push(Message::user(prompts::render(
            &self.target_template.user,
            &values,
        )));
        ChatRequest {
            model: self.target_model.clone(),
            messages,
            temperature: self
                .sweep
                .map_or(self.config.target_temperature, |s| s.temperature),
            max_tokens: self.config.target_max_tokens,
            seed: match (&self.sweep, repeat) {
                (Some(s), Some(r)) => s.seed(self.seed, r),
                _ => self.seed,
            },
            tools: (native && !example.tools.is_empty()).then(|| native_tools(&example.tools)),
        }
    }

    /// The judge request for a target response.
    pub fn judge_request(&self, example: &Example, response: &str) -> ChatRequest {
        let tools = if example.tools.is_empty() {
            "(none)".to_string()
        } else {
            example.tools.join("\n")
        };
        let values = [
            ("tools", tools.as_str()),
            ("question", example.question.as_str()),
            ("response", response),
        ];
        let mut messages = Vec::new();
        if !self.judge_template.system.is_empty() {
            messages.push(Message::system(prompts::render(
                &self.judge_template.system,
                &values,
            )));
        }
        messages.push(Message::user(prompts::render(
            &self.judge_template.user,
            &values,
        )));
        ChatRequest {
            model: self.judge_model.clone(),
            messages,
            temperature: self.config.judge_temperature,
            max_tokens: self.config.judge_max_tokens,
            seed: self.seed,
            tools: None,
        }
    }

    /// The one repair request after an unparseable judge reply.
    pub fn repair_request(&self, first: &ChatRequest, raw: &str, error: &str) -> ChatRequest {
        let mut req = first.clone();
        req.messages.push(Message {
            role: "assistant".into(),
            content: raw.to_string(),
        });
        req.messages.push(Message::user(format!(
            "That reply could not be read ({error}). Reply with JSON only: {{\"classification\": \"direct\" | \"tool_call\" | \"request_for_info\" | \"cannot_answer\"}}."
        )));
        req
    }
}

impl Plan for LlmJudge {
    /// The target stream's settings ([`JudgeAnswers`] names its own
    /// namespace with [`LlmJudge::judge_settings`]).
    fn settings(&self) -> MethodSettings {
        self.target_settings()
    }

    /// Work items: one per example, or K per example in a sweep.
    fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        if let Some(sweep) = &self.sweep {
            return sweep.items(examples);
        }
        super::one_item_per_example(examples)
    }
}

/// Converts When2Call tool definitions (JSON text, `parameters.type` "dict")
/// into OpenAI `tools` entries.
pub fn native_tools(tools: &[String]) -> Value {
    let list: Vec<Value> = tools
        .iter()
        .map(|t| {
            let mut f: Value = serde_json::from_str(t).unwrap_or_else(|_| json!({"name": t}));
            if let Some(p) = f.get_mut("parameters") {
                if p.get("type").and_then(Value::as_str) == Some("dict") {
                    p["type"] = json!("object");
                }
            }
            json!({"type": "function", "function": f})
        })
        .collect();
    Value::Array(list)
}

/// JSON objects embedded in text, outermost first, found by brace matching
/// that respects strings.
fn json_objects(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let (mut depth, mut in_str, mut esc) = (0usize, false, false);
        let mut end = None;
        for (j, &c) in bytes.iter().enumerate().skip(i) {
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(j) => {
                out.push(&text[i..=j]);
                i = j + 1;
            }
            None => break,
        }
    }
    out
}

/// Maps a label as a judge may write it to a [`Label`].
pub fn normalize_label(raw: &str) -> Option<Label> {
    let s: String = raw
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c == '`' || c == '*')
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    match s.as_str() {
        "direct" | "direct_answer" | "answer" => Some(Label::Direct),
        "tool_call" | "toolcall" | "tool" | "tool_use" | "function_call" => Some(Label::ToolCall),
        "request_for_info"
        | "request_for_information"
        | "request_info"
        | "ask_for_info"
        | "clarification" => Some(Label::RequestForInfo),
        "cannot_answer" | "cant_answer" | "can't_answer" | "unable_to_answer" | "refusal" => {
            Some(Label::CannotAnswer)
        }
        _ => None,
    }
}

const LABEL_KEYS: &[&str] = &[
    "classification",
    "label",
    "category",
    "behavior",
    "behaviour",
    "class",
];

/// Parses a judge reply into a label: JSON anywhere in the text (fenced or
/// surrounded by prose, any key casing), else a bare label. Errors say why.
pub fn parse_judge(raw: &str) -> Result<Label, String> {
    let text = super::strip_reasoning(raw, super::OpenThink::Keep);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty reply".into());
    }
    let mut saw_object = false;
    for candidate in json_objects(trimmed) {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(candidate) else {
            continue;
        };
        saw_object = true;
        for (k, v) in &map {
            if LABEL_KEYS.contains(&k.to_lowercase().as_str()) {
                return match v.as_str().and_then(normalize_label) {
                    Some(l) => Ok(l),
                    None => Err(format!("`{k}` holds {v}, not a When2Call label")),
                };
            }
        }
    }
    let unfenced = trimmed
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```");
    if let Some(l) = normalize_label(unfenced) {
        return Ok(l);
    }
    Err(if saw_object {
        "JSON without a `classification` key".into()
    } else {
        "no JSON object in the reply".into()
    })
}

/// Builds the audit event for a judge stage.
pub fn event(key: &str, uuid: &str, kind: &str, severity: Severity, details: Value) -> AuditEvent {
    AuditEvent::new(key, uuid, NAME, "judging", kind, severity, details)
}

/// Short preview of a reply for audit details.
pub fn preview(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The target stream of `llm_judge` (or of one of its sweeps) as the runner
/// runs it: the target model answers every item freely, with the tools.
/// Its answers are never regenerated once stored; the judge reads them.
pub type TargetAnswers = Bound<LlmJudge>;

impl Method for Bound<LlmJudge> {
    type Record = TargetRecord;
    type Plan = LlmJudge;

    fn bound(&self) -> &Bound<LlmJudge> {
        self
    }

    fn records_needed_when_done(&self) -> bool {
        true
    }

    async fn work(
        &self,
        ns: &str,
        item: WorkItem,
        example: &Example,
        _steps: crate::engine::ItemSteps,
    ) -> ItemOutput<TargetRecord> {
        let req = self.plan.target_request(example, item.repeat);
        let outcome = self.caller.client.chat(&req).await;
        let call_item = CallItem {
            method: ns,
            uuid: &example.uuid,
            repeat: item.repeat,
            role: "target",
        };
        let call = CallRecord::chat(&self.caller.client, call_item, &req, &outcome);
        let result = match outcome.result {
            Ok(reply) => {
                let mut audit = Vec::new();
                if reply.text.trim().is_empty() && reply.tool_calls.is_none() {
                    audit.push(AuditEvent::new(
                        &item.key,
                        &example.uuid,
                        ns,
                        "target",
                        "empty_target_reply",
                        Severity::Error,
                        json!({
                            "finish_reason": reply.finish_reason,
                            "has_reasoning": reply.reasoning.is_some(),
                            "completion_tokens": reply.usage.completion_tokens,
                            "max_tokens": req.max_tokens,
                        }),
                    ));
                }
                Ok(TargetRecord {
                    key: item.key,
                    uuid: example.uuid.clone(),
                    repeat: item.repeat,
                    text: reply.text,
                    tool_calls: reply.tool_calls,
                    has_reasoning: reply.reasoning.is_some(),
                    finish_reason: reply.finish_reason,
                    usage: reply.usage,
                    audit,
                })
            }
            Err(e) => Err(ItemError::from_call(&e)),
        };
        ItemOutput {
            calls: vec![call],
            result,
        }
    }

    /// No metrics of its own: the answers (`target_responses.jsonl`, long
    /// texts as previews) and their token usage (`usage.json`).
    fn conclude(&self, ctx: &Concluding<'_>, records: &[&TargetRecord]) -> Result<Conclusion> {
        let stored_in = ctx.results_path();
        let mut answers = Vec::new();
        for r in records {
            let mut row = json!({
                "key": r.key,
                "uuid": r.uuid,
                "repeat": r.repeat,
                "text": r.text,
                "tool_calls": r.tool_calls,
                "finish_reason": r.finish_reason,
            });
            crate::long_text::shorten_fields(&mut row, &["text"], Some(&stored_in));
            serde_json::to_writer(&mut answers, &row)?;
            answers.push(b'\n');
        }
        let mut usage = serde_json::to_vec_pretty(&self.usage(records))?;
        usage.push(b'\n');
        Ok(Conclusion {
            scores: None,
            extra: vec![("usage.json", usage), ("target_responses.jsonl", answers)],
            notes: Vec::new(),
        })
    }
}

/// The judge stream of `llm_judge` (or of one of its sweeps) as the runner
/// runs it: the judge model classifies every stored target answer.
pub struct JudgeAnswers {
    /// The method bound to the judge model.
    pub judge: Bound<LlmJudge>,
    /// The target stream's namespace, its answers by key and its usage.
    pub target: JudgedTarget,
}

/// What the judge needs of the target stream.
#[derive(Debug, Default)]
pub struct JudgedTarget {
    /// Namespace of the target answers.
    pub namespace: String,
    /// The stored answers, by item key.
    pub answers: HashMap<String, TargetRecord>,
    /// Token totals of the answers (priced with the target's price).
    pub usage: UsageTotals,
}

impl Method for JudgeAnswers {
    type Record = JudgeRecord;
    type Plan = LlmJudge;

    fn bound(&self) -> &Bound<LlmJudge> {
        &self.judge
    }

    /// The judge stream's own namespace (the plan's is the target's).
    fn settings(&self) -> MethodSettings {
        self.judge.plan.judge_settings()
    }

    fn runnable(&self, item: &WorkItem) -> bool {
        self.target.answers.contains_key(&item.key)
    }

    async fn work(
        &self,
        ns: &str,
        item: WorkItem,
        example: &Example,
        _steps: crate::engine::ItemSteps,
    ) -> ItemOutput<JudgeRecord> {
        match self.target.answers.get(&item.key) {
            Some(target) => {
                judge_one(
                    &self.judge.plan,
                    &self.judge.caller.client,
                    ns,
                    &item,
                    example,
                    target,
                )
                .await
            }
            None => ItemOutput {
                calls: Vec::new(),
                result: Err(ItemError {
                    message: format!("{}: no target answer to judge", item.key),
                    fatal: false,
                }),
            },
        }
    }

    /// The target answers' tokens plus the judge's.
    fn usage(&self, records: &[&JudgeRecord]) -> UsageTotals {
        self.target.usage.plus(UsageTotals::sum(
            records.iter().map(|r| r.usage),
            self.judge.caller.price.as_ref(),
        ))
    }

    /// The judge's events and those of the answers it judged.
    fn audit(&self, records: &[&JudgeRecord]) -> AuditSummary {
        crate::audit::summarize(
            records
                .iter()
                .flat_map(|r| r.audit.iter())
                .chain(self.target.answers.values().flat_map(|t| t.audit.iter())),
        )
    }

    fn conclude(&self, ctx: &Concluding<'_>, records: &[&JudgeRecord]) -> Result<Conclusion> {
        let counts = super::status_counts(records.iter().map(|r| r.status))?;
        let mut scores = match &self.judge.plan.sweep {
            Some(sweep) => {
                let by_key: HashMap<&str, Prediction> = records
                    .iter()
                    .map(|r| (r.key.as_str(), r.prediction))
                    .collect();
                sweep.conclude(ctx.examples, ctx.seed, |key| by_key.get(key).copied())
            }
            None => {
                let judge_in = ctx.results_path();
                let target_in = format!(
                    "{}/{}/{}",
                    crate::store::names::CHECKPOINTS,
                    self.target.namespace,
                    crate::store::names::RESULTS
                );
                Scores {
                    n_examples: ctx.examples.len(),
                    metrics: super::score(
                        &records
                            .iter()
                            .map(|r| (r.gold, r.prediction, r.n_tools))
                            .collect::<Vec<_>>(),
                    ),
                    counts: BTreeMap::new(),
                    stability: None,
                    variants: None,
                    predictions: records
                        .iter()
                        .map(|r| {
                            PredictionRow::new(&r.uuid, r.gold, r.n_tools, Some(r.prediction))
                                .with(json!({
                                    "status": r.status,
                                    "target_response": self.target.answers.get(&r.key).map(|t| t.text.clone()),
                                    "judge_raw": r.judge_raw,
                                    "judge_raw_repair": r.judge_raw_repair,
                                }))
                                .shortened(&["target_response"], &target_in)
                                .shortened(&["judge_raw", "judge_raw_repair"], &judge_in)
                        })
                        .collect(),
                    consistencies: None,
                }
            }
        };
        scores.counts = counts;
        Ok(Conclusion {
            scores: Some(scores),
            ..Conclusion::default()
        })
    }
}

/// Sends one judge-stage request, logging the call; a failed call fails
/// the item.
async fn ask(
    client: &Client,
    call_item: CallItem<'_>,
    req: &ChatRequest,
    calls: &mut Vec<CallRecord>,
) -> Result<crate::llm::Reply, ItemError> {
    let outcome = client.chat(req).await;
    calls.push(CallRecord::chat(client, call_item, req, &outcome));
    outcome.result.map_err(|e| ItemError::from_call(&e))
}

/// Judges one stored target answer: one judge call, one repair call when
/// the first reply does not parse.
async fn judge_one(
    method: &LlmJudge,
    client: &Client,
    ns: &str,
    item: &WorkItem,
    ex: &Example,
    target: &TargetRecord,
) -> ItemOutput<JudgeRecord> {
    let key = item.key.clone();
    let mut record = JudgeRecord {
        key: key.clone(),
        uuid: ex.uuid.clone(),
        repeat: item.repeat,
        gold: ex.gold,
        prediction: Prediction::Invalid,
        n_tools: ex.tools.len(),
        target_sha256: crate::fingerprint::sha256_hex(target.text.as_bytes()),
        status: JudgeStatus::EmptyTarget,
        judge_raw: None,
        judge_raw_repair: None,
        usage: Usage::default(),
        audit: Vec::new(),
    };
    let mut calls = Vec::new();
    let Some(response) = target.judged_response() else {
        record.audit.push(event(
            &key,
            &ex.uuid,
            "empty_target_invalid",
            Severity::Error,
            json!({"finish_reason": target.finish_reason, "has_reasoning": target.has_reasoning}),
        ));
        return ItemOutput {
            calls,
            result: Ok(record),
        };
    };
    let call_item = CallItem {
        method: ns,
        uuid: &ex.uuid,
        repeat: item.repeat,
        role: "judge",
    };
    let req = method.judge_request(ex, &response);
    let result = async {
        let first = ask(client, call_item, &req, &mut calls).await?;
        record.usage = first.usage;
        record.judge_raw = Some(first.text.clone());
        let error = match parse_judge(&first.text) {
            Ok(label) => {
                record.prediction = Prediction::Label(label);
                record.status = JudgeStatus::Parsed;
                return Ok(());
            }
            Err(e) => e,
        };
        record.audit.push(event(
            &key,
            &ex.uuid,
            "judge_parse_failed_first",
            Severity::Warning,
            json!({"error": error, "raw_preview": preview(&first.text)}),
        ));
        let repair = method.repair_request(&req, &first.text, &error);
        let repair_item = CallItem {
            role: "judge_repair",
            ..call_item
        };
        let second = ask(client, repair_item, &repair, &mut calls).await?;
        record.usage = record.usage.saturating_add(second.usage);
        record.judge_raw_repair = Some(second.text.clone());
        record.take_repair(&error, &second.text);
        Ok(())
    }
    .await;
    ItemOutput {
        calls,
        result: result.map(|()| record),
    }
}

impl JudgeRecord {
    /// Takes the repair reply's label, or marks the record invalid; either
    /// way audited.
    fn take_repair(&mut self, first_error: &str, raw: &str) {
        match parse_judge(raw) {
            Ok(label) => {
                self.prediction = Prediction::Label(label);
                self.status = JudgeStatus::Repaired;
                self.audit.push(event(
                    &self.key,
                    &self.uuid,
                    "judge_repair_used",
                    Severity::Info,
                    json!({"label": label}),
                ));
            }
            Err(e2) => {
                self.status = JudgeStatus::Invalid;
                self.audit.push(event(
                    &self.key,
                    &self.uuid,
                    "judge_invalid",
                    Severity::Error,
                    json!({"error_first": first_error, "error_second": e2, "raw_second_preview": preview(raw)}),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_replies_in_many_shapes() {
        let ok = [
            (r#"{"classification": "tool_call"}"#, Label::ToolCall),
            (
                "```json\n{\"classification\": \"REQUEST_FOR_INFO\"}\n```",
                Label::RequestForInfo,
            ),
            (
                r#"Sure. {"Classification": "Cannot Answer"} as requested"#,
                Label::CannotAnswer,
            ),
            (r#"{"classification":"direct answer"}"#, Label::Direct),
            (
                "<think>maybe {\"classification\": \"direct\"}</think>{\"label\": \"tool-call\"}",
                Label::ToolCall,
            ),
            (
                r#"{"reason": "has {braces} in \"strings\"", "category": "cannot_answer"}"#,
                Label::CannotAnswer,
            ),
            ("tool_call", Label::ToolCall),
            ("\"Request for info\".", Label::RequestForInfo),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_judge(raw), Ok(want), "{raw}");
        }
        let bad = [
            "",
            "I think it is fine.",
            r#"{"classification": "maybe"}"#,
            r#"{"verdict": "tool_call"}"#,
            "{not json",
        ];
        for raw in bad {
            assert!(parse_judge(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn native_tools_convert_dict_to_object() {
        let t = native_tools(&[
            r#"{"name":"f","description":"d","parameters":{"type":"dict","properties":{}}}"#.into(),
        ]);
        assert_eq!(t[0]["type"], "function");
        assert_eq!(t[0]["function"]["parameters"]["type"], "object");
    }

    #[test]
    fn empty_target_reply_detection() {
        let mut r = TargetRecord {
            key: "k".into(),
            uuid: "u".into(),
            repeat: None,
            text: "  ".into(),
            tool_calls: None,
            has_reasoning: true,
            finish_reason: Some("length".into()),
            usage: Usage::default(),
            audit: vec![],
        };
        assert_eq!(r.judged_response(), None);
        r.tool_calls = Some(json!([{"function": {"name": "f"}}]));
        assert!(r.judged_response().unwrap().contains("\"f\""));
    }
}
