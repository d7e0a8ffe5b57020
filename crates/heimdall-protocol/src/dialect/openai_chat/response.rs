//! Chat Completions answer → canonical response.

use serde_json::Value;

use super::wire::{self as o, ChatUsage};
use crate::canonical::{ContentBlock, Response, StopReason, Usage};
use crate::dialect::text::is_blank;
use crate::dialect::{ResponseContext, TranslateError};
use crate::{error, ids};

/// Translates an upstream 200 body into the canonical response.
pub(super) fn response_from_openai(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Response, TranslateError> {
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
    let hint = stop_hint(
        choice.finish_reason.as_deref(),
        choice.matched_stop_sequence(),
    );
    let stop_reason = StopReason::settle(hint, has_tool_use, refused);
    let stop_sequence = choice
        .matched_stop_sequence()
        .filter(|_| stop_reason == StopReason::StopSequence)
        .map(str::to_owned);
    Ok(Response {
        id: ctx.message_id.clone(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence,
        usage: resp
            .usage
            .as_ref()
            .map(usage_from_openai)
            .unwrap_or_default(),
    })
}

/// Anthropic clients expect `input` to be an object; anything else (empty, truncated or
/// non-object arguments) becomes `{}` rather than a string.
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(serde_json::Map::new()),
    }
}

/// What an OpenAI `finish_reason` says about why the turn stopped; the final reason also
/// depends on the turn's content ([`StopReason::settle`]).
pub(super) fn stop_hint(
    finish_reason: Option<&str>,
    matched_stop: Option<&str>,
) -> Option<StopReason> {
    match finish_reason? {
        "length" | "model_length" => Some(StopReason::MaxTokens),
        "content_filter" => Some(StopReason::Refusal),
        "stop" if matched_stop.is_some() => Some(StopReason::StopSequence),
        "tool_calls" | "function_call" => Some(StopReason::ToolUse),
        _ => Some(StopReason::EndTurn),
    }
}

pub(super) fn usage_from_openai(u: &ChatUsage) -> Usage {
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
