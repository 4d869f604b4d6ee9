//! Stability sweeps: a method repeated K times per example at one
//! temperature. A sweep is the same method with repeat keys (`uuid#r`) and
//! per-repeat seeds; this module owns what differs — the items, the seeds and
//! the stability conclusion over each example's K predictions.

use super::Scores;
use crate::dataset::Example;
use crate::engine::WorkItem;
use crate::labels::Prediction;
use crate::store::PredictionRow;
use serde_json::json;

/// Namespace name of a stability sweep: `stability_<method>_k=<K>_T=<temp>`.
pub fn sweep_name(method: &str, k: u32, temperature: f64) -> String {
    format!("stability_{method}_k={k}_T={temperature:?}")
}

/// A stability sweep at one temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Repetitions per example.
    pub k: u32,
    /// Sampling temperature of the repetitions.
    pub temperature: f64,
    /// How repetitions are seeded.
    pub seed_mode: crate::config::SeedMode,
}

impl Sweep {
    /// The seed repetition `repeat` sends.
    pub fn seed(&self, base: u64, repeat: u32) -> u64 {
        match self.seed_mode {
            crate::config::SeedMode::PerRepeat => base.wrapping_add(u64::from(repeat)),
            crate::config::SeedMode::Fixed => base,
        }
    }

    /// Work items: every example × every repetition.
    pub fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        examples
            .iter()
            .enumerate()
            .flat_map(|(index, e)| {
                (0..self.k).map(move |r| WorkItem {
                    key: WorkItem::key_for(&e.uuid, Some(r)),
                    index,
                    repeat: Some(r),
                })
            })
            .collect()
    }

    /// Stability metrics, the metrics of each example's mode prediction and
    /// the per-example rows, from a lookup of each `uuid#repeat` key's
    /// prediction. `seed` seeds the bootstrap intervals.
    pub fn conclude(
        &self,
        examples: &[Example],
        seed: u64,
        prediction: impl Fn(&str) -> Option<Prediction>,
    ) -> Scores {
        let runs: Vec<crate::stability::Runs> = examples
            .iter()
            .map(|e| crate::stability::Runs {
                gold: e.gold,
                has_tools: !e.tools.is_empty(),
                preds: (0..self.k)
                    .filter_map(|r| prediction(&WorkItem::key_for(&e.uuid, Some(r))))
                    .collect(),
            })
            .collect();
        let stability = crate::stability::compute(&runs, self.k as usize, seed);
        let per_item: Vec<Option<crate::stability::ItemStability>> =
            runs.iter().map(crate::stability::item).collect();
        // An example none of whose repeats has a prediction is unscored,
        // not wrong.
        let metrics = super::score(
            &examples
                .iter()
                .zip(&per_item)
                .filter_map(|(e, s)| Some((e.gold, s.as_ref()?.mode, e.tools.len())))
                .collect::<Vec<_>>(),
        );
        let predictions = examples
            .iter()
            .zip(runs.iter().zip(&per_item))
            .map(|(e, (r, s))| {
                let row = PredictionRow::for_example(e, s.as_ref().map(|s| s.mode)).with(json!({
                    "runs": r.preds,
                    "consistency": s.as_ref().map(|s| s.consistency),
                    "stable": s.as_ref().map(|s| s.stable),
                }));
                // No repeat has a prediction (each was unscored).
                match s {
                    Some(_) => row,
                    None => row.with(json!({"unscored": {"reason": "no scored repeat"}})),
                }
            })
            .collect();
        Scores {
            n_examples: examples.len(),
            metrics,
            counts: Default::default(),
            stability: Some(stability),
            variants: None,
            official_judge: None,
            predictions,
            consistencies: Some(
                per_item
                    .iter()
                    .filter_map(|s| s.as_ref().map(|s| s.consistency))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_store_reads_k_back_from_every_sweep_name() {
        for (method, k, t) in [("mcq", 3, 0.7), ("llm_judge", 10, 1.0), ("mcq", 1, 0.0)] {
            let name = super::sweep_name(method, k, t);
            assert_eq!(
                crate::store::census::repeats_from_name(&name),
                Some(k as usize)
            );
            assert_eq!(
                crate::store::census::repeats_from_name(&format!("{name}.target")),
                Some(k as usize)
            );
        }
    }
}
