//! MLflow tracking against a real `mlflow server` (SQLite, artifact proxy),
//! checked with the real MLflow Python client.

mod common;

use common::mlflow::{experiment, python, query, MlflowServer};
use common::*;
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn tracked(dir: &Path, uri: &str, exp: &str) -> assert_cmd::Command {
    let mut c = w2c(dir);
    c.env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_EXPERIMENT_NAME", exp);
    c
}

/// `w2c run --run-key k --config <cfg>`, tracked on `uri` in `exp`.
fn tracked_run(ws: &Workspace, cfg: &Path, uri: &str, exp: &str) -> assert_cmd::Command {
    let mut c = tracked(ws.path(), uri, exp);
    c.args(["run", "--run-key", "k", "--config"]).arg(cfg);
    c
}

/// The full fingerprint in a session's manifest.
fn session_fingerprint(session: &Path) -> String {
    read_json(&session.join("manifest.json"))["fingerprint"]
        .as_str()
        .expect("fp")
        .to_string()
}

fn spawn_tracked(ws: &Workspace, cfg: &Path, uri: &str, exp: &str) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_EXPERIMENT_NAME", exp)
        .env("W2C_TRACKING_PROGRESS_SECS", "0.2")
        .env("W2C_TRACKING_TRACE_WAIT_SECS", "600")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn w2c run")
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

fn runs_of(q: &Value) -> Vec<Value> {
    q["runs"].as_array().cloned().unwrap_or_default()
}

fn parents(q: &Value, fp: &str) -> Vec<Value> {
    runs_of(q)
        .into_iter()
        .filter(|r| r["tags"]["w2c.fingerprint"] == fp && r["parent"].is_null())
        .collect()
}

fn children_by_ns(q: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in runs_of(q) {
        if let Some(ns) = r["tags"]["w2c.namespace"].as_str() {
            out.entry(ns.to_string()).or_default().push(r);
        }
    }
    out
}

const TWO_METHODS: &str = "\"mcq\", \"llm_judge\"";

/// Every local file listed in a namespace's artifact_manifest.json exists
/// remotely with the same size and sha256, and so does the manifest itself.
fn assert_artifacts_match(session: &Path, ns: &str, run: &Value) {
    let manifest_path = session
        .join("artifacts_local")
        .join(ns)
        .join("artifact_manifest.json");
    let manifest = read_json(&manifest_path);
    let remote = &run["artifacts"];
    let files = manifest["files"].as_array().expect("files");
    assert!(files.len() >= 5, "{ns}: {files:?}");
    for f in files {
        let path = f["path"].as_str().expect("path");
        let local = if let Some(rest) = path.strip_prefix("checkpoints/") {
            session.join("checkpoints").join(ns).join(rest)
        } else {
            session.join("artifacts_local").join(ns).join(path)
        };
        assert_eq!(
            f["sha256"].as_str(),
            Some(sha256_file(&local).as_str()),
            "{ns}/{path}: manifest vs local"
        );
        assert_eq!(
            remote[path]["sha256"], f["sha256"],
            "{ns}/{path}: remote vs manifest"
        );
        assert_eq!(remote[path]["size"], f["size"], "{ns}/{path}");
    }
    assert_eq!(
        remote["artifact_manifest.json"]["sha256"].as_str(),
        Some(sha256_file(&manifest_path).as_str())
    );
}

#[test]
fn a_tracked_run_is_mirrored_and_the_python_client_agrees() {
    let uri = MlflowServer::shared();
    let exp = experiment("full");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(5),
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    tracked_run(&ws, &cfg, uri, &exp)
        .env("W2C_TRACKING_PROGRESS_SECS", "0.1")
        .assert()
        .success();
    let s = only_session(&ws.runs(), "k");
    let manifest = read_json(&s.join("manifest.json"));
    let fp = manifest["fingerprint"].as_str().expect("fp").to_string();
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["mode"], "online");
    assert_eq!(ids["synced"], true, "{ids}");
    assert_eq!(ids["pending"], serde_json::json!([]));
    assert_eq!(ids["experiment_name"], exp.as_str());

    let q = query(uri, &exp, true, &[]);
    assert_eq!(
        runs_of(&q).len(),
        4,
        "parent + mcq + llm_judge.target + llm_judge"
    );
    let ps = parents(&q, &fp);
    assert_eq!(ps.len(), 1);
    let parent = &ps[0];
    assert_eq!(parent["run_id"], ids["parent_run_id"]);
    assert_eq!(parent["status"], "FINISHED");
    assert_eq!(parent["tags"]["w2c.run_key"], "k");
    assert_eq!(parent["tags"]["w2c.kind"], "session");
    assert_eq!(parent["tags"]["w2c.target_model"], "mock-model");
    // The config is recorded as tags (operational settings may change for a
    // session); params are what identifies it and never change.
    assert_eq!(parent["tags"]["config.models.target"], "mock-model");
    assert!(parent["params"]["config.models.target"].is_null());
    assert_eq!(parent["params"]["inputs.target.model"], "mock-model");
    assert_eq!(parent["params"]["session.fingerprint"], fp.as_str());
    assert_eq!(
        parent["params"]["inputs.dataset.sha256"],
        manifest["fingerprint_payload"]["dataset"]["sha256"]
    );
    // The shared When2Call test file has no `direct` rows.
    assert!(parent["params"]["dataset.label_counts.direct"].is_null());
    for label in ["tool_call", "request_for_info", "cannot_answer"] {
        assert_eq!(
            parent["params"][format!("dataset.label_counts.{label}")],
            "5",
            "{label}"
        );
    }
    assert_eq!(
        parent["artifacts"]["manifest.json"]["sha256"].as_str(),
        Some(sha256_file(&s.join("manifest.json")).as_str())
    );

    let children = children_by_ns(&q);
    assert_eq!(
        children.keys().collect::<Vec<_>>(),
        vec!["llm_judge", "llm_judge.target", "mcq"]
    );
    for (ns, runs) in &children {
        assert_eq!(runs.len(), 1, "{ns}");
        let run = &runs[0];
        assert_eq!(run["tags"]["w2c.namespace"], ns.as_str());
        assert!(
            run["run_name"]
                .as_str()
                .is_some_and(|n| n.contains(" · mock-model")),
            "{ns}: {}",
            run["run_name"]
        );
        assert_eq!(run["parent"], parent["run_id"], "{ns}");
        assert_eq!(run["status"], "FINISHED", "{ns}");
        assert_eq!(run["run_id"], ids["child_run_ids"][ns], "{ns}");
        assert_eq!(run["params"]["namespace"], ns.as_str());
        assert_artifacts_match(&s, ns, run);
    }
    assert_eq!(children["mcq"][0]["tags"]["w2c.method"], "mcq");
    for ns in ["mcq", "llm_judge"] {
        let run = &children[ns][0];
        let local = read_json(&s.join("artifacts_local").join(ns).join("metrics.json"));
        let m = &local["metrics"];
        let pairs = [
            ("accuracy", &m["accuracy"]),
            ("macro_f1_all", &m["macro_f1_all"]),
            ("n_total", &m["n_total"]),
            ("n_invalid", &m["n_invalid"]),
            ("per_class.tool_call.f1", &m["per_class"]["tool_call"]["f1"]),
            (
                "confusion.direct.direct",
                &m["confusion"]["direct"]["direct"],
            ),
            ("usage.prompt_tokens", &local["usage"]["prompt_tokens"]),
        ];
        for (key, want) in pairs {
            assert_eq!(
                run["metrics"][key].as_f64(),
                want.as_f64(),
                "{ns}: metric {key}"
            );
        }
        assert_eq!(run["metrics"]["progress.done"].as_f64(), Some(15.0), "{ns}");
    }

    // Running the finished config again reconnects: no new run appears,
    // and nothing finished is reopened or has its times moved.
    let times: BTreeMap<String, (Value, Value)> = runs_of(&q)
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().expect("id").to_string(),
                (r["start_time"].clone(), r["end_time"].clone()),
            )
        })
        .collect();
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    tracked(ws.path(), uri, &exp)
        .args(["resume", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let q2 = query(uri, &exp, false, &[]);
    assert_eq!(runs_of(&q2).len(), 4);
    assert!(runs_of(&q2).iter().all(|r| r["status"] == "FINISHED"));
    for r in runs_of(&q2) {
        let id = r["run_id"].as_str().expect("id");
        assert_eq!(
            times[id],
            (r["start_time"].clone(), r["end_time"].clone()),
            "{}: times moved by a resume",
            r["run_name"]
        );
    }
}

#[test]
fn a_resume_with_new_work_leaves_finished_children_as_they_were() {
    let uri = MlflowServer::shared();
    let exp = experiment("history");
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(2),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let before = children_by_ns(&query(uri, &exp, false, &[]))["mcq"][0].clone();
    assert_eq!(before["status"], "FINISHED");
    // The same session with another method enabled: only the new work
    // reopens anything.
    let cfg2 = ws.config(
        "eval2.toml",
        &Opts {
            methods: TWO_METHODS.into(),
            ..opts
        },
    );
    tracked_run(&ws, &cfg2, uri, &exp).assert().success();
    let q = query(uri, &exp, false, &[]);
    let children = children_by_ns(&q);
    let after = &children["mcq"][0];
    assert_eq!(after["run_id"], before["run_id"]);
    assert_eq!(after["status"], "FINISHED");
    assert_eq!(
        after["end_time"], before["end_time"],
        "mcq's end time moved"
    );
    assert_eq!(after["start_time"], before["start_time"]);
    // The end time is the namespace's `_DONE.json` time.
    let s = only_session(&ws.runs(), "k");
    let done = read_json(&s.join("checkpoints/mcq/_DONE.json"));
    let done_ms = chrono_ms(done["done_at"].as_str().expect("done_at"));
    assert_eq!(after["end_time"].as_i64(), Some(done_ms));
    assert_eq!(children["llm_judge"][0]["status"], "FINISHED");
}

/// Epoch milliseconds of a `YYYY-MM-DDTHH:MM:SSZ` time.
fn chrono_ms(t: &str) -> i64 {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import datetime;print(int(datetime.datetime.fromisoformat({:?}.replace('Z','+00:00')).timestamp()*1000))",
                t
            ),
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ms")
}

#[test]
fn kill_9_at_random_points_then_resume_leaves_one_run_each() {
    let uri = MlflowServer::shared();
    let exp = experiment("kill");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(6),
            latency_ms: 60,
            concurrency: 2,
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    let fp = fingerprint_of(ws.path(), &cfg);
    let mut rng = 0x9e37_79b9_u64 ^ std::process::id() as u64;
    for trial in 0..5 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut child = spawn_tracked(&ws, &cfg, uri, &exp);
        if trial == 0 {
            // During the tracking setup, before any result.
            wait_while_running(
                &mut child,
                "mlflow_ids.json",
                Duration::from_secs(120),
                || session_dir(&ws).is_some_and(|s| s.join("mlflow_ids.json").exists()),
            );
        } else {
            // A random point: 1 to 12 more results than the run started with.
            let target = all_result_lines(&ws) + 1 + ((rng >> 33) % 12) as usize;
            wait_while_running(&mut child, "more results", Duration::from_secs(120), || {
                all_result_lines(&ws) >= target
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        if trial == 2 {
            // The ids record is lost: the runs are found again by their tags.
            let s = ws.runs().join("k/sessions").join(&fp[..16]);
            let _ = std::fs::remove_file(s.join("mlflow_ids.json"));
        }
    }
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let q = query(uri, &exp, false, &[]);
    let ps = parents(&q, &fp);
    assert_eq!(ps.len(), 1, "{:#?}", runs_of(&q));
    assert_eq!(ps[0]["status"], "FINISHED");
    let children = children_by_ns(&q);
    assert_eq!(children.len(), 3, "{children:#?}");
    for (ns, runs) in &children {
        assert_eq!(runs.len(), 1, "{ns}: duplicate child runs");
        assert_eq!(runs[0]["parent"], ps[0]["run_id"]);
        assert_eq!(runs[0]["status"], "FINISHED");
    }
    let s = only_session(&ws.runs(), "k");
    let local = read_json(&s.join("artifacts_local/mcq/metrics.json"));
    assert_eq!(
        children["mcq"][0]["metrics"]["accuracy"].as_f64(),
        local["metrics"]["accuracy"].as_f64()
    );
    // No trace missing, none twice, no assessment twice.
    let checked = common::mlflow::assert_traces_complete(&s, &common::mlflow::traces(uri, &exp));
    // mcq, the judge's target stream and the judge: a trace per item each.
    assert_eq!(checked, 3 * 18);
}

#[test]
fn deleted_runs_are_replaced_and_operational_settings_may_change() {
    let uri = MlflowServer::shared();
    let exp = experiment("deleted");
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(3),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    let old_child = ids["child_run_ids"]["mcq"]
        .as_str()
        .expect("child")
        .to_string();
    python(uri, &format!("c.delete_run({old_child:?})"));
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let ids = read_json(&s.join("mlflow_ids.json"));
    let new_child = ids["child_run_ids"]["mcq"].as_str().expect("child");
    assert_ne!(new_child, old_child);
    let q = query(uri, &exp, true, &[]);
    let children = children_by_ns(&q);
    assert_eq!(children["mcq"].len(), 1, "only the new child is active");
    assert_eq!(children["mcq"][0]["run_id"], new_child);
    assert_eq!(children["mcq"][0]["status"], "FINISHED");
    assert_artifacts_match(&s, "mcq", &children["mcq"][0]);

    // The local session is lost and re-run with another concurrency: an
    // operational setting, not part of what identifies the session, so the
    // runs found by their tags are reused.
    std::fs::remove_dir_all(ws.runs()).expect("rm runs");
    let cfg2 = ws.config(
        "eval2.toml",
        &Opts {
            concurrency: 3,
            ..opts
        },
    );
    tracked_run(&ws, &cfg2, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);
    let q = query(uri, &exp, false, &[]);
    assert_eq!(parents(&q, &fp).len(), 1, "{:#?}", runs_of(&q));
    assert_eq!(children_by_ns(&q)["mcq"].len(), 1);
}

#[test]
fn the_same_config_run_from_two_directories_is_one_tracked_session() {
    let uri = MlflowServer::shared();
    let exp = experiment("two-dirs");
    let opts = Opts {
        n_per_label: Some(2),
        ..Opts::default()
    };
    let a = Workspace::new();
    let cfg_a = a.config("eval.toml", &opts);
    tracked_run(&a, &cfg_a, uri, &exp).assert().success();
    // The same config elsewhere (its runs_dir resolves to another path), with
    // other operational settings: same fingerprint and run key, same runs.
    let b = Workspace::new();
    let cfg_b = b.config(
        "eval.toml",
        &Opts {
            concurrency: 2,
            max_attempts: 2,
            ..opts
        },
    );
    let out = tracked_run(&b, &cfg_b, uri, &exp).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = only_session(&a.runs(), "k");
    let sb = only_session(&b.runs(), "k");
    let fp = session_fingerprint(&sb);
    assert_eq!(fp, session_fingerprint(&sa));
    let q = query(uri, &exp, false, &[]);
    let ps = parents(&q, &fp);
    assert_eq!(ps.len(), 1, "{:#?}", runs_of(&q));
    let ids_a = read_json(&sa.join("mlflow_ids.json"));
    let ids_b = read_json(&sb.join("mlflow_ids.json"));
    assert_eq!(ids_a["parent_run_id"], ids_b["parent_run_id"]);
    assert_eq!(ids_b["synced"], true, "{ids_b}");
    // What was merely recorded follows the latest run.
    assert_eq!(
        ps[0]["tags"]["w2c.session_dir"].as_str(),
        Some(sb.display().to_string().as_str())
    );
    assert_eq!(children_by_ns(&q)["mcq"].len(), 1);
}

#[test]
fn an_offline_session_is_synced_later_without_duplicates() {
    let uri = MlflowServer::shared();
    let exp = experiment("offline");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(3),
            ..Opts::default()
        },
    );
    // MLFLOW_TRACKING_URI is set but --no-tracking wins.
    tracked(ws.path(), uri, &exp)
        .args(["run", "--no-tracking", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let s = only_session(&ws.runs(), "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["mode"], "offline");
    assert_eq!(ids["synced"], false);
    assert!(ids["parent_run_id"].is_null());
    assert!(runs_of(&query(uri, &exp, false, &[])).is_empty());

    let fp = session_fingerprint(&s);
    let out = tracked(ws.path(), uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("mcq"), "{stdout}");
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["mode"], "online");
    assert_eq!(ids["synced"], true);
    let q = query(uri, &exp, true, &[]);
    assert_eq!(parents(&q, &fp).len(), 1);
    let children = children_by_ns(&q);
    assert_eq!(children["mcq"].len(), 1);
    assert_eq!(children["mcq"][0]["status"], "FINISHED");
    assert_artifacts_match(&s, "mcq", &children["mcq"][0]);
    assert_eq!(
        common::mlflow::assert_traces_complete(&s, &common::mlflow::traces(uri, &exp)),
        9
    );

    // Syncing again and running again with tracking reuse the same runs
    // and traces, and add no assessment twice.
    tracked(ws.path(), uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    assert_eq!(
        common::mlflow::assert_traces_complete(&s, &common::mlflow::traces(uri, &exp)),
        9
    );
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    assert_eq!(runs_of(&query(uri, &exp, false, &[])).len(), 2);

    // Without MLFLOW_TRACKING_URI, sync uses the server the session records.
    w2c(ws.path())
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    assert_eq!(runs_of(&query(uri, &exp, false, &[])).len(), 2);

    // A session that never had a server: sync says what is missing.
    let fresh = Workspace::new();
    let cfg = fresh.config("eval.toml", &Opts::default());
    run_ok(&fresh, &cfg);
    let fp = session_fingerprint(&only_session(&fresh.runs(), "k"));
    w2c(fresh.path())
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(fresh.runs())
        .assert()
        .code(1)
        .stderr(predicates::str::contains("MLFLOW_TRACKING_URI"));
}

#[test]
fn the_server_going_down_mid_run_loses_nothing_and_sync_completes_it() {
    let mut server = MlflowServer::start();
    let uri = server.url.clone();
    let exp = experiment("down");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(5),
            latency_ms: 200,
            concurrency: 2,
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env("MLFLOW_TRACKING_URI", &uri)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("W2C_TRACKING_PAUSE_SECS", "2")
        .env("W2C_TRACKING_PROGRESS_SECS", "0.3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Stop the server once the run is mirrored and has made progress.
    wait_for(
        "a tracked child run and results",
        Duration::from_secs(120),
        || {
            session_dir(&ws).is_some_and(|s| {
                std::fs::read(s.join("mlflow_ids.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|ids| ids["child_run_ids"]["mcq"].is_string())
            }) && result_lines(&ws, "mcq") >= 2
        },
    );
    server.stop();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("w2c sync"), "{stderr}");
    let s = only_session(&ws.runs(), "k");
    assert!(s.join("checkpoints/mcq/_DONE.json").exists());
    assert!(s.join("checkpoints/llm_judge/_DONE.json").exists());
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], false);
    assert!(!ids["pending"].as_array().expect("pending").is_empty());

    server.restart();
    let fp = session_fingerprint(&s);
    tracked(ws.path(), &uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], true, "{ids}");
    let q = query(&uri, &exp, true, &[]);
    let ps = parents(&q, &fp);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["status"], "FINISHED");
    let children = children_by_ns(&q);
    assert_eq!(children.len(), 3);
    for (ns, runs) in &children {
        assert_eq!(runs.len(), 1, "{ns}");
        assert_eq!(runs[0]["status"], "FINISHED", "{ns}");
        assert_artifacts_match(&s, ns, &runs[0]);
    }
    let local = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    assert_eq!(
        children["llm_judge"][0]["metrics"]["accuracy"].as_f64(),
        local["metrics"]["accuracy"].as_f64()
    );
    let checked = common::mlflow::assert_traces_complete(&s, &common::mlflow::traces(&uri, &exp));
    assert_eq!(checked, 3 * 15);
}

#[test]
fn basic_auth_works_with_credentials_and_wrong_ones_fail_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ini = tmp.path().join("basic_auth.ini");
    std::fs::write(
        &ini,
        format!(
            "[mlflow]\ndefault_permission = EDIT\ndatabase_uri = sqlite:///{}\nadmin_username = admin\nadmin_password = admin-pw-123456\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
            tmp.path().join("auth.db").display()
        ),
    )
    .expect("ini");
    let ini_s = ini.display().to_string();
    let server = MlflowServer::start_with(
        &["--app-name", "basic-auth"],
        &[
            ("MLFLOW_AUTH_CONFIG_PATH", ini_s.as_str()),
            ("MLFLOW_FLASK_SERVER_SECRET_KEY", "w2c-test-secret-key"),
            ("MLFLOW_AUTH_ADMIN_PASSWORD", "admin-pw-123456"),
        ],
    );
    let exp = experiment("auth");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            ..Opts::default()
        },
    );
    let wrong = "not-the-password-987";
    let out = tracked_run(&ws, &cfg, &server.url, &exp)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", wrong)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("MLFLOW_TRACKING_PASSWORD"), "{stderr}");
    assert!(!stderr.contains(wrong), "the password leaked: {stderr}");
    // Without credentials: the same clear refusal.
    let out = tracked_run(&ws, &cfg, &server.url, &exp)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));

    tracked_run(&ws, &cfg, &server.url, &exp)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", "admin-pw-123456")
        .assert()
        .success();
    let q = query(
        &server.url,
        &exp,
        false,
        &[
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", "admin-pw-123456"),
        ],
    );
    assert_eq!(runs_of(&q).len(), 2);
    assert!(runs_of(&q).iter().all(|r| r["status"] == "FINISHED"));
    // No secret reached the session directory.
    for entry in walkdir::WalkDir::new(ws.runs()).into_iter().flatten() {
        if entry.file_type().is_file() {
            let text =
                String::from_utf8_lossy(&std::fs::read(entry.path()).expect("read")).into_owned();
            assert!(
                !text.contains("admin-pw-123456") && !text.contains(wrong),
                "{} holds a password",
                entry.path().display()
            );
        }
    }
}

#[test]
fn ctrl_c_marks_runs_killed_and_resume_finishes_them() {
    let uri = MlflowServer::shared();
    let exp = experiment("sigint");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(10),
            latency_ms: 120,
            concurrency: 2,
            ..Opts::default()
        },
    );
    let mut child = spawn_tracked(&ws, &cfg, uri, &exp);
    let running = wait_while_running(&mut child, "results", Duration::from_secs(120), || {
        result_lines(&ws, "mcq") >= 2
    });
    assert!(running, "the run ended before it could be interrupted");
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
    let q = query(uri, &exp, false, &[]);
    let children = children_by_ns(&q);
    assert_eq!(children["mcq"][0]["status"], "KILLED");
    let fp = session_fingerprint(&s);
    assert_eq!(parents(&q, &fp)[0]["status"], "KILLED");
    assert!(children["mcq"][0]["metrics"]["progress.done"].as_f64() < Some(30.0));

    tracked(ws.path(), uri, &exp)
        .args(["resume", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let q = query(uri, &exp, false, &[]);
    assert_eq!(runs_of(&q).len(), 2);
    assert!(runs_of(&q).iter().all(|r| r["status"] == "FINISHED"));
}

#[test]
fn a_config_value_over_the_tag_limit_becomes_an_artifact() {
    let uri = MlflowServer::shared();
    let exp = experiment("longparam");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            ..Opts::default()
        },
    );
    let long = "x".repeat(9000);
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    let text = text.replace(
        "[methods]",
        &format!("[providers.mock.headers]\nX-Long = \"{long}\"\n\n[methods]"),
    );
    std::fs::write(&cfg, text).expect("write");
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);
    let q = query(uri, &exp, true, &[]);
    let parent = &parents(&q, &fp)[0];
    let key = "config.providers.mock.headers.X-Long";
    let value = parent["tags"][key].as_str().expect("tag");
    assert!(value.starts_with("(too long for a tag"), "{value}");
    let art = &parent["artifacts"][format!("config/{key}.txt")];
    assert_eq!(art["size"], 9000);
    assert_eq!(
        art["sha256"].as_str(),
        Some(hex::encode(sha2::Sha256::digest(long.as_bytes())).as_str())
    );
    // Running again sets the same pointer value: nothing changes.
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
}

/// Resumes a session with tracking on, then checks that `w2c verify` agrees
/// with MLflow and that the Python client sees one parent and exactly one
/// FINISHED child per namespace of the session.
fn resume_online_and_check_every_namespace(ws: &Workspace, uri: &str, exp: &str) {
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);
    tracked(ws.path(), uri, exp)
        .args(["resume", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let out = tracked(ws.path(), uri, exp)
        .args(["verify", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["mode"], "online");
    assert_eq!(ids["synced"], true, "{ids}");
    let namespaces: Vec<String> = std::fs::read_dir(s.join("checkpoints"))
        .expect("checkpoints")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        namespaces.iter().any(|n| n == "llm_judge.target"),
        "{namespaces:?}"
    );
    let q = query(uri, exp, false, &[]);
    let parent = parents(&q, &fp);
    assert_eq!(parent.len(), 1);
    let children = children_by_ns(&q);
    assert_eq!(
        children
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        namespaces.iter().cloned().collect(),
        "one child run per namespace"
    );
    for (ns, runs) in &children {
        assert_eq!(runs.len(), 1, "{ns}: {runs:?}");
        assert_eq!(runs[0]["status"], "FINISHED", "{ns}");
        assert_eq!(runs[0]["parent"], parent[0]["run_id"], "{ns}");
        assert!(
            runs[0]["metrics"].get("accuracy").is_some() || ns.ends_with(".target"),
            "{ns}: {}",
            runs[0]["metrics"]
        );
    }
    assert_eq!(
        ids["child_run_ids"]
            .as_object()
            .expect("child ids")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .len(),
        namespaces.len()
    );
}

#[test]
fn a_finished_offline_session_resumed_with_tracking_is_complete_in_mlflow() {
    let uri = MlflowServer::shared();
    let exp = experiment("offline-resume");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(3),
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    tracked(ws.path(), uri, &exp)
        .args(["run", "--no-tracking", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    assert!(runs_of(&query(uri, &exp, false, &[])).is_empty());
    resume_online_and_check_every_namespace(&ws, uri, &exp);
}

#[test]
fn a_session_killed_offline_mid_way_and_resumed_with_tracking_is_complete_in_mlflow() {
    let uri = MlflowServer::shared();
    let exp = experiment("killed-offline-resume");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(6),
            latency_ms: 60,
            concurrency: 2,
            methods: "\"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    let mut child = spawn_run(&ws, &cfg);
    // Kill once the target stream is finished and the judge has started.
    let judged = |ws: &Workspace| {
        std::fs::read_dir(ws.runs().join("k/sessions"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("checkpoints/llm_judge/results.jsonl"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|t| t.lines().count() >= 1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !judged(&ws) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before the judge started"
        );
        assert!(std::time::Instant::now() < deadline, "judge never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let s = only_session(&ws.runs(), "k");
    assert!(s.join("checkpoints/llm_judge.target/_DONE.json").exists());
    assert!(!s.join("checkpoints/llm_judge/_DONE.json").exists());
    resume_online_and_check_every_namespace(&ws, uri, &exp);
}

#[test]
fn sync_uses_the_server_recorded_in_the_session() {
    let uri = MlflowServer::shared();
    let exp = experiment("stored-uri");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            ..Opts::default()
        },
    );
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);
    // No MLFLOW_TRACKING_URI: the server in mlflow_ids.json is used.
    let out = w2c(ws.path())
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("sync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(uri), "{stdout}");
    assert!(stdout.contains(&exp), "{stdout}");
    let q = query(uri, &exp, false, &[]);
    assert_eq!(parents(&q, &fp).len(), 1, "{:#?}", runs_of(&q));
    assert_eq!(runs_of(&q).len(), 2);
}

/// The same config under two run keys is one fingerprint twice: `sync`
/// takes each by its address (or a prefix under W2C_RUN_KEY), sends that
/// one alone, and MLflow holds one parent per run key.
#[test]
fn sync_takes_a_session_by_its_address_beside_the_same_config_under_another_run_key() {
    let uri = MlflowServer::shared();
    let exp = experiment("address");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            ..Opts::default()
        },
    );
    for key in ["pilot", "main"] {
        w2c(ws.path())
            .args(["run", "--run-key", key, "--config"])
            .arg(&cfg)
            .assert()
            .success();
    }
    let (pilot, main) = (
        only_session(&ws.runs(), "pilot"),
        only_session(&ws.runs(), "main"),
    );
    let fp = session_fingerprint(&main);
    let mode = |s: &Path| read_json(&s.join("mlflow_ids.json"))["mode"].clone();
    let sync = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = tracked(ws.path(), uri, &exp);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("sync");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = sync(&["sync", &format!("pilot/{}", &fp[..8])], &[]);
    assert!(
        said.contains(&format!("synced session pilot/{}", &fp[..16])),
        "{said}"
    );
    assert_eq!(
        (mode(&pilot), mode(&main)),
        ("online".into(), "offline".into())
    );
    let said = sync(&["sync", &fp[..8]], &[("W2C_RUN_KEY", "main")]);
    assert!(
        said.contains(&format!("synced session main/{}", &fp[..16])),
        "{said}"
    );
    assert_eq!(mode(&main), "online");
    let q = query(uri, &exp, false, &[]);
    let mut keys: Vec<Value> = parents(&q, &fp)
        .iter()
        .map(|r| r["tags"]["w2c.run_key"].clone())
        .collect();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(keys, ["main", "pilot"], "{:#?}", runs_of(&q));
}

#[test]
fn a_key_echoed_by_the_model_server_never_reaches_mlflow() {
    const KEY: &str = "sk-canary-mlflow-93ab71";
    let uri = MlflowServer::shared();
    let exp = experiment("echo");
    let server = MockServer::start(
        &["--echo-key", "--api-key-env", "SERVER_KEY"],
        &[("SERVER_KEY", "the-right-key-000")],
    );
    let ws = Workspace::new();
    let cfg = ws.http_config(
        "eval.toml",
        &Opts {
            n_per_label: Some(1),
            ..Opts::default()
        },
        &server.url,
        "api_key_env = \"MY_KEY\"",
    );
    let out = tracked_run(&ws, &cfg, uri, &exp)
        .env("MY_KEY", KEY)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
    let q = query(uri, &exp, false, &[]);
    let fp = session_fingerprint(&only_session(&ws.runs(), "k"));
    let parent = &parents(&q, &fp)[0];
    let error = parent["tags"]["w2c.error"].as_str().expect("w2c.error tag");
    assert!(error.contains("Bearer ***"), "{error}");
    assert!(!q.to_string().contains(KEY), "the key reached MLflow");
}

/// A session of four methods (a judge and a sweep among them), read back
/// with the Python client: one trace per example and repeat in the right
/// child run with the call log's tokens and the records' assessments; the
/// models on every run, in its tags and name; the dataset and the logged
/// model as inputs; the headline metrics on the parent equal to the
/// children's; every known count logged, 0 included; and `w2c verify`
/// checking the traces and finding one deleted.
#[test]
fn traces_models_data_and_headline_metrics_are_what_mlflow_shows() {
    let uri = MlflowServer::shared();
    let exp = experiment("traces");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            methods: "\"mcq\", \"llm_judge\", \"mcq_logprob\", \"stability_mcq\"".into(),
            ..Opts::default()
        },
    );
    let mut text = std::fs::read_to_string(&cfg).expect("cfg");
    text.push_str("\n[methods.stability]\nk = 2\ntemperatures = [0.7]\n");
    std::fs::write(&cfg, text).expect("write");
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], true, "{ids}");
    let dump = common::mlflow::traces(uri, &exp);
    let checked = common::mlflow::assert_traces_complete(&s, &dump);
    // 6 examples (the test file has no `direct` rows): mcq, the judge's
    // target stream and the judge (a trace each), mcq_logprob, and 2
    // repeats of the sweep.
    assert_eq!(checked, 6 * 6);

    let q = query(uri, &exp, false, &[]);
    let parent = &parents(&q, &fp)[0];
    let manifest = read_json(&s.join("manifest.json"));
    let sha = manifest["fingerprint_payload"]["dataset"]["sha256"]
        .as_str()
        .expect("sha");
    for run in runs_of(&q) {
        let name = run["run_name"].as_str().expect("name");
        assert_eq!(run["tags"]["w2c.target_model"], "mock-model", "{name}");
        assert!(name.contains("mock-model"), "{name}");
        if run["tags"]["w2c.method"] == "llm_judge" {
            assert_eq!(run["tags"]["w2c.judge_model"], "mock-judge");
            assert!(name.contains("mock-judge"), "{name}");
        }
        assert!(
            run["tags"]["mlflow.note.content"]
                .as_str()
                .is_some_and(|d| d.len() > 40),
            "{name}: no description"
        );
        let inputs = &dump["runs"][run["run_id"].as_str().expect("id")];
        assert_eq!(inputs["datasets"][0]["digest"], &sha[..32], "{name}");
        assert!(inputs["datasets"][0]["profile"]
            .as_str()
            .is_some_and(|p| p.contains(sha)));
        assert_eq!(inputs["models"].as_array().map(Vec::len), Some(1), "{name}");
    }
    assert_eq!(dump["models"].as_array().map(Vec::len), Some(1));
    assert_eq!(dump["models"][0]["name"], "mock-model");

    // Headline metrics on the parent, equal to the children's.
    let children = children_by_ns(&q);
    for (ns, child_key, parent_key) in [
        ("mcq", "accuracy", "mcq.accuracy"),
        ("llm_judge", "macro_f1_all", "llm_judge.macro_f1_all"),
        // A judge under NVIDIA's protocol heads with the paper's
        // LLM-as-judge columns; every method has the MC table's.
        (
            "llm_judge",
            "official_judge.paper.f1",
            "llm_judge.judge_table_f1",
        ),
        (
            "llm_judge",
            "official_judge.paper.acc",
            "llm_judge.judge_table_acc",
        ),
        (
            "llm_judge",
            "official_judge.paper.tool_hall",
            "llm_judge.judge_table_tool_hall",
        ),
        (
            "llm_judge",
            "official_judge.n_aggregated",
            "llm_judge.judge_table_n",
        ),
        ("mcq", "macro_f1_official", "mcq.macro_f1_official"),
        ("mcq_logprob", "paper.acc_norm", "mcq_logprob.acc_norm"),
        (
            "stability_mcq_k=2_T=0.7",
            "stability.stability_at_k",
            "stability_mcq_k_2_T_0.7.stability_at_k",
        ),
    ] {
        let child = &children[ns][0]["metrics"][child_key];
        assert!(child.is_number(), "{ns}: {child_key}");
        assert_eq!(&parent["metrics"][parent_key], child, "{parent_key}");
    }
    // Every known count is logged, zeros included.
    let mcq = &children["mcq"][0]["metrics"];
    for key in [
        "counts.exact",
        "counts.ambiguous",
        "counts.empty",
        "audit.by_severity.info",
        "audit.by_severity.warning",
        "audit.by_type.implausible_usage",
    ] {
        assert!(mcq[key].is_number(), "mcq: {key} missing");
    }
    assert_eq!(mcq["audit.by_type.implausible_usage"].as_f64(), Some(0.0));
    assert!(children["llm_judge"][0]["metrics"]["counts.invalid"].is_number());

    // verify checks the traces, and a deleted one is a finding.
    let verify = |ws: &Workspace| {
        tracked(ws.path(), uri, &exp)
            .args(["verify", &fp[..8], "--runs-dir"])
            .arg(ws.runs())
            .output()
            .expect("verify")
    };
    let out = verify(&ws);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let mcq_run = ids["child_run_ids"]["mcq"].as_str().expect("mcq");
    let victim = dump["runs"][mcq_run]["traces"][0]["trace_id"]
        .as_str()
        .expect("trace")
        .to_string();
    let experiment_id = ids["experiment_id"].as_str().expect("exp id");
    python(
        uri,
        &format!("c.delete_traces({experiment_id:?}, trace_ids=[{victim:?}])"),
    );
    let out = tracked(ws.path(), uri, &exp)
        .args(["verify", &fp[..8], "--deep", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(
        stdout.contains("traces") && stdout.contains(&victim),
        "{stdout}"
    );
    // `w2c sync` sends it again.
    tracked(ws.path(), uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let out = verify(&ws);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn traces_can_be_switched_off() {
    let uri = MlflowServer::shared();
    let exp = experiment("no-traces");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(1),
            ..Opts::default()
        },
    );
    let text = std::fs::read_to_string(&cfg).expect("cfg") + "\n[tracking]\ntraces = false\n";
    std::fs::write(&cfg, text).expect("write");
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let dump = common::mlflow::traces(uri, &exp);
    let runs = dump["runs"].as_object().expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .values()
        .all(|r| r["traces"].as_array().is_some_and(Vec::is_empty)));
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("mlflow_traces.jsonl").exists());
    let fp = session_fingerprint(&s);
    let out = tracked(ws.path(), uri, &exp)
        .args(["verify", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

#[test]
fn traces_not_sent_by_the_end_of_a_run_are_pending_until_sync() {
    let uri = MlflowServer::shared();
    let exp = experiment("trace-deadline");
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &Opts::default());
    // No wait at all for traces: the run ends as soon as its records are in.
    let out = tracked_run(&ws, &cfg, uri, &exp)
        .env("W2C_TRACKING_TRACE_WAIT_SECS", "0")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let s = only_session(&ws.runs(), "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    // The end of a tracked run prints where its parent run is.
    let parent = ids["parent_run_id"].as_str().expect("parent");
    let url = format!(
        "{}/#/experiments/{}/runs/{parent}",
        uri.trim_end_matches('/'),
        ids["experiment_id"].as_str().expect("experiment")
    );
    assert!(stdout.contains(&format!("mlflow: {url}")), "{stdout}");
    let show = tracked(ws.path(), uri, &exp)
        .args(["show", &session_fingerprint(&s)[..8], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("show");
    assert!(String::from_utf8_lossy(&show.stdout).contains(&url));
    // Traces still to send are listed as pending, never silently dropped.
    let pending: Vec<String> = ids["pending"]
        .as_array()
        .expect("pending")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    let fp = session_fingerprint(&s);
    if ids["synced"] == false {
        assert!(
            pending.iter().any(|p| p.starts_with("traces: ")),
            "{pending:?}"
        );
        // Traces not sent yet are pending, not a mismatch: verify says so
        // with its own exit code.
        let out = tracked(ws.path(), uri, &exp)
            .args(["verify", &fp[..8], "--runs-dir"])
            .arg(ws.runs())
            .output()
            .expect("verify");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(7), "{text}");
        assert!(text.contains("PENDING"), "{text}");
        assert!(
            !text.contains("MISMATCH") && !text.contains("MISSING"),
            "{text}"
        );
        let status = tracked(ws.path(), uri, &exp)
            .args(["status", "--runs-dir"])
            .arg(ws.runs())
            .output()
            .expect("status");
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(text.contains("traces pending"), "{text}");
        // A resume of the finished session sends them, as sync would.
        tracked(ws.path(), uri, &exp)
            .args(["resume", &fp[..8], "--runs-dir"])
            .arg(ws.runs())
            .assert()
            .success();
        let ids = read_json(&s.join("mlflow_ids.json"));
        assert_eq!(ids["synced"], true, "{ids}");
    }
    // `w2c sync` after it changes nothing: every trace is there, once.
    tracked(ws.path(), uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let dump = common::mlflow::traces(uri, &exp);
    assert!(common::mlflow::assert_traces_complete(&s, &dump) > 0);
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], true, "{ids}");
}

#[test]
fn a_comparison_is_filed_on_each_tracked_parent() {
    let uri = MlflowServer::shared();
    let exp = experiment("compare");
    let ws = Workspace::new();
    let mut sessions = Vec::new();
    for model in ["acme-small", "acme-large"] {
        let cfg = ws.config(
            &format!("{model}.toml"),
            &Opts {
                model: model.into(),
                ..Opts::default()
            },
        );
        tracked_run(&ws, &cfg, uri, &exp).assert().success();
        let s = std::fs::read_dir(ws.runs().join("k/sessions"))
            .expect("sessions")
            .flatten()
            .map(|e| e.path())
            .find(|s| {
                read_json(&s.join("manifest.json"))["fingerprint_payload"]["target"]["model"]
                    == model
            })
            .expect("session");
        sessions.push(s);
    }
    let fps: Vec<String> = sessions.iter().map(|s| session_fingerprint(s)).collect();
    // Both sessions in sync first (a loaded server can leave a run's end
    // pending), so the comparison's effect on the sync state shows.
    for fp in &fps {
        tracked(ws.path(), uri, &exp)
            .args(["sync", &fp[..8], "--runs-dir"])
            .arg(ws.runs())
            .assert()
            .success();
    }
    let ids_before: Vec<Value> = sessions
        .iter()
        .map(|s| read_json(&s.join("mlflow_ids.json")))
        .collect();
    let out = tracked(ws.path(), uri, &exp)
        .args(["compare", &fps[0][..8], &fps[1][..8], "--format", "json"])
        .args(["--resamples", "200", "--mlflow", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("compare");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let q = query(uri, &exp, true, &[]);
    let mut tags: Vec<&str> = fps.iter().map(|f| &f[..8]).collect();
    tags.sort_unstable();
    let tag = tags.join("-");
    for (s, fp) in sessions.iter().zip(&fps) {
        let parent = &parents(&q, fp)[0];
        assert_eq!(parent["tags"]["w2c.compare"], tag.as_str());
        for name in ["compare.json", "compare.md", "compare.html"] {
            assert!(
                parent["artifacts"]
                    .as_object()
                    .expect("artifacts")
                    .contains_key(&format!("compare/{tag}/{name}")),
                "{name}: {}",
                parent["artifacts"]
            );
        }
        // The metrics are the comparison's, seen from this model.
        let model = read_json(&s.join("manifest.json"))["fingerprint_payload"]["target"]["model"]
            .as_str()
            .expect("model")
            .to_string();
        let pair = &json["methods"][0]["pairs"][0];
        let sign = if pair["a"] == model.as_str() {
            1.0
        } else {
            -1.0
        };
        let other = if sign > 0.0 { &pair["b"] } else { &pair["a"] };
        let key = format!(
            "compare.mcq.vs.{}.delta_accuracy",
            other.as_str().expect("model")
        );
        let want = sign * pair["differences"][0][1]["value"].as_f64().expect("delta");
        let got = parent["metrics"][&key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {}", parent["metrics"]));
        assert!((got - want).abs() < 1e-12, "{key}: {got} vs {want}");
        assert_eq!(
            parent["metrics"]
                ["compare.mcq.vs.".to_string() + other.as_str().unwrap() + ".mcnemar_p"],
            pair["mcnemar_p"]
        );
        // Per gold label: McNemar's p of the first label.
        let label = &json["methods"][0]["by_label"][0];
        let key = format!(
            "compare.mcq.vs.{}.{}.mcnemar_p",
            other.as_str().unwrap(),
            label["gold"].as_str().unwrap()
        );
        assert_eq!(
            parent["metrics"][&key], label["pairs"][0]["mcnemar_p"],
            "{key}"
        );
        // Agreement between this session's methods, when it has several.
        for a in json["agreement"].as_array().expect("agreement") {
            if a["model"] != model.as_str() || a["kind"] != "cohen" {
                continue;
            }
            let key = format!(
                "agreement.{}.vs.{}.cohen_kappa",
                a["a"].as_str().unwrap(),
                a["b"].as_str().unwrap()
            );
            assert_eq!(parent["metrics"][&key], a["kappa"]["kappa"], "{key}");
        }
    }
    // A comparison is not part of a session: each stays as synced as it
    // was (it was: nothing pending), and verifies.
    for ((s, before), fp) in sessions.iter().zip(&ids_before).zip(&fps) {
        assert_eq!(before["synced"], true, "{before}");
        let ids = read_json(&s.join("mlflow_ids.json"));
        assert_eq!(
            (&ids["synced"], &ids["pending"]),
            (&before["synced"], &before["pending"]),
            "{ids}"
        );
        let verify = tracked(ws.path(), uri, &exp)
            .args(["verify", &fp[..8], "--runs-dir"])
            .arg(ws.runs())
            .output()
            .expect("verify");
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    let status = tracked(ws.path(), uri, &exp)
        .args(["status", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.contains("not synced"), "{status}");
}

#[test]
fn a_trace_request_the_server_holds_never_holds_up_the_end_of_a_run() {
    let uri = MlflowServer::shared();
    // Both requests of a batch of traces (their infos, then their spans)
    // are held: whichever the run has under way when it ends is held.
    let proxy =
        common::holding_proxy::HoldingProxy::start(uri, &["/api/3.0/mlflow/traces", "/v1/traces"]);
    let exp = experiment("trace-held");
    let ws = Workspace::new();
    // About 3 s of evaluation: trace batches start while it runs, and the
    // server never answers them.
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            latency_ms: 100,
            concurrency: 1,
            ..Opts::default()
        },
    );
    let start = std::time::Instant::now();
    let out = tracked_run(&ws, &cfg, &proxy.url, &exp)
        // Long enough that the end surely starts a batch (the default, 3%
        // of a 3 s run, may be over before a loaded machine starts one);
        // far below the 15 s bound the old code waited out.
        .env("W2C_TRACKING_TRACE_WAIT_SECS", "2")
        .output()
        .expect("run");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(proxy.held() >= 1, "no trace request was held: {stderr}");
    // The records went first: statuses and metrics are in MLflow, only
    // traces are pending, and the run did not wait out the tracking bound.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}: {stderr}");
    let s = only_session(&ws.runs(), "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    let pending = ids["pending"].as_array().expect("pending").clone();
    assert!(
        !pending.is_empty()
            && pending
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.starts_with("traces: "))),
        "{ids}"
    );
    let q = query(uri, &exp, false, &[]);
    let fp = session_fingerprint(&s);
    assert_eq!(parents(&q, &fp)[0]["status"], "FINISHED");
    assert_eq!(children_by_ns(&q)["mcq"][0]["status"], "FINISHED");
    assert!(children_by_ns(&q)["mcq"][0]["metrics"]["accuracy"].is_number());
    // Once the server answers, `w2c sync` sends every trace, once.
    proxy.release();
    tracked(ws.path(), &proxy.url, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    let dump = common::mlflow::traces(uri, &exp);
    assert!(common::mlflow::assert_traces_complete(&s, &dump) > 0);
    assert_eq!(read_json(&s.join("mlflow_ids.json"))["synced"], true);
}

#[test]
fn an_artifact_store_w2c_cannot_write_fails_the_artifacts_alone_with_the_real_cause() {
    // A common server command: runs get a local artifact root, which only
    // a client on the server's disk could write; w2c sends artifacts
    // through the proxy only. Metrics, traces and statuses must not suffer.
    let art = tempfile::tempdir().expect("tempdir");
    let art_root = art.path().display().to_string();
    let server = MlflowServer::start_with(&["--default-artifact-root", &art_root], &[]);
    let uri = server.url.clone();
    let exp = experiment("local-artifact-root");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(2),
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    // No wait for traces: `w2c sync` is what must send them.
    let out = tracked_run(&ws, &cfg, &uri, &exp)
        .env("W2C_TRACKING_TRACE_WAIT_SECS", "0")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    for wrong in ["--no-serve-artifacts", "once the server is reachable"] {
        assert!(!stderr.contains(wrong), "{stderr}");
    }
    assert!(stderr.contains(&art_root), "{stderr}");
    assert!(stderr.contains("--artifacts-destination"), "{stderr}");
    let s = only_session(&ws.runs(), "k");
    let fp = session_fingerprint(&s);

    let out = tracked(ws.path(), &uri, &exp)
        .args(["sync", &fp[..8], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("sync");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The artifacts are not sent and sync says so, naming each with the
    // real cause ...
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for ns in ["mcq", "llm_judge", "llm_judge.target"] {
        assert!(
            stderr.contains(&format!("not sent: {ns} artifacts: ")),
            "{ns}: {stderr}"
        );
    }
    assert!(!stderr.contains("--no-serve-artifacts"), "{stderr}");
    // ... with progress lines as it goes ...
    assert!(stderr.contains("trace(s) sent"), "{stderr}");
    // ... and everything else is in MLflow: every trace, the final
    // metrics, the statuses.
    let dump = common::mlflow::traces(&uri, &exp);
    assert_eq!(common::mlflow::assert_traces_complete(&s, &dump), 3 * 6);
    let q = query(&uri, &exp, false, &[]);
    let children = children_by_ns(&q);
    for ns in ["mcq", "llm_judge"] {
        assert_eq!(children[ns][0]["status"], "FINISHED", "{ns}");
        assert!(children[ns][0]["metrics"]["accuracy"].is_number(), "{ns}");
    }
    assert_eq!(parents(&q, &fp)[0]["status"], "FINISHED");
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], false, "{ids}");
    let pending = ids["pending"].as_array().expect("pending");
    assert!(
        pending
            .iter()
            .all(|p| p.as_str().is_some_and(|p| p.contains("artifacts"))),
        "{ids}"
    );
}

#[test]
fn trace_examples_problems_sends_only_the_examples_worth_a_look() {
    let uri = MlflowServer::shared();
    let exp = experiment("trace-problems");
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(3),
            methods: TWO_METHODS.into(),
            ..Opts::default()
        },
    );
    let text = std::fs::read_to_string(&cfg).expect("cfg")
        + "\n[tracking]\ntrace_examples = \"problems\"\n";
    std::fs::write(&cfg, text).expect("write");
    tracked_run(&ws, &cfg, uri, &exp).assert().success();
    let s = only_session(&ws.runs(), "k");
    let ids = read_json(&s.join("mlflow_ids.json"));
    assert_eq!(ids["synced"], true, "{ids}");
    let problems = |ns: &str| -> std::collections::BTreeSet<String> {
        read_jsonl(&s.join("checkpoints").join(ns).join("results.jsonl"))
            .into_iter()
            .filter(|r| {
                r["prediction"] != r["gold"]
                    || r["audit"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|e| e["severity"] == "warning" || e["severity"] == "error")
                    })
            })
            .map(|r| r["key"].as_str().expect("key").to_string())
            .collect()
    };
    let dump = common::mlflow::traces(uri, &exp);
    let keys_of = |ns: &str| -> std::collections::BTreeSet<String> {
        let run = ids["child_run_ids"][ns].as_str().expect("run");
        dump["runs"][run]["traces"]
            .as_array()
            .expect("traces")
            .iter()
            .map(|t| t["tags"]["w2c.key"].as_str().expect("key").to_string())
            .collect()
    };
    let judged = problems("llm_judge");
    assert_eq!(keys_of("mcq"), problems("mcq"));
    assert_eq!(keys_of("llm_judge"), judged);
    // A target answer is traced when its verdict is a problem.
    assert_eq!(keys_of("llm_judge.target"), judged);
    let all = read_jsonl(&s.join("checkpoints/mcq/results.jsonl")).len();
    assert!(
        problems("mcq").len() < all,
        "the mock gets some right: the selection must leave some out"
    );
    // verify expects exactly the chosen traces.
    let fp = session_fingerprint(&s);
    let out = tracked(ws.path(), uri, &exp)
        .args(["verify", &fp[..8], "--deep", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}
