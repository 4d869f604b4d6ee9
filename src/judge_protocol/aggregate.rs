//! The official aggregate of protocol `when2call`
//! (`aggregate_llm_as_a_judge_results.py`): per gold category, the share of
//! rows whose `classification` equals the gold label (`score`) and the
//! count of each classification (`response_distribution`); and the columns
//! of the paper's LLM-as-judge table computed from it (F1, Acc, Tool Hall%).
//!
//! The script only knows the gold categories `tool_call`,
//! `request_for_info` and `cannot_answer` (the judge test file has no
//! `direct` rows): it raises `KeyError` on a `direct` gold, and divides by
//! zero for a category without rows. w2c leaves `direct` gold rows out
//! (counted in [`OfficialAggregate::left_out`]) and gives an empty category
//! a `null` score. Rows on which one of the scripts raises (see
//! [`super::OfficialJudgement`]) are left out too: the scripts would stop
//! there and print no aggregate at all.

use super::OfficialJudgement;
use crate::labels::{Label, Prediction};
use crate::metrics::Scored;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The gold categories of the script, in its order.
pub const CATEGORIES: [Label; 3] = [Label::ToolCall, Label::RequestForInfo, Label::CannotAnswer];

/// One gold category of the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// Rows of this gold label in the aggregate.
    pub n: usize,
    /// `sum(classification == gold) / n`, as the script computes it;
    /// `null` without rows (the script raises `ZeroDivisionError`).
    pub score: Option<f64>,
    /// How often each classification was given (the script's `Counter`).
    pub response_distribution: BTreeMap<String, usize>,
}

/// The columns of the paper's LLM-as-judge table (GPT-4o: F1 61.3, Acc
/// 61.3%, Tool Hall 26%), as fractions (the paper prints them ×100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperJudgeColumns {
    /// Macro-F1 over the three gold categories: per category, precision
    /// over every row judged with that label (whatever its gold), recall
    /// over its rows; a row judged `direct_answer` or anything else is a
    /// miss for its category. `null` without rows.
    pub f1: Option<f64>,
    /// Rows judged as their gold label, over all rows of the aggregate.
    pub acc: Option<f64>,
    /// `cannot_answer` rows judged `tool_call`, over all `cannot_answer`
    /// rows (with or without tools).
    pub tool_hall: Option<f64>,
}

/// `aggregate_llm_as_a_judge_results.py`'s output and the paper's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfficialAggregate {
    /// The script's output, by gold category.
    pub categories: BTreeMap<String, Category>,
    /// The paper's table columns.
    pub paper: PaperJudgeColumns,
    /// Rows in the aggregate.
    pub n_aggregated: usize,
    /// Rows left out, by reason: `direct_gold` (the script has no such
    /// category), `script_raises`, `not_reproducible`.
    pub left_out: BTreeMap<String, usize>,
}

/// The aggregate of judged rows: each row's gold label and what the
/// official aggregate counts for it.
pub fn aggregate<'a>(
    rows: impl IntoIterator<Item = (Label, &'a OfficialJudgement)>,
) -> OfficialAggregate {
    let mut by_gold: BTreeMap<Label, Vec<&str>> = BTreeMap::new();
    let mut left_out: BTreeMap<String, usize> = BTreeMap::new();
    for (gold, judgement) in rows {
        let class = match judgement {
            OfficialJudgement::Classified { classification } => classification.as_str(),
            OfficialJudgement::Raises { .. } => {
                *left_out.entry("script_raises".into()).or_default() += 1;
                continue;
            }
            OfficialJudgement::NotReproducible { .. } => {
                *left_out.entry("not_reproducible".into()).or_default() += 1;
                continue;
            }
        };
        if gold == Label::Direct {
            *left_out.entry("direct_gold".into()).or_default() += 1;
            continue;
        }
        by_gold.entry(gold).or_default().push(class);
    }
    let mut categories = BTreeMap::new();
    let mut judged = Vec::new();
    for gold in CATEGORIES {
        let classes = by_gold.remove(&gold).unwrap_or_default();
        let correct = classes.iter().filter(|c| **c == gold.as_str()).count();
        let mut distribution = BTreeMap::new();
        for c in &classes {
            *distribution.entry(c.to_string()).or_default() += 1;
            judged.push(Scored {
                gold,
                pred: judged_as(c),
                has_tools: false,
            });
        }
        categories.insert(
            gold.as_str().to_string(),
            Category {
                n: classes.len(),
                score: (!classes.is_empty()).then(|| correct as f64 / classes.len() as f64),
                response_distribution: distribution,
            },
        );
    }
    OfficialAggregate {
        categories,
        paper: paper_columns(&judged),
        n_aggregated: judged.len(),
        left_out,
    }
}

/// A classification as the paper's columns read it: one of the three
/// categories, `direct_answer` (a miss for every category), or anything
/// else as `invalid` (a miss too: the aggregate counts it under its own
/// name, which no gold label equals).
pub fn judged_as(classification: &str) -> Prediction {
    match classification {
        "direct_answer" => Prediction::Label(Label::Direct),
        c => CATEGORIES
            .into_iter()
            .find(|l| l.as_str() == c)
            .map_or(Prediction::Invalid, Prediction::Label),
    }
}

/// The paper's LLM-as-judge columns over rows of the aggregate: each row's
/// gold category and its classification read by [`judged_as`] (rows of a
/// `direct` gold are not in the aggregate and are skipped). The one
/// definition of F1, Acc and Tool Hall: [`aggregate`] and `w2c compare`'s
/// resamples both use it.
pub fn paper_columns(rows: &[Scored]) -> PaperJudgeColumns {
    // By category, in the order of the categories' names (the order the
    // aggregate's JSON lists them, and the order the F1s are summed).
    const BY_NAME: [Label; 3] = [Label::CannotAnswer, Label::RequestForInfo, Label::ToolCall];
    let index = |l: Label| BY_NAME.iter().position(|c| *c == l);
    let (mut n, mut judged, mut hits) = ([0usize; 3], [0usize; 3], [0usize; 3]);
    let mut tool_hall = 0usize;
    for r in rows {
        let Some(g) = index(r.gold) else { continue };
        n[g] += 1;
        if let Some(p) = r.pred.label().and_then(index) {
            judged[p] += 1;
            hits[g] += usize::from(p == g);
        }
        tool_hall += usize::from(
            r.gold == Label::CannotAnswer && r.pred == Prediction::Label(Label::ToolCall),
        );
    }
    let total: usize = n.iter().sum();
    let present: Vec<usize> = (0..3).filter(|&c| n[c] > 0).collect();
    let f1 = |c: usize| {
        let precision = if judged[c] == 0 {
            0.0
        } else {
            hits[c] as f64 / judged[c] as f64
        };
        let recall = hits[c] as f64 / n[c] as f64;
        if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        }
    };
    let ca = index(Label::CannotAnswer).unwrap_or(0);
    PaperJudgeColumns {
        f1: (!present.is_empty())
            .then(|| present.iter().map(|&c| f1(c)).sum::<f64>() / present.len() as f64),
        acc: (total > 0).then(|| hits.iter().sum::<usize>() as f64 / total as f64),
        tool_hall: (n[ca] > 0).then(|| tool_hall as f64 / n[ca] as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(c: &str) -> OfficialJudgement {
        OfficialJudgement::Classified {
            classification: c.into(),
        }
    }

    #[test]
    fn per_category_scores_distributions_and_the_paper_columns() {
        let rows = [
            (Label::ToolCall, class("tool_call")),
            (Label::ToolCall, class("tool_call")),
            (Label::ToolCall, class("request_for_info")),
            (Label::RequestForInfo, class("request_for_info")),
            (Label::RequestForInfo, class("direct_answer")),
            (Label::CannotAnswer, class("tool_call")),
            (Label::CannotAnswer, class("cannot_answer")),
            (Label::CannotAnswer, class("TOOL_CALL")),
            (Label::CannotAnswer, class("cannot_answer")),
            (Label::Direct, class("direct_answer")),
            (
                Label::ToolCall,
                OfficialJudgement::Raises {
                    script: "run_openai_judge.py".into(),
                    reason: "x".into(),
                },
            ),
        ];
        let a = aggregate(rows.iter().map(|(g, j)| (*g, j)));
        assert_eq!(a.n_aggregated, 9);
        assert_eq!(a.left_out["direct_gold"], 1);
        assert_eq!(a.left_out["script_raises"], 1);
        let tc = &a.categories["tool_call"];
        assert_eq!((tc.n, tc.score), (3, Some(2.0 / 3.0)));
        assert_eq!(tc.response_distribution["request_for_info"], 1);
        let ca = &a.categories["cannot_answer"];
        assert_eq!(ca.score, Some(0.5));
        assert_eq!(ca.response_distribution["TOOL_CALL"], 1);
        assert_eq!(a.paper.acc, Some(5.0 / 9.0));
        assert_eq!(a.paper.tool_hall, Some(0.25));
        // tool_call: P 2/3, R 2/3; request_for_info: P 1/2, R 1/2;
        // cannot_answer: P 1, R 1/2.
        let f1 = (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((a.paper.f1.unwrap() - f1).abs() < 1e-12);
    }

    #[test]
    fn an_empty_category_has_no_score() {
        let rows = [(Label::ToolCall, class("tool_call"))];
        let a = aggregate(rows.iter().map(|(g, j)| (*g, j)));
        assert_eq!(a.categories.len(), 3);
        assert_eq!(a.categories["cannot_answer"].score, None);
        assert_eq!(a.paper.tool_hall, None);
        assert_eq!(a.paper.f1, Some(1.0));
        let none = aggregate(std::iter::empty());
        assert_eq!((none.paper.f1, none.paper.acc), (None, None));
    }
}
