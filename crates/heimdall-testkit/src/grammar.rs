//! The one strict checker of Anthropic's stream grammar, shared by the protocol goldens, the
//! black-box tests of the binary and the real-client suites (through `heimdall-sse-check`).
//!
//! It parses SSE itself instead of using the gateway's framer, so a framing bug cannot hide on
//! both sides.

use serde_json::Value;

/// One event as a client sees it.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// How a well-formed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    MessageStop,
    Error,
}

/// A grammar violation, with the events seen so far for context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarError(pub String);

impl std::fmt::Display for GrammarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GrammarError {}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(GrammarError(format!($($arg)+)));
        }
    };
}

/// Splits Anthropic SSE text into events: every event has exactly one `event:` line and one
/// `data:` line (the Anthropic SDKs drop data without an event line), its data is JSON, and
/// the JSON `type` equals the event name. The text must end with a complete event.
pub fn parse(sse: &str) -> Result<Vec<Event>, GrammarError> {
    ensure!(
        sse.is_empty() || sse.ends_with("\n\n") || sse.ends_with("\r\n\r\n"),
        "stream must end with a complete event: {:?}",
        &sse[sse.len().saturating_sub(80)..]
    );
    let mut out = Vec::new();
    for block in sse.replace("\r\n", "\n").split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                ensure!(name.is_none(), "two event lines in {block:?}");
                name = Some(v.strip_prefix(' ').unwrap_or(v).to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                ensure!(data.is_none(), "two data lines in {block:?}");
                data = Some(v.strip_prefix(' ').unwrap_or(v).to_owned());
            } else {
                return Err(GrammarError(format!(
                    "unexpected line {line:?} in {block:?}"
                )));
            }
        }
        let name =
            name.ok_or_else(|| GrammarError(format!("data without event line: {block:?}")))?;
        let data = data.ok_or_else(|| GrammarError(format!("event without data: {block:?}")))?;
        let data: Value = serde_json::from_str(&data)
            .map_err(|e| GrammarError(format!("data is not JSON ({e}): {block:?}")))?;
        ensure!(
            data["type"] == name.as_str(),
            "type must equal the event name: {block:?}"
        );
        out.push(Event { name, data });
    }
    Ok(out)
}

fn is_valid_tool_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks Anthropic's stream grammar: `message_start` first and once, with usage and empty
/// content; blocks with contiguous indices from 0 that never overlap; deltas of the kind their
/// block takes; no blank text block; every tool block at least one `input_json_delta`, its
/// input complete JSON object unless the turn stopped at `max_tokens`; `message_delta` with
/// usage after the last block, then `message_stop` last — or a single `error` event last.
pub fn check(events: &[Event]) -> Result<Ending, GrammarError> {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    // An error before anything else is a stream refused at its start.
    if names == ["error"] {
        check_error(&events[0])?;
        return Ok(Ending::Error);
    }
    ensure!(
        names.first() == Some(&"message_start"),
        "must start with message_start: {names:?}"
    );
    let start = &events[0].data["message"];
    ensure!(
        start["type"] == "message" && start["role"] == "assistant",
        "message_start shape: {start}"
    );
    ensure!(
        start["content"] == Value::Array(vec![]),
        "message_start content must be []: {start}"
    );
    ensure!(
        start["stop_reason"].is_null() && start["stop_sequence"].is_null(),
        "message_start must not stop: {start}"
    );
    ensure!(
        start["usage"]["input_tokens"].is_u64() && start["usage"]["output_tokens"].is_u64(),
        "message_start needs usage (the Vercel AI SDK crashes without it): {start}"
    );
    let mut next_index = 0u64;
    // (index, type, accumulated text or JSON, number of deltas)
    let mut open: Option<(u64, String, String, usize)> = None;
    let mut tool_inputs = Vec::new();
    let mut stop_reason: Option<String> = None;
    for (i, e) in events.iter().enumerate().skip(1) {
        let last = i == events.len() - 1;
        match e.name.as_str() {
            "ping" => {}
            "message_start" => {
                return Err(GrammarError(format!("second message_start: {names:?}")));
            }
            "content_block_start" => {
                ensure!(
                    open.is_none(),
                    "block started while another is open: {names:?}"
                );
                ensure!(
                    stop_reason.is_none(),
                    "block after message_delta: {names:?}"
                );
                ensure!(
                    e.data["index"] == next_index,
                    "indices must be contiguous from 0: {names:?}"
                );
                let block = &e.data["content_block"];
                let kind = block["type"].as_str().unwrap_or_default().to_owned();
                match kind.as_str() {
                    "text" => ensure!(block["text"] == "", "text block must start empty: {block}"),
                    "thinking" => ensure!(
                        block["thinking"] == "" && block["signature"].is_string(),
                        "thinking block must start empty with a signature field: {block}"
                    ),
                    "tool_use" | "server_tool_use" => {
                        let id = block["id"].as_str().unwrap_or_default();
                        ensure!(
                            is_valid_tool_id(id),
                            "tool id {id:?} must match ^[a-zA-Z0-9_-]+$"
                        );
                        ensure!(
                            block["name"].is_string(),
                            "tool block needs a name: {block}"
                        );
                        ensure!(
                            block["input"] == serde_json::json!({}),
                            "tool input must start as {{}}: {block}"
                        );
                    }
                    "redacted_thinking" | "web_search_tool_result" | "web_fetch_tool_result" => {}
                    other => return Err(GrammarError(format!("unexpected block type {other:?}"))),
                }
                open = Some((next_index, kind, String::new(), 0));
                next_index += 1;
            }
            "content_block_delta" => {
                let (index, kind, acc, n) = open
                    .as_mut()
                    .ok_or_else(|| GrammarError(format!("delta outside a block: {names:?}")))?;
                ensure!(
                    e.data["index"] == *index,
                    "delta for another block: {:?}",
                    e.data
                );
                let d = &e.data["delta"];
                let dtype = d["type"].as_str().unwrap_or_default();
                let field = match (kind.as_str(), dtype) {
                    ("text", "text_delta") => Some("text"),
                    ("text", "citations_delta") => None,
                    ("thinking", "thinking_delta") => Some("thinking"),
                    ("thinking", "signature_delta") => None,
                    ("tool_use" | "server_tool_use", "input_json_delta") => Some("partial_json"),
                    _ => return Err(GrammarError(format!("{dtype:?} in a {kind:?} block"))),
                };
                if let Some(field) = field {
                    let piece = d[field].as_str().ok_or_else(|| {
                        GrammarError(format!("{dtype} needs a string {field}: {d}"))
                    })?;
                    acc.push_str(piece);
                    *n += 1;
                }
            }
            "content_block_stop" => {
                let (index, kind, acc, n) = open
                    .take()
                    .ok_or_else(|| GrammarError(format!("stop outside a block: {names:?}")))?;
                ensure!(
                    e.data["index"] == index,
                    "stop for another block: {:?}",
                    e.data
                );
                match kind.as_str() {
                    "text" => ensure!(!acc.trim().is_empty(), "blank text block at {index}"),
                    "tool_use" | "server_tool_use" => {
                        ensure!(n >= 1, "tool block {index} without input_json_delta");
                        tool_inputs.push(acc);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                ensure!(
                    open.is_none(),
                    "message_delta with an open block: {names:?}"
                );
                ensure!(stop_reason.is_none(), "second message_delta: {names:?}");
                let delta = &e.data["delta"];
                ensure!(
                    delta.get("stop_sequence").is_some(),
                    "message_delta needs stop_sequence: {delta}"
                );
                let reason = delta["stop_reason"].as_str().unwrap_or_default().to_owned();
                ensure!(
                    !reason.is_empty(),
                    "message_delta needs a stop_reason: {delta}"
                );
                ensure!(
                    e.data["usage"]["output_tokens"].is_u64(),
                    "message_delta needs usage: {:?}",
                    e.data
                );
                stop_reason = Some(reason);
            }
            "message_stop" => {
                ensure!(
                    stop_reason.is_some(),
                    "message_stop without message_delta: {names:?}"
                );
                ensure!(last, "events after message_stop: {names:?}");
                // Only a length cut may leave a call's arguments unfinished, as on Anthropic.
                if stop_reason.as_deref() != Some("max_tokens") {
                    for acc in &tool_inputs {
                        let input: Value = serde_json::from_str(acc)
                            .map_err(|e| GrammarError(format!("tool input {acc:?}: {e}")))?;
                        ensure!(input.is_object(), "tool input must be an object: {acc}");
                    }
                }
                return Ok(Ending::MessageStop);
            }
            "error" => {
                ensure!(last, "events after error: {names:?}");
                check_error(e)?;
                return Ok(Ending::Error);
            }
            other => return Err(GrammarError(format!("unknown event {other:?}"))),
        }
    }
    Err(GrammarError(format!(
        "stream must end with message_stop or error: {names:?}"
    )))
}

fn check_error(e: &Event) -> Result<(), GrammarError> {
    ensure!(
        e.data["error"]["type"].is_string() && e.data["error"]["message"].is_string(),
        "error event shape: {:?}",
        e.data
    );
    Ok(())
}

/// [`parse`] then [`check`].
pub fn check_text(sse: &str) -> Result<(Vec<Event>, Ending), GrammarError> {
    let events = parse(sse)?;
    let ending = check(&events)?;
    Ok((events, ending))
}

/// Panics with the violation unless `sse` is a well-formed stream ending as `expected`.
#[track_caller]
pub fn assert_stream(sse: &str, expected: Ending) -> Vec<Event> {
    match check_text(sse) {
        Ok((events, ending)) if ending == expected => events,
        Ok((_, ending)) => panic!("stream ended with {ending:?}, expected {expected:?}:\n{sse}"),
        Err(e) => panic!("stream grammar violated: {e}\n{sse}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn accepts_a_good_stream() {
        assert_eq!(check_text(OK).unwrap().1, Ending::MessageStop);
    }

    #[test]
    fn rejects_each_violation() {
        let without = |needle: &str| OK.replace(needle, "");
        let bad = [
            OK.replace("event: content_block_start\n", ""),
            without(
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
            ),
            OK.replace(
                "\"index\":0,\"content_block\"",
                "\"index\":1,\"content_block\"",
            ),
            OK.replace("toolu_1", "bad.id"),
            OK.replace(",\"usage\":{\"input_tokens\":1,\"output_tokens\":0}", ""),
            without("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            format!("{OK}event: ping\ndata: {{\"type\":\"ping\"}}\n\n"),
            OK.replace("\"partial_json\":\"{}\"", "\"partial_json\":\"{\""),
            OK.trim_end().to_owned(),
        ];
        for (i, text) in bad.iter().enumerate() {
            assert!(check_text(text).is_err(), "case {i} passed:\n{text}");
        }
    }
}
