//! The canonical answer: one assistant turn, its stop reason and its usage.

use serde::Serialize;
use serde_json::Value;

use super::Usage;

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

impl StopReason {
    /// The wire name, as Anthropic writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::ToolUse => "tool_use",
            Self::PauseTurn => "pause_turn",
            Self::Refusal => "refusal",
            Self::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }

    /// The stop reason to report, from what the upstream said (`hint`) and what the turn
    /// contains. A length cut wins even over tool calls (a cut call is not runnable, as on
    /// Anthropic); some compatible servers say `stop` although they produced calls.
    pub fn settle(hint: Option<StopReason>, has_tool_use: bool, refused: bool) -> StopReason {
        match hint {
            Some(StopReason::MaxTokens) => StopReason::MaxTokens,
            Some(StopReason::Refusal) => StopReason::Refusal,
            _ if refused => StopReason::Refusal,
            _ if has_tool_use => StopReason::ToolUse,
            Some(StopReason::StopSequence) => StopReason::StopSequence,
            _ => StopReason::EndTurn,
        }
    }
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

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: String,
    /// The model string the client sent, echoed back.
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_the_serialized_form() {
        use StopReason::*;
        for r in [
            EndTurn,
            MaxTokens,
            StopSequence,
            ToolUse,
            PauseTurn,
            Refusal,
            ModelContextWindowExceeded,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
