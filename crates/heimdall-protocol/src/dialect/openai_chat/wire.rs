//! Chat Completions wire types: the request Heimdall sends (serialize only) and the response
//! and stream chunks it reads (deserialize only, lenient: OpenAI-compatible servers differ in
//! which fields they send, send `null` for absent ones, and add their own).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// OpenAI's reasoning models reject `max_tokens`; which of the two is sent is a quirk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// The older name, for servers that do not know `max_completion_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ChatToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: UserContent,
    },
    Assistant {
        /// `null` when the turn is only tool calls.
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A plain string when the turn is one text, otherwise typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum UserContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    File { file: FileData },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:<media type>;base64,…` URL.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileData {
    pub filename: String,
    /// `data:<media type>;base64,…`
    pub file_data: String,
}

/// The constant `"type":"function"` of tools, tool calls and named tool choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionType {
    #[default]
    Function,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub kind: FunctionType,
    pub function: FunctionDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChatToolChoice {
    Mode(ToolChoiceMode),
    Function {
        #[serde(rename = "type")]
        kind: FunctionType,
        function: FunctionName,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    Auto,
    Required,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionName {
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub schema: Value,
    pub strict: bool,
}

// ---------------------------------------------------------------------------------------------
// Response and stream chunks
// ---------------------------------------------------------------------------------------------

/// A `chat.completion` body or one `chat.completion.chunk` of a stream: the two differ only
/// in whether choices carry `message` or `delta`, so one lenient type reads both.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatCompletion {
    #[serde(default)]
    pub choices: Option<Vec<Choice>>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    /// Set on errors reported inside a 200 stream.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub message: Option<ChoiceMessage>,
    #[serde(default)]
    pub delta: Option<ChoiceMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM: the matched stop string (or a token id).
    #[serde(default)]
    pub stop_reason: Option<Value>,
    /// SGLang: the matched stop string (or a token id).
    #[serde(default)]
    pub matched_stop: Option<Value>,
}

impl Choice {
    /// The custom stop string the server says it matched, if it says so.
    pub fn matched_stop_sequence(&self) -> Option<&str> {
        [&self.stop_reason, &self.matched_stop]
            .into_iter()
            .find_map(|v| v.as_ref().and_then(Value::as_str))
    }
}

/// `message` of a completion or `delta` of a chunk.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChoiceMessage {
    #[serde(default)]
    pub content: LenientText,
    #[serde(default)]
    pub refusal: LenientText,
    /// DeepSeek, older vLLM, LiteLLM.
    #[serde(default)]
    pub reasoning_content: LenientText,
    /// OpenRouter, Ollama, Groq, newer vLLM.
    #[serde(default)]
    pub reasoning: LenientText,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallChunk>>,
}

impl ChoiceMessage {
    /// Reasoning text under whichever name the server uses; servers sending both send the
    /// same text twice, so only one is taken.
    pub fn reasoning_text(&self) -> &str {
        if self.reasoning_content.0.is_empty() {
            &self.reasoning.0
        } else {
            &self.reasoning_content.0
        }
    }
}

/// A tool call of a completion, or one fragment of it in a stream.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolCallChunk {
    /// Position of the call in the message; keys stream fragments.
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionChunk>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionChunk {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<ArgumentsText>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// DeepSeek's name for cached prompt tokens.
    #[serde(default)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
}

/// Text that servers may send as a string, `null`, or an array of parts (Mistral); parts'
/// `text` fields are concatenated and anything else reads as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LenientText(pub String);

impl<'de> Deserialize<'de> for LenientText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LenientText, E> {
                Ok(LenientText(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<LenientText, E> {
                Ok(LenientText(s))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientText, E> {
                Ok(LenientText::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientText, A::Error> {
                #[derive(Deserialize)]
                struct Part {
                    #[serde(default)]
                    text: LenientText,
                }
                let mut out = String::new();
                while let Some(p) = seq.next_element::<Part>()? {
                    out.push_str(&p.text.0);
                }
                Ok(LenientText(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LenientText, A::Error> {
                IgnoredAny::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LenientText::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Tool-call arguments as JSON text. Some servers send the arguments as a JSON object instead
/// of a string; that is serialized once so callers only ever see text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgumentsText(pub String);

impl<'de> Deserialize<'de> for ArgumentsText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ArgumentsText(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_fields() {
        let c: ChatCompletion = serde_json::from_str(
            r#"{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"a"},{"type":"thinking","thinking":[]},{"type":"text","text":"b"}],
               "reasoning":{"effort":"low"},"tool_calls":[{"id":"c","function":{"name":"f","arguments":{"x":1}}},{"function":{"arguments":null}}]},
               "finish_reason":null,"stop_reason":"END"}],"usage":null}"#,
        )
        .unwrap();
        let choice = &c.choices.unwrap()[0];
        let m = choice.message.as_ref().unwrap();
        assert_eq!(m.content.0, "ab");
        assert_eq!(m.reasoning_text(), "");
        let calls = m.tool_calls.as_ref().unwrap();
        let args = |i: usize| calls[i].function.as_ref().unwrap().arguments.clone();
        assert_eq!(args(0), Some(ArgumentsText(r#"{"x":1}"#.into())));
        assert_eq!(args(1), None);
        assert_eq!(choice.matched_stop_sequence(), Some("END"));
        assert!(c.usage.is_none());
    }
}
