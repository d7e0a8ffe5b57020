//! Rebuilds the message a streamed Anthropic answer amounts to, for the logs store: the stream
//! is kept as the SSE bytes the client got, and a reader wants the one document instead.
//!
//! Tolerant by design: the bytes may have been cut anywhere (the store keeps a bounded prefix)
//! or be garbage; whatever parses is applied, the rest ignored. Work and memory are linear in
//! the input (serde_json bounds nesting depth), and nothing here panics.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::framing::Framer;
use crate::framing::sse::SseFramer;

/// The message a stream amounts to, as compact JSON, or the stream's `error` event document.
/// `None` when the bytes hold neither a `message_start` nor an error.
pub fn collect_stream(stream: &[u8]) -> Option<Vec<u8>> {
    // The whole input is already in memory: any single event may be as large as it.
    let mut framer = SseFramer::new(stream.len().saturating_add(1));
    framer.push(stream);
    let mut c = Collector::default();
    // The size limit above cannot be exceeded, so an error is only ever the end.
    while let Ok(Some(frame)) = framer.next_frame() {
        if let Some(error) = c.event(&frame.data) {
            return Some(error);
        }
    }
    // An event cut short: its JSON usually fails to parse and is ignored.
    if let Some(frame) = framer.finish()
        && let Some(error) = c.event(&frame.data)
    {
        return Some(error);
    }
    c.finish()
}

#[derive(Default)]
struct Collector {
    message: Option<Map<String, Value>>,
    /// Content blocks by their stream index (an index is client-visible data, not trusted to
    /// be small or dense, hence a map rather than a vector).
    blocks: BTreeMap<u64, Block>,
}

struct Block {
    value: Value,
    /// `input_json_delta` fragments of a tool block, parsed into `input` when it stops.
    partial_json: Option<String>,
}

impl Block {
    fn settle(&mut self) {
        let Some(raw) = self.partial_json.take() else {
            return;
        };
        let input = serde_json::from_str::<Value>(&raw).unwrap_or(Value::String(raw));
        if let Some(obj) = self.value.as_object_mut() {
            obj.insert("input".into(), input);
        }
    }
}

/// An event, read only as far as needed: the bulk of a stream is `content_block_delta`, whose
/// small typed delta borrows from the input instead of building a JSON tree.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    index: Option<u64>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
    citation: Option<Value>,
}

fn object(raw: Option<&RawValue>) -> Option<Map<String, Value>> {
    serde_json::from_str(raw?.get()).ok()
}

impl Collector {
    /// Applies one event; returns the error document when the event is an error.
    fn event(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let event: WireEvent<'_> = serde_json::from_slice(data).ok()?;
        match &*event.kind {
            // Re-encoded, not copied: parts of the event the typed read skipped may hold bytes
            // that are not UTF-8 (found by fuzzing), and the result must be JSON. An error
            // event that does not parse whole is ignored like any other broken event.
            "error" => {
                let whole: Value = serde_json::from_slice(data).ok()?;
                return serde_json::to_vec(&whole).ok();
            }
            "message_start" => {
                if self.message.is_none()
                    && let Some(mut message) = object(event.message)
                {
                    if let Some(Value::Array(content)) = message.remove("content") {
                        for (i, value) in (0u64..).zip(content) {
                            self.blocks.insert(
                                i,
                                Block {
                                    value,
                                    partial_json: None,
                                },
                            );
                        }
                    }
                    self.message = Some(message);
                }
            }
            "content_block_start" => {
                if let (Some(index), Some(block)) = (event.index, event.content_block)
                    && let Ok(value) = serde_json::from_str(block.get())
                {
                    self.blocks.insert(
                        index,
                        Block {
                            value,
                            partial_json: None,
                        },
                    );
                }
            }
            "content_block_delta" => {
                if let (Some(block), Some(delta)) = (
                    event.index.and_then(|i| self.blocks.get_mut(&i)),
                    event.delta,
                ) && let Ok(delta) = serde_json::from_str(delta.get())
                {
                    apply_delta(block, delta);
                }
            }
            "content_block_stop" => {
                if let Some(block) = event.index.and_then(|i| self.blocks.get_mut(&i)) {
                    block.settle();
                }
            }
            "message_delta" => {
                if let Some(message) = &mut self.message {
                    if let Some(delta) = object(event.delta) {
                        // stop_reason, stop_sequence, and whatever else the API adds there.
                        message.extend(delta);
                    }
                    if let Some(usage) = object(event.usage) {
                        // Counts are cumulative: a delta's count replaces the start's.
                        match message.get_mut("usage") {
                            Some(Value::Object(held)) => held.extend(usage),
                            _ => {
                                message.insert("usage".into(), Value::Object(usage));
                            }
                        }
                    }
                }
            }
            // ping, message_stop, and event types this code does not know.
            _ => {}
        }
        None
    }

    fn finish(self) -> Option<Vec<u8>> {
        let mut message = self.message?;
        let content = self
            .blocks
            .into_values()
            .map(|mut b| {
                b.settle();
                b.value
            })
            .collect();
        message.insert("content".into(), Value::Array(content));
        serde_json::to_vec(&message).ok()
    }
}

fn apply_delta(block: &mut Block, delta: WireDelta<'_>) {
    let append = |block: &mut Block, field: &str, piece: Option<Cow<'_, str>>| {
        let (Some(piece), Some(obj)) = (piece, block.value.as_object_mut()) else {
            return;
        };
        match obj.get_mut(field) {
            Some(Value::String(s)) => s.push_str(&piece),
            _ => {
                obj.insert(field.into(), Value::String(piece.into_owned()));
            }
        }
    };
    match &*delta.kind {
        "text_delta" => append(block, "text", delta.text),
        "thinking_delta" => append(block, "thinking", delta.thinking),
        "signature_delta" => append(block, "signature", delta.signature),
        "input_json_delta" => {
            if let Some(piece) = delta.partial_json {
                block.partial_json.get_or_insert_default().push_str(&piece);
            }
        }
        "citations_delta" => {
            if let (Some(citation), Some(obj)) = (delta.citation, block.value.as_object_mut()) {
                match obj.get_mut("citations") {
                    Some(Value::Array(list)) => list.push(citation),
                    _ => {
                        obj.insert("citations".into(), Value::Array(vec![citation]));
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_event_with_bytes_that_are_not_utf8_gives_json_or_nothing() {
        let mut stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Resou".to_vec();
        stream.push(0x97);
        stream.extend_from_slice(b"ce\"}}\n\n");
        if let Some(doc) = collect_stream(&stream) {
            assert!(serde_json::from_slice::<Value>(&doc).is_ok());
        }
    }

    fn collect(sse: &str) -> Option<Value> {
        collect_stream(sse.as_bytes()).map(|b| serde_json::from_slice(&b).unwrap_or_default())
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";

    #[test]
    fn thinking_signature_citations_and_usage() {
        let sse = format!(
            "{START}event: ping\ndata: {{\"type\":\"ping\"}}\n\n\
             data: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"thinking\",\"thinking\":\"\"}}}}\n\n\
             data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}}}\n\n\
             data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"signature_delta\",\"signature\":\"sig\"}}}}\n\n\
             data: {{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
             data: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"citations_delta\",\"citation\":{{\"cited_text\":\"c\"}}}}}}\n\n\
             data: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n\
             data: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":9}}}}\n\n"
        );
        let m = collect(&sse).unwrap_or_default();
        assert_eq!(m["content"][0]["thinking"], "hm");
        assert_eq!(m["content"][0]["signature"], "sig");
        assert_eq!(m["content"][1]["text"], "Hi");
        assert_eq!(m["content"][1]["citations"][0]["cited_text"], "c");
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["usage"]["input_tokens"], 3);
        assert_eq!(m["usage"]["output_tokens"], 9);
    }

    #[test]
    fn tool_input_parsed_or_kept_raw() {
        let tool = |json: &str| {
            format!(
                "{START}data: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{{}}}}}}\n\n\
                 data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{json}}}}}\n\n"
            )
        };
        let whole = collect(&tool(r#""{\"a\":1}""#)).unwrap_or_default();
        assert_eq!(whole["content"][0]["input"]["a"], 1);
        let cut = collect(&tool(r#""{\"a\":""#)).unwrap_or_default();
        assert_eq!(cut["content"][0]["input"], "{\"a\":");
    }

    #[test]
    fn truncated_and_garbage_inputs() {
        let sse = format!(
            "{START}data: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
             data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"ab\"}}}}\n\n"
        );
        for cut in 0..sse.len() {
            let got = collect_stream(&sse.as_bytes()[..cut]);
            if cut >= START.len() {
                assert!(got.is_some(), "cut at {cut}");
            }
        }
        assert_eq!(collect("not a stream"), None);
        assert_eq!(collect_stream(&[0xff, b'\n', b'\n', 0, 1, 2]), None);
        let huge_index = format!(
            "{START}data: {{\"type\":\"content_block_start\",\"index\":18446744073709551615,\"content_block\":{{\"type\":\"text\",\"text\":\"x\"}}}}\n\n"
        );
        assert_eq!(
            collect(&huge_index).unwrap_or_default()["content"][0]["text"],
            "x"
        );
    }

    #[test]
    fn error_event_is_the_answer() {
        let sse = format!(
            "{START}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"x\"}}}}\n\n"
        );
        assert_eq!(collect(&sse).unwrap_or_default()["type"], "error");
    }
}
