//! One session split into shards: planned once, run as 4 processes at once
//! (each against its own `w2c mock-server`, as each node of a job array
//! serves its own model), finalized exactly once, and identical to an
//! unsharded run of the same config — through `--shard I/N` and through a
//! Kubernetes Indexed Job's environment; a shard killed with -9 and re-run
//! redoes only its slice; MLflow gets one parent and one child per
//! namespace, FINISHED.

mod common;

use common::mlflow::{self, MlflowServer};
use common::{plan, read_json, read_jsonl, w2c, wait_for, MockServer, Opts, Workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The namespaces the test config plans.
const NAMESPACES: [&str; 4] = [
    "mcq",
    "llm_judge.target",
    "llm_judge",
    "stability_mcq_k=2_T=0.7",
];

fn opts() -> Opts {
    Opts {
        n_per_label: Some(5),
        methods: "\"mcq\", \"llm_judge\", \"stability_mcq\"".into(),
        concurrency: 4,
        ..Opts::default()
    }
}

/// A config whose provider `mock` is the HTTP server at `url`, with a
/// 2-repeat stability sweep.
fn config(ws: &Workspace, name: &str, url: &str) -> PathBuf {
    let cfg = ws.http_config(name, &opts(), url, "");
    let text = std::fs::read_to_string(&cfg).expect("config")
        + "\n[methods.stability]\nk = 2\ntemperatures = [0.7]\n";
    ws.write(name, &text)
}

/// `w2c` with `args` in `ws`, spawned with `env`, its stderr kept in `log`.
fn spawn(ws: &Workspace, args: &[&str], env: &[(&str, String)], log: &str) -> Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("w2c"));
    cmd.current_dir(ws.path())
        .args(args)
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .env("W2C_PROGRESS_INTERVAL_SECS", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(ws.path().join(log)).expect("log"));
    for var in common::MLFLOW_VARS {
        cmd.env_remove(var);
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn w2c")
}

fn endpoint_env(server: &MockServer) -> (&'static str, String) {
    ("W2C_BASE_URLS_MOCK", format!("{}/v1", server.url))
}

/// Waits for every child; asserts each exited 0, showing its log if not.
fn wait_ok(ws: &Workspace, children: Vec<(Child, String)>) {
    for (mut child, log) in children {
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "{log}: {status}\n{}",
            std::fs::read_to_string(ws.path().join(&log)).unwrap_or_default()
        );
    }
}

fn session(ws: &Workspace, key: &str) -> PathBuf {
    common::only_session(&ws.runs(), key)
}

/// An unsharded run of `cfg` under run key `u`, for comparison.
fn unsharded(ws: &Workspace, cfg: &Path) -> PathBuf {
    let out = w2c(ws.path())
        .args(["run", "--run-key", "u", "--config"])
        .arg(cfg)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    session(ws, "u")
}

/// Every namespace's metrics.json, predictions.jsonl and results (as a set
/// of lines) are the same in both sessions; each finalized once.
fn assert_identical(sharded: &Path, plain: &Path) {
    for ns in NAMESPACES {
        let a = |s: &Path, f: &str| s.join("artifacts_local").join(ns).join(f);
        if ns != "llm_judge.target" {
            assert_eq!(
                read_json(&a(sharded, "metrics.json")),
                read_json(&a(plain, "metrics.json")),
                "{ns}: metrics.json"
            );
            assert_eq!(
                std::fs::read(a(sharded, "predictions.jsonl")).expect("predictions"),
                std::fs::read(a(plain, "predictions.jsonl")).expect("predictions"),
                "{ns}: predictions.jsonl"
            );
        }
        // Records by key, without their latencies (the only field timing
        // changes).
        let records = |s: &Path| {
            let mut v: Vec<Value> =
                read_jsonl(&s.join("checkpoints").join(ns).join("results.jsonl"))
                    .into_iter()
                    .map(|mut r| {
                        if let Some(o) = r.as_object_mut() {
                            o.remove("latency_ms");
                        }
                        r
                    })
                    .collect();
            v.sort_by_key(|r| r["key"].to_string());
            v
        };
        let (a, b) = (records(sharded), records(plain));
        assert_eq!(a.len(), b.len(), "{ns}: results");
        for (x, y) in a.iter().zip(&b) {
            assert!(x == y, "{ns}: results differ: {x} vs {y}");
        }
        let done = read_json(&sharded.join("checkpoints").join(ns).join("_DONE.json"));
        let plain_done = read_json(&plain.join("checkpoints").join(ns).join("_DONE.json"));
        assert_eq!(done["n_items"], plain_done["n_items"], "{ns}");
        assert_eq!(done["n_result_lines"], plain_done["n_result_lines"], "{ns}");
    }
}

/// How many shard processes finalized each namespace (their logs' notes).
fn finalized_by(ws: &Workspace, logs: &[String], ns: &str) -> usize {
    let note = format!("note: {ns}: every item is done: finalized here");
    logs.iter()
        .filter(|l| {
            std::fs::read_to_string(ws.path().join(l))
                .unwrap_or_default()
                .lines()
                .any(|line| line == note)
        })
        .count()
}

fn verify_deep_clean(ws: &Workspace, fp: &str, env: &[(&str, &str)]) {
    let mut cmd = w2c(ws.path());
    cmd.args(["verify", &fp[..12], "--deep", "--run-key", "k"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify --deep: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn four_shards_at_once_give_the_unsharded_result_once_finalized() {
    let ws = Workspace::new();
    let servers: Vec<MockServer> = (0..4)
        .map(|_| MockServer::start(&["--latency-ms", "5"], &[]))
        .collect();
    let cfg = config(&ws, "eval.toml", &servers[0].url);
    let fp = plan(&ws, &cfg, 4, &[]);
    let logs: Vec<String> = (0..4).map(|i| format!("shard{i}.log")).collect();
    let children = (0..4)
        .map(|i| {
            let shard = format!("{i}/4");
            (
                spawn(
                    &ws,
                    &["resume", &fp[..8], "--shard", &shard],
                    &[endpoint_env(&servers[i])],
                    &logs[i],
                ),
                logs[i].clone(),
            )
        })
        .collect();
    wait_ok(&ws, children);
    // Every shard used its own endpoint, for its slice only.
    for (i, s) in servers.iter().enumerate() {
        assert!(
            s.stats()["chat"].as_u64().unwrap_or(0) > 0,
            "server {i} unused"
        );
    }
    for ns in NAMESPACES {
        assert_eq!(finalized_by(&ws, &logs, ns), 1, "{ns} finalized once");
    }
    // Progress went to the logs as plain lines.
    let log0 = std::fs::read_to_string(ws.path().join(&logs[0])).expect("log");
    assert!(log0.contains("mcq: finished"), "{log0}");
    assert!(!log0.contains('\r'), "no bars in a log");
    let sharded = session(&ws, "k");
    let plain = unsharded(&ws, &cfg);
    assert_identical(&sharded, &plain);
    // The shards' files stay, each with its slice, listed in _DONE.json.
    let done = read_json(&sharded.join("checkpoints/mcq/_DONE.json"));
    let files = done["checkpoint_files"].as_object().expect("files");
    for i in 0..4 {
        assert!(files.contains_key(&format!("shards/shard-{i}-of-4/results.jsonl")));
    }
    let slice0 = read_jsonl(&sharded.join("checkpoints/mcq/shards/shard-0-of-4/results.jsonl"));
    let n = read_json(&sharded.join("manifest.json"))["n_examples"]
        .as_u64()
        .expect("n") as usize;
    assert_eq!(slice0.len(), n.div_ceil(4), "positions 0, 4, 8...");
    verify_deep_clean(&ws, &fp, &[]);
    // Status shows the session done; a shard run again does nothing.
    let st = w2c(ws.path()).arg("status").output().expect("status");
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains("k/") && st.contains("done"), "{st}");
    let before = std::fs::read(sharded.join("checkpoints/mcq/_DONE.json")).expect("done");
    let again = w2c(ws.path())
        .args(["resume", &fp[..8], "--run-key", "k", "--shard", "1/4"])
        .env("W2C_BASE_URLS_MOCK", format!("{}/v1", servers[1].url))
        .output()
        .expect("again");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read(sharded.join("checkpoints/mcq/_DONE.json")).expect("done"),
        before
    );
}

#[test]
fn an_indexed_job_creates_the_session_from_four_pods_at_once() {
    let ws = Workspace::new();
    let servers: Vec<MockServer> = (0..4)
        .map(|_| MockServer::start(&["--latency-ms", "5"], &[]))
        .collect();
    let cfg = config(&ws, "eval.toml", &servers[0].url);
    let cfg_arg = cfg.to_string_lossy().into_owned();
    // No `w2c plan`: four pods start at once on a fresh runs dir, the index
    // from JOB_COMPLETION_INDEX, the count from --shards (the Job's
    // `completions`).
    let logs: Vec<String> = (0..4).map(|i| format!("pod{i}.log")).collect();
    let children = (0..4)
        .map(|i| {
            (
                spawn(
                    &ws,
                    &[
                        "run",
                        "--run-key",
                        "k",
                        "--config",
                        &cfg_arg,
                        "--shards",
                        "4",
                    ],
                    &[
                        endpoint_env(&servers[i]),
                        ("JOB_COMPLETION_INDEX", i.to_string()),
                    ],
                    &logs[i],
                ),
                logs[i].clone(),
            )
        })
        .collect();
    wait_ok(&ws, children);
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(ws.path().join(log)).expect("log");
        assert!(
            text.contains(&format!("shard {i}/4 (from Kubernetes Indexed Job")),
            "{text}"
        );
    }
    let sharded = session(&ws, "k");
    assert_eq!(read_json(&sharded.join("manifest.json"))["shards"], 4);
    for ns in NAMESPACES {
        assert_eq!(finalized_by(&ws, &logs, ns), 1, "{ns} finalized once");
    }
    let plain = unsharded(&ws, &cfg);
    assert_identical(&sharded, &plain);
    let manifest = read_json(&sharded.join("manifest.json"));
    verify_deep_clean(&ws, manifest["fingerprint"].as_str().expect("fp"), &[]);
    // A pod whose count disagrees with the plan is refused.
    let out = w2c(ws.path())
        .args([
            "run",
            "--run-key",
            "k",
            "--config",
            &cfg_arg,
            "--shards",
            "3",
        ])
        .env("JOB_COMPLETION_INDEX", "0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("planned for 4"), "{err}");
}

#[test]
fn a_shard_killed_with_9_and_rerun_redoes_only_its_slice() {
    let ws = Workspace::new();
    let fast: Vec<MockServer> = (0..3)
        .map(|_| MockServer::start(&["--latency-ms", "5"], &[]))
        .collect();
    let slow = MockServer::start(&["--latency-ms", "150"], &[]);
    let cfg = config(&ws, "eval.toml", &fast[0].url);
    let fp = plan(&ws, &cfg, 4, &[]);
    let endpoint = |i: usize| {
        if i == 2 {
            &slow
        } else {
            &fast[if i == 3 { 2 } else { i }]
        }
    };
    let others: Vec<(Child, String)> = [0usize, 1, 3]
        .iter()
        .map(|&i| {
            let log = format!("shard{i}.log");
            let shard = format!("{i}/4");
            (
                spawn(
                    &ws,
                    &["resume", &fp[..8], "--shard", &shard],
                    &[endpoint_env(endpoint(i))],
                    &log,
                ),
                log,
            )
        })
        .collect();
    let mut victim = spawn(
        &ws,
        &["resume", &fp[..8], "--shard", "2/4"],
        &[endpoint_env(&slow)],
        "victim.log",
    );
    let dir = ws.runs().join("k/sessions").join(&fp[..16]);
    let slice = dir.join("checkpoints/mcq/shards/shard-2-of-4/results.jsonl");
    let lines = || {
        std::fs::read(&slice)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    };
    wait_for(
        "the victim's first results",
        Duration::from_secs(60),
        || lines() >= 2,
    );
    victim.kill().expect("kill -9");
    victim.wait().expect("wait");
    wait_ok(&ws, others);
    // Not finalized: shard 2's slice is missing.
    assert!(!dir.join("checkpoints/mcq/_DONE.json").exists());
    let st = w2c(ws.path()).arg("status").output().expect("status");
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.contains("shard 2/4") && st.contains("slice done"),
        "{st}"
    );
    // The other shards' files do not change from here on.
    let digest = |i: usize| {
        std::fs::read(dir.join(format!(
            "checkpoints/mcq/shards/shard-{i}-of-4/results.jsonl"
        )))
        .expect("slice")
    };
    let kept: Vec<Vec<u8>> = [0, 1, 3].iter().map(|&i| digest(i)).collect();
    let done_before = lines();
    // The calls shard 2 logs, per namespace (a judge's repair turn is a
    // second call of an item).
    let shard_calls = || -> std::collections::BTreeMap<PathBuf, Vec<Value>> {
        std::fs::read_dir(dir.join("checkpoints"))
            .expect("checkpoints")
            .flatten()
            .map(|ns| {
                let p = ns.path().join("shards/shard-2-of-4/llm_calls.jsonl");
                let calls = std::fs::read_to_string(&p)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("call line"))
                    .collect::<Vec<_>>();
                (p, calls)
            })
            .collect()
    };
    let calls_before = shard_calls();
    let before = slow.stats()["chat"].as_u64().expect("chat");
    common::http(&format!("{}/stats/reset", slow.url), "POST");
    let rerun = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "2/4"])
        .env("W2C_BASE_URLS_MOCK", format!("{}/v1", slow.url))
        .output()
        .expect("rerun");
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let err = String::from_utf8_lossy(&rerun.stderr);
    let n = read_json(&dir.join("manifest.json"))["n_examples"]
        .as_u64()
        .expect("n") as usize;
    let mine = (0..n).filter(|p| p % 4 == 2).count();
    assert!(
        err.contains(&format!(
            "mcq: {done_before} of {mine} items were already done"
        )),
        "{err}"
    );
    // Requests: the slice's remaining mcq items plus the rest of the
    // shard's namespaces (and a judge's repair turns), nothing of other
    // shards' slices: every request the server saw is in shard 2's logs.
    let slice_items = mine * 5; // mcq, target, judge, sweep (k=2)
    let sent = slow.stats()["chat"].as_u64().expect("chat") as usize;
    let new_calls: Vec<Value> = shard_calls()
        .into_iter()
        .flat_map(|(p, calls)| {
            let skip = calls_before.get(&p).map_or(0, Vec::len);
            calls.into_iter().skip(skip)
        })
        .collect();
    let attempts: usize = new_calls
        .iter()
        .map(|c| c["n_attempts"].as_u64().unwrap_or(1) as usize)
        .sum();
    assert_eq!(sent, attempts, "every request is a call of shard 2");
    let first_calls = new_calls
        .iter()
        .filter(|c| c["role"] != "judge_repair")
        .count();
    assert!(
        first_calls <= slice_items - done_before && first_calls >= slice_items - done_before - 4,
        "rerun made {first_calls} first calls ({sent} requests), slice {slice_items}, {done_before} done ({before} before the kill)"
    );
    for (k, &i) in [0, 1, 3].iter().enumerate() {
        assert_eq!(digest(i), kept[k], "shard {i} untouched");
    }
    assert!(
        err.contains("mcq: every item is done: finalized here"),
        "{err}"
    );
    let plain = unsharded(&ws, &cfg);
    assert_identical(&dir, &plain);
    verify_deep_clean(&ws, &fp, &[]);
}

fn query_runs(uri: &str, exp: &str) -> Vec<Value> {
    mlflow::query(uri, exp, false, &[])["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sharded_sessions_get_one_parent_and_one_child_per_namespace_finished() {
    let uri = MlflowServer::shared();
    let exp = mlflow::experiment("shards");
    let env = [
        ("MLFLOW_TRACKING_URI", uri),
        ("MLFLOW_EXPERIMENT_NAME", exp.as_str()),
    ];
    let ws = Workspace::new();
    let servers: Vec<MockServer> = (0..4)
        .map(|_| MockServer::start(&["--latency-ms", "5"], &[]))
        .collect();
    let cfg = config(&ws, "eval.toml", &servers[0].url);
    let fp = plan(&ws, &cfg, 4, &env);
    // The plan opened the parent and every child, RUNNING.
    let runs = query_runs(uri, &exp);
    assert_eq!(runs.len(), 1 + NAMESPACES.len(), "{runs:#?}");
    assert!(runs.iter().all(|r| r["status"] == "RUNNING"));
    let logs: Vec<String> = (0..4).map(|i| format!("shard{i}.log")).collect();
    let children = (0..4)
        .map(|i| {
            let shard = format!("{i}/4");
            (
                spawn(
                    &ws,
                    &["resume", &fp[..8], "--shard", &shard],
                    &[
                        endpoint_env(&servers[i]),
                        ("MLFLOW_TRACKING_URI", uri.to_string()),
                        ("MLFLOW_EXPERIMENT_NAME", exp.clone()),
                    ],
                    &logs[i],
                ),
                logs[i].clone(),
            )
        })
        .collect();
    wait_ok(&ws, children);
    let runs = query_runs(uri, &exp);
    let parents: Vec<&Value> = runs.iter().filter(|r| r["parent"].is_null()).collect();
    assert_eq!(parents.len(), 1, "{runs:#?}");
    let parent_id = parents[0]["run_id"].as_str().expect("id");
    let sdir = ws.runs().join("k/sessions").join(&fp[..16]);
    let logs_text: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(ws.path().join(l)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert_eq!(
        parents[0]["status"],
        "FINISHED",
        "{}\n{logs_text}",
        std::fs::read_to_string(sdir.join("mlflow_ids.json")).unwrap_or_default()
    );
    for ns in NAMESPACES {
        let children: Vec<&Value> = runs
            .iter()
            .filter(|r| r["tags"]["w2c.namespace"] == ns)
            .collect();
        assert_eq!(children.len(), 1, "{ns}: {runs:#?}");
        assert_eq!(children[0]["status"], "FINISHED", "{ns}");
        assert_eq!(children[0]["parent"], parent_id, "{ns}");
        if ns != "llm_judge.target" {
            assert!(
                children[0]["metrics"]["accuracy"].is_number(),
                "{ns}: final metrics logged"
            );
        }
        assert_eq!(finalized_by(&ws, &logs, ns), 1, "{ns}");
    }
    // The finalizers waited for traces no longer than the default bound:
    // what MLflow had not taken by then is pending — traces only — and
    // verify says so (exit 7), distinct from a mismatch.
    let ids = read_json(&session(&ws, "k").join("mlflow_ids.json"));
    if ids["synced"] == false {
        let pending = ids["pending"].as_array().expect("pending");
        assert!(
            pending
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.starts_with("traces: "))),
            "{ids}"
        );
        let mut cmd = w2c(ws.path());
        cmd.args(["verify", &fp[..12], "--run-key", "k"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("verify");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(7), "{text}");
        assert!(text.contains("PENDING"), "{text}");
        assert!(
            !text.contains("MISMATCH") && !text.contains("MISSING"),
            "{text}"
        );
        // A resume of the finished session sends them, as sync would.
        let mut cmd = w2c(ws.path());
        cmd.args(["resume", &fp[..12], "--run-key", "k"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("resume");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids = read_json(&session(&ws, "k").join("mlflow_ids.json"));
        assert_eq!(ids["synced"], true, "{ids}");
    }
    verify_deep_clean(&ws, &fp, &env);
}

#[test]
fn finalize_says_which_shards_lack_items_then_finishes_the_session() {
    let ws = Workspace::new();
    let server = MockServer::start(&[], &[]);
    let cfg = config(&ws, "eval.toml", &server.url);
    let fp = plan(&ws, &cfg, 2, &[]);
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "1/2"])
        .output()
        .expect("shard");
    assert!(out.status.success());
    let out = w2c(ws.path())
        .args(["finalize", &fp[..8]])
        .output()
        .expect("finalize");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mcq: not finalized: 8 of 15 items have no result (shard 0/2 lacks 8)"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("w2c finalize k/{}", &fp[..16])),
        "{stdout}"
    );
    // A shard of another count is refused; a single resubmitted Slurm
    // index (COUNT=1) too, with what to do instead.
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "0/3"])
        .output()
        .expect("shard");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("w2c plan --shards 3"));
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard"])
        .env("SLURM_ARRAY_JOB_ID", "41")
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "1")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_MAX", "0")
        .output()
        .expect("shard");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scontrol requeue 41_0"), "{err}");
    // Shard 0 in a Slurm array task (id 4 of --array=4-5) finishes it.
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard"])
        .env("SLURM_ARRAY_TASK_ID", "4")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .env("SLURM_ARRAY_TASK_MIN", "4")
        .env("SLURM_ARRAY_TASK_MAX", "5")
        .output()
        .expect("shard");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 0/2 (from Slurm array task 4"));
    let out = w2c(ws.path())
        .args(["finalize", &fp[..8]])
        .output()
        .expect("finalize");
    assert!(out.status.success());
    verify_deep_clean(&ws, &fp, &[]);
    // Two shards of one index cannot run at once.
    let dir = session(&ws, "k");
    let _held = hold_shard_lock(&dir, "shard-1-of-2");
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "1/2"])
        .output()
        .expect("shard");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 1/2"));
}

/// Holds a shard's lock file as another process would.
fn hold_shard_lock(dir: &Path, name: &str) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("shards").join(format!("{name}.lock")))
        .expect("lock file");
    f.lock().expect("lock");
    f
}

#[test]
fn a_finalizing_shard_never_waits_on_traces_the_server_holds() {
    // Every trace request is held by the proxy and the request timeout is
    // an hour: a finalizer that sent its namespace's traces itself would
    // wait for them. Traces go out from their own task, so each shard ends
    // with its records in MLflow and the traces pending.
    let uri = MlflowServer::shared();
    let proxy =
        common::holding_proxy::HoldingProxy::start(uri, &["/api/3.0/mlflow/traces", "/v1/traces"]);
    let exp = mlflow::experiment("shards-held-traces");
    let env = [
        ("MLFLOW_TRACKING_URI", proxy.url.as_str()),
        ("MLFLOW_EXPERIMENT_NAME", exp.as_str()),
    ];
    let ws = Workspace::new();
    let server = MockServer::start(&["--latency-ms", "5"], &[]);
    let cfg = config(&ws, "eval.toml", &server.url);
    let fp = plan(&ws, &cfg, 4, &env);
    let logs: Vec<String> = (0..4).map(|i| format!("shard{i}.log")).collect();
    let start = std::time::Instant::now();
    let mut children: Vec<(Child, String)> = (0..4)
        .map(|i| {
            let shard = format!("{i}/4");
            (
                spawn(
                    &ws,
                    &["resume", &fp[..8], "--shard", &shard],
                    &[
                        endpoint_env(&server),
                        ("MLFLOW_TRACKING_URI", proxy.url.clone()),
                        ("MLFLOW_EXPERIMENT_NAME", exp.clone()),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600".into()),
                        ("W2C_TRACKING_TRACE_WAIT_SECS", "0".into()),
                    ],
                    &logs[i],
                ),
                logs[i].clone(),
            )
        })
        .collect();
    // Every shard ends while the trace requests are still held.
    common::wait_for(
        "every shard to end while its traces are held",
        Duration::from_secs(240),
        || {
            children
                .iter_mut()
                .all(|(c, _)| c.try_wait().ok().flatten().is_some())
        },
    );
    let elapsed = start.elapsed();
    wait_ok(&ws, children);
    assert!(proxy.held() >= 1, "no trace request was held");
    let runs = query_runs(uri, &exp);
    for ns in NAMESPACES {
        let child = runs
            .iter()
            .find(|r| r["tags"]["w2c.namespace"] == ns)
            .unwrap_or_else(|| panic!("{ns}: no child run"));
        assert_eq!(child["status"], "FINISHED", "{ns}");
        assert_eq!(finalized_by(&ws, &logs, ns), 1, "{ns}");
    }
    let s = session(&ws, "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    let pending = ids["pending"].as_array().expect("pending");
    assert!(
        !pending.is_empty()
            && pending
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.starts_with("traces: "))),
        "{ids} after {elapsed:?}"
    );
    // Once the server takes them, `w2c sync` sends every trace, once.
    proxy.release();
    let mut cmd = w2c(ws.path());
    cmd.args(["sync", &fp[..12], "--run-key", "k"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = mlflow::traces(uri, &exp);
    assert!(mlflow::assert_traces_complete(&s, &dump) > 0);
    assert_eq!(read_json(&s.join("mlflow_ids.json"))["synced"], true);
}

/// A prediction edited in a done slice (the raw output left alone) is
/// refused at finalize, naming the shard's file and its marker, and named
/// by `verify` (issue 29 §4): `_SLICE_DONE.json` records the digests of the
/// slice's files.
#[test]
fn a_slice_edited_after_its_done_marker_is_refused_at_finalize_and_by_verify() {
    let ws = Workspace::new();
    let server = MockServer::start(&[], &[]);
    let cfg = ws.http_config(
        "eval.toml",
        &Opts {
            n_per_label: Some(3),
            ..Opts::default()
        },
        &server.url,
        "",
    );
    let fp = plan(&ws, &cfg, 2, &[]);
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "0/2"])
        .output()
        .expect("shard");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = session(&ws, "k");
    let shard = dir.join("checkpoints/mcq/shards/shard-0-of-2");
    let marker = read_json(&shard.join("_SLICE_DONE.json"));
    assert!(
        marker["files"]["results.jsonl"]["sha256"].is_string(),
        "{marker}"
    );
    // Edit one prediction, leaving its raw output as it was.
    let results = shard.join("results.jsonl");
    let text = std::fs::read_to_string(&results).expect("results");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let was = lines[0]["prediction"]
        .as_str()
        .expect("prediction")
        .to_string();
    let other = if was == "cannot_answer" {
        "tool_call"
    } else {
        "cannot_answer"
    };
    lines[0]["prediction"] = Value::from(other);
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&results, edited).expect("edit");
    // verify names the slice before finalizing.
    let out = w2c(ws.path())
        .args(["verify", &fp[..8], "--local-only"])
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(
        stdout.contains("shard 0/2 of `mcq` changed after its slice was marked done"),
        "{stdout}"
    );
    // --deep re-scores the prediction from its raw output and names it.
    let out = w2c(ws.path())
        .args(["verify", &fp[..8], "--local-only", "--deep", "--json"])
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(5));
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let key = lines[0]["key"].as_str().expect("key");
    assert!(
        checks.iter().any(|c| c["namespace"] == "mcq"
            && c["check"] == "rescore"
            && c["status"] == "MISMATCH"
            && c["detail"].as_str().is_some_and(|d| d.contains(&format!(
                "shard-0-of-2/results.jsonl:1: {key}: prediction {other}"
            )) && d.contains(&format!("parses to {was}")))),
        "{checks:#?}"
    );
    // The other shard's run would finalize: it refuses, naming the file.
    let out = w2c(ws.path())
        .args(["resume", &fp[..8], "--shard", "1/2"])
        .output()
        .expect("shard");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("refusing to finalize"), "{err}");
    assert!(err.contains("shard-0-of-2/results.jsonl"), "{err}");
    assert!(!dir.join("checkpoints/mcq/_DONE.json").exists());
    let out = w2c(ws.path())
        .args(["finalize", &fp[..8]])
        .output()
        .expect("finalize");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard-0-of-2/results.jsonl"));
}
