//! Ctrl-C: stop issuing requests, finish or abandon the ones in flight within
//! a few seconds, leave a consistent session, exit 130; resume completes it.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_saves_progress_and_resume_matches_reference() {
    let opts = Opts {
        latency_ms: 150,
        concurrency: 2,
        ..Opts::default()
    };
    let reference = Workspace::new();
    let cfg = reference.config("eval.toml", &opts);
    w2c(reference.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let ref_metrics =
        read_json(&only_session(&reference.runs(), "k").join("artifacts_local/mcq/metrics.json"));

    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &opts);
    let mut child = spawn_run(&ws, &cfg);
    let running = wait_while_running(
        &mut child,
        "a first result",
        Duration::from_secs(60),
        || result_lines(&ws, "mcq") >= 1,
    );
    assert!(running, "the run ended before it could be interrupted");
    sigint(child.id());
    let code = wait_with_deadline(&mut child, Duration::from_secs(5));
    assert_eq!(code, 130);
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
    let done = read_jsonl(&s.join("checkpoints/mcq/results.jsonl")).len();
    assert!(done > 0 && done < 30, "{done} results after the interrupt");
    // The lock was released: resume works and matches the reference.
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    w2c(ws.path())
        .args(["resume", &fp, "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let m = read_json(&s.join("artifacts_local/mcq/metrics.json"));
    assert_eq!(m["metrics"], ref_metrics["metrics"]);
}

#[test]
fn ctrl_c_abandons_hung_requests_within_the_grace_period() {
    let server = MockServer::start(&["--rate-hang", "1.0", "--hang-secs", "60"], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        concurrency: 4,
        ..Opts::default()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "timeout_secs = 120");
    let mut child = spawn_run(&ws, &cfg);
    wait_for("hung requests in flight", Duration::from_secs(60), || {
        server.stats()["fault_hang"].as_u64() >= Some(1)
    });
    let t = Instant::now();
    sigint(child.id());
    let code = wait_with_deadline(&mut child, Duration::from_secs(8));
    assert_eq!(code, 130);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
}
