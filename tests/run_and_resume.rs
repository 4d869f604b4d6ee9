//! End-to-end: a full run lays out the session; kill -9 at random points and
//! resume ends with exactly the metrics and predictions of an uninterrupted
//! run; a second process on a held session is refused.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn predictions(session: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(session.join("artifacts_local/mcq/predictions.jsonl"))
        .expect("predictions");
    let mut v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    v.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
    v
}

fn metrics(session: &Path) -> Value {
    read_json(&session.join("artifacts_local/mcq/metrics.json"))
}

#[test]
fn full_run_lays_out_the_session_and_rerun_is_a_no_op() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &Opts::default());
    let out = w2c(ws.path())
        .args(["run", "--run-key", "my run/1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("accuracy"), "{stdout}");
    // The summary fits a terminal (confusion matrices are in `w2c report --wide`).
    assert!(stdout.lines().all(|l| l.chars().count() <= 120), "{stdout}");

    let s = only_session(&ws.runs(), "my_run_1");
    let manifest = read_json(&s.join("manifest.json"));
    let fp = manifest["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 64);
    assert!(fp.starts_with(s.file_name().unwrap().to_str().unwrap()));
    assert_eq!(manifest["n_examples"], 30);
    for f in [
        "checkpoints/mcq/results.jsonl",
        "checkpoints/mcq/_DONE.json",
        "checkpoints/mcq/method_settings.json",
        "checkpoints/mcq/audit_fallbacks.jsonl",
        "artifacts_local/mcq/metrics.json",
        "artifacts_local/mcq/predictions.jsonl",
        "artifacts_local/mcq/audit_summary.json",
        "artifacts_local/mcq/confusion_matrix.csv",
        "artifacts_local/mcq/per_class.csv",
        "artifacts_local/mcq/llm_calls.jsonl",
    ] {
        assert!(s.join(f).exists(), "missing {f}");
    }
    let done = read_json(&s.join("checkpoints/mcq/_DONE.json"));
    assert_eq!(done["n_items"], 30);
    let results = std::fs::read(s.join("checkpoints/mcq/results.jsonl")).unwrap();
    assert_eq!(
        done["checkpoint_files"]["results.jsonl"]["sha256"],
        hex_sha256(&results)
    );
    let m = metrics(&s);
    assert_eq!(m["n_examples"], 30);
    let csv = std::fs::read_to_string(s.join("artifacts_local/mcq/confusion_matrix.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("gold,direct,tool_call,request_for_info,cannot_answer,invalid\n"));
    let cells: u64 = csv
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(1)
                .map(|c| c.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(cells, 30);
    assert_eq!(m["metrics"]["n_total"], 30);
    let preds = predictions(&s);
    assert_eq!(preds.len(), 30);
    // Invalid predictions are audited, one event each.
    let n_invalid = preds
        .iter()
        .filter(|p| p["prediction"] == "invalid")
        .count();
    let audit = std::fs::read_to_string(s.join("checkpoints/mcq/audit_fallbacks.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), n_invalid);

    // Running again changes nothing and repeats no work.
    let before = std::fs::read(s.join("checkpoints/mcq/results.jsonl")).unwrap();
    w2c(ws.path())
        .args(["run", "--run-key", "my run/1", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    assert_eq!(
        before,
        std::fs::read(s.join("checkpoints/mcq/results.jsonl")).unwrap()
    );
    assert_eq!(m, metrics(&s));

    // status lists it.
    let out = w2c(ws.path())
        .args(["status", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("my_run_1") && stdout.contains("  mcq  30/30  done"),
        "{stdout}"
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn kill_nine_at_random_points_then_resume_matches_uninterrupted_run() {
    // Reference: an uninterrupted run.
    let reference = Workspace::new();
    let opts = Opts {
        n_per_label: Some(40),
        latency_ms: 40,
        concurrency: 4,
        ..Opts::default()
    };
    let cfg = reference.config("eval.toml", &opts);
    w2c(reference.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let ref_session = only_session(&reference.runs(), "k");
    let ref_metrics = metrics(&ref_session)["metrics"].clone();
    let ref_preds = predictions(&ref_session);
    assert_eq!(ref_preds.len(), 120);

    // Interrupted: kill -9 at random points, tear the last line sometimes.
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &opts);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut trials = 0;
    let mut interrupted = 0;
    let mut torn = 0;
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    while trials < 24 && Instant::now() < deadline {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A random point: after 1 to 12 more results than the run started with.
        let target = result_lines(&ws, "mcq") + 1 + (seed % 12) as usize;
        let mut child = spawn_run(&ws, &cfg);
        wait_while_running(&mut child, "more results", Duration::from_secs(60), || {
            result_lines(&ws, "mcq") >= target
        });
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        trials += 1;
        let done_marker = ws
            .runs()
            .join("k/sessions")
            .read_dir()
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("checkpoints/mcq/_DONE.json"));
        if done_marker.is_some_and(|p| !p.exists()) {
            interrupted += 1;
        }
        if trials % 5 == 0 {
            // Simulate a write torn by the crash.
            let results = ws
                .runs()
                .join("k/sessions")
                .read_dir()
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("checkpoints/mcq/results.jsonl"));
            // Only a running method can be torn by a crash.
            let running =
                |p: &std::path::PathBuf| p.exists() && !p.with_file_name("_DONE.json").exists();
            if let Some(p) = results.filter(running) {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(b"{\"key\":\"torn-by-test\",\"uu").unwrap();
                torn += 1;
            }
        }
    }
    assert!(
        trials >= 20,
        "only {trials} kill trials fit in the time bound"
    );
    eprintln!("kill trials: {trials}, interrupted: {interrupted}, torn: {torn}");
    assert!(torn >= 1, "no torn line was injected");
    assert!(
        interrupted >= 10,
        "only {interrupted} of {trials} kills hit a running method"
    );
    let s = only_session(&ws.runs(), "k");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    w2c(ws.path())
        .args(["resume", &fp[..12], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    assert_eq!(metrics(&s)["metrics"], ref_metrics);
    assert_eq!(predictions(&s), ref_preds);
    let results = std::fs::read_to_string(s.join("checkpoints/mcq/results.jsonl")).unwrap();
    assert!(!results.contains("torn-by-test"));
    assert!(results.ends_with('\n'));
    // Fingerprints of both sessions agree: same inputs, same session.
    assert_eq!(
        read_json(&ref_session.join("manifest.json"))["fingerprint"],
        read_json(&s.join("manifest.json"))["fingerprint"]
    );
}

#[test]
fn failed_items_are_recorded_and_retried_on_resume() {
    let ws = Workspace::new();
    let opts = Opts {
        fail_rate: 0.5,
        max_attempts: 1,
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
    let errors = std::fs::read_to_string(s.join("checkpoints/mcq/errors.jsonl")).unwrap();
    assert!(errors.contains("injected transient failure"));
    assert!(!s.join("artifacts_local/mcq/metrics.json").exists());

    // Resume with the same config until done (each pass retries the errors).
    let mut passes = 0;
    loop {
        passes += 1;
        let out = w2c(ws.path())
            .args(["run", "--run-key", "k", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert_eq!(out.status.code(), Some(3));
        assert!(passes < 40, "never completed");
    }
    // Same predictions as a fault-free run.
    let clean = Workspace::new();
    let cfg = clean.config("eval.toml", &Opts::default());
    w2c(clean.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let c = only_session(&clean.runs(), "k");
    assert_eq!(predictions(&s), predictions(&c));
    assert_eq!(metrics(&s)["metrics"], metrics(&c)["metrics"]);
}

#[test]
fn second_process_on_a_held_session_is_refused() {
    let ws = Workspace::new();
    let opts = Opts {
        latency_ms: 300,
        concurrency: 1,
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    let mut first = spawn_run(&ws, &cfg);
    // The checkpoint file is opened only once the session is locked.
    wait_for(
        "the first process to hold the session",
        Duration::from_secs(60),
        || session_dir(&ws).is_some_and(|s| s.join("checkpoints/mcq/results.jsonl").exists()),
    );
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("PID {}", first.id())),
        "stderr does not name the holder: {stderr}"
    );
}
