//! The store's behaviour, each test on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{TestDb, at, failed, record, with_content};
use heimdall_core::config::{PostgresConfig, Secret, StoreConfig};
use heimdall_core::{AttemptRecord, Outcome, RecordSink};
use heimdall_protocol::error::ErrorType;
use heimdall_store::{
    Closed, DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES, JobResult, JobState, LogQuery, NewJob,
    Store,
};
use serde_json::json;

const CLOSE: Duration = Duration::from_secs(60);

on_both_engines!(
    records_through_the_sink_are_all_written,
    filters_pagination_and_totals,
    full_log_with_content,
    content_disabled_is_null,
    content_past_the_queue_budget_is_withheld,
    prune_old_logs,
    maintenance_prunes,
    full_queue_drops_and_counts,
    a_record_written_again_is_not_duplicated,
    the_attempt_trail_round_trips,
    job_lifecycle,
    abandoned_jobs_fail_on_another_instance,
);

/// Writes `records` through a writer and closes it.
async fn write_all(store: &Store, records: Vec<heimdall_core::RequestRecord>) -> Closed {
    let (sink, handle) = store.start_writer(DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES);
    for r in records {
        sink.record(&Arc::new(r));
    }
    handle.close(CLOSE).await
}

async fn records_through_the_sink_are_all_written(db: TestDb) {
    let store = db.open().await;
    let (sink, handle) = store.start_writer(DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES);
    for i in 0..5000u64 {
        sink.record(&Arc::new(record(&format!("req_{i:05}"), 1_000_000 + i)));
        if i % 1000 == 0 {
            // Let the writer run between bursts, as it would beside live traffic.
            tokio::task::yield_now().await;
        }
    }
    // The sink is still held (as the gateway's sinks would be): close must not wait for it.
    let closed = handle.close(CLOSE).await;
    assert_eq!(
        closed,
        Closed {
            written: 5000,
            dropped: 0,
            failed: 0
        }
    );
    // Records after close are refused and counted.
    sink.record(&Arc::new(record("late", 1)));
    let page = store.logs(&LogQuery::default()).await.unwrap();
    assert_eq!(page.pagination.total_count, 5000);
    assert_eq!(page.logs.len(), 50);
    assert_eq!(page.logs[0].id, "req_04999", "newest first");
    assert!(store.log("late").await.unwrap().is_none());
}

/// A batch retried after its first write went through (its commit's answer was lost) leaves
/// the rows as the first write made them, and the rest of the batch is written.
async fn a_record_written_again_is_not_duplicated(db: TestDb) {
    let store = db.open().await;
    let first = record("req_again", 1_000);
    let mut again = record("req_again", 1_000);
    again.cost = Some(9.0);
    let mut nul = record("req_nul", 2_000);
    nul.error_message = Some("bad\0byte".to_owned());
    nul.outcome = failed("x", 0, 500).outcome;
    assert_eq!(write_all(&store, vec![first]).await.written, 1);
    assert_eq!(write_all(&store, vec![again, nul]).await.written, 2);
    let page = store.logs(&LogQuery::default()).await.unwrap();
    assert_eq!(page.pagination.total_count, 2);
    let kept = store.log("req_again").await.unwrap().unwrap();
    assert_eq!(kept.cost, Some(0.25));
    let nul = store.log("req_nul").await.unwrap().unwrap();
    assert_eq!(nul.error_message.as_deref(), Some("bad\u{FFFD}byte"));
}

/// Two failed attempts (a 500, then a timeout on another key) before a fallback answered: both
/// come back in order, in the full log and in a listing; a request with none has an empty trail.
async fn the_attempt_trail_round_trips(db: TestDb) {
    let store = db.open().await;
    let mut retried = record("req_trail", 1_000);
    retried.provider = Some("anthropic".to_owned());
    retried.served_model = Some("claude-haiku-4-5".to_owned());
    retried.fallback_index = 1;
    retried.attempts = 3;
    retried.failed_attempts = vec![
        AttemptRecord {
            provider: "openai".to_owned(),
            model: "openai/gpt-5".to_owned(),
            key_name: "k1".to_owned(),
            status: Some(500),
            error_type: ErrorType::ApiError,
            // Text that JSON must escape, and a NUL that PostgreSQL's text could not hold raw.
            error_message: "upstream said \"no\"\n\0 twice".to_owned(),
            elapsed: Duration::from_micros(12_500),
        },
        AttemptRecord {
            provider: "openai".to_owned(),
            model: "openai/gpt-5".to_owned(),
            key_name: "k2".to_owned(),
            status: None,
            error_type: ErrorType::TimeoutError,
            error_message: "openai did not answer within 30 s".to_owned(),
            elapsed: Duration::from_secs(30),
        },
    ];
    assert_eq!(
        write_all(&store, vec![retried, record("req_plain", 2_000)])
            .await
            .written,
        2
    );

    let log = store.log("req_trail").await.unwrap().unwrap();
    assert_eq!(log.attempts, 3);
    let trail: Vec<_> = log
        .attempt_trail
        .iter()
        .map(|a| {
            (
                a.provider.as_str(),
                a.model.as_str(),
                a.key_name.as_str(),
                a.status,
                a.error_type.as_str(),
                a.error_message.as_str(),
                a.elapsed_ms,
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            (
                "openai",
                "openai/gpt-5",
                "k1",
                Some(500),
                "api_error",
                "upstream said \"no\"\n\0 twice",
                12.5
            ),
            (
                "openai",
                "openai/gpt-5",
                "k2",
                None,
                "timeout_error",
                "openai did not answer within 30 s",
                30_000.0
            ),
        ]
    );
    // The final attempt is the log's own.
    assert_eq!(
        (log.provider.as_deref(), log.key_name.as_deref()),
        (Some("anthropic"), Some("main"))
    );
    let json = serde_json::to_value(&log).unwrap();
    assert_eq!(json["attempt_trail"][1]["status"], json!(null), "{json}");
    assert_eq!(json["attempt_trail"][0]["status"], 500, "{json}");

    let plain = store.log("req_plain").await.unwrap().unwrap();
    assert!(plain.attempt_trail.is_empty());
    assert_eq!(
        serde_json::to_value(&plain).unwrap()["attempt_trail"],
        json!([])
    );

    // Listings carry the trail too.
    let page = store.logs(&LogQuery::default()).await.unwrap();
    let listed = page.logs.iter().find(|l| l.id == "req_trail").unwrap();
    assert_eq!(listed.attempt_trail, log.attempt_trail);
}

async fn filters_pagination_and_totals(db: TestDb) {
    let store = db.open().await;
    let mut records = Vec::new();
    for i in 0..6u64 {
        records.push(with_content(
            record(&format!("ok_{i}"), 10_000 + i * 1000),
            &format!(r#"{{"messages":[{{"role":"user","content":"Hello number {i}"}}]}}"#),
            &[r#"{"type":"message","content":[{"type":"text","text":"Fine"}]}"#],
        ));
    }
    let mut anthropic = record("anth", 20_000);
    anthropic.provider = Some("anthropic".to_owned());
    anthropic.model = Some("claude-sonnet-4-5".to_owned());
    anthropic.served_model = Some("claude-haiku-4-5".to_owned());
    anthropic.fallback_index = 1;
    anthropic.virtual_key = Some("vk_1".to_owned());
    let anthropic = with_content(anthropic, r#"{"note":"100%_DONE"}"#, &[]);
    let mut cancelled = record("gone", 21_000);
    cancelled.outcome = Outcome::Cancelled;
    cancelled.virtual_key = Some("vk_1".to_owned());
    let mut midway = record("midway", 22_000);
    midway.stream = true;
    midway.outcome = Outcome::StreamError {
        kind: ErrorType::OverloadedError,
    };
    records.extend([anthropic, cancelled, midway, failed("limited", 23_000, 429)]);
    assert_eq!(write_all(&store, records).await.written, 10);

    let ids = |q: LogQuery| {
        let store = store.clone();
        async move {
            let page = store.logs(&q).await.unwrap();
            let mut ids: Vec<String> = page.logs.into_iter().map(|l| l.id).collect();
            ids.sort();
            ids
        }
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    assert_eq!(
        ids(LogQuery {
            providers: strings(&["anthropic"]),
            ..Default::default()
        })
        .await,
        ["anth"]
    );
    // A model filter matches the model asked for or the one that served.
    for model in ["claude-sonnet-4-5", "claude-haiku-4-5"] {
        assert_eq!(
            ids(LogQuery {
                models: strings(&[model]),
                ..Default::default()
            })
            .await,
            ["anth"]
        );
    }
    assert_eq!(
        ids(LogQuery {
            status: strings(&["error"]),
            ..Default::default()
        })
        .await,
        ["limited", "midway"]
    );
    assert_eq!(
        ids(LogQuery {
            status: strings(&["cancelled", "error"]),
            ..Default::default()
        })
        .await,
        ["gone", "limited", "midway"]
    );
    assert_eq!(
        ids(LogQuery {
            virtual_key: Some("vk_1".into()),
            ..Default::default()
        })
        .await,
        ["anth", "gone"]
    );
    assert_eq!(
        ids(LogQuery {
            start_time: Some(at(12_000)),
            end_time: Some(at(14_000)),
            ..Default::default()
        })
        .await,
        ["ok_2", "ok_3", "ok_4"]
    );
    // Search: case-insensitive over input and output; % and _ are literal.
    assert_eq!(
        ids(LogQuery {
            search: Some("HELLO NUMBER 3".into()),
            ..Default::default()
        })
        .await,
        ["ok_3"]
    );
    assert_eq!(
        ids(LogQuery {
            search: Some("fine".into()),
            ..Default::default()
        })
        .await
        .len(),
        6
    );
    assert_eq!(
        ids(LogQuery {
            search: Some("100%_done".into()),
            ..Default::default()
        })
        .await,
        ["anth"]
    );
    assert!(
        ids(LogQuery {
            search: Some("1%D".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        ids(LogQuery {
            search: Some("Hello_number".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // Pages, newest first; totals over every match.
    let page = store
        .logs(&LogQuery {
            limit: Some(3),
            offset: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<&str> = page.logs.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(got, ["anth", "ok_5", "ok_4"]);
    assert_eq!(page.pagination.limit, 3);
    assert_eq!(page.pagination.offset, 3);
    assert_eq!(page.pagination.total_count, 10);
    let s = &page.stats;
    assert_eq!(s.total_requests, 10);
    assert!((s.success_rate - 70.0).abs() < 1e-9, "{}", s.success_rate);
    assert!((s.average_latency_ms - 100.0).abs() < 1e-9);
    assert_eq!(s.input_tokens, 9 * 10);
    assert_eq!(s.output_tokens, 9 * 5);
    assert_eq!(s.total_tokens, 9 * 15);
    assert!((s.total_cost - 9.0 * 0.25).abs() < 1e-9);
    assert!(
        page.logs
            .iter()
            .all(|l| l.input.is_none() && l.output.is_none())
    );

    let errors = store
        .logs(&LogQuery {
            status: strings(&["error"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(errors.stats.total_requests, 2);
    assert_eq!(errors.stats.success_rate, 0.0);
    let limited = errors.logs.iter().find(|l| l.id == "limited").unwrap();
    assert_eq!(limited.status_code, 429);
    assert_eq!(limited.error_type.as_deref(), Some("rate_limit_error"));
    let midway = errors.logs.iter().find(|l| l.id == "midway").unwrap();
    assert_eq!((midway.status_code, midway.stream), (200, true));

    // No match: zeroes, not errors.
    let none = store
        .logs(&LogQuery {
            providers: strings(&["nobody"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.pagination.total_count, 0);
    assert_eq!(none.stats.success_rate, 0.0);
    assert_eq!(none.stats.average_latency_ms, 0.0);
}

const STREAM: &[&str] = &[
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

async fn full_log_with_content(db: TestDb) {
    let store = db.open().await;
    let json_answer = with_content(
        record("json", 1_000),
        r#"{"model":"openai/gpt-5","messages":[{"role":"user","content":"Hi"}]}"#,
        &[r#"{"id":"msg_2","type":"message","content":[{"type":"text","text":"Hi there"}]}"#],
    );
    let mut streamed = with_content(
        record("streamed", 2_000),
        r#"{"stream":true,"messages":[]}"#,
        STREAM,
    );
    streamed.stream = true;
    streamed.pass_through = true;
    // A stream that failed before it started answered with a JSON error, not events.
    let mut refused = with_content(
        failed("refused", 3_000, 400),
        "not json \u{0} at all",
        &[r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#],
    );
    refused.stream = true;
    assert_eq!(
        write_all(&store, vec![json_answer, streamed, refused])
            .await
            .written,
        3
    );

    let log = store.log("json").await.unwrap().unwrap();
    assert_eq!(log.input.unwrap()["messages"][0]["content"], "Hi");
    assert_eq!(log.output.unwrap()["content"][0]["text"], "Hi there");
    assert_eq!(log.timestamp, "1970-01-01T00:00:01.000Z");
    assert_eq!(log.front_door, "anthropic");
    assert_eq!(log.endpoint, "messages");
    assert_eq!(log.status, "success");
    assert_eq!(log.status_code, 200);
    assert_eq!(log.latency_ms, 100.0);
    assert_eq!(log.first_byte_ms, Some(40.0));
    assert_eq!(log.overhead_ms, 10.0);
    assert_eq!(
        (
            log.input_tokens,
            log.output_tokens,
            log.cache_read_tokens,
            log.cache_write_tokens
        ),
        (10, 5, 2, 1)
    );
    assert_eq!(log.cost, Some(0.25));
    assert_eq!(log.key_name.as_deref(), Some("main"));
    assert!(!log.content_truncated);

    let log = store.log("streamed").await.unwrap().unwrap();
    assert!(log.stream && log.pass_through);
    assert_eq!(log.input.unwrap()["stream"], true);
    let output = log.output.unwrap();
    assert_eq!(output["type"], "message");
    assert_eq!(
        output["content"],
        json!([{"type": "text", "text": "Hello"}])
    );
    assert_eq!(output["stop_reason"], "end_turn");
    assert_eq!(
        output["usage"],
        json!({"input_tokens": 7, "output_tokens": 3})
    );

    let log = store.log("refused").await.unwrap().unwrap();
    assert_eq!(log.status, "error");
    assert_eq!(log.input, Some(json!("not json \u{FFFD} at all")));
    assert_eq!(log.output.unwrap()["error"]["message"], "bad");

    assert!(store.log("missing").await.unwrap().is_none());
}

async fn content_disabled_is_null(db: TestDb) {
    let store = db.open().await;
    assert_eq!(
        write_all(&store, vec![record("bare", 5_000)]).await.written,
        1
    );
    let log = store.log("bare").await.unwrap().unwrap();
    assert_eq!((log.input, log.output), (None, None));
    assert!(!log.content_truncated);
    // A search never matches a log without content.
    let page = store
        .logs(&LogQuery {
            search: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.pagination.total_count, 0);
}

async fn content_past_the_queue_budget_is_withheld(db: TestDb) {
    let store = db.open().await;
    // Room for one record's content: the second arrives while the first is still queued.
    let (sink, handle) = store.start_writer(DEFAULT_QUEUE, 150);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
    let answer = r#"{"type":"message","content":[]}"#;
    for id in ["kept", "lean"] {
        sink.record(&Arc::new(with_content(record(id, 1), body, &[answer])));
    }
    assert_eq!(handle.close(CLOSE).await.written, 2, "no record is lost");
    let kept = store.log("kept").await.unwrap().unwrap();
    assert!(kept.input.is_some() && kept.output.is_some());
    assert!(!kept.content_truncated);
    let lean = store.log("lean").await.unwrap().unwrap();
    assert_eq!((lean.input, lean.output), (None, None));
    assert!(
        lean.content_truncated,
        "the record says its content was not kept"
    );
    assert_eq!(lean.input_tokens, 10);
}

async fn prune_old_logs(db: TestDb) {
    let store = db.open().await;
    let records = (0..20u64)
        .map(|i| record(&format!("r{i:02}"), i * 1000))
        .collect();
    assert_eq!(write_all(&store, records).await.written, 20);
    assert_eq!(store.prune_logs(at(12_000)).await.unwrap(), 12);
    assert_eq!(store.prune_logs(at(12_000)).await.unwrap(), 0);
    let page = store.logs(&LogQuery::default()).await.unwrap();
    assert_eq!(page.pagination.total_count, 8);
    assert!(store.log("r11").await.unwrap().is_none());
    assert!(store.log("r12").await.unwrap().is_some());
}

async fn maintenance_prunes(db: TestDb) {
    let store = db.open().await;
    let now = SystemTime::now();
    let old = now - Duration::from_secs(3 * 86_400);
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let records = vec![record("old", ms(old)), record("new", ms(now))];
    assert_eq!(write_all(&store, records).await.written, 2);
    store
        .create_job(&job(
            "expired",
            "a",
            now - Duration::from_secs(60),
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    store
        .fail_abandoned_jobs(now - Duration::from_secs(30), 500, b"gone")
        .await
        .unwrap();
    // The first round runs at once.
    let task = store.spawn_maintenance(
        || Some(Duration::from_secs(86_400)),
        Duration::from_secs(3600),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.log("old").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "old log not pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The jobs prune follows the logs prune in the same round: nothing is left for this one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    assert_eq!(store.prune_jobs(now).await.unwrap(), 0);
    assert!(store.log("new").await.unwrap().is_some());
}

async fn full_queue_drops_and_counts(db: TestDb) {
    let store = db.open().await;
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (sink, handle) = store.start_writer(2, DEFAULT_QUEUE_CONTENT_BYTES);
    // The test's single-threaded runtime does not run the writer until the test awaits: two
    // records fill the queue and the other eight are dropped.
    metrics::with_local_recorder(&recorder, || {
        for i in 0..10 {
            sink.record(&Arc::new(record(&format!("q{i}"), i)));
        }
    });
    let closed = handle.close(CLOSE).await;
    assert_eq!(
        closed,
        Closed {
            written: 2,
            dropped: 8,
            failed: 0
        }
    );
    let dropped: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "heimdall_log_records_dropped_total")
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(dropped, 8);
    assert_eq!(
        store
            .logs(&LogQuery::default())
            .await
            .unwrap()
            .pagination
            .total_count,
        2
    );
}

fn job(id: &str, owner: &str, created_at: SystemTime, ttl: Duration) -> NewJob {
    NewJob {
        id: id.to_owned(),
        owner: owner.to_owned(),
        virtual_key: Some("vk_9".to_owned()),
        model: Some("openai/gpt-5".to_owned()),
        request_id: format!("req_{id}"),
        ttl,
        created_at,
        lease_until: created_at + Duration::from_secs(30),
    }
}

async fn job_lifecycle(db: TestDb) {
    let store = db.open().await;
    let now = SystemTime::now();
    let created = now - Duration::from_secs(5);
    store
        .create_job(&job("job_1", "me", created, Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(
        store
            .create_job(&job("job_1", "me", created, Duration::ZERO))
            .await
            .is_err()
    );

    let pending = store.job("job_1").await.unwrap().unwrap();
    assert_eq!(pending.state, JobState::Pending);
    assert_eq!(pending.virtual_key.as_deref(), Some("vk_9"));
    assert_eq!(pending.model.as_deref(), Some("openai/gpt-5"));
    assert_eq!(millis(pending.created_at), millis(created));
    assert_eq!(
        (
            pending.completed_at,
            pending.expires_at,
            pending.status,
            pending.body
        ),
        (None, None, None, None)
    );

    let result = JobResult {
        state: JobState::Completed,
        status: 200,
        body: b"{\"type\":\"message\"}".to_vec(),
        completed_at: now,
    };
    assert!(store.finish_job("job_1", &result).await.unwrap());
    let second = JobResult {
        state: JobState::Failed,
        status: 500,
        body: b"late".to_vec(),
        completed_at: now,
    };
    assert!(
        !store.finish_job("job_1", &second).await.unwrap(),
        "finished twice"
    );
    assert!(!store.finish_job("nope", &result).await.unwrap());

    let done = store.job("job_1").await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.status, Some(200));
    assert_eq!(done.body.as_deref(), Some(&b"{\"type\":\"message\"}"[..]));
    assert_eq!(done.completed_at.map(millis), Some(millis(now)));
    assert_eq!(
        done.expires_at.map(millis),
        Some(millis(now + Duration::from_secs(3600)))
    );

    // A result whose ttl ran out is gone for readers, then pruned.
    store
        .create_job(&job("job_2", "me", created, Duration::from_millis(1)))
        .await
        .unwrap();
    let failed = JobResult {
        state: JobState::Failed,
        status: 502,
        body: b"upstream".to_vec(),
        completed_at: now - Duration::from_secs(1),
    };
    assert!(store.finish_job("job_2", &failed).await.unwrap());
    assert!(store.job("job_2").await.unwrap().is_none());
    assert!(store.job("missing").await.unwrap().is_none());
    assert_eq!(store.prune_jobs(now).await.unwrap(), 1);
    assert!(store.job("job_1").await.unwrap().is_some());
    assert_eq!(
        store
            .prune_jobs(now + Duration::from_secs(3600))
            .await
            .unwrap(),
        1
    );
    assert!(store.job("job_1").await.unwrap().is_none());
}

async fn abandoned_jobs_fail_on_another_instance(db: TestDb) {
    // Two instances on one database.
    let a = db.open().await;
    let b = db.open().await;
    let now = SystemTime::now();
    let ttl = Duration::from_secs(600);
    a.create_job(&job("a_1", "instance-a", now, ttl))
        .await
        .unwrap();
    a.create_job(&job("a_2", "instance-a", now, ttl))
        .await
        .unwrap();
    b.create_job(&job("b_1", "instance-b", now, ttl))
        .await
        .unwrap();
    a.finish_job(
        "a_2",
        &JobResult {
            state: JobState::Completed,
            status: 200,
            body: b"ok".to_vec(),
            completed_at: now,
        },
    )
    .await
    .unwrap();

    // Leases run to now+30s. B keeps its job alive past the check; A does not (it is gone).
    let later = now + Duration::from_secs(60);
    assert_eq!(
        b.renew_jobs("instance-b", later + Duration::from_secs(30))
            .await
            .unwrap(),
        1
    );
    assert_eq!(b.renew_jobs("nobody", later).await.unwrap(), 0);
    let body = br#"{"type":"error","error":{"type":"api_error","message":"instance lost"}}"#;
    assert_eq!(b.fail_abandoned_jobs(later, 500, body).await.unwrap(), 1);
    assert_eq!(b.fail_abandoned_jobs(later, 500, body).await.unwrap(), 0);

    let lost = a.job("a_1").await.unwrap().unwrap();
    assert_eq!(lost.state, JobState::Failed);
    assert_eq!(lost.status, Some(500));
    assert_eq!(lost.body.as_deref(), Some(&body[..]));
    assert_eq!(lost.completed_at.map(millis), Some(millis(later)));
    assert_eq!(lost.expires_at.map(millis), Some(millis(later + ttl)));
    // A finished job is not touched, and a failed one cannot be finished after all.
    assert_eq!(
        a.job("a_2").await.unwrap().unwrap().state,
        JobState::Completed
    );
    assert_eq!(
        b.job("b_1").await.unwrap().unwrap().state,
        JobState::Pending
    );
    let late = JobResult {
        state: JobState::Completed,
        status: 200,
        body: b"late".to_vec(),
        completed_at: later,
    };
    assert!(!a.finish_job("a_1", &late).await.unwrap());
    // Renewal touches only pending jobs.
    assert_eq!(a.renew_jobs("instance-a", later + ttl).await.unwrap(), 0);
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn open_errors_name_the_engine_not_the_password() {
    let config = StoreConfig::Postgres(PostgresConfig {
        host: "127.0.0.1".to_owned(),
        port: 1,
        user: "heimdall".to_owned(),
        password: Secret::new("hunter2"),
        db_name: "logs".to_owned(),
        ssl_mode: "disable".to_owned(),
        max_open_conns: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        Store::open(&config, dir.path()).await.err().unwrap()
    );
    assert!(
        e.contains("PostgreSQL logs store at heimdall@127.0.0.1:1/logs"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    // A directory cannot be opened as a database file.
    let config = StoreConfig::Sqlite {
        path: dir.path().to_owned(),
    };
    let e = format!(
        "{:#}",
        Store::open(&config, dir.path()).await.err().unwrap()
    );
    assert!(e.contains("SQLite logs store at"), "{e}");
}

#[tokio::test]
async fn engine_names() {
    let sqlite = TestDb::sqlite().await;
    assert_eq!(sqlite.open().await.engine(), "sqlite");
    let pg = TestDb::postgres().await;
    assert_eq!(pg.open().await.engine(), "postgres");
}
