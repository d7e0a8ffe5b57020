//! `GET /metrics`: the process's `metrics` recorder rendered in Prometheus text format, and
//! the HTTP metrics of every route. The LLM metrics come from the record sink
//! (`heimdall_core::telemetry`), circuits and the logs store emit their own; all of them are
//! described here, the one catalogue of what `/metrics` shows.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Request and upstream latencies: 5 ms … 5 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Gaps between stream events are tens of milliseconds: 1 ms … 10 s.
const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Heimdall's own time per request: 10 µs … 100 ms.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// until then (a scrape folds them too), so without it memory grows with traffic between
/// scrapes, or forever when nothing scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's `metrics` recorder, once; later calls
/// (several routers in one test process) return the same handle. Handles registered before
/// this call are no-ops forever, so the server calls it before building anything that emits.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will show nothing");
        }
        describe();
        let upkeep = handle.clone();
        // A thread, not a task: it must outlive whichever runtime happened to install.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the metrics upkeep thread; histograms are folded at scrapes only");
        }
        handle
    })
}

#[allow(clippy::expect_used)] // Constant, non-empty bucket lists: the only error case.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        // Every other histogram is a duration in seconds; without buckets it would render as a
        // summary, which cannot be aggregated across instances.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("bifrost_stream_inter_token_latency_seconds".into()),
                INTER_TOKEN_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("heimdall_overhead_seconds".into()),
                OVERHEAD_BUCKETS,
            )
        })
        .expect("bucket lists are not empty")
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        Unit::Count,
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response headers (a stream's body is not included), by method and route template."
    );
    describe_counter!(
        "bifrost_upstream_requests_total",
        Unit::Count,
        "Requests sent upstream, retries, other keys and fallbacks included."
    );
    describe_histogram!(
        "bifrost_upstream_latency_seconds",
        Unit::Seconds,
        "Time a request spent waiting on upstreams, for requests that called one."
    );
    describe_counter!(
        "bifrost_success_requests_total",
        Unit::Count,
        "Requests answered successfully."
    );
    describe_counter!(
        "bifrost_error_requests_total",
        Unit::Count,
        "Requests that failed, by status code and normalised error type."
    );
    describe_counter!(
        "bifrost_input_tokens_total",
        Unit::Count,
        "Prompt tokens, cached ones included."
    );
    describe_counter!("bifrost_output_tokens_total", Unit::Count, "Output tokens.");
    describe_gauge!(
        "bifrost_cost_total",
        "Cost in US dollars of requests whose price is known; only grows (a gauge because it is fractional)."
    );
    describe_counter!(
        "bifrost_cache_hits_total",
        Unit::Count,
        "Semantic-cache hits, by cache_type: direct or semantic."
    );
    describe_counter!(
        "heimdall_cache_misses_total",
        Unit::Count,
        "Requests looked up in the semantic cache and not found."
    );
    describe_counter!(
        "heimdall_cache_stores_total",
        Unit::Count,
        "Complete answers stored in the semantic cache."
    );
    describe_counter!(
        "heimdall_cache_full_total",
        Unit::Count,
        "Answers not stored because the cache held its max_size_mb."
    );
    describe_gauge!(
        "heimdall_cache_entries",
        "Entries held by the semantic cache."
    );
    describe_gauge!(
        "heimdall_cache_bytes",
        "Bytes held by the semantic cache's entries (answers and vectors)."
    );
    describe_counter!(
        "heimdall_cache_embedding_requests_total",
        Unit::Count,
        "Embedding requests of the semantic cache, by provider and outcome (success, error)."
    );
    describe_histogram!(
        "heimdall_cache_embedding_seconds",
        Unit::Seconds,
        "Time an embedding request of the semantic cache took, retries included."
    );
    describe_counter!(
        "heimdall_cache_journal_dropped_total",
        Unit::Count,
        "Semantic-cache changes not persisted because the store's queue was full."
    );
    describe_histogram!(
        "bifrost_stream_first_token_latency_seconds",
        Unit::Seconds,
        "Time to a stream's first upstream event."
    );
    describe_histogram!(
        "bifrost_stream_inter_token_latency_seconds",
        Unit::Seconds,
        "A stream's mean time between upstream events."
    );
    describe_histogram!(
        "heimdall_overhead_seconds",
        Unit::Seconds,
        "Time Heimdall itself spent on a request that went upstream (neither upstream nor client wait), by path: pass_through or translated."
    );
    describe_gauge!(
        "heimdall_key_circuit_open",
        "1 while a provider key's circuit is open (the key skipped), else 0."
    );
    describe_counter!(
        "heimdall_key_circuit_transitions_total",
        Unit::Count,
        "Provider key circuits opening and closing."
    );
    describe_counter!(
        "heimdall_log_records_dropped_total",
        Unit::Count,
        "Request records the logs store dropped because its queue was full."
    );
    describe_counter!(
        "heimdall_log_records_failed_total",
        Unit::Count,
        "Request records the logs store failed to write."
    );
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "getMetrics",
    summary = "Every metric in Prometheus text format",
    description = "The gateway's LLM, HTTP, key circuit and logs store metrics; see the README's \
        *Metrics* section for the catalogue.",
    responses(
        (status = 200, description = "Every metric in Prometheus text format",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 500, description = "Rendering failed (an empty answer)"),
    ),
)]
pub async fn render() -> Response {
    // Thousands of series take milliseconds to render: off the request workers.
    let handle = install();
    match tokio::task::spawn_blocking(|| handle.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The layer recording `http_requests_total{method,path,status_code}` and
/// `http_request_duration_seconds{method,path}`. `path` is the route template, or `unmatched`:
/// never the client's path. The time is until the response headers; for a stream that is its
/// start, its body's time is in the LLM metrics. A request whose client left before the headers
/// is not counted here (the LLM metrics count it as `bifrost_dropped`).
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method().as_str());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let path = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    HTTP.observe(method, path, res.status().as_u16(), start.elapsed());
    res
}

/// Standard methods by name; anything else (a client can send any token) is `OTHER`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

/// The HTTP metrics' handles by route template, then (method, status): registered once, so a
/// request costs a map lookup and atomic adds. Bounded: routes are the router's, methods and
/// statuses few.
static HTTP: LazyLock<HttpMetrics> = LazyLock::new(HttpMetrics::default);

#[derive(Default)]
struct HttpMetrics(RwLock<HashMap<Box<str>, Vec<HttpSeries>>>);

#[derive(Clone)]
struct HttpSeries {
    method: &'static str,
    status: u16,
    requests: Counter,
    /// The (method, path) histogram, shared by that pair's statuses.
    duration: Histogram,
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, path: &str, status: u16, elapsed: Duration) {
        let find = |series: &[HttpSeries]| {
            series
                .iter()
                .find(|s| s.method == method && s.status == status)
                .cloned()
        };
        let known = {
            let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
            table.get(path).and_then(|s| find(s))
        };
        let series = known.unwrap_or_else(|| {
            let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
            let series = table.entry(path.into()).or_default();
            find(series).unwrap_or_else(|| {
                let path = path.to_owned();
                let s = HttpSeries {
                    method,
                    status,
                    requests: metrics::counter!(
                        "http_requests_total",
                        "method" => method,
                        "path" => path.clone(),
                        "status_code" => status.to_string()
                    ),
                    duration: metrics::histogram!(
                        "http_request_duration_seconds",
                        "method" => method,
                        "path" => path
                    ),
                };
                series.push(s.clone());
                s
            })
        });
        series.requests.increment(1);
        series.duration.record(elapsed.as_secs_f64());
    }
}
