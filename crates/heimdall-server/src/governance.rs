//! Governance around the policy: where its entities and counters live.
//!
//! The config store (SQLite `config.db` in the app dir, or PostgreSQL) holds the entities: the
//! config file's are written into it at start and on every reload, the admin API writes its
//! changes there, and every instance polls the store's revision to pick up the others'
//! changes. Counters live in Redis when it is configured (shared by every instance); otherwise
//! in this process, saved to the config store every few seconds and restored at start.
//! Nothing here is awaited by a request: admission reads the catalog and the ledger only.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use heimdall_core::config::{Config, ConfigError, GovernanceConfig};
use heimdall_governance::ledger::Tally;
use heimdall_governance::{Catalog, Governance, Ledger, MemoryLedger, RedisLedger};
use heimdall_store::{EntityKind, SavedCounter, Store};
use tokio::task::JoinHandle;

/// How often the store's revision is checked for other instances' changes.
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// How often in-memory counters are saved.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The settings a catalog is built with, from the latest config file.
#[derive(Debug, Clone, Copy)]
struct Reading {
    deny_empty: bool,
    enforce_auth: bool,
}

pub struct GovernanceService {
    pub policy: Arc<Governance>,
    store: Option<Store>,
    /// Set when counting in this process, to save and restore.
    memory: Option<Arc<MemoryLedger>>,
    reading: Mutex<Reading>,
    /// One admin change at a time on this instance, so that each is checked against the last.
    writes: tokio::sync::Mutex<()>,
    /// The store revision the catalog was last built from.
    revision: Mutex<i64>,
}

/// A change the admin API could not make.
#[derive(Debug)]
pub enum Refused {
    /// The entities would not hold together; `path` and `message` say where and why.
    Invalid(ConfigError),
    NotFound,
    Store(anyhow::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "{e}"),
            Self::NotFound => f.write_str("no such entity"),
            Self::Store(e) => write!(f, "the config store failed: {e:#}"),
        }
    }
}

impl GovernanceService {
    pub async fn start(config: &Config, app_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let g = &config.governance;
        let store = match &g.config_store {
            Some(c) => Some(
                Store::open(c, app_dir)
                    .await
                    .context("opening the config store (config_store)")?
                    .with_encryption_key(config.encryption_key.as_ref())
                    .await?,
            ),
            None => None,
        };
        let reading = Reading {
            deny_empty: g.deny_empty_lists,
            enforce_auth: g.enforce_auth,
        };
        let (entities, revision) = match &store {
            Some(s) => {
                s.seed_governance(&g.entities)
                    .await
                    .context("writing the config file's governance into the config store")?;
                (s.governance().await?, s.governance_revision().await?)
            }
            None => (g.entities.clone(), 0),
        };
        let catalog = Catalog::build(entities, reading.deny_empty)
            .map_err(|e| anyhow::anyhow!("governance in the config store: {e}"))?;
        let (ledger, memory): (Arc<dyn Ledger>, _) = match &g.redis {
            Some(r) => {
                let ledger = RedisLedger::connect(r)
                    .await
                    .context("redis.url for the governance counters")?;
                tracing::info!("governance counters in Redis, shared by every instance");
                (Arc::new(ledger), None)
            }
            None => {
                let memory = Arc::new(MemoryLedger::default());
                if let Some(s) = &store {
                    let saved = s.load_counters().await?;
                    memory.restore(saved.into_iter().map(|c| {
                        (
                            c.key.into(),
                            Tally {
                                start_ms: c.window_start,
                                used: c.used,
                                reserved: 0.0,
                            },
                        )
                    }));
                }
                (Arc::clone(&memory) as Arc<dyn Ledger>, Some(memory))
            }
        };
        if !catalog.is_empty() {
            tracing::info!(
                virtual_keys = catalog.entities.virtual_keys.len(),
                counters = ledger.engine(),
                "governance: virtual keys loaded"
            );
        }
        let policy = Arc::new(Governance::new(
            catalog,
            reading.enforce_auth,
            ledger,
            g.redis.as_ref().map(|r| r.on_failure).unwrap_or_default(),
            heimdall_governance::system_clock(),
        ));
        Ok(Arc::new(Self {
            policy,
            store,
            memory,
            reading: Mutex::new(reading),
            writes: tokio::sync::Mutex::new(()),
            revision: Mutex::new(revision),
        }))
    }

    /// The config store, when there is one (the admin API's providers and settings live there
    /// too).
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Client settings changed through the admin API: `enforce_auth_on_inference` applies at
    /// once; the entities stay as they are.
    pub async fn settings_changed(&self, config: &Config) {
        let g = &config.governance;
        let _one = self.writes.lock().await;
        let reading = Reading {
            deny_empty: g.deny_empty_lists,
            enforce_auth: g.enforce_auth,
        };
        *self.reading.lock().unwrap_or_else(|p| p.into_inner()) = reading;
        match Catalog::build(self.policy.entities(), reading.deny_empty) {
            Ok(catalog) => self.policy.replace(catalog, reading.enforce_auth),
            // The running entities were built with the same settings, so this cannot refuse
            // them; if it did, the running catalog stays.
            Err(e) => tracing::error!(error = %e, "governance: settings not applied"),
        }
    }

    fn reading(&self) -> Reading {
        *self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reloaded config file: its entities are written into the store (or, without one,
    /// replace the running ones) and its settings apply.
    pub async fn file_changed(&self, config: &Config) -> Result<(), Refused> {
        let g = &config.governance;
        let _one = self.writes.lock().await;
        let reading = Reading {
            deny_empty: g.deny_empty_lists,
            enforce_auth: g.enforce_auth,
        };
        let entities = match &self.store {
            None => g.entities.clone(),
            Some(_) => merge(self.policy.entities(), &g.entities),
        };
        let catalog = Catalog::build(entities, reading.deny_empty).map_err(Refused::Invalid)?;
        if let Some(s) = &self.store {
            s.seed_governance(&g.entities)
                .await
                .map_err(Refused::Store)?;
        }
        *self.reading.lock().unwrap_or_else(|p| p.into_inner()) = reading;
        self.policy.replace(catalog, reading.enforce_auth);
        Ok(())
    }

    /// The entities as they stand.
    pub fn entities(&self) -> GovernanceConfig {
        self.policy.entities()
    }

    /// Creates or replaces one entity, given as JSON; answers it as stored.
    pub async fn put(
        &self,
        kind: EntityKind,
        change: impl FnOnce(&mut GovernanceConfig) -> Result<serde_json::Value, ConfigError>,
    ) -> Result<serde_json::Value, Refused> {
        let _one = self.writes.lock().await;
        let mut entities = self.policy.entities();
        let stored = change(&mut entities).map_err(Refused::Invalid)?;
        let id = stored
            .get("id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let catalog =
            Catalog::build(entities, self.reading().deny_empty).map_err(Refused::Invalid)?;
        if let Some(s) = &self.store {
            s.put_entity(kind, &id, &stored)
                .await
                .map_err(Refused::Store)?;
        }
        self.policy.replace(catalog, self.reading().enforce_auth);
        Ok(stored)
    }

    /// Deletes one entity; refused while others still name it.
    pub async fn delete(
        &self,
        kind: EntityKind,
        id: &str,
        remove: impl FnOnce(&mut GovernanceConfig) -> bool,
    ) -> Result<(), Refused> {
        let _one = self.writes.lock().await;
        let mut entities = self.policy.entities();
        if !remove(&mut entities) {
            return Err(Refused::NotFound);
        }
        let catalog =
            Catalog::build(entities, self.reading().deny_empty).map_err(Refused::Invalid)?;
        if let Some(s) = &self.store {
            s.delete_entity(kind, id).await.map_err(Refused::Store)?;
        }
        self.policy.replace(catalog, self.reading().enforce_auth);
        Ok(())
    }

    /// Keeps this instance in step with the store: other instances' changes are picked up
    /// within [`SYNC_EVERY`], and in-memory counters saved every [`SAVE_EVERY`].
    pub fn spawn(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.store.as_ref()?;
        let this = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut sync = tokio::time::interval(SYNC_EVERY);
            let mut save = tokio::time::interval(SAVE_EVERY);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sync.tick() => this.sync().await,
                    _ = save.tick() => this.save_counters().await,
                }
            }
        }))
    }

    async fn sync(&self) {
        let Some(store) = &self.store else { return };
        let revision = match store.governance_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "governance: the config store did not answer; the running entities stay"
                );
                return;
            }
        };
        if revision == *self.revision.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        let _one = self.writes.lock().await;
        let built = store.governance().await.and_then(|g| {
            Catalog::build(g, self.reading().deny_empty).map_err(|e| anyhow::anyhow!("{e}"))
        });
        match built {
            Ok(catalog) => {
                self.policy.replace(catalog, self.reading().enforce_auth);
                *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = revision;
                tracing::debug!(
                    revision,
                    "governance: entities reloaded from the config store"
                );
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "governance: the config store's entities do not hold together; the running ones stay"
                );
            }
        }
    }

    /// Saves in-memory counters; also called once at shutdown.
    pub async fn save_counters(&self) {
        let (Some(store), Some(memory)) = (&self.store, &self.memory) else {
            return;
        };
        let counters: Vec<SavedCounter> = memory
            .snapshot()
            .into_iter()
            .map(|(key, t)| SavedCounter {
                key: key.to_string(),
                window_start: t.start_ms,
                used: t.used,
            })
            .collect();
        if let Err(e) = store.save_counters(&counters).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "governance: counters could not be saved"
            );
        }
    }
}

/// `file`'s entities over `running`: what the file names it defines, the rest stays.
fn merge(mut running: GovernanceConfig, file: &GovernanceConfig) -> GovernanceConfig {
    fn over<T: Clone>(list: &mut Vec<T>, from: &[T], id: impl Fn(&T) -> Option<&str>) {
        for item in from {
            match list.iter().position(|x| id(x) == id(item)) {
                Some(i) => list[i] = item.clone(),
                None => list.push(item.clone()),
            }
        }
    }
    over(&mut running.virtual_keys, &file.virtual_keys, |v| {
        Some(&v.id)
    });
    over(&mut running.teams, &file.teams, |t| Some(&t.id));
    over(&mut running.customers, &file.customers, |c| Some(&c.id));
    over(&mut running.budgets, &file.budgets, |b| Some(&b.id));
    over(&mut running.rate_limits, &file.rate_limits, |l| {
        l.id.as_deref()
    });
    running
}
