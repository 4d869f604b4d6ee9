//! `w2c compare`: every interval, difference and p-value equals an
//! independent computation in Python (random.Random draws, scikit-learn's
//! F1, scipy's binomial test, Holm by hand); sessions over different
//! examples are refused unless the intersection is asked for; the
//! disagreement list equals a recount from predictions.jsonl.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs one mock model over the shared file; returns its session dir.
fn session(ws: &Workspace, model: &str, n_per_label: usize, subsample_seed: u64) -> PathBuf {
    let cfg = ws.config(
        &format!("{model}-{n_per_label}-{subsample_seed}.toml"),
        &Opts {
            model: model.into(),
            n_per_label: Some(n_per_label),
            subsample_seed,
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    let out = run_ok(ws, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(" session ") && l.contains(" at "))
        .unwrap_or_else(|| panic!("{stderr}"));
    PathBuf::from(line.rsplit(" at ").next().unwrap().trim())
}

fn fp(session: &Path) -> String {
    session.file_name().unwrap().to_string_lossy().into_owned()
}

fn compare_json(ws: &Workspace, sessions: &[&Path], extra: &[&str]) -> Value {
    let out = w2c(ws.path())
        .arg("compare")
        .args(sessions.iter().map(|s| fp(s)))
        .args([
            "--format",
            "json",
            "--resamples",
            "200",
            "--seed",
            "7",
            "--runs-dir",
        ])
        .arg(ws.runs())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reference(labels: &[&str], sessions: &[&Path], ns: &str) -> Value {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(support("compare_reference.py")).args(["7", "200"]);
    for (label, s) in labels.iter().zip(sessions) {
        cmd.arg(format!(
            "{label}={}",
            s.join("artifacts_local")
                .join(ns)
                .join("predictions.jsonl")
                .display()
        ));
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "compare_reference.py (needs scipy and scikit-learn: `pip install -r requirements-test.txt`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{what}: {a}"));
    assert!((a - b).abs() < 1e-12, "{what}: w2c {a}, reference {b}");
}

/// Every model metric and pair difference of `method` against the reference.
fn check_method(method: &Value, reference: &Value) {
    let ns = method["method"].as_str().unwrap();
    for m in method["models"].as_array().unwrap() {
        let label = m["model"].as_str().unwrap();
        let want = &reference["models"][label];
        for pair in m["metrics"].as_array().unwrap() {
            let name = pair[0].as_str().unwrap();
            let Some(w) = want.get(name) else { continue };
            let i = &pair[1];
            for (k, key) in ["value", "lo", "hi"].iter().enumerate() {
                close(
                    &i[key],
                    w[k].as_f64().unwrap(),
                    &format!("{ns} {label} {name} {key}"),
                );
            }
        }
    }
    let pairs = method["pairs"].as_array().unwrap();
    let want_pairs = reference["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), want_pairs.len());
    for (p, w) in pairs.iter().zip(want_pairs) {
        assert_eq!((&p["a"], &p["b"]), (&w["a"], &w["b"]));
        assert_eq!((&p["only_a"], &p["only_b"]), (&w["only_a"], &w["only_b"]));
        close(
            &p["mcnemar_p"],
            w["mcnemar_p"].as_f64().unwrap(),
            "McNemar p",
        );
        close(
            &p["adjusted_p"],
            w["adjusted_p"].as_f64().unwrap(),
            "Holm p",
        );
        for d in p["differences"].as_array().unwrap() {
            let name = d[0].as_str().unwrap();
            let Some(wd) = w["differences"].get(name) else {
                continue;
            };
            for (k, key) in ["value", "lo", "hi"].iter().enumerate() {
                close(
                    &d[1][key],
                    wd[k].as_f64().unwrap(),
                    &format!("{ns} Δ {name} {key}"),
                );
            }
        }
    }
}

#[test]
fn intervals_differences_and_tests_equal_an_independent_computation() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 10, 11);
    let b = session(&ws, "acme-large", 10, 11);
    let c = session(&ws, "acme-xl", 10, 11);
    // Two models, then three (Holm's adjustment over three pairs).
    for sessions in [vec![a.as_path(), b.as_path()], vec![&a, &b, &c]] {
        let labels: Vec<&str> = ["acme-small", "acme-large", "acme-xl"][..sessions.len()].to_vec();
        let got = compare_json(&ws, &sessions, &[]);
        let methods = got["methods"].as_array().unwrap();
        assert_eq!(methods.len(), 2, "{got}");
        for method in methods {
            let ns = method["method"].as_str().unwrap();
            assert_eq!(method["n_examples"], 30);
            check_method(method, &reference(&labels, &sessions, ns));
        }
    }
}

#[test]
fn different_examples_are_refused_unless_the_intersection_is_asked_for() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 10, 11);
    let b = session(&ws, "acme-large", 12, 11);
    let out = w2c(ws.path())
        .args(["compare", &fp(&a), &fp(&b), "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not evaluate the same examples")
            && err.contains("acme-large has 36 examples (6 not in every session")
            && err.contains("--intersection"),
        "{err}"
    );
    let got = compare_json(&ws, &[&a, &b], &["--intersection"]);
    let shared: usize = got["methods"][0]["n_examples"].as_u64().unwrap() as usize;
    assert_eq!(shared, 30);
    assert!(got["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("compared on the 30 examples")));
}

#[test]
fn the_disagreement_list_equals_a_recount_from_the_predictions() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 10, 11);
    let b = session(&ws, "acme-large", 10, 11);
    let file = ws.path().join("diff.jsonl");
    w2c(ws.path())
        .args(["compare", &fp(&a), &fp(&b), "--disagreements"])
        .arg(&file)
        .arg("--runs-dir")
        .arg(ws.runs())
        .assert()
        .success();
    let listed = read_jsonl(&file);
    for ns in ["mcq", "llm_judge"] {
        let preds = |s: &Path| -> BTreeMap<String, Value> {
            read_jsonl(&s.join("artifacts_local").join(ns).join("predictions.jsonl"))
                .into_iter()
                .map(|r| (r["uuid"].as_str().unwrap().to_string(), r))
                .collect()
        };
        let (pa, pb) = (preds(&a), preds(&b));
        let mut expected: Vec<&String> = pa
            .keys()
            .filter(|u| pa[*u]["prediction"] != pb[*u]["prediction"])
            .collect();
        expected.sort();
        let mut got: Vec<String> = listed
            .iter()
            .filter(|d| d["method"] == ns)
            .map(|d| d["uuid"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{ns}");
        // Each entry carries the question, the tools and both answers.
        for d in listed.iter().filter(|d| d["method"] == ns) {
            let u = d["uuid"].as_str().unwrap();
            assert!(d["question"].as_str().is_some_and(|q| !q.is_empty()));
            assert_eq!(d["gold"], pa[u]["gold"]);
            assert_eq!(d["models"][0]["prediction"], pa[u]["prediction"]);
            assert_eq!(d["models"][1]["prediction"], pb[u]["prediction"]);
            assert_eq!(
                d["tools"].as_array().unwrap().len() as u64,
                pa[u]["n_tools"].as_u64().unwrap()
            );
        }
    }
}
