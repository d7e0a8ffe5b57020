//! What the cache reads off a canonical request: its normalised form (the direct key is its
//! hash), the scope its semantic neighbours must share, and the text that is embedded.
//!
//! Normalising drops what does not change the answer (`cache_control` marks, `metadata`, the
//! string-or-blocks spelling of content) and keeps everything that does; a request holding
//! blocks the canonical form does not model in full (unknown types, redacted thinking) is not
//! cached, since two different such requests would normalise alike.

use heimdall_protocol::canonical::{
    ContentBlockParam, MessageContent, Request, Role, Source, TextOrBlocks,
};
use serde_json::{Value, json};

use crate::config::CacheConfig;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Who is asking and how: the parts of an entry's identity that are not in the body.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// `x-bf-cache-key` (or the configured default): entries of one key never answer another.
    pub cache_key: &'a str,
    /// The front door's dialect: stored answers are in its shape.
    pub front_door: &'a str,
    /// The provider the model routes to.
    pub provider: &'a str,
    /// The model as the client named it.
    pub model: &'a str,
}

/// A request's keys and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Hash of the whole normalised request: equal requests, equal keys.
    pub direct: Digest,
    /// Hash of everything but the conversation: semantic neighbours share it.
    pub scope: Digest,
    /// What is embedded for a semantic lookup; empty when the conversation has no text.
    pub text: String,
}

/// The keys of `req`, or `None` when it is not to be cached (a history longer than
/// `conversation_history_threshold`, or blocks the cache cannot tell apart).
pub fn keys(config: &CacheConfig, req: &Request, id: &Identity<'_>) -> Option<Keys> {
    if req.messages.len() > config.conversation_history_threshold {
        return None;
    }
    let scope_doc = scope(config, req, id);
    let scope = digest(&scope_doc);
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        messages.push(json!({"role": role(m.role), "content": content(&m.content)?}));
    }
    let system = match (&req.system, config.exclude_system_prompt) {
        (Some(TextOrBlocks::Text(s)), false) => Value::String(s.clone()),
        (Some(TextOrBlocks::Blocks(b)), false) => Value::String(
            b.iter()
                .map(|b| b.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => Value::Null,
    };
    let direct = digest(&json!({
        "scope": hex(&scope),
        "system": system,
        "messages": messages,
    }));
    Some(Keys {
        direct,
        scope,
        text: embedding_text(config, req),
    })
}

/// The entry's identity without the conversation: key, front door, stream, model and
/// provider (per the `cache_by_*` flags), tools and every parameter that changes the answer.
fn scope(config: &CacheConfig, req: &Request, id: &Identity<'_>) -> Value {
    let tools: Value = req.tools.as_ref().map_or(Value::Null, |tools| {
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": t.kind, "name": t.name, "description": t.description,
                    "input_schema": t.input_schema, "strict": t.strict,
                })
            })
            .collect()
    });
    let thinking = req.thinking.as_ref().map(|t| format!("{t:?}"));
    let output = req.output_config.as_ref().map(
        |o| json!({"effort": o.effort, "format": o.format.as_ref().map(|f| format!("{f:?}"))}),
    );
    json!({
        "cache_key": id.cache_key,
        "front_door": id.front_door,
        "stream": req.is_stream(),
        "provider": config.cache_by_provider.then_some(id.provider),
        "model": config.cache_by_model.then_some(id.model),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "top_k": req.top_k,
        "stop_sequences": req.stop_sequences,
        "tool_choice": req.tool_choice.as_ref().map(|c| format!("{c:?}")),
        "thinking": thinking,
        "output_config": output,
        "tools": tools,
    })
}

fn role(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

/// A message's content as a list of blocks without `cache_control`; `None` for blocks whose
/// content the canonical form does not keep.
fn content(c: &MessageContent) -> Option<Value> {
    let blocks = match c {
        TextOrBlocks::Text(s) => return Some(json!([{"type": "text", "text": s}])),
        TextOrBlocks::Blocks(b) => b,
    };
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks {
        out.push(match b {
            ContentBlockParam::Text { text, .. } => json!({"type": "text", "text": text}),
            ContentBlockParam::Image { source, .. } => {
                json!({"type": "image", "source": self::source(source)?})
            }
            ContentBlockParam::Document { source, title, .. } => {
                json!({"type": "document", "source": self::source(source)?, "title": title})
            }
            ContentBlockParam::ToolUse {
                id, name, input, ..
            } => json!({"type": "tool_use", "id": id, "name": name, "input": input}),
            ContentBlockParam::ToolResult {
                tool_use_id,
                content: inner,
                is_error,
                ..
            } => {
                let inner = match inner {
                    Some(c) => content(c)?,
                    None => Value::Null,
                };
                json!({"type": "tool_result", "tool_use_id": tool_use_id,
                       "content": inner, "is_error": is_error})
            }
            ContentBlockParam::Thinking {
                thinking,
                signature,
            } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
            ContentBlockParam::RedactedThinking | ContentBlockParam::Other { .. } => return None,
        });
    }
    Some(Value::Array(out))
}

fn source(s: &Source) -> Option<Value> {
    Some(match s {
        Source::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        Source::Url { url } => json!({"type": "url", "url": url}),
        Source::Text { media_type, data } => {
            json!({"type": "text", "media_type": media_type, "data": data})
        }
        Source::Content { content: c } => json!({"type": "content", "content": content(c)?}),
        Source::File { file_id } => json!({"type": "file", "file_id": file_id}),
    })
}

/// The conversation as text, one `role: text` paragraph per message (the system prompt first
/// unless excluded): text blocks and tool results' text; media and tool inputs carry none.
fn embedding_text(config: &CacheConfig, req: &Request) -> String {
    let mut out = String::new();
    let mut push = |who: &str, text: &str| {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(who);
        out.push_str(": ");
        out.push_str(text);
    };
    if !config.exclude_system_prompt {
        match &req.system {
            Some(TextOrBlocks::Text(s)) => push("system", s),
            Some(TextOrBlocks::Blocks(blocks)) => {
                blocks.iter().for_each(|b| push("system", &b.text))
            }
            None => {}
        }
    }
    for m in &req.messages {
        let mut text = String::new();
        collect_text(&m.content, &mut text);
        push(role(m.role), &text);
    }
    out
}

fn collect_text(c: &MessageContent, out: &mut String) {
    fn add(out: &mut String, s: &str) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    }
    match c {
        TextOrBlocks::Text(s) => add(out, s),
        TextOrBlocks::Blocks(blocks) => {
            for b in blocks {
                match b {
                    ContentBlockParam::Text { text, .. } => add(out, text),
                    ContentBlockParam::ToolResult {
                        content: Some(inner),
                        ..
                    } => collect_text(inner, out),
                    _ => {}
                }
            }
        }
    }
}

fn digest(doc: &Value) -> Digest {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex of a digest, as stored.
pub fn hex(d: &Digest) -> String {
    use std::fmt::Write;
    d.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A digest from its hex form.
pub fn from_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use heimdall_protocol::dialect::Endpoint;

    fn config() -> CacheConfig {
        crate::config::parse(Value::Null).unwrap()
    }

    fn req(body: &Value) -> Request {
        Request::from_anthropic(body.to_string().as_bytes(), Endpoint::Messages).unwrap()
    }

    const ID: Identity<'static> = Identity {
        cache_key: "k",
        front_door: "anthropic",
        provider: "anthropic",
        model: "claude",
    };

    #[test]
    fn spelling_and_cache_marks_do_not_change_the_key_but_content_does() {
        let c = config();
        let a = keys(
            &c,
            &req(&json!({"model": "claude", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]})),
            &ID,
        )
        .unwrap();
        let b = keys(
            &c,
            &req(
                &json!({"model": "claude", "max_tokens": 10, "metadata": {"user_id": "u"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                "cache_control": {"type": "ephemeral"}}]}]}),
            ),
            &ID,
        )
        .unwrap();
        assert_eq!(a, b);
        let other = keys(
            &c,
            &req(&json!({"model": "claude", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi!"}]})),
            &ID,
        )
        .unwrap();
        assert_ne!(a.direct, other.direct);
        assert_eq!(a.scope, other.scope, "same parameters, same scope");
        let hotter = keys(
            &c,
            &req(
                &json!({"model": "claude", "max_tokens": 10, "temperature": 1.0,
            "messages": [{"role": "user", "content": "hi"}]}),
            ),
            &ID,
        )
        .unwrap();
        assert_ne!(a.scope, hotter.scope);
    }

    #[test]
    fn identity_flags_decide_what_separates_entries() {
        let body = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let r = req(&body);
        let mut c = config();
        let other_model = Identity {
            model: "claude-2",
            ..ID
        };
        let other_key = Identity {
            cache_key: "k2",
            ..ID
        };
        assert_ne!(keys(&c, &r, &ID), keys(&c, &r, &other_model));
        assert_ne!(keys(&c, &r, &ID), keys(&c, &r, &other_key));
        c.cache_by_model = false;
        assert_eq!(keys(&c, &r, &ID), keys(&c, &r, &other_model));
        assert_ne!(
            keys(&c, &r, &ID),
            keys(&c, &r, &other_key),
            "keys always separate"
        );
    }

    #[test]
    fn long_histories_and_opaque_blocks_are_not_cached() {
        let c = config();
        let turns: Vec<Value> = (0..4)
            .map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": "x"}))
            .collect();
        assert!(
            keys(
                &c,
                &req(&json!({"model": "m", "max_tokens": 1, "messages": turns})),
                &ID
            )
            .is_none()
        );
        let opaque = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user",
            "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]});
        assert!(keys(&c, &req(&opaque), &ID).is_none());
    }

    #[test]
    fn the_system_prompt_can_be_left_out() {
        let body = |system: &str| {
            req(&json!({"model": "m", "max_tokens": 1, "system": system,
                "messages": [{"role": "user", "content": "hi"}]}))
        };
        let mut c = config();
        assert_ne!(keys(&c, &body("a"), &ID), keys(&c, &body("b"), &ID));
        assert_eq!(
            keys(&c, &body("a"), &ID).unwrap().text,
            "system: a\nuser: hi"
        );
        c.exclude_system_prompt = true;
        assert_eq!(keys(&c, &body("a"), &ID), keys(&c, &body("b"), &ID));
        assert_eq!(keys(&c, &body("a"), &ID).unwrap().text, "user: hi");
    }

    #[test]
    fn hex_round_trips() {
        let d = digest(&json!(1));
        assert_eq!(from_hex(&hex(&d)), Some(d));
        assert_eq!(from_hex("zz"), None);
    }
}
