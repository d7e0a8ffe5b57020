//! The config store's providers and client settings: what config.json declared and what the
//! admin API changed since, one entry per provider and per client setting.
//!
//! Which wins when both change is decided per entry by [`reconcile`]: config.json seeds what
//! the store does not hold yet; afterwards an entry follows the file only when the file's
//! version of that entry changed, so a reload of an edited file takes exactly what was edited
//! in it and keeps the admin API's changes of everything else (a change of the file replacing
//! an API edit is reported, never silent). Nothing here runs on the request path.

use std::time::SystemTime;

use sqlx::{QueryBuilder, Row};

use crate::secrets::is_sealed;
use crate::{Store, millis, on_engine};

/// A row as stored: kind, name, body, file body (sealed or not).
type EntryRow = (String, String, Option<String>, Option<String>);

/// What an entry configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    /// A provider's section under `providers`, named by the provider.
    Provider,
    /// One field under `client`, named by the field.
    Client,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Client => "client",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "provider" => Some(Self::Provider),
            "client" => Some(Self::Client),
            _ => None,
        }
    }
}

/// One provider or client setting as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub kind: ConfigKind,
    pub name: String,
    /// The JSON document in config.json's layout; `None`: deleted through the admin API while
    /// config.json still declares it.
    pub body: Option<String>,
    /// config.json's version when it was last taken; `None`: the file has none.
    pub file_body: Option<String>,
}

impl ConfigEntry {
    /// Changed through the admin API since config.json's version was taken (or created,
    /// or deleted there).
    pub fn edited(&self) -> bool {
        self.body != self.file_body
    }
}

/// What [`reconcile`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Every entry after the file was taken, sorted by kind and name.
    pub entries: Vec<ConfigEntry>,
    /// Entries to write (new or changed).
    pub upserts: Vec<ConfigEntry>,
    /// Entries to delete.
    pub removed: Vec<(ConfigKind, String)>,
    /// Entries whose admin API edit a change of config.json replaced, as `kind name`.
    pub replaced_edits: Vec<String>,
}

/// Takes config.json's entries (`file`: kind, name, JSON text) into the `stored` ones:
///
/// - an entry the store lacks is added from the file (the file seeds the store);
/// - an entry whose file version is unchanged keeps what the store holds (the admin API's
///   edits, or its deletion, stay);
/// - an entry whose file version changed takes the file's (the file was edited there; when
///   the admin API had edited it too, that is reported in `replaced_edits`);
/// - an entry the file no longer declares is deleted if it was the file's unedited, and
///   otherwise kept as the admin API's own.
pub fn reconcile(stored: &[ConfigEntry], file: &[(ConfigKind, String, String)]) -> Reconciled {
    let mut out = Reconciled::default();
    let in_file = |kind: ConfigKind, name: &str| {
        file.iter()
            .find(|(k, n, _)| *k == kind && n == name)
            .map(|(_, _, body)| body)
    };
    for entry in stored {
        match in_file(entry.kind, &entry.name) {
            Some(body) if entry.file_body.as_ref() == Some(body) => out.entries.push(entry.clone()),
            Some(body) => {
                if entry.edited() {
                    out.replaced_edits
                        .push(format!("{} {}", entry.kind.as_str(), entry.name));
                }
                let taken = ConfigEntry {
                    body: Some(body.clone()),
                    file_body: Some(body.clone()),
                    ..entry.clone()
                };
                out.upserts.push(taken.clone());
                out.entries.push(taken);
            }
            None if entry.file_body.is_none() => out.entries.push(entry.clone()),
            None if !entry.edited() || entry.body.is_none() => {
                out.removed.push((entry.kind, entry.name.clone()))
            }
            None => {
                let own = ConfigEntry {
                    file_body: None,
                    ..entry.clone()
                };
                out.upserts.push(own.clone());
                out.entries.push(own);
            }
        }
    }
    for (kind, name, body) in file {
        if !stored.iter().any(|e| e.kind == *kind && e.name == *name) {
            let seeded = ConfigEntry {
                kind: *kind,
                name: name.clone(),
                body: Some(body.clone()),
                file_body: Some(body.clone()),
            };
            out.upserts.push(seeded.clone());
            out.entries.push(seeded);
        }
    }
    out.entries
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

impl Store {
    /// Every provider and client setting entry, by kind and name.
    pub async fn config_entries(&self) -> anyhow::Result<Vec<ConfigEntry>> {
        let mut entries = Vec::new();
        for (kind, name, body, file_body) in self.entry_rows().await? {
            let Some(kind) = ConfigKind::parse(&kind) else {
                tracing::warn!(kind, name, "unknown config entry kind; skipped");
                continue;
            };
            let what = || format!("stored {} `{name}`", kind.as_str());
            let body = body.map(|b| self.unseal(b, what)).transpose()?;
            let file_body = file_body.map(|b| self.unseal(b, what)).transpose()?;
            entries.push(ConfigEntry {
                kind,
                name,
                body,
                file_body,
            });
        }
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(entries)
    }

    /// The rows as stored: kind, name, body, file body.
    async fn entry_rows(&self) -> anyhow::Result<Vec<EntryRow>> {
        Ok(on_engine!(self, read, DB, pool => {
            QueryBuilder::<DB>::new(
                "SELECT kind, name, body, file_body FROM config_entries ORDER BY kind, name",
            )
            .build()
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()?
        }))
    }

    /// Seals the entries written before the store had a key (see `with_encryption_key`);
    /// answers how many. An entry another instance rewrote meanwhile is left as it wrote it.
    pub(crate) async fn seal_plain_entries(&self) -> anyhow::Result<u64> {
        let plain = |v: &Option<String>| v.as_deref().is_some_and(|v| !is_sealed(v));
        let seal = |v: &Option<String>| v.as_deref().map(|v| self.seal_stored(v)).transpose();
        let mut rows = Vec::new();
        for (kind, name, body, file_body) in self.entry_rows().await? {
            if plain(&body) || plain(&file_body) {
                let sealed = (seal(&body)?, seal(&file_body)?);
                rows.push(((kind, name, body, file_body), sealed));
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let mut sealed = 0;
        on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            for ((kind, name, body, file_body), (new_body, new_file_body)) in &rows {
                sealed += QueryBuilder::<DB>::new("UPDATE config_entries SET body = ")
                    .push_bind(new_body.as_deref())
                    .push(", file_body = ")
                    .push_bind(new_file_body.as_deref())
                    .push(" WHERE kind = ")
                    .push_bind(kind.as_str())
                    .push(" AND name = ")
                    .push_bind(name.as_str())
                    .push(" AND body IS NOT DISTINCT FROM ")
                    .push_bind(body.as_deref())
                    .push(" AND file_body IS NOT DISTINCT FROM ")
                    .push_bind(file_body.as_deref())
                    .build()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(sealed)
    }

    /// Bumped by every write of the entries.
    pub async fn config_revision(&self) -> anyhow::Result<i64> {
        Ok(on_engine!(self, read, DB, pool => {
            QueryBuilder::<DB>::new("SELECT revision FROM config_revision WHERE id = 1")
                .build()
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>(0)?
        }))
    }

    /// Writes `upserts` and deletes `removed`, all or nothing, and bumps the revision.
    pub async fn save_config_entries(
        &self,
        upserts: &[ConfigEntry],
        removed: &[(ConfigKind, String)],
    ) -> anyhow::Result<()> {
        if upserts.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let now = millis(SystemTime::now());
        let sealed = upserts
            .iter()
            .map(|e| {
                let body = e.body.as_deref().map(|v| self.seal(v)).transpose()?;
                let file_body = e.file_body.as_deref().map(|v| self.seal(v)).transpose()?;
                Ok((e, body, file_body))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        on_engine!(self, write, DB, pool => {
            let mut tx = pool.begin().await?;
            for (e, body, file_body) in &sealed {
                QueryBuilder::<DB>::new("INSERT INTO config_entries (kind, name, body, file_body, updated_at) VALUES (")
                    .push_bind(e.kind.as_str())
                    .push(", ")
                    .push_bind(e.name.as_str())
                    .push(", ")
                    .push_bind(body.as_deref())
                    .push(", ")
                    .push_bind(file_body.as_deref())
                    .push(", ")
                    .push_bind(now)
                    .push(") ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, file_body = excluded.file_body, updated_at = excluded.updated_at")
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            QueryBuilder::<DB>::new("UPDATE config_revision SET revision = revision + 1 WHERE id = 1")
                .build()
                .execute(&mut *tx)
                .await?;
            for (kind, name) in removed {
                QueryBuilder::<DB>::new("DELETE FROM config_entries WHERE kind = ")
                    .push_bind(kind.as_str())
                    .push(" AND name = ")
                    .push_bind(name.as_str())
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, body: Option<&str>, file_body: Option<&str>) -> ConfigEntry {
        ConfigEntry {
            kind: ConfigKind::Provider,
            name: name.into(),
            body: body.map(Into::into),
            file_body: file_body.map(Into::into),
        }
    }

    fn file(items: &[(&str, &str)]) -> Vec<(ConfigKind, String, String)> {
        items
            .iter()
            .map(|(n, b)| (ConfigKind::Provider, (*n).into(), (*b).into()))
            .collect()
    }

    #[test]
    fn the_file_seeds_an_empty_store() {
        let r = reconcile(&[], &file(&[("openai", "1")]));
        assert_eq!(r.entries, [entry("openai", Some("1"), Some("1"))]);
        assert_eq!(r.upserts, r.entries);
        assert!(r.removed.is_empty() && r.replaced_edits.is_empty());
    }

    #[test]
    fn an_unchanged_file_keeps_api_edits_and_deletions() {
        let stored = [
            entry("a", Some("edited"), Some("1")),
            entry("b", None, Some("2")),
            entry("c", Some("api"), None),
        ];
        let r = reconcile(&stored, &file(&[("a", "1"), ("b", "2")]));
        assert_eq!(r.entries, stored);
        assert!(r.upserts.is_empty() && r.removed.is_empty());
    }

    #[test]
    fn a_changed_file_entry_wins_and_says_whose_edit_it_replaced() {
        let stored = [
            entry("a", Some("edited"), Some("1")),
            entry("b", Some("2"), Some("2")),
        ];
        let r = reconcile(&stored, &file(&[("a", "1b"), ("b", "2b")]));
        assert_eq!(
            r.entries,
            [
                entry("a", Some("1b"), Some("1b")),
                entry("b", Some("2b"), Some("2b"))
            ]
        );
        assert_eq!(r.replaced_edits, ["provider a"]);
    }

    #[test]
    fn a_file_dropping_an_entry_removes_it_unless_the_api_edited_it() {
        let stored = [
            entry("a", Some("1"), Some("1")),
            entry("b", Some("edited"), Some("2")),
            entry("c", None, Some("3")),
        ];
        let r = reconcile(&stored, &[]);
        assert_eq!(r.entries, [entry("b", Some("edited"), None)]);
        assert_eq!(
            r.removed,
            [
                (ConfigKind::Provider, "a".to_owned()),
                (ConfigKind::Provider, "c".to_owned())
            ]
        );
    }
}
