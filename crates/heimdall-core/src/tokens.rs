//! Local token counts for providers without a counting endpoint. These are estimates: the
//! text is tokenized with the model family's BPE plus a fixed per-message overhead, which is
//! how OpenAI's own guidance approximates chat formatting.

use heimdall_protocol::anthropic::CountTokensRequest;
use heimdall_protocol::translate::openai_chat;

use crate::error::GatewayError;

/// Tokens OpenAI adds around each message, and to prime the reply.
const PER_MESSAGE: usize = 3;
const REPLY_PRIMER: usize = 3;

pub(crate) async fn estimate(model: &str, req: &CountTokensRequest) -> Result<u64, GatewayError> {
    let text = openai_chat::count_text(req);
    let messages = req.messages.len();
    let legacy = uses_cl100k(model);
    // Loading the BPE tables takes ~100 ms the first time and encoding is CPU work: keep it
    // off the async workers.
    tokio::task::spawn_blocking(move || {
        let bpe = if legacy {
            tiktoken_rs::cl100k_base_singleton()
        } else {
            tiktoken_rs::o200k_base_singleton()
        };
        let n = bpe.encode_with_special_tokens(&text).len();
        (n + messages * PER_MESSAGE + REPLY_PRIMER) as u64
    })
    .await
    .map_err(|e| GatewayError::invalid_request(format!("token counting failed: {e}")))
}

/// GPT-4 (non-o), GPT-3.5 and older embedding-era models use cl100k; GPT-4o, 4.1, 5 and the
/// o-series use o200k.
fn uses_cl100k(model: &str) -> bool {
    (model.starts_with("gpt-4") && !model.starts_with("gpt-4o") && !model.starts_with("gpt-4.1"))
        || model.starts_with("gpt-3.5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert!(uses_cl100k("gpt-4-turbo"));
        assert!(uses_cl100k("gpt-3.5-turbo"));
        assert!(!uses_cl100k("gpt-4o-mini"));
        assert!(!uses_cl100k("gpt-4.1"));
        assert!(!uses_cl100k("o3"));
    }
}
