//! The client-facing edge: our own accept loop on hyper-util's HTTP/1.1 + HTTP/2 builder, with
//! a bound on open connections, header/body/idle timeouts per connection, and Anthropic-shaped
//! answers for requests refused before the router.
//!
//! Errors below the application: hyper's HTTP/1.1 server answers a request it cannot parse
//! itself, with a bare `400`, `414` (URI over 64 KiB) or `431` (head over `max_buf_size`, or
//! more than 100 headers), then closes. It offers no hook, so `EdgeIo` swaps those bytes for
//! our answer. URIs over `--max-uri-bytes` reach `EdgeService` and get a 414 with a precise
//! message. What stays hyper's own: a request head that is not complete by the header
//! timeout is closed without an answer (there is no request to answer yet), and over HTTP/2
//! the h2 crate answers a header list over the limit with a bare 431 and protocol errors with
//! `RST_STREAM`/`GOAWAY` frames, inside its framing where we cannot swap bytes.

mod conn;
mod io;
mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use heimdall_core::Gateway;
use heimdall_protocol::dialect::anthropic::error_body as anthropic_error_body;
use heimdall_protocol::error::ErrorType;
use http::{StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub(crate) use service::{BodyTimeout, RequestId};

use conn::{ConnState, Expired};
use io::EdgeIo;
use service::EdgeService;

/// Limits and timeouts of client connections (flags in `cli`).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_keepalive_interval: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub half_close: bool,
}

/// An HTTP/2 peer that does not answer a keep-alive ping within this is dropped.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after an accept error such as EMFILE, doubled while errors persist.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` turns true, then waits for open connections to
/// finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    gateway: Arc<Gateway>,
    config: EdgeConfig,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&config));
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut at_cap = false;
    loop {
        // Back-pressure: at the cap nothing is accepted; new connections wait in the kernel's
        // listen backlog until a connection closes.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(
                        max_connections = config.max_connections,
                        "connection cap reached; new connections wait until others close"
                    );
                    at_cap = true;
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((tcp, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                connections.spawn(connection(
                    tcp,
                    permit,
                    builder.clone(),
                    app.clone(),
                    gateway.clone(),
                    config.clone(),
                    stop.clone(),
                ));
            }
            // The client gave up between connecting and our accept: nothing to do.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "accept: connection gone before it was accepted");
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: retrying at once would spin; pause and say why.
                tracing::warn!(
                    error = %e,
                    pause_ms = backoff.as_millis() as u64,
                    "could not accept a connection (too many open files? see --max-connections and `ulimit -n`)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    // New connections are refused from here on; open ones finish their requests.
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

fn http_builder(config: &EdgeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The connection watchdog owns the header and idle timeouts: hyper's header timer
        // also runs while a kept-alive connection waits for its next request, so it would
        // cut every idle connection at the (short) header timeout.
        .header_read_timeout(None)
        .half_close(config.half_close)
        // Bounds the request line plus headers (431 beyond) and so each connection's buffer.
        .max_buf_size(config.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keepalive_interval)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn connection(
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    gateway: Arc<Gateway>,
    config: Arc<EdgeConfig>,
    mut stop: watch::Receiver<bool>,
) {
    // Small SSE frames and split writes must not wait for the client's delayed ACK (Nagle).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
    }
    let state = Arc::new(ConnState::new(
        config.header_read_timeout,
        config.idle_timeout,
    ));
    let io = TokioIo::new(EdgeIo::new(tcp, state.clone(), config.max_header_bytes));
    // `app` is the finished router cloned per connection (an `Arc` clone): serving an
    // unfinished `Router` would re-collect its route table per connection (~4.6 KB and a
    // rehash each, seen in a heap profile of 1,000 open streams).
    let service = EdgeService {
        app,
        gateway,
        conn: state.clone(),
        body_timeout: config.body_read_timeout,
        max_uri_bytes: config.max_uri_bytes,
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    // Once a graceful close has started, the connection gets this long to finish it.
    let mut hard_deadline: Option<Instant> = None;
    // Created once; the timer is re-armed only when it fires (see `ConnState::next_check`),
    // so serving a request never touches the timer wheel or wakes this task.
    let stop_wait = stop.wait_for(|s| *s);
    tokio::pin!(stop_wait);
    let check = tokio::time::sleep_until(state.next_check(Instant::now()));
    tokio::pin!(check);
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = &mut stop_wait, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut check => {
                let now = Instant::now();
                if hard_deadline.is_some_and(|at| at <= now) {
                    tracing::debug!("client connection did not close in time; dropping it");
                    return;
                }
                match state.expired(now) {
                    Some(Expired::Head) => {
                        tracing::debug!("request head not received in time; closing the connection");
                        return;
                    }
                    Some(Expired::Idle) => {
                        tracing::trace!("idle client connection; closing it");
                        if !closing {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                        hard_deadline = Some(now + config.header_read_timeout);
                    }
                    None => {}
                }
                let next = state.next_check(now);
                check.as_mut().reset(hard_deadline.map_or(next, |at| at.min(next)));
            }
        }
    }
}

/// An Anthropic error answer for requests refused before the router and for the framework's
/// own error answers (the `request-id` header is added with every answer's).
fn error_response(status: StatusCode, message: &str, request_id: &str) -> Response {
    let body = anthropic_error_body(
        ErrorType::from_status(status.as_u16()),
        message,
        Some(request_id),
    );
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    res.extensions_mut().insert(Cause(message.to_owned()));
    res
}

/// Why a request failed, carried on its error answer to the edge's log line.
#[derive(Clone)]
pub(crate) struct Cause(pub(crate) String);

/// The same answer as raw HTTP/1.1 bytes, to replace hyper's own bare error answers.
fn error_bytes(status: StatusCode, message: &str) -> Bytes {
    let id = Gateway::new_request_id();
    let body = anthropic_error_body(ErrorType::from_status(status.as_u16()), message, Some(&id));
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: {id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Bytes::from(out)
}
