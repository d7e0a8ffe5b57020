//! The HTTP edge: routes, request ids, body limits, and the mapping of gateway results to
//! Anthropic-shaped HTTP responses.
//!
//! **Architecture invariant:** this is the only crate that knows axum/hyper and client-facing
//! status codes and error bodies. It holds no routing or provider logic.

mod admin;
mod api;
mod cache_api;
pub mod cli;
mod config_service;
pub mod demo;
mod edge;
mod governance;
mod governance_api;
mod jobs;
mod logfmt;
mod metrics;
mod openapi;
mod providers_api;
mod reload;
mod routes;
pub mod run;
mod settings_api;
mod ui;

pub use routes::{App, router};
