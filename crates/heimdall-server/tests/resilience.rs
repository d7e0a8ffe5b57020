//! Keys, retries, circuits and concurrency limits, seen from outside: which key reached the
//! mock, how many upstream requests a client request cost (`x-bf-attempts`, the mock's
//! records), how long it took, and what came back. Every `fail_first` KEY is unique to its
//! test: the mock counts them process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::GatewayProcess;
use serde_json::{Value, json};

const KEY_A: &str = "resilience-key-a";
const KEY_B: &str = "resilience-key-b";
const KEY_C: &str = "resilience-key-c";

/// Anthropic with keys `a` and `b` of the given weights, `network` merged into its
/// `network_config` (the mock's base URL stays).
fn anthropic_keys(c: &mut Value, weight_a: f64, weight_b: f64, network: Value) {
    let p = &mut c["providers"]["anthropic"];
    p["keys"] = json!([
        {"name": "a", "value": KEY_A, "models": ["*"], "weight": weight_a},
        {"name": "b", "value": KEY_B, "models": ["*"], "weight": weight_b}
    ]);
    merge(&mut p["network_config"], network);
}

fn merge(into: &mut Value, from: Value) {
    let Value::Object(from) = from else { return };
    for (k, v) in from {
        into[k] = v;
    }
}

/// The x-api-key of every messages request the mock received, oldest first.
fn keys_seen(h: &Harness) -> Vec<String> {
    h.mock
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/v1/messages"))
        .map(|r| r.header("x-api-key").unwrap_or_default().to_owned())
        .collect()
}

/// Upstream requests of any dialect the mock received.
fn upstream_requests(h: &Harness) -> usize {
    h.mock
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

fn header<'r>(res: &'r reqwest::Response, name: &str) -> &'r str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", res.headers()))
        .to_str()
        .unwrap()
}

fn attempts(res: &reqwest::Response) -> u32 {
    header(res, "x-bf-attempts").parse().unwrap()
}

/// The `fields` of the gateway's JSON log line `message` for request `id`; the record is
/// written when the request is over, which may be just after the client got its answer.
async fn logged(gateway: &GatewayProcess, message: &str, id: &str) -> Value {
    for _ in 0..100 {
        let found = gateway.output().lines().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let f = &v["fields"];
            (f["message"] == message && f["request_id"] == id).then(|| f.clone())
        });
        if let Some(f) = found {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no `{message}` for {id} in:\n{}", gateway.output());
}

/// Waits until the mock has received `n` upstream requests.
async fn until_upstream_saw(h: &Harness, n: usize) {
    for _ in 0..250 {
        if upstream_requests(h) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mock saw {} requests, not {n}", upstream_requests(h));
}

// ---------------------------------------------------------------------------------------------
// Key choice

#[tokio::test]
async fn weights_steer_the_key_choice_and_a_key_without_the_model_is_never_picked() {
    const N: usize = 2000;
    const WORKERS: usize = 16;
    let h = Harness::with_config(|c| {
        anthropic_keys(c, 3.0, 1.0, json!({}));
        // The heaviest key, but not for this model: weight must not matter for it.
        c["providers"]["anthropic"]["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "c", "value": KEY_C, "models": ["claude-other-model"], "weight": 100}));
    })
    .await;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (http, url) = (h.http.clone(), h.url("/anthropic/v1/messages"));
        workers.spawn(async move {
            let mut names = Vec::new();
            for _ in 0..N / WORKERS {
                let res = http
                    .post(&url)
                    .json(&request(CLAUDE, "hi", false))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                assert_eq!(attempts(&res), 1);
                names.push(header(&res, "x-bf-key-name").to_owned());
            }
            names
        });
    }
    let mut by_name: HashMap<String, usize> = HashMap::new();
    while let Some(names) = workers.join_next().await {
        for name in names.unwrap() {
            *by_name.entry(name).or_default() += 1;
        }
    }
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for key in keys_seen(&h) {
        *by_key.entry(key).or_default() += 1;
    }
    // Expect 75 % / 25 %. Binomial with n = 2000, p = 0.75: σ = √(2000 · 0.75 · 0.25) ≈ 19.4;
    // ±97 is five σ, so only a wrong weighting fails this (chance: below 10⁻⁶).
    let a = by_name.get("a").copied().unwrap_or(0);
    let b = by_name.get("b").copied().unwrap_or(0);
    assert!((1403..=1597).contains(&a), "{by_name:?}");
    assert_eq!(a + b, N, "only a and b may answer: {by_name:?}");
    assert_eq!(by_name.get("c"), None, "{by_name:?}");
    // The header names the key that really went upstream.
    assert_eq!(by_key.get(KEY_A), Some(&a), "{by_key:?}");
    assert_eq!(by_key.get(KEY_B), Some(&b), "{by_key:?}");
    assert_eq!(by_key.get(KEY_C), None, "{by_key:?}");
}

#[tokio::test]
async fn a_pinned_key_bypasses_weights_and_is_never_swapped_for_another() {
    let h = Harness::with_config(|c| {
        anthropic_keys(
            c,
            1000.0,
            0.0,
            json!({"max_retries": 1, "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20}),
        );
    })
    .await;
    let send = |text: &str| {
        h.http
            .post(h.url("/anthropic/v1/messages"))
            .header("x-bf-api-key", "b")
            .json(&request(CLAUDE, text, false))
            .send()
    };
    for _ in 0..20 {
        let res = send("hi").await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-bf-key-name"), "b");
        assert_eq!(attempts(&res), 1);
    }
    assert!(
        keys_seen(&h).iter().all(|k| k == KEY_B),
        "{:?}",
        keys_seen(&h)
    );

    // A pinned key's 429 and 5xx stay on that key: the pin allows no other.
    h.mock.clear();
    let res = send(&format!("[[mock:key_error {KEY_B} 429]]"))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let res = send(&format!("[[mock:key_error {KEY_B} 500]]"))
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    // Each retried once on `b` as max_retries allows (a 429 without another key to move to
    // is retried like a 5xx): four requests, none on `a`.
    let seen = keys_seen(&h);
    assert!(seen.iter().all(|k| k == KEY_B), "{seen:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// 429

#[tokio::test]
async fn a_429_moves_to_the_other_key_at_once() {
    // Weight 0 beside a weighted key is never chosen first, so `a` always goes first; once
    // `a` is out, `b` is the only key left. max_retries 0: the move is not a retry.
    let h = Harness::with_config(|c| anthropic_keys(c, 1.0, 0.0, json!({"max_retries": 0}))).await;
    for stream in [false, true] {
        h.mock.clear();
        let started = Instant::now();
        let res = h
            .messages(&request(
                CLAUDE,
                &format!("hi [[mock:key_error {KEY_A} 429 retry_after=30]]"),
                stream,
            ))
            .await;
        assert_eq!(res.status(), 200, "stream={stream}");
        assert_eq!(header(&res, "x-bf-key-name"), "b");
        assert_eq!(attempts(&res), 2);
        if stream {
            assert_grammar(&stream_events(res).await, false);
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited for retry-after: {:?}",
            started.elapsed()
        );
        assert_eq!(keys_seen(&h), [KEY_A, KEY_B]);
    }
}

#[tokio::test]
async fn a_429_on_the_only_key_waits_for_retry_after_up_to_the_backoff_cap() {
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"]["max_retries"] = json!(1);
        c["providers"]["anthropic"]["network_config"]["retry_backoff_initial_ms"] = json!(10);
        c["providers"]["anthropic"]["network_config"]["retry_backoff_max_ms"] = json!(3000);
        // No retries at all: a 429 goes back whatever it asks.
        c["providers"]["openai"]["network_config"]["max_retries"] = json!(0);
    })
    .await;

    // Asked for 1 s, within the 3 s cap: retried after the second, not after 10 ms.
    let started = Instant::now();
    let res = h
        .messages(&request(
            CLAUDE,
            "hi [[mock:fail_first 1 429 resilience-429-wait retry_after=1]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried before retry-after: {:?}",
        started.elapsed()
    );

    // Asked for 30 s, past the cap: the 429 goes back at once with its retry-after.
    h.mock.clear();
    let started = Instant::now();
    let res = h
        .messages(&request(
            CLAUDE,
            "hi [[mock:error 429 retry_after=30]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "30");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream_requests(&h), 1);

    h.mock.clear();
    let started = Instant::now();
    let res = h
        .messages(&request(
            GPT,
            "hi [[mock:fail_first 1 429 resilience-429-noretry retry_after=1]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream_requests(&h), 1);
}

// ---------------------------------------------------------------------------------------------
// 401 / 403

#[tokio::test]
async fn a_rejected_key_is_dropped_for_the_request_and_the_other_answers_at_once() {
    // A backoff this long would show if the move to `b` waited; max_retries 0 shows it is
    // not counted as a retry.
    let h = Harness::with_config(|c| {
        anthropic_keys(
            c,
            1.0,
            0.0,
            json!({"max_retries": 0, "retry_backoff_initial_ms": 3000, "retry_backoff_max_ms": 3000}),
        );
    })
    .await;
    for status in [401, 403] {
        h.mock.clear();
        let started = Instant::now();
        let res = h
            .messages(&request(
                CLAUDE,
                &format!("hi [[mock:key_error {KEY_A} {status}]]"),
                false,
            ))
            .await;
        assert_eq!(res.status(), 200, "{status}");
        assert_eq!(header(&res, "x-bf-key-name"), "b");
        assert_eq!(attempts(&res), 2);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(keys_seen(&h), [KEY_A, KEY_B], "{status}");
    }
}

#[tokio::test]
async fn every_key_rejected_is_a_502_that_says_so() {
    let h = Harness::with_config(|c| anthropic_keys(c, 1.0, 1.0, json!({"max_retries": 2}))).await;
    let res = h
        .messages(&request(
            CLAUDE,
            &format!("hi [[mock:key_error {KEY_A} 401]] [[mock:key_error {KEY_B} 403]]"),
            false,
        ))
        .await;
    let (status, e) = error_of(res).await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (502, "api_error"),
        "{e}"
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "every anthropic key that may serve this request was rejected by the upstream for its credentials"
        ),
        "{message}"
    );
    assert!(
        !message.contains(KEY_A) && !message.contains(KEY_B),
        "{message}"
    );
    // Each key once: a rejection is not retried on the same key.
    let mut seen = keys_seen(&h);
    seen.sort();
    assert_eq!(seen, [KEY_A, KEY_B]);
}

#[tokio::test]
async fn the_only_key_rejected_passes_the_upstream_answer_through_unmodified() {
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"]["max_retries"] = json!(2);
    })
    .await;
    let body = request(
        CLAUDE,
        &format!("hi [[mock:key_error {ANTHROPIC_KEY} 401]]"),
        false,
    );
    // What the upstream itself answers to this request, byte for byte.
    let direct = h
        .http
        .post(format!("{}/v1/messages", h.mock.base_url()))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    let want = direct.bytes().await.unwrap();
    h.mock.clear();

    let res = h.messages(&body).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.bytes().await.unwrap(), want);
    assert_eq!(upstream_requests(&h), 1, "a rejection is not retried");
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn server_errors_are_retried_up_to_max_retries() {
    let h = Harness::with_config(|c| {
        let fast = json!({"retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20});
        merge(
            &mut c["providers"]["anthropic"]["network_config"],
            fast.clone(),
        );
        merge(&mut c["providers"]["openai"]["network_config"], fast);
        c["providers"]["anthropic"]["network_config"]["max_retries"] = json!(2);
        c["providers"]["openai"]["network_config"]["max_retries"] = json!(1);
    })
    .await;
    let res = h
        .messages(&request(
            CLAUDE,
            "hi [[mock:fail_first 2 500 resilience-5xx-two]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 3);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "hi");

    // One retry allowed, two failures: the second 500 goes back.
    h.mock.clear();
    let res = h
        .messages(&request(
            GPT,
            "hi [[mock:fail_first 2 500 resilience-5xx-one]]",
            false,
        ))
        .await;
    assert_eq!(res.status(), 500);
    assert_eq!(upstream_requests(&h), 2);
}

#[tokio::test]
async fn client_errors_are_never_retried_nor_moved_to_another_key() {
    let h = Harness::with_config(|c| {
        anthropic_keys(
            c,
            1.0,
            1.0,
            json!({"max_retries": 3, "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20}),
        );
    })
    .await;
    for status in [400, 404, 413, 422] {
        h.mock.clear();
        let res = h
            .messages(&request(
                CLAUDE,
                &format!("hi [[mock:error {status}]]"),
                false,
            ))
            .await;
        assert_eq!(res.status(), status);
        assert_eq!(keys_seen(&h).len(), 1, "{status}");
    }
}

#[tokio::test]
async fn retries_back_off_within_the_configured_bounds() {
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"]["max_retries"] = json!(2);
        c["providers"]["anthropic"]["network_config"]["retry_backoff_initial_ms"] = json!(200);
        c["providers"]["anthropic"]["network_config"]["retry_backoff_max_ms"] = json!(400);
    })
    .await;
    let started = Instant::now();
    let res = h
        .messages(&request(
            CLAUDE,
            "hi [[mock:fail_first 2 503 resilience-backoff]]",
            false,
        ))
        .await;
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 3);
    // Each wait is uniform in [200, 400] ms: 400..800 ms for two, plus the exchanges.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took <= Duration::from_millis(1200), "{took:?}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_answered_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"] = json!({
            "base_url": url, "max_retries": 2,
            "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20
        });
    })
    .await;
    let started = Instant::now();
    let res = h.messages(&request(CLAUDE, "hi", false)).await;
    let id = header(&res, "request-id").to_owned();
    let (status, e) = error_of(res).await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (502, "api_error"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let record = logged(&h.gateway, "request failed", &id).await;
    assert_eq!(record["attempts"], 3, "{record}");
}

// ---------------------------------------------------------------------------------------------
// Timeouts

#[tokio::test]
async fn a_silent_upstream_is_a_504_before_a_stream_starts_and_an_error_event_after() {
    let h = Harness::with_config(|c| {
        for p in ["anthropic", "openai"] {
            c["providers"][p]["network_config"]["default_request_timeout_in_seconds"] = json!(1);
            c["providers"][p]["network_config"]["stream_idle_timeout_in_seconds"] = json!(1);
        }
    })
    .await;
    for model in [CLAUDE, GPT] {
        // Nothing at all (not even the head) within the request timeout.
        for stream in [false, true] {
            let started = Instant::now();
            let res = h
                .messages(&request(model, "hi [[mock:delay 3000]]", stream))
                .await;
            let (status, e) = error_of(res).await;
            assert_eq!(
                (status, e["type"].as_str().unwrap()),
                (504, "timeout_error"),
                "{model} stream={stream}: {e}"
            );
            let took = started.elapsed();
            assert!(took < Duration::from_millis(2500), "{model}: {took:?}");
        }
        // Silent after the first events: the stream has started, so an error event ends it.
        let started = Instant::now();
        let res = h
            .messages(&request(
                model,
                "alpha beta gamma [[mock:stall 3000]]",
                true,
            ))
            .await;
        let events = stream_events(res).await;
        assert_grammar(&events, true);
        assert_eq!(
            events.last().unwrap().data["error"]["type"],
            "timeout_error",
            "{model}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2500), "{model}: {took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Streams

#[tokio::test]
async fn a_stream_is_retried_before_its_first_byte_and_never_after() {
    let h = Harness::with_config(|c| {
        for p in ["anthropic", "openai"] {
            let n = &mut c["providers"][p]["network_config"];
            n["max_retries"] = json!(1);
            n["retry_backoff_initial_ms"] = json!(10);
            n["retry_backoff_max_ms"] = json!(20);
        }
    })
    .await;
    for model in [CLAUDE, GPT] {
        h.mock.clear();
        let res = h
            .messages(&request(
                model,
                &format!("alpha beta [[mock:fail_first 1 500 resilience-stream-{model}]]"),
                true,
            ))
            .await;
        assert_eq!(attempts(&res), 2, "{model}");
        let events = stream_events(res).await;
        assert_grammar(&events, false);
        assert_eq!(streamed_text(&events), "alpha beta", "{model}");
        assert_eq!(upstream_requests(&h), 2, "{model}");

        // Cut after the first events: bytes are out, so the stream ends with an error event
        // and is not sent again.
        h.mock.clear();
        let res = h
            .messages(&request(model, "alpha beta gamma [[mock:cut]]", true))
            .await;
        assert_eq!(attempts(&res), 1, "{model}");
        let events = stream_events(res).await;
        assert_grammar(&events, true);
        assert_eq!(upstream_requests(&h), 1, "{model}");
    }
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker

/// Anthropic keys `a` and `b`, `a` always first while its circuit is closed (`b` weighs 0);
/// two consecutive failures open a circuit for 1 s; max_retries 3 lets a request whose key
/// failed move on to `b` once `a` is skipped.
async fn circuit_harness() -> Harness {
    Harness::with_config(|c| {
        anthropic_keys(
            c,
            1.0,
            0.0,
            json!({"max_retries": 3, "retry_backoff_initial_ms": 10, "retry_backoff_max_ms": 20}),
        );
        c["providers"]["anthropic"]["circuit_breaker"] =
            json!({"failure_threshold": 2, "cooldown_seconds": 1});
    })
    .await
}

/// Sends requests whose key `a` answers 500 until `a`'s circuit opens (two failures, the
/// retry after the second on `b`).
async fn open_circuit_of_a(h: &Harness) {
    let res = h.messages(&request(CLAUDE, &failing_a(), false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-bf-key-name"), "b");
    assert_eq!(attempts(&res), 3);
    assert_eq!(keys_seen(h), [KEY_A, KEY_A, KEY_B]);
    assert!(h.gateway.output().contains("key circuit opened"));
    h.mock.clear();
}

fn failing_a() -> String {
    format!("hi [[mock:key_error {KEY_A} 500]]")
}

#[tokio::test]
async fn consecutive_failures_open_a_key_circuit_and_its_key_is_skipped() {
    let h = circuit_harness().await;
    open_circuit_of_a(&h).await;
    // Open: `a` is not tried at all, whatever its weight, within the cool-down.
    for _ in 0..5 {
        let res = h.messages(&request(CLAUDE, &failing_a(), false)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-bf-key-name"), "b");
        assert_eq!(attempts(&res), 1);
    }
    assert!(
        keys_seen(&h).iter().all(|k| k == KEY_B),
        "{:?}",
        keys_seen(&h)
    );
}

// An open key beside a healthy one is still probed once per cool-down: otherwise it would stay
// skipped for good as long as the other key works.
#[tokio::test]
async fn an_open_circuit_is_probed_by_one_request_after_each_cool_down() {
    let h = circuit_harness().await;
    open_circuit_of_a(&h).await;

    // After the cool-down exactly one request probes `a`; it fails, so the circuit opens
    // again and that request moves on to `b`.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..4 {
        let res = h.messages(&request(CLAUDE, &failing_a(), false)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-bf-key-name"), "b");
    }
    let probes = keys_seen(&h).iter().filter(|k| *k == KEY_A).count();
    assert_eq!(probes, 1, "one probe per cool-down: {:?}", keys_seen(&h));

    // Next cool-down: `a` works again, the probe closes the circuit and `a` is used again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.mock.clear();
    for _ in 0..3 {
        let res = h.messages(&request(CLAUDE, "hi", false)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-bf-key-name"), "a");
        assert_eq!(attempts(&res), 1);
    }
    assert!(h.gateway.output().contains("key circuit closed"));
}

#[tokio::test]
async fn with_every_circuit_open_and_no_fallback_the_keys_are_tried_anyway() {
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["circuit_breaker"] =
            json!({"failure_threshold": 2, "cooldown_seconds": 60});
    })
    .await;
    for _ in 0..2 {
        let res = h
            .messages(&request(CLAUDE, "hi [[mock:error 500]]", false))
            .await;
        assert_eq!(res.status(), 500);
    }
    assert!(h.gateway.output().contains("key circuit opened"));
    // Long before the cool-down ends: refusing would help no one, so the one key is used,
    // and its success closes the circuit.
    let res = h.messages(&request(CLAUDE, "hi", false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&res), 1);
    assert_eq!(upstream_requests(&h), 3);
    assert!(h.gateway.output().contains("key circuit closed"));
}

// ---------------------------------------------------------------------------------------------
// concurrency_and_buffer_size

/// One slot and no queue for Anthropic.
fn one_slot(c: &mut Value, drop_excess: bool) {
    c["providers"]["anthropic"]["concurrency_and_buffer_size"] =
        json!({"concurrency": 1, "buffer_size": 0});
    c["client"] = json!({"drop_excess_requests": drop_excess});
}

#[tokio::test]
async fn past_the_limit_a_request_is_refused_at_once_when_excess_is_dropped() {
    let h = Harness::with_config(|c| one_slot(c, true)).await;
    let (http, url) = (h.http.clone(), h.url("/anthropic/v1/messages"));
    let slow = tokio::spawn(async move {
        http.post(url)
            .json(&request(CLAUDE, "slow [[mock:delay 1500]]", false))
            .send()
            .await
            .unwrap()
            .status()
    });
    until_upstream_saw(&h, 1).await;
    let started = Instant::now();
    let (status, e) = error_of(h.messages(&request(CLAUDE, "hi", false)).await).await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (529, "overloaded_error"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        upstream_requests(&h),
        1,
        "the refused request reached no upstream"
    );
    assert_eq!(slow.await.unwrap(), 200);
    // The slot came back with the answer.
    assert_eq!(
        h.messages(&request(CLAUDE, "hi", false)).await.status(),
        200
    );
}

#[tokio::test]
async fn past_the_limit_a_request_waits_for_the_slot_without_dropping() {
    let h = Harness::with_config(|c| one_slot(c, false)).await;
    let (http, url) = (h.http.clone(), h.url("/anthropic/v1/messages"));
    let began = Instant::now();
    let slow = tokio::spawn(async move {
        let res = http
            .post(url)
            .json(&request(CLAUDE, "slow [[mock:delay 1500]]", false))
            .send()
            .await
            .unwrap();
        (res.status(), Instant::now())
    });
    until_upstream_saw(&h, 1).await;
    let (http, url) = (h.http.clone(), h.url("/anthropic/v1/messages"));
    let waiting = tokio::spawn(async move {
        let res = http
            .post(url)
            .json(&request(CLAUDE, "hi", false))
            .send()
            .await
            .unwrap();
        (res.status(), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        upstream_requests(&h),
        1,
        "the second went upstream beside the first"
    );
    let (slow_status, _) = slow.await.unwrap();
    let (status, done) = waiting.await.unwrap();
    assert_eq!((slow_status.as_u16(), status.as_u16()), (200, 200));
    // The first holds the slot until its upstream answer (1.5 s) is complete; which client
    // task then sees its answer first is up to the scheduler.
    assert!(
        done.duration_since(began) >= Duration::from_millis(1500),
        "the second answered before the first's upstream answer was complete"
    );
    assert_eq!(upstream_requests(&h), 2);
}

#[tokio::test]
async fn a_stream_holds_its_slot_until_it_ends() {
    let h = Harness::with_config(|c| one_slot(c, true)).await;
    // Stalled mid-stream: started, not over.
    let res = h
        .messages(&request(CLAUDE, "alpha beta [[mock:stall 1500]]", true))
        .await;
    assert_eq!(res.status(), 200);
    let reading = tokio::spawn(async move { res.text().await.unwrap() });
    let (status, e) = error_of(h.messages(&request(CLAUDE, "hi", false)).await).await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (529, "overloaded_error"),
        "{e}"
    );
    let events = parse_sse(&reading.await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(
        h.messages(&request(CLAUDE, "hi", false)).await.status(),
        200
    );

    // A stream is over at message_stop even if the upstream holds its connection open: the
    // slot comes back then, not when the upstream lets go.
    let started = Instant::now();
    let res = h
        .messages(&request(CLAUDE, "alpha [[mock:hold_open 20000]]", true))
        .await;
    assert_grammar(&stream_events(res).await, false);
    assert_eq!(
        h.messages(&request(CLAUDE, "hi", false)).await.status(),
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
