//! Terminal output: the end-of-run summary table and the session status table.

use crate::export::confusion_csv;
use crate::labels::Label;
use crate::outcome::{MethodSummary, RunReport, RunStatus};
use crate::store::session::FoundSession;
use crate::store::NamespaceDir;
use std::fmt::Write;

/// Renders rows as a left-aligned text table with a header rule.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
        &mut out,
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{:.1}%", x * 100.0),
        None => "n/a".into(),
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x:.4}"),
        None => "n/a".into(),
    }
}

/// The end-of-run summary: one row per method and a confusion matrix each.
pub fn run_summary(report: &RunReport) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = report.methods.iter().map(method_row).collect();
    out.push_str(&table(
        &[
            "method",
            "done",
            "accuracy",
            "macro-F1(official)",
            "macro-F1(gold)",
            "macro-F1(all4)",
            "invalid",
            "ToolHall(official)",
            "ToolHall",
            "AnswerHall",
            "ParamHall",
            "tokens in/out",
        ],
        &rows,
    ));
    for m in &report.methods {
        if let Some(st) = &m.stability {
            let _ = writeln!(
                out,
                "\n{}: Stability@{k} {:.3}  MeanConsistency@{k} {:.3}  StableCorrect {:.3}  StableWrong {:.3}  ModeCorrect {:.3}\n  accuracy per repeat {:.3} ± {:.3}, macro-F1 per repeat {:.3} ± {:.3}, mean accuracy across runs {:.3} (95% CI {:.3}–{:.3}), entropy {:.3}, flip rate {:.3}",
                m.namespace,
                st.stability_at_k,
                st.mean_consistency_at_k,
                st.stable_correct,
                st.stable_wrong,
                st.mode_correct,
                st.accuracy_per_repeat.mean,
                st.accuracy_per_repeat.std,
                st.macro_f1_per_repeat.mean,
                st.macro_f1_per_repeat.std,
                st.mean_accuracy_across_runs,
                st.accuracy_ci95.0,
                st.accuracy_ci95.1,
                st.mean_entropy,
                st.mean_flip_rate,
                k = st.k,
            );
            continue;
        }
        if let Some(metrics) = &m.metrics {
            let _ = writeln!(out, "\nconfusion matrix, {} (rows = gold):", m.namespace);
            let mut header = vec!["gold \\ pred"];
            header.extend(Label::ALL.iter().map(|l| l.as_str()));
            header.push("invalid");
            let rows: Vec<Vec<String>> = Label::ALL
                .iter()
                .map(|gold| {
                    let mut row = vec![gold.to_string()];
                    let cells = metrics.confusion.get(gold.as_str());
                    for col in Label::ALL.iter().map(|l| l.as_str()).chain(["invalid"]) {
                        row.push(
                            cells
                                .and_then(|c| c.get(col))
                                .map(|n| n.to_string())
                                .unwrap_or_else(|| "0".into()),
                        );
                    }
                    row
                })
                .collect();
            out.push_str(&table(&header, &rows));
        }
    }
    out
}

fn method_row(m: &MethodSummary) -> Vec<String> {
    let mut tokens = format!("{}/{}", m.usage.prompt_tokens, m.usage.completion_tokens);
    if let Some(cost) = m.usage.cost_usd {
        tokens.push_str(&format!(" (${cost:.4})"));
    }
    match &m.metrics {
        Some(x) => vec![
            m.namespace.clone(),
            format!("{}/{}", m.done, m.total),
            pct(Some(x.accuracy)),
            num(x.macro_f1_official),
            num(x.macro_f1_present),
            num(Some(x.macro_f1_all)),
            x.n_invalid.to_string(),
            pct(x.tool_hallucination_rate_official),
            pct(x.tool_hallucination_rate),
            pct(x.answer_hallucination_rate),
            pct(x.parameter_hallucination_rate),
            tokens,
        ],
        None => {
            let mut row = vec![m.namespace.clone(), format!("{}/{}", m.done, m.total)];
            row.push(if m.failed > 0 {
                format!("incomplete ({} failed)", m.failed)
            } else {
                "incomplete".into()
            });
            row.extend(std::iter::repeat_n(String::new(), 8));
            row.push(tokens);
            row
        }
    }
}

/// One-line status of a finished run.
pub fn run_status_line(report: &RunReport) -> String {
    match report.status {
        RunStatus::Complete => format!("complete: session {}", report.session_dir.display()),
        RunStatus::Incomplete => format!(
            "incomplete: some items failed after their retries; run `w2c resume {}` to retry them",
            crate::fingerprint::short(&report.fingerprint)
        ),
        RunStatus::Interrupted => format!(
            "interrupted: progress is saved; continue with `w2c resume {}`",
            crate::fingerprint::short(&report.fingerprint)
        ),
    }
}

/// A row of `w2c status`.
pub struct StatusRow {
    /// The session.
    pub session: FoundSession,
    /// Per namespace: (name, done, total, finished).
    pub methods: Vec<(String, usize, usize, bool)>,
    /// PID of the process holding the session, if any.
    pub running_pid: Option<String>,
}

/// Renders `w2c status`.
pub fn status_table(rows: &[StatusRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = &r.session.manifest;
            let methods = if r.methods.is_empty() {
                "-".to_string()
            } else {
                r.methods
                    .iter()
                    .map(|(ns, d, t, fin)| {
                        format!("{ns} {d}/{t}{}", if *fin { " done" } else { "" })
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let state = match &r.running_pid {
                Some(pid) => format!("running (PID {pid})"),
                None if !r.methods.is_empty() && r.methods.iter().all(|x| x.3) => "done".into(),
                None => "stopped".into(),
            };
            vec![
                m.run_key.clone(),
                crate::fingerprint::short(&m.fingerprint).to_string(),
                state,
                methods,
                tracking_state(&r.session.dir),
                m.created_at.clone(),
                m.updated_at.clone(),
            ]
        })
        .collect();
    table(
        &[
            "run key",
            "fingerprint",
            "state",
            "methods (done/total)",
            "mlflow",
            "created",
            "updated",
        ],
        &body,
    )
}

/// One word on a session's MLflow mirror: `offline`, `synced`, or
/// `N pending` (run `w2c sync`).
pub fn tracking_state(session_dir: &std::path::Path) -> String {
    use crate::tracking::ids::{MlflowIds, Mode};
    match MlflowIds::load(session_dir) {
        Ok(ids) if ids.mode == Mode::Offline => "offline".into(),
        Ok(ids) if ids.synced => "synced".into(),
        Ok(ids) if ids.pending.is_empty() => "not synced".into(),
        Ok(ids) => format!("{} pending", ids.pending.len()),
        Err(_) => "unreadable".into(),
    }
}

/// Renders `w2c verify` checks.
pub fn verify_table(checks: &[crate::verify::Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.session.clone(),
                c.namespace.clone(),
                c.check.clone(),
                serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                c.detail.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["session", "namespace", "check", "status", "detail"],
        &rows,
    );
    let bad = checks
        .iter()
        .filter(|c| {
            matches!(
                c.status,
                crate::verify::Status::Mismatch | crate::verify::Status::Missing
            )
        })
        .count();
    let cannot = checks
        .iter()
        .filter(|c| c.status == crate::verify::Status::CannotCheck)
        .count();
    out.push_str(&match (bad, cannot) {
        (0, 0) => "all checks passed\n".to_string(),
        (0, n) => format!("no mismatch, but {n} checks could not be made\n"),
        (b, 0) => format!("{b} checks failed\n"),
        (b, n) => format!("{b} checks failed, {n} could not be made\n"),
    });
    out
}

/// One finished namespace of one session, for `w2c report`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportEntry {
    /// `<run_key>/<fingerprint16>`.
    pub session: String,
    /// Target model of the session.
    pub model: String,
    /// Namespace.
    pub namespace: String,
    /// The namespace's `metrics.json`.
    pub metrics: crate::store::MetricsFile,
    /// The namespace's artifacts directory.
    #[serde(skip)]
    pub artifacts: std::path::PathBuf,
    /// Wall time spent on the namespace over all its runs, seconds.
    pub wall_secs: f64,
}

/// The finished namespaces (with a `_DONE.json` and `metrics.json`) of a session.
pub fn collect(found: &FoundSession) -> Vec<ReportEntry> {
    let session = format!(
        "{}/{}",
        found.manifest.run_key,
        crate::fingerprint::short(&found.manifest.fingerprint)
    );
    let model = found.manifest.fingerprint_payload["target"]["model"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    crate::store::session::namespaces(&found.dir)
        .into_iter()
        .map(|(ns, _)| NamespaceDir::new(&found.dir, &ns))
        .filter(NamespaceDir::is_done)
        .filter_map(|dir| {
            crate::store::read_json(&dir.metrics())
                .ok()
                .map(|metrics| ReportEntry {
                    session: session.clone(),
                    model: model.clone(),
                    wall_secs: crate::store::records::wall_secs(&dir.checkpoints),
                    namespace: dir.name,
                    metrics,
                    artifacts: dir.artifacts,
                })
        })
        .collect()
}

const REPORT_HEADER: [&str; 18] = [
    "session",
    "model",
    "method",
    "n",
    "accuracy",
    "acc_norm",
    "macro-F1(official)",
    "macro-F1(gold)",
    "macro-F1(all4)",
    "invalid",
    "unscored",
    "ToolHall(official)",
    "ToolHall",
    "AnswerHall",
    "ParamHall",
    "tokens in/out",
    "cost USD",
    "wall s",
];

fn report_rows(entries: &[ReportEntry]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            let m = &e.metrics.metrics;
            let u = &e.metrics.usage;
            vec![
                e.session.clone(),
                e.model.clone(),
                e.namespace.clone(),
                m.n_total.to_string(),
                pct(Some(m.accuracy)),
                // Only `mcq_logprob` has acc_norm (the paper's set).
                e.metrics
                    .paper
                    .as_ref()
                    .map(|p| pct(Some(p.acc_norm)))
                    .unwrap_or_else(|| "-".into()),
                num(m.macro_f1_official),
                num(m.macro_f1_present),
                num(Some(m.macro_f1_all)),
                m.n_invalid.to_string(),
                // Only `mcq_logprob` can leave examples unscored; `n` and
                // every rate are over the scored ones.
                e.metrics
                    .counts
                    .get("unscored")
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                pct(m.tool_hallucination_rate_official),
                pct(m.tool_hallucination_rate),
                pct(m.answer_hallucination_rate),
                pct(m.parameter_hallucination_rate),
                format!("{}/{}", u.prompt_tokens, u.completion_tokens),
                u.cost_usd
                    .map(|c| format!("{c:.4}"))
                    .unwrap_or_else(|| "-".into()),
                format!("{:.1}", e.wall_secs),
            ]
        })
        .collect()
}

/// One line per namespace with NVIDIA's LLM-as-judge aggregate (protocol
/// `when2call`): the paper's columns, then each gold category's score.
fn official_judge_lines(entries: &[ReportEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let a = e.metrics.official_judge.as_ref()?;
            let categories: Vec<String> = a
                .categories
                .iter()
                .map(|(gold, c)| format!("{gold} {} of {}", pct(c.score), c.n))
                .collect();
            let left_out: usize = a.left_out.values().sum();
            Some(format!(
                "{} {}: NVIDIA's judge aggregate: F1 {}, Acc {}, Tool Hall {} over {} rows ({} left out); score by gold: {}",
                e.session,
                e.namespace,
                a.paper.f1.map_or("n/a".into(), |f| format!("{:.1}", f * 100.0)),
                pct(a.paper.acc),
                pct(a.paper.tool_hall),
                a.n_aggregated,
                left_out,
                categories.join(", ")
            ))
        })
        .collect()
}

/// Output formats of `w2c report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Terminal tables.
    Text,
    /// Markdown.
    Md,
    /// JSON.
    Json,
    /// One self-contained HTML file with charts.
    Html,
}

/// Renders the report of several sessions side by side.
pub fn render(entries: &[ReportEntry], format: Format) -> anyhow::Result<String> {
    let rows = report_rows(entries);
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(entries)? + "\n",
        Format::Text => {
            let mut out = table(&REPORT_HEADER, &rows);
            for e in entries {
                let _ = writeln!(out, "\n{} {} (rows = gold):", e.session, e.namespace);
                out.push_str(&confusion_csv(&e.metrics.metrics).replace(',', "\t"));
            }
            for line in official_judge_lines(entries) {
                let _ = writeln!(out, "\n{line}");
            }
            out
        }
        Format::Md => {
            let mut out = format!(
                "| {} |\n|{}\n",
                REPORT_HEADER.join(" | "),
                "---|".repeat(REPORT_HEADER.len())
            );
            for r in &rows {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
            for line in official_judge_lines(entries) {
                let _ = writeln!(out, "\n{line}");
            }
            out
        }
        Format::Html => {
            let esc = |s: &str| {
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            let mut out = String::from("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>w2c report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}td:nth-child(-n+3){text-align:left}.charts{display:flex;flex-wrap:wrap;gap:1em}</style></head><body><h1>w2c report</h1><table><tr>");
            for h in REPORT_HEADER {
                let _ = write!(out, "<th>{}</th>", esc(h));
            }
            out.push_str("</tr>");
            for r in &rows {
                out.push_str("<tr>");
                for c in r {
                    let _ = write!(out, "<td>{}</td>", esc(c));
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>");
            for line in official_judge_lines(entries) {
                let _ = write!(out, "<p>{}</p>", esc(&line));
            }
            for e in entries {
                let title = format!("{} {}", e.session, e.namespace);
                let _ = write!(out, "<h2>{}</h2><div class=\"charts\">", esc(&title));
                out.push_str(&crate::charts::confusion_svg(
                    "confusion matrix",
                    &e.metrics.metrics,
                ));
                out.push_str(&crate::charts::per_class_f1_svg(
                    "F1 per class",
                    &e.metrics.metrics,
                ));
                if let Ok(svg) = std::fs::read_to_string(e.artifacts.join("consistency.svg")) {
                    out.push_str(&svg);
                }
                out.push_str("</div>");
            }
            out.push_str("</body></html>\n");
            out
        }
    })
}
