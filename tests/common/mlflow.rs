//! A real `mlflow server` (SQLite backend, artifact proxy) for the tracking
//! tests, and the real MLflow Python client to inspect what it holds.

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running `mlflow server` child (through a guard that stops the whole
/// process group when the test process ends).
pub struct MlflowServer {
    child: Option<Child>,
    /// Where runs and artifacts are kept: SQLite and a directory, or
    /// PostgreSQL and an S3-compatible store.
    pub backend: Backend,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    /// Holds `mlflow.db` and `artifacts/`.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra_env: Vec<(String, String)>,
    extra_args: Vec<String>,
}

use super::support;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl MlflowServer {
    /// Starts a fresh server with its own database.
    pub fn start() -> MlflowServer {
        Self::start_with(&[], &[])
    }

    /// Starts a fresh server with extra arguments and environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> MlflowServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = MlflowServer {
            child: None,
            backend: Backend::Sqlite,
            url: String::new(),
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.url = format!("http://127.0.0.1:{}", s.port);
        s.restart();
        s
    }

    /// A fresh server whose runs live in PostgreSQL and whose artifacts
    /// live in an S3-compatible store (moto's server), proxied by MLflow
    /// (`--artifacts-destination s3://...`): the setup teams run.
    pub fn start_postgres_s3() -> MlflowServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let postgres = Postgres::start(tmp.path());
        let s3 = S3::start(tmp.path());
        let mut s = MlflowServer {
            child: None,
            backend: Backend::PostgresS3 { postgres, s3 },
            url: String::new(),
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra_env: Vec::new(),
            extra_args: Vec::new(),
        };
        s.url = format!("http://127.0.0.1:{}", s.port);
        s.restart();
        s
    }

    /// One server per test binary (tests isolate themselves by experiment
    /// name): SQLite, or PostgreSQL + S3 with
    /// `W2C_TEST_MLFLOW_BACKEND=postgres-s3` (how CI runs the tracking tests
    /// a second time). `W2C_TEST_MLFLOW_URI` points at an already running
    /// one instead.
    pub fn shared() -> &'static str {
        static SHARED: OnceLock<(String, Option<MlflowServer>)> = OnceLock::new();
        &SHARED
            .get_or_init(|| match std::env::var("W2C_TEST_MLFLOW_URI") {
                Ok(uri) if !uri.is_empty() => (uri, None),
                _ => {
                    let s = match std::env::var("W2C_TEST_MLFLOW_BACKEND").as_deref() {
                        Ok("postgres-s3") => MlflowServer::start_postgres_s3(),
                        Ok("") | Ok("sqlite") | Err(_) => MlflowServer::start(),
                        Ok(other) => panic!(
                            "W2C_TEST_MLFLOW_BACKEND={other}: expected `sqlite` or `postgres-s3`"
                        ),
                    };
                    (s.url.clone(), Some(s))
                }
            })
            .0
    }

    /// The backend store URI the server runs on.
    pub fn backend_uri(&self) -> String {
        match &self.backend {
            Backend::Sqlite => format!("sqlite:///{}", self.dir.join("mlflow.db").display()),
            Backend::PostgresS3 { postgres, .. } => postgres.uri(),
        }
    }

    /// (Re)starts the server process on the same port and database.
    pub fn restart(&mut self) {
        require_mlflow();
        let mut cmd = Command::new("python3");
        let (store, artifacts) = match &self.backend {
            Backend::Sqlite => (
                format!("sqlite:///{}", self.dir.join("mlflow.db").display()),
                self.dir.join("artifacts").display().to_string(),
            ),
            Backend::PostgresS3 { postgres, s3 } => {
                for (k, v) in s3.client_env() {
                    cmd.env(k, v);
                }
                (postgres.uri(), format!("s3://{}", S3::BUCKET))
            }
        };
        cmd.arg(support("mlflow_guard.py"))
            .args(["mlflow", "server", "--backend-store-uri"])
            .arg(store)
            .arg("--artifacts-destination")
            .arg(artifacts)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--workers", "2"])
            .args(&self.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start python3 ({e}): install Python 3, then `pip install -r requirements-test.txt`")
        });
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ok = super::try_http(&format!("{}/health", self.url), "GET")
                .is_ok_and(|(status, _)| status == 200);
            if ok {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "mlflow server exited ({status}): {}",
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                    );
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "mlflow server not ready after 120 s: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops the server (the guard stops the whole process tree).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait until the port refuses connections.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where an MLflow server keeps its runs and artifacts.
pub enum Backend {
    /// `mlflow.db` and `artifacts/` in the server's directory.
    Sqlite,
    /// A PostgreSQL database and an S3 bucket.
    PostgresS3 {
        /// The database server.
        postgres: Postgres,
        /// The S3-compatible server.
        s3: S3,
    },
}

/// A PostgreSQL server of its own (initdb in a temp directory, `postgres`
/// in the foreground under the guard), trusting local connections. Run as
/// the `postgres` user when the tests run as root (initdb refuses root).
pub struct Postgres {
    _child: Child,
    port: u16,
}

impl Postgres {
    fn start(tmp: &std::path::Path) -> Postgres {
        let bindir = require_postgres_s3();
        let dir = tmp.join("pg");
        std::fs::create_dir_all(&dir).expect("pg dir");
        let root = is_root();
        // initdb and postgres refuse to run as root.
        let as_user = |program: &std::path::Path| -> Vec<std::ffi::OsString> {
            let mut argv: Vec<std::ffi::OsString> = Vec::new();
            if root {
                argv.extend(["runuser", "-u", "postgres", "--"].map(Into::into));
            }
            argv.push(program.into());
            argv
        };
        if root {
            // The temp directory is root's: let the postgres user in.
            let _ = Command::new("chmod").arg("755").arg(tmp).status();
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "running as root, PostgreSQL needs a `postgres` user: install the server (`apt-get install postgresql`), which creates it"
            );
        }
        let initdb = as_user(&bindir.join("initdb"));
        let out = Command::new(&initdb[0])
            .args(&initdb[1..])
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "mlflow", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new("python3")
            .arg(support("mlflow_guard.py"))
            .args(as_user(&bindir.join("postgres")))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("postgres.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start postgres");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Postgres {
            _child: child,
            port,
        }
    }

    /// The MLflow backend store URI (psycopg2 named: MLflow would take psycopg 3
    /// for a bare `postgresql://`).
    pub fn uri(&self) -> String {
        format!(
            "postgresql+psycopg2://mlflow@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

/// An S3-compatible server (moto's) with the bucket MLflow writes to.
pub struct S3 {
    _child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3 {
    /// The bucket of the artifacts.
    pub const BUCKET: &'static str = "w2c-artifacts";

    fn start(tmp: &std::path::Path) -> S3 {
        let port = free_port();
        let child = Command::new("python3")
            .arg(support("mlflow_guard.py"))
            .args(["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .current_dir(tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(tmp.join("s3.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start moto");
        let s3 = S3 {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while super::try_http(&format!("{}/", s3.endpoint), "GET").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto's S3 server did not start: {}",
                std::fs::read_to_string(tmp.join("s3.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s3.python(&format!("s3.create_bucket(Bucket={:?})", S3::BUCKET));
        s3
    }

    /// The environment of an S3 client of this server (moto takes any keys).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MLFLOW_S3_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "w2c-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "w2c-test".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    /// Runs Python with `s3`, a boto3 client of this server; returns stdout.
    pub fn python(&self, code: &str) -> String {
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(format!(
            "import boto3, os\ns3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n{code}"
        ));
        for (k, v) in self.client_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("python3");
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The directory of the PostgreSQL server binaries (`initdb`, `postgres`)
/// once the Python clients of PostgreSQL and S3 are there too, or a
/// one-line failure saying what to install.
fn require_postgres_s3() -> std::path::PathBuf {
    require_mlflow();
    let ok = Command::new("python3")
        .args(["-c", "import psycopg2, boto3, moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "psycopg2, boto3 or moto is missing: run `pip install -r requirements-test.txt`"
    );
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let found = on_path.or_else(|| {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|d| d.join("initdb").is_file())
    });
    match found {
        Some(d) if d.join("postgres").is_file() => d,
        _ => panic!(
            "the PostgreSQL server binaries (initdb, postgres) are missing: install PostgreSQL (`apt-get install postgresql`)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Fails with one line saying what to install when `mlflow` is missing.
pub fn require_mlflow() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        match Command::new("python3")
            .args(["-c", "import mlflow"])
            .output()
        {
            Err(e) => Err(format!(
                "python3 not found ({e}): install Python 3, then `pip install -r requirements-test.txt`"
            )),
            Ok(o) if !o.status.success() => Err(
                "the MLflow Python package is missing: run `pip install -r requirements-test.txt`"
                    .to_string(),
            ),
            Ok(_) => Ok(()),
        }
    });
    if let Err(msg) = r {
        panic!("{msg}");
    }
}

/// What the MLflow Python client sees of an experiment (see
/// `tests/support/mlflow_query.py`), optionally with artifact hashes.
pub fn query(uri: &str, experiment: &str, artifacts: bool, env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(support("mlflow_query.py")).arg(uri).arg(experiment);
    if artifacts {
        cmd.arg("artifacts");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "mlflow_query.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("query json")
}

/// Runs a snippet of Python with the MLflow client pointed at `uri`.
pub fn python(uri: &str, code: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import mlflow\nfrom mlflow import MlflowClient\nmlflow.set_tracking_uri({uri:?})\nc = MlflowClient()\n{code}"
        ))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique experiment name for one test.
pub fn experiment(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u32() as u128
    )
}

fn rand_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u32(1);
    h.finish() as u32
}

/// What the MLflow Python client sees of an experiment's traces, run inputs
/// and logged models (see `tests/support/mlflow_traces.py`).
pub fn traces(uri: &str, experiment: &str) -> Value {
    let out = Command::new("python3")
        .arg(support("mlflow_traces.py"))
        .arg(uri)
        .arg(experiment)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "mlflow_traces.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("traces json")
}

/// Checks that every namespace of a session with traces of its own has, in
/// its child run, exactly one trace per finished item with the id w2c
/// derives, token usage equal to the call log's, and assessments that
/// match the item's record (each once); returns the traces checked.
pub fn assert_traces_complete(session: &std::path::Path, dump: &Value) -> usize {
    use sha2::Digest;
    let manifest = super::read_json(&session.join("manifest.json"));
    let fp = manifest["fingerprint"].as_str().expect("fp");
    let run_key = manifest["run_key"].as_str().expect("run key");
    let ids = super::read_json(&session.join("mlflow_ids.json"));
    let experiment_id = ids["experiment_id"].as_str().expect("experiment id");
    let mut checked = 0;
    for entry in std::fs::read_dir(session.join("checkpoints")).expect("checkpoints") {
        let ns = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let dir = session.join("checkpoints").join(&ns);
        let settings = super::read_json(&dir.join("method_settings.json"));
        let method = settings["method"].as_str().expect("method");
        let run_id = ids["child_run_ids"][&ns].as_str().expect("child run id");
        let traces = dump["runs"][run_id]["traces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let is_target = method.ends_with(".target");
        let records: std::collections::BTreeMap<String, Value> =
            super::read_jsonl(&dir.join("results.jsonl"))
                .into_iter()
                .map(|r| (r["key"].as_str().expect("key").to_string(), r))
                .collect();
        assert_eq!(traces.len(), records.len(), "{ns}: one trace per item");
        let by_id: std::collections::BTreeMap<String, &Value> = traces
            .iter()
            .map(|t| (t["trace_id"].as_str().expect("id").to_string(), t))
            .collect();
        assert_eq!(by_id.len(), traces.len(), "{ns}: duplicate trace ids");
        // Tokens and time per item from its own call log (a judge's trace
        // names the target's trace; it does not hold the target's call).
        let mut tokens: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        let mut windows: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        let log = session
            .join("artifacts_local")
            .join(&ns)
            .join("llm_calls.jsonl");
        for call in super::read_jsonl(&log) {
            let key = match call["repeat"].as_u64() {
                Some(r) => format!("{}#{r}", call["uuid"].as_str().expect("uuid")),
                None => call["uuid"].as_str().expect("uuid").to_string(),
            };
            let t = tokens.entry(key.clone()).or_default();
            t.0 += call["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            t.1 += call["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            let start = call["start_ms"]
                .as_i64()
                .expect("a call record keeps its start");
            let end = call["end_ms"]
                .as_i64()
                .expect("a call record keeps its end");
            assert!(end >= start, "{ns}/{key}: call ends before it starts");
            let w = windows.entry(key).or_insert((start, end));
            *w = (w.0.min(start), w.1.max(end));
        }
        let target_hash = settings["settings"]["target_settings_hash"].as_str();
        for (key, record) in &records {
            let hash = hex::encode(sha2::Sha256::digest(
                format!(
                    "w2c-trace\0{experiment_id}\0{run_key}\0{fp}\0{}\0{key}",
                    settings["settings_hash"].as_str().expect("hash")
                )
                .as_bytes(),
            ));
            let id = format!("tr-{}", &hash[..32]);
            let trace = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("{ns}/{key}: no trace {id}"));
            assert_eq!(trace["tags"]["w2c.key"], key.as_str(), "{ns}");
            // Honest time: the root runs from the item's first call's start
            // to its last call's end, and each span is its call's window.
            let root = &trace["spans"][0];
            assert!(root["parent_id"].is_null(), "{ns}/{key}: root first");
            if let Some((start, end)) = windows.get(key) {
                assert_eq!(
                    (root["start_ns"].as_i64(), root["end_ns"].as_i64()),
                    (Some(start * 1_000_000), Some(end * 1_000_000)),
                    "{ns}/{key}: root span window"
                );
            }
            if let Some(h) = target_hash {
                let target = hex::encode(sha2::Sha256::digest(
                    format!("w2c-trace\0{experiment_id}\0{run_key}\0{fp}\0{h}\0{key}").as_bytes(),
                ));
                assert_eq!(
                    trace["tags"]["w2c.target_trace"].as_str(),
                    Some(format!("tr-{}", &target[..32]).as_str()),
                    "{ns}/{key}: the judge's trace names the target's"
                );
            }
            let (input, output) = tokens.get(key).copied().unwrap_or_default();
            let spans = trace["spans"].as_array().expect("spans");
            let span_in: u64 = spans
                .iter()
                .filter_map(|s| s["token_usage"]["input_tokens"].as_u64())
                .sum();
            let span_out: u64 = spans
                .iter()
                .filter_map(|s| s["token_usage"]["output_tokens"].as_u64())
                .sum();
            assert_eq!(
                (span_in, span_out),
                (input, output),
                "{ns}/{key}: span tokens"
            );
            if input + output > 0 {
                assert_eq!(
                    trace["token_usage"]["input_tokens"].as_u64(),
                    Some(input),
                    "{ns}/{key}: trace tokens"
                );
            }
            let assessments = trace["assessments"].as_array().expect("assessments");
            let value_of = |name: &str| -> Vec<Value> {
                assessments
                    .iter()
                    .filter(|a| a["name"] == name)
                    .map(|a| a["value"].clone())
                    .collect()
            };
            if is_target {
                // The target's answer, not judged here: no verdict.
                assert!(value_of("behavior").is_empty(), "{ns}/{key}");
                checked += 1;
                continue;
            }
            assert_eq!(
                value_of("expected_behavior"),
                vec![record["gold"].clone()],
                "{ns}/{key}"
            );
            let prediction = if method == "mcq_logprob" {
                record["predictions"][0].clone()
            } else {
                record["prediction"].clone()
            };
            if record["unscored"].is_null() {
                assert_eq!(value_of("behavior"), vec![prediction.clone()], "{ns}/{key}");
                assert_eq!(
                    value_of("correct"),
                    vec![Value::Bool(prediction == record["gold"])],
                    "{ns}/{key}"
                );
            }
            let audit = record["audit"].as_array().map(Vec::len).unwrap_or(0);
            let audit_assessments = assessments
                .iter()
                .filter(|a| a["name"].as_str().is_some_and(|n| n.starts_with("audit.")))
                .count();
            assert_eq!(audit_assessments, audit, "{ns}/{key}: audit feedback");
            checked += 1;
        }
    }
    checked
}
