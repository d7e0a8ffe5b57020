//! Google Vertex AI: Gemini models in the Gemini dialect, translated, and Claude models in
//! Anthropic's, passed through (`rawPredict`).
//!
//! Each key carries its own `vertex_key_config`: `project_id`, `region` (`global` is served by
//! `aiplatform.googleapis.com`, any other region by `{region}-aiplatform.googleapis.com`;
//! `network_config.base_url` replaces the host for all) and `auth_credentials`, a
//! service-account key file (JSON, or base64 of it, or `env.VAR` naming either) whose OAuth2
//! tokens are fetched and cached per key.
//! Without credentials the key's `value` is sent as the bearer token.

mod token;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::anthropic::{self, Anthropic};
use heimdall_protocol::dialect::gemini::Gemini;
use http::HeaderMap;
use serde::Deserialize;

use super::gemini::{generate_action, model_segment};
use crate::betas::BetaPlatform;
use crate::provider::anthropic_headers;
use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    SettingsError, json_request, set_secret_header, url,
};
use token::{ServiceAccount, TokenSource};

/// The host of the `global` location, and the default root.
const GLOBAL_HOST: &str = "https://aiplatform.googleapis.com";
/// The `anthropic_version` Claude on Vertex requires in the body.
const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "vertex",
    env_var: "VERTEX_API_KEY",
    default_base_url: GLOBAL_HOST,
    key_required: true,
    config_fields: &["vertex_key_config"],
    build,
}];

/// How one key authenticates.
enum Auth {
    /// OAuth2 tokens of a service account, cached.
    ServiceAccount(Box<TokenSource>),
    /// The key's `value`, as a bearer token.
    KeyValue,
}

/// One key's own settings.
struct KeySettings {
    /// `{root}/v1/projects/{project}/locations/{region}`.
    location_url: String,
    auth: Auth,
}

struct VertexProvider {
    settings: ProviderSettings,
    /// By key index.
    keys: Vec<KeySettings>,
}

#[derive(Deserialize)]
struct RawKey {
    #[serde(default)]
    vertex_key_config: Option<RawKeyConfig>,
}

#[derive(Deserialize)]
struct RawKeyConfig {
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    auth_credentials: Option<String>,
}

#[derive(Deserialize)]
struct RawSection {
    #[serde(default)]
    keys: Vec<RawKey>,
}

fn build(settings: ProviderSettings) -> Result<Arc<dyn Provider>, SettingsError> {
    let error = |path: String, message: &str| SettingsError {
        path,
        message: message.to_owned(),
    };
    if settings.section.is_null() {
        return Err(error(
            "keys".into(),
            "Vertex needs keys with vertex_key_config (project_id, region); it cannot start from the environment alone",
        ));
    }
    let section = RawSection::deserialize(&settings.section)
        .map_err(|e| error("keys".into(), &e.to_string()))?;
    // An explicit base URL replaces the per-region host (that is how tests reach a mock).
    let fixed_root = (settings.base_url != GLOBAL_HOST).then(|| settings.base_url.clone());
    let mut keys = Vec::with_capacity(section.keys.len());
    for (i, key) in section.keys.into_iter().enumerate() {
        let at = |field: &str| format!("keys[{i}].vertex_key_config{field}");
        let Some(c) = key.vertex_key_config else {
            return Err(error(at(""), "Field required"));
        };
        let project = c.project_id.trim();
        if project.is_empty() {
            return Err(error(at(".project_id"), "Field required"));
        }
        let region = c.region.trim();
        if region.is_empty() {
            return Err(error(at(".region"), "Field required"));
        }
        let valid = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !valid(project) || !valid(region) {
            return Err(error(
                at(""),
                "project_id and region may only contain letters, digits, '-', '_' and '.'",
            ));
        }
        let root = fixed_root.clone().unwrap_or_else(|| {
            if region == "global" {
                GLOBAL_HOST.to_owned()
            } else {
                format!("https://{region}-aiplatform.googleapis.com")
            }
        });
        let auth = match c.auth_credentials.as_deref().map(resolve_env) {
            Some(Some(text)) if !text.trim().is_empty() => {
                let account = service_account(&text)
                    .map_err(|m| error(at(".auth_credentials"), &m))?;
                Auth::ServiceAccount(Box::new(
                    TokenSource::new(&settings.name, account)
                        .map_err(|m| error(at(".auth_credentials"), &m))?,
                ))
            }
            Some(None) => {
                return Err(error(
                    at(".auth_credentials"),
                    "the environment variable it names is not set",
                ));
            }
            _ => Auth::KeyValue,
        };
        keys.push(KeySettings {
            location_url: url(
                &root,
                &format!("/v1/projects/{project}/locations/{region}"),
            ),
            auth,
        });
    }
    Ok(Arc::new(VertexProvider { settings, keys }))
}

/// `env.VAR` → the variable's value (`None` if unset); anything else as it is. Bifrost lets
/// every secret field name an environment variable this way.
fn resolve_env(value: &str) -> Option<String> {
    match value.strip_prefix("env.") {
        Some(var) => std::env::var(var).ok(),
        None => Some(value.to_owned()),
    }
}

/// A service-account key file, as JSON text or base64 of it.
fn service_account(text: &str) -> Result<ServiceAccount, String> {
    let text = text.trim();
    let json = if text.starts_with('{') {
        text.as_bytes().to_vec()
    } else {
        STANDARD
            .decode(text)
            .map_err(|_| "neither service-account JSON nor base64 of it".to_owned())?
    };
    serde_json::from_slice(&json).map_err(|e| format!("not a service-account key file: {e}"))
}

/// Claude models are served by Anthropic's publisher, in Anthropic's dialect.
fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

impl VertexProvider {
    fn key(&self, key: &Credential<'_>) -> Result<&KeySettings, ProviderError> {
        self.keys
            .get(key.index)
            .ok_or_else(|| ProviderError::InvalidKey {
                provider: self.name().to_owned(),
            })
    }
}

impl Provider for VertexProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// A Vertex credential is a service account and a project, not a key a client could send.
    fn direct_key_header(&self, _model: &str) -> Option<crate::DirectKeyHeader> {
        None
    }

    fn dialect(&self, model: &str) -> &'static dyn UpstreamDialect {
        if is_claude(model) {
            &Anthropic
        } else {
            &Gemini::VERTEX
        }
    }

    fn claude_platform(&self) -> BetaPlatform {
        BetaPlatform::Vertex
    }

    fn prepare(
        &self,
        op: Operation,
        model: &str,
        stream: bool,
        body: Option<Bytes>,
        client_headers: &HeaderMap,
        key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let k = self.key(key)?;
        let segment = model_segment(model);
        let (path, body) = match op {
            Operation::Messages if is_claude(model) => {
                let action = if stream {
                    ":streamRawPredict"
                } else {
                    ":rawPredict"
                };
                let body = body
                    .map(|b| anthropic::vertex_body(&b, ANTHROPIC_VERSION).map(Bytes::from))
                    .transpose()
                    .map_err(|e| ProviderError::Invalid {
                        provider: self.name().to_owned(),
                        message: e.to_string(),
                    })?;
                (
                    format!("/publishers/anthropic/models/{segment}{action}"),
                    body,
                )
            }
            Operation::Messages => (
                format!(
                    "/publishers/google/models/{segment}{}",
                    generate_action(stream)
                ),
                body,
            ),
            // Claude's token count takes the Anthropic body, model included; Gemini's takes
            // the translated request at the model's `countTokens`.
            Operation::CountTokens if is_claude(model) => (
                "/publishers/anthropic/models/count-tokens:rawPredict".to_owned(),
                body,
            ),
            Operation::CountTokens => (
                format!("/publishers/google/models/{segment}:countTokens"),
                body,
            ),
            Operation::ListModels | Operation::Embeddings => {
                return Err(ProviderError::Unsupported {
                    provider: self.name().to_owned(),
                });
            }
        };
        // Vertex takes the version in the body; betas ride in their header.
        let headers = if is_claude(model) {
            anthropic_headers(client_headers, None)
        } else {
            HeaderMap::new()
        };
        Ok(json_request(
            format!("{}{path}", k.location_url),
            headers,
            body,
        ))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = match &self.key(key)?.auth {
                Auth::ServiceAccount(source) => source.token().await?,
                Auth::KeyValue if !key.value.trim().is_empty() => key.value.to_owned(),
                Auth::KeyValue => {
                    return Err(ProviderError::InvalidKey {
                        provider: self.name().to_owned(),
                    });
                }
            };
            set_secret_header(
                request,
                http::header::AUTHORIZATION,
                &format!("Bearer {token}"),
                self.name(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is the failure report

    use super::*;
    use serde_json::json;

    fn provider(base_url: &str, section: serde_json::Value) -> Result<Arc<dyn Provider>, SettingsError> {
        build(ProviderSettings {
            name: "vertex".into(),
            family: "vertex",
            base_url: base_url.into(),
            section,
        })
    }

    fn prepared(p: &dyn Provider, op: Operation, model: &str, stream: bool, body: &str) -> PreparedRequest {
        p.prepare(
            op,
            model,
            stream,
            Some(Bytes::from(body.to_owned())),
            &HeaderMap::new(),
            &Credential {
                index: 0,
                value: "tok",
            },
        )
        .unwrap()
    }

    #[test]
    fn urls_hosts_and_bodies() {
        let section = json!({"keys": [{"value": "tok", "vertex_key_config": {
            "project_id": "proj", "region": "europe-west4"}}]});
        let p = provider(GLOBAL_HOST, section.clone()).unwrap();
        let r = prepared(&*p, Operation::Messages, "gemini-2.5-flash", true, "{}");
        assert_eq!(
            r.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let r = prepared(
            &*p,
            Operation::Messages,
            "claude-sonnet-4-5@20250929",
            false,
            r#"{"model":"vertex/claude-sonnet-4-5@20250929","max_tokens":5,"messages":[]}"#,
        );
        assert!(r.url.ends_with(
            "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
        ));
        assert_eq!(
            r.body.unwrap(),
            r#"{"max_tokens":5,"messages":[],"anthropic_version":"vertex-2023-10-16"}"#
        );
        let r = prepared(&*p, Operation::CountTokens, "claude-x", false, r#"{"model":"claude-x"}"#);
        assert!(r.url.ends_with("/publishers/anthropic/models/count-tokens:rawPredict"));
        assert_eq!(r.body.unwrap(), r#"{"model":"claude-x"}"#);
        assert_eq!(p.dialect("claude-x").id().0, "anthropic");
        assert_eq!(p.dialect("gemini-2.5-pro").id().0, "gemini");

        let global = json!({"keys": [{"value": "", "vertex_key_config": {"project_id": "p", "region": "global"}}]});
        let r = prepared(&*provider(GLOBAL_HOST, global.clone()).unwrap(), Operation::Messages, "g", false, "{}");
        assert!(r.url.starts_with("https://aiplatform.googleapis.com/v1/projects/p/locations/global/"));
        let r = prepared(&*provider("http://127.0.0.1:9", global).unwrap(), Operation::Messages, "g", false, "{}");
        assert_eq!(
            r.url,
            "http://127.0.0.1:9/v1/projects/p/locations/global/publishers/google/models/g:generateContent"
        );
    }

    #[test]
    fn settings_errors_name_the_field() {
        let err = |section: serde_json::Value| provider(GLOBAL_HOST, section).err().unwrap().to_string();
        assert_eq!(
            err(json!({"keys": [{"value": "x"}]})),
            "keys[0].vertex_key_config: Field required"
        );
        assert_eq!(
            err(json!({"keys": [{"value": "x", "vertex_key_config": {"region": "us-east5"}}]})),
            "keys[0].vertex_key_config.project_id: Field required"
        );
        assert!(err(json!({"keys": [{"value": "x", "vertex_key_config": {"project_id": "p/../q", "region": "r"}}]}))
            .starts_with("keys[0].vertex_key_config: project_id and region"));
        assert!(err(json!({"keys": [{"value": "x", "vertex_key_config": {"project_id": "p", "region": "r", "auth_credentials": "{\"client_email\":\"a\",\"private_key\":\"x\"}"}}]}))
            .starts_with("keys[0].vertex_key_config.auth_credentials: private_key"));
        assert!(provider(GLOBAL_HOST, serde_json::Value::Null).is_err());
    }

    #[test]
    fn credentials_as_json_or_base64() {
        let json_text = heimdall_testkit::fixtures::SERVICE_ACCOUNT_JSON;
        for creds in [json_text.to_owned(), STANDARD.encode(json_text)] {
            let section = json!({"keys": [{"value": "", "vertex_key_config": {
                "project_id": "p", "region": "global", "auth_credentials": creds}}]});
            assert!(provider(GLOBAL_HOST, section).is_ok());
        }
    }

    #[tokio::test]
    async fn key_value_is_the_bearer_without_credentials() {
        let section = json!({"keys": [{"value": "tok", "vertex_key_config": {"project_id": "p", "region": "global"}}]});
        let p = provider(GLOBAL_HOST, section).unwrap();
        let mut r = prepared(&*p, Operation::Messages, "g", false, "{}");
        let key = Credential {
            index: 0,
            value: "tok",
        };
        p.authorize(&mut r, &key).await.unwrap();
        assert_eq!(r.headers["authorization"], "Bearer tok");
        let empty = Credential { index: 0, value: " " };
        assert!(p.authorize(&mut r, &empty).await.is_err());
    }
}
