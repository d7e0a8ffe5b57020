//! The `semantic_cache` plugin's pure parts. The exchange (`heimdall-core`) runs the stage:
//! it reads a request's [`RequestOptions`], computes its [`Keys`], asks the [`Cache`] for a
//! direct hit and then, with an embedding of [`Keys::text`], for a semantic one, and stores
//! complete answers. Nothing here does IO: the clock is a [`Clock`], a store keeps its copy
//! of the entries through a [`Journal`] (an entry as bytes: [`encoding`]).

pub mod cache;
pub mod config;
pub mod encoding;
pub mod index;
pub mod options;
pub mod request;

pub use cache::{
    Cache, Clock, Entry, Hit, HitKind, Journal, ManualClock, NotStored, Removed, SystemClock,
};
pub use config::{CacheConfig, EmbeddingConfig, Invalid, parse};
pub use index::normalized;
pub use options::{LookupKind, RequestOptions};
pub use request::{Digest, Identity, Keys, keys};
