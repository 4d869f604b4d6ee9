//! Everyday commands: ls, show, status, config check, completions, and an
//! example in every command's --help.

mod common;

use common::*;

#[test]
fn ls_show_status_and_completions() {
    let ws = Workspace::new();
    let cfg = ws.config("eval.toml", &Opts::default());
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let fp = read_json(&s.join("manifest.json"))["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let text = |args: &[&str]| {
        let out = w2c(ws.path())
            .args(args)
            .arg("--runs-dir")
            .arg(ws.runs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ls = text(&["ls"]);
    assert!(
        ls.starts_with("k\n") && ls.contains(&fp[..16]) && ls.contains("mcq"),
        "{ls}"
    );
    let show = text(&["show", &fp[..8]]);
    assert!(
        show.contains(&fp) && show.contains("resolved config") && show.contains("checkpoints"),
        "{show}"
    );
    let status = text(&["status"]);
    let mcq = status
        .lines()
        .find(|l| l.trim_start().starts_with("mcq "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(mcq.contains(" 30/30 ") && mcq.ends_with("done"), "{status}");
    let out = w2c(ws.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("_w2c"));
    assert_eq!(fingerprint_of(ws.path(), &cfg), fp);
}

#[test]
fn every_command_help_has_an_example() {
    let ws = Workspace::new();
    for cmd in [
        "run",
        "resume",
        "verify",
        "ls",
        "show",
        "status",
        "completions",
        "mock-server",
    ] {
        let out = w2c(ws.path()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "`w2c {cmd} --help` has no example"
        );
    }
    let out = w2c(ws.path())
        .args(["config", "check", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Example"));
}

#[test]
fn report_compares_sessions_in_every_format_with_charts() {
    let ws = Workspace::new();
    let a = ws.config("a.toml", &Opts::default());
    let b = ws.config(
        "b.toml",
        &Opts {
            model: "other-model".into(),
            ..Opts::default()
        },
    );
    run_ok(&ws, &a);
    run_ok(&ws, &b);
    let report = |format: &str| {
        let out = w2c(ws.path())
            .args(["report", "--format", format, "--runs-dir"])
            .arg(ws.runs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let md = report("md");
    assert!(
        md.contains("mock-model") && md.contains("other-model"),
        "{md}"
    );
    assert_eq!(md.lines().nth(1).unwrap().matches("---").count(), 24);
    assert!(md.lines().next().unwrap().ends_with("| wall s |"));
    assert!(md
        .lines()
        .next()
        .unwrap()
        .contains("| invalid | unscored |"));
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    let header = cells(md.lines().next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(rows.len(), 2, "{md}");
    // The legend under the table says what `table` MC means.
    assert!(
        md.contains("\n- table MC: the multiple-choice table's definitions"),
        "{md}"
    );
    for row in rows {
        assert_eq!(row.matches(" | ").count(), 23, "{row}");
        // `mcq` never leaves examples unscored and has no acc_norm (the
        // paper's set is mcq_logprob's): the columns say so.
        let row = cells(row);
        assert_eq!(row[col("unscored")], "-", "{row:?}");
        assert_eq!(row[col("acc_norm")], "-", "{row:?}");
        assert!(row[col("macro-F1(MC)")].starts_with("0."), "{row:?}");
        assert!(row[col("ToolHall(MC)")].ends_with('%'), "{row:?}");
        // mcq's headline is the multiple-choice table's definitions.
        assert_eq!(row[col("table")], "MC", "{row:?}");
        assert_eq!(row[col("F1")], row[col("macro-F1(MC)")], "{row:?}");
        assert_eq!(row[col("left out")], "-", "{row:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let html = report("html");
    // One method, two models: F1 per behaviour across them and a confusion
    // matrix each (tests/html_report.rs opens the page in a browser).
    assert!(
        html.starts_with("<!doctype html>") && html.matches("<svg").count() == 3,
        "{html}"
    );
    let text = report("text");
    assert!(text.contains("accuracy") && !text.contains("rows = gold"));
    // The default fits a terminal; --wide has every column and the matrices.
    assert!(text.lines().all(|l| l.chars().count() <= 120), "{text}");
    let out = w2c(ws.path())
        .args(["report", "--wide", "--runs-dir"])
        .arg(ws.runs())
        .output()
        .unwrap();
    let wide = String::from_utf8_lossy(&out.stdout);
    assert!(
        wide.contains("macro-F1(all4)") && wide.contains("rows = gold"),
        "{wide}"
    );
    for dir in std::fs::read_dir(ws.runs().join("k/sessions"))
        .unwrap()
        .flatten()
    {
        for f in ["confusion_matrix.svg", "per_class_f1.svg"] {
            assert!(dir.path().join("artifacts_local/mcq").join(f).exists());
        }
    }
}
