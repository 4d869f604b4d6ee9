//! Whole-file primitives of the store: atomic writes (temp file, fsync,
//! rename, directory fsync), JSON reads that name the file, and digests.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `value` as pretty JSON to `path` atomically: a temp file in the same
/// directory, fsynced, then renamed over the target, then the directory fsynced.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .with_context(|| format!("cannot serialise {}", path.display()))?;
    bytes.push(b'\n');
    write_bytes_atomic(path, &bytes)
}

/// Writes bytes to `path` atomically (temp file + fsync + rename), creating
/// its directory: for the store's own files.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    replace_in(dir, path, bytes)
}

/// Writes a file the user named (`--out`, `--disagreements`) atomically,
/// creating nothing but the file: its directory must exist (a mistyped
/// path is an error naming it, not a tree of new directories).
pub fn write_user_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => anyhow::bail!("cannot write {}: it is not a file path", path.display()),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: directory {} does not exist (w2c creates the file, not its directories)",
            path.display(),
            dir.display()
        );
    }
    replace_in(dir, path, bytes)
}

/// Writes `bytes` to a temp file in `dir`, fsyncs it, renames it onto
/// `path` and fsyncs `dir`.
fn replace_in(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write temp file for {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename temp file onto {}", path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and parses a JSON file, naming the file in errors.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// Opens a regular file for reading; anything else (a FIFO, whose open or
/// read would wait for a writer forever, a directory, a socket, a device)
/// is an error naming the path and what it is. The file is opened without
/// blocking, then checked, so a FIFO is refused at once.
pub fn open_regular(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let kind = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        anyhow::bail!(
            "{} is {}, not a regular file",
            path.display(),
            file_kind(&kind)
        );
    }
    #[cfg(unix)]
    {
        // Reads of a regular file never block; restore the usual flags anyway.
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor this function owns; no memory is shared.
        unsafe {
            let fd = file.as_raw_fd();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}

/// What a file is, for messages (`a FIFO (named pipe)`, `a directory`...).
pub(crate) fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else if kind.is_symlink() {
        "a symbolic link to nothing"
    } else {
        "not a regular file"
    }
}

/// The whole content of a regular file ([`open_regular`]).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

/// sha256 and size of a regular file ([`open_regular`]), read in 1 MiB blocks.
pub fn file_digest(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = open_regular(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; DIGEST_BLOCK];
    let mut bytes = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Read size of [`file_digest`]: large enough that system calls cost
/// nothing next to the hashing, small enough to stay in the cache.
const DIGEST_BLOCK: usize = 1 << 20;

#[cfg(test)]
mod tests {

    #[test]
    fn a_user_file_is_written_only_in_a_directory_that_exists() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ok = tmp.path().join("report.html");
        write_user_file(&ok, b"x").expect("written");
        assert_eq!(std::fs::read(&ok).expect("read"), b"x");
        let missing = tmp.path().join("no/such/dir/report.html");
        let err = format!("{:#}", write_user_file(&missing, b"x").unwrap_err());
        assert!(err.contains("does not exist"), "{err}");
        assert!(!tmp.path().join("no").exists(), "a directory was created");
        let err = format!("{:#}", write_user_file(tmp.path(), b"x").unwrap_err());
        assert!(err.contains("cannot"), "{err}");
    }

    use super::*;
    use serde_json::{json, Value};

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("data.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = format!("{:#}", open_regular(&fifo).unwrap_err());
        assert!(err.contains("FIFO") && err.contains("data.jsonl"), "{err}");
        assert!(file_digest(&fifo).is_err());
        let err = format!("{:#}", read_regular(dir.path()).unwrap_err());
        assert!(err.contains("a directory"), "{err}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(read_regular(&file).unwrap(), b"x");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_json_atomic(&p, &json!({"v": 1})).unwrap();
        write_json_atomic(&p, &json!({"v": 2})).unwrap();
        let v: Value = read_json(&p).unwrap();
        assert_eq!(v, json!({"v": 2}));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
