//! One provider over several endpoints (replicas without a load balancer):
//! one of three `w2c mock-server`s is stopped mid-run; the run completes
//! with the metrics of a single-endpoint run, the dead endpoint's share
//! moves to the others, and the call log says which endpoint answered.

mod common;

use common::{read_json, read_jsonl, w2c, wait_for, MockServer, Opts, Workspace};
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn a_stopped_endpoint_is_taken_out_and_its_share_moves_to_the_others() {
    let ws = Workspace::new();
    let servers: Vec<MockServer> = (0..3)
        .map(|_| MockServer::start(&["--latency-ms", "40"], &[]))
        .collect();
    let o = Opts {
        n_per_label: Some(20),
        concurrency: 2,
        ..Opts::default()
    };
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("\"{}/v1\"", s.url))
        .collect();
    let cfg = ws.http_config("multi.toml", &o, &servers[0].url, "");
    // The provider's three endpoints, 2 requests each at once.
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        &format!("base_url = \"{}/v1\"", servers[0].url),
        &format!("base_urls = [{}]", urls.join(", ")),
    );
    let cfg = ws.write("multi.toml", &text);
    let mut run = common::spawn_run(&ws, &cfg);
    let mut servers = servers;
    wait_for(
        "the third endpoint's first replies",
        Duration::from_secs(60),
        || servers[2].stats()["ok"].as_u64().unwrap_or(0) >= 5,
    );
    let dead = servers.pop().expect("server");
    let dead_url = format!("{}/v1", dead.url);
    drop(dead); // killed: connections are refused from now on
    let status = run.wait().expect("wait");
    assert!(status.success(), "the run completes: {status}");
    let session = common::only_session(&ws.runs(), "k");
    let calls = read_jsonl(&session.join("artifacts_local/mcq/llm_calls.jsonl"));
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed_on_dead = 0;
    for c in &calls {
        assert_eq!(c["status"], "ok", "every item succeeded: {c}");
        let endpoint = c["endpoint"].as_str().expect("endpoint");
        *answered.entry(endpoint.to_string()).or_default() += 1;
        for a in c["attempts"].as_array().expect("attempts") {
            if a["endpoint"] == dead_url.as_str() && a["error"].is_string() {
                failed_on_dead += 1;
            }
        }
    }
    let on = |url: &str| {
        answered
            .get(&format!("{url}/chat/completions"))
            .copied()
            .unwrap_or(0)
    };
    let total = calls.len();
    assert_eq!(total, 60);
    let dead_share = on(&dead_url);
    assert!(
        dead_share >= 5,
        "the dead endpoint answered before it died: {answered:?}"
    );
    assert!(
        dead_share < total / 3,
        "its share moved to the others: {answered:?}"
    );
    assert_eq!(
        on(&format!("{}/v1", servers[0].url)) + on(&format!("{}/v1", servers[1].url)) + dead_share,
        total,
        "{answered:?}"
    );
    assert!(
        failed_on_dead <= 2 + 3 * 2,
        "in-flight requests plus the failures that eject it, not one per item: {failed_on_dead}"
    );
    assert!(
        failed_on_dead >= 1,
        "the call log shows the failed attempts"
    );
    // The metrics are those of one endpoint alone.
    let single = ws.http_config("single.toml", &o, &servers[0].url, "");
    let out = w2c(ws.path())
        .args(["run", "--run-key", "one", "--config"])
        .arg(&single)
        .output()
        .expect("run");
    assert!(out.status.success());
    let one = common::only_session(&ws.runs(), "one");
    assert_eq!(
        read_json(&session.join("artifacts_local/mcq/metrics.json"))["metrics"],
        read_json(&one.join("artifacts_local/mcq/metrics.json"))["metrics"]
    );
}

#[test]
fn endpoint_lists_are_checked_and_one_process_can_be_pointed_elsewhere() {
    let ws = Workspace::new();
    let server = MockServer::start(&[], &[]);
    let cfg = ws.http_config("e.toml", &Opts::default(), &server.url, "");
    let both = std::fs::read_to_string(&cfg).expect("config").replace(
        "kind = \"openai\"",
        "kind = \"openai\"\nbase_urls = [\"http://127.0.0.1:9/v1\"]",
    );
    let bad = ws.write("both.toml", &both);
    let out = w2c(ws.path())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("either `base_url` or `base_urls`"));
    // W2C_BASE_URLS_<PROVIDER> replaces the endpoints for one process.
    let unreachable = ws.http_config("u.toml", &Opts::default(), "http://127.0.0.1:9", "");
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&unreachable)
        .env("W2C_BASE_URLS_MOCK", format!("{}/v1", server.url))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&unreachable)
        .env("W2C_BASE_URLS_MOCK", "ftp://x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("W2C_BASE_URLS_MOCK"));
}
