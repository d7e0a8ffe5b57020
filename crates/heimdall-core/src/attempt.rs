//! Key choice and retries: one upstream call, tried as the provider's network settings allow.

use std::time::Duration;

use heimdall_providers::{ProviderError, UpstreamClient, UpstreamRequest, UpstreamResponse};
use rand::Rng;

use crate::config::{KeyConfig, ProviderConfig};
use crate::error::GatewayError;

/// What to send; the key is chosen per attempt.
pub(crate) struct Call<'a> {
    pub provider: &'a ProviderConfig,
    /// The upstream model, which narrows the keys to those allowed to serve it; `None` for
    /// calls not tied to a model (listing models), where every key may be used.
    pub model: Option<&'a str>,
    pub operation: heimdall_providers::Operation,
    pub headers: http::HeaderMap,
    pub body: Option<bytes::Bytes>,
}

impl<'a> Call<'a> {
    pub fn new(
        provider: &'a ProviderConfig,
        model: Option<&'a str>,
        operation: heimdall_providers::Operation,
        headers: http::HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Self {
        Self {
            provider,
            model,
            operation,
            headers,
            body,
        }
    }
}

/// A 2xx response and the key that produced it (needed to scrub later stream errors).
pub(crate) struct Answer<'a> {
    pub response: UpstreamResponse,
    pub key: &'a KeyConfig,
}

/// Sends `call`, retrying retryable failures up to `max_retries` times with exponential
/// backoff and jitter. Failures tied to a key (401/402/403/429) move on to another key when
/// there is one.
pub(crate) async fn send<'a>(
    client: &UpstreamClient,
    call: Call<'a>,
) -> Result<Answer<'a>, GatewayError> {
    let p = call.provider;
    let mut candidates: Vec<&KeyConfig> = p
        .keys
        .iter()
        .filter(|k| call.model.is_none_or(|m| k.models.allows(m)))
        .collect();
    if candidates.is_empty() {
        let what = call
            .model
            .map_or_else(String::new, |m| format!(" for model `{m}`"));
        return Err(GatewayError::invalid_request(format!(
            "no {} key is configured{what}",
            p.kind.name()
        )));
    }
    let mut attempt = 0u32;
    loop {
        let key = pick_weighted(&candidates);
        let request = UpstreamRequest {
            provider: p.kind,
            operation: call.operation,
            base_url: &p.base_url,
            key: key.value.expose(),
            extra_headers: &p.extra_headers,
            headers: call.headers.clone(),
            body: call.body.clone(),
            first_byte_timeout: p.request_timeout,
        };
        let err = match client.send(request).await {
            Ok(response) => return Ok(Answer { response, key }),
            Err(err) => err,
        };
        if attempt >= p.max_retries || !(err.is_retryable() || err.is_key_specific()) {
            return Err(GatewayError::from_provider(&err, key.value.expose()));
        }
        attempt += 1;
        tracing::warn!(provider = p.kind.name(), key = %key.name, attempt, error = %err, "upstream attempt failed; retrying");
        if err.is_key_specific() && candidates.len() > 1 {
            candidates.retain(|k| !std::ptr::eq(*k, key));
        }
        if !matches!(
            err,
            ProviderError::Status {
                status: 401..=403,
                ..
            }
        ) {
            tokio::time::sleep(backoff(p, attempt)).await;
        }
    }
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
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(p.retry_backoff_max);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelFilter, Secret};

    fn key(name: &str, weight: f64) -> KeyConfig {
        KeyConfig {
            name: name.into(),
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
}
