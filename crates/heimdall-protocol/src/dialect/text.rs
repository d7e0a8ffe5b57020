//! The rules every request encoder shares when it turns Anthropic content into another
//! dialect's: what counts as blank, how texts that become one are joined, which blocks a user
//! turn may hold, and what a system message may contain.

use crate::canonical::{ContentBlockParam, MessageContent, Source, SystemPrompt, TextOrBlocks};
use crate::dialect::TranslateError;

/// Between texts that one string has to hold.
pub(crate) const JOIN: &str = "\n\n";

/// Whitespace only: upstreams refuse blank text parts, and they carry nothing.
pub(crate) fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// The non-blank texts, joined.
pub(crate) fn join_texts<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    texts
        .filter(|t| !is_blank(t))
        .collect::<Vec<_>>()
        .join(JOIN)
}

/// The request's system prompt as one string.
pub(crate) fn system_prompt_text(system: &SystemPrompt) -> String {
    match system {
        TextOrBlocks::Text(s) => s.clone(),
        TextOrBlocks::Blocks(blocks) => join_texts(blocks.iter().map(|b| b.text.as_str())),
    }
}

/// The text of a message in the `system` role, whose blocks may only be text.
pub(crate) fn system_message_text(
    content: &MessageContent,
    base: &str,
) -> Result<String, TranslateError> {
    let blocks = match content {
        TextOrBlocks::Text(s) => return Ok(s.clone()),
        TextOrBlocks::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlockParam::Text { text, .. } => texts.push(text.as_str()),
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

/// A block of a user turn (or of a tool result) that an encoder has to carry over.
#[derive(Debug)]
pub(crate) enum UserBlock<'a> {
    /// Never blank.
    Text(&'a str),
    Image(&'a Source),
    Document {
        source: &'a Source,
        title: Option<&'a str>,
    },
}

/// `block` as part of a user turn: `None` for blank text and for thinking (only the provider
/// that produced thinking can use it, and only in its own turn), an error in Anthropic's
/// wording for blocks that cannot stand there or that no translation carries.
pub(crate) fn user_block<'a>(
    block: &'a ContentBlockParam,
    path: &str,
) -> Result<Option<UserBlock<'a>>, TranslateError> {
    Ok(match block {
        ContentBlockParam::Text { text, .. } if is_blank(text) => None,
        ContentBlockParam::Text { text, .. } => Some(UserBlock::Text(text)),
        ContentBlockParam::Image { source, .. } => Some(UserBlock::Image(source)),
        ContentBlockParam::Document { source, title, .. } => Some(UserBlock::Document {
            source,
            title: title.as_deref(),
        }),
        ContentBlockParam::Thinking { .. } | ContentBlockParam::RedactedThinking => None,
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
        ContentBlockParam::Other { kind } => {
            return Err(TranslateError::unsupported_block(path, kind));
        }
    })
}

/// The error for a block an assistant turn cannot carry (any but text, tool calls and
/// thinking): a tool result belongs to a user turn; images, documents and unknown types have
/// no translation there.
pub(crate) fn assistant_block_error(block: &ContentBlockParam, path: String) -> TranslateError {
    let kind = match block {
        ContentBlockParam::ToolResult { .. } => {
            return TranslateError::invalid(
                path,
                "tool_result blocks are only allowed in user messages",
            );
        }
        ContentBlockParam::Image { .. } => "image",
        ContentBlockParam::Document { .. } => "document",
        ContentBlockParam::Other { kind } => kind,
        ContentBlockParam::Text { .. } => "text",
        ContentBlockParam::ToolUse { .. } => "tool_use",
        ContentBlockParam::Thinking { .. } => "thinking",
        ContentBlockParam::RedactedThinking => "redacted_thinking",
    };
    TranslateError::unsupported_block(path, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block(v: serde_json::Value) -> ContentBlockParam {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn user_turns_drop_blank_text_and_thinking_and_refuse_misplaced_blocks() {
        let p = "messages.0.content.1";
        assert!(matches!(
            user_block(&block(json!({"type": "text", "text": "hi"})), p),
            Ok(Some(UserBlock::Text("hi")))
        ));
        for dropped in [
            json!({"type": "text", "text": " \n"}),
            json!({"type": "thinking", "thinking": "t", "signature": "s"}),
            json!({"type": "redacted_thinking", "data": "d"}),
        ] {
            assert!(matches!(user_block(&block(dropped), p), Ok(None)));
        }
        let tool_use = block(json!({"type": "tool_use", "id": "t", "name": "n", "input": {}}));
        assert!(matches!(
            user_block(&tool_use, p),
            Err(TranslateError::Invalid { .. })
        ));
        let other = block(json!({"type": "web_search_result"}));
        let unknown = user_block(&other, p);
        assert!(
            matches!(&unknown, Err(TranslateError::Unsupported { path, .. }) if path == p),
            "{unknown:?}"
        );
    }

    #[test]
    fn assistant_turns_refuse_tool_results_as_invalid_and_media_as_unsupported() {
        let result = block(json!({"type": "tool_result", "tool_use_id": "t", "content": "x"}));
        assert_eq!(
            assistant_block_error(&result, "messages.1.content.0".into()).to_string(),
            "messages.1.content.0: tool_result blocks are only allowed in user messages"
        );
        let image =
            block(json!({"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}));
        assert!(matches!(
            assistant_block_error(&image, "p".into()),
            TranslateError::Unsupported { message, .. } if message.contains("`image`")
        ));
    }

    #[test]
    fn system_messages_hold_text_only() {
        let content: MessageContent =
            serde_json::from_value(json!([{"type": "text", "text": "a"}, {"type": "text", "text": " "}, {"type": "text", "text": "b"}]))
                .unwrap();
        assert_eq!(system_message_text(&content, "m").unwrap(), "a\n\nb");
        let mixed: MessageContent = serde_json::from_value(json!([
            {"type": "text", "text": "a"},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
        ]))
        .unwrap();
        assert!(matches!(
            system_message_text(&mixed, "m"),
            Err(TranslateError::Invalid { path, .. }) if path == "m.1"
        ));
    }
}
