//! The official When2Call lm-eval prompts, byte for byte: `w2c debug
//! render-official` against NVIDIA's own `utils.py` (run by
//! `tests/support/official_prompts.py` from the shared reference directory),
//! on the real 300-row test file and on hostile-but-valid synthetic rows,
//! for every variant, every row, the prompt and all four choices; and the
//! `/completions` prompts `mcq_logprob` actually sends with each official
//! template, with where each continuation starts, on the whole file.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use w2c::labels::Label;
use w2c::official_task::python::{py_isprintable, py_isspace, MAX_DEPTH, PYTHON_UNICODE_VERSION};
use w2c::official_task::OfficialVariant;

/// What NVIDIA's utils.py renders: records keyed by (uuid, variant) in file
/// order, and the Unicode tables of the Python that ran it.
struct Official {
    records: Vec<Value>,
    tables: Value,
}

fn official(dataset: &Path) -> Official {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/official_prompts.py"))
        .arg(official_task_dir())
        .arg(dataset)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to run NVIDIA's utils.py (install python3): {e}")
        });
    assert!(
        out.status.success(),
        "tests/support/official_prompts.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("helper output {l}: {e}")))
        .collect();
    let tables = records
        .pop()
        .expect("the helper's last line holds the Unicode tables");
    Official { records, tables }
}

/// `w2c debug render-official` on `dataset`: its exit code and records.
fn rendered(dataset: &Path) -> (i32, String, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let out = w2c(dir.path())
        .args(["debug", "render-official", "--dataset"])
        .arg(dataset)
        .output()
        .unwrap();
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        records,
    )
}

/// Panics naming the first byte where `ours` and `theirs` differ.
fn assert_same_bytes(what: &str, ours: &str, theirs: &str) {
    if ours == theirs {
        return;
    }
    let (a, b) = (ours.as_bytes(), theirs.as_bytes());
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let around = |s: &[u8]| {
        let from = at.saturating_sub(60);
        String::from_utf8_lossy(&s[from..(at + 60).min(s.len())]).into_owned()
    };
    panic!(
        "{what} differs from utils.py at byte {at} (lengths {} vs {}):\n  w2c:      {:?}\n  utils.py: {:?}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    );
}

/// How a comparison went: renderings checked byte for byte; the sorted
/// (uuid, variant) pairs on which utils.py itself raises (and w2c says so);
/// and those utils.py renders but w2c refuses as not reproducible.
struct Compared {
    rendered: usize,
    python_errors: Vec<(String, String)>,
    refused: Vec<(String, String)>,
}

/// Compares every (row, variant) of `dataset` between w2c and utils.py.
fn compare(dataset: &Path) -> Compared {
    let theirs = official(dataset);
    let (code, stderr, ours) = rendered(dataset);

    // The task YAMLs name exactly w2c's six variants.
    let py_variants: std::collections::BTreeSet<&str> = theirs
        .records
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    let w2c_variants: std::collections::BTreeSet<&str> =
        OfficialVariant::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(py_variants, w2c_variants, "task names in the YAMLs");

    let key = |r: &Value| {
        (
            r["uuid"].as_str().unwrap().to_string(),
            r["variant"].as_str().unwrap().to_string(),
        )
    };
    let ours: BTreeMap<_, _> = ours.iter().map(|r| (key(r), r)).collect();
    assert_eq!(
        ours.len(),
        theirs.records.len(),
        "one w2c line per row and variant"
    );

    let label_order: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
    let mut out = Compared {
        rendered: 0,
        python_errors: Vec::new(),
        refused: Vec::new(),
    };
    for t in &theirs.records {
        let k = key(t);
        let what = format!("row {} (uuid {}) {}", t["row"], k.0, k.1);
        let o = ours
            .get(&k)
            .unwrap_or_else(|| panic!("{what}: no w2c line"));
        // utils.py orders choices by the row's `answers` keys, w2c by Label::ALL.
        let keys: Vec<&str> = t["answer_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, label_order, "{what}: answers keys not in Label order");
        if let Some(err) = t.get("error") {
            assert!(
                o.get("error").is_some() && o["python_raises"] == json!(true),
                "{what}: utils.py raises ({err}) but w2c gave {o}"
            );
            out.python_errors.push(k);
            continue;
        }
        if let Some(err) = o.get("error") {
            // Only a refusal that names what it cannot reproduce; the caller
            // lists exactly which rows may be refused.
            assert_eq!(
                o["python_raises"],
                json!(false),
                "{what}: w2c says utils.py raises, it does not: {err}"
            );
            out.refused.push(k);
            continue;
        }
        assert!(
            t.get("unencodable").is_none(),
            "{what}: utils.py's text holds a lone surrogate but w2c rendered it"
        );
        assert_eq!(o["target_index"], t["target_index"], "{what}: target index");
        assert_same_bytes(
            &format!("{what}: prompt"),
            o["context"].as_str().unwrap(),
            t["prompt"].as_str().unwrap(),
        );
        let (oc, tc) = (
            o["choices"].as_array().unwrap(),
            t["choices"].as_array().unwrap(),
        );
        assert_eq!(oc.len(), tc.len(), "{what}: number of choices");
        for (i, (a, b)) in oc.iter().zip(tc).enumerate() {
            assert_same_bytes(
                &format!("{what}: choice {i} ({})", label_order[i]),
                a.as_str().unwrap(),
                b.as_str().unwrap(),
            );
        }
        out.rendered += 1;
    }
    out.python_errors.sort();
    out.refused.sort();
    let want_code = if out.python_errors.is_empty() && out.refused.is_empty() {
        0
    } else {
        1
    };
    assert_eq!(code, want_code, "exit code; stderr: {stderr}");
    check_unicode_tables(&theirs.tables);
    out
}

/// w2c's `str.isprintable()` / `str.isspace()` agree with the Python that ran
/// utils.py for every code point (surrogates aside: no Rust char is one).
fn check_unicode_tables(tables: &Value) {
    assert_eq!(
        tables["unidata_version"].as_str(),
        Some(PYTHON_UNICODE_VERSION),
        "python3's Unicode database differs from the one w2c reproduces (Python 3.11's); \
         repr() of newly assigned characters would differ"
    );
    let in_ranges = |name: &str| {
        let mut set = vec![false; 0x110000];
        for r in tables[name].as_array().unwrap() {
            let (a, b) = (
                r[0].as_u64().unwrap() as usize,
                r[1].as_u64().unwrap() as usize,
            );
            set[a..=b].iter_mut().for_each(|x| *x = true);
        }
        set
    };
    let (non_printable, space) = (in_ranges("non_printable"), in_ranges("space"));
    for cp in 0..0x110000u32 {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        assert_eq!(
            py_isprintable(c),
            !non_printable[cp as usize],
            "isprintable U+{cp:04X}"
        );
        assert_eq!(py_isspace(c), space[cp as usize], "isspace U+{cp:04X}");
    }
}

#[test]
fn official_prompts_match_utils_py_on_the_shared_file() {
    let c = compare(&shared_dataset());
    assert_eq!(c.rendered, 300 * 6);
    assert!(c.python_errors.is_empty() && c.refused.is_empty());
}

/// `mcq_logprob` with an official template: the four `/completions` prompts
/// w2c sends for each row, and where each continuation starts, as logged in
/// the namespace's `llm_calls.jsonl` and `debug_per_choice.jsonl`, keyed by
/// (uuid, label).
fn sent_requests(
    variant: OfficialVariant,
    dataset: &Path,
) -> BTreeMap<(String, String), (String, u64)> {
    let ws = Workspace::new();
    let cfg = ws.config(
        "eval.toml",
        &Opts {
            dataset: dataset.to_path_buf(),
            n_per_label: None,
            methods: "\"mcq_logprob\"".into(),
            mcq_extra: format!("\n[methods.mcq_logprob]\ntemplate = \"{variant}\""),
            ..Opts::default()
        },
    );
    run_ok(&ws, &cfg);
    let s = only_session(&ws.runs(), "k");
    let art = s.join("artifacts_local/mcq_logprob");
    let settings = read_json(&s.join("checkpoints/mcq_logprob/method_settings.json"));
    assert_eq!(settings["settings"]["template"], variant.as_str());
    assert_eq!(
        settings["settings"]["template_sha256"],
        variant.template_sha256()
    );
    let mut prompts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in read_jsonl(&art.join("llm_calls.jsonl")) {
        assert_eq!(c["role"], "score");
        assert_eq!(c["request"]["echo"], true);
        prompts
            .entry(c["uuid"].as_str().unwrap().to_string())
            .or_default()
            .push(c["request"]["prompt"].as_str().unwrap().to_string());
    }
    let mut out = BTreeMap::new();
    for d in read_jsonl(&art.join("debug_per_choice.jsonl")) {
        let uuid = d["uuid"].as_str().unwrap().to_string();
        let label = d["choice"]["label"].as_str().unwrap().to_string();
        let i = Label::ALL.iter().position(|l| l.as_str() == label).unwrap();
        let prompt = prompts[&uuid][i].clone();
        let ctx = d["choice"]["context_chars"].as_u64().unwrap();
        out.insert((uuid, label), (prompt, ctx));
    }
    out
}

#[test]
fn mcq_logprob_requests_match_utils_py_on_the_shared_file() {
    // What lm-eval sends for a choice: its context (utils.py's prompt) and
    // continuation ("" + the choice), the context's trailing whitespace
    // moved into the continuation; the request is their concatenation.
    let dataset = shared_dataset();
    // One w2c run per variant, side by side (each is a process).
    let (theirs, runs) = std::thread::scope(|scope| {
        let runs: Vec<_> = OfficialVariant::ALL
            .iter()
            .map(|&v| {
                let dataset = &dataset;
                scope.spawn(move || sent_requests(v, dataset))
            })
            .collect();
        let theirs = official(&dataset);
        let runs: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
        (theirs, runs)
    });
    for (variant, ours) in OfficialVariant::ALL.into_iter().zip(runs) {
        assert_eq!(ours.len(), 300 * 4, "{variant}");
        let mut compared = 0;
        for t in theirs
            .records
            .iter()
            .filter(|r| r["variant"] == variant.as_str())
        {
            let uuid = t["uuid"].as_str().unwrap();
            let prompt = t["prompt"].as_str().unwrap();
            for (i, label) in Label::ALL.iter().enumerate() {
                let choice = t["choices"][i].as_str().unwrap();
                let (sent, ctx) = &ours[&(uuid.to_string(), label.as_str().to_string())];
                let what = format!("row {} (uuid {uuid}) {variant} {label}", t["row"]);
                assert_same_bytes(
                    &format!("{what}: request prompt"),
                    sent,
                    &format!("{prompt}{choice}"),
                );
                assert_eq!(
                    json!(ctx),
                    t["context_chars"],
                    "{what}: where the continuation starts"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 300 * 4, "{variant}");
    }
}

fn row(uuid: &str, gold: Label, question: &str, tools: &[&str], tool_call: &str) -> Value {
    json!({
        "uuid": uuid,
        "source": "synthetic",
        "question": question,
        "correct_answer": gold.as_str(),
        "answers": {
            "direct": "Sure — it's 21°C in 東京 😀\nwith a \"quote\" and a \\ backslash.",
            "tool_call": tool_call,
            "request_for_info": "Which city?\t(and units)\r\n",
            "cannot_answer": "I can't do that. ",
        },
        "target_tool": null,
        "tools": tools,
    })
}

/// Rows that stress every emulated corner, with the `(uuid, variant)` pairs
/// on which utils.py itself raises, and those w2c must refuse (utils.py
/// renders them, but not in a way w2c can reproduce).
type Pairs = Vec<(&'static str, &'static str)>;
fn hostile_rows() -> (String, Pairs, Pairs) {
    use Label::*;
    let weather = r#"{"name": "weather.get", "description": "天気 😀 naïve — “quotes” it's", "parameters": {"type": "object", "properties": {"city": {"type": "string", "default": "東京"}, "days": {"type": "integer", "default": 3, "maximum": 123456789012345678901234567890}, "ratio": {"type": "number", "default": 1e-05, "examples": [1e16, 0.1, -0.0, 2.5e-300, 1.7976931348623157e308, 1E5, 100.0]}, "flag": {"type": "boolean", "default": true, "nullable": null}}, "required": ["city"]}}"#;
    let weather_call = r#"{"name": "weather.get", "arguments": {"city": "東京 😀", "days": 3, "ratio": 1e-05, "big": 1e16, "z": -0.0, "tiny": 0.1, "flag": false, "none": null, "huge": 123456789012345678901234567890, "nested": {"list": ["it's", "say \"hi\"", "both ' \"", "back\\slash", "new\nline", "tab\there", 1.5, [], {}, true, null], "emoji": "\ud83d\ude00", "ctl": "\u0001\u007f\u0085\u00a0\u200b\u2028\ue000"}, "quote\"key": "v"}}"#;
    let digits_4300 = format!(
        r#"{{"name": "n", "arguments": {{"n": -{}}}}}"#,
        "7".repeat(4300)
    );
    let digits_4301 = format!(
        r#"{{"name": "n", "arguments": {{"n": {}}}}}"#,
        "7".repeat(4301)
    );
    let too_deep = format!(
        r#"{{"name": "f", "arguments": {{"n": {}{}}}}}"#,
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    let nonprintable = "{\"name\": \"np\", \"description\": \"\u{7f}\u{85}\u{378}\u{e0001}\u{ad}\u{1f6dc}\u{2028}\u{a0}\u{3000}\u{fe0f}\u{200d}\"}";
    let rows = vec![
        row(
            "unicode",
            ToolCall,
            "東京の天気は？ 😀 naïve\r\n\ttab \u{1}\u{1b}",
            &[weather],
            weather_call,
        ),
        row(
            "no-tools",
            CannotAnswer,
            "  Anything? \n",
            &[],
            r#"{"name": "x", "arguments": {}}"#,
        ),
        row(
            "no-optional-fields",
            RequestForInfo,
            "q",
            &[r#"{"name": "t", "description": "d"}"#],
            r#"{"name": "t", "arguments": {"a": "b"}}"#,
        ),
        row(
            "no-description",
            Direct,
            "q",
            &[r#"{"name": "bare"}"#],
            r#"{"name": "bare", "arguments": {}}"#,
        ),
        row(
            "json-whitespace",
            ToolCall,
            "q",
            &[
                " \t{\"name\": \"s\", \"description\": \"d\"}\r\n",
                "\n{\"name\": \"s2\", \"description\": \"e\"} ",
            ],
            r#"  {"name": "s", "arguments": {"k": [1, 2]}}  "#,
        ),
        row(
            "python-whitespace",
            ToolCall,
            "q",
            &[
                " \u{a0}{\"name\": \"s\", \"description\": \"d\"}\u{1c}",
                "{\"name\": \"s2\", \"description\": \"e\"}\u{3000}\u{1f}\u{85}",
            ],
            r#"{"name": "s", "arguments": {}}"#,
        ),
        row(
            "not-json-tools",
            CannotAnswer,
            "q",
            &["plain 'single' text", "both ' and \" and \\"],
            r#"{"name": "s", "arguments": {}}"#,
        ),
        row(
            "nan",
            ToolCall,
            "q",
            &[
                r#"{"name": "f", "description": "d", "parameters": {"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400, "e": -1e400, "f": 1e-400}}"#,
            ],
            r#"{"name": "f", "arguments": {"n": NaN, "i": Infinity, "m": -Infinity, "o": 1e400, "neg0": -0, "l": [NaN, -Infinity]}}"#,
        ),
        row(
            "duplicate-keys",
            ToolCall,
            "q",
            &[r#"{"name": "a", "description": "first", "name": "b"}"#],
            r#"{"name": "d", "arguments": {"a": 1, "b": 2, "a": "three"}, "name": "dup"}"#,
        ),
        row(
            "parameters-key",
            ToolCall,
            "q",
            &[],
            r#"{"name": "p", "parameters": {"q": "v", "r": [true]}}"#,
        ),
        row(
            "odd-types",
            ToolCall,
            "q",
            &[
                r#"{"name": 42, "description": null}"#,
                r#"{"name": ["a", 1.0], "description": {"k": "it's"}}"#,
            ],
            r#"{"name": ["a", 1], "arguments": {"k": {"x": "y"}}}"#,
        ),
        row(
            "not-json-call",
            ToolCall,
            "q",
            &[],
            "I would call get_weather(city=Paris)",
        ),
        row(
            "empty-arguments-list",
            ToolCall,
            "q",
            &[],
            r#"{"name": "e", "arguments": []}"#,
        ),
        row("digits-4300", ToolCall, "q", &[], &digits_4300),
        row("digits-4301", ToolCall, "q", &[], &digits_4301),
        row(
            "nonprintable",
            Direct,
            "q",
            &[nonprintable],
            r#"{"name": "np", "arguments": {"s": "\u0378\u00ad\ud83d\udedc"}}"#,
        ),
        row(
            "lone-surrogate",
            ToolCall,
            "q",
            &[],
            r#"{"name": "f", "arguments": {"s": "\ud800"}}"#,
        ),
        row("too-deep", ToolCall, "q", &[], &too_deep),
    ];
    let text = rows.iter().map(|r| format!("{r}\n")).collect();
    let python_errors = vec![
        ("no-description", "when2call-functionary"),
        ("python-whitespace", "when2call-functionary"),
        ("python-whitespace", "when2call-llama3_2"),
        ("not-json-tools", "when2call-functionary"),
        ("not-json-tools", "when2call-llama3_2"),
        ("parameters-key", "when2call-llama3_2"),
        ("not-json-call", "when2call-functionary"),
        ("not-json-call", "when2call-llama3_2"),
        ("empty-arguments-list", "when2call-functionary"),
        ("digits-4301", "when2call-functionary"),
        ("digits-4301", "when2call-llama3_2"),
    ];
    let refused = vec![
        ("lone-surrogate", "when2call-functionary"),
        ("lone-surrogate", "when2call-llama3_2"),
        ("too-deep", "when2call-functionary"),
        ("too-deep", "when2call-llama3_2"),
    ];
    (text, python_errors, refused)
}

fn owned(pairs: &Pairs) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(u, v)| (u.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn official_prompts_match_utils_py_on_hostile_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.jsonl");
    let (text, python_errors, refused) = hostile_rows();
    let rows = text.lines().count();
    std::fs::write(&file, text).unwrap();
    let c = compare(&file);
    assert_eq!(
        c.python_errors,
        owned(&python_errors),
        "rows on which utils.py raises"
    );
    assert_eq!(c.refused, owned(&refused), "rows w2c refuses");
    assert_eq!(c.rendered, rows * 6 - python_errors.len() - refused.len());
}

#[test]
fn a_refused_row_is_reported_with_file_row_and_field() {
    // A lone surrogate in the tool call's JSON: Python's json.loads keeps it
    // and utils.py puts it into the llama3_2 choice; a Rust string cannot
    // hold it, so w2c refuses instead of guessing, and says where.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lone.jsonl");
    let r = row(
        "lone-surrogate",
        Label::ToolCall,
        "q",
        &[],
        r#"{"name": "f", "arguments": {"s": "\ud800"}}"#,
    );
    std::fs::write(&file, format!("{r}\n")).unwrap();
    let (code, stderr, ours) = rendered(&file);
    assert_eq!(code, 1, "{stderr}");
    let err = |v: &str| {
        let r = ours.iter().find(|r| r["variant"] == v).unwrap();
        r.get("error").map(|e| e.as_str().unwrap().to_string())
    };
    let e = err("when2call-llama3_2").unwrap();
    assert!(
        e.starts_with("when2call-llama3_2: field `answers.tool_call`: a lone surrogate escape")
            && e.contains("w2c cannot reproduce"),
        "{e}"
    );
    assert!(
        stderr.contains("lone.jsonl")
            && stderr.contains("uuid lone-surrogate")
            && stderr.contains("2 of 6"),
        "{stderr}"
    );
    // The variants that never parse the tool call render the row.
    for v in [
        "when2call",
        "when2call-hermes",
        "when2call-qwen2_5",
        "when2call-xlam",
    ] {
        assert_eq!(err(v), None, "{v}");
    }
}
