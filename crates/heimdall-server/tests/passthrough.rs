//! Anthropic → Anthropic: bytes forwarded untouched, keys replaced, streams relayed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn forwards_the_body_untouched_with_the_configured_key() {
    let h = Harness::start().await;
    let body = json!({
        "model": CLAUDE, "max_tokens": 32,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there", "cache_control": {"type": "ephemeral"}}]}],
        "some_future_field": {"kept": [1, 2, 3]}
    });
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let msg: serde_json::Value = res.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["content"][0]["text"], "hello there");

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        r.body, body,
        "the upstream must get the client's body as sent"
    );
    assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert!(
        r.headers
            .iter()
            .all(|(_, v)| !v.contains("client-key-must-not-leak"))
    );
}

#[tokio::test]
async fn thinking_claude_cannot_verify_is_taken_out_on_the_way_to_claude() {
    // A conversation that began on Gemini and on an OpenAI reasoning model, continued on Claude.
    let h = Harness::start().await;
    let own = json!({"type": "thinking", "thinking": "mine", "signature": "EqQBCkgIARAB"});
    let body = json!({
        "model": CLAUDE, "max_tokens": 32,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "gemini's", "signature": "gemini:c2ln"},
                {"type": "thinking", "thinking": "gpt's", "signature": ""},
                own,
                {"type": "text", "text": "a"}
            ]},
            {"role": "user", "content": "next"}
        ]
    });
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 200);
    let sent = &h.mock.requests()[0].body;
    assert_eq!(
        sent["messages"][1]["content"],
        json!([own, {"type": "text", "text": "a"}])
    );
    assert_eq!(sent["messages"][0], body["messages"][0]);
    assert_eq!(sent["messages"][2], body["messages"][2]);
}

#[tokio::test]
async fn strips_the_anthropic_prefix_and_ignores_the_query_string() {
    let h = Harness::start().await;
    let res = h
        .http
        .post(h.url("/anthropic/v1/messages?beta=true"))
        .header("authorization", "Bearer client-key")
        .header("anthropic-version", "2026-10-21")
        .json(&request(&format!("anthropic/{CLAUDE}"), "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let r = &h.mock.requests()[0];
    assert_eq!(r.body["model"], CLAUDE);
    assert_eq!(r.header("anthropic-version"), Some("2026-10-21"));
    assert_eq!(
        r.header("authorization"),
        None,
        "client bearer token must not be forwarded"
    );
    assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY));
}

#[tokio::test]
async fn relays_the_stream_and_keeps_its_grammar() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(CLAUDE, "one two three four", true))
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = res.text().await.unwrap();
    let events = parse_sse(&text);
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "one two three four");
}

#[tokio::test]
async fn relays_streamed_tool_use_unchanged() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(
            CLAUDE,
            r#"[[mock:tool get_weather {"city":"Paris","days":3}]]"#,
            true,
        ))
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    let json: String = events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "input_json_delta")
        .map(|e| e.data["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        json!({"city":"Paris","days":3})
    );
}

#[tokio::test]
async fn a_cut_upstream_stream_ends_with_an_error_event() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(CLAUDE, "a b c d e f [[mock:cut]]", true))
        .await;
    assert_eq!(res.status(), 200);
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar_prefix_then_error(&events);
}

#[tokio::test]
async fn an_in_band_upstream_error_is_relayed() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(CLAUDE, "a b c [[mock:stream_error]]", true))
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    let last = events.last().unwrap();
    assert_eq!(last.name, "error");
    assert_eq!(last.data["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn count_tokens_goes_to_anthropic() {
    let h = Harness::start().await;
    let res = h
        .http
        .post(h.url("/anthropic/v1/messages/count_tokens?beta=true"))
        .json(&json!({"model": CLAUDE, "messages": user("count these words please")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(h.mock.requests()[0].path, "/v1/messages/count_tokens");
}

/// A stream cut mid-way: whatever arrived is well-formed, and an `error` event ends it.
fn assert_grammar_prefix_then_error(events: &[Event]) {
    assert_eq!(events.first().unwrap().name, "message_start");
    let last = events.last().unwrap();
    assert_eq!(last.name, "error", "{events:?}");
    assert!(last.data["error"]["message"].is_string());
    assert!(!events.iter().any(|e| e.name == "message_stop"));
}
