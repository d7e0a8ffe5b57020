//! The dialect-agnostic request path. A front door's request is routed to a provider; when
//! both speak the same dialect the client's bytes pass through (only `model` rewritten when
//! it carried a prefix) and usage is tapped, otherwise the request goes through the canonical
//! form and the answer comes back the same way. Every path is admitted by the policy before
//! the upstream call and leaves one record, refusals included.

use std::sync::Arc;

use bytes::Bytes;
use heimdall_protocol::canonical::Assembler;
use heimdall_protocol::dialect::{
    Endpoint, FrontDoor, ResponseContext, UpstreamCodec, UpstreamDialect,
};
use heimdall_protocol::ids;
use heimdall_providers::{Operation, UpstreamClient};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::attempt::{self, Answer, Call, read_body};
use crate::config::{Config, ProviderConfig};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::guard::RecordGuard;
use crate::media::MediaFetcher;
use crate::models::ModelsCache;
use crate::policy::{AllowAll, Plan, Policy};
use crate::record::{LogSink, Outcome, RecordSink};
use crate::route;
use crate::stream::{self, BodyStream, Mode, Pump};
use crate::tokens;

/// A successful answer: a JSON document or a stream.
pub enum Reply {
    Json(Bytes),
    Stream(BodyStream),
}

pub struct Gateway {
    config: Config,
    client: UpstreamClient,
    media: MediaFetcher,
    policy: Arc<dyn Policy>,
    sink: Arc<dyn RecordSink>,
    pub(crate) models: ModelsCache,
    /// Cancelled when shutdown ran past its grace period: every request still in flight ends
    /// at once in its front door's shape instead of being cut.
    abort: CancellationToken,
}

/// How an exchange's answer comes back before the record takes charge of it.
enum Exchanged {
    Json(Bytes),
    Stream(Box<StreamParts>),
}

struct StreamParts {
    response: heimdall_providers::UpstreamResponse,
    framer: Box<dyn heimdall_protocol::framing::Framer>,
    mode: Mode,
    idle: std::time::Duration,
    secret: String,
}

/// Where a routed request goes and how.
struct Target<'a> {
    provider: &'a ProviderConfig,
    upstream_model: &'a str,
    dialect: &'static dyn UpstreamDialect,
    /// `None`: same dialect on both sides, bytes pass through.
    codec: Option<&'static dyn UpstreamCodec>,
}

impl Gateway {
    /// A gateway that admits everything and logs its records.
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        Self::with_hooks(config, Arc::new(AllowAll), Arc::new(LogSink))
    }

    pub fn with_hooks(
        config: Config,
        policy: Arc<dyn Policy>,
        sink: Arc<dyn RecordSink>,
    ) -> Result<Self, GatewayError> {
        let client = UpstreamClient::new(&config.upstream_client)
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        let media = MediaFetcher::new(&config.media_fetch)
            .map_err(|e| GatewayError::internal(format!("media fetch client: {e}")))?;
        Ok(Self {
            models: ModelsCache::default(),
            config,
            client,
            media,
            policy,
            sink,
            abort: CancellationToken::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.client
    }

    pub fn max_request_body_bytes(&self) -> usize {
        self.config.max_request_body_bytes
    }

    /// Ends every request still in flight: waiting ones answer 503 `overloaded_error`, open
    /// streams end with an `error` event. For a shutdown whose grace period ran out.
    pub fn abort_in_flight(&self) {
        self.abort.cancel();
    }

    /// Runs `work` unless the gateway aborts in-flight requests first.
    async fn abortable<T>(
        &self,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        tokio::select! {
            result = work => result,
            () = self.abort.cancelled() => Err(GatewayError::shutting_down()),
        }
    }

    /// A fresh `req_…` id for a client request.
    pub fn new_request_id() -> String {
        ids::request_id(rand::rng().random())
    }

    fn guard(&self, ctx: &Arc<RequestContext>, endpoint: Endpoint) -> RecordGuard {
        RecordGuard::new(
            Arc::clone(ctx),
            endpoint,
            Arc::clone(&self.policy),
            Arc::clone(&self.sink),
        )
    }

    /// Generate one assistant turn, streamed or not.
    pub async fn messages(
        &self,
        ctx: Arc<RequestContext>,
        body: Bytes,
    ) -> Result<Reply, GatewayError> {
        let mut guard = self.guard(&ctx, Endpoint::Messages);
        match self.abortable(self.exchange(&ctx, &body, &mut guard)).await {
            Ok(Exchanged::Json(bytes)) => {
                guard.record.outcome = Outcome::Success;
                Ok(Reply::Json(bytes))
            }
            Ok(Exchanged::Stream(parts)) => {
                let StreamParts {
                    response,
                    framer,
                    mode,
                    idle,
                    secret,
                } = *parts;
                Ok(Reply::Stream(stream::body(Pump {
                    response,
                    framer,
                    mode,
                    idle,
                    guard,
                    secret,
                    abort: self.abort.clone(),
                })))
            }
            Err(e) => {
                guard.fail(&e);
                Err(e)
            }
        }
    }

    /// Route, admit, and decide between pass-through and translation.
    async fn target<'a>(
        &'a self,
        ctx: &RequestContext,
        guard: &mut RecordGuard,
        endpoint: Endpoint,
        model: &'a str,
        stream: bool,
    ) -> Result<Target<'a>, GatewayError> {
        let route = route::resolve(&self.config, model)?;
        let provider = route.provider;
        guard.record.provider = Some(provider.name.clone());
        let allowed = match endpoint {
            Endpoint::Messages if stream => provider.allowed.stream,
            Endpoint::Messages => provider.allowed.messages,
            Endpoint::CountTokens => provider.allowed.count_tokens,
        };
        if !allowed {
            return Err(GatewayError::invalid_request(format!(
                "provider `{}` is not allowed to serve this request type (custom_provider_config.allowed_requests)",
                provider.name
            )));
        }
        let dialect = provider.provider.dialect(route.upstream_model);
        let pass_through = dialect.id() == ctx.front_door.dialect();
        guard.record.pass_through = pass_through;
        let codec = if pass_through {
            None
        } else {
            Some(dialect.codec().ok_or_else(|| {
                GatewayError::invalid_request(format!(
                    "model `{model}`: provider `{}` speaks the {} dialect, which this endpoint cannot translate to yet",
                    provider.name,
                    dialect.id().0
                ))
            })?)
        };
        let plan = Plan {
            endpoint,
            provider: &provider.name,
            model,
            upstream_model: route.upstream_model,
            pass_through,
            stream,
        };
        guard.admission = self.policy.admit(ctx, plan).await?;
        Ok(Target {
            provider,
            upstream_model: route.upstream_model,
            dialect,
            codec,
        })
    }

    async fn exchange(
        &self,
        ctx: &RequestContext,
        body: &Bytes,
        guard: &mut RecordGuard,
    ) -> Result<Exchanged, GatewayError> {
        if let Some(refusal) = &ctx.refusal {
            return Err(refusal.clone());
        }
        let front = ctx.front_door;
        let head = front.peek(body, Endpoint::Messages)?;
        guard.record.model = Some(head.model.to_string());
        guard.record.stream = head.stream;
        let t = self
            .target(ctx, guard, Endpoint::Messages, &head.model, head.stream)
            .await?;
        let upstream_body = match t.codec {
            None => passthrough_body(front, body, &head.model, t.upstream_model)?,
            Some(codec) => {
                let mut request = front.decode_request(body, Endpoint::Messages)?;
                let inline = codec.inline_media();
                if inline.any() {
                    self.media.inline(&mut request, inline).await?;
                }
                Bytes::from(codec.encode_request(&request, t.upstream_model)?)
            }
        };
        let answer = attempt::send(
            &self.client,
            Call {
                provider: t.provider,
                model: Some(t.upstream_model),
                operation: Operation::Messages,
                stream: head.stream,
                body: Some(upstream_body),
                forward_headers: &ctx.forward_headers,
                pinned_key: ctx.pinned_key.as_deref(),
                pass_through: t.codec.is_none(),
            },
        )
        .await?;
        guard.record.key_name = Some(answer.key.name.clone());
        check_answer_shape(&answer, head.stream, t.dialect)?;
        // Only a translated answer needs a message id and the client's model name.
        let rctx = || ResponseContext {
            message_id: ids::message_id(rand::rng().random()),
            model: head.model.to_string(),
        };
        if head.stream {
            let mode = match t.codec {
                None => Mode::PassThrough {
                    tap: t.dialect.usage_tap(),
                    encoder: front.stream_encoder(&ctx.request_id),
                },
                Some(codec) => {
                    let rctx = rctx();
                    Mode::Translate {
                        decoder: codec.stream_decoder(&rctx),
                        assembler: Box::new(Assembler::new(
                            rctx,
                            front.stream_encoder(&ctx.request_id),
                        )),
                    }
                }
            };
            return Ok(Exchanged::Stream(Box::new(StreamParts {
                secret: answer.key.value.expose().to_owned(),
                response: answer.response,
                framer: t.dialect.framer(self.config.max_stream_event_bytes),
                mode,
                idle: t.provider.stream_idle_timeout,
            })));
        }
        let provider_name = &t.provider.name;
        let bytes = read_body(answer, t.provider).await?;
        match t.codec {
            None => {
                // Reading usage parses the answer anyway; an answer without usage is not a
                // message (HTML, truncated JSON, an SSE body, an empty 204).
                guard.record.usage = t.dialect.response_usage(&bytes).ok_or_else(|| {
                    GatewayError::bad_gateway(format!(
                        "{provider_name} answered with a body that is not a valid message"
                    ))
                })?;
                Ok(Exchanged::Json(bytes))
            }
            Some(codec) => {
                let response = codec.decode_response(&bytes, &rctx()).map_err(|e| {
                    let mut err = GatewayError::from(e);
                    err.message = format!(
                        "{provider_name} answered in a way Heimdall could not read: {}",
                        err.message
                    );
                    if err.status == 500 {
                        err.status = 502;
                    }
                    err
                })?;
                guard.record.usage = response.usage;
                Ok(Exchanged::Json(Bytes::from(
                    front.encode_response(&response),
                )))
            }
        }
    }

    /// Count a request's input tokens: the upstream counts when it speaks the front door's
    /// dialect and can count; otherwise a local tokenizer gives an estimate.
    pub async fn count_tokens(
        &self,
        ctx: Arc<RequestContext>,
        body: Bytes,
    ) -> Result<Bytes, GatewayError> {
        let mut guard = self.guard(&ctx, Endpoint::CountTokens);
        let result = self
            .abortable(self.count_tokens_inner(&ctx, &body, &mut guard))
            .await;
        match &result {
            Ok(_) => guard.record.outcome = Outcome::Success,
            Err(e) => guard.fail(e),
        }
        result
    }

    async fn count_tokens_inner(
        &self,
        ctx: &RequestContext,
        body: &Bytes,
        guard: &mut RecordGuard,
    ) -> Result<Bytes, GatewayError> {
        if let Some(refusal) = &ctx.refusal {
            return Err(refusal.clone());
        }
        let front = ctx.front_door;
        let head = front.peek(body, Endpoint::CountTokens)?;
        guard.record.model = Some(head.model.to_string());
        let t = self
            .target(ctx, guard, Endpoint::CountTokens, &head.model, false)
            .await?;
        let counts = t.provider.provider.counts_tokens(t.upstream_model);
        // A translated dialect with a count of its own asks the upstream in its terms;
        // otherwise a translated request (or an upstream that cannot count) is estimated here.
        let translated = if t.codec.is_some() || !counts {
            let request = front.decode_request(body, Endpoint::CountTokens)?;
            let upstream = t.codec.filter(|_| counts).and_then(|codec| {
                Some((
                    codec,
                    codec.encode_count_request(&request, t.upstream_model)?,
                ))
            });
            let Some((codec, count_body)) = upstream else {
                let count = tokens::estimate(
                    t.upstream_model,
                    request.counting_text(),
                    request.messages.len(),
                )
                .await?;
                return Ok(Bytes::from(front.encode_token_count(count)));
            };
            Some((codec, Bytes::from(count_body?)))
        } else {
            None
        };
        let upstream_body = match &translated {
            Some((_, count_body)) => count_body.clone(),
            None => passthrough_body(front, body, &head.model, t.upstream_model)?,
        };
        let answer = attempt::send(
            &self.client,
            Call {
                provider: t.provider,
                model: Some(t.upstream_model),
                operation: Operation::CountTokens,
                stream: false,
                body: Some(upstream_body),
                forward_headers: &ctx.forward_headers,
                pinned_key: ctx.pinned_key.as_deref(),
                pass_through: translated.is_none(),
            },
        )
        .await?;
        guard.record.key_name = Some(answer.key.name.clone());
        let bytes = read_body(answer, t.provider).await?;
        let count = match translated {
            Some((codec, _)) => codec.decode_count_response(&bytes),
            None => match t.dialect.pass_through_count(&bytes) {
                Some(count) => count,
                None => return Ok(bytes),
            },
        };
        let count = count.map_err(|e| {
            GatewayError::bad_gateway(format!(
                "{} answered a token count Heimdall could not read: {}",
                t.provider.name,
                e.message()
            ))
        })?;
        Ok(Bytes::from(front.encode_token_count(count)))
    }
}

/// Refuses a 2xx answer whose shape cannot be what was asked for, before any byte reaches
/// the client: no content for a stream, an HTML page or a JSON document answering a stream
/// request, or an event stream answering a plain one.
fn check_answer_shape(
    answer: &Answer<'_>,
    stream: bool,
    dialect: &dyn UpstreamDialect,
) -> Result<(), GatewayError> {
    let provider = answer.response.provider();
    if answer.response.status() == 204 {
        return Err(GatewayError::bad_gateway(format!(
            "{provider} answered 204 No Content"
        )));
    }
    let media = answer.response.media_type().unwrap_or_default();
    let wrong = if stream {
        matches!(media, "application/json" | "text/html")
    } else {
        media == "text/event-stream" || media == "text/html"
    };
    if wrong {
        return Err(GatewayError::bad_gateway(format!(
            "{provider} answered a {} request with {media} ({} dialect)",
            if stream { "streaming" } else { "non-streaming" },
            dialect.id().0
        )));
    }
    Ok(())
}

/// The client's body for a same-dialect upstream: untouched unless the model carried a
/// provider prefix, which the upstream would not know, or it holds what the upstream would
/// refuse (see [`FrontDoor::pass_through_body`]).
fn passthrough_body(
    front: &dyn FrontDoor,
    body: &Bytes,
    model: &str,
    upstream_model: &str,
) -> Result<Bytes, GatewayError> {
    let new_model = (model != upstream_model).then_some(upstream_model);
    Ok(match front.pass_through_body(body, new_model)? {
        Some(rewritten) => Bytes::from(rewritten),
        None => body.clone(),
    })
}
