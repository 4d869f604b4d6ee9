//! `mcq`: the four candidate answers as a multiple-choice question.
//!
//! The model sees the tools, the question and the four candidates under
//! option labels (default `A`–`D`, dataset order; optionally shuffled per
//! example and with behaviour names shown). Its reply is parsed into one
//! option; a reply that names no option, or several, is an `invalid`
//! prediction (counted wrong, never coerced into a class) and is audited.

use super::{Bound, Concluding, Conclusion, Method, Plan, Scores, Sweep};
use crate::audit::{AuditEvent, Severity};
use crate::chat_templates::ScoringTemplate;
use crate::config::{McqConfig, OptionOrder};
use crate::dataset::Example;
use crate::engine::WorkItem;
use crate::engine::{ItemError, ItemOutput};
use crate::fingerprint::sha256_hex;
use crate::labels::{Label, Prediction};
use crate::llm::{CallItem, CallRecord};
use crate::llm::{ChatRequest, Message, Usage};
use crate::official_task::RenderError;
use crate::prompts::{self, Template};
use crate::store::{MethodSettings, NamespaceDir, PredictionRow};
use anyhow::{bail, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// Method name.
pub const NAME: &str = "mcq";

/// Version of the reply parser; part of the settings hash.
pub const PARSER_VERSION: u32 = 1;

/// Placeholders the mcq template may use (`context` only with a
/// `context` template configured).
pub const PLACEHOLDERS: &[&str] = &["tools", "question", "options", "label_list", "context"];

/// Everything the mcq method needs, resolved once per run.
#[derive(Debug, Clone)]
pub struct Mcq {
    /// The method config.
    pub config: McqConfig,
    /// The loaded prompt template.
    pub template: Template,
    /// The reply parser for the configured option labels.
    pub parser: ChoiceParser,
    /// Target model name.
    pub model: String,
    /// Run seed.
    pub seed: u64,
    /// The sweep this is a repetition of (`stability_mcq`), if any.
    pub sweep: Option<Sweep>,
    /// The scoring template whose context and choices the model is shown
    /// (`[methods.mcq] context`), if any.
    pub context: Option<ScoringTemplate>,
}

/// A model's reply to one `mcq` request, as the record keeps it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The reply text.
    pub text: String,
    /// Token usage.
    pub usage: Usage,
    /// Attempts the call took.
    pub attempts: u32,
    /// Call latency including retries, milliseconds.
    pub latency_ms: u64,
}

/// How a reply was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseStatus {
    /// The whole reply is an option label (possibly wrapped in punctuation).
    Exact,
    /// An explicit phrase such as `Answer: B` or `option B`.
    Phrase,
    /// Exactly one distinct option label appears in the reply.
    Unique,
    /// Several different labels appear; no choice is made.
    Ambiguous,
    /// No option label appears.
    NoOption,
    /// The reply was empty.
    Empty,
}

impl ParseStatus {
    /// Whether the status yields a choice.
    pub fn is_parsed(self) -> bool {
        matches!(
            self,
            ParseStatus::Exact | ParseStatus::Phrase | ParseStatus::Unique
        )
    }
}

/// The checkpoint record of one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McqRecord {
    /// Checkpoint key (the uuid).
    pub key: String,
    /// Example uuid.
    pub uuid: String,
    /// Repeat index, for stability sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Gold label.
    pub gold: Label,
    /// Predicted label, or `invalid`.
    pub prediction: Prediction,
    /// Option label the model chose, if any.
    pub chosen_option: Option<String>,
    /// The behaviours in the order they were shown.
    pub option_order: Vec<Label>,
    /// Number of tools offered (needed for ToolHall).
    pub n_tools: usize,
    /// The model's raw reply.
    pub raw_output: String,
    /// How the reply was parsed.
    pub parse_status: ParseStatus,
    /// Token usage.
    pub usage: Usage,
    /// Attempts the call took.
    pub attempts: u32,
    /// Call latency, milliseconds.
    pub latency_ms: u64,
    /// Audit events of this item.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
}

crate::engine::record_with_fields!(McqRecord);

impl Mcq {
    /// Resolves the method from config: loads the prompt template.
    pub fn new(config: &McqConfig, model: &str, seed: u64) -> Result<Mcq> {
        let template = prompts::load(config.prompt_id(), PLACEHOLDERS)?;
        let context = match &config.context {
            Some(name) => Some(
                ScoringTemplate::parse(name)
                    .map_err(|e| anyhow::anyhow!("key `methods.mcq.context`: {e}"))?
                    .template,
            ),
            None => None,
        };
        let uses_context = [&template.system, &template.user]
            .iter()
            .any(|t| t.contains("{{context}}"));
        match (context.is_some(), uses_context) {
            (true, false) => bail!(
                "key `methods.mcq.prompt`: prompt {} does not use {{{{context}}}}, which `methods.mcq.context` fills (leave `prompt` out for builtin:mcq_context_v1)",
                template.id
            ),
            (false, true) => bail!(
                "key `methods.mcq.prompt`: prompt {} uses {{{{context}}}}, which needs `methods.mcq.context` (a template name such as \"when2call\")",
                template.id
            ),
            _ => {}
        }
        Ok(Mcq {
            context,
            config: config.clone(),
            template,
            parser: ChoiceParser::new(&config.option_labels)?,
            model: model.to_string(),
            seed,
            sweep: None,
        })
    }

    /// The same method as a stability sweep.
    pub fn with_sweep(&self, sweep: Sweep) -> Mcq {
        Mcq {
            sweep: Some(sweep),
            ..self.clone()
        }
    }

    fn plain_settings(&self) -> MethodSettings {
        let c = &self.config;
        let mut settings = json!({
            "method": NAME,
            "option_labels": c.option_labels,
            "order": c.order,
            "show_behavior_names": c.show_behavior_names,
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
            "prompt_id": self.template.id,
            "prompt_sha256": self.template.sha256,
            "parser_version": PARSER_VERSION,
        });
        // Only with a context template, so the settings (and namespaces) of
        // sessions written before it stay as they were.
        if let (Some(t), Some(obj)) = (self.context, settings.as_object_mut()) {
            obj.insert("context".into(), json!(t.name()));
            obj.insert("context_sha256".into(), json!(t.sha256()));
        }
        MethodSettings::new(NAME, settings)
    }

    /// The order in which the behaviours are shown for an example.
    pub fn option_order(&self, uuid: &str) -> [Label; 4] {
        let mut order = Label::ALL;
        if self.config.order == OptionOrder::Shuffled {
            let digest = sha256_hex(format!("{}\u{0}{uuid}", self.seed).as_bytes());
            let seed = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
            crate::dataset::shuffle_with_seed(&mut order, seed);
        }
        order
    }

    /// Builds the chat request for an example (and repetition, in a sweep:
    /// the sweep's temperature and the repetition's seed). With a context
    /// template, `{{context}}` is its rendering of the example and the
    /// options are its four choice strings (e.g. the tool call in the
    /// template's syntax); it fails only on a row that template cannot render.
    pub fn request(
        &self,
        example: &Example,
        order: &[Label; 4],
        repeat: Option<u32>,
    ) -> Result<ChatRequest, RenderError> {
        let labels = &self.config.option_labels;
        let (context, answers) = match self.context {
            Some(t) => {
                let p = t.render(example)?;
                (p.context, p.choices)
            }
            None => (String::new(), example.answers.clone()),
        };
        let mut options = String::new();
        for (i, label) in order.iter().enumerate() {
            if i > 0 {
                options.push('\n');
            }
            let answer = &answers[label.index()];
            if self.config.show_behavior_names {
                options.push_str(&format!("{}) [{}] {}", labels[i], label, answer));
            } else {
                options.push_str(&format!("{}) {}", labels[i], answer));
            }
        }
        let tools = if example.tools.is_empty() {
            "(none)".to_string()
        } else {
            example.tools.join("\n")
        };
        let label_list = match labels.as_slice() {
            [a, b, c, d] => format!("{a}, {b}, {c} or {d}"),
            other => other.join(", "),
        };
        let values = [
            ("tools", tools.as_str()),
            ("question", example.question.as_str()),
            ("options", options.as_str()),
            ("label_list", label_list.as_str()),
            ("context", context.as_str()),
        ];
        let mut messages = Vec::new();
        if !self.template.system.is_empty() {
            messages.push(Message::system(prompts::render(
                &self.template.system,
                &values,
            )));
        }
        messages.push(Message::user(prompts::render(&self.template.user, &values)));
        let (temperature, seed) = match &self.sweep {
            Some(sweep) => (
                sweep.temperature,
                sweep.seed(self.seed, repeat.unwrap_or(0)),
            ),
            None => (self.config.temperature, self.seed),
        };
        Ok(ChatRequest {
            model: self.model.clone(),
            messages,
            temperature: Some(temperature),
            max_tokens: Some(self.config.max_tokens),
            seed: Some(seed),
            ..ChatRequest::default()
        })
    }

    /// Turns a reply into a record (prediction, parse status, audit events).
    pub fn record(
        &self,
        example: &Example,
        repeat: Option<u32>,
        order: [Label; 4],
        answer: Answer,
    ) -> McqRecord {
        let Answer {
            text: raw_output,
            usage,
            attempts,
            latency_ms,
        } = answer;
        let (choice, status) = self.parser.parse(&raw_output);
        let prediction = match choice {
            Some(i) => Prediction::Label(order[i]),
            None => Prediction::Invalid,
        };
        let key = WorkItem::key_for(&example.uuid, repeat);
        let mut audit = Vec::new();
        if !status.is_parsed() {
            let preview: String = raw_output.chars().take(200).collect();
            audit.push(AuditEvent::new(
                &key,
                &example.uuid,
                NAME,
                "parsing",
                if status == ParseStatus::Empty {
                    "empty_reply"
                } else {
                    "mcq_parse_failed"
                },
                Severity::Error,
                json!({
                    "parse_status": status,
                    "raw_preview": preview,
                    "prediction": "invalid",
                    "gold": example.gold,
                }),
            ));
        }
        McqRecord {
            key,
            uuid: example.uuid.clone(),
            repeat,
            gold: example.gold,
            prediction,
            chosen_option: choice.map(|i| self.config.option_labels[i].clone()),
            option_order: order.to_vec(),
            n_tools: example.tools.len(),
            raw_output,
            parse_status: status,
            usage,
            attempts,
            latency_ms,
            audit,
        }
    }
}

impl Plan for Mcq {
    /// The settings that define this method's namespace (a sweep's include
    /// the plain method's settings hash).
    fn settings(&self) -> MethodSettings {
        let plain = self.plain_settings();
        let Some(sweep) = &self.sweep else {
            return plain;
        };
        let name = super::sweep_name(NAME, sweep.k, sweep.temperature);
        let value = json!({
            "method": name,
            "mcq_settings_hash": plain.settings_hash,
            "k": sweep.k,
            "temperature": sweep.temperature,
            "seed_mode": sweep.seed_mode,
        });
        MethodSettings::new(&name, value)
    }

    /// Work items: one per example, or K per example in a sweep.
    fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        match &self.sweep {
            Some(sweep) => sweep.items(examples),
            None => super::one_item_per_example(examples),
        }
    }

    fn repeats(&self) -> usize {
        self.sweep.map_or(1, |s| s.k as usize)
    }
}

/// Whether `text[start..end]` is part of a decimal number such as `0.5`.
fn part_of_number(text: &str, start: usize, end: usize) -> bool {
    let mut after = text[end..].chars();
    let sep_digit_after =
        matches!(after.next(), Some('.' | ',')) && after.next().is_some_and(|c| c.is_ascii_digit());
    let mut before = text[..start].chars().rev();
    let sep_digit_before = matches!(before.next(), Some('.' | ','))
        && before.next().is_some_and(|c| c.is_ascii_digit());
    sep_digit_after || sep_digit_before
}

/// Parses replies into the index of the chosen option label.
///
/// Order of rules: the whole reply is a label (ignoring surrounding
/// punctuation, markdown emphasis and case); an explicit phrase (`answer:`,
/// `answer is`, `option`, `choice`) followed by a label; otherwise the reply
/// must contain exactly one distinct label as a standalone token (matched
/// case-sensitively, so the article "a" is not option `A`, and digits inside
/// decimals such as `0.5` do not count). Anything else is not coerced into a
/// choice.
#[derive(Debug, Clone)]
pub struct ChoiceParser {
    labels: Vec<String>,
    phrase: Regex,
    standalone: Regex,
}

impl ChoiceParser {
    /// Compiles the parser for a set of option labels.
    pub fn new(labels: &[String]) -> Result<ChoiceParser> {
        let alternatives = labels
            .iter()
            .map(|l| regex::escape(l))
            .collect::<Vec<_>>()
            .join("|");
        Ok(ChoiceParser {
            labels: labels.to_vec(),
            phrase: Regex::new(&format!(
                r"(?i)\b(?:answer|option|choice|candidate|reply)\s*(?:is|:)?\s*[\(\[\*]*\s*({alternatives})\b"
            ))?,
            standalone: Regex::new(&format!(r"\b({alternatives})\b"))?,
        })
    }

    /// Parses one reply.
    pub fn parse(&self, raw: &str) -> (Option<usize>, ParseStatus) {
        let labels = &self.labels;
        let text = super::strip_reasoning(raw, super::OpenThink::Drop);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return (None, ParseStatus::Empty);
        }
        let bare = trimmed.trim_matches(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '*' | '_' | '`' | '"' | '\'' | '(' | ')' | '[' | ']' | '.' | ':' | ','
                )
        });
        if let Some(i) = labels.iter().position(|l| l.eq_ignore_ascii_case(bare)) {
            return (Some(i), ParseStatus::Exact);
        }
        let found: Vec<usize> = self
            .phrase
            .captures_iter(trimmed)
            .filter_map(|c| c.get(1))
            .filter_map(|m| {
                labels
                    .iter()
                    .position(|l| l.eq_ignore_ascii_case(m.as_str()))
            })
            .collect();
        if let Some(&first) = found.first() {
            if found.iter().all(|&i| i == first) {
                return (Some(first), ParseStatus::Phrase);
            }
            return (None, ParseStatus::Ambiguous);
        }
        let mut seen: Vec<usize> = Vec::new();
        for m in self.standalone.find_iter(trimmed) {
            if part_of_number(trimmed, m.start(), m.end()) {
                continue;
            }
            if let Some(i) = labels.iter().position(|l| l == m.as_str()) {
                if !seen.contains(&i) {
                    seen.push(i);
                }
            }
        }
        match seen.as_slice() {
            [only] => (Some(*only), ParseStatus::Unique),
            [] => (None, ParseStatus::NoOption),
            _ => (None, ParseStatus::Ambiguous),
        }
    }
}

/// `mcq` (or one of its sweeps) as the runner runs it: the method bound to
/// the target model.
pub type McqRun = Bound<Mcq>;

impl Method for Bound<Mcq> {
    type Record = McqRecord;
    type Plan = Mcq;

    fn bound(&self) -> &Bound<Mcq> {
        self
    }

    async fn before_items(&self, ns: &NamespaceDir, examples: &[Example]) -> Result<Vec<String>> {
        if let Some(t) = self.plan.context {
            super::check_renders(&ns.name, t, examples)?;
        }
        Ok(Vec::new())
    }

    async fn work(
        &self,
        ns: &str,
        item: WorkItem,
        example: &Example,
        _steps: crate::engine::ItemSteps,
    ) -> ItemOutput<McqRecord> {
        let order = self.plan.option_order(&example.uuid);
        let req = match self.plan.request(example, &order, item.repeat) {
            Ok(r) => r,
            // Not expected: every row is checked before the items run.
            Err(e) => {
                return ItemOutput {
                    calls: Vec::new(),
                    result: Err(ItemError {
                        message: e.to_string(),
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
            Ok(reply) => Ok(self.plan.record(
                example,
                item.repeat,
                order,
                Answer {
                    text: reply.text,
                    usage: reply.usage,
                    attempts: outcome.attempts.len() as u32,
                    latency_ms: outcome.latency_ms,
                },
            )),
            Err(e) => Err(ItemError::from_call(&e)),
        };
        ItemOutput {
            calls: vec![call],
            result,
        }
    }

    fn conclude(&self, ctx: &Concluding<'_>, records: &[&McqRecord]) -> Result<Conclusion> {
        let scores = match &self.plan.sweep {
            Some(sweep) => {
                let by_key: HashMap<&str, Prediction> = records
                    .iter()
                    .map(|r| (r.key.as_str(), r.prediction))
                    .collect();
                sweep.conclude(ctx.examples, ctx.seed, |key| by_key.get(key).copied())
            }
            None => {
                let stored_in = ctx.results_path();
                Scores {
                    n_examples: records.len(),
                    metrics: super::score(
                        &records
                            .iter()
                            .map(|r| (r.gold, r.prediction, r.n_tools))
                            .collect::<Vec<_>>(),
                    ),
                    counts: super::status_counts(records.iter().map(|r| r.parse_status))?,
                    stability: None,
                    variants: None,
                    official_judge: None,
                    predictions: records
                        .iter()
                        .map(|r| {
                            PredictionRow::new(&r.uuid, r.gold, r.n_tools, Some(r.prediction))
                                .with(json!({
                                    "chosen_option": r.chosen_option,
                                    "option_order": r.option_order,
                                    "parse_status": r.parse_status,
                                    "raw_output": r.raw_output,
                                }))
                                .shortened(&["raw_output"], &stored_in)
                        })
                        .collect(),
                    consistencies: None,
                }
            }
        };
        Ok(Conclusion {
            scores: Some(scores),
            ..Conclusion::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abcd() -> Vec<String> {
        ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_common_reply_shapes() {
        let l = ChoiceParser::new(&abcd()).unwrap();
        let cases = [
            ("B", Some(1), ParseStatus::Exact),
            ("  (c) ", Some(2), ParseStatus::Exact),
            ("**D**", Some(3), ParseStatus::Exact),
            ("A.", Some(0), ParseStatus::Exact),
            ("Answer: B", Some(1), ParseStatus::Phrase),
            ("The answer is (C).", Some(2), ParseStatus::Phrase),
            ("I pick option d because...", Some(3), ParseStatus::Phrase),
            ("<think>maybe A or B</think>C", Some(2), ParseStatus::Exact),
            ("Clearly B fits.", Some(1), ParseStatus::Unique),
            ("B or C", None, ParseStatus::Ambiguous),
            (
                "Answer: B. No wait, answer: C",
                None,
                ParseStatus::Ambiguous,
            ),
            ("I am not sure.", None, ParseStatus::NoOption),
            ("", None, ParseStatus::Empty),
            ("<think>A</think>", None, ParseStatus::Empty),
        ];
        for (raw, idx, status) in cases {
            assert_eq!(l.parse(raw), (idx, status), "{raw:?}");
        }
    }

    #[test]
    fn digit_labels() {
        let labels: Vec<String> = ["0", "1", "2", "3"].iter().map(|s| s.to_string()).collect();
        let l = ChoiceParser::new(&labels).unwrap();
        assert_eq!(l.parse("2"), (Some(2), ParseStatus::Exact));
        assert_eq!(l.parse("0.5"), (None, ParseStatus::NoOption));
        assert_eq!(
            l.parse("Scores 0.5 and 1.25, so 3"),
            (Some(3), ParseStatus::Unique)
        );
        assert_eq!(l.parse("4"), (None, ParseStatus::NoOption));
    }

    fn example() -> Example {
        Example {
            uuid: "u1".into(),
            question: "What is the weather in Oslo?".into(),
            gold: Label::ToolCall,
            answers: ["d".into(), "t".into(), "r".into(), "c".into()],
            tools: vec!["{\"name\":\"w\"}".into()],
            source: String::new(),
        }
    }

    fn mcq(order: OptionOrder) -> Mcq {
        let cfg = McqConfig {
            order,
            ..McqConfig::default()
        };
        Mcq::new(&cfg, "m", 7).unwrap()
    }

    #[test]
    fn request_lists_options_in_order() {
        let m = mcq(OptionOrder::Fixed);
        let order = m.option_order("u1");
        assert_eq!(order, Label::ALL);
        let req = m.request(&example(), &order, None).unwrap();
        let user = &req.messages.last().unwrap().content;
        assert!(user.contains("A) d\nB) t\nC) r\nD) c"), "{user}");
        assert!(user.contains("A, B, C or D"));
        assert!(!user.contains("tool_call"));
    }

    #[test]
    fn a_context_template_shows_its_context_and_choices() {
        let cfg = McqConfig {
            context: Some("when2call-llama3_2".into()),
            ..McqConfig::default()
        };
        let m = Mcq::new(&cfg, "m", 7).unwrap();
        let mut ex = example();
        ex.answers[1] = r#"{"name": "w", "arguments": {"city": "Oslo"}}"#.into();
        ex.tools = vec![r#"{"name": "w", "description": "weather"}"#.into()];
        let req = m.request(&ex, &Label::ALL, None).unwrap();
        let user = &req.messages.last().unwrap().content;
        let official = crate::official_task::OfficialVariant::Llama3_2
            .render_example(&ex)
            .unwrap();
        assert!(
            user.contains(&format!("<<<PROMPT\n{}\nPROMPT>>>", official.context)),
            "{user}"
        );
        assert!(user.contains("B) [w(city=\"Oslo\")]"), "{user}");
        assert_eq!(m.template.id, "builtin:mcq_context_v1");
        let s = m.settings();
        assert_eq!(s.settings["context"], "when2call-llama3_2");
        assert_eq!(
            s.settings["context_sha256"],
            crate::official_task::OfficialVariant::Llama3_2.template_sha256()
        );
        // Without a context the settings are what they always were.
        assert!(mcq(OptionOrder::Fixed)
            .settings()
            .settings
            .get("context")
            .is_none());
        // A row the template cannot render is an error, not a guess.
        ex.answers[1] = "not json".into();
        assert!(m.request(&ex, &Label::ALL, None).is_err());
        // The prompt and the context go together.
        let err = Mcq::new(
            &McqConfig {
                context: Some("when2call".into()),
                prompt: Some("builtin:mcq_v1".into()),
                ..McqConfig::default()
            },
            "m",
            7,
        )
        .unwrap_err();
        assert!(err.to_string().contains("{{context}}"), "{err}");
        let err = Mcq::new(
            &McqConfig {
                prompt: Some("builtin:mcq_context_v1".into()),
                ..McqConfig::default()
            },
            "m",
            7,
        )
        .unwrap_err();
        assert!(err.to_string().contains("methods.mcq.context"), "{err}");
    }

    #[test]
    fn shuffled_order_is_a_deterministic_permutation() {
        let m = mcq(OptionOrder::Shuffled);
        let a = m.option_order("u1");
        assert_eq!(a, m.option_order("u1"));
        let mut sorted = a;
        sorted.sort();
        assert_eq!(sorted, Label::ALL);
        let distinct: std::collections::HashSet<[Label; 4]> =
            (0..40).map(|i| m.option_order(&format!("u{i}"))).collect();
        assert!(distinct.len() > 5);
        assert_ne!(mcq(OptionOrder::Fixed).settings(), m.settings());
    }

    #[test]
    fn invalid_reply_is_audited_not_coerced() {
        let m = mcq(OptionOrder::Fixed);
        let answer = |text: &str| Answer {
            text: text.into(),
            usage: Usage::default(),
            attempts: 1,
            latency_ms: 0,
        };
        let r = m.record(&example(), None, Label::ALL, answer("no idea"));
        assert_eq!(r.prediction, Prediction::Invalid);
        assert_eq!(r.audit.len(), 1);
        assert_eq!(r.audit[0].event_type, "mcq_parse_failed");
        let ok = m.record(&example(), None, Label::ALL, answer("B"));
        assert_eq!(ok.prediction, Prediction::Label(Label::ToolCall));
        assert!(ok.audit.is_empty());
    }
}
