//! The gateway's failure type: an Anthropic error type, the status to answer with, and a
//! message that is safe to show the client.

use heimdall_protocol::error::{ErrorType, classify_upstream, parse_upstream_error};
use heimdall_providers::ProviderError;
use http::HeaderValue;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?} ({status}): {message}")]
pub struct GatewayError {
    pub status: u16,
    pub kind: ErrorType,
    pub message: String,
    /// Forwarded to the client on 429/529 so SDK retry logic waits as the upstream asked.
    pub retry_after: Option<HeaderValue>,
}

impl GatewayError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status: kind.status(),
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidRequestError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::NotFoundError, message)
    }

    /// Translates an upstream failure, keeping the upstream status. `secret` is the key used
    /// for the call: it is scrubbed from anything the upstream echoed back.
    pub fn from_provider(err: &ProviderError, secret: &str) -> Self {
        match err {
            ProviderError::Status {
                provider,
                status,
                retry_after,
                body,
            } => {
                let parsed = parse_upstream_error(body);
                let kind = classify_upstream(
                    *status,
                    parsed.as_ref().and_then(|p| p.upstream_type.as_deref()),
                );
                let detail = parsed.map_or_else(
                    || format!("{provider} returned HTTP {status}"),
                    |p| p.message,
                );
                Self {
                    status: *status,
                    kind,
                    message: scrub(&detail, secret),
                    retry_after: retry_after.clone(),
                }
            }
            ProviderError::Timeout { .. } => {
                let mut e = Self::new(ErrorType::TimeoutError, err.to_string());
                e.status = 504;
                e
            }
            ProviderError::Connect { .. } | ProviderError::Transport { .. } => {
                let mut e = Self::new(ErrorType::ApiError, scrub(&err.to_string(), secret));
                e.status = 502;
                e
            }
            ProviderError::InvalidKey { .. } => Self::new(ErrorType::ApiError, err.to_string()),
            ProviderError::Unsupported { .. } => Self::invalid_request(err.to_string()),
        }
    }
}

/// Removes the provider key from text an upstream produced (some echo part of it back).
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.len() >= 4 && text.contains(secret) {
        text.replace(secret, "***")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn keeps_status_and_scrubs_key() {
        let err = ProviderError::Status {
            provider: "openai",
            status: 401,
            retry_after: None,
            body: Bytes::from_static(br#"{"error":{"message":"Incorrect API key provided: sk-secret-1","type":"invalid_request_error"}}"#),
        };
        let g = GatewayError::from_provider(&err, "sk-secret-1");
        assert_eq!(g.status, 401);
        assert_eq!(g.kind, ErrorType::AuthenticationError);
        assert!(!g.message.contains("sk-secret-1"), "{}", g.message);
    }
}
