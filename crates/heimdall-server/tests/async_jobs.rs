//! Async inference on `/anthropic/v1/messages` (`x-bf-async`, `x-bf-async-id`,
//! `x-bf-async-job-result-ttl`) against the real binary: submission, polling, failures,
//! expiry, virtual-key scoping, restarts, shutdown with jobs pending, and two gateways sharing
//! one PostgreSQL store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

/// POSTs `body` with extra headers; the answer's status and JSON.
async fn send(base_url: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = heimdall_testkit::http_client()
        .post(format!("{base_url}/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn submit(base_url: &str, body: &Value, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("x-bf-async", "true")];
    all.extend_from_slice(headers);
    let (status, v) = send(base_url, body, &all).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"], json!([]), "{v}");
    assert_eq!(v["model"], body["model"], "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_"), "{id}");
    id
}

/// Polls until the job has an answer (content, or an error), at most `within`.
async fn poll_done(
    base_url: &str,
    body: &Value,
    id: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> (u16, Value) {
    let deadline = Instant::now() + within;
    let mut all = vec![("x-bf-async-id", id)];
    all.extend_from_slice(headers);
    loop {
        let (status, v) = send(base_url, body, &all).await;
        let pending = status == 200 && v["content"] == json!([]);
        if !pending {
            return (status, v);
        }
        assert_eq!(v["id"], id, "a pending job answers with its own id: {v}");
        assert!(Instant::now() < deadline, "job {id} still pending: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_answers_at_once_then_its_message_when_done() {
    let h = Harness::start().await;
    let base = h.gateway.base_url();
    for model in [GPT, CLAUDE] {
        let body = request(model, "hello async [[mock:delay 300]]", false);
        let started = Instant::now();
        let id = submit(base, &body, &[]).await;
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "the submission does not wait for the upstream"
        );
        // Still running: the empty message again.
        let (status, v) = send(base, &body, &[("x-bf-async-id", &id)]).await;
        assert_eq!((status, &v["content"]), (200, &json!([])), "{v}");
        let (status, v) = poll_done(base, &body, &id, &[], Duration::from_secs(10)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0]["text"], "hello async", "{v}");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{v}");
        // A finished job can be read again until it expires.
        let (status, again) = send(base, &body, &[("x-bf-async-id", &id)]).await;
        assert_eq!((status, &again), (200, &v));
    }
}

#[tokio::test]
async fn a_failed_job_answers_its_error_with_the_original_status() {
    let h = Harness::start().await;
    let base = h.gateway.base_url();
    // Pass-through: the upstream's own error document, unmodified.
    let body = request(
        CLAUDE,
        "[[mock:error 400 type=invalid_request_error]]",
        false,
    );
    let id = submit(base, &body, &[]).await;
    let (status, v) = poll_done(base, &body, &id, &[], Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    // Translated: the error in Anthropic's shape with its status.
    let body = request(GPT, "[[mock:error 404]]", false);
    let id = submit(base, &body, &[]).await;
    let (status, v) = poll_done(base, &body, &id, &[], Duration::from_secs(10)).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
}

#[tokio::test]
async fn results_expire_after_their_ttl_and_unknown_ids_are_not_found() {
    let h = Harness::start().await;
    let base = h.gateway.base_url();
    let body = request(GPT, "short-lived", false);
    let id = submit(base, &body, &[("x-bf-async-job-result-ttl", "1")]).await;
    let (status, _) = poll_done(base, &body, &id, &[], Duration::from_secs(10)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, v) = send(base, &body, &[("x-bf-async-id", &id)]).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["type"], "not_found_error");
    let (status, v) = send(base, &body, &[("x-bf-async-id", "job_nope")]).await;
    assert_eq!(
        (status, &v["error"]["type"]),
        (404, &json!("not_found_error"))
    );
}

#[tokio::test]
async fn a_job_is_read_only_with_the_virtual_key_that_submitted_it() {
    let h = Harness::start().await;
    let base = h.gateway.base_url();
    let body = request(GPT, "secret work", false);
    let id = submit(base, &body, &[("x-bf-vk", "sk-bf-team-a")]).await;
    let (status, _) = poll_done(
        base,
        &body,
        &id,
        &[("x-bf-vk", "sk-bf-team-a")],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, 200);
    // Another key, or none: as if the job did not exist (404, not 403).
    for other in [Some("sk-bf-team-b"), None] {
        let mut headers = vec![("x-bf-async-id", id.as_str())];
        headers.extend(other.map(|vk| ("x-bf-vk", vk)));
        let (status, v) = send(base, &body, &headers).await;
        assert_eq!(status, 404, "{other:?}: {v}");
        assert_eq!(v["error"]["type"], "not_found_error");
    }
    // The key may come as the SDK's api key too.
    let (status, v) = send(
        base,
        &body,
        &[("x-bf-async-id", &id), ("x-api-key", "sk-bf-team-a")],
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn streaming_and_storeless_submissions_are_refused() {
    let h = Harness::start().await;
    let (status, v) = send(
        h.gateway.base_url(),
        &request(GPT, "hi", true),
        &[("x-bf-async", "true")],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("streaming"),
        "{v}"
    );
    let off = Harness::with_config(|c| c["logs_store"] = json!({"enabled": false})).await;
    for header in ["x-bf-async", "x-bf-async-id"] {
        let (status, v) = send(
            off.gateway.base_url(),
            &request(GPT, "hi", false),
            &[(header, "true")],
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(
            v["error"]["message"],
            "async operations not available: logs store not configured"
        );
    }
}

/// A gateway on `mock` whose logs store is `store`, with a short shutdown grace and lease.
async fn gateway_on(mock: &MockServer, store: &Value) -> GatewayProcess {
    let cfg = config(&mock.base_url(), |c| c["logs_store"] = store.clone());
    GatewayProcess::start(
        bin(),
        Some(&cfg),
        &[],
        &[
            "--shutdown-grace-seconds",
            "1",
            "--async-job-lease-seconds",
            "1.5",
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn jobs_survive_a_restart_and_pending_ones_fail_at_shutdown() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = json!({"enabled": true, "type": "sqlite",
                       "config": {"path": dir.path().join("logs.db")}});
    let mut first = gateway_on(&mock, &store).await;
    let done_body = request(GPT, "kept across restarts", false);
    let done = submit(first.base_url(), &done_body, &[]).await;
    let (status, finished) = poll_done(
        first.base_url(),
        &done_body,
        &done,
        &[],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, 200);
    // A job that cannot finish within the grace period.
    let slow_body = request(GPT, "too slow [[mock:delay 20000]]", false);
    let slow = submit(first.base_url(), &slow_body, &[]).await;
    terminate(&first);
    let exit = first.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(exit.is_some(), "the gateway exits after its grace period");

    let second = gateway_on(&mock, &store).await;
    let (status, v) = send(second.base_url(), &done_body, &[("x-bf-async-id", &done)]).await;
    assert_eq!((status, &v), (200, &finished));
    let (status, v) = send(second.base_url(), &slow_body, &[("x-bf-async-id", &slow)]).await;
    assert_eq!(
        status, 503,
        "a job cut by the shutdown is failed, not lost: {v}"
    );
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
}

#[tokio::test]
async fn two_gateways_share_jobs_through_postgres() {
    let db = PgDatabase::create();
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let a = gateway_on(&mock, &db.logs_store()).await;
    let b = gateway_on(&mock, &db.logs_store()).await;
    let body = request(GPT, "from a to b [[mock:delay 200]]", false);
    let id = submit(a.base_url(), &body, &[]).await;
    let (status, v) = poll_done(b.base_url(), &body, &id, &[], Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"][0]["text"], "from a to b");

    // A gateway that dies (no graceful shutdown) leaves its job pending; once its lease ran
    // out the other gateway marks it failed, and it is never run twice.
    let mut doomed = gateway_on(&mock, &db.logs_store()).await;
    let body = request(GPT, "orphan [[mock:delay 20000]]", false);
    let orphan = submit(doomed.base_url(), &body, &[]).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &doomed.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    doomed.wait_exit(Duration::from_secs(5)).await.unwrap();
    let (status, v) = poll_done(b.base_url(), &body, &orphan, &[], Duration::from_secs(10)).await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished"),
        "{v}"
    );
    let requests_seen = mock.requests().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mock.requests().len(),
        requests_seen,
        "the orphan is not run again"
    );
}
