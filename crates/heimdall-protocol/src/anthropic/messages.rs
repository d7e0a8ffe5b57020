//! Anthropic Messages API wire types: the request Heimdall accepts, the message it answers
//! with, and the events of a streamed answer.
//!
//! Request parsing is lenient about unknown fields (newer API fields must not break clients)
//! but strict about the shape of known ones, and every error names the JSON path of the bad
//! field the way Anthropic phrases it (`messages.0.content: …`, `max_tokens: Field required`).

use std::fmt;

use bytes::BytesMut;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sse;
use crate::translate::TranslateError;
use crate::usage::Usage;

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `POST /v1/messages` body.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u64,
    pub messages: Vec<MessageParam>,
    #[serde(default)]
    pub system: Option<SystemPrompt>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u64>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub thinking: Option<ThinkingConfig>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
}

impl MessagesRequest {
    /// Parses and validates a request body; the error names the offending field.
    pub fn from_slice(body: &[u8]) -> Result<Self, TranslateError> {
        let req: Self = parse_json(body)?;
        validate(&req.messages, req.tools.as_deref())?;
        Ok(req)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// `POST /v1/messages/count_tokens` body: a Messages request without generation settings.
#[derive(Debug, Clone, Deserialize)]
pub struct CountTokensRequest {
    pub model: String,
    pub messages: Vec<MessageParam>,
    #[serde(default)]
    pub system: Option<SystemPrompt>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub thinking: Option<ThinkingConfig>,
}

impl CountTokensRequest {
    pub fn from_slice(body: &[u8]) -> Result<Self, TranslateError> {
        let req: Self = parse_json(body)?;
        validate(&req.messages, req.tools.as_deref())?;
        Ok(req)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// Sent inside `messages` by SDK ≥ 2 and Claude Code (protocols.md §1.3).
    System,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessageParam {
    pub role: Role,
    pub content: MessageContent,
}

/// A string, or an array of blocks (`"content": "hi"` is shorthand for one text block).
#[derive(Debug, Clone, PartialEq)]
pub enum TextOrBlocks<B> {
    Text(String),
    Blocks(Vec<B>),
}

pub type MessageContent = TextOrBlocks<ContentBlockParam>;
pub type SystemPrompt = TextOrBlocks<TextBlockParam>;

impl<'de, B: Deserialize<'de>> Deserialize<'de> for TextOrBlocks<B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<B>(std::marker::PhantomData<B>);
        impl<'de, B: Deserialize<'de>> Visitor<'de> for V<B> {
            type Value = TextOrBlocks<B>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(TextOrBlocks::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(b) = seq.next_element()? {
                    blocks.push(b);
                }
                Ok(TextOrBlocks::Blocks(blocks))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A `system` block; only `text` blocks are allowed there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextBlockParam {
    pub text: String,
}

/// An input content block. Types Heimdall does not model (server tool results, search
/// results, …) are kept as [`ContentBlockParam::Other`] so each translator decides whether it
/// can represent them, and the error can name the type.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlockParam {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        title: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<MessageContent>,
        is_error: bool,
    },
    Thinking {
        thinking: String,
    },
    RedactedThinking,
    Other {
        kind: String,
    },
}

impl<'de> Deserialize<'de> for ContentBlockParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Text {
            text: String,
        }
        #[derive(Deserialize)]
        struct Image {
            source: Source,
        }
        #[derive(Deserialize)]
        struct Document {
            source: Source,
            #[serde(default)]
            title: Option<String>,
        }
        #[derive(Deserialize)]
        struct ToolUse {
            id: String,
            name: String,
            input: Value,
        }
        #[derive(Deserialize)]
        struct ToolResult {
            tool_use_id: String,
            #[serde(default)]
            content: Option<MessageContent>,
            #[serde(default)]
            is_error: Option<bool>,
        }
        #[derive(Deserialize)]
        struct Thinking {
            thinking: String,
        }

        // The `type` key may come after the others, so the block is buffered once and then
        // decoded by its type; unknown types stay readable (`Other`) instead of failing.
        let value = Value::deserialize(d)?;
        let kind = match value.get("type") {
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(nested_error("type", "expected a string")),
            None if value.is_object() => return Err(de::Error::missing_field("type")),
            None => {
                return Err(de::Error::invalid_type(
                    unexpected(&value),
                    &"a content block object",
                ));
            }
        };
        Ok(match kind.as_str() {
            "text" => {
                let b: Text = decode_nested(value)?;
                Self::Text { text: b.text }
            }
            "image" => {
                let b: Image = decode_nested(value)?;
                Self::Image { source: b.source }
            }
            "document" => {
                let b: Document = decode_nested(value)?;
                Self::Document {
                    source: b.source,
                    title: b.title,
                }
            }
            "tool_use" => {
                let b: ToolUse = decode_nested(value)?;
                Self::ToolUse {
                    id: b.id,
                    name: b.name,
                    input: b.input,
                }
            }
            "tool_result" => {
                let b: ToolResult = decode_nested(value)?;
                Self::ToolResult {
                    tool_use_id: b.tool_use_id,
                    content: b.content,
                    is_error: b.is_error.unwrap_or(false),
                }
            }
            "thinking" => {
                let b: Thinking = decode_nested(value)?;
                Self::Thinking {
                    thinking: b.thinking,
                }
            }
            "redacted_thinking" => Self::RedactedThinking,
            _ => Self::Other { kind },
        })
    }
}

/// Where an image's or document's bytes come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    Text {
        #[serde(default)]
        media_type: Option<String>,
        data: String,
    },
    Content {
        content: MessageContent,
    },
    File {
        file_id: String,
    },
}

/// A tool definition. Custom tools have no `type` (or `"custom"`); anything else is a server
/// tool executed by Anthropic.
#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl Tool {
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

impl ToolChoice {
    pub fn disables_parallel_tool_use(&self) -> bool {
        match self {
            Self::Auto {
                disable_parallel_tool_use,
            }
            | Self::Any {
                disable_parallel_tool_use,
            }
            | Self::Tool {
                disable_parallel_tool_use,
                ..
            } => disable_parallel_tool_use.unwrap_or(false),
            Self::None => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingConfig {
    Enabled {
        budget_tokens: u64,
    },
    Disabled,
    Adaptive,
    /// Newer modes (`between_tools`, …) that have no budget to map.
    #[serde(other)]
    Other,
}

/// The newer `output_config` (effort and structured output).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputConfig {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputFormat {
    JsonSchema { schema: Value },
}

/// Checks the rules serde cannot express; paths are Anthropic-style.
fn validate(messages: &[MessageParam], tools: Option<&[Tool]>) -> Result<(), TranslateError> {
    if messages.is_empty() {
        return Err(TranslateError::invalid(
            "messages",
            "at least one message is required",
        ));
    }
    for (i, tool) in tools.unwrap_or_default().iter().enumerate() {
        if tool.is_custom() && tool.input_schema.is_none() {
            return Err(TranslateError::invalid(
                format!("tools.{i}.input_schema"),
                "Field required",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parse errors with Anthropic-style paths
// ---------------------------------------------------------------------------------------------

/// Marks an error message that already carries a path relative to where it was raised
/// (content blocks are decoded from a buffered value, out of sight of the outer path tracker).
const NESTED: char = '\u{1f}';

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, TranslateError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let (path, message) = describe(e.path(), &strip_position(e.inner()));
        TranslateError::Invalid { path, message }
    })?;
    de.end()
        .map_err(|e| TranslateError::invalid("", e.to_string()))?;
    Ok(value)
}

/// serde_json appends ` at line L column C` to data errors; the path says more, so drop it.
/// Syntax errors keep it: there is no better locator for a stray comma.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.is_data() {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            return stripped.to_owned();
        }
    }
    text
}

/// Turns a serde path and message into Anthropic's `(path, message)`: missing fields become
/// `<path>.<field>: Field required`, and nested paths are joined onto the outer one.
fn describe(path: &serde_path_to_error::Path, message: &str) -> (String, String) {
    let mut out = String::new();
    for seg in path {
        let part = match seg {
            serde_path_to_error::Segment::Seq { index } => index.to_string(),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => continue,
        };
        push_segment(&mut out, &part);
    }
    let mut message = message;
    if let Some(rest) = message.strip_prefix(NESTED)
        && let Some((rel, msg)) = rest.split_once(NESTED)
    {
        push_segment(&mut out, rel);
        message = msg;
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        push_segment(&mut out, field);
        return (out, "Field required".to_owned());
    }
    (out, message.to_owned())
}

fn push_segment(path: &mut String, segment: &str) {
    if segment.is_empty() {
        return;
    }
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(segment);
}

fn nested_error<E: de::Error>(rel_path: &str, message: &str) -> E {
    E::custom(format_args!("{NESTED}{rel_path}{NESTED}{message}"))
}

/// Decodes a buffered block, keeping the path of any error inside it.
fn decode_nested<T: DeserializeOwned, E: de::Error>(value: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (path, message) = describe(e.path(), &e.inner().to_string());
        nested_error(&path, &message)
    })
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
    ModelContextWindowExceeded,
}

/// An output content block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Unsigned providers get `signature: ""` (strict clients require the field).
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// The `usage` object as Anthropic spells it, used by messages and `message_delta` alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Usage> for MessageUsage {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// A non-streaming response (`"type":"message"`, `"role":"assistant"`), also the `message`
/// of `message_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Message", 8)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("type", "message")?;
        st.serialize_field("role", &Role::Assistant)?;
        st.serialize_field("model", &self.model)?;
        st.serialize_field("content", &self.content)?;
        st.serialize_field("stop_reason", &self.stop_reason)?;
        st.serialize_field("stop_sequence", &self.stop_sequence)?;
        st.serialize_field("usage", &self.usage)?;
        st.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Stream events
// ---------------------------------------------------------------------------------------------

/// One event of an Anthropic stream. The SSE `event:` name and the JSON `"type"` both come
/// from the variant, so they cannot disagree.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart {
        message: &'a Message,
    },
    ContentBlockStart {
        index: usize,
        content_block: &'a ContentBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDelta<'a>,
        usage: MessageUsage,
    },
    MessageStop,
    Ping,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
    ThinkingDelta { thinking: &'a str },
}

#[derive(Debug, Serialize)]
pub struct MessageDelta<'a> {
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<&'a str>,
}

impl StreamEvent<'_> {
    pub const fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
        }
    }

    /// Appends this event as one SSE frame.
    pub fn write_to(&self, out: &mut BytesMut) {
        // Only strings, numbers and `Value`s are serialized: encoding cannot fail.
        let data = serde_json::to_vec(self).unwrap_or_default();
        sse::write_event(out, self.name(), &data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        MessagesRequest::from_slice(body.as_bytes())
            .unwrap_err()
            .message()
    }

    #[test]
    fn parses_all_block_kinds() {
        let req = MessagesRequest::from_slice(br#"{"model":"m","max_tokens":5,"unknown":1,
            "system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[
              {"text":"type comes last","type":"text"},
              {"type":"image","source":{"type":"url","url":"https://x/a.png"}},
              {"type":"document","source":{"type":"text","media_type":"text/plain","data":"d"},"title":"t"},
              {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"r"}],"is_error":true},
              {"type":"search_result","source":"https://x","content":[]}
            ]},{"role":"system","content":"late"}]}"#).unwrap();
        let TextOrBlocks::Blocks(blocks) = &req.messages[0].content else {
            panic!("blocks")
        };
        assert_eq!(blocks.len(), 5);
        assert_eq!(
            blocks[0],
            ContentBlockParam::Text {
                text: "type comes last".into()
            }
        );
        assert!(matches!(
            &blocks[3],
            ContentBlockParam::ToolResult { is_error: true, content: Some(TextOrBlocks::Blocks(b)), .. } if b.len() == 1
        ));
        assert_eq!(
            blocks[4],
            ContentBlockParam::Other {
                kind: "search_result".into()
            }
        );
        assert_eq!(req.messages[1].role, Role::System);
        assert!(!req.is_stream());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"messages":[],"max_tokens":1}"#),
            "model: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1}"#),
            "messages: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1,"messages":[]}"#),
            "messages: at least one message is required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":"1","messages":[]}"#),
            "max_tokens: invalid type: string \"1\", expected u64"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}"#),
            "messages.0.content: invalid type: integer `5`, expected a string or an array of content blocks"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1,"messages":[{"role":"bot","content":"x"}]}"#),
            "messages.0.role: unknown variant `bot`, expected one of `user`, `assistant`, `system`"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]}"#
            ),
            "messages.0.content.0.source.media_type: Field required"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text"}]}]}]}"#
            ),
            "messages.0.content.0.content.0.text: Field required"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":7}]}]}"#
            ),
            "messages.0.content.0.text: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#
            ),
            "messages.0.content.0.type: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":["x"]}]}"#),
            "messages.0.content.0: invalid type: string \"x\", expected a content block object"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"t"}]}"#
            ),
            "tools.0.input_schema: Field required"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool"}}"#
            ),
            "tool_choice.name: Field required"
        );
        assert!(err("{").starts_with("EOF while parsing"), "{}", err("{"));
        assert!(
            err(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]} x"#)
                .starts_with("trailing characters")
        );
    }

    #[test]
    fn count_tokens_request_has_no_max_tokens() {
        let r = CountTokensRequest::from_slice(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
    }

    #[test]
    fn event_type_equals_event_name() {
        let message = Message {
            id: "msg_1".into(),
            model: "m".into(),
            content: vec![],
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default().into(),
        };
        let block = ContentBlock::Text {
            text: String::new(),
        };
        let events = [
            StreamEvent::MessageStart { message: &message },
            StreamEvent::ContentBlockStart {
                index: 0,
                content_block: &block,
            },
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: Delta::TextDelta { text: "x" },
            },
            StreamEvent::ContentBlockStop { index: 0 },
            StreamEvent::MessageDelta {
                delta: MessageDelta {
                    stop_reason: Some(StopReason::EndTurn),
                    stop_sequence: None,
                },
                usage: message.usage,
            },
            StreamEvent::MessageStop,
            StreamEvent::Ping,
        ];
        for ev in events {
            let v = serde_json::to_value(&ev).unwrap();
            assert_eq!(v["type"], ev.name());
        }
    }
}
