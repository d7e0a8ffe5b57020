//! Chat Completions stream chunks → canonical deltas.

use serde_json::Value;

use super::response::{stop_hint, usage_from_openai};
use super::wire::{self as o, ToolCallChunk};
use crate::canonical::Delta;
use crate::dialect::StreamDecoder;
use crate::error::{self, ErrorType};
use crate::framing::Frame;

/// Reads `data: {chunk}` events up to `data: [DONE]`.
#[derive(Debug, Default)]
pub(super) struct ChatStreamDecoder {
    /// Upstream `(index, id)` of each call seen, by call number.
    calls: Vec<(Option<u32>, Option<String>)>,
    finish_reason: Option<String>,
    matched_stop: Option<String>,
    done: bool,
}

impl StreamDecoder for ChatStreamDecoder {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>) {
        if self.done {
            return;
        }
        let data = frame.data.trim_ascii();
        if data.is_empty() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            out.push(Delta::Done);
            return;
        }
        let chunk: o::ChatCompletion = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                out.push(Delta::invalid_event(e));
                return;
            }
        };
        if let Some(err) = &chunk.error {
            self.done = true;
            let (kind, message) = stream_error(err, data);
            out.push(Delta::Error { kind, message });
            return;
        }
        if let Some(u) = &chunk.usage {
            out.push(Delta::Usage(usage_from_openai(u)));
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            let mut stop_changed = false;
            if let Some(m) = choice.matched_stop_sequence() {
                self.matched_stop = Some(m.to_owned());
                stop_changed = true;
            }
            if let Some(delta) = choice.delta {
                let reasoning = delta.reasoning_text();
                if !reasoning.is_empty() {
                    out.push(Delta::Thinking(reasoning.to_owned()));
                }
                if !delta.content.0.is_empty() {
                    out.push(Delta::Text(delta.content.0));
                }
                if !delta.refusal.0.is_empty() {
                    out.push(Delta::Refusal(delta.refusal.0));
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    out.push(self.tool_call(call));
                }
            }
            if choice.finish_reason.is_some() {
                // The usage chunk follows the finish reason, so the message is not over yet.
                self.finish_reason = choice.finish_reason;
                stop_changed = true;
            }
            if stop_changed {
                out.push(Delta::Stop {
                    reason: stop_hint(self.finish_reason.as_deref(), self.matched_stop.as_deref()),
                    sequence: self.matched_stop.clone(),
                });
            }
        }
    }

    fn end(&mut self, out: &mut Vec<Delta>) {
        if self.done {
            return;
        }
        self.done = true;
        // Some servers omit `[DONE]` after the finish chunk; without either, the upstream was
        // cut off, and a cut answer must not look finished.
        out.push(if self.finish_reason.is_some() {
            Delta::Done
        } else {
            Delta::cut_short()
        });
    }
}

impl ChatStreamDecoder {
    /// Numbers the call a fragment belongs to. Fragments are keyed by `index`; servers that
    /// omit it (whole calls in one fragment) by id; a fragment with neither continues the
    /// latest call.
    fn tool_call(&mut self, call: ToolCallChunk) -> Delta {
        let id = call.id.filter(|id| !id.is_empty());
        let existing = match (call.index, id.as_deref()) {
            (Some(i), _) => self.calls.iter().position(|(index, _)| *index == Some(i)),
            (None, Some(id)) => self
                .calls
                .iter()
                .position(|(_, known)| known.as_deref() == Some(id)),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let position = existing.unwrap_or_else(|| {
            self.calls.push((call.index, None));
            self.calls.len() - 1
        });
        if let Some((_, known)) = self.calls.get_mut(position)
            && known.is_none()
        {
            known.clone_from(&id);
        }
        let function = call.function.unwrap_or_default();
        Delta::ToolCall {
            call: position,
            id,
            name: function.name,
            arguments: function.arguments.map(|a| a.0).unwrap_or_default(),
        }
    }
}

/// Maps an in-stream `{"error":…}` (no HTTP status to go by) to an Anthropic error type.
fn stream_error(err: &Value, data: &[u8]) -> (ErrorType, String) {
    let parsed = error::parse_upstream_error(data);
    let message = parsed
        .as_ref()
        .map_or("upstream reported an error", |p| p.message.as_str())
        .to_owned();
    // OpenRouter and others put the HTTP status they would have sent in `code`.
    if let Some(status) = err
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
    {
        return (ErrorType::from_status(status), message);
    }
    let kind = parsed
        .and_then(|p| p.upstream_type)
        .map_or(ErrorType::ApiError, |t| stream_error_type(&t));
    (kind, message)
}

fn stream_error_type(t: &str) -> ErrorType {
    ErrorType::parse(t).unwrap_or(match t {
        "server_error" | "internal_error" => ErrorType::ApiError,
        "rate_limit_exceeded" | "insufficient_quota" | "tokens" | "requests" => {
            ErrorType::RateLimitError
        }
        "overloaded" | "service_unavailable" => ErrorType::OverloadedError,
        "timeout" => ErrorType::TimeoutError,
        // Unknown types are treated as deterministic so clients do not retry them.
        _ => ErrorType::InvalidRequestError,
    })
}
