//! Anthropic Messages ⇄ OpenAI Chat Completions (protocols.md §5).
//!
//! Requests go Anthropic → OpenAI; responses and streams come back OpenAI → Anthropic so that
//! an Anthropic SDK client cannot tell which provider answered.

use bytes::BytesMut;
use serde_json::Value;

use super::{ResponseContext, StreamStatus, TranslateError};
use crate::anthropic::{
    ContentBlock, ContentBlockParam, CountTokensRequest, Delta, Message, MessageContent,
    MessageDelta, MessagesRequest, OutputFormat, Role, Source, StopReason, StreamEvent,
    SystemPrompt, TextOrBlocks, ThinkingConfig, Tool, ToolChoice,
};
use crate::error::{self, ErrorType};
use crate::ids;
use crate::openai::{
    self as o, ChatMessage, ChatUsage, ContentPart, FunctionType, ToolCallChunk, UserContent,
};
use crate::usage::Usage;

/// Separator when several Anthropic text blocks become one OpenAI string.
const JOIN: &str = "\n\n";
/// OpenAI tool messages have no error flag; the model must still see that the tool failed.
const TOOL_ERROR_PREFIX: &str = "[tool error] ";
/// OpenAI-compatible servers reject histories whose first turn is not the user's (§10.16).
const SYNTHETIC_USER_TEXT: &str = "(continued)";

// ---------------------------------------------------------------------------------------------
// Request: Anthropic → OpenAI
// ---------------------------------------------------------------------------------------------

pub fn request_to_openai(
    req: &MessagesRequest,
    upstream_model: &str,
) -> Result<o::ChatCompletionRequest, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        push_system(&mut messages, system_prompt_text(system));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let base = format!("messages.{i}.content");
        match m.role {
            Role::System => push_system(&mut messages, system_message_text(&m.content, &base)?),
            Role::User => push_user_turn(&mut messages, &m.content, &base)?,
            Role::Assistant => push_assistant_turn(&mut messages, &m.content, &base)?,
        }
    }
    ensure_user_first(&mut messages);

    let tools = convert_tools(req.tools.as_deref().unwrap_or_default())?;
    let has_tools = !tools.is_empty();
    // OpenAI rejects `tool_choice` / `parallel_tool_calls` without tools.
    let choice = req.tool_choice.as_ref().filter(|_| has_tools);
    let stream = req.is_stream();
    Ok(o::ChatCompletionRequest {
        model: upstream_model.to_owned(),
        messages,
        max_completion_tokens: Some(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req.stop_sequences.clone().filter(|s| !s.is_empty()),
        stream: stream.then_some(true),
        stream_options: stream.then_some(o::StreamOptions {
            include_usage: true,
        }),
        tool_choice: choice.map(convert_tool_choice),
        parallel_tool_calls: choice
            .filter(|c| c.disables_parallel_tool_use())
            .map(|_| false),
        tools: has_tools.then_some(tools),
        user: req
            .metadata
            .as_ref()
            .and_then(|m| m.user_id.clone())
            .filter(|u| !u.is_empty()),
        reasoning_effort: reasoning_effort(req),
        response_format: req
            .output_config
            .as_ref()
            .and_then(|c| c.format.as_ref())
            .map(
                |OutputFormat::JsonSchema { schema }| o::ResponseFormat::JsonSchema {
                    json_schema: o::JsonSchemaFormat {
                        name: "output".to_owned(),
                        schema: schema.clone(),
                        strict: true,
                    },
                },
            ),
    })
}

/// [`request_to_openai`], serialized.
pub fn request_body(
    req: &MessagesRequest,
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let chat = request_to_openai(req, upstream_model)?;
    serde_json::to_vec(&chat).map_err(|e| TranslateError::invalid("", e.to_string()))
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn push_system(out: &mut Vec<ChatMessage>, text: String) {
    if !is_blank(&text) {
        out.push(ChatMessage::System { content: text });
    }
}

fn system_prompt_text(system: &SystemPrompt) -> String {
    match system {
        TextOrBlocks::Text(s) => s.clone(),
        TextOrBlocks::Blocks(blocks) => join_texts(blocks.iter().map(|b| b.text.as_str())),
    }
}

fn join_texts<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    texts
        .filter(|t| !is_blank(t))
        .collect::<Vec<_>>()
        .join(JOIN)
}

fn system_message_text(content: &MessageContent, base: &str) -> Result<String, TranslateError> {
    let blocks = match content {
        TextOrBlocks::Text(s) => return Ok(s.clone()),
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlockParam::Text { text } => texts.push(text.as_str()),
            _ => {
                return Err(TranslateError::invalid(
                    format!("{base}.{j}"),
                    "system messages may only contain text blocks",
                ));
            }
        }
    }
    Ok(join_texts(texts.into_iter()))
}

/// Tool results become `tool` messages ahead of the rest of the turn, because OpenAI requires
/// them directly after the assistant message that made the calls.
fn push_user_turn(
    out: &mut Vec<ChatMessage>,
    content: &MessageContent,
    base: &str,
) -> Result<(), TranslateError> {
    let blocks = match content {
        TextOrBlocks::Text(s) => {
            if !is_blank(s) {
                out.push(ChatMessage::User {
                    content: UserContent::Text(s.clone()),
                });
            }
            return Ok(());
        }
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    // Media returned by tools go first in the user message that follows the tool messages.
    let mut parts = Vec::new();
    let mut own_parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{base}.{j}");
        if let ContentBlockParam::ToolResult {
            tool_use_id,
            content,
            is_error,
        } = block
        {
            let mut text = if *is_error {
                TOOL_ERROR_PREFIX.to_owned()
            } else {
                String::new()
            };
            tool_result_content(content.as_ref(), &path, &mut text, &mut parts)?;
            out.push(ChatMessage::Tool {
                tool_call_id: ids::tool_id_to_upstream(tool_use_id).to_owned(),
                content: text,
            });
        } else {
            push_parts(&mut own_parts, block, &path)?;
        }
    }
    parts.append(&mut own_parts);
    if !parts.is_empty() {
        out.push(ChatMessage::User {
            content: user_content(parts),
        });
    }
    Ok(())
}

/// Appends a tool result's text to `text` and moves its media into `media` (OpenAI tool
/// messages are text-only).
fn tool_result_content(
    content: Option<&MessageContent>,
    path: &str,
    text: &mut String,
    media: &mut Vec<ContentPart>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        None => return Ok(()),
        Some(TextOrBlocks::Text(s)) => {
            text.push_str(s);
            return Ok(());
        }
        Some(TextOrBlocks::Blocks(blocks)) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (k, block) in blocks.iter().enumerate() {
        push_parts(&mut parts, block, &format!("{path}.content.{k}"))?;
    }
    let mut first = true;
    for part in parts {
        match part {
            ContentPart::Text { text: t } => {
                if !first {
                    text.push_str(JOIN);
                }
                text.push_str(&t);
                first = false;
            }
            other => media.push(other),
        }
    }
    Ok(())
}

/// Converts one user-side block into parts. Thinking blocks are dropped: only Anthropic can
/// verify their signatures.
fn push_parts(
    parts: &mut Vec<ContentPart>,
    block: &ContentBlockParam,
    path: &str,
) -> Result<(), TranslateError> {
    match block {
        ContentBlockParam::Text { text } => {
            if !is_blank(text) {
                parts.push(ContentPart::Text { text: text.clone() });
            }
        }
        ContentBlockParam::Image { source } => parts.push(image_part(source, path)?),
        ContentBlockParam::Document { source, title } => {
            document_parts(parts, source, title.as_deref(), path)?;
        }
        ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking => {}
        ContentBlockParam::ToolUse { .. } => {
            return Err(TranslateError::invalid(
                path,
                "tool_use blocks are only allowed in assistant messages",
            ));
        }
        ContentBlockParam::ToolResult { .. } => {
            return Err(TranslateError::invalid(
                path,
                "tool_result blocks are only allowed at the top level of user messages",
            ));
        }
        ContentBlockParam::Other { kind } => return Err(unsupported_block(path, kind)),
    }
    Ok(())
}

fn unsupported_block(path: &str, kind: &str) -> TranslateError {
    TranslateError::unsupported(
        path,
        format!("content block type `{kind}` is not supported by this model's provider"),
    )
}

fn image_part(source: &Source, path: &str) -> Result<ContentPart, TranslateError> {
    let url = match source {
        Source::Base64 { media_type, data } => data_url(media_type, data),
        Source::Url { url } => url.clone(),
        Source::File { .. } => {
            return Err(TranslateError::unsupported(
                format!("{path}.source"),
                "file sources are not supported by this model's provider; send the image as base64 or url",
            ));
        }
        Source::Text { .. } | Source::Content { .. } => {
            return Err(TranslateError::invalid(
                format!("{path}.source.type"),
                "image sources must be base64, url or file",
            ));
        }
    };
    Ok(ContentPart::ImageUrl {
        image_url: o::ImageUrl { url },
    })
}

fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

fn document_parts(
    parts: &mut Vec<ContentPart>,
    source: &Source,
    title: Option<&str>,
    path: &str,
) -> Result<(), TranslateError> {
    match source {
        Source::Base64 { media_type, data } if media_type == "application/pdf" => {
            let filename = match title.filter(|t| !is_blank(t)) {
                Some(t) if t.ends_with(".pdf") => t.to_owned(),
                Some(t) => format!("{t}.pdf"),
                None => "document.pdf".to_owned(),
            };
            parts.push(ContentPart::File {
                file: o::FileData {
                    filename,
                    file_data: data_url(media_type, data),
                },
            });
        }
        Source::Text { data, .. } => {
            if !is_blank(data) {
                parts.push(ContentPart::Text { text: data.clone() });
            }
        }
        Source::Content { content } => match content {
            TextOrBlocks::Text(s) => {
                if !is_blank(s) {
                    parts.push(ContentPart::Text { text: s.clone() });
                }
            }
            TextOrBlocks::Blocks(blocks) => {
                for (k, block) in blocks.iter().enumerate() {
                    push_parts(parts, block, &format!("{path}.source.content.{k}"))?;
                }
            }
        },
        Source::Base64 { .. } | Source::Url { .. } | Source::File { .. } => {
            return Err(TranslateError::unsupported(
                format!("{path}.source"),
                "this model's provider only accepts documents as base64 PDF, plain text or content blocks",
            ));
        }
    }
    Ok(())
}

fn push_assistant_turn(
    out: &mut Vec<ChatMessage>,
    content: &MessageContent,
    base: &str,
) -> Result<(), TranslateError> {
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    match content {
        TextOrBlocks::Text(s) => texts.push(s.as_str()),
        TextOrBlocks::Blocks(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                match block {
                    ContentBlockParam::Text { text } => texts.push(text.as_str()),
                    ContentBlockParam::ToolUse { id, name, input } => {
                        tool_calls.push(o::ToolCall {
                            id: ids::tool_id_to_upstream(id).to_owned(),
                            kind: FunctionType::Function,
                            function: o::FunctionCall {
                                name: name.clone(),
                                arguments: input.to_string(),
                            },
                        });
                    }
                    ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking => {}
                    ContentBlockParam::ToolResult { .. } => {
                        return Err(TranslateError::invalid(
                            format!("{base}.{j}"),
                            "tool_result blocks are only allowed in user messages",
                        ));
                    }
                    ContentBlockParam::Image { .. } => {
                        return Err(unsupported_block(&format!("{base}.{j}"), "image"));
                    }
                    ContentBlockParam::Document { .. } => {
                        return Err(unsupported_block(&format!("{base}.{j}"), "document"));
                    }
                    ContentBlockParam::Other { kind } => {
                        return Err(unsupported_block(&format!("{base}.{j}"), kind));
                    }
                }
            }
        }
    }
    let text = join_texts(texts.into_iter());
    if text.is_empty() && tool_calls.is_empty() {
        return Ok(());
    }
    out.push(ChatMessage::Assistant {
        content: (!text.is_empty()).then_some(text),
        tool_calls,
    });
    Ok(())
}

fn user_content(mut parts: Vec<ContentPart>) -> UserContent {
    if let [ContentPart::Text { text }] = parts.as_mut_slice() {
        return UserContent::Text(std::mem::take(text));
    }
    UserContent::Parts(parts)
}

fn ensure_user_first(messages: &mut Vec<ChatMessage>) {
    let first = messages
        .iter()
        .position(|m| !matches!(m, ChatMessage::System { .. }));
    if let Some(p) = first
        && matches!(
            messages.get(p),
            Some(ChatMessage::Assistant { .. } | ChatMessage::Tool { .. })
        )
    {
        messages.insert(
            p,
            ChatMessage::User {
                content: UserContent::Text(SYNTHETIC_USER_TEXT.to_owned()),
            },
        );
    }
}

fn convert_tools(tools: &[Tool]) -> Result<Vec<o::ChatTool>, TranslateError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if !t.is_custom() {
                // Server tools run inside Anthropic; silently dropping one changes what the
                // model can do, so fail closed (protocols.md §10.15).
                return Err(TranslateError::unsupported(
                    format!("tools.{i}"),
                    format!(
                        "server tool `{}` (type `{}`) is not supported by this model's provider",
                        t.name,
                        t.kind.as_deref().unwrap_or_default()
                    ),
                ));
            }
            Ok(o::ChatTool {
                kind: FunctionType::Function,
                function: o::FunctionDefinition {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t
                        .input_schema
                        .clone()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                    strict: t.strict,
                },
            })
        })
        .collect()
}

fn convert_tool_choice(choice: &ToolChoice) -> o::ChatToolChoice {
    match choice {
        ToolChoice::Auto { .. } => o::ChatToolChoice::Mode(o::ToolChoiceMode::Auto),
        ToolChoice::Any { .. } => o::ChatToolChoice::Mode(o::ToolChoiceMode::Required),
        ToolChoice::None => o::ChatToolChoice::Mode(o::ToolChoiceMode::None),
        ToolChoice::Tool { name, .. } => o::ChatToolChoice::Function {
            kind: FunctionType::Function,
            function: o::FunctionName { name: name.clone() },
        },
    }
}

/// An explicit `output_config.effort` wins; otherwise the thinking budget is bucketed.
fn reasoning_effort(req: &MessagesRequest) -> Option<o::ReasoningEffort> {
    use o::ReasoningEffort as E;
    let explicit = req
        .output_config
        .as_ref()
        .and_then(|c| c.effort.as_deref())
        .and_then(|e| match e {
            "low" => Some(E::Low),
            "medium" => Some(E::Medium),
            "high" => Some(E::High),
            "xhigh" => Some(E::Xhigh),
            "max" => Some(E::Max),
            _ => None,
        });
    explicit.or(match req.thinking.as_ref()? {
        ThinkingConfig::Enabled { budget_tokens } => Some(match budget_tokens {
            0..=1024 => E::Low,
            1025..=8192 => E::Medium,
            _ => E::High,
        }),
        ThinkingConfig::Adaptive => Some(E::Medium),
        ThinkingConfig::Disabled | ThinkingConfig::Other => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Response: OpenAI → Anthropic
// ---------------------------------------------------------------------------------------------

/// Translates an upstream 200 body into the Anthropic message and the usage to account.
pub fn response_from_openai(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<(Message, Usage), TranslateError> {
    let resp: o::ChatCompletion =
        serde_json::from_slice(body).map_err(|e| TranslateError::Upstream(e.to_string()))?;
    if resp.error.is_some() {
        let message = error::parse_upstream_error(body)
            .map_or_else(|| "upstream reported an error".to_owned(), |e| e.message);
        return Err(TranslateError::Upstream(message));
    }
    let mut choice = resp
        .choices
        .into_iter()
        .flatten()
        .find(|c| c.index.unwrap_or(0) == 0)
        .ok_or_else(|| TranslateError::Upstream("response has no choices".to_owned()))?;
    let msg = choice.message.take().unwrap_or_default();

    let mut content = Vec::new();
    let reasoning = msg.reasoning_text();
    if !reasoning.is_empty() {
        content.push(ContentBlock::Thinking {
            thinking: reasoning.to_owned(),
            signature: String::new(),
        });
    }
    if !is_blank(&msg.content.0) {
        content.push(ContentBlock::Text {
            text: msg.content.0,
        });
    }
    let refused = !is_blank(&msg.refusal.0);
    if refused {
        content.push(ContentBlock::Text {
            text: msg.refusal.0,
        });
    }
    let calls = msg.tool_calls.unwrap_or_default();
    let has_tool_use = !calls.is_empty();
    for (position, call) in calls.into_iter().enumerate() {
        let function = call.function.unwrap_or_default();
        content.push(ContentBlock::ToolUse {
            id: ids::tool_id_from_upstream(call.id.as_deref(), &ctx.message_id, position),
            name: function.name.unwrap_or_default(),
            input: arguments_object(function.arguments.as_ref().map_or("", |a| &a.0)),
        });
    }
    let (stop_reason, stop_sequence) = stop_reason(
        choice.finish_reason.as_deref(),
        choice.matched_stop_sequence(),
        has_tool_use,
        refused,
    );
    let usage = resp
        .usage
        .as_ref()
        .map(usage_from_openai)
        .unwrap_or_default();
    let message = Message {
        id: ctx.message_id.clone(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence: stop_sequence.map(str::to_owned),
        usage: usage.into(),
    };
    Ok((message, usage))
}

/// [`response_from_openai`], serialized.
pub fn response_body(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let (message, usage) = response_from_openai(body, ctx)?;
    let bytes =
        serde_json::to_vec(&message).map_err(|e| TranslateError::Upstream(e.to_string()))?;
    Ok((bytes, usage))
}

/// Anthropic clients expect `input` to be an object; anything else (empty, truncated or
/// non-object arguments) becomes `{}` rather than a string.
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(serde_json::Map::new()),
    }
}

fn stop_reason<'a>(
    finish_reason: Option<&str>,
    matched_stop: Option<&'a str>,
    has_tool_use: bool,
    refused: bool,
) -> (StopReason, Option<&'a str>) {
    match finish_reason {
        // A call cut off by the length limit is not runnable: report the limit, as Anthropic does.
        Some("length" | "model_length") => (StopReason::MaxTokens, None),
        Some("content_filter") => (StopReason::Refusal, None),
        _ if refused => (StopReason::Refusal, None),
        // Some compatible servers say `stop` even when they produced calls.
        _ if has_tool_use => (StopReason::ToolUse, None),
        Some("stop") if matched_stop.is_some() => (StopReason::StopSequence, matched_stop),
        _ => (StopReason::EndTurn, None),
    }
}

fn usage_from_openai(u: &ChatUsage) -> Usage {
    let details = u.prompt_tokens_details.unwrap_or_default();
    let cache_read = details
        .cached_tokens
        .or(u.prompt_cache_hit_tokens)
        .unwrap_or(0);
    let cache_write = details.cache_write_tokens.unwrap_or(0);
    Usage {
        input_tokens: u
            .prompt_tokens
            .unwrap_or(0)
            .saturating_sub(cache_read)
            .saturating_sub(cache_write),
        output_tokens: u.completion_tokens.unwrap_or(0),
        cache_read_input_tokens: cache_read,
        cache_creation_input_tokens: cache_write,
    }
}

// ---------------------------------------------------------------------------------------------
// Stream: OpenAI chunks → Anthropic events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Streaming,
    Done,
}

/// The Anthropic block currently open (at most one: blocks never interleave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// Position in `StreamTranslator::tools`.
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
    upstream_index: Option<u32>,
    upstream_id: Option<String>,
    name: Option<String>,
    /// All argument text received; `args[..sent]` has been emitted.
    args: String,
    sent: usize,
    status: ToolStatus,
}

/// Turns an OpenAI chunk stream into the Anthropic event grammar (protocols.md §2.2, §5.4):
/// one `message_start`, blocks with contiguous indices that never overlap, then
/// `message_delta` + `message_stop` (or a single `error`).
#[derive(Debug)]
pub struct StreamTranslator {
    ctx: ResponseContext,
    phase: Phase,
    open: Open,
    open_index: usize,
    next_index: usize,
    /// Whitespace-only text not yet worth opening a block for (Anthropic rejects blank text
    /// blocks when clients send them back); emitted if real text follows.
    held_whitespace: String,
    tools: Vec<ToolState>,
    finish_reason: Option<String>,
    matched_stop: Option<String>,
    refused: bool,
    /// The stream ended with an `error` event rather than `message_stop`.
    failed: bool,
    usage: Usage,
}

impl StreamTranslator {
    pub fn new(ctx: ResponseContext) -> Self {
        Self {
            ctx,
            phase: Phase::Fresh,
            open: Open::None,
            open_index: 0,
            next_index: 0,
            held_whitespace: String::new(),
            tools: Vec::new(),
            finish_reason: None,
            matched_stop: None,
            refused: false,
            failed: false,
            usage: Usage::default(),
        }
    }

    /// Emits `message_start` and a `ping`. Called before any upstream data; later calls, and
    /// the implicit call from the other methods, do nothing.
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.phase != Phase::Fresh {
            return;
        }
        self.phase = Phase::Streaming;
        let message = Message {
            id: self.ctx.message_id.clone(),
            model: self.ctx.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default().into(),
        };
        StreamEvent::MessageStart { message: &message }.write_to(out);
        StreamEvent::Ping.write_to(out);
    }

    /// Feeds the `data` of one upstream SSE event.
    pub fn push_data(&mut self, data: &[u8], out: &mut BytesMut) -> StreamStatus {
        if self.phase == Phase::Done {
            return StreamStatus::Done;
        }
        self.start(out);
        let data = data.trim_ascii();
        if data.is_empty() {
            return StreamStatus::Continue;
        }
        if data == b"[DONE]" {
            self.finish(out);
            return StreamStatus::Done;
        }
        let chunk: o::ChatCompletion = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("upstream sent an invalid stream event: {e}");
                self.fail(ErrorType::ApiError, &message, out);
                return StreamStatus::Done;
            }
        };
        if let Some(err) = &chunk.error {
            let (kind, message) = stream_error(err, data);
            self.fail(kind, &message, out);
            return StreamStatus::Done;
        }
        if let Some(u) = &chunk.usage {
            self.usage = usage_from_openai(u);
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(m) = choice.matched_stop_sequence() {
                self.matched_stop = Some(m.to_owned());
            }
            if let Some(delta) = choice.delta {
                self.apply_delta(delta, out);
            }
            if choice.finish_reason.is_some() {
                // The usage chunk follows the finish reason, so the message is not closed yet.
                self.finish_reason = choice.finish_reason;
            }
        }
        StreamStatus::Continue
    }

    /// Ends the message: closes the open block and emits `message_delta` and `message_stop`.
    /// For `[DONE]`, and for an upstream that ended or was cut without it. Idempotent.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.phase == Phase::Done {
            return;
        }
        self.start(out);
        self.flush_tools(out);
        self.close_block(out);
        let (stop_reason, stop_sequence) = stop_reason(
            self.finish_reason.as_deref(),
            self.matched_stop.as_deref(),
            !self.tools.is_empty(),
            self.refused,
        );
        StreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason: Some(stop_reason),
                stop_sequence,
            },
            usage: self.usage.into(),
        }
        .write_to(out);
        StreamEvent::MessageStop.write_to(out);
        self.phase = Phase::Done;
    }

    /// Ends the stream with an `error` event and nothing after it. Idempotent.
    pub fn fail(&mut self, kind: ErrorType, message: &str, out: &mut BytesMut) {
        if self.phase == Phase::Done {
            return;
        }
        crate::sse::write_event(
            out,
            "error",
            &error::anthropic_error_body(kind, message, None),
        );
        self.phase = Phase::Done;
        self.failed = true;
    }

    /// True when the stream ended with an `error` event.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Usage reported so far (cumulative; final once the stream is done).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn apply_delta(&mut self, delta: o::ChoiceMessage, out: &mut BytesMut) {
        let reasoning = delta.reasoning_text();
        if !reasoning.is_empty() {
            if self.open != Open::Thinking {
                self.flush_tools(out);
                self.open_block(
                    out,
                    &ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: String::new(),
                    },
                    Open::Thinking,
                );
            }
            self.delta(
                out,
                Delta::ThinkingDelta {
                    thinking: reasoning,
                },
            );
        }
        self.text(&delta.content.0, out);
        if !delta.refusal.0.is_empty() {
            self.refused = true;
            self.text(&delta.refusal.0, out);
        }
        for call in delta.tool_calls.into_iter().flatten() {
            self.tool_fragment(call, out);
        }
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if text.is_empty() {
            return;
        }
        if self.open == Open::Text {
            self.delta(out, Delta::TextDelta { text });
            return;
        }
        if is_blank(text) {
            self.held_whitespace.push_str(text);
            return;
        }
        self.flush_tools(out);
        let mut held = std::mem::take(&mut self.held_whitespace);
        self.open_block(
            out,
            &ContentBlock::Text {
                text: String::new(),
            },
            Open::Text,
        );
        let text = if held.is_empty() {
            text
        } else {
            held.push_str(text);
            &held
        };
        self.delta(out, Delta::TextDelta { text });
    }

    fn tool_fragment(&mut self, call: ToolCallChunk, out: &mut BytesMut) {
        let upstream_id = call.id.filter(|id| !id.is_empty());
        let existing = match (call.index, upstream_id.as_deref()) {
            (Some(i), _) => self.tools.iter().position(|t| t.upstream_index == Some(i)),
            // Servers that omit `index` (whole calls in one fragment) are keyed by id; a
            // fragment with neither continues the latest call.
            (None, Some(id)) => self
                .tools
                .iter()
                .position(|t| t.upstream_id.as_deref() == Some(id)),
            (None, None) => self.tools.len().checked_sub(1),
        };
        let t = existing.unwrap_or_else(|| {
            self.tools.push(ToolState {
                upstream_index: call.index,
                upstream_id: None,
                name: None,
                args: String::new(),
                sent: 0,
                status: ToolStatus::Pending,
            });
            self.tools.len() - 1
        });
        let Some(tool) = self.tools.get_mut(t) else {
            return;
        };
        if tool.upstream_id.is_none() {
            tool.upstream_id = upstream_id;
        }
        if let Some(function) = call.function {
            if tool.name.is_none() {
                tool.name = function.name.filter(|n| !n.is_empty());
            }
            if let Some(args) = function.arguments {
                // Fragments for a block already closed cannot be represented any more.
                if tool.status != ToolStatus::Closed {
                    tool.args.push_str(&args.0);
                }
            }
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
                    .get(t)
                    .is_some_and(|tool| json_complete(&tool.args));
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
        let Some(tool) = self.tools.get_mut(t) else {
            return;
        };
        tool.status = ToolStatus::Open;
        let block = ContentBlock::ToolUse {
            id: ids::tool_id_from_upstream(tool.upstream_id.as_deref(), &self.ctx.message_id, t),
            name: tool.name.clone().unwrap_or_default(),
            input: Value::Object(serde_json::Map::new()),
        };
        self.open_block(out, &block, Open::Tool(t));
    }

    fn send_args(&mut self, t: usize, out: &mut BytesMut) {
        let index = self.open_index;
        if let Some(tool) = self.tools.get_mut(t)
            && let Some(fresh) = tool.args.get(tool.sent..).filter(|s| !s.is_empty())
        {
            StreamEvent::ContentBlockDelta {
                index,
                delta: Delta::InputJsonDelta {
                    partial_json: fresh,
                },
            }
            .write_to(out);
            tool.sent = tool.args.len();
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, block: &ContentBlock, kind: Open) {
        self.close_block(out);
        self.held_whitespace.clear();
        let index = self.next_index;
        self.next_index += 1;
        StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        }
        .write_to(out);
        self.open = kind;
        self.open_index = index;
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        match self.open {
            Open::None => return,
            Open::Tool(t) => {
                let index = self.open_index;
                if let Some(tool) = self.tools.get_mut(t) {
                    // Clients build `input` only from deltas (§10.1): a call without arguments
                    // still needs one carrying `{}`.
                    if is_blank(&tool.args) {
                        StreamEvent::ContentBlockDelta {
                            index,
                            delta: Delta::InputJsonDelta { partial_json: "{}" },
                        }
                        .write_to(out);
                    }
                    tool.status = ToolStatus::Closed;
                }
            }
            Open::Text | Open::Thinking => {}
        }
        StreamEvent::ContentBlockStop {
            index: self.open_index,
        }
        .write_to(out);
        self.open = Open::None;
    }

    fn delta(&self, out: &mut BytesMut, delta: Delta<'_>) {
        StreamEvent::ContentBlockDelta {
            index: self.open_index,
            delta,
        }
        .write_to(out);
    }
}

/// True when `s` is one whole JSON value: the call's arguments are finished.
fn json_complete(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
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
        // Unknown types are treated as deterministic so clients do not retry them
        // (protocols.md §3).
        _ => ErrorType::InvalidRequestError,
    })
}

// ---------------------------------------------------------------------------------------------
// Token counting
// ---------------------------------------------------------------------------------------------

/// All text a request would send upstream, newline-separated, for a tokenizer estimate:
/// system, message text, tool calls (name and input JSON), tool results, document text, and
/// tool definitions. Images and PDFs carry no text here; thinking is not sent upstream.
pub fn count_text(req: &CountTokensRequest) -> String {
    let mut out = TextSink::default();
    if let Some(system) = &req.system {
        match system {
            TextOrBlocks::Text(s) => out.push(s),
            TextOrBlocks::Blocks(blocks) => blocks.iter().for_each(|b| out.push(&b.text)),
        }
    }
    for m in &req.messages {
        out.content(&m.content);
    }
    for tool in req.tools.iter().flatten() {
        out.push(&tool.name);
        out.push(tool.description.as_deref().unwrap_or_default());
        if let Some(schema) = &tool.input_schema {
            out.push(&schema.to_string());
        }
    }
    out.0
}

#[derive(Default)]
struct TextSink(String);

impl TextSink {
    fn push(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(s);
    }

    fn content(&mut self, content: &MessageContent) {
        let blocks = match content {
            TextOrBlocks::Text(s) => return self.push(s),
            TextOrBlocks::Blocks(blocks) => blocks,
        };
        for block in blocks {
            match block {
                ContentBlockParam::Text { text } => self.push(text),
                ContentBlockParam::ToolUse { name, input, .. } => {
                    self.push(name);
                    self.push(&input.to_string());
                }
                ContentBlockParam::ToolResult {
                    content: Some(c), ..
                } => self.content(c),
                ContentBlockParam::Document { source, .. } => match source {
                    Source::Text { data, .. } => self.push(data),
                    Source::Content { content } => self.content(content),
                    _ => {}
                },
                _ => {}
            }
        }
    }
}
