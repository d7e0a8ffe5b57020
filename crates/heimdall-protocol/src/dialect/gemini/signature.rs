//! Where Gemini's `thoughtSignature` lives on the Anthropic side.
//!
//! Gemini attaches a signature to a part: a thought, a function call (Gemini 3 rejects a later
//! turn whose calls lost theirs) or a text part (often an empty one ending a stream). Anthropic
//! has one place for a signature, the `thinking` block, so:
//!
//! - decoding, a signed thought part is a thinking block with that signature; a signature on any
//!   other part becomes the signature of the thinking block just before that part's block (the
//!   open thought summary, or an empty thinking block of its own);
//! - encoding, a signed thinking block directly followed by text or a tool call gives its
//!   signature to that part (its thought text, if any, goes back as an unsigned thought part);
//!   otherwise it is a part of its own (a thought part, or an empty text part when it has no
//!   text).
//!
//! Signatures are marked with [`PREFIX`] so only Gemini's own go back to Gemini: a signature
//! from Anthropic or an unsigned block from another provider is dropped on the way in.

use crate::canonical::GEMINI_SIGNATURE_PREFIX as PREFIX;

/// The Anthropic-side signature for a Gemini one.
pub(super) fn encode(signature: &str) -> String {
    format!("{PREFIX}{signature}")
}

/// The Gemini signature inside an Anthropic-side one, if it is Gemini's.
pub(super) fn decode(signature: &str) -> Option<&str> {
    signature.strip_prefix(PREFIX).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gemini_signatures_round_trip() {
        assert_eq!(decode(&encode("c2ln")), Some("c2ln"));
        assert_eq!(decode("EqQBCkgIARABGAIiQ"), None);
        assert_eq!(decode(""), None);
        assert_eq!(decode(PREFIX), None);
    }
}
