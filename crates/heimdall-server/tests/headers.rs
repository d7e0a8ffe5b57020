//! Client headers going upstream: `client.header_filter_config` (by default only
//! `anthropic-version`), `x-bf-eh-*`, the headers never forwarded, and `anthropic-beta` cut
//! down per Claude platform (Anthropic, Vertex, Bedrock, Foundry) and never sent to another
//! dialect, with `network_config.beta_header_overrides`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use heimdall_testkit::RecordedRequest;
use serde_json::{Value, json};

/// What Claude Code sends on every request.
const BETAS: &str =
    "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";

/// Every Claude platform and OpenAI, all pointed at the mock.
async fn all_platforms(tweak: impl FnOnce(&mut Value)) -> Harness {
    Harness::with_config(|c| {
        let mock = c["providers"]["openai"]["network_config"]["base_url"].clone();
        c["providers"]["vertex"] = json!({
            "keys": [{"name": "v", "value": "vertex-token", "models": ["*"],
                      "vertex_key_config": {"project_id": "proj", "region": "us-east5"}}],
            "network_config": {"base_url": mock}
        });
        c["providers"]["bedrock"] = json!({
            "keys": [{"name": "b", "value": "brk-mock-api-key", "models": ["*"],
                      "bedrock_key_config": {"region": "us-west-2"}}],
            "network_config": {"base_url": mock}
        });
        c["providers"]["azure"] = json!({
            "keys": [{"name": "az", "value": "azure-secret", "azure_key_config": {
                "endpoint": "https://unused.openai.azure.com"}}],
            "network_config": {"base_url": mock}
        });
        tweak(c);
    })
    .await
}

/// Sends `model` a request with Claude Code's betas and a few other headers; returns what
/// reached the mock.
async fn send(h: &Harness, model: &str) -> RecordedRequest {
    let before = h.mock.requests().len();
    let res = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETAS)
        .header("x-trace", "trace-1")
        .header("x-bf-eh-x-team", "blue")
        .header("x-bf-eh-authorization", "Bearer stolen")
        .json(&request(model, "hi", false))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, 200, "{model}: {}", res.text().await.unwrap());
    let seen = h.mock.requests();
    assert_eq!(seen.len(), before + 1, "{model}");
    seen.into_iter().last().unwrap()
}

#[tokio::test]
async fn by_default_only_the_version_and_explicit_extras_go_upstream() {
    let h = Harness::start().await;
    let r = send(&h, CLAUDE).await;
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("anthropic-beta"), None);
    assert_eq!(r.header("x-trace"), None);
    assert_eq!(r.header("x-team"), Some("blue"));
    assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert!(r.headers.iter().all(|(_, v)| !v.contains("stolen")));

    // Extras go to every dialect; anthropic-* ones never leave for another.
    let r = send(&h, GPT).await;
    assert_eq!(r.header("x-team"), Some("blue"));
    assert_eq!(r.header("anthropic-version"), None);
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
}

#[tokio::test]
async fn allowlisted_betas_reach_each_claude_platform_as_it_takes_them() {
    let h = all_platforms(|c| {
        c["client"] = json!({"header_filter_config": {
            "allowlist": ["anthropic-beta", "X-Trace", "x-api-key"],
            "denylist": ["x-team"]
        }});
    })
    .await;

    let r = send(&h, CLAUDE).await;
    assert_eq!(
        r.header("anthropic-beta"),
        Some(BETAS),
        "Anthropic takes all"
    );
    assert_eq!(r.header("x-trace"), Some("trace-1"));
    assert_eq!(r.header("x-team"), None, "denied");
    assert_eq!(
        r.header("x-api-key"),
        Some(ANTHROPIC_KEY),
        "credentials are never the client's"
    );

    let cloud = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
    let r = send(&h, "vertex/claude-sonnet-4-5@20250929").await;
    assert!(r.path.ends_with(":rawPredict"), "{}", r.path);
    assert_eq!(r.header("anthropic-beta"), Some(cloud));
    assert_eq!(r.header("x-trace"), Some("trace-1"));

    let r = send(&h, "azure/claude-sonnet-4-5").await;
    assert_eq!(r.path, "/anthropic/v1/messages");
    assert_eq!(r.header("anthropic-beta"), Some(cloud));

    let r = send(&h, "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0").await;
    assert!(r.path.ends_with("/invoke"), "{}", r.path);
    assert_eq!(
        r.header("anthropic-beta"),
        None,
        "Bedrock takes betas in the body"
    );
    assert_eq!(
        r.body["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "fine-grained-tool-streaming-2025-05-14"
        ])
    );

    for model in [GPT, "vertex/gemini-2.5-flash"] {
        let r = send(&h, model).await;
        assert_eq!(r.header("anthropic-beta"), None, "{model}");
        assert_eq!(r.header("x-trace"), Some("trace-1"), "{model}");
    }
}

#[tokio::test]
async fn beta_header_overrides_correct_a_platform_table() {
    let h = all_platforms(|c| {
        c["client"] = json!({"header_filter_config": {"allowlist": ["anthropic-beta"]}});
        c["providers"]["vertex"]["network_config"]["beta_header_overrides"] =
            json!({"claude-code-": true, "fine-grained-": false});
        c["providers"]["anthropic"]["network_config"]["beta_header_overrides"] =
            json!({"claude-code-": false});
    })
    .await;
    let r = send(&h, "vertex/claude-sonnet-4-5@20250929").await;
    assert_eq!(
        r.header("anthropic-beta"),
        Some("claude-code-20250219,interleaved-thinking-2025-05-14")
    );
    let r = send(&h, CLAUDE).await;
    assert_eq!(
        r.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14")
    );
}

#[tokio::test]
async fn an_oversized_forwarded_header_is_refused_in_anthropic_shape() {
    let h = Harness::start().await;
    let res = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("x-bf-eh-x-big", "v".repeat(9000))
        .json(&request(CLAUDE, "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-bf-eh-x-big"),
        "{v}"
    );
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn a_header_name_that_is_not_one_is_a_config_error() {
    let mock = heimdall_testkit::MockServer::start(heimdall_testkit::MockOptions::default())
        .await
        .unwrap();
    let cfg = config(&mock.base_url(), |c| {
        c["client"] = json!({"header_filter_config": {"allowlist": ["ok", "not a header"]}});
    });
    let err = heimdall_testkit::GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .err()
        .expect("the gateway refuses the file");
    assert!(
        format!("{err:#}").contains("client.header_filter_config.allowlist[1]"),
        "{err:#}"
    );
}
