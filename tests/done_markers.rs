//! `_DONE.json` names exactly the artifacts each namespace wrote (no more, no
//! fewer), and a sweep's target answers are exported under their
//! `uuid#repeat` keys.

mod common;

use common::*;
use std::collections::BTreeSet;

#[test]
fn every_done_marker_names_exactly_the_files_written() {
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(2),
        methods: "\"mcq\", \"mcq_logprob\", \"llm_judge\", \"stability_llm_judge\"".into(),
        mcq_extra: "\n[methods.stability]\nk = 2\ntemperatures = [0.5]".into(),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let mut seen = 0;
    for entry in std::fs::read_dir(s.join("checkpoints")).unwrap().flatten() {
        let ns = entry.file_name().to_string_lossy().into_owned();
        let done = read_json(&entry.path().join("_DONE.json"));
        let listed: BTreeSet<String> = done["artifact_files"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let written: BTreeSet<String> = std::fs::read_dir(s.join("artifacts_local").join(&ns))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(listed, written, "{ns}");
        assert_eq!(
            listed.contains("consistency.svg"),
            ns.starts_with("stability_") && !ns.ends_with(".target"),
            "{ns}"
        );
        seen += 1;
    }
    assert_eq!(
        seen, 6,
        "mcq, mcq_logprob, llm_judge(.target), sweep(.target)"
    );
    assert!(s
        .join("artifacts_local/mcq_logprob/debug_per_choice.jsonl")
        .exists());

    // The sweep's target answers: k per example, keyed `uuid#repeat`.
    let ns = "stability_llm_judge_k=2_T=0.5.target";
    let rows = read_jsonl(&s.join(format!("artifacts_local/{ns}/target_responses.jsonl")));
    assert_eq!(rows.len(), 6 * 2);
    let stored = read_jsonl(&s.join(format!("checkpoints/{ns}/results.jsonl")));
    for row in &rows {
        let key = row["key"].as_str().unwrap();
        assert_eq!(
            key,
            format!("{}#{}", row["uuid"].as_str().unwrap(), row["repeat"])
        );
        let r = stored.iter().find(|r| r["key"] == key).expect("stored");
        assert_eq!(r["text"], row["text"]);
    }
    w2c(ws.path())
        .args(["verify", "--all", "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
}
