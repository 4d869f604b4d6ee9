//! When2Call dataset: JSONL loading with per-line errors, and the stratified
//! subsample.
//!
//! The subsample reproduces the reference Python suite bit for bit (CPython's
//! MT19937 `random.Random(seed)`, `shuffle` and `randbelow`), so it is
//! deterministic across platforms and comparable with published selections.

use crate::dataset_fields::Note;
use crate::json_scan::Scan;
use crate::labels::Label;
use anyhow::{bail, Context, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// One When2Call example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Unique id.
    pub uuid: String,
    /// The user's question.
    pub question: String,
    /// Gold behaviour.
    pub gold: Label,
    /// Candidate answers by behaviour, in [`Label::ALL`] order.
    pub answers: [String; 4],
    /// Tools offered to the model, each as its JSON text.
    pub tools: Vec<String>,
    /// Origin of the example (`source` field).
    pub source: String,
}

impl Example {
    /// The candidate answer for a behaviour.
    pub fn answer(&self, label: Label) -> &str {
        &self.answers[label.index()]
    }
}

/// A loaded dataset file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file read.
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub sha256: String,
    /// Examples in file order.
    pub examples: Vec<Example>,
    /// Each tool text that is not a tool definition, in file order:
    /// accepted (rendered as written, as the official task renders it),
    /// reported when a session is created and audited in its
    /// `audit_fallbacks.jsonl`.
    pub notes: Vec<ToolNote>,
}

/// A tool text of a row that is not a tool definition, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolNote {
    /// 1-based line of the row in the file.
    pub line: usize,
    /// The row's uuid.
    pub uuid: String,
    /// The field and what the text is instead.
    pub note: crate::dataset_fields::Note,
}

impl Dataset {
    /// Count of examples per gold label, in [`Label::ALL`] order.
    pub fn label_counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for e in &self.examples {
            c[e.gold.index()] += 1;
        }
        c
    }
}

/// What remains known about a dataset file once its examples are selected.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// The file read.
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub sha256: String,
    /// Examples in the file.
    pub n_examples: usize,
}

impl Dataset {
    /// The selection for `n_per_label` and `seed` (see [`select`]), taking
    /// the examples, and what is known about the file.
    pub fn into_selection(
        self,
        n_per_label: Option<usize>,
        seed: u64,
    ) -> (DatasetInfo, Vec<Example>) {
        let info = DatasetInfo {
            n_examples: self.examples.len(),
            path: self.path,
            sha256: self.sha256,
        };
        (info, take_selection(self.examples, n_per_label, seed))
    }
}

/// Reads a When2Call JSONL file. Every error names `file:line` and the field.
///
/// The file is read once, in chunks: each chunk is hashed and its lines
/// parsed as they arrive, so the whole file is never held in memory.
pub fn load(path: &Path) -> Result<Dataset> {
    let file = crate::store::open_regular(path).context("cannot read the dataset")?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut parser = LineParser::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read dataset {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        parser.line(&line);
    }
    let (examples, notes) = parser
        .finish()
        .map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    if examples.is_empty() {
        bail!("{}: the dataset has no examples", path.display());
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        sha256: hex::encode(hasher.finalize()),
        examples,
        notes,
    })
}

/// Decodes the file's bytes as UTF-8 and parses them as JSONL; errors are
/// `line: message` (invalid UTF-8 names its line and column, and wins over a
/// parse error on an earlier line, as the whole file must be text).
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<Example>, String> {
    let mut parser = LineParser::default();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        parser.line(line);
    }
    parser.finish().map(|(examples, _)| examples)
}

/// Parses JSONL text; errors are `line: message`. Blank lines are skipped.
pub fn parse_lines(text: &str) -> Result<Vec<Example>, String> {
    parse_bytes(text.as_bytes())
}

/// The byte order mark a UTF-8 file may start with.
const BOM: char = '\u{feff}';

/// Parses a dataset one physical line at a time (as `str::lines` splits
/// them: at `\n`, dropping a `\r` before it). After the first bad row it
/// only checks that the rest is UTF-8, so that the error reported does not
/// depend on how the file was read.
#[derive(Default)]
struct LineParser {
    lineno: usize,
    examples: Vec<Example>,
    seen: HashMap<String, usize>,
    /// Each tool text that is not a tool definition.
    notes: Vec<ToolNote>,
    error: Option<String>,
    utf8_error: Option<String>,
}

impl LineParser {
    /// One line, with its `\n` if it has one.
    fn line(&mut self, raw: &[u8]) {
        self.lineno += 1;
        if self.utf8_error.is_some() {
            return;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let at = e.valid_up_to();
                self.utf8_error = Some(format!(
                    "{}: not valid UTF-8 (invalid byte 0x{:02x} at byte {} of the line)",
                    self.lineno,
                    raw[at],
                    at + 1
                ));
                return;
            }
        };
        if self.error.is_some() {
            return;
        }
        let text = match text.strip_suffix('\n') {
            Some(t) => t.strip_suffix('\r').unwrap_or(t),
            None => text,
        };
        // A UTF-8 byte order mark, as some editors write at the start of
        // a file, is not part of the first row (the file's hash keeps it).
        let text = if self.lineno == 1 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
        if text.starts_with(BOM) {
            self.error = Some(format!(
                "{}: the line starts with a byte order mark (U+FEFF), which only the start of the file may hold (was the file made by joining files?)",
                self.lineno
            ));
            return;
        }
        if text.trim().is_empty() {
            return;
        }
        let lineno = self.lineno;
        let ex = match parse_example(text) {
            Ok((ex, notes)) => {
                self.notes.extend(notes.into_iter().map(|note| ToolNote {
                    line: lineno,
                    uuid: ex.uuid.clone(),
                    note,
                }));
                ex
            }
            Err(e) => {
                self.error = Some(format!("{lineno}: {e}"));
                return;
            }
        };
        if let Some(first) = self.seen.insert(ex.uuid.clone(), lineno) {
            self.error = Some(format!(
                "{lineno}: field `uuid`: duplicate uuid {} (first seen on line {first})",
                ex.uuid
            ));
            return;
        }
        self.examples.push(ex);
    }

    /// The examples and the notes, or the first error.
    fn finish(self) -> Result<(Vec<Example>, Vec<ToolNote>), String> {
        match self.utf8_error.or(self.error) {
            Some(e) => Err(e),
            None => Ok((self.examples, self.notes)),
        }
    }
}

/// Checks a stratified subsample's `n_per_label` against the rows of each
/// gold label (`counts` in [`Label::ALL`] order): a label that has rows but
/// fewer than `n` would silently give an unbalanced selection. Labels with
/// no rows at all are left out of the selection (When2Call's test file has
/// no `direct` rows) and are not an error.
pub fn check_n_per_label(counts: [usize; 4], n: usize) -> Result<(), String> {
    let short: Vec<String> = Label::ALL
        .iter()
        .filter(|l| (1..n).contains(&counts[l.index()]))
        .map(|l| format!("`{l}` has {}", counts[l.index()]))
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    let fewest = Label::ALL
        .iter()
        .map(|l| counts[l.index()])
        .filter(|&c| c > 0)
        .min()
        .unwrap_or(0);
    Err(format!(
        "key `dataset.n_per_label`: {n} is more than the rows of some labels ({}); set it to at most {fewest}, or leave it out to use the whole file",
        short.join(", ")
    ))
}

/// One row: the typed fast path; a row it does not take is read again by
/// [`parse_example_value`], which accepts exactly the same rows and says
/// what is wrong with the others.
fn parse_example(line: &str) -> Result<(Example, Vec<Note>), String> {
    match serde_json::from_str::<RawRow<'_>>(line)
        .ok()
        .and_then(RawRow::into_example)
    {
        Some(ex) if crate::dataset_fields::duplicate_key(line).is_none() => ex,
        _ => parse_example_value(line),
    }
}

/// One row through a `serde_json::Value`: the reference for what a row must
/// hold, and the source of every error message.
fn parse_example_value(line: &str) -> Result<(Example, Vec<Note>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    if let Some(key) = crate::dataset_fields::duplicate_key(line) {
        return Err(format!(
            "field `{key}`: the key is given twice (JSON readers differ on which value counts)"
        ));
    }
    let uuid = required_str(obj, "uuid")?;
    if uuid.trim().is_empty() {
        return Err("field `uuid`: must not be empty".into());
    }
    let question = required_str(obj, "question")?;
    let gold_raw = required_str(obj, "correct_answer")?;
    let gold: Label = gold_raw
        .parse()
        .map_err(|e| format!("field `correct_answer`: {e}"))?;
    let answers_obj = obj
        .get("answers")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            "field `answers`: expected an object with the four behaviours".to_string()
        })?;
    let mut answers: [String; 4] = Default::default();
    for label in Label::ALL {
        let text = answers_obj
            .get(label.as_str())
            .and_then(Value::as_str)
            .ok_or_else(|| format!("field `answers.{label}`: expected a string"))?;
        answers[label.index()] = text.to_string();
    }
    if let Some(extra) = answers_obj.keys().find(|k| k.parse::<Label>().is_err()) {
        return Err(format!("field `answers.{extra}`: not a When2Call label"));
    }
    let tools = match obj.get("tools") {
        None => {
            return Err(
                "field `tools`: missing (a row offering no tool has `\"tools\": []`)".into(),
            )
        }
        Some(Value::Array(items)) => definitions("tools", items)?,
        Some(other) => {
            return Err(format!(
                "field `tools`: expected a list of tool definitions, got {}",
                type_name(other)
            ))
        }
    };
    let source = required_str(obj, "source")?.to_string();
    let target_tool = match obj.get("target_tool") {
        None => return Err("field `target_tool`: missing (a row without one has `null`)".into()),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(format!(
                "field `target_tool`: expected a tool definition as a JSON string, or null, got {}",
                type_name(other)
            ))
        }
    };
    let orig_tools = match obj.get("orig_tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(definitions("orig_tools", items)?),
        Some(other) => {
            return Err(format!(
                "field `orig_tools`: expected a list of tool definitions, or null, got {}",
                type_name(other)
            ))
        }
    };
    let notes = crate::dataset_fields::check(&crate::dataset_fields::RowFields {
        question,
        tools: &tools,
        target_tool,
        orig_tools: orig_tools.as_deref(),
    })?;
    Ok((
        Example {
            uuid: uuid.to_string(),
            question: question.to_string(),
            gold,
            answers,
            tools,
            source,
        },
        notes,
    ))
}

/// A row as the fast path reads it: the fields w2c uses, borrowed from the
/// line where no escape forces a copy. Fields it does not use are read as a
/// [`Scan`]: checked as strictly as a `Value` would check them, then dropped.
struct RawRow<'a> {
    uuid: Option<Cow<'a, str>>,
    question: Option<Cow<'a, str>>,
    correct_answer: Option<Cow<'a, str>>,
    answers: Option<[Cow<'a, str>; 4]>,
    /// `Some(None)`: `null`.
    tools: Option<Option<Vec<Cow<'a, str>>>>,
    source: Option<Cow<'a, str>>,
    /// `Some(None)`: `null`; `Some(Some(None))`: not a string.
    target_tool: Option<Option<Option<Cow<'a, str>>>>,
    orig_tools: Option<Vec<Cow<'a, str>>>,
}

impl RawRow<'_> {
    /// The example, when the row is one as it stands (else `None`, and the
    /// reference path explains).
    fn into_example(self) -> Option<Result<(Example, Vec<Note>), String>> {
        let uuid = self.uuid?;
        if uuid.trim().is_empty() {
            return None;
        }
        let gold: Label = self.correct_answer?.parse().ok()?;
        let target_tool = match self.target_tool? {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => return None,
        };
        let question = self.question?.into_owned();
        let answers = self.answers?.map(Cow::into_owned);
        let source = self.source?.into_owned();
        let tools: Vec<String> = self.tools??.into_iter().map(Cow::into_owned).collect();
        let orig_tools: Option<Vec<String>> = self
            .orig_tools
            .map(|v| v.into_iter().map(Cow::into_owned).collect());
        let notes = match crate::dataset_fields::check(&crate::dataset_fields::RowFields {
            question: &question,
            tools: &tools,
            target_tool: target_tool.as_deref(),
            orig_tools: orig_tools.as_deref(),
        }) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok((
            Example {
                uuid: uuid.into_owned(),
                question,
                gold,
                answers,
                tools,
                source,
            },
            notes,
        )))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRow<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawRowVisitor(PhantomData))
    }
}

struct RawRowVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for RawRowVisitor<'a> {
    type Value = RawRow<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a When2Call row")
    }

    // A repeated key keeps its last value, as a `Value` object does.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow<'a>, A::Error> {
        let mut row = RawRow {
            uuid: None,
            question: None,
            correct_answer: None,
            answers: None,
            tools: None,
            source: None,
            target_tool: None,
            orig_tools: None,
        };
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            match key.as_ref() {
                "uuid" => row.uuid = Some(map.next_value::<Str<'a>>()?.0),
                "question" => row.question = Some(map.next_value::<Str<'a>>()?.0),
                "correct_answer" => row.correct_answer = Some(map.next_value::<Str<'a>>()?.0),
                "answers" => row.answers = Some(map.next_value::<RawAnswers<'a>>()?.0),
                "tools" => {
                    row.tools = Some(
                        map.next_value::<Option<Vec<Str<'a>>>>()?
                            .map(|v| v.into_iter().map(|s| s.0).collect()),
                    )
                }
                "source" => row.source = map.next_value::<Scan<'a>>()?.into_str(),
                "target_tool" => {
                    row.target_tool = Some(match map.next_value::<Scan<'a>>()? {
                        Scan::Null => None,
                        other => Some(other.into_str()),
                    })
                }
                "orig_tools" => {
                    row.orig_tools = map
                        .next_value::<Option<Vec<Str<'a>>>>()?
                        .map(|v| v.into_iter().map(|s| s.0).collect())
                }
                _ => {
                    map.next_value::<Scan<'a>>()?;
                }
            }
        }
        Ok(row)
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scan::deserialize(d)?.into_str() {
            Some(s) => Ok(Str(s)),
            None => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// `answers`: an object with exactly the four behaviours, each a string.
struct RawAnswers<'a>([Cow<'a, str>; 4]);

impl<'de: 'a, 'a> Deserialize<'de> for RawAnswers<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawAnswers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with the four behaviours")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAnswers<'a>, A::Error> {
                let mut answers: [Option<Cow<'a, str>>; 4] = Default::default();
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let label: Label = key.parse().map_err(serde::de::Error::custom)?;
                    answers[label.index()] = Some(map.next_value::<Str<'a>>()?.0);
                }
                let [a, b, c, d] = answers;
                match (a, b, c, d) {
                    (Some(a), Some(b), Some(c), Some(d)) => Ok(RawAnswers([a, b, c, d])),
                    _ => Err(serde::de::Error::custom("a behaviour is missing")),
                }
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The elements of list `field`, each a tool definition as a JSON string.
fn definitions(field: &str, items: &[Value]) -> Result<Vec<String>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "field `{field}[{i}]`: expected a tool definition as a JSON string, got {}",
                type_name(other)
            )),
        })
        .collect()
}

fn required_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field `{key}`: expected a string, got {}",
            type_name(other)
        )),
        None => Err(format!("field `{key}`: missing")),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Shuffles `items` with CPython's algorithm seeded by `seed`.
pub fn shuffle_with_seed<T>(items: &mut [T], seed: u64) {
    crate::pyrandom::PyRandom::new(seed).shuffle(items);
}

/// Stratified subsample: up to `n_per_label` examples per gold label (in
/// [`Label::ALL`] order, each group shuffled), then the whole selection
/// shuffled once more. Identical to the reference suite for the same seed.
/// Returns indices into `examples`.
pub fn stratified_subsample(examples: &[Example], n_per_label: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::pyrandom::PyRandom::new(seed);
    let mut selected = Vec::new();
    for label in Label::ALL {
        let mut group: Vec<usize> = (0..examples.len())
            .filter(|&i| examples[i].gold == label)
            .collect();
        if group.is_empty() {
            continue;
        }
        rng.shuffle(&mut group);
        group.truncate(n_per_label);
        selected.extend(group);
    }
    rng.shuffle(&mut selected);
    selected
}

/// The examples a config selects: the stratified subsample, or the whole file
/// in file order when `n_per_label` is `None`.
pub fn select(dataset: &Dataset, n_per_label: Option<usize>, seed: u64) -> Vec<Example> {
    match n_per_label {
        Some(n) => stratified_subsample(&dataset.examples, n, seed)
            .into_iter()
            .map(|i| dataset.examples[i].clone())
            .collect(),
        None => dataset.examples.clone(),
    }
}

/// [`select`], taking the examples instead of copying them.
pub fn take_selection(
    mut examples: Vec<Example>,
    n_per_label: Option<usize>,
    seed: u64,
) -> Vec<Example> {
    let Some(n) = n_per_label else {
        return examples;
    };
    let picked = stratified_subsample(&examples, n, seed);
    let mut slots: Vec<Option<Example>> = examples.drain(..).map(Some).collect();
    picked.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(uuid: &str, gold: &str) -> String {
        format!(
            r#"{{"uuid":"{uuid}","question":"q","correct_answer":"{gold}","answers":{{"direct":"a","tool_call":"b","request_for_info":"c","cannot_answer":"d"}},"tools":["{{\"name\":\"t\"}}"],"source":"s","target_tool":null}}"#
        )
    }

    #[test]
    fn parses_rows_and_skips_blank_lines() {
        let text = format!("{}\n\n{}\n", row("a", "tool_call"), row("b", "direct"));
        let ex = parse_lines(&text).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].gold, Label::ToolCall);
        assert_eq!(ex[1].answer(Label::CannotAnswer), "d");
        assert_eq!(ex[0].tools, vec![r#"{"name":"t"}"#.to_string()]);
    }

    #[test]
    fn errors_name_line_and_field() {
        let dup = format!("{}\n{}\n", row("a", "tool_call"), row("a", "direct"));
        assert_eq!(
            parse_lines(&dup).unwrap_err(),
            "2: field `uuid`: duplicate uuid a (first seen on line 1)"
        );
        let bad_label = row("a", "maybe");
        assert!(parse_lines(&bad_label)
            .unwrap_err()
            .starts_with("1: field `correct_answer`: `maybe` is not a When2Call label"));
        let err = parse_lines("{\"uuid\": \"x\"").unwrap_err();
        assert!(err.starts_with("1: invalid JSON"), "{err}");
        let missing = row("a", "direct").replace(r#""question":"q","#, "");
        assert_eq!(
            parse_lines(&missing).unwrap_err(),
            "1: field `question`: missing"
        );
        let no_answer = row("a", "direct").replace(r#""direct":"a","#, "");
        assert_eq!(
            parse_lines(&no_answer).unwrap_err(),
            "1: field `answers.direct`: expected a string"
        );
        let wrong_type = row("a", "direct").replace(r#""uuid":"a""#, r#""uuid":7"#);
        assert_eq!(
            parse_lines(&wrong_type).unwrap_err(),
            "1: field `uuid`: expected a string, got a number"
        );
    }

    #[test]
    fn a_byte_order_mark_starts_the_file_or_is_named() {
        let text = format!(
            "\u{feff}{}\n{}\n",
            row("a", "tool_call"),
            row("b", "direct")
        );
        let ex = parse_lines(&text).unwrap();
        assert_eq!(ex[0].uuid, "a");
        let inner = format!(
            "{}\n\u{feff}{}\n",
            row("a", "tool_call"),
            row("b", "direct")
        );
        let err = parse_lines(&inner).unwrap_err();
        assert!(
            err.starts_with("2: ") && err.contains("byte order mark"),
            "{err}"
        );
    }

    #[test]
    fn subsample_is_stratified_and_deterministic() {
        let text: String = (0..40)
            .map(|i| row(&format!("u{i}"), ["tool_call", "cannot_answer"][i % 2]) + "\n")
            .collect();
        let ex = parse_lines(&text).unwrap();
        let a = stratified_subsample(&ex, 5, 7);
        let b = stratified_subsample(&ex, 5, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        assert_eq!(
            a.iter().filter(|&&i| ex[i].gold == Label::ToolCall).count(),
            5
        );
        assert_ne!(a, stratified_subsample(&ex, 5, 8));
        assert_eq!(stratified_subsample(&ex, 100, 7).len(), 40);
    }

    #[test]
    fn n_per_label_above_a_labels_rows_is_an_error() {
        assert!(check_n_per_label([0, 100, 100, 100], 10).is_ok());
        assert!(check_n_per_label([6, 6, 6, 6], 6).is_ok());
        let err = check_n_per_label([2, 6, 6, 6], 5).unwrap_err();
        assert!(err.contains("dataset.n_per_label"), "{err}");
        assert!(err.contains("`direct` has 2"), "{err}");
        assert!(err.contains("at most 2"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut bytes = row("a", "direct").into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(b"{\"uuid\":\"b\xff\"}\n");
        let err = parse_bytes(&bytes).unwrap_err();
        assert!(err.starts_with("2: not valid UTF-8"), "{err}");
        assert!(err.contains("0xff at byte 11"), "{err}");
    }

    #[test]
    fn ordinary_rows_take_the_fast_path() {
        let line = r#"{"uuid":"u1","source":"s","question":"q \"x\"","correct_answer":"tool_call","answers":{"direct":"a","tool_call":"{\"name\": \"t\"}","request_for_info":"c","cannot_answer":"d"},"tools":["{\"name\":\"t\"}"],"target_tool":"{\"name\":\"t\"}","orig_tools":["{\"name\":\"t\",\"deep\":[1,2.5,null,true]}"],"held_out_param":{"deep":[1,2.5,null,true]}}"#;
        let raw: RawRow = serde_json::from_str(line).expect("fast path");
        let (fast, notes) = raw
            .into_example()
            .expect("an example")
            .expect("a valid row");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(fast, parse_example_value(line).unwrap().0);
        assert_eq!(fast.answer(Label::ToolCall), r#"{"name": "t"}"#);
        assert_eq!(fast.source, "s");
    }

    /// A field of a generated row: absent, or one of these JSON texts.
    fn field(valid: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        const ODD: &[&str] = &[
            "null",
            "7",
            "-1",
            "2.5",
            "1e999",
            "true",
            "[]",
            "{}",
            r#""""#,
            r#"" ""#,
            r#""\ud800""#,
            r#"["x", 3]"#,
            r#"{"k": "v"}"#,
            r#""tool_call""#,
        ];
        prop_oneof![
            3 => prop::sample::select(valid).prop_map(|s| Some(s.to_string())),
            1 => prop::sample::select(ODD).prop_map(|s| Some(s.to_string())),
            1 => Just(None),
        ]
    }

    fn answers() -> impl Strategy<Value = Option<String>> {
        let entry = prop::sample::select(
            &[
                r#""direct":"a""#,
                r#""tool_call":"b\"q\"""#,
                r#""request_for_info":"c""#,
                r#""cannot_answer":"d""#,
                r#""direct":5"#,
                r#""maybe":"x""#,
                r#""cannot_answer":"\u00e9""#,
            ][..],
        );
        prop_oneof![
            4 => prop::collection::vec(entry, 0..7).prop_map(|e| Some(format!("{{{}}}", e.join(",")))),
            1 => Just(Some(r#"["a","b","c","d"]"#.to_string())),
            1 => Just(None),
        ]
    }

    proptest::proptest! {
        /// The fast path and the `Value` reference accept the same rows and
        /// give the same examples (and the reference's messages).
        #[test]
        fn fast_path_agrees_with_the_value_reference(
            uuid in field(&[r#""u1""#, r#""u\u00e9""#, r#""  ""#]),
            question in field(&[r#""q""#, r#""q\n\"x\"""#]),
            gold in field(&[r#""tool_call""#, r#""direct""#, r#""cannot_answer""#, r#""nope""#]),
            answers in answers(),
            tools in field(&[r#"["t1", "{\"a\":1}"]"#, "[]", "null", r#"[{"name":"t"}]"#, r#"["{\"name\":\"t\"}"]"#]),
            source in field(&[r#""src""#]),
            target in field(&["null", r#""{\"name\":\"t\"}""#, r#""{\"name\":\"t\",\"name\":1}""#]),
            extra in field(&[r#"{"x":[1,{"y":null}]}"#, r#""\ud83d\ude00""#, r#"["{\"name\":\"o\"}"]"#]),
            repeat in prop::option::of(prop::sample::select(&["uuid", "answers", "tools", "source"][..])),
            not_an_object in proptest::bool::weighted(0.05),
        ) {
            let mut parts = Vec::new();
            for (key, value) in [
                ("uuid", &uuid), ("question", &question), ("correct_answer", &gold),
                ("answers", &answers), ("tools", &tools), ("source", &source),
                ("target_tool", &target), ("orig_tools", &extra),
            ] {
                if let Some(v) = value {
                    parts.push(format!("\"{key}\":{v}"));
                }
            }
            if let Some(key) = repeat {
                parts.push(format!("\"{key}\":\"again\""));
            }
            let line = if not_an_object {
                format!("[{}]", parts.len())
            } else {
                format!("{{{}}}", parts.join(","))
            };
            let fast = serde_json::from_str::<RawRow>(&line)
                .ok()
                .and_then(RawRow::into_example)
                .filter(|_| crate::dataset_fields::duplicate_key(&line).is_none());
            let reference = parse_example_value(&line);
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(fast, reference.clone(), "{}", line);
            }
            proptest::prop_assert_eq!(parse_example(&line), reference, "{}", line);
        }
    }
}
