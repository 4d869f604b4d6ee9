//! The official When2Call lm-evaluation-harness task prompts, rendered byte
//! for byte as NVIDIA's `utils.py` renders them.
//!
//! This module owns the six official variants ([`OfficialVariant`], named
//! after their lm-eval tasks), their fixed texts ([`templates`]), the
//! rendering of a row's prompt (lm-eval's context) and its four choice
//! strings ([`OfficialVariant::render`]), and the sha256 that identifies each
//! variant's template ([`OfficialVariant::template_sha256`]). The tasks use
//! `target_delimiter: ""`: a choice is appended to the context as is.
//!
//! Choice order: `utils.py` lists the choices in the order of the row's
//! `answers` keys; w2c always uses [`Label::ALL`] order (direct, tool_call,
//! request_for_info, cannot_answer). The two agree for every row whose
//! `answers` keys come in that order, as in the When2Call test files
//! (`tests/official_prompts.rs` checks the shared file).
//!
//! Where `utils.py` would raise for a row, or would produce text that cannot
//! be reproduced exactly (see [`python`]), rendering returns a
//! [`RenderError`] naming the variant and the row field; it never guesses.

pub mod python;
pub mod templates;

use crate::dataset::Example;
use crate::fingerprint::sha256_hex;
use crate::labels::Label;
use python::{json_dumps, json_loads, py_repr_str, py_str, py_strip, PyJsonError, PyValue};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use templates::{Template, ToolCallStyle, ToolsStyle};

/// Version of the rendering rules, part of every template's hashed text:
/// bump it when a rule (not a fixed text) changes what is rendered.
pub const RENDER_RULES_VERSION: u32 = 1;

/// One of the official lm-eval When2Call tasks; its serde name is the task name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OfficialVariant {
    /// `when2call`: plain instructions, tools in `<tool></tool>` (the default task).
    #[serde(rename = "when2call")]
    When2call,
    /// `when2call-functionary`: MeetKai Functionary (Llama 3.1 headers), `<function=...>` calls.
    #[serde(rename = "when2call-functionary")]
    Functionary,
    /// `when2call-hermes`: Hermes function calling (ChatML), `<tool_call>` calls.
    #[serde(rename = "when2call-hermes")]
    Hermes,
    /// `when2call-llama3_2`: Llama 3.2 headers, `[name(arg="v")]` calls.
    #[serde(rename = "when2call-llama3_2")]
    Llama3_2,
    /// `when2call-qwen2_5`: Qwen 2.5 ChatML with `<tools>`, JSON calls.
    #[serde(rename = "when2call-qwen2_5")]
    Qwen2_5,
    /// `when2call-xlam`: Salesforce xLAM sections, `{"tool_calls": [...]}` calls.
    #[serde(rename = "when2call-xlam")]
    Xlam,
}

impl OfficialVariant {
    /// Every variant, the default task first.
    pub const ALL: [OfficialVariant; 6] = [
        OfficialVariant::When2call,
        OfficialVariant::Functionary,
        OfficialVariant::Hermes,
        OfficialVariant::Llama3_2,
        OfficialVariant::Qwen2_5,
        OfficialVariant::Xlam,
    ];

    /// The lm-eval task name (`when2call`, `when2call-hermes`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OfficialVariant::When2call => "when2call",
            OfficialVariant::Functionary => "when2call-functionary",
            OfficialVariant::Hermes => "when2call-hermes",
            OfficialVariant::Llama3_2 => "when2call-llama3_2",
            OfficialVariant::Qwen2_5 => "when2call-qwen2_5",
            OfficialVariant::Xlam => "when2call-xlam",
        }
    }

    /// The variant's fixed texts and rules.
    pub fn template(self) -> &'static Template {
        match self {
            OfficialVariant::When2call => &templates::WHEN2CALL,
            OfficialVariant::Functionary => &templates::FUNCTIONARY,
            OfficialVariant::Hermes => &templates::HERMES,
            OfficialVariant::Llama3_2 => &templates::LLAMA3_2,
            OfficialVariant::Qwen2_5 => &templates::QWEN2_5,
            OfficialVariant::Xlam => &templates::XLAM,
        }
    }

    /// The variant's whole template as text: pretty JSON of the task name,
    /// [`RENDER_RULES_VERSION`], every fixed text and the rules that fill
    /// them in. What [`Self::template_sha256`] hashes.
    pub fn template_text(self) -> String {
        let record = serde_json::json!({
            "task": self.as_str(),
            "render_rules_version": RENDER_RULES_VERSION,
            "template": self.template(),
        });
        // Serialising a `Value` built from static strings cannot fail.
        serde_json::to_string_pretty(&record).unwrap_or_default()
    }

    /// Lowercase hex sha256 of [`Self::template_text`], to record which
    /// template produced a set of numbers.
    pub fn template_sha256(self) -> String {
        sha256_hex(self.template_text().as_bytes())
    }

    /// Renders a row: `tools` (each tool's JSON text, in row order), the
    /// question, and the four candidate answers in [`Label::ALL`] order.
    /// Returns lm-eval's context and the four choices in the same order.
    pub fn render(
        self,
        tools: &[String],
        question: &str,
        answers: &[String; 4],
    ) -> Result<OfficialPrompt, RenderError> {
        let t = self.template();
        // utils.py builds the choices before the prompt, so a row failing in
        // both reports the choice first, as it does.
        let mut choices = answers.clone();
        let tc = Label::ToolCall.index();
        choices[tc] = render_tool_call(t.tool_call, &answers[tc]).map_err(|p| p.at(self))?;
        let tools_text = render_tools(t.tools, tools).map_err(|p| p.at(self))?;
        let mut context = String::with_capacity(
            t.head.len() + tools_text.len() + t.middle.len() + question.len() + t.tail.len(),
        );
        context.push_str(t.head);
        context.push_str(&tools_text);
        context.push_str(t.middle);
        context.push_str(question);
        context.push_str(t.tail);
        Ok(OfficialPrompt { context, choices })
    }

    /// [`Self::render`] of a dataset example.
    pub fn render_example(self, example: &Example) -> Result<OfficialPrompt, RenderError> {
        self.render(&example.tools, &example.question, &example.answers)
    }
}

impl fmt::Display for OfficialVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a name that is not an official task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an official When2Call task (expected one of when2call, when2call-functionary, when2call-hermes, when2call-llama3_2, when2call-qwen2_5, when2call-xlam)")]
pub struct UnknownVariant(pub String);

impl FromStr for OfficialVariant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OfficialVariant::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

/// A rendered row: lm-eval's context and the four choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficialPrompt {
    /// The prompt the choices continue (no trailing delimiter).
    pub context: String,
    /// The choice strings in [`Label::ALL`] order.
    pub choices: [String; 4],
}

/// A row the variant cannot render exactly.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{variant}: field `{field}`: {problem}")]
pub struct RenderError {
    /// The variant being rendered.
    pub variant: OfficialVariant,
    /// The row field at fault (`tools[2]`, `answers.tool_call.arguments`, ...).
    pub field: String,
    /// What is wrong.
    pub problem: RenderProblem,
}

impl RenderError {
    /// True when `utils.py` itself fails on this row (so lm-eval cannot run
    /// it either); false when it renders something w2c cannot reproduce.
    pub fn python_raises(&self) -> bool {
        match &self.problem {
            RenderProblem::Json(PyJsonError::Invalid { .. })
            | RenderProblem::PythonRaises { .. } => true,
            RenderProblem::Json(PyJsonError::NotReproducible { .. })
            | RenderProblem::NotReproducible(_) => false,
        }
    }
}

/// Why a row cannot be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderProblem {
    /// The field's JSON text cannot be read as Python's `json.loads` reads it.
    #[error("{0}")]
    Json(PyJsonError),
    /// `utils.py` raises this exception on the row.
    #[error("{message} (utils.py raises {exception} here too)")]
    PythonRaises {
        /// What is wrong.
        message: String,
        /// The Python exception class.
        exception: &'static str,
    },
    /// `utils.py` renders the row, but not in a way w2c reproduces exactly.
    #[error("{0} (utils.py renders it; w2c cannot reproduce that exactly)")]
    NotReproducible(String),
}

/// A problem with the field it concerns, before the variant is known.
struct FieldProblem {
    field: String,
    problem: RenderProblem,
}

impl FieldProblem {
    fn at(self, variant: OfficialVariant) -> RenderError {
        RenderError {
            variant,
            field: self.field,
            problem: self.problem,
        }
    }
}

fn raises(field: impl Into<String>, exception: &'static str, message: String) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: RenderProblem::PythonRaises { message, exception },
    }
}

fn loads(field: &str, text: &str) -> Result<PyValue, FieldProblem> {
    json_loads(text).map_err(|e| FieldProblem {
        field: field.to_string(),
        problem: RenderProblem::Json(e),
    })
}

/// The parsed object of `field`, as utils.py subscripts it (`obj['name']`
/// on anything but a dict raises TypeError).
fn loads_object(
    field: &str,
    text: &str,
) -> Result<indexmap::IndexMap<String, PyValue>, FieldProblem> {
    match loads(field, text)? {
        PyValue::Dict(map) => Ok(map),
        other => Err(raises(
            field,
            "TypeError",
            format!("a JSON {} where an object is expected", other.type_name()),
        )),
    }
}

fn key<'a>(
    map: &'a indexmap::IndexMap<String, PyValue>,
    field: &str,
    key: &str,
) -> Result<&'a PyValue, FieldProblem> {
    map.get(key)
        .ok_or_else(|| raises(field, "KeyError", format!("no `{key}` key")))
}

fn render_tools(style: ToolsStyle, tools: &[String]) -> Result<String, FieldProblem> {
    Ok(match style {
        ToolsStyle::Joined {
            before,
            after,
            separator,
        } => tools
            .iter()
            .map(|t| format!("{before}{t}{after}"))
            .collect::<Vec<_>>()
            .join(separator),
        ToolsStyle::JsonList => {
            let parsed = tools
                .iter()
                .enumerate()
                .map(|(i, t)| loads(&format!("tools[{i}]"), t))
                .collect::<Result<Vec<_>, _>>()?;
            json_dumps(&PyValue::List(parsed))
        }
        ToolsStyle::LinesStripped => py_strip(&tools.join("\n")).to_string(),
        ToolsStyle::PythonListRepr => format!(
            "[{}]",
            tools
                .iter()
                .map(|t| py_repr_str(t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ToolsStyle::DescribedBlocks {
            before_name,
            between,
            after_description,
            after_tool,
        } => {
            let mut out = String::new();
            for (i, t) in tools.iter().enumerate() {
                let field = format!("tools[{i}]");
                let spec = loads_object(&field, t)?;
                let name = key(&spec, &field, "name")?;
                let description = key(&spec, &field, "description")?;
                out.push_str(before_name);
                out.push_str(&py_str(name));
                out.push_str(between);
                out.push_str(&py_str(description));
                out.push_str(after_description);
                out.push_str(t);
                out.push_str(after_tool);
            }
            out
        }
    })
}

const TOOL_CALL: &str = "answers.tool_call";

fn render_tool_call(style: ToolCallStyle, answer: &str) -> Result<String, FieldProblem> {
    match style {
        ToolCallStyle::Wrapped { before, after } => Ok(format!("{before}{answer}{after}")),
        ToolCallStyle::PythonicCall => {
            let call = loads_object(TOOL_CALL, answer)?;
            let name = py_str(key(&call, TOOL_CALL, "name")?);
            let field = "answers.tool_call.arguments";
            let args: Vec<String> = match key(&call, TOOL_CALL, "arguments")? {
                PyValue::Dict(map) => map
                    .iter()
                    .map(|(k, v)| match v {
                        PyValue::Str(s) => format!("{k}=\"{s}\""),
                        other => format!("{k}={}", py_str(other)),
                    })
                    .collect(),
                // Iterating an empty list or string renders no argument.
                PyValue::List(items) if items.is_empty() => Vec::new(),
                PyValue::Str(s) if s.is_empty() => Vec::new(),
                PyValue::List(_) => {
                    return Err(FieldProblem {
                        field: field.into(),
                        problem: RenderProblem::NotReproducible(
                            "a non-empty list where an object is expected (utils.py indexes the list with its own items)".into(),
                        ),
                    })
                }
                PyValue::Str(_) => {
                    return Err(raises(
                        field,
                        "TypeError",
                        "a string where an object is expected".into(),
                    ))
                }
                other => {
                    return Err(raises(
                        field,
                        "TypeError",
                        format!("a JSON {} where an object is expected", other.type_name()),
                    ))
                }
            };
            Ok(format!("[{name}({})]", args.join(", ")))
        }
        ToolCallStyle::FunctionTag => {
            let call = loads_object(TOOL_CALL, answer)?;
            let name = py_str(key(&call, TOOL_CALL, "name")?);
            let (field, args) = match call.get("arguments") {
                Some(a) => ("answers.tool_call.arguments", a),
                None => (
                    "answers.tool_call.parameters",
                    key(&call, TOOL_CALL, "parameters")?,
                ),
            };
            let PyValue::Dict(map) = args else {
                return Err(raises(
                    field,
                    "AttributeError",
                    format!("a JSON {} where an object is expected", args.type_name()),
                ));
            };
            let args: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{}\"", json_dumps(v)))
                .collect();
            Ok(format!(
                "<function={name}>{{{}}}</function>",
                args.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_CALL: &str = r#"{"name": "f", "arguments": {}}"#;

    fn answers(tool_call: &str) -> [String; 4] {
        [
            "D".to_string(),
            tool_call.to_string(),
            "R".to_string(),
            "C".to_string(),
        ]
    }

    fn render(
        v: OfficialVariant,
        tools: &[&str],
        tool_call: &str,
    ) -> Result<OfficialPrompt, RenderError> {
        let tools: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
        v.render(&tools, "Q?", &answers(tool_call))
    }

    #[test]
    fn names_round_trip() {
        for v in OfficialVariant::ALL {
            assert_eq!(v.as_str().parse::<OfficialVariant>().unwrap(), v);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
            let back: OfficialVariant = serde_json::from_str(&format!("\"{v}\"")).unwrap();
            assert_eq!(back, v);
        }
        assert!("when2call-mistral".parse::<OfficialVariant>().is_err());
    }

    #[test]
    fn template_hashes_are_pinned() {
        // A change to any fixed text or rule must be deliberate: update these
        // (and RENDER_RULES_VERSION for a rule change) together with the code.
        let got: Vec<(&str, String)> = OfficialVariant::ALL
            .iter()
            .map(|v| (v.as_str(), v.template_sha256()[..16].to_string()))
            .collect();
        let want = [
            ("when2call", "da7ca2a35496971f"),
            ("when2call-functionary", "d1621f7647c1ab60"),
            ("when2call-hermes", "2319a9f20dc99588"),
            ("when2call-llama3_2", "681215d7b58ef736"),
            ("when2call-qwen2_5", "877316fd2b81448a"),
            ("when2call-xlam", "742c726c97376897"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (*a, b.to_string()))
                .collect::<Vec<_>>()
        );
        assert!(OfficialVariant::Xlam
            .template_text()
            .contains("\"render_rules_version\": 1"));
    }

    #[test]
    fn tool_calls_match_utils_py() {
        // Expectations from running utils.py's formatters in CPython 3.11.7.
        let call = r#"{"name": "f", "arguments": {"s": "a\"b\\c\nd", "n": 3, "x": 1e-05, "big": 1e16, "z": -0.0, "b": true, "nil": null, "l": ["it's", 1.5, [], {}], "o": {"k": "v", "e": "\u00e9\ud83d\ude00"}}}"#;
        let cases = [
            (
                OfficialVariant::Llama3_2,
                "[f(s=\"a\"b\\c\nd\", n=3, x=1e-05, big=1e+16, z=-0.0, b=True, nil=None, l=[\"it's\", 1.5, [], {}], o={'k': 'v', 'e': 'é😀'})]",
            ),
            (
                OfficialVariant::Functionary,
                r#"<function=f>{"s": ""a\"b\\c\nd"", "n": "3", "x": "1e-05", "big": "1e+16", "z": "-0.0", "b": "true", "nil": "null", "l": "["it's", 1.5, [], {}]", "o": "{"k": "v", "e": "\u00e9\ud83d\ude00"}"}</function>"#,
            ),
            (OfficialVariant::Hermes, &format!("<tool_call>{call}\n</tool_call>")),
            (OfficialVariant::Xlam, &format!("{{\n\t\"tool_calls\": [\n\t{call}\n\t]\n}}")),
            (OfficialVariant::Qwen2_5, call),
            (OfficialVariant::When2call, call),
        ];
        for (v, want) in cases {
            let got = render(v, &[], call).unwrap();
            assert_eq!(got.choices[1], want, "{v}");
            assert_eq!(got.choices[0], "D");
            assert_eq!(got.choices[3], "C");
        }
        // No arguments; functionary's `parameters` fallback; a non-str name.
        let p = render(
            OfficialVariant::Llama3_2,
            &[],
            r#"{"name": "g", "arguments": {}}"#,
        )
        .unwrap();
        assert_eq!(p.choices[1], "[g()]");
        let p = render(
            OfficialVariant::Llama3_2,
            &[],
            r#"{"name": 7, "arguments": []}"#,
        )
        .unwrap();
        assert_eq!(p.choices[1], "[7()]");
        let p = render(
            OfficialVariant::Functionary,
            &[],
            r#"{"name": null, "parameters": {"a": [1]}}"#,
        )
        .unwrap();
        assert_eq!(p.choices[1], r#"<function=None>{"a": "[1]"}</function>"#);
    }

    #[test]
    fn tools_match_utils_py() {
        // Expectations from running utils.py in CPython 3.11.7.
        let t1 =
            r#"{"name": "t1", "description": "it's \u00e9", "parameters": {"d": 1e16, "n": NaN}}"#;
        // Python whitespace that JSON does not allow around a tool...
        let hostile = " \u{1c}{\"name\": \"t2\", \"description\": null}\u{a0}\n";
        // ...and JSON whitespace.
        let spaced = " {\"name\": \"t2\", \"description\": null}\n";
        let inner = |v: OfficialVariant, tools: &[&str]| {
            let p = render(v, tools, OK_CALL).unwrap().context;
            let t = v.template();
            assert!(p.starts_with(t.head) && p.ends_with(&format!("{}Q?{}", t.middle, t.tail)));
            p[t.head.len()..p.len() - t.middle.len() - 2 - t.tail.len()].to_string()
        };
        assert_eq!(
            inner(OfficialVariant::Llama3_2, &[t1, spaced]),
            r#"[{"name": "t1", "description": "it's \u00e9", "parameters": {"d": 1e+16, "n": NaN}}, {"name": "t2", "description": null}]"#
        );
        assert_eq!(
            inner(OfficialVariant::Functionary, &[t1, spaced]),
            format!("Use the function 't1' to 'it's é'\n{t1}\n\nUse the function 't2' to 'None'\n{spaced}\n\n")
        );
        for v in [OfficialVariant::Llama3_2, OfficialVariant::Functionary] {
            let e = render(v, &[t1, hostile], OK_CALL).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.python_raises()),
                ("tools[1]", true),
                "{e}"
            );
        }
        assert_eq!(
            inner(OfficialVariant::Qwen2_5, &[t1, hostile]),
            format!("{t1}\n \u{1c}{{\"name\": \"t2\", \"description\": null}}")
        );
        assert_eq!(
            inner(OfficialVariant::Xlam, &[t1, hostile]),
            r#"['{"name": "t1", "description": "it\'s \\u00e9", "parameters": {"d": 1e16, "n": NaN}}', ' \x1c{"name": "t2", "description": null}\xa0\n']"#
        );
        assert_eq!(
            inner(OfficialVariant::Hermes, &[t1, hostile]),
            format!("{t1} {hostile}")
        );
        assert_eq!(
            inner(OfficialVariant::When2call, &[t1, hostile]),
            format!("<tool>{t1}</tool>\n\n<tool>{hostile}</tool>")
        );
        // No tools at all.
        for (v, want) in [
            (OfficialVariant::Llama3_2, "[]"),
            (OfficialVariant::Xlam, "[]"),
            (OfficialVariant::Qwen2_5, ""),
            (OfficialVariant::Functionary, ""),
            (OfficialVariant::Hermes, ""),
            (OfficialVariant::When2call, ""),
        ] {
            let p = render(v, &[], OK_CALL).unwrap().context;
            let t = v.template();
            assert_eq!(
                p,
                format!("{}{want}{}Q?{}", t.head, t.middle, t.tail),
                "{v}"
            );
        }
    }

    #[test]
    fn python_failures_name_the_field() {
        let deep = format!(
            r#"{{"name": "f", "arguments": {{"n": {}{}}}}}"#,
            "[".repeat(python::MAX_DEPTH),
            "]".repeat(python::MAX_DEPTH)
        );
        let cases: [(OfficialVariant, &[&str], &str, &str, bool); 9] = [
            (
                OfficialVariant::Llama3_2,
                &[],
                "not json",
                "answers.tool_call",
                true,
            ),
            (
                OfficialVariant::Functionary,
                &[],
                "[1]",
                "answers.tool_call",
                true,
            ),
            (
                OfficialVariant::Llama3_2,
                &[],
                r#"{"arguments": {}}"#,
                "answers.tool_call",
                true,
            ),
            (
                OfficialVariant::Llama3_2,
                &[],
                r#"{"name": "f", "arguments": "ab"}"#,
                "answers.tool_call.arguments",
                true,
            ),
            (
                OfficialVariant::Llama3_2,
                &[],
                r#"{"name": "f", "arguments": [0]}"#,
                "answers.tool_call.arguments",
                false,
            ),
            (
                OfficialVariant::Functionary,
                &[],
                r#"{"name": "f", "arguments": null}"#,
                "answers.tool_call.arguments",
                true,
            ),
            (
                OfficialVariant::Functionary,
                &[r#"{"name": "t"}"#],
                OK_CALL,
                "tools[0]",
                true,
            ),
            (
                OfficialVariant::Llama3_2,
                &["{}", r#"{"a": "\udfff"}"#],
                OK_CALL,
                "tools[1]",
                false,
            ),
            (
                OfficialVariant::Functionary,
                &[],
                &deep,
                "answers.tool_call",
                false,
            ),
        ];
        for (v, tools, call, field, python_raises) in cases {
            let e = render(v, tools, call).unwrap_err();
            assert_eq!(e.field, field, "{call}: {e}");
            assert_eq!(e.variant, v);
            assert_eq!(e.python_raises(), python_raises, "{call}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("{v}: field `{field}`: ")),
                "{e}"
            );
            // The variants that never parse JSON render the same row.
            for plain in [
                OfficialVariant::When2call,
                OfficialVariant::Hermes,
                OfficialVariant::Qwen2_5,
                OfficialVariant::Xlam,
            ] {
                assert!(render(plain, tools, call).is_ok());
            }
        }
    }
}
