//! The mock's fault directives, driven with a plain HTTP client (or raw TCP where a client would
//! hide the faulty bytes), on both dialect routes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

use std::time::{Duration, Instant};

use heimdall_testkit::{MockOptions, MockServer};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
enum Dialect {
    OpenAi,
    Anthropic,
}

const DIALECTS: [Dialect; 2] = [Dialect::OpenAi, Dialect::Anthropic];

impl Dialect {
    fn path(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/v1/chat/completions",
            Dialect::Anthropic => "/v1/messages",
        }
    }

    /// A request whose last user message is `text`.
    fn body(self, text: &str, stream: bool) -> Value {
        match self {
            Dialect::OpenAi => json!({"model": "gpt-4o-mini", "stream": stream,
                "stream_options": stream.then(|| json!({"include_usage": true})),
                "messages": [{"role": "user", "content": text}]}),
            Dialect::Anthropic => json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 64,
                "stream": stream, "messages": [{"role": "user", "content": text}]}),
        }
    }

    fn request(self, mock: &MockServer, text: &str, stream: bool) -> reqwest::RequestBuilder {
        let req = heimdall_testkit::http_client()
            .post(format!("{}{}", mock.base_url(), self.path()))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&self.body(text, stream)).unwrap());
        match self {
            Dialect::OpenAi => req.bearer_auth("sk-test"),
            Dialect::Anthropic => req
                .header("x-api-key", "sk-ant-test")
                .header("anthropic-version", "2023-06-01"),
        }
    }

    async fn post(self, mock: &MockServer, text: &str, stream: bool) -> reqwest::Response {
        self.request(mock, text, stream).send().await.unwrap()
    }
}

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

#[tokio::test]
async fn retry_after_headers_on_429_and_503() {
    let mock = mock().await;
    for dialect in DIALECTS {
        for stream in [false, true] {
            let r = dialect
                .post(&mock, "[[mock:error 503 retry_after=4]]", stream)
                .await;
            assert_eq!(r.status(), 503, "{dialect:?}");
            assert_eq!(r.headers()["retry-after"], "4");
            assert!(r.headers().get("retry-after-ms").is_none());

            let r = dialect
                .post(
                    &mock,
                    "[[mock:error 429 retry_after=2 retry_after_ms=1500]]",
                    stream,
                )
                .await;
            assert_eq!(r.status(), 429, "{dialect:?}");
            assert_eq!(r.headers()["retry-after"], "2");
            assert_eq!(r.headers()["retry-after-ms"], "1500");
        }
        let key = format!("retry-ms-{dialect:?}");
        let text = format!("hi [[mock:fail_first 1 503 {key} retry_after_ms=250]]");
        let r = dialect.post(&mock, &text, false).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after-ms"], "250");
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(dialect.post(&mock, &text, false).await.status(), 200);
    }
}

/// The `data:` payloads of an SSE body, one per event (events without data are skipped).
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The (final) words that end a complete stream in each dialect.
fn stream_end(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "data: [DONE]\n\n",
        Dialect::Anthropic => "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    }
}

#[tokio::test]
async fn garbage_between_valid_events() {
    let mock = mock().await;
    let garbage: &[u8] = b"\xff\xfe\x80 mock garbage \xc3\x28\n{not an sse line}\n\n";
    for dialect in DIALECTS {
        let r = dialect
            .post(&mock, "alpha beta gamma [[mock:garbage]]", true)
            .await;
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        let at = body
            .windows(garbage.len())
            .position(|w| w == garbage)
            .unwrap_or_else(|| panic!("{dialect:?}: no garbage in {body:?}"));
        assert!(std::str::from_utf8(&body).is_err());
        let before = std::str::from_utf8(&body[..at]).unwrap();
        let after = std::str::from_utf8(&body[at + garbage.len()..]).unwrap();
        assert!(
            before.ends_with("\n\n") && before.contains("alpha"),
            "{before}"
        );
        assert!(after.ends_with(stream_end(dialect)), "{after}");
        assert!(after.contains("gamma"), "{after}");
        // Without streaming the directive is ignored.
        let r = dialect.post(&mock, "alpha [[mock:garbage]]", false).await;
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(v.to_string().contains("alpha"));
    }
}

#[tokio::test]
async fn openai_stream_ends_early() {
    let mock = mock().await;
    let text = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        // A clean end: the body reads to EOF without a transport error.
        r.text().await.unwrap()
    };
    let body = text(
        Dialect::OpenAi
            .post(&mock, "alpha beta [[mock:eof after_content]]", true)
            .await,
    )
    .await;
    let chunks: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "alpha beta");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert!(chunks.iter().all(|c| c["choices"] != json!([])), "{body}");
    assert!(!body.contains("[DONE]"));

    let body = text(
        Dialect::OpenAi
            .post(&mock, "alpha beta [[mock:eof after_finish]]", true)
            .await,
    )
    .await;
    let chunks: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(chunks.iter().all(|c| c["usage"].is_null()), "{body}");
    assert!(!body.contains("[DONE]"));
}

#[tokio::test]
async fn anthropic_stream_ends_early() {
    let mock = mock().await;
    let names = |body: &str| -> Vec<String> {
        sse_data(body)
            .iter()
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let r = Dialect::Anthropic
        .post(&mock, "alpha beta [[mock:eof after_content]]", true)
        .await;
    let body = r.text().await.unwrap();
    let events = names(&body);
    assert_eq!(events.last().unwrap(), "content_block_stop", "{body}");
    assert!(body.contains("beta"));
    assert!(
        !events
            .iter()
            .any(|e| e == "message_delta" || e == "message_stop")
    );

    let r = Dialect::Anthropic
        .post(&mock, "alpha beta [[mock:eof after_finish]]", true)
        .await;
    let body = r.text().await.unwrap();
    let events = names(&body);
    assert_eq!(events.last().unwrap(), "message_delta", "{body}");
    assert!(!events.iter().any(|e| e == "message_stop"));
}

#[tokio::test]
async fn stream_held_open_after_its_last_event() {
    let mock = mock().await;
    for dialect in DIALECTS {
        let start = Instant::now();
        let mut r = dialect
            .post(&mock, "alpha beta [[mock:hold_open 500]]", true)
            .await;
        let mut body = Vec::new();
        while !body.ends_with(stream_end(dialect).as_bytes()) {
            body.extend_from_slice(
                &r.chunk()
                    .await
                    .unwrap()
                    .expect("ended before the last event"),
            );
        }
        assert!(start.elapsed() < Duration::from_millis(400), "{dialect:?}");
        // Nothing more arrives, but the body only ends once the hold is over.
        assert_eq!(r.chunk().await.unwrap(), None);
        assert!(start.elapsed() >= Duration::from_millis(500), "{dialect:?}");
    }
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn bodies_that_are_not_what_was_asked_for() {
    let mock = mock().await;
    for dialect in DIALECTS {
        for stream in [false, true] {
            let case = format!("{dialect:?} stream={stream}");

            let r = dialect
                .post(&mock, "alpha [[mock:body html]]", stream)
                .await;
            assert_eq!(r.status(), 200, "{case}");
            assert_eq!(content_type(&r), "text/html; charset=utf-8", "{case}");
            assert!(r.text().await.unwrap().starts_with("<!DOCTYPE html>"));

            let r = dialect
                .post(&mock, "alpha beta [[mock:body truncated]]", stream)
                .await;
            assert_eq!(r.status(), 200, "{case}");
            assert_eq!(content_type(&r), "application/json", "{case}");
            let length: usize = r.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            // The framing is valid (the whole body arrives), the JSON in it is not.
            let bytes = r.bytes().await.unwrap();
            assert_eq!(bytes.len(), length, "{case}");
            assert!(length > 10, "{case}");
            let err = serde_json::from_slice::<Value>(&bytes).unwrap_err();
            assert!(err.is_eof(), "{case}: {err}");

            let r = dialect
                .post(&mock, "alpha [[mock:body json]]", stream)
                .await;
            assert_eq!(content_type(&r), "application/json", "{case}");
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert!(v.to_string().contains("\"alpha\""), "{case}: {v}");

            let r = dialect
                .post(&mock, "alpha beta gamma [[mock:body sse]]", stream)
                .await;
            assert!(content_type(&r).starts_with("text/event-stream"), "{case}");
            let body = r.text().await.unwrap();
            assert!(body.ends_with(stream_end(dialect)), "{case}: {body}");
            assert!(body.contains("alpha"), "{case}");

            let r = dialect
                .post(&mock, "alpha [[mock:body no_content]]", stream)
                .await;
            assert_eq!(r.status(), 204, "{case}");
            assert!(r.bytes().await.unwrap().is_empty());

            let r = dialect
                .post(&mock, "alpha [[mock:body no_data]]", stream)
                .await;
            assert_eq!(r.status(), 200, "{case}");
            assert!(content_type(&r).starts_with("text/event-stream"), "{case}");
            let body = r.text().await.unwrap();
            let events: Vec<&str> = body.split_terminator("\n\n").collect();
            assert!(events.len() >= 4, "{case}: {body}");
            for event in &events {
                assert!(!event.is_empty(), "{case}: {body}");
                assert!(
                    event.lines().all(|l| !l.starts_with("data:")),
                    "{case}: {body}"
                );
            }
            match dialect {
                Dialect::OpenAi => assert_eq!(events[0], "id: 0"),
                Dialect::Anthropic => {
                    assert_eq!(events[0], "event: message_start");
                    assert_eq!(*events.last().unwrap(), "event: message_stop");
                }
            }
        }
    }
}

const MIB: usize = 1024 * 1024;

/// The reply text of a non-streaming answer.
fn reply_text(dialect: Dialect, v: &Value) -> &str {
    match dialect {
        Dialect::OpenAi => v["choices"][0]["message"]["content"].as_str().unwrap(),
        Dialect::Anthropic => v["content"][0]["text"].as_str().unwrap(),
    }
}

fn declared_length(r: &reqwest::Response) -> Option<usize> {
    r.headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn huge_bodies() {
    let mock = mock().await;
    for dialect in DIALECTS {
        let r = dialect.post(&mock, "[[mock:huge 2]]", false).await;
        assert_eq!(r.status(), 200);
        let length = declared_length(&r).expect("a huge JSON body is framed by its length");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes.len(), length);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let text = reply_text(dialect, &v);
        assert_eq!(text.len(), 2 * MIB, "{dialect:?}");
        assert!(text.starts_with("lorem ipsum sit lorem"));

        let r = dialect
            .post(&mock, "[[mock:error 500]] [[mock:huge 3]]", false)
            .await;
        assert_eq!(r.status(), 500);
        let length = declared_length(&r).unwrap();
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes.len(), length);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["error"]["message"].as_str().unwrap().len(),
            3 * MIB,
            "{dialect:?}"
        );

        // Streaming: the whole text is one event.
        let r = dialect.post(&mock, "[[mock:huge 2]]", true).await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(body.ends_with(stream_end(dialect)), "{dialect:?}");
        let events = sse_data(&body);
        let huge: Vec<&String> = events.iter().filter(|d| d.len() > MIB).collect();
        assert_eq!(huge.len(), 1, "{dialect:?}");
        let event: Value = serde_json::from_str(huge[0]).unwrap();
        let text = match dialect {
            Dialect::OpenAi => &event["choices"][0]["delta"]["content"],
            Dialect::Anthropic => &event["delta"]["text"],
        };
        assert_eq!(text.as_str().unwrap().len(), 2 * MIB, "{dialect:?}");
        assert!(events.iter().all(|d| !d.contains("HEIMDALL-MOCK")));
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn gzip_encoded_answers() {
    let mock = mock().await;
    for dialect in DIALECTS {
        let r = dialect.post(&mock, "alpha beta [[mock:gzip]]", false).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert_eq!(content_type(&r), "application/json");
        let v: Value = serde_json::from_slice(&gunzip(&r.bytes().await.unwrap())).unwrap();
        assert_eq!(reply_text(dialect, &v), "alpha beta");

        let r = dialect
            .post(&mock, "alpha beta gamma [[mock:gzip]]", true)
            .await;
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert!(content_type(&r).starts_with("text/event-stream"));
        let body = String::from_utf8(gunzip(&r.bytes().await.unwrap())).unwrap();
        assert!(body.ends_with(stream_end(dialect)), "{body}");
        assert!(body.contains("gamma"));

        let r = dialect
            .post(&mock, "[[mock:error 503]] [[mock:gzip]]", false)
            .await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let v: Value = serde_json::from_slice(&gunzip(&r.bytes().await.unwrap())).unwrap();
        assert_eq!(v["error"]["message"], "mock error 503");

        // A small body that inflates to megabytes.
        let r = dialect
            .post(&mock, "[[mock:huge 4]] [[mock:gzip]]", false)
            .await;
        let compressed = r.bytes().await.unwrap();
        assert!(compressed.len() < MIB / 8, "{}", compressed.len());
        assert!(gunzip(&compressed).len() > 4 * MIB);
    }
}

#[tokio::test]
async fn gzip_stream_is_flushed_per_event() {
    let mock = mock().await;
    for dialect in DIALECTS {
        let start = Instant::now();
        let mut r = dialect
            .post(
                &mock,
                "alpha beta gamma [[mock:gzip]] [[mock:stall 400]]",
                true,
            )
            .await;
        // Everything before the stall decodes without waiting for the stall to end.
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        while !String::from_utf8_lossy(decoder.get_ref()).contains("alpha") {
            let chunk = r.chunk().await.unwrap().expect("the stream ended early");
            std::io::Write::write_all(&mut decoder, &chunk).unwrap();
            std::io::Write::flush(&mut decoder).unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(350), "{dialect:?}");
        while let Some(chunk) = r.chunk().await.unwrap() {
            std::io::Write::write_all(&mut decoder, &chunk).unwrap();
        }
        let body = String::from_utf8(decoder.finish().unwrap()).unwrap();
        assert!(body.ends_with(stream_end(dialect)), "{body}");
    }
}
