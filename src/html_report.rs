//! `w2c report --format html`: one self-contained page (no network, no
//! server) over one or more sessions, sections named by model: the
//! headline metrics, the paired comparison when the sessions share
//! examples, charts across models (F1 per behaviour in grouped bars, a grid
//! of confusion matrices with both axes titled), the stability metrics of
//! sweeps, and an example-by-example explorer: filters by method, gold and
//! predicted label, correctness, audit event and "models disagree"; a click
//! (or `?example=<uuid>`) shows the question, the tools, and each model's
//! prediction and stored answer side by side. Filters also come from the
//! query string (`?method=mcq&gold=cannot_answer&disagree=1`; `vs=mcq` keeps
//! the examples on which a model's prediction under the method differs from
//! its prediction under `mcq`, e.g. a judge against the multiple choice), and
//! `?only=<section id>` shows one section, and
//! `?selftest=1` writes what the page rendered (rows shown, errors, label
//! boxes that overlap) into `#selftest`, for checks in a headless browser.

use crate::comparison::{self, DatasetCache};
use crate::labels::Label;
use crate::report::{f1, pct, ReportEntry};
use crate::store::session::FoundSession;
use crate::store::{read_jsonl, NamespaceDir, PredictionRow};
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Longest stored text shown per field in the explorer (characters).
const FIELD_PREVIEW: usize = 600;

/// Each session's agreement rows (Cohen's κ between its methods, Fleiss'
/// κ over its sweeps) as HTML, drawn as the comparison draws them.
fn own_agreement(sessions: &[FoundSession], compare: &CompareOptions) -> Result<String> {
    let mut rows = Vec::new();
    for s in sessions {
        rows.extend(comparison::session_agreement(
            s,
            compare.seed,
            compare.resamples,
        )?);
    }
    Ok(comparison::agreement_html(&rows))
}

/// How the page's comparison is drawn (as `w2c compare` draws it).
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Resample within each gold label.
    pub stratified: bool,
    /// Compare sessions that differ (dataset, gold, method settings),
    /// saying what differs, instead of leaving the comparison out.
    pub allow_differences: bool,
}

/// Renders the page for `sessions`.
pub fn render(sessions: &[FoundSession], compare: CompareOptions) -> Result<String> {
    let labels = comparison::labels(sessions);
    let entries: Vec<Vec<ReportEntry>> = sessions.iter().map(crate::report::collect).collect();
    let mut methods: Vec<String> = Vec::new();
    for e in entries.iter().flatten() {
        if !methods.contains(&e.namespace) {
            methods.push(e.namespace.clone());
        }
    }
    let esc = comparison::html_escape;
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>w2c report</h1><p class=\"sessions\">{}</p></header>",
        labels
            .iter()
            .zip(sessions)
            .map(|(l, s)| format!(
                "<b>{}</b> <code>{}/{}</code>",
                esc(l),
                esc(&s.manifest.run_key),
                esc(crate::fingerprint::short(&s.manifest.fingerprint))
            ))
            .collect::<Vec<_>>()
            .join(" · ")
    );
    body.push_str("<nav><a href=\"#summary\">Summary</a>");
    if sessions.len() > 1 {
        body.push_str("<a href=\"#compare\">Comparison</a>");
    }
    body.push_str("<a href=\"#charts\">Charts</a><a href=\"#examples\">Examples</a></nav>");
    body.push_str(&summary_section(&labels, &entries, &methods));
    if sessions.len() > 1 {
        body.push_str("<section id=\"compare\"><h2>Comparison</h2>");
        match comparison::build(&comparison::Request {
            sessions,
            methods: &[],
            alignment: comparison::Alignment::Intersection,
            allow_differences: compare.allow_differences,
            resamples: compare.resamples,
            stratified: compare.stratified,
            seed: compare.seed,
        }) {
            Ok(c) => body.push_str(&comparison::html_sections(&c)),
            Err(e) => {
                let _ = write!(
                    body,
                    "<p class=\"note\">not compared: {}</p>",
                    esc(&format!("{e:#}"))
                );
                body.push_str(&own_agreement(sessions, &compare)?);
            }
        }
        body.push_str("</section>");
    } else {
        let agreement = own_agreement(sessions, &compare)?;
        if !agreement.is_empty() {
            let _ = write!(body, "<section id=\"agreement\">{agreement}</section>");
        }
    }
    body.push_str(&charts_section(&labels, &entries, &methods));
    body.push_str(&stability_section(&labels, &entries));
    body.push_str(EXPLORER_HTML);
    let data = explorer_data(sessions, &labels, &methods)?;
    // `</` would end the script element; JSON allows `<\/`.
    let data = serde_json::to_string(&data)?.replace("</", "<\\/");
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>w2c report</title><style>{CSS}</style></head><body>{body}<script type=\"application/json\" id=\"data\">{data}</script><script>{JS}</script></body></html>\n"
    ))
}

/// A summary cell of a rate: its value as the table shows it (`shown`),
/// under it the Wilson interval, SE and `k/n` of the entry's `i`th rate
/// (the value alone when the entry has no such rate).
fn rate_cell(e: &ReportEntry, i: usize, shown: String) -> String {
    match e.rates.get(i) {
        Some((name, r)) => format!(
            "{shown}<br><small>{}</small>",
            comparison::html_escape(&comparison::rate_detail(name, r))
        ),
        None => shown,
    }
}

/// The headline metrics, one table per method, a row per model: the
/// numbers as the paper's table in `table` defines them (NVIDIA's
/// aggregate for a judge under protocol `when2call`), then w2c's own.
fn summary_section(labels: &[String], entries: &[Vec<ReportEntry>], methods: &[String]) -> String {
    let esc = comparison::html_escape;
    let mut out = String::from("<section id=\"summary\"><h2>Summary</h2><p class=\"legend\">Rates in %, F1 to 3 decimals; accuracy, F1 and ToolHall as the paper's table in <i>table</i> defines them, over <i>n</i> rows (<i>left out</i>: rows NVIDIA's aggregate cannot count); AnswerHall and ParamHall are w2c's, over every scored example; under each rate its Wilson 95% interval, binomial SE in points and <i>k/n</i>, as <code>w2c compare</code> prints them; cost — when no price is set.</p><div class=\"wrap\"><table><thead><tr><th>method</th><th>model</th><th>n</th><th>table</th><th>accuracy</th><th>F1</th><th>ToolHall</th><th>left out</th><th>AnswerHall</th><th>ParamHall</th><th>invalid</th><th>unscored</th><th>cost</th></tr></thead><tbody>");
    for ns in methods {
        for (label, es) in labels.iter().zip(entries) {
            let Some(e) = es.iter().find(|e| &e.namespace == ns) else {
                continue;
            };
            let m = &e.metrics.metrics;
            let h = &e.headline;
            let named = |name: &str| {
                e.rates
                    .iter()
                    .position(|(n, _)| *n == name)
                    .unwrap_or(usize::MAX)
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(ns),
                esc(label),
                h.n,
                h.table.short(),
                rate_cell(e, 0, pct(h.accuracy)),
                f1(h.f1),
                rate_cell(e, 1, pct(h.tool_hall)),
                if h.left_out.is_empty() {
                    "—".to_string()
                } else {
                    esc(&h.left_out_text())
                },
                rate_cell(e, named("answer_hallucination_rate"), pct(m.answer_hallucination_rate)),
                rate_cell(e, named("parameter_hallucination_rate"), pct(m.parameter_hallucination_rate)),
                m.n_invalid,
                e.metrics
                    .counts
                    .get("unscored")
                    .map_or_else(|| "—".into(), |n| n.to_string()),
                e.metrics
                    .usage
                    .cost_usd
                    .map_or_else(|| "—".into(), |c| format!("${c:.4}"))
            );
        }
    }
    out.push_str("</tbody></table></div>");
    let all: Vec<ReportEntry> = entries.iter().flatten().cloned().collect();
    for line in crate::report::report_legend(&all) {
        let _ = write!(out, "<p class=\"legend\">{}</p>", esc(&line));
    }
    out.push_str("</section>");
    out
}

/// Per method: F1 per behaviour across models, and a grid of confusion
/// matrices.
fn charts_section(labels: &[String], entries: &[Vec<ReportEntry>], methods: &[String]) -> String {
    let esc = comparison::html_escape;
    let mut out = String::from("<section id=\"charts\"><h2>Charts</h2>");
    for ns in methods {
        let per_model: Vec<(&String, &ReportEntry)> = labels
            .iter()
            .zip(entries)
            .filter_map(|(l, es)| Some((l, es.iter().find(|e| &e.namespace == ns)?)))
            .collect();
        let _ = write!(out, "<h3>{}</h3><div class=\"charts\">", esc(ns));
        let groups: Vec<String> = Label::ALL.iter().map(|l| l.to_string()).collect();
        let series: Vec<(String, Vec<Option<f64>>)> = per_model
            .iter()
            .map(|(l, e)| {
                let m = &e.metrics.metrics;
                (
                    (*l).clone(),
                    Label::ALL
                        .iter()
                        .map(|lab| {
                            m.per_class
                                .get(lab.as_str())
                                .filter(|c| c.support > 0 || c.predicted > 0)
                                .map(|c| c.f1)
                        })
                        .collect(),
                )
            })
            .collect();
        out.push_str(&crate::charts::grouped_bars_svg(
            &format!("{ns}: F1 per behaviour"),
            &groups,
            &series,
        ));
        for (l, e) in &per_model {
            out.push_str(&crate::charts::confusion_svg(
                &format!("{l} — {ns}"),
                &e.metrics.metrics,
            ));
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
    out
}

/// The stability metrics of every sweep, a row per model.
fn stability_section(labels: &[String], entries: &[Vec<ReportEntry>]) -> String {
    let esc = comparison::html_escape;
    let rows: Vec<String> = labels
        .iter()
        .zip(entries)
        .flat_map(|(l, es)| {
            es.iter().filter_map(move |e| {
                let st = e.metrics.stability.as_ref()?;
                Some(format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{} [{}, {}]</td></tr>",
                    esc(&e.namespace),
                    esc(l),
                    st.k,
                    st.stability_at_k,
                    st.mean_consistency_at_k,
                    pct(Some(st.stable_correct)),
                    pct(Some(st.stable_wrong)),
                    pct(Some(st.mean_flip_rate)),
                    pct(Some(st.mean_accuracy_across_runs)),
                    pct(Some(st.accuracy_ci95.0)),
                    pct(Some(st.accuracy_ci95.1)),
                ))
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<section id=\"stability\"><h2>Stability</h2><div class=\"wrap\"><table><thead><tr><th>sweep</th><th>model</th><th>k</th><th>Stability@k</th><th>MeanConsistency@k</th><th>StableCorrect</th><th>StableWrong</th><th>flip rate</th><th>accuracy across runs [95% CI]</th></tr></thead><tbody>{}</tbody></table></div></section>",
        rows.join("")
    )
}

/// A stored field as shown: strings cut to [`FIELD_PREVIEW`] characters,
/// other values as compact JSON, cut the same way.
fn preview(v: &Value) -> Value {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => return Value::Null,
        other => other.to_string(),
    };
    if text.chars().count() > FIELD_PREVIEW {
        Value::String(format!(
            "{}… ({} characters)",
            text.chars().take(FIELD_PREVIEW).collect::<String>(),
            text.chars().count()
        ))
    } else {
        Value::String(text)
    }
}

/// Audit event types per item uuid of a namespace: the session's own
/// events about its inputs (a dataset row's tool texts), then the
/// namespace's.
fn audit_by_uuid(
    session_dir: &std::path::Path,
    dir: &NamespaceDir,
) -> HashMap<String, Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Event {
        uuid: String,
        event_type: String,
    }
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for path in [
        crate::store::layout::session_audit(session_dir),
        dir.audit(),
    ] {
        let _ = read_jsonl(&path, |e: Event| {
            let kinds = out.entry(e.uuid).or_default();
            if !kinds.contains(&e.event_type) {
                kinds.push(e.event_type);
            }
        });
    }
    out
}

/// One example of one method across the models (index = model).
struct ExampleRow {
    predictions: Vec<Value>,
    details: Vec<Value>,
    audit: Vec<Value>,
}

/// What the explorer's script reads: the models, the methods, each
/// example's question, tools and gold label, and per method a row per
/// example with each model's prediction, stored fields and audit events.
fn explorer_data(
    sessions: &[FoundSession],
    labels: &[String],
    methods: &[String],
) -> Result<Value> {
    let datasets = DatasetCache::default();
    let mut examples: Map<String, Value> = Map::new();
    let mut rows: Map<String, Value> = Map::new();
    for ns in methods {
        let mut order: Vec<String> = Vec::new();
        let mut by_uuid: BTreeMap<String, ExampleRow> = BTreeMap::new();
        for (m, s) in sessions.iter().enumerate() {
            let dir = NamespaceDir::new(&s.dir, ns);
            if !dir.is_done() || !dir.predictions().exists() {
                continue;
            }
            let audit = audit_by_uuid(&s.dir, &dir);
            let dataset = s.manifest.config["dataset"]["path"]
                .as_str()
                .map(std::path::PathBuf::from);
            let mut predictions: Vec<PredictionRow> = Vec::new();
            read_jsonl(&dir.predictions(), |r: PredictionRow| predictions.push(r))?;
            for r in predictions {
                if !examples.contains_key(&r.uuid) {
                    let ex = datasets.example(dataset.as_deref(), &r.uuid);
                    examples.insert(
                        r.uuid.clone(),
                        json!([
                            ex.as_ref().map(|e| e.question.clone()),
                            ex.map(|e| e.tools).unwrap_or_default(),
                            r.gold.as_str(),
                            r.n_tools
                        ]),
                    );
                }
                let entry = by_uuid.entry(r.uuid.clone()).or_insert_with(|| {
                    order.push(r.uuid.clone());
                    ExampleRow {
                        predictions: vec![Value::Null; labels.len()],
                        details: vec![Value::Null; labels.len()],
                        audit: vec![json!([]); labels.len()],
                    }
                });
                entry.predictions[m] = r
                    .prediction
                    .map_or(json!("unscored"), |p| json!(p.to_string()));
                entry.details[m] = Value::Object(
                    r.details
                        .iter()
                        .map(|(k, v)| (k.clone(), preview(v)))
                        .collect(),
                );
                entry.audit[m] = json!(audit.get(&r.uuid).cloned().unwrap_or_default());
            }
        }
        let list: Vec<Value> = order
            .iter()
            .map(|u| {
                let r = &by_uuid[u];
                json!([u, r.predictions, r.details, r.audit])
            })
            .collect();
        rows.insert(ns.clone(), Value::Array(list));
    }
    Ok(json!({
        "models": labels,
        "methods": methods,
        "examples": examples,
        "rows": rows,
    }))
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1rem 1.5rem;max-width:1400px;color:#222;line-height:1.4}
header h1{margin:.2em 0}
.sessions{color:#555;font-size:.9rem}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.4rem 0;z-index:2}
nav a{margin-right:1rem}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
.wrap{overflow-x:auto;max-width:100%}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.charts svg{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
.legend,.note{color:#555;font-size:.85rem}
.differs{border:2px solid #c60;padding:0 1em;background:#fff4e5}
#filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:end;margin:.5rem 0}
#filters label{display:flex;flex-direction:column;font-size:.8rem;color:#444}
#filters select{font-size:.9rem;padding:2px}
#count{font-weight:bold;margin:.4rem 0}
#rows td,#rows th{white-space:normal;text-align:left;vertical-align:top}
#compare td,#compare th{white-space:normal;vertical-align:top;min-width:3.5em}
#rows tr{cursor:pointer}
#rows tr:hover{background:#f5f8ff}
#rows td.q{max-width:32rem}
.right{color:#1f7a3a}
.wrong{color:#b3261e}
.unscored{color:#777}
#pager button{margin-right:.5rem}
#detail{border:2px solid #4a7bd0;border-radius:6px;padding:.8rem 1rem;margin:1rem 0;background:#fafcff}
#detail[hidden]{display:none}
#detail pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:.4rem;font-size:.8rem;max-height:16rem;overflow:auto}
.sides{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.8rem}
.side{border:1px solid #ddd;border-radius:4px;padding:.5rem}
.side dl{margin:.3rem 0;font-size:.82rem}
.side dt{font-weight:bold;color:#555}
.side dd{margin:0 0 .3rem 0;white-space:pre-wrap;word-break:break-word}
#selftest{display:none}
@media (max-width:1000px){body{padding:.6rem}td,th{padding:2px 4px;font-size:.8rem}}
"#;

const EXPLORER_HTML: &str = r#"<section id="examples"><h2>Examples</h2>
<div id="filters">
<label>method<select id="f-method"></select></label>
<label>gold<select id="f-gold"></select></label>
<label>predicted (any model)<select id="f-pred"></select></label>
<label>correct<select id="f-correct"><option value="">any</option><option value="all">every model right</option><option value="none">every model wrong</option><option value="some">some wrong</option></select></label>
<label>audit event<select id="f-audit"></select></label>
<label>models<select id="f-disagree"><option value="">any</option><option value="1">disagree</option><option value="0">agree</option></select></label>
<label>disagrees with method (same model)<select id="f-vs"></select></label>
</div>
<div id="count"></div>
<div id="detail" hidden></div>
<div class="wrap"><table id="rows"><thead></thead><tbody></tbody></table></div>
<div id="pager"></div>
<pre id="selftest"></pre>
</section>"#;

const JS: &str = r#"
"use strict";
const errors = [];
window.addEventListener("error", e => errors.push(String(e.message)));
const D = JSON.parse(document.getElementById("data").textContent);
const Q = new URLSearchParams(location.search);
const PAGE = 100;
const LABELS = ["tool_call", "request_for_info", "cannot_answer", "direct"];
const $ = id => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
let page = Number(Q.get("page") || 0);
function options(select, values, chosen) {
  select.replaceChildren(el("option", {value: ""}, "any"), ...values.map(v => el("option", {value: v}, v)));
  select.value = values.includes(chosen) ? chosen : "";
}
function methodRows() { return D.rows[$("f-method").value] || []; }
function setupFilters() {
  const m = $("f-method");
  m.replaceChildren(...D.methods.map(x => el("option", {value: x}, x)));
  m.value = D.methods.includes(Q.get("method")) ? Q.get("method") : (D.methods[0] || "");
  options($("f-gold"), LABELS, Q.get("gold"));
  options($("f-pred"), [...LABELS, "invalid", "unscored"], Q.get("pred"));
  $("f-correct").value = Q.get("correct") || "";
  $("f-disagree").value = Q.get("disagree") || "";
  refreshAudit(Q.get("audit"));
  refreshVs(Q.get("vs"));
  for (const id of ["f-method", "f-gold", "f-pred", "f-correct", "f-audit", "f-disagree", "f-vs"]) {
    $(id).addEventListener("change", () => { if (id === "f-method") { refreshAudit(""); refreshVs(""); } page = 0; render(); });
  }
}
// The other methods, to list the examples on which a model's prediction
// under this method differs from its prediction under that one (a judge
// against the multiple-choice methods, two judges).
function refreshVs(chosen) {
  options($("f-vs"), D.methods.filter(x => x !== $("f-method").value), chosen);
}
function vsPreds() {
  const other = $("f-vs").value;
  if (!other) return null;
  const by = new Map();
  for (const r of D.rows[other] || []) by.set(r[0], r[1]);
  return by;
}
function refreshAudit(chosen) {
  const kinds = new Set();
  for (const r of methodRows()) for (const a of r[3]) for (const k of a) kinds.add(k);
  options($("f-audit"), [...kinds].sort(), chosen);
}
function matches(r) {
  const [uuid, preds, , audits] = r;
  const gold = D.examples[uuid][2];
  const f = id => $(id).value;
  if (f("f-gold") && gold !== f("f-gold")) return false;
  const present = preds.filter(p => p !== null);
  if (f("f-pred") && !present.includes(f("f-pred"))) return false;
  const right = present.filter(p => p === gold).length;
  const c = f("f-correct");
  if (c === "all" && right !== present.length) return false;
  if (c === "none" && right !== 0) return false;
  if (c === "some" && right === present.length) return false;
  if (f("f-audit") && !audits.some(a => a.includes(f("f-audit")))) return false;
  const disagree = new Set(present).size > 1;
  if (f("f-disagree") === "1" && !disagree) return false;
  if (f("f-disagree") === "0" && disagree) return false;
  if (VS) {
    const other = VS.get(uuid);
    const scored = p => p !== null && p !== "unscored";
    if (!other || !preds.some((p, m) => scored(p) && scored(other[m]) && p !== other[m])) return false;
  }
  return true;
}
let VS = null;
function shown() { VS = vsPreds(); return methodRows().filter(matches); }
function render() {
  const rows = shown();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  page = Math.min(page, pages - 1);
  $("count").textContent = `${rows.length} of ${methodRows().length} examples` + (pages > 1 ? ` — page ${page + 1} of ${pages}` : "");
  $("rows").tHead.replaceChildren(el("tr", {}, el("th", {}, "example"), el("th", {}, "gold"), el("th", {}, "question"), ...D.models.map(m => el("th", {}, m))));
  const body = rows.slice(page * PAGE, (page + 1) * PAGE).map(r => {
    const [uuid, preds] = r;
    const ex = D.examples[uuid];
    const q = (ex[0] || "").slice(0, 160);
    const tr = el("tr", {"data-uuid": uuid},
      el("td", {}, uuid.slice(0, 8)), el("td", {}, ex[2]), el("td", {class: "q"}, q),
      ...preds.map(p => el("td", {class: p === null ? "" : p === "unscored" ? "unscored" : p === ex[2] ? "right" : "wrong"}, p === null ? "—" : p)));
    tr.addEventListener("click", () => showDetail(uuid));
    return tr;
  });
  $("rows").tBodies[0].replaceChildren(...body);
  const pager = $("pager");
  pager.replaceChildren();
  if (pages > 1) {
    const prev = el("button", {}, "previous"), next = el("button", {}, "next");
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
    prev.onclick = () => { page--; render(); };
    next.onclick = () => { page++; render(); };
    pager.append(prev, next);
  }
}
function showDetail(uuid) {
  const r = methodRows().find(x => x[0] === uuid);
  const ex = D.examples[uuid];
  const d = $("detail");
  if (!r || !ex) { d.hidden = true; return; }
  const tools = ex[1].map(t => { try { return JSON.stringify(JSON.parse(t), null, 2); } catch (_) { return t; } }).join("\n\n");
  const sides = D.models.map((m, i) => {
    const p = r[1][i];
    const dl = el("dl", {});
    for (const [k, v] of Object.entries(r[2][i] || {})) if (v !== null) dl.append(el("dt", {}, k), el("dd", {}, v));
    if (r[3][i].length) dl.append(el("dt", {}, "audit events"), el("dd", {}, r[3][i].join(", ")));
    return el("div", {class: "side"}, el("h4", {}, m), el("p", {}, "prediction: ",
      el("b", {class: p === null ? "" : p === ex[2] ? "right" : "wrong"}, p === null ? "not evaluated" : p)), dl);
  });
  d.replaceChildren(
    el("h3", {}, `${$("f-method").value} · ${uuid}`),
    el("p", {}, "gold: ", el("b", {}, ex[2]), ` · ${ex[3]} tools offered`),
    el("h4", {}, "question"), el("pre", {}, ex[0] || "(question not available: the dataset file could not be read)"),
    el("h4", {}, "tools"), el("pre", {}, tools || "(none)"),
    el("div", {class: "sides"}, ...sides));
  d.hidden = false;
  d.scrollIntoView({block: "nearest"});
}
// The comparison's tables wider than their box (cut off, scrolled aside).
function clipped() {
  const c = document.getElementById("compare");
  return [...(c ? c.querySelectorAll(".wrap") : [])]
    .filter(w => w.scrollWidth > w.clientWidth + 1)
    .map(w => ({box: w.clientWidth, table: w.scrollWidth, head: (w.querySelector("th") || {}).textContent}));
}
function overlaps() {
  const found = [];
  document.querySelectorAll("svg").forEach((svg, s) => {
    const boxes = [...svg.querySelectorAll("text")].map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, A] = boxes[i], [b, B] = boxes[j];
      const w = Math.min(A.right, B.right) - Math.max(A.left, B.left);
      const h = Math.min(A.bottom, B.bottom) - Math.max(A.top, B.top);
      if (w > 0.5 && h > 0.5) found.push({svg: s, a, b});
    }
  });
  return found;
}
try {
  setupFilters();
  render();
  if (Q.get("example")) showDetail(Q.get("example"));
  // `?only=<section>` shows one section (a link to it, or a screenshot).
  if (Q.get("only")) document.querySelectorAll("body > section").forEach(s => { s.hidden = s.id !== Q.get("only"); });
} catch (e) { errors.push(String(e)); }
if (Q.get("selftest")) {
  const rows = shown();
  $("selftest").textContent = JSON.stringify({
    errors, method: $("f-method").value, shown: rows.length, total: methodRows().length,
    uuids: rows.map(r => r[0]), overlaps: overlaps(), detail: !$("detail").hidden,
    width: document.documentElement.clientWidth, scrollWidth: document.documentElement.scrollWidth,
    clipped: clipped(),
  });
}
"#;
