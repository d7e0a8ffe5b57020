//! Local token counts for providers without a counting endpoint. These are estimates: the
//! text is tokenized with the model family's BPE plus a fixed per-message overhead, which is
//! how OpenAI's own guidance approximates chat formatting.
//!
//! Tokenizing is CPU work proportional to the input, so it is bounded twice: at most one
//! count per core runs at a time (others wait their turn), and text beyond
//! [`MAX_TOKENIZED_BYTES`] is not tokenized but estimated at [`BYTES_PER_TOKEN`].

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use crate::error::GatewayError;

/// Tokens OpenAI adds around each message, and to prime the reply.
const PER_MESSAGE: usize = 3;
const REPLY_PRIMER: usize = 3;
/// Longest text that is tokenized exactly (about 128k tokens of English).
pub const MAX_TOKENIZED_BYTES: usize = 512 * 1024;
/// English averages about four bytes per BPE token in both encodings.
pub const BYTES_PER_TOKEN: usize = 4;

static TOKENIZERS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

pub(crate) async fn estimate(
    model: &str,
    text: String,
    messages: usize,
) -> Result<u64, GatewayError> {
    let overhead = messages * PER_MESSAGE + REPLY_PRIMER;
    if text.len() > MAX_TOKENIZED_BYTES {
        return Ok((text.len().div_ceil(BYTES_PER_TOKEN) + overhead) as u64);
    }
    let _permit = TOKENIZERS
        .acquire()
        .await
        .map_err(|e| GatewayError::internal(format!("token counting failed: {e}")))?;
    let legacy = uses_cl100k(model);
    // Loading the BPE tables takes ~100 ms the first time and encoding is CPU work: keep it
    // off the async workers.
    tokio::task::spawn_blocking(move || {
        let bpe = if legacy {
            tiktoken_rs::cl100k_base_singleton()
        } else {
            tiktoken_rs::o200k_base_singleton()
        };
        (bpe.encode_with_special_tokens(&text).len() + overhead) as u64
    })
    .await
    .map_err(|e| GatewayError::internal(format!("token counting failed: {e}")))
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

    #[tokio::test]
    async fn long_text_is_estimated_not_tokenized() {
        let text = "word ".repeat(MAX_TOKENIZED_BYTES / 5 + 10);
        let len = text.len();
        let n = estimate("gpt-4o", text, 1).await.unwrap();
        assert_eq!(
            n as usize,
            len.div_ceil(BYTES_PER_TOKEN) + PER_MESSAGE + REPLY_PRIMER
        );
        let n = estimate("gpt-4o", "hello world".into(), 1).await.unwrap();
        assert_eq!(n as usize, 2 + PER_MESSAGE + REPLY_PRIMER);
    }
}
