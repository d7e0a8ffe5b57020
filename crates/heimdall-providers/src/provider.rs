//! What a provider is to the rest of Heimdall: a value behind [`Provider`], built at start-up
//! from its configuration by the factory registered under its name.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::betas::BetaPlatform;
use crate::client::ProviderError;

/// What the gateway asks an upstream to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Messages,
    CountTokens,
    ListModels,
    /// One text's vector (the semantic cache), in the shape of the dialect's
    /// `UpstreamDialect::embeddings`.
    Embeddings,
}

/// One upstream request, before and after authorization.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// What a provider is built from: the name it was configured under, its root URL
/// (`network_config.base_url` or the family's default), and its whole `config.json` section,
/// where the family reads its own fields (`ProviderFactory::config_fields`), including per-key
/// ones under `keys[i]`.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    /// The registered family it belongs to: its own name, or a custom provider's
    /// `base_provider_type`.
    pub family: &'static str,
    /// Root URL without a version path; the provider appends its own paths.
    pub base_url: String,
    /// `Null` on a zero-config start from the environment.
    pub section: serde_json::Value,
}

/// One configured key, as a provider sees it for one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    /// Position in the section's `keys` list (for the key's own settings).
    pub index: usize,
    /// The secret (an API key, a token); never logged.
    pub value: &'a str,
}

/// A provider family's own settings are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    /// JSON path inside the provider's section (`keys[0].azure_key_config.endpoint`).
    pub path: String,
    pub message: String,
}

/// A configured upstream. Implementations know URLs, body tweaks and authentication; they know
/// nothing of routing, keys' selection or the client-facing server.
pub trait Provider: Send + Sync {
    /// What it was configured with.
    fn settings(&self) -> &ProviderSettings;
    /// The name under which it was configured, the prefix in `name/model`.
    fn name(&self) -> &str {
        &self.settings().name
    }
    /// The dialect this provider speaks for `model`.
    fn dialect(&self, model: &str) -> &'static dyn UpstreamDialect;
    /// Whether the upstream counts `model`'s tokens itself (`Operation::CountTokens`) on the
    /// pass-through path; when not, the gateway estimates them locally.
    fn counts_tokens(&self, _model: &str) -> bool {
        true
    }
    /// Where this provider's Claude models run, for the `anthropic-beta` values they take.
    fn claude_platform(&self) -> BetaPlatform {
        BetaPlatform::None
    }
    /// Which `anthropic-beta` values `model`'s upstream takes: its Claude platform's where it
    /// speaks Anthropic's dialect, none elsewhere.
    fn beta_platform(&self, model: &str) -> BetaPlatform {
        if self.dialect(model).id() == heimdall_protocol::dialect::anthropic::DIALECT {
            self.claude_platform()
        } else {
            BetaPlatform::None
        }
    }
    /// Which client header carries a key this provider takes as the upstream key for `model`
    /// (`client.allow_direct_keys`): `x-api-key` where it speaks Anthropic's dialect,
    /// `Authorization: Bearer` for OpenAI-style APIs. `None` where a credential is more than
    /// a key (service accounts, AWS signatures): the configured keys are used.
    fn direct_key_header(&self, model: &str) -> Option<DirectKeyHeader> {
        if self.dialect(model).id() == heimdall_protocol::dialect::anthropic::DIALECT {
            Some(DirectKeyHeader::XApiKey)
        } else {
            Some(DirectKeyHeader::Bearer)
        }
    }
    /// The HTTP request for `op` on `model`: URL, method, headers taken from the client's
    /// forwarded headers (`anthropic-beta` already filtered for [`Provider::beta_platform`];
    /// the other non-`anthropic-*` ones are added by the caller where the provider set none), and the body (tweaked where the provider needs it). `None` body:
    /// the operation takes none.
    fn prepare(
        &self,
        op: Operation,
        model: &str,
        stream: bool,
        body: Option<Bytes>,
        client_headers: &HeaderMap,
        key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError>;
    /// Adds credentials for `key`: a header, a signature over the body, or a cached token.
    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// The client header native to a provider, for direct keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectKeyHeader {
    XApiKey,
    Bearer,
}

/// How a provider family is created from configuration; one entry per family in the
/// [registry](crate::registry).
pub struct ProviderFactory {
    /// The key under `providers` in `config.json` and the model prefix.
    pub name: &'static str,
    /// The environment variable holding a key for the zero-config start.
    pub env_var: &'static str,
    pub default_base_url: &'static str,
    /// False for servers usually run without credentials (Ollama, vLLM): with no key
    /// configured they are called without one.
    pub key_required: bool,
    /// Fields of the section (or of a key) the family reads itself, so the configuration
    /// loader does not report them as unsupported.
    pub config_fields: &'static [&'static str],
    pub build: fn(ProviderSettings) -> Result<Arc<dyn Provider>, SettingsError>,
}

/// Joins the configured root and an operation's path.
pub fn url(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

/// Escapes everything but unreserved characters, so a deployment name, model id or ARN from
/// the configuration or the client stays one path segment (or query value) of the URL.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Anthropic's request headers for a Claude upstream: `anthropic-version` (the client's, else
/// `default_version`; none when `default_version` is `None` and the client sent none, for
/// clouds that take the version in the body) and the client's `anthropic-beta` values, which
/// the caller has already cut down to what the platform takes.
pub fn anthropic_headers(
    client_headers: &HeaderMap,
    default_version: Option<&'static str>,
) -> HeaderMap {
    const VERSION: HeaderName = HeaderName::from_static("anthropic-version");
    const BETA: HeaderName = HeaderName::from_static("anthropic-beta");
    let mut headers = HeaderMap::with_capacity(4);
    if let Some(version) = default_version {
        let version = client_headers
            .get(&VERSION)
            .cloned()
            .unwrap_or(HeaderValue::from_static(version));
        headers.insert(VERSION, version);
    }
    for beta in client_headers.get_all(&BETA) {
        headers.append(BETA, beta.clone());
    }
    headers
}

/// The client's `anthropic-beta` values as a list, for clouds that take betas in the body.
pub fn anthropic_betas(client_headers: &HeaderMap) -> Vec<&str> {
    crate::betas::beta_names(client_headers.get_all("anthropic-beta").iter()).collect()
}

/// [`Provider::authorize`] for providers that take the key in one header.
pub fn header_auth<'a>(
    request: &'a mut PreparedRequest,
    name: HeaderName,
    value: &str,
    provider: &str,
) -> BoxFuture<'a, Result<(), ProviderError>> {
    let result = set_secret_header(request, name, value, provider);
    Box::pin(std::future::ready(result))
}

/// [`Provider::authorize`] for `Authorization: Bearer <key>`; an empty key (a server run
/// without credentials) sends nothing.
pub fn bearer_auth<'a>(
    request: &'a mut PreparedRequest,
    key: &str,
    provider: &str,
) -> BoxFuture<'a, Result<(), ProviderError>> {
    if key.is_empty() {
        return Box::pin(std::future::ready(Ok(())));
    }
    header_auth(
        request,
        http::header::AUTHORIZATION,
        &format!("Bearer {key}"),
        provider,
    )
}

/// Sets `name: value` as a sensitive header; a key that is not a valid header value is
/// reported without echoing it.
pub fn set_secret_header(
    request: &mut PreparedRequest,
    name: HeaderName,
    value: &str,
    provider: &str,
) -> Result<(), ProviderError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ProviderError::InvalidKey {
        provider: provider.to_owned(),
    })?;
    v.set_sensitive(true);
    request.headers.insert(name, v);
    Ok(())
}

/// The method a body implies: POST with a JSON body, GET without.
pub fn json_request(url: String, headers: HeaderMap, body: Option<Bytes>) -> PreparedRequest {
    let mut headers = headers;
    let method = if body.is_some() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Method::POST
    } else {
        Method::GET
    };
    PreparedRequest {
        method,
        url,
        headers,
        body,
    }
}
