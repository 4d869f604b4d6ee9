//! One config run under two run keys (as README and docs/tracking.md
//! recommend to keep re-runs apart): both sessions have one fingerprint,
//! and every command that takes a session reaches each of them by its
//! address, `RUN_KEY/FINGERPRINT`, by `--run-key` or `W2C_RUN_KEY` with a
//! bare prefix, or by its directory; a bare prefix alone is refused with
//! both addresses; and every command w2c prints names the session so that
//! it works as printed.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

/// `w2c <args>` in `dir`, with extra environment.
fn w2c_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = w2c(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run w2c")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts `w2c <args>` succeeded; returns stdout and stderr together.
fn ok(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = w2c_env(dir, args, env);
    assert!(out.status.success(), "w2c {args:?}: {}", text(&out));
    text(&out)
}

/// Asserts `w2c <args>` failed with exit 1 saying every one of `says`.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], says: &[&str]) {
    let out = w2c_env(dir, args, env);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "w2c {args:?}: {all}");
    for s in says {
        assert!(all.contains(s), "w2c {args:?} should say {s:?}: {all}");
    }
}

/// The command between the first pair of backticks of the line of `text`
/// holding `marker`.
fn suggested(text: &str, marker: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` line in:\n{text}"));
    let cmd = line.split('`').nth(1).expect("a command in backticks");
    cmd.split_whitespace().map(String::from).collect()
}

fn args(cmd: &[String]) -> Vec<&str> {
    cmd[1..].iter().map(String::as_str).collect()
}

#[test]
fn two_run_keys_every_command_reaches_each_session_by_its_address() {
    let ws = Workspace::new();
    let dir = ws.path();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            n_per_label: Some(4),
            latency_ms: 60,
            concurrency: 2,
            ..Opts::default()
        },
    );
    // What is synced does not matter here, only which session: no traces
    // (tests/tracking.rs covers them; they take MLflow ~1 s each).
    let toml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{toml}\n[tracking]\ntraces = false\n")).unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    ok(
        dir,
        &["run", "--run-key", "pilot", "--config", cfg_arg],
        &[],
    );

    // The second run under `main` is interrupted: the command it prints
    // continues `main`'s session, although `pilot` holds the same one.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(dir)
        .args(["run", "--run-key", "main", "--config", cfg_arg])
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let results = || {
        std::fs::read_dir(ws.runs().join("main/sessions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|s| std::fs::read(s.path().join("checkpoints/mcq/results.jsonl")).ok())
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .sum::<usize>()
    };
    let running = wait_while_running(&mut child, "a result", Duration::from_secs(60), || {
        results() >= 1
    });
    assert!(running, "the run ended before the interrupt");
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));

    let pilot = only_session(&ws.runs(), "pilot");
    let main = only_session(&ws.runs(), "main");
    let fp = read_json(&main.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(read_json(&pilot.join("manifest.json"))["fingerprint"], fp);
    let (fp8, fp16) = (&fp[..8], &fp[..16]);
    let (main_addr, pilot_addr) = (format!("main/{fp16}"), format!("pilot/{fp16}"));
    let (main_short, pilot_short) = (format!("main/{fp8}"), format!("pilot/{fp8}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("then `w2c resume {main_addr}` continues")),
        "the Ctrl-C message names the session: {stderr}"
    );
    let resume = suggested(&String::from_utf8_lossy(&out.stdout), "continue with");
    assert_eq!(resume, ["w2c", "resume", main_addr.as_str()]);
    let resumed = ok(dir, &args(&resume), &[]);
    assert!(
        resumed.contains(&format!("resuming session {main_addr}")),
        "{resumed}"
    );
    assert!(
        resumed.contains(&format!("complete: session {main_addr}")),
        "{resumed}"
    );

    // A bare prefix, even all 64 characters, cannot tell them apart: every
    // command says so and lists both addresses.
    let both = [main_addr.as_str(), pilot_addr.as_str()];
    let cannot = "more characters cannot tell them apart";
    for bare in [fp8, fp.as_str()] {
        for cmd in [
            vec!["resume", bare],
            vec!["show", bare],
            vec!["verify", bare, "--local-only"],
            vec!["report", bare],
            vec!["compare", bare, &main_short],
            vec!["finalize", bare],
            vec!["sync", bare],
            vec!["status", bare],
        ] {
            let mut says = both.to_vec();
            says.push(cannot);
            refused(dir, &cmd, &[], &says);
        }
    }
    // --run-key contradicting an address is refused.
    refused(
        dir,
        &["resume", &main_short, "--run-key", "pilot"],
        &[],
        &["names run key `main` but --run-key says `pilot`"],
    );
    // A run key where the session is not: says where it is.
    refused(
        dir,
        &["show", fp8],
        &[("W2C_RUN_KEY", "other")],
        &[
            "under run key `other` (W2C_RUN_KEY)",
            &main_addr,
            &pilot_addr,
        ],
    );

    // resume and finalize: the address; a bare prefix with --run-key or
    // W2C_RUN_KEY; the address before W2C_RUN_KEY.
    for (cmd, env, want) in [
        (vec!["resume", pilot_short.as_str()], vec![], &pilot_addr),
        (vec!["resume", fp8, "--run-key", "main"], vec![], &main_addr),
        (
            vec!["resume", fp8],
            vec![("W2C_RUN_KEY", "pilot")],
            &pilot_addr,
        ),
        (
            vec!["resume", main_short.as_str()],
            vec![("W2C_RUN_KEY", "pilot")],
            &main_addr,
        ),
        (vec!["finalize", main_short.as_str()], vec![], &main_addr),
        (
            vec!["finalize", fp8],
            vec![("W2C_RUN_KEY", "pilot")],
            &pilot_addr,
        ),
        (
            vec!["finalize", fp8, "--run-key", "main"],
            vec![],
            &main_addr,
        ),
    ] {
        let said = ok(dir, &cmd, &env);
        assert!(
            said.contains(&format!("complete: session {want}")),
            "w2c {cmd:?} {env:?}: {said}"
        );
    }
    // A session directory works too.
    let said = ok(dir, &["resume", pilot.to_str().unwrap()], &[]);
    assert!(
        said.contains(&format!("resuming session {pilot_addr}")),
        "{said}"
    );

    // status: one session by its address; one run key.
    let status = ok(dir, &["status", &pilot_short], &[]);
    assert!(
        status.contains(&pilot_addr) && !status.contains(&main_addr),
        "{status}"
    );
    let status = ok(dir, &["status", "--run-key", "main"], &[]);
    assert!(
        status.contains(&main_addr) && !status.contains(&pilot_addr),
        "{status}"
    );
    let status = ok(dir, &["status"], &[]);
    assert!(
        status.contains(&main_addr) && status.contains(&pilot_addr),
        "{status}"
    );
    let ls = ok(dir, &["ls"], &[]);
    assert!(ls.contains(&main_addr) && ls.contains(&pilot_addr), "{ls}");

    // show: the address, and commands that work as printed.
    let show = ok(dir, &["show", &pilot_short], &[]);
    assert!(
        show.contains(&format!("session      {pilot_addr}")),
        "{show}"
    );
    assert!(
        show.contains(&format!("directory    runs/pilot/sessions/{fp16}")),
        "{show}"
    );
    let sync_hint = suggested(&show, "offline (");
    assert_eq!(sync_hint, ["w2c", "sync", pilot_addr.as_str()]);
    let show = ok(dir, &["show", fp8], &[("W2C_RUN_KEY", "main")]);
    assert!(
        show.contains(&format!("session      {main_addr}")),
        "{show}"
    );

    // verify: address, prefix with a run key, directory.
    for (cmd, env) in [
        (vec!["verify", main_short.as_str(), "--local-only"], vec![]),
        (
            vec!["verify", fp8, "--local-only"],
            vec![("W2C_RUN_KEY", "pilot")],
        ),
        (
            vec!["verify", pilot.to_str().unwrap(), "--local-only"],
            vec![],
        ),
        (
            vec!["verify", "--all", "--run-key", "pilot", "--local-only"],
            vec![],
        ),
    ] {
        let said = ok(dir, &cmd, &env);
        assert!(said.contains("1 session"), "w2c {cmd:?}: {said}");
    }

    // report and compare: addresses, directories, --run-key.
    let report = ok(dir, &["report", &main_short, pilot.to_str().unwrap()], &[]);
    assert!(
        report.contains(&main_addr) && report.contains(&pilot_addr),
        "{report}"
    );
    let report = ok(dir, &["report", "--run-key", "pilot"], &[]);
    assert!(
        report.contains(&pilot_addr) && !report.contains(&main_addr),
        "{report}"
    );
    let report = ok(dir, &["report", fp8, "--run-key", "main"], &[]);
    assert!(
        report.contains(&main_addr) && !report.contains(&pilot_addr),
        "{report}"
    );
    for cmd in [
        vec!["compare", main_short.as_str(), pilot_short.as_str()],
        vec!["compare", main.to_str().unwrap(), pilot.to_str().unwrap()],
    ] {
        let said = ok(dir, &cmd, &[]);
        assert!(said.contains("mcq"), "w2c {cmd:?}: {said}");
    }

    // config check names the session the run key gives, and the other.
    let check = ok(
        dir,
        &["config", "check", cfg_arg],
        &[("W2C_RUN_KEY", "main")],
    );
    assert!(
        check.contains(&format!("session: {main_addr}\n")),
        "{check}"
    );
    assert!(check.contains(&pilot_addr), "{check}");

    // plan prints the address with the whole fingerprint.
    let out = w2c_env(
        dir,
        &["plan", "--run-key", "main", "--config", cfg_arg],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("main/{fp}")
    );

    // sync: to a real MLflow server, by address; the other stays offline.
    let uri = common::mlflow::MlflowServer::shared();
    let exp = common::mlflow::experiment("address");
    let env = [
        ("MLFLOW_TRACKING_URI", uri),
        ("MLFLOW_EXPERIMENT_NAME", &exp),
    ];
    let synced = ok(dir, &["sync", &pilot_short], &env);
    assert!(
        synced.contains(&format!("synced session {pilot_addr}")),
        "{synced}"
    );
    let ids = |s: &PathBuf| read_json(&s.join("mlflow_ids.json"))["mode"].clone();
    assert_eq!(ids(&pilot), "online");
    assert_eq!(ids(&main), "offline");
    let synced = ok(
        dir,
        &["sync", fp8],
        &[env[0], env[1], ("W2C_RUN_KEY", "main")],
    );
    assert!(
        synced.contains(&format!("synced session {main_addr}")),
        "{synced}"
    );
    assert_eq!(ids(&main), "online");
    ok(dir, &["verify", &pilot_short], &[]);
}
