//! The mock LLM upstream: an axum server speaking the OpenAI Chat Completions, Anthropic
//! Messages and Gemini dialects (the Gemini API, and Vertex AI with its Gemini and Claude
//! publishers), scripted by `[[mock:...]]` directives (see [`directives`]).
//!
//! Module layout: [`directives`] parses the script, `reply` plans a dialect-neutral answer,
//! `openai`, `anthropic`, `gemini`, `ollama` and `bedrock` encode it (`gemini` also grants service-account tokens), `media` serves files to fetch by URL, `faults` bends it as scripted, `raw` is the hand-written
//! HTTP/1.1 front for connection-level faults, and this module holds the server, recording,
//! models and the shared streaming/error plumbing.

pub mod directives;

mod anthropic;
mod bedrock;
pub mod embeddings;
mod faults;
mod gemini;
mod media;
mod ollama;
mod openai;
mod raw;
mod reply;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use bedrock::{MOCK_AWS_ACCESS_KEY, MOCK_AWS_SECRET_KEY};
use directives::{Directives, ErrorDirective};
pub use media::MEDIA_TEXT;

/// Options of a [`MockServer`].
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Fixed latency added before answering (non-streaming) or before the first byte (streaming).
    pub latency: Duration,
    /// Record requests for [`MockServer::requests`] / `GET /_mock/requests`.
    pub record: bool,
    /// Delay between stream chunks.
    pub chunk_delay: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            latency: Duration::ZERO,
            record: true,
            chunk_delay: Duration::ZERO,
        }
    }
}

/// One request the mock received (API routes only, not `/_mock/*` or `/health`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Header names are lowercase; in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` if the body was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running mock upstream. Dropping it shuts it down.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts a mock on `127.0.0.1` with an ephemeral port.
    pub async fn start(opts: MockOptions) -> anyhow::Result<MockServer> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Starts a mock on `addr` (port 0 = ephemeral).
    pub async fn bind(addr: SocketAddr, opts: MockOptions) -> anyhow::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Like real provider edges: no Nagle delay on small stream frames.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shared = Shared::new(opts, false);
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "mock server stopped with an error");
            }
        });
        Ok(MockServer {
            addr,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// Starts a mock on `127.0.0.1` (ephemeral port) behind the raw front: the same routes and
    /// directives, over a hand-written HTTP/1.1 server that can also write what hyper refuses
    /// to (`status`, `close_idle`, `hangup`; see [`directives`]).
    pub async fn start_raw(opts: MockOptions) -> anyhow::Result<MockServer> {
        Self::bind_raw(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// [`MockServer::start_raw`] on `addr` (port 0 = ephemeral).
    pub async fn bind_raw(addr: SocketAddr, opts: MockOptions) -> anyhow::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(opts, true);
        let task = tokio::spawn(raw::serve(listener, router(shared.clone())));
        Ok(MockServer {
            addr,
            shared,
            shutdown: None,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests recorded so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.shared.recorded().clear();
    }

    /// Body bytes written so far by `GET /media/…`, counted as each piece goes out.
    pub fn media_bytes_served(&self) -> u64 {
        self.shared.media_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Dropping the serve future closes the listener at once; in-flight streams end when
        // their client goes away or the runtime stops (the raw front's end with it).
        self.task.abort();
    }
}

pub(crate) struct Shared {
    pub(crate) opts: MockOptions,
    /// Served by the raw front, which honours connection-level directives.
    pub(crate) raw_front: bool,
    recorded: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
    pub(crate) media_bytes: AtomicU64,
}

impl Shared {
    fn new(opts: MockOptions, raw_front: bool) -> Arc<Shared> {
        Arc::new(Shared {
            opts,
            raw_front,
            recorded: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            media_bytes: AtomicU64::new(0),
        })
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh number for ids (`chatcmpl-N`, `msg_mockN`, `call_N`, ...).
    pub(crate) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the request (if enabled) and parses its body as JSON (`Null` if not JSON).
    pub(crate) fn intake(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Value {
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(Value::Null)
        };
        if self.opts.record {
            let rec = RecordedRequest {
                method: method.as_str().to_owned(),
                path: uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
                headers: headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: json.clone(),
            };
            self.recorded().push(rec);
        }
        json
    }

    pub(crate) async fn latency(&self) {
        if !self.opts.latency.is_zero() {
            tokio::time::sleep(self.opts.latency).await;
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/api/embed", post(embeddings::ollama))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        // Azure OpenAI (deployment and v1 forms) and Claude on Azure AI Foundry.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(openai::azure_deployment),
        )
        .route(
            "/openai/v1/chat/completions",
            post(openai::chat_completions),
        )
        // Ollama's native API.
        .route("/api/chat", post(ollama::chat))
        .route("/api/tags", get(ollama::tags))
        // Amazon Bedrock's runtime: Converse for every model, InvokeModel for Claude.
        .route("/model/{model}/converse", post(bedrock::converse))
        .route(
            "/model/{model}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route("/model/{model}/invoke", post(bedrock::invoke))
        .route("/model/{model}/count-tokens", post(bedrock::count_tokens))
        .route(
            "/model/{model}/invoke-with-response-stream",
            post(bedrock::invoke_stream),
        )
        .route("/anthropic/v1/messages", post(anthropic::messages))
        .route(
            "/anthropic/v1/messages/count_tokens",
            post(anthropic::count_tokens),
        )
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1beta/models", get(gemini::list_models))
        .route("/v1beta/models/{call}", post(gemini::generate))
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}",
            post(gemini::vertex),
        )
        .route("/token", post(gemini::token))
        // Files for a gateway that fetches media given by URL.
        .route("/media/{name}", get(media::serve))
        .route("/_mock/requests", get(mock_requests).delete(mock_clear))
        .route("/health", get(health))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(shared)
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn mock_requests(State(s): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_vec(&*s.recorded()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn mock_clear(State(s): State<Arc<Shared>>) -> StatusCode {
    s.recorded().clear();
    StatusCode::NO_CONTENT
}

async fn fallback(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.intake(&method, &uri, &headers, &body);
    let message = format!("mock: no route for {method} {}", uri.path());
    if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
        anthropic_error(StatusCode::NOT_FOUND, "not_found_error", &message, None)
    } else {
        openai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &message,
            None,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Models

struct ModelInfo {
    id: &'static str,
    display_name: &'static str,
    created_at: &'static str,
    created: u64,
    owned_by: &'static str,
}

const ANTHROPIC_MODELS: [ModelInfo; 3] = [
    ModelInfo {
        id: "claude-haiku-4-5-20251001",
        display_name: "Claude Haiku 4.5",
        created_at: "2025-10-01T00:00:00Z",
        created: 1_759_276_800,
        owned_by: "anthropic",
    },
    ModelInfo {
        id: "claude-sonnet-4-5-20250929",
        display_name: "Claude Sonnet 4.5",
        created_at: "2025-09-29T00:00:00Z",
        created: 1_759_104_000,
        owned_by: "anthropic",
    },
    ModelInfo {
        id: "claude-opus-4-1-20250805",
        display_name: "Claude Opus 4.1",
        created_at: "2025-08-05T00:00:00Z",
        created: 1_754_352_000,
        owned_by: "anthropic",
    },
];

const OPENAI_MODELS: [ModelInfo; 3] = [
    ModelInfo {
        id: "gpt-4o-mini",
        display_name: "GPT-4o mini",
        created_at: "2024-07-18T00:00:00Z",
        created: 1_721_260_800,
        owned_by: "system",
    },
    ModelInfo {
        id: "gpt-4o",
        display_name: "GPT-4o",
        created_at: "2024-05-13T00:00:00Z",
        created: 1_715_558_400,
        owned_by: "system",
    },
    ModelInfo {
        id: "gpt-4.1-mini",
        display_name: "GPT-4.1 mini",
        created_at: "2025-04-14T00:00:00Z",
        created: 1_744_588_800,
        owned_by: "system",
    },
];

fn anthropic_model_json(m: &ModelInfo) -> Value {
    json!({"type": "model", "id": m.id, "display_name": m.display_name, "created_at": m.created_at})
}

fn openai_model_json(m: &ModelInfo) -> Value {
    json!({"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by})
}

#[derive(Deserialize)]
struct ModelsQuery {
    limit: Option<usize>,
    after_id: Option<String>,
    before_id: Option<String>,
}

/// Checks the dialect's auth header; `Some` is the 401 response.
fn check_auth(anthropic: bool, headers: &HeaderMap) -> Option<Response> {
    if anthropic {
        anthropic::check_auth(headers)
    } else {
        openai::check_auth(headers)
    }
}

async fn list_models(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ModelsQuery>, QueryRejection>,
) -> Response {
    s.intake(&method, &uri, &headers, &[]);
    s.latency().await;
    let anthropic = headers.contains_key("anthropic-version");
    if let Some(resp) = check_auth(anthropic, &headers) {
        return resp;
    }
    if !anthropic {
        let data: Vec<Value> = OPENAI_MODELS.iter().map(openai_model_json).collect();
        return json_response(StatusCode::OK, &json!({"object": "list", "data": data}));
    }
    let Ok(Query(q)) = query else {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "bad query string",
            None,
        );
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "limit: must be between 1 and 1000",
            None,
        );
    }
    let all = &ANTHROPIC_MODELS;
    let position = |id: &str| all.iter().position(|m| m.id == id);
    let (page, has_more) = if let Some(before) = q.before_id.as_deref() {
        let end = position(before).unwrap_or(0);
        let start = end.saturating_sub(limit);
        (&all[start..end], start > 0)
    } else {
        let start = match q.after_id.as_deref() {
            Some(after) => position(after).map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let end = (start + limit).min(all.len());
        (&all[start..end], end < all.len())
    };
    let data: Vec<Value> = page.iter().map(anthropic_model_json).collect();
    json_response(
        StatusCode::OK,
        &json!({
            "data": data,
            "has_more": has_more,
            "first_id": page.first().map(|m| m.id),
            "last_id": page.last().map(|m| m.id),
        }),
    )
}

async fn get_model(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.intake(&method, &uri, &headers, &[]);
    s.latency().await;
    let anthropic = headers.contains_key("anthropic-version");
    if let Some(resp) = check_auth(anthropic, &headers) {
        return resp;
    }
    let found = if anthropic {
        ANTHROPIC_MODELS
            .iter()
            .find(|m| m.id == id)
            .map(anthropic_model_json)
    } else {
        OPENAI_MODELS
            .iter()
            .find(|m| m.id == id)
            .map(openai_model_json)
    };
    match (found, anthropic) {
        (Some(model), _) => json_response(StatusCode::OK, &model),
        (None, true) => anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {id}"),
            None,
        ),
        (None, false) => openai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            &format!("The model `{id}` does not exist"),
            None,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared plumbing for the dialect handlers

/// Counts per `fail_first` KEY, process-wide (shared by every mock in the process).
static FAIL_COUNTS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Applies `delay`, then decides whether `key_error`, `fail_first` or `error` make this request
/// fail. `key` is the API key the request authenticated with (none on Ollama without one).
pub(crate) async fn scripted_failure(d: &Directives, key: Option<&str>) -> Option<ErrorDirective> {
    if let Some(delay) = d.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(key) = key
        && let Some(ke) = d.key_errors.iter().find(|ke| ke.key == key)
    {
        return Some(ke.error.clone());
    }
    if let Some(ff) = &d.fail_first {
        let seen = {
            let mut counts = FAIL_COUNTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = counts.entry(ff.key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if seen <= ff.count {
            return Some(ff.error.clone());
        }
    }
    d.error.clone()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn with_retry_after(mut resp: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub(crate) fn with_retry_after_ms(mut resp: Response, retry_after_ms: Option<u64>) -> Response {
    if let Some(ms) = retry_after_ms {
        resp.headers_mut().insert(
            HeaderName::from_static("retry-after-ms"),
            HeaderValue::from(ms),
        );
    }
    resp
}

pub(crate) fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

pub(crate) fn anthropic_error(
    status: StatusCode,
    error_type: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    with_retry_after(json_response(status, &body), retry_after)
}

/// The message of a scripted error; with `huge`, the marker that grows into N MiB.
fn scripted_message(e: &ErrorDirective, huge: bool) -> String {
    if huge {
        faults::HUGE_MARKER.to_owned()
    } else {
        format!("mock error {}", e.status)
    }
}

pub(crate) fn anthropic_scripted_error(e: &ErrorDirective, huge: bool) -> Response {
    let error_type = e
        .error_type
        .as_deref()
        .unwrap_or_else(|| anthropic_error_type(e.status));
    let resp = anthropic_error(
        status_code(e.status),
        error_type,
        &scripted_message(e, huge),
        e.retry_after,
    );
    with_retry_after_ms(resp, e.retry_after_ms)
}

pub(crate) fn openai_error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

pub(crate) fn openai_error(
    status: StatusCode,
    error_type: &str,
    code: Option<&str>,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body =
        json!({"error": {"message": message, "type": error_type, "param": null, "code": code}});
    with_retry_after(json_response(status, &body), retry_after)
}

pub(crate) fn openai_scripted_error(e: &ErrorDirective, huge: bool) -> Response {
    let (default_type, code) = openai_error_kind(e.status);
    let error_type = e.error_type.as_deref().unwrap_or(default_type);
    let resp = openai_error(
        status_code(e.status),
        error_type,
        code,
        &scripted_message(e, huge),
        e.retry_after,
    );
    with_retry_after_ms(resp, e.retry_after_ms)
}

/// One step of a scripted response body.
pub(crate) enum Step {
    Data(Bytes),
    Sleep(Duration),
    /// End the body with an error: hyper drops the connection mid-body.
    Abort,
}

/// How long to wait before aborting, so hyper flushes what was already sent.
pub(crate) const ABORT_FLUSH: Duration = Duration::from_millis(20);

/// Streams `steps`, sleeping `chunk_delay` between data chunks.
pub(crate) fn stepped_body(steps: Vec<Step>, chunk_delay: Duration) -> Body {
    let state = (steps.into_iter(), true);
    let stream = futures_util::stream::unfold(state, move |(mut steps, first)| async move {
        loop {
            match steps.next()? {
                Step::Data(bytes) => {
                    if !first && !chunk_delay.is_zero() {
                        tokio::time::sleep(chunk_delay).await;
                    }
                    return Some((Ok::<Bytes, std::io::Error>(bytes), (steps, false)));
                }
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Abort => {
                    let err = std::io::Error::other("mock: connection cut");
                    return Some((Err(err), (Vec::new().into_iter(), false)));
                }
            }
        }
    });
    Body::from_stream(stream)
}

pub(crate) fn sse_response(
    steps: Vec<Step>,
    chunk_delay: Duration,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Response {
    let mut resp = Response::new(stepped_body(steps, chunk_delay));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some((k, v)) = extra {
        h.insert(k, v);
    }
    resp
}

/// A 200 JSON response whose body is cut in the middle (`[[mock:cut]]` without streaming).
pub(crate) fn cut_json_response(body: &Value) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let half = bytes.slice(..bytes.len() / 2);
    let steps = vec![Step::Data(half), Step::Sleep(ABORT_FLUSH), Step::Abort];
    let mut resp = Response::new(stepped_body(steps, Duration::ZERO));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *buf, s).is_err() {
        buf.extend_from_slice(b"\"\"");
    }
}

/// Text of a content value: a string, or the `text` of `{"type":"text"}` parts joined by `\n`.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("text")
                    && let Some(t) = part.get("text").and_then(Value::as_str)
                {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
            out
        }
        _ => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub(crate) async fn server() -> MockServer {
        MockServer::start(MockOptions::default()).await.unwrap()
    }

    pub(crate) fn client() -> reqwest::Client {
        crate::http_client()
    }

    pub(crate) async fn body_json(resp: reqwest::Response) -> Value {
        let bytes = resp.bytes().await.unwrap();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
    }

    /// Splits an SSE body into (event name, data) pairs.
    pub(crate) fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
        body.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = None;
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (name, data)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[tokio::test]
    async fn models_both_dialects_and_pagination() {
        let mock = server().await;
        let c = client();
        let url = format!("{}/v1/models", mock.base_url());
        let r = c.get(&url).bearer_auth("k").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v = body_json(r).await;
        assert_eq!(v["object"], "list");
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == "gpt-4o-mini")
        );
        assert_eq!(v["data"][0]["object"], "model");

        let anth = |q: &str| {
            c.get(format!("{url}{q}"))
                .header("x-api-key", "k")
                .header("anthropic-version", "2023-06-01")
                .send()
        };
        let v = body_json(anth("").await.unwrap()).await;
        assert_eq!(v["has_more"], false);
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(v["first_id"], v["data"][0]["id"]);
        let v = body_json(anth("?limit=1").await.unwrap()).await;
        assert_eq!(v["has_more"], true);
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        let first = v["last_id"].as_str().unwrap().to_owned();
        let v = body_json(anth(&format!("?limit=1&after_id={first}")).await.unwrap()).await;
        assert_eq!(v["has_more"], true);
        let second = v["first_id"].as_str().unwrap().to_owned();
        assert_ne!(first, second);
        let v = body_json(anth(&format!("?before_id={second}")).await.unwrap()).await;
        assert_eq!(v["first_id"], first.as_str());
        assert_eq!(v["has_more"], false);
        let v = body_json(anth("?after_id=claude-opus-4-1-20250805").await.unwrap()).await;
        assert_eq!(v["data"], json!([]));
        assert_eq!(v["first_id"], Value::Null);

        let r = c
            .get(format!("{url}/claude-sonnet-4-5-20250929"))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        assert_eq!(body_json(r).await["display_name"], "Claude Sonnet 4.5");

        // Auth per dialect.
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(body_json(r).await["error"]["code"], "invalid_api_key");
        let r = c
            .get(&url)
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", "bad-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(body_json(r).await["error"]["type"], "authentication_error");
    }

    #[tokio::test]
    async fn recording_and_control_endpoints() {
        let mock = server().await;
        let c = client();
        let r = c
            .get(format!("{}/health", mock.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        c.post(format!("{}/v1/chat/completions?x=1", mock.base_url()))
            .bearer_auth("sk-test")
            .header("X-Custom", "Yes")
            .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await
            .unwrap();
        c.post(format!("{}/nope", mock.base_url()))
            .body("not json")
            .send()
            .await
            .unwrap();
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/v1/chat/completions?x=1");
        assert_eq!(reqs[0].header("x-custom"), Some("Yes"));
        assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-test"));
        assert_eq!(reqs[0].body["model"], "gpt-4o");
        assert_eq!(reqs[1].path, "/nope");
        assert_eq!(reqs[1].body, Value::Null);

        let v = body_json(
            c.get(format!("{}/_mock/requests", mock.base_url()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["headers"][0].as_array().unwrap().len(), 2);
        let r = c
            .delete(format!("{}/_mock/requests", mock.base_url()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert!(mock.requests().is_empty());

        let quiet = MockServer::start(MockOptions {
            record: false,
            ..MockOptions::default()
        })
        .await
        .unwrap();
        c.get(format!("{}/v1/models", quiet.base_url()))
            .bearer_auth("k")
            .send()
            .await
            .unwrap();
        assert!(quiet.requests().is_empty());
    }

    #[tokio::test]
    async fn drop_shuts_down() {
        let mock = server().await;
        let url = format!("{}/health", mock.base_url());
        drop(mock);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(client().get(&url).send().await.is_err());
    }
}
