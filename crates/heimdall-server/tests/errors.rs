//! Every failure answers in Anthropic's error shape with the right status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn pass_through_errors_reach_the_client_unmodified() {
    let h = Harness::start().await;
    let body = request(CLAUDE, "[[mock:error 429 retry_after=3]]", false);
    // What the upstream itself answers to this request.
    let direct = h
        .http
        .post(format!("{}/v1/messages", h.mock.base_url()))
        .header("x-api-key", common::ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let direct_status = direct.status();
    let direct_type = direct.headers()["content-type"].clone();
    let direct_body = direct.bytes().await.unwrap();
    let res = h.messages(&body).await;
    assert_eq!(res.status(), direct_status);
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(res.headers()["content-type"], direct_type);
    assert!(
        res.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(res.bytes().await.unwrap(), direct_body);
}

#[tokio::test]
async fn upstream_errors_keep_status_and_retry_after_for_both_providers() {
    let h = Harness::start().await;
    for model in [CLAUDE, GPT] {
        let res = h
            .messages(&request(model, "[[mock:error 429 retry_after=7]]", false))
            .await;
        assert_eq!(res.headers()["retry-after"], "7", "{model}");
        let (status, e) = error_of(res).await;
        assert_eq!(
            (status, e["type"].as_str().unwrap()),
            (429, "rate_limit_error"),
            "{model}"
        );

        for (code, kind) in [
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (500, "api_error"),
            (529, "overloaded_error"),
        ] {
            let res = h
                .messages(&request(model, &format!("[[mock:error {code}]]"), false))
                .await;
            let (status, e) = error_of(res).await;
            assert_eq!(
                (status, e["type"].as_str().unwrap()),
                (code, kind),
                "{model}"
            );
            assert!(
                !e["message"].as_str().unwrap().contains("mock-"),
                "key leaked: {e}"
            );
        }
        // Same for streaming requests: the error comes before any byte of the stream.
        let res = h
            .messages(&request(model, "[[mock:error 503]]", true))
            .await;
        let (status, e) = error_of(res).await;
        // A translated upstream's 503 is classified; an Anthropic upstream's body is its own.
        let kind = if model == CLAUDE {
            "api_error"
        } else {
            "overloaded_error"
        };
        assert_eq!(
            (status, e["type"].as_str().unwrap()),
            (503, kind),
            "{model}"
        );
    }
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let h = Harness::start().await;
    let post = |body: String| {
        h.http
            .post(h.url("/anthropic/v1/messages"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        ("{not json", "not valid JSON"),
        (r#"{"max_tokens":1,"messages":[]}"#, "model: Field required"),
        (
            r#"{"model":"claude-x","messages":[]}"#,
            "max_tokens: Field required",
        ),
        (
            r#"{"model":"claude-x","max_tokens":1}"#,
            "messages: Field required",
        ),
        (
            r#"{"model":"claude-x","max_tokens":"many","messages":[]}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"claude-x","max_tokens":1,"messages":"hi"}"#,
            "messages",
        ),
        (
            r#"{"model":"openai/gpt-4o-mini","max_tokens":1,"messages":[{"role":"user","content":5}]}"#,
            "messages",
        ),
    ];
    for (body, needle) in cases {
        let (status, e) = error_of(post(body.to_owned()).await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    assert!(h.mock.requests().is_empty());
}

#[tokio::test]
async fn unknown_and_unconfigured_providers_are_named() {
    let h = Harness::with_config(|c| {
        c["providers"].as_object_mut().unwrap().remove("openai");
    })
    .await;
    let (status, e) = error_of(h.messages(&request("nope/some-model", "hi", false)).await).await;
    assert_eq!(status, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown provider `nope`")
    );
    let (status, e) = error_of(h.messages(&request(GPT, "hi", false)).await).await;
    assert_eq!(status, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("provider `openai` is not configured"),
        "{e}"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let h = Harness::with_config(|c| c["client"] = json!({"max_request_body_size_mb": 1})).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let (status, e) = error_of(h.messages(&request(CLAUDE, &big, false)).await).await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (413, "request_too_large")
    );
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_and_unknown_routes_a_404() {
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"]["base_url"] = json!("http://127.0.0.1:9");
    })
    .await;
    let (status, e) = error_of(h.messages(&request(GPT, "hi", false)).await).await;
    assert_eq!((status, e["type"].as_str().unwrap()), (502, "api_error"));
    let (status, e) = error_of(
        h.http
            .get(h.url("/anthropic/v1/nothing"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["type"].as_str().unwrap()),
        (404, "not_found_error")
    );
}

#[tokio::test]
async fn timeouts_apply_before_and_during_streams() {
    let h = Harness::with_config(|c| {
        for p in ["anthropic", "openai"] {
            c["providers"][p]["network_config"]["default_request_timeout_in_seconds"] = json!(1);
            c["providers"][p]["network_config"]["stream_idle_timeout_in_seconds"] = json!(1);
        }
    })
    .await;
    for model in [CLAUDE, GPT] {
        let started = std::time::Instant::now();
        let (status, e) = error_of(
            h.messages(&request(model, "[[mock:delay 4000]]", false))
                .await,
        )
        .await;
        assert_eq!(
            (status, e["type"].as_str().unwrap()),
            (504, "timeout_error")
        );
        assert!(started.elapsed().as_secs_f64() < 3.0);

        let res = h
            .messages(&request(model, "a b c [[mock:stall 4000]]", true))
            .await;
        assert_eq!(res.status(), 200);
        let events = parse_sse(&res.text().await.unwrap());
        let last = events.last().unwrap();
        assert_eq!(last.name, "error", "{model}: {events:?}");
        assert_eq!(last.data["error"]["type"], "timeout_error");
    }
}

#[tokio::test]
async fn retries_recover_and_429_moves_to_another_key() {
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"]["max_retries"] = json!(2);
        c["providers"]["openai"]["network_config"]["retry_backoff_initial_ms"] = json!(10);
        c["providers"]["openai"]["keys"] = json!([
            {"name": "k1", "value": "key-one", "weight": 1},
            {"name": "k2", "value": "key-two", "weight": 1}
        ]);
    })
    .await;
    let res = h
        .messages(&request(GPT, "ok [[mock:fail_first 2 500 retry-a]]", false))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(h.mock.requests().len(), 3);

    h.mock.clear();
    let res = h
        .messages(&request(GPT, "ok [[mock:fail_first 1 429 retry-b]]", false))
        .await;
    assert_eq!(res.status(), 200);
    let keys: Vec<String> = h
        .mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "a 429 must rotate to the other key");
}
