//! Gateway configuration: Bifrost's `config.json` layout, or provider keys from the
//! environment when there is no file. Parsed once into an immutable, validated [`Config`].
//!
//! Fields Heimdall does not support yet are accepted and reported in [`Config::warnings`],
//! so a Bifrost file always loads; malformed JSON or a wrong type is an error naming the path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use heimdall_providers::betas::BetaOverrides;
use heimdall_providers::{ClientOptions, Provider, ProviderFactory, ProviderSettings};

use crate::affinity::AffinitySettings;
use crate::headers::HeaderRules;
use crate::health::{CircuitSettings, KeyHealth};
use crate::limits::Limiter;
use crate::pricing::{Price, Pricing};

mod admin;
mod governance;
mod observability;
pub(crate) mod support;
mod vector_store;
pub use admin::AdminAuth;
pub use governance::{
    Budget, BudgetLine, Customer, FailMode, GovernanceConfig, GovernanceSettings, ProviderAccess,
    RateLimit, RedisSettings, ResetDuration, ResetUnit, Team, VIRTUAL_KEY_PREFIX, VirtualKey,
};
use http::{HeaderMap, HeaderName, HeaderValue};
pub use observability::{LoggingConfig, OtelConfig, OtlpProtocol, PostgresConfig, StoreConfig};
use serde::Deserialize;
pub use vector_store::VectorStoreSettings;

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
    /// Position in the provider's `keys` list in the file, where the provider family finds
    /// the key's own settings (Azure endpoints, AWS credentials…).
    pub index: usize,
    pub value: Secret,
    pub models: ModelFilter,
    pub weight: f64,
    /// Its circuit; kept across reloads while the key's name and value stay the same.
    pub health: Arc<KeyHealth>,
}

impl KeyConfig {
    pub fn new(
        name: String,
        index: usize,
        value: Secret,
        models: ModelFilter,
        weight: f64,
    ) -> Self {
        Self {
            name,
            index,
            value,
            models,
            weight,
            health: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub struct ProviderConfig {
    /// The name it is configured under: the key under `providers`, and the model prefix.
    pub name: String,
    pub provider: Arc<dyn Provider>,
    /// The environment variable that would enable it on a zero-config start.
    pub env_var: &'static str,
    pub keys: Vec<KeyConfig>,
    /// What a custom provider may be asked (Bifrost's `allowed_requests`); all for others.
    pub allowed: AllowedRequests,
    pub extra_headers: HeaderMap,
    /// `network_config.beta_header_overrides`: prefix → send or hold back, over the platform's
    /// own table of betas.
    pub beta_overrides: BetaOverrides,
    /// Non-streaming: the whole exchange; streaming: until the response headers arrive.
    pub request_timeout: Duration,
    /// Longest silence allowed between two chunks of a streaming response.
    pub stream_idle_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
    /// Tried in order when every model of this provider fails (`fallbacks`).
    pub fallbacks: Vec<String>,
    /// Per upstream model, replacing `fallbacks` for it (`model_fallbacks`).
    pub model_fallbacks: BTreeMap<String, Vec<String>>,
    /// `concurrency_and_buffer_size`; `None`: no limit of its own.
    pub limiter: Option<Arc<Limiter>>,
    /// `circuit_breaker`.
    pub circuit: CircuitSettings,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl ProviderConfig {
    fn with_defaults(
        factory: &'static ProviderFactory,
        name: String,
        base_url: Option<String>,
        section: serde_json::Value,
        keys: Vec<KeyConfig>,
    ) -> Result<Self, ConfigError> {
        let mut keys = keys;
        if keys.is_empty() && !factory.key_required {
            // A keyless server is called without credentials.
            keys.push(KeyConfig::new(
                "none".to_owned(),
                usize::MAX,
                Secret::new(""),
                ModelFilter::All,
                1.0,
            ));
        }
        let settings = ProviderSettings {
            name: name.clone(),
            family: factory.name,
            base_url: base_url.unwrap_or_else(|| factory.default_base_url.to_owned()),
            section,
        };
        let provider = (factory.build)(settings).map_err(|e| ConfigError {
            path: if e.path.is_empty() {
                format!("providers.{name}")
            } else {
                format!("providers.{name}.{}", e.path)
            },
            message: e.message,
        })?;
        Ok(Self {
            name,
            allowed: AllowedRequests::ALL,
            provider,
            env_var: factory.env_var,
            keys,
            extra_headers: HeaderMap::new(),
            beta_overrides: BetaOverrides::default(),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_S),
            stream_idle_timeout: Duration::from_secs(DEFAULT_STREAM_IDLE_TIMEOUT_S),
            max_retries: 0,
            retry_backoff_initial: Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS),
            retry_backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            fallbacks: Vec::new(),
            model_fallbacks: BTreeMap::new(),
            limiter: None,
            circuit: CircuitSettings::default(),
        })
    }

    /// The configured fallbacks of `model` (without this provider's prefix).
    pub fn fallbacks_of(&self, model: &str) -> &[String] {
        self.model_fallbacks
            .get(model)
            .map_or(&self.fallbacks, Vec::as_slice)
    }
}

/// Bifrost's defaults, so a file that leaves a field out behaves the same on both.
const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
const DEFAULT_STREAM_IDLE_TIMEOUT_S: u64 = 60;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;
const DEFAULT_MAX_BODY_MB: u64 = 100;
/// Heimdall's own settings (not Bifrost's).
const DEFAULT_MODELS_CACHE_TTL_S: u64 = 300;
const DEFAULT_MAX_STREAM_EVENT_MB: u64 = 16;

/// Upper bounds of durations read from the file: far beyond any useful value, and small
/// enough that adding them to an `Instant` cannot overflow.
const MAX_SECONDS: u64 = 7 * 24 * 3600;
const MAX_RETRIES: u32 = 100;
const MAX_MB: u64 = 64 * 1024;
/// The config store's SQLite file in the app dir, as Bifrost names it.
const CONFIG_DB: &str = "config.db";

#[derive(Debug, Clone)]
pub struct Config {
    /// Enabled providers in a stable order.
    pub providers: Vec<ProviderConfig>,
    pub max_request_body_bytes: usize,
    /// How long a merged model listing is reused before the providers are asked again.
    pub models_cache_ttl: Duration,
    /// Largest single upstream stream event; a bigger one ends the stream with an error.
    pub max_stream_event_bytes: usize,
    /// Settings of the shared upstream connection pool.
    pub upstream_client: ClientOptions,
    /// Which client headers go upstream (`client.header_filter_config`).
    pub header_rules: HeaderRules,
    /// Fetching media given by URL for upstreams that take bytes only.
    pub media_fetch: MediaFetchConfig,
    /// `client.allow_direct_keys`: a client's own provider key is used for its request.
    pub allow_direct_keys: bool,
    /// `client.drop_excess_requests`: a full provider queue answers 529 at once.
    pub drop_excess_requests: bool,
    pub session_affinity: AffinitySettings,
    /// The logs store and what it keeps (`logs_store`, `client.*logging*`).
    pub logging: LoggingConfig,
    /// The `otel` plugin, when configured.
    pub otel: Option<OtelConfig>,
    /// The `semantic_cache` plugin, when configured.
    pub cache: Option<heimdall_cache::CacheConfig>,
    /// `vector_store` (Redis): the semantic cache's entries shared by instances. Read at start.
    pub vector_store: Option<VectorStoreSettings>,
    /// Model prices for the records' cost (Heimdall's `pricing` section over a list).
    pub pricing: Pricing,
    /// `client.admin_auth`: what the admin API asks of callers; `None`: open.
    pub admin_auth: Option<AdminAuth>,
    /// Virtual keys, budgets and rate limits, and where their state lives.
    pub governance: GovernanceSettings,
    /// The passphrase the config store's documents are encrypted with (`encryption_key`, or
    /// `HEIMDALL_ENCRYPTION_KEY` / `BIFROST_ENCRYPTION_KEY`); `None`: stored plain. Taken at
    /// start only: the key a store was encrypted with cannot change under it.
    pub encryption_key: Option<Secret>,
    /// Human-readable notes about accepted-but-unsupported settings, logged once at start.
    pub warnings: Vec<String>,
    /// Settings Heimdall does not implement that change security or billing, each naming its
    /// path and what ignoring it would do: refused by [`Config::check_supported`] unless the
    /// operator opts out.
    pub unsupported: Vec<String>,
}

impl Config {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// `configured providers: a, b`, or that there is none: for errors about a provider a
    /// request named.
    pub fn configured_providers(&self) -> String {
        if self.providers.is_empty() {
            return "no provider is configured".into();
        }
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        format!("configured providers: {}", names.join(", "))
    }

    fn with_providers(providers: Vec<ProviderConfig>) -> Self {
        Self {
            providers,
            max_request_body_bytes: mb(DEFAULT_MAX_BODY_MB),
            models_cache_ttl: Duration::from_secs(DEFAULT_MODELS_CACHE_TTL_S),
            max_stream_event_bytes: mb(DEFAULT_MAX_STREAM_EVENT_MB),
            upstream_client: ClientOptions::default(),
            header_rules: HeaderRules::default(),
            media_fetch: MediaFetchConfig::default(),
            allow_direct_keys: false,
            drop_excess_requests: false,
            session_affinity: AffinitySettings::default(),
            logging: LoggingConfig::default(),
            otel: None,
            cache: None,
            vector_store: None,
            pricing: Pricing::default(),
            admin_auth: None,
            governance: GovernanceSettings {
                config_store: Some(StoreConfig::Sqlite {
                    path: PathBuf::from(CONFIG_DB),
                }),
                ..GovernanceSettings::default()
            },
            encryption_key: None,
            warnings: Vec::new(),
            unsupported: Vec::new(),
        }
    }

    /// Refuses a configuration with settings Heimdall would ignore although they change
    /// security or billing (`unsupported`); the error names every one.
    pub fn check_supported(&self) -> Result<(), ConfigError> {
        if self.unsupported.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            path: "config".into(),
            message: format!(
                "settings that change security or billing are not supported by Heimdall yet:\n  - {}\nRemove them, or start with --allow-unsupported-config (HEIMDALL_ALLOW_UNSUPPORTED_CONFIG=true) to run without them",
                self.unsupported.join("\n  - ")
            ),
        })
    }

    /// Carries the running state of `old` (key circuits, provider slots) over to keys and
    /// providers that did not change, so a reload neither forgives a failing key nor lets a
    /// provider's calls in flight exceed its limit.
    pub fn inherit_state(&mut self, old: &Config) {
        for p in &mut self.providers {
            let Some(before) = old.provider(&p.name) else {
                continue;
            };
            for k in &mut p.keys {
                if let Some(same) = before
                    .keys
                    .iter()
                    .find(|o| o.name == k.name && o.value == k.value)
                {
                    k.health = Arc::clone(&same.health);
                }
            }
            if let (Some(new), Some(running)) = (&p.limiter, &before.limiter)
                && new.settings() == running.settings()
            {
                p.limiter = Some(Arc::clone(running));
            }
        }
    }

    /// Zero-config start: every provider whose standard environment variable is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let providers = heimdall_providers::factories()
            .iter()
            .filter_map(|factory| {
                let value = env(factory.env_var).filter(|v| !v.trim().is_empty())?;
                let key = KeyConfig::new(
                    factory.env_var.to_owned(),
                    0,
                    Secret::new(value.trim()),
                    ModelFilter::All,
                    1.0,
                );
                // A provider that needs more than a key (a project, an endpoint) cannot start
                // from the environment alone; it says why in the log.
                match ProviderConfig::with_defaults(
                    factory,
                    factory.name.to_owned(),
                    None,
                    serde_json::Value::Null,
                    vec![key],
                ) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(provider = factory.name, error = %e, "not enabled from the environment");
                        None
                    }
                }
            })
            .collect();
        Self {
            encryption_key: encryption_key_from_env(env),
            ..Self::with_providers(providers)
        }
    }

    /// Parses a Bifrost-layout `config.json`. `env` resolves `"env.VAR"` values. Errors speak
    /// JSON's words for types (`a number`, not `f64`).
    pub fn from_json(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_json(text, env).map_err(|e| ConfigError {
            message: support::json_words(&e.message),
            ..e
        })
    }

    fn parse_json(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
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
        let mut unsupported: Vec<String> = Vec::new();
        // The file again as plain JSON, to tell an ignored setting that is set from an empty
        // one (Bifrost's exports carry `"mcp": null`, `"routing_rules": []`).
        let tree: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        sort_ignored(
            "config fields",
            ignored,
            &tree,
            &mut warnings,
            &mut unsupported,
        );
        let deny_empty_models = raw.version.unwrap_or(1) >= 2;
        let mut providers = Vec::new();
        let mut ignored = Vec::new();
        for (name, section) in raw.providers {
            // A custom provider is named at run time and clones a registered family.
            let custom = section.pointer("/custom_provider_config/base_provider_type");
            let family = custom.and_then(serde_json::Value::as_str).unwrap_or(&name);
            let Some(factory) = heimdall_providers::factory(family) else {
                let path = if custom.is_some() {
                    format!("providers.{name}.custom_provider_config.base_provider_type")
                } else {
                    format!("providers.{name}")
                };
                if support::is_bifrost_only_provider(family) {
                    unsupported.push(format!(
                        "{path}: provider `{family}` is not supported yet; requests for it would fail"
                    ));
                    continue;
                }
                return Err(ConfigError {
                    path,
                    message: support::unknown_provider(family, &known_providers()),
                });
            };
            if family != name && section.pointer("/network_config/base_url").is_none() {
                return Err(ConfigError {
                    path: format!("providers.{name}.network_config.base_url"),
                    message: "a custom provider needs its base URL".into(),
                });
            }
            providers.push(build_provider(
                factory,
                name,
                section,
                deny_empty_models,
                env,
                &mut warnings,
                &mut ignored,
            )?);
        }
        sort_ignored(
            "provider fields",
            ignored,
            &tree,
            &mut warnings,
            &mut unsupported,
        );
        // Registry order, then custom providers by name, so listings and logs are stable.
        let order = |p: &ProviderConfig| {
            let position = heimdall_providers::factories()
                .iter()
                .position(|f| f.name == p.name);
            (position.unwrap_or(usize::MAX), p.name.clone())
        };
        providers.sort_by_key(order);
        let mut config = Self::with_providers(providers);
        let client = raw.client;
        if let Some(v) = client.max_request_body_size_mb {
            config.max_request_body_bytes =
                mb(in_range("client.max_request_body_size_mb", v, 1, MAX_MB)?);
        }
        if let Some(v) = client.models_cache_ttl_seconds {
            config.models_cache_ttl = seconds("client.models_cache_ttl_seconds", v, 0)?;
        }
        if let Some(v) = client.max_stream_event_size_mb {
            config.max_stream_event_bytes =
                mb(in_range("client.max_stream_event_size_mb", v, 1, MAX_MB)?);
        }
        if let Some(v) = client.upstream_pool_idle_timeout_seconds {
            config.upstream_client.pool_idle_timeout =
                seconds("client.upstream_pool_idle_timeout_seconds", v, 1)?;
        }
        if let Some(v) = client.max_upstream_response_size_mb {
            config.upstream_client.max_response_bytes = mb(in_range(
                "client.max_upstream_response_size_mb",
                v,
                1,
                MAX_MB,
            )?);
        }
        if let Some(v) = client.max_upstream_error_body_kb {
            config.upstream_client.max_error_body_bytes = usize::try_from(
                in_range("client.max_upstream_error_body_kb", v, 1, MAX_MB)? * 1024,
            )
            .unwrap_or(usize::MAX);
        }
        if let Some(v) = client.upstream_connect_timeout_seconds {
            config.upstream_client.connect_timeout =
                seconds("client.upstream_connect_timeout_seconds", v, 1)?;
        }
        if let Some(filter) = client.header_filter_config {
            let names = |list: Option<Vec<String>>, field: &str| {
                list.unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).map_err(
                            |e| ConfigError {
                                path: format!("client.header_filter_config.{field}[{i}]"),
                                message: format!("`{name}` is not a header name: {e}"),
                            },
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            config.header_rules = HeaderRules::new(
                names(filter.allowlist, "allowlist")?,
                names(filter.denylist, "denylist")?,
            );
        }
        config.media_fetch = raw.media_fetch.validate()?;
        config.allow_direct_keys = client.allow_direct_keys.unwrap_or(false);
        config.drop_excess_requests = client.drop_excess_requests.unwrap_or(false);
        if let Some(v) = client.session_affinity_ttl_seconds {
            config.session_affinity.ttl = seconds("client.session_affinity_ttl_seconds", v, 1)?;
        }
        if let Some(v) = client.session_affinity_max_sessions {
            config.session_affinity.max_sessions =
                in_range("client.session_affinity_max_sessions", v, 0, 100_000_000)?;
        }
        config.logging.store = raw.logs_store.validate("logs_store", "logs.db", env)?;
        config.governance = GovernanceSettings {
            entities: raw.governance.resolve(env)?,
            enforce_auth: client
                .enforce_auth_on_inference
                .or(client.enforce_governance_header)
                .unwrap_or(false),
            deny_empty_lists: deny_empty_models,
            config_store: raw.config_store.validate("config_store", CONFIG_DB, env)?,
            redis: raw.redis.map(|r| r.validate(env)).transpose()?,
        };
        config.encryption_key = match raw.encryption_key.filter(|k| !k.trim().is_empty()) {
            Some(key) => Some(Secret::new(observability::resolve(
                "encryption_key",
                &key,
                env,
            )?)),
            None => encryption_key_from_env(env),
        };
        if config.encryption_key.is_some() && config.governance.config_store.is_none() {
            warnings.push(
                "encryption_key: there is no config store (config_store.enabled is false), so nothing is encrypted".into(),
            );
        }
        config.logging.disable_content = client.disable_content_logging.unwrap_or(false);
        observability::lifetimes(
            &mut config.logging,
            client.log_retention_days,
            client.async_job_result_ttl,
        )?;
        config.pricing = Pricing::new(raw.pricing);
        config.admin_auth = admin::parse(client.admin_auth, env, &mut warnings)?;
        let mut plugins = observability::plugins(raw.plugins, env, &mut warnings)?;
        unsupported.append(&mut plugins.unsupported);
        config.otel = plugins.otel;
        config.cache = plugins
            .cache
            .map(|(i, cache)| config.check_cache(i, cache))
            .transpose()?;
        config.vector_store = raw
            .vector_store
            .unwrap_or_default()
            .validate(env, &mut warnings)?;
        config.check_fallbacks(&mut warnings)?;
        config.check_access_providers()?;
        config.warnings = warnings;
        config.unsupported = unsupported;
        Ok(config)
    }
}

impl Config {
    /// The cache's embedding provider is configured and has an embedding API Heimdall speaks.
    fn check_cache(
        &self,
        index: usize,
        cache: heimdall_cache::CacheConfig,
    ) -> Result<heimdall_cache::CacheConfig, ConfigError> {
        if let Some(e) = &cache.embedding {
            let path = format!("plugins[{index}].config.provider");
            let provider = self.provider(&e.provider).ok_or_else(|| ConfigError {
                path: path.clone(),
                message: format!("provider `{}` is not configured", e.provider),
            })?;
            if provider.provider.dialect(&e.model).embeddings().is_none() {
                return Err(ConfigError {
                    path,
                    message: format!(
                        "provider `{}` has no embedding API Heimdall speaks (OpenAI-compatible, Gemini, Ollama)",
                        e.provider
                    ),
                });
            }
        }
        Ok(cache)
    }

    /// Every provider a virtual key names is one Heimdall knows (a misspelt name would allow
    /// nothing, silently).
    fn check_access_providers(&self) -> Result<(), ConfigError> {
        for (i, vk) in self.governance.entities.virtual_keys.iter().enumerate() {
            for (j, access) in vk.provider_configs.iter().enumerate() {
                let name = access.provider.as_str();
                if heimdall_providers::factory(name).is_some()
                    || self.provider(name).is_some()
                    || support::is_bifrost_only_provider(name)
                {
                    continue;
                }
                let mut known = known_providers();
                for p in &self.providers {
                    if !known.contains(&p.name.as_str()) {
                        known.push(&p.name);
                    }
                }
                return Err(ConfigError {
                    path: format!("governance.virtual_keys[{i}].provider_configs[{j}].provider"),
                    message: support::unknown_provider(name, &known),
                });
            }
        }
        Ok(())
    }

    /// Every configured fallback names a model the gateway can route; one whose provider is
    /// not configured is reported (a reload may add it) and skipped at request time.
    fn check_fallbacks(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        for p in &self.providers {
            let lists = std::iter::once((format!("providers.{}.fallbacks", p.name), &p.fallbacks))
                .chain(p.model_fallbacks.iter().map(|(model, list)| {
                    (
                        format!("providers.{}.model_fallbacks.{model}", p.name),
                        list,
                    )
                }));
            for (path, list) in lists {
                for (i, model) in list.iter().enumerate() {
                    let (provider, _) =
                        crate::route::split_model(self, model).map_err(|e| ConfigError {
                            path: format!("{path}[{i}]"),
                            message: e.message,
                        })?;
                    if self.provider(provider).is_none() {
                        warnings.push(format!(
                            "{path}[{i}]: provider `{provider}` is not configured; this fallback is skipped"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Heimdall's own `media_fetch` section (Bifrost has none): how images and documents given by
/// URL are fetched for upstreams that take bytes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFetchConfig {
    /// Off: URLs reach the encoder, which refuses them for such upstreams.
    pub enabled: bool,
    /// Loopback, private, link-local and other non-public addresses may be fetched.
    pub allow_private_addresses: bool,
    /// Hosts that may resolve to non-public addresses even when those are refused otherwise;
    /// lowercase, without brackets or a trailing dot.
    pub allowed_private_hosts: Vec<String>,
    pub max_object_bytes: usize,
    /// All objects of one request together.
    pub max_request_bytes: usize,
    pub max_objects_per_request: usize,
    /// One object, from connecting to its last byte, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl Default for MediaFetchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_addresses: false,
            allowed_private_hosts: Vec::new(),
            max_object_bytes: mb(20),
            max_request_bytes: mb(50),
            max_objects_per_request: 20,
            timeout: Duration::from_secs(10),
            max_redirects: 3,
        }
    }
}

/// The provider families Heimdall implements, in registry order.
pub(crate) fn known_providers() -> Vec<&'static str> {
    heimdall_providers::factories()
        .iter()
        .map(|f| f.name)
        .collect()
}

/// Splits the settings the reader ignored into those harmless to ignore (one warning) and
/// those that change security or billing (`unsupported`, each with the reason). An empty
/// value (`null`, `false`, `[]`, `{}`, `""`) asks for nothing, so ignoring it is harmless.
fn sort_ignored(
    what: &str,
    ignored: Vec<String>,
    tree: &serde_json::Value,
    warnings: &mut Vec<String>,
    unsupported: &mut Vec<String>,
) {
    let mut harmless = Vec::new();
    for path in ignored {
        let why =
            support::security_or_billing(&path).filter(|_| !support::is_empty_at(tree, &path));
        match why {
            Some(why) => unsupported.push(format!("{path}: {why}")),
            None => harmless.push(path),
        }
    }
    if !harmless.is_empty() {
        warnings.push(format!(
            "{what} accepted but not supported yet (ignored): {}",
            harmless.join(", ")
        ));
    }
}

/// `value` if it lies in `min..=max`, else an error naming the JSON path.
fn in_range<T: PartialOrd + fmt::Display + Copy>(
    path: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError {
            path: path.to_owned(),
            message: format!("{value} is out of range (allowed: {min} to {max})"),
        });
    }
    Ok(value)
}

/// `value` seconds if it lies in `min..=MAX_SECONDS`, else an error naming the JSON path.
fn seconds(path: &str, value: u64, min: u64) -> Result<Duration, ConfigError> {
    in_range(path, value, min, MAX_SECONDS).map(Duration::from_secs)
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

/// Reads one provider's section. Fields the provider family reads itself (its
/// `config_fields`, at the section's or a key's level) are left to it; other unknown fields
/// are collected in `ignored`.
fn parse_section(
    factory: &ProviderFactory,
    name: &str,
    section: &serde_json::Value,
    ignored: &mut Vec<String>,
) -> Result<RawProvider, ConfigError> {
    let mut note = |path: serde_ignored::Path<'_>| {
        let path = path.to_string();
        let claimed = path
            .split(['.', '[', ']'])
            .any(|segment| factory.config_fields.contains(&segment));
        if !claimed {
            ignored.push(format!("providers.{name}.{path}"));
        }
    };
    let tracked = serde_ignored::Deserializer::new(section, &mut note);
    serde_path_to_error::deserialize(tracked).map_err(|e| ConfigError {
        path: match e.path().to_string() {
            p if p == "." => format!("providers.{name}"),
            p => format!("providers.{name}.{p}"),
        },
        message: e.into_inner().to_string(),
    })
}

fn build_provider(
    factory: &'static ProviderFactory,
    name: String,
    section: serde_json::Value,
    deny_empty_models: bool,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    ignored: &mut Vec<String>,
) -> Result<ProviderConfig, ConfigError> {
    let raw = parse_section(factory, &name, &section, ignored)?;
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
        keys.push(KeyConfig::new(
            k.name.unwrap_or_else(|| format!("{name}-{i}")),
            i,
            Secret::new(value),
            models,
            k.weight,
        ));
    }
    let net = raw.network_config.unwrap_or_default();
    let mut base_url = None;
    if let Some(url) = net.base_url.filter(|u| !u.trim().is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError {
                path: format!("providers.{name}.network_config.base_url"),
                message: format!("`{url}` is not an http(s) URL"),
            });
        }
        base_url = Some(url.trim_end_matches('/').to_owned());
    }
    let allowed = raw
        .custom_provider_config
        .and_then(|c| c.allowed_requests)
        .map_or(AllowedRequests::ALL, AllowedRequests::from);
    let mut p = ProviderConfig::with_defaults(factory, name.clone(), base_url, section, keys)?;
    p.allowed = allowed;
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
    p.beta_overrides = BetaOverrides::new(net.beta_header_overrides.unwrap_or_default());
    let at = |field: &str| format!("providers.{name}.network_config.{field}");
    // Zero means "use the default", as in Bifrost. `unit` is a second or a millisecond.
    let duration = |field: &str, v: Option<u64>, unit: Duration, d: Duration| {
        let max = MAX_SECONDS * (Duration::from_secs(1).as_nanos() / unit.as_nanos()) as u64;
        match v.filter(|n| *n > 0) {
            Some(n) => in_range(&at(field), n, 1, max).map(|n| unit * n as u32),
            None => Ok(d),
        }
    };
    let (s1, ms) = (Duration::from_secs(1), Duration::from_millis(1));
    p.request_timeout = duration(
        "default_request_timeout_in_seconds",
        net.default_request_timeout_in_seconds,
        s1,
        p.request_timeout,
    )?;
    p.stream_idle_timeout = duration(
        "stream_idle_timeout_in_seconds",
        net.stream_idle_timeout_in_seconds,
        s1,
        p.stream_idle_timeout,
    )?;
    p.max_retries = in_range(
        &at("max_retries"),
        net.max_retries.unwrap_or(0),
        0,
        MAX_RETRIES,
    )?;
    p.retry_backoff_initial = duration(
        "retry_backoff_initial_ms",
        net.retry_backoff_initial_ms,
        ms,
        p.retry_backoff_initial,
    )?;
    p.retry_backoff_max = duration(
        "retry_backoff_max_ms",
        net.retry_backoff_max_ms,
        ms,
        p.retry_backoff_max,
    )?;
    if let Some(c) = raw.concurrency_and_buffer_size {
        let at = |field: &str| format!("providers.{name}.concurrency_and_buffer_size.{field}");
        let concurrency = in_range(
            &at("concurrency"),
            c.concurrency.unwrap_or(1000),
            1,
            1 << 20,
        )?;
        let buffer = in_range(
            &at("buffer_size"),
            c.buffer_size.unwrap_or(5000),
            0,
            1 << 24,
        )?;
        p.limiter = Some(Arc::new(Limiter::new(
            concurrency as usize,
            buffer as usize,
        )));
    }
    if let Some(c) = raw.circuit_breaker {
        let at = |field: &str| format!("providers.{name}.circuit_breaker.{field}");
        if let Some(v) = c.failure_threshold {
            p.circuit.failure_threshold = in_range(&at("failure_threshold"), v, 0, 1_000_000)?;
        }
        if let Some(v) = c.cooldown_seconds {
            p.circuit.cooldown =
                Duration::from_secs(in_range(&at("cooldown_seconds"), v, 1, MAX_SECONDS)?);
        }
    }
    p.fallbacks = raw.fallbacks.unwrap_or_default();
    p.model_fallbacks = raw.model_fallbacks.unwrap_or_default();
    if p.keys.is_empty() {
        warnings.push(format!(
            "provider `{name}` has no usable keys; requests to it will fail"
        ));
    }
    Ok(p)
}

/// `encryption_key`'s environment variables, Heimdall's first: read when config.json names no
/// key (as Bifrost reads its own).
fn encryption_key_from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Secret> {
    ["HEIMDALL_ENCRYPTION_KEY", "BIFROST_ENCRYPTION_KEY"]
        .into_iter()
        .filter_map(env)
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .map(Secret::new)
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default, rename = "$schema")]
    _schema: Option<String>,
    /// A passphrase, or `env.VAR`; empty: none (the environment's, if any).
    #[serde(default)]
    encryption_key: Option<String>,
    #[serde(default)]
    /// Read per provider family (see `parse_section`).
    providers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    client: RawClient,
    #[serde(default)]
    media_fetch: RawMediaFetch,
    #[serde(default)]
    logs_store: observability::RawLogsStore,
    #[serde(default)]
    plugins: Vec<observability::RawPlugin>,
    /// Heimdall's own: USD per million tokens by model.
    #[serde(default)]
    pricing: BTreeMap<String, Price>,
    #[serde(default)]
    governance: GovernanceConfig,
    #[serde(default)]
    config_store: observability::RawLogsStore,
    /// Heimdall's own: shared counters for governance.
    #[serde(default)]
    redis: Option<governance::RawRedis>,
    /// `null` in Bifrost's exports when unset.
    #[serde(default)]
    vector_store: Option<vector_store::RawVectorStore>,
}

#[derive(Deserialize, Default)]
struct RawMediaFetch {
    enabled: Option<bool>,
    allow_private_addresses: Option<bool>,
    allowed_private_hosts: Option<Vec<String>>,
    max_object_size_mb: Option<u64>,
    max_request_size_mb: Option<u64>,
    max_objects_per_request: Option<u64>,
    timeout_seconds: Option<u64>,
    max_redirects: Option<u64>,
}

impl RawMediaFetch {
    fn validate(self) -> Result<MediaFetchConfig, ConfigError> {
        let mut c = MediaFetchConfig::default();
        let at = |field: &str| format!("media_fetch.{field}");
        // Providers take a few MiB per object at most (Gemini's whole request: 20 MB).
        const MAX_OBJECT_MB: u64 = 1024;
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(v) = self.allow_private_addresses {
            c.allow_private_addresses = v;
        }
        for (i, host) in self
            .allowed_private_hosts
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let host = host
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if host.is_empty()
                || (host.contains(['/', ':']) && host.parse::<std::net::IpAddr>().is_err())
            {
                return Err(ConfigError {
                    path: format!("{}[{i}]", at("allowed_private_hosts")),
                    message: "expected a host name or an IP address, without scheme, port or path"
                        .into(),
                });
            }
            c.allowed_private_hosts.push(host);
        }
        if let Some(v) = self.max_object_size_mb {
            c.max_object_bytes = mb(in_range(&at("max_object_size_mb"), v, 1, MAX_OBJECT_MB)?);
        }
        if let Some(v) = self.max_request_size_mb {
            c.max_request_bytes = mb(in_range(&at("max_request_size_mb"), v, 1, MAX_MB)?);
        }
        if let Some(v) = self.max_objects_per_request {
            c.max_objects_per_request =
                count(in_range(&at("max_objects_per_request"), v, 1, 1000)?);
        }
        if let Some(v) = self.timeout_seconds {
            c.timeout = Duration::from_secs(in_range(&at("timeout_seconds"), v, 1, 3600)?);
        }
        if let Some(v) = self.max_redirects {
            c.max_redirects = count(in_range(&at("max_redirects"), v, 0, 20)?);
        }
        Ok(c)
    }
}

#[derive(Deserialize, Default)]
struct RawClient {
    max_request_body_size_mb: Option<u64>,
    models_cache_ttl_seconds: Option<u64>,
    max_stream_event_size_mb: Option<u64>,
    upstream_pool_idle_timeout_seconds: Option<u64>,
    upstream_connect_timeout_seconds: Option<u64>,
    max_upstream_response_size_mb: Option<u64>,
    max_upstream_error_body_kb: Option<u64>,
    header_filter_config: Option<RawHeaderFilter>,
    allow_direct_keys: Option<bool>,
    drop_excess_requests: Option<bool>,
    session_affinity_ttl_seconds: Option<u64>,
    session_affinity_max_sessions: Option<u64>,
    disable_content_logging: Option<bool>,
    log_retention_days: Option<u64>,
    async_job_result_ttl: Option<i64>,
    /// Read by `admin::parse`, which never quotes a value in its errors.
    admin_auth: Option<serde_json::Value>,
    enforce_auth_on_inference: Option<bool>,
    /// Bifrost's older name of `enforce_auth_on_inference`.
    enforce_governance_header: Option<bool>,
}

#[derive(Deserialize)]
struct RawHeaderFilter {
    allowlist: Option<Vec<String>>,
    denylist: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawProvider {
    #[serde(default)]
    keys: Vec<RawKey>,
    network_config: Option<RawNetwork>,
    custom_provider_config: Option<RawCustom>,
    concurrency_and_buffer_size: Option<RawConcurrency>,
    circuit_breaker: Option<RawCircuit>,
    fallbacks: Option<Vec<String>>,
    model_fallbacks: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
struct RawConcurrency {
    concurrency: Option<u64>,
    buffer_size: Option<u64>,
}

#[derive(Deserialize)]
struct RawCircuit {
    failure_threshold: Option<u32>,
    cooldown_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct RawCustom {
    #[serde(rename = "base_provider_type")]
    _base_provider_type: String,
    allowed_requests: Option<BTreeMap<String, bool>>,
}

/// Which operations a provider may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedRequests {
    pub messages: bool,
    pub stream: bool,
    pub count_tokens: bool,
    pub list_models: bool,
}

impl AllowedRequests {
    pub const ALL: AllowedRequests = AllowedRequests {
        messages: true,
        stream: true,
        count_tokens: true,
        list_models: true,
    };
}

/// Bifrost's names; a request type the map leaves out is not allowed.
impl From<BTreeMap<String, bool>> for AllowedRequests {
    fn from(map: BTreeMap<String, bool>) -> Self {
        let on = |k: &str| map.get(k).copied().unwrap_or(false);
        Self {
            messages: on("chat_completion"),
            stream: on("chat_completion_stream"),
            count_tokens: on("count_tokens"),
            list_models: on("list_models"),
        }
    }
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
    beta_header_overrides: Option<BTreeMap<String, bool>>,
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
        let p = cfg.provider("openai").unwrap();
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys[0].value.expose(), "sk-from-env");
        assert!(p.keys[0].models.allows("gpt-4o-mini") && !p.keys[0].models.allows("gpt-4o"));
        assert_eq!(p.request_timeout, Duration::from_secs(7));
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.extra_headers["x-team"], "t");
        assert_eq!(cfg.max_request_body_bytes, 2 * 1024 * 1024);
        assert_eq!(p.limiter.as_ref().unwrap().settings(), (10, 5000));
        let all = cfg.warnings.join("\n");
        for needle in ["client.enable_logging", "provider `bedrock`", "MISSING"] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
        assert!(!format!("{cfg:?}").contains("sk-from-env"));
    }

    #[test]
    fn settings_that_change_security_or_billing_are_unsupported_unless_empty() {
        let cfg = Config::from_json(
            r#"{"mcp": {"client_configs": [{"name": "fs"}]}, "routing_rules": [],
                "encryption_key": "", "websocket": {"enabled": true},
                "client": {"allowed_origins": ["https://a.example"], "prometheus_labels": ["x"]},
                "providers": {"openai": {"keys": [{"value": "k"}],
                                         "proxy_config": {"type": "http", "url": "http://p"}}},
                "plugins": [{"name": "guardrails", "enabled": true, "config": {}},
                            {"name": "telemetry", "enabled": true, "config": {}},
                            {"name": "maxim", "enabled": false, "config": {}}]}"#,
            &env,
        )
        .unwrap();
        let refused = cfg.unsupported.join("\n");
        for path in [
            "mcp",
            "client.allowed_origins",
            "providers.openai.proxy_config",
            "plugin `guardrails`",
        ] {
            assert!(refused.contains(path), "{path} not in {refused}");
        }
        let warned = cfg.warnings.join("\n");
        for path in [
            "routing_rules",
            "websocket",
            "client.prometheus_labels",
            "plugin `telemetry`",
        ] {
            assert!(
                warned.contains(path) && !refused.contains(path),
                "{path}: {warned} / {refused}"
            );
        }
        let err = cfg.check_supported().unwrap_err().to_string();
        assert!(
            err.contains("mcp") && err.contains("--allow-unsupported-config"),
            "{err}"
        );
        let plain = Config::from_json(r#"{"routing_rules": []}"#, &env).unwrap();
        assert!(plain.check_supported().is_ok());
    }

    #[test]
    fn the_encryption_key_comes_from_the_file_or_the_environment() {
        let vars = |var: &str| match var {
            "PASSPHRASE" => Some(" from-file-var ".to_owned()),
            "HEIMDALL_ENCRYPTION_KEY" => Some("heimdall-var".to_owned()),
            "BIFROST_ENCRYPTION_KEY" => Some("bifrost-var".to_owned()),
            _ => None,
        };
        let bifrost_only = |var: &str| (var == "BIFROST_ENCRYPTION_KEY").then(|| "b".to_owned());
        let key = |text: &str, env: &dyn Fn(&str) -> Option<String>| {
            Config::from_json(text, env)
                .unwrap()
                .encryption_key
                .map(|k| k.expose().to_owned())
        };
        assert_eq!(
            key(r#"{"encryption_key": "literal"}"#, &vars).as_deref(),
            Some("literal")
        );
        assert_eq!(
            key(r#"{"encryption_key": "env.PASSPHRASE"}"#, &vars).as_deref(),
            Some("from-file-var")
        );
        // None in the file (or an empty one): the environment's, Heimdall's name first.
        assert_eq!(
            key(r#"{"encryption_key": ""}"#, &vars).as_deref(),
            Some("heimdall-var")
        );
        assert_eq!(key("{}", &bifrost_only).as_deref(), Some("b"));
        assert_eq!(key("{}", &env), None);
        assert_eq!(
            Config::from_env(&bifrost_only)
                .encryption_key
                .map(|k| k.expose().to_owned())
                .as_deref(),
            Some("b")
        );
        let err = Config::from_json(r#"{"encryption_key": "env.NOT_SET"}"#, &env).unwrap_err();
        assert_eq!(err.path, "encryption_key");
        let cfg = Config::from_json(r#"{"encryption_key": "hunter22"}"#, &env).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter22"));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let storeless = Config::from_json(
            r#"{"encryption_key": "hunter22", "config_store": {"enabled": false}}"#,
            &env,
        )
        .unwrap();
        assert!(
            storeless
                .warnings
                .iter()
                .any(|w| w.contains("encryption_key")),
            "{:?}",
            storeless.warnings
        );
    }

    #[test]
    fn a_misspelt_provider_is_refused_with_the_nearest_name() {
        let err = Config::from_json(
            r#"{"providers": {"opnai": {"keys": [{"value": "k"}]}}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(err.path, "providers.opnai");
        assert!(err.message.contains("did you mean `openai`?"), "{err}");
        assert!(err.message.contains("known: anthropic, openai"), "{err}");
        let err = Config::from_json(
            r#"{"providers": {"mine": {"keys": [{"value": "k"}], "network_config": {"base_url": "http://x"},
                "custom_provider_config": {"base_provider_type": "antropic"}}}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.path,
            "providers.mine.custom_provider_config.base_provider_type"
        );
        assert!(err.message.contains("did you mean `anthropic`?"), "{err}");
        let err = Config::from_json(
            r#"{"governance": {"virtual_keys": [{"id": "k", "value": "sk-bf-k",
                "provider_configs": [{"provider": "opnai"}]}]}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.path,
            "governance.virtual_keys[0].provider_configs[0].provider"
        );
        assert!(err.message.contains("did you mean `openai`?"), "{err}");
        // Bifrost's own providers that Heimdall lacks are unsupported, not typos.
        let cfg = Config::from_json(
            r#"{"providers": {"cohere": {"keys": [{"value": "k"}]}}}"#,
            &env,
        )
        .unwrap();
        assert!(cfg.unsupported.join("").contains("providers.cohere"));
    }

    #[test]
    fn type_errors_speak_json() {
        let err = Config::from_json(
            r#"{"providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"}]}}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(err.path, "providers.openai.keys[0].weight");
        assert!(err.message.ends_with("expected a number"), "{err}");
        let err =
            Config::from_json(r#"{"client": {"max_request_body_size_mb": -1}}"#, &env).unwrap_err();
        assert!(
            err.message.contains("expected a whole number of 0 or more"),
            "{err}"
        );
        let err =
            Config::from_json(r#"{"providers": {"openai": {"keys": {}}}}"#, &env).unwrap_err();
        assert!(err.message.contains("object, expected an array"), "{err}");
    }

    #[test]
    fn bifrost_governance_fields_heimdall_does_not_use_are_named_not_fatal() {
        let cfg = Config::from_json(
            r#"{"governance": {
                 "virtual_keys": [{"id": "k", "value": "sk-bf-k", "mcp_configs": [],
                                   "access_profile_id": 3}],
                 "routing_rules": [], "model_configs": []}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(cfg.governance.entities.virtual_keys[0].id, "k");
        let all = cfg.warnings.join("\n");
        for field in [
            "governance.routing_rules",
            "governance.virtual_keys.0.mcp_configs",
        ] {
            assert!(all.contains(field), "{field} not in {all}");
        }
        // Set, it would restrict the key: refused unless the operator opts out.
        let refused = cfg.unsupported.join("\n");
        assert!(refused.contains("access_profile_id"), "{refused}");
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
    fn huge_values_are_refused_with_their_path() {
        for (field, path) in [
            (
                r#""network_config":{"stream_idle_timeout_in_seconds":18446744073709551615}"#,
                "providers.openai.network_config.stream_idle_timeout_in_seconds",
            ),
            (
                r#""network_config":{"retry_backoff_max_ms":18446744073709551000}"#,
                "providers.openai.network_config.retry_backoff_max_ms",
            ),
            (
                r#""network_config":{"default_request_timeout_in_seconds":9999999999}"#,
                "providers.openai.network_config.default_request_timeout_in_seconds",
            ),
            (
                r#""network_config":{"max_retries":4000000000}"#,
                "providers.openai.network_config.max_retries",
            ),
        ] {
            let text = format!(r#"{{"providers":{{"openai":{{"keys":[],{field}}}}}}}"#);
            let e = Config::from_json(&text, &env).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains("out of range"), "{e}");
        }
        let e = Config::from_json(
            r#"{"client":{"max_request_body_size_mb":18446744073709551615}}"#,
            &env,
        )
        .unwrap_err();
        assert_eq!(e.path, "client.max_request_body_size_mb");
    }

    #[test]
    fn media_fetch_section_has_defaults_and_range_checks() {
        let c = Config::from_json("{}", &env).unwrap();
        assert_eq!(c.media_fetch, MediaFetchConfig::default());
        assert!(c.media_fetch.enabled && !c.media_fetch.allow_private_addresses);
        let c = Config::from_json(
            r#"{"media_fetch": {"enabled": false, "allow_private_addresses": true,
                "allowed_private_hosts": ["Images.Internal.", "[fd00::1]", "10.0.0.5"],
                "max_object_size_mb": 5, "max_request_size_mb": 8, "max_objects_per_request": 3,
                "timeout_seconds": 2, "max_redirects": 0}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(
            c.media_fetch,
            MediaFetchConfig {
                enabled: false,
                allow_private_addresses: true,
                allowed_private_hosts: vec![
                    "images.internal".into(),
                    "fd00::1".into(),
                    "10.0.0.5".into()
                ],
                max_object_bytes: 5 * 1024 * 1024,
                max_request_bytes: 8 * 1024 * 1024,
                max_objects_per_request: 3,
                timeout: Duration::from_secs(2),
                max_redirects: 0,
            }
        );
        for (field, path) in [
            (
                r#""max_object_size_mb": 0"#,
                "media_fetch.max_object_size_mb",
            ),
            (
                r#""max_object_size_mb": 4096"#,
                "media_fetch.max_object_size_mb",
            ),
            (
                r#""max_request_size_mb": 0"#,
                "media_fetch.max_request_size_mb",
            ),
            (
                r#""max_objects_per_request": 0"#,
                "media_fetch.max_objects_per_request",
            ),
            (r#""timeout_seconds": 0"#, "media_fetch.timeout_seconds"),
            (r#""max_redirects": 21"#, "media_fetch.max_redirects"),
            (
                r#""allowed_private_hosts": ["http://x/"]"#,
                "media_fetch.allowed_private_hosts[0]",
            ),
            (
                r#""allowed_private_hosts": ["x:80"]"#,
                "media_fetch.allowed_private_hosts[0]",
            ),
        ] {
            let e =
                Config::from_json(&format!(r#"{{"media_fetch": {{{field}}}}}"#), &env).unwrap_err();
            assert_eq!(e.path, path, "{field}: {e}");
        }
        let c = Config::from_json(r#"{"media_fetch": {"max_bytes": 1}}"#, &env).unwrap();
        assert!(c.warnings.join("\n").contains("media_fetch.max_bytes"));
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
    fn resilience_settings_are_read_and_checked() {
        let c = Config::from_json(
            r#"{"client": {"allow_direct_keys": true, "drop_excess_requests": true,
                           "session_affinity_ttl_seconds": 60, "session_affinity_max_sessions": 0},
                "providers": {"anthropic": {"keys": [{"value": "k"}],
                    "circuit_breaker": {"failure_threshold": 0, "cooldown_seconds": 9},
                    "concurrency_and_buffer_size": {"concurrency": 4, "buffer_size": 2},
                    "fallbacks": ["openai/gpt-4o-mini"],
                    "model_fallbacks": {"claude-x": ["gemini/g", "claude-y"]}}}}"#,
            &env,
        )
        .unwrap();
        assert!(c.allow_direct_keys && c.drop_excess_requests);
        assert_eq!(
            c.session_affinity,
            AffinitySettings {
                ttl: Duration::from_secs(60),
                max_sessions: 0
            }
        );
        let p = c.provider("anthropic").unwrap();
        assert_eq!(
            p.circuit,
            CircuitSettings {
                failure_threshold: 0,
                cooldown: Duration::from_secs(9)
            }
        );
        assert_eq!(p.limiter.as_ref().unwrap().settings(), (4, 2));
        assert_eq!(p.fallbacks_of("claude-z"), ["openai/gpt-4o-mini"]);
        assert_eq!(p.fallbacks_of("claude-x"), ["gemini/g", "claude-y"]);
        // Fallbacks to providers that are not configured are reported, not refused.
        let all = c.warnings.join("\n");
        assert!(
            all.contains("providers.anthropic.fallbacks[0]: provider `openai` is not configured"),
            "{all}"
        );
        for (text, path) in [
            (
                r#"{"providers": {"openai": {"keys": [], "fallbacks": ["nope/x"]}}}"#,
                "providers.openai.fallbacks[0]",
            ),
            (
                r#"{"providers": {"openai": {"keys": [], "model_fallbacks": {"m": ["a", "openai/"]}}}}"#,
                "providers.openai.model_fallbacks.m[1]",
            ),
            (
                r#"{"providers": {"openai": {"keys": [], "concurrency_and_buffer_size": {"concurrency": 0}}}}"#,
                "providers.openai.concurrency_and_buffer_size.concurrency",
            ),
            (
                r#"{"providers": {"openai": {"keys": [], "circuit_breaker": {"cooldown_seconds": 0}}}}"#,
                "providers.openai.circuit_breaker.cooldown_seconds",
            ),
            (
                r#"{"client": {"session_affinity_ttl_seconds": 0}}"#,
                "client.session_affinity_ttl_seconds",
            ),
        ] {
            let e = Config::from_json(text, &env).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
    }

    #[test]
    fn a_reload_keeps_the_state_of_what_did_not_change() {
        let text = |value: &str, concurrency: u32| {
            format!(
                r#"{{"providers": {{"openai": {{"keys": [{{"name": "a", "value": "{value}"}}, {{"name": "b", "value": "kb"}}],
                    "concurrency_and_buffer_size": {{"concurrency": {concurrency}}}}}}}}}"#
            )
        };
        let old = Config::from_json(&text("ka", 2), &env).unwrap();
        let mut same = Config::from_json(&text("ka", 2), &env).unwrap();
        same.inherit_state(&old);
        let (o, n) = (&old.providers[0], &same.providers[0]);
        assert!(Arc::ptr_eq(&o.keys[0].health, &n.keys[0].health));
        assert!(Arc::ptr_eq(
            o.limiter.as_ref().unwrap(),
            n.limiter.as_ref().unwrap()
        ));
        // A new value for key `a` is a new key; other limits are a new limiter.
        let mut changed = Config::from_json(&text("ka2", 3), &env).unwrap();
        changed.inherit_state(&old);
        let n = &changed.providers[0];
        assert!(!Arc::ptr_eq(&o.keys[0].health, &n.keys[0].health));
        assert!(Arc::ptr_eq(&o.keys[1].health, &n.keys[1].health));
        assert!(!Arc::ptr_eq(
            o.limiter.as_ref().unwrap(),
            n.limiter.as_ref().unwrap()
        ));
    }

    #[test]
    fn env_start_enables_providers_with_keys() {
        let cfg = Config::from_env(&|v| (v == "OPENAI_API_KEY").then(|| "sk".to_owned()));
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.providers[0].name, "openai");
    }
}
