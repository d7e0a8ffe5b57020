//! The raw front: the mock's router behind a hand-written HTTP/1.1 server, for the faults hyper
//! will not write (a 101 or 600 status line, closing a connection without an answer, closing
//! an idle keep-alive connection on a schedule).
//!
//! One request at a time per connection: read the head and its `content-length` body, let the
//! router answer (recording, directives and all), then either write that answer (length-framed
//! when its size is known, chunked otherwise, flushed frame by frame) or do what the
//! answer's [`ConnectionFault`] says. Chunked request bodies are refused with 501.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version, header,
};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::directives::ConnectionFault;

/// Largest request head read; a real client's is a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body, as the hyper mock's body limit.
const MAX_BODY: usize = 256 * 1024 * 1024;
const MAX_HEADERS: usize = 100;

/// Accepts connections until the task is aborted; the connections live in a set owned by this
/// task, so aborting it ends them too.
pub(super) async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Like the hyper mock: no Nagle delay on small stream frames.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(tcp, router.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "raw mock: accept failed");
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A request the raw front refuses, answered with `status` and closed.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

enum ReadError {
    Io,
    Refused(Refusal),
}

/// A parsed request head.
struct Head {
    method: Method,
    target: String,
    headers: HeaderMap,
    keep_alive: bool,
    head_len: usize,
    body_len: usize,
}

async fn connection(mut tcp: TcpStream, router: Router) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // `close_idle`: how long the connection may wait for its next request.
    let mut idle_limit = None;
    loop {
        let read = read_request(&mut tcp, &mut buf);
        let read = match idle_limit {
            Some(limit) => match tokio::time::timeout(limit, read).await {
                Ok(read) => read,
                Err(_) => return,
            },
            None => read.await,
        };
        let (request, keep_alive) = match read {
            Ok(Some(request)) => request,
            Ok(None) | Err(ReadError::Io) => return,
            Err(ReadError::Refused(refusal)) => {
                let _ = tcp.write_all(&refusal_bytes(&refusal)).await;
                return;
            }
        };
        let Ok(resp) = router.clone().oneshot(request).await;
        idle_limit = match resp.extensions().get::<ConnectionFault>() {
            // Dropping the socket closes it with nothing written.
            Some(ConnectionFault::Hangup) => return,
            Some(ConnectionFault::Status { code, location }) => {
                let _ = tcp
                    .write_all(&status_bytes(*code, location.as_deref()))
                    .await;
                return;
            }
            Some(ConnectionFault::CloseIdle(limit)) => Some(*limit),
            None => None,
        };
        if write_response(&mut tcp, resp, keep_alive).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request; `Ok(None)` is a clean close between requests. The bool is keep-alive.
async fn read_request(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<(Request<Body>, bool)>, ReadError> {
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Err(refused(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ));
        }
        if tcp.read_buf(buf).await.map_err(|_| ReadError::Io)? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io)
            };
        }
    };
    let total = head.head_len + head.body_len;
    while buf.len() < total {
        buf.reserve(total - buf.len());
        if tcp.read_buf(buf).await.map_err(|_| ReadError::Io)? == 0 {
            return Err(ReadError::Io);
        }
    }
    let body = buf.split_to(total).freeze().slice(head.head_len..);
    let mut request = Request::builder()
        .method(head.method)
        .uri(head.target)
        .version(Version::HTTP_11)
        .body(Body::from(body))
        .map_err(|_| refused(StatusCode::BAD_REQUEST, "bad request target"))?;
    *request.headers_mut() = head.headers;
    Ok(Some((request, head.keep_alive)))
}

fn refused(status: StatusCode, reason: &'static str) -> ReadError {
    ReadError::Refused(Refusal { status, reason })
}

/// Parses the head at the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let bad = || refused(StatusCode::BAD_REQUEST, "malformed request head");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad()),
    };
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| bad())?;
    let target = parsed.path.unwrap_or("/").to_owned();
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(refused(
            StatusCode::NOT_IMPLEMENTED,
            "the raw mock reads content-length bodies only",
        ));
    }
    let body_len = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(bad)?,
        None => 0,
    };
    if body_len > MAX_BODY {
        return Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    // HTTP/1.0 closes unless asked not to; the mock's clients speak HTTP/1.1.
    let keep_alive = parsed.version == Some(1) && !close;
    Ok(Some(Head {
        method,
        target,
        headers,
        keep_alive,
        head_len,
        body_len,
    }))
}

/// Writes the router's answer as HTTP/1.1, each body frame as soon as it is produced.
async fn write_response(
    tcp: &mut TcpStream,
    resp: Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // A length set by the handler (huge bodies) frames the body like a known size does.
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", status.as_str(), reason(status)).as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !bodiless {
        match length {
            Some(n) => head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
            None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    tcp.write_all(&head).await?;
    if bodiless {
        return Ok(());
    }
    let mut frames = body.into_data_stream();
    let mut chunk = Vec::new();
    while let Some(frame) = frames.next().await {
        // A body error (`cut`) ends the connection mid-body, as hyper does.
        let frame = frame.map_err(std::io::Error::other)?;
        if frame.is_empty() {
            continue;
        }
        if length.is_some() {
            tcp.write_all(&frame).await?;
        } else {
            chunk.clear();
            chunk.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
            chunk.extend_from_slice(&frame);
            chunk.extend_from_slice(b"\r\n");
            tcp.write_all(&chunk).await?;
        }
    }
    if length.is_none() {
        tcp.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Mock Status")
}

fn refusal_bytes(refusal: &Refusal) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        refusal.status.as_str(),
        reason(refusal.status),
        refusal.reason.len(),
        refusal.reason,
    )
    .into_bytes()
}

/// `status CODE [location=URL]`, byte for byte as documented in [`super::directives`].
fn status_bytes(code: u16, location: Option<&str>) -> Vec<u8> {
    let reason = StatusCode::from_u16(code).map_or("Mock Status", reason);
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    if (100..200).contains(&code) {
        if code == 101 {
            out.push_str("connection: upgrade\r\nupgrade: mock\r\n");
        }
        out.push_str("\r\n");
        return out.into_bytes();
    }
    if let Some(location) = location {
        out.push_str(&format!("location: {location}\r\n"));
    }
    let body = format!("{{\"mock_status\":{code}}}");
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}
