//! The Anthropic Messages dialect: Heimdall's main front door, and the upstream dialect of
//! Anthropic and of Claude on other clouds, reached by pass-through.

mod collect;
mod head;
mod tap;
mod wire;

use bytes::BytesMut;

pub use collect::collect_stream;
pub use head::{cloud_body, pass_through_body, replace_model, vertex_body};
pub use tap::AnthropicUsageTap;
pub use wire::error_body;

use super::{
    AnswerSummary, DialectId, Endpoint, FrontDoor, ModelInfo, ModelPage, RequestHead,
    TranslateError, UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::canonical::{self, Event, StreamEncoder};
use crate::error::ErrorType;
use crate::framing::Framer;
use crate::framing::sse::{SseFramer, write_event};

pub const DIALECT: DialectId = DialectId("anthropic");

/// The Anthropic Messages dialect, both sides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

impl FrontDoor for Anthropic {
    fn dialect(&self) -> DialectId {
        DIALECT
    }

    fn peek<'a>(
        &self,
        body: &'a [u8],
        endpoint: Endpoint,
    ) -> Result<RequestHead<'a>, TranslateError> {
        head::peek(body, endpoint)
    }

    fn pass_through_body(
        &self,
        body: &[u8],
        model: Option<&str>,
        drop_fallbacks: bool,
    ) -> Result<Option<Vec<u8>>, TranslateError> {
        pass_through_body(body, model, drop_fallbacks)
    }

    fn decode_request(
        &self,
        body: &[u8],
        endpoint: Endpoint,
    ) -> Result<canonical::Request, TranslateError> {
        canonical::Request::from_anthropic(body, endpoint)
    }

    fn encode_response(&self, response: &canonical::Response) -> Vec<u8> {
        wire::message_json(response)
    }

    fn stream_encoder(&self, request_id: &str) -> Box<dyn StreamEncoder> {
        Box::new(AnthropicEncoder {
            request_id: request_id.to_owned(),
        })
    }

    fn error_body(&self, kind: ErrorType, message: &str, request_id: &str) -> Vec<u8> {
        error_body(kind, message, Some(request_id))
    }

    fn encode_token_count(&self, input_tokens: u64) -> Vec<u8> {
        format!("{{\"input_tokens\":{input_tokens}}}").into_bytes()
    }

    fn encode_model(&self, model: &ModelInfo) -> Vec<u8> {
        wire::model_json(model)
    }

    fn encode_model_page(&self, page: ModelPage<'_>) -> Vec<u8> {
        wire::model_page_json(page)
    }

    fn collect_stream(&self, stream: &[u8]) -> Option<Vec<u8>> {
        collect_stream(stream)
    }
}

impl UpstreamDialect for Anthropic {
    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(SseFramer::new(max_event_bytes))
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        tap::message_summary(body)
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<AnthropicUsageTap>::default()
    }

    fn decode_model_list(&self, body: &[u8]) -> Option<Vec<ModelInfo>> {
        wire::decode_model_list(body)
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        None
    }
}

/// Writes canonical events as Anthropic SSE.
struct AnthropicEncoder {
    request_id: String,
}

impl StreamEncoder for AnthropicEncoder {
    fn event(&mut self, event: &Event<'_>, out: &mut BytesMut) {
        wire::write_event(event, out);
        // Anthropic sends a ping right after message_start; strict clients tolerate nothing
        // else, and some proxies need the early bytes.
        if matches!(event, Event::MessageStart { .. }) {
            self.keepalive(out);
        }
    }

    fn keepalive(&mut self, out: &mut BytesMut) {
        write_event(out, "ping", br#"{"type":"ping"}"#);
    }

    fn error(&mut self, kind: ErrorType, message: &str, out: &mut BytesMut) {
        write_event(
            out,
            "error",
            &error_body(kind, message, Some(&self.request_id)),
        );
    }
}
