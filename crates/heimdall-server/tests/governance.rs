//! Governance end to end: virtual keys on the real binary in front of the mock, every refusal
//! in Anthropic's shape, and a budget that holds under concurrent requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{GPT, Harness, OPENAI_KEY};
use serde_json::{Value, json};

/// A price that keeps the arithmetic exact: output at $1 a token, input free.
fn exact_pricing(c: &mut Value) {
    c["pricing"] = json!({"gpt-4o-mini": {"input": 0.0, "output": 1_000_000.0}});
}

fn body(max_tokens: u64) -> Value {
    json!({"model": GPT, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "count my tokens please"}]})
}

async fn send(h: &Harness, headers: &[(&str, &str)], body: &Value) -> (u16, Value, Option<String>) {
    let mut req = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap(), retry_after)
}

/// Asserts an Anthropic error of `kind` and returns its message.
fn error_of(kind: &str, v: &Value) -> String {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_refusal_answers_in_anthropic_shape() {
    let h = Harness::with_config(|c| {
        c["client"] = json!({"enforce_auth_on_inference": true});
        c["providers"]["openai"]["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "o2", "value": "second-openai-key", "models": ["*"]}));
        c["governance"] = json!({
            "virtual_keys": [
                {"id": "ok", "value": "sk-bf-ok", "provider_configs": [
                    {"provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["o2"]}]},
                {"id": "off", "value": "sk-bf-off", "is_active": false},
                {"id": "old", "value": "sk-bf-old", "expires_at": "2020-01-01T00:00:00Z"},
                {"id": "limited", "value": "sk-bf-limited",
                 "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1h"}}
            ]
        });
    })
    .await;
    let b = body(64);
    // No key where one is required.
    let (status, v, _) = send(&h, &[], &b).await;
    assert_eq!(status, 401);
    assert!(error_of("authentication_error", &v).contains("virtual key is required"));
    // An unknown key, in each of the places a key is read from.
    for header in [
        ("x-bf-vk", "sk-bf-nope"),
        ("x-api-key", "sk-bf-nope"),
        ("authorization", "Bearer sk-bf-nope"),
    ] {
        let (status, v, _) = send(&h, &[header], &b).await;
        assert_eq!(status, 401, "{header:?}");
        error_of("authentication_error", &v);
    }
    // Inactive, expired.
    for vk in ["sk-bf-off", "sk-bf-old"] {
        let (status, v, _) = send(&h, &[("x-bf-vk", vk)], &b).await;
        assert_eq!(status, 403, "{vk}");
        error_of("permission_error", &v);
    }
    // A provider and a model the key may not use.
    let claude = json!({"model": "claude-haiku-4-5", "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}]});
    let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-ok")], &claude).await;
    assert_eq!(status, 403);
    assert!(error_of("permission_error", &v).contains("provider `anthropic`"));
    let mut other = body(5);
    other["model"] = json!("openai/gpt-4o");
    let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-ok")], &other).await;
    assert_eq!(status, 403);
    assert!(error_of("permission_error", &v).contains("gpt-4o"));
    // Allowed: served with the one provider key the virtual key may use, presented as the
    // SDK's own API key; the virtual key never goes upstream.
    h.mock.clear();
    let (status, v, _) = send(&h, &[("x-api-key", "sk-bf-ok")], &b).await;
    assert_eq!(status, 200, "{v}");
    let seen = h.mock.requests();
    let auth = seen[0].header("authorization").unwrap_or_default();
    assert_eq!(auth, "Bearer second-openai-key");
    assert!(!auth.contains(OPENAI_KEY));
    assert!(
        seen[0]
            .headers
            .iter()
            .all(|(_, value)| !value.contains("sk-bf-")),
        "the virtual key went upstream"
    );
    // A request limit: two pass, the third waits for the window.
    for _ in 0..2 {
        let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-limited")], &b).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v, retry_after) = send(&h, &[("x-bf-vk", "sk-bf-limited")], &b).await;
    assert_eq!(status, 429);
    assert!(error_of("rate_limit_error", &v).contains("2 requests per 1h"));
    let wait: u64 = retry_after.expect("retry-after").parse().unwrap();
    assert!((3500..=3600).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_budget_holds_under_fifty_concurrent_requests() {
    let h = Harness::with_config(|c| {
        exact_pricing(c);
        c["governance"] = json!({"virtual_keys": [{"id": "free", "value": "sk-bf-free"}]});
    })
    .await;
    // What one request costs: its output tokens, at $1 each.
    let b = body(200);
    let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-free")], &b).await;
    assert_eq!(status, 200, "{v}");
    let cost = v["usage"]["output_tokens"].as_f64().unwrap();
    assert!(cost > 0.0 && cost < 200.0, "{v}");
    drop(h);

    // A budget that affords exactly ten such requests.
    let h = Harness::with_config(|c| {
        exact_pricing(c);
        c["governance"] = json!({"virtual_keys": [{"id": "team", "value": "sk-bf-team",
            "budgets": [{"max_limit": 10.0 * cost, "reset_duration": "1d"}]}]});
    })
    .await;
    let h = std::sync::Arc::new(h);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let h = std::sync::Arc::clone(&h);
            let b = b.clone();
            tokio::spawn(async move { send(&h, &[("x-bf-vk", "sk-bf-team")], &b).await })
        })
        .collect();
    let mut served = 0;
    for t in tasks {
        let (status, v, _) = t.await.unwrap();
        match status {
            200 => served += 1,
            402 => {
                error_of("billing_error", &v);
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!((1..=10).contains(&served), "{served} served");
    // One at a time, the rest of the budget is used to the cent and not beyond.
    loop {
        let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-team")], &b).await;
        if status == 402 {
            assert!(error_of("billing_error", &v).contains("is spent"));
            break;
        }
        assert_eq!(status, 200, "{v}");
        served += 1;
        assert!(served <= 10, "the budget let an eleventh request through");
    }
    assert_eq!(served, 10);
}

#[tokio::test]
async fn a_model_without_a_price_is_served_counted_and_flagged() {
    let h = Harness::with_config(|c| {
        c["governance"] = json!({"virtual_keys": [{"id": "k", "value": "sk-bf-k",
            "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}]}]});
    })
    .await;
    let mut b = body(16);
    b["model"] = json!("openai/house-model-without-a-price");
    for _ in 0..2 {
        let (status, v, _) = send(&h, &[("x-bf-vk", "sk-bf-k")], &b).await;
        assert_eq!(status, 200, "{v}");
    }
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let flagged = metrics
        .lines()
        .find(|l| l.starts_with("heimdall_governance_unpriced_requests_total{provider=\"openai\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(flagged, Some(2.0), "{metrics}");
}
