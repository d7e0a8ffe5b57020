//! Amazon Bedrock, in two dialects:
//!
//! - [`Converse`]: the Converse and ConverseStream APIs, one request shape for every model
//!   family (content blocks keyed by kind: `text`, `image`, `toolUse`, `toolResult`,
//!   `reasoningContent`), with a family's own options (reasoning, `top_k`) in
//!   `additionalModelRequestFields`. Streams are AWS event stream messages, one per event.
//! - [`ClaudeInvoke`] (`invoke`): Claude's own Messages API through InvokeModel, reached by
//!   pass-through from the Anthropic front door.
//!
//! What Converse cannot say is refused or left out, never guessed: URL media (which the gateway
//! fetches and inlines beforehand unless configured not to) and server tools are
//! `Unsupported`; a block, system block or tool with `cache_control` is followed by a
//! `cachePoint` (its TTL is not carried); unsigned and redacted thinking is not sent back, and
//! redacted reasoning in answers is dropped (the canonical answer has no place for it).

mod invoke;
mod request;
mod response;

pub use invoke::{ANTHROPIC_VERSION, ClaudeInvoke};
pub use response::exception_error_type;

use super::{
    AnswerSummary, DialectId, ModelInfo, ResponseContext, StreamDecoder, TranslateError,
    UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::canonical::{self, InlineMedia};
use crate::framing::Framer;
use crate::framing::aws_eventstream::EventStreamFramer;

pub const DIALECT: DialectId = DialectId("bedrock_converse");

/// The Converse dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Converse;

impl UpstreamDialect for Converse {
    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(EventStreamFramer::new(max_event_bytes))
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        response::answer_summary(body)
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<response::ConverseTap>::default()
    }

    /// Model listings live on Bedrock's control-plane host, not the runtime one.
    fn decode_model_list(&self, _body: &[u8]) -> Option<Vec<ModelInfo>> {
        None
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        Some(self)
    }
}

impl UpstreamCodec for Converse {
    fn encode_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError> {
        request::encode(request, upstream_model)
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError> {
        response::decode(body, ctx)
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::<response::ConverseDecoder>::default()
    }

    /// Converse takes image and document bytes (or S3 locations), never web URLs.
    fn inline_media(&self) -> InlineMedia {
        InlineMedia::ALL
    }
}
