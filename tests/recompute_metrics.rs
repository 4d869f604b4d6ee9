//! An independent re-implementation of the headline metrics, fed only from
//! each method's predictions export, must equal its metrics.json.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;

const LABELS: [&str; 4] = ["direct", "tool_call", "request_for_info", "cannot_answer"];

/// Accuracy, macro-F1 (gold labels / all four), ToolHall, AnswerHall,
/// ParamHall from (gold, prediction, n_tools) rows; `invalid` is wrong.
fn recompute(rows: &[(String, String, u64)]) -> HashMap<&'static str, Option<f64>> {
    let n = rows.len() as f64;
    let correct = rows.iter().filter(|(g, p, _)| g == p).count() as f64;
    let f1 = |l: &str| {
        let tp = rows.iter().filter(|(g, p, _)| g == l && p == l).count() as f64;
        let pred = rows.iter().filter(|(_, p, _)| p == l).count() as f64;
        let sup = rows.iter().filter(|(g, _, _)| g == l).count() as f64;
        let prec = if pred > 0.0 { tp / pred } else { 0.0 };
        let rec = if sup > 0.0 { tp / sup } else { 0.0 };
        let f = if prec + rec > 0.0 {
            2.0 * prec * rec / (prec + rec)
        } else {
            0.0
        };
        (f, sup > 0.0)
    };
    let all: Vec<(f64, bool)> = LABELS.iter().map(|l| f1(l)).collect();
    let present: Vec<f64> = all.iter().filter(|x| x.1).map(|x| x.0).collect();
    // The official task's macro-F1: sklearn's macro average, over the labels
    // in gold or predicted (`invalid` is not a label).
    let official: Vec<f64> = LABELS
        .iter()
        .filter(|l| rows.iter().any(|(g, p, _)| g == *l || p == *l))
        .map(|l| f1(l).0)
        .collect();
    let rate = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    let ca0: Vec<_> = rows
        .iter()
        .filter(|(g, _, t)| g == "cannot_answer" && *t == 0)
        .collect();
    let rfi: Vec<_> = rows
        .iter()
        .filter(|(g, _, _)| g == "request_for_info")
        .collect();
    HashMap::from([
        ("accuracy", Some(correct / n)),
        (
            "macro_f1_present",
            Some(present.iter().sum::<f64>() / present.len() as f64),
        ),
        (
            "macro_f1_all",
            Some(all.iter().map(|x| x.0).sum::<f64>() / 4.0),
        ),
        (
            "tool_hallucination_rate",
            rate(ca0.iter().filter(|r| r.1 == "tool_call").count(), ca0.len()),
        ),
        (
            "macro_f1_official",
            Some(official.iter().sum::<f64>() / official.len() as f64),
        ),
        // additional_metrics.py: 0.0 when no example qualifies.
        (
            "tool_hallucination_rate_official",
            Some(rate(ca0.iter().filter(|r| r.1 == "tool_call").count(), ca0.len()).unwrap_or(0.0)),
        ),
        (
            "answer_hallucination_rate",
            rate(
                rows.iter()
                    .filter(|(g, p, _)| p == "direct" && g != "direct")
                    .count(),
                rows.len(),
            ),
        ),
        (
            "parameter_hallucination_rate",
            rate(rfi.iter().filter(|r| r.1 == "tool_call").count(), rfi.len()),
        ),
    ])
}

fn check(session: &std::path::Path, ns: &str) {
    let preds = read_jsonl(&session.join(format!("artifacts_local/{ns}/predictions.jsonl")));
    let rows: Vec<(String, String, u64)> = preds
        .iter()
        .map(|p| {
            (
                p["gold"].as_str().unwrap().to_string(),
                p["prediction"].as_str().unwrap().to_string(),
                p["n_tools"].as_u64().unwrap(),
            )
        })
        .collect();
    let metrics =
        read_json(&session.join(format!("artifacts_local/{ns}/metrics.json")))["metrics"].clone();
    for (name, want) in recompute(&rows) {
        let got = metrics[name].as_f64();
        match (got, want) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{ns} {name}: {a} != {b}"),
            (None, None) => assert_eq!(metrics[name], Value::Null),
            other => panic!("{ns} {name}: {other:?}"),
        }
    }
    let invalid = rows.iter().filter(|r| r.1 == "invalid").count();
    assert_eq!(
        metrics["n_invalid"].as_u64().unwrap() as usize,
        invalid,
        "{ns}"
    );
}

#[test]
fn every_method_recomputes_from_its_predictions() {
    let ws = Workspace::new();
    let opts = Opts {
        methods: "\"mcq\", \"llm_judge\", \"mcq_logprob\", \"stability_mcq\"".into(),
        n_per_label: Some(20),
        mcq_extra: "order = \"shuffled\"\n[methods.stability]\nk = 3\ntemperatures = [0.5]".into(),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    for ns in ["mcq", "llm_judge", "mcq_logprob", "stability_mcq_k=3_T=0.5"] {
        check(&s, ns);
    }
}
