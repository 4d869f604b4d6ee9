//! Local record vs MLflow: the runs in `mlflow_ids.json` exist, are active,
//! nested under the right parent and tagged for this session; each run's
//! status agrees with `_DONE` (FINISHED exactly when done); MLflow's latest
//! metric values equal `metrics.json`; every local artifact exists remotely
//! with the same size (and, with `deep`, the same sha256), and remote files
//! without a local counterpart are reported.

use super::{Check, Collector, Status};
use crate::store::session::FoundSession;
use crate::store::{layout, names, NamespaceDir};
use crate::tracking::ids::{MlflowIds, Mode};
use crate::tracking::mirror::{self, local_files, TAG_FINGERPRINT, TAG_NAMESPACE, TAG_PARENT};
use crate::tracking::rest::{status, KeyValue, MlflowClient, MlflowError, Run};
use crate::tracking::{identity, trace_sender, Target};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Parallel downloads for `--deep`.
const DOWNLOAD_CONCURRENCY: usize = 4;

/// Records a failed call: CANNOT_CHECK when the server is unreachable or
/// refuses us, else a mismatch with the server's answer.
fn call_failed(out: &mut Collector, check: &str, e: &MlflowError) {
    let cannot = e.is_transient() || matches!(e.status(), Some(401 | 403));
    out.push(
        check,
        if cannot {
            Status::CannotCheck
        } else {
            Status::Mismatch
        },
        e.to_string(),
    );
}

/// The server a session's tracking is checked against: `MLFLOW_TRACKING_URI`
/// if set, else the one recorded in `mlflow_ids.json`.
pub fn target_for(ids: &MlflowIds) -> anyhow::Result<Option<Target>> {
    crate::tracking::resolve_for_session(
        &crate::config::TrackingConfig::default(),
        ids,
        &crate::tracking::process_env,
    )
}

/// The client for a tracked session's server, or why it cannot be had.
fn client_for(ids: &MlflowIds) -> Result<(Target, MlflowClient), String> {
    let target = match target_for(ids) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(
                "tracked session but no tracking URI (MLFLOW_TRACKING_URI) to check it against"
                    .into(),
            )
        }
        Err(e) => return Err(format!("{e:#}")),
    };
    let client = target.client().map_err(|e| format!("{e:#}"))?;
    Ok((target, client))
}

/// What every run of a session is checked against.
struct Expected<'a> {
    session_dir: &'a std::path::Path,
    manifest: &'a crate::store::Manifest,
    experiment_id: String,
    /// Whether the session sends traces (`[tracking] traces`).
    traces: bool,
    fingerprint: &'a str,
    parent_id: &'a str,
    /// A live process holds the session (runs may be RUNNING).
    running: bool,
    deep: bool,
}

/// Checks one session against MLflow. Offline sessions yield nothing (the
/// local checks already say tracking was not checked).
pub async fn verify_tracking(found: &FoundSession, deep: bool) -> Vec<Check> {
    let mut out = Collector::for_session(found);
    let ids = match MlflowIds::load(&found.dir) {
        Ok(ids) if ids.mode == Mode::Online => ids,
        _ => return out.checks,
    };
    let (target, client) = match client_for(&ids) {
        Ok(c) => c,
        Err(why) => {
            out.push("tracking", Status::CannotCheck, why);
            return out.checks;
        }
    };
    let only_traces =
        !ids.pending.is_empty() && ids.pending.iter().all(|p| crate::report::is_traces_line(p));
    if !ids.synced && only_traces {
        // Traces a run left behind: the traces check says which.
        out.push(
            "tracking sync",
            Status::Pending,
            format!(
                "traces not sent yet (`w2c sync` or a `resume` sends them): {}",
                ids.pending.join("; ")
            ),
        );
    } else if !ids.synced {
        out.push(
            "tracking sync",
            Status::Mismatch,
            format!(
                "mlflow_ids.json says MLflow is behind the local record: {}",
                if ids.pending.is_empty() {
                    "not synced".to_string()
                } else {
                    ids.pending.join("; ")
                }
            ),
        );
    }
    let namespaces: Vec<String> = crate::store::session::namespaces(&found.dir)
        .into_iter()
        .map(|(ns, _)| ns)
        .collect();
    let all_done = namespaces
        .iter()
        .all(|ns| mirror::namespace_done(&found.dir, ns));

    // The parent.
    let Some(parent_id) = ids.parent_run_id.clone() else {
        out.push(
            "parent run",
            Status::Missing,
            "mlflow_ids.json records no parent run (run `w2c sync`)",
        );
        return out.checks;
    };
    let parent = match client.get_run(&parent_id).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            out.push(
                "parent run",
                Status::Missing,
                format!("run {parent_id} does not exist on {}", target.uri),
            );
            return out.checks;
        }
        Err(e) => {
            call_failed(&mut out, "parent run", &e);
            return out.checks;
        }
    };
    let expected = Expected {
        session_dir: &found.dir,
        manifest: &found.manifest,
        experiment_id: ids
            .experiment_id
            .clone()
            .unwrap_or_else(|| parent.info.experiment_id.clone()),
        traces: found
            .manifest
            .config
            .pointer("/tracking/traces")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true),
        fingerprint: &found.manifest.fingerprint,
        parent_id: &parent_id,
        running: crate::store::session::holder(&found.dir).is_some(),
        deep,
    };
    let mut parent_tags = identity::parent_tags(&found.manifest);
    parent_tags.extend(identity::config_tags(&found.manifest).0);
    check_run(&mut out, "parent run", &parent, &parent_tags);
    if parent.tag(TAG_PARENT).is_some() {
        out.push(
            "parent run",
            Status::Mismatch,
            format!(
                "run {parent_id}: tag {TAG_PARENT} is {:?}, expected none",
                parent.tag(TAG_PARENT)
            ),
        );
    }
    check_headline(&mut out, &found.dir, &namespaces, &parent);
    let want = if all_done {
        status::FINISHED
    } else {
        "not FINISHED"
    };
    check_status(&mut out, &parent, all_done, expected.running, want);
    let files = layout::session_files(&found.dir);
    if let Err(e) = check_artifacts(&mut out, &client, &parent, files, deep, false).await {
        call_failed(&mut out, "artifacts", &e);
    }
    for ns in namespaces {
        out.namespace = ns.clone();
        match ids.child_run_ids.get(&ns) {
            Some(id) => verify_child(&mut out, &client, &expected, &ns, id).await,
            None => out.push(
                "child run",
                Status::Missing,
                "no child run recorded in mlflow_ids.json (run `w2c sync`)",
            ),
        }
    }
    out.checks
}

/// Checks the child run of namespace `ns`: its identity, status, metrics
/// and files.
async fn verify_child(
    out: &mut Collector,
    client: &MlflowClient,
    expected: &Expected<'_>,
    ns: &str,
    id: &str,
) {
    let run = match client.get_run(id).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            return out.push(
                "child run",
                Status::Missing,
                format!("run {id} does not exist"),
            )
        }
        Err(e) => return call_failed(out, "child run", &e),
    };
    let want = crate::store::session::namespaces(expected.session_dir)
        .into_iter()
        .find(|(n, _)| n == ns)
        .map(|(_, s)| identity::child_tags(expected.manifest, expected.parent_id, ns, &s))
        .unwrap_or_else(|| {
            vec![
                KeyValue::new(TAG_PARENT, expected.parent_id),
                KeyValue::new(TAG_FINGERPRINT, expected.fingerprint),
                KeyValue::new(TAG_NAMESPACE, ns),
            ]
        });
    check_run(out, "child run", &run, &want);
    let done = mirror::namespace_done(expected.session_dir, ns);
    let want = if done {
        status::FINISHED
    } else {
        "not FINISHED"
    };
    check_status(out, &run, done, expected.running, want);
    if done {
        check_metrics(out, expected.session_dir, ns, &run);
    }
    let dir = NamespaceDir::new(expected.session_dir, ns);
    let files = match (
        local_files(&dir.artifacts, ""),
        local_files(&dir.checkpoints, names::CHECKPOINTS),
    ) {
        (Ok(mut a), Ok(c)) => {
            a.extend(c);
            a
        }
        (Err(e), _) | (_, Err(e)) => {
            return out.push("artifacts", Status::Mismatch, format!("{e:#}"));
        }
    };
    if let Err(e) = check_artifacts(out, client, &run, files, expected.deep, true).await {
        call_failed(out, "artifacts", &e);
    }
    check_traces(out, client, expected, ns, id).await;
}

/// What `want` has that `got` lacks, and what `got` has beyond `want`
/// (as `name=value`, duplicates counted).
fn multiset_diff(
    want: &[(String, String)],
    got: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let mut counts: BTreeMap<&(String, String), i64> = BTreeMap::new();
    for w in want {
        *counts.entry(w).or_default() += 1;
    }
    for g in got {
        *counts.entry(g).or_default() -= 1;
    }
    let mut lacking = Vec::new();
    let mut unexpected = Vec::new();
    for ((n, v), c) in counts {
        for _ in 0..c.max(0) {
            lacking.push(format!("{n}={v}"));
        }
        for _ in 0..(-c).max(0) {
            unexpected.push(format!("{n}={v}"));
        }
    }
    (lacking, unexpected)
}

/// How many traces' assessments are compared without `--deep` (the first,
/// the middle and the last).
const TRACE_SAMPLE: usize = 3;

/// The traces of a child run: exactly one per finished item, with the id
/// w2c derives from the session, and (for a sample, or every one with
/// `--deep`) the assessments its records give.
async fn check_traces(
    out: &mut Collector,
    client: &MlflowClient,
    expected: &Expected<'_>,
    ns: &str,
    run_id: &str,
) {
    if !trace_sender::has_traces(expected.session_dir, ns) {
        return;
    }
    if !expected.traces {
        return out.push(
            "traces",
            Status::NotChecked,
            "[tracking] traces = false: the session sends no traces",
        );
    }
    if expected.running {
        return out.push(
            "traces",
            Status::NotChecked,
            "a live process holds the session: its traces are still being sent",
        );
    }
    let want = match trace_sender::TraceSender::new(expected.session_dir, expected.manifest)
        .expected(ns, &expected.experiment_id)
    {
        Ok(t) => t,
        Err(e) => return out.push("traces", Status::Mismatch, format!("{e:#}")),
    };
    let remote = match client
        .search_traces(&expected.experiment_id, &trace_sender::run_filter(run_id))
        .await
    {
        Ok(r) => r,
        Err(e) => return call_failed(out, "traces", &e),
    };
    let remote_ids: std::collections::BTreeSet<String> = remote
        .iter()
        .filter_map(|i| i.get("trace_id").and_then(serde_json::Value::as_str))
        .map(str::to_string)
        .collect();
    let want_ids: std::collections::BTreeSet<String> = want.iter().map(|t| t.mlflow_id()).collect();
    let missing: Vec<&String> = want_ids.difference(&remote_ids).collect();
    let extra: Vec<&String> = remote_ids.difference(&want_ids).collect();
    let list = |ids: &[&String]| {
        let shown: Vec<&str> = ids.iter().take(5).map(|s| s.as_str()).collect();
        let more = ids.len().saturating_sub(5);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    // A trace w2c never recorded as sent is pending; one it sent and
    // MLflow lacks is missing (deleted, or a server that lost it).
    let sent = trace_sender::load_sent(
        expected.session_dir,
        client.base().as_str(),
        &expected.experiment_id,
    );
    let (lost, pending): (Vec<&String>, Vec<&String>) = missing
        .iter()
        .partition(|id| sent.sent.get(id.as_str()) == Some(&run_id.to_string()));
    if missing.is_empty() {
        out.push(
            "traces",
            Status::Ok,
            format!("{} traces, one per finished item", want.len()),
        );
    }
    if !lost.is_empty() {
        out.push(
            "traces",
            Status::Missing,
            format!(
                "{} of {} finished items have no trace in run {run_id} although it was sent: {} (run `w2c sync`)",
                lost.len(),
                want.len(),
                list(&lost)
            ),
        );
    }
    if !pending.is_empty() {
        out.push(
            "traces",
            Status::Pending,
            format!(
                "{} of {} finished items' traces are not sent yet: {} (`w2c sync` sends them)",
                pending.len(),
                want.len(),
                list(&pending)
            ),
        );
    }
    if !extra.is_empty() {
        out.push(
            "extra traces",
            Status::Mismatch,
            format!(
                "{} traces in run {run_id} match no finished item: {}",
                extra.len(),
                list(&extra)
            ),
        );
    }
    // Assessments of a sample (or of every trace with --deep).
    let present: Vec<&crate::tracking::traces::Trace> = want
        .iter()
        .filter(|t| remote_ids.contains(&t.mlflow_id()))
        .collect();
    let sample: Vec<&crate::tracking::traces::Trace> =
        if expected.deep || present.len() <= TRACE_SAMPLE {
            present
        } else {
            let n = present.len();
            vec![present[0], present[n / 2], present[n - 1]]
        };
    let checked = sample.len();
    type Identities = Vec<(String, String)>;
    let results: Vec<(String, Result<Identities, MlflowError>)> =
        futures::stream::iter(sample.into_iter().map(|t| async move {
            let id = t.mlflow_id();
            let info = client.get_trace_info(&id).await;
            (id, info.map(|i| trace_sender::assessment_list(&i)))
        }))
        .buffer_unordered(DOWNLOAD_CONCURRENCY)
        .collect()
        .await;
    let by_id: BTreeMap<String, &crate::tracking::traces::Trace> =
        want.iter().map(|t| (t.mlflow_id(), t)).collect();
    let mut diffs = Vec::new();
    for (id, got) in results {
        let got = match got {
            Ok(g) => g,
            Err(e) => return call_failed(out, "trace assessments", &e),
        };
        let wanted: Identities = by_id
            .get(&id)
            .map(|t| t.assessments.iter().map(|a| a.identity()).collect())
            .unwrap_or_default();
        let (lacking, unexpected) = multiset_diff(&wanted, &got);
        if !lacking.is_empty() || !unexpected.is_empty() {
            diffs.push(format!(
                "{id}: missing [{}], unexpected [{}]",
                lacking.join(", "),
                unexpected.join(", ")
            ));
        }
    }
    if diffs.is_empty() {
        out.push(
            "trace assessments",
            Status::Ok,
            format!(
                "{checked} trace(s) checked{}: assessments match the records",
                if expected.deep {
                    ""
                } else {
                    " (a sample; --deep checks every one)"
                }
            ),
        );
    } else {
        out.push("trace assessments", Status::Mismatch, diffs.join("; "));
    }
}

/// A run's existence and identity: not deleted, and every tag in `want`
/// (identity tags, and for the parent the config tags) with the value w2c
/// wrote. Each differing tag is named with both values.
fn check_run(out: &mut Collector, what: &str, run: &Run, want: &[KeyValue]) {
    let id = &run.info.run_id;
    if !run.is_active() {
        out.push(
            what,
            Status::Mismatch,
            format!("run {id} is deleted in MLflow"),
        );
        return;
    }
    let diffs = tag_diffs(run, want);
    if diffs.is_empty() {
        out.push(
            what,
            Status::Ok,
            format!(
                "run {id} exists, nesting and {} identity and config tags match",
                want.len()
            ),
        );
    } else {
        out.push(
            what,
            Status::Mismatch,
            format!("run {id}: {}", diffs.join("; ")),
        );
    }
}

/// Each tag of `want` the run lacks or holds with another value.
fn tag_diffs(run: &Run, want: &[KeyValue]) -> Vec<String> {
    want.iter()
        .filter_map(|kv| match run.tag(&kv.key) {
            Some(v) if v == kv.value => None,
            Some(v) => Some(format!(
                "tag {} is {v:?} in MLflow, expected {:?}",
                kv.key, kv.value
            )),
            None => Some(format!(
                "tag {} is missing in MLflow, expected {:?}",
                kv.key, kv.value
            )),
        })
        .collect()
}

fn check_status(out: &mut Collector, run: &Run, done: bool, running: bool, want: &str) {
    let st = run.info.status.as_str();
    let finished = st == status::FINISHED;
    if finished == done {
        out.push(
            "run status",
            Status::Ok,
            format!(
                "{st} ({})",
                if done {
                    "done locally"
                } else {
                    "not done locally"
                }
            ),
        );
    } else if running && !done {
        out.push(
            "run status",
            Status::NotChecked,
            format!("{st}: the session is running"),
        );
    } else {
        out.push(
            "run status",
            Status::Mismatch,
            format!(
                "MLflow says {st}, local record says {} (expected {want})",
                if done {
                    "done (_DONE.json present)"
                } else {
                    "not done (no _DONE.json)"
                }
            ),
        );
    }
}

fn check_metrics(out: &mut Collector, session_dir: &std::path::Path, ns: &str, run: &Run) {
    let path = NamespaceDir::new(session_dir, ns).metrics();
    if !path.exists() {
        return;
    }
    let file: serde_json::Value = match crate::store::read_json(&path) {
        Ok(v) => v,
        Err(e) => return out.push("metrics", Status::Mismatch, format!("{e:#}")),
    };
    let method = crate::store::session::namespaces(session_dir)
        .into_iter()
        .find(|(n, _)| n == ns)
        .map(|(_, s)| s.method)
        .unwrap_or_default();
    let local = identity::child_metrics(&method, &file);
    let diffs = metric_diffs(run, &local);
    if diffs.is_empty() {
        out.push(
            "metrics",
            Status::Ok,
            format!("{} values equal metrics.json", local.len()),
        );
    } else {
        out.push("metrics", Status::Mismatch, diffs.join("; "));
    }
}

/// Each of `local` the run lacks or holds (as its latest value) with
/// another value, both values named.
fn metric_diffs(run: &Run, local: &[(String, f64)]) -> Vec<String> {
    let remote: BTreeMap<&str, f64> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.as_str(), m.value))
        .collect();
    let mut diffs = Vec::new();
    for (key, value) in local {
        match remote.get(key.as_str()) {
            None => diffs.push(format!("{key}: local {value}, missing in MLflow")),
            Some(r) if same(*r, *value) => {}
            Some(r) => diffs.push(format!("{key}: local {value}, MLflow {r}")),
        }
    }
    diffs
}

/// The parent's headline metrics (`<ns>.accuracy`, `<ns>.judge_table_f1`,
/// ...) equal those of every finished namespace's `metrics.json`.
fn check_headline(
    out: &mut Collector,
    session_dir: &std::path::Path,
    namespaces: &[String],
    parent: &Run,
) {
    let settings: BTreeMap<String, String> = crate::store::session::namespaces(session_dir)
        .into_iter()
        .map(|(n, s)| (n, s.method))
        .collect();
    let mut local = Vec::new();
    for ns in namespaces {
        let path = NamespaceDir::new(session_dir, ns).metrics();
        if !mirror::namespace_done(session_dir, ns) || !path.exists() {
            continue;
        }
        match crate::store::read_json::<serde_json::Value>(&path) {
            Ok(file) => {
                let method = settings.get(ns).map(String::as_str).unwrap_or_default();
                local.extend(identity::parent_headline(
                    ns,
                    &identity::child_metrics(method, &file),
                ));
            }
            Err(e) => return out.push("headline metrics", Status::Mismatch, format!("{e:#}")),
        }
    }
    if local.is_empty() {
        return;
    }
    let diffs = metric_diffs(parent, &local);
    if diffs.is_empty() {
        out.push(
            "headline metrics",
            Status::Ok,
            format!(
                "{} values on the parent run equal the namespaces' metrics.json",
                local.len()
            ),
        );
    } else {
        out.push("headline metrics", Status::Mismatch, diffs.join("; "));
    }
}

/// Equal as stored by MLflow (NaN equals NaN; ±inf come back as ±f64::MAX).
fn same(remote: f64, local: f64) -> bool {
    if local.is_nan() {
        return remote.is_nan();
    }
    if local.is_infinite() {
        return remote.is_infinite() || remote.abs() >= f64::MAX;
    }
    remote == local
}

async fn check_artifacts(
    out: &mut Collector,
    client: &MlflowClient,
    run: &Run,
    local: Vec<(String, PathBuf)>,
    deep: bool,
    report_extra: bool,
) -> Result<(), MlflowError> {
    let remote: BTreeMap<String, u64> = client
        .list_artifacts(&run.info.run_id)
        .await?
        .into_iter()
        .map(|f| (f.path, f.file_size.unwrap_or(0)))
        .collect();
    let mut missing = Vec::new();
    let mut resized = Vec::new();
    let mut to_hash = Vec::new();
    for (rel, path) in &local {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match remote.get(rel) {
            None => missing.push(rel.clone()),
            Some(r) if *r != size => {
                resized.push(format!("{rel}: local {size} bytes, MLflow {r} bytes"))
            }
            Some(_) => to_hash.push((rel.clone(), path.clone())),
        }
    }
    let local_names: std::collections::HashSet<&str> =
        local.iter().map(|(r, _)| r.as_str()).collect();
    let extra: Vec<&String> = remote
        .keys()
        .filter(|k| {
            !local_names.contains(k.as_str())
                && !k.starts_with("params/")
                && !k.starts_with("config/")
        })
        .collect();
    if missing.is_empty() {
        out.push(
            "artifacts present",
            Status::Ok,
            format!("{} local files exist in MLflow", local.len()),
        );
    } else {
        out.push(
            "artifacts present",
            Status::Missing,
            format!("not in MLflow: {}", missing.join(", ")),
        );
    }
    if resized.is_empty() {
        out.push("artifact sizes", Status::Ok, "sizes match");
    } else {
        out.push("artifact sizes", Status::Mismatch, resized.join("; "));
    }
    if report_extra {
        if extra.is_empty() {
            out.push(
                "remote extras",
                Status::Ok,
                "no remote file lacks a local counterpart",
            );
        } else {
            out.push(
                "remote extras",
                Status::Mismatch,
                format!(
                    "in MLflow but not local: {}",
                    extra
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if deep {
        let uri = run.info.artifact_uri.clone();
        let results: Vec<(String, Result<bool, String>)> =
            futures::stream::iter(to_hash.into_iter().map(|(rel, path)| {
                let uri = uri.clone();
                async move {
                    let r = match client.artifact_digest(&uri, &rel).await {
                        Ok((remote, _)) => crate::store::file_digest(&path)
                            .map(|(local, _)| local == remote)
                            .map_err(|e| format!("{e:#}")),
                        Err(e) => Err(e.to_string()),
                    };
                    (rel, r)
                }
            }))
            .buffer_unordered(DOWNLOAD_CONCURRENCY)
            .collect()
            .await;
        let n = results.len();
        let mut bad: Vec<String> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        for (rel, r) in results {
            match r {
                Ok(true) => {}
                Ok(false) => bad.push(rel),
                Err(e) => failed.push(format!("{rel}: {e}")),
            }
        }
        bad.sort();
        if !failed.is_empty() {
            out.push("artifact sha256", Status::CannotCheck, failed.join("; "));
        } else if bad.is_empty() {
            out.push(
                "artifact sha256",
                Status::Ok,
                format!("{n} downloaded files hash like the local ones"),
            );
        } else {
            out.push(
                "artifact sha256",
                Status::Mismatch,
                format!("content differs: {}", bad.join(", ")),
            );
        }
    }
    Ok(())
}
