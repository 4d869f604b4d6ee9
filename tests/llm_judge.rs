//! llm_judge end to end under w2c's own protocol: two checkpoint streams, a
//! kill between target and judge never regenerates an answer, a new judge
//! re-judges stored answers, empty and tool-call-only target replies are
//! handled and audited.

mod common;

use common::*;
use std::time::Duration;

/// w2c's own protocol: its empty-reply rule and tools modes are tested here
/// (NVIDIA's protocol in tests/official_judge.rs). The mock judge answers in
/// varied styles, so that the lenient parser and the repair turn are used.
fn judge_opts() -> Opts {
    Opts {
        methods: "\"llm_judge\"".into(),
        n_per_label: Some(50),
        judge_extra: "protocol = \"w2c\"".into(),
        provider_extra: "judge_replies = \"varied\"".into(),
        ..Opts::default()
    }
}

fn target_calls(session: &std::path::Path) -> usize {
    read_jsonl(&session.join("artifacts_local/llm_judge.target/llm_calls.jsonl")).len()
}

#[test]
fn full_run_writes_both_streams_and_audits_empty_replies() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &judge_opts());
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let targets = read_jsonl(&s.join("checkpoints/llm_judge.target/results.jsonl"));
    let decisions = read_jsonl(&s.join("checkpoints/llm_judge/results.jsonl"));
    assert_eq!(targets.len(), 150);
    assert_eq!(decisions.len(), 150);
    assert!(s.join("checkpoints/llm_judge.target/_DONE.json").exists());
    assert!(s.join("checkpoints/llm_judge/_DONE.json").exists());
    // Empty target replies: audited, invalid, no judge call.
    let empty: Vec<_> = decisions
        .iter()
        .filter(|d| d["status"] == "empty_target")
        .collect();
    assert!(
        !empty.is_empty(),
        "the mock gives some empty replies at this size"
    );
    for d in &empty {
        assert_eq!(d["prediction"], "invalid");
        assert!(d["judge_raw"].is_null());
    }
    let audit = read_jsonl(&s.join("checkpoints/llm_judge/audit_fallbacks.jsonl"));
    let n = |t: &str| audit.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(n("empty_target_invalid"), empty.len());
    assert!(
        n("judge_parse_failed_first") > 0,
        "the varied mock judge needs some repairs at this size"
    );
    assert_eq!(
        n("judge_parse_failed_first"),
        decisions
            .iter()
            .filter(|d| !d["judge_raw_repair"].is_null())
            .count()
    );
    let target_audit = read_jsonl(&s.join("checkpoints/llm_judge.target/audit_fallbacks.jsonl"));
    assert_eq!(target_audit.len(), empty.len());
    // Judge calls: one per non-empty answer plus one per repair.
    let judge_calls = read_jsonl(&s.join("artifacts_local/llm_judge/llm_calls.jsonl"));
    assert_eq!(
        judge_calls.len(),
        150 - empty.len() + n("judge_parse_failed_first")
    );
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    assert_eq!(
        m["metrics"]["n_invalid"].as_u64().unwrap() as usize,
        empty.len() + n("judge_invalid")
    );
}

#[test]
fn kill_between_target_and_judge_never_regenerates_answers() {
    let reference = Workspace::new();
    let cfg = reference.config("eval.toml", &judge_opts());
    run_ok(&reference, &cfg);
    let ref_s = only_session(&reference.runs(), "k");
    let ref_metrics =
        read_json(&ref_s.join("artifacts_local/llm_judge/metrics.json"))["metrics"].clone();

    let ws = Workspace::new();
    let slow = Opts {
        latency_ms: 10,
        concurrency: 4,
        ..judge_opts()
    };
    let cfg = ws.config("eval.toml", &slow);
    // Kill twice while the target answers, then twice while the judge works.
    let steps: [(&str, usize); 4] = [
        ("llm_judge.target", 20),
        ("llm_judge.target", 60),
        ("llm_judge", 10),
        ("llm_judge", 50),
    ];
    let mut killed_in_judge_phase = false;
    for (ns, n) in steps {
        let mut child = spawn_run(&ws, &cfg);
        let running = wait_while_running(&mut child, ns, Duration::from_secs(120), || {
            result_lines(&ws, ns) >= n
        });
        let _ = child.kill();
        let _ = child.wait();
        let s = session_dir(&ws).expect("session");
        if running && ns == "llm_judge" && !s.join("checkpoints/llm_judge/_DONE.json").exists() {
            killed_in_judge_phase = true;
        }
    }
    assert!(killed_in_judge_phase, "no kill landed in the judge phase");
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    // Every target was asked exactly once across all the interrupted runs,
    // except answers that were in flight at a kill (never written, so redone).
    let answered = read_jsonl(&s.join("checkpoints/llm_judge.target/results.jsonl"));
    assert_eq!(
        answered.len(),
        150,
        "a stored target answer was regenerated"
    );
    assert!(target_calls(&s) >= 150);
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"))["metrics"].clone();
    assert_eq!(m, ref_metrics);
}

#[test]
fn a_new_judge_rejudges_stored_answers_without_new_target_calls() {
    let ws = Workspace::new();
    let cfg = ws.config("a.toml", &judge_opts());
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let calls_before = target_calls(&s);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("judge = \"mock-judge\"", "judge = \"other-judge\"");
    let cfg2 = ws.write("b.toml", &text);
    run_ok(&ws, &cfg2);
    assert_eq!(target_calls(&s), calls_before, "the target was asked again");
    let mut names: Vec<String> = std::fs::read_dir(s.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "llm_judge");
    assert_eq!(names[1], "llm_judge.target");
    assert!(names[2].starts_with("llm_judge~"));
    let rejudged = read_jsonl(&s.join(format!("checkpoints/{}/results.jsonl", names[2])));
    assert_eq!(rejudged.len(), 150);
}

#[test]
fn native_tool_calls_without_content_are_judged_as_tool_calls() {
    let server = MockServer::start(&[], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        judge_extra: "protocol = \"w2c\"\ntools_mode = \"native\"".into(),
        ..judge_opts()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let targets = read_jsonl(&s.join("checkpoints/llm_judge.target/results.jsonl"));
    let tool_only: Vec<_> = targets
        .iter()
        .filter(|t| t["text"] == "" && t["tool_calls"].is_array())
        .collect();
    assert!(
        !tool_only.is_empty(),
        "no tool-call-only replies at this size"
    );
    let decisions = read_jsonl(&s.join("checkpoints/llm_judge/results.jsonl"));
    for t in tool_only {
        let d = decisions.iter().find(|d| d["uuid"] == t["uuid"]).unwrap();
        assert_ne!(d["status"], "empty_target");
        if d["status"] == "parsed" {
            assert_eq!(d["prediction"], "tool_call", "{d}");
        }
    }
    // The request carried native tools.
    let calls = read_jsonl(&s.join("artifacts_local/llm_judge.target/llm_calls.jsonl"));
    assert!(calls
        .iter()
        .any(|c| c["request"]["tools"][0]["type"] == "function"));
}
