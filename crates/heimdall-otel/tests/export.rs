//! Records in, spans out: the sink's spans as a collector receives them, over both OTLP
//! transports, with names, kinds, times, trace ids, attributes, status and configured headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heimdall_core::config::{OtelConfig, OtlpProtocol, Secret};
use heimdall_core::{Outcome, RecordSink, RequestRecord};
use heimdall_otel::testing::{
    AnyValue, Collector, SpanKind, SpanStatus, attribute, resource_attribute,
};
use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn record(id: &str) -> RequestRecord {
    RequestRecord {
        // A fixed instant with nanoseconds: the span must carry it exactly.
        started_at: UNIX_EPOCH + Duration::new(1_750_000_000, 123_456_789),
        provider: Some("bedrock".to_owned()),
        model: Some("claude-x".to_owned()),
        served_model: Some("claude-y".to_owned()),
        fallback_index: 1,
        key_name: Some("key-a".to_owned()),
        virtual_key: Some("vk-123".to_owned()),
        traceparent: Some(format!("00-{TRACE_ID}-{PARENT_ID}-01")),
        attempts: 3,
        stream: true,
        usage: Usage {
            input_tokens: 10,
            cache_creation_input_tokens: 5,
            cache_read_input_tokens: 100,
            output_tokens: 42,
        },
        cost: Some(0.0125),
        stop_reason: Some("end_turn".to_owned()),
        outcome: Outcome::Success,
        latency: Duration::from_micros(1_234_567),
        first_byte: Some(Duration::from_millis(300)),
        upstream_wait: Duration::from_secs(1),
        ..RequestRecord::new(id.to_owned(), Endpoint::Messages, "anthropic")
    }
}

fn config(url: &str, protocol: OtlpProtocol) -> OtelConfig {
    OtelConfig {
        collector_url: url.to_owned(),
        protocol,
        service_name: "heimdall-under-test".to_owned(),
        headers: vec![
            ("x-api-key".to_owned(), Secret::new("collector-secret")),
            ("X-Tenant".to_owned(), Secret::new("blue")),
        ],
    }
}

fn nanos(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string(v: Option<&AnyValue>) -> &str {
    match v {
        Some(AnyValue::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn int(v: Option<&AnyValue>) -> i64 {
    match v {
        Some(AnyValue::IntValue(n)) => *n,
        other => panic!("not an int: {other:?}"),
    }
}

/// Three records through a sink exporting to `collector`, then what the collector got.
async fn exports_spans(collector: Collector, protocol: OtlpProtocol) {
    let (sink, guard) = heimdall_otel::start(&config(collector.url(), protocol)).unwrap();
    let ok = Arc::new(record("req_ok"));
    let failed = Arc::new(RequestRecord {
        traceparent: Some("00-not-a-trace-01".to_owned()),
        served_model: None,
        outcome: Outcome::Failed {
            status: 529,
            kind: ErrorType::OverloadedError,
        },
        error_message: Some("every key is overloaded".to_owned()),
        usage: Usage::default(),
        stop_reason: None,
        cost: None,
        ..record("req_failed")
    });
    let count = Arc::new(RequestRecord {
        endpoint: Endpoint::CountTokens,
        traceparent: None,
        ..record("req_count")
    });
    for r in [&ok, &failed, &count] {
        sink.record(r);
    }
    // Shutdown flushes what is queued.
    guard.shutdown().await;

    let exports = collector.exports();
    assert!(!exports.is_empty(), "nothing exported");
    for e in &exports {
        assert_eq!(e.headers["x-api-key"], "collector-secret");
        assert_eq!(e.headers["x-tenant"], "blue");
        assert_eq!(
            string(resource_attribute(e, "service.name")),
            "heimdall-under-test"
        );
    }
    let within = Duration::from_secs(1);

    // Success: a child of the client's span, with the record's times.
    let span = collector.span_of("req_ok", within).await.unwrap();
    assert_eq!(span.name, "chat claude-x");
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_ne!(hex(&span.span_id), PARENT_ID);
    assert_eq!(span.start_time_unix_nano, nanos(ok.started_at));
    assert_eq!(
        span.end_time_unix_nano - span.start_time_unix_nano,
        u64::try_from(ok.latency.as_nanos()).unwrap()
    );
    assert_ne!(
        span.status.as_ref().map_or(0, |s| s.code),
        SpanStatus::Error as i32
    );
    let a = |k| attribute(&span, k);
    assert_eq!(string(a("gen_ai.operation.name")), "chat");
    assert_eq!(string(a("gen_ai.provider.name")), "aws.bedrock");
    assert_eq!(string(a("gen_ai.system")), "aws.bedrock");
    assert_eq!(string(a("gen_ai.request.model")), "claude-x");
    assert_eq!(string(a("gen_ai.response.model")), "claude-y");
    assert_eq!(int(a("gen_ai.usage.input_tokens")), 115);
    assert_eq!(int(a("gen_ai.usage.output_tokens")), 42);
    assert_eq!(int(a("gen_ai.usage.cache_read.input_tokens")), 100);
    assert_eq!(int(a("gen_ai.usage.cache_creation.input_tokens")), 5);
    match a("gen_ai.response.finish_reasons") {
        Some(AnyValue::ArrayValue(list)) => {
            let reasons: Vec<_> = list
                .values
                .iter()
                .map(|v| string(v.value.as_ref()))
                .collect();
            assert_eq!(reasons, ["end_turn"]);
        }
        other => panic!("finish_reasons: {other:?}"),
    }
    assert_eq!(int(a("http.response.status_code")), 200);
    assert!(a("error.type").is_none());
    assert_eq!(string(a("heimdall.request_id")), "req_ok");
    assert_eq!(string(a("heimdall.outcome")), "success");
    assert_eq!(string(a("heimdall.provider")), "bedrock");
    assert_eq!(string(a("heimdall.key_name")), "key-a");
    assert_eq!(string(a("heimdall.virtual_key")), "vk-123");
    assert_eq!(int(a("heimdall.attempts")), 3);
    assert_eq!(int(a("heimdall.fallback_index")), 1);
    assert_eq!(a("heimdall.stream"), Some(&AnyValue::BoolValue(true)));
    assert_eq!(a("heimdall.cost"), Some(&AnyValue::DoubleValue(0.0125)));

    // Failure with a garbage traceparent: a new root trace, status Error with the message.
    let span = collector.span_of("req_failed", within).await.unwrap();
    assert_ne!(hex(&span.trace_id), TRACE_ID);
    assert_ne!(span.trace_id, vec![0; 16]);
    assert!(span.parent_span_id.is_empty());
    let status = span.status.as_ref().unwrap();
    assert_eq!(status.code, SpanStatus::Error as i32);
    assert_eq!(status.message, "every key is overloaded");
    let a = |k| attribute(&span, k);
    assert_eq!(string(a("error.type")), "overloaded_error");
    assert_eq!(int(a("http.response.status_code")), 529);
    assert_eq!(string(a("heimdall.outcome")), "failed");
    assert!(a("gen_ai.response.model").is_none());
    assert!(a("gen_ai.usage.input_tokens").is_none());

    // Counting tokens, no traceparent: its own operation name, a new trace.
    let span = collector.span_of("req_count", within).await.unwrap();
    assert_eq!(span.name, "count_tokens claude-x");
    assert_eq!(
        string(attribute(&span, "gen_ai.operation.name")),
        "count_tokens"
    );
    assert!(span.parent_span_id.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_protobuf_export() {
    let collector = Collector::http().await.unwrap();
    exports_spans(collector, OtlpProtocol::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_export() {
    let collector = Collector::grpc().await.unwrap();
    exports_spans(collector, OtlpProtocol::Grpc).await;
}

/// A collector that is not there: recording stays instant and shutdown is bounded.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_collector_neither_blocks_nor_hangs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for protocol in [OtlpProtocol::Http, OtlpProtocol::Grpc] {
        let (sink, guard) = heimdall_otel::start(&config(&url, protocol)).unwrap();
        let r = Arc::new(record("req_lost"));
        let t = std::time::Instant::now();
        for _ in 0..50_000 {
            sink.record(&r);
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let t = std::time::Instant::now();
        guard.shutdown().await;
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    }
}
