//! Google's Gemini API (AI Studio keys): the Gemini dialect, translated.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::UpstreamDialect;
use heimdall_protocol::dialect::gemini::Gemini;
use http::{HeaderMap, HeaderName};

use crate::client::ProviderError;
use crate::provider::{
    Credential, Operation, PreparedRequest, Provider, ProviderFactory, ProviderSettings,
    header_auth, json_request, url,
};

pub const FACTORIES: &[ProviderFactory] = &[ProviderFactory {
    name: "gemini",
    env_var: "GEMINI_API_KEY",
    default_base_url: "https://generativelanguage.googleapis.com",
    key_required: true,
    config_fields: &[],
    build: |settings| Ok(Arc::new(GeminiProvider { settings })),
}];

struct GeminiProvider {
    settings: ProviderSettings,
}

impl Provider for GeminiProvider {
    fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    fn dialect(&self, _model: &str) -> &'static dyn UpstreamDialect {
        &Gemini::API
    }

    fn prepare(
        &self,
        op: Operation,
        model: &str,
        stream: bool,
        body: Option<Bytes>,
        _client_headers: &HeaderMap,
        _key: &Credential<'_>,
    ) -> Result<PreparedRequest, ProviderError> {
        let path = match op {
            Operation::Messages => format!(
                "/v1beta/models/{}{}",
                model_segment(model),
                generate_action(stream)
            ),
            // The largest page Gemini serves: one request lists every model.
            Operation::ListModels => "/v1beta/models?pageSize=1000".to_owned(),
            Operation::CountTokens => {
                format!("/v1beta/models/{}:countTokens", model_segment(model))
            }
            Operation::Embeddings => {
                format!("/v1beta/models/{}:embedContent", model_segment(model))
            }
        };
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
        header_auth(
            request,
            HeaderName::from_static("x-goog-api-key"),
            key.value,
            self.name(),
        )
    }
}

/// The method suffix of a Gemini model URL. Streams are asked for as SSE: without `alt=sse`,
/// Gemini streams one JSON array.
pub(super) fn generate_action(stream: bool) -> &'static str {
    if stream {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    }
}

/// A model name as one URL path segment: characters outside the unreserved set (and `@`, which
/// Vertex model versions use) are percent-encoded, so a client's model string cannot reach
/// another path or add a query.
pub(super) fn model_segment(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_per_operation() {
        let p = (FACTORIES[0].build)(ProviderSettings {
            name: "gemini".into(),
            family: "gemini",
            base_url: "http://127.0.0.1:1/".into(),
            section: serde_json::Value::Null,
        })
        .unwrap();
        let key = Credential {
            index: 0,
            value: "k",
        };
        let prep = |op, model, stream| {
            p.prepare(op, model, stream, None, &HeaderMap::new(), &key)
                .map(|r| r.url)
        };
        assert_eq!(
            prep(Operation::Messages, "gemini-2.5-flash", false).unwrap(),
            "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            prep(Operation::Messages, "gemini-2.5-flash", true).unwrap(),
            "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            prep(Operation::Messages, "../x?key=1 y", false).unwrap(),
            "http://127.0.0.1:1/v1beta/models/..%2Fx%3Fkey%3D1%20y:generateContent"
        );
        assert_eq!(
            prep(Operation::CountTokens, "gemini-2.5-flash", false).unwrap(),
            "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:countTokens"
        );
        assert!(prep(Operation::ListModels, "", false).unwrap().ends_with("pageSize=1000"));
    }
}
