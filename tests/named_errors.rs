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

/// Bytes that are not UTF-8, as an environment value.
#[cfg(unix)]
fn not_utf8() -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b"sk-\xff\xfe-key").to_os_string()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[cfg(unix)]
#[test]
fn environment_variables_that_cannot_be_used_are_errors_naming_them_before_any_request() {
    let server = MockServer::start(&[], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config(
        "eval.toml",
        &small(),
        &server.url,
        "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-org\" = \"MY_ORG\" }",
    );
    let bad = not_utf8();
    let ok_key = os("sk-ok-0123456789");
    for (envs, needles) in [
        (
            vec![("MY_KEY", os("sk-canary-123\n")), ("MY_ORG", os("org-1"))],
            vec![
                "`MY_KEY`",
                "providers.mock.api_key_env",
                "a newline at character 14",
            ],
        ),
        (
            vec![("MY_KEY", bad.as_os_str()), ("MY_ORG", os("org-1"))],
            vec!["`MY_KEY`", "not valid UTF-8", "providers.mock.api_key_env"],
        ),
        (
            vec![("MY_KEY", ok_key), ("MY_ORG", os("org\r\n1"))],
            vec![
                "`MY_ORG`",
                "providers.mock.headers_env.x-org",
                "a carriage return",
            ],
        ),
        (
            vec![
                ("MY_KEY", ok_key),
                ("MY_ORG", os("org-1")),
                ("MLFLOW_TRACKING_URI", bad.as_os_str()),
            ],
            vec!["`MLFLOW_TRACKING_URI`", "not valid UTF-8"],
        ),
        (
            vec![
                ("MY_KEY", ok_key),
                ("MY_ORG", os("org-1")),
                ("W2C_RUN_KEY", bad.as_os_str()),
            ],
            vec!["`W2C_RUN_KEY`", "not valid UTF-8"],
        ),
        (
            vec![
                ("MY_KEY", ok_key),
                ("MY_ORG", os("org-1")),
                ("MLFLOW_TRACKING_URI", os("http://127.0.0.1:9")),
                ("MLFLOW_TRACKING_TOKEN", os("tok-0123456789\n")),
            ],
            vec!["`MLFLOW_TRACKING_TOKEN`", "a newline"],
        ),
    ] {
        let stderr = fails_with(&ws, &run_args(&cfg), &envs, 1, &needles);
        assert!(
            !stderr.contains("canary") && !stderr.contains("0123456789"),
            "{stderr}"
        );
    }
    assert_eq!(server.stats()["requests"], 0, "a request was sent");
    // Every command that reads MLflow settings checks them.
    fails_with(
        &ws,
        &["sync", "0000"],
        &[("MLFLOW_TRACKING_URI", bad.as_os_str())],
        1,
        &["`MLFLOW_TRACKING_URI`"],
    );
}

#[test]
fn an_unknown_or_ambiguous_provider_is_named_with_the_cause() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &small());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let unknown = ws.write(
        "unknown.toml",
        &text.replace("target_provider = \"mock\"", "target_provider = \"nope\""),
    );
    fails_with(
        &ws,
        &run_args(&unknown),
        &[],
        1,
        &[
            "key `models.target`",
            "provider `nope` is not defined",
            "[\"mock\"]",
        ],
    );
    let ambiguous = ws.write(
        "two.toml",
        &(text.replace("target_provider = \"mock\"\n", "").replace(
            "kind = \"mock\"",
            "kind = \"mock\"\nmodel_prefixes = [\"mock-\"]",
        ) + "\n[providers.other]\nkind = \"mock\"\nmodel_prefixes = [\"mock-m\"]\n"),
    );
    fails_with(
        &ws,
        &["config", "check", ambiguous.to_str().unwrap()],
        &[],
        1,
        &["key `models.target`", "several providers", "\"other\""],
    );
}

#[test]
fn a_byte_order_mark_at_the_start_of_the_dataset_is_accepted() {
    let ws = Workspace::new();
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(sample_dataset()).unwrap());
    let data = ws.path().join("bom.jsonl");
    std::fs::write(&data, bytes).unwrap();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            dataset: data,
            ..small()
        },
    );
    run_ok(&ws, &cfg);
}

#[test]
fn every_loser_of_a_start_race_names_the_winners_pid() {
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            latency_ms: 300,
            ..small()
        },
    );
    let children: Vec<std::process::Child> = (0..20)
        .map(|_| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"))
                .current_dir(ws.path())
                .args(["run", "--run-key", "k", "--no-tracking", "--config"])
                .arg(&cfg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn w2c run")
        })
        .collect();
    let mut winners = Vec::new();
    let mut named = Vec::new();
    for child in children {
        let pid = child.id();
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => winners.push(pid.to_string()),
            Some(4) => named.push(
                stderr
                    .split("(PID ")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .unwrap_or("none")
                    .to_string(),
            ),
            other => panic!("exit {other:?}: {stderr}"),
        }
    }
    assert!(
        !winners.is_empty() && !named.is_empty(),
        "{winners:?} {named:?}"
    );
    for pid in &named {
        assert!(
            winners.contains(pid),
            "a loser named PID {pid}; winners {winners:?}"
        );
    }
}

// Issue 29, point 7: `W2C_RUNS_DIR=''` was exit 2 "a value is required for
// '--runs-dir'", a flag nobody typed; it is an environment problem.
#[test]
fn an_empty_runs_dir_variable_is_an_environment_error_naming_it() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &small());
    let empty = [("W2C_RUNS_DIR", os(""))];
    for args in [
        vec!["status"],
        vec!["verify", "--all"],
        vec!["resume", "abcd"],
        run_args(&cfg),
    ] {
        fails_with(&ws, &args, &empty, 1, &["`W2C_RUNS_DIR`", "empty"]);
    }
    assert!(!ws.runs().exists(), "nothing was run");
    // An empty `--runs-dir` typed on the command line stays a usage error.
    fails_with(&ws, &["status", "--runs-dir", ""], &[], 2, &["--runs-dir"]);
    // A flag given wins over the variable, as always.
    fails_with(
        &ws,
        &["resume", "abcd", "--runs-dir", "runs"],
        &empty,
        1,
        &["no session"],
    );
}

// Issue 29, point 7: the smaller findings about sessions.
#[test]
fn a_run_key_filter_a_report_path_and_a_file_among_sessions_are_named() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &small());
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let fp = s.file_name().unwrap().to_string_lossy().into_owned();
    let runs = ws.runs();
    let runs = runs.to_str().unwrap();

    // A fingerprint looked for under another run key: the filter is named,
    // and where the session is.
    fails_with(
        &ws,
        &["resume", &fp, "--run-key", "nokey", "--runs-dir", runs],
        &[],
        1,
        &["run key `nokey` (--run-key)", &format!("k/{fp}")],
    );

    // `report --out` into a directory that does not exist creates nothing.
    let out = ws.path().join("nonexistent/deeper/x.html");
    let out_s = out.to_str().unwrap();
    for format in ["html", "md"] {
        fails_with(
            &ws,
            &[
                "report",
                &fp,
                "--format",
                format,
                "--out",
                out_s,
                "--runs-dir",
                runs,
            ],
            &[],
            1,
            &["does not exist", "x.html"],
        );
    }
    assert!(
        !ws.path().join("nonexistent").exists(),
        "a directory was created"
    );
    let here = ws.path().join("x.html");
    w2c(ws.path())
        .args([
            "report",
            &fp,
            "--format",
            "md",
            "--out",
            "x.html",
            "--runs-dir",
            runs,
        ])
        .assert()
        .success();
    assert!(here.is_file());

    // A regular file where a session directory belongs is listed, not hidden.
    std::fs::write(
        s.parent().unwrap().join("deadbeefdeadbeef"),
        "not a session",
    )
    .unwrap();
    let status = stdout_of(ws.path(), &["status", "--runs-dir", runs]);
    assert!(
        status.contains("k/deadbeefdeadbeef  UNREADABLE")
            && status.contains("is a regular file, not a session directory"),
        "{status}"
    );
    let verify = w2c(ws.path())
        .args(["verify", "--all", "--local-only", "--runs-dir", runs])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(5));
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("k/deadbeefdeadbeef"), "{text}");
}
