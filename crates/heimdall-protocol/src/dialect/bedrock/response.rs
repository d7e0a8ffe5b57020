//! Converse answer → canonical response, ConverseStream events → deltas, and the usage tap.

use serde::Deserialize;
use serde_json::Value;

use crate::canonical::{self, ContentBlock, Delta, StopReason, Usage};
use crate::dialect::{
    AnswerSummary, ResponseContext, StreamDecoder, TapVerdict, TranslateError, UsageTap,
};
use crate::error::ErrorType;
use crate::framing::Frame;
use crate::framing::aws_eventstream::header;
use crate::ids;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: Output,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct Output {
    message: OutputMessage,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<OutputBlock>,
}

/// One content block; exactly one member is set (others, such as citations, are skipped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUse>,
    #[serde(default)]
    reasoning_content: Option<Reasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    #[serde(default)]
    tool_use_id: Option<String>,
    name: String,
    #[serde(default)]
    input: Value,
}

/// Redacted reasoning (`redactedContent`) has no place in the canonical answer and is left
/// out; the client sees the visible reasoning only.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning {
    #[serde(default)]
    reasoning_text: Option<ReasoningText>,
}

#[derive(Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: String,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            cache_creation_input_tokens: u.cache_write_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// Converse's `stopReason` (Appendix A of the protocol notes); unknown reasons say nothing.
fn stop_reason(reason: &str) -> Option<StopReason> {
    Some(match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "guardrail_intervened" | "content_filtered" => StopReason::Refusal,
        "model_context_window_exceeded" => StopReason::ModelContextWindowExceeded,
        _ => return None,
    })
}

/// The Anthropic error type of a Bedrock exception (`throttlingException` in streams,
/// `ThrottlingException` in HTTP answers).
pub fn exception_error_type(exception: &str) -> ErrorType {
    let lower = exception.to_ascii_lowercase();
    match lower.as_str() {
        "throttlingexception" | "servicequotaexceededexception" => ErrorType::RateLimitError,
        "validationexception" => ErrorType::InvalidRequestError,
        "accessdeniedexception" => ErrorType::PermissionError,
        "resourcenotfoundexception" => ErrorType::NotFoundError,
        "modeltimeoutexception" => ErrorType::TimeoutError,
        "serviceunavailableexception" | "modelnotreadyexception" => ErrorType::OverloadedError,
        // internalServerException, modelStreamErrorException and anything new.
        _ => ErrorType::ApiError,
    }
}

/// What an exception or error message of a stream reports: (type, message). `None` for an
/// ordinary event.
pub(super) fn stream_failure(frame: &Frame) -> Option<(ErrorType, String)> {
    #[derive(Deserialize)]
    struct Payload {
        message: String,
    }
    match header(frame, ":message-type") {
        Some("exception") => {
            let name = frame.name().unwrap_or("exception");
            let message = serde_json::from_slice::<Payload>(&frame.data)
                .map(|p| p.message)
                .unwrap_or_else(|_| format!("upstream reported {name}"));
            Some((exception_error_type(name), message))
        }
        Some("error") => {
            let message = header(frame, ":error-message")
                .unwrap_or("upstream reported an error")
                .to_owned();
            Some((ErrorType::ApiError, message))
        }
        _ => None,
    }
}

pub(super) fn decode(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<canonical::Response, TranslateError> {
    let r: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::Upstream(e.to_string()))?;
    let mut content = Vec::new();
    let mut calls = 0;
    for block in r.output.message.content {
        if let Some(text) = block.text.filter(|t| !t.trim().is_empty()) {
            content.push(ContentBlock::Text { text });
        } else if let Some(call) = block.tool_use {
            content.push(ContentBlock::ToolUse {
                id: ids::tool_id_from_upstream(call.tool_use_id.as_deref(), &ctx.message_id, calls),
                name: call.name,
                input: object(call.input),
            });
            calls += 1;
        } else if let Some(text) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            content.push(ContentBlock::Thinking {
                thinking: text.text,
                signature: text.signature.unwrap_or_default(),
            });
        }
    }
    let hint = r.stop_reason.as_deref().and_then(stop_reason);
    Ok(canonical::Response {
        id: ctx.message_id.clone(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(StopReason::settle(hint, calls > 0, false)),
        stop_sequence: None,
        usage: r.usage.into(),
    })
}

pub(super) fn answer_summary(body: &[u8]) -> Option<AnswerSummary> {
    serde_json::from_slice::<ConverseResponse>(body)
        .ok()
        .map(|r| AnswerSummary {
            usage: r.usage.into(),
            stop_reason: r.stop_reason,
        })
}

/// Tool input as a JSON object (Anthropic's `input` is one).
fn object(v: Value) -> Value {
    if v.is_object() {
        v
    } else {
        Value::Object(serde_json::Map::new())
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// The payload members of the ConverseStream events Heimdall reads.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StreamEvent {
    #[serde(default)]
    content_block_index: Option<u64>,
    #[serde(default)]
    start: Option<BlockStart>,
    #[serde(default)]
    delta: Option<BlockDelta>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    tool_use: Option<ToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart {
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    input: String,
}

/// `redactedContent` deltas are skipped, as in answers.
#[derive(Deserialize)]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// Reads ConverseStream events. The answer is complete once both `messageStop` (the stop
/// reason) and `metadata` (the usage, sent after it) have arrived.
#[derive(Default)]
pub(super) struct ConverseDecoder {
    /// The content block index of each tool call, by call number.
    tool_blocks: Vec<u64>,
    stopped: bool,
    metered: bool,
    done: bool,
}

impl ConverseDecoder {
    fn fail(&mut self, kind: ErrorType, message: String, out: &mut Vec<Delta>) {
        self.done = true;
        out.push(Delta::Error { kind, message });
    }
}

impl StreamDecoder for ConverseDecoder {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>) {
        if self.done {
            return;
        }
        if let Some((kind, message)) = stream_failure(frame) {
            return self.fail(kind, message, out);
        }
        let name = frame.name().unwrap_or_default();
        if !matches!(
            name,
            "contentBlockStart" | "contentBlockDelta" | "messageStop" | "metadata"
        ) {
            // messageStart, contentBlockStop and events newer than this decoder say nothing
            // the assembler needs.
            return;
        }
        let event: StreamEvent = match serde_json::from_slice(&frame.data) {
            Ok(e) => e,
            Err(e) => {
                return self.fail(
                    ErrorType::ApiError,
                    format!("upstream sent an invalid {name} event: {e}"),
                    out,
                );
            }
        };
        let index = event.content_block_index.unwrap_or_default();
        if let Some(tool) = event.start.and_then(|s| s.tool_use) {
            out.push(Delta::ToolCall {
                call: self.tool_blocks.len(),
                id: tool.tool_use_id,
                name: tool.name,
                arguments: String::new(),
            });
            self.tool_blocks.push(index);
        }
        if let Some(delta) = event.delta {
            if let Some(text) = delta.text {
                out.push(Delta::Text(text));
            }
            if let Some(tool) = delta.tool_use {
                let Some(call) = self.tool_blocks.iter().rposition(|b| *b == index) else {
                    return self.fail(
                        ErrorType::ApiError,
                        "upstream sent tool input for a block it never started".to_owned(),
                        out,
                    );
                };
                out.push(Delta::ToolCall {
                    call,
                    id: None,
                    name: None,
                    arguments: tool.input,
                });
            }
            if let Some(reasoning) = delta.reasoning_content {
                if let Some(text) = reasoning.text {
                    out.push(Delta::Thinking(text));
                }
                if let Some(signature) = reasoning.signature {
                    out.push(Delta::ThinkingSignature(signature));
                }
            }
        }
        if name == "messageStop" {
            self.stopped = true;
            out.push(Delta::Stop {
                reason: event.stop_reason.as_deref().and_then(stop_reason),
                sequence: None,
            });
        }
        if let Some(usage) = event.usage {
            self.metered = true;
            out.push(Delta::Usage(usage.into()));
        }
        if self.stopped && self.metered {
            self.done = true;
            out.push(Delta::Done);
        }
    }

    fn end(&mut self, out: &mut Vec<Delta>) {
        if !self.done {
            self.fail(
                ErrorType::ApiError,
                "upstream stream ended before messageStop and metadata".to_owned(),
                out,
            );
        }
    }
}

/// Watches a ConverseStream passed through untranslated (no front door speaks Converse yet,
/// but the trait asks every dialect for one).
#[derive(Default)]
pub(super) struct ConverseTap {
    usage: Usage,
    stop_reason: Option<String>,
    stopped: bool,
    metered: bool,
}

impl UsageTap for ConverseTap {
    fn observe(&mut self, frame: &Frame) -> TapVerdict {
        if stream_failure(frame).is_some() {
            return TapVerdict::Failed;
        }
        let Ok(event) = serde_json::from_slice::<StreamEvent>(&frame.data) else {
            return TapVerdict::Invalid;
        };
        if frame.name() == Some("messageStop") {
            self.stopped = true;
            self.stop_reason = event.stop_reason;
        }
        if let Some(usage) = event.usage {
            self.metered = true;
            self.usage = usage.into();
        }
        if self.stopped && self.metered {
            TapVerdict::Complete
        } else {
            TapVerdict::Continue
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::framing::Framer;
    use crate::framing::aws_eventstream::EventStreamFramer;
    use heimdall_testkit::eventstream as es;

    fn frames(wire: &[u8]) -> Vec<Frame> {
        let mut f = EventStreamFramer::new(1 << 20);
        f.push(wire);
        std::iter::from_fn(|| f.next_frame().unwrap()).collect()
    }

    #[test]
    fn tap_completes_on_stop_and_metadata() {
        let mut wire = es::event("messageStop", br#"{"stopReason":"end_turn"}"#);
        wire.extend(es::event(
            "metadata",
            br#"{"usage":{"inputTokens":3,"outputTokens":4,"cacheReadInputTokens":2}}"#,
        ));
        let mut tap = ConverseTap::default();
        let verdicts: Vec<_> = frames(&wire).iter().map(|f| tap.observe(f)).collect();
        assert_eq!(verdicts, [TapVerdict::Continue, TapVerdict::Complete]);
        assert_eq!(tap.usage().cache_read_input_tokens, 2);
        assert_eq!(tap.stop_reason(), Some("end_turn"));
        let failed = frames(&es::exception(
            "internalServerException",
            br#"{"message":"x"}"#,
        ));
        assert_eq!(tap.observe(&failed[0]), TapVerdict::Failed);
    }

    #[test]
    fn exception_types() {
        assert_eq!(
            exception_error_type("ThrottlingException"),
            ErrorType::RateLimitError
        );
        assert_eq!(
            exception_error_type("validationException"),
            ErrorType::InvalidRequestError
        );
        assert_eq!(
            exception_error_type("serviceUnavailableException"),
            ErrorType::OverloadedError
        );
        assert_eq!(
            exception_error_type("modelStreamErrorException"),
            ErrorType::ApiError
        );
    }
}
