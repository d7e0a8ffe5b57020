//! Request goldens: every `fixtures/requests/NAME.anthropic.json` goes through each upstream
//! dialect the way the exchange takes it (Anthropic front door → canonical request → the
//! dialect's codec) and is compared with that dialect's golden: `NAME.openai.json` /
//! `NAME.gemini.json` (as JSON values), or the exact client-facing message of an error,
//! `NAME.gemini.error.txt` for an error only Gemini raises, else the shared `NAME.error.txt`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::gemini::Gemini;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use heimdall_protocol::dialect::{Endpoint, FrontDoor, TranslateError, UpstreamCodec};
use serde_json::{Value, json};

const UPSTREAM_MODEL: &str = "gpt-5";

/// Each upstream dialect with request goldens: its golden suffix, where its error goldens
/// may be (first match wins), and its codec.
const DIALECTS: [(&str, &[&str], &dyn UpstreamCodec); 2] = [
    (".openai.json", &[".error.txt"], &OpenAiChat::OPENAI),
    (
        ".gemini.json",
        &[".gemini.error.txt", ".error.txt"],
        &Gemini::API,
    ),
];

fn translate_with(body: &[u8], codec: &dyn UpstreamCodec) -> Result<Value, TranslateError> {
    let req = Anthropic.decode_request(body, Endpoint::Messages)?;
    let out = codec.encode_request(&req, UPSTREAM_MODEL)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn translate(body: &[u8]) -> Result<Value, TranslateError> {
    translate_with(body, &OpenAiChat::OPENAI)
}

#[test]
fn request_goldens() {
    for (stem, input) in common::inputs("requests", ".anthropic.json") {
        let body = std::fs::read(&input).unwrap();
        for (ok_suffix, error_suffixes, codec) in DIALECTS {
            let (expected, is_error) =
                common::expected_path("requests", &stem, ok_suffix, error_suffixes);
            match (translate_with(&body, codec), is_error) {
                (Ok(v), false) => common::check_json(&expected, &v),
                (Err(e), true) => common::check_text(&expected, &format!("{}\n", e.message())),
                (Ok(v), true) => panic!("{stem}{ok_suffix}: expected an error, got {v}"),
                (Err(e), false) => panic!("{stem}{ok_suffix}: {e}"),
            }
        }
    }
}

fn with(extra: Value) -> Value {
    let mut base = json!({
        "model": "openai/gpt-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn translate_value(req: Value) -> Value {
    translate(&serde_json::to_vec(&req).unwrap()).unwrap()
}

#[test]
fn each_tool_choice() {
    let cases = [
        (json!({"type": "auto"}), json!("auto"), None),
        (json!({"type": "any"}), json!("required"), None),
        (json!({"type": "none"}), json!("none"), None),
        (
            json!({"type": "tool", "name": "get_weather"}),
            json!({"type": "function", "function": {"name": "get_weather"}}),
            None,
        ),
        (
            json!({"type": "any", "disable_parallel_tool_use": true}),
            json!("required"),
            Some(false),
        ),
        (
            json!({"type": "auto", "disable_parallel_tool_use": false}),
            json!("auto"),
            None,
        ),
    ];
    for (choice, want, parallel) in cases {
        let out = translate_value(with(json!({"tool_choice": choice})));
        assert_eq!(out["tool_choice"], want, "{choice}");
        assert_eq!(
            out.get("parallel_tool_calls").and_then(Value::as_bool),
            parallel,
            "{choice}"
        );
    }
    // Without tools OpenAI rejects tool_choice and parallel_tool_calls, so neither is sent.
    let out = translate_value(with(json!({
        "tools": [],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
    })));
    for key in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(out.get(key).is_none(), "{key} in {out}");
    }
}

#[test]
fn thinking_maps_to_reasoning_effort() {
    let cases = [
        (
            json!({"type": "enabled", "budget_tokens": 1024}),
            Some("low"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 1025}),
            Some("medium"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 8192}),
            Some("medium"),
        ),
        (
            json!({"type": "enabled", "budget_tokens": 8193}),
            Some("high"),
        ),
        (json!({"type": "adaptive"}), Some("medium")),
        (json!({"type": "disabled"}), None),
        (json!({"type": "between_tools", "display": "omitted"}), None),
    ];
    for (thinking, want) in cases {
        let out = translate_value(with(json!({"thinking": thinking})));
        assert_eq!(
            out.get("reasoning_effort").and_then(Value::as_str),
            want,
            "{thinking}"
        );
    }
    // An explicit effort wins over the budget.
    let out = translate_value(with(json!({
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "output_config": {"effort": "high"}
    })));
    assert_eq!(out["reasoning_effort"], "high");
}

#[test]
fn count_text_covers_everything_sent() {
    let req = Anthropic
        .decode_request(
        br#"{"model":"m","system":[{"type":"text","text":"SYS"}],
        "tools":[{"name":"TOOLNAME","description":"TOOLDESC","input_schema":{"type":"object","title":"SCHEMA"}}],
        "messages":[
          {"role":"user","content":"USER"},
          {"role":"assistant","content":[{"type":"thinking","thinking":"HIDDEN","signature":"s"},{"type":"tool_use","id":"toolu_1","name":"CALLED","input":{"q":"INPUT"}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"RESULT"}]},
                                    {"type":"document","source":{"type":"text","media_type":"text/plain","data":"DOC"}}]}]}"#,
        Endpoint::CountTokens,
    )
    .unwrap();
    let text = req.counting_text();
    for needle in [
        "SYS", "TOOLNAME", "TOOLDESC", "SCHEMA", "USER", "CALLED", "INPUT", "RESULT", "DOC",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text:?}");
    }
    assert!(!text.contains("HIDDEN"), "thinking is not sent upstream");
}

#[test]
fn gemini_tool_choice_thinking_and_call_ids() {
    let gemini = |extra: Value, codec: &dyn UpstreamCodec| {
        translate_with(&serde_json::to_vec(&with(extra)).unwrap(), codec).unwrap()
    };
    for (choice, mode, allowed) in [
        (json!({"type": "auto"}), "AUTO", None),
        (json!({"type": "any"}), "ANY", None),
        (json!({"type": "none"}), "NONE", None),
        (
            json!({"type": "tool", "name": "get_weather"}),
            "ANY",
            Some(json!(["get_weather"])),
        ),
    ] {
        let out = gemini(json!({"tool_choice": choice}), &Gemini::API);
        let config = &out["toolConfig"]["functionCallingConfig"];
        assert_eq!(config["mode"], mode, "{choice}");
        assert_eq!(config.get("allowedFunctionNames").cloned(), allowed);
    }
    // Without tools there is nothing to choose from.
    let out = gemini(
        json!({"tools": [], "tool_choice": {"type": "any"}}),
        &Gemini::API,
    );
    assert!(
        out.get("toolConfig").is_none() && out.get("tools").is_none(),
        "{out}"
    );
    // Disabled thinking sends no budget (0 is an error on models that always think).
    let out = gemini(json!({"thinking": {"type": "disabled"}}), &Gemini::API);
    assert!(
        out["generationConfig"].get("thinkingConfig").is_none(),
        "{out}"
    );

    // Vertex rejects ids on function calls and responses.
    let history = json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_abc", "content": "sunny"}]},
    ]});
    let api = gemini(history.clone(), &Gemini::API);
    assert_eq!(api["contents"][1]["parts"][0]["functionCall"]["id"], "abc");
    assert_eq!(
        api["contents"][2]["parts"][0]["functionResponse"]["id"],
        "abc"
    );
    let vertex = gemini(history, &Gemini::VERTEX);
    assert!(
        vertex["contents"][1]["parts"][0]["functionCall"]
            .get("id")
            .is_none()
    );
    assert_eq!(
        vertex["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "sunny"}})
    );
}
