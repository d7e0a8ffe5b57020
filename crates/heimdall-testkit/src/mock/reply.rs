//! Dialect-neutral reply planning: what the mock answers, before it is encoded as OpenAI or
//! Anthropic JSON / SSE.

use std::time::Duration;

use serde_json::Value;

use super::directives::{BodyFault, Directives, EarlyEof};
use super::faults::{HUGE_MARKER, huge_words};

/// What the dialect handler extracted from the conversation.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Text of the message whose directives count (normally the last user message).
    pub directive_text: String,
    /// Images of that message, as media type (inline data) or URL.
    pub images: Vec<String>,
    /// Tool results at the end of the conversation; non-empty means "answer the tool results".
    pub tool_results: Vec<String>,
    /// Deterministic prompt size: whitespace-separated words of all message text + 1.
    pub prompt_tokens: u64,
}

#[derive(Debug)]
pub(crate) struct PlannedTool {
    pub name: String,
    pub input: Value,
    /// `input` serialized: the OpenAI `arguments` string / Anthropic `partial_json` concatenation.
    pub args: String,
    pub whole: bool,
}

/// The reply, independent of dialect.
#[derive(Debug)]
pub(crate) struct Plan {
    pub reasoning: Option<String>,
    pub text: Option<String>,
    pub tools: Vec<PlannedTool>,
    pub finish: Option<String>,
    pub prompt_tokens: u64,
    pub cached: u64,
    pub output_tokens: u64,
    pub cut: bool,
    pub stall: Option<Duration>,
    pub stream_error: bool,
    pub garbage: bool,
    pub eof: Option<EarlyEof>,
    pub hold_open: Option<Duration>,
    pub body: Option<BodyFault>,
    /// `huge N`: `text` is [`HUGE_MARKER`], which the response expands to N MiB.
    pub huge: Option<u64>,
}

const LOREM: [&str; 8] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
];

pub(crate) fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

impl Plan {
    pub(crate) fn build(turn: Turn, d: Directives, remaining: String) -> Plan {
        let tools: Vec<PlannedTool> = d
            .tools
            .into_iter()
            .map(|t| PlannedTool {
                args: t.input.to_string(),
                name: t.name,
                input: t.input,
                whole: t.whole,
            })
            .collect();
        let text = if d.huge.is_some() {
            Some(HUGE_MARKER.to_owned())
        } else if !tools.is_empty() {
            d.text
        } else if let Some(text) = d.text {
            Some(text)
        } else if !turn.tool_results.is_empty() {
            Some(format!("tool said: {}", turn.tool_results.join(" | ")))
        } else if let Some(n) = d.words {
            let mut s = String::with_capacity(n * 7);
            for i in 0..n.max(1) {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(LOREM[i % LOREM.len()]);
            }
            Some(s)
        } else {
            let mut s = remaining;
            for image in &turn.images {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str("[image: ");
                s.push_str(image);
                s.push(']');
            }
            if s.is_empty() {
                s.push_str("ok");
            }
            Some(s)
        };
        let text_words = match d.huge {
            Some(mib) => huge_words(mib),
            None => text.as_deref().map_or(0, count_words),
        };
        let mut output_tokens = text_words + d.reasoning.as_deref().map_or(0, count_words);
        for t in &tools {
            output_tokens += 1 + count_words(&t.args);
        }
        let prompt_tokens = turn.prompt_tokens.max(1);
        Plan {
            reasoning: d.reasoning,
            text,
            tools,
            finish: d.finish,
            prompt_tokens,
            cached: d.cached.unwrap_or(0).min(prompt_tokens),
            output_tokens: output_tokens.max(1),
            cut: d.cut,
            stall: d.stall,
            stream_error: d.stream_error,
            garbage: d.garbage,
            eof: d.eof,
            hold_open: d.hold_open,
            body: d.body,
            huge: d.huge,
        }
    }

    /// The reply text `t` in stream chunks; a huge text stays whole, so it is one event.
    pub(crate) fn text_pieces<'t>(&self, t: &'t str) -> Vec<&'t str> {
        if self.huge.is_some() {
            vec![t]
        } else {
            text_chunks(t)
        }
    }

    pub(crate) fn openai_finish_reason(&self) -> &str {
        match self.finish.as_deref() {
            Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
            Some("max_tokens" | "model_context_window_exceeded") => "length",
            Some("refusal") => "content_filter",
            Some("tool_use") => "tool_calls",
            Some(other) => other,
            None if self.tools.is_empty() => "stop",
            None => "tool_calls",
        }
    }

    /// Gemini's `finishReason`; Gemini names (`MAX_TOKENS`, `MALFORMED_FUNCTION_CALL`, …) pass
    /// as they are. Gemini says `STOP` after function calls too.
    pub(crate) fn gemini_finish_reason(&self) -> &str {
        match self.finish.as_deref() {
            Some("length" | "max_tokens" | "model_context_window_exceeded") => "MAX_TOKENS",
            Some("content_filter" | "refusal") => "SAFETY",
            Some("stop" | "end_turn" | "tool_calls" | "tool_use" | "stop_sequence") | None => {
                "STOP"
            }
            Some(other) => other,
        }
    }

    pub(crate) fn anthropic_stop_reason(&self) -> &str {
        match self.finish.as_deref() {
            Some("stop") => "end_turn",
            Some("length") => "max_tokens",
            Some("content_filter") => "refusal",
            Some("tool_calls" | "function_call") => "tool_use",
            Some(other) => other,
            None if self.tools.is_empty() => "end_turn",
            None => "tool_use",
        }
    }
}

/// Most pieces a streamed text is split into (words are grouped beyond that).
const MAX_TEXT_CHUNKS: usize = 64;

/// Splits `text` into stream chunks whose concatenation is `text`: one word (with its trailing
/// whitespace) per chunk, at least 3 chunks when the text has 3+ characters, at most 64.
pub(crate) fn text_chunks(text: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut prev_ws = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if i > 0 && prev_ws && !ws {
            starts.push(i);
        }
        prev_ws = ws;
    }
    if starts.len() < 3 {
        return split_even(text, 3);
    }
    let per = starts.len().div_ceil(MAX_TEXT_CHUNKS);
    let mut out = Vec::with_capacity(starts.len() / per + 1);
    let mut i = 0;
    while i < starts.len() {
        let end = starts.get(i + per).copied().unwrap_or(text.len());
        out.push(&text[starts[i]..end]);
        i += per;
    }
    out
}

/// Splits JSON arguments into at least 2 fragments (if it has 2+ characters), about 16 bytes
/// each, at most 8.
pub(crate) fn arg_fragments(args: &str) -> Vec<&str> {
    split_even(args, (args.len() / 16).clamp(2, 8))
}

/// Splits `s` into `n` pieces of about equal character count (fewer if `s` is shorter).
pub(crate) fn split_even(s: &str, n: usize) -> Vec<&str> {
    let total = s.chars().count();
    let n = n.min(total).max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    let mut next_piece = 1;
    for (char_no, (byte, _)) in s.char_indices().enumerate() {
        if next_piece < n && char_no == next_piece * total / n {
            out.push(&s[start..byte]);
            start = byte;
            next_piece += 1;
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_cover_text() {
        for text in [
            "ok",
            "a",
            "hello world",
            "The quick brown fox",
            "  lead and trail  ",
            "héllo wörld",
        ] {
            let chunks = text_chunks(text);
            assert_eq!(chunks.concat(), text);
            if text.chars().count() >= 3 {
                assert!(chunks.len() >= 3, "{text:?} -> {chunks:?}");
            }
        }
        assert_eq!(
            text_chunks("The quick brown fox"),
            vec!["The ", "quick ", "brown ", "fox"]
        );
        let long = vec!["w"; 1000].join(" ");
        let chunks = text_chunks(&long);
        assert!(chunks.len() <= MAX_TEXT_CHUNKS);
        assert_eq!(chunks.concat(), long);
    }

    #[test]
    fn arg_fragments_at_least_two() {
        assert_eq!(arg_fragments("{}"), vec!["{", "}"]);
        let args = r#"{"city":"Paris","unit":"celsius","days":3}"#;
        let f = arg_fragments(args);
        assert!(f.len() >= 2);
        assert_eq!(f.concat(), args);
        assert_eq!(split_even("", 3), vec![""]);
    }

    #[test]
    fn finish_mapping() {
        let plan = |finish: Option<&str>, tools: bool| {
            let mut d = Directives {
                finish: finish.map(str::to_owned),
                ..Directives::default()
            };
            if tools {
                d.tools.push(super::super::directives::ToolDirective {
                    name: "t".into(),
                    input: serde_json::json!({}),
                    whole: false,
                });
            }
            Plan::build(Turn::default(), d, String::new())
        };
        let p = plan(None, false);
        assert_eq!(
            (p.openai_finish_reason(), p.anthropic_stop_reason()),
            ("stop", "end_turn")
        );
        assert_eq!(p.text.as_deref(), Some("ok"));
        let p = plan(None, true);
        assert_eq!(
            (p.openai_finish_reason(), p.anthropic_stop_reason()),
            ("tool_calls", "tool_use")
        );
        assert_eq!(p.text, None);
        let p = plan(Some("length"), false);
        assert_eq!(
            (p.openai_finish_reason(), p.anthropic_stop_reason()),
            ("length", "max_tokens")
        );
        let p = plan(Some("content_filter"), false);
        assert_eq!(
            (p.openai_finish_reason(), p.anthropic_stop_reason()),
            ("content_filter", "refusal")
        );
        let p = plan(Some("max_tokens"), false);
        assert_eq!(
            (p.openai_finish_reason(), p.anthropic_stop_reason()),
            ("length", "max_tokens")
        );
    }
}
