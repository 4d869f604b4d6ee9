//! Terminal output: the end-of-run summary table and the session status table.

use crate::export::confusion_csv;
use crate::outcome::{MethodSummary, RunReport, RunStatus};
use crate::store::session::{FoundSession, UnreadableSession};
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

/// A rate as a percentage with one decimal (`n/a` when undefined).
pub(crate) fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{:.1}%", x * 100.0),
        None => "n/a".into(),
    }
}

/// An F1 (or other score in [0, 1]) to three decimals.
pub(crate) fn f1(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x:.3}"),
        None => "n/a".into(),
    }
}

/// A cost in USD, `-` when no price is set.
fn cost(v: Option<f64>) -> String {
    match v {
        Some(c) if c < 0.01 && c > 0.0 => format!("${c:.4}"),
        Some(c) => format!("${c:.2}"),
        None => "-".into(),
    }
}

/// Items done of total, with the examples beside them when an item is not
/// an example (`268/270 (90×3)`).
fn items_text(done: usize, total: usize, repeats: usize) -> String {
    if repeats > 1 {
        format!("{done}/{total} ({}×{repeats})", total / repeats)
    } else {
        format!("{done}/{total}")
    }
}

/// The end-of-run summary: the headline numbers of each method, labelled
/// by the paper's table that defines them (`judge`: the LLM-as-judge
/// table, NVIDIA's aggregate; `MC`: the multiple-choice table's
/// definitions; `w2c report --wide` has w2c's own metrics too), the rows
/// NVIDIA's aggregate leaves out when it leaves any, the stability metrics
/// of sweeps, and what a `-` or `(n×k)` means.
pub fn run_summary(report: &RunReport) -> String {
    let mut out = String::new();
    let left_out = report
        .methods
        .iter()
        .any(|m| m.headline.as_ref().is_some_and(|h| !h.left_out.is_empty()));
    let mut header = vec!["method", "items", "table", "accuracy", "F1", "ToolHall"];
    if left_out {
        header.push("left out");
    }
    header.extend(["invalid", "tokens in/out", "cost"]);
    let rows: Vec<Vec<String>> = report
        .methods
        .iter()
        .map(|m| method_row(m, left_out))
        .collect();
    out.push_str(&table(&header, &rows));
    let sweeps: Vec<Vec<String>> = report
        .methods
        .iter()
        .filter_map(|m| Some((m, m.stability.as_ref()?)))
        .map(|(m, st)| {
            vec![
                m.namespace.clone(),
                f1(Some(st.stability_at_k)),
                f1(Some(st.mean_consistency_at_k)),
                pct(Some(st.stable_correct)),
                pct(Some(st.mean_flip_rate)),
                format!(
                    "{} ({}–{})",
                    pct(Some(st.mean_accuracy_across_runs)),
                    pct(Some(st.accuracy_ci95.0)),
                    pct(Some(st.accuracy_ci95.1))
                ),
            ]
        })
        .collect();
    if !sweeps.is_empty() {
        // The sweeps of one config share K: name it in the headers.
        let ks: Vec<usize> = report
            .methods
            .iter()
            .filter_map(|m| Some(m.stability.as_ref()?.k))
            .collect();
        let k = match ks.first() {
            Some(&k) if ks.iter().all(|&x| x == k) => k.to_string(),
            _ => "k".into(),
        };
        out.push('\n');
        out.push_str(&table(
            &[
                "sweep",
                &format!("Stability@{k}"),
                &format!("MeanCons@{k}"),
                "StableCorrect",
                "flip rate",
                "accuracy (95% CI)",
            ],
            &sweeps,
        ));
    }
    let mut notes = vec![
        "F1 and ToolHall as the paper's table in `table` defines them; `w2c report --wide`: w2c's own metrics too"
            .to_string(),
    ];
    notes.extend(crate::headline::legend(
        report
            .methods
            .iter()
            .filter_map(|m| Some((m.namespace.clone(), m.headline.as_ref()?))),
    ));
    if report.methods.iter().any(|m| m.stability.is_some()) {
        notes.push("a sweep's row scores each example's mode prediction".into());
    }
    if let Some(m) = report.methods.iter().find(|m| m.repeats > 1) {
        notes.push(format!(
            "items ({}×{}) = {} examples × {} repeats",
            m.total / m.repeats,
            m.repeats,
            m.total / m.repeats,
            m.repeats
        ));
    }
    if report.methods.iter().any(|m| {
        m.usage.cost_usd.is_none() && (m.usage.prompt_tokens > 0 || m.usage.completion_tokens > 0)
    }) {
        notes.push(
            "cost -: no price set for the model (add [prices.\"<model>\"] to the config)".into(),
        );
    }
    for n in notes {
        legend_line(&mut out, &n);
    }
    out
}

/// A legend line under a terminal table: indented, wrapped to fit 110
/// columns, continuation lines indented further.
fn legend_line(out: &mut String, text: &str) {
    for (i, line) in wrap(text, 104).iter().enumerate() {
        let _ = writeln!(out, "{}{line}", if i == 0 { "  " } else { "    " });
    }
}

fn method_row(m: &MethodSummary, left_out_column: bool) -> Vec<String> {
    let tokens = format!("{}/{}", m.usage.prompt_tokens, m.usage.completion_tokens);
    let items = items_text(m.done, m.total, m.repeats);
    let mut row = vec![m.namespace.clone(), items];
    match (&m.metrics, &m.headline) {
        (Some(x), Some(h)) => {
            row.extend([
                h.table.short().to_string(),
                pct(h.accuracy),
                f1(h.f1),
                pct(h.tool_hall),
            ]);
            if left_out_column {
                row.push(if h.left_out.is_empty() {
                    String::new()
                } else {
                    h.left_out_total().to_string()
                });
            }
            row.push(x.n_invalid.to_string());
        }
        _ => {
            row.push(String::new());
            row.push(if m.failed > 0 {
                format!("incomplete ({} failed)", m.failed)
            } else {
                "incomplete".into()
            });
            row.extend(std::iter::repeat_n(
                String::new(),
                3 + usize::from(left_out_column),
            ));
        }
    }
    row.extend([tokens, cost(m.usage.cost_usd)]);
    row
}

/// `text` cut into lines of at most `width` characters, at spaces where
/// it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let extra = usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && line.chars().count() + extra > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A count with thousands separators (`1,234,567`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders what a run will send (`w2c config check`): a row per namespace,
/// then the requests and cost per model.
pub fn estimate_table(estimates: &[crate::runner::estimate::StreamEstimate]) -> String {
    let rows: Vec<Vec<String>> = estimates
        .iter()
        .map(|e| {
            let mut requests = thousands(e.requests as u64);
            if !e.extra_requests.is_empty() {
                requests.push_str(&format!(" ({})", e.extra_requests));
            }
            vec![
                e.namespace.clone(),
                e.model.clone(),
                thousands(e.items as u64),
                requests,
                thousands(e.prompt_tokens),
                e.max_completion_tokens
                    .map_or_else(|| "unbounded".into(), thousands),
                cost(e.cost_usd),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "namespace",
            "model",
            "items",
            "requests",
            "prompt tokens",
            "completion ≤",
            "cost ≤",
        ],
        &rows,
    );
    out.push_str(&estimate_totals(estimates));
    out
}

/// One line per model of `estimates`: its requests, prompt tokens,
/// completion tokens at most and cost bound, summed over its namespaces
/// (and a campaign's sessions).
pub fn estimate_totals(estimates: &[crate::runner::estimate::StreamEstimate]) -> String {
    let mut out = String::new();
    let mut models: Vec<&str> = estimates.iter().map(|e| e.model.as_str()).collect();
    models.dedup();
    models.sort_unstable();
    models.dedup();
    for model in models {
        let of: Vec<_> = estimates.iter().filter(|e| e.model == model).collect();
        let requests: usize = of.iter().map(|e| e.requests).sum();
        let costs: Option<f64> = of.iter().map(|e| e.cost_usd).sum();
        let completion: Option<u64> = of.iter().map(|e| e.max_completion_tokens).sum();
        let _ = writeln!(
            out,
            "{model}: {} requests, ~{} prompt tokens, {}, {}",
            thousands(requests as u64),
            thousands(of.iter().map(|e| e.prompt_tokens).sum()),
            completion.map_or_else(
                || "completions unbounded (a request sends no max_tokens: the server's default applies)".into(),
                |c| format!("≤ {} completion tokens", thousands(c))
            ),
            match costs {
                Some(c) => format!("cost ≤ {}", cost(Some(c))),
                None if completion.is_none() => "no cost bound".to_string(),
                None => format!("no cost estimate (no [prices.\"{model}\"] in the config)"),
            }
        );
    }
    out
}

/// One-line status of a finished run; the command it suggests works from
/// `here` (see [`crate::command_hint`]).
pub fn run_status_line(report: &RunReport, here: &crate::command_hint::Here) -> String {
    let command = |verb: &str| crate::command_hint::for_session(verb, &report.session_dir, here);
    let resume = || crate::command_hint::resume(&report.session_dir, report.shard, here);
    if report.finalizing && report.status != RunStatus::Complete {
        return format!(
            "not finalized: some items have no result yet (the notes say which shards lack them); rerun those shards, then `{}`",
            command("finalize")
        );
    }
    match report.status {
        RunStatus::Complete => {
            let address = crate::store::address::display(&report.run_key, &report.fingerprint);
            match report.shard {
                Some(shard) => format!(
                    "complete: shard {shard} of session {address} at {}",
                    report.session_dir.display()
                ),
                None => format!(
                    "complete: session {address} at {}",
                    report.session_dir.display()
                ),
            }
        }
        RunStatus::Incomplete => format!(
            "incomplete: some items failed after their retries; run `{}` to retry them",
            resume()
        ),
        RunStatus::Interrupted => {
            let by = match report.stopped_by {
                Some(s) if s != crate::stop::StopSignal::Interrupt => format!(" by {}", s.name()),
                _ => String::new(),
            };
            format!(
                "interrupted{by}: progress is saved; continue with `{}`",
                resume()
            )
        }
    }
}

/// A session as `w2c status` and `w2c ls` show it.
pub struct StatusRow {
    /// The session.
    pub session: FoundSession,
    /// Every namespace: the plan's, then any other it claimed.
    pub namespaces: Vec<crate::store::NamespaceCount>,
    /// PID of the process holding the session, if any.
    pub running_pid: Option<String>,
    /// The shards running on the session now, with their PIDs.
    pub running_shards: Vec<(crate::shard::Shard, String)>,
}

impl StatusRow {
    /// `running (PID n)`, `done` (every planned namespace finished) or
    /// `stopped`.
    fn state(&self) -> String {
        use crate::store::NamespaceState;
        let planned: Vec<_> = match self.namespaces.iter().any(|c| c.planned) {
            true => self.namespaces.iter().filter(|c| c.planned).collect(),
            false => self.namespaces.iter().collect(),
        };
        if !self.running_shards.is_empty() {
            let shards: Vec<String> = self
                .running_shards
                .iter()
                .map(|(s, pid)| format!("{s} PID {pid}"))
                .collect();
            return format!("running (shard {})", shards.join(", "));
        }
        match &self.running_pid {
            Some(pid) => format!("running (PID {pid})"),
            None if !planned.is_empty()
                && planned.iter().all(|c| c.state == NamespaceState::Done) =>
            {
                "done".into()
            }
            None => "stopped".into(),
        }
    }

    /// One line per namespace, indented: name, items, where it stands.
    fn namespace_lines(&self, out: &mut String) {
        use crate::store::NamespaceState;
        let width = self
            .namespaces
            .iter()
            .map(|c| c.namespace.chars().count())
            .max()
            .unwrap_or(0);
        let items_width = self
            .namespaces
            .iter()
            .map(|c| c.progress_text().chars().count())
            .max()
            .unwrap_or(0);
        for c in &self.namespaces {
            let state = match c.state {
                NamespaceState::Done => "done",
                NamespaceState::Partial => "not finished",
                NamespaceState::NotStarted => "not started",
            };
            let note = if c.planned || self.namespaces.iter().all(|x| !x.planned) {
                ""
            } else {
                "  (not in the latest run's plan)"
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:>items_width$}  {state}{note}",
                c.namespace,
                c.progress_text()
            );
            for s in &c.shards {
                let state = if s.marked_done || (s.total > 0 && s.done == s.total) {
                    "slice done"
                } else if self.running_shards.iter().any(|(r, _)| *r == s.shard) {
                    "running"
                } else if s.done == 0 {
                    "not started"
                } else {
                    "not finished"
                };
                let _ = writeln!(
                    out,
                    "    shard {:<w$}  {:>iw$}  {state}",
                    s.shard.to_string(),
                    format!("{}/{}", s.done, s.total),
                    w = width.saturating_sub(8),
                    iw = items_width,
                );
            }
        }
        if self.namespaces.is_empty() {
            let _ = writeln!(out, "  (no method started)");
        }
    }
}

/// The campaign a session belongs to, if it was run from `[[targets]]`.
pub fn session_campaign(manifest: &crate::store::Manifest) -> Option<&str> {
    manifest.config["run"]["campaign"].as_str()
}

/// The target model a session evaluates (from its fingerprint payload).
pub fn session_model(manifest: &crate::store::Manifest) -> &str {
    manifest.fingerprint_payload["target"]["model"]
        .as_str()
        .unwrap_or("?")
}

/// Renders `w2c status`: a line per session (run key/fingerprint, state,
/// model, MLflow, last update), its namespaces below it, then the session
/// directories that cannot be read.
pub fn status_table(rows: &[StatusRow], unreadable: &[UnreadableSession]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = &r.session.manifest;
            vec![
                r.session.address(),
                r.state(),
                session_model(m).to_string(),
                tracking_state(&r.session.dir),
                m.updated_at.clone(),
            ]
        })
        .collect();
    let header = ["session", "state", "model", "mlflow", "updated"];
    let mut out = String::new();
    if rows.is_empty() {
        unreadable_lines(unreadable, &mut out);
        return out;
    }
    let rendered = table(&header, &body);
    let mut lines = rendered.lines();
    for line in lines.by_ref().take(2) {
        let _ = writeln!(out, "{line}");
    }
    let mut campaign: Option<&str> = None;
    for (r, line) in rows.iter().zip(lines) {
        let this = session_campaign(&r.session.manifest);
        if this.is_some() && this != campaign {
            let _ = writeln!(out, "campaign {}:", this.unwrap_or_default());
        }
        campaign = this;
        let _ = writeln!(out, "{line}");
        r.namespace_lines(&mut out);
    }
    unreadable_lines(unreadable, &mut out);
    out
}

/// Renders `w2c ls`: sessions grouped by run key, each with its model,
/// examples and namespaces.
pub fn ls_listing(rows: &[StatusRow], unreadable: &[UnreadableSession]) -> String {
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for r in rows {
        let m = &r.session.manifest;
        if current != Some(m.run_key.as_str()) {
            current = Some(&m.run_key);
            let _ = writeln!(out, "{}", m.run_key);
        }
        let _ = writeln!(
            out,
            "  {}  {}  {}  {} examples  created {}",
            r.session.address(),
            r.state(),
            session_model(m),
            m.n_examples,
            m.created_at
        );
        let mut lines = String::new();
        r.namespace_lines(&mut lines);
        for line in lines.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    unreadable_lines(unreadable, &mut out);
    out
}

fn unreadable_lines(unreadable: &[UnreadableSession], out: &mut String) {
    for u in unreadable {
        let _ = writeln!(
            out,
            "{}/{}  UNREADABLE: {} (`w2c verify {}` reports it)",
            u.run_key,
            u.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            u.error,
            crate::store::address::of_dir(&u.dir).unwrap_or_else(|| u.dir.display().to_string())
        );
    }
}

/// The MLflow UI address of run `run_id` (a session's parent, or one of
/// its children) as `mlflow_ids.json` records it; `None` for an offline
/// session or one without that run yet.
pub fn mlflow_run_url(
    ids: &crate::tracking::ids::MlflowIds,
    run_id: Option<&str>,
) -> Option<String> {
    if ids.mode != crate::tracking::ids::Mode::Online {
        return None;
    }
    let uri = ids.tracking_uri.as_deref()?.trim_end_matches('/');
    Some(format!(
        "{uri}/#/experiments/{}/runs/{}",
        ids.experiment_id.as_deref()?,
        run_id?
    ))
}

/// One word on a session's MLflow mirror: `offline`, `synced`, or
/// `N pending` (run `w2c sync`).
pub fn tracking_state(session_dir: &std::path::Path) -> String {
    use crate::tracking::ids::{MlflowIds, Mode};
    match MlflowIds::load(session_dir) {
        Ok(ids) if ids.mode == Mode::Offline => "offline".into(),
        Ok(ids) if ids.synced => "synced".into(),
        Ok(ids) if ids.pending.is_empty() => "not synced".into(),
        Ok(ids) => {
            let (traces, other): (Vec<&String>, Vec<&String>) =
                ids.pending.iter().partition(|p| is_traces_line(p));
            let n_traces: usize = traces.iter().map(|p| traces_in_line(p)).sum();
            match (n_traces, other.len()) {
                (0, n) => format!("{n} pending"),
                (t, 0) => format!("traces pending ({t})"),
                (t, n) => format!("{n} pending, traces pending ({t})"),
            }
        }
        Err(_) => "unreadable".into(),
    }
}

/// Whether a pending line of `mlflow_ids.json` is about traces only.
pub fn is_traces_line(line: &str) -> bool {
    line.starts_with("traces: ")
}

/// How many traces a pending traces line counts (`traces: 12 not sent…`,
/// `traces: <ns>: 12 not sent…`; 0 when it gives no number).
pub fn traces_in_line(line: &str) -> usize {
    let rest = line.trim_start_matches("traces: ");
    rest.split_whitespace()
        .take(2)
        .find_map(|w| w.parse::<usize>().ok())
        .unwrap_or(0)
}

/// Renders `w2c verify` checks: a summary line (sessions, and checks per
/// status), then the checks that are not OK (every check when `verbose`),
/// then the verdict.
pub fn verify_table(checks: &[crate::verify::Check], verbose: bool) -> String {
    use crate::verify::Status;
    let status_name = |s: Status| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut sessions: Vec<&str> = checks.iter().map(|c| c.session.as_str()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    let order = [
        Status::Ok,
        Status::Mismatch,
        Status::Missing,
        Status::CannotCheck,
        Status::Pending,
        Status::NotChecked,
    ];
    let counts: Vec<String> = order
        .iter()
        .filter_map(|&st| {
            let n = checks.iter().filter(|c| c.status == st).count();
            (n > 0).then(|| format!("{n} {}", status_name(st)))
        })
        .collect();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut out = format!(
        "verify: {}, {}: {}\n",
        plural(sessions.len(), "session"),
        plural(checks.len(), "check"),
        counts.join(", ")
    );
    let shown: Vec<&crate::verify::Check> = checks
        .iter()
        .filter(|c| verbose || c.status != Status::Ok)
        .collect();
    if !shown.is_empty() {
        // Grouped by session; each check on a line (namespace, check,
        // status), its detail below it, one difference per line, wrapped.
        let ns_width = shown
            .iter()
            .map(|c| c.namespace.chars().count())
            .max()
            .unwrap_or(0);
        let check_width = shown
            .iter()
            .map(|c| c.check.chars().count())
            .max()
            .unwrap_or(0);
        let mut session: Option<&str> = None;
        for c in &shown {
            if session != Some(c.session.as_str()) {
                session = Some(&c.session);
                let _ = writeln!(out, "\n{}", c.session);
            }
            let _ = writeln!(
                out,
                "  {:<ns_width$}  {:<check_width$}  {}",
                c.namespace,
                c.check,
                status_name(c.status)
            );
            if verbose || c.status != Status::Ok {
                for part in c.detail.split("; ") {
                    for line in wrap(part, 100) {
                        let _ = writeln!(out, "      {line}");
                    }
                }
            }
        }
        out.push('\n');
    }
    let bad = checks
        .iter()
        .filter(|c| matches!(c.status, Status::Mismatch | Status::Missing))
        .count();
    let cannot = checks
        .iter()
        .filter(|c| c.status == Status::CannotCheck)
        .count();
    let pending = checks
        .iter()
        .filter(|c| c.status == Status::Pending)
        .count();
    out.push_str(&match (bad, cannot) {
        (0, 0) if pending > 0 => format!(
            "all checks passed but {pending} found work not sent to MLflow yet (`w2c sync` sends it)"
        ),
        (0, 0) => "all checks passed".to_string(),
        (0, n) => format!("no mismatch, but {n} checks could not be made"),
        (b, 0) => format!("{} failed", plural(b, "check")),
        (b, n) => format!("{} failed, {n} could not be made", plural(b, "check")),
    });
    if !verbose && checks.iter().any(|c| c.status == Status::Ok) {
        out.push_str(" (--verbose lists the OK checks too)");
    }
    out.push('\n');
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
    /// The headline numbers and the paper's table defining them.
    pub headline: crate::headline::Headline,
    /// The namespace's `metrics.json`.
    pub metrics: crate::store::MetricsFile,
    /// The namespace's artifacts directory.
    #[serde(skip)]
    pub artifacts: std::path::PathBuf,
    /// Wall time spent on the namespace over all its runs, seconds.
    pub wall_secs: f64,
    /// How far this namespace agrees with the session's other methods
    /// (Cohen's κ) or, for a sweep, its repeats with each other (Fleiss'
    /// κ); filled by `w2c report`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agreement: Vec<crate::comparison::Agreement>,
    /// Each rate as `k/n` with its Wilson 95% interval and binomial SE,
    /// named as `w2c compare` names it: the headline's first
    /// ([`crate::headline::rates`]).
    pub rates: Vec<(&'static str, crate::compare::Rate)>,
}

/// The finished namespaces (with a `_DONE.json` and `metrics.json`) of a session.
pub fn collect(found: &FoundSession) -> Vec<ReportEntry> {
    let session = found.address();
    let model = found.manifest.fingerprint_payload["target"]["model"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    crate::store::session::namespaces(&found.dir)
        .into_iter()
        .map(|(ns, _)| NamespaceDir::new(&found.dir, &ns))
        .filter(NamespaceDir::is_done)
        .filter_map(|dir| {
            crate::store::read_json::<crate::store::MetricsFile>(&dir.metrics())
                .ok()
                .map(|metrics| {
                    let protocol = crate::store::session::namespace_protocol(&dir, &metrics.method);
                    ReportEntry {
                        session: session.clone(),
                        model: model.clone(),
                        headline: crate::headline::of(&metrics, protocol.as_deref()),
                        rates: crate::headline::rates(&metrics),
                        wall_secs: crate::store::records::wall_secs(&dir.checkpoints),
                        namespace: dir.name,
                        metrics,
                        artifacts: dir.artifacts,
                        agreement: Vec::new(),
                    }
                })
        })
        .collect()
}

/// The columns of `w2c report`: who, then the headline (as the paper's
/// table in `table` defines it, over `n` rows, with the rows NVIDIA's
/// aggregate leaves out), then w2c's own metrics over every scored
/// example (`MC` marks the multiple-choice table's definitions).
const REPORT_HEADER: [&str; 24] = [
    "session",
    "model",
    "method",
    "n",
    "table",
    "accuracy",
    "F1",
    "ToolHall",
    "left out",
    "invalid",
    "unscored",
    "n(w2c)",
    "accuracy(w2c)",
    "acc_norm",
    "macro-F1(MC)",
    "macro-F1(gold)",
    "macro-F1(all4)",
    "ToolHall(MC)",
    "ToolHall(w2c)",
    "AnswerHall",
    "ParamHall",
    "tokens in/out",
    "cost",
    "wall s",
];

/// The columns of [`REPORT_HEADER`] a terminal report shows without
/// `--wide`: who, what, and the headline (`left out` only when a row
/// leaves rows out).
const HEADLINE_COLUMNS: [&str; 12] = [
    "session", "model", "method", "n", "table", "accuracy", "F1", "ToolHall", "left out",
    "invalid", "unscored", "cost",
];

fn report_rows(entries: &[ReportEntry]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            let m = &e.metrics.metrics;
            let u = &e.metrics.usage;
            let h = &e.headline;
            vec![
                e.session.clone(),
                e.model.clone(),
                e.namespace.clone(),
                h.n.to_string(),
                h.table.short().to_string(),
                pct(h.accuracy),
                f1(h.f1),
                pct(h.tool_hall),
                if h.left_out.is_empty() {
                    "-".into()
                } else {
                    h.left_out_total().to_string()
                },
                m.n_invalid.to_string(),
                // Only `mcq_logprob` and judges can leave examples unscored;
                // `n` and every rate are over the scored ones.
                e.metrics
                    .counts
                    .get("unscored")
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                m.n_total.to_string(),
                pct(Some(m.accuracy)),
                // Only `mcq_logprob` has acc_norm (the paper's set).
                e.metrics
                    .paper
                    .as_ref()
                    .map(|p| pct(Some(p.acc_norm)))
                    .unwrap_or_else(|| "-".into()),
                f1(m.macro_f1_official),
                f1(m.macro_f1_present),
                f1(Some(m.macro_f1_all)),
                pct(m.tool_hallucination_rate_official),
                pct(m.tool_hallucination_rate),
                pct(m.answer_hallucination_rate),
                pct(m.parameter_hallucination_rate),
                format!("{}/{}", u.prompt_tokens, u.completion_tokens),
                cost(u.cost_usd),
                format!("{:.1}", e.wall_secs),
            ]
        })
        .collect()
}

/// The rate table under a report's table: a row per namespace and rate —
/// its value, Wilson 95% interval, binomial SE in points and `k/n`, as
/// `w2c compare` prints a rate; the headline's rates only unless `all`
/// (then w2c's own too). The session is a column when there are several.
fn rate_rows(entries: &[ReportEntry], all: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let several = entries.iter().any(|e| e.session != entries[0].session);
    let mut header = if several { vec!["session"] } else { vec![] };
    header.extend(["method", "rate", "value [Wilson 95% CI] SE (k/n)"]);
    let rows = entries
        .iter()
        .flat_map(|e| {
            let shown = if all {
                e.rates.len()
            } else {
                crate::headline::HEADLINE_RATES
            };
            e.rates
                .iter()
                .take(shown)
                .enumerate()
                .map(move |(i, (name, r))| {
                    let mut row = if several {
                        vec![e.session.clone()]
                    } else {
                        vec![]
                    };
                    let display = match crate::comparison::short_name(name) {
                        "accuracy" if i >= crate::headline::HEADLINE_RATES => "accuracy (w2c)",
                        short => short,
                    };
                    row.extend([
                        e.namespace.clone(),
                        display.to_string(),
                        crate::comparison::rate_text(name, r),
                    ]);
                    row
                })
        })
        .collect();
    (header, rows)
}

/// What the rate table's numbers are.
const RATES_LEGEND: &str = "rates: k/n with a Wilson 95% interval and the binomial SE in points, as `w2c compare` prints them (docs/methods.md)";

/// A CSV (no quoted commas) as an aligned text table.
fn table_of_csv(csv: &str) -> String {
    let mut lines = csv
        .lines()
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>());
    let Some(header) = lines.next() else {
        return String::new();
    };
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, &lines.collect::<Vec<_>>())
}

/// The legend under a report's table: what the `table` names mean, each
/// namespace's caveat and rows left out, then NVIDIA's aggregate by gold
/// category for each namespace that has it.
pub(crate) fn report_legend(entries: &[ReportEntry]) -> Vec<String> {
    let mut out = crate::headline::legend(
        entries
            .iter()
            .map(|e| (format!("{} {}", e.session, e.namespace), &e.headline)),
    );
    out.extend(entries.iter().filter_map(|e| {
        let a = e.metrics.official_judge.as_ref()?;
        let categories: Vec<String> = a
            .categories
            .iter()
            .map(|(gold, c)| format!("{gold} {} of {}", pct(c.score), c.n))
            .collect();
        Some(format!(
            "{} {}: NVIDIA's aggregate, score by gold category: {}",
            e.session,
            e.namespace,
            categories.join(", ")
        ))
    }));
    out
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

/// Renders the report of several sessions side by side. A text report
/// shows the headline columns unless `wide` (Markdown, JSON and HTML always
/// have everything).
pub fn render(entries: &[ReportEntry], format: Format, wide: bool) -> anyhow::Result<String> {
    let rows = report_rows(entries);
    let legend = |out: &mut String| {
        for line in report_legend(entries) {
            legend_line(out, &line);
        }
    };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(entries)? + "\n",
        Format::Text if !wide => {
            let any_left_out = entries.iter().any(|e| !e.headline.left_out.is_empty());
            let keep: Vec<usize> = HEADLINE_COLUMNS
                .iter()
                .filter(|c| any_left_out || **c != "left out")
                .filter_map(|c| REPORT_HEADER.iter().position(|h| h == c))
                .collect();
            let header: Vec<&str> = keep.iter().map(|&i| REPORT_HEADER[i]).collect();
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
                .collect();
            let mut out = table(&header, &rows);
            legend_line(&mut out, "rates in %, F1 to 3 decimals, as the paper's table in `table` defines them; cost - = no price set; --wide: w2c's own metrics and the confusion matrices");
            legend(&mut out);
            let (header, rates) = rate_rows(entries, false);
            out.push('\n');
            out.push_str(&table(&header, &rates));
            legend_line(&mut out, RATES_LEGEND);
            out
        }
        Format::Text => {
            let mut out = table(&REPORT_HEADER, &rows);
            legend(&mut out);
            let (header, rates) = rate_rows(entries, true);
            out.push('\n');
            out.push_str(&table(&header, &rates));
            legend_line(&mut out, RATES_LEGEND);
            for e in entries {
                let _ = writeln!(out, "\n{} {} (rows = gold):", e.session, e.namespace);
                out.push_str(&table_of_csv(&confusion_csv(&e.metrics.metrics)));
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
            out.push('\n');
            for line in report_legend(entries) {
                let _ = writeln!(out, "- {line}");
            }
            let (header, rates) = rate_rows(entries, true);
            let _ = write!(
                out,
                "\n| {} |\n|{}\n",
                header.join(" | "),
                "---|".repeat(header.len())
            );
            for r in &rates {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
            let _ = writeln!(out, "\n- {RATES_LEGEND}");
            out
        }
        // The page reads predictions too: it is rendered from the sessions.
        Format::Html => anyhow::bail!("the HTML report is rendered from sessions (html_report)"),
    })
}

#[cfg(test)]
mod pending_tests {
    #[test]
    fn pending_trace_lines_are_counted_as_traces() {
        assert!(super::is_traces_line(
            "traces: 12 not sent when the run ended"
        ));
        assert!(!super::is_traces_line("mcq: artifacts: failed"));
        assert_eq!(
            super::traces_in_line("traces: 12 not sent when the run ended"),
            12
        );
        assert_eq!(
            super::traces_in_line("traces: mcq: 7 not sent when the finalizer ended"),
            7
        );
        assert_eq!(super::traces_in_line("traces: mcq: not sent yet"), 0);
    }
}
