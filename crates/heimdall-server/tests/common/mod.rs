//! Shared harness for black-box tests: the real `heimdall` binary on port 0 in front of the
//! in-process mock upstream.

#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test harness: a failure is a test failure.

use std::path::Path;

use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

pub const ANTHROPIC_KEY: &str = "mock-anthropic-key";
pub const OPENAI_KEY: &str = "mock-openai-key";
pub const CLAUDE: &str = "claude-sonnet-4-5-20250929";
pub const GPT: &str = "openai/gpt-4o-mini";

pub struct Harness {
    pub mock: MockServer,
    pub gateway: GatewayProcess,
    pub http: reqwest::Client,
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_heimdall"))
}

/// Both providers pointed at `mock_url`; `tweak` edits the config before it is written.
pub fn config(mock_url: &str, tweak: impl FnOnce(&mut Value)) -> Value {
    let mut c = json!({
        "providers": {
            "anthropic": {
                "keys": [{"name": "a", "value": ANTHROPIC_KEY, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": mock_url}
            },
            "openai": {
                "keys": [{"name": "o", "value": OPENAI_KEY, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": mock_url}
            }
        }
    });
    tweak(&mut c);
    c
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut Value)) -> Harness {
        let mock = MockServer::start(MockOptions::default())
            .await
            .expect("mock");
        let cfg = config(&mock.base_url(), tweak);
        let gateway = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
            .await
            .expect("gateway");
        Harness {
            mock,
            gateway,
            http: heimdall_testkit::http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway.base_url(), path)
    }

    /// GETs `path` and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.http.get(self.url(path)).send().await.unwrap();
        res.json().await.unwrap()
    }

    /// POSTs `body` to `/anthropic/v1/messages` the way an old SDK does (x-api-key).
    pub async fn messages(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/anthropic/v1/messages"))
            .header("x-api-key", "client-key-must-not-leak")
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .expect("request")
    }
}

/// POSTs `body` to `base_url`'s `/anthropic/v1/messages` with no client credentials.
pub async fn post_messages(base_url: &str, body: &Value) -> reqwest::Response {
    heimdall_testkit::http_client()
        .post(format!("{base_url}/anthropic/v1/messages"))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

pub fn request(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "messages": user(text)})
}

/// One SSE event as the client sees it.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// Parses an Anthropic SSE body, asserting that every `data:` line has its `event:` line and
/// that the JSON `type` equals the event name.
pub fn parse_sse(text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v.to_owned());
            }
        }
        let name = name.unwrap_or_else(|| panic!("data without event line: {block:?}"));
        let data: Value = serde_json::from_str(&data.expect("data line")).expect("json data");
        assert_eq!(
            data["type"],
            name.as_str(),
            "type != event name in {block:?}"
        );
        out.push(Event { name, data });
    }
    out
}

/// Asserts Anthropic's stream grammar: message_start first; blocks 0,1,2… started, filled and
/// stopped in order without overlap; message_delta then message_stop last — or an `error`
/// event as the very last event when `expect_error`.
pub fn assert_grammar(events: &[Event], expect_error: bool) {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    let usage = &events[0].data["message"]["usage"];
    assert!(
        usage["input_tokens"].is_u64() && usage["output_tokens"].is_u64(),
        "{usage}"
    );
    let mut open: Option<u64> = None;
    let mut next_index = 0u64;
    let mut saw_delta = false;
    for (i, e) in events.iter().enumerate().skip(1) {
        match e.name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "overlapping blocks at {i}: {names:?}");
                assert_eq!(e.data["index"], next_index, "{names:?}");
                if e.data["content_block"]["type"] == "text" {
                    assert_eq!(e.data["content_block"]["text"], "");
                }
                open = Some(next_index);
                next_index += 1;
            }
            "content_block_delta" => {
                assert_eq!(
                    Some(e.data["index"].as_u64().expect("index")),
                    open,
                    "{names:?}"
                );
            }
            "content_block_stop" => {
                assert_eq!(
                    Some(e.data["index"].as_u64().expect("index")),
                    open,
                    "{names:?}"
                );
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta inside a block");
                assert!(e.data["usage"]["output_tokens"].is_u64());
                saw_delta = true;
            }
            "message_stop" => {
                assert!(saw_delta && i == events.len() - 1, "{names:?}");
            }
            "ping" => {}
            "error" => {
                assert!(
                    expect_error && i == events.len() - 1,
                    "unexpected error: {:?}",
                    e.data
                );
            }
            other => panic!("unknown event {other}"),
        }
    }
    let last = *names.last().expect("events");
    assert_eq!(
        last,
        if expect_error {
            "error"
        } else {
            "message_stop"
        },
        "{names:?}"
    );
}

/// The concatenated text of all text deltas.
pub fn streamed_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "text_delta")
        .map(|e| e.data["delta"]["text"].as_str().unwrap_or_default())
        .collect()
}
