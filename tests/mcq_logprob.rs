//! mcq_logprob end to end: four scored continuations per example through
//! /completions (built-in mock and HTTP mock-server agree), all variants
//! reported, and an endpoint that does not echo stops the method clearly.

mod common;

use common::*;

fn opts() -> Opts {
    Opts {
        methods: "\"mcq_logprob\"".into(),
        mcq_extra: "\n[methods.mcq_logprob]\ntemplate = \"qwen2_5\"".into(),
        ..Opts::default()
    }
}

#[test]
fn scores_every_choice_and_matches_over_http() {
    let local = Workspace::new();
    let cfg = local.config("eval.toml", &opts());
    run_ok(&local, &cfg);
    let s = only_session(&local.runs(), "k");
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    for v in ["acc", "acc_norm", "acc_bytes", "acc_tokens"] {
        assert_eq!(m["variants"][v]["n_total"], 30, "{v}");
    }
    assert_eq!(m["metrics"], m["variants"]["acc"]);
    let manifest = read_json(&s.join("manifest.json"));
    assert_eq!(
        manifest["namespaces"]["mcq_logprob"]["settings"]["family"],
        "qwen2_5"
    );
    let debug = read_jsonl(&s.join("artifacts_local/mcq_logprob/debug_per_choice.jsonl"));
    assert_eq!(debug.len(), 120);
    assert!(debug
        .iter()
        .all(|d| d["choice"]["n_tokens"].as_u64().unwrap() > 0));
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert_eq!(calls.len(), 120);
    assert_eq!(calls[0]["request"]["echo"], true);
    assert_eq!(calls[0]["request"]["max_tokens"], 1);
    assert!(calls[0]["request"]["prompt"]
        .as_str()
        .unwrap()
        .starts_with("<|im_start|>system"));

    let server = MockServer::start(&["--seed", "42", "--rate-5xx", "0.05"], &[]);
    let http = Workspace::new();
    let cfg = http.http_config("eval.toml", &opts(), &server.url, "");
    run_ok(&http, &cfg);
    let hs = only_session(&http.runs(), "k");
    let hm = read_json(&hs.join("artifacts_local/mcq_logprob/metrics.json"));
    assert_eq!(hm["variants"], m["variants"]);
}

#[test]
fn endpoint_without_echo_stops_with_a_clear_message() {
    let server = MockServer::start(&["--no-echo"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &opts(), &server.url, "");
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot score prompts") && stderr.contains("echo"),
        "{stderr}"
    );
    let s = only_session(&ws.runs(), "k");
    assert!(!s.join("artifacts_local/mcq_logprob/metrics.json").exists());
}

fn hermes_opts(extra: &str) -> Opts {
    Opts {
        methods: "\"mcq_logprob\"".into(),
        mcq_extra: format!("\n[methods.mcq_logprob]\ntemplate = \"hermes\"\n{extra}"),
        ..Opts::default()
    }
}

/// Context window of the llama-cpp style mock in these tests: some of the
/// 30 selected examples' prompts exceed it, most do not.
const WINDOW: &str = "1100";

// Defect 5 (issue 10): one over-long example stopped the whole method. Now
// it is an unscored result: audited, counted, left out of the metrics, kept
// on resume; the namespace finishes and verifies.
#[test]
fn over_long_examples_are_unscored_results_and_the_method_finishes() {
    let server = MockServer::start(
        &["--echo-style", "llama-cpp", "--context-window", WINDOW],
        &[],
    );
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &hermes_opts(""), &server.url, "");
    let out = run_ok(&ws, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("special tokens not echoed as text"),
        "{stderr}"
    );
    assert!(stderr.contains("partial-byte tokens"), "{stderr}");
    let s = only_session(&ws.runs(), "k");
    let ns = s.join("checkpoints/mcq_logprob");
    assert!(ns.join("_DONE.json").exists());
    let probe = read_json(&ns.join("probe.json"));
    assert_eq!(probe["result"]["verdict"], "scorable");
    assert_eq!(probe["result"]["specials_not_text"], true);
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    let unscored = m["counts"]["unscored"].as_u64().unwrap();
    assert!(unscored > 0 && unscored < 30, "{unscored}");
    // The user is told, not only the files.
    assert!(
        stderr.contains(&format!(
            "mcq_logprob: {unscored} of 30 examples are unscored ({unscored} context overflow, 0 unalignable echo)"
        )),
        "{stderr}"
    );
    assert_eq!(m["counts"]["unscored_context_overflow"], unscored);
    assert_eq!(m["n_examples"], 30);
    for v in ["acc", "acc_norm", "acc_bytes", "acc_tokens"] {
        assert_eq!(
            m["variants"][v]["n_total"].as_u64().unwrap(),
            30 - unscored,
            "{v}"
        );
    }
    let preds = read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl"));
    assert_eq!(preds.len(), 30);
    let listed: Vec<_> = preds.iter().filter(|p| !p["unscored"].is_null()).collect();
    assert_eq!(listed.len() as u64, unscored);
    for p in &listed {
        assert_eq!(p["prediction"], serde_json::Value::Null);
        assert_eq!(p["unscored"]["reason"], "context_overflow");
        assert!(p["unscored"]["detail"]
            .as_str()
            .unwrap()
            .contains("maximum context length"));
    }
    let audit = read_jsonl(&ns.join("audit_fallbacks.jsonl"));
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["event_type"] == "unscored")
            .count() as u64,
        unscored
    );
    // Scored examples still saw end-of-generation replies (answers ending
    // in "."), trimmed by their usage.
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert!(calls
        .iter()
        .any(|c| c["status"] == "ok" && c["usage"]["completion_tokens"] == 0));
    // The record verifies, and the report shows the count.
    let fp = s.file_name().unwrap().to_string_lossy().to_string();
    let v = w2c(ws.path())
        .args(["verify", &fp, "--local-only"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let r = w2c(ws.path()).args(["report", &fp]).output().unwrap();
    let table = String::from_utf8_lossy(&r.stdout);
    let header = table.lines().next().unwrap();
    let row = table.lines().nth(2).unwrap();
    let col = header
        .split_whitespace()
        .position(|h| h == "unscored")
        .unwrap();
    assert_eq!(
        row.split_whitespace().nth(col).unwrap(),
        unscored.to_string(),
        "{table}"
    );
    // A resume redoes nothing: unscored examples are results.
    let before = server.stats()["completions"].as_u64().unwrap();
    run_ok(&ws, &cfg);
    assert_eq!(server.stats()["completions"].as_u64().unwrap(), before);
}

#[test]
fn left_truncation_fits_over_long_examples_and_records_the_cut() {
    let server = MockServer::start(
        &["--echo-style", "llama-cpp", "--context-window", WINDOW],
        &[],
    );
    let ws = Workspace::new();
    let extra = format!("truncation = \"left\"\nmax_context_tokens = {WINDOW}");
    let cfg = ws.http_config("eval.toml", &hermes_opts(&extra), &server.url, "");
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let manifest = read_json(&s.join("manifest.json"));
    let settings = &manifest["namespaces"]["mcq_logprob"]["settings"];
    assert_eq!(settings["truncation"], "left");
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    assert_eq!(m["counts"]["unscored"], 0);
    let truncated = m["counts"]["truncated"].as_u64().unwrap();
    assert!(truncated > 0, "{m}");
    assert_eq!(m["metrics"]["n_total"], 30);
    let preds = read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl"));
    let cut: Vec<_> = preds
        .iter()
        .filter(|p| !p["truncation"].is_null())
        .collect();
    assert_eq!(cut.len() as u64, truncated);
    let limit: u64 = WINDOW.parse::<u64>().unwrap() - 1;
    for p in cut {
        let t = &p["truncation"];
        assert!(t["prompt_tokens_before"].as_u64().unwrap() > limit, "{t}");
        assert!(t["prompt_tokens_after"].as_u64().unwrap() <= limit, "{t}");
        assert!(t["dropped_chars"].as_u64().unwrap() > 0, "{t}");
    }
    // Every scoring call fit: the server reported no overflow.
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    assert!(calls.iter().all(|c| c["status"] == "ok"));
    assert!(calls
        .iter()
        .all(|c| c["usage"]["prompt_tokens"].as_u64().unwrap() <= limit));
}

/// A session `mcq_logprob` scored before the official prompts: its stored
/// config says `template: null` (the family then came from the model name)
/// and its namespace's settings name the family. Here one is made by
/// writing what that w2c wrote: the same namespace settings (w2c's families
/// kept them) and `null` in the stored config, and it is left unfinished.
#[test]
fn sessions_scored_before_the_official_prompts_resume_in_their_namespace() {
    let ws = Workspace::new();
    let opts = |template: &str| Opts {
        methods: "\"mcq_logprob\"".into(),
        model: "Qwen2.5-7B-Instruct".into(),
        n_per_label: Some(2),
        mcq_extra: format!("\n[methods.mcq_logprob]\n{template}"),
        ..Opts::default()
    };
    let cfg = ws.config("eval.toml", &opts("template = \"qwen2_5\""));
    let out = run_ok(&ws, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("w2c's own family `w2c-qwen2_5`") && stderr.contains("when2call-qwen2_5"),
        "{stderr}"
    );
    let s = only_session(&ws.runs(), "k");
    let ns = s.join("checkpoints/mcq_logprob");
    let settings = read_json(&ns.join("method_settings.json"));
    // The settings (and so the namespace) of w2c's families are unchanged.
    assert_eq!(
        settings["settings"],
        serde_json::json!({"method": "mcq_logprob", "family": "qwen2_5", "delimiter": "", "truncation": "none", "max_context_tokens": null, "scoring_version": 2})
    );
    let mut manifest = read_json(&s.join("manifest.json"));
    manifest["config"]["methods"]["mcq_logprob"]["template"] = serde_json::Value::Null;
    std::fs::write(s.join("manifest.json"), manifest.to_string()).unwrap();
    // Unfinished: two results lost, no _DONE.json.
    let results = std::fs::read_to_string(ns.join("results.jsonl")).unwrap();
    let kept: Vec<&str> = results.lines().take(results.lines().count() - 2).collect();
    std::fs::write(ns.join("results.jsonl"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(ns.join("_DONE.json")).unwrap();

    let fp = s.file_name().unwrap().to_string_lossy().to_string();
    let out = w2c(ws.path())
        .args(["resume", &fp, "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("created before the official prompts") && stderr.contains("`w2c-qwen2_5`"),
        "{stderr}"
    );
    let names = |s: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(s.join("checkpoints"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&s), ["mcq_logprob"]);
    assert!(ns.join("_DONE.json").exists());
    assert_eq!(read_jsonl(&ns.join("results.jsonl")).len(), 6);

    // The same config without a template now means the official prompt: a
    // new namespace beside the old one, which stays as it was.
    let cfg = ws.config("eval.toml", &opts(""));
    run_ok(&ws, &cfg);
    let all = names(&s);
    assert_eq!(all.len(), 2, "{all:?}");
    let official = s.join("checkpoints").join(&all[1]);
    assert!(all[1].starts_with("mcq_logprob~"), "{all:?}");
    let settings = read_json(&official.join("method_settings.json"));
    assert_eq!(settings["settings"]["template"], "when2call");
    let probe = read_json(&official.join("probe.json"));
    assert_eq!(probe["template"], "when2call");
    let m = read_json(&s.join(format!("artifacts_local/{}/metrics.json", all[1])));
    assert_eq!(m["paper"]["acc"], m["variants"]["acc"]["accuracy"]);
    assert_eq!(
        m["paper"]["acc_norm"],
        m["variants"]["acc_norm"]["accuracy"]
    );
    assert_eq!(m["paper"]["macro_f1"], m["metrics"]["macro_f1_official"]);
    let v = w2c(ws.path())
        .args(["verify", &fp, "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

fn garbage_opts() -> Opts {
    Opts {
        n_per_label: Some(1),
        max_attempts: 2,
        methods: "\"mcq_logprob\", \"mcq\"".into(),
        ..Opts::default()
    }
}

fn run_with(ws: &Workspace, cfg: &std::path::Path) -> (Option<i32>, String) {
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Issue 19, point 8: a probe reply that is garbage after its retries made
// the run fail (exit 1); it is a failed request like an item's: the method
// is left unfinished, the others run, the run is incomplete (exit 3), and a
// resume against a working server finishes it.
#[test]
fn a_garbage_probe_reply_after_retries_leaves_the_method_incomplete() {
    let good = MockServer::start(&[], &[]);
    for (args, causes) in [
        (vec!["--rate-malformed", "1"], vec!["malformed JSON body"]),
        (vec!["--rate-empty", "1"], vec!["malformed JSON body"]),
        (vec!["--rate-truncated", "1"], vec!["malformed JSON body"]),
        (
            vec!["--huge-body-bytes", "5242880"],
            vec!["max_response_bytes"],
        ),
        (
            vec!["--wrong-types"],
            vec![
                "`choices[0].text` is a number",
                "`choices[0].logprobs` is a string",
                "`logprobs.tokens`: invalid type",
            ],
        ),
    ] {
        let server = MockServer::start(&args, &[]);
        let ws = Workspace::new();
        let cfg = ws.http_config("eval.toml", &garbage_opts(), &server.url, "");
        let (code, stderr) = run_with(&ws, &cfg);
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("mcq_logprob: not started: the capability probe request failed")
                && causes.iter().any(|c| stderr.contains(c))
                && stderr.contains("gave up after 2 attempts"),
            "{args:?}: {stderr}"
        );
        // The probe was sent twice (its retry) and nothing was scored.
        let s = only_session(&ws.runs(), "k");
        assert!(!s.join("checkpoints/mcq_logprob/_DONE.json").exists());
        let cfg = ws.http_config("eval.toml", &garbage_opts(), &good.url, "");
        let (code, stderr) = run_with(&ws, &cfg);
        assert_eq!(code, Some(0), "{args:?} then resumed: {stderr}");
        assert!(s.join("checkpoints/mcq_logprob/_DONE.json").exists());
    }
}

// Issue 19, point 7: replies that echo the prompt but report absurd
// `completion_tokens` or shifted offsets were called "no echo".
#[test]
fn an_echo_with_absurd_numbers_is_named_for_what_it_is() {
    let server = MockServer::start(&["--absurd-echo", "completion-tokens"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &garbage_opts(), &server.url, "");
    let (code, stderr) = run_with(&ws, &cfg);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("`usage.completion_tokens` = 1000000 is more than the")
            && !stderr.contains("no echo"),
        "{stderr}"
    );
    let server = MockServer::start(&["--absurd-echo", "shifted-offsets"], &[]);
    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &garbage_opts(), &server.url, "");
    let (code, stderr) = run_with(&ws, &cfg);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "inconsistent echo: the prompt is echoed but `text_offset` starts at 5, not 0"
        ) && !stderr.contains("no echo"),
        "{stderr}"
    );
    let s = only_session(&ws.runs(), "k");
    let probe = read_json(&s.join("checkpoints/mcq_logprob/probe.json"));
    assert_eq!(probe["result"]["verdict"], "inconsistent", "{probe}");
}

/// The JSON lines of a file that parse (a missing file has none).
fn read_jsonl_lossy(p: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The keys of `results.jsonl`, and the choices `.steps.jsonl` holds per
/// key, of the only session under `runs/k`.
fn done_and_saved(
    ws: &Workspace,
) -> (
    std::collections::HashSet<String>,
    std::collections::HashMap<String, u64>,
) {
    let Some(s) = session_dir(ws) else {
        return Default::default();
    };
    let ns = s.join("checkpoints/mcq_logprob");
    let done = read_jsonl_lossy(&ns.join("results.jsonl"))
        .iter()
        .filter_map(|r| r["key"].as_str().map(str::to_string))
        .collect();
    let mut saved = std::collections::HashMap::new();
    for l in read_jsonl_lossy(&ns.join(".steps.jsonl")) {
        let key = l["key"].as_str().unwrap_or_default().to_string();
        if l["cleared"] == true {
            saved.remove(&key);
        } else if l["step"]["kind"] == "choice" {
            *saved.entry(key).or_insert(0) += 1;
        }
    }
    (done, saved)
}

// Issue 19, point 11: a kill -9 lost an example's finished choices with it
// (8-12 requests repeated per kill at concurrency 4). Each finished call is
// now saved as it completes: a kill repeats at most the requests in flight.
#[test]
fn kill_nine_repeats_only_the_requests_in_flight() {
    const CONCURRENCY: u64 = 4;
    let server = MockServer::start(&["--latency-ms", "60", "--jitter-ms", "40"], &[]);
    let opts = Opts {
        n_per_label: Some(30),
        concurrency: CONCURRENCY as usize,
        ..opts()
    };
    let reference = Workspace::new();
    let cfg = reference.http_config("eval.toml", &opts, &server.url, "");
    run_ok(&reference, &cfg);
    let ref_preds = read_jsonl(
        &only_session(&reference.runs(), "k").join("artifacts_local/mcq_logprob/predictions.jsonl"),
    );

    let ws = Workspace::new();
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    let completions = || server.stats()["completions"].as_u64().unwrap_or(0);
    let mut kills = Vec::new();
    for trial in 0..6 {
        let (done_before, saved_before) = done_and_saved(&ws);
        let sent_before = completions();
        let mut child = spawn_run(&ws, &cfg);
        let target = done_before.len() + 1 + trial % 3;
        // Kill at a moment with finished choices of unfinished examples:
        // more requests received than the probe and four per new result
        // account for, beyond what could be in flight.
        let running = wait_while_running(
            &mut child,
            "finished choices of unfinished examples",
            std::time::Duration::from_secs(60),
            || {
                let (done, _) = done_and_saved(&ws);
                let new = done.len().saturating_sub(done_before.len()) as u64;
                done.len() >= target && completions() - sent_before >= 1 + 4 * new + CONCURRENCY + 2
            },
        );
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !running {
            break;
        }
        // Requests this process sent that left nothing on disk: the next
        // process sends them again.
        let sent = completions() - sent_before;
        let (done_after, saved_after) = done_and_saved(&ws);
        let finished: Vec<&String> = done_after.difference(&done_before).collect();
        let reused: u64 = finished
            .iter()
            .map(|k| saved_before.get(*k).copied().unwrap_or(0))
            .sum();
        let unfinished = |saved: &std::collections::HashMap<String, u64>| -> u64 {
            saved
                .iter()
                .filter(|(k, _)| !done_after.contains(*k))
                .map(|(_, n)| n)
                .sum()
        };
        let stored = unfinished(&saved_after) - unfinished(&saved_before);
        kills.push(sent - 1 - (4 * finished.len() as u64 - reused) - stored);
    }
    eprintln!("requests repeated per kill: {kills:?}");
    assert!(kills.len() >= 4, "only {} kills landed", kills.len());
    assert!(
        kills.iter().all(|&n| n <= CONCURRENCY),
        "a kill repeated more than the {CONCURRENCY} requests in flight: {kills:?}"
    );
    // Resumed to the end: the same predictions, every call logged once, and
    // no steps left behind.
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    assert_eq!(
        read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl")),
        ref_preds
    );
    // Each call is logged once: a call restored from a step is not logged
    // again (two lines for one request are two calls, a repeat after a kill).
    let calls = read_jsonl(&s.join("artifacts_local/mcq_logprob/llm_calls.jsonl"));
    let mut seen = std::collections::HashSet::new();
    for c in &calls {
        assert!(seen.insert(c.to_string()), "a call is logged twice: {c}");
        assert!(c["request"]["prompt"].is_string(), "{c}");
    }
    let requests: std::collections::HashSet<_> = calls
        .iter()
        .map(|c| (c["uuid"].to_string(), c["request_sha256"].to_string()))
        .collect();
    assert_eq!(requests.len(), 4 * ref_preds.len());
    let repeated: u64 = kills.iter().sum();
    assert!(
        calls.len() as u64 <= 4 * ref_preds.len() as u64 + repeated,
        "{} calls logged for {} examples and {repeated} repeats",
        calls.len(),
        ref_preds.len()
    );
    assert!(!s.join("checkpoints/mcq_logprob/.steps.jsonl").exists());
    w2c(ws.path())
        .args(["verify", "--all", "--local-only", "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
}

// Issue 19, point 9: logprobs of +1e308 summed to +Infinity for every
// candidate, and examples became ties predicted `direct`, unaudited. A
// positive log-probability is impossible: the example is unscored and says
// why.
#[test]
fn positive_logprobs_leave_the_example_unscored_and_audited() {
    let server = MockServer::start(&["--absurd-echo", "positive-logprobs"], &[]);
    let ws = Workspace::new();
    let opts = Opts {
        n_per_label: Some(2),
        ..opts()
    };
    let cfg = ws.http_config("eval.toml", &opts, &server.url, "");
    let out = run_ok(&ws, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("6 of 6 examples are unscored (0 context overflow, 0 unalignable echo, 6 impossible logprob)"),
        "{stderr}"
    );
    let s = only_session(&ws.runs(), "k");
    let m = read_json(&s.join("artifacts_local/mcq_logprob/metrics.json"));
    assert_eq!(
        m["counts"]["unscored_impossible_logprob"], 6,
        "{}",
        m["counts"]
    );
    assert_eq!(m["counts"]["ties_acc"], 0);
    for p in read_jsonl(&s.join("artifacts_local/mcq_logprob/predictions.jsonl")) {
        assert!(p["prediction"].is_null(), "{p}");
        assert_eq!(p["unscored"]["reason"], "impossible_logprob", "{p}");
        assert!(
            p["unscored"]["detail"]
                .as_str()
                .unwrap()
                .contains("logprob 1e308"),
            "{p}"
        );
    }
    let events = read_jsonl(&s.join("checkpoints/mcq_logprob/audit_fallbacks.jsonl"));
    assert_eq!(
        events
            .iter()
            .filter(
                |e| e["event_type"] == "unscored" && e["details"]["reason"] == "impossible_logprob"
            )
            .count(),
        6
    );
}
