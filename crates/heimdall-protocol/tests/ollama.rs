//! Ollama goldens in `fixtures/ollama`: requests (Anthropic front door → canonical → Ollama),
//! responses (Ollama → canonical → Anthropic) and NDJSON streams (framer → decoder →
//! assembler → Anthropic SSE, byte for byte, whatever the chunking).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::ollama::Ollama;
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec};

#[test]
fn request_goldens() {
    for (stem, input) in common::inputs("ollama/requests", ".anthropic.json") {
        let body = std::fs::read(&input).unwrap();
        let encoded = Anthropic
            .decode_request(&body, Endpoint::Messages)
            .and_then(|r| Ollama.encode_request(&r, "llama3.1:8b"));
        common::check_request(
            "ollama/requests",
            &stem,
            ".ollama.json",
            &[".error.txt"],
            encoded,
        );
    }
}

#[test]
fn response_goldens() {
    for (stem, input) in common::inputs("ollama/responses", ".ollama.json") {
        let body = std::fs::read(&input).unwrap();
        common::check_response("ollama/responses", &stem, &body, &Ollama);
    }
}

#[test]
fn stream_goldens() {
    for (stem, input) in common::inputs("ollama/streams", ".ollama.ndjson") {
        let wire = std::fs::read(&input).unwrap();
        common::check_stream("ollama/streams", &stem, &Ollama, &wire);
    }
}
