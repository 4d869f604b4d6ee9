//! `w2c verify`: cross-checks a session's local record and says precisely
//! what differs.
//!
//! Local checks, per session and namespace: the manifest's fingerprint is the
//! hash of its canonical payload; every `_DONE.json` matches its checkpoint
//! and artifact files (sizes and sha256); checkpoints parse (a torn or
//! malformed line is reported); a namespace marked done has no unresolved
//! errors; a namespace with every result but no `_DONE.json` is reported;
//! `metrics.json` recomputes from `predictions.jsonl`, its token usage and
//! cost from the records ([`usage`]). Sessions without
//! `mlflow_ids.json` are offline: tracking is reported as not checked.
//! [`tracking`] adds the checks against the MLflow server.

pub mod python_suite;
pub mod rescore;
mod session_audit;
pub mod tracking;
mod usage;

use crate::fingerprint::sha256_hex;
use crate::json_scan::Scan;
use crate::judge_protocol::{
    aggregate::{self, OfficialAggregate},
    OfficialJudgement,
};
use crate::labels::{Label, Prediction};
use crate::metrics::{self, Metrics, Scored};
use crate::store::names as files;
use crate::store::session::{self, FoundSession};
use crate::store::{
    file_digest, read_json, read_jsonl, read_jsonl_lines, DoneMarker, FileDigest, LoadReport,
    MetricsFile, NamespaceDir,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Everything matches.
    Ok,
    /// Present but different.
    Mismatch,
    /// Expected but absent.
    Missing,
    /// Not checked (e.g. an offline session's tracking), with the reason.
    NotChecked,
    /// Could not be checked: the tracking server is unreachable or refused
    /// the credentials.
    CannotCheck,
    /// Not in MLflow yet, and recorded as not sent (traces a run left to
    /// `w2c sync`): neither wrong nor lost.
    Pending,
}

/// One line of the verification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `<run_key>/<fingerprint16>`.
    pub session: String,
    /// Namespace, or `-` for session-level checks.
    pub namespace: String,
    /// What was checked.
    pub check: String,
    /// Result.
    pub status: Status,
    /// The exact difference, or a note.
    pub detail: String,
}

/// Gathers the checks of one session, labelled with the session and the
/// namespace being checked (`-` for session-level checks).
pub(crate) struct Collector {
    session: String,
    pub(crate) namespace: String,
    pub(crate) checks: Vec<Check>,
}

impl Collector {
    /// A collector for the session labelled `session`.
    pub(crate) fn new(session: String) -> Collector {
        Collector {
            session,
            namespace: "-".into(),
            checks: Vec::new(),
        }
    }

    /// A collector for a w2c session: `<run_key>/<fingerprint16>`.
    pub(crate) fn for_session(found: &FoundSession) -> Collector {
        Collector::new(format!(
            "{}/{}",
            found.manifest.run_key,
            crate::fingerprint::short(&found.manifest.fingerprint)
        ))
    }

    /// Records one check.
    pub(crate) fn push(&mut self, check: &str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            session: self.session.clone(),
            namespace: self.namespace.clone(),
            check: check.to_string(),
            status,
            detail: detail.into(),
        });
    }
}

/// The finding for a session directory whose manifest cannot be read: it
/// is never skipped, since a garbled or deleted manifest hides every result.
pub fn unreadable_session(u: &session::UnreadableSession) -> Check {
    let name = u
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut c = Collector::new(if u.run_key.is_empty() {
        name
    } else {
        format!("{}/{name}", u.run_key)
    });
    let status = if crate::store::layout::manifest(&u.dir).exists() {
        Status::Mismatch
    } else {
        Status::Missing
    };
    c.push("manifest", status, u.error.clone());
    c.checks.remove(0)
}

/// Verifies one session's local record.
pub fn verify_local(found: &FoundSession) -> Vec<Check> {
    let mut c = Collector::for_session(found);
    let recomputed = sha256_hex(found.manifest.fingerprint_canonical.as_bytes());
    if recomputed == found.manifest.fingerprint {
        c.push(
            "manifest fingerprint",
            Status::Ok,
            "sha256(canonical config) matches",
        );
    } else {
        c.push(
            "manifest fingerprint",
            Status::Mismatch,
            format!(
                "manifest says {}, canonical config hashes to {recomputed}",
                found.manifest.fingerprint
            ),
        );
    }
    let ids = crate::tracking::ids::MlflowIds::load(&found.dir);
    match &ids {
        // Every run records whether its session is tracked (offline too):
        // a session without the file lost it.
        _ if !crate::tracking::ids::MlflowIds::exists(&found.dir) => c.push(
            "tracking record",
            Status::Missing,
            format!(
                "{} is missing: every w2c run writes it (offline or online)",
                found.dir.join(crate::tracking::ids::IDS_FILE).display()
            ),
        ),
        Ok(ids) if ids.mode == crate::tracking::ids::Mode::Online => {}
        Ok(_) => c.push(
            "tracking",
            Status::NotChecked,
            "offline session: tracking not checked (`w2c sync` sends it to MLflow)",
        ),
        Err(e) => c.push("tracking", Status::Mismatch, format!("{e:#}")),
    }
    if found.manifest.example_ids.len() != found.manifest.n_examples {
        c.push(
            "manifest examples",
            Status::Mismatch,
            format!(
                "n_examples is {} but example_ids lists {}",
                found.manifest.n_examples,
                found.manifest.example_ids.len()
            ),
        );
    }
    let audit = crate::store::layout::session_audit(&found.dir);
    if audit.exists() {
        let status = match crate::store::load_jsonl::<crate::audit::AuditEvent>(&audit) {
            Ok((events, _)) => session_audit::check(&events, &found.manifest.example_ids),
            Err(e) => Err(format!("{e:#}")),
        };
        match status {
            Ok(detail) => c.push("session audit", Status::Ok, detail),
            Err(e) => c.push(
                "session audit",
                Status::Mismatch,
                format!("{}: {e}", audit.display()),
            ),
        }
    }
    for expected in expected_namespaces(found) {
        c.namespace = expected.namespace.clone();
        let dir = NamespaceDir::new(&found.dir, &expected.namespace);
        if !dir.settings().is_file() {
            c.push(
                "namespace",
                Status::Missing,
                format!(
                    "{} is missing, but the manifest records the namespace ({})",
                    dir.settings().display(),
                    expected.why
                ),
            );
            continue;
        }
        verify_namespace(&mut c, found, &expected);
    }
    c.checks
}

/// A namespace the session must hold, and how many items it has.
struct Expected {
    namespace: String,
    /// Items (examples × repeats).
    items: usize,
    /// Where the expectation comes from, for the report.
    why: &'static str,
}

/// Every namespace the session must hold: its recorded plan, every
/// namespace its manifest says was claimed, and any other namespace on disk.
fn expected_namespaces(found: &FoundSession) -> Vec<Expected> {
    let m = &found.manifest;
    let per_name =
        |name: &str| m.n_examples * crate::store::census::repeats_from_name(name).unwrap_or(1);
    let mut out: Vec<Expected> = m
        .plan
        .iter()
        .map(|p| Expected {
            namespace: p.namespace.clone(),
            items: p.items,
            why: "planned",
        })
        .collect();
    let claimed = m.namespaces.keys().map(|n| (n.clone(), "claimed"));
    let on_disk = session::namespaces(&found.dir)
        .into_iter()
        .map(|(n, _)| (n, "on disk"));
    for (name, why) in claimed.chain(on_disk) {
        if !out.iter().any(|e| e.namespace == name) {
            out.push(Expected {
                items: per_name(&name),
                namespace: name,
                why,
            });
        }
    }
    out
}

#[derive(Deserialize)]
struct KeyLine {
    key: String,
}

/// Distinct keys of a checkpoint file, streamed (the file is never held).
fn keys_of(path: &Path) -> anyhow::Result<(HashSet<String>, LoadReport)> {
    let mut keys = HashSet::new();
    let report = read_jsonl(path, |l: KeyLine| {
        keys.insert(l.key);
    })?;
    Ok((keys, report))
}

/// A file named in `_DONE.json` and what hashing it found.
type Digested<'a> = (
    &'a String,
    &'a FileDigest,
    PathBuf,
    anyhow::Result<(String, u64)>,
);

fn verify_namespace(c: &mut Collector, found: &FoundSession, expected: &Expected) {
    let ns = expected.namespace.as_str();
    let dir = NamespaceDir::new(&found.dir, ns);
    let done_path = dir.checkpoints.join(files::DONE);
    let done: Option<anyhow::Result<DoneMarker>> =
        done_path.exists().then(|| read_json(&done_path));
    let NamespaceRead {
        results,
        mut unresolved,
        metrics,
        digests,
    } = read_namespace(&dir, done.as_ref().and_then(|d| d.as_ref().ok()));
    let mut keys = check_checkpoint_lines(c, results);
    if !dir.shard_dirs().is_empty() {
        // Before finalizing, the shards' results are the namespace's too.
        let in_shards = check_shards(c, found, &dir, done.is_some(), &keys);
        if done.is_none() {
            keys.extend(in_shards);
        }
    }
    unresolved.retain(|k| !keys.contains(k));
    match &done {
        None => check_unfinished(c, &dir, expected.items, &keys, &unresolved),
        Some(Err(e)) => c.push("_DONE.json", Status::Mismatch, format!("{e:#}")),
        Some(Ok(done)) => {
            c.push(
                "_DONE.json",
                Status::Ok,
                format!("done at {}", done.done_at),
            );
            check_done(c, done, expected.items, &keys, &unresolved);
            check_digests(c, digests);
            if let Some((status, detail)) = metrics {
                c.push("metrics recompute", status, detail);
            }
            usage::check(c, found, &dir);
        }
    }
}

/// What [`verify_namespace`] reads of a namespace.
struct NamespaceRead<'a> {
    /// The keys of results.jsonl and how its lines read.
    results: anyhow::Result<(HashSet<String>, LoadReport)>,
    /// Keys with errors and no result.
    unresolved: HashSet<String>,
    /// The recomputed metrics' verdict, when the namespace has metrics.
    metrics: Option<(Status, String)>,
    /// The files `_DONE.json` names, hashed.
    digests: Vec<Digested<'a>>,
}

/// Reads the checkpoints and recomputes the metrics while a second thread
/// hashes the files `done` names.
fn read_namespace<'a>(dir: &NamespaceDir, done: Option<&'a DoneMarker>) -> NamespaceRead<'a> {
    let (ns_dir, artifacts) = (&dir.checkpoints, &dir.artifacts);
    let listed: Vec<(&String, &FileDigest, PathBuf)> = match done {
        Some(d) => [
            (ns_dir, &d.checkpoint_files),
            (artifacts, &d.artifact_files),
        ]
        .into_iter()
        .flat_map(|(dir, files)| files.iter().map(move |(f, w)| (f, w, dir.join(f))))
        .collect(),
        None => Vec::new(),
    };
    let with_metrics = done.is_some_and(|d| d.artifact_files.contains_key("metrics.json"));
    std::thread::scope(|scope| {
        let hashing = scope.spawn(|| {
            listed
                .into_iter()
                .map(|(file, want, path)| {
                    let got = file_digest(&path);
                    (file, want, path, got)
                })
                .collect::<Vec<Digested>>()
        });
        let results = keys_of(&ns_dir.join(files::RESULTS));
        let keys = results.as_ref().ok().map(|(keys, _)| keys);
        // Errors of the shards too: an item that only failed is unresolved
        // wherever it failed.
        let unresolved: HashSet<String> = dir
            .errors_files()
            .iter()
            .filter_map(|p| keys_of(p).ok())
            .flat_map(|(errors, _)| errors)
            .filter(|k| keys.is_none_or(|keys| !keys.contains(k)))
            .collect();
        let metrics = with_metrics.then(|| recompute_metrics(artifacts));
        let digests = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        NamespaceRead {
            results,
            unresolved,
            metrics,
            digests,
        }
    })
}

/// A namespace run in shards: each shard's results parse, lie in its own
/// slice of the selection (example position modulo the shard count), and —
/// once the namespace is done — are all in the merged `results.jsonl`.
/// Returns the keys found in the shards' files.
fn check_shards(
    c: &mut Collector,
    found: &FoundSession,
    dir: &NamespaceDir,
    done: bool,
    merged: &HashSet<String>,
) -> HashSet<String> {
    let position = found.manifest.example_positions();
    let mut all = HashSet::new();
    let mut problems = Vec::new();
    let shards = dir.shard_dirs();
    for (shard, path) in &shards {
        let file = path.join(files::RESULTS);
        let (keys, report) = match keys_of(&file) {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        if report.torn_tail_bytes > 0 && done {
            problems.push(format!(
                "{}: torn last line ({} bytes)",
                file.display(),
                report.torn_tail_bytes
            ));
        }
        let outside: Vec<&String> = keys
            .iter()
            .filter(|k| {
                let uuid = k.split_once('#').map_or(k.as_str(), |(u, _)| u);
                position.get(uuid).is_none_or(|&p| !shard.owns(p))
            })
            .collect();
        if let Some(first) = outside.first() {
            problems.push(format!(
                "shard {shard} holds {} result(s) outside its slice (first: {first})",
                outside.len()
            ));
        }
        if let Some(marker) = crate::store::shards::slice_done(dir, *shard) {
            if let Err(e) = crate::store::shards::check_slice(dir, *shard, &marker) {
                problems.push(e);
            }
        }
        if done {
            let unmerged = keys.iter().filter(|k| !merged.contains(*k)).count();
            if unmerged > 0 {
                problems.push(format!(
                    "{unmerged} result(s) of shard {shard} are not in the merged {}",
                    files::RESULTS
                ));
            }
        }
        all.extend(keys);
    }
    if problems.is_empty() {
        c.push(
            "shards",
            Status::Ok,
            format!(
                "{} shard director{}: every result in its own slice{}",
                shards.len(),
                if shards.len() == 1 { "y" } else { "ies" },
                if done { ", all merged" } else { "" }
            ),
        );
    } else {
        c.push("shards", Status::Mismatch, problems.join("; "));
    }
    all
}

/// Reports how results.jsonl read; returns its keys.
fn check_checkpoint_lines(
    c: &mut Collector,
    results: anyhow::Result<(HashSet<String>, LoadReport)>,
) -> HashSet<String> {
    match results {
        Ok((keys, report)) => {
            if report.torn_tail_bytes > 0 {
                c.push(
                    "checkpoint lines",
                    Status::Mismatch,
                    format!(
                        "{}: torn last line ({} bytes)",
                        files::RESULTS,
                        report.torn_tail_bytes
                    ),
                );
            } else {
                c.push(
                    "checkpoint lines",
                    Status::Ok,
                    format!("{} lines parse", report.lines),
                );
            }
            keys
        }
        Err(e) => {
            c.push("checkpoint lines", Status::Mismatch, format!("{e:#}"));
            HashSet::new()
        }
    }
}

/// A namespace without `_DONE.json`: missing when every item has a result
/// or when its artifacts were written (both come only just before the
/// marker), else not finished.
fn check_unfinished(
    c: &mut Collector,
    dir: &NamespaceDir,
    expected: usize,
    keys: &HashSet<String>,
    unresolved: &HashSet<String>,
) {
    if keys.len() >= expected && expected > 0 && unresolved.is_empty() {
        c.push(
            "_DONE.json",
            Status::Missing,
            format!("all {expected} items have results but the namespace is not marked done"),
        );
    } else if dir.metrics().exists() {
        c.push(
            "_DONE.json",
            Status::Missing,
            format!(
                "{} exists (written just before _DONE.json) but the namespace is not marked done; it has {} of {expected} results",
                dir.metrics().display(),
                keys.len()
            ),
        );
    } else {
        c.push(
            "_DONE.json",
            Status::NotChecked,
            format!(
                "not finished: {} of {expected} items have results, {} unresolved errors",
                keys.len(),
                unresolved.len()
            ),
        );
    }
}

/// A namespace marked done: no unresolved errors, as many results as the
/// marker says.
fn check_done(
    c: &mut Collector,
    done: &DoneMarker,
    expected: usize,
    keys: &HashSet<String>,
    unresolved: &HashSet<String>,
) {
    if done.n_items != expected {
        c.push(
            "item count",
            Status::Mismatch,
            format!(
                "_DONE.json says {} items, the session has {expected} (examples × repeats)",
                done.n_items
            ),
        );
    }
    if unresolved.is_empty() {
        c.push("unresolved errors", Status::Ok, "none");
    } else {
        c.push(
            "unresolved errors",
            Status::Mismatch,
            format!(
                "marked done but {} items only have errors",
                unresolved.len()
            ),
        );
    }
    if keys.len() != done.n_items {
        c.push(
            "result count",
            Status::Mismatch,
            format!(
                "_DONE.json says {} items, results.jsonl has {}",
                done.n_items,
                keys.len()
            ),
        );
    }
}

/// Each file `_DONE.json` names: present, with its size and sha256.
fn check_digests(c: &mut Collector, digests: Vec<Digested<'_>>) {
    for (file, want, path, got) in digests {
        match got {
            Err(_) => c.push(
                &format!("file {file}"),
                Status::Missing,
                path.display().to_string(),
            ),
            Ok((sha, bytes)) if sha == want.sha256 && bytes == want.bytes => c.push(
                &format!("file {file}"),
                Status::Ok,
                "size and sha256 match _DONE.json",
            ),
            Ok((sha, bytes)) => c.push(
                &format!("file {file}"),
                Status::Mismatch,
                format!(
                    "_DONE.json: {} bytes sha256 {}…; on disk: {bytes} bytes sha256 {}…",
                    want.bytes,
                    crate::fingerprint::prefix(&want.sha256, 12),
                    crate::fingerprint::prefix(&sha, 12)
                ),
            ),
        }
    }
}

/// The fields of a `predictions.jsonl` line ([`crate::store::PredictionRow`])
/// that the metrics recompute from, read leniently: a field that is absent
/// or of another type is kept as such (and reported by the caller), the
/// method's details are checked and skipped.
#[derive(Default)]
struct PredictionFields<'a> {
    gold: Option<Scan<'a>>,
    prediction: Option<Scan<'a>>,
    n_tools: Option<Scan<'a>>,
    unscored: Option<Scan<'a>>,
    /// What the official aggregate counts for the row (`llm_judge` under
    /// protocol `when2call`), parsed when present.
    official: Option<serde_json::Value>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PredictionFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = PredictionFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a predictions.jsonl line")
            }
            // A line that is not an object has none of the fields; a
            // repeated key keeps its last value (as a `Value` would).
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PredictionFields<'a>, A::Error> {
                let mut row = PredictionFields::default();
                while let Some(key) = map.next_key::<Scan<'de>>()? {
                    let slot = match key.as_str() {
                        Some("gold") => &mut row.gold,
                        Some("prediction") => &mut row.prediction,
                        Some("n_tools") => &mut row.n_tools,
                        Some("unscored") => &mut row.unscored,
                        Some("official") => {
                            row.official = Some(map.next_value::<serde_json::Value>()?);
                            continue;
                        }
                        _ => {
                            map.next_value::<Scan<'de>>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Scan<'a>>()?);
                }
                Ok(row)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PredictionFields<'a>, A::Error> {
                while seq.next_element::<Scan<'de>>()?.is_some() {}
                Ok(PredictionFields::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
            fn visit_unit<E>(self) -> Result<PredictionFields<'a>, E> {
                Ok(PredictionFields::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// What a `predictions.jsonl` line scores as: `None` for an example left
/// unscored, `Err(())` when gold, prediction or n_tools is missing or invalid.
fn scored(row: &PredictionFields<'_>) -> Option<Result<Scored, ()>> {
    // `mcq_logprob` examples that could not be scored are listed but are
    // not predictions.
    if !matches!(row.unscored, None | Some(Scan::Null)) {
        return None;
    }
    let gold = row.gold.as_ref().and_then(Scan::as_str);
    let pred = row.prediction.as_ref().and_then(Scan::as_str);
    let n_tools = row.n_tools.as_ref().and_then(Scan::as_u64);
    Some(
        match (
            gold.and_then(|s| s.parse::<Label>().ok()),
            pred.and_then(|s| s.parse::<Prediction>().ok()),
            n_tools,
        ) {
            (Some(gold), Some(pred), Some(n)) => Ok(Scored {
                gold,
                pred,
                has_tools: n > 0,
            }),
            _ => Err(()),
        },
    )
}

/// Recomputes `metrics.json` from `predictions.jsonl`, streamed: the
/// status and detail of the `metrics recompute` check.
fn recompute_metrics(artifacts: &Path) -> (Status, String) {
    let stored: MetricsFile = match read_json(&artifacts.join("metrics.json")) {
        Ok(m) => m,
        Err(e) => return (Status::Missing, format!("{e:#}")),
    };
    let mut scored_rows = Vec::new();
    let mut unscored = 0;
    let mut bad_row: Option<usize> = None;
    let mut record = 0;
    let mut officials: Vec<(Label, OfficialJudgement)> = Vec::new();
    let report = read_jsonl_lines(&artifacts.join("predictions.jsonl"), |line| {
        let mut row: PredictionFields = serde_json::from_slice(line)?;
        record += 1;
        if bad_row.is_some() {
            return Ok(());
        }
        if let Some(official) = row.official.take() {
            let gold = row.gold.as_ref().and_then(Scan::as_str);
            match (
                gold.and_then(|g| g.parse::<Label>().ok()),
                serde_json::from_value::<OfficialJudgement>(official),
            ) {
                (Some(gold), Ok(o)) => officials.push((gold, o)),
                _ => {
                    bad_row = Some(record);
                    return Ok(());
                }
            }
        }
        match scored(&row) {
            None => unscored += 1,
            Some(Ok(s)) => scored_rows.push(s),
            Some(Err(())) => bad_row = Some(record),
        }
        Ok(())
    });
    if let Err(e) = report {
        return (Status::Missing, format!("{e:#}"));
    }
    if let Some(i) = bad_row {
        return (
            Status::Mismatch,
            format!("predictions.jsonl:{i}: missing or invalid gold/prediction/n_tools/official"),
        );
    }
    let recomputed = metrics::compute(&scored_rows);
    let mut diffs = metric_diffs(&stored.metrics, &recomputed);
    diffs.extend(official_diffs(stored.official_judge.as_ref(), &officials));
    let stored_unscored = stored.counts.get("unscored").copied().unwrap_or(0);
    if stored_unscored != unscored {
        diffs.push(format!(
            "unscored: metrics.json counts {stored_unscored}, predictions.jsonl lists {unscored}"
        ));
    }
    if diffs.is_empty() {
        (
            Status::Ok,
            format!("{} predictions give the stored metrics", scored_rows.len()),
        )
    } else {
        (Status::Mismatch, diffs.join("; "))
    }
}

/// A metric value as a reader writes it: six decimals, all of them when
/// six would hide the difference from `other`; `none` when absent.
fn value_text(v: Option<f64>, other: Option<f64>) -> String {
    match (v, other) {
        (None, _) => "none".into(),
        (Some(x), Some(y)) if format!("{x:.6}") == format!("{y:.6}") => x.to_string(),
        (Some(x), _) => format!("{x:.6}"),
    }
}

fn metric_diffs(stored: &Metrics, recomputed: &Metrics) -> Vec<String> {
    let mut out = Vec::new();
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12,
        (None, None) => true,
        _ => false,
    };
    for ((name, a), (_, b)) in stored.headline().into_iter().zip(recomputed.headline()) {
        if !close(a, b) {
            out.push(format!(
                "{name}: stored {}, recomputed {}",
                value_text(a, b),
                value_text(b, a)
            ));
        }
    }
    // The official metrics, where the file has them (files written before
    // w2c computed them do not).
    for ((name, a), (_, b)) in stored.official().into_iter().zip(recomputed.official()) {
        if a.is_some() && !close(a, b) {
            out.push(format!(
                "{name}: stored {}, recomputed {}",
                value_text(a, b),
                value_text(b, a)
            ));
        }
    }
    if stored.n_total != recomputed.n_total {
        out.push(format!(
            "n_total: stored {}, recomputed {}",
            stored.n_total, recomputed.n_total
        ));
    }
    if stored.confusion != recomputed.confusion {
        out.push("confusion matrix differs".into());
    }
    out
}

/// How the official aggregate in `metrics.json` differs from the one the
/// rows' official judgements give: each value that differs, by its path.
fn official_diffs(
    stored: Option<&OfficialAggregate>,
    rows: &[(Label, OfficialJudgement)],
) -> Vec<String> {
    let Some(stored) = stored else {
        return if rows.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "official_judge: absent from metrics.json, {} predictions carry official judgements",
                rows.len()
            )]
        };
    };
    let recomputed = aggregate::aggregate(rows.iter().map(|(g, o)| (*g, o)));
    let (a, b) = (
        serde_json::to_value(stored).unwrap_or_default(),
        serde_json::to_value(&recomputed).unwrap_or_default(),
    );
    let mut out = Vec::new();
    value_diffs("official_judge", &a, &b, &mut out);
    out
}

/// The leaves of two JSON values that differ (numbers within 1e-12 agree).
fn value_diffs(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                value_diffs(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Number(x), Value::Number(y))
            if x.as_f64()
                .zip(y.as_f64())
                .is_some_and(|(x, y)| (x - y).abs() <= 1e-12) => {}
        _ if a == b => {}
        _ => {
            let text = |v: &Value, other: &Value| match v.as_f64() {
                Some(f) => value_text(Some(f), other.as_f64()),
                None if v.is_null() => "none".to_string(),
                None => v.to_string(),
            };
            out.push(format!(
                "{path}: stored {}, recomputed {}",
                text(a, b),
                text(b, a)
            ));
        }
    }
}

/// Whether every check passed (NOT_CHECKED counts as passing).
pub fn all_ok(checks: &[Check]) -> bool {
    checks
        .iter()
        .all(|c| matches!(c.status, Status::Ok | Status::NotChecked))
}

/// Whether some check found only work not sent yet (PENDING).
pub fn any_pending(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Pending)
}

/// Whether some check could not be made (CANNOT_CHECK).
pub fn any_cannot_check(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::CannotCheck)
}

/// Whether some check found a difference (MISMATCH or MISSING).
pub fn any_mismatch(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| matches!(c.status, Status::Mismatch | Status::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_official_aggregate_is_checked_value_by_value() {
        let classified = |c: &str| OfficialJudgement::Classified {
            classification: c.into(),
        };
        let rows = vec![
            (Label::ToolCall, classified("tool_call")),
            (Label::CannotAnswer, classified("tool_call")),
        ];
        let good = aggregate::aggregate(rows.iter().map(|(g, o)| (*g, o)));
        assert!(official_diffs(Some(&good), &rows).is_empty());
        // Sessions without official judgements (other protocols, older
        // files) have nothing to check.
        assert!(official_diffs(None, &[]).is_empty());
        let missing = official_diffs(None, &rows);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("2 predictions"));
        let mut bad = good.clone();
        bad.paper.tool_hall = Some(0.25);
        assert_eq!(
            official_diffs(Some(&bad), &rows),
            vec!["official_judge.paper.tool_hall: stored 0.250000, recomputed 1.000000"]
        );
    }

    /// How the metrics recompute read a line before it was streamed: a
    /// `Value`, indexed.
    fn by_value(line: &str) -> Result<Option<Result<Scored, ()>>, ()> {
        let row: Value = serde_json::from_str(line).map_err(|_| ())?;
        if !row["unscored"].is_null() {
            return Ok(None);
        }
        let gold = row["gold"].as_str().and_then(|s| s.parse::<Label>().ok());
        let pred = row["prediction"]
            .as_str()
            .and_then(|s| s.parse::<Prediction>().ok());
        Ok(Some(match (gold, pred, row["n_tools"].as_u64()) {
            (Some(gold), Some(pred), Some(n)) => Ok(Scored {
                gold,
                pred,
                has_tools: n > 0,
            }),
            _ => Err(()),
        }))
    }

    fn streamed(line: &str) -> Result<Option<Result<Scored, ()>>, ()> {
        let row: PredictionFields = serde_json::from_str(line).map_err(|_| ())?;
        Ok(scored(&row))
    }

    #[test]
    fn prediction_lines_read_as_a_value_would_read_them() {
        for line in [
            r#"{"uuid":"u","gold":"tool_call","n_tools":2,"prediction":"invalid","raw":"x\"y"}"#,
            r#"{"gold":"cannot_answer","n_tools":0,"prediction":"cannot_answer"}"#,
            r#"{"gold":"cannot_answer","n_tools":0,"prediction":null,"unscored":{"why":"ctx"}}"#,
            r#"{"gold":"cannot_answer","n_tools":0,"prediction":"direct","unscored":null}"#,
            r#"{"gold":"cannot_answer","n_tools":-1,"prediction":"direct"}"#,
            r#"{"gold":"cannot_answer","n_tools":1.0,"prediction":"direct"}"#,
            r#"{"gold":"nope","n_tools":1,"prediction":"direct"}"#,
            r#"{"gold":5,"n_tools":1,"prediction":"direct"}"#,
            r#"{"gold":"direct","gold":"tool_call","n_tools":1,"prediction":"direct"}"#,
            r#"{"gold":"direct","n_tools":1,"prediction":"direct","unscored":false}"#,
            r#"{"gold":"direct","n_tools":1,"prediction":"direct","x":"\ud800"}"#,
            r#"{"gold":"direct","n_tools":1,"prediction":"direct","x":1e999}"#,
            r#"["gold","direct"]"#,
            r#""gold""#,
            "7",
            "null",
        ] {
            assert_eq!(streamed(line), by_value(line), "{line}");
        }
    }
}
