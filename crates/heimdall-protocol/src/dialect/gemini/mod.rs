//! The Gemini `generateContent` dialect, spoken upstream by the Gemini API and by Gemini models
//! on Vertex AI.

mod request;
mod response;
pub mod schema;
mod signature;
mod stream;
pub mod wire;

use serde::Deserialize;

use super::{
    AnswerSummary, DialectId, ModelInfo, ResponseContext, StreamDecoder, TapVerdict,
    TranslateError, UpstreamCodec, UpstreamDialect, UsageTap,
};
use crate::canonical::{self, InlineMedia, Usage};
use crate::framing::sse::SseFramer;
use crate::framing::{Frame, Framer};

pub const DIALECT: DialectId = DialectId("gemini");

/// The Gemini dialect. The two hosts differ in one thing the request shows: the Gemini API
/// pairs function calls and responses by `id`, Vertex rejects the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemini {
    call_ids: bool,
}

impl Gemini {
    /// As the Gemini API (`generativelanguage.googleapis.com`) speaks it.
    pub const API: Gemini = Gemini { call_ids: true };
    /// As Vertex AI speaks it.
    pub const VERTEX: Gemini = Gemini { call_ids: false };
}

impl UpstreamDialect for Gemini {
    fn embeddings(&self) -> Option<crate::dialect::embeddings::EmbeddingWire> {
        Some(crate::dialect::embeddings::EmbeddingWire::Gemini)
    }

    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(SseFramer::new(max_event_bytes))
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        let b: wire::GenerateContentResponse = serde_json::from_slice(body).ok()?;
        Some(AnswerSummary {
            usage: b.usage_metadata.as_ref().map(response::usage_from_gemini)?,
            stop_reason: b
                .candidates
                .into_iter()
                .flatten()
                .find_map(|c| c.finish_reason),
        })
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<GeminiUsageTap>::default()
    }

    /// `models.list`: `{"models":[{"name":"models/gemini-2.5-flash","displayName",…}]}`; models
    /// that cannot generate content (embeddings) are left out.
    fn decode_model_list(&self, body: &[u8]) -> Option<Vec<ModelInfo>> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            models: Vec<Item>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Item {
            name: String,
            #[serde(default)]
            display_name: Option<String>,
            #[serde(default)]
            supported_generation_methods: Option<Vec<String>>,
        }
        let list: List = serde_json::from_slice(body).ok()?;
        Some(
            list.models
                .into_iter()
                .filter(|m| {
                    m.supported_generation_methods
                        .as_ref()
                        .is_none_or(|methods| methods.iter().any(|x| x == "generateContent"))
                })
                .map(|m| {
                    let id = m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned();
                    ModelInfo {
                        display_name: m.display_name.unwrap_or_else(|| id.clone()),
                        // Gemini's listing has no dates.
                        created_at: crate::time::rfc3339(0),
                        id,
                    }
                })
                .collect(),
        )
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        Some(self)
    }
}

impl UpstreamCodec for Gemini {
    /// The model goes in the URL, not the body.
    fn encode_request(
        &self,
        request: &canonical::Request,
        _upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError> {
        request::request_body(request, self.call_ids)
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError> {
        response::response_from_gemini(body, ctx)
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::<stream::GeminiStreamDecoder>::default()
    }

    /// `countTokens` counts what `generateContent` would get. Vertex takes that request's
    /// fields as they are; the Gemini API takes them as `generateContentRequest`, which names
    /// its model.
    fn encode_count_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Option<Result<Vec<u8>, TranslateError>> {
        let body = match request::request_body(request, self.call_ids) {
            Ok(body) => body,
            Err(e) => return Some(Err(e)),
        };
        if *self == Self::VERTEX {
            return Some(Ok(body));
        }
        let wrapped = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .map(|mut generate| {
                generate.insert("model".into(), format!("models/{upstream_model}").into());
                serde_json::json!({ "generateContentRequest": generate })
            })
            .and_then(|v| serde_json::to_vec(&v));
        Some(wrapped.map_err(|e| TranslateError::Internal(e.to_string())))
    }

    fn decode_count_response(&self, body: &[u8]) -> Result<u64, TranslateError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Count {
            total_tokens: u64,
        }
        serde_json::from_slice::<Count>(body)
            .map(|c| c.total_tokens)
            .map_err(|e| TranslateError::Upstream(format!("countTokens answer: {e}")))
    }

    /// `fileData` takes only Google storage and Files API URIs, not arbitrary URLs.
    fn inline_media(&self) -> InlineMedia {
        InlineMedia::ALL
    }
}

/// Watches a Gemini stream passed through untranslated (for a Gemini front door, which
/// Heimdall does not have yet; the trait asks every dialect for one).
#[derive(Debug, Default)]
struct GeminiUsageTap {
    usage: Usage,
    finish_reason: Option<String>,
}

impl UsageTap for GeminiUsageTap {
    fn observe(&mut self, frame: &Frame) -> TapVerdict {
        let Ok(mut chunk) =
            serde_json::from_slice::<wire::GenerateContentResponse>(frame.data.trim_ascii())
        else {
            return TapVerdict::Invalid;
        };
        if chunk.error.is_some() {
            return TapVerdict::Failed;
        }
        if let Some(u) = &chunk.usage_metadata {
            self.usage = response::usage_from_gemini(u);
        }
        match response::first_candidate(&mut chunk).and_then(|c| c.finish_reason) {
            Some(reason) => {
                self.finish_reason = Some(reason);
                TapVerdict::Complete
            }
            None => TapVerdict::Continue,
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }
}
