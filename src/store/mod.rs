//! The session store: everything w2c keeps on disk, at the bottom of the
//! dependency graph. It owns the layout of a session directory
//! ([`layout`]), how a command names a session ([`address`]:
//! `RUN_KEY/FINGERPRINT`), the manifest, lock and namespaces ([`session`]), the
//! crash-safe file primitives ([`jsonl`], [`files`]), the typed records
//! every other layer reads and writes ([`records`]) and how far a session
//! has come ([`census`]), and the files of sessions run in shards
//! ([`shards`]). Nothing here knows
//! about methods, LLMs or MLflow.
//!
//! ```text
//! <runs_dir>/<RUN_KEY>/sessions/<FP16>/
//!   manifest.json           fingerprint, canonical payload, resolved config
//!   .lock                   OS lock held by the one process writing the session
//!   audit_fallbacks.jsonl   events about the inputs, when there are any
//!   checkpoints/<ns>/       method_settings.json, results.jsonl, errors.jsonl,
//!                           audit_fallbacks.jsonl, run_log.jsonl, _DONE.json,
//!                           .steps.jsonl (finished calls of items in flight)
//!   artifacts_local/<ns>/   metrics.json, predictions.jsonl, llm_calls.jsonl, ...
//!   mlflow_ids.json         written by the tracking observer
//! ```

pub mod address;
pub mod census;
pub mod files;
pub mod jsonl;
pub mod layout;
pub mod records;
pub mod session;
pub mod shards;
pub mod steps;

pub use census::{census, NamespaceCount, NamespaceState};
pub use files::{
    file_digest, open_regular, read_json, read_regular, write_bytes_atomic, write_json_atomic,
    write_user_file,
};
pub use jsonl::{load_jsonl, read_jsonl, read_jsonl_lines, JsonlWriter, LoadReport};
pub use layout::{names, NamespaceDir, WriterFiles};
pub use records::{
    DoneMarker, ErrorLine, FileDigest, MethodSettings, MetricsFile, PredictionRow, RunLogLine,
    Usage, UsageTotals,
};
pub use session::{FoundSession, Manifest, PlannedNamespace, Session};
pub use steps::StepLog;
