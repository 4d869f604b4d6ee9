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
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Interval {
    /// The value on all examples.
    pub value: Option<f64>,
    /// 2.5th percentile of the bootstrap distribution.
    pub lo: Option<f64>,
    /// 97.5th percentile.
    pub hi: Option<f64>,
    /// Bootstrap standard error: the standard deviation (n − 1) of the
    /// bootstrap values (`None` with fewer than two).
    pub se: Option<f64>,
    /// Paired bootstrap p-value of a difference (`None` for a model's own
    /// value): `min(1, 2 × (1 + min(#Δ* ≤ 0, #Δ* ≥ 0)) / (m + 1))` over
    /// the m bootstrap differences.
    pub p: Option<f64>,
    /// Monte-Carlo error of the interval's ends ([`mc_error`]): what
    /// another seed would move them by, about; the ends are printed to the
    /// precision it supports.
    pub mc_error: Option<f64>,
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
    /// The rates among them counted (`k` of `n`, Wilson interval), by
    /// metric name; F1s are not rates.
    pub rates: Vec<(String, Rate)>,
    /// Rank by accuracy (1 = best; ties share a rank).
    pub rank: usize,
    /// Accuracy's standard error with examples clustered by the dataset's
    /// `source_id` ([`clustered_se`]; `None` without sources).
    pub accuracy_clustered_se: Option<f64>,
}

/// Two models compared on the same examples.
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    /// First model.
    pub a: String,
    /// Second model.
    pub b: String,
    /// Each metric's difference `a − b` with its paired bootstrap interval
    /// and p-value.
    pub differences: Vec<(String, Interval)>,
    /// Holm-adjusted bootstrap p-values of the differences other than
    /// accuracy (over every such metric and pair of the method), by name.
    pub adjusted_difference_p: Vec<(String, f64)>,
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
    /// The accuracy difference's standard error with examples clustered by
    /// `source_id` (of the per-example differences; [`clustered_se`]).
    pub accuracy_clustered_se: Option<f64>,
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
    /// Per gold label present: accuracy, paired differences, McNemar.
    pub by_label: Vec<LabelComparison>,
    /// The families Holm's adjustment runs over, one sentence each.
    pub holm_families: Vec<String>,
    /// How many `source_id` clusters the examples fall in (`None` when
    /// the dataset's sources could not be read).
    pub clusters: Option<usize>,
    /// Whether the bootstrap resampled within each gold label (keeping the
    /// label mix) rather than over all examples.
    pub stratified: bool,
}

/// How the bootstrap draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draws {
    /// Seed of `random.Random`.
    pub seed: u64,
    /// Resamples.
    pub resamples: usize,
    /// Resample within each gold label (else over all examples).
    pub stratified: bool,
}

/// A rate counted over its qualifying examples: `k` of `n`, with its
/// Wilson 95% interval and binomial standard error (calibrated at small
/// `n`, unlike a percentile bootstrap).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Rate {
    /// Qualifying examples counted.
    pub k: usize,
    /// Qualifying examples (the denominator).
    pub n: usize,
    /// `k / n` (`None` when `n` is 0).
    pub value: Option<f64>,
    /// `√(p (1 − p) / n)`.
    pub se: Option<f64>,
    /// Wilson interval's lower end (z = 1.96).
    pub lo: Option<f64>,
    /// Wilson interval's upper end.
    pub hi: Option<f64>,
}

impl Rate {
    /// `k` of `n` with its Wilson interval (as statsmodels'
    /// `proportion_confint(k, n, method="wilson")`).
    pub fn new(k: usize, n: usize) -> Rate {
        if n == 0 {
            return Rate {
                k,
                n,
                value: None,
                se: None,
                lo: None,
                hi: None,
            };
        }
        let (kf, nf) = (k as f64, n as f64);
        let p = kf / nf;
        let z2 = Z_975 * Z_975;
        let denom = 1.0 + z2 / nf;
        let centre = (p + z2 / (2.0 * nf)) / denom;
        let half = Z_975 / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
        Rate {
            k,
            n,
            value: Some(p),
            se: Some((p * (1.0 - p) / nf).sqrt()),
            lo: Some((centre - half).max(0.0)),
            hi: Some((centre + half).min(1.0)),
        }
    }
}

/// The numerator and denominator of each metric of [`metric_names`] that
/// is a rate (`None` for an F1).
pub fn rate_counts(table: Table, rows: &[Scored]) -> Vec<Option<Rate>> {
    let count = |qualifies: &dyn Fn(&Scored) -> bool, hit: &dyn Fn(&Scored) -> bool| {
        let q: Vec<&Scored> = rows.iter().filter(|r| qualifies(r)).collect();
        Some(Rate::new(q.iter().filter(|r| hit(r)).count(), q.len()))
    };
    let calls_tool = |r: &Scored| r.pred == Prediction::Label(Label::ToolCall);
    match table {
        Table::MultipleChoice => {
            let m = metrics::compute(rows);
            let of = |c: metrics::RateCount| Some(Rate::new(c.numerator, c.denominator));
            vec![
                Some(Rate::new(m.n_correct, m.n_total)),
                None,
                of(m.tool_hallucination),
                of(m.answer_hallucination),
                of(m.parameter_hallucination),
            ]
        }
        Table::LlmJudge => vec![
            count(&|_| true, &correct),
            None,
            count(&|r| r.gold == Label::CannotAnswer, &calls_tool),
        ],
    }
}

/// One model's accuracy on the examples of one gold label.
#[derive(Debug, Clone, Serialize)]
pub struct LabelModel {
    /// The model.
    pub model: String,
    /// Right of the label's examples, with its Wilson interval.
    pub accuracy: Rate,
}

/// Two models compared on the examples of one gold label.
#[derive(Debug, Clone, Serialize)]
pub struct LabelPair {
    /// First model.
    pub a: String,
    /// Second model.
    pub b: String,
    /// Accuracy difference `a − b` on the label's examples, with its paired
    /// bootstrap interval (resamples without such an example skipped).
    pub difference: Interval,
    /// Examples only `a` got right.
    pub only_a: usize,
    /// Examples only `b` got right.
    pub only_b: usize,
    /// McNemar's exact p-value.
    pub mcnemar_p: f64,
    /// Holm-adjusted over every label and pair of the method.
    pub adjusted_p: f64,
    /// Whether `adjusted_p < ALPHA` (never on an uninformative method).
    pub significant: bool,
}

/// Every model and pair on the examples of one gold label.
#[derive(Debug, Clone, Serialize)]
pub struct LabelComparison {
    /// The gold label.
    pub gold: String,
    /// Its examples.
    pub n: usize,
    /// Per model.
    pub models: Vec<LabelModel>,
    /// Per pair.
    pub pairs: Vec<LabelPair>,
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
    clusters: Option<&[usize]>,
    draws: Draws,
) -> MethodComparison {
    let Draws {
        seed,
        resamples,
        stratified,
    } = draws;
    let n = rows.first().map_or(0, Vec::len);
    let clusters = clusters.filter(|c| c.len() == n);
    let indicator =
        |r: &[Scored]| -> Vec<f64> { r.iter().map(|s| f64::from(u8::from(correct(s)))).collect() };
    debug_assert!(rows.iter().all(|r| r.len() == n));
    let names = metric_names(table);
    let full: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|r| metric_values(table, r, false))
        .collect();
    // The gold labels present, in the benchmark's order.
    let labels: Vec<Label> = Label::ALL
        .into_iter()
        .filter(|l| rows.first().is_some_and(|r| r.iter().any(|s| s.gold == *l)))
        .collect();
    // samples[m][metric] and diffs[pair][metric]: the bootstrap values;
    // label_diffs[label][pair]: per-label accuracy differences.
    let n_metrics = names.len();
    let mut samples = vec![vec![Vec::with_capacity(resamples); n_metrics]; rows.len()];
    let pairs: Vec<(usize, usize)> = (0..rows.len())
        .flat_map(|i| (i + 1..rows.len()).map(move |j| (i, j)))
        .collect();
    let mut diffs = vec![vec![Vec::with_capacity(resamples); n_metrics]; pairs.len()];
    let mut label_diffs = vec![vec![Vec::with_capacity(resamples); pairs.len()]; labels.len()];
    // The strata: one of every example, or (stratified) the examples of
    // each gold label, in the labels' order.
    let strata: Vec<Vec<usize>> = if stratified {
        labels
            .iter()
            .map(|l| (0..n).filter(|&i| rows[0][i].gold == *l).collect())
            .collect()
    } else {
        vec![(0..n).collect()]
    };
    if n > 0 && n < u32::MAX as usize {
        let mut rng = PyRandom::new(seed);
        let mut picked: Vec<Vec<Scored>> = vec![Vec::with_capacity(n); rows.len()];
        for _ in 0..resamples {
            for p in picked.iter_mut() {
                p.clear();
            }
            for stratum in &strata {
                for _ in 0..stratum.len() {
                    let i = stratum[rng.randbelow(stratum.len() as u32) as usize];
                    for (m, r) in rows.iter().enumerate() {
                        picked[m].push(r[i]);
                    }
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
            for (l, label) in labels.iter().enumerate() {
                let acc: Vec<Option<f64>> = picked
                    .iter()
                    .map(|p| label_accuracy(p, *label).value)
                    .collect();
                for (p, &(a, b)) in pairs.iter().enumerate() {
                    if let (Some(x), Some(y)) = (acc[a], acc[b]) {
                        label_diffs[l][p].push(x - y);
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
                    (
                        name.to_string(),
                        interval(full[m][k], &mut samples[m][k], false),
                    )
                })
                .collect(),
            rates: names
                .iter()
                .zip(rate_counts(table, &rows[m]))
                .filter_map(|(name, r)| Some((name.to_string(), r?)))
                .collect(),
            rank: 1 + accuracy.iter().filter(|&&x| x > accuracy[m]).count(),
            accuracy_clustered_se: clusters.and_then(|c| clustered_se(&indicator(&rows[m]), c)),
        })
        .collect();
    let too_few = uninformative(n);
    let raw: Vec<PairResult> = pairs
        .iter()
        .enumerate()
        .map(|(p, &(a, b))| {
            let (only_a, only_b, both_correct, neither) = table_2x2(&rows[a], &rows[b]);
            PairResult {
                a: models[a].clone(),
                b: models[b].clone(),
                differences: names
                    .iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let value = match (full[a][k], full[b][k]) {
                            (Some(x), Some(y)) => Some(x - y),
                            _ => None,
                        };
                        (name.to_string(), interval(value, &mut diffs[p][k], true))
                    })
                    .collect(),
                adjusted_difference_p: Vec::new(),
                both_correct,
                only_a,
                only_b,
                neither,
                mcnemar_p: mcnemar_exact(only_a, only_b),
                adjusted_p: 1.0,
                significant: false,
                mde: mde(n, only_a + only_b),
                accuracy_clustered_se: clusters.and_then(|c| {
                    let (x, y) = (indicator(&rows[a]), indicator(&rows[b]));
                    let d: Vec<f64> = x.iter().zip(&y).map(|(x, y)| x - y).collect();
                    clustered_se(&d, c)
                }),
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
    // The other metrics' bootstrap p-values: one family over every metric
    // but accuracy and every pair.
    let secondary: Vec<(usize, usize)> = (0..raw.len())
        .flat_map(|p| (1..n_metrics).map(move |k| (p, k)))
        .filter(|&(p, k)| raw[p].differences[k].1.p.is_some())
        .collect();
    let secondary_adjusted = holm(
        &secondary
            .iter()
            .filter_map(|&(p, k)| raw[p].differences[k].1.p)
            .collect::<Vec<_>>(),
    );
    let mut pairs_out: Vec<PairResult> = raw
        .into_iter()
        .zip(adjusted)
        .map(|(p, adjusted_p)| PairResult {
            adjusted_p,
            significant: adjusted_p < ALPHA && too_few.is_none(),
            ..p
        })
        .collect();
    for (&(p, k), adj) in secondary.iter().zip(&secondary_adjusted) {
        let name = pairs_out[p].differences[k].0.clone();
        pairs_out[p].adjusted_difference_p.push((name, *adj));
    }
    let by_label = by_label(
        &labels,
        models,
        rows,
        &pairs,
        &mut label_diffs,
        too_few.is_none(),
    );
    let n_label_tests: usize = by_label.iter().map(|l| l.pairs.len()).sum();
    let holm_families = if pairs.is_empty() {
        Vec::new()
    } else {
        vec![
            format!(
                "accuracy: McNemar over the method's {} pair{}",
                pairs.len(),
                if pairs.len() == 1 { "" } else { "s" }
            ),
            format!(
                "accuracy by gold label: McNemar over {} label{} × {} pair{} ({n_label_tests} tests)",
                by_label.len(),
                if by_label.len() == 1 { "" } else { "s" },
                pairs.len(),
                if pairs.len() == 1 { "" } else { "s" }
            ),
            format!(
                "{}: paired bootstrap p over {} tests (each metric and pair)",
                names[1..]
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                secondary.len()
            ),
        ]
    };
    MethodComparison {
        method: method.to_string(),
        table,
        n_examples: n,
        resamples,
        seed,
        models: model_results,
        pairs: pairs_out,
        uninformative: too_few,
        by_label,
        holm_families,
        stratified,
        clusters: clusters.map(|c| c.iter().collect::<std::collections::BTreeSet<_>>().len()),
    }
}

/// The cluster-robust standard error of the mean of `x` with examples
/// clustered by `clusters` (e.g. the dataset's `source_id`): `√(G/(G − 1)
/// × Σ_g (Σ_{i∈g} (x_i − x̄))²) / n` over G clusters, as statsmodels' OLS on
/// a constant with `cov_type="cluster"` gives it; `None` with fewer than
/// two clusters.
pub fn clustered_se(x: &[f64], clusters: &[usize]) -> Option<f64> {
    let n = x.len();
    if n == 0 || clusters.len() != n {
        return None;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let mut sums: std::collections::BTreeMap<usize, f64> = Default::default();
    for (v, c) in x.iter().zip(clusters) {
        *sums.entry(*c).or_default() += v - mean;
    }
    let g = sums.len();
    if g < 2 {
        return None;
    }
    let ss: f64 = sums.values().map(|s| s * s).sum();
    Some((g as f64 / (g - 1) as f64 * ss).sqrt() / n as f64)
}

/// The rows per gold label: each model's accuracy on them, each pair's
/// difference (paired bootstrap from `label_diffs[label][pair]`) and
/// McNemar's test, Holm-adjusted over every label and pair.
fn by_label(
    labels: &[Label],
    models: &[String],
    rows: &[Vec<Scored>],
    pairs: &[(usize, usize)],
    label_diffs: &mut [Vec<Vec<f64>>],
    claim: bool,
) -> Vec<LabelComparison> {
    let mut out: Vec<LabelComparison> = labels
        .iter()
        .zip(label_diffs.iter_mut())
        .map(|(label, diffs)| {
            let of: Vec<Vec<Scored>> = rows
                .iter()
                .map(|r| r.iter().copied().filter(|s| s.gold == *label).collect())
                .collect();
            LabelComparison {
                gold: label.to_string(),
                n: of.first().map_or(0, Vec::len),
                models: models
                    .iter()
                    .zip(&of)
                    .map(|(m, r)| LabelModel {
                        model: m.clone(),
                        accuracy: label_accuracy(r, *label),
                    })
                    .collect(),
                pairs: pairs
                    .iter()
                    .zip(diffs.iter_mut())
                    .map(|(&(a, b), d)| {
                        let (only_a, only_b, _, _) = table_2x2(&of[a], &of[b]);
                        let value = match (
                            label_accuracy(&of[a], *label).value,
                            label_accuracy(&of[b], *label).value,
                        ) {
                            (Some(x), Some(y)) => Some(x - y),
                            _ => None,
                        };
                        LabelPair {
                            a: models[a].clone(),
                            b: models[b].clone(),
                            difference: interval(value, d, false),
                            only_a,
                            only_b,
                            mcnemar_p: mcnemar_exact(only_a, only_b),
                            adjusted_p: 1.0,
                            significant: false,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let ps: Vec<f64> = out
        .iter()
        .flat_map(|l| l.pairs.iter().map(|p| p.mcnemar_p))
        .collect();
    let mut adjusted = holm(&ps).into_iter();
    for l in &mut out {
        for p in &mut l.pairs {
            p.adjusted_p = adjusted.next().unwrap_or(1.0);
            p.significant = claim && p.adjusted_p < ALPHA;
        }
    }
    out
}

/// The share of `rows` of gold `label` that are right.
fn label_accuracy(rows: &[Scored], label: Label) -> Rate {
    let of = rows.iter().filter(|s| s.gold == label);
    Rate::new(of.clone().filter(|s| correct(s)).count(), of.count())
}

/// `(only a right, only b right, both right, neither)` over paired rows.
fn table_2x2(a: &[Scored], b: &[Scored]) -> (usize, usize, usize, usize) {
    let mut t = [0usize; 4];
    for (x, y) in a.iter().zip(b) {
        t[usize::from(correct(x)) * 2 + usize::from(correct(y))] += 1;
    }
    (t[2], t[1], t[3], t[0])
}

/// A value with the percentile interval, standard error and (for a
/// difference, `paired`) the p-value of its bootstrap `values` (sorted in
/// place).
fn interval(value: Option<f64>, values: &mut [f64], paired: bool) -> Interval {
    let (lo, hi) = percentiles(values);
    Interval {
        value,
        lo,
        hi,
        mc_error: mc_error(values),
        se: bootstrap_se(values),
        p: if paired { bootstrap_p(values) } else { None },
    }
}

/// The Monte-Carlo error of the percentile ends of the sorted `values`
/// (m of them): for q = 0.025 and 0.975, half the spread between the
/// sorted values `w = ⌈√(m q (1 − q))⌉` places either side of the end's
/// index (one standard deviation of a binomial order statistic), the larger
/// of the two; `None` without values.
pub fn mc_error(sorted: &[f64]) -> Option<f64> {
    let m = sorted.len();
    if m == 0 {
        return None;
    }
    let at = |q: f64| {
        let i = percentile_index(q, m).min(m - 1);
        let w = (m as f64 * q * (1.0 - q)).sqrt().ceil() as usize;
        (sorted[(i + w).min(m - 1)] - sorted[i.saturating_sub(w)]) / 2.0
    };
    Some(at(0.025).max(at(0.975)))
}

/// Decimals of a fraction (0.123 → 3) that an interval's Monte-Carlo
/// error supports: the most, up to `max`, for which the error is below
/// half a unit of the last digit.
pub fn supported_decimals(mc_error: Option<f64>, max: usize) -> usize {
    let Some(e) = mc_error else { return max };
    (0..=max)
        .rev()
        .find(|&d| e < 0.5 * 10f64.powi(-(d as i32)))
        .unwrap_or(0)
}

/// The standard deviation (n − 1) of `values`; `None` with fewer than two.
pub fn bootstrap_se(values: &[f64]) -> Option<f64> {
    let m = values.len();
    if m < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / m as f64;
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    Some((ss / (m - 1) as f64).sqrt())
}

/// The two-sided paired bootstrap p-value of the differences `values`:
/// `min(1, 2 × (1 + min(#≤0, #≥0)) / (m + 1))`; `None` without values.
pub fn bootstrap_p(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let below = values.iter().filter(|v| **v <= 0.0).count();
    let above = values.iter().filter(|v| **v >= 0.0).count();
    Some((2.0 * (1 + below.min(above)) as f64 / (values.len() + 1) as f64).min(1.0))
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
    fn wilson_bootstrap_p_and_monte_carlo_precision_by_hand() {
        // The ToolHall over 17 rows: 3/17, Wilson [6.2, 41.0]
        // (statsmodels: 0.061911266376209945, 0.4102945856883413).
        let r = Rate::new(3, 17);
        assert!((r.lo.unwrap() - 0.061_911_266_376_209_945).abs() < 1e-12);
        assert!((r.hi.unwrap() - 0.410_294_585_688_341_3).abs() < 1e-12);
        // 0 of n and n of n stay inside [0, 1]; 0 of 0 is undefined.
        assert_eq!(Rate::new(0, 5).lo, Some(0.0));
        assert_eq!(Rate::new(5, 5).hi, Some(1.0));
        assert_eq!(Rate::new(0, 0).value, None);
        // Two of nine differences ≤ 0: 2 × 3 / 10.
        let d = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        assert!((bootstrap_p(&d).unwrap() - 0.6).abs() < 1e-15);
        assert_eq!(bootstrap_p(&[1.0; 99]), Some(0.02));
        assert_eq!(bootstrap_p(&[]), None);
        // All equal: no Monte-Carlo error, every decimal supported.
        assert_eq!(mc_error(&[0.5; 200]), Some(0.0));
        assert_eq!(supported_decimals(Some(0.0), 3), 3);
        assert_eq!(supported_decimals(Some(0.003), 3), 2);
        assert_eq!(supported_decimals(Some(0.0004), 3), 3);
        assert_eq!(supported_decimals(Some(0.7), 3), 0);
        assert!((bootstrap_se(&[1.0, 2.0, 3.0]).unwrap() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn the_clustered_se_by_hand() {
        // x = (1, 0, 1, 1), clusters (0, 0, 1, 2): x̄ = 3/4; cluster sums
        // of deviations 1/4 − 3/4 = −1/2, 1/4, 1/4: Σ² = 3/8; G = 3:
        // √(3/2 × 3/8) / 4 = 0.75 / 4.
        let se = clustered_se(&[1.0, 0.0, 1.0, 1.0], &[0, 0, 1, 2]).unwrap();
        assert!((se - 0.1875).abs() < 1e-15, "{se}");
        assert_eq!(clustered_se(&[1.0, 0.0], &[4, 4]), None);
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
            None,
            Draws {
                seed: 3,
                resamples: 200,
                stratified: false,
            },
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
            None,
            Draws {
                seed: 3,
                resamples: 200,
                stratified: false,
            },
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
        let c = compare(
            "mcq",
            Table::MultipleChoice,
            &["a".into()],
            &[r],
            None,
            Draws {
                seed: 1,
                resamples: 300,
                stratified: false,
            },
        );
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
            None,
            Draws {
                seed: 0,
                resamples: 100,
                stratified: false,
            },
        );
        let values: Vec<Option<f64>> = c.models[0].metrics.iter().map(|(_, i)| i.value).collect();
        assert_eq!(values, vec![a.paper.acc, a.paper.f1, a.paper.tool_hall]);
        assert_eq!(c.models[0].metrics[0].0, "judge_table_acc");
        // Correct = classified as the gold label: 3 of 6 for both.
        assert_eq!(c.pairs[0].both_correct, 3);
    }
}
