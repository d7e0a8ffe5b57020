//! `encryption_key`: a provider key added through the admin API reaches the upstream, is in no
//! file of the SQLite config store in plain text (nor are the file's provider key and a virtual
//! key), and serves again after a restart with the same passphrase; a restart with another
//! passphrase, or with none, refuses to start, saying why without printing a key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ANTHROPIC_KEY, GPT, ask_and_find, bin, config, terminate};
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer, http_client};
use serde_json::{Value, json};

const SECRET: &str = "sk-encrypted-at-rest-0123456789abcdef";
const VIRTUAL_KEY: &str = "sk-bf-encrypted-at-rest-0123456789";
const PASSPHRASE: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(10);

async fn start(cfg: &Value, env: &[(&str, &str)]) -> anyhow::Result<GatewayProcess> {
    GatewayProcess::start(bin(), Some(cfg), env, &["--shutdown-grace-seconds", "2"]).await
}

async fn stop(mut gw: GatewayProcess) {
    terminate(&gw);
    assert!(gw.wait_exit(WAIT).await.unwrap().is_some(), "no exit");
}

async fn post(base: &str, path: &str, body: Value) -> u16 {
    let res = http_client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// Asks OpenAI's model through the gateway; answers the status and the `authorization` header
/// the mock upstream received.
async fn infer(base: &str, mock: &MockServer) -> (u16, Option<String>) {
    let (status, seen) = ask_and_find(base, mock, GPT).await;
    let auth = seen.and_then(|r| r.header("authorization").map(str::to_owned));
    (status, auth)
}

/// The files under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn secrets_in_the_config_store_are_encrypted_and_need_the_same_key() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = json!({"type": "sqlite", "config": {"path": dir.path().join("config.db")}});
    // Anthropic from the file, OpenAI through the API.
    let cfg = config(&mock.base_url(), |c| {
        c["providers"].as_object_mut().unwrap().remove("openai");
        c["config_store"] = store;
        c["encryption_key"] = json!("env.TEST_PASSPHRASE");
    });
    let gw = start(&cfg, &[("TEST_PASSPHRASE", PASSPHRASE)])
        .await
        .unwrap();
    let base = gw.base_url().to_owned();
    let openai = json!({"provider": "openai",
                        "keys": [{"name": "api", "value": SECRET, "models": ["*"], "weight": 1}],
                        "network_config": {"base_url": mock.base_url()}});
    assert_eq!(post(&base, "/api/providers", openai).await, 201);
    let virtual_key = json!({"name": "team", "value": VIRTUAL_KEY});
    assert_eq!(
        post(&base, "/api/governance/virtual-keys", virtual_key).await,
        201
    );
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(infer(&base, &mock).await, (200, Some(bearer.clone())));
    assert!(
        !gw.output().contains(PASSPHRASE),
        "the passphrase was logged"
    );
    stop(gw).await;
    for needle in [SECRET, VIRTUAL_KEY, ANTHROPIC_KEY] {
        assert_eq!(
            files_holding(dir.path(), needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }

    // The same passphrase, from Bifrost's environment variable this time.
    let mut from_env = cfg.clone();
    from_env.as_object_mut().unwrap().remove("encryption_key");
    let gw = start(&from_env, &[("BIFROST_ENCRYPTION_KEY", PASSPHRASE)])
        .await
        .unwrap();
    assert_eq!(infer(gw.base_url(), &mock).await, (200, Some(bearer)));
    stop(gw).await;

    let another = "another passphrase";
    let refused = start(&cfg, &[("TEST_PASSPHRASE", another)]).await.err();
    let refused = format!("{:#}", refused.expect("started with another key"));
    assert!(
        refused.contains("encryption_key is not the key"),
        "{refused}"
    );
    let keyless = start(&from_env, &[]).await.err();
    let keyless = format!("{:#}", keyless.expect("started without a key"));
    assert!(keyless.contains("none is configured"), "{keyless}");
    for output in [&refused, &keyless] {
        for secret in [PASSPHRASE, another, SECRET, VIRTUAL_KEY] {
            assert!(!output.contains(secret), "{output}");
        }
    }
}
