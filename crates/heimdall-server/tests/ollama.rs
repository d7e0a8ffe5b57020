//! `ollama/<model>` end to end: native `/api/chat` with NDJSON streams, no key, tools,
//! images, thinking, errors, count_tokens (local estimate) and the model listing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer, RecordedRequest};
use serde_json::{Value, json};

const MODEL: &str = "ollama/llama3.1:8b";

async fn start() -> (MockServer, GatewayProcess) {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    // No keys: Ollama runs without credentials.
    let cfg = json!({"providers": {"ollama": {"network_config": {"base_url": mock.base_url()}}}});
    let gw = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    (mock, gw)
}

fn last_chat(mock: &MockServer) -> RecordedRequest {
    mock.requests()
        .into_iter()
        .rfind(|r| r.path == "/api/chat")
        .expect("a chat request")
}

#[tokio::test]
async fn text_stream_tools_images_and_thinking() {
    let (mock, gw) = start().await;
    let res = post_messages(gw.base_url(), &request(MODEL, "hello llama", false)).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "hello llama");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let seen = last_chat(&mock);
    assert_eq!(seen.body["stream"], false);
    assert_eq!(seen.body["model"], "llama3.1:8b");
    assert_eq!(seen.body["options"]["num_predict"], 64);
    assert!(seen.header("authorization").is_none());

    let res = post_messages(gw.base_url(), &request(MODEL, "stream llama", true)).await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "stream llama");

    // A streamed tool call with the input exactly as the mock sent it, then the round trip.
    let body = json!({"model": MODEL, "max_tokens": 64, "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": user(r#"weather? [[mock:tool get_weather {"city":"Paris","days":3}]]"#)});
    let events = parse_sse(
        &post_messages(gw.base_url(), &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_grammar(&events, false);
    let start = events
        .iter()
        .find(|e| e.data["content_block"]["type"] == "tool_use")
        .unwrap();
    let id = start.data["content_block"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let input: String = events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "input_json_delta")
        .map(|e| e.data["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"city": "Paris", "days": 3})
    );
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "tool_use");

    let body = json!({"model": MODEL, "max_tokens": 64,
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "15 C"}]}
    ]});
    let v: Value = post_messages(gw.base_url(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["text"], "tool said: 15 C");
    let seen = last_chat(&mock);
    assert_eq!(seen.body["messages"][2]["role"], "tool");
    assert_eq!(seen.body["messages"][2]["tool_name"], "get_weather");

    // Images go as bare base64; thinking comes back as a thinking block.
    let body = json!({"model": MODEL, "max_tokens": 64, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this? [[mock:reasoning looking closely]]"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]});
    let v: Value = post_messages(gw.base_url(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], "looking closely");
    assert_eq!(v["content"][1]["text"], "what is this? [image: base64]");
    let seen = last_chat(&mock);
    assert_eq!(seen.body["messages"][0]["images"][0], "iVBORw0KGgo=");
    assert_eq!(seen.body["think"], true);
}

#[tokio::test]
async fn errors_cut_streams_count_tokens_and_models() {
    let (_mock, gw) = start().await;
    let res = post_messages(gw.base_url(), &request(MODEL, "[[mock:error 404]]", false)).await;
    assert_eq!(res.status(), 404);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(v["error"]["message"], "mock error 404");

    let res = post_messages(gw.base_url(), &request(MODEL, "hi [[mock:cut]]", true)).await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, true);
    let res = post_messages(
        gw.base_url(),
        &request(MODEL, "hi [[mock:stream_error]]", true),
    )
    .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, true);

    let count = count_tokens(
        gw.base_url(),
        &json!({"model": MODEL, "messages": user("one two three")}),
    )
    .await;
    assert!(count > 3, "{count}");

    let list = get_json(gw.base_url(), "/anthropic/v1/models").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ollama/llama3.1:8b", "ollama/qwen3:4b"]);
}
