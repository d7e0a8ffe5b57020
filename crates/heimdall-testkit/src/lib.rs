//! heimdall-testkit: the mock LLM upstream (`heimdall-mock`) and helpers that boot the gateway
//! binary for black-box tests.
//!
//! - [`mock`]: [`MockServer`] speaks the OpenAI Chat Completions and Anthropic Messages
//!   dialects, scripted by `[[mock:...]]` directives in the last user message.
//! - [`gateway`]: [`GatewayProcess`] spawns the `heimdall` binary on an ephemeral port.
//! - [`eventstream`]: an encoder for AWS event stream messages (Bedrock streams).
//! - [`http_client`]: a reqwest client usable despite the workspace's `rustls-no-provider`.
//! - [`fixtures`]: a test-only service account whose tokens the mock's `/token` grants.

pub mod eventstream;
pub mod gateway;
pub mod grammar;
pub mod mock;

/// A service account made for tests (its private key protects nothing): the mock's token
/// endpoint verifies assertions against its public key.
pub mod fixtures {
    /// A Google service-account key file; point `token_uri` at the mock's `/token` before use.
    pub const SERVICE_ACCOUNT_JSON: &str = include_str!("../fixtures/service-account.json");
    /// Its `client_email`, the only account the mock grants tokens to.
    pub const SERVICE_ACCOUNT_EMAIL: &str = "heimdall-test@heimdall-test.iam.gserviceaccount.com";
    /// Its public key (PKCS#1 `RSAPublicKey`, DER).
    pub const SERVICE_ACCOUNT_PUBLIC_KEY: &[u8] =
        include_bytes!("../fixtures/service-account.pub.der");
}

pub use gateway::GatewayProcess;
pub use mock::{MEDIA_TEXT, MockOptions, MockServer, RecordedRequest};

/// Installs the process-wide rustls crypto provider (ring) if none is installed yet.
///
/// The workspace builds reqwest with `rustls-no-provider`, so building a `reqwest::Client`
/// panics until a provider is installed. Idempotent and cheap; call it before building clients.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A plain `reqwest::Client` for tests (installs the crypto provider first). No proxy, and
/// no transparent decompression: tests see the bytes exactly as the server sent them.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
