//! Shared helpers for the integration tests: temp workspaces, configs, and the
//! location of the shared When2Call test file.
#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The real 300-row When2Call test file, beside the repository.
pub fn shared_dataset() -> PathBuf {
    let p = match std::env::var_os("W2C_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
    .join("data/when2call/when2call_test_llm_judge.jsonl");
    assert!(
        p.exists(),
        "the shared When2Call file is missing at {} (set W2C_SHARED_DIR)",
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

[providers.mock]
kind = "mock"
latency_ms = {lat}
fail_rate = {fail}
max_concurrency = {conc}
max_attempts = {att}

[methods]
enabled = ["mcq"]

[methods.mcq]
{extra}
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
        );
        self.write(name, &text)
    }
}

/// The w2c binary, run in `dir`.
pub fn w2c(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("w2c").expect("binary");
    c.current_dir(dir)
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR");
    c
}

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
