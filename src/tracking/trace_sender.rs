//! Sending a session's traces ([`super::traces`]) to MLflow from its store:
//! new `results.jsonl` and `llm_calls.jsonl` lines are read incrementally
//! (only complete lines, from where the last read stopped), each finished
//! item becomes a trace linked to its namespace's child run: its spans in
//! OTLP batches, then its info with its assessments (one request a trace).
//!
//! Everything sent is idempotent: spans, the trace's info and its
//! assessments carry deterministic ids, so a batch a crash interrupted is
//! simply sent again. `mlflow_traces.jsonl` in the session directory
//! records which traces MLflow holds (per server and experiment), so that
//! nothing is sent twice in the normal course.

use super::mirror::Mirror;
use super::traces::{self, ItemRecords, Trace, TraceOwner, TraceSelection};
use crate::dataset::Example;
use crate::store::{JsonlWriter, NamespaceDir};
use anyhow::{Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File of the sent-trace record in a session directory.
pub const TRACES_FILE: &str = "mlflow_traces.jsonl";
/// Traces per OTLP request (MLflow links at most 100 per request to a run).
pub const TRACES_PER_REQUEST: usize = 50;

/// What [`TraceSender::send_new`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Traces sent.
    pub sent: usize,
    /// Traces still to send (told to stop first).
    pub left: usize,
}
/// Trace infos (with their assessments) sent at once, per chunk.
const INFO_CONCURRENCY: usize = 8;
/// Chunks of traces sent at once (so up to 4 × 8 requests in flight).
const CHUNKS_AT_ONCE: usize = 4;

/// One line of `mlflow_traces.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceLogLine {
    /// Tracking server.
    pub server: String,
    /// Experiment id.
    pub experiment_id: String,
    /// The child run the traces are linked to.
    pub run_id: String,
    /// `sent`: spans, info and assessments are in MLflow.
    pub stage: String,
    /// MLflow trace ids (`tr-…`).
    pub traces: Vec<String>,
}

/// What `mlflow_traces.jsonl` says the current server and experiment hold.
#[derive(Debug, Default)]
pub struct SentTraces {
    /// Complete traces: trace id → the run they are linked to.
    pub sent: HashMap<String, String>,
}

/// Reads `mlflow_traces.jsonl` for one server and experiment (a torn last
/// line, left by a crash, is ignored).
pub fn load_sent(session_dir: &Path, server: &str, experiment_id: &str) -> SentTraces {
    let mut out = SentTraces::default();
    let Ok((lines, _)) = crate::store::load_jsonl::<TraceLogLine>(&session_dir.join(TRACES_FILE))
    else {
        return out;
    };
    for line in lines {
        if line.server != server || line.experiment_id != experiment_id {
            continue;
        }
        if line.stage == "sent" {
            for t in line.traces {
                out.sent.insert(t, line.run_id.clone());
            }
        }
    }
    out
}

/// What the traces of a namespace are built with.
struct Prepared {
    method: String,
    settings_hash: String,
    /// For a judge: its target stream's namespace, when it is in the session.
    target_ns: Option<String>,
    /// For a judge: its target stream's settings hash.
    target_hash: Option<String>,
}

/// A namespace's records read so far.
#[derive(Default)]
struct Stream {
    method: String,
    settings_hash: String,
    /// For a judge: the settings hash of its target stream.
    target_hash: Option<String>,
    results_pos: u64,
    calls_pos: u64,
    /// Records by key (the last line wins), in order of first arrival.
    results: indexmap::IndexMap<String, Value>,
    calls: HashMap<String, Vec<Value>>,
}

impl Stream {
    fn is_target(&self) -> bool {
        self.method.ends_with(".target")
    }

    /// Reads the lines appended since the last call.
    fn refresh(&mut self, dir: &NamespaceDir) -> Result<()> {
        for line in new_lines(&dir.results(), &mut self.results_pos)? {
            if let Some(key) = line.get("key").and_then(Value::as_str) {
                self.results.insert(key.to_string(), line);
            }
        }
        for line in new_lines(&dir.calls(), &mut self.calls_pos)? {
            let uuid = line.get("uuid").and_then(Value::as_str).unwrap_or_default();
            let repeat = line
                .get("repeat")
                .and_then(Value::as_u64)
                .and_then(|r| u32::try_from(r).ok());
            let key = crate::engine::WorkItem::key_for(uuid, repeat);
            self.calls.entry(key).or_default().push(line);
        }
        Ok(())
    }
}

/// The complete JSON lines appended to `path` after `pos`; `pos` moves past
/// them (a partial last line is left for the next read).
fn new_lines(path: &Path, pos: &mut u64) -> Result<Vec<Value>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let len = file.metadata()?.len();
    if len < *pos {
        // The file was cut (a torn tail removed): read it again.
        *pos = 0;
    }
    file.seek(SeekFrom::Start(*pos))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in bytes[..end].split(|&b| b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            out.push(v);
        }
    }
    *pos += end as u64 + 1;
    Ok(out)
}

/// Sends a session's traces, namespace by namespace, as they finish.
pub struct TraceSender {
    session_dir: PathBuf,
    owner: TraceOwner,
    dataset: Option<std::path::PathBuf>,
    dataset_sha256: Option<String>,
    examples: Option<HashMap<String, Example>>,
    streams: HashMap<String, Stream>,
    sent: Option<(String, String, SentTraces)>,
    /// How long the last request of traces took: one that could not
    /// finish before a deadline is not started.
    request_time: Option<Duration>,
    /// Which examples get a trace (`[tracking] trace_examples`).
    selection: TraceSelection,
}

/// Whether a request of traces expected to take the given time may not
/// start (see [`TraceSender::send_new`]).
pub type Stop = dyn Fn(Duration) -> bool + Send + Sync;

impl TraceSender {
    /// A sender for the session at `session_dir`.
    pub fn new(session_dir: &Path, manifest: &crate::store::Manifest) -> TraceSender {
        let target_model = manifest
            .config
            .pointer("/models/target")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        TraceSender {
            session_dir: session_dir.to_path_buf(),
            owner: TraceOwner {
                experiment_id: String::new(),
                fingerprint: manifest.fingerprint.clone(),
                run_key: manifest.run_key.clone(),
                target_model,
            },
            dataset: manifest
                .config
                .pointer("/dataset/path")
                .and_then(Value::as_str)
                .map(PathBuf::from),
            dataset_sha256: manifest
                .fingerprint_payload
                .pointer("/dataset/sha256")
                .and_then(Value::as_str)
                .map(str::to_string),
            examples: None,
            streams: HashMap::new(),
            sent: None,
            request_time: None,
            // Checked when the config was loaded; a manifest edited since
            // traces everything.
            selection: manifest
                .config
                .pointer("/tracking/trace_examples")
                .and_then(Value::as_str)
                .and_then(|s| TraceSelection::parse(s).ok())
                .unwrap_or_default(),
        }
    }

    /// The keys of `ns` read so far whose examples get a trace.
    fn selected_keys(&self, ns: &str, prepared: &Prepared) -> Vec<String> {
        let stream = &self.streams[ns];
        if self.selection == TraceSelection::All {
            return stream.results.keys().cloned().collect();
        }
        // A target stream follows its judge's verdicts (read afresh: the
        // judge's stream forgets what it has sent).
        let judged: HashMap<String, Value> = if stream.is_target() {
            crate::store::session::namespaces(&self.session_dir)
                .into_iter()
                .filter(|(_, s)| {
                    s.settings
                        .get("target_settings_hash")
                        .and_then(Value::as_str)
                        == Some(prepared.settings_hash.as_str())
                })
                .flat_map(|(judge, _)| {
                    let path = NamespaceDir::new(&self.session_dir, &judge).results();
                    crate::store::load_jsonl::<Value>(&path)
                        .map(|(lines, _)| lines)
                        .unwrap_or_default()
                })
                .filter_map(|r| Some((r.get("key")?.as_str()?.to_string(), r)))
                .collect()
        } else {
            HashMap::new()
        };
        stream
            .results
            .iter()
            .filter(|(key, record)| {
                self.selection
                    .selects(&prepared.method, record, judged.get(key.as_str()))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The examples of the dataset file, when it still has the sha256 the
    /// session recorded (else traces carry the calls' prompts only).
    fn examples(&mut self) -> &HashMap<String, Example> {
        if self.examples.is_none() {
            let loaded = self
                .dataset
                .as_ref()
                .and_then(|p| crate::dataset::load(p).ok())
                .filter(|d| Some(&d.sha256) == self.dataset_sha256.as_ref())
                .map(|d| {
                    d.examples
                        .into_iter()
                        .map(|e| (e.uuid.clone(), e))
                        .collect()
                })
                .unwrap_or_default();
            self.examples = Some(loaded);
        }
        self.examples.get_or_insert_with(HashMap::new)
    }

    fn stream(&mut self, ns: &str) -> Result<&mut Stream> {
        if !self.streams.contains_key(ns) {
            let settings = crate::store::session::namespaces(&self.session_dir)
                .into_iter()
                .find(|(n, _)| n == ns)
                .map(|(_, s)| s)
                .with_context(|| format!("namespace `{ns}` has no method_settings.json"))?;
            let stream = Stream {
                method: settings.method.clone(),
                settings_hash: settings.settings_hash.clone(),
                target_hash: settings
                    .settings
                    .get("target_settings_hash")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..Stream::default()
            };
            self.streams.insert(ns.to_string(), stream);
        }
        let dir = NamespaceDir::new(&self.session_dir, ns);
        let stream = self.streams.get_mut(ns).context("stream just inserted")?;
        stream.refresh(&dir)?;
        Ok(stream)
    }

    /// The namespace whose settings hash is `hash` (a judge's target stream).
    fn namespace_of(&self, hash: &str) -> Option<String> {
        crate::store::session::namespaces(&self.session_dir)
            .into_iter()
            .find(|(_, s)| s.settings_hash == hash)
            .map(|(n, _)| n)
    }

    fn sent(&mut self, server: &str, experiment_id: &str) -> &mut SentTraces {
        let stale = self
            .sent
            .as_ref()
            .is_none_or(|(s, e, _)| s != server || e != experiment_id);
        if stale {
            self.sent = Some((
                server.to_string(),
                experiment_id.to_string(),
                load_sent(&self.session_dir, server, experiment_id),
            ));
        }
        &mut self.sent.get_or_insert_with(Default::default).2
    }

    /// Reads what `ns` (and, for a judge, its target stream) has on disk
    /// now; returns what its traces are built with.
    fn prepare(&mut self, ns: &str) -> Result<Option<Prepared>> {
        let (method, settings_hash, target_hash) = {
            let s = self.stream(ns)?;
            (
                s.method.clone(),
                s.settings_hash.clone(),
                s.target_hash.clone(),
            )
        };
        let target_ns = target_hash.as_deref().and_then(|h| self.namespace_of(h));
        if let Some(t) = &target_ns {
            self.stream(t)?;
        }
        self.examples();
        Ok(Some(Prepared {
            method,
            settings_hash,
            target_ns,
            target_hash,
        }))
    }

    /// Builds the traces of the given keys of `ns` from what was read.
    fn build(
        &self,
        owner: &TraceOwner,
        ns: &str,
        prepared: &Prepared,
        keys: &[String],
    ) -> Vec<Trace> {
        let stream = &self.streams[ns];
        let target = prepared
            .target_ns
            .as_ref()
            .and_then(|t| self.streams.get(t));
        let examples = self.examples.as_ref();
        keys.iter()
            .filter_map(|key| {
                let record = stream.results.get(key)?;
                let calls = stream.calls.get(key).map(Vec::as_slice).unwrap_or(&[]);
                let target_record = target.and_then(|t| t.results.get(key));
                let example = record
                    .get("uuid")
                    .and_then(Value::as_str)
                    .and_then(|u| examples.and_then(|e| e.get(u)));
                Some(traces::build(
                    owner,
                    &ItemRecords {
                        namespace: ns,
                        method: &prepared.method,
                        settings_hash: &prepared.settings_hash,
                        record,
                        calls,
                        target: target_record,
                        target_settings_hash: prepared.target_hash.as_deref(),
                        example,
                    },
                ))
            })
            .collect()
    }

    /// Every trace of `ns` as it should be in `experiment_id` (for `w2c
    /// verify`).
    pub fn expected(&mut self, ns: &str, experiment_id: &str) -> Result<Vec<Trace>> {
        let Some(prepared) = self.prepare(ns)? else {
            return Ok(Vec::new());
        };
        let owner = TraceOwner {
            experiment_id: experiment_id.to_string(),
            ..self.owner.clone()
        };
        let keys = self.selected_keys(ns, &prepared);
        Ok(self.build(&owner, ns, &prepared, &keys))
    }

    /// Builds and sends the traces of `ns`'s items finished since the last
    /// call that MLflow does not hold yet. With `repair`, what the child run
    /// holds is listed first: a trace missing there is sent again whole,
    /// one missing assessments gets them.
    ///
    /// `stop(d)` says whether a request expected to take `d` may not start
    /// (the run has ended, or that would overrun its deadline): then no new
    /// request is started, and one under way is given up when
    /// `stop(Duration::ZERO)` says so. What is left stays to be sent by the
    /// next call or by `w2c sync`, and [`Sent::left`] counts it.
    pub async fn send_new(
        &mut self,
        mirror: &mut Mirror,
        ns: &str,
        repair: bool,
        stop: &Stop,
    ) -> Result<Sent> {
        self.send_new_reporting(mirror, ns, repair, stop, &mut |_| {})
            .await
    }

    /// [`TraceSender::send_new`], telling `report` after each request how
    /// many traces are sent so far and how many are left.
    pub async fn send_new_reporting(
        &mut self,
        mirror: &mut Mirror,
        ns: &str,
        repair: bool,
        stop: &Stop,
        report: &mut (dyn FnMut(Sent) + Send),
    ) -> Result<Sent> {
        let Some(prepared) = self.prepare(ns)? else {
            return Ok(Sent::default());
        };
        let keys = self.selected_keys(ns, &prepared);
        // Items that get no trace are not kept in memory (a target's
        // record stays: its judge shows it, and its verdict may come).
        if !repair && !self.streams[ns].is_target() && keys.len() < self.streams[ns].results.len() {
            let chosen: std::collections::HashSet<&String> = keys.iter().collect();
            let skipped: Vec<String> = self.streams[ns]
                .results
                .keys()
                .filter(|k| !chosen.contains(k))
                .cloned()
                .collect();
            if let Some(s) = self.streams.get_mut(ns) {
                for k in &skipped {
                    s.calls.remove(k);
                    s.results.shift_remove(k);
                }
            }
        }
        if keys.is_empty() {
            return Ok(Sent::default());
        }
        let server = mirror.client.base().to_string();
        let experiment_id = mirror.ids.experiment_id.clone().unwrap_or_default();
        let run_id = mirror.ensure_child(ns).await?.info.run_id;
        let owner = TraceOwner {
            experiment_id: experiment_id.clone(),
            ..self.owner.clone()
        };
        let remote: Option<HashMap<String, Value>> = if repair {
            let infos = mirror
                .client
                .search_traces(&experiment_id, &run_filter(&run_id))
                .await?;
            Some(
                infos
                    .into_iter()
                    .filter_map(|i| Some((i.get("trace_id")?.as_str()?.to_string(), i)))
                    .collect(),
            )
        } else {
            None
        };
        // A held trace whose assessments were edited, deleted or
        // overridden in MLflow has w2c's assessments deleted and is sent
        // again whole (its assessments with it).
        let edited: std::collections::HashSet<String> = match &remote {
            Some(r) => {
                let held: Vec<String> = keys
                    .iter()
                    .filter(|k| {
                        r.contains_key(&format!(
                            "tr-{}",
                            traces::trace_id(&owner, &prepared.settings_hash, k)
                        ))
                    })
                    .cloned()
                    .collect();
                let built = self.build(&owner, ns, &prepared, &held);
                repair_assessments(&mirror.client, r, &built).await?
            }
            None => Default::default(),
        };
        let linked = &self.sent(&server, &experiment_id).sent;
        let mut todo_keys = Vec::new();
        let mut already = Vec::new();
        for key in &keys {
            let id = format!(
                "tr-{}",
                traces::trace_id(&owner, &prepared.settings_hash, key)
            );
            let done_here = linked.get(&id) == Some(&run_id) && !edited.contains(key);
            let held = remote.as_ref().is_none_or(|r| r.contains_key(&id));
            if !(done_here && held) {
                todo_keys.push(key.clone());
            } else {
                already.push(key.clone());
            }
        }
        let mut done_keys = 0;
        let mut sent_keys: Vec<String> = already;
        // Traces are built a request at a time: what `stop` leaves is never
        // built.
        // Several requests at once (a server with several workers takes
        // them in parallel): a group of chunks goes out together, each
        // chunk's infos then its spans.
        for group_keys in todo_keys.chunks(TRACES_PER_REQUEST * CHUNKS_AT_ONCE) {
            if stop(self.request_time.unwrap_or_default()) {
                break;
            }
            let started = std::time::Instant::now();
            let chunks: Vec<(&[String], Vec<Trace>)> = group_keys
                .chunks(TRACES_PER_REQUEST)
                .map(|keys| (keys, self.build(&owner, ns, &prepared, keys)))
                .collect();
            let sends = chunks.iter().map(|(_, chunk)| {
                // Each trace's info with its run and assessments first (a
                // new trace is one insert; deterministic ids make a repeat
                // an update), then the spans in one OTLP request, which
                // link the traces to the run and give them their token
                // usage.
                let infos: Vec<(String, String)> = chunk
                    .iter()
                    .map(|t| {
                        let body = t.info_request(&experiment_id, &run_id).to_string();
                        (t.mlflow_id(), crate::redact::scrub(&body))
                    })
                    .collect();
                let refs: Vec<&Trace> = chunk.iter().collect();
                let spans = crate::redact::scrub(&traces::export_request(&refs).to_string());
                let client = mirror.client.clone();
                let (experiment_id, run_id) = (experiment_id.clone(), run_id.clone());
                async move {
                    let results: Vec<Result<(), super::rest::MlflowError>> =
                        futures::stream::iter(infos.into_iter().map(|(id, body)| {
                            let client = client.clone();
                            async move { client.start_trace(&id, body).await }
                        }))
                        .buffer_unordered(INFO_CONCURRENCY)
                        .collect()
                        .await;
                    for r in results {
                        r?;
                    }
                    client.export_traces(&experiment_id, &run_id, spans).await?;
                    Ok::<_, anyhow::Error>(())
                }
            });
            // A group under way is given up as soon as `stop` says so: its
            // traces are not recorded as sent, and sending them again later
            // updates the same traces (deterministic ids).
            let results = tokio::select! {
                r = futures::future::join_all(sends) => r,
                () = until(stop) => break,
            };
            self.request_time = Some(started.elapsed());
            let mut first_err = None;
            for ((chunk_keys, chunk), r) in chunks.iter().zip(results) {
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                    continue;
                }
                let ids: Vec<String> = chunk.iter().map(Trace::mlflow_id).collect();
                self.append(&TraceLogLine {
                    server: server.clone(),
                    experiment_id: experiment_id.clone(),
                    run_id: run_id.clone(),
                    stage: "sent".into(),
                    traces: ids.clone(),
                })?;
                sent_keys.extend_from_slice(chunk_keys);
                let sent = self.sent(&server, &experiment_id);
                for id in ids {
                    sent.sent.insert(id, run_id.clone());
                }
                done_keys += chunk_keys.len();
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            report(Sent {
                sent: done_keys,
                left: todo_keys.len() - done_keys,
            });
        }
        let left = todo_keys.len() - done_keys;
        // A sent item of a namespace that is not a target stream is not
        // needed any more (a target's record is shown in its judge's trace).
        if !repair && !self.streams.get(ns).is_some_and(Stream::is_target) {
            if let Some(s) = self.streams.get_mut(ns) {
                for k in &sent_keys {
                    s.calls.remove(k);
                    s.results.shift_remove(k);
                }
            }
        }
        Ok(Sent {
            sent: done_keys,
            left,
        })
    }

    fn append(&self, line: &TraceLogLine) -> Result<()> {
        let (mut w, _) = JsonlWriter::open(&self.session_dir.join(TRACES_FILE))?;
        w.append(line)?;
        w.sync()
    }
}

/// For each built trace MLflow holds (`remote`: trace id → its info from a
/// search) whose assessments differ from the records' (see
/// [`assessment_list`]; fetched whole when the search left them out):
/// deletes every assessment under a name w2c gives that trace (its own, and
/// any that overrides one), so that sending the trace again logs them as the
/// records say. Assessments under other names are left alone. Returns the
/// keys of the traces to send again.
async fn repair_assessments(
    client: &super::rest::MlflowClient,
    remote: &HashMap<String, Value>,
    built: &[Trace],
) -> Result<std::collections::HashSet<String>> {
    let mut edited = std::collections::HashSet::new();
    for t in built {
        let id = t.mlflow_id();
        let Some(info) = remote.get(&id) else {
            continue;
        };
        let info = if info.get("assessments").is_some() {
            info.clone()
        } else {
            client.get_trace_info(&id).await?
        };
        let mut want: Vec<(String, String)> = t.assessments.iter().map(|a| a.identity()).collect();
        want.sort();
        if assessment_list(&info) == want {
            continue;
        }
        let names: std::collections::HashSet<&str> =
            t.assessments.iter().map(|a| a.name.as_str()).collect();
        let ours = |a: &&Value| {
            a.get("assessment_name")
                .and_then(Value::as_str)
                .is_some_and(|n| names.contains(n))
        };
        let doomed: Vec<(String, bool)> = info
            .get("assessments")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(ours)
                    .filter_map(|a| {
                        let aid = a.get("assessment_id")?.as_str()?.to_string();
                        Some((aid, a.get("overrides").is_some()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Overriding assessments first: deleting one makes the one it
        // overrode valid again, which is deleted next.
        for (aid, _) in doomed
            .iter()
            .filter(|(_, o)| *o)
            .chain(doomed.iter().filter(|(_, o)| !*o))
        {
            client
                .delete_assessment(&id, aid)
                .await
                .with_context(|| format!("repairing the assessments of trace {id}"))?;
        }
        edited.insert(t.key.clone());
    }
    Ok(edited)
}

/// Resolves once `stop` says so (checked every 20 ms).
async fn until(stop: &Stop) {
    while !stop(Duration::ZERO) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The MLflow search filter of a run's traces.
pub fn run_filter(run_id: &str) -> String {
    format!("metadata.`mlflow.sourceRun` = '{run_id}'")
}

/// The (name, value) of every valid assessment in a trace info, sorted,
/// duplicates kept.
pub fn assessment_list(info: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = info
        .get("assessments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|a| a.get("valid").and_then(Value::as_bool) != Some(false))
                .filter_map(|a| {
                    let name = a.get("assessment_name")?.as_str()?.to_string();
                    let value = a
                        .pointer("/expectation/value")
                        .or_else(|| a.pointer("/feedback/value"))?;
                    Some((name, value.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether a namespace sends traces of its own: every namespace with
/// settings (a judge's target stream too: its trace holds the target's
/// call, which the judge's trace names by its `w2c.target_trace` tag).
pub fn has_traces(session_dir: &Path, ns: &str) -> bool {
    crate::store::session::namespaces(session_dir)
        .into_iter()
        .any(|(n, _)| n == ns)
}
