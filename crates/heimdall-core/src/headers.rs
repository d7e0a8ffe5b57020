//! Which client headers go upstream: Bifrost's `client.header_filter_config`.
//!
//! By default only `anthropic-version` does. A header named in `allowlist` is forwarded under
//! its own name; `x-bf-eh-<name>: v` forwards `<name>: v` when the lists permit `<name>` (any
//! name when the allowlist is empty); `denylist` holds names back. Credentials, framing and
//! hop-by-hop headers, and Heimdall's own `x-bf-*` control headers are never forwarded,
//! whatever the lists say. Values with CR or LF never get this far (the HTTP parser refuses
//! them with a 400); a forwarded value over [`MAX_FORWARDED_VALUE_BYTES`] is refused with 400.
//!
//! Which upstream then receives a forwarded header is the provider's business: `anthropic-*`
//! headers mean something only to Claude upstreams (and `anthropic-beta` is filtered per
//! platform, see `heimdall_providers::betas`); the others go to every upstream.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName};

use crate::error::GatewayError;

pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// A header sent as `x-bf-eh-<name>` is forwarded as `<name>`.
pub(crate) const EXPLICIT_PREFIX: &str = "x-bf-eh-";
/// Longest value Heimdall forwards; a longer one is refused rather than cut.
pub const MAX_FORWARDED_VALUE_BYTES: usize = 8 * 1024;

/// Never forwarded: the gateway owns credentials, framing and the connection.
const NEVER: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "accept-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

fn never(name: &str) -> bool {
    NEVER.contains(&name) || name.starts_with("x-bf-")
}

/// `client.header_filter_config`, names lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    allow: Vec<HeaderName>,
    deny: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn new(allow: Vec<HeaderName>, deny: Vec<HeaderName>) -> Self {
        Self { allow, deny }
    }

    /// The names of `allowlist`, as configured (for the admin API's settings).
    pub fn allowlist(&self) -> &[HeaderName] {
        &self.allow
    }

    /// The names of `denylist`, as configured.
    pub fn denylist(&self) -> &[HeaderName] {
        &self.deny
    }

    fn permits(&self, name: &HeaderName) -> bool {
        !never(name.as_str())
            && !self.deny.contains(name)
            && (self.allow.is_empty() || self.allow.contains(name))
    }

    /// The client headers that may go upstream.
    pub fn forwarded(&self, headers: &HeaderMap) -> Result<HeaderMap, GatewayError> {
        let mut out = HeaderMap::new();
        for (name, value) in headers {
            let target = match name.as_str().strip_prefix(EXPLICIT_PREFIX) {
                Some(rest) => match HeaderName::from_bytes(rest.as_bytes()) {
                    Ok(target) if self.permits(&target) => target,
                    _ => continue,
                },
                None if *name == ANTHROPIC_VERSION => name.clone(),
                None if self.allow.contains(name) && self.permits(name) => name.clone(),
                None => {
                    if *name == ANTHROPIC_BETA {
                        note_beta_held_back();
                    }
                    continue;
                }
            };
            if value.len() > MAX_FORWARDED_VALUE_BYTES {
                return Err(GatewayError::invalid_request(format!(
                    "header `{name}` is {} bytes long; headers forwarded upstream may be at most {MAX_FORWARDED_VALUE_BYTES} bytes",
                    value.len()
                )));
            }
            out.append(target, value.clone());
        }
        Ok(out)
    }
}

/// Says once per process why clients' betas do not reach Anthropic, and how to change it.
fn note_beta_held_back() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a request's anthropic-beta header was not forwarded upstream; to forward it, add \
             \"client\": {{\"header_filter_config\": {{\"allowlist\": [\"anthropic-beta\"]}}}} \
             to config.json (said once)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        h.iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect()
    }

    const CLIENT: &[(&str, &str)] = &[
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "a-1"),
        ("anthropic-beta", "b-2"),
        ("x-api-key", "client-secret"),
        ("x-trace", "t"),
        ("x-bf-vk", "sk-bf-1"),
        ("x-bf-eh-x-team", "blue"),
        ("x-bf-eh-authorization", "Bearer stolen"),
        ("x-bf-eh-x-bf-vk", "sk-bf-2"),
    ];

    #[test]
    fn by_default_only_the_version_and_explicit_extras_go() {
        let out = HeaderRules::default().forwarded(&headers(CLIENT)).unwrap();
        assert_eq!(names(&out), ["anthropic-version=2023-06-01", "x-team=blue"]);
    }

    #[test]
    fn the_allowlist_forwards_by_name_and_limits_explicit_extras() {
        let rules = HeaderRules::new(
            vec![ANTHROPIC_BETA, HeaderName::from_static("x-api-key")],
            vec![],
        );
        let out = rules.forwarded(&headers(CLIENT)).unwrap();
        assert_eq!(
            names(&out),
            [
                "anthropic-version=2023-06-01",
                "anthropic-beta=a-1",
                "anthropic-beta=b-2"
            ],
            "credentials stay even when listed; x-team is not on the list"
        );
    }

    #[test]
    fn the_denylist_holds_back_and_long_values_are_refused() {
        let rules = HeaderRules::new(vec![], vec![HeaderName::from_static("x-team")]);
        let out = rules.forwarded(&headers(CLIENT)).unwrap();
        assert_eq!(names(&out), ["anthropic-version=2023-06-01"]);

        let mut long = HeaderMap::new();
        let value = "v".repeat(MAX_FORWARDED_VALUE_BYTES + 1);
        long.insert("x-bf-eh-x-big", HeaderValue::from_str(&value).unwrap());
        let err = HeaderRules::default().forwarded(&long).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("x-bf-eh-x-big"), "{}", err.message);
    }
}
