//! The one owner of the stream grammar. Decoders of every upstream dialect feed it
//! [`Delta`]s; it decides block indices, opens and closes blocks, holds back interleaved tool
//! calls until the open one is complete, drops whitespace-only text, guarantees every tool
//! block at least one input delta, and hands the resulting [`Event`]s to the front door's
//! [`StreamEncoder`].

use bytes::BytesMut;

use super::json_scan::JsonScan;
use super::stream::{BlockDelta, BlockStart, Delta, Event, StreamEncoder};
use super::{StopReason, Usage};
use crate::dialect::ResponseContext;
use crate::error::ErrorType;
use crate::ids;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Streaming,
    Done,
}

/// The block currently open (at most one: blocks never interleave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// Position in `Assembler::tools`.
    Tool(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolStatus {
    /// Seen upstream, block not started yet (another call is still streaming).
    Pending,
    Open,
    Closed,
}

#[derive(Debug)]
struct ToolState {
    upstream_id: Option<String>,
    name: Option<String>,
    /// All argument text received; `args[..sent]` has been emitted.
    args: String,
    sent: usize,
    /// Tells, in time linear in the arguments' length, when they form one whole JSON value.
    scan: JsonScan,
    /// The arguments do not start a JSON object: they are not streamed, `{}` replaces them.
    non_object: bool,
    status: ToolStatus,
}

/// True when `text` is exactly one JSON object (surrounding whitespace allowed).
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Turns deltas into the block grammar. Every method is idempotent once the stream is done.
pub struct Assembler {
    ctx: ResponseContext,
    encoder: Box<dyn StreamEncoder>,
    phase: Phase,
    open: Open,
    open_index: usize,
    next_index: usize,
    /// Whitespace-only text not yet worth opening a block for (Anthropic rejects blank text
    /// blocks when clients send them back); emitted if real text follows.
    held_whitespace: String,
    tools: Vec<ToolState>,
    stop_hint: Option<StopReason>,
    stop_sequence: Option<String>,
    refused: bool,
    /// A tool block's streamed input is not one JSON object.
    broken_tool: bool,
    /// The stream ended with an error event rather than a normal stop.
    failed: bool,
    /// The stop reason sent in `message_delta`, once the message finished.
    stop_reason: Option<StopReason>,
    usage: Usage,
}

impl Assembler {
    pub fn new(ctx: ResponseContext, encoder: Box<dyn StreamEncoder>) -> Self {
        Self {
            ctx,
            encoder,
            phase: Phase::Fresh,
            open: Open::None,
            open_index: 0,
            next_index: 0,
            held_whitespace: String::new(),
            tools: Vec::new(),
            stop_hint: None,
            stop_sequence: None,
            refused: false,
            broken_tool: false,
            failed: false,
            stop_reason: None,
            usage: Usage::default(),
        }
    }

    /// Emits `MessageStart`. Called before any upstream data so the client sees the message
    /// at once; later calls, and the implicit call from the other methods, do nothing.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.phase != Phase::Fresh {
            return;
        }
        self.phase = Phase::Streaming;
        self.encoder.event(
            &Event::MessageStart {
                id: &self.ctx.message_id,
                model: &self.ctx.model,
                usage: Usage::default(),
            },
            out,
        );
    }

    pub fn push(&mut self, delta: Delta, out: &mut BytesMut) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        match delta {
            Delta::Text(text) => self.text(&text, out),
            Delta::Refusal(text) => {
                if !text.is_empty() {
                    self.refused = true;
                    self.text(&text, out);
                }
            }
            Delta::Thinking(text) => self.thinking(&text, out),
            Delta::ThinkingSignature(signature) => self.signature(&signature, out),
            Delta::ToolCall {
                call,
                id,
                name,
                arguments,
            } => self.tool_fragment(call, id, name, &arguments, out),
            Delta::Usage(u) => self.usage = u,
            Delta::Stop { reason, sequence } => {
                self.stop_hint = reason;
                self.stop_sequence = sequence;
            }
            Delta::Done => self.finish(out),
            Delta::Error { kind, message } => self.fail(kind, &message, out),
        }
    }

    /// Ends the message: closes the open block, emits buffered calls, then `MessageDelta` and
    /// `MessageStop`.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        self.flush_tools(out);
        self.close_block(out);
        let stop_reason = StopReason::settle(self.stop_hint, !self.tools.is_empty(), self.refused);
        if self.broken_tool && stop_reason != StopReason::MaxTokens {
            self.fail(
                ErrorType::ApiError,
                "upstream sent tool arguments that are not one JSON object",
                out,
            );
            return;
        }
        let stop_sequence = self
            .stop_sequence
            .as_deref()
            .filter(|_| stop_reason == StopReason::StopSequence);
        self.encoder.event(
            &Event::MessageDelta {
                stop_reason,
                stop_sequence,
                usage: self.usage,
            },
            out,
        );
        self.encoder.event(&Event::MessageStop, out);
        self.phase = Phase::Done;
        self.stop_reason = Some(stop_reason);
    }

    /// Ends the stream with an error event and nothing after it.
    pub fn fail(&mut self, kind: ErrorType, message: &str, out: &mut BytesMut) {
        if self.phase == Phase::Done {
            return;
        }
        self.encoder.error(kind, message, out);
        self.phase = Phase::Done;
        self.failed = true;
    }

    /// A keep-alive event, unless the stream is over.
    pub fn keepalive(&mut self, out: &mut BytesMut) {
        if self.phase != Phase::Done {
            self.encoder.keepalive(out);
        }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True when the stream ended with an error event.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Why the message ended, once it did (not when the stream failed).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Usage reported so far (final once the stream is done).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn thinking(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if self.open != Open::Thinking {
            self.flush_tools(out);
            self.open_block(out, BlockStart::Thinking, Open::Thinking);
        }
        self.delta(out, BlockDelta::Thinking(text));
    }

    fn signature(&mut self, signature: &str, out: &mut BytesMut) {
        if signature.is_empty() {
            return;
        }
        if self.open != Open::Thinking {
            self.flush_tools(out);
            self.open_block(out, BlockStart::Thinking, Open::Thinking);
        }
        self.delta(out, BlockDelta::Signature(signature));
        // A signature seals its block: thinking after it is a new block.
        self.close_block(out);
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if self.open == Open::Text {
            self.delta(out, BlockDelta::Text(text));
            return;
        }
        if text.trim().is_empty() {
            self.held_whitespace.push_str(text);
            return;
        }
        self.flush_tools(out);
        let mut held = std::mem::take(&mut self.held_whitespace);
        self.open_block(out, BlockStart::Text, Open::Text);
        let text = if held.is_empty() {
            text
        } else {
            held.push_str(text);
            &held
        };
        self.delta(out, BlockDelta::Text(text));
    }

    fn tool_fragment(
        &mut self,
        call: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: &str,
        out: &mut BytesMut,
    ) {
        // Calls are numbered densely by the decoder; a gap would mean a decoder bug, and is
        // closed with empty calls rather than trusted blindly.
        while self.tools.len() <= call {
            self.tools.push(ToolState {
                upstream_id: None,
                name: None,
                args: String::new(),
                sent: 0,
                scan: JsonScan::default(),
                non_object: false,
                status: ToolStatus::Pending,
            });
        }
        let Some(tool) = self.tools.get_mut(call) else {
            return;
        };
        if tool.upstream_id.is_none() {
            tool.upstream_id = id.filter(|i| !i.is_empty());
        }
        if tool.name.is_none() {
            tool.name = name.filter(|n| !n.is_empty());
        }
        // Fragments for a block already closed cannot be represented any more.
        if tool.status != ToolStatus::Closed && !arguments.is_empty() {
            tool.scan.feed(arguments);
            tool.args.push_str(arguments);
        }
        self.advance_tools(out);
    }

    /// Streams the open call's arguments, and moves on to buffered calls once it is complete.
    fn advance_tools(&mut self, out: &mut BytesMut) {
        loop {
            if let Open::Tool(t) = self.open {
                self.send_args(t, out);
                let complete = self
                    .tools
                    .get_mut(t)
                    .is_some_and(|tool| tool.scan.is_complete(&tool.args));
                if !complete || self.first_pending().is_none() {
                    return;
                }
                self.close_block(out);
            } else {
                let Some(t) = self.first_pending() else {
                    return;
                };
                if self.tools.get(t).is_some_and(|tool| tool.name.is_none()) {
                    return;
                }
                self.start_tool(t, out);
            }
        }
    }

    /// Closes any open block and emits every buffered call, in order.
    fn flush_tools(&mut self, out: &mut BytesMut) {
        if matches!(self.open, Open::Tool(_)) {
            self.close_block(out);
        }
        while let Some(t) = self.first_pending() {
            self.start_tool(t, out);
            self.send_args(t, out);
            self.close_block(out);
        }
    }

    fn first_pending(&self) -> Option<usize> {
        self.tools
            .iter()
            .position(|t| t.status == ToolStatus::Pending)
    }

    fn start_tool(&mut self, t: usize, out: &mut BytesMut) {
        self.close_block(out);
        self.held_whitespace.clear();
        let Some(tool) = self.tools.get_mut(t) else {
            return;
        };
        tool.status = ToolStatus::Open;
        let id = ids::tool_id_from_upstream(tool.upstream_id.as_deref(), &self.ctx.message_id, t);
        let name = tool.name.as_deref().unwrap_or_default();
        let index = self.next_index;
        self.next_index += 1;
        self.encoder.event(
            &Event::BlockStart {
                index,
                block: BlockStart::ToolUse { id: &id, name },
            },
            out,
        );
        self.open = Open::Tool(t);
        self.open_index = index;
    }

    /// Streams the arguments received since the last call, as far as they can still form
    /// one JSON object: nothing before the opening brace is known, and nothing after the
    /// object closed (trailing junk) goes out. Arguments that do not start an object are held
    /// back and replaced by `{}` at the block's end, as a non-streamed answer does.
    fn send_args(&mut self, t: usize, out: &mut BytesMut) {
        let index = self.open_index;
        let Some(tool) = self.tools.get_mut(t) else {
            return;
        };
        match tool.args.trim_start().as_bytes().first() {
            None => return,
            Some(b'{') => {}
            Some(_) => {
                tool.non_object = true;
                return;
            }
        }
        let limit = tool.scan.end().unwrap_or(tool.args.len());
        if let Some(fresh) = tool.args.get(tool.sent..limit).filter(|s| !s.is_empty()) {
            self.encoder.event(
                &Event::BlockDelta {
                    index,
                    delta: BlockDelta::InputJson(fresh),
                },
                out,
            );
            tool.sent = limit;
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, block: BlockStart<'_>, kind: Open) {
        self.close_block(out);
        self.held_whitespace.clear();
        let index = self.next_index;
        self.next_index += 1;
        self.encoder.event(&Event::BlockStart { index, block }, out);
        self.open = kind;
        self.open_index = index;
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        let index = self.open_index;
        match self.open {
            Open::None => return,
            Open::Tool(t) => {
                if let Some(tool) = self.tools.get_mut(t) {
                    // Clients build `input` only from deltas (Claude Code loops on a tool call
                    // whose arguments never arrive): a call without arguments gets `{}`.
                    if tool.sent == 0 {
                        self.encoder.event(
                            &Event::BlockDelta {
                                index,
                                delta: BlockDelta::InputJson("{}"),
                            },
                            out,
                        );
                    } else if !is_object(&tool.args[..tool.sent]) {
                        // What went out cannot be taken back; unless the turn stops at the
                        // length limit (where Anthropic cuts calls too) the stream must end
                        // with an error instead of a normal stop.
                        self.broken_tool = true;
                    }
                    tool.status = ToolStatus::Closed;
                }
            }
            Open::Text | Open::Thinking => {}
        }
        self.encoder.event(&Event::BlockStop { index }, out);
        self.open = Open::None;
    }

    fn delta(&mut self, out: &mut BytesMut, delta: BlockDelta<'_>) {
        self.encoder.event(
            &Event::BlockDelta {
                index: self.open_index,
                delta,
            },
            out,
        );
    }
}
