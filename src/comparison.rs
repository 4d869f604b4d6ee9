//! `w2c compare`: reads the finished namespaces of several sessions, lines
//! their examples up, runs the paired comparison ([`crate::compare`]) per
//! method, lists the examples where the models disagree (with the question
//! and tools from the dataset), and renders it all as text, Markdown, JSON
//! or HTML. A reader of the store; it writes nothing itself.
//!
//! Only what is comparable is paired: sessions over different dataset
//! files, examples whose gold label differs between sessions, and a method
//! run with different settings (judge model, protocol, prompts, option
//! order...) are refused, naming what differs, unless the caller allows
//! differences; the comparison then carries them, and every rendering says
//! what differs.

use crate::compare::{self, MethodComparison, Table};
use crate::judge_protocol::aggregate::judged_as;
use crate::judge_protocol::OfficialJudgement;
use crate::labels::{Label, Prediction};
use crate::metrics::Scored;
use crate::store::session::FoundSession;
use crate::store::{read_jsonl, MethodSettings, NamespaceDir, PredictionRow};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// One finished namespace of a session, as compared.
struct LoadedNamespace {
    /// uuid → row.
    rows: HashMap<String, PredictionRow>,
    /// Its method settings.
    settings: MethodSettings,
    /// Whether its metrics.json has NVIDIA's aggregate (a judge under
    /// protocol `when2call`).
    official: bool,
}

/// One session as compared: its label and its finished namespaces.
struct Loaded {
    label: String,
    namespaces: BTreeMap<String, LoadedNamespace>,
    /// Every namespace's settings by settings hash (to name what differs in
    /// the settings a hash stands for, e.g. a judge's target stream).
    settings_by_hash: HashMap<String, MethodSettings>,
    /// Namespaces started but not finished (no `_DONE.json`), to name
    /// them when nothing is shared.
    unfinished: Vec<String>,
    /// The session's address (`RUN_KEY/FP16`).
    address: String,
    /// sha256 of the session's dataset file.
    dataset_sha256: Option<String>,
    /// The session's dataset file, for questions and tools.
    dataset: Option<std::path::PathBuf>,
}

/// How to treat sessions that did not evaluate the same examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Refuse, naming the difference.
    Same,
    /// Compare the examples every session has, and say how many were left.
    Intersection,
}

/// What to compare and how.
pub struct Request<'a> {
    /// The sessions, in the order to show them.
    pub sessions: &'a [FoundSession],
    /// Only these namespaces (all shared ones when empty).
    pub methods: &'a [String],
    /// Example alignment rule.
    pub alignment: Alignment,
    /// Compare even what differs (dataset file, gold labels, method
    /// settings), saying what differs, instead of refusing.
    pub allow_differences: bool,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the bootstrap draws.
    pub seed: u64,
    /// Resample within each gold label (else over all examples).
    pub stratified: bool,
}

/// Something that makes two sessions' results not a paired comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `dataset`, `gold` or `settings`.
    pub kind: &'static str,
    /// The method it concerns (none for the dataset file).
    pub method: Option<String>,
    /// What differs, naming each model's value.
    pub detail: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

/// One model's side of an example where the models disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The model label.
    pub model: String,
    /// Its prediction (`invalid`, or `null` when unscored).
    pub prediction: Option<String>,
    /// Whether it is right.
    pub correct: bool,
    /// The method's stored details (raw answer, judge verdict, scores...).
    pub details: serde_json::Map<String, Value>,
}

/// An example where the models' predictions differ.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// The namespace.
    pub method: String,
    /// Example uuid.
    pub uuid: String,
    /// Gold label.
    pub gold: String,
    /// The question (when the dataset can be read).
    pub question: Option<String>,
    /// The tools offered, as JSON texts.
    pub tools: Vec<String>,
    /// Each model's prediction and answer.
    pub models: Vec<Side>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The models, in order, with the session each comes from.
    pub sessions: Vec<(String, String)>,
    /// What differs between the sessions, compared nonetheless (only when
    /// differences are allowed; empty otherwise).
    pub differences: Vec<Difference>,
    /// Per shared method.
    pub methods: Vec<MethodComparison>,
    /// Notes (methods not shared, examples left out).
    pub notes: Vec<String>,
    /// Examples where the models' predictions differ.
    pub disagreements: Vec<Disagreement>,
    /// Within each session: how far its methods agree (Cohen's κ per pair
    /// of methods) and its stability sweeps' repeats (Fleiss' κ).
    pub agreement: Vec<Agreement>,
}

/// How far two raters of one session agree on the same examples.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// The model (session) label.
    pub model: String,
    /// The session's address.
    pub session: String,
    /// `cohen` (two methods) or `fleiss` (a sweep's repeats).
    pub kind: &'static str,
    /// The first method (the sweep for Fleiss).
    pub a: String,
    /// The second method (`None` for Fleiss).
    pub b: Option<String>,
    /// Raters per example (2 for Cohen, K for Fleiss).
    pub raters: usize,
    /// κ with its interval.
    pub kappa: crate::agreement::Kappa,
    /// The examples on which the raters do not all agree (uuids, sorted).
    pub disagreeing: Vec<String>,
}

/// Cohen's κ for every pair of a session's methods (stability sweeps left
/// out) over the examples both scored, and Fleiss' κ over each sweep's
/// repeats (the examples every repeat scored).
fn agreements(l: &Loaded, seed: u64, resamples: usize) -> Vec<Agreement> {
    use crate::agreement::{category, CATEGORIES};
    let mut out = Vec::new();
    let methods: Vec<&String> = l
        .namespaces
        .keys()
        .filter(|ns| !ns.starts_with("stability_"))
        .collect();
    for (i, a) in methods.iter().enumerate() {
        for b in &methods[i + 1..] {
            let (ra, rb) = (&l.namespaces[*a].rows, &l.namespaces[*b].rows);
            let mut uuids: Vec<&String> = ra
                .keys()
                .filter(|u| {
                    ra[*u].prediction.is_some()
                        && rb.get(*u).is_some_and(|r| r.prediction.is_some())
                })
                .collect();
            uuids.sort();
            let cat = |rows: &HashMap<String, PredictionRow>, u: &String| {
                rows[u].prediction.map_or(CATEGORIES - 1, category)
            };
            let ca: Vec<usize> = uuids.iter().map(|u| cat(ra, u)).collect();
            let cb: Vec<usize> = uuids.iter().map(|u| cat(rb, u)).collect();
            out.push(Agreement {
                model: l.label.clone(),
                session: l.address.clone(),
                kind: "cohen",
                a: (*a).clone(),
                b: Some((*b).clone()),
                raters: 2,
                kappa: crate::agreement::cohen_with_interval(&ca, &cb, seed, resamples),
                disagreeing: uuids
                    .iter()
                    .zip(ca.iter().zip(&cb))
                    .filter(|(_, (x, y))| x != y)
                    .map(|(u, _)| (*u).clone())
                    .collect(),
            });
        }
    }
    for (ns, n) in l
        .namespaces
        .iter()
        .filter(|(ns, _)| ns.starts_with("stability_"))
    {
        let mut uuids: Vec<&String> = n.rows.keys().collect();
        uuids.sort();
        let mut counts = Vec::new();
        let mut kept = Vec::new();
        let mut raters = 0;
        for u in uuids {
            let Some(runs) = n.rows[u].details.get("runs").and_then(Value::as_array) else {
                continue;
            };
            let preds: Option<Vec<Prediction>> = runs
                .iter()
                .map(|r| r.as_str()?.parse::<Prediction>().ok())
                .collect();
            let Some(preds) = preds else { continue };
            if preds.len() < 2 || (raters != 0 && preds.len() != raters) {
                continue;
            }
            raters = preds.len();
            let mut c = [0usize; CATEGORIES];
            for p in &preds {
                c[category(*p)] += 1;
            }
            counts.push(c);
            kept.push(u.clone());
        }
        if counts.is_empty() {
            continue;
        }
        out.push(Agreement {
            model: l.label.clone(),
            session: l.address.clone(),
            kind: "fleiss",
            a: ns.clone(),
            b: None,
            raters,
            kappa: crate::agreement::fleiss_with_interval(&counts, seed, resamples),
            disagreeing: kept
                .into_iter()
                .zip(&counts)
                .filter(|(_, c)| !c.contains(&raters))
                .map(|(u, _)| u)
                .collect(),
        });
    }
    out
}

/// The label of each session: its target model, with the fingerprint when
/// two sessions evaluate the same model.
pub fn labels(sessions: &[FoundSession]) -> Vec<String> {
    let models: Vec<&str> = sessions
        .iter()
        .map(|s| crate::report::session_model(&s.manifest))
        .collect();
    models
        .iter()
        .zip(sessions)
        .map(|(m, s)| {
            if models.iter().filter(|x| *x == m).count() > 1 {
                format!(
                    "{m} ({})",
                    crate::fingerprint::prefix(&s.manifest.fingerprint, 8)
                )
            } else {
                m.to_string()
            }
        })
        .collect()
}

fn load(found: &FoundSession, label: String) -> Result<Loaded> {
    let mut namespaces = BTreeMap::new();
    let mut settings_by_hash = HashMap::new();
    let mut unfinished = Vec::new();
    for (ns, settings) in crate::store::session::namespaces(&found.dir) {
        settings_by_hash.insert(settings.settings_hash.clone(), settings.clone());
        let dir = NamespaceDir::new(&found.dir, &ns);
        if !dir.is_done() {
            unfinished.push(ns);
            continue;
        }
        if !dir.predictions().exists() {
            // Finished without predictions of its own (a judge's target
            // stream): nothing to compare.
            continue;
        }
        let mut rows = HashMap::new();
        for row in read_jsonl_rows(&dir.predictions())? {
            rows.insert(row.uuid.clone(), row);
        }
        let official = crate::store::read_json::<crate::store::MetricsFile>(&dir.metrics())
            .is_ok_and(|m| m.official_judge.is_some());
        namespaces.insert(
            ns,
            LoadedNamespace {
                rows,
                settings,
                official,
            },
        );
    }
    let dataset = found.manifest.config["dataset"]["path"]
        .as_str()
        .map(std::path::PathBuf::from);
    Ok(Loaded {
        label,
        namespaces,
        settings_by_hash,
        unfinished,
        address: found.address(),
        dataset_sha256: found.manifest.fingerprint_payload["dataset"]["sha256"]
            .as_str()
            .map(str::to_string),
        dataset,
    })
}

fn read_jsonl_rows(path: &std::path::Path) -> Result<Vec<PredictionRow>> {
    let mut rows = Vec::new();
    read_jsonl(path, |row: PredictionRow| rows.push(row))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(rows)
}

/// Settings keys that name a model's own prompt format (`mcq_logprob`'s
/// template, chosen per target as the paper scores each model in its own
/// format): a difference in them is said, not refused.
const PER_MODEL_KEYS: [&str; 3] = ["template", "template_sha256", "family"];

/// The settings keys whose values differ between the sessions (each value
/// as the session has it, `-` when absent), `prefix`ed; a `*_settings_hash`
/// key is followed into the settings it stands for when every session has
/// them.
fn settings_diff(
    prefix: &str,
    labels: &[&str],
    settings: &[&Value],
    by_hash: &[&HashMap<String, MethodSettings>],
    out: &mut Vec<(String, String)>,
) {
    let keys: BTreeSet<&String> = settings
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|o| o.keys())
        .collect();
    for key in keys {
        let values: Vec<&Value> = settings.iter().map(|v| &v[key.as_str()]).collect();
        if values.iter().all(|v| *v == values[0]) {
            continue;
        }
        if key.ends_with("_settings_hash") {
            let nested: Option<Vec<&Value>> = values
                .iter()
                .zip(by_hash)
                .map(|(h, m)| Some(&m.get(h.as_str()?)?.settings))
                .collect();
            if let Some(nested) = nested {
                let name = nested[0]["method"].as_str().unwrap_or(key);
                settings_diff(&format!("{prefix}{name} "), labels, &nested, by_hash, out);
                continue;
            }
        }
        let shown: Vec<String> = labels
            .iter()
            .zip(&values)
            .map(|(l, v)| match v {
                Value::Null => format!("{l} -"),
                Value::String(s) => format!("{l} {s}"),
                v => format!("{l} {v}"),
            })
            .collect();
        out.push((key.clone(), format!("{prefix}{key}: {}", shown.join(", "))));
    }
}

/// What makes method `ns` not a paired comparison across `loaded`: its
/// settings (each differing key named; differences only in a model's own
/// template go to `notes`) and the gold label of shared examples.
fn method_differences(ns: &str, loaded: &[Loaded], notes: &mut Vec<String>) -> Vec<Difference> {
    let mut out = Vec::new();
    let labels: Vec<&str> = loaded.iter().map(|l| l.label.as_str()).collect();
    let of: Vec<&LoadedNamespace> = loaded.iter().map(|l| &l.namespaces[ns]).collect();
    if of
        .iter()
        .any(|n| n.settings.settings_hash != of[0].settings.settings_hash)
    {
        let mut keys = Vec::new();
        let settings: Vec<&Value> = of.iter().map(|n| &n.settings.settings).collect();
        let by_hash: Vec<&HashMap<String, MethodSettings>> =
            loaded.iter().map(|l| &l.settings_by_hash).collect();
        settings_diff("", &labels, &settings, &by_hash, &mut keys);
        let (own, other): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .partition(|(k, _)| PER_MODEL_KEYS.contains(&k.as_str()));
        if !own.is_empty() {
            notes.push(format!(
                "{ns}: each model in its own prompt format, as the paper scores them: {}",
                own.iter()
                    .map(|(_, d)| d.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !other.is_empty() || own.is_empty() {
            let detail = if other.is_empty() {
                "the method settings differ (settings_hash)".to_string()
            } else {
                format!(
                    "the method settings differ: {}",
                    other
                        .iter()
                        .map(|(_, d)| d.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            out.push(Difference {
                kind: "settings",
                method: Some(ns.to_string()),
                detail,
            });
        }
    }
    let mut gold: Vec<(&String, Vec<Label>)> = of[0]
        .rows
        .iter()
        .filter_map(|(u, r)| {
            let golds: Option<Vec<Label>> = of.iter().map(|n| Some(n.rows.get(u)?.gold)).collect();
            golds
                .filter(|g| g.iter().any(|x| *x != r.gold))
                .map(|g| (u, g))
        })
        .collect();
    if !gold.is_empty() {
        gold.sort();
        let (u, first) = &gold[0];
        out.push(Difference {
            kind: "gold",
            method: Some(ns.to_string()),
            detail: format!(
                "{} shared example{} a different gold label (each model is scored against its own), e.g. {u}: {}",
                gold.len(),
                if gold.len() == 1 { " has" } else { "s have" },
                labels
                    .iter()
                    .zip(first)
                    .map(|(l, g)| format!("{l} {g}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    out
}

/// The dataset files differ: each session's sha256.
fn dataset_difference(loaded: &[Loaded]) -> Option<Difference> {
    let first = &loaded[0].dataset_sha256;
    loaded
        .iter()
        .any(|l| l.dataset_sha256 != *first)
        .then(|| Difference {
            kind: "dataset",
            method: None,
            detail: format!(
                "the sessions evaluated different dataset files: {}",
                loaded
                    .iter()
                    .map(|l| format!(
                        "{} sha256 {}",
                        l.label,
                        l.dataset_sha256
                            .as_deref()
                            .map_or("unknown", |s| crate::fingerprint::prefix(s, 12))
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// The rows of method `ns` as compared under `table`, one list per model,
/// of the same examples of `uuids`: every scored example for the MC table;
/// for the LLM-as-judge table, the rows NVIDIA's aggregate counts for every
/// model (a note says how many were left out and why).
fn rows_for(
    ns: &str,
    table: Table,
    per: &[&HashMap<String, PredictionRow>],
    uuids: &[String],
    notes: &mut Vec<String>,
) -> (Vec<String>, Vec<Vec<Scored>>) {
    let classification = |r: &PredictionRow| -> Option<String> {
        match serde_json::from_value::<OfficialJudgement>(r.details.get("official")?.clone())
            .ok()?
        {
            OfficialJudgement::Classified { classification } => Some(classification),
            _ => None,
        }
    };
    let kept: Vec<String> = match table {
        Table::MultipleChoice => {
            // Examples every model scored (mcq_logprob may leave some unscored).
            let kept: Vec<String> = uuids
                .iter()
                .filter(|u| per.iter().all(|rows| rows[*u].prediction.is_some()))
                .cloned()
                .collect();
            if kept.len() < uuids.len() {
                notes.push(format!(
                    "{ns}: {} of {} examples left out: unscored by some model",
                    uuids.len() - kept.len(),
                    uuids.len()
                ));
            }
            kept
        }
        Table::LlmJudge => {
            let direct = uuids
                .iter()
                .filter(|u| per.iter().any(|rows| rows[*u].gold == Label::Direct))
                .count();
            let kept: Vec<String> = uuids
                .iter()
                .filter(|u| {
                    per.iter().all(|rows| {
                        rows[*u].gold != Label::Direct && classification(&rows[*u]).is_some()
                    })
                })
                .cloned()
                .collect();
            if kept.len() < uuids.len() {
                notes.push(format!(
                    "{ns}: the paper's LLM-as-judge columns are over the {} of {} examples NVIDIA's aggregate counts for every model ({direct} of `direct` gold, {} on which its scripts raise for some model)",
                    kept.len(),
                    uuids.len(),
                    uuids.len() - kept.len() - direct
                ));
            }
            kept
        }
    };
    let scored = per
        .iter()
        .map(|rows| {
            kept.iter()
                .map(|u| {
                    let r = &rows[u];
                    let pred = match table {
                        Table::MultipleChoice => r.prediction.unwrap_or(Prediction::Invalid),
                        Table::LlmJudge => {
                            classification(r).map_or(Prediction::Invalid, |c| judged_as(&c))
                        }
                    };
                    compare::scored(r.gold, pred, r.n_tools)
                })
                .collect()
        })
        .collect();
    (kept, scored)
}

/// Each example's `source_id` in the dataset file at `path` (examples from
/// one source are correlated: the clustered standard errors group by it);
/// `None` when the file cannot be read or a line has no `source_id`.
fn source_ids(path: Option<&std::path::Path>) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path?).ok()?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some((
                v.get("uuid")?.as_str()?.to_string(),
                v.get("source_id")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The cluster index of each of `uuids` by its source id; `None` when one
/// has none.
fn cluster_indices(uuids: &[String], sources: &HashMap<String, String>) -> Option<Vec<usize>> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    uuids
        .iter()
        .map(|u| {
            let s = sources.get(u)?;
            let next = ids.len();
            Some(*ids.entry(s.as_str()).or_insert(next))
        })
        .collect()
}

/// Compares the sessions of `req`.
pub fn build(req: &Request<'_>) -> Result<Comparison> {
    if req.sessions.len() < 2 {
        bail!("compare needs at least two sessions");
    }
    refuse_repeated(req.sessions)?;
    let labels = labels(req.sessions);
    let loaded: Vec<Loaded> = req
        .sessions
        .iter()
        .zip(&labels)
        .map(|(s, l)| load(s, l.clone()))
        .collect::<Result<_>>()?;
    let mut notes = Vec::new();
    let all: BTreeSet<&String> = loaded.iter().flat_map(|l| l.namespaces.keys()).collect();
    let mut methods: Vec<&String> = all
        .iter()
        .copied()
        .filter(|ns| loaded.iter().all(|l| l.namespaces.contains_key(*ns)))
        .collect();
    for ns in &all {
        if !methods.contains(ns) {
            let have: Vec<&str> = loaded
                .iter()
                .filter(|l| l.namespaces.contains_key(*ns))
                .map(|l| l.label.as_str())
                .collect();
            notes.push(format!(
                "{ns}: finished only for {} — not compared",
                have.join(", ")
            ));
        }
    }
    if !req.methods.is_empty() {
        for want in req.methods {
            if !methods.contains(&want) {
                let lacking: Vec<String> = loaded
                    .iter()
                    .filter(|l| !l.namespaces.contains_key(want))
                    .map(|l| {
                        let why = if l.unfinished.contains(want) {
                            "unfinished"
                        } else {
                            "not run"
                        };
                        format!("{} ({}): {why}", l.label, l.address)
                    })
                    .collect();
                bail!(
                    "method {want} is not finished in every session compared: {}",
                    lacking.join("; ")
                );
            }
        }
        methods.retain(|m| req.methods.contains(m));
    }
    if methods.is_empty() {
        bail!(
            "the sessions share no finished method: {}",
            loaded
                .iter()
                .map(describe_finished)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let mut differences: Vec<Difference> = dataset_difference(&loaded).into_iter().collect();
    for ns in &methods {
        differences.extend(method_differences(ns, &loaded, &mut notes));
    }
    if !differences.is_empty() && !req.allow_differences {
        bail!(
            "the sessions are not comparable: {}; pass --allow-differences to compare them anyway (every output then says what differs)",
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let mut out = Vec::new();
    let mut disagreements = Vec::new();
    let datasets = DatasetCache::default();
    let sources = source_ids(loaded[0].dataset.as_deref());
    for ns in methods {
        let per: Vec<&HashMap<String, PredictionRow>> =
            loaded.iter().map(|l| &l.namespaces[ns].rows).collect();
        let uuids = aligned_uuids(ns, &loaded, &per, req.alignment, &mut notes)?;
        let table = if loaded.iter().all(|l| l.namespaces[ns].official) {
            Table::LlmJudge
        } else {
            Table::MultipleChoice
        };
        let (kept, rows) = rows_for(ns, table, &per, &uuids, &mut notes);
        let clusters = sources.as_ref().and_then(|s| cluster_indices(&kept, s));
        out.push(compare::compare(
            ns,
            table,
            &labels,
            &rows,
            clusters.as_deref(),
            compare::Draws {
                seed: req.seed,
                resamples: req.resamples,
                stratified: req.stratified,
            },
        ));
        for u in &uuids {
            let preds: Vec<Option<Prediction>> =
                per.iter().map(|rows| rows[u].prediction).collect();
            if preds.iter().all(|p| *p == preds[0]) {
                continue;
            }
            let first = &per[0][u];
            let example = datasets.example(loaded[0].dataset.as_deref(), u);
            disagreements.push(Disagreement {
                method: ns.clone(),
                uuid: u.clone(),
                gold: first.gold.to_string(),
                question: example.as_ref().map(|e| e.question.clone()),
                tools: example.map(|e| e.tools).unwrap_or_default(),
                models: per
                    .iter()
                    .zip(&labels)
                    .map(|(rows, label)| {
                        let r = &rows[u];
                        Side {
                            model: label.clone(),
                            prediction: r.prediction.map(|p| p.to_string()),
                            correct: r.prediction == Some(Prediction::Label(r.gold)),
                            details: r.details.clone(),
                        }
                    })
                    .collect(),
            });
        }
    }
    Ok(Comparison {
        sessions: req
            .sessions
            .iter()
            .zip(labels)
            .map(|(s, l)| {
                (
                    l,
                    format!(
                        "{}/{}",
                        s.manifest.run_key,
                        crate::fingerprint::short(&s.manifest.fingerprint)
                    ),
                )
            })
            .collect(),
        differences,
        methods: out,
        notes,
        disagreements,
        agreement: loaded
            .iter()
            .flat_map(|l| agreements(l, req.seed, req.resamples))
            .collect(),
    })
}

/// Refuses a session named more than once (by the same address or the
/// same directory): a session compared with itself is no comparison.
fn refuse_repeated(sessions: &[FoundSession]) -> Result<()> {
    let key = |s: &FoundSession| std::fs::canonicalize(&s.dir).unwrap_or_else(|_| s.dir.clone());
    for (i, s) in sessions.iter().enumerate() {
        if let Some(first) = sessions[..i].iter().position(|t| key(t) == key(s)) {
            bail!(
                "session {} is named twice (arguments {} and {}): a session compared with itself is no comparison; name two or more different sessions",
                s.address(),
                first + 1,
                i + 1
            );
        }
    }
    Ok(())
}

/// What a session has finished and what it has not, for the error saying
/// that the sessions share no finished method.
fn describe_finished(l: &Loaded) -> String {
    let finished: Vec<&str> = l.namespaces.keys().map(String::as_str).collect();
    let mut parts = vec![if finished.is_empty() {
        "no finished method".to_string()
    } else {
        format!("finished {}", finished.join(", "))
    }];
    if !l.unfinished.is_empty() {
        parts.push(format!(
            "unfinished {} (`w2c resume {}` finishes it)",
            l.unfinished.join(", "),
            l.address
        ));
    }
    format!("{} ({}) has {}", l.label, l.address, parts.join("; "))
}

/// The uuids of namespace `ns` shared by every session, in the first
/// session's order; an error naming the difference unless the
/// intersection is asked for.
fn aligned_uuids(
    ns: &str,
    loaded: &[Loaded],
    per: &[&HashMap<String, PredictionRow>],
    alignment: Alignment,
    notes: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut first: Vec<&String> = per[0].keys().collect();
    first.sort();
    let shared: Vec<String> = first
        .iter()
        .filter(|u| per.iter().all(|rows| rows.contains_key(**u)))
        .map(|u| (*u).clone())
        .collect();
    let differs = per.iter().any(|rows| rows.len() != shared.len());
    if differs {
        let describe: Vec<String> = loaded
            .iter()
            .zip(per)
            .map(|(l, rows)| {
                let only: Vec<&String> = rows.keys().filter(|u| !shared.contains(u)).collect();
                format!(
                    "{} has {} examples ({} not in every session{})",
                    l.label,
                    rows.len(),
                    only.len(),
                    only.first()
                        .map_or(String::new(), |u| format!(", e.g. {u}"))
                )
            })
            .collect();
        match alignment {
            Alignment::Same => bail!(
                "{ns}: the sessions did not evaluate the same examples: {}; pass --intersection to compare the {} they share",
                describe.join("; "),
                shared.len()
            ),
            Alignment::Intersection => notes.push(format!(
                "{ns}: compared on the {} examples every session has ({})",
                shared.len(),
                describe.join("; ")
            )),
        }
    }
    if shared.is_empty() {
        bail!("{ns}: the sessions share no example");
    }
    Ok(shared)
}

/// Datasets read once each, for the questions and tools of examples.
#[derive(Default)]
pub struct DatasetCache {
    loaded: std::cell::RefCell<
        HashMap<std::path::PathBuf, Option<HashMap<String, crate::dataset::Example>>>,
    >,
}

impl DatasetCache {
    /// The example `uuid` of the dataset at `path`, when it can be read.
    pub fn example(
        &self,
        path: Option<&std::path::Path>,
        uuid: &str,
    ) -> Option<crate::dataset::Example> {
        let path = path?;
        let mut cache = self.loaded.borrow_mut();
        let by_uuid = cache.entry(path.to_path_buf()).or_insert_with(|| {
            crate::dataset::load(path).ok().map(|d| {
                d.examples
                    .into_iter()
                    .map(|e| (e.uuid.clone(), e))
                    .collect()
            })
        });
        by_uuid.as_ref()?.get(uuid).cloned()
    }
}

/// Short names of the compared metrics, for table headers: the table
/// whose definitions they follow in brackets.
pub(crate) fn short_name(metric: &str) -> &str {
    match metric {
        "accuracy" => "accuracy",
        "macro_f1_official" => "macro-F1 (MC)",
        "tool_hallucination_rate_official" => "ToolHall (MC)",
        "answer_hallucination_rate" => "AnswerHall",
        "parameter_hallucination_rate" => "ParamHall",
        "judge_table_acc" => "Acc (judge)",
        "judge_table_f1" => "F1 (judge)",
        "judge_table_tool_hall" => "Tool Hall (judge)",
        other => other,
    }
}

/// What a method's metrics are, for its heading.
fn table_title(table: Table) -> &'static str {
    match table {
        Table::LlmJudge => "the paper's LLM-as-judge table (NVIDIA's aggregate)",
        Table::MultipleChoice => "the multiple-choice table's definitions (MC)",
    }
}

/// `" from N sources"` when the examples' sources are known.
fn clusters_text(m: &MethodComparison) -> String {
    m.clusters
        .map_or(String::new(), |g| format!(" from {g} sources (source_id)"))
}

/// Whether `metric` is shown as a percentage (a rate) rather than an F1.
fn is_rate(metric: &str) -> bool {
    !metric.contains("f1")
}

/// A value of `metric` (a fraction) to `decimals` decimals of the
/// fraction: rates in % (two fewer), F1s as they are.
fn value_to(metric: &str, v: Option<f64>, decimals: usize) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if is_rate(metric) => {
            format!("{:.*}%", decimals.saturating_sub(2), x * 100.0)
        }
        Some(x) => format!("{x:.decimals$}"),
    }
}

/// A metric value: rates in % to 0.1, F1 to 3 decimals.
fn value(metric: &str, v: Option<f64>) -> String {
    value_to(metric, v, 3)
}

/// A standard error: in points for a rate, as is for an F1.
fn se_text(metric: &str, se: Option<f64>) -> String {
    match se {
        None => "n/a".into(),
        Some(x) if is_rate(metric) => format!("{:.1}", x * 100.0),
        Some(x) => format!("{x:.3}"),
    }
}

/// What a rate's value is printed with: its Wilson interval, binomial
/// standard error (in points) and `k/n` (`(0/0)` alone when it has no
/// qualifying example). `w2c report` prints its rates with it too.
pub(crate) fn rate_detail(metric: &str, r: &compare::Rate) -> String {
    match (r.value, r.lo, r.hi) {
        (Some(_), Some(lo), Some(hi)) => format!(
            "[{}, {}] SE {} ({}/{})",
            value(metric, Some(lo)),
            value(metric, Some(hi)),
            se_text(metric, r.se),
            r.k,
            r.n
        ),
        _ => format!("({}/{})", r.k, r.n),
    }
}

/// A rate `k/n` as compare prints it: the value, then [`rate_detail`]
/// (`n/a (0/0)` without a qualifying example).
pub(crate) fn rate_text(metric: &str, r: &compare::Rate) -> String {
    format!("{} {}", value(metric, r.value), rate_detail(metric, r))
}

/// A model's value of `metric`: a rate `k/n` with its Wilson interval,
/// an F1 with its bootstrap interval (ends to the precision the bootstrap
/// supports); each with its standard error.
fn with_ci(metric: &str, i: &compare::Interval, rate: Option<&compare::Rate>) -> String {
    if let Some(r) = rate {
        return rate_text(metric, r);
    }
    let d = compare::supported_decimals(i.mc_error, 3);
    match (i.lo, i.hi) {
        (Some(lo), Some(hi)) => format!(
            "{} [{}, {}] SE {}",
            value(metric, i.value),
            value_to(metric, Some(lo), d),
            value_to(metric, Some(hi), d),
            se_text(metric, i.se)
        ),
        _ => value(metric, i.value),
    }
}

/// A signed value of `metric` to `decimals`.
fn signed(metric: &str, x: f64, decimals: usize) -> String {
    let v = value_to(metric, Some(x), decimals);
    if x >= 0.0 && !v.starts_with('-') {
        format!("+{v}")
    } else {
        v
    }
}

/// A difference with a sign and its paired bootstrap interval (ends to the
/// precision the bootstrap supports); on an uninformative comparison
/// (`claim` false) the value alone, saying so.
fn diff_with_ci(metric: &str, i: &compare::Interval, claim: bool) -> String {
    let d = compare::supported_decimals(i.mc_error, 3);
    match (i.value, i.lo, i.hi) {
        (Some(v), _, _) if !claim => format!("{} (uninformative)", signed(metric, v, 3)),
        (Some(v), Some(lo), Some(hi)) => format!(
            "{} [{}, {}]",
            signed(metric, v, 3),
            signed(metric, lo, d),
            signed(metric, hi, d),
        ),
        (Some(v), _, _) => signed(metric, v, 3),
        _ => "n/a".into(),
    }
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// An adjusted p-value, ` *` when significant.
fn holm_text(p: f64, significant: bool) -> String {
    format!("{}{}", p_value(p), if significant { " *" } else { "" })
}

/// A method's three tables: the models (ranked), the pairs (a row per
/// pair and metric) and the gold labels (a row per label and pair).
struct Tables {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    pair_header: Vec<&'static str>,
    pairs: Vec<Vec<String>>,
    label_header: Vec<&'static str>,
    labels: Vec<Vec<String>>,
}

/// Whether the secondary metric `name` of pair `p` is significant after
/// Holm's adjustment (and the comparison is informative), with that p.
fn secondary(m: &MethodComparison, p: &compare::PairResult, name: &str) -> Option<(f64, bool)> {
    let adj = p
        .adjusted_difference_p
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)?;
    Some((adj, m.uninformative.is_none() && adj < compare::ALPHA))
}

/// The rows of a method's model, pair and label tables.
fn tables(m: &MethodComparison) -> Tables {
    let names = compare::metric_names(m.table);
    let mut header = vec!["rank", "model"];
    header.extend(names.iter().map(|n| short_name(n)));
    let mut models: Vec<&compare::ModelResult> = m.models.iter().collect();
    models.sort_by_key(|r| r.rank);
    let rows = models
        .iter()
        .map(|r| {
            let mut row = vec![r.rank.to_string(), r.model.clone()];
            row.extend(r.metrics.iter().enumerate().map(|(k, (name, i))| {
                let rate = r.rates.iter().find(|(n, _)| n == name).map(|(_, r)| r);
                let cell = with_ci(name, i, rate);
                match r.accuracy_clustered_se {
                    Some(se) if k == 0 => format!("{cell}, clustered SE {:.1}", se * 100.0),
                    _ => cell,
                }
            }));
            row
        })
        .collect();
    let claim = m.uninformative.is_none();
    let pair_header = vec![
        "A",
        "B",
        "metric",
        "Δ A − B [95% CI]",
        "SE",
        "test",
        "p",
        "Holm p",
        "MDE (80% power)",
    ];
    let mut pairs = Vec::new();
    for p in &m.pairs {
        for (k, (name, i)) in p.differences.iter().enumerate() {
            let row = if k == 0 {
                vec![
                    format!("McNemar ({} vs {})", p.only_a, p.only_b),
                    p_value(p.mcnemar_p),
                    holm_text(p.adjusted_p, p.significant),
                    match (&p.uninformative, p.mde) {
                        (Some(_), _) => format!("n/a ({} discordant)", p.only_a + p.only_b),
                        (None, Some(d)) => format!("{:.1} pp", d * 100.0),
                        (None, None) => "n/a".into(),
                    },
                ]
            } else {
                let (adj, sig) = secondary(m, p, name).unwrap_or((1.0, false));
                vec![
                    "paired bootstrap".into(),
                    i.p.map_or("n/a".into(), p_value),
                    if i.p.is_some() {
                        holm_text(adj, sig)
                    } else {
                        "n/a".into()
                    },
                    String::new(),
                ]
            };
            let mut cells = vec![
                p.a.clone(),
                p.b.clone(),
                short_name(name).to_string(),
                diff_with_ci(name, i, claim),
                match (k, p.accuracy_clustered_se) {
                    (0, Some(c)) => format!("{} (clustered {:.1})", se_text(name, i.se), c * 100.0),
                    _ => se_text(name, i.se),
                },
            ];
            cells.extend(row);
            pairs.push(cells);
        }
    }
    let label_header = vec![
        "gold",
        "n",
        "A",
        "A right",
        "B",
        "B right",
        "Δ A − B [95% CI]",
        "SE",
        "McNemar",
        "p",
        "Holm p",
    ];
    let mut labels = Vec::new();
    for l in &m.by_label {
        let right = |model: &str| {
            l.models
                .iter()
                .find(|x| x.model == model)
                .map_or("n/a".into(), |x| {
                    with_ci("accuracy", &compare::Interval::default(), Some(&x.accuracy))
                })
        };
        for p in &l.pairs {
            labels.push(vec![
                l.gold.clone(),
                l.n.to_string(),
                p.a.clone(),
                right(&p.a),
                p.b.clone(),
                right(&p.b),
                diff_with_ci("accuracy", &p.difference, claim),
                se_text("accuracy", p.difference.se),
                format!("{} vs {}", p.only_a, p.only_b),
                p_value(p.mcnemar_p),
                holm_text(p.adjusted_p, p.significant),
            ]);
        }
    }
    Tables {
        header,
        rows,
        pair_header,
        pairs,
        label_header,
        labels,
    }
}

/// What the tests say, in a sentence per method: every difference marked
/// significant (accuracy, accuracy by gold label, the other metrics), each
/// after Holm's adjustment in its family.
fn verdict(m: &MethodComparison) -> String {
    if let Some(why) = &m.uninformative {
        return format!(
            "{why}: the intervals are not calibrated at this size and no test is marked significant"
        );
    }
    let better = |only_a: usize, only_b: usize, a: &str, b: &str| {
        if only_a > only_b {
            format!("{a} > {b}")
        } else {
            format!("{b} > {a}")
        }
    };
    let mut sig: Vec<String> = Vec::new();
    let what = match m.table {
        Table::LlmJudge => "Acc (judge)",
        Table::MultipleChoice => "accuracy",
    };
    for p in m.pairs.iter().filter(|p| p.significant) {
        sig.push(format!("{what} {}", better(p.only_a, p.only_b, &p.a, &p.b)));
    }
    for l in &m.by_label {
        for p in l.pairs.iter().filter(|p| p.significant) {
            sig.push(format!(
                "{what} on {} rows {}",
                l.gold,
                better(p.only_a, p.only_b, &p.a, &p.b)
            ));
        }
    }
    for p in &m.pairs {
        for (name, i) in p.differences.iter().skip(1) {
            if let (Some((_, true)), Some(v)) = (secondary(m, p, name), i.value) {
                let (hi, lo) = if v > 0.0 { (&p.a, &p.b) } else { (&p.b, &p.a) };
                sig.push(format!("{} higher for {hi} than {lo}", short_name(name)));
            }
        }
    }
    if sig.is_empty() {
        format!(
            "no difference is significant (Holm-adjusted p < {} in each family)",
            compare::ALPHA
        )
    } else {
        format!(
            "significant (Holm-adjusted p < {} in its family): {}",
            compare::ALPHA,
            sig.join("; ")
        )
    }
}

const LEGEND: &str = "rates: k/n with a Wilson 95% interval and the binomial SE (accuracy also with the SE clustered by the dataset's source_id); F1: a 95% percentile bootstrap interval and the bootstrap SE; Δ = A − B with a paired bootstrap interval and SE; interval ends are printed to the precision their Monte-Carlo error supports. Tests: accuracy (overall and on each gold label's rows) by McNemar's exact test on per-example correctness, the other metrics by a paired bootstrap p-value; * = significant after Holm's adjustment within its family (listed under each method). MDE = the smallest accuracy difference McNemar's test detects with 80% power at α = 0.05 given the pair's discordant share (n/a when too few examples are discordant for the test to reach p < 0.05); a method with fewer than 30 examples is uninformative (no interval or test is marked). (MC) = the multiple-choice table's definitions, (judge) = the paper's LLM-as-judge table (NVIDIA's aggregate)";

/// The agreement rows of one session (`w2c report`): Cohen's κ per pair of
/// its methods, Fleiss' κ per sweep, drawn as `w2c compare` draws them.
pub fn session_agreement(
    found: &FoundSession,
    seed: u64,
    resamples: usize,
) -> Result<Vec<Agreement>> {
    let label = crate::report::session_model(&found.manifest).to_string();
    Ok(agreements(&load(found, label)?, seed, resamples))
}

/// The agreement rows as a text or Markdown table with its title (empty
/// without rows).
pub fn agreement_text(rows: &[Agreement], markdown: bool) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let (header, rows) = agreement_table(rows);
    let mut out = format!(
        "\n{}{AGREEMENT_TITLE}\n\n",
        if markdown { "## " } else { "" }
    );
    if markdown {
        let _ = writeln!(
            out,
            "| {} |\n|{}",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for r in &rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    } else {
        out.push_str(&crate::report::table(&header, &rows));
    }
    out
}

/// The agreement rows as an HTML section body (empty without rows).
pub fn agreement_html(rows: &[Agreement]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let (header, rows) = agreement_table(rows);
    let mut out = format!(
        "<h3>Agreement</h3><p><small>{}</small></p><div class=\"wrap\"><table><thead><tr>",
        html_escape(AGREEMENT_TITLE)
    );
    for h in header {
        let _ = write!(out, "<th>{}</th>", html_escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for cell in r {
            let _ = write!(out, "<td>{}</td>", html_escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The agreement table: a row per κ (Cohen per pair of a session's
/// methods, Fleiss per sweep).
fn agreement_table(agreement: &[Agreement]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "model",
        "raters",
        "κ",
        "n",
        "agreement",
        "κ [95% CI]",
        "SE",
        "strength",
        "disagree",
    ];
    let num = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.3}"));
    let rows = agreement
        .iter()
        .map(|a| {
            let k = &a.kappa;
            vec![
                a.model.clone(),
                match &a.b {
                    Some(b) => format!("{} vs {b}", a.a),
                    None => format!("{} ({} repeats)", a.a, a.raters),
                },
                if a.kind == "cohen" {
                    "Cohen".into()
                } else {
                    "Fleiss".into()
                },
                k.n.to_string(),
                crate::report::pct(k.observed),
                match (k.lo, k.hi) {
                    (Some(lo), Some(hi)) => {
                        format!("{} [{}, {}]", num(k.kappa), num(Some(lo)), num(Some(hi)))
                    }
                    _ => num(k.kappa),
                },
                num(k.se),
                crate::agreement::strength(k.kappa).to_string(),
                a.disagreeing.len().to_string(),
            ]
        })
        .collect();
    (header, rows)
}

const AGREEMENT_TITLE: &str = "agreement within each session: Cohen's κ between two methods on the examples both scored (a judge against the multiple-choice methods, two judges over the same answers), Fleiss' κ over a stability sweep's repeats; categories: the four labels and invalid; 95% percentile bootstrap interval; strength in Landis & Koch's words";

/// The warning that opens a comparison of sessions that differ.
fn differences_heading(c: &Comparison) -> Option<String> {
    (!c.differences.is_empty()).then(|| {
        "WARNING: compared although the sessions differ (--allow-differences); not a paired comparison where they do:".to_string()
    })
}

/// Plain text or Markdown.
pub fn render_text(c: &Comparison, markdown: bool, disagreements_shown: usize) -> String {
    let table = |header: &[&str], rows: &[Vec<String>]| {
        if markdown {
            let mut s = format!(
                "| {} |\n|{}\n",
                header.join(" | "),
                "---|".repeat(header.len())
            );
            for r in rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
            s
        } else {
            crate::report::table(header, rows)
        }
    };
    let mut out = String::new();
    let h = if markdown { "## " } else { "" };
    if let Some(heading) = differences_heading(c) {
        let _ = writeln!(
            out,
            "{}",
            if markdown {
                format!("**{heading}**\n")
            } else {
                heading
            }
        );
        for d in &c.differences {
            let _ = writeln!(out, "{}{d}", if markdown { "- " } else { "  - " });
        }
        out.push('\n');
    }
    for m in &c.methods {
        let t = tables(m);
        let _ = writeln!(
            out,
            "{h}{} — {}, {} examples{}, {} bootstrap resamples{} (seed {})\n",
            m.method,
            table_title(m.table),
            m.n_examples,
            clusters_text(m),
            m.resamples,
            if m.stratified {
                " stratified by gold label"
            } else {
                ""
            },
            m.seed
        );
        out.push_str(&table(&t.header, &t.rows));
        out.push('\n');
        out.push_str(&table(&t.pair_header, &t.pairs));
        if !t.labels.is_empty() {
            let _ = writeln!(out, "\nby gold label (accuracy on each label's rows):\n");
            out.push_str(&table(&t.label_header, &t.labels));
        }
        let _ = writeln!(out, "\n{}", verdict(m));
        for f in &m.holm_families {
            let _ = writeln!(out, "Holm family: {f}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{LEGEND}.");
    out.push_str(&agreement_text(&c.agreement, markdown));
    for n in &c.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "\n{h}{} examples where the models' predictions differ{}",
        c.disagreements.len(),
        if c.disagreements.len() > disagreements_shown {
            format!(" (first {disagreements_shown}; --disagreements FILE writes them all)")
        } else {
            String::new()
        }
    );
    for d in c.disagreements.iter().take(disagreements_shown) {
        let q = d.question.as_deref().unwrap_or("(question not available)");
        let q: String = q.chars().take(100).collect();
        let _ = writeln!(out, "\n{} {} gold {}: {}", d.method, d.uuid, d.gold, q);
        for s in &d.models {
            let _ = writeln!(
                out,
                "  {:<24} {:<16} {}",
                s.model,
                s.prediction.as_deref().unwrap_or("unscored"),
                if s.correct { "right" } else { "wrong" }
            );
        }
    }
    out
}

/// The comparison's tables and verdicts as HTML (a section of a page).
pub fn html_sections(c: &Comparison) -> String {
    let esc = html_escape;
    let table = |header: &[&str], rows: &[Vec<String>]| {
        let mut s = String::from("<table><thead><tr>");
        for h in header {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr></thead><tbody>");
        for r in rows {
            s.push_str("<tr>");
            for cell in r {
                let _ = write!(s, "<td>{}</td>", esc(cell));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    };
    let mut out = String::new();
    if let Some(heading) = differences_heading(c) {
        let _ = write!(
            out,
            "<div class=\"differs\"><p><b>{}</b></p><ul>",
            esc(&heading)
        );
        for d in &c.differences {
            let _ = write!(out, "<li>{}</li>", esc(&d.to_string()));
        }
        out.push_str("</ul></div>");
    }
    for m in &c.methods {
        let t = tables(m);
        let _ = write!(
            out,
            "<h3>{} <small>{}, {} examples{}, {} resamples{}, seed {}</small></h3><div class=\"wrap\">",
            esc(&m.method),
            esc(table_title(m.table)),
            m.n_examples,
            esc(&clusters_text(m)),
            m.resamples,
            if m.stratified { " stratified by gold label" } else { "" },
            m.seed
        );
        out.push_str(&table(&t.header, &t.rows));
        out.push_str(&table(&t.pair_header, &t.pairs));
        if !t.labels.is_empty() {
            out.push_str("<p>by gold label (accuracy on each label's rows):</p>");
            out.push_str(&table(&t.label_header, &t.labels));
        }
        let _ = write!(
            out,
            "</div><p>{}</p><ul class=\"families\">",
            esc(&verdict(m))
        );
        for f in &m.holm_families {
            let _ = write!(out, "<li>Holm family: {}</li>", esc(f));
        }
        out.push_str("</ul>");
    }
    let _ = write!(out, "<p><small>{}</small></p>", esc(LEGEND));
    out.push_str(&agreement_html(&c.agreement));
    for n in &c.notes {
        let _ = write!(out, "<p class=\"note\">note: {}</p>", esc(n));
    }
    out
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page with the tables.
pub fn render_html(c: &Comparison) -> String {
    let mut out = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>w2c compare</title><style>body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:normal;vertical-align:top;min-width:3.5em}th{background:#eee}td:nth-child(-n+2){text-align:left}.wrap{overflow-x:auto}.differs{border:2px solid #c60;padding:0 1em;background:#fff4e5}</style></head><body><h1>w2c compare</h1><p>");
    out.push_str(&html_escape(
        &c.sessions
            .iter()
            .map(|(m, s)| format!("{m} = {s}"))
            .collect::<Vec<_>>()
            .join("; "),
    ));
    out.push_str("</p>");
    out.push_str(&html_sections(c));
    out.push_str("</body></html>\n");
    out
}

/// The name under which a comparison is filed in MLflow: the compared
/// sessions' fingerprints (8 digits each), sorted, joined by `-`.
pub fn tag(sessions: &[FoundSession]) -> String {
    let mut fps: Vec<&str> = sessions
        .iter()
        .map(|s| crate::fingerprint::prefix(&s.manifest.fingerprint, 8))
        .collect();
    fps.sort_unstable();
    fps.join("-")
}

/// The comparison as metrics of model `label`'s session: per method its
/// rank, and against each other model the differences (this − other) of
/// accuracy, F1 and ToolHall (as the method's table defines them: the
/// MC table's `accuracy`, `macro_f1_official`,
/// `tool_hallucination_rate_official`, or the judge table's
/// `judge_table_acc`, `_f1`, `_tool_hall`) with their paired intervals,
/// McNemar's p before and after Holm's adjustment, and whether the
/// difference is significant (1) or not (0). Undefined values are left out.
pub fn metrics_for(c: &Comparison, label: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for a in c.agreement.iter().filter(|a| a.model == label) {
        let name = match &a.b {
            Some(b) => format!("agreement.{}.vs.{b}", a.a),
            None => format!("agreement.{}", a.a),
        };
        let name = crate::tracking::flatten::sanitize_key(&name);
        let k = &a.kappa;
        for (suffix, v) in [
            ("kappa", k.kappa),
            ("kappa_lo", k.lo),
            ("kappa_hi", k.hi),
            ("observed", k.observed),
        ] {
            if let Some(v) = v {
                out.push((format!("{name}.{}_{suffix}", a.kind), v));
            }
        }
        out.push((
            format!("{name}.{}_disagreeing", a.kind),
            a.disagreeing.len() as f64,
        ));
    }
    for m in &c.methods {
        let prefix = format!("compare.{}", m.method);
        if let Some(r) = m.models.iter().find(|r| r.model == label) {
            out.push((format!("{prefix}.rank"), r.rank as f64));
        }
        for p in &m.pairs {
            let (other, sign) = if p.a == label {
                (&p.b, 1.0)
            } else if p.b == label {
                (&p.a, -1.0)
            } else {
                continue;
            };
            let pre = format!("{prefix}.vs.{other}");
            for (name, i) in p.differences.iter().take(3) {
                let (lo, hi) = if sign > 0.0 {
                    (i.lo, i.hi)
                } else {
                    (i.hi, i.lo)
                };
                for (suffix, v) in [("", i.value), ("_lo", lo), ("_hi", hi)] {
                    if let Some(v) = v {
                        out.push((format!("{pre}.delta_{name}{suffix}"), sign * v));
                    }
                }
                if let Some(se) = i.se {
                    out.push((format!("{pre}.delta_{name}_se"), se));
                }
            }
            for (name, adj) in &p.adjusted_difference_p {
                if let Some((_, i)) = p.differences.iter().find(|(n, _)| n == name) {
                    if let Some(v) = i.p {
                        out.push((format!("{pre}.delta_{name}_p"), v));
                    }
                }
                out.push((format!("{pre}.delta_{name}_holm_p"), *adj));
            }
            for l in &m.by_label {
                for lp in l.pairs.iter().filter(|x| x.a == p.a && x.b == p.b) {
                    let lpre = format!("{pre}.{}", l.gold);
                    if let Some(v) = lp.difference.value {
                        out.push((format!("{lpre}.delta_accuracy"), sign * v));
                    }
                    out.push((format!("{lpre}.mcnemar_p"), lp.mcnemar_p));
                    out.push((format!("{lpre}.holm_p"), lp.adjusted_p));
                }
            }
            out.push((format!("{pre}.mcnemar_p"), p.mcnemar_p));
            if let Some(d) = p.mde {
                out.push((format!("{pre}.mde_accuracy"), d));
            }
            if let Some(se) = p.accuracy_clustered_se {
                out.push((format!("{pre}.delta_accuracy_clustered_se"), se));
            }
            out.push((format!("{pre}.holm_p"), p.adjusted_p));
            out.push((
                format!("{pre}.significant"),
                f64::from(u8::from(p.significant)),
            ));
        }
    }
    out
}
