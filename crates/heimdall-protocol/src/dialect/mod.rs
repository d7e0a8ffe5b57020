//! Dialects: the wire forms Heimdall speaks, each in its own folder, and the traits through
//! which the exchange uses them without knowing which one it holds.
//!
//! A front door decodes a client's request into the canonical form and encodes answers,
//! stream events and errors back; an upstream dialect encodes canonical requests for a
//! provider and decodes its answers into the canonical form (streams as [`Delta`]s for the
//! [`Assembler`](crate::canonical::Assembler)). When a front door and an upstream speak the
//! same dialect, the exchange passes bytes through and only taps usage.

pub mod anthropic;
pub mod bedrock;
pub mod embeddings;
pub mod gemini;
pub mod ollama;
pub mod openai_chat;
mod text;

use std::borrow::Cow;

use crate::canonical::{self, Delta, InlineMedia, StreamEncoder, Usage};
use crate::error::ErrorType;
use crate::framing::{Frame, Framer};

/// A dialect's name; two sides speak the same dialect when their ids are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialectId(pub &'static str);

/// Which operation a request body was sent for; they differ in required fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Messages,
    CountTokens,
    /// The semantic cache's own embedding calls: no front door takes them, but each is
    /// recorded as a request of its own.
    Embeddings,
}

/// What routing needs from a request, read without decoding the rest of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// The gateway's `fallbacks` field: models to try, in order, when `model` fails. `Some`
    /// whenever the field is present, so that it is taken out before the body goes upstream.
    pub fallbacks: Option<Vec<Cow<'a, str>>>,
    /// The most the answer may take, when the request says (Messages requires it).
    pub max_tokens: Option<u64>,
}

/// A model as a model listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// What a client puts in `model` to reach it.
    pub id: String,
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// One page of a model listing.
#[derive(Debug, Clone, Copy)]
pub struct ModelPage<'a> {
    pub data: &'a [ModelInfo],
    pub has_more: bool,
}

/// The client-facing side of a dialect. Pure: no IO, no clock, no randomness.
pub trait FrontDoor: Send + Sync {
    fn dialect(&self) -> DialectId;
    /// Checks the required fields and reads `model` and `stream`.
    fn peek<'a>(
        &self,
        body: &'a [u8],
        endpoint: Endpoint,
    ) -> Result<RequestHead<'a>, TranslateError>;
    /// The client's body for an upstream of the same dialect (pass-through): `None` when it
    /// can go as it came, else with `model` replaced (when given), the gateway's own
    /// `fallbacks` field removed (when `drop_fallbacks`) and anything the dialect's upstreams
    /// would refuse taken out, every other byte kept.
    fn pass_through_body(
        &self,
        body: &[u8],
        model: Option<&str>,
        drop_fallbacks: bool,
    ) -> Result<Option<Vec<u8>>, TranslateError>;
    fn decode_request(
        &self,
        body: &[u8],
        endpoint: Endpoint,
    ) -> Result<canonical::Request, TranslateError>;
    fn encode_response(&self, response: &canonical::Response) -> Vec<u8>;
    /// The writer of this front door's stream bytes; `request_id` goes into error events.
    fn stream_encoder(&self, request_id: &str) -> Box<dyn StreamEncoder>;
    /// The body of an error answer.
    fn error_body(&self, kind: ErrorType, message: &str, request_id: &str) -> Vec<u8>;
    fn encode_token_count(&self, input_tokens: u64) -> Vec<u8>;
    fn encode_model(&self, model: &ModelInfo) -> Vec<u8>;
    fn encode_model_page(&self, page: ModelPage<'_>) -> Vec<u8>;
    /// The non-streaming answer document that a streamed answer amounts to, rebuilt from the
    /// stream exactly as it was sent to the client (for the logs store); a stream that ended
    /// in an error event gives the error document. Tolerates cut or garbled input, and is
    /// linear in its size. `None` when the bytes hold no answer at all.
    fn collect_stream(&self, stream: &[u8]) -> Option<Vec<u8>>;
}

/// A front door by its dialect name (as a request record keeps it).
pub fn front_door(name: &str) -> Option<&'static dyn FrontDoor> {
    match name {
        n if n == anthropic::DIALECT.0 => Some(&anthropic::Anthropic),
        _ => None,
    }
}

/// What a request's record keeps of an answer passed through untranslated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerSummary {
    pub usage: Usage,
    /// In the dialect's own words (as a pass-through stream's tap reports it).
    pub stop_reason: Option<String>,
}

/// The provider-facing side of a dialect. Pure: no IO, no clock, no randomness.
pub trait UpstreamDialect: Send + Sync {
    fn id(&self) -> DialectId;
    /// A framer for this dialect's streams.
    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer>;
    /// Usage and stop reason of a non-streamed answer passed through untranslated; `None`
    /// when the body is not one of this dialect's answers.
    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary>;
    /// A watcher for a stream passed through untranslated.
    fn usage_tap(&self) -> Box<dyn UsageTap>;
    /// Reads the upstream's model listing (ids as the upstream knows them).
    fn decode_model_list(&self, body: &[u8]) -> Option<Vec<ModelInfo>>;
    /// Translation to and from the canonical form; `None` for a dialect reached only by
    /// pass-through so far (Anthropic: its only front door is Anthropic's own).
    fn codec(&self) -> Option<&dyn UpstreamCodec>;
    /// A passed-through token count that the upstream answers in a shape of its own (Claude
    /// on Bedrock: `{"inputTokens": n}`): the count, for the front door to encode. `None`: the
    /// answer is the front door's own and goes back as it came.
    fn pass_through_count(&self, _body: &[u8]) -> Option<Result<u64, TranslateError>> {
        None
    }
    /// The shape of this upstream's embedding API; `None`: it has none Heimdall speaks.
    fn embeddings(&self) -> Option<embeddings::EmbeddingWire> {
        None
    }
}

/// Translation between the canonical form and one upstream dialect.
pub trait UpstreamCodec: Send + Sync {
    fn encode_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError>;
    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError>;
    fn stream_decoder(&self, ctx: &ResponseContext) -> Box<dyn StreamDecoder>;
    /// The body of the upstream's own token count for `request` (`Operation::CountTokens`),
    /// when the dialect has one; `None`: the gateway estimates locally.
    fn encode_count_request(
        &self,
        _request: &canonical::Request,
        _upstream_model: &str,
    ) -> Option<Result<Vec<u8>, TranslateError>> {
        None
    }
    /// The input tokens in the upstream's answer to [`UpstreamCodec::encode_count_request`].
    fn decode_count_response(&self, _body: &[u8]) -> Result<u64, TranslateError> {
        Err(TranslateError::Internal(
            "this dialect has no token count".into(),
        ))
    }
    /// Media given by URL that this upstream cannot fetch itself: the gateway fetches it and
    /// hands the encoder the bytes instead.
    fn inline_media(&self) -> InlineMedia {
        InlineMedia::NONE
    }
}

/// Turns an upstream's frames into deltas.
pub trait StreamDecoder: Send {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>);
    /// The upstream's stream ended. A decoder that never saw the upstream's own end marker
    /// reports an error: a cut stream must never look like a finished answer.
    fn end(&mut self, out: &mut Vec<Delta>);
}

/// Watches a stream passed through untranslated, for the request record and the stream pump.
pub trait UsageTap: Send {
    fn observe(&mut self, frame: &Frame) -> TapVerdict;
    fn usage(&self) -> Usage;
    fn stop_reason(&self) -> Option<&str>;
}

/// What one passed-through frame means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapVerdict {
    Continue,
    /// The upstream's last event of a complete answer: the stream ends here, whether or not
    /// the upstream closes its connection.
    Complete,
    /// The upstream reported an error; the stream ends here.
    Failed,
    /// The frame is not a valid event of the dialect (garbage bytes); the stream cannot be
    /// trusted past it.
    Invalid,
}

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
    /// Heimdall itself failed (an encoding that should not fail did).
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

impl TranslateError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn unsupported(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A content block of type `kind` at `path` that the target cannot express.
    pub fn unsupported_block(path: impl Into<String>, kind: &str) -> Self {
        Self::unsupported(
            path,
            format!("content block type `{kind}` is not supported by this model's provider"),
        )
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
            Self::Upstream(_) | Self::Internal(_) => ErrorType::ApiError,
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
