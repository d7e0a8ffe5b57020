//! Stream goldens: a recorded upstream transcript `fixtures/streams/NAME.openai.sse` or
//! `NAME.gemini.sse` → the exact Anthropic SSE text `NAME.anthropic.sse`, the way the exchange's
//! pump produces it: the dialect's framer → its decoder → assembler → Anthropic encoder (stems
//! are unique across dialects). Every output is also checked
//! against the Anthropic stream grammar, and must not depend on how the upstream bytes were
//! chunked.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Delta, Usage};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use heimdall_protocol::dialect::{FrontDoor, UpstreamCodec, UpstreamDialect};

/// Each upstream dialect with stream goldens: the suffix of its transcripts and the dialect.
const DIALECTS: [(&str, &dyn Upstream); 2] = [
    (".openai.sse", &OpenAiChat::OPENAI),
    (".gemini.sse", &Gemini::API),
];

/// A dialect with its codec, as the pump uses both.
trait Upstream: UpstreamDialect + UpstreamCodec {}
impl<T: UpstreamDialect + UpstreamCodec> Upstream for T {}
use heimdall_protocol::error::ErrorType;

const REQUEST_ID: &str = "req_01TestTestTestTestTestTe";

fn assembler() -> Assembler {
    Assembler::new(common::ctx(), Anthropic.stream_encoder(REQUEST_ID))
}

/// Runs the pipeline the way the gateway's stream pump does.
fn run(dialect: &dyn Upstream, wire: &[u8], chunk: usize) -> (String, Usage) {
    let mut asm = assembler();
    let mut framer = dialect.framer(1 << 20);
    let mut decoder = dialect.stream_decoder(&common::ctx());
    let mut out = BytesMut::new();
    let mut deltas = Vec::new();
    asm.start(&mut out);
    'read: for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame().unwrap() {
            decoder.frame(&frame, &mut deltas);
            for d in deltas.drain(..) {
                asm.push(d, &mut out);
            }
            if asm.is_done() {
                break 'read;
            }
        }
    }
    if !asm.is_done() {
        if let Some(frame) = framer.finish() {
            decoder.frame(&frame, &mut deltas);
        }
        decoder.end(&mut deltas);
        for d in deltas.drain(..) {
            asm.push(d, &mut out);
        }
        asm.finish(&mut out);
    }
    assert!(asm.is_done());
    (String::from_utf8(out.to_vec()).unwrap(), asm.usage())
}

#[test]
fn stream_goldens() {
    for (suffix, dialect) in DIALECTS {
        for (stem, input) in common::inputs("streams", suffix) {
            check(dialect, &stem, &std::fs::read(&input).unwrap());
        }
    }
}

fn check(dialect: &dyn Upstream, stem: &str, wire: &[u8]) {
    let (text, usage) = run(dialect, wire, wire.len());
    let events = common::assert_grammar(&text);
    for chunk in [1, 7, 64] {
        assert_eq!(
            run(dialect, wire, chunk),
            (text.clone(), usage),
            "{stem}: chunk size {chunk}"
        );
    }
    // The usage the gateway accounts is the one reported to the client.
    if let Some(delta) = events.iter().find(|e| e.name == "message_delta") {
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

#[test]
fn transport_failure_ends_with_one_error() {
    let mut asm = assembler();
    let mut out = BytesMut::new();
    asm.start(&mut out);
    asm.push(Delta::Text("Hel".into()), &mut out);
    asm.fail(
        ErrorType::OverloadedError,
        "upstream connection reset",
        &mut out,
    );
    asm.fail(ErrorType::ApiError, "again", &mut out);
    asm.finish(&mut out);
    asm.push(Delta::Done, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    common::assert_grammar(&text);
    assert!(text.ends_with(&format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"upstream connection reset\"}},\"request_id\":\"{REQUEST_ID}\"}}\n\n"
    )));
    assert_eq!(text.matches("event: error").count(), 1);
}

#[test]
fn start_and_finish_are_idempotent() {
    let mut asm = assembler();
    let mut out = BytesMut::new();
    asm.start(&mut out);
    asm.start(&mut out);
    asm.finish(&mut out);
    let once = out.clone();
    asm.finish(&mut out);
    assert_eq!(out, once);
    common::assert_grammar(std::str::from_utf8(&out).unwrap());
}
