//! The mock's fault directives, driven with a plain HTTP client (or raw TCP where a client would
//! hide the faulty bytes), on both dialect routes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

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
