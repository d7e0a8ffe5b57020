//! Files for a gateway that fetches images and documents given by URL: `GET /media/{name}`
//! serves a small file, bent by query parameters (see the README's table). Requests are
//! recorded like API calls, so tests can check what the fetcher sent; the body bytes written
//! are counted ([`MockServer::media_bytes_served`](super::MockServer::media_bytes_served)), so
//! a test can tell that a fetch was cut off instead of read to the end.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::Shared;

/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
/// The bytes that make a file a JPEG, GIF, WebP or PDF to a sniffer; enough for a fetcher.
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00mock jpeg";
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00mock gif";
const WEBP: &[u8] = b"RIFF\x1a\x00\x00\x00WEBPVP8 mock webp";
const PDF: &[u8] = b"%PDF-1.4\n% mock pdf\n%%EOF\n";
pub const MEDIA_TEXT: &str = "a plain text document from the mock";

#[derive(Deserialize)]
pub(super) struct MediaQuery {
    /// Replaces the `content-type`; `none` leaves it out.
    #[serde(rename = "type")]
    content_type: Option<String>,
    /// Answers with this status (and an empty body).
    status: Option<u16>,
    /// Answers `302` to this URL.
    location: Option<String>,
    /// Answers `302` to the same URL with one redirect less, N times.
    redirects: Option<u32>,
    /// Waits this long before the answer's head.
    delay_ms: Option<u64>,
    /// Serves an N MiB body (the file's bytes, then filler), written piecewise.
    huge_mb: Option<u64>,
    /// With `huge_mb`: declare the length in `content-length` instead of sending chunked.
    declared: Option<bool>,
}

pub(super) async fn serve(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<MediaQuery>, QueryRejection>,
) -> Response {
    s.intake(&method, &uri, &headers, &[]);
    let Ok(Query(q)) = query else {
        return (StatusCode::BAD_REQUEST, "bad query string").into_response();
    };
    if let Some(ms) = q.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = q.redirects.filter(|n| *n > 0) {
        let query = uri
            .query()
            .unwrap_or_default()
            .replace(&format!("redirects={n}"), &format!("redirects={}", n - 1));
        return redirect(&format!("{}?{query}", uri.path()));
    }
    if let Some(location) = &q.location {
        return redirect(location);
    }
    if let Some(status) = q.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return status.into_response();
    }
    let (content_type, bytes): (&str, Bytes) = match name.as_str() {
        "image.png" => (
            "image/png",
            base64::engine::general_purpose::STANDARD
                .decode(PNG)
                .map(Bytes::from)
                .unwrap_or_default(),
        ),
        "image.jpg" => ("image/jpeg", Bytes::from_static(JPEG)),
        "image.gif" => ("image/gif", Bytes::from_static(GIF)),
        "image.webp" => ("image/webp", Bytes::from_static(WEBP)),
        "doc.pdf" => ("application/pdf", Bytes::from_static(PDF)),
        "doc.txt" => ("text/plain; charset=utf-8", Bytes::from(MEDIA_TEXT)),
        "page.html" => (
            "text/html",
            Bytes::from_static(b"<html>not an image</html>"),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let content_type = match q.content_type.as_deref() {
        Some("none") => None,
        Some(t) => Some(t),
        None => Some(content_type),
    };
    let (body, length) = match q.huge_mb {
        Some(mib) => (huge(&s, bytes, mib), mib * 1024 * 1024),
        None => {
            s.media_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            (Body::from(bytes.clone()), bytes.len() as u64)
        }
    };
    let mut resp = Response::new(body);
    if let Some(t) = content_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    if q.huge_mb.is_none() || q.declared == Some(true) {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    resp
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `head`, then filler up to `mib` MiB, one 64 KiB piece at a time: only what the reader
/// takes is ever produced, and each piece is counted as it goes out.
fn huge(s: &Arc<Shared>, head: Bytes, mib: u64) -> Body {
    const PIECE: usize = 64 * 1024;
    let filler = Bytes::from(vec![b'.'; PIECE]);
    let total = mib * 1024 * 1024;
    let counted = Arc::clone(s);
    let mut sent = 0u64;
    let pieces = std::iter::from_fn(move || {
        if sent >= total {
            return None;
        }
        let piece = if sent == 0 {
            head.clone()
        } else {
            filler.slice(..PIECE.min((total - sent) as usize))
        };
        sent += piece.len() as u64;
        counted
            .media_bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        Some(Ok::<_, Infallible>(piece))
    });
    Body::from_stream(futures_util::stream::iter(pieces))
}
