//! A faulty upstream never reaches the client as success, garbage or a leaked key: every
//! case answers in Anthropic's shape (502 before a stream starts, an error event after), on
//! the pass-through (`claude-…`) and translated (`openai/…`) paths alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

#[tokio::test]
async fn invalid_2xx_answers_are_502_before_any_byte() {
    let h = Harness::start().await;
    for model in [CLAUDE, GPT] {
        for (directive, stream) in [
            ("body html", false),
            ("body truncated", false),
            ("body sse", false),
            ("body no_content", false),
            ("body html", true),
            ("body json", true),
            ("body no_content", true),
        ] {
            let res = h
                .messages(&request(model, &format!("[[mock:{directive}]]"), stream))
                .await;
            let (status, e) = error_of(res).await;
            assert_eq!(
                (status, e["type"].as_str().unwrap()),
                (502, "api_error"),
                "{model} {directive} stream={stream}: {e}"
            );
        }
    }
}

#[tokio::test]
async fn streams_without_data_or_cut_short_end_with_an_error_event() {
    let h = Harness::start().await;
    for model in [CLAUDE, GPT] {
        for directive in ["body no_data", "eof after_content", "garbage"] {
            if model == GPT && directive == "garbage" {
                // Lines that are not SSE fields are ignored by SSE's own rules; the
                // translated stream carries on (covered by the decoder goldens).
                continue;
            }
            let res = h
                .messages(&request(
                    model,
                    &format!("hello [[mock:{directive}]]"),
                    true,
                ))
                .await;
            let events = stream_events(res).await;
            assert_grammar(&events, true);
        }
        // A finish without the final marker is a finished answer.
        let res = h
            .messages(&request(GPT, "hello [[mock:eof after_finish]]", true))
            .await;
        assert_grammar(&stream_events(res).await, false);
    }
}

#[tokio::test]
async fn junk_in_a_pass_through_stream_is_not_forwarded() {
    let h = Harness::start().await;
    let res = h
        .messages(&request(CLAUDE, "alpha beta gamma [[mock:garbage]]", true))
        .await;
    let bytes = res.bytes().await.unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_ok(),
        "non-UTF-8 bytes forwarded"
    );
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        !text.contains("mock garbage") && !text.contains("not an sse line"),
        "{text}"
    );
    let events = parse_sse(&text);
    assert_grammar(&events, true);
}

#[tokio::test]
async fn compressed_answers_are_decoded() {
    let h = Harness::start().await;
    for model in [CLAUDE, GPT] {
        let res = h
            .messages(&request(model, "alpha beta [[mock:gzip]]", false))
            .await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("content-encoding").is_none());
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["content"][0]["text"], "alpha beta", "{model}");

        let res = h
            .messages(&request(model, "alpha beta [[mock:gzip]]", true))
            .await;
        assert!(res.headers().get("content-encoding").is_none());
        let events = stream_events(res).await;
        assert_grammar(&events, false);
        assert_eq!(streamed_text(&events), "alpha beta", "{model}");
    }
}

#[tokio::test]
async fn a_pass_through_stream_ends_at_message_stop() {
    let h = Harness::start().await;
    let started = Instant::now();
    let res = h
        .messages(&request(CLAUDE, "hello [[mock:hold_open 20000]]", true))
        .await;
    let events = stream_events(res).await;
    assert_grammar(&events, false);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the upstream to close: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_backoff_cap() {
    let h = Harness::with_config(|c| {
        for p in ["anthropic", "openai"] {
            c["providers"][p]["network_config"]["max_retries"] = json!(2);
            c["providers"][p]["network_config"]["retry_backoff_initial_ms"] = json!(10);
            c["providers"][p]["network_config"]["retry_backoff_max_ms"] = json!(3000);
        }
    })
    .await;
    for model in [CLAUDE, GPT] {
        // Asked to wait 1 s: the retry comes after it, not after the 10 ms backoff.
        let started = Instant::now();
        let key = format!("ra-{model}");
        let res = h
            .messages(&request(
                model,
                &format!("[[mock:fail_first 1 429 {key} retry_after=1]]"),
                false,
            ))
            .await;
        assert_eq!(res.status(), 200, "{model}");
        assert!(started.elapsed() >= Duration::from_secs(1), "{model}");

        // Asked to wait longer than the configured maximum: answered at once.
        let started = Instant::now();
        let res = h
            .messages(&request(model, "[[mock:error 429 retry_after=30]]", false))
            .await;
        assert_eq!(res.status(), 429, "{model}");
        assert_eq!(res.headers()["retry-after"], "30");
        assert!(started.elapsed() < Duration::from_secs(2), "{model}");
    }
}

#[tokio::test]
async fn huge_upstream_bodies_are_bounded() {
    let h = Harness::with_config(|c| {
        c["client"] = json!({"max_upstream_response_size_mb": 1,
                             "max_upstream_error_body_kb": 16,
                             "max_stream_event_size_mb": 1});
    })
    .await;
    for model in [CLAUDE, GPT] {
        let res = h.messages(&request(model, "[[mock:huge 2]]", false)).await;
        let (status, e) = error_of(res).await;
        assert_eq!(status, 502, "{model}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("larger than"),
            "{e}"
        );

        let res = h
            .messages(&request(model, "[[mock:error 500]] [[mock:huge 2]]", false))
            .await;
        assert_eq!(res.status(), 500, "{model}");
        let body = res.bytes().await.unwrap();
        assert!(body.len() < 32 * 1024, "{model}: {} bytes", body.len());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error");

        let res = h.messages(&request(model, "[[mock:huge 2]]", true)).await;
        let events = stream_events(res).await;
        assert_grammar(&events, true);
        let last = events.last().unwrap();
        assert!(
            last.data["error"]["message"]
                .as_str()
                .unwrap()
                .contains("larger than"),
            "{:?}",
            last.data
        );
    }
}

/// The gateway in front of a raw-front mock, which writes statuses hyper will not.
async fn raw_harness(tweak: impl FnOnce(&mut Value)) -> (MockServer, GatewayProcess) {
    let mock = MockServer::start_raw(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), tweak);
    let gateway = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    (mock, gateway)
}

#[tokio::test]
async fn statuses_outside_2xx_4xx_5xx_are_502() {
    let (_mock, gateway) = raw_harness(|_| {}).await;
    for model in [CLAUDE, GPT] {
        for code in [101, 302, 600] {
            let res = post_messages(
                gateway.base_url(),
                &request(model, &format!("[[mock:status {code}]]"), false),
            )
            .await;
            let (status, e) = error_of(res).await;
            assert_eq!(
                (status, e["type"].as_str().unwrap()),
                (502, "api_error"),
                "{model} {code}: {e}"
            );
        }
    }
}

#[tokio::test]
async fn a_connection_closed_before_answering_is_retried_once_and_named_by_provider() {
    let (mock, gateway) = raw_harness(|_| {}).await;
    for model in [CLAUDE, GPT] {
        mock.clear();
        let res = post_messages(
            gateway.base_url(),
            &request(model, "[[mock:hangup]]", false),
        )
        .await;
        let (status, e) = error_of(res).await;
        assert_eq!(status, 502, "{model}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("http://"),
            "{message}"
        );
        // No retries are configured: the one extra attempt is the stale-connection retry.
        let sent = mock
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(sent, 2, "{model}");
    }
}

#[tokio::test]
async fn connection_failures_name_the_provider_not_the_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = Harness::with_config(|c| {
        c["providers"]["openai"]["network_config"]["base_url"] = json!(url);
    })
    .await;
    let res = h.messages(&request(GPT, "hi", false)).await;
    let (status, e) = error_of(res).await;
    assert_eq!(status, 502);
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("openai"), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
}

/// An upstream whose in-stream error echoes the key it was called with.
async fn key_echoing_upstream() -> String {
    use axum::routing::post;
    let sse = |body: String| ([("content-type", "text/event-stream")], body);
    let app = axum::Router::new()
        .route(
            "/v1/messages",
            post(move || async move {
                let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":0}}}"#;
                sse(format!(
                    "event: message_start\ndata: {start}\n\nevent: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"key {ANTHROPIC_KEY} is suspended\"}}}}\n\n"
                ))
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move || async move {
                sse(format!(
                    "data: {{\"error\":{{\"message\":\"key {OPENAI_KEY} is suspended\",\"type\":\"server_error\"}}}}\n\n"
                ))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn keys_in_in_stream_errors_are_scrubbed() {
    let url = key_echoing_upstream().await;
    let cfg = config(&url, |_| {});
    let gateway = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap();
    for (model, key) in [(CLAUDE, ANTHROPIC_KEY), (GPT, OPENAI_KEY)] {
        let res = post_messages(gateway.base_url(), &request(model, "hi", true)).await;
        let text = res.text().await.unwrap();
        assert!(!text.contains(key), "{model}: {text}");
        assert!(text.contains("***"), "{model}: {text}");
        assert_grammar(&parse_sse(&text), true);
    }
    let log = gateway.output();
    assert!(
        !log.contains(ANTHROPIC_KEY) && !log.contains(OPENAI_KEY),
        "{log}"
    );
}

/// An upstream that starts a stream, then drips one byte at a time and never ends the event.
async fn dripping_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if sock.write_all(b"1\r\nx\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn bytes_that_never_finish_an_event_do_not_keep_a_stream_alive() {
    let url = dripping_upstream().await;
    let h = Harness::with_config(|c| {
        for p in ["anthropic", "openai"] {
            c["providers"][p]["network_config"] =
                json!({"base_url": url, "stream_idle_timeout_in_seconds": 1});
        }
    })
    .await;
    for model in [CLAUDE, GPT] {
        let started = Instant::now();
        let res = h.messages(&request(model, "hi", true)).await;
        let events = stream_events(res).await;
        assert_grammar(&events, true);
        assert_eq!(
            events.last().unwrap().data["error"]["type"],
            "timeout_error",
            "{model}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{model}: {:?}",
            started.elapsed()
        );
    }
}
