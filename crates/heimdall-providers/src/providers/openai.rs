//! OpenAI's API: the Chat Completions dialect, translated.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::openai_chat::OpenAiChat;
use http::HeaderMap;

use crate::client::ProviderError;
use crate::provider::{
    Credential,
    Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings, json_request,
    header_auth, url,
};

pub const FACTORY: ProviderFactory = ProviderFactory {
    name: "openai",
    env_var: "OPENAI_API_KEY",
    default_base_url: "https://api.openai.com",
    config_fields: &[],
    build: |settings| Ok(Arc::new(OpenAiProvider { settings })),
};

struct OpenAiProvider {
    settings: ProviderSettings,
}

impl Provider for OpenAiProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &OpenAiChat
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
            Operation::Messages => "/v1/chat/completions",
            Operation::ListModels => "/v1/models",
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
        header_auth(request, http::header::AUTHORIZATION, &format!("Bearer {}", key.value), self.name())
    }
}
