//! MLflow for sessions run in shards. `w2c plan` opens the session's runs
//! once (the parent and a child per planned namespace, RUNNING); shards send
//! nothing while they run (N processes would fight over progress metrics
//! and `mlflow_ids.json`); whoever finalizes a namespace — the last shard to
//! finish it, or `w2c finalize` — pushes it (final metrics, artifacts,
//! FINISHED) holding the session's finalize lock, and the parent is set
//! FINISHED with the last namespace. Runs are found by the ids `w2c plan`
//! stored, so there is one parent and one child per namespace however many
//! shards there are.
//!
//! A finalized namespace's traces go out from a task of their own, behind
//! the evaluation: the finalizer goes straight on to its next work. At the
//! process's end they get at most [`super::tracker::trace_wait`]; what is
//! left is pending in `mlflow_ids.json` (`traces: <ns>: …`) for `w2c sync`
//! or a `resume`.

use super::ids::{MlflowIds, Mode};
use super::mirror::{self, is_transient, Mirror};
use super::rest::status;
use super::trace_sender::{Sent, TraceSender};
use super::{Target, Tracker};
use crate::outcome::{Progress, RunObserver, RunReport};
use crate::store::session::{self, Manifest};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
    traces: tokio::sync::Mutex<Option<TraceTask>>,
    started: Instant,
}

/// The task sending finalized namespaces' traces behind the evaluation.
struct TraceTask {
    queue: mpsc::UnboundedSender<String>,
    handle: tokio::task::JoinHandle<()>,
    /// Set at the process's end: no trace request starts after it, and one
    /// under way is given up.
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Per namespace: what was sent and left, or why it failed.
    outcome: Arc<Mutex<BTreeMap<String, std::result::Result<Sent, String>>>>,
}

/// The pending line of a namespace whose traces are not (all) in MLflow.
fn traces_pending_prefix(ns: &str) -> String {
    format!("traces: {ns}: ")
}

impl TraceTask {
    /// Starts the task with the mirror of the finalizer that queued the
    /// first namespace (connected under the finalize lock).
    fn start(mut mirror: Mirror, dir: &Path, manifest: &Manifest) -> TraceTask {
        let (queue, mut rx) = mpsc::unbounded_channel::<String>();
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let outcome: Arc<Mutex<BTreeMap<String, std::result::Result<Sent, String>>>> =
            Arc::default();
        let mut sender = TraceSender::new(dir, manifest);
        let (d, o) = (deadline.clone(), outcome.clone());
        let handle = tokio::spawn(async move {
            let stop = move |next: Duration| {
                d.lock()
                    .ok()
                    .and_then(|d| *d)
                    .is_some_and(|d| Instant::now() + next >= d)
            };
            while let Some(ns) = rx.recv().await {
                let r = if stop(Duration::ZERO) {
                    Ok(Sent {
                        sent: 0,
                        left: usize::MAX,
                    })
                } else {
                    sender
                        .send_new(&mut mirror, &ns, false, &stop)
                        .await
                        .map_err(|e| format!("{e:#}"))
                };
                if let Ok(mut o) = o.lock() {
                    o.insert(ns, r);
                }
            }
        });
        TraceTask {
            queue,
            handle,
            deadline,
            outcome,
        }
    }
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
            traces: tokio::sync::Mutex::new(None),
            started: Instant::now(),
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
            m.ids.pending.retain(|p| !p.starts_with(&format!("{ns}: ")));
            if target.traces {
                // The namespace's files hold every shard's records now; its
                // traces go out behind the evaluation, pending until sent.
                let line = format!(
                    "{}not sent yet (a finalizer sends them behind the evaluation; `w2c sync` sends what is left)",
                    traces_pending_prefix(ns)
                );
                m.ids.pending.retain(|p| !p.starts_with(&traces_pending_prefix(ns)));
                m.ids.pending.push(line);
            }
            let done = all_done();
            if done {
                m.upload_session_files(false).await?;
                m.settle_parent(status::FINISHED).await?;
            }
            m.ids.synced = done && m.ids.pending.is_empty();
            m.ids.save(dir)?;
            if target.traces {
                let mut task = self.traces.lock().await;
                match task.as_ref() {
                    Some(t) => {
                        let _ = t.queue.send(ns.to_string());
                    }
                    None => {
                        let t = TraceTask::start(m, dir, &self.manifest);
                        let _ = t.queue.send(ns.to_string());
                        *task = Some(t);
                    }
                }
            }
            Ok(())
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
                "tracking: {line}; `w2c sync {}` sends it once the cause is fixed",
                crate::fingerprint::short(&self.manifest.fingerprint)
            ));
        }
    }
}

impl ShardTracker {
    /// The process ends: the trace task gets at most
    /// [`super::tracker::trace_wait`] more, then what it sent and what is
    /// left are recorded in `mlflow_ids.json` (under the finalize lock).
    async fn finish_traces(&self) {
        let Some(task) = self.traces.lock().await.take() else {
            return;
        };
        let wait = super::tracker::trace_wait(self.started.elapsed());
        if let Ok(mut d) = task.deadline.lock() {
            *d = Some(Instant::now() + wait);
        }
        drop(task.queue);
        let mut handle = task.handle;
        // The deadline stops the task's requests; a call outside them (a
        // silent server) is cut a moment later.
        if tokio::time::timeout(wait + Duration::from_secs(2), &mut handle)
            .await
            .is_err()
        {
            handle.abort();
            let _ = handle.await;
        }
        let outcome = task.outcome.lock().map(|o| o.clone()).unwrap_or_default();
        let dir = &self.session_dir;
        let r: Result<usize> = (|| {
            let _finalizing = session::finalize_lock(dir)?;
            let mut ids = MlflowIds::load(dir)?;
            let mut left_total = 0usize;
            let queued: Vec<String> = ids
                .pending
                .iter()
                .filter_map(|p| p.strip_prefix("traces: "))
                .filter_map(|p| p.split_once(": ").map(|(ns, _)| ns.to_string()))
                .collect();
            for ns in queued {
                let prefix = traces_pending_prefix(&ns);
                let line = match outcome.get(&ns) {
                    Some(Ok(s)) if s.left == 0 => None,
                    Some(Ok(s)) if s.left == usize::MAX => Some(format!(
                        "{prefix}not sent when the finalizer ended (it waits at most {:.0} s for traces, {}); `w2c sync` sends them",
                        wait.as_secs_f64(),
                        super::tracker::TRACE_WAIT_VAR
                    )),
                    Some(Ok(s)) => {
                        left_total += s.left;
                        Some(format!(
                            "{prefix}{} not sent when the finalizer ended (it waits at most {:.0} s for traces, {}); `w2c sync` sends them",
                            s.left,
                            wait.as_secs_f64(),
                            super::tracker::TRACE_WAIT_VAR
                        ))
                    }
                    Some(Err(e)) => Some(format!("{prefix}{e}")),
                    // Queued by another process: its own end records it.
                    None => continue,
                };
                ids.pending.retain(|p| !p.starts_with(&prefix));
                ids.pending.extend(line);
            }
            let all_done = session::namespaces(dir)
                .iter()
                .all(|(n, _)| mirror::namespace_done(dir, n));
            ids.synced = all_done && ids.pending.is_empty();
            ids.save(dir)?;
            Ok(left_total)
        })();
        match r {
            Ok(0) => {}
            Ok(left) => self.note(format!(
                "tracking: {left} trace(s) not sent when this process ended; `w2c sync {}` sends them",
                crate::fingerprint::short(&self.manifest.fingerprint)
            )),
            Err(e) => self.note(format!("tracking: cannot record the traces sent: {e:#}")),
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

    async fn run_failed(&self, _err: &anyhow::Error) {
        self.finish_traces().await
    }

    async fn run_finished(&self, _report: &RunReport) -> Vec<String> {
        self.finish_traces().await;
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}
