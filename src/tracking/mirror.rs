//! Mirroring one session into MLflow: find-or-create the parent and child
//! runs (reconnecting by stored id, then by tags, never duplicating), log
//! params once, final metrics idempotently, artifacts by sha256, and status.
//!
//! Everything here is derived from the session directory, so the same code
//! serves a live run and a later `w2c sync`.

use super::flatten::{self, batches};
use super::ids::{
    ArtifactManifest, ManifestEntry, MlflowIds, Mode, UploadManifest, Uploaded, ARTIFACT_MANIFEST,
};
use super::rest::{status, KeyValue, MetricPoint, MlflowClient, MlflowError, Run};
use crate::store::session::Manifest;
use crate::store::{layout, names, DoneMarker, NamespaceDir};
use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Tag holding the session fingerprint (parent and children).
pub const TAG_FINGERPRINT: &str = "w2c.fingerprint";
/// Tag holding the run key (parent and children).
pub const TAG_RUN_KEY: &str = "w2c.run_key";
/// Tag: `session` on the parent, `method` on children.
pub const TAG_KIND: &str = "w2c.kind";
/// Tag holding the method of a child.
pub const TAG_METHOD: &str = "w2c.method";
/// Tag holding the namespace of a child.
pub const TAG_NAMESPACE: &str = "w2c.namespace";
/// MLflow's parent link.
pub const TAG_PARENT: &str = "mlflow.parentRunId";
/// Parallel artifact uploads.
const UPLOAD_CONCURRENCY: usize = 4;

/// A param whose value in MLflow differs from the session's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MLflow run {run_id} already has param `{key}` = `{remote}`, but this session has `{local}`: the session's config changed since it was first tracked (start a new session, or track it in another experiment)")]
pub struct ParamConflict {
    /// The run.
    pub run_id: String,
    /// The param.
    pub key: String,
    /// Value in MLflow.
    pub remote: String,
    /// Value in the session.
    pub local: String,
}

/// Mirrors one session directory into one experiment.
pub struct Mirror {
    /// The REST client.
    pub client: MlflowClient,
    /// The session directory.
    pub session_dir: PathBuf,
    /// The session manifest.
    pub manifest: Manifest,
    /// The ids record (saved after every change).
    pub ids: MlflowIds,
    uploads: UploadManifest,
    experiment_id: String,
    parent: Option<Run>,
    children: HashMap<String, Run>,
    /// The target's logged model, once looked up (`None` inside: none).
    model: Option<Option<String>>,
    /// Failures that did not stop the step that met them (an artifact of
    /// the parent's setup): what the caller lists as pending.
    pub deferred: Vec<String>,
}

/// Whether an error is worth retrying later (server down, timeout, 5xx).
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.downcast_ref::<MlflowError>()
        .is_some_and(MlflowError::is_transient)
}

impl Mirror {
    /// Connects to the experiment (created if needed) and records the server
    /// in `mlflow_ids.json`. Stored run ids from another server are dropped.
    pub async fn connect(
        client: MlflowClient,
        experiment: &str,
        session_dir: &Path,
        manifest: Manifest,
    ) -> Result<Mirror> {
        let mut ids = MlflowIds::load(session_dir)?;
        let uri = client.base().to_string();
        let experiment_id = client.ensure_experiment(experiment).await?;
        if ids.tracking_uri.as_deref() != Some(uri.as_str())
            || ids.experiment_id.as_deref() != Some(experiment_id.as_str())
        {
            ids.parent_run_id = None;
            ids.child_run_ids.clear();
        }
        ids.mode = Mode::Online;
        ids.tracking_uri = Some(uri);
        ids.experiment_name = Some(experiment.to_string());
        ids.experiment_id = Some(experiment_id.clone());
        ids.synced = false;
        ids.save(session_dir)?;
        Ok(Mirror {
            client,
            session_dir: session_dir.to_path_buf(),
            manifest,
            ids,
            uploads: UploadManifest::load(session_dir),
            experiment_id,
            parent: None,
            children: HashMap::new(),
            model: None,
            deferred: Vec::new(),
        })
    }

    fn fingerprint(&self) -> &str {
        &self.manifest.fingerprint
    }

    fn session_filter(&self) -> String {
        format!(
            "tags.`{TAG_FINGERPRINT}` = '{}' and tags.`{TAG_RUN_KEY}` = '{}'",
            self.manifest.fingerprint, self.manifest.run_key
        )
    }

    /// Reuses the stored run if it still exists, is active and belongs to
    /// this session; otherwise the oldest run matching `filter`; otherwise a
    /// new one (whose id is saved at once).
    #[allow(clippy::too_many_arguments)]
    async fn find_or_create(
        &mut self,
        stored: Option<String>,
        filter: String,
        name: &str,
        start_time: i64,
        tags: Vec<KeyValue>,
        check: impl Fn(&Run) -> bool,
    ) -> Result<Run> {
        if let Some(id) = stored {
            if let Some(run) = self.client.get_run(&id).await? {
                if run.is_active() && check(&run) {
                    return Ok(run);
                }
            }
        }
        let filter = format!("{} and {filter}", self.session_filter());
        // A create whose reply was lost may still have made the run: search
        // again before every create.
        let mut last_err = None;
        for _ in 0..3 {
            let found = self
                .client
                .search_runs(&self.experiment_id, &filter)
                .await?;
            if let Some(run) = found.into_iter().next() {
                return Ok(run);
            }
            match self
                .client
                .create_run(&self.experiment_id, name, start_time, &tags)
                .await
            {
                Ok(run) => return Ok(run),
                Err(e) if e.is_transient() => {
                    last_err = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("could not create run `{name}`")))
    }

    fn parent_tags(&self) -> Vec<KeyValue> {
        let m = &self.manifest;
        let mut tags = super::identity::parent_tags(m);
        tags.extend([
            KeyValue::new("w2c.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("w2c.session_dir", self.session_dir.display().to_string()),
            KeyValue::new("mlflow.source.name", "w2c"),
            KeyValue::new("mlflow.source.type", "LOCAL"),
            KeyValue::new(
                "mlflow.note.content",
                format!(
                    "When2Call evaluation session `{}` (run key `{}`) of **{}**: {} examples of `{}`. One child run per method namespace; the headline metrics of each are here too, prefixed with the namespace (`mcq.accuracy`, `mcq.macro_f1_official`; a judge under NVIDIA's protocol heads with the paper's LLM-as-judge columns, `llm_judge.judge_table_f1`, `_acc`, `_tool_hall`). Each child holds one trace per example (the Traces tab). The local record is `{}`.",
                    crate::fingerprint::short(&m.fingerprint),
                    m.run_key,
                    self.target_model(),
                    m.n_examples,
                    self.dataset_name(),
                    self.session_dir.display()
                ),
            ),
        ]);
        if let Ok(user) = std::env::var("USER") {
            tags.push(KeyValue::new("mlflow.user", user));
        }
        tags
    }

    /// Name of the parent run: the target model, the run key and the
    /// fingerprint's first 8 digits.
    pub fn parent_name(&self) -> String {
        super::identity::parent_name(&self.manifest)
    }

    /// The target model.
    pub fn target_model(&self) -> String {
        super::identity::target_model(&self.manifest)
    }

    /// The dataset's name as MLflow shows it: the file's stem.
    pub fn dataset_name(&self) -> String {
        self.manifest
            .config
            .pointer("/dataset/path")
            .and_then(Value::as_str)
            .and_then(|p| Path::new(p).file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into())
    }

    /// The dataset as an MLflow dataset input: name, digest (the file's
    /// sha256, cut to the 32 digits MLflow stores), source, and a profile
    /// with the row count, the full sha256 and the selection.
    fn dataset_input(&self) -> Value {
        let p = &self.manifest.fingerprint_payload["dataset"];
        let sha = p["sha256"].as_str().unwrap_or_default();
        let path = self
            .manifest
            .config
            .pointer("/dataset/path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        serde_json::json!({
            "tags": [{"key": "mlflow.data.context", "value": "evaluation"}],
            "dataset": {
                "name": self.dataset_name(),
                "digest": crate::fingerprint::prefix(sha, 32),
                "source_type": "local",
                "source": serde_json::json!({"uri": path}).to_string(),
                "profile": serde_json::json!({
                    "num_rows": p["n_examples_in_file"],
                    "sha256": sha,
                    "n_selected": p["n_selected"],
                    "n_per_label": p["n_per_label"],
                    "subsample_seed": p["subsample_seed"],
                    "selected_ids_sha256": p["selected_ids_sha256"],
                }).to_string(),
            },
        })
    }

    /// The target's logged model in the experiment (MLflow 3's model
    /// record: the experiment's Models view), found by name or created.
    /// `None` when the server has no logged models or the name cannot be
    /// searched for.
    pub async fn ensure_model(&mut self) -> Result<Option<String>> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let name = self.target_model();
        if name.is_empty() || name.contains('\'') {
            self.model = Some(None);
            return Ok(None);
        }
        let found = self
            .client
            .search_logged_models(&self.experiment_id, &format!("name = '{name}'"))
            .await?;
        let id = match found.into_iter().next() {
            Some(id) => id,
            None => {
                let kind = self
                    .manifest
                    .fingerprint_payload
                    .pointer("/target/provider_kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.client
                    .create_logged_model(
                        &self.experiment_id,
                        &name,
                        &[
                            KeyValue::new("w2c.model", &name),
                            KeyValue::new("w2c.provider_kind", &kind),
                        ],
                    )
                    .await?
            }
        };
        self.model = Some(Some(id.clone()));
        Ok(Some(id))
    }

    /// Logs the dataset and the target's logged model as inputs of a run
    /// (inputs, not outputs: MLflow lists runs with model outputs as
    /// training runs, not evaluation runs).
    async fn log_run_inputs(&mut self, run_id: &str) -> Result<()> {
        let model = self.ensure_model().await?;
        let models: Vec<Value> = model
            .iter()
            .map(|id| serde_json::json!({"model_id": id}))
            .collect();
        self.client
            .log_inputs(run_id, &[self.dataset_input()], &models)
            .await?;
        Ok(())
    }

    /// Finds or creates the parent run, sets its tags (the resolved config
    /// among them) and logs its params (once: an identical value is
    /// skipped, a different one is a [`ParamConflict`]).
    pub async fn ensure_parent(&mut self) -> Result<Run> {
        if let Some(run) = &self.parent {
            return Ok(run.clone());
        }
        let fp = self.fingerprint().to_string();
        let mut tags = self.parent_tags();
        let run = self
            .find_or_create(
                self.ids.parent_run_id.clone(),
                format!("tags.`{TAG_KIND}` = 'session'"),
                &self.parent_name(),
                epoch_ms(&self.manifest.created_at).unwrap_or_else(super::rest::now_ms),
                tags.clone(),
                |r| r.tag(TAG_FINGERPRINT) == Some(fp.as_str()) && r.tag(TAG_PARENT).is_none(),
            )
            .await?;
        if self.ids.parent_run_id.as_deref() != Some(run.info.run_id.as_str()) {
            self.ids.parent_run_id = Some(run.info.run_id.clone());
            self.ids.save(&self.session_dir)?;
        }
        let (config_tags, long) = self.config_tags();
        tags.extend(config_tags);
        self.log_params_and_tags(&run, self.parent_params(), tags)
            .await?;
        if !long.is_empty() {
            // An artifact store the client cannot write to fails the
            // artifacts alone: the parent, its metrics and traces go on.
            if let Err(e) = self.upload_long_values(&run, long).await {
                if is_transient(&e) {
                    return Err(e);
                }
                self.deferred
                    .push(format!("session artifacts (config values): {e:#}"));
            }
        }
        self.log_run_inputs(&run.info.run_id).await?;
        self.parent = Some(run.clone());
        Ok(run)
    }

    /// The parent's params: what identifies the session's results and so
    /// can never change for it — the fingerprint payload (`inputs.*`: the
    /// dataset's sha256 and selection, the target model, the seed), the
    /// label counts of the selection, the fingerprint, run key and size.
    /// Everything else in the config is operational (paths, concurrency,
    /// URLs, timeouts, the methods enabled) and is recorded as tags
    /// ([`Mirror::config_tags`]), so running the same session from another
    /// directory or with other settings never conflicts.
    pub fn parent_params(&self) -> Vec<(String, String)> {
        let m = &self.manifest;
        let mut out = Vec::new();
        flatten::flatten_params("inputs", &m.fingerprint_payload, &mut out);
        for (label, n) in &m.label_counts {
            out.push((
                flatten::sanitize_key(&format!("dataset.label_counts.{label}")),
                n.to_string(),
            ));
        }
        out.push(("session.fingerprint".into(), m.fingerprint.clone()));
        out.push(("session.run_key".into(), m.run_key.clone()));
        out.push(("session.n_examples".into(), m.n_examples.to_string()));
        out
    }

    /// The resolved config as `config.*` tags (upserted: the latest run's
    /// settings win), without `[tracking]`. Values over the server's tag
    /// limit are returned separately as `config/<key>.txt` artifacts, the
    /// tag pointing at them.
    pub fn config_tags(&self) -> (Vec<KeyValue>, Vec<(String, String)>) {
        super::identity::config_tags(&self.manifest)
    }

    /// Writes long values under `artifacts_local/_params/` and uploads them
    /// to `run` at their relative paths.
    async fn upload_long_values(&mut self, run: &Run, long: Vec<(String, String)>) -> Result<()> {
        let dir = NamespaceDir::new(&self.session_dir, "_params").artifacts;
        let mut files = Vec::new();
        for (rel, value) in long {
            let local = dir.join(rel.replace('/', "__"));
            crate::store::write_bytes_atomic(&local, value.as_bytes())?;
            files.push((rel, local));
        }
        self.upload(run, digested(files)?, false).await?;
        Ok(())
    }

    async fn log_params_and_tags(
        &mut self,
        run: &Run,
        params: Vec<(String, String)>,
        tags: Vec<KeyValue>,
    ) -> Result<()> {
        let remote: BTreeMap<&str, &str> = run
            .data
            .params
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        let mut to_send = Vec::new();
        let mut long = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in params {
            if !seen.insert(key.clone()) {
                continue;
            }
            let value = if value.chars().count() > flatten::MAX_PARAM_CHARS {
                let rel = format!("params/{key}.txt");
                let pointer = format!(
                    "(too long for a param: see artifact {rel}, sha256 {})",
                    crate::fingerprint::sha256_hex(value.as_bytes())
                );
                long.push((rel, value));
                pointer
            } else {
                value
            };
            match remote.get(key.as_str()) {
                Some(r) if *r == value => {}
                Some(r) => {
                    return Err(ParamConflict {
                        run_id: run.info.run_id.clone(),
                        key,
                        remote: r.to_string(),
                        local: value,
                    }
                    .into())
                }
                None => to_send.push(KeyValue::new(key, value)),
            }
        }
        for b in batches(Vec::new(), to_send, tags) {
            self.client
                .log_batch(&run.info.run_id, &b.metrics, &b.params, &b.tags)
                .await?;
        }
        if !long.is_empty() {
            self.upload_long_values(run, long).await?;
        }
        Ok(())
    }

    /// Finds or creates the child run of a namespace under the parent, tags
    /// it and logs its params (the method settings).
    pub async fn ensure_child(&mut self, ns: &str) -> Result<Run> {
        if let Some(run) = self.children.get(ns) {
            return Ok(run.clone());
        }
        let parent = self.ensure_parent().await?;
        let settings = crate::store::session::namespaces(&self.session_dir)
            .into_iter()
            .find(|(n, _)| n == ns)
            .map(|(_, s)| s)
            .with_context(|| format!("namespace `{ns}` has no method_settings.json"))?;
        let m = &self.manifest;
        let mut tags = super::identity::child_tags(m, &parent.info.run_id, ns, &settings);
        tags.extend([
            KeyValue::new("w2c.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("mlflow.source.name", "w2c"),
            KeyValue::new("mlflow.source.type", "LOCAL"),
        ]);
        if let Ok(user) = std::env::var("USER") {
            tags.push(KeyValue::new("mlflow.user", user));
        }
        let target = self.target_model();
        let judge = super::identity::judge_model(&settings);
        let name = super::identity::child_name(m, ns, &settings);
        tags.push(KeyValue::new(
            "mlflow.note.content",
            format!(
                "`{ns}` of session `{}` (run key `{}`): {} — target **{target}**{}. One trace per example in the Traces tab{}.",
                crate::fingerprint::short(&self.manifest.fingerprint),
                self.manifest.run_key,
                super::names::describe(&settings.method),
                judge.as_deref().map(|j| format!(", judge **{j}**")).unwrap_or_default(),
                if settings.method.ends_with(".target") {
                    " of the judge's run (this stream has none of its own)"
                } else {
                    ""
                },
            ),
        ));
        let ns_owned = ns.to_string();
        let fp = m.fingerprint.clone();
        let hash = settings.settings_hash.clone();
        // A namespace is its settings: the same name may hold other settings
        // in another directory of the same session.
        let filter = format!(
            "tags.`{TAG_NAMESPACE}` = '{}' and tags.`w2c.settings_hash` = '{hash}'",
            ns.replace('\'', "")
        );
        let start = first_start(&self.session_dir, ns).unwrap_or_else(super::rest::now_ms);
        let run = self
            .find_or_create(
                self.ids.child_run_ids.get(ns).cloned(),
                filter,
                &name,
                start,
                tags.clone(),
                move |r| {
                    r.tag(TAG_NAMESPACE) == Some(ns_owned.as_str())
                        && r.tag(TAG_FINGERPRINT) == Some(fp.as_str())
                        && r.tag("w2c.settings_hash") == Some(hash.as_str())
                },
            )
            .await?;
        if self.ids.child_run_ids.get(ns) != Some(&run.info.run_id) {
            self.ids
                .child_run_ids
                .insert(ns.to_string(), run.info.run_id.clone());
            self.ids.save(&self.session_dir)?;
        }
        let mut params = vec![
            ("namespace".to_string(), ns.to_string()),
            ("method".to_string(), settings.method.clone()),
            ("settings_hash".to_string(), settings.settings_hash.clone()),
        ];
        flatten::flatten_params("settings", &settings.settings, &mut params);
        // Tags are upserted, which also re-links a child whose parent was
        // replaced.
        self.log_params_and_tags(&run, params, tags).await?;
        self.log_run_inputs(&run.info.run_id).await?;
        self.children.insert(ns.to_string(), run.clone());
        Ok(run)
    }

    /// Logs the final metrics of a finished namespace from its
    /// `metrics.json`, stamped with the `_DONE.json` time so that logging
    /// them again adds nothing.
    pub async fn log_final_metrics(&mut self, ns: &str) -> Result<usize> {
        let run = self.ensure_child(ns).await?;
        let dir = NamespaceDir::new(&self.session_dir, ns);
        let done: DoneMarker = crate::store::read_json(&dir.done_marker())?;
        let metrics_path = dir.metrics();
        if !metrics_path.exists() {
            // Namespaces without metrics of their own (`llm_judge.target`).
            return Ok(0);
        }
        let file: Value = crate::store::read_json(&metrics_path)?;
        let timestamp = chrono::DateTime::parse_from_rfc3339(&done.done_at)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0);
        let values = super::identity::child_metrics(&done.method, &file);
        let model_id = self.ensure_model().await?;
        let dataset_name = self.dataset_name();
        let digest = crate::fingerprint::prefix(
            self.manifest.fingerprint_payload["dataset"]["sha256"]
                .as_str()
                .unwrap_or_default(),
            32,
        )
        .to_string();
        let point = |key: String, value: f64| MetricPoint {
            key,
            value,
            timestamp,
            step: 0,
            model_id: model_id.clone(),
            dataset_name: Some(dataset_name.clone()),
            dataset_digest: Some(digest.clone()),
        };
        let headline: Vec<MetricPoint> = super::identity::parent_headline(ns, &values)
            .into_iter()
            .map(|(key, v)| point(key, v))
            .collect();
        // Points the run already holds are not sent again (MLflow stores a
        // model's metrics once: a repeated point is refused).
        let held = |key: &str, value: f64| {
            run.data.metrics.iter().any(|m| {
                m.key == key
                    && m.timestamp == timestamp
                    && (m.value == value || (m.value.is_nan() && value.is_nan()))
            })
        };
        let points: Vec<MetricPoint> = values
            .into_iter()
            .filter(|(k, v)| !held(k, *v))
            .map(|(k, v)| point(k, v))
            .collect();
        let n = points.len();
        for b in batches(points.clone(), Vec::new(), Vec::new()) {
            self.client
                .log_batch(&run.info.run_id, &b.metrics, &b.params, &b.tags)
                .await?;
        }
        if let Some(c) = self.children.get_mut(ns) {
            c.data.metrics.extend(points);
        }
        // The headline metrics on the parent, where sessions are compared.
        let parent = self.ensure_parent().await?;
        for b in batches(headline, Vec::new(), Vec::new()) {
            self.client
                .log_batch(&parent.info.run_id, &b.metrics, &b.params, &b.tags)
                .await?;
        }
        Ok(n)
    }

    /// Uploads a namespace's `artifacts_local/<ns>/` tree and its checkpoints
    /// (as `checkpoints/`) to its child run, with an `artifact_manifest.json`
    /// listing every file. Files already uploaded with the same sha256 are
    /// skipped; with `repair`, the remote listing is checked too and missing
    /// or resized files are sent again.
    pub async fn upload_namespace(&mut self, ns: &str, repair: bool) -> Result<usize> {
        let run = self.ensure_child(ns).await?;
        let dir = NamespaceDir::new(&self.session_dir, ns);
        let mut files = local_files(&dir.artifacts, "")?;
        files.retain(|(rel, _)| rel != ARTIFACT_MANIFEST);
        files.extend(local_files(&dir.checkpoints, names::CHECKPOINTS)?);
        let mut files = digested(files)?;
        let mut entries: Vec<ManifestEntry> = files
            .iter()
            .map(|(rel, _, up)| ManifestEntry {
                path: rel.clone(),
                size: up.bytes,
                sha256: up.sha256.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = ArtifactManifest {
            fingerprint: self.manifest.fingerprint.clone(),
            namespace: ns.to_string(),
            written_at: crate::store::session::now_utc(),
            files: entries,
        };
        let manifest_path = dir.artifact(ARTIFACT_MANIFEST);
        let previous: Option<ArtifactManifest> = crate::store::read_json(&manifest_path).ok();
        // Rewrite only when the file list changed, so an unchanged namespace
        // uploads nothing.
        if previous.as_ref().map(|p| &p.files) != Some(&manifest.files) {
            crate::store::write_json_atomic(&manifest_path, &manifest)?;
        }
        files.extend(digested(vec![(
            ARTIFACT_MANIFEST.to_string(),
            manifest_path,
        )])?);
        self.upload(&run, files, repair).await
    }

    /// Uploads the session's own files ([`layout::session_files`]:
    /// `manifest.json`, and its `audit_fallbacks.jsonl` when it has one) to
    /// the parent run.
    pub async fn upload_session_files(&mut self, repair: bool) -> Result<usize> {
        let run = self.ensure_parent().await?;
        let files = digested(layout::session_files(&self.session_dir))?;
        self.upload(&run, files, repair).await
    }

    async fn upload(
        &mut self,
        run: &Run,
        files: Vec<(String, PathBuf, Uploaded)>,
        repair: bool,
    ) -> Result<usize> {
        let run_id = run.info.run_id.clone();
        let remote_sizes: Option<BTreeMap<String, u64>> = if repair {
            Some(
                self.client
                    .list_artifacts(&run_id)
                    .await?
                    .into_iter()
                    .map(|f| (f.path, f.file_size.unwrap_or(0)))
                    .collect(),
            )
        } else {
            None
        };
        let known = self.uploads.runs.entry(run_id.clone()).or_default();
        let mut todo = Vec::new();
        for (rel, path, up) in files {
            let remote_ok = remote_sizes
                .as_ref()
                .is_none_or(|r| r.get(&rel) == Some(&up.bytes));
            if known.get(&rel) == Some(&up) && remote_ok {
                continue;
            }
            todo.push((rel, path, up));
        }
        let client = &self.client;
        let uri = run.info.artifact_uri.clone();
        let results: Vec<(String, Uploaded, Result<(), MlflowError>)> =
            futures::stream::iter(todo.into_iter().map(|(rel, path, up)| {
                let uri = uri.clone();
                async move {
                    let r = client.upload_artifact(&uri, &rel, &path).await;
                    (rel, up, r)
                }
            }))
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .collect()
            .await;
        let mut sent = 0;
        let mut first_err = None;
        let known = self.uploads.runs.entry(run_id).or_default();
        for (rel, up, r) in results {
            match r {
                Ok(()) => {
                    known.insert(rel, up);
                    sent += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if sent > 0 {
            self.uploads.save(&self.session_dir)?;
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(sent),
        }
    }

    /// Marks the parent RUNNING (end time cleared) unless it already is:
    /// called when this process starts work the session had left.
    pub async fn reopen_parent(&mut self) -> Result<()> {
        let run = self.ensure_parent().await?;
        if run.info.status != status::RUNNING {
            self.client
                .set_status(&run.info.run_id, status::RUNNING, 0)
                .await?;
            if let Some(p) = self.parent.as_mut() {
                p.info.status = status::RUNNING.to_string();
                p.info.end_time = None;
            }
        }
        Ok(())
    }

    /// Marks a namespace's child RUNNING unless it already is: called only
    /// for a namespace with work left.
    pub async fn reopen_child(&mut self, ns: &str) -> Result<()> {
        let run = self.ensure_child(ns).await?;
        if run.info.status != status::RUNNING {
            self.client
                .set_status(&run.info.run_id, status::RUNNING, 0)
                .await?;
            if let Some(c) = self.children.get_mut(ns) {
                c.info.status = status::RUNNING.to_string();
                c.info.end_time = None;
            }
        }
        Ok(())
    }

    /// Gives a child the status its local record says, with the end time
    /// the record gives (`_DONE.json`, or its last process's end): a child
    /// that already has them is left alone, so a resume never rewrites a
    /// finished namespace's history.
    pub async fn settle_child(&mut self, ns: &str, st: &str) -> Result<()> {
        let run = self.ensure_child(ns).await?;
        let end = namespace_end(&self.session_dir, ns, st).unwrap_or_else(super::rest::now_ms);
        if run.info.status == st && run.info.end_time == Some(end) {
            return Ok(());
        }
        self.client.set_status(&run.info.run_id, st, end).await?;
        if let Some(c) = self.children.get_mut(ns) {
            c.info.status = st.to_string();
            c.info.end_time = Some(end);
        }
        Ok(())
    }

    /// Gives the parent `st` with the end time of the session's record (the
    /// last `_DONE.json` for FINISHED, the last process's end otherwise);
    /// left alone when it already has them.
    pub async fn settle_parent(&mut self, st: &str) -> Result<()> {
        let run = self.ensure_parent().await?;
        let end = session_end(&self.session_dir, st).unwrap_or_else(super::rest::now_ms);
        if run.info.status == st && run.info.end_time == Some(end) {
            return Ok(());
        }
        self.client.set_status(&run.info.run_id, st, end).await?;
        if let Some(p) = self.parent.as_mut() {
            p.info.status = st.to_string();
            p.info.end_time = Some(end);
        }
        Ok(())
    }

    /// Brings a namespace fully up to date: child, params, final metrics
    /// (when done), artifacts and `status`. Returns the files uploaded.
    pub async fn push_namespace(&mut self, ns: &str, status: &str, repair: bool) -> Result<usize> {
        self.ensure_child(ns).await?;
        if namespace_done(&self.session_dir, ns) {
            self.log_final_metrics(ns).await?;
        }
        // The status mirrors the local record even when an upload failed.
        let uploaded = self.upload_namespace(ns, repair).await;
        self.settle_child(ns, status).await?;
        uploaded.context("artifacts")
    }
}

/// Epoch milliseconds of an RFC 3339 time.
fn epoch_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn run_log(session_dir: &Path, ns: &str) -> Vec<crate::store::RunLogLine> {
    crate::store::load_jsonl::<crate::store::RunLogLine>(
        &NamespaceDir::new(session_dir, ns).run_log(),
    )
    .map(|(lines, _)| lines)
    .unwrap_or_default()
}

/// When work on a namespace first started (its first `run_log.jsonl` line).
fn first_start(session_dir: &Path, ns: &str) -> Option<i64> {
    run_log(session_dir, ns)
        .first()
        .and_then(|l| epoch_ms(&l.started_at))
}

/// When a stopped namespace ended: `_DONE.json`'s time when finished, else
/// the end of its last process.
fn namespace_end(session_dir: &Path, ns: &str, st: &str) -> Option<i64> {
    if st == status::FINISHED {
        let done: DoneMarker =
            crate::store::read_json(&NamespaceDir::new(session_dir, ns).done_marker()).ok()?;
        return epoch_ms(&done.done_at);
    }
    run_log(session_dir, ns)
        .last()
        .and_then(|l| epoch_ms(&l.ended_at))
}

/// When the session's work ended: the latest end of its namespaces.
fn session_end(session_dir: &Path, st: &str) -> Option<i64> {
    crate::store::session::namespaces(session_dir)
        .into_iter()
        .filter_map(|(ns, _)| {
            let ns_status = if st == status::FINISHED {
                status::FINISHED
            } else {
                stopped_status(session_dir, &ns)
            };
            namespace_end(session_dir, &ns, ns_status)
        })
        .max()
}

/// Each file with the sha256 and size it is uploaded (and listed) with.
fn digested(files: Vec<(String, PathBuf)>) -> Result<Vec<(String, PathBuf, Uploaded)>> {
    files
        .into_iter()
        .map(|(rel, path)| {
            let (sha256, bytes) = crate::store::file_digest(&path)?;
            Ok((rel, path, Uploaded { sha256, bytes }))
        })
        .collect()
}

/// Every namespace claimed in the session (judge target streams and
/// namespaces of earlier settings included), with the status its local
/// record gives ([`stopped_status`]): what a run's end and `w2c sync` mirror.
pub fn stopped_namespaces(session_dir: &Path) -> Vec<(String, &'static str)> {
    crate::store::session::namespaces(session_dir)
        .into_iter()
        .map(|(ns, _)| {
            let st = stopped_status(session_dir, &ns);
            (ns, st)
        })
        .collect()
}

/// Whether a namespace has its `_DONE.json`.
pub fn namespace_done(session_dir: &Path, ns: &str) -> bool {
    NamespaceDir::new(session_dir, ns).is_done()
}

/// The status a stopped namespace mirrors: FINISHED when done, KILLED when
/// its last process was interrupted, FAILED otherwise.
pub fn stopped_status(session_dir: &Path, ns: &str) -> &'static str {
    if namespace_done(session_dir, ns) {
        return status::FINISHED;
    }
    let log = crate::store::load_jsonl::<crate::store::RunLogLine>(
        &NamespaceDir::new(session_dir, ns).run_log(),
    );
    match log.ok().and_then(|(lines, _)| lines.last().cloned()) {
        Some(last) if last.cancelled => status::KILLED,
        _ => status::FAILED,
    }
}

/// Regular files under `dir` as (`prefix/relative path`, path), skipping
/// hidden files (locks, temporary files of atomic writes).
pub fn local_files(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let rel = if prefix.is_empty() {
            rel
        } else {
            format!("{prefix}/{rel}")
        };
        out.push((rel, entry.path().to_path_buf()));
    }
    Ok(out)
}
