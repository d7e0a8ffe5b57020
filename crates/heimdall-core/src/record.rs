//! The per-request record and where finished records go.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;

use crate::attempt::UsedKey;
use crate::error::{GatewayError, scrub};

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

impl Outcome {
    /// The outcome's name, as the log line and the trace span give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed { .. } => "failed",
            Self::StreamError { .. } => "stream_error",
            Self::Cancelled => "cancelled",
        }
    }

    /// The HTTP status the client got (a stream that failed after its start got 200).
    pub fn status(self) -> u16 {
        match self {
            Self::Failed { status, .. } => status,
            Self::Cancelled => 499,
            Self::Success | Self::StreamError { .. } => 200,
        }
    }

    pub fn error_type(self) -> Option<ErrorType> {
        match self {
            Self::Failed { kind, .. } | Self::StreamError { kind } => Some(kind),
            Self::Cancelled | Self::Success => None,
        }
    }
}

/// What a request said and what it was answered, kept for the logs store unless
/// `client.disable_content_logging`. Held as the buffers that were sent anyway (reference
/// counted, never copied); reading them into a message happens off the request path.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// The client's body as received.
    pub request: Bytes,
    /// A JSON answer, or the chunks of a streamed one as they went to the client.
    pub response: Vec<Bytes>,
    /// The answer was longer than [`Content::MAX_RESPONSE_BYTES`]; the rest is not kept.
    pub truncated: bool,
    /// Bytes held in `response`, so that each chunk of a long stream costs O(1) to keep.
    held: usize,
}

impl Content {
    /// How much of a streamed answer is kept for the log.
    pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

    /// The content of a request whose answer is still to come.
    pub fn of_request(request: Bytes) -> Self {
        Self {
            request,
            ..Self::default()
        }
    }

    /// Content that was not kept (the log writer's queue held too much already): the record
    /// says so instead of storing a part of it.
    pub fn withheld() -> Self {
        Self {
            truncated: true,
            ..Self::default()
        }
    }

    /// Bytes held: the request and what is kept of the answer.
    pub fn len(&self) -> usize {
        self.request.len() + self.held
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_response(&mut self, chunk: &Bytes) {
        if self.held + chunk.len() > Self::MAX_RESPONSE_BYTES {
            self.truncated = true;
        } else {
            self.held += chunk.len();
            self.response.push(chunk.clone());
        }
    }
}

/// One upstream request that failed: a retry, another key or the next model of the fallback
/// chain followed it, or it ended its request with an error. Names only, never a key's value.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The configured provider.
    pub provider: String,
    /// The model as the client names it (a fallback's own name when a fallback was tried).
    pub model: String,
    /// The key's name (`direct` for the client's own key).
    pub key_name: String,
    /// The upstream's HTTP status; `None` when none came (a timeout, a connection failure).
    pub status: Option<u16>,
    pub error_type: ErrorType,
    /// At most [`AttemptRecord::MAX_MESSAGE_CHARS`] characters, the key scrubbed from it.
    pub error_message: String,
    /// From the attempt's start (its wait for a provider slot included) to its failure.
    pub elapsed: Duration,
}

impl AttemptRecord {
    /// An upstream's error text can be long (an HTML page, a huge message); the trail keeps
    /// enough of it to tell what went wrong.
    pub const MAX_MESSAGE_CHARS: usize = 500;

    /// The attempt with `key` that failed with `err`. The key's value is scrubbed from the
    /// message once more: not every error text went through the upstream scrubber, and a
    /// record outlives its request in the logs store.
    pub(crate) fn new(
        provider: &str,
        model: &str,
        key: UsedKey<'_>,
        status: Option<u16>,
        err: &GatewayError,
        elapsed: Duration,
    ) -> Self {
        let mut error_message = scrub(&err.message, key.secret());
        // Where the limit's last character starts, and whether another follows it.
        let mut starts = error_message.char_indices().map(|(i, _)| i);
        if let (Some(cut), Some(_)) = (starts.nth(Self::MAX_MESSAGE_CHARS - 1), starts.next()) {
            error_message.truncate(cut);
            error_message.push('…');
        }
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            key_name: key.name().to_owned(),
            status,
            error_type: err.kind,
            error_message,
            elapsed,
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: String,
    /// When it arrived, by the wall clock.
    pub started_at: SystemTime,
    pub endpoint: Endpoint,
    /// The front door's dialect name.
    pub front_door: &'static str,
    /// The configured provider, once routing got that far.
    pub provider: Option<String>,
    /// The model as the client named it, once read.
    pub model: Option<String>,
    /// The model that answered or was tried last: `model`, or one of its fallbacks.
    pub served_model: Option<String>,
    /// Place of `served_model` in the fallback chain (0: the model asked for).
    pub fallback_index: u32,
    /// The name (never the value) of the key that answered.
    pub key_name: Option<String>,
    /// The virtual key's id (never its value), when the request carried one.
    pub virtual_key: Option<String>,
    /// Submitted with `x-bf-async`: run as a background job.
    pub is_async: bool,
    /// The client's W3C `traceparent`, as sent.
    pub traceparent: Option<String>,
    /// Upstream requests sent for it: retries, other keys and fallbacks included.
    pub attempts: u32,
    /// The upstream requests that failed, in order: each one a retry, another key or the next
    /// model of the chain followed, and, when the request failed before its answer started,
    /// those that ended it. What the client got is the record's own: who answered
    /// (`provider`, `served_model`, `key_name`) or the error (`outcome`, `error_message`).
    /// Empty, and so not allocated, for a request answered at its first attempt.
    pub failed_attempts: Vec<AttemptRecord>,
    pub stream: bool,
    pub pass_through: bool,
    pub usage: Usage,
    /// US dollars, when the served model's price is known.
    pub cost: Option<f64>,
    pub stop_reason: Option<String>,
    pub outcome: Outcome,
    pub error_message: Option<String>,
    pub latency: Duration,
    /// Until the answer's first byte: a JSON answer's whole body, a stream's first upstream
    /// event.
    pub first_byte: Option<Duration>,
    /// Time spent waiting on upstreams: attempts, backoff between them, reading the answer,
    /// and a stream's waits for its next event.
    pub upstream_wait: Duration,
    /// Time a stream waited for the client to take what it had been sent.
    pub client_wait: Duration,
    /// A stream's mean time between upstream events after the first.
    pub inter_event: Option<Duration>,
    pub content: Option<Content>,
}

impl RequestRecord {
    /// A record before anything is known of its request but its id and where it came in.
    pub fn new(request_id: String, endpoint: Endpoint, front_door: &'static str) -> Self {
        Self {
            request_id,
            started_at: SystemTime::UNIX_EPOCH,
            endpoint,
            front_door,
            provider: None,
            model: None,
            served_model: None,
            fallback_index: 0,
            key_name: None,
            virtual_key: None,
            is_async: false,
            traceparent: None,
            attempts: 0,
            failed_attempts: Vec::new(),
            stream: false,
            pass_through: false,
            usage: Usage::default(),
            cost: None,
            stop_reason: None,
            outcome: Outcome::Cancelled,
            error_message: None,
            latency: Duration::ZERO,
            first_byte: None,
            upstream_wait: Duration::ZERO,
            client_wait: Duration::ZERO,
            inter_event: None,
            content: None,
        }
    }

    /// The time Heimdall itself spent on the request: what is neither the upstream's nor the
    /// client's.
    pub fn overhead(&self) -> Duration {
        self.latency
            .saturating_sub(self.upstream_wait)
            .saturating_sub(self.client_wait)
    }
}

/// Where finished records go. Implementations must not block: a store queues records on a
/// bounded channel and counts what it drops. Records are shared, not copied, between sinks.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: &Arc<RequestRecord>);
}

/// Hands each record to several sinks in turn (log line, metrics, store, traces).
pub struct Sinks(pub Vec<Arc<dyn RecordSink>>);

impl RecordSink for Sinks {
    fn record(&self, record: &Arc<RequestRecord>) {
        for sink in &self.0 {
            sink.record(record);
        }
    }
}

/// Writes each record as one structured log line; client-supplied strings are passed as
/// field values, which the log formatter escapes.
pub struct LogSink;

impl RecordSink for LogSink {
    /// One line per request, the same fields whatever the outcome: the status, who served it
    /// (provider, model, key), how long it took, and on a failure its kind and cause.
    fn record(&self, r: &Arc<RequestRecord>) {
        let elapsed_ms = r.latency.as_secs_f64() * 1e3;
        let u = r.usage;
        let provider = r.provider.as_deref().unwrap_or("-");
        let model = r.model.as_deref().unwrap_or("-");
        let key = r.key_name.as_deref().unwrap_or("-");
        let served_model = r.served_model.as_deref().unwrap_or(model);
        let error_type = r.outcome.error_type().map(ErrorType::as_str);
        macro_rules! emit {
            ($level:ident, $msg:literal) => {
                tracing::$level!(
                    request_id = %r.request_id,
                    status = r.outcome.status(),
                    provider = %provider,
                    model = %model,
                    key = %key,
                    served_model = %served_model,
                    attempts = r.attempts,
                    stream = r.stream,
                    outcome = r.outcome.as_str(),
                    input_tokens = u.input_tokens,
                    output_tokens = u.output_tokens,
                    cache_read_input_tokens = u.cache_read_input_tokens,
                    cache_creation_input_tokens = u.cache_creation_input_tokens,
                    elapsed_ms,
                    error_type,
                    error = r.error_message.as_deref(),
                    $msg
                )
            };
        }
        match r.outcome {
            Outcome::Success => emit!(info, "request completed"),
            Outcome::Failed { .. } => emit!(info, "request failed"),
            Outcome::StreamError { .. } => emit!(warn, "stream ended with an error"),
            Outcome::Cancelled => emit!(info, "client disconnected; upstream request cancelled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_keeps_no_key_and_a_bounded_message() {
        let secret = "sk-live-0123456789";
        let long = format!("bad key {secret}: {}", "é".repeat(2000));
        let err = GatewayError::bad_gateway(long);
        let a = AttemptRecord::new(
            "openai",
            "openai/gpt-4o",
            UsedKey::Direct {
                value: secret,
                index: 0,
            },
            Some(502),
            &err,
            Duration::from_millis(7),
        );
        assert!(!a.error_message.contains(secret), "{}", a.error_message);
        assert!(a.error_message.starts_with("bad key ***: é"));
        assert_eq!(
            a.error_message.chars().count(),
            AttemptRecord::MAX_MESSAGE_CHARS
        );
        assert!(a.error_message.ends_with('…'));
        assert_eq!(
            (a.key_name.as_str(), a.status, a.error_type),
            ("direct", Some(502), ErrorType::ApiError)
        );
        let short_key = || UsedKey::Direct {
            value: "",
            index: 0,
        };
        let short = AttemptRecord::new(
            "openai",
            "m",
            short_key(),
            None,
            &GatewayError::internal("timed out"),
            Duration::ZERO,
        );
        assert_eq!(short.error_message, "timed out");
        let exact = GatewayError::internal("x".repeat(AttemptRecord::MAX_MESSAGE_CHARS));
        let kept = AttemptRecord::new("p", "m", short_key(), None, &exact, Duration::ZERO);
        assert_eq!(
            kept.error_message, exact.message,
            "at the limit: kept whole"
        );
    }

    #[test]
    fn a_long_answer_is_kept_up_to_the_limit_then_marked_truncated() {
        let mut c = Content::default();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        for _ in 0..20 {
            c.push_response(&chunk);
        }
        assert!(c.truncated);
        assert_eq!(c.response.len(), Content::MAX_RESPONSE_BYTES / chunk.len());
        let small = Content::of_request(Bytes::from_static(b"{}"));
        assert!(!small.truncated && small.response.is_empty());
    }
}
