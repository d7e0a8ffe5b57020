//! `bedrock/<model>` end to end against the mock's Bedrock runtime: Converse for Nova and
//! Llama (translated; event stream answers), InvokeModel for Claude (passed through; chunked
//! event streams unwrapped), SigV4 signatures the mock recomputes, Bedrock API keys, errors,
//! and count_tokens (a local estimate).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use heimdall_testkit::mock::{MOCK_AWS_ACCESS_KEY, MOCK_AWS_SECRET_KEY};
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer, RecordedRequest};
use serde_json::{Value, json};

const NOVA: &str = "bedrock/amazon.nova-pro-v1:0";
const LLAMA: &str = "bedrock/meta.llama3-3-70b-instruct-v1:0";
const MISTRAL: &str = "bedrock/mistral.mistral-large-2407-v1:0";
const CLAUDE_ID: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const CLAUDE_ALIAS: &str = "bedrock/sonnet";

async fn start() -> (MockServer, GatewayProcess) {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = json!({"providers": {"bedrock": {
        "keys": [
            {"name": "signed", "value": "", "weight": 1,
             "models": ["amazon.nova-pro-v1:0", CLAUDE_ID, "sonnet"],
             "bedrock_key_config": {
                "access_key": MOCK_AWS_ACCESS_KEY, "secret_key": MOCK_AWS_SECRET_KEY,
                "session_token": "mock-session-token", "region": "us-west-2",
                "deployments": {"sonnet": format!("us.{CLAUDE_ID}")}}},
            {"name": "api-key", "value": "brk-mock-api-key", "weight": 1,
             "models": ["meta.llama3-3-70b-instruct-v1:0"]},
            {"name": "wrong-secret", "value": "", "weight": 1,
             "models": ["mistral.mistral-large-2407-v1:0"],
             "bedrock_key_config": {"access_key": MOCK_AWS_ACCESS_KEY, "secret_key": "not-the-secret"}}
        ],
        "network_config": {"base_url": mock.base_url()}}}});
    let gw = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    (mock, gw)
}

fn last(mock: &MockServer, action: &str) -> RecordedRequest {
    mock.requests()
        .into_iter()
        .rfind(|r| r.path.ends_with(&format!("/{action}")))
        .unwrap_or_else(|| panic!("a {action} request"))
}

async fn sse(gw: &GatewayProcess, body: &Value) -> Vec<Event> {
    let res = post_messages(gw.base_url(), body).await;
    assert_eq!(res.status(), 200);
    parse_sse(&res.text().await.unwrap())
}

async fn json_answer(gw: &GatewayProcess, body: &Value) -> Value {
    let res = post_messages(gw.base_url(), body).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The tool block's id and the input its deltas add up to.
fn streamed_tool(events: &[Event]) -> (String, Value) {
    let start = events
        .iter()
        .find(|e| e.data["content_block"]["type"] == "tool_use")
        .expect("a tool block");
    let input: String = events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "input_json_delta")
        .map(|e| e.data["delta"]["partial_json"].as_str().unwrap())
        .collect();
    (
        start.data["content_block"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        serde_json::from_str(&input).unwrap(),
    )
}

fn stop_reason(events: &[Event]) -> &Value {
    &events
        .iter()
        .find(|e| e.name == "message_delta")
        .unwrap()
        .data["delta"]["stop_reason"]
}

#[tokio::test]
async fn converse_text_stream_tools_images_and_thinking() {
    let (mock, gw) = start().await;
    let v = json_answer(&gw, &request(NOVA, "hello nova [[mock:cached 1]]", false)).await;
    assert_eq!(v["content"][0]["text"], "hello nova");
    assert_eq!(v["model"], NOVA);
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 1);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The mock recomputed the SigV4 signature over what it received: a 200 proves it matched.
    let seen = last(&mock, "converse");
    assert_eq!(seen.path, "/model/amazon.nova-pro-v1%3A0/converse");
    assert!(seen.body.get("model").is_none());
    assert_eq!(seen.body["inferenceConfig"]["maxTokens"], 64);
    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={MOCK_AWS_ACCESS_KEY}/"
        )),
        "{auth}"
    );
    assert!(auth.contains("/us-west-2/bedrock/aws4_request"), "{auth}");
    assert_eq!(
        seen.header("x-amz-security-token"),
        Some("mock-session-token")
    );

    let events = sse(&gw, &request(NOVA, "stream nova please", true)).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "stream nova please");
    assert_eq!(
        last(&mock, "converse-stream").body["messages"][0]["role"],
        "user"
    );

    // A streamed tool call whose input is exactly what the mock sent, then the round trip
    // with a failed tool.
    let tools = json!([{"name": "get_weather", "description": "Weather.", "input_schema": {"type": "object"}}]);
    let body = json!({"model": NOVA, "max_tokens": 64, "stream": true, "tools": tools,
        "messages": user(r#"weather? [[mock:tool get_weather {"city":"Paris","days":[1,2]}]]"#)});
    let events = sse(&gw, &body).await;
    assert_grammar(&events, false);
    let (id, input) = streamed_tool(&events);
    assert_eq!(input, json!({"city": "Paris", "days": [1, 2]}));
    assert_eq!(stop_reason(&events), "tool_use");
    assert!(id.starts_with("toolu_tooluse_mock"), "{id}");

    let body = json!({"model": NOVA, "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sensor broke", "is_error": true}]}
    ]});
    let v = json_answer(&gw, &body).await;
    assert_eq!(
        v["content"][0]["text"],
        "tool said: [tool error] sensor broke"
    );
    let seen = last(&mock, "converse");
    let upstream_id = id.strip_prefix("toolu_").unwrap();
    assert_eq!(
        seen.body["messages"][1]["content"][0]["toolUse"]["toolUseId"],
        upstream_id
    );
    let result = &seen.body["messages"][2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], upstream_id);
    assert_eq!(result["status"], "error");
    assert!(seen.body["toolConfig"].get("toolChoice").is_none());
    assert_eq!(
        seen.body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );

    // Images go as base64 bytes with their format.
    let body = json!({"model": NOVA, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]});
    let v = json_answer(&gw, &body).await;
    assert_eq!(v["content"][0]["text"], "what is this? [image: image/png]");
    let image = &last(&mock, "converse").body["messages"][0]["content"][1]["image"];
    assert_eq!(
        image,
        &json!({"format": "png", "source": {"bytes": "iVBORw0KGgo="}})
    );

    // Converse's rules hold (the mock enforces Bedrock's): turns start with the user and
    // alternate, and no text block is blank.
    let body = json!({"model": NOVA, "max_tokens": 64, "messages": [
        {"role": "assistant", "content": "earlier"},
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": " "}]}]});
    let v = json_answer(&gw, &body).await;
    assert_eq!(v["content"][0]["text"], "first\nsecond");

    // Signed reasoning, streamed and not.
    let text = "think first [[mock:reasoning looking closely]]";
    let v = json_answer(&gw, &request(NOVA, text, false)).await;
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], "looking closely");
    assert!(
        v["content"][0]["signature"]
            .as_str()
            .unwrap()
            .starts_with("mocksig")
    );
    let events = sse(&gw, &request(NOVA, text, true)).await;
    assert_grammar(&events, false);
    assert!(events.iter().any(|e| {
        e.data["delta"]["type"] == "signature_delta"
            && e.data["delta"]["signature"]
                .as_str()
                .unwrap()
                .starts_with("mocksig")
    }));
}

#[tokio::test]
async fn claude_passes_through_invoke() {
    let (mock, gw) = start().await;
    let model = format!("bedrock/{CLAUDE_ID}");
    let v = json_answer(&gw, &request(&model, "hello claude", false)).await;
    assert_eq!(v["type"], "message");
    assert!(v["id"].as_str().unwrap().starts_with("msg_bdrk_mock"));
    assert_eq!(v["content"][0]["text"], "hello claude");
    let seen = last(&mock, "invoke");
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );
    assert_eq!(seen.body["anthropic_version"], "bedrock-2023-05-31");
    assert!(seen.body.get("model").is_none() && seen.body.get("stream").is_none());
    assert!(
        seen.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 ")
    );

    // A deployment alias, streamed: the chunks unwrap into Anthropic's own events.
    let events = sse(&gw, &request(CLAUDE_ALIAS, "stream claude please", true)).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "stream claude please");
    assert_eq!(
        last(&mock, "invoke-with-response-stream").path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );

    let body = json!({"model": model, "max_tokens": 64, "stream": true,
        "tools": [{"name": "search", "input_schema": {"type": "object"}}],
        "messages": user(r#"find [[mock:reasoning hmm]] [[mock:tool search {"q":"rust","n":3}]]"#)});
    let events = sse(&gw, &body).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_tool(&events).1, json!({"q": "rust", "n": 3}));
    assert!(
        events
            .iter()
            .any(|e| e.data["delta"]["type"] == "signature_delta")
    );
    assert_eq!(stop_reason(&events), "tool_use");

    // A throttling exception mid-stream is Anthropic's error event, typed.
    let events = sse(&gw, &request(&model, "go [[mock:stream_error]]", true)).await;
    assert_grammar(&events, true);
    let error = events.last().unwrap();
    assert_eq!(error.data["error"]["type"], "rate_limit_error");

    // Claude's tokens are counted by Bedrock's CountTokens, answered in Anthropic's shape.
    let count = count_tokens(
        gw.base_url(),
        &json!({"model": model, "system": "be brief", "messages": user("one two three four")}),
    )
    .await;
    assert_eq!(count, 7, "the mock counts words plus one");
    let call = last(&mock, "count-tokens");
    assert!(
        call.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256")
    );
}

#[tokio::test]
async fn errors_bearer_keys_and_bad_signatures() {
    let (mock, gw) = start().await;
    for (model, status, kind) in [
        (NOVA, 429, "rate_limit_error"),
        (NOVA, 400, "invalid_request_error"),
        (NOVA, 503, "overloaded_error"),
        (CLAUDE_ALIAS, 429, "rate_limit_error"),
        (CLAUDE_ALIAS, 404, "not_found_error"),
    ] {
        let res = post_messages(
            gw.base_url(),
            &request(
                model,
                &format!("x [[mock:error {status} retry_after=7]]"),
                false,
            ),
        )
        .await;
        assert_eq!(res.status(), status, "{model}");
        assert_eq!(res.headers()["retry-after"], "7");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["type"], "error", "{model}: {v}");
        assert_eq!(v["error"]["type"], kind, "{model}");
        assert_eq!(v["error"]["message"], format!("mock error {status}"));
    }

    let events = sse(&gw, &request(NOVA, "go [[mock:stream_error]]", true)).await;
    assert_grammar(&events, true);
    assert_eq!(
        events.last().unwrap().data["error"]["type"],
        "rate_limit_error"
    );
    let events = sse(&gw, &request(NOVA, "go on [[mock:cut]]", true)).await;
    assert_grammar(&events, true);
    let events = sse(&gw, &request(NOVA, "go on [[mock:eof after_finish]]", true)).await;
    assert_grammar(&events, true);
    let events = sse(&gw, &request(NOVA, "[[mock:finish refusal]]", true)).await;
    assert_grammar(&events, false);
    assert_eq!(stop_reason(&events), "refusal");

    // Without AWS credentials the key's value is a Bedrock API key.
    let v = json_answer(&gw, &request(LLAMA, "hello llama", false)).await;
    assert_eq!(v["content"][0]["text"], "hello llama");
    assert_eq!(
        last(&mock, "converse").header("authorization"),
        Some("Bearer brk-mock-api-key")
    );

    // A signature made with the wrong secret is refused by the mock's recomputation.
    let res = post_messages(gw.base_url(), &request(MISTRAL, "hi", false)).await;
    assert_eq!(res.status(), 403);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature we calculated does not match"),
        "{v}"
    );

    // Converse takes image bytes only, which the gateway fetches (tests/media.rs); a URL it
    // refuses to fetch fails before any call, naming the field.
    let before = mock.requests().len();
    let body = json!({"model": NOVA, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/a.png"}}]}]});
    let res = post_messages(gw.base_url(), &body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages.0.content.0.source:"),
        "{v}"
    );
    assert_eq!(mock.requests().len(), before);

    let count = count_tokens(
        gw.base_url(),
        &json!({"model": NOVA, "messages": user("one two three")}),
    )
    .await;
    assert!(count >= 3, "{count}");
}
