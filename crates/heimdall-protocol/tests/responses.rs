//! Response goldens: an upstream 200 body in a dialect, `fixtures/responses/NAME.openai.json` or
//! `NAME.gemini.json`, → `NAME.anthropic.json`, or → `NAME.error.txt`: the dialect's decoder →
//! canonical response → Anthropic front door. Stems are unique across dialects.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use heimdall_protocol::dialect::{FrontDoor, ResponseContext, TranslateError, UpstreamCodec};
use serde_json::Value;

/// Each upstream dialect with response goldens: the suffix of its inputs and its codec.
const DIALECTS: [(&str, &dyn UpstreamCodec); 2] = [
    (".openai.json", &OpenAiChat::OPENAI),
    (".gemini.json", &Gemini::API),
];

fn translate(
    body: &[u8],
    ctx: &ResponseContext,
    codec: &dyn UpstreamCodec,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let response = codec.decode_response(body, ctx)?;
    Ok((Anthropic.encode_response(&response), response.usage))
}

#[test]
fn response_goldens() {
    for (suffix, codec) in DIALECTS {
        for (stem, input) in common::inputs("responses", suffix) {
            check(&stem, &std::fs::read(&input).unwrap(), codec);
        }
    }
}

fn check(stem: &str, body: &[u8], codec: &dyn UpstreamCodec) {
    let (expected, is_error) =
        common::expected_path("responses", stem, ".anthropic.json", &[".error.txt"]);
    match (translate(body, &common::ctx(), codec), is_error) {
        (Ok((bytes, usage)), false) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            // The accounted usage is the one the client sees.
            let u = &v["usage"];
            assert_eq!(
                usage,
                Usage {
                    input_tokens: u["input_tokens"].as_u64().unwrap(),
                    output_tokens: u["output_tokens"].as_u64().unwrap(),
                    cache_read_input_tokens: u["cache_read_input_tokens"].as_u64().unwrap(),
                    cache_creation_input_tokens: u["cache_creation_input_tokens"].as_u64().unwrap(),
                },
                "{stem}"
            );
            common::check_json(&expected, &v);
        }
        (Err(e), true) => common::check_text(&expected, &format!("{}\n", e.message())),
        (Ok((bytes, _)), true) => {
            panic!(
                "{stem}: expected an error, got {}",
                String::from_utf8_lossy(&bytes)
            )
        }
        (Err(e), false) => panic!("{stem}: {e}"),
    }
}
