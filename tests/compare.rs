//! `w2c compare`: every interval, difference and p-value equals an
//! independent computation in Python (random.Random draws, scikit-learn's
//! F1, scipy's binomial test, Holm by hand), for the multiple-choice
//! table's metrics and a judge's LLM-as-judge columns, at a resample count
//! whose percentile index ties; sessions over different examples are
//! refused unless the intersection is asked for, sessions that are not
//! comparable (dataset file, gold labels, method settings) unless
//! differences are allowed; the disagreement list equals a recount from
//! predictions.jsonl.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs one mock model over the shared file; returns its session dir.
fn session(ws: &Workspace, model: &str, n_per_label: usize, subsample_seed: u64) -> PathBuf {
    session_with(
        ws,
        &format!("{model}-{n_per_label}-{subsample_seed}"),
        &Opts {
            model: model.into(),
            n_per_label: Some(n_per_label),
            subsample_seed,
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
        |c| c,
    )
}

/// Runs the config of `o`, edited by `edit`, as `name`; returns its
/// session dir.
fn session_with(ws: &Workspace, name: &str, o: &Opts, edit: impl Fn(String) -> String) -> PathBuf {
    let cfg = ws.config(&format!("{name}.toml"), o);
    let text = edit(std::fs::read_to_string(&cfg).unwrap());
    std::fs::write(&cfg, text).unwrap();
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
    compare_json_drawn(ws, sessions, 200, extra)
}

fn compare_json_drawn(
    ws: &Workspace,
    sessions: &[&Path],
    resamples: usize,
    extra: &[&str],
) -> Value {
    let out = w2c(ws.path())
        .arg("compare")
        .args(sessions.iter().map(|s| fp(s)))
        .args(["--format", "json", "--resamples", &resamples.to_string()])
        .args(["--seed", "7", "--runs-dir"])
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

fn reference(labels: &[&str], sessions: &[&Path], ns: &str, resamples: usize) -> Value {
    reference_drawn(labels, sessions, ns, resamples, false)
}

/// The reference computation, `stratified` by gold label or not.
fn reference_drawn(
    labels: &[&str],
    sessions: &[&Path],
    ns: &str,
    resamples: usize,
    stratified: bool,
) -> Value {
    let mut cmd = std::process::Command::new("python3");
    let manifest = read_json(&sessions[0].join("manifest.json"));
    let dataset = manifest["config"]["dataset"]["path"].as_str().unwrap();
    cmd.arg(support("compare_reference.py"));
    if stratified {
        cmd.arg("--stratified");
    }
    cmd.args(["--dataset", dataset])
        .args(["7", &resamples.to_string()]);
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

/// Both undefined (null), or numbers within 1e-12.
fn same(a: &Value, b: &Value, what: &str) {
    match b.as_f64() {
        Some(b) => close(a, b, what),
        None => assert!(a.is_null(), "{what}: w2c {a}, reference {b}"),
    }
}

/// Every model metric and pair difference of `method` against the
/// reference: the same metrics (but w2c's AnswerHall and ParamHall), each
/// value and interval equal.
fn check_method(method: &Value, reference: &Value) {
    let ns = method["method"].as_str().unwrap();
    assert_eq!(method["n_examples"], reference["n"], "{ns}");
    for m in method["models"].as_array().unwrap() {
        let label = m["model"].as_str().unwrap();
        let want = &reference["models"][label];
        let mut names: Vec<&str> = m["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap())
            .collect();
        names.sort_unstable();
        let mut want_names: Vec<&str> = want
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        want_names.sort_unstable();
        assert_eq!(names, want_names, "{ns}: the metrics compared");
        for pair in m["metrics"].as_array().unwrap() {
            let name = pair[0].as_str().unwrap();
            let Some(w) = want.get(name) else { continue };
            for (k, key) in ["value", "lo", "hi", "se", "mc_error"].iter().enumerate() {
                same(&pair[1][key], &w[k], &format!("{ns} {label} {name} {key}"));
            }
        }
        // Accuracy's SE clustered by source_id (statsmodels' OLS).
        same(
            &m["accuracy_clustered_se"],
            &reference["clustered_se"][label],
            &format!("{ns} {label} clustered SE"),
        );
        // Each rate's k/n, SE and Wilson interval (statsmodels).
        let rates = m["rates"].as_array().unwrap();
        let want_rates = reference["rates"][label].as_object().unwrap();
        assert_eq!(rates.len(), want_rates.len(), "{ns} {label} rates");
        for r in rates {
            let name = r[0].as_str().unwrap();
            let w = &want_rates[name];
            for (k, key) in ["k", "n", "value", "se", "lo", "hi"].iter().enumerate() {
                same(
                    &r[1][key],
                    &w[k],
                    &format!("{ns} {label} {name} rate {key}"),
                );
            }
        }
    }
    // Per gold label: accuracy (Wilson), paired Δ, McNemar, Holm over
    // every label and pair.
    let by_label = method["by_label"].as_array().unwrap();
    let want_labels = reference["by_label"].as_array().unwrap();
    assert_eq!(by_label.len(), want_labels.len(), "{ns} labels");
    for (l, w) in by_label.iter().zip(want_labels) {
        assert_eq!((&l["gold"], &l["n"]), (&w["gold"], &w["n"]), "{ns}");
        for m in l["models"].as_array().unwrap() {
            let want = &w["models"][m["model"].as_str().unwrap()];
            for (k, key) in ["k", "n", "value", "se", "lo", "hi"].iter().enumerate() {
                same(
                    &m["accuracy"][key],
                    &want[k],
                    &format!("{ns} {} {key}", l["gold"]),
                );
            }
        }
        for (p, wp) in l["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(w["pairs"].as_array().unwrap())
        {
            assert_eq!((&p["only_a"], &p["only_b"]), (&wp["only_a"], &wp["only_b"]));
            same(&p["mcnemar_p"], &wp["mcnemar_p"], "label McNemar p");
            same(&p["adjusted_p"], &wp["adjusted_p"], "label Holm p");
            for (k, key) in ["value", "lo", "hi", "se"].iter().enumerate() {
                same(
                    &p["difference"][key],
                    &wp["difference"][k],
                    &format!("{ns} {} Δ {key}", l["gold"]),
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
            for (k, key) in ["value", "lo", "hi", "se", "p", "mc_error"]
                .iter()
                .enumerate()
            {
                same(&d[1][key], &wd[k], &format!("{ns} Δ {name} {key}"));
            }
        }
        same(&p["mde"], &w["mde"], "MDE");
        same(
            &p["accuracy_clustered_se"],
            &w["clustered_se"],
            "Δ clustered SE",
        );
        // The other metrics' bootstrap p-values, Holm over every metric
        // and pair.
        let adjusted = p["adjusted_difference_p"].as_array().unwrap();
        let want_adjusted = w["adjusted_difference_p"].as_object().unwrap();
        assert_eq!(adjusted.len(), want_adjusted.len(), "{ns}");
        for a in adjusted {
            let name = a[0].as_str().unwrap();
            same(&a[1], &want_adjusted[name], &format!("{ns} {name} Holm p"));
        }
    }
}

#[test]
fn intervals_differences_and_tests_equal_an_independent_computation() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 10, 11);
    let b = session(&ws, "acme-large", 10, 11);
    let c = session(&ws, "acme-xl", 10, 11);
    // 150 examples: enough distinct values that the 3rd and 4th smallest
    // of 101 resamples differ.
    let d = session(&ws, "acme-small", 50, 11);
    let e = session(&ws, "acme-large", 50, 11);
    // Two models, then three (Holm's adjustment over three pairs), 200
    // resamples; and 101, where 0.025 × 100 = 2.5 and 0.975 × 100 = 97.5
    // tie (Python's round takes 2 and 98, half to even).
    // And a bootstrap stratified by gold label.
    for (sessions, resamples, stratified) in [
        (vec![a.as_path(), b.as_path()], 200, false),
        (vec![&a, &b, &c], 200, false),
        (vec![&d, &e], 101, false),
        (vec![&a, &b], 200, true),
    ] {
        let labels: Vec<&str> = ["acme-small", "acme-large", "acme-xl"][..sessions.len()].to_vec();
        let extra: &[&str] = if stratified {
            &["--stratify-by-gold"]
        } else {
            &[]
        };
        let got = compare_json_drawn(&ws, &sessions, resamples, extra);
        let methods = got["methods"].as_array().unwrap();
        assert_eq!(methods.len(), 2, "{got}");
        for method in methods {
            let ns = method["method"].as_str().unwrap();
            // The judge is compared on the paper's LLM-as-judge columns.
            let table = if ns == "llm_judge" {
                "llm_judge"
            } else {
                "multiple_choice"
            };
            assert_eq!(method["table"], table, "{ns}");
            assert_eq!(method["stratified"], stratified);
            check_method(
                method,
                &reference_drawn(&labels, &sessions, ns, resamples, stratified),
            );
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

/// `w2c compare` of `sessions` with `extra` arguments.
fn compare_out(ws: &Workspace, sessions: &[&Path], extra: &[&str]) -> std::process::Output {
    w2c(ws.path())
        .arg("compare")
        .args(sessions.iter().map(|s| fp(s)))
        .args(["--resamples", "100", "--runs-dir"])
        .arg(ws.runs())
        .args(extra)
        .output()
        .unwrap()
}

/// Refused by default, naming every difference in `want`; compared with
/// `--allow-differences`, every format saying what differs.
fn refused_then_compared_saying_so(ws: &Workspace, sessions: &[&Path], want: &[&str]) {
    let out = compare_out(ws, sessions, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the sessions are not comparable") && err.contains("--allow-differences"),
        "{err}"
    );
    for w in want {
        assert!(err.contains(w), "{w}\n{err}");
    }
    for format in ["text", "md", "html", "json"] {
        let out = compare_out(ws, sessions, &["--allow-differences", "--format", format]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let text = if format == "html" {
            text.replace("&quot;", "\"").replace("&amp;", "&")
        } else {
            text.into_owned()
        };
        assert!(
            format == "json" || text.contains("compared although the sessions differ"),
            "{format}: {text}"
        );
        let text = if format == "json" {
            // Each difference: its method and what differs.
            let json: Value = serde_json::from_str(&text).unwrap();
            let differences = json["differences"].as_array().unwrap();
            assert_eq!(differences.len(), want.len(), "{json}");
            differences
                .iter()
                .map(|d| match d["method"].as_str() {
                    Some(m) => format!("{m}: {}", d["detail"].as_str().unwrap()),
                    None => d["detail"].as_str().unwrap().to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        for w in want {
            assert!(text.contains(w), "{format}: {w}\n{text}");
        }
    }
}

#[test]
fn other_method_settings_are_refused_unless_differences_are_allowed() {
    // Another judge model, another option order: the target model is
    // confounded with them.
    let ws = Workspace::new();
    let opts = |model: &str| Opts {
        model: model.into(),
        n_per_label: Some(5),
        methods: "\"mcq\", \"llm_judge\"".into(),
        ..Opts::default()
    };
    let a = session_with(&ws, "a", &opts("acme-small"), |c| c);
    let b = session_with(&ws, "b", &opts("acme-large"), |c| {
        c.replace("judge = \"mock-judge\"", "judge = \"other-judge\"")
            .replace("[methods.mcq]\n", "[methods.mcq]\norder = \"shuffled\"\n")
    });
    refused_then_compared_saying_so(
        &ws,
        &[&a, &b],
        &[
            "llm_judge: the method settings differ: judge_model: acme-small mock-judge, acme-large other-judge",
            "mcq: the method settings differ: order: acme-small fixed, acme-large shuffled",
        ],
    );
}

#[test]
fn another_dataset_file_or_gold_label_is_refused_unless_differences_are_allowed() {
    // The same examples, three gold labels changed: each model would be
    // scored against its own gold — not a paired test against either.
    let ws = Workspace::new();
    let original = std::fs::read_to_string(sample_dataset()).unwrap();
    let mut changed = Vec::new();
    let relabelled: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut row: Value = serde_json::from_str(line).unwrap();
            if i % 4 == 0 && row["correct_answer"] != "direct" {
                row["correct_answer"] = "direct".into();
                changed.push(row["uuid"].as_str().unwrap().to_string());
            }
            row.to_string()
        })
        .collect();
    assert!(!changed.is_empty());
    let copy = ws.write("relabelled.jsonl", &(relabelled.join("\n") + "\n"));
    let opts = |model: &str, dataset: PathBuf| Opts {
        model: model.into(),
        dataset,
        n_per_label: None,
        ..Opts::default()
    };
    let a = session_with(&ws, "a", &opts("acme-small", sample_dataset()), |c| c);
    let b = session_with(&ws, "b", &opts("acme-large", copy), |c| c);
    refused_then_compared_saying_so(
        &ws,
        &[&a, &b],
        &[
            "the sessions evaluated different dataset files: acme-small sha256 ",
            &format!(
                "mcq: {} shared examples have a different gold label",
                changed.len()
            ),
        ],
    );
}

#[test]
fn the_html_report_draws_the_comparison_as_compare_does() {
    // One default resample count, and the same options in both.
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 5, 11);
    let b = session(&ws, "acme-large", 5, 11);
    for extra in [&[][..], &["--resamples", "300", "--seed", "5"][..]] {
        let compare = w2c(ws.path())
            .args([
                "compare",
                &fp(&a),
                &fp(&b),
                "--format",
                "html",
                "--runs-dir",
            ])
            .arg(ws.runs())
            .args(extra)
            .output()
            .unwrap();
        assert!(compare.status.success());
        let page = String::from_utf8_lossy(&compare.stdout);
        // The tables and verdicts: from the first method's heading on.
        let start = page.find("<h3>").expect("a method");
        let end = page.rfind("</body>").unwrap();
        let sections = &page[start..end];
        let report = w2c(ws.path())
            .args(["report", &fp(&a), &fp(&b), "--format", "html", "--runs-dir"])
            .arg(ws.runs())
            .args(extra)
            .output()
            .unwrap();
        assert!(report.status.success());
        let html = String::from_utf8_lossy(&report.stdout);
        assert!(
            html.contains(sections),
            "{extra:?}: the report's comparison differs from compare's:\n{sections}"
        );
    }
}

#[test]
fn the_same_session_twice_is_refused() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 5, 11);
    // By fingerprint, and by fingerprint then directory.
    for second in [fp(&a), a.display().to_string()] {
        let out = w2c(ws.path())
            .args(["compare", &fp(&a), &second, "--runs-dir"])
            .arg(ws.runs())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{second}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is named twice (arguments 1 and 2)")
                && err.contains("compared with itself"),
            "{err}"
        );
    }
}

#[test]
fn a_tiny_comparison_is_called_uninformative_in_every_format() {
    // Two models on one example where they disagree: the old output was
    // "Δ +100.0% [+100.0%, +100.0%] *" beside McNemar p = 1.000.
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 5, 11);
    let b = session(&ws, "acme-large", 5, 11);
    let file = ws.path().join("diff.jsonl");
    w2c(ws.path())
        .args([
            "compare",
            &fp(&a),
            &fp(&b),
            "--method",
            "mcq",
            "--disagreements",
        ])
        .arg(&file)
        .arg("--runs-dir")
        .arg(ws.runs())
        .assert()
        .success();
    let uuid = read_jsonl(&file)
        .into_iter()
        .find(|d| d["models"][0]["correct"] != d["models"][1]["correct"])
        .expect("an example only one model gets right")["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let line = std::fs::read_to_string(shared_dataset())
        .unwrap()
        .lines()
        .find(|l| l.contains(&uuid))
        .unwrap()
        .to_string();
    let one = ws.write("one.jsonl", &(line + "\n"));
    let opts = |model: &str| Opts {
        model: model.into(),
        dataset: one.clone(),
        n_per_label: None,
        ..Opts::default()
    };
    let a1 = session_with(&ws, "a1", &opts("acme-small"), |c| c);
    let b1 = session_with(&ws, "b1", &opts("acme-large"), |c| c);
    let json = compare_json(&ws, &[&a1, &b1], &[]);
    let m = &json["methods"][0];
    assert_eq!(m["n_examples"], 1);
    assert!(
        m["uninformative"]
            .as_str()
            .is_some_and(|s| s.contains("1 example compared")),
        "{m}"
    );
    let p = &m["pairs"][0];
    assert_eq!(
        p["only_a"].as_u64().unwrap() + p["only_b"].as_u64().unwrap(),
        1
    );
    assert_eq!(p["significant"], false);
    assert!(p["uninformative"].as_str().is_some(), "{p}");
    // Every number at n = 1 still equals the independent computation.
    let mcq = compare_json(&ws, &[&a1, &b1], &["--method", "mcq"]);
    check_method(
        &mcq["methods"][0],
        &reference(&["acme-small", "acme-large"], &[&a1, &b1], "mcq", 200),
    );
    for format in ["text", "md", "html"] {
        let out = compare_out(&ws, &[&a1, &b1], &["--format", format]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("uninformative: 1 example compared"),
            "{format}: {text}"
        );
        assert!(
            !text.contains("] *") && !text.contains("+100.0% ["),
            "{format}: a difference is claimed: {text}"
        );
    }
}

#[test]
fn no_shared_finished_method_names_each_sessions_state() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 5, 11);
    let b = session(&ws, "acme-large", 5, 11);
    // b's mcq is interrupted before it finished; its llm_judge is left out.
    std::fs::remove_file(b.join("checkpoints/mcq/_DONE.json")).unwrap();
    let out = compare_out(&ws, &[&a, &b], &["--method", "mcq"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("method mcq is not finished in every session compared: acme-large (")
            && err.contains("): unfinished"),
        "{err}"
    );
    // Nothing of b finished.
    for ns in std::fs::read_dir(b.join("checkpoints")).unwrap() {
        let _ = std::fs::remove_file(ns.unwrap().path().join("_DONE.json"));
    }
    let out = compare_out(&ws, &[&a, &b], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the sessions share no finished method: acme-small (")
            && err.contains("has finished llm_judge, mcq; acme-large (")
            && err.contains("acme-large (")
            && err.contains("has no finished method; unfinished llm_judge, llm_judge.target, mcq")
            && err.contains("`w2c resume "),
        "{err}"
    );
}

#[test]
fn every_format_shows_the_label_rows_families_and_a_verdict_naming_each_significant_test() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 12, 11);
    let b = session(&ws, "acme-large", 12, 11);
    let c = session(&ws, "acme-xl", 12, 11);
    let json = compare_json(&ws, &[&a, &b, &c], &[]);
    // What the JSON marks significant, each with its family.
    let mut marked: Vec<String> = Vec::new();
    for m in json["methods"].as_array().unwrap() {
        assert_eq!(m["holm_families"].as_array().unwrap().len(), 3, "{m}");
        for p in m["pairs"].as_array().unwrap() {
            if p["significant"] == true {
                let (x, y) = (p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
                marked.push(if p["only_a"].as_u64() > p["only_b"].as_u64() {
                    format!("{x} > {y}")
                } else {
                    format!("{y} > {x}")
                });
            }
            for adj in p["adjusted_difference_p"].as_array().unwrap() {
                if adj[1].as_f64().unwrap() < 0.05 {
                    marked.push(format!("higher for {}", p["a"].as_str().unwrap()));
                }
            }
        }
        let labels = m["by_label"].as_array().unwrap();
        assert!(labels.len() >= 3, "{m}");
        for l in labels {
            for p in l["pairs"].as_array().unwrap() {
                if p["significant"] == true {
                    marked.push(format!("on {} rows", l["gold"].as_str().unwrap()));
                }
            }
        }
    }
    for format in ["text", "md", "html"] {
        let out = compare_out(&ws, &[&a, &b, &c], &["--format", format]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for want in [
            "by gold label (accuracy on each label",
            "Holm family: accuracy by gold label: McNemar over 3 labels × 3 pairs (9 tests)",
            "cannot_answer",
            "MDE (80% power)",
            "Wilson 95% interval",
        ] {
            assert!(text.contains(want), "{format}: {want}\n{text}");
        }
        // A denominator beside every rate: accuracy over 36 examples.
        assert!(text.contains("/36)"), "{format}: {text}");
        for m in &marked {
            assert!(
                text.contains(m.as_str()),
                "{format}: verdict lacks {m}\n{text}"
            );
        }
        if marked.is_empty() {
            assert!(text.contains("no difference is significant"), "{text}");
        }
    }
}

/// The agreement row of the reference script for `args`.
fn agreement_reference(args: &[&Path]) -> Value {
    let kind = if args.len() == 2 { "cohen" } else { "fleiss" };
    let out = std::process::Command::new("python3")
        .arg(support("agreement_reference.py"))
        .args(["7", "200", kind])
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "agreement_reference.py (needs scikit-learn and statsmodels: `pip install -r requirements-test.txt`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn judge_and_repeat_agreement_equal_scikit_learn_and_statsmodels() {
    // A judge, a second judge over the same answers, the multiple-choice
    // method and a 3-repeat sweep in one session.
    let ws = Workspace::new();
    let opts = |model: &str| Opts {
        model: model.into(),
        methods: "\"mcq\", \"llm_judge\", \"stability_mcq\"".into(),
        ..Opts::default()
    };
    let sweep = |c: String| c + "\n[methods.stability]\nk = 3\ntemperatures = [0.7]\n";
    let a = session_with(&ws, "a", &opts("acme-small"), sweep);
    let again = session_with(&ws, "a2", &opts("acme-small"), |c| {
        sweep(c).replace("judge = \"mock-judge\"", "judge = \"other-judge\"")
    });
    assert_eq!(a, again, "the second judge joins the session");
    let b = session_with(&ws, "b", &opts("acme-large"), sweep);
    let json = compare_json(&ws, &[&a, &b], &[]);
    let rows = json["agreement"].as_array().unwrap();
    let ns = |s: &Path, n: &str| s.join("artifacts_local").join(n).join("predictions.jsonl");
    let mut kinds = BTreeMap::new();
    for r in rows {
        let session = if r["model"] == "acme-small" { &a } else { &b };
        let first = ns(session, r["a"].as_str().unwrap());
        let want = match r["b"].as_str() {
            Some(other) => agreement_reference(&[&first, &ns(session, other)]),
            None => agreement_reference(&[&first]),
        };
        let what = format!("{} {} {}", r["model"], r["a"], r["b"]);
        for key in ["n", "kappa", "observed", "lo", "hi", "se"] {
            same(&r["kappa"][key], &want[key], &format!("{what} {key}"));
        }
        assert_eq!(r["disagreeing"], want["disagreeing"], "{what}");
        *kinds
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        if r["a"] == "llm_judge" && r["b"].as_str().is_some_and(|b| b.starts_with("llm_judge~")) {
            assert_eq!(r["model"], "acme-small");
        }
    }
    // acme-small: 3 method pairs (two judges, mcq) and a sweep; acme-large:
    // 1 pair and a sweep.
    assert_eq!(kinds.get("cohen"), Some(&4), "{rows:?}");
    assert_eq!(kinds.get("fleiss"), Some(&2), "{rows:?}");
    for format in ["text", "md", "html"] {
        let out = compare_out(&ws, &[&a, &b], &["--format", format]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for want in ["Cohen's κ", "llm_judge vs mcq", "Fleiss", "(3 repeats)"] {
            assert!(text.contains(want), "{format}: {want}\n{text}");
        }
    }
    // `w2c report` of one session shows the same rows, drawn alike: in the
    // JSON under each namespace it concerns, in every other format too.
    let report = |format: &str| {
        let out = w2c(ws.path())
            .args(["report", &fp(&a), "--format", format])
            .args(["--resamples", "200", "--seed", "7", "--runs-dir"])
            .arg(ws.runs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let entries: Value = serde_json::from_str(&report("json")).unwrap();
    let own: Vec<&Value> = rows.iter().filter(|r| r["model"] == "acme-small").collect();
    for e in entries.as_array().unwrap() {
        let ns = e["namespace"].as_str().unwrap();
        let want: Vec<&Value> = own
            .iter()
            .copied()
            .filter(|r| r["a"] == ns || r["b"] == ns)
            .collect();
        let got: Vec<&Value> = e["agreement"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{ns}");
    }
    for format in ["text", "md", "html"] {
        let text = report(format);
        for want in ["Cohen's κ", "llm_judge vs mcq", "(3 repeats)"] {
            assert!(text.contains(want), "report {format}: {want}\n{text}");
        }
    }
}

/// A rate as compare and report print it, from the reference's
/// `[k, n, value, se, lo, hi]`.
fn rate_printed(r: &Value) -> String {
    let pct = |v: &Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    format!(
        "{} [{}, {}] SE {:.1} ({}/{})",
        pct(&r[2]),
        pct(&r[4]),
        pct(&r[5]),
        r[3].as_f64().unwrap() * 100.0,
        r[0],
        r[1]
    )
}

#[test]
fn report_shows_each_rate_with_k_of_n_wilson_interval_and_se_as_the_reference() {
    // One session: `w2c report` printed its headline rates without a
    // denominator or any uncertainty. Each rate's k/n, Wilson interval and
    // binomial SE now equal statsmodels' (compare_reference.py), a judge's
    // (NVIDIA's aggregate) and the multiple-choice table's alike.
    let ws = Workspace::new();
    let a = session(&ws, "acme-small", 10, 3);
    let report = |format: &str| {
        let out = w2c(ws.path())
            .args(["report", &fp(&a), "--format", format, "--runs-dir"])
            .arg(ws.runs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let entries: Value = serde_json::from_str(&report("json")).unwrap();
    let (text, wide, md, html) = (
        report("text"),
        {
            let out = w2c(ws.path())
                .args(["report", &fp(&a), "--wide", "--runs-dir"])
                .arg(ws.runs())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        },
        report("md"),
        report("html"),
    );
    let mut checked = Vec::new();
    for e in entries.as_array().unwrap() {
        let ns = e["namespace"].as_str().unwrap();
        let want = reference(&["x"], &[&a], ns, 20)["rates"]["x"].clone();
        let got: BTreeMap<String, &Value> = e["rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), &p[1]))
            .collect();
        let want = want.as_object().unwrap();
        // The headline's two rates come first, as the reference's first two.
        let first: Vec<&str> = e["rates"]
            .as_array()
            .unwrap()
            .iter()
            .take(2)
            .map(|p| p[0].as_str().unwrap())
            .collect();
        let want_first: Vec<&str> = want.keys().map(String::as_str).collect();
        assert!(
            first.iter().all(|f| want_first.contains(f)),
            "{ns}: {first:?} {want_first:?}"
        );
        for (name, w) in want {
            let g = got
                .get(name)
                .unwrap_or_else(|| panic!("{ns}: no rate {name}: {e}"));
            let what = format!("{ns} {name}");
            assert_eq!(g["k"], w[0], "{what} k");
            assert_eq!(g["n"], w[1], "{what} n");
            for (i, key) in [(2, "value"), (3, "se"), (4, "lo"), (5, "hi")] {
                same(&g[key], &w[i], &format!("{what} {key}"));
            }
            if w[2].is_null() {
                continue;
            }
            let printed = rate_printed(w);
            for (format, out) in [("wide text", &wide), ("md", &md)] {
                assert!(out.contains(&printed), "{format}: {what} {printed}\n{out}");
            }
            let detail = printed.split_once(' ').unwrap().1;
            assert!(html.contains(detail), "html: {what} {detail}");
            if first.contains(&name.as_str()) {
                assert!(text.contains(&printed), "text: {what} {printed}\n{text}");
            }
            checked.push(what);
        }
    }
    assert!(
        checked
            .iter()
            .any(|c| c == "llm_judge judge_table_tool_hall")
            && checked
                .iter()
                .any(|c| c == "mcq tool_hallucination_rate_official"),
        "{checked:?}"
    );
    // The text report stays readable in 110 columns below its main table.
    let below = text.split("rates: k/n").next().unwrap();
    let rates_table = below.rsplit("\n\n").next().unwrap();
    assert!(
        rates_table.lines().all(|l| l.chars().count() <= 110),
        "{rates_table}"
    );
}
