//! Fingerprints react to exactly the result-affecting inputs, and bad inputs
//! give clear errors without a panic or a misleading session directory.

mod common;

use common::*;

#[test]
fn fingerprint_tracks_result_affecting_fields_only() {
    let ws = Workspace::new();
    let base = Opts::default();
    let fp = |name: &str, o: &Opts| fingerprint_of(ws.path(), &ws.config(name, o));
    let f0 = fp("a.toml", &base);
    assert_eq!(f0.len(), 64);
    assert_eq!(f0, fp("b.toml", &base), "same config, same fingerprint");

    // Operational settings do not change it.
    let operational = [
        Opts {
            concurrency: 17,
            ..base.clone()
        },
        Opts {
            latency_ms: 250,
            ..base.clone()
        },
        Opts {
            max_attempts: 9,
            ..base.clone()
        },
        Opts {
            fail_rate: 0.3,
            ..base.clone()
        },
        // Method settings live in their own namespace, not the session.
        Opts {
            mcq_extra: "order = \"shuffled\"".into(),
            ..base.clone()
        },
        Opts {
            mcq_extra: "temperature = 0.7".into(),
            ..base.clone()
        },
    ];
    for (i, o) in operational.iter().enumerate() {
        assert_eq!(
            f0,
            fp(&format!("op{i}.toml"), o),
            "operational change {i} moved the fingerprint"
        );
    }

    // Every result-affecting field changes it.
    let edited = ws.path().join("edited.jsonl");
    let mut text = std::fs::read_to_string(shared_dataset()).unwrap();
    text = text.replacen("I NEED ALL API TOKENS NOW", "I need all API tokens now", 1);
    std::fs::write(&edited, text).unwrap();
    let changes = [
        Opts {
            n_per_label: Some(11),
            ..base.clone()
        },
        Opts {
            n_per_label: None,
            ..base.clone()
        },
        Opts {
            subsample_seed: 12,
            ..base.clone()
        },
        Opts {
            seed: 43,
            ..base.clone()
        },
        Opts {
            model: "other-model".into(),
            ..base.clone()
        },
        Opts {
            dataset: edited,
            ..base.clone()
        },
    ];
    let mut seen = std::collections::HashSet::from([f0.clone()]);
    for (i, o) in changes.iter().enumerate() {
        let f = fp(&format!("ch{i}.toml"), o);
        assert!(
            seen.insert(f),
            "result-affecting change {i} kept the fingerprint"
        );
    }
}

#[test]
fn changed_method_settings_get_a_new_namespace_in_the_same_session() {
    let ws = Workspace::new();
    let a = ws.config("a.toml", &Opts::default());
    let b = ws.config(
        "b.toml",
        &Opts {
            mcq_extra: "option_labels = [\"1\", \"2\", \"3\", \"4\"]".into(),
            ..Opts::default()
        },
    );
    for cfg in [&a, &b] {
        w2c(ws.path())
            .args(["run", "--run-key", "k", "--config"])
            .arg(cfg)
            .assert()
            .success();
    }
    let s = only_session(&ws.runs(), "k");
    let mut names: Vec<String> = std::fs::read_dir(s.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "mcq");
    assert!(names[1].starts_with("mcq~"), "{names:?}");
}

#[test]
fn resume_refuses_when_the_dataset_changed() {
    let ws = Workspace::new();
    let data = ws.path().join("data.jsonl");
    std::fs::copy(shared_dataset(), &data).unwrap();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            dataset: data.clone(),
            ..Opts::default()
        },
    );
    w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let s = only_session(&ws.runs(), "k");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&data)
        .unwrap()
        .replacen("NOW!!!", "NOW!!", 1);
    std::fs::write(&data, text).unwrap();
    let out = w2c(ws.path())
        .args(["resume", &fp, "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dataset.sha256"), "{stderr}");
}

fn assert_clean_failure(ws: &Workspace, cfg: &std::path::Path, needles: &[&str]) {
    let out = w2c(ws.path())
        .args(["run", "--run-key", "k", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in: {stderr}");
    }
    assert!(
        !ws.runs().join("k").exists(),
        "a failed start left a session behind"
    );
}

#[test]
fn bad_inputs_fail_clearly() {
    let ws = Workspace::new();
    let good = std::fs::read_to_string(ws.config("good.toml", &Opts::default())).unwrap();

    let cfg = ws.write("syntax.toml", "[run\nseed = 1");
    assert_clean_failure(&ws, &cfg, &["syntax.toml", "line 1"]);

    let cfg = ws.write(
        "unknown.toml",
        &good.replace("[methods]", "[methods]\ncolour = \"red\""),
    );
    assert_clean_failure(&ws, &cfg, &["unknown.toml", "colour"]);

    let cfg = ws.write("type.toml", &good.replace("seed = 42", "seed = \"many\""));
    assert_clean_failure(&ws, &cfg, &["type.toml", "seed"]);

    let missing = Opts {
        dataset: ws.path().join("nope.jsonl"),
        ..Opts::default()
    };
    let cfg = ws.config("missing.toml", &missing);
    assert_clean_failure(&ws, &cfg, &["nope.jsonl"]);

    let rows: Vec<String> = std::fs::read_to_string(shared_dataset())
        .unwrap()
        .lines()
        .take(5)
        .map(String::from)
        .collect();
    let bad_json = ws.write(
        "bad.jsonl",
        &format!("{}\n{}\n{{\"uuid\": \n", rows[0], rows[1]),
    );
    let cfg = ws.config(
        "badjson.toml",
        &Opts {
            dataset: bad_json,
            ..Opts::default()
        },
    );
    assert_clean_failure(&ws, &cfg, &["bad.jsonl:3", "invalid JSON"]);

    let dup = ws.write(
        "dup.jsonl",
        &format!("{}\n{}\n{}\n", rows[0], rows[1], rows[0]),
    );
    let cfg = ws.config(
        "dup.toml",
        &Opts {
            dataset: dup,
            ..Opts::default()
        },
    );
    assert_clean_failure(&ws, &cfg, &["dup.jsonl:3", "duplicate uuid"]);

    let bad_label = ws.write(
        "label.jsonl",
        &rows[0].replace("\"cannot_answer\", \"answers\"", "\"refuse\", \"answers\""),
    );
    let cfg = ws.config(
        "label.toml",
        &Opts {
            dataset: bad_label,
            ..Opts::default()
        },
    );
    assert_clean_failure(&ws, &cfg, &["label.jsonl:1", "correct_answer", "refuse"]);

    let empty = ws.write("empty.jsonl", "\n\n");
    let cfg = ws.config(
        "empty.toml",
        &Opts {
            dataset: empty,
            ..Opts::default()
        },
    );
    assert_clean_failure(&ws, &cfg, &["empty.jsonl", "no examples"]);

    let cfg = ws.write(
        "zero.toml",
        &good.replace("n_per_label = 10", "n_per_label = 0"),
    );
    assert_clean_failure(&ws, &cfg, &["zero.toml", "n_per_label"]);

    let out = w2c(ws.path())
        .args(["run", "--config", "absent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml"));

    let out = w2c(ws.path()).args(["resume", "zz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`zz` is not a session"));

    let out = w2c(ws.path()).args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Malformed When2Call rows that used to load (issue 29 §6): each is
/// refused naming the file, the line and the field; a row without
/// `orig_tools` (two thirds of the test file) still loads.
#[test]
fn malformed_dataset_rows_are_refused_naming_file_line_and_field() {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(shared_dataset()).expect("dataset");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    // A row with every field, tools and original tools included.
    let full = rows
        .iter()
        .find(|r| {
            r["orig_tools"].is_array() && r["tools"].as_array().is_some_and(|t| !t.is_empty())
        })
        .expect("a full row")
        .clone();
    let good = rows
        .iter()
        .find(|r| r["uuid"] != full["uuid"])
        .expect("another row")
        .to_string();
    let tool_object: serde_json::Value =
        serde_json::from_str(full["tools"][0].as_str().expect("tool")).expect("tool json");
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut row = full.clone();
        f(row.as_object_mut().expect("object"));
        row.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "numbers",
            edit(&|r| {
                r.insert("tools".into(), serde_json::json!([1, 2]));
            }),
            "`tools[0]`",
        ),
        (
            "toolobj",
            edit(&|r| {
                r.insert("tools".into(), serde_json::json!([tool_object.clone()]));
            }),
            "`tools[0]`",
        ),
        (
            "toolsstr",
            edit(&|r| {
                r.insert("tools".into(), serde_json::json!("x"));
            }),
            "`tools`",
        ),
        (
            "notools",
            edit(&|r| {
                r.remove("tools");
            }),
            "`tools`",
        ),
        (
            "nulltools",
            edit(&|r| {
                r.insert("tools".into(), serde_json::json!(null));
            }),
            "`tools`",
        ),
        (
            "nosource",
            edit(&|r| {
                r.remove("source");
            }),
            "`source`",
        ),
        (
            "numsource",
            edit(&|r| {
                r.insert("source".into(), serde_json::json!(5));
            }),
            "`source`",
        ),
        (
            "notarget",
            edit(&|r| {
                r.remove("target_tool");
            }),
            "`target_tool`",
        ),
        (
            "targetobj",
            edit(&|r| {
                r.insert("target_tool".into(), tool_object.clone());
            }),
            "`target_tool`",
        ),
        (
            "origobj",
            edit(&|r| {
                r.insert(
                    "orig_tools".into(),
                    serde_json::json!([tool_object.clone()]),
                );
            }),
            "`orig_tools[0]`",
        ),
        (
            "origstr",
            edit(&|r| {
                r.insert("orig_tools".into(), serde_json::json!("x"));
            }),
            "`orig_tools`",
        ),
        (
            "emptyq",
            edit(&|r| {
                r.insert("question".into(), serde_json::json!(""));
            }),
            "`question`",
        ),
        (
            "blankq",
            edit(&|r| {
                r.insert("question".into(), serde_json::json!("  \n"));
            }),
            "`question`",
        ),
        (
            "dupkey",
            edit(&|_| {}).replacen('{', "{\"question\": \"first\", ", 1),
            "`question`",
        ),
        (
            "dupanswer",
            edit(&|_| {}).replacen("\"answers\":{", "\"answers\":{\"direct\": \"x\", ", 1),
            "`answers.direct`",
        ),
    ];
    for (name, bad, field) in &cases {
        assert_ne!(bad, &full.to_string(), "{name}: the edit changed nothing");
        let file = format!("{name}.jsonl");
        let data = ws.write(&file, &format!("{good}\n{bad}\n"));
        let cfg = ws.config(
            &format!("{name}.toml"),
            &Opts {
                dataset: data,
                ..Opts::default()
            },
        );
        assert_clean_failure(&ws, &cfg, &[&format!("{file}:2"), field]);
    }
    // A tool text that is not a tool definition is accepted — the official
    // task renders it as written, and w2c renders it the same way — and
    // noticed, naming file, line and field.
    for (name, key, value, field) in [
        (
            "notjson",
            "tools",
            serde_json::json!(["not json"]),
            "`tools[0]`",
        ),
        (
            "toollist",
            "tools",
            serde_json::json!(["[1, 2]"]),
            "`tools[0]`",
        ),
        (
            "noname",
            "tools",
            serde_json::json!(["{\"description\": \"x\"}"]),
            "`tools[0]`",
        ),
        (
            "targettext",
            "target_tool",
            serde_json::json!("search"),
            "`target_tool`",
        ),
    ] {
        let bad = edit(&|r| {
            r.insert(key.into(), value.clone());
        });
        let file = format!("{name}.jsonl");
        let data = ws.write(&file, &format!("{good}\n{bad}\n"));
        let cfg = ws.config(
            &format!("{name}.toml"),
            &Opts {
                dataset: data,
                n_per_label: Some(1),
                ..Opts::default()
            },
        );
        let out = w2c(ws.path())
            .args(["run", "--run-key", name, "--config"])
            .arg(&cfg)
            .output()
            .expect("run");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{all}");
        assert!(
            all.contains(&format!(
                "notice: {}:2: field {field}",
                data_path(&ws, &file)
            )),
            "{all}"
        );
    }
    // Legitimately absent in the real data: `orig_tools`.
    let no_orig = edit(&|r| {
        r.remove("orig_tools");
    });
    let data = ws.write("no_orig.jsonl", &format!("{good}\n{no_orig}\n"));
    let cfg = ws.config(
        "no_orig.toml",
        &Opts {
            dataset: data,
            n_per_label: Some(1),
            ..Opts::default()
        },
    );
    let out = w2c(ws.path())
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .expect("config check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path `ws.write(name, …)` wrote to, as w2c prints it.
fn data_path(ws: &Workspace, name: &str) -> String {
    ws.path().join(name).display().to_string()
}

/// A row whose tool texts are not tool definitions is accepted and audited:
/// one `tool_not_a_definition` event per such text in the session's own
/// `audit_fallbacks.jsonl`, naming file, line, field and uuid — written
/// before the session exists, so a kill -9 cannot lose them, and never
/// repeated by a resume or a second run.
#[test]
fn tool_texts_that_are_not_definitions_are_audited_once_per_session() {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(shared_dataset()).expect("dataset");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .take(6)
        .collect();
    let mut bad = rows[1].clone();
    bad["tools"] = serde_json::json!(["not json", "{\"name\": \"t\"}", "[1, 2]"]);
    bad["target_tool"] = serde_json::json!("{\"description\": \"no name\"}");
    let uuid = bad["uuid"].as_str().expect("uuid").to_string();
    // Line 3: a target tool that is a definition, but not one of `tools`.
    let mut stray = rows[2].clone();
    stray["target_tool"] = serde_json::json!("{\"name\": \"not_offered\"}");
    let stray_uuid = stray["uuid"].as_str().expect("uuid").to_string();
    let mut lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    lines[1] = bad.to_string();
    lines[2] = stray.to_string();
    let data = ws.write("odd_tools.jsonl", &(lines.join("\n") + "\n"));
    let cfg = ws.config(
        "odd.toml",
        &Opts {
            dataset: data,
            n_per_label: None,
            latency_ms: 300,
            concurrency: 1,
            ..Opts::default()
        },
    );
    let audit_of = |s: &std::path::Path| read_jsonl(&s.join("audit_fallbacks.jsonl"));
    let expect = |events: &[serde_json::Value]| {
        let seen: Vec<(u64, &str, &str, &str)> = events
            .iter()
            .map(|e| {
                assert_eq!(
                    e["details"]["file"],
                    data_path(&ws, "odd_tools.jsonl").as_str(),
                    "{e}"
                );
                (
                    e["details"]["line"].as_u64().expect("line"),
                    e["details"]["field"].as_str().expect("field"),
                    e["event_type"].as_str().expect("type"),
                    e["uuid"].as_str().expect("uuid"),
                )
            })
            .collect();
        let odd = "tool_not_a_definition";
        assert_eq!(
            seen,
            [
                (2, "tools[0]", odd, uuid.as_str()),
                (2, "tools[2]", odd, uuid.as_str()),
                (2, "target_tool", odd, uuid.as_str()),
                (
                    3,
                    "target_tool",
                    "target_tool_not_offered",
                    stray_uuid.as_str()
                ),
            ],
            "{events:?}"
        );
    };
    // Killed (-9) once the first result is written.
    let mut child = spawn_run(&ws, &cfg);
    wait_for("a first result", std::time::Duration::from_secs(60), || {
        result_lines(&ws, "mcq") >= 1
    });
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let s = only_session(&ws.runs(), "k");
    expect(&audit_of(&s));
    // Resumed, then run again: the events are there once each.
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    w2c(ws.path())
        .args(["resume", &fp[..12], "--runs-dir"])
        .arg(ws.runs())
        .assert()
        .success();
    assert!(s.join("checkpoints/mcq/_DONE.json").exists());
    expect(&audit_of(&s));
    let out = run_ok(&ws, &cfg);
    expect(&audit_of(&s));
    let all = String::from_utf8_lossy(&out.stderr);
    assert!(all.contains("tool_not_a_definition"), "{all}");
    // The report's example explorer shows the event on that example.
    let page = ws.path().join("report.html");
    w2c(ws.path())
        .args(["report", &fp[..12], "--format", "html", "--out"])
        .arg(&page)
        .arg("--runs-dir")
        .arg(ws.runs())
        .assert()
        .success();
    let html = std::fs::read_to_string(&page).expect("report");
    assert!(html.contains("tool_not_a_definition"), "not in the report");
    // `verify` counts them, and names a repeated one.
    let verify = |ws: &Workspace| {
        let out = w2c(ws.path())
            .args(["verify", &fp[..12], "--json", "--local-only", "--runs-dir"])
            .arg(ws.runs())
            .output()
            .expect("verify");
        let checks: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("verify json");
        checks
            .into_iter()
            .find(|c| c["check"] == "session audit")
            .expect("a session audit check")
    };
    let c = verify(&ws);
    assert_eq!(c["status"], "OK", "{c}");
    assert!(
        c["detail"].as_str().is_some_and(|d| d.contains(
            "4 events, each once (target_tool_not_offered: 1, tool_not_a_definition: 3)"
        )),
        "{c}"
    );
    let path = s.join("audit_fallbacks.jsonl");
    let text = std::fs::read_to_string(&path).expect("audit");
    let first = text.lines().next().expect("a line").to_string();
    std::fs::write(&path, format!("{text}{first}\n")).expect("append");
    let c = verify(&ws);
    assert_eq!(c["status"], "MISMATCH", "{c}");
}
