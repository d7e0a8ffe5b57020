//! Gateway configuration: Bifrost's `config.json` layout, or provider keys from the
//! environment when there is no file. Parsed once into an immutable, validated [`Config`].
//!
//! Fields Heimdall does not support yet are accepted and reported in [`Config::warnings`],
//! so a Bifrost file always loads; malformed JSON or a wrong type is an error naming the path.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use heimdall_providers::ProviderKind;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// A provider key. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which models a key may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFilter {
    All,
    Only(Vec<String>),
}

impl ModelFilter {
    pub fn allows(&self, model: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.iter().any(|m| m == model),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    pub value: Secret,
    pub models: ModelFilter,
    pub weight: f64,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub keys: Vec<KeyConfig>,
    /// Root URL without a version path; the provider appends `/v1/...`.
    pub base_url: String,
    pub extra_headers: HeaderMap,
    /// Non-streaming: the whole exchange; streaming: until the response headers arrive.
    pub request_timeout: Duration,
    /// Longest silence allowed between two chunks of a streaming response.
    pub stream_idle_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
}

impl ProviderConfig {
    fn with_defaults(kind: ProviderKind, keys: Vec<KeyConfig>) -> Self {
        Self {
            kind,
            keys,
            base_url: kind.default_base_url().to_owned(),
            extra_headers: HeaderMap::new(),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_S),
            stream_idle_timeout: Duration::from_secs(DEFAULT_STREAM_IDLE_TIMEOUT_S),
            max_retries: 0,
            retry_backoff_initial: Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS),
            retry_backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
        }
    }
}

/// Bifrost's defaults, so a file that leaves a field out behaves the same on both.
const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
const DEFAULT_STREAM_IDLE_TIMEOUT_S: u64 = 60;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;
const DEFAULT_MAX_BODY_MB: u64 = 100;

#[derive(Debug, Clone)]
pub struct Config {
    /// Enabled providers in a stable order.
    pub providers: Vec<ProviderConfig>,
    pub max_request_body_bytes: usize,
    /// Human-readable notes about accepted-but-unsupported settings, logged once at start.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn provider(&self, kind: ProviderKind) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.kind == kind)
    }

    /// Zero-config start: every provider whose standard environment variable is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let providers = ProviderKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let value = env(kind.env_var()).filter(|v| !v.trim().is_empty())?;
                let key = KeyConfig {
                    name: kind.env_var().to_owned(),
                    value: Secret::new(value.trim()),
                    models: ModelFilter::All,
                    weight: 1.0,
                };
                Some(ProviderConfig::with_defaults(kind, vec![key]))
            })
            .collect();
        Self {
            providers,
            max_request_body_bytes: mb(DEFAULT_MAX_BODY_MB),
            warnings: Vec::new(),
        }
    }

    /// Parses a Bifrost-layout `config.json`. `env` resolves `"env.VAR"` values.
    pub fn from_json(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut ignored = Vec::new();
        let de = &mut serde_json::Deserializer::from_str(text);
        let mut note_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let tracked = serde_ignored::Deserializer::new(de, &mut note_ignored);
        let raw: RawConfig = serde_path_to_error::deserialize(tracked).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                path: if inner.is_syntax() || inner.is_eof() || path == "." {
                    format!("line {} column {}", inner.line(), inner.column())
                } else {
                    path
                },
                message: inner.to_string(),
            }
        })?;
        let mut warnings: Vec<String> = Vec::new();
        if !ignored.is_empty() {
            warnings.push(format!(
                "config fields accepted but not supported yet (ignored): {}",
                ignored.join(", ")
            ));
        }
        let deny_empty_models = raw.version.unwrap_or(1) >= 2;
        let mut providers = Vec::new();
        for (name, raw_provider) in raw.providers {
            let Some(kind) = ProviderKind::from_name(&name) else {
                warnings.push(format!("provider `{name}` is not supported yet; ignored"));
                continue;
            };
            providers.push(build_provider(
                kind,
                raw_provider,
                deny_empty_models,
                env,
                &mut warnings,
            )?);
        }
        providers.sort_by_key(|p| p.kind);
        let max_mb = raw
            .client
            .max_request_body_size_mb
            .unwrap_or(DEFAULT_MAX_BODY_MB);
        Ok(Self {
            providers,
            max_request_body_bytes: mb(max_mb),
            warnings,
        })
    }
}

fn mb(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// A configuration problem, with the JSON path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

fn build_provider(
    kind: ProviderKind,
    raw: RawProvider,
    deny_empty_models: bool,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<ProviderConfig, ConfigError> {
    let name = kind.name();
    let mut keys = Vec::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let path = format!("providers.{name}.keys[{i}]");
        let value = match k.value.strip_prefix("env.") {
            Some(var) => match env(var) {
                Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
                _ => {
                    warnings.push(format!(
                        "{path}.value: environment variable {var} is not set; key skipped"
                    ));
                    continue;
                }
            },
            None => k.value,
        };
        if HeaderValue::from_str(&value).is_err() {
            return Err(ConfigError {
                path: format!("{path}.value"),
                message: "the key contains characters not allowed in an HTTP header".into(),
            });
        }
        if !(k.weight.is_finite() && k.weight >= 0.0) {
            return Err(ConfigError {
                path: format!("{path}.weight"),
                message: "weight must be a non-negative number".into(),
            });
        }
        let models = match k.models {
            Some(list) if list.iter().any(|m| m == "*") => ModelFilter::All,
            Some(list) if !list.is_empty() => ModelFilter::Only(list),
            _ if deny_empty_models => ModelFilter::Only(Vec::new()),
            _ => ModelFilter::All,
        };
        keys.push(KeyConfig {
            name: k.name.unwrap_or_else(|| format!("{name}-{i}")),
            value: Secret::new(value),
            models,
            weight: k.weight,
        });
    }
    let mut p = ProviderConfig::with_defaults(kind, keys);
    let net = raw.network_config.unwrap_or_default();
    if let Some(url) = net.base_url.filter(|u| !u.trim().is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError {
                path: format!("providers.{name}.network_config.base_url"),
                message: format!("`{url}` is not an http(s) URL"),
            });
        }
        p.base_url = url.trim_end_matches('/').to_owned();
    }
    for (header, value) in net.extra_headers.unwrap_or_default() {
        let path = format!("providers.{name}.network_config.extra_headers.{header}");
        let n = HeaderName::from_bytes(header.as_bytes()).map_err(|e| ConfigError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let v = HeaderValue::from_str(&value).map_err(|e| ConfigError {
            path,
            message: e.to_string(),
        })?;
        p.extra_headers.insert(n, v);
    }
    let secs = |v: Option<u64>, d: Duration| v.filter(|s| *s > 0).map_or(d, Duration::from_secs);
    let millis =
        |v: Option<u64>, d: Duration| v.filter(|s| *s > 0).map_or(d, Duration::from_millis);
    p.request_timeout = secs(net.default_request_timeout_in_seconds, p.request_timeout);
    p.stream_idle_timeout = secs(net.stream_idle_timeout_in_seconds, p.stream_idle_timeout);
    p.max_retries = net.max_retries.unwrap_or(0);
    p.retry_backoff_initial = millis(net.retry_backoff_initial_ms, p.retry_backoff_initial);
    p.retry_backoff_max = millis(net.retry_backoff_max_ms, p.retry_backoff_max);
    if p.keys.is_empty() {
        warnings.push(format!(
            "provider `{name}` has no usable keys; requests to it will fail"
        ));
    }
    Ok(p)
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default, rename = "$schema")]
    _schema: Option<String>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    client: RawClient,
}

#[derive(Deserialize, Default)]
struct RawClient {
    max_request_body_size_mb: Option<u64>,
}

#[derive(Deserialize)]
struct RawProvider {
    #[serde(default)]
    keys: Vec<RawKey>,
    network_config: Option<RawNetwork>,
}

#[derive(Deserialize)]
struct RawKey {
    name: Option<String>,
    value: String,
    models: Option<Vec<String>>,
    #[serde(default = "one")]
    weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize, Default)]
struct RawNetwork {
    base_url: Option<String>,
    extra_headers: Option<BTreeMap<String, String>>,
    default_request_timeout_in_seconds: Option<u64>,
    max_retries: Option<u32>,
    retry_backoff_initial_ms: Option<u64>,
    retry_backoff_max_ms: Option<u64>,
    stream_idle_timeout_in_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "OAI").then(|| "sk-from-env".to_owned())
    }

    #[test]
    fn reads_bifrost_layout_and_names_unsupported_fields() {
        let cfg = Config::from_json(
            r#"{
              "$schema": "https://www.getbifrost.ai/schema",
              "client": {"enable_logging": true, "max_request_body_size_mb": 2},
              "providers": {
                "openai": {
                  "keys": [{"name": "a", "value": "env.OAI", "models": ["gpt-4o-mini"], "weight": 2},
                           {"value": "env.MISSING"}],
                  "network_config": {"base_url": "http://127.0.0.1:9/", "extra_headers": {"x-team": "t"},
                                     "default_request_timeout_in_seconds": 7, "max_retries": 2},
                  "concurrency_and_buffer_size": {"concurrency": 10}
                },
                "bedrock": {"keys": []}
              },
              "governance": {"virtual_keys": []}
            }"#,
            &env,
        )
        .unwrap();
        let p = cfg.provider(ProviderKind::OpenAi).unwrap();
        assert_eq!(p.base_url, "http://127.0.0.1:9");
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys[0].value.expose(), "sk-from-env");
        assert!(p.keys[0].models.allows("gpt-4o-mini") && !p.keys[0].models.allows("gpt-4o"));
        assert_eq!(p.request_timeout, Duration::from_secs(7));
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.extra_headers["x-team"], "t");
        assert_eq!(cfg.max_request_body_bytes, 2 * 1024 * 1024);
        let all = cfg.warnings.join("\n");
        for needle in [
            "client.enable_logging",
            "providers.openai.concurrency_and_buffer_size",
            "governance",
            "provider `bedrock`",
            "MISSING",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
        assert!(!format!("{cfg:?}").contains("sk-from-env"));
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = Config::from_json(
            r#"{"providers":{"openai":{"keys":[{"value":"k","weight":"x"}]}}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(e.path, "providers.openai.keys[0].weight");
        let e = Config::from_json(r#"{"providers": {"#, &env).unwrap_err();
        assert!(e.path.starts_with("line 1"), "{e}");
        let e = Config::from_json(
            r#"{"providers":{"openai":{"keys":[],"network_config":{"base_url":"ftp://x"}}}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(e.path, "providers.openai.network_config.base_url");
    }

    #[test]
    fn model_lists_follow_the_config_version() {
        let v1 = Config::from_json(
            r#"{"providers":{"openai":{"keys":[{"value":"k","models":[]}]}}}"#,
            &env,
        )
        .unwrap();
        assert!(v1.providers[0].keys[0].models.allows("anything"));
        let v2 = Config::from_json(
            r#"{"version":2,"providers":{"openai":{"keys":[{"value":"k","models":[]}]}}}"#,
            &env,
        )
        .unwrap();
        assert!(!v2.providers[0].keys[0].models.allows("anything"));
    }

    #[test]
    fn env_start_enables_providers_with_keys() {
        let cfg = Config::from_env(&|v| (v == "OPENAI_API_KEY").then(|| "sk".to_owned()));
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.providers[0].kind, ProviderKind::OpenAi);
    }
}
