//! The cheap look at an Anthropic request that routing needs: `model`, `stream`, and the
//! presence and types of the required fields. Everything else stays unparsed bytes, so the
//! pass-through path forwards the client's body untouched.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

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
    Ok(RequestHead {
        model,
        stream: peek.stream.unwrap_or(false),
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

/// Returns `body` with its top-level `model` replaced by `model`, every other member kept byte
/// for byte and in order. Used only when the client's model carried a provider prefix.
pub fn replace_model(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let model = json_string(model);
    rewrite_members(body, |key| (key == "model").then_some(Some(&model)), None)
}

/// The body Claude on Vertex AI takes: the client's, without `model` (Vertex reads it from the
/// URL) and with `anthropic_version` set to `version` (replacing any the client sent), every
/// other member kept byte for byte and in order.
pub fn vertex_body(body: &[u8], version: &str) -> Result<Vec<u8>, TranslateError> {
    let version = json_string(version);
    rewrite_members(
        body,
        |key| matches!(key, "model" | "anthropic_version").then_some(None),
        Some(("anthropic_version", &version)),
    )
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// Re-writes a JSON object: `edit(key)` is `None` to copy a member's raw value, `Some(None)` to
/// drop the member, `Some(Some(json))` to replace its value; `append` adds one member at the end.
fn rewrite_members<'v>(
    body: &[u8],
    edit: impl Fn(&str) -> Option<Option<&'v Vec<u8>>>,
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
        match edit(key) {
            None => member(&mut out, key, value.get().as_bytes()),
            Some(Some(replacement)) => member(&mut out, key, replacement),
            Some(None) => {}
        }
    }
    if let Some((key, value)) = append {
        member(&mut out, key, value);
    }
    out.push(b'}');
    Ok(out)
}

/// `body` for a cloud that takes the model in its URL and the API version in the body (Claude
/// on Bedrock): `model` and `stream` (the URL says both) removed, `anthropic_version` set to
/// `version`, every other member kept byte for byte and in order.
pub fn cloud_body(body: &[u8], version: &str) -> Result<Vec<u8>, TranslateError> {
    let version = json_string(version);
    rewrite_members(
        body,
        |key| matches!(key, "model" | "stream" | "anthropic_version").then_some(None),
        Some(("anthropic_version", &version)),
    )
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
        let out = cloud_body(body, "bedrock-2023-05-31").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messages":[{"role":"user","content":"hi \u00e9"}],"max_tokens":5,"anthropic_version":"bedrock-2023-05-31"}"#
        );
        assert!(cloud_body(b"[1]", "v").is_err());
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
}
