//! The OpenAI Chat Completions dialect, spoken upstream by OpenAI and the OpenAI-compatible
//! family.

mod quirks;
mod request;
mod response;
mod stream;
pub mod wire;

pub use quirks::{Quirks, ToolIdForm};

use serde::Deserialize;

use super::{
    AnswerSummary, DialectId, ModelInfo, ResponseContext, StreamDecoder, TapVerdict,
    TranslateError, UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::canonical::{self, InlineMedia, Usage};
use crate::framing::sse::SseFramer;
use crate::framing::{Frame, Framer};

pub const DIALECT: DialectId = DialectId("openai_chat");

/// The Chat Completions dialect as one server family speaks it.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiChat {
    pub quirks: Quirks,
}

impl OpenAiChat {
    /// OpenAI's own API.
    pub const OPENAI: OpenAiChat = OpenAiChat::new(Quirks::OPENAI);

    pub const fn new(quirks: Quirks) -> Self {
        Self { quirks }
    }
}

impl UpstreamDialect for OpenAiChat {
    fn embeddings(&self) -> Option<crate::dialect::embeddings::EmbeddingWire> {
        Some(crate::dialect::embeddings::EmbeddingWire::OpenAi)
    }

    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(SseFramer::new(max_event_bytes))
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        #[derive(Deserialize)]
        struct Body {
            usage: Option<wire::ChatUsage>,
            #[serde(default)]
            choices: Vec<Choice>,
        }
        #[derive(Deserialize)]
        struct Choice {
            #[serde(default)]
            finish_reason: Option<String>,
        }
        let b: Body = serde_json::from_slice(body).ok()?;
        Some(AnswerSummary {
            usage: b.usage.as_ref().map(response::usage_from_openai)?,
            stop_reason: b.choices.into_iter().find_map(|c| c.finish_reason),
        })
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<ChatUsageTap>::default()
    }

    fn decode_model_list(&self, body: &[u8]) -> Option<Vec<ModelInfo>> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
            created: Option<i64>,
        }
        let list: List = serde_json::from_slice(body).ok()?;
        Some(
            list.data
                .into_iter()
                .map(|m| ModelInfo {
                    display_name: m.id.clone(),
                    created_at: crate::time::rfc3339(m.created.unwrap_or(0)),
                    id: m.id,
                })
                .collect(),
        )
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        Some(self)
    }
}

impl UpstreamCodec for OpenAiChat {
    fn encode_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError> {
        request::request_body(request, upstream_model, &self.quirks)
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError> {
        response::response_from_openai(body, ctx)
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::<stream::ChatStreamDecoder>::default()
    }

    /// Image URLs go to the upstream as they are; a `file` part carries bytes only.
    fn inline_media(&self) -> InlineMedia {
        InlineMedia {
            images: false,
            documents: true,
        }
    }
}

/// Watches a Chat Completions stream passed through untranslated (an OpenAI-dialect front
/// door in front of an OpenAI-dialect upstream).
#[derive(Debug, Default)]
struct ChatUsageTap {
    usage: Usage,
    finish_reason: Option<String>,
}

impl UsageTap for ChatUsageTap {
    fn observe(&mut self, frame: &Frame) -> TapVerdict {
        let data = frame.data.trim_ascii();
        if data == b"[DONE]" {
            return TapVerdict::Complete;
        }
        let Ok(chunk) = serde_json::from_slice::<wire::ChatCompletion>(data) else {
            return TapVerdict::Continue;
        };
        if chunk.error.is_some() {
            return TapVerdict::Failed;
        }
        if let Some(u) = &chunk.usage {
            self.usage = response::usage_from_openai(u);
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        TapVerdict::Continue
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }
}
