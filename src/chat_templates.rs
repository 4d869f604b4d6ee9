//! The prompts `mcq_logprob` scores (and `mcq` can show) as raw text:
//! [`ScoringTemplate`], either one of the official When2Call lm-eval task
//! prompts ([`crate::official_task`], named after the task: `when2call`, the
//! default, `when2call-hermes`, ...) or one of w2c's own chat families
//! (`w2c-default`, `w2c-hermes`, ...).
//!
//! w2c's own families ([`Family`]) render the tools and the question the way
//! that family's chat format expects, ending where the assistant's reply
//! begins, and render a `tool_call` candidate answer in the family's
//! tool-call syntax. System wording is w2c's own; the structure (special
//! tokens, section markers) follows each family's published format. Before
//! the official prompts existed they were `mcq_logprob`'s only templates,
//! named without the `w2c-` prefix (`default`, `hermes`, ...) and chosen
//! from the model name ([`Family::for_model`]) when none was given; both
//! still work, for configs and sessions written then.

use crate::dataset::Example;
use crate::fingerprint::sha256_hex;
use crate::labels::Label;
use crate::official_task::{OfficialPrompt, OfficialVariant, RenderError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The template `mcq_logprob` uses when the config names none: the
/// official `when2call` task's prompt.
pub const DEFAULT_TEMPLATE: &str = "when2call";

/// Prefix of the names of w2c's own families.
pub const W2C_PREFIX: &str = "w2c-";

/// A prompt for scoring the four answers as continuations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoringTemplate {
    /// An official When2Call lm-eval task prompt, byte for byte.
    Official(OfficialVariant),
    /// One of w2c's own families.
    W2c(Family),
}

/// A template name in a config: which template, and whether it was spelled
/// the way configs did before the official prompts (a bare family name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTemplate {
    /// The template.
    pub template: ScoringTemplate,
    /// The name was a bare family name (`hermes` for `w2c-hermes`).
    pub legacy_name: bool,
}

impl ScoringTemplate {
    /// Every template: the official ones first, then w2c's families.
    pub fn all() -> Vec<ScoringTemplate> {
        OfficialVariant::ALL
            .into_iter()
            .map(ScoringTemplate::Official)
            .chain(Family::ALL.into_iter().map(ScoringTemplate::W2c))
            .collect()
    }

    /// Reads a template name: an official task name, `w2c-<family>`, or a
    /// bare family name (the spelling before the official prompts).
    pub fn parse(name: &str) -> Result<ParsedTemplate, String> {
        if let Ok(v) = name.parse::<OfficialVariant>() {
            return Ok(ParsedTemplate {
                template: ScoringTemplate::Official(v),
                legacy_name: false,
            });
        }
        let (bare, legacy_name) = match name.strip_prefix(W2C_PREFIX) {
            Some(rest) => (rest, false),
            None => (name, true),
        };
        match Family::ALL.into_iter().find(|f| f.as_str() == bare) {
            Some(f) => Ok(ParsedTemplate {
                template: ScoringTemplate::W2c(f),
                legacy_name,
            }),
            None => Err(format!(
                "unknown template {name:?} (expected one of {})",
                ScoringTemplate::all()
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The template's name: the official task name, or `w2c-<family>`.
    pub fn name(self) -> String {
        match self {
            ScoringTemplate::Official(v) => v.as_str().to_string(),
            ScoringTemplate::W2c(f) => format!("{W2C_PREFIX}{}", f.as_str()),
        }
    }

    /// sha256 identifying the template's text: the official variant's
    /// [`OfficialVariant::template_sha256`]; for a w2c family, the sha256 of
    /// its rendering of a fixed specimen row ([`specimen`]).
    pub fn sha256(self) -> String {
        match self {
            ScoringTemplate::Official(v) => v.template_sha256(),
            ScoringTemplate::W2c(f) => {
                let p = render_family(f, &specimen());
                let text = serde_json::json!({"template": self.name(), "specimen": p});
                sha256_hex(text.to_string().as_bytes())
            }
        }
    }

    /// The example's context (ending where the answer begins, no delimiter)
    /// and its four choice strings in [`Label::ALL`] order. Only an official
    /// template can fail, on a row its `utils.py` cannot render (or that w2c
    /// cannot reproduce exactly); the error names the variant and the field.
    pub fn render(self, example: &Example) -> Result<OfficialPrompt, RenderError> {
        match self {
            ScoringTemplate::Official(v) => v.render_example(example),
            ScoringTemplate::W2c(f) => Ok(render_family(f, example)),
        }
    }
}

fn render_family(f: Family, example: &Example) -> OfficialPrompt {
    OfficialPrompt {
        context: render_context(f, &example.tools, &example.question),
        choices: Label::ALL.map(|l| render_answer(f, l == Label::ToolCall, example.answer(l))),
    }
}

/// A fixed row with multi-byte text in the question, a tool and the answers
/// (accented Latin and CJK): the capability probe's example, and what a w2c
/// family's [`ScoringTemplate::sha256`] renders.
pub fn specimen() -> Example {
    Example {
        uuid: "w2c-specimen".into(),
        question: "Quel temps fait-il à Zürich? 天气如何？".into(),
        gold: Label::ToolCall,
        answers: [
            "Il fait beau.".into(),
            r#"{"name": "météo", "arguments": {"ville": "Zürich"}}"#.into(),
            "Pour quelle date ?".into(),
            "好的，café。".into(),
        ],
        tools: vec![
            r#"{"name": "météo", "description": "Le temps qu'il fait", "parameters": {"type": "object", "properties": {"ville": {"type": "string"}}}}"#
                .into(),
        ],
        source: "w2c".into(),
    }
}

/// A chat-format family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Plain text: instructions, tools, question.
    Default,
    /// Llama 3.x header tokens with JSON tool calls.
    Llama3_2,
    /// Qwen 2.5 ChatML with `<tools>` and `<tool_call>`.
    Qwen2_5,
    /// Hermes function-calling ChatML.
    Hermes,
    /// Salesforce xLAM task/tools/format/query sections.
    Xlam,
    /// Functionary (`>>>name` tool calls).
    Functionary,
}

impl Family {
    /// The family's name (its serde name; `w2c-` + this is its template name).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Default => "default",
            Family::Llama3_2 => "llama3_2",
            Family::Qwen2_5 => "qwen2_5",
            Family::Hermes => "hermes",
            Family::Xlam => "xlam",
            Family::Functionary => "functionary",
        }
    }

    /// The official task whose prompt follows the same model family's
    /// format (`when2call` for `default`).
    pub fn official(self) -> OfficialVariant {
        match self {
            Family::Default => OfficialVariant::When2call,
            Family::Llama3_2 => OfficialVariant::Llama3_2,
            Family::Qwen2_5 => OfficialVariant::Qwen2_5,
            Family::Hermes => OfficialVariant::Hermes,
            Family::Xlam => OfficialVariant::Xlam,
            Family::Functionary => OfficialVariant::Functionary,
        }
    }

    /// Every family.
    pub const ALL: [Family; 6] = [
        Family::Default,
        Family::Llama3_2,
        Family::Qwen2_5,
        Family::Hermes,
        Family::Xlam,
        Family::Functionary,
    ];

    /// The family a model name suggests; `Default` when nothing matches.
    pub fn for_model(model: &str) -> Family {
        let m = model.to_lowercase().replace(['_', ' '], "-");
        if m.contains("functionary") {
            Family::Functionary
        } else if m.contains("xlam") {
            Family::Xlam
        } else if m.contains("hermes") {
            Family::Hermes
        } else if m.contains("qwen2.5") || m.contains("qwen-2.5") || m.contains("qwen2-5") {
            Family::Qwen2_5
        } else if m.contains("llama-3") || m.contains("llama3") {
            Family::Llama3_2
        } else {
            Family::Default
        }
    }
}

const INSTRUCTIONS: &str = "You are an assistant that can use the tools listed below, and only those. \
Call a tool when one fits and every required argument is known; ask the user when a required argument is missing; \
say you cannot help when no tool fits; otherwise answer directly.";

fn tools_json(tools: &[String]) -> String {
    tools.join("\n")
}

/// The prompt up to where the assistant's reply starts.
pub fn render_context(family: Family, tools: &[String], question: &str) -> String {
    let tl = tools_json(tools);
    match family {
        Family::Default => format!(
            "{INSTRUCTIONS}\nTo call a tool, reply with JSON: {{\"name\": <tool name>, \"arguments\": <object>}}.\n\n{}\n\nUser: {question}\nAssistant:",
            tools.iter().map(|t| format!("<tool>{t}</tool>")).collect::<Vec<_>>().join("\n\n")
        ),
        Family::Llama3_2 => format!(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{INSTRUCTIONS}\nTo call a function, respond with JSON of the form {{\"name\": function name, \"parameters\": object of argument names and values}}.\n\n{tl}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        Family::Qwen2_5 | Family::Hermes => format!(
            "<|im_start|>system\n{INSTRUCTIONS}\n\n# Tools\n\nFunction signatures are inside <tools></tools>:\n<tools>\n{tl}\n</tools>\n\nFor a function call, return JSON with the function name and arguments inside <tool_call></tool_call> tags.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ),
        Family::Xlam => format!(
            "[BEGIN OF TASK INSTRUCTION]\n{INSTRUCTIONS}\n[END OF TASK INSTRUCTION]\n\n[BEGIN OF AVAILABLE TOOLS]\n[{}]\n[END OF AVAILABLE TOOLS]\n\n[BEGIN OF FORMAT INSTRUCTION]\nTool calls are written as {{\"tool_calls\": [{{\"name\": ..., \"arguments\": {{...}}}}]}}.\n[END OF FORMAT INSTRUCTION]\n\n[BEGIN OF QUERY]\n{question}\n[END OF QUERY]\n\n",
            tools.join(", ")
        ),
        Family::Functionary => format!(
            "<|start_header_id|>system<|end_header_id|>\n\n// Functions you can call:\n{tl}\n\n{INSTRUCTIONS}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
    }
}

/// A candidate answer in the family's syntax; `tool_call` answers (JSON with
/// `name` and `arguments`) are rewritten, others are returned as they are.
pub fn render_answer(family: Family, label_is_tool_call: bool, answer: &str) -> String {
    if !label_is_tool_call {
        return answer.to_string();
    }
    let Ok(Value::Object(call)) = serde_json::from_str::<Value>(answer) else {
        return answer.to_string();
    };
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = call
        .get("arguments")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    match family {
        Family::Default => answer.to_string(),
        Family::Llama3_2 => serde_json::json!({"name": name, "parameters": args}).to_string(),
        Family::Qwen2_5 | Family::Hermes => format!(
            "<tool_call>\n{}\n</tool_call>",
            serde_json::json!({"name": name, "arguments": args})
        ),
        Family::Xlam => {
            serde_json::json!({"tool_calls": [{"name": name, "arguments": args}]}).to_string()
        }
        Family::Functionary => format!(">>>{name}\n{args}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_name_rules() {
        assert_eq!(
            Family::for_model("meta-llama/Llama-3.2-3B-Instruct"),
            Family::Llama3_2
        );
        assert_eq!(
            Family::for_model("Qwen/Qwen2.5-7B-Instruct"),
            Family::Qwen2_5
        );
        assert_eq!(
            Family::for_model("NousResearch/Hermes-3-Llama-3.1-8B"),
            Family::Hermes
        );
        assert_eq!(Family::for_model("Salesforce/xLAM-7b-fc-r"), Family::Xlam);
        assert_eq!(
            Family::for_model("meetkai/functionary-small-v3.2"),
            Family::Functionary
        );
        assert_eq!(Family::for_model("gpt-4o-mini"), Family::Default);
    }

    #[test]
    fn template_names() {
        for t in ScoringTemplate::all() {
            let p = ScoringTemplate::parse(&t.name()).unwrap();
            assert_eq!((p.template, p.legacy_name), (t, false));
        }
        assert_eq!(ScoringTemplate::all().len(), 12);
        let p = ScoringTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            p.template,
            ScoringTemplate::Official(OfficialVariant::When2call)
        );
        // The spelling of configs written before the official prompts.
        let p = ScoringTemplate::parse("hermes").unwrap();
        assert_eq!(
            (p.template, p.legacy_name),
            (ScoringTemplate::W2c(Family::Hermes), true)
        );
        assert_eq!(
            ScoringTemplate::parse("default").unwrap().template,
            ScoringTemplate::W2c(Family::Default)
        );
        let e = ScoringTemplate::parse("w2c-when2call").unwrap_err();
        assert!(
            e.contains("when2call-hermes") && e.contains("w2c-qwen2_5"),
            "{e}"
        );
        assert!(ScoringTemplate::parse("").is_err());
        for f in Family::ALL {
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::json!(f.as_str())
            );
        }
    }

    #[test]
    fn family_templates_are_pinned() {
        // w2c's families keep their text (sessions scored with them resume
        // in the same namespace): a change must be deliberate.
        let got: Vec<(String, String)> = Family::ALL
            .iter()
            .map(|&f| {
                let t = ScoringTemplate::W2c(f);
                (t.name(), t.sha256()[..16].to_string())
            })
            .collect();
        let want = [
            ("w2c-default", "fc0c65ef08125e9c"),
            ("w2c-llama3_2", "b50f02631fcf0a5c"),
            ("w2c-qwen2_5", "c8f0ac32fe9d7736"),
            ("w2c-hermes", "30157c79789f8ba2"),
            ("w2c-xlam", "31ce9e6cd926afb8"),
            ("w2c-functionary", "cebe4800088bbfdd"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        let official = ScoringTemplate::Official(OfficialVariant::Hermes);
        assert_eq!(official.sha256(), OfficialVariant::Hermes.template_sha256());
        // A family renders what render_context / render_answer give.
        let ex = specimen();
        let p = ScoringTemplate::W2c(Family::Xlam).render(&ex).unwrap();
        assert_eq!(
            p.context,
            render_context(Family::Xlam, &ex.tools, &ex.question)
        );
        assert_eq!(
            p.choices[1],
            render_answer(Family::Xlam, true, &ex.answers[1])
        );
        assert_eq!(p.choices[3], ex.answers[3]);
    }

    #[test]
    fn contexts_end_where_the_reply_starts_and_tool_calls_follow_the_family() {
        let tools = vec![r#"{"name":"w","parameters":{}}"#.to_string()];
        for f in Family::ALL {
            let c = render_context(f, &tools, "Weather in Oslo?");
            assert!(c.contains("Weather in Oslo?"), "{f:?}");
            assert!(c.contains("\"name\":\"w\""), "{f:?}");
        }
        assert!(render_context(Family::Qwen2_5, &tools, "q").ends_with("<|im_start|>assistant\n"));
        let call = r#"{"name": "w", "arguments": {"city": "Oslo"}}"#;
        assert_eq!(
            render_answer(Family::Functionary, true, call),
            ">>>w\n{\"city\":\"Oslo\"}"
        );
        assert!(render_answer(Family::Hermes, true, call).starts_with("<tool_call>\n"));
        assert!(render_answer(Family::Llama3_2, true, call).contains("\"parameters\""));
        assert_eq!(render_answer(Family::Xlam, false, "Sorry."), "Sorry.");
    }
}
