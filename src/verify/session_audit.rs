//! The session's own `audit_fallbacks.jsonl` (events about its inputs, such
//! as `tool_not_a_definition`): it reads, holds each event once, names only
//! selected examples, and its counts are reported.

use crate::audit::AuditEvent;
use std::collections::{BTreeMap, HashSet};

/// What the events say, or why they are wrong: each `event_id` once, every
/// uuid one of `example_ids`.
pub fn check(events: &[AuditEvent], example_ids: &[String]) -> Result<String, String> {
    let selected: HashSet<&str> = example_ids.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        if !seen.insert(e.event_id.as_str()) {
            return Err(format!("event {} is written twice", e.event_id));
        }
        if !selected.contains(e.uuid.as_str()) {
            return Err(format!(
                "event {} names uuid {}, which the session did not select",
                e.event_id, e.uuid
            ));
        }
        *by_type.entry(e.event_type.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_type.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    Ok(format!(
        "{} event{}, each once ({})",
        events.len(),
        if events.len() == 1 { "" } else { "s" },
        counts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Severity;
    use serde_json::json;

    fn ev(uuid: &str, field: &str) -> AuditEvent {
        AuditEvent::new(
            &format!("{uuid}/{field}"),
            uuid,
            "dataset",
            "loading",
            "tool_not_a_definition",
            Severity::Info,
            json!({}),
        )
    }

    #[test]
    fn counts_events_and_refuses_repeats_and_strangers() {
        let ids = vec!["a".to_string(), "b".to_string()];
        let ok = check(&[ev("a", "tools[0]"), ev("b", "tools[0]")], &ids).unwrap();
        assert_eq!(ok, "2 events, each once (tool_not_a_definition: 2)");
        let twice = check(&[ev("a", "tools[0]"), ev("a", "tools[0]")], &ids).unwrap_err();
        assert!(twice.contains("written twice"), "{twice}");
        let stranger = check(&[ev("z", "tools[0]")], &ids).unwrap_err();
        assert!(stranger.contains("uuid z"), "{stranger}");
    }
}
