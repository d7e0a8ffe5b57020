//! Routing, credentials, retries and the request pipeline.
//!
//! **Architecture invariant:** this crate knows no HTTP server framework and no client-facing
//! status handling beyond [`GatewayError`]'s `status`/`kind`; it never awaits a database on
//! the request path (configuration is an in-memory snapshot).

mod attempt;
pub mod config;
mod error;
mod gateway;
mod models;
mod record;
mod route;
mod stream;
mod tokens;

pub use error::GatewayError;
pub use gateway::{ClientRequest, DEFAULT_ANTHROPIC_VERSION, Gateway, Reply};
pub use models::ModelsQuery;
pub use stream::BodyStream;
