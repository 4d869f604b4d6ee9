//! Pure mapping from a namespace's stored records to MLflow traces: one
//! trace per work item (an example, and a repeat in sweeps) with a root span
//! for the example and a child span per LLM call, in OTLP/JSON (the
//! protobuf JSON mapping MLflow's `/v1/traces` takes), and the assessments
//! that go with it (the gold behaviour as an expectation; the predicted
//! behaviour, whether it is correct, the judge's verdict and the audit
//! events as feedback).
//!
//! Everything comes from the session store (`results.jsonl` records and
//! `llm_calls.jsonl` lines, read as JSON: this module reads the store, it
//! does not depend on the methods), so a live run and `w2c sync` build the
//! same traces. Ids are deterministic — the trace id hashes (run key,
//! fingerprint, namespace settings, item key) — so sending a trace again
//! (after a crash, from `w2c sync`) updates the same trace.
//!
//! The OTLP wire types are written here as plain JSON (a dozen fields of
//! the protobuf JSON mapping): the `opentelemetry-proto` crate's serde types
//! would pull prost and tonic into the build for them.

use crate::dataset::Example;
use serde_json::{json, Map, Value};

/// Attribute: the span type MLflow shows (`CHAIN`, `CHAT_MODEL`, `LLM`).
pub const ATTR_SPAN_TYPE: &str = "mlflow.spanType";
/// Attribute: a span's inputs (JSON).
pub const ATTR_INPUTS: &str = "mlflow.spanInputs";
/// Attribute: a span's outputs (JSON).
pub const ATTR_OUTPUTS: &str = "mlflow.spanOutputs";
/// Attribute: token usage of an LLM span (`input_tokens`, `output_tokens`,
/// `total_tokens`); MLflow sums a trace's spans into its token usage.
pub const ATTR_TOKEN_USAGE: &str = "mlflow.chat.tokenUsage";
/// Attribute: the model of an LLM span.
pub const ATTR_MODEL: &str = "mlflow.llm.model";
/// Trace tag of a judge's trace: the MLflow id of the trace of the target
/// call it judged (in the target stream's child run).
pub const TARGET_TRACE_TAG: &str = "w2c.target_trace";
/// Attribute prefix that makes a root-span attribute a trace tag.
pub const TRACE_TAG_PREFIX: &str = "mlflow.traceTag.";

/// Which examples get a trace (`[tracking] trace_examples`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TraceSelection {
    /// Every example (the default).
    #[default]
    All,
    /// Only the examples worth a look: a prediction that is wrong, invalid
    /// or missing (unparsed, unscored), or a warning or error audit event.
    /// A judge's target stream follows its judge: a target answer is traced
    /// when the judge's verdict on it is.
    Problems,
    /// A share of the examples, picked by a hash of the example's uuid:
    /// the same examples in every session (so two models' traces line up).
    Sample(f64),
}

impl TraceSelection {
    /// Parses `all`, `problems` or `sample:<fraction in (0, 1]>`.
    pub fn parse(text: &str) -> std::result::Result<TraceSelection, String> {
        let t = text.trim();
        match t {
            "all" => return Ok(TraceSelection::All),
            "problems" => return Ok(TraceSelection::Problems),
            _ => {}
        }
        if let Some(f) = t.strip_prefix("sample:") {
            if let Ok(v) = f.trim().parse::<f64>() {
                if v > 0.0 && v <= 1.0 {
                    return Ok(TraceSelection::Sample(v));
                }
            }
            return Err(format!(
                "`{t}`: the sample is a fraction in (0, 1], e.g. `sample:0.1`"
            ));
        }
        Err(format!(
            "`{t}`: expected `all`, `problems` or `sample:<fraction>` (e.g. `sample:0.1`)"
        ))
    }

    /// Whether the item of `record` gets a trace. `judged` is, for a
    /// judge's target stream, the judge's record of the same item.
    pub fn selects(&self, method: &str, record: &Value, judged: Option<&Value>) -> bool {
        match self {
            TraceSelection::All => true,
            TraceSelection::Sample(share) => {
                let uuid = str_of(record, "uuid").unwrap_or_default();
                let h =
                    crate::fingerprint::sha256_hex(format!("w2c-trace-sample\0{uuid}").as_bytes());
                let x = u64::from_str_radix(&h[..12], 16).unwrap_or(0) as f64 / (1u64 << 48) as f64;
                x < *share
            }
            TraceSelection::Problems => {
                if method.ends_with(".target") {
                    // Traced with the judge's verdict on it (none yet: not now).
                    return judged.is_some_and(|j| is_problem("llm_judge", j));
                }
                is_problem(method, record)
            }
        }
    }
}

/// Whether an item is worth a look: not correct (wrong, invalid, unparsed,
/// unscored) or with a warning or error audit event.
fn is_problem(method: &str, record: &Value) -> bool {
    let gold = str_of(record, "gold");
    let correct = match (prediction(method, record), gold) {
        (Some(p), Some(g)) => p == g,
        _ => false,
    };
    let flagged = record
        .get("audit")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|e| matches!(str_of(e, "severity"), Some("warning" | "error")))
        });
    !correct || flagged
}

/// What the trace of one work item is built from.
#[derive(Debug, Clone, Copy)]
pub struct ItemRecords<'a> {
    /// Namespace name.
    pub namespace: &'a str,
    /// Method name (`mcq`, `llm_judge`, `stability_mcq`...).
    pub method: &'a str,
    /// The namespace's settings hash.
    pub settings_hash: &'a str,
    /// The item's record in `results.jsonl`.
    pub record: &'a Value,
    /// The item's lines in `llm_calls.jsonl`, in file order.
    pub calls: &'a [Value],
    /// For a judge: the target's record for the same item (its answer is
    /// shown in the judge's outputs; its call is in the target's trace).
    pub target: Option<&'a Value>,
    /// For a judge: the settings hash of its target stream (the judge's
    /// trace names the target's trace by tag).
    pub target_settings_hash: Option<&'a str>,
    /// The example, when the dataset file is at hand.
    pub example: Option<&'a Example>,
}

/// Who a trace belongs to.
#[derive(Debug, Clone)]
pub struct TraceOwner {
    /// The MLflow experiment id (a trace lives in one experiment: the same
    /// session tracked in two experiments has two traces per item).
    pub experiment_id: String,
    /// Session fingerprint.
    pub fingerprint: String,
    /// Run key.
    pub run_key: String,
    /// The target model.
    pub target_model: String,
}

/// One assessment to create on a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentSpec {
    /// Name (`expected_behavior`, `behavior`, `correct`, `audit.<type>`...).
    pub name: String,
    /// An expectation (ground truth) rather than feedback.
    pub expectation: bool,
    /// The value.
    pub value: Value,
    /// Why, for feedback.
    pub rationale: Option<String>,
    /// `HUMAN`, `CODE` or `LLM_JUDGE`.
    pub source_type: &'static str,
    /// Who: the dataset, `w2c/<method>`, the judge model.
    pub source_id: String,
}

impl AssessmentSpec {
    /// The assessment as MLflow's entity, with a deterministic id (the
    /// trace, its position): sending it again updates the same assessment.
    pub fn entity(&self, trace_id: &str, namespace: &str, index: usize, time: &str) -> Value {
        let id =
            crate::fingerprint::sha256_hex(format!("{trace_id}/assessment/{index}").as_bytes());
        let mut a = json!({
            "assessment_id": format!("a-{}", &id[..32]),
            "assessment_name": self.name,
            "trace_id": trace_id,
            "source": {"source_type": self.source_type, "source_id": self.source_id},
            "create_time": time,
            "last_update_time": time,
            "metadata": {"w2c.namespace": namespace},
        });
        if self.expectation {
            a["expectation"] = json!({"value": self.value});
        } else {
            a["feedback"] = json!({"value": self.value});
            if let Some(r) = &self.rationale {
                a["rationale"] = json!(r);
            }
        }
        a
    }

    /// What identifies it among a trace's assessments (name and value).
    pub fn identity(&self) -> (String, String) {
        (self.name.clone(), self.value.to_string())
    }
}

/// A built trace.
#[derive(Debug, Clone)]
pub struct Trace {
    /// 32 lowercase hex digits (MLflow's id is `tr-` and these).
    pub trace_id: String,
    /// The item key.
    pub key: String,
    /// OTLP/JSON spans, root first.
    pub spans: Vec<Value>,
    /// Assessments to create.
    pub assessments: Vec<AssessmentSpec>,
    /// Tokens of its LLM spans (input, output).
    pub tokens: (u64, u64),
    /// Namespace.
    pub namespace: String,
    /// Start and end, epoch nanoseconds.
    pub window: (i128, i128),
    /// Trace tags.
    pub tags: Vec<(String, String)>,
}

impl Trace {
    /// The body of `POST /api/3.0/mlflow/traces` (MLflow's StartTraceV3):
    /// the trace's info with its run (`mlflow.sourceRun`), tags and every
    /// assessment, ids included. Sent after the spans; idempotent.
    pub fn info_request(&self, experiment_id: &str, run_id: &str) -> Value {
        let id = self.mlflow_id();
        let start =
            chrono::DateTime::from_timestamp_nanos(i64::try_from(self.window.0).unwrap_or(0));
        let time = start.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let duration_ms = ((self.window.1 - self.window.0) / 1_000_000).max(0);
        let mut tags: Map<String, Value> = self
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        tags.insert("mlflow.traceName".into(), json!(self.namespace));
        let assessments: Vec<Value> = self
            .assessments
            .iter()
            .enumerate()
            .map(|(i, a)| a.entity(&id, &self.namespace, i, &time))
            .collect();
        json!({"trace": {"trace_info": {
            "trace_id": id,
            "trace_location": {"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": experiment_id}},
            "request_time": time,
            "execution_duration": format!("{}.{:03}s", duration_ms / 1000, duration_ms % 1000),
            "state": "OK",
            "trace_metadata": {
                "mlflow.sourceRun": run_id,
                "mlflow.trace_schema.version": "3",
                "mlflow.source.name": "w2c",
            },
            "tags": tags,
            "assessments": assessments,
        }}})
    }

    /// MLflow's id of the trace.
    pub fn mlflow_id(&self) -> String {
        format!("tr-{}", self.trace_id)
    }
}

/// The deterministic trace id of an item: (experiment, run key,
/// fingerprint, namespace settings, item key).
pub fn trace_id(owner: &TraceOwner, settings_hash: &str, key: &str) -> String {
    let h = crate::fingerprint::sha256_hex(
        format!(
            "w2c-trace\0{}\0{}\0{}\0{settings_hash}\0{key}",
            owner.experiment_id, owner.run_key, owner.fingerprint
        )
        .as_bytes(),
    );
    h[..32].to_string()
}

fn span_id(trace_id: &str, part: &str) -> String {
    crate::fingerprint::sha256_hex(format!("{trace_id}/{part}").as_bytes())[..16].to_string()
}

/// An OTLP attribute holding a JSON-encoded value (how MLflow stores span
/// attributes).
fn attr(key: &str, value: &Value) -> Value {
    json!({"key": key, "value": {"stringValue": value.to_string()}})
}

/// An OTLP attribute holding plain text.
fn text_attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// A call's start and end, epoch nanoseconds: the record's `start_ms` and
/// `end_ms`; a record written before w2c kept them ends at `ts` (to the
/// second) and starts `latency_ms` earlier.
fn call_window(call: &Value) -> (i128, i128) {
    let ms = |k: &str| {
        call.get(k)
            .and_then(Value::as_i64)
            .map(|v| i128::from(v) * 1_000_000)
    };
    let latency =
        i128::from(call.get("latency_ms").and_then(Value::as_u64).unwrap_or(0)) * 1_000_000;
    match (ms("start_ms"), ms("end_ms")) {
        (Some(s), Some(e)) => (s, e.max(s)),
        (Some(s), None) => (s, s + latency),
        _ => {
            let end = str_of(call, "ts").and_then(epoch_ns).unwrap_or(0);
            (end - latency, end)
        }
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
fn epoch_ns(rfc3339: &str) -> Option<i128> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map(i128::from)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The item's prediction as a label name (`invalid` included); `None` for
/// an unscored item.
fn prediction(method: &str, record: &Value) -> Option<String> {
    if record.get("unscored").is_some_and(|u| !u.is_null()) {
        return None;
    }
    let p = if method == "mcq_logprob" {
        // The `acc` variant: the namespace's headline metrics score it.
        record.get("predictions").and_then(|p| p.get(0))
    } else {
        record.get("prediction")
    };
    p.and_then(Value::as_str).map(str::to_string)
}

/// The example as the root span's inputs: identical across sessions of
/// the same data, so MLflow's trace comparison lines the same example up.
fn root_inputs(records: &ItemRecords<'_>) -> Value {
    // The question first (what the Traces list shows), then the uuid (what
    // keeps two examples apart within MLflow's 1000-character preview).
    let mut m = Map::new();
    let uuid = str_of(records.record, "uuid").unwrap_or_default();
    m.insert(
        "question".into(),
        match records.example {
            Some(e) => json!(e.question),
            None => json!("(the dataset file is not at hand: see the call spans)"),
        },
    );
    m.insert("example".into(), json!(uuid));
    if let Some(r) = records.record.get("repeat").filter(|r| !r.is_null()) {
        m.insert("repeat".into(), r.clone());
    }
    if let Some(g) = records.record.get("gold") {
        m.insert("gold".into(), g.clone());
    }
    if let Some(e) = records.example {
        let tools: Vec<Value> = e
            .tools
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| json!(t)))
            .collect();
        m.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(m)
}

/// The method's own fields of a record worth showing as outputs.
fn detail_keys(method: &str) -> &'static [&'static str] {
    match method {
        "mcq" | "stability_mcq" => &[
            "chosen_option",
            "option_order",
            "parse_status",
            "raw_output",
        ],
        "llm_judge" | "stability_llm_judge" => &["status", "judge_raw", "judge_raw_repair"],
        "mcq_logprob" => &["predictions", "ties", "choices", "unscored", "truncation"],
        m if m.ends_with(".target") => &["text", "finish_reason", "tool_calls"],
        _ => &[],
    }
}

/// Builds the trace of one item.
pub fn build(owner: &TraceOwner, records: &ItemRecords<'_>) -> Trace {
    let key = str_of(records.record, "key")
        .unwrap_or_default()
        .to_string();
    let tid = trace_id(owner, records.settings_hash, &key);
    let root_id = span_id(&tid, "root");
    let gold = str_of(records.record, "gold").map(str::to_string);
    let predicted = prediction(records.method, records.record);
    let correct = match (&predicted, &gold) {
        (Some(p), Some(g)) => Some(p == g),
        _ => None,
    };

    // Child spans: the item's own calls. A judge's trace does not hold the
    // target's call (made in another namespace, maybe much earlier): it
    // names the target's trace instead, so a root spans only its calls.
    let calls: Vec<&Value> = records.calls.iter().collect();
    let choices: Vec<&Value> = records
        .record
        .get("choices")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    // mcq_logprob: the last N scoring calls are the N scored choices.
    let score_calls: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| str_of(c, "role") == Some("score"))
        .map(|(i, _)| i)
        .collect();
    let first_choice_call = score_calls.len().saturating_sub(choices.len());
    let mut spans = Vec::new();
    let mut tokens = (0u64, 0u64);
    let mut start_min: Option<i128> = None;
    let mut end_max: Option<i128> = None;
    for (i, call) in calls.iter().enumerate() {
        let (start, end) = call_window(call);
        start_min = Some(start_min.map_or(start, |s| s.min(start)));
        end_max = Some(end_max.map_or(end, |e| e.max(end)));
        let usage = call.get("usage").cloned().unwrap_or(Value::Null);
        let input = usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let output = usage
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        tokens.0 = tokens.0.saturating_add(input);
        tokens.1 = tokens.1.saturating_add(output);
        let role = str_of(call, "role").unwrap_or("call");
        let model = str_of(call, "model").unwrap_or_default();
        let chat = str_of(call, "endpoint").is_some_and(|e| e.ends_with("chat/completions"));
        let ok = str_of(call, "status") == Some("ok");
        let text = call.get("text").cloned().unwrap_or(Value::Null);
        let mut outputs = if chat {
            json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": usage,
                "model": model,
            })
        } else {
            json!({"choices": [{"index": 0, "text": text}], "usage": usage, "model": model})
        };
        if let Some(pos) = score_calls.iter().position(|&c| c == i) {
            if pos >= first_choice_call {
                if let Some(choice) = choices.get(pos - first_choice_call) {
                    outputs["choice"] = choice.get("label").cloned().unwrap_or(Value::Null);
                    outputs["logprob"] = choice.get("logprob").cloned().unwrap_or(Value::Null);
                }
            }
        }
        if let Some(e) = call.get("error").filter(|e| !e.is_null()) {
            outputs["error"] = e.clone();
        }
        let mut attributes = vec![
            text_attr(
                ATTR_SPAN_TYPE,
                &json!(if chat { "CHAT_MODEL" } else { "LLM" }).to_string(),
            ),
            attr(ATTR_INPUTS, call.get("request").unwrap_or(&Value::Null)),
            attr(ATTR_OUTPUTS, &outputs),
            attr(
                ATTR_TOKEN_USAGE,
                &json!({"input_tokens": input, "output_tokens": output,
                        "total_tokens": input.saturating_add(output)}),
            ),
            attr(ATTR_MODEL, &json!(model)),
            attr(
                "mlflow.llm.provider",
                &call.get("provider").cloned().unwrap_or(Value::Null),
            ),
        ];
        if chat {
            attributes.push(attr("mlflow.message.format", &json!("openai")));
        }
        for k in [
            "endpoint",
            "http_status",
            "latency_ms",
            "n_attempts",
            "attempts",
            "request_sha256",
            "system_fingerprint",
            "usage_anomaly",
            "text_full",
        ] {
            if let Some(v) = call.get(k).filter(|v| !v.is_null()) {
                attributes.push(attr(&format!("w2c.{k}"), v));
            }
        }
        spans.push(json!({
            "traceId": tid,
            "spanId": span_id(&tid, &format!("call/{i}")),
            "parentSpanId": root_id,
            "name": format!("{role} {model}"),
            "kind": 3,
            "startTimeUnixNano": start.max(0).to_string(),
            "endTimeUnixNano": end.max(0).to_string(),
            "attributes": attributes,
            "status": if ok { json!({"code": 1}) } else {
                json!({"code": 2, "message": call.get("error").and_then(Value::as_str).unwrap_or("failed")})
            },
        }));
    }

    // The root span: the example in, the verdict out.
    let mut outputs = Map::new();
    outputs.insert("prediction".into(), json!(predicted));
    outputs.insert("correct".into(), json!(correct));
    for k in detail_keys(records.method) {
        if let Some(v) = records.record.get(*k).filter(|v| !v.is_null()) {
            outputs.insert((*k).into(), v.clone());
        }
    }
    if let Some(target) = records.target {
        for k in ["text", "finish_reason", "tool_calls"] {
            if let Some(v) = target.get(k).filter(|v| !v.is_null()) {
                outputs.insert(format!("target_{k}"), v.clone());
            }
        }
    }
    let audit: Vec<&Value> = records
        .record
        .get("audit")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if !audit.is_empty() {
        outputs.insert(
            "audit".into(),
            Value::Array(audit.iter().map(|e| (*e).clone()).collect()),
        );
    }
    let mut tags: Vec<(String, String)> = vec![
        ("w2c.namespace".into(), records.namespace.to_string()),
        ("w2c.method".into(), records.method.to_string()),
        ("w2c.fingerprint".into(), owner.fingerprint.clone()),
        ("w2c.run_key".into(), owner.run_key.clone()),
        ("w2c.key".into(), key.clone()),
        ("w2c.target_model".into(), owner.target_model.clone()),
    ];
    if let Some(g) = &gold {
        tags.push(("w2c.gold".into(), g.clone()));
    }
    if let Some(p) = &predicted {
        tags.push(("w2c.prediction".into(), p.clone()));
    }
    if let Some(c) = correct {
        tags.push(("w2c.correct".into(), c.to_string()));
    }
    if let Some(h) = records.target_settings_hash {
        tags.push((
            TARGET_TRACE_TAG.into(),
            format!("tr-{}", trace_id(owner, h, &key)),
        ));
    }
    let mut attributes = vec![
        text_attr(ATTR_SPAN_TYPE, &json!("CHAIN").to_string()),
        attr(ATTR_INPUTS, &root_inputs(records)),
        attr(ATTR_OUTPUTS, &Value::Object(outputs)),
    ];
    for (k, v) in &tags {
        attributes.push(text_attr(&format!("{TRACE_TAG_PREFIX}{k}"), v));
    }
    let start = start_min.unwrap_or(0).max(0);
    let end = end_max.unwrap_or(start).max(start);
    spans.insert(
        0,
        json!({
            "traceId": tid,
            "spanId": root_id,
            "name": records.namespace,
            "kind": 1,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": attributes,
            "status": {"code": 1},
        }),
    );

    Trace {
        trace_id: tid,
        key,
        spans,
        assessments: assessments(records, gold, predicted, correct, &audit),
        tokens,
        namespace: records.namespace.to_string(),
        window: (start, end),
        tags,
    }
}

fn assessments(
    records: &ItemRecords<'_>,
    gold: Option<String>,
    predicted: Option<String>,
    correct: Option<bool>,
    audit: &[&Value],
) -> Vec<AssessmentSpec> {
    let code = format!("w2c/{}", records.method);
    let judged = records.method.ends_with("llm_judge");
    let mut out = Vec::new();
    if let Some(g) = &gold {
        out.push(AssessmentSpec {
            name: "expected_behavior".into(),
            expectation: true,
            value: json!(g),
            rationale: None,
            source_type: "HUMAN",
            source_id: "when2call".into(),
        });
    }
    if let Some(p) = &predicted {
        let (source_type, source_id, rationale) = if judged {
            let judge = records
                .calls
                .iter()
                .rev()
                .find(|c| str_of(c, "role").is_some_and(|r| r.starts_with("judge")))
                .and_then(|c| str_of(c, "model"))
                .unwrap_or("judge")
                .to_string();
            let raw = records
                .record
                .get("judge_raw_repair")
                .and_then(Value::as_str)
                .or_else(|| str_of(records.record, "judge_raw"))
                .map(str::to_string);
            ("LLM_JUDGE", judge, raw)
        } else {
            let why = ["raw_output", "parse_status", "chosen_option"]
                .iter()
                .filter_map(|k| records.record.get(*k).filter(|v| !v.is_null()))
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            ("CODE", code.clone(), (!why.is_empty()).then_some(why))
        };
        out.push(AssessmentSpec {
            name: "behavior".into(),
            expectation: false,
            value: json!(p),
            rationale,
            source_type,
            source_id,
        });
    }
    if let (Some(c), Some(p), Some(g)) = (correct, &predicted, &gold) {
        out.push(AssessmentSpec {
            name: "correct".into(),
            expectation: false,
            value: json!(c),
            rationale: Some(format!("predicted {p}, expected {g}")),
            source_type: "CODE",
            source_id: code.clone(),
        });
    }
    if let Some(u) = records.record.get("unscored").filter(|u| !u.is_null()) {
        out.push(AssessmentSpec {
            name: "unscored".into(),
            expectation: false,
            value: u
                .get("reason")
                .cloned()
                .unwrap_or_else(|| json!("unscored")),
            rationale: u.get("detail").and_then(Value::as_str).map(str::to_string),
            source_type: "CODE",
            source_id: code.clone(),
        });
    }
    for e in audit {
        let Some(kind) = str_of(e, "event_type") else {
            continue;
        };
        out.push(AssessmentSpec {
            name: format!("audit.{kind}"),
            expectation: false,
            value: e.get("severity").cloned().unwrap_or_else(|| json!("info")),
            rationale: e.get("details").map(Value::to_string),
            source_type: "CODE",
            source_id: code.clone(),
        });
    }
    out
}

/// The OTLP/JSON export request of some traces' spans.
pub fn export_request(traces: &[&Trace]) -> Value {
    let spans: Vec<&Value> = traces.iter().flat_map(|t| t.spans.iter()).collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "w2c"}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "w2c", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> TraceOwner {
        TraceOwner {
            experiment_id: "1".into(),
            fingerprint: "f".repeat(64),
            run_key: "k".into(),
            target_model: "m".into(),
        }
    }

    fn call(role: &str, ts: &str, prompt: u64, completion: u64) -> Value {
        json!({"ts": ts, "method": "mcq", "uuid": "u1", "role": role, "provider": "p",
               "model": "m", "endpoint": "mock://chat/completions", "request": {"messages": []},
               "status": "ok", "http_status": 200, "latency_ms": 250, "n_attempts": 1,
               "attempts": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
               "text": "B", "error": null})
    }

    #[test]
    fn a_trace_has_a_root_and_a_span_per_call_with_stable_ids() {
        let record = json!({"key": "u1", "uuid": "u1", "gold": "tool_call",
                            "prediction": "tool_call", "parse_status": "exact", "audit": []});
        let calls = vec![
            call("target", "2026-01-01T00:00:01Z", 10, 2),
            call("target", "2026-01-01T00:00:03Z", 5, 1),
        ];
        let items = ItemRecords {
            namespace: "mcq",
            method: "mcq",
            settings_hash: "abc",
            record: &record,
            calls: &calls,
            target: None,
            target_settings_hash: None,
            example: None,
        };
        let t = build(&owner(), &items);
        assert_eq!(t.trace_id.len(), 32);
        assert_eq!(t.trace_id, build(&owner(), &items).trace_id);
        assert_ne!(
            t.trace_id,
            trace_id(
                &TraceOwner {
                    run_key: "other".into(),
                    ..owner()
                },
                "abc",
                "u1"
            )
        );
        assert_eq!(t.spans.len(), 3);
        assert_eq!(t.tokens, (15, 3));
        let root = &t.spans[0];
        assert!(root.get("parentSpanId").is_none());
        assert_eq!(t.spans[1]["parentSpanId"], root["spanId"]);
        // The root spans its calls: from the first start to the last end.
        assert_eq!(root["startTimeUnixNano"], "1767225600750000000");
        assert_eq!(root["endTimeUnixNano"], "1767225603000000000");
        let names: Vec<&str> = t.assessments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["expected_behavior", "behavior", "correct"]);
        assert_eq!(t.assessments[2].value, json!(true));
        let req = t.info_request("7", "run1");
        let info = &req["trace"]["trace_info"];
        assert_eq!(info["trace_metadata"]["mlflow.sourceRun"], "run1");
        assert_eq!(info["assessments"][0]["expectation"]["value"], "tool_call");
        assert_eq!(info["execution_duration"], "2.250s");
        // Deterministic assessment ids: sending again updates, never adds.
        assert_eq!(
            info["assessments"][1]["assessment_id"],
            build(&owner(), &items).info_request("7", "run1")["trace"]["trace_info"]["assessments"]
                [1]["assessment_id"]
        );
        let export = export_request(&[&t]);
        assert_eq!(
            export["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn spans_carry_each_calls_own_start_and_end() {
        // A 24 ms call recorded at 12:00:05 (`ts` to the second): the span
        // is the call's own window, not `ts` minus the latency.
        let mut c = call("judge", "2026-01-01T12:00:05Z", 10, 2);
        c["start_ms"] = json!(1_767_268_804_100_i64);
        c["end_ms"] = json!(1_767_268_804_124_i64);
        c["latency_ms"] = json!(24);
        let target = json!({"key": "u1", "uuid": "u1", "gold": "tool_call", "text": "hi"});
        let record = json!({"key": "u1", "uuid": "u1", "gold": "tool_call",
                            "prediction": "tool_call", "status": "ok"});
        let calls = vec![c];
        let t = build(
            &owner(),
            &ItemRecords {
                namespace: "llm_judge",
                method: "llm_judge",
                settings_hash: "judge",
                record: &record,
                calls: &calls,
                target: Some(&target),
                target_settings_hash: Some("tgt"),
                example: None,
            },
        );
        // Only the judge's own call: the target's is in the target's trace.
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.spans[1]["startTimeUnixNano"], "1767268804100000000");
        assert_eq!(t.spans[1]["endTimeUnixNano"], "1767268804124000000");
        assert_eq!(t.spans[0]["startTimeUnixNano"], "1767268804100000000");
        assert_eq!(t.spans[0]["endTimeUnixNano"], "1767268804124000000");
        assert_eq!(
            t.info_request("1", "r")["trace"]["trace_info"]["execution_duration"],
            "0.024s"
        );
        let target_id = format!("tr-{}", trace_id(&owner(), "tgt", "u1"));
        assert!(t
            .tags
            .contains(&(TARGET_TRACE_TAG.to_string(), target_id.clone())));
        // The target's own trace (its stream's settings hash) is that trace.
        let target_trace = build(
            &owner(),
            &ItemRecords {
                namespace: "llm_judge.target",
                method: "llm_judge.target",
                settings_hash: "tgt",
                record: &target,
                calls: &[],
                target: None,
                target_settings_hash: None,
                example: None,
            },
        );
        assert_eq!(target_trace.mlflow_id(), target_id);
    }

    #[test]
    fn a_trace_selection_picks_all_problems_or_a_stable_sample() {
        assert_eq!(TraceSelection::parse("all"), Ok(TraceSelection::All));
        assert_eq!(
            TraceSelection::parse(" problems "),
            Ok(TraceSelection::Problems)
        );
        assert_eq!(
            TraceSelection::parse("sample:0.25"),
            Ok(TraceSelection::Sample(0.25))
        );
        for bad in ["sample:0", "sample:1.5", "sample:x", "some", ""] {
            assert!(TraceSelection::parse(bad).is_err(), "{bad}");
        }
        let right = json!({"uuid": "u", "gold": "tool_call", "prediction": "tool_call"});
        let wrong = json!({"uuid": "u", "gold": "tool_call", "prediction": "direct"});
        let unparsed = json!({"uuid": "u", "gold": "tool_call", "prediction": "invalid"});
        let flagged = json!({"uuid": "u", "gold": "tool_call", "prediction": "tool_call",
                             "audit": [{"event_type": "x", "severity": "warning"}]});
        let p = TraceSelection::Problems;
        assert!(!p.selects("mcq", &right, None));
        assert!(p.selects("mcq", &wrong, None));
        assert!(p.selects("mcq", &unparsed, None));
        assert!(p.selects("mcq", &flagged, None));
        // A target answer follows its judge's verdict, none yet: not traced.
        let target = json!({"uuid": "u", "key": "u", "text": "hi"});
        assert!(!p.selects("llm_judge.target", &target, None));
        assert!(p.selects("llm_judge.target", &target, Some(&wrong)));
        assert!(!p.selects("llm_judge.target", &target, Some(&right)));
        // A sample is the same examples whatever the session, about its share.
        let s = TraceSelection::Sample(0.3);
        let picked = (0..2000)
            .filter(|i| s.selects("mcq", &json!({"uuid": format!("ex-{i}")}), None))
            .count();
        assert!((450..750).contains(&picked), "{picked}");
        assert_eq!(
            s.selects("mcq", &json!({"uuid": "ex-7"}), None),
            s.selects(
                "llm_judge",
                &json!({"uuid": "ex-7", "prediction": "x"}),
                None
            )
        );
    }

    #[test]
    fn unscored_items_and_audit_events_become_feedback() {
        let record = json!({"key": "u1", "uuid": "u1", "gold": "direct",
            "predictions": ["invalid", "invalid", "invalid", "invalid"],
            "unscored": {"reason": "context_overflow", "detail": "too long"},
            "audit": [{"event_type": "unscored", "severity": "warning", "details": {}}]});
        let t = build(
            &owner(),
            &ItemRecords {
                namespace: "mcq_logprob",
                method: "mcq_logprob",
                settings_hash: "abc",
                record: &record,
                calls: &[],
                target: None,
                target_settings_hash: None,
                example: None,
            },
        );
        let names: Vec<&str> = t.assessments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["expected_behavior", "unscored", "audit.unscored"]);
        assert_eq!(t.spans.len(), 1);
    }
}
