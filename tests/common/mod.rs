//! Shared helpers for the integration tests: temp workspaces, configs, and the
//! location of the shared When2Call test file.
#![allow(dead_code)]

pub mod holding_proxy;
pub mod hostile_http;
pub mod llama;
pub mod mlflow;

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The shared directory beside the repository (`W2C_SHARED_DIR` overrides it).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("W2C_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// The real 300-row When2Call test file, beside the repository.
pub fn shared_dataset() -> PathBuf {
    let p = shared_dir().join("data/when2call/when2call_test_llm_judge.jsonl");
    if !p.exists() {
        panic!(
            "missing {}: check out the shared When2Call data beside the repository (../shared) or set W2C_SHARED_DIR to its directory",
            p.display()
        );
    }
    p
}

/// The official When2Call lm-eval task files, beside the repository.
pub fn official_task_dir() -> PathBuf {
    let d = shared_dir().join("reference/when2call_lm_eval");
    assert!(
        d.join("utils.py").is_file(),
        "the official When2Call task files are missing at {} (set W2C_SHARED_DIR)",
        d.display()
    );
    d
}

/// A helper script under tests/support.
pub fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// The directory of the venvs `.ci/*_venv.sh` build: `W2C_CI_CACHE`, else
/// `~/.cache/w2c-ci` (the scripts' own rule).
pub fn ci_cache_dir() -> PathBuf {
    match std::env::var_os("W2C_CI_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/w2c-ci"),
    }
}

/// A cached venv's python: `env_var` when set, else
/// `<ci cache>/<venv>/bin/python` ([`ci_cache_dir`]). Panics with one line
/// (`what` is missing, run `script`) when it cannot import `imports`.
pub fn venv_python(env_var: &str, venv: &str, imports: &str, what: &str, script: &str) -> PathBuf {
    let p = match std::env::var_os(env_var) {
        Some(p) => PathBuf::from(p),
        None => ci_cache_dir().join(venv).join("bin/python"),
    };
    let ok = std::process::Command::new(&p)
        .args(["-c", &format!("import {imports}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{what} is missing at {}: run `{script}` (or `.ci/test`, which builds it once into ~/.cache/w2c-ci) or set {env_var}",
        p.display()
    );
    p
}

/// The sample dataset shipped with the repository.
pub fn sample_dataset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample_when2call.jsonl")
}

/// A temp dir holding a config file.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// Options of a generated config.
#[derive(Clone)]
pub struct Opts {
    pub dataset: PathBuf,
    pub n_per_label: Option<usize>,
    pub subsample_seed: u64,
    pub seed: u64,
    pub model: String,
    pub latency_ms: u64,
    pub fail_rate: f64,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub mcq_extra: String,
    pub methods: String,
    pub judge_extra: String,
    /// Extra lines of `[providers.mock]` (e.g. `judge_replies = "varied"`).
    pub provider_extra: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            dataset: shared_dataset(),
            n_per_label: Some(10),
            subsample_seed: 11,
            seed: 42,
            model: "mock-model".into(),
            latency_ms: 0,
            fail_rate: 0.0,
            concurrency: 4,
            max_attempts: 4,
            mcq_extra: String::new(),
            methods: "\"mcq\"".into(),
            judge_extra: String::new(),
            provider_extra: String::new(),
        }
    }
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn runs(&self) -> PathBuf {
        self.path().join("runs")
    }

    /// Writes `name` with the given text and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Writes a config built from `o` and returns its path.
    pub fn config(&self, name: &str, o: &Opts) -> PathBuf {
        let n = o
            .n_per_label
            .map(|n| format!("n_per_label = {n}\n"))
            .unwrap_or_default();
        let text = format!(
            r#"[run]
runs_dir = "runs"
seed = {seed}

[dataset]
path = "{dataset}"
{n}subsample_seed = {sseed}

[models]
target = "{model}"
target_provider = "mock"
judge = "mock-judge"
judge_provider = "mock"

[providers.mock]
kind = "mock"
latency_ms = {lat}
fail_rate = {fail}
max_concurrency = {conc}
max_attempts = {att}
{provider_extra}

[methods]
enabled = [{methods}]

[methods.mcq]
{extra}

[methods.llm_judge]
{judge_extra}
"#,
            seed = o.seed,
            dataset = o.dataset.display(),
            sseed = o.subsample_seed,
            model = o.model,
            lat = o.latency_ms,
            fail = o.fail_rate,
            conc = o.concurrency,
            att = o.max_attempts,
            extra = o.mcq_extra,
            methods = o.methods,
            judge_extra = o.judge_extra,
            provider_extra = o.provider_extra,
        );
        self.write(name, &text)
    }
}

/// The w2c binary, run in `dir`.
pub fn w2c(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("w2c").expect("binary");
    c.current_dir(dir)
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .env_remove("W2C_TRACKING_TRACE_WAIT_SECS");
    for var in MLFLOW_VARS {
        c.env_remove(var);
    }
    c
}

/// MLflow variables removed from every child so tests are hermetic.
pub const MLFLOW_VARS: &[&str] = &[
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_ENABLE_TRACKING",
];

/// The only session directory under `runs/<run_key>/sessions`.
pub fn only_session(runs: &Path, run_key: &str) -> PathBuf {
    let dir = runs.join(run_key).join("sessions");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "expected one session in {}",
        dir.display()
    );
    entries[0].path()
}

/// Reads a JSON file.
pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fingerprint `w2c config check` prints.
pub fn fingerprint_of(dir: &Path, config: &Path) -> String {
    let out = w2c(dir)
        .args(["config", "check"])
        .arg(config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("fingerprint line")
        .to_string()
}

/// A `w2c mock-server` child process, killed on drop.
pub struct MockServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl MockServer {
    /// Starts the server with extra flags and waits for its address line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> MockServer {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"));
        cmd.arg("mock-server")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mock-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        MockServer { child, url }
    }

    /// The `/stats` counters.
    pub fn stats(&self) -> Value {
        let (status, body) = http(&format!("{}/stats", self.url), "GET");
        assert_eq!(status, 200, "GET /stats: {body}");
        serde_json::from_str(&body).expect("stats json")
    }

    /// Zeroes the `/stats` counters.
    pub fn reset(&self) {
        let (status, body) = http(&format!("{}/stats/reset", self.url), "POST");
        assert!((200..300).contains(&status), "POST /stats/reset: {body}");
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Workspace {
    /// A config whose target is an OpenAI-compatible provider at `base_url`.
    pub fn http_config(
        &self,
        name: &str,
        o: &Opts,
        base_url: &str,
        provider_extra: &str,
    ) -> PathBuf {
        let text = std::fs::read_to_string(self.config(name, o)).expect("config");
        let text = text.replace(
            "kind = \"mock\"",
            &format!("kind = \"openai\"\nbase_url = \"{base_url}/v1\"\n{provider_extra}"),
        );
        let text = text
            .lines()
            .filter(|l| {
                !["latency_ms", "fail_rate", "judge_replies"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.write(name, &text)
    }
}

/// Every line of a JSONL file.
pub fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Starts `w2c run --run-key k --config <cfg>` in the background (output discarded).
pub fn spawn_run(ws: &Workspace, cfg: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn w2c run")
}

/// Runs `w2c run --run-key k --config <cfg>` and asserts it succeeded.
pub fn run_ok(ws: &Workspace, cfg: &Path) -> std::process::Output {
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .output()
        .expect("run w2c");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `w2c plan --run-key k --shards N` of `cfg` in `ws`: the full fingerprint.
pub fn plan(ws: &Workspace, cfg: &Path, shards: usize, env: &[(&str, &str)]) -> String {
    let mut cmd = w2c(ws.path());
    cmd.args([
        "plan",
        "--run-key",
        "k",
        "--shards",
        &shards.to_string(),
        "--config",
    ])
    .arg(cfg);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It prints the session's address with the whole fingerprint.
    let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fp = address
        .strip_prefix("k/")
        .unwrap_or_else(|| panic!("plan prints k/FINGERPRINT: {address:?}"));
    assert_eq!(fp.len(), 64, "plan prints k/FINGERPRINT: {address:?}");
    fp.to_string()
}

/// A plain-HTTP request with the standard library only (no curl needed):
/// returns the status and the body. Panics with one line when the server
/// cannot be reached.
pub fn http(url: &str, method: &str) -> (u16, String) {
    try_http(url, method).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`http`] that reports a failure instead of panicking.
pub fn try_http(url: &str, method: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Lines written so far to `checkpoints/<ns>/results.jsonl` of the only
/// session under `runs/k` (0 while there is none).
pub fn result_lines(ws: &Workspace, ns: &str) -> usize {
    session_dir(ws)
        .and_then(|s| std::fs::read(s.join("checkpoints").join(ns).join("results.jsonl")).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Result lines of every namespace of the only session under `runs/k`.
pub fn all_result_lines(ws: &Workspace) -> usize {
    let Some(s) = session_dir(ws) else { return 0 };
    std::fs::read_dir(s.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("results.jsonl")).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .sum()
}

/// The session directory under `runs/k`, once one exists.
pub fn session_dir(ws: &Workspace) -> Option<PathBuf> {
    std::fs::read_dir(ws.runs().join("k/sessions"))
        .ok()?
        .flatten()
        .next()
        .map(|e| e.path())
}

/// Waits until `cond` holds or `child` exits; returns whether it still runs.
pub fn wait_while_running(
    child: &mut std::process::Child,
    what: &str,
    limit: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let mut running = true;
    wait_for(what, limit, || {
        if child.try_wait().ok().flatten().is_some() {
            running = false;
            return true;
        }
        cond()
    });
    running
}

/// Debian's headless Chromium, with the flags this machine needs (no
/// background networking: the network is closed) and a fresh profile.
/// Panics with one line saying what to install when it is missing.
pub fn chromium(profile: &Path, width: u32, height: u32) -> std::process::Command {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("chromium is missing: `apt-get install chromium` (or run .ci/test, which installs it)")
        });
    let mut c = std::process::Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},{height}"));
    c
}

/// Sends SIGINT (Ctrl-C) to a process.
pub fn sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -INT {pid}");
}

/// The standard output of `w2c <args>` run in `dir` (which must succeed).
pub fn stdout_of(dir: &Path, args: &[&str]) -> String {
    let out = w2c(dir).args(args).output().expect("run w2c");
    assert!(
        out.status.success(),
        "w2c {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
