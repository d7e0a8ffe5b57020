//! Azure OpenAI: the Chat Completions dialect at per-deployment URLs, and Claude on Azure AI
//! Foundry (`azure/claude-…`), which speaks Anthropic Messages and is passed through.
//!
//! Each key carries Bifrost's `azure_key_config`: `endpoint` (the resource URL), `deployments`
//! (model → deployment; a model without an entry is its own deployment), `api_version`
//! (default below; `"v1"` selects the version-less `/openai/v1/` API, where the deployment goes
//! in the body's `model`). The key is sent as `api-key`; a value starting with `Bearer ` is an
//! Entra ID token and goes in `Authorization` as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::anthropic::{Anthropic, replace_model};
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use http::{HeaderMap, HeaderName};
use serde::Deserialize;

use super::anthropic::DEFAULT_VERSION as ANTHROPIC_VERSION;
use crate::betas::BetaPlatform;
use crate::provider::anthropic_headers;
use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    SettingsError, header_auth, json_request, percent_encode, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "azure",
    env_var: "AZURE_API_KEY",
    // No global host: every resource has its own (the key's `endpoint`).
    default_base_url: "",
    key_required: true,
    config_fields: &["azure_key_config"],
    build,
}];

/// The GA API version used when a key names none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Debug, Clone, Default, Deserialize)]
struct AzureKeyConfig {
    endpoint: Option<String>,
    #[serde(default)]
    deployments: BTreeMap<String, String>,
    api_version: Option<String>,
}

struct Azure {
    settings: ProviderSettings,
    /// By key index; `network_config.base_url`, when set, overrides every key's endpoint.
    keys: Vec<AzureKeyConfig>,
}

fn build(settings: ProviderSettings) -> Result<Arc<dyn Provider>, SettingsError> {
    let raw_keys = settings
        .section
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut keys = Vec::with_capacity(raw_keys.len());
    for (i, k) in raw_keys.iter().enumerate() {
        let config = match k.get("azure_key_config") {
            Some(v) => AzureKeyConfig::deserialize(v).map_err(|e| SettingsError {
                path: format!("keys[{i}].azure_key_config"),
                message: e.to_string(),
            })?,
            None => AzureKeyConfig::default(),
        };
        if settings.base_url.is_empty() && config.endpoint.as_deref().is_none_or(str::is_empty) {
            return Err(SettingsError {
                path: format!("keys[{i}].azure_key_config.endpoint"),
                message: "required: the resource URL (https://NAME.openai.azure.com)".into(),
            });
        }
        keys.push(config);
    }
    Ok(Arc::new(Azure { settings, keys }))
}

/// Claude models on Foundry speak Anthropic's own API.
fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

impl Azure {
    fn key(&self, index: usize) -> AzureKeyConfig {
        self.keys.get(index).cloned().unwrap_or_default()
    }

    fn endpoint(&self, key: &AzureKeyConfig) -> String {
        if self.settings.base_url.is_empty() {
            key.endpoint.clone().unwrap_or_default()
        } else {
            self.settings.base_url.clone()
        }
    }
}

impl Provider for Azure {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, model: &str) -> &'static dyn UpstreamDialect {
        if is_claude(model) {
            &Anthropic
        } else {
            &OpenAiChat::OPENAI
        }
    }

    fn claude_platform(&self) -> BetaPlatform {
        BetaPlatform::Foundry
    }

    fn prepare(
        &self,
        op: Operation,
        model: &str,
        _stream: bool,
        body: Option<Bytes>,
        client_headers: &HeaderMap,
        key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let config = self.key(key.index);
        let endpoint = self.endpoint(&config);
        let unsupported = || ProviderError::Unsupported {
            provider: self.name().to_owned(),
        };
        if is_claude(model) {
            let path = match op {
                Operation::Messages => "/anthropic/v1/messages",
                Operation::CountTokens => "/anthropic/v1/messages/count_tokens",
                Operation::ListModels | Operation::Embeddings => return Err(unsupported()),
            };
            let headers = anthropic_headers(client_headers, Some(ANTHROPIC_VERSION));
            return Ok(json_request(url(&endpoint, path), headers, body));
        }
        if op != Operation::Messages {
            return Err(unsupported());
        }
        let deployment = config
            .deployments
            .get(model)
            .map_or(model, String::as_str);
        let version = config.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        if version == "v1" {
            // The v1 API takes the deployment in the body instead of the path.
            let body = match body {
                Some(b) if deployment != model => Some(Bytes::from(
                    replace_model(&b, deployment).map_err(|e| ProviderError::Invalid {
                        provider: self.name().to_owned(),
                        message: e.message(),
                    })?,
                )),
                other => other,
            };
            return Ok(json_request(
                url(&endpoint, "/openai/v1/chat/completions"),
                HeaderMap::new(),
                body,
            ));
        }
        let path = format!(
            "/openai/deployments/{}/chat/completions?api-version={}",
            percent_encode(deployment),
            percent_encode(version)
        );
        Ok(json_request(url(&endpoint, &path), HeaderMap::new(), body))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        if key.value.starts_with("Bearer ") {
            return header_auth(request, http::header::AUTHORIZATION, key.value, self.name());
        }
        let name = if request.url.contains("/anthropic/") {
            HeaderName::from_static("x-api-key")
        } else {
            HeaderName::from_static("api-key")
        };
        header_auth(request, name, key.value, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn azure(section: serde_json::Value, base_url: &str) -> Arc<dyn Provider> {
        build(ProviderSettings {
            name: "azure".into(),
            family: "azure",
            base_url: base_url.into(),
            section,
        })
        .unwrap()
    }

    fn prepare(p: &dyn Provider, model: &str, key: &str) -> PreparedRequest {
        p.prepare(
            Operation::Messages,
            model,
            false,
            Some(Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#)),
            &HeaderMap::new(),
            &Credential { index: 0, value: key },
        )
        .unwrap()
    }

    #[test]
    fn deployments_versions_and_claude() {
        let p = azure(
            json!({"keys": [{"value": "k", "azure_key_config": {
                "endpoint": "https://res.openai.azure.com",
                "deployments": {"gpt-4o": "prod 4o"}}}]}),
            "",
        );
        let r = prepare(&*p, "gpt-4o", "k");
        assert_eq!(
            r.url,
            "https://res.openai.azure.com/openai/deployments/prod%204o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(prepare(&*p, "gpt-4.1", "k").url, "https://res.openai.azure.com/openai/deployments/gpt-4.1/chat/completions?api-version=2024-10-21");
        let r = prepare(&*p, "claude-sonnet-4-5", "k");
        assert_eq!(r.url, "https://res.openai.azure.com/anthropic/v1/messages");
        assert_eq!(p.dialect("claude-sonnet-4-5").id().0, "anthropic");
        assert_eq!(p.dialect("gpt-4o").id().0, "openai_chat");
    }

    #[test]
    fn the_v1_api_takes_the_deployment_in_the_body() {
        let p = azure(
            json!({"keys": [{"value": "k", "azure_key_config": {
                "endpoint": "https://res.openai.azure.com", "api_version": "v1",
                "deployments": {"gpt-4o": "prod-4o"}}}]}),
            "http://127.0.0.1:9",
        );
        let r = prepare(&*p, "gpt-4o", "k");
        assert_eq!(r.url, "http://127.0.0.1:9/openai/v1/chat/completions");
        assert_eq!(
            r.body.unwrap(),
            Bytes::from_static(br#"{"model":"prod-4o","messages":[]}"#)
        );
    }

    #[tokio::test]
    async fn api_key_or_entra_token() {
        let p = azure(
            json!({"keys": [{"value": "k", "azure_key_config": {"endpoint": "https://r"}}]}),
            "",
        );
        for (model, value, header) in [
            ("gpt-4o", "secret", "api-key"),
            ("claude-x", "secret", "x-api-key"),
            ("gpt-4o", "Bearer eyJ0", "authorization"),
        ] {
            let mut r = prepare(&*p, model, value);
            let key = Credential { index: 0, value };
            p.authorize(&mut r, &key).await.unwrap();
            assert_eq!(r.headers[header], value, "{model}");
            assert!(r.headers[header].is_sensitive());
        }
    }

    #[test]
    fn a_key_without_an_endpoint_is_a_config_error() {
        let e = build(ProviderSettings {
            name: "azure".into(),
            family: "azure",
            base_url: String::new(),
            section: json!({"keys": [{"value": "k"}]}),
        })
        .err()
        .unwrap();
        assert_eq!(e.path, "keys[0].azure_key_config.endpoint");
    }
}
