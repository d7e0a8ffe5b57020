//! The `otel` plugin, seen from outside: the real binary configured with it exports one span per
//! request to a collector stand-in (OTLP over http/protobuf), continuing the client's trace and
//! carrying the GenAI attributes. The span's finer points, and gRPC, are the heimdall-otel
//! crate's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use heimdall_otel::testing::{AnyValue, Collector, SpanKind, attribute, resource_attribute};
use serde_json::{Value, json};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn request_span_continues_the_clients_trace() {
    let collector = Collector::http().await.unwrap();
    let url = collector.url().to_owned();
    let h = Harness::with_config(|c| {
        c["plugins"] = json!([{
            "name": "otel",
            "enabled": true,
            "config": {
                "collector_url": url,
                "protocol": "http",
                "service_name": "heimdall-e2e",
                "headers": {"x-collector-token": "t0ken"}
            }
        }]);
    })
    .await;

    let res = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&request(CLAUDE, "hello", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();

    // Exported within the batch processor's delay (1 s).
    let span = collector
        .span_of(&id, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no span for {id}; gateway output:\n{}", h.gateway.output()));
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(span.name, format!("chat {CLAUDE}"));
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);

    let text = |k| match attribute(&span, k) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let int = |k| match attribute(&span, k) {
        Some(AnyValue::IntValue(n)) => *n,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text("gen_ai.operation.name"), "chat");
    assert_eq!(text("gen_ai.provider.name"), "anthropic");
    assert_eq!(text("gen_ai.request.model"), CLAUDE);
    assert_eq!(text("gen_ai.response.model"), CLAUDE);
    let usage = &body["usage"];
    let input = [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ]
    .iter()
    .map(|k| usage[k].as_i64().unwrap_or(0))
    .sum::<i64>();
    assert_eq!(int("gen_ai.usage.input_tokens"), input);
    assert_eq!(
        int("gen_ai.usage.output_tokens"),
        usage["output_tokens"].as_i64().unwrap()
    );
    assert_eq!(int("http.response.status_code"), 200);
    assert_eq!(text("heimdall.request_id"), id);
    assert_eq!(text("heimdall.key_name"), "a");
    assert_eq!(int("heimdall.attempts"), 1);

    let export = &collector.exports()[0];
    assert_eq!(export.headers["x-collector-token"], "t0ken");
    assert_eq!(
        resource_attribute(export, "service.name"),
        Some(&AnyValue::StringValue("heimdall-e2e".to_owned()))
    );
}
