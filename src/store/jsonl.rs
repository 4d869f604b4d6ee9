//! Crash-safe append-only JSONL files (checkpoints, call logs, audit trails).
//!
//! Durability policy:
//! - every record is one line, written with a single `write` call straight to
//!   the file (no user-space buffer), so a `kill -9` loses at most the records
//!   not yet handed to the kernel — the requests in flight;
//! - `fsync` runs every [`SYNC_EVERY_LINES`] lines or [`SYNC_EVERY`] of wall
//!   time, whichever comes first, and always in [`JsonlWriter::sync`] before a
//!   `_DONE.json` marker is written (so power loss can lose at most one batch);
//! - a torn last line (no trailing newline or unparseable) left by a crash is
//!   reported and ignored on load, and cut off before the next append so the
//!   file stays well formed. A malformed line *before* the last one is not a
//!   crash artifact and is a hard error naming `file:line`.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lines between two fsyncs.
pub const SYNC_EVERY_LINES: usize = 64;
/// Longest time between two fsyncs while lines are being written.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What loading a JSONL file found besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Number of well-formed records.
    pub lines: usize,
    /// Bytes of a torn last line that was ignored (0 when none).
    pub torn_tail_bytes: usize,
}

/// Loads every record of a JSONL file (missing file = no records). A torn last
/// line is ignored and reported; any other malformed line is an error.
pub fn load_jsonl<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, LoadReport)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), LoadReport::default()))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let complete_len = complete_prefix_len(&bytes);
    let mut report = LoadReport {
        lines: 0,
        torn_tail_bytes: bytes.len() - complete_len,
    };
    let mut records = Vec::new();
    let body = &bytes[..complete_len];
    let line_count = body.split(|&b| b == b'\n').count().saturating_sub(1);
    for (i, line) in body.split(|&b| b == b'\n').enumerate().take(line_count) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(line) {
            Ok(r) => {
                records.push(r);
                report.lines += 1;
            }
            // A complete but unparseable final line can still be a crash
            // artifact (e.g. zero-filled blocks after power loss).
            Err(_) if i + 1 == line_count && report.torn_tail_bytes == 0 => {
                report.torn_tail_bytes = line.len() + 1;
            }
            Err(e) => bail!(
                "{}:{}: malformed checkpoint line ({e}); this is not a crash artifact, inspect or remove the line",
                path.display(),
                i + 1
            ),
        }
    }
    Ok((records, report))
}

/// Length of the longest prefix that ends with a newline.
fn complete_prefix_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0)
}

/// Append-only JSONL writer with the durability policy of this module.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
    unsynced: usize,
    last_sync: Instant,
}

impl JsonlWriter {
    /// Opens `path` for appending, creating it, and cuts off a torn last line
    /// (one without a trailing newline, or an unparseable final line).
    /// Returns the writer and the number of bytes cut.
    pub fn open(path: &Path) -> Result<(JsonlWriter, usize)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut keep = complete_prefix_len(&bytes);
        // An unparseable final complete line is treated as torn too.
        if keep > 0 {
            let start = bytes[..keep - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            let last = &bytes[start..keep - 1];
            if !last.iter().all(u8::is_ascii_whitespace)
                && serde_json::from_slice::<serde_json::Value>(last).is_err()
            {
                keep = start;
            }
        }
        let cut = bytes.len() - keep;
        if cut > 0 {
            file.set_len(keep as u64)
                .with_context(|| format!("cannot truncate torn tail of {}", path.display()))?;
            file.seek(SeekFrom::End(0))?;
            file.sync_data()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        Ok((
            JsonlWriter {
                path: path.to_path_buf(),
                file,
                unsynced: 0,
                last_sync: Instant::now(),
            },
            cut,
        ))
    }

    /// Appends one record as one line, with a single write.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record)
            .with_context(|| format!("cannot serialise a record for {}", self.path.display()))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY_LINES || self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Forces everything written so far to stable storage.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced > 0 {
            self.file
                .sync_data()
                .with_context(|| format!("cannot sync {}", self.path.display()))?;
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Drop for JsonlWriter {
    fn drop(&mut self) {
        // Best effort: errors on this path have nowhere to go.
        let _ = self.sync();
    }
}

/// Number of complete lines (newlines) in a file, streamed (missing file =
/// 0).
pub fn count_lines(path: &Path) -> Result<usize> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn torn_tail_is_ignored_on_load_and_cut_before_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let (recs, rep) = load_jsonl::<Value>(&p).unwrap();
        assert_eq!(recs, vec![json!({"a":1}), json!({"a":2})]);
        assert_eq!(rep.torn_tail_bytes, 5);
        let (mut w, cut) = JsonlWriter::open(&p).unwrap();
        assert_eq!(cut, 5);
        w.append(&json!({"a": 3})).unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
    }

    #[test]
    fn garbage_final_line_with_newline_is_torn_but_middle_garbage_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"a\":1}\n\0\0\0\n").unwrap();
        let (recs, rep) = load_jsonl::<Value>(&p).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(rep.torn_tail_bytes, 4);
        let (_, cut) = JsonlWriter::open(&p).unwrap();
        assert_eq!(cut, 4);
        std::fs::write(&p, "{\"a\":1}\n{oops\n{\"a\":2}\n").unwrap();
        let err = load_jsonl::<Value>(&p).unwrap_err().to_string();
        assert!(err.contains("c.jsonl:2: malformed"), "{err}");
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (recs, rep) = load_jsonl::<Value>(&dir.path().join("none.jsonl")).unwrap();
        assert!(recs.is_empty());
        assert_eq!(rep, LoadReport::default());
    }
}
