//! The HTML report in a real headless browser (Debian's Chromium): it loads
//! with no script error, its filters show exactly the examples a recount
//! from predictions.jsonl gives, an example's detail opens, no two chart
//! labels overlap at 900 px, the page does not scroll sideways there, and
//! no comparison table is cut off at 900 or 1440 px; the filter of examples
//! on which a judge and the multiple-choice method disagree.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn session(ws: &Workspace, model: &str) -> PathBuf {
    let mut cfg_text = std::fs::read_to_string(ws.config(
        &format!("{model}.toml"),
        &Opts {
            model: model.into(),
            methods: "\"mcq\", \"llm_judge\", \"stability_mcq\"".into(),
            ..Opts::default()
        },
    ))
    .unwrap();
    cfg_text.push_str("\n[methods.stability]\nk = 2\ntemperatures = [0.7]\n");
    let cfg = ws.write(&format!("{model}.toml"), &cfg_text);
    run_ok(ws, &cfg);
    std::fs::read_dir(ws.runs().join("k/sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|s| {
            read_json(&s.join("manifest.json"))["fingerprint_payload"]["target"]["model"] == model
        })
        .unwrap()
}

/// The `#selftest` JSON of the page at `query`, rendered `width` wide.
fn selftest(ws: &Workspace, page: &Path, query: &str, width: u32) -> Value {
    let profile = ws.path().join(format!("chrome-{width}-{}", query.len()));
    let out = chromium(&profile, width, 1200)
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("file://{}?selftest=1&{query}", page.display()))
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"selftest\">").unwrap_or_else(|| {
        panic!(
            "no #selftest in the page: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rest = &dom[start + "<pre id=\"selftest\">".len()..];
    let json = &rest[..rest.find("</pre>").unwrap()];
    serde_json::from_str(&json.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn predictions(session: &Path, ns: &str) -> BTreeMap<String, Value> {
    read_jsonl(
        &session
            .join("artifacts_local")
            .join(ns)
            .join("predictions.jsonl"),
    )
    .into_iter()
    .map(|r| (r["uuid"].as_str().unwrap().to_string(), r))
    .collect()
}

#[test]
fn the_report_filters_examples_and_lays_out_charts_in_a_real_browser() {
    let ws = Workspace::new();
    let a = session(&ws, "acme-small");
    let b = session(&ws, "acme-large");
    let page = ws.path().join("report.html");
    let fp = |s: &Path| s.file_name().unwrap().to_string_lossy().into_owned();
    w2c(ws.path())
        .args(["report", &fp(&a), &fp(&b), "--format", "html", "--out"])
        .arg(&page)
        .arg("--runs-dir")
        .arg(ws.runs())
        .assert()
        .success();
    let html = std::fs::read_to_string(&page).unwrap();
    // One file, no network: no script or style is fetched.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    // Sections are named by model, and the sweep's metrics are there.
    assert!(html.contains("acme-small — mcq") && html.contains("Stability@k"));

    for width in [900, 1440] {
        let t = selftest(&ws, &page, "", width);
        assert_eq!(t["errors"], serde_json::json!([]), "{t}");
        assert_eq!(
            t["overlaps"],
            serde_json::json!([]),
            "labels overlap at {width}px: {t}"
        );
        assert!(
            t["scrollWidth"].as_u64() <= t["width"].as_u64(),
            "the page scrolls sideways at {width}px: {t}"
        );
        // No comparison table is wider than its box (cut off, to scroll).
        assert_eq!(
            t["clipped"],
            serde_json::json!([]),
            "comparison tables cut off at {width}px: {t}"
        );
    }
    // The comparison has its per-label rows, denominators, SE and MDE.
    for want in [
        "by gold label",
        "cannot_answer",
        "/10)",
        " SE ",
        "MDE (80% power)",
        "Holm family",
    ] {
        assert!(html.contains(want), "{want}");
    }

    // Filters: the examples shown equal a recount from predictions.jsonl.
    let (pa, pb) = (predictions(&a, "llm_judge"), predictions(&b, "llm_judge"));
    let expect = |keep: &dyn Fn(&Value, &Value) -> bool| -> Vec<String> {
        let mut v: Vec<String> = pa
            .keys()
            .filter(|u| keep(&pa[*u], &pb[*u]))
            .cloned()
            .collect();
        v.sort();
        v
    };
    let shown = |query: &str| -> Vec<String> {
        let t = selftest(&ws, &page, query, 1440);
        assert_eq!(t["errors"], serde_json::json!([]), "{t}");
        let mut v: Vec<String> = t["uuids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        shown("method=llm_judge&disagree=1"),
        expect(&|x, y| x["prediction"] != y["prediction"])
    );
    assert_eq!(
        shown("method=llm_judge&gold=cannot_answer&correct=none"),
        expect(&|x, y| x["gold"] == "cannot_answer"
            && x["prediction"] != x["gold"]
            && y["prediction"] != y["gold"])
    );
    assert_eq!(
        shown("method=llm_judge&pred=tool_call"),
        expect(&|x, y| x["prediction"] == "tool_call" || y["prediction"] == "tool_call")
    );
    // The judge against mcq: the examples on which some model's judged
    // label differs from its multiple-choice answer (both scored) — the
    // examples compare's agreement rows count as disagreeing.
    let (ma, mb) = (predictions(&a, "mcq"), predictions(&b, "mcq"));
    let differs = |j: &Value, m: Option<&Value>| {
        m.is_some_and(|m| {
            !j["prediction"].is_null()
                && !m["prediction"].is_null()
                && j["prediction"] != m["prediction"]
        })
    };
    let want = expect(&|x, y| {
        let u = x["uuid"].as_str().unwrap();
        differs(x, ma.get(u)) || differs(y, mb.get(u))
    });
    assert!(!want.is_empty());
    assert_eq!(shown("method=llm_judge&vs=mcq"), want);
    // An audit event kind as a filter: the examples with that event.
    let audit: Vec<Value> = read_jsonl(&a.join("checkpoints/mcq/audit_fallbacks.jsonl"));
    if let Some(kind) = audit
        .first()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
    {
        let (qa, qb) = (predictions(&a, "mcq"), predictions(&b, "mcq"));
        let with = |s: &Path| -> Vec<String> {
            read_jsonl(&s.join("checkpoints/mcq/audit_fallbacks.jsonl"))
                .into_iter()
                .filter(|e| e["event_type"] == kind.as_str())
                .map(|e| e["uuid"].as_str().unwrap().to_string())
                .collect()
        };
        let mut want: Vec<String> = with(&a).into_iter().chain(with(&b)).collect();
        want.sort();
        want.dedup();
        want.retain(|u| qa.contains_key(u) || qb.contains_key(u));
        assert_eq!(shown(&format!("method=mcq&audit={kind}")), want);
    }
    // An example's detail opens from the query string.
    let uuid = pa.keys().next().unwrap();
    let t = selftest(&ws, &page, &format!("method=llm_judge&example={uuid}"), 900);
    assert_eq!(t["detail"], true, "{t}");
}
