//! `w2c verify` (local checks): an untouched session verifies clean; each
//! tampering is detected and named.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn verify(ws: &Workspace, fp: &str) -> (i32, Vec<Value>) {
    let out = w2c(ws.path())
        .args(["verify", fp, "--json", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), checks)
}

fn failing(checks: &[Value]) -> Vec<(String, String, String)> {
    checks
        .iter()
        .filter(|c| c["status"] == "MISMATCH" || c["status"] == "MISSING")
        .map(|c| {
            (
                c["namespace"].as_str().unwrap().to_string(),
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fresh() -> (Workspace, std::path::PathBuf, String) {
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    (ws, s, fp)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn untouched_session_verifies_clean_and_says_tracking_was_not_checked() {
    let (ws, _s, fp) = fresh();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 0, "{:?}", failing(&checks));
    assert!(checks
        .iter()
        .any(|c| c["check"] == "tracking" && c["status"] == "NOT_CHECKED"));
    assert!(checks.iter().any(|c| c["namespace"] == "mcq"
        && c["check"] == "metrics recompute"
        && c["status"] == "OK"));
}

#[test]
fn edited_prediction_is_detected() {
    let (ws, s, fp) = fresh();
    let p = s.join("artifacts_local/mcq/predictions.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let gold = first["gold"].as_str().unwrap();
    let flipped = if first["prediction"] == gold {
        "invalid"
    } else {
        gold
    };
    let line = text.lines().next().unwrap();
    let new_line = line.replacen(
        &format!(
            "\"prediction\":\"{}\"",
            first["prediction"].as_str().unwrap()
        ),
        &format!("\"prediction\":\"{flipped}\""),
        1,
    );
    std::fs::write(&p, text.replacen(line, &new_line, 1)).unwrap();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 5);
    let f = failing(&checks);
    assert!(
        f.contains(&("mcq".into(), "metrics recompute".into(), "MISMATCH".into())),
        "{f:?}"
    );
    assert!(
        f.contains(&(
            "mcq".into(),
            "file predictions.jsonl".into(),
            "MISMATCH".into()
        )),
        "{f:?}"
    );
}

#[test]
fn deleted_done_marker_is_detected() {
    let (ws, s, fp) = fresh();
    std::fs::remove_file(s.join("checkpoints/llm_judge/_DONE.json")).unwrap();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 5);
    assert_eq!(
        failing(&checks),
        vec![("llm_judge".into(), "_DONE.json".into(), "MISSING".into())]
    );
}

#[test]
fn corrupted_checkpoint_line_is_detected() {
    let (ws, s, fp) = fresh();
    let p = s.join("checkpoints/mcq/results.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let second = text.lines().nth(1).unwrap();
    std::fs::write(&p, text.replacen(second, &second[..second.len() / 2], 1)).unwrap();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 5);
    let f = failing(&checks);
    assert!(
        f.contains(&("mcq".into(), "checkpoint lines".into(), "MISMATCH".into())),
        "{f:?}"
    );
    assert!(
        f.contains(&("mcq".into(), "file results.jsonl".into(), "MISMATCH".into())),
        "{f:?}"
    );
    let line = checks
        .iter()
        .find(|c| c["check"] == "checkpoint lines" && c["status"] == "MISMATCH")
        .unwrap();
    assert!(
        line["detail"].as_str().unwrap().contains("results.jsonl:2"),
        "{line}"
    );
}

#[test]
fn edited_manifest_and_missing_artifact_are_detected() {
    let (ws, s, fp) = fresh();
    std::fs::remove_file(s.join("artifacts_local/llm_judge/per_class.csv")).unwrap();
    edit(
        &s.join("checkpoints/mcq/_DONE.json"),
        "\"n_items\": 30",
        "\"n_items\": 31",
    );
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 5);
    let f = failing(&checks);
    assert!(
        f.contains(&(
            "llm_judge".into(),
            "file per_class.csv".into(),
            "MISSING".into()
        )),
        "{f:?}"
    );
    assert!(
        f.contains(&("mcq".into(), "result count".into(), "MISMATCH".into())),
        "{f:?}"
    );
    let manifest = s.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    let canonical = m["fingerprint_canonical"].as_str().unwrap();
    let tampered = canonical.replacen("\"seed\":42", "\"seed\":43", 1);
    assert_ne!(canonical, tampered);
    let mut m2 = m.clone();
    m2["fingerprint_canonical"] = Value::String(tampered);
    std::fs::write(&manifest, serde_json::to_string_pretty(&m2).unwrap()).unwrap();
    let (_, checks) = verify(&ws, &fp);
    assert!(failing(&checks).contains(&(
        "-".into(),
        "manifest fingerprint".into(),
        "MISMATCH".into()
    )));
}

/// `w2c verify` over a session after `damage`: exit code and failing checks.
fn after(damage: impl FnOnce(&Path), args: &[&str]) -> (i32, Vec<(String, String, String)>) {
    let (ws, s, fp) = fresh();
    damage(&s);
    let mut cmd = w2c(ws.path());
    cmd.arg("verify");
    if args.is_empty() {
        cmd.arg(&fp[..8]);
    } else {
        cmd.args(args);
    }
    let out = cmd
        .args(["--json", "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), failing(&checks))
}

#[test]
fn deleted_results_are_reported_missing_never_passed() {
    let planned = ["mcq", "llm_judge.target", "llm_judge"];
    // Every result deleted: each namespace the manifest records is missing.
    let (code, bad) = after(
        |s| {
            std::fs::remove_dir_all(s.join("checkpoints")).unwrap();
            std::fs::remove_dir_all(s.join("artifacts_local")).unwrap();
        },
        &[],
    );
    assert_eq!(code, 5, "{bad:?}");
    for ns in planned {
        assert!(
            bad.contains(&(ns.into(), "namespace".into(), "MISSING".into())),
            "{ns}: {bad:?}"
        );
    }
    // One namespace directory removed.
    let (code, bad) = after(
        |s| std::fs::remove_dir_all(s.join("checkpoints/llm_judge")).unwrap(),
        &[],
    );
    assert_eq!(code, 5);
    assert_eq!(
        bad,
        [("llm_judge".into(), "namespace".into(), "MISSING".into())]
    );
    // `_DONE.json` removed, results kept.
    let (code, bad) = after(
        |s| std::fs::remove_file(s.join("checkpoints/mcq/_DONE.json")).unwrap(),
        &[],
    );
    assert_eq!(code, 5);
    assert_eq!(bad, [("mcq".into(), "_DONE.json".into(), "MISSING".into())]);
    // `_DONE.json` and half the results removed: the metrics written just
    // before the marker give it away.
    let (code, bad) = after(
        |s| {
            std::fs::remove_file(s.join("checkpoints/mcq/_DONE.json")).unwrap();
            let p = s.join("checkpoints/mcq/results.jsonl");
            let text = std::fs::read_to_string(&p).unwrap();
            let half: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, half).unwrap();
        },
        &[],
    );
    assert_eq!(code, 5);
    assert_eq!(bad, [("mcq".into(), "_DONE.json".into(), "MISSING".into())]);
    // results.jsonl truncated below what `_DONE.json` counts.
    let (code, bad) = after(
        |s| {
            let p = s.join("checkpoints/mcq/results.jsonl");
            let text = std::fs::read_to_string(&p).unwrap();
            let fewer: String = text.lines().skip(3).map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, fewer).unwrap();
        },
        &[],
    );
    assert_eq!(code, 5);
    assert!(
        bad.contains(&("mcq".into(), "result count".into(), "MISMATCH".into())),
        "{bad:?}"
    );
    // The tracking record removed.
    let (code, bad) = after(
        |s| std::fs::remove_file(s.join("mlflow_ids.json")).unwrap(),
        &[],
    );
    assert_eq!(code, 5);
    assert_eq!(
        bad,
        [("-".into(), "tracking record".into(), "MISSING".into())]
    );
}

#[test]
fn an_unreadable_manifest_is_a_finding_for_every_command() {
    let garbage = |s: &Path| std::fs::write(s.join("manifest.json"), "{not json").unwrap();
    let (code, bad) = after(garbage, &[]);
    assert_eq!(code, 5, "{bad:?}");
    assert_eq!(bad, [("-".into(), "manifest".into(), "MISMATCH".into())]);
    let (code, bad) = after(garbage, &["--all"]);
    assert_eq!(code, 5);
    assert_eq!(bad.len(), 1, "{bad:?}");
    let (code, bad) = after(
        |s| std::fs::remove_file(s.join("manifest.json")).unwrap(),
        &["--all"],
    );
    assert_eq!(code, 5);
    assert_eq!(bad, [("-".into(), "manifest".into(), "MISSING".into())]);

    // `status` and `ls` show it instead of hiding it.
    let (ws, s, _) = fresh();
    garbage(&s);
    for cmd in ["status", "ls"] {
        let out = w2c(ws.path())
            .args([cmd, "--runs-dir"])
            .arg(ws.runs())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("UNREADABLE"), "{cmd}: {text}");
    }
}

#[test]
fn verify_without_a_session_is_a_usage_error() {
    let ws = Workspace::new();
    let out = w2c(ws.path()).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_table_leads_with_a_summary_and_shows_only_what_is_not_ok() {
    let (ws, s, fp) = fresh();
    let p = s.join("artifacts_local/mcq/predictions.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let first = text.lines().next().unwrap();
    let row: Value = serde_json::from_str(first).unwrap();
    let other = if row["prediction"] == "tool_call" {
        "cannot_answer"
    } else {
        "tool_call"
    };
    edit(
        &p,
        &format!("\"prediction\":{}", row["prediction"]),
        &format!("\"prediction\":\"{other}\""),
    );
    let run = |verbose: bool| {
        let mut cmd = w2c(ws.path());
        cmd.args(["verify", &fp[..8], "--local-only", "--runs-dir"])
            .arg(ws.runs());
        if verbose {
            cmd.arg("--verbose");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(5));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = run(false);
    let summary = short.lines().next().unwrap();
    assert!(
        summary.starts_with("verify: 1 session, ") && summary.contains(" MISMATCH"),
        "{short}"
    );
    // A check's line ends with its status; its detail follows, indented.
    let ok_rows = |t: &str| t.lines().filter(|l| l.ends_with("  OK")).count();
    assert_eq!(ok_rows(&short), 0, "{short}");
    assert!(short.lines().any(|l| l.ends_with("  MISMATCH")), "{short}");
    assert!(short.lines().all(|l| l.chars().count() <= 120), "{short}");
    // The differences read as values, not as Rust debug output.
    assert!(!short.contains("Some("), "{short}");
    let long = run(true);
    assert!(ok_rows(&long) > 10, "{long}");
}

#[test]
fn an_edited_official_judgement_is_detected() {
    let (ws, s, fp) = fresh();
    let p = s.join("artifacts_local/llm_judge/predictions.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    // A row's official classification changed, its prediction kept: the
    // headline metrics still recompute, NVIDIA's aggregate does not.
    let (i, row) = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i, serde_json::from_str::<Value>(l).unwrap()))
        .find(|(_, r)| r["official"]["outcome"] == "classified")
        .expect("a row with an official classification");
    let class = row["official"]["classification"].as_str().unwrap();
    let other = if class == "cannot_answer" {
        "tool_call"
    } else {
        "cannot_answer"
    };
    let mut edited = row.clone();
    edited["official"]["classification"] = other.into();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(j, l)| {
            if j == i {
                edited.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 5);
    let recompute = checks
        .iter()
        .find(|c| c["namespace"] == "llm_judge" && c["check"] == "metrics recompute")
        .expect("the llm_judge recompute");
    assert_eq!(recompute["status"], "MISMATCH", "{recompute}");
    let detail = recompute["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("official_judge.categories.") && detail.contains("response_distribution"),
        "{detail}"
    );
    // An untouched session's official aggregate recomputes.
    let (ws, _s, fp) = fresh();
    let (code, checks) = verify(&ws, &fp);
    assert_eq!(code, 0, "{:?}", failing(&checks));
}
