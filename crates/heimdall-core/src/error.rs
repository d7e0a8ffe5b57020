//! The gateway's failure type: an error kind, the status to answer with, and a message that
//! is safe to show the client. Front doors turn it into their own error shape.

use bytes::Bytes;
use heimdall_protocol::dialect::{DialectId, TranslateError};
use heimdall_protocol::error::{
    ErrorType, aws_error_type, classify_upstream, parse_upstream_error,
};
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

    /// What a request still waiting when the shutdown grace period ends is answered.
    pub fn shutting_down() -> Self {
        Self::new(
            ErrorType::OverloadedError,
            "Heimdall is shutting down and could not finish this request in time; retry it",
        )
        .with_status(503)
    }

    /// The upstream failed or answered something unusable: 502 `api_error`.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ApiError, message).with_status(502)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Translates an upstream failure, keeping the upstream status. `secret` is the key used
    /// for the call: it is scrubbed from anything the upstream echoed back. `pass_through`: the
    /// dialect both sides speak; an error document in that dialect's shape is kept for the
    /// client as it came.
    pub fn from_provider(
        err: &ProviderError,
        secret: &str,
        pass_through: Option<DialectId>,
    ) -> Self {
        match err {
            ProviderError::Status {
                provider,
                status,
                headers,
                body,
            } => {
                let parsed = parse_upstream_error(body);
                // Only an error document of the client's own dialect is the upstream's wording;
                // an HTML page from its edge, a body cut at the size limit, or a document of
                // another shape (Google's front end before Claude on Vertex) gets our own.
                let pass_through = pass_through
                    .is_some_and(|d| parsed.as_ref().is_some_and(|p| p.shape == Some(d)));
                // AWS names the failure in a header; its statuses are not Anthropic's.
                let aws = headers
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .and_then(aws_error_type);
                let kind = aws.unwrap_or_else(|| {
                    classify_upstream(
                        *status,
                        parsed.as_ref().and_then(|p| p.upstream_type.as_deref()),
                    )
                });
                let detail = parsed.map_or_else(
                    || format!("{provider} returned HTTP {status}"),
                    |p| p.message,
                );
                Self {
                    status: aws.map_or(*status, ErrorType::status),
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
        let g = GatewayError::from_provider(
            &err,
            "sk-secret-1",
            Some(heimdall_protocol::dialect::openai_chat::DIALECT),
        );
        assert_eq!(g.status, 401);
        assert_eq!(g.kind, ErrorType::AuthenticationError);
        assert!(!g.message.contains("sk-secret-1"), "{}", g.message);
        let body = g.upstream.unwrap().body;
        assert!(memchr::memmem::find(&body, b"sk-secret-1").is_none());
        assert!(memchr::memmem::find(&body, b"Incorrect API key provided: ***").is_some());
    }

    #[test]
    fn pass_through_keeps_error_documents_of_its_own_dialect_only() {
        use heimdall_protocol::dialect::anthropic::DIALECT as ANTHROPIC;
        let status = |body: &'static str| ProviderError::Status {
            provider: "vertex".into(),
            status: 429,
            headers: Box::default(),
            body: Bytes::from_static(body.as_bytes()),
        };
        let own =
            status(r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#);
        assert!(
            GatewayError::from_provider(&own, "k", Some(ANTHROPIC))
                .upstream
                .is_some()
        );
        let google = status(
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        let g = GatewayError::from_provider(&google, "k", Some(ANTHROPIC));
        assert!(g.upstream.is_none());
        assert_eq!((g.status, g.kind), (429, ErrorType::RateLimitError));
        assert_eq!(g.message, "Quota exceeded");
        assert!(
            GatewayError::from_provider(&own, "k", None)
                .upstream
                .is_none()
        );
    }

    #[test]
    fn aws_error_names_decide_over_aws_statuses() {
        let aws = |status: u16, name: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-amzn-errortype", http::HeaderValue::from_static(name));
            let err = ProviderError::Status {
                provider: "bedrock".into(),
                status,
                headers: Box::new(headers),
                body: Bytes::from_static(br#"{"message":"m"}"#),
            };
            let g = GatewayError::from_provider(&err, "k", None);
            (g.status, g.kind)
        };
        assert_eq!(
            aws(
                400,
                "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ),
            (429, ErrorType::RateLimitError)
        );
        assert_eq!(
            aws(408, "ModelTimeoutException"),
            (504, ErrorType::TimeoutError)
        );
        assert_eq!(
            aws(429, "ModelNotReadyException"),
            (529, ErrorType::OverloadedError)
        );
        assert_eq!(
            aws(400, "ValidationException"),
            (400, ErrorType::InvalidRequestError)
        );
        assert_eq!(aws(424, "ModelErrorException"), (500, ErrorType::ApiError));
        // Names that add nothing leave the status in charge.
        assert_eq!(
            aws(403, "UnrecognizedClientException"),
            (403, ErrorType::PermissionError)
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
