//! A hostile HTTP endpoint standing where a tracking server should be: it
//! accepts connections and then never answers, or answers every request
//! with a body that never ends or is huge, or with an error status. It implements nothing of MLflow
//! (the real server is in `mlflow.rs`); it injects the faults a real
//! network or a broken proxy can produce.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How the endpoint misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Accept, read the request, never reply.
    BlackHole,
    /// `200 application/json`, a chunked body that never ends.
    Endless,
    /// `200 application/json` with a body of this many bytes (not JSON).
    Huge(u64),
    /// This error status (e.g. 500) to every request, with `Retry-After`
    /// of this many seconds: a broken server behind a live proxy.
    Status(u16, u32),
}

/// A running hostile endpoint (stopped on drop).
pub struct HostileHttp {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl HostileHttp {
    /// Starts the endpoint on a free port.
    pub fn start(mode: Mode) -> HostileHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (stop3, requests3) = (stop2.clone(), requests2.clone());
                std::thread::spawn(move || serve(conn, mode, &stop3, &requests3));
            }
        });
        HostileHttp {
            url,
            stop,
            requests,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for HostileHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// Reads one request head (and ignores its body).
fn read_head(conn: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    true
}

fn serve(mut conn: TcpStream, mode: Mode, stop: &AtomicBool, requests: &AtomicU64) {
    while read_head(&mut conn) {
        requests.fetch_add(1, Ordering::Relaxed);
        match mode {
            Mode::BlackHole => {
                // Hold the connection open, answering nothing.
                let mut sink = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    match conn.read(&mut sink) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                return;
            }
            Mode::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "[".repeat(65536));
                while !stop.load(Ordering::Relaxed) {
                    if conn.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
                return;
            }
            Mode::Status(code, retry_after) => {
                let body = "{\"error_code\": \"INTERNAL_ERROR\", \"message\": \"broken\"}";
                let reply = format!(
                    "HTTP/1.1 {code} Error\r\nContent-Type: application/json\r\nRetry-After: {retry_after}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                // One reply per connection: the request's body is never read.
                let _ = conn.write_all(reply.as_bytes());
                return;
            }
            Mode::Huge(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let block = vec![b'x'; 65536];
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len() as u64) as usize;
                    if conn.write_all(&block[..k]).is_err() {
                        return;
                    }
                    left -= k as u64;
                }
            }
        }
    }
}
