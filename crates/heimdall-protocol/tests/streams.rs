//! Stream goldens: a recorded upstream transcript `fixtures/streams/NAME.openai.sse` or
//! `NAME.gemini.sse` → the exact Anthropic SSE text `NAME.anthropic.sse`, the way the exchange's
//! pump produces it: the dialect's framer → its decoder → assembler → Anthropic encoder (stems
//! are unique across dialects). Every output is also checked
//! against the Anthropic stream grammar, and must not depend on how the upstream bytes were
//! chunked.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Delta};
use heimdall_protocol::dialect::FrontDoor;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;

/// Each upstream dialect with stream goldens: the suffix of its transcripts and the dialect.
const DIALECTS: [(&str, &dyn Upstream); 2] = [
    (".openai.sse", &OpenAiChat::OPENAI),
    (".gemini.sse", &Gemini::API),
];

use common::{REQUEST_ID, Upstream};
use heimdall_protocol::error::ErrorType;

fn assembler() -> Assembler {
    Assembler::new(common::ctx(), Anthropic.stream_encoder(REQUEST_ID))
}

#[test]
fn stream_goldens() {
    for (suffix, dialect) in DIALECTS {
        for (stem, input) in common::inputs("streams", suffix) {
            common::check_stream("streams", &stem, dialect, &std::fs::read(&input).unwrap());
        }
    }
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
