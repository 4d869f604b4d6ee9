//! `checkpoints/<ns>/.steps.jsonl`: the finished steps of work items that do
//! not have a record yet.
//!
//! An item that makes several calls (`mcq_logprob` scores four choices, one
//! call each) saves each finished call here as it completes, so a `kill -9`
//! loses only the call in flight, not the item's finished ones (nor those of
//! an item that failed after its retries: a resume reuses them too). A line
//! is `{"key": <item key>, "step": <what the method saved>}`. The file only
//! matters while items have no record: on open, the steps of items that have
//! one are dropped and the rest rewritten; once every item has a record the
//! file is removed. Lines are written like every checkpoint line (one
//! `write` each; a torn last line is ignored).

use super::files::write_bytes_atomic;
use super::jsonl::{load_jsonl, JsonlWriter};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of `.steps.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StepLine {
    key: String,
    step: Value,
}

/// The steps file of one namespace, open for appending.
pub struct StepLog {
    path: PathBuf,
    writer: Mutex<Option<JsonlWriter>>,
}

impl StepLog {
    /// Opens `path`: returns the log and the stored steps of the items in
    /// `pending` (in the order they were saved). Steps of other items are
    /// dropped from the file; an empty result removes it.
    pub fn open(
        path: &Path,
        pending: &HashSet<&str>,
    ) -> Result<(StepLog, HashMap<String, Vec<Value>>)> {
        let (lines, report) = load_jsonl::<StepLine>(path)?;
        let mut kept: HashMap<String, Vec<Value>> = HashMap::new();
        for line in &lines {
            if pending.contains(line.key.as_str()) {
                kept.entry(line.key.clone())
                    .or_default()
                    .push(line.step.clone());
            }
        }
        let n_kept: usize = kept.values().map(Vec::len).sum();
        if n_kept == 0 {
            remove(path)?;
        } else if n_kept < lines.len() || report.torn_tail_bytes > 0 {
            let mut bytes = Vec::new();
            let mut keys: Vec<&String> = kept.keys().collect();
            keys.sort();
            for key in keys {
                for step in &kept[key] {
                    serde_json::to_writer(
                        &mut bytes,
                        &StepLine {
                            key: key.clone(),
                            step: step.clone(),
                        },
                    )?;
                    bytes.push(b'\n');
                }
            }
            write_bytes_atomic(path, &bytes)?;
        }
        Ok((
            StepLog {
                path: path.to_path_buf(),
                writer: Mutex::new(None),
            },
            kept,
        ))
    }

    /// Saves a finished step of item `key`.
    pub fn save(&self, key: &str, step: Value) -> Result<()> {
        self.append(&StepLine {
            key: key.to_string(),
            step,
        })
    }

    fn append(&self, line: &StepLine) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.is_none() {
            *writer = Some(JsonlWriter::open(&self.path)?.0);
        }
        match writer.as_mut() {
            Some(w) => w.append(line),
            None => Ok(()),
        }
    }

    /// Makes the steps written so far durable.
    pub fn sync(&self) -> Result<()> {
        match self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(w) => w.sync(),
            None => Ok(()),
        }
    }

    /// Removes the file (every item has a record).
    pub fn remove(&self) -> Result<()> {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
        remove(&self.path)
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_of_pending_items_survive_and_the_rest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".steps.jsonl");
        let none = HashSet::new();
        let (log, kept) = StepLog::open(&p, &none).unwrap();
        assert!(kept.is_empty() && !p.exists());
        log.save("a", json!({"choice": 0})).unwrap();
        log.save("b", json!({"choice": 0})).unwrap();
        log.save("a", json!({"choice": 1})).unwrap();
        log.save("c", json!({"choice": 0})).unwrap();
        drop(log);
        // A torn line left by a crash.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"key\":\"b\",\"st");
        std::fs::write(&p, bytes).unwrap();
        let pending: HashSet<&str> = ["a", "d"].into_iter().collect();
        let (log, kept) = StepLog::open(&p, &pending).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["a"], vec![json!({"choice": 0}), json!({"choice": 1})]);
        // Compacted: only a's steps remain on disk.
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        log.remove().unwrap();
        assert!(!p.exists());
    }
}
