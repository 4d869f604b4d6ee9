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

#[test]
fn deployment_files_keep_their_invariants_and_configs_check() {
    let ws = Workspace::new();
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

/// Every `deploy/...` path the CLI's help, README, docs/ and the deploy
/// files themselves name exists.
#[test]
fn deploy_paths_named_in_help_and_docs_exist() {
    let ws = Workspace::new();
    let help = |args: &[&str]| {
        let out = w2c(ws.path()).args(args).output().expect("w2c help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.iter().any(|c| c == "plan"), "{commands:?}");
    let mut texts: Vec<(String, String)> = commands
        .iter()
        .map(|c| (format!("w2c {c} --help"), help(&[c, "--help"])))
        .collect();
    let mut files = vec![repo().join("README.md")];
    for dir in ["docs", "deploy"] {
        for entry in walkdir::WalkDir::new(repo().join(dir)).into_iter().flatten() {
            let p = entry.path();
            if p.is_file() && !p.components().any(|c| c.as_os_str() == "runs") {
                files.push(p.to_path_buf());
            }
        }
    }
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            texts.push((f.display().to_string(), text));
        }
    }
    let path = regex::Regex::new(r"deploy/[A-Za-z0-9_.\-/]*[A-Za-z0-9_]").unwrap();
    let mut missing = Vec::new();
    for (source, text) in &texts {
        for m in path.find_iter(text) {
            if !repo().join(m.as_str()).exists() {
                missing.push(format!("{source}: {}", m.as_str()));
            }
        }
    }
    assert!(missing.is_empty(), "named but missing: {missing:?}");
}
