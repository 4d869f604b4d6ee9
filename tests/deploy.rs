//! The deployment files in `deploy/`: the Kubernetes manifests validate
//! against the Kubernetes schemas (`kubernetes-validate`, strict), keep
//! their invariants (shards = completions, the runs volume where
//! W2C_RUNS_DIR points, credentials from a Secret only), the compose file
//! runs MLflow on PostgreSQL with an S3 store and holds no secret, the
//! configs they embed pass `w2c config check`, and the Slurm scripts parse.
//! (The Slurm recipe itself runs in tests/slurm.rs.)

mod common;

use common::{w2c, Workspace};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const KUBERNETES: &str = "1.33.0";

fn validate(files: &[PathBuf]) -> std::process::Output {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES])
        .args(files)
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named kubernetes_validate"),
        "kubernetes-validate is missing: run `pip install -r requirements-test.txt`"
    );
    out
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    assert_eq!(files.len(), 4, "{files:?}");
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a misspelt field is rejected.
    let ws = Workspace::new();
    let text =
        std::fs::read_to_string(repo().join("deploy/kubernetes/shards-job.yaml")).expect("job");
    let broken = ws.write(
        "broken.yaml",
        &text.replace("completionMode:", "completionMod:"),
    );
    assert!(!validate(&[broken]).status.success());
}

fn config_check(ws: &Workspace, toml: &Path) {
    // The files read the dataset from a mounted /data: point at ours.
    let text = std::fs::read_to_string(toml)
        .expect("toml")
        .replace(
            "/data/when2call_test_llm_judge.jsonl",
            &common::shared_dataset().display().to_string(),
        )
        .replace(
            "/data/sample_when2call.jsonl",
            &common::sample_dataset().display().to_string(),
        );
    let local = ws.write("local.toml", &text);
    let out = w2c(ws.path())
        .args(["config", "check"])
        .arg(&local)
        .output()
        .expect("config check");
    assert!(
        out.status.success(),
        "{}: {}",
        toml.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/support/check_deploy.py`: checks the invariants; writes the
/// embedded configs and the finalize Job's command into `ws`.
fn check_deploy(ws: &Workspace) {
    let out = Command::new("python3")
        .arg(common::support("check_deploy.py"))
        .arg(repo())
        .arg(ws.path())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The finalize Job's command, run as the Job runs it (`/bin/sh -c`, `w2c`
/// on PATH, W2C_RUNS_DIR the runs volume) after the Indexed Job's pods,
/// finds the session they ran although the volume also holds the same
/// config under another run key.
#[test]
fn the_finalize_job_finds_its_session_beside_the_same_config_under_another_run_key() {
    let ws = Workspace::new();
    check_deploy(&ws);
    // The ConfigMap's config on the sample dataset, its provider on a
    // mock server (as each pod's sidecar would serve it).
    let text = std::fs::read_to_string(ws.path().join("k8s.toml"))
        .expect("k8s.toml")
        .replace(
            "/data/when2call_test_llm_judge.jsonl",
            &common::sample_dataset().display().to_string(),
        );
    let toml = ws.write("eval.toml", &text);
    let server = common::MockServer::start(&[], &[]);
    let runs = ws.path().join("volume");
    let env = |cmd: &mut assert_cmd::Command| {
        cmd.env("W2C_RUNS_DIR", &runs)
            .env("W2C_BASE_URLS_LOCAL", format!("{}/v1", server.url));
    };
    let mut other = w2c(ws.path());
    other
        .args(["run", "--run-key", "another", "--config"])
        .arg(&toml);
    env(&mut other);
    other.assert().success();
    // The Indexed Job's pods: `w2c run --config ... --shards 4`, index
    // from JOB_COMPLETION_INDEX.
    for index in 0..4 {
        let mut pod = w2c(ws.path());
        pod.args(["run", "--config"])
            .arg(&toml)
            .args(["--shards", "4"])
            .env("JOB_COMPLETION_INDEX", index.to_string());
        env(&mut pod);
        pod.assert().success();
    }
    let job = std::fs::read_to_string(ws.path().join("finalize-job.sh"))
        .expect("finalize-job.sh")
        .replace("/config/eval.toml", &toml.display().to_string());
    let bin = assert_cmd::cargo::cargo_bin("w2c");
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &job])
        .current_dir(ws.path())
        .env("PATH", path)
        .env("W2C_RUNS_DIR", &runs)
        .env_remove("W2C_RUN_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("sh");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the finalize Job failed: {said}");
    let session = common::only_session(&runs, "when2call-k8s");
    let fp16 = session.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        said.contains(&format!("complete: session when2call-k8s/{fp16}")),
        "{said}"
    );
    // Its status is that session's alone.
    assert!(!said.contains(&format!("another/{fp16}")), "{said}");
}

#[test]
fn deployment_files_keep_their_invariants_and_configs_check() {
    let ws = Workspace::new();
    check_deploy(&ws);
    config_check(&ws, &ws.path().join("k8s.toml"));
    config_check(&ws, &repo().join("deploy/compose/eval.toml"));
    for script in ["w2c-shard.sbatch", "w2c-finalize.sbatch", "submit.sh"] {
        let path = repo().join("deploy/slurm").join(script);
        let ok = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .expect("bash");
        assert!(ok.success(), "{}", path.display());
    }
}
