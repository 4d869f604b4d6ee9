//! SIGINT (Ctrl-C), SIGTERM and SIGHUP pause a run: stop issuing requests,
//! finish or abandon the ones in flight within the grace period, leave a
//! consistent session and a run-log line, exit 128 + the signal's number;
//! resume completes it, repeating at most the requests that were in flight.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resumes the only session of run key `k` to its end, with `envs` set.
fn resume_to_the_end(ws: &Workspace, envs: &[(&str, String)]) {
    let s = only_session(&ws.runs(), "k");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cmd = w2c(ws.path());
    cmd.args(["resume", &fp, "--runs-dir"]).arg(ws.runs());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.assert().success();
}

/// Sends `kill -<name>` to a process.
fn signal(pid: u32, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

#[test]
fn ctrl_c_saves_progress_and_resume_matches_reference() {
    let opts = Opts {
        latency_ms: 150,
        concurrency: 2,
        ..Opts::default()
    };
    let reference = Workspace::new();
    let cfg = reference.config("eval.toml", &opts);
    w2c(reference.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let ref_metrics =
        read_json(&only_session(&reference.runs(), "k").join("artifacts_local/mcq/metrics.json"));

    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &opts);
    let mut child = spawn_run(&ws, &cfg);
    let running = wait_while_running(
        &mut child,
        "a first result",
        Duration::from_secs(60),
        || result_lines(&ws, "mcq") >= 1,
    );
    assert!(running, "the run ended before it could be interrupted");
    sigint(child.id());
    let code = wait_with_deadline(&mut child, Duration::from_secs(5));
    assert_eq!(code, 130);
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
    let done = read_jsonl(&s.join("checkpoints/mcq/results.jsonl")).len();
    assert!(done > 0 && done < 30, "{done} results after the interrupt");
    // The lock was released: resume works and matches the reference.
    resume_to_the_end(&ws, &[]);
    let m = read_json(&s.join("artifacts_local/mcq/metrics.json"));
    assert_eq!(m["metrics"], ref_metrics["metrics"]);
}

#[test]
fn ctrl_c_abandons_hung_requests_within_the_grace_period() {
    let server = MockServer::start(&["--rate-hang", "1.0", "--hang-secs", "60"], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        concurrency: 4,
        ..Opts::default()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "timeout_secs = 120");
    let mut child = spawn_run(&ws, &cfg);
    wait_for("hung requests in flight", Duration::from_secs(60), || {
        server.stats()["fault_hang"].as_u64() >= Some(1)
    });
    let t = Instant::now();
    sigint(child.id());
    let code = wait_with_deadline(&mut child, Duration::from_secs(20));
    assert_eq!(code, 130);
    // The default grace period (W2C_STOP_GRACE_SECS, 10 s), then out.
    assert!(
        t.elapsed() >= Duration::from_secs(10) && t.elapsed() < Duration::from_secs(14),
        "{:?}",
        t.elapsed()
    );
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
}

/// A `w2c` child whose standard output and error go to files.
struct Logged {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Logged {
    fn spawn(ws: &Workspace, args: &[&str], envs: &[(&str, String)]) -> Logged {
        let stdout = ws.path().join(format!("stdout-{}.txt", args[0]));
        let stderr = ws.path().join(format!("stderr-{}.txt", args[0]));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"));
        cmd.current_dir(ws.path())
            .args(args)
            .env_remove("W2C_RUN_KEY")
            .env_remove("W2C_RUNS_DIR")
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for var in MLFLOW_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Logged {
            child: cmd.spawn().expect("spawn w2c"),
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }
}

/// The request bodies a `mock-server --record` file holds, one per request.
fn recorded(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("record line")["body"].to_string()
        })
        .collect()
}

/// The last line of the only session's `mcq/run_log.jsonl`.
fn last_run_log(ws: &Workspace) -> serde_json::Value {
    let s = only_session(&ws.runs(), "k");
    read_jsonl(&s.join("checkpoints/mcq/run_log.jsonl"))
        .pop()
        .expect("a run-log line")
}

#[test]
fn sigterm_pauses_lets_requests_in_flight_finish_and_resume_repeats_none() {
    // A real HTTP endpoint that writes down every request it gets.
    let ws = Workspace::new();
    let log = ws.path().join("requests.jsonl");
    let server = MockServer::start(
        &["--latency-ms", "400", "--record", log.to_str().unwrap()],
        &[],
    );
    let cfg = ws.http_config("eval.toml", &Opts::default(), &server.url, "");
    let cfg = cfg.to_str().unwrap();
    let mut run = Logged::spawn(&ws, &["run", "--run-key", "k", "--config", cfg], &[]);
    let running = wait_while_running(
        &mut run.child,
        "results, with requests in flight",
        Duration::from_secs(60),
        || result_lines(&ws, "mcq") >= 4,
    );
    assert!(running, "the run ended before it could be stopped");
    // As a job engine stops a task: SIGTERM to w2c, and the same again
    // forwarded by the task's script a moment later.
    let t = Instant::now();
    run.signal("TERM");
    run.signal("TERM");
    let code = wait_with_deadline(&mut run.child, Duration::from_secs(15));
    let stderr = run.stderr();
    assert_eq!(code, 143, "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{:?}: requests of 400 ms need not the whole grace period",
        t.elapsed()
    );
    assert!(
        stderr.contains("SIGTERM: pausing: no new requests"),
        "{stderr}"
    );
    let stdout = run.stdout();
    assert!(
        stdout.contains("interrupted by SIGTERM: progress is saved; continue with `w2c resume"),
        "{stdout}"
    );
    let line = last_run_log(&ws);
    assert_eq!(line["cancelled"], true, "{line}");
    assert_eq!(line["stopped_by"], "SIGTERM", "{line}");
    assert_eq!(
        line["abandoned"], 0,
        "the requests in flight finished: {line}"
    );
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("checkpoints/mcq/_DONE.json").exists());
    let done = read_jsonl(&s.join("checkpoints/mcq/results.jsonl")).len();
    assert_eq!(
        recorded(&log).len(),
        done,
        "every request sent has its result"
    );

    resume_to_the_end(&ws, &[]);
    let bodies = recorded(&log);
    let distinct: std::collections::HashSet<&String> = bodies.iter().collect();
    assert_eq!(bodies.len(), 30, "one request per item, none repeated");
    assert_eq!(distinct.len(), 30);
}

#[test]
fn sigterm_abandons_hung_requests_at_the_set_grace_and_only_they_are_redone() {
    // Some requests hang: at the stop they are in flight and cannot finish.
    let ws = Workspace::new();
    let first_log = ws.path().join("first.jsonl");
    let hanging = MockServer::start(
        &[
            "--latency-ms",
            "50",
            "--rate-hang",
            "0.3",
            "--hang-secs",
            "120",
            "--record",
            first_log.to_str().unwrap(),
        ],
        &[],
    );
    let cfg = ws.http_config(
        "eval.toml",
        &Opts::default(),
        &hanging.url,
        "timeout_secs = 300",
    );
    let cfg = cfg.to_str().unwrap();
    let stop = [
        ("W2C_STOP_GRACE_SECS", "1".to_string()),
        ("W2C_STOP_TIMEOUT_SECS", "4".to_string()),
    ];
    let mut run = Logged::spawn(&ws, &["run", "--run-key", "k", "--config", cfg], &stop);
    wait_for("hung requests in flight", Duration::from_secs(60), || {
        hanging.stats()["fault_hang"].as_u64() >= Some(2)
    });
    let t = Instant::now();
    run.signal("TERM");
    let code = wait_with_deadline(&mut run.child, Duration::from_secs(10));
    assert_eq!(code, 143, "{}", run.stderr());
    assert!(
        t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_secs(4),
        "{:?}: the set grace period, then out",
        t.elapsed()
    );
    let line = last_run_log(&ws);
    let abandoned = line["abandoned"].as_u64().unwrap();
    assert!(
        (2..=4).contains(&abandoned),
        "the hung requests in flight were abandoned: {line}"
    );
    assert_eq!(line["stopped_by"], "SIGTERM");

    // Resumed against an endpoint that answers: only the abandoned
    // requests are sent again.
    let second_log = ws.path().join("second.jsonl");
    let answering = MockServer::start(&["--record", second_log.to_str().unwrap()], &[]);
    resume_to_the_end(
        &ws,
        &[("W2C_BASE_URLS_MOCK", format!("{}/v1", answering.url))],
    );
    let before: std::collections::HashSet<String> = recorded(&first_log).into_iter().collect();
    let repeated = recorded(&second_log)
        .iter()
        .filter(|b| before.contains(*b))
        .count();
    assert_eq!(
        repeated as u64, abandoned,
        "the resume repeats exactly the requests abandoned in flight"
    );
}

#[test]
fn a_second_signal_exits_at_once_and_the_stop_timeout_bounds_a_pause() {
    // Requests that hang: the pause would take the whole grace period.
    let server = MockServer::start(&["--rate-hang", "1.0", "--hang-secs", "120"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config(
        "eval.toml",
        &Opts::default(),
        &server.url,
        "timeout_secs = 300",
    );
    let cfg = cfg.to_str().unwrap();
    let mut run = Logged::spawn(&ws, &["run", "--run-key", "k", "--config", cfg], &[]);
    wait_for("hung requests in flight", Duration::from_secs(60), || {
        server.stats()["fault_hang"].as_u64() >= Some(1)
    });
    run.signal("TERM");
    wait_for("the pause message", Duration::from_secs(10), || {
        run.stderr().contains("SIGTERM: pausing")
    });
    let t = Instant::now();
    run.signal("INT");
    let code = wait_with_deadline(&mut run.child, Duration::from_secs(5));
    assert_eq!(code, 143, "{}", run.stderr());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        run.stderr().contains("SIGINT: exiting now"),
        "{}",
        run.stderr()
    );

    // A tracking server that accepts connections and never answers holds
    // the run at its start: the stop timeout ends the pause anyway.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().flatten().collect();
        drop(held);
    });
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &Opts::default());
    let cfg = cfg.to_str().unwrap();
    let mut run = Logged::spawn(
        &ws,
        &["run", "--run-key", "k", "--config", cfg],
        &[
            ("MLFLOW_TRACKING_URI", format!("http://{addr}")),
            ("W2C_STOP_GRACE_SECS", "1".into()),
            ("W2C_STOP_TIMEOUT_SECS", "3".into()),
        ],
    );
    wait_for("the session opened", Duration::from_secs(30), || {
        run.stderr().contains("new session")
    });
    let t = Instant::now();
    run.signal("TERM");
    let code = wait_with_deadline(&mut run.child, Duration::from_secs(10));
    assert_eq!(code, 143, "{}", run.stderr());
    assert!(
        t.elapsed() >= Duration::from_secs(3) && t.elapsed() < Duration::from_secs(6),
        "{:?}",
        t.elapsed()
    );
    assert!(
        run.stderr()
            .contains("SIGTERM: still stopping after 3 s (W2C_STOP_TIMEOUT_SECS): exiting now"),
        "{}",
        run.stderr()
    );
}

/// Runs `w2c <args>` on a new pseudo-terminal (its controlling terminal, as
/// in an SSH session), waits until `ready` holds, closes the terminal as a
/// dropped connection does and returns w2c's exit code (-1: killed by a
/// signal) and what it printed before.
fn hang_up_terminal(ws: &Workspace, args: &[&str], ready: impl Fn() -> bool) -> (i32, String) {
    let script = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
flag = sys.argv[0]
while not os.path.exists(os.environ["READY_FLAG"]):
    try:
        seen += os.read(fd, 65536)
    except OSError:
        break
os.close(fd)
_, status = os.waitpid(pid, 0)
sys.stdout.write("%d\n" % (os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else -1))
sys.stdout.write(seen.decode("utf-8", "replace"))
"#;
    let flag = ws.path().join("ready.flag");
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(assert_cmd::cargo::cargo_bin("w2c"))
        .args(args)
        .current_dir(ws.path())
        .env("READY_FLAG", &flag)
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (for a pseudo-terminal)");
    wait_for("the run under way", Duration::from_secs(60), &ready);
    std::fs::write(&flag, "").expect("flag");
    let out = {
        use std::io::Read as _;
        let mut s = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        s
    };
    let _ = child.wait();
    let (code, printed) = out.split_once('\n').expect("exit code line");
    (code.trim().parse().expect("exit code"), printed.to_string())
}

#[test]
fn a_closed_terminal_pauses_the_run_and_nohup_keeps_it_running() {
    let opts = Opts {
        latency_ms: 150,
        concurrency: 2,
        ..Opts::default()
    };
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &opts);
    let cfg = cfg.to_str().unwrap().to_string();
    let (code, printed) =
        hang_up_terminal(&ws, &["run", "--run-key", "k", "--config", &cfg], || {
            result_lines(&ws, "mcq") >= 2
        });
    // Paused, not killed, and not failing on the terminal that went away.
    assert_eq!(code, 129, "{printed}");
    let line = last_run_log(&ws);
    assert_eq!(line["stopped_by"], "SIGHUP", "{line}");
    assert_eq!(line["cancelled"], true, "{line}");

    // Started with SIGHUP ignored (`nohup`), a run ignores a hangup.
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &opts);
    let mut child = std::process::Command::new("nohup")
        .arg(assert_cmd::cargo::cargo_bin("w2c"))
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .current_dir(ws.path())
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nohup");
    let running = wait_while_running(&mut child, "results", Duration::from_secs(60), || {
        result_lines(&ws, "mcq") >= 2
    });
    assert!(running, "the run ended before the hangup");
    signal(child.id(), "HUP");
    let code = wait_with_deadline(&mut child, Duration::from_secs(60));
    assert_eq!(code, 0, "the run went on to the end");
    let s = only_session(&ws.runs(), "k");
    assert!(s.join("checkpoints/mcq/_DONE.json").exists());
}

/// The `usage` of a finished namespace's `metrics.json`.
fn usage_of(session: &std::path::Path, ns: &str) -> serde_json::Value {
    read_json(
        &session
            .join("artifacts_local")
            .join(ns)
            .join("metrics.json"),
    )["usage"]
        .clone()
}

#[test]
fn a_judge_resumed_after_its_target_stream_counts_every_token_and_cost_once() {
    // Priced target and judge; the run is killed once the judge stream has
    // begun, the target stream being done.
    let opts = Opts {
        latency_ms: 100,
        methods: "\"llm_judge\"".into(),
        ..Opts::default()
    };
    let prices = "\n[prices.\"mock-model\"]\nprompt_per_mtok = 10.0\ncompletion_per_mtok = 30.0\n\n[prices.\"mock-judge\"]\nprompt_per_mtok = 25.0\ncompletion_per_mtok = 50.0\n";
    let priced = |ws: &Workspace| {
        let cfg = ws.config("eval.toml", &opts);
        let text = std::fs::read_to_string(&cfg).unwrap() + prices;
        ws.write("eval.toml", &text)
    };
    let reference = Workspace::new();
    run_ok(&reference, &priced(&reference));
    let want = usage_of(&only_session(&reference.runs(), "k"), "llm_judge");
    assert!(want["cost_usd"].as_f64().is_some(), "{want}");

    let ws = Workspace::new();
    let mut child = spawn_run(&ws, &priced(&ws));
    let running = wait_while_running(
        &mut child,
        "2 judge results",
        Duration::from_secs(60),
        || result_lines(&ws, "llm_judge") >= 2,
    );
    assert!(running, "the run ended before it could be killed");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let s = only_session(&ws.runs(), "k");
    assert!(s.join("checkpoints/llm_judge.target/_DONE.json").exists());
    assert!(!s.join("checkpoints/llm_judge/_DONE.json").exists());
    resume_to_the_end(&ws, &[]);
    assert_eq!(usage_of(&s, "llm_judge"), want);

    // verify recomputes the usage and cost from the records.
    let out = w2c(ws.path())
        .args(["verify", "--all", "--local-only", "--json", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let usage: Vec<&serde_json::Value> = checks
        .as_array()
        .expect("a list of checks")
        .iter()
        .filter(|c| c["check"] == "usage recompute")
        .collect();
    assert_eq!(usage.len(), 2, "{checks}");
    assert!(usage.iter().all(|c| c["status"] == "OK"), "{checks}");
}
