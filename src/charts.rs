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

/// Confusion matrix heatmap: rows = gold, columns = predictions and `invalid`.
pub fn confusion_svg(title: &str, m: &Metrics) -> String {
    let cols: Vec<&str> = Label::ALL
        .iter()
        .map(|l| l.as_str())
        .chain(["invalid"])
        .collect();
    let (cell, left, top) = (70.0, 130.0, 60.0);
    let width = left + cell * cols.len() as f64 + 10.0;
    let height = top + cell * 4.0 + 20.0;
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
    for (j, c) in cols.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + cell * j as f64 + cell / 2.0,
            top - 8.0,
            c
        );
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
