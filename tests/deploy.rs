//! The deployment files in `deploy/`: the Kubernetes manifests validate
//! against the Kubernetes schemas (`kubernetes-validate`, strict) of the
//! version floor they state and of 1.33, keep their invariants
//! (tests/support/check_deploy.py: shards = completions, volumes provided
//! and shared, non-root pods, the sidecar's resources and model cache,
//! failure policies, grace period, credentials from a Secret only), the
//! documented wait for the shards Job ends when it fails, the compose file
//! runs MLflow on PostgreSQL with an S3 store and holds no secret, the
//! image runs as non-root with a dependency layer and a small build
//! context, the configs they embed pass `w2c config check`, the Slurm
//! scripts parse; the documented `mlflow server` commands answer the Host
//! names clients use, and docs/cluster.md's shard commands run as written.
//! (The Slurm recipe itself runs in tests/slurm.rs; no container engine
//! can run here: docs/cluster.md says why.)

mod common;

use common::{w2c, Workspace};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const KUBERNETES: &str = "1.33.0";

fn validate(files: &[PathBuf]) -> std::process::Output {
    validate_at(files, KUBERNETES)
}

fn validate_at(files: &[PathBuf], version: &str) -> std::process::Output {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
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

/// The Kubernetes version the manifests need, as shards-job.yaml states it
/// ("Needs Kubernetes 1.29 or later"); README and docs/cluster.md must
/// state the same.
fn version_floor() -> (u32, u32) {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).expect(p);
    let job = read("deploy/kubernetes/shards-job.yaml");
    let re = regex::Regex::new(r"Needs Kubernetes 1\.(\d+) or later").unwrap();
    let minor: u32 = re
        .captures(&job)
        .expect("shards-job.yaml states the Kubernetes version it needs")[1]
        .parse()
        .unwrap();
    let stated = format!("Kubernetes 1.{minor} or later");
    for doc in ["deploy/kubernetes/README.md", "docs/cluster.md"] {
        let text = read(doc).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(&stated), "{doc} does not say `{stated}`");
    }
    (1, minor)
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    assert_eq!(files.len(), 7, "{files:?}");
    let (_, floor) = version_floor();
    for version in [KUBERNETES.to_string(), format!("1.{floor}.0")] {
        let out = validate_at(&files, &version);
        assert!(
            out.status.success(),
            "{version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The floor is real: the Jobs' fields are not in the schemas before it.
    let jobs: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with("-job.yaml"))
        .cloned()
        .collect();
    assert!(!validate_at(&jobs, &format!("1.{}.0", floor - 1))
        .status
        .success());
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
        .arg(w2c::stop::DEFAULT_TIMEOUT.as_secs_f64().to_string())
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
        .skip(1)
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
        for entry in walkdir::WalkDir::new(repo().join(dir))
            .into_iter()
            .flatten()
        {
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

/// The ```sh blocks of a Markdown file, continuation lines joined.
fn sh_blocks(rel: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(rel)).expect(rel);
    text.split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .map(|b| b.replace("\\\n", " "))
        .collect()
}

/// The documented lines that wait for the shards Job, run against a
/// stand-in `kubectl` whose Job has the given conditions (`kubectl get`
/// prints their types; `kubectl wait` blocks, as for a condition the Job
/// never reaches): they return once the Job has failed or completed, and
/// keep waiting while it runs.
#[test]
fn the_documented_wait_for_the_shards_job_ends_when_it_fails() {
    let ws = Workspace::new();
    let bin = ws.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let kubectl = bin.join("kubectl");
    std::fs::write(
        &kubectl,
        "#!/bin/sh\necho \"$@\" >> \"$CALLS\"\ncase \"$1\" in\n  get) printf '%s' \"$CONDITIONS\" ;;\n  wait) sleep 3600 ;;\nesac\n",
    )
    .expect("kubectl");
    let ok = Command::new("chmod")
        .arg("+x")
        .arg(&kubectl)
        .status()
        .expect("chmod");
    assert!(ok.success());
    let mut lines = Vec::new();
    for doc in ["docs/cluster.md", "deploy/kubernetes/README.md"] {
        let found: Vec<String> = sh_blocks(doc)
            .iter()
            .flat_map(|b| b.lines().map(String::from).collect::<Vec<_>>())
            .filter(|l| l.contains("job/w2c-shards"))
            .collect();
        assert_eq!(found.len(), 1, "{doc}: one line waits for the shards Job");
        lines.push((doc, found[0].clone()));
    }
    for (doc, line) in lines {
        for (conditions, ends) in [
            ("FailureTarget Failed", true),
            ("SuccessCriteriaMet Complete", true),
            ("", false),
        ] {
            let calls = ws.path().join("calls");
            let _ = std::fs::remove_file(&calls);
            let mut child = Command::new("bash")
                .args(["-c", &line])
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        bin.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .env("CONDITIONS", conditions)
                .env("CALLS", &calls)
                .process_group(0)
                .spawn()
                .expect("bash");
            common::wait_for("a kubectl call", std::time::Duration::from_secs(10), || {
                calls.exists()
            });
            let start = std::time::Instant::now();
            let mut ended = false;
            while start.elapsed() < std::time::Duration::from_secs(5) {
                if child.try_wait().expect("wait").is_some() {
                    ended = true;
                    break;
                }
                if !ends {
                    // Still polling after its first look: a Job that runs.
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if ended {
                let _ = child.wait();
            } else {
                // bash and its `sleep`.
                kill_group(&mut child);
            }
            assert_eq!(
                ended, ends,
                "{doc}: `{line}` with a Job whose conditions are {conditions:?}"
            );
        }
    }
}

/// docs/cluster.md's shard commands, pasted as written into a shell in a
/// directory holding `eval.toml` (a small config on the `mock` provider),
/// with `w2c` on the PATH: every shard runs, the session is finalized and
/// verified.
#[test]
fn the_shard_commands_of_cluster_md_run_as_written() {
    let block = sh_blocks("docs/cluster.md")
        .into_iter()
        .find(|b| b.contains("w2c plan --config eval.toml --shards 4"))
        .expect("the shards block");
    let ws = Workspace::new();
    let opts = common::Opts {
        n_per_label: Some(2),
        ..common::Opts::default()
    };
    ws.config("eval.toml", &opts);
    let bin = assert_cmd::cargo::cargo_bin("w2c");
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &block])
        .current_dir(ws.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("W2C_RUNS_DIR")
        .env_remove("W2C_RUN_KEY")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{block}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("complete"), "{stdout}");
}

/// This machine's address on its network (what a compute node connects to).
fn network_address() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.connect("10.255.255.255:1")
        .expect("a network route (the test reaches MLflow as another machine would)");
    let ip = s.local_addr().expect("addr").ip();
    assert!(!ip.is_loopback(), "no network address besides loopback");
    ip
}

/// The status of `GET path` sent to `addr` with the Host header `host`.
fn status_with_host(addr: std::net::SocketAddr, host: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let Ok(mut conn) =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    else {
        return 0;
    };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Runs an `mlflow server` command line (with the store swapped for SQLite
/// and a directory, the port for a free one) as the docs give it; stopped
/// with its process group on drop.
struct DocumentedMlflow {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DocumentedMlflow {
    fn start(command: &str, store: &str, artifacts: &str) -> DocumentedMlflow {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        for part in [store, artifacts, "--port 5000"] {
            assert!(command.contains(part), "`{part}` in `{command}`");
        }
        let command = command
            .replace(
                store,
                &format!("sqlite:///{}", dir.path().join("mlflow.db").display()),
            )
            .replace(
                artifacts,
                &dir.path().join("artifacts").display().to_string(),
            )
            .replace("--port 5000", &format!("--port {port} --workers 1"));
        common::mlflow::require_mlflow();
        let child = Command::new("python3")
            .arg(common::support("mlflow_guard.py"))
            .args(["bash", "-c", &command])
            // Not the job runner's worker processes: the test needs the
            // HTTP server only, and they cost most of its start.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).expect("log"))
            .spawn()
            .expect("python3");
        DocumentedMlflow {
            child,
            port,
            _dir: dir,
        }
    }

    fn wait_ready(&mut self) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        common::wait_for(
            "the documented mlflow server",
            std::time::Duration::from_secs(180),
            || {
                assert!(
                    self.child.try_wait().expect("wait").is_none(),
                    "mlflow server exited: {}",
                    std::fs::read_to_string(self._dir.path().join("server.log"))
                        .unwrap_or_default()
                );
                status_with_host(addr, &format!("127.0.0.1:{}", self.port), "/health") == 200
            },
        );
    }
}

impl Drop for DocumentedMlflow {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

const API: &str = "/api/2.0/mlflow/experiments/search?max_results=1";

/// docs/cluster.md's `mlflow server` command listens beyond the machine
/// and answers the Host name clients use, reached at the machine's network
/// address as a compute node reaches it; the compose file's MLflow answers
/// the name its w2c service uses (`mlflow:5000`). Both still refuse other
/// names (the check is on).
#[test]
fn the_documented_mlflow_servers_answer_the_names_clients_use() {
    let doc = sh_blocks("docs/cluster.md")
        .into_iter()
        .flat_map(|b| b.lines().map(String::from).collect::<Vec<_>>())
        .find(|l| l.trim_start().starts_with("mlflow server"))
        .expect("an `mlflow server` line in docs/cluster.md");
    let compose = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); print(' '.join(c['services']['mlflow']['command']).replace('$$', '$'))",
        ])
        .arg(repo().join("deploy/compose/compose.yaml"))
        .output()
        .expect("python3");
    let compose = String::from_utf8_lossy(&compose.stdout)
        .trim()
        .trim_start_matches("exec ")
        .to_string();
    let mut servers = [
        DocumentedMlflow::start(
            &doc,
            "postgresql+psycopg2://mlflow@db:5432/mlflow",
            "s3://mlflow-artifacts",
        ),
        DocumentedMlflow::start(
            &compose,
            "\"postgresql://mlflow:$POSTGRES_PASSWORD@postgres:5432/mlflow\"",
            "s3://mlflow-artifacts",
        ),
    ];
    for s in servers.iter_mut() {
        s.wait_ready();
    }
    let [doc, compose] = &servers;
    let node = std::net::SocketAddr::new(network_address(), doc.port);
    assert_eq!(
        status_with_host(node, "mlflow.example.org:5000", API),
        200,
        "docs/cluster.md's server, reached at {node} as http://mlflow.example.org:5000"
    );
    assert_eq!(status_with_host(node, "evil.example.com:5000", API), 403);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], compose.port));
    assert_eq!(
        status_with_host(local, "mlflow:5000", API),
        200,
        "compose's MLflow, as its w2c service (http://mlflow:5000) reaches it"
    );
    assert_eq!(
        status_with_host(local, &format!("127.0.0.1:{}", compose.port), API),
        200
    );
    assert_eq!(status_with_host(local, "evil.example.com:5000", API), 403);
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().to_path_buf(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

/// Kills a child's process group (the child was started as its leader):
/// by number, never through kill(1), which procps 4.0.2 turns into
/// kill(-1) when given a negative id without `--`.
fn kill_group(child: &mut std::process::Child) {
    let group = i32::try_from(child.id()).expect("pid");
    assert!(group > 1);
    // SAFETY: kill(2) on a process group this test created.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// The Slurm task's first step, `w2c resume FP --shard --check`, refuses
/// arrays whose task ids are not shard indices (and a count other than the
/// plan's) and accepts a right one, without writing anything.
#[test]
fn resume_check_refuses_arrays_that_are_not_shards_and_writes_nothing() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &common::Opts::default());
    let fp = common::plan(&ws, &cfg, 4, &[]);
    let before = snapshot(&ws.runs());
    let task = |vars: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = w2c(ws.path());
        cmd.args(["resume", &fp, "--runs-dir"])
            .arg(ws.runs())
            .args(extra)
            .arg("--check");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("resume --check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let array = |id: &str, count: &str, min: &str, max: &str, step: &str| {
        vec![
            ("SLURM_ARRAY_JOB_ID", "7"),
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_COUNT", count),
            ("SLURM_ARRAY_TASK_MIN", min),
            ("SLURM_ARRAY_TASK_MAX", max),
            ("SLURM_ARRAY_TASK_STEP", step),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect::<Vec<_>>()
    };
    let run = |vars: Vec<(&str, String)>, extra: &[&str]| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        task(&vars, extra)
    };
    let (code, err) = run(array("2", "4", "0", "3", "1"), &["--shard"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("a resume would run shard 2/4 (from Slurm array task 2"),
        "{err}"
    );
    for (vars, extra, why) in [
        (
            array("2", "4", "0", "6", "2"),
            &["--shard"][..],
            "has a step",
        ),
        (
            array("2", "1", "2", "2", "1"),
            &["--shard"][..],
            "SLURM_ARRAY_TASK_COUNT=1",
        ),
        (Vec::new(), &["--shard", "1/3"][..], "planned for 4"),
    ] {
        let (code, err) = run(vars, extra);
        assert_eq!(code, Some(1), "{extra:?}: {err}");
        assert!(err.contains(why), "{extra:?}: {err}");
    }
    assert!(
        before == snapshot(&ws.runs()),
        "a check wrote to the runs directory"
    );
}

/// The Slurm task script, run outside Slurm with an array task's
/// environment, stopped by a SIGTERM to the script alone (as `scancel
/// --batch` or `--signal=B:TERM` deliver it): it passes the signal on, w2c
/// pauses (a run-log line names it) and the script exits with w2c's 143
/// once its model server is stopped.
#[test]
fn the_slurm_task_script_passes_a_stop_on_to_w2c_and_stops_its_server() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &common::Opts::default());
    let cfg = std::fs::read_to_string(&cfg).expect("config").replace(
        "kind = \"mock\"",
        "kind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"",
    );
    let cfg = ws.write("eval.toml", &cfg);
    let fp = common::plan(&ws, &cfg, 2, &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let bin = assert_cmd::cargo::cargo_bin("w2c");
    let server_pid = ws.path().join("server.pid");
    let log = ws.path().join("task.log");
    let mut task = Command::new("bash")
        .arg(repo().join("deploy/slurm/w2c-shard.sbatch"))
        .arg(&fp)
        .current_dir(ws.path())
        .envs([
            ("SLURM_ARRAY_JOB_ID", "1"),
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "1"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
            ("W2C_RUN_KEY", "k"),
            ("W2C_PROVIDER", "mock"),
            ("W2C_SERVER_READY_PATH", "/health"),
        ])
        .env("W2C_BIN", &bin)
        .env("W2C_RUNS_DIR", ws.runs())
        .env("W2C_SERVER_PORT", port.to_string())
        .env(
            "W2C_SERVER_CMD",
            format!(
                "echo $$ > {}; exec {} mock-server --port $PORT --latency-ms 400",
                server_pid.display(),
                bin.display()
            ),
        )
        .env_remove("MLFLOW_TRACKING_URI")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("bash");
    let session = ws.runs().join("k/sessions").join(&fp[..16]);
    let slice = session.join("checkpoints/mcq/shards/shard-0-of-2/results.jsonl");
    common::wait_for(
        "the task's first results",
        std::time::Duration::from_secs(60),
        || std::fs::read(&slice).is_ok_and(|b| b.contains(&b'\n')),
    );
    // SIGTERM to the script's process only.
    let ok = Command::new("kill")
        .args(["-TERM", &task.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = task.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            kill_group(&mut task);
            panic!(
                "the task did not end: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(143), "{printed}");
    let runs =
        common::read_jsonl(&session.join("checkpoints/mcq/shards/shard-0-of-2/run_log.jsonl"));
    assert_eq!(
        runs.last().map(|r| r["stopped_by"].clone()),
        Some(serde_json::Value::from("SIGTERM")),
        "w2c paused: {printed}"
    );
    let pid = std::fs::read_to_string(&server_pid).expect("server pid");
    let alive = Command::new("kill")
        .args(["-0", pid.trim()])
        .status()
        .expect("kill")
        .success();
    assert!(!alive, "the model server outlived its task");
}
