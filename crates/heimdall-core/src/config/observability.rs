//! The sections that say where records go: Bifrost's `logs_store` (request logs and async
//! jobs), the logging settings of `client`, and the `otel` plugin.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MAX_SECONDS, Secret, in_range};

/// Where request logs and async jobs are kept (`logs_store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file; a relative path is taken from the app dir.
    Sqlite {
        path: PathBuf,
    },
    Postgres(PostgresConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sqlite {
            path: PathBuf::from("logs.db"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub db_name: String,
    /// libpq's `sslmode` values: disable, allow, prefer, require, verify-ca, verify-full.
    pub ssl_mode: String,
    pub max_open_conns: u32,
}

/// Request logging, async jobs' results and their lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `None`: `logs_store.enabled` is false; nothing is stored and async inference is off.
    pub store: Option<StoreConfig>,
    /// `client.disable_content_logging`: records keep no request or response content.
    pub disable_content: bool,
    /// `client.log_retention_days`; `None` keeps logs forever (0 in the file).
    pub retention: Option<Duration>,
    /// `client.async_job_result_ttl`: how long a finished job's result can be read.
    pub async_result_ttl: Duration,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            store: Some(StoreConfig::default()),
            disable_content: false,
            retention: Some(Duration::from_secs(365 * 86_400)),
            async_result_ttl: Duration::from_secs(3600),
        }
    }
}

impl LoggingConfig {
    /// Whether requests keep their content for the store.
    pub fn keeps_content(&self) -> bool {
        self.store.is_some() && !self.disable_content
    }
}

/// OTLP transport of the `otel` plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Http,
    Grpc,
}

/// The `otel` plugin: spans following the GenAI semantic conventions, exported over OTLP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    /// The collector's address: for http the traces endpoint (`/v1/traces` is added when the
    /// URL has no path), for grpc the server's `http://host:port`.
    pub collector_url: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    /// Sent with every export (an API key of the collector, say); values may be `env.VAR`.
    pub headers: Vec<(String, Secret)>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawLogsStore {
    enabled: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    config: RawStoreSettings,
}

#[derive(Deserialize, Default)]
struct RawStoreSettings {
    path: Option<String>,
    host: Option<String>,
    port: Option<serde_json::Value>,
    user: Option<String>,
    password: Option<String>,
    db_name: Option<String>,
    ssl_mode: Option<String>,
    max_open_conns: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct RawPlugin {
    #[serde(default = "yes")]
    enabled: bool,
    name: String,
    #[serde(default)]
    config: serde_json::Value,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawOtel {
    collector_url: String,
    protocol: Option<String>,
    service_name: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// A string field that may be `env.VAR`.
pub(super) fn resolve(
    path: &str,
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match value.strip_prefix("env.") {
        Some(var) => env(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConfigError {
                path: path.to_owned(),
                message: format!("environment variable {var} is not set"),
            }),
        None => Ok(value.to_owned()),
    }
}

impl RawLogsStore {
    /// Reads the section named `section` (`logs_store` or `config_store`, which share the
    /// layout); SQLite's file is `default_file` in the app dir unless `config.path` says.
    pub(super) fn validate(
        self,
        section: &str,
        default_file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<StoreConfig>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let c = self.config;
        let at = |field: &str| format!("{section}.config.{field}");
        match self.kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => Ok(Some(StoreConfig::Sqlite {
                path: PathBuf::from(c.path.as_deref().unwrap_or(default_file)),
            })),
            "postgres" => {
                let text = |field: &str, v: Option<String>, default: &str| {
                    resolve(&at(field), v.as_deref().unwrap_or(default), env)
                };
                // Bifrost writes the port as a string; a number is taken too.
                let port = match c.port {
                    None => 5432,
                    Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                    Some(serde_json::Value::String(s)) => resolve(&at("port"), &s, env)?
                        .parse()
                        .map_err(|_| ConfigError {
                            path: at("port"),
                            message: format!("`{s}` is not a port number"),
                        })?,
                    Some(other) => {
                        return Err(ConfigError {
                            path: at("port"),
                            message: format!("expected a port number, got {other}"),
                        });
                    }
                };
                let ssl_mode = text("ssl_mode", c.ssl_mode, "disable")?;
                const MODES: [&str; 6] = [
                    "disable",
                    "allow",
                    "prefer",
                    "require",
                    "verify-ca",
                    "verify-full",
                ];
                if !MODES.contains(&ssl_mode.as_str()) {
                    return Err(ConfigError {
                        path: at("ssl_mode"),
                        message: format!("`{ssl_mode}` is not one of {}", MODES.join(", ")),
                    });
                }
                Ok(Some(StoreConfig::Postgres(PostgresConfig {
                    host: text("host", c.host, "localhost")?,
                    port: u16::try_from(in_range(&at("port"), port, 1, 65_535)?).unwrap_or(5432),
                    user: text("user", c.user, "postgres")?,
                    password: Secret::new(text("password", c.password, "")?),
                    db_name: text("db_name", c.db_name, "heimdall")?,
                    ssl_mode,
                    max_open_conns: in_range(
                        &at("max_open_conns"),
                        c.max_open_conns.unwrap_or(8),
                        1,
                        1000,
                    )?,
                })))
            }
            other => Err(ConfigError {
                path: format!("{section}.type"),
                message: format!("`{other}` is not a supported store (sqlite, postgres)"),
            }),
        }
    }
}

/// The plugins Heimdall runs.
#[derive(Default)]
pub(super) struct Plugins {
    pub otel: Option<OtelConfig>,
    /// With its place in the list, for errors found once providers are known.
    pub cache: Option<(usize, heimdall_cache::CacheConfig)>,
    /// Enabled plugins Heimdall does not implement whose absence changes what is allowed or
    /// billed (see `support`).
    pub unsupported: Vec<String>,
}

/// Reads `plugins`: the `otel` and `semantic_cache` plugins' settings; other plugins are
/// named in `warnings`.
pub(super) fn plugins(
    list: Vec<RawPlugin>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Plugins, ConfigError> {
    let mut found = Plugins::default();
    for (i, plugin) in list.into_iter().enumerate() {
        if !plugin.enabled {
            continue;
        }
        if plugin.name == "semantic_cache" {
            let cache = heimdall_cache::parse(plugin.config).map_err(|e| ConfigError {
                path: if e.field.is_empty() {
                    format!("plugins[{i}].config")
                } else {
                    format!("plugins[{i}].config.{}", e.field)
                },
                message: e.message,
            })?;
            found.cache = Some((i, cache));
            continue;
        }
        if plugin.name != "otel" {
            let note = format!(
                "plugins[{i}]: plugin `{}` is not supported yet; ignored",
                plugin.name
            );
            match super::support::unsupported_plugin(&plugin.name) {
                Some(why) => found.unsupported.push(format!("{note} ({why})")),
                None => warnings.push(note),
            }
            continue;
        }
        let at = |field: &str| format!("plugins[{i}].config.{field}");
        let raw: RawOtel = serde_json::from_value(plugin.config).map_err(|e| ConfigError {
            path: format!("plugins[{i}].config"),
            message: e.to_string(),
        })?;
        let collector_url = resolve(&at("collector_url"), &raw.collector_url, env)?;
        if !(collector_url.starts_with("http://") || collector_url.starts_with("https://")) {
            return Err(ConfigError {
                path: at("collector_url"),
                message: format!("`{collector_url}` is not an http(s) URL"),
            });
        }
        let protocol = match raw.protocol.as_deref().unwrap_or("http") {
            "http" => OtlpProtocol::Http,
            "grpc" => OtlpProtocol::Grpc,
            other => {
                return Err(ConfigError {
                    path: at("protocol"),
                    message: format!("`{other}` is not http or grpc"),
                });
            }
        };
        let headers = raw
            .headers
            .into_iter()
            .map(|(name, value)| {
                let path = at(&format!("headers.{name}"));
                Ok((name, Secret::new(resolve(&path, &value, env)?)))
            })
            .collect::<Result<_, ConfigError>>()?;
        found.otel = Some(OtelConfig {
            collector_url,
            protocol,
            service_name: raw.service_name.unwrap_or_else(|| "heimdall".to_owned()),
            headers,
        });
    }
    Ok(found)
}

/// `client.log_retention_days` (0: forever) and `client.async_job_result_ttl` (seconds; 0 or
/// less: the default, as Bifrost does).
pub(super) fn lifetimes(
    logging: &mut LoggingConfig,
    retention_days: Option<u64>,
    async_ttl: Option<i64>,
) -> Result<(), ConfigError> {
    if let Some(days) = retention_days {
        let days = in_range("client.log_retention_days", days, 0, 100 * 365)?;
        logging.retention = (days > 0).then(|| Duration::from_secs(days * 86_400));
    }
    if let Some(ttl) = async_ttl.filter(|t| *t > 0) {
        let ttl = in_range(
            "client.async_job_result_ttl",
            ttl.unsigned_abs(),
            1,
            MAX_SECONDS,
        )?;
        logging.async_result_ttl = Duration::from_secs(ttl);
    }
    Ok(())
}
