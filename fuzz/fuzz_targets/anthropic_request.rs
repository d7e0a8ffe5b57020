//! The Anthropic front door on arbitrary request bodies: the routing peek, the byte-keeping
//! pass-through body (`model` rewrite, unverifiable thinking taken out) and Vertex body, the full decode for both endpoints and, when that succeeds,
//! the OpenAI Chat and Gemini encodings and the token-counting text.
//!
//! Checked besides "nothing panics":
//! - when both the peek and the decode accept a body, they agree on `model` and `stream`
//!   (routing is decided on the peek, translation on the decode);
//! - a body the peek accepts can be rewritten, and the rewritten body peeks with the new
//!   model and the same `stream`;
//! - a body the peek accepts has a Vertex body: the same members less `model`, plus
//!   `anthropic_version`;
//! - an OpenAI Chat body that encodes is a JSON object naming the upstream model, for OpenAI's
//!   quirks and for the opposite ones; with nine-character tool ids (Mistral), every tool-call
//!   id sent upstream is nine ASCII letters or digits; a Gemini body that encodes is a JSON
//!   object with `contents`.

#![no_main]

use heimdall_protocol::dialect::anthropic::{self, Anthropic};
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::{OpenAiChat, Quirks, ToolIdForm};
use heimdall_protocol::dialect::{Endpoint, FrontDoor, UpstreamCodec};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Rewrite targets: a plain id, and one that needs escaping in JSON.
const MODELS: [&str; 2] = ["claude-sonnet-4-5", "m\"o\\d\u{1}el/\u{e9}\u{1F600}"];
const UPSTREAM_MODEL: &str = "gpt-4o-mini";

/// OpenAI's own quirks, and every switch the other way (fields added later keep OpenAI's).
const DIALECTS: [OpenAiChat; 2] = [
    OpenAiChat::OPENAI,
    OpenAiChat::new(Quirks {
        legacy_max_tokens: true,
        stream_usage: false,
        reasoning_effort: false,
        tool_ids: ToolIdForm::Alnum9,
        ..Quirks::OPENAI
    }),
];

fuzz_target!(|body: &[u8]| {
    for endpoint in [Endpoint::Messages, Endpoint::CountTokens] {
        let head = Anthropic.peek(body, endpoint);
        // The gateway's `fallbacks` field is taken out whenever the body has one.
        let drop_fallbacks = head.as_ref().is_ok_and(|h| h.fallbacks.is_some());

        let rewritten: Vec<_> = MODELS
            .iter()
            .map(|m| {
                (
                    m,
                    Anthropic.pass_through_body(body, Some(m), drop_fallbacks),
                )
            })
            .collect();
        if let Ok(head) = &head {
            for (model, result) in &rewritten {
                let Ok(Some(new_body)) = result else {
                    panic!("peek accepted the body but pass_through_body failed: {result:?}");
                };
                let new_head = Anthropic
                    .peek(new_body, endpoint)
                    .unwrap_or_else(|e| panic!("rewritten body no longer peeks: {e}"));
                assert_eq!(new_head.model, **model, "rewritten model");
                assert_eq!(new_head.stream, head.stream, "rewrite changed `stream`");
                assert!(new_head.fallbacks.is_none(), "`fallbacks` left in the body");
            }
            // Taking out thinking Claude cannot verify keeps the request routable as it was.
            match Anthropic.pass_through_body(body, None, false) {
                Ok(Some(filtered)) => {
                    let filtered_head = Anthropic
                        .peek(&filtered, endpoint)
                        .unwrap_or_else(|e| panic!("filtered body no longer peeks: {e}"));
                    assert_eq!(filtered_head.model, head.model, "filtering changed `model`");
                    assert_eq!(
                        filtered_head.stream, head.stream,
                        "filtering changed `stream`"
                    );
                }
                Ok(None) => {}
                Err(e) => panic!("peek accepted the body but pass_through_body failed: {e}"),
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
            assert_eq!(
                head.model, request.model,
                "peek and decode disagree on model"
            );
            assert_eq!(
                head.stream,
                request.is_stream(),
                "peek and decode disagree on stream"
            );
        }
        let _ = request.counting_text();
        for dialect in DIALECTS {
            let Ok(chat) = dialect.encode_request(&request, UPSTREAM_MODEL) else {
                continue;
            };
            let value: Value = serde_json::from_slice(&chat)
                .unwrap_or_else(|e| panic!("encoded OpenAI body is not JSON: {e}"));
            assert_eq!(value["model"], UPSTREAM_MODEL, "encoded model");
            if dialect.quirks.tool_ids == ToolIdForm::Alnum9 {
                check_alnum9_ids(&value);
            }
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

/// Every tool-call id in an encoded Chat body: nine ASCII letters or digits.
fn check_alnum9_ids(body: &Value) {
    let Some(messages) = body["messages"].as_array() else {
        return;
    };
    let calls = messages
        .iter()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .map(|c| &c["id"]);
    let results = messages.iter().map(|m| &m["tool_call_id"]);
    for id in calls.chain(results).filter(|id| !id.is_null()) {
        let ok = id
            .as_str()
            .is_some_and(|s| s.len() == 9 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(ok, "tool id {id} sent to a nine-character-id upstream");
    }
}
