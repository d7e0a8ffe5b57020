//! Anthropic's own API: the Messages dialect, passed through.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::anthropic::Anthropic as AnthropicDialect;
use http::{HeaderMap, HeaderName};

use crate::betas::BetaPlatform;
use crate::provider::anthropic_headers;
use crate::client::ProviderError;
use crate::provider::{
    Credential,
    Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings, json_request,
    header_auth, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "anthropic",
    env_var: "ANTHROPIC_API_KEY",
    default_base_url: "https://api.anthropic.com",
    key_required: true,
    config_fields: &[],
    build: |settings| Ok(Arc::new(AnthropicProvider { settings })),
}];

/// The API version sent upstream when the client names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

struct AnthropicProvider {
    settings: ProviderSettings,
}

impl Provider for AnthropicProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &AnthropicDialect
    }

    fn claude_platform(&self) -> BetaPlatform {
        BetaPlatform::Anthropic
    }

    fn prepare(
        &self,
        op: Operation,
        _model: &str,
        _stream: bool,
        body: Option<Bytes>,
        client_headers: &HeaderMap,
        _key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let path = match op {
            Operation::Messages => "/v1/messages",
            Operation::CountTokens => "/v1/messages/count_tokens",
            Operation::ListModels => "/v1/models",
            Operation::Embeddings => {
                return Err(ProviderError::Unsupported {
                    provider: self.name().to_owned(),
                });
            }
        };
        let headers = anthropic_headers(client_headers, Some(DEFAULT_VERSION));
        Ok(json_request(url(&self.settings.base_url, path), headers, body))
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut PreparedRequest,
        key: &'a Credential<'a>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        header_auth(request, HeaderName::from_static("x-api-key"), key.value, self.name())
    }
}
