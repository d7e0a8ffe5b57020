//! `GET /metrics` of the real binary after a few requests against the mock: Bifrost's LLM
//! metrics with bounded labels, the HTTP metrics by route template, and histograms that count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};

async fn scrape(h: &Harness) -> Scrape {
    let res = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        res.headers()
    );
    let text = res.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sample of `name` whose labels include all of `labels`, if exactly one.
fn find<'s>(s: &'s Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'s Sample> {
    let mut found = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)));
    let first = found.next();
    assert!(found.next().is_none(), "several {name} {labels:?}");
    first
}

fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

/// How many samples a histogram holds (its `+Inf` bucket).
fn observations(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Histogram(buckets)) => buckets
            .iter()
            .find(|b| b.less_than == f64::INFINITY)
            .map_or(0.0, |b| b.count),
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_count_requests_by_provider_model_and_outcome() {
    let h = Harness::start().await;
    // A pass-through success, a translated stream, an upstream 429 (no retries configured), a
    // request refused before routing, and a path no route has.
    let res = h.messages(&request(CLAUDE, "hello", false)).await;
    assert_eq!(res.status(), 200);
    let events = stream_events(h.messages(&request(GPT, "[[mock:words 30]]", true)).await).await;
    assert_grammar(&events, false);
    let res = h
        .messages(&request(CLAUDE, "[[mock:error 429]]", false))
        .await;
    assert_eq!(res.status(), 429);
    let (status, _) = error_of(h.messages(&request("nope/model", "hi", false)).await).await;
    assert_eq!(status, 400);
    let res = h
        .http
        .get(h.url("/anthropic/v1/req_not_a_route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Records reach the sinks just after their answers: wait for the last one.
    let refused = [("provider", ""), ("model", "nope/model")];
    let mut s = scrape(&h).await;
    for _ in 0..100 {
        if find(&s, "bifrost_error_requests_total", &refused).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = scrape(&h).await;
    }

    let claude = [("provider", "anthropic"), ("model", CLAUDE)];
    let gpt = [("provider", "openai"), ("model", "gpt-4o-mini")];
    assert_eq!(counter(&s, "bifrost_success_requests_total", &claude), 1.0);
    assert_eq!(counter(&s, "bifrost_success_requests_total", &gpt), 1.0);
    assert_eq!(counter(&s, "bifrost_upstream_requests_total", &claude), 2.0);
    assert_eq!(counter(&s, "bifrost_upstream_requests_total", &gpt), 1.0);
    let limited = [
        &claude[..],
        &[
            ("status_code", "429"),
            ("error_type", "provider_rate_limited"),
        ],
    ]
    .concat();
    assert_eq!(counter(&s, "bifrost_error_requests_total", &limited), 1.0);
    let invalid = [
        &refused[..],
        &[
            ("status_code", "400"),
            ("error_type", "caller_invalid_request"),
        ],
    ]
    .concat();
    assert_eq!(counter(&s, "bifrost_error_requests_total", &invalid), 1.0);
    assert!(
        find(&s, "bifrost_upstream_requests_total", &refused)
            .is_none_or(|x| x.value == Value::Counter(0.0))
    );
    for labels in [&claude, &gpt] {
        assert!(counter(&s, "bifrost_input_tokens_total", labels) > 0.0);
        assert!(counter(&s, "bifrost_output_tokens_total", labels) > 0.0);
    }
    assert_eq!(counter(&s, "bifrost_cache_hits_total", &[]), 0.0);

    assert_eq!(
        observations(&s, "bifrost_upstream_latency_seconds", &claude),
        2.0
    );
    assert_eq!(
        observations(&s, "bifrost_upstream_latency_seconds", &gpt),
        1.0
    );
    assert_eq!(
        observations(&s, "bifrost_stream_first_token_latency_seconds", &gpt),
        1.0
    );
    assert_eq!(
        observations(&s, "bifrost_stream_inter_token_latency_seconds", &gpt),
        1.0
    );
    assert_eq!(
        observations(&s, "heimdall_overhead_seconds", &[("path", "pass_through")]),
        2.0
    );
    assert_eq!(
        observations(&s, "heimdall_overhead_seconds", &[("path", "translated")]),
        1.0
    );

    // HTTP metrics by route template; the unknown path is `unmatched`, never the client's.
    let messages = [("method", "POST"), ("path", "/anthropic/v1/messages")];
    let ok = [&messages[..], &[("status_code", "200")]].concat();
    assert_eq!(counter(&s, "http_requests_total", &ok), 2.0);
    let refused_http = [&messages[..], &[("status_code", "400")]].concat();
    assert_eq!(counter(&s, "http_requests_total", &refused_http), 1.0);
    assert_eq!(
        observations(&s, "http_request_duration_seconds", &messages),
        4.0
    );
    let unmatched = [
        ("method", "GET"),
        ("path", "unmatched"),
        ("status_code", "404"),
    ];
    assert_eq!(counter(&s, "http_requests_total", &unmatched), 1.0);

    for sample in &s.samples {
        for (k, v) in sample.labels.iter() {
            assert!(
                !v.contains("req_"),
                "{} {k}={v}: a request id or a client path",
                sample.metric
            );
        }
        // Every family is described (the catalogue in `metrics.rs` follows the names).
        let family = ["_count", "_sum"]
            .iter()
            .find_map(|suffix| sample.metric.strip_suffix(suffix))
            .unwrap_or(&sample.metric);
        assert!(s.docs.contains_key(family), "{} has no HELP", sample.metric);
    }
}
