//! `w2c mock-server`: an OpenAI-compatible HTTP server for testing configs,
//! CI and benchmarks without spending tokens.
//!
//! It answers `POST /v1/chat/completions` with the same deterministic replies
//! as the built-in `mock` provider (so a run against it scores exactly like a
//! run on `kind = "mock"`), and `POST /v1/completions` with `echo` and
//! `logprobs` over a simple deterministic tokenizer, including `text_offset`.
//! Knobs inject latency and faults: a share of 429 (with `Retry-After`), 5xx,
//! hung requests, truncated and malformed bodies. Hostile modes keep the
//! client's defences tested end to end: huge or endless bodies, the API key
//! echoed back, absurd headers, and JSON of the wrong types. `GET /stats`
//! counts requests and faults; `POST /stats/reset` zeroes the counters.
//! `--record FILE` writes down every request body, so that what two clients
//! sent (w2c and NVIDIA's scripts) can be compared; `--judge-not-json`
//! makes the judge's replies readable by NVIDIA's scripts but for a share of
//! first judge calls, which provokes their repair turn.

use crate::fingerprint::sha256_hex;
use crate::llm::{llama_echo, mock, ChatRequest, Message};
use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Server knobs.
#[derive(Debug, Clone, clap::Args)]
pub struct MockServerOptions {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the chosen address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Mean added latency per request, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform jitter around the latency (± this many ms).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Share of requests answered 429 with `Retry-After`.
    #[arg(long, default_value_t = 0.0)]
    pub rate_429: f64,
    /// `Retry-After` value sent with 429s, seconds (fractions go to `retry-after-ms`).
    #[arg(long, default_value_t = 0.05)]
    pub retry_after_secs: f64,
    /// Share of requests answered with a 5xx status.
    #[arg(long, default_value_t = 0.0)]
    pub rate_5xx: f64,
    /// Share of requests that hang for `--hang-secs` before answering.
    #[arg(long, default_value_t = 0.0)]
    pub rate_hang: f64,
    /// How long a hung request hangs, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub hang_secs: f64,
    /// Share of 200 replies whose JSON body is cut in half.
    #[arg(long, default_value_t = 0.0)]
    pub rate_truncated: f64,
    /// Share of 200 replies whose body is not JSON.
    #[arg(long, default_value_t = 0.0)]
    pub rate_malformed: f64,
    /// Share of 200 replies with an empty body.
    #[arg(long, default_value_t = 0.0)]
    pub rate_empty: f64,
    /// Ignore `echo` on /completions, like endpoints that cannot score prompts.
    #[arg(long)]
    pub no_echo: bool,
    /// How /completions echoes a prompt: `simple` (whole-word tokens) or
    /// `llama-cpp` (llama-cpp-python's rules: multi-byte characters as byte
    /// pieces rendered "", ChatML specials rendered "", nothing generated
    /// after a prompt ending in "." or "。").
    #[arg(long, value_enum, default_value_t = EchoStyle::Simple)]
    pub echo_style: EchoStyle,
    /// Context window in tokens: a prompt of this many tokens or more (BOS
    /// counted; a chat request's prompt is its messages' text) gets HTTP 400
    /// `context_length_exceeded`, as llama-cpp-python does.
    #[arg(long)]
    pub context_window: Option<usize>,
    /// Require `Authorization: Bearer <key>`, read from this environment variable.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Hostile: pad every successful reply's text to this many bytes.
    #[arg(long)]
    pub huge_body_bytes: Option<u64>,
    /// Hostile: successful replies stream a body that never ends.
    #[arg(long)]
    pub endless_body: bool,
    /// Hostile: echo the request's `Authorization` and `x-*` header values
    /// in every reply (text, `system_fingerprint`, error messages, a header).
    #[arg(long)]
    pub echo_key: bool,
    /// How `--echo-key` spells the echo (comma-separated, or `all`): as it
    /// is, JSON `\uXXXX`-escaped in the raw body, percent-encoded, as HTML
    /// character references, base64 (also of `w2c:<value>`, as in Basic
    /// auth), URL-safe base64, hex, each value as raw `\xHH` escapes (and
    /// `"\\xHH"` in `system_fingerprint`), or each value minus its last 3
    /// characters.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain",
        requires = "echo_key"
    )]
    pub echo_key_as: Vec<EchoEncoding>,
    /// Hostile: every reply carries `Retry-After: 1e300`, `retry-after-ms:
    /// 1e30` and an 8 KiB header.
    #[arg(long)]
    pub absurd_headers: bool,
    /// Hostile: `usage` and metadata of the wrong JSON types or absurd
    /// values (u64::MAX, negative, fractional, strings), cycling per request;
    /// /completions replies also get a `text` or `logprobs` of the wrong type.
    #[arg(long)]
    pub wrong_types: bool,
    /// Hostile: /completions echoes the prompt with logprobs but reports
    /// `completion_tokens` 1000000, shifts every `text_offset` by 5, or
    /// gives every token the log-probability +1e308.
    #[arg(long, value_enum)]
    pub absurd_echo: Option<AbsurdEcho>,
    /// Hostile: answer every request (on any path, `/stats` included) with
    /// a reply whose HTTP framing is broken: `Content-Length: -1`, 1 MiB of
    /// headers, 1000 headers, or a status line that is not HTTP.
    #[arg(long, value_enum)]
    pub bad_http: Option<BadHttp>,
    /// Seed of the replies and of the fault draws.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Append every request body to this file, one JSON line per request
    /// (`{"endpoint", "body"}`; the body as JSON, or as a string when it is
    /// not JSON), written before the reply: what clients sent, to compare.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Judge replies NVIDIA's judge scripts can read (JSON objects with a
    /// `classification`, about one in twenty in capitals), except this share
    /// of first judge calls, answered in prose that is not JSON (which
    /// provokes the scripts' repair turn; a repair call always gets JSON).
    /// Without it the judge answers as `--judge-replies` says.
    #[arg(long, value_name = "SHARE")]
    pub judge_not_json: Option<f64>,
    /// How the judge answers: `strict`, as a real judge answers NVIDIA's
    /// prompt (`{"classification": ...}`); `varied`, styles that exercise
    /// the repair turn and `invalid` (fenced, prose, other casings).
    #[arg(long, value_enum, default_value = "strict")]
    pub judge_replies: mock::JudgeReplies,
    /// Requests served at once, like a model server's parallel slots:
    /// more wait in a queue (with `--latency-ms`, a fixed capacity of
    /// N / latency requests per second). 0 = no limit.
    #[arg(long, default_value_t = 0)]
    pub max_concurrency: usize,
}

impl MockServerOptions {
    fn validate(&self) -> Result<()> {
        let shares = [
            ("--rate-429", self.rate_429),
            ("--rate-5xx", self.rate_5xx),
            ("--rate-hang", self.rate_hang),
            ("--rate-truncated", self.rate_truncated),
            ("--rate-malformed", self.rate_malformed),
            ("--rate-empty", self.rate_empty),
        ];
        for (name, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name}: expected a share in [0, 1], got {v}");
            }
        }
        if let Some(v) = self.judge_not_json {
            if !(0.0..=1.0).contains(&v) {
                bail!("--judge-not-json: expected a share in [0, 1], got {v}");
            }
        }
        if shares.iter().map(|(_, v)| v).sum::<f64>() > 1.0 {
            bail!("the fault shares add up to more than 1");
        }
        crate::secs::in_range("--retry-after-secs", self.retry_after_secs, 0.0..=86_400.0)
            .map_err(anyhow::Error::msg)?;
        crate::secs::in_range("--hang-secs", self.hang_secs, 0.0..=86_400.0)
            .map_err(anyhow::Error::msg)?;
        const DAY_MS: u64 = 86_400_000;
        for (name, v) in [
            ("--latency-ms", self.latency_ms),
            ("--jitter-ms", self.jitter_ms),
        ] {
            if v > DAY_MS {
                bail!("{name}: expected at most {DAY_MS} ms, got {v}");
            }
        }
        if self.huge_body_bytes.is_some() && self.endless_body {
            bail!("--huge-body-bytes and --endless-body cannot be used together");
        }
        Ok(())
    }
}

/// How `/v1/completions` echoes prompts (see `--echo-style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EchoStyle {
    /// Whole-word tokens that concatenate to the prompt.
    #[default]
    Simple,
    /// llama-cpp-python's echo (see [`crate::llm::llama_echo`]).
    LlamaCpp,
}

/// How `--echo-key` spells what it echoes (see `--echo-key-as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EchoEncoding {
    /// As received.
    Plain,
    /// Every character as a JSON `\uXXXX` escape, written raw into the JSON
    /// body (a JSON parser decodes it back to the plain text).
    UnicodeEscape,
    /// Every byte as `%HH`.
    Percent,
    /// Every character as `&#N;`.
    Html,
    /// Standard base64 of the text, and of `w2c:<value>` per header.
    Base64,
    /// URL-safe base64 without padding.
    Base64Url,
    /// Lower-case hexadecimal.
    Hex,
    /// Every byte of each header value (after a `Bearer ` scheme) as
    /// `\xHH`, written raw into the JSON text of a reply's content and of
    /// error messages (not JSON until a reader rewrites the escapes), and as
    /// the JSON string `"\\xHH…"` (text `\xHH…`) in `system_fingerprint`
    /// and the `x-echo` header.
    HexEscape,
    /// Each header value minus its last 3 characters, as it is: a fragment
    /// of the key.
    Prefix,
    /// Every encoding above.
    All,
}

impl EchoEncoding {
    const EACH: [EchoEncoding; 9] = [
        EchoEncoding::Plain,
        EchoEncoding::UnicodeEscape,
        EchoEncoding::Percent,
        EchoEncoding::Html,
        EchoEncoding::Base64,
        EchoEncoding::Base64Url,
        EchoEncoding::Hex,
        EchoEncoding::HexEscape,
        EchoEncoding::Prefix,
    ];
}

/// An echo whose numbers are wrong (see `--absurd-echo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AbsurdEcho {
    /// `usage.completion_tokens` = 1000000.
    CompletionTokens,
    /// Every `text_offset` 5 characters too far.
    ShiftedOffsets,
    /// Every log-probability +1e308 (a probability far above 1).
    PositiveLogprobs,
}

/// A reply with broken HTTP framing (see `--bad-http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BadHttp {
    /// `Content-Length: -1`.
    NegativeContentLength,
    /// One header of 1 MiB.
    HugeHeaders,
    /// 1000 headers.
    ManyHeaders,
    /// A first line that is not an HTTP status line.
    NotHttp,
}

impl BadHttp {
    /// The whole reply, bytes as sent.
    fn reply(self) -> Vec<u8> {
        let body = json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        })
        .to_string();
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n";
        let head = match self {
            BadHttp::NegativeContentLength => format!("{ok}content-length: -1\r\n"),
            BadHttp::HugeHeaders => format!(
                "{ok}x-huge: {}\r\ncontent-length: {}\r\n",
                "a".repeat(1 << 20),
                body.len()
            ),
            BadHttp::ManyHeaders => {
                let many: String = (0..1000).map(|i| format!("x-h{i}: v\r\n")).collect();
                format!("{ok}{many}content-length: {}\r\n", body.len())
            }
            BadHttp::NotHttp => "W2C-MOCK 200 NOT HTTP\r\n".to_string(),
        };
        format!("{head}\r\n{body}").into_bytes()
    }
}

/// `--bad-http`: reads each request (head and `content-length` body) and
/// answers with the broken reply, then closes the connection.
async fn serve_bad_http(listener: tokio::net::TcpListener, kind: BadHttp) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let (mut conn, _) = listener.accept().await.context("accept")?;
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > 1 << 20 {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
                .min(64 << 20);
            while buf.len() < head_end + body_len {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = conn.write_all(&kind.reply()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// Stands for the `\uXXXX`-escaped echo in a JSON value until the body is
/// serialised (serde would escape the backslashes).
const ESCAPED_ECHO_MARK: &str = "@@w2c-escaped-echo@@";

/// Stands for the raw `\xHH`-escaped echo in a JSON value until the body
/// is serialised (see [`EchoEncoding::HexEscape`]).
const HEX_ESCAPED_ECHO_MARK: &str = "@@w2c-hex-escaped-echo@@";

/// Request and fault counters, served at `/stats`.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Stats {
    /// All requests received.
    pub requests: u64,
    /// Chat completion requests.
    pub chat: u64,
    /// Completion requests.
    pub completions: u64,
    /// Successful replies.
    pub ok: u64,
    /// 429 replies.
    pub fault_429: u64,
    /// 5xx replies.
    pub fault_5xx: u64,
    /// Hung requests.
    pub fault_hang: u64,
    /// Truncated bodies.
    pub fault_truncated: u64,
    /// Malformed bodies.
    pub fault_malformed: u64,
    /// Empty bodies.
    #[serde(default)]
    pub fault_empty: u64,
    /// 401 replies.
    pub unauthorized: u64,
    /// Replies shaped by a hostile mode.
    #[serde(default)]
    pub hostile: u64,
    /// Requests being answered now.
    #[serde(default)]
    pub in_flight: u64,
    /// Most requests answered at once since start (or the last reset):
    /// what a client's concurrency limit let through.
    #[serde(default)]
    pub max_in_flight: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    chat: AtomicU64,
    completions: AtomicU64,
    ok: AtomicU64,
    fault_429: AtomicU64,
    fault_5xx: AtomicU64,
    fault_hang: AtomicU64,
    fault_truncated: AtomicU64,
    fault_malformed: AtomicU64,
    fault_empty: AtomicU64,
    unauthorized: AtomicU64,
    hostile: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn new(c: &'a Counters) -> InFlight<'a> {
        let now = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            requests: g(&self.requests),
            chat: g(&self.chat),
            completions: g(&self.completions),
            ok: g(&self.ok),
            fault_429: g(&self.fault_429),
            fault_5xx: g(&self.fault_5xx),
            fault_hang: g(&self.fault_hang),
            fault_truncated: g(&self.fault_truncated),
            fault_malformed: g(&self.fault_malformed),
            fault_empty: g(&self.fault_empty),
            unauthorized: g(&self.unauthorized),
            hostile: g(&self.hostile),
            in_flight: g(&self.in_flight),
            max_in_flight: g(&self.max_in_flight),
        }
    }

    fn reset(&self) {
        for a in [
            &self.requests,
            &self.chat,
            &self.completions,
            &self.ok,
            &self.fault_429,
            &self.fault_5xx,
            &self.fault_hang,
            &self.fault_truncated,
            &self.fault_malformed,
            &self.fault_empty,
            &self.unauthorized,
            &self.hostile,
            &self.max_in_flight,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

struct AppState {
    slots: Option<Arc<tokio::sync::Semaphore>>,
    opts: MockServerOptions,
    api_key: Option<String>,
    rng: Mutex<StdRng>,
    counters: Counters,
    /// `--record`'s file, appended to under the lock, one line per request.
    record: Option<Mutex<std::fs::File>>,
}

impl AppState {
    /// Appends a request to the `--record` file (nothing without one); a
    /// write that fails is answered 500 (the handler's [`recording_failed`]),
    /// never lost silently.
    fn record(&self, endpoint: &str, body: &str) -> Result<(), String> {
        use std::io::Write;
        let Some(file) = &self.record else {
            return Ok(());
        };
        let body: Value =
            serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
        let mut line = json!({"endpoint": endpoint, "body": body}).to_string();
        line.push('\n');
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
            .map_err(|e| format!("mock-server: cannot record the request: {e}"))
    }

    /// How the judge's replies are phrased (`--judge-not-json`, else
    /// `--judge-replies`).
    fn judge_style(&self) -> mock::JudgeStyle {
        match self.opts.judge_not_json {
            Some(not_json) => mock::JudgeStyle::Readable { not_json },
            None => self.opts.judge_replies.style(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    TooMany,
    Server,
    Hang,
    Truncated,
    Malformed,
    Empty,
}

/// Binds the listener and serves until the process ends. Prints
/// `listening on http://HOST:PORT` on stdout once ready.
pub async fn run(opts: MockServerOptions) -> Result<()> {
    opts.validate()?;
    let api_key = match &opts.api_key_env {
        Some(var) => Some(crate::env_vars::secret(var, "--api-key-env", "Bearer ")?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", opts.host, opts.port))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Some(kind) = opts.bad_http {
        return serve_bad_http(listener, kind).await;
    }
    let record = match &opts.record {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--record: cannot open {}", path.display()))?,
        )),
        None => None,
    };
    let state = Arc::new(AppState {
        slots: (opts.max_concurrency > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(opts.max_concurrency))),
        rng: Mutex::new(StdRng::seed_from_u64(opts.seed)),
        opts,
        api_key,
        counters: Counters::default(),
        record,
    });
    axum::serve(listener, router(state))
        .await
        .context("mock server stopped")
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/extras/tokenize", post(tokenize))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset))
        .with_state(state)
}

/// `GET /v1/models`: the OpenAI model list (any model name is served).
async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "w2c"}]}))
}

/// `GET /health`: ready (what job scripts wait for before a shard starts).
async fn health() -> StatusCode {
    StatusCode::OK
}

async fn stats(State(st): State<Arc<AppState>>) -> Json<Stats> {
    Json(st.counters.snapshot())
}

async fn reset(State(st): State<Arc<AppState>>) -> StatusCode {
    st.counters.reset();
    StatusCode::NO_CONTENT
}

fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "code": null}})
}

/// Common preamble: count, check auth, wait for a slot (`--max-concurrency`),
/// sleep, draw a fault.
async fn preamble(st: &AppState, headers: &HeaderMap) -> Result<Fault, Response> {
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    let _slot = match &st.slots {
        Some(slots) => slots.clone().acquire_owned().await.ok(),
        None => None,
    };
    if let Some(key) = &st.api_key {
        let expected = format!("Bearer {key}");
        let ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected);
        if !ok {
            st.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            let message = if st.opts.echo_key {
                format!("Incorrect API key provided: {}", echoed(&st.opts, headers))
            } else {
                "Incorrect API key provided.".to_string()
            };
            let body = json_text(headers, &error_body(&message, "invalid_request_error"));
            return Err(hostile_headers(
                st,
                headers,
                (
                    StatusCode::UNAUTHORIZED,
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response(),
            ));
        }
    }
    let (delay, draw) = {
        let mut rng = st.rng.lock().unwrap_or_else(|p| p.into_inner());
        let jitter = if st.opts.jitter_ms > 0 {
            rng.gen_range(0..=2 * st.opts.jitter_ms) as i64 - st.opts.jitter_ms as i64
        } else {
            0
        };
        let delay = (st.opts.latency_ms as i64 + jitter).max(0) as u64;
        (delay, rng.gen::<f64>())
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let o = &st.opts;
    let mut edge = 0.0;
    let faults = [
        (o.rate_429, Fault::TooMany),
        (o.rate_5xx, Fault::Server),
        (o.rate_hang, Fault::Hang),
        (o.rate_truncated, Fault::Truncated),
        (o.rate_malformed, Fault::Malformed),
        (o.rate_empty, Fault::Empty),
    ];
    for (share, fault) in faults {
        edge += share;
        if draw < edge {
            return apply_fault(st, fault)
                .await
                .map_err(|resp| hostile_headers(st, headers, resp));
        }
    }
    Ok(Fault::None)
}

async fn apply_fault(st: &AppState, fault: Fault) -> Result<Fault, Response> {
    let c = &st.counters;
    match fault {
        Fault::TooMany => {
            c.fault_429.fetch_add(1, Ordering::Relaxed);
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(error_body(
                    "Rate limit reached (mock).",
                    "rate_limit_exceeded",
                )),
            )
                .into_response();
            let secs = st.opts.retry_after_secs;
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("{}", secs.ceil() as u64)) {
                h.insert("retry-after", v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{}", (secs * 1000.0).round() as u64)) {
                h.insert("retry-after-ms", v);
            }
            Err(resp)
        }
        Fault::Server => {
            c.fault_5xx.fetch_add(1, Ordering::Relaxed);
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(error_body(
                    "The server is overloaded (mock).",
                    "server_error",
                )),
            )
                .into_response())
        }
        Fault::Hang => {
            c.fault_hang.fetch_add(1, Ordering::Relaxed);
            // Validated to [0, 86400] by `validate`.
            let hang = crate::secs::checked(st.opts.hang_secs).unwrap_or(Duration::ZERO);
            tokio::time::sleep(hang).await;
            Ok(Fault::None)
        }
        Fault::Truncated => {
            c.fault_truncated.fetch_add(1, Ordering::Relaxed);
            Ok(Fault::Truncated)
        }
        Fault::Malformed => {
            c.fault_malformed.fetch_add(1, Ordering::Relaxed);
            Ok(Fault::Malformed)
        }
        Fault::Empty => {
            c.fault_empty.fetch_add(1, Ordering::Relaxed);
            Ok(Fault::Empty)
        }
        Fault::None => Ok(Fault::None),
    }
}

fn finish(st: &AppState, headers: &HeaderMap, fault: Fault, mut body: Value) -> Response {
    if fault == Fault::None {
        if let Some(resp) = hostile_body(st, headers, &mut body) {
            return resp;
        }
    }
    let text = json_text(headers, &body);
    let text = match fault {
        Fault::Truncated => crate::fingerprint::prefix(&text, text.len() / 2).to_string(),
        Fault::Malformed => "<html>upstream gateway error</html>".to_string(),
        Fault::Empty => String::new(),
        _ => {
            st.counters.ok.fetch_add(1, Ordering::Relaxed);
            text
        }
    };
    hostile_headers(
        st,
        headers,
        ([("content-type", "application/json")], text).into_response(),
    )
}

/// The request's `Authorization` and `x-*` headers, as name and value.
fn echoed_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k.as_str() == "authorization" || k.as_str().starts_with("x-"))
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// What `--echo-key` sends back: the request's `Authorization` and `x-*`
/// header values, in every spelling `--echo-key-as` asks for. The
/// `\uXXXX` and raw `\xHH` spellings are [`ESCAPED_ECHO_MARK`] and
/// [`HEX_ESCAPED_ECHO_MARK`] here; [`json_text`] and [`header_text`] put
/// them in.
fn echoed(opts: &MockServerOptions, headers: &HeaderMap) -> String {
    use base64::Engine as _;
    let pairs = echoed_headers(headers);
    let plain = pairs
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let encodings: Vec<EchoEncoding> = if opts.echo_key_as.contains(&EchoEncoding::All) {
        EchoEncoding::EACH.to_vec()
    } else {
        opts.echo_key_as.clone()
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    encodings
        .iter()
        .map(|e| match e {
            EchoEncoding::Plain | EchoEncoding::All => plain.clone(),
            EchoEncoding::UnicodeEscape => ESCAPED_ECHO_MARK.to_string(),
            EchoEncoding::Percent => plain.bytes().map(|b| format!("%{b:02X}")).collect(),
            EchoEncoding::Html => plain.chars().map(|c| format!("&#{};", c as u32)).collect(),
            EchoEncoding::Base64 => {
                let mut parts = vec![b64.encode(&plain)];
                for (_, v) in &pairs {
                    let value = v.strip_prefix("Bearer ").unwrap_or(v);
                    parts.push(format!("Basic {}", b64.encode(format!("w2c:{value}"))));
                }
                parts.join(" ")
            }
            EchoEncoding::Base64Url => {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&plain)
            }
            EchoEncoding::Hex => hex::encode(&plain),
            EchoEncoding::HexEscape => HEX_ESCAPED_ECHO_MARK.to_string(),
            EchoEncoding::Prefix => pairs
                .iter()
                .map(|(k, v)| {
                    let keep = v.chars().count().saturating_sub(3);
                    format!("{k}: {}", v.chars().take(keep).collect::<String>())
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The `\uXXXX` spelling of the echoed headers.
fn escaped_echo(headers: &HeaderMap) -> String {
    echoed_headers(headers)
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
        .encode_utf16()
        .map(|u| format!("\\u{u:04x}"))
        .collect()
}

/// The `\xHH` spelling of the echoed headers: each value's bytes (after a
/// `Bearer ` scheme, which stays as it is) as `\xHH`.
fn hex_escaped_echo(headers: &HeaderMap) -> String {
    echoed_headers(headers)
        .iter()
        .map(|(k, v)| {
            let (scheme, value) = match v.strip_prefix("Bearer ") {
                Some(rest) => ("Bearer ", rest),
                None => ("", v.as_str()),
            };
            let escaped: String = value.bytes().map(|b| format!("\\x{b:02x}")).collect();
            format!("{k}: {scheme}{escaped}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A JSON value as body text, with the escaped echoes written in raw.
fn json_text(headers: &HeaderMap, body: &Value) -> String {
    let mut text = body.to_string();
    if text.contains(ESCAPED_ECHO_MARK) {
        text = text.replace(ESCAPED_ECHO_MARK, &escaped_echo(headers));
    }
    if text.contains(HEX_ESCAPED_ECHO_MARK) {
        text = text.replace(HEX_ESCAPED_ECHO_MARK, &hex_escaped_echo(headers));
    }
    text
}

/// An echo as a header value.
fn header_text(headers: &HeaderMap, echo: &str) -> String {
    echo.replace(ESCAPED_ECHO_MARK, &escaped_echo(headers))
        .replace(HEX_ESCAPED_ECHO_MARK, &hex_escaped_echo(headers))
}

/// Applies the hostile modes to a successful reply body; returns a whole
/// response when the mode replaces the body (`--endless-body`).
fn hostile_body(st: &AppState, headers: &HeaderMap, body: &mut Value) -> Option<Response> {
    let o = &st.opts;
    if !(o.echo_key
        || o.wrong_types
        || o.huge_body_bytes.is_some()
        || o.endless_body
        || o.absurd_echo.is_some())
    {
        return None;
    }
    st.counters.hostile.fetch_add(1, Ordering::Relaxed);
    let n = st.counters.requests.load(Ordering::Relaxed);
    // The text field of the first choice (chat message content, or completion text).
    let text_of = |body: &mut Value| -> Option<String> {
        body.pointer("/choices/0/message/content")
            .or_else(|| body.pointer("/choices/0/text"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let set_text = |body: &mut Value, text: String| {
        if body.pointer("/choices/0/message").is_some() {
            body["choices"][0]["message"]["content"] = Value::String(text);
        } else if body.pointer("/choices/0/text").is_some() {
            body["choices"][0]["text"] = Value::String(text);
        }
    };
    if o.echo_key {
        let echo = echoed(o, headers);
        if let Some(text) = text_of(body) {
            set_text(body, format!("{text}\n(request headers: {echo})"));
        }
        // Here the `\xHH` text is a JSON string's: its backslashes escaped.
        let fingerprint = echo.replace(HEX_ESCAPED_ECHO_MARK, &hex_escaped_echo(headers));
        body["system_fingerprint"] = Value::String(fingerprint);
    }
    if o.wrong_types {
        let usage = match n % 5 {
            0 => json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX}),
            1 => json!({"prompt_tokens": -5, "completion_tokens": 3}),
            2 => json!({"prompt_tokens": 12.5, "completion_tokens": 1e300}),
            3 => json!({"prompt_tokens": "12", "completion_tokens": [1]}),
            _ => json!("lots"),
        };
        body["usage"] = usage;
        body["system_fingerprint"] = json!(12345);
        body["choices"][0]["finish_reason"] = json!(["stop"]);
        if body.pointer("/choices/0/message").is_some() {
            body["choices"][0]["message"]["reasoning_content"] = json!({"nested": true});
        } else if body.pointer("/choices/0/text").is_some() {
            match n % 3 {
                0 => body["choices"][0]["text"] = json!(12345),
                1 => body["choices"][0]["logprobs"] = json!("yes"),
                _ => body["choices"][0]["logprobs"]["tokens"] = json!([1, 2, 3]),
            }
        }
    }
    match o.absurd_echo {
        Some(AbsurdEcho::CompletionTokens) => {
            body["usage"]["completion_tokens"] = json!(1_000_000);
        }
        Some(AbsurdEcho::ShiftedOffsets) => {
            if let Some(offsets) = body
                .pointer_mut("/choices/0/logprobs/text_offset")
                .and_then(Value::as_array_mut)
            {
                for o in offsets.iter_mut() {
                    *o = json!(o.as_u64().unwrap_or(0) + 5);
                }
            }
        }
        Some(AbsurdEcho::PositiveLogprobs) => {
            if let Some(lps) = body
                .pointer_mut("/choices/0/logprobs/token_logprobs")
                .and_then(Value::as_array_mut)
            {
                for lp in lps.iter_mut().filter(|v| !v.is_null()) {
                    *lp = json!(1e308);
                }
            }
        }
        None => {}
    }
    if let Some(bytes) = o.huge_body_bytes {
        if let Some(text) = text_of(body) {
            let pad = usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .saturating_sub(text.len() + 1);
            set_text(body, format!("{text} {}", "x".repeat(pad)));
        }
    }
    if o.endless_body {
        let head = {
            let text = body.to_string();
            // Everything up to the opening quote of the first string value
            // after `"choices"`, so the body looks like a reply that never ends.
            let cut = text.find("\"choices\"").unwrap_or(0);
            text[..cut].to_string() + "\"choices\":[{\"message\":{\"content\":\""
        };
        let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
        use futures::StreamExt as _;
        let stream = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(
            axum::body::Bytes::from(head),
        )))
        .chain(futures::stream::repeat_with(move || Ok(chunk.clone())));
        let resp = (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
        return Some(hostile_headers(st, headers, resp));
    }
    None
}

/// Adds the `--absurd-headers` and `--echo-key` headers to any response.
fn hostile_headers(st: &AppState, headers: &HeaderMap, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if st.opts.absurd_headers {
        h.insert("retry-after", HeaderValue::from_static("1e300"));
        h.insert("retry-after-ms", HeaderValue::from_static("1e30"));
        if let Ok(v) = HeaderValue::from_str(&"9".repeat(8 * 1024)) {
            h.insert("x-absurd", v);
        }
    }
    if st.opts.echo_key {
        let echo = header_text(headers, &echoed(&st.opts, headers));
        if let Ok(v) = HeaderValue::from_str(&echo) {
            h.insert("x-echo", v);
        }
    }
    resp
}

/// The 500 of a request `--record` could not write down.
fn recording_failed(message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(error_body(message, "server_error")),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(error_body(&message, "invalid_request_error")),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    tools: Option<Value>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    let _in_flight = InFlight::new(&st.counters);
    st.counters.chat.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = st.record("chat/completions", &body) {
        return recording_failed(&e);
    }
    let fault = match preamble(&st, &headers).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let parsed: ChatBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("invalid chat request: {e}")),
    };
    let req = ChatRequest {
        model: parsed.model.clone(),
        messages: parsed
            .messages
            .into_iter()
            .map(|m| Message {
                role: m.role,
                content: m.content.unwrap_or_default(),
            })
            .collect(),
        // Absent parameters take fixed values, so that a request's reply
        // depends only on what it sends (the same as before they could be
        // absent).
        temperature: Some(parsed.temperature.unwrap_or(1.0)),
        max_tokens: Some(parsed.max_tokens.unwrap_or(256)),
        seed: Some(parsed.seed.unwrap_or(st.opts.seed)),
        tools: parsed.tools,
        extra: Default::default(),
    };
    let prompt: String = req.messages.iter().map(|m| m.content.as_str()).collect();
    if let Some(resp) = context_overflow(&st.opts, &prompt, parsed.max_tokens) {
        return resp;
    }
    let text = mock::reply_styled(req.seed.unwrap_or(st.opts.seed), &req, st.judge_style());
    let (content, tool_calls) = mock::split_native_tool_call(&req, text.clone());
    let prompt_tokens: usize = req
        .messages
        .iter()
        .map(|m| mock::tokenize(&m.content).len())
        .sum();
    let completion_tokens = mock::tokenize(&text).len();
    let id = &sha256_hex(body.as_bytes())[..24];
    finish(
        &st,
        &headers,
        fault,
        json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": 0,
            "model": parsed.model,
            "system_fingerprint": "fp_w2c_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": tool_calls},
                "finish_reason": if tool_calls.is_some() { "tool_calls" } else { "stop" },
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }),
    )
}

#[derive(Deserialize)]
struct CompletionBody {
    model: String,
    prompt: Value,
    #[serde(default)]
    echo: bool,
    #[serde(default)]
    logprobs: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

async fn completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let _in_flight = InFlight::new(&st.counters);
    st.counters.completions.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = st.record("completions", &body) {
        return recording_failed(&e);
    }
    let fault = match preamble(&st, &headers).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let parsed: CompletionBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("invalid completion request: {e}")),
    };
    let Some(prompt) = parsed.prompt.as_str() else {
        return bad_request("`prompt` must be one string".into());
    };
    if let Some(resp) = context_overflow(&st.opts, prompt, parsed.max_tokens) {
        return resp;
    }
    if st.opts.echo_style == EchoStyle::LlamaCpp {
        let echo = parsed.echo && !st.opts.no_echo;
        let body = llama_cpp_completion(&parsed, prompt, echo, st.opts.seed, &body);
        return finish(&st, &headers, fault, body);
    }
    let reply = mock::completion(
        prompt,
        parsed.echo && !st.opts.no_echo,
        parsed.logprobs.is_some(),
        parsed.max_tokens.unwrap_or(16),
        st.opts.seed,
    );
    let prompt_tokens = reply.usage.prompt_tokens;
    let completion_tokens = reply.usage.completion_tokens;
    let choice = json!({
        "index": 0,
        "text": reply.text,
        "logprobs": reply.logprobs.map(|l| json!({
            "tokens": l.tokens,
            "token_logprobs": l.token_logprobs,
            "top_logprobs": Value::Null,
            "text_offset": l.text_offset,
        })),
        "finish_reason": "length",
    });
    finish(
        &st,
        &headers,
        fault,
        json!({
            "id": format!("cmpl-{}", &sha256_hex(body.as_bytes())[..24]),
            "object": "text_completion",
            "created": 0,
            "model": parsed.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }),
    )
}

/// Tokens the server counts for a prompt (BOS included), per echo style.
fn prompt_token_count(style: EchoStyle, prompt: &str) -> usize {
    1 + match style {
        EchoStyle::Simple => mock::count_tokens(prompt),
        EchoStyle::LlamaCpp => llama_echo::tokenize(prompt).len(),
    }
}

/// HTTP 400 `context_length_exceeded` (llama-cpp-python's body) when the
/// prompt does not fit `--context-window`.
fn context_overflow(
    opts: &MockServerOptions,
    prompt: &str,
    max_tokens: Option<u32>,
) -> Option<Response> {
    let window = opts.context_window?;
    let n = prompt_token_count(opts.echo_style, prompt);
    (n >= window).then(|| {
        let message = format!(
            "This model's maximum context length is {window} tokens, however you requested {} tokens ({n} in your prompt; {} for the completion). Please reduce your prompt; or completion length.",
            n + max_tokens.unwrap_or(16) as usize,
            max_tokens.unwrap_or(16)
        );
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
struct TokenizeBody {
    input: String,
}

/// `POST /extras/tokenize` (llama-cpp-python's): `{"tokens": [...]}`, BOS first.
async fn tokenize(State(st): State<Arc<AppState>>, body: String) -> Response {
    if let Err(e) = st.record("extras/tokenize", &body) {
        return recording_failed(&e);
    }
    let parsed: TokenizeBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("invalid tokenize request: {e}")),
    };
    let n = prompt_token_count(st.opts.echo_style, &parsed.input);
    Json(json!({"tokens": (0..n).collect::<Vec<_>>()})).into_response()
}

/// A `/completions` reply in llama-cpp-python's echo style: the toy
/// tokenizer of [`llama_echo`], one generated token unless the prompt ends
/// in "." or "。" (end-of-generation: nothing appended, 0 completion tokens).
fn llama_cpp_completion(
    parsed: &CompletionBody,
    prompt: &str,
    echo: bool,
    seed: u64,
    body: &str,
) -> Value {
    let pieces = llama_echo::tokenize(prompt);
    let eog = prompt.ends_with('.') || prompt.ends_with('。');
    let generated: Vec<llama_echo::Piece> = if eog || parsed.max_tokens == Some(0) {
        Vec::new()
    } else {
        vec![llama_echo::Piece::bytes(b" the")]
    };
    let (mut lp, (prompt_tokens, completion_tokens)) = llama_echo::echo(&pieces, &generated, |i| {
        let piece = pieces.get(i).or_else(|| generated.get(i - pieces.len()));
        let text = piece
            .map(|p| llama_echo::decode_ignore(&p.bytes))
            .unwrap_or_default();
        mock::token_logprob(seed, "", &text, i)
    });
    let generated_text: String = generated
        .iter()
        .map(|p| llama_echo::decode_ignore(&p.bytes))
        .collect();
    let text = if echo {
        format!("{prompt}{generated_text}")
    } else {
        // Without echo only the generated tokens come back.
        let n = pieces.len();
        lp.tokens.drain(..n);
        lp.token_logprobs.drain(..n);
        lp.text_offset.drain(..n);
        for o in lp.text_offset.iter_mut() {
            *o = prompt.chars().count();
        }
        generated_text
    };
    json!({
        "id": format!("cmpl-{}", &sha256_hex(body.as_bytes())[..24]),
        "object": "text_completion",
        "created": 0,
        "model": parsed.model,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": parsed.logprobs.map(|_| json!({
                "tokens": lp.tokens,
                "token_logprobs": lp.token_logprobs,
                "top_logprobs": Value::Null,
                "text_offset": lp.text_offset,
            })),
            "finish_reason": if completion_tokens == 0 { "stop" } else { "length" },
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_shares_are_validated() {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            o: MockServerOptions,
        }
        let ok = P::parse_from(["x", "--rate-429", "0.1", "--rate-5xx", "0.05"]);
        assert!(ok.o.validate().is_ok());
        let bad = P::parse_from(["x", "--rate-429", "0.8", "--rate-5xx", "0.5"]);
        assert!(bad.o.validate().is_err());
        for args in [
            ["x", "--hang-secs", "inf"],
            ["x", "--hang-secs", "1e300"],
            ["x", "--jitter-ms", "18446744073709551615"],
            ["x", "--latency-ms", "18446744073709551615"],
            ["x", "--retry-after-secs", "1e300"],
        ] {
            let err = P::parse_from(args).o.validate().unwrap_err().to_string();
            assert!(err.contains(args[1]), "{err}");
        }
    }
}
