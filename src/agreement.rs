//! How far two raters agree on the same examples (pure logic): Cohen's κ
//! between two methods of one session (a judge against the multiple-choice
//! methods, or two judges over the same target answers) and Fleiss' κ over
//! the K repeats of a stability sweep, each with a percentile bootstrap
//! 95% interval.
//!
//! Categories are the four labels and `invalid`. The bootstrap draws
//! example indices with CPython's `random.Random(seed).randrange(n)`
//! ([`crate::pyrandom`]), a fresh generator per κ; a resample on which κ is
//! undefined (the expected agreement is 1: every rating in one category)
//! is skipped; the ends are the sorted values at `round(q × (m − 1))`, as
//! in [`crate::compare`].

use crate::labels::{Label, Prediction};
use crate::pyrandom::PyRandom;
use serde::Serialize;

/// Categories rated: the four labels, then `invalid`.
pub const CATEGORIES: usize = 5;

/// A prediction's category index ([`Label::index`], `invalid` last).
pub fn category(p: Prediction) -> usize {
    p.label().map_or(CATEGORIES - 1, Label::index)
}

/// A κ with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kappa {
    /// Examples rated by every rater.
    pub n: usize,
    /// Share of examples on which the raters agree (Cohen) or mean
    /// pairwise agreement per example (Fleiss).
    pub observed: Option<f64>,
    /// κ (`None` when undefined: every rating in one category).
    pub kappa: Option<f64>,
    /// 2.5th percentile of the bootstrap κs.
    pub lo: Option<f64>,
    /// 97.5th percentile.
    pub hi: Option<f64>,
    /// Standard deviation (n − 1) of the bootstrap κs.
    pub se: Option<f64>,
}

/// Cohen's κ of two raters' categories (as scikit-learn's
/// `cohen_kappa_score`): `(p_o − p_e) / (1 − p_e)`, p_e from each rater's
/// marginal shares; with the observed agreement p_o.
pub fn cohen(a: &[usize], b: &[usize]) -> (Option<f64>, Option<f64>) {
    let n = a.len().min(b.len());
    if n == 0 {
        return (None, None);
    }
    let (mut ma, mut mb, mut agree) = ([0usize; CATEGORIES], [0usize; CATEGORIES], 0usize);
    for (x, y) in a.iter().zip(b) {
        ma[*x] += 1;
        mb[*y] += 1;
        agree += usize::from(x == y);
    }
    let nf = n as f64;
    let p_o = agree as f64 / nf;
    let p_e: f64 = (0..CATEGORIES)
        .map(|c| ma[c] as f64 * mb[c] as f64)
        .sum::<f64>()
        / (nf * nf);
    let kappa = (p_e < 1.0).then(|| (p_o - p_e) / (1.0 - p_e));
    (kappa, Some(p_o))
}

/// Fleiss' κ of `counts[i][c]` (how many of the raters put example i in
/// category c; every example rated by the same number of raters, at least
/// two), as statsmodels' `fleiss_kappa(method="fleiss")`; with the mean
/// per-example agreement P̄.
pub fn fleiss(counts: &[[usize; CATEGORIES]]) -> (Option<f64>, Option<f64>) {
    let Some(first) = counts.first() else {
        return (None, None);
    };
    let r: usize = first.iter().sum();
    if r < 2 || counts.iter().any(|c| c.iter().sum::<usize>() != r) {
        return (None, None);
    }
    let (nf, rf) = (counts.len() as f64, r as f64);
    let p_bar = counts
        .iter()
        .map(|c| (c.iter().map(|&x| (x * x) as f64).sum::<f64>() - rf) / (rf * (rf - 1.0)))
        .sum::<f64>()
        / nf;
    let p_e: f64 = (0..CATEGORIES)
        .map(|k| {
            let p = counts.iter().map(|c| c[k] as f64).sum::<f64>() / (nf * rf);
            p * p
        })
        .sum();
    let kappa = (p_e < 1.0).then(|| (p_bar - p_e) / (1.0 - p_e));
    (kappa, Some(p_bar))
}

/// `stat` over `n` examples with a bootstrap interval: `stat(indices)` on
/// all of them, then on each of `resamples` resamples.
fn bootstrap(
    n: usize,
    seed: u64,
    resamples: usize,
    stat: impl Fn(&[usize]) -> (Option<f64>, Option<f64>),
) -> Kappa {
    let all: Vec<usize> = (0..n).collect();
    let (kappa, observed) = stat(&all);
    let mut values = Vec::with_capacity(resamples);
    if n > 0 && n < u32::MAX as usize {
        let mut rng = PyRandom::new(seed);
        let mut idx = Vec::with_capacity(n);
        for _ in 0..resamples {
            idx.clear();
            idx.extend((0..n).map(|_| rng.randbelow(n as u32) as usize));
            if let (Some(k), _) = stat(&idx) {
                values.push(k);
            }
        }
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        (!values.is_empty()).then(|| {
            values
                [((q * (values.len() - 1) as f64).round_ties_even() as usize).min(values.len() - 1)]
        })
    };
    Kappa {
        n,
        observed,
        kappa,
        lo: at(0.025),
        hi: at(0.975),
        se: crate::compare::bootstrap_se(&values),
    }
}

/// Cohen's κ of `a` and `b` (categories of the same examples) with its
/// bootstrap interval.
pub fn cohen_with_interval(a: &[usize], b: &[usize], seed: u64, resamples: usize) -> Kappa {
    let n = a.len().min(b.len());
    bootstrap(n, seed, resamples, |idx| {
        let pa: Vec<usize> = idx.iter().map(|&i| a[i]).collect();
        let pb: Vec<usize> = idx.iter().map(|&i| b[i]).collect();
        cohen(&pa, &pb)
    })
}

/// Fleiss' κ of `counts` with its bootstrap interval.
pub fn fleiss_with_interval(counts: &[[usize; CATEGORIES]], seed: u64, resamples: usize) -> Kappa {
    bootstrap(counts.len(), seed, resamples, |idx| {
        let picked: Vec<[usize; CATEGORIES]> = idx.iter().map(|&i| counts[i]).collect();
        fleiss(&picked)
    })
}

/// Landis & Koch's words for a κ, for a reader.
pub fn strength(kappa: Option<f64>) -> &'static str {
    match kappa {
        None => "undefined",
        Some(k) if k < 0.0 => "poor",
        Some(k) if k <= 0.2 => "slight",
        Some(k) if k <= 0.4 => "fair",
        Some(k) if k <= 0.6 => "moderate",
        Some(k) if k <= 0.8 => "substantial",
        Some(_) => "almost perfect",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohen_matches_a_hand_computation() {
        // 2×2: agree on 0,0 / 1,1 / 0,0 / 1,0: p_o = 3/4; marginals a
        // (2, 2), b (3, 1): p_e = (2×3 + 2×1) / 16 = 1/2; κ = 1/2.
        let (k, p) = cohen(&[0, 1, 0, 1], &[0, 1, 0, 0]);
        assert_eq!(p, Some(0.75));
        assert!((k.unwrap() - 0.5).abs() < 1e-15);
        // One category everywhere: undefined (scikit-learn gives nan).
        assert_eq!(cohen(&[2, 2], &[2, 2]).0, None);
        // Perfect agreement over two categories.
        assert_eq!(cohen(&[0, 1], &[0, 1]).0, Some(1.0));
    }

    #[test]
    fn fleiss_matches_a_hand_computation() {
        // Two examples, 3 raters: (3, 0) and (1, 2). P_i = (9 − 3)/6 = 1
        // and (1 + 4 − 3)/6 = 1/3: P̄ = 2/3; p = (4/6, 2/6): P_e = 5/9;
        // κ = (2/3 − 5/9) / (4/9) = 1/4.
        let c = [[3, 0, 0, 0, 0], [1, 2, 0, 0, 0]];
        let (k, p) = fleiss(&c);
        assert!((p.unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert!((k.unwrap() - 0.25).abs() < 1e-15);
        // Unequal raters per example: undefined.
        assert_eq!(fleiss(&[[2, 0, 0, 0, 0], [1, 0, 0, 0, 0]]).0, None);
    }

    #[test]
    fn a_constant_resample_is_skipped_not_counted() {
        // One disagreement among 10: many resamples miss it and are all
        // one category (κ undefined): they are skipped.
        let a = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let k = cohen_with_interval(&a, &b, 1, 200);
        assert_eq!(k.kappa, Some(0.0));
        assert!(k.lo.is_some_and(|x| x <= 0.0));
        assert_eq!(k.n, 10);
    }
}
