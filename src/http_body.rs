//! Reading HTTP reply bodies with a size cap.
//!
//! `Response::text()` buffers whatever a server sends; an endless chunked
//! reply grows memory until the process dies. Every body w2c reads goes
//! through [`read_limited`], which stops after `limit` bytes (or at once when
//! `Content-Length` already says more) and says whether the body was whole.
//! Bodies are decoded as UTF-8 (JSON's encoding), invalid bytes replaced.

/// A body read up to a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The bytes read (at most the limit).
    pub bytes: Vec<u8>,
    /// Whether the whole body was read (false: it was longer than the limit).
    pub complete: bool,
}

impl Limited {
    /// The bytes as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads at most `limit` bytes of a reply body. A body longer than the limit
/// is not read further (the connection is dropped) and comes back with
/// `complete: false`.
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Limited, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Ok(Limited {
            bytes: Vec::new(),
            complete: false,
        });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Limited {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Limited {
        bytes,
        complete: true,
    })
}

/// A size in bytes for messages: `4 MiB`, `1.5 KiB`, `12 bytes`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(4 << 20), "4 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
