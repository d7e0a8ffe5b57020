//! The one shared, tuned HTTP client that talks to every upstream.

use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use crate::provider::{Operation, ProviderKind};

/// Connection settings of the shared client, from `config.json`'s provider network settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            // Below the usual 60–120 s keep-alive of provider edges, so we never reuse a
            // connection the far side is about to close.
            pool_idle_timeout: Duration::from_secs(50),
            pool_max_idle_per_host: 512,
        }
    }
}

/// One request to one upstream with one key.
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    pub provider: ProviderKind,
    pub operation: Operation,
    pub base_url: &'a str,
    pub key: &'a str,
    /// Static headers from `network_config.extra_headers`.
    pub extra_headers: &'a HeaderMap,
    /// Headers the gateway decided to forward from the client (e.g. `anthropic-version`).
    pub headers: HeaderMap,
    /// `None` sends a GET.
    pub body: Option<Bytes>,
    /// How long to wait for the response status line and headers.
    pub first_byte_timeout: Duration,
}

/// Why an upstream call failed. Messages never contain the provider key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not connect to {provider}: {message}")]
    Connect {
        provider: &'static str,
        message: String,
    },
    #[error("{provider} did not answer within {seconds} s")]
    Timeout {
        provider: &'static str,
        seconds: u64,
    },
    #[error("{provider} answered with status {status}")]
    Status {
        provider: &'static str,
        status: u16,
        retry_after: Option<HeaderValue>,
        body: Bytes,
    },
    #[error("{provider} connection failed: {message}")]
    Transport {
        provider: &'static str,
        message: String,
    },
    #[error("the configured {provider} key is not a valid header value")]
    InvalidKey { provider: &'static str },
    #[error("{provider} does not support this operation")]
    Unsupported { provider: &'static str },
}

impl ProviderError {
    /// Whether another attempt may succeed: network trouble, timeouts, 408/409/429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
            Self::InvalidKey { .. } | Self::Unsupported { .. } => false,
        }
    }

    /// Whether the failure is tied to the key, so the next attempt should use another one.
    pub fn is_key_specific(&self) -> bool {
        matches!(self, Self::Status { status, .. } if matches!(status, 401 | 402 | 403 | 429))
            || matches!(self, Self::InvalidKey { .. })
    }
}

/// Cheap to clone: reqwest's client is an `Arc` around one connection pool.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
}

static CRYPTO: Once = Once::new();

impl UpstreamClient {
    pub fn new(opts: &ClientOptions) -> Result<Self, ProviderError> {
        // rustls needs a process-wide crypto provider; ring builds without a C toolchain setup.
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            // HTTP/1.1 only: one HTTP/2 connection caps concurrent streams at the server's
            // limit (often 100) and hyper will not open a second one, so long LLM streams would
            // queue behind each other. Pooled HTTP/1.1 connections have no such cap.
            .http1_only()
            .no_proxy()
            .build()
            .map_err(|e| ProviderError::Transport {
                provider: "http client",
                message: e.to_string(),
            })?;
        Ok(Self { http })
    }

    /// Sends the request and waits for the status and headers. A non-2xx answer is read in
    /// full and returned as [`ProviderError::Status`]; a 2xx answer is returned with its body
    /// unread, so the caller can stream it.
    pub async fn send(&self, req: UpstreamRequest<'_>) -> Result<UpstreamResponse, ProviderError> {
        let provider = req.provider.name();
        let path = req
            .provider
            .path(req.operation)
            .ok_or(ProviderError::Unsupported { provider })?;
        let url = format!("{}{}", req.base_url.trim_end_matches('/'), path);
        let mut headers = req.headers;
        for (name, value) in req.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        req.provider
            .auth_headers(req.key, &mut headers)
            .ok_or(ProviderError::InvalidKey { provider })?;
        let builder = match req.body {
            Some(body) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                self.http.request(Method::POST, url).body(body)
            }
            None => self.http.request(Method::GET, url),
        }
        .headers(headers);
        let seconds = req.first_byte_timeout.as_secs();
        let response = tokio::time::timeout(req.first_byte_timeout, builder.send())
            .await
            .map_err(|_| ProviderError::Timeout { provider, seconds })?
            .map_err(|e| classify_send_error(provider, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(UpstreamResponse { provider, response });
        }
        let retry_after = response.headers().get(http::header::RETRY_AFTER).cloned();
        // Error bodies are small; a bounded wait keeps a stalled error body from hanging us.
        let body = tokio::time::timeout(req.first_byte_timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(ProviderError::Status {
            provider,
            status: status.as_u16(),
            retry_after,
            body,
        })
    }
}

/// A 2xx upstream answer whose body has not been read yet.
#[derive(Debug)]
pub struct UpstreamResponse {
    provider: &'static str,
    response: reqwest::Response,
}

/// The body of a streaming answer, chunk by chunk as the upstream sent it.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, ProviderError>> + Send>>;

impl UpstreamResponse {
    /// Reads the whole body (non-streaming answers).
    pub async fn bytes(self) -> Result<Bytes, ProviderError> {
        let provider = self.provider;
        self.response
            .bytes()
            .await
            .map_err(|e| ProviderError::Transport {
                provider,
                message: error_chain(&e),
            })
    }

    pub fn into_stream(self) -> ByteStream {
        use futures_util::StreamExt;
        let provider = self.provider;
        Box::pin(self.response.bytes_stream().map(move |r| {
            r.map_err(|e| ProviderError::Transport {
                provider,
                message: error_chain(&e),
            })
        }))
    }
}

fn classify_send_error(provider: &'static str, e: &reqwest::Error) -> ProviderError {
    // reqwest's Display includes the URL, which never carries a key for our providers.
    let message = error_chain(e);
    if e.is_connect() {
        ProviderError::Connect { provider, message }
    } else {
        ProviderError::Transport { provider, message }
    }
}

/// The error with its causes, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
