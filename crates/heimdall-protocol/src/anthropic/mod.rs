//! The Anthropic Messages API dialect.

pub mod head;
pub mod messages;

pub use messages::*;
