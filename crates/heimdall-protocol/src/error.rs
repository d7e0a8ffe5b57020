//! The canonical error vocabulary: Anthropic's `error.type` values and their HTTP statuses,
//! and reading what an upstream said in its error body.
//!
//! Every failure, whichever upstream or part of Heimdall it comes from, is classified into one
//! of these kinds; each front door turns a kind into its own status and body.

use serde::{Deserialize, Serialize};

use crate::dialect::{DialectId, anthropic, bedrock, gemini, openai_chat};

/// Anthropic's documented `error.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    BillingError,
    PermissionError,
    NotFoundError,
    ConflictError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
    TimeoutError,
    OverloadedError,
}

impl ErrorType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequestError => "invalid_request_error",
            Self::AuthenticationError => "authentication_error",
            Self::BillingError => "billing_error",
            Self::PermissionError => "permission_error",
            Self::NotFoundError => "not_found_error",
            Self::ConflictError => "conflict_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimitError => "rate_limit_error",
            Self::ApiError => "api_error",
            Self::TimeoutError => "timeout_error",
            Self::OverloadedError => "overloaded_error",
        }
    }

    /// The HTTP status Anthropic answers with for this type.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequestError => 400,
            Self::AuthenticationError => 401,
            Self::BillingError => 402,
            Self::PermissionError => 403,
            Self::NotFoundError => 404,
            Self::ConflictError => 409,
            Self::RequestTooLarge => 413,
            Self::RateLimitError => 429,
            Self::ApiError => 500,
            Self::TimeoutError => 504,
            Self::OverloadedError => 529,
        }
    }

    /// The type an upstream status maps to, as Anthropic pairs them. Unknown 4xx map to
    /// `invalid_request_error`, not to a 5xx, so clients do not retry a deterministic failure.
    pub const fn from_status(status: u16) -> Self {
        match status {
            401 => Self::AuthenticationError,
            402 => Self::BillingError,
            403 => Self::PermissionError,
            404 => Self::NotFoundError,
            409 => Self::ConflictError,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimitError,
            502 | 503 | 529 => Self::OverloadedError,
            504 => Self::TimeoutError,
            500..=599 => Self::ApiError,
            _ => Self::InvalidRequestError,
        }
    }

    /// The type for one of Google's canonical error codes (`RESOURCE_EXHAUSTED`, …), as Gemini
    /// and Vertex put them in `error.status`; for errors that come without an HTTP status (inside
    /// a stream).
    pub fn from_google_status(status: &str) -> Option<Self> {
        Some(match status {
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
                Self::InvalidRequestError
            }
            "UNAUTHENTICATED" => Self::AuthenticationError,
            "PERMISSION_DENIED" => Self::PermissionError,
            "NOT_FOUND" => Self::NotFoundError,
            "ALREADY_EXISTS" | "ABORTED" => Self::ConflictError,
            "RESOURCE_EXHAUSTED" => Self::RateLimitError,
            "UNAVAILABLE" => Self::OverloadedError,
            "DEADLINE_EXCEEDED" => Self::TimeoutError,
            "INTERNAL" | "UNKNOWN" | "DATA_LOSS" | "UNIMPLEMENTED" | "CANCELLED" => Self::ApiError,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "invalid_request_error" => Self::InvalidRequestError,
            "authentication_error" => Self::AuthenticationError,
            "billing_error" => Self::BillingError,
            "permission_error" => Self::PermissionError,
            "not_found_error" => Self::NotFoundError,
            "conflict_error" => Self::ConflictError,
            "request_too_large" => Self::RequestTooLarge,
            "rate_limit_error" => Self::RateLimitError,
            "api_error" => Self::ApiError,
            "timeout_error" => Self::TimeoutError,
            "overloaded_error" => Self::OverloadedError,
            _ => return None,
        })
    }
}

/// What an upstream said in its error body, in whichever dialect it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// The upstream's own type string (`rate_limit_error`, `insufficient_quota`, …), if any.
    pub upstream_type: Option<String>,
    pub message: String,
    /// The dialect whose error document this is, if the body has one's shape: Anthropic's
    /// `{"type":"error","error":{…}}`, Google's `{"error":{"code":N,"status":…}}` (Gemini),
    /// OpenAI's `{"error":{"message",…}}`. A pass-through forwards only its own dialect's
    /// documents: Claude on Vertex answers in Anthropic's shape, but Google's front end in its own.
    pub shape: Option<DialectId>,
}

/// Reads an error body from Anthropic (`{"type":"error","error":{…}}`), OpenAI
/// (`{"error":{"message","type","code"}}`), Google (`{"error":{"code":429,"message","status"}}`),
/// or a bare `{"error":"…"}` / `{"message":"…"}`.
/// Returns `None` when the body is not JSON or carries no message.
pub fn parse_upstream_error(body: &[u8]) -> Option<UpstreamError> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = value.get("error").unwrap_or(&value);
    if let Some(s) = err.as_str() {
        return Some(UpstreamError {
            upstream_type: None,
            message: s.to_owned(),
            shape: None,
        });
    }
    let message = err.get("message")?.as_str()?.to_owned();
    let upstream_type = err
        .get("type")
        .and_then(|t| t.as_str())
        .or_else(|| err.get("code").and_then(|c| c.as_str()))
        .or_else(|| err.get("status").and_then(|c| c.as_str()))
        .map(str::to_owned);
    let shape = if value.get("type").and_then(|t| t.as_str()) == Some("error") {
        Some(anthropic::DIALECT)
    } else if !std::ptr::eq(err, &value) {
        if err.get("status").is_some_and(serde_json::Value::is_string)
            && err.get("code").is_some_and(serde_json::Value::is_u64)
        {
            Some(gemini::DIALECT)
        } else {
            Some(openai_chat::DIALECT)
        }
    } else {
        None
    };
    Some(UpstreamError {
        upstream_type,
        message,
        shape,
    })
}

/// The Anthropic type of an AWS error answer, from its `x-amzn-ErrorType` header
/// (`ThrottlingException:http://internal.amazon.com/…`), when the name says more than the
/// status: AWS answers a spent quota with 400, a model timeout with 408, a failed model with
/// 424. `None` for names that add nothing to the status (internal and unknown ones).
pub fn aws_error_type(error_type_header: &str) -> Option<ErrorType> {
    let name = error_type_header
        .split(':')
        .next()
        .unwrap_or_default()
        .trim();
    if name.eq_ignore_ascii_case("ModelErrorException") {
        // 424 on the wire: the model failed, which is the upstream's fault, not the client's.
        return Some(ErrorType::ApiError);
    }
    Some(bedrock::exception_error_type(name)).filter(|kind| *kind != ErrorType::ApiError)
}

/// Chooses the Anthropic type for an upstream failure: the status decides (SDKs retry by status),
/// except that a documented Anthropic type in the body is kept when it names this very status
/// (so a future Anthropic type sharing a status is not flattened).
pub fn classify_upstream(status: u16, upstream_type: Option<&str>) -> ErrorType {
    match upstream_type.and_then(ErrorType::parse) {
        Some(t) if t.status() == status => t,
        _ => ErrorType::from_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_for_documented_types() {
        for t in [
            ErrorType::InvalidRequestError,
            ErrorType::AuthenticationError,
            ErrorType::BillingError,
            ErrorType::PermissionError,
            ErrorType::NotFoundError,
            ErrorType::ConflictError,
            ErrorType::RequestTooLarge,
            ErrorType::RateLimitError,
            ErrorType::ApiError,
            ErrorType::TimeoutError,
            ErrorType::OverloadedError,
        ] {
            assert_eq!(ErrorType::from_status(t.status()), t);
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::from_status(422), ErrorType::InvalidRequestError);
        assert_eq!(ErrorType::from_status(503), ErrorType::OverloadedError);
    }

    #[test]
    fn parses_both_dialects() {
        let a = parse_upstream_error(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        assert_eq!(a.upstream_type.as_deref(), Some("overloaded_error"));
        assert_eq!(a.shape, Some(anthropic::DIALECT));
        let o = parse_upstream_error(
            br#"{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}"#,
        )
        .unwrap();
        assert_eq!(o.message, "Rate limit");
        assert_eq!(o.shape, Some(openai_chat::DIALECT));
        assert_eq!(
            parse_upstream_error(br#"{"message":"m"}"#).unwrap().shape,
            None
        );
        assert!(parse_upstream_error(b"<html>").is_none());
        let g = parse_upstream_error(
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[]}}"#,
        )
        .unwrap();
        assert_eq!(g.message, "Quota exceeded");
        assert_eq!(g.upstream_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(g.shape, Some(gemini::DIALECT));
        // The status decides; Google's status string agrees with it.
        assert_eq!(
            classify_upstream(429, g.upstream_type.as_deref()),
            ErrorType::RateLimitError
        );
        assert_eq!(
            ErrorType::from_google_status("RESOURCE_EXHAUSTED"),
            Some(ErrorType::RateLimitError)
        );
        assert_eq!(
            ErrorType::from_google_status("UNAVAILABLE"),
            Some(ErrorType::OverloadedError)
        );
        assert_eq!(ErrorType::from_google_status("NEW_THING"), None);
        assert_eq!(
            classify_upstream(500, Some("rate_limit_error")),
            ErrorType::ApiError
        );
        assert_eq!(
            classify_upstream(529, Some("overloaded_error")),
            ErrorType::OverloadedError
        );
        assert_eq!(
            classify_upstream(401, Some("invalid_request_error")),
            ErrorType::AuthenticationError
        );
        assert_eq!(
            classify_upstream(503, Some("api_error")),
            ErrorType::OverloadedError
        );
    }
}
