//! Translation between dialects.

pub mod openai_chat;

use crate::error::ErrorType;

/// Why a request or response could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client's request is malformed. `path` is Anthropic-style (`messages.0.content`),
    /// empty when the problem is the body as a whole.
    #[error("{}", join(path, message))]
    Invalid { path: String, message: String },
    /// The request is valid Anthropic but uses something the target cannot express; failing
    /// is better than silently changing what the model is asked to do.
    #[error("{}", join(path, message))]
    Unsupported { path: String, message: String },
    /// The upstream answered 2xx with a body that is not a usable response.
    #[error("invalid upstream response: {0}")]
    Upstream(String),
}

fn join(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

impl TranslateError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Client-facing text; names the field for request errors.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The Anthropic error type to answer with: request problems are the client's (400), a
    /// broken upstream body is ours (500).
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Invalid { .. } | Self::Unsupported { .. } => ErrorType::InvalidRequestError,
            Self::Upstream(_) => ErrorType::ApiError,
        }
    }
}

/// What a response translator needs beyond the upstream bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseContext {
    /// `msg_…` id minted by the caller (this crate draws no randomness).
    pub message_id: String,
    /// The model string the client sent, echoed back in the response.
    pub model: String,
}

/// Whether a stream translator expects more upstream data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    Continue,
    Done,
}
