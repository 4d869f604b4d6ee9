//! Exports of a finished namespace's metrics as files people open: the
//! confusion matrix and per-class scores as CSV, and the SVG charts. The
//! runner's finish step writes them next to `metrics.json`; `w2c report`
//! reads the same metrics.

use crate::labels::Label;
use crate::metrics::Metrics;
use crate::store::MetricsFile;

/// Every export of namespace `ns`'s metrics, by file name: the CSVs and the
/// charts, `consistency.svg` only for a sweep (from each example's
/// consistency).
pub fn files(
    ns: &str,
    m: &MetricsFile,
    consistencies: Option<&[f64]>,
) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("confusion_matrix.csv", confusion_csv(&m.metrics)),
        ("per_class.csv", per_class_csv(&m.metrics)),
        (
            "confusion_matrix.svg",
            crate::charts::confusion_svg(&format!("{ns}: confusion matrix"), &m.metrics),
        ),
        (
            "per_class_f1.svg",
            crate::charts::per_class_f1_svg(&format!("{ns}: F1 per class"), &m.metrics),
        ),
    ];
    if let Some(st) = &m.stability {
        out.push((
            "consistency.svg",
            crate::charts::consistency_svg(
                &format!("{ns}: consistency"),
                consistencies.unwrap_or(&[]),
                st.k,
            ),
        ));
    }
    out
}

/// The confusion matrix as CSV: rows = gold, columns = predictions and `invalid`.
pub fn confusion_csv(m: &Metrics) -> String {
    let cols: Vec<&str> = Label::ALL
        .iter()
        .map(|l| l.as_str())
        .chain(["invalid"])
        .collect();
    let mut out = format!("gold,{}\n", cols.join(","));
    for gold in Label::ALL {
        let row = m.confusion.get(gold.as_str());
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                row.and_then(|r| r.get(*c))
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        out.push_str(&format!("{},{}\n", gold, cells.join(",")));
    }
    out
}

/// Per-class precision, recall, F1, support and predicted counts as CSV.
pub fn per_class_csv(m: &Metrics) -> String {
    let mut out = String::from("label,precision,recall,f1,support,predicted\n");
    for label in Label::ALL {
        if let Some(c) = m.per_class.get(label.as_str()) {
            out.push_str(&format!(
                "{label},{},{},{},{},{}\n",
                c.precision, c.recall, c.f1, c.support, c.predicted
            ));
        }
    }
    out
}
