//! Evaluation methods: what each method asks the model and how it scores
//! the answers. The [`crate::engine`] runs their work items; the
//! [`crate::runner`] wires them into namespaces.

pub mod echo_probe;
pub mod llm_judge;
pub mod logprob;
pub mod mcq;
pub mod mcq_logprob;

use crate::engine::WorkItem;

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
    pub fn items(&self, uuids: &[&str]) -> Vec<WorkItem> {
        uuids
            .iter()
            .enumerate()
            .flat_map(|(index, uuid)| {
                (0..self.k).map(move |r| WorkItem {
                    key: WorkItem::key_for(uuid, Some(r)),
                    index,
                    repeat: Some(r),
                })
            })
            .collect()
    }
}

/// One work item per example, in selection order.
pub fn one_item_per_example(examples: &[crate::dataset::Example]) -> Vec<WorkItem> {
    examples
        .iter()
        .enumerate()
        .map(|(index, e)| WorkItem {
            key: WorkItem::key_for(&e.uuid, None),
            index,
            repeat: None,
        })
        .collect()
}
