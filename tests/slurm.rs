//! The Slurm recipe in `deploy/slurm/` run on a real single-node Slurm
//! cluster (slurmctld + slurmd + munge, started by `.ci/slurm/start_slurm.sh`,
//! as root): `submit.sh` plans a session, submits `sbatch --array=0-3`
//! (each task starts its own `w2c mock-server` as the node's model server
//! and runs its shard; the user's extra sbatch arguments go to the array
//! only) and the dependent finalize job; the result is that of an unsharded
//! run. The runs directory already holds that unsharded run of the same
//! config under another run key: the recipe names its session by the
//! address `w2c plan` prints (`RUN_KEY/FINGERPRINT`, here with a generated
//! run key), never by a fingerprint both share. Then a running task is
//! `scontrol requeue`d, as a preemption does: w2c pauses on Slurm's SIGTERM
//! and leaves a run-log line, the task runs again (its log appended to),
//! resumes its slice repeating at most the request that was in flight and,
//! being the last, finalizes the session. Arrays that cannot be shards
//! (`--array=0-6:2`, `--array=2`) are refused before the model server starts.

mod common;

use common::{read_json, read_jsonl, w2c, Opts, Workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local cluster; stopped on drop if this test started it.
struct Cluster {
    started_here: bool,
}

impl Cluster {
    fn start() -> Cluster {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(
            root,
            "the Slurm test starts slurmctld, slurmd and munged and needs root: run it as root (CI does), or skip it with `cargo test -- --skip slurm`"
        );
        let up = Command::new("scontrol")
            .arg("ping")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("UP"));
        let out = Command::new(repo().join(".ci/slurm/start_slurm.sh"))
            .env("SLURM_LOCAL_CPUS", "6")
            .output()
            .expect("run .ci/slurm/start_slurm.sh");
        assert!(
            out.status.success(),
            "cannot start the local Slurm cluster: install Debian's slurm-wlm (`apt-get install slurm-wlm`; .ci/slurm/start_slurm.sh does it as root): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        Cluster { started_here: !up }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new(repo().join(".ci/slurm/stop_slurm.sh")).output();
        }
    }
}

fn slurm(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until no task of `jobs` is pending, running or completing.
fn wait_jobs(jobs: &[&str], limit: Duration) {
    let start = Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-j", &jobs.join(",")])
            .output()
            .expect("squeue");
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "Slurm jobs {jobs:?} still queued after {limit:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Polls `cond` every 300 ms (Slurm's own granularity is about 1 s).
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `JobState=...` of one job (or array task) as scontrol shows it.
fn job_state(job: &str) -> String {
    let text = slurm("scontrol", &["show", "job", job]);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("?")
        .to_string()
}

/// Four free ports in a row, from a random start.
fn free_ports() -> u16 {
    let seed = std::process::id() as u16;
    for base in (20000 + seed % 20000..60000).step_by(7) {
        if (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no four free ports in a row");
}

fn config(ws: &Workspace) -> PathBuf {
    let o = Opts {
        n_per_label: Some(5),
        methods: "\"mcq\", \"llm_judge\"".into(),
        // One request at a time: the slow task is killed mid-namespace.
        concurrency: 1,
        ..Opts::default()
    };
    // The config's endpoint is never used: every task points the provider
    // at the server it started (W2C_BASE_URLS_MOCK).
    ws.http_config("eval.toml", &o, "http://127.0.0.1:9", "")
}

/// The environment every job gets (sbatch exports the submitter's). Each
/// task's model server writes down the requests it gets in
/// `requests-<task>.jsonl` (appended to by a requeued task's new server).
fn job_env(cmd: &mut Command, ws: &Workspace, server: &str, port: u16) {
    let bin = assert_cmd::cargo::cargo_bin("w2c");
    cmd.current_dir(ws.path())
        .env("W2C_BIN", &bin)
        .env("W2C_RUNS_DIR", ws.runs())
        .env("W2C_PROVIDER", "mock")
        .env("W2C_SERVER_PORT", port.to_string())
        .env(
            "W2C_SERVER_CMD",
            format!(
                "{} mock-server {server} --record {}/requests-$SLURM_ARRAY_TASK_ID.jsonl",
                bin.display(),
                ws.path().display()
            ),
        )
        .env("W2C_SERVER_READY_PATH", "/health")
        // The local cluster's KillWait is 5 s (see stop_times_fit): the
        // pause must end before Slurm's SIGKILL, as docs/cluster.md says.
        .env("W2C_STOP_GRACE_SECS", "1")
        .env("W2C_STOP_TIMEOUT_SECS", "3");
    for var in common::MLFLOW_VARS {
        cmd.env_remove(var);
    }
}

/// A task of this test needs 1 CPU and little memory (the script's
/// defaults are for a node serving a 7B model with vLLM).
const SMALL_TASK: [&str; 2] = ["--cpus-per-task=1", "--mem=512M"];

/// The cluster's KillWait leaves room for the stop timeout the jobs get.
fn stop_times_fit() {
    let config = slurm("scontrol", &["show", "config"]);
    let kill_wait: u64 = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("KillWait"))
        .and_then(|v| {
            v.trim()
                .trim_start_matches('=')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("KillWait in `scontrol show config`");
    assert!(
        kill_wait > 3,
        "the cluster's KillWait ({kill_wait} s) must exceed the jobs' W2C_STOP_TIMEOUT_SECS (3 s)"
    );
}

/// Request bodies sent more than once, over every line of a `--record` file.
fn repeated_requests(path: &Path) -> usize {
    let mut seen = std::collections::HashSet::new();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).expect("record line");
            !seen.insert(v["body"].to_string())
        })
        .count()
}

/// Submits `sbatch` (with `--parsable`) and returns the job id.
fn submitted(sbatch: &mut Command) -> String {
    let out = sbatch.output().expect("sbatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string()
}

/// The config run unsharded under run key `u` (before the recipe: the
/// same session under another run key).
fn unsharded(ws: &Workspace) -> PathBuf {
    let server = common::MockServer::start(&[], &[]);
    let cfg = config(ws);
    let out = w2c(ws.path())
        .args(["run", "--run-key", "u", "--config"])
        .arg(&cfg)
        .env("W2C_BASE_URLS_MOCK", format!("{}/v1", server.url))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::only_session(&ws.runs(), "u")
}

/// The sharded session's metrics and predictions are the unsharded one's.
fn assert_same(session: &Path, plain: &Path) {
    for ns in ["mcq", "llm_judge"] {
        let m = |s: &Path| read_json(&s.join("artifacts_local").join(ns).join("metrics.json"));
        assert_eq!(m(session), m(plain), "{ns}: metrics");
        let p = |s: &Path| {
            std::fs::read(s.join("artifacts_local").join(ns).join("predictions.jsonl"))
                .expect("predictions")
        };
        assert_eq!(p(session), p(plain), "{ns}: predictions");
    }
}

fn verify_clean(ws: &Workspace, address: &str) {
    let out = w2c(ws.path())
        .args(["verify", address, "--deep"])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs `deploy/slurm/submit.sh` (`cmd`), which must succeed, and returns
/// what its line names: the session's address, the array job and the
/// finalize job.
fn submit(cmd: &mut Command) -> (String, String, String) {
    let out = cmd.output().expect("submit.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {line:?}"))
            .to_string()
    };
    (field("session"), field("array_job"), field("finalize_job"))
}

fn log_of(ws: &Workspace, name: &str) -> String {
    std::fs::read_to_string(ws.path().join(name)).unwrap_or_default()
}

/// The tests of this file share one local cluster, which the test that
/// started it stops: they take turns.
static CLUSTER_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn slurm_array_runs_the_shards_and_a_requeued_task_resumes_its_slice() {
    let _turn = CLUSTER_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _cluster = Cluster::start();

    // 1. deploy/slurm/submit.sh: plan, --array=0-3, finalize after it, with
    // the same config already run under run key `u`.
    let ws = Workspace::new();
    let cfg = config(&ws);
    let plain = unsharded(&ws);
    let port = free_ports();
    let mut cmd = Command::new(repo().join("deploy/slurm/submit.sh"));
    // The user's extra arguments (here a time limit and a marker, with the
    // small resources this test needs) are the array's only.
    cmd.arg(&cfg)
        .arg("4")
        .args(["--time=00:30:00", "--comment=w2c-array-only"])
        .args(SMALL_TASK);
    job_env(&mut cmd, &ws, "--port $PORT --latency-ms 5", port);
    let (address, array, finalize) = submit(&mut cmd);
    // A generated run key, and the whole fingerprint.
    let (key, fp) = address.split_once('/').expect("RUN_KEY/FINGERPRINT");
    assert!(key.starts_with("run-") && fp.len() == 64, "{address}");
    wait_jobs(&[&array, &finalize], Duration::from_secs(180));
    for task in 0..4 {
        let log = log_of(&ws, &format!("w2c-shard-{array}_{task}.log"));
        assert_eq!(
            job_state(&format!("{array}_{task}")),
            "COMPLETED",
            "task {task}: {log}"
        );
        assert!(
            log.contains(&format!("shard {task}/4 (from Slurm array task {task}")),
            "{log}"
        );
        assert!(
            log.contains("mcq: finished"),
            "progress lines in the job log: {log}"
        );
    }
    assert_eq!(job_state(&finalize), "COMPLETED");
    let shown = |job: &str| slurm("scontrol", &["show", "job", job]);
    let array_task = shown(&format!("{array}_0"));
    assert!(
        array_task.contains("Comment=w2c-array-only") && array_task.contains("TimeLimit=00:30:00"),
        "{array_task}"
    );
    let fin_job = shown(&finalize);
    assert!(
        !fin_job.contains("w2c-array-only") && !fin_job.contains("TimeLimit=00:30:00"),
        "the finalize job got the array's arguments: {fin_job}"
    );
    let session = common::only_session(&ws.runs(), key);
    for ns in ["mcq", "llm_judge.target", "llm_judge"] {
        assert!(
            session
                .join("checkpoints")
                .join(ns)
                .join("_DONE.json")
                .is_file(),
            "{ns}"
        );
        let by: usize = (0..4)
            .filter(|t| {
                log_of(&ws, &format!("w2c-shard-{array}_{t}.log"))
                    .contains(&format!("note: {ns}: every item is done: finalized here"))
            })
            .count();
        assert_eq!(by, 1, "{ns} finalized once, by the last task");
    }
    let fin = log_of(&ws, &format!("w2c-finalize-{finalize}.log"));
    assert!(
        fin.contains(&format!("complete: session {key}/{}", &fp[..16])),
        "{fin}"
    );
    assert_same(&session, &plain);
    verify_clean(&ws, &address);

    // 2. Task 2 (slow) requeued while it runs, as a preemption does.
    stop_times_fit();
    let ws = Workspace::new();
    let cfg = config(&ws);
    let plain = unsharded(&ws);
    let port = free_ports();
    let fp = common::plan(&ws, &cfg, 4, &[]);
    let address = format!("k/{fp}");
    let mut sbatch = Command::new("sbatch");
    sbatch
        .args(["--parsable", "--array=0-3"])
        .args(SMALL_TASK)
        .arg(repo().join("deploy/slurm/w2c-shard.sbatch"))
        .arg(&address);
    job_env(
        &mut sbatch,
        &ws,
        "--port $PORT --latency-ms $(( SLURM_ARRAY_TASK_ID == 2 ? 300 : 5 ))",
        port,
    );
    let array = submitted(&mut sbatch);
    let session = ws.runs().join("k/sessions").join(&fp[..16]);
    let slice = session.join("checkpoints/mcq/shards/shard-2-of-4/results.jsonl");
    wait_for("task 2's first results", Duration::from_secs(120), || {
        std::fs::read(&slice).is_ok_and(|b| b.iter().filter(|&&c| c == b'\n').count() >= 2)
    });
    slurm("scontrol", &["requeue", &format!("{array}_2")]);
    wait_for("the requeued task", Duration::from_secs(180), || {
        job_state(&format!("{array}_2")) == "COMPLETED"
    });
    for t in [0, 1, 3] {
        assert_eq!(job_state(&format!("{array}_{t}")), "COMPLETED");
    }
    let log = log_of(&ws, &format!("w2c-shard-{array}_2.log"));
    // Both runs of the task are in its log (--open-mode=append).
    assert_eq!(log.matches("resuming session").count(), 2, "{log}");
    assert!(log.contains(&format!("== task {array}_2 on ")), "{log}");
    assert!(
        log.contains(", run 2, "),
        "SLURM_RESTART_COUNT in the header: {log}"
    );
    assert!(log.contains("SIGTERM: pausing"), "w2c paused: {log}");
    let runs: Vec<Value> =
        read_jsonl(&session.join("checkpoints/mcq/shards/shard-2-of-4/run_log.jsonl"));
    let paused = runs
        .iter()
        .find(|r| r["stopped_by"] == "SIGTERM")
        .unwrap_or_else(|| panic!("a run-log line of the pause: {runs:?}\n{log}"));
    assert_eq!(paused["cancelled"], true);
    let done_before = paused["resumed"].as_u64().unwrap() + paused["finished"].as_u64().unwrap();
    assert!(done_before >= 2, "{paused}");
    assert!(
        log.contains(&format!("mcq: {done_before} of 4 items were already done")),
        "the requeued task resumed its slice: {log}"
    );
    assert!(
        log.contains("note: mcq: every item is done: finalized here"),
        "{log}"
    );
    // One request at a time (concurrency 1): at most that one is sent again.
    let repeated = repeated_requests(&ws.path().join("requests-2.jsonl"));
    assert!(repeated <= 1, "{repeated} requests repeated");

    // 3. Arrays whose tasks are not shards are refused before the model
    // server starts (it would load a model for nothing).
    for (array_arg, why) in [
        ("--array=0-6:2", "has a step"),
        ("--array=2", "SLURM_ARRAY_TASK_COUNT=1"),
    ] {
        let mut sbatch = Command::new("sbatch");
        sbatch
            .args(["--parsable", array_arg])
            .args(SMALL_TASK)
            .arg(repo().join("deploy/slurm/w2c-shard.sbatch"))
            .arg(&address);
        job_env(&mut sbatch, &ws, "--port $PORT", port);
        let marker = ws.path().join("server-started");
        let bin = assert_cmd::cargo::cargo_bin("w2c");
        sbatch.env(
            "W2C_SERVER_CMD",
            format!(
                "touch {}; exec {} mock-server --port $PORT",
                marker.display(),
                bin.display()
            ),
        );
        let job = submitted(&mut sbatch);
        wait_jobs(&[&job], Duration::from_secs(120));
        let task = if array_arg == "--array=2" { 2 } else { 4 };
        let log = log_of(&ws, &format!("w2c-shard-{job}_{task}.log"));
        assert_eq!(job_state(&format!("{job}_{task}")), "FAILED", "{log}");
        assert!(log.contains(why), "{array_arg}: {log}");
        assert!(
            !marker.exists(),
            "{array_arg}: the model server was started: {log}"
        );
    }
    assert_same(&session, &plain);
    verify_clean(&ws, &address);
}

/// A tracked array of 4 shards on the real cluster while MLflow holds every
/// trace request (a server at its trace ceiling, made endless) and the
/// request timeout is an hour: no task waits on traces beyond the default
/// bound (issue 28). Every array task and the finalize job end, each
/// namespace's child run is FINISHED, the traces are pending, and once the
/// server takes them `w2c sync` sends each once.
#[test]
fn a_tracked_array_never_stalls_on_traces_the_server_holds() {
    let _turn = CLUSTER_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _cluster = Cluster::start();
    let uri = common::mlflow::MlflowServer::shared();
    let proxy =
        common::holding_proxy::HoldingProxy::start(uri, &["/api/3.0/mlflow/traces", "/v1/traces"]);
    let exp = common::mlflow::experiment("slurm-held-traces");
    let ws = Workspace::new();
    let cfg = config(&ws);
    let port = free_ports();
    let mut cmd = Command::new(repo().join("deploy/slurm/submit.sh"));
    cmd.arg(&cfg).arg("4").args(SMALL_TASK);
    job_env(&mut cmd, &ws, "--port $PORT --latency-ms 5", port);
    cmd.env("MLFLOW_TRACKING_URI", &proxy.url)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600");
    let (address, array, finalize) = submit(&mut cmd);
    // Each process waits at most 60 s for its traces at its end (the
    // default bound: 3% of its time, 10-60 s); a task that waited on the
    // held requests would wait an hour.
    wait_jobs(&[&array, &finalize], Duration::from_secs(240));
    for task in 0..4 {
        assert_eq!(
            job_state(&format!("{array}_{task}")),
            "COMPLETED",
            "{}",
            log_of(&ws, &format!("w2c-shard-{array}_{task}.log"))
        );
    }
    assert_eq!(job_state(&finalize), "COMPLETED");
    assert!(proxy.held() >= 1, "no trace request was held");
    let runs = common::mlflow::query(uri, &exp, false, &[]);
    let runs = runs["runs"].as_array().cloned().unwrap_or_default();
    let children: Vec<&Value> = runs
        .iter()
        .filter(|r| r["tags"]["w2c.namespace"].is_string())
        .collect();
    assert!(!children.is_empty(), "no child runs: {runs:?}");
    for child in &children {
        assert_eq!(child["status"], "FINISHED", "{child}");
    }
    let (key, _) = address.split_once('/').expect("RUN_KEY/FINGERPRINT");
    let session = common::only_session(&ws.runs(), key);
    let ids = read_json(&session.join("mlflow_ids.json"));
    assert!(
        ids["pending"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.starts_with("traces: ")))),
        "{ids}"
    );
    // Once the server takes them, `w2c sync` sends every trace, once.
    proxy.release();
    let out = w2c(ws.path())
        .args(["sync", &address])
        .env("W2C_RUNS_DIR", ws.runs())
        .env("MLFLOW_TRACKING_URI", &proxy.url)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .output()
        .expect("sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = common::mlflow::traces(uri, &exp);
    assert!(common::mlflow::assert_traces_complete(&session, &dump) > 0);
}
