//! Audit trail: typed events for everything that was not a clean result
//! (unparseable outputs, invalid predictions, ...).
//!
//! An event is born inside the work item's result record, so the checkpoint is
//! the source of truth; it is then appended to `audit_fallbacks.jsonl` exactly
//! once (events carry a stable `event_id`, and a resume appends only the ones
//! a crash kept from being written).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How serious an audit event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Noted, result unaffected.
    Info,
    /// Result may be degraded.
    Warning,
    /// The item's prediction is invalid.
    Error,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Stable id: item key, type and ordinal within the item.
    pub event_id: String,
    /// Example uuid.
    pub uuid: String,
    /// Repeat index, for sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Method name.
    pub method: String,
    /// Pipeline stage (`parsing`, `scoring`, ...).
    pub stage: String,
    /// Event type, e.g. `mcq_parse_failed`.
    pub event_type: String,
    /// Severity.
    pub severity: Severity,
    /// Type-specific details.
    pub details: Value,
}

impl AuditEvent {
    /// Builds an event; `ordinal` distinguishes several events of one type on
    /// the same item.
    pub fn new(
        key: &str,
        uuid: &str,
        method: &str,
        stage: &str,
        event_type: &str,
        severity: Severity,
        details: Value,
    ) -> Self {
        AuditEvent {
            event_id: format!("{key}/{event_type}"),
            uuid: uuid.to_string(),
            repeat: None,
            method: method.to_string(),
            stage: stage.to_string(),
            event_type: event_type.to_string(),
            severity,
            details,
        }
    }
}

/// Counts of events by type and by severity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// All events.
    pub n_events: usize,
    /// Events per type.
    pub by_type: BTreeMap<String, usize>,
    /// Events per severity.
    pub by_severity: BTreeMap<String, usize>,
}

/// Summarises a set of events.
pub fn summarize<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> AuditSummary {
    let mut s = AuditSummary::default();
    for e in events {
        s.n_events += 1;
        *s.by_type.entry(e.event_type.clone()).or_default() += 1;
        let sev = serde_json::to_value(e.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *s.by_severity.entry(sev).or_default() += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_counts() {
        let a = AuditEvent::new(
            "k1",
            "u1",
            "mcq",
            "parsing",
            "t1",
            Severity::Error,
            json!({}),
        );
        let b = AuditEvent::new(
            "k2",
            "u2",
            "mcq",
            "parsing",
            "t1",
            Severity::Warning,
            json!({}),
        );
        let s = summarize([&a, &b]);
        assert_eq!(s.n_events, 2);
        assert_eq!(s.by_type["t1"], 2);
        assert_eq!(s.by_severity["error"], 1);
        assert_eq!(a.event_id, "k1/t1");
    }
}
