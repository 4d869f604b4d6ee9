//! A reverse proxy in front of a real MLflow server that holds chosen
//! requests without answering (a server stuck on a slow insert, a proxy
//! that stalls one route) and forwards everything else unchanged. MLflow
//! itself stays the real one (`mlflow.rs`); the proxy only adds the stall.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A running proxy (stopped when the test process ends).
pub struct HoldingProxy {
    /// `http://127.0.0.1:PORT`, to use as `MLFLOW_TRACKING_URI`.
    pub url: String,
    holding: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
}

#[derive(Clone)]
struct State {
    upstream: String,
    paths: Vec<String>,
    holding: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
    client: reqwest::Client,
}

impl HoldingProxy {
    /// Starts a proxy to `upstream` that holds every request to one of
    /// `paths` until [`HoldingProxy::release`].
    pub fn start(upstream: &str, paths: &[&str]) -> HoldingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = State {
            upstream: upstream.trim_end_matches('/').to_string(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            holding: Arc::new(AtomicBool::new(true)),
            held: Arc::new(AtomicU64::new(0)),
            client: reqwest::Client::new(),
        };
        let (holding, held) = (state.holding.clone(), state.held.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(forward).with_state(state);
                axum::serve(listener, app).await.expect("serve");
            });
        });
        HoldingProxy { url, holding, held }
    }

    /// Requests held so far (each stays held until its client gives up).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Forwards everything from now on.
    pub fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }
}

async fn forward(
    axum::extract::State(s): axum::extract::State<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if s.paths.iter().any(|p| p == uri.path()) && s.holding.load(Ordering::SeqCst) {
        s.held.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let target = format!(
        "{}{}",
        s.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = s.client.request(method, target).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(reply) => {
            let status = reply.status();
            let mut out = HeaderMap::new();
            for (k, v) in reply.headers() {
                if k != "transfer-encoding" && k != "content-length" && k != "connection" {
                    out.insert(k.clone(), v.clone());
                }
            }
            let bytes = reply.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
