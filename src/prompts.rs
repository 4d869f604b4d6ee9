//! Versioned prompt templates.
//!
//! A template is a text file with `### system` and `### user` sections and
//! `{{name}}` placeholders. Built-in templates ship in `prompts/` and are
//! embedded in the binary (`builtin:<name>`); users can point at their own
//! file (`file:<path>`). The sha256 of the template text goes into the method
//! settings hash, so editing a prompt never mixes results.

use crate::fingerprint::sha256_hex;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// Built-in templates by name.
const BUILTIN: &[(&str, &str)] = &[
    ("mcq_v1", include_str!("../prompts/mcq_v1.txt")),
    (
        "mcq_context_v1",
        include_str!("../prompts/mcq_context_v1.txt"),
    ),
    ("target_v1", include_str!("../prompts/target_v1.txt")),
    ("judge_v1", include_str!("../prompts/judge_v1.txt")),
];

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `builtin:<name>` or `file:<path>`.
    pub id: String,
    /// sha256 of the template text.
    pub sha256: String,
    /// System message template.
    pub system: String,
    /// User message template.
    pub user: String,
}

/// Loads a template by id, checking that it only uses `allowed` placeholders.
pub fn load(id: &str, allowed: &[&str]) -> Result<Template> {
    let text = if let Some(name) = id.strip_prefix("builtin:") {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .with_context(|| {
                format!(
                    "unknown built-in prompt `{name}` (available: {})",
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?
    } else if let Some(path) = id.strip_prefix("file:") {
        let bytes = crate::store::read_regular(std::path::Path::new(path))
            .with_context(|| format!("cannot read prompt file {path}"))?;
        String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("prompt file {path}: not valid UTF-8 ({e})"))?
    } else {
        bail!("prompt `{id}`: expected `builtin:<name>` or `file:<path>`");
    };
    parse(id, &text, allowed).with_context(|| format!("prompt {id}"))
}

/// Parses template text.
pub fn parse(id: &str, text: &str, allowed: &[&str]) -> Result<Template> {
    let mut sections: BTreeMap<&str, String> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("### ") {
            let name = name.trim();
            if name != "system" && name != "user" {
                bail!(
                    "line {}: unknown section `{name}` (expected system or user)",
                    i + 1
                );
            }
            if sections.contains_key(name) {
                bail!("line {}: section `{name}` appears twice", i + 1);
            }
            sections.insert(
                if name == "system" { "system" } else { "user" },
                String::new(),
            );
            current = Some(if name == "system" { "system" } else { "user" });
            continue;
        }
        match current {
            Some(sec) => {
                let body = sections.entry(sec).or_default();
                body.push_str(line);
                body.push('\n');
            }
            None if line.starts_with('#') || line.trim().is_empty() => {}
            None => bail!(
                "line {}: text before the first `### system`/`### user` section",
                i + 1
            ),
        }
    }
    let system = sections
        .remove("system")
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let Some(user) = sections.remove("user") else {
        bail!("missing `### user` section");
    };
    let user = user.trim_end().to_string();
    for body in [&system, &user] {
        for name in placeholders(body) {
            if !allowed.contains(&name.as_str()) {
                bail!("unknown placeholder {{{{{name}}}}} (allowed: {allowed:?})");
            }
        }
    }
    Ok(Template {
        id: id.to_string(),
        sha256: sha256_hex(text.as_bytes()),
        system,
        user,
    })
}

fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push(after[..end].trim().to_string());
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    out
}

/// Substitutes `{{name}}` placeholders in one pass (values are not rescanned).
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + end + 4]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_mcq_parses() {
        let t = load(
            "builtin:mcq_v1",
            &["tools", "question", "options", "label_list"],
        )
        .unwrap();
        assert!(t.system.starts_with("You are reviewing"));
        assert!(t.user.contains("{{options}}"));
        assert_eq!(t.sha256.len(), 64);
    }

    #[test]
    fn rejects_unknown_placeholder_and_sections() {
        let err = parse("x", "### user\n{{nope}}\n", &["a"]).unwrap_err();
        assert!(err.to_string().contains("nope"));
        assert!(parse("x", "### other\n", &[]).is_err());
        assert!(parse("x", "### system\nonly\n", &[]).is_err());
        assert!(parse("x", "stray\n### user\nu\n", &[]).is_err());
    }

    #[test]
    fn render_is_single_pass() {
        assert_eq!(
            render("a {{x}} b {{y}} {{z}}", &[("x", "{{y}}"), ("y", "2")]),
            "a {{y}} b 2 {{z}}"
        );
    }
}
