//! The config store's governance tables: the entities (what the config file declared, what the
//! admin API changed since) and the in-memory counters saved across restarts.
//!
//! Nothing here runs on the request path: entities are read at start, after an admin change
//! and when another instance bumped the revision; counters are saved every few seconds.

use std::time::SystemTime;

use anyhow::Context as _;
use heimdall_core::config::GovernanceConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{QueryBuilder, Row};

use crate::secrets::is_sealed;
use crate::{Store, millis, on_engine};

/// The kinds of governance entity, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    VirtualKey,
    Team,
    Customer,
    Budget,
    RateLimit,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        Self::Customer,
        Self::Team,
        Self::Budget,
        Self::RateLimit,
        Self::VirtualKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VirtualKey => "virtual_key",
            Self::Team => "team",
            Self::Customer => "customer",
            Self::Budget => "budget",
            Self::RateLimit => "rate_limit",
        }
    }
}

/// A counter as saved: its key, the start of its window and what was spent in it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedCounter {
    pub key: String,
    pub window_start: i64,
    pub used: f64,
}

fn to_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    serde_json::to_string(value).context("encoding a governance entity")
}

impl Store {
    /// Every governance entity in the store, by kind, in id order.
    pub async fn governance(&self) -> anyhow::Result<GovernanceConfig> {
        let rows = self.entity_rows().await?;
        let mut g = GovernanceConfig::default();
        for (kind, id, body) in rows {
            let body = self.unseal(body, || format!("stored {kind} `{id}`"))?;
            fn parse<T: DeserializeOwned>(kind: &str, id: &str, body: &str) -> anyhow::Result<T> {
                serde_json::from_str(body)
                    .with_context(|| format!("stored {kind} `{id}` does not read"))
            }
            match kind.as_str() {
                "virtual_key" => g.virtual_keys.push(parse(&kind, &id, &body)?),
                "team" => g.teams.push(parse(&kind, &id, &body)?),
                "customer" => g.customers.push(parse(&kind, &id, &body)?),
                "budget" => g.budgets.push(parse(&kind, &id, &body)?),
                "rate_limit" => g.rate_limits.push(parse(&kind, &id, &body)?),
                other => {
                    tracing::warn!(kind = other, id, "unknown governance entity kind; skipped")
                }
            }
        }
        Ok(g)
    }

    /// The rows as stored: kind, id, body (sealed or not).
    async fn entity_rows(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        Ok(on_engine!(self, read, DB, pool => {
            QueryBuilder::<DB>::new("SELECT kind, id, body FROM governance_entities ORDER BY kind, id")
                .build()
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect::<Result<_, sqlx::Error>>()?
        }))
    }

    /// Seals the entities written before the store had a key (see `with_encryption_key`);
    /// answers how many. An entity another instance rewrote meanwhile is left as it wrote it.
    pub(crate) async fn seal_plain_entities(&self) -> anyhow::Result<u64> {
        let mut rows = Vec::new();
        for (kind, id, body) in self.entity_rows().await? {
            if !is_sealed(&body) {
                let sealed = self.seal_stored(&body)?;
                rows.push((kind, id, body, sealed));
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let mut sealed = 0;
        on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            for (kind, id, body, new_body) in &rows {
                sealed += QueryBuilder::<DB>::new("UPDATE governance_entities SET body = ")
                    .push_bind(new_body.as_str())
                    .push(" WHERE kind = ")
                    .push_bind(kind.as_str())
                    .push(" AND id = ")
                    .push_bind(id.as_str())
                    .push(" AND body = ")
                    .push_bind(body.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(sealed)
    }

    /// Bumped by every change of the entities.
    pub async fn governance_revision(&self) -> anyhow::Result<i64> {
        Ok(on_engine!(self, read, DB, pool => {
            QueryBuilder::<DB>::new("SELECT revision FROM governance_revision WHERE id = 1")
                .build()
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>(0)?
        }))
    }

    /// Writes one entity (created or replaced).
    pub async fn put_entity<T: Serialize>(
        &self,
        kind: EntityKind,
        id: &str,
        entity: &T,
    ) -> anyhow::Result<()> {
        self.put_entities(&[(kind, id.to_owned(), to_json(entity)?)])
            .await
    }

    /// Writes every entity of `g` (the config file's, at start): what the file names it
    /// defines; what only the admin API created stays.
    pub async fn seed_governance(&self, g: &GovernanceConfig) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for vk in &g.virtual_keys {
            rows.push((EntityKind::VirtualKey, vk.id.clone(), to_json(vk)?));
        }
        for t in &g.teams {
            rows.push((EntityKind::Team, t.id.clone(), to_json(t)?));
        }
        for c in &g.customers {
            rows.push((EntityKind::Customer, c.id.clone(), to_json(c)?));
        }
        for b in &g.budgets {
            rows.push((EntityKind::Budget, b.id.clone(), to_json(b)?));
        }
        for l in &g.rate_limits {
            if let Some(id) = &l.id {
                rows.push((EntityKind::RateLimit, id.clone(), to_json(l)?));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.put_entities(&rows).await
    }

    async fn put_entities(&self, rows: &[(EntityKind, String, String)]) -> anyhow::Result<()> {
        let now = millis(SystemTime::now());
        let rows = rows
            .iter()
            .map(|(kind, id, body)| Ok((kind, id, self.seal(body)?.into_owned())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            for (kind, id, body) in &rows {
                QueryBuilder::<DB>::new("INSERT INTO governance_entities (kind, id, body, updated_at) VALUES (")
                    .push_bind(kind.as_str())
                    .push(", ")
                    .push_bind(id.as_str())
                    .push(", ")
                    .push_bind(body.as_str())
                    .push(", ")
                    .push_bind(now)
                    .push(") ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at")
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            QueryBuilder::<DB>::new("UPDATE governance_revision SET revision = revision + 1 WHERE id = 1")
                .build()
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes one entity; `false` when there was none.
    pub async fn delete_entity(&self, kind: EntityKind, id: &str) -> anyhow::Result<bool> {
        let deleted = on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            let n = QueryBuilder::<DB>::new("DELETE FROM governance_entities WHERE kind = ")
                .push_bind(kind.as_str())
                .push(" AND id = ")
                .push_bind(id)
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                QueryBuilder::<DB>::new("UPDATE governance_revision SET revision = revision + 1 WHERE id = 1")
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(deleted)
    }

    /// Saves counters (replacing what was saved under the same keys).
    pub async fn save_counters(&self, counters: &[SavedCounter]) -> anyhow::Result<()> {
        if counters.is_empty() {
            return Ok(());
        }
        let now = millis(SystemTime::now());
        on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            for chunk in counters.chunks(256) {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO governance_counters (key, window_start, used, updated_at) ",
                );
                q.push_values(chunk, |mut b, c| {
                    b.push_bind(c.key.as_str())
                        .push_bind(c.window_start)
                        .push_bind(c.used)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (key) DO UPDATE SET window_start = excluded.window_start, used = excluded.used, updated_at = excluded.updated_at");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn load_counters(&self) -> anyhow::Result<Vec<SavedCounter>> {
        Ok(on_engine!(self, read, DB, pool => {
            QueryBuilder::<DB>::new("SELECT key, window_start, used FROM governance_counters")
                .build()
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| {
                    Ok(SavedCounter {
                        key: row.try_get(0)?,
                        window_start: row.try_get(1)?,
                        used: row.try_get(2)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?
        }))
    }
}
