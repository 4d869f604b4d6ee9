//! Where each file of a session lives: the one place that joins
//! `checkpoints/` and `artifacts_local/` paths.

use crate::shard::Shard;
use std::path::{Path, PathBuf};

/// File and directory names inside a session directory.
pub mod names {
    /// The session's manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// The OS lock file.
    pub const LOCK: &str = ".lock";
    /// Directory of the per-namespace checkpoints.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// Directory of the per-namespace artifacts.
    pub const ARTIFACTS: &str = "artifacts_local";
    /// One line per finished work item.
    pub const RESULTS: &str = "results.jsonl";
    /// One line per item that failed after its retries; retried on resume.
    pub const ERRORS: &str = "errors.jsonl";
    /// Audit events, once each.
    pub const AUDIT: &str = "audit_fallbacks.jsonl";
    /// Completion marker, written last.
    pub const DONE: &str = "_DONE.json";
    /// Settings of the namespace.
    pub const SETTINGS: &str = "method_settings.json";
    /// One line per process that worked on the namespace (wall time, counts).
    pub const RUN_LOG: &str = "run_log.jsonl";
    /// Finished steps of items without a record yet (see
    /// [`crate::store::steps`]); a dot file, like `.lock`: a working file,
    /// never an artifact (not uploaded to MLflow).
    pub const STEPS: &str = ".steps.jsonl";
    /// Call log (artifacts).
    pub const CALLS: &str = "llm_calls.jsonl";
    /// Metrics (artifacts).
    pub const METRICS: &str = "metrics.json";
    /// One line per example (artifacts).
    pub const PREDICTIONS: &str = "predictions.jsonl";
    /// Audit event counts (artifacts).
    pub const AUDIT_SUMMARY: &str = "audit_summary.json";
    /// Directory of a namespace's shard files, and of the shards' locks.
    pub const SHARDS: &str = "shards";
    /// A shard's marker: every item of its slice of the namespace has a
    /// result (written by the shard, read by whoever finalizes).
    pub const SLICE_DONE: &str = "_SLICE_DONE.json";
    /// Held (OS lock) by whoever finalizes a namespace of a sharded session.
    pub const FINALIZE_LOCK: &str = ".finalize.lock";
    /// Held (OS lock) while a shard creates or plans the session.
    pub const PLAN_LOCK: &str = ".plan.lock";
}

/// The two directories of one namespace and the files in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDir {
    /// Namespace name (`mcq`, `llm_judge.target`, `mcq~<hash12>`...).
    pub name: String,
    /// `checkpoints/<ns>/`.
    pub checkpoints: PathBuf,
    /// `artifacts_local/<ns>/`.
    pub artifacts: PathBuf,
}

impl NamespaceDir {
    /// The directories of namespace `name` in `session_dir`.
    pub fn new(session_dir: &Path, name: &str) -> NamespaceDir {
        NamespaceDir {
            name: name.to_string(),
            checkpoints: session_dir.join(names::CHECKPOINTS).join(name),
            artifacts: session_dir.join(names::ARTIFACTS).join(name),
        }
    }

    /// A file in the checkpoint directory.
    pub fn checkpoint(&self, file: &str) -> PathBuf {
        self.checkpoints.join(file)
    }

    /// A file in the artifacts directory.
    pub fn artifact(&self, file: &str) -> PathBuf {
        self.artifacts.join(file)
    }

    /// `results.jsonl`.
    pub fn results(&self) -> PathBuf {
        self.checkpoint(names::RESULTS)
    }

    /// `errors.jsonl`.
    pub fn errors(&self) -> PathBuf {
        self.checkpoint(names::ERRORS)
    }

    /// `audit_fallbacks.jsonl`.
    pub fn audit(&self) -> PathBuf {
        self.checkpoint(names::AUDIT)
    }

    /// `_DONE.json`.
    pub fn done_marker(&self) -> PathBuf {
        self.checkpoint(names::DONE)
    }

    /// Whether the namespace has its `_DONE.json`.
    pub fn is_done(&self) -> bool {
        self.done_marker().exists()
    }

    /// `method_settings.json`.
    pub fn settings(&self) -> PathBuf {
        self.checkpoint(names::SETTINGS)
    }

    /// `run_log.jsonl`.
    pub fn run_log(&self) -> PathBuf {
        self.checkpoint(names::RUN_LOG)
    }

    /// `llm_calls.jsonl`.
    pub fn calls(&self) -> PathBuf {
        self.artifact(names::CALLS)
    }

    /// `metrics.json`.
    pub fn metrics(&self) -> PathBuf {
        self.artifact(names::METRICS)
    }

    /// `predictions.jsonl`.
    pub fn predictions(&self) -> PathBuf {
        self.artifact(names::PREDICTIONS)
    }

    /// `checkpoints/<ns>/shards/shard-I-of-N/`: every file one shard writes.
    pub fn shard_dir(&self, shard: Shard) -> PathBuf {
        self.checkpoints.join(names::SHARDS).join(shard.dir_name())
    }

    /// The shard directories the namespace has (any shard count), sorted.
    pub fn shard_dirs(&self) -> Vec<(Shard, PathBuf)> {
        let mut out: Vec<(Shard, PathBuf)> =
            std::fs::read_dir(self.checkpoints.join(names::SHARDS))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| {
                    let shard = Shard::from_dir_name(&e.file_name().to_string_lossy())?;
                    Some((shard, e.path()))
                })
                .collect();
        out.sort_by_key(|(s, _)| (s.count, s.index));
        out
    }

    /// The files one process appends to: the namespace's own for an
    /// unsharded process, the shard's directory for a shard.
    pub fn writer(&self, shard: Option<Shard>) -> WriterFiles {
        match shard {
            None => WriterFiles {
                shard: None,
                dir: self.checkpoints.clone(),
                results: self.results(),
                errors: self.errors(),
                audit: self.audit(),
                run_log: self.run_log(),
                calls: self.calls(),
                steps: self.checkpoint(names::STEPS),
            },
            Some(s) => {
                let dir = self.shard_dir(s);
                WriterFiles {
                    shard: Some(s),
                    results: dir.join(names::RESULTS),
                    errors: dir.join(names::ERRORS),
                    audit: dir.join(names::AUDIT),
                    run_log: dir.join(names::RUN_LOG),
                    calls: dir.join(names::CALLS),
                    steps: dir.join(names::STEPS),
                    dir,
                }
            }
        }
    }

    /// Every `results.jsonl` holding the namespace's records: its own, then
    /// each shard's ([`NamespaceDir::shard_dirs`] order).
    pub fn results_files(&self) -> Vec<PathBuf> {
        std::iter::once(self.results())
            .chain(
                self.shard_dirs()
                    .into_iter()
                    .map(|(_, d)| d.join(names::RESULTS)),
            )
            .collect()
    }

    /// Every `errors.jsonl` of the namespace (its own, then each shard's).
    pub fn errors_files(&self) -> Vec<PathBuf> {
        std::iter::once(self.errors())
            .chain(
                self.shard_dirs()
                    .into_iter()
                    .map(|(_, d)| d.join(names::ERRORS)),
            )
            .collect()
    }
}

/// The files one process writes for a namespace (see [`NamespaceDir::writer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterFiles {
    /// The shard writing, if the process is one.
    pub shard: Option<Shard>,
    /// The directory of the files below.
    pub dir: PathBuf,
    /// One line per finished item.
    pub results: PathBuf,
    /// Items that failed after their retries.
    pub errors: PathBuf,
    /// Audit events.
    pub audit: PathBuf,
    /// One line per process pass.
    pub run_log: PathBuf,
    /// The call log.
    pub calls: PathBuf,
    /// The finished calls of items in flight (`.steps.jsonl`, removed
    /// once every item of this writer has a record).
    pub steps: PathBuf,
}

/// `shards/shard-I-of-N.lock` of a session: held by the process running
/// that shard.
pub fn shard_lock(session_dir: &Path, shard: Shard) -> PathBuf {
    session_dir
        .join(names::SHARDS)
        .join(format!("{}.lock", shard.dir_name()))
}

/// `manifest.json` of a session directory.
pub fn manifest(session_dir: &Path) -> PathBuf {
    session_dir.join(names::MANIFEST)
}

/// The session's own `audit_fallbacks.jsonl`: events about its inputs
/// (dataset rows accepted as written), not about one method's items.
pub fn session_audit(session_dir: &Path) -> PathBuf {
    session_dir.join(names::AUDIT)
}

/// The session's own files that go to its MLflow parent run, as
/// (artifact path, file): `manifest.json`, and `audit_fallbacks.jsonl` when
/// the session has one.
pub fn session_files(session_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = vec![(names::MANIFEST.to_string(), manifest(session_dir))];
    let audit = session_audit(session_dir);
    if audit.exists() {
        files.push((names::AUDIT.to_string(), audit));
    }
    files
}

/// `checkpoints/` of a session directory.
pub fn checkpoints(session_dir: &Path) -> PathBuf {
    session_dir.join(names::CHECKPOINTS)
}

/// `artifacts_local/` of a session directory.
pub fn artifacts(session_dir: &Path) -> PathBuf {
    session_dir.join(names::ARTIFACTS)
}
