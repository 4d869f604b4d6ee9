//! README's first command: the shipped demo config runs on the shipped sample
//! dataset with no key and no server.

mod common;

use common::*;
use std::path::Path;

#[test]
fn demo_config_runs_end_to_end() {
    let ws = Workspace::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(ws.path().join("configs")).unwrap();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    std::fs::copy(
        root.join("configs/demo.toml"),
        ws.path().join("configs/demo.toml"),
    )
    .unwrap();
    std::fs::copy(
        sample_dataset(),
        ws.path().join("data/sample_when2call.jsonl"),
    )
    .unwrap();
    let out = w2c(ws.path())
        .env_remove("OPENAI_API_KEY")
        .args(["run", "--config", "configs/demo.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = only_session(&ws.path().join("runs"), "demo");
    let m = read_json(&s.join("artifacts_local/mcq/metrics.json"));
    assert_eq!(m["n_examples"], 24);
    assert!(s.join("checkpoints/mcq/_DONE.json").exists());

    // The mock judge answers as a real judge answers NVIDIA's prompt: every
    // reply is read at once, none is invalid, NVIDIA's aggregate counts
    // every row it can (the sample's `direct` rows have no category there).
    let j = read_json(&s.join("artifacts_local/llm_judge/metrics.json"));
    assert_eq!(j["metrics"]["n_invalid"], 0, "{}", j["counts"]);
    assert_eq!(j["counts"]["parsed"], 24, "{}", j["counts"]);
    let official = &j["official_judge"];
    assert_eq!(
        official["left_out"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["direct_gold"],
        "{official}"
    );
    assert_eq!(
        official["n_aggregated"].as_u64().unwrap()
            + official["left_out"]["direct_gold"].as_u64().unwrap(),
        24
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("script_raises"), "{stderr}");

    // The summary's llm_judge row is the paper's LLM-as-judge columns
    // (NVIDIA's aggregate), labelled so, with the rows it leaves out; the
    // mcq row is labelled with the multiple-choice table's definitions.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let paper = &official["paper"];
    let pct = |v: &serde_json::Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    let want = [
        "llm_judge".to_string(),
        "24/24".into(),
        "judge".into(),
        pct(&paper["acc"]),
        format!("{:.3}", paper["f1"].as_f64().unwrap()),
        pct(&paper["tool_hall"]),
        official["left_out"]["direct_gold"].to_string(),
        "0".into(),
    ];
    let row = |method: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{method} ")))
            .unwrap_or_else(|| panic!("{stdout}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("llm_judge")[..8], want, "{stdout}");
    assert_eq!(row("mcq")[2], "MC", "{stdout}");
    let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!(
            "llm_judge: NVIDIA's aggregate counts {} rows and leaves out",
            official["n_aggregated"]
        )),
        "{stdout}"
    );
    // `w2c report` heads the same way.
    let report = w2c(ws.path())
        .args(["report", "--runs-dir", "runs"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    let line = report
        .lines()
        .find(|l| l.contains(" llm_judge "))
        .unwrap_or_else(|| panic!("{report}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells[3..9],
        [
            official["n_aggregated"].to_string().as_str(),
            "judge",
            &want[3],
            &want[4],
            &want[5],
            &want[6]
        ],
        "{report}"
    );

    // The sample file is valid When2Call with every label present.
    let ds = w2c::dataset::load(&sample_dataset()).unwrap();
    assert_eq!(ds.label_counts(), [6, 6, 6, 6]);
}
