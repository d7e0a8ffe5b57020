//! Anthropic → OpenAI Chat Completions, through the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn translates_a_plain_request_and_response() {
    let h = Harness::start().await;
    let body = json!({
        "model": GPT, "max_tokens": 50, "temperature": 0.2,
        "system": "be brief", "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "messages": user("hello from anthropic")
    });
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 200);
    let msg: Value = res.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], GPT);
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        msg["content"],
        json!([{"type": "text", "text": "hello from anthropic"}])
    );
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(msg["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let r = &h.mock.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(&*format!("Bearer {OPENAI_KEY}"))
    );
    assert_eq!(r.header("x-api-key"), None);
    assert_eq!(r.body["model"], "gpt-4o-mini");
    assert_eq!(r.body["max_completion_tokens"], 50);
    assert_eq!(
        r.body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(r.body["stop"], json!(["END"]));
    assert_eq!(r.body["user"], "u-1");
}

#[tokio::test]
async fn streams_in_exact_anthropic_grammar() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(GPT, "alpha beta gamma delta", true))
        .await;
    assert_eq!(res.status(), 200);
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "alpha beta gamma delta");
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "end_turn");
    assert!(delta.data["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(delta.data["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        h.mock.requests()[0].body["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn streamed_parallel_tool_calls_arrive_as_input_json_deltas() {
    let h = Harness::start().await;
    let text =
        r#"[[mock:tool get_weather {"city":"Paris"}]] [[mock:tool_whole get_time {"tz":"UTC"}]]"#;
    let mut body = request(GPT, text, true);
    body["tools"] = json!([
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "input_schema": {"type": "object"}}
    ]);
    let res = h.messages(&body).await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "content_block_start")
        .map(|e| &e.data["content_block"])
        .collect();
    assert_eq!(starts.len(), 2, "{events:?}");
    let mut inputs = Vec::new();
    for (i, block) in starts.iter().enumerate() {
        assert_eq!(block["type"], "tool_use");
        let id = block["id"].as_str().unwrap();
        assert!(
            id.starts_with("toolu_")
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        let json: String = events
            .iter()
            .filter(|e| e.data["index"] == i && e.data["delta"]["type"] == "input_json_delta")
            .map(|e| e.data["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        inputs.push(serde_json::from_str::<Value>(&json).unwrap());
    }
    assert_eq!(inputs, vec![json!({"city": "Paris"}), json!({"tz": "UTC"})]);
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn tool_results_round_trip_in_order() {
    let h = Harness::start().await;
    let body = json!({
        "model": GPT, "max_tokens": 64,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_call_2", "name": "get_weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_call_1", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_call_2", "content": [{"type": "text", "text": "no data"}], "is_error": true}
            ]}
        ]
    });
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 200);
    let msg: Value = res.json().await.unwrap();
    assert_eq!(
        msg["content"][0]["text"],
        "tool said: 15 degrees | [tool error] no data"
    );
    let sent = &h.mock.requests()[0].body["messages"];
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
    assert_eq!(sent[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        sent[1]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .map(|s| serde_json::from_str::<Value>(s).unwrap()),
        Some(json!({"city": "Paris"}))
    );
    assert_eq!(sent[2]["tool_call_id"], "call_1");
    assert_eq!(sent[3]["tool_call_id"], "call_2");
}

#[tokio::test]
async fn images_reach_the_upstream() {
    let h = Harness::start().await;
    let body = json!({
        "model": GPT, "max_tokens": 64,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "what is this"}
        ]}]
    });
    let msg: Value = h.messages(&body).await.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], "what is this [image: image/png]");
    let part = &h.mock.requests()[0].body["messages"][0]["content"][0];
    assert_eq!(
        part["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
}

#[tokio::test]
async fn cached_tokens_and_finish_reasons_map() {
    let h = Harness::start().await;
    let msg: Value = h
        .messages(&request(
            GPT,
            "one two three four five six [[mock:cached 3]] [[mock:finish length]]",
            false,
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(msg["stop_reason"], "max_tokens");
    assert_eq!(msg["usage"]["cache_read_input_tokens"], 3);
    let filtered: Value = h
        .messages(&request(GPT, "x [[mock:finish content_filter]]", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["stop_reason"], "refusal");
}

#[tokio::test]
async fn a_cut_translated_stream_ends_with_an_error_event() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(GPT, "a b c d e f [[mock:cut]]", true))
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_eq!(events.first().unwrap().name, "message_start");
    assert_eq!(events.last().unwrap().name, "error");
    assert!(!events.iter().any(|e| e.name == "message_stop"));
}

#[tokio::test]
async fn count_tokens_is_estimated_locally() {
    let h = Harness::start().await;
    let count = |text: &'static str| {
        let body = json!({"model": GPT, "messages": user(text)});
        let base = h.gateway.base_url().to_owned();
        async move { count_tokens(&base, &body).await }
    };
    let short = count("hi").await;
    let long = count("the quick brown fox jumps over the lazy dog again and again").await;
    assert!(short > 0 && long > short + 5, "{short} {long}");
    assert!(
        h.mock.requests().is_empty(),
        "estimate must not call the upstream"
    );
}

#[tokio::test]
async fn server_tools_are_refused_not_dropped() {
    let h = Harness::start().await;
    let mut body = request(GPT, "search", false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web_search")
    );
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn long_upstream_silence_gets_keepalive_pings() {
    // Pings go out every min(10 s, idle timeout / 2): 1 s here, so a 1.6 s stall yields one.
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"]["stream_idle_timeout_in_seconds"] = json!(2);
    })
    .await;
    let res = h
        .messages(&request(GPT, "one two three [[mock:stall 1600]]", true))
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    let first_delta = events
        .iter()
        .position(|e| e.name == "content_block_delta")
        .unwrap();
    let pings_after = events[first_delta..]
        .iter()
        .filter(|e| e.name == "ping")
        .count();
    assert!(
        pings_after >= 1,
        "{:?}",
        events.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
    assert_eq!(streamed_text(&events), "one two three");
}
