//! A real llama-cpp-python OpenAI-compatible server serving the shared tiny
//! GGUF model, and the in-process reference computation beside it (both in
//! the venv `.ci/run` builds).

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv python with `llama_cpp` (`W2C_LLAMA_PYTHON`, else the CI cache
/// path). Panics with one line saying how to get it when it is missing.
pub fn llama_python() -> PathBuf {
    super::venv_python(
        "W2C_LLAMA_PYTHON",
        "llama-venv",
        "llama_cpp.server",
        "llama-cpp-python",
        ".ci/llama_venv.sh",
    )
}

/// The shared test model.
pub fn tiny_model() -> PathBuf {
    let p = super::shared_dir().join("models/tiny-llama-local-f32.gguf");
    assert!(
        p.exists(),
        "the shared model is missing at {} (set W2C_SHARED_DIR)",
        p.display()
    );
    p
}

use super::support;

/// A running `python -m llama_cpp.server` (through the process-group guard,
/// so it never outlives the test process, even on panic).
pub struct LlamaServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _log: tempfile::NamedTempFile,
}

impl LlamaServer {
    /// Starts the server on a free port with context window `n_ctx` and
    /// waits until `GET /v1/models` answers.
    pub fn start(n_ctx: u32) -> LlamaServer {
        Self::start_with(n_ctx, &[])
    }

    /// [`LlamaServer::start`] with further server arguments (e.g.
    /// `--chat_format chatml-function-calling`).
    pub fn start_with(n_ctx: u32, extra: &[&str]) -> LlamaServer {
        let python = llama_python();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new("python3")
            .arg(support("mlflow_guard.py"))
            .arg(&python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(tiny_model())
            .args(["--model_alias", "tiny-llama-local", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--n_ctx", &n_ctx.to_string()])
            .args(["--n_threads", "2", "--n_threads_batch", "2"])
            .args(["--logits_all", "true", "--use_mlock", "false"])
            .args(["--verbose", "false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                log.reopen()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start the llama-cpp-python server");
        let mut s = LlamaServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _log: log,
        };
        let start = Instant::now();
        loop {
            let ok = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(format!("{}/v1/models", s.url))
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if ok {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "llama-cpp-python server exited ({status}): {}",
                    std::fs::read_to_string(s._log.path()).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "llama-cpp-python server not ready after 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One choice to recompute: an id, the prompt as sent, where its continuation starts.
pub struct RefRequest {
    pub id: String,
    pub prompt: String,
    pub context_chars: usize,
}

/// Runs `tests/support/llama_reference.py` over the requests with a
/// 2,048-token context; returns one JSON object per request (`id`,
/// `logprob`, `n_tokens`, `prompt_tokens`, `last_logprob`).
pub fn reference(requests: &[RefRequest]) -> Vec<Value> {
    reference_with_context(requests, 2048)
}

/// [`reference`] with a context window of `n_ctx` tokens.
pub fn reference_with_context(requests: &[RefRequest], n_ctx: u32) -> Vec<Value> {
    let mut child = Command::new(llama_python())
        .arg(support("llama_reference.py"))
        .arg(tiny_model())
        .arg(n_ctx.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start llama_reference.py");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for r in requests {
            let line = serde_json::json!({"id": r.id, "prompt": r.prompt, "context_chars": r.context_chars});
            writeln!(stdin, "{line}").expect("write request");
        }
    }
    let out = child.wait_with_output().expect("llama_reference.py");
    assert!(
        out.status.success(),
        "llama_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect()
}
