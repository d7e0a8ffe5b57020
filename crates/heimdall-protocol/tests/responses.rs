//! Response goldens: an upstream 200 body in a dialect, `fixtures/responses/NAME.openai.json` or
//! `NAME.gemini.json`, → `NAME.anthropic.json`, or → `NAME.error.txt`: the dialect's decoder →
//! canonical response → Anthropic front door. Stems are unique across dialects.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use heimdall_protocol::dialect::UpstreamCodec;
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;

/// Each upstream dialect with response goldens: the suffix of its inputs and its codec.
const DIALECTS: [(&str, &dyn UpstreamCodec); 2] = [
    (".openai.json", &OpenAiChat::OPENAI),
    (".gemini.json", &Gemini::API),
];

#[test]
fn response_goldens() {
    for (suffix, codec) in DIALECTS {
        for (stem, input) in common::inputs("responses", suffix) {
            common::check_response("responses", &stem, &std::fs::read(&input).unwrap(), codec);
        }
    }
}
