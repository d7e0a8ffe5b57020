//! The cheap look at an Anthropic request that routing needs: `model`, `stream`, and the
//! presence and types of the required fields. Everything else stays unparsed bytes, so the
//! pass-through path forwards the client's body untouched.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::canonical::is_claude_signature;
use crate::dialect::{Endpoint, RequestHead, TranslateError};

/// A client mistake in the request body; `message` names the field, as Anthropic does.
#[derive(Debug)]
struct HeadError {
    message: String,
}

impl From<HeadError> for TranslateError {
    fn from(e: HeadError) -> Self {
        TranslateError::invalid("", e.message)
    }
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    max_tokens: Option<u64>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    stream: Option<bool>,
    #[serde(borrow)]
    fallbacks: Option<Vec<Cow<'a, str>>>,
}

/// Checks that the body is a JSON object with the fields `endpoint` requires, with the right
/// types, and returns what routing needs.
pub(super) fn peek(body: &[u8], endpoint: Endpoint) -> Result<RequestHead<'_>, TranslateError> {
    parse(body, endpoint).map_err(TranslateError::from)
}

fn parse(body: &[u8], endpoint: Endpoint) -> Result<RequestHead<'_>, HeadError> {
    // A derived struct also accepts a JSON array; Anthropic wants an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(HeadError {
            message: "Request body must be a JSON object".into(),
        });
    }
    // Checked whole, up front: the fields skipped below are not otherwise looked at, and a
    // pass-through upstream would get them as they are (`rewrite_model` refuses them too).
    let text = std::str::from_utf8(body).map_err(|e| HeadError {
        message: format!(
            "Request body is not valid JSON: invalid UTF-8 at byte {}",
            e.valid_up_to()
        ),
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    let peek: Peek<'_> = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("Request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("Request body must be a JSON object: {inner}")
        } else {
            format!("{path}: {}", strip_position(&inner.to_string()))
        };
        HeadError { message }
    })?;
    // Bytes after the object would reach a pass-through upstream unchecked.
    de.end().map_err(|e| HeadError {
        message: format!("Request body is not valid JSON: {e}"),
    })?;
    let model = peek.model.ok_or_else(|| required("model"))?;
    if model.trim().is_empty() {
        return Err(HeadError {
            message: "model: String should have at least 1 character".into(),
        });
    }
    let messages = peek.messages.ok_or_else(|| required("messages"))?;
    if !messages.get().trim_start().starts_with('[') {
        return Err(HeadError {
            message: "messages: Input should be a valid list".into(),
        });
    }
    if endpoint == Endpoint::Messages && peek.max_tokens.is_none() {
        return Err(required("max_tokens"));
    }
    if let Some(i) = peek
        .fallbacks
        .iter()
        .flatten()
        .position(|m| m.trim().is_empty())
    {
        return Err(HeadError {
            message: format!("fallbacks.{i}: String should have at least 1 character"),
        });
    }
    Ok(RequestHead {
        model,
        stream: peek.stream.unwrap_or(false),
        fallbacks: peek.fallbacks,
        max_tokens: peek.max_tokens,
    })
}

fn required(field: &str) -> HeadError {
    HeadError {
        message: format!("{field}: Field required"),
    }
}

/// serde_json appends " at line 1 column 42"; the path already says where.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

/// The client's body for an Anthropic-dialect upstream, or `None` when it can go byte for
/// byte as it came: with `model` replaced when one is given (the client's carried a provider
/// prefix, or a fallback answers), without the gateway's `fallbacks` field when
/// `drop_fallbacks`, and without thinking blocks that a Claude upstream would refuse because it cannot
/// verify their signature (unsigned thinking from another provider's reasoning, Gemini's
/// marked signatures: a conversation that moved to Claude mid-way). Every other member is kept
/// byte for byte and in order.
pub fn pass_through_body(
    body: &[u8],
    model: Option<&str>,
    drop_fallbacks: bool,
) -> Result<Option<Vec<u8>>, TranslateError> {
    let thinking = may_hold_thinking_blocks(body);
    if model.is_none() && !thinking && !drop_fallbacks {
        return Ok(None);
    }
    let model = model.map(json_string);
    let mut changed = model.is_some() || drop_fallbacks;
    let out = rewrite_members(
        body,
        |key, value| {
            Ok(match key {
                "model" => model.clone().map_or(Edit::Keep, Edit::Replace),
                "fallbacks" if drop_fallbacks => Edit::Drop,
                "messages" if thinking => match without_foreign_thinking(value)? {
                    Some(messages) => {
                        changed = true;
                        Edit::Replace(messages)
                    }
                    None => Edit::Keep,
                },
                _ => Edit::Keep,
            })
        },
        None,
    )?;
    Ok(changed.then_some(out))
}

/// Returns `body` with its top-level `model` replaced by `model`, every other member kept byte
/// for byte and in order.
pub fn replace_model(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let model = json_string(model);
    rewrite_members(
        body,
        |key, _| {
            Ok(match key {
                "model" => Edit::Replace(model.clone()),
                _ => Edit::Keep,
            })
        },
        None,
    )
}

/// Whether `body` may hold a thinking block: some `"thinking"` is a value (`"type":
/// "thinking"`), not only a key (the `thinking` config, a block's text). A linear scan, so
/// that requests without thinking blocks pass through without a parse.
fn may_hold_thinking_blocks(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"thinking\"";
    memchr::memmem::find_iter(body, NEEDLE).any(|at| {
        body[..at]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b':')
    })
}

/// `messages` without the thinking blocks a Claude upstream would refuse; `None` if none.
fn without_foreign_thinking(messages: &RawValue) -> Result<Option<Vec<u8>>, TranslateError> {
    let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(messages.get()) else {
        // Not a list of messages: the upstream's own validation answers.
        return Ok(None);
    };
    let mut out = Vec::with_capacity(messages.get().len());
    let mut changed = false;
    out.push(b'[');
    for (i, message) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut dropped = false;
        let rewritten = rewrite_members(
            message.get().as_bytes(),
            |key, value| {
                Ok(match key {
                    "content" => match without_foreign_blocks(value) {
                        Some(content) => {
                            dropped = true;
                            Edit::Replace(content)
                        }
                        None => Edit::Keep,
                    },
                    _ => Edit::Keep,
                })
            },
            None,
        );
        match rewritten {
            Ok(bytes) if dropped => {
                changed = true;
                out.extend_from_slice(&bytes);
            }
            _ => out.extend_from_slice(message.get().as_bytes()),
        }
    }
    out.push(b']');
    Ok(changed.then_some(out))
}

/// A content array without its foreign thinking blocks; `None` if it has none (or is not an
/// array of blocks).
fn without_foreign_blocks(content: &RawValue) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        signature: Option<Cow<'a, str>>,
    }
    let blocks = serde_json::from_str::<Vec<&RawValue>>(content.get()).ok()?;
    let foreign = |block: &RawValue| {
        serde_json::from_str::<Block<'_>>(block.get()).is_ok_and(|b| {
            b.kind.as_deref() == Some("thinking")
                && !b.signature.as_deref().is_some_and(is_claude_signature)
        })
    };
    if !blocks.iter().any(|b| foreign(b)) {
        return None;
    }
    let mut out = Vec::with_capacity(content.get().len());
    out.push(b'[');
    for block in blocks.iter().filter(|b| !foreign(b)) {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(block.get().as_bytes());
    }
    out.push(b']');
    Some(out)
}

/// The body Claude on Vertex AI takes: the client's, without `model` (Vertex reads it from the
/// URL) and with `anthropic_version` set to `version` (replacing any the client sent), every
/// other member kept byte for byte and in order.
pub fn vertex_body(body: &[u8], version: &str) -> Result<Vec<u8>, TranslateError> {
    let version = json_string(version);
    rewrite_members(
        body,
        |key, _| {
            Ok(match key {
                "model" | "anthropic_version" => Edit::Drop,
                _ => Edit::Keep,
            })
        },
        Some(("anthropic_version", &version)),
    )
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// What [`rewrite_members`] does with one member.
enum Edit {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

/// Re-writes a JSON object: `edit(key, value)` says what becomes of each member (raw values
/// are copied as they are); `append` adds one member at the end.
fn rewrite_members(
    body: &[u8],
    mut edit: impl FnMut(&str, &RawValue) -> Result<Edit, TranslateError>,
    append: Option<(&str, &[u8])>,
) -> Result<Vec<u8>, TranslateError> {
    let members = serde_json::from_slice::<Members<'_>>(body)
        .map_err(|e| TranslateError::invalid("", format!("Request body is not valid JSON: {e}")))?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        // Keys are re-encoded (they may have had escapes); values are copied raw.
        out.extend_from_slice(&json_string(key));
        out.push(b':');
        out.extend_from_slice(value);
    };
    for (key, value) in &members.0 {
        match edit(key, value)? {
            Edit::Keep => member(&mut out, key, value.get().as_bytes()),
            Edit::Replace(replacement) => member(&mut out, key, &replacement),
            Edit::Drop => {}
        }
    }
    if let Some((key, value)) = append {
        member(&mut out, key, value);
    }
    out.push(b'}');
    Ok(out)
}

/// `body` for a cloud that takes the model in its URL and the API version and betas in the
/// body (Claude on Bedrock): `model` and `stream` (the URL says both) removed,
/// `anthropic_version` set to `version`, `anthropic_beta` set to `betas` (left out when there
/// are none), every other member kept byte for byte and in order.
pub fn cloud_body(body: &[u8], version: &str, betas: &[&str]) -> Result<Vec<u8>, TranslateError> {
    let version = json_string(version);
    let mut out = rewrite_members(
        body,
        |key, _| {
            Ok(match key {
                "model" | "stream" | "anthropic_version" | "anthropic_beta" => Edit::Drop,
                _ => Edit::Keep,
            })
        },
        Some(("anthropic_version", &version)),
    )?;
    if !betas.is_empty() {
        let betas = serde_json::to_vec(betas).unwrap_or_default();
        // Reopen the object to add one more member after `anthropic_version`.
        out.pop();
        out.extend_from_slice(b",\"anthropic_beta\":");
        out.extend_from_slice(&betas);
        out.push(b'}');
    }
    Ok(out)
}

/// The members of a JSON object in document order, values left raw.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    out.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, ep: Endpoint) -> String {
        parse(body.as_bytes(), ep).err().unwrap().message
    }

    #[test]
    fn invalid_utf8_in_a_field_the_peek_skips_is_refused() {
        // The fuzzer's finding (fuzz/regressions/anthropic_request/).
        let body = include_bytes!(
            "../../../../../fuzz/regressions/anthropic_request/peek-accepts-invalid-utf8-in-unknown-field.json"
        );
        let message = parse(body, Endpoint::Messages).err().unwrap().message;
        assert_eq!(
            message,
            "Request body is not valid JSON: invalid UTF-8 at byte 47"
        );
    }

    #[test]
    fn reads_model_and_stream() {
        let h = parse(
            br#"{"model":"openai/gpt-4o-mini","max_tokens":5,"messages":[],"stream":true,"x":{"y":1}}"#,
            Endpoint::Messages,
        )
        .unwrap();
        assert_eq!(h.model, "openai/gpt-4o-mini");
        assert!(h.stream);
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(
            err(r#"{"max_tokens":1,"messages":[]}"#, Endpoint::Messages),
            "model: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[]}"#, Endpoint::Messages),
            "max_tokens: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":1}"#, Endpoint::Messages),
            "messages: Field required"
        );
        assert!(
            err(
                r#"{"model":"m","max_tokens":"ten","messages":[]}"#,
                Endpoint::Messages
            )
            .starts_with("max_tokens: invalid type")
        );
        assert!(
            err(
                r#"{"model":1,"max_tokens":1,"messages":[]}"#,
                Endpoint::Messages
            )
            .starts_with("model: invalid type")
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":{}}"#,
                Endpoint::Messages
            ),
            "messages: Input should be a valid list"
        );
        assert!(
            err(r#"{"model":"#, Endpoint::Messages).starts_with("Request body is not valid JSON")
        );
        assert!(
            err(r#"[1]"#, Endpoint::Messages).starts_with("Request body must be a JSON object")
        );
        assert!(
            err(
                r#"{"model":"m","max_tokens":1,"messages":[]}x"#,
                Endpoint::Messages
            )
            .starts_with("Request body is not valid JSON: trailing characters")
        );
        assert!(parse(br#"{"model":"m","messages":[]}"#, Endpoint::CountTokens).is_ok());
    }

    #[test]
    fn cloud_body_moves_model_and_stream_out() {
        let body = br#"{"model":"claude-x", "messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,"anthropic_version":"old","max_tokens":5}"#;
        let out = cloud_body(body, "bedrock-2023-05-31", &[]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messages":[{"role":"user","content":"hi \u00e9"}],"max_tokens":5,"anthropic_version":"bedrock-2023-05-31"}"#
        );
        let out = cloud_body(body, "v", &["context-1m-2025-08-07", "x\"y"]).unwrap();
        assert!(String::from_utf8(out).unwrap().ends_with(
            r#""anthropic_version":"v","anthropic_beta":["context-1m-2025-08-07","x\"y"]}"#
        ));
        assert!(cloud_body(b"[1]", "v", &[]).is_err());
    }

    #[test]
    fn replaces_only_the_model() {
        let body = br#"{ "model" : "anthropic/claude-x", "messages":[{"role":"user","content":"hi \u00e9"}],"max_tokens":5}"#;
        let out = replace_model(body, "claude-x").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"claude-x","messages":[{"role":"user","content":"hi \u00e9"}],"max_tokens":5}"#
        );
    }

    #[test]
    fn vertex_body_drops_model_and_sets_the_version() {
        let body = br#"{"model":"vertex/claude-x","anthropic_version":"old", "max_tokens" : 5,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":true}"#;
        let out = vertex_body(body, "vertex-2023-10-16").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"max_tokens":5,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":true,"anthropic_version":"vertex-2023-10-16"}"#
        );
        assert!(vertex_body(b"[1]", "v").is_err());
    }

    #[test]
    fn pass_through_keeps_bodies_without_thinking_blocks_as_they_are() {
        let plain = br#"{"model":"claude-x","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"say \"thinking\" twice"}]}"#;
        assert_eq!(pass_through_body(plain, None, false).unwrap(), None);
        let renamed = pass_through_body(plain, Some("claude-y"), false)
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8(renamed)
                .unwrap()
                .starts_with(r#"{"model":"claude-y","max_tokens":5,"thinking":"#)
        );
    }

    #[test]
    fn fallbacks_are_read_and_taken_out_before_the_upstream() {
        let body = br#"{"model":"claude-x","fallbacks":["openai/gpt-4o-mini", "gemini/g"],"max_tokens":5,"messages":[]}"#;
        let head = peek(body, Endpoint::Messages).unwrap();
        assert_eq!(
            head.fallbacks.as_deref().unwrap(),
            ["openai/gpt-4o-mini", "gemini/g"]
        );
        let out = pass_through_body(body, None, true).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#
        );
        for (bad, why) in [
            (r#""fallbacks":"openai/x""#, "fallbacks: invalid type"),
            (r#""fallbacks":[1]"#, "fallbacks[0]: invalid type"),
            (r#""fallbacks":[" "]"#, "fallbacks.0: String should have"),
        ] {
            let body = format!(r#"{{"model":"m",{bad},"max_tokens":5,"messages":[]}}"#);
            let err = peek(body.as_bytes(), Endpoint::Messages).err().unwrap();
            assert!(err.message().starts_with(why), "{}", err.message());
        }
        let plain = peek(
            br#"{"model":"m","max_tokens":5,"messages":[]}"#,
            Endpoint::Messages,
        );
        assert!(plain.unwrap().fallbacks.is_none());
    }

    #[test]
    fn pass_through_drops_thinking_claude_cannot_verify() {
        let body = br#"{"model":"claude-x","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"from gpt","signature":""},{"type": "thinking","thinking":"from gemini","signature":"gemini:c2ln"},{"type":"thinking","thinking":"mine","signature":"EqQBCkgI"},{"type":"redacted_thinking","data":"xyz"},{"type":"thinking","thinking":"no sig"},{"type":"text","text":"a"}]},{"role":"user","content":"next"}],"max_tokens":5}"#;
        let out = pass_through_body(body, None, false).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"claude-x","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"mine","signature":"EqQBCkgI"},{"type":"redacted_thinking","data":"xyz"},{"type":"text","text":"a"}]},{"role":"user","content":"next"}],"max_tokens":5}"#
        );
        // Claude's own signed thinking alone: nothing to change.
        let own = br#"{"model":"claude-x","messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"EqQB"}]}],"max_tokens":5}"#;
        assert_eq!(pass_through_body(own, None, false).unwrap(), None);
        // Both edits at once.
        let out = pass_through_body(body, Some("claude-y"), false)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "claude-y");
        assert_eq!(v["messages"][1]["content"].as_array().unwrap().len(), 3);
    }
}
