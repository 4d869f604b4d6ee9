//! What a person sees around a run (issue 18): one unit for counts in the
//! run summary, `status`, `ls` and `_DONE.json`; methods not started are
//! listed; progress lines reach a log; sessions are found, and suggested
//! commands work, from another directory.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

const SWEEP: &str = "stability_mcq_k=3_T=0.7";

/// A config running a k=3 sweep first, then `mcq` and `llm_judge`.
fn sweep_config(ws: &Workspace, latency_ms: u64) -> PathBuf {
    let opts = Opts {
        n_per_label: Some(5),
        latency_ms,
        concurrency: 2,
        methods: "\"stability_mcq\", \"mcq\", \"llm_judge\"".into(),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[methods.stability]\nk = 3\ntemperatures = [0.7]\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Distinct item keys in a namespace's results.
fn distinct_keys(session: &Path, ns: &str) -> usize {
    let p = session.join("checkpoints").join(ns).join("results.jsonl");
    let mut keys: Vec<String> = std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["key"].as_str().map(String::from))
        .collect();
    keys.sort();
    keys.dedup();
    keys.len()
}

/// The line of `text` that starts (after indentation) with `name` and a
/// space.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

#[test]
fn counts_agree_everywhere_and_unstarted_methods_are_listed() {
    let ws = Workspace::new();
    let cfg = sweep_config(&ws, 40);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("W2C_RUNS_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let running = wait_while_running(&mut child, "sweep results", Duration::from_secs(60), || {
        result_lines(&ws, SWEEP) >= 6
    });
    assert!(running, "the run ended before the interrupt");
    sigint(child.id());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let s = only_session(&ws.runs(), "k");
    let n = read_json(&s.join("manifest.json"))["n_examples"]
        .as_u64()
        .unwrap() as usize;
    let done = distinct_keys(&s, SWEEP);
    assert!(done > 0 && done < 3 * n, "{done} of {}", 3 * n);

    // The run summary, status and ls: items, with the examples beside them.
    let items = format!("{done}/{}", 3 * n);
    assert!(
        line_of(&summary, SWEEP).contains(&format!("{items} ({n}×3)")),
        "{summary}"
    );
    let status = stdout_of(ws.path(), &["status"]);
    assert!(status.contains("stopped"), "{status}");
    let sweep_line = line_of(&status, SWEEP);
    assert!(
        sweep_line.contains(&format!("{items} ({n} examples × 3)"))
            && sweep_line.contains("not finished"),
        "{status}"
    );
    // Every planned namespace is listed, the unstarted ones with 0/N.
    for ns in ["mcq", "llm_judge.target", "llm_judge"] {
        let line = line_of(&status, ns);
        assert!(
            line.contains(&format!("0/{n}")) && line.contains("not started"),
            "{ns}: {status}"
        );
    }
    let ls = stdout_of(ws.path(), &["ls"]);
    assert!(
        line_of(&ls, SWEEP).contains(&format!("{items} ({n} examples × 3)")),
        "{ls}"
    );
    assert!(
        line_of(&ls, "llm_judge").contains(&format!("0/{n}")),
        "{ls}"
    );

    // Resume: the finished sweep is counted in items by every reader.
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w2c(ws.path())
        .args(["resume", &fp[..12]])
        .output()
        .expect("resume");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{0}/{0}", 3 * n);
    assert!(
        line_of(&resumed, SWEEP).contains(&format!("{all} ({n}×3)")),
        "{resumed}"
    );
    let marker = read_json(&s.join("checkpoints").join(SWEEP).join("_DONE.json"));
    assert_eq!(marker["n_items"], 3 * n);
    // A second resume finds everything done and says so in the same unit.
    let again = w2c(ws.path())
        .args(["resume", &fp[..12]])
        .output()
        .expect("resume");
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        line_of(&again, SWEEP).contains(&format!("{all} ({n}×3)")),
        "{again}"
    );
    let status = stdout_of(ws.path(), &["status"]);
    assert!(
        line_of(&status, SWEEP).contains(&format!("{all} ({n} examples × 3)")),
        "{status}"
    );
    assert!(line_of(&status, "llm_judge").contains(&format!("{n}/{n}")));
    assert!(status.contains(" done "), "{status}");
}

#[test]
fn progress_lines_reach_a_log_at_the_interval() {
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(10),
        latency_ms: 100,
        concurrency: 2,
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("W2C_PROGRESS")
        .env("W2C_PROGRESS_INTERVAL_SECS", "0.2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(child.wait().unwrap().success(), "{lines:#?}");
    let periodic = regex::Regex::new(
        r"^mcq: \d+/30 items \(\d+%\), [\d.]+/s, eta [^,]+ \| session \d+/30 \(\d+%\), elapsed .+, eta .+$",
    )
    .unwrap();
    let first_periodic = lines.iter().position(|l| periodic.is_match(l));
    let finished = lines
        .iter()
        .position(|l| l.starts_with("mcq: finished 30/30 items"));
    let started = lines.iter().position(|l| l.starts_with("mcq: started"));
    match (started, first_periodic, finished) {
        (Some(s), Some(p), Some(f)) => assert!(s < p && p < f, "{lines:#?}"),
        _ => panic!("expected start, periodic and finish lines:\n{lines:#?}"),
    }
    // A line at each interval while it ran (about 1.5 s at 0.2 s).
    let count = lines.iter().filter(|l| periodic.is_match(l)).count();
    assert!(count >= 3, "{count} periodic lines:\n{lines:#?}");
}

/// The command between the first pair of backticks of the line containing
/// `marker`.
fn suggested_command(text: &str, marker: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` line in:\n{text}"));
    let cmd = line.split('`').nth(1).expect("a command in backticks");
    cmd.split_whitespace().map(String::from).collect()
}

#[test]
fn sessions_are_found_from_another_directory() {
    let project = Workspace::new();
    let cfg = project.config(
        "eval.toml",
        &Opts {
            latency_ms: 150,
            concurrency: 2,
            ..Opts::default()
        },
    );
    let elsewhere = Workspace::new();
    // Run from another directory: the config's runs_dir is beside the config.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(elsewhere.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("W2C_RUNS_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let running = wait_while_running(&mut child, "a result", Duration::from_secs(60), || {
        result_lines(&project, "mcq") >= 1
    });
    assert!(running);
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The printed command works, as printed, from where the user stands.
    let cmd = suggested_command(&stdout, "continue with");
    assert_eq!(cmd[..2], ["w2c", "resume"]);
    assert!(cmd.iter().any(|a| a == "--runs-dir"), "{stdout}");
    w2c(elsewhere.path()).args(&cmd[1..]).assert().success();

    // W2C_RUNS_DIR makes every command find it from anywhere.
    let fp = read_json(&only_session(&project.runs(), "k").join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let runs = project.runs();
    w2c(elsewhere.path())
        .env("W2C_RUNS_DIR", &runs)
        .args(["verify", &fp[..8], "--local-only"])
        .assert()
        .success();
    let status = w2c(elsewhere.path())
        .env("W2C_RUNS_DIR", &runs)
        .arg("status")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains(&fp[..16]));
    // Without it, the message says where it looked.
    let miss = w2c(elsewhere.path())
        .args(["verify", &fp[..8], "--local-only"])
        .output()
        .unwrap();
    assert_eq!(miss.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&miss.stderr).contains("no session with fingerprint"));

    // `w2c run` honours W2C_RUNS_DIR too (over the config's runs_dir).
    let third = Workspace::new();
    w2c(elsewhere.path())
        .env("W2C_RUNS_DIR", third.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    assert!(only_session(third.path(), "k")
        .join("manifest.json")
        .is_file());
}
