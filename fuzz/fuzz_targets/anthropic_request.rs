//! The Anthropic front door on arbitrary request bodies: the routing peek, the byte-keeping
//! `model` rewrite and Vertex body, the full decode for both endpoints and, when that succeeds,
//! the OpenAI Chat and Gemini encodings and the token-counting text.
//!
//! Checked besides "nothing panics":
//! - when both the peek and the decode accept a body, they agree on `model` and `stream`
//!   (routing is decided on the peek, translation on the decode);
//! - a body the peek accepts can be rewritten, and the rewritten body peeks with the new
//!   model and the same `stream`;
//! - a body the peek accepts has a Vertex body: the same members less `model`, plus
//!   `anthropic_version`;
//! - an OpenAI Chat body that encodes is a JSON object naming the upstream model; a Gemini body
//!   that encodes is a JSON object with `contents`.

#![no_main]

use heimdall_protocol::dialect::anthropic::{self, Anthropic};
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Rewrite targets: a plain id, and one that needs escaping in JSON.
const MODELS: [&str; 2] = ["claude-sonnet-4-5", "m\"o\\d\u{1}el/\u{e9}\u{1F600}"];
const UPSTREAM_MODEL: &str = "gpt-4o-mini";

fuzz_target!(|body: &[u8]| {
    for endpoint in [Endpoint::Messages, Endpoint::CountTokens] {
        let head = Anthropic.peek(body, endpoint);

        let rewritten: Vec<_> = MODELS
            .iter()
            .map(|m| (m, Anthropic.rewrite_model(body, m)))
            .collect();
        if let Ok(head) = &head {
            for (model, result) in &rewritten {
                let Ok(new_body) = result else {
                    panic!("peek accepted the body but rewrite_model failed: {result:?}");
                };
                let new_head = Anthropic
                    .peek(new_body, endpoint)
                    .unwrap_or_else(|e| panic!("rewritten body no longer peeks: {e}"));
                assert_eq!(new_head.model, **model, "rewritten model");
                assert_eq!(new_head.stream, head.stream, "rewrite changed `stream`");
            }
            let vertex = anthropic::vertex_body(body, "vertex-2023-10-16")
                .unwrap_or_else(|e| panic!("peek accepted the body but vertex_body failed: {e}"));
            let value: Value = serde_json::from_slice(&vertex)
                .unwrap_or_else(|e| panic!("Vertex body is not JSON: {e}"));
            assert!(value.get("model").is_none(), "Vertex body keeps `model`");
            assert_eq!(value["anthropic_version"], "vertex-2023-10-16");
        }

        let Ok(request) = Anthropic.decode_request(body, endpoint) else {
            continue;
        };
        if let Ok(head) = &head {
            assert_eq!(head.model, request.model, "peek and decode disagree on model");
            assert_eq!(
                head.stream,
                request.is_stream(),
                "peek and decode disagree on stream"
            );
        }
        let _ = request.counting_text();
        if let Ok(chat) = OpenAiChat.encode_request(&request, UPSTREAM_MODEL) {
            let value: Value = serde_json::from_slice(&chat)
                .unwrap_or_else(|e| panic!("encoded OpenAI body is not JSON: {e}"));
            assert_eq!(value["model"], UPSTREAM_MODEL, "encoded model");
        }
        for gemini in [Gemini::API, Gemini::VERTEX] {
            if let Ok(out) = gemini.encode_request(&request, UPSTREAM_MODEL) {
                let value: Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("encoded Gemini body is not JSON: {e}"));
                assert!(value["contents"].is_array(), "Gemini body without contents");
            }
        }
    }
});
