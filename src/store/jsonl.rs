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

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
    let mut records = Vec::new();
    let report = read_jsonl(path, |r: T| records.push(r))?;
    Ok((records, report))
}

/// Reads a JSONL file record by record, handing each to `each`, with the
/// rules of [`load_jsonl`] (missing file = no records; a torn last line is
/// reported, not handed over; any other malformed line is an error, after
/// which `each` has seen the records before it). Holds one line at a time.
pub fn read_jsonl<T, F>(path: &Path, mut each: F) -> Result<LoadReport>
where
    T: DeserializeOwned,
    F: FnMut(T),
{
    read_jsonl_lines(path, |line| {
        each(serde_json::from_slice::<T>(line)?);
        Ok(())
    })
}

/// [`read_jsonl`] for readers that parse each line themselves (e.g. into a
/// type borrowing from it): `parse` gets every non-blank complete line
/// without its newline and says whether it was a well-formed record.
pub fn read_jsonl_lines<F>(path: &Path, mut parse: F) -> Result<LoadReport>
where
    F: FnMut(&[u8]) -> Result<(), serde_json::Error>,
{
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadReport::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut report = LoadReport::default();
    let mut line = Vec::new();
    let mut lineno = 0;
    // A complete line that did not parse: a crash artifact only if it
    // turns out to be the last line of the file.
    let mut unparsed: Option<(usize, usize, serde_json::Error)> = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        if let Some((at, _, e)) = unparsed.take() {
            return Err(malformed(path, at, e));
        }
        if line.last() != Some(&b'\n') {
            report.torn_tail_bytes = line.len();
            break;
        }
        lineno += 1;
        let body = &line[..line.len() - 1];
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse(body) {
            Ok(()) => report.lines += 1,
            Err(e) => unparsed = Some((lineno, line.len(), e)),
        }
    }
    match unparsed {
        // A complete but unparseable final line can still be a crash
        // artifact (e.g. zero-filled blocks after power loss).
        Some((_, len, _)) if report.torn_tail_bytes == 0 => report.torn_tail_bytes = len,
        Some((at, _, e)) => return Err(malformed(path, at, e)),
        None => {}
    }
    Ok(report)
}

fn malformed(path: &Path, lineno: usize, e: serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{}:{lineno}: malformed checkpoint line ({e}); this is not a crash artifact, inspect or remove the line",
        path.display()
    )
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

    #[test]
    fn a_bad_line_is_torn_only_when_nothing_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        for (text, torn) in [
            ("{\"a\":1}\n{oops\n", Some(6)),
            ("{\"a\":1}\n{oops\n\n", None),
            ("{\"a\":1}\n{oops\n{\"a\"", None),
            ("{\"a\":1}\n\n{\"a\"", Some(4)),
        ] {
            std::fs::write(&p, text).unwrap();
            let mut seen = 0;
            let read = read_jsonl(&p, |_: Value| seen += 1);
            match torn {
                Some(bytes) => {
                    let report = read.unwrap();
                    assert_eq!(
                        (report.lines, report.torn_tail_bytes),
                        (1, bytes),
                        "{text:?}"
                    );
                    assert_eq!(seen, 1);
                }
                None => {
                    let err = read.unwrap_err().to_string();
                    assert!(err.contains("c.jsonl:2: malformed"), "{text:?}: {err}");
                }
            }
        }
    }
}
