//! Request metrics: every finished record counted and timed through the `metrics` facade, under
//! Bifrost's names where Bifrost has one (dashboards built for Bifrost keep working).
//!
//! Labels are `provider` (the configured name; `""` for a request refused before routing, a
//! value no configured provider can have) and `model` (the model that served, else the one the
//! client named, without its `provider/` prefix; `""` when none was read). Model names come
//! from clients, so at most [`MAX_SERIES`] distinct (provider, model) pairs get their own
//! series; any further model is counted under `model="_other"` of its provider.
//!
//! This runs on every request: the handles of a (provider, model) pair are registered once and
//! kept, so a record costs map lookups and atomic adds, never a label vector or a `Key`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Label};

use crate::record::{Outcome, RecordSink, RequestRecord};
use heimdall_protocol::error::ErrorType;

/// Distinct (provider, model) label pairs kept before new models fold into `_other`.
pub const MAX_SERIES: usize = 1000;

/// The model label of requests beyond [`MAX_SERIES`].
const OTHER_MODEL: &str = "_other";

/// The [`RecordSink`] behind the LLM metrics of `/metrics`.
pub struct MetricsSink {
    max_series: usize,
    table: RwLock<Table>,
    /// `heimdall_overhead_seconds{path="pass_through"}`, then `{path="translated"}`.
    overhead: [Histogram; 2],
}

#[derive(Default)]
struct Table {
    by_provider: HashMap<Box<str>, HashMap<Box<str>, Series>>,
    /// Pairs with their own model label (the `_other` ones not counted).
    named: usize,
}

impl Table {
    fn get(&self, provider: &str, model: &str) -> Option<&Series> {
        self.by_provider.get(provider)?.get(model)
    }
}

/// The handles of one (provider, model) pair.
struct Series {
    labels: [Label; 2],
    success: Counter,
    upstream_requests: Counter,
    upstream_latency: Histogram,
    input_tokens: Counter,
    output_tokens: Counter,
    /// A gauge only because the facade's counters are integers; it only ever grows.
    cost: Gauge,
    first_token: Histogram,
    inter_token: Histogram,
    /// `bifrost_error_requests_total` by (status, error_type): few combinations, registered as
    /// they first occur.
    errors: RwLock<Vec<(u16, &'static str, Counter)>>,
}

impl Series {
    fn new(provider: &str, model: &str) -> Self {
        let labels = [
            Label::new("provider", provider.to_owned()),
            Label::new("model", model.to_owned()),
        ];
        let l = || labels.to_vec();
        Self {
            success: metrics::counter!("bifrost_success_requests_total", l()),
            upstream_requests: metrics::counter!("bifrost_upstream_requests_total", l()),
            upstream_latency: metrics::histogram!("bifrost_upstream_latency_seconds", l()),
            input_tokens: metrics::counter!("bifrost_input_tokens_total", l()),
            output_tokens: metrics::counter!("bifrost_output_tokens_total", l()),
            cost: metrics::gauge!("bifrost_cost_total", l()),
            first_token: metrics::histogram!("bifrost_stream_first_token_latency_seconds", l()),
            inter_token: metrics::histogram!("bifrost_stream_inter_token_latency_seconds", l()),
            errors: RwLock::default(),
            labels,
        }
    }

    fn error(&self, status: u16, error_type: &'static str) {
        let known = |errors: &[(u16, &'static str, Counter)]| {
            errors
                .iter()
                .find(|(s, t, _)| *s == status && *t == error_type)
                .map(|(_, _, c)| c.clone())
        };
        let seen = known(&self.errors.read().unwrap_or_else(PoisonError::into_inner));
        let counter = seen.unwrap_or_else(|| {
            let mut errors = self.errors.write().unwrap_or_else(PoisonError::into_inner);
            known(&errors).unwrap_or_else(|| {
                let mut labels = self.labels.to_vec();
                labels.push(Label::new("status_code", status.to_string()));
                labels.push(Label::from_static_parts("error_type", error_type));
                let c = metrics::counter!("bifrost_error_requests_total", labels);
                errors.push((status, error_type, c.clone()));
                c
            })
        });
        counter.increment(1);
    }
}

impl MetricsSink {
    /// Registers its handles with the recorder current at the call (the global one in the
    /// server), as does every later record.
    pub fn new() -> Self {
        Self::with_max_series(MAX_SERIES)
    }

    pub fn with_max_series(max_series: usize) -> Self {
        // Nothing counts semantic-cache hits yet; registered at zero so that dashboards and
        // alerts written for Bifrost find the series.
        metrics::counter!("bifrost_cache_hits_total").increment(0);
        let overhead =
            |path: &'static str| metrics::histogram!("heimdall_overhead_seconds", "path" => path);
        Self {
            max_series,
            table: RwLock::default(),
            overhead: [overhead("pass_through"), overhead("translated")],
        }
    }

    /// Runs `f` on the series of (provider, model), or of (provider, `_other`) once the table
    /// is full; creates it on first sight.
    fn with_series(&self, provider: &str, model: &str, f: impl FnOnce(&Series)) {
        {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            let found = table.get(provider, model).or_else(|| {
                // Full: an unseen model (a flood of made-up names) stays on the read lock.
                (table.named >= self.max_series)
                    .then(|| table.get(provider, OTHER_MODEL))
                    .flatten()
            });
            if let Some(series) = found {
                return f(series);
            }
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let model = if table.get(provider, model).is_some() || table.named < self.max_series {
            model
        } else {
            OTHER_MODEL
        };
        let Table { by_provider, named } = &mut *table;
        let models = by_provider.entry(provider.into()).or_default();
        let series = models.entry(model.into()).or_insert_with(|| {
            if model != OTHER_MODEL {
                *named += 1;
            }
            Series::new(provider, model)
        });
        f(series);
    }
}

impl Default for MetricsSink {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordSink for MetricsSink {
    fn record(&self, r: &Arc<RequestRecord>) {
        let provider = r.provider.as_deref().unwrap_or_default();
        let named = r
            .served_model
            .as_deref()
            .or(r.model.as_deref())
            .unwrap_or_default();
        // The model's own name, as Bifrost labels it: `openai/gpt-4o` is `gpt-4o` of `openai`.
        let model = named
            .strip_prefix(provider)
            .and_then(|m| m.strip_prefix('/'))
            .filter(|_| !provider.is_empty())
            .unwrap_or(named);
        let called = r.attempts > 0;
        self.with_series(provider, model, |s| {
            match error_type(r.outcome, called) {
                None => s.success.increment(1),
                Some(t) => s.error(r.outcome.status(), t),
            }
            if called {
                // All attempts of the request, fallbacks' included, go to the model that
                // served or was tried last.
                s.upstream_requests.increment(u64::from(r.attempts));
                s.upstream_latency.record(r.upstream_wait.as_secs_f64());
            }
            let u = r.usage;
            // The whole prompt, as Bifrost counts it (OpenAI's `prompt_tokens`); Anthropic's
            // `input_tokens` leaves out the cached part.
            let input = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
            if input > 0 {
                s.input_tokens.increment(input);
            }
            if u.output_tokens > 0 {
                s.output_tokens.increment(u.output_tokens);
            }
            if let Some(cost) = r.cost.filter(|c| *c > 0.0) {
                s.cost.increment(cost);
            }
            if r.stream {
                if let Some(t) = r.first_byte {
                    s.first_token.record(t.as_secs_f64());
                }
                if let Some(t) = r.inter_event {
                    s.inter_token.record(t.as_secs_f64());
                }
            }
        });
        // Only requests that went upstream: a refusal's time is all "overhead" and would
        // drown the cost of proxying.
        if called {
            self.overhead[usize::from(!r.pass_through)].record(r.overhead().as_secs_f64());
        }
    }
}

/// Bifrost's normalised `error_type` label of a request that did not succeed (`None` for a
/// success). `called`: an upstream request was sent, so the failure is the upstream's unless
/// it is the client's.
///
/// | outcome / Anthropic type | no upstream call | after an upstream call |
/// |---|---|---|
/// | cancelled (client went away) | `bifrost_dropped` | `bifrost_dropped` |
/// | `invalid_request_error`, `not_found_error`, `request_too_large` | `caller_invalid_request` | `caller_invalid_request` |
/// | `authentication_error`, `permission_error` | `caller_auth` | `provider_error` (the gateway's key was refused) |
/// | `billing_error` | `policy_budget_exceeded` | `provider_error` |
/// | `rate_limit_error` | `policy_rate_limited` | `provider_rate_limited` |
/// | `overloaded_error` (also every key's circuit open, provider queue full) | `provider_overloaded` | `provider_overloaded` |
/// | `timeout_error` (also no provider slot in time) | `provider_timeout` | `provider_timeout` |
/// | `api_error` | `bifrost_internal` | `provider_error` |
/// | `conflict_error` | `_OTHER` | `_OTHER` |
///
/// A stream that failed after its start is labelled by its error event's type, with status 200.
fn error_type(outcome: Outcome, called: bool) -> Option<&'static str> {
    use ErrorType as E;
    let kind = match outcome {
        Outcome::Success => return None,
        Outcome::Cancelled => return Some("bifrost_dropped"),
        Outcome::Failed { kind, .. } | Outcome::StreamError { kind } => kind,
    };
    Some(match (kind, called) {
        (E::InvalidRequestError | E::NotFoundError | E::RequestTooLarge, _) => {
            "caller_invalid_request"
        }
        (E::AuthenticationError | E::PermissionError, false) => "caller_auth",
        (E::BillingError, false) => "policy_budget_exceeded",
        (E::RateLimitError, false) => "policy_rate_limited",
        (E::RateLimitError, true) => "provider_rate_limited",
        (E::OverloadedError, _) => "provider_overloaded",
        (E::TimeoutError, _) => "provider_timeout",
        (E::ApiError, false) => "bifrost_internal",
        (E::AuthenticationError | E::PermissionError | E::BillingError | E::ApiError, true) => {
            "provider_error"
        }
        (E::ConflictError, _) => "_OTHER",
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use heimdall_protocol::canonical::Usage;
    use heimdall_protocol::dialect::Endpoint;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn record(
        provider: Option<&str>,
        model: &str,
        outcome: Outcome,
        attempts: u32,
    ) -> Arc<RequestRecord> {
        Arc::new(RequestRecord {
            provider: provider.map(str::to_owned),
            model: Some(model.to_owned()),
            attempts,
            pass_through: true,
            outcome,
            latency: Duration::from_millis(30),
            upstream_wait: Duration::from_millis(25),
            ..RequestRecord::new("req_test".into(), Endpoint::Messages, "anthropic")
        })
    }

    /// Every series as `name{label=value,…}` (labels sorted) → value.
    fn snapshot(recorder: &DebuggingRecorder, run: impl FnOnce()) -> BTreeMap<String, DebugValue> {
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(recorder, run);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<_> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    fn count(m: &BTreeMap<String, DebugValue>, series: &str) -> u64 {
        match m.get(series) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{series}: {other:?} in {:#?}", m.keys()),
        }
    }

    fn samples(m: &BTreeMap<String, DebugValue>, series: &str) -> Vec<f64> {
        match m.get(series) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{series}: {other:?} in {:#?}", m.keys()),
        }
    }

    #[test]
    fn records_become_bifrost_metrics() {
        let recorder = DebuggingRecorder::new();
        let m = snapshot(&recorder, || {
            let sink = MetricsSink::new();
            let mut ok = record(Some("openai"), "openai/gpt-4o", Outcome::Success, 2);
            {
                let r = Arc::make_mut(&mut ok);
                r.served_model = Some("openai/gpt-4o-mini".into());
                r.stream = true;
                r.pass_through = false;
                r.usage = Usage {
                    input_tokens: 10,
                    cache_read_input_tokens: 5,
                    cache_creation_input_tokens: 1,
                    output_tokens: 7,
                };
                r.cost = Some(0.25);
                r.first_byte = Some(Duration::from_millis(100));
                r.inter_event = Some(Duration::from_millis(20));
            }
            sink.record(&ok);
            sink.record(&ok);
            let limited = Outcome::Failed {
                status: 429,
                kind: ErrorType::RateLimitError,
            };
            sink.record(&record(Some("anthropic"), "claude-x", limited, 3));
            sink.record(&record(Some("anthropic"), "claude-x", limited, 1));
            let invalid = Outcome::Failed {
                status: 400,
                kind: ErrorType::InvalidRequestError,
            };
            sink.record(&record(None, "nope/model", invalid, 0));
            sink.record(&record(
                Some("anthropic"),
                "claude-x",
                Outcome::Cancelled,
                1,
            ));
        });
        let gpt = "model=gpt-4o-mini,provider=openai";
        assert_eq!(
            count(&m, &format!("bifrost_success_requests_total{{{gpt}}}")),
            2
        );
        assert_eq!(
            count(&m, &format!("bifrost_upstream_requests_total{{{gpt}}}")),
            4
        );
        assert_eq!(
            count(&m, &format!("bifrost_input_tokens_total{{{gpt}}}")),
            32
        );
        assert_eq!(
            count(&m, &format!("bifrost_output_tokens_total{{{gpt}}}")),
            14
        );
        assert_eq!(
            m[&format!("bifrost_cost_total{{{gpt}}}")],
            DebugValue::Gauge(0.5.into())
        );
        assert_eq!(
            samples(
                &m,
                &format!("bifrost_stream_first_token_latency_seconds{{{gpt}}}")
            ),
            [0.1, 0.1]
        );
        assert_eq!(
            samples(
                &m,
                &format!("bifrost_stream_inter_token_latency_seconds{{{gpt}}}")
            ),
            [0.02, 0.02]
        );
        let claude = "model=claude-x,provider=anthropic";
        assert_eq!(
            count(
                &m,
                &format!(
                    "bifrost_error_requests_total{{error_type=provider_rate_limited,{claude},status_code=429}}"
                )
            ),
            2
        );
        assert_eq!(
            count(
                &m,
                &format!(
                    "bifrost_error_requests_total{{error_type=bifrost_dropped,{claude},status_code=499}}"
                )
            ),
            1
        );
        assert_eq!(
            count(&m, &format!("bifrost_upstream_requests_total{{{claude}}}")),
            5
        );
        assert_eq!(
            samples(&m, &format!("bifrost_upstream_latency_seconds{{{claude}}}")).len(),
            3
        );
        // Refused before routing: provider "", no upstream request, no latency sample.
        let refused = "model=nope/model,provider=";
        assert_eq!(
            count(
                &m,
                &format!(
                    "bifrost_error_requests_total{{error_type=caller_invalid_request,{refused},status_code=400}}"
                )
            ),
            1
        );
        assert_eq!(
            count(&m, &format!("bifrost_upstream_requests_total{{{refused}}}")),
            0
        );
        assert!(
            samples(
                &m,
                &format!("bifrost_upstream_latency_seconds{{{refused}}}")
            )
            .is_empty()
        );
        // Overhead by path, for the requests that went upstream only (5 ms each).
        assert_eq!(
            samples(&m, "heimdall_overhead_seconds{path=translated}"),
            [0.005; 2]
        );
        assert_eq!(
            samples(&m, "heimdall_overhead_seconds{path=pass_through}"),
            [0.005; 3]
        );
        assert_eq!(count(&m, "bifrost_cache_hits_total{}"), 0);
    }

    #[test]
    fn models_beyond_the_cap_fold_into_other() {
        let recorder = DebuggingRecorder::new();
        let m = snapshot(&recorder, || {
            let sink = MetricsSink::with_max_series(2);
            for model in ["m1", "m2", "m3", "m4", "m1"] {
                sink.record(&record(Some("openai"), model, Outcome::Success, 1));
            }
            sink.record(&record(Some("anthropic"), "m5", Outcome::Success, 1));
        });
        let successes: BTreeMap<_, _> = m
            .iter()
            .filter(|(k, _)| k.starts_with("bifrost_success_requests_total"))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        assert_eq!(
            successes,
            BTreeMap::from([
                (
                    "bifrost_success_requests_total{model=_other,provider=anthropic}",
                    &DebugValue::Counter(1)
                ),
                (
                    "bifrost_success_requests_total{model=_other,provider=openai}",
                    &DebugValue::Counter(2)
                ),
                (
                    "bifrost_success_requests_total{model=m1,provider=openai}",
                    &DebugValue::Counter(2)
                ),
                (
                    "bifrost_success_requests_total{model=m2,provider=openai}",
                    &DebugValue::Counter(1)
                ),
            ])
        );
    }

    #[test]
    fn error_types_follow_the_documented_map() {
        let failed = |kind: ErrorType| Outcome::Failed {
            status: kind.status(),
            kind,
        };
        let cases = [
            (Outcome::Success, true, None),
            (Outcome::Cancelled, false, Some("bifrost_dropped")),
            (
                failed(ErrorType::NotFoundError),
                true,
                Some("caller_invalid_request"),
            ),
            (
                failed(ErrorType::AuthenticationError),
                false,
                Some("caller_auth"),
            ),
            (
                failed(ErrorType::AuthenticationError),
                true,
                Some("provider_error"),
            ),
            (
                failed(ErrorType::BillingError),
                false,
                Some("policy_budget_exceeded"),
            ),
            (
                failed(ErrorType::RateLimitError),
                false,
                Some("policy_rate_limited"),
            ),
            (
                failed(ErrorType::OverloadedError),
                true,
                Some("provider_overloaded"),
            ),
            (
                failed(ErrorType::TimeoutError),
                false,
                Some("provider_timeout"),
            ),
            (failed(ErrorType::ApiError), false, Some("bifrost_internal")),
            (failed(ErrorType::ApiError), true, Some("provider_error")),
            (failed(ErrorType::ConflictError), true, Some("_OTHER")),
            (
                Outcome::StreamError {
                    kind: ErrorType::OverloadedError,
                },
                true,
                Some("provider_overloaded"),
            ),
        ];
        for (outcome, called, want) in cases {
            assert_eq!(
                error_type(outcome, called),
                want,
                "{outcome:?} called={called}"
            );
        }
    }
}
