//! The run's MLflow observer ([`Tracker`]): the evaluation tells it what
//! happens and never waits on the server. Online, a worker task owns the
//! [`Mirror`] and sends everything behind the evaluation, in order; the run
//! waits for it only at its start (the setup, so that refused credentials
//! stop the run before any request) and at its end (to send what is left),
//! each time for at most [`wait`] without a sign of life from the server.
//! What could not be sent is recorded in `mlflow_ids.json` for `w2c sync`.

use super::ids::{MlflowIds, Mode};
use super::mirror::{self, Mirror};
use super::rest::{self, status, FailureKind, Heartbeat, KeyValue, MetricPoint, MlflowClient};
use super::trace_sender::TraceSender;
use super::Target;
use crate::outcome::{Progress, RunObserver, RunReport, RunStatus};
use crate::store::session::Manifest;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Longest time tracking may hold up a run without a sign of life from the
/// server, at the start and again at the end (environment override).
pub const WAIT_VAR: &str = "W2C_TRACKING_WAIT_SECS";
/// Default of [`WAIT_VAR`].
pub const WAIT_DEFAULT: Duration = Duration::from_secs(15);
/// Accepted range of [`WAIT_VAR`], seconds: the bound holds whatever the
/// environment says.
pub const WAIT_RANGE: std::ops::RangeInclusive<f64> = 0.0..=60.0;
/// How long tracking pauses after a failure (environment override).
pub const PAUSE_VAR: &str = "W2C_TRACKING_PAUSE_SECS";
const PAUSE_DEFAULT: Duration = Duration::from_secs(60);
/// Accepted range of [`PAUSE_VAR`], seconds.
pub const PAUSE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=86_400.0;
/// Interval between progress metric points (environment override).
pub const PROGRESS_VAR: &str = "W2C_TRACKING_PROGRESS_SECS";
const PROGRESS_DEFAULT: Duration = Duration::from_secs(15);
/// Accepted range of [`PROGRESS_VAR`], seconds.
pub const PROGRESS_RANGE: std::ops::RangeInclusive<f64> = 0.05..=86_400.0;
/// How often the worker sends the traces of newly finished examples.
const TRACE_INTERVAL: Duration = Duration::from_secs(2);
/// How long the end of a run may wait for traces still to send, when set
/// (environment override); else [`trace_wait`] decides from the run's
/// length. The rest is left to `w2c sync`.
pub const TRACE_WAIT_VAR: &str = "W2C_TRACKING_TRACE_WAIT_SECS";
/// How long a run that evaluated nothing sends its pending traces at most.
const TRACE_WAIT_RANGE_MAX: Duration = Duration::from_secs(3600);
/// Accepted range of [`TRACE_WAIT_VAR`], seconds.
pub const TRACE_WAIT_RANGE: std::ops::RangeInclusive<f64> = 0.0..=3600.0;
/// Without [`TRACE_WAIT_VAR`], traces may add this share of a run's wall
/// time at its end ...
pub const TRACE_WAIT_SHARE: f64 = 0.03;
/// ... at least this (a short run's few hundred traces: its end waits
/// only while traces are left) ...
pub const TRACE_WAIT_MIN: Duration = Duration::from_secs(10);
/// ... and never more than this.
pub const TRACE_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long the end of a run that has lasted `elapsed` waits for its
/// traces: [`TRACE_WAIT_VAR`] when set, else 3% of `elapsed`, at least
/// 10 s and at most 60 s.
pub fn trace_wait(elapsed: Duration) -> Duration {
    trace_wait_in(&super::process_env, elapsed)
}

/// [`trace_wait`] with the environment given.
fn trace_wait_in(env: super::Env<'_>, elapsed: Duration) -> Duration {
    let share = elapsed
        .mul_f64(TRACE_WAIT_SHARE)
        .clamp(TRACE_WAIT_MIN, TRACE_WAIT_MAX);
    super::env_secs(env, TRACE_WAIT_VAR, share, TRACE_WAIT_RANGE).unwrap_or(share)
}

/// Whether the run has ended: from then on traces wait for the end's
/// records, then get [`trace_wait`] at most.
type Ending = Arc<std::sync::atomic::AtomicBool>;

/// The longest silence tracking may hold a run up for ([`WAIT_VAR`]).
pub fn wait() -> Duration {
    super::env_secs(&super::process_env, WAIT_VAR, WAIT_DEFAULT, WAIT_RANGE).unwrap_or(WAIT_DEFAULT)
}

fn pause() -> Duration {
    super::env_secs(&super::process_env, PAUSE_VAR, PAUSE_DEFAULT, PAUSE_RANGE)
        .unwrap_or(PAUSE_DEFAULT)
}

fn progress_interval() -> Duration {
    super::env_secs(
        &super::process_env,
        PROGRESS_VAR,
        PROGRESS_DEFAULT,
        PROGRESS_RANGE,
    )
    .unwrap_or(PROGRESS_DEFAULT)
}

/// Whether an error says the tracking setup cannot work (credentials or
/// permission refused, an unusable URI): the only failures that stop a run.
pub fn refuses_setup(err: &anyhow::Error) -> bool {
    err.downcast_ref::<rest::MlflowError>()
        .is_some_and(rest::MlflowError::refuses_setup)
}

/// Whether a failure pauses tracking: no reply, a reply that is not what
/// the API promises (too large, endless, not JSON), 408/429/5xx.
fn pauses(err: &anyhow::Error) -> bool {
    err.downcast_ref::<rest::MlflowError>().is_some_and(|e| {
        e.is_transient() || matches!(e.kind, FailureKind::BadReply | FailureKind::Unreachable)
    })
}

/// What the worker and the run share: whether tracking is paused and what
/// could not be sent.
#[derive(Default)]
struct Health {
    paused_until: Option<Instant>,
    pending: BTreeSet<String>,
}

type Shared = Arc<Mutex<Health>>;

fn lock(h: &Shared) -> std::sync::MutexGuard<'_, Health> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a failure; a failure that [`pauses`] pauses tracking.
fn record_failure(health: &Shared, what: &str, err: &anyhow::Error) {
    let mut h = lock(health);
    if pauses(err) {
        h.paused_until = Some(Instant::now() + pause());
    }
    h.pending.insert(format!("{what}: {err:#}"));
}

/// Whether tracking is paused; if so, `what` is recorded as skipped.
fn skip_if_paused(health: &Shared, what: &str) -> bool {
    let mut h = lock(health);
    match h.paused_until {
        Some(t) if Instant::now() < t => {
            h.pending.insert(format!(
                "{what}: skipped while the tracking server was failing"
            ));
            true
        }
        _ => false,
    }
}

/// The progress counters of a namespace at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    done: usize,
    total: usize,
    failed: usize,
    rate: f64,
}

impl Snapshot {
    fn of(p: &Progress) -> Snapshot {
        let here = p.finished_here.load(Ordering::Relaxed);
        let secs = p.elapsed().as_secs_f64();
        Snapshot {
            done: p.done.load(Ordering::Relaxed),
            total: p.total.load(Ordering::Relaxed),
            failed: p.failed.load(Ordering::Relaxed),
            rate: if secs > 0.0 { here as f64 / secs } else { 0.0 },
        }
    }
}

/// The namespace the engine is running now (the progress counters are
/// its), set and cleared by the run as it goes, read by the progress loop.
type Current = Arc<Mutex<Option<String>>>;

/// What the run tells the worker: each event carries what the local record
/// said when it happened (the worker may handle it later).
enum Event {
    Started {
        ns: String,
        work_left: bool,
    },
    Stopped {
        ns: String,
        cancelled: bool,
        last: Snapshot,
    },
    Failed(String),
    Finished(&'static str),
}

struct Online {
    server: String,
    experiment: String,
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    worker: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    health: Shared,
    heartbeat: Heartbeat,
    wait: Duration,
    ending: Ending,
}

/// Drives MLflow for one run of one session. Every method is infallible
/// for the evaluation and returns without waiting on the server: failures
/// are recorded as pending, not raised.
pub struct Tracker {
    session_dir: PathBuf,
    online: Option<Online>,
    progress: Arc<Progress>,
    current: Current,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Tracker {
    /// A tracker for a session run without a tracking server: records the
    /// session as offline (keeping ids of earlier tracked runs, marked as
    /// not in sync). The record is not rewritten when it would not change (a finished
    /// session resumed offline again is left untouched).
    pub fn offline(session_dir: &Path, why: &str) -> Result<Tracker> {
        record_unsent(session_dir, None, why)?;
        Ok(Tracker {
            session_dir: session_dir.to_path_buf(),
            online: None,
            progress: Arc::default(),
            current: Arc::default(),
            notes: Arc::default(),
        })
    }

    /// The tracker of a session just opened: connected to `target`, or
    /// recording the session as offline (`why` says why).
    pub async fn for_session(
        target: Option<&Target>,
        why: &str,
        session_dir: &Path,
        manifest: &Manifest,
    ) -> Result<Tracker> {
        match target {
            Some(target) => Tracker::connect(target, session_dir, manifest).await,
            None => Tracker::offline(session_dir, why),
        }
    }

    /// Starts the worker, which connects to the server, finds or creates
    /// the parent run and logs its params, and waits for that setup at most
    /// [`wait`] without a sign of life. Refused credentials or permissions
    /// are an error, raised before any evaluation work; a server that is
    /// down, silent or answering garbage only pauses tracking (the worker
    /// keeps trying behind the evaluation).
    pub async fn connect(
        target: &Target,
        session_dir: &Path,
        manifest: &Manifest,
    ) -> Result<Tracker> {
        let client = target.client()?;
        let heartbeat = client.heartbeat().clone();
        let health: Shared = Arc::default();
        let progress: Arc<Progress> = Arc::default();
        let current: Current = Arc::default();
        let notes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (events, rx) = mpsc::unbounded_channel();
        let (setup_tx, setup_rx) = oneshot::channel();
        let traces = target
            .traces
            .then(|| TraceSender::new(session_dir, manifest));
        let ending: Ending = Arc::default();
        let worker = Worker {
            client,
            experiment: target.experiment.clone(),
            session_dir: session_dir.to_path_buf(),
            manifest: manifest.clone(),
            mirror: None,
            health: health.clone(),
            progress: progress.clone(),
            current: current.clone(),
            progress_task: None,
            open: Vec::new(),
            pushed: BTreeSet::new(),
            parent_reopened: false,
            traces,
            ending: ending.clone(),
            trace_deadline: None,
            started: Instant::now(),
            evaluated: false,
        };
        let handle = tokio::spawn(worker.run(rx, setup_tx));
        let wait = wait();
        heartbeat.beat();
        let setup = wait_for_setup(setup_rx, &heartbeat, wait).await;
        let tracker = Tracker {
            session_dir: session_dir.to_path_buf(),
            online: Some(Online {
                server: target.uri.to_string(),
                experiment: target.experiment.clone(),
                events: Mutex::new(Some(events)),
                worker: tokio::sync::Mutex::new(Some(handle)),
                health,
                heartbeat,
                wait,
                ending,
            }),
            progress,
            current,
            notes,
        };
        match setup {
            Setup::Ready => {}
            Setup::Refused(e) => {
                tracker.abort_worker().await;
                return Err(e.context(format!("tracking server {}", target.uri)));
            }
            Setup::Failed(e) => tracker.note(format!(
                "tracking: {e:#}; the evaluation goes on and tracking retries behind it"
            )),
            Setup::Silent => tracker.note(format!(
                "tracking: no usable answer from {} within {:.0} s{}; the evaluation starts and tracking goes on behind it",
                target.uri,
                wait.as_secs_f64(),
                tracker
                    .online
                    .as_ref()
                    .and_then(|o| o.heartbeat.last_failure())
                    .map(|f| format!(" (last: {f})"))
                    .unwrap_or_default()
            )),
        }
        Ok(tracker)
    }

    fn note(&self, s: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(s);
        }
    }

    fn send(&self, event: Event) {
        if let Some(online) = &self.online {
            if let Some(tx) = online.events.lock().ok().and_then(|t| t.clone()) {
                let _ = tx.send(event);
            }
        }
    }

    async fn abort_worker(&self) {
        let Some(online) = &self.online else { return };
        if let Some(handle) = online.worker.lock().await.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Sends the last event, then waits for the worker to send what is
    /// left, as long as the server shows signs of life at least every
    /// [`wait`]; then records what is pending.
    async fn drain(&self, last: Event) -> Vec<String> {
        let Some(online) = &self.online else {
            return self.notes.lock().map(|n| n.clone()).unwrap_or_default();
        };
        online
            .ending
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.send(last);
        // Closing the channel ends the worker once it has handled everything.
        if let Ok(mut tx) = online.events.lock() {
            tx.take();
        }
        online.heartbeat.beat();
        let handle = online.worker.lock().await.take();
        if let Some(mut handle) = handle {
            loop {
                tokio::select! {
                    _ = &mut handle => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if online.heartbeat.silence() > online.wait {
                            handle.abort();
                            let _ = handle.await;
                            lock(&online.health).pending.insert(format!(
                                "tracking: gave up after {:.0} s without a usable answer from the server; the rest was not sent",
                                online.wait.as_secs_f64()
                            ));
                            break;
                        }
                    }
                }
            }
        }
        let pending: Vec<String> = lock(&online.health).pending.iter().cloned().collect();
        if let Err(e) = record_end(
            &self.session_dir,
            &online.server,
            &online.experiment,
            &pending,
        ) {
            self.note(format!("cannot save mlflow_ids.json: {e:#}"));
        }
        if !pending.is_empty() {
            let sync = sync_command(&self.session_dir);
            let (traces, other): (Vec<&String>, Vec<&String>) = pending
                .iter()
                .partition(|p| crate::report::is_traces_line(p));
            let n_traces: usize = traces
                .iter()
                .map(|p| crate::report::traces_in_line(p))
                .sum();
            if !other.is_empty() {
                self.note(format!(
                    "tracking: {} item(s) could not be sent to MLflow (first: {}); they are listed in mlflow_ids.json — `{sync}` sends them once the cause is fixed",
                    other.len(),
                    other[0],
                ));
            }
            if !traces.is_empty() {
                self.note(format!(
                    "tracking: {n_traces} trace(s) not sent yet (MLflow takes them slower than the run made them); `{sync}` or a `resume` sends them"
                ));
            }
        }
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// `w2c sync <address>`, as it works from where the user stands.
fn sync_command(session_dir: &Path) -> String {
    crate::command_hint::for_session("sync", session_dir, &crate::command_hint::Here::current())
}

/// How the setup went, as far as the run waits for it.
enum Setup {
    Ready,
    Refused(anyhow::Error),
    Failed(anyhow::Error),
    Silent,
}

async fn wait_for_setup(
    mut rx: oneshot::Receiver<Result<()>>,
    heartbeat: &Heartbeat,
    wait: Duration,
) -> Setup {
    loop {
        tokio::select! {
            r = &mut rx => return match r {
                Ok(Ok(())) => Setup::Ready,
                Ok(Err(e)) if refuses_setup(&e) => Setup::Refused(e),
                Ok(Err(e)) => Setup::Failed(e),
                Err(_) => Setup::Silent,
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if heartbeat.silence() > wait {
                    return Setup::Silent;
                }
            }
        }
    }
}

/// Records in `mlflow_ids.json` that the session was not (fully) sent:
/// `why` is pending; a session never tracked stays offline, with the
/// server it was meant for when there is one.
fn record_unsent(session_dir: &Path, server: Option<(&str, &str)>, why: &str) -> Result<()> {
    let stored = MlflowIds::load(session_dir)?;
    let mut ids = stored.clone();
    let note = format!("not tracked: {why}; `w2c sync` sends the session to MLflow later");
    if ids.mode == Mode::Online {
        ids.synced = false;
        if !ids.pending.contains(&note) {
            ids.pending.push(note);
        }
    } else {
        ids.mode = Mode::Offline;
        ids.synced = false;
        ids.pending = vec![note];
        if let Some((uri, experiment)) = server {
            ids.tracking_uri = Some(uri.to_string());
            ids.experiment_name = Some(experiment.to_string());
        }
    }
    if ids != stored || !MlflowIds::exists(session_dir) {
        ids.save(session_dir)?;
    }
    Ok(())
}

/// The end of a tracked run: `mlflow_ids.json` says whether MLflow holds
/// everything (`pending` empty) and what is missing.
fn record_end(
    session_dir: &Path,
    server: &str,
    experiment: &str,
    pending: &[String],
) -> Result<()> {
    let mut ids = MlflowIds::load(session_dir)?;
    if ids.mode != Mode::Online {
        // The server was never reached in this run.
        let why = pending
            .first()
            .cloned()
            .unwrap_or_else(|| format!("tracking server {server} unreachable"));
        return record_unsent(session_dir, Some((server, experiment)), &why);
    }
    ids.synced = pending.is_empty();
    ids.pending = pending.to_vec();
    ids.save(session_dir)
}

/// The tracker is the run's observer: MLflow when online, the offline
/// record otherwise.
impl RunObserver for Tracker {
    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    async fn namespace_started(&self, ns: &str) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some(ns.to_string());
        }
        self.send(Event::Started {
            ns: ns.to_string(),
            work_left: !mirror::namespace_done(&self.session_dir, ns),
        });
    }

    async fn namespace_stopped(&self, ns: &str, cancelled: bool) {
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
        self.send(Event::Stopped {
            ns: ns.to_string(),
            cancelled,
            last: Snapshot::of(&self.progress),
        });
    }

    async fn run_failed(&self, err: &anyhow::Error) {
        self.drain(Event::Failed(format!("{err:#}"))).await;
    }

    async fn run_finished(&self, report: &RunReport) -> Vec<String> {
        let parent_status = match report.status {
            RunStatus::Complete => status::FINISHED,
            RunStatus::Interrupted => status::KILLED,
            RunStatus::Incomplete => status::FAILED,
        };
        self.drain(Event::Finished(parent_status)).await
    }
}

/// The worker: owns the mirror and handles the run's events in order.
struct Worker {
    client: MlflowClient,
    experiment: String,
    session_dir: PathBuf,
    manifest: Manifest,
    mirror: Option<Mirror>,
    health: Shared,
    progress: Arc<Progress>,
    current: Current,
    progress_task: Option<(String, tokio::task::JoinHandle<()>)>,
    open: Vec<String>,
    pushed: BTreeSet<String>,
    parent_reopened: bool,
    traces: Option<TraceSender>,
    ending: Ending,
    /// Set when the end's records are in: traces stop being started then.
    trace_deadline: Option<Instant>,
    /// When the run started.
    started: Instant,
    /// Whether this run evaluated anything: a run that only read finished
    /// namespaces (a `resume` of a finished session) sends every pending
    /// trace, as `w2c sync` would.
    evaluated: bool,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        setup: oneshot::Sender<Result<()>>,
    ) {
        let r = self.setup().await.map(|_| ());
        if let Err(e) = &r {
            if !refuses_setup(e) {
                record_failure(&self.health, "session", e);
            }
        }
        let _ = setup.send(r);
        let mut tick = tokio::time::interval(TRACE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                // Once the run has ended its records go first.
                _ = tick.tick(), if !self.ending.load(std::sync::atomic::Ordering::SeqCst) => {
                    self.send_traces(false).await
                }
            }
            self.client.heartbeat().beat();
        }
        self.stop_progress(None).await;
    }

    /// Connects (once) and makes sure the parent run exists with its params.
    async fn setup(&mut self) -> Result<&mut Mirror> {
        if self.mirror.is_none() {
            let m = Mirror::connect(
                self.client.clone(),
                &self.experiment,
                &self.session_dir,
                self.manifest.clone(),
            )
            .await?;
            self.mirror = Some(m);
        }
        let m = self
            .mirror
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("not connected"))?;
        m.ensure_parent().await?;
        if !m.deferred.is_empty() {
            lock(&self.health).pending.extend(m.deferred.drain(..));
        }
        Ok(m)
    }

    fn paused(&self, what: &str) -> bool {
        skip_if_paused(&self.health, what)
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Started { ns, work_left } => self.begin(&ns, work_left).await,
            Event::Stopped {
                ns,
                cancelled,
                last,
            } => {
                self.stop_progress(Some(last)).await;
                self.open.retain(|n| n != &ns);
                let st = if mirror::namespace_done(&self.session_dir, &ns) {
                    status::FINISHED
                } else if cancelled {
                    status::KILLED
                } else {
                    status::FAILED
                };
                // The run's record first; the traces follow it (once the
                // run has ended, after all its records).
                self.push(&ns, st).await;
                if !self.ending.load(std::sync::atomic::Ordering::SeqCst) {
                    self.send_traces(true).await;
                }
            }
            Event::Failed(err) => {
                self.stop_progress(None).await;
                for ns in std::mem::take(&mut self.open) {
                    self.push(&ns, status::FAILED).await;
                }
                if self.paused("session") {
                    return;
                }
                let r = async {
                    let m = self.setup().await?;
                    let id = m.ids.parent_run_id.clone().unwrap_or_default();
                    m.client
                        .log_batch(&id, &[], &[], &[KeyValue::new("w2c.error", err)])
                        .await?;
                    m.settle_parent(status::FAILED).await
                }
                .await;
                if let Err(e) = r {
                    record_failure(&self.health, "session", &e);
                }
            }
            Event::Finished(parent_status) => {
                self.stop_progress(None).await;
                for ns in std::mem::take(&mut self.open) {
                    self.push(&ns, mirror::stopped_status(&self.session_dir, &ns))
                        .await;
                }
                // Every namespace of the session, not only those this run
                // reported (a judge's target stream, namespaces of other
                // settings), goes through the same path as `w2c sync`.
                for (ns, st) in mirror::stopped_namespaces(&self.session_dir) {
                    if !self.pushed.contains(&ns) {
                        self.push(&ns, st).await;
                    }
                }
                if !self.paused("session") {
                    // The parent's artifacts fail alone: its status is set
                    // all the same.
                    let r = async {
                        let m = self.setup().await?;
                        let uploaded = m.upload_session_files(false).await;
                        m.settle_parent(parent_status).await?;
                        Ok::<_, anyhow::Error>(uploaded)
                    }
                    .await;
                    match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => record_failure(&self.health, "session artifacts", &e),
                        Err(e) => record_failure(&self.health, "session", &e),
                    }
                }
                // The records are complete; traces last, for at most
                // `trace_wait` from now.
                let wait = if self.evaluated {
                    trace_wait(self.started.elapsed())
                } else {
                    // Nothing evaluated: finish what `w2c sync` would
                    // (the end still gives up after `wait()` of silence),
                    // unless the wait is set outright.
                    super::env_secs(
                        &super::process_env,
                        TRACE_WAIT_VAR,
                        TRACE_WAIT_RANGE_MAX,
                        TRACE_WAIT_RANGE,
                    )
                    .unwrap_or(TRACE_WAIT_RANGE_MAX)
                };
                self.trace_deadline = Some(Instant::now() + wait);
                self.send_traces(true).await;
            }
        }
    }

    /// A namespace starts: its child run is found or created; when it has
    /// work left it (and the parent) are marked RUNNING and progress
    /// metrics start flowing. A finished namespace whose records are only
    /// read keeps its status and times.
    async fn begin(&mut self, ns: &str, work_left: bool) {
        if !self.open.iter().any(|n| n == ns) {
            self.open.push(ns.to_string());
        }
        self.stop_progress(None).await;
        if self.paused(ns) {
            return;
        }
        let done = !work_left;
        self.evaluated |= work_left;
        let reopen_parent = work_left && !self.parent_reopened;
        let r: Result<Option<String>> = async {
            let m = self.setup().await?;
            if reopen_parent {
                m.reopen_parent().await?;
            }
            let run = m.ensure_child(ns).await?;
            if done {
                return Ok(None);
            }
            m.reopen_child(ns).await?;
            Ok(Some(run.info.run_id))
        }
        .await;
        match r {
            Ok(run_id) => {
                if reopen_parent {
                    self.parent_reopened = true;
                }
                if let Some(run_id) = run_id {
                    let task = tokio::spawn(progress_loop(
                        self.client.clone(),
                        run_id,
                        ns.to_string(),
                        self.progress.clone(),
                        self.current.clone(),
                        self.health.clone(),
                    ));
                    self.progress_task = Some((ns.to_string(), task));
                }
            }
            Err(e) => record_failure(&self.health, ns, &e),
        }
    }

    /// Stops the progress loop; `last` (the counters when the namespace
    /// stopped) is logged as its final point.
    async fn stop_progress(&mut self, last: Option<Snapshot>) {
        if let Some((ns, task)) = self.progress_task.take() {
            task.abort();
            let _ = task.await;
            let Some(last) = last else { return };
            if self.paused(&ns) {
                return;
            }
            let id = self
                .mirror
                .as_ref()
                .and_then(|m| m.ids.child_run_ids.get(&ns).cloned());
            if let Some(id) = id {
                if let Err(e) = log_progress(&self.client, &id, last).await {
                    record_failure(&self.health, &ns, &e.into());
                }
            }
        }
    }

    async fn push(&mut self, ns: &str, st: &'static str) {
        if self.paused(ns) {
            return;
        }
        let r = async {
            let m = self.setup().await?;
            m.push_namespace(ns, st, false).await
        }
        .await;
        match r {
            Ok(_) => {
                self.pushed.insert(ns.to_string());
            }
            Err(e) => record_failure(&self.health, ns, &e),
        }
    }

    /// Sends the traces of examples finished since the last call (of every
    /// namespace when `all`, else of the open ones).
    async fn send_traces(&mut self, all: bool) {
        let Some(mut traces) = self.traces.take() else {
            return;
        };
        let namespaces: Vec<String> = if all {
            crate::store::session::namespaces(&self.session_dir)
                .into_iter()
                .map(|(ns, _)| ns)
                .collect()
        } else {
            self.open.clone()
        };
        // Before the end: until the run ends (the batch under way is then
        // cut short so that the end's records go first). At the end: until
        // the deadline, never starting a request that, going by the last
        // one, could not finish by then.
        let deadline = self.trace_deadline;
        let ending = self.ending.clone();
        let stop = move |next: Duration| match deadline {
            Some(d) => Instant::now() + next >= d,
            None => ending.load(std::sync::atomic::Ordering::SeqCst),
        };
        if !namespaces.is_empty() && !self.paused("traces") {
            let r = async {
                let m = self.setup().await?;
                let mut left = 0;
                for ns in &namespaces {
                    left += traces.send_new(m, ns, false, &stop).await?.left;
                }
                Ok::<_, anyhow::Error>(left)
            }
            .await;
            match r {
                Ok(0) => {}
                // Cut short before the end: the end sends the rest.
                Ok(_) if deadline.is_none() => {}
                Ok(left) => {
                    let mut health = lock(&self.health);
                    health.pending.retain(|p| !p.starts_with("traces: "));
                    health.pending.insert(format!(
                        "traces: {left} not sent when the run ended (it waits 3% of its time for them, 10-60 s, or {TRACE_WAIT_VAR}); `w2c sync` sends them"
                    ));
                }
                Err(e) => record_failure(&self.health, "traces", &e),
            }
        }
        self.traces = Some(traces);
    }
}

async fn log_progress(
    client: &MlflowClient,
    run_id: &str,
    p: Snapshot,
) -> std::result::Result<(), rest::MlflowError> {
    let Snapshot {
        done,
        total,
        failed,
        rate,
    } = p;
    let ts = rest::now_ms();
    let point = |key: &str, value: f64| MetricPoint {
        key: key.to_string(),
        value,
        timestamp: ts,
        step: done as i64,
        ..Default::default()
    };
    client
        .log_batch(
            run_id,
            &[
                point("progress.done", done as f64),
                point("progress.total", total as f64),
                point("progress.errors", failed as f64),
                point("progress.req_per_sec", rate),
            ],
            &[],
            &[],
        )
        .await
}

/// Logs the live counters every [`PROGRESS_VAR`] while `ns` is the
/// namespace being run.
async fn progress_loop(
    client: MlflowClient,
    run_id: String,
    ns: String,
    progress: Arc<Progress>,
    current: Current,
    health: Shared,
) {
    let every = progress_interval();
    loop {
        tokio::time::sleep(every).await;
        let paused = lock(&health)
            .paused_until
            .is_some_and(|t| Instant::now() < t);
        let running = current
            .lock()
            .is_ok_and(|c| c.as_deref() == Some(ns.as_str()));
        if paused || !running {
            continue;
        }
        if let Err(e) = log_progress(&client, &run_id, Snapshot::of(&progress)).await {
            record_failure(&health, "progress metrics", &e.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_wait_3_percent_of_the_run_10_s_to_a_minute_unless_told() {
        let unset = |_: &str| None;
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(trace_wait_in(&unset, secs(100)), TRACE_WAIT_MIN);
        assert_eq!(trace_wait_in(&unset, secs(0)), TRACE_WAIT_MIN);
        assert_eq!(trace_wait_in(&unset, secs(1000)), secs(30));
        assert_eq!(trace_wait_in(&unset, secs(3 * 3600)), TRACE_WAIT_MAX);
        let set = |v: &'static str| move |k: &str| (k == TRACE_WAIT_VAR).then(|| v.to_string());
        assert_eq!(trace_wait_in(&set("600"), secs(100)), secs(600));
        assert_eq!(trace_wait_in(&set("0"), secs(3600)), secs(0));
        // Out of range (refused at start-up by the environment check): the rule.
        assert_eq!(trace_wait_in(&set("99999"), secs(100)), TRACE_WAIT_MIN);
    }
}
