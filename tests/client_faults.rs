//! The HTTP client against `w2c mock-server` with injected faults: runs
//! complete with fault-free numbers, Retry-After is honoured, fatal errors fail
//! fast, hung requests time out and are retried, and no secret reaches disk.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn run(ws: &Workspace, cfg: &std::path::Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = w2c(ws.path());
    c.args(["run", "--run-key", "k", "--config"]).arg(cfg);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run")
}

fn metrics(ws: &Workspace) -> serde_json::Value {
    read_json(&only_session(&ws.runs(), "k").join("artifacts_local/mcq/metrics.json"))["metrics"]
        .clone()
}

#[test]
fn faulty_endpoint_gives_the_fault_free_numbers() {
    // Fault-free reference: the built-in mock gives the same replies as the server.
    let reference = Workspace::new();
    let opts = Opts {
        n_per_label: Some(50),
        concurrency: 16,
        max_attempts: 8,
        ..Opts::default()
    };
    let cfg = reference.config("eval.toml", &opts);
    assert!(run(&reference, &cfg, &[]).status.success());

    let server = MockServer::start(
        &[
            "--rate-429",
            "0.10",
            "--rate-5xx",
            "0.05",
            "--rate-malformed",
            "0.02",
            "--retry-after-secs",
            "0.01",
            "--seed",
            "7",
        ],
        &[],
    );
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    let out = run(&ws, &cfg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(metrics(&ws), metrics(&reference));

    // Every fault the server injected shows up as a failed attempt in the call log.
    let s = only_session(&ws.runs(), "k");
    let calls = read_jsonl(&s.join("artifacts_local/mcq/llm_calls.jsonl"));
    assert_eq!(calls.len(), 150);
    let failed_attempts: usize = calls
        .iter()
        .map(|c| {
            c["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["error"].is_string())
                .count()
        })
        .sum();
    let stats = server.stats();
    let faults = stats["fault_429"].as_u64().unwrap()
        + stats["fault_5xx"].as_u64().unwrap()
        + stats["fault_malformed"].as_u64().unwrap();
    assert!(faults > 10, "too few faults injected: {stats}");
    assert_eq!(failed_attempts as u64, faults, "{stats}");
    let n_attempts: u64 = calls
        .iter()
        .map(|c| c["n_attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(n_attempts, stats["requests"].as_u64().unwrap());
    let c0 = &calls[0];
    assert_eq!(c0["provider"], "mock");
    assert_eq!(c0["system_fingerprint"], "fp_w2c_mock");
    assert!(c0["request"]["messages"].is_array());
    assert_eq!(c0["request_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn retry_after_is_honoured() {
    let server = MockServer::start(&["--rate-429", "1.0", "--retry-after-secs", "0.6"], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(1),
        concurrency: 1,
        max_attempts: 2,
        ..Opts::default()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    let start = Instant::now();
    let out = run(&ws, &cfg, &[]);
    let elapsed = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = only_session(&ws.runs(), "k");
    let calls = read_jsonl(&s.join("artifacts_local/mcq/llm_calls.jsonl"));
    for c in &calls {
        let attempts = c["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0]["status"], 429);
        assert_eq!(attempts[0]["backoff_ms"], 600);
        assert!(c["latency_ms"].as_u64().unwrap() >= 600, "{c}");
    }
    // 3 examples, one at a time, each waits 0.6 s once.
    assert!(elapsed >= Duration::from_millis(1800), "{elapsed:?}");
    let errors = std::fs::read_to_string(s.join("checkpoints/mcq/errors.jsonl")).unwrap();
    assert!(errors.contains("HTTP 429"), "{errors}");
}

#[test]
fn unauthorized_fails_fast_with_the_servers_message() {
    let server = MockServer::start(
        &["--api-key-env", "SERVER_KEY"],
        &[("SERVER_KEY", "right-key")],
    );
    let ws = Workspace::new();
    let opts = Opts {
        max_attempts: 5,
        ..Opts::default()
    };
    let cfg = ws.http_config(
        "eval.toml",
        &opts,
        &server.url,
        "api_key_env = \"CLIENT_KEY\"",
    );
    let start = Instant::now();
    let out = run(&ws, &cfg, &[("CLIENT_KEY", "wrong-key-123")]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("Incorrect API key"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-key-123"));
    // No retries, and the run stopped issuing requests.
    let stats = server.stats();
    assert_eq!(stats["unauthorized"], stats["requests"]);
    assert!(stats["requests"].as_u64().unwrap() <= 4, "{stats}");

    // A missing key variable is a clear error before any request.
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLIENT_KEY"));
}

#[test]
fn hung_requests_time_out_and_are_retried() {
    let server = MockServer::start(
        &["--rate-hang", "0.3", "--hang-secs", "20", "--seed", "3"],
        &[],
    );
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(4),
        concurrency: 12,
        max_attempts: 6,
        ..Opts::default()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "timeout_secs = 0.5");
    let start = Instant::now();
    let out = run(&ws, &cfg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    let s = only_session(&ws.runs(), "k");
    let calls = read_jsonl(&s.join("artifacts_local/mcq/llm_calls.jsonl"));
    let timeouts = calls
        .iter()
        .flat_map(|c| c["attempts"].as_array().unwrap().clone())
        .filter(|a| a["error"].as_str().is_some_and(|e| e.contains("timed out")))
        .count();
    assert!(timeouts >= 1, "no timed-out attempt recorded");
    assert_eq!(
        timeouts as u64,
        server.stats()["fault_hang"].as_u64().unwrap()
    );
}

#[test]
fn api_key_never_reaches_disk_or_output() {
    const KEY: &str = "sk-w2c-test-7f3a9c1e5b";
    let server = MockServer::start(
        &["--api-key-env", "SERVER_KEY", "--rate-5xx", "0.2"],
        &[("SERVER_KEY", KEY)],
    );
    let ws = Workspace::new();
    let cfg = ws.http_config(
        "eval.toml",
        &Opts::default(),
        &server.url,
        "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-extra-token\" = \"MY_KEY\" }",
    );
    let out = run(&ws, &cfg, &[("MY_KEY", KEY)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(KEY));
    }
    let mut scanned = 0;
    for entry in walkdir::WalkDir::new(ws.runs()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                "API key found in {}",
                entry.path().display()
            );
            scanned += 1;
        }
    }
    assert!(scanned >= 8, "only {scanned} files scanned");
}
