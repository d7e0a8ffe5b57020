//! The per-request record: what was asked, where it went, what it cost, how it ended.
//! It is written to the log when dropped, so a request cancelled by a disconnecting client is
//! recorded too. (Request logs in a store and metrics build on this in later work.)

use std::time::Instant;

use heimdall_protocol::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running; at drop time this means the client went away.
    Pending,
    Success,
    Failed(u16),
    /// The stream had started, then broke.
    StreamError,
}

#[derive(Debug)]
pub struct RequestRecord {
    pub request_id: String,
    pub provider: &'static str,
    pub model: String,
    pub stream: bool,
    pub usage: Usage,
    pub outcome: Outcome,
    started: Instant,
}

impl RequestRecord {
    pub fn new(request_id: &str, provider: &'static str, model: &str, stream: bool) -> Self {
        Self {
            request_id: request_id.to_owned(),
            provider,
            model: model.to_owned(),
            stream,
            usage: Usage::default(),
            outcome: Outcome::Pending,
            started: Instant::now(),
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let u = self.usage;
        macro_rules! emit {
            ($level:ident, $msg:literal, $outcome:expr) => {
                tracing::$level!(
                    request_id = %self.request_id,
                    provider = self.provider,
                    model = %self.model,
                    stream = self.stream,
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
        match self.outcome {
            Outcome::Success => emit!(info, "request completed", "success"),
            Outcome::Failed(status) => {
                tracing::info!(request_id = %self.request_id, provider = self.provider, model = %self.model, status, elapsed_ms, "request failed")
            }
            Outcome::StreamError => emit!(warn, "stream ended with an error", "stream_error"),
            Outcome::Pending => emit!(
                info,
                "client disconnected; upstream request cancelled",
                "cancelled"
            ),
        }
    }
}
