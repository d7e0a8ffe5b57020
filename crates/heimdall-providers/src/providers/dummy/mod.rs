//! A test-only upstream dialect, built only with the `test-dialect` feature. It exists to
//! prove the provider seam: its own framing (netstrings, not SSE), its own request and answer
//! shapes, and its own authentication (a key header plus a signature over the body), added by
//! this folder and one line in the registry.
//!
//! Wire format, `POST {base}/dummy/generate`:
//! - request `{"model","prompt","max","stream"}`, headers `x-dummy-key: KEY` and
//!   `x-dummy-sig: <FNV-1a 64 of KEY and the body, hex>`;
//! - answer `{"text","calls":[{"name","args"}],"tokens":[in,out],"end":"stop"|"length"}`;
//! - stream: netstrings `LEN:JSON,` each carrying `{"text"}`, `{"call":{"name","args"}}` or
//!   `{"end","tokens"}` last.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use heimdall_protocol::canonical::{
    self, ContentBlock, ContentBlockParam, Delta, Role, StopReason, TextOrBlocks, Usage,
};
use heimdall_protocol::dialect::{
    AnswerSummary, DialectId, ModelInfo, ResponseContext, StreamDecoder, TapVerdict, TranslateError,
    UpstreamCodec, UpstreamDialect, UsageTap,
};
use heimdall_protocol::framing::{Frame, Framer, FramingError};
use heimdall_protocol::ids;
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::ProviderError;
use crate::provider::{
    Credential,
    Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings, json_request,
    set_secret_header, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "dummy",
    env_var: "DUMMY_API_KEY",
    default_base_url: "http://127.0.0.1:9",
    key_required: true,
    config_fields: &[],
    build: |settings| Ok(Arc::new(DummyProvider { settings })),
}];

struct DummyProvider {
    settings: ProviderSettings,
}

impl Provider for DummyProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &DummyDialect
    }

    fn prepare(
        &self,
        op: Operation,
        _model: &str,
        _stream: bool,
        body: Option<Bytes>,
        _client_headers: &HeaderMap,
        _key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        if op != Operation::Messages {
            return Err(ProviderError::Unsupported {
                provider: self.name().to_owned(),
            });
        }
        let url = url(&self.settings.base_url, "/dummy/generate");
        Ok(json_request(url, HeaderMap::new(), body))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let body = request.body.clone().unwrap_or_default();
            let name = self.name().to_owned();
            set_secret_header(request, HeaderName::from_static("x-dummy-key"), key.value, &name)?;
            let signature = format!("{:016x}", signature(key.value, &body));
            set_secret_header(request, HeaderName::from_static("x-dummy-sig"), &signature, &name)
        })
    }
}

/// FNV-1a over the key and the body: a stand-in for request signing (not security).
pub fn signature(key: &str, body: &[u8]) -> u64 {
    key.as_bytes()
        .iter()
        .chain(body)
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

pub const DIALECT: DialectId = DialectId("dummy");

struct DummyDialect;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    prompt: String,
    max: Option<u64>,
    stream: bool,
}

#[derive(Deserialize)]
struct WireCall {
    name: String,
    args: Value,
}

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    calls: Vec<WireCall>,
    tokens: [u64; 2],
    end: String,
}

#[derive(Deserialize)]
struct WireEvent {
    text: Option<String>,
    call: Option<WireCall>,
    end: Option<String>,
    tokens: Option<[u64; 2]>,
}

fn usage(tokens: [u64; 2]) -> Usage {
    Usage {
        input_tokens: tokens[0],
        output_tokens: tokens[1],
        ..Usage::default()
    }
}

fn stop(end: &str) -> StopReason {
    if end == "length" {
        StopReason::MaxTokens
    } else {
        StopReason::EndTurn
    }
}

impl UpstreamDialect for DummyDialect {
    fn id(&self) -> DialectId {
        DIALECT
    }

    fn framer(&self, max_event_bytes: usize) -> Box<dyn Framer> {
        Box::new(NetstringFramer {
            buf: BytesMut::new(),
            max: max_event_bytes,
        })
    }

    fn answer_summary(&self, body: &[u8]) -> Option<AnswerSummary> {
        serde_json::from_slice::<WireAnswer>(body)
            .ok()
            .map(|a| AnswerSummary {
                usage: usage(a.tokens),
                stop_reason: Some(a.end),
            })
    }

    fn usage_tap(&self) -> Box<dyn UsageTap> {
        Box::<DummyTap>::default()
    }

    fn decode_model_list(&self, _body: &[u8]) -> Option<Vec<ModelInfo>> {
        None
    }

    fn codec(&self) -> Option<&dyn UpstreamCodec> {
        Some(self)
    }
}

impl UpstreamCodec for DummyDialect {
    fn encode_request(
        &self,
        request: &canonical::Request,
        upstream_model: &str,
    ) -> Result<Vec<u8>, TranslateError> {
        let mut prompt = String::new();
        for (i, m) in request.messages.iter().enumerate() {
            if m.role != Role::User {
                continue;
            }
            match &m.content {
                TextOrBlocks::Text(t) => prompt.push_str(t),
                TextOrBlocks::Blocks(blocks) => {
                    for (j, b) in blocks.iter().enumerate() {
                        match b {
                            ContentBlockParam::Text { text, .. } => prompt.push_str(text),
                            _ => {
                                return Err(TranslateError::unsupported(
                                    format!("messages.{i}.content.{j}"),
                                    "the dummy dialect takes text only",
                                ));
                            }
                        }
                    }
                }
            }
        }
        serde_json::to_vec(&WireRequest {
            model: upstream_model,
            prompt,
            max: request.max_tokens,
            stream: request.is_stream(),
        })
        .map_err(|e| TranslateError::Internal(e.to_string()))
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: &ResponseContext,
    ) -> Result<canonical::Response, TranslateError> {
        let a: WireAnswer =
            serde_json::from_slice(body).map_err(|e| TranslateError::Upstream(e.to_string()))?;
        let mut content = Vec::new();
        if !a.text.is_empty() {
            content.push(ContentBlock::Text { text: a.text });
        }
        let has_calls = !a.calls.is_empty();
        for (i, call) in a.calls.into_iter().enumerate() {
            content.push(ContentBlock::ToolUse {
                id: ids::tool_id_from_upstream(None, &ctx.message_id, i),
                name: call.name,
                input: call.args,
            });
        }
        Ok(canonical::Response {
            id: ctx.message_id.clone(),
            model: ctx.model.clone(),
            content,
            stop_reason: Some(StopReason::settle(Some(stop(&a.end)), has_calls, false)),
            stop_sequence: None,
            usage: usage(a.tokens),
        })
    }

    fn stream_decoder(&self, _ctx: &ResponseContext) -> Box<dyn StreamDecoder> {
        Box::<DummyDecoder>::default()
    }
}

#[derive(Default)]
struct DummyDecoder {
    calls: usize,
    ended: bool,
}

impl StreamDecoder for DummyDecoder {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<Delta>) {
        let event: WireEvent = match serde_json::from_slice(&frame.data) {
            Ok(e) => e,
            Err(e) => {
                self.ended = true;
                out.push(Delta::Error {
                    kind: heimdall_protocol::error::ErrorType::ApiError,
                    message: format!("upstream sent an invalid stream event: {e}"),
                });
                return;
            }
        };
        if let Some(text) = event.text {
            out.push(Delta::Text(text));
        }
        if let Some(call) = event.call {
            out.push(Delta::ToolCall {
                call: self.calls,
                id: None,
                name: Some(call.name),
                arguments: call.args.to_string(),
            });
            self.calls += 1;
        }
        if let Some(end) = event.end {
            self.ended = true;
            out.push(Delta::Usage(usage(event.tokens.unwrap_or_default())));
            out.push(Delta::Stop {
                reason: Some(stop(&end)),
                sequence: None,
            });
            out.push(Delta::Done);
        }
    }

    fn end(&mut self, out: &mut Vec<Delta>) {
        if !self.ended {
            out.push(Delta::Error {
                kind: heimdall_protocol::error::ErrorType::ApiError,
                message: "upstream stream ended before its end event".to_owned(),
            });
        }
    }
}

#[derive(Default)]
struct DummyTap {
    usage: Usage,
    end: Option<String>,
}

impl UsageTap for DummyTap {
    fn observe(&mut self, frame: &Frame) -> TapVerdict {
        match serde_json::from_slice::<WireEvent>(&frame.data) {
            Ok(WireEvent {
                end: Some(end),
                tokens,
                ..
            }) => {
                self.usage = usage(tokens.unwrap_or_default());
                self.end = Some(end);
                TapVerdict::Complete
            }
            _ => TapVerdict::Continue,
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.end.as_deref()
    }
}

/// Netstrings: `LEN:PAYLOAD,` with LEN in decimal.
struct NetstringFramer {
    buf: BytesMut,
    max: usize,
}

impl Framer for NetstringFramer {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let Some(colon) = self.buf.iter().position(|b| *b == b':') else {
            if self.buf.len() > 20 {
                return Err(FramingError::Malformed("netstring length too long".into()));
            }
            return Ok(None);
        };
        let len: usize = std::str::from_utf8(&self.buf[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| FramingError::Malformed("netstring length is not a number".into()))?;
        if len > self.max {
            return Err(FramingError::TooLarge { limit: self.max });
        }
        let end = colon + 1 + len;
        if self.buf.len() <= end {
            return Ok(None);
        }
        if self.buf[end] != b',' {
            return Err(FramingError::Malformed("netstring without its comma".into()));
        }
        let raw = self.buf.split_to(end + 1).freeze();
        let data = raw.slice(colon + 1..end);
        Ok(Some(Frame {
            raw,
            name: None,
            data,
        }))
    }

    fn finish(&mut self) -> Option<Frame> {
        self.buf.clear();
        None
    }
}

/// Encodes `payloads` as the netstrings of a dummy stream (for tests' upstreams).
pub fn netstrings(payloads: &[Value]) -> String {
    let mut out = String::new();
    for p in payloads {
        let text = p.to_string();
        let _ = write!(out, "{}:{text},", text.len());
    }
    out
}
