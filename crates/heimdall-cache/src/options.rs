//! The per-request headers, in Bifrost's names: `x-bf-cache-key`, `x-bf-cache-ttl`,
//! `x-bf-cache-threshold`, `x-bf-cache-type`, `x-bf-cache-no-store`. Values that do not read
//! are ignored (the configured setting applies), as Bifrost does.

use std::time::Duration;

use http::HeaderMap;

use crate::config::{MAX_TTL, parse_duration};

/// Which lookups a request wants (`x-bf-cache-type`; both when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookupKind {
    Direct,
    Semantic,
    #[default]
    Both,
}

impl LookupKind {
    pub fn direct(self) -> bool {
        matches!(self, Self::Direct | Self::Both)
    }
    pub fn semantic(self) -> bool {
        matches!(self, Self::Semantic | Self::Both)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestOptions {
    pub cache_key: Option<String>,
    pub ttl: Option<Duration>,
    /// Clamped to 0..=1.
    pub threshold: Option<f32>,
    pub kind: LookupKind,
    /// Looked up, but its answer is not stored.
    pub no_store: bool,
}

impl RequestOptions {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        Self {
            cache_key: text("x-bf-cache-key").map(str::to_owned),
            ttl: text("x-bf-cache-ttl")
                .and_then(parse_duration)
                .filter(|d| !d.is_zero())
                .map(|d| d.min(MAX_TTL)),
            threshold: text("x-bf-cache-threshold")
                .and_then(|v| v.parse::<f32>().ok())
                .filter(|t| t.is_finite())
                .map(|t| t.clamp(0.0, 1.0)),
            kind: match text("x-bf-cache-type")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("direct") => LookupKind::Direct,
                Some("semantic") => LookupKind::Semantic,
                _ => LookupKind::Both,
            },
            no_store: text("x-bf-cache-no-store")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&'static str, &'static str)]) -> RequestOptions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        RequestOptions::from_headers(&h)
    }

    #[test]
    fn reads_every_header_and_ignores_what_does_not_read() {
        let o = opts(&[
            ("x-bf-cache-key", " tenant-a "),
            ("x-bf-cache-ttl", "1m30s"),
            ("x-bf-cache-threshold", "1.7"),
            ("x-bf-cache-type", "Semantic"),
            ("x-bf-cache-no-store", "true"),
        ]);
        assert_eq!(o.cache_key.as_deref(), Some("tenant-a"));
        assert_eq!(o.ttl, Some(Duration::from_secs(90)));
        assert_eq!(o.threshold, Some(1.0));
        assert_eq!(o.kind, LookupKind::Semantic);
        assert!(o.no_store);
        let o = opts(&[
            ("x-bf-cache-ttl", "soon"),
            ("x-bf-cache-threshold", "NaN"),
            ("x-bf-cache-type", "x"),
        ]);
        assert_eq!(o, RequestOptions::default());
        assert_eq!(
            opts(&[("x-bf-cache-ttl", "30")]).ttl,
            Some(Duration::from_secs(30))
        );
    }
}
