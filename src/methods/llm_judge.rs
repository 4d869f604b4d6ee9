//! `llm_judge`: the target model answers with the tools offered; a judge model
//! classifies the answer into the four behaviours, under a protocol
//! ([`crate::judge_protocol`]): NVIDIA's official scripts (`when2call`, the
//! default), the Python suite's (`python-suite`), or w2c's own prompts
//! (`w2c`).
//!
//! Two checkpoint streams: target answers (namespace `llm_judge.target`, keyed
//! by the target settings) and judge decisions (namespace `llm_judge`, keyed by
//! the judge settings *and* the target settings hash). A resume never asks the
//! target again for an answer it has; a new judge model, prompt or protocol
//! gets a new judge namespace that re-judges the stored answers.
//!
//! A judge reply is read by the protocol's rule; when the rule rejects it,
//! the protocol's one repair turn is sent; still no label, the prediction is
//! `invalid` (counted wrong, audited) — never coerced into a class, whatever
//! the protocol's own scripts did (NVIDIA's raise, the Python suite said
//! `cannot_answer`). Under `w2c` an empty target reply (no content and no
//! tool calls — e.g. a reasoning model that spent its budget) is audited and
//! is an `invalid` prediction without a judge call; the other protocols
//! judge what their scripts would (an empty string included), and a reply
//! NVIDIA's inference script could not read is `invalid` without a judge
//! call, audited.

use super::{Bound, Concluding, Conclusion, Method, Plan, Scores};
use crate::audit::AuditSummary;
use crate::audit::{AuditEvent, Severity};
use crate::config::{LlmJudgeConfig, ToolsMode};
use crate::dataset::Example;
use crate::engine::WorkItem;
use crate::engine::{ItemError, ItemOutput};
use crate::judge_protocol::{self as protocol, CannotFollow, OfficialJudgement, Protocol};
use crate::labels::{Label, Prediction};
use crate::llm::{CallError, CallItem, CallRecord, Client};
use crate::llm::{ChatRequest, Message, Usage};
use crate::prompts::{self, Template};
use crate::store::{MethodSettings, NamespaceDir, PredictionRow, UsageTotals};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Method name (the judge namespace).
pub const NAME: &str = "llm_judge";
/// Name of the target-answer namespace.
pub const TARGET_NAME: &str = "llm_judge.target";
/// Version of the `w2c` protocol's judge reply parser; part of its judge
/// settings hash.
pub const PARSER_VERSION: u32 = 1;

/// w2c's own prompt templates (protocol `w2c`).
#[derive(Debug, Clone)]
pub struct W2cPrompts {
    /// Target prompt template.
    pub target: Template,
    /// Judge prompt template.
    pub judge: Template,
}

/// Everything the method needs, resolved once per run.
#[derive(Debug, Clone)]
pub struct LlmJudge {
    /// The method config.
    pub config: LlmJudgeConfig,
    /// The protocol in effect.
    pub protocol: Protocol,
    /// w2c's templates, under protocol `w2c`.
    pub w2c: Option<W2cPrompts>,
    /// Said once before judging: the stored config predates protocols.
    pub protocol_note: Option<String>,
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

fn is_false(b: &bool) -> bool {
    !*b
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
    /// Whether the reply's content was null (not even `""`); NVIDIA's
    /// inference script cannot read such a reply without tool calls.
    #[serde(default, skip_serializing_if = "is_false")]
    pub content_null: bool,
    /// Native tool calls, when the reply had them.
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// The server refused the prompt as longer than its context window
    /// (its message): no answer, and the example is unscored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_overflow: Option<String>,
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
    /// What the `w2c` protocol's judge sees: the text, or the native tool
    /// calls as JSON when the text is empty; `None` when the reply was empty.
    pub fn judged_response(&self) -> Option<String> {
        if !self.text.trim().is_empty() {
            return Some(self.text.clone());
        }
        self.tool_calls.as_ref().map(|t| t.to_string())
    }

    /// The answer as `protocol`'s judge saw it (under NVIDIA's protocol, a
    /// tool call is the first call's `json.dumps`); the reply's text when
    /// the protocol judges nothing (an empty reply under `w2c`, a reply
    /// NVIDIA's script cannot read).
    pub fn judged_answer(&self, protocol: Protocol) -> String {
        match self.response_for(protocol) {
            Ok(Some(response)) => response,
            Ok(None) | Err(_) => self.text.clone(),
        }
    }

    /// What `protocol`'s judge sees (`Ok(None)`: nothing to judge, under
    /// `w2c`), or why the protocol's scripts cannot read the reply.
    pub fn response_for(&self, protocol: Protocol) -> Result<Option<String>, CannotFollow> {
        match protocol {
            Protocol::W2c => Ok(self.judged_response()),
            Protocol::When2call => protocol::official_model_response(
                &self.text,
                self.content_null,
                self.tool_calls.as_ref(),
            )
            .map(Some),
            Protocol::PythonSuite => Ok(Some(
                crate::official_task::python::py_strip(&self.text).to_string(),
            )),
        }
    }
}

/// How the judge's decision was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeStatus {
    /// The first reply gave a label.
    Parsed,
    /// The repair reply gave a label.
    Repaired,
    /// No reply gave a label: `invalid`.
    Invalid,
    /// The target reply was empty (protocol `w2c`): `invalid`, no judge call.
    EmptyTarget,
    /// The protocol's scripts cannot read the target reply (NVIDIA's
    /// inference script raises on it): `invalid`, no judge call.
    TargetUnreadable,
    /// The server refused the target's or the judge's prompt as longer than
    /// its context window: unscored (no prediction, left out of the
    /// metrics; a resume does not ask again).
    ContextOverflow,
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
    /// What NVIDIA's aggregate counts for the row (protocol `when2call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub official: Option<OfficialJudgement>,
    /// Judge token usage (both calls).
    pub usage: Usage,
    /// Audit events.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
}

crate::engine::record_with_fields!(JudgeRecord);

impl JudgeRecord {
    /// The prediction, or `None` for an unscored example (a prompt over
    /// the server's context window).
    pub fn scored_prediction(&self) -> Option<Prediction> {
        (self.status != JudgeStatus::ContextOverflow).then_some(self.prediction)
    }
}

impl LlmJudge {
    /// Resolves the method: the protocol and, under `w2c`, both templates.
    pub fn new(
        config: &LlmJudgeConfig,
        target_model: &str,
        judge_model: &str,
        seed: u64,
    ) -> Result<LlmJudge> {
        let protocol = config.protocol();
        let w2c = match protocol {
            Protocol::W2c => Some(W2cPrompts {
                target: prompts::load(config.target_prompt_id(), &["tools", "question"])?,
                judge: prompts::load(config.judge_prompt_id(), &["tools", "question", "response"])?,
            }),
            Protocol::When2call | Protocol::PythonSuite => None,
        };
        let protocol_note = config.protocol.is_none().then(|| {
            "this session was created before judge protocols and its stored config names none: it keeps judging with w2c's own prompts (protocol `w2c`), as then; set `protocol = \"when2call\"` (NVIDIA's scripts, the paper's table) in the config and `w2c run` it to judge in new namespaces".to_string()
        });
        Ok(LlmJudge {
            config: config.clone(),
            protocol,
            w2c,
            protocol_note,
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

    /// The target's sampling temperature: the sweep's, else the protocol's
    /// (`None`: not sent).
    fn target_temperature(&self) -> Option<f64> {
        match &self.sweep {
            Some(s) => Some(s.temperature),
            None => self.config.target_temperature(),
        }
    }

    /// Whether requests carry a seed: a sweep's targets always (its repeats
    /// are seeded), otherwise every protocol but `when2call`.
    fn sends_seed(&self, target: bool) -> bool {
        (target && self.sweep.is_some()) || self.config.sends_sampling()
    }

    /// Parameters the `python-suite` protocol sends besides temperature,
    /// max_tokens and seed (what the suite sent to its main provider).
    fn extra_params(&self) -> serde_json::Map<String, Value> {
        match self.protocol {
            Protocol::PythonSuite => [
                ("top_p", json!(1.0)),
                ("presence_penalty", json!(0.0)),
                ("frequency_penalty", json!(0.0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            Protocol::When2call | Protocol::W2c => serde_json::Map::new(),
        }
    }

    /// Settings of the target stream.
    pub fn target_settings(&self) -> MethodSettings {
        let c = &self.config;
        let name = self.target_name();
        let (k, seed_mode) = match &self.sweep {
            Some(s) => (Some(s.k), Some(s.seed_mode)),
            None => (None, None),
        };
        let settings = match &self.w2c {
            // Exactly the settings of w2c before protocols: their hash names
            // the namespaces of every session created then.
            Some(w2c) => json!({
                "method": name,
                "prompt_id": w2c.target.id,
                "prompt_sha256": w2c.target.sha256,
                "tools_mode": c.tools_mode(),
                "temperature": self.target_temperature().unwrap_or(0.0),
                "max_tokens": c.target_max_tokens().unwrap_or(512),
                "k": k,
                "seed_mode": seed_mode,
            }),
            None => json!({
                "method": name,
                "protocol": self.protocol,
                "protocol_sha256": self.protocol.definition_sha256(),
                "temperature": self.target_temperature(),
                "max_tokens": c.target_max_tokens(),
                "sends_seed": self.sends_seed(true),
                "k": k,
                "seed_mode": seed_mode,
            }),
        };
        MethodSettings::new(&name, settings)
    }

    /// Settings of the judge stream; they include the target settings hash.
    pub fn judge_settings(&self) -> MethodSettings {
        let c = &self.config;
        let name = self.judge_name();
        let target_settings_hash = self.target_settings().settings_hash;
        let settings = match &self.w2c {
            Some(w2c) => json!({
                "method": name,
                "target_settings_hash": target_settings_hash,
                "judge_model": self.judge_model,
                "prompt_id": w2c.judge.id,
                "prompt_sha256": w2c.judge.sha256,
                "temperature": c.judge_temperature().unwrap_or(0.0),
                "max_tokens": c.judge_max_tokens().unwrap_or(256),
                "parser_version": PARSER_VERSION,
            }),
            None => json!({
                "method": name,
                "target_settings_hash": target_settings_hash,
                "judge_model": self.judge_model,
                "protocol": self.protocol,
                "protocol_sha256": self.protocol.definition_sha256(),
                "temperature": c.judge_temperature(),
                "max_tokens": c.judge_max_tokens(),
                "sends_seed": self.sends_seed(false),
            }),
        };
        MethodSettings::new(&name, settings)
    }

    /// The target request for an example (and repetition, in a sweep), or
    /// why NVIDIA's inference script cannot make it.
    pub fn target_request(
        &self,
        example: &Example,
        repeat: Option<u32>,
    ) -> Result<ChatRequest, CannotFollow> {
        let (messages, tools) = match (&self.w2c, self.protocol) {
            (Some(w2c), _) => self.w2c_target(w2c, example),
            (None, Protocol::When2call) => (
                vec![Message::user(example.question.clone())],
                protocol::official_tools(&example.tools)?,
            ),
            (None, _) => (
                vec![
                    Message::system(protocol::texts::SUITE_SYSTEM),
                    Message::user(protocol::suite_target_user(
                        &example.tools,
                        &example.question,
                    )),
                ],
                None,
            ),
        };
        let seed = match (&self.sweep, repeat) {
            (Some(s), Some(r)) => Some(s.seed(self.seed, r)),
            _ => self.sends_seed(true).then_some(self.seed),
        };
        Ok(ChatRequest {
            model: self.target_model.clone(),
            messages,
            temperature: self.target_temperature(),
            max_tokens: self.config.target_max_tokens(),
            seed,
            tools,
            extra: self.extra_params(),
        })
    }

    /// The `w2c` protocol's target messages and native tools.
    fn w2c_target(&self, w2c: &W2cPrompts, example: &Example) -> (Vec<Message>, Option<Value>) {
        let native = self.config.tools_mode() == ToolsMode::Native;
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
        if !w2c.target.system.is_empty() {
            messages.push(Message::system(prompts::render(
                &w2c.target.system,
                &values,
            )));
        }
        messages.push(Message::user(prompts::render(&w2c.target.user, &values)));
        let tools = (native && !example.tools.is_empty()).then(|| native_tools(&example.tools));
        (messages, tools)
    }

    /// The judge request for a target response, or why the protocol's
    /// judge script cannot make it.
    pub fn judge_request(
        &self,
        example: &Example,
        response: &str,
    ) -> Result<ChatRequest, CannotFollow> {
        let messages =
            match (&self.w2c, self.protocol) {
                (Some(w2c), _) => {
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
                    if !w2c.judge.system.is_empty() {
                        messages.push(Message::system(prompts::render(&w2c.judge.system, &values)));
                    }
                    messages.push(Message::user(prompts::render(&w2c.judge.user, &values)));
                    messages
                }
                (None, Protocol::When2call) => vec![Message::user(
                    protocol::official_judge_prompt(&example.tools, &example.question, response)?,
                )],
                (None, _) => vec![Message::user(protocol::suite_judge_prompt(
                    &example.tools,
                    &example.question,
                    response,
                )?)],
            };
        Ok(ChatRequest {
            model: self.judge_model.clone(),
            messages,
            temperature: self.config.judge_temperature(),
            max_tokens: self.config.judge_max_tokens(),
            seed: self.sends_seed(false).then_some(self.seed),
            tools: None,
            extra: self.extra_params(),
        })
    }

    /// The one repair request after a judge reply the protocol rejects:
    /// the conversation so far, the reply as the assistant's turn, and the
    /// protocol's request to rewrite it.
    pub fn repair_request(&self, first: &ChatRequest, raw: &str, error: &str) -> ChatRequest {
        let mut req = first.clone();
        req.messages.push(Message {
            role: "assistant".into(),
            content: protocol::repair_assistant_turn(self.protocol, raw),
        });
        req.messages.push(Message::user(match self.protocol {
            Protocol::When2call | Protocol::PythonSuite => protocol::texts::REPAIR_REQUEST.to_string(),
            Protocol::W2c => format!(
                "That reply could not be read ({error}). Reply with JSON only: {{\"classification\": \"direct\" | \"tool_call\" | \"request_for_info\" | \"cannot_answer\"}}."
            ),
        }));
        req
    }

    /// Checks, before any call, that the protocol's scripts can make every
    /// example's requests (NVIDIA's rewrite their tools and parse them);
    /// the error names up to five rows and how many in all.
    pub fn check_requests(&self, what: &str, examples: &[Example]) -> Result<()> {
        if self.w2c.is_some() {
            return Ok(());
        }
        let failures: Vec<String> = examples
            .iter()
            .filter_map(|e| {
                self.target_request(e, None)
                    .and_then(|_| self.judge_request(e, ""))
                    .err()
                    .map(|err| format!("row uuid {}: {err}", e.uuid))
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "{what}: protocol `{}` cannot make the requests of {} of the {} selected examples (choose another protocol or leave those rows out):\n  {}",
            self.protocol,
            failures.len(),
            examples.len(),
            failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n  ")
        )
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

    fn repeats(&self) -> usize {
        self.sweep.map_or(1, |s| s.k as usize)
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

/// The `unscored` event of a prompt the server refused as longer than its
/// context window (`stage`: `target`, `judge` or `judge_repair`).
fn unscored_event(key: &str, uuid: &str, ns: &str, stage: &str, message: &str) -> AuditEvent {
    AuditEvent::new(
        key,
        uuid,
        ns,
        stage,
        "unscored",
        Severity::Error,
        json!({"reason": "context_overflow", "stage": stage, "detail": message}),
    )
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

    /// Every example's requests can be made under the protocol.
    async fn before_items(&self, ns: &NamespaceDir, examples: &[Example]) -> Result<Vec<String>> {
        self.plan.check_requests(&ns.name, examples)?;
        Ok(Vec::new())
    }

    async fn work(
        &self,
        ns: &str,
        item: WorkItem,
        example: &Example,
        _steps: crate::engine::ItemSteps,
    ) -> ItemOutput<TargetRecord> {
        let req = match self.plan.target_request(example, item.repeat) {
            Ok(req) => req,
            // Checked for every example before any item runs.
            Err(e) => {
                return ItemOutput {
                    calls: Vec::new(),
                    result: Err(ItemError {
                        message: format!("{}: {e}", item.key),
                        fatal: true,
                    }),
                }
            }
        };
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
                    content_null: reply.content_null,
                    tool_calls: reply.tool_calls,
                    context_overflow: None,
                    has_reasoning: reply.reasoning.is_some(),
                    finish_reason: reply.finish_reason,
                    usage: reply.usage,
                    audit,
                })
            }
            // A result, not an error: the same prompt would fail again.
            Err(CallError::ContextOverflow { message, .. }) => Ok(TargetRecord {
                audit: vec![unscored_event(
                    &item.key,
                    &example.uuid,
                    ns,
                    "target",
                    &message,
                )],
                key: item.key,
                uuid: example.uuid.clone(),
                repeat: item.repeat,
                text: String::new(),
                content_null: true,
                tool_calls: None,
                context_overflow: Some(message),
                has_reasoning: false,
                finish_reason: None,
                usage: Usage::default(),
            }),
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

    /// Every example's judge request can be made under the protocol; the
    /// note of a stored config from before protocols.
    async fn before_items(&self, ns: &NamespaceDir, examples: &[Example]) -> Result<Vec<String>> {
        self.judge.plan.check_requests(&ns.name, examples)?;
        Ok(self.judge.plan.protocol_note.iter().cloned().collect())
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
        let mut notes = Vec::new();
        let mut scores = match &self.judge.plan.sweep {
            Some(sweep) => {
                let by_key: HashMap<&str, Prediction> = records
                    .iter()
                    .filter_map(|r| Some((r.key.as_str(), r.scored_prediction()?)))
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
                let official_judge = (self.judge.plan.protocol == Protocol::When2call).then(|| {
                    protocol::aggregate::aggregate(
                        records
                            .iter()
                            .filter_map(|r| r.official.as_ref().map(|o| (r.gold, o))),
                    )
                });
                let unscored = records
                    .iter()
                    .filter(|r| r.scored_prediction().is_none())
                    .count();
                if unscored > 0 {
                    notes.push(format!(
                        "{unscored} of {} examples are unscored (a prompt over the server's context window) and left out of the metrics; see audit_fallbacks.jsonl",
                        records.len()
                    ));
                }
                Scores {
                    n_examples: ctx.examples.len(),
                    metrics: super::score(
                        &records
                            .iter()
                            .filter_map(|r| Some((r.gold, r.scored_prediction()?, r.n_tools)))
                            .collect::<Vec<_>>(),
                    ),
                    counts: BTreeMap::new(),
                    stability: None,
                    variants: None,
                    official_judge,
                    predictions: records
                        .iter()
                        .map(|r| {
                            let mut details = json!({
                                "status": r.status,
                                "target_response": self.target.answers.get(&r.key).map(|t| t.judged_answer(self.judge.plan.protocol)),
                                "judge_raw": r.judge_raw,
                                "judge_raw_repair": r.judge_raw_repair,
                            });
                            if let Some(o) = &r.official {
                                details["official"] = json!(o);
                            }
                            if r.scored_prediction().is_none() {
                                details["unscored"] = json!({"reason": "context_overflow"});
                            }
                            PredictionRow::new(&r.uuid, r.gold, r.n_tools, r.scored_prediction())
                                .with(details)
                                .shortened(&["target_response"], &target_in)
                                .shortened(&["judge_raw", "judge_raw_repair"], &judge_in)
                        })
                        .collect(),
                    consistencies: None,
                }
            }
        };
        scores.counts = counts;
        // Rows without a prediction (an example, or every repeat of one in
        // a sweep, over the server's context window).
        let unscored = scores
            .predictions
            .iter()
            .filter(|p| p.prediction.is_none())
            .count();
        if unscored > 0 {
            scores.counts.insert("unscored".into(), unscored);
        }
        Ok(Conclusion {
            scores: Some(scores),
            notes,
            ..Conclusion::default()
        })
    }
}

/// Why a judge-stage call gave no reply.
enum Unanswered {
    /// The server refused the prompt as longer than its context window:
    /// the example is unscored (`stage`, the server's message).
    ContextOverflow(String, String),
    /// Any other failure: the item fails (retried on resume).
    Failed(ItemError),
}

/// Sends one judge-stage request, logging the call.
async fn ask(
    client: &Client,
    call_item: CallItem<'_>,
    req: &ChatRequest,
    calls: &mut Vec<CallRecord>,
) -> Result<crate::llm::Reply, Unanswered> {
    let outcome = client.chat(req).await;
    calls.push(CallRecord::chat(client, call_item, req, &outcome));
    outcome.result.map_err(|e| match e {
        CallError::ContextOverflow { message, .. } => {
            Unanswered::ContextOverflow(call_item.role.to_string(), message)
        }
        e => Unanswered::Failed(ItemError::from_call(&e)),
    })
}

/// Reads a judge reply under the protocol: its fixed rules, or (`w2c`)
/// w2c's lenient parser.
fn read_reply(p: Protocol, reply: &crate::llm::Reply, repair_reply: bool) -> protocol::Reading {
    protocol::read_judge_reply(p, &reply.text, reply.content_null, repair_reply).unwrap_or_else(
        || {
            let label = parse_judge(&reply.text);
            protocol::Reading {
                repair: label.is_err() && !repair_reply,
                label,
                official: None,
            }
        },
    )
}

/// Judges one stored target answer: one judge call, and one repair call
/// when the protocol rejects the first reply.
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
        official: None,
        usage: Usage::default(),
        audit: Vec::new(),
    };
    let mut calls = Vec::new();
    let unjudged = |record| ItemOutput {
        calls: Vec::new(),
        result: Ok(record),
    };
    if let Some(message) = &target.context_overflow {
        // The target was never answered (its event is the target's).
        record.status = JudgeStatus::ContextOverflow;
        record.official = overflow_judgement(method.protocol, protocol::INFERENCE_SCRIPT, message);
        return unjudged(record);
    }
    let response = match target.response_for(method.protocol) {
        Ok(Some(response)) => response,
        Ok(None) => {
            record.audit.push(event(
                &key,
                &ex.uuid,
                "empty_target_invalid",
                Severity::Error,
                json!({"finish_reason": target.finish_reason, "has_reasoning": target.has_reasoning}),
            ));
            return unjudged(record);
        }
        Err(cannot) => {
            record.status = JudgeStatus::TargetUnreadable;
            record.audit.push(event(
                &key,
                &ex.uuid,
                "target_unreadable",
                Severity::Error,
                json!({"protocol": method.protocol, "reason": cannot.to_string()}),
            ));
            record.official = Some(cannot.into());
            return unjudged(record);
        }
    };
    let call_item = CallItem {
        method: ns,
        uuid: &ex.uuid,
        repeat: item.repeat,
        role: "judge",
    };
    let req = match method.judge_request(ex, &response) {
        Ok(req) => req,
        // Checked for every example before any item runs.
        Err(e) => {
            return ItemOutput {
                calls,
                result: Err(ItemError {
                    message: format!("{key}: {e}"),
                    fatal: true,
                }),
            }
        }
    };
    let result = async {
        let first = ask(client, call_item, &req, &mut calls).await?;
        record.usage = first.usage;
        record.judge_raw = Some(first.text.clone());
        let reading = read_reply(method.protocol, &first, false);
        let error = match reading.label {
            Ok(label) => {
                record.prediction = Prediction::Label(label);
                record.status = JudgeStatus::Parsed;
                record.official = reading.official;
                return Ok(());
            }
            Err(e) => e,
        };
        if !reading.repair {
            // A reply the protocol reads but that gives no label (NVIDIA's
            // scripts send no repair for valid JSON).
            record.status = JudgeStatus::Invalid;
            record.official = reading.official;
            record
                .audit
                .push(record.invalid_event(&error, None, &first.text));
            return Ok(());
        }
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
        let reading = read_reply(method.protocol, &second, true);
        record.official = reading.official;
        record.take_repair(&error, reading.label, &second.text);
        Ok(())
    }
    .await;
    let result = match result {
        Ok(()) => Ok(record),
        Err(Unanswered::ContextOverflow(stage, message)) => {
            record.status = JudgeStatus::ContextOverflow;
            record.prediction = Prediction::Invalid;
            record.official = overflow_judgement(method.protocol, protocol::JUDGE_SCRIPT, &message);
            record
                .audit
                .push(unscored_event(&key, &ex.uuid, ns, &stage, &message));
            Ok(record)
        }
        Err(Unanswered::Failed(e)) => Err(e),
    };
    ItemOutput { calls, result }
}

/// What NVIDIA's scripts do with a prompt the server refuses (protocol
/// `when2call`; `None` under the others): the OpenAI client raises
/// `BadRequestError`.
fn overflow_judgement(
    p: Protocol,
    script: &'static str,
    message: &str,
) -> Option<OfficialJudgement> {
    (p == Protocol::When2call).then(|| {
        CannotFollow::ScriptRaises {
            script,
            reason: format!(
                "the server refuses the prompt as longer than its context window (openai raises BadRequestError): {message}"
            ),
        }
        .into()
    })
}

impl JudgeRecord {
    /// Takes the repair reply's label, or marks the record invalid; either
    /// way audited.
    fn take_repair(&mut self, first_error: &str, label: Result<Label, String>, raw: &str) {
        match label {
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
                let ev = self.invalid_event(first_error, Some(&e2), raw);
                self.audit.push(ev);
            }
        }
    }

    /// The `judge_invalid` event: why the replies gave no label, the last
    /// reply's preview, and (protocol `when2call`) what NVIDIA's scripts do
    /// with the row.
    fn invalid_event(
        &self,
        first_error: &str,
        second_error: Option<&str>,
        raw: &str,
    ) -> AuditEvent {
        let mut details = match second_error {
            Some(e2) => {
                json!({"error_first": first_error, "error_second": e2, "raw_second_preview": preview(raw)})
            }
            None => json!({"error_first": first_error, "raw_first_preview": preview(raw)}),
        };
        if let Some(o) = &self.official {
            details["official"] = json!(o);
        }
        event(
            &self.key,
            &self.uuid,
            "judge_invalid",
            Severity::Error,
            details,
        )
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
            content_null: false,
            tool_calls: None,
            context_overflow: None,
            has_reasoning: true,
            finish_reason: Some("length".into()),
            usage: Usage::default(),
            audit: vec![],
        };
        assert_eq!(r.judged_response(), None);
        r.tool_calls = Some(json!([{"function": {"name": "f"}}]));
        assert!(r.judged_response().unwrap().contains("\"f\""));
    }

    #[test]
    fn the_stored_answer_is_the_one_the_judge_saw() {
        let mut r = TargetRecord {
            key: "k".into(),
            uuid: "u".into(),
            repeat: None,
            text: String::new(),
            content_null: true,
            tool_calls: Some(json!([
                {"function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}},
                {"function": {"name": "second", "arguments": "{}"}}
            ])),
            context_overflow: None,
            has_reasoning: false,
            finish_reason: Some("tool_calls".into()),
            usage: Usage::default(),
            audit: vec![],
        };
        // NVIDIA's inference script: json.dumps of the first call.
        assert_eq!(
            r.judged_answer(Protocol::When2call),
            r#"{"name": "get_weather", "arguments": {"city": "Z\u00fcrich"}}"#
        );
        // w2c: the calls as JSON when there is no text.
        assert!(r.judged_answer(Protocol::W2c).starts_with("[{"));
        // A reply NVIDIA's script cannot read is not judged: its text.
        r.tool_calls = Some(json!([{"function": {"name": "f", "arguments": "not json"}}]));
        assert_eq!(r.judged_answer(Protocol::When2call), "");
        // The Python suite judges the content, stripped.
        r.text = "  Sure.\n".into();
        r.content_null = false;
        assert_eq!(r.judged_answer(Protocol::PythonSuite), "Sure.");
    }
}
