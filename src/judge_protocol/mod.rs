//! The LLM-as-judge protocols of `llm_judge`: what the target model is
//! asked, what the judge is asked, how a judge reply is read and repaired,
//! and, for NVIDIA's protocol, how the judgements are aggregated.
//!
//! - [`Protocol::When2call`] — NVIDIA's official scripts
//!   (`run_openai_inference.py`, `run_openai_judge.py`,
//!   `aggregate_llm_as_a_judge_results.py`), byte for byte: the request
//!   bodies w2c sends equal the scripts' as JSON values, including the
//!   parameters they do not send. The protocol of the paper's LLM-as-judge
//!   table, and the default.
//! - [`Protocol::PythonSuite`] — the Python suite w2c replaces: NVIDIA's
//!   system and user messages with the tools in `<tool>` blocks for the
//!   target; its judge prompt (JSON-dumped tools, the label `direct`).
//! - [`Protocol::W2c`] — w2c's own prompt templates (`builtin:target_v1`,
//!   `builtin:judge_v1` or files), the protocol of every session created
//!   before protocols existed.
//!
//! Everything here is pure: `methods::llm_judge` sends the requests and
//! stores the records. Where a script would raise (a tool text its rewrite
//! breaks, a reply it cannot read), the functions here say so with a
//! [`CannotFollow`] naming the script; where Python would do something a
//! Rust value cannot hold (a lone surrogate, an integer beyond 64 bits in a
//! request), they say that w2c cannot reproduce it. Neither is ever guessed.

pub mod aggregate;
pub mod texts;

use crate::labels::Label;
use crate::official_task::python::{
    json_dumps, json_dumps_unicode, json_loads, py_repr, py_str, py_strip, PyJsonError, PyValue,
};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;

/// Version of the rules written in code (not in [`texts`]); part of every
/// protocol's hashed definition: bump it when a rule changes what is sent
/// or how a reply is read.
pub const RULES_VERSION: u32 = 1;

/// NVIDIA's inference script.
pub const INFERENCE_SCRIPT: &str = "run_openai_inference.py";
/// NVIDIA's judge script.
pub const JUDGE_SCRIPT: &str = "run_openai_judge.py";
/// NVIDIA's aggregation script.
pub const AGGREGATE_SCRIPT: &str = "aggregate_llm_as_a_judge_results.py";
/// Where NVIDIA's scripts come from.
pub const OFFICIAL_SOURCE: &str =
    "NVIDIA/When2Call@ecc8d42388e91ab37e7e737d48e16e8ecea3d1dc:evaluation/llm_as_a_judge";
/// Where the Python suite's prompts come from.
pub const SUITE_SOURCE: &str = "rcasaluce/when2call-api-eval-suite@f561dd5:scripts";

/// An `llm_judge` protocol; its serde name is its config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// NVIDIA's official LLM-as-judge scripts, byte for byte.
    #[serde(rename = "when2call")]
    When2call,
    /// The Python suite w2c replaces.
    #[serde(rename = "python-suite")]
    PythonSuite,
    /// w2c's own prompt templates.
    #[serde(rename = "w2c")]
    W2c,
}

impl Protocol {
    /// Every protocol, the default first.
    pub const ALL: [Protocol; 3] = [Protocol::When2call, Protocol::PythonSuite, Protocol::W2c];

    /// The protocol of a new session.
    pub const DEFAULT: Protocol = Protocol::When2call;

    /// The protocol of a session whose stored config predates protocols.
    pub const BEFORE_PROTOCOLS: Protocol = Protocol::W2c;

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::When2call => "when2call",
            Protocol::PythonSuite => "python-suite",
            Protocol::W2c => "w2c",
        }
    }

    /// The judge's label for each [`Label`] under this protocol (in
    /// [`Label::ALL`] order): NVIDIA's prompt says `direct_answer`.
    pub fn judge_labels(self) -> [&'static str; 4] {
        match self {
            Protocol::When2call => [
                "direct_answer",
                "tool_call",
                "request_for_info",
                "cannot_answer",
            ],
            Protocol::PythonSuite | Protocol::W2c => {
                ["direct", "tool_call", "request_for_info", "cannot_answer"]
            }
        }
    }

    /// Everything that defines the protocol, as hashed into the settings:
    /// its fixed texts and the names of its rules. `None` for `w2c`, which
    /// is defined by its prompt templates (hashed on their own).
    pub fn definition(self) -> Option<Value> {
        let labels = self.judge_labels();
        match self {
            Protocol::When2call => Some(json!({
                "protocol": self.as_str(),
                "source": OFFICIAL_SOURCE,
                "rules_version": RULES_VERSION,
                "target": {
                    "messages": "the question as the only user message",
                    "tool_text_replacements": texts::TOOL_TEXT_REPLACEMENTS,
                    "tool_rewrites": "name: '.' -> '_'; parameters.type = 'object'; every property's type = 'string'",
                    "tools": "native OpenAI tools, only when the row has tools",
                    "sampling": "nothing but model, messages and tools",
                    "response": "the first tool call as json.dumps({name, arguments: json.loads(arguments)}), else content.strip()",
                },
                "judge": {
                    "prompt": texts::OFFICIAL_JUDGE_PROMPT,
                    "slots": ["repr of the parsed tools list", "question", "response"],
                    "labels": labels,
                    "parse": "reply.strip(), then json.loads",
                    "repair": texts::REPAIR_REQUEST,
                    "repair_assistant_turn": "the first reply, stripped",
                    "sampling": "nothing but model and messages",
                },
                "aggregate": "per gold category: the share whose classification equals the gold label, and the Counter of classifications",
            })),
            Protocol::PythonSuite => Some(json!({
                "protocol": self.as_str(),
                "source": SUITE_SOURCE,
                "rules_version": RULES_VERSION,
                "target": {
                    "system": texts::SUITE_SYSTEM,
                    "user": "each tool's text in <tool></tool>, joined by a blank line, a blank line, the question",
                    "response": "content.strip(); native tool calls ignored",
                    "sampling": "temperature, max_tokens, seed, top_p 1.0, presence_penalty 0.0, frequency_penalty 0.0",
                },
                "judge": {
                    "prompt": texts::SUITE_JUDGE_PROMPT,
                    "slots": ["json.dumps(parsed tools, ensure_ascii=False), or of the tool texts if one does not parse", "question", "response"],
                    "labels": labels,
                    "parse": "reply.strip(), json.loads, `classification` else `label`, str().strip().lower() one of the labels",
                    "repair": texts::REPAIR_REQUEST,
                    "repair_assistant_turn": "the first reply, stripped",
                    "sampling": "temperature, max_tokens, seed, top_p 1.0, presence_penalty 0.0, frequency_penalty 0.0",
                },
            })),
            Protocol::W2c => None,
        }
    }

    /// sha256 of [`Protocol::definition`]'s canonical JSON.
    pub fn definition_sha256(self) -> Option<String> {
        self.definition().map(|d| {
            crate::fingerprint::sha256_hex(crate::fingerprint::canonical_json(&d).as_bytes())
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown judge protocol `{0}` (known: when2call, python-suite, w2c)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

/// Why a protocol's scripts cannot be followed for a row or a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotFollow {
    /// The script raises an exception here (it would stop).
    #[error("{script} raises here: {reason}")]
    ScriptRaises {
        /// The script.
        script: &'static str,
        /// What raises.
        reason: String,
    },
    /// Python reads it, but w2c cannot reproduce what it does exactly.
    #[error("w2c cannot reproduce what {script} does here: {reason}")]
    NotReproducible {
        /// The script.
        script: &'static str,
        /// What cannot be reproduced.
        reason: String,
    },
}

impl CannotFollow {
    fn from_json(script: &'static str, what: &str, e: PyJsonError) -> CannotFollow {
        match e {
            PyJsonError::Invalid { .. } => CannotFollow::ScriptRaises {
                script,
                reason: format!("json.loads({what}): {e}"),
            },
            PyJsonError::NotReproducible { .. } => CannotFollow::NotReproducible {
                script,
                reason: format!("json.loads({what}): {e}"),
            },
        }
    }

    fn raises(script: &'static str, reason: impl Into<String>) -> CannotFollow {
        CannotFollow::ScriptRaises {
            script,
            reason: reason.into(),
        }
    }
}

/// Python's `template.format(*args)` for a template whose only fields are
/// automatically numbered `{}` (and `{{`/`}}` for literal braces), as the
/// judge prompts are.
pub fn py_format(template: &str, args: &[&str]) -> String {
    let mut out =
        String::with_capacity(template.len() + args.iter().map(|a| a.len()).sum::<usize>());
    let mut args = args.iter();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{}") {
            out.push_str(args.next().copied().unwrap_or_default());
            rest = after;
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `run_openai_inference.py`'s native `tools` for a row's tool texts;
/// `None` without tools (the script then sends no `tools` at all). Each
/// tool's text gets [`texts::TOOL_TEXT_REPLACEMENTS`] (over the whole text,
/// descriptions included), is parsed, wrapped as `{"type": "function",
/// "function": tool}`, its name's dots become underscores, its
/// `parameters.type` becomes `object` and every property's type `string`.
pub fn official_tools(tools: &[String]) -> Result<Option<Value>, CannotFollow> {
    if tools.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tools.len());
    for (i, text) in tools.iter().enumerate() {
        let rewritten = texts::TOOL_TEXT_REPLACEMENTS
            .iter()
            .fold(text.clone(), |t, (from, to)| t.replace(from, to));
        let what = format!("tools[{i}] after its type rewrites");
        let function = json_loads(&rewritten)
            .map_err(|e| CannotFollow::from_json(INFERENCE_SCRIPT, &what, e))?;
        let function = rewrite_official_function(function).map_err(|reason| {
            CannotFollow::raises(INFERENCE_SCRIPT, format!("tools[{i}]: {reason}"))
        })?;
        let mut entry = IndexMap::new();
        entry.insert("type".to_string(), PyValue::Str("function".into()));
        entry.insert("function".to_string(), function);
        out.push(to_json_value(&PyValue::Dict(entry)).map_err(|reason| {
            CannotFollow::NotReproducible {
                script: INFERENCE_SCRIPT,
                reason: format!("tools[{i}]: {reason}"),
            }
        })?);
    }
    Ok(Some(Value::Array(out)))
}

/// The script's in-place edits of one parsed tool; the error says what
/// Python raises.
fn rewrite_official_function(function: PyValue) -> Result<PyValue, String> {
    let PyValue::Dict(mut f) = function else {
        return Err(format!(
            "the tool is a JSON {}, not an object: `t[\"function\"][\"name\"]` raises TypeError",
            function.type_name()
        ));
    };
    match f.get_mut("name") {
        Some(PyValue::Str(name)) => *name = name.replace('.', "_"),
        Some(other) => {
            return Err(format!(
                "`name` is a {}: `.replace` raises AttributeError",
                other.type_name()
            ))
        }
        None => return Err("no `name`: KeyError".into()),
    }
    let params = match f.get_mut("parameters") {
        Some(PyValue::Dict(p)) => p,
        Some(other) => {
            return Err(format!(
                "`parameters` is a {}: item assignment raises TypeError",
                other.type_name()
            ))
        }
        None => return Err("no `parameters`: KeyError".into()),
    };
    params.insert("type".into(), PyValue::Str("object".into()));
    match params.get_mut("properties") {
        Some(PyValue::Dict(props)) => {
            for (name, prop) in props.iter_mut() {
                match prop {
                    PyValue::Dict(p) => {
                        p.insert("type".into(), PyValue::Str("string".into()));
                    }
                    other => {
                        return Err(format!(
                            "property `{name}` is a {}: item assignment raises TypeError",
                            other.type_name()
                        ))
                    }
                }
            }
        }
        // Iterating an empty list or string sets nothing.
        Some(PyValue::List(l)) if l.is_empty() => {}
        Some(PyValue::Str(s)) if s.is_empty() => {}
        Some(PyValue::List(_) | PyValue::Str(_)) => {
            return Err("`properties` is a non-empty list or string: indexing it with an element raises TypeError".into())
        }
        Some(other) => {
            return Err(format!(
                "`properties` is a {}: iterating it raises TypeError",
                other.type_name()
            ))
        }
        None => return Err("no `parameters.properties`: KeyError".into()),
    }
    Ok(PyValue::Dict(f))
}

/// A parsed value as the JSON the OpenAI client sends: integers beyond 64
/// bits and non-finite floats are not reproduced.
fn to_json_value(v: &PyValue) -> Result<Value, String> {
    Ok(match v {
        PyValue::None => Value::Null,
        PyValue::Bool(b) => Value::Bool(*b),
        PyValue::Int(digits) => match digits.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(
                digits
                    .parse::<u64>()
                    .map_err(|_| format!("the integer {digits} does not fit 64 bits"))?,
            ),
        },
        PyValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| {
                format!("the float {f} is not finite (the request would not be JSON)")
            })?,
        PyValue::Str(s) => Value::String(s.clone()),
        PyValue::List(items) => {
            Value::Array(items.iter().map(to_json_value).collect::<Result<_, _>>()?)
        }
        PyValue::Dict(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_json_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// `run_openai_judge.py`'s prompt: [`texts::OFFICIAL_JUDGE_PROMPT`] with
/// the Python `repr` of the list of parsed tools (the row's original tool
/// texts, not the rewritten ones), the question and the model's response.
pub fn official_judge_prompt(
    tools: &[String],
    question: &str,
    response: &str,
) -> Result<String, CannotFollow> {
    let parsed = tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json_loads(t)
                .map_err(|e| CannotFollow::from_json(JUDGE_SCRIPT, &format!("tools[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tools = py_repr(&PyValue::List(parsed));
    Ok(py_format(
        texts::OFFICIAL_JUDGE_PROMPT,
        &[&tools, question, response],
    ))
}

/// The response `run_openai_inference.py` keeps of a target reply: the
/// first native tool call as `json.dumps({"name", "arguments"})` (the
/// arguments parsed first), else the content stripped.
pub fn official_model_response(
    text: &str,
    content_null: bool,
    tool_calls: Option<&Value>,
) -> Result<String, CannotFollow> {
    if let Some(calls) = tool_calls {
        let function = calls.pointer("/0/function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| CannotFollow::NotReproducible {
                script: INFERENCE_SCRIPT,
                reason: "`tool_calls[0].function.name` is not a string".into(),
            })?;
        let arguments = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CannotFollow::raises(
                    INFERENCE_SCRIPT,
                    "`tool_calls[0].function.arguments` is not a string: json.loads raises TypeError",
                )
            })?;
        let arguments = json_loads(arguments).map_err(|e| {
            CannotFollow::from_json(INFERENCE_SCRIPT, "tool_calls[0].function.arguments", e)
        })?;
        let mut call = IndexMap::new();
        call.insert("name".to_string(), PyValue::Str(name.to_string()));
        call.insert("arguments".to_string(), arguments);
        return Ok(json_dumps(&PyValue::Dict(call)));
    }
    if content_null {
        return Err(CannotFollow::raises(
            INFERENCE_SCRIPT,
            "the reply has no tool calls and its content is null: `.strip()` raises AttributeError",
        ));
    }
    Ok(py_strip(text).to_string())
}

/// The Python suite's target user message: each tool's text in
/// `<tool></tool>`, joined by a blank line, then a blank line and the
/// question (two newlines first when there are no tools).
pub fn suite_target_user(tools: &[String], question: &str) -> String {
    let tools: Vec<String> = tools.iter().map(|t| format!("<tool>{t}</tool>")).collect();
    format!("{}\n\n{question}", tools.join("\n\n"))
}

/// The Python suite's judge prompt: [`texts::SUITE_JUDGE_PROMPT`] with
/// `json.dumps(tools, ensure_ascii=False)` of the parsed tools (of the tool
/// texts themselves when one does not parse), the question and the
/// response.
pub fn suite_judge_prompt(
    tools: &[String],
    question: &str,
    response: &str,
) -> Result<String, CannotFollow> {
    let mut parsed = Vec::with_capacity(tools.len());
    let mut all_parse = true;
    for (i, t) in tools.iter().enumerate() {
        match json_loads(t) {
            Ok(v) => parsed.push(v),
            Err(PyJsonError::Invalid { .. }) => all_parse = false,
            Err(e) => {
                return Err(CannotFollow::from_json(
                    "w2c_templates.build_judge_prompt",
                    &format!("tools[{i}]"),
                    e,
                ))
            }
        }
    }
    let list = if all_parse {
        PyValue::List(parsed)
    } else {
        PyValue::List(tools.iter().map(|t| PyValue::Str(t.clone())).collect())
    };
    Ok(py_format(
        texts::SUITE_JUDGE_PROMPT,
        &[&json_dumps_unicode(&list), question, response],
    ))
}

/// What the official aggregate counts for one judged row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OfficialJudgement {
    /// `judge_response["classification"]`, as the aggregate's `Counter`
    /// keys it: a string as itself; a number, `true`, `false` or `null` as
    /// JSON writes it as an object key.
    Classified {
        /// The classification.
        classification: String,
    },
    /// One of the scripts raises on this row: no aggregate includes it.
    Raises {
        /// The script.
        script: String,
        /// What raises.
        reason: String,
    },
    /// Python reads it, w2c cannot reproduce what it makes of it.
    NotReproducible {
        /// What cannot be reproduced.
        reason: String,
    },
}

impl From<CannotFollow> for OfficialJudgement {
    fn from(c: CannotFollow) -> Self {
        match c {
            CannotFollow::ScriptRaises { script, reason } => OfficialJudgement::Raises {
                script: script.to_string(),
                reason,
            },
            CannotFollow::NotReproducible { script, reason } => {
                OfficialJudgement::NotReproducible {
                    reason: format!("{script}: {reason}"),
                }
            }
        }
    }
}

/// What one judge reply says under a protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The label, or why the reply gives none.
    pub label: Result<Label, String>,
    /// Whether the protocol asks again (its repair turn) after this reply;
    /// only ever true for a first reply.
    pub repair: bool,
    /// What the official aggregate counts (`when2call` only, once decided).
    pub official: Option<OfficialJudgement>,
}

/// Reads a judge reply under `protocol`'s fixed rules. `repair_reply` says
/// whether this is the reply to the repair turn (after which nothing is
/// asked again). `None` for `w2c`, whose lenient parser belongs to its
/// prompts (`methods::llm_judge::parse_judge`).
pub fn read_judge_reply(
    protocol: Protocol,
    raw: &str,
    content_null: bool,
    repair_reply: bool,
) -> Option<Reading> {
    match protocol {
        Protocol::When2call => Some(read_official(raw, content_null, repair_reply)),
        Protocol::PythonSuite => {
            let label = parse_suite(py_strip(raw));
            Some(Reading {
                repair: label.is_err() && !repair_reply,
                label,
                official: None,
            })
        }
        Protocol::W2c => None,
    }
}

/// `run_openai_judge.py`'s reading: `json.loads(reply.strip())`, a repair
/// turn when it raises, the script raising when the repair's reply does not
/// parse either; then the aggregate's `judge_response["classification"]`.
fn read_official(raw: &str, content_null: bool, repair_reply: bool) -> Reading {
    let stop = |c: CannotFollow| Reading {
        label: Err(c.to_string()),
        repair: false,
        official: Some(c.into()),
    };
    if content_null {
        return stop(CannotFollow::raises(
            JUDGE_SCRIPT,
            "the judge's content is null: `.strip()` raises AttributeError",
        ));
    }
    let value = match json_loads(py_strip(raw)) {
        Ok(v) => v,
        Err(e @ PyJsonError::Invalid { .. }) if !repair_reply => {
            return Reading {
                label: Err(format!("json.loads: {e}")),
                repair: true,
                official: None,
            }
        }
        Err(e) => {
            let what = if repair_reply {
                "the repair reply"
            } else {
                "the reply"
            };
            return stop(CannotFollow::from_json(JUDGE_SCRIPT, what, e));
        }
    };
    let PyValue::Dict(map) = value else {
        return stop(CannotFollow::raises(
            AGGREGATE_SCRIPT,
            format!(
                "the judge's JSON is a {}: `judge_response[\"classification\"]` raises TypeError",
                value.type_name()
            ),
        ));
    };
    let Some(class) = map.get("classification") else {
        return stop(CannotFollow::raises(
            AGGREGATE_SCRIPT,
            "the judge's JSON has no `classification`: KeyError",
        ));
    };
    let key = match class {
        PyValue::Str(s) => s.clone(),
        PyValue::None => "null".into(),
        PyValue::Bool(b) => b.to_string(),
        PyValue::Int(digits) => digits.clone(),
        PyValue::Float(f) => crate::fingerprint::python_float_repr(*f),
        PyValue::List(_) | PyValue::Dict(_) => {
            return stop(CannotFollow::raises(
                AGGREGATE_SCRIPT,
                format!(
                    "`classification` is a {} (unhashable): `Counter` raises TypeError",
                    class.type_name()
                ),
            ))
        }
    };
    let labels = Protocol::When2call.judge_labels();
    let label = match class {
        PyValue::Str(s) => Label::ALL
            .into_iter()
            .find(|l| labels[l.index()] == s)
            .ok_or_else(|| {
                format!(
                    "`classification` is {}, not one of {}",
                    py_repr(class),
                    labels.join(", ")
                )
            }),
        other => Err(format!(
            "`classification` is {} (a {}), not a label",
            py_str(other),
            other.type_name()
        )),
    };
    Reading {
        label,
        repair: false,
        official: Some(OfficialJudgement::Classified {
            classification: key,
        }),
    }
}

/// The Python suite's `parse_judge_json` as it is meant to work (at f561dd5
/// its membership check names an undefined module and always raises):
/// `json.loads`, `classification` else `label` (not null), `str()`,
/// stripped and lowercased, one of `direct`, `tool_call`,
/// `request_for_info`, `cannot_answer`.
fn parse_suite(text: &str) -> Result<Label, String> {
    let value = json_loads(text).map_err(|e| format!("json.loads: {e}"))?;
    let PyValue::Dict(map) = value else {
        return Err(format!(
            "the JSON is a {}, which has no `.get` (AttributeError)",
            value.type_name()
        ));
    };
    let raw = match map.get("classification") {
        Some(v) => Some(v),
        None => map.get("label"),
    };
    let raw = match raw {
        None | Some(PyValue::None) => {
            return Err("Missing 'classification' (or 'label') field in judge JSON.".into())
        }
        Some(v) => v,
    };
    let label = py_strip(&py_str(raw)).to_lowercase();
    label
        .parse::<Label>()
        .map_err(|_| format!("Unexpected classification '{label}'."))
}

/// The repair turn's assistant message for a first reply: the reply
/// stripped (`when2call`, `python-suite`) or as it came (`w2c`).
pub fn repair_assistant_turn(protocol: Protocol, raw: &str) -> String {
    match protocol {
        Protocol::When2call | Protocol::PythonSuite => py_strip(raw).to_string(),
        Protocol::W2c => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expectation below was produced by CPython 3.11 running the
    // scripts' own expressions.

    fn read(p: Protocol, raw: &str, content_null: bool, repair_reply: bool) -> Reading {
        read_judge_reply(p, raw, content_null, repair_reply).expect("a fixed protocol")
    }

    #[test]
    fn the_official_judge_prompt_is_the_scripts() {
        // hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest(), len(JUDGE_PROMPT)
        assert_eq!(texts::OFFICIAL_JUDGE_PROMPT.len(), 1539);
        assert_eq!(
            crate::fingerprint::sha256_hex(texts::OFFICIAL_JUDGE_PROMPT.as_bytes()),
            "626fadd7cd0e3c62a2d97085fdc3f49409b229ba1cae74c3f500008c9047a760"
        );
    }

    #[test]
    fn format_fills_slots_and_unescapes_braces() {
        assert_eq!(
            py_format("a {} {{b}} {} }} {{}}", &["1", "{}"]),
            "a 1 {b} {} } {}"
        );
        let p = py_format(texts::OFFICIAL_JUDGE_PROMPT, &["T", "Q", "R"]);
        assert!(p.contains("<AVAILABLE_TOOLS>\nT\n</AVAILABLE_TOOLS>"));
        assert!(p.contains("{\"classification\": \"<one of `direct_answer`,"));
    }

    #[test]
    fn official_tools_rewrite_as_the_script_does() {
        let tool = r#"{"name": "a.b_dict", "description": "A floating integer dictionary", "parameters": {"type": "dict", "properties": {"x": {"type": "integer", "description": "tuple"}, "y": {"type": "array", "items": {"type": "float"}}}, "required": ["x"]}}"#;
        let got = official_tools(&[tool.to_string()]).unwrap().unwrap();
        // [{"type": "function", "function": t}] after the script's rewrites
        let want: Value = serde_json::from_str(r#"[{"type": "function", "function": {"name": "a_b_object", "description": "A stringing string objectionary", "parameters": {"type": "object", "properties": {"x": {"type": "string", "description": "object"}, "y": {"type": "string", "items": {"type": "string"}}}, "required": ["x"]}}}]"#).unwrap();
        assert_eq!(got, want);
        assert_eq!(official_tools(&[]).unwrap(), None);
        // A property that is no object: the script raises.
        let bad = r#"{"name": "f", "parameters": {"type": "dict", "properties": {"x": "int"}}}"#;
        let e = official_tools(&[bad.into()]).unwrap_err();
        assert!(matches!(e, CannotFollow::ScriptRaises { .. }), "{e}");
        assert!(e.to_string().contains("run_openai_inference.py"), "{e}");
        let e = official_tools(&[r#"{"name": "f"}"#.into()]).unwrap_err();
        assert!(e.to_string().contains("parameters"), "{e}");
        let e = official_tools(&["{not json".into()]).unwrap_err();
        assert!(e.to_string().contains("json.loads"), "{e}");
    }

    #[test]
    fn the_official_judge_prompt_holds_the_python_repr_of_the_tools() {
        let tools = [
            r#"{"name": "f", "flag": true, "n": null, "x": 1.0, "s": "it's"}"#.to_string(),
            r#"{"name": "g"}"#.to_string(),
        ];
        let p = official_judge_prompt(&tools, "Q?", "R").unwrap();
        // str([json.loads(t) for t in tools])
        assert!(p.contains(
            "<AVAILABLE_TOOLS>\n[{'name': 'f', 'flag': True, 'n': None, 'x': 1.0, 's': \"it's\"}, {'name': 'g'}]\n</AVAILABLE_TOOLS>"
        ), "{p}");
        let p = official_judge_prompt(&[], "Q?", "R").unwrap();
        assert!(p.contains("<AVAILABLE_TOOLS>\n[]\n</AVAILABLE_TOOLS>"));
    }

    #[test]
    fn the_official_response_is_the_first_tool_call_or_the_stripped_content() {
        let calls = json!([
            {"id": "1", "type": "function", "function": {"name": "f_g", "arguments": "{\"city\": \"Zürich\", \"n\": 1e2}"}},
            {"id": "2", "type": "function", "function": {"name": "h", "arguments": "{}"}}
        ]);
        // json.dumps({"name": ..., "arguments": json.loads(...)})
        assert_eq!(
            official_model_response("", true, Some(&calls)).unwrap(),
            r#"{"name": "f_g", "arguments": {"city": "Z\u00fcrich", "n": 100.0}}"#
        );
        assert_eq!(
            official_model_response(" \n hi \u{a0}", false, None).unwrap(),
            "hi"
        );
        assert_eq!(official_model_response("", false, None).unwrap(), "");
        assert!(official_model_response("", true, None).is_err());
        let bad = json!([{"function": {"name": "f", "arguments": "{x"}}]);
        let e = official_model_response("", true, Some(&bad)).unwrap_err();
        assert!(matches!(e, CannotFollow::ScriptRaises { .. }), "{e}");
    }

    #[test]
    fn official_readings() {
        let r = read(
            Protocol::When2call,
            " {\"classification\": \"direct_answer\"}\n",
            false,
            false,
        );
        assert_eq!(r.label, Ok(Label::Direct));
        assert!(!r.repair);
        assert_eq!(
            r.official,
            Some(OfficialJudgement::Classified {
                classification: "direct_answer".into()
            })
        );
        // Not JSON: a repair turn, nothing decided yet.
        let r = read(
            Protocol::When2call,
            "```json\n{\"classification\": \"tool_call\"}\n```",
            false,
            false,
        );
        assert!(r.repair && r.label.is_err() && r.official.is_none());
        // Not JSON after the repair: the script raises.
        let r = read(Protocol::When2call, "still prose", false, true);
        assert!(!r.repair);
        assert!(
            matches!(r.official, Some(OfficialJudgement::Raises { ref script, .. }) if script == JUDGE_SCRIPT)
        );
        // JSON but not a label: counted under its value, not a w2c label.
        let r = read(
            Protocol::When2call,
            r#"{"classification": "TOOL_CALL"}"#,
            false,
            false,
        );
        assert!(r.label.is_err() && !r.repair);
        assert_eq!(
            r.official,
            Some(OfficialJudgement::Classified {
                classification: "TOOL_CALL".into()
            })
        );
        let r = read(
            Protocol::When2call,
            r#"{"classification": 1}"#,
            false,
            false,
        );
        assert_eq!(
            r.official,
            Some(OfficialJudgement::Classified {
                classification: "1".into()
            })
        );
        // JSON the aggregate cannot read: it raises; no repair (the judge
        // script only repairs what json.loads rejects).
        for raw in [
            r#""tool_call""#,
            r#"{"label": "tool_call"}"#,
            r#"{"classification": ["x"]}"#,
        ] {
            let r = read(Protocol::When2call, raw, false, false);
            assert!(!r.repair, "{raw}");
            assert!(
                matches!(r.official, Some(OfficialJudgement::Raises { ref script, .. }) if script == AGGREGATE_SCRIPT),
                "{raw}"
            );
        }
        // A null content: the script raises before any repair.
        let r = read(Protocol::When2call, "", true, false);
        assert!(!r.repair && r.label.is_err());
        assert_eq!(repair_assistant_turn(Protocol::When2call, "  x \n"), "x");
    }

    #[test]
    fn suite_readings() {
        let ok = [
            (r#"{"classification": " Direct "}"#, Label::Direct),
            (r#"{"label": "TOOL_CALL"}"#, Label::ToolCall),
        ];
        for (raw, want) in ok {
            let r = read(Protocol::PythonSuite, raw, false, false);
            assert_eq!(r.label, Ok(want), "{raw}");
        }
        for raw in [
            r#"{"classification": "direct_answer"}"#,
            r#"{"classification": null, "label": "tool_call"}"#,
            r#"["tool_call"]"#,
            "tool_call",
        ] {
            let r = read(Protocol::PythonSuite, raw, false, false);
            assert!(r.label.is_err() && r.repair, "{raw}");
            assert!(!read(Protocol::PythonSuite, raw, false, true).repair);
        }
    }

    #[test]
    fn suite_prompts() {
        let tools = [
            r#"{"name": "f", "d": "é"}"#.to_string(),
            r#"{"name": "g"}"#.to_string(),
        ];
        assert_eq!(
            suite_target_user(&tools, "Q?"),
            "<tool>{\"name\": \"f\", \"d\": \"é\"}</tool>\n\n<tool>{\"name\": \"g\"}</tool>\n\nQ?"
        );
        assert_eq!(suite_target_user(&[], "Q?"), "\n\nQ?");
        // json.dumps([json.loads(t) for t in tools], ensure_ascii=False)
        let p = suite_judge_prompt(&tools, "Q?", "R").unwrap();
        assert!(p.contains("<AVAILABLE_TOOLS>\n[{\"name\": \"f\", \"d\": \"é\"}, {\"name\": \"g\"}]\n</AVAILABLE_TOOLS>"), "{p}");
        // One tool does not parse: the list of texts is dumped.
        let p = suite_judge_prompt(&["{x".to_string()], "Q?", "R").unwrap();
        assert!(
            p.contains("<AVAILABLE_TOOLS>\n[\"{x\"]\n</AVAILABLE_TOOLS>"),
            "{p}"
        );
    }

    #[test]
    fn definitions_are_hashed_and_names_parse() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        assert!("official".parse::<Protocol>().is_err());
        assert!(read_judge_reply(Protocol::W2c, "{}", false, false).is_none());
        assert_eq!(Protocol::W2c.definition_sha256(), None);
        let a = Protocol::When2call.definition_sha256().unwrap();
        let b = Protocol::PythonSuite.definition_sha256().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
