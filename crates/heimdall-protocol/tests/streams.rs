//! Stream goldens: a recorded upstream transcript `fixtures/streams/NAME.openai.sse` →
//! the exact Anthropic SSE text `NAME.anthropic.sse`. Every output is also checked against the
//! Anthropic stream grammar, and must not depend on how the upstream bytes were chunked.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use bytes::BytesMut;
use heimdall_protocol::error::ErrorType;
use heimdall_protocol::sse::SseFramer;
use heimdall_protocol::translate::StreamStatus;
use heimdall_protocol::translate::openai_chat::StreamTranslator;

/// Runs the translator the way the gateway does: `start`, one `push_data` per framed event,
/// and `finish` at EOF if the upstream never said `[DONE]`.
fn run(wire: &[u8], chunk: usize) -> (String, heimdall_protocol::usage::Usage) {
    let mut t = StreamTranslator::new(common::ctx());
    let mut out = BytesMut::new();
    t.start(&mut out);
    let mut framer = SseFramer::new();
    'read: for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(ev) = framer.next_event() {
            if t.push_data(&ev.data, &mut out) == StreamStatus::Done {
                break 'read;
            }
        }
    }
    if !t.is_done() {
        if let Some(ev) = framer.finish() {
            t.push_data(&ev.data, &mut out);
        }
        t.finish(&mut out);
    }
    assert!(t.is_done());
    (String::from_utf8(out.to_vec()).unwrap(), t.usage())
}

#[test]
fn stream_goldens() {
    for (stem, input) in common::inputs("streams", ".openai.sse") {
        let wire = std::fs::read(&input).unwrap();
        let (text, usage) = run(&wire, wire.len());
        common::assert_grammar(&text);
        for chunk in [1, 7, 64] {
            assert_eq!(
                run(&wire, chunk),
                (text.clone(), usage),
                "{stem}: chunk size {chunk}"
            );
        }
        // The usage the gateway accounts is the one reported to the client.
        let frames = common::frames(&text);
        if let Some(delta) = frames.iter().find(|f| f.event == "message_delta") {
            assert_eq!(
                delta.data["usage"]["output_tokens"], usage.output_tokens,
                "{stem}"
            );
            assert_eq!(
                delta.data["usage"]["input_tokens"], usage.input_tokens,
                "{stem}"
            );
        }
        common::check_text(
            &common::fixtures("streams").join(format!("{stem}.anthropic.sse")),
            &text,
        );
    }
}

#[test]
fn transport_failure_ends_with_one_error() {
    let mut t = StreamTranslator::new(common::ctx());
    let mut out = BytesMut::new();
    t.start(&mut out);
    let chunk = br#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
    assert_eq!(t.push_data(chunk, &mut out), StreamStatus::Continue);
    t.fail(
        ErrorType::OverloadedError,
        "upstream connection reset",
        &mut out,
    );
    t.fail(ErrorType::ApiError, "again", &mut out);
    t.finish(&mut out);
    assert_eq!(t.push_data(b"[DONE]", &mut out), StreamStatus::Done);
    let text = String::from_utf8(out.to_vec()).unwrap();
    common::assert_grammar(&text);
    assert!(text.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"upstream connection reset\"}}\n\n"
    ));
    assert_eq!(text.matches("event: error").count(), 1);
}

#[test]
fn start_and_finish_are_idempotent() {
    let mut t = StreamTranslator::new(common::ctx());
    let mut out = BytesMut::new();
    t.start(&mut out);
    t.start(&mut out);
    t.finish(&mut out);
    let once = out.clone();
    t.finish(&mut out);
    assert_eq!(out, once);
    common::assert_grammar(std::str::from_utf8(&out).unwrap());
}
