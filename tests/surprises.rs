//! Inputs that used to panic or silently do something else: each is now a
//! clear error (exit 1, naming the key, variable, file or line) before any
//! request, or a recorded explanation.

mod common;

use common::*;
use std::path::Path;

/// Runs `w2c run` and expects exit 1 with every needle in stderr and no panic.
fn fails_clearly(ws: &Workspace, args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let mut c = w2c(ws.path());
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in: {stderr}");
    }
}

fn run_args(cfg: &Path) -> Vec<&str> {
    vec!["run", "--run-key", "k", "--config", cfg.to_str().unwrap()]
}

/// An `openai` provider at an address nothing listens on, with `extra` lines.
fn http_cfg(ws: &Workspace, name: &str, extra: &str) -> std::path::PathBuf {
    ws.http_config(
        name,
        &Opts {
            n_per_label: Some(1),
            ..Opts::default()
        },
        "http://127.0.0.1:9",
        extra,
    )
}

#[test]
fn numbers_too_big_for_a_duration_are_errors_naming_the_key() {
    let ws = Workspace::new();
    let cfg = http_cfg(&ws, "t.toml", "timeout_secs = 1e300");
    fails_clearly(
        &ws,
        &run_args(&cfg),
        &[],
        &["providers.mock.timeout_secs", "[0.001, 86400]"],
    );
    let cfg = ws.config("eval.toml", &Opts::default());
    for (var, value, range) in [
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "inf", "[0.1, 3600]"),
        ("W2C_TRACKING_PAUSE_SECS", "inf", "[0, 86400]"),
        ("W2C_TRACKING_PROGRESS_SECS", "1e300", "[0.05, 86400]"),
        ("W2C_TRACKING_TRACE_WAIT_SECS", "7200", "[0, 3600]"),
    ] {
        fails_clearly(
            &ws,
            &run_args(&cfg),
            &[("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"), (var, value)],
            &[var, range],
        );
    }
}

#[test]
fn a_bad_base_url_is_refused_at_load() {
    let ws = Workspace::new();
    for (i, url) in ["not a url", "ftp://example.com/v1", "http://user:pw@h:1/v1"]
        .iter()
        .enumerate()
    {
        let text = std::fs::read_to_string(http_cfg(&ws, "a.toml", ""))
            .unwrap()
            .replace("http://127.0.0.1:9/v1", url);
        let cfg = ws.write(&format!("b{i}.toml"), &text);
        fails_clearly(&ws, &run_args(&cfg), &[], &["providers.mock.base_url"]);
        fails_clearly(
            &ws,
            &["config", "check", cfg.to_str().unwrap()],
            &[],
            &["providers.mock.base_url"],
        );
        assert!(!ws.runs().exists(), "{url}: a session was created");
    }
}

#[test]
fn zero_budgets_and_a_run_key_without_letters_are_refused() {
    let ws = Workspace::new();
    for key in ["requests_per_minute", "tokens_per_minute"] {
        let cfg = http_cfg(&ws, "z.toml", &format!("{key} = 0"));
        fails_clearly(
            &ws,
            &run_args(&cfg),
            &[],
            &[&format!("providers.mock.{key}"), "leave it out"],
        );
    }
    let cfg = ws.config("eval.toml", &Opts::default());
    let c = cfg.to_str().unwrap();
    fails_clearly(
        &ws,
        &["run", "--run-key", "..", "--config", c],
        &[],
        &["--run-key", "\"..\""],
    );
    fails_clearly(
        &ws,
        &["run", "--config", c],
        &[("W2C_RUN_KEY", "/")],
        &["W2C_RUN_KEY"],
    );
    assert!(!ws.runs().exists());
    // A key that only needed cleaning is used, and the user is told.
    let out = w2c(ws.path())
        .args(["run", "--run-key", "my run", "--config", c])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is used as `my_run`"));
    assert!(ws.runs().join("my_run").is_dir());
}

#[test]
fn dataset_surprises_name_the_line_or_the_label() {
    let ws = Workspace::new();
    let rows: Vec<String> = std::fs::read_to_string(sample_dataset())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // Invalid UTF-8 on line 3.
    let mut bytes = rows[..2].join("\n").into_bytes();
    bytes.extend_from_slice(b"\n{\"uuid\": \"x\xff\"}\n");
    std::fs::write(ws.path().join("bad.jsonl"), bytes).unwrap();
    let cfg = ws.config(
        "utf.toml",
        &Opts {
            dataset: ws.path().join("bad.jsonl"),
            n_per_label: None,
            ..Opts::default()
        },
    );
    fails_clearly(&ws, &run_args(&cfg), &[], &["bad.jsonl:3: not valid UTF-8"]);

    // Two `direct` rows, six of every other label: 3 per label cannot be met.
    let mut direct = 0;
    let kept: Vec<&String> = rows
        .iter()
        .filter(|l| {
            if l.contains("\"correct_answer\": \"direct\"")
                || l.contains("\"correct_answer\":\"direct\"")
            {
                direct += 1;
                direct <= 2
            } else {
                true
            }
        })
        .collect();
    assert_eq!(direct, 6, "the sample file changed");
    let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(ws.path().join("few.jsonl"), text).unwrap();
    let cfg = ws.config(
        "few.toml",
        &Opts {
            dataset: ws.path().join("few.jsonl"),
            n_per_label: Some(3),
            ..Opts::default()
        },
    );
    fails_clearly(
        &ws,
        &run_args(&cfg),
        &[],
        &["dataset.n_per_label", "`direct` has 2", "at most 2"],
    );
    assert!(!ws.runs().exists());
}

#[test]
fn verify_on_a_directory_that_is_not_a_session_says_so() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("not-a-session")).unwrap();
    fails_clearly(
        &ws,
        &["verify", "not-a-session"],
        &[],
        &[
            "`not-a-session` is not a session directory",
            "manifest.json",
        ],
    );
    fails_clearly(&ws, &["verify", "./missing"], &[], &["no such directory"]);
}

#[test]
fn an_offline_run_says_why_it_is_offline() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &Opts::default());
    let out = w2c(ws.path())
        .args(run_args(&cfg))
        .env("MLFLOW_ENABLE_TRACKING", "true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let ids = read_json(&only_session(&ws.runs(), "k").join("mlflow_ids.json"));
    let pending = ids["pending"].to_string();
    assert!(
        pending.contains("no tracking server configured"),
        "{pending}"
    );
    assert!(!pending.contains("is off"), "{pending}");
}
