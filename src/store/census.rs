//! How far a session has come, namespace by namespace, in one unit — work
//! items (examples × repeats) — for every reader that counts: `w2c status`,
//! `w2c ls`, the run's overall progress and `w2c verify`. The namespaces are
//! the session's plan (recorded by the latest run) followed by any other
//! namespace it claimed; a planned namespace with no file yet counts 0.

use super::files::read_json;
use super::layout::NamespaceDir;
use super::records::DoneMarker;
use super::session::{self, Manifest};
use crate::shard::Shard;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Where a namespace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceState {
    /// Planned, no result yet.
    NotStarted,
    /// Some results, no `_DONE.json`.
    Partial,
    /// `_DONE.json` written.
    Done,
}

/// One namespace's count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceCount {
    /// The namespace's name.
    pub namespace: String,
    /// Items with a result.
    pub done: usize,
    /// Items in the namespace.
    pub total: usize,
    /// Items per example (a stability sweep's K; else 1).
    pub repeats: usize,
    /// Where it stands.
    pub state: NamespaceState,
    /// Whether the latest run planned it (else it was claimed by an earlier
    /// run, e.g. under other settings).
    pub planned: bool,
    /// For a session run in shards, a namespace not done yet: each shard's
    /// slice (of the planned shard count).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardCount>,
}

/// How far one shard's slice of a namespace has come.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardCount {
    /// The shard.
    #[serde(serialize_with = "as_text")]
    pub shard: Shard,
    /// Items of its slice with a result.
    pub done: usize,
    /// Items in its slice.
    pub total: usize,
    /// Whether the shard marked its slice done.
    pub marked_done: bool,
}

fn as_text<S: serde::Serializer>(shard: &Shard, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(shard)
}

impl NamespaceCount {
    /// `done/total`, with the examples beside it when an item is not an
    /// example (`268/270 (90 examples × 3)`).
    pub fn progress_text(&self) -> String {
        let base = format!("{}/{}", self.done, self.total);
        if self.repeats > 1 {
            format!(
                "{base} ({} examples × {})",
                self.total / self.repeats,
                self.repeats
            )
        } else {
            base
        }
    }
}

/// Every namespace of the session in `dir`: the plan's, in order, then the
/// other claimed ones by name.
pub fn census(dir: &Path, manifest: &Manifest) -> Vec<NamespaceCount> {
    let positions = Positions::of(manifest);
    let mut out: Vec<NamespaceCount> = manifest
        .plan
        .iter()
        .map(|p| count(dir, &p.namespace, p.items, p.repeats, true, &positions))
        .collect();
    let mut claimed: Vec<String> = manifest.namespaces.keys().cloned().collect();
    claimed.extend(session::namespaces(dir).into_iter().map(|(name, _)| name));
    claimed.sort();
    claimed.dedup();
    for name in claimed {
        if out.iter().any(|c| c.namespace == name) {
            continue;
        }
        let repeats = repeats_from_name(&name).unwrap_or(1);
        out.push(count(
            dir,
            &name,
            manifest.n_examples * repeats,
            repeats,
            false,
            &positions,
        ));
    }
    out
}

/// Where each selected example is in the selection, and the session's
/// shard count: what per-shard counts need.
struct Positions {
    of_uuid: HashMap<String, usize>,
    n_examples: usize,
    shards: Option<usize>,
}

impl Positions {
    fn of(manifest: &Manifest) -> Positions {
        let shards = manifest.shards.filter(|&n| n > 1);
        Positions {
            of_uuid: if shards.is_some() {
                manifest
                    .example_ids
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (u.clone(), i))
                    .collect()
            } else {
                HashMap::new()
            },
            n_examples: manifest.n_examples,
            shards,
        }
    }
}

fn count(
    dir: &Path,
    name: &str,
    planned: usize,
    repeats: usize,
    in_plan: bool,
    positions: &Positions,
) -> NamespaceCount {
    let ns = NamespaceDir::new(dir, name);
    let mut shards = Vec::new();
    let (done, total, state) = match read_json::<DoneMarker>(&ns.done_marker()) {
        Ok(marker) => (marker.n_items, marker.n_items, NamespaceState::Done),
        Err(_) => {
            let keys = result_keys(&ns);
            if let Some(n) = positions.shards {
                shards = shard_counts(&ns, &keys, n, repeats, positions);
            }
            let done = keys.len().min(planned);
            let state = if done == 0 {
                NamespaceState::NotStarted
            } else {
                NamespaceState::Partial
            };
            (done, planned, state)
        }
    };
    NamespaceCount {
        namespace: name.to_string(),
        done,
        total,
        repeats,
        state,
        planned: in_plan,
        shards,
    }
}

/// Each shard's slice of `keys` (a key is `uuid` or `uuid#repeat`).
fn shard_counts(
    ns: &NamespaceDir,
    keys: &HashSet<String>,
    count: usize,
    repeats: usize,
    positions: &Positions,
) -> Vec<ShardCount> {
    let mut done = vec![0usize; count];
    for key in keys {
        let uuid = key.split_once('#').map_or(key.as_str(), |(u, _)| u);
        if let Some(&p) = positions.of_uuid.get(uuid) {
            done[p % count] += 1;
        }
    }
    (0..count)
        .filter_map(|index| Shard::new(index, count).ok())
        .map(|shard| {
            let total = shard.examples_of(positions.n_examples) * repeats;
            ShardCount {
                shard,
                done: done[shard.index].min(total),
                total,
                marked_done: super::shards::slice_done(ns, shard).is_some(),
            }
        })
        .collect()
}

/// Distinct item keys with a result in any of the namespace's results files
/// (its own and every shard's), streamed; unreadable files count nothing.
pub fn result_keys(ns: &NamespaceDir) -> HashSet<String> {
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        key: String,
    }
    let mut keys = HashSet::new();
    for path in ns.results_files() {
        let _ = super::jsonl::read_jsonl(&path, |k: KeyOnly| {
            keys.insert(k.key);
        });
    }
    keys
}

/// Distinct item keys with a result in the namespace (0 when none).
pub fn distinct_result_keys(ns: &NamespaceDir) -> usize {
    result_keys(ns).len()
}

/// The K of a stability sweep's namespace name
/// (`stability_<method>_k=<K>_T=<T>`, `methods::sweep_name`), for sessions
/// written before the plan was recorded.
pub fn repeats_from_name(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("stability_")?;
    let k = rest.split("_k=").nth(1)?.split("_T=").next()?;
    k.parse().ok().filter(|&k| k > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_read_from_sweep_names_only() {
        assert_eq!(repeats_from_name("stability_mcq_k=3_T=0.7"), Some(3));
        assert_eq!(
            repeats_from_name("stability_llm_judge_k=12_T=1.0.target"),
            Some(12)
        );
        assert_eq!(repeats_from_name("mcq"), None);
        assert_eq!(repeats_from_name("mcq~abc_k=3_T=1"), None);
        assert_eq!(repeats_from_name("stability_mcq_k=0_T=0.7"), None);
    }

    #[test]
    fn progress_text_names_examples_where_items_differ() {
        let c = NamespaceCount {
            namespace: "s".into(),
            done: 268,
            total: 270,
            repeats: 3,
            state: NamespaceState::Partial,
            planned: true,
            shards: Vec::new(),
        };
        assert_eq!(c.progress_text(), "268/270 (90 examples × 3)");
        let plain = NamespaceCount { repeats: 1, ..c };
        assert_eq!(plain.progress_text(), "268/270");
    }
}
