//! Session store: the on-disk layout of one evaluation session, its manifest,
//! its process lock and its method namespaces.
//!
//! ```text
//! <runs_dir>/<RUN_KEY>/sessions/<FP16>/
//!   manifest.json           fingerprint, canonical payload, resolved config
//!   .lock                   OS lock held by the one process writing the session
//!   audit_fallbacks.jsonl   events about the inputs (dataset rows accepted as
//!                           written), when there are any; before the manifest
//!   checkpoints/<ns>/       results.jsonl, errors.jsonl, audit_fallbacks.jsonl,
//!                           method_settings.json, _DONE.json
//!   artifacts_local/<ns>/   metrics.json, predictions.jsonl
//! ```
//! A namespace is a method plus a hash of its settings: the first settings of a
//! method claim the plain name (`mcq`); different settings get `mcq~<hash12>`,
//! so results under different settings are never mixed.

use super::address::{self, AddressError, Listed, RunKeyScope, SessionRef};
use super::files::{read_json, write_json_atomic};
use super::layout::{self, names, NamespaceDir};
use super::records::MethodSettings;
use crate::fingerprint::{canonical_json, diff, short};
use crate::shard::Shard;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Version of the manifest layout.
pub const MANIFEST_SCHEMA: u32 = 1;

/// `manifest.json`: what identifies a session and how to resume it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this file.
    pub schema_version: u32,
    /// Full sha256 fingerprint (the directory name is its first 16 hex chars).
    pub fingerprint: String,
    /// RUN_KEY the session lives under.
    pub run_key: String,
    /// w2c version that created the session.
    pub w2c_version: String,
    /// Creation time, UTC RFC 3339.
    pub created_at: String,
    /// Last time a process started work on the session (created it, or
    /// began a namespace that was not done), UTC RFC 3339. A process that
    /// finds nothing to do leaves the session untouched.
    pub updated_at: String,
    /// The canonical JSON string that was hashed.
    pub fingerprint_canonical: String,
    /// The same payload as a JSON object, for reading.
    pub fingerprint_payload: Value,
    /// The resolved config (absolute paths, no secrets); enough to resume.
    pub config: Value,
    /// Number of selected examples.
    pub n_examples: usize,
    /// Selected example uuids, in evaluation order.
    pub example_ids: Vec<String>,
    /// Method namespaces claimed so far, with their settings.
    #[serde(default)]
    pub namespaces: serde_json::Map<String, Value>,
    /// Gold label counts of the selected examples.
    #[serde(default)]
    pub label_counts: std::collections::BTreeMap<String, usize>,
    /// The namespaces the latest run or resume planned, in the order it runs
    /// them, with their item counts (absent in sessions written before w2c
    /// recorded its plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedNamespace>,
    /// The number of shards the session is split into (`w2c plan --shards`,
    /// or the first shard to run); absent for a session never run in shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
}

impl Manifest {
    /// Each example's position in the session's order, by uuid.
    pub fn example_positions(&self) -> std::collections::HashMap<&str, usize> {
        self.example_ids
            .iter()
            .enumerate()
            .map(|(i, u)| (u.as_str(), i))
            .collect()
    }
}

/// One namespace of a session's plan: what `status` lists before the
/// namespace has a file, and the total its progress counts against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedNamespace {
    /// The namespace's name.
    pub namespace: String,
    /// Work items: examples × repeats.
    pub items: usize,
    /// Items per example (a stability sweep's K; else 1).
    pub repeats: usize,
}

/// An open session directory, locked by this process.
#[derive(Debug)]
pub struct Session {
    /// The session directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Whether this process created it.
    pub created: bool,
    /// Whether this process has recorded that it works on the session.
    updated: AtomicBool,
    /// The shard this process runs, if it is one (it then shares the
    /// session with the other shards).
    pub shard: Option<Shard>,
    _lock: SessionLock,
}

impl Session {
    /// The session's address, `RUN_KEY/FP16` ([`address::of_dir`]).
    pub fn address(&self) -> String {
        address_of(&self.dir, &self.manifest)
    }

    /// Records in `manifest.json` that this process works on the session
    /// (`updated_at`), once per process. A shard does it under the plan
    /// lock, since other shards may do the same.
    pub fn mark_updated(&self) -> Result<()> {
        if self.created || self.updated.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let _planning = self.plan_lock()?;
        let now = now_utc();
        update_manifest(&self.dir, |obj| {
            obj.insert("updated_at".into(), Value::String(now));
        })
    }

    /// Whether other processes (shards) may work on the session beside
    /// this one: shared files are then written only under a lock.
    pub fn is_shared(&self) -> bool {
        self.shard.is_some()
    }

    /// The lock under which the manifest is changed while shards share the
    /// session (creating it, recording the plan); `None` for a process
    /// that holds the session alone.
    pub fn plan_lock(&self) -> Result<Option<Held>> {
        if !self.is_shared() {
            return Ok(None);
        }
        wait_for_lock(&self.dir.join(names::PLAN_LOCK)).map(Some)
    }
}

/// The lock whoever finalizes a namespace of the session holds (shards
/// and `w2c finalize` may try at the same time): waits for it.
pub fn finalize_lock(session_dir: &Path) -> Result<Held> {
    wait_for_lock(&session_dir.join(names::FINALIZE_LOCK))
}

/// Current UTC time as RFC 3339 with seconds.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Path of a session directory.
pub fn session_dir(runs_dir: &Path, run_key: &str, fingerprint: &str) -> PathBuf {
    runs_dir
        .join(run_key)
        .join("sessions")
        .join(short(fingerprint))
}

/// The exclusive OS lock on `<session>/.lock`; released when dropped (or when
/// the process dies, whatever the cause).
#[derive(Debug)]
pub struct SessionLock {
    _files: Vec<File>,
}

/// Error returned when another live process holds the session.
#[derive(Debug, thiserror::Error)]
#[error("session {dir} is in use by {holder} (PID {pid}); wait for it to finish or stop it first")]
pub struct SessionBusy {
    /// Session directory.
    pub dir: String,
    /// Who holds it: `another w2c process`, `shard 1/4`, `3 shards`...
    pub holder: String,
    /// PID written by the holder (several, comma-separated, for shards),
    /// or `unknown`.
    pub pid: String,
}

/// Takes the session lock, writing our PID into the lock file.
///
/// The PID must be readable whenever the lock is held, so taking a lock and
/// writing the PID happen under a short gate (an exclusive OS lock on the
/// session directory itself), and a process that finds the session held
/// reads the PID under the same gate: it never sees the empty file, or the
/// PID a killed holder left, that the winner is about to overwrite.
pub fn lock(dir: &Path) -> Result<SessionLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _gate = Gate::exclusive(dir)?;
    let path = dir.join(names::LOCK);
    let mut file = lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(busy(dir, pid.trim()).into());
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    write_pid(&mut file).with_context(|| format!("cannot write our PID to {}", path.display()))?;
    Ok(SessionLock { _files: vec![file] })
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.sync_data()
}

/// The short lock on a session directory under which a session or shard
/// lock is taken and its PID written, or read ([`holder`]); released when
/// dropped, or when the process dies.
struct Gate {
    _file: File,
}

impl Gate {
    fn open(dir: &Path) -> Result<File> {
        File::open(dir).with_context(|| format!("cannot open {}", dir.display()))
    }

    /// Waits for the gate (held only while a lock is taken or read).
    fn exclusive(dir: &Path) -> Result<Gate> {
        let f = Self::open(dir)?;
        f.lock()
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        Ok(Gate { _file: f })
    }

    /// The gate shared with other readers.
    fn shared(dir: &Path) -> Result<Gate> {
        let f = Self::open(dir)?;
        f.lock_shared()
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        Ok(Gate { _file: f })
    }
}

/// Why the session in `dir` cannot be taken: the shards running it, or the
/// one process whose PID `.lock` holds.
fn busy(dir: &Path, lock_pid: &str) -> SessionBusy {
    let shards = shard_holders(dir);
    let (holder, pid) = if shards.is_empty() {
        ("another w2c process".to_string(), lock_pid.to_string())
    } else {
        (
            format!(
                "{} running shard{} ({})",
                shards.len(),
                if shards.len() == 1 { "" } else { "s" },
                shards
                    .iter()
                    .map(|(s, _)| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            shards
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    SessionBusy {
        dir: dir.display().to_string(),
        holder,
        pid: if pid.is_empty() {
            "unknown".into()
        } else {
            pid
        },
    }
}

/// Opens (creating it) a lock file.
fn lock_file(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

/// Takes the session lock shared, or says who holds it exclusively.
fn lock_session_shared(dir: &Path) -> Result<File> {
    let path = dir.join(names::LOCK);
    let session = lock_file(&path)?;
    match session.try_lock_shared() {
        Ok(()) => Ok(session),
        Err(TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            Err(busy(dir, pid.trim()).into())
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Takes the session for one shard: the session lock shared (shards run
/// side by side; no unsharded writer can start, and none may be running)
/// and the shard's own lock (`shards/shard-I-of-N.lock`, holding our PID),
/// so no two processes run the same shard. Under the gate, like [`lock`].
pub fn lock_shard(dir: &Path, shard: Shard) -> Result<SessionLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _gate = Gate::exclusive(dir)?;
    let session = lock_session_shared(dir)?;
    let path = layout::shard_lock(dir, shard);
    let mut own = lock_file(&path)?;
    match own.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(SessionBusy {
                dir: dir.display().to_string(),
                holder: format!("another process running shard {shard}"),
                pid: Some(pid.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "unknown".into()),
            }
            .into());
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    write_pid(&mut own).with_context(|| format!("cannot write our PID to {}", path.display()))?;
    Ok(SessionLock {
        _files: vec![session, own],
    })
}

/// Takes the session lock shared without a shard (`w2c finalize`: it may
/// run beside shards, never beside an unsharded writer).
pub fn lock_shared(dir: &Path) -> Result<SessionLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _gate = Gate::exclusive(dir)?;
    Ok(SessionLock {
        _files: vec![lock_session_shared(dir)?],
    })
}

/// A short-lived exclusive lock (planning, finalizing); released on drop.
#[derive(Debug)]
pub struct Held {
    _file: File,
}

/// Waits for the exclusive lock on `path` (created if needed).
pub fn wait_for_lock(path: &Path) -> Result<Held> {
    let file = lock_file(path)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Held { _file: file })
}

/// The shards running on the session in `dir` now, with their PIDs.
pub fn shard_holders(dir: &Path) -> Vec<(Shard, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join(names::SHARDS))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(shard) = name.strip_suffix(".lock").and_then(Shard::from_dir_name) else {
            continue;
        };
        let Ok(file) = OpenOptions::new().read(true).write(true).open(e.path()) else {
            continue;
        };
        if file.try_lock().is_err() {
            let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push((shard, pid.trim().to_string()));
        }
    }
    out.sort();
    out
}

/// Whether a live process holds the session's lock, and its PID if so
/// (the PIDs of the running shards, comma-separated, when shards hold it).
/// Read under the gate, so the PID is never one being replaced.
pub fn holder(dir: &Path) -> Option<String> {
    let path = dir.join(names::LOCK);
    let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    let gate = Gate::shared(dir).ok();
    let pid = match file.try_lock() {
        Ok(()) => None,
        Err(_) => {
            let shards = shard_holders(dir);
            if shards.is_empty() {
                std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
            } else {
                Some(
                    shards
                        .iter()
                        .map(|(_, p)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }
        }
    };
    drop(gate);
    pid
}

/// What a new session needs besides its directory.
pub struct NewSession<'a> {
    /// RUN_KEY.
    pub run_key: &'a str,
    /// The fingerprint payload.
    pub payload: &'a Value,
    /// The resolved config as JSON.
    pub config: Value,
    /// Selected uuids in order.
    pub example_ids: Vec<String>,
    /// Gold label counts of the selection.
    pub label_counts: std::collections::BTreeMap<String, usize>,
    /// Audit events about the inputs (the session's own
    /// `audit_fallbacks.jsonl`), written before the manifest.
    pub audit: &'a [crate::audit::AuditEvent],
}

/// How a process holds a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Alone (`run`, `resume`, `plan`, `sync`): the exclusive lock.
    Alone,
    /// As one shard: beside the other shards, under its own lock.
    Shard(Shard),
    /// Beside running shards without being one (`w2c finalize`).
    Shared,
}

impl Access {
    fn lock(self, dir: &Path) -> Result<SessionLock> {
        match self {
            Access::Alone => lock(dir),
            Access::Shard(shard) => lock_shard(dir, shard),
            Access::Shared => lock_shared(dir),
        }
    }

    fn shard(self) -> Option<Shard> {
        match self {
            Access::Shard(s) => Some(s),
            _ => None,
        }
    }
}

/// Opens (creating if needed) and locks the session for `spec`. An existing
/// manifest whose payload differs is refused with a diff; an existing
/// session is not written to.
pub fn open_or_create(runs_dir: &Path, spec: NewSession<'_>) -> Result<Session> {
    open_or_create_as(runs_dir, spec, Access::Alone)
}

/// [`open_or_create`] holding the session as `access` says; processes that
/// share the session create it under the plan lock, so one creates it and
/// the others find it.
pub fn open_or_create_as(runs_dir: &Path, spec: NewSession<'_>, access: Access) -> Result<Session> {
    let canonical = canonical_json(spec.payload);
    let fp = crate::fingerprint::sha256_hex(canonical.as_bytes());
    let dir = session_dir(runs_dir, spec.run_key, &fp);
    let lock = access.lock(&dir)?;
    let _planning = match access {
        Access::Alone => None,
        _ => Some(wait_for_lock(&dir.join(names::PLAN_LOCK))?),
    };
    let manifest_path = layout::manifest(&dir);
    if manifest_path.exists() {
        let session = open_locked(dir, lock, spec.payload, access)?;
        record_audit(&session.dir, spec.audit)?;
        return Ok(session);
    }
    let now = now_utc();
    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA,
        fingerprint: fp,
        run_key: spec.run_key.to_string(),
        w2c_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now.clone(),
        updated_at: now,
        fingerprint_canonical: canonical,
        fingerprint_payload: spec.payload.clone(),
        config: spec.config,
        n_examples: spec.example_ids.len(),
        example_ids: spec.example_ids,
        namespaces: Default::default(),
        label_counts: spec.label_counts,
        plan: Vec::new(),
        shards: None,
    };
    std::fs::create_dir_all(layout::checkpoints(&dir))?;
    std::fs::create_dir_all(layout::artifacts(&dir))?;
    // Before the manifest: a session that exists has its input events.
    record_audit(&dir, spec.audit)?;
    write_json_atomic(&manifest_path, &manifest)?;
    Ok(Session {
        dir,
        manifest,
        created: true,
        updated: AtomicBool::new(true),
        shard: access.shard(),
        _lock: lock,
    })
}

/// Adds to the session's own `audit_fallbacks.jsonl` the `events` it does
/// not hold yet (by `event_id`), rewriting the file atomically, so a kill
/// leaves it as it was or complete and a resume never repeats an event.
/// Writes nothing when every event is there. The caller holds the session
/// (and, beside shards, the plan lock).
pub fn record_audit(dir: &Path, events: &[crate::audit::AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let path = layout::session_audit(dir);
    let (stored, _) = super::jsonl::load_jsonl::<crate::audit::AuditEvent>(&path)?;
    let mut ids: std::collections::HashSet<String> =
        stored.iter().map(|e| e.event_id.clone()).collect();
    let missing: Vec<&crate::audit::AuditEvent> = events
        .iter()
        .filter(|e| ids.insert(e.event_id.clone()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for e in stored.iter().chain(missing) {
        serde_json::to_writer(&mut bytes, e).context("cannot serialise an audit event")?;
        bytes.push(b'\n');
    }
    super::files::write_bytes_atomic(&path, &bytes)
}

/// Opens and locks the existing session for `payload` under `run_key`,
/// without writing to it; refuses when it has no manifest or its payload
/// differs.
pub fn open_existing(runs_dir: &Path, run_key: &str, payload: &Value) -> Result<Session> {
    open_existing_as(runs_dir, run_key, payload, Access::Alone)
}

/// [`open_existing`] holding the session as `access` says.
pub fn open_existing_as(
    runs_dir: &Path,
    run_key: &str,
    payload: &Value,
    access: Access,
) -> Result<Session> {
    let fp = crate::fingerprint::fingerprint(payload);
    let dir = session_dir(runs_dir, run_key, &fp);
    if !layout::manifest(&dir).exists() {
        bail!(
            "{}: no session there any more (its manifest.json is gone)",
            dir.display()
        );
    }
    let lock = access.lock(&dir)?;
    open_locked(dir, lock, payload, access)
}

/// Reads the manifest of a session this process has just locked and checks
/// its payload.
fn open_locked(
    dir: PathBuf,
    lock: SessionLock,
    payload: &Value,
    access: Access,
) -> Result<Session> {
    let manifest_path = layout::manifest(&dir);
    let manifest: Manifest = read_json(&manifest_path)?;
    check_payload(&manifest, payload, &manifest_path)?;
    Ok(Session {
        dir,
        manifest,
        created: false,
        updated: AtomicBool::new(false),
        shard: access.shard(),
        _lock: lock,
    })
}

/// Records the number of shards the session is split into in
/// `manifest.json`. The caller holds the session alone or the plan lock.
pub fn record_shards(session_dir: &Path, shards: usize) -> Result<()> {
    update_manifest(session_dir, |obj| {
        obj.insert("shards".into(), Value::from(shards));
    })
}

/// Refuses when the stored payload differs from `payload`, listing each change.
pub fn check_payload(manifest: &Manifest, payload: &Value, path: &Path) -> Result<()> {
    let stored: Value =
        serde_json::from_str(&manifest.fingerprint_canonical).with_context(|| {
            format!(
                "{}: field `fingerprint_canonical` is not JSON",
                path.display()
            )
        })?;
    let changes = diff(&stored, payload);
    if !changes.is_empty() {
        bail!(
            "{}: the session's inputs changed since it was created, refusing to mix results:\n  {}\n(start a new session by running the config again, or restore the original inputs)",
            path.display(),
            changes.join("\n  ")
        );
    }
    Ok(())
}

/// A session found on disk (not locked).
#[derive(Debug, Clone)]
pub struct FoundSession {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl FoundSession {
    /// The run key folder the session is in (the manifest's run key for a
    /// directory outside the layout). A run key folder copied by hand
    /// (`cp -r runs/main runs/main-old`) holds sessions whose manifests
    /// name the original run key: the folder is what tells them apart.
    pub fn run_key(&self) -> String {
        address::run_key_of_dir(&self.dir)
            .map_or_else(|| self.manifest.run_key.clone(), str::to_string)
    }

    /// The session's address, `RUN_KEY/FP16` ([`address::of_dir`]).
    pub fn address(&self) -> String {
        address_of(&self.dir, &self.manifest)
    }
}

/// The address of the session in `dir`: from its path, else its manifest.
fn address_of(dir: &Path, manifest: &Manifest) -> String {
    address::of_dir(dir)
        .unwrap_or_else(|| address::display(&manifest.run_key, &manifest.fingerprint))
}

/// A directory under `<runs>/<run key>/sessions/` that is not a readable
/// w2c session: its manifest is missing or cannot be read. Never skipped
/// silently: `status` lists it and `verify` reports it.
#[derive(Debug, Clone)]
pub struct UnreadableSession {
    /// The directory.
    pub dir: PathBuf,
    /// The run key folder it is in.
    pub run_key: String,
    /// Why it cannot be read (the manifest's path and the cause).
    pub error: String,
}

/// What is under a runs directory: the readable sessions (sorted by run key
/// then creation time) and the session directories that cannot be read.
/// `skip` leaves out directories that belong to another tool (the Python
/// suite's sessions).
pub fn scan(
    runs_dir: &Path,
    skip: impl Fn(&Path) -> bool,
) -> (Vec<FoundSession>, Vec<UnreadableSession>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let Ok(run_keys) = std::fs::read_dir(runs_dir) else {
        return (out, bad);
    };
    for rk in run_keys.flatten() {
        let Ok(sessions) = std::fs::read_dir(rk.path().join("sessions")) else {
            continue;
        };
        for s in sessions.flatten() {
            let dir = s.path();
            if !dir.is_dir() {
                // Where a session directory belongs: never skipped silently
                // (a session replaced by a file is a finding).
                let what = std::fs::symlink_metadata(&dir)
                    .map_or("unreadable", |m| super::files::file_kind(&m.file_type()));
                bad.push(UnreadableSession {
                    run_key: rk.file_name().to_string_lossy().into_owned(),
                    error: format!("{} is {what}, not a session directory", dir.display()),
                    dir,
                });
                continue;
            }
            if skip(&dir) {
                continue;
            }
            let path = layout::manifest(&dir);
            match read_json::<Manifest>(&path) {
                Ok(manifest) => out.push(FoundSession { dir, manifest }),
                Err(e) => bad.push(UnreadableSession {
                    run_key: rk.file_name().to_string_lossy().into_owned(),
                    error: if path.exists() {
                        format!("{e:#}")
                    } else {
                        format!("{}: no such file", path.display())
                    },
                    dir,
                }),
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.manifest.run_key, &a.manifest.created_at)
            .cmp(&(&b.manifest.run_key, &b.manifest.created_at))
    });
    bad.sort_by(|a, b| a.dir.cmp(&b.dir));
    (out, bad)
}

/// All readable sessions under `runs_dir`, sorted by run key then creation
/// time ([`scan`] also returns the unreadable ones).
pub fn list(runs_dir: &Path) -> Vec<FoundSession> {
    scan(runs_dir, |_| false).0
}

/// The error of [`find`] when the only directory matching a fingerprint is
/// a session whose manifest cannot be read (`verify` reports it as a
/// finding).
#[derive(Debug, thiserror::Error)]
#[error("session {} cannot be read: {}", .0.dir.display(), .0.error)]
pub struct UnreadableSessionError(pub UnreadableSession);

/// The one session `arg` names ([`super::address`]): `RUN_KEY/PREFIX` or a
/// bare prefix under `runs_dir` (a bare one under `scope`'s run key when
/// given), or a session directory. Errors are [`AddressError`]s, or an
/// [`UnreadableSessionError`] when the session named is there but its
/// manifest cannot be read (`verify` reports it as a finding).
pub fn resolve(runs_dir: &Path, arg: &str, scope: Option<&RunKeyScope>) -> Result<FoundSession> {
    let (own, prefix) = match SessionRef::parse(arg) {
        SessionRef::Dir(dir) => return open_dir(arg, dir, scope),
        SessionRef::Address { run_key, prefix } => (run_key, prefix),
    };
    let run_key = address::effective_run_key(arg, own.as_deref(), scope)?;
    let (sessions, unreadable) = scan(runs_dir, |_| false);
    let run_keys: Vec<String> = sessions.iter().map(FoundSession::run_key).collect();
    let listed: Vec<Listed<'_>> = sessions
        .iter()
        .zip(&run_keys)
        .map(|(s, run_key)| Listed {
            run_key,
            fingerprint: &s.manifest.fingerprint,
        })
        .collect();
    match address::choose(arg, &prefix, run_key, scope, runs_dir, &listed) {
        Ok(i) => Ok(sessions[i].clone()),
        Err(AddressError::NotFound {
            arg,
            prefix,
            where_,
            elsewhere,
            ..
        }) => {
            if own.is_some() && Path::new(&arg).is_dir() {
                // `sessions/583c…` typed from inside a run key folder: a
                // path that reads like an address.
                return open_dir(&arg, PathBuf::from(&arg), scope);
            }
            if let Some(bad) = unreadable.iter().find(|u| {
                u.dir
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    && run_key.is_none_or(|k| u.run_key == k)
            }) {
                return Err(UnreadableSessionError(bad.clone()).into());
            }
            let is_dir = run_key.is_none() && Path::new(&arg).is_dir();
            Err(AddressError::NotFound {
                arg,
                prefix,
                where_,
                elsewhere,
                is_dir,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The session in directory `dir` (given as `arg`).
fn open_dir(arg: &str, dir: PathBuf, scope: Option<&RunKeyScope>) -> Result<FoundSession> {
    let path = layout::manifest(&dir);
    if !dir.is_dir() || !(path.exists() || dir.join(names::CHECKPOINTS).is_dir()) {
        bail!(
            "{}",
            address::not_a_session_dir(arg, dir.exists(), dir.is_dir())
        );
    }
    let manifest: Manifest = match read_json(&path) {
        Ok(m) => m,
        Err(e) => {
            return Err(UnreadableSessionError(UnreadableSession {
                run_key: address::run_key_of_dir(&dir)
                    .unwrap_or_default()
                    .to_string(),
                error: format!("{e:#}"),
                dir,
            })
            .into());
        }
    };
    let found = FoundSession { dir, manifest };
    address::effective_run_key(arg, Some(&found.run_key()), scope)?;
    Ok(found)
}

/// Finds or claims the namespace for a method with given settings: the
/// plain method name (`mcq`) when free or holding the same settings, else
/// `mcq~<hash12>`. A new namespace's settings are written and recorded in
/// the manifest.
pub fn claim_namespace(session_dir: &Path, settings: &MethodSettings) -> Result<NamespaceDir> {
    namespace(session_dir, settings).map(|name| NamespaceDir::new(session_dir, &name))
}

/// The name [`claim_namespace`] claims.
fn namespace(session_dir: &Path, settings: &MethodSettings) -> Result<String> {
    let plain = settings.method.clone();
    let hashed = format!(
        "{}~{}",
        settings.method,
        crate::fingerprint::prefix(&settings.settings_hash, 12)
    );
    for name in [&plain, &hashed] {
        let path = NamespaceDir::new(session_dir, name).settings();
        if path.exists() {
            let stored: MethodSettings = read_json(&path)?;
            if stored.settings_hash == settings.settings_hash {
                return Ok(name.clone());
            }
        } else {
            write_json_atomic(&path, settings)?;
            record_namespace(session_dir, name, settings)?;
            return Ok(name.clone());
        }
    }
    bail!(
        "{}: namespace `{hashed}` holds different settings than its hash says; the session directory was edited by hand",
        layout::checkpoints(session_dir).display()
    )
}

/// Adds a newly claimed namespace and its settings (e.g. the chat family
/// `mcq_logprob` resolved) to `manifest.json`, under `namespaces`. The caller
/// holds the session lock.
fn record_namespace(session_dir: &Path, name: &str, settings: &MethodSettings) -> Result<()> {
    update_manifest(session_dir, |obj| {
        let entry = obj
            .entry("namespaces")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = entry.as_object_mut() {
            map.insert(
                name.to_string(),
                serde_json::json!({"settings_hash": settings.settings_hash, "settings": settings.settings}),
            );
        }
    })
}

/// Rewrites `manifest.json` (if there is one) with `change` applied to its
/// top-level object, keeping every other field as it is on disk. The caller
/// holds the session lock.
fn update_manifest(
    session_dir: &Path,
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<()> {
    let path = layout::manifest(session_dir);
    if !path.exists() {
        return Ok(());
    }
    let mut manifest: Value = read_json(&path)?;
    if let Some(obj) = manifest.as_object_mut() {
        change(obj);
    }
    write_json_atomic(&path, &manifest)
}

/// Records `plan` as the session's plan in `manifest.json`, unless it is the
/// plan already recorded (a resume with nothing new to do writes nothing).
/// The caller holds the session lock.
pub fn record_plan(session_dir: &Path, plan: &[PlannedNamespace]) -> Result<()> {
    let stored: Manifest = read_json(&layout::manifest(session_dir))?;
    if stored.plan == plan {
        return Ok(());
    }
    let value = serde_json::to_value(plan).context("cannot serialise the plan")?;
    update_manifest(session_dir, |obj| {
        obj.insert("plan".into(), value);
    })
}

/// Every namespace of a session: (name, settings).
pub fn namespaces(session_dir: &Path) -> Vec<(String, MethodSettings)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(layout::checkpoints(session_dir)) {
        for e in entries.flatten() {
            if let Ok(s) = read_json::<MethodSettings>(&e.path().join(names::SETTINGS)) {
                out.push((e.file_name().to_string_lossy().into_owned(), s));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The judge protocol in namespace `ns`'s `method_settings.json` (see
/// [`crate::headline::protocol_of`]); `None` when it cannot be read or
/// names none.
pub fn namespace_protocol(ns: &NamespaceDir, method: &str) -> Option<String> {
    let settings: MethodSettings = read_json(&ns.settings()).ok()?;
    crate::headline::protocol_of(method, &settings.settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec<'a>(payload: &'a Value) -> NewSession<'a> {
        NewSession {
            run_key: "rk",
            payload,
            config: json!({}),
            example_ids: vec!["a".into()],
            label_counts: Default::default(),
            audit: &[],
        }
    }

    #[test]
    fn second_lock_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        let busy = err.downcast_ref::<SessionBusy>().unwrap();
        assert_eq!(busy.pid, std::process::id().to_string());
        assert_eq!(holder(dir.path()), Some(std::process::id().to_string()));
    }

    /// Many takers at once on fresh sessions: every loser reads the
    /// winner's PID (without the gate some read the file the winner had
    /// not written yet).
    #[test]
    fn a_lock_loser_always_reads_the_holders_pid() {
        let me = std::process::id().to_string();
        let mut unknown = 0;
        let mut losers = 0;
        for _ in 0..500 {
            let dir = tempfile::tempdir().unwrap();
            // A stale PID left by a holder killed earlier.
            std::fs::write(dir.path().join(names::LOCK), "999999999").unwrap();
            let start = std::sync::Barrier::new(8);
            let done = std::sync::Barrier::new(8);
            let pids: Vec<Option<String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            let got = lock(dir.path());
                            let pid = match &got {
                                Ok(_) => None,
                                Err(e) => {
                                    Some(e.downcast_ref::<SessionBusy>().unwrap().pid.clone())
                                }
                            };
                            done.wait();
                            pid
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for pid in pids.into_iter().flatten() {
                losers += 1;
                if pid != me {
                    unknown += 1;
                }
            }
        }
        assert!(losers >= 500 * 7, "{losers}");
        assert_eq!(
            unknown, 0,
            "{unknown} of {losers} losers read no PID or a stale one"
        );
    }

    #[test]
    fn reopen_same_payload_and_find_by_prefix() {
        let runs = tempfile::tempdir().unwrap();
        let payload = json!({"schema": 1, "x": 1});
        let fp = {
            let s = open_or_create(runs.path(), spec(&payload)).unwrap();
            assert!(s.created);
            s.manifest.fingerprint.clone()
        };
        let s = open_or_create(runs.path(), spec(&payload)).unwrap();
        assert!(!s.created);
        drop(s);
        let found = resolve(runs.path(), &fp[..8], None).unwrap();
        assert_eq!(found.manifest.fingerprint, fp);
        let by_address = resolve(runs.path(), &format!("rk/{}", &fp[..6]), None).unwrap();
        assert_eq!(by_address.dir, found.dir);
        let by_dir = resolve(runs.path(), found.dir.to_str().unwrap(), None).unwrap();
        assert_eq!(by_dir.manifest.fingerprint, fp);
        assert!(resolve(runs.path(), "zz", None).is_err());
    }

    #[test]
    fn namespaces_never_mix_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |h: &str| MethodSettings {
            method: "mcq".into(),
            settings_hash: h.repeat(64),
            settings: json!({}),
        };
        assert_eq!(namespace(dir.path(), &mk("a")).unwrap(), "mcq");
        assert_eq!(namespace(dir.path(), &mk("a")).unwrap(), "mcq");
        assert_eq!(namespace(dir.path(), &mk("b")).unwrap(), "mcq~bbbbbbbbbbbb");
        assert_eq!(namespaces(dir.path()).len(), 2);
    }
}
