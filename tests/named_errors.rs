//! Inputs that used to hang, or failed with a message that did not say what
//! was wrong: each is now exit 1 (or 3 for a request that fails after its
//! retries) with the cause and the key, variable or file named, in bounded
//! time and before any request it concerns.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// Runs w2c with `args` and `envs` (killed after 60 s) and expects `code`
/// with every needle in stderr and no panic; returns stderr.
fn fails_with(
    ws: &Workspace,
    args: &[&str],
    envs: &[(&str, &std::ffi::OsStr)],
    code: i32,
    needles: &[&str],
) -> String {
    let mut c = w2c(ws.path());
    c.args(args).timeout(Duration::from_secs(60));
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in: {stderr}");
    }
    stderr
}

fn run_args(cfg: &Path) -> Vec<&str> {
    vec!["run", "--run-key", "k", "--config", cfg.to_str().unwrap()]
}

fn small() -> Opts {
    Opts {
        n_per_label: Some(1),
        concurrency: 1,
        ..Opts::default()
    }
}

#[test]
fn a_mock_latency_too_long_for_a_run_is_refused_with_its_range() {
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            latency_ms: 9223372036854775807,
            ..small()
        },
    );
    for args in [
        run_args(&cfg),
        vec!["config", "check", cfg.to_str().unwrap()],
    ] {
        fails_with(
            &ws,
            &args,
            &[],
            1,
            &["providers.mock.latency_ms", "[0, 86400000] milliseconds"],
        );
    }
}

#[cfg(unix)]
#[test]
fn a_dataset_that_is_a_fifo_or_a_directory_is_refused_at_once() {
    let ws = Workspace::new();
    let fifo = ws.path().join("data.jsonl");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) is needed");
    assert!(status.success());
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            dataset: fifo.clone(),
            ..small()
        },
    );
    for args in [
        run_args(&cfg),
        vec!["config", "check", cfg.to_str().unwrap()],
    ] {
        fails_with(&ws, &args, &[], 1, &["data.jsonl", "a FIFO (named pipe)"]);
    }
    let cfg = ws.config(
        "dir.toml",
        &Opts {
            dataset: ws.path().to_path_buf(),
            ..small()
        },
    );
    fails_with(&ws, &run_args(&cfg), &[], 1, &["is a directory"]);
}
