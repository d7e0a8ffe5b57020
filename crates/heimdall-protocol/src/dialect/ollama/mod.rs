//! Ollama's native chat API (`POST /api/chat`): messages much like OpenAI's, tool calls whose
//! arguments are JSON objects and arrive whole, images as bare base64, `think` for reasoning,
//! and newline-delimited JSON streams whose last line says `"done": true`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::text::{
    UserBlock, assistant_block_error, is_blank, join_texts, system_message_text,
    system_prompt_text, user_block,
};
use super::{
    AnswerSummary, DialectId, ModelInfo, ResponseContext, StreamDecoder, TapVerdict,
    TranslateError, UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::canonical::{
    self, ContentBlock, ContentBlockParam, Delta, InlineMedia, MessageContent, OutputFormat, Role,
    Source, StopReason, TextOrBlocks, ThinkingConfig, ToolChoice, Usage,
};
use crate::error::{ErrorType, parse_upstream_error};
use crate::framing::ndjson::NdjsonFramer;
use crate::framing::{Frame, Framer};
use crate::ids;

pub const DIALECT: DialectId = DialectId("ollama");

/// Ollama tool messages have no error flag; the model must still see that the tool failed.
const TOOL_ERROR_PREFIX: &str = "[tool error] ";

#[derive(Debug, Clone, Copy, Default)]
pub struct Ollama;

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage>,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
}

#[derive(Serialize, Default)]
struct ChatMessage {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChatChunk {
    #[serde(default)]
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
struct ChunkMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl ChatChunk {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
            ..Usage::default()
        }
    }

    fn stop_hint(&self) -> Option<StopReason> {
        match self.done_reason.as_deref()? {
            "length" => Some(StopReason::MaxTokens),
            _ => Some(StopReason::EndTurn),
        }
    }
}

/// Arguments as a JSON object (Ollama sends objects; anything else becomes `{}`).
fn arguments_object(v: Value) -> Value {
    match v {
        Value::Object(_) => v,
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(o @ Value::Object(_)) => o,
            _ => Value::Object(Map::new()),
        },
        _ => Value::Object(Map::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

fn encode<'a>(req: &canonical::Request, model: &'a str) -> Result<ChatRequest<'a>, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        push_text(&mut messages, "system", system_prompt_text(system));
    }
    // Tool results name their tool; the id → name map comes from the assistant's calls.
    let mut tool_names: Vec<(String, String)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let base = format!("messages.{i}.content");
        match m.role {
            Role::System => push_text(
                &mut messages,
                "system",
                system_message_text(&m.content, &base)?,
            ),
            Role::User => user_turn(&mut messages, &m.content, &base, &tool_names)?,
            Role::Assistant => assistant_turn(&mut messages, &m.content, &base, &mut tool_names)?,
        }
    }
    let tools = match req.tool_choice {
        // Ollama has no tool_choice; "none" is honoured by not offering the tools.
        Some(ToolChoice::None) => Vec::new(),
        _ => tools(req)?,
    };
    let mut options = Map::new();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            options.insert(k.to_owned(), v);
        }
    };
    set("num_predict", req.max_tokens.map(Value::from));
    set("temperature", req.temperature.map(Value::from));
    set("top_p", req.top_p.map(Value::from));
    set("top_k", req.top_k.map(Value::from));
    set(
        "stop",
        req.stop_sequences
            .clone()
            .filter(|s| !s.is_empty())
            .map(Value::from),
    );
    Ok(ChatRequest {
        model,
        messages,
        stream: req.is_stream(),
        tools,
        think: req.thinking.as_ref().and_then(|t| match t {
            ThinkingConfig::Enabled { .. } | ThinkingConfig::Adaptive => Some(true),
            ThinkingConfig::Disabled => Some(false),
            ThinkingConfig::Other => None,
        }),
        format: req
            .output_config
            .as_ref()
            .and_then(|c| c.format.as_ref())
            .map(|OutputFormat::JsonSchema { schema }| schema.clone()),
        options,
    })
}

fn push_text(out: &mut Vec<ChatMessage>, role: &'static str, text: String) {
    if !is_blank(&text) {
        out.push(ChatMessage {
            role,
            content: text,
            ..ChatMessage::default()
        });
    }
}

/// Text and images of user-side content; tool results become `tool` messages first.
fn user_turn(
    out: &mut Vec<ChatMessage>,
    content: &MessageContent,
    base: &str,
    tool_names: &[(String, String)],
) -> Result<(), TranslateError> {
    let blocks = match content {
        TextOrBlocks::Text(s) => {
            push_text(out, "user", s.clone());
            return Ok(());
        }
        TextOrBlocks::Blocks(b) => b,
    };
    let mut own = ChatMessage {
        role: "user",
        ..ChatMessage::default()
    };
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{base}.{j}");
        if let ContentBlockParam::ToolResult {
            tool_use_id,
            content,
            is_error,
            ..
        } = block
        {
            let mut result = ChatMessage {
                role: "tool",
                tool_name: tool_names
                    .iter()
                    .find(|(id, _)| id == tool_use_id)
                    .map(|(_, name)| name.clone()),
                ..ChatMessage::default()
            };
            let mut parts = Vec::new();
            if let Some(c) = content {
                collect(
                    c,
                    &format!("{path}.content"),
                    &mut parts,
                    &mut result.images,
                )?;
            }
            let text = join_texts(parts.iter().map(String::as_str));
            result.content = if *is_error {
                format!("{TOOL_ERROR_PREFIX}{text}")
            } else {
                text
            };
            out.push(result);
        } else {
            collect_block(block, &path, &mut texts, &mut own.images)?;
        }
    }
    own.content = join_texts(texts.iter().map(String::as_str));
    if !own.content.is_empty() || !own.images.is_empty() {
        out.push(own);
    }
    Ok(())
}

fn collect(
    content: &MessageContent,
    path: &str,
    texts: &mut Vec<String>,
    images: &mut Vec<String>,
) -> Result<(), TranslateError> {
    match content {
        TextOrBlocks::Text(s) => texts.push(s.clone()),
        TextOrBlocks::Blocks(blocks) => {
            for (k, b) in blocks.iter().enumerate() {
                collect_block(b, &format!("{path}.{k}"), texts, images)?;
            }
        }
    }
    Ok(())
}

fn collect_block(
    block: &ContentBlockParam,
    path: &str,
    texts: &mut Vec<String>,
    images: &mut Vec<String>,
) -> Result<(), TranslateError> {
    match user_block(block, path)? {
        Some(UserBlock::Text(text)) => texts.push(text.to_owned()),
        Some(UserBlock::Image(source)) => match source {
            Source::Base64 { data, .. } => images.push(data.clone()),
            _ => {
                return Err(TranslateError::unsupported(
                    format!("{path}.source"),
                    "this model's provider takes images as base64 only",
                ));
            }
        },
        Some(UserBlock::Document { source, .. }) => match source {
            Source::Text { data, .. } => texts.push(data.clone()),
            Source::Content { content } => {
                collect(content, &format!("{path}.source.content"), texts, images)?
            }
            _ => {
                return Err(TranslateError::unsupported(
                    format!("{path}.source"),
                    "this model's provider takes documents as plain text only",
                ));
            }
        },
        None => {}
    }
    Ok(())
}

fn assistant_turn(
    out: &mut Vec<ChatMessage>,
    content: &MessageContent,
    base: &str,
    tool_names: &mut Vec<(String, String)>,
) -> Result<(), TranslateError> {
    let mut message = ChatMessage {
        role: "assistant",
        ..ChatMessage::default()
    };
    let blocks = match content {
        TextOrBlocks::Text(s) => {
            push_text(out, "assistant", s.clone());
            return Ok(());
        }
        TextOrBlocks::Blocks(b) => b,
    };
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlockParam::Text { text, .. } => texts.push(text.as_str()),
            ContentBlockParam::ToolUse {
                id, name, input, ..
            } => {
                tool_names.push((id.clone(), name.clone()));
                message.tool_calls.push(serde_json::json!({
                    "function": {"name": name, "arguments": input}
                }));
            }
            ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking => {}
            other => return Err(assistant_block_error(other, format!("{base}.{j}"))),
        }
    }
    message.content = join_texts(texts.into_iter());
    if !message.content.is_empty() || !message.tool_calls.is_empty() {
        out.push(message);
    }
    Ok(())
}

fn tools(req: &canonical::Request) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if !t.is_custom() {
            return Err(TranslateError::unsupported(
                format!("tools.{i}"),
                format!(
                    "server tool `{}` is not supported by this model's provider",
                    t.name
                ),
            ));
        }
        out.push(serde_json::json!({
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description.clone().unwrap_or_default(),
                "parameters": t.input_schema.clone().unwrap_or_else(|| serde_json::json!({"type": "object"})),
            }
        }));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Response and stream
// ---------------------------------------------------------------------------------------------

fn in_band_error(err: &Value, data: &[u8]) -> (ErrorType, String) {
    let message = parse_upstream_error(data)
        .map(|e| e.message)
        .or_else(|| err.as_str().map(str::to_owned))
        .unwrap_or_else(|| "upstream reported an error".to_owned());
    (ErrorType::ApiError, message)
}

fn decode(body: &[u8], ctx: &ResponseContext) -> Result<canonical::Response, TranslateError> {
    let chunk: ChatChunk =
        serde_json::from_slice(body).map_err(|e| TranslateError::Upstream(e.to_string()))?;
    if let Some(err) = &chunk.error {
        return Err(TranslateError::Upstream(in_band_error(err, body).1));
    }
    let usage = chunk.usage();
    let hint = chunk.stop_hint();
    let message = chunk.message.unwrap_or_default();
    let mut content = Vec::new();
    if let Some(t) = message.thinking.filter(|t| !t.is_empty()) {
        content.push(ContentBlock::Thinking {
            thinking: t,
            signature: String::new(),
        });
    }
    if let Some(t) = message.content.filter(|t| !t.trim().is_empty()) {
        content.push(ContentBlock::Text { text: t });
    }
    let calls = message.tool_calls.unwrap_or_default();
    let has_tool_use = !calls.is_empty();
    for (i, call) in calls.into_iter().enumerate() {
        content.push(ContentBlock::ToolUse {
            id: ids::tool_id_from_upstream(call.id.as_deref(), &ctx.message_id, i),
            name: call.function.name,
            input: arguments_object(call.function.arguments),
        });
    }
    Ok(canonical::Response {
        id: ctx.message_id.clone(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(StopReason::settle(hint, has_tool_use, false)),
        stop_sequence: None,
        usage,
    })
}

/// Reads NDJSON lines up to the one with `"done": true`.
#[derive(Default)]
struct OllamaDecoder {
    calls: usize,
    done: bool,
}

impl StreamDecoder for OllamaDecoder {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>) {
        if self.done {
            return;
        }
        let chunk: ChatChunk = match serde_json::from_slice(&frame.data) {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                out.push(Delta::Error {
                    kind: ErrorType::ApiError,
                    message: format!("upstream sent an invalid stream line: {e}"),
                });
                return;
            }
        };
        if let Some(err) = &chunk.error {
            self.done = true;
            let (kind, message) = in_band_error(err, &frame.data);
            out.push(Delta::Error { kind, message });
            return;
        }
        let usage = chunk.usage();
        let hint = chunk.stop_hint();
        if let Some(m) = chunk.message {
            if let Some(t) = m.thinking.filter(|t| !t.is_empty()) {
                out.push(Delta::Thinking(t));
            }
            if let Some(t) = m.content.filter(|t| !t.is_empty()) {
                out.push(Delta::Text(t));
            }
            for call in m.tool_calls.into_iter().flatten() {
                // Calls arrive whole: one fragment carries all the arguments.
                out.push(Delta::ToolCall {
                    call: self.calls,
                    id: call.id,
                    name: Some(call.function.name),
                    arguments: arguments_object(call.function.arguments).to_string(),
                });
                self.calls += 1;
            }
        }
        if chunk.done {
            self.done = true;
            out.push(Delta::Usage(usage));
            out.push(Delta::Stop {
                reason: hint,
                sequence: None,
            });
            out.push(Delta::Done);
        }
    }

    fn end(&mut self, out: &mut Vec<Delta>) {
        if !self.done {
            self.done = true;
            out.push(Delta::Error {
                kind: ErrorType::ApiError,
                message: "upstream stream ended before the answer was finished".to_owned(),
            });
        }
    }
}

#[derive(Default)]
struct OllamaTap {
    usage: Usage,
    done_reason: Option<String>,
}

impl UsageTap for OllamaTap {
    fn observe(&mut self, frame: &Frame) -> TapVerdict {
        let Ok(chunk) = serde_json::from_slice::<ChatChunk>(&frame.data) else {
            return TapVerdict::Invalid;
        };
        if chunk.error.is_some() {
            return TapVerdict::Failed;
        }
        if chunk.done {
            self.usage = chunk.usage();
            self.done_reason = chunk.done_reason;
            return TapVerdict::Complete;
        }
        TapVerdict::Continue
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.done_reason.as_deref()
    }
}

impl UpstreamDialect for Ollama {
    fn embeddings(&self) -> Option<crate::dialect::embeddings::EmbeddingWire> {
        Some(crate::dialect::embeddings::EmbeddingWire::Ollama)
    }

    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(NdjsonFramer::new(max_event_bytes))
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        serde_json::from_slice::<ChatChunk>(body)
            .ok()
            .filter(|c| c.done)
            .map(|c| AnswerSummary {
                usage: c.usage(),
                stop_reason: c.done_reason,
            })
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<OllamaTap>::default()
    }

    fn decode_model_list(&self, body: &[u8]) -> Option<Vec<ModelInfo>> {
        #[derive(Deserialize)]
        struct Tags {
            models: Vec<Tag>,
        }
        #[derive(Deserialize)]
        struct Tag {
            name: String,
            #[serde(default)]
            modified_at: Option<String>,
        }
        let tags: Tags = serde_json::from_slice(body).ok()?;
        Some(
            tags.models
                .into_iter()
                .map(|t| ModelInfo {
                    display_name: t.name.clone(),
                    created_at: t.modified_at.unwrap_or_else(|| crate::time::rfc3339(0)),
                    id: t.name,
                })
                .collect(),
        )
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        Some(self)
    }
}

impl UpstreamCodec for Ollama {
    fn encode_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError> {
        let body = encode(request, upstream_model)?;
        serde_json::to_vec(&body).map_err(|e| TranslateError::Internal(e.to_string()))
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError> {
        decode(body, ctx)
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::<OllamaDecoder>::default()
    }

    /// `images` holds bare base64.
    fn inline_media(&self) -> InlineMedia {
        InlineMedia::ALL
    }
}
