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
use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Usage};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::bedrock::{ClaudeInvoke, Converse};
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec, UpstreamDialect};
use heimdall_testkit::eventstream;
use serde_json::Value;

#[test]
fn request_goldens() {
    for (stem, input) in common::inputs("bedrock/requests", ".anthropic.json") {
        let body = std::fs::read(&input).unwrap();
        let (expected, is_error) =
            common::expected_path("bedrock/requests", &stem, ".converse.json", &[".error.txt"]);
        let result = Anthropic
            .decode_request(&body, Endpoint::Messages)
            .and_then(|r| {
                let model = r.model.strip_prefix("bedrock/").unwrap().to_owned();
                Converse.encode_request(&r, &model)
            });
        match (result, is_error) {
            (Ok(bytes), false) => {
                common::check_json(&expected, &serde_json::from_slice::<Value>(&bytes).unwrap())
            }
            (Err(e), true) => common::check_text(&expected, &format!("{}\n", e.message())),
            (Ok(b), true) => panic!(
                "{stem}: expected an error, got {}",
                String::from_utf8_lossy(&b)
            ),
            (Err(e), false) => panic!("{stem}: {e}"),
        }
    }
}

#[test]
fn response_goldens() {
    for (stem, input) in common::inputs("bedrock/responses", ".converse.json") {
        let body = std::fs::read(&input).unwrap();
        let (expected, is_error) = common::expected_path(
            "bedrock/responses",
            &stem,
            ".anthropic.json",
            &[".error.txt"],
        );
        match (Converse.decode_response(&body, &common::ctx()), is_error) {
            (Ok(r), false) => {
                assert_eq!(Converse.response_usage(&body), Some(r.usage), "{stem}");
                let v: Value = serde_json::from_slice(&Anthropic.encode_response(&r)).unwrap();
                common::check_json(&expected, &v);
            }
            (Err(e), true) => common::check_text(&expected, &format!("{}\n", e.message())),
            (Ok(r), true) => panic!("{stem}: expected an error, got {r:?}"),
            (Err(e), false) => panic!("{stem}: {e}"),
        }
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

/// Runs a ConverseStream the way the gateway's pump does.
fn run(wire: &[u8], chunk: usize) -> (String, Usage) {
    let mut asm = Assembler::new(common::ctx(), Anthropic.stream_encoder("req_test"));
    let mut framer = Converse.framer(1 << 20);
    let mut decoder = Converse.stream_decoder(&common::ctx());
    let mut out = BytesMut::new();
    let mut deltas = Vec::new();
    asm.start(&mut out);
    for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame().unwrap() {
            decoder.frame(&frame, &mut deltas);
        }
    }
    assert!(framer.finish().is_none());
    decoder.end(&mut deltas);
    for d in deltas {
        asm.push(d, &mut out);
    }
    asm.finish(&mut out);
    (String::from_utf8(out.to_vec()).unwrap(), asm.usage())
}

#[test]
fn stream_goldens() {
    for (stem, input) in common::inputs("bedrock/streams", ".converse.jsonl") {
        let wire = transcript(&input);
        let (text, usage) = run(&wire, wire.len());
        common::assert_grammar(&text);
        for chunk in [1, 7, 64] {
            assert_eq!(
                run(&wire, chunk),
                (text.clone(), usage),
                "{stem}: chunk {chunk}"
            );
        }
        common::check_text(
            &common::fixtures("bedrock/streams").join(format!("{stem}.anthropic.sse")),
            &text,
        );
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
