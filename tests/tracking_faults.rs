//! Tracking servers that never answer, answer forever, or answer too much:
//! tracking pauses, the evaluation never waits longer than the documented
//! bound (`W2C_TRACKING_WAIT_SECS`) and never fails because of them.

mod common;

use common::hostile_http::{HostileHttp, Mode};
use common::*;
use std::time::{Duration, Instant};

fn small(ws: &Workspace) -> std::path::PathBuf {
    ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            ..Opts::default()
        },
    )
}

/// Runs the config tracked on `uri` with `env`, killing it after `limit`;
/// returns the output and the wall time.
fn run_tracked(
    ws: &Workspace,
    cfg: &std::path::Path,
    uri: &str,
    env: &[(&str, &str)],
    limit: Duration,
) -> (std::process::Output, Duration) {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"));
    for var in MLFLOW_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_EXPERIMENT_NAME", "faults")
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn w2c run");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap");
            panic!(
                "the run was still waiting on the tracking server after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    (child.wait_with_output().expect("output"), elapsed)
}

fn assert_evaluated_and_pending(ws: &Workspace, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("w2c sync"), "{stderr}");
    let s = only_session(&ws.runs(), "k");
    assert!(s.join("checkpoints/mcq/_DONE.json").exists());
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], false, "{ids}");
    assert!(
        !ids["pending"].as_array().expect("pending").is_empty(),
        "{ids}"
    );
}

#[test]
fn a_server_that_never_answers_delays_the_run_by_the_bound_only() {
    let hole = HostileHttp::start(Mode::BlackHole);
    let ws = Workspace::new();
    let cfg = small(&ws);
    // Whatever the MLflow variables say, the run waits at most
    // W2C_TRACKING_WAIT_SECS at its start and again at its end.
    let (out, elapsed) = run_tracked(
        &ws,
        &cfg,
        &hole.url,
        &[
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4294967295"),
            ("W2C_TRACKING_WAIT_SECS", "2"),
        ],
        Duration::from_secs(90),
    );
    assert_evaluated_and_pending(&ws, &out);
    assert!(hole.requests() >= 1);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[test]
fn endless_retries_against_an_unreachable_server_are_bounded() {
    // A port nobody listens on: every attempt is refused at once, and the
    // retry count asks for practically endless backoff.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let ws = Workspace::new();
    let cfg = small(&ws);
    let (out, elapsed) = run_tracked(
        &ws,
        &cfg,
        &format!("http://127.0.0.1:{port}"),
        &[
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4294967295"),
            ("W2C_TRACKING_WAIT_SECS", "2"),
        ],
        Duration::from_secs(90),
    );
    assert_evaluated_and_pending(&ws, &out);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[test]
fn an_endless_or_huge_reply_pauses_tracking_and_never_fails_the_run() {
    for mode in [Mode::Endless, Mode::Huge(60 << 20)] {
        let server = HostileHttp::start(mode);
        let ws = Workspace::new();
        let cfg = small(&ws);
        let (out, _) = run_tracked(
            &ws,
            &cfg,
            &server.url,
            &[("W2C_TRACKING_WAIT_SECS", "5")],
            Duration::from_secs(120),
        );
        assert_evaluated_and_pending(&ws, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{mode:?}: {stderr}");
    }
}

#[test]
fn a_server_answering_5xx_delays_the_run_by_the_bound_only() {
    // A server that answers every request at once with 500 and asks for a
    // retry in 2 s: an error reply is not a sign of life, so however many
    // retries MLFLOW_HTTP_REQUEST_MAX_RETRIES allows (here ~60 s of them
    // per call), the start waits W2C_TRACKING_WAIT_SECS and no longer.
    let broken = HostileHttp::start(Mode::Status(500, 2));
    let ws = Workspace::new();
    let cfg = small(&ws);
    let (out, elapsed) = run_tracked(
        &ws,
        &cfg,
        &broken.url,
        &[
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "30"),
            ("W2C_TRACKING_WAIT_SECS", "3"),
        ],
        Duration::from_secs(180),
    );
    assert_evaluated_and_pending(&ws, &out);
    assert!(broken.requests() >= 2, "{}", broken.requests());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no usable answer from"), "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}: {stderr}");
}
