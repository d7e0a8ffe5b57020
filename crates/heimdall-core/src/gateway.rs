//! The request pipeline behind `/anthropic`: validate, route, send (with retries), and shape
//! the answer as Anthropic would.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use heimdall_protocol::anthropic::head::{Endpoint, RequestHead, replace_model};
use heimdall_protocol::anthropic::{CountTokensRequest, MessagesRequest};
use heimdall_protocol::ids;
use heimdall_protocol::translate::ResponseContext;
use heimdall_protocol::translate::openai_chat::{self, StreamTranslator};
use heimdall_protocol::usage::{AnthropicUsageTap, Usage};
use heimdall_providers::{ClientOptions, Operation, ProviderError, UpstreamClient};
use http::{HeaderMap, HeaderValue};
use rand::Rng;

use crate::attempt::{self, Answer, Call};
use crate::config::{Config, ProviderConfig};
use crate::error::GatewayError;
use crate::record::{Outcome, RequestRecord};
use crate::route;
use crate::stream::{BodyStream, Dialect, sse_body};
use crate::tokens;

/// The API version sent upstream when the client names none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// What the server extracted from a client's HTTP request.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub body: Bytes,
    pub anthropic_version: Option<HeaderValue>,
    pub request_id: String,
}

/// A successful answer: a JSON document or an SSE stream.
pub enum Reply {
    Json(Bytes),
    Stream(BodyStream),
}

/// What an upstream call produced, before the request record takes charge of it.
enum Upstreamed<'a> {
    Json(Bytes, Usage),
    Stream(Answer<'a>, Dialect),
}

pub struct Gateway {
    config: ArcSwap<Config>,
    client: UpstreamClient,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        let client = UpstreamClient::new(&ClientOptions::default()).map_err(|e| {
            GatewayError::new(heimdall_protocol::error::ErrorType::ApiError, e.to_string())
        })?;
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            client,
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn max_request_body_bytes(&self) -> usize {
        self.config.load().max_request_body_bytes
    }

    /// A fresh `req_…` id for a client request.
    pub fn new_request_id() -> String {
        ids::request_id(rand::rng().random())
    }

    /// `POST /v1/messages`.
    pub async fn messages(&self, req: ClientRequest) -> Result<Reply, GatewayError> {
        let head = RequestHead::parse(&req.body, Endpoint::Messages)
            .map_err(|e| GatewayError::invalid_request(e.message))?;
        let (kind, upstream_model) = route::split_model(&head.model)?;
        let config = self.config.load();
        let provider = route::configured(&config, kind)?;
        let mut record = RequestRecord::new(&req.request_id, kind.name(), &head.model, head.stream);
        let result = if kind.speaks_anthropic() {
            self.messages_anthropic(provider, &head, upstream_model, &req)
                .await
        } else {
            self.messages_translated(provider, &head, upstream_model, &req)
                .await
        };
        match result {
            Ok(Upstreamed::Json(bytes, usage)) => {
                record.usage = usage;
                record.outcome = Outcome::Success;
                Ok(Reply::Json(bytes))
            }
            Ok(Upstreamed::Stream(answer, dialect)) => Ok(Reply::Stream(sse_body(
                answer.response,
                dialect,
                provider.stream_idle_timeout,
                record,
                answer.key.value.expose(),
            ))),
            Err(e) => {
                record.outcome = Outcome::Failed(e.status);
                Err(e)
            }
        }
    }

    async fn messages_anthropic<'a>(
        &self,
        provider: &'a ProviderConfig,
        head: &RequestHead<'_>,
        upstream_model: &'a str,
        req: &ClientRequest,
    ) -> Result<Upstreamed<'a>, GatewayError> {
        let body = anthropic_body(&req.body, &head.model, upstream_model)?;
        let answer = attempt::send(
            &self.client,
            Call::new(
                provider,
                Some(upstream_model),
                Operation::Messages,
                anthropic_headers(req),
                Some(body),
            ),
        )
        .await?;
        if head.stream {
            let tap = Dialect::PassThrough(AnthropicUsageTap::default());
            return Ok(Upstreamed::Stream(answer, tap));
        }
        let bytes = read_body(answer, provider).await?;
        let usage = Usage::from_anthropic_message(&bytes).unwrap_or_default();
        Ok(Upstreamed::Json(bytes, usage))
    }

    async fn messages_translated<'a>(
        &self,
        provider: &'a ProviderConfig,
        head: &RequestHead<'_>,
        upstream_model: &'a str,
        req: &ClientRequest,
    ) -> Result<Upstreamed<'a>, GatewayError> {
        let parsed = MessagesRequest::from_slice(&req.body).map_err(translate_error)?;
        let body = openai_chat::request_body(&parsed, upstream_model).map_err(translate_error)?;
        let answer = attempt::send(
            &self.client,
            Call::new(
                provider,
                Some(upstream_model),
                Operation::Messages,
                HeaderMap::new(),
                Some(Bytes::from(body)),
            ),
        )
        .await?;
        let ctx = ResponseContext {
            message_id: ids::message_id(rand::rng().random()),
            model: head.model.to_string(),
        };
        if head.stream {
            let translator = Dialect::Translated(Box::new(StreamTranslator::new(ctx)));
            return Ok(Upstreamed::Stream(answer, translator));
        }
        let bytes = read_body(answer, provider).await?;
        let (json, usage) = openai_chat::response_body(&bytes, &ctx).map_err(|e| {
            let mut err = translate_error(e);
            err.message = format!(
                "{} answered in a way Heimdall could not read: {}",
                provider.kind.name(),
                err.message
            );
            err
        })?;
        Ok(Upstreamed::Json(Bytes::from(json), usage))
    }

    /// `POST /v1/messages/count_tokens`: Anthropic counts itself; for other providers a local
    /// tokenizer gives an estimate.
    pub async fn count_tokens(&self, req: ClientRequest) -> Result<Bytes, GatewayError> {
        let head = RequestHead::parse(&req.body, Endpoint::CountTokens)
            .map_err(|e| GatewayError::invalid_request(e.message))?;
        let (kind, upstream_model) = route::split_model(&head.model)?;
        let config = self.config.load();
        let provider = route::configured(&config, kind)?;
        if kind.speaks_anthropic() {
            let body = anthropic_body(&req.body, &head.model, upstream_model)?;
            let answer = attempt::send(
                &self.client,
                Call::new(
                    provider,
                    Some(upstream_model),
                    Operation::CountTokens,
                    anthropic_headers(&req),
                    Some(body),
                ),
            )
            .await?;
            return read_body(answer, provider).await;
        }
        let parsed = CountTokensRequest::from_slice(&req.body).map_err(translate_error)?;
        let count = tokens::estimate(upstream_model, &parsed).await?;
        Ok(Bytes::from(format!("{{\"input_tokens\":{count}}}")))
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.client
    }
}

fn translate_error(e: heimdall_protocol::translate::TranslateError) -> GatewayError {
    GatewayError::new(e.error_type(), e.message())
}

/// The client's body for an Anthropic upstream: untouched unless the model carried the
/// `anthropic/` prefix, which the upstream would not know.
fn anthropic_body(body: &Bytes, model: &str, upstream_model: &str) -> Result<Bytes, GatewayError> {
    if model == upstream_model {
        return Ok(body.clone());
    }
    replace_model(body, upstream_model)
        .map(Bytes::from)
        .map_err(|e| GatewayError::invalid_request(e.message))
}

/// Headers forwarded to Anthropic. The client's credentials never are: the configured key is.
fn anthropic_headers(req: &ClientRequest) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    h.insert(
        "anthropic-version",
        req.anthropic_version
            .clone()
            .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION)),
    );
    h
}

/// Reads a non-streaming 2xx body within what is left of the request timeout.
async fn read_body(answer: Answer<'_>, provider: &ProviderConfig) -> Result<Bytes, GatewayError> {
    let name = provider.kind.name();
    match tokio::time::timeout(provider.request_timeout, answer.response.bytes()).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(GatewayError::from_provider(&e, answer.key.value.expose())),
        Err(_) => Err(GatewayError::from_provider(
            &ProviderError::Timeout {
                provider: name,
                seconds: provider.request_timeout.as_secs(),
            },
            "",
        )),
    }
}
