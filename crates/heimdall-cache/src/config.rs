//! The `semantic_cache` plugin's settings (`plugins[].config` in `config.json`), in Bifrost's
//! field names, plus Heimdall's own bound on what the cache holds.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Bifrost's defaults.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const DEFAULT_THRESHOLD: f32 = 0.8;
const DEFAULT_HISTORY_THRESHOLD: usize = 3;
/// Heimdall's own: entries (answers and vectors) held in memory, all together.
const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Longest lifetime an entry may be given (a week), by the file or a request.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest vector accepted: beyond any embedding model in use.
const MAX_DIMENSION: u64 = 16_384;

/// What the plugin was configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Where embeddings come from; `None`: direct lookups only.
    pub embedding: Option<EmbeddingConfig>,
    /// Length of the embedding vectors (`1` with no provider: direct-only mode).
    pub dimension: usize,
    /// Least cosine similarity of a semantic hit.
    pub threshold: f32,
    /// How long an entry answers.
    pub ttl: Duration,
    /// The model is part of an entry's identity.
    pub cache_by_model: bool,
    /// The provider is part of an entry's identity.
    pub cache_by_provider: bool,
    /// Requests with more messages than this are neither looked up nor stored.
    pub conversation_history_threshold: usize,
    /// The system prompt is left out of keys and of the text embedded.
    pub exclude_system_prompt: bool,
    /// Every entry is deleted when the gateway stops.
    pub cleanup_on_shutdown: bool,
    /// The cache key of requests that send no `x-bf-cache-key`; `None`: those are not cached.
    pub default_cache_key: Option<String>,
    /// Heimdall's own `max_size_mb`: answers and vectors held; past it nothing new is stored
    /// until entries expire or are cleared.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// A configured provider's name.
    pub provider: String,
    pub model: String,
}

/// A setting that is wrong: the field (under the plugin's `config`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    provider: Option<String>,
    embedding_model: Option<String>,
    dimension: Option<u64>,
    threshold: Option<f64>,
    ttl: Option<Value>,
    cache_by_model: Option<bool>,
    cache_by_provider: Option<bool>,
    conversation_history_threshold: Option<u64>,
    exclude_system_prompt: Option<bool>,
    cleanup_on_shutdown: Option<bool>,
    default_cache_key: Option<String>,
    max_size_mb: Option<u64>,
    /// Bifrost's own: its vector store's key prefix and embedding keys; accepted, unused
    /// (entries live in the gateway's store, embeddings use the provider's configured keys).
    #[serde(rename = "keys")]
    _keys: Option<Value>,
    #[serde(rename = "vector_store_namespace")]
    _namespace: Option<Value>,
}

/// Reads the plugin's `config` object.
pub fn parse(config: Value) -> Result<CacheConfig, Invalid> {
    let raw: Raw = serde_json::from_value(if config.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        config
    })
    .map_err(|e| Invalid::new("", e.to_string()))?;
    let embedding = match (raw.provider, raw.embedding_model) {
        (None, None) => None,
        (Some(provider), Some(model)) if !provider.is_empty() && !model.is_empty() => {
            Some(EmbeddingConfig { provider, model })
        }
        (Some(_), _) => {
            return Err(Invalid::new(
                "embedding_model",
                "required with `provider` (the model that embeds requests)",
            ));
        }
        (None, Some(_)) => {
            return Err(Invalid::new(
                "provider",
                "required with `embedding_model` (the provider that embeds requests)",
            ));
        }
    };
    let dimension = match (raw.dimension, &embedding) {
        (Some(d), _) if (1..=MAX_DIMENSION).contains(&d) => d,
        (Some(d), _) => {
            return Err(Invalid::new(
                "dimension",
                format!("{d} is not within 1..={MAX_DIMENSION}"),
            ));
        }
        (None, None) => 1,
        (None, Some(_)) => {
            return Err(Invalid::new(
                "dimension",
                "required with an embedding provider (the length of its vectors)",
            ));
        }
    };
    if embedding.is_some() && dimension < 2 {
        return Err(Invalid::new(
            "dimension",
            "an embedding provider needs the length of its vectors (1 means direct-only)",
        ));
    }
    let threshold = raw.threshold.unwrap_or(f64::from(DEFAULT_THRESHOLD));
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Invalid::new(
            "threshold",
            format!("{threshold} is not within 0..=1"),
        ));
    }
    let ttl = match raw.ttl {
        None => DEFAULT_TTL,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| Invalid::new("ttl", format!("{n} is not a whole number of seconds")))?,
        Some(Value::String(s)) => parse_duration(&s).ok_or_else(|| {
            Invalid::new(
                "ttl",
                format!("`{s}` is not a duration (seconds, or like `5m`, `1h30m`)"),
            )
        })?,
        Some(other) => {
            return Err(Invalid::new(
                "ttl",
                format!("expected seconds or a duration, got {other}"),
            ));
        }
    };
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Invalid::new(
            "ttl",
            format!("must be more than 0 and at most {} s", MAX_TTL.as_secs()),
        ));
    }
    let history = raw
        .conversation_history_threshold
        .unwrap_or(DEFAULT_HISTORY_THRESHOLD as u64);
    if !(1..=10_000).contains(&history) {
        return Err(Invalid::new(
            "conversation_history_threshold",
            format!("{history} is not within 1..=10000"),
        ));
    }
    let max_mb = raw.max_size_mb.unwrap_or(DEFAULT_MAX_BYTES >> 20);
    if !(1..=1024 * 1024).contains(&max_mb) {
        return Err(Invalid::new(
            "max_size_mb",
            format!("{max_mb} is not within 1..=1048576"),
        ));
    }
    Ok(CacheConfig {
        embedding,
        dimension: usize::try_from(dimension).unwrap_or(1),
        #[allow(clippy::cast_possible_truncation)] // Within 0..=1, checked above.
        threshold: threshold as f32,
        ttl,
        cache_by_model: raw.cache_by_model.unwrap_or(true),
        cache_by_provider: raw.cache_by_provider.unwrap_or(true),
        conversation_history_threshold: usize::try_from(history).unwrap_or(usize::MAX),
        exclude_system_prompt: raw.exclude_system_prompt.unwrap_or(false),
        cleanup_on_shutdown: raw.cleanup_on_shutdown.unwrap_or(false),
        default_cache_key: raw.default_cache_key.filter(|k| !k.is_empty()),
        max_bytes: max_mb << 20,
    })
}

/// Whole seconds (`300`) or a Go-style duration (`5m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_bifrosts_and_direct_only_needs_no_provider() {
        let c = parse(json!({"dimension": 1, "ttl": "5m"})).unwrap();
        assert_eq!(c.embedding, None);
        assert_eq!(c.dimension, 1);
        assert_eq!(c.ttl, Duration::from_secs(300));
        assert!((c.threshold - 0.8).abs() < f32::EPSILON);
        assert!(c.cache_by_model && c.cache_by_provider);
        assert_eq!(c.conversation_history_threshold, 3);
        assert!(!c.exclude_system_prompt && !c.cleanup_on_shutdown);
        assert_eq!(parse(Value::Null).unwrap(), c);
    }

    #[test]
    fn reads_every_field() {
        let c = parse(json!({
            "provider": "openai", "embedding_model": "text-embedding-3-small",
            "dimension": 1536, "threshold": 0.9, "ttl": 60, "cache_by_model": false,
            "cache_by_provider": false, "conversation_history_threshold": 5,
            "exclude_system_prompt": true, "cleanup_on_shutdown": true,
            "default_cache_key": "tenant", "max_size_mb": 64, "keys": []
        }))
        .unwrap();
        assert_eq!(
            c.embedding,
            Some(EmbeddingConfig {
                provider: "openai".into(),
                model: "text-embedding-3-small".into()
            })
        );
        assert_eq!((c.dimension, c.ttl.as_secs()), (1536, 60));
        assert!(!c.cache_by_model && !c.cache_by_provider);
        assert_eq!(c.conversation_history_threshold, 5);
        assert!(c.exclude_system_prompt && c.cleanup_on_shutdown);
        assert_eq!(c.default_cache_key.as_deref(), Some("tenant"));
        assert_eq!(c.max_bytes, 64 << 20);
    }

    #[test]
    fn names_the_wrong_field() {
        let field = |v: Value| parse(v).unwrap_err().field;
        assert_eq!(field(json!({"provider": "openai"})), "embedding_model");
        assert_eq!(field(json!({"embedding_model": "m"})), "provider");
        assert_eq!(
            field(json!({"provider": "openai", "embedding_model": "m"})),
            "dimension"
        );
        assert_eq!(
            field(json!({"provider": "o", "embedding_model": "m", "dimension": 1})),
            "dimension"
        );
        assert_eq!(field(json!({"threshold": 1.5})), "threshold");
        assert_eq!(field(json!({"ttl": "soon"})), "ttl");
        assert_eq!(field(json!({"ttl": 0})), "ttl");
        assert_eq!(
            field(json!({"conversation_history_threshold": 0})),
            "conversation_history_threshold"
        );
        assert!(
            parse(json!({"bogus": 1}))
                .unwrap_err()
                .message
                .contains("bogus")
        );
    }

    #[test]
    fn durations_are_seconds_or_go_style() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("x"), None);
    }
}
