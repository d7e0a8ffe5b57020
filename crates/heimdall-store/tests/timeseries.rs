//! The dashboard's time series, on SQLite and on PostgreSQL: buckets (empty ones included),
//! counts, errors, nearest-rank latency percentiles, tokens, cost, and the top lists.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, failed, record};
use heimdall_core::RecordSink;
use heimdall_store::{DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES, SeriesQuery, Store};

on_both_engines!(
    buckets_counts_percentiles_and_totals,
    top_models_and_virtual_keys,
    an_empty_range_has_empty_buckets,
);

async fn write_all(store: &Store, records: Vec<heimdall_core::RequestRecord>) {
    let (sink, handle) = store.start_writer(DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES);
    let n = records.len() as u64;
    for r in records {
        sink.record(&Arc::new(r));
    }
    let closed = handle.close(Duration::from_secs(60)).await;
    assert_eq!(closed.written, n);
}

fn query(from_ms: i64, to_ms: i64, buckets: u32) -> SeriesQuery {
    SeriesQuery {
        from_ms,
        to_ms,
        buckets,
        top: 10,
    }
}

/// A request started at `ms` that took `latency_ms`.
fn timed(id: &str, ms: u64, latency_ms: u64) -> heimdall_core::RequestRecord {
    let mut r = record(id, ms);
    r.latency = Duration::from_millis(latency_ms);
    r
}

async fn buckets_counts_percentiles_and_totals(db: TestDb) {
    let store = db.open().await;
    // Bucket 0 (10 000 … 10 999): latencies 1 … 100 ms, so the percentiles are exact ranks.
    let mut records: Vec<_> = (1..=100u64)
        .map(|i| timed(&format!("a{i:03}"), 10_000 + i * 5, i))
        .collect();
    // Bucket 2 (12 000 … 12 999): one success and two failures.
    records.push(timed("b1", 12_000, 300));
    records.push(failed("b2", 12_500, 500));
    records.push(failed("b3", 12_999, 429));
    // Outside the range on both sides.
    records.push(timed("before", 9_999, 1));
    records.push(timed("after", 13_000, 1));
    write_all(&store, records).await;

    let series = store.timeseries(&query(10_000, 13_000, 3)).await.unwrap();
    assert_eq!(series.bucket_ms, 1000);
    assert_eq!(
        series
            .buckets
            .iter()
            .map(|b| b.start_ms)
            .collect::<Vec<_>>(),
        [10_000, 11_000, 12_000]
    );
    let first = &series.buckets[0];
    assert_eq!(first.requests, 100);
    assert_eq!(first.errors, 0);
    assert_eq!(first.latency_p50_ms, Some(50.0));
    assert_eq!(first.latency_p95_ms, Some(95.0));
    assert_eq!(first.latency_p99_ms, Some(99.0));
    assert_eq!(first.input_tokens, 1000);
    assert_eq!(first.output_tokens, 500);
    assert!((first.cost - 25.0).abs() < 1e-9, "{}", first.cost);

    let empty = &series.buckets[1];
    assert_eq!(empty.requests, 0);
    assert_eq!(empty.latency_p50_ms, None);
    assert_eq!(empty.cost, 0.0);

    let last = &series.buckets[2];
    assert_eq!(last.requests, 3);
    assert_eq!(last.errors, 2);
    // `failed` keeps `record`'s 100 ms latency: ranks 100, 100, 300.
    assert_eq!(last.latency_p50_ms, Some(100.0));
    assert_eq!(last.latency_p99_ms, Some(300.0));
    assert!((last.cost - 0.25).abs() < 1e-9);
}

async fn top_models_and_virtual_keys(db: TestDb) {
    let store = db.open().await;
    let mut records = Vec::new();
    for i in 0..3u64 {
        let mut r = record(&format!("claude{i}"), 1_000 + i);
        r.model = Some("claude-sonnet-4-5".to_owned());
        r.served_model = Some("claude-sonnet-4-5".to_owned());
        r.virtual_key = Some("vk_aaaaaaaaaaaaaaaa".to_owned());
        records.push(r);
    }
    let mut refused = failed("refused", 1_100, 400);
    // Refused before routing: no serving model, the asked one names it.
    refused.served_model = None;
    refused.model = Some("nowhere/model".to_owned());
    refused.virtual_key = Some("vk_bbbbbbbbbbbbbbbb".to_owned());
    records.push(refused);
    records.push(record("gpt", 1_200));
    write_all(&store, records).await;

    let series = store.timeseries(&query(0, 2_000, 4)).await.unwrap();
    let models: Vec<_> = series
        .top_models
        .iter()
        .map(|e| (e.name.as_str(), e.requests, e.errors))
        .collect();
    assert_eq!(
        models,
        [
            ("claude-sonnet-4-5", 3, 0),
            ("nowhere/model", 1, 1),
            ("openai/gpt-5", 1, 0)
        ]
    );
    assert_eq!(series.top_models[0].tokens, 45);
    let keys: Vec<_> = series
        .top_virtual_keys
        .iter()
        .map(|e| (e.name.as_str(), e.requests))
        .collect();
    assert_eq!(
        keys,
        [("vk_aaaaaaaaaaaaaaaa", 3), ("vk_bbbbbbbbbbbbbbbb", 1)],
        "requests without a virtual key are not listed"
    );

    let one = store
        .timeseries(&SeriesQuery {
            top: 1,
            ..query(0, 2_000, 4)
        })
        .await
        .unwrap();
    assert_eq!(one.top_models.len(), 1);
    assert_eq!(one.top_virtual_keys.len(), 1);
}

async fn an_empty_range_has_empty_buckets(db: TestDb) {
    let store = db.open().await;
    write_all(&store, vec![record("elsewhere", 50_000)]).await;
    let series = store.timeseries(&query(0, 60, 60)).await.unwrap();
    assert_eq!(series.buckets.len(), 60);
    assert_eq!(series.bucket_ms, 1);
    assert!(series.buckets.iter().all(|b| b.requests == 0));
    assert!(series.top_models.is_empty() && series.top_virtual_keys.is_empty());
}
