//! A provider with its own dialect, framing and auth, added by one folder and one registry
//! line (`heimdall-providers/src/providers/dummy`), carries Anthropic requests end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use heimdall_providers::providers::dummy::{netstrings, signature};
use heimdall_testkit::GatewayProcess;
use heimdall_testkit::grammar::{self, Ending};
use serde_json::{Value, json};

const KEY: &str = "dummy-secret-key";

/// The dummy upstream: checks the signature, echoes the prompt, streams netstrings.
async fn start_upstream() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/dummy/generate",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                let key = headers["x-dummy-key"].to_str().unwrap().to_owned();
                let sig = headers["x-dummy-sig"].to_str().unwrap().to_owned();
                if key != KEY || sig != format!("{:016x}", signature(&key, &body)) {
                    return (StatusCode::UNAUTHORIZED, "bad signature".to_owned());
                }
                let req: Value = serde_json::from_slice(&body).unwrap();
                log.lock().unwrap().push(req.clone());
                let prompt = req["prompt"].as_str().unwrap().to_owned();
                if req["stream"] == true {
                    let events = [
                        json!({"text": "you said: "}),
                        json!({"text": prompt}),
                        json!({"call": {"name": "lookup", "args": {"q": prompt}}}),
                        json!({"end": "stop", "tokens": [3, 5]}),
                    ];
                    (StatusCode::OK, netstrings(&events))
                } else {
                    let answer = json!({"text": format!("you said: {prompt}"), "calls": [],
                                        "tokens": [3, 4], "end": "stop"});
                    (StatusCode::OK, answer.to_string())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_dummy_dialect_provider_answers_streaming_and_not() {
    let (url, seen) = start_upstream().await;
    let config = json!({"providers": {"dummy": {
        "keys": [{"name": "d", "value": KEY, "models": ["*"]}],
        "network_config": {"base_url": url}
    }}});
    let gateway = GatewayProcess::start(bin(), Some(&config), &[], &[])
        .await
        .unwrap();

    let res = post_messages(gateway.base_url(), &request("dummy/echo-1", "hello", false)).await;
    assert_eq!(res.status(), 200);
    let msg: Value = res.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], "you said: hello");
    assert_eq!(msg["model"], "dummy/echo-1");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(msg["usage"]["output_tokens"], 4);

    let res = post_messages(gateway.base_url(), &request("dummy/echo-1", "again", true)).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let events = grammar::assert_stream(&text, Ending::MessageStop);
    assert_eq!(streamed_text(&events), "you said: again");
    let tool = events
        .iter()
        .find(|e| e.data["content_block"]["type"] == "tool_use")
        .expect("tool block");
    assert_eq!(tool.data["content_block"]["name"], "lookup");
    let last_delta = events.iter().rfind(|e| e.name == "message_delta").unwrap();
    assert_eq!(last_delta.data["delta"]["stop_reason"], "tool_use");
    assert_eq!(last_delta.data["usage"]["output_tokens"], 5);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["model"], "echo-1");
    assert_eq!(seen[1]["stream"], true);
}
