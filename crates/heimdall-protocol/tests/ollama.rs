//! Ollama goldens in `fixtures/ollama`: requests (Anthropic front door → canonical → Ollama),
//! responses (Ollama → canonical → Anthropic) and NDJSON streams (framer → decoder →
//! assembler → Anthropic SSE, byte for byte, whatever the chunking).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Usage};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::ollama::Ollama;
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec, UpstreamDialect};
use serde_json::Value;

#[test]
fn request_goldens() {
    for (stem, input) in common::inputs("ollama/requests", ".anthropic.json") {
        let body = std::fs::read(&input).unwrap();
        let (expected, is_error) =
            common::expected_path("ollama/requests", &stem, ".ollama.json", &[".error.txt"]);
        let result = Anthropic
            .decode_request(&body, Endpoint::Messages)
            .and_then(|r| Ollama.encode_request(&r, "llama3.1:8b"));
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
    for (stem, input) in common::inputs("ollama/responses", ".ollama.json") {
        let body = std::fs::read(&input).unwrap();
        let (expected, is_error) = common::expected_path(
            "ollama/responses",
            &stem,
            ".anthropic.json",
            &[".error.txt"],
        );
        match (Ollama.decode_response(&body, &common::ctx()), is_error) {
            (Ok(r), false) => {
                let v: Value = serde_json::from_slice(&Anthropic.encode_response(&r)).unwrap();
                common::check_json(&expected, &v);
            }
            (Err(e), true) => common::check_text(&expected, &format!("{}\n", e.message())),
            (Ok(r), true) => panic!("{stem}: expected an error, got {r:?}"),
            (Err(e), false) => panic!("{stem}: {e}"),
        }
    }
}

fn run(wire: &[u8], chunk: usize) -> (String, Usage) {
    let mut asm = Assembler::new(common::ctx(), Anthropic.stream_encoder("req_test"));
    let mut framer = Ollama.framer(1 << 20);
    let mut decoder = Ollama.stream_decoder(&common::ctx());
    let mut out = BytesMut::new();
    let mut deltas = Vec::new();
    asm.start(&mut out);
    for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame().unwrap() {
            decoder.frame(&frame, &mut deltas);
        }
    }
    if let Some(frame) = framer.finish() {
        decoder.frame(&frame, &mut deltas);
    }
    decoder.end(&mut deltas);
    for d in deltas {
        asm.push(d, &mut out);
    }
    asm.finish(&mut out);
    (String::from_utf8(out.to_vec()).unwrap(), asm.usage())
}

#[test]
fn stream_goldens() {
    for (stem, input) in common::inputs("ollama/streams", ".ollama.ndjson") {
        let wire = std::fs::read(&input).unwrap();
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
            &common::fixtures("ollama/streams").join(format!("{stem}.anthropic.sse")),
            &text,
        );
    }
}
