//! The OpenAI Chat upstream dialect on arbitrary upstream bytes, both as a whole answer and as
//! an event stream translated to Anthropic SSE the way the gateway's stream pump does it
//! (framer → stream decoder → assembler with the Anthropic encoder, as
//! `crates/heimdall-protocol/tests/streams.rs` runs it, plus the pump's framing-error path and
//! keep-alive pings).
//!
//! Checked besides "nothing panics":
//! - a decoded answer re-encodes as an Anthropic JSON message;
//! - the translated stream obeys Anthropic's stream grammar, judged by the strict checker the
//!   tests use (`heimdall_testkit::grammar`, compiled in from its source file so the fuzz
//!   build does not pull the testkit's server stack);
//! - the translated stream does not depend on how the upstream bytes were chunked;
//! - the gateway's own pass-through usage tap accepts every event of it, and a stream that
//!   ends with `message_stop` reports the usage the assembler accounted.

#![no_main]

#[allow(dead_code)]
#[path = "../../crates/heimdall-testkit/src/grammar.rs"]
mod grammar;

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Usage};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use heimdall_protocol::dialect::{
    FrontDoor, ResponseContext, TapVerdict, UpstreamCodec, UpstreamDialect,
};
use heimdall_protocol::error::ErrorType;
use heimdall_protocol::framing::Framer;
use heimdall_protocol::framing::sse::SseFramer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const REQUEST_ID: &str = "req_01FuzzFuzzFuzzFuzzFuzzFu";
/// Small enough that the fuzzer reaches the too-large-event path.
const MAX_EVENT_BYTES: usize = 2048;
/// A keep-alive ping goes out after every this many upstream frames.
const PING_EVERY: usize = 3;

fn ctx() -> ResponseContext {
    ResponseContext {
        message_id: "msg_01FuzzFuzzFuzzFuzzFuzzFu".to_owned(),
        model: "openai/gpt-5".to_owned(),
    }
}

fuzz_target!(|wire: &[u8]| {
    whole_answer(wire);

    let (text, usage) = translate_stream(wire, wire.len().max(1));
    let chunk = 1 + wire.len() % 13;
    assert_eq!(
        translate_stream(wire, chunk),
        (text.clone(), usage),
        "output depends on chunking (chunk size {chunk})"
    );
    let (_, ending) = grammar::check_text(&text)
        .unwrap_or_else(|e| panic!("stream grammar violated: {e}\n{text}"));
    check_with_tap(&text, ending, usage);
});

/// A non-streamed answer: decode, and re-encode for the client when it decodes.
fn whole_answer(body: &[u8]) {
    let _ = OpenAiChat::OPENAI.answer_summary(body);
    let _ = OpenAiChat::OPENAI.decode_model_list(body);
    if let Ok(response) = OpenAiChat::OPENAI.decode_response(body, &ctx()) {
        let json = Anthropic.encode_response(&response);
        let value: Value = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("encoded Anthropic message is not JSON: {e}"));
        assert_eq!(value["type"], "message", "encoded Anthropic message");
    }
}

/// The stream pump, upstream chunks of `chunk` bytes.
fn translate_stream(wire: &[u8], chunk: usize) -> (String, Usage) {
    let mut asm = Assembler::new(ctx(), Anthropic.stream_encoder(REQUEST_ID));
    let mut framer = OpenAiChat::OPENAI.framer(MAX_EVENT_BYTES);
    let mut decoder = OpenAiChat::OPENAI.stream_decoder(&ctx());
    let mut tap = OpenAiChat::OPENAI.usage_tap();
    let mut out = BytesMut::new();
    let mut deltas = Vec::new();
    let mut frames = 0;
    asm.start(&mut out);
    'read: for piece in wire.chunks(chunk) {
        framer.push(piece);
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    asm.fail(ErrorType::ApiError, &e.to_string(), &mut out);
                    break 'read;
                }
            };
            let _ = tap.observe(&frame);
            decoder.frame(&frame, &mut deltas);
            for d in deltas.drain(..) {
                asm.push(d, &mut out);
            }
            if asm.is_done() {
                break 'read;
            }
            frames += 1;
            if frames % PING_EVERY == 0 {
                asm.keepalive(&mut out);
            }
        }
    }
    if !asm.is_done() {
        if let Some(frame) = framer.finish() {
            let _ = tap.observe(&frame);
            decoder.frame(&frame, &mut deltas);
        }
        decoder.end(&mut deltas);
        for d in deltas.drain(..) {
            asm.push(d, &mut out);
        }
        asm.finish(&mut out);
    }
    assert!(asm.is_done(), "assembler not done after finish");
    let _ = (tap.usage(), tap.stop_reason());
    let text = String::from_utf8(out.to_vec())
        .unwrap_or_else(|e| panic!("translated stream is not UTF-8: {e}"));
    (text, asm.usage())
}

/// Feeds the translated stream to the Anthropic pass-through tap, which must take every event
/// as valid and see the stream end where the grammar checker did.
fn check_with_tap(text: &str, ending: grammar::Ending, usage: Usage) {
    let mut framer = SseFramer::new(usize::MAX);
    framer.push(text.as_bytes());
    let mut tap = Anthropic.usage_tap();
    let mut last = TapVerdict::Continue;
    while let Ok(Some(frame)) = framer.next_frame() {
        assert_eq!(last, TapVerdict::Continue, "events after the end:\n{text}");
        last = tap.observe(&frame);
        assert_ne!(
            last,
            TapVerdict::Invalid,
            "tap rejected {:?}\n{text}",
            frame.raw
        );
    }
    assert_eq!(framer.finish(), None, "stream ends mid-event:\n{text}");
    match ending {
        grammar::Ending::MessageStop => {
            assert_eq!(last, TapVerdict::Complete, "tap missed message_stop");
            let seen = tap.usage();
            assert_eq!(
                (seen.input_tokens, seen.output_tokens),
                (usage.input_tokens, usage.output_tokens),
                "usage on the wire differs from the usage accounted:\n{text}"
            );
        }
        grammar::Ending::Error => assert_eq!(last, TapVerdict::Failed, "tap missed the error"),
    }
}
