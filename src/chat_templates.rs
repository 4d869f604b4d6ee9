//! Chat templates per model family, for scoring prompts as raw text on
//! `/completions` (`mcq_logprob`).
//!
//! Each family renders the tools and the question the way that family's chat
//! format expects, ending where the assistant's reply begins, and renders a
//! `tool_call` candidate answer in the family's tool-call syntax. The family
//! is chosen explicitly or by a model-name rule ([`Family::for_model`]).
//! System wording is w2c's own; the structure (special tokens, section
//! markers) follows each family's published format.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
