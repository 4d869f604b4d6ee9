//! Long model texts are stored once.
//!
//! A reply's full text lives in the namespace's checkpoint record
//! (`results.jsonl`), the source of truth. The copies in secondary files —
//! `predictions.jsonl`, `target_responses.jsonl`, `llm_calls.jsonl` — keep a
//! text verbatim only up to [`INLINE_MAX_BYTES`]; a longer one is replaced by
//! its first [`PREVIEW_CHARS`] characters plus a [`TextDigest`] (sha256 and
//! full length) under `<field>_full`, so a multi-megabyte reply is not
//! written three times.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest text copied verbatim into a secondary file.
pub const INLINE_MAX_BYTES: usize = 16 * 1024;

/// Characters kept as a preview of a longer text.
pub const PREVIEW_CHARS: usize = 2000;

/// What identifies a text that was cut to a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextDigest {
    /// sha256 of the full text's UTF-8 bytes.
    pub sha256: String,
    /// Length of the full text, bytes.
    pub bytes: usize,
    /// Where the full text is stored (relative to the session), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_in: Option<String>,
}

/// The text to copy and, when it was cut, its digest.
pub fn abbreviate(text: &str, stored_in: Option<&str>) -> (String, Option<TextDigest>) {
    if text.len() <= INLINE_MAX_BYTES {
        return (text.to_string(), None);
    }
    let preview: String = text.chars().take(PREVIEW_CHARS).collect();
    (
        preview,
        Some(TextDigest {
            sha256: crate::fingerprint::sha256_hex(text.as_bytes()),
            bytes: text.len(),
            stored_in: stored_in.map(str::to_string),
        }),
    )
}

/// Cuts the string fields `keys` of a JSON object row with [`abbreviate`],
/// adding `<key>_full` digests for the ones cut.
pub fn shorten_fields(row: &mut Value, keys: &[&str], stored_in: Option<&str>) {
    let Some(obj) = row.as_object_mut() else {
        return;
    };
    for key in keys {
        let Some(Value::String(text)) = obj.get(*key) else {
            continue;
        };
        if let (short, Some(digest)) = abbreviate(text, stored_in) {
            obj.insert(key.to_string(), Value::String(short));
            if let Ok(d) = serde_json::to_value(digest) {
                obj.insert(format!("{key}_full"), d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_stay_long_ones_are_cut_with_a_digest() {
        assert_eq!(abbreviate("B", None), ("B".to_string(), None));
        let long = "é".repeat(INLINE_MAX_BYTES);
        let (short, digest) = abbreviate(&long, Some("checkpoints/mcq/results.jsonl"));
        assert_eq!(short.chars().count(), PREVIEW_CHARS);
        let d = digest.unwrap();
        assert_eq!(d.bytes, long.len());
        assert_eq!(d.sha256, crate::fingerprint::sha256_hex(long.as_bytes()));
        let mut row = serde_json::json!({"raw_output": long, "gold": "direct"});
        shorten_fields(&mut row, &["raw_output", "missing"], None);
        assert_eq!(
            row["raw_output"].as_str().unwrap().chars().count(),
            PREVIEW_CHARS
        );
        assert_eq!(row["raw_output_full"]["bytes"], long.len());
        assert_eq!(row["gold"], "direct");
    }
}
