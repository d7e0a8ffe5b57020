//! Scripted faults applied to a planned answer, shared by both dialects: how a stream is cut,
//! stalled, corrupted or ended early, and 2xx bodies that are not what was asked for.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::directives::{BodyFault, EarlyEof};
use super::reply::Plan;
use super::{ABORT_FLUSH, Step, json_response, sse_response};

/// `body html`: what an HTML error page from a proxy or CDN in front of a provider looks like.
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>mock</title></head>\
<body><h1>mock: an HTML page where JSON was expected</h1></body></html>\n";

/// `garbage`: a line that is not UTF-8, then a line that is no SSE field a client knows, then the
/// blank line that would dispatch it.
pub(crate) const GARBAGE: &[u8] = b"\xff\xfe\x80 mock garbage \xc3\x28\n{not an sse line}\n\n";

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
    let rest = frames.split_off(mark.min(frames.len()));
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
