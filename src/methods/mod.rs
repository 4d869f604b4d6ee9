//! Evaluation methods: what each method asks the model and how it scores
//! the answers. Each method is a type implementing [`Method`], the one
//! interface the runner's skeleton drives: its settings (which name its
//! namespace), its work items, the async work of one item, and its
//! conclusion once every item has a record. The [`crate::engine`] runs the
//! items; the [`crate::runner`] does everything around them.
//!
//! To add a method: a module here with its record type (implementing
//! [`crate::engine::Record`]) and a type implementing [`Method`], then one
//! arm in the runner's plan.

pub mod echo_probe;
pub mod llm_judge;
pub mod logprob;
pub mod mcq;
pub mod mcq_logprob;
pub mod sweep;
pub mod vocabulary;

use crate::audit::AuditSummary;
use crate::config::Price;
use crate::dataset::Example;
use crate::engine::{ItemOutput, ItemSteps, Record, WorkItem};
use crate::llm::Client;
use crate::metrics::Metrics;
use crate::stability::StabilityMetrics;
use crate::store::{MethodSettings, NamespaceDir, PredictionRow, UsageTotals};
use anyhow::Result;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

pub use sweep::{sweep_name, Sweep};

/// What a method plans apart from the model it calls: the settings that
/// name its namespace (hashed) and its work items.
pub trait Plan {
    /// The settings that name the method's namespace (hashed).
    fn settings(&self) -> MethodSettings;

    /// Every work item of the namespace, in order.
    fn items(&self, examples: &[Example]) -> Vec<WorkItem>;

    /// Work items per example (a stability sweep's K); `items` gives
    /// exactly this many per example.
    fn repeats(&self) -> usize {
        1
    }
}

/// The model a method's items call: its client and its price (when
/// `[prices]` lists it), which totals the namespace's usage.
#[derive(Clone)]
pub struct Caller {
    /// The model's client.
    pub client: Arc<Client>,
    /// The model's price.
    pub price: Option<Price>,
}

/// A method's plan bound to the model it calls: what the runner runs.
#[derive(Clone)]
pub struct Bound<P> {
    /// The plan.
    pub plan: P,
    /// The model its items call.
    pub caller: Caller,
}

/// What a method plugs into the runner's one skeleton: its plan, the model
/// it calls, and the work of one item.
pub trait Method {
    /// The checkpoint record of one work item.
    type Record: Record;
    /// The method's plan (settings and items).
    type Plan: Plan;

    /// The plan and the model its items call.
    fn bound(&self) -> &Bound<Self::Plan>;

    /// The method's plan.
    fn plan(&self) -> &Self::Plan {
        &self.bound().plan
    }

    /// The model the items call; its client's concurrency drives the engine.
    fn caller(&self) -> &Caller {
        &self.bound().caller
    }

    /// The settings that name the method's namespace (the plan's unless a
    /// method runs a second stream of the same plan).
    fn settings(&self) -> MethodSettings {
        self.plan().settings()
    }

    /// Every work item of the namespace, in order.
    fn items(&self, examples: &[Example]) -> Vec<WorkItem> {
        self.plan().items(examples)
    }

    /// Whether an item can run now (the judge skips items whose target
    /// answer is missing); skipped items leave the namespace unfinished.
    fn runnable(&self, _item: &WorkItem) -> bool {
        true
    }

    /// Whether the runner needs the records even when the namespace is
    /// already done (a judge's target answers feed its judge).
    fn records_needed_when_done(&self) -> bool {
        false
    }

    /// Runs once before the items (e.g. a capability probe, or a check that
    /// every example can be rendered); returns notes for the user. An error
    /// stops the method before any item runs: a [`NotStarted`] leaves the
    /// namespace unfinished and the run goes on (incomplete, exit 3); any
    /// other error stops the run.
    fn before_items(
        &self,
        _ns: &NamespaceDir,
        _examples: &[Example],
    ) -> impl Future<Output = Result<Vec<String>>> {
        async { Ok(Vec::new()) }
    }

    /// The work of one item: its calls and its record (or why it failed).
    /// An item that makes several calls saves each finished one in `steps`
    /// and takes those an earlier process saved from it, so a `kill -9`
    /// repeats only the call in flight.
    fn work(
        &self,
        ns: &str,
        item: WorkItem,
        example: &Example,
        steps: ItemSteps,
    ) -> impl Future<Output = ItemOutput<Self::Record>>;

    /// Token totals of the namespace's records, priced with the caller's
    /// price.
    fn usage(&self, records: &[&Self::Record]) -> UsageTotals {
        UsageTotals::sum(
            records.iter().map(|r| r.usage()),
            self.caller().price.as_ref(),
        )
    }

    /// Audit event counts of the namespace's records.
    fn audit(&self, records: &[&Self::Record]) -> AuditSummary {
        crate::audit::summarize(records.iter().flat_map(|r| r.audit_events()))
    }

    /// What the finished namespace produces, from every item's record in
    /// item order.
    fn conclude(&self, ctx: &Concluding<'_>, records: &[&Self::Record]) -> Result<Conclusion>;
}

/// A namespace that could not start because a request it needs before its
/// items failed after its retries (a timeout, a 5xx, a reply too large or
/// malformed), as an item's request can: the namespace stays unfinished, the
/// run goes on and ends incomplete (exit 3), and a resume tries again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotStarted(pub String);

/// What a method's conclusion may need besides its records.
#[derive(Debug, Clone, Copy)]
pub struct Concluding<'a> {
    /// The namespace's name.
    pub namespace: &'a str,
    /// The session's selected examples.
    pub examples: &'a [Example],
    /// The session's seed for bootstraps (a resumed and an uninterrupted run
    /// compute the same intervals).
    pub seed: u64,
}

impl Concluding<'_> {
    /// Where the namespace's records (the full texts) are, relative to the
    /// session directory, for rows that keep only a preview of a long text.
    pub fn results_path(&self) -> String {
        format!(
            "{}/{}/{}",
            crate::store::names::CHECKPOINTS,
            self.namespace,
            crate::store::names::RESULTS
        )
    }
}

/// What a finished namespace produces.
#[derive(Debug, Default)]
pub struct Conclusion {
    /// Its scores; `None` for a stream without metrics of its own (a
    /// judge's target answers).
    pub scores: Option<Scores>,
    /// Further artifacts, by file name.
    pub extra: Vec<(&'static str, Vec<u8>)>,
    /// Notes for the user.
    pub notes: Vec<String>,
}

/// The metrics part of a finished namespace.
#[derive(Debug)]
pub struct Scores {
    /// Examples the metrics cover (a sweep's examples, not its repeats).
    pub n_examples: usize,
    /// The headline metrics.
    pub metrics: Metrics,
    /// Method-specific counts (parse statuses, judge statuses, ties...).
    pub counts: BTreeMap<String, usize>,
    /// Sweep metrics, for stability sweeps.
    pub stability: Option<StabilityMetrics>,
    /// Per-variant metrics (`mcq_logprob`).
    pub variants: Option<BTreeMap<String, Metrics>>,
    /// NVIDIA's aggregate and the paper's LLM-as-judge columns
    /// (`llm_judge` under protocol `when2call`).
    pub official_judge: Option<crate::judge_protocol::aggregate::OfficialAggregate>,
    /// One row per example for `predictions.jsonl`.
    pub predictions: Vec<PredictionRow>,
    /// Per-example consistency, for a sweep's `consistency.svg`.
    pub consistencies: Option<Vec<f64>>,
}

/// Checks that `template` renders every example; the error names the
/// rows (uuid) and the field of each, up to five, and how many in all.
pub fn check_renders(
    what: &str,
    template: crate::chat_templates::ScoringTemplate,
    examples: &[Example],
) -> Result<()> {
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|e| {
            template
                .render(e)
                .err()
                .map(|err| format!("row uuid {}: {err}", e.uuid))
        })
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    let shown = failures
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    anyhow::bail!(
        "{what}: template `{}` cannot render {} of the {} selected examples (the method needs every one; choose another template or leave those rows out):\n  {shown}",
        template.name(),
        failures.len(),
        examples.len(),
    )
}

/// One work item per example, in selection order.
pub fn one_item_per_example(examples: &[Example]) -> Vec<WorkItem> {
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

/// What [`strip_reasoning`] does with a `<think>` that is never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenThink {
    /// Drop it and everything after it (an `mcq` answer never came).
    Drop,
    /// Keep it as text (a judge's verdict may still follow in it).
    Keep,
}

/// `text` without its `<think>...</think>` reasoning blocks.
pub fn strip_reasoning(text: &str, open: OpenThink) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        match rest[start..].find(CLOSE) {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + end + CLOSE.len()..];
            }
            None => {
                if open == OpenThink::Drop {
                    out.push_str(&rest[..start]);
                    rest = "";
                }
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Counts of a per-record status, by its serde name.
pub fn status_counts<S: serde::Serialize>(
    statuses: impl IntoIterator<Item = S>,
) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for s in statuses {
        let key = serde_json::to_value(s)?
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        *counts.entry(key).or_default() += 1;
    }
    Ok(counts)
}

/// The standard headline metrics of `(gold, prediction, n_tools)` triples.
pub fn score(records: &[(crate::labels::Label, crate::labels::Prediction, usize)]) -> Metrics {
    let scored: Vec<crate::metrics::Scored> = records
        .iter()
        .map(|(gold, pred, n_tools)| crate::metrics::Scored {
            gold: *gold,
            pred: *pred,
            has_tools: *n_tools > 0,
        })
        .collect();
    crate::metrics::compute(&scored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_blocks_go_and_an_open_one_is_dropped_or_kept() {
        let t = "<think>a</think>B<think>c</think> D";
        assert_eq!(strip_reasoning(t, OpenThink::Drop), "B D");
        assert_eq!(strip_reasoning(t, OpenThink::Keep), "B D");
        let open = "A <think>still thinking {\"x\": 1}";
        assert_eq!(strip_reasoning(open, OpenThink::Drop), "A ");
        assert_eq!(strip_reasoning(open, OpenThink::Keep), open);
        assert_eq!(strip_reasoning("plain", OpenThink::Drop), "plain");
    }
}
