//! Anthropic clients in front of Google: the Gemini API (`gemini/…`), Gemini on Vertex AI
//! (`vertex/gemini-…`) and Claude on Vertex AI (`vertex/claude-…`), through the binary and the
//! mock. Vertex authenticates with the test service account, whose tokens the mock grants.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use heimdall_testkit::fixtures::SERVICE_ACCOUNT_JSON;
use serde_json::{Value, json};

const GEMINI_KEY: &str = "mock-gemini-key";
const FLASH: &str = "gemini/gemini-2.5-flash";
const VERTEX_GEMINI: &str = "vertex/gemini-2.5-pro";
const VERTEX_CLAUDE: &str = "vertex/claude-sonnet-4-5@20250929";

/// Gemini and Vertex (one service-account key, project `proj`, region `global`) at the mock.
async fn harness() -> Harness {
    Harness::with_config(|c| {
        let mock = c["providers"]["openai"]["network_config"]["base_url"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut account: Value = serde_json::from_str(SERVICE_ACCOUNT_JSON).unwrap();
        account["token_uri"] = json!(format!("{mock}/token"));
        c["providers"]["gemini"] = json!({
            "keys": [{"name": "g", "value": GEMINI_KEY, "models": ["*"], "weight": 1}],
            "network_config": {"base_url": mock}
        });
        c["providers"]["vertex"] = json!({
            "keys": [{"name": "v", "value": "", "models": ["*"], "weight": 1,
                      "vertex_key_config": {"project_id": "proj", "region": "global",
                                            "auth_credentials": account.to_string()}}],
            "network_config": {"base_url": mock}
        });
    })
    .await
}

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([
        {"name": "get_weather", "description": "Weather now", "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false}},
        {"name": "now", "input_schema": {"type": "object"}}
    ]);
    body
}

/// The text of a non-streamed answer's blocks of `kind`.
fn blocks<'a>(msg: &'a Value, kind: &str) -> Vec<&'a Value> {
    msg["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

async fn json_answer(h: &Harness, body: &Value) -> Value {
    let res = h.messages(body).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn stream_events(h: &Harness, body: &Value) -> Vec<Event> {
    let res = h.messages(body).await;
    assert_eq!(res.status(), 200);
    parse_sse(&res.text().await.unwrap())
}

/// Rebuilds the tool calls of a stream: (id, name, input parsed from its deltas).
fn streamed_calls(events: &[Event]) -> Vec<(String, String, Value)> {
    let mut calls = Vec::new();
    let mut args = String::new();
    for e in events {
        match e.name.as_str() {
            "content_block_start" if e.data["content_block"]["type"] == "tool_use" => {
                let b = &e.data["content_block"];
                calls.push((
                    b["id"].as_str().unwrap().to_owned(),
                    b["name"].as_str().unwrap().to_owned(),
                    Value::Null,
                ));
                args.clear();
            }
            "content_block_delta" if e.data["delta"]["type"] == "input_json_delta" => {
                args.push_str(e.data["delta"]["partial_json"].as_str().unwrap());
            }
            "content_block_stop" if !args.is_empty() => {
                calls.last_mut().unwrap().2 = serde_json::from_str(&args).unwrap();
                args.clear();
            }
            _ => {}
        }
    }
    calls
}

#[tokio::test]
async fn gemini_text_non_streamed_and_streamed() {
    let h = harness().await;
    let body = json!({"model": FLASH, "max_tokens": 50, "temperature": 0.3, "system": "be brief",
                      "stop_sequences": ["END"], "messages": user("hello from anthropic")});
    let msg = json_answer(&h, &body).await;
    assert_eq!(msg["model"], FLASH);
    assert_eq!(
        msg["content"],
        json!([{"type": "text", "text": "hello from anthropic"}])
    );
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let r = &h.mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-api-key"), None);
    assert_eq!(
        r.body["systemInstruction"],
        json!({"parts": [{"text": "be brief"}]})
    );
    assert_eq!(
        r.body["generationConfig"],
        json!({"maxOutputTokens": 50, "temperature": 0.3, "stopSequences": ["END"]})
    );

    let events = stream_events(&h, &request(FLASH, "alpha beta gamma delta", true)).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "alpha beta gamma delta");
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "end_turn");
    assert!(delta.data["usage"]["output_tokens"].as_u64().unwrap() >= 4);
    assert_eq!(
        h.mock.requests()[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

#[tokio::test]
async fn gemini_tool_use_and_round_trip_with_the_thought_signature() {
    let h = harness().await;
    let text = r#"weather? [[mock:reasoning Paris first]] [[mock:tool get_weather {"city":"Paris","days":[1,2]}]] [[mock:tool now]]"#;
    let mut body = with_tools(request(FLASH, text, false));
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    body["tool_choice"] = json!({"type": "any"});
    let msg = json_answer(&h, &body).await;
    assert_eq!(msg["stop_reason"], "tool_use");
    let thinking = blocks(&msg, "thinking");
    assert_eq!(thinking[0]["thinking"], "Paris first");
    let signature = thinking[0]["signature"].as_str().unwrap();
    assert!(signature.starts_with("gemini:"), "{signature}");
    let calls = blocks(&msg, "tool_use");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["input"], json!({"city": "Paris", "days": [1, 2]}));
    assert_eq!(calls[1]["input"], json!({}));
    let id = calls[0]["id"].as_str().unwrap();
    assert!(id.starts_with("toolu_"), "{id}");
    // What Gemini was asked: reduced schema, ANY, thinking budget with thoughts shown.
    let sent = &h.mock.requests()[0].body;
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    );
    assert!(
        sent["tools"][0]["functionDeclarations"][1]
            .get("parameters")
            .is_none()
    );
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );

    // The client sends the turn back with results; the signature returns on the call it came
    // with, and each result is paired with its call by name and id.
    let mut next = with_tools(json!({"model": FLASH, "max_tokens": 64, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": msg["content"]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "15 degrees"},
            {"type": "tool_result", "tool_use_id": calls[1]["id"], "content": "noon", "is_error": true}]}
    ]}));
    next["stream"] = json!(true);
    let events = stream_events(&h, &next).await;
    assert_grammar(&events, false);
    assert_eq!(
        streamed_text(&events),
        "tool said: 15 degrees | [tool error] noon"
    );
    let sent = &h.mock.requests()[1].body;
    let model_turn = &sent["contents"][1];
    assert_eq!(model_turn["role"], "model");
    assert_eq!(
        model_turn["parts"][0],
        json!({"text": "Paris first", "thought": true})
    );
    assert_eq!(
        model_turn["parts"][1]["thoughtSignature"],
        signature.strip_prefix("gemini:").unwrap()
    );
    assert_eq!(
        model_turn["parts"][1]["functionCall"]["name"],
        "get_weather"
    );
    let results = &sent["contents"][2]["parts"];
    assert_eq!(results[0]["functionResponse"]["name"], "get_weather");
    assert_eq!(
        results[0]["functionResponse"]["response"],
        json!({"result": "15 degrees"})
    );
    assert_eq!(
        results[0]["functionResponse"]["id"],
        model_turn["parts"][1]["functionCall"]["id"]
    );
    assert_eq!(
        results[1]["functionResponse"]["response"],
        json!({"error": "noon"})
    );
}

#[tokio::test]
async fn gemini_streamed_tools_and_thinking_obey_the_grammar() {
    let h = harness().await;
    let text = r#"go [[mock:reasoning Let me think]] [[mock:tool get_weather {"city":"Paris"}]] [[mock:tool now {"tz":"UTC"}]]"#;
    let events = stream_events(&h, &with_tools(request(FLASH, text, true))).await;
    assert_grammar(&events, false);
    let thinking: String = events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "thinking_delta")
        .map(|e| e.data["delta"]["thinking"].as_str().unwrap())
        .collect();
    assert_eq!(thinking, "Let me think");
    let sig = events
        .iter()
        .find(|e| e.data["delta"]["type"] == "signature_delta")
        .unwrap();
    assert!(
        sig.data["delta"]["signature"]
            .as_str()
            .unwrap()
            .starts_with("gemini:")
    );
    let calls = streamed_calls(&events);
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].1.as_str(), &calls[0].2),
        ("get_weather", &json!({"city": "Paris"}))
    );
    assert_eq!(
        (calls[1].1.as_str(), &calls[1].2),
        ("now", &json!({"tz": "UTC"}))
    );
    assert_ne!(calls[0].0, calls[1].0);
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn gemini_images_inline_and_refused_urls_fail_before_any_call() {
    let h = harness().await;
    let body = json!({"model": FLASH, "max_tokens": 20, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]});
    let msg = json_answer(&h, &body).await;
    assert_eq!(msg["content"][0]["text"], "what is it [image: image/png]");
    assert_eq!(
        h.mock.requests()[0].body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    // The gateway fetches image URLs for Gemini (tests/media.rs); one it refuses to fetch
    // fails the request before any upstream call.
    let mut url = body.clone();
    url["messages"][0]["content"][1]["source"] =
        json!({"type": "url", "url": "http://169.254.169.254/a.png"});
    let res = h.messages(&url).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages.0.content.1.source:"),
        "{err}"
    );
    assert_eq!(
        h.mock.requests().len(),
        1,
        "refused before any upstream call"
    );
}

#[tokio::test]
async fn vertex_gemini_gets_image_urls_as_inline_bytes() {
    let h = Harness::with_config(|c| {
        let mock = c["providers"]["openai"]["network_config"]["base_url"].clone();
        let mut account: Value = serde_json::from_str(SERVICE_ACCOUNT_JSON).unwrap();
        account["token_uri"] = json!(format!("{}/token", mock.as_str().unwrap()));
        c["providers"]["vertex"] = json!({
            "keys": [{"value": "", "models": ["*"],
                      "vertex_key_config": {"project_id": "proj", "region": "global",
                                            "auth_credentials": account.to_string()}}],
            "network_config": {"base_url": mock}
        });
        // The mock serves the image from 127.0.0.1.
        c["media_fetch"] = json!({"allowed_private_hosts": ["127.0.0.1"]});
    })
    .await;
    let url = format!("{}/media/image.png", h.mock.base_url());
    let body = json!({"model": VERTEX_GEMINI, "max_tokens": 20, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it"},
        {"type": "image", "source": {"type": "url", "url": url}}]}]});
    json_answer(&h, &body).await;
    let sent = h
        .mock
        .requests()
        .into_iter()
        .rfind(|r| r.path.contains("/publishers/google/"))
        .unwrap();
    let part = &sent.body["contents"][0]["parts"][1]["inlineData"];
    assert_eq!(part["mimeType"], "image/png");
    assert!(
        part["data"].as_str().unwrap().starts_with("iVBORw0KGgo"),
        "{part}"
    );
}

#[tokio::test]
async fn gemini_errors_become_anthropic_errors() {
    let h = harness().await;
    for (directive, status, kind) in [
        ("[[mock:error 429 retry_after=7]]", 429, "rate_limit_error"),
        ("[[mock:error 503]]", 503, "overloaded_error"),
        ("[[mock:error 500]]", 500, "api_error"),
        ("[[mock:error 403]]", 403, "permission_error"),
    ] {
        for stream in [false, true] {
            let res = h.messages(&request(FLASH, directive, stream)).await;
            assert_eq!(res.status(), status, "{directive}");
            if status == 429 {
                assert_eq!(res.headers()["retry-after"], "7");
            }
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["type"], "error");
            assert_eq!(err["error"]["type"], kind, "{directive}");
            assert_eq!(err["error"]["message"], format!("mock error {status}"));
        }
    }
    // A bad key: Gemini answers 400 INVALID_ARGUMENT, as the client sees it.
    let bad = Harness::with_config(|c| {
        let mock = c["providers"]["openai"]["network_config"]["base_url"].clone();
        c["providers"]["gemini"] = json!({"keys": [{"value": "bad-key", "models": ["*"]}],
                                          "network_config": {"base_url": mock}});
    })
    .await;
    let res = bad.messages(&request(FLASH, "hi", false)).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "API key not valid. Please pass a valid API key."
    );

    // Inside a stream: an error event last; a cut stream is never a normal stop.
    let events = stream_events(
        &h,
        &request(FLASH, "alpha beta [[mock:stream_error]]", true),
    )
    .await;
    assert_grammar(&events, true);
    assert_eq!(events.last().unwrap().data["error"]["type"], "api_error");
    let events = stream_events(
        &h,
        &request(FLASH, "alpha beta [[mock:eof after_content]]", true),
    )
    .await;
    assert_grammar(&events, true);
    let events = stream_events(&h, &request(FLASH, "x [[mock:finish MAX_TOKENS]]", true)).await;
    assert_grammar(&events, false);
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(delta.data["delta"]["stop_reason"], "max_tokens");
    let msg = json_answer(&h, &request(FLASH, "x [[mock:finish SAFETY]]", false)).await;
    assert_eq!(msg["stop_reason"], "refusal");
}

#[tokio::test]
async fn vertex_gemini_and_claude_share_one_cached_token() {
    let h = harness().await;
    // Concurrent first requests wait for one token fetch.
    let bodies = [
        request(VERTEX_GEMINI, "one", false),
        request(VERTEX_CLAUDE, "two", false),
        request(VERTEX_GEMINI, "three", true),
    ];
    let (a, b, c) = tokio::join!(
        h.messages(&bodies[0]),
        h.messages(&bodies[1]),
        h.messages(&bodies[2]),
    );
    for res in [a, b, c] {
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
    let events = stream_events(&h, &request(VERTEX_CLAUDE, "four five", true)).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "four five");
    let requests = h.mock.requests();
    let tokens: Vec<_> = requests.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "{requests:?}");
    let calls: Vec<_> = requests.iter().filter(|r| r.path != "/token").collect();
    assert_eq!(calls.len(), 4);
    let bearer = calls[0].header("authorization").unwrap();
    assert!(bearer.starts_with("Bearer ya29.mock-"), "{bearer}");
    assert!(
        calls
            .iter()
            .all(|r| r.header("authorization") == Some(bearer))
    );
    let base = "/v1/projects/proj/locations/global/publishers";
    let paths: Vec<&str> = calls.iter().map(|r| r.path.as_str()).collect();
    assert!(paths.contains(&&*format!(
        "{base}/google/models/gemini-2.5-pro:generateContent"
    )));
    assert!(paths.contains(&&*format!(
        "{base}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )));
    assert!(paths.contains(&&*format!(
        "{base}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )));
    assert!(paths.contains(&&*format!(
        "{base}/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
    )));
    let claude = calls
        .iter()
        .find(|r| r.path.ends_with(":rawPredict"))
        .unwrap();
    assert!(claude.body.get("model").is_none());
    assert_eq!(claude.body["anthropic_version"], "vertex-2023-10-16");
}

#[tokio::test]
async fn vertex_claude_passes_through_answers_and_errors() {
    let h = harness().await;
    let msg = json_answer(&h, &request(VERTEX_CLAUDE, "hello claude", false)).await;
    // Claude's own answer, untouched (the mock's ids, the model as Vertex echoes it).
    assert!(msg["id"].as_str().unwrap().starts_with("msg_mock"));
    assert_eq!(msg["content"][0]["text"], "hello claude");
    let text = r#"[[mock:tool get_weather {"city":"Oslo"}]]"#;
    let events = stream_events(&h, &with_tools(request(VERTEX_CLAUDE, text, true))).await;
    assert_grammar(&events, false);
    assert_eq!(streamed_calls(&events)[0].2, json!({"city": "Oslo"}));

    let res = h
        .messages(&request(
            VERTEX_CLAUDE,
            "[[mock:error 429 retry_after=3]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "3");
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["type"], "rate_limit_error");

    // Token counting is Claude's own, at count-tokens:rawPredict.
    let body = json!({"model": VERTEX_CLAUDE, "system": "a b", "messages": user("one two three")});
    assert_eq!(count_tokens(h.gateway.base_url(), &body).await, 6);
    let counted = h.mock.requests().into_iter().last().unwrap();
    assert_eq!(
        counted.path,
        "/v1/projects/proj/locations/global/publishers/anthropic/models/count-tokens:rawPredict"
    );
    assert_eq!(counted.body["model"], "claude-sonnet-4-5@20250929");
}

#[tokio::test]
async fn vertex_gemini_tool_round_trip_without_call_ids() {
    let h = harness().await;
    let text = r#"[[mock:tool get_weather {"city":"Rome"}]]"#;
    let msg = json_answer(&h, &with_tools(request(VERTEX_GEMINI, text, false))).await;
    let call = blocks(&msg, "tool_use")[0].clone();
    assert_eq!(call["input"], json!({"city": "Rome"}));
    let next = with_tools(
        json!({"model": VERTEX_GEMINI, "max_tokens": 64, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": msg["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}]}
        ]}),
    );
    // The mock, like Vertex, refuses ids on function calls and responses.
    let msg = json_answer(&h, &next).await;
    assert_eq!(msg["content"][0]["text"], "tool said: sunny");
}

#[tokio::test]
async fn gemini_counts_tokens_with_count_tokens_on_both_hosts() {
    let h = harness().await;
    let body = |model: &str| {
        json!({"model": model, "system": "be brief",
               "messages": user("count these few words please")})
    };
    // The mock counts words: five in the message, two in the system instruction.
    assert_eq!(count_tokens(h.gateway.base_url(), &body(FLASH)).await, 7);
    let seen = h.mock.requests();
    let call = seen.last().unwrap();
    assert_eq!(call.path, "/v1beta/models/gemini-2.5-flash:countTokens");
    assert_eq!(call.header("x-goog-api-key"), Some(GEMINI_KEY));
    let generate = &call.body["generateContentRequest"];
    assert_eq!(generate["model"], "models/gemini-2.5-flash");
    assert_eq!(
        generate["systemInstruction"]["parts"][0]["text"],
        "be brief"
    );

    assert_eq!(
        count_tokens(h.gateway.base_url(), &body(VERTEX_GEMINI)).await,
        7
    );
    let seen = h.mock.requests();
    let call = seen.last().unwrap();
    assert!(
        call.path
            .ends_with("/publishers/google/models/gemini-2.5-pro:countTokens"),
        "{}",
        call.path
    );
    assert!(call.body["contents"].is_array(), "{}", call.body);
}

#[tokio::test]
async fn google_front_end_errors_reach_claude_clients_in_anthropic_shape() {
    // No credentials: the key's value is the bearer token, and Google's front end refuses it
    // in Google's shape before Claude sees the request.
    let h = Harness::with_config(|c| {
        let mock = c["providers"]["openai"]["network_config"]["base_url"].clone();
        c["providers"]["vertex"] = json!({
            "keys": [{"value": "bad-key", "models": ["*"],
                      "vertex_key_config": {"project_id": "proj", "region": "us-east5"}}],
            "network_config": {"base_url": mock}
        });
    })
    .await;
    let res = h.messages(&request(VERTEX_CLAUDE, "hi", false)).await;
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "authentication_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Request had invalid authentication credentials")
    );
    let r = &h.mock.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer bad-key"));
    assert_eq!(
        r.path,
        "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    );
}

#[tokio::test]
async fn gemini_models_are_listed_with_their_prefix() {
    let h = harness().await;
    let list = h.get_json("/anthropic/v1/models?limit=1000").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gemini/gemini-2.5-flash"), "{ids:?}");
    assert!(ids.contains(&"gemini/gemini-2.5-pro"), "{ids:?}");
    // Embedding models cannot answer messages.
    assert!(!ids.contains(&"gemini/text-embedding-004"), "{ids:?}");
    let listed = h
        .mock
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/v1beta/models"))
        .unwrap();
    assert_eq!(listed.header("x-goog-api-key"), Some(GEMINI_KEY));
}
