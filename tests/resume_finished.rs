//! Resuming a finished session: nothing to do means nothing written (every
//! file keeps its inode, mtime and bytes), while changed inputs are still
//! refused, and a process that does work records it in `updated_at`.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every file of a session: relative path → (inode, mtime in ns, sha256).
/// `.lock` is left out: it holds the PID of the process holding the lock.
fn snapshot(session: &Path) -> BTreeMap<String, (u64, i128, String)> {
    walkdir::WalkDir::new(session)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file() && e.file_name() != ".lock")
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            let sha = hex::encode(Sha256::digest(std::fs::read(e.path()).expect("read")));
            let rel = e.path().strip_prefix(session).unwrap();
            (rel.display().to_string(), (meta.ino(), mtime, sha))
        })
        .collect()
}

fn resume(ws: &Workspace, fp: &str) -> std::process::Output {
    w2c(ws.path())
        .args(["resume", fp, "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap()
}

fn finished_session(ws: &Workspace, opts: &Opts) -> (std::path::PathBuf, String) {
    let cfg = ws.config("eval.toml", opts);
    run_ok(ws, &cfg);
    let s = session_dir(ws).expect("a session");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    (s, fp)
}

#[test]
fn resuming_a_finished_session_rewrites_no_file() {
    let ws = Workspace::new();
    let opts = Opts {
        methods: "\"mcq\", \"llm_judge\"".into(),
        ..Opts::default()
    };
    let (s, fp) = finished_session(&ws, &opts);
    let before = snapshot(&s);
    assert!(before.contains_key("manifest.json"));
    assert!(before.contains_key("mlflow_ids.json"));
    assert!(before.contains_key("checkpoints/llm_judge.target/results.jsonl"));
    for _ in 0..2 {
        let out = resume(&ws, &fp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("accuracy"), "{stdout}");
        let after = snapshot(&s);
        let changed: std::collections::BTreeSet<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        assert!(
            changed.is_empty(),
            "resume of a finished session touched {changed:?}"
        );
    }
}

#[test]
fn resuming_a_finished_session_still_refuses_changed_inputs() {
    let ws = Workspace::new();
    let (s, fp) = finished_session(&ws, &Opts::default());
    let manifest_path = s.join("manifest.json");
    let original = std::fs::read(&manifest_path).unwrap();
    for (pointer, value, named) in [
        (
            "/config/dataset/n_per_label",
            Value::from(9),
            "dataset.n_per_label",
        ),
        (
            "/config/dataset/subsample_seed",
            Value::from(12),
            "dataset.subsample_seed",
        ),
        ("/config/run/seed", Value::from(43), "seed"),
        (
            "/config/models/target",
            Value::from("other-model"),
            "target.model",
        ),
    ] {
        let mut m: Value = serde_json::from_slice(&original).unwrap();
        *m.pointer_mut(pointer).expect(pointer) = value;
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let out = resume(&ws, &fp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{pointer}: {stderr}");
        assert!(stderr.contains("refusing to resume"), "{stderr}");
        assert!(stderr.contains(named), "{pointer}: {stderr}");
    }
    std::fs::write(&manifest_path, &original).unwrap();
    let out = resume(&ws, &fp);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn work_on_a_session_is_recorded_in_updated_at_and_no_work_is_not() {
    let ws = Workspace::new();
    let (s, fp) = finished_session(&ws, &Opts::default());
    let manifest_path = s.join("manifest.json");
    let mut m = read_json(&manifest_path);
    m["updated_at"] = Value::from("2000-01-01T00:00:00Z");
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    let out = resume(&ws, &fp);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        read_json(&manifest_path)["updated_at"],
        "2000-01-01T00:00:00Z"
    );

    // Another method in the same session is work: `updated_at` moves, and
    // nothing else of the manifest changes.
    let cfg = ws.config(
        "more.toml",
        &Opts {
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    run_ok(&ws, &cfg);
    let after = read_json(&manifest_path);
    assert_ne!(after["updated_at"], "2000-01-01T00:00:00Z");
    assert_eq!(after["created_at"], m["created_at"]);
    assert_eq!(after["example_ids"], m["example_ids"]);
    assert_eq!(after["fingerprint"], m["fingerprint"]);
    let status = w2c(ws.path())
        .args(["status", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains(after["updated_at"].as_str().unwrap()),
        "{stdout}"
    );
}
