//! Audit events for the dataset rows a session accepts as the official task
//! does although a tool text in them is not a tool definition, or their
//! `target_tool` names no tool of `tools` (see [`crate::dataset::ToolNote`]):
//! one `tool_not_a_definition` or `target_tool_not_offered` event per such
//! text of a selected row, naming the file, line, field and uuid.
//! Pure: the store writes them once to the session's
//! `audit_fallbacks.jsonl`.

use crate::audit::{AuditEvent, Severity};
use crate::dataset::ToolNote;
use crate::dataset_fields::NoteKind;
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;

/// Event type of a tool text that is not a tool definition.
pub const TOOL_NOT_A_DEFINITION: &str = "tool_not_a_definition";

/// Event type of a `target_tool` that names no tool of the row's `tools`.
pub const TARGET_TOOL_NOT_OFFERED: &str = "target_tool_not_offered";

/// The event type of a note.
pub fn event_type(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::NotADefinition => TOOL_NOT_A_DEFINITION,
        NoteKind::TargetNotOffered => TARGET_TOOL_NOT_OFFERED,
    }
}

/// The `method` of dataset events: they belong to no method.
pub const DATASET: &str = "dataset";

/// One event per note whose row is in `selected` (the uuids the session
/// evaluates), in file order; ids are `<uuid>/<field>/<event type>`,
/// stable across runs, so writing them again adds nothing.
pub fn events(path: &Path, notes: &[ToolNote], selected: &HashSet<&str>) -> Vec<AuditEvent> {
    notes
        .iter()
        .filter(|n| selected.contains(n.uuid.as_str()))
        .map(|n| {
            AuditEvent::new(
                &format!("{}/{}", n.uuid, n.note.field),
                &n.uuid,
                DATASET,
                "loading",
                event_type(n.note.kind),
                Severity::Info,
                json!({
                    "file": path.display().to_string(),
                    "line": n.line,
                    "field": n.note.field,
                    "problem": n.note.problem,
                    "accepted": "given to the model as written, as the official When2Call task gives it",
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset_fields::Note;

    fn note(line: usize, uuid: &str, field: &str) -> ToolNote {
        ToolNote {
            line,
            uuid: uuid.into(),
            note: Note {
                field: field.into(),
                problem: "got JSON [1, 2]".into(),
                kind: if field == "target_tool" {
                    NoteKind::TargetNotOffered
                } else {
                    NoteKind::NotADefinition
                },
            },
        }
    }

    #[test]
    fn one_event_per_selected_note_naming_line_field_and_uuid() {
        let notes = [
            note(2, "a", "tools[0]"),
            note(2, "a", "target_tool"),
            note(5, "b", "tools[1]"),
        ];
        let selected: HashSet<&str> = ["a"].into_iter().collect();
        let ev = events(Path::new("/d/x.jsonl"), &notes, &selected);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event_id, "a/tools[0]/tool_not_a_definition");
        assert_eq!(ev[1].event_id, "a/target_tool/target_tool_not_offered");
        assert_eq!(ev[0].uuid, "a");
        assert_eq!(ev[0].event_type, TOOL_NOT_A_DEFINITION);
        assert_eq!(ev[0].severity, Severity::Info);
        assert_eq!(ev[0].details["line"], 2);
        assert_eq!(ev[0].details["field"], "tools[0]");
        assert_eq!(ev[0].details["file"], "/d/x.jsonl");
    }
}
