//! Images and documents given by URL, for upstreams that only take bytes: the gateway finds
//! them here, fetches them and puts the bytes in their place before encoding.

use std::fmt;

use super::request::{ContentBlockParam, Request, Role, Source, TextOrBlocks};

/// Which kinds of media given by URL an upstream cannot fetch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InlineMedia {
    pub images: bool,
    pub documents: bool,
}

impl InlineMedia {
    /// The upstream fetches URLs itself (or takes none).
    pub const NONE: Self = Self {
        images: false,
        documents: false,
    };
    /// The upstream takes bytes only.
    pub const ALL: Self = Self {
        images: true,
        documents: true,
    };

    pub fn any(self) -> bool {
        self.images || self.documents
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
}

/// An image or document block whose source is a URL.
#[derive(Debug)]
pub struct UrlMedia<'a> {
    /// The block's Anthropic-style path (`messages.0.content.1`).
    pub path: String,
    pub kind: MediaKind,
    /// Always a [`Source::Url`]; the caller replaces it.
    pub source: &'a mut Source,
}

impl UrlMedia<'_> {
    pub fn url(&self) -> &str {
        match &*self.source {
            Source::Url { url } => url,
            _ => "",
        }
    }
}

impl Request {
    /// The URL sources of the kinds in `which`, in request order: in user turns, inside tool
    /// results, and inside documents made of content blocks. Other turns cannot carry media
    /// in any translation, so their URLs are left for the encoder to refuse.
    pub fn url_media_mut(&mut self, which: InlineMedia) -> Vec<UrlMedia<'_>> {
        let mut found = Vec::new();
        if !which.any() {
            return found;
        }
        for (i, message) in self.messages.iter_mut().enumerate() {
            if message.role != Role::User {
                continue;
            }
            if let TextOrBlocks::Blocks(blocks) = &mut message.content {
                let messages = Path::Key(&Path::Root, "messages");
                let message = Path::Index(&messages, i);
                walk(blocks, Path::Key(&message, "content"), which, &mut found);
            }
        }
        found
    }
}

/// A JSON path built on the stack while walking; rendered only for a match, so a request
/// without URLs costs no allocation.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'static str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Key(Self::Root, key) => f.write_str(key),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}.{i}"),
        }
    }
}

fn walk<'a>(
    blocks: &'a mut [ContentBlockParam],
    path: Path<'_>,
    which: InlineMedia,
    found: &mut Vec<UrlMedia<'a>>,
) {
    for (k, block) in blocks.iter_mut().enumerate() {
        let here = Path::Index(&path, k);
        match block {
            ContentBlockParam::Image {
                source: source @ Source::Url { .. },
                ..
            } if which.images => found.push(UrlMedia {
                path: here.to_string(),
                kind: MediaKind::Image,
                source,
            }),
            ContentBlockParam::Document { source, .. } => match source {
                Source::Url { .. } if which.documents => found.push(UrlMedia {
                    path: here.to_string(),
                    kind: MediaKind::Document,
                    source,
                }),
                Source::Content {
                    content: TextOrBlocks::Blocks(inner),
                } => {
                    let source = Path::Key(&here, "source");
                    walk(inner, Path::Key(&source, "content"), which, found);
                }
                _ => {}
            },
            ContentBlockParam::ToolResult {
                content: Some(TextOrBlocks::Blocks(inner)),
                ..
            } => walk(inner, Path::Key(&here, "content"), which, found),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Endpoint;

    fn request(messages: serde_json::Value) -> Request {
        let body = serde_json::json!({"model": "m", "max_tokens": 1, "messages": messages});
        Request::from_anthropic(body.to_string().as_bytes(), Endpoint::Messages).unwrap()
    }

    fn url(u: &str) -> serde_json::Value {
        serde_json::json!({"type": "url", "url": u})
    }

    #[test]
    fn finds_urls_where_a_user_turn_can_carry_media_and_names_their_paths() {
        let mut req = request(serde_json::json!([
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": url("https://a/1.png")},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
                {"type": "document", "source": url("https://a/2.pdf")},
                {"type": "document", "source": {"type": "content", "content": [
                    {"type": "text", "text": "x"},
                    {"type": "image", "source": url("https://a/3.png")}]}}
            ]},
            {"role": "assistant", "content": [
                {"type": "image", "source": url("https://a/ignored.png")},
                {"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "image", "source": url("https://a/4.png")}]}
            ]},
            {"role": "user", "content": "plain"}
        ]));
        let found: Vec<_> = req
            .url_media_mut(InlineMedia::ALL)
            .into_iter()
            .map(|m| (m.path.clone(), m.kind, m.url().to_owned()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "messages.0.content.1".into(),
                    MediaKind::Image,
                    "https://a/1.png".into()
                ),
                (
                    "messages.0.content.3".into(),
                    MediaKind::Document,
                    "https://a/2.pdf".into()
                ),
                (
                    "messages.0.content.4.source.content.1".into(),
                    MediaKind::Image,
                    "https://a/3.png".into()
                ),
                (
                    "messages.2.content.0.content.0".into(),
                    MediaKind::Image,
                    "https://a/4.png".into()
                ),
            ]
        );
        let documents_only = InlineMedia {
            images: false,
            documents: true,
        };
        let found = req.url_media_mut(documents_only);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "messages.0.content.3");
        assert!(req.url_media_mut(InlineMedia::NONE).is_empty());
    }

    #[test]
    fn replacing_a_source_changes_the_request() {
        let mut req = request(serde_json::json!([
            {"role": "user", "content": [{"type": "image", "source": url("https://a/1.png")}]}
        ]));
        for m in req.url_media_mut(InlineMedia::ALL) {
            *m.source = Source::Base64 {
                media_type: "image/png".into(),
                data: "AA==".into(),
            };
        }
        assert!(req.url_media_mut(InlineMedia::ALL).is_empty());
    }
}
