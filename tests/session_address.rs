//! One config run under two run keys (as README and docs/tracking.md
//! recommend to keep re-runs apart): both sessions have one fingerprint,
//! and every command that takes a session reaches each of them by its
//! address, `RUN_KEY/FINGERPRINT`, by `--run-key` or `W2C_RUN_KEY` with a
//! bare prefix, or by its directory; a bare prefix alone is refused with
//! both addresses; and every command w2c prints names the session so that
//! it works as printed. One workspace serves every check; a failed check
//! is listed and the others still run, so one run names every finding.
//! (`sync` to a real MLflow server by address is in tests/tracking.rs,
//! whose server is up anyway; here it refuses the bare prefix.)

mod common;

use common::*;
use std::path::Path;
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

/// The checks of one scenario: each failure is written down, and the test
/// fails at the end with all of them.
struct Checks<'a> {
    dir: &'a Path,
    failed: Vec<String>,
}

impl Checks<'_> {
    fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.failed.push(what());
        }
    }

    /// `w2c <args>` succeeded and said every one of `says`; its output.
    fn ok(&mut self, args: &[&str], env: &[(&str, &str)], says: &[&str]) -> String {
        let out = w2c_env(self.dir, args, env);
        let all = text(&out);
        self.check(out.status.success(), || {
            format!("w2c {args:?} {env:?} failed: {all}")
        });
        for s in says {
            self.check(all.contains(s), || {
                format!("w2c {args:?} {env:?} should say {s:?}: {all}")
            });
        }
        all
    }

    /// `w2c <args>` failed with exit 1 saying every one of `says`.
    fn refused(&mut self, args: &[&str], env: &[(&str, &str)], says: &[&str]) {
        let out = w2c_env(self.dir, args, env);
        let all = text(&out);
        self.check(out.status.code() == Some(1), || {
            format!("w2c {args:?} {env:?} should exit 1: {all}")
        });
        for s in says {
            self.check(all.contains(s), || {
                format!("w2c {args:?} {env:?} should say {s:?}: {all}")
            });
        }
    }

    /// `text` holds each of `wanted` and none of `unwanted`.
    fn shows(&mut self, what: &str, text: &str, wanted: &[&str], unwanted: &[&str]) {
        for w in wanted {
            self.check(text.contains(w), || {
                format!("{what} should show {w:?}: {text}")
            });
        }
        for u in unwanted {
            self.check(!text.contains(u), || {
                format!("{what} should not show {u:?}: {text}")
            });
        }
    }
}

/// The command between the first pair of backticks of the line of `text`
/// holding `marker`.
fn suggested(text: &str, marker: &str) -> Option<Vec<String>> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let cmd = line.split('`').nth(1)?;
    Some(cmd.split_whitespace().map(String::from).collect())
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
    let out = w2c_env(
        dir,
        &["run", "--run-key", "pilot", "--config", cfg_arg],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));

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
    let (main_dir, pilot_dir) = (main.to_str().unwrap(), pilot.to_str().unwrap());
    let mut c = Checks {
        dir,
        failed: Vec::new(),
    };

    // The Ctrl-C message and the command the run prints name main's session.
    c.shows(
        "the Ctrl-C message",
        &String::from_utf8_lossy(&out.stderr),
        &[&format!("then `w2c resume {main_addr}` continues")],
        &[],
    );
    let resume = suggested(&String::from_utf8_lossy(&out.stdout), "continue with");
    c.check(
        resume.as_deref() == Some(&["w2c".into(), "resume".into(), main_addr.clone()][..]),
        || format!("the interrupted run should print `w2c resume {main_addr}`: {resume:?}"),
    );
    if let Some(resume) = resume {
        let args: Vec<&str> = resume[1..].iter().map(String::as_str).collect();
        c.ok(
            &args,
            &[],
            &[
                &format!("resuming session {main_addr}"),
                &format!("complete: session {main_addr}"),
            ],
        );
    }

    // A bare prefix, even all 64 characters, cannot tell them apart: every
    // command says so and lists both addresses.
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
            c.refused(&cmd, &[], &[&main_addr, &pilot_addr, cannot]);
        }
    }
    // --run-key contradicting an address is refused.
    c.refused(
        &["resume", &main_short, "--run-key", "pilot"],
        &[],
        &["names run key `main` but --run-key says `pilot`"],
    );
    // A run key where the session is not: says where it is.
    c.refused(
        &["show", fp8],
        &[("W2C_RUN_KEY", "other")],
        &[
            "under run key `other` (W2C_RUN_KEY)",
            &main_addr,
            &pilot_addr,
        ],
    );

    // resume and finalize: the address; a bare prefix with --run-key or
    // W2C_RUN_KEY; the address before W2C_RUN_KEY; the directory.
    let pilot_env = [("W2C_RUN_KEY", "pilot")];
    for (cmd, env, want) in [
        (vec!["resume", pilot_short.as_str()], &[][..], &pilot_addr),
        (vec!["resume", fp8, "--run-key", "main"], &[], &main_addr),
        (vec!["resume", fp8], &pilot_env, &pilot_addr),
        (vec!["resume", main_short.as_str()], &pilot_env, &main_addr),
        (vec!["resume", pilot_dir], &[], &pilot_addr),
        (vec!["finalize", main_short.as_str()], &[], &main_addr),
        (vec!["finalize", fp8], &pilot_env, &pilot_addr),
        (vec!["finalize", fp8, "--run-key", "main"], &[], &main_addr),
    ] {
        c.ok(&cmd, env, &[&format!("complete: session {want}")]);
    }

    // status: one session by its address; one run key; all.
    let status = c.ok(&["status", &pilot_short], &[], &[]);
    c.shows("status pilot/…", &status, &[&pilot_addr], &[&main_addr]);
    let status = c.ok(&["status", "--run-key", "main"], &[], &[]);
    c.shows(
        "status --run-key main",
        &status,
        &[&main_addr],
        &[&pilot_addr],
    );
    c.ok(&["status"], &[], &[&main_addr, &pilot_addr]);
    c.ok(&["ls"], &[], &[&main_addr, &pilot_addr]);

    // show: the address, and commands that work as printed.
    let show = c.ok(
        &["show", &pilot_short],
        &[],
        &[
            &format!("session      {pilot_addr}"),
            &format!("directory    runs/pilot/sessions/{fp16}"),
        ],
    );
    let sync = suggested(&show, "offline (");
    c.check(
        sync.as_deref() == Some(&["w2c".into(), "sync".into(), pilot_addr.clone()][..]),
        || format!("show should suggest `w2c sync {pilot_addr}`: {sync:?}"),
    );
    c.ok(
        &["show", fp8],
        &[("W2C_RUN_KEY", "main")],
        &[&format!("session      {main_addr}")],
    );

    // verify: address, prefix with a run key, directory, --all of one key.
    for (cmd, env) in [
        (vec!["verify", main_short.as_str(), "--local-only"], &[][..]),
        (vec!["verify", fp8, "--local-only"], &pilot_env),
        (vec!["verify", pilot_dir, "--local-only"], &[]),
        (
            vec!["verify", "--all", "--run-key", "pilot", "--local-only"],
            &[],
        ),
    ] {
        c.ok(&cmd, env, &["verify: 1 session"]);
    }

    // report and compare: addresses, directories, --run-key.
    c.ok(
        &["report", &main_short, pilot_dir],
        &[],
        &[&main_addr, &pilot_addr],
    );
    let report = c.ok(&["report", "--run-key", "pilot"], &[], &[]);
    c.shows(
        "report --run-key pilot",
        &report,
        &[&pilot_addr],
        &[&main_addr],
    );
    let report = c.ok(&["report", fp8, "--run-key", "main"], &[], &[]);
    c.shows(
        "report <prefix> --run-key main",
        &report,
        &[&main_addr],
        &[&pilot_addr],
    );
    c.ok(&["compare", &main_short, &pilot_short], &[], &["mcq"]);
    c.ok(&["compare", main_dir, pilot_dir], &[], &["mcq"]);

    // config check names the session the run key gives, and the other.
    c.ok(
        &["config", "check", cfg_arg],
        &[("W2C_RUN_KEY", "main")],
        &[&format!("session: {main_addr}\n"), &pilot_addr],
    );

    // plan prints the address with the whole fingerprint.
    let out = w2c_env(
        dir,
        &["plan", "--run-key", "main", "--config", cfg_arg],
        &[],
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    c.check(
        out.status.success() && printed == format!("main/{fp}"),
        || format!("plan should print main/{fp}: {}", text(&out)),
    );

    assert!(
        c.failed.is_empty(),
        "{} checks failed:\n\n{}",
        c.failed.len(),
        c.failed.join("\n\n")
    );
}
