//! Session directories written by an earlier w2c (before the store/runner
//! redesign) still verify, resume to the end and verify again, and their
//! finished namespaces are left exactly as they were.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sessions_v0")
}

/// Copies fixture run key `key` into `ws`'s runs dir, points its manifest at
/// `dataset`, and returns the session directory and its fingerprint.
fn install(ws: &Workspace, key: &str, dataset: &Path) -> (PathBuf, String) {
    let src = fixtures().join(key);
    let dst = ws.runs().join(key);
    copy_dir(&src, &dst);
    let session = std::fs::read_dir(dst.join("sessions"))
        .expect("sessions")
        .next()
        .expect("one session")
        .expect("entry")
        .path();
    let manifest_path = session.join("manifest.json");
    let mut manifest = read_json(&manifest_path);
    manifest["config"]["dataset"]["path"] = Value::String(dataset.display().to_string());
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");
    let fp = manifest["fingerprint"].as_str().expect("fp").to_string();
    (session, fp)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read fixture") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// sha256 of every file under the artifacts and checkpoints of `namespaces`.
fn digests(session: &Path, namespaces: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for dir in ["checkpoints", "artifacts_local"] {
            let d = session.join(dir).join(ns);
            for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = e.expect("entry").path();
                let bytes = std::fs::read(&p).expect("read");
                out.insert(
                    p.strip_prefix(session)
                        .expect("prefix")
                        .display()
                        .to_string(),
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                );
            }
        }
    }
    out
}

fn verify(ws: &Workspace, fp: &str) -> std::process::Output {
    w2c(ws.path())
        .args(["verify", &fp[..12], "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify")
}

#[test]
fn an_interrupted_session_from_before_the_redesign_verifies_resumes_and_verifies() {
    let ws = Workspace::new();
    let (session, fp) = install(&ws, "legacy", &sample_dataset());
    let out = verify(&ws, &fp);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let finished = [
        "mcq",
        "llm_judge.target",
        "llm_judge",
        "mcq_logprob",
        "stability_mcq_k=2_T=0.7",
        "stability_llm_judge_k=2_T=0.7.target",
    ];
    let before = digests(&session, &finished);
    let judged_before =
        read_jsonl(&session.join("checkpoints/stability_llm_judge_k=2_T=0.7/results.jsonl"));
    assert_eq!(
        judged_before.len(),
        3,
        "the fixture was interrupted mid-judge"
    );

    let out = w2c(ws.path())
        .args(["resume", &fp[..12], "--no-tracking", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("3 of 8 items were already done"),
        "{stderr}"
    );
    // Its stored config names no judge protocol: it keeps w2c's prompts,
    // and says so where it judges.
    assert!(
        stderr.contains("created before judge protocols"),
        "{stderr}"
    );

    // Finished namespaces are untouched, byte for byte.
    let mut after = digests(&session, &finished);
    // A resume appends its process to each run log it touched.
    after.retain(|k, _| !k.ends_with("run_log.jsonl"));
    let mut before = before;
    before.retain(|k, _| !k.ends_with("run_log.jsonl"));
    assert_eq!(before, after);
    // The only namespace added is mcq_logprob's: its scoring changed since
    // the fixture was written (issue 10: exact token alignment, scoring
    // version 2), so its settings hash differs and the old scores stay as
    // they were beside the new ones.
    let added: Vec<String> = std::fs::read_dir(session.join("checkpoints"))
        .expect("checkpoints")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !finished.contains(&n.as_str()) && n != "stability_llm_judge_k=2_T=0.7")
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(added[0].starts_with("mcq_logprob~"), "{added:?}");
    let old = read_json(&session.join("checkpoints/mcq_logprob/method_settings.json"));
    let new = read_json(
        &session
            .join("checkpoints")
            .join(&added[0])
            .join("method_settings.json"),
    );
    assert_eq!(old["settings"]["scoring_version"], 1);
    assert_ne!(new["settings"]["scoring_version"], 1);
    assert!(session
        .join("checkpoints")
        .join(&added[0])
        .join("_DONE.json")
        .exists());
    // The judgements stored before the redesign were kept, not redone.
    let judged =
        read_jsonl(&session.join("checkpoints/stability_llm_judge_k=2_T=0.7/results.jsonl"));
    assert_eq!(judged.len(), 8);
    assert_eq!(judged[..3], judged_before[..]);
    let m = read_json(&session.join("artifacts_local/stability_llm_judge_k=2_T=0.7/metrics.json"));
    assert_eq!(m["stability"]["k"], 2);

    let out = verify(&ws, &fp);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = w2c(ws.path())
        .args(["report", &fp[..12], "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_session_with_a_selection_refused_today_still_resumes_with_a_notice() {
    let ws = Workspace::new();
    let dataset = fixtures().join("short_dataset.jsonl");
    let (_, fp) = install(&ws, "short", &dataset);
    let out = w2c(ws.path())
        .args(["resume", &fp[..12], "--no-tracking", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("notice:") && stderr.contains("dataset.n_per_label"),
        "{stderr}"
    );
    let out = verify(&ws, &fp);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A new session with the same selection is refused.
    let cfg = ws.config(
        "new.toml",
        &Opts {
            dataset,
            n_per_label: Some(3),
            ..Opts::default()
        },
    );
    w2c(ws.path())
        .args(["run", "--run-key", "fresh", "--config"])
        .arg(&cfg)
        .assert()
        .code(1);
}
