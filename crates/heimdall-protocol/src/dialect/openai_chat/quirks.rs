//! How OpenAI-compatible servers differ from OpenAI, as data: each provider preset carries a
//! [`Quirks`] value, and the codec consults it instead of branching on provider names.

use std::borrow::Cow;

use crate::ids;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Send `max_tokens` instead of `max_completion_tokens` (servers that predate it).
    pub legacy_max_tokens: bool,
    /// Ask for usage in streams with `stream_options.include_usage` (servers that reject the
    /// field report usage in their last chunk anyway).
    pub stream_usage: bool,
    /// Send `reasoning_effort` for thinking requests.
    pub reasoning_effort: bool,
    /// The form tool-call ids must have upstream.
    pub tool_ids: ToolIdForm,
}

impl Quirks {
    /// OpenAI itself.
    pub const OPENAI: Quirks = Quirks {
        legacy_max_tokens: false,
        stream_usage: true,
        reasoning_effort: true,
        tool_ids: ToolIdForm::Any,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolIdForm {
    /// Any string (the id the upstream minted is sent back as it was).
    Any,
    /// Exactly nine ASCII letters or digits (Mistral rejects anything else).
    Alnum9,
}

impl ToolIdForm {
    /// The id to send upstream for an id a client holds. Ids the upstream minted come back
    /// unchanged; others (from another provider) map to a deterministic id of the right form,
    /// so a `tool_use` and its `tool_result` still pair.
    pub fn upstream(self, client_id: &str) -> String {
        let own = ids::tool_id_to_upstream(client_id);
        match self {
            ToolIdForm::Any => own.to_owned(),
            ToolIdForm::Alnum9 => alnum9(own).into_owned(),
        }
    }
}

fn alnum9(id: &str) -> Cow<'_, str> {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Cow::Borrowed(id);
    }
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Cow::Owned(ids::base62(u128::from(hash), 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_ids_are_nine_alphanumerics_and_stable() {
        let form = ToolIdForm::Alnum9;
        // An id Mistral minted comes back as it was (the gateway prefixed it with toolu_).
        assert_eq!(form.upstream("toolu_Ab3dE5gH9"), "Ab3dE5gH9");
        // A foreign id maps to nine alphanumerics, the same each time.
        let a = form.upstream("toolu_01A09q90qw90lq917835lq9");
        assert_eq!(a.len(), 9);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, form.upstream("toolu_01A09q90qw90lq917835lq9"));
        assert_ne!(a, form.upstream("toolu_01A09q90qw90lq917835lq8"));
        assert_eq!(ToolIdForm::Any.upstream("toolu_call_1"), "call_1");
    }
}
