//! mcq_logprob end to end: four scored continuations per example through
//! /completions (built-in mock and HTTP mock-server agree), all variants
//! reported, and an endpoint that does not echo stops the method clearly.

mod common;

use common::*;

fn opts() -> Opts {
    Opts {
        methods: "\"mcq_logprob\"".into(),
        mcq_extra: "\n[methods.mcq_logprob]\ntemplate = \"qwen2_5\"".into(),
        ..Opts::default()
    }
}

#[test]
fn scores_every_choice_and_matches_over_http() {
    let local = Workspace::new();
    let cfg = local.config("eval.toml", &opts());
    run_ok(&local, &cfg);
    let s = only_session(&local.runs(), "k");
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    for v in ["acc", "acc_norm", "acc_bytes", "acc_tokens"] {
        assert_eq!(m["variants"][v]["n_total"], 30, "{v}");
    }
    assert_eq!(m["metrics"], m["variants"]["acc"]);
    let manifest = read_json(&s.join("manifest.json"));
    assert_eq!(
        manifest["namespaces"]["mcq_logprob"]["settings"]["family"],
        "qwen2_5"
    );
    let debug = read_jsonl(&s.join("artifacts_local/mcq_logprob/debug_per_choice.jsonl"));
    assert_eq!(debug.len(), 120);
    assert!(debug
        .iter()
        .all(|d| d["choice"]["n_tokens"].as_u64().unwrap() > 0));
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert_eq!(calls.len(), 120);
    assert_eq!(calls[0]["request"]["echo"], true);
    assert_eq!(calls[0]["request"]["max_tokens"], 1);
    assert!(calls[0]["request"]["prompt"]
        .as_str()
        .unwrap()
        .starts_with("<|im_start|>system"));

    let server = MockServer::start(&["--seed", "42", "--rate-5xx", "0.05"], &[]);
    let http = Workspace::new();
    let cfg = http.http_config("eval.toml", &opts(), &server.url, "");
    run_ok(&http, &cfg);
    let hs = only_session(&http.runs(), "k");
    let hm = read_json(&hs.join("artifacts_local/mcq_logprob/metrics.json"));
    assert_eq!(hm["variants"], m["variants"]);
}

#[test]
fn endpoint_without_echo_stops_with_a_clear_message() {
    let server = MockServer::start(&["--no-echo"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &opts(), &server.url, "");
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot score prompts") && stderr.contains("echo"),
        "{stderr}"
    );
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("artifacts_local/mcq_logprob/metrics.json").exists());
}
