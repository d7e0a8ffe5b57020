//! The two vocabularies of a translated stream: [`Delta`]s, which upstream decoders report in
//! the order the upstream said things, and [`Event`]s, the block grammar the
//! [`Assembler`](super::Assembler) derives from them and front-door encoders write out.

use crate::error::ErrorType;

use super::{StopReason, Usage};

/// One thing an upstream stream said. Decoders report facts; they never decide block indices,
/// ordering or completeness: that is the assembler's job.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    /// Text the model produced as a refusal: shown as text, and the turn stops with `refusal`.
    Refusal(String),
    Thinking(String),
    /// The signature of the thinking just reported (providers that sign reasoning send it
    /// after the text); it ends up in the thinking block.
    ThinkingSignature(String),
    /// A fragment of tool call number `call` (dense, 0-based, in the order the upstream started
    /// the calls). `id` and `name` may come with any fragment; the first non-empty one sticks.
    ToolCall {
        call: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// Usage so far; replaces what was reported before.
    Usage(Usage),
    /// Why the upstream stopped, as far as it says; the last report counts.
    Stop {
        reason: Option<StopReason>,
        sequence: Option<String>,
    },
    /// The upstream says the answer is complete.
    Done,
    /// The upstream reported a failure inside the stream; nothing after it counts.
    Error {
        kind: ErrorType,
        message: String,
    },
}

/// One step of the block grammar: `MessageStart`, then blocks with indices 0, 1, 2… that never
/// overlap, then `MessageDelta` and `MessageStop`. Error and keep-alive events are not here:
/// encoders write those themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    MessageStart {
        id: &'a str,
        model: &'a str,
        usage: Usage,
    },
    BlockStart {
        index: usize,
        block: BlockStart<'a>,
    },
    BlockDelta {
        index: usize,
        delta: BlockDelta<'a>,
    },
    BlockStop {
        index: usize,
    },
    MessageDelta {
        stop_reason: StopReason,
        stop_sequence: Option<&'a str>,
        usage: Usage,
    },
    MessageStop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStart<'a> {
    Text,
    Thinking,
    ToolUse { id: &'a str, name: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDelta<'a> {
    Text(&'a str),
    Thinking(&'a str),
    /// The thinking block's signature.
    Signature(&'a str),
    /// A fragment of a tool call's input JSON.
    InputJson(&'a str),
}

/// Writes events in one front door's wire form. The only writer of that front door's stream
/// bytes, error and keep-alive events included, on translated and pass-through streams alike.
pub trait StreamEncoder: Send {
    fn event(&mut self, event: &Event<'_>, out: &mut bytes::BytesMut);
    /// An event that keeps proxies from closing a silent connection.
    fn keepalive(&mut self, out: &mut bytes::BytesMut);
    /// The stream's last event, reporting a failure.
    fn error(&mut self, kind: ErrorType, message: &str, out: &mut bytes::BytesMut);
}
