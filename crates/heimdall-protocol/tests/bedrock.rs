//! Bedrock goldens in `fixtures/bedrock`: requests (Anthropic front door → canonical →
//! Converse; the upstream model is the fixture's `model` without its `bedrock/` prefix, since
//! the model family decides some fields), responses (Converse → canonical → Anthropic),
//! ConverseStream transcripts (one event stream message per JSON line, encoded by the
//! testkit's independent encoder → framer → decoder → assembler → Anthropic SSE, byte for byte
//! whatever the chunking), and Claude InvokeModel streams (chunk messages → the Anthropic SSE
//! the pass-through forwards).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::bedrock::{ClaudeInvoke, Converse};
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec, UpstreamDialect};
use heimdall_testkit::eventstream;
use serde_json::Value;

#[test]
fn request_goldens() {
    for (stem, input) in common::inputs("bedrock/requests", ".anthropic.json") {
        let body = std::fs::read(&input).unwrap();
        let encoded = Anthropic
            .decode_request(&body, Endpoint::Messages)
            .and_then(|r| {
                let model = r.model.strip_prefix("bedrock/").unwrap().to_owned();
                Converse.encode_request(&r, &model)
            });
        common::check_request(
            "bedrock/requests",
            &stem,
            ".converse.json",
            &[".error.txt"],
            encoded,
        );
    }
}

#[test]
fn response_goldens() {
    for (stem, input) in common::inputs("bedrock/responses", ".converse.json") {
        let body = std::fs::read(&input).unwrap();
        if let Ok(r) = Converse.decode_response(&body, &common::ctx()) {
            assert_eq!(
                Converse.answer_summary(&body).map(|s| s.usage),
                Some(r.usage),
                "{stem}"
            );
        }
        common::check_response("bedrock/responses", &stem, &body, &Converse);
    }
}

/// A transcript line as event stream bytes: `{"event", "payload"}`, `{"exception",
/// "payload"}`, or (Claude) `{"chunk": <Anthropic event>}`.
fn encode_line(line: &str) -> Vec<u8> {
    let v: Value = serde_json::from_str(line).unwrap();
    if let Some(chunk) = v.get("chunk") {
        let payload = serde_json::json!({"bytes": STANDARD.encode(chunk.to_string())});
        return eventstream::event("chunk", payload.to_string().as_bytes());
    }
    let payload = v["payload"].to_string();
    match (v["event"].as_str(), v["exception"].as_str()) {
        (Some(name), None) => eventstream::event(name, payload.as_bytes()),
        (None, Some(name)) => eventstream::exception(name, payload.as_bytes()),
        _ => panic!("bad transcript line {line}"),
    }
}

fn transcript(path: &std::path::Path) -> Vec<u8> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(encode_line)
        .collect()
}

#[test]
fn stream_goldens() {
    for (stem, input) in common::inputs("bedrock/streams", ".converse.jsonl") {
        common::check_stream("bedrock/streams", &stem, &Converse, &transcript(&input));
    }
}

/// Claude's stream through the invoke dialect's framer: the raw bytes the pass-through
/// forwards, and what the Anthropic tap makes of them.
#[test]
fn invoke_stream_goldens() {
    for (stem, input) in common::inputs("bedrock/invoke", ".invoke.jsonl") {
        let wire = transcript(&input);
        let mut outputs = Vec::new();
        for chunk in [1, 7, 64, wire.len()] {
            let mut framer = ClaudeInvoke.framer(1 << 20);
            let mut tap = ClaudeInvoke.usage_tap();
            let mut text = String::new();
            let mut verdicts = Vec::new();
            for piece in wire.chunks(chunk) {
                framer.push(piece);
                while let Some(frame) = framer.next_frame().unwrap() {
                    verdicts.push(format!("{:?}", tap.observe(&frame)));
                    text.push_str(std::str::from_utf8(&frame.raw).unwrap());
                }
            }
            outputs.push((text, verdicts.join(","), tap.usage()));
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{stem}");
        let (text, verdicts, usage) = &outputs[0];
        common::check_text(
            &common::fixtures("bedrock/invoke").join(format!("{stem}.passthrough.txt")),
            &format!("{text}# tap verdicts: {verdicts}\n# usage: {usage:?}\n"),
        );
    }
}
