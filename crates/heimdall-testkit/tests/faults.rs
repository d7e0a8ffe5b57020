//! The mock's fault directives, driven with a plain HTTP client (or raw TCP where a client would
//! hide the faulty bytes), on both dialect routes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

use std::time::{Duration, Instant};

use heimdall_testkit::{MockOptions, MockServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

// ---------------------------------------------------------------------------------------------
// key_error: faults for one API key, on every route, read from wherever the route reads it.

/// Where a request carries its API key, one per route (and per header a route accepts).
#[derive(Debug, Clone, Copy)]
enum KeyIn {
    OpenAiBearer,
    AzureApiKey,
    AnthropicXApiKey,
    AnthropicBearer,
    GeminiHeader,
    GeminiQuery,
    VertexGemini,
    VertexClaude,
    BedrockBearer,
    OllamaBearer,
}

const KEY_ROUTES: [KeyIn; 10] = [
    KeyIn::OpenAiBearer,
    KeyIn::AzureApiKey,
    KeyIn::AnthropicXApiKey,
    KeyIn::AnthropicBearer,
    KeyIn::GeminiHeader,
    KeyIn::GeminiQuery,
    KeyIn::VertexGemini,
    KeyIn::VertexClaude,
    KeyIn::BedrockBearer,
    KeyIn::OllamaBearer,
];

const VERTEX: &str = "/v1/projects/p/locations/us-east5/publishers";

impl KeyIn {
    /// A non-streaming request with `key` whose last user message is `text`.
    async fn post(self, mock: &MockServer, key: &str, text: &str) -> reqwest::Response {
        let base = mock.base_url();
        let gemini = json!({"contents": [{"role": "user", "parts": [{"text": text}]}]});
        let (path, body) = match self {
            KeyIn::OpenAiBearer | KeyIn::AzureApiKey => (
                "/v1/chat/completions".to_owned(),
                Dialect::OpenAi.body(text, false),
            ),
            KeyIn::AnthropicXApiKey | KeyIn::AnthropicBearer => (
                "/v1/messages".to_owned(),
                Dialect::Anthropic.body(text, false),
            ),
            KeyIn::GeminiHeader => (
                "/v1beta/models/gemini-2.5-flash:generateContent".to_owned(),
                gemini,
            ),
            KeyIn::GeminiQuery => (
                format!("/v1beta/models/gemini-2.5-flash:generateContent?key={key}"),
                gemini,
            ),
            KeyIn::VertexGemini => (
                format!("{VERTEX}/google/models/gemini-2.5-pro:generateContent"),
                gemini,
            ),
            KeyIn::VertexClaude => (
                format!("{VERTEX}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"),
                json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
                    "messages": [{"role": "user", "content": text}]}),
            ),
            KeyIn::BedrockBearer => (
                "/model/amazon.nova-pro-v1:0/converse".to_owned(),
                json!({"messages": [{"role": "user", "content": [{"text": text}]}]}),
            ),
            KeyIn::OllamaBearer => (
                "/api/chat".to_owned(),
                json!({"model": "llama3.1:8b", "stream": false,
                    "messages": [{"role": "user", "content": text}]}),
            ),
        };
        let req = heimdall_testkit::http_client()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap());
        let req = match self {
            KeyIn::AzureApiKey => req.header("api-key", key),
            KeyIn::AnthropicXApiKey => req
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
            KeyIn::AnthropicBearer => req
                .bearer_auth(key)
                .header("anthropic-version", "2023-06-01"),
            KeyIn::GeminiHeader => req.header("x-goog-api-key", key),
            KeyIn::GeminiQuery => req,
            KeyIn::OpenAiBearer
            | KeyIn::VertexGemini
            | KeyIn::VertexClaude
            | KeyIn::BedrockBearer
            | KeyIn::OllamaBearer => req.bearer_auth(key),
        };
        req.send().await.unwrap()
    }

    /// The reply text of a successful answer.
    fn reply_text(self, v: &Value) -> &str {
        let text = match self {
            KeyIn::OpenAiBearer | KeyIn::AzureApiKey => &v["choices"][0]["message"]["content"],
            KeyIn::AnthropicXApiKey | KeyIn::AnthropicBearer | KeyIn::VertexClaude => {
                &v["content"][0]["text"]
            }
            KeyIn::GeminiHeader | KeyIn::GeminiQuery | KeyIn::VertexGemini => {
                &v["candidates"][0]["content"]["parts"][0]["text"]
            }
            KeyIn::BedrockBearer => &v["output"]["message"]["content"][0]["text"],
            KeyIn::OllamaBearer => &v["message"]["content"],
        };
        text.as_str()
            .unwrap_or_else(|| panic!("{self:?}: no text in {v}"))
    }
}

/// Status, retry headers and body: all of an error answer but its request id.
async fn error_answer(r: reqwest::Response) -> (u16, Option<String>, Option<String>, Value) {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (retry_after, retry_after_ms) = (header("retry-after"), header("retry-after-ms"));
    let status = r.status().as_u16();
    let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    (status, retry_after, retry_after_ms, body)
}

#[tokio::test]
async fn key_error_fails_its_key_as_error_would_and_other_keys_get_the_answer() {
    let mock = mock().await;
    for route in KEY_ROUTES {
        let failed = route
            .post(
                &mock,
                "key-a",
                "hello [[mock:key_error key-a 429 retry_after=3 retry_after_ms=1500]]",
            )
            .await;
        assert_eq!(failed.status(), 429, "{route:?}");
        assert_eq!(failed.headers()["retry-after"], "3", "{route:?}");
        let failed = error_answer(failed).await;
        // The same answer `error` scripts, in the route's shape, with its headers.
        let scripted = route
            .post(
                &mock,
                "key-a",
                "hello [[mock:error 429 retry_after=3 retry_after_ms=1500]]",
            )
            .await;
        assert_eq!(failed, error_answer(scripted).await, "{route:?}");

        let r = route
            .post(
                &mock,
                "key-b",
                "hello [[mock:key_error key-a 429 retry_after=3 retry_after_ms=1500]]",
            )
            .await;
        assert_eq!(r.status(), 200, "{route:?}");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(route.reply_text(&v), "hello", "{route:?}");
    }
}

#[tokio::test]
async fn key_errors_for_two_keys_in_one_message() {
    let mock = mock().await;
    let text = "hi [[mock:key_error key-a 429]] [[mock:key_error key-b 403]]";
    for route in KEY_ROUTES {
        assert_eq!(route.post(&mock, "key-a", text).await.status(), 429);
        let denied = route.post(&mock, "key-b", text).await;
        assert_eq!(denied.status(), 403, "{route:?}");
        assert!(denied.text().await.unwrap().contains("mock error 403"));
        let r = route.post(&mock, "key-c", text).await;
        assert_eq!(r.status(), 200, "{route:?}");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(route.reply_text(&v), "hi", "{route:?}");
    }
    // Streaming requests fail before the stream opens.
    for dialect in DIALECTS {
        let r = dialect
            .post(
                &mock,
                "hi [[mock:key_error sk-test 429]] [[mock:key_error sk-ant-test 401]]",
                true,
            )
            .await;
        let expected = match dialect {
            Dialect::OpenAi => 429,
            Dialect::Anthropic => 401,
        };
        assert_eq!(r.status(), expected, "{dialect:?}");
    }
}

#[tokio::test]
async fn key_error_answers_ahead_of_fail_first_and_error() {
    let mock = mock().await;
    let route = KeyIn::AnthropicXApiKey;
    let text = "[[mock:key_error key-a 429]] [[mock:fail_first 1 503 key-error-order]]";
    // A request key_error fails is not counted by fail_first...
    assert_eq!(route.post(&mock, "key-a", text).await.status(), 429);
    assert_eq!(route.post(&mock, "key-b", text).await.status(), 503);
    assert_eq!(route.post(&mock, "key-b", text).await.status(), 200);
    // ... and it wins over `error`, which the other keys still get.
    let text = "[[mock:key_error key-a 429]] [[mock:error 500]]";
    assert_eq!(route.post(&mock, "key-a", text).await.status(), 429);
    assert_eq!(route.post(&mock, "key-b", text).await.status(), 500);
}

/// A Converse request signed with SigV4 for `access_key` (the mock verifies only its own).
async fn sigv4_converse(mock: &MockServer, access_key: &str, text: &str) -> reqwest::Response {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};

    let url = format!("{}/model/amazon.nova-pro-v1:0/converse", mock.base_url());
    let body =
        serde_json::to_vec(&json!({"messages": [{"role": "user", "content": [{"text": text}]}]}))
            .unwrap();
    let identity = aws_credential_types::Credentials::new(
        access_key,
        heimdall_testkit::mock::MOCK_AWS_SECRET_KEY,
        None,
        None,
        "faults-test",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        [("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = heimdall_testkit::http_client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn key_error_on_a_sigv4_access_key_id() {
    let mock = mock().await;
    let access_key = heimdall_testkit::mock::MOCK_AWS_ACCESS_KEY;
    let r = sigv4_converse(&mock, access_key, "hi").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let text = format!("hi [[mock:key_error {access_key} 429 retry_after=1]]");
    let r = sigv4_converse(&mock, access_key, &text).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(
        r.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("ThrottlingException:")
    );

    let r = sigv4_converse(&mock, access_key, "hi [[mock:key_error AKIDOTHER 429]]").await;
    assert_eq!(r.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// The raw front: connection-level faults, checked byte for byte over raw TCP.

async fn raw_mock() -> MockServer {
    MockServer::start_raw(MockOptions::default()).await.unwrap()
}

/// A request as a client puts it on the wire.
fn raw_request(dialect: Dialect, text: &str, stream: bool) -> Vec<u8> {
    let body = serde_json::to_vec(&dialect.body(text, stream)).unwrap();
    let auth = match dialect {
        Dialect::OpenAi => "authorization: Bearer sk-test\r\n",
        Dialect::Anthropic => "x-api-key: sk-ant-test\r\nanthropic-version: 2023-06-01\r\n",
    };
    let mut out = format!(
        "POST {} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
        dialect.path(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn connect(mock: &MockServer) -> TcpStream {
    TcpStream::connect(mock.addr()).await.unwrap()
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection")
        .unwrap();
    out
}

/// Sends `request` on a fresh connection; returns all bytes until the server closes it.
async fn exchange(mock: &MockServer, request: &[u8]) -> Vec<u8> {
    let mut tcp = connect(mock).await;
    tcp.write_all(request).await.unwrap();
    read_to_close(&mut tcp).await
}

/// Reads one response (head, then a content-length or chunked body) off a kept-alive
/// connection; returns the head and the decoded body.
async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>) {
        let mut chunk = [0u8; 8192];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let find = |buf: &[u8], pat: &[u8]| buf.windows(pat.len()).position(|w| w == pat);
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        fill(tcp, buf).await;
    };
    let head = String::from_utf8(buf.drain(..head_end).collect()).unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            fill(tcp, buf).await;
        }
        body.extend(buf.drain(..len));
    } else {
        assert_eq!(
            header("transfer-encoding").as_deref(),
            Some("chunked"),
            "{head}"
        );
        loop {
            let line_end = loop {
                if let Some(at) = find(buf, b"\r\n") {
                    break at;
                }
                fill(tcp, buf).await;
            };
            let size_line = String::from_utf8(buf[..line_end].to_vec()).unwrap();
            let size = usize::from_str_radix(&size_line, 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                fill(tcp, buf).await;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    (head, body)
}

#[tokio::test]
async fn raw_front_writes_statuses_hyper_will_not() {
    let mock = raw_mock().await;
    for dialect in DIALECTS {
        let got = exchange(&mock, &raw_request(dialect, "[[mock:status 600]]", false)).await;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "HTTP/1.1 600 Mock Status\r\ncontent-type: application/json\r\ncontent-length: 19\r\n\
             connection: close\r\n\r\n{\"mock_status\":600}"
        );

        let got = exchange(
            &mock,
            &raw_request(
                dialect,
                "[[mock:status 302 location=http://127.0.0.1:9/elsewhere]]",
                true,
            ),
        )
        .await;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\n\
             content-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n\
             {\"mock_status\":302}"
        );

        let got = exchange(&mock, &raw_request(dialect, "[[mock:status 101]]", false)).await;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: mock\r\n\r\n"
        );
    }
    // The handler still saw (and recorded) every request.
    assert_eq!(mock.requests().len(), 6);

    // Validation comes first: a bad key is a 401, not the scripted status.
    let bad_key = String::from_utf8(raw_request(Dialect::OpenAi, "[[mock:status 600]]", false))
        .unwrap()
        .replace("Bearer sk-test", "Bearer bad-key");
    let mut tcp = connect(&mock).await;
    tcp.write_all(bad_key.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut tcp, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
}

#[tokio::test]
async fn raw_front_answers_like_the_hyper_mock() {
    let mock = raw_mock().await;
    let client = heimdall_testkit::http_client();
    for dialect in DIALECTS {
        let r = dialect.post(&mock, "alpha beta", false).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-length").is_some());
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(reply_text(dialect, &v), "alpha beta");

        let r = dialect.post(&mock, "alpha beta gamma", true).await;
        assert!(content_type(&r).starts_with("text/event-stream"));
        let body = r.text().await.unwrap();
        assert!(body.ends_with(stream_end(dialect)), "{body}");

        // Directives that bend the body work here too.
        let r = dialect.post(&mock, "[[mock:body no_content]]", true).await;
        assert_eq!(r.status(), 204);
        let r = dialect.post(&mock, "[[mock:huge 1]]", false).await;
        assert_eq!(declared_length(&r), Some(r.bytes().await.unwrap().len()));
        let r = dialect
            .post(&mock, "[[mock:error 429 retry_after=3]]", false)
            .await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        let mut r = dialect.post(&mock, "alpha beta [[mock:cut]]", true).await;
        let err = loop {
            match r.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a cut stream ended cleanly"),
                Err(e) => break e,
            }
        };
        let _ = err;
    }
    let r = client
        .get(format!("{}/v1/models", mock.base_url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mock.requests().len(), 13);

    // Keep-alive: two requests, two answers, one connection.
    let mut tcp = connect(&mock).await;
    let mut buf = Vec::new();
    for text in ["one two three", "four five six"] {
        tcp.write_all(&raw_request(Dialect::Anthropic, text, true))
            .await
            .unwrap();
        let (head, body) = read_response(&mut tcp, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.ends_with(stream_end(Dialect::Anthropic)));
    }
}

#[tokio::test]
async fn close_idle_closes_a_kept_alive_connection() {
    let mock = raw_mock().await;
    for dialect in DIALECTS {
        let mut tcp = connect(&mock).await;
        let mut buf = Vec::new();
        // Within the idle limit the connection serves the next request.
        tcp.write_all(&raw_request(
            dialect,
            "first [[mock:close_idle 2000]]",
            false,
        ))
        .await
        .unwrap();
        let (head, _) = read_response(&mut tcp, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        tcp.write_all(&raw_request(
            dialect,
            "second [[mock:close_idle 150]]",
            true,
        ))
        .await
        .unwrap();
        let (head, body) = read_response(&mut tcp, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .ends_with(stream_end(dialect))
        );
        // Then, idle, it is closed after the limit without another byte.
        let answered = Instant::now();
        let rest = read_to_close(&mut tcp).await;
        assert!(rest.is_empty());
        let idle = answered.elapsed();
        assert!(
            idle >= Duration::from_millis(100) && idle < Duration::from_secs(2),
            "{idle:?}"
        );
    }
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn hangup_closes_without_writing_a_byte() {
    let mock = raw_mock().await;
    for dialect in DIALECTS {
        for stream in [false, true] {
            let got = exchange(&mock, &raw_request(dialect, "hi [[mock:hangup]]", stream)).await;
            assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        }
        // What a client sees.
        let err = dialect
            .request(&mock, "hi [[mock:hangup]]", false)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_request(), "{err:?}");
    }
    assert_eq!(mock.requests().len(), 6);
}

#[tokio::test]
async fn hyper_mock_refuses_connection_faults() {
    let mock = mock().await;
    for dialect in DIALECTS {
        for text in [
            "[[mock:status 600]]",
            "[[mock:close_idle 50]]",
            "[[mock:hangup]]",
        ] {
            let r = dialect.post(&mock, text, false).await;
            assert_eq!(r.status(), 400, "{dialect:?} {text}");
            assert!(r.text().await.unwrap().contains("raw front"));
        }
    }
}

#[tokio::test]
async fn raw_front_refuses_chunked_request_bodies() {
    let mock = raw_mock().await;
    let got = exchange(
        &mock,
        b"POST /v1/messages HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    let got = String::from_utf8(got).unwrap();
    assert!(got.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{got}");
    assert!(got.ends_with("content-length bodies only"), "{got}");
    assert!(mock.requests().is_empty());
}
