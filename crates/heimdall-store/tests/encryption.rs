//! `encryption_key`: the config store's documents encrypted at rest, each test on SQLite and on
//! PostgreSQL. What is written with a key is not in the database in plain text and reads back
//! equal; a wrong key, or none for an encrypted store, is refused without naming either; and
//! documents written before the key was set still read, and are encrypted at the next start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod common;

use common::TestDb;
use heimdall_core::config::{Secret, StoreConfig};
use heimdall_store::{ConfigEntry, ConfigKind, EntityKind, Store};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

on_both_engines!(
    documents_written_with_a_key_are_not_stored_in_plain_text,
    a_wrong_key_or_none_is_refused_without_naming_either,
    documents_from_before_the_key_still_read_and_are_encrypted_at_start,
);

const PASSPHRASE: &str = "correct horse battery staple";
const PROVIDER_KEY: &str = "sk-provider-0123456789abcdef";
const VIRTUAL_KEY: &str = "sk-bf-virtual-0123456789abcdef";

fn key(passphrase: &str) -> Secret {
    Secret::new(passphrase)
}

async fn keyed(db: &TestDb, passphrase: &str) -> anyhow::Result<Store> {
    db.open()
        .await
        .with_encryption_key(Some(&key(passphrase)))
        .await
}

fn openai() -> ConfigEntry {
    let body = json!({"keys": [{"name": "main", "value": PROVIDER_KEY, "weight": 1}]}).to_string();
    ConfigEntry {
        kind: ConfigKind::Provider,
        name: "openai".into(),
        body: Some(body.clone()),
        file_body: Some(body),
    }
}

async fn write_both(store: &Store) {
    store.save_config_entries(&[openai()], &[]).await.unwrap();
    store
        .put_entity(
            EntityKind::VirtualKey,
            "vk-1",
            &json!({"id": "vk-1", "name": "team", "value": VIRTUAL_KEY}),
        )
        .await
        .unwrap();
}

async fn reads_both(store: &Store) {
    assert_eq!(store.config_entries().await.unwrap(), [openai()]);
    let g = store.governance().await.unwrap();
    assert_eq!(g.virtual_keys.len(), 1);
    assert_eq!(g.virtual_keys[0].value, VIRTUAL_KEY);
}

/// Every document as the database holds it, read past the store.
async fn raw_documents(db: &TestDb) -> Vec<String> {
    const SQL: &str = "SELECT body FROM config_entries WHERE body IS NOT NULL \
         UNION ALL SELECT file_body FROM config_entries WHERE file_body IS NOT NULL \
         UNION ALL SELECT body FROM governance_entities";
    match &db.config {
        StoreConfig::Sqlite { path } => {
            let options = SqliteConnectOptions::new().filename(db.app_dir.join(path));
            let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
            sqlx::query_scalar(SQL).fetch_all(&mut conn).await.unwrap()
        }
        StoreConfig::Postgres(pg) => {
            let mut options = PgConnectOptions::new()
                .host(&pg.host)
                .port(pg.port)
                .username(&pg.user)
                .database(&pg.db_name);
            if !pg.password.expose().is_empty() {
                options = options.password(pg.password.expose());
            }
            let mut conn = PgConnection::connect_with(&options).await.unwrap();
            sqlx::query_scalar(SQL).fetch_all(&mut conn).await.unwrap()
        }
    }
}

fn assert_sealed(documents: &[String]) {
    assert_eq!(documents.len(), 3, "{documents:?}");
    for d in documents {
        assert!(d.starts_with("enc:v1:"), "{d}");
        assert!(!d.contains(PROVIDER_KEY) && !d.contains(VIRTUAL_KEY), "{d}");
    }
}

/// SQLite: no file of the database (its WAL included) holds `needle`.
fn assert_no_file_holds(db: &TestDb, needle: &str) {
    let StoreConfig::Sqlite { path } = &db.config else {
        return;
    };
    let file = db.app_dir.join(path);
    let dir = file.parent().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // The WAL and its index go when the last connection closes, which the pool does in
        // the background: a file gone meanwhile holds nothing (its pages reached the database
        // file, which is read too).
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{} holds the secret",
            path.display()
        );
    }
}

async fn documents_written_with_a_key_are_not_stored_in_plain_text(db: TestDb) {
    {
        let store = keyed(&db, PASSPHRASE).await.unwrap();
        write_both(&store).await;
        reads_both(&store).await;
    }
    assert_sealed(&raw_documents(&db).await);
    assert_no_file_holds(&db, PROVIDER_KEY);
    assert_no_file_holds(&db, VIRTUAL_KEY);
    // Another instance (or a restart) with the same passphrase derives the same key.
    let again = keyed(&db, PASSPHRASE).await.unwrap();
    reads_both(&again).await;
    // Sealing is not deterministic: the same document written twice is stored differently.
    let before = raw_documents(&db).await;
    write_both(&again).await;
    let after = raw_documents(&db).await;
    assert_sealed(&after);
    assert!(before.iter().all(|d| !after.contains(d)));
}

async fn a_wrong_key_or_none_is_refused_without_naming_either(db: TestDb) {
    write_both(&keyed(&db, PASSPHRASE).await.unwrap()).await;
    let wrong = "not the passphrase";
    let wrong_key = format!("{:#}", keyed(&db, wrong).await.err().unwrap());
    assert!(
        wrong_key.contains("encryption_key is not the key"),
        "{wrong_key}"
    );
    let no_key = db
        .open()
        .await
        .with_encryption_key(None)
        .await
        .err()
        .unwrap();
    let no_key = format!("{no_key:#}");
    assert!(no_key.contains("none is configured"), "{no_key}");
    for message in [&wrong_key, &no_key] {
        for secret in [PASSPHRASE, wrong, PROVIDER_KEY, VIRTUAL_KEY] {
            assert!(!message.contains(secret), "{message}");
        }
    }
    // A handle without the key cannot read what is sealed either, and says why.
    let unread = format!("{:#}", db.open().await.config_entries().await.unwrap_err());
    assert!(
        unread.contains("stored provider `openai` is encrypted"),
        "{unread}"
    );
    assert!(!unread.contains("enc:v1:"), "{unread}");
    // Nothing was changed by the refusals.
    reads_both(&keyed(&db, PASSPHRASE).await.unwrap()).await;
}

async fn documents_from_before_the_key_still_read_and_are_encrypted_at_start(db: TestDb) {
    let plain = db.open().await.with_encryption_key(None).await.unwrap();
    write_both(&plain).await;
    assert!(
        raw_documents(&db)
            .await
            .iter()
            .any(|d| d.contains(PROVIDER_KEY)),
        "without a key documents are plain"
    );
    let store = keyed(&db, PASSPHRASE).await.unwrap();
    reads_both(&store).await;
    assert_sealed(&raw_documents(&db).await);
    // A plain document written after the key was set (by an instance started before it) reads.
    plain.save_config_entries(&[openai()], &[]).await.unwrap();
    assert!(
        raw_documents(&db)
            .await
            .iter()
            .any(|d| d.contains(PROVIDER_KEY))
    );
    reads_both(&store).await;
}
