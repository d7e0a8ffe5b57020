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
    /// Errors keep the upstream's own body for the client.
    pub pass_through: bool,
}

/// A 2xx response, the key that produced it (needed to scrub later stream errors) and the
/// attempt's deadline (a non-streaming body must be read before it).
pub(crate) struct Answer<'a> {
    pub response: UpstreamResponse,
    pub key: &'a KeyConfig,
    pub deadline: Instant,
}

/// Sends `call`, retrying retryable failures up to `max_retries` times with exponential
/// backoff and jitter, or after the upstream's `retry-after` when it asks for longer (up to
/// the configured maximum backoff). Failures tied to a key (401/402/403/429) move on to
/// another key when there is one, at once.
pub(crate) async fn send<'a>(
    client: &UpstreamClient,
    call: Call<'a>,
) -> Result<Answer<'a>, GatewayError> {
    let p = call.provider;
    if let Some(name) = call.pinned_key
        && !p.keys.iter().any(|k| k.name == name)
    {
        return Err(GatewayError::invalid_request(format!(
            "x-bf-api-key: provider `{}` has no key named `{name}`",
            p.name
        )));
    }
    let mut candidates: Vec<&KeyConfig> = p
        .keys
        .iter()
        .filter(|k| call.pinned_key.is_none_or(|name| k.name == name))
        .filter(|k| call.model.is_none_or(|m| k.models.allows(m)))
        .collect();
    if candidates.is_empty() {
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
    let model = call.model.unwrap_or_default();
    let mut attempt = 0u32;
    let mut stale_retried = false;
    loop {
        let key = pick_weighted(&candidates);
        let deadline = Instant::now() + p.request_timeout;
        let err = match try_once(client, &call, model, key, deadline).await {
            Ok(response) => {
                return Ok(Answer {
                    response,
                    key,
                    deadline,
                });
            }
            Err(err) => err,
        };
        let to_gateway = |err: &ProviderError| {
            let dialect = call.pass_through.then(|| p.provider.dialect(model).id());
            GatewayError::from_provider(err, key.value.expose(), dialect)
        };
        if matches!(err, ProviderError::Stale { .. }) && !stale_retried {
            // The pooled connection died under us before any answer: the request did not
            // reach the upstream, so it is sent again at once, retries configured or not.
            stale_retried = true;
            tracing::debug!(provider = %p.name, error = %err, "reused connection was closed; sending again");
            continue;
        }
        if attempt >= p.max_retries || !(err.is_retryable() || err.is_key_specific()) {
            return Err(to_gateway(&err));
        }
        attempt += 1;
        let other_key = err.is_key_specific() && candidates.len() > 1;
        if other_key {
            candidates.retain(|k| !std::ptr::eq(*k, key));
        }
        let wait = if other_key {
            // Another key is not limited by this key's rate limit or credentials.
            Duration::ZERO
        } else if matches!(
            err,
            ProviderError::Status {
                status: 401..=403,
                ..
            }
        ) {
            Duration::ZERO
        } else {
            let asked = retry_after(&err);
            if asked.is_some_and(|a| a > p.retry_backoff_max) {
                // Waiting longer than the configured maximum would hold the client past what
                // the operator allowed; the upstream's answer goes back as it is.
                return Err(to_gateway(&err));
            }
            asked.unwrap_or_default().max(backoff(p, attempt))
        };
        tracing::warn!(provider = %p.name, key = %key.name, attempt, wait_ms = wait.as_millis() as u64, error = %err, "upstream attempt failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

async fn try_once(
    client: &UpstreamClient,
    call: &Call<'_>,
    model: &str,
    key: &KeyConfig,
    deadline: Instant,
) -> Result<UpstreamResponse, ProviderError> {
    let p = call.provider;
    let credential = Credential {
        index: key.index,
        value: key.value.expose(),
    };
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
    client
        .send(
            request,
            &p.name,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
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

/// Weighted random choice; all-zero weights fall back to a uniform choice.
fn pick_weighted<'a>(keys: &[&'a KeyConfig]) -> &'a KeyConfig {
    let total: f64 = keys.iter().map(|k| k.weight).sum();
    let mut rng = rand::rng();
    if total > 0.0 {
        let mut point = rng.random_range(0.0..total);
        for k in keys {
            if point < k.weight {
                return k;
            }
            point -= k.weight;
        }
    }
    keys[rng.random_range(0..keys.len())]
}

/// min(initial × 2^(n−1), max) × a jitter of 0.8–1.2.
fn backoff(p: &ProviderConfig, attempt: u32) -> Duration {
    let base = p
        .retry_backoff_initial
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(p.retry_backoff_max);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Reads a non-streaming 2xx body before the attempt's deadline: the configured request
/// timeout bounds the whole exchange, not each phase.
pub(crate) async fn read_body(
    answer: Answer<'_>,
    provider: &ProviderConfig,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout_at(answer.deadline, answer.response.bytes()).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(GatewayError::from_provider(
            &e,
            answer.key.value.expose(),
            None,
        )),
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
        KeyConfig {
            name: name.into(),
            index: 0,
            value: Secret::new("k"),
            models: ModelFilter::All,
            weight,
        }
    }

    #[test]
    fn weights_steer_the_choice() {
        let (a, b) = (key("a", 3.0), key("b", 1.0));
        let keys = [&a, &b];
        let n = 4000;
        let picked_a = (0..n).filter(|_| pick_weighted(&keys).name == "a").count();
        // Expect 75 %; the bound is loose enough never to flake.
        assert!((2700..3300).contains(&picked_a), "{picked_a}");
        let z = key("z", 0.0);
        assert_eq!(pick_weighted(&[&z]).name, "z");
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
