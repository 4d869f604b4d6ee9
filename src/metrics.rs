//! Classification metrics for When2Call predictions (pure, no I/O).
//!
//! Invalid predictions are never coerced into a class: they are wrong for
//! every gold label, a false negative for their gold class and a false
//! positive for none.
//!
//! Two macro-F1s are w2c's (over the labels present in gold, and over all
//! four); one is the official When2Call task's (`macro_f1_official`, over
//! the labels in gold or predicted, as sklearn's `f1_score(average="macro")`
//! averages). ToolHall, AnswerHall and ParamHall are w2c's rates; the
//! official `additional_metrics.py` hallucination rate
//! (`tool_hallucination_rate_official`) counts the same events as ToolHall
//! but is 0, not null, when no example qualifies.

use crate::labels::{Label, Prediction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One scored example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    /// Gold label.
    pub gold: Label,
    /// Prediction.
    pub pred: Prediction,
    /// Whether the example offered at least one tool.
    pub has_tools: bool,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// TP / (TP + FP), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// TP / support, 0 when the support is 0.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Gold examples of this class.
    pub support: usize,
    /// Predictions of this class.
    pub predicted: usize,
}

/// Numerator and denominator of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCount {
    /// Events.
    pub numerator: usize,
    /// Opportunities.
    pub denominator: usize,
}

impl RateCount {
    /// The rate, or `None` when the denominator is 0.
    pub fn rate(self) -> Option<f64> {
        (self.denominator > 0).then(|| self.numerator as f64 / self.denominator as f64)
    }
}

/// All metrics of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Examples scored.
    pub n_total: usize,
    /// Correct predictions.
    pub n_correct: usize,
    /// `invalid` predictions.
    pub n_invalid: usize,
    /// n_correct / n_total; 0.0 when there are no examples.
    pub accuracy: f64,
    /// Mean F1 over the labels that occur in gold; `None` without examples.
    pub macro_f1_present: Option<f64>,
    /// Mean F1 over all four labels (a label without support has F1 0).
    pub macro_f1_all: f64,
    /// Per-class metrics keyed by label name, all four labels.
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// Rows = gold label, columns = the four labels and `invalid`.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// ToolHall: gold cannot_answer without tools, predicted tool_call.
    pub tool_hallucination_rate: Option<f64>,
    /// AnswerHall: predicted direct where gold is not direct, over all.
    pub answer_hallucination_rate: Option<f64>,
    /// ParamHall: gold request_for_info, predicted tool_call.
    pub parameter_hallucination_rate: Option<f64>,
    /// Counts behind ToolHall.
    pub tool_hallucination: RateCount,
    /// Counts behind AnswerHall.
    pub answer_hallucination: RateCount,
    /// Counts behind ParamHall.
    pub parameter_hallucination: RateCount,
    /// The official task's `macro_f1`: mean F1 over the labels that occur
    /// in gold or among the predictions (sklearn's macro average, lm-eval's
    /// convention); an `invalid` prediction is a miss, not a label. `None`
    /// without examples, and in a metrics.json written before w2c had it.
    #[serde(default)]
    pub macro_f1_official: Option<f64>,
    /// The official `additional_metrics.py` hallucination rate: gold
    /// `cannot_answer` with no tools, predicted `tool_call` — ToolHall's
    /// events — but 0.0 when no example qualifies. `None` only in a
    /// metrics.json written before w2c had it.
    #[serde(default)]
    pub tool_hallucination_rate_official: Option<f64>,
}

impl Metrics {
    /// The official When2Call metrics this set has, in a stable order
    /// (`None` when a metrics.json predates them).
    pub fn official(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("macro_f1_official", self.macro_f1_official),
            (
                "tool_hallucination_rate_official",
                self.tool_hallucination_rate_official,
            ),
        ]
    }

    /// The scalar metrics in a stable order, for tables and tracking.
    pub fn headline(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("accuracy", Some(self.accuracy)),
            ("macro_f1_present", self.macro_f1_present),
            ("macro_f1_all", Some(self.macro_f1_all)),
            ("tool_hallucination_rate", self.tool_hallucination_rate),
            ("answer_hallucination_rate", self.answer_hallucination_rate),
            (
                "parameter_hallucination_rate",
                self.parameter_hallucination_rate,
            ),
        ]
    }
}

/// The When2Call paper's MCQ metric set, as the official lm-eval task
/// (`acc`, `acc_norm`, `macro_f1`) and `additional_metrics.py` (the
/// hallucination rate) report it: for a method that scores both `acc` and
/// `acc_norm` predictions (`mcq_logprob`). `macro_f1` and the rate are over
/// the `acc` predictions (the argmax of the summed log-probabilities), as
/// the official per-sample `macro_f1` pair holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperMetrics {
    /// Examples scored.
    pub n: usize,
    /// Accuracy of the `acc` predictions.
    pub acc: f64,
    /// Accuracy of the `acc_norm` predictions (log-probability per
    /// character of the choice).
    pub acc_norm: f64,
    /// [`Metrics::macro_f1_official`] of the `acc` predictions.
    pub macro_f1: Option<f64>,
    /// [`Metrics::tool_hallucination_rate_official`] of the `acc` predictions.
    pub tool_hallucination_rate: Option<f64>,
}

impl PaperMetrics {
    /// The set from the `acc` and `acc_norm` variants' metrics.
    pub fn new(acc: &Metrics, acc_norm: &Metrics) -> PaperMetrics {
        PaperMetrics {
            n: acc.n_total,
            acc: acc.accuracy,
            acc_norm: acc_norm.accuracy,
            macro_f1: acc.macro_f1_official,
            tool_hallucination_rate: acc.tool_hallucination_rate_official,
        }
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Computes every metric over `items`.
pub fn compute(items: &[Scored]) -> Metrics {
    // cm[gold][pred], pred index 4 = invalid.
    let mut cm = [[0usize; 5]; 4];
    let mut tool_hall = RateCount {
        numerator: 0,
        denominator: 0,
    };
    let mut answer_hall = RateCount {
        numerator: 0,
        denominator: items.len(),
    };
    let mut param_hall = RateCount {
        numerator: 0,
        denominator: 0,
    };
    for it in items {
        let col = it.pred.label().map(Label::index).unwrap_or(4);
        cm[it.gold.index()][col] += 1;
        let pred = it.pred.label();
        if it.gold == Label::CannotAnswer && !it.has_tools {
            tool_hall.denominator += 1;
            if pred == Some(Label::ToolCall) {
                tool_hall.numerator += 1;
            }
        }
        if pred == Some(Label::Direct) && it.gold != Label::Direct {
            answer_hall.numerator += 1;
        }
        if it.gold == Label::RequestForInfo {
            param_hall.denominator += 1;
            if pred == Some(Label::ToolCall) {
                param_hall.numerator += 1;
            }
        }
    }
    let n_total = items.len();
    let n_correct: usize = (0..4).map(|i| cm[i][i]).sum();
    let n_invalid: usize = (0..4).map(|i| cm[i][4]).sum();
    let mut per_class = BTreeMap::new();
    let mut confusion = BTreeMap::new();
    let mut f1_all = 0.0;
    let mut f1_present = Vec::new();
    let mut f1_official = Vec::new();
    for label in Label::ALL {
        let c = label.index();
        let tp = cm[c][c];
        let support: usize = cm[c].iter().sum();
        let predicted: usize = (0..4).map(|g| cm[g][c]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        f1_all += f1;
        if support > 0 {
            f1_present.push(f1);
        }
        if support > 0 || predicted > 0 {
            f1_official.push(f1);
        }
        per_class.insert(
            label.as_str().to_string(),
            ClassMetrics {
                precision,
                recall,
                f1,
                support,
                predicted,
            },
        );
        let mut row = BTreeMap::new();
        for (col, name) in Label::ALL
            .iter()
            .map(|l| l.as_str())
            .chain(["invalid"])
            .enumerate()
        {
            row.insert(name.to_string(), cm[c][col]);
        }
        confusion.insert(label.as_str().to_string(), row);
    }
    Metrics {
        n_total,
        n_correct,
        n_invalid,
        accuracy: ratio(n_correct, n_total),
        macro_f1_present: (!f1_present.is_empty())
            .then(|| f1_present.iter().sum::<f64>() / f1_present.len() as f64),
        macro_f1_all: f1_all / 4.0,
        per_class,
        confusion,
        tool_hallucination_rate: tool_hall.rate(),
        answer_hallucination_rate: answer_hall.rate(),
        parameter_hallucination_rate: param_hall.rate(),
        tool_hallucination: tool_hall,
        answer_hallucination: answer_hall,
        parameter_hallucination: param_hall,
        macro_f1_official: (!f1_official.is_empty())
            .then(|| f1_official.iter().sum::<f64>() / f1_official.len() as f64),
        tool_hallucination_rate_official: Some(tool_hall.rate().unwrap_or(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::*;

    fn s(gold: Label, pred: Option<Label>, has_tools: bool) -> Scored {
        Scored {
            gold,
            pred: pred.map(Prediction::Label).unwrap_or(Prediction::Invalid),
            has_tools,
        }
    }

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// 12 items, hand-computed:
    /// gold T: T, T, R, invalid          (support 4)
    /// gold R: R, T, D                   (support 3)
    /// gold C: T (no tools), C (no tools), invalid, C   (support 4)
    /// gold D: D                         (support 1)
    /// correct = 2 + 1 + 2 + 1 = 6 → accuracy 0.5
    /// predicted: T 4, R 2, C 2, D 2, invalid 2
    /// T: P 2/4, R 2/4, F1 0.5
    /// R: P 1/2, R 1/3, F1 (2·½·⅓)/(½+⅓) = 0.4
    /// C: P 2/2, R 2/4, F1 2/3
    /// D: P 1/2, R 1/1, F1 2/3
    /// macro (all 4 present) = (0.5 + 0.4 + 2/3 + 2/3) / 4
    /// ToolHall = 1/2 (C without tools: items predicted T and C)
    /// AnswerHall = 1/12 (gold R predicted D)
    /// ParamHall = 1/3 (gold R predicted T)
    fn mixed() -> Vec<Scored> {
        vec![
            s(ToolCall, Some(ToolCall), true),
            s(ToolCall, Some(ToolCall), true),
            s(ToolCall, Some(RequestForInfo), true),
            s(ToolCall, None, true),
            s(RequestForInfo, Some(RequestForInfo), true),
            s(RequestForInfo, Some(ToolCall), true),
            s(RequestForInfo, Some(Direct), true),
            s(CannotAnswer, Some(ToolCall), false),
            s(CannotAnswer, Some(CannotAnswer), false),
            s(CannotAnswer, None, true),
            s(CannotAnswer, Some(CannotAnswer), true),
            s(Direct, Some(Direct), false),
        ]
    }

    #[test]
    fn mixed_case_matches_hand_computation() {
        let m = compute(&mixed());
        assert_eq!((m.n_total, m.n_correct, m.n_invalid), (12, 6, 2));
        approx(m.accuracy, 0.5);
        let pc = |l: Label| m.per_class[l.as_str()].clone();
        approx(pc(ToolCall).precision, 0.5);
        approx(pc(ToolCall).recall, 0.5);
        approx(pc(ToolCall).f1, 0.5);
        approx(pc(RequestForInfo).precision, 0.5);
        approx(pc(RequestForInfo).recall, 1.0 / 3.0);
        approx(pc(RequestForInfo).f1, 0.4);
        approx(pc(CannotAnswer).precision, 1.0);
        approx(pc(CannotAnswer).recall, 0.5);
        approx(pc(CannotAnswer).f1, 2.0 / 3.0);
        approx(pc(Direct).precision, 0.5);
        approx(pc(Direct).recall, 1.0);
        approx(pc(Direct).f1, 2.0 / 3.0);
        assert_eq!(pc(ToolCall).support, 4);
        assert_eq!(pc(ToolCall).predicted, 4);
        let macro_all = (0.5 + 0.4 + 2.0 / 3.0 + 2.0 / 3.0) / 4.0;
        approx(m.macro_f1_all, macro_all);
        approx(m.macro_f1_present.unwrap(), macro_all);
        assert_eq!(m.confusion["tool_call"]["invalid"], 1);
        assert_eq!(m.confusion["cannot_answer"]["invalid"], 1);
        assert_eq!(m.confusion["cannot_answer"]["tool_call"], 1);
        assert_eq!(m.confusion["request_for_info"]["direct"], 1);
        assert_eq!(m.confusion["direct"]["direct"], 1);
        assert_eq!(m.confusion["direct"]["invalid"], 0);
        approx(m.tool_hallucination_rate.unwrap(), 0.5);
        assert_eq!(
            m.tool_hallucination,
            RateCount {
                numerator: 1,
                denominator: 2
            }
        );
        approx(m.answer_hallucination_rate.unwrap(), 1.0 / 12.0);
        approx(m.parameter_hallucination_rate.unwrap(), 1.0 / 3.0);
        // Every label occurs in gold: the official macro-F1 is over all four.
        approx(m.macro_f1_official.unwrap(), macro_all);
        approx(m.tool_hallucination_rate_official.unwrap(), 0.5);
    }

    #[test]
    fn official_macro_f1_averages_over_labels_in_gold_or_predicted() {
        // sklearn.metrics.f1_score(gold, pred, average="macro") in Python
        // (scikit-learn 1.9.1) on the same labels gives 0.41666666666666663:
        // gold  = [T, T, R, C, C, C], pred = [T, D, R, T, C, R]
        // labels in either: D, T, R, C. F1: D 0, T 1/2, R 2/3, C 1/2.
        let m = compute(&[
            s(ToolCall, Some(ToolCall), true),
            s(ToolCall, Some(Direct), true),
            s(RequestForInfo, Some(RequestForInfo), true),
            s(CannotAnswer, Some(ToolCall), false),
            s(CannotAnswer, Some(CannotAnswer), true),
            s(CannotAnswer, Some(RequestForInfo), true),
        ]);
        approx(m.macro_f1_official.unwrap(), 0.41666666666666663);
        // Without any `direct` prediction it is the mean over gold labels...
        let m = compute(&[
            s(ToolCall, Some(ToolCall), true),
            s(RequestForInfo, Some(CannotAnswer), true),
            s(CannotAnswer, Some(CannotAnswer), true),
        ]);
        approx(m.macro_f1_official.unwrap(), m.macro_f1_present.unwrap());
        assert!(m.macro_f1_official != Some(m.macro_f1_all));
        // ...and an invalid prediction is a miss, not a fifth label.
        let m = compute(&[
            s(ToolCall, None, true),
            s(CannotAnswer, Some(CannotAnswer), true),
        ]);
        approx(m.macro_f1_official.unwrap(), 0.5);
        // No qualifying example: additional_metrics.py says 0.0, ToolHall null.
        assert_eq!(m.tool_hallucination_rate, None);
        assert_eq!(m.tool_hallucination_rate_official, Some(0.0));
    }

    #[test]
    fn invalid_is_wrong_even_for_cannot_answer_gold() {
        let m = compute(&[
            s(CannotAnswer, None, true),
            s(CannotAnswer, Some(CannotAnswer), true),
        ]);
        approx(m.accuracy, 0.5);
        approx(m.per_class["cannot_answer"].recall, 0.5);
        approx(m.per_class["cannot_answer"].precision, 1.0);
        assert_eq!(m.n_invalid, 1);
    }

    #[test]
    fn present_vs_all_labels_and_empty_denominators() {
        // All correct, no direct gold: macro over present labels is 1, over all four 0.75.
        let m = compute(&[
            s(ToolCall, Some(ToolCall), true),
            s(RequestForInfo, Some(RequestForInfo), true),
            s(CannotAnswer, Some(CannotAnswer), true),
        ]);
        approx(m.accuracy, 1.0);
        approx(m.macro_f1_present.unwrap(), 1.0);
        approx(m.macro_f1_all, 0.75);
        assert_eq!(
            m.tool_hallucination_rate, None,
            "no cannot_answer without tools"
        );
        approx(m.answer_hallucination_rate.unwrap(), 0.0);
        approx(m.parameter_hallucination_rate.unwrap(), 0.0);
        let m = compute(&[s(ToolCall, Some(ToolCall), true)]);
        assert_eq!(
            m.parameter_hallucination_rate, None,
            "no request_for_info gold"
        );
    }

    #[test]
    fn empty_input() {
        let m = compute(&[]);
        assert_eq!(m.n_total, 0);
        approx(m.accuracy, 0.0);
        assert_eq!(m.macro_f1_present, None);
        approx(m.macro_f1_all, 0.0);
        assert_eq!(m.tool_hallucination_rate, None);
        assert_eq!(m.answer_hallucination_rate, None);
        assert_eq!(m.parameter_hallucination_rate, None);
        assert_eq!(m.headline().len(), 6);
        assert_eq!(m.macro_f1_official, None);
        assert_eq!(m.tool_hallucination_rate_official, Some(0.0));
        // A metrics.json written before the official metrics still reads.
        let mut old = serde_json::to_value(&m).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("macro_f1_official");
        obj.remove("tool_hallucination_rate_official");
        let back: Metrics = serde_json::from_value(old).unwrap();
        assert_eq!(
            back.official(),
            vec![
                ("macro_f1_official", None),
                ("tool_hallucination_rate_official", None)
            ]
        );
    }
}
