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
    // The report's headline is the paper's LLM-as-judge columns.
    let out = w2c(ws.path()).arg("report").output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = report
        .lines()
        .find(|l| l.contains(" llm_judge "))
        .unwrap_or_else(|| panic!("{report}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[3..8],
        [
            "300".to_string(),
            "judge".to_string(),
            format!("{:.1}%", paper["acc"].as_f64().unwrap() * 100.0),
            format!("{:.3}", paper["f1"].as_f64().unwrap()),
            format!("{:.1}%", hall * 100.0),
        ],
        "{report}"
    );
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

#[test]
fn replies_nvidias_scripts_cannot_read_are_invalid_and_left_out_of_the_aggregate() {
    // The `mock` provider's judge with `judge_replies = "varied"` answers in
    // varied styles (fenced, prose, other casings): NVIDIA's scripts repair
    // what is not JSON, raise when the repair is not JSON either, and count
    // JSON labels they do not know.
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            methods: "\"llm_judge\"".into(),
            n_per_label: Some(50),
            provider_extra: "judge_replies = \"varied\"".into(),
            ..Opts::default()
        },
    );
    let out = run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let decisions = read_jsonl(&s.join("checkpoints/llm_judge/results.jsonl"));
    assert_eq!(decisions.len(), 150);
    let raises: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["official"]["outcome"] == "raises")
        .collect();
    let second_failures: Vec<&&Value> = raises
        .iter()
        .filter(|d| !d["judge_raw_repair"].is_null())
        .collect();
    assert!(
        !second_failures.is_empty(),
        "no repair reply that is not JSON at this size"
    );
    for d in &second_failures {
        // Never coerced into a class: invalid, and the script named.
        assert_eq!(d["status"], "invalid", "{d}");
        assert_eq!(d["prediction"], "invalid", "{d}");
        assert_eq!(d["official"]["script"], "run_openai_judge.py", "{d}");
    }
    // JSON with a label NVIDIA's prompt does not name: no repair (the
    // script only repairs what json.loads rejects), invalid for w2c,
    // counted under its own name by the aggregate.
    let unknown: Vec<&Value> = decisions
        .iter()
        .filter(|d| {
            d["status"] == "invalid"
                && d["judge_raw_repair"].is_null()
                && d["official"]["outcome"] == "classified"
        })
        .collect();
    assert!(!unknown.is_empty(), "no unknown JSON label at this size");
    let audit = read_jsonl(&s.join("checkpoints/llm_judge/audit_fallbacks.jsonl"));
    let invalid_events: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event_type"] == "judge_invalid")
        .collect();
    assert_eq!(
        invalid_events.len(),
        decisions
            .iter()
            .filter(|d| d["status"] == "invalid")
            .count()
    );
    assert!(invalid_events
        .iter()
        .all(|e| e["details"]["official"].is_object()));
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    let agg = &m["official_judge"];
    assert_eq!(
        agg["left_out"]["script_raises"].as_u64(),
        Some(raises.len() as u64)
    );
    assert_eq!(
        agg["n_aggregated"].as_u64().unwrap() as usize + raises.len(),
        150
    );
    let counted: u64 = agg["categories"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|c| c["response_distribution"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, 150 - raises.len());
    assert_eq!(
        m["metrics"]["n_invalid"].as_u64().unwrap() as usize,
        decisions
            .iter()
            .filter(|d| d["prediction"] == "invalid")
            .count()
    );
    // The summary's headline is NVIDIA's aggregate, with the rows it
    // leaves out.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!(
            "llm_judge: NVIDIA's aggregate counts {} rows and leaves out {} ({} script_raises)",
            150 - raises.len(),
            raises.len(),
            raises.len()
        )),
        "{stdout}"
    );
}

#[test]
fn the_python_suite_protocol_sends_the_suites_requests() {
    let ws = Workspace::new();
    let record = ws.path().join("requests.jsonl");
    let server = MockServer::start(&["--record", record.to_str().unwrap()], &[]);
    let data = ws.write(
        "rows.jsonl",
        &std::fs::read_to_string(shared_dataset())
            .unwrap()
            .lines()
            .step_by(30)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let cfg = config(&ws, &server.url, &data, "protocol = \"python-suite\"");
    let out = run_ok(&ws, &cfg);
    // No official aggregate under this protocol: the summary says its
    // numbers are the MC table's definitions, not the paper's judge table.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("llm_judge "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], "MC", "{stdout}");
    let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("llm_judge: the MC table's definitions over the judge's labels, not the paper's LLM-as-judge numbers: protocol `python-suite` has no official aggregate"),
        "{stdout}"
    );
    drop(server);
    let bodies: Vec<Value> = read_jsonl(&record)
        .into_iter()
        .map(|r| r["body"].clone())
        .collect();
    let (targets, judges): (Vec<&Value>, Vec<&Value>) =
        bodies.iter().partition(|b| b["model"] == "target-model");
    assert_eq!(targets.len(), 10);
    for t in &targets {
        // NVIDIA's instructions as the system message, the tools in
        // <tool> blocks and the question as the user message; the
        // sampling the suite sent.
        let m = t["messages"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["role"], "system");
        assert!(m[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are a helpful AI assistant. \nYou have access"));
        let user = m[1]["content"].as_str().unwrap();
        assert!(
            user.starts_with("<tool>") || user.starts_with("\n\n"),
            "{user}"
        );
        assert!(t.get("tools").is_none());
        assert_eq!(t["temperature"], 0.0);
        assert_eq!(t["max_tokens"], 512);
        assert_eq!(t["seed"], 42);
        assert_eq!(t["top_p"], 1.0);
        assert_eq!(t["presence_penalty"], 0.0);
        assert_eq!(t["frequency_penalty"], 0.0);
    }
    assert!(judges.len() >= 10);
    for j in &judges {
        let m = j["messages"].as_array().unwrap();
        let prompt = m[0]["content"].as_str().unwrap();
        assert!(
            prompt.contains(
                "into these four categories: [direct, tool_call, request_for_info, cannot_answer]"
            ),
            "{prompt}"
        );
        // The tools as json.dumps writes them (", " and ": ").
        let tools = prompt
            .split("<AVAILABLE_TOOLS>\n")
            .nth(1)
            .and_then(|r| r.split("\n</AVAILABLE_TOOLS>").next())
            .unwrap();
        assert!(
            tools == "[]" || tools.starts_with("[{\"name\": "),
            "{tools}"
        );
        assert_eq!(j["max_tokens"], 256);
        if m.len() == 3 {
            assert_eq!(m[1]["role"], "assistant");
            assert_eq!(
                m[2]["content"],
                "Please re-write your response to be shorter and make sure it's a valid json in the prescribed format."
            );
        }
    }
}

#[test]
fn prompts_over_the_servers_context_are_unscored_results_not_errors() {
    // NVIDIA's protocol sends no max_tokens and embeds the tools and the
    // whole answer in the judge prompt: on a server with a small context
    // some judge prompts do not fit. The scripts would stop there (openai
    // raises BadRequestError); w2c records the example as unscored and
    // goes on.
    let server = MockServer::start(&["--context-window", "900"], &[]);
    let ws = Workspace::new();
    let data = ws.write(
        "rows.jsonl",
        &std::fs::read_to_string(shared_dataset())
            .unwrap()
            .lines()
            .step_by(10)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let cfg = config(&ws, &server.url, &data, "");
    let out = run_ok(&ws, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("are unscored"), "{stderr}");
    let s = only_session(&ws.runs(), "k");
    let decisions = read_jsonl(&s.join("checkpoints/llm_judge/results.jsonl"));
    assert_eq!(decisions.len(), 30);
    let unscored = decisions
        .iter()
        .filter(|d| d["status"] == "context_overflow")
        .count();
    assert!(
        unscored > 0 && unscored < 30,
        "{unscored} of 30 over the window"
    );
    let m = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    assert_eq!(m["counts"]["unscored"].as_u64(), Some(unscored as u64));
    assert_eq!(m["metrics"]["n_total"].as_u64(), Some(30 - unscored as u64));
    assert!(
        m["official_judge"]["left_out"]["script_raises"]
            .as_u64()
            .unwrap()
            >= unscored as u64
    );
    let audit = read_jsonl(&s.join("checkpoints/llm_judge/audit_fallbacks.jsonl"));
    assert_eq!(
        audit
            .iter()
            .filter(
                |e| e["event_type"] == "unscored" && e["details"]["reason"] == "context_overflow"
            )
            .count(),
        unscored
    );
    let rows = read_jsonl(&s.join("artifacts_local/llm_judge/predictions.jsonl"));
    assert_eq!(
        rows.iter().filter(|r| r["prediction"].is_null()).count(),
        unscored
    );
    // The record is kept: a resume asks nothing again, and it verifies.
    let before = server.stats()["chat"].as_u64().unwrap();
    run_ok(&ws, &cfg);
    assert_eq!(server.stats()["chat"].as_u64().unwrap(), before);
    let v = w2c(ws.path())
        .args(["verify", "--all", "--local-only"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// The text a judge prompt quotes as the answer to classify: between
/// NVIDIA's (and the Python suite's) `<AI_MODEL_RESPONSE>` tags, or w2c's
/// `<<<`/`>>>` lines.
fn quoted_answer(prompt: &str) -> &str {
    for (open, close) in [
        ("<AI_MODEL_RESPONSE>\n", "\n</AI_MODEL_RESPONSE>"),
        ("<<<\n", "\n>>>"),
    ] {
        if let (Some(a), Some(b)) = (prompt.find(open), prompt.rfind(close)) {
            return &prompt[a + open.len()..b];
        }
    }
    panic!("no quoted answer in the judge prompt: {prompt}")
}

#[test]
fn predictions_hold_the_answer_the_judge_saw_under_every_protocol() {
    for protocol in ["when2call", "python-suite", "w2c"] {
        let ws = Workspace::new();
        let cfg = ws.config(
            "eval.toml",
            &Opts {
                methods: "\"llm_judge\"".into(),
                judge_extra: format!("protocol = \"{protocol}\""),
                ..Opts::default()
            },
        );
        run_ok(&ws, &cfg);
        let s = only_session(&ws.runs(), "k");
        let calls = read_jsonl(&s.join("artifacts_local/llm_judge/llm_calls.jsonl"));
        let predictions = read_jsonl(&s.join("artifacts_local/llm_judge/predictions.jsonl"));
        let mut judged = 0;
        let mut tool_calls = 0;
        for p in &predictions {
            let Some(call) = calls
                .iter()
                .find(|c| c["uuid"] == p["uuid"] && c["role"] == "judge")
            else {
                continue;
            };
            let prompt = call["request"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .unwrap()["content"]
                .as_str()
                .unwrap();
            let stored = p["target_response"].as_str().unwrap();
            assert_eq!(stored, quoted_answer(prompt), "{protocol}: {p}");
            judged += 1;
            tool_calls += usize::from(stored.starts_with("{\"name\"") || stored.starts_with("[{"));
        }
        assert!(judged >= 25, "{protocol}: {judged} judged rows");
        if protocol != "python-suite" {
            // The suite's target gets no native tools: its answers are text.
            assert!(
                tool_calls > 0,
                "{protocol}: no tool-call answer at this size"
            );
        }
    }
}
