//! Governance: virtual keys, budgets and rate limits, as the exchange's [`Policy`].
//!
//! Admission looks the request's virtual key up in the [`Catalog`] (memory only), checks
//! that it may use the provider and model, and reserves on every budget and rate limit that
//! applies, customer to provider config, in one [`Ledger`] step: in memory, or one Redis
//! round trip shared by every instance. Settlement replaces the reservation with what the
//! request cost, whatever its outcome. Refusals are answered in the front door's shape:
//! 401 `authentication_error` (no key where one is required, unknown key), 403
//! `permission_error` (inactive or expired key, provider or model not allowed), 402
//! `billing_error` (budget spent), 429 `rate_limit_error` with `retry-after` (rate limit).

pub mod catalog;
pub mod ledger;
pub mod redis;
pub mod window;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use heimdall_core::config::{FailMode, GovernanceConfig};
use heimdall_core::{Admission, GatewayError, Plan, Policy, RequestContext, RequestRecord};
use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;
use http::HeaderValue;
use rand::Rng;

pub use self::redis::RedisLedger;
pub use catalog::{Catalog, KeyRules, Level, Limit, Measure, ProviderRules};
use ledger::{Draw, Hold, Reservation, Settlement};
pub use ledger::{Ledger, LedgerError, MemoryLedger, Reading};

/// Milliseconds since the epoch; a test's clock can be moved by hand.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// What admission works from; replaced whole when the entities or settings change.
struct Rules {
    catalog: Catalog,
    enforce_auth: bool,
}

pub struct Governance {
    rules: ArcSwap<Rules>,
    ledger: Arc<dyn Ledger>,
    on_failure: FailMode,
    clock: Clock,
}

/// What admission reserved, for settlement.
struct Held {
    key: Arc<KeyRules>,
    /// Index of the provider config among the key's, when it has its own limits.
    provider: Option<usize>,
    holds: Vec<Hold>,
    /// The model has a price; without one, dollars cannot be counted.
    priced: bool,
}

impl Governance {
    pub fn new(
        catalog: Catalog,
        enforce_auth: bool,
        ledger: Arc<dyn Ledger>,
        on_failure: FailMode,
        clock: Clock,
    ) -> Self {
        Self {
            rules: ArcSwap::from_pointee(Rules {
                catalog,
                enforce_auth,
            }),
            ledger,
            on_failure,
            clock,
        }
    }

    /// Replaces the entities (admin API, reload, another instance's change); requests
    /// admitted before settle against the rules they were admitted under.
    pub fn replace(&self, catalog: Catalog, enforce_auth: bool) {
        self.rules.store(Arc::new(Rules {
            catalog,
            enforce_auth,
        }));
    }

    pub fn entities(&self) -> GovernanceConfig {
        self.rules.load().catalog.entities.clone()
    }

    /// Usage of every budget and rate limit of virtual key `id`, or `None` when there is no
    /// such key.
    pub async fn usage(&self, id: &str) -> Option<Result<Vec<LimitUsage>, LedgerError>> {
        let key = Arc::clone(self.rules.load().catalog.key_by_id(id)?);
        let limits: Vec<&Limit> = key
            .limits
            .iter()
            .chain(key.providers.iter().flatten().flat_map(|p| &p.limits))
            .collect();
        let now = (self.clock)();
        let counters: Vec<_> = limits
            .iter()
            .map(|l| (Arc::clone(&l.key), l.window.span(now)))
            .collect();
        Some(self.ledger.read(now, &counters).await.map(|readings| {
            limits
                .iter()
                .zip(readings)
                .map(|(l, r)| LimitUsage::new(l, r, now))
                .collect()
        }))
    }

    fn draws(
        &self,
        ctx: &RequestContext,
        plan: &Plan<'_>,
        key: &KeyRules,
        provider: Option<&ProviderRules>,
        now: i64,
    ) -> (Vec<Draw>, bool) {
        let input = (plan.body_bytes / heimdall_core::BYTES_PER_TOKEN) as u64;
        let output = plan.max_tokens.unwrap_or(0);
        let estimate = ctx.config.pricing.cost(
            plan.provider,
            plan.model,
            &Usage {
                input_tokens: input,
                output_tokens: output,
                ..Usage::default()
            },
        );
        let draws = key
            .limits_through(provider)
            .map(|l| Draw {
                key: Arc::clone(&l.key),
                max: l.max,
                span: l.window.span(now),
                amount: match l.measure {
                    Measure::Dollars => estimate.unwrap_or(0.0),
                    Measure::Requests => 1.0,
                    Measure::Tokens => (input + output) as f64,
                },
                whole: l.measure == Measure::Requests,
            })
            .collect();
        (draws, estimate.is_some())
    }

    fn settle_holds(&self, held: Held, actual: impl Fn(&Limit, &Hold) -> f64) {
        let provider = held
            .provider
            .and_then(|i| held.key.providers.as_ref()?.get(i));
        let limits = held.key.limits_through(provider);
        let now = (self.clock)();
        let settlements: Vec<Settlement> = limits
            .zip(held.holds)
            .map(|(l, hold)| Settlement {
                actual: actual(l, &hold).max(0.0),
                span: l.window.span(now),
                hold,
            })
            .collect();
        if settlements.is_empty() {
            return;
        }
        let done = self.ledger.settle(now, settlements);
        let engine = self.ledger.engine();
        let report = move |e: LedgerError| {
            metrics::counter!("heimdall_governance_settle_failures_total").increment(1);
            tracing::error!(engine, error = %e, "governance: a settlement could not be written");
        };
        // In memory the work is done already (no task for it); Redis takes a round trip,
        // which runs detached, off the request.
        let mut done = done;
        match futures_util::FutureExt::now_or_never(&mut done) {
            Some(Ok(())) => {}
            Some(Err(e)) => report(e),
            None => match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        if let Err(e) = done.await {
                            report(e);
                        }
                    });
                }
                Err(_) => report(LedgerError("no runtime to finish the settlement on".into())),
            },
        }
    }
}

/// One counter of a virtual key, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LimitUsage {
    pub level: &'static str,
    /// The customer, team, virtual key or provider config it belongs to.
    pub owner: String,
    pub id: String,
    /// `dollars`, `requests` or `tokens`.
    pub measure: &'static str,
    pub max: f64,
    pub used: f64,
    /// Held by requests in flight.
    pub reserved: f64,
    pub remaining: f64,
    pub reset_duration: String,
    pub calendar_aligned: bool,
    /// Milliseconds since the epoch; absent while the counter was never used.
    pub window_start_ms: Option<i64>,
    pub next_reset_ms: Option<i64>,
}

impl LimitUsage {
    fn new(l: &Limit, r: Reading, now: i64) -> Self {
        let every = l.window.every;
        Self {
            level: l.level.as_str(),
            owner: l.owner.clone(),
            id: l.id.clone(),
            measure: match l.measure {
                Measure::Dollars => "dollars",
                Measure::Requests => "requests",
                Measure::Tokens => "tokens",
            },
            max: l.max,
            used: r.used,
            reserved: r.reserved,
            remaining: (l.max - r.used - r.reserved).max(0.0),
            reset_duration: every.to_string(),
            calendar_aligned: l.window.aligned,
            window_start_ms: r.start_ms,
            next_reset_ms: r.start_ms.map(|s| l.window.end(s)).filter(|e| *e > now),
        }
    }
}

fn refuse(kind: ErrorType, reason: &'static str, message: String) -> GatewayError {
    metrics::counter!("heimdall_governance_refusals_total", "reason" => reason).increment(1);
    GatewayError::new(kind, message)
}

impl Policy for Governance {
    fn provider_for(&self, ctx: &RequestContext, model: &str) -> Option<String> {
        let rules = self.rules.load();
        let key = rules.catalog.key_by_value(ctx.virtual_key.as_deref()?)?;
        let candidates: Vec<&ProviderRules> = key
            .providers
            .as_ref()?
            .iter()
            // Only configs that name the model: `*` says what a key may use, not which
            // provider serves a name (a Claude name would reach OpenAI).
            .filter(|p| p.weight > 0.0 && p.names_model(model))
            .collect();
        let total: f64 = candidates.iter().map(|p| p.weight).sum();
        let mut point = rand::rng().random::<f64>() * total;
        for p in &candidates {
            if point < p.weight {
                return Some(p.provider.clone());
            }
            point -= p.weight;
        }
        candidates.last().map(|p| p.provider.clone())
    }

    fn admit<'a>(
        &'a self,
        ctx: &'a RequestContext,
        plan: Plan<'a>,
    ) -> BoxFuture<'a, Result<Admission, GatewayError>> {
        Box::pin(async move {
            let rules = self.rules.load_full();
            let Some(value) = ctx.virtual_key.as_deref() else {
                if rules.enforce_auth {
                    return Err(refuse(
                        ErrorType::AuthenticationError,
                        "virtual_key_required",
                        "a virtual key is required: send it in `x-bf-vk`, or as the API key \
                         (`x-api-key` or `Authorization: Bearer`, value starting with `sk-bf-`)"
                            .into(),
                    ));
                }
                return Ok(Admission::default());
            };
            // With no virtual key configured, governance is not in use: a key sent anyway
            // only names the caller (async jobs, session affinity), as before.
            if rules.catalog.is_empty() && !rules.enforce_auth {
                return Ok(Admission::default());
            }
            let Some(key) = rules.catalog.key_by_value(value) else {
                return Err(refuse(
                    ErrorType::AuthenticationError,
                    "virtual_key_not_found",
                    "virtual key not found".into(),
                ));
            };
            let key = Arc::clone(key);
            let now = (self.clock)();
            if !key.active {
                return Err(refuse(
                    ErrorType::PermissionError,
                    "virtual_key_blocked",
                    format!("virtual key `{}` is not active", key.name),
                ));
            }
            if key.expires_at.is_some_and(|at| now >= at) {
                return Err(refuse(
                    ErrorType::PermissionError,
                    "virtual_key_expired",
                    format!("virtual key `{}` has expired", key.name),
                ));
            }
            let provider = match &key.providers {
                None => None,
                Some(list) => {
                    let Some(i) = list.iter().position(|p| p.provider == plan.provider) else {
                        return Err(refuse(
                            ErrorType::PermissionError,
                            "provider_blocked",
                            format!(
                                "virtual key `{}` may not use provider `{}`",
                                key.name, plan.provider
                            ),
                        ));
                    };
                    Some(i)
                }
            };
            let rules_of = provider.and_then(|i| key.providers.as_ref()?.get(i));
            if let Some(p) = rules_of
                && !(p.allows_model(plan.upstream_model) || p.allows_model(plan.model))
            {
                return Err(refuse(
                    ErrorType::PermissionError,
                    "model_blocked",
                    format!(
                        "virtual key `{}` may not use model `{}` of provider `{}`",
                        key.name, plan.upstream_model, plan.provider
                    ),
                ));
            }
            let keys = rules_of.and_then(|p| p.keys.clone());
            // Counting tokens costs nothing upstream and is not counted.
            if plan.endpoint == Endpoint::CountTokens {
                return Ok(Admission { keys, hold: None });
            }
            let (draws, priced) = self.draws(ctx, &plan, &key, rules_of, now);
            if draws.is_empty() {
                return Ok(Admission { keys, hold: None });
            }
            if !priced
                && key
                    .limits
                    .iter()
                    .chain(rules_of.iter().flat_map(|p| &p.limits))
                    .any(|l| l.measure == Measure::Dollars)
            {
                metrics::counter!("heimdall_governance_unpriced_requests_total", "provider" => plan.provider.to_owned())
                    .increment(1);
                tracing::warn!(
                    request_id = %ctx.request_id,
                    model = plan.model,
                    "governance: the model has no price, so its cost is not counted against the budgets (set one under `pricing`)"
                );
            }
            match self.ledger.reserve(now, &draws).await {
                Ok(Reservation::Granted(holds)) => Ok(Admission {
                    keys,
                    hold: Some(Box::new(Held {
                        key: Arc::clone(&key),
                        provider,
                        holds,
                        priced,
                    })),
                }),
                Ok(Reservation::Refused { index, start_ms }) => {
                    let limit = key.limits_through(rules_of).nth(index);
                    Err(limit.map_or_else(
                        || GatewayError::internal("governance: refused by an unknown limit"),
                        |l| over_limit(l, start_ms, now),
                    ))
                }
                Err(e) => match self.on_failure {
                    FailMode::Closed => {
                        metrics::counter!("heimdall_governance_ledger_failures_total", "mode" => "closed").increment(1);
                        tracing::error!(engine = self.ledger.engine(), error = %e, "governance: counters unreachable; request refused (redis.on_failure: closed)");
                        Err(GatewayError::new(
                            ErrorType::OverloadedError,
                            "budgets and rate limits cannot be checked right now; try again shortly",
                        )
                        .with_status(503))
                    }
                    FailMode::Open => {
                        metrics::counter!("heimdall_governance_ledger_failures_total", "mode" => "open").increment(1);
                        tracing::warn!(engine = self.ledger.engine(), error = %e, "governance: counters unreachable; request admitted uncounted (redis.on_failure: open)");
                        Ok(Admission { keys, hold: None })
                    }
                },
            }
        })
    }

    fn settle(&self, _ctx: &RequestContext, admission: Admission, record: &RequestRecord) {
        let Some(held) = admission.hold.and_then(|h| h.downcast::<Held>().ok()) else {
            return;
        };
        let u = &record.usage;
        let tokens = u.input_tokens
            + u.output_tokens
            + u.cache_read_input_tokens
            + u.cache_creation_input_tokens;
        let priced = held.priced;
        self.settle_holds(*held, |limit, hold| match limit.measure {
            Measure::Requests => 1.0,
            Measure::Tokens if tokens == 0 && record.attempts > 0 => hold.reserved,
            Measure::Tokens => tokens as f64,
            Measure::Dollars => match record.cost {
                Some(cost) => cost,
                // Sent upstream but its usage never seen (a stream cut short): what was
                // reserved is kept, not forgiven.
                None if priced && record.attempts > 0 => hold.reserved,
                None => 0.0,
            },
        });
    }

    fn release(&self, _ctx: &RequestContext, admission: Admission) {
        if let Some(held) = admission.hold.and_then(|h| h.downcast::<Held>().ok()) {
            self.settle_holds(*held, |_, _| 0.0);
        }
    }
}

/// The refusal for `limit`, whose window began at `start_ms`.
fn over_limit(limit: &Limit, start_ms: i64, now: i64) -> GatewayError {
    let reset_in_s = (limit.window.end(start_ms) - now).max(0).div_euclid(1000) + 1;
    let whose = format!(
        "{} `{}`",
        limit.level.as_str().replace('_', " "),
        limit.owner
    );
    match limit.measure {
        Measure::Dollars => refuse(
            ErrorType::BillingError,
            "budget_exceeded",
            format!(
                "budget `{}` of {whose} is spent (${:.2} per {}); it resets in {reset_in_s} s",
                limit.id, limit.max, limit.window.every
            ),
        ),
        Measure::Requests | Measure::Tokens => {
            let what = if limit.measure == Measure::Requests {
                "requests"
            } else {
                "tokens"
            };
            let mut e = refuse(
                ErrorType::RateLimitError,
                if limit.measure == Measure::Requests {
                    "request_limited"
                } else {
                    "token_limited"
                },
                format!(
                    "rate limit `{}` of {whose} reached: {} {what} per {}; try again in {reset_in_s} s",
                    limit.id, limit.max, limit.window.every
                ),
            );
            e.retry_after = HeaderValue::from_str(&reset_in_s.to_string()).ok();
            e
        }
    }
}
