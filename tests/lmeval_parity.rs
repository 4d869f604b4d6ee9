//! `mcq_logprob` with the official templates against lm-evaluation-harness
//! itself, on the same real server: llama-cpp-python serving the shared tiny
//! GGUF (tests/common/llama.rs), lm-eval 0.4.13's `local-completions` (batch
//! size 1, string prompts, the shared Hugging Face tokenizer) running the
//! official `when2call` and `when2call-hermes` tasks — NVIDIA's task YAMLs
//! and `utils.py`, copied at test time into a temp dir (never into the
//! repository) and pointed at the same rows w2c scores.
//!
//! Per choice: the prompt w2c sends is lm-eval's context + continuation and
//! its continuation starts where lm-eval's `_encode_pair` puts it; the
//! scores agree within 1e-3. lm-eval is wrong where the server generated
//! nothing (the model's next token was end-of-generation, so
//! `completion_tokens` is 0): its `token_logprobs[ctxlen:-1]` then drops the
//! prompt's last token. There the test checks that this is exactly what
//! happened and checks w2c against the in-process reference instead
//! (tests/support/llama_reference.py). Predictions (acc, acc_norm) and the
//! paper's metric set (acc, acc_norm, macro-F1, the official
//! tool-hallucination rate, computed by the official `additional_metrics.py`)
//! are equal, with lm-eval's wrong scores replaced by the reference's.
//!
//! The lm-eval venv comes from `.ci/lmeval_venv.sh`; without it the test
//! fails with one line saying so.

mod common;

use common::llama::{reference_with_context, LlamaServer, RefRequest};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The server's context window (every chosen row fits).
const N_CTX: u32 = 2048;

/// Short real rows: `cannot_answer` without tools and non-ASCII text
/// ("Käärijä"), `request_for_info` and `tool_call` with one tool each.
const ROWS: [&str; 3] = ["6065e474", "c3ce199a", "c8d83563"];

/// A synthetic row whose `direct` answer "yes" is followed, in both
/// templates, by the model's end-of-generation token: the server appends
/// nothing and reports `completion_tokens: 0` for that choice.
const EOG_ROW: &str = r#"{"uuid": "eog-0002", "source": "w2c-test", "question": "What is the license?", "correct_answer": "cannot_answer", "answers": {"direct": "yes", "tool_call": "{\"name\": \"license\", \"arguments\": {}}", "request_for_info": "Which license?", "cannot_answer": "I cannot tell."}, "target_tool": null, "tools": []}"#;

/// The official tasks compared.
const TASKS: [&str; 2] = ["when2call", "when2call-hermes"];

const LABELS: [&str; 4] = ["direct", "tool_call", "request_for_info", "cannot_answer"];

/// The lm-eval venv's python (`W2C_LMEVAL_PYTHON`, else the CI cache path);
/// one line saying how to get it when it is missing.
fn lmeval_python() -> PathBuf {
    venv_python(
        "W2C_LMEVAL_PYTHON",
        "lmeval-venv",
        "lm_eval.models.openai_completions, transformers, sklearn, pandas",
        "lm-evaluation-harness",
        ".ci/lmeval_venv.sh",
    )
}

/// The rows (real ones by uuid prefix, then `extra`), as one JSONL file.
fn rows_file(ws: &Workspace, prefixes: &[&str], extra: &[&str]) -> PathBuf {
    let text = std::fs::read_to_string(shared_dataset()).expect("dataset");
    let mut lines: Vec<&str> = Vec::new();
    for p in prefixes {
        let line = text
            .lines()
            .find(|l| {
                let v: Value = serde_json::from_str(l).expect("row");
                v["uuid"].as_str().unwrap_or_default().starts_with(p)
            })
            .unwrap_or_else(|| panic!("no row {p} in the shared file"));
        lines.push(line);
    }
    lines.extend(extra);
    ws.write("rows.jsonl", &(lines.join("\n") + "\n"))
}

/// A task directory for lm-eval: the official YAMLs of `tasks`, reading
/// `rows` instead of `when2call_test_mcq.jsonl` (the shared file has the
/// same fields), and a copy of `utils.py` beside them.
fn task_dir(ws: &Workspace, rows: &Path, tasks: &[&str]) -> PathBuf {
    let dir = ws.path().join("tasks");
    std::fs::create_dir_all(&dir).expect("task dir");
    let reference = official_task_dir();
    std::fs::copy(reference.join("utils.py"), dir.join("utils.py")).expect("utils.py");
    for task in tasks {
        let yaml = std::fs::read_to_string(reference.join(format!("{task}.yaml"))).expect("yaml");
        let official = "lm_eval/tasks/when2call/when2call_test_mcq.jsonl";
        assert!(
            yaml.contains(official),
            "{task}.yaml no longer reads {official}"
        );
        std::fs::write(
            dir.join(format!("{task}.yaml")),
            yaml.replace(official, &rows.display().to_string()),
        )
        .expect("write yaml");
    }
    dir
}

/// Runs lm-eval on the server; returns each task's samples file.
fn run_lmeval(
    ws: &Workspace,
    url: &str,
    tasks_dir: &Path,
    tasks: &[&str],
    n_ctx: u32,
) -> HashMap<String, PathBuf> {
    let out_dir = ws.path().join("lmeval-out");
    let model_args = format!(
        "model=tiny-llama-local,base_url={url}/v1/completions,tokenizer_backend=huggingface,tokenizer={},tokenized_requests=False,num_concurrent=1,max_retries=3,max_length={n_ctx}",
        shared_dir().join("models/tiny-llama-local-tokenizer").display()
    );
    let out = Command::new(lmeval_python())
        .args([
            "-m",
            "lm_eval",
            "--model",
            "local-completions",
            "--model_args",
        ])
        .arg(&model_args)
        .args([
            "--batch_size",
            "1",
            "--tasks",
            &tasks.join(","),
            "--include_path",
        ])
        .arg(tasks_dir)
        .args(["--log_samples", "--output_path"])
        .arg(&out_dir)
        .env("HF_HOME", ws.path().join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .expect("run lm-eval");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lm-eval failed:\n{log}");
    let mut samples = HashMap::new();
    for entry in walk(&out_dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        for task in tasks {
            if name.starts_with(&format!("samples_{task}_")) {
                samples.insert(task.to_string(), entry.clone());
            }
        }
    }
    assert_eq!(
        samples.len(),
        tasks.len(),
        "samples files under {}",
        out_dir.display()
    );
    samples
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// w2c's `mcq_logprob` with an official template on the rows; returns the
/// session directory.
fn run_w2c(url: &str, rows: &Path, task: &str) -> (Workspace, PathBuf) {
    let ws = Workspace::new();
    let cfg = ws.write(
        "eval.toml",
        &format!(
            r#"[run]
runs_dir = "runs"
seed = 7
[dataset]
path = "{rows}"
[models]
target = "tiny-llama-local"
target_provider = "llama"
[providers.llama]
kind = "openai"
base_url = "{url}/v1"
max_concurrency = 1
timeout_secs = 300
max_attempts = 2
[methods]
enabled = ["mcq_logprob"]
[methods.mcq_logprob]
template = "{task}"
"#,
            rows = rows.display()
        ),
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    (ws, s)
}

/// One choice as w2c scored it.
struct Ours {
    prompt: String,
    context_chars: usize,
    logprob: f64,
    completion_tokens: u64,
}

fn ours(session: &Path) -> BTreeMap<(String, usize), Ours> {
    let art = session.join("artifacts_local/mcq_logprob");
    let mut calls: HashMap<String, Vec<Value>> = HashMap::new();
    for c in read_jsonl(&art.join("llm_calls.jsonl")) {
        assert_eq!(c["status"], "ok", "{c}");
        calls
            .entry(c["uuid"].as_str().unwrap().to_string())
            .or_default()
            .push(c);
    }
    let mut out = BTreeMap::new();
    for d in read_jsonl(&art.join("debug_per_choice.jsonl")) {
        let uuid = d["uuid"].as_str().unwrap().to_string();
        let c = &d["choice"];
        let i = LABELS.iter().position(|l| c["label"] == *l).unwrap();
        let call = &calls[&uuid][i];
        out.insert(
            (uuid, i),
            Ours {
                prompt: call["request"]["prompt"].as_str().unwrap().to_string(),
                context_chars: c["context_chars"].as_u64().unwrap() as usize,
                logprob: c["logprob"].as_f64().unwrap(),
                completion_tokens: call["usage"]["completion_tokens"].as_u64().unwrap(),
            },
        );
    }
    out
}

/// The paper's metric set from lm-eval's samples, the official way, with
/// some choices' scores replaced.
fn official_metrics(samples: &Path, corrections: &Value, ws: &Workspace) -> Value {
    let path = ws.write("corrections.json", &corrections.to_string());
    let out = Command::new(lmeval_python())
        .arg(support("lmeval_official_metrics.py"))
        .arg(official_task_dir())
        .arg(samples)
        .arg(path)
        .output()
        .expect("lmeval_official_metrics.py");
    assert!(
        out.status.success(),
        "lmeval_official_metrics.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metrics JSON")
}

/// What one task's comparison found.
#[derive(Default)]
struct Parity {
    task: String,
    rows: usize,
    choices: usize,
    /// Choices compared with lm-eval, and the largest difference.
    against_lmeval: usize,
    max_diff_lmeval: f64,
    /// Choices where the server generated nothing: lm-eval is wrong by the
    /// prompt's last token there, w2c is compared with the reference.
    eog: usize,
    max_diff_reference: f64,
    /// Every check that failed, one line each.
    failures: Vec<String>,
    w2c_secs: f64,
    /// w2c's metrics.json `paper` block.
    paper: String,
}

impl Parity {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }
}

/// Runs lm-eval and w2c on the rows with every task; compares each choice's
/// prompt, split point and score, then predictions and the paper's metric
/// set. Returns one summary per task (checks collected, not asserted).
fn parity(rows: &Path, n_rows: usize, tasks: &[&str], n_ctx: u32) -> (Vec<Parity>, f64) {
    let t0 = std::time::Instant::now();
    let server = LlamaServer::start(n_ctx);
    let ws = Workspace::new();
    let task_files = task_dir(&ws, rows, tasks);
    let samples = run_lmeval(&ws, &server.url, &task_files, tasks, n_ctx);
    let lmeval_secs = t0.elapsed().as_secs_f64();
    eprintln!("lm-eval: {lmeval_secs:.1} s");
    let mut out = Vec::new();
    for task in tasks {
        let t1 = std::time::Instant::now();
        let (_w2c_ws, session) = run_w2c(&server.url, rows, task);
        let mut p = Parity {
            task: task.to_string(),
            rows: n_rows,
            w2c_secs: t1.elapsed().as_secs_f64(),
            ..Parity::default()
        };
        eprintln!("w2c {task}: {:.1} s", p.w2c_secs);
        compare_task(&mut p, &ws, &session, &samples[*task], n_ctx);
        out.push(p);
    }
    drop(server);
    (out, lmeval_secs)
}

fn compare_task(p: &mut Parity, ws: &Workspace, session: &Path, samples: &Path, n_ctx: u32) {
    let task = p.task.clone();
    let ours = ours(session);
    p.choices = ours.len();
    p.check(ours.len() == 4 * p.rows, || {
        format!("{task}: w2c scored {} choices", ours.len())
    });
    let theirs = read_jsonl(samples);
    p.check(theirs.len() == p.rows, || {
        format!("{task}: lm-eval has {} samples", theirs.len())
    });

    // Where the server generated nothing, lm-eval's slice drops the
    // prompt's last token: those choices are checked against the
    // in-process reference.
    let eog: Vec<(String, usize)> = ours
        .iter()
        .filter(|(_, o)| o.completion_tokens == 0)
        .map(|(k, _)| k.clone())
        .collect();
    let refs = reference_with_context(
        &eog.iter()
            .map(|k| RefRequest {
                id: format!("{}/{}", k.0, k.1),
                prompt: ours[k].prompt.clone(),
                context_chars: ours[k].context_chars,
            })
            .collect::<Vec<_>>(),
        n_ctx,
    );
    p.eog = eog.len();
    let mut corrections = serde_json::Map::new();
    for (k, r) in eog.iter().zip(&refs) {
        corrections.insert(format!("{}/{}", k.0, k.1), r["logprob"].clone());
    }

    for s in &theirs {
        let uuid = s["doc"]["uuid"].as_str().unwrap();
        for (i, label) in LABELS.iter().enumerate() {
            let what = format!("{task} {uuid} {label}");
            let Some(o) = ours.get(&(uuid.to_string(), i)) else {
                p.failures.push(format!("{what}: not scored by w2c"));
                continue;
            };
            let arg = &s["arguments"][format!("gen_args_{i}")];
            let (ctx, cont) = (
                arg["arg_0"].as_str().unwrap(),
                arg["arg_1"].as_str().unwrap(),
            );
            // The same text, split where lm-eval's _encode_pair splits it
            // (Python's rstrip of the context).
            p.check(o.prompt == format!("{ctx}{cont}"), || {
                format!("{what}: prompt")
            });
            let kept = ctx.trim_end_matches(|c: char| {
                c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
            });
            p.check(o.context_chars == kept.chars().count(), || {
                format!(
                    "{what}: continuation starts at {} not {}",
                    o.context_chars,
                    kept.chars().count()
                )
            });
            let lmeval: f64 = s["filtered_resps"][i][0].as_str().unwrap().parse().unwrap();
            if let Some(pos) = eog.iter().position(|k| k.0 == uuid && k.1 == i) {
                let r = &refs[pos];
                let truth = r["logprob"].as_f64().unwrap();
                let last = r["last_logprob"].as_f64().unwrap();
                p.check((lmeval - (truth - last)).abs() <= 1e-3, || {
                    format!("{what}: lm-eval {lmeval} is not the reference {truth} without the last token ({last})")
                });
                let diff = (o.logprob - truth).abs();
                p.max_diff_reference = p.max_diff_reference.max(diff);
                p.check(diff <= 1e-3, || {
                    format!("{what}: w2c {} vs in-process {truth}", o.logprob)
                });
            } else {
                let diff = (o.logprob - lmeval).abs();
                p.against_lmeval += 1;
                p.max_diff_lmeval = p.max_diff_lmeval.max(diff);
                p.check(diff <= 1e-3, || {
                    format!("{what}: w2c {} vs lm-eval {lmeval}", o.logprob)
                });
            }
        }
    }

    // Predictions and the paper's set, from lm-eval's samples with its
    // wrong scores replaced by the reference's.
    let official = official_metrics(samples, &Value::Object(corrections), ws);
    let preds = read_jsonl(&session.join("artifacts_local/mcq_logprob/predictions.jsonl"));
    for pr in &preds {
        let uuid = pr["uuid"].as_str().unwrap();
        let doc = &official["per_doc"][uuid];
        let label = |key: &str| LABELS[doc[key].as_u64().unwrap() as usize];
        p.check(pr["prediction"] == label("pred"), || {
            format!("{task} {uuid} acc prediction")
        });
        p.check(pr["prediction_acc_norm"] == label("pred_norm"), || {
            format!("{task} {uuid} acc_norm prediction")
        });
        if !eog.iter().any(|k| k.0 == uuid) {
            // lm-eval's own per-sample results, where it is right.
            p.check(
                doc["lmeval_acc"].as_f64() == Some(f64::from(pr["prediction"] == pr["gold"])),
                || format!("{task} {uuid}: lm-eval's acc"),
            );
            p.check(
                doc["lmeval_acc_norm"].as_f64()
                    == Some(f64::from(pr["prediction_acc_norm"] == pr["gold"])),
                || format!("{task} {uuid}: lm-eval's acc_norm"),
            );
        }
    }
    let m = read_json(&session.join("artifacts_local/mcq_logprob/metrics.json"));
    let paper = &m["paper"];
    p.check(paper["n"] == official["n"], || format!("{task}: n"));
    for key in ["acc", "acc_norm", "macro_f1", "tool_hallucination_rate"] {
        let (a, b) = (paper[key].as_f64(), official[key].as_f64());
        p.check(
            matches!((a, b), (Some(a), Some(b)) if (a - b).abs() < 1e-12),
            || format!("{task} {key}: w2c {a:?}, official {b:?}"),
        );
    }
    let settings = read_json(&session.join("checkpoints/mcq_logprob/method_settings.json"));
    p.check(settings["settings"]["template"] == task.as_str(), || {
        format!(
            "{task}: method_settings.json names {}",
            settings["settings"]["template"]
        )
    });
    p.paper = paper.to_string();
    eprintln!("{}", summary_line(p));
}

/// One markdown table row for BENCHMARKS.md.
fn summary_line(p: &Parity) -> String {
    format!(
        "| {} | {} | {} | {} | {:.2e} | {} | {:.2e} | {} | {:.0} | `{}` |",
        p.task,
        p.rows,
        p.choices,
        p.against_lmeval,
        p.max_diff_lmeval,
        p.eog,
        p.max_diff_reference,
        p.failures.len(),
        p.w2c_secs,
        p.paper,
    )
}

fn assert_parity(results: &[Parity]) {
    let failures: Vec<&String> = results.iter().flat_map(|p| &p.failures).collect();
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn mcq_logprob_agrees_with_lm_eval_on_the_official_tasks() {
    // Fail with the one line before starting anything.
    lmeval_python();
    let ws = Workspace::new();
    let rows = rows_file(&ws, &ROWS, &[EOG_ROW]);
    let (results, _) = parity(&rows, ROWS.len() + 1, &TASKS, N_CTX);
    for p in &results {
        assert!(
            p.eog >= 1,
            "{}: the model no longer ends generation after the synthetic row's `direct` answer (the end-of-generation case is not covered)",
            p.task
        );
    }
    assert_parity(&results);
}

/// The whole shared file (bench/lmeval_parity.sh runs it and records the
/// result in BENCHMARKS.md): `W2C_LMEVAL_TASKS` (comma-separated, default
/// `when2call`), `W2C_LMEVAL_N_CTX` (default 8192, which every row fits).
#[test]
#[ignore = "takes tens of minutes: run by bench/lmeval_parity.sh"]
fn whole_file_parity_with_lm_eval() {
    lmeval_python();
    let tasks_env = std::env::var("W2C_LMEVAL_TASKS").unwrap_or_else(|_| "when2call".into());
    let tasks: Vec<&str> = tasks_env.split(',').map(str::trim).collect();
    let n_ctx: u32 = std::env::var("W2C_LMEVAL_N_CTX")
        .ok()
        .map(|v| v.parse().expect("W2C_LMEVAL_N_CTX is a number"))
        .unwrap_or(8192);
    let rows = shared_dataset();
    let n_rows = std::fs::read_to_string(&rows)
        .expect("dataset")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let (results, lmeval_secs) = parity(&rows, n_rows, &tasks, n_ctx);
    println!("n_ctx {n_ctx}; lm-eval (all tasks, one process): {lmeval_secs:.0} s\n");
    println!("| task | rows | choices | compared with lm-eval | max abs diff | end-of-generation choices (vs reference) | max abs diff | failed checks | w2c s | w2c metrics.json `paper` |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for p in &results {
        println!("{}", summary_line(p));
    }
    assert_parity(&results);
}
