//! The `otel` plugin: every finished request becomes one OpenTelemetry span following the GenAI
//! semantic conventions, exported over OTLP (http/protobuf or gRPC) to the configured collector.
//!
//! The span is built from the [`RequestRecord`] after the fact, with the request's own start and
//! end times, so nothing on the request path knows about tracing. A client's W3C `traceparent`
//! makes the span a child of the client's span; without one (or with a malformed one) the span
//! starts a new trace.
//!
//! Spans go through the SDK's batch processor: a bounded queue drained by its own thread, so
//! [`RecordSink::record`] only enqueues, and drops the span when the queue is full.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use heimdall_core::config::{OtelConfig, OtlpProtocol};
use heimdall_core::{Outcome, RecordSink, RequestRecord};
use heimdall_protocol::dialect::Endpoint;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

#[cfg(feature = "testing")]
pub mod testing;

/// How long [`OtelGuard::shutdown`] waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export; beyond this they are dropped (about 1.5 s of a 10k/s load).
const MAX_QUEUE: usize = 16_384;
/// Spans per export request: large batches keep the one export thread ahead of a busy gateway.
const MAX_BATCH: usize = 1024;
/// A quiet gateway's spans still leave within a second.
const EXPORT_DELAY: Duration = Duration::from_secs(1);
/// One export request, retries included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the exporter. Call from within the Tokio runtime: the gRPC channel and the HTTP
/// client's requests run on it.
pub fn start(config: &OtelConfig) -> anyhow::Result<(Arc<OtelSink>, OtelGuard)> {
    let exporter = exporter(config)?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUE)
                .with_max_export_batch_size(MAX_BATCH)
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // Every request is traced: the operator turned the plugin on, and a client's unsampled
        // `traceparent` should not switch off the gateway's own telemetry.
        .with_sampler(Sampler::AlwaysOn)
        // The builder's detectors read OTEL_RESOURCE_ATTRIBUTES; the configured name wins.
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("heimdall");
    Ok((Arc::new(OtelSink { tracer }), OtelGuard { provider }))
}

fn exporter(config: &OtelConfig) -> anyhow::Result<SpanExporter> {
    // tonic's channel spawns its worker here, and HTTP exports run here.
    let runtime = tokio::runtime::Handle::try_current()
        .context("the OTLP exporter starts inside the Tokio runtime")?;
    // Checked once here for both transports (the HTTP builder would drop a bad one silently).
    let mut headers = http::HeaderMap::new();
    for (name, value) in &config.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("otel header name `{name}`"))?;
        let value = http::HeaderValue::from_str(value.expose())
            .with_context(|| format!("otel header `{name}`: invalid value"))?;
        headers.insert(name, value);
    }
    let exporter = match config.protocol {
        OtlpProtocol::Http => {
            heimdall_providers::install_tls_crypto();
            let client = reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .context("building the OTLP HTTP client")?;
            let headers = config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect::<HashMap<_, _>>();
            SpanExporter::builder()
                .with_http()
                .with_http_client(OnRuntime { client, runtime })
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(traces_endpoint(&config.collector_url)?)
                .with_headers(headers)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        }
        OtlpProtocol::Grpc => {
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.collector_url.clone())
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                )
                .with_timeout(EXPORT_TIMEOUT);
            if config.collector_url.starts_with("https://") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_native_roots(),
                );
            }
            builder.build()
        }
    };
    exporter.with_context(|| format!("OTLP exporter for {}", config.collector_url))
}

/// The http collector URL: OTLP's `/v1/traces` when the URL names no path.
fn traces_endpoint(url: &str) -> anyhow::Result<String> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("otel collector_url `{url}`"))?;
    Ok(match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("/") => format!("{}/v1/traces", url.trim_end_matches('/')),
        Some(_) => url.to_owned(),
    })
}

/// reqwest's async client on the gateway's runtime: the batch processor polls exports on its own
/// thread, where a request future finds no reactor, so each request is spawned onto the
/// runtime and only its outcome is awaited there.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Flushes and stops the exporter; dropped without [`OtelGuard::shutdown`], the SDK still
/// flushes, but blocking the thread that drops it.
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Sends the spans still queued, waiting at most a few seconds; never hangs.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The SDK blocks while it flushes (bounded by the timeout): off the async workers.
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => tracing::debug!("OpenTelemetry exporter flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "OpenTelemetry exporter shutdown"),
            Err(e) => tracing::warn!(error = %e, "OpenTelemetry exporter shutdown"),
        }
    }
}

/// Turns each finished request into one span.
pub struct OtelSink {
    tracer: SdkTracer,
}

impl RecordSink for OtelSink {
    fn record(&self, r: &Arc<RequestRecord>) {
        let operation = operation(r.endpoint);
        let name = match &r.model {
            Some(model) => format!("{operation} {model}"),
            None => operation.to_owned(),
        };
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Client)
            .with_start_time(r.started_at)
            .with_attributes(attributes(r, operation));
        let parent = r
            .traceparent
            .as_deref()
            .and_then(remote_parent)
            .map_or_else(Context::new, |parent| {
                Context::new().with_remote_span_context(parent)
            });
        let mut span = self.tracer.build_with_context(builder, &parent);
        if let Some(status) = status(r) {
            span.set_status(status);
        }
        span.end_with_timestamp(r.started_at + r.latency);
    }
}

/// `gen_ai.operation.name`: `chat` for Messages, `embeddings` for the semantic cache's calls;
/// counting tokens has no well-known value, so it gets its own, named after the endpoint.
fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Messages => "chat",
        Endpoint::CountTokens => "count_tokens",
        Endpoint::Embeddings => "embeddings",
    }
}

/// The span's status: Error with the message when the request failed; a client that went away
/// is not the gateway's failure (its outcome is in `heimdall.outcome`).
fn status(r: &RequestRecord) -> Option<Status> {
    match r.outcome {
        Outcome::Success | Outcome::Cancelled => None,
        Outcome::Failed { kind, .. } | Outcome::StreamError { kind } => Some(Status::error(
            r.error_message
                .clone()
                .unwrap_or_else(|| kind.as_str().to_owned()),
        )),
    }
}

fn attributes(r: &RequestRecord, operation: &'static str) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(24);
    a.push(KeyValue::new("gen_ai.operation.name", operation));
    if let Some(provider) = &r.provider {
        let (name, system) = provider_names(provider);
        a.push(KeyValue::new("gen_ai.provider.name", name.to_owned()));
        // The attribute's name before semantic conventions 1.37, still read by many backends.
        a.push(KeyValue::new("gen_ai.system", system.to_owned()));
    }
    if let Some(model) = &r.model {
        a.push(KeyValue::new("gen_ai.request.model", model.clone()));
    }
    // The model that answered: the one asked for, or the fallback that served it.
    if matches!(r.outcome, Outcome::Success | Outcome::StreamError { .. })
        && let Some(served) = r.served_model.as_ref().or(r.model.as_ref())
    {
        a.push(KeyValue::new("gen_ai.response.model", served.clone()));
    }
    let u = r.usage;
    if u != Default::default() {
        // The conventions count every input token, cached ones included; Anthropic-shaped usage
        // keeps cache reads and writes apart from `input_tokens`.
        let input = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
        a.push(KeyValue::new("gen_ai.usage.input_tokens", int(input)));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            int(u.output_tokens),
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.cache_read.input_tokens",
            int(u.cache_read_input_tokens),
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.cache_creation.input_tokens",
            int(u.cache_creation_input_tokens),
        ));
    }
    if let Some(reason) = &r.stop_reason {
        a.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(vec![opentelemetry::StringValue::from(reason.clone())].into()),
        ));
    }
    if let Some(kind) = r.outcome.error_type() {
        a.push(KeyValue::new("error.type", kind.as_str()));
    }
    a.push(KeyValue::new(
        "http.response.status_code",
        i64::from(r.outcome.status()),
    ));
    a.push(KeyValue::new("heimdall.request_id", r.request_id.clone()));
    a.push(KeyValue::new("heimdall.outcome", r.outcome.as_str()));
    a.push(KeyValue::new("heimdall.front_door", r.front_door));
    if let Some(provider) = &r.provider {
        // The configured provider's own name (gen_ai.provider.name uses the well-known value).
        a.push(KeyValue::new("heimdall.provider", provider.clone()));
    }
    if let Some(key) = &r.key_name {
        a.push(KeyValue::new("heimdall.key_name", key.clone()));
    }
    if let Some(vk) = &r.virtual_key {
        a.push(KeyValue::new("heimdall.virtual_key", vk.clone()));
    }
    a.push(KeyValue::new("heimdall.attempts", i64::from(r.attempts)));
    a.push(KeyValue::new(
        "heimdall.fallback_index",
        i64::from(r.fallback_index),
    ));
    a.push(KeyValue::new("heimdall.stream", r.stream));
    a.push(KeyValue::new("heimdall.pass_through", r.pass_through));
    if let Some(cost) = r.cost {
        a.push(KeyValue::new("heimdall.cost", cost));
    }
    a
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A configured provider's well-known values of (`gen_ai.provider.name`, `gen_ai.system`);
/// a provider the conventions do not list keeps its own name in both.
fn provider_names(provider: &str) -> (&str, &str) {
    match provider {
        "azure" => ("azure.ai.openai", "az.ai.openai"),
        "bedrock" => ("aws.bedrock", "aws.bedrock"),
        "vertex" => ("gcp.vertex_ai", "gcp.vertex_ai"),
        "gemini" => ("gcp.gemini", "gcp.gemini"),
        "mistral" => ("mistral_ai", "mistral_ai"),
        "xai" => ("x_ai", "xai"),
        other => (other, other),
    }
}

/// The span context of a W3C `traceparent` (`version-traceid-parentid-flags`, lowercase hex),
/// or `None` for anything malformed: the request then starts a new trace.
fn remote_parent(header: &str) -> Option<SpanContext> {
    let b = header.trim_matches([' ', '\t']).as_bytes();
    // 2 + 1 + 32 + 1 + 16 + 1 + 2; a later version may append `-` and more fields.
    const LEN: usize = 55;
    if b.len() < LEN || [2, 35, 52].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let version = hex(&b[0..2])?;
    if version == 0xff || (b.len() > LEN && (version == 0 || b[LEN] != b'-')) {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex(&b[3..35])?.to_be_bytes());
    let span_id = SpanId::from_bytes(u64::try_from(hex(&b[36..52])?).ok()?.to_be_bytes());
    let flags = u8::try_from(hex(&b[53..55])?).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    // All-zero ids are invalid.
    context.is_valid().then_some(context)
}

/// Lowercase hex digits, as W3C Trace Context requires.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_valid() {
        let c = remote_parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(
            c.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(c.span_id(), SpanId::from_hex("b7ad6b7169203331").unwrap());
        assert!(c.is_sampled() && c.is_remote());
        // Unsampled, a future version with more fields, surrounding whitespace.
        assert!(
            !remote_parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
                .unwrap()
                .is_sampled()
        );
        assert!(
            remote_parent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever")
                .is_some()
        );
        assert!(
            remote_parent(" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t").is_some()
        );
    }

    #[test]
    fn traceparent_garbage() {
        for bad in [
            "",
            "garbage",
            "00-1-1-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031é-b7ad6b7169203331-01",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(remote_parent(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_endpoint_gets_the_traces_path_only_without_one() {
        assert_eq!(
            traces_endpoint("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_endpoint("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_endpoint("https://otlp.example/api/traces").unwrap(),
            "https://otlp.example/api/traces"
        );
    }
}
