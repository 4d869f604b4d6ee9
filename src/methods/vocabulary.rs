//! What each method can count: the keys of its `metrics.json` `counts` and
//! the audit event types it can emit. A reader that compares runs (MLflow's
//! metrics, a report) needs every count that could have been non-zero, so
//! that a count of 0 is a value and not a missing one. A type missing here
//! is still counted when it occurs; it only lacks its zero.

use crate::methods::llm_judge::JudgeStatus;
use crate::methods::mcq::ParseStatus;

/// Audit severities, as `metrics.json` spells them.
pub const SEVERITIES: [&str; 3] = ["info", "warning", "error"];

/// Audit event types every method can emit (the call log's checks).
const CALL_EVENTS: [&str; 1] = ["implausible_usage"];

/// The method a namespace's method name is a variant of (`stability_mcq`
/// is `mcq`, `llm_judge.target` is `llm_judge`).
fn base(method: &str) -> &str {
    let m = method.strip_suffix(".target").unwrap_or(method);
    m.strip_prefix("stability_").unwrap_or(m)
}

fn parse_statuses() -> Vec<ParseStatus> {
    let all = [
        ParseStatus::Exact,
        ParseStatus::Phrase,
        ParseStatus::Unique,
        ParseStatus::Ambiguous,
        ParseStatus::NoOption,
        ParseStatus::Empty,
    ];
    // A new status fails to compile here until it is listed above.
    for s in all {
        match s {
            ParseStatus::Exact
            | ParseStatus::Phrase
            | ParseStatus::Unique
            | ParseStatus::Ambiguous
            | ParseStatus::NoOption
            | ParseStatus::Empty => {}
        }
    }
    all.to_vec()
}

fn judge_statuses() -> Vec<JudgeStatus> {
    let all = [
        JudgeStatus::Parsed,
        JudgeStatus::Repaired,
        JudgeStatus::Invalid,
        JudgeStatus::EmptyTarget,
        JudgeStatus::TargetUnreadable,
        JudgeStatus::ContextOverflow,
    ];
    for s in all {
        match s {
            JudgeStatus::Parsed
            | JudgeStatus::Repaired
            | JudgeStatus::Invalid
            | JudgeStatus::EmptyTarget
            | JudgeStatus::TargetUnreadable
            | JudgeStatus::ContextOverflow => {}
        }
    }
    all.to_vec()
}

fn names<T: serde::Serialize>(values: Vec<T>) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The `counts` keys a finished namespace of `method` reports (sweeps
/// report none).
pub fn counts(method: &str) -> Vec<String> {
    if method.starts_with("stability_") {
        return Vec::new();
    }
    match base(method) {
        "mcq" => names(parse_statuses()),
        "llm_judge" => {
            let mut out = names(judge_statuses());
            out.push("unscored".into());
            out
        }
        "mcq_logprob" => {
            let mut out: Vec<String> = crate::methods::mcq_logprob::VARIANTS
                .iter()
                .map(|v| format!("ties_{v}"))
                .collect();
            out.extend(
                [
                    "truncated",
                    "unscored",
                    "unscored_context_overflow",
                    "unscored_unalignable",
                    "unscored_impossible_logprob",
                ]
                .map(str::to_string),
            );
            out
        }
        _ => Vec::new(),
    }
}

/// The audit event types a namespace of `method` can emit.
pub fn audit_types(method: &str) -> Vec<&'static str> {
    let own: &[&str] = match base(method) {
        "mcq" => &["empty_reply", "mcq_parse_failed"],
        "llm_judge" => &[
            "empty_target_reply",
            "empty_target_invalid",
            "judge_parse_failed_first",
            "judge_repair_used",
            "judge_invalid",
            "target_unreadable",
            "unscored",
        ],
        "mcq_logprob" => &[
            "unscored",
            "tie",
            "logprob_anomaly",
            "boundary_straddle",
            "context_truncated",
        ],
        _ => &[],
    };
    own.iter().chain(CALL_EVENTS.iter()).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_the_serialized_status_names() {
        assert_eq!(
            counts("mcq"),
            [
                "exact",
                "phrase",
                "unique",
                "ambiguous",
                "no_option",
                "empty"
            ]
        );
        assert_eq!(
            counts("llm_judge"),
            [
                "parsed",
                "repaired",
                "invalid",
                "empty_target",
                "target_unreadable",
                "context_overflow",
                "unscored"
            ]
        );
        assert!(counts("stability_mcq").is_empty());
        assert!(counts("mcq_logprob").contains(&"ties_acc_norm".to_string()));
        assert!(audit_types("stability_llm_judge").contains(&"judge_repair_used"));
        assert!(audit_types("mcq").contains(&"implausible_usage"));
    }
}
