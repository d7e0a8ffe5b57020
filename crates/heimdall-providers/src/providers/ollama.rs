//! Ollama's native API (`/api/chat`, NDJSON streams). Local servers take no key; a key, when
//! configured (Ollama behind a proxy, or its hosted service), is sent as a bearer token.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::ollama::Ollama;
use http::HeaderMap;

use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    bearer_auth, json_request, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "ollama",
    env_var: "OLLAMA_API_KEY",
    default_base_url: "http://localhost:11434",
    key_required: false,
    config_fields: &[],
    build: |settings| Ok(Arc::new(OllamaProvider { settings })),
}];

struct OllamaProvider {
    settings: ProviderSettings,
}

impl Provider for OllamaProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &Ollama
    }

    fn prepare(
        &self,
        op: Operation,
        _model: &str,
        _stream: bool,
        body: Option<Bytes>,
        _client_headers: &HeaderMap,
        _key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let path = match op {
            Operation::Messages => "/api/chat",
            Operation::ListModels => "/api/tags",
            Operation::Embeddings => "/api/embed",
            Operation::CountTokens => {
                return Err(ProviderError::Unsupported {
                    provider: self.name().to_owned(),
                });
            }
        };
        Ok(json_request(
            url(&self.settings.base_url, path),
            HeaderMap::new(),
            body,
        ))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        bearer_auth(request, key.value, self.name())
    }
}
