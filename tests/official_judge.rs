//! `llm_judge` under protocol `when2call` against NVIDIA's official
//! LLM-as-judge scripts themselves (../shared/reference/when2call_llm_judge,
//! run unchanged in the venv of `.ci/judge_venv.sh`: openai 1.75.0, tqdm,
//! requests): over all 300 rows of the shared test file, the scripts and w2c
//! each talk to a `w2c mock-server --record` that writes down every request
//! body and answers a fifth of the first judge calls in prose (so both send
//! their repair turn); every target, judge and repair request w2c sends
//! equals one the scripts sent, as JSON values, and the aggregate
//! `aggregate_llm_as_a_judge_results.py` prints from the scripts' output
//! equals the one in w2c's metrics.json. The other tests cover what the
//! scripts cannot show: a repair reply that is not JSON either, and the
//! Python suite's protocol.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv python with what the official scripts import.
fn judge_python() -> PathBuf {
    venv_python(
        "W2C_JUDGE_PYTHON",
        "judge-venv",
        "openai, tqdm, requests",
        "the venv of NVIDIA's judge scripts (openai 1.75.0, tqdm, requests)",
        ".ci/judge_venv.sh",
    )
}

/// NVIDIA's official LLM-as-judge scripts.
fn script(name: &str) -> PathBuf {
    let p = shared_dir()
        .join("reference/when2call_llm_judge")
        .join(name);
    assert!(
        p.is_file(),
        "NVIDIA's judge script is missing at {} (set W2C_SHARED_DIR)",
        p.display()
    );
    p
}

/// Runs one official script with `args`; returns its stdout.
fn run_script(python: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(script(name))
        .args(args)
        // The OpenAI client refuses to start without a key; the server
        // takes any. Local addresses never go through a proxy.
        .env("OPENAI_API_KEY", "sk-w2c-test")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The request bodies a `--record` file holds, each as canonical JSON
/// (keys sorted), sorted: a multiset to compare.
fn recorded_bodies(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = read_jsonl(path)
        .into_iter()
        .map(|r| {
            assert_eq!(r["endpoint"], "chat/completions", "{r}");
            w2c::fingerprint::canonical_json(&r["body"])
        })
        .collect();
    out.sort();
    out
}

/// The config of a w2c run of `llm_judge` against `server`, with the
/// scripts' model names and no `protocol` (the default is NVIDIA's).
fn config(ws: &Workspace, server: &str, data: &Path, extra: &str) -> PathBuf {
    ws.write(
        "eval.toml",
        &format!(
            r#"[run]
runs_dir = "runs"

[dataset]
path = "{data}"

[models]
target = "target-model"
target_provider = "local"
judge = "judge-model"
judge_provider = "local"

[providers.local]
kind = "openai"
base_url = "{server}/v1"
max_concurrency = 8

[methods]
enabled = ["llm_judge"]

[methods.llm_judge]
{extra}
"#,
            data = data.display(),
        ),
    )
}

#[test]
fn requests_and_aggregate_equal_nvidias_scripts_on_all_300_rows() {
    let python = judge_python();
    let ws = Workspace::new();
    let data = shared_dataset();
    let args = ["--judge-not-json", "0.2"];

    // NVIDIA's three scripts, unchanged, against a recording server.
    let scripts_record = ws.path().join("scripts_requests.jsonl");
    let server = MockServer::start(
        &[&args[..], &["--record", scripts_record.to_str().unwrap()]].concat(),
        &[],
    );
    let base = format!("{}/v1", server.url);
    let inference = ws.path().join("inference.jsonl");
    let judged = ws.path().join("judged.jsonl");
    run_script(
        &python,
        "run_openai_inference.py",
        &[
            "--eval_data_path",
            data.to_str().unwrap(),
            "--results_path",
            inference.to_str().unwrap(),
            "--openai_api_base_url",
            &base,
            "--openai_api_model",
            "target-model",
        ],
    );
    run_script(
        &python,
        "run_openai_judge.py",
        &[
            "--responses_path",
            inference.to_str().unwrap(),
            "--results_path",
            judged.to_str().unwrap(),
            "--openai_api_base_url",
            &base,
            "--judge_model",
            "judge-model",
        ],
    );
    let printed = run_script(
        &python,
        "aggregate_llm_as_a_judge_results.py",
        &[
            "--judge_responses_path",
            judged.to_str().unwrap(),
            "--results_path",
            ws.path().join("unused.json").to_str().unwrap(),
        ],
    );
    drop(server);
    // The aggregate is printed as a Python dict: read it as Python does.
    let out = Command::new(&python)
        .args([
            "-c",
            "import ast, json, sys; print(json.dumps(ast.literal_eval(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(printed.as_bytes())?;
            child.wait_with_output()
        })
        .expect("read the printed aggregate");
    let official: Value = serde_json::from_slice(&out.stdout).expect("aggregate as JSON");

    // w2c, with the default protocol, against the same server afresh.
    let w2c_record = ws.path().join("w2c_requests.jsonl");
    let server = MockServer::start(
        &[&args[..], &["--record", w2c_record.to_str().unwrap()]].concat(),
        &[],
    );
    let cfg = config(&ws, &server.url, &data, "");
    run_ok(&ws, &cfg);
    drop(server);

    // Every request, target, judge and repair, as the scripts sent it.
    let theirs = recorded_bodies(&scripts_record);
    let ours = recorded_bodies(&w2c_record);
    let repairs = theirs
        .iter()
        .filter(|b| b.contains(r#""role":"assistant""#))
        .count();
    assert!(
        repairs >= 30,
        "only {repairs} repair turns: the server should provoke about 60"
    );
    assert_eq!(theirs.len(), 600 + repairs);
    if theirs != ours {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter()
                .filter(|x| b.binary_search(x).is_err())
                .take(2)
                .map(|x| x.chars().take(1500).collect())
                .collect()
        };
        panic!(
            "w2c's {} requests differ from the scripts' {}:\nthe scripts' only: {:#?}\nw2c's only: {:#?}",
            ours.len(),
            theirs.len(),
            only(&theirs, &ours),
            only(&ours, &theirs)
        );
    }
    // Nothing the scripts do not send.
    for b in &ours {
        let v: Value = serde_json::from_str(b).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys == ["messages", "model"] || keys == ["messages", "model", "tools"],
            "{keys:?}"
        );
    }

    // The official aggregate, as the script printed it from its own output.
    let s = only_session(&ws.runs(), "k");
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    let ours = &m["official_judge"];
    assert_eq!(ours["n_aggregated"], 300, "{ours}");
    for (category, want) in official.as_object().expect("categories") {
        let got = &ours["categories"][category];
        assert_eq!(got["score"], want["score"], "{category}");
        assert_eq!(
            got["response_distribution"], want["response_distribution"],
            "{category}"
        );
    }
    assert_eq!(official.as_object().unwrap().len(), 3);
    // The paper's columns, from the same counts.
    let paper = &ours["paper"];
    let acc: f64 = ["tool_call", "request_for_info", "cannot_answer"]
        .iter()
        .map(|c| official[c]["score"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((paper["acc"].as_f64().unwrap() - acc).abs() < 1e-12);
    let hall = official["cannot_answer"]["response_distribution"]["tool_call"]
        .as_f64()
        .unwrap_or(0.0)
        / 100.0;
    assert_eq!(paper["tool_hall"].as_f64(), Some(hall));
    // Settings name the protocol and the sha256 of its definition.
    let settings = read_json(&s.join("checkpoints/llm_judge/method_settings.json"));
    assert_eq!(settings["settings"]["protocol"], "when2call");
    assert_eq!(
        settings["settings"]["protocol_sha256"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    assert!(settings["settings"]["temperature"].is_null());
}
