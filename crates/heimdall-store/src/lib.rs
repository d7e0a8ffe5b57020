//! The logs store: request logs, async jobs and the semantic cache's entries, in SQLite
//! (embedded default) or PostgreSQL.
//!
//! Nothing here runs on the request path: records reach the store through [`LogWriter`], a
//! [`RecordSink`](heimdall_core::RecordSink) that only queues them; one writer task turns them
//! into rows and inserts them in batches. Both engines share one code path: queries are built
//! once with `sqlx::QueryBuilder` (which writes each engine's placeholders), and the
//! `on_engine!` macro compiles that code once per engine; what differs is the schema
//! (`migrations/<engine>`) and `LIKE` vs `ILIKE`.

mod cache;
mod config_entries;
mod governance;
mod jobs;
mod query;
mod secrets;
mod timeseries;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use heimdall_core::config::{PostgresConfig, StoreConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use cache::{CACHE_QUEUE, CacheJournal};
pub use config_entries::{ConfigEntry, ConfigKind, Reconciled, reconcile};
pub use governance::{EntityKind, SavedCounter};
pub use jobs::{Job, JobResult, JobState, NewJob};
pub use query::{LogEntry, LogPage, LogQuery, LogStats, Pagination};
pub use timeseries::{Bucket, SeriesQuery, TimeSeries, TopEntry};
pub use writer::{Closed, DEFAULT_QUEUE, DEFAULT_QUEUE_CONTENT_BYTES, LogWriter, WriterHandle};

/// Runs `$body` against the store's database with `$DB` naming the engine's sqlx database
/// type and `$pool` its pool (`read` or `write`: SQLite has one writer connection, so that
/// writes queue in the pool instead of failing busy; PostgreSQL uses one pool for both). The
/// body is written once and compiled once per engine.
macro_rules! on_engine {
    ($store:expr, $side:ident, $DB:ident, $pool:ident => $body:block) => {
        match &$store.db {
            $crate::Db::Sqlite { $side: $pool, .. } => {
                #[allow(clippy::upper_case_acronyms)]
                type $DB = ::sqlx::Sqlite;
                $body
            }
            $crate::Db::Postgres($pool) => {
                #[allow(clippy::upper_case_acronyms)]
                type $DB = ::sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_engine;

/// The logs store; cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// The config store's key (`encryption_key`); `None`: documents are written plain.
    sealer: Option<Arc<secrets::Sealer>>,
}

#[derive(Clone)]
enum Db {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// How long a SQLite connection waits for the writer lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers (the logs API) of a SQLite store; WAL lets them run beside the writer.
const SQLITE_READERS: u32 = 4;

impl Store {
    /// Opens (creating when needed) the store and brings its schema up to date.
    pub async fn open(config: &StoreConfig, app_dir: &Path) -> anyhow::Result<Store> {
        let db = match config {
            StoreConfig::Sqlite { path } => {
                let path = app_dir.join(path);
                open_sqlite(&path)
                    .await
                    .with_context(|| format!("SQLite logs store at {}", path.display()))?
            }
            StoreConfig::Postgres(pg) => open_postgres(pg).await.with_context(|| {
                format!(
                    "PostgreSQL logs store at {}@{}:{}/{} (sslmode {})",
                    pg.user, pg.host, pg.port, pg.db_name, pg.ssl_mode
                )
            })?,
        };
        Ok(Store { db, sealer: None })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Deletes, every `every`, logs older than `retention()` (when set) and expired jobs.
    /// `retention` is asked on every round, so a changed setting applies without a restart.
    /// Errors are logged and the loop goes on; the task ends only when aborted.
    pub fn spawn_maintenance(
        &self,
        retention: impl Fn() -> Option<Duration> + Send + 'static,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = SystemTime::now();
                if let Some(cutoff) = retention().and_then(|r| now.checked_sub(r)) {
                    match store.prune_logs(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "pruned old request logs"),
                        Err(e) => tracing::warn!(error = format!("{e:#}"), "pruning logs failed"),
                    }
                }
                match store.prune_jobs(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "pruned expired async jobs"),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "pruning jobs failed"),
                }
            }
        })
    }
}

async fn open_sqlite(path: &Path) -> anyhow::Result<Db> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses at most the last transactions on power loss, never integrity.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&write)
        .await
        .context("running migrations")?;
    let read = SqlitePoolOptions::new()
        .max_connections(SQLITE_READERS)
        .connect_with(options.read_only(true))
        .await?;
    Ok(Db::Sqlite { write, read })
}

async fn open_postgres(pg: &PostgresConfig) -> anyhow::Result<Db> {
    let mut options = PgConnectOptions::new()
        .host(&pg.host)
        .port(pg.port)
        .username(&pg.user)
        .database(&pg.db_name)
        .ssl_mode(PgSslMode::from_str(&pg.ssl_mode)?);
    if !pg.password.expose().is_empty() {
        options = options.password(pg.password.expose());
    }
    let pool = PgPoolOptions::new()
        .max_connections(pg.max_open_conns.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .context("running migrations")?;
    Ok(Db::Postgres(pool))
}

/// Milliseconds since the Unix epoch (negative before it), as stored.
fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// A duration in milliseconds, saturating.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
