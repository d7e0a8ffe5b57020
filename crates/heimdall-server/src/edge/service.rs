//! The per-connection service in front of the router: gives every request its id (a
//! `RequestId` extension, and the `request-id` header of every answer), refuses what must not
//! reach the router (URI too long, declared body too large), puts a deadline on the request
//! body, gives the framework's own error answers Anthropic's shape, and tracks requests in
//! flight for the connection's timeouts. Done here rather than in tower layers: each layer
//! would box and clone per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use bytes::Bytes;
use heimdall_core::{Gateway, RecordedFlag};
use http::{HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::conn::{ActiveGuard, ConnState};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct EdgeService {
    pub(crate) app: Router,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) body_timeout: Duration,
    pub(crate) max_uri_bytes: usize,
}

/// The id of the request being served, set before the router runs.
#[derive(Clone)]
pub(crate) struct RequestId(pub(crate) String);

impl EdgeService {
    /// The answer for a request that must not reach the router, if this is one.
    fn refusal(&self, req: &Request<Incoming>, request_id: &str) -> Option<Response> {
        let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Some(super::error_response(
                StatusCode::URI_TOO_LONG,
                &format!(
                    "the request URI is {uri_len} bytes long; the limit is {}",
                    self.max_uri_bytes
                ),
                request_id,
            ));
        }
        // A declared length over the limit is refused before a byte of the body is read, and
        // before hyper sends `100 Continue` to a client that waits for it.
        let limit = self.gateway.max_request_body_bytes();
        let declared = req.body().size_hint().exact();
        if let Some(len) = declared.filter(|&len| len > limit as u64) {
            return Some(super::error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body of {len} bytes exceeds the {limit}-byte limit"),
                request_id,
            ));
        }
        None
    }
}

impl hyper::service::Service<Request<Incoming>> for EdgeService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn call(&self, req: Request<Incoming>) -> EdgeFuture {
        let http2 = req.version() == Version::HTTP_2;
        let guard = self
            .conn
            .request_started(http2, !req.body().is_end_stream());
        let request_id = Gateway::new_request_id();
        let id_header = HeaderValue::from_str(&request_id).ok();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let recorded = RecordedFlag::default();
        let stage = match self.refusal(&req, &request_id) {
            Some(res) => Stage::Refused { res },
            None => {
                let body_conn = (!http2).then(|| self.conn.clone());
                let deadline = Instant::now() + self.body_timeout;
                let timeout = self.body_timeout;
                let mut req = req.map(|body| {
                    Body::new(DeadlineBody {
                        inner: body,
                        deadline,
                        timeout,
                        sleep: None,
                        conn: body_conn,
                    })
                });
                req.extensions_mut().insert(RequestId(request_id));
                req.extensions_mut().insert(recorded.clone());
                // The router is an `Arc`; the clone is how tower services are called by
                // shared reference (hyper-util's own adapter does the same).
                let mut app = self.app.clone();
                Stage::Route {
                    fut: tower_service::Service::call(&mut app, req),
                }
            }
        };
        EdgeFuture {
            stage,
            conn: self.conn.clone(),
            http2,
            guard: Some(guard),
            method,
            id_header,
            line: UnrecordedLine {
                uri,
                recorded,
                started: Instant::now(),
            },
        }
    }
}

/// What the edge needs for the log line of a request that got no record (refused before
/// routing, an unknown route, a model listing, an async poll): records write their own.
struct UnrecordedLine {
    uri: Uri,
    recorded: RecordedFlag,
    started: Instant,
}

impl UnrecordedLine {
    fn write(&self, method: &Method, res: &Response, request_id: Option<&str>) {
        if self.recorded.is_raised() {
            return;
        }
        let status = res.status().as_u16();
        let path = self.uri.path();
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let error = res.extensions().get::<super::Cause>().map(|c| c.0.as_str());
        let request_id = request_id.unwrap_or("-");
        macro_rules! emit {
            ($level:ident, $msg:literal) => {
                tracing::$level!(request_id, %method, path, status, elapsed_ms, error, $msg)
            };
        }
        // Probes and scrapes arrive every few seconds; they would drown the requests.
        let routine = matches!(path, "/health" | "/metrics") && status < 400;
        match (routine, status >= 400) {
            (true, _) => emit!(debug, "request completed"),
            (false, false) => emit!(info, "request completed"),
            (false, true) => emit!(info, "request failed"),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct EdgeFuture {
        #[pin]
        stage: Stage,
        conn: Arc<ConnState>,
        http2: bool,
        guard: Option<ActiveGuard>,
        method: Method,
        id_header: Option<HeaderValue>,
        line: UnrecordedLine,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProj]
    enum Stage {
        Route { #[pin] fut: RouteFuture<Infallible> },
        Refused { res: Response },
        /// Rewriting a framework error answer (rare: it reads the answer's text body).
        Shaping { fut: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl Future for EdgeFuture {
    type Output = Result<Response<GuardedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut res = loop {
            match this.stage.as_mut().project() {
                StageProj::Route { fut } => {
                    let res = match ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(never) => match never {},
                    };
                    if !is_framework_error(&res) {
                        break res;
                    }
                    let id = this.id_header.as_ref().and_then(|v| v.to_str().ok());
                    let fut = Box::pin(shape_framework_error(
                        res,
                        this.method.clone(),
                        id.unwrap_or_default().to_owned(),
                    ));
                    this.stage.set(Stage::Shaping { fut });
                }
                StageProj::Refused { res } => break std::mem::take(res),
                StageProj::Shaping { fut } => break ready!(fut.as_mut().poll(cx)),
            }
        };
        this.line.write(
            this.method,
            &res,
            this.id_header.as_ref().and_then(|v| v.to_str().ok()),
        );
        if let Some(id) = this.id_header.take() {
            // A name built at compile time; a `&str` name is parsed on every insert.
            const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("request-id");
            res.headers_mut().insert(REQUEST_ID, id);
        }
        // An HTTP/1.1 answer sent before its request body was read closes the connection:
        // the unread rest cannot be told apart from a next request. Say so, and drain.
        if !*this.http2 && this.conn.body_open() {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            this.conn.set_linger();
        }
        Poll::Ready(Ok(res.map(|inner| GuardedBody {
            inner,
            _guard: this.guard.take(),
        })))
    }
}

/// An error answer axum produced itself (a 405 on a route without our fallback, an
/// extractor's plain-text rejection); ours are JSON already.
fn is_framework_error(res: &Response) -> bool {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    (status.is_client_error() || status.is_server_error()) && !is_json
}

/// The framework error answer `res` in Anthropic's shape, its text as the message.
async fn shape_framework_error(res: Response, method: Method, request_id: String) -> Response {
    let (parts, body) = res.into_parts();
    let status = parts.status;
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("method {method} is not allowed here")
    } else {
        // Rejection texts are short; a longer body is not one of them.
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        match std::str::from_utf8(&text).map(str::trim) {
            Ok(t) if !t.is_empty() => t.to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    };
    let mut shaped = super::error_response(status, &message, &request_id);
    // `allow` on a 405, `retry-after` and the like stay.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name, value.clone());
        }
    }
    shaped
}

/// The response body; the request counts as in flight until it is dropped.
pub(crate) struct GuardedBody {
    inner: Body,
    _guard: Option<ActiveGuard>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body must have arrived by the deadline, counted from the request head.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Allocated only if the body is not already buffered when first read.
    sleep: Option<Pin<Box<Sleep>>>,
    /// HTTP/1.1: told when the body has been read to its end.
    conn: Option<Arc<ConnState>>,
}

impl DeadlineBody {
    fn ended(&self) {
        if let Some(conn) = &self.conn {
            conn.body_done();
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client did not finish sending the request body in time.
#[derive(Debug)]
pub(crate) struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimeout {}
