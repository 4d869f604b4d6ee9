//! w2c against a hostile OpenAI-compatible server (`w2c mock-server`'s
//! hostile modes): absurd headers, huge and endless bodies, the API key
//! echoed back, and JSON of the wrong types. Nothing panics, memory stays
//! bounded, no secret is stored, and implausible usage is audited.

mod common;

use common::*;
use serde_json::Value;

fn run(ws: &Workspace, cfg: &std::path::Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = w2c(ws.path());
    c.args(["run", "--run-key", "k", "--config"]).arg(cfg);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn small() -> Opts {
    Opts {
        n_per_label: Some(1),
        concurrency: 1,
        max_attempts: 1,
        ..Opts::default()
    }
}

#[test]
fn absurd_retry_after_and_huge_headers_on_every_reply_do_not_panic() {
    let server = MockServer::start(&["--absurd-headers"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &small(), &server.url, "");
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    assert_eq!(server.stats()["ok"], 3);
}

#[test]
fn an_endless_reply_fails_the_attempt_at_the_size_cap() {
    let server = MockServer::start(&["--endless-body"], &[]);
    let ws = Workspace::new();
    // Without a cap the body would be read until the 2 s timeout.
    let cfg = ws.http_config("eval.toml", &small(), &server.url, "timeout_secs = 2");
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let s = only_session(&ws.runs(), "k");
    let errors = read_jsonl(&s.join("checkpoints/mcq/errors.jsonl"));
    assert_eq!(errors.len(), 3);
    for e in &errors {
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains("larger than 4 MiB") && msg.contains("providers.mock.max_response_bytes"),
            "{msg}"
        );
    }
}

#[test]
fn a_huge_reply_is_refused_over_the_cap_and_stored_once_under_it() {
    const SIZE: usize = 5 << 20;
    let server = MockServer::start(&["--huge-body-bytes", &SIZE.to_string()], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("over.toml", &small(), &server.url, "");
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("max_response_bytes"),
        "{}",
        stderr(&out)
    );

    let ws = Workspace::new();
    let cfg = ws.http_config(
        "under.toml",
        &small(),
        &server.url,
        "max_response_bytes = 8388608",
    );
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = only_session(&ws.runs(), "k");
    // The full texts live in the checkpoint only.
    let results = read_jsonl(&s.join("checkpoints/mcq/results.jsonl"));
    assert_eq!(results.len(), 3);
    let full: std::collections::HashMap<String, String> = results
        .iter()
        .map(|r| {
            (
                r["uuid"].as_str().unwrap().to_string(),
                r["raw_output"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(full.values().all(|t| t.len() >= SIZE - 100));
    let sha = |t: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(t.as_bytes()))
    };
    for (file, field) in [
        ("artifacts_local/mcq/predictions.jsonl", "raw_output"),
        ("artifacts_local/mcq/llm_calls.jsonl", "text"),
    ] {
        let p = s.join(file);
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(
            size < 200_000,
            "{file} is {size} bytes: the text was copied"
        );
        for row in read_jsonl(&p) {
            let text = full[row["uuid"].as_str().unwrap()].as_str();
            let digest = &row[format!("{field}_full")];
            assert_eq!(digest["sha256"], sha(text), "{file}");
            assert_eq!(digest["bytes"], text.len());
            assert_eq!(digest["stored_in"], "checkpoints/mcq/results.jsonl");
            assert!(text.starts_with(row[field].as_str().unwrap()));
        }
    }
    // The verified record still holds together.
    w2c(ws.path())
        .args(["verify", "--all", "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
}

/// Files under `dir` (and the given output) that contain `needle`.
fn holders(dir: &std::path::Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn a_server_echoing_the_key_gets_nothing_stored() {
    const KEY: &str = "sk-canary-7d1e0b5a93c4";
    const ORG: &str = "org-canary-55aa31";
    let server = MockServer::start(
        &["--echo-key", "--api-key-env", "SERVER_KEY"],
        &[("SERVER_KEY", KEY)],
    );
    let extra = "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-org\" = \"MY_ORG\" }";

    // Success bodies, headers and system_fingerprint echo the key and the header.
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &small(), &server.url, extra);
    let out = run(&ws, &cfg, &[("MY_KEY", KEY), ("MY_ORG", ORG)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(server.stats()["hostile"].as_u64() >= Some(3));
    for secret in [KEY, ORG] {
        assert!(holders(ws.path(), secret).is_empty(), "{secret} stored");
        for stream in [&out.stdout, &out.stderr] {
            assert!(!String::from_utf8_lossy(stream).contains(secret));
        }
    }
    let s = only_session(&ws.runs(), "k");
    let calls = read_jsonl(&s.join("artifacts_local/mcq/llm_calls.jsonl"));
    assert!(
        calls[0]["text"].as_str().unwrap().contains("Bearer ***"),
        "{}",
        calls[0]["text"]
    );

    // The 401 body echoes the (wrong) key: error message, errors.jsonl, call log.
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &small(), &server.url, extra);
    let wrong = "sk-canary-wrong-0042";
    let out = run(&ws, &cfg, &[("MY_KEY", wrong), ("MY_ORG", ORG)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Incorrect API key provided") && err.contains("Bearer ***"),
        "{err}"
    );
    for secret in [wrong, ORG] {
        assert!(!err.contains(secret), "{err}");
        assert!(holders(ws.path(), secret).is_empty(), "{secret} stored");
    }
    let s = only_session(&ws.runs(), "k");
    assert!(
        std::fs::read_to_string(s.join("checkpoints/mcq/errors.jsonl"))
            .unwrap()
            .contains("***")
    );
}

/// Characters of a secret that a stored text may hold in a row
/// (docs/providers.md: a fragment of more is masked).
const SHOWN_CHARS: usize = 8;

/// Every spelling of `secret` a leak could take in a stored file: as it is
/// (any case), percent-encoded, hex, `\xHH`-escaped (also with the
/// backslashes escaped, as in raw JSON), and the base64 characters that
/// depend only on its bytes at each offset (standard and URL-safe
/// alphabets); and the same of every run of `SHOWN_CHARS + 1` of its
/// characters (a fragment of it).
fn spellings(secret: &str) -> Vec<String> {
    let mut out = whole_spellings(secret);
    for run in secret.as_bytes().windows(SHOWN_CHARS + 1) {
        out.extend(whole_spellings(std::str::from_utf8(run).unwrap()));
    }
    out
}

/// [`spellings`] of the whole value only.
fn whole_spellings(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = vec![
        secret.to_ascii_lowercase(),
        secret.bytes().map(|b| format!("%{b:02x}")).collect(),
        hex::encode(secret),
        secret.bytes().map(|b| format!("\\x{b:02x}")).collect(),
        secret.bytes().map(|b| format!("\\\\x{b:02x}")).collect(),
    ];
    for offset in 0..3 {
        let mut input = vec![0u8; offset];
        input.extend_from_slice(secret.as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
        let core = &encoded[(8 * offset).div_ceil(6)..(8 * (offset + secret.len())) / 6];
        out.push(core.to_ascii_lowercase());
        out.push(
            core.replace('+', "-")
                .replace('/', "_")
                .to_ascii_lowercase(),
        );
    }
    out
}

/// Every string of a JSON document, decoded (so `\u`-escapes are read).
fn decoded_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| decoded_strings(i, out)),
        Value::Object(map) => {
            for (k, val) in map {
                out.push_str(k);
                out.push('\n');
                decoded_strings(val, out);
            }
        }
        _ => {}
    }
}

/// Files under `dir` that hold `secret` in any spelling, raw or after
/// decoding their JSON (whole files and JSONL lines).
fn leaks(dir: &std::path::Path, secret: &str) -> Vec<String> {
    let forms = spellings(secret);
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let mut hay = text.to_ascii_lowercase();
            let docs = std::iter::once(text.as_ref()).chain(text.lines());
            for doc in docs {
                if let Ok(v) = serde_json::from_str::<Value>(doc) {
                    let mut decoded = String::new();
                    decoded_strings(&v, &mut decoded);
                    hay.push_str(&decoded.to_ascii_lowercase());
                }
            }
            forms.iter().any(|f| hay.contains(f.as_str()))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn a_server_echoing_the_key_in_any_encoding_gets_nothing_stored_or_tracked() {
    const KEY: &str = "sk-canary-41f7c2e9d8b0";
    const ORG: &str = "org-canary-9e3d1c";
    let server = MockServer::start(
        &[
            "--echo-key",
            "--echo-key-as",
            "all",
            "--api-key-env",
            "SERVER_KEY",
        ],
        &[("SERVER_KEY", KEY)],
    );
    let mlflow = common::mlflow::MlflowServer::start();
    let extra = "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-org\" = \"MY_ORG\" }";
    let opts = Opts {
        methods: "\"mcq\", \"llm_judge\", \"mcq_logprob\"".into(),
        ..small()
    };
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &opts, &server.url, extra);
    let out = run(
        &ws,
        &cfg,
        &[
            ("MY_KEY", KEY),
            ("MY_ORG", ORG),
            ("MLFLOW_TRACKING_URI", &mlflow.url),
            ("MLFLOW_EXPERIMENT_NAME", "echo-encoded"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(server.stats()["hostile"].as_u64() >= Some(10));
    let s = only_session(&ws.runs(), "k");
    for file in [
        "checkpoints/mcq/results.jsonl",
        "artifacts_local/mcq/predictions.jsonl",
        "artifacts_local/mcq/llm_calls.jsonl",
        "artifacts_local/llm_judge.target/target_responses.jsonl",
        "checkpoints/mcq_logprob/results.jsonl",
    ] {
        assert!(s.join(file).is_file(), "{file} was not written");
    }
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["mode"], "online", "{ids}");
    for secret in [KEY, ORG] {
        assert_eq!(leaks(ws.path(), secret), Vec::<String>::new(), "{secret}");
        assert_eq!(
            leaks(&mlflow.dir, secret),
            Vec::<String>::new(),
            "{secret} in MLflow"
        );
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream).to_ascii_lowercase();
            for f in spellings(secret) {
                assert!(!text.contains(&f), "{f} printed");
            }
        }
    }
    // What was echoed is visibly masked, not dropped.
    let calls = read_jsonl(&s.join("artifacts_local/mcq/llm_calls.jsonl"));
    let text = calls[0]["text"].as_str().unwrap();
    assert!(text.contains("Bearer ***"), "{text}");
}

// Issue 29, point 2: a key echoed as raw `\xHH` escapes in a reply's text
// (not JSON until they are masked) and as the JSON string "\\xHH" in
// `system_fingerprint` was stored whole; a key echoed minus its last 3
// characters left 24 of 27 in the error log, the call log and stderr.
#[test]
fn a_server_echoing_the_key_as_hex_escapes_or_a_fragment_gets_nothing_stored() {
    const KEY: &str = "sk-canary-3b9e6f0c1d2a7e5";
    const ORG: &str = "org-canary-2c8e4a1f";
    let extra = "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-org\" = \"MY_ORG\" }";
    let opts = Opts {
        methods: "\"mcq\", \"llm_judge\"".into(),
        ..small()
    };
    for mode in ["hex-escape", "prefix"] {
        let server = MockServer::start(
            &[
                "--echo-key",
                "--echo-key-as",
                mode,
                "--api-key-env",
                "SERVER_KEY",
            ],
            &[("SERVER_KEY", KEY)],
        );
        // Replies echo the key; then a wrong key's 401 echoes it in the
        // error (errors.jsonl, the call log, stderr).
        for (key, code) in [(KEY, 0), ("sk-canary-wrong-9f8e7d6c5b4a", 1)] {
            let ws = Workspace::new();
            let cfg = ws.http_config("eval.toml", &opts, &server.url, extra);
            let out = run(&ws, &cfg, &[("MY_KEY", key), ("MY_ORG", ORG)]);
            assert_eq!(out.status.code(), Some(code), "{mode}: {}", stderr(&out));
            let s = only_session(&ws.runs(), "k");
            let file = if code == 0 {
                "artifacts_local/mcq/llm_calls.jsonl"
            } else {
                "checkpoints/mcq/errors.jsonl"
            };
            let written = std::fs::read_to_string(s.join(file)).unwrap();
            assert!(written.contains("***"), "{mode}: {file}: {written}");
            for secret in [key, ORG] {
                assert_eq!(
                    leaks(ws.path(), secret),
                    Vec::<String>::new(),
                    "{mode}: {secret}"
                );
                for stream in [&out.stdout, &out.stderr] {
                    let text = String::from_utf8_lossy(stream).to_ascii_lowercase();
                    for f in spellings(secret) {
                        assert!(!text.contains(&f), "{mode}: {f} printed: {text}");
                    }
                }
            }
        }
        assert!(server.stats()["hostile"].as_u64() >= Some(3), "{mode}");
    }
}

// Issue 19, point 9: 2^64 - 1 tokens used to be counted (the total
// saturated at 18446744073709551615) while 1e30 counted as 0; both are the
// same nonsense now: audited, not counted.
#[test]
fn wrong_json_types_are_audited_and_absurd_counts_not_counted() {
    let server = MockServer::start(&["--wrong-types"], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(2),
        ..small()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    let out = run(&ws, &cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = only_session(&ws.runs(), "k");
    let m = read_json(&s.join("artifacts_local/mcq/metrics.json"));
    // Every reply's prompt count was absurd (u64::MAX, negative, 12.5, a
    // string, not an object): none is counted.
    assert_eq!(m["usage"]["prompt_tokens"], 0, "{}", m["usage"]);
    assert!(
        m["usage"]["completion_tokens"].as_u64() < Some(100),
        "{}",
        m["usage"]
    );
    assert_eq!(
        m["audit"]["by_type"]["implausible_usage"], 6,
        "{}",
        m["audit"]
    );
    let events: Vec<Value> = read_jsonl(&s.join("checkpoints/mcq/audit_fallbacks.jsonl"))
        .into_iter()
        .filter(|e| e["event_type"] == "implausible_usage")
        .collect();
    assert_eq!(events.len(), 6);
    let problems: String = events
        .iter()
        .map(|e| e["details"]["problems"].to_string())
        .collect();
    for needle in [
        "implausibly large",
        "negative",
        "not a token count",
        "not an object",
    ] {
        assert!(problems.contains(needle), "{needle}: {problems}");
    }
    // A rerun adds nothing twice.
    let before = read_jsonl(&s.join("checkpoints/mcq/audit_fallbacks.jsonl")).len();
    run_ok(&ws, &cfg);
    assert_eq!(
        read_jsonl(&s.join("checkpoints/mcq/audit_fallbacks.jsonl")).len(),
        before
    );
}

#[test]
fn broken_http_framing_fails_the_attempt_with_the_cause_named() {
    for (kind, cause) in [
        (
            "negative-content-length",
            "the server's reply is not valid HTTP",
        ),
        ("huge-headers", "the server's reply headers are too large"),
        ("many-headers", "the server's reply headers are too large"),
        ("not-http", "the server's reply is not valid HTTP"),
    ] {
        let server = MockServer::start(&["--bad-http", kind], &[]);
        let ws = Workspace::new();
        let cfg = ws.http_config("eval.toml", &small(), &server.url, "");
        let out = run(&ws, &cfg, &[]);
        // Retried like any transport failure, then incomplete.
        assert_eq!(out.status.code(), Some(3), "{kind}: {}", stderr(&out));
        assert!(stderr(&out).contains(cause), "{kind}: {}", stderr(&out));
        let s = only_session(&ws.runs(), "k");
        let errors = read_jsonl(&s.join("checkpoints/mcq/errors.jsonl"));
        assert_eq!(errors.len(), 3, "{kind}");
        for e in &errors {
            let msg = e["error"].as_str().unwrap();
            assert!(msg.contains(cause), "{kind}: {msg}");
        }
    }
}
