//! Upstream providers: where each one lives, how it authenticates, and the shared HTTP client.
//!
//! **Architecture invariant:** this is the only crate that knows upstream URLs and
//! authentication. It knows nothing of virtual keys, budgets, routing policy or the
//! client-facing HTTP server; it prepares and sends one request with the key it is given and
//! reports what happened.

pub mod betas;
mod client;
mod provider;
pub mod providers;

pub use client::{
    ByteStream, ClientOptions, ProviderError, UpstreamClient, UpstreamResponse, error_chain,
    install_tls_crypto,
};
pub use provider::{
    Credential, DirectKeyHeader, Operation, PreparedRequest, Provider, ProviderFactory,
    ProviderSettings, SettingsError, header_auth, json_request, set_secret_header, url,
};
pub use providers::{factories, factory};
