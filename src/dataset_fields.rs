//! The checks of a When2Call row's fields beyond their JSON types: a
//! question that is not blank, no key given twice, and notes on every tool
//! text (in `tools`, `target_tool`, `orig_tools`) that is not a tool
//! definition (a JSON object with a string `name`), and on a `target_tool`
//! whose name no tool of `tools` has.
//! Shared by both row readers of [`crate::dataset`], so that they accept
//! the same rows and say the same about the others. Pure.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;

/// The fields checked here, as a row holds them.
pub struct RowFields<'r> {
    /// `question`.
    pub question: &'r str,
    /// `tools`, each element's text.
    pub tools: &'r [String],
    /// `target_tool`: `None` when `null`.
    pub target_tool: Option<&'r str>,
    /// `orig_tools`: `None` when absent or `null` (the When2Call test file
    /// has them on a third of its rows only).
    pub orig_tools: Option<&'r [String]>,
}

/// A tool text of a row that is not a tool definition, or a `target_tool`
/// that names no tool of `tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The field holding it (`tools[0]`, `target_tool`, `orig_tools[1]`).
    pub field: String,
    /// What it is instead.
    pub problem: String,
    /// Which of the two it is.
    pub kind: NoteKind,
}

/// What a [`Note`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// The text is not a tool definition.
    NotADefinition,
    /// `target_tool` is a definition, but no tool of `tools` has its name.
    TargetNotOffered,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.problem)
    }
}

/// The first problem of a row's fields, as `field `name`: what`; else the
/// notes on tool texts that are not tool definitions. Those are accepted:
/// the official task renders a tool's text as it stands, whatever it holds,
/// and w2c renders it the same way; the caller reports and audits them.
pub fn check(row: &RowFields<'_>) -> Result<Vec<Note>, String> {
    if row.question.trim().is_empty() {
        return Err("field `question`: must not be empty".into());
    }
    let mut notes = Vec::new();
    let mut note = |field: String, text: &str| match definition(text) {
        Ok(name) => Some(name),
        Err(problem) => {
            notes.push(Note {
                field,
                problem,
                kind: NoteKind::NotADefinition,
            });
            None
        }
    };
    let offered: Vec<Option<String>> = row
        .tools
        .iter()
        .enumerate()
        .map(|(i, tool)| note(format!("tools[{i}]"), tool))
        .collect();
    let target = row.target_tool.and_then(|t| note("target_tool".into(), t));
    for (i, tool) in row.orig_tools.unwrap_or_default().iter().enumerate() {
        note(format!("orig_tools[{i}]"), tool);
    }
    if let Some(name) = target {
        if !offered.iter().flatten().any(|n| *n == name) {
            notes.push(Note {
                field: "target_tool".into(),
                problem: format!(
                    "the target tool `{}` is not among the row's `tools`",
                    snippet(&name, 60)
                ),
                kind: NoteKind::TargetNotOffered,
            });
        }
    }
    Ok(notes)
}

/// Whether `text` is a tool definition: JSON, an object, no key twice, a
/// string `name` (given back). Read in one pass, without building the value.
fn definition(text: &str) -> Result<String, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let def = Definition::deserialize(&mut de)
        .and_then(|d| de.end().map(|()| d))
        .map_err(|e| {
            format!(
                "expected a tool definition (a JSON object as a string), but the text is not JSON ({e}): {}",
                snippet(text, 60)
            )
        })?;
    match def {
        Definition::NotObject => Err(format!(
            "expected a tool definition (a JSON object as a string), got JSON {}",
            snippet(text, 60)
        )),
        Definition::Object {
            duplicate: Some(key),
            ..
        } => Err(format!("key `{key}` is given twice in the tool definition")),
        Definition::Object { name: None, .. } => {
            Err("the tool definition has no string `name`".into())
        }
        Definition::Object {
            name: Some(name), ..
        } => Ok(name),
    }
}

/// What a tool text holds, as far as [`definition`] asks.
enum Definition {
    NotObject,
    Object {
        duplicate: Option<String>,
        name: Option<String>,
    },
}

impl<'de> Deserialize<'de> for Definition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Definition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_unit<E>(self) -> Result<Definition, E> {
                Ok(Definition::NotObject)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Definition, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Definition::NotObject)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Definition, A::Error> {
                let mut seen = HashSet::new();
                let mut duplicate = None;
                let mut name = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let key = key.0;
                    let inner = if key == "name" {
                        let v = map.next_value::<crate::json_scan::Scan>()?;
                        name = v.into_str().map(std::borrow::Cow::into_owned);
                        None
                    } else {
                        map.next_value::<DupCheck>()?.0
                    };
                    if duplicate.is_none() {
                        if !seen.insert(key.clone()) {
                            duplicate = Some(key.into_owned());
                        } else if let Some(p) = inner {
                            duplicate = Some(join(&key, &p));
                        }
                    }
                }
                Ok(Definition::Object { duplicate, name })
            }
        }
        d.deserialize_any(V)
    }
}

/// The first key an object of the JSON `text` gives twice (at any depth),
/// as its path (`answers.direct`); `None` when there is none or the text is
/// not JSON.
pub fn duplicate_key(text: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(text);
    match DupCheck::deserialize(&mut de) {
        Ok(d) => d.0,
        Err(_) => None,
    }
}

/// The first duplicate key found in a value (its path), if any.
struct DupCheck(Option<String>);

impl<'de> Deserialize<'de> for DupCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DupVisitor)
    }
}

struct DupVisitor;

impl<'de> Visitor<'de> for DupVisitor {
    type Value = DupCheck;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }
    fn visit_unit<E>(self) -> Result<DupCheck, E> {
        Ok(DupCheck(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DupCheck, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        while let Some(DupCheck(inner)) = seq.next_element::<DupCheck>()? {
            if found.is_none() {
                found = inner.map(|p| join(&format!("[{i}]"), &p));
            }
            i += 1;
        }
        Ok(DupCheck(found))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DupCheck, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.0;
            if found.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let DupCheck(inner) = map.next_value::<DupCheck>()?;
            if !seen.insert(key.clone()) {
                found = Some(key.into_owned());
            } else if let Some(p) = inner {
                found = Some(join(&key, &p));
            }
        }
        Ok(DupCheck(found))
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match crate::json_scan::Scan::deserialize(d)?.into_str() {
            Some(s) => Ok(Key(s)),
            None => Err(serde::de::Error::custom("expected a string key")),
        }
    }
}

/// `head` followed by the path below it (`a.b`, `a[1]`).
fn join(head: &str, below: &str) -> String {
    if below.starts_with('[') {
        format!("{head}{below}")
    } else {
        format!("{head}.{below}")
    }
}

/// At most `n` characters of `text`, `…` marking a cut.
fn snippet(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'r>(question: &'r str, tools: &'r [String]) -> RowFields<'r> {
        RowFields {
            question,
            tools,
            target_tool: None,
            orig_tools: None,
        }
    }

    #[test]
    fn a_blank_question_is_refused_and_odd_tools_are_noted() {
        let tools = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = tools(&[r#"{"name": "t", "parameters": {}}"#]);
        assert_eq!(check(&row("q", &ok)), Ok(vec![]));
        assert_eq!(check(&row("q", &[])), Ok(vec![]));
        let e = check(&row("  ", &ok)).unwrap_err();
        assert!(e.starts_with("field `question`"), "{e}");
        for (bad, want) in [
            ("not json", "not JSON"),
            ("1", "got JSON 1"),
            ("[1, 2]", "got JSON [1, 2]"),
            (r#"{"parameters": {}}"#, "no string `name`"),
            (r#"{"name": "a", "name": "b"}"#, "key `name` is given twice"),
        ] {
            let t = tools(&[r#"{"name": "t"}"#, bad]);
            let notes: Vec<String> = check(&row("q", &t))
                .expect("accepted")
                .iter()
                .map(Note::to_string)
                .collect();
            assert_eq!(notes.len(), 1, "{bad}: {notes:?}");
            assert!(notes[0].starts_with("field `tools[1]`: "), "{notes:?}");
            assert!(notes[0].contains(want), "{bad}: {notes:?}");
        }
        let orig = tools(&["7"]);
        let notes = check(&RowFields {
            target_tool: Some("oops"),
            orig_tools: Some(&orig),
            ..row("q", &ok)
        })
        .expect("accepted");
        assert_eq!(notes[0].field, "target_tool", "{notes:?}");
        assert_eq!(notes[1].field, "orig_tools[0]", "{notes:?}");
        // A target tool that is a definition but is not offered.
        let offered = tools(&[r#"{"name": "t"}"#, "not json"]);
        for (target, noted) in [(r#"{"name": "t"}"#, false), (r#"{"name": "u"}"#, true)] {
            let notes = check(&RowFields {
                target_tool: Some(target),
                ..row("q", &offered)
            })
            .expect("accepted");
            let kinds: Vec<NoteKind> = notes.iter().map(|n| n.kind).collect();
            let mut want = vec![NoteKind::NotADefinition];
            if noted {
                want.push(NoteKind::TargetNotOffered);
            }
            assert_eq!(kinds, want, "{target}: {notes:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert_eq!(duplicate_key(r#"{"a": 1, "b": 2}"#), None);
        assert_eq!(duplicate_key(r#"{"a": 1, "a": 2}"#), Some("a".into()));
        assert_eq!(
            duplicate_key(r#"{"x": {"d": 1, "d": 2}}"#),
            Some("x.d".into())
        );
        assert_eq!(
            duplicate_key(r#"{"x": [{"k": 1}, {"k": 1, "k": 2}]}"#),
            Some("x[1].k".into())
        );
        assert_eq!(duplicate_key("not json"), None);
    }
}
