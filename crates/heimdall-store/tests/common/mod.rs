//! Test databases for both engines, and records to write.
//!
//! SQLite lives in a temporary directory. PostgreSQL is the server at
//! `postgres://postgres@127.0.0.1:5432/postgres` (or `HEIMDALL_TEST_PG_URL`): each test creates
//! its own database and drops it afterwards. An unreachable server fails the test: a store
//! test that skipped would hide the engine it did not run on.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a subset

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use heimdall_core::config::{PostgresConfig, Secret, StoreConfig};
use heimdall_core::{Content, Outcome, RequestRecord};
use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;
use heimdall_store::Store;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// A database to open stores on; a PostgreSQL one is dropped with it.
pub struct TestDb {
    pub config: StoreConfig,
    pub app_dir: PathBuf,
    _dir: tempfile::TempDir,
    pg: Option<(PgConnectOptions, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            // A relative path below a directory that does not exist yet: open creates both.
            config: StoreConfig::Sqlite {
                path: PathBuf::from("data/logs.db"),
            },
            app_dir: dir.path().to_owned(),
            _dir: dir,
            pg: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let url = std::env::var("HEIMDALL_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = PgConnectOptions::from_str(&url).unwrap();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "heimdall_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} is required by the store tests: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            config: StoreConfig::Postgres(PostgresConfig {
                host: admin.get_host().to_owned(),
                port: admin.get_port(),
                user: admin.get_username().to_owned(),
                password: Secret::new(url_password(&url)),
                db_name: name.clone(),
                ssl_mode: "disable".to_owned(),
                max_open_conns: 4,
            }),
            app_dir: dir.path().to_owned(),
            _dir: dir,
            pg: Some((admin, name)),
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.config, &self.app_dir).await.unwrap()
    }
}

/// The password of a `postgres://user:password@host/…` URL, if any.
fn url_password(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let userinfo = rest.split_once('@').map_or("", |(u, _)| u);
    userinfo.split_once(':').map_or("", |(_, p)| p).to_owned()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with its own runtime drops the database (FORCE: the store's pool may still be open).
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        });
        if let Err(e) = done.join().unwrap() {
            eprintln!("could not drop test database: {e}");
        }
    }
}

/// Runs each named `async fn(TestDb)` on SQLite and on PostgreSQL, as tests `NAME::sqlite`
/// and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::common::TestDb::sqlite().await).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::common::TestDb::postgres().await).await;
            }
        }
    )*};
}

/// Milliseconds since the epoch as a time.
pub fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A successful, non-streamed request without content, started at `ms`.
pub fn record(id: &str, ms: u64) -> RequestRecord {
    RequestRecord {
        started_at: at(ms),
        provider: Some("openai".to_owned()),
        model: Some("openai/gpt-5".to_owned()),
        served_model: Some("openai/gpt-5".to_owned()),
        key_name: Some("main".to_owned()),
        attempts: 1,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_input_tokens: 2,
            cache_creation_input_tokens: 1,
        },
        cost: Some(0.25),
        stop_reason: Some("end_turn".to_owned()),
        outcome: Outcome::Success,
        latency: Duration::from_millis(100),
        first_byte: Some(Duration::from_millis(40)),
        upstream_wait: Duration::from_millis(90),
        ..RequestRecord::new(id.to_owned(), Endpoint::Messages, "anthropic")
    }
}

/// A request that failed with `status` before any answer.
pub fn failed(id: &str, ms: u64, status: u16) -> RequestRecord {
    RequestRecord {
        outcome: Outcome::Failed {
            status,
            kind: ErrorType::RateLimitError,
        },
        error_message: Some("slow down".to_owned()),
        usage: Usage::default(),
        cost: None,
        stop_reason: None,
        ..record(id, ms)
    }
}

/// `request` as the request body and `answer` as the answer's chunks.
pub fn with_content(mut r: RequestRecord, request: &str, answer: &[&str]) -> RequestRecord {
    let mut content = Content::of_request(Bytes::from(request.to_owned()));
    for chunk in answer {
        content.push_response(&Bytes::from(chunk.to_string()));
    }
    r.content = Some(content);
    r
}
