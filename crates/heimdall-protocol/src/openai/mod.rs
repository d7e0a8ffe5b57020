//! The OpenAI Chat Completions dialect.

pub mod chat;

pub use chat::*;
