//! Verifying session directories written by the Python suite (the
//! reference implementation; `../shared/docs/reference_spec.md` §2–§3):
//! the manifest's 16-hex fingerprint is the sha256 of its config's Python
//! canonical JSON (and the directory name); each `_DONE.json` belongs to the
//! session and counts its checkpoint rows; `mcq` and `mcq_logprob` metrics
//! recompute from the checkpoint rows with the suite's own rule (an invalid
//! prediction is coerced to `cannot_answer`); the `outputs/` metrics files
//! agree with `_DONE.json`. Its MLflow record lives in a `./mlruns` file
//! store, which MLflow 3 servers refuse, so tracking is not checked.

use super::{Check, Collector, Status};
use crate::labels::{Label, Prediction};
use crate::metrics::{self, Scored};
use crate::store::read_json;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Whether `dir` holds a Python-suite session (its manifest has a `config`
/// and a 16-hex `fingerprint`, and none of w2c's own fields).
pub fn is_python_session(dir: &Path) -> bool {
    let Ok(m) = read_json::<Value>(&dir.join("manifest.json")) else {
        return false;
    };
    m.get("fingerprint_canonical").is_none()
        && m["config"].is_object()
        && m["fingerprint"].as_str().is_some_and(|f| f.len() == 16)
}

/// The checkpoint file holding each experiment's rows.
fn checkpoint_file(exp: &str) -> String {
    match exp {
        "mcq" => "mcq_predictions.jsonl".into(),
        "mcq_logprob" => "mcq_logprob_predictions.jsonl".into(),
        "llm_judge" => "judge_decisions.jsonl".into(),
        other => format!("{other}.jsonl"),
    }
}

/// Verifies a Python-suite session directory.
pub fn verify_python_session(dir: &Path) -> Vec<Check> {
    let run_key = dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "?".into());
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Collector::new(format!("{run_key}/{dir_name} (python suite)"));
    let manifest: Value = match read_json(&dir.join("manifest.json")) {
        Ok(m) => m,
        Err(e) => {
            out.push("manifest", Status::Missing, format!("{e:#}"));
            return out.checks;
        }
    };
    let fp = manifest["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let canonical = crate::fingerprint::python_canonical_json(&manifest["config"]);
    let hashed = crate::fingerprint::sha256_hex(canonical.as_bytes());
    if hashed[..16] == fp && dir_name == fp {
        out.push(
            "manifest fingerprint",
            Status::Ok,
            "sha256(Python canonical config)[:16] matches the manifest and the directory",
        );
    } else {
        out.push(
            "manifest fingerprint",
            Status::Mismatch,
            format!(
                "manifest says {fp}, directory is {dir_name}, the config hashes to {}",
                &hashed[..16]
            ),
        );
    }
    out.push(
        "tracking",
        Status::NotChecked,
        "Python-suite session: its MLflow runs live in a ./mlruns file store, which MLflow 3 servers refuse",
    );
    let mut exps: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    exps.sort();
    for exp in exps {
        out.namespace = exp.clone();
        verify_exp(&mut out, dir, &exp, &fp);
    }
    out.checks
}

fn verify_exp(out: &mut Collector, dir: &Path, exp: &str, fp: &str) {
    let ckpt = dir.join("checkpoints").join(exp);
    let rows_path = ckpt.join(checkpoint_file(exp));
    let done_path = ckpt.join("_DONE.json");
    if !rows_path.exists() && !done_path.exists() {
        // The suite creates the directories of disabled pipelines too.
        return;
    }
    let rows = match load_python_jsonl(&rows_path) {
        Ok((rows, torn)) => {
            if torn {
                out.push(
                    "checkpoint lines",
                    Status::Mismatch,
                    format!("{}: torn last line", rows_path.display()),
                );
            } else {
                out.push(
                    "checkpoint lines",
                    Status::Ok,
                    format!("{} lines parse", rows.len()),
                );
            }
            rows
        }
        Err(e) => {
            out.push("checkpoint lines", Status::Mismatch, e);
            return;
        }
    };
    // Later rows for a uuid replace earlier ones.
    let mut by_uuid: BTreeMap<String, Value> = BTreeMap::new();
    for r in rows {
        if let Some(u) = r["uuid"].as_str() {
            by_uuid.insert(u.to_string(), r);
        }
    }
    let done: Value = match read_json(&done_path) {
        Ok(d) => d,
        Err(_) if !done_path.exists() => {
            out.push(
                "_DONE.json",
                Status::NotChecked,
                format!("not finished: {} rows", by_uuid.len()),
            );
            return;
        }
        Err(e) => {
            out.push("_DONE.json", Status::Mismatch, format!("{e:#}"));
            return;
        }
    };
    check_done_marker(out, &done, exp, fp, by_uuid.len());
    check_recomputed_metrics(out, &done, exp, &by_uuid);
    check_metrics_file(out, dir, exp, &done);
}

/// The suite's `_DONE.json` names this session and experiment and counts
/// the checkpoint's uuids.
fn check_done_marker(out: &mut Collector, done: &Value, exp: &str, fp: &str, n_uuids: usize) {
    let mut diffs = Vec::new();
    if done["session_fingerprint"].as_str() != Some(fp) {
        diffs.push(format!(
            "session_fingerprint {} is not {fp}",
            done["session_fingerprint"]
        ));
    }
    if done["exp_name"].as_str() != Some(exp) {
        diffs.push(format!("exp_name {} is not {exp}", done["exp_name"]));
    }
    if let Some(n) = done["n_total"].as_u64() {
        if n as usize != n_uuids {
            diffs.push(format!(
                "n_total {n}, but {} has {} uuids",
                checkpoint_file(exp),
                n_uuids
            ));
        }
    }
    if diffs.is_empty() {
        out.push(
            "_DONE.json",
            Status::Ok,
            format!("done at {}", done["done_at"]),
        );
    } else {
        out.push("_DONE.json", Status::Mismatch, diffs.join("; "));
    }
}

/// The checkpoint's rows give `_DONE.json`'s metrics under the suite's rule.
fn check_recomputed_metrics(
    out: &mut Collector,
    done: &Value,
    exp: &str,
    by_uuid: &BTreeMap<String, Value>,
) {
    let recomputed: Vec<(&str, &str, f64)> = match exp {
        "mcq" => python_metrics(by_uuid, "predicted_label")
            .map(|m| {
                vec![
                    ("accuracy", "accuracy", m.0),
                    ("macro_f1", "macro_f1", m.1),
                    ("macro_f1_no_direct", "", m.2),
                ]
            })
            .unwrap_or_default(),
        "mcq_logprob" => [
            ("raw_accuracy", "predicted_label_raw"),
            ("byte_accuracy", "predicted_label_norm_bytes"),
            ("tok_accuracy", "predicted_label_norm_tokens"),
            ("char_accuracy", "predicted_label_norm_chars"),
        ]
        .into_iter()
        .filter_map(|(k, field)| python_metrics(by_uuid, field).map(|m| (k, "", m.0)))
        .collect(),
        _ => Vec::new(),
    };
    if recomputed.is_empty() {
        out.push(
            "metrics recompute",
            Status::NotChecked,
            "gold labels are not in this checkpoint",
        );
    } else {
        let mut diffs = Vec::new();
        for (key, done_key, value) in &recomputed {
            if done_key.is_empty() && done.get(*key).is_none() {
                continue;
            }
            let key_in_done = if done_key.is_empty() { key } else { done_key };
            if let Some(stored) = done[*key_in_done].as_f64() {
                if (stored - value).abs() > 1e-12 {
                    diffs.push(format!("{key}: _DONE.json {stored}, recomputed {value}"));
                }
            }
        }
        if diffs.is_empty() {
            out.push(
                "metrics recompute",
                Status::Ok,
                format!("{} rows give the _DONE.json metrics", by_uuid.len()),
            );
        } else {
            out.push("metrics recompute", Status::Mismatch, diffs.join("; "));
        }
    }
}

/// `outputs/<exp>/metrics_<exp>.json` agrees with `_DONE.json`.
fn check_metrics_file(out: &mut Collector, dir: &Path, exp: &str, done: &Value) {
    let metrics_path = dir
        .join("artifacts_local")
        .join(exp)
        .join("outputs")
        .join(exp)
        .join(format!("metrics_{exp}.json"));
    if let Ok(file) = read_json::<Value>(&metrics_path) {
        let m = &file["metrics"];
        let pairs: Vec<(&str, &Value, &Value)> = match exp {
            "mcq" | "llm_judge" => vec![
                ("accuracy", &done["accuracy"], &m["accuracy"]),
                ("macro_f1", &done["macro_f1"], &m["macro_f1"]),
                ("n_total", &done["n_total"], &m["n_total"]),
            ],
            "mcq_logprob" => vec![
                ("raw_accuracy", &done["raw_accuracy"], &m["raw"]["accuracy"]),
                (
                    "byte_accuracy",
                    &done["byte_accuracy"],
                    &m["norm_bytes"]["accuracy"],
                ),
            ],
            _ => Vec::new(),
        };
        let diffs: Vec<String> = pairs
            .iter()
            .filter(|(_, a, b)| {
                a.as_f64()
                    .zip(b.as_f64())
                    .is_some_and(|(x, y)| (x - y).abs() > 1e-12)
            })
            .map(|(k, a, b)| format!("{k}: _DONE.json {a}, metrics file {b}"))
            .collect();
        if diffs.is_empty() {
            out.push("metrics file", Status::Ok, "agrees with _DONE.json");
        } else {
            out.push("metrics file", Status::Mismatch, diffs.join("; "));
        }
    }
}

/// (accuracy, macro_f1, macro_f1_no_direct) under the suite's rule: a
/// prediction that is not one of the four labels counts as `cannot_answer`.
fn python_metrics(rows: &BTreeMap<String, Value>, field: &str) -> Option<(f64, f64, f64)> {
    let mut scored = Vec::new();
    for r in rows.values() {
        let gold: Label = r["gold_label"].as_str()?.parse().ok()?;
        let pred = r[field]
            .as_str()
            .and_then(|s| s.parse::<Label>().ok())
            .unwrap_or(Label::CannotAnswer);
        scored.push(Scored {
            gold,
            pred: Prediction::Label(pred),
            has_tools: true,
        });
    }
    if scored.is_empty() {
        return None;
    }
    let m = metrics::compute(&scored);
    let f1 = |l: Label| m.per_class.get(l.as_str()).map(|c| c.f1).unwrap_or(0.0);
    let no_direct =
        (f1(Label::ToolCall) + f1(Label::RequestForInfo) + f1(Label::CannotAnswer)) / 3.0;
    Some((m.accuracy, m.macro_f1_all, no_direct))
}

/// Reads a JSONL file as the Python suite writes it: its `json.dumps` emits
/// the non-standard tokens `NaN`, `Infinity` and `-Infinity`, which are
/// read as strings. Returns the rows and whether the last line is torn (an
/// unterminated, unparseable tail); a bad line elsewhere is an error naming
/// the file and line.
pub fn load_python_jsonl(path: &Path) -> Result<(Vec<Value>, bool), String> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let terminated = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&quote_non_finite(line)) {
            Ok(v) => rows.push(v),
            Err(_) if i + 1 == lines.len() && !terminated => return Ok((rows, true)),
            Err(e) => {
                return Err(format!(
                    "{}:{}: malformed line ({e})",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok((rows, false))
}

/// Turns the bare tokens `NaN`, `Infinity`, `-Infinity` outside strings into
/// JSON strings.
fn quote_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.push('"');
                out.push_str(t);
                out.push('"');
                rest = &rest[t.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_tokens_outside_strings_become_strings() {
        assert_eq!(
            quote_non_finite(
                r#"{"a": [-1.5, -Infinity, NaN], "b": "NaN -Infinity \" x", "c": Infinity}"#
            ),
            r#"{"a": [-1.5, "-Infinity", "NaN"], "b": "NaN -Infinity \" x", "c": "Infinity"}"#
        );
    }
}
