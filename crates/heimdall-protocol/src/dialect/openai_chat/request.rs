//! Canonical request → Chat Completions request.

use super::quirks::Quirks;
use super::wire::{self as o, ChatMessage, ContentPart, FunctionType, UserContent};
use crate::canonical::{
    ContentBlockParam, MessageContent, OutputFormat, Request, Role, SYNTHETIC_USER_TEXT, Source,
    TextOrBlocks, ThinkingConfig, Tool, ToolChoice,
};
use crate::dialect::TranslateError;
use crate::dialect::text::{
    JOIN, UserBlock, assistant_block_error, is_blank, join_texts, system_message_text,
    system_prompt_text, user_block,
};
/// OpenAI tool messages have no error flag; the model must still see that the tool failed.
const TOOL_ERROR_PREFIX: &str = "[tool error] ";

pub(super) fn request_to_openai(
    req: &Request,
    upstream_model: &str,
    q: &Quirks,
) -> Result<o::ChatCompletionRequest, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        push_system(&mut messages, system_prompt_text(system));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let base = format!("messages.{i}.content");
        match m.role {
            Role::System => push_system(&mut messages, system_message_text(&m.content, &base)?),
            Role::User => push_user_turn(&mut messages, &m.content, &base, q)?,
            Role::Assistant => push_assistant_turn(&mut messages, &m.content, &base, q)?,
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
        max_completion_tokens: req.max_tokens.filter(|_| !q.legacy_max_tokens),
        max_tokens: req.max_tokens.filter(|_| q.legacy_max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req.stop_sequences.clone().filter(|s| !s.is_empty()),
        stream: stream.then_some(true),
        stream_options: (stream && q.stream_usage).then_some(o::StreamOptions {
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
        reasoning_effort: reasoning_effort(req).filter(|_| q.reasoning_effort),
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
pub(super) fn request_body(
    req: &Request,
    upstream_model: &str,
    q: &Quirks,
) -> Result<Vec<u8>, TranslateError> {
    let chat = request_to_openai(req, upstream_model, q)?;
    serde_json::to_vec(&chat).map_err(|e| TranslateError::Internal(e.to_string()))
}

fn push_system(out: &mut Vec<ChatMessage>, text: String) {
    if !is_blank(&text) {
        out.push(ChatMessage::System { content: text });
    }
}

/// Tool results become `tool` messages ahead of the rest of the turn, because OpenAI requires
/// them directly after the assistant message that made the calls.
fn push_user_turn(
    out: &mut Vec<ChatMessage>,
    content: &MessageContent,
    base: &str,
    q: &Quirks,
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
            ..
        } = block
        {
            let mut text = if *is_error {
                TOOL_ERROR_PREFIX.to_owned()
            } else {
                String::new()
            };
            tool_result_content(content.as_ref(), &path, &mut text, &mut parts)?;
            out.push(ChatMessage::Tool {
                tool_call_id: q.tool_ids.upstream(tool_use_id),
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
    match user_block(block, path)? {
        Some(UserBlock::Text(text)) => parts.push(ContentPart::Text {
            text: text.to_owned(),
        }),
        Some(UserBlock::Image(source)) => parts.push(image_part(source, path)?),
        Some(UserBlock::Document { source, title }) => {
            document_parts(parts, source, title, path)?;
        }
        None => {}
    }
    Ok(())
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
    q: &Quirks,
) -> Result<(), TranslateError> {
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    match content {
        TextOrBlocks::Text(s) => texts.push(s.as_str()),
        TextOrBlocks::Blocks(blocks) => {
            for (j, block) in blocks.iter().enumerate() {
                match block {
                    ContentBlockParam::Text { text, .. } => texts.push(text.as_str()),
                    ContentBlockParam::ToolUse {
                        id, name, input, ..
                    } => {
                        tool_calls.push(o::ToolCall {
                            id: q.tool_ids.upstream(id),
                            kind: FunctionType::Function,
                            function: o::FunctionCall {
                                name: name.clone(),
                                arguments: input.to_string(),
                            },
                        });
                    }
                    ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking => {}
                    other => return Err(assistant_block_error(other, format!("{base}.{j}"))),
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
            t.require_custom(i)?;
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
fn reasoning_effort(req: &Request) -> Option<o::ReasoningEffort> {
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
