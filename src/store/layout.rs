//! Where each file of a session lives: the one place that joins
//! `checkpoints/` and `artifacts_local/` paths.

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
}

/// `manifest.json` of a session directory.
pub fn manifest(session_dir: &Path) -> PathBuf {
    session_dir.join(names::MANIFEST)
}

/// `checkpoints/` of a session directory.
pub fn checkpoints(session_dir: &Path) -> PathBuf {
    session_dir.join(names::CHECKPOINTS)
}

/// `artifacts_local/` of a session directory.
pub fn artifacts(session_dir: &Path) -> PathBuf {
    session_dir.join(names::ARTIFACTS)
}
