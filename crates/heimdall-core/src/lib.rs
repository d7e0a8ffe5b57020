//! The exchange: routing, credentials, retries, policy and records around one request path
//! that every front door and every upstream dialect shares.
//!
//! **Architecture invariant:** this crate knows no HTTP server framework and no wire dialect:
//! it works through the protocol crate's traits and decides pass-through by dialect equality.
//! It never awaits a database on the request path (configuration is an in-memory snapshot).

mod affinity;
mod attempt;
mod cache;
pub mod config;
mod context;
mod error;
mod exchange;
mod guard;
mod headers;
mod health;
mod limits;
mod media;
mod models;
mod policy;
pub mod pricing;
mod record;
mod route;
mod stream;
pub mod telemetry;
mod tokens;

pub use cache::CacheStatus;
pub use context::{ClientKeys, RecordedFlag, RequestContext, header_text, virtual_key_fingerprint};
pub use error::{GatewayError, UpstreamAnswer};
pub use exchange::{Answered, Gateway, Reply, Served, Snapshot};
pub use headers::HeaderRules;
pub use models::ModelsQuery;
pub use policy::{Admission, AllowAll, Plan, Policy};
pub use record::{AttemptRecord, Content, LogSink, Outcome, RecordSink, RequestRecord, Sinks};
pub use stream::BodyStream;
pub use tokens::{BYTES_PER_TOKEN, MAX_TOKENIZED_BYTES};
