//! `w2c verify` against a real MLflow server: an untouched tracked session
//! verifies clean (with `--deep`), and each kind of tampering, local or
//! remote, is detected and named.

mod common;

use common::mlflow::{experiment, python, MlflowServer};
use common::*;
use serde_json::Value;
use std::path::PathBuf;

struct Tracked {
    ws: Workspace,
    session: PathBuf,
    fp: String,
    uri: String,
    ids: Value,
}

fn tracked_session(name: &str) -> Tracked {
    let uri = MlflowServer::shared().to_string();
    let exp = experiment(name);
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(3),
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env("MLFLOW_TRACKING_URI", &uri)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .assert()
        .success();
    let session = only_session(&ws.runs(), "k");
    let fp = read_json(&session.join("manifest.json"))["fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    // The run waits a bounded time for its last traces (3% of the run,
    // 10-60 s); on a loaded machine some may be left pending, and `w2c
    // sync` sends them, as a user does after the end-of-run note.
    w2c(ws.path())
        .args(["sync", &fp[..12], "--run-key", "k"])
        .env("MLFLOW_TRACKING_URI", &uri)
        .assert()
        .success();
    let ids = read_json(&session.join("mlflow_ids.json"));
    Tracked {
        ws,
        session,
        fp,
        uri,
        ids,
    }
}

/// `w2c verify --json [extra]`: exit code and checks. The server comes from
/// mlflow_ids.json (MLflow variables are cleared by `w2c()`).
fn verify(t: &Tracked, extra: &[&str]) -> (i32, Vec<Value>) {
    let out = w2c(t.ws.path())
        .args(["verify", &t.fp[..10], "--json", "--runs-dir"])
        .arg(t.ws.runs())
        .args(extra)
        .output()
        .expect("verify");
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), checks)
}

fn failing(checks: &[Value]) -> Vec<&Value> {
    checks
        .iter()
        .filter(|c| c["status"] != "OK" && c["status"] != "NOT_CHECKED")
        .collect()
}

fn has(checks: &[Value], ns: &str, check: &str, status: &str, detail: &str) -> bool {
    checks.iter().any(|c| {
        c["namespace"] == ns
            && c["check"] == check
            && c["status"] == status
            && c["detail"].as_str().is_some_and(|d| d.contains(detail))
    })
}

fn child(t: &Tracked, ns: &str) -> String {
    t.ids["child_run_ids"][ns]
        .as_str()
        .expect("child id")
        .to_string()
}

#[test]
fn an_untouched_tracked_session_verifies_clean_deeply() {
    let t = tracked_session("clean");
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 0, "{:#?}", failing(&checks));
    for (ns, check) in [
        ("-", "parent run"),
        ("-", "run status"),
        ("mcq", "child run"),
        ("mcq", "run status"),
        ("mcq", "metrics"),
        ("mcq", "artifacts present"),
        ("mcq", "artifact sha256"),
        ("mcq", "remote extras"),
        ("llm_judge", "metrics"),
        ("llm_judge.target", "artifact sha256"),
    ] {
        assert!(
            has(&checks, ns, check, "OK", ""),
            "{ns} {check}: {checks:#?}"
        );
    }
    assert!(!checks.iter().any(|c| c["check"] == "tracking"));
}

#[test]
fn an_edited_prediction_is_caught_locally_and_against_mlflow() {
    let t = tracked_session("edit");
    let p = t.session.join("artifacts_local/mcq/predictions.jsonl");
    let text = std::fs::read_to_string(&p).expect("read");
    let first = text.lines().next().expect("line").to_string();
    let v: Value = serde_json::from_str(&first).expect("json");
    let pred = v["prediction"].as_str().expect("prediction").to_string();
    let other = if pred == "tool_call" {
        "cannot_answer"
    } else {
        "tool_call"
    };
    let edited = first.replace(
        &format!("\"prediction\":\"{pred}\""),
        &format!("\"prediction\":\"{other}\""),
    );
    assert_ne!(edited, first);
    std::fs::write(&p, text.replacen(&first, &edited, 1)).expect("write");
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 5);
    assert!(has(
        &checks,
        "mcq",
        "file predictions.jsonl",
        "MISMATCH",
        "_DONE.json"
    ));
    assert!(has(&checks, "mcq", "metrics recompute", "MISMATCH", ""));
    let remote = has(
        &checks,
        "mcq",
        "artifact sizes",
        "MISMATCH",
        "predictions.jsonl",
    ) || has(
        &checks,
        "mcq",
        "artifact sha256",
        "MISMATCH",
        "predictions.jsonl",
    );
    assert!(remote, "{:#?}", failing(&checks));
}

#[test]
fn a_deleted_remote_artifact_and_a_remote_extra_are_named() {
    let t = tracked_session("delart");
    let exp_id = t.ids["experiment_id"].as_str().expect("exp");
    let run = child(&t, "mcq");
    let url = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run}/artifacts/metrics.json",
        t.uri
    );
    let (status, body) = http(&url, "DELETE");
    assert_eq!(status, 200, "DELETE {url}: {body}");
    python(
        &t.uri,
        &format!("c.log_text({run:?}, 'not from w2c', 'notes/extra.txt')"),
    );
    let (code, checks) = verify(&t, &[]);
    assert_eq!(code, 5);
    assert!(
        has(
            &checks,
            "mcq",
            "artifacts present",
            "MISSING",
            "metrics.json"
        ),
        "{:#?}",
        failing(&checks)
    );
    assert!(has(
        &checks,
        "mcq",
        "remote extras",
        "MISMATCH",
        "notes/extra.txt"
    ));
    // The local record itself is intact.
    assert!(!checks.iter().any(
        |c| c["check"].as_str().is_some_and(|s| s.starts_with("file ")) && c["status"] != "OK"
    ));

    // `w2c sync` repairs what is missing remotely.
    w2c(t.ws.path())
        .args(["sync", &t.fp[..10], "--runs-dir"])
        .arg(t.ws.runs())
        .env("MLFLOW_TRACKING_URI", &t.uri)
        .env(
            "MLFLOW_EXPERIMENT_NAME",
            t.ids["experiment_name"].as_str().expect("exp"),
        )
        .assert()
        .success();
    let (_, checks) = verify(&t, &[]);
    assert!(has(&checks, "mcq", "artifacts present", "OK", ""));
}

#[test]
fn a_changed_remote_metric_is_named_with_both_values() {
    let t = tracked_session("metric");
    let run = child(&t, "llm_judge");
    python(
        &t.uri,
        &format!("c.log_metric({run:?}, 'accuracy', 0.987654)"),
    );
    let (code, checks) = verify(&t, &[]);
    assert_eq!(code, 5);
    assert!(
        has(
            &checks,
            "llm_judge",
            "metrics",
            "MISMATCH",
            "accuracy: local"
        ),
        "{:#?}",
        failing(&checks)
    );
    assert!(has(
        &checks,
        "llm_judge",
        "metrics",
        "MISMATCH",
        "MLflow 0.987654"
    ));
}

#[test]
fn a_deleted_done_marker_disagrees_with_the_finished_run() {
    let t = tracked_session("done");
    std::fs::remove_file(t.session.join("checkpoints/mcq/_DONE.json")).expect("rm");
    let (code, checks) = verify(&t, &[]);
    assert_eq!(code, 5);
    assert!(has(
        &checks,
        "mcq",
        "_DONE.json",
        "MISSING",
        "not marked done"
    ));
    assert!(
        has(
            &checks,
            "mcq",
            "run status",
            "MISMATCH",
            "MLflow says FINISHED"
        ),
        "{:#?}",
        failing(&checks)
    );
    assert!(has(&checks, "-", "run status", "MISMATCH", "FINISHED"));
}

#[test]
fn a_corrupted_checkpoint_line_is_named() {
    let t = tracked_session("corrupt");
    let p = t.session.join("checkpoints/mcq/results.jsonl");
    let text = std::fs::read_to_string(&p).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"key\": broken";
    std::fs::write(&p, lines.join("\n") + "\n").expect("write");
    let (code, checks) = verify(&t, &[]);
    assert_eq!(code, 5);
    assert!(
        has(
            &checks,
            "mcq",
            "checkpoint lines",
            "MISMATCH",
            "results.jsonl"
        ),
        "{:#?}",
        failing(&checks)
    );
    assert!(has(&checks, "mcq", "file results.jsonl", "MISMATCH", ""));
}

#[test]
fn a_deleted_parent_run_is_named() {
    let t = tracked_session("parent");
    let parent = t.ids["parent_run_id"].as_str().expect("parent").to_string();
    python(&t.uri, &format!("c.delete_run({parent:?})"));
    let (code, checks) = verify(&t, &[]);
    assert_eq!(code, 5);
    assert!(
        has(&checks, "-", "parent run", "MISMATCH", "deleted"),
        "{:#?}",
        failing(&checks)
    );
}

#[test]
fn an_unreachable_server_is_cannot_check_not_mismatch() {
    let t = tracked_session("down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = w2c(t.ws.path())
        .args(["verify", &t.fp[..10], "--json", "--runs-dir"])
        .arg(t.ws.runs())
        .env("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{port}"))
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(6));
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(has(&checks, "-", "parent run", "CANNOT_CHECK", ""));
    // The local checks still ran and passed.
    assert!(has(&checks, "mcq", "metrics recompute", "OK", ""));
    // --local-only skips MLflow entirely.
    let out = w2c(t.ws.path())
        .args(["verify", &t.fp[..10], "--local-only", "--runs-dir"])
        .arg(t.ws.runs())
        .env("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(0));
}

/// Sends `body` with `method` to the MLflow REST API at `uri` (`path`
/// under `/api/`, e.g. `2.0/mlflow/runs/set-tag`); the reply as JSON.
fn rest(uri: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "-X", method])
        .arg(format!("{}/api/{path}", uri.trim_end_matches('/')));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d"])
            .arg(b.to_string());
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{method} {path}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// POSTs `body` to `/api/2.0/mlflow/<path>`.
fn rest_post(uri: &str, path: &str, body: &Value) {
    rest(uri, "POST", &format!("2.0/mlflow/{path}"), Some(body));
}

#[test]
fn an_edited_headline_metric_and_identity_tag_of_the_parent_are_named() {
    let t = tracked_session("headline");
    let parent = t.ids["parent_run_id"].as_str().expect("parent").to_string();
    let metrics = read_json(&t.session.join("artifacts_local/mcq/metrics.json"));
    let acc = metrics["metrics"]["accuracy"]
        .as_f64()
        .or_else(|| metrics["accuracy"].as_f64())
        .expect("mcq accuracy");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    rest_post(
        &t.uri,
        "runs/log-metric",
        &serde_json::json!({"run_id": parent, "key": "mcq.accuracy",
            "value": acc + 0.25, "timestamp": now, "step": 0}),
    );
    let judge_f1 = "llm_judge.judge_table_f1";
    rest_post(
        &t.uri,
        "runs/log-metric",
        &serde_json::json!({"run_id": parent, "key": judge_f1,
            "value": 0.123, "timestamp": now, "step": 0}),
    );
    rest_post(
        &t.uri,
        "runs/set-tag",
        &serde_json::json!({"run_id": parent, "key": "w2c.target_model", "value": "someone-else"}),
    );
    let mcq = child(&t, "mcq");
    rest_post(
        &t.uri,
        "runs/set-tag",
        &serde_json::json!({"run_id": mcq, "key": "w2c.settings_hash", "value": "0000"}),
    );
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 5, "{:#?}", failing(&checks));
    let want = format!("mcq.accuracy: local {acc}, MLflow {}", acc + 0.25);
    assert!(
        has(&checks, "-", "headline metrics", "MISMATCH", &want),
        "{want}: {:#?}",
        failing(&checks)
    );
    assert!(has(
        &checks,
        "-",
        "headline metrics",
        "MISMATCH",
        &format!("{judge_f1}: local")
    ));
    assert!(
        has(
            &checks,
            "-",
            "parent run",
            "MISMATCH",
            "tag w2c.target_model is \"someone-else\" in MLflow, expected"
        ),
        "{:#?}",
        failing(&checks)
    );
    assert!(has(
        &checks,
        "mcq",
        "child run",
        "MISMATCH",
        "tag w2c.settings_hash is \"0000\" in MLflow"
    ));
}

#[test]
fn an_edited_trace_assessment_is_flagged_by_verify_and_repaired_by_sync() {
    let t = tracked_session("assessment");
    let run = child(&t, "mcq");
    let exp_id = t.ids["experiment_id"].as_str().expect("experiment id");
    let found = rest(
        &t.uri,
        "POST",
        "3.0/mlflow/traces/search",
        Some(&serde_json::json!({
            "locations": [{"type": "MLFLOW_EXPERIMENT",
                           "mlflow_experiment": {"experiment_id": exp_id}}],
            "filter": format!("metadata.`mlflow.sourceRun` = '{run}'"),
            "max_results": 1,
        })),
    );
    let trace = found["traces"][0]["trace_id"]
        .as_str()
        .expect("a trace")
        .to_string();
    let info = rest(&t.uri, "GET", &format!("3.0/mlflow/traces/{trace}"), None);
    let assessments = info["trace"]["trace_info"]["assessments"]
        .as_array()
        .expect("assessments")
        .clone();
    let edited = assessments
        .iter()
        .find(|a| a.get("feedback").is_some())
        .expect("a feedback assessment");
    let name = edited["assessment_name"]
        .as_str()
        .expect("name")
        .to_string();
    let id = edited["assessment_id"].as_str().expect("id");
    rest(
        &t.uri,
        "PATCH",
        &format!("3.0/mlflow/traces/{trace}/assessments/{id}"),
        Some(&serde_json::json!({
            "assessment": {"feedback": {"value": "edited by hand"}},
            "update_mask": "feedback",
        })),
    );
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 5, "{:#?}", failing(&checks));
    assert!(
        has(
            &checks,
            "mcq",
            "trace assessments",
            "MISMATCH",
            &format!("{name}=\"edited by hand\"")
        ),
        "{:#?}",
        failing(&checks)
    );
    let out = w2c(t.ws.path())
        .args(["sync", &t.fp[..10], "--runs-dir"])
        .arg(t.ws.runs())
        .output()
        .expect("sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 0, "{:#?}", failing(&checks));
    assert!(has(&checks, "mcq", "trace assessments", "OK", ""));
    // Repaired, not duplicated: the trace holds as many assessments as
    // before the edit.
    let info = rest(&t.uri, "GET", &format!("3.0/mlflow/traces/{trace}"), None);
    let after = info["trace"]["trace_info"]["assessments"]
        .as_array()
        .map(Vec::len);
    assert_eq!(after, Some(assessments.len()));
}

/// A session that audited dataset rows (`tool_not_a_definition`) sends its
/// own `audit_fallbacks.jsonl` to the parent run beside `manifest.json`, and
/// `verify` checks that copy against the local file.
#[test]
fn the_sessions_own_audit_events_reach_the_parent_run_and_are_verified() {
    let uri = MlflowServer::shared().to_string();
    let exp = experiment("session-audit");
    let ws = Workspace::new();
    let text = std::fs::read_to_string(shared_dataset()).expect("dataset");
    let mut lines: Vec<String> = text.lines().take(4).map(str::to_string).collect();
    let mut bad: Value = serde_json::from_str(&lines[2]).expect("row");
    bad["tools"] = serde_json::json!(["not json"]);
    lines[2] = bad.to_string();
    let data = ws.write("odd_tools.jsonl", &(lines.join("\n") + "\n"));
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            dataset: data,
            n_per_label: None,
            ..Opts::default()
        },
    );
    w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env("MLFLOW_TRACKING_URI", &uri)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .assert()
        .success();
    let session = only_session(&ws.runs(), "k");
    let audit = session.join("audit_fallbacks.jsonl");
    assert_eq!(read_jsonl(&audit).len(), 1);
    let t = Tracked {
        fp: read_json(&session.join("manifest.json"))["fingerprint"]
            .as_str()
            .expect("fp")
            .to_string(),
        ids: read_json(&session.join("mlflow_ids.json")),
        session,
        uri,
        ws,
    };
    let parent = t.ids["parent_run_id"].as_str().expect("parent").to_string();
    let listed = python(
        &t.uri,
        &format!("print([f.path for f in c.list_artifacts({parent:?})])"),
    );
    assert!(listed.contains("audit_fallbacks.jsonl"), "{listed}");
    let (code, checks) = verify(&t, &["--deep"]);
    assert_eq!(code, 0, "{:?}", failing(&checks));
    // The local file loses its event: MLflow's copy no longer matches.
    std::fs::write(&audit, "").expect("truncate");
    let (code, checks) = verify(&t, &[]);
    assert_ne!(code, 0);
    assert!(
        checks.iter().any(|c| c["status"] == "MISMATCH"
            && c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("audit_fallbacks.jsonl"))),
        "{:?}",
        failing(&checks)
    );
}
