//! Providers and client settings as the admin API and config.json change them together.
//!
//! The running configuration is built from config.json with the config store's entries over
//! it: one entry per provider (its section, in config.json's layout) and per client setting
//! ([`CLIENT_SETTINGS`]). At start and on every reload of the file, the file's entries are
//! taken into the store by `heimdall_store::reconcile` (the file seeds what the store lacks;
//! afterwards an entry follows the file only when the file's version of it changed), then the
//! composed document is parsed by the same `Config::from_json` as the file alone, and the
//! result is swapped in through `Gateway::reload`. An admin change goes the same way: edit the
//! entries, compose, parse (a refusal names the JSON path), write the store, swap. Changes are
//! applied one at a time, so a reload and an admin change never undo each other.
//!
//! Without a config store (`config_store.enabled: false`) the same entries live in memory:
//! admin changes apply at once and last until the process ends.
//!
//! Without a config file, the providers enabled from environment variables run beside the
//! entries' (an entry of the same name replaces one). The admin API sees them too, marked
//! `"source": "env"`, so that every provider that serves is listed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use heimdall_core::Gateway;
use heimdall_core::config::{Config, ConfigError, ProviderConfig};
use heimdall_store::{ConfigEntry, ConfigKind, Store, reconcile};
use serde_json::{Map, Value, json};

use crate::governance::{GovernanceService, Refused};

/// The client settings the admin API manages, by their names under `client`.
pub const CLIENT_SETTINGS: [&str; 7] = [
    "header_filter_config",
    "allow_direct_keys",
    "drop_excess_requests",
    "enforce_auth_on_inference",
    "disable_content_logging",
    "log_retention_days",
    "max_request_body_size_mb",
];

/// How often the config store's revision is checked for other instances' changes.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Bifrost's older name of `enforce_auth_on_inference`, still read from config.json.
const OLD_ENFORCE_AUTH: &str = "enforce_governance_header";

/// The field of a provider section the admin API sees that says where it comes from.
pub const SOURCE: &str = "source";
/// [`SOURCE`] of a provider enabled from its environment variable alone.
pub const FROM_ENV: &str = "env";

/// The entries as start-up left them, before the gateway exists.
pub struct Seeded {
    file: Option<Value>,
    entries: Vec<ConfigEntry>,
    /// The providers the environment enables, read once at start; used only without a file.
    env: Vec<ProviderConfig>,
}

/// Takes config.json (`text`, `None` without a file) into the config store and builds the
/// configuration the gateway starts with. `file_config` is the file alone, already parsed
/// (its warnings logged), or the environment's providers without a file.
pub async fn load(
    store: Option<&Store>,
    text: Option<&str>,
    file_config: Config,
) -> anyhow::Result<(Seeded, Config)> {
    let file = text.map(serde_json::from_str::<Value>).transpose()?;
    let stored = match store {
        Some(s) => s.config_entries().await?,
        None => Vec::new(),
    };
    let r = reconcile(
        &stored,
        &file.as_ref().map(file_entries).unwrap_or_default(),
    );
    if let Some(s) = store {
        s.save_config_entries(&r.upserts, &r.removed).await?;
    }
    note_replaced(&r.replaced_edits);
    let seeded = Seeded {
        // Without a file, `file_config` is the environment's providers.
        env: if file.is_none() {
            file_config.providers.clone()
        } else {
            Vec::new()
        },
        file,
        entries: r.entries,
    };
    let config = if from_file_alone(&seeded.entries, &stored) {
        file_config
    } else {
        let config = build(seeded.file.as_ref(), &seeded.entries, &seeded.env)
            .map_err(|e| anyhow::anyhow!("config.json with the config store's changes: {e}"))?;
        for w in config
            .warnings
            .iter()
            .filter(|w| !file_config.warnings.contains(w))
        {
            tracing::warn!("{w}");
        }
        config
    };
    Ok((seeded, config))
}

/// Nothing but the file's own entries: the file's configuration is the running one.
fn from_file_alone(entries: &[ConfigEntry], stored: &[ConfigEntry]) -> bool {
    stored.is_empty() && entries.iter().all(|e| !e.edited())
}

pub struct ConfigService {
    store: Option<Store>,
    gateway: Arc<Gateway>,
    governance: Arc<GovernanceService>,
    /// Held for the whole of a change, from reading the entries to the swap.
    state: tokio::sync::Mutex<Seeded>,
}

/// A change of the entries: what to write and what to delete.
#[derive(Default)]
pub struct Edit {
    pub upserts: Vec<ConfigEntry>,
    pub removed: Vec<(ConfigKind, String)>,
}

impl ConfigService {
    pub fn new(
        seeded: Seeded,
        gateway: Arc<Gateway>,
        governance: Arc<GovernanceService>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: governance.store().cloned(),
            gateway,
            governance,
            state: tokio::sync::Mutex::new(seeded),
        })
    }

    /// The document the admin API reads: config.json with the store's providers and client
    /// settings, and the environment's providers no entry replaces (see [`view`]).
    pub async fn document(&self) -> Value {
        let state = self.state.lock().await;
        view(&state, &state.entries)
    }

    /// A reloaded config file (already read): taken into the store, composed, and swapped in.
    /// On an error the running configuration stays; the error says why, with the JSON path.
    pub async fn file_changed(&self, path: &Path, text: &str) -> anyhow::Result<Vec<String>> {
        // The file alone first, so that its own mistakes are named as the file's.
        let file_config = crate::run::parse_config(path, text)?;
        let file: Value = serde_json::from_str(text)?;
        let mut state = self.state.lock().await;
        let stored = self.stored(&state).await?;
        let r = reconcile(&stored, &file_entries(&file));
        let config = build(Some(&file), &r.entries, &state.env)
            .map_err(|e| anyhow::anyhow!("with the config store's changes: {e}"))?;
        for w in config
            .warnings
            .iter()
            .filter(|w| !file_config.warnings.contains(w))
        {
            tracing::warn!("{w}");
        }
        let providers = config.providers.iter().map(|p| p.name.clone()).collect();
        // Governance is checked before the entries are stored: a refused file stores nothing
        // that other instances (or this one's sync) would then apply.
        self.governance
            .file_changed(&config)
            .await
            .map_err(|e| anyhow::anyhow!("governance is invalid: {e}"))?;
        if let Some(s) = &self.store {
            s.save_config_entries(&r.upserts, &r.removed).await?;
        }
        note_replaced(&r.replaced_edits);
        self.gateway
            .reload(config)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        state.file = Some(file);
        state.entries = r.entries;
        Ok(providers)
    }

    /// The entries as the store holds them now (other instances sharing it may have changed
    /// them), or as this process holds them without a store.
    async fn stored(&self, state: &Seeded) -> anyhow::Result<Vec<ConfigEntry>> {
        match &self.store {
            Some(s) => s.config_entries().await,
            None => Ok(state.entries.clone()),
        }
    }

    /// Keeps this instance in step with others sharing the config store: their admin changes
    /// apply here within [`SYNC_EVERY`]. `None` without a store.
    pub fn spawn(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.store.as_ref()?;
        let this = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first round reads the entries once and finds them as they run.
            let mut seen = i64::MIN;
            loop {
                tick.tick().await;
                this.sync(&mut seen).await;
            }
        }))
    }

    async fn sync(&self, seen: &mut i64) {
        let Some(store) = &self.store else { return };
        let revision = match store.config_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "config store did not answer; the running providers and settings stay"
                );
                return;
            }
        };
        if revision == *seen {
            return;
        }
        let mut state = self.state.lock().await;
        let entries = match store.config_entries().await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "config store entries not read");
                return;
            }
        };
        *seen = revision;
        // This instance's own changes are running already.
        if entries == state.entries {
            return;
        }
        let applied = build(state.file.as_ref(), &entries, &state.env)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                self.gateway
                    .reload(config.clone())
                    .map(|()| config)
                    .map_err(|e| e.message)
            });
        match applied {
            Ok(config) => {
                self.governance.settings_changed(&config).await;
                state.entries = entries;
                tracing::info!(
                    revision,
                    "providers and client settings reloaded from the config store"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "the config store's providers and settings do not hold together; the running ones stay"
            ),
        }
    }

    /// An admin change: `edit` sees the entries and the composed document and says what to
    /// change (or refuses); the result is checked in full, written to the store and swapped
    /// in before this returns. Nothing changes when any step refuses.
    pub async fn change<T>(
        &self,
        edit: impl FnOnce(&[ConfigEntry], &Value) -> Result<(Edit, T), Refused>,
    ) -> Result<T, Refused> {
        let mut state = self.state.lock().await;
        let stored = self.stored(&state).await.map_err(Refused::Store)?;
        let document = view(&state, &stored);
        let (edit, out) = edit(&stored, &document)?;
        let entries = applied(&stored, &edit);
        let config = build(state.file.as_ref(), &entries, &state.env).map_err(Refused::Invalid)?;
        let running = self.gateway.config();
        // A setting Heimdall would ignore although it changes security or billing is refused
        // here whatever `--allow-unsupported-config` says: that flag is for the file.
        let added: Vec<_> = (config.unsupported.iter())
            .filter(|u| !running.unsupported.contains(u))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            return Err(Refused::Invalid(ConfigError {
                path: String::new(),
                message: format!(
                    "settings that change security or billing are not supported by Heimdall yet: {}",
                    added.join("; ")
                ),
            }));
        }
        for w in config
            .warnings
            .iter()
            .filter(|w| !running.warnings.contains(w))
        {
            tracing::warn!("admin API change: {w}");
        }
        if let Some(s) = &self.store {
            s.save_config_entries(&edit.upserts, &edit.removed)
                .await
                .map_err(Refused::Store)?;
        }
        if let Err(e) = self.gateway.reload(config.clone()) {
            // Rare (the upstream client could not be built): the store goes back to what runs.
            if let Some(s) = &self.store {
                let back = undo(&stored, &edit);
                if let Err(e) = s.save_config_entries(&back.upserts, &back.removed).await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "config store: an admin change that could not be applied stays stored; it applies at the next start"
                    );
                }
            }
            return Err(Refused::Invalid(ConfigError {
                path: String::new(),
                message: e.message,
            }));
        }
        self.governance.settings_changed(&config).await;
        state.entries = entries;
        Ok(out)
    }
}

/// config.json's entries: each provider's section, and each managed client setting it sets.
fn file_entries(file: &Value) -> Vec<(ConfigKind, String, String)> {
    let mut out = Vec::new();
    if let Some(providers) = file.get("providers").and_then(Value::as_object) {
        for (name, section) in providers {
            out.push((ConfigKind::Provider, name.clone(), section.to_string()));
        }
    }
    let client = file.get("client");
    for name in CLIENT_SETTINGS {
        let value = client.and_then(|c| {
            c.get(name).or_else(|| {
                (name == "enforce_auth_on_inference")
                    .then(|| c.get(OLD_ENFORCE_AUTH))
                    .flatten()
            })
        });
        if let Some(v) = value.filter(|v| !v.is_null()) {
            out.push((ConfigKind::Client, name.to_owned(), v.to_string()));
        }
    }
    out
}

/// config.json (or an empty document) with `providers` and the managed `client` settings
/// taken from the entries.
fn compose(file: Option<&Value>, entries: &[ConfigEntry]) -> Value {
    let mut doc = match file {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let mut providers = Map::new();
    let mut client = match doc.remove("client") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for name in CLIENT_SETTINGS {
        client.remove(name);
    }
    client.remove(OLD_ENFORCE_AUTH);
    for e in entries {
        // Bodies are written by this module from JSON values; one that does not read back
        // (edited by hand in the database) is left out and said so.
        let Some(body) = e.body.as_deref() else {
            continue;
        };
        let value = match serde_json::from_str::<Value>(body) {
            Ok(v) => v,
            Err(err) => {
                tracing::error!(kind = e.kind.as_str(), name = %e.name, error = %err, "config store: an entry does not read; left out");
                continue;
            }
        };
        match e.kind {
            ConfigKind::Provider => providers.insert(e.name.clone(), value),
            ConfigKind::Client => client.insert(e.name.clone(), value),
        };
    }
    doc.insert("providers".into(), Value::Object(providers));
    doc.insert("client".into(), Value::Object(client));
    Value::Object(doc)
}

/// Parses the composed document. Without a config file, the providers enabled from the
/// environment (`env`) stay enabled beside the entries'; an entry of the same name wins.
fn build(
    file: Option<&Value>,
    entries: &[ConfigEntry],
    env: &[ProviderConfig],
) -> Result<Config, ConfigError> {
    let vars = |var: &str| std::env::var(var).ok();
    let mut config = Config::from_json(&compose(file, entries).to_string(), &vars)?;
    if file.is_none() {
        for p in env {
            if config.provider(&p.name).is_none() {
                config.providers.push(p.clone());
            }
        }
    }
    Ok(config)
}

/// The composed document as the admin API sees it: without a config file, each provider the
/// environment enables and no entry replaces is added, marked `"source": "env"`, with its key
/// as the reference to its variable (what a `PUT` of it sent back stores, so the key is still
/// read from the environment). With a file the environment enables nothing.
fn view(state: &Seeded, entries: &[ConfigEntry]) -> Value {
    let mut doc = compose(state.file.as_ref(), entries);
    if state.file.is_none()
        && let Some(providers) = doc.get_mut("providers").and_then(Value::as_object_mut)
    {
        for p in &state.env {
            providers.entry(p.name.clone()).or_insert_with(|| {
                json!({
                    "keys": [{"name": p.env_var, "value": format!("env.{}", p.env_var),
                              "models": ["*"], "weight": 1}],
                    SOURCE: FROM_ENV,
                })
            });
        }
    }
    doc
}

/// `entries` with `edit` applied, in kind and name order.
fn applied(entries: &[ConfigEntry], edit: &Edit) -> Vec<ConfigEntry> {
    let mut out: Vec<ConfigEntry> = entries
        .iter()
        .filter(|e| {
            !edit
                .removed
                .iter()
                .any(|(k, n)| *k == e.kind && *n == e.name)
                && !edit
                    .upserts
                    .iter()
                    .any(|u| u.kind == e.kind && u.name == e.name)
        })
        .cloned()
        .collect();
    out.extend(edit.upserts.iter().cloned());
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

/// The edit that puts back what `edit` changed in `entries`.
fn undo(entries: &[ConfigEntry], edit: &Edit) -> Edit {
    let before = |kind: ConfigKind, name: &str| {
        entries
            .iter()
            .find(|e| e.kind == kind && e.name == name)
            .cloned()
    };
    let mut back = Edit::default();
    let touched = edit
        .upserts
        .iter()
        .map(|u| (u.kind, u.name.clone()))
        .chain(edit.removed.iter().cloned());
    for (kind, name) in touched {
        match before(kind, &name) {
            Some(e) => back.upserts.push(e),
            None => back.removed.push((kind, name)),
        }
    }
    back
}

fn note_replaced(replaced: &[String]) {
    for what in replaced {
        tracing::warn!(
            entry = %what,
            "config.json changed this entry, which the admin API had changed too: the file's version now applies"
        );
    }
}

/// The entry of `kind` and `name` set to `body` by the admin API (`None`: deleted). What the
/// file declared is remembered, so that the file does not bring back a deletion or overwrite
/// an edit until the file itself changes there.
pub fn set_entry(
    entries: &[ConfigEntry],
    kind: ConfigKind,
    name: &str,
    body: Option<&Value>,
    edit: &mut Edit,
) {
    let file_body = entries
        .iter()
        .find(|e| e.kind == kind && e.name == name)
        .and_then(|e| e.file_body.clone());
    match (body, file_body) {
        // Nothing of the file's to hold back: the entry goes.
        (None, None) => edit.removed.push((kind, name.to_owned())),
        (body, file_body) => edit.upserts.push(ConfigEntry {
            kind,
            name: name.to_owned(),
            body: body.map(Value::to_string),
            file_body,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_store_s_entries_replace_the_file_s_providers_and_settings() {
        let file = json!({"version": 2,
            "providers": {"openai": {"keys": []}},
            "client": {"enforce_governance_header": true, "models_cache_ttl_seconds": 5}});
        let entries = file_entries(&file);
        assert_eq!(
            entries
                .iter()
                .map(|(k, n, _)| (k.as_str(), n.as_str()))
                .collect::<Vec<_>>(),
            [
                ("provider", "openai"),
                ("client", "enforce_auth_on_inference")
            ]
        );
        let stored = vec![
            ConfigEntry {
                kind: ConfigKind::Provider,
                name: "anthropic".into(),
                body: Some(r#"{"keys":[]}"#.into()),
                file_body: None,
            },
            ConfigEntry {
                kind: ConfigKind::Client,
                name: "enforce_auth_on_inference".into(),
                body: Some("false".into()),
                file_body: Some("true".into()),
            },
        ];
        let doc = compose(Some(&file), &stored);
        assert_eq!(doc["version"], 2);
        assert_eq!(doc["providers"], json!({"anthropic": {"keys": []}}));
        assert_eq!(
            doc["client"],
            json!({"enforce_auth_on_inference": false, "models_cache_ttl_seconds": 5})
        );
    }

    #[test]
    fn without_a_file_the_api_sees_the_environment_s_providers_until_an_entry_replaces_one() {
        let env = Config::from_env(&|v| (v == "OPENAI_API_KEY").then(|| "sk-env".to_owned()));
        let mut state = Seeded {
            file: None,
            entries: Vec::new(),
            env: env.providers,
        };
        let doc = view(&state, &[]);
        assert_eq!(
            doc["providers"]["openai"],
            json!({"keys": [{"name": "OPENAI_API_KEY", "value": "env.OPENAI_API_KEY",
                             "models": ["*"], "weight": 1}], "source": "env"})
        );
        let stored = [ConfigEntry {
            kind: ConfigKind::Provider,
            name: "openai".into(),
            body: Some(r#"{"keys":[]}"#.into()),
            file_body: None,
        }];
        assert_eq!(
            view(&state, &stored)["providers"]["openai"],
            json!({"keys": []})
        );
        let built = build(None, &[], &state.env).unwrap();
        assert!(built.provider("openai").is_some());
        // With a file the environment enables nothing, in the view as in the gateway.
        state.file = Some(json!({}));
        assert_eq!(view(&state, &[])["providers"], json!({}));
        assert!(
            build(Some(&json!({})), &[], &state.env)
                .unwrap()
                .providers
                .is_empty()
        );
    }

    #[test]
    fn an_edit_applies_and_undoes() {
        let entry = |name: &str, body: &str| ConfigEntry {
            kind: ConfigKind::Provider,
            name: name.into(),
            body: Some(body.into()),
            file_body: Some(body.into()),
        };
        let entries = vec![entry("a", "1"), entry("b", "2")];
        let mut edit = Edit::default();
        set_entry(&entries, ConfigKind::Provider, "a", None, &mut edit);
        set_entry(
            &entries,
            ConfigKind::Provider,
            "c",
            Some(&json!(3)),
            &mut edit,
        );
        let after = applied(&entries, &edit);
        assert_eq!(after[0].body, None);
        assert_eq!(after[0].file_body.as_deref(), Some("1"));
        assert_eq!(after[2].name, "c");
        let back = undo(&entries, &edit);
        assert_eq!(applied(&after, &back), entries);
    }
}
