//! The providers Heimdall can reach and their wire facts.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A provider family. Names are Bifrost's, so `config.json` files carry over unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    Anthropic,
    OpenAi,
}

/// What the gateway asks an upstream to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Messages,
    CountTokens,
    ListModels,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Anthropic, ProviderKind::OpenAi];

    /// The prefix in `provider/model` and the key under `providers` in `config.json`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The environment variable that enables this provider when no config file exists.
    pub const fn env_var(self) -> &'static str {
        match self {
            Self::Anthropic => "ANTHROPIC_API_KEY",
            Self::OpenAi => "OPENAI_API_KEY",
        }
    }

    /// The provider's root URL, without a version path (`network_config.base_url` overrides it).
    pub const fn default_base_url(self) -> &'static str {
        match self {
            Self::Anthropic => "https://api.anthropic.com",
            Self::OpenAi => "https://api.openai.com",
        }
    }

    /// True when the provider speaks the Anthropic Messages dialect natively, so requests pass
    /// through untranslated.
    pub const fn speaks_anthropic(self) -> bool {
        matches!(self, Self::Anthropic)
    }

    /// The path appended to the base URL, or `None` when the provider has no such endpoint.
    pub const fn path(self, op: Operation) -> Option<&'static str> {
        match (self, op) {
            (Self::Anthropic, Operation::Messages) => Some("/v1/messages"),
            (Self::Anthropic, Operation::CountTokens) => Some("/v1/messages/count_tokens"),
            (Self::Anthropic, Operation::ListModels) => Some("/v1/models"),
            (Self::OpenAi, Operation::Messages) => Some("/v1/chat/completions"),
            (Self::OpenAi, Operation::CountTokens) => None,
            (Self::OpenAi, Operation::ListModels) => Some("/v1/models"),
        }
    }

    /// Writes the provider's auth headers for `key`. A key that is not a valid header value
    /// yields `None`; the caller reports it without echoing the key.
    pub fn auth_headers(self, key: &str, headers: &mut HeaderMap) -> Option<()> {
        match self {
            Self::Anthropic => {
                let mut v = HeaderValue::from_str(key).ok()?;
                v.set_sensitive(true);
                headers.insert(HeaderName::from_static("x-api-key"), v);
            }
            Self::OpenAi => {
                let mut v = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
                v.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, v);
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ProviderKind::from_name("nope"), None);
    }

    #[test]
    fn auth_headers_are_marked_sensitive() {
        let mut h = HeaderMap::new();
        ProviderKind::OpenAi.auth_headers("sk-1", &mut h).unwrap();
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["authorization"], "Bearer sk-1");
        assert!(
            ProviderKind::Anthropic
                .auth_headers("bad\nkey", &mut h)
                .is_none()
        );
    }
}
