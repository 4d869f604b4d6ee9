//! w2c against a real third-party OpenAI-compatible server: llama-cpp-python
//! serving the shared tiny GGUF model (context window 2048), started by the
//! test. `mcq_logprob` scores on a covering subset of the real When2Call rows
//! — CJK and other multi-byte text (incl. `2e4c9726`), a row over the
//! server's context, the special-token `hermes` template, left-truncation —
//! must agree with an independent in-process computation from the same GGUF
//! (tests/support/llama_reference.py) within 1e-3 per choice, with equal
//! predictions and metrics. `mcq` and `llm_judge` run end to end on the same
//! server, and `llm_judge` with NVIDIA's protocol (native `tools`, no
//! sampling parameters) on a second one started with the
//! `chatml-function-calling` chat format. The venv comes from
//! `.ci/llama_venv.sh`; without it the tests fail with one line saying so.

mod common;

use common::llama::{reference, LlamaServer, RefRequest};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The server's context window: row `c895adff` (about 2,130 tokens) exceeds it.
const N_CTX: u32 = 2048;

/// The shortest row over 2048 tokens.
const OVER_LONG: &str = "c895adff";
/// With the `hermes` template (special tokens): accented Latin ("Käärijä",
/// two-byte characters), plain ASCII, and the over-long row.
const HERMES_ROWS: [&str; 3] = ["6065e474", "4f02bfd1", OVER_LONG];
/// With the plain template and left-truncation: the Chinese row of issue 10
/// (an answer starting with byte pieces and ending in "。"), and the
/// over-long row.
const TRUNCATION_ROWS: [&str; 2] = ["2e4c9726", OVER_LONG];

/// One server for the whole binary; its guard stops it when the tests end.
fn server() -> &'static str {
    static SERVER: OnceLock<LlamaServer> = OnceLock::new();
    &SERVER.get_or_init(|| LlamaServer::start(N_CTX)).url
}

/// A synthetic row for end-of-generation: no real row has one with this
/// model (its greedy next token after every real `mcq_logprob` prompt of
/// five templates is text), but after this question in the `hermes`
/// template it answers "down" and then ends generation, so the `direct`
/// choice's reply has nothing generated and `completion_tokens: 0`.
const EOG_ROW: &str = r#"{"uuid": "eog-0001", "source": "w2c-test", "question": "What is the license?", "correct_answer": "cannot_answer", "answers": {"direct": "down", "tool_call": "{\"name\": \"license\", \"arguments\": {}}", "request_for_info": "Which license?", "cannot_answer": "I cannot tell."}, "target_tool": null, "tools": []}"#;

/// Writes the rows whose uuid starts with one of `prefixes`, plus `extra` lines.
fn subset(ws: &Workspace, prefixes: &[&str], extra: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(shared_dataset()).expect("dataset");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).expect("row");
            let uuid = v["uuid"].as_str().unwrap_or_default();
            prefixes.iter().any(|p| uuid.starts_with(p))
        })
        .collect();
    assert_eq!(rows.len(), prefixes.len(), "rows {prefixes:?}");
    let lines: Vec<&str> = rows.into_iter().chain(extra.iter().copied()).collect();
    ws.write("subset.jsonl", &(lines.join("\n") + "\n"))
}

fn config(ws: &Workspace, data: &Path, methods: &str, extra: &str) -> PathBuf {
    config_at(ws, server(), data, methods, extra)
}

/// [`config`] for the server at `url`.
fn config_at(ws: &Workspace, url: &str, data: &Path, methods: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[run]
runs_dir = "runs"
seed = 7

[dataset]
path = "{data}"

[models]
target = "tiny-llama-local"
target_provider = "llama"
judge = "tiny-llama-local"
judge_provider = "llama"

[providers.llama]
kind = "openai"
base_url = "{url}/v1"
max_concurrency = 2
timeout_secs = 300
max_attempts = 2

[methods]
enabled = [{methods}]
{extra}
"#,
        data = data.display(),
    );
    ws.write("eval.toml", &text)
}

/// The stored scores of a finished `mcq_logprob` namespace against the
/// reference: every scored choice within 1e-3 with the same token count,
/// every variant's prediction and the accuracy equal. Returns the number of
/// choices compared.
fn check_against_reference(session: &Path) -> usize {
    let art = session.join("artifacts_local/mcq_logprob");
    let mut prompts: HashMap<String, Vec<String>> = HashMap::new();
    for c in read_jsonl(&art.join("llm_calls.jsonl")) {
        if c["status"] == "ok" {
            prompts
                .entry(c["uuid"].as_str().unwrap().to_string())
                .or_default()
                .push(c["request"]["prompt"].as_str().unwrap().to_string());
        }
    }
    let debug = read_jsonl(&art.join("debug_per_choice.jsonl"));
    let requests: Vec<RefRequest> = debug
        .iter()
        .map(|d| {
            let uuid = d["uuid"].as_str().unwrap();
            let label = d["choice"]["label"].as_str().unwrap();
            let i = ["direct", "tool_call", "request_for_info", "cannot_answer"]
                .iter()
                .position(|l| *l == label)
                .unwrap();
            RefRequest {
                id: format!("{uuid}/{label}"),
                prompt: prompts[uuid][i].clone(),
                context_chars: d["choice"]["context_chars"].as_u64().unwrap() as usize,
            }
        })
        .collect();
    let reference = reference(&requests);
    assert_eq!(reference.len(), debug.len());
    let mut by_uuid: HashMap<String, Vec<[f64; 4]>> = HashMap::new();
    for (d, r) in debug.iter().zip(&reference) {
        let c = &d["choice"];
        let (ours, truth) = (
            c["logprob"].as_f64().unwrap(),
            r["logprob"].as_f64().unwrap(),
        );
        assert!(
            (ours - truth).abs() <= 1e-3,
            "{}: w2c {ours} vs in-process {truth}",
            r["id"]
        );
        assert_eq!(c["n_tokens"], r["n_tokens"], "{}", r["id"]);
        let n = |k: &str| c[k].as_f64().unwrap();
        by_uuid
            .entry(d["uuid"].as_str().unwrap().to_string())
            .or_default()
            .push([
                truth,
                truth / n("n_chars"),
                truth / n("n_bytes"),
                truth / n("n_tokens"),
            ]);
    }
    let labels = ["direct", "tool_call", "request_for_info", "cannot_answer"];
    let preds = read_jsonl(&art.join("predictions.jsonl"));
    let keys = [
        "prediction",
        "prediction_acc_norm",
        "prediction_acc_bytes",
        "prediction_acc_tokens",
    ];
    let mut correct = 0;
    let mut scored = 0;
    for p in preds.iter().filter(|p| p["unscored"].is_null()) {
        let scores = &by_uuid[p["uuid"].as_str().unwrap()];
        for (v, key) in keys.iter().enumerate() {
            // Argmax, ties to the first candidate.
            let best = (0..4).fold(0, |b, i| if scores[i][v] > scores[b][v] { i } else { b });
            assert_eq!(p[*key], labels[best], "{} {key}", p["uuid"]);
        }
        scored += 1;
        correct += usize::from(p["prediction"] == p["gold"]);
    }
    let m = read_json(&art.join("metrics.json"));
    assert_eq!(m["metrics"]["n_total"], scored);
    let acc = m["metrics"]["accuracy"].as_f64().unwrap();
    assert!((acc - correct as f64 / scored as f64).abs() < 1e-12);
    debug.len()
}

#[test]
fn mcq_logprob_agrees_with_the_in_process_reference() {
    // 1. The special-token `hermes` template, no truncation: the over-long
    // row is an unscored result (HTTP 400 context_length_exceeded).
    let t0 = std::time::Instant::now();
    let ws = Workspace::new();
    let data = subset(&ws, &HERMES_ROWS, &[EOG_ROW]);
    let cfg = config(
        &ws,
        &data,
        "\"mcq_logprob\"",
        "[methods.mcq_logprob]\ntemplate = \"hermes\"",
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let probe = read_json(&s.join("checkpoints/mcq_logprob/probe.json"));
    assert_eq!(probe["result"]["verdict"], "scorable", "{probe}");
    assert_eq!(probe["result"]["specials_not_text"], true, "{probe}");
    assert_eq!(probe["result"]["partial_bytes"], true, "{probe}");
    assert!(s.join("checkpoints/mcq_logprob/_DONE.json").exists());
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    assert_eq!(m["counts"]["unscored"], 1, "{m}");
    assert_eq!(m["counts"]["unscored_context_overflow"], 1, "{m}");
    let preds = read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl"));
    let over = preds
        .iter()
        .find(|p| p["uuid"].as_str().unwrap().starts_with(OVER_LONG))
        .unwrap();
    assert_eq!(over["unscored"]["reason"], "context_overflow");
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert!(
        calls
            .iter()
            .any(|c| c["uuid"] == "eog-0001" && c["usage"]["completion_tokens"] == 0),
        "the model no longer ends generation after the synthetic row's `direct` answer"
    );
    eprintln!("hermes run: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(check_against_reference(&s), 12);
    eprintln!("hermes + reference: {:.1} s", t0.elapsed().as_secs_f64());

    // 2. The plain template with left-truncation to 768 tokens: the
    // over-long row is cut, scored and recorded as cut.
    let ws = Workspace::new();
    let data = subset(&ws, &TRUNCATION_ROWS, &[]);
    let cfg = config(
        &ws,
        &data,
        "\"mcq_logprob\"",
        "[methods.mcq_logprob]\ntemplate = \"default\"\ntruncation = \"left\"\nmax_context_tokens = 768",
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let probe = read_json(&s.join("checkpoints/mcq_logprob/probe.json"));
    assert_eq!(probe["result"]["specials_not_text"], false, "{probe}");
    assert!(probe["tokenize_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/extras/tokenize"));
    let preds = read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl"));
    let over = preds
        .iter()
        .find(|p| p["uuid"].as_str().unwrap().starts_with(OVER_LONG))
        .unwrap();
    assert!(over["unscored"].is_null(), "{over}");
    assert!(over["truncation"]["prompt_tokens_after"].as_u64().unwrap() <= 767);
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert!(calls
        .iter()
        .all(|c| c["usage"]["prompt_tokens"].as_u64().unwrap() <= 767));
    assert_eq!(check_against_reference(&s), 8);
    eprintln!(
        "both runs + references: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn mcq_and_llm_judge_run_end_to_end_on_the_chat_endpoint() {
    let ws = Workspace::new();
    let data = subset(&ws, &["6065e474", "4f02bfd1"], &[]);
    let cfg = config(
        &ws,
        &data,
        "\"mcq\", \"llm_judge\"",
        "[methods.mcq]\nmax_tokens = 8\n[methods.llm_judge]\nprotocol = \"w2c\"\ntarget_max_tokens = 24\njudge_max_tokens = 24",
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    for ns in ["mcq", "llm_judge.target", "llm_judge"] {
        assert!(
            s.join("checkpoints").join(ns).join("_DONE.json").exists(),
            "{ns} not done"
        );
    }
    for ns in ["mcq", "llm_judge"] {
        let m = read_json(&s.join(format!("artifacts_local/{ns}/metrics.json")));
        assert_eq!(m["metrics"]["n_total"], 2, "{ns}");
        let calls = read_jsonl(&s.join(format!("artifacts_local/{ns}/llm_calls.jsonl")));
        assert!(calls.iter().all(|c| c["status"] == "ok"), "{ns}");
        assert!(calls.iter().all(|c| c["endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/v1/chat/completions")));
    }
    let v = w2c(ws.path())
        .args(["verify", "--all", "--local-only"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn llm_judge_with_nvidias_protocol_runs_end_to_end() {
    // The chat format that accepts `tools`. NVIDIA's requests send no
    // `tool_choice` and no system message, and llama-cpp-python 0.3.36's
    // chatml-function-calling then renders the prompt without the tools
    // (same prompt_tokens with or without them): the rewritten tools are
    // accepted and not shown to the model. No max_tokens either: replies
    // run to the model's end of generation or to the context window, and a
    // prompt over the window makes the example unscored, not an error. The
    // window is kept small (1,536 tokens) to bound the generation time;
    // without per-token logits (only `mcq_logprob` needs them) generation
    // is three to four times faster.
    let t0 = std::time::Instant::now();
    let server = LlamaServer::start_with(
        1536,
        &[
            "--chat_format",
            "chatml-function-calling",
            "--logits_all",
            "false",
        ],
    );
    let ws = Workspace::new();
    // Two rows with one short tool each, whose answers this model ends
    // early: both judge prompts (about 1,000 tokens) fit the window.
    let data = subset(&ws, &["c3ce199a", "1e333361"], &[]);
    let cfg = config_at(&ws, &server.url, &data, "\"llm_judge\"", "");
    // One request at a time: the server derives each request's sampling
    // seed from the previous one, so the order fixes the replies.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_concurrency = 2", "max_concurrency = 1");
    std::fs::write(&cfg, text).unwrap();
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    for ns in ["llm_judge.target", "llm_judge"] {
        assert!(
            s.join("checkpoints").join(ns).join("_DONE.json").exists(),
            "{ns} not done"
        );
    }
    // NVIDIA's target request: the question alone, the rewritten tools,
    // nothing else.
    let targets = read_jsonl(&s.join("artifacts_local/llm_judge.target/llm_calls.jsonl"));
    assert_eq!(targets.len(), 2);
    for c in &targets {
        assert_eq!(c["status"], "ok", "{c}");
        let req = &c["request"];
        let keys: Vec<&str> = req
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["model", "messages", "tools"], "{req}");
        assert_eq!(req["messages"].as_array().unwrap().len(), 1);
        for tool in req["tools"].as_array().unwrap() {
            let params = &tool["function"]["parameters"];
            assert_eq!(params["type"], "object");
            for p in params["properties"].as_object().unwrap().values() {
                assert_eq!(p["type"], "string");
            }
        }
    }
    // Each answer was judged with NVIDIA's prompt; whatever the replies
    // were, every row has its outcome and the official aggregate counts or
    // lists it.
    let judge_calls = read_jsonl(&s.join("artifacts_local/llm_judge/llm_calls.jsonl"));
    let first: Vec<&Value> = judge_calls
        .iter()
        .filter(|c| c["role"] == "judge")
        .collect();
    assert_eq!(first.len(), 2);
    for c in &first {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["request"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are an expert at classifying responses from AI models."));
    }
    let decisions = read_jsonl(&s.join("checkpoints/llm_judge/results.jsonl"));
    let statuses: Vec<&str> = decisions
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    let official = &m["official_judge"];
    let left_out: u64 = official["left_out"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(official["n_aggregated"].as_u64().unwrap() + left_out, 2);
    let v = w2c(ws.path())
        .args(["verify", "--all", "--local-only"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    eprintln!(
        "statuses {statuses:?}, {} judge calls, official aggregate of {} rows, {:.1} s",
        judge_calls.len(),
        official["n_aggregated"],
        t0.elapsed().as_secs_f64()
    );
}
