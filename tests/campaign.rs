//! Campaigns: one config, several targets, one session each, sharing the
//! endpoint's concurrency; killed and run again, they finish with the
//! numbers of separate runs; a target added later leaves the finished
//! sessions as they were; run in shards, they finish with the same numbers.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONCURRENCY: u64 = 4;

fn campaign_config(ws: &Workspace, url: &str, models: &[&str]) -> PathBuf {
    let targets: String = models
        .iter()
        .map(|m| format!("[[targets]]\nmodel = \"{m}\"\nprovider = \"local\"\n\n"))
        .collect();
    config(
        ws,
        "acme.toml",
        url,
        &format!("[models]\njudge = \"acme-judge\"\njudge_provider = \"local\"\n\n{targets}"),
    )
}

fn single_config(ws: &Workspace, url: &str, model: &str) -> PathBuf {
    config(
        ws,
        &format!("{model}.toml"),
        url,
        &format!(
            "[models]\ntarget = \"{model}\"\ntarget_provider = \"local\"\njudge = \"acme-judge\"\njudge_provider = \"local\"\n\n"
        ),
    )
}

/// The config `name`: 30 shared examples, `mcq` and `llm_judge`, the
/// models given, all on the endpoint at `url`.
fn config(ws: &Workspace, name: &str, url: &str, models: &str) -> PathBuf {
    ws.write(
        name,
        &format!(
            r#"[run]
seed = 42

[dataset]
path = "{dataset}"
n_per_label = 10

{models}[providers.local]
kind = "openai"
base_url = "{url}/v1"
max_concurrency = {CONCURRENCY}

[methods]
enabled = ["mcq", "llm_judge"]
"#,
            dataset = shared_dataset().display(),
        ),
    )
}

/// The session of `model` under `runs/<key>`.
fn session_of(runs: &Path, key: &str, model: &str) -> PathBuf {
    std::fs::read_dir(runs.join(key).join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|s| {
            read_json(&s.join("manifest.json"))["fingerprint_payload"]["target"]["model"] == model
        })
        .unwrap_or_else(|| panic!("no session of {model}"))
}

/// `w2c run --config <cfg> <extra>` in `ws`, untracked, output captured.
fn spawn_run(ws: &Workspace, cfg: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("w2c"))
        .current_dir(ws.path())
        .args(["run", "--config"])
        .arg(cfg)
        .args(extra)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("W2C_RUN_KEY")
        .env_remove("W2C_RUNS_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn metrics(session: &Path, ns: &str) -> serde_json::Value {
    read_json(
        &session
            .join("artifacts_local")
            .join(ns)
            .join("metrics.json"),
    )["metrics"]
        .clone()
}

#[test]
fn a_campaign_shares_the_endpoint_survives_a_kill_and_matches_separate_runs() {
    let server = MockServer::start(&["--latency-ms", "20"], &[]);
    let models = ["acme-small", "acme-large", "acme-xl"];
    let ws = Workspace::new();
    let cfg = campaign_config(&ws, &server.url, &models);
    let run = |ws: &Workspace, cfg: &Path| spawn_run(ws, cfg, &[]);
    // Killed once results flow; the campaign's run key is its name.
    let mut child = run(&ws, &cfg);
    let results = || {
        std::fs::read_dir(ws.runs().join("acme/sessions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|s| std::fs::read(s.path().join("checkpoints/mcq/results.jsonl")).ok())
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .sum::<usize>()
    };
    let running = wait_while_running(&mut child, "results", Duration::from_secs(60), || {
        results() >= 20
    });
    assert!(running, "the campaign ended before the kill");
    child.kill().unwrap();
    child.wait().unwrap();
    // Run again: every session continues and finishes.
    let out = run(&ws, &cfg).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for m in models {
        assert!(stdout.contains(&format!("== {m}")), "{stdout}");
    }
    // The comparison it suggests names the sessions by address and runs.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("compare the models:"))
        .unwrap_or_else(|| panic!("no compare command in {stdout}"));
    let compare: Vec<&str> = line.split('`').nth(1).unwrap().split_whitespace().collect();
    assert_eq!(compare[..2], ["w2c", "compare"]);
    for (address, m) in compare[2..].iter().zip(models) {
        let dir = session_of(&ws.runs(), "acme", m);
        let fp16 = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(*address, format!("acme/{fp16}"));
    }
    w2c(ws.path()).args(&compare[1..]).assert().success();
    // The three sessions shared one limit of CONCURRENCY requests.
    let max = server.stats()["max_in_flight"].as_u64().unwrap();
    assert!(max <= CONCURRENCY, "{max} requests in flight at once");

    // The same numbers as three separate runs.
    let separate = Workspace::new();
    for m in models {
        let single = single_config(&separate, &server.url, m);
        w2c(separate.path())
            .args(["run", "--run-key", "one", "--config"])
            .arg(&single)
            .assert()
            .success();
        let (a, b) = (
            session_of(&ws.runs(), "acme", m),
            session_of(&separate.runs(), "one", m),
        );
        assert_eq!(
            a.file_name(),
            b.file_name(),
            "{m}: a campaign target is the same session as its own config"
        );
        for ns in ["mcq", "llm_judge"] {
            assert_eq!(metrics(&a, ns), metrics(&b, ns), "{m} {ns}");
        }
    }

    // status groups the campaign and names the models.
    let status = w2c(ws.path()).arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("campaign acme:"), "{status}");
    for m in models {
        assert!(status.contains(m), "{status}");
    }

    // A target added later: the finished sessions stay as they are and
    // only the new model is asked.
    let before: Vec<Vec<u8>> = models
        .iter()
        .map(|m| {
            std::fs::read(session_of(&ws.runs(), "acme", m).join("checkpoints/mcq/results.jsonl"))
                .unwrap()
        })
        .collect();
    let cfg = campaign_config(
        &ws,
        &server.url,
        &["acme-small", "acme-large", "acme-xl", "acme-new"],
    );
    server.reset();
    let out = run(&ws, &cfg).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (m, b) in models.iter().zip(&before) {
        let after =
            std::fs::read(session_of(&ws.runs(), "acme", m).join("checkpoints/mcq/results.jsonl"))
                .unwrap();
        assert_eq!(&after, b, "{m} was touched");
    }
    // Every request the server saw is in the new session's call logs.
    let new = session_of(&ws.runs(), "acme", "acme-new");
    let calls: usize = ["mcq", "llm_judge.target", "llm_judge"]
        .iter()
        .map(|ns| read_jsonl(&new.join("artifacts_local").join(ns).join("llm_calls.jsonl")).len())
        .sum();
    assert!(calls > 0);
    assert_eq!(server.stats()["requests"].as_u64().unwrap(), calls as u64);
}

/// What `w2c config check` says of each target of a campaign: (model,
/// fingerprint, session address), in its order.
fn checked_sessions(ws: &Workspace, cfg: &Path) -> Vec<(String, String, String)> {
    let out = w2c(ws.path())
        .args(["config", "check"])
        .arg(cfg)
        .output()
        .expect("config check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |block: &str, key: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no `{key}` in {block}"))
            .trim()
            .to_string()
    };
    let blocks: Vec<&str> = text.split("\n== ").skip(1).collect();
    for b in &blocks {
        // Each target's plan and estimate, as for one model.
        assert!(b.contains("plan (prompt tokens"), "{b}");
        let model = b.lines().next().unwrap();
        assert!(
            b.lines()
                .any(|l| l.starts_with("mcq ") && l.contains(model)),
            "{b}"
        );
        assert!(b.contains(&format!("{model}: ")), "{b}");
    }
    assert!(text.contains("campaign total"), "{text}");
    blocks
        .iter()
        .map(|b| {
            (
                b.lines().next().unwrap().to_string(),
                field(b, "fingerprint: "),
                field(b, "session: "),
            )
        })
        .collect()
}

/// README's campaign example passes `w2c config check`, which gives each
/// target its own session (address in the campaign's run key), plan and
/// cost, and the campaign's totals.
#[test]
fn readme_campaign_example_checks_with_a_session_plan_and_cost_per_target() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = &readme[readme.find("## Compare models").expect("Compare models")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let toml = &section[start..start + section[start..].find("```").expect("end")];
    assert!(toml.contains("[[targets]]"), "{toml}");
    let ws = Workspace::new();
    let cfg = ws.write(
        "acme.toml",
        &toml.replace(
            "data/when2call_test_llm_judge.jsonl",
            &shared_dataset().display().to_string(),
        ),
    );
    let sessions = checked_sessions(&ws, &cfg);
    let models: Vec<&str> = sessions.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(models, ["acme-small", "acme-large"]);
    for (_, fp, address) in &sessions {
        assert_eq!(fp.len(), 64);
        assert_eq!(*address, format!("acme/{}", &fp[..16]));
    }
    assert_ne!(sessions[0].1, sessions[1].1);
}

#[test]
fn a_campaign_runs_in_shards_and_matches_separate_runs() {
    let server = MockServer::start(&[], &[]);
    let models = ["acme-small", "acme-large"];
    let ws = Workspace::new();
    let cfg = campaign_config(&ws, &server.url, &models);
    // Checked before it runs: the sessions `config check` names are the
    // ones the run creates.
    let checked = checked_sessions(&ws, &cfg);
    // Two shard processes at once, as two array tasks would run them: each
    // runs its share of every target's session; the last to finish a
    // namespace finalizes it.
    let shards: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| spawn_run(&ws, &cfg, &["--shard", shard]))
        .collect();
    for child in shards {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let separate = Workspace::new();
    for m in models {
        let a = session_of(&ws.runs(), "acme", m);
        for ns in ["mcq", "llm_judge.target", "llm_judge"] {
            let done = read_json(&a.join("checkpoints").join(ns).join("_DONE.json"));
            assert!(done.is_object(), "{m} {ns}: {done}");
        }
        let single = single_config(&separate, &server.url, m);
        w2c(separate.path())
            .args(["run", "--run-key", "one", "--config"])
            .arg(&single)
            .assert()
            .success();
        let b = session_of(&separate.runs(), "one", m);
        assert_eq!(a.file_name(), b.file_name(), "{m}");
        let (model, fp, address) = checked
            .iter()
            .find(|(model, _, _)| model == m)
            .unwrap_or_else(|| panic!("config check names no session for {m}"));
        assert_eq!(
            read_json(&a.join("manifest.json"))["fingerprint"],
            *fp,
            "{model}"
        );
        assert_eq!(
            *address,
            format!("acme/{}", a.file_name().unwrap().to_string_lossy()),
            "{model}"
        );
        for ns in ["mcq", "llm_judge"] {
            assert_eq!(metrics(&a, ns), metrics(&b, ns), "{m} {ns}");
        }
    }
    w2c(ws.path())
        .args(["verify", "--all", "--local-only"])
        .assert()
        .success();
}
