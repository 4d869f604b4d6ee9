//! MLflow as teams run it: runs in PostgreSQL, artifacts in an
//! S3-compatible store (moto's server) behind MLflow's artifact proxy
//! (`--artifacts-destination s3://...`). A tracked run lands there, `w2c
//! verify --deep` reads every artifact back through the server, and the
//! bucket and the database hold what the session says. (CI also runs the
//! whole tracking suite against this backend: W2C_TEST_MLFLOW_BACKEND.)

mod common;

use common::mlflow::{self, Backend, MlflowServer};
use common::{w2c, Opts, Workspace};

#[test]
fn a_run_tracked_on_postgres_and_s3_verifies_deep() {
    let server = MlflowServer::start_postgres_s3();
    let Backend::PostgresS3 { s3, .. } = &server.backend else {
        unreachable!("a PostgreSQL + S3 server")
    };
    let exp = mlflow::experiment("pg-s3");
    let ws = Workspace::new();
    let cfg = ws.config(
        "c.toml",
        &Opts {
            n_per_label: Some(3),
            methods: "\"mcq\", \"llm_judge\"".into(),
            ..Opts::default()
        },
    );
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .env("MLFLOW_TRACKING_URI", &server.url)
        .env("MLFLOW_EXPERIMENT_NAME", &exp)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = common::only_session(&ws.runs(), "k");
    let fp = session
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    // The run waits a bounded time for its last traces (the default: 3% of
    // the run, 10-60 s); what it leaves pending `w2c sync` sends, as a user
    // would after verify's PENDING.
    let sync = w2c(ws.path())
        .args(["sync", &fp])
        .env("MLFLOW_TRACKING_URI", &server.url)
        .output()
        .expect("sync");
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let verify = w2c(ws.path())
        .args(["verify", &fp, "--deep"])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // The artifacts are objects in the bucket, the runs rows in PostgreSQL.
    let keys = s3.python(&format!(
        "for o in s3.list_objects_v2(Bucket={:?}).get('Contents', []): print(o['Key'])",
        common::mlflow::S3::BUCKET
    ));
    for file in [
        "metrics.json",
        "predictions.jsonl",
        "llm_calls.jsonl",
        "manifest.json",
    ] {
        assert!(
            keys.lines()
                .any(|k| k.ends_with(&format!("/artifacts/{file}"))),
            "{file} not in the bucket: {keys}"
        );
    }
    let q = mlflow::query(&server.url, &exp, true, &[]);
    let runs = q["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "a parent and three children");
    assert!(runs.iter().all(|r| r["status"] == "FINISHED"));
    assert!(server.backend_uri().starts_with("postgresql"));
}
