//! The dialect-agnostic request path. A front door's request is routed to a provider; when
//! both speak the same dialect the client's bytes pass through (only `model` rewritten when
//! it carried a prefix) and usage is tapped, otherwise the request goes through the canonical
//! form and the answer comes back the same way. Every path is admitted by the policy before
//! the upstream call and leaves one record, refusals included.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use heimdall_cache::Cache;
use heimdall_protocol::canonical::{self, Assembler};
use heimdall_protocol::dialect::{
    Endpoint, FrontDoor, RequestHead, ResponseContext, UpstreamCodec, UpstreamDialect,
};
use heimdall_protocol::ids;
use heimdall_providers::{Operation, ProviderError, UpstreamClient};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::affinity::Affinity;
use crate::attempt::{self, Answer, Call, Tally, UsedKey, read_body};
use crate::cache::{self, CacheStatus, Lookup, Pending};
use crate::config::{Config, ProviderConfig};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::guard::RecordGuard;
use crate::limits::Slot;
use crate::media::MediaFetcher;
use crate::models::ModelsCache;
use crate::policy::{AllowAll, Plan, Policy};
use crate::record::{AttemptRecord, Content, LogSink, Outcome, RecordSink};
use crate::route;
use crate::stream::{self, BodyStream, Mode, Pump};
use crate::tokens;

/// A successful answer: a JSON document or a stream.
pub enum Reply {
    Json(Bytes),
    Stream(BodyStream),
}

/// Who answered a request: the client sees it in response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The configured provider.
    pub provider: String,
    /// The model as a client names it (`openai/gpt-4o-mini`): the one asked for, or the
    /// fallback that answered.
    pub model: String,
    /// The configured key's name (`direct` for the client's own key).
    pub key: String,
    /// Upstream requests sent: retries, other keys and fallbacks included.
    pub attempts: u32,
}

/// An answer and who gave it (`None`: Heimdall answered itself, e.g. a token estimate or a
/// cache hit).
pub struct Answered<T> {
    pub body: T,
    pub served: Option<Served>,
    /// Whether the semantic cache answered (`None`: the request was not looked up).
    pub cache: Option<CacheStatus>,
}

/// The running configuration and what is built from it. A reload replaces it whole; requests
/// already under way finish on the snapshot they started with.
pub struct Snapshot {
    pub config: Config,
    client: UpstreamClient,
    media: Arc<MediaFetcher>,
    affinity: Arc<Affinity>,
    /// Counts reloads; the model listing cache belongs to one generation.
    pub(crate) generation: u64,
}

impl Deref for Snapshot {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Snapshot {
    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// Builds what `config` needs, reusing the parts of `old` whose settings did not change
    /// (the upstream connection pool, the media client, the session map).
    fn build(config: Config, old: Option<&Snapshot>) -> Result<Self, GatewayError> {
        let client = match old {
            Some(o) if o.config.upstream_client == config.upstream_client => o.client.clone(),
            _ => UpstreamClient::new(&config.upstream_client)
                .map_err(|e| GatewayError::internal(e.to_string()))?,
        };
        let media = match old {
            Some(o) if o.config.media_fetch == config.media_fetch => Arc::clone(&o.media),
            _ => Arc::new(
                MediaFetcher::new(&config.media_fetch)
                    .map_err(|e| GatewayError::internal(format!("media fetch client: {e}")))?,
            ),
        };
        let affinity = match old {
            Some(o) if o.affinity.settings() == config.session_affinity => Arc::clone(&o.affinity),
            _ => Arc::new(Affinity::new(config.session_affinity)),
        };
        Ok(Self {
            generation: old.map_or(0, |o| o.generation + 1),
            config,
            client,
            media,
            affinity,
        })
    }
}

pub struct Gateway {
    live: ArcSwap<Snapshot>,
    /// The semantic cache's entries; they outlive reloads, which change only its settings.
    cache: Arc<Cache>,
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
    /// The semantic cache answered.
    Cached(cache::Hit),
}

/// An exchange's answer, who gave it, and the cache entry it may fill.
struct Done {
    answer: Exchanged,
    served: Option<Served>,
    /// The cache was looked up and missed.
    missed: bool,
    pending: Option<Pending>,
}

struct StreamParts {
    response: heimdall_providers::UpstreamResponse,
    framer: Box<dyn heimdall_protocol::framing::Framer>,
    mode: Mode,
    idle: std::time::Duration,
    secret: String,
    slot: Option<Slot>,
}

/// Where a routed request goes and how.
struct Target<'a> {
    provider: &'a ProviderConfig,
    upstream_model: &'a str,
    dialect: &'static dyn UpstreamDialect,
    /// `None`: same dialect on both sides, bytes pass through.
    codec: Option<&'static dyn UpstreamCodec>,
}

/// Why one model of the chain did not answer.
enum Miss {
    /// The next model may answer instead: the upstream failed, was overloaded or rate-limited,
    /// or this fallback cannot serve the request at all.
    FailOver(GatewayError),
    /// Answered as it is: the client's own mistake, or a refusal.
    Final(GatewayError),
}

impl Miss {
    fn error(&self) -> &GatewayError {
        match self {
            Self::FailOver(e) | Self::Final(e) => e,
        }
    }
}

/// Whether a failure of one model lets the next one try: the upstream's or the gateway's
/// trouble (5xx, timeouts, 408, 409, 429, overload), never the client's own mistake.
fn fails_over(e: &GatewayError) -> bool {
    e.status >= 500 || matches!(e.status, 408 | 409 | 429)
}

/// A request's upstream requests over its whole fallback chain: counted, and each failed one
/// kept in its record's trail.
struct Trail<'r> {
    tries: &'r mut u32,
    /// The model of the chain being tried, as the client names it.
    model: &'r str,
    failed: &'r mut Vec<AttemptRecord>,
}

impl Tally for Trail<'_> {
    fn sent(&mut self) {
        *self.tries += 1;
    }

    fn failed(
        &mut self,
        call: &Call<'_>,
        key: UsedKey<'_>,
        err: &ProviderError,
        elapsed: Duration,
    ) {
        let status = match err {
            ProviderError::Status { status, .. }
            | ProviderError::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        };
        let error = GatewayError::from_provider(err, key.secret(), None);
        self.failed.push(AttemptRecord::new(
            &call.provider.name,
            self.model,
            key,
            status,
            &error,
            elapsed,
        ));
    }
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
        Ok(Self {
            live: ArcSwap::from_pointee(Snapshot::build(config, None)?),
            cache: Arc::default(),
            models: ModelsCache::default(),
            policy,
            sink,
            abort: CancellationToken::new(),
        })
    }

    /// The semantic cache's entries (the server restores them from its store and clears them
    /// through the admin API).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Drops expired cache entries from memory and updates the cache gauges.
    pub fn purge_cache(&self) -> usize {
        let n = self.cache.purge_expired();
        cache::gauges(&self.cache);
        n
    }

    /// The running configuration. A request takes it once, into its `RequestContext`.
    pub fn config(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// Replaces the running configuration. Key circuits and provider slots of unchanged keys
    /// and providers carry over; requests under way finish on the configuration they started
    /// with.
    pub fn reload(&self, mut config: Config) -> Result<(), GatewayError> {
        let old = self.live.load_full();
        config.inherit_state(&old.config);
        let next = Snapshot::build(config, Some(&old))?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    pub fn max_request_body_bytes(&self) -> usize {
        self.live.load().max_request_body_bytes
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

    /// A fresh `req_…` id for a client request. Its leading digits are the time in
    /// milliseconds (the rest random), so ids sort by time: the logs store's index on them
    /// then grows at its end instead of touching a random page per request.
    pub fn new_request_id() -> String {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let random: u128 = rand::rng().random();
        ids::request_id(ids::time_ordered_seed(millis, random))
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
    ) -> Result<Answered<Reply>, GatewayError> {
        let live = Arc::clone(&ctx.config);
        let mut guard = self.guard(&ctx, Endpoint::Messages);
        if live.logging.keeps_content() {
            guard.record.content = Some(Content::of_request(body.clone()));
        }
        let done = match self
            .abortable(self.exchange(&live, &ctx, &body, &mut guard))
            .await
        {
            Ok(done) => done,
            Err(e) => {
                guard.fail(&e);
                return Err(e);
            }
        };
        let cache = done.missed.then_some(CacheStatus::Miss);
        match done.answer {
            Exchanged::Json(bytes) => {
                guard.record.outcome = Outcome::Success;
                guard.record.first_byte = Some(ctx.received.elapsed());
                if let Some(content) = &mut guard.record.content {
                    content.push_response(&bytes);
                }
                if let (Some(pending), Some(s)) = (done.pending, &done.served)
                    && cache::storable(guard.record.stop_reason.as_deref())
                {
                    pending.store(bytes.clone(), &s.provider, &s.model);
                }
                Ok(Answered {
                    body: Reply::Json(bytes),
                    served: done.served,
                    cache,
                })
            }
            Exchanged::Stream(parts) => {
                let StreamParts {
                    response,
                    framer,
                    mode,
                    idle,
                    secret,
                    slot,
                } = *parts;
                let capture = done
                    .pending
                    .zip(done.served.as_ref())
                    .map(|(p, s)| cache::Capture::new(p, s.provider.clone(), s.model.clone()));
                Ok(Answered {
                    body: Reply::Stream(stream::body(Pump {
                        response,
                        framer,
                        mode,
                        idle,
                        guard,
                        secret,
                        abort: self.abort.clone(),
                        slot,
                        capture,
                    })),
                    served: done.served,
                    cache,
                })
            }
            Exchanged::Cached(hit) => {
                guard.record.outcome = Outcome::Success;
                guard.record.first_byte = Some(ctx.received.elapsed());
                if let Some(content) = &mut guard.record.content {
                    content.push_response(&hit.body);
                }
                let body = if hit.stream {
                    let replay = hit.body;
                    Reply::Stream(Box::pin(futures_util::stream::once(
                        async move { Ok(replay) },
                    )))
                } else {
                    Reply::Json(hit.body)
                };
                Ok(Answered {
                    body,
                    served: None,
                    cache: Some(hit.status),
                })
            }
        }
    }

    /// Route and decide between pass-through and translation.
    fn target<'a>(
        live: &'a Snapshot,
        ctx: &RequestContext,
        guard: &mut RecordGuard,
        endpoint: Endpoint,
        model: &'a str,
        stream: bool,
    ) -> Result<Target<'a>, GatewayError> {
        let route = route::resolve(live, model)?;
        let provider = route.provider;
        let allowed = match endpoint {
            Endpoint::Messages if stream => provider.allowed.stream,
            Endpoint::Messages => provider.allowed.messages,
            Endpoint::CountTokens => provider.allowed.count_tokens,
            // The cache stage sends its embedding calls itself, never through here.
            Endpoint::Embeddings => false,
        };
        if !allowed {
            return Err(GatewayError::invalid_request(format!(
                "provider `{}` is not allowed to serve this request type (custom_provider_config.allowed_requests)",
                provider.name
            )));
        }
        let dialect = provider.provider.dialect(route.upstream_model);
        let pass_through = dialect.id() == ctx.front_door.dialect();
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
        guard.record.provider = Some(provider.name.clone());
        // `None` while the model asked for is the one tried.
        guard.record.served_model = guard
            .record
            .model
            .as_deref()
            .is_some_and(|asked| asked != model)
            .then(|| model.to_owned());
        guard.record.pass_through = pass_through;
        Ok(Target {
            provider,
            upstream_model: route.upstream_model,
            dialect,
            codec,
        })
    }

    /// Asks the policy to admit `t` for `model`; what it reserved is settled with the record.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        ctx: &RequestContext,
        guard: &mut RecordGuard,
        endpoint: Endpoint,
        model: &str,
        t: &Target<'_>,
        head: &RequestHead<'_>,
        body_bytes: usize,
    ) -> Result<(), GatewayError> {
        let plan = Plan {
            endpoint,
            provider: &t.provider.name,
            model,
            upstream_model: t.upstream_model,
            pass_through: t.codec.is_none(),
            stream: head.stream,
            max_tokens: head.max_tokens,
            body_bytes,
        };
        guard.admission = self.policy.admit(ctx, plan).await?;
        Ok(())
    }

    /// The client's key for `t`'s upstream, when direct keys are allowed and it takes one.
    fn direct_key<'c>(live: &Snapshot, ctx: &'c RequestContext, t: &Target<'_>) -> Option<&'c str> {
        if !live.allow_direct_keys {
            return None;
        }
        let native = t.provider.provider.direct_key_header(t.upstream_model)?;
        ctx.client_keys.for_upstream(native)
    }

    /// The model asked for, then its fallbacks: the request's `fallbacks` field, else the
    /// configured ones. A session that last got its answer further down the chain starts
    /// there, with the key that gave it, while that key is healthy.
    async fn exchange(
        &self,
        live: &Snapshot,
        ctx: &RequestContext,
        body: &Bytes,
        guard: &mut RecordGuard,
    ) -> Result<Done, GatewayError> {
        if let Some(refusal) = &ctx.refusal {
            return Err(refusal.clone());
        }
        let head = ctx.front_door.peek(body, Endpoint::Messages)?;
        guard.record.model = Some(head.model.to_string());
        guard.record.stream = head.stream;
        // A model named without a provider may be routed by the policy (a virtual key's
        // weighted providers); the record keeps the name the client gave.
        let routed = (!head.model.contains('/'))
            .then(|| self.policy.provider_for(ctx, &head.model))
            .flatten()
            .map(|provider| format!("{provider}/{}", head.model));
        let asked = routed.as_deref().unwrap_or(&head.model);
        let chain = route::chain(live, asked, head.fallbacks.as_deref())?;
        let session = ctx.session_id.as_deref();
        let vk = ctx.virtual_key.as_deref();
        let sticky = session
            .and_then(|s| live.affinity.get(s, vk, &head.model))
            .filter(|s| s.position < chain.len());
        let start = sticky.as_ref().map_or(0, |s| s.position);
        // The sticky place first, then the chain in order.
        let order = std::iter::once(start).chain((0..chain.len()).filter(|&i| i != start));
        let mut canonical: Option<canonical::Request> = None;
        // Looked up once, by the first model the policy admits.
        let mut lookup = (!cache::applies(live, ctx)).then_some(Lookup::Off);
        let mut tries = 0u32;
        let mut first_miss: Option<GatewayError> = None;
        for (tried, position) in order.enumerate() {
            let model = chain[position];
            let preferred = sticky
                .as_ref()
                .filter(|s| s.position == position)
                .map(|s| &*s.key);
            let candidate = Candidate {
                position,
                model,
                preferred,
                last: tried + 1 == chain.len(),
            };
            // Boxed: inline, the upstream call's whole state would enlarge every request's
            // future, which is moved several times on its way through the server.
            let result = Box::pin(self.try_model(
                live,
                ctx,
                body,
                &head,
                guard,
                candidate,
                &mut canonical,
                &mut lookup,
                &mut tries,
            ))
            .await;
            guard.record.attempts = tries;
            match result {
                Ok((answer @ Exchanged::Cached(_), _)) => {
                    return Ok(Done {
                        answer,
                        served: None,
                        missed: false,
                        pending: None,
                    });
                }
                Ok((exchanged, key)) => {
                    let served = Served {
                        provider: guard.record.provider.clone().unwrap_or_default(),
                        model: model.to_owned(),
                        key,
                        attempts: tries,
                    };
                    if let Some(s) = session {
                        live.affinity.set(
                            s,
                            vk,
                            &head.model,
                            position,
                            &served.provider,
                            &served.key,
                            ctx.session_ttl,
                        );
                    }
                    let (missed, pending) = match lookup {
                        Some(Lookup::Miss(pending)) => (true, pending),
                        _ => (false, None),
                    };
                    return Ok(Done {
                        answer: exchanged,
                        served: Some(served),
                        missed,
                        pending,
                    });
                }
                Err(Miss::Final(e)) => return Err(e),
                Err(Miss::FailOver(e)) => {
                    if tried + 1 < chain.len() {
                        tracing::warn!(
                            request_id = %ctx.request_id,
                            model = %model,
                            error = %e.message,
                            "model failed; trying the next in its fallback chain"
                        );
                    }
                    // The admission of a model that did not answer goes back unused.
                    let unused = std::mem::take(&mut guard.admission);
                    self.policy.release(ctx, unused);
                    first_miss.get_or_insert(e);
                }
            }
        }
        Err(first_miss.unwrap_or_else(|| {
            GatewayError::bad_gateway("no model of the fallback chain could be tried")
        }))
    }

    /// One model of the chain: routed, admitted, its body built for its dialect, sent.
    #[allow(clippy::too_many_arguments)]
    async fn try_model<'l>(
        &self,
        live: &'l Snapshot,
        ctx: &RequestContext,
        body: &Bytes,
        head: &RequestHead<'_>,
        guard: &mut RecordGuard,
        candidate: Candidate<'l, '_>,
        canonical: &mut Option<canonical::Request>,
        lookup: &mut Option<Lookup>,
        tries: &mut u32,
    ) -> Result<(Exchanged, String), Miss> {
        let Candidate {
            position,
            model,
            preferred,
            last,
        } = candidate;
        let candidate_has_next = !last;
        let front = ctx.front_door;
        // A fallback that cannot serve this request (not configured, not allowed, no codec)
        // is skipped; the model asked for answers such a problem to the client.
        let unusable = |e: GatewayError| {
            if position == 0 {
                Miss::Final(e)
            } else {
                Miss::FailOver(e)
            }
        };
        guard.record.fallback_index = u32::try_from(position).unwrap_or(u32::MAX);
        let t = Self::target(live, ctx, guard, Endpoint::Messages, model, head.stream)
            .map_err(unusable)?;
        self.admit(ctx, guard, Endpoint::Messages, model, &t, head, body.len())
            .await
            .map_err(Miss::Final)?;
        let allowed_keys = guard.admission.keys.clone();
        // After admission, so a cached answer is never a way around the policy.
        if lookup.is_none() {
            let request = match canonical {
                Some(r) => Some(&*r),
                None => front
                    .decode_request(body, Endpoint::Messages)
                    .ok()
                    .map(|r| &*canonical.insert(r)),
            };
            let found = match request {
                Some(r) => cache::lookup(&self.cache, &self.sink, live, ctx, r).await,
                None => Lookup::Off,
            };
            if let Lookup::Hit(hit) = found {
                return Ok((Exchanged::Cached(hit), String::new()));
            }
            *lookup = Some(found);
        }
        let upstream_body = match t.codec {
            None => passthrough_body(front, body, head, t.upstream_model).map_err(Miss::Final)?,
            Some(codec) => {
                if canonical.is_none() {
                    *canonical = Some(
                        front
                            .decode_request(body, Endpoint::Messages)
                            .map_err(|e| Miss::Final(e.into()))?,
                    );
                }
                let Some(request) = canonical.as_mut() else {
                    return Err(Miss::Final(GatewayError::internal("request not decoded")));
                };
                let inline = codec.inline_media();
                if inline.any() {
                    live.media
                        .inline(request, inline)
                        .await
                        .map_err(Miss::Final)?;
                }
                Bytes::from(
                    codec
                        .encode_request(request, t.upstream_model)
                        .map_err(|e| unusable(e.into()))?,
                )
            }
        };
        let sending = Instant::now();
        let sent = attempt::send(
            &live.client,
            Call {
                provider: t.provider,
                model: Some(t.upstream_model),
                operation: Operation::Messages,
                stream: head.stream,
                body: Some(upstream_body),
                forward_headers: &ctx.forward_headers,
                pinned_key: ctx.pinned_key.as_deref(),
                allowed_keys: allowed_keys.as_deref(),
                direct_key: Self::direct_key(live, ctx, &t),
                preferred_key: preferred,
                pass_through: t.codec.is_none(),
                drop_excess: live.drop_excess_requests,
                has_fallback: candidate_has_next,
            },
            &mut Trail {
                tries,
                model,
                failed: &mut guard.record.failed_attempts,
            },
        )
        .await;
        guard.record.upstream_wait += sending.elapsed();
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) if fails_over(&e) => return Err(Miss::FailOver(e)),
            Err(e) => return Err(Miss::Final(e)),
        };
        let (key, status, started) = (answer.key, answer.response.status(), answer.started);
        guard.record.key_name = Some(key.name().to_owned());
        let taken = Self::take_answer(live, ctx, head, guard, &t, model, answer).await;
        if let Err(miss) = &taken {
            // The upstream answered, but not with anything the client can be given.
            guard.record.failed_attempts.push(AttemptRecord::new(
                &t.provider.name,
                model,
                key,
                Some(status),
                miss.error(),
                started.elapsed(),
            ));
        }
        taken.map(|exchanged| (exchanged, key.name().to_owned()))
    }

    /// A 2xx answer of `t`'s upstream for `model`, checked and read: a stream ready for the
    /// pump, or the client's JSON.
    async fn take_answer(
        live: &Snapshot,
        ctx: &RequestContext,
        head: &RequestHead<'_>,
        guard: &mut RecordGuard,
        t: &Target<'_>,
        model: &str,
        answer: Answer<'_>,
    ) -> Result<Exchanged, Miss> {
        let front = ctx.front_door;
        check_answer_shape(&answer, head.stream, t.dialect).map_err(Miss::FailOver)?;
        // Only a translated answer needs a message id and the client's model name.
        let rctx = || ResponseContext {
            message_id: ids::message_id(rand::rng().random()),
            model: model.to_owned(),
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
            let parts = StreamParts {
                secret: answer.key.secret().to_owned(),
                response: answer.response,
                framer: t.dialect.framer(live.max_stream_event_bytes),
                mode,
                idle: t.provider.stream_idle_timeout,
                slot: answer.slot,
            };
            return Ok(Exchanged::Stream(Box::new(parts)));
        }
        let provider_name = &t.provider.name;
        let reading = Instant::now();
        let body = read_body(answer, t.provider).await;
        guard.record.upstream_wait += reading.elapsed();
        let bytes = body.map_err(|e| {
            if fails_over(&e) {
                Miss::FailOver(e)
            } else {
                Miss::Final(e)
            }
        })?;
        let json = match t.codec {
            None => {
                // Reading usage parses the answer anyway; an answer without usage is not a
                // message (HTML, truncated JSON, an SSE body, an empty 204).
                let summary = t.dialect.answer_summary(&bytes).ok_or_else(|| {
                    Miss::FailOver(GatewayError::bad_gateway(format!(
                        "{provider_name} answered with a body that is not a valid message"
                    )))
                })?;
                guard.record.usage = summary.usage;
                guard.record.stop_reason = summary.stop_reason;
                bytes
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
                    Miss::FailOver(err)
                })?;
                guard.record.usage = response.usage;
                guard.record.stop_reason = response.stop_reason.map(|r| r.as_str().to_owned());
                Bytes::from(front.encode_response(&response))
            }
        };
        Ok(Exchanged::Json(json))
    }

    /// Count a request's input tokens: the upstream counts when it speaks the front door's
    /// dialect and can count; otherwise a local tokenizer gives an estimate. Only the model
    /// asked for counts: a count is cheap to repeat and says nothing about a fallback.
    pub async fn count_tokens(
        &self,
        ctx: Arc<RequestContext>,
        body: Bytes,
    ) -> Result<Answered<Bytes>, GatewayError> {
        let live = Arc::clone(&ctx.config);
        let mut guard = self.guard(&ctx, Endpoint::CountTokens);
        let result = self
            .abortable(self.count_tokens_inner(&live, &ctx, &body, &mut guard))
            .await;
        match &result {
            Ok(_) => guard.record.outcome = Outcome::Success,
            Err(e) => guard.fail(e),
        }
        result
    }

    async fn count_tokens_inner(
        &self,
        live: &Snapshot,
        ctx: &RequestContext,
        body: &Bytes,
        guard: &mut RecordGuard,
    ) -> Result<Answered<Bytes>, GatewayError> {
        if let Some(refusal) = &ctx.refusal {
            return Err(refusal.clone());
        }
        let front = ctx.front_door;
        let head = front.peek(body, Endpoint::CountTokens)?;
        guard.record.model = Some(head.model.to_string());
        let t = Self::target(live, ctx, guard, Endpoint::CountTokens, &head.model, false)?;
        self.admit(
            ctx,
            guard,
            Endpoint::CountTokens,
            &head.model,
            &t,
            &head,
            body.len(),
        )
        .await?;
        let allowed_keys = guard.admission.keys.clone();
        let counts = t.provider.provider.counts_tokens(t.upstream_model);
        let estimated = |count| Answered {
            body: Bytes::from(front.encode_token_count(count)),
            served: None,
            cache: None,
        };
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
                return Ok(estimated(count));
            };
            Some((codec, Bytes::from(count_body?)))
        } else {
            None
        };
        let upstream_body = match &translated {
            Some((_, count_body)) => count_body.clone(),
            None => passthrough_body(front, body, &head, t.upstream_model)?,
        };
        let mut tries = 0;
        let sending = Instant::now();
        let sent = attempt::send(
            &live.client,
            Call {
                provider: t.provider,
                model: Some(t.upstream_model),
                operation: Operation::CountTokens,
                stream: false,
                body: Some(upstream_body),
                forward_headers: &ctx.forward_headers,
                pinned_key: ctx.pinned_key.as_deref(),
                allowed_keys: allowed_keys.as_deref(),
                direct_key: Self::direct_key(live, ctx, &t),
                preferred_key: None,
                pass_through: translated.is_none(),
                drop_excess: live.drop_excess_requests,
                has_fallback: false,
            },
            &mut Trail {
                tries: &mut tries,
                model: &head.model,
                failed: &mut guard.record.failed_attempts,
            },
        )
        .await;
        guard.record.attempts = tries;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => {
                guard.record.upstream_wait += sending.elapsed();
                return Err(e);
            }
        };
        let served = Served {
            provider: t.provider.name.clone(),
            model: head.model.to_string(),
            key: answer.key.name().to_owned(),
            attempts: tries,
        };
        guard.record.key_name = Some(served.key.clone());
        let bytes = read_body(answer, t.provider).await;
        guard.record.upstream_wait += sending.elapsed();
        let bytes = bytes?;
        let count = match translated {
            Some((codec, _)) => codec.decode_count_response(&bytes),
            None => match t.dialect.pass_through_count(&bytes) {
                Some(count) => count,
                None => {
                    return Ok(Answered {
                        body: bytes,
                        served: Some(served),
                        cache: None,
                    });
                }
            },
        };
        let count = count.map_err(|e| {
            GatewayError::bad_gateway(format!(
                "{} answered a token count Heimdall could not read: {}",
                t.provider.name,
                e.message()
            ))
        })?;
        Ok(Answered {
            body: Bytes::from(front.encode_token_count(count)),
            served: Some(served),
            cache: None,
        })
    }
}

/// One model of a request's chain.
struct Candidate<'m, 'k> {
    position: usize,
    model: &'m str,
    /// The session's key for this place in the chain.
    preferred: Option<&'k str>,
    /// No model of the chain is left to try after this one.
    last: bool,
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
/// provider prefix or a fallback answers (the upstream would not know the name), it holds
/// the gateway's `fallbacks` field, or it holds what the upstream would refuse (see
/// [`FrontDoor::pass_through_body`]).
fn passthrough_body(
    front: &dyn FrontDoor,
    body: &Bytes,
    head: &RequestHead<'_>,
    upstream_model: &str,
) -> Result<Bytes, GatewayError> {
    let new_model = (head.model != upstream_model).then_some(upstream_model);
    Ok(
        match front.pass_through_body(body, new_model, head.fallbacks.is_some())? {
            Some(rewritten) => Bytes::from(rewritten),
            None => body.clone(),
        },
    )
}
