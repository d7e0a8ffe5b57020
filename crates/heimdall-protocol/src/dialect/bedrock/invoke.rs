//! Claude on Bedrock through InvokeModel / InvokeModelWithResponseStream: the body is
//! Anthropic's Messages request (model in the URL, `anthropic_version` in the body; the
//! provider edits the client's bytes with [`anthropic::cloud_body`]) and the answer is
//! Anthropic's message. Only the stream differs: AWS event stream messages whose `chunk`
//! events carry `{"bytes": "<base64 of one Anthropic event's JSON>"}`.
//!
//! So this dialect *is* the Anthropic dialect (same id: the exchange passes the client's bytes
//! through and taps usage with Anthropic's own tap), except for its framer, which unwraps
//! each chunk into the SSE event Anthropic would have sent, raw bytes included. The
//! pass-through pump, the tap and the client then see an Anthropic stream and nothing in core
//! knows about the wrapping. An exception in the stream becomes Anthropic's `error` event,
//! typed from the exception (`throttlingException` → `rate_limit_error`), which the tap
//! reports as the stream's failure.
//!
//! [`anthropic::cloud_body`]: crate::dialect::anthropic::cloud_body

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::Value;

use super::response::stream_failure;
use crate::dialect::anthropic::{self, Anthropic, error_body};
use crate::dialect::{
    AnswerSummary, DialectId, ModelInfo, TranslateError, UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::framing::aws_eventstream::EventStreamFramer;
use crate::framing::sse::write_event;
use crate::framing::{Frame, Framer, FramingError};

/// The `anthropic_version` Bedrock's Claude models take in the body.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Claude's Messages API on Bedrock.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeInvoke;

impl UpstreamDialect for ClaudeInvoke {
    fn id(&self) -> DialectId {
        anthropic::DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(ChunkFramer {
            inner: EventStreamFramer::new(max_event_bytes),
        })
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        Anthropic.answer_summary(body)
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Anthropic.usage_tap()
    }

    fn decode_model_list(&self, _body: &[u8]) -> Option<Vec<ModelInfo>> {
        None
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        None
    }

    /// Bedrock's CountTokens answers `{"inputTokens": n}`.
    fn pass_through_count(&self, body: &[u8]) -> Option<Result<u64, TranslateError>> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Count {
            input_tokens: u64,
        }
        Some(
            serde_json::from_slice::<Count>(body)
                .map(|c| c.input_tokens)
                .map_err(|e| TranslateError::Upstream(format!("CountTokens answer: {e}"))),
        )
    }
}

/// Event stream messages in, Anthropic SSE events out.
struct ChunkFramer {
    inner: EventStreamFramer,
}

impl Framer for ChunkFramer {
    fn push(&mut self, chunk: &[u8]) {
        self.inner.push(chunk);
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        while let Some(frame) = self.inner.next_frame()? {
            if let Some((kind, message)) = stream_failure(&frame) {
                return Ok(Some(sse_frame("error", &error_body(kind, &message, None))));
            }
            if frame.name() == Some("chunk") {
                return unwrap_chunk(&frame).map(Some);
            }
            // Other events (none are documented today) carry no Anthropic event.
        }
        Ok(None)
    }

    fn finish(&mut self) -> Option<Frame> {
        self.inner.finish()
    }
}

fn malformed(what: impl std::fmt::Display) -> FramingError {
    FramingError::Malformed(format!("Bedrock chunk: {what}"))
}

fn unwrap_chunk(frame: &Frame) -> Result<Frame, FramingError> {
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        bytes: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
    }
    let chunk: Chunk<'_> = serde_json::from_slice(&frame.data).map_err(malformed)?;
    let json = STANDARD.decode(chunk.bytes.as_bytes()).map_err(malformed)?;
    let head: Head<'_> = serde_json::from_slice(&json).map_err(malformed)?;
    if head.kind.is_empty()
        || !head
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(malformed("the event type is not a plain name"));
    }
    // An SSE `data:` line cannot hold a line break; JSON written across lines is compacted.
    let compact;
    let data = if memchr::memchr2(b'\n', b'\r', &json).is_some() {
        let value: Value = serde_json::from_slice(&json).map_err(malformed)?;
        compact = serde_json::to_vec(&value).map_err(malformed)?;
        &compact
    } else {
        &json
    };
    Ok(sse_frame(&head.kind, data))
}

/// The frame of `event: NAME\ndata: DATA\n\n`, with `name` and `data` slicing its raw bytes.
fn sse_frame(name: &str, data: &[u8]) -> Frame {
    let mut out = BytesMut::new();
    write_event(&mut out, name, data);
    let raw = out.freeze();
    let name_start = "event: ".len();
    let data_start = name_start + name.len() + "\ndata: ".len();
    Frame {
        name: Some(raw.slice(name_start..name_start + name.len())),
        data: raw.slice(data_start..data_start + data.len()),
        raw,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::dialect::TapVerdict;
    use heimdall_testkit::eventstream as es;

    fn chunk(json: &str) -> Vec<u8> {
        es::event(
            "chunk",
            format!(r#"{{"bytes":"{}","p":"abc"}}"#, STANDARD.encode(json)).as_bytes(),
        )
    }

    fn run(wire: &[u8]) -> Result<Vec<Frame>, FramingError> {
        let mut f = ClaudeInvoke.framer(1 << 20);
        let mut out = Vec::new();
        for b in wire.chunks(5) {
            f.push(b);
            while let Some(frame) = f.next_frame()? {
                out.push(frame);
            }
        }
        Ok(out)
    }

    #[test]
    fn chunks_become_anthropic_events() {
        let mut wire = chunk(r#"{"type":"message_start","message":{"usage":{"input_tokens":9}}}"#);
        wire.extend(chunk(
            "{\"type\":\"message_delta\",\n \"usage\":{\"output_tokens\":4}}",
        ));
        wire.extend(chunk(r#"{"type":"message_stop"}"#));
        let frames = run(&wire).unwrap();
        let text: String = frames
            .iter()
            .map(|f| String::from_utf8(f.raw.to_vec()).unwrap())
            .collect();
        assert_eq!(
            text,
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9}}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            )
        );
        let mut tap = ClaudeInvoke.usage_tap();
        let verdicts: Vec<_> = frames.iter().map(|f| tap.observe(f)).collect();
        assert_eq!(verdicts.last(), Some(&TapVerdict::Complete));
        assert_eq!(
            (tap.usage().input_tokens, tap.usage().output_tokens),
            (9, 4)
        );
    }

    #[test]
    fn exceptions_become_typed_error_events() {
        let wire = es::exception("throttlingException", br#"{"message":"Too many tokens"}"#);
        let frames = run(&wire).unwrap();
        assert_eq!(frames[0].name(), Some("error"));
        assert_eq!(
            &frames[0].data[..],
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Too many tokens"}}"#
        );
        assert_eq!(
            ClaudeInvoke.usage_tap().observe(&frames[0]),
            TapVerdict::Failed
        );
    }

    #[test]
    fn error_messages_become_api_errors() {
        let wire = es::message(
            &[
                (":message-type", es::HeaderValue::String("error")),
                (":error-code", es::HeaderValue::String("InternalFailure")),
                (":error-message", es::HeaderValue::String("try later")),
            ],
            b"",
        );
        let frames = run(&wire).unwrap();
        assert_eq!(
            &frames[0].data[..],
            br#"{"type":"error","error":{"type":"api_error","message":"try later"}}"#
        );
    }

    #[test]
    fn bad_chunks_are_malformed() {
        for payload in [
            r#"{"nobytes":1}"#.to_owned(),
            r#"{"bytes":"%%%"}"#.to_owned(),
            format!(r#"{{"bytes":"{}"}}"#, STANDARD.encode("not json")),
            format!(r#"{{"bytes":"{}"}}"#, STANDARD.encode(r#"{"type":"a\nb"}"#)),
        ] {
            let wire = es::event("chunk", payload.as_bytes());
            assert!(
                matches!(run(&wire), Err(FramingError::Malformed(_))),
                "{payload}"
            );
        }
    }
}
