//! The `/anthropic` surface and `/health`, and where the admin API (`crate::openapi`) joins them.

use std::sync::Arc;
use std::time::Duration;

use crate::edge::RequestId;
use crate::governance::GovernanceService;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use heimdall_core::{
    CacheStatus, Gateway, GatewayError, ModelsQuery, Reply, RequestContext, Served,
};
use heimdall_protocol::dialect::FrontDoor;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::error::ErrorType;
use heimdall_store::Store;

use crate::jobs::{AsyncJobs, AsyncRequest};

/// The front door of the `/anthropic` routes.
static ANTHROPIC: Anthropic = Anthropic;

/// What the routes share: the gateway, the async jobs and the logs store (when enabled).
#[derive(Clone)]
pub struct App {
    pub gateway: Arc<Gateway>,
    pub jobs: Arc<AsyncJobs>,
    pub store: Option<Store>,
    /// Virtual keys, budgets and rate limits; `None` in an app built without them.
    pub governance: Option<Arc<GovernanceService>>,
    /// Providers and client settings through the admin API; `None` in an app built without.
    pub config: Option<Arc<crate::config_service::ConfigService>>,
}

impl App {
    /// An app without a logs store: no request logs, no async inference.
    pub fn without_store(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            jobs: AsyncJobs::new(None, Duration::from_secs(30)),
            store: None,
            governance: None,
            config: None,
        }
    }
}

impl FromRef<App> for Arc<Gateway> {
    fn from_ref(app: &App) -> Self {
        Arc::clone(&app.gateway)
    }
}

pub fn router(app: App) -> Router {
    let anthropic = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let routes = Router::new()
        .nest("/anthropic", anthropic)
        .merge(crate::openapi::router(&app))
        .merge(crate::ui::router())
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(app);
    // Installed before the layer registers anything (a no-op when `serve` already did).
    crate::metrics::install();
    // Outermost, so that the 500 of a panic is counted too; after routing, so it sees the
    // route template.
    with_edge_layers(routes).layer(axum::middleware::from_fn(crate::metrics::track))
}

/// What every route gets: Anthropic-shaped 500s for panics, and no framework body limit
/// (bodies are read by `read_body` against the configured limit, answering 413 in Anthropic's
/// shape; axum's own limit would answer in plain text). Request ids and the shape of the
/// framework's own error answers are the edge's (`edge::service`).
fn with_edge_layers(app: Router) -> Router {
    app.layer(DefaultBodyLimit::disable())
        // A bug must cost one request an Anthropic-shaped 500, never the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// An error in the front door's shape, or, on the pass-through path, the upstream's own
/// answer as it came (key scrubbed).
fn error_response(front: &dyn FrontDoor, err: &GatewayError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(upstream) = &err.upstream {
        let mut res = (status, Body::from(upstream.body.clone())).into_response();
        res.headers_mut().extend(upstream.headers.clone());
        return res;
    }
    let body = front.error_body(err.kind, &err.message, request_id);
    let mut res = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    res.extensions_mut()
        .insert(crate::edge::Cause(err.message.clone()));
    if let Some(ra) = &err.retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, ra.clone());
    }
    res
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    // The request id is only in the edge's header: the panicking handler took the request
    // with it.
    let body = heimdall_protocol::dialect::anthropic::error_body(
        ErrorType::ApiError,
        "internal error in the gateway",
        None,
    );
    let mut res = (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    // Retrying the same request would hit the same bug.
    res.headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    res
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    // Room for every header an answer gets (type, request id, the four `x-bf-*`) in one
    // allocation, instead of a map that grows and rehashes on the way.
    headers.reserve(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads the whole body, refusing more than the configured limit with a 413 and a body that
/// does not arrive in time with a 408.
async fn read_body(ctx: &RequestContext, body: Body) -> Result<Bytes, GatewayError> {
    let limit = ctx.config.max_request_body_bytes;
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(&e, limit))
}

/// Reads the body to its end (within the same limits) and throws it away, so that a client
/// still sending gets our answer instead of a reset connection.
async fn discard_body(gateway: &Gateway, mut body: Body) -> Result<(), GatewayError> {
    use http_body_util::BodyExt;
    let limit = gateway.max_request_body_bytes();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e, limit))?;
        seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
        if seen > limit {
            return Err(body_too_large(limit));
        }
    }
    Ok(())
}

fn body_too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        ErrorType::RequestTooLarge,
        format!("request body exceeds the {limit}-byte limit"),
    )
}

fn body_error(e: &axum::Error, limit: usize) -> GatewayError {
    if find_cause::<http_body_util::LengthLimitError>(e).is_some() {
        return body_too_large(limit);
    }
    if let Some(timeout) = find_cause::<crate::edge::BodyTimeout>(e) {
        // Anthropic has no 408 type. `invalid_request_error` is its type for a client-side
        // fault (and what `ErrorType::from_status(408)` gives an upstream 408); `timeout_error`
        // means the server side timed out (504) and would wrongly blame the gateway.
        return GatewayError {
            status: 408,
            ..GatewayError::invalid_request(timeout.to_string())
        };
    }
    GatewayError::invalid_request(format!("could not read the request body: {e}"))
}

/// The first error of type `T` in `e`'s source chain.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// What core needs to know about a request on the `/anthropic` surface, and its body. The
/// request is taken apart rather than its headers extracted: that would copy them.
fn context(gateway: &Gateway, req: Request) -> (Arc<RequestContext>, Body) {
    let (ctx, body) = context_of(gateway, req);
    (Arc::new(ctx), body)
}

fn context_of(gateway: &Gateway, req: Request) -> (RequestContext, Body) {
    let (mut parts, body) = req.into_parts();
    let mut ctx = RequestContext::from_headers(
        request_id(&mut parts.extensions),
        &ANTHROPIC,
        &parts.headers,
        gateway.config(),
    );
    ctx.recorded = parts.extensions.remove();
    (ctx, body)
}

/// The id the edge gave this request (a fresh one when served without the edge).
fn request_id(extensions: &mut http::Extensions) -> String {
    extensions
        .remove::<RequestId>()
        .map_or_else(Gateway::new_request_id, |id| id.0)
}

async fn messages(State(app): State<App>, req: Request) -> Response {
    let gateway = &app.gateway;
    let (mut ctx, body) = context_of(gateway, req);
    let mut asked = AsyncRequest::of(&ctx.async_headers);
    // A refused request is answered (and recorded) by the exchange, never queued or polled.
    if ctx.refusal.is_some() {
        asked = AsyncRequest::None;
    }
    ctx.is_async = matches!(asked, AsyncRequest::Submit { .. });
    let ctx = Arc::new(ctx);
    let body = read_body(&ctx, body).await;
    match asked {
        AsyncRequest::None => {}
        AsyncRequest::Poll(id) => {
            // The body is read (the SDK re-sends the request) but only the job id counts.
            let polled = match body {
                Ok(_) => app.jobs.poll(&ctx, &id).await,
                Err(e) => Err(e),
            };
            return match polled {
                Ok((status, bytes)) => {
                    let mut response = json_response(bytes);
                    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    response
                }
                Err(e) => error_response(ctx.front_door, &e, &ctx.request_id),
            };
        }
        AsyncRequest::Submit { ttl } => {
            let submitted = match body {
                Ok(body) => {
                    app.jobs
                        .submit(Arc::clone(gateway), Arc::clone(&ctx), body, ttl)
                        .await
                }
                Err(e) => Err(e),
            };
            return match submitted {
                Ok(bytes) => json_response(bytes),
                Err(e) => error_response(ctx.front_door, &e, &ctx.request_id),
            };
        }
    }
    let result = match body {
        Ok(body) => gateway.messages(Arc::clone(&ctx), body).await,
        Err(e) => Err(e),
    };
    let answered = match result {
        Ok(answered) => answered,
        Err(e) => return error_response(ctx.front_door, &e, &ctx.request_id),
    };
    let mut response = match answered.body {
        Reply::Json(bytes) => json_response(bytes),
        Reply::Stream(stream) => (
            [
                (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
    };
    add_served_headers(&mut response, answered.served.as_ref());
    add_cache_headers(&mut response, answered.cache.as_ref());
    response
}

/// What the semantic cache did, in the names of Bifrost's `cache_debug` fields:
/// `x-bf-cache-hit` (`true`/`false`, only on requests that were looked up), and on a hit
/// `x-bf-cache-hit-type` (`direct`/`semantic`), `x-bf-cache-id` (for
/// `/api/cache/clear/{id}`), `x-bf-cache-similarity` and `x-bf-cache-threshold`.
fn add_cache_headers(response: &mut Response, status: Option<&CacheStatus>) {
    const HIT: HeaderName = HeaderName::from_static("x-bf-cache-hit");
    const HIT_TYPE: HeaderName = HeaderName::from_static("x-bf-cache-hit-type");
    const ID: HeaderName = HeaderName::from_static("x-bf-cache-id");
    const SIMILARITY: HeaderName = HeaderName::from_static("x-bf-cache-similarity");
    const THRESHOLD: HeaderName = HeaderName::from_static("x-bf-cache-threshold");
    let headers = response.headers_mut();
    match status {
        None => {}
        Some(CacheStatus::Miss) => {
            headers.insert(HIT, HeaderValue::from_static("false"));
        }
        Some(CacheStatus::Hit {
            kind,
            id,
            similarity,
            threshold,
        }) => {
            headers.insert(HIT, HeaderValue::from_static("true"));
            headers.insert(HIT_TYPE, HeaderValue::from_static(kind.as_str()));
            if let Ok(v) = HeaderValue::from_str(id) {
                headers.insert(ID, v);
            }
            for (name, value) in [(SIMILARITY, similarity), (THRESHOLD, threshold)] {
                if let Ok(v) = HeaderValue::from_str(&format!("{value:.4}")) {
                    headers.insert(name, v);
                }
            }
        }
    }
}

/// Who answered: `x-bf-provider`, `x-bf-model` (a fallback's when one answered),
/// `x-bf-key-name` (never the key) and `x-bf-attempts` (upstream requests sent, retries, other
/// keys and fallbacks included).
fn add_served_headers(response: &mut Response, served: Option<&Served>) {
    // Names built at compile time: `HeaderName::from_static` at run time parses every call.
    const PROVIDER: HeaderName = HeaderName::from_static("x-bf-provider");
    const MODEL: HeaderName = HeaderName::from_static("x-bf-model");
    const KEY_NAME: HeaderName = HeaderName::from_static("x-bf-key-name");
    const ATTEMPTS: HeaderName = HeaderName::from_static("x-bf-attempts");
    let Some(s) = served else { return };
    let headers = response.headers_mut();
    for (name, value) in [
        (PROVIDER, s.provider.as_str()),
        (MODEL, s.model.as_str()),
        (KEY_NAME, s.key.as_str()),
    ] {
        // A name that cannot be a header value (a client's odd model name) is left out.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    headers.insert(ATTEMPTS, HeaderValue::from(s.attempts));
}

async fn count_tokens(State(gateway): State<Arc<Gateway>>, req: Request) -> Response {
    let (ctx, body) = context(&gateway, req);
    let result = match read_body(&ctx, body).await {
        Ok(body) => gateway.count_tokens(Arc::clone(&ctx), body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(answered) => {
            let mut response = json_response(answered.body);
            add_served_headers(&mut response, answered.served.as_ref());
            response
        }
        Err(e) => error_response(ctx.front_door, &e, &ctx.request_id),
    }
}

/// A JSON answer, or the error in the front door's shape.
fn json_or_error(ctx: &RequestContext, result: Result<Bytes, GatewayError>) -> Response {
    match result {
        Ok(bytes) => json_response(bytes),
        Err(e) => error_response(ctx.front_door, &e, &ctx.request_id),
    }
}

async fn list_models(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<ModelsQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let (ctx, _) = context(&gateway, req);
    let result = match query {
        Ok(Query(q)) => gateway.list_models(&ctx, &q).await,
        Err(e) => Err(GatewayError::invalid_request(e.body_text())),
    };
    json_or_error(&ctx, result)
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (ctx, _) = context(&gateway, req);
    json_or_error(&ctx, gateway.get_model(&ctx, &id).await)
}

async fn health() -> Response {
    json_response(Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Unknown path. The body is read first (see `discard_body`); the message names the path as
/// the client sent it, `/anthropic` prefix included (`nest` strips it from `uri()`).
async fn not_found(
    State(gateway): State<Arc<Gateway>>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    refuse_route(&gateway, &uri, req, |method, path| {
        GatewayError::not_found(format!("no route for {method} {path}"))
    })
    .await
}

async fn method_not_allowed(
    State(gateway): State<Arc<Gateway>>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    refuse_route(&gateway, &uri, req, |method, path| GatewayError {
        status: 405,
        ..GatewayError::invalid_request(format!("method {method} is not allowed on {path}"))
    })
    .await
}

/// Reads and discards the body, then answers the error `refusal` builds from the method and
/// the path the client used.
async fn refuse_route(
    gateway: &Gateway,
    uri: &axum::http::Uri,
    req: Request,
    refusal: impl FnOnce(&axum::http::Method, &str) -> GatewayError,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let err = match discard_body(gateway, body).await {
        Ok(()) => refusal(&parts.method, uri.path()),
        Err(e) => e,
    };
    error_response(&ANTHROPIC, &err, &request_id(&mut parts.extensions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_an_anthropic_500_with_the_edge_request_id() {
        use clap::Parser;
        async fn boom() -> Response {
            panic!("bug")
        }
        let app = with_edge_layers(Router::new().route("/boom", get(boom)));
        let gateway =
            Arc::new(Gateway::new(heimdall_core::config::Config::from_env(&|_| None)).unwrap());
        let edge = crate::run::edge_config(&crate::cli::Cli::parse_from(["heimdall"]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::edge::serve(listener, app, gateway, edge, stop_rx));
        let res = heimdall_testkit::http_client()
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        assert!(
            res.headers()["request-id"]
                .to_str()
                .unwrap()
                .starts_with("req_")
        );
        assert_eq!(res.headers()["x-should-retry"], "false");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
