//! The semantic cache's stage of the exchange (the `semantic_cache` plugin). It works on the
//! canonical request, so every front door and every provider share it: a direct lookup by the
//! hash of the normalised request first, then (when an embedding provider is configured) the
//! nearest stored request of the same scope by the embedding of its text. A hit answers the
//! stored bytes as they were sent the first time (a JSON message, or a stream's events); a
//! miss carries a [`Pending`] entry that the answer fills once it is complete.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use heimdall_cache::{Cache, CacheConfig, Entry, HitKind, Identity, Keys};
use heimdall_protocol::canonical;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;
use heimdall_providers::Operation;
use http::HeaderMap;

use crate::attempt::{self, Call, read_body};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::exchange::{Gateway, Snapshot};
use crate::record::{Outcome, RecordSink, RequestRecord};

/// Longest wait for an embedding: past it the semantic lookup is skipped, so a slow
/// embedding provider delays a request by at most this much.
const EMBEDDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer stored: a bigger one is served but not kept.
const MAX_ENTRY_BYTES: usize = 4 << 20;

/// What the client is told about the cache (response headers).
#[derive(Debug, Clone, PartialEq)]
pub enum CacheStatus {
    Hit {
        kind: HitKind,
        id: String,
        /// Cosine similarity of a semantic hit; 1 for a direct one.
        similarity: f32,
        /// The threshold the lookup used.
        threshold: f32,
    },
    Miss,
}

/// The outcome of a lookup.
pub(crate) enum Lookup {
    /// The request is not cached: no plugin, no cache key, a history too long.
    Off,
    Hit(Hit),
    /// Looked up and not found; the answer may be stored.
    Miss(Option<Pending>),
}

pub(crate) struct Hit {
    pub body: Bytes,
    pub stream: bool,
    pub status: CacheStatus,
}

/// An answer to store once it is complete.
pub(crate) struct Pending {
    cache: Arc<Cache>,
    keys: Keys,
    cache_key: String,
    vector: Option<Vec<f32>>,
    stream: bool,
    ttl: Duration,
    max_bytes: u64,
}

/// Header-less calls (embeddings carry no client header upstream).
static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// Whether an answer that ended so may be stored: cut-short and refused answers may not.
pub(crate) fn storable(stop_reason: Option<&str>) -> bool {
    !matches!(stop_reason, Some("max_tokens" | "refusal"))
}

impl Pending {
    /// Stores a complete answer (`body` exactly as the client got it) from `provider`.
    pub fn store(self, body: Bytes, provider: &str, model: &str) {
        if body.len() > MAX_ENTRY_BYTES {
            return;
        }
        let now = self.cache.now_ms();
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let entry = Entry {
            id: Entry::id_for(&self.keys.direct),
            cache_key: self.cache_key,
            direct: self.keys.direct,
            scope: self.keys.scope,
            vector: self.vector.map(Into::into),
            stream: self.stream,
            body,
            provider: provider.to_owned(),
            model: model.to_owned(),
            created_ms: now,
            expires_ms: now.saturating_add(ttl),
        };
        match self.cache.insert(entry, self.max_bytes) {
            Ok(_) => metrics::counter!("heimdall_cache_stores_total").increment(1),
            Err(_) => metrics::counter!("heimdall_cache_full_total").increment(1),
        }
        gauges(&self.cache);
    }
}

/// The entries and bytes gauges, after a change.
pub(crate) fn gauges(cache: &Cache) {
    let (entries, bytes) = cache.stats();
    #[allow(clippy::cast_precision_loss)] // Gauges are f64; counts this large do not occur.
    {
        metrics::gauge!("heimdall_cache_entries").set(entries as f64);
        metrics::gauge!("heimdall_cache_bytes").set(bytes as f64);
    }
}

/// A stream's events as they go to the client, kept for the cache up to its entry limit.
pub(crate) struct Capture {
    pending: Pending,
    served: (String, String),
    body: BytesMut,
    overflow: bool,
}

impl Capture {
    /// For the stream `provider` answers as `model`.
    pub fn new(pending: Pending, provider: String, model: String) -> Self {
        Self {
            pending,
            served: (provider, model),
            body: BytesMut::new(),
            overflow: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.body.len() + chunk.len() > MAX_ENTRY_BYTES {
            self.overflow = true;
        } else if !self.overflow {
            self.body.extend_from_slice(chunk);
        }
    }

    /// The stream ended normally: it is stored unless it was cut short or too long.
    pub fn finish(self, stop_reason: Option<&str>) {
        if !self.overflow && storable(stop_reason) {
            let (provider, model) = &self.served;
            self.pending.store(self.body.freeze(), provider, model);
        }
    }
}

/// Whether the request is one to look up: the plugin is on and it has a cache key.
pub(crate) fn applies(live: &Snapshot, ctx: &RequestContext) -> bool {
    live.cache
        .as_ref()
        .is_some_and(|c| ctx.cache_options.cache_key.is_some() || c.default_cache_key.is_some())
}

/// Looks `request` up in `cache`: direct, then semantic. An embedding call's record goes to
/// `sink`.
pub(crate) async fn lookup(
    cache: &Arc<Cache>,
    sink: &Arc<dyn RecordSink>,
    live: &Snapshot,
    ctx: &RequestContext,
    request: &canonical::Request,
) -> Lookup {
    let Some(config) = &live.cache else {
        return Lookup::Off;
    };
    let options = &ctx.cache_options;
    let Some(cache_key) = options
        .cache_key
        .as_deref()
        .or(config.default_cache_key.as_deref())
    else {
        return Lookup::Off;
    };
    let provider = crate::route::split_model(live, &request.model).map_or("", |(p, _)| p);
    let id = Identity {
        cache_key,
        front_door: ctx.front_door.dialect().0,
        provider,
        model: &request.model,
    };
    let Some(keys) = heimdall_cache::keys(config, request, &id) else {
        return Lookup::Off;
    };
    let threshold = options.threshold.unwrap_or(config.threshold);
    if options.kind.direct()
        && let Some(hit) = cache.direct(&keys.direct)
    {
        return hit_of(hit, threshold);
    }
    let mut vector = None;
    if options.kind.semantic() && !keys.text.is_empty() {
        vector = embed(live, sink, ctx, config, &keys.text).await;
        if let Some(hit) = vector
            .as_deref()
            .and_then(|v| cache.nearest(&keys.scope, v, threshold))
        {
            return hit_of(hit, threshold);
        }
    }
    metrics::counter!("heimdall_cache_misses_total").increment(1);
    let pending = (!options.no_store).then(|| Pending {
        cache: Arc::clone(cache),
        cache_key: cache_key.to_owned(),
        stream: request.is_stream(),
        keys,
        vector,
        ttl: options.ttl.unwrap_or(config.ttl),
        max_bytes: config.max_bytes,
    });
    Lookup::Miss(pending)
}

fn hit_of(hit: heimdall_cache::Hit, threshold: f32) -> Lookup {
    metrics::counter!("bifrost_cache_hits_total", "cache_type" => hit.kind.as_str()).increment(1);
    Lookup::Hit(Hit {
        body: hit.entry.body.clone(),
        stream: hit.entry.stream,
        status: CacheStatus::Hit {
            kind: hit.kind,
            id: hit.entry.id.clone(),
            similarity: hit.similarity,
            threshold,
        },
    })
}

/// The unit vector of `text` from the configured embedding provider; `None` (and a warning)
/// when it cannot be had, which only skips the semantic lookup. Each call is a request of its
/// own: it has its own id and record (log line, metrics, logs store, trace), besides the
/// cache's embedding metrics.
async fn embed(
    live: &Snapshot,
    sink: &Arc<dyn RecordSink>,
    ctx: &RequestContext,
    config: &CacheConfig,
    text: &str,
) -> Option<Vec<f32>> {
    let e = config.embedding.as_ref()?;
    let provider = live.provider(&e.provider)?;
    let wire = provider.provider.dialect(&e.model).embeddings()?;
    // Under the front door of the request it was made for; no content: the text is the
    // client's own, already in that request's record.
    let mut record = RequestRecord::new(
        Gateway::new_request_id(),
        Endpoint::Embeddings,
        ctx.front_door.dialect().0,
    );
    record.started_at = SystemTime::now();
    record.provider = Some(provider.name.clone());
    record.model = Some(e.model.clone());
    // The client's trace: its span sits beside the request's own.
    record.traceparent.clone_from(&ctx.traceparent);
    let started = Instant::now();
    let mut tries = 0u32;
    let mut key_name = None;
    let call = async {
        let answer = attempt::send(
            live.client(),
            Call {
                provider,
                model: Some(&e.model),
                operation: Operation::Embeddings,
                stream: false,
                body: Some(Bytes::from(wire.encode(&e.model, text))),
                forward_headers: &NO_HEADERS,
                pinned_key: None,
                allowed_keys: None,
                direct_key: None,
                preferred_key: None,
                pass_through: false,
                drop_excess: live.drop_excess_requests,
                has_fallback: false,
            },
            &mut tries,
        )
        .await?;
        key_name = Some(answer.key.name());
        let body = read_body(answer, provider).await?;
        // An answer that holds no vector is the upstream's failure, not the client's.
        wire.decode(&body)
            .map_err(|err| GatewayError::bad_gateway(err.message()))
    };
    let result = match tokio::time::timeout(EMBEDDING_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(GatewayError::new(
            ErrorType::TimeoutError,
            format!("no answer within {} s", EMBEDDING_TIMEOUT.as_secs()),
        )),
    };
    record.upstream_wait = started.elapsed();
    let result = result.and_then(|answer| {
        if let Some(tokens) = answer.input_tokens {
            record.usage.input_tokens = tokens;
            record.cost = live.pricing.cost(&provider.name, &e.model, &record.usage);
        }
        let v = answer.vector;
        if v.len() == config.dimension {
            heimdall_cache::normalized(&v).ok_or_else(|| GatewayError::bad_gateway("a zero vector"))
        } else {
            Err(GatewayError::bad_gateway(format!(
                "a vector of {} values where `dimension` says {}",
                v.len(),
                config.dimension
            )))
        }
    });
    let elapsed = started.elapsed();
    let outcome = if result.is_ok() { "success" } else { "error" };
    metrics::counter!("heimdall_cache_embedding_requests_total",
        "provider" => provider.name.clone(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!("heimdall_cache_embedding_seconds").record(elapsed.as_secs_f64());
    record.key_name = key_name.map(str::to_owned);
    record.attempts = tries;
    record.latency = elapsed;
    let vector = match result {
        Ok(v) => {
            record.outcome = Outcome::Success;
            tracing::info!(
                request_id = %ctx.request_id,
                embedding_request_id = %record.request_id,
                provider = %provider.name,
                model = %e.model,
                attempts = tries,
                latency_ms = elapsed.as_millis(),
                "semantic cache embedding"
            );
            Some(v)
        }
        Err(err) => {
            tracing::warn!(
                request_id = %ctx.request_id,
                embedding_request_id = %record.request_id,
                provider = %provider.name,
                model = %e.model,
                attempts = tries,
                latency_ms = elapsed.as_millis(),
                error = %err.message,
                "semantic cache embedding failed; semantic lookup skipped"
            );
            record.outcome = Outcome::Failed {
                status: err.status,
                kind: err.kind,
            };
            record.error_message = Some(err.message);
            None
        }
    };
    // A queue hand-over (the sinks never block): nothing awaited beyond the call itself.
    sink.record(&Arc::new(record));
    vector
}
