//! The session's tracking record: `mlflow_ids.json` (which MLflow runs mirror
//! the session, or that it is offline, and what is still unsent) and
//! `mlflow_uploads.json` (which artifact files each run already holds).

use crate::store::{read_json, write_json_atomic};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the ids record in a session directory.
pub const IDS_FILE: &str = "mlflow_ids.json";
/// File name of the upload manifest in a session directory.
pub const UPLOADS_FILE: &str = "mlflow_uploads.json";

/// Whether the session is mirrored to a tracking server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No tracking server was configured: everything is local only.
    #[default]
    Offline,
    /// Tracked on `tracking_uri`.
    Online,
}

/// `mlflow_ids.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MlflowIds {
    /// Layout version.
    #[serde(default = "schema")]
    pub schema_version: u32,
    /// Offline or online.
    #[serde(default)]
    pub mode: Mode,
    /// Tracking server (never with credentials).
    #[serde(default)]
    pub tracking_uri: Option<String>,
    /// Experiment name.
    #[serde(default)]
    pub experiment_name: Option<String>,
    /// Experiment id.
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// The session's parent run.
    #[serde(default)]
    pub parent_run_id: Option<String>,
    /// Child run per method namespace.
    #[serde(default)]
    pub child_run_ids: BTreeMap<String, String>,
    /// Whether MLflow holds everything the session has locally (as of
    /// `updated_at`); false while running, offline, or after a failed call.
    #[serde(default)]
    pub synced: bool,
    /// What could not be sent (run `w2c sync`).
    #[serde(default)]
    pub pending: Vec<String>,
    /// Last update, UTC.
    #[serde(default)]
    pub updated_at: String,
}

fn schema() -> u32 {
    1
}

impl MlflowIds {
    /// Reads the file; a missing one reads as empty (offline, no ids).
    pub fn load(session_dir: &Path) -> Result<MlflowIds> {
        let path = session_dir.join(IDS_FILE);
        if !path.exists() {
            return Ok(MlflowIds {
                schema_version: schema(),
                ..Default::default()
            });
        }
        read_json(&path)
    }

    /// Whether the session has the file.
    pub fn exists(session_dir: &Path) -> bool {
        session_dir.join(IDS_FILE).exists()
    }

    /// Writes the file atomically.
    pub fn save(&mut self, session_dir: &Path) -> Result<()> {
        self.schema_version = schema();
        self.updated_at = crate::store::session::now_utc();
        write_json_atomic(&session_dir.join(IDS_FILE), self)
    }
}

/// An uploaded file as recorded in the upload manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// sha256 of what was uploaded.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `mlflow_uploads.json`: run id → remote path → what was uploaded there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadManifest {
    /// Uploaded files by run.
    #[serde(default)]
    pub runs: BTreeMap<String, BTreeMap<String, Uploaded>>,
}

impl UploadManifest {
    /// Reads the manifest; missing or unreadable reads as empty (everything
    /// is uploaded again, which is safe).
    pub fn load(session_dir: &Path) -> UploadManifest {
        read_json(&session_dir.join(UPLOADS_FILE)).unwrap_or_default()
    }

    /// Writes it atomically.
    pub fn save(&self, session_dir: &Path) -> Result<()> {
        write_json_atomic(&session_dir.join(UPLOADS_FILE), self)
    }
}

/// One entry of an `artifact_manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the run's artifact root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content.
    pub sha256: String,
}

/// `artifact_manifest.json`: every file uploaded to a run (except itself).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    /// Session fingerprint.
    pub fingerprint: String,
    /// Namespace (or `session` for the parent run).
    pub namespace: String,
    /// When it was written.
    pub written_at: String,
    /// Files, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// Name of the artifact manifest file.
pub const ARTIFACT_MANIFEST: &str = "artifact_manifest.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ids_read_as_offline_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = MlflowIds::load(dir.path()).unwrap();
        assert_eq!(ids.mode, Mode::Offline);
        assert!(ids.parent_run_id.is_none());
        ids.mode = Mode::Online;
        ids.parent_run_id = Some("abc".into());
        ids.child_run_ids.insert("mcq".into(), "def".into());
        ids.save(dir.path()).unwrap();
        let back = MlflowIds::load(dir.path()).unwrap();
        assert_eq!(back, ids);
    }
}
