//! Key choice and retries: one upstream call, tried as the provider's network settings allow.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use heimdall_providers::betas::{BetaPlatform, filter_betas};
use heimdall_providers::{Credential, Operation, ProviderError, UpstreamClient, UpstreamResponse};
use http::{HeaderMap, HeaderValue};
use rand::Rng;
use tokio::time::Instant;

use crate::config::{KeyConfig, ProviderConfig};
use crate::error::GatewayError;
use crate::headers::ANTHROPIC_BETA;
use crate::health::{now_ms, report};
use crate::limits::Slot;
use heimdall_protocol::error::ErrorType;

/// What to send; the key is chosen per attempt.
pub(crate) struct Call<'a> {
    pub provider: &'a ProviderConfig,
    /// The upstream model, which narrows the keys to those allowed to serve it; `None` for
    /// calls not tied to a model (listing models), where every key may be used.
    pub model: Option<&'a str>,
    pub operation: Operation,
    pub stream: bool,
    pub body: Option<Bytes>,
    /// Client headers the provider may forward.
    pub forward_headers: &'a HeaderMap,
    /// `x-bf-api-key`: only the key of this name may serve the call.
    pub pinned_key: Option<&'a str>,
    /// The keys (by name) the policy lets this request use; `None`: any.
    pub allowed_keys: Option<&'a [String]>,
    /// The client's own key (`client.allow_direct_keys`), used instead of the configured ones.
    pub direct_key: Option<&'a str>,
    /// The key to try first while it is healthy (session affinity).
    pub preferred_key: Option<&'a str>,
    /// Errors keep the upstream's own body for the client.
    pub pass_through: bool,
    /// `client.drop_excess_requests`.
    pub drop_excess: bool,
    /// Another model follows in the fallback chain: when every key's circuit is open, failing
    /// over at once beats waiting on a provider known to be failing.
    pub has_fallback: bool,
}

/// The key an attempt used.
#[derive(Clone, Copy)]
pub(crate) enum UsedKey<'a> {
    Configured(&'a KeyConfig),
    /// A client's own key; `index` is a configured key's, whose settings (an Azure endpoint,
    /// say) it borrows.
    Direct {
        value: &'a str,
        index: usize,
    },
}

/// The name `x-bf-key-name` and the records show for a client's own key.
pub(crate) const DIRECT_KEY_NAME: &str = "direct";

impl<'a> UsedKey<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Self::Configured(k) => &k.name,
            Self::Direct { .. } => DIRECT_KEY_NAME,
        }
    }

    pub fn secret(&self) -> &'a str {
        match self {
            Self::Configured(k) => k.value.expose(),
            Self::Direct { value, .. } => value,
        }
    }

    fn credential(&self) -> Credential<'a> {
        match self {
            Self::Configured(k) => Credential {
                index: k.index,
                value: k.value.expose(),
            },
            Self::Direct { value, index } => Credential {
                index: *index,
                value,
            },
        }
    }
}

/// A 2xx response, the key that produced it (needed to scrub later stream errors), the
/// attempt's start and deadline (a non-streaming body must be read before it) and the
/// provider slot the call holds until its answer is read or its stream ends.
pub(crate) struct Answer<'a> {
    pub response: UpstreamResponse,
    pub key: UsedKey<'a>,
    pub started: Instant,
    pub deadline: Instant,
    pub slot: Option<Slot>,
}

/// Counts a call's upstream requests and hears of each one that failed. A plain count for
/// calls that leave no record; the exchange's tally also keeps the failures in its record.
pub(crate) trait Tally {
    /// An upstream request is being sent.
    fn sent(&mut self);

    /// The request just sent with `key` failed with `err` after `elapsed`.
    fn failed(
        &mut self,
        _call: &Call<'_>,
        _key: UsedKey<'_>,
        _err: &ProviderError,
        _elapsed: Duration,
    ) {
    }
}

impl Tally for u32 {
    fn sent(&mut self) {
        *self += 1;
    }
}

/// Sends `call`, counting each upstream request in `tries`.
///
/// - A key whose circuit is open is skipped (one request probes it after its cool-down) while
///   another key or a fallback model can answer instead.
/// - 401/402/403: the key is rejected for this request and another one tried at once; when
///   several keys were all rejected so, the answer is a 502 that says so (one key's rejection,
///   and a client's own key's, goes back as the upstream sent it).
/// - 429: another key at once when there is one; otherwise a retry after the upstream's
///   `retry-after` when it is within `retry_backoff_max` (else its answer goes back).
/// - 5xx, timeouts and network failures: up to `max_retries` retries, after an exponential
///   backoff with full jitter.
/// - Anything else (the client's own mistakes: 400, 404, 413, 422) is answered at once.
pub(crate) async fn send<'a>(
    client: &UpstreamClient,
    call: Call<'a>,
    tries: &mut impl Tally,
) -> Result<Answer<'a>, GatewayError> {
    let p = call.provider;
    let model = call.model.unwrap_or_default();
    if let Some(name) = call.pinned_key
        && !p.keys.iter().any(|k| k.name == name)
    {
        return Err(GatewayError::invalid_request(format!(
            "x-bf-api-key: provider `{}` has no key named `{name}`",
            p.name
        )));
    }
    let policy_allows = |k: &KeyConfig| {
        call.allowed_keys
            .is_none_or(|names| names.contains(&k.name))
    };
    if call.direct_key.is_none() && !p.keys.iter().any(policy_allows) {
        return Err(GatewayError::new(
            ErrorType::PermissionError,
            format!(
                "this virtual key may not use any configured {} key (provider_configs.key_ids)",
                p.name
            ),
        ));
    }
    let allowed = |k: &KeyConfig| {
        call.pinned_key.is_none_or(|name| k.name == name)
            && call.model.is_none_or(|m| k.models.allows(m))
            && policy_allows(k)
    };
    if let Some(value) = call.direct_key {
        // The client's key replaces the pool; a configured key's settings still apply.
        let index = p
            .keys
            .iter()
            .find(|k| call.model.is_none_or(|m| k.models.allows(m)))
            .map_or(usize::MAX, |k| k.index);
        let key = UsedKey::Direct { value, index };
        return send_with_key(client, &call, key, tries).await;
    }
    if !p.keys.iter().any(allowed) {
        let what = call
            .model
            .map_or_else(String::new, |m| format!(" for model `{m}`"));
        let which = call.pinned_key.map_or_else(String::new, |name| {
            format!(" named `{name}` (x-bf-api-key)")
        });
        return Err(GatewayError::invalid_request(format!(
            "no {} key{which} is configured{what}",
            p.name
        )));
    }
    // Positions in `p.keys` of keys this request has given up on; allocated on first failure.
    let mut excluded: Vec<usize> = Vec::new();
    let mut rejected = 0usize;
    let mut retries = 0u32;
    let mut stale_retried = false;
    let mut preferred = call.preferred_key;
    let mut last: Option<GatewayError> = None;
    loop {
        let eligible = |i: usize, k: &KeyConfig| allowed(k) && !excluded.contains(&i);
        let Some(i) =
            choose(p, &eligible, preferred.take(), call.pinned_key.is_some()).or_else(|| {
                // Every circuit is open and nothing else can answer: the keys are tried
                // anyway rather than the provider refused for a cool-down.
                (!call.has_fallback)
                    .then(|| pick_weighted(&p.keys, &eligible))
                    .flatten()
            })
        else {
            return Err(last.unwrap_or_else(|| all_keys_open(p, model)));
        };
        let key = &p.keys[i];
        let err = match call_once(client, &call, UsedKey::Configured(key), tries).await? {
            Ok(answer) => {
                let closed = key.health.success();
                report(closed, &p.name, &key.name, &key.health, &p.circuit, &"");
                return Ok(answer);
            }
            Err(err) => err,
        };
        if matches!(err, ProviderError::Stale { .. }) && !stale_retried {
            // The pooled connection died under us before any answer: the request did not
            // reach the upstream, so it is sent again at once, retries configured or not.
            stale_retried = true;
            tracing::debug!(provider = %p.name, error = %err, "reused connection was closed; sending again");
            continue;
        }
        if err.is_retryable() || is_credential_failure(&err) {
            let opened = key.health.failure(now_ms(), &p.circuit);
            report(opened, &p.name, &key.name, &key.health, &p.circuit, &err);
        }
        let gateway_err = to_gateway(&call, &err, key.value.expose());
        let others = p
            .keys
            .iter()
            .enumerate()
            .any(|(j, k)| j != i && eligible(j, k));
        if is_credential_failure(&err) {
            excluded.push(i);
            rejected += 1;
            tracing::warn!(provider = %p.name, key = %key.name, error = %err, "key rejected by the upstream; trying another");
            if others {
                last = Some(gateway_err);
                continue;
            }
            // One key's rejection goes back as the upstream worded it; several keys all
            // rejected is the gateway's configuration problem, not the client's.
            if rejected > 1 && rejected == excluded.len() {
                return Err(GatewayError::bad_gateway(format!(
                    "every {} key that may serve this request was rejected by the upstream for its credentials (HTTP 401/403); check the keys in the gateway's configuration",
                    p.name
                )));
            }
            return Err(gateway_err);
        }
        if is_rate_limited(&err) && others {
            excluded.push(i);
            tracing::warn!(provider = %p.name, key = %key.name, "key rate-limited (429); trying another");
            last = Some(gateway_err);
            continue;
        }
        let Some(wait) = retry_wait(p, &err, retries) else {
            return Err(gateway_err);
        };
        retries += 1;
        tracing::warn!(provider = %p.name, key = %key.name, attempt = retries, wait_ms = wait.as_millis() as u64, error = %err, "upstream attempt failed; retrying");
        last = Some(gateway_err);
        tokio::time::sleep(wait).await;
    }
}

/// One client key, retried as the network settings allow; its rejection is the upstream's
/// answer to the client, as it came.
async fn send_with_key<'a>(
    client: &UpstreamClient,
    call: &Call<'a>,
    key: UsedKey<'a>,
    tries: &mut impl Tally,
) -> Result<Answer<'a>, GatewayError> {
    let p = call.provider;
    let mut retries = 0u32;
    let mut stale_retried = false;
    loop {
        let err = match call_once(client, call, key, tries).await? {
            Ok(answer) => return Ok(answer),
            Err(err) => err,
        };
        if matches!(err, ProviderError::Stale { .. }) && !stale_retried {
            stale_retried = true;
            continue;
        }
        let Some(wait) = retry_wait(p, &err, retries).filter(|_| !is_credential_failure(&err))
        else {
            return Err(to_gateway(call, &err, key.secret()));
        };
        retries += 1;
        tracing::warn!(provider = %p.name, key = DIRECT_KEY_NAME, attempt = retries, wait_ms = wait.as_millis() as u64, error = %err, "upstream attempt failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// One upstream request with `key`: a provider slot, a fresh deadline, the call. The outer
/// error is the slot's (none free); the inner one the upstream's, told to `tries` here, the
/// one place every upstream request passes. A failed call's slot is given back at once.
async fn call_once<'a>(
    client: &UpstreamClient,
    call: &Call<'a>,
    key: UsedKey<'a>,
    tries: &mut impl Tally,
) -> Result<Result<Answer<'a>, ProviderError>, GatewayError> {
    let started = Instant::now();
    let deadline = started + call.provider.request_timeout;
    let slot = acquire(call, deadline).await?;
    tries.sent();
    let model = call.model.unwrap_or_default();
    match try_once(client, call, model, key, deadline).await {
        Ok(response) => Ok(Ok(Answer {
            response,
            key,
            started,
            deadline,
            slot,
        })),
        Err(err) => {
            tries.failed(call, key, &err, started.elapsed());
            Ok(Err(err))
        }
    }
}

fn to_gateway(call: &Call<'_>, err: &ProviderError, secret: &str) -> GatewayError {
    let p = call.provider;
    let dialect = call
        .pass_through
        .then(|| p.provider.dialect(call.model.unwrap_or_default()).id());
    GatewayError::from_provider(err, secret, dialect)
}

/// A slot of the provider's `concurrency_and_buffer_size`, if it has one.
async fn acquire(call: &Call<'_>, deadline: Instant) -> Result<Option<Slot>, GatewayError> {
    match &call.provider.limiter {
        None => Ok(None),
        Some(limiter) => limiter
            .acquire(&call.provider.name, call.drop_excess, deadline)
            .await
            .map(Some),
    }
}

/// How long to wait before retrying after `err`, or `None` when it must not be retried: not
/// retryable, retries used up, or an upstream asking for a longer wait than
/// `retry_backoff_max` (its answer then goes back, `retry-after` included).
fn retry_wait(p: &ProviderConfig, err: &ProviderError, retries: u32) -> Option<Duration> {
    if !err.is_retryable() || retries >= p.max_retries {
        return None;
    }
    let asked = retry_after(err);
    if asked.is_some_and(|a| a > p.retry_backoff_max) {
        return None;
    }
    Some(asked.unwrap_or_default().max(backoff(p, retries + 1)))
}

fn is_credential_failure(err: &ProviderError) -> bool {
    matches!(
        err,
        ProviderError::Status {
            status: 401..=403,
            ..
        } | ProviderError::InvalidKey { .. }
    )
}

fn is_rate_limited(err: &ProviderError) -> bool {
    matches!(err, ProviderError::Status { status: 429, .. })
}

/// A key for the next attempt without allocating: the preferred key while it is healthy, else
/// the probe of a key whose cool-down is over (claimed by this request only; without it an
/// open key beside healthy ones would never be tried again), else a weighted choice among the
/// eligible keys whose circuit is closed. A pinned key is used whatever its circuit says.
fn choose(
    p: &ProviderConfig,
    eligible: &dyn Fn(usize, &KeyConfig) -> bool,
    preferred: Option<&str>,
    pinned: bool,
) -> Option<usize> {
    let usable = |i: usize, k: &KeyConfig| eligible(i, k) && (pinned || k.health.is_closed());
    if let Some(name) = preferred
        && let Some(i) = p
            .keys
            .iter()
            .enumerate()
            .position(|(i, k)| k.name == name && usable(i, k))
    {
        return Some(i);
    }
    // The clock is read only when some key's circuit is open.
    let probe = p.keys.iter().enumerate().position(|(i, k)| {
        !k.health.is_closed() && eligible(i, k) && {
            let now = now_ms();
            k.health.claim_probe(now, &p.circuit)
        }
    });
    probe.or_else(|| pick_weighted(&p.keys, &usable))
}

fn all_keys_open(p: &ProviderConfig, model: &str) -> GatewayError {
    GatewayError::new(
        ErrorType::OverloadedError,
        format!(
            "every {} key that may serve `{model}` is paused after repeated failures (circuit open for up to {} s)",
            p.name,
            p.circuit.cooldown.as_secs()
        ),
    )
    .with_status(503)
}

async fn try_once(
    client: &UpstreamClient,
    call: &Call<'_>,
    model: &str,
    key: UsedKey<'_>,
    deadline: Instant,
) -> Result<UpstreamResponse, ProviderError> {
    let p = call.provider;
    let credential = key.credential();
    let client_headers = with_betas_for(p, model, call.forward_headers);
    let mut request = p.provider.prepare(
        call.operation,
        model,
        call.stream,
        call.body.clone(),
        &client_headers,
        &credential,
    )?;
    // Forwarded client headers mean the same to every upstream, except `anthropic-*` ones,
    // which only a Claude provider knows where to put; a header the provider set wins.
    for name in client_headers.keys() {
        if !name.as_str().starts_with("anthropic-") && !request.headers.contains_key(name) {
            for value in client_headers.get_all(name) {
                request.headers.append(name.clone(), value.clone());
            }
        }
    }
    for (name, value) in &p.extra_headers {
        request.headers.insert(name.clone(), value.clone());
    }
    p.provider.authorize(&mut request, &credential).await?;
    let mut response = client
        .send(
            request,
            &p.name,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
    if call.stream {
        // Until the first byte reaches the client the call may still be retried or fail
        // over, so its failure is found here, within the same deadline.
        response
            .first_bytes(
                deadline.saturating_duration_since(Instant::now()),
                p.request_timeout.as_secs(),
            )
            .await?;
    }
    Ok(response)
}

/// The client's forwarded headers with `anthropic-beta` cut down to what `model`'s platform
/// takes (see `heimdall_providers::betas`); borrowed when there is nothing to cut.
fn with_betas_for<'h>(
    p: &ProviderConfig,
    model: &str,
    headers: &'h HeaderMap,
) -> Cow<'h, HeaderMap> {
    if !headers.contains_key(ANTHROPIC_BETA) {
        return Cow::Borrowed(headers);
    }
    let platform = p.provider.beta_platform(model);
    if platform == BetaPlatform::Anthropic && p.beta_overrides.is_empty() {
        return Cow::Borrowed(headers);
    }
    let betas = filter_betas(headers.get_all(ANTHROPIC_BETA), platform, &p.beta_overrides);
    let joined = HeaderValue::from_str(&betas.join(","));
    let mut out = headers.clone();
    out.remove(ANTHROPIC_BETA);
    if let (false, Ok(value)) = (betas.is_empty(), joined) {
        out.insert(ANTHROPIC_BETA, value);
    }
    Cow::Owned(out)
}

/// The upstream's `retry-after` (seconds) or `retry-after-ms`, when it sent one.
fn retry_after(err: &ProviderError) -> Option<Duration> {
    let ProviderError::Status { headers, .. } = err else {
        return None;
    };
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))
        .map(|s| Duration::from_secs_f64(s.min(1e6)))
}

/// Weighted random choice among the keys `usable` accepts, in two passes without
/// allocating; all-zero weights fall back to a uniform choice.
fn pick_weighted(keys: &[KeyConfig], usable: &dyn Fn(usize, &KeyConfig) -> bool) -> Option<usize> {
    let (mut total, mut count, mut only) = (0.0, 0usize, 0usize);
    for (i, k) in keys.iter().enumerate() {
        if usable(i, k) {
            total += k.weight;
            count += 1;
            only = i;
        }
    }
    match count {
        0 => return None,
        // One key (the common case): no random draw.
        1 => return Some(only),
        _ => {}
    }
    let mut rng = rand::rng();
    let candidates = keys.iter().enumerate().filter(|(i, k)| usable(*i, k));
    if total > 0.0 {
        let mut point = rng.random_range(0.0..total);
        let mut last = None;
        for (i, k) in candidates {
            if k.weight > 0.0 {
                last = Some(i);
                if point < k.weight {
                    return Some(i);
                }
                point -= k.weight;
            }
        }
        // Rounding left the point past the end: the last weighted key.
        return last;
    }
    candidates.map(|(i, _)| i).nth(rng.random_range(0..count))
}

/// Full jitter: uniform between `retry_backoff_initial` and min(initial × 2^n,
/// `retry_backoff_max`) for the n-th retry.
fn backoff(p: &ProviderConfig, retry: u32) -> Duration {
    let low = p.retry_backoff_initial.min(p.retry_backoff_max);
    let high = p
        .retry_backoff_initial
        .saturating_mul(1u32 << retry.min(16))
        .min(p.retry_backoff_max);
    if high <= low {
        return low;
    }
    rand::rng().random_range(low..=high)
}

/// Reads a non-streaming 2xx body before the attempt's deadline: the configured request
/// timeout bounds the whole exchange, not each phase.
pub(crate) async fn read_body(
    answer: Answer<'_>,
    provider: &ProviderConfig,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout_at(answer.deadline, answer.response.bytes()).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(GatewayError::from_provider(&e, answer.key.secret(), None)),
        Err(_) => Err(GatewayError::from_provider(
            &ProviderError::Timeout {
                provider: provider.name.clone(),
                seconds: provider.request_timeout.as_secs(),
            },
            "",
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelFilter, Secret};

    fn key(name: &str, weight: f64) -> KeyConfig {
        KeyConfig::new(name.into(), 0, Secret::new("k"), ModelFilter::All, weight)
    }

    #[test]
    fn weights_steer_the_choice() {
        let keys = [key("a", 3.0), key("b", 1.0), key("zero", 0.0)];
        let all = |_: usize, _: &KeyConfig| true;
        let n = 20_000;
        let mut picked = [0usize; 3];
        for _ in 0..n {
            picked[pick_weighted(&keys, &all).unwrap()] += 1;
        }
        // Expect 75 % / 25 % / 0: ±306 is five standard deviations of a binomial with
        // n = 20,000 and p = 0.75 (σ ≈ 61), so the test fails for a wrong weighting, never by
        // chance (p < 10⁻⁶).
        assert!((14_694..=15_306).contains(&picked[0]), "{picked:?}");
        assert!((4_694..=5_306).contains(&picked[1]), "{picked:?}");
        assert_eq!(
            picked[2], 0,
            "a zero weight is never chosen beside weighted keys"
        );
        // Only zero weights: a uniform choice.
        let zeros = [key("x", 0.0), key("y", 0.0)];
        let x = (0..2000)
            .filter(|_| pick_weighted(&zeros, &all) == Some(0))
            .count();
        assert!((800..=1200).contains(&x), "{x}");
        assert_eq!(pick_weighted(&keys, &|_, _| false), None);
    }

    #[test]
    fn open_circuits_are_skipped_until_their_probe() {
        let mut p = crate::config::Config::from_json(
            r#"{"providers":{"openai":{"keys":[{"name":"a","value":"ka"},{"name":"b","value":"kb"}],
                "circuit_breaker":{"failure_threshold":1,"cooldown_seconds":1}}}}"#,
            &|_| None,
        )
        .unwrap()
        .providers
        .remove(0);
        p.circuit.cooldown = Duration::from_millis(100);
        let all = |_: usize, _: &KeyConfig| true;
        p.keys[0].health.failure(now_ms(), &p.circuit);
        for _ in 0..200 {
            assert_eq!(choose(&p, &all, None, false), Some(1));
        }
        // Preferred (session affinity) only while healthy; a pinned key whatever its state.
        assert_eq!(choose(&p, &all, Some("a"), false), Some(1));
        let only_a = |i: usize, _: &KeyConfig| i == 0;
        assert_eq!(choose(&p, &only_a, None, true), Some(0));
        assert_eq!(choose(&p, &only_a, None, false), None, "open, no probe yet");
        std::thread::sleep(Duration::from_millis(120));
        // The probe goes to the open key even while another key is healthy, once.
        assert_eq!(choose(&p, &all, None, false), Some(0), "the probe");
        assert_eq!(choose(&p, &all, None, false), Some(1));
        assert_eq!(choose(&p, &only_a, None, false), None, "one probe only");
    }

    #[test]
    fn reads_retry_after() {
        let status = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.insert(*k, http::HeaderValue::from_static(v));
            }
            ProviderError::Status {
                provider: "p".into(),
                status: 429,
                headers: Box::new(headers),
                body: Bytes::new(),
            }
        };
        assert_eq!(
            retry_after(&status(&[("retry-after", "30")])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&status(&[
                ("retry-after", "30"),
                ("retry-after-ms", "1500")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&status(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            None
        );
        assert_eq!(retry_after(&status(&[])), None);
    }
}
