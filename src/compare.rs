//! Paired comparison of models evaluated on the same examples (pure logic;
//! `w2c compare` reads the sessions and prints).
//!
//! Per method, every model's metrics with a percentile bootstrap 95%
//! interval, and for every pair of models: the difference of each metric
//! with a *paired* bootstrap interval (the same resampled examples for both
//! models), the 2×2 table of per-example correctness and McNemar's exact
//! test on it. With more than two models the McNemar p-values of all pairs
//! of a method are adjusted with Holm's step-down rule (family-wise error
//! 0.05), and the ranking by accuracy says which neighbours differ
//! significantly.
//!
//! The metrics are those of the paper's table that defines the method's
//! headline ([`Table`]): for a judge under NVIDIA's protocol, the
//! LLM-as-judge table's Acc, F1 and Tool Hall over each row's
//! classification as NVIDIA's aggregate counts it (a row is *correct* when
//! its classification equals its gold label); otherwise the
//! multiple-choice table's definitions and w2c's AnswerHall and ParamHall
//! over the predictions.
//!
//! The bootstrap draws example indices with CPython's `random.Random(seed)`
//! `randrange(n)` ([`crate::pyrandom`]), resample after resample, so a
//! Python script can repeat the exact draws. A resample in which a rate has
//! no qualifying row (no `cannot_answer` row for ToolHall, ...) gives that
//! rate no value and is skipped for it, for every rate alike. A percentile
//! of the values a metric has is the sorted value at index
//! `round(q × (len − 1))`, rounded half to even as Python's `round()` does.

pub use crate::headline::Table;
use crate::judge_protocol::aggregate::paper_columns;
use crate::labels::{Label, Prediction};
use crate::metrics::{self, Scored};
use crate::pyrandom::PyRandom;
use serde::Serialize;

/// The metrics compared under `table`, by name, in order: accuracy first
/// (it ranks the models), then F1 and ToolHall (the pair table shows the
/// differences of these three).
pub fn metric_names(table: Table) -> &'static [&'static str] {
    match table {
        Table::MultipleChoice => &[
            "accuracy",
            "macro_f1_official",
            "tool_hallucination_rate_official",
            "answer_hallucination_rate",
            "parameter_hallucination_rate",
        ],
        Table::LlmJudge => &["judge_table_acc", "judge_table_f1", "judge_table_tool_hall"],
    }
}

/// Each metric of [`metric_names`] on `rows`; `None` where the metric is
/// undefined. On a resample (`resample`), a rate with no qualifying row is
/// undefined; on all the examples the MC table's ToolHall is 0.0 then, as
/// `additional_metrics.py` says.
pub fn metric_values(table: Table, rows: &[Scored], resample: bool) -> Vec<Option<f64>> {
    match table {
        Table::MultipleChoice => {
            let m = metrics::compute(rows);
            let tool_hall = if resample {
                m.tool_hallucination.rate()
            } else {
                m.tool_hallucination_rate_official
            };
            vec![
                Some(m.accuracy),
                m.macro_f1_official,
                tool_hall,
                m.answer_hallucination_rate,
                m.parameter_hallucination_rate,
            ]
        }
        Table::LlmJudge => {
            let p = paper_columns(rows);
            vec![p.acc, p.f1, p.tool_hall]
        }
    }
}

/// Significance level of the tests (after Holm's adjustment).
pub const ALPHA: f64 = 0.05;

/// Default bootstrap resamples (`w2c compare` and the HTML report).
pub const RESAMPLES: usize = 2000;

/// Fewer compared examples than this make a method's comparison
/// uninformative: its intervals and tests are shown without any claim of
/// a difference (at a typical third of examples discordant, 30 examples
/// detect only differences of about 30 points).
pub const MIN_EXAMPLES: usize = 30;

/// The standard normal quantile at 0.975 (`scipy.stats.norm.ppf(0.975)`).
pub const Z_975: f64 = 1.959_963_984_540_054;

/// The standard normal quantile at 0.8 (`scipy.stats.norm.ppf(0.8)`), for
/// 80% power.
pub const Z_80: f64 = 0.841_621_233_572_914_3;

/// The minimum difference in accuracy that McNemar's test detects with 80%
/// power at two-sided α = 0.05 on `n` paired examples of which `discordant`
/// are right for exactly one model (normal approximation: `(z₀.₉₇₅ + z₀.₈)
/// × √(p_d / n)`, p_d = discordant / n); `None` without a discordant
/// example (the data give no variance to plan with).
pub fn mde(n: usize, discordant: usize) -> Option<f64> {
    (n > 0 && discordant > 0).then(|| {
        let p_d = discordant as f64 / n as f64;
        (Z_975 + Z_80) * (p_d / n as f64).sqrt()
    })
}

/// Why a comparison of `n` examples says nothing about a difference, if it
/// does not.
pub fn uninformative(n: usize) -> Option<String> {
    (n < MIN_EXAMPLES).then(|| {
        format!(
            "uninformative: {n} example{} compared (fewer than {MIN_EXAMPLES}); no difference can be claimed",
            if n == 1 { "" } else { "s" }
        )
    })
}

/// The smallest number of discordant examples with which McNemar's exact
/// test can reach p < [`ALPHA`] (all of them in one direction: p = 2 ×
/// 0.5^d).
pub fn min_discordant_for_significance() -> usize {
    (1..64).find(|&d| mcnemar_exact(d, 0) < ALPHA).unwrap_or(64)
}

/// A value with its 95% interval (`None` where the metric is undefined,
/// e.g. a hallucination rate with no qualifying example).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The value on all examples.
    pub value: Option<f64>,
    /// 2.5th percentile of the bootstrap distribution.
    pub lo: Option<f64>,
    /// 97.5th percentile.
    pub hi: Option<f64>,
}

impl Interval {
    /// Whether the interval lies wholly on one side of zero (for a
    /// difference: the bootstrap says the models differ).
    pub fn excludes_zero(&self) -> bool {
        matches!((self.lo, self.hi), (Some(lo), Some(hi)) if lo > 0.0 || hi < 0.0)
    }
}

/// One model's results on a method.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// The model (or session) label.
    pub model: String,
    /// Each metric of [`metric_names`] with its interval, in that order.
    pub metrics: Vec<(String, Interval)>,
    /// Rank by accuracy (1 = best; ties share a rank).
    pub rank: usize,
}

/// Two models compared on the same examples.
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    /// First model.
    pub a: String,
    /// Second model.
    pub b: String,
    /// Each metric's difference `a − b` with its paired bootstrap interval.
    pub differences: Vec<(String, Interval)>,
    /// Examples both got right.
    pub both_correct: usize,
    /// Examples only `a` got right.
    pub only_a: usize,
    /// Examples only `b` got right.
    pub only_b: usize,
    /// Examples both got wrong.
    pub neither: usize,
    /// McNemar's exact two-sided p-value on `only_a` vs `only_b`.
    pub mcnemar_p: f64,
    /// The p-value after Holm's adjustment over the method's pairs.
    pub adjusted_p: f64,
    /// Whether `adjusted_p < ALPHA` (never on an uninformative method).
    pub significant: bool,
    /// The minimum detectable difference in accuracy at 80% power
    /// ([`mde`]).
    pub mde: Option<f64>,
    /// Why this pair's test cannot show a difference (too few discordant
    /// examples for McNemar's exact test to reach p < 0.05).
    pub uninformative: Option<String>,
}

/// Every model and pair of one method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodComparison {
    /// The method's namespace.
    pub method: String,
    /// The paper's table whose definitions the metrics follow.
    pub table: Table,
    /// Examples compared (scored by every model).
    pub n_examples: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Per model, in the order given.
    pub models: Vec<ModelResult>,
    /// Per pair (i < j in the order given).
    pub pairs: Vec<PairResult>,
    /// Why the method's comparison is uninformative (too few examples;
    /// [`uninformative`]): no difference is marked then.
    pub uninformative: Option<String>,
}

/// Whether a prediction is right.
fn correct(s: &Scored) -> bool {
    s.pred == Prediction::Label(s.gold)
}

/// Compares `models` (labels) whose `rows[m][i]` is model m's scored
/// prediction of example i (the same example for every model), with the
/// metrics of `table` (for [`Table::LlmJudge`], `pred` is the row's
/// classification read by [`crate::judge_protocol::aggregate::judged_as`]).
pub fn compare(
    method: &str,
    table: Table,
    models: &[String],
    rows: &[Vec<Scored>],
    seed: u64,
    resamples: usize,
) -> MethodComparison {
    let n = rows.first().map_or(0, Vec::len);
    debug_assert!(rows.iter().all(|r| r.len() == n));
    let names = metric_names(table);
    let full: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|r| metric_values(table, r, false))
        .collect();
    // samples[m][metric] and diffs[pair][metric]: the bootstrap values.
    let n_metrics = names.len();
    let mut samples = vec![vec![Vec::with_capacity(resamples); n_metrics]; rows.len()];
    let pairs: Vec<(usize, usize)> = (0..rows.len())
        .flat_map(|i| (i + 1..rows.len()).map(move |j| (i, j)))
        .collect();
    let mut diffs = vec![vec![Vec::with_capacity(resamples); n_metrics]; pairs.len()];
    if n > 0 && n < u32::MAX as usize {
        let mut rng = PyRandom::new(seed);
        let mut picked: Vec<Vec<Scored>> = vec![Vec::with_capacity(n); rows.len()];
        for _ in 0..resamples {
            for p in picked.iter_mut() {
                p.clear();
            }
            for _ in 0..n {
                let i = rng.randbelow(n as u32) as usize;
                for (m, r) in rows.iter().enumerate() {
                    picked[m].push(r[i]);
                }
            }
            let computed: Vec<Vec<Option<f64>>> = picked
                .iter()
                .map(|p| metric_values(table, p, true))
                .collect();
            for (m, c) in computed.iter().enumerate() {
                for (k, v) in c.iter().enumerate() {
                    if let Some(v) = v {
                        samples[m][k].push(*v);
                    }
                }
            }
            for (p, &(a, b)) in pairs.iter().enumerate() {
                for k in 0..n_metrics {
                    if let (Some(x), Some(y)) = (computed[a][k], computed[b][k]) {
                        diffs[p][k].push(x - y);
                    }
                }
            }
        }
    }
    let accuracy: Vec<f64> = full.iter().map(|m| m[0].unwrap_or(0.0)).collect();
    let model_results: Vec<ModelResult> = models
        .iter()
        .enumerate()
        .map(|(m, label)| ModelResult {
            model: label.clone(),
            metrics: names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let (lo, hi) = percentiles(&mut samples[m][k]);
                    (
                        name.to_string(),
                        Interval {
                            value: full[m][k],
                            lo,
                            hi,
                        },
                    )
                })
                .collect(),
            rank: 1 + accuracy.iter().filter(|&&x| x > accuracy[m]).count(),
        })
        .collect();
    let raw: Vec<PairResult> = pairs
        .iter()
        .enumerate()
        .map(|(p, &(a, b))| {
            let mut t = [0usize; 4];
            for (x, y) in rows[a].iter().zip(&rows[b]) {
                t[usize::from(correct(x)) * 2 + usize::from(correct(y))] += 1;
            }
            let (neither, only_b, only_a, both_correct) = (t[0], t[1], t[2], t[3]);
            PairResult {
                a: models[a].clone(),
                b: models[b].clone(),
                differences: names
                    .iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let (lo, hi) = percentiles(&mut diffs[p][k]);
                        let value = match (full[a][k], full[b][k]) {
                            (Some(x), Some(y)) => Some(x - y),
                            _ => None,
                        };
                        (name.to_string(), Interval { value, lo, hi })
                    })
                    .collect(),
                both_correct,
                only_a,
                only_b,
                neither,
                mcnemar_p: mcnemar_exact(only_a, only_b),
                adjusted_p: 1.0,
                significant: false,
                mde: mde(n, only_a + only_b),
                uninformative: (only_a + only_b < min_discordant_for_significance()).then(|| {
                    format!(
                        "{} discordant example{}: McNemar's exact test cannot reach p < {ALPHA} with fewer than {}",
                        only_a + only_b,
                        if only_a + only_b == 1 { "" } else { "s" },
                        min_discordant_for_significance()
                    )
                }),
            }
        })
        .collect();
    let adjusted = holm(&raw.iter().map(|p| p.mcnemar_p).collect::<Vec<_>>());
    let too_few = uninformative(n);
    let pairs = raw
        .into_iter()
        .zip(adjusted)
        .map(|(p, adjusted_p)| PairResult {
            adjusted_p,
            significant: adjusted_p < ALPHA && too_few.is_none(),
            ..p
        })
        .collect();
    MethodComparison {
        method: method.to_string(),
        table,
        n_examples: n,
        resamples,
        seed,
        models: model_results,
        pairs,
        uninformative: too_few,
    }
}

/// The 2.5th and 97.5th percentiles of `values` (sorted in place): the
/// value at index `round(q × (len − 1))`, rounded half to even (Python's
/// `round()`).
fn percentiles(values: &mut [f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[(percentile_index(q, values.len())).min(values.len() - 1)];
    (Some(at(0.025)), Some(at(0.975)))
}

/// `round(q × (len − 1))` with ties to even, as Python computes it.
fn percentile_index(q: f64, len: usize) -> usize {
    (q * (len - 1) as f64).round_ties_even() as usize
}

/// McNemar's exact test: the two-sided binomial p-value of `b` successes
/// against `c` in `b + c` trials at 1/2 (1 when there is no discordant
/// pair), as `scipy.stats.binomtest(b, b + c).pvalue` gives it.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_choose);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_sum = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
    let tail = (ln_sum - n as f64 * std::f64::consts::LN_2).exp();
    if 2 * k == n {
        1.0
    } else {
        (2.0 * tail).min(1.0)
    }
}

/// Holm's step-down adjustment of p-values (in their input order): the
/// i-th smallest becomes `max over j ≤ i of min(1, (m − j) × p_(j))`.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// A scored prediction from its parts (the gold label, the prediction and
/// whether tools were offered), for callers reading stored predictions.
pub fn scored(gold: Label, pred: Prediction, n_tools: usize) -> Scored {
    Scored {
        gold,
        pred,
        has_tools: n_tools > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial_test_by_hand() {
        // b = 13, c = 17: twice P(X <= 13 | n = 30, p = 1/2);
        // scipy.stats.binomtest(13, 30).pvalue = 0.5846647117286922.
        assert!((mcnemar_exact(13, 17) - 0.584_664_711_728_692_2).abs() < 1e-12);
        // b = 0, c = 5: 2 / 32.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-15);
        assert_eq!(mcnemar_exact(4, 4), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large n stays finite and tiny.
        let p = mcnemar_exact(100, 900);
        assert!(p > 0.0 && p < 1e-100, "{p}");
    }

    #[test]
    fn the_mde_and_the_smallest_useful_sample_are_as_documented() {
        // n = 300 with a third discordant: the issue's ~9.3 points.
        let m = mde(300, 100).unwrap();
        assert!((m - 0.0935).abs() < 5e-4, "{m}");
        assert_eq!(mde(300, 0), None);
        // 2 × 0.5^5 = 0.0625, 2 × 0.5^6 = 0.03125.
        assert_eq!(min_discordant_for_significance(), 6);
        assert!(uninformative(1).is_some_and(|s| s.contains("1 example compared")));
        assert!(uninformative(29).is_some());
        assert_eq!(uninformative(30), None);
    }

    #[test]
    fn holm_adjusts_step_down_and_keeps_order() {
        // p = (0.01, 0.04, 0.03): sorted 0.01×3 = 0.03, 0.03×2 = 0.06,
        // 0.04×1 = 0.04 → running max 0.06.
        let adj = holm(&[0.01, 0.04, 0.03]);
        let want = [0.03, 0.06, 0.06];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        // 0.8 × 2 caps at 1; the larger p keeps the running maximum.
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.2]), vec![0.2]);
    }

    fn rows(golds: &[Label], preds: &[Option<Label>]) -> Vec<Scored> {
        golds
            .iter()
            .zip(preds)
            .map(|(&g, p)| scored(g, p.map_or(Prediction::Invalid, Prediction::Label), 1))
            .collect()
    }

    #[test]
    fn identical_models_differ_by_zero_and_are_not_significant() {
        use Label::*;
        let golds = [ToolCall, CannotAnswer, RequestForInfo, ToolCall];
        let preds = [Some(ToolCall), Some(ToolCall), None, Some(ToolCall)];
        let r = rows(&golds, &preds);
        let c = compare(
            "mcq",
            Table::MultipleChoice,
            &["a".into(), "b".into()],
            &[r.clone(), r],
            3,
            200,
        );
        let acc = &c.pairs[0].differences[0].1;
        assert_eq!(
            (acc.value, acc.lo, acc.hi),
            (Some(0.0), Some(0.0), Some(0.0))
        );
        assert_eq!(c.pairs[0].mcnemar_p, 1.0);
        assert!(!c.pairs[0].significant);
        assert_eq!(c.models[0].rank, 1);
        assert_eq!(c.models[1].rank, 1);
        // Same seed, same intervals.
        let again = compare(
            "mcq",
            Table::MultipleChoice,
            &["a".into(), "b".into()],
            &[rows(&golds, &preds), rows(&golds, &preds)],
            3,
            200,
        );
        assert_eq!(again.models[0].metrics[0].1, c.models[0].metrics[0].1);
    }

    #[test]
    fn a_percentile_index_rounds_half_to_even_as_python_does() {
        // B = 101: 0.025 × 100 = 2.5 → 2 (Python's round), not 3; 0.975 ×
        // 100 = 97.5 → 98. B = 201: 5.0 and 195.0, no tie.
        assert_eq!(percentile_index(0.025, 101), 2);
        assert_eq!(percentile_index(0.975, 101), 98);
        assert_eq!(percentile_index(0.025, 201), 5);
        assert_eq!(percentile_index(0.025, 2000), 50);
        // 0.025 × 60 = 1.5 → 2; 0.025 × 20 = 0.5 → 0.
        assert_eq!(percentile_index(0.025, 61), 2);
        assert_eq!(percentile_index(0.025, 21), 0);
        let mut v: Vec<f64> = (0..101).map(f64::from).collect();
        assert_eq!(percentiles(&mut v), (Some(2.0), Some(98.0)));
    }

    #[test]
    fn a_resample_without_a_qualifying_row_gives_no_toolhall_value() {
        use Label::*;
        // One cannot_answer row without tools among 20: many resamples
        // miss it. They are skipped for ToolHall, as for the other rates,
        // not counted as 0.
        let mut r: Vec<Scored> = (0..19)
            .map(|_| scored(ToolCall, Prediction::Label(ToolCall), 1))
            .collect();
        r.push(scored(CannotAnswer, Prediction::Label(ToolCall), 0));
        let full = metric_values(Table::MultipleChoice, &r[..19], false);
        assert_eq!(full[2], Some(0.0), "additional_metrics.py's 0.0");
        let resampled = metric_values(Table::MultipleChoice, &r[..19], true);
        assert_eq!(resampled[2], None);
        let c = compare("mcq", Table::MultipleChoice, &["a".into()], &[r], 1, 300);
        let (_, hall) = &c.models[0].metrics[2];
        // Every resample holding the row has ToolHall 1: the interval is
        // [1, 1]; zeros from resamples without it would pull it to 0.
        assert_eq!(
            (hall.value, hall.lo, hall.hi),
            (Some(1.0), Some(1.0), Some(1.0))
        );
    }

    #[test]
    fn the_judge_table_compares_nvidias_classifications() {
        use crate::judge_protocol::aggregate::{aggregate, judged_as};
        use crate::judge_protocol::OfficialJudgement;
        use Label::*;
        let rows = [
            (ToolCall, "tool_call"),
            (ToolCall, "TOOL_CALL"),
            (CannotAnswer, "tool_call"),
            (CannotAnswer, "cannot_answer"),
            (RequestForInfo, "direct_answer"),
            (RequestForInfo, "request_for_info"),
        ];
        let scored_rows: Vec<Scored> = rows
            .iter()
            .map(|(g, c)| scored(*g, judged_as(c), 1))
            .collect();
        let judgements: Vec<(Label, OfficialJudgement)> = rows
            .iter()
            .map(|(g, c)| {
                (
                    *g,
                    OfficialJudgement::Classified {
                        classification: c.to_string(),
                    },
                )
            })
            .collect();
        let a = aggregate(judgements.iter().map(|(g, j)| (*g, j)));
        let c = compare(
            "llm_judge",
            Table::LlmJudge,
            &["a".into(), "b".into()],
            &[scored_rows.clone(), scored_rows],
            0,
            100,
        );
        let values: Vec<Option<f64>> = c.models[0].metrics.iter().map(|(_, i)| i.value).collect();
        assert_eq!(values, vec![a.paper.acc, a.paper.f1, a.paper.tool_hall]);
        assert_eq!(c.models[0].metrics[0].0, "judge_table_acc");
        // Correct = classified as the gold label: 3 of 6 for both.
        assert_eq!(c.pairs[0].both_correct, 3);
    }
}
