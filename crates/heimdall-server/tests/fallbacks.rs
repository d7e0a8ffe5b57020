//! Fallback chains, the `x-bf-*` headers that say who answered, session affinity and clients'
//! own provider keys, seen from outside: the real binary in front of the mock upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use common::*;
use heimdall_testkit::RecordedRequest;
use serde_json::{Value, json};

const HAIKU: &str = "claude-haiku-4-5";
const GPT_4O: &str = "openai/gpt-4o";

/// Who answered, as the `x-bf-*` response headers say.
#[derive(Debug, PartialEq)]
struct Who {
    provider: String,
    model: String,
    key: String,
    attempts: String,
}

impl Who {
    fn new(provider: &str, model: &str, key: &str, attempts: u32) -> Who {
        Who {
            provider: provider.into(),
            model: model.into(),
            key: key.into(),
            attempts: attempts.to_string(),
        }
    }
}

fn who(res: &reqwest::Response) -> Who {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", res.headers()))
            .to_str()
            .unwrap()
            .to_owned()
    };
    Who {
        provider: header("x-bf-provider"),
        model: header("x-bf-model"),
        key: header("x-bf-key-name"),
        attempts: header("x-bf-attempts"),
    }
}

/// Asserts a 200 and returns who answered and the JSON answer.
async fn answered(res: reqwest::Response) -> (Who, Value) {
    let status = res.status();
    let served = (status == 200).then(|| who(&res));
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    (served.unwrap(), serde_json::from_str(&text).unwrap())
}

/// `text` to `model`, with a `fallbacks` field when `fallbacks` is given.
fn ask(model: &str, text: &str, stream: bool, fallbacks: Option<&[&str]>) -> Value {
    let mut body = request(model, text, stream);
    if let Some(list) = fallbacks {
        body["fallbacks"] = json!(list);
    }
    body
}

/// `[[mock:key_error KEY STATUS]]`: every provider gets the same message, so the failure is
/// tied to one key and the other provider answers normally.
fn fail_key(key: &str, status: u16) -> String {
    format!("[[mock:key_error {key} {status}]]")
}

async fn send(h: &Harness, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    send_to(h, "/anthropic/v1/messages", body, headers).await
}

/// POSTs `body` to `path` with `headers` and no client key unless one is among them.
async fn send_to(
    h: &Harness,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = h
        .http
        .post(h.url(path))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

fn paths(seen: &[RecordedRequest]) -> Vec<&str> {
    seen.iter().map(|r| r.path.as_str()).collect()
}

/// What the mock itself answers `body` on the Anthropic route with `key`: status and bytes.
async fn upstream_answer(h: &Harness, body: &Value, key: &str) -> (u16, Bytes) {
    let res = h
        .http
        .post(format!("{}/v1/messages", h.mock.base_url()))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.bytes().await.unwrap())
}

/// Several tests fail the same key more often than the circuit breaker's default threshold
/// allows; an open circuit would skip the primary and change what they count.
fn no_circuit(c: &mut Value) {
    for p in ["anthropic", "openai"] {
        c["providers"][p]["circuit_breaker"] = json!({"failure_threshold": 0});
    }
}

/// Anthropic with four keys of equal weight: names `key-1`..`key-4`, values `k1`..`k4`.
fn four_keys(c: &mut Value) {
    let keys: Vec<Value> = (1..=4)
        .map(|i| json!({"name": format!("key-{i}"), "value": format!("k{i}"), "models": ["*"], "weight": 1}))
        .collect();
    c["providers"]["anthropic"]["keys"] = json!(keys);
}

/// The value of a key named by `four_keys`.
fn value_of(name: &str) -> String {
    format!("k{}", name.strip_prefix("key-").unwrap())
}

/// An Anthropic upstream that keeps each request body as it arrived, for the byte-level
/// checks the mock's parsed recording cannot make (member order, spacing inside values).
async fn byte_recorder() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/v1/messages",
        post(move |body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                let model = serde_json::from_slice::<Value>(&body).unwrap()["model"].clone();
                log.lock().unwrap().push(body);
                let answer = json!({
                    "id": "msg_recorded", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": "recorded"}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": 3, "output_tokens": 1}
                });
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// POSTs raw JSON text, so that its exact bytes can be compared with what reaches upstream.
async fn send_raw(h: &Harness, body: &str) -> reqwest::Response {
    h.http
        .post(h.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_body_fallback_answers_when_the_primary_is_overloaded() {
    let h = Harness::start().await;
    let text = format!("hello {}", fail_key(ANTHROPIC_KEY, 529));
    let res = send(&h, &ask(CLAUDE, &text, false, Some(&[GPT])), &[]).await;
    let (served, msg) = answered(res).await;
    assert_eq!(served, Who::new("openai", GPT, "o", 2));
    assert_eq!(msg["model"], GPT, "a translated answer names who answered");
    assert_eq!(msg["content"][0]["text"], "hello");

    let seen = h.mock.requests();
    assert_eq!(paths(&seen), ["/v1/messages", "/v1/chat/completions"]);
    assert_eq!(seen[0].header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(seen[0].body["model"], CLAUDE);
    assert_eq!(seen[1].body["model"], "gpt-4o-mini");
    // The gateway's own field reaches no upstream, passed through or translated.
    for r in &seen {
        assert!(r.body.get("fallbacks").is_none(), "{}: {}", r.path, r.body);
    }
}

#[tokio::test]
async fn a_stream_fails_over_before_its_first_byte() {
    let h = Harness::start().await;
    let text = format!("hello there {}", fail_key(ANTHROPIC_KEY, 529));
    let res = send(&h, &ask(CLAUDE, &text, true, Some(&[GPT])), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(who(&res), Who::new("openai", GPT, "o", 2));
    let events = parse_sse(&res.text().await.unwrap());
    assert_grammar(&events, false);
    assert_eq!(streamed_text(&events), "hello there");
    assert_eq!(events[0].data["message"]["model"], GPT);

    let seen = h.mock.requests();
    assert_eq!(paths(&seen), ["/v1/messages", "/v1/chat/completions"]);
    assert_eq!(seen[1].body["stream"], true);
    for r in &seen {
        assert!(r.body.get("fallbacks").is_none(), "{}: {}", r.path, r.body);
    }
}

#[tokio::test]
async fn every_upstream_failure_that_may_fail_over_reaches_the_fallback() {
    let h = Harness::with_config(no_circuit).await;
    for status in [408, 409, 429, 500, 502, 503, 504, 529] {
        h.mock.clear();
        let text = format!("hi {}", fail_key(ANTHROPIC_KEY, status));
        let res = send(&h, &ask(CLAUDE, &text, false, Some(&[GPT])), &[]).await;
        let (served, _) = answered(res).await;
        assert_eq!(served, Who::new("openai", GPT, "o", 2), "{status}");
        assert_eq!(
            paths(&h.mock.requests()),
            ["/v1/messages", "/v1/chat/completions"],
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_claude_fallback_gets_the_clients_bytes_with_its_own_model() {
    let (recorder, bodies) = byte_recorder().await;
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"]["base_url"] = json!(recorder);
    })
    .await;
    let failing = fail_key(OPENAI_KEY, 503);
    // Compact between members, spaced inside values: those spaces must survive.
    let sent = format!(
        r#"{{"model":"{GPT}","max_tokens":64,"fallbacks":["{CLAUDE}"],"messages":[{{"role":"user","content":"hi {failing}"}}],"metadata":{{ "user_id" : "u-1" }},"temperature":0.5}}"#
    );
    let (served, msg) = answered(send_raw(&h, &sent).await).await;
    assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 2));
    assert_eq!(msg["content"][0]["text"], "recorded");

    let seen = h.mock.requests();
    assert_eq!(paths(&seen), ["/v1/chat/completions"], "the primary first");
    assert!(seen[0].body.get("fallbacks").is_none(), "{}", seen[0].body);
    let expected = format!(
        r#"{{"model":"{CLAUDE}","max_tokens":64,"messages":[{{"role":"user","content":"hi {failing}"}}],"metadata":{{ "user_id" : "u-1" }},"temperature":0.5}}"#
    );
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(std::str::from_utf8(&bodies[0]).unwrap(), expected);
}

#[tokio::test]
async fn a_primary_that_answers_never_sees_the_fallbacks_field() {
    let (recorder, bodies) = byte_recorder().await;
    let h = Harness::with_config(|c| {
        c["providers"]["anthropic"]["network_config"]["base_url"] = json!(recorder);
    })
    .await;
    let sent = format!(
        r#"{{"model":"{CLAUDE}","fallbacks":["{GPT}"],"max_tokens":64,"messages":[{{"role":"user","content":[{{"type":"text", "text":"hi"}}]}}],"stream":false}}"#
    );
    let (served, _) = answered(send_raw(&h, &sent).await).await;
    assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 1));
    assert!(h.mock.requests().is_empty(), "the fallback was not called");
    let expected = format!(
        r#"{{"model":"{CLAUDE}","max_tokens":64,"messages":[{{"role":"user","content":[{{"type":"text", "text":"hi"}}]}}],"stream":false}}"#
    );
    assert_eq!(
        std::str::from_utf8(&bodies.lock().unwrap()[0]).unwrap(),
        expected
    );
}

#[tokio::test]
async fn client_mistakes_are_answered_without_retry_or_fallback() {
    let h = Harness::with_config(|c| {
        no_circuit(c);
        for p in ["anthropic", "openai"] {
            c["providers"][p]["network_config"]["max_retries"] = json!(2);
            c["providers"][p]["network_config"]["retry_backoff_initial_ms"] = json!(1);
        }
        c["providers"]["anthropic"]["fallbacks"] = json!([GPT]);
    })
    .await;
    for status in [400, 404, 413, 422] {
        h.mock.clear();
        let text = format!("hi {}", fail_key(ANTHROPIC_KEY, status));
        // The body's fallback, then the configured one.
        for body in [
            ask(CLAUDE, &text, false, Some(&[GPT])),
            request(CLAUDE, &text, false),
        ] {
            let res = send(&h, &body, &[]).await;
            assert_eq!(res.status(), status);
            let v: Value = res.json().await.unwrap();
            assert_eq!(
                v["error"]["message"],
                format!("mock error {status}"),
                "the upstream's own answer: {v}"
            );
        }
        assert_eq!(
            paths(&h.mock.requests()),
            ["/v1/messages", "/v1/messages"],
            "{status}: neither retried nor failed over"
        );
    }
    // A translated primary's mistake does not reach a Claude fallback either.
    h.mock.clear();
    let text = format!("hi {}", fail_key(OPENAI_KEY, 400));
    let res = send(&h, &ask(GPT, &text, false, Some(&[CLAUDE])), &[]).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(paths(&h.mock.requests()), ["/v1/chat/completions"]);
}

#[tokio::test]
async fn when_every_model_fails_the_primarys_error_comes_back() {
    let h = Harness::with_config(no_circuit).await;
    let text = format!(
        "hi {} {}",
        fail_key(ANTHROPIC_KEY, 529),
        fail_key(OPENAI_KEY, 503)
    );
    let (status, upstream_body) =
        upstream_answer(&h, &request(CLAUDE, &text, false), ANTHROPIC_KEY).await;
    assert_eq!(status, 529);
    h.mock.clear();
    let res = send(&h, &ask(CLAUDE, &text, false, Some(&[GPT, GPT_4O])), &[]).await;
    assert_eq!(
        res.status(),
        529,
        "the primary's status, not the last fallback's"
    );
    assert_eq!(
        res.bytes().await.unwrap(),
        upstream_body,
        "a passed-through primary's error as its upstream sent it"
    );
    assert_eq!(
        paths(&h.mock.requests()),
        [
            "/v1/messages",
            "/v1/chat/completions",
            "/v1/chat/completions"
        ]
    );

    // A translated primary: its status in Anthropic's shape, not the Claude fallback's 529.
    h.mock.clear();
    let res = send(&h, &ask(GPT, &text, false, Some(&[CLAUDE])), &[]).await;
    assert_eq!(res.status(), 503);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
    assert_eq!(
        paths(&h.mock.requests()),
        ["/v1/chat/completions", "/v1/messages"]
    );
}

#[tokio::test]
async fn configured_fallbacks_apply_unless_the_body_has_its_own() {
    let h = Harness::with_config(|c| {
        no_circuit(c);
        // groq is known but not configured: skipped with a warning at start.
        c["providers"]["anthropic"]["fallbacks"] = json!(["groq/llama-3.1-8b-instant", GPT]);
        c["providers"]["anthropic"]["model_fallbacks"] = json!({HAIKU: [GPT_4O]});
    })
    .await;
    let out = h.gateway.output();
    assert!(
        out.contains("providers.anthropic.fallbacks[0]")
            && out.contains("`groq` is not configured"),
        "{out}"
    );
    let text = format!("hi {}", fail_key(ANTHROPIC_KEY, 529));

    // The provider's list; the unconfigured fallback sends nothing and counts no attempt.
    let (served, msg) = answered(send(&h, &request(CLAUDE, &text, false), &[]).await).await;
    assert_eq!(served, Who::new("openai", GPT, "o", 2));
    assert_eq!(msg["model"], GPT);
    let seen = h.mock.requests();
    assert_eq!(paths(&seen), ["/v1/messages", "/v1/chat/completions"]);
    assert_eq!(seen[1].body["model"], "gpt-4o-mini");

    // One model's own list replaces the provider's.
    h.mock.clear();
    let (served, _) = answered(send(&h, &request(HAIKU, &text, false), &[]).await).await;
    assert_eq!(served, Who::new("openai", GPT_4O, "o", 2));
    assert_eq!(h.mock.requests()[1].body["model"], "gpt-4o");

    // The body's list replaces the configured ones.
    h.mock.clear();
    let res = send(&h, &ask(CLAUDE, &text, false, Some(&[GPT_4O])), &[]).await;
    assert_eq!(answered(res).await.0, Who::new("openai", GPT_4O, "o", 2));

    // An empty list turns them off, and a list of only unconfigured providers leaves nothing
    // to try: the primary's error comes back.
    for list in [&[][..], &["groq/llama-3.1-8b-instant"][..]] {
        h.mock.clear();
        let res = send(&h, &ask(CLAUDE, &text, false, Some(list)), &[]).await;
        assert_eq!(res.status(), 529, "{list:?}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["message"], "mock error 529", "{list:?}");
        assert_eq!(paths(&h.mock.requests()), ["/v1/messages"], "{list:?}");
    }
}

#[tokio::test]
async fn invalid_fallbacks_are_refused_naming_the_field() {
    let h = Harness::start().await;
    let too_many: Vec<String> = (0..16).map(|i| format!("openai/m{i}")).collect();
    for (fallbacks, named) in [
        (json!(GPT), "fallbacks"),
        (json!([GPT, 1]), "fallbacks"),
        (json!([GPT, "nope/x"]), "fallbacks.1"),
        (json!(too_many), "fallbacks"),
    ] {
        let mut body = request(CLAUDE, "hi", false);
        body["fallbacks"] = fallbacks.clone();
        let res = send(&h, &body, &[]).await;
        assert_eq!(res.status(), 400, "{fallbacks}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{fallbacks}: {message}");
    }
    assert!(h.mock.requests().is_empty(), "refused before any upstream");
}

#[tokio::test]
async fn the_primary_uses_its_retries_before_the_fallback() {
    let h = Harness::with_config(|c| {
        let net = &mut c["providers"]["anthropic"]["network_config"];
        net["max_retries"] = json!(1);
        net["retry_backoff_initial_ms"] = json!(1);
        net["retry_backoff_max_ms"] = json!(5);
    })
    .await;
    let text = format!("hi {}", fail_key(ANTHROPIC_KEY, 500));
    let (served, _) = answered(send(&h, &ask(CLAUDE, &text, false, Some(&[GPT])), &[]).await).await;
    assert_eq!(served, Who::new("openai", GPT, "o", 3));
    assert_eq!(
        paths(&h.mock.requests()),
        ["/v1/messages", "/v1/messages", "/v1/chat/completions"]
    );
}

#[tokio::test]
async fn a_session_keeps_its_key_while_sessions_spread_over_all_keys() {
    let h = Harness::with_config(four_keys).await;
    let keys_seen = |h: &Harness| -> Vec<String> {
        h.mock
            .requests()
            .iter()
            .map(|r| r.header("x-api-key").unwrap().to_owned())
            .collect()
    };
    for (header, session) in [
        ("x-bf-session-id", "bf-session"),
        ("x-claude-code-session-id", "claude-code-session"),
    ] {
        h.mock.clear();
        let mut names = Vec::new();
        for _ in 0..100 {
            let res = send(&h, &request(CLAUDE, "hi", false), &[(header, session)]).await;
            names.push(answered(res).await.0.key);
        }
        let keys = keys_seen(&h);
        assert_eq!(keys.len(), 100);
        assert!(keys.iter().all(|k| *k == keys[0]), "{header}: {keys:?}");
        assert!(
            names.iter().all(|n| value_of(n) == keys[0]),
            "x-bf-key-name names the key used: {names:?}"
        );
    }

    h.mock.clear();
    for i in 0..100 {
        let session = format!("session-{i}");
        let res = send(
            &h,
            &request(CLAUDE, "hi", false),
            &[("x-bf-session-id", &session)],
        )
        .await;
        answered(res).await;
    }
    let distinct: BTreeSet<String> = keys_seen(&h).into_iter().collect();
    // 100 weighted draws over four equal keys miss one with p ≈ 4 × 0.75¹⁰⁰ ≈ 10⁻¹²: fewer
    // means sessions share a choice they should not.
    assert_eq!(distinct.len(), 4, "{distinct:?}");
}

/// The key name that answers `CLAUDE` for a request with `headers`.
async fn key_for(h: &Harness, headers: &[(&str, &str)]) -> String {
    answered(send(h, &request(CLAUDE, "hi", false), headers).await)
        .await
        .0
        .key
}

#[tokio::test]
async fn x_bf_session_id_wins_over_claude_codes_session_header() {
    let h = Harness::with_config(four_keys).await;
    let mine = key_for(&h, &[("x-bf-session-id", "mine")]).await;
    // Keys are chosen at random: new Claude Code sessions until one sticks to another key.
    let mut other = None;
    for i in 0..200 {
        let id = format!("cc-{i}");
        let key = key_for(&h, &[("x-claude-code-session-id", &id)]).await;
        if key != mine {
            other = Some((id, key));
            break;
        }
    }
    let (cc_id, cc_key) = other.expect("a session on another key");
    for _ in 0..20 {
        let both = [
            ("x-bf-session-id", "mine"),
            ("x-claude-code-session-id", cc_id.as_str()),
        ];
        assert_eq!(key_for(&h, &both).await, mine);
        assert_eq!(
            key_for(&h, &[("x-claude-code-session-id", &cc_id)]).await,
            cc_key
        );
    }
}

#[tokio::test]
async fn a_session_that_failed_over_stays_on_its_fallback() {
    let h = Harness::start().await;
    let session = [("x-bf-session-id", "fallback-session")];
    let failing = ask(
        CLAUDE,
        &format!("hi {}", fail_key(ANTHROPIC_KEY, 529)),
        false,
        Some(&[GPT]),
    );
    let (served, _) = answered(send(&h, &failing, &session).await).await;
    assert_eq!(served, Who::new("openai", GPT, "o", 2));

    h.mock.clear();
    let plain = ask(CLAUDE, "hi", false, Some(&[GPT]));
    for _ in 0..5 {
        let (served, msg) = answered(send(&h, &plain, &session).await).await;
        assert_eq!(
            served,
            Who::new("openai", GPT, "o", 1),
            "the session starts where it last got its answer"
        );
        assert_eq!(msg["model"], GPT);
    }
    assert_eq!(paths(&h.mock.requests()), ["/v1/chat/completions"; 5]);

    // Without a session, or in another one, the model asked for answers.
    for headers in [&[][..], &[("x-bf-session-id", "another")][..]] {
        let (served, _) = answered(send(&h, &plain, headers).await).await;
        assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 1), "{headers:?}");
    }

    // When the session's fallback fails, the rest of the chain (the primary) answers and the
    // session moves back there.
    let failing = ask(
        CLAUDE,
        &format!("hi {}", fail_key(OPENAI_KEY, 503)),
        false,
        Some(&[GPT]),
    );
    let (served, _) = answered(send(&h, &failing, &session).await).await;
    assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 2));
    let (served, _) = answered(send(&h, &plain, &session).await).await;
    assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 1));
}

#[tokio::test]
async fn a_session_whose_key_is_rejected_moves_to_another_key_and_stays() {
    let h = Harness::with_config(four_keys).await;
    let session = [("x-bf-session-id", "rejected-key")];
    let first = key_for(&h, &session).await;

    h.mock.clear();
    let text = format!("hi {}", fail_key(&value_of(&first), 401));
    let (served, _) = answered(send(&h, &request(CLAUDE, &text, false), &session).await).await;
    assert_ne!(served.key, first);
    assert_eq!(
        served.attempts, "2",
        "the rejected key, then another at once"
    );
    let moved = served.key;
    let keys: Vec<_> = h
        .mock
        .requests()
        .iter()
        .map(|r| r.header("x-api-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, [value_of(&first), value_of(&moved)]);

    for _ in 0..20 {
        assert_eq!(
            key_for(&h, &session).await,
            moved,
            "the session sticks to it"
        );
    }
}

/// Every header value the mock saw on requests recorded from `from` on.
fn header_values(h: &Harness, from: usize) -> Vec<String> {
    h.mock.requests()[from..]
        .iter()
        .flat_map(|r| r.headers.iter().map(|(_, v)| v.clone()))
        .collect()
}

/// A request with client keys, and what must reach the upstream.
struct DirectCase {
    model: &'static str,
    sent: &'static [(&'static str, &'static str)],
    /// The header and value the upstream must get.
    upstream: (&'static str, &'static str),
    /// Values no header may carry upstream.
    never: &'static [&'static str],
}

#[tokio::test]
async fn direct_keys_replace_the_pool_per_upstream() {
    let h = Harness::with_config(|c| c["client"] = json!({"allow_direct_keys": true})).await;
    const BOTH: &[(&str, &str)] = &[
        ("x-api-key", "sk-ant-both"),
        ("authorization", "Bearer sk-oai-both"),
    ];
    let cases = [
        DirectCase {
            model: CLAUDE,
            sent: &[("x-api-key", "sk-ant-direct")],
            upstream: ("x-api-key", "sk-ant-direct"),
            never: &[ANTHROPIC_KEY],
        },
        DirectCase {
            model: GPT,
            sent: &[("authorization", "Bearer sk-oai-direct")],
            upstream: ("authorization", "Bearer sk-oai-direct"),
            never: &[OPENAI_KEY],
        },
        // Both headers: each upstream takes the key from its own.
        DirectCase {
            model: CLAUDE,
            sent: BOTH,
            upstream: ("x-api-key", "sk-ant-both"),
            never: &[ANTHROPIC_KEY, "sk-oai-both"],
        },
        DirectCase {
            model: GPT,
            sent: BOTH,
            upstream: ("authorization", "Bearer sk-oai-both"),
            never: &[OPENAI_KEY, "sk-ant-both"],
        },
        // Only the other header carries one: it is used.
        DirectCase {
            model: GPT,
            sent: &[("x-api-key", "sk-oai-only")],
            upstream: ("authorization", "Bearer sk-oai-only"),
            never: &[OPENAI_KEY],
        },
    ];
    for DirectCase {
        model,
        sent: headers,
        upstream: (name, value),
        never,
    } in cases
    {
        let before = h.mock.requests().len();
        let (served, _) = answered(send(&h, &request(model, "hi", false), headers).await).await;
        assert_eq!(served.key, "direct", "{model} {headers:?}");
        assert_eq!(served.attempts, "1");
        let seen = h.mock.requests();
        assert_eq!(seen.len(), before + 1);
        assert_eq!(
            seen[before].header(name),
            Some(value),
            "{model} {headers:?}"
        );
        for v in header_values(&h, before) {
            assert!(
                never.iter().all(|n| !v.contains(n)),
                "{model} {headers:?}: {v}"
            );
        }
    }

    // A virtual key is never a provider key: the pool's key goes instead.
    for (model, header, value, pool) in [
        (
            CLAUDE,
            "x-api-key",
            "sk-bf-virtual",
            ("x-api-key", ANTHROPIC_KEY.to_owned()),
        ),
        (
            GPT,
            "authorization",
            "Bearer sk-bf-virtual",
            ("authorization", format!("Bearer {OPENAI_KEY}")),
        ),
    ] {
        let before = h.mock.requests().len();
        let (served, _) =
            answered(send(&h, &request(model, "hi", false), &[(header, value)]).await).await;
        assert_ne!(served.key, "direct", "{model}");
        assert_eq!(
            h.mock.requests()[before].header(pool.0),
            Some(pool.1.as_str())
        );
        for v in header_values(&h, before) {
            assert!(!v.contains("sk-bf-virtual"), "{model}: {v}");
        }
    }
}

#[tokio::test]
async fn a_direct_keys_rejection_goes_back_as_the_upstream_sent_it() {
    let h = Harness::with_config(|c| c["client"] = json!({"allow_direct_keys": true})).await;
    let body = request(
        CLAUDE,
        &format!("hi {}", fail_key("sk-ant-direct", 401)),
        false,
    );
    let (status, upstream_body) = upstream_answer(&h, &body, "sk-ant-direct").await;
    assert_eq!(status, 401);
    h.mock.clear();
    let res = send(&h, &body, &[("x-api-key", "sk-ant-direct")]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.bytes().await.unwrap(), upstream_body);
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1, "no pool key tried after the client's");
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-direct"));
}

#[tokio::test]
async fn without_allow_direct_keys_client_keys_never_leave() {
    let h = Harness::start().await;
    let client = [
        ("x-api-key", "sk-ant-client"),
        ("authorization", "Bearer sk-oai-client"),
    ];
    for (model, name, upstream) in [
        (CLAUDE, "a", ("x-api-key", ANTHROPIC_KEY.to_owned())),
        (GPT, "o", ("authorization", format!("Bearer {OPENAI_KEY}"))),
    ] {
        let before = h.mock.requests().len();
        let (served, _) = answered(send(&h, &request(model, "hi", false), &client).await).await;
        assert_eq!(served.key, name, "{model}");
        assert_eq!(
            h.mock.requests()[before].header(upstream.0),
            Some(upstream.1.as_str()),
            "{model}"
        );
    }
    for v in header_values(&h, 0) {
        assert!(!v.contains("-client"), "a client key left: {v}");
    }
}

#[tokio::test]
async fn token_counts_say_who_counted() {
    let h = Harness::start().await;
    let path = "/anthropic/v1/messages/count_tokens";
    let body = |model: &str| json!({"model": model, "messages": user("one two three")});
    let (served, v) = answered(send_to(&h, path, &body(CLAUDE), &[]).await).await;
    assert_eq!(served, Who::new("anthropic", CLAUDE, "a", 1));
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(paths(&h.mock.requests()), ["/v1/messages/count_tokens"]);

    // OpenAI cannot count: the gateway's own estimate names no upstream.
    h.mock.clear();
    let res = send_to(&h, path, &body(GPT), &[]).await;
    assert_eq!(res.status(), 200);
    for name in [
        "x-bf-provider",
        "x-bf-model",
        "x-bf-key-name",
        "x-bf-attempts",
    ] {
        assert!(
            res.headers().get(name).is_none(),
            "{name}: {:?}",
            res.headers()
        );
    }
    assert!(h.mock.requests().is_empty());
}
