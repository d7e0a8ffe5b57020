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
        get_json(self.gateway.base_url(), path).await
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

/// POSTs `body` to `base_url`'s `/anthropic/v1/messages/count_tokens`; asserts a 200 and
/// returns the counted input tokens.
pub async fn count_tokens(base_url: &str, body: &Value) -> u64 {
    let res = heimdall_testkit::http_client()
        .post(format!("{base_url}/anthropic/v1/messages/count_tokens"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["input_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no input_tokens in {v}"))
}

/// GETs `base_url` + `path` and parses the JSON answer.
pub async fn get_json(base_url: &str, path: &str) -> Value {
    heimdall_testkit::http_client()
        .get(format!("{base_url}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

pub fn request(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "messages": user(text)})
}

pub use heimdall_testkit::grammar::{Ending, Event};

/// Parses an Anthropic SSE body with the testkit's strict parser (every `data:` line has its
/// `event:` line, JSON `type` equals the event name).
pub fn parse_sse(text: &str) -> Vec<Event> {
    heimdall_testkit::grammar::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Asserts Anthropic's stream grammar with the testkit's strict checker, ending with
/// `message_stop`, or with an `error` event when `expect_error`.
pub fn assert_grammar(events: &[Event], expect_error: bool) {
    let want = if expect_error {
        Ending::Error
    } else {
        Ending::MessageStop
    };
    match heimdall_testkit::grammar::check(events) {
        Ok(ending) => assert_eq!(ending, want, "{events:?}"),
        Err(e) => panic!("stream grammar violated: {e}\n{events:?}"),
    }
}

/// The concatenated text of all text deltas.
pub fn streamed_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.data["delta"]["type"] == "text_delta")
        .map(|e| e.data["delta"]["text"].as_str().unwrap_or_default())
        .collect()
}

/// An Anthropic error answer: its status and its `error` object. Every answer carries the
/// gateway's `request-id`.
pub async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert!(
        res.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    // Pass-through errors are the upstream's own body, which may carry its own request id.
    if let Some(id) = v.get("request_id") {
        assert!(id.as_str().unwrap().starts_with("req_"), "{v}");
    }
    (status, v["error"].clone())
}

/// A 200 stream's events, parsed strictly.
pub async fn stream_events(res: reqwest::Response) -> Vec<Event> {
    assert_eq!(res.status(), 200);
    parse_sse(&res.text().await.unwrap())
}

/// A database of its own on this machine's PostgreSQL (trust auth; `HEIMDALL_TEST_PG_HOST`
/// and `HEIMDALL_TEST_PG_PORT` override 127.0.0.1:5432), dropped when the value is.
pub struct PgDatabase {
    pub name: String,
    pub host: String,
    pub port: String,
}

impl PgDatabase {
    /// Fails the test when PostgreSQL cannot be reached: its tests never skip.
    pub fn create() -> PgDatabase {
        let host = std::env::var("HEIMDALL_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let port = std::env::var("HEIMDALL_TEST_PG_PORT").unwrap_or_else(|_| "5432".into());
        let name = format!("heimdall_test_{}_{}", std::process::id(), rand_suffix());
        let db = PgDatabase { name, host, port };
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn psql(&self, sql: &str) {
        let out = std::process::Command::new("psql")
            .args([
                "-h", &self.host, "-p", &self.port, "-U", "postgres", "-d", "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .expect("running psql (PostgreSQL's client) for a test database");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `logs_store` section pointing at this database.
    pub fn logs_store(&self) -> Value {
        json!({"enabled": true, "type": "postgres", "config": {
            "host": self.host, "port": self.port, "user": "postgres", "password": "",
            "db_name": self.name, "ssl_mode": "disable"
        }})
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Deletes the keys under a prefix from the local Redis when dropped.
pub struct RedisPrefix(pub String);

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let script = format!(
            "redis-cli --scan --pattern '{}*' | xargs -r redis-cli del >/dev/null",
            self.0
        );
        let _ = std::process::Command::new("sh")
            .args(["-c", &script])
            .status();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Sends SIGTERM to the gateway.
pub fn terminate(gateway: &GatewayProcess) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A text no other request of the process carries, to find a request in the mock's record
/// (closed by `]`, so that no tag is a prefix of another).
pub fn unique_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "[tag {}]",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Asks `model` through the gateway at `base` (with an `anthropic-beta` header the allowlist
/// may pass); answers the status and the request the mock received for it, if any.
pub async fn ask_and_find(
    base: &str,
    mock: &MockServer,
    model: &str,
) -> (u16, Option<heimdall_testkit::RecordedRequest>) {
    let tag = unique_tag();
    let res = heimdall_testkit::http_client()
        .post(format!("{base}/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "test-beta-2025-01-01")
        .json(&request(model, &tag, false))
        .send()
        .await
        .unwrap();
    let seen = mock
        .requests()
        .into_iter()
        .find(|r| r.body.to_string().contains(&tag));
    (res.status().as_u16(), seen)
}
