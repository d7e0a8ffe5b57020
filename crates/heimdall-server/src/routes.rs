//! The `/anthropic` surface and `/health`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use heimdall_core::{Gateway, GatewayError, ModelsQuery, Reply, RequestContext};
use heimdall_protocol::dialect::FrontDoor;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::error::ErrorType;

/// The request id of the current request, set by [`request_id`] before any handler runs.
#[derive(Clone)]
struct RequestId(String);

/// The front door of the `/anthropic` routes.
static ANTHROPIC: Anthropic = Anthropic;

pub fn router(gateway: Arc<Gateway>) -> Router {
    let anthropic = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let app = Router::new()
        .nest("/anthropic", anthropic)
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(gateway);
    with_edge_layers(app)
}

/// What every route gets: a request id, Anthropic-shaped 500s for panics, Anthropic-shaped
/// bodies for the framework's own error answers, and no framework body limit (bodies are read
/// by `read_body` against the configured limit, answering 413 in Anthropic's shape; axum's own
/// limit would answer in plain text).
fn with_edge_layers(app: Router) -> Router {
    app.layer(DefaultBodyLimit::disable())
        // A bug must cost one request an Anthropic-shaped 500, never the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn(shape_framework_errors))
}

/// Rewrites error answers that axum produced itself (a 405 on a route without our fallback,
/// an extractor's plain-text rejection) into Anthropic's shape; ours are JSON already.
/// Outside `request_id`, so it reads the id from the response instead of cloning it for
/// every request.
async fn shape_framework_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        // axum adds the `allow` header after the layers.
        format!("method {method} is not allowed here")
    } else {
        // Rejection texts are short; a longer body is not one of them.
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        match std::str::from_utf8(&text).map(str::trim) {
            Ok(t) if !t.is_empty() => t.to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    };
    let request_id = parts
        .headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let err = GatewayError {
        status: status.as_u16(),
        ..GatewayError::new(ErrorType::from_status(status.as_u16()), message)
    };
    let mut shaped = error_response(&ANTHROPIC, &err, request_id);
    if let Some(v) = parts.headers.get("request-id") {
        shaped.headers_mut().insert("request-id", v.clone());
    }
    shaped
}

/// Gives every request an id and every response a `request-id` header.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = Gateway::new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("request-id", v);
    }
    res
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
    if let Some(ra) = &err.retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, ra.clone());
    }
    res
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    // The request id is only in the outer layer's header: the panicking handler took the
    // request with it.
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
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Reads the whole body, refusing more than the configured limit with a 413 and a body that
/// does not arrive in time with a 408.
async fn read_body(gateway: &Gateway, body: Body) -> Result<Bytes, GatewayError> {
    let limit = gateway.max_request_body_bytes();
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

/// What core needs to know about a request on the `/anthropic` surface.
fn context(headers: &HeaderMap, rid: &RequestId) -> Arc<RequestContext> {
    Arc::new(RequestContext::from_headers(
        rid.0.clone(),
        &ANTHROPIC,
        headers,
    ))
}

async fn messages(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(rid): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = context(&headers, &rid);
    let result = match read_body(&gateway, body).await {
        Ok(body) => gateway.messages(Arc::clone(&ctx), body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(Reply::Json(bytes)) => json_response(bytes),
        Ok(Reply::Stream(stream)) => (
            [
                (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(e) => error_response(ctx.front_door, &e, &rid.0),
    }
}

async fn count_tokens(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(rid): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = context(&headers, &rid);
    let result = match read_body(&gateway, body).await {
        Ok(body) => gateway.count_tokens(Arc::clone(&ctx), body).await,
        Err(e) => Err(e),
    };
    json_or_error(&ctx, result)
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
    axum::Extension(rid): axum::Extension<RequestId>,
    headers: HeaderMap,
    query: Result<Query<ModelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = context(&headers, &rid);
    let result = match query {
        Ok(Query(q)) => gateway.list_models(&ctx, &q).await,
        Err(e) => Err(GatewayError::invalid_request(e.body_text())),
    };
    json_or_error(&ctx, result)
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(rid): axum::Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = context(&headers, &rid);
    json_or_error(&ctx, gateway.get_model(&ctx, &id).await)
}

async fn health() -> Response {
    json_response(Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Unknown path. The body is read first (see `discard_body`); the message names the path as
/// the client sent it, `/anthropic` prefix included (`nest` strips it from `uri()`).
async fn not_found(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(rid): axum::Extension<RequestId>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    refuse_route(&gateway, &rid, &uri, req, |method, path| {
        GatewayError::not_found(format!("no route for {method} {path}"))
    })
    .await
}

async fn method_not_allowed(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(rid): axum::Extension<RequestId>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    refuse_route(&gateway, &rid, &uri, req, |method, path| GatewayError {
        status: 405,
        ..GatewayError::invalid_request(format!("method {method} is not allowed on {path}"))
    })
    .await
}

/// Reads and discards the body, then answers the error `refusal` builds from the method and
/// the path the client used.
async fn refuse_route(
    gateway: &Gateway,
    rid: &RequestId,
    uri: &axum::http::Uri,
    req: Request,
    refusal: impl FnOnce(&axum::http::Method, &str) -> GatewayError,
) -> Response {
    let method = req.method().clone();
    let err = match discard_body(gateway, req.into_body()).await {
        Ok(()) => refusal(&method, uri.path()),
        Err(e) => e,
    };
    error_response(&ANTHROPIC, &err, &rid.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_an_anthropic_500() {
        async fn boom() -> Response {
            panic!("bug")
        }
        let app = with_edge_layers(Router::new().route("/boom", get(boom)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
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
