//! MLflow for sessions run in shards. `w2c plan` opens the session's runs
//! once (the parent and a child per planned namespace, RUNNING); shards send
//! nothing while they run (N processes would fight over progress metrics
//! and `mlflow_ids.json`); whoever finalizes a namespace — the last shard to
//! finish it, or `w2c finalize` — pushes it (final metrics, artifacts,
//! FINISHED) holding the session's finalize lock, and the parent is set
//! FINISHED with the last namespace. Runs are found by the ids `w2c plan`
//! stored, so there is one parent and one child per namespace however many
//! shards there are.

use super::ids::{MlflowIds, Mode};
use super::mirror::{self, is_transient, Mirror};
use super::rest::status;
use super::{Target, Tracker};
use crate::outcome::{Progress, RunObserver, RunReport};
use crate::store::session::{self, Manifest};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Opens the session's runs in MLflow: the parent (params, tags, the
/// manifest) and a child per namespace of `namespaces`, all RUNNING, their
/// ids saved in `mlflow_ids.json`. The caller holds the session alone (or
/// the finalize lock). A server that cannot be reached leaves the session
/// recorded offline, with a note; the finalizer tries again.
pub async fn open_runs(
    target: &Target,
    session_dir: &Path,
    manifest: &Manifest,
    namespaces: &[String],
) -> Result<Vec<String>> {
    let r: Result<()> = async {
        let mut m = Mirror::connect(
            target.client()?,
            &target.experiment,
            session_dir,
            manifest.clone(),
        )
        .await?;
        m.ensure_parent().await?;
        m.reopen_parent().await?;
        m.upload_session_files(false).await?;
        for ns in namespaces {
            if !mirror::namespace_done(session_dir, ns) {
                m.ensure_child(ns).await?;
            }
        }
        m.ids.synced = false;
        m.ids.pending.clear();
        m.ids.save(session_dir)
    }
    .await;
    match r {
        Ok(()) => Ok(Vec::new()),
        Err(e) if is_transient(&e) => {
            let why = format!("tracking server {} unreachable: {e:#}", target.uri);
            Tracker::offline(session_dir, &why)?;
            Ok(vec![format!(
                "tracking: {why}; the shards' finalizer tries again (or `w2c sync`)"
            )])
        }
        Err(e) => Err(e.context(format!("tracking server {}", target.uri))),
    }
}

/// The observer of a shard or of `w2c finalize`: progress for the job log,
/// and MLflow only for the namespaces this process finalizes.
pub struct ShardTracker {
    session_dir: PathBuf,
    manifest: Manifest,
    target: Option<Target>,
    progress: Arc<Progress>,
    notes: Mutex<Vec<String>>,
}

impl ShardTracker {
    /// The observer of a process sharing the session. A session without its
    /// tracking record yet (created by a shard, not by `w2c plan`) gets it
    /// here, under the finalize lock: its runs opened on `target`, or the
    /// offline record saying `why` not.
    pub async fn start(
        target: Option<&Target>,
        why: &str,
        session_dir: &Path,
        manifest: &Manifest,
    ) -> Result<ShardTracker> {
        let tracker = ShardTracker {
            session_dir: session_dir.to_path_buf(),
            manifest: manifest.clone(),
            target: target.cloned(),
            progress: Arc::default(),
            notes: Mutex::new(Vec::new()),
        };
        if !MlflowIds::exists(session_dir) {
            let _finalizing = session::finalize_lock(session_dir)?;
            if !MlflowIds::exists(session_dir) {
                match target {
                    Some(t) => {
                        let planned: Vec<String> =
                            manifest.plan.iter().map(|p| p.namespace.clone()).collect();
                        for note in open_runs(t, session_dir, manifest, &planned).await? {
                            tracker.note(note);
                        }
                    }
                    None => {
                        Tracker::offline(session_dir, why)?;
                    }
                }
            }
        }
        Ok(tracker)
    }

    fn note(&self, s: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(s);
        }
    }

    /// Pushes a namespace just finalized (the caller holds the finalize
    /// lock), and the parent when every namespace of the session is done.
    async fn push(&self, ns: &str) {
        let Some(target) = &self.target else { return };
        let dir = &self.session_dir;
        let all_done = || {
            session::namespaces(dir)
                .iter()
                .all(|(n, _)| mirror::namespace_done(dir, n))
        };
        let r: Result<()> = async {
            let mut m = Mirror::connect(
                target.client()?,
                &target.experiment,
                dir,
                self.manifest.clone(),
            )
            .await?;
            m.ensure_parent().await?;
            m.push_namespace(ns, status::FINISHED, false).await?;
            if target.traces {
                // The namespace's files hold every shard's records now.
                let mut traces = super::trace_sender::TraceSender::new(dir, &self.manifest);
                traces.send_new(&mut m, ns, false, &|_| false).await?;
            }
            m.ids.pending.retain(|p| !p.starts_with(&format!("{ns}: ")));
            let done = all_done();
            if done {
                m.upload_session_files(false).await?;
                m.settle_parent(status::FINISHED).await?;
            }
            m.ids.synced = done && m.ids.pending.is_empty();
            m.ids.save(dir)
        }
        .await;
        if let Err(e) = r {
            let line = format!("{ns}: {e:#}");
            if let Ok(mut ids) = MlflowIds::load(dir) {
                ids.mode = Mode::Online;
                ids.synced = false;
                if !ids.pending.contains(&line) {
                    ids.pending.push(line.clone());
                }
                let _ = ids.save(dir);
            }
            self.note(format!(
                "tracking: {line}; `w2c sync {}` sends it once the server is reachable",
                crate::fingerprint::short(&self.manifest.fingerprint)
            ));
        }
    }
}

impl RunObserver for ShardTracker {
    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    async fn namespace_started(&self, _ns: &str) {}

    async fn namespace_stopped(&self, _ns: &str, _cancelled: bool) {}

    async fn namespace_finalized(&self, ns: &str) {
        self.push(ns).await
    }

    async fn run_failed(&self, _err: &anyhow::Error) {}

    async fn run_finished(&self, _report: &RunReport) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}
