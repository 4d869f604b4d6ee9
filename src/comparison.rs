//! `w2c compare`: reads the finished namespaces of several sessions, lines
//! their examples up, runs the paired comparison ([`crate::compare`]) per
//! method, lists the examples where the models disagree (with the question
//! and tools from the dataset), and renders it all as text, Markdown, JSON
//! or HTML. A reader of the store; it writes nothing itself.

use crate::compare::{self, MethodComparison};
use crate::labels::Prediction;
use crate::metrics::Scored;
use crate::store::session::FoundSession;
use crate::store::{read_jsonl, NamespaceDir, PredictionRow};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// One session as compared: its label and its finished namespaces' rows.
struct Loaded {
    label: String,
    /// namespace → uuid → row.
    namespaces: BTreeMap<String, HashMap<String, PredictionRow>>,
    /// The session's dataset file, for questions and tools.
    dataset: Option<std::path::PathBuf>,
}

/// How to treat sessions that did not evaluate the same examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Refuse, naming the difference.
    Same,
    /// Compare the examples every session has, and say how many were left.
    Intersection,
}

/// What to compare and how.
pub struct Request<'a> {
    /// The sessions, in the order to show them.
    pub sessions: &'a [FoundSession],
    /// Only these namespaces (all shared ones when empty).
    pub methods: &'a [String],
    /// Example alignment rule.
    pub alignment: Alignment,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the bootstrap draws.
    pub seed: u64,
}

/// One model's side of an example where the models disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The model label.
    pub model: String,
    /// Its prediction (`invalid`, or `null` when unscored).
    pub prediction: Option<String>,
    /// Whether it is right.
    pub correct: bool,
    /// The method's stored details (raw answer, judge verdict, scores...).
    pub details: serde_json::Map<String, Value>,
}

/// An example where the models' predictions differ.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// The namespace.
    pub method: String,
    /// Example uuid.
    pub uuid: String,
    /// Gold label.
    pub gold: String,
    /// The question (when the dataset can be read).
    pub question: Option<String>,
    /// The tools offered, as JSON texts.
    pub tools: Vec<String>,
    /// Each model's prediction and answer.
    pub models: Vec<Side>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The models, in order, with the session each comes from.
    pub sessions: Vec<(String, String)>,
    /// Per shared method.
    pub methods: Vec<MethodComparison>,
    /// Notes (methods not shared, examples left out).
    pub notes: Vec<String>,
    /// Examples where the models' predictions differ.
    pub disagreements: Vec<Disagreement>,
}

/// The label of each session: its target model, with the fingerprint when
/// two sessions evaluate the same model.
pub fn labels(sessions: &[FoundSession]) -> Vec<String> {
    let models: Vec<&str> = sessions
        .iter()
        .map(|s| crate::report::session_model(&s.manifest))
        .collect();
    models
        .iter()
        .zip(sessions)
        .map(|(m, s)| {
            if models.iter().filter(|x| *x == m).count() > 1 {
                format!(
                    "{m} ({})",
                    crate::fingerprint::prefix(&s.manifest.fingerprint, 8)
                )
            } else {
                m.to_string()
            }
        })
        .collect()
}

fn load(found: &FoundSession, label: String) -> Result<Loaded> {
    let mut namespaces = BTreeMap::new();
    for (ns, _) in crate::store::session::namespaces(&found.dir) {
        let dir = NamespaceDir::new(&found.dir, &ns);
        if !dir.is_done() || !dir.predictions().exists() {
            continue;
        }
        let mut rows = HashMap::new();
        for row in read_jsonl_rows(&dir.predictions())? {
            rows.insert(row.uuid.clone(), row);
        }
        namespaces.insert(ns, rows);
    }
    let dataset = found.manifest.config["dataset"]["path"]
        .as_str()
        .map(std::path::PathBuf::from);
    Ok(Loaded {
        label,
        namespaces,
        dataset,
    })
}

fn read_jsonl_rows(path: &std::path::Path) -> Result<Vec<PredictionRow>> {
    let mut rows = Vec::new();
    read_jsonl(path, |row: PredictionRow| rows.push(row))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(rows)
}

/// Compares the sessions of `req`.
pub fn build(req: &Request<'_>) -> Result<Comparison> {
    if req.sessions.len() < 2 {
        bail!("compare needs at least two sessions");
    }
    let labels = labels(req.sessions);
    let loaded: Vec<Loaded> = req
        .sessions
        .iter()
        .zip(&labels)
        .map(|(s, l)| load(s, l.clone()))
        .collect::<Result<_>>()?;
    let mut notes = Vec::new();
    let all: BTreeSet<&String> = loaded.iter().flat_map(|l| l.namespaces.keys()).collect();
    let mut methods: Vec<&String> = all
        .iter()
        .copied()
        .filter(|ns| loaded.iter().all(|l| l.namespaces.contains_key(*ns)))
        .collect();
    for ns in &all {
        if !methods.contains(ns) {
            let have: Vec<&str> = loaded
                .iter()
                .filter(|l| l.namespaces.contains_key(*ns))
                .map(|l| l.label.as_str())
                .collect();
            notes.push(format!(
                "{ns}: finished only for {} — not compared",
                have.join(", ")
            ));
        }
    }
    if !req.methods.is_empty() {
        for want in req.methods {
            if !methods.contains(&want) {
                bail!("method {want} is not finished in every session compared");
            }
        }
        methods.retain(|m| req.methods.contains(m));
    }
    if methods.is_empty() {
        bail!("the sessions share no finished method");
    }
    let mut out = Vec::new();
    let mut disagreements = Vec::new();
    let datasets = DatasetCache::default();
    for ns in methods {
        let per: Vec<&HashMap<String, PredictionRow>> =
            loaded.iter().map(|l| &l.namespaces[ns]).collect();
        let uuids = aligned_uuids(ns, &loaded, &per, req.alignment, &mut notes)?;
        // Examples every model scored (mcq_logprob may leave some unscored).
        let scored_uuids: Vec<&String> = uuids
            .iter()
            .filter(|u| per.iter().all(|rows| rows[*u].prediction.is_some()))
            .collect();
        if scored_uuids.len() < uuids.len() {
            notes.push(format!(
                "{ns}: {} of {} examples left out: unscored by some model",
                uuids.len() - scored_uuids.len(),
                uuids.len()
            ));
        }
        let rows: Vec<Vec<Scored>> = per
            .iter()
            .map(|rows| {
                scored_uuids
                    .iter()
                    .map(|u| {
                        let r = &rows[*u];
                        compare::scored(
                            r.gold,
                            r.prediction.unwrap_or(Prediction::Invalid),
                            r.n_tools,
                        )
                    })
                    .collect()
            })
            .collect();
        out.push(compare::compare(
            ns,
            &labels,
            &rows,
            req.seed,
            req.resamples,
        ));
        for u in &uuids {
            let preds: Vec<Option<Prediction>> =
                per.iter().map(|rows| rows[u].prediction).collect();
            if preds.iter().all(|p| *p == preds[0]) {
                continue;
            }
            let first = &per[0][u];
            let example = datasets.example(loaded[0].dataset.as_deref(), u);
            disagreements.push(Disagreement {
                method: ns.clone(),
                uuid: u.clone(),
                gold: first.gold.to_string(),
                question: example.as_ref().map(|e| e.question.clone()),
                tools: example.map(|e| e.tools).unwrap_or_default(),
                models: per
                    .iter()
                    .zip(&labels)
                    .map(|(rows, label)| {
                        let r = &rows[u];
                        Side {
                            model: label.clone(),
                            prediction: r.prediction.map(|p| p.to_string()),
                            correct: r.prediction == Some(Prediction::Label(r.gold)),
                            details: r.details.clone(),
                        }
                    })
                    .collect(),
            });
        }
    }
    Ok(Comparison {
        sessions: req
            .sessions
            .iter()
            .zip(labels)
            .map(|(s, l)| {
                (
                    l,
                    format!(
                        "{}/{}",
                        s.manifest.run_key,
                        crate::fingerprint::short(&s.manifest.fingerprint)
                    ),
                )
            })
            .collect(),
        methods: out,
        notes,
        disagreements,
    })
}

/// The uuids of namespace `ns` shared by every session, in the first
/// session's order; an error naming the difference unless the
/// intersection is asked for.
fn aligned_uuids(
    ns: &str,
    loaded: &[Loaded],
    per: &[&HashMap<String, PredictionRow>],
    alignment: Alignment,
    notes: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut first: Vec<&String> = per[0].keys().collect();
    first.sort();
    let shared: Vec<String> = first
        .iter()
        .filter(|u| per.iter().all(|rows| rows.contains_key(**u)))
        .map(|u| (*u).clone())
        .collect();
    let differs = per.iter().any(|rows| rows.len() != shared.len());
    if differs {
        let describe: Vec<String> = loaded
            .iter()
            .zip(per)
            .map(|(l, rows)| {
                let only: Vec<&String> = rows.keys().filter(|u| !shared.contains(u)).collect();
                format!(
                    "{} has {} examples ({} not in every session{})",
                    l.label,
                    rows.len(),
                    only.len(),
                    only.first()
                        .map_or(String::new(), |u| format!(", e.g. {u}"))
                )
            })
            .collect();
        match alignment {
            Alignment::Same => bail!(
                "{ns}: the sessions did not evaluate the same examples: {}; pass --intersection to compare the {} they share",
                describe.join("; "),
                shared.len()
            ),
            Alignment::Intersection => notes.push(format!(
                "{ns}: compared on the {} examples every session has ({})",
                shared.len(),
                describe.join("; ")
            )),
        }
    }
    if shared.is_empty() {
        bail!("{ns}: the sessions share no example");
    }
    Ok(shared)
}

/// Datasets read once each, for the questions and tools of examples.
#[derive(Default)]
pub struct DatasetCache {
    loaded: std::cell::RefCell<
        HashMap<std::path::PathBuf, Option<HashMap<String, crate::dataset::Example>>>,
    >,
}

impl DatasetCache {
    /// The example `uuid` of the dataset at `path`, when it can be read.
    pub fn example(
        &self,
        path: Option<&std::path::Path>,
        uuid: &str,
    ) -> Option<crate::dataset::Example> {
        let path = path?;
        let mut cache = self.loaded.borrow_mut();
        let by_uuid = cache.entry(path.to_path_buf()).or_insert_with(|| {
            crate::dataset::load(path).ok().map(|d| {
                d.examples
                    .into_iter()
                    .map(|e| (e.uuid.clone(), e))
                    .collect()
            })
        });
        by_uuid.as_ref()?.get(uuid).cloned()
    }
}

/// Short names of the compared metrics, for table headers.
fn short_name(metric: &str) -> &str {
    match metric {
        "accuracy" => "accuracy",
        "macro_f1_official" => "macro-F1",
        "tool_hallucination_rate_official" => "ToolHall",
        "answer_hallucination_rate" => "AnswerHall",
        "parameter_hallucination_rate" => "ParamHall",
        other => other,
    }
}

/// A metric value: rates in %, F1 to 3 decimals.
fn value(metric: &str, v: Option<f64>) -> String {
    if metric.starts_with("macro_f1") {
        crate::report::f1(v)
    } else {
        crate::report::pct(v)
    }
}

/// `value [lo, hi]`.
fn with_ci(metric: &str, i: &compare::Interval) -> String {
    match (i.lo, i.hi) {
        (Some(lo), Some(hi)) => format!(
            "{} [{}, {}]",
            value(metric, i.value),
            value(metric, Some(lo)),
            value(metric, Some(hi))
        ),
        _ => value(metric, i.value),
    }
}

/// A difference with a sign, its CI, and `*` when the CI excludes 0.
fn diff_with_ci(metric: &str, i: &compare::Interval) -> String {
    let signed = |x: f64| {
        let v = value(metric, Some(x));
        if x >= 0.0 && !v.starts_with('-') {
            format!("+{v}")
        } else {
            v
        }
    };
    match (i.value, i.lo, i.hi) {
        (Some(v), Some(lo), Some(hi)) => format!(
            "{} [{}, {}]{}",
            signed(v),
            signed(lo),
            signed(hi),
            if i.excludes_zero() { " *" } else { "" }
        ),
        (Some(v), _, _) => signed(v),
        _ => "n/a".into(),
    }
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// A method's two tables: the models (ranked) and the pairs.
struct Tables {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    pair_header: Vec<&'static str>,
    pairs: Vec<Vec<String>>,
}

/// The rows of a method's model table and pair table.
fn tables(m: &MethodComparison) -> Tables {
    let mut header = vec!["rank", "model"];
    header.extend(compare::METRICS.iter().map(|(n, _)| short_name(n)));
    let mut models: Vec<&compare::ModelResult> = m.models.iter().collect();
    models.sort_by_key(|r| r.rank);
    let rows = models
        .iter()
        .map(|r| {
            let mut row = vec![r.rank.to_string(), r.model.clone()];
            row.extend(r.metrics.iter().map(|(name, i)| with_ci(name, i)));
            row
        })
        .collect();
    let pair_header = vec![
        "A",
        "B",
        "Δ accuracy",
        "Δ macro-F1",
        "Δ ToolHall",
        "only A right",
        "only B right",
        "McNemar p",
        "Holm p",
    ];
    let pairs = m
        .pairs
        .iter()
        .map(|p| {
            let d = |k: usize| diff_with_ci(&p.differences[k].0, &p.differences[k].1);
            vec![
                p.a.clone(),
                p.b.clone(),
                d(0),
                d(1),
                d(2),
                p.only_a.to_string(),
                p.only_b.to_string(),
                p_value(p.mcnemar_p),
                format!(
                    "{}{}",
                    p_value(p.adjusted_p),
                    if p.significant { " (significant)" } else { "" }
                ),
            ]
        })
        .collect();
    Tables {
        header,
        rows,
        pair_header,
        pairs,
    }
}

/// What the ranking says about significance, in a sentence per method.
fn verdict(m: &MethodComparison) -> String {
    let sig: Vec<String> = m
        .pairs
        .iter()
        .filter(|p| p.significant)
        .map(|p| {
            let (better, worse) = if p.only_a > p.only_b {
                (&p.a, &p.b)
            } else {
                (&p.b, &p.a)
            };
            format!("{better} > {worse}")
        })
        .collect();
    if sig.is_empty() {
        format!(
            "no difference in accuracy is significant (McNemar, Holm-adjusted p < {})",
            compare::ALPHA
        )
    } else {
        format!(
            "significant in accuracy (McNemar, Holm-adjusted p < {}): {}",
            compare::ALPHA,
            sig.join(", ")
        )
    }
}

const LEGEND: &str = "values with 95% percentile bootstrap intervals; Δ = A − B with a paired bootstrap interval (* = excludes 0); McNemar's exact test on per-example correctness, p-values adjusted over the method's pairs with Holm's rule";

/// Plain text or Markdown.
pub fn render_text(c: &Comparison, markdown: bool, disagreements_shown: usize) -> String {
    let table = |header: &[&str], rows: &[Vec<String>]| {
        if markdown {
            let mut s = format!(
                "| {} |\n|{}\n",
                header.join(" | "),
                "---|".repeat(header.len())
            );
            for r in rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
            s
        } else {
            crate::report::table(header, rows)
        }
    };
    let mut out = String::new();
    let h = if markdown { "## " } else { "" };
    for m in &c.methods {
        let t = tables(m);
        let _ = writeln!(
            out,
            "{h}{} — {} examples, {} bootstrap resamples (seed {})\n",
            m.method, m.n_examples, m.resamples, m.seed
        );
        out.push_str(&table(&t.header, &t.rows));
        out.push('\n');
        out.push_str(&table(&t.pair_header, &t.pairs));
        let _ = writeln!(out, "\n{}\n", verdict(m));
    }
    let _ = writeln!(out, "{LEGEND}.");
    for n in &c.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "\n{h}{} examples where the models' predictions differ{}",
        c.disagreements.len(),
        if c.disagreements.len() > disagreements_shown {
            format!(" (first {disagreements_shown}; --disagreements FILE writes them all)")
        } else {
            String::new()
        }
    );
    for d in c.disagreements.iter().take(disagreements_shown) {
        let q = d.question.as_deref().unwrap_or("(question not available)");
        let q: String = q.chars().take(100).collect();
        let _ = writeln!(out, "\n{} {} gold {}: {}", d.method, d.uuid, d.gold, q);
        for s in &d.models {
            let _ = writeln!(
                out,
                "  {:<24} {:<16} {}",
                s.model,
                s.prediction.as_deref().unwrap_or("unscored"),
                if s.correct { "right" } else { "wrong" }
            );
        }
    }
    out
}

/// The comparison's tables and verdicts as HTML (a section of a page).
pub fn html_sections(c: &Comparison) -> String {
    let esc = html_escape;
    let table = |header: &[&str], rows: &[Vec<String>]| {
        let mut s = String::from("<table><thead><tr>");
        for h in header {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr></thead><tbody>");
        for r in rows {
            s.push_str("<tr>");
            for cell in r {
                let _ = write!(s, "<td>{}</td>", esc(cell));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    };
    let mut out = String::new();
    for m in &c.methods {
        let t = tables(m);
        let _ = write!(
            out,
            "<h3>{} <small>{} examples, {} resamples, seed {}</small></h3><div class=\"wrap\">",
            esc(&m.method),
            m.n_examples,
            m.resamples,
            m.seed
        );
        out.push_str(&table(&t.header, &t.rows));
        out.push_str(&table(&t.pair_header, &t.pairs));
        let _ = write!(out, "</div><p>{}</p>", esc(&verdict(m)));
    }
    let _ = write!(out, "<p><small>{}</small></p>", esc(LEGEND));
    for n in &c.notes {
        let _ = write!(out, "<p class=\"note\">note: {}</p>", esc(n));
    }
    out
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page with the tables.
pub fn render_html(c: &Comparison) -> String {
    let mut out = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>w2c compare</title><style>body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#eee}td:nth-child(-n+2){text-align:left}.wrap{overflow-x:auto}</style></head><body><h1>w2c compare</h1><p>");
    out.push_str(&html_escape(
        &c.sessions
            .iter()
            .map(|(m, s)| format!("{m} = {s}"))
            .collect::<Vec<_>>()
            .join("; "),
    ));
    out.push_str("</p>");
    out.push_str(&html_sections(c));
    out.push_str("</body></html>\n");
    out
}

/// The name under which a comparison is filed in MLflow: the compared
/// sessions' fingerprints (8 digits each), sorted, joined by `-`.
pub fn tag(sessions: &[FoundSession]) -> String {
    let mut fps: Vec<&str> = sessions
        .iter()
        .map(|s| crate::fingerprint::prefix(&s.manifest.fingerprint, 8))
        .collect();
    fps.sort_unstable();
    fps.join("-")
}

/// The comparison as metrics of model `label`'s session: per method its
/// rank, and against each other model the differences (this − other) of
/// accuracy, the paper's macro-F1 and ToolHall with their paired intervals,
/// McNemar's p before and after Holm's adjustment, and whether the
/// difference is significant (1) or not (0). Undefined values are left out.
pub fn metrics_for(c: &Comparison, label: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for m in &c.methods {
        let prefix = format!("compare.{}", m.method);
        if let Some(r) = m.models.iter().find(|r| r.model == label) {
            out.push((format!("{prefix}.rank"), r.rank as f64));
        }
        for p in &m.pairs {
            let (other, sign) = if p.a == label {
                (&p.b, 1.0)
            } else if p.b == label {
                (&p.a, -1.0)
            } else {
                continue;
            };
            let pre = format!("{prefix}.vs.{other}");
            for (name, i) in p.differences.iter().take(3) {
                let (lo, hi) = if sign > 0.0 {
                    (i.lo, i.hi)
                } else {
                    (i.hi, i.lo)
                };
                for (suffix, v) in [("", i.value), ("_lo", lo), ("_hi", hi)] {
                    if let Some(v) = v {
                        out.push((format!("{pre}.delta_{name}{suffix}"), sign * v));
                    }
                }
            }
            out.push((format!("{pre}.mcnemar_p"), p.mcnemar_p));
            out.push((format!("{pre}.holm_p"), p.adjusted_p));
            out.push((
                format!("{pre}.significant"),
                f64::from(u8::from(p.significant)),
            ));
        }
    }
    out
}
