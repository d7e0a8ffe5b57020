//! The semantic cache's copy of its entries: read back at start to rebuild the in-memory
//! index, kept up to date by [`CacheJournal`], which queues every change for one task to
//! write, so that nothing on the request path waits for the database.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use heimdall_cache::encoding::{vector_bytes, vector_of};
use heimdall_cache::request::{from_hex, hex};
use heimdall_cache::{Entry, Journal, Removed};
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};

use crate::{Store, on_engine};

/// Changes queued for the writer; past this, new entries are not persisted (they still
/// answer from memory) and the drop is counted.
pub const CACHE_QUEUE: usize = 4096;

enum Change {
    Stored(Arc<Entry>),
    Removed(Removed),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The [`Journal`] that writes the cache's changes to a store.
pub struct CacheJournal {
    tx: mpsc::Sender<Change>,
}

impl CacheJournal {
    fn send(&self, change: Change) {
        if self.tx.try_send(change).is_err() {
            metrics::counter!("heimdall_cache_journal_dropped_total").increment(1);
            tracing::warn!("semantic cache: the store's queue is full; a change was not persisted");
        }
    }

    /// Waits (at most `timeout`) until what is queued is written.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send_timeout(Change::Flush(done), timeout)
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

impl Journal for CacheJournal {
    fn stored(&self, entry: &Arc<Entry>) {
        self.send(Change::Stored(Arc::clone(entry)));
    }

    fn removed(&self, what: &Removed) {
        self.send(Change::Removed(what.clone()));
    }
}

type EntryRow = (
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    bool,
    Vec<u8>,
    String,
    String,
    i64,
    i64,
);

impl Store {
    /// Starts the task that writes the cache's changes; it ends when the journal is dropped.
    pub fn start_cache_journal(&self) -> (Arc<CacheJournal>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(CACHE_QUEUE);
        let store = self.clone();
        let task = tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                let written = match change {
                    Change::Stored(entry) => store.put_cache_entry(&entry).await,
                    Change::Removed(what) => store.remove_cache_entries(&what).await.map(|_| ()),
                    Change::Flush(done) => {
                        let _ = done.send(());
                        Ok(())
                    }
                };
                if let Err(e) = written {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "semantic cache: writing to the store failed"
                    );
                }
            }
        });
        (Arc::new(CacheJournal { tx }), task)
    }

    /// The entries that have not expired at `now_ms`.
    pub async fn cache_entries(&self, now_ms: i64) -> anyhow::Result<Vec<Entry>> {
        let rows: Vec<EntryRow> = on_engine!(self, read, DB, pool => {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT id, cache_key, direct, scope, vector, stream, body, provider, model, \
                 created_at, expires_at FROM cache_entries WHERE expires_at > ",
            );
            q.push_bind(now_ms);
            q.build_query_as::<EntryRow>().fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Entry {
                    id: r.0,
                    cache_key: r.1,
                    direct: from_hex(&r.2)?,
                    scope: from_hex(&r.3)?,
                    vector: match r.4 {
                        Some(b) => Some(vector_of(&b)?.into()),
                        None => None,
                    },
                    stream: r.5,
                    body: Bytes::from(r.6),
                    provider: r.7,
                    model: r.8,
                    created_ms: r.9,
                    expires_ms: r.10,
                })
            })
            .collect())
    }

    async fn put_cache_entry(&self, e: &Entry) -> anyhow::Result<()> {
        on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO cache_entries (id, cache_key, direct, scope, vector, stream, body, \
                 provider, model, created_at, expires_at) ",
            );
            q.push_values([e], |mut row, e| {
                row.push_bind(e.id.as_str())
                    .push_bind(e.cache_key.as_str())
                    .push_bind(hex(&e.direct))
                    .push_bind(hex(&e.scope))
                    .push_bind(e.vector.as_deref().map(vector_bytes))
                    .push_bind(e.stream)
                    .push_bind(e.body.as_ref())
                    .push_bind(e.provider.as_str())
                    .push_bind(e.model.as_str())
                    .push_bind(e.created_ms)
                    .push_bind(e.expires_ms);
            });
            q.push(
                " ON CONFLICT (id) DO UPDATE SET cache_key = excluded.cache_key, \
                 vector = excluded.vector, stream = excluded.stream, body = excluded.body, \
                 provider = excluded.provider, model = excluded.model, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
            );
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes the entries `what` names; how many rows went.
    pub async fn remove_cache_entries(&self, what: &Removed) -> anyhow::Result<u64> {
        Ok(on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM cache_entries");
            match what {
                Removed::Id(id) => {
                    q.push(" WHERE id = ").push_bind(id.as_str());
                }
                Removed::Key(key) => {
                    q.push(" WHERE cache_key = ").push_bind(key.as_str());
                }
                Removed::All => {}
            }
            q.build().execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes the entries expired at `now_ms`.
    pub async fn prune_cache(&self, now_ms: i64) -> anyhow::Result<u64> {
        Ok(on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM cache_entries WHERE expires_at <= ");
            q.push_bind(now_ms);
            q.build().execute(pool).await?.rows_affected()
        }))
    }
}
