//! What the edge knows about a request before core decides anything: who sent it, through
//! which front door, and the client headers that later stages may act on.

use std::sync::Arc;
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
            Ok(forwarded) => (forwarded, None),
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
