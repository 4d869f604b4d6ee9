//! The files of a namespace run in shards: each shard's slice marker, and
//! the merge that makes a finalized sharded namespace hold the same files
//! as an unsharded one (its own `results.jsonl`, `errors.jsonl`,
//! `audit_fallbacks.jsonl`, `run_log.jsonl` and `llm_calls.jsonl`), the
//! shards' files staying beside them as the record of who did what.
//!
//! The merge rewrites each file of the namespace atomically (temp file,
//! fsync, rename) as its own lines followed by the shards' lines it does not
//! hold yet — a result by its key, any other line by its bytes — so a merge
//! interrupted at any point and run again gives the same files.

use super::files::{read_json, write_json_atomic};
use super::layout::{names, NamespaceDir};
use crate::shard::Shard;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// `checkpoints/<ns>/shards/shard-I-of-N/_SLICE_DONE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceDone {
    /// The shard (`I/N`).
    pub shard: String,
    /// The namespace.
    pub namespace: String,
    /// Items in the shard's slice (all with a result somewhere in the namespace).
    pub n_items: usize,
    /// When the slice was found complete.
    pub done_at: String,
    /// The shard's files as they were then ([`DIGESTED_SHARD_FILES`] that
    /// existed): name → sha256 and size. Finalizing and `verify` refuse a
    /// slice whose files changed since. Empty in markers written before
    /// w2c recorded them.
    #[serde(default)]
    pub files: BTreeMap<String, SliceFile>,
}

/// A digested file of a done slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceFile {
    /// sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Records that every item of `shard`'s slice of the namespace has a result,
/// with the digests of the shard's files. A slice already marked keeps its
/// marker, once its files are checked against it (see [`check_slice`]): a
/// pass over a done slice never blesses an edit.
pub fn mark_slice_done(ns: &NamespaceDir, shard: Shard, n_items: usize) -> Result<()> {
    if let Some(marker) = slice_done(ns, shard) {
        if !marker.files.is_empty() {
            return check_slice(ns, shard, &marker).map_err(anyhow::Error::msg);
        }
    }
    write_json_atomic(
        &ns.shard_dir(shard).join(names::SLICE_DONE),
        &SliceDone {
            shard: shard.to_string(),
            namespace: ns.name.clone(),
            n_items,
            done_at: super::session::now_utc(),
            files: slice_files(ns, shard)?,
        },
    )
}

/// The digests of a shard's [`DIGESTED_SHARD_FILES`] that exist.
fn slice_files(ns: &NamespaceDir, shard: Shard) -> Result<BTreeMap<String, SliceFile>> {
    let dir = ns.shard_dir(shard);
    let mut out = BTreeMap::new();
    for name in DIGESTED_SHARD_FILES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let (sha256, size) = super::files::file_digest(&path)?;
        out.insert(name.to_string(), SliceFile { sha256, size });
    }
    Ok(out)
}

/// Whether a done slice's files are as its marker recorded them; else what
/// changed, naming each file and the marker.
pub fn check_slice(ns: &NamespaceDir, shard: Shard, marker: &SliceDone) -> Result<(), String> {
    if marker.files.is_empty() {
        return Ok(());
    }
    let dir = ns.shard_dir(shard);
    let now = slice_files(ns, shard).map_err(|e| format!("{e:#}"))?;
    let mut changed = Vec::new();
    for name in DIGESTED_SHARD_FILES {
        let path = dir.join(name);
        match (marker.files.get(name), now.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => changed.push(format!(
                "{}: sha256 {} ({} bytes) now, {} ({} bytes) when the slice was marked done",
                path.display(),
                b.sha256,
                b.size,
                a.sha256,
                a.size
            )),
            (Some(_), None) => changed.push(format!(
                "{}: removed after the slice was marked done",
                path.display()
            )),
            (None, Some(_)) => changed.push(format!(
                "{}: created after the slice was marked done",
                path.display()
            )),
            (None, None) => {}
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "shard {shard} of `{}` changed after its slice was marked done ({}): {}",
            ns.name,
            dir.join(names::SLICE_DONE).display(),
            changed.join("; ")
        ))
    }
}

/// Checks every done slice of the namespace (see [`check_slice`]).
pub fn check_slices(ns: &NamespaceDir) -> Result<(), String> {
    let problems: Vec<String> = ns
        .shard_dirs()
        .into_iter()
        .filter_map(|(shard, _)| {
            let marker = slice_done(ns, shard)?;
            check_slice(ns, shard, &marker).err()
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The shards of `count` whose slice of the namespace is not marked done.
pub fn slices_not_done(ns: &NamespaceDir, count: usize) -> Vec<Shard> {
    (0..count)
        .filter_map(|index| Shard::new(index, count).ok())
        .filter(|&s| !ns.shard_dir(s).join(names::SLICE_DONE).is_file())
        .collect()
}

/// The files a shard keeps that `_DONE.json` digests (its run log and probe
/// are not: a later pass may add to them).
pub const DIGESTED_SHARD_FILES: [&str; 4] =
    [names::RESULTS, names::ERRORS, names::AUDIT, names::CALLS];

/// What [`merge`] added to the namespace's own files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Shard directories read.
    pub shards: usize,
    /// Results added.
    pub results: usize,
    /// Calls added to the call log.
    pub calls: usize,
}

/// Merges every shard's files into the namespace's own (see the module
/// comment). Call under the finalize lock, with every item done.
pub fn merge(ns: &NamespaceDir) -> Result<Merged> {
    let shards = ns.shard_dirs();
    let mut merged = Merged {
        shards: shards.len(),
        ..Merged::default()
    };
    let sources = |name: &str| -> Vec<std::path::PathBuf> {
        shards.iter().map(|(_, d)| d.join(name)).collect()
    };
    merged.results = merge_file(&ns.results(), &sources(names::RESULTS), Identity::Key)?;
    merge_file(&ns.errors(), &sources(names::ERRORS), Identity::Bytes)?;
    merge_file(&ns.audit(), &sources(names::AUDIT), Identity::Bytes)?;
    merge_file(&ns.run_log(), &sources(names::RUN_LOG), Identity::Bytes)?;
    merged.calls = merge_file(&ns.calls(), &sources(names::CALLS), Identity::Bytes)?;
    Ok(merged)
}

/// How a merge tells that a line is already in the target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// The record's `key` (one result per item).
    Key,
    /// The line's sha256.
    Bytes,
}

fn identity(line: &[u8], how: Identity, path: &Path) -> Result<Vec<u8>> {
    use sha2::Digest;
    match how {
        Identity::Bytes => Ok(sha2::Sha256::digest(line).to_vec()),
        Identity::Key => {
            #[derive(Deserialize)]
            struct KeyOnly {
                key: String,
            }
            let k: KeyOnly = serde_json::from_slice(line)
                .with_context(|| format!("{}: a line without a `key`", path.display()))?;
            Ok(k.key.into_bytes())
        }
    }
}

/// Complete lines of a file (a torn last line — no newline — is left out);
/// a missing file has none.
fn each_line(path: &Path, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            f(&line)?;
        }
    }
}

/// Rewrites `target` as its lines then the lines of `sources` it lacks;
/// returns the lines added.
fn merge_file(target: &Path, sources: &[std::path::PathBuf], how: Identity) -> Result<usize> {
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut added = 0;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        let mut write = |line: &[u8], path: &Path, counts: bool| -> Result<()> {
            let id = identity(&line[..line.len() - 1], how, path)?;
            if seen.insert(id) {
                out.write_all(line)
                    .with_context(|| format!("cannot write the merge of {}", target.display()))?;
                added += usize::from(counts);
            }
            Ok(())
        };
        each_line(target, |l| write(l, target, false))?;
        for source in sources {
            each_line(source, |l| write(l, source, true))?;
        }
        out.flush()
            .with_context(|| format!("cannot write the merge of {}", target.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write the merge of {}", target.display()))?;
    tmp.persist(target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename the merge onto {}", target.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(added)
}

/// A shard's slice marker, if it has one.
pub fn slice_done(ns: &NamespaceDir, shard: Shard) -> Option<SliceDone> {
    read_json(&ns.shard_dir(shard).join(names::SLICE_DONE)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn merge_adds_each_shard_line_once_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ns = NamespaceDir::new(dir.path(), "mcq");
        write(&ns.results(), "{\"key\":\"a\",\"v\":1}\n");
        let s0 = ns.shard_dir(Shard::new(0, 2).unwrap());
        let s1 = ns.shard_dir(Shard::new(1, 2).unwrap());
        // `a` again (the namespace's own record wins), and a torn tail.
        write(
            &s0.join(names::RESULTS),
            "{\"key\":\"a\",\"v\":2}\n{\"key\":\"c\"}\n",
        );
        write(&s1.join(names::RESULTS), "{\"key\":\"b\"}\n{\"key\":\"d\"");
        write(&s1.join(names::CALLS), "{\"call\":1}\n{\"call\":2}\n");
        let m = merge(&ns).unwrap();
        assert_eq!((m.shards, m.results, m.calls), (2, 2, 2));
        let results = std::fs::read_to_string(ns.results()).unwrap();
        assert_eq!(
            results,
            "{\"key\":\"a\",\"v\":1}\n{\"key\":\"c\"}\n{\"key\":\"b\"}\n"
        );
        // Interrupted and run again: nothing is added twice.
        let again = merge(&ns).unwrap();
        assert_eq!((again.results, again.calls), (0, 0));
        assert_eq!(std::fs::read_to_string(ns.results()).unwrap(), results);
        assert_eq!(
            std::fs::read_to_string(ns.calls()).unwrap(),
            "{\"call\":1}\n{\"call\":2}\n"
        );
    }

    #[test]
    fn a_slice_edited_after_its_marker_is_named_and_never_remarked() {
        let dir = tempfile::tempdir().unwrap();
        let ns = NamespaceDir::new(dir.path(), "mcq");
        let shard = Shard::new(0, 2).unwrap();
        let results = ns.shard_dir(shard).join(names::RESULTS);
        write(&results, "{\"key\":\"a\",\"prediction\":\"direct\"}\n");
        mark_slice_done(&ns, shard, 1).unwrap();
        assert_eq!(check_slices(&ns), Ok(()));
        write(&results, "{\"key\":\"a\",\"prediction\":\"cannot\"}\n");
        let e = check_slices(&ns).unwrap_err();
        assert!(e.contains("shard 0/2 of `mcq` changed"), "{e}");
        assert!(e.contains(names::RESULTS), "{e}");
        // Passing over the done slice again refuses rather than re-marking.
        assert!(mark_slice_done(&ns, shard, 1).is_err());
        assert!(check_slices(&ns).is_err());
    }

    #[test]
    fn slice_markers_say_which_shards_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let ns = NamespaceDir::new(dir.path(), "mcq");
        mark_slice_done(&ns, Shard::new(1, 3).unwrap(), 5).unwrap();
        let left: Vec<String> = slices_not_done(&ns, 3)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(left, ["0/3", "2/3"]);
        assert_eq!(
            slice_done(&ns, Shard::new(1, 3).unwrap()).unwrap().n_items,
            5
        );
    }
}
