//! The `semantic_cache` plugin end to end: the real binary against the mock, whose embeddings
//! are trigram vectors (`heimdall_testkit::mock::embeddings`), so a paraphrase's similarity is
//! known before the request is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use heimdall_testkit::mock::embeddings::similarity;
use serde_json::{Value, json};

const DIMENSION: usize = 256;
const QUESTION: &str = "What is the capital of France?";
const PARAPHRASE: &str = "What is the capital of France, please?";
const UNRELATED: &str = "Write a haiku about autumn leaves";

/// The plugin with the mock's OpenAI-compatible embeddings, threshold 0.8.
fn with_cache(extra: Value) -> impl FnOnce(&mut Value) {
    move |c: &mut Value| {
        let mut config = json!({
            "provider": "openai", "embedding_model": format!("trigram-{DIMENSION}"),
            "dimension": DIMENSION, "threshold": 0.8, "ttl": "5m"
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        c["plugins"] = json!([{"enabled": true, "name": "semantic_cache", "config": config}]);
    }
}

async fn send(h: &Harness, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    send_to(h.gateway.base_url(), body, headers).await
}

async fn send_to(base_url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = heimdall_testkit::http_client()
        .post(format!("{base_url}/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.json(body).send().await.unwrap()
}

fn header<'r>(res: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The answer's text, and whether the cache hit (and how).
async fn ask(h: &Harness, text: &str, headers: &[(&str, &str)]) -> (String, Option<String>) {
    ask_on(h.gateway.base_url(), text, headers).await
}

async fn ask_on(base_url: &str, text: &str, headers: &[(&str, &str)]) -> (String, Option<String>) {
    let res = send_to(base_url, &request(CLAUDE, text, false), headers).await;
    assert_eq!(res.status(), 200);
    let hit = match header(&res, "x-bf-cache-hit") {
        Some("true") => Some(header(&res, "x-bf-cache-hit-type").unwrap().to_owned()),
        Some("false") => None,
        other => panic!("x-bf-cache-hit: {other:?}"),
    };
    let v: Value = res.json().await.unwrap();
    (v["content"][0]["text"].as_str().unwrap().to_owned(), hit)
}

fn upstream_messages(h: &Harness) -> usize {
    h.mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .count()
}

fn embedding_calls(h: &Harness) -> usize {
    h.mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .count()
}

const KEY: (&str, &str) = ("x-bf-cache-key", "tenant-a");

/// `/api/logs?{query}`'s records once it lists `count` (the log writer batches them).
async fn logs_when(h: &Harness, query: &str, count: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = h.get_json(&format!("/api/logs?{query}")).await;
        let total = page["pagination"]["total_count"].as_u64().unwrap();
        if total >= count {
            assert_eq!(total, count, "{query}: {page}");
            return page["logs"].as_array().unwrap().clone();
        }
        assert!(std::time::Instant::now() < deadline, "{query}: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_identical_request_is_a_direct_hit_with_the_same_answer() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    let first = send(&h, &request(CLAUDE, QUESTION, false), &[KEY]).await;
    assert_eq!(header(&first, "x-bf-cache-hit"), Some("false"));
    assert_eq!(header(&first, "x-bf-provider"), Some("anthropic"));
    let first = first.bytes().await.unwrap();
    let second = send(&h, &request(CLAUDE, QUESTION, false), &[KEY]).await;
    assert_eq!(header(&second, "x-bf-cache-hit"), Some("true"));
    assert_eq!(header(&second, "x-bf-cache-hit-type"), Some("direct"));
    assert!(header(&second, "x-bf-cache-id").unwrap().starts_with("ce_"));
    assert_eq!(
        header(&second, "x-bf-provider"),
        None,
        "no upstream answered"
    );
    assert_eq!(second.bytes().await.unwrap(), first, "the stored bytes");
    assert_eq!(upstream_messages(&h), 1);
    // Another cache key never sees tenant-a's entries; no key, no caching at all.
    let (_, hit) = ask(&h, QUESTION, &[("x-bf-cache-key", "tenant-b")]).await;
    assert_eq!(hit, None);
    let res = send(&h, &request(CLAUDE, QUESTION, false), &[]).await;
    assert_eq!(header(&res, "x-bf-cache-hit"), None);
    assert_eq!(upstream_messages(&h), 3);
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("bifrost_cache_hits_total{cache_type=\"direct\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("heimdall_cache_entries 2"), "{metrics}");
}

#[tokio::test]
async fn a_paraphrase_above_the_threshold_is_a_semantic_hit_and_an_unrelated_text_misses() {
    let close = similarity(
        &format!("user: {QUESTION}"),
        &format!("user: {PARAPHRASE}"),
        DIMENSION,
    );
    let far = similarity(
        &format!("user: {QUESTION}"),
        &format!("user: {UNRELATED}"),
        DIMENSION,
    );
    assert!(
        close >= 0.8 && far < 0.8,
        "texts chosen for 0.8: {close} {far}"
    );
    let h = Harness::with_config(with_cache(json!({}))).await;
    assert_eq!(ask(&h, QUESTION, &[KEY]).await, (QUESTION.to_owned(), None));
    let res = send(&h, &request(CLAUDE, PARAPHRASE, false), &[KEY]).await;
    assert_eq!(header(&res, "x-bf-cache-hit-type"), Some("semantic"));
    let reported: f32 = header(&res, "x-bf-cache-similarity")
        .unwrap()
        .parse()
        .unwrap();
    assert!((reported - close).abs() < 1e-3, "{reported} vs {close}");
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["content"][0]["text"], QUESTION,
        "the first question's answer"
    );
    assert_eq!(
        ask(&h, UNRELATED, &[KEY]).await,
        (UNRELATED.to_owned(), None)
    );
    assert_eq!(upstream_messages(&h), 2);
    // One embedding per lookup that missed directly.
    assert_eq!(embedding_calls(&h), 3);
}

#[tokio::test]
async fn per_request_headers_change_threshold_kind_ttl_and_storing() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    ask(&h, QUESTION, &[KEY]).await;
    // A threshold above the paraphrase's similarity misses; `direct` never embeds.
    let (_, hit) = ask(
        &h,
        PARAPHRASE,
        &[
            KEY,
            ("x-bf-cache-threshold", "0.999"),
            ("x-bf-cache-no-store", "true"),
        ],
    )
    .await;
    assert_eq!(hit, None);
    let before = embedding_calls(&h);
    let (_, hit) = ask(
        &h,
        PARAPHRASE,
        &[
            KEY,
            ("x-bf-cache-type", "direct"),
            ("x-bf-cache-no-store", "true"),
        ],
    )
    .await;
    assert_eq!(hit, None);
    assert_eq!(embedding_calls(&h), before, "direct lookups embed nothing");
    let (_, hit) = ask(&h, QUESTION, &[KEY, ("x-bf-cache-type", "semantic")]).await;
    assert_eq!(hit.as_deref(), Some("semantic"));
    // No-store: looked up, answered, not kept.
    let (_, hit) = ask(&h, UNRELATED, &[KEY, ("x-bf-cache-no-store", "true")]).await;
    assert_eq!(hit, None);
    let (_, hit) = ask(&h, UNRELATED, &[KEY]).await;
    assert_eq!(hit, None, "the no-store answer was not kept");
    // A one-second lifetime answers at once and not after it.
    let key = ("x-bf-cache-key", "short-lived");
    ask(&h, QUESTION, &[key, ("x-bf-cache-ttl", "1s")]).await;
    assert_eq!(ask(&h, QUESTION, &[key]).await.1.as_deref(), Some("direct"));
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(ask(&h, QUESTION, &[key]).await.1, None, "expired");
}

#[tokio::test]
async fn a_stream_is_replayed_byte_for_byte_and_keeps_the_grammar() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    let body = request(CLAUDE, "Tell me a story [[mock:words 40]]", true);
    let first = send(&h, &body, &[KEY]).await;
    assert_eq!(header(&first, "x-bf-cache-hit"), Some("false"));
    let first = first.text().await.unwrap();
    assert_grammar(&parse_sse(&first), false);
    let second = send(&h, &body, &[KEY]).await;
    assert_eq!(header(&second, "x-bf-cache-hit-type"), Some("direct"));
    assert!(
        header(&second, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let second = second.text().await.unwrap();
    assert_eq!(second, first);
    heimdall_testkit::grammar::assert_stream(&second, Ending::MessageStop);
    // A stream and a JSON answer of the same request are different entries.
    let res = send(
        &h,
        &request(CLAUDE, "Tell me a story [[mock:words 40]]", false),
        &[KEY],
    )
    .await;
    assert_eq!(header(&res, "x-bf-cache-hit"), Some("false"));
    // A translated stream (OpenAI upstream) is cached the same way.
    let body = request(GPT, "Count to five", true);
    let first = send(&h, &body, &[KEY]).await.text().await.unwrap();
    let second = send(&h, &body, &[KEY]).await;
    assert_eq!(header(&second, "x-bf-cache-hit-type"), Some("direct"));
    let second = second.text().await.unwrap();
    assert_eq!(second, first);
    heimdall_testkit::grammar::assert_stream(&second, Ending::MessageStop);
}

#[tokio::test]
async fn cut_short_and_failed_answers_are_not_stored() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    for text in ["long [[mock:finish max_tokens]]", "oops [[mock:error 500]]"] {
        for _ in 0..2 {
            let res = send(&h, &request(CLAUDE, text, false), &[KEY]).await;
            assert_ne!(header(&res, "x-bf-cache-hit"), Some("true"), "{text}");
        }
    }
    let body = request(CLAUDE, "cut [[mock:eof after_content]]", true);
    for _ in 0..2 {
        let res = send(&h, &body, &[KEY]).await;
        assert_eq!(header(&res, "x-bf-cache-hit"), Some("false"));
        assert_grammar(&parse_sse(&res.text().await.unwrap()), true);
    }
}

#[tokio::test]
async fn an_embedding_provider_that_is_down_leaves_direct_caching_working() {
    let h = Harness::with_config(|c| {
        with_cache(json!({}))(c);
        // Nothing listens on port 9: every embedding call fails to connect.
        c["providers"]["openai"]["network_config"]["base_url"] = json!("http://127.0.0.1:9");
    })
    .await;
    assert_eq!(ask(&h, QUESTION, &[KEY]).await, (QUESTION.to_owned(), None));
    assert_eq!(
        ask(&h, PARAPHRASE, &[KEY]).await,
        (PARAPHRASE.to_owned(), None)
    );
    assert_eq!(ask(&h, QUESTION, &[KEY]).await.1.as_deref(), Some("direct"));
    assert!(
        h.gateway
            .output()
            .contains("semantic cache embedding failed"),
        "{}",
        h.gateway.output()
    );
    // Each failed embedding (the two misses; the direct hit embeds nothing) is a failed
    // request of its own; the client's three requests all succeeded.
    logs_when(&h, "", 5).await;
    logs_when(&h, "providers=anthropic&status=success", 3).await;
    for log in logs_when(&h, "status=error", 2).await {
        assert_eq!(log["endpoint"], "embeddings", "{log}");
        assert_eq!(log["provider"], "openai", "{log}");
        assert!(log["status_code"].as_u64().unwrap() >= 500, "{log}");
        assert!(log["error_type"].is_string(), "{log}");
        assert!(!log["error_message"].as_str().unwrap().is_empty(), "{log}");
    }
}

#[tokio::test]
async fn each_embedding_call_is_a_request_of_its_own_in_the_logs() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    let res = send(&h, &request(CLAUDE, QUESTION, false), &[KEY]).await;
    assert_eq!(res.status(), 200);
    let asked = header(&res, "request-id").unwrap().to_owned();
    assert_eq!(
        ask(&h, PARAPHRASE, &[KEY]).await.1.as_deref(),
        Some("semantic")
    );
    // Two requests to Anthropic's model (one answered by the cache), each embedded first.
    logs_when(&h, "", 4).await;
    logs_when(&h, "providers=anthropic", 2).await;
    let embeddings = logs_when(&h, "providers=openai", 2).await;
    for log in &embeddings {
        assert_eq!(log["endpoint"], "embeddings", "{log}");
        assert_eq!(log["model"], format!("trigram-{DIMENSION}"), "{log}");
        assert_eq!(log["key_name"], "o", "{log}");
        assert_eq!(log["status"], "success", "{log}");
        assert_eq!(log["attempts"], 1, "{log}");
        assert!(log["input_tokens"].as_u64().unwrap() > 0, "{log}");
        assert!(log["id"].as_str().unwrap().starts_with("req_"), "{log}");
        assert_ne!(log["id"], asked.as_str(), "an id of its own");
    }
    let one = h
        .get_json(&format!(
            "/api/logs/{}",
            embeddings[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(one["input"].is_null() && one["output"].is_null(), "{one}");
    let user = h.get_json(&format!("/api/logs/{asked}")).await;
    assert_eq!(user["endpoint"], "messages", "{user}");
    assert_eq!(user["status"], "success", "{user}");
}

/// The paraphrase is a semantic hit with embeddings from `provider` (its config `section`,
/// pointed at the mock), sent to the mock's `path` in that provider's shape; each call is
/// recorded with `key_name`, and with its input tokens when the shape reports them.
async fn a_semantic_hit_through(
    provider: &'static str,
    mut section: Value,
    path: &str,
    key_name: &str,
    reports_usage: bool,
) {
    let h = Harness::with_config(move |c| {
        section["network_config"] = c["providers"]["openai"]["network_config"].clone();
        c["providers"][provider] = section;
        with_cache(json!({"provider": provider}))(c);
    })
    .await;
    assert_eq!(ask(&h, QUESTION, &[KEY]).await, (QUESTION.to_owned(), None));
    let (answer, hit) = ask(&h, PARAPHRASE, &[KEY]).await;
    assert_eq!(
        (answer.as_str(), hit.as_deref()),
        (QUESTION, Some("semantic"))
    );
    let calls = h.mock.requests().iter().filter(|r| r.path == path).count();
    assert_eq!(calls, 2, "{path}");
    assert_eq!(embedding_calls(&h), 0, "not in OpenAI's shape");
    for log in logs_when(&h, &format!("providers={provider}"), 2).await {
        assert_eq!(log["endpoint"], "embeddings", "{log}");
        assert_eq!(log["status"], "success", "{log}");
        assert_eq!(log["key_name"], key_name, "{log}");
        assert_eq!(
            log["input_tokens"].as_u64().unwrap() > 0,
            reports_usage,
            "{log}"
        );
    }
}

#[tokio::test]
async fn gemini_embed_content_gives_a_semantic_hit() {
    let section = json!({"keys": [{"name": "g", "value": "mock-gemini-key", "models": ["*"],
                                   "weight": 1}]});
    let path = format!("/v1beta/models/trigram-{DIMENSION}:embedContent");
    a_semantic_hit_through("gemini", section, &path, "g", false).await;
}

#[tokio::test]
async fn ollama_api_embed_gives_a_semantic_hit() {
    // A keyless server: its calls carry no credentials, under the key name `none`.
    a_semantic_hit_through("ollama", json!({}), "/api/embed", "none", true).await;
}

#[tokio::test]
async fn direct_only_mode_needs_no_embedding_provider() {
    let h = Harness::with_config(|c| {
        c["plugins"] = json!([{"name": "semantic_cache", "config": {"dimension": 1, "ttl": 60}}]);
    })
    .await;
    ask(&h, QUESTION, &[KEY]).await;
    assert_eq!(ask(&h, QUESTION, &[KEY]).await.1.as_deref(), Some("direct"));
    assert_eq!(ask(&h, PARAPHRASE, &[KEY]).await.1, None);
    assert_eq!(embedding_calls(&h), 0);
}

#[tokio::test]
async fn the_admin_api_clears_by_id_by_key_and_everything() {
    let h = Harness::with_config(with_cache(json!({}))).await;
    let clear = |path: &str| h.http.delete(h.url(path)).send();
    ask(&h, QUESTION, &[KEY]).await;
    let res = send(&h, &request(CLAUDE, QUESTION, false), &[KEY]).await;
    let id = header(&res, "x-bf-cache-id").unwrap().to_owned();
    let res = clear(&format!("/api/cache/clear/{id}")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"cleared": 1}));
    assert_eq!(
        clear(&format!("/api/cache/clear/{id}"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(ask(&h, QUESTION, &[KEY]).await.1, None, "cleared");
    ask(&h, UNRELATED, &[KEY]).await;
    let res = clear("/api/cache/clear-by-key/tenant-a").await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"cleared": 2}));
    ask(&h, QUESTION, &[KEY]).await;
    let res = clear("/api/cache/clear").await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"cleared": 1}));
}

#[tokio::test]
async fn entries_survive_a_restart_and_cleanup_on_shutdown_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("logs.db");
    let mock = heimdall_testkit::MockServer::start(heimdall_testkit::MockOptions::default())
        .await
        .unwrap();
    let config = |cleanup: bool| {
        let mut c = config(
            &mock.base_url(),
            with_cache(json!({"cleanup_on_shutdown": cleanup})),
        );
        c["logs_store"] = json!({"enabled": true, "type": "sqlite", "config": {"path": db}});
        c
    };
    let start = |c: Value| async move {
        heimdall_testkit::GatewayProcess::start(bin(), Some(&c), &[], &[])
            .await
            .unwrap()
    };
    for cleanup in [false, true] {
        let mut gateway = start(config(cleanup)).await;
        ask_on(gateway.base_url(), QUESTION, &[KEY]).await;
        terminate(&gateway);
        gateway
            .wait_exit(std::time::Duration::from_secs(20))
            .await
            .unwrap();
        let gateway = start(config(false)).await;
        let (_, hit) = ask_on(gateway.base_url(), PARAPHRASE, &[KEY]).await;
        assert_eq!(hit.is_some(), !cleanup, "cleanup {cleanup}");
        drop(gateway);
        if !cleanup {
            // Start the second round empty.
            let mut gateway = start(config(true)).await;
            terminate(&gateway);
            gateway
                .wait_exit(std::time::Duration::from_secs(20))
                .await
                .unwrap();
        }
    }
}

/// Asks `text` every 20 ms, without storing the answer, until the hit is `expected`; fails
/// past `limit`.
async fn until_hit(base_url: &str, text: &str, key: &str, expected: Option<&str>, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let headers = [("x-bf-cache-key", key), ("x-bf-cache-no-store", "true")];
        let (answer, hit) = ask_on(base_url, text, &headers).await;
        if hit.as_deref() == expected {
            if expected.is_some() {
                assert_eq!(answer, QUESTION, "the stored answer");
            }
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{text}: still {hit:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_sharing_redis_answer_and_clear_each_others_entries() {
    let prefix = RedisPrefix(format!(
        "heimdall-test:{}:{}:cache:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mock = heimdall_testkit::MockServer::start(heimdall_testkit::MockOptions::default())
        .await
        .unwrap();
    let shared = config(&mock.base_url(), |c| {
        with_cache(json!({}))(c);
        c["vector_store"] = json!({"enabled": true, "type": "redis",
            "config": {"addr": "127.0.0.1:6379", "db": 0, "key_prefix": prefix.0}});
    });
    let start = || heimdall_testkit::GatewayProcess::start(bin(), Some(&shared), &[], &[]);
    let (first, other) = (start().await.unwrap(), start().await.unwrap());
    let (a, b) = (first.base_url(), other.base_url());
    let second = Duration::from_secs(1);

    // Stored through A: a direct and a semantic hit on B within a second (B stores nothing
    // itself: every request to it is `no-store`).
    assert_eq!(
        ask_on(a, QUESTION, &[KEY]).await,
        (QUESTION.to_owned(), None)
    );
    until_hit(b, QUESTION, KEY.1, Some("direct"), second).await;
    until_hit(b, PARAPHRASE, KEY.1, Some("semantic"), second).await;

    // Cleared through A: B misses within a second.
    let cleared: Value = heimdall_testkit::http_client()
        .delete(format!("{a}/api/cache/clear-by-key/{}", KEY.1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared, json!({"cleared": 1}));
    until_hit(b, QUESTION, KEY.1, None, second).await;

    // Stored through B for 2 s: a hit on A, then a miss once it expired.
    let short = "short-lived";
    let stored_at = std::time::Instant::now();
    ask_on(
        b,
        QUESTION,
        &[("x-bf-cache-key", short), ("x-bf-cache-ttl", "2s")],
    )
    .await;
    until_hit(a, QUESTION, short, Some("direct"), second).await;
    tokio::time::sleep(
        (stored_at + Duration::from_millis(2300))
            .saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    until_hit(a, QUESTION, short, None, Duration::ZERO).await;
}
