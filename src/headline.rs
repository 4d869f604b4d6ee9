//! The headline numbers of a finished namespace — accuracy, F1, ToolHall —
//! and which of the When2Call paper's tables defines them (pure logic: the
//! run summary, `w2c report` and the HTML report show a namespace through
//! it).
//!
//! The paper has two tables with different definitions:
//! - the **LLM-as-judge table** (F1, Acc, Tool Hall): NVIDIA's aggregate of
//!   the judge's classifications, `official_judge.paper` in `metrics.json`
//!   (only `llm_judge` under protocol `when2call` has it): F1 over the three
//!   gold categories, Tool Hall over every `cannot_answer` row, rows the
//!   aggregate cannot count left out;
//! - the **multiple-choice table** (macro-F1 as the official lm-eval task
//!   averages it, ToolHall as `additional_metrics.py` counts it: over the
//!   `cannot_answer` rows without tools).
//!
//! An `llm_judge` namespace under another protocol, and every sweep (whose
//! metrics score each example's mode prediction), has the multiple-choice
//! table's definitions applied to its labels — and says so: they are not
//! the paper's LLM-as-judge numbers.

use crate::compare::Rate;
use crate::store::MetricsFile;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which table of the paper defines a headline's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// The LLM-as-judge table: NVIDIA's aggregate.
    LlmJudge,
    /// The multiple-choice table's definitions.
    MultipleChoice,
}

impl Table {
    /// The short name a table cell shows.
    pub fn short(self) -> &'static str {
        match self {
            Table::LlmJudge => "judge",
            Table::MultipleChoice => "MC",
        }
    }

    /// What the short name means, for a legend.
    pub fn legend(self) -> &'static str {
        match self {
            Table::LlmJudge => "table judge: the paper's LLM-as-judge table, NVIDIA's aggregate (F1 over the 3 gold categories, Tool Hall over all cannot_answer rows)",
            Table::MultipleChoice => "table MC: the multiple-choice table's definitions (macro-F1 as lm-eval averages it, ToolHall over cannot_answer rows without tools)",
        }
    }
}

/// A namespace's headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// The table whose definitions the numbers follow.
    pub table: Table,
    /// Rows the numbers are over.
    pub n: usize,
    /// Accuracy (the judge table's Acc).
    pub accuracy: Option<f64>,
    /// Macro-F1 as `table` defines it.
    pub f1: Option<f64>,
    /// ToolHall as `table` defines it.
    pub tool_hall: Option<f64>,
    /// Rows NVIDIA's aggregate leaves out, by reason (judge table only).
    pub left_out: BTreeMap<String, usize>,
    /// Why an `llm_judge` namespace shows the multiple-choice table's
    /// definitions instead of the paper's LLM-as-judge numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_the_judge_table: Option<String>,
}

impl Headline {
    /// Rows left out, in all.
    pub fn left_out_total(&self) -> usize {
        self.left_out.values().sum()
    }

    /// `n (reason, reason)` of the rows left out; empty when none is.
    pub fn left_out_text(&self) -> String {
        if self.left_out.is_empty() {
            return String::new();
        }
        format!(
            "{} ({})",
            self.left_out_total(),
            self.left_out
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Whether namespace method `method` is a judge's (`llm_judge` or its
/// stability sweep).
pub fn is_judge(method: &str) -> bool {
    method == crate::methods::llm_judge::NAME || method.starts_with("stability_llm_judge")
}

/// The judge protocol recorded in a namespace's method settings: `w2c` for
/// a judge namespace from before protocols (its settings name none).
pub fn protocol_of(method: &str, settings: &Value) -> Option<String> {
    match settings["protocol"].as_str() {
        Some(p) => Some(p.to_string()),
        None => is_judge(method).then(|| "w2c".to_string()),
    }
}

/// The headline of a finished namespace from its `metrics.json` and the
/// judge protocol of its settings (`None` when unknown or not a judge).
pub fn of(file: &MetricsFile, protocol: Option<&str>) -> Headline {
    if let Some(a) = &file.official_judge {
        return Headline {
            table: Table::LlmJudge,
            n: a.n_aggregated,
            accuracy: a.paper.acc,
            f1: a.paper.f1,
            tool_hall: a.paper.tool_hall,
            left_out: a.left_out.clone(),
            not_the_judge_table: None,
        };
    }
    let m = &file.metrics;
    let not_the_judge_table = is_judge(&file.method).then(|| {
        if file.stability.is_some() {
            "NVIDIA's aggregate is of single judgements, not of a sweep's modes".to_string()
        } else {
            match protocol {
                Some(p) if p != "when2call" => format!(
                    "protocol `{p}` has no official aggregate (protocol `when2call` reproduces the paper's)"
                ),
                _ => "metrics.json has no official aggregate".to_string(),
            }
        }
    });
    Headline {
        table: Table::MultipleChoice,
        n: m.n_total,
        accuracy: Some(m.accuracy),
        f1: m.macro_f1_official,
        tool_hall: m.tool_hallucination_rate_official,
        left_out: BTreeMap::new(),
        not_the_judge_table,
    }
}

/// Each rate of a finished namespace as `k/n` with its Wilson interval and
/// binomial SE ([`Rate`]), named as `w2c compare` names its metrics: first
/// the headline's (accuracy and ToolHall as `table` defines them: the
/// judge table's from NVIDIA's aggregate, `judge_table_acc` over the rows
/// it counts and `judge_table_tool_hall` over its `cannot_answer` rows),
/// then w2c's own over every scored example (accuracy and the MC table's
/// ToolHall again only under the judge table), AnswerHall and ParamHall.
/// The first [`HEADLINE_RATES`] of them are the headline's.
pub fn rates(file: &MetricsFile) -> Vec<(&'static str, Rate)> {
    let m = &file.metrics;
    let of = |c: crate::metrics::RateCount| Rate::new(c.numerator, c.denominator);
    let mut out = Vec::new();
    let w2c_accuracy = ("accuracy", Rate::new(m.n_correct, m.n_total));
    let w2c_tool_hall = ("tool_hallucination_rate_official", of(m.tool_hallucination));
    if let Some(a) = &file.official_judge {
        let judged = |gold: &str, as_: &str| {
            a.categories
                .get(gold)
                .and_then(|c| c.response_distribution.get(as_))
                .copied()
                .unwrap_or(0)
        };
        let correct: usize = a.categories.keys().map(|g| judged(g, g)).sum();
        let cannot = crate::labels::Label::CannotAnswer.as_str();
        let n_cannot = a.categories.get(cannot).map_or(0, |c| c.n);
        out.push(("judge_table_acc", Rate::new(correct, a.n_aggregated)));
        out.push((
            "judge_table_tool_hall",
            Rate::new(judged(cannot, "tool_call"), n_cannot),
        ));
    }
    out.push(w2c_accuracy);
    out.push(w2c_tool_hall);
    out.push(("answer_hallucination_rate", of(m.answer_hallucination)));
    out.push((
        "parameter_hallucination_rate",
        of(m.parameter_hallucination),
    ));
    out
}

/// How many of [`rates`] are the headline's (accuracy and ToolHall).
pub const HEADLINE_RATES: usize = 2;

/// The legend lines under a table of headlines: what each table name
/// shown means, then each namespace's caveat and rows left out (`who`
/// names the row: a namespace, or a session and namespace).
pub fn legend<'a>(rows: impl IntoIterator<Item = (String, &'a Headline)>) -> Vec<String> {
    let rows: Vec<(String, &Headline)> = rows.into_iter().collect();
    let mut out = Vec::new();
    for table in [Table::LlmJudge, Table::MultipleChoice] {
        if rows.iter().any(|(_, h)| h.table == table) {
            out.push(table.legend().to_string());
        }
    }
    for (who, h) in &rows {
        if let Some(why) = &h.not_the_judge_table {
            out.push(format!(
                "{who}: the MC table's definitions over the judge's labels, not the paper's LLM-as-judge numbers: {why}"
            ));
        }
        if !h.left_out.is_empty() {
            out.push(format!(
                "{who}: NVIDIA's aggregate counts {} rows and leaves out {}",
                h.n,
                h.left_out_text()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge_protocol::aggregate::{aggregate, OfficialAggregate};
    use crate::judge_protocol::OfficialJudgement;
    use crate::labels::{Label, Prediction};

    fn file(method: &str, official: Option<OfficialAggregate>) -> MetricsFile {
        let rows = [
            (Label::ToolCall, Label::ToolCall, true),
            (Label::CannotAnswer, Label::ToolCall, false),
            (Label::CannotAnswer, Label::CannotAnswer, true),
        ];
        let scored: Vec<_> = rows
            .iter()
            .map(|&(gold, pred, has_tools)| crate::metrics::Scored {
                gold,
                pred: Prediction::Label(pred),
                has_tools,
            })
            .collect();
        MetricsFile {
            method: method.into(),
            namespace: method.into(),
            settings_hash: String::new(),
            fingerprint: String::new(),
            n_examples: 3,
            metrics: crate::metrics::compute(&scored),
            usage: Default::default(),
            counts: Default::default(),
            audit: Default::default(),
            stability: None,
            variants: None,
            paper: None,
            official_judge: official,
        }
    }

    /// NVIDIA's aggregate of four judged rows: a right tool call, a
    /// cannot_answer row judged a tool call and one judged right, and a
    /// direct-gold row (which the aggregate leaves out).
    fn four_judged_rows() -> OfficialAggregate {
        let class = |c: &str| OfficialJudgement::Classified {
            classification: c.into(),
        };
        let rows = [
            (Label::ToolCall, class("tool_call")),
            (Label::CannotAnswer, class("tool_call")),
            (Label::CannotAnswer, class("cannot_answer")),
            (Label::Direct, class("direct_answer")),
        ];
        aggregate(rows.iter().map(|(g, j)| (*g, j)))
    }

    #[test]
    fn a_judge_with_the_official_aggregate_heads_with_the_papers_judge_columns() {
        let a = four_judged_rows();
        let h = of(&file("llm_judge", Some(a.clone())), Some("when2call"));
        assert_eq!(h.table, Table::LlmJudge);
        assert_eq!((h.n, h.accuracy, h.f1), (3, a.paper.acc, a.paper.f1));
        // Tool Hall over every cannot_answer row (one of two), not only
        // those without tools (the MC definition: one of one).
        assert_eq!(h.tool_hall, Some(0.5));
        assert_eq!(h.left_out_text(), "1 (1 direct_gold)");
        assert!(legend([("llm_judge".to_string(), &h)])
            .iter()
            .any(|l| l.contains("leaves out 1 (1 direct_gold)")));
    }

    #[test]
    fn rates_count_the_headlines_numerators_and_denominators() {
        let a = four_judged_rows();
        let judge = rates(&file("llm_judge", Some(a)));
        let names: Vec<&str> = judge.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names[..HEADLINE_RATES],
            ["judge_table_acc", "judge_table_tool_hall"]
        );
        let kn = |r: &Rate| (r.k, r.n);
        assert_eq!(kn(&judge[0].1), (2, 3));
        assert_eq!(kn(&judge[1].1), (1, 2));
        // ToolHall (MC): the one cannot_answer row without tools, called.
        let mcq = rates(&file("mcq", None));
        assert_eq!(mcq[0].0, "accuracy");
        assert_eq!(kn(&mcq[0].1), (2, 3));
        assert_eq!(mcq[1].0, "tool_hallucination_rate_official");
        assert_eq!((kn(&mcq[1].1), mcq[1].1.value), ((1, 1), Some(1.0)));
        assert_eq!(mcq.len(), 4);
        assert_eq!(judge.len(), 6);
    }

    #[test]
    fn other_protocols_and_sweeps_say_they_are_not_the_judge_table() {
        let h = of(&file("llm_judge", None), Some("python-suite"));
        assert_eq!(h.table, Table::MultipleChoice);
        assert_eq!(h.tool_hall, Some(1.0));
        assert!(h
            .not_the_judge_table
            .as_deref()
            .is_some_and(|w| w.contains("`python-suite`")));
        let mcq = of(&file("mcq", None), None);
        assert_eq!(mcq.not_the_judge_table, None);
        let lines = legend([("mcq".to_string(), &mcq), ("llm_judge".to_string(), &h)]);
        assert!(lines[0].starts_with("table MC: "), "{lines:?}");
        assert!(lines[1].contains("not the paper's LLM-as-judge numbers"));
        assert_eq!(
            protocol_of("llm_judge", &serde_json::json!({})),
            Some("w2c".into())
        );
        assert_eq!(protocol_of("mcq", &serde_json::json!({})), None);
    }
}
