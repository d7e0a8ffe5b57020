//! Canonical request → Converse request.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::canonical::{
    ContentBlockParam, MessageContent, Request, Role, Source, SystemPrompt, TextOrBlocks,
    ThinkingConfig, ToolChoice, is_claude_signature,
};
use crate::dialect::TranslateError;
use crate::dialect::text::{UserBlock, assistant_block_error, is_blank, user_block};
use crate::ids;

/// Converse rejects a conversation whose first turn is not the user's.
const SYNTHETIC_USER_TEXT: &str = "(continued)";
/// Some models reject a tool result without content (Claude: empty text is a 400); the model
/// still learns that the tool ran and said nothing.
const EMPTY_TOOL_RESULT: &str = "(no output)";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Value>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    additional_model_request_fields: Map<String, Value>,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: Vec<Value>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
}

impl InferenceConfig {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

/// Model families whose own request fields (`additionalModelRequestFields`) Heimdall fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Anthropic's fields: `thinking`, `top_k`.
    Claude,
    /// Amazon Nova 2: `reasoningConfig` with an effort.
    Nova2,
    /// OpenAI's open-weight models: `reasoning_effort`.
    GptOss,
    Other,
}

fn family(model: &str) -> Family {
    let m = model.to_ascii_lowercase();
    if m.contains("anthropic.") || m.starts_with("claude") {
        Family::Claude
    } else if m.contains("nova-2") {
        Family::Nova2
    } else if m.contains("gpt-oss") {
        Family::GptOss
    } else {
        Family::Other
    }
}

pub(super) fn encode(req: &Request, model: &str) -> Result<Vec<u8>, TranslateError> {
    let family = family(model);
    let mut enc = Encoder::default();
    if let Some(system) = &req.system {
        enc.system_prompt(system);
    }
    for (i, m) in req.messages.iter().enumerate() {
        let base = format!("messages.{i}.content");
        match m.role {
            Role::System => enc.system_message(&m.content, &base)?,
            Role::User => enc.user_turn(&m.content, &base)?,
            Role::Assistant => enc.assistant_turn(&m.content, &base)?,
        }
    }
    if enc.messages.first().is_some_and(|m| m.role != "user") {
        enc.messages.insert(
            0,
            Message {
                role: "user",
                content: vec![json!({"text": SYNTHETIC_USER_TEXT})],
            },
        );
    }
    if req
        .output_config
        .as_ref()
        .is_some_and(|c| c.format.is_some())
    {
        return Err(TranslateError::unsupported(
            "output_config.format",
            "structured output is not supported by this model's provider",
        ));
    }
    let body = ConverseRequest {
        tool_config: tool_config(req, enc.has_tool_blocks)?,
        messages: enc.messages,
        system: enc.system,
        inference_config: InferenceConfig {
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: req.stop_sequences.clone().unwrap_or_default(),
        },
        additional_model_request_fields: model_fields(req, family),
    };
    serde_json::to_vec(&body).map_err(|e| TranslateError::Internal(e.to_string()))
}

#[derive(Default)]
struct Encoder {
    system: Vec<Value>,
    messages: Vec<Message>,
    /// Converse requires `toolConfig` whenever the history holds tool blocks.
    has_tool_blocks: bool,
    /// Documents need a name; numbered when the client gave none.
    documents: usize,
}

impl Encoder {
    fn system_prompt(&mut self, system: &SystemPrompt) {
        match system {
            TextOrBlocks::Text(s) => push_text(&mut self.system, s),
            TextOrBlocks::Blocks(blocks) => {
                for b in blocks {
                    push_text(&mut self.system, &b.text);
                    if b.cache_point {
                        push_cache_point(&mut self.system);
                    }
                }
            }
        }
    }

    /// Converse has no system role inside `messages`: such a message joins the system prompt.
    fn system_message(
        &mut self,
        content: &MessageContent,
        base: &str,
    ) -> Result<(), TranslateError> {
        match content {
            TextOrBlocks::Text(s) => push_text(&mut self.system, s),
            TextOrBlocks::Blocks(blocks) => {
                for (j, b) in blocks.iter().enumerate() {
                    let ContentBlockParam::Text { text, .. } = b else {
                        return Err(TranslateError::invalid(
                            format!("{base}.{j}"),
                            "system messages may only contain text blocks",
                        ));
                    };
                    push_text(&mut self.system, text);
                    if b.cache_point() {
                        push_cache_point(&mut self.system);
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends to the last message when it has the same role: Converse wants turns to
    /// alternate, while Anthropic merges consecutive turns itself.
    fn push(&mut self, role: &'static str, content: Vec<Value>) {
        if content.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => self.messages.push(Message { role, content }),
        }
    }

    fn user_turn(&mut self, content: &MessageContent, base: &str) -> Result<(), TranslateError> {
        let mut out = Vec::new();
        match content {
            TextOrBlocks::Text(s) => push_text(&mut out, s),
            TextOrBlocks::Blocks(blocks) => {
                for (j, block) in blocks.iter().enumerate() {
                    let path = format!("{base}.{j}");
                    if let ContentBlockParam::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                        ..
                    } = block
                    {
                        self.has_tool_blocks = true;
                        out.push(self.tool_result(
                            tool_use_id,
                            content.as_ref(),
                            *is_error,
                            &path,
                        )?);
                    } else {
                        self.user_block(block, &path, &mut out)?;
                    }
                    if block.cache_point() {
                        push_cache_point(&mut out);
                    }
                }
            }
        }
        self.push("user", out);
        Ok(())
    }

    fn tool_result(
        &mut self,
        tool_use_id: &str,
        content: Option<&MessageContent>,
        is_error: bool,
        path: &str,
    ) -> Result<Value, TranslateError> {
        let mut items = Vec::new();
        match content {
            None => {}
            Some(TextOrBlocks::Text(s)) => push_text(&mut items, s),
            Some(TextOrBlocks::Blocks(blocks)) => {
                for (k, b) in blocks.iter().enumerate() {
                    self.user_block(b, &format!("{path}.content.{k}"), &mut items)?;
                }
            }
        }
        if items.is_empty() {
            items.push(json!({"text": EMPTY_TOOL_RESULT}));
        }
        let mut result = json!({
            "toolUseId": ids::tool_id_to_upstream(tool_use_id),
            "content": items,
        });
        if is_error {
            result["status"] = json!("error");
        }
        Ok(json!({"toolResult": result}))
    }

    /// A user-side block other than a tool result (also the items of a tool result).
    fn user_block(
        &mut self,
        block: &ContentBlockParam,
        path: &str,
        out: &mut Vec<Value>,
    ) -> Result<(), TranslateError> {
        match user_block(block, path)? {
            Some(UserBlock::Text(text)) => push_text(out, text),
            Some(UserBlock::Image(source)) => out.push(image(source, path)?),
            Some(UserBlock::Document { source, title }) => {
                self.document(source, title, path, out)?;
            }
            None => {}
        }
        Ok(())
    }

    fn document(
        &mut self,
        source: &Source,
        title: Option<&str>,
        path: &str,
        out: &mut Vec<Value>,
    ) -> Result<(), TranslateError> {
        match source {
            Source::Text { data, .. } => push_text(out, data),
            Source::Content { content } => {
                let inner = format!("{path}.source.content");
                match content {
                    TextOrBlocks::Text(s) => push_text(out, s),
                    TextOrBlocks::Blocks(blocks) => {
                        for (k, b) in blocks.iter().enumerate() {
                            self.user_block(b, &format!("{inner}.{k}"), out)?;
                        }
                    }
                }
            }
            Source::Base64 { media_type, data } if media_type == "application/pdf" => {
                self.documents += 1;
                let name = title
                    .map(document_name)
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("document-{}", self.documents));
                out.push(json!({"document": {
                    "format": "pdf",
                    "name": name,
                    "source": {"bytes": data},
                }}));
            }
            _ => {
                return Err(TranslateError::unsupported(
                    format!("{path}.source"),
                    "this model's provider takes documents as base64 PDF or plain text only",
                ));
            }
        }
        Ok(())
    }

    fn assistant_turn(
        &mut self,
        content: &MessageContent,
        base: &str,
    ) -> Result<(), TranslateError> {
        let mut out = Vec::new();
        match content {
            TextOrBlocks::Text(s) => push_text(&mut out, s),
            TextOrBlocks::Blocks(blocks) => {
                for (j, block) in blocks.iter().enumerate() {
                    match block {
                        ContentBlockParam::Text { text, .. } => push_text(&mut out, text),
                        ContentBlockParam::ToolUse {
                            id, name, input, ..
                        } => {
                            self.has_tool_blocks = true;
                            out.push(json!({"toolUse": {
                                "toolUseId": ids::tool_id_to_upstream(id),
                                "name": name,
                                "input": input,
                            }}));
                        }
                        // Signed reasoning goes back as it came (models that sign it, such as
                        // Claude, verify it); unsigned or redacted reasoning cannot be checked
                        // by the model, so it is left out, as the other dialects do.
                        ContentBlockParam::Thinking {
                            thinking,
                            signature,
                        } if is_claude_signature(signature) => {
                            out.push(json!({"reasoningContent": {"reasoningText": {
                                "text": thinking,
                                "signature": signature,
                            }}}))
                        }
                        ContentBlockParam::Thinking { .. }
                        | ContentBlockParam::RedactedThinking => {}
                        other => return Err(assistant_block_error(other, format!("{base}.{j}"))),
                    }
                    if block.cache_point() {
                        push_cache_point(&mut out);
                    }
                }
            }
        }
        self.push("assistant", out);
        Ok(())
    }
}

/// Where the client's `cache_control` ended the cached prefix: Converse's `cachePoint` block
/// after the content (never first, never twice in a row).
fn push_cache_point(out: &mut Vec<Value>) {
    if out.last().is_some_and(|v| v.get("cachePoint").is_none()) {
        out.push(json!({"cachePoint": {"type": "default"}}));
    }
}

/// Converse rejects blank text blocks.
fn push_text(out: &mut Vec<Value>, text: &str) {
    if !is_blank(text) {
        out.push(json!({ "text": text }));
    }
}

fn image(source: &Source, path: &str) -> Result<Value, TranslateError> {
    match source {
        Source::Base64 { media_type, data } => {
            let format = match media_type.as_str() {
                "image/png" => "png",
                "image/jpeg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(TranslateError::unsupported(
                        format!("{path}.source.media_type"),
                        format!("image type `{other}` is not supported by this model's provider"),
                    ));
                }
            };
            Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
        }
        _ => Err(TranslateError::unsupported(
            format!("{path}.source"),
            "this model's provider takes images as base64 only",
        )),
    }
}

/// Converse document names allow letters, digits, single spaces, hyphens, parentheses and
/// square brackets.
fn document_name(title: &str) -> String {
    let mut name = String::with_capacity(title.len());
    for c in title.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else {
            ' '
        };
        if c == ' ' && (name.is_empty() || name.ends_with(' ')) {
            continue;
        }
        name.push(c);
    }
    name.truncate(name.trim_end().len());
    name
}

fn tool_config(req: &Request, has_tool_blocks: bool) -> Result<Option<Value>, TranslateError> {
    let mut tools = Vec::new();
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
        let mut spec = json!({
            "name": t.name,
            "inputSchema": {"json": t.input_schema.clone().unwrap_or_else(|| json!({"type": "object"}))},
        });
        if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
            spec["description"] = json!(d);
        }
        tools.push(json!({ "toolSpec": spec }));
        if t.cache_point {
            push_cache_point(&mut tools);
        }
    }
    if tools.is_empty() {
        return Ok(None);
    }
    // Only what the client asked for: the default is `auto`, and some families (Llama) take
    // no other choice.
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto { .. }) => Some(json!({"auto": {}})),
        Some(ToolChoice::Any { .. }) => Some(json!({"any": {}})),
        Some(ToolChoice::Tool { name, .. }) => Some(json!({"tool": {"name": name}})),
        // Converse has no "none": the tools are not offered, unless the history holds tool
        // blocks, which Converse only accepts with the tools defined.
        Some(ToolChoice::None) if !has_tool_blocks => return Ok(None),
        Some(ToolChoice::None) => None,
    };
    let mut config = json!({ "tools": tools });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

/// The model family's own fields: reasoning and `top_k`, which Converse does not model.
/// Families not listed here get neither (they reason by themselves or not at all).
fn model_fields(req: &Request, family: Family) -> Map<String, Value> {
    let mut fields = Map::new();
    match (family, req.thinking.as_ref()) {
        (Family::Claude, Some(ThinkingConfig::Enabled { budget_tokens })) => {
            fields.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget_tokens}),
            );
        }
        (Family::Claude, Some(ThinkingConfig::Adaptive)) => {
            fields.insert("thinking".into(), json!({"type": "adaptive"}));
        }
        (Family::Nova2, Some(t)) => {
            if let Some(effort) = effort(t) {
                fields.insert(
                    "reasoningConfig".into(),
                    json!({"type": "enabled", "maxReasoningEffort": effort}),
                );
            }
        }
        (Family::GptOss, Some(t)) => {
            if let Some(effort) = effort(t) {
                fields.insert("reasoning_effort".into(), json!(effort));
            }
        }
        _ => {}
    }
    if family == Family::Claude
        && let Some(k) = req.top_k
    {
        fields.insert("top_k".into(), json!(k));
    }
    fields
}

/// A thinking budget bucketed into the low/medium/high efforts other families take.
fn effort(thinking: &ThinkingConfig) -> Option<&'static str> {
    match thinking {
        ThinkingConfig::Enabled { budget_tokens } => Some(match budget_tokens {
            0..=1024 => "low",
            1025..=8192 => "medium",
            _ => "high",
        }),
        ThinkingConfig::Adaptive => Some("medium"),
        ThinkingConfig::Disabled | ThinkingConfig::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names_follow_converse_rules() {
        assert_eq!(
            document_name("  Q3 report: final.pdf "),
            "Q3 report final pdf"
        );
        assert_eq!(document_name("***"), "");
        assert_eq!(document_name("a (b) [c]-d"), "a (b) [c]-d");
    }

    #[test]
    fn families() {
        assert_eq!(
            family("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Family::Claude
        );
        assert_eq!(family("us.anthropic.claude-haiku-4-5"), Family::Claude);
        assert_eq!(family("us.amazon.nova-2-lite-v1:0"), Family::Nova2);
        assert_eq!(family("openai.gpt-oss-120b-1:0"), Family::GptOss);
        assert_eq!(family("amazon.nova-pro-v1:0"), Family::Other);
    }
}
