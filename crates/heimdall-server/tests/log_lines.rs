//! One log line per request, whatever became of it: served, refused before routing, or sent
//! to a path that does not exist; each with its status and, on a failure, the cause. Start-up
//! errors are printed once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::time::Duration;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

/// The JSON log records of `gw` whose `fields` have `value` under `name`, waiting for one to
/// appear.
async fn records(gw: &GatewayProcess, name: &str, value: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found: Vec<Value> = gw
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"][name] == value)
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no log line with {name} {value}:\n{}", gw.output());
}

/// The JSON log records of `gw` for the request `id`.
async fn lines_of(gw: &GatewayProcess, id: &str) -> Vec<Value> {
    records(gw, "request_id", id).await
}

async fn send(gw: &GatewayProcess, path: &str, body: &str) -> (u16, String) {
    let res = heimdall_testkit::http_client()
        .post(format!("{}{path}", gw.base_url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let id = res.headers()["request-id"].to_str().unwrap().to_owned();
    (res.status().as_u16(), id)
}

#[tokio::test]
async fn every_request_gets_one_line_with_its_status_and_cause() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = GatewayProcess::start(bin(), Some(&config(&mock.base_url(), |_| {})), &[], &[])
        .await
        .unwrap();

    let served = request("openai/gpt-4o-mini", "hi", false).to_string();
    let (status, id) = send(&gw, "/anthropic/v1/messages", &served).await;
    assert_eq!(status, 200);
    let lines = lines_of(&gw, &id).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = &lines[0]["fields"];
    assert_eq!(f["message"], "request completed");
    assert_eq!(f["status"], 200);
    assert_eq!(f["provider"], "openai");
    assert_eq!(f["model"], "openai/gpt-4o-mini");
    assert!(f["key"].is_string() && f["elapsed_ms"].is_number(), "{f}");

    // Refused before routing: the body is not JSON.
    let (status, id) = send(&gw, "/anthropic/v1/messages", "{not json").await;
    assert_eq!(status, 400);
    let lines = lines_of(&gw, &id).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = &lines[0]["fields"];
    assert_eq!(f["message"], "request failed");
    assert_eq!(f["status"], 400);
    assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");

    // A provider nobody configured: the cause lists the configured ones.
    let unknown = request("opnai/gpt-4o-mini", "hi", false).to_string();
    let (status, id) = send(&gw, "/anthropic/v1/messages", &unknown).await;
    assert_eq!(status, 400);
    let f = &lines_of(&gw, &id).await[0]["fields"];
    let cause = f["error"].as_str().unwrap_or_default();
    assert!(
        cause.contains("did you mean `openai`?") && cause.contains("configured providers:"),
        "{f}"
    );

    // A path that does not exist.
    let (status, id) = send(&gw, "/nowhere", "{}").await;
    assert_eq!(status, 404);
    let lines = lines_of(&gw, &id).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = &lines[0]["fields"];
    assert_eq!(
        (f["status"].as_u64(), f["path"].as_str()),
        (Some(404), Some("/nowhere"))
    );
    assert!(f["error"].is_string(), "{f}");
}

#[tokio::test]
async fn a_start_up_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"providers": {"opnai": {"keys": [{"value": "k"}]}}}).to_string(),
    )
    .unwrap();
    for format in ["pretty", "json"] {
        let out = std::process::Command::new(bin())
            .args(["--app-dir", dir.path().to_str().unwrap(), "--port", "0"])
            .args(["--log-format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{format}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            text.matches("did you mean `openai`?").count(),
            1,
            "{format}:\n{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes off a terminal:\n{text}"
        );
        if format == "json" {
            let line = text
                .lines()
                .find(|l| l.contains("did you mean"))
                .expect("the error line");
            let v: Value = serde_json::from_str(line).expect("a JSON record");
            assert_eq!(v["level"], "ERROR");
        }
    }
}

#[tokio::test]
async fn start_up_lines_list_the_providers_as_a_json_array() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = GatewayProcess::start(bin(), Some(&config(&mock.base_url(), |_| {})), &[], &[])
        .await
        .unwrap();
    let line = &records(&gw, "message", "configuration loaded").await[0];
    let mut providers: Vec<&str> = line["fields"]["providers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {line}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    providers.sort_unstable();
    assert_eq!(providers, ["anthropic", "openai"], "{line}");

    // No config file: the providers the environment's keys enable.
    let gw = GatewayProcess::start(bin(), None, &[("OPENAI_API_KEY", "sk-env")], &[])
        .await
        .unwrap();
    let message = "no config file; providers enabled from the environment";
    let line = &records(&gw, "message", message).await[0];
    // Other providers' keys may be in the test's environment.
    let providers = line["fields"]["providers"].as_array();
    assert!(
        providers.is_some_and(|p| p.contains(&json!("openai"))),
        "{line}"
    );
}
