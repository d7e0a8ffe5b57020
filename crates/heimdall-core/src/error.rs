//! The gateway's failure type: an error kind, the status to answer with, and a message that
//! is safe to show the client. Front doors turn it into their own error shape.

use bytes::Bytes;
use heimdall_protocol::dialect::TranslateError;
use heimdall_protocol::error::{ErrorType, classify_upstream, parse_upstream_error};
use heimdall_providers::ProviderError;
use http::{HeaderMap, HeaderValue};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?} ({status}): {message}")]
pub struct GatewayError {
    pub status: u16,
    pub kind: ErrorType,
    pub message: String,
    /// Forwarded to the client so SDK retry logic waits as the upstream asked.
    pub retry_after: Option<HeaderValue>,
    /// On the pass-through path, the upstream's own answer, to return unmodified: clients
    /// such as Claude Code match on an Anthropic upstream's error wording to recover.
    pub upstream: Option<Box<UpstreamAnswer>>,
}

/// An upstream error answer as the client should receive it.
#[derive(Debug, Clone)]
pub struct UpstreamAnswer {
    /// Headers worth keeping (`content-type`, `retry-after`, `x-should-retry`).
    pub headers: HeaderMap,
    /// The body, with the provider key scrubbed.
    pub body: Bytes,
}

impl GatewayError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status: kind.status(),
            kind,
            message: message.into(),
            retry_after: None,
            upstream: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidRequestError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::NotFoundError, message)
    }

    /// Heimdall's own failure: a 500 `api_error`, never blamed on the client.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ApiError, message)
    }

    /// The upstream failed or answered something unusable: 502 `api_error`.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ApiError, message).with_status(502)
    }

    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Translates an upstream failure, keeping the upstream status. `secret` is the key used
    /// for the call: it is scrubbed from anything the upstream echoed back. With
    /// `pass_through`, the upstream's error body is kept for the client as it came.
    pub fn from_provider(err: &ProviderError, secret: &str, pass_through: bool) -> Self {
        match err {
            ProviderError::Status {
                provider,
                status,
                headers,
                body,
            } => {
                let parsed = parse_upstream_error(body);
                // Only a typed error document is the upstream's own Anthropic-shaped answer;
                // an HTML page from its edge, a body cut at the size limit, or a cloud's own
                // shape around Claude (Bedrock's `{"message"}`) gets ours, with its message.
                let pass_through =
                    pass_through && parsed.as_ref().is_some_and(|p| p.upstream_type.is_some());
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
                    retry_after: headers.get(http::header::RETRY_AFTER).cloned(),
                    upstream: pass_through.then(|| {
                        Box::new(UpstreamAnswer {
                            headers: HeaderMap::clone(headers),
                            body: scrub_bytes(body, secret),
                        })
                    }),
                }
            }
            ProviderError::Timeout { .. } => {
                Self::new(ErrorType::TimeoutError, err.to_string()).with_status(504)
            }
            ProviderError::Connect { .. }
            | ProviderError::Transport { .. }
            | ProviderError::Stale { .. }
            | ProviderError::UnexpectedStatus { .. }
            | ProviderError::Invalid { .. } => Self::bad_gateway(scrub(&err.to_string(), secret)),
            ProviderError::InvalidKey { .. } => Self::internal(err.to_string()),
            ProviderError::Unsupported { .. } => Self::invalid_request(err.to_string()),
        }
    }
}

impl From<TranslateError> for GatewayError {
    fn from(e: TranslateError) -> Self {
        GatewayError::new(e.error_type(), e.message())
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

/// [`scrub`] for raw bytes; copies only when the key occurs.
pub(crate) fn scrub_bytes(bytes: &Bytes, secret: &str) -> Bytes {
    if secret.len() < 4 || memchr::memmem::find(bytes, secret.as_bytes()).is_none() {
        return bytes.clone();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    while let Some(i) = memchr::memmem::find(rest, secret.as_bytes()) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(b"***");
        rest = &rest[i + secret.len()..];
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_status_and_scrubs_key() {
        let err = ProviderError::Status {
            provider: "openai".into(),
            status: 401,
            headers: Box::default(),
            body: Bytes::from_static(br#"{"error":{"message":"Incorrect API key provided: sk-secret-1","type":"invalid_request_error"}}"#),
        };
        let g = GatewayError::from_provider(&err, "sk-secret-1", true);
        assert_eq!(g.status, 401);
        assert_eq!(g.kind, ErrorType::AuthenticationError);
        assert!(!g.message.contains("sk-secret-1"), "{}", g.message);
        let body = g.upstream.unwrap().body;
        assert!(memchr::memmem::find(&body, b"sk-secret-1").is_none());
        assert!(memchr::memmem::find(&body, b"Incorrect API key provided: ***").is_some());
    }

    #[test]
    fn an_untyped_error_document_gets_our_shape() {
        let err = ProviderError::Status {
            provider: "bedrock".into(),
            status: 429,
            headers: Box::default(),
            body: Bytes::from_static(br#"{"message":"Too many requests"}"#),
        };
        let g = GatewayError::from_provider(&err, "", true);
        assert!(g.upstream.is_none());
        assert_eq!(
            (g.kind, g.message.as_str()),
            (ErrorType::RateLimitError, "Too many requests")
        );
    }

    #[test]
    fn heimdall_own_failures_are_500_not_the_clients_400() {
        let e = GatewayError::from(TranslateError::Internal("encoding failed".into()));
        assert_eq!((e.status, e.kind), (500, ErrorType::ApiError));
        let e = GatewayError::from(TranslateError::invalid("messages", "bad"));
        assert_eq!((e.status, e.kind), (400, ErrorType::InvalidRequestError));
    }
}
