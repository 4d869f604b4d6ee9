//! What a person watching a run sees of its progress: bars on a terminal
//! (one per namespace being run, one for the whole session), and plain
//! lines at an interval when stderr is a log (nohup, `tee`, a Slurm or
//! Kubernetes job log), as batch tools print them. It only reads the run's
//! [`Progress`]; the engine and runner never print.

use crate::outcome::{Progress, ProgressEvent};
use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// Bars redrawn in place (stderr is a terminal).
    Bars,
    /// A plain line per namespace every `every`, and at its start and end.
    Lines {
        /// Interval between lines.
        every: Duration,
    },
    /// Nothing.
    Off,
}

/// Default interval between progress lines in a log.
pub const DEFAULT_LINE_INTERVAL: Duration = Duration::from_secs(10);

/// The style from `W2C_PROGRESS` (`bars`, `lines`, `off`; default: bars on a
/// terminal, else lines) and `W2C_PROGRESS_INTERVAL_SECS` (lines only;
/// 0.1–86400, default 10). An unusable value is an error naming the variable.
pub fn style_from_env(
    stderr_is_terminal: bool,
    var: impl Fn(&str) -> Result<Option<String>>,
) -> Result<Style> {
    let every = match var("W2C_PROGRESS_INTERVAL_SECS")? {
        None => DEFAULT_LINE_INTERVAL,
        Some(v) => crate::secs::parse_in_range("W2C_PROGRESS_INTERVAL_SECS", &v, 0.1..=86_400.0)
            .map_err(anyhow::Error::msg)?,
    };
    Ok(match var("W2C_PROGRESS")?.as_deref().map(str::trim) {
        None | Some("") if stderr_is_terminal => Style::Bars,
        None | Some("") => Style::Lines { every },
        Some("bars") => Style::Bars,
        Some("lines") => Style::Lines { every },
        Some("off") => Style::Off,
        Some(other) => bail!(
            "W2C_PROGRESS: {} is not a progress style: expected `bars`, `lines` or `off`",
            crate::redact::shown(other)
        ),
    })
}

/// A rate with a unit and a precision that fits its size: `313/s`,
/// `47.3/s`, `0.52/s`.
pub fn rate_text(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "-/s".into()
    } else if per_sec >= 100.0 {
        format!("{per_sec:.0}/s")
    } else if per_sec >= 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.2}/s")
    }
}

/// A duration as a person reads it: `850ms`, `42s`, `3m05s`, `2h07m`.
pub fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Time left for `remaining` items at `per_sec`, when a rate is known.
pub fn eta(remaining: usize, per_sec: f64) -> Option<Duration> {
    if remaining == 0 {
        return Some(Duration::ZERO);
    }
    (per_sec.is_finite() && per_sec > 0.0)
        .then(|| Duration::try_from_secs_f64(remaining as f64 / per_sec).ok())
        .flatten()
}

fn eta_text(remaining: usize, per_sec: f64) -> String {
    eta(remaining, per_sec).map_or_else(|| "?".into(), duration_text)
}

fn percent(done: usize, total: usize) -> String {
    if total == 0 {
        "100%".into()
    } else {
        format!("{:.0}%", done as f64 * 100.0 / total as f64)
    }
}

/// A snapshot of the counters, for one line or one redraw.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    done: usize,
    total: usize,
    failed: usize,
    rate: f64,
    session_done: usize,
    session_total: usize,
    session_rate: f64,
    session_elapsed: Duration,
}

impl Snapshot {
    fn of(p: &Progress) -> Snapshot {
        let per_sec = |n: usize, d: Duration| {
            let s = d.as_secs_f64();
            if s > 0.0 {
                n as f64 / s
            } else {
                0.0
            }
        };
        let session_elapsed = p.session_elapsed();
        Snapshot {
            done: p.done.load(Ordering::Relaxed),
            total: p.total.load(Ordering::Relaxed),
            failed: p.failed.load(Ordering::Relaxed),
            rate: per_sec(p.finished_here.load(Ordering::Relaxed), p.elapsed()),
            session_done: p.session_done.load(Ordering::Relaxed),
            session_total: p.session_total.load(Ordering::Relaxed),
            session_rate: per_sec(
                p.session_finished_here.load(Ordering::Relaxed),
                session_elapsed,
            ),
            session_elapsed,
        }
    }

    fn namespace_part(&self) -> String {
        let mut s = format!(
            "{}/{} items ({}), {}, eta {}",
            self.done,
            self.total,
            percent(self.done, self.total),
            rate_text(self.rate),
            eta_text(self.total.saturating_sub(self.done), self.rate)
        );
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        s
    }

    fn session_part(&self) -> String {
        format!(
            "session {}/{} ({}), elapsed {}, eta {}",
            self.session_done,
            self.session_total,
            percent(self.session_done, self.session_total),
            duration_text(self.session_elapsed),
            eta_text(
                self.session_total.saturating_sub(self.session_done),
                self.session_rate
            )
        )
    }
}

/// The line printed when a namespace's pass ends.
fn ended_line(e: &ProgressEvent) -> Option<String> {
    let ProgressEvent::NamespaceEnded {
        name,
        done,
        total,
        failed,
        finished_here,
        elapsed,
    } = e
    else {
        return None;
    };
    let rate = *finished_here as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut line = format!(
        "{name}: {} {done}/{total} items, {finished_here} in {} ({})",
        if done == total {
            "finished"
        } else {
            "stopped at"
        },
        duration_text(*elapsed),
        rate_text(rate)
    );
    if *failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    Some(line)
}

/// A running progress display; [`ProgressView::finish`] ends it.
pub struct ProgressView {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressView {
    /// Starts showing the progress of one or more sessions run at once
    /// (a campaign's targets, each labelled with its model) in `style` on
    /// stderr.
    pub fn start(sessions: Vec<(String, Arc<Progress>)>, style: Style) -> ProgressView {
        let stop = CancellationToken::new();
        let task = match style {
            Style::Off => None,
            Style::Bars if sessions.len() == 1 => {
                let progress = sessions.into_iter().next().map(|(_, p)| p);
                progress.map(|p| tokio::spawn(bars(p, stop.clone())))
            }
            Style::Bars => Some(tokio::spawn(session_bars(sessions, stop.clone()))),
            Style::Lines { every } => Some(tokio::spawn(lines(sessions, every, stop.clone()))),
        };
        ProgressView { stop, task }
    }

    /// Shows what is left to show (the last namespace's end) and stops.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Plain lines: one when a namespace starts and ends, and one every
/// `every` while it runs; each prefixed with its session's label when
/// several sessions run.
async fn lines(sessions: Vec<(String, Arc<Progress>)>, every: Duration, stop: CancellationToken) {
    let tick = every.min(Duration::from_millis(200));
    let prefix: Vec<String> = sessions
        .iter()
        .map(|(label, _)| {
            if sessions.len() > 1 {
                format!("[{label}] ")
            } else {
                String::new()
            }
        })
        .collect();
    let mut current: Vec<Option<String>> = vec![None; sessions.len()];
    let mut last_line = vec![tokio::time::Instant::now(); sessions.len()];
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(tick) => false,
        };
        for (i, (_, progress)) in sessions.iter().enumerate() {
            let pre = &prefix[i];
            for event in progress.drain_events() {
                match &event {
                    ProgressEvent::SessionStarted {
                        namespaces,
                        total,
                        done,
                    } => eprintln!(
                        "{pre}session: {} namespaces, {done}/{total} items done ({})",
                        namespaces.len(),
                        namespaces.join(", ")
                    ),
                    ProgressEvent::NamespaceStarted { name, total, done } => {
                        eprintln!("{pre}{name}: started, {done}/{total} items done");
                        current[i] = Some(name.clone());
                        last_line[i] = tokio::time::Instant::now();
                    }
                    ProgressEvent::NamespaceEnded { .. } => {
                        if let Some(line) = ended_line(&event) {
                            eprintln!("{pre}{line}");
                        }
                        current[i] = None;
                    }
                }
            }
            if stopping {
                continue;
            }
            if let Some(name) = &current[i] {
                if last_line[i].elapsed() >= every {
                    let snap = Snapshot::of(progress);
                    eprintln!(
                        "{pre}{name}: {} | {}",
                        snap.namespace_part(),
                        snap.session_part()
                    );
                    last_line[i] = tokio::time::Instant::now();
                }
            }
        }
        if stopping {
            break;
        }
    }
}

/// The style of every bar: a label padded to `width`, the bar, done/total
/// and a message.
fn bar_style(width: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:<{width}}} [{{bar:30}}] {{pos:>7}}/{{len:<7}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Bars for several sessions run at once: one per session, saying which
/// namespace it is in.
async fn session_bars(sessions: Vec<(String, Arc<Progress>)>, stop: CancellationToken) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let width = sessions
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let style = bar_style(width);
    let bars: Vec<ProgressBar> = sessions
        .iter()
        .map(|(label, _)| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(label.clone());
            bar
        })
        .collect();
    let mut current: Vec<String> = vec![String::new(); sessions.len()];
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(100)) => false,
        };
        for (i, (label, progress)) in sessions.iter().enumerate() {
            for event in progress.drain_events() {
                match &event {
                    ProgressEvent::SessionStarted { total, .. } => {
                        bars[i].set_length(*total as u64)
                    }
                    ProgressEvent::NamespaceStarted { name, .. } => current[i] = name.clone(),
                    ProgressEvent::NamespaceEnded { .. } => {
                        if let Some(line) = ended_line(&event) {
                            let _ = multi.println(format!("[{label}] {line}"));
                        }
                    }
                }
            }
            let snap = Snapshot::of(progress);
            bars[i].set_position(snap.session_done as u64);
            bars[i].set_message(format!(
                "{}  {}  eta {}",
                current[i],
                rate_text(snap.session_rate),
                eta_text(
                    snap.session_total.saturating_sub(snap.session_done),
                    snap.session_rate
                )
            ));
        }
        if stopping {
            break;
        }
    }
    for bar in &bars {
        bar.finish_and_clear();
    }
    let _ = multi.clear();
}

/// Bars redrawn in place: the current namespace and the whole session.
/// One namespace bar is reused from namespace to namespace (removing bars
/// from a multi-bar while printing above it leaves stale lines in some
/// terminals); a finished namespace leaves one line above the bars.
async fn bars(progress: Arc<Progress>, stop: CancellationToken) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let mut bars: Option<(ProgressBar, ProgressBar)> = None;
    let mut active = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(100)) => false,
        };
        for event in progress.drain_events() {
            match &event {
                ProgressEvent::SessionStarted {
                    namespaces, total, ..
                } => {
                    let width = namespaces
                        .iter()
                        .map(|n| n.chars().count())
                        .max()
                        .unwrap_or(0)
                        .max("session".len());
                    let ns = multi.add(ProgressBar::new(0));
                    ns.set_style(bar_style(width));
                    let session = multi.add(ProgressBar::new(*total as u64));
                    session.set_style(bar_style(width));
                    session.set_prefix("session");
                    bars = Some((ns, session));
                }
                ProgressEvent::NamespaceStarted { name, total, done } => {
                    if let Some((ns, _)) = &bars {
                        ns.set_prefix(name.clone());
                        ns.set_length(*total as u64);
                        ns.set_position(*done as u64);
                        ns.reset_eta();
                    }
                    active = true;
                }
                ProgressEvent::NamespaceEnded { .. } => {
                    active = false;
                    if let Some(line) = ended_line(&event) {
                        let _ = multi.println(line);
                    }
                }
            }
        }
        let snap = Snapshot::of(&progress);
        if let Some((ns, session)) = &bars {
            if active {
                ns.set_position(snap.done as u64);
                let mut msg = format!(
                    "{}  eta {}",
                    rate_text(snap.rate),
                    eta_text(snap.total.saturating_sub(snap.done), snap.rate)
                );
                if snap.failed > 0 {
                    msg.push_str(&format!("  {} failed", snap.failed));
                }
                ns.set_message(msg);
            }
            session.set_position(snap.session_done as u64);
            session.set_message(format!(
                "elapsed {}  eta {}",
                duration_text(snap.session_elapsed),
                eta_text(
                    snap.session_total.saturating_sub(snap.session_done),
                    snap.session_rate
                )
            ));
        }
        if stopping {
            break;
        }
    }
    if let Some((ns, session)) = bars {
        ns.finish_and_clear();
        session.finish_and_clear();
    }
    let _ = multi.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_a_unit_and_a_precision_that_fits() {
        assert_eq!(rate_text(47.3324), "47.3/s");
        assert_eq!(rate_text(313.49), "313/s");
        assert_eq!(rate_text(0.5234), "0.52/s");
        assert_eq!(rate_text(0.0), "-/s");
        assert_eq!(rate_text(f64::NAN), "-/s");
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration_text(Duration::from_millis(850)), "850ms");
        assert_eq!(duration_text(Duration::from_millis(42_300)), "42.3s");
        assert_eq!(duration_text(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration_text(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn eta_is_unknown_without_a_rate_and_zero_when_done() {
        assert_eq!(eta(10, 0.0), None);
        assert_eq!(eta(0, 0.0), Some(Duration::ZERO));
        assert_eq!(eta(100, 50.0), Some(Duration::from_secs(2)));
        assert_eq!(eta(usize::MAX, 1e-300), None);
    }

    #[test]
    fn style_follows_the_terminal_unless_the_environment_says_otherwise() {
        let none = |_: &str| Ok(None);
        assert_eq!(style_from_env(true, none).unwrap(), Style::Bars);
        assert_eq!(
            style_from_env(false, none).unwrap(),
            Style::Lines {
                every: DEFAULT_LINE_INTERVAL
            }
        );
        let env = |k: &str| {
            Ok(match k {
                "W2C_PROGRESS" => Some("lines".to_string()),
                "W2C_PROGRESS_INTERVAL_SECS" => Some("0.5".to_string()),
                _ => None,
            })
        };
        assert_eq!(
            style_from_env(true, env).unwrap(),
            Style::Lines {
                every: Duration::from_millis(500)
            }
        );
        let bad = |k: &str| Ok((k == "W2C_PROGRESS").then(|| "loud".to_string()));
        let err = style_from_env(true, bad).unwrap_err().to_string();
        assert!(err.contains("W2C_PROGRESS"), "{err}");
        let bad = |k: &str| Ok((k == "W2C_PROGRESS_INTERVAL_SECS").then(|| "0".to_string()));
        let err = format!("{:#}", style_from_env(false, bad).unwrap_err());
        assert!(err.contains("W2C_PROGRESS_INTERVAL_SECS"), "{err}");
    }

    #[test]
    fn an_ended_namespace_says_what_it_did() {
        let e = ProgressEvent::NamespaceEnded {
            name: "mcq".into(),
            done: 268,
            total: 270,
            failed: 2,
            finished_here: 100,
            elapsed: Duration::from_secs(4),
        };
        assert_eq!(
            ended_line(&e).unwrap(),
            "mcq: stopped at 268/270 items, 100 in 4.0s (25.0/s), 2 failed"
        );
    }
}
