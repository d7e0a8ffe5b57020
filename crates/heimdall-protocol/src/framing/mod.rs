//! Framing: how an upstream's byte stream splits into messages, independent of what the
//! messages mean: server-sent events, newline-delimited JSON (Ollama), the AWS event stream
//! (Bedrock).

pub mod aws_eventstream;
pub mod ndjson;
pub mod sse;

use bytes::Bytes;

/// One complete message of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message's bytes as received, terminator included: pass-through forwards these.
    pub raw: Bytes,
    /// Its name, where the framing has one (SSE `event:`, the AWS event stream's event or
    /// exception type).
    pub name: Option<Bytes>,
    /// Its payload (SSE: the `data:` lines joined with `\n`; empty when there were none).
    pub data: Bytes,
}

impl Frame {
    pub fn name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// The byte stream cannot be split into frames any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A single message grew past the configured maximum without ending.
    #[error("upstream sent a stream event larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The bytes break the framing's own rules.
    #[error("upstream stream is malformed: {0}")]
    Malformed(String),
}

/// Splits a byte stream into frames. Feed chunks with `push`, drain complete frames with
/// `next_frame`; a partial frame stays buffered (up to the size limit) until its end arrives.
pub trait Framer: Send {
    fn push(&mut self, chunk: &[u8]);
    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError>;
    /// At end of input: what is buffered, as a last frame, when the upstream omitted the final
    /// terminator. `None` when nothing but whitespace is left.
    fn finish(&mut self) -> Option<Frame>;
}
