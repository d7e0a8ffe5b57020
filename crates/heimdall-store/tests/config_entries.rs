//! The config store's providers and client settings, each test on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod common;

use common::TestDb;
use heimdall_store::{ConfigEntry, ConfigKind, reconcile};

on_both_engines!(
    entries_are_written_replaced_and_deleted,
    the_file_seeds_then_api_edits_outlive_reopening,
);

fn provider(name: &str, body: Option<&str>, file_body: Option<&str>) -> ConfigEntry {
    ConfigEntry {
        kind: ConfigKind::Provider,
        name: name.into(),
        body: body.map(Into::into),
        file_body: file_body.map(Into::into),
    }
}

async fn entries_are_written_replaced_and_deleted(db: TestDb) {
    let store = db.open().await;
    assert!(store.config_entries().await.unwrap().is_empty());
    assert_eq!(store.config_revision().await.unwrap(), 0);
    let setting = ConfigEntry {
        kind: ConfigKind::Client,
        name: "allow_direct_keys".into(),
        body: Some("true".into()),
        file_body: None,
    };
    let written = [
        provider("openai", Some(r#"{"keys":[]}"#), Some(r#"{"keys":[]}"#)),
        provider("anthropic", None, Some("{}")),
        setting.clone(),
    ];
    store.save_config_entries(&written, &[]).await.unwrap();
    // Sorted by kind (providers first), then name; a NULL body reads back as `None`.
    assert_eq!(
        store.config_entries().await.unwrap(),
        [written[1].clone(), written[0].clone(), setting.clone()]
    );
    let replaced = provider("openai", Some(r#"{"keys":[1]}"#), Some(r#"{"keys":[]}"#));
    store
        .save_config_entries(
            std::slice::from_ref(&replaced),
            &[(ConfigKind::Provider, "anthropic".into())],
        )
        .await
        .unwrap();
    assert_eq!(store.config_entries().await.unwrap(), [replaced, setting]);
    assert_eq!(store.config_revision().await.unwrap(), 2);
    // Nothing to do is no transaction at all.
    store.save_config_entries(&[], &[]).await.unwrap();
    assert_eq!(store.config_revision().await.unwrap(), 2);
}

async fn the_file_seeds_then_api_edits_outlive_reopening(db: TestDb) {
    let file = vec![
        (ConfigKind::Provider, "openai".to_owned(), "1".to_owned()),
        (
            ConfigKind::Client,
            "allow_direct_keys".to_owned(),
            "false".to_owned(),
        ),
    ];
    {
        let store = db.open().await;
        let r = reconcile(&store.config_entries().await.unwrap(), &file);
        store
            .save_config_entries(&r.upserts, &r.removed)
            .await
            .unwrap();
        // The admin API edits the setting.
        let edited = ConfigEntry {
            body: Some("true".into()),
            ..r.entries[1].clone()
        };
        store.save_config_entries(&[edited], &[]).await.unwrap();
    }
    let store = db.open().await;
    let stored = store.config_entries().await.unwrap();
    // The same file again: nothing to write, the edit stays.
    let r = reconcile(&stored, &file);
    assert!(r.upserts.is_empty() && r.removed.is_empty(), "{r:?}");
    assert_eq!(r.entries[1].body.as_deref(), Some("true"));
    assert!(r.entries[1].edited());
}
