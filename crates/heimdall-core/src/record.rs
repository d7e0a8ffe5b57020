//! The per-request record and where finished records go.

use std::time::Duration;

use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running; at hand-over this means the client went away.
    Cancelled,
    Success,
    /// Answered with an error status before any byte of an answer.
    Failed {
        status: u16,
        kind: ErrorType,
    },
    /// The stream had started, then ended with an error event.
    StreamError {
        kind: ErrorType,
    },
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: String,
    pub endpoint: Endpoint,
    /// The front door's dialect name.
    pub front_door: &'static str,
    /// The configured provider, once routing got that far.
    pub provider: Option<String>,
    /// The model as the client named it, once read.
    pub model: Option<String>,
    /// The model that answered or was tried last: `model`, or one of its fallbacks.
    pub served_model: Option<String>,
    /// The name (never the value) of the key that answered.
    pub key_name: Option<String>,
    /// Upstream requests sent for it: retries, other keys and fallbacks included.
    pub attempts: u32,
    pub stream: bool,
    pub pass_through: bool,
    pub usage: Usage,
    pub stop_reason: Option<String>,
    pub outcome: Outcome,
    pub error_message: Option<String>,
    pub latency: Duration,
}

/// Where finished records go. Implementations must not block: a store queues records on a
/// bounded channel and counts what it drops.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: RequestRecord);
}

/// Writes each record as one structured log line; client-supplied strings are passed as
/// field values, which the log formatter escapes.
pub struct LogSink;

impl RecordSink for LogSink {
    fn record(&self, r: RequestRecord) {
        let elapsed_ms = r.latency.as_secs_f64() * 1e3;
        let u = r.usage;
        let provider = r.provider.as_deref().unwrap_or("-");
        let model = r.model.as_deref().unwrap_or("-");
        let key = r.key_name.as_deref().unwrap_or("-");
        let served_model = r.served_model.as_deref().unwrap_or(model);
        macro_rules! emit {
            ($level:ident, $msg:literal, $outcome:expr) => {
                tracing::$level!(
                    request_id = %r.request_id,
                    provider = %provider,
                    model = %model,
                    key = %key,
                    served_model = %served_model,
                    attempts = r.attempts,
                    stream = r.stream,
                    outcome = $outcome,
                    input_tokens = u.input_tokens,
                    output_tokens = u.output_tokens,
                    cache_read_input_tokens = u.cache_read_input_tokens,
                    cache_creation_input_tokens = u.cache_creation_input_tokens,
                    elapsed_ms,
                    $msg
                )
            };
        }
        match r.outcome {
            Outcome::Success => emit!(info, "request completed", "success"),
            Outcome::Failed { status, kind } => tracing::info!(
                request_id = %r.request_id,
                provider = %provider,
                model = %model,
                served_model = %served_model,
                attempts = r.attempts,
                status,
                error_type = kind.as_str(),
                error = r.error_message.as_deref().unwrap_or_default(),
                elapsed_ms,
                "request failed"
            ),
            Outcome::StreamError { .. } => {
                emit!(warn, "stream ended with an error", "stream_error")
            }
            Outcome::Cancelled => emit!(
                info,
                "client disconnected; upstream request cancelled",
                "cancelled"
            ),
        }
    }
}
