//! The attempt trail of a request in the logs store, seen from outside: upstream attempts that
//! failed before a retry, another key or a fallback answered are listed in order by
//! `GET /api/logs/{id}` (`attempt_trail`), with names but never a key's value; a request
//! answered at once has an empty trail. Every `fail_first` KEY is unique to its test: the mock
//! counts them process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const KEY_ONE: &str = "trail-key-one-value";
const KEY_TWO: &str = "trail-key-two-value";
/// The `x-api-key` the harness sends as the client's own: it must not reach the record either.
const CLIENT_KEY: &str = "client-key-must-not-leak";

/// A failed attempt as the tests compare it: provider, model, key name, status, error type.
type Attempt = (String, String, String, Value, String);

fn merge(into: &mut Value, from: Value) {
    let Value::Object(from) = from else { return };
    for (k, v) in from {
        into[k] = v;
    }
}

/// One retry, without waiting long for it.
fn fast() -> Value {
    json!({"max_retries": 1, "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20})
}

/// The gateway's id of the request `res` answered.
fn request_id(res: &reqwest::Response) -> String {
    res.headers()["request-id"].to_str().unwrap().to_owned()
}

/// `GET /api/logs/{id}`, once the writer has written it (it batches records).
async fn log_of(h: &Harness, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = h
            .http
            .get(h.url(&format!("/api/logs/{id}")))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            return res.json().await.unwrap();
        }
        assert_eq!(res.status(), 404, "{}", res.text().await.unwrap());
        assert!(Instant::now() < deadline, "log {id} never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each failed attempt of the log, its message and time checked for shape.
fn trail_of(log: &Value) -> Vec<Attempt> {
    let trail = log["attempt_trail"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempt_trail array: {log}"));
    trail
        .iter()
        .map(|a| {
            let message = a["error_message"].as_str().unwrap();
            assert!(!message.is_empty() && message.chars().count() <= 500, "{a}");
            assert!(a["elapsed_ms"].as_f64().unwrap() >= 0.0, "{a}");
            let text = |name: &str| {
                a[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {a}"))
                    .to_owned()
            };
            (
                text("provider"),
                text("model"),
                text("key_name"),
                a["status"].clone(),
                text("error_type"),
            )
        })
        .collect()
}

/// No key value of the configuration, nor the client's, appears anywhere in the log but in the
/// request body: the client's own words, which name a key for the mock's `key_error`.
fn assert_no_key(log: &Value) {
    let mut log = log.clone();
    log["input"] = Value::Null;
    let text = log.to_string();
    for secret in [KEY_ONE, KEY_TWO, ANTHROPIC_KEY, OPENAI_KEY, CLIENT_KEY] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

fn attempt(provider: &str, model: &str, key: &str, status: Value, kind: &str) -> Attempt {
    (
        provider.into(),
        model.into(),
        key.into(),
        status,
        kind.into(),
    )
}

#[tokio::test]
async fn a_retried_model_then_a_fallback_leave_each_failed_attempt() {
    let h =
        Harness::with_config(|c| merge(&mut c["providers"]["openai"]["network_config"], fast()))
            .await;
    // The first two upstream requests fail: openai's attempt and its one retry; openai then
    // gives up and the fallback (Claude, on the anthropic provider) answers.
    let mut body = request(GPT, "hi [[mock:fail_first 2 500 trail-fallback]]", false);
    body["fallbacks"] = json!([CLAUDE]);
    let res = h.messages(&body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-bf-attempts"], "3");
    let id = request_id(&res);

    let log = log_of(&h, &id).await;
    assert_eq!(
        trail_of(&log),
        [
            attempt("openai", GPT, "o", json!(500), "api_error"),
            attempt("openai", GPT, "o", json!(500), "api_error"),
        ],
        "{log}"
    );
    // The answer's own attempt is the log itself.
    assert_eq!(log["attempts"], 3, "{log}");
    assert_eq!(log["provider"], "anthropic", "{log}");
    assert_eq!(log["served_model"], CLAUDE, "{log}");
    assert_eq!(log["fallback_index"], 1, "{log}");
    assert_eq!(log["key_name"], "a", "{log}");
    assert_eq!(log["status"], "success", "{log}");
    assert_no_key(&log);

    // A request answered at once has an empty trail.
    let res = h.messages(&request(GPT, "hi", false)).await;
    assert_eq!(res.status(), 200);
    let log = log_of(&h, &request_id(&res)).await;
    assert_eq!(log["attempt_trail"], json!([]), "{log}");
    assert_eq!(log["attempts"], 1, "{log}");
}

#[tokio::test]
async fn a_key_moved_from_and_a_retried_stream_leave_their_attempts() {
    let h = Harness::with_config(|c| {
        let p = &mut c["providers"]["anthropic"];
        // Key one is always chosen first (a zero weight never is beside a weighted key); two
        // serves once one is given up.
        p["keys"] = json!([
            {"name": "one", "value": KEY_ONE, "models": ["*"], "weight": 1},
            {"name": "two", "value": KEY_TWO, "models": ["*"], "weight": 0}
        ]);
        merge(&mut p["network_config"], fast());
    })
    .await;

    // A 429 on key one moves the request to key two at once.
    let res = h
        .messages(&request(
            CLAUDE,
            &format!("hi [[mock:key_error {KEY_ONE} 429]]"),
            false,
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-bf-key-name"], "two");
    let log = log_of(&h, &request_id(&res)).await;
    assert_eq!(
        trail_of(&log),
        [attempt(
            "anthropic",
            CLAUDE,
            "one",
            json!(429),
            "rate_limit_error"
        )],
        "{log}"
    );
    assert_eq!(
        (log["key_name"].as_str(), log["attempts"].as_u64()),
        (Some("two"), Some(2)),
        "{log}"
    );
    assert_no_key(&log);

    // A stream that failed before its first byte is retried; its first attempt is in the trail.
    let res = h
        .messages(&request(
            CLAUDE,
            "alpha [[mock:fail_first 1 529 trail-stream]]",
            true,
        ))
        .await;
    let id = request_id(&res);
    let events = stream_events(res).await;
    assert_grammar(&events, false);
    let log = log_of(&h, &id).await;
    assert_eq!(
        trail_of(&log),
        [attempt(
            "anthropic",
            CLAUDE,
            "one",
            json!(529),
            "overloaded_error"
        )],
        "{log}"
    );
    assert_eq!(
        (log["stream"].as_bool(), log["attempts"].as_u64()),
        (Some(true), Some(2)),
        "{log}"
    );
    assert_no_key(&log);
}

#[tokio::test]
async fn a_failed_request_keeps_the_attempts_that_ended_it_on_postgres() {
    let db = PgDatabase::create();
    let store = db.logs_store();
    let h = Harness::with_config(|c| c["logs_store"] = store).await;
    // No retry and no fallback: the one attempt's 503 is the client's answer, and the trail
    // says which key and provider gave it.
    let res = h
        .messages(&request(
            GPT,
            &format!("hi [[mock:key_error {OPENAI_KEY} 503]]"),
            false,
        ))
        .await;
    assert_eq!(res.status(), 503);
    let log = log_of(&h, &request_id(&res)).await;
    assert_eq!(
        trail_of(&log),
        [attempt("openai", GPT, "o", json!(503), "overloaded_error")],
        "{log}"
    );
    assert_eq!(log["status"], "error", "{log}");
    assert_eq!(log["status_code"], 503, "{log}");
    assert_no_key(&log);
}
