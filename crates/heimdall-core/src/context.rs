//! What the edge knows about a request before core decides anything: who sent it, through
//! which front door, and the client headers that later stages may act on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use heimdall_providers::DirectKeyHeader;

use heimdall_protocol::dialect::FrontDoor;
use http::HeaderMap;

use crate::config::VIRTUAL_KEY_PREFIX;
use crate::error::GatewayError;
use crate::exchange::Snapshot;

pub struct RequestContext {
    /// `req_…`, on every answer and record.
    pub request_id: String,
    /// The configuration this request runs on from start to end, whatever a reload does
    /// meanwhile: its header rules, body limit, routes and keys.
    pub config: Arc<Snapshot>,
    pub front_door: &'static dyn FrontDoor,
    /// The client headers that may go upstream (`client.header_filter_config`; the provider
    /// decides which of them its upstream takes).
    pub forward_headers: HeaderMap,
    /// Why the request must be refused, found while reading its headers (answered, and
    /// recorded, by the exchange).
    pub refusal: Option<GatewayError>,
    /// `x-bf-vk`, or an `sk-bf-…` value in `x-api-key` / `Authorization: Bearer`.
    pub virtual_key: Option<String>,
    /// `x-bf-api-key`: the name of the configured key this request must use.
    pub pinned_key: Option<String>,
    /// `x-bf-session-id`, or the session header coding agents send.
    pub session_id: Option<String>,
    /// `x-bf-session-ttl` (seconds): how long this session's affinity outlives its last use.
    pub session_ttl: Option<Duration>,
    /// Provider keys the client sent (not virtual keys); read only with
    /// `client.allow_direct_keys`.
    pub client_keys: ClientKeys,
    /// `x-bf-async*` headers, for async inference.
    pub async_headers: HeaderMap,
    /// W3C `traceparent`: the client's trace, which the request's span continues.
    pub traceparent: Option<String>,
    /// The `x-bf-cache-*` headers (read only with the `semantic_cache` plugin on).
    pub cache_options: heimdall_cache::RequestOptions,
    /// Runs as an async job (`x-bf-async`), not on the client's connection.
    pub is_async: bool,
    pub received: Instant,
    /// `received` by the wall clock, for records.
    pub started_at: SystemTime,
    /// Raised when the request gets a record (whose sinks write its log line), so the edge
    /// writes a line for the requests that get none.
    pub recorded: Option<RecordedFlag>,
}

/// Whether a request got a record; shared by the edge that answers it and the core that
/// records it.
#[derive(Clone, Default)]
pub struct RecordedFlag(Arc<AtomicBool>);

impl RecordedFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The `x-bf-*` request headers Heimdall acts on; any other is refused (a Bifrost control
/// header ignored in silence would change security or billing unnoticed).
const SUPPORTED_CONTROL_HEADERS: &[&str] = &[
    "x-bf-vk",
    "x-bf-api-key",
    "x-bf-session-id",
    "x-bf-session-ttl",
    "x-bf-async",
    "x-bf-async-id",
    "x-bf-async-job-result-ttl",
    "x-bf-cache-key",
    "x-bf-cache-ttl",
    "x-bf-cache-threshold",
    "x-bf-cache-type",
    "x-bf-cache-no-store",
    "x-bf-direct-key",
];

/// The first `x-bf-*` header of `headers` that Heimdall does not implement, as a refusal.
/// `x-bf-eh-*` (extra upstream headers) are the header rules'. `x-bf-direct-key` is taken only
/// as `true`: Heimdall uses a client's key whenever `client.allow_direct_keys` is on, so
/// `false` could not be honoured.
fn unsupported_control_header(headers: &HeaderMap) -> Option<GatewayError> {
    headers.iter().find_map(|(name, value)| {
        let name = name.as_str();
        if !name.starts_with("x-bf-") || name.starts_with(crate::headers::EXPLICIT_PREFIX) {
            return None;
        }
        if !SUPPORTED_CONTROL_HEADERS.contains(&name) {
            return Some(GatewayError::invalid_request(format!(
                "header `{name}` is not supported by this gateway (Heimdall); remove it, or see the README's feature table"
            )));
        }
        let direct = value.to_str().map(str::trim).unwrap_or_default();
        (name == "x-bf-direct-key" && !direct.eq_ignore_ascii_case("true")).then(|| {
            GatewayError::invalid_request(
                "header `x-bf-direct-key`: only `true` is supported (direct keys follow client.allow_direct_keys)",
            )
        })
    })
}

/// The provider keys in a request's credential headers.
#[derive(Default)]
pub struct ClientKeys {
    pub x_api_key: Option<String>,
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
}

impl ClientKeys {
    /// The key for an upstream whose native header is `native`: that header's when it carries
    /// one, else the other's (a client sets the key it has wherever its SDK puts it).
    pub fn for_upstream(&self, native: DirectKeyHeader) -> Option<&str> {
        let (first, second) = match native {
            DirectKeyHeader::XApiKey => (&self.x_api_key, &self.bearer),
            DirectKeyHeader::Bearer => (&self.bearer, &self.x_api_key),
        };
        first.as_deref().or(second.as_deref())
    }
}

impl RequestContext {
    pub fn from_headers(
        request_id: String,
        front_door: &'static dyn FrontDoor,
        headers: &HeaderMap,
        config: Arc<Snapshot>,
    ) -> Self {
        let text = |name: &str| header_text(headers, name);
        let (forward_headers, refusal) = match config.header_rules.forwarded(headers) {
            Ok(forwarded) => (forwarded, unsupported_control_header(headers)),
            Err(e) => (HeaderMap::new(), Some(e)),
        };
        let bearer = text("authorization").and_then(|v| v.strip_prefix("Bearer "));
        let virtual_key = text("x-bf-vk")
            .or_else(|| {
                [text("x-api-key"), bearer]
                    .into_iter()
                    .flatten()
                    .find(|v| v.starts_with(VIRTUAL_KEY_PREFIX))
            })
            .map(str::to_owned);
        let pinned_key = text("x-bf-api-key").map(str::to_owned);
        let session_id = text("x-bf-session-id")
            .or_else(|| text("x-claude-code-session-id"))
            .map(str::to_owned);
        let session_ttl = text("x-bf-session-ttl")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        // The last value: an SDK whose own `X-Api-Key` differs in case from the `x-api-key`
        // a caller adds sends both, its own first.
        let last = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .rfind(|v| !v.is_empty())
        };
        let provider_key = |v: Option<&str>| {
            v.filter(|k| !k.starts_with(VIRTUAL_KEY_PREFIX))
                .map(str::to_owned)
        };
        let client_keys = if config.allow_direct_keys {
            ClientKeys {
                x_api_key: provider_key(last("x-api-key")),
                bearer: provider_key(last("authorization").and_then(|v| v.strip_prefix("Bearer "))),
            }
        } else {
            ClientKeys::default()
        };
        let async_headers = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-bf-async"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let cache_options = if config.cache.is_some() {
            heimdall_cache::RequestOptions::from_headers(headers)
        } else {
            heimdall_cache::RequestOptions::default()
        };
        Self {
            request_id,
            config,
            front_door,
            forward_headers,
            refusal,
            virtual_key,
            pinned_key,
            session_id,
            session_ttl,
            client_keys,
            async_headers,
            traceparent: text("traceparent").map(str::to_owned),
            cache_options,
            is_async: false,
            received: Instant::now(),
            started_at: SystemTime::now(),
            recorded: None,
        }
    }

    /// How records name the request's virtual key: never its value, but a fingerprint of it
    /// (`vk_` and 16 hex digits of its SHA-256), the same for every request with that key.
    pub fn virtual_key_id(&self) -> Option<String> {
        self.virtual_key.as_deref().map(virtual_key_fingerprint)
    }
}

/// A header's value, trimmed; `None` when absent, empty or not text.
pub fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `vk_` and the first 16 hex digits of the key's SHA-256: stable, and not the key.
pub fn virtual_key_fingerprint(value: &str) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let mut id = String::with_capacity(19);
    id.push_str("vk_");
    for b in &digest.as_ref()[..8] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::exchange::Gateway;
    use heimdall_protocol::dialect::anthropic::Anthropic;

    /// A snapshot with direct keys on, so that client keys are read.
    fn live() -> Arc<Snapshot> {
        let config =
            Config::from_json(r#"{"client": {"allow_direct_keys": true}}"#, &|_| None).unwrap();
        Gateway::new(config).unwrap().config()
    }

    fn ctx(pairs: &[(&'static str, &'static str)]) -> RequestContext {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        RequestContext::from_headers("req_1".into(), &Anthropic, &h, live())
    }

    #[test]
    fn unimplemented_control_headers_are_refused_by_name() {
        for (name, value) in [
            ("x-bf-prom-team", "blue"),
            ("x-bf-mcp-include-tools", "fs"),
            ("x-bf-send-back-raw-response", "true"),
            ("x-bf-direct-key", "false"),
        ] {
            let c = ctx(&[(name, value)]);
            let refusal = c.refusal.expect(name);
            assert_eq!(refusal.status, 400);
            assert!(refusal.message.contains(name), "{}", refusal.message);
        }
        for (name, value) in [
            ("x-bf-vk", "sk-bf-1"),
            ("x-bf-cache-key", "k"),
            ("x-bf-eh-x-team", "blue"),
            ("x-bf-direct-key", "true"),
            ("x-bf-async-job-result-ttl", "60"),
        ] {
            assert!(ctx(&[(name, value)]).refusal.is_none(), "{name}");
        }
    }

    /// The README's feature table names every control header the code acts on as working,
    /// refuses what it lists as not there yet, and names every provider of the registry.
    #[test]
    fn the_readme_feature_table_matches_the_code() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        let table = readme
            .split("<!-- feature-status:start -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- feature-status:end -->").next())
            .expect("the feature table's markers");
        let rows: Vec<(&str, &str)> = table
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                // `| area | feature | status |` splits into 5 cells, the outer two empty.
                (cells.len() == 5).then(|| (cells[2], cells[3]))
            })
            .collect();
        let status_of = |name: &str| {
            let quoted = format!("`{name}`");
            rows.iter()
                .find(|(feature, _)| feature.contains(&quoted))
                .map(|(_, status)| *status)
        };
        for name in SUPPORTED_CONTROL_HEADERS {
            let status = status_of(name).unwrap_or_else(|| panic!("{name} not in the table"));
            assert!(
                status.starts_with("works") || status.starts_with("partial"),
                "{name}: {status}"
            );
        }
        let refused_row = rows
            .iter()
            .find(|(feature, status)| feature.contains("`x-bf-") && status.contains("400"))
            .expect("the row of refused headers");
        for header in refused_row.0.split(", ") {
            let name = header.trim_matches('`').replace('*', "x");
            assert!(
                !SUPPORTED_CONTROL_HEADERS.contains(&name.as_str()),
                "{name}"
            );
            let mut h = HeaderMap::new();
            h.insert(
                http::HeaderName::try_from(name.as_str()).expect("a header name"),
                http::HeaderValue::from_static("1"),
            );
            let c = RequestContext::from_headers("req_1".into(), &Anthropic, &h, live());
            assert_eq!(
                c.refusal.map(|r| r.status),
                Some(400),
                "{name} is not refused"
            );
        }
        for factory in heimdall_providers::factories() {
            if factory.name == "dummy" {
                continue;
            }
            let status = status_of(factory.name)
                .unwrap_or_else(|| panic!("provider {} not in the table", factory.name));
            assert!(status.starts_with("works"), "{}: {status}", factory.name);
        }
    }

    #[test]
    fn reads_identity_session_and_forwarded_headers() {
        let c = ctx(&[
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "client-key"),
            ("x-claude-code-session-id", "s-1"),
            ("x-bf-async", "true"),
        ]);
        assert_eq!(c.forward_headers.len(), 1);
        assert!(
            c.virtual_key.is_none(),
            "a plain client key is not a virtual key"
        );
        assert_eq!(c.session_id.as_deref(), Some("s-1"));
        assert_eq!(c.async_headers["x-bf-async"], "true");
        let c = ctx(&[("authorization", "Bearer sk-bf-abc")]);
        assert_eq!(c.virtual_key.as_deref(), Some("sk-bf-abc"));
        let c = ctx(&[
            ("x-bf-vk", "vk-1"),
            ("x-bf-session-id", "s-2"),
            ("x-bf-api-key", " ant-b "),
        ]);
        assert_eq!(c.pinned_key.as_deref(), Some("ant-b"));
        assert_eq!(
            (c.virtual_key.as_deref(), c.session_id.as_deref()),
            (Some("vk-1"), Some("s-2"))
        );
        assert!(c.client_keys.x_api_key.is_none() && c.client_keys.bearer.is_none());
        let c = ctx(&[
            ("x-api-key", "sk-ant-1"),
            ("authorization", "Bearer sk-oai-1"),
            ("x-bf-session-ttl", "90"),
        ]);
        assert_eq!(
            c.client_keys.for_upstream(DirectKeyHeader::XApiKey),
            Some("sk-ant-1")
        );
        assert_eq!(
            c.client_keys.for_upstream(DirectKeyHeader::Bearer),
            Some("sk-oai-1")
        );
        assert_eq!(c.session_ttl, Some(Duration::from_secs(90)));
        let c = ctx(&[("authorization", "Bearer sk-oai-1")]);
        assert_eq!(
            c.client_keys.for_upstream(DirectKeyHeader::XApiKey),
            Some("sk-oai-1"),
            "the only key there is"
        );
        let mut twice = HeaderMap::new();
        twice.append("x-api-key", http::HeaderValue::from_static("dummy-key"));
        twice.append("x-api-key", http::HeaderValue::from_static("sk-ant-real"));
        let c = RequestContext::from_headers("r".into(), &Anthropic, &twice, live());
        assert_eq!(c.client_keys.x_api_key.as_deref(), Some("sk-ant-real"));
        let c = ctx(&[("x-api-key", "sk-bf-virtual")]);
        assert!(
            c.client_keys.x_api_key.is_none(),
            "a virtual key is never a provider key"
        );
    }
}
