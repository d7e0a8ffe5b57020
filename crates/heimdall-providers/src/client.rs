//! The one shared, tuned HTTP client that talks to every upstream.

use std::sync::Once;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName};

use crate::provider::PreparedRequest;

/// Connection settings of the shared client, from `config.json`'s provider network settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Largest non-streaming answer read; a bigger one fails instead of filling memory.
    pub max_response_bytes: usize,
    /// Largest error body read; the rest is dropped (the message is truncated).
    pub max_error_body_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            // Below the keep-alive of most provider edges (60–120 s); servers that close
            // sooner (Node and uvicorn default to 5 s) are covered by the one retry of a
            // request whose reused connection turned out closed.
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 512,
            max_response_bytes: 32 * 1024 * 1024,
            max_error_body_bytes: 64 * 1024,
        }
    }
}

/// Headers of an upstream error answer that a client may act on.
const KEPT_ERROR_HEADERS: [HeaderName; 4] = [
    http::header::CONTENT_TYPE,
    http::header::RETRY_AFTER,
    HeaderName::from_static("retry-after-ms"),
    HeaderName::from_static("x-should-retry"),
];

/// Why an upstream call failed. Messages never contain the provider key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not connect to {provider}: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider} did not answer within {seconds} s")]
    Timeout { provider: String, seconds: u64 },
    #[error("{provider} answered with status {status}")]
    Status {
        provider: String,
        status: u16,
        /// The answer's headers that matter to a client: `content-type`, `retry-after`,
        /// `retry-after-ms`, `x-should-retry`. Boxed: errors travel in `Result`s everywhere.
        headers: Box<HeaderMap>,
        body: Bytes,
    },
    #[error("{provider} connection failed: {message}")]
    Transport { provider: String, message: String },
    /// A pooled connection was closed by the upstream before any byte of the answer came:
    /// the request most likely never reached it, so one immediate retry is safe.
    #[error("{provider} closed the connection before answering: {message}")]
    Stale { provider: String, message: String },
    /// A status that is neither success nor a client or server error (1xx, 3xx, ≥ 600).
    #[error("{provider} answered with unexpected status {status}")]
    UnexpectedStatus { provider: String, status: u16 },
    /// A 2xx answer that is not what was asked for.
    #[error("{provider} sent an invalid answer: {message}")]
    Invalid { provider: String, message: String },
    #[error("the configured {provider} key is not a valid header value")]
    InvalidKey { provider: String },
    #[error("{provider} does not support this operation")]
    Unsupported { provider: String },
}

impl ProviderError {
    /// Whether another attempt may succeed: network trouble, timeouts, 408/409/429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Stale { .. } => true,
            Self::Status { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
            Self::InvalidKey { .. }
            | Self::Unsupported { .. }
            | Self::UnexpectedStatus { .. }
            | Self::Invalid { .. } => false,
        }
    }

    /// The provider's name, for messages that must not show URLs.
    pub fn provider(&self) -> &str {
        match self {
            Self::Connect { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Status { provider, .. }
            | Self::Transport { provider, .. }
            | Self::Stale { provider, .. }
            | Self::UnexpectedStatus { provider, .. }
            | Self::Invalid { provider, .. }
            | Self::InvalidKey { provider }
            | Self::Unsupported { provider } => provider,
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
    max_response_bytes: usize,
    max_error_body_bytes: usize,
}

static CRYPTO: Once = Once::new();

/// Installs the process-wide TLS crypto provider rustls needs before any HTTP client is
/// built (ring: it builds without a C toolchain setup). Idempotent.
pub fn install_tls_crypto() {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl UpstreamClient {
    pub fn new(opts: &ClientOptions) -> Result<Self, ProviderError> {
        install_tls_crypto();
        let http = reqwest::Client::builder()
            // Compressed answers are decoded here, so every path sees plain bytes and no
            // client receives a body whose content-encoding was dropped.
            .gzip(true)
            .brotli(true)
            .deflate(true)
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
                provider: "http client".to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            max_response_bytes: opts.max_response_bytes,
            max_error_body_bytes: opts.max_error_body_bytes,
        })
    }

    /// Sends the request and waits for the status and headers. A non-2xx answer is read in
    /// full and returned as [`ProviderError::Status`]; a 2xx answer is returned with its body
    /// unread, so the caller can stream it.
    pub async fn send(
        &self,
        req: PreparedRequest,
        provider: &str,
        first_byte_timeout: Duration,
    ) -> Result<UpstreamResponse, ProviderError> {
        let mut builder = self.http.request(req.method, req.url).headers(req.headers);
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let seconds = first_byte_timeout.as_secs();
        let response = tokio::time::timeout(first_byte_timeout, builder.send())
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: provider.to_owned(),
                seconds,
            })?
            .map_err(|e| classify_send_error(provider, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(UpstreamResponse {
                provider: provider.to_owned(),
                max_bytes: self.max_response_bytes,
                response,
                first: None,
            });
        }
        if !(status.is_client_error() || status.is_server_error()) {
            return Err(ProviderError::UnexpectedStatus {
                provider: provider.to_owned(),
                status: status.as_u16(),
            });
        }
        let mut headers = HeaderMap::new();
        for name in KEPT_ERROR_HEADERS {
            if let Some(v) = response.headers().get(&name) {
                headers.insert(name, v.clone());
            }
        }
        // Error bodies are small; a bounded wait and size keep a stalled or huge one from
        // hanging us or filling memory (the message is truncated).
        let body = tokio::time::timeout(
            first_byte_timeout,
            read_limited(response, self.max_error_body_bytes, true),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        Err(ProviderError::Status {
            provider: provider.to_owned(),
            status: status.as_u16(),
            headers: Box::new(headers),
            body,
        })
    }
}

/// Reads a body up to `max` bytes. Past that: the first `max` bytes when `truncate`, an
/// error otherwise.
async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
    truncate: bool,
) -> Result<Bytes, reqwest::Error> {
    let mut out = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > max {
            if truncate {
                out.extend_from_slice(&chunk[..max - out.len()]);
                break;
            }
            return Ok(Bytes::from_static(TOO_LARGE));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Marks an answer over the limit (a valid answer never is exactly these bytes).
const TOO_LARGE: &[u8] = b"\0heimdall: answer too large";

/// A 2xx upstream answer whose body has not been read yet.
#[derive(Debug)]
pub struct UpstreamResponse {
    provider: String,
    max_bytes: usize,
    response: reqwest::Response,
    /// The stream's first bytes, read by [`UpstreamResponse::first_bytes`].
    first: Option<Bytes>,
}

/// The body of a streaming answer, chunk by chunk as the upstream sent it.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, ProviderError>> + Send>>;

impl UpstreamResponse {
    /// The media type the upstream declared, without parameters (`text/event-stream`).
    pub fn media_type(&self) -> Option<&str> {
        let v = self.response.headers().get(http::header::CONTENT_TYPE)?;
        let v = v.to_str().ok()?;
        Some(v.split(';').next().unwrap_or(v).trim())
    }

    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Reads the whole body (non-streaming answers), up to the configured maximum.
    pub async fn bytes(self) -> Result<Bytes, ProviderError> {
        let provider = self.provider;
        let max = self.max_bytes;
        let body = read_limited(self.response, max, false).await.map_err(|e| {
            ProviderError::Transport {
                provider: provider.clone(),
                message: error_chain(&e.without_url()),
            }
        })?;
        if body == TOO_LARGE {
            return Err(ProviderError::Invalid {
                provider,
                message: format!("the answer is larger than {max} bytes"),
            });
        }
        Ok(body)
    }

    /// Waits up to `timeout` (what is left of a deadline of `seconds`) for a streaming
    /// answer's first bytes, which the stream then starts with. Until they come nothing has reached the client, so a failure here (the
    /// upstream closed or broke the stream, or stayed silent) may still be retried.
    pub async fn first_bytes(
        &mut self,
        timeout: Duration,
        seconds: u64,
    ) -> Result<(), ProviderError> {
        let provider = || self.provider.clone();
        loop {
            match tokio::time::timeout(timeout, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) if chunk.is_empty() => continue,
                Ok(Ok(Some(chunk))) => {
                    self.first = Some(chunk);
                    return Ok(());
                }
                Ok(Ok(None)) => {
                    return Err(ProviderError::Transport {
                        provider: provider(),
                        message: "the stream ended before its first byte".into(),
                    });
                }
                Ok(Err(e)) => {
                    return Err(ProviderError::Transport {
                        provider: provider(),
                        message: error_chain(&e.without_url()),
                    });
                }
                Err(_) => {
                    return Err(ProviderError::Timeout {
                        provider: provider(),
                        seconds,
                    });
                }
            }
        }
    }

    pub fn into_stream(self) -> ByteStream {
        use futures_util::StreamExt;
        let provider = self.provider;
        let rest = self.response.bytes_stream().map(move |r| {
            r.map_err(|e| ProviderError::Transport {
                provider: provider.clone(),
                message: error_chain(&e.without_url()),
            })
        });
        let first = futures_util::stream::iter(self.first.map(Ok));
        Box::pin(first.chain(rest))
    }
}

fn classify_send_error(provider: &str, e: reqwest::Error) -> ProviderError {
    let provider = provider.to_owned();
    let connect = e.is_connect();
    let stale = closed_before_answer(&e);
    // Messages name the provider, never the upstream URL.
    let message = error_chain(&e.without_url());
    if connect {
        ProviderError::Connect { provider, message }
    } else if stale {
        ProviderError::Stale { provider, message }
    } else {
        ProviderError::Transport { provider, message }
    }
}

/// True when hyper saw the connection close before a response head arrived.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        cur = err.source();
    }
    false
}

/// The error with its causes, e.g. "error sending request: connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
