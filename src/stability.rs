//! Stability metrics over K repeated predictions per example (pure, no I/O).
//!
//! Per example with run labels y1..yK (`invalid` counts as a label of its own):
//! the mode (ties go to the label seen first), consistency = mode count / K,
//! stable = all K agree, mode-correct, stable-and-correct, stable-but-wrong,
//! accuracy across runs, Shannon entropy in bits normalised by
//! log2(min(K, 5)) — the most entropy K runs over the 5 possible outcomes can
//! reach, so the value is in [0, 1] — and flip rate = changes between
//! consecutive runs / (K − 1). Aggregates are means over examples; per-repeat
//! accuracy and macro-F1 get a mean and a (population) standard deviation, and
//! accuracy-across-runs gets a seeded percentile bootstrap 95% interval.

use crate::labels::{Label, Prediction};
use crate::metrics::{self, Scored};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The K predictions of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    /// Gold label.
    pub gold: Label,
    /// Whether tools were offered.
    pub has_tools: bool,
    /// Predictions in repeat order.
    pub preds: Vec<Prediction>,
}

/// Per-example stability figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemStability {
    /// Most frequent prediction (first seen wins ties).
    pub mode: Prediction,
    /// Mode count / K.
    pub consistency: f64,
    /// All K predictions agree.
    pub stable: bool,
    /// The mode equals gold.
    pub mode_correct: bool,
    /// Correct predictions / K.
    pub accuracy: f64,
    /// Normalised entropy in [0, 1].
    pub entropy: f64,
    /// Changes between consecutive runs / (K − 1).
    pub flip_rate: f64,
}

/// Computes the per-example figures; `None` when there are no runs.
pub fn item(runs: &Runs) -> Option<ItemStability> {
    let k = runs.preds.len();
    if k == 0 {
        return None;
    }
    let mut counts: Vec<(Prediction, usize)> = Vec::new();
    for p in &runs.preds {
        match counts.iter_mut().find(|(q, _)| q == p) {
            Some((_, c)) => *c += 1,
            None => counts.push((*p, 1)),
        }
    }
    let (mode, mode_count) = counts.iter().fold(
        counts[0],
        |best, &(p, c)| if c > best.1 { (p, c) } else { best },
    );
    let kf = k as f64;
    let raw_entropy: f64 = counts
        .iter()
        .map(|&(_, c)| {
            let p = c as f64 / kf;
            -p * p.log2()
        })
        .sum();
    let max_entropy = (k.min(5) as f64).log2();
    let flips = runs.preds.windows(2).filter(|w| w[0] != w[1]).count();
    Some(ItemStability {
        mode,
        consistency: mode_count as f64 / kf,
        stable: mode_count == k,
        mode_correct: mode == Prediction::Label(runs.gold),
        accuracy: runs
            .preds
            .iter()
            .filter(|p| **p == Prediction::Label(runs.gold))
            .count() as f64
            / kf,
        entropy: if max_entropy > 0.0 {
            raw_entropy / max_entropy
        } else {
            0.0
        },
        flip_rate: if k > 1 {
            flips as f64 / (k - 1) as f64
        } else {
            0.0
        },
    })
}

/// Mean and population standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

fn mean_std(xs: &[f64]) -> MeanStd {
    if xs.is_empty() {
        return MeanStd {
            mean: 0.0,
            std: 0.0,
        };
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    MeanStd {
        mean,
        std: var.sqrt(),
    }
}

/// Aggregate stability metrics of a sweep at one temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StabilityMetrics {
    /// Examples.
    pub n_items: usize,
    /// Repeats per example.
    pub k: usize,
    /// Share of examples whose K predictions all agree (Stability@k).
    pub stability_at_k: f64,
    /// Mean consistency (MeanConsistency@k).
    pub mean_consistency_at_k: f64,
    /// Share stable and correct.
    pub stable_correct: f64,
    /// Share stable but wrong.
    pub stable_wrong: f64,
    /// Share whose mode is correct.
    pub mode_correct: f64,
    /// Mean normalised entropy.
    pub mean_entropy: f64,
    /// Mean flip rate.
    pub mean_flip_rate: f64,
    /// Mean accuracy across runs.
    pub mean_accuracy_across_runs: f64,
    /// Bootstrap 95% interval of the mean accuracy across runs.
    pub accuracy_ci95: (f64, f64),
    /// Accuracy of each repeat: mean and std.
    pub accuracy_per_repeat: MeanStd,
    /// Macro-F1 over gold labels of each repeat: mean and std.
    pub macro_f1_per_repeat: MeanStd,
    /// Stability@k per gold label.
    pub stability_at_k_by_gold: BTreeMap<String, f64>,
}

/// Bootstrap resamples for the confidence interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// Computes the sweep metrics. Examples must all have K runs.
pub fn compute(items: &[Runs], k: usize, bootstrap_seed: u64) -> StabilityMetrics {
    let per: Vec<ItemStability> = items.iter().filter_map(item).collect();
    let n = per.len();
    let share = |f: &dyn Fn(&ItemStability) -> bool| {
        if n == 0 {
            0.0
        } else {
            per.iter().filter(|s| f(s)).count() as f64 / n as f64
        }
    };
    let mean = |f: &dyn Fn(&ItemStability) -> f64| {
        if n == 0 {
            0.0
        } else {
            per.iter().map(f).sum::<f64>() / n as f64
        }
    };
    let mut acc_per_repeat = Vec::new();
    let mut f1_per_repeat = Vec::new();
    for r in 0..k {
        let scored: Vec<Scored> = items
            .iter()
            .filter_map(|it| {
                it.preds.get(r).map(|p| Scored {
                    gold: it.gold,
                    pred: *p,
                    has_tools: it.has_tools,
                })
            })
            .collect();
        let m = metrics::compute(&scored);
        acc_per_repeat.push(m.accuracy);
        f1_per_repeat.push(m.macro_f1_present.unwrap_or(0.0));
    }
    let accs: Vec<f64> = per.iter().map(|s| s.accuracy).collect();
    let mut by_gold = BTreeMap::new();
    for label in Label::ALL {
        let stable: Vec<bool> = items
            .iter()
            .filter(|it| it.gold == label)
            .filter_map(|it| item(it).map(|s| s.stable))
            .collect();
        if !stable.is_empty() {
            let n_stable = stable.iter().filter(|s| **s).count() as f64;
            by_gold.insert(label.as_str().to_string(), n_stable / stable.len() as f64);
        }
    }
    StabilityMetrics {
        n_items: n,
        k,
        stability_at_k: share(&|s| s.stable),
        mean_consistency_at_k: mean(&|s| s.consistency),
        stable_correct: share(&|s| s.stable && s.mode_correct),
        stable_wrong: share(&|s| s.stable && !s.mode_correct),
        mode_correct: share(&|s| s.mode_correct),
        mean_entropy: mean(&|s| s.entropy),
        mean_flip_rate: mean(&|s| s.flip_rate),
        mean_accuracy_across_runs: mean(&|s| s.accuracy),
        accuracy_ci95: bootstrap_ci(&accs, bootstrap_seed),
        accuracy_per_repeat: mean_std(&acc_per_repeat),
        macro_f1_per_repeat: mean_std(&f1_per_repeat),
        stability_at_k_by_gold: by_gold,
    }
}

/// Percentile bootstrap 95% interval of the mean of `xs`.
pub fn bootstrap_ci(xs: &[f64], seed: u64) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = xs.len();
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| xs[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        means
            [((q * (BOOTSTRAP_RESAMPLES - 1) as f64).round() as usize).min(BOOTSTRAP_RESAMPLES - 1)]
    };
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::*;

    fn p(l: Option<Label>) -> Prediction {
        l.map(Prediction::Label).unwrap_or(Prediction::Invalid)
    }

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn per_item_figures_by_hand() {
        // T, T, R, T: mode T (3/4), not stable, correct for gold T,
        // accuracy 3/4, flips: T→T no, T→R yes, R→T yes = 2/3,
        // entropy: p = (3/4, 1/4): 0.811278124459 bits / log2(4) = 0.405639062229.
        let r = Runs {
            gold: ToolCall,
            has_tools: true,
            preds: vec![
                p(Some(ToolCall)),
                p(Some(ToolCall)),
                p(Some(RequestForInfo)),
                p(Some(ToolCall)),
            ],
        };
        let s = item(&r).unwrap();
        assert_eq!(s.mode, p(Some(ToolCall)));
        approx(s.consistency, 0.75);
        assert!(!s.stable && s.mode_correct);
        approx(s.accuracy, 0.75);
        approx(s.flip_rate, 2.0 / 3.0);
        let h = -(0.75f64 * 0.75f64.log2() + 0.25 * 0.25f64.log2());
        approx(s.entropy, h / 2.0);
    }

    #[test]
    fn ties_go_to_the_first_seen_and_invalid_is_a_label() {
        let r = Runs {
            gold: CannotAnswer,
            has_tools: false,
            preds: vec![
                p(None),
                p(Some(CannotAnswer)),
                p(Some(CannotAnswer)),
                p(None),
            ],
        };
        let s = item(&r).unwrap();
        assert_eq!(s.mode, Prediction::Invalid);
        assert!(!s.mode_correct);
        approx(s.entropy, 1.0 / 2.0); // 1 bit over log2(4)
        let one = Runs {
            gold: Direct,
            has_tools: false,
            preds: vec![p(Some(Direct))],
        };
        let s = item(&one).unwrap();
        assert!(s.stable);
        approx(s.entropy, 0.0);
        approx(s.flip_rate, 0.0);
        assert!(item(&Runs {
            gold: Direct,
            has_tools: false,
            preds: vec![]
        })
        .is_none());
    }

    #[test]
    fn aggregates_by_hand() {
        // Item 1: T,T (stable, correct). Item 2: R,C (unstable; mode R correct).
        // Item 3: C,C with gold R (stable, wrong).
        let items = vec![
            Runs {
                gold: ToolCall,
                has_tools: true,
                preds: vec![p(Some(ToolCall)); 2],
            },
            Runs {
                gold: RequestForInfo,
                has_tools: true,
                preds: vec![p(Some(RequestForInfo)), p(Some(CannotAnswer))],
            },
            Runs {
                gold: RequestForInfo,
                has_tools: true,
                preds: vec![p(Some(CannotAnswer)); 2],
            },
        ];
        let m = compute(&items, 2, 1);
        approx(m.stability_at_k, 2.0 / 3.0);
        approx(m.mean_consistency_at_k, (1.0 + 0.5 + 1.0) / 3.0);
        approx(m.stable_correct, 1.0 / 3.0);
        approx(m.stable_wrong, 1.0 / 3.0);
        approx(m.mode_correct, 2.0 / 3.0);
        approx(m.mean_accuracy_across_runs, (1.0 + 0.5 + 0.0) / 3.0);
        approx(m.mean_flip_rate, 1.0 / 3.0);
        // Repeat 0: T,R,C → 2/3 correct; repeat 1: T,C,C → 1/3.
        approx(m.accuracy_per_repeat.mean, 0.5);
        approx(m.accuracy_per_repeat.std, 1.0 / 6.0);
        approx(m.stability_at_k_by_gold["request_for_info"], 0.5);
        let (lo, hi) = m.accuracy_ci95;
        assert!(lo <= m.mean_accuracy_across_runs && m.mean_accuracy_across_runs <= hi);
        assert_eq!(compute(&items, 2, 1), m, "bootstrap is seeded");
    }
}
