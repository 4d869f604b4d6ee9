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
    assert!(status.contains("mcq 30/30 done"), "{status}");
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
