//! Gemini `streamGenerateContent?alt=sse` chunks → canonical deltas.
//!
//! Each event is a whole `GenerateContentResponse` holding the next parts; function calls come
//! whole, in one part. There is no end marker: the chunk with a `finishReason` (and the final
//! usage) is the last, so a stream that ends without one was cut.

use serde_json::Value;

use super::response::{
    Piece, error_message, first_candidate, pieces, stop_hint, usage_from_gemini,
};
use super::wire as g;
use crate::canonical::{Delta, StopReason};
use crate::dialect::StreamDecoder;
use crate::error::ErrorType;
use crate::framing::Frame;

#[derive(Debug, Default)]
pub(super) struct GeminiStreamDecoder {
    /// Function calls seen so far (the next call's number).
    calls: usize,
    pieces: Vec<Piece>,
    done: bool,
}

impl StreamDecoder for GeminiStreamDecoder {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>) {
        if self.done {
            return;
        }
        let data = frame.data.trim_ascii();
        if data.is_empty() {
            return;
        }
        let mut chunk: g::GenerateContentResponse = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                out.push(Delta::invalid_event(e));
                return;
            }
        };
        if let Some(err) = &chunk.error {
            self.done = true;
            out.push(Delta::Error {
                kind: stream_error_type(err),
                message: error_message(data),
            });
            return;
        }
        if let Some(u) = &chunk.usage_metadata {
            out.push(Delta::Usage(usage_from_gemini(u)));
        }
        let Some(candidate) = first_candidate(&mut chunk) else {
            if chunk.prompt_feedback.and_then(|f| f.block_reason).is_some() {
                self.finish(Ok(StopReason::Refusal), out);
            }
            return;
        };
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            pieces(part, &mut self.pieces);
        }
        for piece in self.pieces.drain(..) {
            out.push(match piece {
                Piece::Thought(t) => Delta::Thinking(t),
                Piece::Signature(s) => Delta::ThinkingSignature(s),
                Piece::Text(t) => Delta::Text(t),
                Piece::Call { id, name, args } => {
                    let call = self.calls;
                    self.calls += 1;
                    Delta::ToolCall {
                        call,
                        id,
                        name: Some(name),
                        // The whole call arrives at once: its arguments are one fragment.
                        arguments: args.map(|a| a.to_string()).unwrap_or_default(),
                    }
                }
            });
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            self.finish(stop_hint(reason), out);
        }
    }

    fn end(&mut self, out: &mut Vec<Delta>) {
        if !self.done {
            self.done = true;
            out.push(Delta::cut_short());
        }
    }
}

impl GeminiStreamDecoder {
    fn finish(&mut self, hint: Result<StopReason, String>, out: &mut Vec<Delta>) {
        self.done = true;
        match hint {
            Ok(reason) => {
                out.push(Delta::Stop {
                    reason: Some(reason),
                    sequence: None,
                });
                out.push(Delta::Done);
            }
            Err(message) => out.push(Delta::Error {
                kind: ErrorType::ApiError,
                message,
            }),
        }
    }
}

/// Google's in-stream errors carry the HTTP status they stand for in `code` and the canonical
/// code name in `status`.
fn stream_error_type(err: &Value) -> ErrorType {
    if let Some(status) = err
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
    {
        return ErrorType::from_status(status);
    }
    err.get("status")
        .and_then(Value::as_str)
        .and_then(ErrorType::from_google_status)
        .unwrap_or(ErrorType::ApiError)
}
