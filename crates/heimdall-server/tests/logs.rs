//! Request logs against the real binary: every request recorded (refusals included) in the
//! logs store, read back through `/api/logs` with filters, pages and totals; content kept or
//! not; nothing lost when the gateway stops under load, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

/// `/api/logs` with `query`, once it lists `count` records (the writer batches them).
async fn logs_when(base_url: &str, query: &str, count: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = get_json(base_url, &format!("/api/logs?{query}")).await;
        let total = page["pagination"]["total_count"].as_u64().unwrap();
        if total >= count {
            assert_eq!(total, count, "{page}");
            return page;
        }
        assert!(Instant::now() < deadline, "{query}: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_request_is_logged_and_can_be_found() {
    let h = Harness::start().await;
    let base = h.gateway.base_url();
    let ok = h
        .messages(&request(GPT, "the quick brown fox", false))
        .await;
    assert_eq!(ok.status(), 200);
    let streamed = h
        .messages(&request(CLAUDE, "a streamed answer", true))
        .await;
    let events = stream_events(streamed).await;
    assert_grammar(&events, false);
    let failed = h.messages(&request(GPT, "[[mock:error 429]]", false)).await;
    assert_eq!(failed.status(), 429);
    let refused = h.messages(&request("nowhere/model", "hi", false)).await;
    assert_eq!(refused.status(), 400);

    let page = logs_when(base, "", 4).await;
    let stats = &page["stats"];
    assert_eq!(stats["total_requests"], 4, "{page}");
    assert!(
        (stats["success_rate"].as_f64().unwrap() - 50.0).abs() < 1e-9,
        "{page}"
    );
    assert!(stats["total_tokens"].as_u64().unwrap() > 0, "{page}");
    assert!(stats["total_cost"].as_f64().unwrap() > 0.0, "{page}");
    assert!(
        stats["average_latency_ms"].as_f64().unwrap() > 0.0,
        "{page}"
    );
    let logs = page["logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .all(|l| l.get("input").is_none() || l["input"].is_null())
    );

    let openai = logs_when(base, "providers=openai", 2).await;
    assert!(
        openai["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["provider"] == "openai")
    );
    let errors = logs_when(base, "status=error", 2).await;
    let kinds: Vec<_> = errors["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["status_code"].as_u64().unwrap(), l["error_type"].clone()))
        .collect();
    assert!(
        kinds.contains(&(429, json!("rate_limit_error"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(400, json!("invalid_request_error"))),
        "{kinds:?}"
    );
    logs_when(base, "search=QUICK%20brown", 1).await;
    let paged = logs_when(base, "limit=2&offset=3", 4).await;
    assert_eq!(paged["logs"].as_array().unwrap().len(), 1, "{paged}");
    logs_when(
        base,
        "start_time=2000-01-01T00:00:00Z&end_time=2000-01-02T00:00:00Z",
        0,
    )
    .await;

    // One record in full: its content, timings and who answered.
    let found = logs_when(base, "search=quick%20brown%20fox", 1).await;
    let request_id = found["logs"][0]["id"].as_str().unwrap().to_owned();
    let one = get_json(base, &format!("/api/logs/{request_id}")).await;
    assert_eq!(one["id"], request_id.as_str(), "{one}");
    assert_eq!(one["provider"], "openai");
    assert_eq!(one["key_name"], "o");
    assert_eq!(one["status"], "success");
    assert_eq!(
        one["input"]["messages"][0]["content"],
        "the quick brown fox"
    );
    assert_eq!(one["output"]["content"][0]["text"], "the quick brown fox");
    assert!(one["first_byte_ms"].as_f64().is_some(), "{one}");
    assert!(one["cost"].as_f64().unwrap() > 0.0, "{one}");
    assert_eq!(one["stop_reason"], "end_turn", "{one}");
    let streamed = logs_when(base, &format!("models={CLAUDE}"), 1).await;
    let id = streamed["logs"][0]["id"].as_str().unwrap().to_owned();
    let one = get_json(base, &format!("/api/logs/{id}")).await;
    assert_eq!(one["stream"], true, "{one}");
    assert_eq!(
        one["output"]["content"][0]["text"], "a streamed answer",
        "{one}"
    );
    assert_eq!(one["output"]["stop_reason"], "end_turn", "{one}");
    assert_eq!(one["stop_reason"], "end_turn", "{one}");

    let missing = h
        .http
        .get(h.url("/api/logs/req_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = h
        .http
        .get(h.url("/api/logs?status=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn content_logging_can_be_turned_off_and_the_store_too() {
    let h = Harness::with_config(|c| c["client"] = json!({"disable_content_logging": true})).await;
    assert_eq!(
        h.messages(&request(GPT, "private words", false))
            .await
            .status(),
        200
    );
    // Passed through untranslated: usage and stop reason still come from the answer.
    assert_eq!(
        h.messages(&request(CLAUDE, "[[mock:finish length]] cut short", false))
            .await
            .status(),
        200
    );
    let passed = logs_when(h.gateway.base_url(), &format!("models={CLAUDE}"), 1).await;
    assert_eq!(passed["logs"][0]["stop_reason"], "max_tokens", "{passed}");
    assert!(passed["logs"][0]["output_tokens"].as_u64().unwrap() > 0);
    let page = logs_when(h.gateway.base_url(), &format!("models={GPT}"), 1).await;
    let id = page["logs"][0]["id"].as_str().unwrap().to_owned();
    let one = get_json(h.gateway.base_url(), &format!("/api/logs/{id}")).await;
    assert!(one["input"].is_null() && one["output"].is_null(), "{one}");
    assert!(one["input_tokens"].as_u64().unwrap() > 0, "{one}");
    logs_when(h.gateway.base_url(), "search=private", 0).await;

    let off = Harness::with_config(|c| c["logs_store"] = json!({"enabled": false})).await;
    assert_eq!(off.messages(&request(GPT, "hi", false)).await.status(), 200);
    let res = off.http.get(off.url("/api/logs")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(!off.gateway.app_dir().join("logs.db").exists());
}

/// Keeps `concurrency` requests in flight until the gateway stops answering; returns how many
/// got an HTTP answer.
async fn load(base_url: String, concurrency: usize) -> u64 {
    let answered = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let answered = Arc::clone(&answered);
        let url = format!("{base_url}/anthropic/v1/messages");
        workers.push(tokio::spawn(async move {
            let http = heimdall_testkit::http_client();
            let body = request(GPT, "load", false);
            while let Ok(res) = http.post(&url).json(&body).send().await {
                // An answer counts once its status arrived: the gateway handled the request.
                let _ = res.bytes().await;
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    answered.load(Ordering::Relaxed)
}

/// SIGTERM under load: every answered request has its record in the store after exit.
async fn no_record_lost_at_shutdown(store: Value) -> (u64, GatewayProcess) {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), |c| c["logs_store"] = store.clone());
    let mut gw = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    let load = tokio::spawn(load(gw.base_url().to_owned(), 32));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminate(&gw);
    let answered = load.await.unwrap();
    let exit = gw.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "{}", gw.output());
    assert!(answered > 100, "only {answered} answered under load");
    // A second gateway on the same store counts what the first one wrote.
    let reader = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    let page = get_json(reader.base_url(), "/api/logs?limit=1").await;
    assert_eq!(
        page["pagination"]["total_count"].as_u64().unwrap(),
        answered,
        "records written vs requests answered"
    );
    (answered, reader)
}

#[tokio::test]
async fn sigterm_under_load_loses_no_record_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = json!({"type": "sqlite", "config": {"path": dir.path().join("logs.db")}});
    no_record_lost_at_shutdown(store).await;
}

#[tokio::test]
async fn sigterm_under_load_loses_no_record_on_postgres() {
    let db = PgDatabase::create();
    no_record_lost_at_shutdown(db.logs_store()).await;
}
