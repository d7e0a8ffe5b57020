//! Identifier rules of the Anthropic surface.
//!
//! Anthropic validates `tool_use.id` / `tool_result.tool_use_id` against `^[a-zA-Z0-9_-]+$`,
//! while other providers mint ids such as `functions.Bash:0`. Ids coming from an upstream are
//! rewritten deterministically so a `tool_use` and its later `tool_result` still match.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Prefix of tool ids Heimdall hands to Anthropic clients for translated tool calls.
pub const TOOL_ID_PREFIX: &str = "toolu_";

/// True when `id` matches `^[a-zA-Z0-9_-]+$`.
pub fn is_valid_tool_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Encodes `n` as base62 text of exactly `len` characters (least significant digit last).
pub fn base62(mut n: u128, len: usize) -> String {
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.into_iter().map(char::from).collect()
}

/// `msg_` followed by 24 base62 characters derived from `seed` (the caller draws it at random).
pub fn message_id(seed: u128) -> String {
    format!("msg_{}", base62(seed, 24))
}

/// A seed whose base62 text sorts by `millis`: the time in the top 48 bits (until the year
/// 10889), 80 bits of `random` below it.
pub fn time_ordered_seed(millis: u128, random: u128) -> u128 {
    const RANDOM_BITS: u32 = 80;
    ((millis & ((1 << 48) - 1)) << RANDOM_BITS) | (random >> (128 - RANDOM_BITS))
}

/// `req_` followed by 24 base62 characters derived from `seed`.
pub fn request_id(seed: u128) -> String {
    format!("req_{}", base62(seed, 24))
}

/// The Anthropic id for an upstream tool call: `toolu_` + the upstream id with every character
/// outside `[a-zA-Z0-9_-]` replaced by `_`. An absent or empty upstream id gets one derived
/// from the message id and the call's position, so the mapping stays deterministic.
pub fn tool_id_from_upstream(upstream: Option<&str>, message_id: &str, position: usize) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => {
            let mut out = String::with_capacity(TOOL_ID_PREFIX.len() + id.len());
            out.push_str(TOOL_ID_PREFIX);
            out.extend(id.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            }));
            out
        }
        None => {
            let tail = message_id.strip_prefix("msg_").unwrap_or(message_id);
            format!("{TOOL_ID_PREFIX}{tail}_{position}")
        }
    }
}

/// The id to send upstream for a tool id that came from an Anthropic client: the `toolu_`
/// prefix Heimdall added is taken off again, so the upstream sees the id it minted.
pub fn tool_id_to_upstream(anthropic_id: &str) -> &str {
    match anthropic_id.strip_prefix(TOOL_ID_PREFIX) {
        Some(rest) if !rest.is_empty() => rest,
        _ => anthropic_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_anthropic_shape() {
        let id = message_id(u128::MAX);
        assert!(id.starts_with("msg_") && id.len() == 28);
        assert!(is_valid_tool_id(&id));
        assert_eq!(message_id(7), message_id(7));
    }

    #[test]
    fn time_ordered_ids_sort_by_time_whatever_the_random_part() {
        let early = request_id(time_ordered_seed(1_764_547_200_000, u128::MAX));
        let late = request_id(time_ordered_seed(1_764_547_200_001, 0));
        assert!(early < late, "{early} {late}");
        assert_eq!(early.len(), 28);
        let a = request_id(time_ordered_seed(5, 1 << 127));
        let b = request_id(time_ordered_seed(5, 1 << 126));
        assert_ne!(a, b, "the random part shows");
    }

    #[test]
    fn tool_ids_round_trip() {
        let t = tool_id_from_upstream(Some("functions.Bash:0"), "msg_x", 0);
        assert_eq!(t, "toolu_functions_Bash_0");
        assert!(is_valid_tool_id(&t));
        let c = tool_id_from_upstream(Some("call_abc"), "msg_x", 0);
        assert_eq!(tool_id_to_upstream(&c), "call_abc");
        assert_eq!(tool_id_from_upstream(None, "msg_AB", 2), "toolu_AB_2");
        assert_eq!(tool_id_to_upstream("toolu_"), "toolu_");
    }
}
