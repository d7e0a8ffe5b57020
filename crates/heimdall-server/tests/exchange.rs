//! The exchange's bounds: model listings that survive a stalled provider and are cached, and
//! a request timeout that bounds the whole non-streaming exchange.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An upstream that accepts connections, reads, and never answers.
async fn stalled_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            held.push(sock);
        }
    });
    url
}

/// An upstream that sends a 200 head at once and its JSON body only after `body_delay`.
async fn slow_body_upstream(body_delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let body = json!({"id": "chatcmpl-1", "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"},
                                 "finish_reason": "stop"}]})
                .to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                tokio::time::sleep(body_delay).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_stalled_provider_does_not_hang_the_model_listing_and_lists_are_cached() {
    let stalled = stalled_upstream().await;
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"] =
            json!({"base_url": stalled, "default_request_timeout_in_seconds": 1});
        c["providers"]["openai"]["keys"][0]["models"] = json!([]);
    })
    .await;
    let started = Instant::now();
    let list = h.get_json("/anthropic/v1/models?limit=1000").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "listing took {took:?}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().any(|id| id.starts_with("claude-")), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("openai/")), "{ids:?}");

    // Within the cache time the providers are not asked again.
    let asked = |h: &Harness| {
        h.mock
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v1/models"))
            .count()
    };
    let before = asked(&h);
    h.get_json("/anthropic/v1/models").await;
    h.get_json(&format!("/anthropic/v1/models/{CLAUDE}")).await;
    assert_eq!(asked(&h), before);
}

#[tokio::test]
async fn the_request_timeout_bounds_the_whole_non_streaming_exchange() {
    let slow = slow_body_upstream(Duration::from_millis(1600)).await;
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"] =
            json!({"base_url": slow, "default_request_timeout_in_seconds": 1});
    })
    .await;
    let started = Instant::now();
    let res = h.messages(&request(GPT, "hi", false)).await;
    let took = started.elapsed();
    assert_eq!(res.status(), 504, "{:?}", res.text().await);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test]
async fn x_bf_api_key_pins_a_configured_key_by_name() {
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["keys"] = serde_json::json!([
            {"name": "ant-a", "value": "mock-key-a", "models": ["*"], "weight": 1000},
            {"name": "ant-b", "value": "mock-key-b", "models": ["*"], "weight": 0.001}
        ]);
    })
    .await;
    let send = |name: &'static str| {
        h.http
            .post(h.url("/anthropic/v1/messages"))
            .header("x-bf-api-key", name)
            .json(&request(CLAUDE, "hi", false))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(send("ant-b").await.unwrap().status(), 200);
    }
    let seen = h.mock.requests();
    assert!(
        seen.iter()
            .all(|r| r.header("x-api-key") == Some("mock-key-b")),
        "the pinned key, whatever the weights say"
    );
    assert!(
        seen.iter().all(|r| r.header("x-bf-api-key").is_none()),
        "the pin is not forwarded"
    );

    let res = send("ant-z").await.unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "x-bf-api-key: provider `anthropic` has no key named `ant-z`"
    );
    assert_eq!(
        h.mock.requests().len(),
        3,
        "a refused pin reaches no upstream"
    );
}
