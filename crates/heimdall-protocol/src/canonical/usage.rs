//! Token usage as Heimdall accounts it, in Anthropic's terms: input excludes cached tokens.

use serde::Serialize;

/// Field order is Anthropic's `usage` object order, so the derived encoding is its wire form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}
