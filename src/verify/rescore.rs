//! `verify --deep`: every prediction re-scored from the raw output it came
//! from, with the method's own parser (not a copy), so that a prediction
//! edited in a checkpoint — the raw output left alone — is named. Covers the
//! `mcq` method (its parser reads the reply text the record keeps); other
//! methods say they are not re-scored.

use super::{Check, Collector, Status};
use crate::labels::Prediction;
use crate::methods::mcq::{ChoiceParser, McqRecord, PARSER_VERSION};
use crate::store::records::MethodSettings;
use crate::store::session::FoundSession;
use crate::store::{names as files, NamespaceDir};
use std::path::{Path, PathBuf};

/// How many differing predictions are named (the rest are counted).
const SHOWN: usize = 5;

/// Re-scores every namespace of a session (see the module comment).
pub fn verify_rescore(found: &FoundSession) -> Vec<Check> {
    let mut c = Collector::for_session(found);
    for (ns, settings) in crate::store::session::namespaces(&found.dir) {
        c.namespace = ns.clone();
        let dir = NamespaceDir::new(&found.dir, &ns);
        let (status, detail) = rescore_namespace(&dir, &settings);
        c.push("rescore", status, detail);
    }
    c.checks
}

/// The files holding a namespace's records: its own results and each
/// shard's.
fn result_files(dir: &NamespaceDir) -> Vec<PathBuf> {
    let mut files = vec![dir.results()];
    files.extend(
        dir.shard_dirs()
            .into_iter()
            .map(|(_, d)| d.join(files::RESULTS)),
    );
    files.into_iter().filter(|p| p.exists()).collect()
}

fn rescore_namespace(dir: &NamespaceDir, settings: &MethodSettings) -> (Status, String) {
    if settings.method != crate::methods::mcq::NAME {
        return (
            Status::NotChecked,
            format!(
                "`{}` predictions are not re-scored from raw output (only `mcq`'s are)",
                settings.method
            ),
        );
    }
    let labels: Option<Vec<String>> = settings
        .settings
        .get("option_labels")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let version = settings
        .settings
        .get("parser_version")
        .and_then(serde_json::Value::as_u64);
    let Some(labels) = labels else {
        return (
            Status::Mismatch,
            "method_settings.json has no `option_labels` to parse with".into(),
        );
    };
    if version != Some(u64::from(PARSER_VERSION)) {
        return (
            Status::NotChecked,
            format!(
                "written by parser version {version:?}, this w2c parses with version {PARSER_VERSION}"
            ),
        );
    }
    let parser = match ChoiceParser::new(&labels) {
        Ok(p) => p,
        Err(e) => return (Status::Mismatch, format!("option_labels: {e:#}")),
    };
    let mut checked = 0usize;
    let mut differ = Vec::new();
    for file in result_files(dir) {
        if let Err(e) = each_record(&file, |line, record| {
            checked += 1;
            if let Some(d) = difference(&parser, record) {
                differ.push(format!("{}:{line}: {d}", file.display()));
            }
        }) {
            return (Status::Mismatch, e);
        }
    }
    if differ.is_empty() {
        (
            Status::Ok,
            format!("{checked} predictions re-scored from their raw output agree"),
        )
    } else {
        let n = differ.len();
        let more = n.saturating_sub(SHOWN);
        differ.truncate(SHOWN);
        (
            Status::Mismatch,
            format!(
                "{n} of {checked} predictions differ from what their raw output parses to: {}{}",
                differ.join("; "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    }
}

/// What differs between a record and its raw output parsed again.
fn difference(parser: &ChoiceParser, record: &McqRecord) -> Option<String> {
    let (choice, status) = parser.parse(&record.raw_output);
    let prediction = match choice {
        Some(i) => record
            .option_order
            .get(i)
            .map_or(Prediction::Invalid, |l| Prediction::Label(*l)),
        None => Prediction::Invalid,
    };
    if prediction == record.prediction && status == record.parse_status {
        return None;
    }
    Some(format!(
        "{}: prediction {} ({:?}) recorded, the raw output parses to {} ({status:?})",
        record.key, record.prediction, record.parse_status, prediction
    ))
}

/// Each complete line of a results file as a record (line numbers from 1);
/// a line that is not one is an error naming it. A torn last line is left
/// to the checkpoint checks.
fn each_record(path: &Path, mut f: impl FnMut(usize, &McqRecord)) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: McqRecord = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not an mcq record ({e})", path.display(), i + 1))?;
        f(i + 1, &record);
    }
    Ok(())
}
