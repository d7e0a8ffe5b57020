//! Response streams handed to the server: Anthropic SSE either passed through byte for byte
//! or produced by a translator from another dialect. Both apply the idle timeout, report a
//! broken upstream as an in-band `error` event, and keep the usage for the request record.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use heimdall_protocol::error::{ErrorType, anthropic_error_body};
use heimdall_protocol::sse::{SseFramer, write_event};
use heimdall_protocol::translate::openai_chat::StreamTranslator;
use heimdall_protocol::usage::AnthropicUsageTap;
use heimdall_providers::{ByteStream, UpstreamResponse};
use tokio::time::Instant;

use crate::error::scrub;
use crate::record::{Outcome, RequestRecord};

/// The body of a streaming answer. Dropping it (the client left) drops the upstream response,
/// which closes that connection and so cancels the upstream request.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How a stream's dialect is handled.
pub(crate) enum Dialect {
    /// Anthropic upstream: forward complete events unchanged, read usage on the side.
    PassThrough(AnthropicUsageTap),
    /// Another dialect: every upstream event goes through the translator.
    Translated(Box<StreamTranslator>),
}

struct State {
    upstream: ByteStream,
    framer: SseFramer,
    dialect: Dialect,
    idle: Duration,
    record: RequestRecord,
    /// When the current upstream silence becomes an idle timeout.
    idle_deadline: Option<Instant>,
    /// Scrubbed from transport error messages.
    secret: String,
    done: bool,
}

pub(crate) fn sse_body(
    response: UpstreamResponse,
    dialect: Dialect,
    idle: Duration,
    record: RequestRecord,
    secret: &str,
) -> BodyStream {
    let mut state = State {
        upstream: response.into_stream(),
        framer: SseFramer::new(),
        dialect,
        idle,
        idle_deadline: None,
        record,
        secret: secret.to_owned(),
        done: false,
    };
    // The translator's message_start goes out at once, before the first upstream chunk.
    let mut first = BytesMut::new();
    if let Dialect::Translated(t) = &mut state.dialect {
        t.start(&mut first);
    }
    let head = futures_util::stream::iter((!first.is_empty()).then(|| Ok(first.freeze())));
    Box::pin(head.chain(futures_util::stream::unfold(state, next_chunk)))
}

/// Longest upstream silence on a translated stream before Heimdall sends a `ping` of its own,
/// so proxies between it and the client keep the connection while a reasoning model thinks.
/// (Anthropic upstreams send their own pings, and pass-through bytes stay untouched.)
const KEEPALIVE: Duration = Duration::from_secs(10);

async fn next_chunk(mut s: State) -> Option<(Result<Bytes, std::io::Error>, State)> {
    let mut out = BytesMut::new();
    while !s.done && out.is_empty() {
        let now = Instant::now();
        let deadline = *s.idle_deadline.get_or_insert(now + s.idle);
        let wait = match s.dialect {
            Dialect::Translated(_) => deadline.saturating_duration_since(now).min(s.keepalive()),
            Dialect::PassThrough(_) => deadline.saturating_duration_since(now),
        };
        match tokio::time::timeout(wait, s.upstream.next()).await {
            Ok(Some(Ok(chunk))) => {
                s.idle_deadline = None;
                s.framer.push(&chunk);
                s.drain_events(&mut out);
            }
            Err(_) if Instant::now() < deadline => {
                write_event(&mut out, "ping", br#"{"type":"ping"}"#);
            }
            Ok(Some(Err(e))) => {
                let msg = scrub(&format!("upstream failed mid-stream: {e}"), &s.secret);
                s.fail(ErrorType::ApiError, &msg, &mut out);
            }
            Ok(None) => s.end_of_upstream(&mut out),
            Err(_) => {
                let msg = format!(
                    "upstream sent nothing for {} s (stream idle timeout)",
                    s.idle.as_secs()
                );
                s.fail(ErrorType::TimeoutError, &msg, &mut out);
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    Some((Ok(out.freeze()), s))
}

impl State {
    /// Ping often enough that a short idle timeout is still preceded by pings.
    fn keepalive(&self) -> Duration {
        KEEPALIVE.min(self.idle / 2)
    }

    fn drain_events(&mut self, out: &mut BytesMut) {
        while let Some(event) = self.framer.next_event() {
            match &mut self.dialect {
                Dialect::PassThrough(tap) => {
                    tap.observe(&event);
                    out.extend_from_slice(&event.raw);
                    if event.event_name() == Some("error") {
                        self.record.outcome = Outcome::StreamError;
                        self.done = true;
                    }
                }
                Dialect::Translated(t) => {
                    t.push_data(&event.data, out);
                    if t.is_done() {
                        self.done = true;
                        if t.failed() {
                            self.record.outcome = Outcome::StreamError;
                        }
                    }
                }
            }
            if self.done {
                break;
            }
        }
        self.sync_record();
    }

    fn end_of_upstream(&mut self, out: &mut BytesMut) {
        if let Some(tail) = self.framer.finish() {
            // An event cut off by EOF: hand it over as if terminated (some servers omit the
            // final blank line), then judge completeness.
            self.framer.push(&tail.raw);
            self.framer.push(b"\n\n");
            self.drain_events(out);
        }
        if self.done {
            return;
        }
        match &mut self.dialect {
            Dialect::PassThrough(tap) if !tap.completed() => {
                self.fail(
                    ErrorType::ApiError,
                    "upstream stream ended before message_stop",
                    out,
                );
                return;
            }
            Dialect::PassThrough(_) => {}
            Dialect::Translated(t) => t.finish(out),
        }
        self.done = true;
        self.sync_record();
    }

    fn fail(&mut self, kind: ErrorType, message: &str, out: &mut BytesMut) {
        match &mut self.dialect {
            Dialect::Translated(t) => t.fail(kind, message, out),
            Dialect::PassThrough(_) => {
                write_event(
                    out,
                    "error",
                    &anthropic_error_body(kind, message, Some(&self.record.request_id)),
                );
            }
        }
        self.done = true;
        self.sync_record();
        self.record.outcome = Outcome::StreamError;
    }

    fn sync_record(&mut self) {
        self.record.usage = match &self.dialect {
            Dialect::PassThrough(tap) => tap.usage(),
            Dialect::Translated(t) => t.usage(),
        };
        if self.done && self.record.outcome == Outcome::Pending {
            self.record.outcome = Outcome::Success;
        }
    }
}
