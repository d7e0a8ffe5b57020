//! Wire types of the LLM API dialects Heimdall speaks, and pure translation between them.
//!
//! **Architecture invariant:** nothing in this crate does IO, reads a clock or draws random
//! numbers. Every function is deterministic given its input, so it is tested with golden files.
//! Ids that must be fresh (message ids) are passed in by the caller.
//!
//! Layout:
//! - [`anthropic`]: Anthropic Messages API types (requests, responses, stream events), the cheap
//!   request head peek used on the pass-through path, and error bodies.
//! - [`openai`]: OpenAI Chat Completions types.
//! - [`translate`]: dialect-to-dialect conversion, including the streaming state machines.
//! - [`sse`]: an incremental server-sent-events framer and encoder shared by all paths.
//! - [`usage`]: token usage as Heimdall accounts it, and the tap that reads it from Anthropic
//!   streams without re-encoding them.
//! - [`error`]: the Anthropic error vocabulary and its HTTP status mapping.

pub mod anthropic;
pub mod error;
pub mod ids;
pub mod openai;
pub mod sse;
pub mod translate;
pub mod usage;
