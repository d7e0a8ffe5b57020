//! The `governance` section in Bifrost's layout: virtual keys, teams, customers, budgets and
//! rate limits. These are also the shapes the config store keeps and the admin API reads and
//! writes, so one definition serves the file, the store and the API. What they mean at run
//! time (limits, windows, admission) is the governance crate's.
//!
//! Unknown fields are not errors: a Bifrost file carries more (`routing_rules`, `mcp_configs`,
//! `access_profile_id`…), and the config reader names each one it ignores in the start-up
//! warning, as it does elsewhere.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, StoreConfig};

/// What governance runs with: the entities of the file and the settings around them.
#[derive(Debug, Clone, Default)]
pub struct GovernanceSettings {
    /// The file's `governance` section, `env.VAR` values resolved. Loaded into the config
    /// store at start; the store (with the admin API's changes) is what requests meet.
    pub entities: GovernanceConfig,
    /// `client.enforce_auth_on_inference`: a request without a virtual key is refused (401).
    pub enforce_auth: bool,
    /// `version: 2`: an empty `provider_configs`, `allowed_models` or `key_ids` allows nothing
    /// (version 1, the default: everything).
    pub deny_empty_lists: bool,
    /// Where governance entities and counters are kept (`config_store`): SQLite `config.db`
    /// in the app dir unless configured; `None` when `config_store.enabled` is false.
    pub config_store: Option<StoreConfig>,
    /// Counters shared by every instance, when configured.
    pub redis: Option<RedisSettings>,
}

/// Heimdall's `redis` section: budgets and rate limits counted in Redis, so that instances
/// sharing it enforce them together.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port/db` (or `rediss://`); `env.VAR` in the file.
    pub url: Secret,
    /// Prefix of every key Heimdall writes, so that deployments can share a server.
    pub key_prefix: String,
    pub on_failure: FailMode,
    /// Longest wait for one Redis round trip before it counts as a failure.
    pub timeout: Duration,
}

/// What admission does when the counters cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse with 503 `overloaded_error`: no request passes that could not be counted.
    #[default]
    Closed,
    /// Admit uncounted, with a metric and a log line.
    Open,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    url: String,
    key_prefix: Option<String>,
    on_failure: Option<String>,
    timeout_ms: Option<u64>,
}

impl RawRedis {
    pub(super) fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RedisSettings, ConfigError> {
        let url = super::observability::resolve("redis.url", &self.url, env)?;
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(ConfigError {
                path: "redis.url".into(),
                message: "expected a redis:// or rediss:// URL".into(),
            });
        }
        let on_failure = match self.on_failure.as_deref() {
            None | Some("closed") => FailMode::Closed,
            Some("open") => FailMode::Open,
            Some(other) => {
                return Err(ConfigError {
                    path: "redis.on_failure".into(),
                    message: format!("`{other}` is not one of closed, open"),
                });
            }
        };
        let timeout_ms = super::in_range(
            "redis.timeout_ms",
            self.timeout_ms.unwrap_or(500),
            1,
            60_000,
        )?;
        Ok(RedisSettings {
            url: Secret::new(url),
            key_prefix: self.key_prefix.unwrap_or_else(|| "heimdall:".to_owned()),
            on_failure,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

impl GovernanceConfig {
    /// Resolves `env.VAR` values of virtual keys and checks what can be checked of one entity
    /// at a time (references between them are checked where they are resolved).
    pub(super) fn resolve(
        mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        for (i, vk) in self.virtual_keys.iter_mut().enumerate() {
            let at = format!("governance.virtual_keys[{i}].value");
            if !vk.value.is_empty() {
                vk.value = super::observability::resolve(&at, &vk.value, env)?;
            }
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GovernanceConfig {
    #[serde(default)]
    pub virtual_keys: Vec<VirtualKey>,
    #[serde(default)]
    pub teams: Vec<Team>,
    #[serde(default)]
    pub customers: Vec<Customer>,
    /// Budgets declared on their own, tied to an owner by its id or referenced by the owner's
    /// `budget_id`.
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Rate limits referenced by `rate_limit_id`.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
}

/// Virtual key prefix; a key's value must carry it so that it can stand in the usual
/// credential headers.
pub const VIRTUAL_KEY_PREFIX: &str = "sk-bf-";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VirtualKey {
    /// Given when created through the admin API without one.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What clients present (`sk-bf-…`); `env.VAR` in the file. Given a new one when empty.
    #[serde(default)]
    pub value: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// RFC 3339; past it the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Windows of this key's budgets and rate limits start on calendar boundaries (UTC).
    #[serde(default)]
    pub calendar_aligned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Providers the key may use (see `Governance::deny_empty_lists` for an empty list).
    #[serde(default)]
    pub provider_configs: Vec<ProviderAccess>,
}

/// One provider a virtual key may use, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderAccess {
    /// Given as `<key id>/<provider>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "id_text")]
    #[schema(value_type = Option<IdText>)]
    pub id: Option<String>,
    #[serde(alias = "provider_name")]
    pub provider: String,
    /// Share of the requests for a model named without a provider prefix.
    #[serde(default = "one")]
    pub weight: f64,
    /// `["*"]`: every model.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Provider keys (by name) it may use; `["*"]`: all of them.
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Models refused even when `allowed_models` lets them: a name, or `regex:` and a pattern
    /// the whole name must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blacklisted_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Team {
    /// Given when created through the admin API without one.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub calendar_aligned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer {
    /// Given when created through the admin API without one.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub calendar_aligned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetLine>,
}

/// A budget written inside its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// US dollars per window.
    pub max_limit: f64,
    /// `30s`, `5m`, `1h`, `1d`, `1w`, `1M`, `1Q`, `1Y`…
    pub reset_duration: String,
    /// Older files set it here; it counts as the owner's.
    #[serde(default)]
    pub calendar_aligned: bool,
}

/// A budget declared under `governance.budgets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    /// Given when created through the admin API without one.
    #[serde(default)]
    pub id: String,
    pub max_limit: f64,
    pub reset_duration: String,
    #[serde(default)]
    pub calendar_aligned: bool,
    /// Its owner, when it names one (else an owner names it by `budget_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "id_text")]
    #[schema(value_type = Option<IdText>)]
    pub provider_config_id: Option<String>,
    /// Bifrost's export carries the usage; the counters are the truth here, so it is read
    /// and not used.
    #[serde(default, skip_serializing)]
    pub current_usage: Option<f64>,
    #[serde(default, skip_serializing)]
    pub last_reset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tokens (input and output) per `token_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_reset_duration: Option<String>,
    /// Requests per `request_reset_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_max_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reset_duration: Option<String>,
    #[serde(default)]
    pub calendar_aligned: bool,
    #[serde(default, skip_serializing)]
    pub token_current_usage: Option<u64>,
    #[serde(default, skip_serializing)]
    pub token_last_reset: Option<String>,
    #[serde(default, skip_serializing)]
    pub request_current_usage: Option<u64>,
    #[serde(default, skip_serializing)]
    pub request_last_reset: Option<String>,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// An id written as text or, as Bifrost numbers provider configs, as a number (read as its
/// digits); it is given back as text.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum IdText {
    Text(String),
    Number(u64),
}

/// Bifrost numbers provider configs; ids are text here, and a number is read as its digits.
mod id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::IdText;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<IdText>::deserialize(d)?.map(|id| match id {
            IdText::Text(s) => s,
            IdText::Number(n) => n.to_string(),
        }))
    }

    pub fn serialize<S: Serializer>(id: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_str(id),
            None => s.serialize_none(),
        }
    }
}

/// A reset window as written: `<n><unit>` with unit `s`, `m`, `h`, `d`, `w`, `M` (month),
/// `Q` (quarter) or `Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetDuration {
    pub count: u32,
    pub unit: ResetUnit,
}

/// Written back as it is read: `1h`, `30d`, `1M`.
impl std::fmt::Display for ResetDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.unit {
            ResetUnit::Second => "s",
            ResetUnit::Minute => "m",
            ResetUnit::Hour => "h",
            ResetUnit::Day => "d",
            ResetUnit::Week => "w",
            ResetUnit::Month => "M",
            ResetUnit::Quarter => "Q",
            ResetUnit::Year => "Y",
        };
        write!(f, "{}{unit}", self.count)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl ResetDuration {
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let error = || ConfigError {
            path: path.to_owned(),
            message: format!(
                "`{text}` is not a reset duration (a number and one of s, m, h, d, w, M, Q, Y: `1h`, `30d`, `1M`)"
            ),
        };
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        let (digits, unit) = text.split_at(split);
        let count: u32 = digits.parse().map_err(|_| error())?;
        let unit = match unit {
            "s" => ResetUnit::Second,
            "m" => ResetUnit::Minute,
            "h" => ResetUnit::Hour,
            "d" => ResetUnit::Day,
            "w" => ResetUnit::Week,
            "M" => ResetUnit::Month,
            "Q" => ResetUnit::Quarter,
            "Y" => ResetUnit::Year,
            _ => return Err(error()),
        };
        // Ten years of any unit is past any useful window and keeps the arithmetic small.
        let limit = match unit {
            ResetUnit::Second => 10 * 366 * 86_400,
            ResetUnit::Minute => 10 * 366 * 1440,
            ResetUnit::Hour => 10 * 366 * 24,
            ResetUnit::Day => 10 * 366,
            ResetUnit::Week => 10 * 53,
            ResetUnit::Month => 120,
            ResetUnit::Quarter => 40,
            ResetUnit::Year => 10,
        };
        if count == 0 || count > limit {
            return Err(ConfigError {
                path: path.to_owned(),
                message: format!("`{text}`: the count must be between 1 and {limit}"),
            });
        }
        Ok(Self { count, unit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_parse_like_bifrost() {
        let d = |t: &str| ResetDuration::parse("x", t).map(|d| (d.count, d.unit));
        assert_eq!(d("1m").ok(), Some((1, ResetUnit::Minute)));
        assert_eq!(d("1M").ok(), Some((1, ResetUnit::Month)));
        assert_eq!(d("30s").ok(), Some((30, ResetUnit::Second)));
        assert_eq!(d("1Q").ok(), Some((1, ResetUnit::Quarter)));
        assert_eq!(d("2Y").ok(), Some((2, ResetUnit::Year)));
        for text in ["1m", "1M", "30s", "1Q", "2Y", "7d", "1w", "12h"] {
            assert_eq!(ResetDuration::parse("x", text).unwrap().to_string(), text);
        }
        for bad in ["", "m", "0d", "1x", "1.5h", "-1h", "11Y", "1 h"] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bifrost_export_reads() {
        let text = r#"{
          "virtual_keys": [{"id": "vk-1", "name": "team key", "value": "sk-bf-1",
            "team_id": "t1", "rate_limit_id": "rl1",
            "provider_configs": [{"id": 7, "provider": "openai", "weight": 0.5,
              "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"],
              "budgets": [{"max_limit": 1.5, "reset_duration": "1d"}]}]}],
          "teams": [{"id": "t1", "name": "T", "customer_id": "c1"}],
          "customers": [{"id": "c1", "name": "C", "budgets": [{"id": "b-c", "max_limit": 100, "reset_duration": "1M"}]}],
          "budgets": [{"id": "b1", "max_limit": 10, "reset_duration": "1M", "team_id": "t1",
                       "current_usage": 3.2, "last_reset": "2026-11-01T00:00:00Z"},
                      {"id": "b2", "max_limit": 1, "reset_duration": "1h", "provider_config_id": 7}],
          "rate_limits": [{"id": "rl1", "request_max_limit": 100, "request_reset_duration": "1m"}]
        }"#;
        let g: GovernanceConfig = serde_json::from_str(text).unwrap();
        assert_eq!(
            g.virtual_keys[0].provider_configs[0].id.as_deref(),
            Some("7")
        );
        assert_eq!(g.budgets[1].provider_config_id.as_deref(), Some("7"));
        assert!(g.virtual_keys[0].is_active);
        // What the API gives back reads again as the same thing, usage fields aside.
        let again: GovernanceConfig =
            serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(again.virtual_keys, g.virtual_keys);
        assert_eq!(again.budgets[0].current_usage, None);
    }
}
