//! Gemini answer → canonical response, and what answers and stream chunks share: the meaning
//! of parts, finish reasons and usage.

use serde_json::Value;

use super::signature;
use super::wire::{self as g, Part, UsageMetadata};
use crate::canonical::{ContentBlock, Response, StopReason, Usage};
use crate::dialect::{ResponseContext, TranslateError};
use crate::{error, ids};

/// What one part says, in the order the Anthropic side needs it (see [`signature`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Thought(String),
    /// Already marked as Gemini's.
    Signature(String),
    Text(String),
    Call {
        id: Option<String>,
        name: String,
        args: Option<Value>,
    },
}

/// The pieces of one part: a thought's signature follows its text; any other part's signature
/// comes before its content. Parts Anthropic has no block for (inline data, executable code)
/// keep only their signature.
pub(super) fn pieces(part: Part, out: &mut Vec<Piece>) {
    let signature = part
        .thought_signature
        .filter(|s| !s.is_empty())
        .map(|s| Piece::Signature(signature::encode(&s)));
    if part.thought == Some(true) {
        if let Some(text) = part.text.filter(|t| !t.is_empty()) {
            out.push(Piece::Thought(text));
        }
        out.extend(signature);
        return;
    }
    out.extend(signature);
    if let Some(call) = part.function_call {
        out.push(Piece::Call {
            id: call.id.filter(|id| !id.is_empty()),
            name: call.name,
            args: call.args,
        });
    } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
        out.push(Piece::Text(text));
    }
}

/// What a `finishReason` says about why the turn stopped; the final reason also depends on the
/// turn's content ([`StopReason::settle`]: Gemini says `STOP` after function calls). `Err` for
/// reasons that mean the model failed to produce a usable turn.
pub(super) fn stop_hint(finish_reason: &str) -> Result<StopReason, String> {
    match finish_reason {
        "MAX_TOKENS" => Ok(StopReason::MaxTokens),
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => Ok(StopReason::Refusal),
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MALFORMED_RESPONSE"
        | "MISSING_THOUGHT_SIGNATURE" => Err(format!(
            "the model stopped without a usable answer ({finish_reason})"
        )),
        // STOP, OTHER, LANGUAGE, FINISH_REASON_UNSPECIFIED and reasons added later.
        _ => Ok(StopReason::EndTurn),
    }
}

/// Gemini counts cached prompt tokens inside the prompt and thoughts beside the answer;
/// Anthropic's input excludes cache reads, and thinking is output.
pub(super) fn usage_from_gemini(u: &UsageMetadata) -> Usage {
    let cached = u.cached_content_token_count.unwrap_or(0);
    Usage {
        input_tokens: u.prompt_token_count.unwrap_or(0).saturating_sub(cached),
        output_tokens: u
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(u.thoughts_token_count.unwrap_or(0)),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
    }
}

/// The first candidate (Heimdall asks for one).
pub(super) fn first_candidate(resp: &mut g::GenerateContentResponse) -> Option<g::Candidate> {
    let candidates = resp.candidates.as_mut()?;
    let at = candidates.iter().position(|c| c.index.unwrap_or(0) == 0)?;
    Some(candidates.swap_remove(at))
}

/// The message of an error document Gemini put in a 200 body.
pub(super) fn error_message(body: &[u8]) -> String {
    error::parse_upstream_error(body)
        .map_or_else(|| "upstream reported an error".to_owned(), |e| e.message)
}

pub(super) fn response_from_gemini(
    body: &[u8],
    ctx: &ResponseContext,
) -> Result<Response, TranslateError> {
    let mut resp: g::GenerateContentResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::Upstream(e.to_string()))?;
    if resp.error.is_some() {
        return Err(TranslateError::Upstream(error_message(body)));
    }
    let usage = resp
        .usage_metadata
        .as_ref()
        .map(usage_from_gemini)
        .unwrap_or_default();
    let Some(candidate) = first_candidate(&mut resp) else {
        // A blocked prompt has no candidates at all.
        if resp.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            return Ok(Response {
                id: ctx.message_id.clone(),
                model: ctx.model.clone(),
                content: Vec::new(),
                stop_reason: Some(StopReason::Refusal),
                stop_sequence: None,
                usage,
            });
        }
        return Err(TranslateError::Upstream(
            "response has no candidates".to_owned(),
        ));
    };
    let mut all = Vec::new();
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        pieces(part, &mut all);
    }
    let content = blocks(all, &ctx.message_id);
    let hint = candidate
        .finish_reason
        .as_deref()
        .map(stop_hint)
        .transpose()
        .map_err(TranslateError::Upstream)?;
    let has_tool_use = content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    Ok(Response {
        id: ctx.message_id.clone(),
        model: ctx.model.clone(),
        content,
        stop_reason: Some(StopReason::settle(hint, has_tool_use, false)),
        stop_sequence: None,
        usage,
    })
}

/// Folds pieces into blocks the way the stream assembler groups them: consecutive thoughts and
/// texts join, a signature seals the thinking block before it (or stands in an empty one), and
/// whitespace-only text is dropped (Anthropic rejects it when clients send it back).
fn blocks(pieces: Vec<Piece>, message_id: &str) -> Vec<ContentBlock> {
    let mut out: Vec<ContentBlock> = Vec::new();
    let mut calls = 0;
    for piece in pieces {
        match (piece, out.last_mut()) {
            (
                Piece::Thought(t),
                Some(ContentBlock::Thinking {
                    thinking,
                    signature,
                }),
            ) if signature.is_empty() => thinking.push_str(&t),
            (Piece::Thought(t), _) => out.push(ContentBlock::Thinking {
                thinking: t,
                signature: String::new(),
            }),
            (Piece::Signature(s), Some(ContentBlock::Thinking { signature, .. }))
                if signature.is_empty() =>
            {
                *signature = s;
            }
            (Piece::Signature(s), _) => out.push(ContentBlock::Thinking {
                thinking: String::new(),
                signature: s,
            }),
            (Piece::Text(t), Some(ContentBlock::Text { text })) => text.push_str(&t),
            (Piece::Text(t), _) => out.push(ContentBlock::Text { text: t }),
            (Piece::Call { id, name, args }, _) => {
                out.push(ContentBlock::ToolUse {
                    id: ids::tool_id_from_upstream(id.as_deref(), message_id, calls),
                    name,
                    input: args
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
                });
                calls += 1;
            }
        }
    }
    out.retain(|b| !matches!(b, ContentBlock::Text { text } if text.trim().is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons() {
        assert_eq!(stop_hint("STOP"), Ok(StopReason::EndTurn));
        assert_eq!(stop_hint("MAX_TOKENS"), Ok(StopReason::MaxTokens));
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(stop_hint(r), Ok(StopReason::Refusal), "{r}");
        }
        assert!(stop_hint("MALFORMED_FUNCTION_CALL").is_err());
        assert_eq!(stop_hint("OTHER"), Ok(StopReason::EndTurn));
        assert_eq!(stop_hint("SOMETHING_NEW"), Ok(StopReason::EndTurn));
        // STOP after a call is tool_use; a length cut wins over it.
        assert_eq!(
            StopReason::settle(Some(StopReason::EndTurn), true, false),
            StopReason::ToolUse
        );
        assert_eq!(
            StopReason::settle(Some(StopReason::MaxTokens), true, false),
            StopReason::MaxTokens
        );
    }

    #[test]
    fn usage_counts_thoughts_as_output_and_cache_apart() {
        let u = UsageMetadata {
            prompt_token_count: Some(100),
            candidates_token_count: Some(7),
            thoughts_token_count: Some(30),
            cached_content_token_count: Some(60),
        };
        assert_eq!(
            usage_from_gemini(&u),
            Usage {
                input_tokens: 40,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 60,
                output_tokens: 37,
            }
        );
        let odd = UsageMetadata {
            prompt_token_count: Some(5),
            cached_content_token_count: Some(9),
            ..UsageMetadata::default()
        };
        assert_eq!(usage_from_gemini(&odd).input_tokens, 0);
    }

    #[test]
    fn signatures_seal_thinking_or_stand_alone() {
        let pieces = vec![
            Piece::Thought("plan ".into()),
            Piece::Thought("more".into()),
            Piece::Signature("gemini:A".into()),
            Piece::Call {
                id: None,
                name: "f".into(),
                args: Some(serde_json::json!([1])),
            },
            Piece::Signature("gemini:B".into()),
            Piece::Text(" ".into()),
        ];
        assert_eq!(
            blocks(pieces, "msg_X"),
            vec![
                ContentBlock::Thinking {
                    thinking: "plan more".into(),
                    signature: "gemini:A".into()
                },
                ContentBlock::ToolUse {
                    id: "toolu_X_0".into(),
                    name: "f".into(),
                    input: serde_json::json!({})
                },
                ContentBlock::Thinking {
                    thinking: String::new(),
                    signature: "gemini:B".into()
                },
            ]
        );
    }
}
