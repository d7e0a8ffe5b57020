//! Bifrost's `vector_store` section: where the semantic cache keeps its entries and vectors so
//! that instances share them. Heimdall implements the `redis` type on plain Redis (no search
//! module: each instance keeps the vector index in memory, in sync through Redis).
//!
//! ```json
//! "vector_store": {"enabled": true, "type": "redis",
//!   "config": {"addr": "localhost:6379", "username": "", "password": "env.REDIS_PASSWORD", "db": 0}}
//! ```
//!
//! `addr` may also be a whole `redis://` or `rediss://` URL. Heimdall's own fields:
//! `key_prefix` and `timeout_ms`. Bifrost's pool and timeout settings are accepted and named
//! in the start-up warning as ignored.

use std::time::Duration;

use serde::Deserialize;

use super::observability::resolve;
use super::{ConfigError, Secret, in_range};

/// Vector stores of Bifrost's that Heimdall does not talk to.
const OTHER_TYPES: &[&str] = &["weaviate", "qdrant", "pinecone"];

/// A Redis shared by the instances' semantic caches.
#[derive(Debug, Clone)]
pub struct VectorStoreSettings {
    /// `redis://[user:password@]host:port/db` (or `rediss://`).
    pub url: Secret,
    /// Prefix of every key the cache writes, so that deployments can share a server.
    pub key_prefix: String,
    /// Longest wait for connecting and for one Redis call.
    pub timeout: Duration,
}

#[derive(Deserialize, Default)]
pub(super) struct RawVectorStore {
    enabled: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
    config: Option<RawRedisStore>,
}

#[derive(Deserialize, Default)]
struct RawRedisStore {
    addr: Option<String>,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
}

impl RawVectorStore {
    /// The Redis to share the cache through; `None` when disabled, absent, or of a type
    /// Heimdall does not implement (a warning says so: the cache then stays per instance).
    pub(super) fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<VectorStoreSettings>, ConfigError> {
        let c = self.config.unwrap_or_default();
        if self.enabled == Some(false) || (self.kind.is_none() && c.addr.is_none()) {
            return Ok(None);
        }
        match self.kind.as_deref() {
            Some("redis") => {}
            Some(other) if OTHER_TYPES.contains(&other) => {
                warnings.push(format!(
                    "vector_store.type `{other}` is not supported yet (only redis): each instance keeps its own semantic cache"
                ));
                return Ok(None);
            }
            other => {
                let known = format!("redis, {}", OTHER_TYPES.join(", "));
                return Err(ConfigError {
                    path: "vector_store.type".into(),
                    message: match other {
                        Some(t) => format!("`{t}` is not a vector store type ({known})"),
                        None => format!("missing: one of {known}"),
                    },
                });
            }
        }
        let at = |field: &str| format!("vector_store.config.{field}");
        let text = |field: &str, v: Option<String>| -> Result<String, ConfigError> {
            v.map_or_else(|| Ok(String::new()), |v| resolve(&at(field), &v, env))
        };
        let addr = text("addr", c.addr)?;
        let (username, password) = (text("username", c.username)?, text("password", c.password)?);
        let url = if addr.starts_with("redis://") || addr.starts_with("rediss://") {
            if !username.is_empty() || !password.is_empty() || c.db.is_some() {
                return Err(ConfigError {
                    path: at("addr"),
                    message: "a URL carries its own credentials and database: leave out username, password and db".into(),
                });
            }
            addr
        } else {
            if addr.is_empty() || addr.contains(['/', '@', ' ']) {
                return Err(ConfigError {
                    path: at("addr"),
                    message: "expected host:port (or a redis:// URL)".into(),
                });
            }
            // Redis's `databases` setting has no fixed ceiling; this only catches nonsense.
            let db = in_range(&at("db"), c.db.unwrap_or(0), 0, 65_535)?;
            let credentials = match (username.is_empty(), password.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!(":{}@", escape(&password)),
                (false, _) => format!("{}:{}@", escape(&username), escape(&password)),
            };
            format!("redis://{credentials}{addr}/{db}")
        };
        let timeout_ms = in_range(&at("timeout_ms"), c.timeout_ms.unwrap_or(2_000), 1, 60_000)?;
        Ok(Some(VectorStoreSettings {
            url: Secret::new(url),
            key_prefix: c.key_prefix.unwrap_or_else(|| "heimdall:cache:".to_owned()),
            timeout: Duration::from_millis(timeout_ms),
        }))
    }
}

/// Percent-encodes a URL's user or password: everything but unreserved characters.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(section: serde_json::Value) -> Result<Option<VectorStoreSettings>, ConfigError> {
        let env = |var: &str| (var == "REDIS_PASSWORD").then(|| "p@ss:w/rd".to_owned());
        let raw: RawVectorStore = serde_json::from_value(section).unwrap();
        raw.validate(&env, &mut Vec::new())
    }

    fn url(section: serde_json::Value) -> String {
        parse(section).unwrap().unwrap().url.expose().to_owned()
    }

    #[test]
    fn reads_bifrosts_redis_fields_and_a_url() {
        let s = parse(serde_json::json!({"enabled": true, "type": "redis",
            "config": {"addr": "localhost:6379", "username": "", "password": "", "db": 0}}))
        .unwrap()
        .unwrap();
        assert_eq!(s.url.expose(), "redis://localhost:6379/0");
        assert_eq!(
            (s.key_prefix.as_str(), s.timeout),
            ("heimdall:cache:", Duration::from_secs(2))
        );
        assert_eq!(
            url(
                serde_json::json!({"type": "redis", "config": {"addr": "r:6380",
                "username": "app", "password": "env.REDIS_PASSWORD", "db": 3}})
            ),
            "redis://app:p%40ss%3Aw%2Frd@r:6380/3"
        );
        assert_eq!(
            url(serde_json::json!({"type": "redis",
                "config": {"addr": "rediss://:secret@r:6380/2", "key_prefix": "x:"}})),
            "rediss://:secret@r:6380/2"
        );
        assert!(format!("{s:?}").contains("Secret(***)"));
    }

    #[test]
    fn absent_disabled_or_another_type_shares_nothing_and_mistakes_name_their_field() {
        assert!(parse(serde_json::json!({})).unwrap().is_none());
        assert!(
            parse(serde_json::json!({"enabled": false, "type": "redis"}))
                .unwrap()
                .is_none()
        );
        let mut warnings = Vec::new();
        let raw: RawVectorStore =
            serde_json::from_value(serde_json::json!({"type": "weaviate"})).unwrap();
        assert!(raw.validate(&|_| None, &mut warnings).unwrap().is_none());
        assert!(warnings[0].contains("weaviate"), "{warnings:?}");
        for (section, path) in [
            (
                serde_json::json!({"type": "redis"}),
                "vector_store.config.addr",
            ),
            (
                serde_json::json!({"type": "mongo", "config": {"addr": "h:1"}}),
                "vector_store.type",
            ),
            (
                serde_json::json!({"config": {"addr": "h:1"}}),
                "vector_store.type",
            ),
            (
                serde_json::json!({"type": "redis", "config": {"addr": "h:1", "db": 70_000}}),
                "vector_store.config.db",
            ),
            (
                serde_json::json!({"type": "redis", "config": {"addr": "redis://h", "db": 1}}),
                "vector_store.config.addr",
            ),
            (
                serde_json::json!({"type": "redis", "config": {"addr": "h:1", "timeout_ms": 0}}),
                "vector_store.config.timeout_ms",
            ),
            (
                serde_json::json!({"type": "redis", "config": {"addr": "env.NOT_SET"}}),
                "vector_store.config.addr",
            ),
        ] {
            assert_eq!(parse(section.clone()).unwrap_err().path, path, "{section}");
        }
    }
}
