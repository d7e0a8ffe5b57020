//! The OpenAI-compatible family: OpenAI itself and every server that speaks Chat Completions,
//! as ONE implementation and a table of presets. What differs between them (host, path prefix,
//! whether a key is required, request quirks) is data in the table, never a branch in code.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::openai_chat::{OpenAiChat, Quirks, ToolIdForm};
use http::HeaderMap;

use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    SettingsError, bearer_auth, json_request, url,
};

/// One server family.
pub struct Preset {
    pub name: &'static str,
    pub env_var: &'static str,
    pub default_base_url: &'static str,
    /// Prepended to `/chat/completions` and `/models`.
    pub path_prefix: &'static str,
    pub dialect: OpenAiChat,
}

const fn quirks(legacy_max_tokens: bool, stream_usage: bool, reasoning_effort: bool) -> Quirks {
    Quirks {
        legacy_max_tokens,
        stream_usage,
        reasoning_effort,
        tool_ids: ToolIdForm::Any,
    }
}

/// Declares the presets and their registry factories from one table.
macro_rules! presets {
    ($($name:literal {
        env: $env:literal, base: $base:literal, prefix: $prefix:literal,
        key: $key:literal, quirks: $quirks:expr $(,)?
    }),* $(,)?) => {
        pub const PRESETS: &[Preset] = &[$(Preset {
            name: $name,
            env_var: $env,
            default_base_url: $base,
            path_prefix: $prefix,
            dialect: OpenAiChat::new($quirks),
        }),*];

        pub const FACTORIES: &[ProviderFactory] = &[$(ProviderFactory {
            name: $name,
            env_var: $env,
            default_base_url: $base,
            key_required: $key,
            config_fields: &[],
            build,
        }),*];
    };
}

// Quirks: (send `max_tokens` instead of `max_completion_tokens`, ask for stream usage with
// `stream_options`, send `reasoning_effort`). Servers that reject unknown fields (Mistral,
// Perplexity) get neither optional field; they report stream usage in the last chunk anyway.
presets! {
    "openai" { env: "OPENAI_API_KEY", base: "https://api.openai.com", prefix: "/v1",
               key: true, quirks: Quirks::OPENAI },
    "groq" { env: "GROQ_API_KEY", base: "https://api.groq.com/openai", prefix: "/v1",
             key: true, quirks: quirks(false, true, false) },
    "mistral" { env: "MISTRAL_API_KEY", base: "https://api.mistral.ai", prefix: "/v1",
                key: true, quirks: Quirks { tool_ids: ToolIdForm::Alnum9, ..quirks(true, false, false) } },
    "openrouter" { env: "OPENROUTER_API_KEY", base: "https://openrouter.ai/api", prefix: "/v1",
                   key: true, quirks: quirks(true, true, false) },
    "xai" { env: "XAI_API_KEY", base: "https://api.x.ai", prefix: "/v1",
            key: true, quirks: quirks(true, true, true) },
    "deepseek" { env: "DEEPSEEK_API_KEY", base: "https://api.deepseek.com", prefix: "/v1",
                 key: true, quirks: quirks(true, true, false) },
    "cerebras" { env: "CEREBRAS_API_KEY", base: "https://api.cerebras.ai", prefix: "/v1",
                 key: true, quirks: quirks(false, true, false) },
    "fireworks" { env: "FIREWORKS_API_KEY", base: "https://api.fireworks.ai/inference", prefix: "/v1",
                  key: true, quirks: quirks(true, true, false) },
    "together" { env: "TOGETHER_API_KEY", base: "https://api.together.xyz", prefix: "/v1",
                 key: true, quirks: quirks(true, true, false) },
    "perplexity" { env: "PERPLEXITY_API_KEY", base: "https://api.perplexity.ai", prefix: "",
                   key: true, quirks: quirks(true, false, false) },
    "vllm" { env: "VLLM_API_KEY", base: "http://localhost:8000", prefix: "/v1",
             key: false, quirks: quirks(true, true, false) },
    "sgl" { env: "SGL_API_KEY", base: "http://localhost:30000", prefix: "/v1",
            key: false, quirks: quirks(true, true, false) },
}

fn build(settings: ProviderSettings) -> Result<Arc<dyn Provider>, SettingsError> {
    let preset = PRESETS
        .iter()
        .find(|p| p.name == settings.family)
        .ok_or_else(|| SettingsError {
            path: String::new(),
            message: format!("`{}` is not an OpenAI-compatible family", settings.family),
        })?;
    Ok(Arc::new(Compatible { settings, preset }))
}

struct Compatible {
    settings: ProviderSettings,
    preset: &'static Preset,
}

impl Provider for Compatible {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &self.preset.dialect
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
            Operation::Messages => "/chat/completions",
            Operation::ListModels => "/models",
            Operation::Embeddings => "/embeddings",
            Operation::CountTokens => {
                return Err(ProviderError::Unsupported {
                    provider: self.name().to_owned(),
                });
            }
        };
        let path = format!("{}{path}", self.preset.path_prefix);
        Ok(json_request(
            url(&self.settings.base_url, &path),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_registered_once_with_its_own_dialect() {
        assert_eq!(PRESETS.len(), FACTORIES.len());
        for (p, f) in PRESETS.iter().zip(FACTORIES) {
            assert_eq!(p.name, f.name);
            assert!(p.default_base_url.starts_with("http"));
        }
        let mistral = PRESETS.iter().find(|p| p.name == "mistral").unwrap();
        assert_eq!(mistral.dialect.quirks.tool_ids, ToolIdForm::Alnum9);
        assert!(mistral.dialect.quirks.legacy_max_tokens);
    }
}
