//! The real binary under arbitrary command lines and environments: every
//! run ends in bounded time with a documented exit code and no panic, and
//! an environment variable w2c reads that is not UTF-8 is an error naming
//! it. Each case starts a process, so the case count is small.

mod common;

use clap::Parser as _;
use common::*;
use proptest::prelude::*;
use std::ffi::OsString;
use std::time::Duration;

/// Exit codes README documents.
const DOCUMENTED: [i32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 129, 130, 143];

/// Environment variables the cases set: every one w2c reads as text, the
/// key variables the `k.toml` config names, and the runs directory.
fn variables() -> Vec<&'static str> {
    let mut v = w2c::env_vars::READ_AS_TEXT.to_vec();
    v.extend(["MY_KEY", "MY_ORG", "W2C_RUNS_DIR"]);
    v
}

/// A value: unset, arbitrary bytes (not always UTF-8), arbitrary text, or
/// one settings get wrong. No value names a reachable tracking server.
fn env_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(None),
        1 => prop::collection::vec(any::<u8>(), 0..10).prop_map(Some),
        1 => "(?s).{0,16}".prop_map(|s| Some(s.into_bytes())),
        1 => prop::sample::select(vec![
            "sk-canary-0123456789", "sk-canary-0123456789\n", "org-1", "a\r\nb", "true",
            "false", "inf", "1e300", "-1", "4294967295", "..", "runs", "file:///x", "",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
    ]
}

/// Bytes as an environment value (a NUL cannot be passed to a process).
fn os(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == 0 { b'0' } else { b })
        .collect();
    std::ffi::OsStr::from_bytes(&bytes).to_os_string()
}

/// A command line: a valid one of each command over the workspace's files
/// (so the environment is what is tested), or a jumble of their words.
fn command_line() -> impl Strategy<Value = Vec<String>> {
    let valid = prop::sample::select(vec![
        "run --config c.toml --run-key k",
        "run --config k.toml --run-key k --no-tracking",
        "run --config c.toml",
        "resume 0000",
        "sync 0000",
        "verify --all --runs-dir runs",
        "status",
        "ls",
        "report --format json",
        "config check c.toml",
        "completions bash",
        "debug render-official --dataset d.jsonl",
    ])
    .prop_map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>());
    prop_oneof![valid, jumble()]
}

/// A subcommand (or not) and any of the words every command takes.
fn jumble() -> impl Strategy<Value = Vec<String>> {
    let sub = prop::sample::select(vec![
        "run",
        "resume",
        "sync",
        "status",
        "verify",
        "report",
        "ls",
        "show",
        "completions",
        "config",
        "debug",
        "help",
        "--version",
        "bogus",
    ]);
    let token = prop_oneof![
        4 => prop::sample::select(vec![
            "--config", "c.toml", "k.toml", "missing.toml", "--run-key", "k", "..",
            "--runs-dir", "runs", "--no-tracking", "--all", "--json", "--deep",
            "--local-only", "--format", "html", "json", "--out", "out.html", "--experiment",
            "check", "bash", "render-official", "--dataset", "d.jsonl", "0000", "--",
        ])
        .prop_map(str::to_string),
        // Any text but NUL, which no process argument can hold.
        1 => "(?s)[^\\x00]{0,10}",
    ];
    (sub, prop::collection::vec(token, 0..6))
        .prop_map(|(sub, rest)| std::iter::once(sub.to_string()).chain(rest).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_binary_ends_cleanly_under_any_command_line_and_environment(
        args in command_line(),
        values in prop::collection::vec(env_value(), 16),
    ) {
        let ws = Workspace::new();
        let small = Opts {
            dataset: sample_dataset(),
            n_per_label: Some(1),
            concurrency: 1,
            max_attempts: 1,
            ..Opts::default()
        };
        ws.config("c.toml", &small);
        ws.http_config(
            "k.toml",
            &small,
            "http://127.0.0.1:9",
            "api_key_env = \"MY_KEY\"\nheaders_env = { \"x-org\" = \"MY_ORG\" }",
        );
        std::fs::copy(sample_dataset(), ws.path().join("d.jsonl")).expect("copy");
        let env: Vec<(&str, OsString)> = variables()
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, os(&v))))
            .collect();
        let mut cmd = w2c(ws.path());
        cmd.args(&args).timeout(Duration::from_secs(60));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run w2c");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        prop_assert!(
            code.is_some_and(|c| DOCUMENTED.contains(&c)),
            "{:?}: exit {:?} (killed after 60 s, or undocumented): {}",
            args,
            code,
            stderr
        );
        prop_assert!(!stderr.contains("panicked"), "{:?}: {}", args, stderr);
        // A command that reads MLflow settings and the run key refuses one
        // that is not UTF-8, naming it.
        let parsed = w2c::cli::Cli::try_parse_from(std::iter::once("w2c".to_string()).chain(args.clone()));
        let reads_env = matches!(args[0].as_str(), "run" | "resume" | "sync" | "verify");
        let bad = env
            .iter()
            .any(|(k, v)| w2c::env_vars::READ_AS_TEXT.contains(k) && v.to_str().is_none());
        if parsed.is_ok() && reads_env && bad {
            prop_assert_eq!(code, Some(1), "{:?}: {}", args, stderr);
            prop_assert!(stderr.contains("not valid UTF-8"), "{:?}: {}", args, stderr);
        }
        // A key is never printed — unless it was given as the run key or
        // the experiment name, names the user chose and w2c shows by design.
        let named = env.iter().any(|(k, v)| {
            matches!(
                *k,
                "W2C_RUN_KEY" | "MLFLOW_EXPERIMENT_NAME" | "MLFLOW_TRACKING_SERVER_CERT_PATH"
            )
                && v.to_string_lossy().contains("sk-canary")
        });
        if !named {
            prop_assert!(!stderr.contains("sk-canary-0123456789"), "{}", stderr);
        }
    }
}

/// A key set by mistake in any variable w2c reads as text is never printed
/// whole, whichever command reads it (MLFLOW_TRACKING_URI repeated it once).
#[test]
fn a_key_in_any_variable_is_never_printed() {
    let ws = Workspace::new();
    let small = Opts {
        dataset: sample_dataset(),
        n_per_label: Some(1),
        concurrency: 1,
        max_attempts: 1,
        ..Opts::default()
    };
    ws.config("c.toml", &small);
    let canary = "sk-canary-0123456789";
    // The run key, the experiment name and the certificate's path are names
    // the user chose, shown by design (the session's address, the MLflow
    // experiment, the file that cannot be read).
    let names = w2c::env_vars::READ_AS_TEXT.iter().filter(|n| {
        !matches!(
            **n,
            "W2C_RUN_KEY" | "MLFLOW_EXPERIMENT_NAME" | "MLFLOW_TRACKING_SERVER_CERT_PATH"
        )
    });
    for name in names {
        for args in [
            &["run", "--config", "c.toml"][..],
            &["status"][..],
            &["sync", "--all"][..],
        ] {
            let mut cmd = w2c(ws.path());
            // The MLflow settings are read only when there is a server to
            // track to (one that refuses connections at once).
            if *name != "MLFLOW_TRACKING_URI" {
                cmd.env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9");
            }
            let out = cmd
                .args(args)
                .env(name, canary)
                .timeout(Duration::from_secs(60))
                .output()
                .expect("run w2c");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !stderr.contains(canary) && !stdout.contains(canary),
                "{name} with {args:?}: {stderr}{stdout}"
            );
        }
    }
}
