//! Small self-contained SVG charts (no external assets): the confusion matrix
//! heatmap, per-class F1 bars and the distribution of per-example consistency
//! in stability sweeps. Used in `artifacts_local/<ns>/` and in HTML reports.

use crate::labels::Label;
use crate::metrics::Metrics;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A label on at most two lines (split at its first `_`), as SVG `tspan`s
/// centred on `x`: keeps column labels inside their cells.
fn two_lines(label: &str, x: f64, y: f64) -> String {
    let (a, b) = label.split_once('_').unwrap_or((label, ""));
    if b.is_empty() {
        format!(
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            y + 12.0,
            escape(a)
        )
    } else {
        format!(
            r#"<text x="{x}" y="{y}" text-anchor="middle"><tspan x="{x}">{}</tspan><tspan x="{x}" dy="12">{}</tspan></text>"#,
            escape(a),
            escape(b)
        )
    }
}

/// Confusion matrix heatmap: rows = gold, columns = predictions and
/// `invalid`, with both axes titled; column labels on two lines so that
/// none overlaps its neighbour.
pub fn confusion_svg(title: &str, m: &Metrics) -> String {
    let cols: Vec<&str> = Label::ALL
        .iter()
        .map(|l| l.as_str())
        .chain(["invalid"])
        .collect();
    let (cell, left, top) = (64.0, 140.0, 78.0);
    let width = left + cell * cols.len() as f64 + 10.0;
    let height = top + cell * 4.0 + 12.0;
    let max = m
        .confusion
        .values()
        .flat_map(|r| r.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11"><text x="4" y="16" font-size="13">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="36" text-anchor="middle" font-weight="bold">predicted</text>"#,
        left + cell * cols.len() as f64 / 2.0
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" font-weight="bold">gold</text>"#,
        top + cell * 2.0
    );
    for (j, c) in cols.iter().enumerate() {
        svg.push_str(&two_lines(
            c,
            left + cell * j as f64 + cell / 2.0,
            top - 26.0,
        ));
    }
    for (i, gold) in Label::ALL.iter().enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{gold}</text>"#,
            left - 6.0,
            y + cell / 2.0 + 4.0
        );
        for (j, c) in cols.iter().enumerate() {
            let n = m
                .confusion
                .get(gold.as_str())
                .and_then(|r| r.get(*c))
                .copied()
                .unwrap_or(0);
            let shade = (255.0 - 200.0 * n as f64 / max).round() as u8;
            let x = left + cell * j as f64;
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">{n}</text>"##,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Colours of the series of a grouped chart (one per model).
const SERIES: [&str; 8] = [
    "#4a7bd0", "#e07b39", "#3a9e5c", "#c94f7c", "#7a5cc9", "#b59a2f", "#3aa3b5", "#8c8c8c",
];

/// Grouped horizontal bars in [0, 1]: per group (a behaviour) one bar per
/// series (a model), with a legend above. Values missing for a series are
/// drawn as `n/a`.
pub fn grouped_bars_svg(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let (left, bar_w, bar_h, gap) = (150.0, 300.0, 14.0, 10.0);
    let legend_rows = series.len().div_ceil(3) as f64;
    let top = 26.0 + 16.0 * legend_rows + 6.0;
    let group_h = bar_h * series.len() as f64 + gap;
    let height = top + group_h * groups.len() as f64 + 6.0;
    let width = left + bar_w + 60.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11"><text x="4" y="16" font-size="13">{}</text>"#,
        escape(title)
    );
    for (k, (name, _)) in series.iter().enumerate() {
        let (col, row) = ((k % 3) as f64, (k / 3) as f64);
        let x = 4.0 + col * (width / 3.0);
        let y = 26.0 + 16.0 * row;
        // Legend names are cut to fit their third of the width.
        let shown: String = name.chars().take(24).collect();
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            SERIES[k % SERIES.len()],
            x + 14.0,
            y + 9.0,
            escape(&shown)
        );
    }
    for (g, group) in groups.iter().enumerate() {
        let y0 = top + group_h * g as f64;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + bar_h * series.len() as f64 / 2.0 + 4.0,
            escape(group)
        );
        for (k, (_, values)) in series.iter().enumerate() {
            let y = y0 + bar_h * k as f64;
            match values.get(g).copied().flatten() {
                Some(v) => {
                    let w = bar_w * v.clamp(0.0, 1.0);
                    let _ = write!(
                        svg,
                        r#"<rect x="{left}" y="{y}" width="{w}" height="{}" fill="{}"/><text x="{}" y="{}" font-size="10">{v:.3}</text>"#,
                        bar_h - 2.0,
                        SERIES[k % SERIES.len()],
                        left + w + 4.0,
                        y + bar_h - 4.0
                    );
                }
                None => {
                    let _ = write!(
                        svg,
                        r#"<text x="{}" y="{}" font-size="10">n/a</text>"#,
                        left + 4.0,
                        y + bar_h - 4.0
                    );
                }
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars in [0, 1] with labels.
fn bars_svg(title: &str, bars: &[(String, f64)]) -> String {
    let (left, bar_w, row) = (150.0, 300.0, 24.0);
    let height = 30.0 + row * bars.len() as f64 + 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11"><text x="4" y="16" font-size="13">{}</text>"#,
        left + bar_w + 60.0,
        escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let w = bar_w * v.clamp(0.0, 1.0);
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{y}" width="{w}" height="{}" fill="#4a7bd0"/><text x="{}" y="{}">{v:.3}</text>"##,
            left - 6.0,
            y + row / 2.0 + 2.0,
            escape(label),
            row - 6.0,
            left + w + 4.0,
            y + row / 2.0 + 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Per-class F1 bars (classes with support only).
pub fn per_class_f1_svg(title: &str, m: &Metrics) -> String {
    let bars: Vec<(String, f64)> = Label::ALL
        .iter()
        .filter_map(|l| m.per_class.get(l.as_str()))
        .zip(Label::ALL)
        .filter(|(c, _)| c.support > 0)
        .map(|(c, l)| (l.to_string(), c.f1))
        .collect();
    bars_svg(title, &bars)
}

/// Share of examples per consistency value (mode count / K) in a sweep.
pub fn consistency_svg(title: &str, consistencies: &[f64], k: usize) -> String {
    let n = consistencies.len().max(1) as f64;
    let bars: Vec<(String, f64)> = (1..=k.max(1))
        .map(|c| {
            let v = c as f64 / k.max(1) as f64;
            let share = consistencies
                .iter()
                .filter(|x| (**x - v).abs() < 1e-9)
                .count() as f64
                / n;
            (format!("consistency {c}/{k}"), share)
        })
        .collect();
    bars_svg(title, &bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Prediction;
    use crate::metrics::{compute, Scored};

    #[test]
    fn charts_are_wellformed_svg_with_the_counts() {
        let m = compute(&[
            Scored {
                gold: Label::ToolCall,
                pred: Prediction::Label(Label::ToolCall),
                has_tools: true,
            },
            Scored {
                gold: Label::CannotAnswer,
                pred: Prediction::Invalid,
                has_tools: false,
            },
        ]);
        let c = confusion_svg("mcq <test>", &m);
        assert!(c.starts_with("<svg") && c.ends_with("</svg>"));
        assert!(c.contains("mcq &lt;test&gt;"));
        assert_eq!(c.matches("<rect").count(), 20);
        let f = per_class_f1_svg("f1", &m);
        assert_eq!(f.matches("<rect").count(), 2);
        let s = consistency_svg("c", &[1.0, 0.5, 1.0], 2);
        assert!(s.contains("0.667") && s.contains("0.333"));
    }
}
