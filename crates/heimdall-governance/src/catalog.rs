//! The governance entities resolved for the request path: each virtual key by its value, with
//! every budget and rate limit that applies to it already gathered from its customer, team,
//! itself and its provider configs. Built whenever the entities change (start, admin API,
//! another instance's change), never per request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use heimdall_core::config::{
    Budget, BudgetLine, ConfigError, GovernanceConfig, RateLimit, ResetDuration, VirtualKey,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::window::Window;

/// Where in the hierarchy a budget sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Customer,
    Team,
    VirtualKey,
    ProviderConfig,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Team => "team",
            Self::VirtualKey => "virtual_key",
            Self::ProviderConfig => "provider_config",
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Dollars,
    Requests,
    Tokens,
}

/// One counter and its maximum.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The counter's key in the ledger.
    pub key: Arc<str>,
    /// The budget's or rate limit's id.
    pub id: String,
    pub max: f64,
    pub window: Window,
    pub measure: Measure,
    pub level: Level,
    /// The id of the customer, team, virtual key or provider config it belongs to.
    pub owner: String,
}

/// A provider a virtual key may use.
#[derive(Debug, Clone)]
pub struct ProviderRules {
    pub id: String,
    pub provider: String,
    pub weight: f64,
    /// `None`: every model.
    pub models: Option<Vec<String>>,
    /// `None`: every key.
    pub keys: Option<Arc<[String]>>,
    /// Refused whatever `models` says.
    pub blocked: Vec<Blocked>,
    pub limits: Vec<Limit>,
}

/// A blacklisted model: a name, or a pattern of whole names.
#[derive(Debug, Clone)]
pub enum Blocked {
    Name(String),
    Pattern(regex::Regex),
}

impl Blocked {
    fn matches(&self, model: &str) -> bool {
        match self {
            Self::Name(name) => name == model,
            Self::Pattern(re) => re.is_match(model),
        }
    }
}

impl ProviderRules {
    /// The model is listed by name (not only allowed through `*`).
    pub fn names_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_some_and(|list| list.iter().any(|m| m == model))
            && self.allows_model(model)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == model))
            && !self.blocked.iter().any(|b| b.matches(model))
    }
}

/// A virtual key as admission checks it.
#[derive(Debug, Clone)]
pub struct KeyRules {
    pub id: String,
    pub name: String,
    pub active: bool,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
    /// Budgets of its customer, its team and itself, and its own rate limits: all charged.
    pub limits: Vec<Limit>,
    /// `None`: every provider, with no limits of their own.
    pub providers: Option<Vec<ProviderRules>>,
}

impl KeyRules {
    /// Every limit a request through `provider` draws on, in the order admission reserves
    /// them: the key's own (with its customer's and team's budgets), then the provider
    /// config's.
    pub fn limits_through<'a>(
        &'a self,
        provider: Option<&'a ProviderRules>,
    ) -> impl Iterator<Item = &'a Limit> {
        self.limits
            .iter()
            .chain(provider.into_iter().flat_map(|p| &p.limits))
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderRules> {
        self.providers.as_ref()?.iter().find(|p| p.provider == name)
    }
}

/// Every virtual key, by value and by id, and the entities they came from.
#[derive(Debug, Default)]
pub struct Catalog {
    by_value: HashMap<String, Arc<KeyRules>>,
    by_id: HashMap<String, Arc<KeyRules>>,
    pub entities: GovernanceConfig,
}

impl Catalog {
    pub fn key_by_value(&self, value: &str) -> Option<&Arc<KeyRules>> {
        self.by_value.get(value)
    }

    pub fn key_by_id(&self, id: &str) -> Option<&Arc<KeyRules>> {
        self.by_id.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Resolves `entities`; `deny_empty` is the config's `version: 2` reading of empty lists.
    pub fn build(entities: GovernanceConfig, deny_empty: bool) -> Result<Self, ConfigError> {
        let r = Resolver::new(&entities)?;
        let mut by_value = HashMap::new();
        let mut by_id = HashMap::new();
        for (i, vk) in entities.virtual_keys.iter().enumerate() {
            let at = format!("governance.virtual_keys[{i}]");
            let rules = Arc::new(r.key(vk, &at, deny_empty)?);
            if vk.value.is_empty() {
                return Err(error(&format!("{at}.value"), "a virtual key needs a value"));
            }
            if by_value
                .insert(vk.value.clone(), Arc::clone(&rules))
                .is_some()
            {
                return Err(error(
                    &format!("{at}.value"),
                    "another virtual key has the same value",
                ));
            }
            by_id.insert(vk.id.clone(), rules);
        }
        Ok(Self {
            by_value,
            by_id,
            entities,
        })
    }
}

fn error(path: &str, message: &str) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

/// Lookups over the entities while keys are resolved.
struct Resolver<'a> {
    budgets: HashMap<&'a str, (usize, &'a Budget)>,
    rate_limits: HashMap<&'a str, (usize, &'a RateLimit)>,
    teams: HashMap<&'a str, usize>,
    customers: HashMap<&'a str, usize>,
    g: &'a GovernanceConfig,
}

impl<'a> Resolver<'a> {
    fn new(g: &'a GovernanceConfig) -> Result<Self, ConfigError> {
        fn index<'a, T>(
            items: &'a [T],
            id: impl Fn(&'a T) -> Option<&'a str>,
            path: &str,
        ) -> Result<HashMap<&'a str, (usize, &'a T)>, ConfigError> {
            let mut map = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                let Some(key) = id(item) else {
                    return Err(error(&format!("{path}[{i}].id"), "an id is required"));
                };
                if key.trim().is_empty() {
                    return Err(error(&format!("{path}[{i}].id"), "the id is empty"));
                }
                if map.insert(key, (i, item)).is_some() {
                    return Err(error(
                        &format!("{path}[{i}].id"),
                        &format!("`{key}` is used twice"),
                    ));
                }
            }
            Ok(map)
        }
        let keys = index(&g.virtual_keys, |v| Some(&v.id), "governance.virtual_keys")?;
        let teams = index(&g.teams, |t| Some(&t.id), "governance.teams")?;
        let customers = index(&g.customers, |c| Some(&c.id), "governance.customers")?;
        let r = Self {
            budgets: index(&g.budgets, |b| Some(&b.id), "governance.budgets")?,
            rate_limits: index(
                &g.rate_limits,
                |l| l.id.as_deref(),
                "governance.rate_limits",
            )?,
            teams: teams.into_iter().map(|(k, (i, _))| (k, i)).collect(),
            customers: customers.into_iter().map(|(k, (i, _))| (k, i)).collect(),
            g,
        };
        // Owners named by top-level budgets must exist (provider configs are checked as
        // keys resolve: their ids may be given ones).
        for (i, b) in g.budgets.iter().enumerate() {
            let at = format!("governance.budgets[{i}]");
            let owners = [
                b.virtual_key_id.is_some(),
                b.team_id.is_some(),
                b.customer_id.is_some(),
                b.provider_config_id.is_some(),
            ];
            if owners.iter().filter(|o| **o).count() > 1 {
                return Err(error(&at, "a budget belongs to one owner at most"));
            }
            let missing = |id: &Option<String>, known: bool, field: &str| {
                (id.is_some() && !known).then(|| {
                    error(
                        &format!("{at}.{field}"),
                        &format!("no such entity `{}`", id.as_deref().unwrap_or_default()),
                    )
                })
            };
            let vk = b.virtual_key_id.as_deref();
            let team = b.team_id.as_deref();
            let customer = b.customer_id.as_deref();
            if let Some(e) = missing(
                &b.virtual_key_id,
                vk.is_some_and(|v| keys.contains_key(v)),
                "virtual_key_id",
            )
            .or_else(|| {
                missing(
                    &b.team_id,
                    team.is_some_and(|t| r.teams.contains_key(t)),
                    "team_id",
                )
            })
            .or_else(|| {
                missing(
                    &b.customer_id,
                    customer.is_some_and(|c| r.customers.contains_key(c)),
                    "customer_id",
                )
            }) {
                return Err(e);
            }
        }
        // Every declared budget and rate limit holds on its own, used or not yet.
        for (i, b) in g.budgets.iter().enumerate() {
            budget_limit(
                &b.id,
                b.max_limit,
                &b.reset_duration,
                b.calendar_aligned,
                Level::VirtualKey,
                "",
                &format!("governance.budgets[{i}]"),
            )?;
        }
        for l in &g.rate_limits {
            // As a reference, so that a mistake is named at its place in the list.
            r.rate_limit(
                &mut Vec::new(),
                Level::VirtualKey,
                "",
                false,
                None,
                l.id.as_deref(),
                "governance",
            )?;
        }
        for (i, t) in g.teams.iter().enumerate() {
            if let Some(c) = &t.customer_id
                && !r.customers.contains_key(c.as_str())
            {
                return Err(error(
                    &format!("governance.teams[{i}].customer_id"),
                    &format!("no such customer `{c}`"),
                ));
            }
        }
        Ok(r)
    }

    fn key(&self, vk: &VirtualKey, at: &str, deny_empty: bool) -> Result<KeyRules, ConfigError> {
        let mut limits = Vec::new();
        let team = match &vk.team_id {
            Some(id) => Some(
                self.teams
                    .get(id.as_str())
                    .map(|&i| (i, &self.g.teams[i]))
                    .ok_or_else(|| {
                        error(&format!("{at}.team_id"), &format!("no such team `{id}`"))
                    })?,
            ),
            None => None,
        };
        if vk.team_id.is_some() && vk.customer_id.is_some() {
            return Err(error(
                at,
                "a virtual key belongs to a team or to a customer, not both",
            ));
        }
        let customer_id = vk
            .customer_id
            .as_ref()
            .or_else(|| team.and_then(|(_, t)| t.customer_id.as_ref()));
        if let Some(id) = customer_id {
            let &i = self.customers.get(id.as_str()).ok_or_else(|| {
                error(
                    &format!("{at}.customer_id"),
                    &format!("no such customer `{id}`"),
                )
            })?;
            let c = &self.g.customers[i];
            self.budgets(
                &mut limits,
                Level::Customer,
                &c.id,
                c.calendar_aligned,
                &c.budgets,
                c.budget_id.as_deref(),
                |b| b.customer_id.as_deref() == Some(&c.id),
                &format!("governance.customers[{i}]"),
            )?;
        }
        if let Some((i, t)) = team {
            self.budgets(
                &mut limits,
                Level::Team,
                &t.id,
                t.calendar_aligned,
                &t.budgets,
                t.budget_id.as_deref(),
                |b| b.team_id.as_deref() == Some(&t.id),
                &format!("governance.teams[{i}]"),
            )?;
        }
        self.budgets(
            &mut limits,
            Level::VirtualKey,
            &vk.id,
            vk.calendar_aligned,
            &vk.budgets,
            vk.budget_id.as_deref(),
            |b| b.virtual_key_id.as_deref() == Some(&vk.id),
            at,
        )?;
        self.rate_limit(
            &mut limits,
            Level::VirtualKey,
            &vk.id,
            vk.calendar_aligned,
            vk.rate_limit.as_ref(),
            vk.rate_limit_id.as_deref(),
            at,
        )?;
        let list = |list: &[String]| -> Option<Vec<String>> {
            if list.iter().any(|m| m == "*") || (list.is_empty() && !deny_empty) {
                None
            } else {
                Some(list.to_vec())
            }
        };
        let providers = if vk.provider_configs.is_empty() && !deny_empty {
            None
        } else {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for (j, pc) in vk.provider_configs.iter().enumerate() {
                let at = format!("{at}.provider_configs[{j}]");
                if !seen.insert(pc.provider.as_str()) {
                    return Err(error(
                        &format!("{at}.provider"),
                        &format!("provider `{}` is listed twice", pc.provider),
                    ));
                }
                if !(pc.weight.is_finite() && pc.weight >= 0.0) {
                    return Err(error(
                        &format!("{at}.weight"),
                        "the weight must be a number at least 0",
                    ));
                }
                let id = pc
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", vk.id, pc.provider));
                let mut limits = Vec::new();
                self.budgets(
                    &mut limits,
                    Level::ProviderConfig,
                    &id,
                    vk.calendar_aligned,
                    &pc.budgets,
                    pc.budget_id.as_deref(),
                    |b| b.provider_config_id.as_deref() == Some(&id),
                    &at,
                )?;
                self.rate_limit(
                    &mut limits,
                    Level::ProviderConfig,
                    &id,
                    vk.calendar_aligned,
                    pc.rate_limit.as_ref(),
                    pc.rate_limit_id.as_deref(),
                    &at,
                )?;
                let blocked = pc
                    .blacklisted_models
                    .iter()
                    .enumerate()
                    .map(|(k, m)| match m.strip_prefix("regex:") {
                        None => Ok(Blocked::Name(m.clone())),
                        // Anchored: a pattern names whole models, not parts of them.
                        Some(p) => regex::Regex::new(&format!("^(?:{p})$"))
                            .map(Blocked::Pattern)
                            .map_err(|e| {
                                error(
                                    &format!("{at}.blacklisted_models[{k}]"),
                                    &format!("not a pattern: {e}"),
                                )
                            }),
                    })
                    .collect::<Result<_, _>>()?;
                out.push(ProviderRules {
                    id,
                    provider: pc.provider.clone(),
                    weight: pc.weight,
                    models: list(&pc.allowed_models),
                    keys: list(&pc.key_ids).map(Arc::from),
                    blocked,
                    limits,
                });
            }
            Some(out)
        };
        let expires_at = match &vk.expires_at {
            None => None,
            Some(text) => Some(
                OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|e| {
                        error(
                            &format!("{at}.expires_at"),
                            &format!("`{text}` is not an RFC 3339 time: {e}"),
                        )
                    })?
                    .unix_timestamp()
                    .saturating_mul(1000),
            ),
        };
        Ok(KeyRules {
            id: vk.id.clone(),
            name: if vk.name.is_empty() {
                vk.id.clone()
            } else {
                vk.name.clone()
            },
            active: vk.is_active,
            expires_at,
            limits,
            providers,
        })
    }

    /// Gathers an owner's budgets: written inside it, referenced by `budget_id`, or declared
    /// at the top level naming it.
    #[allow(clippy::too_many_arguments)]
    fn budgets(
        &self,
        out: &mut Vec<Limit>,
        level: Level,
        owner: &str,
        aligned: bool,
        inline: &[BudgetLine],
        referenced: Option<&str>,
        names_owner: impl Fn(&Budget) -> bool,
        at: &str,
    ) -> Result<(), ConfigError> {
        for (i, line) in inline.iter().enumerate() {
            let id = line
                .id
                .clone()
                .unwrap_or_else(|| format!("{}:{owner}:{i}", level.as_str()));
            out.push(budget_limit(
                &id,
                line.max_limit,
                &line.reset_duration,
                aligned || line.calendar_aligned,
                level,
                owner,
                &format!("{at}.budgets[{i}]"),
            )?);
        }
        // A budget of `governance.budgets`, at its place `i` there.
        let declared = |i: usize, b: &Budget| {
            budget_limit(
                &b.id,
                b.max_limit,
                &b.reset_duration,
                aligned || b.calendar_aligned,
                level,
                owner,
                &format!("governance.budgets[{i}]"),
            )
        };
        if let Some(id) = referenced {
            let &(i, b) = self.budgets.get(id).ok_or_else(|| {
                error(
                    &format!("{at}.budget_id"),
                    &format!("no such budget `{id}`"),
                )
            })?;
            out.push(declared(i, b)?);
        }
        for (i, b) in self.g.budgets.iter().enumerate() {
            if names_owner(b) && referenced != Some(b.id.as_str()) {
                out.push(declared(i, b)?);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn rate_limit(
        &self,
        out: &mut Vec<Limit>,
        level: Level,
        owner: &str,
        aligned: bool,
        inline: Option<&RateLimit>,
        referenced: Option<&str>,
        at: &str,
    ) -> Result<(), ConfigError> {
        let (limit, at, default_id) = match (inline, referenced) {
            (Some(l), _) => (
                l,
                format!("{at}.rate_limit"),
                format!("{}:{owner}", level.as_str()),
            ),
            (None, Some(id)) => {
                let (i, l) = self.rate_limits.get(id).ok_or_else(|| {
                    error(
                        &format!("{at}.rate_limit_id"),
                        &format!("no such rate limit `{id}`"),
                    )
                })?;
                (*l, format!("governance.rate_limits[{i}]"), id.to_owned())
            }
            (None, None) => return Ok(()),
        };
        let id = limit.id.clone().unwrap_or(default_id);
        let aligned = aligned || limit.calendar_aligned;
        for (measure, max, every, field) in [
            (
                Measure::Requests,
                limit.request_max_limit,
                &limit.request_reset_duration,
                "request",
            ),
            (
                Measure::Tokens,
                limit.token_max_limit,
                &limit.token_reset_duration,
                "token",
            ),
        ] {
            let Some(max) = max else { continue };
            let every = every.as_deref().ok_or_else(|| {
                error(
                    &format!("{at}.{field}_reset_duration"),
                    &format!("required with {field}_max_limit"),
                )
            })?;
            out.push(Limit {
                key: format!("rl:{id}:{field}s").into(),
                id: id.clone(),
                max: max as f64,
                window: Window {
                    every: ResetDuration::parse(&format!("{at}.{field}_reset_duration"), every)?,
                    aligned,
                },
                measure,
                level,
                owner: owner.to_owned(),
            });
        }
        Ok(())
    }
}

fn budget_limit(
    id: &str,
    max: f64,
    every: &str,
    aligned: bool,
    level: Level,
    owner: &str,
    at: &str,
) -> Result<Limit, ConfigError> {
    if !(max.is_finite() && max >= 0.0) {
        return Err(error(
            &format!("{at}.max_limit"),
            "the limit must be a number of dollars, at least 0",
        ));
    }
    Ok(Limit {
        key: format!("budget:{id}").into(),
        id: id.to_owned(),
        max,
        window: Window {
            every: ResetDuration::parse(&format!("{at}.reset_duration"), every)?,
            aligned,
        },
        measure: Measure::Dollars,
        level,
        owner: owner.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(json: &str) -> Result<Catalog, ConfigError> {
        Catalog::build(serde_json::from_str(json).unwrap(), false)
    }

    #[test]
    fn every_level_of_the_hierarchy_is_gathered() {
        let c = catalog(
            r#"{
              "customers": [{"id": "c", "name": "C", "budgets": [{"max_limit": 100, "reset_duration": "1M"}]}],
              "teams": [{"id": "t", "customer_id": "c", "budget_id": "tb"}],
              "budgets": [{"id": "tb", "max_limit": 50, "reset_duration": "1w"},
                          {"id": "vb", "max_limit": 5, "reset_duration": "1d", "virtual_key_id": "k"},
                          {"id": "pb", "max_limit": 1, "reset_duration": "1h", "provider_config_id": "k/openai"}],
              "rate_limits": [{"id": "rl", "request_max_limit": 10, "request_reset_duration": "1m",
                               "token_max_limit": 1000, "token_reset_duration": "1h"}],
              "virtual_keys": [{"id": "k", "value": "sk-bf-k", "team_id": "t", "rate_limit_id": "rl",
                                "calendar_aligned": true,
                                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"],
                                                      "key_ids": ["main"]}]}]
            }"#,
        )
        .unwrap();
        let k = c.key_by_value("sk-bf-k").unwrap();
        let names: Vec<_> = k
            .limits
            .iter()
            .map(|l| (l.level.as_str(), &*l.key, l.window.aligned))
            .collect();
        assert_eq!(
            names,
            [
                ("customer", "budget:customer:c:0", false),
                ("team", "budget:tb", false),
                ("virtual_key", "budget:vb", true),
                ("virtual_key", "rl:rl:requests", true),
                ("virtual_key", "rl:rl:tokens", true),
            ]
        );
        let p = k.provider("openai").unwrap();
        assert_eq!(p.limits[0].key.as_ref(), "budget:pb");
        let blocked = catalog(
            r#"{"virtual_keys": [{"id": "k", "value": "v", "provider_configs": [{"provider": "openai",
                "allowed_models": ["*"], "blacklisted_models": ["gpt-4o", "regex:o[0-9]+(-mini)?"]}]}]}"#,
        )
        .unwrap();
        let b = blocked
            .key_by_id("k")
            .unwrap()
            .provider("openai")
            .unwrap()
            .clone();
        assert!(b.allows_model("gpt-4o-mini") && b.allows_model("xo3"));
        assert!(!b.allows_model("gpt-4o") && !b.allows_model("o3") && !b.allows_model("o4-mini"));
        assert!(p.allows_model("gpt-4o-mini") && !p.allows_model("gpt-4o"));
        assert_eq!(p.keys.as_deref(), Some(&["main".to_owned()][..]));
        assert!(k.provider("anthropic").is_none());
    }

    #[test]
    fn empty_lists_follow_the_config_version() {
        let g: GovernanceConfig = serde_json::from_str(
            r#"{"virtual_keys": [{"id": "k", "value": "sk-bf-k"},
                                 {"id": "j", "value": "sk-bf-j", "provider_configs": [{"provider": "openai"}]}]}"#,
        )
        .unwrap();
        let v1 = Catalog::build(g.clone(), false).unwrap();
        assert!(v1.key_by_id("k").unwrap().providers.is_none());
        let j = v1
            .key_by_id("j")
            .unwrap()
            .provider("openai")
            .unwrap()
            .clone();
        assert!(j.models.is_none() && j.keys.is_none());
        let v2 = Catalog::build(g, true).unwrap();
        assert_eq!(
            v2.key_by_id("k")
                .unwrap()
                .providers
                .as_deref()
                .map(<[_]>::len),
            Some(0)
        );
        let j = v2
            .key_by_id("j")
            .unwrap()
            .provider("openai")
            .unwrap()
            .clone();
        assert_eq!(j.models, Some(vec![]));
    }

    #[test]
    fn mistakes_name_their_place() {
        let e = |json: &str| catalog(json).unwrap_err().path;
        assert_eq!(
            e(r#"{"virtual_keys": [{"id": "k", "value": "v", "team_id": "nope"}]}"#),
            "governance.virtual_keys[0].team_id"
        );
        assert_eq!(
            e(r#"{"virtual_keys": [{"id": "k", "value": "v"}, {"id": "j", "value": "v"}]}"#),
            "governance.virtual_keys[1].value"
        );
        assert_eq!(
            e(
                r#"{"virtual_keys": [{"id": "k", "value": "v", "budgets": [{"max_limit": 1, "reset_duration": "1x"}]}]}"#
            ),
            "governance.virtual_keys[0].budgets[0].reset_duration"
        );
        assert_eq!(
            e(r#"{"rate_limits": [{"id": "r", "request_max_limit": 3}],
                  "virtual_keys": [{"id": "k", "value": "v", "rate_limit_id": "r"}]}"#),
            "governance.rate_limits[0].request_reset_duration"
        );
        assert_eq!(
            e(
                r#"{"budgets": [{"id": "b", "max_limit": 1, "reset_duration": "1d", "team_id": "x"}]}"#
            ),
            "governance.budgets[0].team_id"
        );
        assert_eq!(
            e(r#"{"virtual_keys": [{"id": "k", "value": "v", "expires_at": "tomorrow"}]}"#),
            "governance.virtual_keys[0].expires_at"
        );
    }
}
