//! Upstream providers: where each one lives, how it authenticates, and the shared HTTP client.
//!
//! **Architecture invariant:** this is the only crate that knows upstream URLs and auth
//! headers. It knows nothing of virtual keys, budgets, routing policy or the client-facing
//! HTTP server; it sends one request with the key it is given and reports what happened.

mod client;
mod provider;

pub use client::{
    ByteStream, ClientOptions, ProviderError, UpstreamClient, UpstreamRequest, UpstreamResponse,
};
pub use provider::{Operation, ProviderKind};
