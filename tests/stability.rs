//! Stability sweeps: K repeats per example per temperature, each repeat in
//! the checkpoint key; a kill inside a sweep resumes to identical numbers.

mod common;

use common::*;
use std::time::Duration;

fn sweep_opts(extra: &str) -> Opts {
    Opts {
        methods: "\"stability_mcq\"".into(),
        n_per_label: Some(5),
        mcq_extra: format!("\n[methods.stability]\nk = 4\ntemperatures = [0.0, 0.7]\n{extra}"),
        ..Opts::default()
    }
}

#[test]
fn sweep_writes_one_namespace_per_temperature_with_repeat_keys() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &sweep_opts(""));
    let out = run_ok(&ws, &cfg);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Stability@4"));
    let s = only_session(&ws.runs(), "k");
    for t in ["0.0", "0.7"] {
        let ns = format!("stability_mcq_k=4_T={t}");
        let results = read_jsonl(&s.join(format!("checkpoints/{ns}/results.jsonl")));
        assert_eq!(results.len(), 15 * 4);
        assert!(results
            .iter()
            .all(|r| r["key"].as_str().unwrap().contains('#')));
        let m = read_json(&s.join(format!("artifacts_local/{ns}/metrics.json")));
        let st = &m["stability"];
        assert_eq!(st["k"], 4);
        assert_eq!(st["n_items"], 15);
        // Recompute Stability@k from the predictions export.
        let preds = read_jsonl(&s.join(format!("artifacts_local/{ns}/predictions.jsonl")));
        let stable = preds
            .iter()
            .filter(|p| {
                let runs = p["runs"].as_array().unwrap();
                runs.iter().all(|r| r == &runs[0])
            })
            .count();
        let want = stable as f64 / 15.0;
        assert!((st["stability_at_k"].as_f64().unwrap() - want).abs() < 1e-12);
    }
    // Per-repeat seeds at T > 0: the mock answers differently across repeats.
    let hot = read_json(&s.join("artifacts_local/stability_mcq_k=4_T=0.7/metrics.json"));
    assert!(hot["stability"]["stability_at_k"].as_f64().unwrap() < 1.0);
}

#[test]
fn kill_inside_a_sweep_then_resume_matches_uninterrupted() {
    let reference = Workspace::new();
    let cfg = reference.config("eval.toml", &sweep_opts(""));
    w2c(reference.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let rs = only_session(&reference.runs(), "k");

    let ws = Workspace::new();
    let slow = Opts {
        latency_ms: 15,
        concurrency: 2,
        ..sweep_opts("")
    };
    let cfg = ws.config("eval.toml", &slow);
    for n in [5, 15, 30, 50] {
        let mut child = spawn_run(&ws, &cfg);
        wait_while_running(
            &mut child,
            "sweep results",
            Duration::from_secs(120),
            || all_result_lines(&ws) >= n,
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    let s = only_session(&ws.runs(), "k");
    let partial = read_jsonl(&s.join("checkpoints/stability_mcq_k=4_T=0.0/results.jsonl")).len();
    assert!(partial > 0, "no progress before the kills");
    w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    for t in ["0.0", "0.7"] {
        let p = format!("artifacts_local/stability_mcq_k=4_T={t}/metrics.json");
        assert_eq!(
            read_json(&s.join(&p))["stability"],
            read_json(&rs.join(&p))["stability"]
        );
        assert_eq!(
            read_json(&s.join(&p))["metrics"],
            read_json(&rs.join(&p))["metrics"]
        );
    }
}

#[test]
fn llm_judge_sweep_samples_the_target_k_times_and_judges_each() {
    let ws = Workspace::new();
    let opts = Opts {
        methods: "\"stability_llm_judge\"".into(),
        n_per_label: Some(5),
        mcq_extra: "\n[methods.stability]\nk = 3\ntemperatures = [0.9]".into(),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let ns = "stability_llm_judge_k=3_T=0.9";
    let targets = read_jsonl(&s.join(format!("checkpoints/{ns}.target/results.jsonl")));
    assert_eq!(targets.len(), 45);
    let calls = read_jsonl(&s.join(format!("artifacts_local/{ns}.target/llm_calls.jsonl")));
    let seeds: std::collections::HashSet<u64> = calls
        .iter()
        .map(|c| c["request"]["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 3, "one seed per repeat");
    assert!(calls.iter().all(|c| c["request"]["temperature"] == 0.9));
    let decisions = read_jsonl(&s.join(format!("checkpoints/{ns}/results.jsonl")));
    assert_eq!(decisions.len(), 45);
    let m = read_json(&s.join(format!("artifacts_local/{ns}/metrics.json")));
    assert_eq!(m["stability"]["k"], 3);
    assert_eq!(m["stability"]["n_items"], 15);
}
