//! Scripted faults applied to a planned answer, shared by both dialects: how a stream is cut,
//! stalled, corrupted or ended early, 2xx bodies that are not what was asked for, and faults
//! that bend the whole answer (huge, gzip).

use std::convert::Infallible;
use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use serde_json::Value;

use super::directives::{BodyFault, ConnectionFault, Directives, EarlyEof};
use super::reply::Plan;
use super::{ABORT_FLUSH, Step, json_response, sse_response};

/// `body html`: what an HTML error page from a proxy or CDN in front of a provider looks like.
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>mock</title></head>\
<body><h1>mock: an HTML page where JSON was expected</h1></body></html>\n";

/// `garbage`: a line that is not UTF-8, then a line that is no SSE field a client knows, then the
/// blank line that would dispatch it.
const GARBAGE: &[u8] = b"\xff\xfe\x80 mock garbage \xc3\x28\n{not an sse line}\n\n";

/// A dialect's complete stream, with the points where faults strike.
pub(crate) struct StreamFrames {
    pub frames: Vec<Step>,
    /// Just after the first content: where `garbage`, `stall`, `cut` and `stream_error` strike.
    pub mark: usize,
    /// The finish frame (OpenAI `finish_reason` chunk / Anthropic `message_delta`), for `eof`.
    pub finish: usize,
}

/// Applies the plan's stream faults to `stream`; `error_event` is the dialect's in-band error.
pub(crate) fn script_stream(plan: &Plan, stream: StreamFrames, error_event: Step) -> Vec<Step> {
    let StreamFrames {
        mut frames,
        mark,
        finish,
    } = stream;
    match plan.eof {
        Some(EarlyEof::AfterContent) => frames.truncate(finish),
        Some(EarlyEof::AfterFinish) => frames.truncate(finish + 1),
        None => {}
    }
    let rest = frames.split_off(mark);
    let mut steps = frames;
    if plan.garbage {
        steps.push(Step::Data(Bytes::from_static(GARBAGE)));
    }
    if let Some(stall) = plan.stall {
        steps.push(Step::Sleep(stall));
    }
    if plan.cut {
        steps.push(Step::Sleep(ABORT_FLUSH));
        steps.push(Step::Abort);
        return steps;
    }
    if plan.stream_error {
        steps.push(error_event);
    } else {
        steps.extend(rest);
    }
    if let Some(hold) = plan.hold_open {
        steps.push(Step::Sleep(hold));
    }
    steps
}

/// The 200/204 answer for `body KIND`. `json` and `stream` build the dialect's normal non-stream
/// body and stream; only the one the kind needs is built.
pub(crate) fn body_response(
    kind: BodyFault,
    json: impl FnOnce() -> Value,
    stream: impl FnOnce() -> Vec<Step>,
    chunk_delay: Duration,
) -> Response {
    match kind {
        BodyFault::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            HTML_PAGE,
        )
            .into_response(),
        BodyFault::Truncated => {
            let mut bytes = serde_json::to_vec(&json()).unwrap_or_default();
            bytes.truncate(bytes.len() / 2);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response()
        }
        BodyFault::Json => json_response(StatusCode::OK, &json()),
        BodyFault::Sse => sse_response(stream(), chunk_delay, None),
        BodyFault::NoContent => StatusCode::NO_CONTENT.into_response(),
        BodyFault::NoData => sse_response(without_data_lines(stream()), chunk_delay, None),
    }
}

/// `body no_data`: each event keeps its other lines (`event:`); one left empty gets `id: N`, so
/// the stream still has one event per frame, none of which a client would dispatch.
fn without_data_lines(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            let Step::Data(frame) = step else {
                return step;
            };
            let mut out = Vec::with_capacity(frame.len());
            for line in frame.split(|&b| b == b'\n') {
                if !line.is_empty() && !line.starts_with(b"data:") {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            if out.is_empty() {
                out.extend_from_slice(format!("id: {i}\n").as_bytes());
            }
            out.push(b'\n');
            Step::Data(Bytes::from(out))
        })
        .collect()
}

/// `huge`: stands where the huge text goes; the serialized answer is split around it.
pub(crate) const HUGE_MARKER: &str = "HEIMDALL-MOCK-HUGE-TEXT";

const MIB: usize = 1024 * 1024;

/// The huge text repeats this unit: three words in 16 bytes, nothing a JSON string escapes.
const FILLER_UNIT: &[u8; 16] = b"lorem ipsum sit ";

/// Size of the one filler buffer every huge body shares (1 MiB is 16 of them).
const FILLER_LEN: usize = 64 * 1024;

static FILLER: LazyLock<Bytes> =
    LazyLock::new(|| Bytes::from(FILLER_UNIT.repeat(FILLER_LEN / FILLER_UNIT.len())));

/// Words in a huge text of `mib` MiB (for the reported usage).
pub(crate) fn huge_words(mib: u64) -> u64 {
    mib * (MIB / FILLER_UNIT.len() * 3) as u64
}

/// What the hyper mock answers to a connection-level directive it cannot honour.
pub(crate) const NEEDS_RAW_FRONT: &str = "bad mock directive: status, close_idle and hangup need \
the raw front (MockServer::start_raw, heimdall-mock --raw-http)";

/// Faults that bend the whole answer once the handler built it, scripted errors included.
pub(crate) struct AnswerFaults {
    huge: Option<u64>,
    gzip: bool,
    connection: Option<ConnectionFault>,
}

impl AnswerFaults {
    pub(crate) fn of(d: &Directives) -> Self {
        AnswerFaults {
            huge: d.huge,
            gzip: d.gzip,
            connection: d.connection.clone(),
        }
    }

    pub(crate) async fn apply(self, mut resp: Response) -> Response {
        if let Some(mib) = self.huge {
            resp = expand_huge(resp, mib).await;
        }
        if self.gzip {
            resp = gzip(resp);
        }
        // The raw front reads it off the response; handlers know nothing about connections.
        if let Some(fault) = self.connection {
            resp.extensions_mut().insert(fault);
        }
        resp
    }
}

/// Replaces [`HUGE_MARKER`] in the body with `mib` MiB of filler, streamed as clones of one
/// shared buffer, so no huge body is ever held in memory.
async fn expand_huge(resp: Response, mib: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    let chunks = usize::try_from(mib)
        .unwrap_or(usize::MAX)
        .saturating_mul(MIB / FILLER_LEN);
    if body.size_hint().exact().is_some() {
        // A whole (JSON) body is small before it grows: read it, and frame the grown body by
        // its length, as a provider would.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let Some((prefix, suffix)) = split_at_marker(&bytes) else {
            return Response::from_parts(parts, Body::from(bytes));
        };
        let length = prefix.len() + chunks * FILLER_LEN + suffix.len();
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        let pieces = huge_pieces(prefix, chunks, suffix).map(Ok::<_, Infallible>);
        return Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(pieces)));
    }
    // A stream: the frame (event) carrying the marker becomes one huge event.
    let frames = body.into_data_stream().flat_map(move |frame| {
        let pieces: Vec<Result<Bytes, axum::Error>> = match frame {
            Ok(frame) => match split_at_marker(&frame) {
                Some((prefix, suffix)) => huge_pieces(prefix, chunks, suffix).map(Ok).collect(),
                None => vec![Ok(frame)],
            },
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces)
    });
    Response::from_parts(parts, Body::from_stream(frames))
}

fn split_at_marker(bytes: &Bytes) -> Option<(Bytes, Bytes)> {
    let marker = HUGE_MARKER.as_bytes();
    let at = bytes.windows(marker.len()).position(|w| w == marker)?;
    Some((bytes.slice(..at), bytes.slice(at + marker.len()..)))
}

fn huge_pieces(prefix: Bytes, chunks: usize, suffix: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::once(prefix)
        .chain(std::iter::repeat_n(FILLER.clone(), chunks))
        .chain(std::iter::once(suffix))
}

/// Compresses the body as it streams; a sync flush after each frame keeps a stream's events
/// arriving one by one instead of when the compressor's buffer fills.
fn gzip(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    if body.size_hint().exact() == Some(0) {
        // Nothing to compress (a 204): even an empty gzip stream would be a body.
        return Response::from_parts(parts, body);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    let state = Some((body.into_data_stream(), encoder));
    let stream = futures_util::stream::unfold(state, |state| async move {
        let (mut frames, mut encoder) = state?;
        let compressed = match frames.next().await {
            Some(Ok(frame)) => encoder
                .write_all(&frame)
                .and_then(|()| encoder.flush())
                .map(|()| std::mem::take(encoder.get_mut())),
            // A cut upstream stays a cut: the error ends the body without the gzip trailer.
            Some(Err(e)) => Err(std::io::Error::other(e)),
            None => return Some((encoder.finish().map(Bytes::from), None)),
        };
        match compressed {
            Ok(bytes) => Some((Ok(Bytes::from(bytes)), Some((frames, encoder)))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
