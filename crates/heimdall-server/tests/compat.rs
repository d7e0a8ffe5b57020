//! The OpenAI-compatible family (one implementation, a table of presets), custom providers
//! named at run time, and Azure OpenAI / Claude on Azure AI Foundry, end to end against the mock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer, RecordedRequest};
use serde_json::{Value, json};

const KEY: &str = "compat-key";

/// (preset, path the mock must see, sends `max_tokens` instead of `max_completion_tokens`,
/// asks for stream usage)
const PRESETS: &[(&str, &str, bool, bool)] = &[
    ("openai", "/v1/chat/completions", false, true),
    ("groq", "/v1/chat/completions", false, true),
    ("mistral", "/v1/chat/completions", true, false),
    ("openrouter", "/v1/chat/completions", true, true),
    ("xai", "/v1/chat/completions", true, true),
    ("deepseek", "/v1/chat/completions", true, true),
    ("cerebras", "/v1/chat/completions", false, true),
    ("fireworks", "/v1/chat/completions", true, true),
    ("together", "/v1/chat/completions", true, true),
    // Perplexity has no /v1 prefix: its base URL here ends in /v1 to reach the mock's route.
    ("perplexity", "/v1/chat/completions", true, false),
    ("vllm", "/v1/chat/completions", true, true),
    ("sgl", "/v1/chat/completions", true, true),
];

async fn gateway(mock: &MockServer, providers: Value) -> GatewayProcess {
    let _ = mock;
    GatewayProcess::start(bin(), Some(&json!({ "providers": providers })), &[], &[])
        .await
        .unwrap()
}

fn last_post(mock: &MockServer) -> RecordedRequest {
    mock.requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .expect("a request reached the mock")
}

#[tokio::test]
async fn every_preset_answers_through_the_mock_with_its_quirks() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let mut providers = serde_json::Map::new();
    for (name, _, _, _) in PRESETS {
        let base = if *name == "perplexity" {
            format!("{}/v1", mock.base_url())
        } else {
            mock.base_url()
        };
        providers.insert(
            (*name).to_owned(),
            json!({"keys": [{"name": name, "value": KEY, "models": ["*"]}],
                   "network_config": {"base_url": base}}),
        );
    }
    let gw = gateway(&mock, Value::Object(providers)).await;
    for (name, path, legacy, stream_usage) in PRESETS {
        let model = format!("{name}/some-model-1");
        let res = post_messages(gw.base_url(), &request(&model, "hello there", false)).await;
        assert_eq!(res.status(), 200, "{name}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["content"][0]["text"], "hello there", "{name}");
        assert_eq!(v["model"], model.as_str());
        let seen = last_post(&mock);
        assert_eq!(seen.path, *path, "{name}");
        assert_eq!(
            seen.header("authorization"),
            Some(&*format!("Bearer {KEY}"))
        );
        assert_eq!(seen.body["model"], "some-model-1");
        assert_eq!(seen.body.get("max_tokens").is_some(), *legacy, "{name}");
        assert_eq!(
            seen.body.get("max_completion_tokens").is_some(),
            !legacy,
            "{name}"
        );

        let res = post_messages(gw.base_url(), &request(&model, "stream me", true)).await;
        let events = parse_sse(&res.text().await.unwrap());
        assert_grammar(&events, false);
        assert_eq!(streamed_text(&events), "stream me", "{name}");
        let seen = last_post(&mock);
        assert_eq!(
            seen.body.get("stream_options").is_some(),
            *stream_usage,
            "{name}"
        );
    }
}

#[tokio::test]
async fn mistral_tool_ids_are_nine_alphanumerics_and_still_pair() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(
        &mock,
        json!({"mistral": {"keys": [{"value": KEY}], "network_config": {"base_url": mock.base_url()}}}),
    )
    .await;
    let body = json!({
        "model": "mistral/mistral-large-latest", "max_tokens": 64,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                                               "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                                          "content": "sunny"}]}
        ]
    });
    let res = post_messages(gw.base_url(), &body).await;
    assert_eq!(res.status(), 200);
    let seen = last_post(&mock);
    let messages = seen.body["messages"].as_array().unwrap();
    let call_id = messages[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(call_id.len(), 9);
    assert!(
        call_id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{call_id}"
    );
    assert_eq!(messages[2]["tool_call_id"], call_id);
}

#[tokio::test]
async fn a_custom_provider_is_named_at_run_time_and_limited_to_its_allowed_requests() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(
        &mock,
        json!({"my-llm": {
            "keys": [{"value": KEY}],
            "network_config": {"base_url": mock.base_url()},
            "custom_provider_config": {"base_provider_type": "openai",
                                       "allowed_requests": {"chat_completion": true}}
        }}),
    )
    .await;
    let res = post_messages(gw.base_url(), &request("my-llm/served-model", "hi", false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(last_post(&mock).body["model"], "served-model");
    let res = post_messages(gw.base_url(), &request("my-llm/served-model", "hi", true)).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_requests"),
        "{v}"
    );
}

#[tokio::test]
async fn a_self_hosted_server_needs_no_key() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(
        &mock,
        json!({"vllm": {"keys": [{"value": ""}], "network_config": {"base_url": mock.base_url()}}}),
    )
    .await;
    // The mock refuses requests without a key; the gateway sent none.
    let res = post_messages(gw.base_url(), &request("vllm/qwen", "hi", false)).await;
    assert_eq!(res.status(), 401);
    assert!(last_post(&mock).header("authorization").is_none());
}

#[tokio::test]
async fn azure_deployments_api_versions_and_claude_on_foundry() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(
        &mock,
        json!({"azure": {
            "keys": [{"name": "az", "value": "azure-secret", "azure_key_config": {
                "endpoint": "https://unused.openai.azure.com",
                "deployments": {"gpt-4o": "prod-4o"}}}],
            "network_config": {"base_url": mock.base_url()}
        }}),
    )
    .await;
    let res = post_messages(
        gw.base_url(),
        &request("azure/gpt-4o", "hello azure", false),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "hello azure");
    let seen = last_post(&mock);
    assert_eq!(
        seen.path,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.header("api-key"), Some("azure-secret"));
    assert!(seen.header("authorization").is_none());

    let res = post_messages(
        gw.base_url(),
        &request("azure/gpt-4o", "stream azure", true),
    )
    .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "stream azure");

    // Claude on Foundry: Anthropic bytes passed through at the resource's /anthropic path.
    let res = post_messages(
        gw.base_url(),
        &request("azure/claude-sonnet-4-5", "hello claude", true),
    )
    .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "hello claude");
    let seen = last_post(&mock);
    assert_eq!(seen.path, "/anthropic/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some("azure-secret"));
    assert_eq!(seen.body["model"], "claude-sonnet-4-5");
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
}

#[tokio::test]
async fn azure_v1_api_and_a_missing_endpoint() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(
        &mock,
        json!({"azure": {
            "keys": [{"value": "azure-secret", "azure_key_config": {
                "endpoint": "https://unused", "api_version": "v1",
                "deployments": {"gpt-4o": "prod-4o"}}}],
            "network_config": {"base_url": mock.base_url()}
        }}),
    )
    .await;
    let res = post_messages(gw.base_url(), &request("azure/gpt-4o", "v1 api", false)).await;
    assert_eq!(res.status(), 200);
    let seen = last_post(&mock);
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.body["model"], "prod-4o");

    let err = GatewayProcess::start(
        bin(),
        Some(&json!({"providers": {"azure": {"keys": [{"value": "k"}]}}})),
        &[],
        &[],
    )
    .await
    .err()
    .expect("a key without an endpoint stops start-up");
    assert!(
        format!("{err:#}").contains("providers.azure.keys[0].azure_key_config.endpoint"),
        "{err:#}"
    );
}
