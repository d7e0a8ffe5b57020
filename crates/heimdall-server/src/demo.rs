//! `--demo`: the gateway with the mock upstream built in, so a try-out needs neither a provider
//! key nor a second terminal. The mock (`heimdall-testkit`) is served in-process and every
//! registered provider is pointed at it by an ordinary Bifrost `config.json`, written to a
//! private temporary folder and read like `--config FILE`: parsing, reloads and the admin API
//! work as they do for any file, with nothing special-cased downstream.

use std::path::{Path, PathBuf};

use anyhow::Context;
use heimdall_providers::providers::compat::PRESETS;
use heimdall_testkit::mock::{MOCK_AWS_ACCESS_KEY, MOCK_AWS_SECRET_KEY};
use heimdall_testkit::{MockOptions, MockServer};
use serde_json::{Map, Value, json};

/// Families the mock does not speak: the test-only dialect, compiled in by test builds.
const NOT_MOCKED: &[&str] = &["dummy"];

/// The demo configuration: every registered provider (but [`NOT_MOCKED`]) answered by the mock
/// at `upstream` (`http://HOST:PORT`), with the dummy credentials the mock accepts.
pub fn config(upstream: &str) -> Value {
    let mut providers = Map::new();
    for factory in heimdall_providers::factories() {
        let name = factory.name;
        if NOT_MOCKED.contains(&name) {
            continue;
        }
        let mut key = json!({"name": "demo", "value": "demo-key", "models": ["*"]});
        // What a family needs besides a key; the mock checks Bedrock's SigV4 signature, so it
        // gets the key pair the mock verifies against.
        match name {
            "vertex" => {
                key["vertex_key_config"] = json!({"project_id": "demo", "region": "us-central1"});
            }
            "azure" => {
                key["azure_key_config"] = json!({"endpoint": "https://demo.openai.azure.com"});
            }
            "bedrock" => {
                key["value"] = json!("");
                key["bedrock_key_config"] = json!({
                    "access_key": MOCK_AWS_ACCESS_KEY,
                    "secret_key": MOCK_AWS_SECRET_KEY,
                    "region": "us-east-1",
                });
            }
            _ => {}
        }
        // A key for the families usually run without one too (Ollama, vLLM): the mock's
        // OpenAI routes want one.
        let section = json!({
            "keys": [key],
            "network_config": {"base_url": base_url(name, upstream)},
        });
        providers.insert(name.to_owned(), section);
    }
    json!({
        "providers": providers,
        // The config store would take these providers into APP_DIR/config.db, over the ones
        // a real config.json put there; in memory only, the demo leaves them alone.
        "config_store": {"enabled": false},
    })
}

/// The mock serves OpenAI's paths under `/v1`; an OpenAI-compatible family whose prefix is
/// shorter (Perplexity: none) gets the rest in its base URL.
fn base_url(name: &str, upstream: &str) -> String {
    let rest = PRESETS
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| "/v1".strip_suffix(p.path_prefix))
        .unwrap_or("");
    format!("{upstream}{rest}")
}

/// A running demo: the mock upstream and the config file naming it. Dropping it stops the mock
/// and removes the file.
pub struct Demo {
    _upstream: MockServer,
    config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the mock on `127.0.0.1` (a free port) and writes the config for it. Call inside
    /// the runtime the gateway runs on: the mock's tasks live there.
    pub async fn start(app_dir: &Path) -> anyhow::Result<Demo> {
        let upstream = MockServer::start(MockOptions {
            // A demo may run for hours: keeping every request would grow without bound.
            record: false,
            ..MockOptions::default()
        })
        .await
        .context("starting the demo's mock upstream")?;
        let dir = tempfile::Builder::new()
            .prefix("heimdall-demo-")
            .tempdir()
            .context("creating the demo's config folder")?;
        let config_path = dir.path().join("config.json");
        let text = serde_json::to_string_pretty(&config(&upstream.base_url()))?;
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        tracing::info!(
            upstream = %upstream.base_url(),
            config = %config_path.display(),
            "demo mode: every provider is answered by the built-in mock upstream (it echoes your message); no request leaves this machine. {} is not read; request logs are kept in the app dir as usual",
            app_dir.join("config.json").display()
        );
        Ok(Demo {
            _upstream: upstream,
            config_path,
            _dir: dir,
        })
    }

    /// The config file to load instead of `APP_DIR/config.json`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_pointed_at_the_mock_and_the_config_loads() {
        let value = config("http://127.0.0.1:1");
        let text = value.to_string();
        let config = heimdall_core::config::Config::from_json(&text, &|_| None)
            .unwrap_or_else(|e| panic!("the demo config does not load: {e}"));
        assert!(config.unsupported.is_empty(), "{:?}", config.unsupported);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(config.governance.config_store.is_none());
        for factory in heimdall_providers::factories() {
            if NOT_MOCKED.contains(&factory.name) {
                continue;
            }
            let p = config
                .provider(factory.name)
                .unwrap_or_else(|| panic!("{} is not in the demo", factory.name));
            let url = &p.provider.settings().base_url;
            assert!(
                url.starts_with("http://127.0.0.1:1"),
                "{}: {url}",
                factory.name
            );
        }
        assert_eq!(
            value["providers"]["perplexity"]["network_config"]["base_url"],
            "http://127.0.0.1:1/v1"
        );
    }
}
