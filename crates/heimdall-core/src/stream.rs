//! The stream pump: upstream bytes → framer → (usage tap | decoder → assembler → encoder) →
//! client bytes. It applies the idle timeout, sends keep-alives during long silences on
//! translated streams, reports a broken upstream as an in-band error event, and keeps the
//! request record up to date. Dropping the stream (the client left) drops the upstream
//! response, which closes that connection and so cancels the upstream request.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use heimdall_protocol::canonical::{Assembler, Delta, StreamEncoder};
use heimdall_protocol::dialect::{StreamDecoder, TapVerdict, UsageTap};
use heimdall_protocol::error::{ErrorType, parse_upstream_error};
use heimdall_protocol::framing::{Frame, Framer};
use heimdall_providers::{ByteStream, UpstreamResponse};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::cache::Capture;
use crate::error::{scrub, scrub_bytes};
use crate::guard::RecordGuard;
use crate::limits::Slot;
use crate::record::Outcome;

/// The body of a streaming answer.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How the upstream's frames become the client's bytes.
pub(crate) enum Mode {
    /// Same dialect on both sides: frames are forwarded as received while a tap reads usage;
    /// the encoder writes only Heimdall's own error events.
    PassThrough {
        tap: Box<dyn UsageTap>,
        encoder: Box<dyn StreamEncoder>,
    },
    Translate {
        decoder: Box<dyn StreamDecoder>,
        assembler: Box<Assembler>,
    },
}

pub(crate) struct Pump {
    pub response: UpstreamResponse,
    pub framer: Box<dyn Framer>,
    pub mode: Mode,
    pub idle: Duration,
    pub guard: RecordGuard,
    /// The key used for the call, scrubbed from anything the upstream sends.
    pub secret: String,
    /// Cancelled when the gateway must end every stream now (shutdown past its grace).
    pub abort: CancellationToken,
    /// The provider slot (`concurrency_and_buffer_size`) the stream holds until it ends.
    pub slot: Option<Slot>,
    /// Keeps the events for the semantic cache, which stores them once the stream is complete.
    pub capture: Option<Capture>,
}

/// When a stream's events came and how long it waited on either side, for its record.
#[derive(Default)]
struct Timing {
    /// The last upstream event.
    last_event: Option<Instant>,
    /// Sum of the gaps between upstream events, and their count.
    gaps: Duration,
    gap_count: u32,
    /// When the last chunk was handed to the client; the time until the next poll is the
    /// client's.
    handed: Option<Instant>,
}

struct State {
    upstream: ByteStream,
    framer: Box<dyn Framer>,
    mode: Mode,
    idle: Duration,
    guard: RecordGuard,
    secret: String,
    /// Registered once per stream: a wait created per chunk would take the token's lock for
    /// every chunk of every stream.
    abort: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the current upstream silence becomes an idle timeout. Only complete frames
    /// reset it: an upstream dripping bytes that never finish an event is silent too.
    idle_deadline: Instant,
    deltas: Vec<Delta>,
    done: bool,
    timing: Timing,
    capture: Option<Capture>,
    /// Held, not read: dropping the state gives the slot back.
    _slot: Option<Slot>,
}

/// Longest upstream silence on a translated stream before Heimdall sends a keep-alive of its
/// own, so proxies between it and the client keep the connection while a reasoning model
/// thinks. (Pass-through upstreams send their own, and pass-through bytes stay untouched.)
const KEEPALIVE: Duration = Duration::from_secs(10);

pub(crate) fn body(pump: Pump) -> BodyStream {
    let mut state = State {
        upstream: pump.response.into_stream(),
        framer: pump.framer,
        mode: pump.mode,
        idle: pump.idle,
        guard: pump.guard,
        secret: pump.secret,
        abort: Box::pin(pump.abort.cancelled_owned()),
        idle_deadline: Instant::now() + pump.idle,
        deltas: Vec::new(),
        done: false,
        timing: Timing::default(),
        capture: pump.capture,
        _slot: pump.slot,
    };
    // A translated stream's message start goes out at once, before the first upstream chunk.
    let mut first = BytesMut::new();
    if let Mode::Translate { assembler, .. } = &mut state.mode {
        assembler.start(&mut first);
    }
    if let Some(capture) = &mut state.capture {
        capture.push(&first);
    }
    let head = futures_util::stream::iter((!first.is_empty()).then(|| Ok(first.freeze())));
    Box::pin(head.chain(futures_util::stream::unfold(state, next_chunk)))
}

async fn next_chunk(mut s: State) -> Option<(Result<Bytes, std::io::Error>, State)> {
    if let Some(handed) = s.timing.handed.take() {
        s.guard.record.client_wait += handed.elapsed();
    }
    let mut out = BytesMut::new();
    while !s.done && out.is_empty() {
        let now = Instant::now();
        let until_idle = s.idle_deadline.saturating_duration_since(now);
        let wait = match s.mode {
            Mode::Translate { .. } => until_idle.min(s.keepalive()),
            Mode::PassThrough { .. } => until_idle,
        };
        let next = tokio::select! {
            next = tokio::time::timeout(wait, s.upstream.next()) => {
                s.guard.record.upstream_wait += now.elapsed();
                next
            }
            () = s.abort.as_mut() => {
                let msg = crate::error::GatewayError::shutting_down().message;
                s.fail(ErrorType::OverloadedError, &msg, &mut out);
                continue;
            }
        };
        match next {
            Ok(Some(Ok(chunk))) => {
                s.framer.push(&chunk);
                s.drain_frames(&mut out);
            }
            Err(_) if Instant::now() < s.idle_deadline => {
                if let Mode::Translate { assembler, .. } = &mut s.mode {
                    assembler.keepalive(&mut out);
                }
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
    let chunk = out.freeze();
    if let Some(content) = &mut s.guard.record.content {
        content.push_response(&chunk);
    }
    if let Some(capture) = &mut s.capture {
        capture.push(&chunk);
        // Stored only once the whole stream went out and ended normally.
        if s.done
            && s.guard.record.outcome == Outcome::Success
            && let Some(capture) = s.capture.take()
        {
            capture.finish(s.guard.record.stop_reason.as_deref());
        }
    }
    s.timing.handed = Some(Instant::now());
    Some((Ok(chunk), s))
}

impl State {
    /// Keep-alives often enough that a short idle timeout is still preceded by some.
    fn keepalive(&self) -> Duration {
        KEEPALIVE.min(self.idle / 2)
    }

    fn timed_event(&mut self, now: Instant) {
        let t = &mut self.timing;
        match t.last_event.replace(now) {
            None => self.guard.record.first_byte = Some(self.guard.since_received()),
            Some(last) => {
                t.gaps += now - last;
                t.gap_count += 1;
                self.guard.record.inter_event = Some(t.gaps / t.gap_count);
            }
        }
    }

    fn drain_frames(&mut self, out: &mut BytesMut) {
        while !self.done {
            match self.framer.next_frame() {
                Ok(Some(frame)) => {
                    let now = Instant::now();
                    self.idle_deadline = now + self.idle;
                    self.timed_event(now);
                    self.frame(&frame, out);
                }
                Ok(None) => break,
                Err(e) => self.fail(ErrorType::ApiError, &e.to_string(), out),
            }
        }
    }

    fn frame(&mut self, frame: &Frame, out: &mut BytesMut) {
        match &mut self.mode {
            Mode::PassThrough { tap, .. } => {
                let verdict = tap.observe(frame);
                if verdict == TapVerdict::Invalid {
                    // Junk is never forwarded: clients would choke on it or drop it silently.
                    self.fail(
                        ErrorType::ApiError,
                        "upstream sent bytes that are not a valid stream event",
                        out,
                    );
                    return;
                }
                out.extend_from_slice(&scrub_bytes(&frame.raw, &self.secret));
                match verdict {
                    TapVerdict::Continue | TapVerdict::Invalid => {}
                    TapVerdict::Complete => self.done = true,
                    TapVerdict::Failed => {
                        let (kind, message) = in_band_error(&frame.data);
                        self.guard
                            .stream_failed(kind, &scrub(&message, &self.secret));
                        self.done = true;
                    }
                }
            }
            Mode::Translate { decoder, assembler } => {
                decoder.frame(frame, &mut self.deltas);
                for delta in self.deltas.drain(..) {
                    let delta = match delta {
                        Delta::Error { kind, message } => {
                            let message = scrub(&message, &self.secret);
                            self.guard.stream_failed(kind, &message);
                            Delta::Error { kind, message }
                        }
                        other => other,
                    };
                    assembler.push(delta, out);
                }
                self.done = assembler.is_done();
            }
        }
        self.sync_record();
    }

    fn end_of_upstream(&mut self, out: &mut BytesMut) {
        if let Some(tail) = self.framer.finish() {
            // An event cut off by EOF: taken as if terminated (some servers omit the final
            // blank line), then completeness is judged.
            self.frame(&tail, out);
        }
        if self.done {
            return;
        }
        match &mut self.mode {
            Mode::PassThrough { .. } => {
                self.fail(
                    ErrorType::ApiError,
                    "upstream stream ended before message_stop",
                    out,
                );
                return;
            }
            Mode::Translate { decoder, assembler } => {
                decoder.end(&mut self.deltas);
                for delta in self.deltas.drain(..) {
                    if let Delta::Error { kind, message } = &delta {
                        self.guard.stream_failed(*kind, message);
                    }
                    assembler.push(delta, out);
                }
                assembler.finish(out);
            }
        }
        self.done = true;
        self.sync_record();
    }

    fn fail(&mut self, kind: ErrorType, message: &str, out: &mut BytesMut) {
        match &mut self.mode {
            Mode::Translate { assembler, .. } => assembler.fail(kind, message, out),
            Mode::PassThrough { encoder, .. } => encoder.error(kind, message, out),
        }
        self.done = true;
        self.sync_record();
        self.guard.stream_failed(kind, message);
    }

    fn sync_record(&mut self) {
        let record = &mut self.guard.record;
        match &self.mode {
            Mode::PassThrough { tap, .. } => {
                record.usage = tap.usage();
                record.stop_reason = tap.stop_reason().map(str::to_owned);
            }
            Mode::Translate { assembler, .. } => {
                record.usage = assembler.usage();
                if let Some(reason) = assembler
                    .stop_reason()
                    .filter(|_| record.stop_reason.is_none())
                {
                    record.stop_reason = Some(reason.as_str().to_owned());
                }
            }
        }
        if self.done && record.outcome == Outcome::Cancelled {
            record.outcome = Outcome::Success;
        }
    }
}

/// The kind and message of an error event an upstream sent in its stream.
fn in_band_error(data: &[u8]) -> (ErrorType, String) {
    match parse_upstream_error(data) {
        Some(e) => (
            e.upstream_type
                .as_deref()
                .and_then(ErrorType::parse)
                .unwrap_or(ErrorType::ApiError),
            e.message,
        ),
        None => (ErrorType::ApiError, "upstream reported an error".to_owned()),
    }
}
