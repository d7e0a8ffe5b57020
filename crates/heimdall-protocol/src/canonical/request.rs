//! The canonical request: what every front door decodes into and every upstream dialect
//! encodes from.
//!
//! It is Anthropic-shaped (content blocks, `tool_use`/`tool_result`, thinking), because the
//! main front door and the richest dialect are Anthropic's. Its serde impls read Anthropic's
//! wire form directly: a second, field-for-field identical wire type tree would cost a copy of
//! every request and a twin of every type for no gain. Other front doors build it by hand.
//!
//! Parsing is lenient about unknown fields (newer API fields must not break clients) but strict
//! about the shape of known ones, and every error names the JSON path of the bad field the way
//! Anthropic phrases it (`messages.0.content: …`, `max_tokens: Field required`).

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dialect::{Endpoint, TranslateError};

/// The user turn put before a history that starts with the assistant's: OpenAI-compatible
/// servers and Gemini (whose function calls must follow a user turn) reject such histories.
pub const SYNTHETIC_USER_TEXT: &str = "(continued)";

/// Signatures Heimdall carries for Gemini's parts on thinking blocks start with this (see
/// `dialect::gemini::signature`); they mean nothing to Claude.
pub const GEMINI_SIGNATURE_PREFIX: &str = "gemini:";

/// Whether a thinking block's signature can be Claude's own, so that a Claude upstream
/// (Anthropic, Vertex, Bedrock) can verify it: unsigned thinking (from OpenAI-compatible
/// reasoning, Ollama, DeepSeek…) and Gemini's marked signatures cannot.
pub fn is_claude_signature(signature: &str) -> bool {
    !signature.is_empty() && !signature.starts_with(GEMINI_SIGNATURE_PREFIX)
}

/// A request to generate (or count the tokens of) one assistant turn.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    pub model: String,
    /// Required by `/v1/messages`, absent on `count_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
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

impl Request {
    /// Parses and validates an Anthropic request body for `endpoint`; the error names the
    /// offending field.
    pub fn from_anthropic(body: &[u8], endpoint: Endpoint) -> Result<Self, TranslateError> {
        let req: Self = parse_json(body)?;
        if endpoint == Endpoint::Messages && req.max_tokens.is_none() {
            return Err(TranslateError::invalid("max_tokens", "Field required"));
        }
        validate(&req.messages, req.tools.as_deref())?;
        Ok(req)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// Sent inside `messages` by SDK ≥ 2 and Claude Code, which the API accepts.
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
    /// `cache_control` was set (see [`ContentBlockParam`]).
    #[serde(default, rename = "cache_control", deserialize_with = "present")]
    pub cache_point: bool,
}

/// A field that is there and not `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(!Value::deserialize(d)?.is_null())
}

/// An input content block. Types Heimdall does not model (server tool results, search
/// results, …) are kept as [`ContentBlockParam::Other`] so each translator decides whether it
/// can represent them, and the error can name the type.
///
/// `cache_point` says the client's `cache_control` marked the prompt-cache prefix as ending at
/// the block (its TTL is not carried: Bedrock's `cachePoint`, the only translation that uses
/// it, has one kind).
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlockParam {
    Text {
        text: String,
        cache_point: bool,
    },
    Image {
        source: Source,
        cache_point: bool,
    },
    Document {
        source: Source,
        title: Option<String>,
        cache_point: bool,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        cache_point: bool,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<MessageContent>,
        is_error: bool,
        cache_point: bool,
    },
    /// `signature` is what the producing provider needs to accept the block back (Anthropic,
    /// Claude on Bedrock); translators that cannot check it drop thinking anyway.
    Thinking {
        thinking: String,
        /// Empty when the client sent none. Only the dialect that minted a signature can read
        /// it, so each encoder decides whether a signature is its own.
        signature: String,
    },
    RedactedThinking,
    Other {
        kind: String,
    },
}

impl ContentBlockParam {
    /// Whether the client's `cache_control` ends the cached prefix at this block.
    pub fn cache_point(&self) -> bool {
        match self {
            Self::Text { cache_point, .. }
            | Self::Image { cache_point, .. }
            | Self::Document { cache_point, .. }
            | Self::ToolUse { cache_point, .. }
            | Self::ToolResult { cache_point, .. } => *cache_point,
            Self::Thinking { .. } | Self::RedactedThinking | Self::Other { .. } => false,
        }
    }
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
            #[serde(default)]
            signature: String,
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
        let cache_point = value.get("cache_control").is_some_and(|c| !c.is_null());
        Ok(match kind.as_str() {
            "text" => {
                let b: Text = decode_nested(value)?;
                Self::Text {
                    text: b.text,
                    cache_point,
                }
            }
            "image" => {
                let b: Image = decode_nested(value)?;
                Self::Image {
                    source: b.source,
                    cache_point,
                }
            }
            "document" => {
                let b: Document = decode_nested(value)?;
                Self::Document {
                    source: b.source,
                    title: b.title,
                    cache_point,
                }
            }
            "tool_use" => {
                let b: ToolUse = decode_nested(value)?;
                Self::ToolUse {
                    id: b.id,
                    name: b.name,
                    input: b.input,
                    cache_point,
                }
            }
            "tool_result" => {
                let b: ToolResult = decode_nested(value)?;
                Self::ToolResult {
                    tool_use_id: b.tool_use_id,
                    content: b.content,
                    is_error: b.is_error.unwrap_or(false),
                    cache_point,
                }
            }
            "thinking" => {
                let b: Thinking = decode_nested(value)?;
                Self::Thinking {
                    thinking: b.thinking,
                    signature: b.signature,
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
    /// `cache_control` was set: the cached prefix ends after this tool.
    #[serde(default, rename = "cache_control", deserialize_with = "present")]
    pub cache_point: bool,
}

impl Tool {
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }

    /// Fails for a server tool (`tools.{index}`): those run inside Anthropic, and silently
    /// dropping one changes what the model can do, so a translated request fails closed.
    pub fn require_custom(&self, index: usize) -> Result<(), TranslateError> {
        if self.is_custom() {
            return Ok(());
        }
        Err(TranslateError::unsupported(
            format!("tools.{index}"),
            format!(
                "server tool `{}` (type `{}`) is not supported by this model's provider",
                self.name,
                self.kind.as_deref().unwrap_or_default()
            ),
        ))
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
// Token counting
// ---------------------------------------------------------------------------------------------

impl Request {
    /// All text a request would send upstream, newline-separated, for a tokenizer estimate:
    /// system, message text, tool calls (name and input JSON), tool results, document text, and
    /// tool definitions. Images and PDFs carry no text here; thinking is not sent upstream.
    pub fn counting_text(&self) -> String {
        let req = self;
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
                ContentBlockParam::Text { text, .. } => self.push(text),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        Request::from_anthropic(body.as_bytes(), Endpoint::Messages)
            .unwrap_err()
            .message()
    }

    #[test]
    fn parses_all_block_kinds() {
        let req = Request::from_anthropic(br#"{"model":"m","max_tokens":5,"unknown":1,
            "system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[
              {"text":"type comes last","type":"text"},
              {"type":"image","source":{"type":"url","url":"https://x/a.png"}},
              {"type":"document","source":{"type":"text","media_type":"text/plain","data":"d"},"title":"t"},
              {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"r"}],"is_error":true},
              {"type":"search_result","source":"https://x","content":[]}
            ]},{"role":"system","content":"late"}]}"#, Endpoint::Messages).unwrap();
        let TextOrBlocks::Blocks(blocks) = &req.messages[0].content else {
            panic!("blocks")
        };
        assert_eq!(blocks.len(), 5);
        assert_eq!(
            blocks[0],
            ContentBlockParam::Text {
                text: "type comes last".into(),
                cache_point: false
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
        let r = Request::from_anthropic(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            Endpoint::CountTokens,
        )
        .unwrap();
        assert_eq!(r.model, "m");
    }
}
